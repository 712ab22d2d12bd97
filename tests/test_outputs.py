"""All-or-nothing outputs: a failure leaves the target as it was; success replaces it whole; and --out
only ever replaces a folder msli wrote itself (issue 9 §2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from msli_core import outputs
from msli_core.errors import MsliError
from msli_core.outputs import MARKER, atomic_output_dir, atomic_write_bytes, check_out_dir


def test_failed_write_leaves_no_folder_and_no_temporaries(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(target, kind="quality") as tmp:
        (tmp / "half.csv").write_text("a,b\n")
        raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_output(tmp_path):
    target = tmp_path / "out"
    with atomic_output_dir(target, kind="quality") as tmp:
        (tmp / "model.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_output_dir(target, kind="quality") as tmp:
        (tmp / "model.txt").write_text("v2-partial")
        raise RuntimeError("crash")
    assert (target / "model.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_successful_rewrite_replaces_the_folder_whole(tmp_path):
    target = tmp_path / "out"
    with atomic_output_dir(target, kind="bench") as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_output_dir(target, kind="bench") as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "new.txt"]
    marker = json.loads((target / MARKER).read_text())
    assert marker == {"tool": "msli", "kind": "bench", "files": ["new.txt"]}


def test_output_folder_has_the_usual_permissions(tmp_path):
    with atomic_output_dir(tmp_path / "out", kind="synth") as tmp:
        (tmp / "a.csv").write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "out").st_mode & 0o777 == 0o777 & ~mask


def test_target_that_is_a_file_is_refused_with_a_sentence(tmp_path):
    target = tmp_path / "out"
    target.write_text("not a folder")
    with pytest.raises(MsliError, match="is not a folder"), atomic_output_dir(target, kind="quality"):
        pass
    assert target.read_text() == "not a folder"


def test_a_folder_msli_did_not_create_is_refused_and_kept(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("four years of work")
    for kind in ("model", "quality", "bench", "synth"):
        with pytest.raises(MsliError, match=r"msli did not create \(it holds thesis.txt\)"):
            check_out_dir(docs, kind)
        with pytest.raises(MsliError, match="did not create"), atomic_output_dir(docs, kind=kind) as tmp:
            (tmp / "x").write_text("never kept")
    assert [p.name for p in docs.iterdir()] == ["thesis.txt"]
    assert (docs / "thesis.txt").read_text() == "four years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]


def test_an_output_of_another_kind_is_refused(tmp_path):
    with atomic_output_dir(tmp_path / "q", kind="quality") as tmp:
        (tmp / "quality.csv").write_text("a\n")
    with pytest.raises(MsliError, match="earlier msli quality output, not a bench output"):
        check_out_dir(tmp_path / "q", "bench")
    assert (tmp_path / "q" / "quality.csv").exists()


def test_a_user_file_added_to_an_earlier_output_is_never_deleted(tmp_path):
    target = tmp_path / "q"
    with atomic_output_dir(target, kind="quality") as tmp:
        (tmp / "quality.csv").write_text("a\n")
    (target / "notes.txt").write_text("mine")
    with pytest.raises(MsliError, match=r"notes\.txt, which msli did not write"):
        check_out_dir(target, "quality")
    assert (target / "notes.txt").read_text() == "mine"


def test_a_forged_or_broken_marker_is_not_trusted(tmp_path):
    target = tmp_path / "x"
    target.mkdir()
    (target / "data.csv").write_text("1")
    (target / MARKER).write_text("{not json")
    with pytest.raises(MsliError, match="did not create"):
        check_out_dir(target, "quality")
    (target / MARKER).write_text(json.dumps({"tool": "other", "kind": "quality", "files": ["data.csv"]}))
    with pytest.raises(MsliError, match="did not create"):
        check_out_dir(target, "quality")


def test_a_model_folder_is_recognised_by_its_config(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format": "msli-model/2", "kind": "popularity"}))
    (folder / "model.safetensors").write_bytes(b"x")
    assert check_out_dir(folder, "model") == folder
    with pytest.raises(MsliError, match="model output, not a quality output"):
        check_out_dir(folder, "quality")
    (folder / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(MsliError, match="did not create"):
        check_out_dir(folder, "model")


def test_empty_and_new_folders_are_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty", "bench") == tmp_path / "empty"
    assert check_out_dir(tmp_path / "new" / "deeper", "bench") == tmp_path / "new" / "deeper"


@pytest.mark.parametrize("name", [".", "..", "CWD", "PARENT", "HOME", "/"])
def test_cwd_its_ancestors_home_and_root_are_refused(tmp_path, monkeypatch, name):
    work = tmp_path / "home" / "me" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home" / "me"))
    home = str(tmp_path / "home" / "me")
    path = {"CWD": str(work), "PARENT": str(work.parent), "HOME": home}.get(name, name)
    with pytest.raises(MsliError, match=r"msli will not replace|root folder"):
        check_out_dir(path, "quality")


def test_a_symlink_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(MsliError, match="symbolic link"):
        check_out_dir(tmp_path / "link", "bench")


@pytest.mark.parametrize("where", ["same", "inside", "holds"])
def test_the_data_folder_is_refused(tmp_path, where):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    out = {"same": data, "inside": data / "model", "holds": tmp_path}[where]
    with pytest.raises(MsliError, match="data"):
        check_out_dir(out, "model", data=data)
    assert (data / "ratings.csv").exists()


def test_atomic_file_write_has_umask_permissions_and_no_leftovers(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc"
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


# ---- outputs that cannot be created: one true sentence, before any work ------------------------------


def _refuse_new_entries(monkeypatch):
    """Make every folder refuse new entries, as a read-only mount does (root passes os.access checks)."""

    def refuse(*_, **__):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", refuse)
    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)


def test_an_unwritable_parent_is_named_as_not_writable_before_any_work(tmp_path, monkeypatch):
    _refuse_new_entries(monkeypatch)
    target = tmp_path / "new" / "deeper"
    with pytest.raises(MsliError) as err:
        check_out_dir(target, "bench")
    # the folder that exists and refuses is named, not a missing one
    assert str(err.value) == (
        f"Cannot create {target}: {tmp_path} is not writable (Permission denied); "
        "choose a writable --out path."
    )
    with pytest.raises(MsliError, match=r"--flag path\.$"):
        check_out_dir(target, "bench", flag="--flag")
    (tmp_path / "empty").mkdir()  # an existing empty folder is replaced from beside it: same question
    with pytest.raises(MsliError, match=f"{tmp_path} is not writable"):
        check_out_dir(tmp_path / "empty", "quality")
    with pytest.raises(
        MsliError, match=r"^Cannot create .*x\.bin: .* is not writable \(Permission denied\); fix it\.$"
    ):
        atomic_write_bytes(tmp_path / "x.bin", b"abc", fix="fix it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing created on the way


def test_a_file_on_the_way_is_named_as_not_a_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    target = tmp_path / "notes.txt" / "out"
    with pytest.raises(MsliError) as err:
        check_out_dir(target, "quality")
    assert str(err.value) == (
        f"Cannot create {target}: {tmp_path / 'notes.txt'} is not a folder; choose a writable --out path."
    )
    with pytest.raises(MsliError, match=r"notes\.txt is not a folder"):
        atomic_write_bytes(target / "x.bin", b"abc")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_probe_leaves_nothing_behind(tmp_path):
    assert check_out_dir(tmp_path / "a" / "b", "synth") == tmp_path / "a" / "b"
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", "synth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not any((tmp_path / "empty").iterdir())


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("target", ["/proc/x", "/proc/x/y"])
def test_proc_is_named_as_not_writable(target):
    with pytest.raises(MsliError, match=rf"^Cannot create {target}: /proc is not writable \(.+\); choose"):
        check_out_dir(target, "model")
    with pytest.raises(MsliError, match=rf"^Cannot create {target}\.onnx: /proc is not writable"):
        atomic_write_bytes(f"{target}.onnx", b"x")


def test_a_fetched_movielens_folder_is_named_as_such(tmp_path):
    folder = tmp_path / "ml-100k"  # what `msli data fetch` unpacks, with its marker
    folder.mkdir()
    (folder / "u.data").write_text("1\t1\t4\t1\n")
    (folder / MARKER).write_text('{"tool": "msli", "kind": "movielens", "files": ["u.data"]}')
    with pytest.raises(MsliError, match="holds an earlier msli movielens output, not a model output"):
        check_out_dir(folder, "model")
    assert (folder / "u.data").read_text() == "1\t1\t4\t1\n"
