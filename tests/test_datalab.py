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
