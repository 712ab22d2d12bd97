# Train MS-LI / two-tower with the item id embeddings at `scale` x the learning rate (0 = frozen at the
# co-occurrence start): python item_lr.py DATA KIND SEED SCALE [DIM]
import json, sys, time, torch
torch.set_num_threads(1)
import msli_core.train as train_mod
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import train, TrainSettings

data_path, kind, seed, scale = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
dim = int(sys.argv[5]) if len(sys.argv) > 5 else 64


def _optimizer(model, kind, settings):
    ids = model.items.ids.weight
    rest = [p for p in model.parameters() if p is not ids]
    groups = [{"params": rest, "scale": 1.0}]
    if scale > 0:
        groups.append({"params": [ids], "scale": scale})
    else:
        ids.requires_grad_(False)
    return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)


train_mod._optimizer = _optimizer
data = load_dataset(data_path); split = leave_one_out(data)
t = time.time()
r = train(data, kind, TrainSettings.for_kind(kind, seed=seed), {"dim": dim}, split=split)
out = {"tag": "item_lr", "scale": scale, "dim": dim, "kind": kind, "data": data_path, "seed": seed,
       "test": round(r.metrics["NDCG@10"], 4), "valid": round(r.valid_metrics["NDCG@10"], 4),
       "best": r.best_epoch, "epochs": r.epochs, "s": round(time.time() - t, 1),
       "curve": [round(h.get("valid_NDCG@10", float("nan")), 4) for h in r.history]}
if getattr(data, "truth", None) is not None and kind == "msli":
    from msli_core.explain import explanation_accuracy
    acc = explanation_accuracy(r.model, data); out.update(ratio=round(acc["ratio"], 3))
print(json.dumps(out), flush=True)
