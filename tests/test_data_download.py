"""fetch_movielens against a loopback HTTP server: success, cache, checksum mismatch, 404, cut-off body."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import time
import zipfile
from pathlib import Path

import pytest
from _fixtures import FIXTURES
from _loopback import Route, serve

from msli_core.data import MOVIELENS_NAMES, fetch_movielens, load_dataset
from msli_core.data.audience import app_user
from msli_core.data.download import MOVIELENS_CHECKSUMS, default_cache_dir
from msli_core.errors import MsliError
from msli_core.progress import ProgressEvent


def _zip_of(folder: Path, top: str | None = "ml-100k", extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if top:
            zf.writestr(f"{top}/", b"")
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{top}/{f.name}" if top else f.name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


ZIP_100K = _zip_of(FIXTURES / "layout-100k")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Loopback requests must never go through a proxy the environment may name."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("MSLI_MOVIELENS_BASE_URL", raising=False)


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_names_and_published_checksums_cover_every_dataset():
    assert set(MOVIELENS_NAMES) == set(MOVIELENS_CHECKSUMS)
    assert MOVIELENS_CHECKSUMS["ml-32m"].startswith("md5:")
    assert all(v.startswith("sha256:") for k, v in MOVIELENS_CHECKSUMS.items() if k != "ml-32m")
    assert default_cache_dir().parts[-2:] == ("msli-lab", "movielens")


def test_fetch_verifies_unpacks_and_reports_progress(tmp_path):
    events: list[ProgressEvent] = []
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server:
        folder = fetch_movielens(
            "ml-100k",
            directory=tmp_path,
            base_url=server.base_url,
            checksums={"ml-100k": _sha256(ZIP_100K)},
            progress=events.append,
        )
    assert folder == tmp_path / "ml-100k"
    assert (folder / "u.data").read_bytes() == (FIXTURES / "layout-100k" / "u.data").read_bytes()
    assert (tmp_path / "ml-100k.zip").read_bytes() == ZIP_100K
    data = load_dataset(folder)
    assert (data.format, data.n_users, data.n_items, data.n_interactions) == ("ml-100k", 4, 6, 12)
    assert events and events[-1].total == len(ZIP_100K) and events[-1].done == len(ZIP_100K)
    assert all(e.task == "download" for e in events)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary left over"


def test_second_fetch_uses_cache_and_reverifies_it(tmp_path):
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server:
        first = fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
        second = fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
        assert first == second and server.hits == ["/ml-100k.zip"]  # served from the cache: no second hit
        # A damaged cached archive fails re-verification and is downloaded again.
        (tmp_path / "ml-100k.zip").write_bytes(b"damaged")
        third = fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
        assert third == first and len(server.hits) == 2
        assert (tmp_path / "ml-100k.zip").read_bytes() == ZIP_100K


def test_base_url_from_environment(tmp_path, monkeypatch):
    with serve({"/mirror/ml-100k.zip": Route(ZIP_100K)}) as server:
        monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", server.base_url + "/mirror/")
        folder = fetch_movielens("ml-100k", directory=tmp_path, checksums={"ml-100k": _sha256(ZIP_100K)})
    assert (folder / "u.item").is_file()


def test_checksum_mismatch_leaves_nothing(tmp_path):
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server, pytest.raises(MsliError) as err:
        fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url)  # the published hash
    assert "checksum" in str(err.value) and "ml-100k" in str(err.value)
    assert _files_under(tmp_path) == []


def test_http_404_leaves_nothing(tmp_path):
    with serve({}) as server, pytest.raises(MsliError) as err:
        fetch_movielens("ml-1m", directory=tmp_path, base_url=server.base_url)
    assert "404" in str(err.value) and "ml-1m" in str(err.value)
    assert _files_under(tmp_path) == []


def test_truncated_body_leaves_nothing(tmp_path):
    routes = {"/ml-100k.zip": Route(ZIP_100K, truncate=True)}
    with serve(routes) as server, pytest.raises(MsliError) as err:
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums={"ml-100k": _sha256(ZIP_100K)}
        )
    assert "cut off" in str(err.value)
    assert _files_under(tmp_path) == []


def test_unreachable_host_says_so(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MsliError) as err:
        fetch_movielens("ml-100k", directory=tmp_path, base_url=f"http://127.0.0.1:{port}")
    assert "Cannot reach" in str(err.value)
    assert _files_under(tmp_path) == []


def test_the_app_gets_its_own_fix_and_the_cli_its_flags(tmp_path):
    """The same failures: the CLI's sentence names --dir / msli data inspect, the app's the app's way."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "file").write_text("not a folder")
    for kwargs in (
        dict(directory=tmp_path / "cache", base_url=f"http://127.0.0.1:{port}"),  # unreachable
        dict(directory=tmp_path / "file" / "cache"),  # the cache folder cannot be made
    ):
        with pytest.raises(MsliError) as cli:
            fetch_movielens("ml-100k", **kwargs)
        with pytest.raises(MsliError) as app, app_user():
            fetch_movielens("ml-100k", **kwargs)
        assert "--dir" in str(cli.value) or "msli data inspect" in str(cli.value)
        assert "Upload files" in str(app.value)
        assert "--dir" not in str(app.value) and "msli " not in str(app.value)


