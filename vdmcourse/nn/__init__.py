"""Neural-network building blocks: embeddings, attention over space and time, and
the spatiotemporal blocks built from them. All attention-level modules work on
channels-last grids ``(B, T, H, W, D)``."""

from vdmcourse.nn.attention import (
    FullAttention,
    SpatialAttention,
    TemporalAttention,
    attention,
    causal_mask,
    frame_mask,
    naive_attention,
    padding_mask,
    window_mask,
)
from vdmcourse.nn.blocks import FeedForward, Full3DBlock, SpatiotemporalBlock
from vdmcourse.nn.conditioning import ConditionedUNet3D, ConditionedUNet3DConfig, MicroConditioning, SignalEmbedding
from vdmcourse.nn.dit import VideoDiT, VideoDiTConfig
from vdmcourse.nn.embeddings import (
    LabelEmbedding,
    PositionTable,
    RelativePositionBias,
    TimestepEmbedding,
    apply_rope,
    drop_labels,
    sincos_table_1d,
    sincos_table_2d,
    sincos_table_3d,
    sinusoidal_embedding,
)
from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.nn.vae import CausalConv3d, DiagonalGaussian, VideoVAE, VideoVAEConfig

__all__ = [
    "CausalConv3d",
    "DiagonalGaussian",
    "FeedForward",
    "Full3DBlock",
    "FullAttention",
    "LabelEmbedding",
    "PositionTable",
    "RelativePositionBias",
    "SpatialAttention",
    "SpatiotemporalBlock",
    "TemporalAttention",
    "TimestepEmbedding",
    "UNet2D",
    "UNet2DConfig",
    "UNet3D",
    "UNet3DConfig",
    "VideoDiT",
    "VideoDiTConfig",
    "VideoVAE",
    "VideoVAEConfig",
    "apply_rope",
    "attention",
    "causal_mask",
    "drop_labels",
    "frame_mask",
    "naive_attention",
    "padding_mask",
    "sincos_table_1d",
    "sincos_table_2d",
    "sincos_table_3d",
    "sinusoidal_embedding",
    "window_mask",
    "ConditionedUNet3D",
    "ConditionedUNet3DConfig",
    "MicroConditioning",
    "SignalEmbedding",
]
