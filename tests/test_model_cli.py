"""``msli train|evaluate|explain|quality``: exit codes, JSON keys, one-line errors, no partial output."""

from __future__ import annotations

import csv
import io
import json

import pytest

from msli_core.cli import main
from msli_core.data.synth import SynthConfig, write_synthetic


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "synth"
    cfg = SynthConfig(users=30, items=60, interactions=900, interests=4, min_events=8, max_events=60, seed=1)
    write_synthetic(folder, cfg)
    return folder


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "msli"
    code = main(
        ["train", "--data", str(data_dir), "--model", "msli", "--segments", "2", "--dim", "16",
         "--layers", "1", "--epochs", "1", "--out", str(out), "--json"]
    )  # fmt: skip
    assert code == 0
    return out


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_train_json_keys(data_dir, tmp_path, capsys):
    out = tmp_path / "pop"
    assert main(["train", "--data", str(data_dir), "--model", "popularity", "--out", str(out), "--json"]) == 0
    result = _json(capsys)
    for key in ("NDCG@10", "HR@10", "MRR", "users", "seconds", "epochs"):
        assert key in result
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()


def test_evaluate_json_keys(data_dir, trained, capsys):
    assert main(["evaluate", "--data", str(data_dir), "--model", str(trained), "--json"]) == 0
    result = _json(capsys)
    for key in ("NDCG@10", "HR@10", "MRR", "users"):
        assert key in result
    assert result["users"] > 0


def test_explain_json_shape(data_dir, trained, capsys):
    assert (
        main(
            [
                "explain",
                "--data",
                str(data_dir),
                "--model",
                str(trained),
                "--user",
                "1",
                "--top",
                "3",
                "--json",
            ]
        )
        == 0
    )
    ex = _json(capsys)
    assert ex["user"] == "1"
    assert {"index", "start", "end", "items"} <= set(ex["segments"][0])
    rec = ex["recommendations"][0]
    assert {"item", "title", "score", "contributions"} <= set(rec)
    assert len(rec["contributions"]) == 2 and abs(sum(rec["contributions"]) - rec["score"]) < 1e-4


def test_explain_human_table(data_dir, trained, capsys):
    assert (
        main(["explain", "--data", str(data_dir), "--model", str(trained), "--user", "2", "--top", "2"]) == 0
    )
    text = capsys.readouterr().out
    assert "Slots" in text and "open window" in text and "Recommendations" in text and "score" in text


def _error_line(capsys):
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("msli: error:")]
    assert len(lines) == 1 and "Traceback" not in captured.err
    return lines[0]


def test_unknown_user_is_one_line(data_dir, trained, capsys):
    code = main(["explain", "--data", str(data_dir), "--model", str(trained), "--user", "nobody"])
    assert code == 2 and "nobody" in _error_line(capsys)


def test_missing_model_folder(data_dir, tmp_path, capsys):
    code = main(["evaluate", "--data", str(data_dir), "--model", str(tmp_path / "none")])
    assert code == 2 and "does not exist" in _error_line(capsys)


def test_pickle_folder_is_refused(data_dir, tmp_path, capsys):
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "model.pt").write_bytes(b"\x80\x04")
    code = main(["evaluate", "--data", str(data_dir), "--model", str(tmp_path / "evil")])
    assert code == 2 and "pickle" in _error_line(capsys)


def test_model_for_other_data_is_refused(trained, tmp_path, capsys):
    other = tmp_path / "other"
    write_synthetic(
        other, SynthConfig(users=20, items=50, interactions=500, interests=4, min_events=8, max_events=60)
    )
    code = main(["evaluate", "--data", str(other), "--model", str(trained)])
    assert code == 2 and "trained on" in _error_line(capsys)


def test_bad_arguments_exit_2_without_output(data_dir, tmp_path, capsys):
    out = tmp_path / "never"
    assert (
        main(
            ["train", "--data", str(data_dir), "--model", "popularity", "--segments", "3", "--out", str(out)]
        )
        == 2
    )
    assert "--segments" in _error_line(capsys) and not out.exists()
    with pytest.raises(SystemExit) as err:
        main(["train", "--data", str(data_dir), "--model", "msli", "--epochs", "-1", "--out", str(out)])
    assert err.value.code == 2 and not out.exists()
    assert "--epochs" in _error_line(capsys)
    (tmp_path / "afile").write_text("x")
    code = main(["train", "--data", str(data_dir), "--model", "popularity", "--out", str(tmp_path / "afile")])
    assert code == 2 and "not a folder" in _error_line(capsys)
    code = main(["train", "--data", str(tmp_path / "missing"), "--model", "popularity", "--out", str(out)])
    assert code == 2 and not out.exists()


