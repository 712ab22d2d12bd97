import sys, time, torch
torch.set_num_threads(1)
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import train
path = sys.argv[1]
data = load_dataset(path); split = leave_one_out(data)
print(data.n_users, data.n_items, len(split.eval_users))
for kind in ["popularity", "item-knn"]:
    t = time.time(); r = train(data, kind, split=split, seed=1)
    print(kind, "valid", round(r.valid_metrics["NDCG@10"], 4), "test NDCG", round(r.metrics["NDCG@10"], 4), "HR", round(r.metrics["HR@10"], 4), round(time.time()-t, 1), "s")
