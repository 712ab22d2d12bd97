"""``msli data inspect`` and ``msli data fetch``: exit codes, JSON, one-line errors, no tracebacks."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _fixtures import FIXTURES
from _loopback import Route, serve

from msli_core.cli import main
from msli_core.data import download

MSLI = Path(sys.executable).parent / "msli"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("path", "fmt", "users", "items", "interactions"),
    [
        ("layout-100k", "ml-100k", 4, 6, 12),
        ("layout-1m", "ml-1m", 4, 4, 12),
        ("layout-latest", "ml-latest", 4, 4, 12),
        ("interactions.csv", "interactions", 4, 4, 12),
    ],
)
def test_inspect_json(capsys, path, fmt, users, items, interactions):
    code, out, err = _run(capsys, "data", "inspect", str(FIXTURES / path), "--json")
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert (summary["format"], summary["users"], summary["items"], summary["interactions"]) == (
        fmt,
        users,
        items,
        interactions,
    )
    assert summary["validation"] == ["ok"]
    assert summary["time_start"] <= summary["time_end"]


def test_inspect_human_table_is_aligned(capsys):
    code, out, _ = _run(capsys, "data", "inspect", str(FIXTURES / "layout-100k"))
    assert code == 0
    lines = out.rstrip("\n").splitlines()
    labels = {line.split("  ")[0].strip(): line for line in lines}
    assert labels["format"].endswith("ml-100k") and labels["users"].endswith(" 4")
    assert labels["interactions"].endswith(" 12") and "time range" in labels
    value_columns = {len(line) - len(line[len(line.split("  ")[0]) :].lstrip()) for line in lines}
    assert len(value_columns) == 1  # every value starts in the same column


def test_inspect_filters_and_column_map(capsys):
    code, out, _ = _run(
        capsys, "data", "inspect", str(FIXTURES / "layout-100k"), "--json", "--min-rating", "4"
    )
    assert code == 0 and json.loads(out)["interactions"] == 6
    code, out, _ = _run(
        capsys,
        "data",
        "inspect",
        str(FIXTURES / "interactions.tsv"),
        "--json",
        "--column-map",
        "user=visitor",
    )
    assert code == 0 and json.loads(out)["users"] == 4


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["data", "inspect", "/no/such/place"], "/no/such/place does not exist"),
        (["data", "inspect", str(FIXTURES / "interactions.tsv")], "interactions.tsv has no user column"),
        (
            ["data", "inspect", str(FIXTURES / "interactions.tsv"), "--column-map", "user"],
            "is not ROLE=COLUMN",
        ),
        (["data", "inspect", str(FIXTURES / "layout-100k"), "--k-core", "-1"], "k-core"),
        (["data", "inspect", str(FIXTURES / "layout-100k"), "--min-rating", "nan"], "minimum rating"),
    ],
)
def test_inspect_bad_input_is_one_line_and_exit_2(capsys, argv, fragment):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("msli: error: ") and err.count("\n") == 1 and fragment in err
    assert "Traceback" not in err


def test_inspect_bad_zip_names_it(capsys, tmp_path):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../evil/u.data", "1\t2\t3\t4\n")
    code, _, err = _run(capsys, "data", "inspect", str(archive), "--json")
    assert code == 2 and "upload.zip" in err and "outside" in err


def test_fetch_prints_the_folder_and_shows_progress(capsys, tmp_path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted((FIXTURES / "layout-100k").iterdir()):
            zf.write(f, f"ml-100k/{f.name}")
    body = buf.getvalue()
    monkeypatch.setitem(download.MOVIELENS_CHECKSUMS, "ml-100k", "sha256:" + hashlib.sha256(body).hexdigest())
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with serve({"/ml-100k.zip": Route(body)}) as server:
        monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", server.base_url)
        code, out, err = _run(capsys, "data", "fetch", "ml-100k", "--dir", str(tmp_path / "cache"))
    assert code == 0
    assert Path(out.strip()) == tmp_path / "cache" / "ml-100k" and (Path(out.strip()) / "u.data").is_file()
    assert "download" in err and "100.0%" in err


def test_fetch_checksum_mismatch_exits_2_and_keeps_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with serve({"/ml-1m.zip": Route(b"not the published archive")}) as server:
        monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", server.base_url)
        code, out, err = _run(capsys, "data", "fetch", "ml-1m", "--dir", str(tmp_path / "cache"))
    assert code == 2 and out == "" and "checksum" in err and "Traceback" not in err
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_fetch_unknown_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "fetch", "ml-5k"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.skipif(not MSLI.exists(), reason="the msli console script is not installed in this environment")
def test_console_script_has_no_traceback(tmp_path):
    bad = tmp_path / "u.data"
    bad.write_bytes(b"1\t2\tthree\t4\n")
    run = subprocess.run(
        [str(MSLI), "data", "inspect", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("msli: error: ") and "u.data, line 1" in run.stderr
    assert "Traceback" not in run.stderr
    good = subprocess.run(
        [str(MSLI), "data", "inspect", str(FIXTURES / "layout-latest"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0 and json.loads(good.stdout)["interactions"] == 12


def test_fetch_from_a_trickling_server_exits_2_at_the_deadline_and_keeps_nothing(
    capsys, tmp_path, monkeypatch
):
    body = b"PK" + b"\x00" * 200
    monkeypatch.setitem(download.MOVIELENS_CHECKSUMS, "ml-100k", "sha256:" + hashlib.sha256(body).hexdigest())
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("MSLI_DOWNLOAD_DEADLINE_S", "1")
    with serve({"/ml-100k.zip": Route(body, trickle_s=0.2)}) as server:
        monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", server.base_url)
        code, out, err = _run(capsys, "data", "fetch", "ml-100k", "--dir", str(tmp_path / "cache"))
    lines = [line for line in err.splitlines() if line.startswith("msli:")]
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(lines) == 1 and "did not finish within 1 s" in lines[0]
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("events.csv", "user,item,timestamp\na,b,1600000000\na,c,1e30\n", "is out of range"),
        ("events.csv", "user,item,timestamp\na,b,0001-01-01\n", "before 1970"),
        ("events.csv", ",".join(f"c{k}" for k in range(200_000)) + "\n1\n", "longer than 1 MB"),
        ("shop.csv", "who,hunter2secret\na,b\n", "looked for"),
    ],
)
def test_inspect_bad_input_is_one_line_exit_2(capsys, tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_text(content)
    code, out, err = _run(capsys, "data", "inspect", str(path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and name in err and fragment in err and "hunter2" not in err


def test_fetch_never_deletes_the_users_zip_or_folder(capsys, tmp_path, monkeypatch):
    """The audit's case: --dir holds the user's own ml-100k.zip and ml-100k/ (with keep.txt); fetch with
    no network used to delete both. Now: exit 2, one sentence naming both, everything as it was."""
    (tmp_path / "ml-100k.zip").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "keep.txt").write_text("keep me")
    (tmp_path / "notes.txt").write_text("notes")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    monkeypatch.setenv("MSLI_MOVIELENS_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    code, out, err = _run(capsys, "data", "fetch", "ml-100k", "--dir", str(tmp_path))
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"msli: error: {tmp_path / 'ml-100k'} (it has no .msli-output.json stamp) and ")
    assert "move them away or pass another --dir" in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
