"""The Data page with input it must refuse or repair, driven headless through AppTest: every refusal is
one ``st.error`` sentence naming the page's own boxes (never a CLI flag, never an exception box), the
generator's boxes only allow settings it accepts, the column boxes apply only to the tables they are for,
and a repaired metadata file is reported under "Validation notes".
"""

from __future__ import annotations

import codecs
import zipfile

import pytest
from test_app_pages import error_texts, goto, new_app, write_mini_movielens

from msli_core.data.audience import APP_NAMES
from msli_core.data.synth import SynthConfig

pytestmark = pytest.mark.slow  # the Data page through AppTest


def _only_error(at) -> str:
    """The page's one error sentence: no exception box, no CLI flag in it."""
    assert not at.exception, [e.value for e in at.exception]
    errors = error_texts(at)
    assert len(errors) == 1, errors
    assert "--" not in errors[0] and "\n" not in errors[0], errors[0]
    return errors[0]


def _load_path(at, text: str):
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(text).run()
    return at.button(key="data_load_path").click().run()


def _upload(at, name: str, payload: bytes, mime: str = "text/csv"):
    at.radio(key="data_source").set_value("Upload files").run()
    at.file_uploader(key="data_upload").set_value((name, payload, mime))
    at.run()
    return at.button(key="data_load_upload").click().run()


def _columns(at, **names: str) -> None:
    for role, name in names.items():
        at.text_input(key=f"data_col_{role}").input(name)


@pytest.fixture(scope="module", autouse=True)
def _no_bundled_demo(tmp_path_factory):
    """As in test_app_pages: no bundled demo models, and a workspace of the tests' own (never the user's),
    for the whole module, since one app serves several tests."""
    folder = tmp_path_factory.mktemp("app-data-input")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MSLI_DEMO_DIR", str(folder / "no-demo"))
        patch.setenv("MSLI_WORKSPACE", str(folder / "workspace"))
        yield


@pytest.fixture(scope="module")
def data_page():
    """One app on the Data page for the tests that only read what a click shows (each sets its own
    widgets; the loaded dataset may change between them)."""
    return goto(new_app(), "data")


# --------------------------------------------------------------------------------- Local path (1, 2)


def test_a_tilde_user_that_does_not_exist_is_an_error_sentence(data_page):
    message = _only_error(_load_path(data_page, "~nosuchuser/x"))
    assert message.startswith("There is no user called 'nosuchuser' on this machine"), message
    assert "full path" in message


@pytest.mark.parametrize(
    "text",
    ["/tmp/" + "y" * 300, "x" * 5000, "/tmp/" + "/".join(["a" * 200] * 30)],
    ids=["300", "5000", "path"],
)
def test_a_path_too_long_is_an_error_sentence(data_page, text):
    message = _only_error(_load_path(data_page, text))
    assert "is too long to name a file" in message and len(message) < 400, message