def test_archive_with_escaping_member_is_refused_and_removed(tmp_path):
    evil = _zip_of(FIXTURES / "layout-100k", extra={"ml-100k/../../escaped.txt": b"x"})
    with serve({"/ml-100k.zip": Route(evil)}) as server, pytest.raises(MsliError) as err:
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums={"ml-100k": _sha256(evil)}
        )
    assert "outside" in str(err.value)
    assert _files_under(tmp_path) == []
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_archive_without_top_folder_is_unpacked_as_is(tmp_path):
    flat = _zip_of(FIXTURES / "layout-1m", top=None)
    with serve({"/ml-1m.zip": Route(flat)}) as server:
        folder = fetch_movielens(
            "ml-1m", directory=tmp_path, base_url=server.base_url, checksums={"ml-1m": _sha256(flat)}
        )
    assert load_dataset(folder).format == "ml-1m"


def test_unknown_name_and_weak_checksum_table_are_refused(tmp_path):
    with pytest.raises(MsliError, match="ml-5k"):
        fetch_movielens("ml-5k", directory=tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        fetch_movielens("ml-100k", directory=tmp_path, checksums={"ml-100k": ""})


def test_a_trickling_server_hits_the_whole_transfer_deadline_and_leaves_nothing(tmp_path):
    """One byte every 0.2 s: each read succeeds, so only a deadline on the whole transfer ends it."""
    routes = {"/ml-100k.zip": Route(ZIP_100K, trickle_s=0.2)}
    with serve(routes) as server, pytest.raises(MsliError) as err:
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url,
            checksums={"ml-100k": _sha256(ZIP_100K)}, deadline_s=1.0,
        )  # fmt: skip
    message = str(err.value)
    assert "did not finish within 1 s" in message and "MSLI_DOWNLOAD_DEADLINE_S" in message
    assert _files_under(tmp_path) == [], "no partial or 0-byte temporary file is left"


def test_a_bad_deadline_in_the_environment_is_a_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_DOWNLOAD_DEADLINE_S", "soon")
    with pytest.raises(MsliError, match="MSLI_DOWNLOAD_DEADLINE_S"):
        fetch_movielens("ml-100k", directory=tmp_path, base_url="http://127.0.0.1:9")


