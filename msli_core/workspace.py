"""The app's local workspace: what a user trains and measures outlives a reload or a new tab.

A folder under the platform's user data directory (``platformdirs.user_data_dir("msli-lab")``, or
``MSLI_WORKSPACE``) holds:

- ``models/<slug>/``: every model trained in the app, as ``msli train`` writes one (``config.json`` +
  ``model.safetensors``, with its settings, metrics, per-epoch history and the dataset fingerprint), so
  a model is still refused on data it was not trained on;
- ``sweeps/<UTC time>/``: every latency sweep, as ``msli bench --out`` writes one (rows, meta).

Writes go through the project's atomic output folders, and :func:`clear` removes only what this module
wrote (a model folder msli recognises, a sweep with msli's output marker); anything else a user put
there stays. Nothing here imports streamlit.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from msli_core.errors import MsliError

MODELS = "models"
SWEEPS = "sweeps"


def workspace_dir() -> Path:
    """The workspace folder (created on first write, not here)."""
    override = os.environ.get("MSLI_WORKSPACE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("msli-lab")) / "workspace"


def save_model(trained, data, root: Path | None = None) -> Path:
    """Write a :class:`~msli_core.trained.TrainedModel` trained on ``data`` into ``models/<slug>/``
    (an earlier model of the same name is replaced, atomically)."""
    from msli_core.models.registry import save_model as write
    from msli_core.trained import slug

    folder = (root or workspace_dir()) / MODELS / slug(trained.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    extra = {**trained.loaded.training, "name": trained.name, "seconds": trained.seconds,
             "history": trained.history}  # fmt: skip
    return write(trained.loaded.model, folder, data=data, metrics=trained.metrics, extra=extra)


def load_models(root: Path | None = None) -> tuple[list, list[str]]:
    """Every model of the workspace as a :class:`~msli_core.trained.TrainedModel` (tied to the dataset
    fingerprint it was trained on), and one sentence per folder that did not load."""
    from msli_core.models.registry import load_model
    from msli_core.trained import TrainedModel

    folder = (root or workspace_dir()) / MODELS
    models, problems = [], []
    for path in sorted(p for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []:
        try:
            loaded = load_model(path)
        except MsliError as err:
            problems.append(str(err))
            continue
        training = dict(loaded.training)
        history = training.pop("history", []) if isinstance(training.get("history"), list) else []
        name = str(training.get("name") or path.name)
        seconds = float(training.get("seconds", 0.0) or 0.0)
        models.append(TrainedModel(name, loaded, dict(loaded.metrics), seconds, loaded.fingerprint, history))
    return models, problems


def save_sweep(result, root: Path | None = None) -> Path:
    """Write a :class:`~msli_core.serving.bench.BenchResult` into ``sweeps/<UTC time>/``."""
    from msli_core.serving.bench import write_outputs

    folder = (root or workspace_dir()) / SWEEPS / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder.parent.mkdir(parents=True, exist_ok=True)
    write_outputs(result, folder)
    return folder


def latest_sweep(root: Path | None = None) -> tuple[list[dict], dict] | None:
    """The rows and meta of the newest sweep of the workspace, or None."""
    from msli_core.serving.report import read_sweep

    folder = (root or workspace_dir()) / SWEEPS
    for path in sorted((p for p in folder.glob("*") if p.is_dir()), reverse=True) if folder.is_dir() else []:
        sweep = read_sweep(path)
        if sweep is not None:
            return sweep
    return None


def contents(root: Path | None = None) -> dict[str, Any]:
    """What the workspace holds: its path, and how many models and sweeps."""
    base = root or workspace_dir()

    def count(name: str) -> int:
        folder = base / name
        return sum(1 for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else 0

    return {"path": str(base), "models": count(MODELS), "sweeps": count(SWEEPS)}


def clear(root: Path | None = None) -> int:
    """Remove the models and sweeps this module wrote (recognised as msli's own outputs); return how
    many folders went. Anything else in the workspace (a user's own file or folder) is left alone."""
    from msli_core.models.registry import CONFIG_FILE, FORMAT
    from msli_core.outputs import MARKER

    base = root or workspace_dir()
    removed = 0
    for name in (MODELS, SWEEPS):
        folder = base / name
        for path in list(folder.glob("*")) if folder.is_dir() else []:
            if not path.is_dir() or path.is_symlink():
                continue
            if name == MODELS:
                try:
                    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                ours = isinstance(config, dict) and config.get("format") == FORMAT
                ours = ours and {p.name for p in path.iterdir()} <= {CONFIG_FILE, "model.safetensors"}
            else:
                ours = (path / MARKER).is_file()
            if ours:
                shutil.rmtree(path)
                removed += 1
    return removed
