"""The one typed dataset object every part of the project uses, and the evaluation split.

Conventions (docs/design.md §3):
- ids are contiguous integers: users ``1..U``, items ``1..N``; ``0`` is padding in both;
- interactions are sorted by user, then timestamp, ties by original row order (a stable sort);
- every rating is an implicit interaction (optionally only those with rating >= a threshold);
- leave-one-out: a user's last event is the test target, the second-to-last the validation target,
  the rest is training. Users with fewer than 3 events are kept for training only, never evaluated.

Loaders (``formats.py``) produce a raw frame and call :func:`build_dataset`; nothing else builds one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from msli_core.data import audience
from msli_core.errors import MsliError

# Genres of the MovieLens releases, in u.genre order, plus the later additions ("IMAX", "(no genres listed)").
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip

MIN_EVENTS_FOR_EVALUATION = 3  # test + validation + at least one training event


@dataclass(frozen=True)
class InteractionData:
    """Interactions with contiguous ids plus item metadata. Build it with :func:`build_dataset`.

    ``interactions`` columns: ``user`` int64 (1..U), ``item`` int64 (1..N), ``timestamp`` int64 (unix
    seconds), ``rating`` float64 (NaN where the source has none); sorted per the module conventions.
    ``items``: one row per internal item id, index ``0..N`` (row 0 is padding), columns ``title`` (str),
    ``year`` (float, NaN when unknown), ``genres`` (str, ``|``-joined, "" when unknown).
    """

    interactions: pd.DataFrame
    user_ids: np.ndarray  # (U+1,) str: original user id of each internal id; [0] = "" (padding)
    item_ids: np.ndarray  # (N+1,) str: original item id of each internal id; [0] = "" (padding)
    items: pd.DataFrame
    format: str  # "ml-100k", "ml-1m", "ml-latest", "interactions", "synthetic", ...
    source: str  # the path it was read from (for messages)
    notes: tuple[str, ...] = ()  # validation notes: what was dropped or repaired, and by which rule
    # Synthetic data only: what generated each row of ``interactions`` (same row order), with columns
    # ``phase`` (0-based index of the user's interest phase) and ``interest`` (global id, -1 = noise).
    truth: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @cached_property
    def genre_names(self) -> list[str]:
        """Genres present in the item metadata, in first-seen order of MOVIELENS_GENRES, then others."""
        seen: set[str] = set()
        for g in self.items["genres"]:
            if g:
                seen.update(g.split("|"))
        known = [g for g in MOVIELENS_GENRES if g in seen]
        return known + sorted(seen - set(known))

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the id maps: a model trained on this data refuses any other data."""
        h = hashlib.sha256()
        h.update(f"{self.n_users}:{self.n_items}\n".encode())
        h.update("\x1f".join(self.item_ids.tolist()).encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:16]

    @cached_property
    def user_index(self) -> dict[str, int]:
        """Original user id (as written in the file) -> internal id."""
        return {uid: i for i, uid in enumerate(self.user_ids) if i > 0}

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Original item id (as written in the file) -> internal id."""
        return {iid: i for i, iid in enumerate(self.item_ids) if i > 0}

    def internal_user(self, original_id: str | int) -> int:
        key = str(original_id).strip()
        if key not in self.user_index:
            raise MsliError(
                f"User {key!r} is not in {self.source}; pass a user id as written in the data file "
                f"(for example {self.user_ids[1]!r})."
            )
        return self.user_index[key]

    @cached_property
    def sequences(self) -> list[np.ndarray]:
        """Per internal user id, the chronological item ids; index 0 is an empty array. (U+1) arrays
        (views of :attr:`item_array`; the vectorised builders below never need this list)."""
        return _split_by_user(self.item_array, self._offsets)

    @cached_property
    def timestamps(self) -> list[np.ndarray]:
        """Per internal user id, the event timestamps aligned with :attr:`sequences`."""
        return _split_by_user(self.timestamp_array, self._offsets)

    @cached_property
    def item_array(self) -> np.ndarray:
        """(n,) int64 item of every interaction, in (user, time) order: user u's are
        ``item_array[offsets[u]:offsets[u + 1]]``."""
        return self.interactions["item"].to_numpy(np.int64)

    @cached_property
    def timestamp_array(self) -> np.ndarray:
        """(n,) int64 timestamp of every interaction, aligned with :attr:`item_array`."""
        return self.interactions["timestamp"].to_numpy(np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """(U+2,) int64: the rows of internal user u are ``[offsets[u], offsets[u + 1])`` (user 0: none)."""
        return self._offsets

    @cached_property
    def _offsets(self) -> np.ndarray:
        counts = np.bincount(self.interactions["user"].to_numpy(), minlength=self.n_users + 1)
        return np.concatenate([[0], np.cumsum(counts)])  # (U+2,): rows of user u are [off[u], off[u+1])

    def summary(self) -> dict:
        """Statistics for ``msli data inspect`` and the Data page (JSON-ready)."""
        ts = self.interactions["timestamp"]
        lengths = np.diff(self._offsets)[1:]
        evaluable = int((lengths >= MIN_EVENTS_FOR_EVALUATION).sum())
        notes = list(self.notes)
        if evaluable == 0:
            longest = int(lengths.max()) if len(lengths) else 0
            notes.append(
                f"no user has the {MIN_EVENTS_FOR_EVALUATION} events evaluation needs (a test, a validation "
                f"and a training event; the longest history here has {longest}): the table loads, but no "
                "model can be trained or evaluated on it"
            )
        return {
            "format": self.format,
            "source": self.source,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.n_interactions / max(1, self.n_users * self.n_items),
            "time_start": pd.to_datetime(int(ts.min()), unit="s").isoformat() if len(ts) else None,
            "time_end": pd.to_datetime(int(ts.max()), unit="s").isoformat() if len(ts) else None,
            "history_length_median": float(np.median(lengths)) if len(lengths) else 0.0,
            "history_length_max": int(lengths.max()) if len(lengths) else 0,
            "has_ratings": bool(self.interactions["rating"].notna().any()),
            # titles of items without metadata are filled in as "item <id>" by _align_items
            "has_metadata": bool(
                (self.items["title"].iloc[1:] != "item " + self.items["original_id"].iloc[1:]).any()
            ),
            "genres": len(self.genre_names),
            "evaluable_users": evaluable,
            "synthetic_ground_truth": self.truth is not None,
            "validation": notes or ["ok"],
        }


def _split_by_user(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [values[offsets[u] : offsets[u + 1]] for u in range(len(offsets) - 1)]


def build_dataset(
    raw: pd.DataFrame,
    *,
    items_meta: pd.DataFrame | None,
    format: str,
    source: str,
    notes: tuple[str, ...] = (),
    truth: pd.DataFrame | None = None,
    lines: Callable[[int], int] | None = None,
) -> InteractionData:
    """Map original ids to contiguous ones, sort stably by (user, time), and attach metadata.

    ``raw`` has columns ``user``, ``item`` (original ids, any type), ``timestamp`` (int64 seconds),
    ``rating`` (float, may be all NaN), already validated by the loader, in original row order.
    ``items_meta`` (optional) has ``item`` (original id), ``title``, ``year``, ``genres``.
    Duplicate (user, item, timestamp) rows: the first is kept, the others dropped and counted in ``notes``.
    A timestamp outside 1970 .. 2262-04-11 is refused here, for every layout
    (:func:`msli_core.data.timestamps.check_seconds_range`, its one sentence), naming the file's line
    when ``lines`` maps a row of ``raw`` to it (:func:`msli_core.data.timestamps.file_lines`), else
    "row N" (a frame with no file line: built in code, filtered, generated).
    ``truth`` (synthetic only) is aligned with ``raw``'s rows and follows the same reordering.
    """
    from msli_core.data.timestamps import check_seconds_range

    if raw.empty:
        raise MsliError(f"{source} has no interactions; a dataset needs at least one rating row.")
    # The one range check of every layout's timestamps (1970 .. 2262-04-11), whichever reader made raw.
    check_seconds_range(raw["timestamp"].to_numpy(np.int64), source, line_of=lines)
    user_codes, user_uniques = _codes_in_numeric_order(_id_keys(raw["user"]))
    item_codes, item_uniques = _codes_in_numeric_order(_id_keys(raw["item"]))
    timestamps = raw["timestamp"].to_numpy(np.int64)
    ratings = raw["rating"].to_numpy(np.float64) if "rating" in raw else np.full(len(raw), np.nan)
    order = _user_time_order(user_codes, timestamps)  # (user, timestamp, original row), stable
    users = user_codes[order].astype(np.int64)  # (n,) in the final order, 0-based for now
    timestamps = timestamps[order]
    # A dropped duplicate has the user and item of a kept row, so the id maps above stay exact.
    repeated = _repeated_events(users, timestamps, lambda rows: item_codes[order[rows]])
    notes = tuple(notes)
    if repeated.any():
        keep = ~repeated
        n = int(repeated.sum())
        notes += (f"dropped {n} duplicate (user, item, timestamp) row(s), keeping the first of each",)
        order, users, timestamps = order[keep], users[keep], timestamps[keep]
    if truth is not None:
        truth = truth.iloc[order].reset_index(drop=True)
    users += 1
    # One gather per column, straight into the frame's own arrays (no second copy when it is built).
    frame = pd.DataFrame(
        {"user": users, "item": _gather_plus_one(item_codes, order), "timestamp": timestamps,
         "rating": ratings[order]},
        copy=False,
    )  # fmt: skip
    user_ids = np.array(["", *user_uniques], dtype=object)
    item_ids = np.array(["", *item_uniques], dtype=object)
    items = _align_items(item_ids, items_meta)
    return InteractionData(frame, user_ids, item_ids, items, format, source, notes, truth)


def _gather_plus_one(codes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """(n,) int64 ``codes[order] + 1`` (0-based codes to 1-based ids) with one allocation."""
    out = codes[order].astype(np.int64, copy=False)
    out += 1
    return out


def _user_time_order(users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Row order by (user, timestamp), ties by original row: one stable argsort of a combined key
    when it fits in int64 (seconds on 25M rows), else a lexsort."""
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    t_min, t_max = int(timestamps.min()), int(timestamps.max())
    span = t_max - t_min + 1
    if (int(users.max()) + 1) * span < 2**62:
        key = users.astype(np.int64) * span
        key += timestamps
        key -= t_min
        return np.argsort(key, kind="stable")  # timsort: fast on files already grouped by user
    return np.lexsort((np.arange(len(users)), timestamps, users))


