# Shared tail of item_lr.py, share_dropout.py and row_dropout.py: train one model with the project's
# train() (README defaults plus `config`) and print one JSON line with test / validation NDCG@10, the
# validation curve and, on data with a ground truth, MS-LI's explanation accuracy / chance.
import json, time
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import train, TrainSettings


def train_once(data_path, kind, seed, config, **tags):
    data = load_dataset(data_path); split = leave_one_out(data)
    t = time.time()
    r = train(data, kind, TrainSettings.for_kind(kind, seed=seed), config, split=split)
    out = {**tags, "kind": kind, "data": data_path, "seed": seed,
           "test": round(r.metrics["NDCG@10"], 4), "valid": round(r.valid_metrics["NDCG@10"], 4),
           "best": r.best_epoch, "epochs": r.epochs, "s": round(time.time() - t, 1),
           "curve": [round(h.get("valid_NDCG@10", float("nan")), 4) for h in r.history]}
    if getattr(data, "truth", None) is not None and kind == "msli":
        from msli_core.explain import explanation_accuracy
        out.update(ratio=round(explanation_accuracy(r.model, data)["ratio"], 3))
    print(json.dumps(out), flush=True)
