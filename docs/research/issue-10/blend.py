"""Diagnostic: does item-kNN add signal to MS-LI K=4? Re-rank MS-LI's top-100 by MS-LI + beta * kNN on
valid and test (beta picked on valid). Says whether a re-ranker that can read co-occurrence has room."""
import sys, json, numpy as np, torch
torch.set_num_threads(1)
from msli_core.data.dataset import leave_one_out
from msli_core.data.formats import load_dataset
from msli_core.evaluate import mask_seen, worst_if_not_finite, target_ranks
from msli_core.models.registry import load_model, build_model
data = load_dataset(sys.argv[1]); split = leave_one_out(data)
first = load_model(sys.argv[2], data).model.eval()
knn = build_model("item-knn", data=data).fit(split.train_sequences())
out = {}
for stage in ("valid", "test"):
    hs, ts, tg = split.batch(split.eval_users, stage); tg = torch.as_tensor(tg)
    with torch.no_grad():
        a = mask_seen(worst_if_not_finite(first.score_histories(hs, ts).float()), hs)
        k = mask_seen(worst_if_not_finite(knn.score_histories(hs, ts).float()), hs)
    top = a.topk(100, 1).indices
    res = {}
    for beta in [0, 1, 2, 4, 8, 16, 32, 64]:
        s = torch.full_like(a, float("-inf")); s.scatter_(1, top, (a + beta * k).gather(1, top))
        base = target_ranks(a, tg); r = target_ranks(s, tg)
        inside = (top == tg.view(-1, 1)).any(1)
        r = torch.where(inside, r, base).numpy()
        res[beta] = round(float(np.mean(np.where(r < 10, 1 / np.log2(r + 2), 0))), 4)
    out[stage] = res
print(json.dumps(out))
