# Train MS-LI / two-tower with the item id embeddings at `scale` x the learning rate (0 = frozen at the
# co-occurrence start): python item_lr.py DATA KIND SEED SCALE [DIM]
import sys, torch
torch.set_num_threads(1)
import msli_core.train as train_mod
from train_once import train_once

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
train_once(data_path, kind, seed, {"dim": dim}, tag="item_lr", scale=scale, dim=dim)
