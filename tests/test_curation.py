import pytest
import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.data.curation import (
    StaticClipFilter,
    StridedMovingMNIST,
    find_duplicates,
    frame_difference,
    motion_score,
    nearest_neighbours,
    shift_tolerant_distance,
    stride_clips,
)

CPU = MovingMNISTConfig.cpu(split="test")


@pytest.fixture(scope="module")
def moving():
    return generate_clips(32, CPU, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def static():
    return generate_clips(32, MovingMNISTConfig.cpu(split="test", speed=0.0), generator=torch.Generator().manual_seed(1))


def test_motion_score_measures_speed_in_pixels_per_frame(moving):
    score = motion_score(moving.video)
    assert score.shape == (32,)
    assert 1.6 < score.min() and score.max() < 2.4  # 2 px/frame, moved by whole pixels


def test_motion_score_of_a_known_shift_is_its_length():
    video = torch.zeros(1, 2, 1, 32, 32)
    video[0, 0, 0, 10:16, 10:14] = 1
    video[0, 1, 0, 13:19, 14:18] = 1  # 3 down, 4 right
    torch.testing.assert_close(motion_score(video), torch.tensor([5.0]))


def test_static_clips_score_below_moving_ones_even_with_pixel_noise(moving, static):
    noise = 0.1 * torch.randn(static.video.shape, generator=torch.Generator().manual_seed(2))
    noisy_static = (static.video + noise).clamp(0, 1)
    assert motion_score(static.video).max() == 0
    assert motion_score(noisy_static).max() < 0.5 * motion_score(moving.video).min()
    # The naive score is fooled: noise on a frozen clip "moves" more than the real digits.
    assert frame_difference(noisy_static).mean() > frame_difference(moving.video).mean()


def test_motion_score_of_blank_clips_is_zero():
    assert motion_score(torch.zeros(2, 4, 1, 16, 16)).max() == 0


def test_filter_keeps_the_stated_share_of_the_training_split():
    scores = torch.rand(1000, generator=torch.Generator().manual_seed(3))
    for keep in (0.2, 0.5, 0.8, 1.0):
        kept = StaticClipFilter.fit(scores, keep)(scores)
        assert kept.sum().item() == round(keep * 1000)
        assert scores[kept].min() >= scores[~kept].max() if (~kept).any() else True


def test_filter_fitted_on_train_keeps_about_the_share_of_a_test_split():
    varied = MovingMNISTConfig.cpu(speed=(0.0, 3.0))
    train = motion_score(generate_clips(300, varied, generator=torch.Generator().manual_seed(4)).video)
    test = motion_score(generate_clips(300, varied, generator=torch.Generator().manual_seed(5)).video)
    kept = StaticClipFilter.fit(train, 0.6)(test).float().mean().item()
    assert abs(kept - 0.6) < 0.1


def test_filter_drops_static_clips_from_a_mix(moving, static):
    mix = torch.cat([moving.video, static.video])
    scores = motion_score(mix)
    kept = StaticClipFilter.fit(scores, 0.5)(scores)
    assert kept[:32].all() and not kept[32:].any()


def test_stride_resampling_keeps_positions_and_velocities_consistent():
    g = torch.Generator().manual_seed(6)
    clips = stride_clips(32, CPU, 3, generator=g)
    assert clips.video.shape == (32, 10, 1, 32, 32) and clips.positions.shape == (32, 10, 1, 2)
    assert torch.allclose(clips.velocities.norm(dim=-1), torch.tensor(6.0))  # 3 x 2 px/frame
    steps = clips.positions[:, 1:] - clips.positions[:, :-1]
    # Where no wall was hit between two output frames (the velocity did not change), the
    # step is the resampled velocity; a wall hit would flip a component.
    away = (clips.velocities[:, :-1] == clips.velocities[:, 1:]).all(-1)
    assert 20 < away.sum() < away.numel()
    torch.testing.assert_close(steps[away], clips.velocities[:, :-1][away])


def test_stride_resampling_is_every_nth_frame_of_the_same_source_clip():
    base = generate_clips(4, MovingMNISTConfig.cpu(frames=19), generator=torch.Generator().manual_seed(7))
    strided = stride_clips(4, MovingMNISTConfig.cpu(), 2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(strided.video, base.video[:, ::2])
    torch.testing.assert_close(strided.positions, base.positions[:, ::2])
    # The rendered frames show the ground-truth positions: the ink's top-left follows them.
    ink = strided.video[:, :, 0] > 0
    rows = ink.any(-1).float().argmax(-1)  # first ink row per frame
    assert (rows >= strided.positions[:, :, 0, 0].round() - 1e-6).all()


def test_strided_dataset_labels_the_stride_and_is_deterministic():
    data = StridedMovingMNIST(CPU, strides=(1, 3), length=6, seed=2)
    items = [data[i] for i in range(4)]
    assert [item["stride"].item() for item in items] == [1, 3, 1, 3]
    torch.testing.assert_close(data[1]["video"], items[1]["video"])
    speeds = [item["velocities"].norm(dim=-1).mean().item() for item in items]
    assert speeds == pytest.approx([2.0, 6.0, 2.0, 6.0])
    assert motion_score(items[3]["video"][None]).item() > 2 * motion_score(items[2]["video"][None]).item()


def test_duplicates_are_found_under_a_one_pixel_shift_and_a_plain_comparison_misses_them(moving):
    digits = moving.digits[:8, 0]  # (8, 16, 16)
    unique = digits[shift_tolerant_distance(digits, digits).fill_diagonal_(1).min(1).values > 0.05][:5]
    shifted = torch.roll(unique, shifts=(1, -1), dims=(-2, -1))
    items = torch.cat([unique, shifted])
    n = len(unique)
    assert find_duplicates(items, max_shift=1) == [(i, i + n) for i in range(n)]
    assert find_duplicates(items, max_shift=0) == []


def test_duplicate_clips_are_found_when_the_whole_clip_is_shifted(moving):
    clips = moving.video[:4]
    shifted = torch.roll(clips, shifts=1, dims=-1)
    pairs = find_duplicates(torch.cat([clips, shifted]))
    assert all(pair in pairs for pair in [(0, 4), (1, 5), (2, 6), (3, 7)])


def test_nearest_neighbours_find_the_shifted_copy(moving):
    references = moving.digits[:, 0]
    queries = torch.roll(references[[3, 7]], shifts=1, dims=-2)
    distance, index = nearest_neighbours(queries, references, chunk=1)
    assert distance.max() < 1e-3
    assert torch.equal(references[index], references[[3, 7]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: motion_score(torch.rand(2, 10, 32, 32)), "video must have shape"),
        (lambda: motion_score(torch.rand(2, 1, 1, 8, 8)), "at least 2 frames"),
        (lambda: motion_score(torch.rand(2, 3, 1, 8, 8), max_shift=-1), "max_shift"),
        (lambda: motion_score(torch.rand(2, 3, 1, 8, 8), blur=2), "blur"),
        (lambda: StaticClipFilter.fit(torch.rand(10), 0.0), "keep"),
        (lambda: StaticClipFilter.fit(torch.rand(10, 2), 0.5), "train_scores"),
        (lambda: stride_clips(2, CPU, 0), "stride"),
        (lambda: StridedMovingMNIST(CPU, strides=()), "strides"),
        (lambda: find_duplicates(torch.rand(4, 8, 8), threshold=-1), "threshold"),
        (lambda: shift_tolerant_distance(torch.rand(2, 8, 8), torch.rand(2, 9, 9)), "per-item shape"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
