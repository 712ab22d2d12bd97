"""The synthetic generator at MovieLens-25M/32M scale: vectorised, chunked, in bounded memory (issue 14).

:func:`msli_core.data.synth.generate` walks every event of every user in Python (about a million
events a minute): right for ``sample_data/`` and anything a laptop trains on, far too slow for a
32-million-event log. This module draws the same kind of log — users with interest phases, returns to
old interests, sequential steps inside an interest, sessions of events days apart, ratings — with
numpy over chunks of :data:`CHUNK_USERS` users, and appends each chunk to the files as it is made, so
memory is bounded by the chunk, not by the log (about 10 s a million events on one core, a few hundred
MB of memory whatever the size).

What it shares with the exact generator (docs in :mod:`msli_core.data.synth`): the :class:`SynthConfig`
knobs, the catalog (clusters, titles, genres, years, movie ids), the activity law (events per user),
the number of phases per user, the choice of one interest per phase (Zipf over interests, without
replacement), noise and return probabilities, session timing and ratings. Where it differs, to be
vectorisable:

- **Inside an interest** a user's positions in the cluster's order only move forward: the first item
  is a Zipf-popular one; then with ``sequential_prob`` (``return_sequential_prob`` for a return) the next
  is 1–3 places past the cursor, else it is a fresh Zipf-popular item or, when that one is behind the
  cursor, the next place after it (``pos_t = max(pos_{t-1} + step_t, fresh_t)``, a running maximum).
  So an item is never taken twice from an interest, with no per-user "seen" set.
- **A used-up cluster** (a position past its end) turns the event into a noise event, instead of moving
  to the most similar cluster.
- **Noise** items are drawn from the global popularity; one that the user already has is redrawn up to
  :data:`NOISE_REDRAWS` times, then the event is dropped, so no (user, movie) pair repeats (as in
  MovieLens) and a user may end a few events short of the planned count.
- Random numbers come from one stream per chunk (``SeedSequence(seed).spawn``): the same config gives
  byte-identical files, but not the same log as :func:`~msli_core.data.synth.generate`.

Output: ``ratings.csv`` and ``movies.csv`` in the ml-latest layout (rows sorted by userId, then movieId,
as in ML-25M/32M), ``synth_config.json``, and, unless ``ground_truth=False``, ``ground_truth.csv`` (then
the folder loads as ``synthetic``; without it, as plain ``ml-latest``, like a real MovieLens release).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from msli_core.data import synth
from msli_core.data.synth import NOISE_INTEREST, SynthConfig
from msli_core.errors import MsliError
from msli_core.outputs import atomic_output_dir, check_out_dir
from msli_core.progress import ProgressCallback, ProgressEvent, no_progress

CHUNK_USERS = 20_000  # users drawn and written at once: ~3 M events of ML-32M, a few hundred MB
NOISE_REDRAWS = 4  # times a noise item the user already has is redrawn before the event is dropped
MAX_BULK_INTERACTIONS = 200_000_000  # the most events one log may have (MSLI_LIMITS_SCALE raises it)
_RATING_LABELS = tuple(f"{k / 2:.1f}" for k in range(1, 11))  # "0.5" .. "5.0": ratings in half steps


@dataclasses.dataclass(frozen=True)
class _Catalog:
    cluster_items: list[np.ndarray]  # per interest, its items (0-based) in cluster order
    cluster_start: np.ndarray  # (C+1,) offsets of each cluster in ``flat``
    flat: np.ndarray  # (N,) items, cluster-major, in cluster order
    cdf_shifted: np.ndarray  # (N,) cluster k's cumulative Zipf weights + k: in (k, k+1], ascending
    noise_cdf: np.ndarray  # (N,) cumulative global popularity over items
    interest_pop: np.ndarray  # (C,)
    movie_ids: np.ndarray  # (N,) movieId of each item
    item_rank_by_id: np.ndarray  # (N,) rank of each item's movieId (movie ids are sorted: the identity)
    movies: pd.DataFrame  # movieId, title, genres
    interests: pd.DataFrame  # interest, genres, items, popularity


def _catalog(rng: np.random.Generator, cfg: SynthConfig) -> _Catalog:
    c = cfg.interests
    interest_pop = synth._zipf_weights(c, cfg.interest_zipf)[rng.permutation(c)]
    cat = synth._make_catalog(rng, cfg, interest_pop)
    members = cat["cluster_items"]
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    weights = [synth._zipf_weights(len(m), cfg.item_zipf) for m in members]
    item_pop = np.empty(cfg.items)
    for k, m in enumerate(members):
        item_pop[m] = interest_pop[k] * weights[k]
    movies = pd.DataFrame({"movieId": cat["movie_ids"], "title": cat["titles"], "genres": cat["genres"]})
    interests = pd.DataFrame(
        {
            "interest": np.arange(c),
            "genres": ["|".join(g) for g in cat["cluster_genres"]],
            "items": sizes,
            "popularity": interest_pop,
        }
    )
    return _Catalog(
        cluster_items=members,
        cluster_start=np.concatenate([[0], np.cumsum(sizes)]),
        flat=np.concatenate(members),
        cdf_shifted=np.concatenate([k + np.cumsum(w) for k, w in enumerate(weights)]),
        noise_cdf=np.cumsum(item_pop / item_pop.sum()),
        interest_pop=interest_pop,
        movie_ids=cat["movie_ids"],
        item_rank_by_id=np.argsort(np.argsort(cat["movie_ids"], kind="stable"), kind="stable"),
        movies=movies,
        interests=interests,
    )


def _phase_counts(cfg: SynthConfig, n: np.ndarray) -> np.ndarray:
    """(B,) phases of each user, the exact generator's rule (:func:`msli_core.data.synth.generate`)."""
    p = np.clip(np.round(n / cfg.phase_events), cfg.min_phases, cfg.max_phases).astype(np.int64)
    heavy = np.minimum(cfg.max_phases, np.ceil(n * cfg.interests / (1.2 * cfg.items))).astype(np.int64)
    p = np.maximum(p, heavy)
    return np.maximum(1, np.minimum(np.minimum(p, n // 2), cfg.interests))


def _group_scan(values: np.ndarray, starts: np.ndarray, op) -> np.ndarray:
    """``op.accumulate`` (np.add or np.maximum) restarted at every True of ``starts`` (values int64)."""
    if op is np.add:
        total = np.cumsum(values)
        first = np.flatnonzero(starts)
        base = np.repeat(total[first] - values[first], np.diff(np.append(first, len(values))))
        return total - base
    group = np.cumsum(starts) - 1  # (E,) 0-based group of each element
    span = int(values.max() - values.min()) + 1 if len(values) else 1
    shifted = values - values.min() + group * span  # groups in increasing bands: no carry between them
    return np.maximum.accumulate(shifted) - group * span + values.min()


def _chunk(cfg: SynthConfig, cat: _Catalog, rng: np.random.Generator, n: np.ndarray) -> pd.DataFrame:
    """Events of B users with ``n`` (B,) planned events each: local user, item, timestamp, phase,
    interest, rating, in each user's time order."""
    B, C = len(n), cfg.interests
    E = int(n.sum())
    user = np.repeat(np.arange(B), n)  # (E,) local user of each event
    user_start = np.concatenate([[0], np.cumsum(n)])[:-1]  # (B,)
    e_idx = np.arange(E) - user_start[user]  # (E,) place of the event in its user's history

    # Phases: one interest each (Zipf, without replacement: Gumbel top-k), lengths ~ Dirichlet(2).
    P = _phase_counts(cfg, n)  # (B,)
    p_max = int(P.max())
    keys = np.log(cat.interest_pop)[None, :] + rng.gumbel(size=(B, C))  # (B, C)
    phase_interest = np.argsort(-keys, axis=1, kind="stable")[:, :p_max]  # (B, P_max)
    share = rng.gamma(2.0, size=(B, p_max)) * (np.arange(p_max)[None, :] < P[:, None])  # (B, P_max)
    cum = np.cumsum(share, axis=1) / share.sum(axis=1, keepdims=True)
    floor = np.minimum(2, n // P)  # (B,) each phase gets this many events, the rest by its share
    rest = n - floor * P
    ends = floor[:, None] * (np.arange(p_max)[None, :] + 1) + np.round(rest[:, None] * cum).astype(np.int64)
    valid = np.arange(p_max)[None, :] < P[:, None] - 1  # the last phase ends at n: not a boundary
    flat_ends = (ends + user_start[:, None])[valid]  # ascending: boundaries of all users in order
    phase_base = np.concatenate([[0], np.cumsum(P - 1)])[:-1]  # (B,) boundaries before each user
    phase = np.searchsorted(flat_ends, np.arange(E), side="right") - phase_base[user]  # (E,)

    # Which interest made each event: noise, a return to an earlier phase's interest, or the current one.
    draws = rng.random((E, 3))
    current = phase_interest[user, phase]
    earlier = phase_interest[user, np.floor(draws[:, 2] * phase).astype(np.int64)]
    returning = (phase > 0) & (draws[:, 1] < cfg.return_prob)
    interest = np.where(returning, earlier, current)
    returning &= interest != current
    noise = draws[:, 0] < cfg.noise

    # Inside an interest: a forward walk, pos_t = max(pos_{t-1} + step_t, fresh_t) (module docstring).
    walk = rng.random((E, 3))
    size = np.diff(cat.cluster_start)[interest]  # (E,)
    cdf_at = cat.cluster_start[interest]
    # A Zipf-popular place in the event's cluster: one search over all clusters' CDFs, cluster k's
    # shifted to (k, k+1], queried with k + uniform.
    fresh = np.searchsorted(cat.cdf_shifted, interest + walk[:, 0], side="right") - cdf_at
    fresh = np.minimum(fresh, size - 1)
    seq_prob = np.where(returning, cfg.return_sequential_prob, cfg.sequential_prob)
    sequential = walk[:, 1] < seq_prob
    step = np.where(sequential, 1 + np.searchsorted([0.6, 0.85], walk[:, 2], side="right"), 1)
    order = np.flatnonzero(~noise)
    order = order[np.argsort(user[order] * C + interest[order], kind="stable")]  # (user, interest, time)
    g_user, g_interest = user[order], interest[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (g_user[1:] != g_user[:-1]) | (g_interest[1:] != g_interest[:-1])
    d = np.where(starts, 0, step[order]).astype(np.int64)
    D = _group_scan(d, starts, np.add)  # steps since the group's first event
    z = np.where(starts | ~sequential[order], fresh[order], np.iinfo(np.int32).min).astype(np.int64)
    pos = np.full(E, -1, dtype=np.int64)
    pos[order] = _group_scan(z - D, starts, np.maximum) + D
    used_up = ~noise & (pos >= size)
    noise |= used_up
    item = np.where(noise, 0, cat.flat[np.minimum(cdf_at + np.maximum(pos, 0), len(cat.flat) - 1)])
    interest = np.where(noise, NOISE_INTEREST, interest)

    # Noise: a globally popular item the user does not have yet (redrawn a few times, else dropped).
    key = user.astype(np.int64) * cfg.items + item  # (E,) the (user, item) pair of each event
    settled = np.sort(key[~noise])  # pairs taken by interest events (never two alike)
    redraw = np.flatnonzero(noise)
    for _ in range(NOISE_REDRAWS + 1):
        if not len(redraw):
            break
        draw = np.searchsorted(cat.noise_cdf, rng.random(len(redraw)), side="right")
        item[redraw] = np.minimum(draw, cfg.items - 1)
        key[redraw] = user[redraw].astype(np.int64) * cfg.items + item[redraw]
        at = np.minimum(np.searchsorted(settled, key[redraw]), max(len(settled) - 1, 0))
        clash = settled[at] == key[redraw] if len(settled) else np.zeros(len(redraw), bool)
        _, first = np.unique(key[redraw], return_index=True)
        repeat = np.ones(len(redraw), dtype=bool)
        repeat[first] = False  # the earliest of equal new draws is kept
        ok = ~clash & ~repeat
        settled = np.sort(np.concatenate([settled, np.sort(key[redraw[ok]])]), kind="stable")  # 2 runs
        redraw = redraw[~ok]
    keep = np.ones(E, dtype=bool)
    keep[redraw] = False  # still a repeat after every redraw: dropped
    user, item, interest, phase, e_idx = user[keep], item[keep], interest[keep], phase[keep], e_idx[keep]
    E = len(user)
    n = np.bincount(user, minlength=B)
    user_start = np.concatenate([[0], np.cumsum(n)])[:-1]
    e_idx = np.arange(E) - user_start[user]

    # Time: sessions of a few minutes, days apart; a phase starts a session; strictly increasing.
    u = rng.random(E)
    new_session = (u < 1.0 / max(cfg.session_events, 1.0)) | (e_idx == 0)
    new_session[1:] |= (phase[1:] != phase[:-1]) & (user[1:] == user[:-1])
    in_session = np.maximum(1, np.round(cfg.event_gap_seconds * rng.lognormal(0.0, 0.7, size=E)))
    between = np.round(cfg.session_gap_days * synth._DAY * rng.lognormal(0.0, 1.0, size=E))
    gaps = np.where(new_session, between, in_session).astype(np.int64)
    gaps[e_idx == 0] = 0
    first = e_idx == 0
    offsets = _group_scan(gaps, first, np.add)  # (E,) seconds after the user's first event
    window = synth._EPOCH_2021 - synth._EPOCH_2015 - 1
    last = np.maximum(n - 1, 0)
    span = np.zeros(B, dtype=np.int64)
    has = n > 0
    span[has] = offsets[user_start[has] + last[has]]
    squeeze = span > window  # a very long history is squeezed into the window, keeping order
    if squeeze.any():
        factor = np.where(squeeze, (window - n) / np.maximum(span, 1), 1.0)[user]
        squeezed = np.floor(offsets * factor).astype(np.int64) + e_idx
        offsets = np.where(squeeze[user], squeezed, offsets)
        span[has] = offsets[user_start[has] + last[has]]
    latest = np.maximum(0, window - span)
    start = synth._EPOCH_2015 + rng.integers(0, np.minimum(latest, 4 * 365 * synth._DAY) + 1)  # (B,)
    timestamp = start[user] + offsets

    bias = rng.normal(0.0, 0.4, size=B)[user]
    raw = np.where(interest >= 0, 3.8, 3.0) + bias + rng.normal(0.0, 0.8, size=E)
    rating = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)
    return pd.DataFrame(
        {
            "user": user,
            "item": item,
            "timestamp": timestamp,
            "phase": phase,
            "interest": interest,
            "rating": rating,
        }
    )


def generate_chunks(
    config: SynthConfig, progress: ProgressCallback | None = None, chunk_users: int = CHUNK_USERS
) -> tuple[_Catalog, Iterator[pd.DataFrame]]:
    """The catalog, and the log as frames of ``chunk_users`` users each (columns ``userId``, ``movieId``,
    ``rating``, ``timestamp``, ``phase``, ``interest``; sorted by userId, then movieId, then time)."""
    cfg = config
    cfg.validate()
    progress = progress or no_progress
    rng = np.random.default_rng(cfg.seed)
    cat = _catalog(rng, cfg)
    n_events = synth._activity(rng, cfg)  # (U,)
    n_chunks = math.ceil(cfg.users / chunk_users)
    streams = np.random.SeedSequence(cfg.seed).spawn(n_chunks)

    def chunks() -> Iterator[pd.DataFrame]:
        for k in range(n_chunks):
            lo, hi = k * chunk_users, min(cfg.users, (k + 1) * chunk_users)
            frame = _chunk(cfg, cat, np.random.default_rng(streams[k]), n_events[lo:hi])
            users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
            order = np.argsort(users * cfg.items + cat.item_rank_by_id[items])  # by (user, movieId)
            frame = pd.DataFrame(
                {
                    "userId": users[order] + lo + 1,
                    "movieId": cat.movie_ids[items[order]],
                    "rating": frame["rating"].to_numpy()[order],
                    "timestamp": frame["timestamp"].to_numpy()[order],
                    "phase": frame["phase"].to_numpy()[order],
                    "interest": frame["interest"].to_numpy()[order],
                }
            )
            progress(ProgressEvent("synth", hi, cfg.users, f"user {hi:,}/{cfg.users:,}"))
            yield frame

    return cat, chunks()


def _append_csv(fh, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """Append ``frame``'s ``columns`` as CSV rows (no header, LF, ratings as ``4.5``) with pyarrow."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    arrays = {}
    for col in columns:
        values = frame[col].to_numpy()
        if col == "rating":  # half steps 0.5..5.0 as the exact generator writes them ("%.1f")
            codes = (np.round(values * 2).astype(np.int8) - 1).clip(0, 9)
            arrays[col] = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(_RATING_LABELS))
        else:
            arrays[col] = pa.array(values)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    pacsv.write_csv(pa.table(arrays), fh, options)


def write_bulk(
    out_dir: str | Path,
    config: SynthConfig,
    *,
    ground_truth: bool = True,
    progress: ProgressCallback | None = None,
    chunk_users: int = CHUNK_USERS,
) -> Path:
    """Write a large synthetic log (module docstring) chunk by chunk; all or nothing, like
    :func:`msli_core.data.synth.write_synthetic`. Returns the output folder."""
    from msli_core import limits

    cfg = config
    cfg.validate()
    most = limits.scaled(MAX_BULK_INTERACTIONS)
    if cfg.interactions > most:
        raise MsliError(
            f"--interactions {cfg.interactions:,} is above the limit of {most:,} for the bulk generator "
            "(MSLI_LIMITS_SCALE raises it)."
        )
    out = check_out_dir(out_dir, "synth")
    cat, chunks = generate_chunks(cfg, progress, chunk_users)
    rating_cols = ("userId", "movieId", "rating", "timestamp")
    truth_cols = ("userId", "movieId", "timestamp", "phase", "interest")
    total, users, movies_used = 0, 0, np.zeros(cfg.items + 1, dtype=bool)
    movie_index = np.zeros(int(cat.movie_ids.max()) + 1, dtype=np.int64)
    movie_index[cat.movie_ids] = np.arange(len(cat.movie_ids))
    with atomic_output_dir(out, kind="synth") as tmp:
        truth_fh = (tmp / "ground_truth.csv").open("wb") if ground_truth else None
        try:
            with (tmp / "ratings.csv").open("wb") as ratings_fh:
                ratings_fh.write((",".join(rating_cols) + "\n").encode())
                if truth_fh is not None:
                    truth_fh.write((",".join(truth_cols) + "\n").encode())
                for frame in chunks:
                    _append_csv(ratings_fh, frame, rating_cols)
                    if truth_fh is not None:
                        _append_csv(truth_fh, frame, truth_cols)
                    total += len(frame)
                    users += int(frame["userId"].nunique())
                    movies_used[movie_index[frame["movieId"].to_numpy()]] = True
        finally:
            if truth_fh is not None:
                truth_fh.close()
        (tmp / "movies.csv").write_bytes(synth._csv_bytes(cat.movies))
        meta = {
            "generator": "msli_core.data.synth_bulk",
            "config": dataclasses.asdict(cfg),
            "ground_truth": ground_truth,
            "users": users,
            "items": int(movies_used.sum()),
            "catalog": len(cat.movies),
            "interactions": total,
            "interests": synth._rounded(cat.interests.to_dict(orient="records")),
        }
        (tmp / "synth_config.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out
