"""All-or-nothing outputs: a failure leaves the target as it was; success replaces it whole."""

from __future__ import annotations

import os

import pytest

from msli_core.errors import MsliError
from msli_core.outputs import atomic_output_dir, atomic_write_bytes


def test_failed_write_leaves_no_folder_and_no_temporaries(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(target) as tmp:
        (tmp / "half.csv").write_text("a,b\n")
        raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_output(tmp_path):
    target = tmp_path / "out"
    with atomic_output_dir(target) as tmp:
        (tmp / "model.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_output_dir(target) as tmp:
        (tmp / "model.txt").write_text("v2-partial")
        raise RuntimeError("crash")
    assert (target / "model.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_successful_rewrite_replaces_the_folder_whole(tmp_path):
    target = tmp_path / "out"
    with atomic_output_dir(target) as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_output_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_target_that_is_a_file_is_refused_with_a_sentence(tmp_path):
    target = tmp_path / "out"
    target.write_text("not a folder")
    with pytest.raises(MsliError, match="is not a folder"), atomic_output_dir(target):
        pass
    assert target.read_text() == "not a folder"


def test_atomic_file_write_has_umask_permissions_and_no_leftovers(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc"
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
