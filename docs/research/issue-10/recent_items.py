# python recent_items.py DATA SEED K M: the package's MS-LI with recent_items = M, one thread; test and
# validation NDCG@10, the learned r_j and (with a ground truth) explanation accuracy. Run with PYTHONPATH at
# the checkout to measure (a worktree with another default, for example).
import sys, json, time
import torch
torch.set_num_threads(1)
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import TrainSettings, train
path, seed, K, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = load_dataset(path); split = leave_one_out(data)
t = time.time()
r = train(data, "msli", TrainSettings.for_kind("msli", seed=seed), {"segments": K, "recent_items": m}, split=split)
out = {"data": path, "seed": seed, "K": K, "m": m, "test": round(r.metrics["NDCG@10"], 4),
       "valid": round(r.valid_metrics["NDCG@10"], 4), "best": r.best_epoch, "s": round(time.time() - t, 1),
       "r": [round(float(x), 3) for x in r.model.recent_weights.detach()]}
if data.truth is not None:
    from msli_core.explain import explanation_accuracy
    acc = explanation_accuracy(r.model, data, split)
    out["explanation"] = {k: acc[k] for k in ("accuracy", "chance", "users", "closed_accuracy", "closed_chance", "closed_users")}
print(json.dumps(out), flush=True)
