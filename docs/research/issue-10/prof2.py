import sys, time, torch, numpy as np
import exp
torch.set_num_threads(1)
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
data = load_dataset("/work/data/ml-100k"); split = leave_one_out(data)
rows = []
for sq in split.train_sequences(): rows += exp.windows(sq, 200)
idx = np.argsort([len(r) for r in rows])[-64:]
for K in (1, 4):
    m = exp.Exp(data.n_items, 19, K=K); opt = torch.optim.AdamW(m.parameters(), 1e-3)
    T = max(len(rows[i]) for i in idx) - 1; T = -(-T // m.S) * m.S if K > 1 else T
    x = np.zeros((64, T), np.int64); y = np.zeros((64, T), np.int64)
    for b, i in enumerate(idx):
        r = rows[i]; x[b, :len(r)-1] = r[:-1]; y[b, :len(r)-1] = r[1:]
    x, y = torch.as_tensor(x), torch.as_tensor(y); best = 9
    for rep in range(4):
        t = time.time(); l = m.loss(x, y); opt.zero_grad(); l.backward(); opt.step(); best = min(best, time.time()-t)
    print("K", K, "targets", int((y>0).sum()), "step", round(best, 3), "targets/s", int((y>0).sum()/best))
