"""Helpers shared by the model tests: seeded generators, tiny configs, and weights that are not zero.

pytest puts this folder on ``sys.path`` (the tests are not a package), so test files import it
as ``from helpers import ...``.
"""

import torch

from vdmcourse.nn.unet2d import UNet2DConfig
from vdmcourse.nn.unet3d import UNet3DConfig

IMAGE = UNet2DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4)
VIDEO = UNet3DConfig.from_image_config(IMAGE, frames=4, temporal_attention_levels=(1,))


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def wake_up(model, seed=2):
    """Give every zero-initialised weight random values, as training would (a fresh U-Net or DiT predicts 0)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(std=0.1)
    return model


def randomise(model, seed=0):
    """Give every weight (the zero-initialised ones too) a small random value, so outputs depend on everything."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()