def test_a_loop_of_symbolic_links_is_named_as_one(data_page, tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    message = _only_error(_load_path(data_page, str(tmp_path / "loop")))
    assert "is a loop of symbolic links" in message and "does not exist" not in message


# -------------------------------------------------------------------------------- Generate synthetic (3)


def test_the_generator_boxes_allow_only_what_the_generator_accepts():
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Generate synthetic").run()
    default = SynthConfig()
    boxes = {name: at.number_input(key=f"data_synth_{name}") for name in ("users", "items", "interactions")}
    assert boxes["items"].min == 2 * default.interests  # every interest gets a few items
    assert boxes["interactions"].min == boxes["users"].min * default.min_events
    for name, box in boxes.items():
        assert box.label == APP_NAMES[name]
        box.set_value(box.min)
    at.run()
    assert any("between 200 and 400 interactions" in c.value for c in at.caption)
    at.button(key="data_generate").click().run()
    assert not at.exception and not at.error, error_texts(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "10" and int(metrics["Items"]) <= 40


def test_too_many_interactions_for_the_users_names_the_page_boxes():
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Generate synthetic").run()
    at.number_input(key="data_synth_users").set_value(10)
    at.number_input(key="data_synth_items").set_value(40)
    at.number_input(key="data_synth_interactions").set_value(1_000)
    at.button(key="data_generate").click().run()
    assert _only_error(at) == (
        "“Interactions (about)” (1000) is too large: 10 users make at most 40 events each (400); lower it, "
        "or raise “Users” or “Items”."
    )


# ------------------------------------------------------------------------- filters and column boxes (4-6)


def test_a_filter_that_leaves_nothing_names_the_filter_box(data_page, tmp_path):
    folder = write_mini_movielens(tmp_path / "ml-mini")  # ratings 1.0 .. 5.0
    data_page.number_input(key="data_min_rating").set_value(9.5)
    message = _only_error(_load_path(data_page, str(folder)))
    data_page.number_input(key="data_min_rating").set_value(None).run()
    assert message.endswith(
        "left no interactions; lower “Keep only ratings ≥” under “Optional filters and column mapping”."
    )


def test_an_unrecognised_column_names_the_column_boxes(data_page):
    message = _only_error(_upload(data_page, "shop.csv", b"who,what,when\na,b,1\n"))
    assert message.startswith("shop.csv has no user or item or timestamp column"), message
    assert message.endswith(
        "type their names in the “user column”, “item column” and “timestamp column” boxes under "
        "“Optional filters and column mapping”."
    )


def test_one_column_for_user_and_item_is_refused(data_page, tmp_path):
    log = "who,when\n" + "".join(f"u{u},{1_700_000_000 + u * 60 + i}\n" for u in range(3) for i in range(4))
    (tmp_path / "log.csv").write_text(log)
    _columns(data_page, user="who", item="who", timestamp="when")
    message = _only_error(_load_path(data_page, str(tmp_path / "log.csv")))
    _columns(data_page, user="", item="", timestamp="")
    data_page.run()
    assert message == (
        "The “user column” and “item column” boxes both name the column 'who'; a column can hold one role "
        "only, so type another column in “item column”."
    )


@pytest.mark.parametrize("min_rating", [None, 0.5], ids=["no-filter", "filter"])
def test_leftover_column_boxes_never_change_the_bundled_sample(min_rating):
    at = goto(new_app(), "data")
    _columns(at, user="who", item="what", timestamp="when")
    at.number_input(key="data_min_rating").set_value(min_rating)
    at.run()
    assert any("The column boxes are not used for “Bundled sample”" in c.value for c in at.caption)
    at.button(key="data_load_sample").click().run()
    assert not at.exception and not at.error, error_texts(at)
    summary = " ".join(c.value for c in at.caption)
    assert "Format **synthetic**" in summary and "ground truth present (synthetic)" in summary
    assert " 0 genres" not in summary


def test_column_boxes_on_a_movielens_folder_are_refused_not_silently_applied(data_page, tmp_path):
    folder = write_mini_movielens(tmp_path / "ml-mini")
    _columns(data_page, user="userId", item="movieId", timestamp="timestamp")
    message = _only_error(_load_path(data_page, str(folder)))
    _columns(data_page, user="", item="", timestamp="")
    data_page.run()
    assert message.endswith(
        "is MovieLens data with fixed columns, so a column map does not apply; clear the column boxes under "
        "“Optional filters and column mapping”."
    )


def test_a_zip_bomb_says_whoever_runs_the_app_can_raise_the_limit(data_page, tmp_path):
    body = ("userId,movieId,rating,timestamp\n" + "1,1,5.0,1000000000\n" * (9 * 2**20 // 19)).encode()
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ratings.csv", body)
    message = _only_error(
        _upload(data_page, "bomb.zip", (tmp_path / "bomb.zip").read_bytes(), "application/zip")
    )
    assert "ask whoever runs the app to raise its limit on a zip member's expansion ratio to " in message
    assert "MSLI_" not in message and "environment variable" not in message


# -------------------------------------------------------------------------------- metadata and text (7, 8)


def test_a_movie_listed_twice_is_reported_under_validation_notes(tmp_path):
    folder = write_mini_movielens(tmp_path / "ml-mini")
    with (folder / "movies.csv").open("a") as fh:
        fh.write('1,"Second title for 1 (2001)",Comedy\n')
    at = _load_path(goto(new_app(), "data"), str(folder))
    assert not at.exception and not at.error, error_texts(at)
    assert not any("every row passed" in s.value for s in at.success)
    notes = " ".join(i.value for i in at.info)
    assert "movies.csv lists movie id 1 2 times; kept its first row and dropped the 1 repeated row" in notes


def test_a_utf16_upload_is_named_utf16_not_binary(data_page):
    text = "userId,movieId,rating,timestamp\n1,1,5.0,100\n"
    message = _only_error(_upload(data_page, "ratings.csv", codecs.BOM_UTF16_LE + text.encode("utf-16-le")))
    assert message.startswith("ratings.csv is UTF-16 text (it starts with a UTF-16 byte-order mark)"), message
    assert "save it again as UTF-8" in message and "binary" not in message


def test_the_labels_the_sentences_name_are_the_page_labels(data_page):
    labels = {w.label for w in data_page.number_input} | {w.label for w in data_page.text_input}
    for role in ("user", "item", "timestamp"):
        assert APP_NAMES[role] in labels
    assert APP_NAMES["min_rating"] in labels
    assert any(label.startswith(APP_NAMES["k_core"] + " ") for label in labels)