def test_stale_temporaries_of_a_killed_fetch_are_removed_and_others_kept(tmp_path):
    """A fetch killed mid-transfer (SIGKILL: no finally runs) leaves its temporaries; the next fetch
    removes those it recognises as its own once stale, and touches nothing else."""
    import os

    from msli_core.data import download

    part = tmp_path / ".msli-part-ml-100k.zip.abc123"
    part.write_bytes(b"")
    unpack = tmp_path / ".msli-unpack-ml-100k.xyz"
    (unpack / "sub").mkdir(parents=True)
    (unpack / "sub" / "u.data").write_bytes(b"1\t2\t3\t4\n")
    fresh = tmp_path / ".msli-part-ml-1m.zip.live"  # a live fetch of another process: recent, kept
    fresh.write_bytes(b"partial")
    mine = tmp_path / "notes.txt"  # not ours: never touched, however old
    mine.write_text("keep me")
    old = time.time() - download._STALE_S - 60
    for path in (part, unpack, unpack / "sub", unpack / "sub" / "u.data", mine):
        os.utime(path, (old, old))
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server:
        fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
    assert not part.exists() and not unpack.exists()
    assert fresh.exists() and mine.read_text() == "keep me"


def test_an_archive_member_over_the_expanded_limit_is_not_unpacked(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_MAX_EXPANDED_MB", "1")
    big = _zip_of(FIXTURES / "layout-100k", extra={"ml-100k/big.csv": bytes(range(256)) * 8192})  # 2 MB
    with serve({"/ml-100k.zip": Route(big)}) as server, pytest.raises(MsliError) as err:
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums={"ml-100k": _sha256(big)}
        )
    assert "big.csv" in str(err.value) and "MSLI_MAX_EXPANDED_MB" in str(err.value)
    assert _files_under(tmp_path) == []
    # the app's user is told who can raise it, and to what, never the environment variable
    with serve({"/ml-100k.zip": Route(big)}) as server, pytest.raises(MsliError) as app, app_user():
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums={"ml-100k": _sha256(big)}
        )
    assert "big.csv" in str(app.value) and "MSLI_" not in str(app.value)
    assert "ask whoever runs the app to raise its limit on a zip member's expanded size to 3 MB" in str(
        app.value
    )
    assert _files_under(tmp_path) == []


# ---- never deleting or overwriting what fetch did not write -----------------------------------------
# --dir may be any folder of the user's: a NAME.zip or NAME/ there that fetch did not write is refused
# before anything is downloaded, and left byte for byte as it was.

ZIP_100K_B = _zip_of(FIXTURES / "layout-100k", extra={"ml-100k/README.txt": b"a second edition\n"})


def _snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes), to show nothing changed."""
    return {str(p.relative_to(path)): p.read_bytes() for p in _files_under(path)}


def _users_things(directory: Path) -> None:
    """The audit's setup: random bytes named ml-100k.zip, the user's folder ml-100k/ with keep.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ml-100k.zip").write_bytes(bytes(range(256)) * 4)
    (directory / "ml-100k").mkdir()
    (directory / "ml-100k" / "keep.txt").write_text("the user's own file")
    (directory / "notes.txt").write_text("notes")


