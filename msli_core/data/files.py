"""Files on disk or inside a zip archive, read the same way, with the checks that make reading them safe.

A :class:`DataFile` is a path on disk or a member of an open zip archive; loaders open, size and sniff it
without caring which. Zip archives are read member by member through :mod:`zipfile`, as streams, never
extracted; an archive with a member whose name would escape a target folder (absolute, ``..``) is refused
whole (:func:`check_zip_members`), and so is a member that would expand beyond
:data:`DEFAULT_MAX_EXPANDED_MB` or, above :data:`RATIO_CHECK_MIN_BYTES`, by more than
:data:`DEFAULT_MAX_ZIP_RATIO` times its compressed size (zip bombs, :func:`check_zip_member_size`); the
environment variables ``MSLI_MAX_EXPANDED_MB`` and ``MSLI_MAX_ZIP_RATIO`` raise the limits. Only regular
files and folders are read (:func:`check_file_kind`: never a FIFO, a socket or a device such as
``/dev/zero``). Read failures become one :class:`MsliError` sentence naming the file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from msli_core.data.audience import raise_limit, words
from msli_core.errors import MsliError
from msli_core.limits import env_positive

HEAD_BYTES = 1 << 16  # how much of a file is sniffed for binary content

# Zip bombs: limits on what one archive member may expand to (raisable through the environment).
MAX_EXPANDED_MB_ENV = "MSLI_MAX_EXPANDED_MB"
MAX_ZIP_RATIO_ENV = "MSLI_MAX_ZIP_RATIO"
DEFAULT_MAX_EXPANDED_MB = 1024  # per member; ml-32m's ratings.csv, the largest official file, is 877 MB
DEFAULT_MAX_ZIP_RATIO = 200  # expanded / compressed; real rating tables compress 3-10x
RATIO_CHECK_MIN_BYTES = 8 << 20  # small members may compress as well as they like


@dataclass(frozen=True)
class DataFile:
    """One readable file: a path on disk, or a member of an open zip archive (read in memory)."""

    display: str  # how messages name it: "data/u.data" or "ml-100k.zip:ml-100k/u.data"
    path: Path | None = None
    archive: zipfile.ZipFile | None = None
    member: str | None = None

    @property
    def name(self) -> str:
        return PurePosixPath(self.member).name if self.member else self.path.name

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        if self.archive is not None:
            check_zip_member_size(self.archive.getinfo(self.member), self.display)
        with _io_errors(self):
            stream = self.archive.open(self.member) if self.archive else open(self.path, "rb")  # noqa: SIM115
            with stream:
                yield stream

    def size(self) -> int:
        """Bytes the file holds (a zip member: once expanded)."""
        if self.archive is not None:
            return self.archive.getinfo(self.member).file_size
        with _io_errors(self):
            return self.path.stat().st_size

    def head(self, n: int = HEAD_BYTES) -> bytes:
        with self.open() as fh:
            return fh.read(n)

    def read_bytes(self) -> bytes:
        with self.open() as fh:
            return fh.read()

    def sibling(self, name: str) -> DataFile | None:
        """The file called ``name`` in the same folder (of the disk or of the archive); None when there is
        nothing of that name. Something of that name that is not a regular file (a folder, a broken
        symbolic link, a FIFO, a device) is refused with a sentence saying what it is, rather than being
        taken for a missing file."""
        if self.archive is not None:
            parent = PurePosixPath(self.member).parent
            member = name if str(parent) == "." else f"{parent}/{name}"
            shown = self.display[: len(self.display) - len(self.member)] + member
            info = self.archive.NameToInfo.get(member)
            if info is not None and not info.is_dir():
                return DataFile(shown, archive=self.archive, member=member)
            if info is not None or any(n.startswith(f"{member}/") for n in self.archive.NameToInfo):
                raise self._not_a_file(shown, name, "a folder")
            return None
        path = self.path.with_name(name)
        shown = self.display[: len(self.display) - len(self.path.name)] + name
        if path.is_file():
            return DataFile(shown, path=path)
        if path.is_symlink() and not path.exists():
            raise self._not_a_file(shown, name, _link_trouble(path))
        if path.exists():
            try:
                mode = path.stat().st_mode
            except OSError:
                mode = 0
            kind = (
                "a folder"
                if stat.S_ISDIR(mode)
                else next((label for test, label in _KINDS if test(mode)), "a special file")
            )
            raise self._not_a_file(shown, name, kind)
        return None

    def _not_a_file(self, shown: str, name: str, kind: str) -> MsliError:
        return MsliError(
            f"{shown} is {kind}, not a regular file, so it cannot be read beside {self.name}; replace it "
            f"with the {name} file, or move it away to load {self.name} without it."
        )


@contextmanager
def _io_errors(file: DataFile) -> Iterator[None]:
    """Turn read failures (damaged archive, unreadable file) into one sentence naming the file."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as err:
        raise MsliError(
            f"{file.display} cannot be read from its zip archive ({err}); the archive is damaged or uses "
            "an unsupported compression — download it again."
        ) from err
    except RuntimeError as err:  # zipfile: encrypted member
        raise MsliError(f"{file.display} cannot be read ({err}); pass an unencrypted archive.") from err
    except PermissionError as err:
        raise MsliError(f"{file.display} cannot be read: permission denied; check its permissions.") from err
    except IsADirectoryError as err:
        raise MsliError(f"{file.display} is a folder, not a file; pass a data file or folder.") from err
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno == errno.ENOENT and file.path and file.path.is_symlink()):
            raise MsliError(
                f"{file.display} is {_link_trouble(file.path)}, so it leads to no file to read; fix or "
                "remove the link."
            ) from err
        raise MsliError(f"{file.display} cannot be read ({err.strerror or err}); check the file.") from err


