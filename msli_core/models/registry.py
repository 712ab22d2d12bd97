"""Building, saving and loading models. A saved model is a folder (DESIGN §5):

- ``config.json``: ``kind``, ``config`` (the dataclass fields), ``dataset`` (fingerprint, source, sizes),
  ``n_items``, ``metrics``, ``training`` (settings), ``versions``;
- ``model.safetensors``: the state dict (tensors only — nothing is ever unpickled; a folder holding a
  pickle file is refused outright, and ``torch.load`` is never called on user files).

Every way a folder can be wrong ends in :class:`MsliError` with one sentence naming the folder and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from msli_core.errors import MsliError
from msli_core.models.baselines import ItemKNN, ItemKNNConfig, Popularity, PopularityConfig
from msli_core.models.cross_encoder import CrossEncoder, CrossEncoderConfig
from msli_core.models.msli import MSLIConfig, MSLIModel

KINDS = ("msli", "two-tower", "cross-encoder", "popularity", "item-knn")
NEURAL_KINDS = ("msli", "two-tower", "cross-encoder")
LATE_INTERACTION_KINDS = ("msli", "two-tower")
FORMAT = "msli-model/1"
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


def save_model(
    model: nn.Module, folder, *, data, metrics: dict | None = None, extra: dict | None = None
) -> Path:
    """Write ``model`` to ``folder`` (config.json + model.safetensors), all or nothing."""
    from safetensors.torch import save_file

    from msli_core.cli import _jsonable
    from msli_core.outputs import atomic_output_dir

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
    with atomic_output_dir(folder) as tmp:
        (tmp / CONFIG_FILE).write_text(
            json.dumps(_jsonable(payload), indent=2, allow_nan=False), encoding="utf-8"
        )
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT, "kind": kind})
    return Path(folder)


def load_model(folder, data=None) -> LoadedModel:
    """Load a folder written by :func:`save_model`; with ``data``, refuse a model made for other data."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder)
    hint = "pass the --out folder of `msli train`"
    if not path.exists():
        raise MsliError(f"Model folder {path} does not exist; {hint}.")
    if not path.is_dir():
        raise MsliError(f"{path} is a file, not a model folder; {hint}.")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise MsliError(
            f"Model folder {path} contains {pickles[0]}, a pickle-style file that could run code when "
            "loaded; "
            "it is refused, so retrain with `msli train` (which saves config.json + model.safetensors)."
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise MsliError(
                f"Model folder {path} has no {name}; {hint} (it holds config.json and model.safetensors)."
            )
    try:
        payload = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MsliError(
            f"{path / CONFIG_FILE} is not valid JSON ({err}); retrain the model with `msli train`."
        ) from err
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict) or "kind" not in payload:
        raise MsliError(
            f"{path / CONFIG_FILE} lacks the 'kind' and 'config' entries of a saved model; retrain it."
        )
    kind = payload["kind"]
    if kind not in KINDS:
        raise MsliError(
            f"{path / CONFIG_FILE} names an unknown model kind {kind!r}; retrain it with `msli train`."
        )
    model = build_model(kind, **payload["config"])
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise MsliError(
            f"{path / WEIGHTS_FILE} is not a readable safetensors file ({err}); retrain the model."
        ) from err
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        what = (
            (missing and f"missing {missing[0]}")
            or (unexpected and f"unexpected {unexpected[0]}")
            or f"shape of {wrong[0]}"
        )
        raise MsliError(f"{path / WEIGHTS_FILE} does not match its config.json ({what}); retrain the model.")
    model.load_state_dict(state)
    model.eval()
    dataset = payload.get("dataset") or {}
    fingerprint = str(dataset.get("fingerprint", ""))
    if data is not None:
        check_dataset(fingerprint, data, str(path), dataset)
    return LoadedModel(
        kind=kind,
        config=model.config,
        model=model,
        metrics=payload.get("metrics") or {},
        fingerprint=fingerprint,
        folder=str(path),
        training=payload.get("training") or {},
        dataset=dataset,
    )


def check_dataset(fingerprint: str, data, where: str, dataset: dict | None = None) -> None:
    """Refuse a model trained on other data: ids would mean different items."""
    if fingerprint != data.fingerprint:
        trained_on = (dataset or {}).get("source") or "another dataset"
        raise MsliError(
            f"Model {where} was trained on {trained_on} (fingerprint {fingerprint or 'unknown'}), not on "
            f"{data.source} (fingerprint {data.fingerprint}); load the data it was trained on or retrain it."
        )
