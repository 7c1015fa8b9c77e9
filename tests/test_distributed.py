"""Training on 2 gloo processes (DistributedDataParallel on the CPU): the gradient of a
step, rank 0 alone saving, exact resume, and torchrun on the command line."""

import json
import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

import vdmcourse.train
from vdmcourse import distributed
from vdmcourse.course import REPO_ROOT
from vdmcourse.pretrained import load_checkpoint
from vdmcourse.train import TrainConfig, Trainer

WORLD = 2
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")


@dataclass(frozen=True)
class TinyConfig:
    dropout: float = 0.2


class Tiny(nn.Module):
    """A small regression model; dropout > 0 makes torch's global RNG matter."""

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        self.config = TinyConfig(dropout)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Dropout(dropout), nn.Linear(8, 4))

    def forward(self, x):
        return self.net(x)


def batches(generator):
    x = torch.randn(16, 4, generator=generator)
    return {"x": x, "y": x.flip(-1)}


def plain_loss(model, batch, generator):
    """A mean over the batch and nothing random: the union of two batches is well defined."""
    return ((model(batch["x"]) - batch["y"]) ** 2).mean()


def noisy_loss(model, batch, generator):
    """Draws from the loss generator, Python's and NumPy's generators: resuming must restore them all."""
    noise = 0.1 * torch.randn(batch["x"].shape, generator=generator)
    weight = 1 + 0.1 * random.random() + 0.1 * float(np.random.rand())
    return weight * ((model(batch["x"] + noise) - batch["y"]) ** 2).mean()


CONFIG = TrainConfig(lr=1e-2, warmup_steps=3, ema_decay=0.9, checkpoint_every=2, seed=7)


def make_trainer(out_dir=None, *, global_seed=0, dropout=0.2, loss=noisy_loss, config=CONFIG):
    """As the command line does: global seeds offset by rank, then the Trainer."""
    seed = distributed.rank_seed(global_seed)
    torch.manual_seed(seed), random.seed(seed), np.random.seed(seed)
    return Trainer(Tiny(dropout), loss, batches, config, out_dir=out_dir, device="cpu", progress=False)


def _first_run(tmp):
    """Rank-local work of the first launch; rank r writes tmp/rank<r>.* for the test to read."""
    me = distributed.rank()
    # One step on a dropout-free model with a deterministic loss: its gradient and batch.
    trainer = make_trainer(dropout=0.0, loss=plain_loss, config=TrainConfig(lr=1e-2, warmup_steps=1, grad_clip=float("inf")))
    batch = batches(torch.Generator().manual_seed(trainer.data_generator.initial_seed()))
    trainer.fit(1)
    grads = {f"grad.{name}": p.grad for name, p in trainer.model.named_parameters()}
    save_file({**grads, "batch.x": batch["x"], "batch.y": batch["y"]}, tmp / f"rank{me}.step.safetensors")

    # Count what each rank writes, then run 5 steps straight and 3 steps of a run to be resumed.
    writes = []
    original = vdmcourse.train.save_checkpoint
    vdmcourse.train.save_checkpoint = lambda path, *args, **kwargs: (writes.append(Path(path).name), original(path, *args, **kwargs))[1]
    try:
        make_trainer(tmp / "straight").fit(5)  # saves at steps 2, 4 and 5
        make_trainer(tmp / "split").fit(3)  # saves at steps 2 and 3, then "crashes"
    finally:
        vdmcourse.train.save_checkpoint = original
    (tmp / f"rank{me}.writes.json").write_text(json.dumps(writes))


def _resumed_run(tmp):
    # A fresh process: other init, other global RNG states -- resume must restore every rank's.
    make_trainer(tmp / "split", global_seed=99).resume().fit(5)


def _worker(rank, port, task, tmp):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with distributed.launched("cpu"):
        task(tmp)


def _launch(task, tmp):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_worker, args=(port, task, tmp), nprocs=WORLD, join=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    _launch(_first_run, tmp)
    return tmp


