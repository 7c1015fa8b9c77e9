"""Inputs that used to pass silently (issue 16): each is refused, or now does the right thing."""

import math

import pytest
import torch

from vdmcourse.diffusion import cosine_schedule, guided_output, linear_schedule, null_label_of, sample, training_loss
from vdmcourse.diffusion.schedules import check_time
from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig


def tiny_unet(num_classes):
    torch.manual_seed(0)
    config = UNet2DConfig(image_size=8, base_channels=8, channel_mults=(1,), blocks_per_level=1, mid_attention=False,
                          heads=1, num_classes=num_classes, groups=4)
    return UNet2D(config).eval()


class LabelSpy(torch.nn.Module):
    """Records the labels it is called with; its null label is that of a ``classes``-class model."""

    def __init__(self, classes):
        super().__init__()
        self.inner = tiny_unet(classes)
        self.seen = []

    @property
    def config(self):
        return self.inner.config

    def forward(self, x, t, cond=None):
        self.seen.append(cond)
        return self.inner(x, t, cond=cond)


@pytest.mark.parametrize("classes", [5, 10, 20])
def test_guidance_uses_the_models_own_null_label(classes):
    model = LabelSpy(classes)
    x, t = torch.randn(2, 1, 1, 8, 8), torch.full((2,), 0.5)
    cond = torch.tensor([0, classes - 1])
    guided_output(model, x, t, cond, 3.0)
    assert model.seen[-1][2:].tolist() == [classes, classes]
    unconditional = model.inner(x, t, cond=None)  # the model's own "no label"
    torch.testing.assert_close(guided_output(model.inner, x, t, cond, 0.0), unconditional)


@pytest.mark.parametrize("classes", [5, 10, 20])
def test_training_loss_drops_labels_to_the_models_null_label(classes):
    model = LabelSpy(classes)
    training_loss(model, torch.randn(4, 1, 1, 8, 8), cond=torch.zeros(4, dtype=torch.long), p_uncond=1.0)
    assert model.seen[-1].tolist() == [classes] * 4


def test_null_label_of_reads_the_model_or_takes_it_explicitly():
    assert null_label_of(tiny_unet(7)) == 7
    assert null_label_of(lambda x, t, cond=None: x) == 10  # a plain function: the 10-digit convention
    assert null_label_of(tiny_unet(7), 3) == 3
    with pytest.raises(ValueError, match="null_label"):
        null_label_of(tiny_unet(7), -1)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_one_label_dtype_rule_for_the_model_and_the_sampler(dtype):
    model = tiny_unet(10)
    cond = torch.tensor([1, 2], dtype=dtype)
    model(torch.randn(2, 1, 1, 8, 8), torch.rand(2), cond=cond)
    out = sample(model, (2, 1, 1, 8, 8), steps=2, cond=cond, guidance_scale=2.0, progress=False)
    assert out.shape == (2, 1, 1, 8, 8)
    for bad in (torch.tensor([1.0, 2.0]), torch.tensor([True, False])):
        with pytest.raises(TypeError, match="cond must be an integer tensor"):
            sample(model, (2, 1, 1, 8, 8), steps=2, cond=bad, progress=False)


@pytest.mark.parametrize("scale", [math.nan, math.inf, "2"])
def test_a_guidance_scale_that_is_not_a_finite_number_is_refused(scale):
    with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
        sample(tiny_unet(10), (1, 1, 1, 8, 8), steps=1, cond=torch.tensor([1]), guidance_scale=scale, progress=False)


def test_nan_times_are_refused_where_the_range_is_checked():
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        check_time(torch.tensor([0.5, math.nan]))
    with pytest.raises(ValueError, match=r"TimestepEmbedding expects t in \[0, 1\]"):
        tiny_unet(10)(torch.randn(2, 1, 1, 8, 8), torch.tensor([math.nan, 0.5]))


@pytest.mark.parametrize("make", [cosine_schedule, linear_schedule])
def test_the_cached_schedules_cannot_be_changed_by_a_caller(make):
    schedule = make()
    betas = schedule.betas
    betas[0] = 0.5  # a copy
    schedule.alpha_bars.mul_(0)
    assert make().betas[0].item() < 0.01 and make().alpha_bars[0].item() > 0.9
    with pytest.raises(AttributeError, match="immutable"):
        schedule.num_steps = 10


