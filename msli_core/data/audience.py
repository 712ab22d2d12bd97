"""Who reads an error sentence: the command line's user (flags, environment variables, ``msli``
commands) or the app's (its pages and boxes), so each sentence names what that reader can change.

This is the one mechanism for it, used by the data layer, model loading (:mod:`msli_core.models.registry`)
and the MovieLens download (:mod:`msli_core.data.download`): a context variable that the app sets around
everything it runs (:func:`app_user`: app.py wraps every page, its sidebar and the cached loaders in it;
:mod:`msli_core.data.sources` wraps its own calls too, so they read the same when called alone).
Everything else, the CLI included, gets the command line's words.

Decisions:

- A context variable rather than a keyword argument, because the sentences are raised far below the
  call that knows its reader (a zip member's size is checked when it is opened, a column map when a
  header is read, a model's tensors after its config), and threading a flag through every reader would
  change a dozen signatures for one word.
- What a reader can do about a refusal lives in one table, :data:`FIXES` (key -> the command line's
  words, the app's words), so the two vocabularies sit side by side and one test checks that no app
  sentence names a flag, an environment variable or an ``msli`` command, and no CLI one a page's box.
- An app user is never told about an environment variable, not even one to pass on: a limit read from
  the environment is named by what it limits and the value it would need (:func:`raise_limit`, from
  :data:`LIMITS`); the README's "Limits on data input" maps each to its setting for whoever runs the app.
  The exception is the server's own configuration, which no page can change: a badly set variable
  (``limits.env_positive``, ``MSLI_LIMITS_SCALE``), a workspace or calibration cache the app cannot use.
  There the variable is named, addressed to whoever runs the app ("ask whoever runs the app to ... and
  restart it"; :func:`server_setting` names it with what it sets), followed, where a page offers one,
  by what the app's user can do meanwhile (a calibration file the app will not read: the What-if page's
  presets). The rule is who can act: a fix the app's user makes (a box, a page, another seed) never
  names a variable, a flag or a command; a fix only the server's owner can make names the variable to
  them. Raising a limit is the owner's choice, not a misconfiguration, so it keeps :func:`raise_limit`'s
  words (what it limits and the value it would need).
- The app's names are the Data page's own labels (:data:`APP_NAMES`); the page builds its widgets' labels
  from this table, so the two cannot drift apart. The other pages' widgets that core sentences name are
  in :data:`PAGE_LABELS`; a test checks each label is on its page.

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
# Other pages' widgets that core sentences name (key -> (the page's file, the label as it begins there)).
PAGE_LABELS = {
    "generate": ("pages/data.py", "Generate synthetic"),  # the Data page's generator (a source)
    "sample": ("pages/data.py", "Bundled sample"),
    "seed": ("pages/forms.py", "Seed"),  # the Train page's form
    "hardware": ("pages/whatif.py", "Hardware"),  # the What-if page's preset box
    "measure": ("pages/whatif.py", "Measure this machine now"),
    "calibrate": ("pages/forms.py", "Also calibrate the cost model on this machine"),  # Latency's form
}


def label(key: str) -> str:
    """A widget of :data:`PAGE_LABELS` as the app's sentences name it: its label, quoted."""
    return f"“{PAGE_LABELS[key][1]}”"


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


# What a limit read from the environment limits, as its sentence names it to the app's user, with its unit.
LIMITS = {
    "MSLI_MAX_EXPANDED_MB": ("its limit on a zip member's expanded size", " MB"),
    "MSLI_MAX_ZIP_RATIO": ("its limit on a zip member's expansion ratio", " times"),
    "MSLI_MAX_METADATA_MB": ("its limit on an item metadata file's size", " MB"),
    "MSLI_MAX_LOAD_MB": ("its limit on the memory one load may use", " MB"),
}
# The server's other settings read from the environment, by what they set (see :func:`server_setting`).
SETTINGS = {
    "MSLI_DOWNLOAD_DEADLINE_S": "its time limit on one MovieLens download",
    "MSLI_LIMITS_SCALE": "its multiplier of every size limit",
    "MSLI_CACHE_DIR": "its cache folder",
    "MSLI_WORKSPACE": "its workspace folder",
}


