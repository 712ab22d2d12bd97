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
fetch once they are stale. A second fetch re-verifies the cached zip's hash and returns at once.

Cache layout (``platformdirs.user_cache_dir("msli-lab")/movielens`` by default)::

    ml-100k.zip          the verified official archive
    ml-100k/             its content (the archive's top folder stripped), with .msli-verified inside
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import IO

from msli_core.errors import MsliError
from msli_core.limits import env_positive
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

_STAMP = ".msli-verified"  # written last inside an unpacked folder: its content is complete
_TIMEOUT_S = 30  # per network operation (connect, and each read)
DEADLINE_ENV = "MSLI_DOWNLOAD_DEADLINE_S"
DEFAULT_DEADLINE_S = 600.0  # for the whole transfer of one archive (ml-32m, 240 MB, needs 400 kB/s)
_PART_PREFIX = ".msli-part-"  # a download in progress: .msli-part-ml-100k.zip.XXXX
_UNPACK_PREFIX = ".msli-unpack-"  # an unpack in progress: .msli-unpack-ml-100k.XXXX/
_STALE_S = 4 * _TIMEOUT_S  # a temporary untouched this long belongs to no live fetch (each read is bounded)
_CHUNK = 1 << 16

# How a failure's sentence ends: what its reader can do about it. The CLI's user passes flags and
# environment variables; the app's user (``for_app=True``) has only the app, so it names the app's way.
_BY_HAND = "download the zip from grouplens.org yourself and load it with “Upload files”"
_FIXES = {
    "cli": {
        "writable": "pass a writable --dir",
        "space": "free some space or pass another --dir",
        "by_hand": "download the zip by hand and pass it to msli data inspect",
        "slow": f"try again later, or allow more time with {DEADLINE_ENV}",
        "http": f"check the dataset name or the base URL ({BASE_URL_ENV})",
    },
    "app": {
        "writable": f"the app needs a cache folder it can write; or {_BY_HAND}",
        "space": f"free some space on the machine running the app, or {_BY_HAND}",
        "by_hand": _BY_HAND,
        "slow": f"try again later, or {_BY_HAND}",
        "http": f"try again later, or {_BY_HAND}",
    },
}


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
    for_app: bool = False,
) -> Path:
    """Download (or find in the cache), verify and unpack one official MovieLens archive.

    Returns the folder holding the dataset's files (e.g. ``…/ml-100k`` with ``u.data`` inside).
    ``directory``: the cache folder (default: the platform cache). ``base_url``: where ``NAME.zip``
    lives (default: GroupLens, or the ``MSLI_MOVIELENS_BASE_URL`` environment variable).
    ``checksums``: name -> "sha256:…"/"md5:…" replacing the published table (tests serve their own
    archives; every download is still verified against a hash). ``deadline_s``: seconds the whole
    transfer may take (default: ``MSLI_DOWNLOAD_DEADLINE_S`` or :data:`DEFAULT_DEADLINE_S`).
    ``for_app``: the error sentences tell an app user what to do in the app (not a CLI flag).
    """
    fix = _FIXES["app" if for_app else "cli"]
    table = dict(MOVIELENS_CHECKSUMS if checksums is None else checksums)
    if name not in table:
        raise MsliError(f"Unknown MovieLens dataset {name!r}; choose one of {', '.join(MOVIELENS_NAMES)}.")
    known_hash = str(table[name])
    algorithm, _, digest = known_hash.partition(":")
    if algorithm not in ("sha256", "sha512", "sha1", "md5") or not digest:
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
            f"Cannot create the cache folder {cache} ({err.strerror}); {fix['writable']}."
        ) from err
    _remove_stale_temporaries(cache)

    _download(url, archive, known_hash, name, progress, deadline, fix)
    stamp = folder / _STAMP
    if stamp.is_file() and stamp.read_text().strip() == known_hash:
        return folder
    try:
        _unpack(archive, folder, known_hash, fix)
    except BaseException:
        _remove(archive)
        if not stamp.is_file():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


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
    fix: Mapping[str, str],
) -> None:
    """Stream ``url`` into a temporary file beside ``archive``, hashing it; keep it (atomic rename) only
    when the hash matches. Every failure becomes a sentence and leaves no file."""
    import requests
    import urllib3

    if archive.is_file() and _hash_ok(archive, known_hash):
        return
    algorithm, _, expected = known_hash.partition(":")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{_PART_PREFIX}{archive.name}.", dir=archive.parent)
    except OSError as err:
        raise MsliError(
            f"Cannot write into {archive.parent} ({err.strerror or err}); {fix['space']}."
        ) from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, algorithm, name, progress, deadline)
        if digest != expected.lower():
            _discard_unverified(archive, known_hash)
            raise MsliError(
                f"The downloaded {name}.zip does not match its published {algorithm} checksum, so it was "
                "deleted; try again, and if it keeps failing the server is sending a different file."
            )
        os.replace(tmp, archive)
    except _TooSlow as err:
        _discard_unverified(archive, known_hash)
        got = f"{err.done / 1e6:.1f} MB" + (f" of {err.total / 1e6:.1f} MB" if err.total else "")
        raise MsliError(
            f"The download of {name} from {url} did not finish within {deadline:g} s ({got} received); "
            f"nothing was kept — {fix['slow']}."
        ) from None
    except requests.exceptions.HTTPError as err:
        _discard_unverified(archive, known_hash)
        status = err.response.status_code if err.response is not None else "error"
        reason = err.response.reason if err.response is not None else str(err)
        raise MsliError(
            f"Downloading {name} from {url} failed with HTTP {status} {reason}; nothing was kept — "
            f"{fix['http']}."
        ) from err
    except (
        _CutOff,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.DecodeError,
    ) as err:
        _discard_unverified(archive, known_hash)
        raise MsliError(
            f"The download of {name} from {url} was cut off before the end; nothing was kept — try again."
        ) from err
    except (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        urllib3.exceptions.TimeoutError,
        urllib3.exceptions.NewConnectionError,
    ) as err:
        _discard_unverified(archive, known_hash)
        raise MsliError(
            f"Cannot reach {url} to download {name} ({type(err).__name__}); nothing was kept — check the "
            f"network connection, or {fix['by_hand']}."
        ) from err
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as err:
        _discard_unverified(archive, known_hash)
        raise MsliError(
            f"Downloading {name} from {url} failed ({type(err).__name__}); nothing was kept — try again."
        ) from err
    except OSError as err:
        _discard_unverified(archive, known_hash)
        raise MsliError(f"Cannot write {archive} ({err.strerror or err}); {fix['space']}.") from err
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


