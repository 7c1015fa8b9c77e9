import torch
import pytest

from vdmcourse import course


def test_quick_mode_reads_the_environment_each_call(monkeypatch):
    monkeypatch.setenv("VDM_QUICK", "1")
    assert course.is_quick() and course.budget(full=1000, quick=3) == 3
    for off in ["0", "", "false", "No"]:
        monkeypatch.setenv("VDM_QUICK", off)
        assert not course.is_quick() and course.budget(full=1000, quick=3) == 1000
    monkeypatch.delenv("VDM_QUICK")
    assert not course.is_quick()


def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("VDM_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert course.pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert course.pick_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert course.pick_device() == torch.device("cuda")
    monkeypatch.setenv("VDM_DEVICE", "cpu")
    assert course.pick_device() == torch.device("cpu")


def test_pick_device_refuses_a_missing_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        course.pick_device("cuda")


def test_seed_everything_makes_draws_repeatable():
    g1 = course.seed_everything(7)
    a = torch.randn(4), torch.randn(4, generator=g1)
    g2 = course.seed_everything(7)
    b = torch.randn(4), torch.randn(4, generator=g2)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        course.seed_everything(seed)


def test_value_range_conversion_round_trips():
    x = torch.rand(2, 3, 1, 4, 4)
    y = course.to_model_range(x)
    assert y.min() >= -1 and y.max() <= 1
    torch.testing.assert_close(course.to_unit_range(y), x)
    assert course.to_model_range(torch.tensor([0.0, 1.0])).tolist() == [-1.0, 1.0]


def test_paths_point_into_the_repository():
    assert course.DATA_DIR.name == "data"
    assert course.CHECKPOINT_DIR.parent == course.DATA_DIR
