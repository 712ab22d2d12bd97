"""Experimental MS-LI: one causal transformer over the last L_max events; open slot = last state (+ recency
path: learned mix of the newest m item embeddings); closed slots = attention-pooled complete S-blocks of the
window before the open block. Full-softmax CE at every position, closed-slot stats fused per group."""
import sys, time, json, math, argparse, copy
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.evaluate import evaluate
from msli_core.models.layers import Block, ItemEncoder, init_weights, item_features
from msli_core.models.late_interaction import late_interaction

NEG = -1e9
FUSED = True
AGG = 'attention'  # attention | open_plus (score = s_open + sum_closed softmax_closed(.) s_k)
SEGSRC = 'h'  # h | emb: closed vectors pooled from encoder states or from item embeddings
OPEN_BIAS = 0.0


class FusedLoss(torch.autograd.Function):
    """Mean CE of y = yc + sigmoid(qo.E - Lc) * (uo.E - yc) against targets, without keeping y.

    uo, qo (B,G,S,d) open vectors/queries grouped by open block; E1 (N,d); Lc, yc (B,G,1,N) closed-slot
    logsumexp (minus the open bias) and softmax-weighted mean closed score; target (B,G,S), -1 = ignore.
    Saves sigmoid, (s_o - yc) and softmax(y): three (B,G,S,N) buffers; every pass in place where possible.
    """
    @staticmethod
    def forward(ctx, uo, qo, E1, Lc, yc, target):
        sig = torch.matmul(qo, E1.T).sub_(Lc).sigmoid_()
        diff = torch.matmul(uo, E1.T).sub_(yc)
        y = torch.addcmul(yc, sig, diff)
        valid = target >= 0
        tsafe = target.clamp(min=0).unsqueeze(-1)
        n = valid.sum().clamp(min=1)
        lse = torch.logsumexp(y, -1)
        loss = ((lse - y.gather(-1, tsafe).squeeze(-1)) * valid).sum() / n
        p = y.sub_(lse.unsqueeze(-1)).exp_()
        ctx.save_for_backward(uo, qo, E1, sig, diff, p, tsafe, valid)
        ctx.n = n
        return loss

    @staticmethod
    def backward(ctx, gl):
        uo, qo, E1, sig, diff, g, tsafe, valid = ctx.saved_tensors
        vf = valid.to(g.dtype).unsqueeze(-1)
        g.scatter_add_(-1, tsafe, -vf)
        g.mul_(vf * (gl / ctx.n))
        gyc = g.sum(2, keepdim=True)
        g.mul_(sig)  # g -> d score / d s_o
        gyc = gyc - g.sum(2, keepdim=True)
        sig.neg_().add_(1)
        diff.mul_(g).mul_(sig)  # diff -> d score / d l_o
        gLc = -diff.sum(2, keepdim=True)
        N, d = E1.shape
        duo = torch.matmul(g, E1)
        dqo = torch.matmul(diff, E1)
        dE1 = g.reshape(-1, N).T @ uo.reshape(-1, d) + diff.reshape(-1, N).T @ qo.reshape(-1, d)
        return duo, dqo, dE1, gLc, gyc, None


class Mix(torch.autograd.Function):
    """y = yc + sigmoid(lo - Lc) * (so - yc); lo, so (B,G,S,N); Lc, yc (B,G,1,N)."""
    @staticmethod
    def forward(ctx, lo, so, Lc, yc):
        sig = torch.sigmoid(lo - Lc)
        diff = so - yc
        y = torch.addcmul(yc, sig, diff)
        ctx.save_for_backward(sig, diff)
        return y

    @staticmethod
    def backward(ctx, g):
        sig, diff = ctx.saved_tensors
        gso = g * sig
        glo = gso * (1 - sig) * diff
        gyc = (g - gso).sum(2, keepdim=True)
        gLc = -glo.sum(2, keepdim=True)
        return glo, gso, gLc, gyc