def test_each_rank_draws_its_own_batches_rank_0_those_of_a_single_process(runs):
    step = [load_file(runs / f"rank{r}.step.safetensors") for r in range(WORLD)]
    assert not torch.equal(step[0]["batch.x"], step[1]["batch.x"])
    single = batches(torch.Generator().manual_seed(TrainConfig().seed))
    assert torch.equal(step[0]["batch.x"], single["x"])


def test_a_step_has_the_gradient_of_one_process_on_the_union_of_the_batches(runs):
    step = [load_file(runs / f"rank{r}.step.safetensors") for r in range(WORLD)]
    torch.manual_seed(0)  # the ranks' init is rank 0's: seed 0, as in make_trainer
    model = Tiny(dropout=0.0)
    union = {key: torch.cat([s[f"batch.{key}"] for s in step]) for key in ("x", "y")}  # (2 * 16, 4)
    plain_loss(model, union, None).backward()
    for name, parameter in model.named_parameters():
        for r in range(WORLD):
            torch.testing.assert_close(step[r][f"grad.{name}"], parameter.grad, rtol=1e-5, atol=1e-7, msg=f"rank {r}: {name}")
    # and not just the gradient of rank 0's own batch
    alone = Tiny(dropout=0.0)
    alone.load_state_dict(model.state_dict())
    plain_loss(alone, {"x": step[0]["batch.x"], "y": step[0]["batch.y"]}, None).backward()
    assert not torch.allclose(alone.net[0].weight.grad, model.net[0].weight.grad, rtol=1e-3)


def test_rank_0_alone_writes_checkpoints(runs):
    writes = [json.loads((runs / f"rank{r}.writes.json").read_text()) for r in range(WORLD)]
    assert writes[0] == ["checkpoint.safetensors", "model.safetensors"] * 5  # 3 saves straight, 2 split
    assert writes[1] == []
    checkpoint = load_checkpoint(runs / "straight" / "checkpoint.safetensors")
    assert checkpoint.step == 5 and checkpoint.state["world_size"] == WORLD
    assert {"rng.rank1.data", "rng.rank1.loss", "rng.rank1.torch"} <= set(checkpoint.tensors)
    assert len(checkpoint.state["rng_ranks"]) == WORLD - 1


def test_resume_continues_exactly_like_an_uninterrupted_run(runs):
    _launch(_resumed_run, runs)
    straight = load_checkpoint(runs / "straight" / "checkpoint.safetensors")
    resumed = load_checkpoint(runs / "split" / "checkpoint.safetensors")
    assert resumed.step == straight.step == 5
    assert sorted(straight.tensors) == sorted(resumed.tensors)
    for key, value in straight.tensors.items():  # weights, EMA, optimiser, every rank's RNG, loss history
        assert torch.equal(value, resumed.tensors[key]), f"{key} differs"
    assert straight.state["rng_ranks"] == resumed.state["rng_ranks"]


def test_resuming_with_another_number_of_processes_says_what_it_does(runs):
    trainer = make_trainer(runs / "straight")
    with pytest.warns(UserWarning, match="trained by 2 process.*resumed by 1.*To continue exactly, resume with 2"):
        trainer.resume()
    assert trainer.step == 5


def test_torchrun_trains_the_tiny_preset_on_two_processes(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "vdmcourse", "train", "--preset", "image-tiny", "--steps", "2", "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained image-tiny to step 2") == 1  # rank 0 alone prints
    record = json.loads((out / "run.json").read_text())
    assert record["command"].startswith("torchrun --nproc_per_node=2 -m vdmcourse train")
    assert record["machine"]["processes"] == 2
    checkpoint = load_checkpoint(out / "checkpoint.safetensors")
    assert checkpoint.step == 2 and checkpoint.state["world_size"] == 2
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint.safetensors", "loss.csv", "model.safetensors", "run.json"]
