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
- A model replaces its earlier self: the folder of an earlier save asked to have the same name on the
  same dataset (retraining the same model on the same data; ``training.base_name`` and the dataset
  fingerprint, whatever its folder). Otherwise it goes to a new ``models/<slug>``, or ``<slug>-2``,
  ``<slug>-3``, … when a folder holds anything else (a model of another dataset, a slug that two names
  share, a user's folder, another save). Models of different datasets are never merged.
- Every save is written whole in a hidden folder of the workspace (``.saving-*``) and moved into place by
  one rename (``outputs.place_dir``), with the workspace's lock held (:func:`_locked`: ``flock`` on the
  hidden ``.lock``, so the threads of one app and other app processes take turns) while it chooses its
  name and moves in; a rename onto a taken name fails besides, so two saves at once (two tabs, two
  threads; two sweeps in one second) never take one folder. Readers skip hidden names and read under the
  shared lock, so they never see a half-written folder, or a model between its old and new folder. A
  replaced folder is first renamed aside to a name unique to its process, thread and call, and removed
  once the new one is in place.
- A workspace that cannot be written (``MSLI_WORKSPACE`` names a file, a folder without write permission)
  is one sentence with the fix (:func:`problem`), raised by the writes as :class:`MsliError`; the app shows
  it where the write happened and on Home.