def _unreachable_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_the_users_zip_and_folder_survive_a_failed_fetch(tmp_path):
    _users_things(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(MsliError) as err:
        fetch_movielens("ml-100k", directory=tmp_path, base_url=_unreachable_url())
    message = str(err.value)
    assert _snapshot(tmp_path) == before
    assert f"{tmp_path / 'ml-100k'} (it has no .msli-output.json stamp)" in message
    assert f"{tmp_path / 'ml-100k.zip'} (it does not match the published checksum)" in message
    assert "were not downloaded by msli" in message and "move them away or pass another --dir" in message
    assert "Cannot reach" not in message  # refused before any network use


def test_the_users_zip_and_folder_survive_a_fetch_that_would_succeed(tmp_path):
    _users_things(tmp_path)
    before = _snapshot(tmp_path)
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server, pytest.raises(MsliError, match="move them"):
        fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
    assert server.hits == [], "nothing is downloaded before the refusal"
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("which", ["folder", "zip", "file named like the folder"])
def test_one_foreign_entry_alone_is_refused_and_kept(tmp_path, which):
    if which == "folder":
        (tmp_path / "ml-100k").mkdir()
        (tmp_path / "ml-100k" / "keep.txt").write_text("mine")
        named, why = tmp_path / "ml-100k", "it has no .msli-output.json stamp"
    elif which == "zip":
        (tmp_path / "ml-100k.zip").write_bytes(b"my own zip")
        named, why = tmp_path / "ml-100k.zip", "it does not match the published checksum"
    else:
        (tmp_path / "ml-100k").write_text("a file")
        named, why = tmp_path / "ml-100k", "it is a file"
    before = _snapshot(tmp_path)
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server, pytest.raises(MsliError) as err:
        fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
    assert str(err.value) == (
        f"{named} ({why}) was not downloaded by msli, which never replaces what it did not write; "
        "move it away or pass another --dir."
    )
    assert server.hits == [] and _snapshot(tmp_path) == before
    with pytest.raises(MsliError) as app, app_user():
        fetch_movielens("ml-100k", directory=tmp_path, checksums=checksums)
    assert "out of the app's download folder" in str(app.value) and "--dir" not in str(app.value)


def test_a_symbolic_link_named_like_the_folder_is_refused_and_its_target_kept(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ml-100k").symlink_to(elsewhere)
    with pytest.raises(MsliError, match="it is a symbolic link"):
        fetch_movielens("ml-100k", directory=cache, base_url=_unreachable_url())
    assert (cache / "ml-100k").is_symlink() and (elsewhere / "keep.txt").read_text() == "mine"


def test_an_official_zip_the_user_put_there_is_used_and_never_rewritten(tmp_path):
    """A NAME.zip that verifies is only read: unpacked beside, no download; the stamp records that the
    zip is the user's, so a later fetch that no longer verifies it refuses instead of replacing it."""
    (tmp_path / "ml-100k.zip").write_bytes(ZIP_100K)
    mtime = (tmp_path / "ml-100k.zip").stat().st_mtime_ns
    with serve({"/ml-100k.zip": Route(ZIP_100K_B)}) as server:
        folder = fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums={"ml-100k": _sha256(ZIP_100K)}
        )
        assert server.hits == [] and (folder / "u.data").is_file()
        stamp = json.loads((folder / ".msli-output.json").read_text())
        assert stamp["tool"] == "msli" and stamp["kind"] == "movielens" and stamp["archive"] is None
        assert stamp["checksum"] == _sha256(ZIP_100K) and "u.data" in stamp["files"]
        # Another edition is published: the user's zip no longer verifies, and is not fetch's to replace.
        with pytest.raises(MsliError) as err:
            fetch_movielens(
                "ml-100k", directory=tmp_path, base_url=server.base_url,
                checksums={"ml-100k": _sha256(ZIP_100K_B)},
            )  # fmt: skip
        assert server.hits == []
    assert f"{tmp_path / 'ml-100k.zip'} (it does not match the published checksum)" in str(err.value)
    assert (tmp_path / "ml-100k.zip").read_bytes() == ZIP_100K
    assert (tmp_path / "ml-100k.zip").stat().st_mtime_ns == mtime


def test_a_previous_msli_fetch_is_reused_and_then_replaced_by_a_new_edition(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's, beside the cache entries")
    with serve({"/ml-100k.zip": Route(ZIP_100K), "/b/ml-100k.zip": Route(ZIP_100K_B)}) as server:
        first = fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums={"ml-100k": _sha256(ZIP_100K)}
        )
        again = fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums={"ml-100k": _sha256(ZIP_100K)}
        )
        assert again == first and server.hits == ["/ml-100k.zip"]
        assert json.loads((first / ".msli-output.json").read_text())["archive"] == "ml-100k.zip"
        # A new edition: fetch's own zip and folder are replaced (the zip re-downloaded).
        second = fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url + "/b",
            checksums={"ml-100k": _sha256(ZIP_100K_B)},
        )  # fmt: skip
    assert second == first and server.hits == ["/ml-100k.zip", "/b/ml-100k.zip"]
    assert (tmp_path / "ml-100k.zip").read_bytes() == ZIP_100K_B
    assert (second / "README.txt").read_text() == "a second edition\n"
    assert json.loads((second / ".msli-output.json").read_text())["checksum"] == _sha256(ZIP_100K_B)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k", "ml-100k.zip", "notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "the user's, beside the cache entries"


