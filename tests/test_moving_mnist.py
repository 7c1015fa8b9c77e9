import math

import pytest
import torch

from vdmcourse.data import (
    Clips,
    MovingMNIST,
    MovingMNISTConfig,
    digit_pool,
    generate_clips,
    load_mnist_subset,
    render_clips,
    simulate_trajectories,
    velocities_from_positions,
)
from vdmcourse.data.moving_mnist import _split_indices


def clips_for(config, n=64, seed=0) -> Clips:
    return generate_clips(n, config, generator=torch.Generator().manual_seed(seed))


def test_defaults_are_srivastava_2015():
    config = MovingMNISTConfig()
    assert (config.canvas, config.frames, config.digits, config.digit_size) == (64, 20, 2, 28)
    assert config.speed == (3.6, 3.6) and math.isclose(0.1 * config.free_range, 3.6)
    assert (config.bounce, config.combine, config.split) == ("deterministic", "max", "train")
    assert MovingMNISTConfig.srivastava() == config


def test_presets_are_valid_and_take_overrides():
    cpu = MovingMNISTConfig.cpu()
    assert (cpu.canvas, cpu.frames, cpu.digits, cpu.digit_size) == (32, 10, 1, 16)
    assert MovingMNISTConfig.cpu(frames=8).frames == 8
    stochastic = MovingMNISTConfig.stochastic()
    assert (stochastic.bounce, stochastic.combine, stochastic.digit_size) == ("stochastic", "sum", 32)
    assert MovingMNISTConfig(speed=2).speed == (2.0, 2.0)


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"digit_size": 65}, "digit_size=65 is larger than canvas=64"),
        ({"frames": 0}, "frames must be a positive int"),
        ({"digits": 1.5}, "digits must be a positive int"),
        ({"speed": -1.0}, "speed needs 0 <= min <= max"),
        ({"speed": (3.0, 1.0)}, "speed needs 0 <= min <= max"),
        ({"speed": "fast"}, "speed must be a number or a (min, max) pair"),
        ({"bounce": "elastic"}, "bounce must be one of"),
        ({"combine": "mean"}, "combine must be one of"),
        ({"split": "val"}, "split must be one of"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(overrides, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        MovingMNISTConfig(**overrides)


@pytest.mark.parametrize("config", [MovingMNISTConfig(), MovingMNISTConfig.cpu(), MovingMNISTConfig.stochastic()], ids=["default", "cpu", "stochastic"])
def test_clips_have_the_documented_shapes_dtypes_and_range(config):
    clips = clips_for(config, n=8)
    n, t, k, h, s = 8, config.frames, config.digits, config.canvas, config.digit_size
    assert clips.video.shape == (n, t, 1, h, h) and clips.video.dtype == torch.float32
    assert clips.labels.shape == (n, k) and clips.labels.dtype == torch.int64
    assert clips.positions.shape == clips.velocities.shape == (n, t, k, 2)
    assert clips.digits.shape == (n, k, s, s) and len(clips) == n
    assert 0 <= clips.video.min() and clips.video.max() <= 1 and clips.video.max() > 0.9
    assert clips.labels.min() >= 0 and clips.labels.max() <= 9


@pytest.mark.parametrize("config", [MovingMNISTConfig(), MovingMNISTConfig.stochastic(), MovingMNISTConfig.cpu(speed=(0.0, 30.0))], ids=["default", "stochastic", "fast"])
def test_digits_stay_inside_the_canvas(config):
    clips = clips_for(config, n=128)
    assert clips.positions.min() >= 0 and clips.positions.max() <= config.free_range
    # Nothing is drawn outside the union of the digits' boxes, and nothing is lost:
    # every digit pixel reaches the frame in full.
    total = clips.video.sum(dim=(2, 3, 4))  # (N, T)
    assert torch.all(total <= clips.digits.sum(dim=(1, 2, 3))[:, None] + 1e-3)


def test_speed_is_constant_and_reflection_exact_for_deterministic_bounces():
    config = MovingMNISTConfig(speed=(1.0, 6.0))
    clips = clips_for(config, n=256)
    p, v = clips.positions, clips.velocities
    speed = v.norm(dim=-1)  # (N, T, K)
    torch.testing.assert_close(speed, speed[:, :1].expand_as(speed))
    previous, now = v[:, :-1], v[:, 1:]
    flipped = now != previous
    # A component changes only by negation, only when the digit sits on a wall.
    assert flipped.any(), "no bounce happened in 256 clips"
    assert torch.equal(now[flipped], -previous[flipped])
    on_wall = (p[:, 1:] == 0) | (p[:, 1:] == config.free_range)
    assert torch.all(on_wall[flipped])
    # Between bounces, the position advances by exactly the velocity.
    free = ~flipped
    torch.testing.assert_close((p[:, 1:] - p[:, :-1])[free], previous[free])


def test_a_bounce_clamps_to_the_wall_and_negates_only_that_component():
    start = torch.tensor([[[1.0, 10.0]]])
    velocity = torch.tensor([[[-3.0, 2.0]]])
    positions, velocities = simulate_trajectories(start, velocity, frames=3, free_range=20)
    torch.testing.assert_close(positions[0, :, 0], torch.tensor([[1.0, 10.0], [0.0, 12.0], [3.0, 14.0]]))
    torch.testing.assert_close(velocities[0, :, 0], torch.tensor([[-3.0, 2.0], [3.0, 2.0], [3.0, 2.0]]))
    positions, velocities = simulate_trajectories(torch.tensor([[[5.0, 19.0]]]), torch.tensor([[[1.0, 2.0]]]), 2, 20)
    torch.testing.assert_close(positions[0, 1, 0], torch.tensor([6.0, 20.0]))
    torch.testing.assert_close(velocities[0, 1, 0], torch.tensor([1.0, -2.0]))


def test_stochastic_bounces_change_velocity_only_at_walls_and_point_away():
    config = MovingMNISTConfig.stochastic()
    clips = clips_for(config, n=256)
    p, v = clips.positions, clips.velocities
    changed = (v[:, 1:] != v[:, :-1]).any(-1)  # (N, T-1, K)
    assert changed.any()
    low, high = p[:, 1:] == 0, p[:, 1:] == config.free_range  # (N, T-1, K, 2)
    assert torch.all((low | high).any(-1)[changed])
    new = v[:, 1:]
    assert torch.all(new[low] >= 0) and torch.all(new[high] <= 0)
    speed = v.norm(dim=-1)
    assert speed.min() >= 1.0 - 1e-5 and speed.max() <= 4.0 + 1e-5
    # Not just a mirror image: the speed itself is redrawn at a bounce.
    assert not torch.allclose(speed[:, 1:][changed], speed[:, :-1][changed])


def test_same_seed_same_clips_and_different_seed_different_clips():
    config = MovingMNISTConfig.cpu()
    a, b, c = clips_for(config, 16, seed=3), clips_for(config, 16, seed=3), clips_for(config, 16, seed=4)
    for field in ("video", "labels", "positions", "velocities"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.video, c.video)


@pytest.mark.parametrize("config", [MovingMNISTConfig.cpu(frames=4), MovingMNISTConfig(digits=1, frames=4)], ids=["16px", "28px"])
def test_single_digit_centre_of_mass_sits_at_position_plus_half_the_digit(config):
    clips = clips_for(config, n=64)
    video, digits = clips.video[:, :, 0], clips.digits[:, 0]  # (N, T, H, W), (N, S, S)
    pasted_at = clips.positions[:, :, 0].round()  # (N, T, 2)
    # Centres of mass in continuous pixel coordinates: pixel i covers [i, i + 1).
    grid = torch.arange(config.canvas, dtype=torch.float32) + 0.5
    mass = video.sum(dim=(-2, -1))
    centre = torch.stack([(video.sum(-1) * grid).sum(-1), (video.sum(-2) * grid).sum(-1)], dim=-1) / mass[..., None]
    local = torch.arange(config.digit_size, dtype=torch.float32) + 0.5
    inside = torch.stack([(digits.sum(-1) * local).sum(-1), (digits.sum(-2) * local).sum(-1)], -1) / digits.sum(dim=(-2, -1))[:, None]
    # Exactly: the frame's centre of mass is the digit's own, moved to where it was pasted.
    torch.testing.assert_close(centre, pasted_at + inside[:, None], atol=1e-3, rtol=0)
    # MNIST digits are centred by mass, so that is within 1 px of the box centre.
    assert (centre - (pasted_at + config.digit_size / 2)).abs().max() <= 1.0


def test_max_and_sum_combination_differ_exactly_where_digits_overlap():
    digits = torch.tensor([[[[0.6, 0.6], [0.0, 0.0]], [[0.7, 0.0], [0.7, 0.0]]]])  # (1, 2, 2, 2)
    positions = torch.zeros(1, 1, 2, 2)  # both digits at the top-left corner
    top_left = (slice(None), slice(None), 0, 0, 0)
    as_max = render_clips(digits, positions, canvas=3, combine="max")
    as_sum = render_clips(digits, positions, canvas=3, combine="sum")
    assert as_max[top_left].item() == pytest.approx(0.7)
    assert as_sum[top_left].item() == pytest.approx(1.0)  # 0.6 + 0.7, clipped
    torch.testing.assert_close(as_max[0, 0, 0, :2, :2], torch.tensor([[0.7, 0.6], [0.7, 0.0]]))
    torch.testing.assert_close(as_sum[0, 0, 0, :2, :2], torch.tensor([[1.0, 0.6], [0.7, 0.0]]))
    assert as_max[0, 0, 0, 2].abs().sum() == 0 and as_max[0, 0, 0, :, 2].abs().sum() == 0


def test_render_rounds_positions_and_refuses_positions_outside_the_canvas():
    digit = torch.ones(1, 1, 2, 2)
    frame = render_clips(digit, torch.tensor([[[[0.6, 1.4]]]]), canvas=4)[0, 0, 0]
    expected = torch.zeros(4, 4)
    expected[1:3, 1:3] = 1  # (0.6, 1.4) rounds to (1, 1)
    assert torch.equal(frame, expected)
    with pytest.raises(ValueError, match=r"rounded positions must lie in \[0, 2\]"):
        render_clips(digit, torch.tensor([[[[2.6, 0.0]]]]), canvas=4)
    with pytest.raises(ValueError, match="combine must be one of"):
        render_clips(digit, torch.zeros(1, 1, 1, 2), canvas=4, combine="mean")


def test_train_and_test_pools_are_disjoint_stratified_and_cover_the_subset():
    train, test = _split_indices("train"), _split_indices("test")
    assert len(train) == 4500 and len(test) == 500
    assert not set(train.tolist()) & set(test.tolist())
    _, labels = load_mnist_subset()
    assert torch.equal(labels[test].bincount(minlength=10), torch.full((10,), 50))
    images, pool_labels = digit_pool(MovingMNISTConfig(split="test", digit_size=28))
    assert images.shape == (500, 28, 28) and torch.equal(pool_labels, labels[test])


def test_test_split_clips_only_use_test_digits():
    config = MovingMNISTConfig(split="test", digits=1)
    clips = clips_for(config, n=32)
    pool, _ = digit_pool(config)
    train_pool, _ = digit_pool(MovingMNISTConfig(split="train", digits=1))
    for digit in clips.digits[:, 0]:
        assert (pool == digit).all(dim=(1, 2)).any()
        assert not (train_pool == digit).all(dim=(1, 2)).any()


def test_velocities_from_positions_recovers_ground_truth_away_from_walls():
    config = MovingMNISTConfig.cpu(speed=(0.5, 1.0), frames=6)
    clips = clips_for(config, n=64)
    estimate = velocities_from_positions(clips.positions)
    bounced = (clips.velocities[:, 1:] != clips.velocities[:, :-1]).any(-1).any(-1).any(-1)
    keep = ~bounced
    assert keep.sum() > 10
    torch.testing.assert_close(estimate[keep], clips.velocities[keep])


def test_dataset_items_are_deterministic_and_match_the_generator():
    config = MovingMNISTConfig.cpu()
    dataset = MovingMNIST(config, length=5, seed=7)
    item = dataset[2]
    clips = generate_clips(1, config, generator=dataset.generator_for(2))
    assert torch.equal(item["video"], clips.video[0]) and torch.equal(item["labels"], clips.labels[0])
    assert torch.equal(item["positions"], clips.positions[0]) and torch.equal(item["velocities"], clips.velocities[0])
    assert torch.equal(MovingMNIST(config, 5, seed=7)[2]["video"], item["video"])
    assert not torch.equal(dataset[3]["video"], item["video"])
    assert not torch.equal(MovingMNIST(config, 5, seed=8)[2]["video"], item["video"])
    assert torch.equal(dataset[-3]["video"], item["video"]) and len(dataset) == 5
    with pytest.raises(IndexError):
        dataset[5]


def test_generate_clips_refuses_bad_arguments():
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        generate_clips(-1)
    with pytest.raises(TypeError, match="config must be a MovingMNISTConfig"):
        generate_clips(2, {"canvas": 32})
    with pytest.raises(ValueError, match=r"shape \(N, K, 2\)"):
        simulate_trajectories(torch.zeros(2, 2), torch.zeros(2, 2), 3, 10)
    assert generate_clips(0, MovingMNISTConfig.cpu()).video.shape == (0, 10, 1, 32, 32)