class Exp(nn.Module):
    kind = "msli-exp"
    def __init__(s, n_items, n_genres, d=64, K=4, L=200, layers=2, heads=2, dropout=0.3, m=3, recency=True, S=None):
        super().__init__()
        s.K, s.L, s.d, s.m, s.recency = K, L, d, m, recency
        s.S = S or math.ceil(L / K)
        s.items = ItemEncoder(n_items, n_genres, d)
        s.pos = nn.Embedding(L, d)
        s.drop = nn.Dropout(dropout)
        s.blocks = nn.ModuleList([Block(d, heads, dropout) for _ in range(layers)])
        s.ln = nn.LayerNorm(d)
        s.open_out = nn.Linear(d, d)
        s.pool = nn.Linear(d, 1, bias=False)
        s.seg_out = nn.Linear(d, d)
        s.query = nn.Linear(d, d, bias=False)
        s.age_bias = nn.Parameter(torch.zeros(K))
        with torch.no_grad():
            s.age_bias[K - 1] = OPEN_BIAS
        s.apply(init_weights)
        s.rec_w = nn.Parameter(torch.tensor([1.0] + [0.5] * (m - 1))) if recency else None

    def encode(s, x):
        """x (B,T) left-aligned, 0-padded right. -> h (B,T,d), E table"""
        E = s.items()
        B, T = x.shape
        z = s.drop(E[x] + s.pos.weight[:T])
        for b in s.blocks:
            z = b(z, causal=True)
        return s.ln(z), E

    def open_vectors(s, h, x, E):
        u = s.open_out(h)  # (B,T,d)
        if s.recency:
            emb = E[x]  # (B,T,d)
            for j in range(s.m):
                sh = F.pad(emb, (0, 0, j, 0))[:, : emb.shape[1]]  # item at t-j
                u = u + s.rec_w[j] * sh
        return u

    def segment_vectors(s, h, x, E=None):
        """pooled vector of every S-block: (B,G,d), valid (B,G) = block complete-or-nonempty"""
        B, T, d = h.shape
        if SEGSRC == 'emb':
            h = E[x]
        S = s.S
        G = math.ceil(T / S)
        pad = G * S - T
        hp = F.pad(h, (0, 0, 0, pad)).view(B, G, S, d)
        vp = F.pad(x > 0, (0, pad)).view(B, G, S)
        lg = s.pool(hp).squeeze(-1).masked_fill(~vp, NEG)
        w = torch.softmax(lg, -1) * vp.any(-1, keepdim=True)
        return s.seg_out(torch.einsum("bgs,bgsd->bgd", w, hp)), vp.all(-1)

    def loss(s, x, y):
        """x (B,T) inputs, y (B,T) targets (0 = none). Scores over items 1..N only (no padding column)."""
        h, E = s.encode(x)
        E1 = E[1:]
        B, T, d = h.shape
        K, S = s.K, s.S
        uo = s.open_vectors(h, x, E)
        if K == 1:
            scores = uo @ E1.T  # (B,T,N)
        else:
            qo = s.query(uo)
            segv, segok = s.segment_vectors(h, x, E)  # (B,G,d)
            G = segv.shape[1]
            sc = segv @ E1.T  # (B,G,N)
            lc = s.query(segv) @ E1.T
            # group j (open block j): closed blocks g in [j-K+1, j-1], slot = K-1-(j-g)
            j = torch.arange(G).view(G, 1); g = torch.arange(G).view(1, G)
            age = j - g
            ok = (age >= 1) & (age <= K - 1)  # (G,G)
            # logits relative to the open slot's bias: b_k - b_{K-1} (the open bias is folded in here)
            bias = s.age_bias[(K - 1 - age).clamp(0, K - 1)] - s.age_bias[K - 1]  # (G,G)
            L3 = lc.unsqueeze(1) + bias.view(1, G, G, 1)  # (B,Gj,Gg,N)
            okb = ok.view(1, G, G, 1) & segok.view(B, 1, G, 1)
            L3 = L3.masked_fill(~okb, NEG)
            Lc = torch.logsumexp(L3, 2)  # (B,Gj,N)
            wc = torch.softmax(L3, 2) * okb
            yc = (wc * sc.unsqueeze(1)).sum(2)  # (B,Gj,N)
            anyc = okb.any(2)  # (B,Gj,1)
            Lc = torch.where(anyc, Lc, torch.full_like(Lc, NEG))
            assert T == G * S, "pad inputs to a multiple of S"
            if AGG == 'open_plus':
                scores = (uo @ E1.T).view(B, G, S, -1) + yc.unsqueeze(2)
                return F.cross_entropy(scores.reshape(B * T, -1), y.reshape(-1) - 1, ignore_index=-1)
            return FusedLoss.apply(uo.view(B, G, S, d), qo.view(B, G, S, d), E1, Lc.unsqueeze(2), yc.unsqueeze(2),
                                   (y - 1).view(B, G, S))
        return F.cross_entropy(scores.reshape(B * T, -1), y.reshape(-1) - 1, ignore_index=-1)

    @torch.no_grad()
    def explained(s, histories):
        B = len(histories)
        T = max(1, min(s.L, max(len(hh) for hh in histories)))
        x = np.zeros((B, T), np.int64); last = np.zeros(B, np.int64)
        for b, hh in enumerate(histories):
            t = hh[-s.L:]
            x[b, :len(t)] = t; last[b] = max(len(t) - 1, 0)
        x = torch.as_tensor(x); last = torch.as_tensor(last)
        h, E = s.encode(x)
        uo = s.open_vectors(h, x, E)[torch.arange(B), last]  # (B,d)
        K, S = s.K, s.S
        vec = torch.zeros(B, K, s.d); mask = torch.zeros(B, K, dtype=torch.bool)
        vec[:, K - 1] = uo; mask[:, K - 1] = True
        if K > 1:
            segv, segok = s.segment_vectors(h, x, E)
            jo = last // S
            for a in range(1, K):
                gi = jo - a
                okg = gi >= 0
                gc = gi.clamp(min=0)
                vec[:, K - 1 - a] = segv[torch.arange(B), gc] * okg.unsqueeze(1)
                mask[:, K - 1 - a] = okg & segok[torch.arange(B), gc]
        if AGG == 'open_plus' and K > 1:
            so = vec[:, K - 1] @ E.T  # (B,N+1)
            cm = mask.clone(); cm[:, K - 1] = False
            yc, cc = late_interaction(vec[:, :K - 1], cm[:, :K - 1], E, aggregation="attention",
                                      attention_queries=s.query(vec[:, :K - 1]), age_bias=s.age_bias[:K - 1])
            return so + yc, torch.cat([cc, so.unsqueeze(1)], 1)
        return late_interaction(vec, mask, E, aggregation="attention", attention_queries=s.query(vec), age_bias=s.age_bias)

    def score_histories(s, histories, timestamps=None):
        return s.explained(histories)[0]


