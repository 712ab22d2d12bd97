# The open window as two late-interaction slots: python recency_slot.py DATA SEED MODE
# MODE=attn: the encoder's share W_o h_t and the recency path Σ r_j e(x_{t-j}) are two user vectors, mixed per
# candidate by the attention aggregation, y = 2·(a s_enc + (1 - a) s_rec) with a = σ(l_enc - l_rec),
# l = <W u, e_c> + b (the model's own query W; ×2 keeps the sum's scale at a = 1/2). Every score is still
# an exact sum of two contributions. MODE=sum: y = s_enc + s_rec, the two-tower model itself (a check of
# this harness: it reproduces the README's two-tower figures to the last digit).
# K = 1 (no closed slot), README defaults, full softmax through the plain (non-fused) loss; one thread.
import sys, json, time
import torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
import msli_core.train as train_mod
from msli_core.models import registry
from msli_core.models.msli import MSLIModel
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import TrainSettings, train

path, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class RecencySlot(MSLIModel):
    def __init__(self, config):
        super().__init__(config)
        self.slot_bias = nn.Parameter(torch.zeros(2))  # b_enc, b_rec

    def two_slots(self, window, table):  # (B, T) ids -> W_o h_t, recency path: (B, T, d) each
        return self.open_out(self.encoder(table[window])), self.recent_path(window, table)

    def mix(self, enc, rec, items):  # (..., d), (..., d), (C, d) -> (..., C)
        s_enc, s_rec = enc @ items.T, rec @ items.T
        if mode == "sum":
            return s_enc + s_rec
        l_enc = self.query(enc) @ items.T + self.slot_bias[0]
        l_rec = self.query(rec) @ items.T + self.slot_bias[1]
        a = torch.sigmoid(l_enc - l_rec)  # the encoder slot's attention weight; the recency slot's is 1 - a
        return 2 * (s_rec + a * (s_enc - s_rec))

    def score_histories(self, histories, timestamps=None):
        batch = self.segment_batch(histories, timestamps)
        table = self.item_table()
        window = torch.as_tensor(batch.window)  # (B, W)
        enc, rec = self.two_slots(window, table)
        last = ((window > 0).sum(1) - 1).clamp(min=0)
        rows = torch.arange(window.shape[0])
        return self.mix(enc[rows, last], rec[rows, last], table)  # (B, N+1)


def loss(model, batch, *, candidates=None, log_q=None, reference=False):  # full softmax over items 1..N
    table = model.item_table()
    items = table[1:]
    target_cols = torch.where(batch.targets > 0, batch.targets - 1, -1)  # (B, T)
    enc, rec = model.two_slots(batch.window, table)
    scores = model.mix(enc, rec, items)  # (B, T, N)
    return F.cross_entropy(scores.reshape(-1, items.shape[0]), target_cols.reshape(-1), ignore_index=-1)


train_mod.late_interaction_loss = loss
registry._MODELS["two-tower"] = RecencySlot
data = load_dataset(path); split = leave_one_out(data)
t = time.time()
r = train(data, "two-tower", TrainSettings.for_kind("two-tower", seed=seed), split=split)
print(json.dumps({"mode": mode, "data": path, "seed": seed, "test": round(r.metrics["NDCG@10"], 4),
                  "valid": round(r.valid_metrics["NDCG@10"], 4), "best": r.best_epoch, "s": round(time.time() - t, 1),
                  "slot_bias": [round(float(x), 3) for x in r.model.slot_bias.detach()],
                  "curve": [round(h["valid_NDCG@10"], 4) for h in r.history]}), flush=True)
