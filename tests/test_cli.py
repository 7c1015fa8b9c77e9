"""python -m vdmcourse: train, resume, sample, and learner-friendly errors."""

import json
import subprocess
import sys

import imageio.v3 as iio
import pytest
import torch

from vdmcourse import cli
from vdmcourse.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--preset", "image-tiny", "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    return out


def test_train_writes_checkpoint_weights_loss_and_run_record(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"checkpoint.safetensors", "model.safetensors", "loss.csv", "run.json"} <= names
    record = json.loads((run_dir / "run.json").read_text())
    assert record["steps"] == 3 and record["preset"] == "image-tiny"
    assert record["command"].startswith("python -m vdmcourse train --preset image-tiny --steps 3")
    assert {"cpu", "cores", "torch"} <= set(record["machine"])


def test_train_suggests_sampling_only_for_generative_presets(tmp_path, capsys):
    assert main(["train", "--preset", "image-tiny", "--steps", "1", "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert "Sample with" in capsys.readouterr().out
    assert main(["train", "--preset", "evaluator-cpu", "--steps", "1", "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert "Sample with" not in capsys.readouterr().out
    evaluator = str(tmp_path / "b" / "model.safetensors")
    assert main(["sample", "--checkpoint", evaluator, "--out", str(tmp_path / "x.gif")]) == 2
    assert "nothing to sample" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", evaluator, "--evaluator", evaluator]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_train_writes_sample_previews_on_request(tmp_path):
    argv = ["train", "--preset", "image-tiny", "--steps", "2", "--out", str(tmp_path), "--preview-every", "1", "--no-progress"]
    assert main(argv) == 0
    previews = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert previews == ["step_000001.gif", "step_000002.gif"]
    assert iio.imread(tmp_path / "samples" / previews[0], index=None).ndim == 4  # (frames, H, W, channels)


def test_train_refuses_to_overwrite_a_run_and_resumes_on_request(run_dir, capsys):
    assert main(["train", "--preset", "image-tiny", "--steps", "4", "--out", str(run_dir), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--preset", "image-tiny", "--steps", "4", "--out", str(run_dir), "--resume", "--no-progress"]) == 0
    assert json.loads((run_dir / "run.json").read_text())["steps"] == 4


def test_sample_writes_a_gif_and_a_png(run_dir, tmp_path):
    gif = tmp_path / "clips.gif"
    args = ["sample", "--checkpoint", str(run_dir / "model.safetensors"), "--steps", "2", "--frames", "3"]
    assert main([*args, "--out", str(gif), "--num", "2", "--label", "3"]) == 0
    assert iio.imread(gif, index=None).shape[0] == 3  # one GIF frame per video frame
    png = tmp_path / "strip.png"
    assert main([*args, "--out", str(png)]) == 0
    assert png.stat().st_size > 0
    assert main([*args, "--guidance-interval", "0.5", "1", "--out", str(tmp_path / "interval.gif"), "--num", "1"]) == 0
    # The few-step multistep solver is offered too, beside the lessons' four samplers.
    assert main([*args, "--sampler", "dpm++2m", "--out", str(tmp_path / "dpm.gif"), "--num", "1"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--preset", "image-huge"], "known presets"),
        (["sample", "--checkpoint", "missing.safetensors", "--out", "x.gif"], "no checkpoint file"),
        (["sample", "--checkpoint", "image-tiny", "--out", "x.mp3"], "must end in .gif or .png"),
        (["evaluate", "--clips", "x.npy", "--evaluator", "missing.safetensors"], "no checkpoint file"),
    ],
)
def test_mistakes_end_with_a_one_line_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_bad_guidance_interval_is_refused_by_its_option_name(run_dir, capsys):
    argv = ["sample", "--checkpoint", str(run_dir / "model.safetensors"), "--out", "x.gif", "--guidance-interval", "0.8", "0.2"]
    assert main(argv) == 2
    assert "--guidance-interval must be LOW HIGH with 0 <= LOW <= HIGH <= 1; got [0.8, 0.2]" in capsys.readouterr().err


def test_sampling_uses_the_recorded_guidance_interval_unless_told_otherwise(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "sample", lambda model, shape, **kwargs: seen.append(kwargs["guidance_interval"]) or torch.zeros(shape))
    info = {"objective": "flow", "sampler": "euler", "sample_steps": 2, "guidance_scale": 3.0}
    labels = torch.tensor([1])
    cli._draw(None, info, (1, 2, 1, 4, 4), labels, 0)
    cli._draw(None, {**info, "guidance_interval": [0.3, 1.0]}, (1, 2, 1, 4, 4), labels, 0)
    cli._draw(None, {**info, "guidance_interval": [0.3, 1.0]}, (1, 2, 1, 4, 4), labels, 0, guidance_interval=[0.0, 1.0])
    assert seen == [(0.0, 1.0), (0.3, 1.0), [0.0, 1.0]]


def test_a_bad_label_is_refused(run_dir, capsys):
    argv = ["sample", "--checkpoint", str(run_dir / "model.safetensors"), "--out", "x.gif", "--label", "12"]
    assert main(argv) == 2
    assert "digit 0-9" in capsys.readouterr().err


def test_help_lists_the_commands_and_presets():
    result = subprocess.run([sys.executable, "-m", "vdmcourse", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "image-cpu" in result.stdout and "--resume" in result.stdout


def test_train_stops_at_a_time_budget(tmp_path, capsys):
    # A budget of 0.6 ms: one step starts, then the time is up.
    assert main(["train", "--preset", "image-tiny", "--minutes", "0.00001", "--out", str(tmp_path), "--no-progress"]) == 0
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["steps"] == 1 and "--minutes 0.00001" in record["command"]
    assert main(["train", "--preset", "image-tiny", "--minutes", "0", "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "--minutes must be a positive number" in capsys.readouterr().err


def test_train_stops_at_a_cpu_budget_and_records_cpu_time(tmp_path, capsys):
    # A CPU budget of 0.6 ms: one step starts, then the budget is spent.
    assert main(["train", "--preset", "image-tiny", "--cpu-minutes", "0.00001", "--out", str(tmp_path), "--no-progress"]) == 0
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["steps"] == 1 and record["train_cpu_s"] >= 0 and "--cpu-minutes 0.00001" in record["command"]
    assert "CPU-min" in capsys.readouterr().out
    assert main(["train", "--preset", "image-tiny", "--cpu-minutes", "-1", "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "--cpu-minutes must be a positive number" in capsys.readouterr().err
