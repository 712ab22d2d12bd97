"""Building, saving and loading models. A saved model is a folder (docs/design.md §5):

- ``config.json``: ``kind``, ``config`` (the dataclass fields), ``dataset`` (fingerprint, source, sizes),
  ``n_items``, ``metrics``, ``training`` (settings), ``versions``;
- ``model.safetensors``: the state dict (tensors only — nothing is ever unpickled; a folder holding a
  pickle file is refused outright, and ``torch.load`` is never called on user files).

Every way a folder can be wrong ends in :class:`MsliError` with one sentence naming the folder and the fix.
Loading checks, before a model is handed out: the config's types and sizes (on the meta device), the
weights' names, shapes and dtypes against it, every float weight finite, every integer tensor (an index
into an embedding or the catalog) and every count buffer in its valid range (:func:`tensor_ranges`), and
the ``metrics``, ``training`` and ``dataset`` sections of config.json (:func:`check_sections`), so a page
that shows a loaded model never meets a value it cannot use.

The fix a sentence ends with depends on who reads it (:mod:`msli_core.data.audience`, the one mechanism
for the data layer, downloads and models): the CLI's user passes folders and flags, the app's user, inside
``audience.app_user()`` (every page runs in it), has only the app's pages.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from msli_core import kinds
from msli_core.data import audience
from msli_core.errors import MsliError
from msli_core.models.baselines import ItemKNN, ItemKNNConfig, Popularity, PopularityConfig
from msli_core.models.cross_encoder import CrossEncoder, CrossEncoderConfig
from msli_core.models.msli import MSLIConfig, MSLIModel

KINDS = kinds.TRAINABLE
NEURAL_KINDS = kinds.NEURAL
LATE_INTERACTION_KINDS = kinds.LATE_INTERACTION
FORMAT = "msli-model/2"  # 2: MS-LI's open window + closed segments, the re-ranking cross-encoder
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib", ".npy")

_CONFIGS: dict[str, type] = {
    "msli": MSLIConfig,
    "two-tower": MSLIConfig,
    "cross-encoder": CrossEncoderConfig,
    "popularity": PopularityConfig,
    "item-knn": ItemKNNConfig,
}
_MODELS: dict[str, type[nn.Module]] = {
    "msli": MSLIModel,
    "two-tower": MSLIModel,
    "cross-encoder": CrossEncoder,
    "popularity": Popularity,
    "item-knn": ItemKNN,
}


@dataclass
class LoadedModel:
    kind: str  # one of KINDS
    config: Any  # the model's config dataclass
    model: nn.Module  # in eval mode
    metrics: dict = field(default_factory=dict)  # test metrics recorded at training time
    fingerprint: str = ""  # fingerprint of the dataset it was trained on
    folder: str = ""  # where it was loaded from ("" when built in memory)
    training: dict = field(default_factory=dict)  # training settings and summary
    dataset: dict = field(default_factory=dict)  # source, format, users, items of the training data


def make_config(kind: str, **config) -> Any:
    """The config dataclass of ``kind`` from keyword overrides (unknown keys are an error)."""
    if kind not in KINDS:
        raise MsliError(f"Unknown model kind {kind!r}; choose one of {', '.join(KINDS)}.")
    cls = _CONFIGS[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise MsliError(
            f"Model kind {kind!r} has no setting {', '.join(unknown)}; "
            f"its settings are {', '.join(sorted(names))}."
        )
    _check_field_types(cls, config)
    if kind == "two-tower":
        if config.get("segments", 1) != 1:
            raise MsliError(
                "A two-tower model is MS-LI with one segment; drop --segments or use --model msli."
            )
        config["segments"] = 1
    try:
        return cls(**config)
    except (ValueError, TypeError) as err:
        raise MsliError(f"Invalid settings for a {kind} model: {err}.") from err


def _check_field_types(cls: type, config: dict) -> None:
    """Refuse a setting whose JSON/CLI value has the wrong type for its dataclass field (``n_items: "abc"``,
    ``dim: 64.5``, ``lr: NaN``), read from the field annotations: int, float, str, bool, ``X | None``.
    Ranges are the config's own ``__post_init__`` (with the limits of :mod:`msli_core.limits`)."""
    hints = typing.get_type_hints(cls)
    for name, value in config.items():
        hint = hints[name]
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if value is None and type(None) in allowed:
            continue
        if bool in allowed and isinstance(value, bool):
            continue
        if int in allowed and isinstance(value, int) and not isinstance(value, bool):
            continue
        if float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                continue
            raise MsliError(f"Setting {name} is {value}; it must be a finite number.")
        if str in allowed and isinstance(value, str):
            continue
        wanted = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise MsliError(f"Setting {name} is {value!r} ({type(value).__name__}); it must be {wanted}.")