def _repeated_events(users: np.ndarray, timestamps: np.ndarray, items_at) -> np.ndarray:
    """(n,) bool: rows (already in user, time, row order) repeating an earlier (user, item, timestamp).

    Only rows that share (user, timestamp) with a neighbour can repeat one, so only they are hashed;
    ``items_at(rows)`` gives the items of those rows (so the item column need not be gathered twice)."""
    same = (users[1:] == users[:-1]) & (timestamps[1:] == timestamps[:-1])
    repeated = np.zeros(len(users), dtype=bool)
    if same.any():
        tied = np.zeros(len(users), dtype=bool)
        tied[1:] |= same
        tied[:-1] |= same
        idx = np.flatnonzero(tied)
        groups = pd.DataFrame({"u": users[idx], "t": timestamps[idx], "i": items_at(idx)})
        repeated[idx] = groups.duplicated(keep="first").to_numpy()
    return repeated


def _id_keys(ids: pd.Series) -> pd.Series:
    """Ids as comparable keys: integer columns stay integers (fast on 25M-row MovieLens files; the
    same partition as their text), categoricals stay categoricals (the columnar readers' coded ids),
    anything else becomes stripped text."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        return ids
    if pd.api.types.is_integer_dtype(ids.dtype) and not pd.api.types.is_bool_dtype(ids.dtype):
        return ids.astype(np.int64)
    return ids.astype(str).str.strip()


def _codes_in_numeric_order(ids: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(n,) 0-based codes (int32 when they fit) and the text of each code's id: ids numbered in numeric
    order when all are numbers (so MovieLens item 1 -> internal 1), else in text order.

    Integers use :func:`~msli_core.data.arrowread.integer_codes` (a presence table when the ids are
    dense, as in MovieLens); categoricals (from the columnar readers) keep their codes, their categories
    re-ordered by the same rule; text is factorised by hashing."""
    from msli_core.data.arrowread import canonical_order, integer_codes

    if isinstance(ids.dtype, pd.CategoricalDtype):
        categories = np.asarray([str(c) for c in ids.cat.categories], dtype=object)  # (k,)
        codes = ids.cat.codes.to_numpy()  # (n,) -1 = missing, which the readers never leave
        if len(codes) and codes.min() < 0:
            raise MsliError("An id is missing in the table; fill it in.")
        order = canonical_order(categories)  # category positions in internal-id order
        used = np.bincount(codes, minlength=len(categories)) > 0
        kept = order[used[order]]  # an unused category gets no id, as text ids no row has get none
        if len(kept) == len(categories) and (kept == np.arange(len(kept))).all():
            return codes.astype(np.int32, copy=False), categories.tolist()
        new_code = np.full(len(categories), -1, dtype=np.int32)
        new_code[kept] = np.arange(len(kept), dtype=np.int32)
        return new_code[codes], categories[kept].tolist()
    if pd.api.types.is_integer_dtype(ids.dtype):
        codes, int_uniques = integer_codes(ids.to_numpy(np.int64))
        return codes, [str(u) for u in int_uniques.tolist()]
    uniques = pd.unique(ids.to_numpy(dtype=object))
    as_num = pd.to_numeric(pd.Series(uniques), errors="coerce")
    if as_num.notna().all():
        uniques = uniques[np.argsort(as_num.to_numpy(), kind="stable")]
    else:
        uniques = np.sort(uniques.astype(str))
    index = {u: i for i, u in enumerate(uniques)}
    codes = ids.map(index).to_numpy(np.int64)
    return codes, [str(u) for u in uniques]


