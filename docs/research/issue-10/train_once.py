# Shared tail of item_lr.py, share_dropout.py, row_dropout.py and recent_items.py: train one model with
# the project's train() (README defaults plus `config`) and print one JSON line with test / validation
# NDCG@10, the validation curve and, on data with a ground truth, MS-LI's explanation accuracy / chance
# (all answerable users, and those with a closed segment); `report(model)` adds fields of its own.
import json, time
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import train, TrainSettings


def train_once(data_path, kind, seed, config, report=None, **tags):
    data = load_dataset(data_path); split = leave_one_out(data)
    t = time.time()
    r = train(data, kind, TrainSettings.for_kind(kind, seed=seed), config, split=split)
    out = {**tags, "kind": kind, "data": data_path, "seed": seed,
           "test": round(r.metrics["NDCG@10"], 4), "valid": round(r.valid_metrics["NDCG@10"], 4),
           "best": r.best_epoch, "epochs": r.epochs, "s": round(time.time() - t, 1),
           "curve": [round(h.get("valid_NDCG@10", float("nan")), 4) for h in r.history]}
    if getattr(data, "truth", None) is not None and kind == "msli":
        from msli_core.explain import explanation_accuracy
        acc = explanation_accuracy(r.model, data, split)
        out.update(ratio=round(acc["ratio"], 3),
                   explanation={k: acc[k] for k in ("accuracy", "chance", "users", "closed_accuracy",
                                                   "closed_chance", "closed_users")})
    if report is not None:
        out.update(report(r.model))
    print(json.dumps(out), flush=True)
