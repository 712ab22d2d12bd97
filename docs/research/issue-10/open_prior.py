# Train MS-LI with another OPEN_SLOT_PRIOR (the open slot's starting age bias): python open_prior.py DATA msli SEED PRIOR
import json, sys, time, torch
torch.set_num_threads(1)
import msli_core.models.msli as msli_mod
prior = float(sys.argv[4]); msli_mod.OPEN_SLOT_PRIOR = prior
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.train import train, TrainSettings
data_path, kind, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = load_dataset(data_path); split = leave_one_out(data)
t = time.time()
r = train(data, kind, TrainSettings.for_kind(kind, seed=seed), {}, split=split)
out = {"tag": "prior", "prior": prior, "data": data_path, "seed": seed, "test": round(r.metrics["NDCG@10"], 4),
       "valid": round(r.valid_metrics["NDCG@10"], 4), "best": r.best_epoch, "epochs": r.epochs, "s": round(time.time() - t, 1),
       "age": [round(x, 3) for x in r.model.age_bias.detach().tolist()]}
if getattr(data, "truth", None) is not None:
    from msli_core.explain import explanation_accuracy
    acc = explanation_accuracy(r.model, data); out.update(ratio=round(acc["ratio"], 3))
print(json.dumps(out), flush=True)

