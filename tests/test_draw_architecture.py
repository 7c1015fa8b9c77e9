"""viz.draw_architecture draws the modules a forward pass really calls."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from vdmcourse.nn import SpatiotemporalBlock  # noqa: E402
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig  # noqa: E402
from vdmcourse.viz import draw_architecture  # noqa: E402


def boxes(figure):
    return [text for text in figure.axes[0].texts if text.get_text()]  # arrows are empty annotations


def box_texts(figure):
    return [text.get_text() for text in boxes(figure)]


def test_a_block_draws_its_branches_in_call_order():
    figure = draw_architecture(SpatiotemporalBlock(16, 2), (torch.zeros(1, 3, 2, 2, 16),))
    names = [text.split("\n")[0] for text in box_texts(figure)]
    assert names == ["norms.0", "spatial", "norms.1", "temporal", "norms.2", "ffn"]
    assert "skip" not in figure.axes[0].get_title()


def test_a_unet_draws_as_a_u_with_its_skips():
    model = UNet3D(UNet3DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, frames=3))
    figure = draw_architecture(model)
    texts = box_texts(figure)
    assert any(text.startswith("mid\n") for text in texts) and texts[-1].startswith("output")
    ys = {box.get_text().split("\n")[0]: box.get_position()[1] for box in boxes(figure)}
    assert ys["mid"] < ys["input_conv"]  # smaller frames sit lower
    skips = [a for a in figure.axes[0].texts if getattr(a, "arrow_patch", None) is not None
             and a.arrow_patch.get_linestyle() in ("--", "dashed")]
    assert len(skips) == 2 and "skip connections" in figure.axes[0].get_title()


def test_a_module_without_a_config_needs_inputs():
    with pytest.raises(ValueError, match="pass inputs"):
        draw_architecture(SpatiotemporalBlock(16, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        draw_architecture("not a model")
