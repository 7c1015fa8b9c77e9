"""Training on several processes: torchrun and DistributedDataParallel, for the Trainer.

``torchrun --nproc_per_node=N -m vdmcourse train --preset NAME`` starts N copies of
the same command; torchrun tells each its place in environment variables
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``).
:func:`launched` reads them, joins the process group (NCCL on CUDA, gloo on the
CPU) and gives each process its device (``cuda:LOCAL_RANK`` on a GPU machine).
A plain ``python -m vdmcourse train`` sets none of them: one process, and every
function here is a no-op, so single-process training is exactly what it was.

What :class:`vdmcourse.train.Trainer` does with N processes (each piece is one
function below):

* the model is wrapped, together with the loss, in PyTorch's own
  ``DistributedDataParallel`` (:func:`parallel_loss`): it starts every rank from
  rank 0's weights and averages the gradients over the ranks in ``backward``.
  With a loss that is a mean over the batch, one step is then the step a single
  process would take on the union of all the ranks' batches (tested);
* each rank draws its own batches and noise from generators seeded
  ``seed + RANK_SEED_OFFSET * rank`` (:func:`rank_seed`), since the data is made on
  the fly: there is no dataset to shard;
* the logged loss is the mean over the ranks (:func:`mean_over_ranks`); the
  ranks agree on when to stop, after a Ctrl-C or a time limit (:func:`agree`);
* at each save, the EMA is averaged over the ranks (the ranks hold the same
  weights, so this only guards against drift), every rank's random state is
  gathered (:func:`gather_rank_states`), and rank 0 alone writes the checkpoint;
* ``resume`` restores every rank's random state when the world size is the one
  the checkpoint was made with -- the run then continues exactly -- and says what
  it does otherwise (:func:`restore_rank_states`).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import warnings
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vdmcourse.course import pick_device

__all__ = [
    "RANK_SEED_OFFSET",
    "launched",
    "is_distributed",
    "rank",
    "world_size",
    "is_main",
    "rank_seed",
    "launcher",
    "parallel_loss",
    "mean_over_ranks",
    "agree",
    "sigterm_stops",
    "average_over_ranks_",
    "gather_rank_states",
    "restore_rank_states",
]

# Rank r draws from seed + RANK_SEED_OFFSET * r: rank 0 keeps the single-process
# seeds, and no two ranks' streams start alike for any seed below the offset.
RANK_SEED_OFFSET = 1_000_003


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes training together (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files and prints."""
    return rank() == 0


def launcher() -> str:
    """How this process was started, for the command a run records: ``"python"``, or
    ``"torchrun --nproc_per_node=N"`` (with ``--nnodes`` when there are several nodes)."""
    if not is_distributed():
        return "python"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    nodes = world_size() // per_node
    return f"torchrun{f' --nnodes={nodes}' if nodes > 1 else ''} --nproc_per_node={per_node}"


def rank_seed(seed: int) -> int:
    """This rank's seed: ``seed`` itself on rank 0 (and in a single process)."""
    return seed + RANK_SEED_OFFSET * rank()


@contextmanager
def launched(device: str | None = None):
    """Join torchrun's process group, if this process was started by torchrun, and
    yield the device to train on; leave the group on exit.

    Without torchrun's ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) this yields
    :func:`~vdmcourse.course.pick_device` ``(device)`` and does nothing else. Under
    torchrun on CUDA each process takes the GPU ``LOCAL_RANK`` and NCCL; on the CPU
    (or ``device="cpu"``) gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield pick_device(device)
        return
    chosen = pick_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(chosen)
    elif chosen.type != "cpu":
        raise ValueError(f"torchrun: distributed training runs on cuda or cpu; got --device {chosen.type}")
    dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    try:
        yield chosen
        # Leave together: no rank tears the group down while another still has work in it
        # (rank 0 writing the last checkpoint after the final collective). Skipped when the
        # body raised, since a rank that failed would never reach the barrier.
        dist.barrier()
    finally:
        dist.destroy_process_group()


class _LossModule(nn.Module):
    """``loss_fn(model, batch, generator)`` as a module, so that DistributedDataParallel
    sees the whole loss as its forward: the loss function keeps the plain model
    (its config and helper methods too), and DDP still syncs every gradient."""

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch, generator):
        return self.loss_fn(self.model, batch, generator)


def parallel_loss(model: nn.Module, loss_fn):
    """``loss_fn`` itself in a single process; under a process group a function with
    the same signature that runs it through ``DistributedDataParallel`` (which, when
    built, copies rank 0's weights to every rank -- build it before any copy of the
    weights, such as the EMA). The ``model`` argument of the returned function is
    ignored: it is always ``model``."""
    if not is_distributed():
        return loss_fn
    parameter = next(model.parameters())
    device_ids = [parameter.device.index] if parameter.device.type == "cuda" else None
    wrapped = DistributedDataParallel(_LossModule(model, loss_fn), device_ids=device_ids)

    def loss(_model, batch, generator):
        return wrapped(batch, generator)

    return loss


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (the tensor itself in a single process)."""
    if not is_distributed():
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


