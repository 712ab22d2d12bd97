import torch, numpy as np, exp, torch.nn.functional as F
torch.manual_seed(0)
m = exp.Exp(300, 5, K=4, L=40).eval()
x = torch.randint(1, 301, (6, 40)); x[0, 25:] = 0; x[1, 3:] = 0
y = torch.randint(1, 301, (6, 40)); y[x == 0] = 0
l1 = m.loss(x, y); g1 = torch.autograd.grad(l1, list(m.parameters()), allow_unused=True)
# reference: explicit late_interaction at every position
h, E = m.encode(x); uo = m.open_vectors(h, x, E); segv, segok = m.segment_vectors(h, x)
B, T, d = h.shape; K, S = 4, m.S; tot = []; 
for b in range(B):
    for t in range(T):
        if y[b, t] == 0: continue
        vec = torch.zeros(1, K, d); mask = torch.zeros(1, K, dtype=torch.bool)
        vec[0, K-1] = uo[b, t]; mask[0, K-1] = True
        jo = t // S
        for a in range(1, K):
            if jo - a >= 0: vec[0, K-1-a] = segv[b, jo-a]; mask[0, K-1-a] = bool(segok[b, jo-a])
        sc, _ = exp.late_interaction(vec, mask, E, aggregation="attention", attention_queries=m.query(vec), age_bias=m.age_bias)
        sc = sc[:, 1:]
        tot.append(F.cross_entropy(sc, y[b, t:t+1] - 1))
l2 = torch.stack(tot).mean(); g2 = torch.autograd.grad(l2, list(m.parameters()), allow_unused=True)
print(l1.item(), l2.item(), max((a-b).abs().max().item() for a, b in zip(g1, g2) if a is not None and b is not None))