def test_a_folder_fetched_by_an_earlier_release_is_still_reused_and_replaced(tmp_path):
    """Releases before this one stamped the folder with .msli-verified (the checksum alone)."""
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K), "/b/ml-100k.zip": Route(ZIP_100K_B)}) as server:
        folder = fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
        (folder / ".msli-output.json").unlink()
        (folder / ".msli-verified").write_text(_sha256(ZIP_100K) + "\n")
        assert fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums
        ) == folder and len(server.hits) == 1  # fmt: skip
        (tmp_path / "ml-100k.zip").write_bytes(b"damaged")  # the old release's zip, damaged
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url + "/b",
            checksums={"ml-100k": _sha256(ZIP_100K_B)},
        )  # fmt: skip
    assert (tmp_path / "ml-100k.zip").read_bytes() == ZIP_100K_B
    assert (folder / "README.txt").is_file() and not (folder / ".msli-verified").exists()
    assert json.loads((folder / ".msli-output.json").read_text())["checksum"] == _sha256(ZIP_100K_B)


def test_a_fetched_folder_holding_a_users_file_is_reused_but_not_replaced(tmp_path):
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K), "/b/ml-100k.zip": Route(ZIP_100K_B)}) as server:
        folder = fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
        (folder / "my-notes.txt").write_text("mine")
        assert fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums
        ) == folder  # fmt: skip
        before = _snapshot(tmp_path)
        with pytest.raises(MsliError) as err:
            fetch_movielens(
                "ml-100k", directory=tmp_path, base_url=server.base_url + "/b",
                checksums={"ml-100k": _sha256(ZIP_100K_B)},
            )  # fmt: skip
        assert server.hits == ["/ml-100k.zip"]
    assert str(err.value) == (
        f"{folder} is an earlier msli download that must be replaced, but it also holds my-notes.txt, "
        "which msli did not write; move those away or pass another --dir."
    )
    assert _snapshot(tmp_path) == before


def _refused_while_downloading(tmp_path, meanwhile) -> pytest.ExceptionInfo:
    """Fetch ml-100k from a loopback server into ``tmp_path``, calling ``meanwhile`` on each progress
    event (something of the user's appears during the download); the fetch must be refused."""
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server, pytest.raises(MsliError) as err:
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url,
            checksums={"ml-100k": _sha256(ZIP_100K)}, progress=meanwhile,
        )  # fmt: skip
    return err