def agree(trainer, stop) -> None:
    """Make the ranks agree after a step: the longest training time (wall and CPU) and a
    stop that any rank was asked for, so that every rank leaves the loop at the same step."""
    if not is_distributed():
        return
    device = trainer.device if trainer.device.type == "cuda" else torch.device("cpu")
    facts = torch.tensor([trainer.elapsed, trainer.cpu_elapsed, float(stop.requested)], dtype=torch.float64, device=device)
    dist.all_reduce(facts, op=dist.ReduceOp.MAX)
    trainer.elapsed, trainer.cpu_elapsed, stop.requested = facts[0].item(), facts[1].item(), bool(facts[2].item())


@contextmanager
def sigterm_stops(stop):
    """Under a process group, let SIGTERM ask for a stop at the end of the step, as a
    first Ctrl-C does: torchrun answers a Ctrl-C by sending its workers SIGTERM and
    gives them 30 s before SIGKILL -- time to finish the step and save."""
    if not is_distributed() or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        stop.requested = True

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@torch.no_grad()
def average_over_ranks_(module: nn.Module) -> None:
    """Replace every parameter and floating buffer of ``module`` by its mean over the
    ranks, in place, on every rank (nothing in a single process).

    Computed as rank 0's value plus the mean difference from it, so that tensors that
    are already equal on every rank (as DDP keeps them) stay bitwise unchanged, for
    any number of ranks -- which keeps a resumed run exact."""
    if not is_distributed():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            first = tensor.detach().clone()
            dist.broadcast(first, src=0)
            difference = tensor.detach() - first
            dist.all_reduce(difference)
            tensor.copy_(first + difference / world_size())


def _own_state(trainer, state: dict) -> dict:
    return {
        "tensors": {key: value.cpu() for key, value in trainer._rng_tensors().items()},
        "python": state["rng_python"],
        "numpy": state["rng_numpy"],
    }


def gather_rank_states(trainer, state: dict, tensors: dict) -> None:
    """Collective: add every rank's random state to a checkpoint's ``state`` and
    ``tensors`` (rank r > 0 as ``rng.rank<r>.*`` and ``state["rng_ranks"][r - 1]``),
    and record ``state["world_size"]``. Every rank must call it; rank 0 writes."""
    state["world_size"] = world_size()
    if not is_distributed():
        return
    states = [None] * world_size()
    dist.all_gather_object(states, _own_state(trainer, state))
    state["rng_ranks"] = []
    for other, gathered in enumerate(states[1:], start=1):
        for key, value in gathered["tensors"].items():
            tensors[key.replace("rng.", f"rng.rank{other}.", 1)] = value
        state["rng_ranks"].append({"python": gathered["python"], "numpy": gathered["numpy"]})


def _set_python_numpy(python_state, numpy_state) -> None:
    version, internal, gauss = python_state
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = numpy_state
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached))


def restore_rank_states(trainer, checkpoint) -> None:
    """After ``Trainer.resume`` restored rank 0's random state on every rank: give rank
    r > 0 its own. With the world size the checkpoint was made with, the run continues
    exactly. With another, the weights, EMA, optimiser, step and loss history carry on,
    a rank the checkpoint knows keeps its random streams, and a new rank starts fresh
    streams seeded from its rank and the step; a warning says so."""
    saved = int(checkpoint.state.get("world_size", 1))
    current = world_size()
    if saved != current and is_main():
        streams = (
            f"ranks {saved}-{current - 1} start new random streams" if current > saved
            else f"the random streams of ranks {current}-{saved - 1} are dropped"
        )
        warnings.warn(
            f"{checkpoint.path} was trained by {saved} process(es) and is resumed by {current}: the weights, EMA, "
            f"optimiser, step and loss history carry on; a step now averages {current} batch(es) of the preset's "
            f"size instead of {saved}, and {streams}, so this is not the run an uninterrupted {saved}-process run "
            f"would have been. To continue exactly, resume with {saved} process(es)"
            + (f" (torchrun --nproc_per_node={saved} ...)." if saved > 1 else " (plain python -m vdmcourse ...)."),
            stacklevel=3,
        )
    me = rank()
    if me == 0:
        return
    if me < saved:
        prefix = f"rng.rank{me}."
        own = {key.replace(prefix, "rng.", 1): value for key, value in checkpoint.tensors.items() if key.startswith(prefix)}
        torch.set_rng_state(own["rng.torch"])
        trainer.data_generator.set_state(own["rng.data"])
        trainer.loss_generator.set_state(own["rng.loss"])
        if trainer.device.type == "cuda" and "rng.cuda" in own:
            torch.cuda.set_rng_state(own["rng.cuda"], trainer.device)
        python_numpy = checkpoint.state["rng_ranks"][me - 1]
        _set_python_numpy(python_numpy["python"], python_numpy["numpy"])
        return
    fresh = rank_seed(trainer.config.seed) + checkpoint.step
    trainer.data_generator.manual_seed(fresh)
    trainer.loss_generator.manual_seed(fresh + 1)
    torch.manual_seed(fresh)
    random.seed(fresh)
    np.random.seed(fresh % 2**32)
