"""Saves at the same moment (two app sessions are two threads of one process; two app processes share the
workspace too): no save replaces another save's folder, a reader never sees a half-written folder, and a
folder being replaced is set aside under a name no other thread uses. Each race is made to happen, not
hoped for: the saves are held at a barrier after writing and before moving their folder in."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from tiny_data import make_tiny_dataset

from msli_core import outputs, workspace
from msli_core.models import registry
from msli_core.serving import bench
from msli_core.serving.bench import BenchResult
from msli_core.serving.bench_settings import ROW_KEYS
from msli_core.train import TrainSettings, train
from msli_core.trained import from_result


@pytest.fixture(scope="module")
def models():
    """The same model name on two datasets, and a second run on the first dataset."""
    a = make_tiny_dataset(users=20, items=30, events=15)
    b = make_tiny_dataset(users=20, items=36, events=15, seed=3)

    def popularity(data):
        return from_result(
            "popularity", train(data, "popularity", TrainSettings.for_kind("popularity"), {}), data
        )

    return (a, popularity(a)), (b, popularity(b)), (a, popularity(a))


def a_row(p50: float) -> dict:
    row = dict.fromkeys(ROW_KEYS)
    row.update(model="msli", stage="online", backend="torch", segments=4, history=50, candidates=100,
               p50_ms=p50, calls=5)  # fmt: skip
    return row


def held(monkeypatch, module, name: str, parties: int) -> threading.Barrier:
    """``module.name`` writes as before, then waits until ``parties`` writers have written."""
    barrier = threading.Barrier(parties, timeout=60)
    real = getattr(module, name)

    def write_then_wait(*args, **kwargs):
        out = real(*args, **kwargs)
        barrier.wait()
        return out

    monkeypatch.setattr(module, name, write_then_wait)
    return barrier


def at_once(*calls) -> list:
    """Run the calls in threads at once; their results (or the exception each raised)."""
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as err:  # the test looks at it
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def visible(root, name: str) -> list[str]:
    return sorted(p.name for p in (root / name).iterdir())


def test_two_sessions_saving_one_name_on_two_datasets_keep_both(tmp_path, monkeypatch, models):
    (a, first), (b, second), _ = models
    held(monkeypatch, registry, "save_model", 2)
    saved = at_once(
        lambda: workspace.save_model(first, a, root=tmp_path),
        lambda: workspace.save_model(second, b, root=tmp_path),
    )
    assert all(not isinstance(r, Exception) for r in saved), saved
    assert sorted(p.name for p in saved) == ["popularity", "popularity-2"]
    assert visible(tmp_path, "models") == ["popularity", "popularity-2"]  # no staging or aside left
    back, problems = workspace.load_models(tmp_path)
    assert problems == [] and sorted(m.dataset_fingerprint for m in back) == sorted(
        [a.fingerprint, b.fingerprint]
    )


def test_two_saves_of_one_model_replace_its_folder_in_turn_without_an_error(tmp_path, monkeypatch, models):
    """The same name on the same dataset is the same model retrained: both saves succeed, the folder
    holds one of them, whole, and nothing is left beside it."""
    (a, first), _, (_, again) = models
    workspace.save_model(first, a, root=tmp_path)
    held(monkeypatch, registry, "save_model", 2)
    saved = at_once(
        lambda: workspace.save_model(first, a, root=tmp_path),
        lambda: workspace.save_model(again, a, root=tmp_path),
    )
    assert [p.name for p in saved] == ["popularity", "popularity"], saved
    assert visible(tmp_path, "models") == ["popularity"]
    back, problems = workspace.load_models(tmp_path)
    assert problems == [] and [m.name for m in back] == ["popularity"]


def test_two_sweeps_saved_in_one_second_at_once_are_both_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "gmtime", lambda *_: time.struct_time((2030, 1, 2, 3, 4, 5, 2, 2, 0)))
    held(monkeypatch, bench, "write_outputs", 3)
    saved = at_once(
        *(
            lambda p=p: workspace.save_sweep(BenchResult([a_row(p)], {}), root=tmp_path)
            for p in (1.0, 2.0, 3.0)
        )
    )
    assert all(not isinstance(r, Exception) for r in saved), saved
    names = ["20300102T030405Z", "20300102T030405Z-2", "20300102T030405Z-3"]
    assert sorted(p.name for p in saved) == names and visible(tmp_path, "sweeps") == names
    p50s = sorted(
        json.loads((tmp_path / "sweeps" / n / "bench.json").read_text())[0]["p50_ms"] for n in names
    )
    assert p50s == [1.0, 2.0, 3.0]
    assert workspace.contents(tmp_path)["sweeps"] == 3


def test_the_newest_of_many_sweeps_of_one_second_is_restored(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "gmtime", lambda *_: time.struct_time((2030, 1, 2, 3, 4, 5, 2, 2, 0)))
    for p50 in range(1, 12):  # ...Z, ...Z-2, ..., ...Z-11: "-11" sorts before "-9" as text
        workspace.save_sweep(BenchResult([a_row(float(p50))], {}), root=tmp_path)
    (rows, _), problems = workspace.latest_sweep(tmp_path)
    assert problems == [] and rows[0]["p50_ms"] == 11.0


def test_a_reader_during_a_save_sees_no_half_written_folder(tmp_path, monkeypatch, models):
    """While a save is written (held after its files are written, before it is moved in), the workspace's
    readers see nothing of it: no model, no problem sentence, nothing counted or cleared."""
    (a, first), _, _ = models
    workspace.save_sweep(BenchResult([a_row(1.0)], {"cpu": "before"}), root=tmp_path)
    written, read = threading.Event(), threading.Event()
    real = registry.save_model

    def write_then_hold(*args, **kwargs):
        out = real(*args, **kwargs)
        written.set()
        assert read.wait(60)
        return out

    monkeypatch.setattr(registry, "save_model", write_then_hold)
    seen = {}

    def read_while_held():
        assert written.wait(60)
        assert any(p.name.startswith(".saving-") for p in (tmp_path / "models").iterdir())  # it is there
        seen["models"] = workspace.load_models(tmp_path)
        seen["contents"] = workspace.contents(tmp_path)
        seen["cleared"] = workspace.clear(tmp_path)  # removes the sweep, not the save being written
        read.set()

    saved = at_once(lambda: workspace.save_model(first, a, root=tmp_path), read_while_held)
    assert seen["models"] == ([], [])
    assert (seen["contents"]["models"], seen["contents"]["sweeps"]) == (0, 1) and seen["cleared"] == 1
    assert saved[0] == tmp_path / "models" / "popularity" and visible(tmp_path, "models") == ["popularity"]
    assert [m.name for m in workspace.load_models(tmp_path)[0]] == ["popularity"]


def test_hidden_folders_of_a_save_that_stopped_are_never_read_counted_or_cleared(tmp_path, models):
    (a, first), _, _ = models
    folder = workspace.save_model(first, a, root=tmp_path)
    half = tmp_path / "models" / ".saving-x1y2" / "model"  # a save killed mid-way
    half.mkdir(parents=True)
    (half / "config.json").write_text("{")
    aside = tmp_path / "models" / f".{folder.name}.old-123-456-0-abcd"  # a replace killed mid-way
    aside.mkdir()
    (aside / "config.json").write_text((folder / "config.json").read_text())
    models_back, problems = workspace.load_models(tmp_path)
    assert problems == [] and len(models_back) == 1
    assert workspace.contents(tmp_path)["models"] == 1 and workspace.clear(tmp_path) == 1
    assert half.is_dir() and aside.is_dir()


# ---- outputs: the aside name and the placing rename ----------------------------------------------------
def test_a_replaced_output_is_set_aside_under_a_name_no_other_thread_uses(tmp_path):
    """Another thread of this process is replacing the same folder (its aside, named as msli named it by
    the process id alone, is there): this replace sets its own aside elsewhere and leaves that one be."""
    target = tmp_path / "q"
    with outputs.atomic_output_dir(target, kind="quality") as tmp:
        (tmp / "quality.csv").write_text("first\n")
    theirs = tmp_path / f".q.old-{os.getpid()}"
    theirs.mkdir()
    (theirs / "quality.csv").write_text("another thread's\n")
    with outputs.atomic_output_dir(target, kind="quality") as tmp:
        (tmp / "quality.csv").write_text("second\n")
    assert (target / "quality.csv").read_text() == "second\n"
    assert (theirs / "quality.csv").read_text() == "another thread's\n"
    names = {outputs.aside_path(target) for _ in range(1000)}
    names |= set(at_once(*(lambda: outputs.aside_path(target) for _ in range(8))))
    assert len(names) == 1008 and all(n.parent == tmp_path and n.name.startswith(".q.old-") for n in names)


def test_place_dir_never_replaces_what_it_may_not(tmp_path):
    built = tmp_path / ".built"
    built.mkdir()
    (built / "a").write_text("new")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine").write_text("keep")
    assert outputs.place_dir(built, taken) is False  # no may_replace: a taken name is never replaced
    assert outputs.place_dir(built, taken, may_replace=lambda _old: False) is False
    assert (taken / "mine").read_text() == "keep" and sorted(p.name for p in taken.iterdir()) == ["mine"]
    assert (built / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".built", "taken"]  # the aside was put back
    assert outputs.place_dir(built, tmp_path / "free") is True and (tmp_path / "free" / "a").is_file()
    assert not built.exists()


def test_reading_the_umask_from_two_threads_at_once_gives_both_the_true_one(monkeypatch):
    """Reading the umask sets it to 0 for a moment: two threads inside that moment read each other's 0
    (so one writes its files world-writable) unless the reads take turns."""
    true_mask = os.umask(0o022)
    os.umask(true_mask)
    real, inside = os.umask, threading.Event()

    def slow_umask(mask):  # the first read waits (up to 1 s) for a second thread to read too
        old = real(mask)
        if mask == 0 and not inside.is_set():
            inside.set()
            time.sleep(0.5)
        return old

    monkeypatch.setattr(os, "umask", slow_umask)
    seen: list[int] = []
    first = threading.Thread(target=lambda: seen.append(outputs._umask()))
    first.start()
    inside.wait(5)
    seen.append(outputs._umask())
    first.join()
    monkeypatch.setattr(os, "umask", real)
    assert seen == [true_mask, true_mask] and os.umask(true_mask) == true_mask


def test_a_save_that_cannot_be_moved_in_keeps_the_earlier_folder_and_says_why(tmp_path, monkeypatch, models):
    """A rename that fails for a reason other than a taken name (here a full disk) is not taken for
    another save's: the earlier folder is put back as it was and the save is one sentence."""
    import errno

    from msli_core.errors import MsliError

    (a, first), _, (_, again) = models
    folder = workspace.save_model(first, a, root=tmp_path)
    before = (folder / "config.json").read_text()
    real = os.rename

    def full_disk(src, dst):
        if ".saving-" in str(src) and str(dst) == str(folder):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(
        MsliError, match=r"Could not save popularity in the workspace .*No space left on device"
    ):
        workspace.save_model(again, a, root=tmp_path)
    monkeypatch.setattr(os, "rename", real)
    assert (folder / "config.json").read_text() == before and visible(tmp_path, "models") == ["popularity"]


