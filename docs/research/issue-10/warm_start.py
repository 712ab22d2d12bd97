# What do the closed slots add when the encoder is held fixed?  python warm_start.py DATA SEED [K] [EPOCHS]
# 1. Train the two-tower model (README defaults, `train()`).  2. Build MS-LI K with the two-tower's weights
# (item table, encoder, W_o, recency weights), frozen; the closed-slot head (pooling p, W_s, the attention
# query W, the age biases) starts untrained and is then trained alone for EPOCHS (default 4) epochs with
# early stopping on validation. A user whose history fits in the window scores exactly as under the
# two-tower model, so the test difference is the closed slots' own effect, free of the shared encoder's
# training noise. Prints JSON lines: the two-tower model, MS-LI before training its head ("init") and after.
import sys, json, time
import torch
torch.set_num_threads(1)
import msli_core.train as train_mod
from msli_core.data.formats import load_dataset
from msli_core.data.dataset import leave_one_out
from msli_core.evaluate import evaluate
from msli_core.models.registry import build_model
from msli_core.progress import no_progress
from msli_core.train import TrainSettings, train

path, seed = sys.argv[1], int(sys.argv[2])
K = int(sys.argv[3]) if len(sys.argv) > 3 else 4
epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 4
data = load_dataset(path); split = leave_one_out(data)

t = time.time()
tt = train(data, "two-tower", TrainSettings.for_kind("two-tower", seed=seed), split=split)
print(json.dumps({"stage": "two-tower", "seed": seed, "test": round(tt.metrics["NDCG@10"], 4),
                  "valid": round(tt.valid_metrics["NDCG@10"], 4), "best": tt.best_epoch,
                  "s": round(time.time() - t, 1)}), flush=True)

rng = train_mod.seed_everything(seed)
model = build_model("msli", data=data, segments=K)
shared = {k: v for k, v in tt.model.state_dict().items() if k not in ("age_bias", "segment_weights")}
model.load_state_dict(shared, strict=False)
for name, p in model.named_parameters():
    if name.startswith(("items.", "encoder.", "open_out.", "recent_weights")):
        p.requires_grad_(False)

# a micro-batch of users without closed slots has no trainable parameter in its loss: give it a zero
# gradient path so the library's backward() runs (the library itself never freezes parameters)
_loss = train_mod.late_interaction_loss
train_mod.late_interaction_loss = lambda m, *a, **kw: _loss(m, *a, **kw) + 0.0 * m.age_bias.sum()

settings = TrainSettings.for_kind("msli", seed=seed, epochs=epochs)
model.eval()
init_valid = evaluate(model, data, split, "valid")["NDCG@10"]
init_test = evaluate(model, data, split, "test")["NDCG@10"]
print(json.dumps({"stage": "init", "valid": round(init_valid, 4), "test": round(init_test, 4)}), flush=True)
t = time.time()
fit = train_mod._fit_neural(model, kind="msli", data=data, split=split, settings=settings, rng=rng,
                            progress=no_progress, first_stage=None)
out = {"stage": "msli", "K": K, "seed": seed, "test": round(evaluate(model, data, split, "test")["NDCG@10"], 4),
       "valid": round(fit.valid_metrics["NDCG@10"], 4), "best": fit.best_epoch, "s": round(time.time() - t, 1),
       "curve": [round(h["valid_NDCG@10"], 4) for h in fit.history],
       "age_bias": [round(float(x), 3) for x in model.age_bias.detach()]}
if getattr(data, "truth", None) is not None:
    from msli_core.explain import explanation_accuracy
    acc = explanation_accuracy(model, data)
    out.update(explanation_ratio=round(acc["ratio"], 3), explanation_accuracy=round(acc["accuracy"], 3),
               explanation_users=acc["users"])
print(json.dumps(out), flush=True)
