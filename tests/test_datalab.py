import dataclasses

import torch

from vdmcourse import datalab as lab
from vdmcourse.data.curation import motion_score


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_static_mix_holds_about_the_stated_share_of_static_clips():
    video = lab.static_mix(0.5, batch_size=400)(g())["video"]
    static = (motion_score(video) < 0.5).float().mean().item()
    assert abs(static - 0.5) < 0.08
    assert (motion_score(lab.static_mix(0.0, batch_size=64)(g())["video"]) > 1.0).all()


def test_filtered_static_mix_yields_moving_clips_only():
    batches = lab.static_mix(0.5, batch_size=64, keep=0.45)
    assert batches.filter.fitted_on == 512
    assert (motion_score(batches(g(1))["video"]) > 1.0).all()


def test_speed_labels_are_the_rounded_speed_of_each_clip():
    batch = lab.speed_labelled((0.5, 4.5), batch_size=200)(g(2))
    speeds = batch["labels"][:, 1] - lab.AUX
    assert set(speeds.tolist()) <= {1, 2, 3, 4} and len(set(speeds.tolist())) == 4
    slow, fast = batch["video"][speeds == 1], batch["video"][speeds == 4]
    assert motion_score(fast).mean() > 2 * motion_score(slow).mean()


def test_stride_labels_match_the_motion_per_frame():
    config = dataclasses.replace(lab.SMALL, speed=(1.0, 1.0))
    batch = lab.stride_labelled((1, 3), batch_size=64, config=config)(g(3))
    stride = batch["labels"][:, 1] - lab.AUX
    assert motion_score(batch["video"][stride == 3]).mean() > 2 * motion_score(batch["video"][stride == 1]).mean()


def test_noisy_labels_are_wrong_for_about_the_stated_share_and_never_by_accident():
    clean = lab.noisy_labels(0.0, batch_size=500)(g(4))
    noisy = lab.noisy_labels(0.3, batch_size=500)(g(4))
    torch.testing.assert_close(clean["video"], noisy["video"])  # same clips: only the labels differ
    wrong = (clean["labels"] != noisy["labels"]).float().mean().item()
    assert abs(wrong - 0.3) < 0.06


def test_limited_digits_keep_n_distinct_digits_per_class():
    images, labels = lab.limited_digits(5)
    assert images.shape == (50, 12, 12) and torch.bincount(labels).tolist() == [5] * 10
    batch = lab.pool_batches((images, labels), batch_size=32)(g(5))
    assert batch["video"].shape == (32, 8, 1, 24, 24)


def test_memorisation_sees_copies_of_training_digits_as_close():
    images, labels = lab.limited_digits(5)
    copies = lab.draw_clips(16, lab.SMALL, g(6), pool=(images, labels)).video
    test_images, _ = lab.limited_digits(50)
    result = lab.memorisation(copies, images, test_images[100:200])
    assert result["samples_to_train"] < 0.5 * result["test_to_train"]


# --- experiments 2 and 3 through the image-to-video conditioning ------------------------------


def test_per_frame_speed_measures_the_ground_truth_displacement():
    from vdmcourse.data.conditions import clips_at_strides, measured_speed

    clips = clips_at_strides(32, dataclasses.replace(lab.SMALL, speed=(0.25, 1.25)), strides=(1, 3), generator=g(7))
    truth = measured_speed(clips.positions)  # (N,) px/frame from the positions the clips were drawn at
    tracked = lab.per_frame_speed(clips.video)
    assert (tracked - truth).abs().max() < 0.2
    assert tracked[clips.stride == 3].mean() > 2 * tracked[clips.stride == 1].mean()


def test_i2v_batches_hold_only_the_asked_strides_and_buckets_of_the_asked_speeds():
    narrow = lab.i2v_batches((0.5, 0.75), (2,), batch_size=64)(g(8))
    broad = lab.i2v_batches((0.25, 1.25), (1, 2, 3), batch_size=64)(g(8))
    assert set(narrow["fps"].tolist()) == {6.0} and set(broad["fps"].tolist()) == {4.0, 6.0, 12.0}
    # bucket = 255 * px/s / 16; px/s = px per 12-fps frame x 12, a little less where a bounce clamps a step
    assert narrow["motion_bucket"].max() <= 255 * 0.75 * 12 / 16 + 1 and narrow["motion_bucket"].min() > 255 * 0.5 * 12 / 16 * 0.8
    assert broad["motion_bucket"].min() < narrow["motion_bucket"].min() and broad["motion_bucket"].max() > narrow["motion_bucket"].max()
    first = narrow["video"][:, 0]
    torch.testing.assert_close(first[0::4], first[3::4])  # runs of 4 share their first frame (the paired design)
    assert narrow["image_embedding"].shape == (64, 64) and (narrow["noise_aug_strength"] <= 0.5).all()


def test_resized_evaluator_gives_the_evaluators_features_of_the_upsampled_clip():
    from vdmcourse.metrics.features import load_evaluator

    video = lab.draw_clips(3, lab.SMALL, g(9)).video
    clip = torch.cat([video, video[:, -2:]], 1)  # the evaluator's 10 frames
    resized = lab.ResizedEvaluator(load_evaluator())
    with torch.no_grad():
        torch.testing.assert_close(resized(clip), resized.evaluator(lab._upsample(clip, 32)))
    assert resized.config.canvas == 32


def test_untrained_i2v_model_ignores_the_knobs_and_the_pipeline_reads_its_speed():
    torch.manual_seed(0)
    model = lab.tiny_i2v_model()  # the conditioning layers start at zero: every knob gives the same clip
    images = lab.draw_clips(2, lab.SMALL, g(10)).video[:, 0]
    speeds = lab.i2v_speeds(model, images, [(6, 40), (6, 240), (12, 128)], steps=2, knob_guidance_scale=3.0)
    assert speeds.shape == (2, 3)
    torch.testing.assert_close(speeds[:, 0], speeds[:, 1], equal_nan=True)
    torch.testing.assert_close(speeds[:, 0], speeds[:, 2], equal_nan=True)


def test_i2v_arm_trains_the_knob_embedding():
    model, info = lab.train_arm(lab.i2v_batches((0.25, 1.25), (1, 2, 3)), 3, model=lab.tiny_i2v_model, loss=lab.i2v_loss)
    assert info["steps"] == 3 and model.micro_embed.mlp[2].weight.abs().sum() > 0  # moved off its zero init


def test_knob_slope_is_one_for_a_followed_knob_and_about_zero_for_an_ignored_one():
    asked = torch.tensor([1.0, 2.0, 3.0, 4.0])
    noise = 0.1 * torch.randn((40, 4), generator=g(11))
    followed = lab.knob_slope(asked + noise + torch.rand((40, 1), generator=g(12)), asked)  # each image its own offset
    ignored = lab.knob_slope(2.0 + noise, asked)
    halved = lab.knob_slope(0.5 * asked + noise, asked)
    assert followed[1] < 1.0 < followed[2] and abs(followed[0] - 1) < 0.05
    assert ignored[1] < 0.0 < ignored[2]
    assert halved[1] < 0.5 < halved[2] and halved[2] < followed[1]


def test_mean_interval_contains_the_mean_and_skips_nan():
    values = torch.cat([torch.randn(200, generator=g(13)) + 3.0, torch.tensor([float("nan")])])
    mean, low, high = lab.mean_interval(values)
    assert abs(mean - values[:-1].mean().item()) < 1e-6 and low < 3.0 < high and high - low < 0.6
