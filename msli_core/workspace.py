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
import re
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


def _identity(config: dict) -> tuple[str, str] | None:
    """(the name a saved model was asked to have, its dataset fingerprint): what a new save replaces. The
    asked name is ``training.base_name``, or for a save of a release that did not record it,
    ``trained.base_name`` of the name it was saved under."""
    from msli_core.trained import base_name

    training, dataset = config.get("training"), config.get("dataset")
    if not isinstance(training, dict) or not isinstance(dataset, dict):
        return None
    asked, name = training.get("base_name"), training.get("name")
    if not (isinstance(asked, str) and asked):
        asked = base_name(name) if isinstance(name, str) and name else None
    fingerprint = dataset.get("fingerprint")
    return (asked, fingerprint) if asked and isinstance(fingerprint, str) else None


def model_folder(name: str, fingerprint: str, root: Path | None = None, *, base: str | None = None) -> Path:
    """Where a model called ``name`` (asked to be called ``base``, else ``name``), trained on the dataset
    ``fingerprint``, is saved: the folder of an earlier save asked to have the same name on the same
    dataset, whatever it was called in its session and whatever its folder (replaced); else
    ``models/<slug>``, or the first ``<slug>-N``, that is free (see the module's decisions)."""
    from msli_core.trained import slug

    folder = (root or workspace_dir()) / MODELS
    wanted = (base or name, fingerprint)
    try:
        earlier = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        earlier = []
    for path in earlier:
        config = _model_config(path)
        if config is not None and _identity(config) == wanted:
            return path
    for n in range(1, MAX_SUFFIX + 1):
        path = folder / (slug(name) if n == 1 else f"{slug(name)}-{n}")
        if not path.exists() and not path.is_symlink():
            return path
    raise MsliError(
        f"The workspace {folder} already holds {MAX_SUFFIX} folders named after {slug(name)}, so this model "
        "was not saved there; clear the workspace on Home or move those folders away."
    )


def save_model(trained, data, root: Path | None = None, *, label: str | None = None) -> Path:
    """Write a :class:`~msli_core.trained.TrainedModel` trained on ``data`` into :func:`model_folder`,
    atomically; :class:`MsliError` (one sentence, nothing written) when the workspace cannot be written.
    ``label``: the Data page's label of ``data``, recorded so that a reload tells the model apart by it,
    as the Train page did (without it, by :func:`source_label`)."""
    from msli_core.models.registry import save_model as write

    base = root or workspace_dir()
    _check_writable(base)
    asked = trained.base_name or trained.name
    folder = model_folder(trained.name, data.fingerprint, base, base=asked)
    extra = {**trained.loaded.training, "name": trained.name, "base_name": asked, "seconds": trained.seconds,
             "history": trained.history}  # fmt: skip
    if label:
        extra["dataset_label"] = label
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return write(trained.loaded.model, folder, data=data, metrics=trained.metrics, extra=extra)
    except OSError as err:
        raise MsliError(
            f"Could not save {trained.name} in the workspace {base} ({err.strerror or err}); free some "
            f"space there or restart the app with {ENV} set to another folder."
        ) from err


def source_label(source: str) -> str:
    """The Data page's label of a dataset, as near as its recorded source (``InteractionData.source``)
    tells it, for a model saved without one: an archive by its name, a folder by its name when its
    ratings file (``detect.MARKERS``: u.data, ratings.dat, ratings.csv) was read, else the file.

    >>> source_label("/home/me/ml-mini/ratings.csv"), source_label("data/ml-100k.zip:ml-100k/u.data")
    ('ml-mini', 'ml-100k.zip')
    >>> source_label("/home/me/events.parquet"), source_label("synthetic: 300 users, 2000 items, seed 7")
    ('events.parquet', 'synthetic: 300 users, 2000 items, seed 7')
    """
    from msli_core.data.detect import MARKERS

    head, archive, _ = source.partition(".zip:")  # an archive member: "display:NAME"
    parts = re.split(r"[/\\]", (head + ".zip" if archive else source).rstrip("/\\"))
    if not archive and len(parts) > 1 and parts[-1] in {name for name, _ in MARKERS}:
        return parts[-2]
    return parts[-1]


def load_models(root: Path | None = None) -> tuple[list, list[str]]:
    """Every model of the workspace as a :class:`~msli_core.trained.TrainedModel` (tied to the dataset
    fingerprint it was trained on), and one sentence per folder that did not load (skipped). Each is
    checked as any model is (``registry.load_model``: config, weights, the metrics/training/dataset
    sections), and its sentences name what an app user can do.

    Each model is named by ``trained.session_name``, the rule the Train page named it by when it was
    saved: the name it was saved under, unless an earlier folder's model of another dataset holds it (two
    tabs saved one name on two datasets); then ``name · <its dataset>`` as the Train page would have told
    it apart, by the Data page's label recorded with it, else by :func:`source_label`."""
    from msli_core.models.registry import load_model
    from msli_core.trained import TrainedModel, base_name, session_name

    folder = (root or workspace_dir()) / MODELS
    models, problems = [], []
    try:
        paths = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.is_dir() else []
    except OSError as err:
        return [], [
            f"The workspace folder {folder} cannot be read ({err.strerror or err}); check its permissions."
        ]
    named: dict[str, TrainedModel] = {}
    for path in paths:
        try:
            loaded = load_model(path)  # worded for the app: app.py runs every page inside audience.app_user()
        except MsliError as err:
            problems.append(str(err))
            continue
        training = dict(loaded.training)
        history = training.pop("history", None) or []
        saved = str(training.get("name") or path.name)
        asked = training.get("base_name")
        asked = asked if isinstance(asked, str) and asked else base_name(saved)
        seconds = float(training.get("seconds") or 0.0)
        model = TrainedModel(saved, loaded, dict(loaded.metrics), seconds, loaded.fingerprint, history, asked)
        label = training.get("dataset_label")
        label = label if isinstance(label, str) else source_label(str(loaded.dataset.get("source") or ""))
        model.name = session_name(saved, model.dataset_fingerprint, named, label, base=asked)
        named[model.name] = model
        models.append(model)
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
