"""The Trainer: exact resume, atomic checkpoints, Ctrl-C, EMA, warm-up."""

import importlib
import os
import random
import signal
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import vdmcourse.pretrained
from vdmcourse.pretrained import load_checkpoint
from vdmcourse.train import TrainConfig, Trainer

train_module = importlib.import_module("vdmcourse.train")


@dataclass(frozen=True)
class TinyConfig:
    width: int = 8


class Tiny(nn.Module):
    """A small regression model with dropout (so torch's global RNG matters)."""

    def __init__(self, config: TinyConfig = TinyConfig()):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(4, config.width), nn.SiLU(), nn.Dropout(0.2), nn.Linear(config.width, 4))

    def forward(self, x):
        return self.net(x)


def batches(generator):
    x = torch.randn(16, 4, generator=generator)
    return {"x": x, "y": x.flip(-1)}


def loss_fn(model, batch, generator):
    noise = 0.1 * torch.randn(batch["x"].shape, generator=generator)
    # Python's and NumPy's generators too, so that resuming must restore them as well.
    weight = 1 + 0.1 * random.random() + 0.1 * float(np.random.rand())
    return weight * ((model(batch["x"] + noise) - batch["y"]) ** 2).mean()


CONFIG = TrainConfig(lr=1e-2, warmup_steps=3, ema_decay=0.9, checkpoint_every=2, seed=7)


def make_trainer(out_dir=None, *, init_seed=0, loss=loss_fn, config=CONFIG, **kwargs):
    torch.manual_seed(init_seed)
    return Trainer(Tiny(), loss, batches, config, out_dir=out_dir, device="cpu", progress=False, **kwargs)


def assert_same_state(a: Trainer, b: Trainer):
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), f"model weight {name} differs"
    for (name, x), y in zip(a.ema.state_dict().items(), b.ema.state_dict().values()):
        assert torch.equal(x, y), f"EMA weight {name} differs"
    assert a.history == b.history
    assert a.step == b.step


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    random.seed(1), np.random.seed(1)
    straight = make_trainer(tmp_path / "straight")
    straight.fit(9)

    random.seed(1), np.random.seed(1)
    first = make_trainer(tmp_path / "split")
    first.fit(4)
    # A fresh process: other init, other global RNG states -- resume must restore them all.
    random.seed(99), np.random.seed(99)
    second = make_trainer(tmp_path / "split", init_seed=123).resume()
    assert second.step == 4
    second.fit(9)
    assert_same_state(straight, second)
    expected, resumed = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert sorted(expected) == sorted(resumed)
    for index, moments in expected.items():
        for name, value in moments.items():
            assert torch.equal(value, resumed[index][name]), f"optimizer {name} of parameter {index} differs"


def test_checkpoint_holds_config_weights_ema_optimizer_rng_and_history(tmp_path):
    trainer = make_trainer(tmp_path, metadata={"preset": "tiny"})
    trainer.fit(3)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert checkpoint.step == 3
    assert checkpoint.config == {"width": 8}
    assert checkpoint.metadata["preset"] == "tiny"
    prefixes = {key.split(".")[0] for key in checkpoint.tensors}
    assert prefixes == {"model", "ema", "optimizer", "rng", "history"}
    assert {"rng.torch", "rng.data", "rng.loss"} <= set(checkpoint.tensors)
    assert checkpoint.tensors["history.loss"].tolist() == trainer.history
    assert {"rng_python", "rng_numpy", "optimizer_param_groups", "train_config", "elapsed_s", "machine"} <= set(checkpoint.state)
    # The small EMA-only file and the loss history sit beside it.
    ema_only = load_checkpoint(tmp_path / "model.safetensors")
    assert {key.split(".")[0] for key in ema_only.tensors} == {"model"}
    assert torch.equal(ema_only.tensors["model.net.0.weight"], trainer.ema.net[0].weight)
    assert (tmp_path / "loss.csv").read_text().splitlines()[0] == "step,loss"
    assert len((tmp_path / "loss.csv").read_text().splitlines()) == 4


def test_crash_during_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    trainer.fit(2)
    path = tmp_path / "checkpoint.safetensors"
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as half_written:
            half_written.write(b"\x00" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(vdmcourse.pretrained, "save_file", crash)
    trainer.train_step()
    with pytest.raises(OSError, match="disk full"):
        trainer.save()
    assert path.read_bytes() == before
    assert load_checkpoint(path).step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "loss.csv", "model.safetensors"]


def test_ctrl_c_finishes_the_step_saves_and_stops(tmp_path):
    def interrupted_at_step_3(model, batch, generator):
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return loss_fn(model, batch, generator)

    handler_before = signal.getsignal(signal.SIGINT)
    trainer = make_trainer(tmp_path, loss=interrupted_at_step_3, config=TrainConfig(checkpoint_every=100))
    with pytest.raises(KeyboardInterrupt, match="stopped at step 4"):
        trainer.fit(10)
    assert trainer.step == 4
    assert load_checkpoint(tmp_path / "checkpoint.safetensors").step == 4
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_ema_update_is_the_exact_moving_average():
    trainer = make_trainer()
    trainer.step = 1000  # past the EMA warm-up: decay = ema_decay
    assert trainer.ema_decay_at(1000) == 0.9
    with torch.no_grad():
        for i, (averaged, current) in enumerate(zip(trainer.ema.parameters(), trainer.model.parameters())):
            averaged.fill_(1.0 + i)
            current.fill_(3.0 - i)
    expected = [0.9 * (1.0 + i) + 0.1 * (3.0 - i) for i in range(len(list(trainer.ema.parameters())))]
    trainer.update_ema()
    for value, averaged in zip(expected, trainer.ema.parameters()):
        torch.testing.assert_close(averaged, torch.full_like(averaged, value), rtol=0, atol=1e-6)