def test_quality_writes_csv_and_markdown(data_dir, tmp_path, capsys):
    out = tmp_path / "quality"
    code = main(
        ["quality", "--data", str(data_dir), "--out", str(out), "--segments", "1,2", "--epochs", "1",
         "--skip-cross-encoder", "--json"]
    )  # fmt: skip
    assert code == 0
    printed = _json(capsys)
    rows, comparisons = printed["rows"], printed["comparisons"]
    assert [r["label"] for r in rows] == ["popularity", "item-kNN", "MS-LI K=1 (two-tower)", "MS-LI K=2"]
    csv_text = (out / "quality.csv").read_text()
    assert csv_text.splitlines()[0].startswith("label,model,segments") and len(csv_text.splitlines()) == 5
    assert "| MS-LI K=2 |" in (out / "quality.md").read_text()
    # the ladder's rungs as paired differences on the same test users, in the CSV, the Markdown and JSON
    pairs = list(csv.DictReader(io.StringIO((out / "comparisons.csv").read_text())))
    assert [(p["model"], p["against"]) for p in pairs] == [
        ("MS-LI K=2", "MS-LI K=1 (two-tower)"),
        ("MS-LI K=1 (two-tower)", "item-kNN"),
        ("MS-LI K=2", "item-kNN"),
    ]
    ndcg = {r["label"]: r["NDCG@10"] for r in rows}
    for p in pairs:
        low, difference, high = float(p["low"]), float(p["difference"]), float(p["high"])
        assert difference == pytest.approx(ndcg[p["model"]] - ndcg[p["against"]], abs=1e-4)  # 4 decimals
        assert low <= difference <= high
        assert p["verdict"] == ("higher" if low > 0 else "lower" if high < 0 else "tie")
        assert f"| {p['model']} | {p['against']} | {difference:+.4f} |" in (out / "quality.md").read_text()
    assert [c["verdict"] for c in comparisons] == [p["verdict"] for p in pairs]
    # what K=2's closed slots could add, before training: one entry per K > 1, in the JSON and the Markdown;
    # every history here (at most 60 events) fits in the 200-event window, so there is nothing to add
    (reach,) = printed["reach"]
    assert (reach["segments"], reach["users"], reach["with_closed"]) == (2, comparisons[0]["users"], 0)
    markdown = (out / "quality.md").read_text()
    assert f"- MS-LI K=2: 0 of {reach['users']} test users (0.0%) have closed slots" in markdown
    assert "no closed slot can add an event the two-tower model lacks here" in markdown
    k2 = rows[-1]  # explanation accuracy with its Wilson interval and the users it was measured on
    if k2["explanation_users"]:
        assert k2["explanation_low"] <= k2["explanation_accuracy"] <= k2["explanation_high"]
        assert f"{k2['explanation_users']} users)" in (out / "quality.md").read_text()
    else:  # no answerable user: no interval either
        assert k2["explanation_low"] is None and k2["explanation_high"] is None  # NaN in JSON


def test_train_help_shows_the_library_defaults(capsys):
    from msli_core.models.msli import MSLIConfig
    from msli_core.train import TrainSettings

    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    settings, config = TrainSettings(), MSLIConfig()
    assert (
        f"--epochs EPOCHS maximum epochs (early stopping may end sooner; 0 saves the untrained model) "
        f"(default {settings.epochs}" in text
    )
    assert f"(default {settings.lr:g}" in text and f"{settings.lr:g}" == str(settings.lr)
    assert f"(default {config.dim})" in text and f"(default {config.aggregation})" in text
    assert f"(default ceil({config.max_len}/K))" in text and "(default 0)" in text  # --seed


def test_a_cross_encoder_is_not_its_own_first_stage(data_dir, tmp_path, capsys):
    from msli_core.data.formats import load_dataset
    from msli_core.models.registry import build_model, save_model

    data = load_dataset(data_dir)
    save_model(build_model("cross-encoder", data=data, dim=8, layers=1), tmp_path / "ce", data=data)
    ce = str(tmp_path / "ce")
    assert main(["evaluate", "--data", str(data_dir), "--model", ce, "--cascade-from", ce]) == 2
    assert "is a cross-encoder too" in _error_line(capsys)


