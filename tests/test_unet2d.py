"""The 2-D U-Net image model: shapes, per-frame independence, conditioning, init."""

import pytest
import torch
from torch import nn

from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig

SMALL = UNet2DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4)


def randomised(model: UNet2D) -> UNet2D:
    """Give the zero-initialised layers random weights, so every path carries signal."""
    torch.manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.abs().max() == 0:
                module.weight.normal_(std=0.1)
                module.bias.normal_(std=0.1)
    return model


def inputs(batch=2, frames=1, size=16):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, frames, 1, size, size, generator=generator) * 2 - 1
    t = torch.rand(batch, generator=generator)
    cond = torch.randint(0, 10, (batch,), generator=generator)
    return x, t, cond


@pytest.mark.parametrize("frames", [1, 3])
def test_output_has_the_input_shape_and_is_zero_at_init(frames):
    model = UNet2D(SMALL)
    x, t, cond = inputs(frames=frames)
    out = model(x, t, cond)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))


def test_frames_are_independent_images():
    model = randomised(UNet2D(SMALL)).eval()
    x, t, cond = inputs(frames=3)
    out = model(x, t, cond)
    for k in range(3):
        alone = model(x[:, k : k + 1], t, cond)
        torch.testing.assert_close(out[:, k : k + 1], alone, rtol=1e-5, atol=1e-5)
    changed = x.clone()
    changed[:, 1] = torch.rand_like(changed[:, 1])
    out_changed = model(changed, t, cond)
    assert torch.equal(out_changed[:, 0], out[:, 0]) and torch.equal(out_changed[:, 2], out[:, 2])
    assert not torch.allclose(out_changed[:, 1], out[:, 1])


def test_time_and_label_change_the_output_and_no_label_means_the_null_label():
    model = randomised(UNet2D(SMALL)).eval()
    x, t, cond = inputs()
    out = model(x, t, cond)
    assert not torch.allclose(model(x, t, (cond + 1) % 10), out)
    assert not torch.allclose(model(x, 1 - t, cond), out)
    null = torch.full_like(cond, 10)
    torch.testing.assert_close(model(x, t, None), model(x, t, null))
    several = torch.stack([cond, (cond + 3) % 10], dim=1)  # (B, K) labels are summed
    assert model(x, t, several).shape == x.shape


def test_gradients_reach_every_parameter():
    model = randomised(UNet2D(SMALL))
    x, t, cond = inputs()
    model(x, t, cond).square().mean().backward()
    for name, parameter in model.named_parameters():
        if name.startswith("label_embed"):  # only the rows of the labels used get gradients
            continue
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_zero_initialised_layers():
    model = UNet2D(SMALL)
    assert torch.equal(model.output[-1].weight, torch.zeros_like(model.output[-1].weight))
    for block in [*model.down[0].blocks, model.mid.first, *model.up[0].blocks]:
        assert block.conv2.weight.abs().max() == 0
    assert model.mid.attention.attention.out.weight.abs().max() == 0


def test_structure_is_regular_for_inflation():
    config = UNet2DConfig(image_size=32, base_channels=8, channel_mults=(1, 2, 2), blocks_per_level=2, heads=2, groups=4)
    model = UNet2D(config)
    assert len(model.down) == len(model.up) == 3
    assert all(len(level.blocks) == 2 for level in [*model.down, *model.up])
    assert isinstance(model.down[-1].resample, nn.Identity) and isinstance(model.up[-1].resample, nn.Identity)
    x, t, cond = inputs(size=32)
    assert model(x, t, cond).shape == x.shape


def test_unconditional_model():
    model = UNet2D(UNet2DConfig(**{**SMALL.__dict__, "num_classes": None}))
    x, t, _ = inputs()
    assert model.label_embed is None
    assert model(x, t).shape == x.shape
    with pytest.raises(ValueError, match="unconditional"):
        model(x, t, torch.zeros(2, dtype=torch.long))


def test_bad_inputs_are_refused_with_clear_messages():
    model = UNet2D(SMALL)
    x, t, cond = inputs()
    with pytest.raises(ValueError, match="frame axis"):
        model(x[:, 0], t, cond)
    with pytest.raises(ValueError, match="C=1"):
        model(x.repeat(1, 1, 3, 1, 1), t, cond)
    with pytest.raises(ValueError, match="multiples of 2"):
        model(x[..., :15, :15], t, cond)
    with pytest.raises(ValueError, match=r"t of shape \(B,\)"):
        model(x, t[:1], cond)
    with pytest.raises(ValueError, match="cond"):
        model(x, t, cond[:1])
    with pytest.raises(TypeError, match="UNet2DConfig"):
        UNet2D({"base_channels": 8})


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="groups"):
        UNet2DConfig(base_channels=12, groups=8)
    with pytest.raises(ValueError, match="heads"):
        UNet2DConfig(base_channels=8, channel_mults=(1,), heads=3, groups=4)
    with pytest.raises(ValueError, match="image_size"):
        UNet2DConfig(image_size=30)
    with pytest.raises(ValueError, match="channel_mults"):
        UNet2DConfig(channel_mults=())
