"""The app's local workspace: what a user trains and measures outlives a reload or a new tab.

A folder under the platform's user data directory (``platformdirs.user_data_dir("msli-lab")``, or
``MSLI_WORKSPACE``) holds:

- ``models/<slug>/``: every model trained in the app, as ``msli train`` writes one (``config.json`` +
  ``model.safetensors``, with its name, settings, metrics, per-epoch history and the dataset fingerprint),
  so a model is still refused on data it was not trained on;
- ``sweeps/<UTC time>/``: every latency sweep, as ``msli bench --out`` writes one (rows, meta, marker).

Decisions:

- Only what this module wrote is replaced, counted or cleared, by the rule ``--out`` replaces by
  (``outputs.msli_output``): a model folder is msli's when its config.json has msli's format, of any
  version (a model an older release saved is counted and cleared, though it no longer loads), and it holds
  only config.json and model.safetensors (:func:`is_msli_model`); a sweep folder when it has msli's
  output marker and only the files it lists (:func:`is_msli_sweep`). A user's own files and folders stay,
  are not counted, and are never overwritten.
- A model is saved in ``models/<slug>`` where an earlier save of the same name trained on the same dataset
  is replaced (retraining the same model on the same data); a folder holding anything else (a model of
  another dataset, a slug that two names share, a user's folder) is kept, and the model goes to
  ``<slug>-2``, ``<slug>-3``, … instead. Models of different datasets are never merged.
- A workspace that cannot be written (``MSLI_WORKSPACE`` names a file, a folder without write permission)
  is one sentence with the fix (:func:`problem`), raised by the writes as :class:`MsliError`; the app shows
  it where the write happened and on Home.
- Bad folders are skipped with one sentence each (a model folder that does not load, a sweep whose rows
  are not the bench's schema); the app shows them as warnings and keeps going.

Nothing here imports streamlit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from msli_core.errors import MsliError

MODELS = "models"
SWEEPS = "sweeps"
ENV = "MSLI_WORKSPACE"
MAX_SUFFIX = 100  # models/<slug>-2 … -100: beyond that, a name is refused rather than searched further


def workspace_dir() -> Path:
    """The workspace folder (created on first write, not here)."""
    override = os.environ.get(ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("msli-lab")) / "workspace"


def problem(root: Path | None = None) -> str | None:
    """Why models and sweeps cannot be kept in the workspace, as one sentence with the fix; None when
    they can. Checks what a write would meet: the workspace, ``models/`` and ``sweeps/`` being files, or
    the nearest existing folder on the way to each taking no new entry (a probe folder made and removed,
    as root passes ``os.access`` even on a read-only mount)."""

    base = root or workspace_dir()
    lost = "so the models you train and the sweeps you run are not kept after this session"
    fix = f"restart the app with {ENV} set to a folder you can write"
    try:
        return _problem(base, lost, fix)
    except OSError as err:  # a folder on the way refuses even a look (PermissionError)
        return f"The workspace {base} cannot be read ({err.strerror or err}), {lost}; {fix}."


def _problem(base: Path, lost: str, fix: str) -> str | None:
    from msli_core.outputs import nearest_existing

    for path in (base, base / MODELS, base / SWEEPS):
        if path.exists() and not path.is_dir():
            what = f"The workspace {base}" if path == base else f"The workspace entry {path}"
            return f"{what} is a file, not a folder, {lost}; {fix}."
    for target in (base / MODELS, base / SWEEPS):
        existing = nearest_existing(target)
        if not existing.is_dir():
            return f"The workspace {base} cannot be created ({existing} is a file), {lost}; {fix}."
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".msli-probe-", dir=existing))
        except OSError as err:
            why = f"{existing} takes no new folder: {err.strerror or err}"
            return f"The workspace {base} cannot be written ({why}), {lost}; {fix}."
    return None


def _check_writable(root: Path) -> None:
    if sentence := problem(root):
        raise MsliError(sentence)


def _model_config(path: Path) -> dict | None:
    """The config.json of a model folder msli wrote (:func:`is_msli_model`), else None."""
    from msli_core.models.registry import CONFIG_FILE

    if not is_msli_model(path):
        return None
    try:
        with open(path / CONFIG_FILE, encoding="utf-8") as fh:
            config = json.loads(fh.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return None
    return config if isinstance(config, dict) else None


def is_msli_model(path: Path) -> bool:
    """Whether ``path`` is a model folder msli wrote (what :func:`clear` may remove): its config.json says
    an msli model format of any version (``msli-model/1``, ``/2``, ...: a model an older release saved is
    still counted and cleared, though it no longer loads) and it holds nothing else but its weights
    (``outputs.msli_output``, the rule ``--out`` replaces by)."""
    from msli_core.outputs import msli_output

    return msli_output(path) == "model"


def is_msli_sweep(path: Path) -> bool:
    """Whether ``path`` is a sweep folder msli wrote: its output marker says kind bench, and it holds only
    the files the marker lists (``outputs.msli_output``); a user's file added to it keeps it from
    :func:`clear`."""
    from msli_core.outputs import msli_output

    return msli_output(path) == "bench"


def model_folder(name: str, fingerprint: str, root: Path | None = None) -> Path:
    """Where a model called ``name``, trained on the dataset ``fingerprint``, is saved: ``models/<slug>``
    when that is free or holds an earlier save of the same name and dataset (replaced), else the first
    ``<slug>-N`` that is (see the module's decisions)."""
    from msli_core.trained import slug

    folder = (root or workspace_dir()) / MODELS
    for n in range(1, MAX_SUFFIX + 1):
        path = folder / (slug(name) if n == 1 else f"{slug(name)}-{n}")
        if not path.exists() and not path.is_symlink():
            return path
        config = _model_config(path)
        if config is not None:
            training, dataset = config.get("training"), config.get("dataset")
            same_name = isinstance(training, dict) and training.get("name") == name
            same_data = isinstance(dataset, dict) and dataset.get("fingerprint") == fingerprint
            if same_name and same_data:
                return path
    raise MsliError(
        f"The workspace {folder} already holds {MAX_SUFFIX} folders named after {slug(name)}, so this model "
        "was not saved there; clear the workspace on Home or move those folders away."
    )


def save_model(trained, data, root: Path | None = None) -> Path:
    """Write a :class:`~msli_core.trained.TrainedModel` trained on ``data`` into :func:`model_folder`,
    atomically; :class:`MsliError` (one sentence, nothing written) when the workspace cannot be written."""
    from msli_core.models.registry import save_model as write

    base = root or workspace_dir()
    _check_writable(base)
    folder = model_folder(trained.name, data.fingerprint, base)
    extra = {**trained.loaded.training, "name": trained.name, "seconds": trained.seconds,
             "history": trained.history}  # fmt: skip
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return write(trained.loaded.model, folder, data=data, metrics=trained.metrics, extra=extra)
    except OSError as err:
        raise MsliError(
            f"Could not save {trained.name} in the workspace {base} ({err.strerror or err}); free some "
            f"space there or restart the app with {ENV} set to another folder."
        ) from err


def load_models(root: Path | None = None) -> tuple[list, list[str]]:
    """Every model of the workspace as a :class:`~msli_core.trained.TrainedModel` (tied to the dataset
    fingerprint it was trained on), and one sentence per folder that did not load (skipped). Each is
    checked as any model is (``registry.load_model``: config, weights, the metrics/training/dataset
    sections), and its sentences name what an app user can do."""
    from msli_core.models.registry import load_model
    from msli_core.trained import TrainedModel

    folder = (root or workspace_dir()) / MODELS
    models, problems = [], []
    try:
        paths = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []
    except OSError as err:
        return [], [
            f"The workspace folder {folder} cannot be read ({err.strerror or err}); check its permissions."
        ]
    for path in paths:
        try:
            loaded = load_model(path, for_app=True)
        except MsliError as err:
            problems.append(str(err))
            continue
        training = dict(loaded.training)
        history = training.pop("history", None) or []
        name = str(training.get("name") or path.name)
        seconds = float(training.get("seconds") or 0.0)
        models.append(TrainedModel(name, loaded, dict(loaded.metrics), seconds, loaded.fingerprint, history))
    return models, problems


def _unreadable(folder: Path, err: OSError) -> str:
    return (
        f"The workspace folder {folder} cannot be read ({err.strerror or err}); give the app read access to "
        f"it or restart the app with {ENV} set to another folder."
    )


def save_sweep(result, root: Path | None = None) -> Path:
    """Write a :class:`~msli_core.serving.bench.BenchResult` into ``sweeps/<UTC time>/`` (``-2``, … when
    a sweep of the same second is there); :class:`MsliError` when the workspace cannot be written."""
    from msli_core.serving.bench import write_outputs

    base = root or workspace_dir()
    _check_writable(base)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = base / SWEEPS / stamp
    for n in range(2, MAX_SUFFIX + 1):
        if not folder.exists() and not folder.is_symlink():
            break
        folder = base / SWEEPS / f"{stamp}-{n}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        write_outputs(result, folder)
    except OSError as err:
        raise MsliError(
            f"Could not save the sweep in the workspace {base} ({err.strerror or err}); free some space "
            f"there or restart the app with {ENV} set to another folder."
        ) from err
    return folder


def latest_sweep(root: Path | None = None) -> tuple[tuple[list[dict], dict] | None, list[str]]:
    """The rows and meta of the newest sweep of the workspace that the pages can show (None when there
    is none), and one sentence per newer sweep folder that was skipped because its rows or meta are not
    the schema ``msli bench`` writes (``report.read_sweep``). A folder without bench.json is not a sweep
    and is passed over in silence."""
    from msli_core.serving.report import read_sweep

    folder = (root or workspace_dir()) / SWEEPS
    problems = []
    try:
        paths = sorted((p for p in folder.glob("*") if p.is_dir()), reverse=True) if folder.is_dir() else []
    except OSError as err:
        return None, [
            f"The workspace folder {folder} cannot be read ({err.strerror or err}); check its permissions."
        ]
    for path in paths:
        fix = (
            "the app skips it (Clear the workspace on Home removes it)"
            if is_msli_sweep(path)
            else "the app skips it, so move that folder out of the workspace"
        )
        try:
            sweep = read_sweep(path, fix=fix)
        except MsliError as err:
            problems.append(str(err))
            continue
        if sweep is not None:
            return sweep, problems
    return None, problems


def contents(root: Path | None = None) -> dict[str, Any]:
    """What the workspace holds: its path, how many models and sweeps msli wrote there (a user's own
    folders are not counted), and :func:`problem` (None when it can be written)."""
    base = root or workspace_dir()

    def count(name: str, ours) -> int:
        folder = base / name
        try:
            return sum(1 for p in folder.glob("*") if ours(p)) if folder.is_dir() else 0
        except OSError:
            return 0

    return {
        "path": str(base),
        "models": count(MODELS, is_msli_model),
        "sweeps": count(SWEEPS, is_msli_sweep),
        "problem": problem(base),
    }


def clear(root: Path | None = None) -> int:
    """Remove the models and sweeps this module wrote (:func:`is_msli_model`, :func:`is_msli_sweep`);
    return how many folders went. Anything else in the workspace (a user's own file or folder) is left
    alone."""
    base = root or workspace_dir()
    removed = 0
    for name, ours in ((MODELS, is_msli_model), (SWEEPS, is_msli_sweep)):
        folder = base / name
        for path in list(folder.glob("*")) if folder.is_dir() else []:
            if ours(path):
                shutil.rmtree(path)
                removed += 1
    return removed
