"""A model trained (or loaded) in one app session, and what the Train page shows about it.

:class:`TrainedModel` ties a model to the dataset it was trained on; the rest are the page's computations:
the training jobs its form asks for (:func:`plan_jobs`), the comparison table's row (:func:`model_row`), the
per-epoch curve (:func:`curve_rows`), the downloadable zip (:func:`zip_bytes`), and each model placed on
the quality-vs-latency chart by the bench row measured for its shape (:func:`quality_latency_points`).
Plain Python over ``msli_core.models.registry``; nothing here imports streamlit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from msli_core import kinds

# The kinds the Train page offers, as its form names them.
KIND_CHOICES = {
    "msli": "MS-LI (late interaction over K segments)",
    "two-tower": "two-tower (MS-LI with K = 1)",
    "cross-encoder": "cross-encoder (early interaction; slow)",
    "popularity": "popularity (baseline)",
    "item-knn": "sequential item-kNN (baseline)",
}


@dataclass
class TrainedModel:
    """A model trained (or loaded) in this session, and what it was trained on."""

    name: str  # label shown in tables, e.g. "MS-LI K=4 attention"
    loaded: Any  # msli_core.models.registry.LoadedModel
    metrics: dict[str, float]
    seconds: float
    dataset_fingerprint: str
    history: list[dict] = field(default_factory=list)  # per-epoch loss / validation metrics
    base_name: str = ""  # the name asked for, before session_name made it unique ("" = name)


def from_result(name: str, result, data) -> TrainedModel:
    """A ``msli_core.train.TrainResult`` as a :class:`TrainedModel` tied to the dataset it was trained on."""
    from msli_core.models.registry import LoadedModel

    loaded = LoadedModel(
        kind=result.kind,
        config=result.model.config,
        model=result.model,
        metrics=result.metrics,
        fingerprint=data.fingerprint,
        training={
            "settings": result.settings,
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "parameters": result.parameters,
        },
        dataset={"fingerprint": data.fingerprint, "source": str(data.source), "format": data.format},
    )
    return TrainedModel(
        name, loaded, result.metrics, result.seconds, data.fingerprint, list(result.history), base_name=name
    )


def from_loaded(filename: str, loaded, data) -> TrainedModel:
    """A model loaded from a zip (``registry.load_zip`` already checked it belongs to ``data``, and the
    types of its config.json's metrics and training fields), named after the name it was saved with,
    else the file, plus " (loaded)"."""
    base = loaded.training.get("name") or Path(filename).stem
    name = f"{base} (loaded)"
    seconds = float(loaded.training.get("seconds") or 0.0)
    return TrainedModel(name, loaded, dict(loaded.metrics), seconds, data.fingerprint, [], base_name=name)


SEPARATOR = " · "  # between a name and what tells it apart: "popularity · ml-100k"


def base_name(name: str) -> str:
    """The name a model was asked to have, from the name it was saved under by a release that did not
    record it (training.base_name): the part before the first :data:`SEPARATOR`. Exact for the models the
    app saves (the Train page's names, from :func:`plan_jobs`, never hold one; :func:`session_name` adds
    it).

    >>> base_name("popularity · ml-mini"), base_name("MS-LI K=4 attention d=64")
    ('popularity', 'MS-LI K=4 attention d=64')
    """
    return name.split(SEPARATOR, 1)[0]


def session_name(
    name: str,
    fingerprint: str,
    models: dict[str, TrainedModel],
    dataset_label: str = "",
    *,
    base: str | None = None,
) -> str:
    """The name a model takes among a session's ``models`` (keyed by name): ``name`` when the Train page
    places a model it just trained (``dataset_label``: the Data page's label of the data), the name it was
    saved under when the workspace gives a saved model back (``base``: the name it was asked to have;
    ``dataset_label``: its dataset's recorded source). One rule for both, so a model comes back from the
    workspace under the name it had, and a retrain replaces its earlier self whatever that is called.

    Decisions: models of different datasets are kept apart, never replaced by each other. In order:

    1. the name of the model's earlier self: a model of the same dataset asked to have the same name
       (``base``, else ``name``): a retrain replaces it, even when it was told apart as ``name · …``;
    2. else the first free one of ``name``, ``base``, ``base · <dataset_label>`` (a path by its last part,
       cut to 40 characters), ``base · data <fingerprint[:8]>``, then that with a number.

    >>> class M:  # a stand-in with the fields the name reads
    ...     def __init__(self, fp, base=""):
    ...         self.dataset_fingerprint, self.base_name = fp, base
    >>> session_name("popularity", "bbbb", {"popularity": M("bbbb")}, "ml-100k")
    'popularity'
    >>> session_name("popularity", "bbbb", {"popularity": M("aaaa")}, "ml-100k")
    'popularity · ml-100k'
    >>> session_name("popularity", "bbbbcccc99", {"popularity": M("aaaa"), "popularity · x": M("a")}, "x")
    'popularity · data bbbbcccc'
    >>> session_name("popularity", "bbbb", {"popularity": M("aaaa")}, "/home/me/ml-mini/")
    'popularity · ml-mini'
    >>> session_name("popularity", "bbbb", {"popularity · data bbbb": M("bbbb", "popularity")}, "ml-mini")
    'popularity · data bbbb'
    >>> session_name("popularity · ml-mini", "bbbb", {"popularity · ml-mini": M("cccc")}, "ml-mini",
    ...              base="popularity")
    'popularity'
    """
    base = base or name
    for key, held in models.items():  # 1. the earlier self
        if held.dataset_fingerprint == fingerprint and (getattr(held, "base_name", "") or key) == base:
            return key
    short = fingerprint[:8] or "unknown"
    label = re.split(r"[/\\]", dataset_label.strip().rstrip("/\\"))[-1]
    label = label if len(label) <= 40 else label[:39] + "…"
    candidates = [
        name,
        base,
        *([f"{base}{SEPARATOR}{label}"] if label else []),
        f"{base}{SEPARATOR}data {short}",
    ]
    candidates += [f"{base}{SEPARATOR}data {short} ({n})" for n in range(2, 1000)]
    for candidate in candidates:  # 2. the first free name
        if candidate not in models:
            return candidate
    raise ValueError(f"no free session name for {name!r}")  # 1,000 datasets with one model name


def slug(name: str) -> str:
    """A file or folder name for a model name (its zip, its workspace folder).

    >>> slug("MS-LI K=4 attention (seed 0)")
    'MS-LI-K-4-attention-seed-0'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"


def zip_bytes(trained: TrainedModel, data) -> bytes:
    """The model folder (config.json + model.safetensors) packed as a zip in memory."""
    from msli_core.models.registry import save_zip

    return save_zip(
        trained.loaded.model,
        slug(trained.name),
        data=data,
        metrics=trained.metrics,
        extra={**trained.loaded.training, "name": trained.name, "seconds": trained.seconds},
    )


def plan_jobs(
    chosen_kinds, segment_counts, aggregation: str, dim: int, layers: int
) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """The Train form's choices as training jobs (name, kind, config), and the sentences of choices that
    make no job (MS-LI without a segment count).

    >>> plan_jobs(["msli", "popularity"], [8, 2], "max", 16, 1)[0]  # doctest: +NORMALIZE_WHITESPACE
    [('MS-LI K=2 max d=16', 'msli', {'segments': 2, 'aggregation': 'max', 'dim': 16, 'layers': 1}),
     ('MS-LI K=8 max d=16', 'msli', {'segments': 8, 'aggregation': 'max', 'dim': 16, 'layers': 1}),
     ('popularity', 'popularity', {})]
    """
    jobs: list[tuple[str, str, dict]] = []
    errors: list[str] = []
    for kind in chosen_kinds:
        if kind == "msli":
            jobs += [
                (
                    f"MS-LI K={k} {aggregation} d={dim}",
                    kind,
                    dict(segments=k, aggregation=aggregation, dim=dim, layers=layers),
                )
                for k in sorted(segment_counts)
            ]
            if not segment_counts:
                errors.append("MS-LI was chosen without a segment count; pick at least one K.")
        elif kind in ("two-tower", "cross-encoder"):
            jobs.append((f"{kind} d={dim}", kind, dict(dim=dim, layers=layers)))
        else:
            jobs.append((kind, kind, {}))
    return jobs, errors


def model_row(m: TrainedModel) -> dict:
    """One row of the Train page's comparison table."""
    config = m.loaded.config
    segments = getattr(config, "segments", None) if kinds.is_late_interaction(m.loaded.kind) else None
    parameters = m.loaded.training.get("parameters")
    if not isinstance(parameters, int):  # not recorded (registry.check_sections allows only int or null)
        parameters = sum(p.numel() for p in m.loaded.model.parameters())
    return {
        "name": m.name,
        "kind": m.loaded.kind,
        "segments": segments,
        "aggregation": getattr(config, "aggregation", None) if segments is not None else None,
        "NDCG@10": m.metrics.get("NDCG@10"),
        "HR@10": m.metrics.get("HR@10"),
        "MRR": m.metrics.get("MRR"),
        "training s": m.seconds,
        "parameters": int(parameters),
        "evaluation": m.metrics.get("evaluation", ""),
    }


def shown_table(table):
    """The comparison table as shown: baselines have no segments and no aggregation, so a dash, not
    "None" (``table``: a DataFrame of :func:`model_row` rows)."""
    import pandas as pd

    return table.assign(
        segments=[("–" if pd.isna(k) else str(int(k))) for k in table["segments"]],
        aggregation=table["aggregation"].fillna("–"),
    )


def curve_rows(m: TrainedModel) -> list[dict]:
    """Per-epoch rows for ``viz.training_curves``: loss and validation NDCG@10."""
    return [
        {"epoch": r["epoch"], "loss": r.get("loss"), "NDCG@10": r.get("valid_NDCG@10")} for r in m.history
    ]


def quality_latency_points(trained: dict[str, TrainedModel], rows: list[dict], n_items: int) -> list[dict]:
    """Each trained model with the online p50 the bench ``rows`` measured for its shape: same kind and K,
    then the closest width and depth, then the candidate count nearest ``n_items`` (torch)."""
    rows = [
        r
        for r in rows
        if r.get("stage") == "online"
        and not r.get("variant")  # the catalog request, not paired or per-request candidate lists
        and r.get("backend", "torch") == "torch"
        and r.get("p50_ms") is not None
        and math.isfinite(float(r["p50_ms"]))
    ]
    if not rows:
        return []
    points = []
    for m in trained.values():
        kind, config = m.loaded.kind, m.loaded.config
        k = getattr(config, "segments", 1) if kinds.is_late_interaction(kind) else None
        same = [
            r
            for r in rows
            if (r.get("model") == kind or (kind == "two-tower" and r.get("model") == "msli"))
            and (k is None or r.get("segments") == k)
        ]
        if not same:
            continue

        def distance(r, config=config):
            shape_off = (r.get("dim") != getattr(config, "dim", None)) + (
                r.get("layers") != getattr(config, "layers", None)
            )
            return shape_off, abs(math.log(max(1, int(r["candidates"])) / max(1, n_items)))

        best = min(distance(r) for r in same)
        p50s = sorted(float(r["p50_ms"]) for r in same if distance(r) == best)
        example = next(r for r in same if distance(r) == best)
        points.append(
            {
                **model_row(m),
                "p50_ms": p50s[len(p50s) // 2],
                "measured_candidates": int(example["candidates"]),
                "measured_dim": example.get("dim"),
            }
        )
    return points


DEMO_MODELS = "models"  # the bundled demo models: sample_data/models/<name>/ (made by `make demo-model`)
DEMO_NAMES = {"msli-k4": "MS-LI K=4", "two-tower": "two-tower", "popularity": "popularity",
              "item-knn": "item-kNN"}  # fmt: skip


def bundled_models(sample_dir: str | Path, data) -> list[TrainedModel]:
    """The demo models shipped beside the sample data (``sample_dir/models/<name>/``), ready to explain
    and compare in the first minute, each named "... (bundled demo)". A model made for other data (the
    app pointed at another dataset) or a folder that does not load is left out: it is only a demo.

    The models are ``msli train --data sample_data --seed 0`` outputs (see the Makefile's demo-model)."""
    from msli_core.errors import MsliError
    from msli_core.models.registry import load_model

    root = Path(sample_dir) / DEMO_MODELS
    out = []
    for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        try:
            loaded = load_model(folder, data)
        except MsliError:
            continue
        name = f"{DEMO_NAMES.get(folder.name, folder.name)} (bundled demo)"
        seconds = float(loaded.training.get("seconds", 0.0) or 0.0)
        out.append(TrainedModel(name, loaded, dict(loaded.metrics), seconds, data.fingerprint, [], name))
    return out


def finite_metric(m: TrainedModel, name: str) -> float | None:
    """``m``'s metric ``name`` when it is a finite number; None when it is absent or not measured (NaN).

    >>> class M:
    ...     metrics = {"NDCG@10": float("nan"), "HR@10": 0.5}
    >>> finite_metric(M(), "NDCG@10"), finite_metric(M(), "HR@10"), finite_metric(M(), "MRR")
    (None, 0.5, None)
    """
    value = m.metrics.get(name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def best_model(models: dict[str, TrainedModel], metric: str = "NDCG@10") -> TrainedModel | None:
    """The model with the highest finite ``metric`` (Home's "best test NDCG@10"); None when none has it."""
    scored = [m for m in models.values() if finite_metric(m, metric) is not None]
    return max(scored, key=lambda m: finite_metric(m, metric), default=None)


def ladder_note(models: dict[str, TrainedModel]) -> str | None:
    """Honest sentences when the quality ladder does not hold among ``models`` (by test NDCG@10): a
    simple baseline beats every neural model, or the two-tower model is at least level with every
    MS-LI model; which, by how much, and why. None when neither happens.

    >>> class M:  # a stand-in with the two fields the note reads
    ...     def __init__(self, kind, ndcg):
    ...         self.loaded, self.metrics = type("L", (), {"kind": kind})(), {"NDCG@10": ndcg}
    >>> ladder_note({"knn": M("item-knn", 0.32), "msli": M("msli", 0.26)})[:40]
    'A simple baseline, knn, scores the best '
    >>> ladder_note({"knn": M("item-knn", 0.2), "msli": M("msli", 0.26)}) is None
    True
    >>> ladder_note({"tt": M("two-tower", 0.27), "k4": M("msli", 0.26)})[:44]
    'The two-tower model tt is level with or ahea'
    """
    scored = {n: m for n, m in models.items() if finite_metric(m, "NDCG@10") is not None}
    neural = {n: m for n, m in scored.items() if m.loaded.kind in kinds.NEURAL}
    simple = {n: m for n, m in scored.items() if m.loaded.kind not in kinds.NEURAL}
    sentences = []
    if neural and simple:
        best_simple = max(simple, key=lambda n: simple[n].metrics["NDCG@10"])
        best_neural = max(neural, key=lambda n: neural[n].metrics["NDCG@10"])
        a, b = simple[best_simple].metrics["NDCG@10"], neural[best_neural].metrics["NDCG@10"]
        if a > b:
            sentences.append(
                f"A simple baseline, {best_simple}, scores the best test NDCG@10 here ({a:.3f}, against "
                f"{b:.3f} for {best_neural}). On data whose next item mostly follows the last few (the "
                "bundled sample plants such item-to-item transitions), item-kNN reads that signal directly; "
                "on real MovieLens 100K MS-LI and the two-tower model beat it, and the cross-encoder "
                "re-ranking MS-LI's top 100 beats them all (README, Quality)."
            )
    towers = {n: m.metrics["NDCG@10"] for n, m in scored.items() if m.loaded.kind == "two-tower"}
    msli = {n: m.metrics["NDCG@10"] for n, m in scored.items() if m.loaded.kind == "msli"}
    if towers and msli and max(towers.values()) >= max(msli.values()):
        tower, best = max(towers, key=towers.get), max(msli, key=msli.get)
        sentences.append(
            f"The two-tower model {tower} is level with or ahead of every MS-LI model here "
            f"({towers[tower]:.3f} against {msli[best]:.3f} for {best}): MS-LI's closed segments only "
            "change users whose history is longer than the window, and over 3 seeds the two are within "
            "run-to-run noise of each other on the sample and on MovieLens 100K (README, Quality). The "
            "Train page's paired comparison gives the difference's interval on these test users."
        )
    return " ".join(sentences) or None


def comparable(models: dict[str, TrainedModel]) -> list[str]:
    """Names of the models a paired comparison on the test users can rank (all but the cross-encoder:
    its test figure is a cascade over another model's top-100, which ``msli quality`` compares with
    that first stage), best test NDCG@10 first; models without a finite NDCG@10 are left out."""
    names = [
        n
        for n, m in models.items()
        if m.loaded.kind != "cross-encoder" and finite_metric(m, "NDCG@10") is not None
    ]
    return sorted(names, key=lambda n: -finite_metric(models[n], "NDCG@10"))


def default_pair(models: dict[str, TrainedModel]) -> tuple[str, str] | None:
    """The pair the Train page offers first: the best MS-LI model against the best two-tower model (the
    ladder's middle rung), else the two best comparable models; None with fewer than two.

    >>> class M:
    ...     def __init__(self, kind, ndcg):
    ...         self.loaded, self.metrics = type("L", (), {"kind": kind})(), {"NDCG@10": ndcg}
    >>> default_pair({"knn": M("item-knn", 0.3), "k4": M("msli", 0.26), "tt": M("two-tower", 0.27)})
    ('k4', 'tt')
    >>> default_pair({"knn": M("item-knn", 0.3), "k4": M("msli", 0.26), "pop": M("popularity", 0.04)})
    ('knn', 'k4')
    >>> default_pair({"ce": M("cross-encoder", 0.33), "knn": M("item-knn", 0.3)}) is None  # one comparable
    True
    """
    names = comparable(models)
    msli = [n for n in names if models[n].loaded.kind == "msli"]
    towers = [n for n in names if models[n].loaded.kind == "two-tower"]
    if msli and towers:
        return msli[0], towers[0]
    return (names[0], names[1]) if len(names) >= 2 else None


def closed_reach_note(first: TrainedModel, second: TrainedModel, data) -> str | None:
    """For MS-LI (K > 1) against a two-tower model with the same window, in either order: what the MS-LI
    model's closed slots could add on ``data`` (:func:`msli_core.quality.closed_reach`, its sentence);
    None for other pairs."""
    from msli_core.data.dataset import leave_one_out
    from msli_core.quality import closed_reach, reach_sentence

    by_kind = {first.loaded.kind: first, second.loaded.kind: second}
    msli, tower = by_kind.get("msli"), by_kind.get("two-tower")
    if msli is None or tower is None or msli.loaded.config.segments < 2:
        return None
    config = msli.loaded.config
    if tower.loaded.config.max_len != config.max_len:  # the count assumes both read the same window
        return None
    return reach_sentence(closed_reach(leave_one_out(data), [config.segments], config.to_dict())[0])


def held_out_ranks(m: TrainedModel, data):
    """(U,) numpy array: each evaluation user's test rank under ``m`` (full ranking over all items, the
    protocol of its test NDCG@10), for :func:`msli_core.quality.compare_ranks`."""
    from msli_core.evaluate import evaluate

    return evaluate(m.loaded, data, keep_ranks=True)["ranks"]
