# One attention query for both open slots (the encoder's), a lead for the training cost: with q_rec = q_enc
# the two open slots' logits differ only by their biases, so their mix is global rather than per candidate
# and the loss needs the one-open-slot model's products. python shared_open_query.py DATA SEED [K]; one thread.
import json
import sys
import time

import torch

from msli_core.data.dataset import leave_one_out
from msli_core.data.formats import load_dataset
from msli_core.models import registry
from msli_core.models.msli import MSLIModel
from msli_core.train import TrainSettings, train

torch.set_num_threads(1)
path, seed = sys.argv[1], int(sys.argv[2])
K = int(sys.argv[3]) if len(sys.argv) > 3 else 4


class SharedOpenQuery(MSLIModel):
    def open_queries(self, open_vectors):  # (..., 2, d): slot K-1 takes slot K-2's query
        q = super().open_queries(open_vectors)
        return q[..., :1, :].expand_as(q)

    def attention_queries(self, segment_vectors):  # (..., K, d), the same at inference
        q = super().attention_queries(segment_vectors)
        return torch.cat([q[..., :-1, :], q[..., -2:-1, :]], dim=-2)


registry._MODELS["msli"] = SharedOpenQuery
data = load_dataset(path)
split = leave_one_out(data)
t = time.time()
r = train(data, "msli", TrainSettings.for_kind("msli", seed=seed), {"segments": K}, split=split)
out = {"data": path, "seed": seed, "K": K, "test": round(r.metrics["NDCG@10"], 4),
       "valid": round(r.valid_metrics["NDCG@10"], 4), "best": r.best_epoch, "s": round(time.time() - t, 1),
       "age_bias": [round(float(x), 3) for x in r.model.age_bias.detach()]}
print(json.dumps(out), flush=True)
