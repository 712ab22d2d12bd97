"""Downloading the official MovieLens archives: published checksums, a cache, a safe unpack.

MovieLens may not be redistributed (GroupLens licence), so the project fetches it for the user from
``https://files.grouplens.org/datasets/movielens/NAME.zip`` with :mod:`requests`, streaming into a
temporary file (``.msli-part-NAME.zip.*``) beside the cache entry while hashing it, and renaming it into
place only when its hash matches the published one (docs/design.md §3). The whole transfer has a deadline
(:data:`DEFAULT_DEADLINE_S`, raisable with ``MSLI_DOWNLOAD_DEADLINE_S``), not only each read, so a server
that trickles bytes cannot hold a fetch forever. The archive is then unpacked into a temporary folder
(``.msli-unpack-NAME.*``) and renamed into place, so the cache holds either a verified zip plus its
complete folder, or nothing: every failure (unreachable host, HTTP error, truncated or too slow transfer,
checksum mismatch, damaged, unsafe or oversized archive) removes what it wrote and raises one
:class:`MsliError` sentence. Temporary files left by a fetch that was killed are removed by the next
fetch once they are stale. A second fetch re-verifies the cached zip's hash (one read of the zip per
fetch) and returns at once.

Cache layout (``platformdirs.user_cache_dir("msli-lab")/movielens`` by default)::

    ml-100k.zip          the verified official archive
    ml-100k/             its content (the archive's top folder stripped), with .msli-output.json inside

**Nothing fetch did not write is deleted or overwritten** (``--dir`` may be any folder of the user's).
An unpacked folder is recognised as fetch's own by the marker every msli output carries
(:data:`msli_core.outputs.MARKER`: ``{"tool": "msli", "kind": "movielens", "files": [...], "checksum":
..., "archive": "NAME.zip" or null}``), written last, so it also says the folder is complete; a folder
unpacked by an earlier release carries ``.msli-verified`` (the checksum alone, no list of files) and is
recognised too; as nothing records what fetch wrote there, such a folder is replaced only when every file in
it is one the official archive holds, with that name and size (the archive it was unpacked from when that
zip is still beside it and verifies, else the new download), and is refused otherwise.
A ``NAME.zip`` that matches the published checksum is the official archive: it is only read, whoever put
it there. One that does not match is fetch's own stale or damaged copy (replaced, or removed when the
download fails) only when the stamp of fetch's folder beside it records that fetch downloaded it, and only
while it is still the file fetch hashed (one written there during the download is kept).
Anything else named ``NAME`` or ``NAME.zip``, and a fetched folder to be replaced that now also holds
files fetch did not write, is refused before anything is downloaded, with one sentence naming it, and
left as it is; the check is repeated just before each rename into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import IO

from msli_core.data import audience
from msli_core.errors import MsliError
from msli_core.limits import env_positive
from msli_core.outputs import MARKER
from msli_core.progress import ProgressCallback, ProgressEvent

MOVIELENS_NAMES = ("ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m", "ml-32m")
DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"
BASE_URL_ENV = "MSLI_MOVIELENS_BASE_URL"

# Published checksums (docs/design.md §3), in "algorithm:hex" form.
MOVIELENS_CHECKSUMS: Mapping[str, str] = {
    "ml-100k": "sha256:50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    "ml-1m": "sha256:a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    "ml-latest-small": "sha256:696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
    "ml-20m": "sha256:96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
    "ml-25m": "sha256:8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
    "ml-32m": "md5:d472be332d4daa821edc399621853b57",  # GroupLens publishes only ml-32m.zip.md5
}

_ALGORITHMS = ("sha256", "sha512", "sha1", "md5")  # of a checksum "algorithm:hex"
_KIND = "movielens"  # (in outputs.KINDS) fetch's MARKER kind, written last: a folder with it is complete
_OLD_STAMP = ".msli-verified"  # the marker of releases before MARKER was used: the checksum alone
_TIMEOUT_S = 30  # per network operation (connect, and each read)
DEADLINE_ENV = "MSLI_DOWNLOAD_DEADLINE_S"
DEFAULT_DEADLINE_S = 600.0  # for the whole transfer of one archive (ml-32m, 240 MB, needs 400 kB/s)
_PART_PREFIX = ".msli-part-"  # a download in progress: .msli-part-ml-100k.zip.XXXX
_UNPACK_PREFIX = ".msli-unpack-"  # an unpack in progress: .msli-unpack-ml-100k.XXXX/
_STALE_S = 4 * _TIMEOUT_S  # a temporary untouched this long belongs to no live fetch (each read is bounded)
_CHUNK = 1 << 16


def _fix(key: str, **fields: str) -> str:
    """How a refusal's sentence ends: what its reader can do (``audience.FIXES["download." + key]``)."""
    return audience.fix(f"download.{key}", **fields)


