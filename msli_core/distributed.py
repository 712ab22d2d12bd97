"""Data-parallel training across processes started by torchrun (``msli train ... --ddp``).

One process per rank, launched by PyTorch's own launcher, never by msli::

    torchrun --nproc-per-node P -m msli_core train --data DATA --model msli --out OUT --ddp

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT`` in each process; :func:`from_environment` reads them (and refuses a ``--ddp`` run
without them with one sentence), :func:`process_group` joins the gloo process group with a timeout.
Several machines use torchrun's rendezvous options (``--nnodes``, ``--node-rank``, ``--rdzv-backend
c10d``, ``--rdzv-endpoint``, or ``--master-addr``/``--master-port``); see the README.

Decisions (the training side is in :func:`msli_core.train.train`, ``distributed=``):

- **What is distributed.** MS-LI and two-tower: each epoch every rank builds the same global list of
  steps from the shared seed (the single-process run's own list), and takes rows ``rank::P`` of each
  step. The model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, so one DDP step
  is one single-process step over the same rows. The cross-encoder is refused: its steps sample cut
  points and first-stage negatives per user from one random stream and start from a fitted first
  stage; sharding that faithfully is a separate piece of work. Popularity and item-kNN are counted in
  one pass and have nothing to distribute.
- **Backend.** gloo: msli_core trains on the CPU (the row batches, the loss's lookup tables and the
  evaluation all live there), so there is no GPU tensor for NCCL to reduce. Device placement by
  ``LOCAL_RANK`` would come with GPU training itself.
- **Threads.** Each process gets ``usable cores // LOCAL_WORLD_SIZE`` torch threads (at least 1), so P
  processes on one machine do not oversubscribe its cores (:func:`threads_per_process`).
- **No process waits forever.** Joining the group and every collective use ``timeout_s`` (default
  :data:`DEFAULT_TIMEOUT_S`). When a process fails, torchrun stops the others; a process whose peer
  vanished otherwise gets gloo's error at its next collective, which ends as one sentence
  (:func:`lost_contact`) and exit status 2.
- **Validation** is sharded by users and gathered (:func:`evaluate_sharded`), so every rank computes
  the same metrics from the same numbers and takes the same early-stopping decision.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from msli_core import kinds
from msli_core.errors import MsliError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")  # what torchrun sets
LAUNCH = "torchrun --nproc-per-node P -m msli_core train ... --ddp"
DEFAULT_TIMEOUT_S = 600  # joining the group and each collective; an epoch's validation shard of
# MovieLens-1M takes well under a minute, so 10 minutes only ever expires when a process is gone
DISTRIBUTED_KINDS = tuple(k for k in kinds.LATE_INTERACTION if k in kinds.TRAINABLE)  # msli, two-tower


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (read from torchrun's environment)."""

    rank: int  # 0..size-1; rank 0 validates like the others, then tests and writes the model
    size: int  # P, processes in all (every machine)
    local_rank: int  # rank among this machine's processes
    local_size: int  # processes on this machine
    master: str  # MASTER_ADDR:MASTER_PORT, for messages
    timeout_s: float = DEFAULT_TIMEOUT_S
    backend: str = "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def check_kind(kind: str) -> None:
    """Refuse ``--ddp`` for a model kind it does not train, with one sentence."""
    if kind in DISTRIBUTED_KINDS:
        return
    if kind == "cross-encoder":
        raise MsliError(
            "--ddp trains msli and two-tower models, not the cross-encoder (its steps draw cut points and "
            "first-stage negatives per user from one random stream, which is not sharded); train it "
            "without --ddp."
        )
    raise MsliError(
        f"--ddp trains msli and two-tower models, and {kind} is counted in one pass over the data with "
        "nothing to distribute; train it without --ddp."
    )


