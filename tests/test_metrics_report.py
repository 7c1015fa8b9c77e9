import numpy as np
import pytest
import torch

from vdmcourse.cli import main
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.metrics import METRICS, Evaluator, EvaluatorConfig, evaluate_videos, format_report, load_evaluator, video_features
from vdmcourse.metrics.features import evaluator_accuracy
from vdmcourse.pretrained import read_manifest, save_checkpoint

CPU = MovingMNISTConfig.cpu(split="test")


@pytest.fixture(scope="module")
def evaluator():
    # The report's plumbing does not depend on training: a seeded random network will do.
    torch.manual_seed(0)
    return Evaluator(EvaluatorConfig()).eval()


@pytest.fixture(scope="module")
def shuffled():
    clips = generate_clips(70, CPU, generator=torch.Generator().manual_seed(9))
    return clips.video[:, torch.randperm(CPU.frames, generator=torch.Generator().manual_seed(1))]


def test_evaluate_videos_reports_every_metric_with_the_real_floor(evaluator, shuffled):
    results = evaluate_videos(shuffled, evaluator, digits=1, resamples=10)
    assert results["n"] == 70 and results["dim"] == 64
    for side in ("videos", "real"):
        assert set(METRICS) <= set(results[side])
    assert results["videos"]["physics_px"] > 3 * results["real"]["physics_px"]
    assert 0 <= results["videos"]["frechet_low"] <= results["videos"]["frechet_high"]
    for side in ("videos", "real"):
        assert results[side]["kid_low"] < results[side]["kid"] < results[side]["kid_high"]
    table = format_report(results, title="shuffled")
    assert "| physics_px |" in table and "not FVD" in table and "70 real clips" in table
    kid_row = next(line for line in table.splitlines() if line.startswith("| kid |"))
    assert f"[{results['real']['kid_low']:.3g}, {results['real']['kid_high']:.3g}]" in kid_row


def test_the_evaluator_refuses_clips_of_another_size(evaluator):
    with pytest.raises(ValueError, match=r"trained on clips of shape \(B, 10, 1, 32, 32\)"):
        video_features(evaluator, torch.zeros(4, 8, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 10, 1, 32, 32\)"):
        evaluator(torch.zeros(4, 10, 1, 64, 64))


def test_cli_evaluate_scores_a_clips_file(evaluator, shuffled, tmp_path, capsys):
    save_checkpoint(tmp_path / "evaluator.safetensors", evaluator)
    np.save(tmp_path / "clips.npy", (shuffled * 255).round().to(torch.uint8).numpy())
    status = main(["evaluate", "--clips", str(tmp_path / "clips.npy"), "--evaluator", str(tmp_path / "evaluator.safetensors")])
    assert status == 0
    out = capsys.readouterr().out
    assert "| frechet |" in out and "clips.npy" in out


def test_cli_evaluate_refuses_bad_files_with_a_message(evaluator, tmp_path, capsys):
    save_checkpoint(tmp_path / "evaluator.safetensors", evaluator)
    (tmp_path / "clips.txt").write_text("not clips")
    assert main(["evaluate", "--clips", str(tmp_path / "clips.txt"), "--evaluator", str(tmp_path / "evaluator.safetensors")]) == 2
    assert ".npy or .safetensors" in capsys.readouterr().err
    np.save(tmp_path / "wrong.npy", np.zeros((70, 8, 1, 32, 32), dtype=np.float32))
    assert main(["evaluate", "--clips", str(tmp_path / "wrong.npy"), "--evaluator", str(tmp_path / "evaluator.safetensors")]) == 2
    assert "trained on clips of shape" in capsys.readouterr().err


def test_the_shipped_evaluator_comes_with_its_manifest_entry():
    entry = next(e for e in read_manifest()["checkpoints"] if e["name"] == "evaluator-cpu")
    assert "python -m vdmcourse train --preset evaluator-cpu" in entry["command"]
    assert entry["metrics"]["digit_accuracy"] > 0.85 and entry["metrics"]["held_out_clips"] >= 1000
    assert isinstance(load_evaluator(), Evaluator)


def test_the_shipped_evaluator_scores_held_out_clips_as_its_manifest_says():
    entry = next(e for e in read_manifest()["checkpoints"] if e["name"] == "evaluator-cpu")
    scores = evaluator_accuracy(load_evaluator(), clips=128)
    assert scores["held_out_clips"] == 128
    assert abs(scores["digit_accuracy"] - entry["metrics"]["digit_accuracy"]) < 0.05
    assert abs(scores["presence_accuracy"] - entry["metrics"]["presence_accuracy"]) < 0.1
    assert scores["velocity_mae_px"] < 1.0
    untrained = evaluator_accuracy(Evaluator(EvaluatorConfig()), clips=64)
    assert untrained["digit_accuracy"] < 0.5 and untrained["presence_accuracy"] < 0.5