def default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("msli-lab")) / "movielens"


def fetch_movielens(
    name: str,
    *,
    directory: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
    deadline_s: float | None = None,
) -> Path:
    """Download (or find in the cache), verify and unpack one official MovieLens archive.

    Returns the folder holding the dataset's files (e.g. ``…/ml-100k`` with ``u.data`` inside).
    ``directory``: the cache folder (default: the platform cache). ``base_url``: where ``NAME.zip``
    lives (default: GroupLens, or the ``MSLI_MOVIELENS_BASE_URL`` environment variable).
    ``checksums``: name -> "sha256:…"/"md5:…" replacing the published table (tests serve their own
    archives; every download is still verified against a hash). ``deadline_s``: seconds the whole
    transfer may take (default: ``MSLI_DOWNLOAD_DEADLINE_S`` or :data:`DEFAULT_DEADLINE_S`).
    Each refusal ends with what its reader can do (:mod:`msli_core.data.audience`): a flag or an
    environment variable on the command line, the app's own way inside ``audience.app_user()``.
    """
    table = dict(MOVIELENS_CHECKSUMS if checksums is None else checksums)
    if name not in table:
        raise MsliError(f"Unknown MovieLens dataset {name!r}; choose one of {', '.join(MOVIELENS_NAMES)}.")
    known_hash = str(table[name])
    algorithm, _, digest = known_hash.partition(":")
    if algorithm not in _ALGORITHMS or not digest:
        raise ValueError(f"checksum for {name} must be 'sha256:<hex>' or 'md5:<hex>', not {known_hash!r}")
    deadline = _deadline(deadline_s)
    cache = Path(directory).expanduser() if directory is not None else default_cache_dir()
    base = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    url = f"{base}/{name}.zip"
    archive = cache / f"{name}.zip"
    folder = cache / name
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MsliError(
            f"Cannot create the cache folder {cache} ({err.strerror}); {_fix('writable')}."
        ) from err
    _remove_stale_temporaries(cache)

    # Nothing is downloaded, and nothing touched, unless NAME and NAME.zip are absent or fetch's own.
    stamp, verified, owned = _check_cache_entries(archive, folder, known_hash)
    downloaded = not verified  # a cached zip that verifies is used as it is
    if downloaded:
        _download(url, archive, known_hash, name, progress, deadline, owned=owned)
    if stamp is not None and stamp.checksum == known_hash:
        return folder
    archive_ours = downloaded or (stamp is not None and stamp.archive_ours)
    try:
        _unpack(
            archive, folder, known_hash, downloaded=downloaded, archive_ours=archive_ours,
            listing=stamp.listing if stamp is not None else None,
        )  # fmt: skip
    except BaseException:
        if downloaded:  # this fetch's own download; an archive that was already there stays
            _remove(archive)
        raise
    return folder


class _Stamp:
    """What fetch wrote about a folder it unpacked: the archive's checksum, the top-level names it wrote
    (None for a folder of an earlier release, whose stamp lists no files) and whether fetch downloaded
    the ``NAME.zip`` beside it (an official zip the user put there is only read, and so is never
    replaced later, when it no longer verifies). ``listing``, for an earlier release's folder only: the
    files of the archive it was unpacked from (path -> size), when that zip is beside it and verifies
    against the stamp's checksum (:func:`_check_cache_entries` reads it)."""

    def __init__(self, checksum: str, files: frozenset[str] | None, archive_ours: bool):
        self.checksum, self.files, self.archive_ours = checksum, files, archive_ours
        self.listing: _Listing | None = None


def _stamp_of(folder: Path) -> _Stamp | None:
    """Fetch's stamp in ``folder``, or None when ``folder`` is not a folder fetch unpacked."""
    if folder.is_symlink() or not folder.is_dir():
        return None
    marker, old = folder / MARKER, folder / _OLD_STAMP
    try:
        if marker.is_file() and not marker.is_symlink():
            meta = json.loads(marker.read_text(encoding="utf-8"))
            if (
                isinstance(meta, dict)
                and meta.get("tool") == "msli"
                and meta.get("kind") == _KIND
                and isinstance(meta.get("checksum"), str)
                and isinstance(meta.get("files"), list)
            ):
                files = frozenset(str(f) for f in meta["files"])
                return _Stamp(meta["checksum"], files, meta.get("archive") == f"{folder.name}.zip")
            return None
        if old.is_file() and not old.is_symlink():
            return _Stamp(old.read_text(encoding="utf-8").strip(), None, True)  # it always downloaded
    except (OSError, ValueError):
        return None
    return None