def _align_items(item_ids: np.ndarray, items_meta: pd.DataFrame | None) -> pd.DataFrame:
    n = len(item_ids)
    items = pd.DataFrame(
        {"title": [""] * n, "year": np.full(n, np.nan), "genres": [""] * n},
        index=pd.RangeIndex(n, name="item"),
    )
    items["original_id"] = item_ids.astype(str)
    if items_meta is not None and len(items_meta):
        meta = items_meta.copy()
        meta["item"] = meta["item"].astype(str).str.strip()
        meta = meta.drop_duplicates("item", keep="first").set_index("item")
        aligned = meta.reindex(pd.Index(item_ids.astype(str)))
        for col in ("title", "genres"):
            if col in aligned:
                items[col] = aligned[col].fillna("").astype(str).to_numpy()
        if "year" in aligned:
            items["year"] = pd.to_numeric(aligned["year"], errors="coerce").to_numpy(np.float64)
    items.loc[0, ["title", "genres"]] = ["<padding>", ""]
    missing = items["title"] == ""
    items.loc[missing, "title"] = "item " + items.loc[missing, "original_id"]
    return items


def preprocess(
    data: InteractionData, *, min_rating: float | None = None, k_core: int | None = None
) -> InteractionData:
    """Optional filters of the protocol: keep ratings >= ``min_rating``; then iterate a k-core (every
    user and item with >= ``k_core`` interactions). Ids are re-mapped to stay contiguous."""
    frame = data.interactions
    keep = np.ones(len(frame), dtype=bool)
    notes = list(data.notes)
    if min_rating is not None:
        keep &= (frame["rating"] >= min_rating).to_numpy() | frame["rating"].isna().to_numpy()
        notes.append(f"kept ratings >= {min_rating:g} as interactions ({int(keep.sum())} of {len(frame)})")
    if k_core and k_core > 1:
        users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
        while True:
            u_counts = np.bincount(users[keep], minlength=data.n_users + 1)
            i_counts = np.bincount(items[keep], minlength=data.n_items + 1)
            new_keep = keep & (u_counts[users] >= k_core) & (i_counts[items] >= k_core)
            if new_keep.sum() == keep.sum():
                break
            keep = new_keep
        notes.append(f"{k_core}-core filter kept {int(keep.sum())} of {len(frame)} interactions")
    if keep.all():
        return replace(data, notes=tuple(notes))
    if not keep.any():
        filtered = (("min_rating", min_rating is not None), ("k_core", bool(k_core and k_core > 1)))
        used = [key for key, applied in filtered if applied]
        raise MsliError(
            f"Filtering {data.source} left no interactions; lower "
            f"{' or '.join(audience.name(key) for key in used)}"
            + audience.words(cli="", app=f" under “{audience.FILTERS_PANEL}”")
            + "."
        )
    kept = frame[keep]
    raw = pd.DataFrame(
        {
            "user": data.user_ids[kept["user"].to_numpy()],
            "item": data.item_ids[kept["item"].to_numpy()],
            "timestamp": kept["timestamp"].to_numpy(),
            "rating": kept["rating"].to_numpy(),
        }
    )
    meta = data.items.iloc[1:].rename(columns={"original_id": "item"})[["item", "title", "year", "genres"]]
    truth = data.truth[keep].reset_index(drop=True) if data.truth is not None else None
    return build_dataset(
        raw, items_meta=meta, format=data.format, source=data.source, notes=tuple(notes), truth=truth
    )


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Leave-one-out split of :class:`InteractionData` (docs/design.md §3).

    For an evaluated user ``u`` with sequence ``s`` (chronological): train = ``s[:-2]``,
    validation target = ``s[-2]`` (history ``s[:-2]``), test target = ``s[-1]`` (history ``s[:-1]``).
    """

    data: InteractionData
    eval_users: np.ndarray  # (U_eval,) internal ids of users with >= 3 events

    def train_sequence(self, user: int) -> np.ndarray:
        seq = self.data.sequences[user]
        return seq[:-2] if len(seq) >= MIN_EVENTS_FOR_EVALUATION else seq

    def history(self, user: int, stage: str) -> np.ndarray:
        """Items the model may see when predicting the ``stage`` ("valid" or "test") target."""
        seq = self.data.sequences[user]
        return seq[: _cut(stage)]

    def history_timestamps(self, user: int, stage: str) -> np.ndarray:
        return self.data.timestamps[user][: _cut(stage)]

    def target(self, user: int, stage: str) -> int:
        return int(self.data.sequences[user][_cut(stage)])

    def batch(self, users, stage: str) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
        """Histories, their timestamps and the ``stage`` targets of ``users``, in order."""
        users = [int(u) for u in users]
        return (
            [self.history(u, stage) for u in users],
            [self.history_timestamps(u, stage) for u in users],
            [self.target(u, stage) for u in users],
        )

    def targets(self, stage: str, users: np.ndarray | None = None) -> np.ndarray:
        """(B,) the ``stage`` target item of each of ``users`` (default: every evaluated user)."""
        users = self.eval_users if users is None else np.asarray(users, dtype=np.int64)
        return self.data.item_array[self.data.offsets[users + 1] + _cut(stage)]

    def histories(self, stage: str) -> list[np.ndarray]:
        return [self.history(u, stage) for u in self.eval_users]

    def padded_histories(
        self, stage: str, max_len: int, users: np.ndarray | None = None, *, timestamps: bool = False
    ) -> np.ndarray:
        """(B, max_len) int64: the last ``max_len`` items (or, with ``timestamps``, their times) each of
        ``users`` (default: every evaluated user) may see for its ``stage`` target, right-aligned and
        0-padded on the left: ``pad_right_aligned([history(u, stage) for u in users], max_len)``,
        gathered straight from the interaction arrays (no list of histories, no loop over users)."""
        users = self.eval_users if users is None else np.asarray(users, dtype=np.int64)
        off = self.data.offsets
        values = self.data.timestamp_array if timestamps else self.data.item_array
        return pad_ranges(values, off[users], off[users + 1] + _cut(stage), max_len)

    def train_lengths(self) -> np.ndarray:
        """(U+1,) training events of every user (index 0: padding, 0)."""
        n = np.diff(self.data.offsets)
        return np.where(n >= MIN_EVENTS_FOR_EVALUATION, n - 2, n)

    def padded_train_tails(self, max_len: int, *, timestamps: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(users, (B, max_len) int64): the last ``max_len`` training events of every user with at
        least 2 of them (the users of :meth:`train_sequences`, in id order), right-aligned, 0-padded."""
        lengths = self.train_lengths()
        users = np.flatnonzero(lengths >= 2)
        off = self.data.offsets
        values = self.data.timestamp_array if timestamps else self.data.item_array
        return users, pad_ranges(values, off[users], off[users] + lengths[users], max_len)

    def train_sequences(self) -> list[np.ndarray]:
        """Training sequences of every user with at least 2 training events (index-free list)."""
        out = (self.train_sequence(u) for u in range(1, self.data.n_users + 1))
        return [s for s in out if len(s) >= 2]


