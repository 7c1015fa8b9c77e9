import dataclasses

import pytest
import torch

from vdmcourse.diffusion import training_loss
from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig
from vdmcourse.nn.unet3d import ResBlock3D, TemporalConv, UNet3D
from vdmcourse.pretrained import build_model, save_checkpoint

from helpers import IMAGE, VIDEO, seeded, wake_up


def clips(batch=2, frames=4, size=16, seed=0):
    return torch.randn(batch, frames, 1, size, size, generator=seeded(seed))


def times(batch=2, seed=1):
    return torch.rand(batch, generator=seeded(seed))


def temporal_parameters(model):
    return [name for name, _ in model.named_parameters() if "temporal" in name]


@pytest.mark.parametrize("frames, height, width", [(1, 16, 16), (3, 16, 16), (8, 16, 16), (5, 8, 24)])
@pytest.mark.parametrize("conv", ["2+1d", "3d"])
def test_output_has_the_input_shape_for_any_frames_and_size(frames, height, width, conv):
    model = wake_up(UNet3D(dataclasses.replace(VIDEO, conv=conv)))
    x = torch.randn(2, frames, 1, height, width)
    out = model(x, times(), torch.tensor([3, 7]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_temporal_downsampling_restores_the_frame_count():
    model = wake_up(UNet3D(dataclasses.replace(VIDEO, frames=8, temporal_downsample=(0,))))
    for frames in (1, 2, 8, 12):
        x = clips(frames=frames)
        assert model(x, times()).shape == x.shape


def test_group_norm_is_per_frame_so_changing_one_frame_leaves_the_others_alone():
    block = wake_up(ResBlock3D(8, 8, 16, VIDEO, temporal_conv=False)).eval()
    frames, k = 5, 2
    x = torch.randn(frames, 8, 6, 6, generator=seeded())  # (B*T, C, H, W) with B = 1
    emb = torch.randn(frames, 16, generator=seeded(1))
    changed = x.clone()
    changed[k] = 10 * changed[k] + 3  # a very different frame k: new mean and scale
    before, after = block(x, emb, frames), block(changed, emb, frames)
    others = [i for i in range(frames) if i != k]
    torch.testing.assert_close(after[others], before[others])
    assert not torch.allclose(after[k], before[k])


def test_temporal_conv_keeps_frame_t_centred_on_input_frame_t():
    conv = TemporalConv(4, kernel=3)
    torch.nn.init.normal_(conv.conv.weight)
    frames, k = 7, 3
    impulse = torch.zeros(frames, 4, 2, 2)
    impulse[k] = 1.0
    reached = (conv(impulse, frames) - impulse).abs().sum(dim=(1, 2, 3)) > 0  # (T,)
    assert reached.tolist() == [abs(t - k) <= 1 for t in range(frames)]


@pytest.mark.parametrize("conv, span", [("2+1d", "time"), ("3d", "time"), ("2+1d", "spacetime")])
def test_inflated_model_equals_the_image_model_frame_by_frame_at_init(conv, span):
    torch.manual_seed(0)
    image = wake_up(UNet2D(IMAGE)).eval()
    video = UNet3D.from_image_model(image, frames=6, conv=conv, temporal_attention_levels=(0, 1), attention_span=span).eval()
    x, t, cond = clips(frames=6), times(), torch.tensor([1, 9])
    torch.testing.assert_close(video(x, t, cond), image(x, t, cond), atol=1e-5, rtol=1e-5)
    assert temporal_parameters(video)  # the temporal layers exist ...
    video_image_names = set(image.state_dict()) <= set(video.state_dict())
    assert video_image_names  # ... beside every image weight


def test_inflation_copies_every_image_weight_and_checks_the_config():
    image = wake_up(UNet2D(IMAGE))
    video = UNet3D.from_image_model(image, VIDEO)
    for name, weight in image.state_dict().items():
        assert torch.equal(video.state_dict()[name], weight), name
    with pytest.raises(ValueError, match="base_channels"):
        UNet3D.from_image_model(image, dataclasses.replace(VIDEO, base_channels=16))
    with pytest.raises(ValueError, match="temporal_downsample"):
        UNet3D.from_image_model(image, frames=4, temporal_downsample=(0,))
    with pytest.raises(TypeError, match="UNet2D"):
        UNet3D.from_image_model(video)


def test_a_single_frame_skips_the_temporal_layers_even_after_training():
    image = wake_up(UNet2D(IMAGE)).eval()
    video = wake_up(UNet3D.from_image_model(image, VIDEO), seed=5).eval()  # temporal layers now non-zero
    x, t = clips(frames=1), times()
    torch.testing.assert_close(video(x, t), image(x, t))
    assert not torch.allclose(video(clips(frames=4), t), image(clips(frames=4), t))


@pytest.mark.parametrize("span", ["time", "spacetime"])
def test_frame_order_matters_once_temporal_layers_are_trained(span):
    model = wake_up(UNet3D(dataclasses.replace(VIDEO, attention_span=span, temporal_kernel=1))).eval()
    x, t = clips(frames=4), times()
    order = torch.tensor([2, 0, 3, 1])
    assert not torch.allclose(model(x[:, order], t), model(x, t)[:, order], atol=1e-5)


def test_missing_condition_is_the_null_label_used_for_guidance():
    model = wake_up(UNet3D(VIDEO)).eval()
    x, t = clips(), times()
    null = torch.full((2,), 10)
    torch.testing.assert_close(model(x, t), model(x, t, null))
    assert not torch.allclose(model(x, t, torch.tensor([3, 3])), model(x, t))
    # Label dropout with p = 1 turns the conditional loss into the unconditional one.
    dropped = training_loss(model, x.clamp(-1, 1), cond=torch.tensor([3, 4]), p_uncond=1.0, generator=seeded(7))
    unconditional = training_loss(model, x.clamp(-1, 1), cond=null, generator=seeded(7))
    torch.testing.assert_close(dropped, unconditional)


@pytest.mark.parametrize("conv", ["2+1d", "3d"])
def test_gradient_reaches_every_parameter(conv):
    model = wake_up(UNet3D(dataclasses.replace(VIDEO, conv=conv)))
    loss = model(clips(), times(), torch.tensor([0, 5])).square().mean()
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_zero_initialised_temporal_layers_still_get_a_gradient():
    model = UNet3D.from_image_model(wake_up(UNet2D(IMAGE)), VIDEO)
    model(clips(), times()).square().mean().backward()
    for name, parameter in model.named_parameters():
        if name.endswith(("temporal.conv.weight", "attention.out.weight")) and "temporal" in name:
            assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(base_channels=10), "UNet3DConfig: groups=4 must divide"),
        (dict(image_size=17), "image_size=17 must be a multiple of 2"),
        (dict(conv="3x3x3"), "conv must be one of"),
        (dict(temporal_kernel=2), "odd"),
        (dict(temporal_attention_levels=(2,)), "temporal_attention_levels"),
        (dict(temporal_downsample=(1,)), "temporal_downsample"),
        (dict(frames=5, temporal_downsample=(0,)), "frames=5 must be a multiple of 2"),
        (dict(time_position="learned"), "time_position"),
        (dict(attention_span="space"), "attention_span"),
        (dict(frames=0), "frames"),
    ],
)
def test_bad_config_is_rejected_clearly(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(VIDEO, **change)


def test_bad_input_is_rejected_clearly():
    model = UNet3D(VIDEO)
    with pytest.raises(ValueError, match=r"x\[:, None\]"):
        model(torch.randn(2, 1, 16, 16), times())
    with pytest.raises(ValueError, match="multiples of 2"):
        model(torch.randn(2, 4, 1, 15, 16), times())
    with pytest.raises(ValueError, match="t of shape"):
        model(clips(), torch.rand(3))
    with pytest.raises(ValueError, match="multiple of 2"):
        UNet3D(dataclasses.replace(VIDEO, temporal_downsample=(0,)))(clips(frames=3), times())
    with pytest.raises(TypeError, match="UNet3DConfig"):
        UNet3D(IMAGE)


def test_checkpoint_round_trip_keeps_config_and_output(tmp_path):
    model = wake_up(UNet3D(dataclasses.replace(VIDEO, temporal_conv_levels=(1,)))).eval()
    path = save_checkpoint(tmp_path / "video.safetensors", model)
    loaded = build_model(path)
    assert loaded.config == model.config
    x, t = clips(), times()
    torch.testing.assert_close(loaded(x, t), model(x, t))


def test_video_preset_inflates_its_image_checkpoint(tmp_path):
    from vdmcourse.presets import get_preset

    preset = get_preset("video-cpu")
    image_config = UNet2DConfig(**preset.model_config.image_fields())
    image = wake_up(UNet2D(image_config)).eval()
    path = save_checkpoint(tmp_path / "image.safetensors", image)
    video = dataclasses.replace(preset, init_from=str(path)).build_model().eval()
    assert isinstance(video, UNet3D) and video.config == preset.model_config
    x = torch.randn(1, 10, 1, 32, 32, generator=seeded())
    t = torch.tensor([0.5])
    torch.testing.assert_close(video(x, t), image(x, t), atol=1e-5, rtol=1e-5)


def test_an_added_embedding_per_clip_equals_the_same_vector_on_every_frame_and_is_checked():
    model = wake_up(UNet3D(VIDEO)).eval()
    x, t = clips(), times()
    width = VIDEO.embed_dim
    per_clip = torch.randn(2, width, generator=seeded(3))
    with torch.no_grad():
        plain = model(x, t)
        clip_wise = model(x, t, added=per_clip)
        frame_wise = model(x, t, added=per_clip[:, None].expand(-1, 4, -1))
        per_frame_times = model(x, t[:, None].expand(-1, 4), added=per_clip)  # per-frame times with a per-clip vector
    torch.testing.assert_close(clip_wise, frame_wise, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_frame_times, clip_wise, atol=1e-5, rtol=1e-5)
    assert (clip_wise - plain).abs().max() > 1e-3  # the vector reaches the network
    different = per_clip[:, None].repeat(1, 4, 1)
    different[:, 2] += 1.0
    with torch.no_grad():
        moved = model(x, t, added=different)
    assert (moved - clip_wise).abs().max() > 1e-3  # a per-frame vector is used per frame
    for bad in (torch.zeros(2, width + 1), torch.zeros(3, width), torch.zeros(2, 5, width), torch.zeros(width)):
        with pytest.raises(ValueError, match="added of shape"):
            model(x, t, added=bad)
