import pytest
import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.metrics.corruptions import CORRUPTIONS, LEVELS, corrupt, frames_affected, reverse_clips, spearman

CPU = MovingMNISTConfig.cpu(split="test")


@pytest.fixture(scope="module")
def clips():
    return generate_clips(8, CPU, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_level_zero_is_the_clean_clip_and_higher_levels_change_more(name, clips):
    changes = []
    for level in LEVELS:
        video = corrupt(clips, name, level, CPU, generator=torch.Generator().manual_seed(level))
        assert video.shape == clips.video.shape and video.min() >= 0 and video.max() <= 1
        changes.append((video - clips.video).abs().mean().item())
    assert changes[0] == 0.0
    assert all(change > 0 for change in changes[1:])
    assert changes[-1] >= changes[1]


@pytest.mark.parametrize("name", ["freeze", "shuffle", "reverse"])
def test_temporal_corruptions_only_reorder_real_frames(name, clips):
    video = corrupt(clips, name, 4, CPU, generator=torch.Generator().manual_seed(1))
    for clip in range(len(clips)):
        for frame in video[clip]:
            assert any(torch.equal(frame, real) for real in clips.video[clip])


def test_freeze_holds_the_last_k_frames():
    clips = generate_clips(2, CPU, generator=torch.Generator().manual_seed(2))
    k = frames_affected(2, CPU.frames)
    video = corrupt(clips, "freeze", 2, CPU)
    for t in range(CPU.frames - k, CPU.frames):
        torch.testing.assert_close(video[:, t], clips.video[:, CPU.frames - 1 - k])


def test_frames_affected_per_corruption_for_ten_frames():
    assert [frames_affected(level, 10) for level in LEVELS] == [0, 2, 4, 6, 8]
    assert [frames_affected(level, 10, "reverse") for level in LEVELS] == [0, 1, 2, 3, 4]
    assert [frames_affected(level, 10, "swap") for level in LEVELS] == [0, 1, 2, 4, 5]


def test_reverse_turns_round_in_mid_air():
    clips = generate_clips(1, CPU, generator=torch.Generator().manual_seed(4))
    video = corrupt(clips, "reverse", 2, CPU)  # the last 2 frames replay frames 6 and 5
    torch.testing.assert_close(video[:, 8:], clips.video[:, [6, 5]])


def test_swap_changes_the_digit_class_but_not_the_trajectory(clips):
    video = corrupt(clips, "swap", 4, CPU, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(video[:, :2], clips.video[:, :2])
    assert not torch.equal(video[:, -1], clips.video[:, -1])


def test_reverse_clips_flips_time():
    video = torch.arange(6.0).view(1, 6, 1, 1, 1)
    assert reverse_clips(video).flatten().tolist() == [5, 4, 3, 2, 1, 0]


def test_spearman_of_monotone_anti_monotone_and_tied_sequences():
    assert spearman([0, 1, 2, 3], [1, 5, 9, 100]) == pytest.approx(1.0)
    assert spearman([0, 1, 2, 3], [3, 2, 1, 0]) == pytest.approx(-1.0)
    # Ties take their average rank: ranks of y are (1.5, 1.5, 3, 4).
    assert spearman([0, 1, 2, 3], [0, 0, 1, 2]) == pytest.approx(0.9486833, rel=1e-6)
    assert spearman([0, 1, 2], [1, 1, 1]) != spearman([0, 1, 2], [1, 1, 1])  # NaN for a constant


def test_bad_input_is_refused_clearly(clips):
    with pytest.raises(ValueError, match="name must be one of"):
        corrupt(clips, "rotate", 1, CPU)
    with pytest.raises(ValueError, match="level must be one of"):
        corrupt(clips, "blur", 5, CPU)
    with pytest.raises(TypeError, match="Clips"):
        corrupt(clips.video, "blur", 1, CPU)
    with pytest.raises(ValueError, match="not drawn with this config"):
        corrupt(clips, "blur", 1, MovingMNISTConfig.srivastava())