def _cut(stage: str) -> int:
    if stage == "test":
        return -1
    if stage == "valid":
        return -2
    raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")


def leave_one_out(data: InteractionData) -> LeaveOneOutSplit:
    lengths = np.diff(data.offsets)  # (U+1,) events of each user, [0] = 0 (padding)
    eval_users = np.flatnonzero(lengths >= MIN_EVENTS_FOR_EVALUATION).astype(np.int64)
    if len(eval_users) == 0:
        raise MsliError(
            f"No user in {data.source} has {MIN_EVENTS_FOR_EVALUATION} or more interactions, so nothing can "
            "be evaluated; use a larger dataset."
        )
    return LeaveOneOutSplit(data, eval_users)


def pad_right_aligned(sequences: list[np.ndarray], max_len: int) -> np.ndarray:
    """(B, max_len) int64: the last ``max_len`` items of each sequence, right-aligned, 0-padded left.

    One concatenation and one gather (:func:`pad_ranges`), no Python loop over rows.

    >>> pad_right_aligned([np.array([5, 6, 7]), np.array([9])], 2).tolist()
    [[6, 7], [0, 9]]
    >>> pad_right_aligned([np.array([], dtype=np.int64), np.array([1, 2])], 3).tolist()
    [[0, 0, 0], [0, 1, 2]]
    """
    B = len(sequences)
    max_len = max(0, int(max_len))
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=B)  # (B,)
    if B == 0 or max_len == 0 or not lengths.any():
        return np.zeros((B, max_len), dtype=np.int64)
    flat = np.concatenate([np.asarray(s) for s in sequences]).astype(np.int64, copy=False)
    ends = np.cumsum(lengths)
    return pad_ranges(flat, ends - lengths, ends, max_len)


