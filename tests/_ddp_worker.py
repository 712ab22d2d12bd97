"""One process of a distributed training run for tests/test_train_ddp.py (started by torchrun).

``python -m torch.distributed.run --nproc-per-node P tests/_ddp_worker.py OUT.json SPECS.json`` trains
``train(make_tiny_dataset(...), kind, settings, config, distributed=World)`` for each spec of the list
in SPECS.json, in every process (one launch for several runs: each launch costs P+1 torch start-ups),
and rank 0 writes the results (metrics, validation metrics, history, its weights, each rank's weight
norm) to OUT.json, in the same order. It calls
the library, not the CLI, so a test can set model fields the CLI has no flag for (``dropout``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tiny_data import make_tiny_dataset  # the script's folder (tests/) is on sys.path

from msli_core import distributed
from msli_core.train import TrainSettings, train


def run(spec: dict, world: distributed.World | None) -> dict:
    """Train as ``spec`` says; the result as JSON-ready numbers (also used for the single-process run)."""
    data = make_tiny_dataset(**spec["data"])
    settings = TrainSettings.for_kind(spec["kind"], **spec["settings"])
    result = train(data, spec["kind"], settings, spec["config"], distributed=world)
    weights = torch.cat([p.detach().reshape(-1) for p in result.model.parameters()])
    return {
        "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, float | int)},
        "valid_metrics": {k: v for k, v in result.valid_metrics.items() if isinstance(v, float | int)},
        "history": [{k: v for k, v in row.items() if k != "seconds"} for row in result.history],
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "weights_norm": float(weights.norm()),
        "weights": weights.tolist(),  # the tiny models here have ~10k parameters
    }


def main() -> None:
    out, specs = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    world = distributed.from_environment()
    torch.set_num_threads(distributed.threads_per_process(world.local_size))
    results = []
    with distributed.process_group(world):
        for spec in specs:
            result = run(spec, world)
            norms = distributed.all_gather(world, result["weights_norm"], "checking the weights")
            results.append({**result, "weights_norm_per_rank": norms})
    if world.is_main:
        out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