def _foreign_entries(folder: Path, stamp: _Stamp) -> list[str]:
    """Names in a fetched ``folder`` that fetch did not write there (unknown for an old stamp: none)."""
    if stamp.files is None:
        return []
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return ["(its listing cannot be read)"]
    return [n for n in names if n not in stamp.files and n not in (MARKER, _OLD_STAMP)]


def _check_cache_entries(
    archive: Path, folder: Path, known_hash: str
) -> tuple[_Stamp | None, bool, _Identity | None]:
    """Refuse (one sentence, nothing touched) a ``NAME`` or ``NAME.zip`` in the cache that fetch did not
    write, and a fetched folder that would be replaced while it holds files fetch did not write.

    Returns (the stamp of fetch's folder or None, whether ``archive`` matches ``known_hash``, and when
    ``archive`` is fetch's own copy that does not verify, a stale or damaged zip beside fetch's folder
    that a new download may replace, the identity of that file, else None). This is the one place a
    cached zip is hashed: one read of it per fetch."""
    stamp, foreign = _folder_stamp(folder)
    verified, owned = False, None
    if archive.exists() or archive.is_symlink():
        old = stamp.checksum if stamp is not None and stamp.files is None else None  # an earlier release's
        digests = _digests(archive, [known_hash, old] if old else [known_hash]) if archive.is_file() else {}
        verified = _matches(digests, known_hash)  # the official archive: only ever read
        if not verified and stamp is not None and stamp.archive_ours and not archive.is_symlink():
            owned = _identity(archive)
        if old and old != known_hash and _matches(digests, old):  # the zip that folder was unpacked from
            stamp.listing = _archive_listing(archive)
        if not verified and owned is None:
            why = "it does not match the published checksum" if archive.is_file() else "it is not a file"
            foreign.append((archive, why))
    _refuse_foreign(foreign)
    _refuse_additions(folder, stamp, known_hash)
    return stamp, verified, owned


_Identity = tuple[int, int, int, int]  # (device, inode, size, mtime in ns) of a regular file


def _identity(path: Path) -> _Identity | None:
    """What tells one regular file from another (or from itself rewritten); None for anything else."""
    try:
        st = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _check_folder(folder: Path, known_hash: str, listing: _Listing) -> None:
    """Refuse a ``folder`` fetch did not unpack, and one of fetch's that it would replace (its checksum
    is not ``known_hash``) while it holds files fetch did not write; None otherwise. ``listing``: the
    files an earlier release's folder may hold (see :func:`_refuse_additions`)."""
    stamp, foreign = _folder_stamp(folder)
    _refuse_foreign(foreign)
    _refuse_additions(folder, stamp, known_hash, listing)


def _folder_stamp(folder: Path) -> tuple[_Stamp | None, list[tuple[Path, str]]]:
    """(fetch's stamp in ``folder`` or None, [(folder, why it is not fetch's)] or [])."""
    if not (folder.exists() or folder.is_symlink()):
        return None, []
    stamp = _stamp_of(folder)
    if stamp is not None:
        return stamp, []
    if folder.is_symlink():
        why = "it is a symbolic link"
    elif not folder.is_dir():
        why = "it is a file"
    else:
        why = f"it has no {MARKER} stamp"
    return None, [(folder, why)]


def _refuse_foreign(foreign: list[tuple[Path, str]]) -> None:
    """One sentence naming what is in the way (each with why it is not fetch's), and the fix."""
    if not foreign:
        return
    named = " and ".join(f"{path} ({why})" for path, why in foreign)
    verb, it = ("was", "it") if len(foreign) == 1 else ("were", "them")
    raise MsliError(
        f"{named} {verb} not downloaded by msli, which never replaces what it did not write; "
        f"{_fix('foreign', it=it)}."
    )


