# python ce_short.py DATA SEED: MS-LI K=4 then the cross-encoder re-ranking its top-100, one thread; the
# re-ranker's validation curve (epoch 0 = the first stage's own ranking of the same candidates).
import json, sys, torch
torch.set_num_threads(1)
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import TrainSettings, train
data = load_dataset(sys.argv[1]); split = leave_one_out(data); seed = int(sys.argv[2])
fs = train(data, "msli", TrainSettings.for_kind("msli", seed=seed), {"segments": 4}, split=split)
print(json.dumps({"first_stage_test": fs.metrics["NDCG@10"], "valid": fs.valid_metrics["NDCG@10"], "best": fs.best_epoch}), flush=True)
ce = train(data, "cross-encoder", TrainSettings.for_kind("cross-encoder", seed=seed), {}, split=split, cascade_from=fs.model)
print(json.dumps({"ce_test": ce.metrics["NDCG@10"], "best": ce.best_epoch, "history": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items() if k in ("epoch", "loss", "valid_NDCG@10")} for h in ce.history]}), flush=True)
