"""Writing outputs all-or-nothing: a half-written file or folder is never left behind."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from msli_core.errors import MsliError

# ---- what --out may replace (issue 9 §2) -------------------------------------------------------------
# A command writes into a new or empty folder, or into a folder holding an earlier output of the same
# kind, recognised by what msli wrote there itself: the marker file below (its kind and the files it
# wrote), or for a model folder its ``config.json`` (``"format": "msli-model/..."``). Such a folder is
# replaced whole; anything else is refused before any work starts, and nothing msli did not write is
# ever deleted.
MARKER = ".msli-output.json"
KINDS = ("model", "quality", "bench", "synth", "movielens")  # movielens: a folder `msli data fetch` unpacked
MODEL_FILES = ("config.json", "model.safetensors")  # what msli_core.models.registry.save_model writes


def check_out_dir(
    path: str | os.PathLike,
    kind: str,
    *,
    data: str | os.PathLike | None = None,
    flag: str = "--out",
    data_flag: str = "--data",
) -> Path:
    """Refuse an output folder that must not be replaced, with one sentence; return it as a Path.

    Allowed: a path that does not exist, an empty folder, or a folder holding an earlier ``kind``
    output of msli and nothing else. Refused: ``.``, the current folder or any folder above it, the
    home folder or one above it, ``/``, a symbolic link, an existing file, the data folder (or a
    folder inside it, or one that holds it), a folder msli did not create, an output of another kind,
    and a path whose folder takes no new entries (:func:`check_can_create`, so a bad path is refused
    before a run, not after it). Call it before any work starts; :func:`atomic_output_dir` calls it
    again before writing.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; one of {KINDS}")
    text = os.fspath(path)
    if not str(text).strip():
        raise MsliError(f"{flag} is empty; name a new or empty folder.")
    target = Path(text)
    if target.is_symlink():
        raise MsliError(
            f"{flag} {text} is a symbolic link, which msli does not replace; name a new or empty folder."
        )
    try:
        resolved = target.resolve()
        cwd = Path.cwd().resolve()
        home = Path.home().resolve()
    except (OSError, RuntimeError) as err:
        raise MsliError(f"{flag} {text} cannot be resolved ({err}); name a new or empty folder.") from err
    if resolved == Path(resolved.anchor):
        raise MsliError(f"{flag} {text} is the root folder; name a new or empty folder.")
    if resolved == cwd or resolved in cwd.parents:
        where = "the current folder" if resolved == cwd else "a folder above the current one"
        raise MsliError(f"{flag} {text} is {where}, which msli will not replace; name a new or empty folder.")
    if resolved == home or resolved in home.parents:
        raise MsliError(
            f"{flag} {text} is your home folder or above it, which msli will not replace; "
            "name a new or empty folder."
        )
    if data is not None:
        try:
            data_path = Path(data).resolve()
        except (OSError, RuntimeError):
            data_path = None
        if data_path is not None and (
            resolved == data_path or data_path in resolved.parents or resolved in data_path.parents
        ):
            raise MsliError(
                f"{flag} {text} is, holds or sits inside {data_flag} {data}; write the output to a new "
                f"or empty folder outside {data_flag}."
            )
    if not target.exists():
        check_can_create(target, fix=f"choose a writable {flag} path")
        return target
    if not target.is_dir():
        raise MsliError(f"{flag} {text} exists and is not a folder; choose another {flag} path.")
    try:
        entries = sorted(p.name for p in target.iterdir())
    except OSError as err:
        raise MsliError(
            f"{flag} {text} cannot be read ({err.strerror}); choose another {flag} path."
        ) from err
    if not entries:
        check_can_create(target, fix=f"choose a writable {flag} path")  # the replacement is made beside it
        return target
    earlier, written = _earlier_output(target)
    if earlier is None:
        raise MsliError(
            f"{flag} {text} is a folder that msli did not create (it holds {_names(entries)}); "
            "choose an empty or new folder."
        )
    if earlier != kind:
        raise MsliError(
            f"{flag} {text} holds an earlier msli {earlier} output, not a {kind} output; "
            "choose an empty or new folder."
        )
    foreign = [name for name in entries if name not in written and name != MARKER]
    if foreign:
        raise MsliError(
            f"{flag} {text} holds an earlier {kind} output plus {_names(foreign)}, which msli did not "
            "write; move that away or choose an empty or new folder."
        )
    check_can_create(target, fix=f"choose a writable {flag} path")
    return target