- Bad folders are skipped with one sentence each (a model folder that does not load, a sweep whose rows
  are not the bench's schema); the app shows them as warnings and keeps going.

Nothing here imports streamlit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from msli_core.errors import MsliError

try:
    import fcntl
except ImportError:  # Windows: saves take turns within this process only (_locked)
    fcntl = None

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
    fix = f"ask whoever runs the app to restart it with {ENV} set to a folder it can write"
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


def _listing(folder: Path) -> list[Path]:
    """The entries of ``models/`` or ``sweeps/`` that readers look at, by name: not the hidden ones, which
    are saves being written (``.saving-*``) and folders being replaced or removed (``.<name>.old-*``), so
    a reader never meets a half-written folder."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


@contextlib.contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A hidden folder inside ``folder`` (so on its file system, where a rename moves a whole folder at
    once) to write a save in; removed afterwards with whatever is left in it."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


LOCK = ".lock"  # <workspace>/.lock: the file saves, Clear and readers lock (hidden, never removed)
_TURNS = threading.Lock()  # where no file lock can be had: this process's saves take turns


@contextlib.contextmanager
def _locked(base: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the workspace's lock (``fcntl.flock`` on its hidden :data:`LOCK` file, which every thread and
    process using the workspace opens for itself): exclusive while a save moves its folder in or Clear
    takes folders away, so they take turns and a name looked at is still what it was when it is used;
    shared while a reader reads, so it never meets a model between its old and new folder, or a sweep
    being removed. Where no file lock can be had (no ``fcntl``, a file system without locks, a folder
    that takes no new file), saves take turns within this process and readers go on unlocked."""
    held_here = getattr(_HELD, "bases", None)
    if held_here is None:
        held_here = _HELD.bases = set()
    key = os.path.abspath(base)
    if key in held_here:  # nested in this thread (a reader inside a save): the outer lock covers it; a
        # second flock on a new handle, or _TURNS taken twice, would wait on this thread itself
        yield
        return
    held_here.add(key)
    try:
        with _lock_file(base, shared):
            yield
    finally:
        held_here.discard(key)


_HELD = threading.local()  # .bases: the workspaces whose lock this thread holds


@contextlib.contextmanager
def _lock_file(base: Path, shared: bool) -> Iterator[None]:
    """:func:`_locked`'s lock itself (its docstring says what it guards)."""
    handle, held = None, False
    try:
        if base.is_dir() and fcntl is not None:
            # never follows a link out of the workspace, never waits on a FIFO put there: only a regular
            # file is locked, anything else is treated like a folder that takes no lock file
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_NOFOLLOW
            handle = os.open(base / LOCK, flags, 0o644)
            if stat.S_ISREG(os.fstat(handle).st_mode):
                fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                held = True
    except OSError:
        pass
    try:
        with contextlib.nullcontext() if held or shared else _TURNS:
            yield
    finally:
        if handle is not None:
            os.close(handle)


def _publish(built: Path, folder: Path, stem: str, earlier=None) -> Path:
    """Move the complete folder ``built`` into ``folder``: in place of its earlier self (the first entry
    ``earlier(path)`` accepts, replaced), else at the first free one of ``stem``, ``stem-2``, …; by
    ``outputs.place_dir``, whose rename onto a taken name fails, so two saves never take one folder and a
    save never replaces anything but its earlier self. A name another save took meanwhile is looked at
    again (it may be this model's earlier self now) and passed over otherwise."""
    from msli_core.outputs import place_dir

    for _ in range(MAX_SUFFIX):  # each turn ends because another save took the name it was about to use
        selves = [p for p in _listing(folder) if earlier(p)] if earlier is not None else []
        if selves:
            if place_dir(built, selves[0], may_replace=earlier):
                return selves[0]
            continue  # another save of this model got there first: replace that one in turn
        for n in range(1, MAX_SUFFIX + 1):
            path = folder / (stem if n == 1 else f"{stem}-{n}")
            if os.path.lexists(path):
                continue
            if place_dir(built, path):
                return path
            break  # taken meanwhile: look again
        else:
            raise MsliError(
                f"The workspace {folder} already holds {MAX_SUFFIX} folders named after {stem}, so this was "
                "not saved there; clear the workspace on Home or move those folders away."
            )
    raise MsliError(
        f"The workspace {folder} kept changing while this was saved, so it was not; save it again."
    )


def save_model(trained, data, root: Path | None = None, *, label: str | None = None) -> Path:
    """Write a :class:`~msli_core.trained.TrainedModel` trained on ``data`` into ``models/``: in place of
    its earlier self (a save asked to have the same name on the same dataset, :func:`_identity`, whatever
    its folder), else in a new ``<slug>``, ``<slug>-2``, … (:func:`_publish`). It is written whole in a
    hidden folder of the workspace first and moved in by one rename, so a reader never sees it half
    written and two saves at once (two tabs, two threads) never take one folder. :class:`MsliError` (one
    sentence, nothing written) when the workspace cannot be written. ``label``: the Data page's label of
    ``data``, recorded so that a reload tells the model apart by it, as the Train page did (without it,
    by :func:`source_label`)."""
    from msli_core.models.registry import save_model as write
    from msli_core.trained import slug

    base = root or workspace_dir()
    _check_writable(base)
    asked = trained.base_name or trained.name
    wanted = (asked, data.fingerprint)
    extra = {**trained.loaded.training, "name": trained.name, "base_name": asked, "seconds": trained.seconds,
             "history": trained.history}  # fmt: skip
    if label:
        extra["dataset_label"] = label

    def earlier(path: Path) -> bool:
        config = _model_config(path)
        return config is not None and _identity(config) == wanted

    def build(staging: Path) -> Path:
        return write(trained.loaded.model, staging / "model", data=data, metrics=trained.metrics, extra=extra)

    return _save(base, MODELS, trained.name, build, slug(trained.name), earlier)


def _save(base: Path, kind: str, what: str, build, stem: str, earlier=None) -> Path:
    """The one way a save happens: ``build(staging)`` writes the complete folder inside a hidden staging
    folder of ``base/kind`` and returns it; it is moved in under the workspace's lock
    (:func:`_publish`). A file system error is one sentence naming ``what`` could not be saved."""
    try:
        with _staging(base / kind) as staging:
            built = build(staging)
            with _locked(base):
                return _publish(built, base / kind, stem, earlier)
    except OSError as err:
        raise MsliError(
            f"Could not save {what} in the workspace {base} ({err.strerror or err}); free some space "
            f"there or ask whoever runs the app to restart it with {ENV} set to another folder."
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
    base = root or workspace_dir()
    with _locked(base, shared=True):  # no save or Clear moves a folder while it is read
        return _load_models(base / MODELS)


def _load_models(folder: Path) -> tuple[list, list[str]]:
    from msli_core.models.registry import load_model
    from msli_core.trained import TrainedModel, base_name, session_name

    models, problems = [], []
    try:
        paths = [p for p in _listing(folder) if p.is_dir()]
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
        f"it or ask whoever runs the app to restart it with {ENV} set to another folder."
    )


def save_sweep(result, root: Path | None = None) -> Path:
    """Write a :class:`~msli_core.serving.bench.BenchResult` into a new ``sweeps/<UTC time>/`` (``-2``, …
    when a sweep of the same second is there or is saved at the same moment): written whole in a hidden
    folder first and moved in by one rename (:func:`_publish`, which never replaces a folder);
    :class:`MsliError` when the workspace cannot be written."""
    from msli_core.serving.bench import write_outputs

    base = root or workspace_dir()
    _check_writable(base)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())

    def build(staging: Path) -> Path:
        write_outputs(result, staging / "sweep")
        _check_sweep_size(staging / "sweep")  # a sweep no session could read back is not kept
        return staging / "sweep"

    return _save(base, SWEEPS, "the sweep", build, stamp)