def test_many_saves_at_once_of_two_models_end_in_one_folder_each(tmp_path, monkeypatch, models):
    """Six saves released together, three of each model (one name, two datasets): every save succeeds,
    each model has exactly one folder, and nothing is left beside them."""
    import sys

    (a, first), (b, second), (_, again) = models
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so the renames interleave
    try:
        held(monkeypatch, registry, "save_model", 6)
        calls = [lambda m=m, d=d: workspace.save_model(m, d, root=tmp_path) for m, d in
                 [(first, a), (second, b), (again, a), (second, b), (first, a), (second, b)]]  # fmt: skip
        saved = at_once(*calls)
    finally:
        sys.setswitchinterval(interval)
    assert all(not isinstance(r, Exception) for r in saved), saved
    assert visible(tmp_path, "models") == ["popularity", "popularity-2"]
    back, problems = workspace.load_models(tmp_path)
    assert problems == [] and sorted(m.dataset_fingerprint for m in back) == sorted(
        [a.fingerprint, b.fingerprint]
    )


@pytest.mark.skipif(workspace.fcntl is None, reason="file locks are POSIX (fcntl)")
def test_the_workspace_lock_holds_against_another_process(tmp_path):
    """Another app process using the workspace (one launched by a second `streamlit run`) opens the lock
    file for itself: while a save places its folder it cannot, and while a reader reads it can read too
    but not save."""
    import subprocess
    import sys

    probe = (
        "import fcntl, sys\n"
        "fh = open(sys.argv[1], 'a')\n"
        "try:\n"
        "    fcntl.flock(fh, (fcntl.LOCK_SH if sys.argv[2] == 'read' else fcntl.LOCK_EX) | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(3)\n"
    )

    def other_process_can(what: str) -> bool:
        run = subprocess.run([sys.executable, "-c", probe, str(tmp_path / workspace.LOCK), what], check=False)
        assert run.returncode in (0, 3)
        return run.returncode == 0

    assert other_process_can("save")
    with workspace._locked(tmp_path):
        assert not other_process_can("save") and not other_process_can("read")
    with workspace._locked(tmp_path, shared=True):
        assert other_process_can("read") and not other_process_can("save")
    assert other_process_can("save")


