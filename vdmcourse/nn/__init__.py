"""Neural-network building blocks: embeddings, attention over space and time, and
the spatiotemporal blocks built from them. All attention-level modules work on
channels-last grids ``(B, T, H, W, D)``."""

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

__all__ = [
    "LabelEmbedding",
    "PositionTable",
    "RelativePositionBias",
    "TimestepEmbedding",
    "apply_rope",
    "drop_labels",
    "sincos_table_1d",
    "sincos_table_2d",
    "sincos_table_3d",
    "sinusoidal_embedding",
]
