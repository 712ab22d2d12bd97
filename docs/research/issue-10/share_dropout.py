# Train with the encoder's share of the open vector (W_o h_t) dropped for whole rows with probability P
# in training, so the recency path must rank on its own: python share_dropout.py DATA KIND SEED P
import json, sys, time, torch
torch.set_num_threads(1)
import msli_core.models.msli as msli_mod
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import train, TrainSettings

data_path, kind, seed, p = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])


def open_vectors(self, window, table=None):
    table = self.item_table() if table is None else table
    states = self.open_out(self.encoder(table[window]))  # (B, T, d)
    if self.training and p > 0:
        keep = (torch.rand(states.shape[0], 1, 1) >= p).to(states.dtype) / (1 - p)
        states = states * keep
    return states + self.recent_path(window, table)


msli_mod.MSLIModel.open_vectors = open_vectors
data = load_dataset(data_path); split = leave_one_out(data)
t = time.time()
r = train(data, kind, TrainSettings.for_kind(kind, seed=seed), {}, split=split)
out = {"tag": "share_dropout", "p": p, "kind": kind, "data": data_path, "seed": seed,
       "test": round(r.metrics["NDCG@10"], 4), "valid": round(r.valid_metrics["NDCG@10"], 4),
       "best": r.best_epoch, "epochs": r.epochs, "s": round(time.time() - t, 1),
       "curve": [round(h.get("valid_NDCG@10", float("nan")), 4) for h in r.history]}
if getattr(data, "truth", None) is not None and kind == "msli":
    from msli_core.explain import explanation_accuracy
    out.update(ratio=round(explanation_accuracy(r.model, data)["ratio"], 3))
print(json.dumps(out), flush=True)