def from_environment(
    environ: Mapping[str, str] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> World:
    """The :class:`World` torchrun's environment describes, or one sentence saying how to launch.

    >>> w = from_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
    ...                       "MASTER_PORT": "29500"})
    >>> w.rank, w.size, w.local_size, w.master, w.is_main
    (1, 2, 2, 'h:29500', False)
    """
    env = os.environ if environ is None else environ
    missing = [name for name in ENV if not env.get(name)]
    if missing:
        raise MsliError(
            f"msli train --ddp runs in processes started by torchrun, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set; launch it with `{LAUNCH}`."
        )
    try:
        rank, size, local_rank = (int(env[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        local_size = int(env.get("LOCAL_WORLD_SIZE") or size)
        int(env["MASTER_PORT"])
    except ValueError:
        raise MsliError(
            "RANK, WORLD_SIZE, LOCAL_RANK and MASTER_PORT must be whole numbers (torchrun sets them); "
            f"launch msli train --ddp with `{LAUNCH}`."
        ) from None
    if not (size >= 1 and 0 <= rank < size and 0 <= local_rank < local_size <= size):
        raise MsliError(
            f"RANK {rank}, LOCAL_RANK {local_rank} and WORLD_SIZE {size} do not describe a process of a "
            f"group (torchrun sets them); launch msli train --ddp with `{LAUNCH}`."
        )
    if not (timeout_s > 0):
        raise MsliError(f"--ddp-timeout must be a positive number of seconds, got {timeout_s}.")
    return World(rank, size, local_rank, local_size, f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}", timeout_s)


def check_not_launched_without_ddp(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a plain ``msli train`` started as one of several torchrun processes: each would train the
    whole model alone and write the same ``--out``.

    >>> check_not_launched_without_ddp({"RANK": "0", "WORLD_SIZE": "1"})  # torchrun with one process: fine
    """
    env = os.environ if environ is None else environ
    size = env.get("WORLD_SIZE", "")
    if env.get("RANK") and size.isdigit() and int(size) > 1:
        raise MsliError(
            f"msli train runs as one of {size} torchrun processes but without --ddp, so each would train "
            "alone and write the same --out; add --ddp."
        )


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads_per_process(local_size: int, cores: int | None = None) -> int:
    """torch threads for each of ``local_size`` processes on one machine: an equal share of its cores.

    >>> threads_per_process(2, cores=2), threads_per_process(4, cores=2), threads_per_process(2, cores=16)
    (1, 1, 8)
    """
    return max(1, (cores or usable_cores()) // max(1, local_size))


def lost_contact(world: World, what: str, err: BaseException) -> MsliError:
    """The sentence a process ends with when the group breaks under it (a peer failed or timed out)."""
    return MsliError(
        f"process {world.rank} of {world.size} lost the other training processes while {what} "
        f"({_first_line(err)}); another process failed (its message is above) or did not answer within "
        f"--ddp-timeout {world.timeout_s:g} s, so fix that and launch again."
    )


def _first_line(err: BaseException) -> str:
    """The first sentence of an error's text (gloo's run to many lines), at most 200 characters.

    >>> _first_line(RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:7062. This is..."))
    '[pair.cc:553] Connection closed by peer [127.0.0.1]:7062'
    """
    text = str(err).strip()
    if not text:
        return type(err).__name__
    first = text.splitlines()[0].split(". ")[0].rstrip(".")
    return first if len(first) <= 200 else first[:199] + "…"


def peer_error(err: BaseException) -> bool:
    """True when ``err`` says the group broke (a peer is gone, or a wait timed out), not a bug here:
    torch.distributed's own errors (DistBackendError, DistNetworkError, DistStoreError) and gloo's,
    which arrive as a plain RuntimeError naming gloo (``.../gloo/transport/tcp/pair.cc:553] Connection
    closed by peer``). Any other error keeps its traceback."""
    return isinstance(err, dist.DistError) or (isinstance(err, RuntimeError) and "gloo" in str(err))


@contextlib.contextmanager
def collective(world: World, what: str) -> Iterator[None]:
    """Run a block of collectives; a broken group ends it with :func:`lost_contact`'s sentence."""
    try:
        yield
    except RuntimeError as err:  # DistError is a RuntimeError
        if not peer_error(err):
            raise
        raise lost_contact(world, what, err) from None


@contextlib.contextmanager
def process_group(world: World) -> Iterator[World]:
    """Join the gloo process group (torchrun's ``env://`` rendezvous) for the duration of the block.

    Joining waits at most ``world.timeout_s`` for the other processes; a process that never comes ends
    the others with one sentence instead of a hang.
    """
    try:
        dist.init_process_group(
            backend=world.backend,
            init_method="env://",
            rank=world.rank,
            world_size=world.size,
            timeout=timedelta(seconds=world.timeout_s),
        )
    except RuntimeError as err:
        if not peer_error(err):
            raise
        raise MsliError(
            f"process {world.rank} of {world.size} could not join the others at {world.master} within "
            f"--ddp-timeout {world.timeout_s:g} s ({_first_line(err)}); "
            "start all of them with the same torchrun command (on every machine: the same --nnodes, "
            "--nproc-per-node and --rdzv-endpoint or --master-addr/--master-port)."
        ) from None
    try:
        yield world
    finally:
        with contextlib.suppress(RuntimeError):  # a group already broken by a peer's failure
            dist.destroy_process_group()


class StepLoss(nn.Module):
    """The training loss as a module, so that DDP sees one forward per backward: ``forward`` returns
    ``loss(model, *args)``. Calling the model's methods (``open_vectors``, ``encode_segments``...) from
    outside a DDP forward would skip DDP's bookkeeping, and the gradients would not be reduced."""

    def __init__(self, model: nn.Module, loss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.loss(self.model, *args, **kwargs)


def wrap(model: nn.Module, loss, world: World) -> nn.parallel.DistributedDataParallel:
    """``model``'s loss under DDP (:class:`StepLoss`). Building it broadcasts rank 0's weights.

    ``find_unused_parameters=True``: which parameters a step uses depends on its rows (a step whose rows
    all fit in the window uses no closed-segment encoder; two-tower never does), and may differ
    between ranks in the same step. ``forward_sync_buffers=False``: the models keep no running
    statistics, so buffers are synced once, when DDP is built, and not before every forward.
    """
    with collective(world, "sharing the initial weights"):
        return nn.parallel.DistributedDataParallel(
            StepLoss(model, loss), find_unused_parameters=True, forward_sync_buffers=False
        )


def all_sum(world: World, value: float, what: str) -> float:
    """The sum of ``value`` over every process (float64; the same number on every rank)."""
    tensor = torch.tensor([value], dtype=torch.float64)
    with collective(world, what):
        dist.all_reduce(tensor)
    return float(tensor.item())


def all_gather(world: World, obj, what: str) -> list:
    """``obj`` of every rank, in rank order (the same list on every rank)."""
    out: list = [None] * world.size
    with collective(world, what):
        dist.all_gather_object(out, obj)
    return out


def shard(values: np.ndarray, world: World) -> np.ndarray:
    """This rank's contiguous share of ``values`` (``np.array_split``: sizes differ by at most one), so
    the shards, concatenated in rank order, are ``values`` again.

    >>> w = World(1, 2, 1, 2, "h:1")
    >>> shard(np.arange(5), w).tolist()
    [3, 4]
    """
    return np.array_split(np.asarray(values), world.size)[world.rank]


def evaluate_sharded(model: nn.Module, data, split, stage: str, users: np.ndarray, world: World) -> dict:
    """:func:`msli_core.evaluate.evaluate`'s result for ``users``, computed by every rank together.

    Each rank ranks its contiguous share of the users (:func:`shard`, with the evaluator's public
    :func:`~msli_core.evaluate.rank_users`); the per-user target ranks and top-10 lists (not per-rank
    means, which would weight unequal shards wrongly; and Coverage@10 needs the lists) are gathered in
    rank order, i.e. in the original user order, and :func:`msli_core.metrics.summarize` runs on them on
    every rank. So every rank gets the same numbers, bit for bit, and the single-process evaluation's
    numbers for the same model.
    """
    from msli_core import metrics
    from msli_core.evaluate import TOP_K, rank_users

    start = time.perf_counter()
    users = np.asarray(users)
    mine = shard(users, world)
    if len(mine):
        ranks, tops = rank_users(model, split, stage, users=mine)  # (U_r,), (U_r, TOP_K)
    else:  # fewer users than processes
        ranks, tops = np.zeros(0), np.zeros((0, min(TOP_K, data.n_items)), dtype=np.int64)
    parts = all_gather(world, (ranks, tops[:, :10]), f"gathering the {stage} metrics")
    result = metrics.summarize(
        np.concatenate([r for r, _ in parts]), np.concatenate([t for _, t in parts]), data.n_items
    )
    result.update(
        users=len(users),
        stage=stage,
        evaluation="full ranking",
        seconds=round(time.perf_counter() - start, 3),
    )
    return result