def server_setting(variable: str) -> str:
    """A setting of the server read from the environment, as a sentence names it to whoever runs the app:
    what it sets, then its variable (the exception of the module's rule: only for the server's own
    misconfiguration, addressed to whoever runs the app).

    >>> server_setting("MSLI_MAX_ZIP_RATIO")
    "the app's limit on a zip member's expansion ratio (environment variable MSLI_MAX_ZIP_RATIO)"
    """
    what = LIMITS[variable][0] if variable in LIMITS else SETTINGS.get(variable)
    if what is None:
        return f"the app's setting {variable} (an environment variable)"
    return f"the app's {what.removeprefix('its ')} (environment variable {variable})"


def raise_limit(variable: str, value: int | str) -> str:
    """How to raise a limit read from the environment: on the command line, set it; in the app, the
    person who starts the app can (the app's user cannot), named by what it limits, never by its variable.

    >>> raise_limit("MSLI_MAX_ZIP_RATIO", 1029)
    'raise the limit with MSLI_MAX_ZIP_RATIO=1029'
    >>> with app_user():
    ...     raise_limit("MSLI_MAX_ZIP_RATIO", 1029)
    "ask whoever runs the app to raise its limit on a zip member's expansion ratio to 1029 times"
    """
    what, unit = LIMITS[variable]
    return words(
        cli=f"raise the limit with {variable}={value}",
        app=f"ask whoever runs the app to raise {what} to {value}{unit}",
    )


# What a reader can do about a refusal: key -> (the command line's words, the app's words). The app's
# user has no flags, no --out or --dir folder and no environment, only the app's pages: model folders
# reach the app only from its workspace (skipped when one does not load), downloads go to the app's own
# cache folder, and an archive downloaded by hand can be loaded with “Upload files”.
_BY_HAND = "download the zip from grouplens.org yourself and load it with “Upload files”"
FIXES: dict[str, tuple[str, str]] = {
    # model folders and zips (msli_core.models.registry)
    "model.retrain": ("retrain it with `msli train`", "train it again on the Train page"),
    "model.diverged": (
        "retrain it with a lower --lr",
        "train it again on the Train page (its learning rates are the stable defaults)",
    ),
    "model.folder": (
        "pass the --out folder of `msli train`",
        "the app skips it, so move that folder out of the workspace",
    ),
    "model.pickle": (
        "retrain with `msli train` (which saves config.json + model.safetensors)",
        "the app skips it, so move that folder out of the workspace",
    ),
    "model.not_ours": (
        "it was not written by `msli train`, so retrain the model",
        "it was not written by this lab, so train the model again on the Train page",
    ),
    # the MovieLens download (msli_core.data.download)
    "download.writable": (
        "pass a writable --dir",
        f"the app needs a cache folder it can write; or {_BY_HAND}",
    ),
    "download.space": (
        "free some space or pass another --dir",
        f"free some space on the machine running the app, or {_BY_HAND}",
    ),
    "download.by_hand": ("download the zip by hand and pass it to msli data inspect", _BY_HAND),
    "download.slow": (
        "try again later, or allow more time with MSLI_DOWNLOAD_DEADLINE_S",
        f"try again later, or {_BY_HAND}",
    ),
    "download.http": (
        "check the dataset name or the base URL (MSLI_MOVIELENS_BASE_URL)",
        f"try again later, or {_BY_HAND}",
    ),
    "download.foreign": (
        "move {it} away or pass another --dir",
        "move {it} out of the app's download folder, or " + _BY_HAND,
    ),
}


def fix(key: str, **fields: str) -> str:
    """What the reader can do about a refusal (:data:`FIXES`), with ``fields`` filled in.

    >>> fix("download.foreign", it="it")
    'move it away or pass another --dir'
    """
    cli, app = FIXES[key]
    return words(cli=cli, app=app).format(**fields)
