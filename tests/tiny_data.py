"""A tiny planted dataset for the model tests (independent of the sample_data generator).

Each user lives through 2-3 interest phases; an interest is a block of items sharing a genre, and the
last event sometimes returns to an earlier interest. Ground truth (phase, interest) is attached like
the synthetic generator does, so explanation code can be tested without sample_data/.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from msli_core.data.dataset import build_dataset

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def make_tiny_dataset(users: int = 40, items: int = 60, events: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_interests = len(GENRES)
    interest_of_item = np.arange(items) % n_interests  # item j (0-based) belongs to interest j % 6
    rows, truth = [], []
    for u in range(users):
        phases = rng.choice(n_interests, size=rng.integers(2, 4), replace=False)
        length = events + int(rng.integers(0, 8))
        cut = np.sort(rng.choice(np.arange(3, length - 3), size=len(phases) - 1, replace=False))
        phase_of_event = np.searchsorted(cut, np.arange(length), side="right")
        if rng.random() < 0.3:  # a return to the first interest at the very end
            phase_of_event[-1] = 0
        t = 1_000_000 + u * 10_000
        seen: set[int] = set()
        for e in range(length):
            p = int(phase_of_event[e])
            interest = int(phases[p])
            pool = [j for j in np.flatnonzero(interest_of_item == interest) if j not in seen]
            if not pool:  # the interest is exhausted: any unseen item (nobody rates a movie twice)
                pool = [j for j in range(items) if j not in seen]
            item = int(rng.choice(pool))
            seen.add(item)
            t += int(rng.integers(60, 600))
            rows.append((f"u{u + 1}", f"m{item + 1}", t, 4.0))
            truth.append((p, interest))
    raw = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    meta = pd.DataFrame(
        {
            "item": [f"m{j + 1}" for j in range(items)],
            "title": [f"Movie {j + 1} ({1980 + j % 30})" for j in range(items)],
            "year": [1980 + j % 30 for j in range(items)],
            "genres": [GENRES[interest_of_item[j]] for j in range(items)],
        }
    )
    truth_frame = pd.DataFrame(truth, columns=["phase", "interest"])
    return build_dataset(raw, items_meta=meta, format="synthetic", source="tiny", truth=truth_frame)
