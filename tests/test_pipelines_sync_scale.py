"""Sync by scale: the digit's size follows a per-frame signal (data option, measure, preset)."""

import pytest
import torch

from vdmcourse.conditioned_training import signal_batch
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.data.conditions import SCALE_FLOOR, apply_brightness, apply_scale, frame_scale
from vdmcourse.presets import get_preset


def _square(side=8, at=(4, 12), canvas=32, frames=3):
    """One-digit-like clips: a white square of ``side`` px with its top-left corner at ``at``, in every frame."""
    video = torch.zeros(1, frames, 1, canvas, canvas)
    video[..., at[0] : at[0] + side, at[1] : at[1] + side] = 1.0
    centre = torch.tensor([at[0] + side / 2, at[1] + side / 2]).expand(1, frames, 2)
    return video, centre


def test_frame_scale_is_the_radius_of_gyration_of_the_ink():
    video, _ = _square(side=8)
    # a uniform a x a square of pixels: Rg^2 = 2 (a^2 - 1) / 12
    torch.testing.assert_close(frame_scale(video), torch.full((1, 3), (2 * 63 / 12) ** 0.5))
    torch.testing.assert_close(frame_scale(0.4 * video), frame_scale(video))  # dimmer ink, same size
    assert frame_scale(torch.zeros(1, 2, 1, 8, 8)).isnan().all()


def test_apply_scale_shrinks_the_digit_about_its_own_centre():
    from vdmcourse.metrics.physics import track_digits

    video, centre = _square(side=12, at=(4, 14))
    same = apply_scale(video, torch.ones(1, 3), centre)
    torch.testing.assert_close(same, video)  # signal 1: the frame as it is
    out = apply_scale(video, torch.tensor([[0.0, 0.5, 1.0]]), centre)
    ratio = frame_scale(out) / frame_scale(video)
    torch.testing.assert_close(ratio, torch.tensor([[SCALE_FLOOR, (1 + SCALE_FLOOR) / 2, 1.0]]), atol=0.03, rtol=0)
    moved = (track_digits(out, 1).centres - track_digits(video, 1).centres).norm(dim=-1)
    assert moved.max() < 0.3  # about the digit's centre, not the frame's (16, 16)
    with pytest.raises(ValueError, match="signal"):
        apply_scale(video, torch.ones(1, 2), centre)
    with pytest.raises(ValueError, match="centres"):
        apply_scale(video, torch.ones(1, 3), centre[..., :1])


def test_signal_batches_drive_the_scale_or_the_brightness():
    data = MovingMNISTConfig.cpu(frames=4)
    scaled = signal_batch(torch.Generator().manual_seed(0), batch_size=3, data=data, drive="scale")
    bright = signal_batch(torch.Generator().manual_seed(0), batch_size=3, data=data)
    clips = generate_clips(3, data, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(scaled["video"], apply_scale(clips.video, scaled["signal"], clips.positions[:, :, 0] + data.digit_size / 2))
    torch.testing.assert_close(bright["video"], apply_brightness(clips.video, bright["signal"]))
    assert torch.equal(scaled["signal"], bright["signal"]) and torch.equal(scaled["labels"], clips.labels)
    with pytest.raises(ValueError, match="drive"):
        signal_batch(torch.Generator(), batch_size=1, data=data, drive="size")
    with pytest.raises(ValueError, match="digits"):
        signal_batch(torch.Generator(), batch_size=1, data=MovingMNISTConfig.cpu(digits=2, frames=4), drive="scale")


def test_the_scale_preset_continues_sync_cpu_on_scaled_clips():
    preset = get_preset("sync-scale-cpu")
    assert preset.init_from == "sync-cpu" and preset.model_config == get_preset("sync-cpu").model_config
    batch = preset.batches()(torch.Generator().manual_seed(0))
    clips = generate_clips(preset.batch_size, preset.data, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch["video"], apply_scale(clips.video, batch["signal"], clips.positions[:, :, 0] + preset.data.digit_size / 2))


def test_the_scratch_sync_preset_is_sync_cpu_started_from_video_scratch_cpus_weights():
    """sync-scratch-cpu (issue 13, within 30 CPU-minutes): sync-cpu's model, loss and clips, but every weight
    from video-scratch-cpu (itself trained from scratch) and the new signal embedding's output at zero."""
    from vdmcourse import pretrained

    preset, sync = get_preset("sync-scratch-cpu"), get_preset("sync-cpu")
    assert preset.init_from == "video-scratch-cpu" and get_preset(preset.init_from).init_from is None
    assert preset.model_config == sync.model_config and preset.loss is sync.loss and preset.batch_source is sync.batch_source
    assert preset.train == sync.train
    model, source = preset.build_model().state_dict(), pretrained.load_pretrained("video-scratch-cpu", device="cpu").state_dict()
    for name, weight in source.items():
        assert torch.equal(model[name], weight), name
    new = set(model) - set(source)
    assert new and all(name.startswith("signal_embed.") for name in new)
    assert not model["signal_embed.mlp.2.weight"].any() and not model["signal_embed.mlp.2.bias"].any()