def _hash_ok(path: Path, known_hash: str) -> bool:
    algorithm, _, expected = known_hash.partition(":")
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == expected.lower()


def _discard_unverified(archive: Path, known_hash: str) -> None:
    """A cached zip that does not verify is stale or damaged: it goes, with its folder."""
    if archive.exists() and not _hash_ok(archive, known_hash):
        _remove(archive)
        shutil.rmtree(archive.with_suffix(""), ignore_errors=True)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _unpack(archive: Path, folder: Path, known_hash: str, fix: Mapping[str, str]) -> None:
    """Extract into a temporary folder beside ``folder`` and rename it into place (all or nothing)."""
    from msli_core.data.files import check_zip_member_size, check_zip_members

    tmp = Path(tempfile.mkdtemp(prefix=f"{_UNPACK_PREFIX}{folder.name}.", dir=folder.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                check_zip_members(zf, archive.name)
                members = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX/")]
                tops = {PurePosixPath(i.filename).parts[0] for i in members if i.filename.strip("/")}
                strip = len(tops) == 1 and all(
                    len(PurePosixPath(i.filename).parts) > 1 or i.is_dir() for i in members
                )
                for info in members:
                    parts = PurePosixPath(info.filename.replace("\\", "/")).parts[1 if strip else 0 :]
                    if not parts:
                        continue
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
            raise MsliError(
                f"{archive.name} passed its checksum but cannot be unpacked ({err}); it was deleted — "
                "try again."
            ) from err
        except OSError as err:
            raise MsliError(
                f"Cannot unpack {archive.name} into {folder.parent} ({err.strerror or err}); {fix['space']}."
            ) from err
        (tmp / _STAMP).write_text(known_hash + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
