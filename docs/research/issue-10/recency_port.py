# The ported recency slot and the scalings tried while porting it: python recency_port.py DATA SEED K MODE
# MODE=package: msli_core as it is (open slots × c = 1/initial share; their queries read them without c);
# first: c = 1, r_j start at [1, .5, .5] / share instead (the first port); queries_c: × c in the vectors
# and in the queries too; enc_c: × c on the encoder's slot only, r_j start / share. One thread.
import sys, json, time
import torch
torch.set_num_threads(1)
from msli_core.models import registry
from msli_core.models.msli import MSLIModel
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import TrainSettings, train

path, seed, K, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


class Variant(MSLIModel):
    def __init__(self, config):
        super().__init__(config)
        self.c = self.open_scale
        if mode in ("first", "enc_c"):
            with torch.no_grad():
                self.recent_weights.div_(self.initial_share())
            self.open_scale = 1.0

    def open_vectors(self, window, table=None, kept_rows=None):
        v = super().open_vectors(window, table, kept_rows)  # (B, T, 2, d)
        if mode == "enc_c":
            return torch.cat([v[:, :, :1] * self.c, v[:, :, 1:]], 2)
        return v

    def attention_queries(self, vectors):
        return self.query(vectors) if mode == "queries_c" else super().attention_queries(vectors)

    def open_queries(self, vectors):
        return self.query(vectors) if mode == "queries_c" else super().open_queries(vectors)


if mode != "package":
    registry._MODELS["msli"] = Variant
data = load_dataset(path); split = leave_one_out(data)
t = time.time()
r = train(data, "msli", TrainSettings.for_kind("msli", seed=seed), {"segments": K, "recency_slot": True}, split=split)
out = {"mode": mode, "data": path, "seed": seed, "K": K, "test": round(r.metrics["NDCG@10"], 4),
       "valid": round(r.valid_metrics["NDCG@10"], 4), "best": r.best_epoch, "s": round(time.time() - t, 1),
       "age_bias": [round(float(x), 3) for x in r.model.age_bias.detach()]}
if data.truth is not None:
    from msli_core.explain import explanation_accuracy
    acc = explanation_accuracy(r.model, data, split)
    out["explanation"] = {k: acc[k] for k in ("accuracy", "chance", "users", "closed_accuracy", "closed_chance",
                                              "closed_users")}
print(json.dumps(out), flush=True)