def _refuse_additions(
    folder: Path,
    stamp: _Stamp | None,
    known_hash: str,
    listing: _Listing | None = None,
) -> None:
    """Refuse to replace fetch's ``folder`` (stamped with another checksum) once it holds other files.

    A folder of an earlier release (its stamp lists no files) is judged by what the official archive
    holds: ``stamp.listing`` (the zip it was unpacked from) or else ``listing`` (the archive being
    unpacked now); every entry in it must be a file or folder of that archive, with the archive's size.
    With neither known yet (before the download) nothing is refused here: the check before the rename
    into place decides, before anything is replaced."""
    if stamp is None or stamp.checksum == known_hash:
        return
    if stamp.files is None:
        official = stamp.listing if stamp.listing is not None else listing
        if official is None:
            return
        odd = _not_in_archive(folder, official)
        if odd is not None:
            what, path = odd
            raise MsliError(
                f"{folder} was unpacked by an earlier release of msli, whose stamp lists no files, and must "
                f"be replaced, but it {what}, so it may hold files of yours and msli will not delete it; "
                f"{_fix('foreign', it=str(path))}."
            )
        return
    added = _foreign_entries(folder, stamp)
    if added:
        more = f" and {len(added) - 3} more" if len(added) > 3 else ""
        raise MsliError(
            f"{folder} is an earlier msli download that must be replaced, but it also holds "
            f"{', '.join(added[:3])}{more}, which msli did not write; {_fix('foreign', it='those')}."
        )


def _deadline(deadline_s: float | None) -> float:
    if deadline_s is None:
        deadline_s = env_positive(DEADLINE_ENV, DEFAULT_DEADLINE_S, " of seconds")
    if not (deadline_s > 0 and deadline_s < float("inf")):
        raise ValueError(f"deadline_s must be a positive finite number of seconds, not {deadline_s!r}")
    return float(deadline_s)


def _remove_stale_temporaries(cache: Path) -> None:
    """Remove this module's own temporaries (recognised by their prefix) that no live fetch is writing:
    those left by a fetch that was killed. Nothing else in the cache folder is touched."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in cache.iterdir():
            if not entry.name.startswith((_PART_PREFIX, _UNPACK_PREFIX)) or entry.is_symlink():
                continue
            try:
                paths = [entry, *entry.rglob("*")] if entry.is_dir() else [entry]
                newest = max(p.lstat().st_mtime for p in paths)
            except OSError:
                continue
            if now - newest > _STALE_S:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    _remove(entry)


class _TooSlow(Exception):
    """The whole-transfer deadline passed."""

    def __init__(self, done: int, total: int | None):
        super().__init__(done, total)
        self.done, self.total = done, total


class _CutOff(Exception):
    """The body ended before its announced length."""


def _download(
    url: str,
    archive: Path,
    known_hash: str,
    name: str,
    progress: ProgressCallback | None,
    deadline: float,
    *,
    owned: _Identity | None,
) -> None:
    """Stream ``url`` into a temporary file beside ``archive``, hashing it; keep it (atomic rename) only
    when the hash matches. ``owned``: the identity of fetch's own copy of ``archive``
    that does not verify (see :func:`_check_cache_entries`), so it is replaced, or removed when the
    download fails; any other ``archive`` found at the rename is refused. Every failure becomes a
    sentence and leaves no file of this call's."""
    import requests
    import urllib3

    algorithm, _, expected = known_hash.partition(":")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{_PART_PREFIX}{archive.name}.", dir=archive.parent)
    except OSError as err:
        raise MsliError(
            f"Cannot write into {archive.parent} ({err.strerror or err}); {_fix('space')}."
        ) from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, algorithm, name, progress, deadline)
        if digest != expected.lower():
            _discard_owned(archive, owned)
            raise MsliError(
                f"The downloaded {name}.zip does not match its published {algorithm} checksum, so it was "
                "deleted; try again, and if it keeps failing the server is sending a different file."
            )
        if (archive.exists() or archive.is_symlink()) and (owned is None or _identity(archive) != owned):
            # appeared, or was rewritten, while downloading: not fetch's to replace
            _refuse_foreign([(archive, f"it appeared while {name} was downloading")])
        os.replace(tmp, archive)
    except _TooSlow as err:
        _discard_owned(archive, owned)
        got = f"{err.done / 1e6:.1f} MB" + (f" of {err.total / 1e6:.1f} MB" if err.total else "")
        raise MsliError(
            f"The download of {name} from {url} did not finish within {deadline:g} s ({got} received); "
            f"nothing was kept — {_fix('slow')}."
        ) from None
    except requests.exceptions.HTTPError as err:
        _discard_owned(archive, owned)
        status = err.response.status_code if err.response is not None else "error"
        reason = err.response.reason if err.response is not None else str(err)
        raise MsliError(
            f"Downloading {name} from {url} failed with HTTP {status} {reason}; nothing was kept — "
            f"{_fix('http')}."
        ) from err
    except (
        _CutOff,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.DecodeError,
    ) as err:
        _discard_owned(archive, owned)
        raise MsliError(
            f"The download of {name} from {url} was cut off before the end; nothing was kept — try again."
        ) from err
    except (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        urllib3.exceptions.TimeoutError,
        urllib3.exceptions.NewConnectionError,
    ) as err:
        _discard_owned(archive, owned)
        raise MsliError(
            f"Cannot reach {url} to download {name} ({type(err).__name__}); nothing was kept — check the "
            f"network connection, or {_fix('by_hand')}."
        ) from err
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as err:
        _discard_owned(archive, owned)
        raise MsliError(
            f"Downloading {name} from {url} failed ({type(err).__name__}); nothing was kept — try again."
        ) from err
    except OSError as err:
        _discard_owned(archive, owned)
        raise MsliError(f"Cannot write {archive} ({err.strerror or err}); {_fix('space')}.") from err
    finally:
        _remove(tmp)