def test_ema_warms_up_from_the_current_weights():
    trainer = make_trainer()
    assert trainer.ema_decay_at(0) == pytest.approx(0.1)
    assert trainer.ema_decay_at(10) == pytest.approx(11 / 20)
    assert trainer.ema_decay_at(10_000) == 0.9


def test_learning_rate_warms_up_linearly_then_stays_constant():
    seen = []

    def recording(model, batch, generator):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return loss_fn(model, batch, generator)

    trainer = make_trainer(loss=recording, config=TrainConfig(lr=1e-3, warmup_steps=4))
    trainer.fit(6)
    assert seen == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert trainer.lr_at(10_000) == 1e-3


def test_gradients_are_clipped(monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm):
        parameters = list(parameters)
        clip(parameters, max_norm)
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters])).item())

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    make_trainer(config=TrainConfig(lr=1e-3, grad_clip=1e-3)).fit(2)
    assert norms and max(norms) <= 1e-3 * 1.0001


def test_preview_sees_the_ema_model_and_leaves_training_unchanged(tmp_path):
    calls = []

    def preview(model, step):
        calls.append((model, step))
        torch.randn(100)  # draws from the global generator, which must be restored

    random.seed(1), np.random.seed(1)
    with_preview = make_trainer(preview=preview, config=TrainConfig(preview_every=2))
    with_preview.fit(5)
    random.seed(1), np.random.seed(1)
    without = make_trainer(config=TrainConfig(preview_every=2))
    without.fit(5)
    assert [step for _, step in calls] == [2, 4]
    assert calls[0][0] is with_preview.ema
    assert_same_state(with_preview, without)


def test_resume_refuses_a_different_train_config(tmp_path):
    make_trainer(tmp_path).fit(2)
    other = make_trainer(tmp_path, config=TrainConfig(lr=5e-3, warmup_steps=3, ema_decay=0.9, checkpoint_every=2, seed=7))
    with pytest.raises(ValueError, match=r"lr: checkpoint 0.01, now 0.005"):
        other.resume()


def test_a_nan_loss_stops_training_with_advice():
    def nan_loss(model, batch, generator):
        return model(batch["x"]).sum() * float("nan")

    with pytest.raises(FloatingPointError, match="lower lr"):
        make_trainer(loss=nan_loss).fit(1)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="scalar"):
        make_trainer(loss=lambda model, batch, generator: model(batch["x"])).fit(1)
    with pytest.raises(TypeError, match="nn.Module"):
        Trainer("not a model", loss_fn, batches)
    with pytest.raises(ValueError, match="steps"):
        make_trainer().fit(-1)
    with pytest.raises(ValueError, match="out_dir"):
        make_trainer().save()
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)


def test_a_time_limit_stops_training_and_saves(tmp_path, monkeypatch):
    clock = iter(range(10_000))
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(clock)))  # every step takes 1 s
    trainer = make_trainer(tmp_path)
    trainer.fit(100, time_limit=3.5)
    assert trainer.step == 4 and trainer.elapsed == 4.0  # 3 s < 3.5 s: a fourth step starts
    assert load_checkpoint(tmp_path / "checkpoint.safetensors").step == 4
    trainer.fit(100, time_limit=3.5)  # the limit counts training time over resumes: nothing left
    assert trainer.step == 4
    trainer.fit(6, time_limit=60.0)  # the step target still comes first
    assert trainer.step == 6
    with pytest.raises(ValueError, match="time_limit"):
        trainer.fit(10, time_limit=-1)


def test_a_cpu_limit_stops_training_and_survives_a_resume(tmp_path, monkeypatch):
    cpu_clock = iter(range(0, 20_000, 2))
    monkeypatch.setattr(train_module.time, "process_time", lambda: float(next(cpu_clock)))  # every step takes 2 CPU-s
    trainer = make_trainer(tmp_path)
    trainer.fit(100, cpu_limit=5.0, time_limit=1e9)
    assert trainer.step == 3 and trainer.cpu_elapsed == 6.0  # 4 s < 5 s: a third step starts
    resumed = make_trainer(tmp_path)
    resumed.resume()
    assert resumed.cpu_elapsed == 6.0  # the budget counts CPU time over resumes: nothing left
    resumed.fit(100, cpu_limit=5.0)
    assert resumed.step == 3
    resumed.fit(100, cpu_limit=9.0)
    assert resumed.step == 5 and resumed.cpu_elapsed == 10.0
    with pytest.raises(ValueError, match="cpu_limit"):
        resumed.fit(10, cpu_limit=float("nan"))