PAD_CHUNK_ROWS = 1 << 16  # rows gathered at once by pad_ranges: bounds its (rows, L) index temporaries


def pad_ranges(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """(B, max_len) int64: row b holds the last ``max_len`` of ``values[starts[b]:ends[b]]``,
    right-aligned, 0 on the left. Vectorised: one masked gather per :data:`PAD_CHUNK_ROWS` rows.

    >>> pad_ranges(np.array([1, 2, 3, 4, 5]), np.array([0, 3, 2]), np.array([3, 5, 2]), 2).tolist()
    [[2, 3], [4, 5], [0, 0]]
    """
    values = np.asarray(values).astype(np.int64, copy=False)
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    B, L = len(starts), max(0, int(max_len))
    out = np.zeros((B, L), dtype=np.int64)
    if B == 0 or L == 0 or len(values) == 0:
        return out
    lengths = np.clip(ends - starts, 0, L)  # (B,) events each row keeps
    col = np.arange(L, dtype=np.int64)[None, :]  # (1, L)
    for lo in range(0, B, PAD_CHUNK_ROWS):
        hi = min(B, lo + PAD_CHUNK_ROWS)
        gathered = values.take(ends[lo:hi, None] - L + col, mode="clip")  # (b, L) slot <- source row
        gathered *= col >= (L - lengths[lo:hi])[:, None]  # 0 in the slots left of the history
        out[lo:hi] = gathered
    return out
