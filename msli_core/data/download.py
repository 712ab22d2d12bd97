"""Downloading the official MovieLens archives: published checksums, a cache, a safe unpack.

MovieLens may not be redistributed (GroupLens licence), so the project fetches it for the user from
``https://files.grouplens.org/datasets/movielens/NAME.zip`` with :mod:`pooch`, which streams into a
temporary file and keeps it only when its hash matches the published one (DESIGN §3). The archive is
then unpacked into a temporary folder beside the cache entry and renamed into place, so the cache holds
either a verified zip plus its complete folder, or nothing: every failure (unreachable host, HTTP error,
truncated transfer, checksum mismatch, damaged or unsafe archive) removes what it wrote and raises one
:class:`MsliError` sentence. A second fetch re-verifies the cached zip's hash and returns at once.

Cache layout (``platformdirs.user_cache_dir("msli-lab")/movielens`` by default)::

    ml-100k.zip          the verified official archive
    ml-100k/             its content (the archive's top folder stripped), with .msli-verified inside
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from msli_core.errors import MsliError
from msli_core.progress import ProgressCallback, ProgressEvent

MOVIELENS_NAMES = ("ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m", "ml-32m")
DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"
BASE_URL_ENV = "MSLI_MOVIELENS_BASE_URL"

# Published checksums (DESIGN §3), in pooch's "algorithm:hex" form.
MOVIELENS_CHECKSUMS: Mapping[str, str] = {
    "ml-100k": "sha256:50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    "ml-1m": "sha256:a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    "ml-latest-small": "sha256:696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
    "ml-20m": "sha256:96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
    "ml-25m": "sha256:8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
    "ml-32m": "md5:d472be332d4daa821edc399621853b57",  # GroupLens publishes only ml-32m.zip.md5
}

_STAMP = ".msli-verified"  # written last inside an unpacked folder: its content is complete
_TIMEOUT_S = 30  # per network operation (connect, and each read), not for the whole transfer


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
) -> Path:
    """Download (or find in the cache), verify and unpack one official MovieLens archive.

    Returns the folder holding the dataset's files (e.g. ``…/ml-100k`` with ``u.data`` inside).
    ``directory``: the cache folder (default: the platform cache). ``base_url``: where ``NAME.zip``
    lives (default: GroupLens, or the ``MSLI_MOVIELENS_BASE_URL`` environment variable).
    ``checksums``: name -> "sha256:…"/"md5:…" replacing the published table (tests serve their own
    archives; every download is still verified against a hash).
    """
    table = dict(MOVIELENS_CHECKSUMS if checksums is None else checksums)
    if name not in table:
        raise MsliError(f"Unknown MovieLens dataset {name!r}; choose one of {', '.join(MOVIELENS_NAMES)}.")
    known_hash = str(table[name])
    algorithm, _, digest = known_hash.partition(":")
    if algorithm not in ("sha256", "sha512", "sha1", "md5") or not digest:
        raise ValueError(f"checksum for {name} must be 'sha256:<hex>' or 'md5:<hex>', not {known_hash!r}")
    cache = Path(directory).expanduser() if directory is not None else default_cache_dir()
    base = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    url = f"{base}/{name}.zip"
    archive = cache / f"{name}.zip"
    folder = cache / name
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MsliError(
            f"Cannot create the cache folder {cache} ({err.strerror}); pass a writable --dir."
        ) from err

    _download(url, archive, known_hash, name, progress)
    stamp = folder / _STAMP
    if stamp.is_file() and stamp.read_text().strip() == known_hash:
        return folder
    try:
        _unpack(archive, folder, known_hash)
    except BaseException:
        _remove(archive)
        if not stamp.is_file():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _download(url: str, archive: Path, known_hash: str, name: str, progress: ProgressCallback | None) -> None:
    """pooch.retrieve with our progress adapter; every failure becomes a sentence and leaves no file."""
    import pooch
    import requests

    downloader = pooch.HTTPDownloader(progressbar=_PoochProgress(progress, name) if progress else False,
                                      timeout=_TIMEOUT_S, chunk_size=1 << 16)  # fmt: skip
    try:
        with _quiet_pooch():
            pooch.retrieve(
                url, known_hash=known_hash, fname=archive.name, path=archive.parent, downloader=downloader
            )
    except requests.exceptions.HTTPError as err:
        _discard_unverified(archive, known_hash)
        status = err.response.status_code if err.response is not None else "error"
        reason = err.response.reason if err.response is not None else str(err)
        raise MsliError(
            f"Downloading {name} from {url} failed with HTTP {status} {reason}; nothing was kept — check the "
            f"dataset name or the base URL ({BASE_URL_ENV})."
        ) from err
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as err:
        _discard_unverified(archive, known_hash)
        raise MsliError(
            f"The download of {name} from {url} was cut off before the end; nothing was kept — try again."
        ) from err
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
        _discard_unverified(archive, known_hash)
        raise MsliError(
            f"Cannot reach {url} to download {name} ({type(err).__name__}); nothing was kept — check the "
            "network connection, or download the zip by hand and pass it to msli data inspect."
        ) from err
    except requests.exceptions.RequestException as err:
        _discard_unverified(archive, known_hash)
        raise MsliError(
            f"Downloading {name} from {url} failed ({err}); nothing was kept — try again."
        ) from err
    except ValueError as err:  # pooch: hash mismatch (the temporary file is already deleted)
        _discard_unverified(archive, known_hash)
        algorithm = known_hash.split(":", 1)[0]
        raise MsliError(
            f"The downloaded {name}.zip does not match its published {algorithm} checksum, so it was "
            "deleted; try again, and if it keeps failing the server is sending a different file."
        ) from err
    except OSError as err:
        _discard_unverified(archive, known_hash)
        raise MsliError(
            f"Cannot write {archive} ({err.strerror or err}); free some space or pass another --dir."
        ) from err


class _PoochProgress:
    """The tqdm-like object pooch's HTTPDownloader drives, forwarding to a ProgressCallback."""

    def __init__(self, callback: ProgressCallback, name: str):
        self.callback = callback
        self.name = name
        self.total: int | None = None
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n
        total = self.total or None
        done = min(self.done, total) if total else self.done
        message = f"{self.name} {done / 1e6:.1f} MB" + (f" of {total / 1e6:.1f} MB" if total else "")
        self.callback(ProgressEvent("download", done, total, message))

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        return None


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch logs every download on stderr; the progress callback is our only channel."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _hash_ok(path: Path, known_hash: str) -> bool:
    import pooch

    algorithm, _, expected = known_hash.partition(":")
    try:
        return pooch.file_hash(str(path), alg=algorithm) == expected.lower()
    except OSError:
        return False


def _discard_unverified(archive: Path, known_hash: str) -> None:
    """A cached zip that does not verify is stale or damaged: it goes, with its folder."""
    if archive.exists() and not _hash_ok(archive, known_hash):
        _remove(archive)
        shutil.rmtree(archive.with_suffix(""), ignore_errors=True)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _unpack(archive: Path, folder: Path, known_hash: str) -> None:
    """Extract into a temporary folder beside ``folder`` and rename it into place (all or nothing)."""
    from msli_core.data.formats import check_zip_members

    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
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
                f"Cannot unpack {archive.name} into {folder.parent} ({err.strerror or err}); free some space "
                "or pass another --dir."
            ) from err
        (tmp / _STAMP).write_text(known_hash + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