def test_train_state_dropout_reaches_the_config_of_late_interaction_models_only(data_dir, tmp_path, capsys):
    out = tmp_path / "sd"
    argv = ["train", "--data", str(data_dir), "--model", "two-tower", "--dim", "16", "--layers", "1",
            "--epochs", "1", "--state-dropout", "0.5", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    _json(capsys)
    assert json.loads((out / "config.json").read_text())["config"]["state_dropout"] == 0.5
    refused = ["train", "--data", str(data_dir), "--model", "popularity", "--state-dropout", "0.5",
               "--out", str(tmp_path / "pop")]  # fmt: skip
    assert main(refused) != 0
    assert "--state-dropout" in capsys.readouterr().err and not (tmp_path / "pop").exists()


def test_train_recency_slot_reaches_the_config_and_needs_two_vectors(data_dir, tmp_path, capsys):
    out = tmp_path / "rs"
    argv = ["train", "--data", str(data_dir), "--model", "msli", "--segments", "2", "--dim", "16", "--layers",
            "1", "--epochs", "1", "--recency-slot", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    _json(capsys)
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["recency_slot"] is True and config["segments"] == 2
    explained = ["explain", "--data", str(data_dir), "--model", str(out), "--user", "1", "--json"]
    assert main(explained) == 0
    roles = [seg["role"] for seg in _json(capsys)["segments"]]
    assert roles == ["open window", "newest events"]
    for model, segments in (("two-tower", []), ("msli", ["--segments", "1"])):
        refused = ["train", "--data", str(data_dir), "--model", model, *segments, "--recency-slot",
                   "--out", str(tmp_path / model)]  # fmt: skip
        assert main(refused) == 2
        assert "--recency-slot" in _error_line(capsys) and not (tmp_path / model).exists()


def test_train_recent_items_reaches_the_config_and_is_refused_where_it_means_nothing(
    data_dir, tmp_path, capsys
):
    """--recent-items sets m for msli and the two-tower model (0: no recency path, and then no recency
    slot); a non-neural model, a value over the limit and a recency slot without events are refused."""
    for model, m, slot in (("msli", 3, True), ("msli", 0, False), ("two-tower", 2, False)):
        out = tmp_path / f"{model}-{m}"
        segments = ["--segments", "3"] if model == "msli" else []
        argv = ["train", "--data", str(data_dir), "--model", model, *segments, "--dim", "16", "--layers", "1",
                "--epochs", "1", "--recent-items", str(m), "--out", str(out), "--json"]  # fmt: skip
        assert main(argv) == 0
        _json(capsys)
        config = json.loads((out / "config.json").read_text())["config"]
        assert (config["recent_items"], config["recency_slot"]) == (m, slot)
    for name, flags, word in (
        ("pop", ["--model", "popularity", "--recent-items", "3"], "--recent-items"),
        ("big", ["--model", "msli", "--recent-items", "17"], "MAX_RECENT_ITEMS"),
        (
            "slot",
            ["--model", "msli", "--segments", "3", "--recency-slot", "--recent-items", "0"],
            "recent_items",
        ),
    ):
        try:  # argparse's own refusals exit 2 from inside main
            code = main(["train", "--data", str(data_dir), *flags, "--out", str(tmp_path / name)])
        except SystemExit as exit_:
            code = exit_.code
        assert code == 2
        assert word in capsys.readouterr().err and not (tmp_path / name).exists()


def test_train_attention_rank_reaches_the_config_and_is_refused_where_it_means_nothing(
    data_dir, tmp_path, capsys
):
    out = tmp_path / "ar"
    argv = ["train", "--data", str(data_dir), "--model", "msli", "--segments", "3", "--dim", "16", "--layers",
            "1", "--epochs", "1", "--attention-rank", "4", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    _json(capsys)
    assert json.loads((out / "config.json").read_text())["config"]["attention_rank"] == 4
    for name, extra in (("tt", ["--model", "two-tower"]), ("pop", ["--model", "popularity"]),
                        ("wide", ["--model", "msli", "--dim", "16", "--attention-rank", "32"])):  # fmt: skip
        flags = extra if "--attention-rank" in extra else [*extra, "--attention-rank", "4"]
        refused = ["train", "--data", str(data_dir), *flags, "--out", str(tmp_path / name)]
        assert main(refused) == 2
        line = _error_line(capsys)
        assert "attention" in line.lower() and not (tmp_path / name).exists()
