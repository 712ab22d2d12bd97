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