def windows(seq, L):
    """training rows: the last L+1 events (inputs L), plus earlier non-overlapping chunks"""
    rows = []
    end = len(seq)
    while end >= 2:
        st = max(0, end - L - 1)
        rows.append(seq[st:end])
        end = st + 1 if st > 0 else 0
        if len(rows) >= 3: break
    return rows


def run(a):
    global OPEN_BIAS, AGG, SEGSRC
    AGG, SEGSRC = a.agg, a.segsrc
    OPEN_BIAS = a.open_bias
    torch.manual_seed(a.seed); rng = np.random.default_rng(a.seed)
    data = load_dataset(a.data); split = leave_one_out(data)
    rows = []
    for sq in split.train_sequences():
        rows += windows(sq, a.L) if a.chunks else [sq[-a.L - 1:]]
    model = Exp(data.n_items, max(1, len(data.genre_names)), d=a.d, K=a.K, L=a.L, layers=a.layers, dropout=a.dropout, m=a.m, recency=a.recency, S=a.S)
    g, yrs = item_features(data); model.items.set_features(g, yrs)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
    best = (-1, 0, None, None); t0 = time.time(); hist = []
    steps_per_epoch = math.ceil(len(rows) / a.batch); total = a.epochs * steps_per_epoch; step = 0
    def set_lr():
        f = min(1.0, (step + 1) / max(1, steps_per_epoch)) * (max(0.0, 1 - step / total) if a.decay else 1.0)
        for gr in opt.param_groups: gr["lr"] = a.lr * f
    vusers = split.eval_users
    for ep in range(1, a.epochs + 1):
        model.train(); losses = []
        noisy = np.array([len(r) for r in rows]) * rng.uniform(0.8, 1.25, len(rows))
        srt = np.argsort(noisy); batches = [srt[i:i + a.batch] for i in range(0, len(srt), a.batch)]
        for bi in rng.permutation(len(batches)):
            idx = batches[bi]
            T = max(len(rows[i]) for i in idx) - 1
            T = math.ceil(T / model.S) * model.S if model.K > 1 else T
            x = np.zeros((len(idx), T), np.int64); y = np.zeros((len(idx), T), np.int64)
            for b, i in enumerate(idx):
                r = rows[i]; x[b, :len(r) - 1] = r[:-1]; y[b, :len(r) - 1] = r[1:]
            loss = model.loss(torch.as_tensor(x), torch.as_tensor(y))
            set_lr(); opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); step += 1
            losses.append(loss.item())
        v = evaluate(model, data, split, "valid", users=vusers)
        hist.append((ep, round(np.mean(losses), 3), round(v["NDCG@10"], 4), round(time.time() - t0, 1)))
        print(hist[-1], flush=True)
        if v["NDCG@10"] > best[0]:
            best = (v["NDCG@10"], ep, copy.deepcopy(model.state_dict()), v)
        if ep - best[1] >= a.patience or time.time() - t0 > a.budget: break
    train_s = time.time() - t0
    model.load_state_dict(best[2]); model.eval()
    te = evaluate(model, data, split, "test")
    res = dict(args=vars(a), best_epoch=best[1], epochs=ep, valid_ndcg=round(best[0], 4), valid_hr=round(best[3]["HR@10"], 4),
               test_ndcg=round(te["NDCG@10"], 4), test_hr=round(te["HR@10"], 4), train_s=round(train_s, 1))
    print("RESULT", json.dumps(res), flush=True)
    if a.save: torch.save(model.state_dict(), a.save)
    return model


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/work/data/ml-100k")
    p.add_argument("--K", type=int, default=4); p.add_argument("--S", type=int, default=None)
    p.add_argument("--L", type=int, default=200); p.add_argument("--d", type=int, default=64)
    p.add_argument("--layers", type=int, default=2); p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--m", type=int, default=3); p.add_argument("--recency", type=int, default=1)
    p.add_argument("--chunks", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3); p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=64); p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=5); p.add_argument("--budget", type=float, default=150)
    p.add_argument("--decay", type=int, default=1)
    p.add_argument("--agg", default="attention"); p.add_argument("--segsrc", default="h")
    p.add_argument("--open_bias", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1); p.add_argument("--save", default="")
    run(p.parse_args())