def _stream(
    url: str, out: IO[bytes], algorithm: str, name: str, progress: ProgressCallback | None, deadline: float
) -> str:
    """Copy the body of ``url`` into ``out``; returns its hex digest. Each read returns what has arrived
    (``read1``) and waits at most the per-read timeout, so the deadline is checked at least that often."""
    import requests

    start = time.monotonic()
    wait = min(_TIMEOUT_S, deadline)
    digest = hashlib.new(algorithm)
    with requests.get(url, stream=True, timeout=(wait, wait)) as response:
        response.raise_for_status()
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() and int(length) > 0 else None
        done = 0
        while True:
            if time.monotonic() - start > deadline:
                raise _TooSlow(done, total)
            chunk = response.raw.read1(_CHUNK)
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                shown = min(done, total) if total else done
                message = f"{name} {shown / 1e6:.1f} MB" + (f" of {total / 1e6:.1f} MB" if total else "")
                progress(ProgressEvent("download", shown, total, message))
        if total is not None and done < total:
            raise _CutOff(f"{done} of {total} bytes")
    return digest.hexdigest()


def _digests(path: Path, checksums: list[str]) -> dict[str, str]:
    """The hex digest of ``path`` under the algorithm of each "algorithm:hex" checksum, all from one
    read of it; {} when it cannot be read. An unknown algorithm is left out (nothing matches it)."""
    hashers = {}
    for checksum in checksums:
        algorithm = checksum.partition(":")[0]
        if algorithm in _ALGORITHMS:
            hashers.setdefault(algorithm, hashlib.new(algorithm))
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                for digest in hashers.values():
                    digest.update(chunk)
    except OSError:
        return {}
    return {algorithm: digest.hexdigest() for algorithm, digest in hashers.items()}


def _matches(digests: Mapping[str, str], checksum: str) -> bool:
    algorithm, _, expected = checksum.partition(":")
    return bool(expected) and digests.get(algorithm) == expected.lower()


_Listing = Mapping[str, int]  # an archive's files as unpacked: relative POSIX path -> size in bytes