def _check_sweep_size(folder: Path) -> None:
    """:class:`MsliError` when a written sweep is over :data:`report.MAX_SWEEP_BYTES`, the size
    :func:`latest_sweep` reads back: saving it would leave every new session a warning instead."""
    from msli_core.serving.report import MAX_SWEEP_BYTES

    size = max(path.stat().st_size for path in folder.iterdir() if path.suffix == ".json")
    if size > MAX_SWEEP_BYTES:
        raise MsliError(
            f"The sweep is kept in this session only: its rows take {size / (1 << 20):.1f} MiB, over the "
            f"{MAX_SWEEP_BYTES >> 20} MiB a saved sweep may have (a sweep with fewer values in each setting "
            "is saved)."
        )


def _sweep_order(path: Path) -> tuple[str, int]:
    """Sort key of a sweep folder, oldest first: its time, then its number (``-10`` after ``-9``)."""
    stem, dash, number = path.name.rpartition("-")
    return (stem, int(number)) if dash and number.isdigit() else (path.name, 1)


def latest_sweep(root: Path | None = None) -> tuple[tuple[list[dict], dict] | None, list[str]]:
    """The rows and meta of the newest sweep of the workspace that the pages can show (None when there
    is none), and one sentence per newer sweep folder that was skipped because its rows or meta are not
    the schema ``msli bench`` writes (``report.read_sweep``). A folder without bench.json is not a sweep
    and is passed over in silence."""
    base = root or workspace_dir()
    with _locked(base, shared=True):  # Clear removes no sweep while it is read
        return _latest_sweep(base / SWEEPS)


def _latest_sweep(folder: Path) -> tuple[tuple[list[dict], dict] | None, list[str]]:
    from msli_core.serving.report import read_sweep

    problems = []
    try:
        paths = sorted((p for p in _listing(folder) if p.is_dir()), key=_sweep_order, reverse=True)
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
            with _locked(base, shared=True):
                return sum(1 for p in _listing(folder) if ours(p))
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
    alone. Each folder is first renamed aside (``outputs.aside_path``) and checked again there, where no
    save can reach it, so a folder a save replaced or a user changed in between is never removed by
    mistake, and one that went meanwhile is passed over."""
    base = root or workspace_dir()
    removed = 0
    with _locked(base):
        for name, ours in ((MODELS, is_msli_model), (SWEEPS, is_msli_sweep)):
            removed += _clear(base / name, ours)
            _clear_stale_staging(base / name)
    return removed


STALE_STAGING_S = 3600.0  # a save writes its hidden folder in seconds; one an hour old was left by a
# process that stopped mid-save (killed, out of power) and no save will ever move it in


def _clear_stale_staging(folder: Path) -> None:
    """Remove the hidden ``.saving-*`` folders (:func:`_staging`'s, so msli's own) older than
    :data:`STALE_STAGING_S`: left by a process that stopped mid-save. Younger ones may be a save in
    progress in another session, and are left."""
    now = time.time()
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            with contextlib.suppress(OSError):
                if (
                    path.name.startswith(".saving-")
                    and path.is_dir()
                    and not path.is_symlink()
                    and now - path.stat().st_mtime > STALE_STAGING_S
                ):
                    shutil.rmtree(path, ignore_errors=True)


def _clear(folder: Path, ours) -> int:
    from msli_core.outputs import aside_path

    removed = 0
    try:
        paths = [p for p in _listing(folder) if ours(p)]
    except OSError:
        return 0
    for path in paths:
        old = aside_path(path)
        try:
            os.rename(path, old)
        except OSError:  # gone or replaced meanwhile
            continue
        if ours(old):
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
        else:
            with contextlib.suppress(OSError):
                os.rename(old, path)
    return removed
