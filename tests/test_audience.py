"""One mechanism words every error sentence for its reader (``msli_core.data.audience``): the data layer,
model loading and the MovieLens download all read the context ``app_user()`` sets, and no function takes
a ``for_app`` keyword any more. What a reader can do about a refusal lives in one table (``FIXES``): its
app words name no flag, environment variable or msli command, its CLI words no page or box."""

from __future__ import annotations

import inspect
import re
import socket

import pytest

from msli_core.data import audience, download, fetch_movielens
from msli_core.data.audience import FIXES, app_user, fix
from msli_core.errors import MsliError
from msli_core.models import registry


def test_no_function_takes_a_for_app_keyword():
    for function in (
        registry.load_model,
        registry.load_zip,
        registry.check_sections,
        download.fetch_movielens,
    ):
        assert "for_app" not in inspect.signature(function).parameters, function.__qualname__


@pytest.mark.parametrize("key", sorted(FIXES))
def test_each_fix_is_worded_for_its_reader(key):
    cli, app = FIXES[key]
    assert not re.search(r"(?<![\w-])--[a-z]|MSLI_|environment|`msli|\bmsli (train|data)\b", app), app
    assert "“" not in cli and " page" not in cli and "the app" not in cli, cli
    with app_user():
        assert fix(key, it="X") == app.format(it="X")
    assert fix(key, it="X") == cli.format(it="X")


def test_the_cli_fixes_name_the_download_settings_it_reads():
    assert download.DEADLINE_ENV in FIXES["download.slow"][0]
    assert download.BASE_URL_ENV in FIXES["download.http"][0]


