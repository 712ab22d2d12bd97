"""The Data page's ways to get a dataset, in one place: the optional filters, a typed local path, a folder
the app knows (the bundled sample, a downloaded archive), an official archive to download, uploaded files
(saved under plain names in a temporary folder, never under a client's path), the generator, the official
archives' sizes, and the summary line of what was loaded. Nothing here imports streamlit.

Every call here runs inside :func:`msli_core.data.audience.app_user`, so an error names the page's boxes
(“k-core”, “user column”, “Items”) or “Upload files” where the CLI's would name its flags (app.py runs
every page inside it as well; these calls say so themselves, so they read the same when called alone).
The column map is taken only by the ways in that can hold a generic table (a typed path, uploads); the
bundled sample, a download and the generator never get it, so boxes left filled in cannot change what
they load.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from msli_core.data.audience import app_user
from msli_core.errors import MsliError

# Official archives and their sizes (docs/design.md §3), so a user knows what a click will download.
ARCHIVE_SIZES = {
    "ml-100k": "4.9 MB · 100k ratings",
    "ml-1m": "5.9 MB · 1M ratings",
    "ml-latest-small": "1.0 MB · 101k ratings",
    "ml-20m": "199 MB · 20M ratings (needs several GB of memory)",
    "ml-25m": "262 MB · 25M ratings (needs several GB of memory)",
    "ml-32m": "about 240 MB · 32M ratings (needs several GB of memory)",
}


def filters(min_rating: float | None, k_core: int | None) -> tuple[dict, str]:
    """The loader's filters from the page's two boxes, and a note naming them ("" when none).

    >>> filters(3.5, 5)
    ({'min_rating': 3.5, 'k_core': 5}, 'ratings ≥ 3.5 · 5-core')
    >>> filters(None, 1)
    ({'min_rating': None, 'k_core': None}, '')
    """
    chosen = dict(min_rating=min_rating, k_core=int(k_core) if k_core and k_core > 1 else None)
    note = " · ".join(
        text
        for text in (
            f"ratings ≥ {min_rating:g}" if min_rating is not None else "",
            f"{chosen['k_core']}-core" if chosen["k_core"] else "",
        )
        if text
    )
    return chosen, note


def upload_file_name(name: str) -> str:
    """The name an uploaded file is saved under on the server: the client's name when it is one plain
    file name; anything else (empty, ``.``, ``..``, a path such as ``/`` or ``a/../b``, a control
    character, over 200 characters) is refused with a sentence, never used as a path."""
    shown = name if len(name) <= 60 else name[:57] + "…"
    plain = name.strip()
    if (
        not plain
        or plain in (".", "..")
        or any(c in plain for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in plain)
        or len(plain) > 200
    ):
        raise MsliError(
            f"The uploaded file's name {shown!r} is not a plain file name; rename the file (for example "
            "ratings.csv or ml-100k.zip) and upload it again."
        )
    return plain


def load_path(text: str, *, column_map: dict[str, str] | None = None, **filters):
    """Load the path typed in the page's box (``~`` and ``~user`` expanded; a path that cannot be used
    is one sentence naming it as typed). Returns (dataset, label: the path as typed)."""
    from msli_core.data import load_dataset

    text = text.strip()
    with app_user():
        return load_dataset(text, column_map=column_map, display=text, **filters), text


def load_folder(folder: Path, label: str, **filters):
    """Load a folder the app itself provides (the bundled sample, a downloaded archive) with the
    filters; never with a column map (its layout is MovieLens, detected by itself). Returns
    (dataset, label)."""
    from msli_core.data import load_dataset

    with app_user():
        return load_dataset(folder, **filters), label


def fetch(name: str, progress=None) -> Path:
    """Download (or find in the app's cache) and verify the official MovieLens archive ``name``; returns
    its folder. Its refusals name the app's ways (“Upload files”), never --dir or an environment
    variable."""
    from msli_core.data import fetch_movielens

    with app_user():
        return fetch_movielens(name, progress=progress)


def load_uploads(files: list[tuple[str, bytes]], **load_kwargs):
    """Load uploaded (name, bytes) files with ``load_dataset``: one file (a zip or an interactions table)
    as itself, several as a folder. Messages name the uploaded files, never the server's temporary
    folder. Returns (dataset, label)."""
    with app_user():
        return _load_uploads(files, **load_kwargs)


def _load_uploads(files: list[tuple[str, bytes]], **load_kwargs):
    from msli_core.data import load_dataset

    names = [upload_file_name(name) for name, _ in files]  # never trust a client path
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MsliError(
            f"Two uploaded files are both named {twice[0]!r}; upload each file once, or rename one."
        )
    with tempfile.TemporaryDirectory(prefix="msli-upload-") as folder:
        for (_, payload), name in zip(files, names, strict=True):
            try:
                (Path(folder) / name).write_bytes(payload)
            except OSError as err:
                raise MsliError(
                    f"The uploaded file {name!r} cannot be saved on the server "
                    f"({err.strerror or err}); try a smaller file."
                ) from err
        if len(names) == 1:
            data = load_dataset(Path(folder) / names[0], display=names[0], **load_kwargs)
            return data, "upload: " + names[0]
        return load_dataset(Path(folder), display="upload", **load_kwargs), "upload: " + ", ".join(names)


def generate(settings: dict, filters: dict, progress=None):
    """The project's generator at the page's settings (users, items, interactions, noise, seed), with the
    filters applied. Returns (dataset, label)."""
    from msli_core.data import preprocess
    from msli_core.data.synth import SynthConfig, to_dataset
    from msli_core.data.synth import generate as synthesize

    config = SynthConfig(**{k: (float(v) if k == "noise" else int(v)) for k, v in settings.items()})
    label = f"synthetic: {config.users} users, {config.items} items, seed {config.seed}"
    with app_user():  # a refused setting names the page's box ("Interactions (about)"), not --interactions
        data = to_dataset(synthesize(config, progress=progress), source=label)
        if filters.get("min_rating") is not None or filters.get("k_core"):
            data = preprocess(data, **filters)
    return data, label


def synth_interactions_range(users: int, items: int, default) -> tuple[int, int]:
    """(fewest, most) interactions the generator accepts for ``users`` and ``items`` with the other
    settings of ``default`` (a ``SynthConfig``): every user makes between ``min_events`` and
    ``min(max_events, items)`` events (:meth:`SynthConfig.validate`).

    >>> from msli_core.data.synth import SynthConfig
    >>> synth_interactions_range(300, 2000, SynthConfig())
    (6000, 120000)
    >>> synth_interactions_range(10, 40, SynthConfig())
    (200, 400)
    """
    return users * default.min_events, users * min(default.max_events, items)


def summary_caption(summary: dict) -> str:
    """One line under the Data page's numbers: format, time range, evaluated users, genres, ratings,
    ground truth (``InteractionData.summary()``)."""
    return (
        f"Format **{summary['format']}** · time range {str(summary['time_start'])[:10]} → "
        f"{str(summary['time_end'])[:10]} · {summary['evaluable_users']:,} users with ≥ 3 events are "
        f"evaluated · {summary['genres']} genres · "
        f"ratings {'present' if summary['has_ratings'] else 'absent'} · "
        f"ground truth {'present (synthetic)' if summary['synthetic_ground_truth'] else 'absent'}"
    )
