"""Do MS-LI's closed slots help at inference? (issue 10; research script, not part of the package)

Trains MS-LI K=4 with the project's `train()` (README defaults, one thread, a seed), then on the test
split: NDCG@10 of the users with and without closed slots (histories over L_max = 200 events), the
same with the closed slots masked at inference (the open slot alone), and a grid of offsets δ added to
the closed slots' age bias (δ = -30: effectively masked), with validation NDCG@10 beside test and, on
data with ground truth, explanation accuracy / chance.

    PYTHONPATH=. python docs/research/issue-10/closed_slots.py DATA SEED
"""

import json
import sys

import numpy as np
import torch

from msli_core.data.dataset import leave_one_out
from msli_core.data.formats import load_dataset
from msli_core.evaluate import rank_users
from msli_core.models import segmenter
from msli_core.train import TrainSettings, train

torch.set_num_threads(1)
data_path, seed = sys.argv[1], int(sys.argv[2])
data = load_dataset(data_path)
split = leave_one_out(data)
model = train(data, "msli", TrainSettings.for_kind("msli", seed=seed), {}, split=split).model


def ndcg(ranks):
    return np.where(ranks < 10, 1 / np.log2(ranks + 2), 0.0)


histories = split.batch(split.eval_users, "test")[0]
long = np.array([len(h) > model.config.max_len for h in histories])  # these have closed slots
full = ndcg(rank_users(model, split, "test")[0])
plain = model.segment_batch


def open_slot_only(h, t=None):
    b = plain(h, t)
    mask = b.mask.copy()
    mask[:, :-1] = False
    return segmenter.SegmentBatch(b.items, b.window, mask, b.start, b.end)


model.segment_batch = open_slot_only
masked = ndcg(rank_users(model, split, "test")[0])
model.segment_batch = plain
print(json.dumps({"long users": int(long.sum()), "users": len(long),
                  "full": [round(full[long].mean(), 4), round(full[~long].mean(), 4)],
                  "open slot only": [round(masked[long].mean(), 4), round(masked[~long].mean(), 4)]}))
base = model.age_bias.detach().clone()
K = len(base)
for delta in (0.0, -0.5, -1.0, -2.0, -4.0, -30.0):
    with torch.no_grad():
        model.age_bias.copy_(base)
        model.age_bias[: K - 1] += delta
    row = {"delta": delta, "valid": round(ndcg(rank_users(model, split, "valid")[0]).mean(), 4),
           "test": round(ndcg(rank_users(model, split, "test")[0]).mean(), 4)}
    if getattr(data, "truth", None) is not None:
        from msli_core.explain import explanation_accuracy

        row["explanation / chance"] = round(explanation_accuracy(model, data)["ratio"], 3)
    print(json.dumps(row))
