# Like state_dropout, but a dropped row loses the encoder's whole say: the open vector's share W_o h_t
# AND its closed slots, so dropped rows are the recency path alone in MS-LI as in the two-tower model:
# python row_dropout.py DATA KIND SEED P
import json, sys, time, torch
torch.set_num_threads(1)
import msli_core.models.msli as msli_mod
import msli_core.train as train_mod
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import train, TrainSettings

data_path, kind, seed, p = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
KEEP = {}


def open_vectors(self, window, table=None):
    table = self.item_table() if table is None else table
    shares = self.open_out(self.encoder(table[window]))  # (B, T, d)
    if self.training and p > 0:
        keep = torch.rand(shares.shape[0]) >= p  # (B,)
        KEEP["rows"] = keep
        shares = shares * keep.view(-1, 1, 1).to(shares.dtype) / (1 - p)
    return shares + self.recent_path(window, table)


_closed_statistics = train_mod.closed_statistics


def closed_statistics(scores, logits, valid, bias):
    keep = KEEP.pop("rows", None)
    if keep is not None:
        valid = valid & keep.view(-1, *([1] * (valid.dim() - 1)))
    return _closed_statistics(scores, logits, valid, bias)


msli_mod.MSLIModel.open_vectors = open_vectors
train_mod.closed_statistics = closed_statistics
data = load_dataset(data_path); split = leave_one_out(data)
t = time.time()
r = train(data, kind, TrainSettings.for_kind(kind, seed=seed), {}, split=split)
out = {"tag": "row_dropout", "p": p, "kind": kind, "data": data_path, "seed": seed,
       "test": round(r.metrics["NDCG@10"], 4), "valid": round(r.valid_metrics["NDCG@10"], 4),
       "best": r.best_epoch, "epochs": r.epochs, "s": round(time.time() - t, 1),
       "curve": [round(h.get("valid_NDCG@10", float("nan")), 4) for h in r.history]}
if getattr(data, "truth", None) is not None and kind == "msli":
    from msli_core.explain import explanation_accuracy
    out.update(ratio=round(explanation_accuracy(r.model, data)["ratio"], 3))
print(json.dumps(out), flush=True)