def test_a_folder_that_appears_during_the_download_is_kept_and_the_download_removed(tmp_path):
    folder = tmp_path / "ml-100k"

    def meanwhile(_event) -> None:
        folder.mkdir(exist_ok=True)
        (folder / "keep.txt").write_text("made while msli was downloading")

    err = _refused_while_downloading(tmp_path, meanwhile)
    assert f"{folder} (it has no .msli-output.json stamp) was not downloaded by msli" in str(err.value)
    assert _snapshot(tmp_path) == {"ml-100k/keep.txt": b"made while msli was downloading"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k"], "no zip, no temporary left"


def test_a_zip_that_appears_during_the_download_is_not_overwritten(tmp_path):
    archive = tmp_path / "ml-100k.zip"

    def meanwhile(_event) -> None:
        archive.write_bytes(b"the user's zip, saved meanwhile")

    err = _refused_while_downloading(tmp_path, meanwhile)
    assert f"{archive} (it appeared while ml-100k was downloading)" in str(err.value)
    assert _snapshot(tmp_path) == {"ml-100k.zip": b"the user's zip, saved meanwhile"}


def test_a_users_verified_zip_that_cannot_be_unpacked_is_kept(tmp_path):
    """A zip already there that matches its checksum but is not a zip archive: the error says so, and the
    zip (not this fetch's download) stays."""
    garbage = b"not a zip archive at all"
    (tmp_path / "ml-100k.zip").write_bytes(garbage)
    with pytest.raises(MsliError) as err:
        fetch_movielens("ml-100k", directory=tmp_path, base_url=_unreachable_url(),
                        checksums={"ml-100k": _sha256(garbage)})  # fmt: skip
    assert "cannot be unpacked" in str(err.value) and "fresh download" in str(err.value)
    assert _snapshot(tmp_path) == {"ml-100k.zip": garbage}


def test_a_downloaded_zip_that_cannot_be_unpacked_is_removed(tmp_path):
    garbage = b"not a zip archive at all"
    with serve({"/ml-100k.zip": Route(garbage)}) as server, pytest.raises(MsliError) as err:
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums={"ml-100k": _sha256(garbage)}
        )
    assert "it was deleted" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_removes_fetchs_own_damaged_zip_and_keeps_its_folder(tmp_path):
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server:
        folder = fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
    (tmp_path / "ml-100k.zip").write_bytes(b"damaged")
    with pytest.raises(MsliError, match="Cannot reach"):
        fetch_movielens("ml-100k", directory=tmp_path, base_url=_unreachable_url(), checksums=checksums)
    assert not (tmp_path / "ml-100k.zip").exists()
    assert (folder / "u.data").is_file() and (folder / ".msli-output.json").is_file()


# ---- the cached zip is hashed once per fetch ---------------------------------------------------------


def _hash_reads(monkeypatch, path: Path) -> list[str]:
    """Every time download.py opens ``path`` for reading (its only reads of a zip are hashes: unpacking
    goes through zipfile); the list grows as the fetch runs."""
    from msli_core.data import download

    reads: list[str] = []

    def counting_open(file, mode="r", *args, **kwargs):
        if Path(file) == path and "r" in mode:
            reads.append(mode)
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(download, "open", counting_open, raising=False)
    return reads


def test_a_cached_zip_is_hashed_once_and_still_verified(tmp_path, monkeypatch):
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server:
        folder = fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
        reads = _hash_reads(monkeypatch, tmp_path / "ml-100k.zip")
        assert fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums
        ) == folder  # fmt: skip
        assert reads == ["rb"] and server.hits == ["/ml-100k.zip"]
        # as strict as before: a cached zip that no longer verifies is not used, but downloaded again
        (tmp_path / "ml-100k.zip").write_bytes(ZIP_100K + b"\x00")
        reads.clear()
        fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
        assert reads == ["rb"] and len(server.hits) == 2
    assert (tmp_path / "ml-100k.zip").read_bytes() == ZIP_100K


def test_a_failed_download_removes_fetchs_damaged_zip_after_one_hash(tmp_path, monkeypatch):
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server:
        fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
    (tmp_path / "ml-100k.zip").write_bytes(b"damaged")
    reads = _hash_reads(monkeypatch, tmp_path / "ml-100k.zip")
    with pytest.raises(MsliError, match="Cannot reach"):
        fetch_movielens("ml-100k", directory=tmp_path, base_url=_unreachable_url(), checksums=checksums)
    assert reads == ["rb"] and not (tmp_path / "ml-100k.zip").exists()