def check_zip_members(archive: zipfile.ZipFile, display: str) -> None:
    """Refuse an archive any of whose member names is absolute or climbs out with ``..`` (zip slip).

    >>> import io
    >>> buffer = io.BytesIO()
    >>> with zipfile.ZipFile(buffer, "w") as archive:
    ...     archive.writestr("ml-100k/u.data", "1 1 5 0")
    ...     archive.writestr("../u.data", "1 1 5 0")
    >>> check_zip_members(zipfile.ZipFile(buffer), "bad.zip")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    msli_core.errors.MsliError: bad.zip contains a member named '../u.data' that points outside ...
    """
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\x00" in name:
            raise MsliError(
                f"{display} contains a member named {info.filename!r} that points outside the archive's "
                "folder; refusing to read it — use an archive whose members are plain relative paths."
            )


def zip_limits() -> tuple[int, float]:
    """(most bytes one zip member may expand to, most expanded/compressed ratio), from the environment."""
    mb = env_positive(MAX_EXPANDED_MB_ENV, DEFAULT_MAX_EXPANDED_MB)
    return int(mb * (1 << 20)), env_positive(MAX_ZIP_RATIO_ENV, DEFAULT_MAX_ZIP_RATIO)


def check_zip_member_size(info: zipfile.ZipInfo, display: str) -> None:
    """Refuse a member that would expand beyond the size or ratio limit, before reading a byte of it.

    :mod:`zipfile` never yields more than a member's recorded size (a member that lies about it fails
    its CRC check), so checking the recorded sizes bounds what a read can expand to."""
    max_bytes, max_ratio = zip_limits()
    size, packed = info.file_size, max(info.compress_size, 1)
    if size > max_bytes:
        raise MsliError(
            f"{display} would expand to {size / 2**20:,.0f} MB, above the limit of "
            f"{max_bytes / 2**20:,.0f} MB per zip member; refusing to read it — if the file is genuine, "
            f"{raise_limit(MAX_EXPANDED_MB_ENV, int(size / 2**20) + 1)}, or unpack the archive and "
            f"{words(cli='pass its folder', app='load its folder with “Local path”')}."
        )
    if size > RATIO_CHECK_MIN_BYTES and size / packed > max_ratio:
        raise MsliError(
            f"{display} would expand {size / packed:,.0f} times (from {packed / 2**20:,.1f} MB to "
            f"{size / 2**20:,.0f} MB), above the limit of {max_ratio:g} times for a zip member (a zip "
            f"bomb?); refusing to read it — if the file is genuine, "
            f"{raise_limit(MAX_ZIP_RATIO_ENV, int(size / packed) + 1)}."
        )


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _link_trouble(path: Path) -> str:
    """What is wrong with a symbolic link that leads nowhere: "a loop of symbolic links" (it leads back
    to itself, ELOOP) or "a broken symbolic link" (its target does not exist)."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a loop of symbolic links"
    return "a broken symbolic link"


def shorten(text: str, keep: int = 60) -> str:
    """``text`` for a sentence: whole when short, else its start, an ellipsis and its length.

    >>> shorten("x" * 5000)
    'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx… (5,000 characters)'
    """
    return text if len(text) <= keep + 20 else f"{text[:keep]}… ({len(text):,} characters)"


def user_path(text: str | os.PathLike) -> Path:
    """``text`` as a path with ``~`` and ``~user`` expanded. A ``~user`` for a user this machine does not
    have, or a ``~`` when the home folder is unknown, is one sentence (``Path.expanduser`` raises a bare
    RuntimeError for both)."""
    path = Path(text)
    try:
        return path.expanduser()
    except RuntimeError:
        head = path.parts[0] if path.parts else "~"
        shown = shorten(str(text))
        if head == "~":
            raise MsliError(
                f"{shown} starts with ~, but the home folder of the user running "
                f"{words(cli='msli', app='the app')} is not known (HOME is not set); type the full path."
            ) from None
        raise MsliError(
            f"There is no user called {head[1:]!r} on this machine, so {shown} names no folder; type the "
            "full path instead (it starts with /)."
        ) from None


def _too_long(path: Path, shown: str) -> MsliError:
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    try:
        name_max = os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if longest > name_max:
        what = f"one name in it is {longest:,} bytes long; a file or folder name may have {name_max} at most"
    else:
        what = f"it is {len(os.fsencode(str(path))):,} bytes long, more than this machine allows for a path"
    return MsliError(
        f"The path {shorten(shown)} is too long to name a file ({what}); check what was typed and pass the "
        "path of a dataset folder, a .zip archive or a ratings file."
    )


def check_file_kind(path: Path, shown: str) -> os.stat_result:
    """Regular files and folders only (checked with stat before anything is opened). Every reason stat
    gives for failing is its own sentence: the path does not exist (or is a broken link), is a loop of
    symbolic links, is too long to be a path, holds a NUL character, or cannot be accessed."""
    try:
        info = path.stat()
    except ValueError:  # "embedded null byte"
        raise MsliError(
            f"The path {shorten(shown)!r} contains a NUL character, which no file name can hold; type the "
            "path again."
        ) from None
    except OSError as err:
        code = err.errno
        if code == errno.ENAMETOOLONG:
            raise _too_long(path, shown) from None
        if code == errno.ELOOP:
            raise MsliError(
                f"{shorten(shown)} is a loop of symbolic links (following them leads back to where they "
                "start), so it names nothing; fix or remove the link."
            ) from None
        if code in (errno.ENOENT, errno.ENOTDIR):
            if path.is_symlink():
                raise MsliError(
                    f"{shorten(shown)} is a broken symbolic link (what it points to does not exist); "
                    "fix the link or pass a dataset folder, a .zip archive or a ratings file."
                ) from None
            raise MsliError(
                f"{shorten(shown)} does not exist; pass a dataset folder, a .zip archive or a ratings file."
            ) from None
        raise MsliError(
            f"{shorten(shown)} cannot be accessed ({err.strerror or err}); check the path."
        ) from err
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        return info
    kind = next((label for test, label in _KINDS if test(info.st_mode)), "not a regular file")
    raise MsliError(
        f"{shown} is {kind}, not a regular file or folder; pass a dataset folder, a .zip archive or a "
        "ratings file."
    )


def open_zip(path: Path, shown: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
        archive.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as err:
        raise MsliError(f"{shown} is not a readable zip archive ({err}); download it again.") from err
    check_zip_members(archive, shown)
    return archive