def _members(zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Each member of an archive with its path as unpacked (the archive's one top folder, if all its
    members are in one, stripped; ``__MACOSX/`` and the top folder itself left out)."""
    members = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX/")]
    tops = {PurePosixPath(i.filename).parts[0] for i in members if i.filename.strip("/")}
    strip = len(tops) == 1 and all(len(PurePosixPath(i.filename).parts) > 1 or i.is_dir() for i in members)
    out = []
    for info in members:
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts[1 if strip else 0 :]
        if parts:
            out.append((info, parts))
    return out


def _archive_listing(archive: Path) -> _Listing | None:
    """The files ``archive`` unpacks to (path -> size), None when it cannot be read."""
    try:
        with zipfile.ZipFile(archive) as zf:
            return {"/".join(parts): info.file_size for info, parts in _members(zf) if not info.is_dir()}
    except (OSError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, ValueError):
        return None


def _not_in_archive(folder: Path, listing: _Listing) -> tuple[str, Path] | None:
    """None when every entry under ``folder`` (fetch's stamps aside) is a file or folder of the archive
    of ``listing``, each file with the archive's size; else what the first other one is ("holds
    notes.txt, which the official archive does not hold") and its path."""
    folders = {"/".join(p.split("/")[:k]) for p in listing for k in range(1, p.count("/") + 1)}

    def fail(err: OSError) -> None:
        raise err

    try:
        for root, dirs, files in os.walk(folder, onerror=fail):  # links are not followed
            dirs.sort()
            for entry in sorted([*dirs, *files]):
                path = Path(root) / entry
                rel = path.relative_to(folder).as_posix()
                if rel in (MARKER, _OLD_STAMP):
                    continue
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode):
                    return f"holds {rel}, a symbolic link, which the official archive does not hold", path
                if stat.S_ISDIR(mode):
                    if rel not in folders:
                        return f"holds {rel}, a folder the official archive does not hold", path
                    continue
                if not stat.S_ISREG(mode) or rel not in listing:
                    return f"holds {rel}, which the official archive does not hold", path
                size = path.lstat().st_size
                if size != listing[rel]:
                    return (
                        f"holds {rel} of {size:,} bytes, where the official archive's has {listing[rel]:,}",
                        path,
                    )
    except OSError as err:
        return f"cannot be listed ({err.strerror or err})", folder
    return None


def _discard_owned(archive: Path, owned: _Identity | None) -> None:
    """Fetch's own cached zip that did not verify (``owned``: its identity when it was hashed) is damaged
    or out of date: it goes, but only while it is still that same file (a zip put there or rewritten
    since is not fetch's, and is kept). Its folder stays (a fetched folder is replaced only after a
    verified download), and an archive fetch did not write is never touched."""
    if owned is not None and _identity(archive) == owned:
        _remove(archive)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _unpack(
    archive: Path,
    folder: Path,
    known_hash: str,
    *,
    downloaded: bool,
    archive_ours: bool,
    listing: _Listing | None = None,
) -> None:
    """Extract into a temporary folder beside ``folder`` and rename it into place (all or nothing).

    The folder gets fetch's :data:`MARKER` (its checksum and the names it holds), written last. An
    existing ``folder`` is replaced only when it is still fetch's own and holds nothing else (checked
    again here, just before the rename); it is renamed aside first and removed once the new one is in
    place. ``downloaded``: this fetch downloaded ``archive`` (and removes it if unpacking fails).
    ``archive_ours``: fetch downloaded ``archive`` (now or before), as the stamp records. ``listing``: the
    files of the archive an earlier release's ``folder`` was unpacked from, when known; else that folder
    is judged by ``archive``'s own files (:func:`_refuse_additions`)."""
    from msli_core.data.files import check_zip_member_size, check_zip_members

    tmp = Path(tempfile.mkdtemp(prefix=f"{_UNPACK_PREFIX}{folder.name}.", dir=folder.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                check_zip_members(zf, archive.name)
                for info, parts in _members(zf):
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise MsliError(
                            f"{archive.name} contains a symbolic link {info.filename!r}; refusing to "
                            "unpack it."
                        )
                    target = tmp.joinpath(*parts)
                    check_zip_member_size(info, f"{archive.name}:{info.filename}")
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as err:
            fate = "it was deleted — try again" if downloaded else f"replace {archive} with a fresh download"
            raise MsliError(
                f"{archive.name} passed its checksum but cannot be unpacked ({err}); {fate}."
            ) from err
        except OSError as err:
            raise MsliError(
                f"Cannot unpack {archive.name} into {folder.parent} ({err.strerror or err}); {_fix('space')}."
            ) from err
        files = sorted(p.name for p in tmp.iterdir() if p.name != MARKER)
        stamp = {
            "tool": "msli",
            "kind": _KIND,
            "files": files,  # the names fetch wrote here; anything else is the user's
            "checksum": known_hash,
            "archive": archive.name if archive_ours else None,  # None: a zip the user put there
        }
        (tmp / MARKER).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        unpacked = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}
        # still absent or fetch's own, with nothing added
        _check_folder(folder, known_hash, listing if listing is not None else unpacked)
        if folder.exists():
            old = folder.with_name(f"{_UNPACK_PREFIX}{folder.name}.old-{os.getpid()}-{time.time_ns()}")
            os.replace(folder, old)  # aside, under a temporary name of fetch's (removed if left stale)
            try:
                os.replace(tmp, folder)
            except BaseException:
                os.replace(old, folder)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
