"""Cross-encoder trained as a re-ranker of the first stage (experimental MS-LI): hard negatives from the first
stage's top-k on the same prefix, mixed with uniform negatives; evaluated re-ranking the first stage's top-100."""
import sys, time, json, argparse, copy
import numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(1)
import exp
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out, pad_right_aligned
from msli_core.evaluate import evaluate
from msli_core.models.cross_encoder import CrossEncoder, CrossEncoderConfig
from msli_core.models.layers import item_features

p = argparse.ArgumentParser()
p.add_argument("--data", default="/work/data/ml-100k"); p.add_argument("--first", required=True)
p.add_argument("--K", type=int, default=4); p.add_argument("--S", type=int, default=None)
p.add_argument("--hard", type=int, default=8); p.add_argument("--uniform", type=int, default=8)
p.add_argument("--topk", type=int, default=100); p.add_argument("--cuts", type=int, default=4)
p.add_argument("--epochs", type=int, default=10); p.add_argument("--budget", type=float, default=300)
p.add_argument("--lr", type=float, default=1e-3); p.add_argument("--init", type=int, default=1)
p.add_argument("--residual", type=int, default=0); p.add_argument("--seed", type=int, default=1)
p.add_argument("--agg", default="attention"); p.add_argument("--segsrc", default="h")
p.add_argument("--L", type=int, default=50); p.add_argument("--patience", type=int, default=3)
a = p.parse_args()
exp.AGG, exp.SEGSRC = a.agg, a.segsrc
torch.manual_seed(a.seed); rng = np.random.default_rng(a.seed)
data = load_dataset(a.data); split = leave_one_out(data)
first = exp.Exp(data.n_items, max(1, len(data.genre_names)), K=a.K, S=a.S)
first.load_state_dict(torch.load(a.first)); first.eval()
ce = CrossEncoder(CrossEncoderConfig(n_items=data.n_items, n_genres=max(1, len(data.genre_names)), max_len=a.L))
g, yrs = item_features(data); ce.set_item_features(g, yrs) if False else ce.items.set_features(g, yrs)
if a.init:
    with torch.no_grad():
        for name in ("ids", "years"):
            getattr(ce.items, name).weight.copy_(getattr(first.items, name).weight)
        ce.items.genre_projection.weight.copy_(first.items.genre_projection.weight)

class Cascade(torch.nn.Module):
    """score(history, candidates) = cross-encoder (+ first-stage score if residual)."""
    kind = "cross-encoder"
    def __init__(s, ce, first, residual):
        super().__init__(); s.ce, s.first, s.residual = ce, first, residual; s.config = ce.config
        s.alpha = torch.nn.Parameter(torch.ones(()))
    def score(s, hist, cand, first_scores=None):
        out = s.ce.score(hist, cand)
        if s.residual:
            out = out + s.alpha * first_scores
        return out
model = Cascade(ce, first, a.residual)

@torch.no_grad()
def first_scores(histories):
    sc = first.score_histories(histories).float()
    return sc

users = [u for u in range(1, data.n_users + 1) if len(split.train_sequence(u)) >= 2]
opt = torch.optim.AdamW([q for n, q in model.named_parameters() if not n.startswith("first.")], lr=a.lr)

@torch.no_grad()
def cascade_eval(stage, users_eval):
    model.eval(); ranks = []
    for lo in range(0, len(users_eval), 32):
        b = users_eval[lo:lo + 32]
        hs, _, tg = split.batch(b, stage); tg = torch.as_tensor(tg)
        sc = first_scores(hs)
        from msli_core.evaluate import mask_seen, target_ranks
        mask_seen(sc, hs)
        base = target_ranks(sc, tg)
        fv, cand = sc.topk(100, 1)
        hist = torch.as_tensor(pad_right_aligned(hs, a.L))
        rr = model.score(hist, cand, fv).float()
        order = rr.argsort(dim=1, descending=True, stable=True); re = cand.gather(1, order)
        hit = re == tg.view(-1, 1)
        ranks.append(torch.where(hit.any(1), hit.float().argmax(1).double(), base).numpy())
    r = np.concatenate(ranks)
    return dict(ndcg=float(np.mean(np.where(r < 10, 1 / np.log2(r + 2), 0))), hr=float(np.mean(r < 10)))

t0 = time.time(); best = (-1, 0, None)
for ep in range(1, a.epochs + 1):
    model.train(); order = rng.permutation(users); losses = []
    for lo in range(0, len(order), 32):
        hs, pos = [], []
        for u in order[lo:lo + 32]:
            seq = split.train_sequence(int(u))
            for t in rng.integers(1, len(seq), size=a.cuts):
                hs.append(seq[:t]); pos.append(seq[t])
        full = first_scores(hs); sc = full.clone()
        from msli_core.evaluate import mask_seen
        mask_seen(sc, hs)
        pos_t = torch.as_tensor(pos)
        sc.scatter_(1, pos_t.view(-1, 1), float("-inf"))
        topv, top = sc.topk(a.topk, 1)
        pick = torch.as_tensor(rng.integers(0, a.topk, size=(len(hs), a.hard)))
        hard = top.gather(1, pick)
        uni = torch.as_tensor(rng.integers(1, data.n_items + 1, size=(len(hs), a.uniform)))
        cand = torch.cat([pos_t.view(-1, 1), hard, uni], 1)
        fs = full.gather(1, cand)
        hist = torch.as_tensor(pad_right_aligned(hs, a.L))
        out = model.score(hist, cand, fs)
        loss = F.cross_entropy(out, torch.zeros(len(hs), dtype=torch.long))
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        losses.append(loss.item())
    v = cascade_eval("valid", split.eval_users)
    print(ep, round(np.mean(losses), 4), "valid", round(v["ndcg"], 4), round(time.time() - t0, 1), flush=True)
    if v["ndcg"] > best[0]: best = (v["ndcg"], ep, copy.deepcopy(model.state_dict()))
    if ep - best[1] >= a.patience or time.time() - t0 > a.budget: break
tt = time.time() - t0
model.load_state_dict(best[2])
te = cascade_eval("test", split.eval_users)
fv = evaluate(first, data, split, "valid"); ft = evaluate(first, data, split, "test")
print("RESULT", json.dumps(dict(args=vars(a), best_epoch=best[1], valid_ndcg=round(best[0], 4), test_ndcg=round(te["ndcg"], 4), test_hr=round(te["hr"], 4),
      first_valid=round(fv["NDCG@10"], 4), first_test=round(ft["NDCG@10"], 4), first_test_hr=round(ft["HR@10"], 4), train_s=round(tt, 1))), flush=True)