# ---- where an output can be created ------------------------------------------------------------------
# Every output (a folder through atomic_output_dir, a file through atomic_write_bytes) is first made as a
# temporary entry beside its target, in the target's parent folder, creating missing parents. So one
# question decides whether it can be written: does the nearest folder that exists on the way to the
# parent take new entries? :func:`check_can_create` asks it before any work (a probe: an empty folder
# made and removed there, because root passes ``os.access`` even on /proc or a read-only mount), and a
# failed write names that folder in the same words (:func:`cannot_create`).


def nearest_existing(path: Path) -> Path:
    """``path`` or the nearest folder above it that exists (``.`` for a relative path with none). A path
    that cannot even be looked at (a folder above it refuses entry: PermissionError) counts as absent,
    so the folder that refuses is the one named and probed."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except OSError:
            continue
    return Path(".")


def cannot_create(target: Path, err: OSError | None, fix: str) -> MsliError:
    """The one sentence for an output that cannot be created: which folder refuses it and why.

    ``fix`` is what the user should do, e.g. "choose a writable --out path" or, when ``MSLI_CACHE_DIR``
    chose the path, "MSLI_CACHE_DIR chose that path, so set it to a writable folder".
    """
    base = nearest_existing(target.parent)
    if not base.is_dir():
        return MsliError(f"Cannot create {target}: {base} is not a folder; {fix}.")
    why = f" ({err.strerror or err})" if err is not None else ""
    return MsliError(f"Cannot create {target}: {base} is not writable{why}; {fix}.")


def check_can_create(target: str | os.PathLike, *, fix: str) -> None:
    """Refuse, with :func:`cannot_create`'s sentence, an output that could not be written: the nearest
    existing folder on the way to ``target``'s parent is a file or takes no new entries. Nothing is
    left behind (the probe folder is removed; missing parents are not created here)."""
    target = Path(target)
    base = nearest_existing(target.parent)
    if not base.is_dir():
        raise cannot_create(target, None, fix)
    try:
        probe = tempfile.mkdtemp(prefix=".msli-probe-", dir=base)
    except OSError as err:
        raise cannot_create(target, err, fix) from err
    with contextlib.suppress(OSError):
        os.rmdir(probe)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _earlier_output(folder: Path) -> tuple[str | None, set[str]]:
    """(kind, files msli wrote) of an earlier msli output in ``folder``, or (None, set())."""
    marker = folder / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, set()
        if (
            isinstance(meta, dict)
            and meta.get("tool") == "msli"
            and meta.get("kind") in KINDS
            and isinstance(meta.get("files"), list)
        ):
            return str(meta["kind"]), {str(f) for f in meta["files"]}
        return None, set()
    config = folder / MODEL_FILES[0]
    if config.is_file() and not config.is_symlink():
        try:
            with config.open(encoding="utf-8") as fh:
                meta = json.loads(fh.read(1_000_000))
        except (OSError, ValueError):
            return None, set()
        if isinstance(meta, dict) and str(meta.get("format", "")).startswith("msli-model/"):
            return "model", set(MODEL_FILES)
    return None, set()


def msli_output(folder: str | os.PathLike) -> str | None:
    """The kind of the msli output ``folder`` is, when it holds an earlier output msli wrote and nothing
    else (its marker's files, or a model folder's two files, whatever the model format's version:
    ``msli-model/1``, ``/2``, ...); else None (a folder msli did not write, or one a user added a file to).
    The rule :func:`check_out_dir` replaces by, for others that must tell msli's folders from a user's (the
    app's workspace counts and clears by it). A folder that cannot be read is not msli's."""
    folder = Path(folder)
    try:
        if folder.is_symlink() or not folder.is_dir():
            return None
        kind, written = _earlier_output(folder)
        names = [p.name for p in folder.iterdir()] if kind is not None else []
    except (OSError, RecursionError):  # a marker or config.json nested past the parser's depth is not msli's
        return None
    if kind is None or any(name not in written and name != MARKER for name in names):
        return None
    return kind


@contextlib.contextmanager
def atomic_output_dir(
    target: str | os.PathLike, *, kind: str, data: str | os.PathLike | None = None
) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; on success it replaces ``target``.

    ``target`` is checked with :func:`check_out_dir` first (a folder msli did not create, or an output
    of another ``kind``, is refused). Outputs other than models get a :data:`MARKER` file naming their
    kind and files, so a later run recognises them. On any exception the temporary folder is removed
    and ``target`` is left as it was.
    """
    target = check_out_dir(target, kind, data=data)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as err:
        raise cannot_create(target, err, "choose a writable --out path") from err
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; give the usual permissions
        yield tmp
        if kind != "model":  # a model folder's config.json is its own marker (format msli-model/...)
            files = sorted(p.name for p in tmp.iterdir() if p.name != MARKER)
            marker = {"tool": "msli", "kind": kind, "files": files}
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        check_out_dir(target, kind, data=data)  # still ours (nothing was added meanwhile)

        def replaceable(old: Path) -> bool:  # what check_out_dir allowed: empty, or our earlier output
            return not any(old.iterdir()) or msli_output(old) == kind

        if not place_dir(tmp, target, may_replace=replaceable):
            raise MsliError(
                f"{target} was written by another run while this one ran, so this output was not kept there; "
                "run it again with another --out folder."
            )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def place_dir(tmp: Path, target: Path, *, may_replace: Callable[[Path], bool] | None = None) -> bool:
    """Put the complete folder ``tmp`` at ``target`` by renames, so that a reader finds the folder that
    was there or the new one, never a half-written one, and two writers never both think they own
    ``target``. True when it is there; False, with ``tmp`` left as it was, when ``target`` is taken (by
    something ``may_replace`` refuses, or by another writer's folder that appeared meanwhile: a rename onto
    a folder that is not empty fails, which is the reservation).

    Decisions: a free ``target`` takes one rename. An existing one is replaced only when ``may_replace``
    is given and accepts it; it is first renamed aside to a name no other writer uses (:func:`aside_path`,
    unique per process, thread and call), checked there with ``may_replace`` (nothing else can reach it
    there, so the check is of what will be removed), put back if refused, and removed only after ``tmp``
    is in its place. If another writer's folder takes ``target`` while the old one is aside, the old one
    (which was to be replaced anyway) is removed and False tells the caller to look elsewhere."""
    for _ in range(8):  # each turn ends because another writer moved target: give up after a few
        if not os.path.lexists(target):
            try:
                os.rename(tmp, target)
                return True
            except OSError as err:
                if _taken(err, target):  # another writer's folder took it meanwhile
                    return False
                raise
        if may_replace is None or target.is_symlink() or not target.is_dir():
            return False
        old = aside_path(target)
        try:
            os.rename(target, old)
        except FileNotFoundError:  # moved by another writer meanwhile: look again
            continue
        if not may_replace(old):
            try:
                os.rename(old, target)
            except OSError as err:
                raise MsliError(
                    f"{target} changed while msli replaced it; what was there is now in {old}, so move it "
                    "back by hand."
                ) from err
            return False
        try:
            os.rename(tmp, target)
        except OSError as err:
            if not _taken(err, target):  # e.g. a full disk: put the old one back, then say why
                with contextlib.suppress(OSError):
                    os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)  # it was to be replaced; another writer's is there now
            return False
        shutil.rmtree(old, ignore_errors=True)
        return True
    return False


