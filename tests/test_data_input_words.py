"""The data layer's sentences for input it refuses or repairs, in the words of whoever reads them: a path
that cannot be used (an unknown ``~user``, too long, a loop of links, a NUL), the generator's settings,
filters that leave nothing, column maps (unrecognised, one column in two roles, a map on MovieLens
data), limits from the environment, UTF-16 files, and item metadata that lists an id twice. Each refusal
is one MsliError sentence; on the command line it names flags, inside ``audience.app_user()`` (what the
Data page's calls run in, :mod:`msli_core.data.sources`) it names the page's boxes and never a flag.
"""

from __future__ import annotations

import codecs
import io
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from _fixtures import FIXTURES

from msli_core.cli import main
from msli_core.data import load_dataset, sources
from msli_core.data.audience import APP_NAMES, app_user, for_app
from msli_core.data.synth import SynthConfig
from msli_core.errors import MsliError

APP_SYNTH = {"users": 10, "items": 40, "interactions": 200, "noise": 0.1, "seed": 0}  # the boxes' minimums


def _refused(call, *args, **kwargs) -> str:
    """The one-line sentence ``call`` raises."""
    with pytest.raises(MsliError) as err:
        call(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message.endswith("."), message
    return message


def _app_refused(call, *args, **kwargs) -> str:
    """The sentence as the app shows it: no CLI flag, no environment variable, no traceback."""
    with app_user():
        message = _refused(call, *args, **kwargs)
    assert "--" not in message and "MSLI_" not in message and "environment variable" not in message, message
    return message


def _table(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------- the audience


def test_the_app_wording_holds_only_inside_app_user_even_after_an_error():
    assert not for_app()
    with pytest.raises(MsliError), app_user():
        assert for_app()
        load_dataset("/no/such/place")
    assert not for_app()


# ------------------------------------------------------------------------------------- paths (defects 1, 2)


def test_a_tilde_user_that_does_not_exist_is_named_not_a_runtime_error():
    for load in (load_dataset, sources.load_path):
        message = _refused(load, "~nosuchuser-msli/x")
        assert message.startswith("There is no user called 'nosuchuser-msli' on this machine"), message
        assert "~nosuchuser-msli/x" in message and "full path" in message


def test_a_tilde_without_a_known_home_is_named(monkeypatch):
    monkeypatch.delenv("HOME", raising=False)
    import pwd

    def no_entry(_uid):
        raise KeyError("no entry")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    message = _refused(load_dataset, "~/data")
    assert "home folder" in message and "HOME is not set" in message and "full path" in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/tmp/" + "y" * 300, "one name in it is 300 bytes long; a file or folder name may have 255 at most"),
        ("x" * 5000, "one name in it is 5,000 bytes long"),
        ("/tmp/" + "/".join(["a" * 200] * 30), "more than this machine allows for a path"),
    ],
    ids=["long-name", "very-long-name", "long-path"],
)
def test_a_path_too_long_to_name_a_file_says_so_shortened(text, says):
    message = _app_refused(sources.load_path, text)
    assert message.startswith("The path ") and "is too long to name a file" in message and says in message
    assert len(message) < 400 and f"({len(text):,} characters)" in message  # the path itself is cut short


