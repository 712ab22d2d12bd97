"""The ported re-ranker (msli_core.train, cross-encoder defaults) re-ranking a first stage from fs.py:
`python ce_port.py DATA FIRST_DIR SEED [json settings overrides]`. Appends to /work/exp/ce2/port.jsonl."""
import json, sys, time
import torch
torch.set_num_threads(1)
from msli_core import train as T
from msli_core.data.dataset import leave_one_out
from msli_core.data.formats import load_dataset
from msli_core.evaluate import evaluate
from msli_core.models.registry import load_model
data = load_dataset(sys.argv[1]); split = leave_one_out(data)
first = load_model(sys.argv[2], data)
over = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
config = over.pop("config", {})
t0 = time.time()
r = T.train(data, "cross-encoder", seed=int(sys.argv[3]), split=split, cascade_from=first,
            settings_overrides=over, progress=lambda e: print(e.message, flush=True) if "valid" in e.message else None, **config)
alone = evaluate(first, data, split, "test")
row = dict(data=sys.argv[1], first=sys.argv[2], seed=int(sys.argv[3]), over=over, config=config,
           alpha=float(r.model.first_stage_weight.detach()), best_epoch=r.best_epoch, epochs=r.epochs,
           valid=r.valid_metrics["NDCG@10"], valid0=r.history[0]["valid_NDCG@10"], test=r.metrics["NDCG@10"],
           test_hr=r.metrics["HR@10"], first_test=alone["NDCG@10"], first_hr=alone["HR@10"], train_s=r.seconds,
           wall_s=round(time.time() - t0, 1), history=[(h["epoch"], round(h["valid_NDCG@10"], 4)) for h in r.history])
print("RESULT " + json.dumps(row), flush=True)
open("/work/exp/ce2/port.jsonl", "a").write(json.dumps(row) + "\n")
