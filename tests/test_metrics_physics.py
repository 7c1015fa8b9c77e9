import math

import pytest
import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips, render_clips
from vdmcourse.metrics.physics import (
    constant_velocity_prediction,
    fit_bounces,
    ink_centroid,
    physics_scores,
    track_digits,
)

CPU = MovingMNISTConfig.cpu(split="test")


@pytest.fixture(scope="module")
def clips():
    return generate_clips(64, CPU, generator=torch.Generator().manual_seed(0))


def test_ink_centroid_of_a_single_pixel_is_that_pixel():
    image = torch.zeros(5, 7)
    image[3, 4] = 1.0
    torch.testing.assert_close(ink_centroid(image), torch.tensor([3.0, 4.0]))
    assert torch.isnan(ink_centroid(torch.zeros(5, 7))).all()


def test_fit_recovers_generator_ground_truth_exactly(clips):
    # Ground-truth corner positions plus the digit's centroid offset are what a
    # perfect tracker would see; the fitted law must reproduce them (up to the grid step).
    offset = ink_centroid(clips.digits)[:, 0]  # (N, 2)
    centres = clips.positions[:, :, 0] + offset[:, None]
    used = torch.ones(centres.shape[:2], dtype=torch.bool)
    fit = fit_bounces(centres, used, offset - 0.01, offset + 0.01, CPU.free_range)
    assert fit.residual.max() < 0.1
    torch.testing.assert_close(fit.velocity, clips.velocities[:, 0, 0], atol=0.02, rtol=0)


def test_tracking_finds_the_true_centroids_of_one_digit(clips):
    tracks = track_digits(clips.video, 1)
    truth = clips.positions.round() + ink_centroid(clips.digits)[:, None]  # pasting rounds the corner
    assert tracks.clean.all()
    torch.testing.assert_close(tracks.centres, truth, atol=1e-4, rtol=0)


def test_physics_is_near_zero_on_real_clips_and_large_on_shuffled_ones(clips):
    real = physics_scores(clips.video, 1, CPU.digit_size)
    assert real.residual_px.max() < 0.6  # pixel rounding of the pasted positions only
    assert real.bounce_accuracy > 0.95
    shuffled = clips.video[:, torch.randperm(CPU.frames, generator=torch.Generator().manual_seed(1))]
    broken = physics_scores(shuffled, 1, CPU.digit_size)
    assert broken.residual_px.mean() > 5 * real.residual_px.mean()
    assert broken.bounce_accuracy < 0.5


def test_a_mid_air_reversal_breaks_the_bounce_law(clips):
    order = torch.tensor([0, 1, 2, 3, 4, 5, 6, 5, 4, 3])  # turns round at frame 6, far from walls or not
    scores = physics_scores(clips.video[:, order], 1, CPU.digit_size)
    real = physics_scores(clips.video, 1, CPU.digit_size)
    assert scores.residual_px.mean() > 3 * real.residual_px.mean()


def test_two_digits_are_tracked_through_a_crossing():
    config = MovingMNISTConfig.srivastava(frames=12, split="test")
    clips = generate_clips(24, config, generator=torch.Generator().manual_seed(2))
    scores = physics_scores(clips.video, 2, config.digit_size)
    assert scores.residual_px.nanmedian() < 0.6
    assert scores.bounce_accuracy > 0.8


def test_constant_velocity_prediction_beats_copying_the_last_frame_by_far():
    config = MovingMNISTConfig.cpu(frames=20, split="test")
    clips = generate_clips(16, config, generator=torch.Generator().manual_seed(3))
    predicted = constant_velocity_prediction(clips.video[:, :10], 10, 1, config.digit_size)
    assert predicted.shape == (16, 10, 1, 32, 32)
    error = (predicted - clips.video[:, 10:]).square().mean()
    copy_error = (clips.video[:, 9:10] - clips.video[:, 10:]).square().mean()
    # Not exact from pixels alone: where the box sits around the ink is a guess, so
    # bounces land up to a pixel off.
    assert error < 0.4 * copy_error


def test_renders_of_a_digit_moving_off_law_score_worse_than_lawful_ones(clips):
    # Same digit, same start, but a random walk instead of constant velocity.
    walk = clips.positions[:8, :1].repeat(1, CPU.frames, 1, 1)
    walk = (walk + torch.randn(walk.shape, generator=torch.Generator().manual_seed(4)).cumsum(1) * 2).clamp(0, CPU.free_range)
    video = render_clips(clips.digits[:8], walk, CPU.canvas)
    assert physics_scores(video, 1, CPU.digit_size).residual_px.mean() > 1.0


def test_bad_input_is_refused_clearly(clips):
    with pytest.raises(ValueError, match=r"\(B, T, 1, H, W\)"):
        track_digits(clips.video[:, :, 0], 1)
    with pytest.raises(ValueError, match="time axis"):
        physics_scores(clips.video.permute(0, 2, 1, 3, 4).repeat(1, 2, 1, 1, 1), 1, 16)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        physics_scores(clips.video * 2 - 1, 1, 16)
    with pytest.raises(TypeError, match="float"):
        physics_scores((clips.video * 255).to(torch.uint8), 1, 16)
    with pytest.raises(ValueError, match="digit_size"):
        physics_scores(clips.video, 1, 40)
    assert not math.isnan(physics_scores(clips.video[:2], 1, 16).residual_px[0])
