"""How much of item-kNN's vote survives a rank-d item table? (issue 10; research script, not part of the package)

Scores every test user with the co-occurrence start alone, no training: the item table of
`cooccurrence_embeddings(train sequences, N, d)` (E = V·sqrt(λ) of item-kNN's cosine similarity) and the
recency path's vote sum_j w_j <e(x_{t-j}), e_c>, with w = (1, .5, .5) (the model's start) or item-kNN's
decay 0.7^j over 5 items, at d = 64, 128, 256; item-kNN itself for reference.

    PYTHONPATH=/work/main python lowrank.py DATA_DIR
"""
import sys, numpy as np, torch
from torch import nn
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.models.baselines import cooccurrence_embeddings, ItemKNN, ItemKNNConfig
from msli_core.evaluate import evaluate
data = load_dataset(sys.argv[1]); split = leave_one_out(data)
seqs = split.train_sequences()
N = data.n_items
knn = ItemKNN(ItemKNNConfig(n_items=N)).fit(seqs)
print("knn", {s: round(evaluate(knn, data, split, s)["NDCG@10"], 4) for s in ("valid", "test")})
class LR(nn.Module):
    kind = "lowrank"
    def __init__(self, table, w): super().__init__(); self.t = torch.as_tensor(table); self.w = w
    def score_histories(self, hs, ts=None):
        out = torch.zeros(len(hs), self.t.shape[0])
        for b, h in enumerate(hs):
            v = sum(wj * self.t[h[-1 - j]] for j, wj in enumerate(self.w) if j < len(h))
            out[b] = self.t @ v
        return out
for dim in (64, 128, 256):
    table = cooccurrence_embeddings(seqs, N, dim)
    for w in ([1, .5, .5], [1, .7, .49, .343, .24]):
        m = LR(table, w)
        print(dim, w, {s: round(evaluate(m, data, split, s)["NDCG@10"], 4) for s in ("valid", "test")}, flush=True)
