import pytest
import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.metrics.corruptions import corrupt
from vdmcourse.metrics.features import load_evaluator
from vdmcourse.metrics.temporal import (
    count_blobs,
    digit_count_consistency,
    dynamic_degree,
    flicker,
    frame_classes,
    identity_left_out,
    identity_persistence,
    ink_mass_variation,
    shape_change,
)
from vdmcourse.metrics.physics import track_digits

CPU = MovingMNISTConfig.cpu(split="test")


@pytest.fixture(scope="module")
def clips():
    return generate_clips(48, CPU, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def evaluator():
    return load_evaluator()


def test_flicker_is_near_zero_on_real_clips_and_grows_with_background_noise(clips):
    real = flicker(clips.video)
    assert real.shape == (48,) and real.max() < 1e-3
    g = torch.Generator().manual_seed(1)
    shimmer = (clips.video + 0.05 * torch.rand(clips.video.shape, generator=g)).clamp(0, 1)
    assert flicker(shimmer).mean() > 20 * real.mean() + 0.01


def test_flicker_ignores_motion_of_the_digits_themselves(clips):
    # Shuffling frames moves digits about but keeps the background static.
    shuffled = clips.video[:, torch.randperm(CPU.frames, generator=torch.Generator().manual_seed(2))]
    assert flicker(shuffled).max() < 1e-3


def test_identity_persistence_is_one_on_real_clips(clips, evaluator):
    assert identity_persistence(clips.video, evaluator, 1).min().item() == 1.0


def test_identity_persistence_drops_when_a_digit_is_swapped_mid_clip(clips, evaluator):
    swapped = corrupt(clips, "swap", 4, CPU, generator=torch.Generator().manual_seed(3))  # last 5 of 10 frames
    assert identity_persistence(swapped, evaluator, 1).mean() < 0.6


def test_identity_persistence_counts_a_vanished_digit_as_a_miss(clips, evaluator):
    deleted = corrupt(clips, "delete", 2, CPU)  # last 4 of 10 frames empty
    torch.testing.assert_close(identity_persistence(deleted, evaluator, 1), torch.full((48,), 0.6))


def test_dynamic_degree_is_high_on_real_clips_and_zero_on_a_frozen_one(clips):
    assert dynamic_degree(clips.video).mean() > 0.95
    frozen = clips.video[:, :1].expand_as(clips.video)
    assert dynamic_degree(frozen).max() == 0.0


def test_ink_mass_is_steady_on_real_single_digit_clips_and_not_when_a_digit_vanishes(clips):
    assert ink_mass_variation(clips.video).max() < 1e-4
    assert ink_mass_variation(corrupt(clips, "delete", 1, CPU)).min() > 0.3


def test_count_blobs_counts_separate_digits_and_ignores_specks():
    frames = torch.zeros(3, 32, 32)
    frames[0, 2:10, 2:6] = 1.0
    frames[1, 2:10, 2:6] = 1.0
    frames[1, 20:28, 20:26] = 1.0
    frames[2, 5, 5] = 1.0  # a speck, below min_area
    assert count_blobs(frames).tolist() == [1, 2, 0]


def test_digit_count_consistency_is_one_on_real_single_digit_clips(clips):
    assert digit_count_consistency(clips.video, 1).min() == 1.0


def test_bad_input_is_refused_clearly(clips, evaluator):
    with pytest.raises(ValueError, match="at least 2 frames"):
        flicker(clips.video[:, :1])
    with pytest.raises(ValueError, match=r"\(B, T, 1, H, W\)"):
        dynamic_degree(clips.video[:, :, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ink_mass_variation(clips.video * 2 - 1)


def test_shape_change_is_zero_on_real_one_digit_clips_even_through_bounces(clips):
    change = shape_change(clips.video)
    assert change.shape == (48,) and change.max().item() < 1e-6


def test_shape_change_sees_a_redrawn_digit_that_a_translation_cannot_explain(clips):
    # Frames taken from other clips (other digits, other hands): about as bad as it gets.
    mixed = torch.stack([clips.video[(torch.arange(48) + k) % 48, k] for k in range(CPU.frames)], dim=1)
    assert shape_change(mixed).mean() > 0.6
    # One redrawn frame in ten changes two of the nine steps.
    one = clips.video.clone()
    one[:, 5] = clips.video[(torch.arange(48) + 1) % 48, 5]
    assert 0.1 < shape_change(one).mean() < shape_change(mixed).mean()


def test_shape_change_grows_with_a_blur_that_changes_the_strokes(clips):
    levels = [shape_change(corrupt(clips, "blur", level, CPU)).mean().item() for level in range(1, 4)]
    assert 0 < levels[0] < levels[1] < levels[2]


def test_shape_change_needs_a_shift_as_large_as_the_motion(clips):
    # The cpu preset moves digits 2 px a frame: with no shift allowed, motion counts as change.
    assert shape_change(clips.video, max_shift=0).mean() > 0.3
    with pytest.raises(ValueError, match="max_shift must be an int >= 0"):
        shape_change(clips.video, max_shift=-1)
    with pytest.raises(ValueError, match="at least 2 frames"):
        shape_change(clips.video[:, :1])


def _crossing_pair() -> torch.Tensor:
    """Two-digit clips (24 of them) on 32x32, where digits often touch: frames the tracker
    cannot split cleanly."""
    config = MovingMNISTConfig.cpu(digits=2, digit_size=12, split="test")
    return generate_clips(24, config, generator=torch.Generator().manual_seed(5)).video


def test_identity_left_out_is_zero_for_one_digit_and_positive_when_digits_touch(clips):
    # one digit: nothing can touch it, so identity counts every frame
    assert identity_left_out(clips.video, 1).max().item() == 0.0
    pair = _crossing_pair()
    left_out = identity_left_out(pair, 2)
    assert left_out.shape == (24,) and 0 < left_out.mean() < 1
    tracks = track_digits(pair, 2)
    seen = torch.isfinite(tracks.centres).all(-1)
    torch.testing.assert_close(left_out, (seen & ~tracks.clean).float().mean(1).mean(1))


def test_identity_left_out_counts_a_clip_with_no_clean_digit_as_all_left_out(clips):
    blank = torch.zeros(2, CPU.frames, 1, 32, 32)
    torch.testing.assert_close(identity_left_out(blank, 1), torch.ones(2))


def test_identity_counted_as_miss_equals_skip_when_nothing_is_left_out(clips, evaluator):
    swapped = corrupt(clips, "swap", 4, CPU, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(identity_persistence(swapped, evaluator, 1, left_out="miss"), identity_persistence(swapped, evaluator, 1))


def test_identity_counted_as_miss_charges_the_frames_skip_leaves_out(evaluator):
    pair = _crossing_pair()
    tracks = track_digits(pair, 2)
    skip = identity_persistence(pair, evaluator, 2, tracks=tracks)
    miss = identity_persistence(pair, evaluator, 2, tracks=tracks, left_out="miss")
    left_out = identity_left_out(pair, 2, tracks=tracks)
    scored = skip.isfinite()
    assert (miss[scored] <= skip[scored] + 1e-6).all()
    assert (miss[~scored] == 0).all() and (left_out[~scored] == 1).all()  # "skip" dropped these clips altogether
    assert (miss[left_out > 0] < skip[left_out > 0]).any()  # leaving frames out is what raised "skip"
    torch.testing.assert_close(miss[left_out == 0], skip[left_out == 0])


def test_identity_counted_as_miss_scores_a_never_seen_digit_zero_not_nan(evaluator):
    blank = torch.zeros(3, CPU.frames, 1, 32, 32)
    assert identity_persistence(blank, evaluator, 1).isnan().all()
    torch.testing.assert_close(identity_persistence(blank, evaluator, 1, left_out="miss"), torch.zeros(3))
    with pytest.raises(ValueError, match="left_out must be 'skip' or 'miss'"):
        identity_persistence(blank, evaluator, 1, left_out="drop")


def test_frame_classes_reads_each_digit_of_a_real_clip_as_its_label(clips, evaluator):
    tracks = track_digits(clips.video, 1)
    classes = frame_classes(clips.video, evaluator, tracks)
    assert classes.shape == (48, CPU.frames, 1) and classes.dtype == torch.int64
    assert (classes == clips.labels[:, None]).float().mean() > 0.9