def test_a_lock_name_that_is_not_a_regular_file_neither_hangs_nor_writes_outside(tmp_path):
    """A FIFO named .lock would block open() forever; a link named .lock would create its target outside
    the workspace. Both are passed over like a folder that takes no lock file: readers go on unlocked."""
    fifo_ws, link_ws = tmp_path / "fifo", tmp_path / "link"
    for ws in (fifo_ws, link_ws):
        ws.mkdir()
    os.mkfifo(fifo_ws / workspace.LOCK)
    outside = tmp_path / "outside.txt"
    (link_ws / workspace.LOCK).symlink_to(outside)
    for ws in (fifo_ws, link_ws):
        assert workspace.load_models(ws) == ([], [])  # returns (a hang here was the bug)
        assert workspace.clear(ws) == 0
    assert not outside.exists()


def test_a_reader_inside_a_save_in_the_same_thread_does_not_wait_on_itself(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    with workspace._locked(ws):  # exclusive, as a save holds it
        assert workspace.load_models(ws) == ([], [])  # a shared lock on a new handle waited forever
    (ws / workspace.LOCK).unlink()
    (ws / workspace.LOCK).mkdir()  # no lock file can be had: saves take turns on _TURNS
    with workspace._locked(ws), workspace._locked(ws):
        pass  # _TURNS taken twice by one thread waited forever