def _taken(err: OSError, target: Path) -> bool:
    """Whether a rename onto ``target`` failed because something is there (another writer's folder), not
    for a reason that a retry elsewhere would meet again (permissions, a full disk)."""
    return err.errno in _TAKEN or os.path.lexists(target)


_TAKEN = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR)  # a rename onto something there


_ASIDE_COUNT = itertools.count()


def aside_path(target: Path) -> Path:
    """A name beside ``target`` that no other writer uses: ``.<name>.old-<pid>-<thread>-<n>-<random>``
    (hidden, so readers of a folder skip it)."""
    unique = f"{os.getpid()}-{threading.get_ident()}-{next(_ASIDE_COUNT)}-{uuid.uuid4().hex[:8]}"
    return target.with_name(f".{target.name}.old-{unique}")


def atomic_write_bytes(
    target: str | os.PathLike, data: bytes, *, fix: str = "choose a writable path"
) -> None:
    """Write ``data`` to ``target`` through a temporary file and an atomic rename. A target that cannot
    be created is :func:`cannot_create`'s sentence ending in ``fix``."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as err:
        raise cannot_create(target, err, fix) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask. Reading it means setting it; the lock keeps two threads from reading each
    other's 0 (one would give its files mode 777, and the last to restore could leave the umask at 0)."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def atomic_write_text(target: str | os.PathLike, text: str, *, fix: str = "choose a writable path") -> None:
    atomic_write_bytes(target, text.encode("utf-8"), fix=fix)