def test_a_loop_of_symbolic_links_is_not_called_missing(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for name in ("loop", "a"):
        message = _refused(load_dataset, tmp_path / name)
        assert "is a loop of symbolic links" in message and "does not exist" not in message, message
    (tmp_path / "gone").symlink_to(tmp_path / "nothing-here")
    assert "is a broken symbolic link" in _refused(load_dataset, tmp_path / "gone")
    assert "does not exist" in _refused(load_dataset, tmp_path / "nothing-here")


def test_a_ratings_file_inside_a_folder_that_is_a_loop_of_links_is_named(tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(FIXTURES / "layout-latest", folder)
    (folder / "ratings.csv").unlink()
    (folder / "ratings.csv").symlink_to(folder / "ratings.csv")
    message = _refused(load_dataset, folder)
    assert "ratings.csv is a loop of symbolic links" in message and "fix or remove the link" in message
    (folder / "ratings.csv").unlink()
    shutil.copy(FIXTURES / "layout-latest" / "ratings.csv", folder / "ratings.csv")
    (folder / "movies.csv").unlink()
    (folder / "movies.csv").symlink_to(folder / "movies.csv")
    assert "movies.csv is a loop of symbolic links, not a regular file" in _refused(load_dataset, folder)


def test_a_nul_in_a_typed_path_is_a_sentence():
    assert "contains a NUL character" in _app_refused(sources.load_path, "data\x00/ml-1m")


def test_the_cli_exits_2_with_one_line_for_an_unusable_path(capsys, tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for path, says in (
        ("~nosuchuser-msli/x", "no user called"),
        ("/tmp/" + "y" * 300, "too long"),
        (str(tmp_path / "loop"), "loop of symbolic links"),
    ):
        assert main(["data", "inspect", path]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and "Traceback" not in err and len(err.splitlines()) == 1, err


# ------------------------------------------------------------------------------------- generator (defect 3)


def test_the_smallest_settings_the_page_allows_generate():
    data, _ = sources.generate(dict(APP_SYNTH), {})
    assert data.n_users == 10 and data.n_interactions >= 200 * 0.9 and data.truth is not None
    least, most = sources.synth_interactions_range(10, 40, SynthConfig())
    assert (least, most) == (200, 400)
    data, _ = sources.generate({**APP_SYNTH, "interactions": most}, {})  # the largest for these boxes
    assert data.n_users == 10


def test_every_items_value_the_page_allows_passes_the_interests_rule():
    default = SynthConfig()
    # the page's Items box starts at 2 × default.interests (pages/forms.py); the generator takes it
    SynthConfig(users=10, items=2 * default.interests, interactions=200).validate()
    message = _refused(SynthConfig(items=2 * default.interests - 1, interactions=6000).validate)
    assert message.startswith("--items (39) must be at least twice --interests (20)")


@pytest.mark.parametrize(
    ("settings", "app", "cli"),
    [
        (
            {"interactions": 100},
            "“Interactions (about)” (100) is too small: 10 users need at least 20 events each (200); "
            "raise it or lower “Users”.",
            "--interactions (100) is too small: 10 users need at least 20 events each (200); "
            "raise it or lower --users.",
        ),
        (
            {"interactions": 401},
            "“Interactions (about)” (401) is too large: 10 users make at most 40 events each (400); "
            "lower it, or raise “Users” or “Items”.",
            "--interactions (401) is too large: 10 users make at most 40 events each (400); "
            "lower it, or raise --users or --items.",
        ),
        (
            {"items": 39},
            "“Items” (39) must be at least 40, twice the 20 interests the generator plants, so every "
            "interest has a few items.",
            "--items (39) must be at least twice --interests (20) so every interest has a few items.",
        ),
    ],
    ids=["too-few-interactions", "too-many-interactions", "too-few-items"],
)
def test_a_refused_generator_setting_names_the_box_in_the_app_and_the_flag_on_the_cli(settings, app, cli):
    chosen = {**APP_SYNTH, **settings}
    assert _app_refused(sources.generate, chosen, {}) == app
    assert _refused(SynthConfig(**chosen).validate) == cli


def test_the_page_labels_are_the_names_the_sentences_use():
    from msli_core.data.audience import name

    with app_user():
        assert name("interactions") == f"“{APP_NAMES['interactions']}”" == "“Interactions (about)”"
    assert name("interactions") == "--interactions"


# ------------------------------------------------------------------------------ filters and maps (4, 5, 6)


def test_a_filter_that_leaves_nothing_names_the_filters_that_were_set():
    path = FIXTURES / "layout-100k"
    assert _refused(load_dataset, path, min_rating=9).endswith("left no interactions; lower --min-rating.")
    assert _refused(load_dataset, path, min_rating=9, k_core=50).endswith("lower --min-rating or --k-core.")
    app = _app_refused(sources.load_path, str(path), k_core=50)
    assert app.endswith("left no interactions; lower “k-core” under “Optional filters and column mapping”.")
    app = _app_refused(sources.generate, dict(APP_SYNTH), {"min_rating": 9.0, "k_core": None})
    assert "lower “Keep only ratings ≥” under" in app


def test_an_unrecognised_column_names_the_page_boxes_in_the_app(tmp_path):
    path = _table(tmp_path / "shop.csv", "who,what,when\na,b,1\n")
    cli = _refused(load_dataset, path)
    assert "name them with a column map such as --column-map user=uid" in cli
    app = _app_refused(sources.load_path, str(path))
    assert app.endswith(
        "type their names in the “user column”, “item column” and “timestamp column” boxes under "
        "“Optional filters and column mapping”."
    )
    app = _app_refused(sources.load_path, str(path), column_map={"user": "who", "item": "what"})
    assert app.endswith(
        "type its name in the “timestamp column” box under “Optional filters and column mapping”."
    )
    app = _app_refused(sources.load_path, str(path), column_map={"user": "whom"})
    assert "has no column 'whom' (typed in the “user column” box)" in app


@pytest.mark.parametrize("roles", [("user", "item"), ("item", "timestamp"), ("user", "rating")])
def test_one_column_in_two_roles_is_refused(tmp_path, roles):
    path = _table(tmp_path / "t.csv", "who,when\na,1\nb,2\n")
    column_map = {"user": "u", "item": "i", "timestamp": "when", roles[0]: "who", roles[1]: "who"}
    first, second = roles
    assert _refused(load_dataset, path, column_map=column_map) == (
        f"The column map names the column 'who' for both {first} and {second}; a column can hold one role "
        f"only, so name another column for {second}."
    )
    assert _app_refused(sources.load_path, str(path), column_map=column_map) == (
        f"The “{APP_NAMES[first]}” and “{APP_NAMES[second]}” boxes both name the column 'who'; a column can "
        f"hold one role only, so type another column in “{APP_NAMES[second]}”."
    )


def test_the_cli_refuses_one_column_in_two_roles(capsys, tmp_path):
    path = _table(tmp_path / "t.csv", "who,when\na,1\nb,2\n")
    assert main(["data", "inspect", str(path), "--column-map", "user=who,item=who,timestamp=when"]) == 2
    assert "for both user and item" in capsys.readouterr().err


def test_a_column_map_never_turns_movielens_data_into_a_plain_table(tmp_path):
    from msli_core.data.synth import write_synthetic

    sample = write_synthetic(tmp_path / "synth", SynthConfig(users=10, items=40, interactions=300))
    full = {"user": "userId", "item": "movieId", "timestamp": "timestamp"}
    for path in (sample, FIXTURES / "layout-latest", FIXTURES / "layout-100k", FIXTURES / "layout-1m"):
        assert "MovieLens data with fixed columns, so a column map does not apply; drop --column-map." in (
            _refused(load_dataset, path, column_map=full)
        )
        app = _app_refused(sources.load_path, str(path), column_map=full, min_rating=1.0)
        assert app.endswith("clear the column boxes under “Optional filters and column mapping”.")
    # the app's own folders never get the map: the sample keeps its titles and ground truth
    data, _ = sources.load_folder(sample, "bundled sample (synthetic)", min_rating=0.5, k_core=None)
    assert data.format == "synthetic" and data.truth is not None and data.genre_names


def test_a_ratings_csv_with_other_columns_still_takes_a_column_map(tmp_path):
    _table(tmp_path / "ratings.csv", "userId,movieId,when\n1,1,100\n1,2,200\n2,1,300\n")
    data = load_dataset(tmp_path, column_map={"timestamp": "when"})
    assert data.format == "interactions" and data.n_interactions == 3


# -------------------------------------------------------------------------- limits from the environment


def _zip_bomb(path: Path) -> Path:
    """A ratings.csv member of 9 MiB (above the ratio check's floor) that compresses about 1000 times."""
    body = ("userId,movieId,rating,timestamp\n" + "1,1,5.0,1000000000\n" * (9 * 2**20 // 19)).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ratings.csv", body)
    return path


def test_a_zip_bomb_says_who_can_raise_the_limit(tmp_path):
    path = _zip_bomb(tmp_path / "bomb.zip")
    cli = _refused(load_dataset, path)
    assert "raise the limit with MSLI_MAX_ZIP_RATIO=" in cli
    app = _app_refused(sources.load_path, str(path))
    assert "(a zip bomb?)" in app
    ask = r"ask whoever runs the app to raise its limit on a zip member's expansion ratio to \d+ times\.$"
    assert re.search(ask, app), app


def test_the_other_environment_limits_say_who_can_raise_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLI_MAX_METADATA_MB", "0.00001")
    app = _app_refused(sources.load_path, str(FIXTURES / "layout-latest"))
    assert "movies.csv" in app and app.endswith(
        "ask whoever runs the app to raise its limit on an item metadata file's size to 1 MB."
    )
    monkeypatch.delenv("MSLI_MAX_METADATA_MB")
    monkeypatch.setenv("MSLI_MAX_LOAD_MB", "0.000001")
    app = _app_refused(sources.load_path, str(FIXTURES / "interactions.tsv"), column_map={"user": "visitor"})
    assert "while the app's limit on one load is set to 0 MB;" in app
    ask = r"ask whoever runs the app to raise its limit on the memory one load may use to \d+ MB\.$"
    assert re.search(ask, app), app
    monkeypatch.setenv("MSLI_MAX_EXPANDED_MB", "1")
    app = _app_refused(sources.load_path, str(_zip_bomb(tmp_path / "big.zip")))
    ask = r"raise its limit on a zip member's expanded size to \d+ MB, or unpack the archive and load its"
    assert re.search(ask, app), app


# ------------------------------------------------------------------------------ repeated item ids (7)


def _with_repeats(tmp_path: Path, layout: str, meta: str, extra: list[str], encoding: str) -> Path:
    """A copy of a layout fixture whose metadata file ends with the ``extra`` lines."""
    folder = tmp_path / layout
    shutil.copytree(FIXTURES / layout, folder)
    text = (folder / meta).read_bytes().decode(encoding).rstrip("\n")
    (folder / meta).write_bytes((text + "\n" + "\n".join(extra) + "\n").encode(encoding))
    return folder


@pytest.mark.parametrize(
    ("layout", "meta", "sep", "extra", "encoding"),
    [
        ("layout-latest", "movies.csv", ",", '{id},"Another title (2001)",Comedy', "utf-8"),
        (
            "layout-100k",
            "u.item",
            "|",
            "{id}|Another (2001)|01-Jan-2001||http://x|" + "|".join("0" * 19),
            "latin-1",
        ),
        ("layout-1m", "movies.dat", "::", "{id}::Another title (2001)::Comedy", "latin-1"),
    ],
    ids=["movies.csv", "u.item", "movies.dat"],
)
def test_an_item_listed_twice_in_the_metadata_is_a_validation_note(
    tmp_path, layout, meta, sep, extra, encoding
):
    clean = load_dataset(FIXTURES / layout)
    assert clean.summary()["validation"] == ["ok"]
    lines = (FIXTURES / layout / meta).read_bytes().decode(encoding).splitlines()
    first_id = lines[1 if meta == "movies.csv" else 0].split(sep)[0]  # movies.csv has a header
    data = load_dataset(_with_repeats(tmp_path, layout, meta, [extra.format(id=first_id)], encoding))
    assert data.summary()["validation"] == [
        f"{tmp_path / layout / meta} lists movie id {first_id} 2 times; kept its first row and dropped the 1 "
        "repeated row"
    ]
    kept = data.items.loc[data.item_index[first_id], "title"]
    assert kept == clean.items.loc[clean.item_index[first_id], "title"] and "Another" not in kept


def test_repeated_item_ids_in_a_zipped_metadata_file_are_counted(tmp_path):
    folder = _with_repeats(
        tmp_path,
        "layout-latest",
        "movies.csv",
        ['1,"B (2001)",Comedy', '1,"C (2002)",Drama', '3,"D",Drama'],
        "utf-8",
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in folder.iterdir():
            archive.write(file, f"ml/{file.name}")
    (tmp_path / "ml.zip").write_bytes(buffer.getvalue())
    notes = load_dataset(tmp_path / "ml.zip").summary()["validation"]
    assert notes == [
        f"{tmp_path / 'ml.zip'}:ml/movies.csv lists 2 movie ids more than once (the first of them: 1); kept "
        "the first row of each and dropped 3 repeated rows"
    ]


# ------------------------------------------------------------------------------------- UTF-16 files (8)


@pytest.mark.parametrize(
    ("codec", "bom", "says"),
    [
        ("utf-16-le", codecs.BOM_UTF16_LE, "is UTF-16 text (it starts with a UTF-16 byte-order mark)"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "is UTF-16 text (it starts with a UTF-16 byte-order mark)"),
        ("utf-32-le", codecs.BOM_UTF32_LE, "is UTF-32 text (it starts with a UTF-32 byte-order mark)"),
        ("utf-16-le", b"", "looks like UTF-16 text (every other byte is 0)"),
    ],
    ids=["utf16le-bom", "utf16be-bom", "utf32-bom", "utf16-no-bom"],
)
def test_a_utf16_table_is_named_utf16_not_binary(tmp_path, codec, bom, says):
    text = "userId,movieId,rating,timestamp\n1,1,5.0,100\n1,2,4.0,200\n"
    for name in ("ratings.csv", "shop.csv"):
        path = tmp_path / name
        path.write_bytes(bom + text.encode(codec))
        message = _refused(load_dataset, path)
        assert message.startswith(f"{path} {says}, but an "), message
        assert message.endswith(
            "must be UTF-8 text; save it again as UTF-8 (in Excel: “CSV UTF-8”) and load it."
        )
        assert "binary" not in message


def test_utf16_metadata_files_are_named_too(tmp_path):
    for layout, meta, target in (("layout-100k", "u.item", "Latin-1"), ("layout-1m", "movies.dat", "UTF-8")):
        folder = tmp_path / layout
        shutil.copytree(FIXTURES / layout, folder)
        text = (folder / meta).read_bytes().decode("latin-1")
        (folder / meta).write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
        message = _refused(load_dataset, folder)
        assert f"{meta} is UTF-16 text" in message and f"save it again as {target}" in message, message


def test_binary_data_is_still_called_binary(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"\x00\x01\x02\x03binary\xff" * 10)
    assert "is binary data, not text" in _refused(load_dataset, path)