def _fetched_zip_damaged_then_rewritten(tmp_path):
    """Fetch's own zip of ml-100k, damaged afterwards: (checksums, its path, a progress callback that
    writes the user's own zip there while the next download runs)."""
    checksums = {"ml-100k": _sha256(ZIP_100K)}
    with serve({"/ml-100k.zip": Route(ZIP_100K)}) as server:
        fetch_movielens("ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums)
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(b"damaged")

    def meanwhile(_event) -> None:
        archive.write_bytes(b"the user's own zip, saved while msli was downloading")

    return checksums, archive, meanwhile


def test_fetchs_damaged_zip_rewritten_during_a_failed_download_is_kept(tmp_path):
    """Fetch's own stale zip is removed when the download fails only while it is the file fetch hashed:
    one the user wrote there meanwhile is theirs."""
    checksums, archive, meanwhile = _fetched_zip_damaged_then_rewritten(tmp_path)

    with serve({"/ml-100k.zip": Route(ZIP_100K, truncate=True)}) as server, pytest.raises(MsliError):
        fetch_movielens(
            "ml-100k", directory=tmp_path, base_url=server.base_url, checksums=checksums, progress=meanwhile
        )
    assert archive.read_bytes() == b"the user's own zip, saved while msli was downloading"


def test_fetchs_damaged_zip_rewritten_during_a_download_is_not_overwritten(tmp_path):
    _checksums, archive, meanwhile = _fetched_zip_damaged_then_rewritten(tmp_path)

    err = _refused_while_downloading(tmp_path, meanwhile)
    assert f"{archive} (it appeared while ml-100k was downloading)" in str(err.value)
    assert archive.read_bytes() == b"the user's own zip, saved while msli was downloading"


# ---- folders of earlier releases: a .msli-verified stamp that lists no files ----------------------------
# Such a folder is replaced (a new edition) only when every file in it is one the official archive holds,
# with the archive's size: the zip it was unpacked from when that is still beside it and verifies, else
# the new download. Anything else is refused, and nothing is deleted.


def _old_release_folder(directory: Path, server) -> Path:
    """ml-100k fetched (edition ZIP_100K) and then stamped as releases before .msli-output.json did."""
    folder = fetch_movielens(
        "ml-100k", directory=directory, base_url=server.base_url, checksums={"ml-100k": _sha256(ZIP_100K)}
    )
    (folder / ".msli-output.json").unlink()
    (folder / ".msli-verified").write_text(_sha256(ZIP_100K) + "\n")
    return folder


def _new_edition(directory: Path, server) -> Path:
    """Fetch edition ZIP_100K_B (ZIP_100K's files and a README.txt) from the server's /b/."""
    return fetch_movielens(
        "ml-100k", directory=directory, base_url=server.base_url + "/b",
        checksums={"ml-100k": _sha256(ZIP_100K_B)},
    )  # fmt: skip


def _added_file(folder: Path) -> None:
    (folder / "my-notes.txt").write_text("mine")


def _edited_file(folder: Path) -> None:
    with open(folder / "u.data", "a") as fh:
        fh.write("9\t9\t5\t881250949\n")  # 16 bytes more


def _added_folder(folder: Path) -> None:
    (folder / "mine").mkdir()


def _added_link(folder: Path) -> None:
    (folder / "elsewhere").symlink_to(folder.parent / "notes.txt")


U_DATA = (FIXTURES / "layout-100k" / "u.data").stat().st_size


@pytest.mark.parametrize(
    ("change", "named", "says"),
    [
        (_added_file, "my-notes.txt", "holds my-notes.txt, which the official archive does not hold"),
        (_edited_file, "u.data",
         f"holds u.data of {U_DATA + 16:,} bytes, where the official archive's has {U_DATA:,}"),
        (_added_folder, "mine", "holds mine, a folder the official archive does not hold"),
        (_added_link, "elsewhere",
         "holds elsewhere, a symbolic link, which the official archive does not hold"),
    ],
    ids=["added-file", "edited-file", "added-folder", "added-link"],
)  # fmt: skip
@pytest.mark.parametrize("old_zip", ["beside it", "gone"])
def test_an_earlier_releases_folder_holding_anything_else_is_kept(tmp_path, change, named, says, old_zip):
    (tmp_path / "notes.txt").write_text("the user's, beside the cache entries")
    with serve({"/ml-100k.zip": Route(ZIP_100K), "/b/ml-100k.zip": Route(ZIP_100K_B)}) as server:
        folder = _old_release_folder(tmp_path, server)
        change(folder)
        if old_zip == "gone":
            (tmp_path / "ml-100k.zip").unlink()
        before = _snapshot(tmp_path)
        with pytest.raises(MsliError) as err:
            _new_edition(tmp_path, server)
        # with the zip it was unpacked from beside it, the folder is judged before any download; without
        # it, by the new download, before the rename into place (and that download is removed again)
        downloads = ["/ml-100k.zip"] + (["/b/ml-100k.zip"] if old_zip == "gone" else [])
        assert server.hits == downloads
    assert str(err.value) == (
        f"{folder} was unpacked by an earlier release of msli, whose stamp lists no files, and must be "
        f"replaced, but it {says}, so it may hold files of yours and msli will not delete it; "
        f"move {folder / named} away or pass another --dir."
    )
    assert _snapshot(tmp_path) == before and (folder / ".msli-verified").is_file()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["ml-100k", *(["ml-100k.zip"] if old_zip == "beside it" else []), "notes.txt"], left


@pytest.mark.parametrize("old_zip", ["beside it", "damaged", "gone"])
def test_an_earlier_releases_folder_holding_only_the_archives_files_is_replaced(tmp_path, old_zip):
    with serve({"/ml-100k.zip": Route(ZIP_100K), "/b/ml-100k.zip": Route(ZIP_100K_B)}) as server:
        folder = _old_release_folder(tmp_path, server)
        if old_zip == "damaged":
            (tmp_path / "ml-100k.zip").write_bytes(b"damaged")
        elif old_zip == "gone":
            (tmp_path / "ml-100k.zip").unlink()
        assert _new_edition(tmp_path, server) == folder
    assert (folder / "README.txt").read_text() == "a second edition\n"
    assert not (folder / ".msli-verified").exists()
    assert json.loads((folder / ".msli-output.json").read_text())["checksum"] == _sha256(ZIP_100K_B)
    assert (tmp_path / "ml-100k.zip").read_bytes() == ZIP_100K_B
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k", "ml-100k.zip"]


def test_an_earlier_releases_folder_is_judged_by_the_new_edition_when_its_zip_is_gone(tmp_path):
    """Conservative: once the old zip is gone, a file the new edition holds at another size cannot be
    told from a user's edit, so the folder is kept and the user told."""
    edition_c = tmp_path / "edition-c"
    shutil.copytree(FIXTURES / "layout-100k", edition_c)
    _edited_file(edition_c)
    zip_c = _zip_of(edition_c)
    cache = tmp_path / "cache"
    with serve({"/ml-100k.zip": Route(ZIP_100K), "/c/ml-100k.zip": Route(zip_c)}) as server:
        folder = _old_release_folder(cache, server)
        (cache / "ml-100k.zip").unlink()
        before = _snapshot(cache)
        with pytest.raises(
            MsliError, match=f"holds u.data of {U_DATA:,} bytes, where the official archive's"
        ):
            fetch_movielens(
                "ml-100k",
                directory=cache,
                base_url=server.base_url + "/c",
                checksums={"ml-100k": _sha256(zip_c)},
            )
    assert _snapshot(cache) == before and (folder / ".msli-verified").is_file()


def test_an_earlier_releases_folder_refusal_is_worded_for_the_app_inside_app_user(tmp_path):
    with serve({"/ml-100k.zip": Route(ZIP_100K), "/b/ml-100k.zip": Route(ZIP_100K_B)}) as server:
        folder = _old_release_folder(tmp_path, server)
        _added_file(folder)
        with pytest.raises(MsliError) as err, app_user():
            _new_edition(tmp_path, server)
    assert str(err.value).endswith(
        f"move {folder / 'my-notes.txt'} out of the app's download folder, or download the zip from "
        "grouplens.org yourself and load it with “Upload files”."
    )
