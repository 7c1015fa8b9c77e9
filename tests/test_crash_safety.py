"""Crash safety (issue 16): one save's files agree, resume repairs, orphans are removed,
an incomplete training state is refused by name."""

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from vdmcourse.cli import main
from vdmcourse.pretrained import atomic_path, load_checkpoint, remove_stale_temporaries
from vdmcourse.train import TrainConfig, Trainer


@dataclass(frozen=True)
class TinyConfig:
    width: int = 8


class Tiny(nn.Module):
    def __init__(self, config: TinyConfig = TinyConfig()):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(4, config.width), nn.SiLU(), nn.Linear(config.width, 4))

    def forward(self, x):
        return self.net(x)


def batches(generator):
    return torch.randn(8, 4, generator=generator)


def loss_fn(model, x, generator):
    return ((model(x) - x.flip(-1)) ** 2).mean()


def make_trainer(out_dir, **kwargs):
    torch.manual_seed(0)
    config = TrainConfig(lr=1e-2, warmup_steps=1, checkpoint_every=2)
    return Trainer(Tiny(), loss_fn, batches, config, out_dir=out_dir, device="cpu", progress=False, **kwargs)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def drop_tensors(path, prefix):
    """Rewrite a checkpoint without the tensors whose names start with ``prefix`` (and
    without its content hash, as a hand-edited file would be)."""
    with safe_open(path, "pt") as handle:
        metadata = {"vdmcourse": handle.metadata()["vdmcourse"]}
    tensors = {k: v for k, v in load_file(path).items() if not k.startswith(prefix)}
    save_file(tensors, path, metadata=metadata)


def test_on_save_runs_at_every_save(tmp_path):
    steps = []
    make_trainer(tmp_path, on_save=lambda trainer: steps.append(trainer.step)).fit(5)
    assert steps == [2, 4, 5]


def test_resume_rewrites_files_that_lag_behind_the_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.fit(2)
    stale_model = (tmp_path / "model.safetensors").read_bytes()
    trainer.fit(4)
    (tmp_path / "model.safetensors").write_bytes(stale_model)  # as if killed between the two writes
    (tmp_path / "loss.csv").write_text("step,loss\n1,0.5\n")
    resumed = make_trainer(tmp_path).resume()
    assert sorted(resumed.repaired) == ["loss.csv", "model.safetensors"]
    assert load_checkpoint(tmp_path / "model.safetensors").step == 4
    assert len((tmp_path / "loss.csv").read_text().splitlines()) == 5
    assert make_trainer(tmp_path).resume().repaired == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    orphan = tmp_path / f".checkpoint.safetensors.tmp-{dead_pid()}"
    orphan.write_bytes(b"half a checkpoint")
    mine = tmp_path / ".loss.csv.tmp-1"  # PID 1 is alive: not ours to remove
    mine.write_text("x")
    keep = tmp_path / "notes.tmp-3"
    keep.write_text("x")
    trainer = make_trainer(tmp_path)
    assert trainer.removed_temporaries == [orphan] and not orphan.exists()
    assert mine.exists() and keep.exists()
    assert remove_stale_temporaries(tmp_path) == []


def test_atomic_path_fsyncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    import os

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.path.isdir(f"/proc/self/fd/{fd}")), real(fd)))
    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    assert synced == [False, True]  # the file, then its folder


def test_resume_refuses_a_missing_optimiser_state_naming_the_parameter(tmp_path):
    make_trainer(tmp_path).fit(2)
    drop_tensors(tmp_path / "checkpoint.safetensors", "optimizer.2.")  # net.2.weight
    with pytest.raises(ValueError, match=r"lacks the optimiser state of net\.2\.weight"):
        make_trainer(tmp_path).resume()


@pytest.mark.parametrize("prefix", ["rng.data", "rng.torch", "history.loss"])
def test_resume_refuses_missing_rng_and_history_tensors(tmp_path, prefix):
    make_trainer(tmp_path).fit(2)
    drop_tensors(tmp_path / "checkpoint.safetensors", prefix)
    with pytest.raises(ValueError, match=f"lacks {prefix}"):
        make_trainer(tmp_path).resume()


def test_cli_resume_repairs_run_json_and_removes_orphans(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "image-tiny", "--steps", "2", "--checkpoint-every", "1", "--out", str(out), "--no-progress"]) == 0
    (out / "run.json").unlink()  # as after a kill -9 before the run record was written
    (out / f".model.safetensors.tmp-{dead_pid()}").write_bytes(b"x")
    assert main(["train", "--preset", "image-tiny", "--steps", "2", "--resume", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "removed 1 temporary file" in printed
    assert json.loads((out / "run.json").read_text())["steps"] == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_checkpoint_every_sets_how_often_train_saves(tmp_path, monkeypatch):
    saves = []
    original = Trainer.save

    def counting(self, path=None):
        saves.append(self.step)
        return original(self, path)

    monkeypatch.setattr(Trainer, "save", counting)
    argv = ["train", "--preset", "image-tiny", "--steps", "3", "--checkpoint-every", "1", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    assert saves == [1, 2, 3]