def test_models_and_downloads_read_the_same_context_as_the_data_layer(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def sentences() -> list[str]:
        out = []
        for call in (
            lambda: registry.load_model(tmp_path / "no-model"),
            lambda: fetch_movielens("ml-100k", directory=tmp_path / "file" / "cache"),
            lambda: fetch_movielens("ml-100k", directory=tmp_path / "cache", base_url=unreachable),
        ):
            with pytest.raises(MsliError) as err:
                call()
            out.append(str(err.value))
        return out

    cli = sentences()
    with app_user():
        app = sentences()
        assert audience.for_app()
    assert not audience.for_app()
    assert cli[0].endswith("pass the --out folder of `msli train`.")
    assert app[0].endswith("the app skips it, so move that folder out of the workspace.")
    assert cli[1].endswith("pass a writable --dir.") and cli[2].endswith("pass it to msli data inspect.")
    for sentence in app[1:]:
        assert sentence.endswith("load it with “Upload files”.") and "--dir" not in sentence, sentence


# ---- sentences outside the fix table: each checked inside app_user() and outside ------------------------
CLI_WORDS = re.compile(r"(?<![\w-])--[a-z]|`msli|\bmsli (train|data|bench|costmodel|explain|export)\b")


def app_words_ok(sentence: str) -> None:
    """An app sentence names no flag or msli command, and an environment variable only addressed to
    whoever runs the app (the server's own configuration, audience's rule), after those words."""
    assert not CLI_WORDS.search(sentence), sentence
    if "MSLI_" in sentence:
        assert "whoever runs the app" in sentence[: sentence.index("MSLI_")] or (
            sentence.index("MSLI_") > sentence.index("(environment variable ")
            and "whoever runs the app" in sentence
        ), sentence


def cli_words_ok(sentence: str) -> None:
    assert "“" not in sentence and " page" not in sentence, sentence
    assert "whoever runs the app" not in sentence, sentence


def both(call) -> tuple[str, str]:
    """The sentence ``call`` raises, as the app's user and as the command line's user reads it."""
    with app_user(), pytest.raises(MsliError) as app:
        call()
    with pytest.raises(MsliError) as cli:
        call()
    app_words_ok(str(app.value))
    cli_words_ok(str(cli.value))
    return str(app.value), str(cli.value)


def test_page_labels_that_core_sentences_name_are_on_their_pages(repo_root):
    for key, (page, text) in audience.PAGE_LABELS.items():
        source = (repo_root / page).read_text(encoding="utf-8")
        assert f'"{text}' in source, (key, page, text)  # a string literal that begins with the label
        assert audience.label(key) == f"“{text}”"


def test_a_badly_set_limit_variable_is_named_to_whoever_runs_the_app(monkeypatch):
    from msli_core import limits

    monkeypatch.setenv("MSLI_DOWNLOAD_DEADLINE_S", "abc")
    app, cli = both(lambda: limits.env_positive("MSLI_DOWNLOAD_DEADLINE_S", 600.0, " of seconds"))
    assert app == (
        "The app's time limit on one MovieLens download (environment variable MSLI_DOWNLOAD_DEADLINE_S) is "
        "'abc', not a positive number of seconds; ask whoever runs the app to unset it or set it to e.g. "
        "600, and restart it."
    )
    assert cli == (
        "The environment variable MSLI_DOWNLOAD_DEADLINE_S='abc' is not a positive number of seconds; "
        "unset it or set it to e.g. 600."
    )
    monkeypatch.setenv("MSLI_MAX_ZIP_RATIO", "-3")  # a limit of audience.LIMITS: named by what it limits
    app, _ = both(lambda: limits.env_positive("MSLI_MAX_ZIP_RATIO", 100.0))
    assert app.startswith(
        "The app's limit on a zip member's expansion ratio (environment variable MSLI_MAX_ZIP_RATIO) is '-3'"
    )


def test_a_badly_set_limits_scale_is_named_to_whoever_runs_the_app(monkeypatch):
    from msli_core import limits

    monkeypatch.setenv("MSLI_LIMITS_SCALE", "0.5")
    app, cli = both(lambda: limits.check_int("dim", 64, 1, limits.MAX_DIM))
    assert app == (
        "The app's multiplier of every size limit (environment variable MSLI_LIMITS_SCALE) is '0.5', not a "
        "number >= 1; ask whoever runs the app to unset it or set it to e.g. 4, and restart it."
    )
    assert cli == "MSLI_LIMITS_SCALE is '0.5'; set it to a number >= 1 or unset it."


def test_a_size_over_a_limit_asks_whoever_runs_the_app_without_naming_the_variable(monkeypatch):
    """Raising a limit is the owner's choice, not a misconfiguration: the app names no variable (a model
    folder in the workspace over a limit is the way an app user meets this)."""
    from msli_core import limits
    from msli_core.models.msli import MSLIConfig

    monkeypatch.delenv("MSLI_LIMITS_SCALE", raising=False)
    app, cli = both(lambda: limits.check_int("dim", 5000, 1, limits.MAX_DIM))
    assert app == (
        "Setting dim is 5000; it must be between 1 and 4,096 (ask whoever runs the app to raise its size "
        "limits)."
    )
    assert cli == (
        "Setting dim is 5000; it must be between 1 and 4,096 (raise the upper limit with MSLI_LIMITS_SCALE)."
    )
    app, cli = both(lambda: limits.check_float("budget", 7200.0, low=0, high=limits.MAX_BUDGET_S))
    assert app.endswith("at most 3600 (ask whoever runs the app to raise its size limits).")
    assert cli.endswith("at most 3600 (raise the upper limit with MSLI_LIMITS_SCALE).")
    app, _ = both(lambda: MSLIConfig(n_items=10, dim=5000))  # a model's config, as a loaded folder's
    assert "Setting dim is 5000" in app and "MSLI" not in app, app


def test_a_diverged_training_and_a_mismatched_ground_truth_name_the_pages_widgets(tmp_path, sample_data_dir):
    import shutil

    from msli_core.data import load_dataset
    from msli_core.train import TrainingDiverged

    def diverge():
        raise TrainingDiverged(3, 11, float("inf"), 0.01)

    app, cli = both(diverge)
    assert app == (
        "training diverged at epoch 3, step 11: loss is infinite; train again with another value in the "
        "Train page's “Seed” box"
    )
    assert cli.endswith("another seed or a lower learning rate (msli train --lr; it was 0.01)")

    folder = tmp_path / "sample"
    shutil.copytree(sample_data_dir, folder)
    truth = (folder / "ground_truth.csv").read_text().splitlines()
    (folder / "ground_truth.csv").write_text("\n".join(truth[:-1]) + "\n")  # one row short
    app, cli = both(lambda: load_dataset(folder))
    assert app.endswith(
        "regenerate both with the Data page's “Generate synthetic” source, or move ground_truth.csv away "
        "to load the ratings without it."
    ), app
    assert cli.endswith("regenerate both with msli data synth."), cli


MEANWHILE = (
    "until then, pick a preset in the What-if page's “Hardware” box, or run a sweep on the Latency page "
    "with “Also calibrate the cost model on this machine” ticked."
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The calibration cache under tmp_path (MSLI_CACHE_DIR), never the user's; its calibration path."""
    from msli_core.serving import costmodel

    monkeypatch.setenv("MSLI_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    return costmodel.calibration_path()


def _refusals():
    """The sentence of the calibration path as the app's user and the command line's user read it, from
    the three entry points the app reaches (calibrate.hardware_here: Home, What-if, a Latency sweep that
    does not calibrate; check_calibration_target: What-if's “Measure this machine now”)."""
    from msli_core.serving import calibrate, costmodel

    app, cli = both(costmodel.check_calibration_target)
    assert both(calibrate.hardware_here) == (app, cli)
    return app, cli


def test_a_calibration_file_the_app_will_not_replace_says_what_the_apps_user_can_do(cache):
    import json

    from msli_core.serving import costmodel

    cache.write_text("my notes")  # a file msli did not write
    app, cli = _refusals()
    assert app == (
        f"{cache} (the app's cost-model calibration file) is a file msli did not write as far as it can tell "
        "(text that is not JSON, starting 'my notes'), so msli will not read or replace it; ask whoever runs "
        f"the app to move that file away or set MSLI_CACHE_DIR to another folder and restart it; {MEANWHILE}"
    )
    assert cli == (
        f"{cache} (the calibration file under MSLI_CACHE_DIR) is a file msli did not write as far as it can "
        "tell (text that is not JSON, starting 'my notes'), so msli will not read or replace it; move that "
        "file away or set MSLI_CACHE_DIR to another folder."
    )

    cache.write_text(json.dumps({"format": costmodel.FORMAT + 1, "name": "later", "source": "a newer lab"}))
    app, cli = _refusals()
    assert app.endswith(
        "so msli will not read or replace it; ask whoever runs the app to upgrade MS-LI Lab or set "
        f"MSLI_CACHE_DIR to another folder and restart it; {MEANWHILE}"
    ), app
    assert cli.endswith("; upgrade msli, or set MSLI_CACHE_DIR to another folder."), cli

    cache.unlink()
    cache.mkdir()  # a folder where the file belongs
    app, cli = _refusals()
    assert app.endswith(
        f"not a calibration file; ask whoever runs the app to set MSLI_CACHE_DIR to another folder and "
        f"restart it; {MEANWHILE}"
    ), app
    assert cli.endswith("not a calibration file; set MSLI_CACHE_DIR to another folder."), cli


def test_a_calibration_cache_that_cannot_be_written_and_a_replaced_file_in_the_apps_words(cache, monkeypatch):
    import json

    from msli_core.serving import costmodel

    (cache.parent / "file").write_text("not a folder")
    monkeypatch.setenv("MSLI_CACHE_DIR", str(cache.parent / "file" / "cache"))
    app, cli = both(costmodel.check_calibration_target)
    assert app.endswith(
        f"ask whoever runs the app to set MSLI_CACHE_DIR to a writable folder and restart it; {MEANWHILE}"
    ), app
    assert cli.endswith("MSLI_CACHE_DIR chose that path, so set MSLI_CACHE_DIR to a writable folder."), cli

    monkeypatch.setenv("MSLI_CACHE_DIR", str(cache.parent))  # an older calibration: replaced, with a note
    stored = next(iter(costmodel.PRESETS.values())).as_dict()
    cache.write_text(json.dumps({**stored, "format": costmodel.FORMAT - 1}))
    with app_user():
        app = costmodel.classify_calibration().note
    cli = costmodel.classify_calibration().note
    app_words_ok(app)
    cli_words_ok(cli)
    assert app.startswith(f"{cache} (the app's cost-model calibration file) was written by an older MS-LI")
    assert cli.startswith(f"{cache} (the calibration file under MSLI_CACHE_DIR) was written by an older")

    app, cli = both(lambda: costmodel.Hardware.from_dict({}))
    assert app.endswith("; measure this machine again with “Measure this machine now” on the What-if page.")
    assert cli.endswith("; re-run `msli costmodel calibrate` to measure this machine again.")


def test_a_calibration_path_passed_on_the_command_line_keeps_its_flag_in_either_context(tmp_path):
    """Only the app's own cache path is worded for the app: a --out path is the command line's."""
    from msli_core.serving import costmodel

    (tmp_path / "mine.json").write_text("my notes")
    with app_user():
        inside = costmodel.classify_calibration(tmp_path / "mine.json").refusal
    assert inside == costmodel.classify_calibration(tmp_path / "mine.json").refusal
    assert inside.startswith(f"--out {tmp_path / 'mine.json'} is a file") and inside.endswith(
        "move that file away or choose another --out path."
    )


def _literal(node) -> str:
    """The literal text of a string expression (f-string placeholders as {}), '' for anything else."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return _literal(node.left) + _literal(node.right)
    return ""


def test_every_words_call_in_msli_core_is_worded_for_its_reader(repo_root):
    """The scan over the source: each ``words(cli=..., app=...)`` (and ``_words``) call's literal app text
    names no flag or msli command, and an environment variable only addressed to whoever runs the app;
    its CLI text names no page's box (“...”) and no page."""
    import ast

    calls = 0
    for path in sorted((repo_root / "msli_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
                    in ("words", "_words")):  # fmt: skip
                continue
            texts = {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg in ("cli", "app")}
            if set(texts) != {"cli", "app"}:
                continue
            calls += 1
            where = f"{path.relative_to(repo_root)}:{node.lineno}"
            assert not CLI_WORDS.search(texts["app"]), (where, texts["app"])
            addressed = "whoever runs the app" in texts["app"]
            assert "MSLI_" not in texts["app"] or addressed, (where, texts["app"])
            assert "“" not in texts["cli"] and " page" not in texts["cli"], (where, texts["cli"])
    assert calls >= 20  # the scan found the calls (a renamed helper would make it pass vacuously)