def test_a_digit_bounces_on_reaching_the_wall_exactly():
    from vdmcourse.data import simulate_trajectories

    positions, velocities = simulate_trajectories(torch.tensor([[[0.0, 2.0]]]), torch.tensor([[[0.0, 2.0]]]), 7, 6)
    assert positions[0, :, 0, 1].tolist() == [2, 4, 6, 4, 2, 0, 2]  # no frame spent paused at a wall
    assert velocities[0, :, 0, 1].tolist() == [2, 2, -2, -2, -2, 2, 2]
    assert positions[0, :, 0, 0].tolist() == [0] * 7  # sliding along a wall is not a bounce


def test_moving_mnist_refuses_what_cannot_be_rendered_as_asked():
    from vdmcourse.data import MovingMNISTConfig, simulate_trajectories

    with pytest.raises(ValueError, match=r"positions must lie in \[0, free_range\]"):
        simulate_trajectories(torch.tensor([[[40.0, 2.0]]]), torch.zeros(1, 1, 2), 3, 16)
    with pytest.raises(ValueError, match=r"positions must lie"):
        simulate_trajectories(torch.tensor([[[math.nan, 2.0]]]), torch.zeros(1, 1, 2), 3, 16)
    with pytest.raises(ValueError, match="digits=500 digits of 16 px cover more than the 32x32 canvas"):
        MovingMNISTConfig.cpu(digits=500)
    MovingMNISTConfig.cpu(digits=4)  # four 16 px digits fill a 32 px canvas: allowed


def test_read_idx_refuses_a_corrupt_gzip_clearly(tmp_path):
    import gzip

    from vdmcourse.data.mnist import read_idx

    data = bytearray(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200)))
    data[10] = 0xFF  # the first deflate block header: a reserved block type (a raw zlib.error before)
    (tmp_path / "labels.gz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"read_idx: cannot read .*labels\.gz"):
        read_idx(tmp_path / "labels.gz")


def test_save_gif_refuses_an_ambiguous_layout_unless_told(tmp_path):
    import imageio.v3 as iio

    from vdmcourse.viz import save_gif

    grey_bcthw = torch.rand(2, 1, 3, 8, 8)  # (B, C=1, T=3, H, W), or (B, T=1, C=3, H, W)?
    with pytest.raises(ValueError, match="ambiguous.*channels=3"):
        save_gif(grey_bcthw, tmp_path / "a.gif")
    save_gif(grey_bcthw, tmp_path / "rgb.gif", channels=3)  # one RGB frame, said so
    save_gif(grey_bcthw.transpose(1, 2), tmp_path / "grey.gif")  # three grey frames, (B, T, C, H, W)
    assert iio.imread(tmp_path / "grey.gif", index=None).shape[0] == 3
    with pytest.raises(ValueError, match="channels=1"):
        save_gif(grey_bcthw, tmp_path / "b.gif", channels=1)


def test_t_equals_one_means_an_image_only_at_the_input():
    from vdmcourse.nn.unet3d import TemporalAttentionBlock, TemporalConv, UNet3D, UNet3DConfig

    image = UNet2DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4)
    config = UNet3DConfig.from_image_config(image, frames=2, temporal_attention_levels=(1,), temporal_downsample=(0,))
    model = UNet3D(config).eval()
    seen = []
    for module in model.modules():
        if isinstance(module, (TemporalConv, TemporalAttentionBlock)):
            module.register_forward_hook(lambda module, args, out: seen.append(args[1]))  # the frame count
    layers = sum(isinstance(m, (TemporalConv, TemporalAttentionBlock)) for m in model.modules())
    model(torch.randn(1, 2, 1, 16, 16), torch.rand(1))  # T = 2, halved to 1 below level 0
    assert len(seen) == layers and 1 in seen  # the lower temporal layers ran at an internal T = 1
    seen.clear()
    model(torch.randn(1, 1, 1, 16, 16), torch.rand(1))  # an image: no temporal layer at all
    assert seen == []


def test_naive_attention_takes_a_float64_bias_like_attention():
    from vdmcourse.nn.attention import attention, naive_attention

    q, k, v = (torch.randn(2, 5, 8) for _ in range(3))
    bias = torch.randn(5, 5, dtype=torch.float64)
    torch.testing.assert_close(naive_attention(q, k, v, bias=bias), attention(q, k, v, bias=bias), rtol=1e-4, atol=1e-5)
