"""First stage for the re-ranker experiments (ce2.py): MS-LI K=4 trained with the project's `train()`,
on all users or on one half of them (cross-fitting: `--half 0|1` trains on users with id % 2 == half;
the other half's training sequences are hidden, so its prefixes are unseen by this model).
Saves the model folder (registry.save_model) and the state after every epoch (earlier checkpoints)."""

import argparse
import copy
import json
import time
from dataclasses import dataclass

import numpy as np
import torch

torch.set_num_threads(1)
from msli_core import train as T
from msli_core.data.dataset import LeaveOneOutSplit, leave_one_out
from msli_core.data.formats import load_dataset
from msli_core.models.registry import save_model

p = argparse.ArgumentParser()
p.add_argument("--data", default="/work/data/ml-100k")
p.add_argument("--out", required=True)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--half", type=int, default=-1)
p.add_argument("--segments", type=int, default=4)
a = p.parse_args()

data = load_dataset(a.data)
split = leave_one_out(data)


@dataclass(frozen=True)
class HalfSplit(LeaveOneOutSplit):
    half: int = 0

    def train_sequence(self, user: int) -> np.ndarray:
        seq = super().train_sequence(user)
        return seq if user % 2 == self.half else seq[:0]


if a.half >= 0:
    split = HalfSplit(data, split.eval_users[split.eval_users % 2 == a.half], a.half)

states = []
orig = T._valid_metrics


def spy(model, kind, data_, split_, first_stage, settings):
    states.append(copy.deepcopy(model.state_dict()))
    return orig(model, kind, data_, split_, first_stage, settings)


T._valid_metrics = spy
t0 = time.time()
r = T.train(data, "msli", seed=a.seed, split=split, segments=a.segments, evaluate_test=a.half < 0)
sec = time.time() - t0
save_model(r.model, a.out, data=data, metrics=r.metrics)
torch.save(states, f"{a.out}.epochs.pt")
row = dict(seed=a.seed, half=a.half, best_epoch=r.best_epoch, epochs=r.epochs,
           valid=r.valid_metrics["NDCG@10"], test=r.metrics.get("NDCG@10"), seconds=round(sec, 1),
           history=[(h["epoch"], round(h["valid_NDCG@10"], 4)) for h in r.history])
print(json.dumps(row))
with open(f"{a.out}/result.json", "w") as f:
    json.dump(row, f)