def build_model(kind: str, data=None, **config) -> nn.Module:
    """A fresh model of ``kind``. With ``data`` (InteractionData) the catalog size, genre count and item
    features come from it; without, from ``config`` (random/zero features, for benchmarks)."""
    if data is not None:
        config.setdefault("n_items", data.n_items)
        if kind in NEURAL_KINDS:
            config.setdefault("n_genres", max(1, len(data.genre_names)))
    cfg = make_config(kind, **config)
    model = _MODELS[kind](cfg)
    model.kind = kind
    if data is not None and hasattr(model, "set_item_features"):
        model.set_item_features(data)
    return model


def _versions() -> dict:
    import numpy
    import safetensors

    from msli_core import __version__ as msli_version

    return {
        "msli": msli_version,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _payload(model: nn.Module, data, metrics: dict | None, extra: dict | None) -> tuple[str, bytes]:
    """(config.json text, safetensors bytes) of ``model``: what a folder or a zip holds."""
    from safetensors.torch import save

    from msli_core.jsonable import to_jsonable

    kind = getattr(model, "kind", None)
    if kind not in KINDS:
        raise ValueError(f"cannot save a model of kind {kind!r}")
    payload = {
        "format": FORMAT,
        "kind": kind,
        "config": model.config.to_dict(),
        "dataset": {
            "fingerprint": data.fingerprint,
            "source": str(data.source),
            "format": data.format,
            "users": data.n_users,
            "items": data.n_items,
        },
        "n_items": data.n_items,
        "metrics": metrics or {},
        "training": extra or {},
        "versions": _versions(),
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    config_text = json.dumps(to_jsonable(payload), indent=2, allow_nan=False)
    return config_text, save(state, metadata={"format": FORMAT, "kind": kind})


def save_model(
    model: nn.Module, folder, *, data, metrics: dict | None = None, extra: dict | None = None
) -> Path:
    """Write ``model`` to ``folder`` (config.json + model.safetensors), all or nothing."""
    from msli_core.outputs import atomic_output_dir

    config_text, weights = _payload(model, data, metrics, extra)
    with atomic_output_dir(folder, kind="model") as tmp:
        (tmp / CONFIG_FILE).write_text(config_text, encoding="utf-8")
        (tmp / WEIGHTS_FILE).write_bytes(weights)
    return Path(folder)


def save_zip(
    model: nn.Module, name: str, *, data, metrics: dict | None = None, extra: dict | None = None
) -> bytes:
    """The model folder as zip bytes (``name/config.json``, ``name/model.safetensors``), built in memory."""
    import io
    import zipfile

    config_text, weights = _payload(model, data, metrics, extra)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}/{CONFIG_FILE}", config_text)
        archive.writestr(f"{name}/{WEIGHTS_FILE}", weights)
    return buffer.getvalue()


# ---- loading: every check runs before a tensor is allocated ------------------------------------------
MAX_CONFIG_BYTES = 1 << 20  # a saved config.json is ~2 KB; 1 MiB leaves room for long training notes
MAX_HEADER_BYTES = 16 << 20  # safetensors' own limit on the JSON header
MAX_MODEL_BYTES = 1 << 30  # parameters + buffers of a model to build: the lab's models are a few MB
MAX_NAME_CHARS = 200  # a model's name (training.name): the app's names are ~30 characters


def _parse_config(raw: bytes, where: str) -> tuple[str, dict, dict]:
    """config.json bytes -> (kind, config fields, whole payload), or one sentence on what is wrong."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise MsliError(
            f"{where} is {len(raw):,} bytes, over the {MAX_CONFIG_BYTES:,} a saved config.json can be; "
            f"{audience.fix('model.not_ours')}."
        )
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MsliError(f"{where} is not valid JSON ({err}); {audience.fix('model.retrain')}.") from err
    except RecursionError as err:
        raise MsliError(
            f"{where} is nested too deeply to be a saved config.json; retrain the model."
        ) from err
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict) or "kind" not in payload:
        raise MsliError(f"{where} lacks the 'kind' and 'config' entries of a saved model; retrain it.")
    kind = payload["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise MsliError(f"{where} names an unknown model kind {kind!r}; {audience.fix('model.retrain')}.")
    written = payload.get("format")
    if isinstance(written, str) and written.startswith("msli-model/") and written != FORMAT:
        raise MsliError(
            f"{where} was written in format {written}, and this msli reads {FORMAT} (the models changed "
            f"shape); {audience.fix('model.retrain')}."
        )
    return kind, payload["config"], payload


def _read_header_bytes(fh) -> bytes:
    """The first bytes of a safetensors stream: its 8-byte length and at most that much JSON header."""
    head = fh.read(8)
    size = int.from_bytes(head, "little") if len(head) == 8 else 0
    return head + fh.read(min(size, MAX_HEADER_BYTES + 1))


def _header_shapes(head: bytes, where: str) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file declares, read from its first bytes (nothing allocated)."""
    if len(head) < 8:
        raise MsliError(f"{where} is not a safetensors file (it is too short); retrain the model.")
    size = int.from_bytes(head[:8], "little")
    if size > MAX_HEADER_BYTES or size > len(head) - 8:
        raise MsliError(f"{where} is not a readable safetensors file (bad header length); retrain the model.")
    try:
        header = json.loads(head[8 : 8 + size].decode("utf-8"))
        return {
            name: tuple(int(n) for n in entry["shape"])
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
        raise MsliError(f"{where} is not a readable safetensors file ({err}); retrain the model.") from err


def _check_and_build(kind: str, config: dict, shapes: dict[str, tuple[int, ...]], where: str) -> nn.Module:
    """Validate ``config`` (types, ranges, memory) and the declared ``shapes`` on the meta device, then
    build the real model. A config asking for absurd sizes is refused before any allocation."""
    if kind == "two-tower" and config.get("segments", 1) != 1:  # make_config's message names CLI flags
        raise MsliError(
            f"{where}: {CONFIG_FILE} says kind two-tower with segments {config['segments']}, which "
            "contradict each other (a two-tower model has one segment); the file was edited or damaged, so "
            "retrain it."
        )
    if kind in ("msli", "two-tower"):  # written before the options or defaults: one open slot, a full-rank
        dim = config.get("dim", MSLIConfig.dim)  # W, the 3 newest events (the default until m = 5)
        defaults = {"recency_slot": False, "attention_rank": dim if isinstance(dim, int) else None}
        config = {**defaults, "recent_items": 3, **config}
    try:
        with torch.device("meta"):
            skeleton = build_model(kind, **config)
    except MsliError as err:
        raise MsliError(f"{where}: {err}") from err
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    need = sum(v.numel() * v.element_size() for v in skeleton.state_dict().values())
    if need > MAX_MODEL_BYTES:
        raise MsliError(
            f"{where} asks for a {kind} model of {need / 2**30:.1f} GiB, over the "
            f"{MAX_MODEL_BYTES >> 30} GiB this lab builds; retrain a smaller model."
        )
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or unexpected or wrong:
        what = (
            (missing and f"missing {missing[0]}")
            or (unexpected and f"unexpected {unexpected[0]}")
            or f"shape of {wrong[0]}: {shapes[wrong[0]]} in the weights, {expected[wrong[0]]} in config.json"
        )
        raise MsliError(f"{where}: {WEIGHTS_FILE} does not match {CONFIG_FILE} ({what}); retrain the model.")
    return build_model(kind, **config)


# ---- what a loaded model may hold: tensor ranges and the config.json sections ---------------------------
def tensor_ranges(kind: str, config: Any) -> dict[str, tuple[float, float, str]]:
    """The valid ``(lowest, highest, what it holds)`` of each tensor of a ``kind`` model whose values index
    something or count something (float weights only need to be finite). Every integer tensor of every
    model is here (a test builds each kind and checks it), because an out-of-range index is not a wrong
    score but an ``IndexError`` on the first request: ``items.year_features`` indexes the year embedding
    (0 = unknown, 1..YEAR_BUCKETS-1), item-kNN's ``neighbor_ids`` and the cross-encoder's ``cooc_ids``
    are item ids (0 = no neighbour, 1..n_items). Counts are never negative (``log1p`` of one below -1 is
    NaN)."""
    from msli_core.models.layers import YEAR_BUCKETS

    items = (0, config.n_items, "item ids")
    counts = (0, math.inf, "counts")
    ranges = {
        "msli": {"items.year_features": (0, YEAR_BUCKETS - 1, "year buckets")},
        "cross-encoder": {
            "items.year_features": (0, YEAR_BUCKETS - 1, "year buckets"),
            "cooc_ids": items,
            "cooc_counts": counts,
            "item_counts": counts,
        },
        "popularity": {"counts": counts},
        "item-knn": {"neighbor_ids": items, "counts": counts},
    }
    ranges["two-tower"] = ranges["msli"]
    return ranges[kind]


def _check_tensors(model: nn.Module, state: dict, kind: str, where: str) -> None:
    """Every tensor of ``state`` has the model's dtype, every float one is finite, and every tensor of
    :func:`tensor_ranges` is in its range; else one sentence naming the first tensor that is not."""
    expected = model.state_dict()
    for name, tensor in state.items():
        if tensor.dtype != expected[name].dtype:
            raise MsliError(
                f"{where}: {WEIGHTS_FILE} stores {name} as {str(tensor.dtype).removeprefix('torch.')}, not "
                f"{str(expected[name].dtype).removeprefix('torch.')}; the file was edited or damaged, so "
                f"{audience.fix('model.retrain')}."
            )
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise MsliError(
            f"{where} holds non-finite weights ({bad[0]} has NaN or inf values): the training diverged; "
            f"{audience.fix('model.diverged')}."
        )
    ranges = tensor_ranges(kind, model.config)
    for name, tensor in sorted(state.items()):
        if name not in ranges:
            if not tensor.is_floating_point():  # a new integer buffer needs its range in tensor_ranges
                raise ValueError(f"no valid range is known for the integer tensor {name} of a {kind} model")
            continue
        lo, hi, what = ranges[name]
        outside = (tensor < lo) | (tensor > hi)
        if tensor.numel() and bool(outside.any()):
            value = tensor[outside][0].item()
            shown = str(value) if isinstance(value, int) else f"{value:g}"
            span = f"{lo} to {hi}" if math.isfinite(hi) else f"{lo} or more"
            raise MsliError(
                f"{where}: {WEIGHTS_FILE} holds {name} = {shown}, outside {span} (its valid {what}); the "
                f"file was edited or damaged, so {audience.fix('model.retrain')}."
            )


def _is_number(value: Any) -> bool:
    """A finite JSON number (a bool is not one; an integer beyond 2**53 has no exact float)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**53
    return isinstance(value, float) and math.isfinite(value)


def _history_ok(value: Any) -> bool:
    """A list of per-epoch objects (``msli_core.train``'s history): a whole-number ``epoch``, then numbers
    or null (a NaN loss was written as null)."""
    return isinstance(value, list) and all(
        isinstance(row, dict)
        and isinstance(row.get("epoch"), int)
        and not isinstance(row.get("epoch"), bool)
        and 0 <= row["epoch"] <= 2**31
        and all(v is None or _is_number(v) for v in row.values())
        for row in value
    )


# rule -> (what a value must be, check)
_RULES: dict[str, tuple[str, Any]] = {
    "rate": ("a number from 0 to 1 (or null)", lambda v: v is None or (_is_number(v) and 0 <= v <= 1)),
    "seconds": ("a number, 0 or more (or null)", lambda v: v is None or (_is_number(v) and v >= 0)),
    "count": (
        "a whole number, 0 or more (or null)",
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**53),
    ),
    "text": ("a string", lambda v: isinstance(v, str)),
    "name": (
        f"a string of 1 to {MAX_NAME_CHARS} characters",
        lambda v: isinstance(v, str) and v.strip() != "" and len(v) <= MAX_NAME_CHARS,
    ),
    "object": ("an object (or null)", lambda v: v is None or isinstance(v, dict)),
    "history": ("a list of per-epoch objects, each with a whole-number epoch and numbers", _history_ok),
}
# The fields of config.json's sections that the lab reads (the CLI, the app's pages), with their rule.
SECTION_FIELDS: dict[str, dict[str, str]] = {
    "metrics": {
        **dict.fromkeys(("NDCG@10", "HR@10", "MRR", "Recall@20", "Coverage@10"), "rate"),
        "users": "count",
        "seconds": "seconds",
        "stage": "text",
        "evaluation": "text",
    },
    "training": {
        "name": "name",
        "seconds": "seconds",
        **dict.fromkeys(("epochs", "best_epoch", "parameters", "processes"), "count"),
        "history": "history",
        **dict.fromkeys(("settings", "valid_metrics", "distributed"), "object"),
        "data": "text",
    },
    "dataset": {
        **dict.fromkeys(("fingerprint", "source", "format"), "text"),
        **dict.fromkeys(("users", "items"), "count"),
    },
}


def check_sections(payload: dict, where: str) -> tuple[dict, dict, dict]:
    """``(metrics, training, dataset)`` of a config.json ``payload``, each field the lab reads checked
    (:data:`SECTION_FIELDS`): the one check of every way a model comes in (a folder, a zip, the app's
    workspace, the bundled demo).

    Decisions: a section may be absent (an empty one); one that is not an object, or a known field of the
    wrong type or range (``training.seconds: "abc"``, ``metrics.NDCG@10: "great"`` or ``[1]``,
    ``training.parameters: "many"``), refuses the whole file with one sentence naming the field: the file
    was edited or damaged, and its other numbers cannot be trusted either, so nothing is dropped silently.
    A metric written as null reads back as NaN (``to_jsonable`` wrote a NaN as null), so every page can
    test it with ``math.isfinite``; other null fields stay None (not recorded). Fields the lab does not
    read are carried as they are (a re-saved zip keeps them) and never shown.
    """
    sections = []
    for section, fields in SECTION_FIELDS.items():
        value = payload.get(section, {})
        if not isinstance(value, dict):
            raise MsliError(
                f"{where} has a {section} entry that is {_shown(value)}, not an object; the file was edited "
                f"or damaged, so {audience.fix('model.retrain')}."
            )
        for key, rule in fields.items():
            if key in value and not _RULES[rule][1](value[key]):
                raise MsliError(
                    f"{where} has {section}.{key} = {_shown(value[key])}, which must be {_RULES[rule][0]}; "
                    f"the file was edited or damaged, so {audience.fix('model.retrain')}."
                )
        sections.append(dict(value))
    metrics, training, dataset = sections
    for key, rule in SECTION_FIELDS["metrics"].items():
        if rule == "rate" and key in metrics and metrics[key] is None:
            metrics[key] = math.nan
    return metrics, training, dataset


def _shown(value: Any) -> str:
    """A JSON value as a sentence shows it: its JSON text, cut to 40 characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _finish_load(
    model: nn.Module, state: dict, kind: str, sections: tuple[dict, dict, dict], where: str, data
) -> LoadedModel:
    """The checked weights in the checked model; ``sections``: :func:`check_sections`'s answer."""
    metrics, training, dataset = sections
    _check_tensors(model, state, kind, where)
    model.load_state_dict(state)
    model.eval()
    fingerprint = str(dataset.get("fingerprint", ""))
    if data is not None:
        check_dataset(fingerprint, data, where, dataset)
    return LoadedModel(
        kind=kind,
        config=model.config,
        model=model,
        metrics=metrics,
        fingerprint=fingerprint,
        folder=where,
        training=training,
        dataset=dataset,
    )


def load_model(folder, data=None) -> LoadedModel:
    """Load a folder written by :func:`save_model`; with ``data``, refuse a model made for other data.
    Inside ``audience.app_user()`` the refusals end with what an app user can do (the app loads folders
    only from its workspace), not with a CLI flag."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder)
    hint = audience.fix("model.folder")
    if not path.exists():
        raise MsliError(f"Model folder {path} does not exist; {hint}.")
    if not path.is_dir():
        raise MsliError(f"{path} is a file, not a model folder; {hint}.")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise MsliError(
            f"Model folder {path} contains {pickles[0]}, a pickle-style file that could run code when "
            f"loaded; it is refused, so {audience.fix('model.pickle')}."
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise MsliError(
                f"Model folder {path} has no {name} (a model folder holds config.json and "
                f"model.safetensors); {hint}."
            )
    try:
        with open(path / CONFIG_FILE, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        with open(path / WEIGHTS_FILE, "rb") as fh:
            head = _read_header_bytes(fh)
    except OSError as err:
        raise MsliError(f"Cannot read model folder {path}: {err.strerror}; check its permissions.") from err
    kind, config, payload = _parse_config(raw, str(path / CONFIG_FILE))
    sections = check_sections(payload, str(path / CONFIG_FILE))  # before the weights
    model = _check_and_build(
        kind, config, _header_shapes(head, str(path / WEIGHTS_FILE)), str(path / CONFIG_FILE)
    )
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise MsliError(
            f"{path / WEIGHTS_FILE} is not a readable safetensors file ({err}); retrain the model."
        ) from err
    return _finish_load(model, state, kind, sections, str(path), data)


def load_zip(filename: str, payload: bytes, data=None) -> LoadedModel:
    """Load a model zip (as :func:`save_zip` writes it) from memory: nothing is unpacked to disk, and
    each member is read with a cap on its expanded size. Worded as in :func:`load_model`."""
    import io
    import zipfile

    from safetensors import SafetensorError
    from safetensors.torch import load

    hint = "upload a zip downloaded from the Train page (a folder with config.json and model.safetensors)"
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except (zipfile.BadZipFile, ValueError) as err:
        raise MsliError(f"{filename} is not a zip archive ({err}); {hint}.") from err
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        names = [Path(i.filename).name for i in infos]
        pickles = sorted(n for n in names if Path(n).suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise MsliError(
                f"{filename} contains {pickles[0]}, a pickle-style file that could run code; {hint}."
            )
        found = {}
        for wanted in (CONFIG_FILE, WEIGHTS_FILE):
            members = [i for i in infos if Path(i.filename).name == wanted]
            if len(members) != 1:
                raise MsliError(f"{filename} holds {len(members)} {wanted} files; {hint}.")
            found[wanted] = members[0]
        if Path(found[CONFIG_FILE].filename).parent != Path(found[WEIGHTS_FILE].filename).parent:
            raise MsliError(f"{filename} has config.json and model.safetensors in different folders; {hint}.")
        try:
            raw = _read_capped(archive, found[CONFIG_FILE], MAX_CONFIG_BYTES, filename)
            kind, config, meta = _parse_config(raw, f"{filename}: {CONFIG_FILE}")
            sections = check_sections(meta, f"{filename}: {CONFIG_FILE}")
            with archive.open(found[WEIGHTS_FILE]) as fh:
                head = _read_header_bytes(fh)
            shapes = _header_shapes(head, f"{filename}: {WEIGHTS_FILE}")
            model = _check_and_build(kind, config, shapes, filename)
            need = sum(v.numel() * v.element_size() for v in model.state_dict().values())
            weights = _read_capped(archive, found[WEIGHTS_FILE], 8 + len(head) + need + 1024, filename)
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as err:
            raise MsliError(f"{filename} is damaged ({err}); download the model again.") from err
    try:
        state = load(weights)
    except (SafetensorError, ValueError) as err:
        raise MsliError(
            f"{filename}: {WEIGHTS_FILE} is not a readable safetensors file ({err}); {hint}."
        ) from err
    return _finish_load(model, state, kind, sections, filename, data)


def _read_capped(archive, info, cap: int, filename: str) -> bytes:
    """A zip member's bytes, refusing to expand past ``cap`` (whatever its header claims)."""
    with archive.open(info) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise MsliError(
            f"{info.filename} in {filename} expands to more than {cap:,} bytes, more than a model of its "
            "config can hold; it is not a model saved by this lab."
        )
    return data


def check_dataset(fingerprint: str, data, where: str, dataset: dict | None = None) -> None:
    """Refuse a model trained on other data: ids would mean different items."""
    if fingerprint != data.fingerprint:
        trained_on = (dataset or {}).get("source") or "another dataset"
        raise MsliError(
            f"Model {where} was trained on {trained_on} (fingerprint {fingerprint or 'unknown'}), not on "
            f"{data.source} (fingerprint {data.fingerprint}); load the data it was trained on or retrain it."
        )
