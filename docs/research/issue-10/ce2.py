"""Cross-encoder re-ranker experiments (issue 10): can it beat its first stage (MS-LI K=4) on ML-100K?

The first stage `--first DIR` (a model folder from fs.py) is what the cascade re-ranks at validation and
test (project `evaluate(..., cascade_from=first)`). Training examples are the last `--last` training
positions of every user (history s[:t] -> s[t]); each epoch samples `--cuts` of them per user. Their
hard negatives and residual first-stage scores come from `--mine`:
  full   the same first stage (it trained on these very prefixes: the suspected problem)
  cross  cross-fitting: user u's prefixes are scored by the half model (fs.py --half) that did NOT
         train on u (`--halves DIR0 DIR1`, trained on users with id % 2 == 0 / 1)
  ckptE  the first stage's state after epoch E (less fitted)
`--cooc 1` gives every history token its item-kNN co-occurrence similarity with the candidate (an input
feature the transformer can attend over); for training prefixes it is computed from the other users'
sequences only (the user's own co-occurrences removed), which is exactly what test prefixes see.
"""

import argparse
import copy
import json
import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)
from msli_core.data.dataset import leave_one_out, pad_right_aligned
from msli_core.data.formats import load_dataset
from msli_core.evaluate import evaluate, mask_seen, worst_if_not_finite
from msli_core.models.cross_encoder import CrossEncoder, CrossEncoderConfig
from msli_core.models.registry import load_model

p = argparse.ArgumentParser()
p.add_argument("--data", default="/work/data/ml-100k")
p.add_argument("--first", required=True)
p.add_argument("--mine", default="full")
p.add_argument("--halves", nargs=2, default=None)
p.add_argument("--last", type=int, default=20)
p.add_argument("--cuts", type=int, default=3)
p.add_argument("--hard", type=int, default=16)
p.add_argument("--uniform", type=int, default=8)
p.add_argument("--top", type=int, default=100)
p.add_argument("--L", type=int, default=20)
p.add_argument("--epochs", type=int, default=6)
p.add_argument("--patience", type=int, default=2)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--dropout", type=float, default=0.2)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--cooc", type=int, default=0)
p.add_argument("--window", type=int, default=3)
p.add_argument("--valid-top", type=int, default=50)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--tag", default="")
p.add_argument("--cand-feat", type=int, default=0)
p.add_argument("--alpha-fast", type=int, default=1)
p.add_argument("--alpha-fit", type=int, default=1)
p.add_argument("--head-lr", type=float, default=10.0)
a = p.parse_args()
t_start = time.time()
CAND_FEAT = a.cand_feat
torch.manual_seed(a.seed)
rng = np.random.default_rng(a.seed)
data = load_dataset(a.data)
split = leave_one_out(data)
N = data.n_items
first = load_model(a.first, data).model.eval()


# ---- co-occurrence (item-kNN's statistic, dense: N is small here) -------------------------------------
def cooc_matrix(seqs, n, w):
    rows, cols = [], []
    for s in seqs:
        for o in range(1, w + 1):
            if len(s) > o:
                rows += [s[:-o], s[o:]]
                cols += [s[o:], s[:-o]]
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    r, c = np.concatenate(rows), np.concatenate(cols)
    k = r != c
    m = sp.coo_matrix((np.ones(k.sum(), np.float32), (r[k], c[k])), shape=(n, n)).tocsr()
    m.sum_duplicates()
    return m


train_seqs = {u: split.train_sequence(u) for u in range(1, data.n_users + 1)}
C_all = cooc_matrix([s for s in train_seqs.values() if len(s) >= 2], N + 1, a.window).toarray()
n_all = np.bincount(np.concatenate(list(train_seqs.values())), minlength=N + 1).astype(np.float32)


class CooCE(CrossEncoder):
    """Project CrossEncoder + per-history-token co-occurrence feature with the candidate."""

    def __init__(self, config, cooc):
        super().__init__(config)
        self.cooc = cooc
        if cooc:
            self.register_buffer("C", torch.as_tensor(C_all))
            self.register_buffer("n", torch.as_tensor(n_all))
            self.sim_proj = nn.Linear(2, config.dim)
            self.cand_proj = nn.Linear(2, config.dim)
            nn.init.normal_(self.cand_proj.weight, std=0.02)
            nn.init.zeros_(self.cand_proj.bias)
            nn.init.normal_(self.sim_proj.weight, std=0.02)
            nn.init.zeros_(self.sim_proj.bias)
        self._pair_feats = None  # (P, L, 2) override for training (leave-user-out statistics)

    def feats(self, hist, cand):  # (P, L), (P,) -> (P, L, 2) from the full statistics
        c = self.C[hist, cand.unsqueeze(1)]
        sim = c / torch.sqrt(self.n[hist].clamp(min=1) * self.n[cand].clamp(min=1).unsqueeze(1))
        return torch.stack([sim * 10, torch.log1p(c)], -1) * (hist > 0).unsqueeze(-1)

    def pair_scores(self, histories, candidates, table):
        L = histories.shape[1]
        tokens = torch.cat([histories, candidates.unsqueeze(1)], dim=1)
        x = table[tokens] + self.positions.weight[self.config.max_len - L :]
        x = x + self.types.weight[(torch.arange(L + 1) == L).long()]
        if self.cooc:
            f = self._pair_feats if self._pair_feats is not None else self.feats(histories, candidates)
            cf = x.new_zeros(x.shape[0], 1, x.shape[2])
            if CAND_FEAT:  # item-kNN's vote (last 5, decay 0.7) and the mean similarity, on the candidate token
                w = (0.7 ** torch.arange(L - 1, -1, -1, dtype=x.dtype)) * (torch.arange(L) >= L - 5)
                g = torch.stack([(f[..., 0] * w).sum(1), f[..., 0].mean(1)], -1)
                cf = self.cand_proj(g).unsqueeze(1)
            x = torch.cat([x[:, :L] + self.sim_proj(f), x[:, L:] + cf], 1)
        key_mask = tokens > 0
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, causal=False, key_mask=key_mask)
        return self.head(self.ln_f(x[:, -1])).squeeze(-1)


