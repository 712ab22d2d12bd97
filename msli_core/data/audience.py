"""Who reads a data error: the command line's user (flags, environment variables) or the app's (the Data
page's boxes), so each sentence names what that reader can change.

Decision: the sentence is chosen where it is raised, by a context variable that the app's ways in
(:mod:`msli_core.data.sources`) set around each call (:func:`app_user`); everything else, the CLI
included, gets the command line's words. A context variable rather than a keyword argument because the
sentences are raised far below :func:`~msli_core.data.formats.load_dataset` (a zip member's size is checked
when it is opened, a column map when a header is read), and threading a flag through every reader would
change a dozen signatures for one word. The app's names are the Data page's own labels
(:data:`APP_NAMES`); the page builds its widgets' labels from this table, so the two cannot drift apart.

>>> name("min_rating"), words(cli="pass --k-core 5", app="set “k-core” to 5")
('--min-rating', 'pass --k-core 5')
>>> with app_user():
...     name("min_rating"), for_app()
('“Keep only ratings ≥”', True)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_FOR_APP: ContextVar[bool] = ContextVar("msli_data_for_app", default=False)

# The Data page's fields, as its labels begin (pages/forms.py builds the labels from these).
APP_NAMES = {
    "min_rating": "Keep only ratings ≥",
    "k_core": "k-core",
    "user": "user column",
    "item": "item column",
    "timestamp": "timestamp column",
    "rating": "rating column",
    "users": "Users",
    "items": "Items",
    "interactions": "Interactions (about)",
    "noise": "Noise share",
    "seed": "Seed",
}
# The same settings on the command line.
CLI_NAMES = {
    "min_rating": "--min-rating",
    "k_core": "--k-core",
    "users": "--users",
    "items": "--items",
    "interactions": "--interactions",
    "noise": "--noise",
    "seed": "--seed",
    "interests": "--interests",
}
FILTERS_PANEL = "Optional filters and column mapping"  # the Data page's expander holding the boxes


@contextmanager
def app_user() -> Iterator[None]:
    """Inside this block, data errors are worded for the app's user (the Data page's boxes)."""
    token = _FOR_APP.set(True)
    try:
        yield
    finally:
        _FOR_APP.reset(token)


def for_app() -> bool:
    """True inside :func:`app_user`."""
    return _FOR_APP.get()


def words(*, cli: str, app: str) -> str:
    """``app`` for the app's user, else ``cli``."""
    return app if for_app() else cli


def name(key: str) -> str:
    """A setting as its reader knows it: ``--min-rating`` on the command line, “Keep only ratings ≥”
    (the box's label, quoted) in the app. A key the app has no box for keeps its CLI name."""
    if for_app() and key in APP_NAMES:
        return f"“{APP_NAMES[key]}”"
    return CLI_NAMES.get(key, key)


def raise_limit(variable: str, value: int | str) -> str:
    """How to raise a limit read from the environment: on the command line, set it; in the app, the
    person who starts the app sets it (the app's user cannot), so say that it is an environment
    variable and for whom.

    >>> raise_limit("MSLI_MAX_ZIP_RATIO", 1029)
    'raise the limit with MSLI_MAX_ZIP_RATIO=1029'
    """
    return words(
        cli=f"raise the limit with {variable}={value}",
        app=(
            f"whoever runs the app can raise the limit by setting the environment variable "
            f"{variable}={value} before starting it"
        ),
    )
