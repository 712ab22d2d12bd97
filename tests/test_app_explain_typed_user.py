"""The Explain page above ``explain_view.MAX_USERS_IN_PICKER`` users: the user id is typed, and the
default opens on a user that has a held-out item (the default stage explains the held-out event)."""

from __future__ import annotations

from test_app_pages import (  # _no_bundled_demo: autouse, an empty session and a temporary workspace
    _no_bundled_demo,  # noqa: F401
    error_texts,
    goto,
    new_app,
    train_tiny,
)

from msli_core import explain_view


def test_the_typed_user_default_has_a_held_out_item(tmp_path, monkeypatch):
    folder = tmp_path / "ml-typed"
    folder.mkdir()
    rows = ["userId,movieId,rating,timestamp", "1,1,4.0,1600000000"]  # user 1: one event, not evaluated
    rows += [f"{u},{m},4.0,{1_600_000_000 + 60 * m + u}" for u in range(2, 7) for m in range(1, 7)]
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(explain_view, "MAX_USERS_IN_PICKER", 2)  # 6 users: the typed box
    at = goto(new_app(), "data")
    at.radio(key="data_source").set_value("Local path").run()
    at.text_input(key="data_path").input(str(folder)).run()
    at.button(key="data_load_path").click().run()
    train_tiny(at, kinds=("msli",), segments=(2,))
    goto(at, "explain")
    box = at.text_input(key="explain_user")
    assert box.value == "2" and box.max_chars == 200  # the first user with 3 or more events
    assert not at.exception and not error_texts(at)
    box.input("1").run()  # the one-event user: one sentence saying what to do instead
    assert not at.exception and "after the whole history" in " ".join(error_texts(at))