cfg = CrossEncoderConfig(n_items=N, n_genres=max(1, len(data.genre_names)), max_len=a.L, dropout=a.dropout)
model = CooCE(cfg, a.cooc)
model.set_item_features(data)
mine_items, theirs = model.items.state_dict(), first.items.state_dict()
if mine_items.keys() == theirs.keys():
    model.items.load_state_dict(theirs)

# ---- training examples and their mined candidates ----------------------------------------------------
miners = {}
if a.mine == "full":
    miner_of = lambda u: first
elif a.mine == "cross":
    h = [load_model(d, data).model.eval() for d in a.halves]
    miner_of = lambda u: h[1 - u % 2]  # half k trained on users with id % 2 == k
elif a.mine.startswith("ckpt"):
    e = int(a.mine[4:])
    m = copy.deepcopy(first)
    m.load_state_dict(torch.load(f"{a.first}.epochs.pt")[e - 1])
    m.eval()
    miner_of = lambda u: m
else:
    raise SystemExit(a.mine)

ex_user, ex_t = [], []
for u in range(1, data.n_users + 1):
    s = train_seqs[u]
    for t in range(max(1, len(s) - a.last), len(s)):
        ex_user.append(u)
        ex_t.append(t)
ex_user, ex_t = np.array(ex_user), np.array(ex_t)
P = len(ex_user)
scores = torch.empty(P, N + 1)
with torch.no_grad():
    for key in sorted({id(miner_of(u)) for u in np.unique(ex_user)}):
        idx = np.array([i for i in range(P) if id(miner_of(int(ex_user[i]))) == key])
        m = miner_of(int(ex_user[idx[0]]))
        for lo in range(0, len(idx), 256):
            b = idx[lo : lo + 256]
            hs = [train_seqs[int(ex_user[i])][: ex_t[i]] for i in b]
            ts = [data.timestamps[int(ex_user[i])][: ex_t[i]] for i in b]
            sc = mask_seen(worst_if_not_finite(m.score_histories(hs, ts).float()), hs)
            scores[torch.as_tensor(b)] = sc
positives = torch.as_tensor(np.array([train_seqs[int(u)][t] for u, t in zip(ex_user, ex_t)]))
pos_rank = (scores >= scores.gather(1, positives.view(-1, 1))).sum(1) - 1
print(json.dumps({"examples": P, "mine": a.mine, "pos_rank_median": float(pos_rank.float().median()),
                  "pos_in_top10": float((pos_rank < 10).float().mean()),
                  "pos_in_top100": float((pos_rank < 100).float().mean()),
                  "prep_s": round(time.time() - t_start, 1)}), flush=True)
pool = scores.scatter(1, positives.view(-1, 1), float("-inf")).topk(a.top, 1).indices  # (P, top)

# leave-user-out co-occurrence per user (sparse, own sequence only)
own_C = {}
own_n = {}
if a.cooc:
    for u, s in train_seqs.items():
        own_C[u] = cooc_matrix([s], N + 1, a.window) if len(s) >= 2 else sp.csr_matrix((N + 1, N + 1))
        own_n[u] = np.bincount(s, minlength=N + 1).astype(np.float32)


def train_feats(users, hist, cand):  # (P,), (P, L), (P,) -> (P, L, 2), the user's own pairs removed
    c = C_all[hist, cand[:, None]].copy()
    nh, nc = n_all[hist].copy(), n_all[cand].copy()
    for i, u in enumerate(users):
        c[i] -= np.asarray(own_C[u][hist[i], np.full(hist.shape[1], cand[i])]).ravel()
        nh[i] -= own_n[u][hist[i]]
        nc[i] -= own_n[u][cand[i]]
    sim = c / np.sqrt(np.maximum(nh, 1) * np.maximum(nc, 1)[:, None])
    f = np.stack([sim * 10, np.log1p(c)], -1) * (hist > 0)[..., None]
    return torch.as_tensor(f, dtype=torch.float32)


by_user = {}
for i, u in enumerate(ex_user):
    by_user.setdefault(int(u), []).append(i)
