"""A small image diffusion model: a 2-D U-Net with time and label conditioning.

The per-frame baseline of lesson 01, and the image model that lesson 05 inflates
into a (2+1)-D video U-Net. It takes the course's video layout ``(B, T, C, H, W)``
and treats the T frames as independent images (an image batch is ``T = 1``): no
layer looks across frames, so generating a "video" with it gives flicker.

Architecture (DDPM, Ho et al. 2020; improved by Dhariwal & Nichol 2021):

* ``time_embed`` + ``label_embed``: one conditioning vector per clip, shared by
  its frames (``vdmcourse.nn.embeddings``; label ``num_classes`` is the null label
  of classifier-free guidance, used when ``cond`` is None).
* ``input_conv`` -> ``down[i]`` -> ``mid`` -> ``up[i]`` -> ``output``. Each
  :class:`Level` holds ``blocks`` (:class:`ResBlock`: GroupNorm -> SiLU -> Conv3x3,
  then a FiLM scale-shift from the conditioning vector, GroupNorm -> SiLU ->
  Conv3x3) and one ``resample`` (a strided conv down, nearest-neighbour + conv up,
  or Identity at the ends). Every down block's output is a skip connection that
  the matching up block concatenates on channels. ``mid`` has self-attention over
  the pixels of each frame at the lowest resolution.
* Zero-initialised: the second conv of every ResBlock, the attention output and the
  final conv, so each block starts as the identity and the model outputs zeros.

Built for inflation: the forward pass visits ``down[i].blocks[j]``,
``mid.first/attention/second`` and ``up[i].blocks[j]`` in a fixed order on
``(B*T, C, H, W)`` frames; a video U-Net inserts a zero-initialised temporal layer
after each of them and, at init, equals this model frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vdmcourse.nn.attention import SpatialAttention
from vdmcourse.nn.embeddings import LabelEmbedding, TimestepEmbedding

__all__ = ["UNet2DConfig", "UNet2D", "ResBlock", "AttentionBlock", "Level", "MidBlock", "Downsample", "Upsample"]


@dataclass(frozen=True)
class UNet2DConfig:
    """Everything that defines a :class:`UNet2D` (and what its checkpoint stores).

    Attributes:
        image_size: H = W of the frames it is trained on (any multiple of
            ``2 ** (len(channel_mults) - 1)`` runs; samplers use this size).
        channels: image channels C, in and out (1 for MNIST).
        base_channels: width of the first level; level i has
            ``base_channels * channel_mults[i]``.
        channel_mults: one entry per resolution; each level after the first halves H and W.
        blocks_per_level: ResBlocks per level on the way down (and up).
        mid_attention: self-attention over each frame's pixels at the lowest resolution.
        heads: attention heads (must divide the lowest level's width).
        num_classes: digit classes for label conditioning; None for an unconditional model.
        groups: GroupNorm groups (must divide every width).
        dropout: dropout inside the ResBlocks.
    """

    image_size: int = 32
    channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 2
    mid_attention: bool = True
    heads: int = 4
    num_classes: int | None = 10
    groups: int = 8
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("image_size", "channels", "base_channels", "blocks_per_level", "heads", "groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"UNet2DConfig: {name} must be a positive int; got {value!r}")
        if not self.channel_mults or not all(isinstance(m, int) and m >= 1 for m in self.channel_mults):
            raise ValueError(f"UNet2DConfig: channel_mults must be a non-empty tuple of positive ints; got {self.channel_mults!r}")
        widths = [self.base_channels * m for m in self.channel_mults]
        if any(width % self.groups for width in widths):
            raise ValueError(f"UNet2DConfig: groups={self.groups} must divide every level width {widths}")
        if self.mid_attention and widths[-1] % self.heads:
            raise ValueError(f"UNet2DConfig: heads={self.heads} must divide the lowest level width {widths[-1]}")
        if self.image_size % self.downsampling:
            raise ValueError(
                f"UNet2DConfig: image_size={self.image_size} must be a multiple of {self.downsampling} "
                f"(the U-Net halves it {len(self.channel_mults) - 1} times)"
            )
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 1):
            raise ValueError(f"UNet2DConfig: num_classes must be a positive int or None; got {self.num_classes!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNet2DConfig: dropout must be in [0, 1); got {self.dropout!r}")

    @property
    def downsampling(self) -> int:
        """The factor by which the lowest level is smaller than the input."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def embed_dim(self) -> int:
        """Width of the time/label conditioning vector."""
        return 4 * self.base_channels


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> Conv3x3 -> FiLM -> GroupNorm -> SiLU -> Conv3x3, plus a skip.

    The conditioning vector sets a per-channel scale and shift after the second
    norm (FiLM, Perez et al. 2018; the "scale-shift norm" of Dhariwal & Nichol 2021). The second conv is
    zero-initialised, so the block starts as its skip path.

    Input ``x`` ``(N, C_in, H, W)`` and ``emb`` ``(N, E)``; output ``(N, C_out, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (N, C_out, H, W)
        scale, shift = rearrange(self.film(F.silu(emb)), "n (two c) -> two n c 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """GroupNorm -> self-attention over the H*W pixels of each frame, residual.

    Uses :class:`vdmcourse.nn.attention.SpatialAttention` with a zero-initialised
    output projection (the block starts as the identity).
    Input and output ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attention = SpatialAttention(channels, heads, zero_init=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = rearrange(self.norm(x), "n c h w -> n 1 h w c")  # each frame is its own one-frame clip
        h = self.attention(h)  # (N, 1, H, W, C)
        return x + rearrange(h, "n 1 h w c -> n c h w")


class Level(nn.Module):
    """One resolution of the U-Net: ``blocks`` (ResBlocks) then ``resample``
    (a :class:`Downsample`, an :class:`Upsample` or Identity)."""

    def __init__(self, blocks: list[ResBlock], resample: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class MidBlock(nn.Module):
    """ResBlock -> attention (or Identity) -> ResBlock at the lowest resolution."""

    def __init__(self, channels: int, embed_dim: int, config: UNet2DConfig):
        super().__init__()
        self.first = ResBlock(channels, channels, embed_dim, config.groups, config.dropout)
        self.attention = AttentionBlock(channels, config.heads, config.groups) if config.mid_attention else nn.Identity()
        self.second = ResBlock(channels, channels, embed_dim, config.groups, config.dropout)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.second(self.attention(self.first(x, emb)), emb)


class Downsample(nn.Module):
    """Strided 3x3 conv: ``(N, C, H, W)`` -> ``(N, C, H/2, W/2)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv: ``(N, C, H, W)`` -> ``(N, C, 2H, 2W)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet2D(nn.Module):
    """A 2-D diffusion U-Net applied to every frame independently.

    ``model(x, t, cond=None)``:

    * ``x``: ``(B, T, C, H, W)`` in ``[-1, 1]`` (the noisy frames; ``T = 1`` for images),
      C = ``config.channels``, H and W multiples of ``config.downsampling``.
    * ``t``: float ``(B,)`` in ``[0, 1]`` (1 = pure noise), one per clip.
    * ``cond``: None (the null label: unconditional), or long digit labels ``(B,)`` or
      ``(B, K)`` in ``[0, num_classes]`` (``num_classes`` = null label; K labels are summed).

    Returns ``(B, T, C, H, W)``: the prediction the training objective asks for
    (e.g. the flow velocity). Frames never mix: frame k of the output depends only
    on frame k of ``x``.
    """

    def __init__(self, config: UNet2DConfig | None = None):
        super().__init__()
        config = config or UNet2DConfig()
        if not isinstance(config, UNet2DConfig):
            raise TypeError(f"UNet2D expects a UNet2DConfig; got {type(config).__name__}")
        widths = self._init_stem(config)
        embed_dim, last = config.embed_dim, len(widths) - 1

        def res(cin, cout):
            return ResBlock(cin, cout, embed_dim, config.groups, config.dropout)

        self.down = nn.ModuleList()
        channels = widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for _ in range(config.blocks_per_level):
                blocks.append(res(channels, width))
                channels = width
            self.down.append(Level(blocks, Downsample(width) if i < last else nn.Identity()))

        self.mid = MidBlock(channels, embed_dim, config)

        self.up = nn.ModuleList()
        for i in reversed(range(len(widths))):
            blocks = []
            for _ in range(config.blocks_per_level):
                blocks.append(res(channels + widths[i], widths[i]))  # concatenated skip from down[i]
                channels = widths[i]
            self.up.append(Level(blocks, Upsample(channels) if i > 0 else nn.Identity()))

        self.output = nn.Sequential(
            nn.GroupNorm(config.groups, channels), nn.SiLU(), nn.Conv2d(channels, config.channels, 3, padding=1)
        )
        # A zero final conv makes the untrained model predict 0 (Dhariwal & Nichol 2021).
        nn.init.zeros_(self.output[-1].weight)
        nn.init.zeros_(self.output[-1].bias)

    def _init_stem(self, config) -> list[int]:
        """Keep ``config``; build the conditioning embeddings and the input conv (shared by
        UNet3D, so an inflated model keeps the image model's names). Returns the level widths."""
        self.config = config
        widths = [config.base_channels * m for m in config.channel_mults]
        self.time_embed = TimestepEmbedding(config.embed_dim)
        self.label_embed = LabelEmbedding(config.num_classes, config.embed_dim) if config.num_classes else None
        self.input_conv = nn.Conv2d(config.channels, widths[0], 3, padding=1)
        return widths

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The conditioning vector of each clip: time embedding + label embedding.
        ``t`` ``(B,)``, ``cond`` None / ``(B,)`` / ``(B, K)`` -> ``(B, E)``."""
        emb = self.time_embed(t)  # (B, E)
        if self.label_embed is None:
            if cond is not None:
                raise ValueError(f"{type(self).__name__}: this model is unconditional (config.num_classes=None) but cond was given")
            return emb
        if cond is None:
            cond = torch.full((t.shape[0],), self.label_embed.null_label, dtype=torch.long, device=t.device)
        return emb + self.label_embed(cond)  # (B, E)

    def _check_inputs(self, x, t, cond) -> None:
        """Refuse inputs outside the model contract, naming the argument (shared by UNet3D)."""
        config, name = self.config, type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} expects x to be a torch.Tensor (B, T, C, H, W); got {type(x).__name__}")
        if x.ndim != 5 or x.shape[2] != config.channels:
            hint = " -- a batch of images? Add the frame axis: x[:, None]" if x.ndim == 4 else ""
            raise ValueError(f"{name} expects x of shape (B, T, C, H, W) with C={config.channels}; got {tuple(x.shape)}{hint}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} expects x with at least one clip; got an empty batch {tuple(x.shape)}")
        weight = self.input_conv.weight
        if x.dtype != weight.dtype:
            hint = " (uint8 pixels? scale to [-1, 1] first: x.float() / 127.5 - 1)" if not x.is_floating_point() else ""
            raise TypeError(f"{name} expects x of dtype {weight.dtype}, the model's; got {x.dtype}{hint}: use x.to({weight.dtype})")
        if x.device != weight.device:
            raise ValueError(f"{name} is on {weight.device} but x is on {x.device}; move one: x.to({str(weight.device)!r})")
        height, width = x.shape[-2:]
        if height % config.downsampling or width % config.downsampling:
            raise ValueError(f"{name}: H and W must be multiples of {config.downsampling}; got x of shape {tuple(x.shape)}")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} expects t of shape (B,) = ({x.shape[0]},), one time per clip; got {got}")
        if t.device != x.device:
            raise ValueError(f"{name} expects t on x's device {x.device}; got t on {t.device}")
        if cond is not None and (not isinstance(cond, torch.Tensor) or cond.ndim not in (1, 2) or cond.shape[0] != x.shape[0]):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"{name} expects cond of shape (B,) or (B, K) with B={x.shape[0]}, or None; got {got}")
        if cond is not None and cond.device != x.device:
            raise ValueError(f"{name} expects cond on x's device {x.device}; got cond on {cond.device}")

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(x, t, cond)
        batch, frames = x.shape[:2]
        emb = repeat(self.embed(t, cond), "b e -> (b t) e", t=frames)  # (B*T, E): one vector per frame
        h = self.input_conv(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, c0, H, W)
        skips = []
        for level in self.down:
            for block in level.blocks:
                h = block(h, emb)
                skips.append(h)
            h = level.resample(h)  # (B*T, c_i, H_i / 2, W_i / 2), except at the lowest level
        h = self.mid(h, emb)
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)  # skip concatenated on channels
            h = level.resample(h)  # (B*T, c_i, 2 H_i, 2 W_i), except at the top level
        out = self.output(h)  # (B*T, C, H, W)
        return rearrange(out, "(b t) c h w -> b t c h w", b=batch)