users = np.array(sorted(by_user))


def loss_of(batch_users):
    idx = np.array([i for u in batch_users for i in rng.choice(by_user[u], min(a.cuts, len(by_user[u])), replace=False)])
    it = torch.as_tensor(idx)
    hard = pool[it].gather(1, torch.as_tensor(rng.integers(0, a.top, size=(len(idx), a.hard))))
    uni = torch.as_tensor(rng.integers(1, N + 1, size=(len(idx), a.uniform)))
    cand = torch.cat([positives[it].view(-1, 1), hard, uni], 1)  # (B, C)
    fs = scores[it].gather(1, cand)
    bad = ~torch.isfinite(fs)
    bad[:, 0] = False
    fs = torch.where(torch.isfinite(fs), fs, 0.0)
    hists = [train_seqs[int(ex_user[i])][: ex_t[i]] for i in idx]
    hist = torch.as_tensor(pad_right_aligned(hists, a.L))
    if a.cooc:
        B, Cn = cand.shape
        ph = hist.unsqueeze(1).expand(B, Cn, a.L).reshape(-1, a.L).numpy()
        pc = cand.reshape(-1).numpy()
        pu = np.repeat(ex_user[idx], Cn)
        model._pair_feats = train_feats(pu, ph, pc)
    out = model.score(hist, cand, fs).masked_fill(bad, float("-inf"))
    model._pair_feats = None
    return F.cross_entropy(out, torch.zeros(len(idx), dtype=torch.long))


def valid():
    return evaluate(model, data, split, "valid", cascade_from=first, cascade_top=a.valid_top)


if a.alpha_fit:  # temperature of the first-stage scores on the (mined) training candidate sets
    with torch.no_grad():
        idx = np.array([i for u in users for i in rng.choice(by_user[u], min(a.cuts, len(by_user[u])), replace=False)])
        it = torch.as_tensor(idx)
        hard = pool[it].gather(1, torch.as_tensor(rng.integers(0, a.top, size=(len(idx), a.hard))))
        uni = torch.as_tensor(rng.integers(1, N + 1, size=(len(idx), a.uniform)))
        cand = torch.cat([positives[it].view(-1, 1), hard, uni], 1)
        fs = scores[it].gather(1, cand)
        grid = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5]
        ls = [float(F.cross_entropy(torch.where(torch.isfinite(fs), g * fs, -1e9), torch.zeros(len(idx), dtype=torch.long))) for g in grid]
        alpha = grid[int(np.argmin(ls))]
        model.first_stage_weight.fill_(alpha)
        print(json.dumps({"alpha_grid": dict(zip(grid, [round(x, 3) for x in ls])), "alpha": alpha}), flush=True)
fast = [model.head.weight, model.head.bias] + ([model.first_stage_weight] if a.alpha_fast else [])
slow = [q for q in model.parameters() if all(q is not f for f in fast)]
opt = torch.optim.AdamW([{"params": slow, "lr": a.lr, "base": a.lr}, {"params": fast, "lr": a.lr * a.head_lr, "base": a.lr * a.head_lr}], weight_decay=a.wd)
model.eval()
v0 = valid()
best = (v0["NDCG@10"], 0, copy.deepcopy(model.state_dict()))
hist_rows = [(0, round(v0["NDCG@10"], 4))]
print(json.dumps({"epoch": 0, "valid": v0["NDCG@10"]}), flush=True)
fit_start = time.time()
CAND_FEAT = a.cand_feat
steps_per_epoch = int(np.ceil(len(users) / a.batch))
step = 0
for ep in range(1, a.epochs + 1):
    model.train()
    order = rng.permutation(users)
    losses = []
    for lo in range(0, len(order), a.batch):
        for g in opt.param_groups:
            g["lr"] = g["base"] * min(1.0, (step + 1) / steps_per_epoch)
        opt.zero_grad()
        loss = loss_of(order[lo : lo + a.batch])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(loss.item())
    model.eval()
    v = valid()
    hist_rows.append((ep, round(v["NDCG@10"], 4)))
    print(json.dumps({"epoch": ep, "loss": float(np.mean(losses)), "valid": v["NDCG@10"],
                      "alpha": float(model.first_stage_weight.detach()), "s": round(time.time() - fit_start, 1)}), flush=True)
    if v["NDCG@10"] > best[0]:
        best = (v["NDCG@10"], ep, copy.deepcopy(model.state_dict()))
    if ep - best[1] >= a.patience:
        break
train_s = time.time() - t_start
model.load_state_dict(best[2])
model.eval()
test = evaluate(model, data, split, "test", cascade_from=first, cascade_top=100)
first_test = evaluate(first, data, split, "test")
row = dict(tag=a.tag, args=vars(a), best_epoch=best[1], valid=best[0], valid0=v0["NDCG@10"], test=test["NDCG@10"],
           test_hr=test["HR@10"], first_test=first_test["NDCG@10"], train_s=round(train_s, 1), history=hist_rows)
print("RESULT " + json.dumps(row), flush=True)
with open("/work/exp/ce2/results.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
