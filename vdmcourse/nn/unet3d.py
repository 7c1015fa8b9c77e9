"""A video diffusion U-Net: factorised (2+1)-D convolutions, inflated from an image model.

The first real video model of the course (lesson 05). It keeps the module tree of
:class:`vdmcourse.nn.unet2d.UNet2D` -- same names, same shapes for every 2-D
weight -- and adds temporal layers beside them, so an image model can be
*inflated* into it (:meth:`UNet3D.from_image_model`): every 2-D weight is
copied, every temporal layer starts at zero, and at initialisation the video
model equals the image model frame by frame.

Architecture (Ho et al. 2022, "Video Diffusion Models"; Tran et al. 2018,
R(2+1)D; Singer et al. 2022, Make-A-Video):

* One conditioning vector per clip (time + label embeddings, FiLM in every block);
  or one per frame when ``t`` has a time per frame ``(B, T)`` -- clean context frames
  at time 0 beside noisy ones (masked-frame conditioning, lesson 12) or independent
  noise levels (diffusion forcing).
* :class:`ResBlock3D`: GroupNorm -> SiLU -> spatial Conv3x3 (per frame) ->
  **temporal conv** (kernel 3 over frames, zero-initialised, residual) -> FiLM
  scale-shift -> GroupNorm -> SiLU -> Conv3x3, plus the skip; optionally a
  temporal attention block after it. With ``conv="3d"`` the two spatial convs are
  true 3x3x3 ``Conv3d`` and there is no separate temporal conv (lesson 05 measures
  the difference).
* **GroupNorm is per frame**: it normalises ``(B*T, C, H, W)``, so statistics never
  mix frames (a GroupNorm over ``(B, C, T, H, W)`` would let every frame shift
  every other frame's normalisation).
* Spatial down/up-sampling with skip connections between matching resolutions;
  optional temporal down/up-sampling (halving T) after chosen levels.
* At the lowest resolution (``mid``, and the ResBlocks of ``temporal_attention_levels``):
  attention across frames with explicit frame position (RoPE by default) -- per pixel
  position (:class:`vdmcourse.nn.attention.TemporalAttention`) or, with
  ``attention_span="spacetime"``, over all positions of all frames
  (:class:`vdmcourse.nn.attention.FullAttention`); ``mid`` also keeps the image
  model's spatial attention.

A single frame (``T = 1``) is a valid input: the temporal layers are skipped for it,
so images train the spatial layers alone (joint image/video training).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn

from vdmcourse.nn.attention import TIME_POSITIONS, FullAttention, TemporalAttention
from vdmcourse.nn.cross_attention import CrossAttentionBlock
from vdmcourse.nn.unet2d import AttentionBlock, Downsample, Level, UNet2D, UNet2DConfig, Upsample

__all__ = [
    "UNet3DConfig",
    "UNet3D",
    "ResBlock3D",
    "TemporalConv",
    "TemporalAttentionBlock",
    "MidBlock3D",
    "TemporalDownsample",
    "TemporalUpsample",
    "CONV_TYPES",
    "ATTENTION_SPANS",
    "extended_config",
]

CONV_TYPES = ("2+1d", "3d")
ATTENTION_SPANS = ("time", "spacetime")


def extended_config(source: nn.Module, config_class: type, config, new_fields: dict, *, owner: str, role: str = "source model"):
    """The config of a model that extends a trained UNet3D ``source`` and copies its weights:
    ``config`` itself, whose UNet3D fields must equal the source's, or, when ``config`` is
    None, the source's fields plus ``new_fields`` (the extension's own fields only).
    ``owner`` (the caller) and ``role`` (what the source is to it) name them in errors."""
    if config is None:
        return config_class(**{**source.config.__dict__, **new_fields})
    if new_fields:
        raise ValueError(f"{owner}: give config or fields, not both; got {sorted(new_fields)}")
    differences = [f"{f.name}: {role} {getattr(source.config, f.name)!r}, config {getattr(config, f.name)!r}"
                   for f in fields(UNet3DConfig) if getattr(config, f.name) != getattr(source.config, f.name)]
    if differences:
        raise ValueError(f"{owner}: the config's UNet3D fields differ from the {role}'s: " + "; ".join(differences))
    return config


@dataclass(frozen=True)
class UNet3DConfig:
    """Everything that defines a :class:`UNet3D` (and what its checkpoint stores).

    The first ten fields are :class:`~vdmcourse.nn.unet2d.UNet2DConfig`'s, with the
    same meaning (so an image model's config extends to a video one); the rest are
    about time.

    Attributes:
        image_size: H = W of the frames it is trained on (any multiple of
            ``2 ** (len(channel_mults) - 1)`` runs).
        channels: image channels C, in and out (1 for MNIST).
        base_channels: width of the first level; level i has ``base_channels * channel_mults[i]``.
        channel_mults: one entry per resolution; each level after the first halves H and W.
        blocks_per_level: ResBlocks per level on the way down (and up).
        mid_attention: spatial + temporal attention at the lowest resolution.
        heads: attention heads (must divide the widths that get attention).
        num_classes: digit classes for label conditioning; None for an unconditional model.
        groups: GroupNorm groups (must divide every width).
        dropout: dropout inside the ResBlocks.
        frames: clip length T it is trained on (samplers use it; any T runs unless
            temporal down-sampling needs a multiple).
        conv: ``"2+1d"`` (spatial 3x3 per frame + temporal conv of ``temporal_kernel``
            frames) or ``"3d"`` (true 3x3x3 ``Conv3d``).
        temporal_kernel: odd number of frames the temporal conv sees (``"2+1d"`` only).
        temporal_conv_levels: levels whose ResBlocks get a temporal conv (``"2+1d"``
            only; the mid block counts as the lowest level); None: every level.
            Leaving out the full-resolution level saves most of their cost on a CPU,
            where a conv over a few frames at few channels is memory-bound.
        temporal_attention_levels: levels (indices into ``channel_mults``) whose
            ResBlocks are each followed by temporal attention; keep to low resolutions.
        attention_span: what the attention added for time relates: ``"time"`` (each
            pixel position across frames, :class:`~vdmcourse.nn.attention.TemporalAttention`)
            or ``"spacetime"`` (every position of every frame,
            :class:`~vdmcourse.nn.attention.FullAttention`: ``(T H W)^2`` scores, affordable
            at the lowest resolutions, and it lets a moving digit see itself elsewhere in
            other frames).
        temporal_downsample: levels after which T is halved on the way down (and
            doubled back on the way up); each must be below the lowest level.
        time_position: frame position in temporal attention, one of
            :data:`vdmcourse.nn.attention.TIME_POSITIONS` except ``"learned"``.
        context_dim: width of the text tokens that cross-attention reads (lesson 09,
            :mod:`vdmcourse.nn.text`); None (the default): no cross-attention.
        cross_attention_levels: levels whose ResBlocks are each followed by cross-attention
            to the text (the mid block gets one whenever ``context_dim`` is set).
        pooled_context: also add a pooled text vector ``(B, context_dim)`` to the
            time/label embedding (needs ``context_dim``).
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
    frames: int = 10
    conv: str = "2+1d"
    temporal_kernel: int = 3
    temporal_conv_levels: tuple[int, ...] | None = None
    temporal_attention_levels: tuple[int, ...] = ()
    attention_span: str = "time"
    temporal_downsample: tuple[int, ...] = ()
    time_position: str = "rope"
    context_dim: int | None = None
    cross_attention_levels: tuple[int, ...] = ()
    pooled_context: bool = False

    def __post_init__(self):
        try:
            UNet2DConfig(**self.image_fields())  # the spatial half follows the image model's rules
        except ValueError as error:
            raise ValueError(str(error).replace("UNet2DConfig", "UNet3DConfig")) from None
        if not isinstance(self.frames, int) or isinstance(self.frames, bool) or self.frames < 1:
            raise ValueError(f"UNet3DConfig: frames must be a positive int; got {self.frames!r}")
        if self.conv not in CONV_TYPES:
            raise ValueError(f"UNet3DConfig: conv must be one of {CONV_TYPES}; got {self.conv!r}")
        if not isinstance(self.temporal_kernel, int) or self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ValueError(
                f"UNet3DConfig: temporal_kernel must be a positive odd int (an odd kernel with "
                f"padding k // 2 keeps frame t at t); got {self.temporal_kernel!r}"
            )
        levels = len(self.channel_mults)
        for name, allowed in (
            ("temporal_conv_levels", levels),
            ("temporal_attention_levels", levels),
            ("temporal_downsample", levels - 1),
        ):
            value = getattr(self, name)
            if name == "temporal_conv_levels" and value is None:
                continue
            if not isinstance(value, tuple) or not all(isinstance(i, int) and 0 <= i < allowed for i in value):
                raise ValueError(
                    f"UNet3DConfig: {name} must be a tuple of distinct level indices in [0, {allowed}); got {value!r}"
                )
            if len(set(value)) != len(value):
                raise ValueError(f"UNet3DConfig: {name} has repeated levels: {value!r}")
        widths = [self.base_channels * m for m in self.channel_mults]
        for i in self.temporal_attention_levels:
            if widths[i] % self.heads:
                raise ValueError(f"UNet3DConfig: heads={self.heads} must divide level {i}'s width {widths[i]}")
        if self.attention_span not in ATTENTION_SPANS:
            raise ValueError(f"UNet3DConfig: attention_span must be one of {ATTENTION_SPANS}; got {self.attention_span!r}")
        if self.time_position not in TIME_POSITIONS or self.time_position == "learned":
            allowed = tuple(p for p in TIME_POSITIONS if p != "learned")
            raise ValueError(f"UNet3DConfig: time_position must be one of {allowed}; got {self.time_position!r}")
        attended = [widths[i] for i in self.temporal_attention_levels] + ([widths[-1]] if self.mid_attention else [])
        if self.time_position == "rope" and any((w // self.heads) % 2 for w in attended):
            raise ValueError(f"UNet3DConfig: RoPE needs an even head width; widths {attended} / heads={self.heads}")
        _check_text_fields(self, widths)
        if self.frames % self.temporal_downsampling:
            raise ValueError(
                f"UNet3DConfig: frames={self.frames} must be a multiple of {self.temporal_downsampling} "
                f"(temporal_downsample halves T {len(self.temporal_downsample)} times)"
            )

    def image_fields(self) -> dict:
        """The fields shared with :class:`~vdmcourse.nn.unet2d.UNet2DConfig`, as a dict."""
        return {f.name: getattr(self, f.name) for f in fields(UNet2DConfig)}

    @classmethod
    def from_image_config(cls, image_config: UNet2DConfig, **video_fields) -> UNet3DConfig:
        """The video config that extends ``image_config`` (its fields copied) with ``video_fields``."""
        if not isinstance(image_config, UNet2DConfig):
            raise TypeError(f"UNet3DConfig.from_image_config expects a UNet2DConfig; got {type(image_config).__name__}")
        shared = set(video_fields) & {f.name for f in fields(UNet2DConfig)}
        if shared:
            raise ValueError(f"UNet3DConfig.from_image_config: {sorted(shared)} come from the image model and cannot be changed")
        return cls(**{f.name: getattr(image_config, f.name) for f in fields(UNet2DConfig)}, **video_fields)

    def has_temporal_conv(self, level: int) -> bool:
        """True when level ``level``'s ResBlocks get a temporal conv."""
        return self.conv == "2+1d" and (self.temporal_conv_levels is None or level in self.temporal_conv_levels)

    @property
    def downsampling(self) -> int:
        """The factor by which the lowest level is smaller than the input in H and W."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def temporal_downsampling(self) -> int:
        """The factor by which the lowest level has fewer frames than the input."""
        return 2 ** len(self.temporal_downsample)

    @property
    def embed_dim(self) -> int:
        """Width of the time/label conditioning vector."""
        return 4 * self.base_channels


def _check_text_fields(config: UNet3DConfig, widths: list[int]) -> None:
    if config.context_dim is None:
        if config.cross_attention_levels or config.pooled_context:
            raise ValueError("UNet3DConfig: cross_attention_levels and pooled_context need context_dim (the text token width)")
        return
    if not isinstance(config.context_dim, int) or isinstance(config.context_dim, bool) or config.context_dim < 1:
        raise ValueError(f"UNet3DConfig: context_dim must be a positive int or None; got {config.context_dim!r}")
    levels = config.cross_attention_levels
    if not isinstance(levels, tuple) or not all(isinstance(i, int) and 0 <= i < len(widths) for i in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"UNet3DConfig: cross_attention_levels must be a tuple of distinct level indices in [0, {len(widths)}); got {levels!r}")
    for i in (*levels, len(widths) - 1):
        if widths[i] % config.heads:
            raise ValueError(f"UNet3DConfig: heads={config.heads} must divide level {i}'s width {widths[i]} (cross-attention)")


def _plus(clip_emb: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """An embedding per clip ``(B, E)`` or per frame ``(B, T, E)`` plus a vector of either kind;
    per frame if either is."""
    if clip_emb.ndim == vector.ndim:
        return clip_emb + vector
    return clip_emb[:, None] + vector if clip_emb.ndim == 2 else clip_emb + vector[:, None]


def _frames_first(h: torch.Tensor, frames: int) -> torch.Tensor:
    return rearrange(h, "(b t) c h w -> b c t h w", t=frames)  # (B, C, T, H, W) for Conv3d


def _frames_back(h: torch.Tensor) -> torch.Tensor:
    return rearrange(h, "b c t h w -> (b t) c h w")  # (B*T, C, H, W)


class TemporalConv(nn.Module):
    """A residual conv across frames at each pixel: ``x + Conv1d_k(x)`` over T.

    Zero-initialised, so it starts as the identity. ``padding = k // 2`` on both
    sides keeps output frame t centred on input frame t (padding only in front
    would shift every frame). Input and output ``(B*T, C, H, W)``; ``frames`` = T.
    """

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        height, width = x.shape[-2:]
        h = rearrange(x, "(b t) c h w -> (b h w) c t", t=frames)  # one sequence of T frames per pixel
        h = self.conv(h)  # (B*H*W, C, T)
        return x + rearrange(h, "(b h w) c t -> (b t) c h w", h=height, w=width)


class TemporalAttentionBlock(nn.Module):
    """GroupNorm (per frame) -> attention across frames, residual.

    ``span="time"``: :class:`~vdmcourse.nn.attention.TemporalAttention` (each pixel
    position across frames); ``span="spacetime"``:
    :class:`~vdmcourse.nn.attention.FullAttention` (all positions of all frames). Frame
    position ``time_position``; the output projection is zero-initialised (identity at
    init). Input and output ``(B*T, C, H, W)``; ``frames`` = T.
    """

    def __init__(self, channels: int, heads: int, groups: int, time_position: str | None = "rope", span: str = "time"):
        super().__init__()
        attention = TemporalAttention if span == "time" else FullAttention
        self.norm = nn.GroupNorm(groups, channels)
        self.attention = attention(channels, heads, time_position=time_position, zero_init=True)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        h = rearrange(self.norm(x), "(b t) c h w -> b t h w c", t=frames)  # the attention's grid layout
        h = self.attention(h)  # (B, T, H, W, C)
        return x + rearrange(h, "b t h w c -> (b t) c h w")


class ResBlock3D(nn.Module):
    """The image model's ResBlock with time added (same 2-D weight names).

    ``conv="2+1d"``: GroupNorm -> SiLU -> Conv3x3 per frame -> ``temporal``
    (:class:`TemporalConv`) -> FiLM -> GroupNorm -> SiLU -> Conv3x3, plus the skip.
    ``conv="3d"``: ``conv1``/``conv2`` are 3x3x3 Conv3d and ``temporal`` is absent
    (as it is with ``temporal_conv=False``). ``temporal_attention`` (optional) follows the block.

    Norms see one frame at a time. ``conv2`` and the temporal layers are
    zero-initialised. Input ``x`` ``(B*T, C_in, H, W)``, ``emb`` ``(B*T, E)``,
    ``frames`` = T; output ``(B*T, C_out, H, W)``. ``video=False`` skips the temporal
    layers (the block is then exactly the image ResBlock); the model passes it for an
    image input (T = 1 at the input), not for a clip whose internal T has been halved
    to 1. Default: ``frames > 1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_dim: int,
        config: UNet3DConfig,
        *,
        temporal_conv: bool = True,
        attention: bool = False,
    ):
        super().__init__()
        conv = nn.Conv2d if config.conv == "2+1d" else nn.Conv3d
        self.norm1 = nn.GroupNorm(config.groups, in_channels)
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)
        self.temporal = TemporalConv(out_channels, config.temporal_kernel) if temporal_conv and config.conv == "2+1d" else None
        self.film = nn.Linear(embed_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(config.groups, out_channels)
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.temporal_attention = (
            TemporalAttentionBlock(out_channels, config.heads, config.groups, config.time_position, config.attention_span)
            if attention
            else None
        )
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def _conv(self, conv: nn.Module, h: torch.Tensor, frames: int) -> torch.Tensor:
        if isinstance(conv, nn.Conv3d):
            return _frames_back(conv(_frames_first(h, frames)))  # 3x3x3 over (T, H, W)
        return conv(h)  # 3x3 on each frame

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int, video: bool | None = None) -> torch.Tensor:
        video = frames > 1 if video is None else video
        h = self._conv(self.conv1, F.silu(self.norm1(x)), frames)  # (B*T, C_out, H, W)
        if self.temporal is not None and video:
            h = self.temporal(h, frames)
        scale, shift = rearrange(self.film(F.silu(emb)), "n (two c) -> two n c 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self._conv(self.conv2, self.dropout(F.silu(h)), frames)
        out = self.skip(x) + h
        if self.temporal_attention is not None and video:
            out = self.temporal_attention(out, frames)
        return out


class MidBlock3D(nn.Module):
    """ResBlock -> spatial attention -> temporal attention -> ResBlock at the lowest
    resolution (the attention pair is Identity/None without ``mid_attention``).
    Input and output ``(B*T, C, H, W)``."""

    def __init__(self, channels: int, embed_dim: int, config: UNet3DConfig):
        super().__init__()
        temporal_conv = config.has_temporal_conv(len(config.channel_mults) - 1)
        self.first = ResBlock3D(channels, channels, embed_dim, config, temporal_conv=temporal_conv)
        self.attention = AttentionBlock(channels, config.heads, config.groups) if config.mid_attention else nn.Identity()
        self.temporal_attention = (
            TemporalAttentionBlock(channels, config.heads, config.groups, config.time_position, config.attention_span)
            if config.mid_attention
            else None
        )
        self.second = ResBlock3D(channels, channels, embed_dim, config, temporal_conv=temporal_conv)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int, video: bool | None = None) -> torch.Tensor:
        video = frames > 1 if video is None else video
        h = self.attention(self.first(x, emb, frames, video))
        if self.temporal_attention is not None and video:
            h = self.temporal_attention(h, frames)
        return self.second(h, emb, frames, video)


class TemporalDownsample(nn.Module):
    """Halve T with a stride-2 conv over frames (kernel 3, per pixel):
    ``(B*T, C, H, W)`` -> ``(B*T/2, C, H, W)``. T must be even."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return _frames_back(self.conv(_frames_first(x, frames)))  # (B*T/2, C, H, W)


class TemporalUpsample(nn.Module):
    """Double T: repeat each frame, then a conv over frames (kernel 3, per pixel):
    ``(B*T, C, H, W)`` -> ``(B*2T, C, H, W)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        h = _frames_first(x, frames).repeat_interleave(2, dim=2)  # (B, C, 2T, H, W)
        return _frames_back(self.conv(h))


class UNet3D(nn.Module):
    """A (2+1)-D video diffusion U-Net.

    ``model(x, t, cond=None)``:

    * ``x``: ``(B, T, C, H, W)`` in ``[-1, 1]`` (the noisy clips), C = ``config.channels``,
      H and W multiples of ``config.downsampling``, T a multiple of
      ``config.temporal_downsampling`` (or T = 1: an image, temporal layers skipped).
    * ``t``: float ``(B,)`` in ``[0, 1]`` (1 = pure noise), one per clip; or ``(B, T)``,
      one per frame (each frame's FiLM then gets its own time; with temporal
      down-sampling, a coarse frame gets the mean embedding of the frames it merges).
    * ``cond``: None (the null label: unconditional), or long digit labels ``(B,)`` or
      ``(B, K)`` in ``[0, num_classes]`` (``num_classes`` = the null label of
      classifier-free guidance; K labels are summed).

    Returns ``(B, T, C, H, W)``: the prediction the training objective asks for
    (e.g. the flow velocity).

    Build one from a config, or inflate a trained image model with
    :meth:`from_image_model`.
    """

    def __init__(self, config: UNet3DConfig | None = None):
        super().__init__()
        config = config or UNet3DConfig()
        if not isinstance(config, UNet3DConfig):
            raise TypeError(f"UNet3D expects a UNet3DConfig; got {type(config).__name__}")
        widths = UNet2D._init_stem(self, config)  # the image model's embeddings and input conv, same names
        embed_dim, last = config.embed_dim, len(widths) - 1

        def res(cin, cout, level):
            return ResBlock3D(
                cin,
                cout,
                embed_dim,
                config,
                temporal_conv=config.has_temporal_conv(level),
                attention=level in config.temporal_attention_levels,
            )

        self.down = nn.ModuleList()
        self.temporal_down = nn.ModuleDict()
        channels = widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for _ in range(config.blocks_per_level):
                blocks.append(res(channels, width, i))
                channels = width
            self.down.append(Level(blocks, Downsample(width) if i < last else nn.Identity()))
            if i in config.temporal_downsample:
                self.temporal_down[str(i)] = TemporalDownsample(width)

        self.mid = MidBlock3D(channels, embed_dim, config)

        self.up = nn.ModuleList()
        self.temporal_up = nn.ModuleDict()
        for i in reversed(range(len(widths))):
            if i in config.temporal_downsample:
                self.temporal_up[str(i)] = TemporalUpsample(channels)  # undoes temporal_down[i] before level i's blocks
            blocks = []
            for _ in range(config.blocks_per_level):
                blocks.append(res(channels + widths[i], widths[i], i))  # concatenated skip from down[i]
                channels = widths[i]
            self.up.append(Level(blocks, Upsample(channels) if i > 0 else nn.Identity()))

        self.output = nn.Sequential(
            nn.GroupNorm(config.groups, channels), nn.SiLU(), nn.Conv2d(channels, config.channels, 3, padding=1)
        )
        self._init_text(config, widths)
        # A zero final conv makes the untrained model predict 0 (Dhariwal & Nichol 2021).
        nn.init.zeros_(self.output[-1].weight)
        nn.init.zeros_(self.output[-1].bias)

    def _init_text(self, config: UNet3DConfig, widths: list[int]) -> None:
        """Cross-attention after the chosen levels' ResBlocks and the mid block, keyed
        ``down{i}_{j}`` / ``mid`` / ``up{i}_{j}``, and the pooled-text projection; both
        zero-initialised and absent without ``context_dim`` (so older checkpoints load)."""
        if config.context_dim is None:
            return
        self.cross = nn.ModuleDict()
        for i in config.cross_attention_levels:
            for j in range(config.blocks_per_level):
                for side in ("down", "up"):
                    self.cross[f"{side}{i}_{j}"] = CrossAttentionBlock(widths[i], config.context_dim, config.heads, config.groups)
        self.cross["mid"] = CrossAttentionBlock(widths[-1], config.context_dim, config.heads, config.groups)
        if config.pooled_context:
            self.pooled_context = nn.Linear(config.context_dim, config.embed_dim)
            nn.init.zeros_(self.pooled_context.weight)
            nn.init.zeros_(self.pooled_context.bias)

    def _attend_text(self, key: str, h: torch.Tensor, frames: int, context, context_mask) -> torch.Tensor:
        if context is None or key not in getattr(self, "cross", {}):
            return h
        return self.cross[key](h, frames, context, context_mask)

    @classmethod
    def from_image_model(cls, image_model: UNet2D, config: UNet3DConfig | None = None, **video_fields) -> UNet3D:
        """Inflate a trained :class:`~vdmcourse.nn.unet2d.UNet2D` into a video model.

        Every weight of the image model is copied (a 3x3 kernel goes to the centre
        frame of a 3x3x3 kernel with ``conv="3d"``, the other taps zero); temporal
        convs and temporal attention outputs stay zero-initialised. At init the video
        model therefore equals the image model frame by frame.

        Give either ``config`` (a full :class:`UNet3DConfig` whose image fields must
        equal the image model's) or ``video_fields`` (e.g. ``frames=10,
        temporal_attention_levels=(2,)``; the image fields are then taken from the
        image model). Temporal down-sampling cannot start as the identity and is
        refused. Returns a new ``UNet3D`` on the image model's device, in training mode.
        """
        if not isinstance(image_model, UNet2D):
            raise TypeError(f"UNet3D.from_image_model expects a UNet2D; got {type(image_model).__name__}")
        if config is None:
            config = UNet3DConfig.from_image_config(image_model.config, **video_fields)
        elif video_fields:
            raise ValueError(f"UNet3D.from_image_model: give config or video fields, not both; got {sorted(video_fields)}")
        elif not isinstance(config, UNet3DConfig):
            raise TypeError(f"UNet3D.from_image_model expects config to be a UNet3DConfig; got {type(config).__name__}")
        image_fields = image_model.config.__dict__
        differences = [
            f"{name}: image model {value!r}, video config {getattr(config, name)!r}"
            for name, value in image_fields.items()
            if getattr(config, name) != value
        ]
        if differences:
            raise ValueError("UNet3D.from_image_model: the video config's image fields differ from the image model's: " + "; ".join(differences))
        if config.temporal_downsample:
            raise ValueError(
                "UNet3D.from_image_model: temporal_downsample changes the frame count, so the inflated model "
                "could not start equal to the image model; inflate without it"
            )
        device = next(image_model.parameters()).device
        video_model = cls(config).to(device)
        target = video_model.state_dict()
        for name, weight in image_model.state_dict().items():
            if name not in target:
                raise ValueError(f"UNet3D.from_image_model: the image model's {name} has no place in the video model")
            if target[name].shape == weight.shape:
                target[name] = weight.clone()
            elif target[name].ndim == 5 and weight.ndim == 4 and target[name].shape[:2] + target[name].shape[3:] == weight.shape:
                centre = torch.zeros_like(target[name])  # (C_out, C_in, 3, 3, 3): all time taps zero ...
                centre[:, :, target[name].shape[2] // 2] = weight  # ... but the centre frame, which is the 2-D kernel
                target[name] = centre
            else:
                raise ValueError(
                    f"UNet3D.from_image_model: {name} has shape {tuple(weight.shape)} in the image model, "
                    f"{tuple(target[name].shape)} in the video model"
                )
        video_model.load_state_dict(target)
        return video_model

    # Conditioning and input checks are the image model's, so both refuse the same inputs alike.
    embed = UNet2D.embed

    def _check_inputs(self, x, t, cond) -> None:
        if isinstance(t, torch.Tensor) and t.ndim == 2 and isinstance(x, torch.Tensor) and x.ndim == 5:
            if t.shape != x.shape[:2]:
                raise ValueError(
                    f"UNet3D expects t of shape (B,) = ({x.shape[0]},) or one time per frame (B, T) = "
                    f"{tuple(x.shape[:2])}; got {tuple(t.shape)}"
                )
            t = t[:, 0]  # the per-clip checks below see one time per clip
        UNet2D._check_inputs(self, x, t, cond)
        if x.shape[1] > 1 and x.shape[1] % self.config.temporal_downsampling:
            raise ValueError(
                f"UNet3D: T must be 1 or a multiple of {self.config.temporal_downsampling} (temporal down-sampling); "
                f"got x of shape {tuple(x.shape)}"
            )

    def _check_text_inputs(self, x, context, pooled_context, control) -> None:
        config, batch = self.config, x.shape[0]
        if (context is not None or pooled_context is not None) and config.context_dim is None:
            raise ValueError("UNet3D: this model has no cross-attention (config.context_dim=None) but context was given")
        if context is not None and (context.ndim != 3 or context.shape[0] != batch or context.shape[-1] != config.context_dim):
            raise ValueError(f"UNet3D expects context of shape (B, L, context_dim) = ({batch}, L, {config.context_dim}); got {tuple(context.shape)}")
        if pooled_context is not None and (not config.pooled_context or pooled_context.shape != (batch, config.context_dim)):
            raise ValueError(
                f"UNet3D expects pooled_context of shape ({batch}, {config.context_dim}) and config.pooled_context=True; "
                f"got {tuple(pooled_context.shape)} with pooled_context={config.pooled_context}"
            )
        if control is not None and control.shape != (batch * x.shape[1], self.input_conv.out_channels, *x.shape[-2:]):
            raise ValueError(
                f"UNet3D expects control of shape (B*T, c0, H, W) = {(batch * x.shape[1], self.input_conv.out_channels, *x.shape[-2:])}; "
                f"got {tuple(control.shape)}"
            )

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        pooled_context: torch.Tensor | None = None,
        control: torch.Tensor | None = None,
        added: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``context`` ``(B, L, context_dim)`` text tokens with ``context_mask`` bool ``(B, L)``
        (True on real tokens) for cross-attention; ``pooled_context`` ``(B, context_dim)``
        added to the embedding; ``control`` ``(B*T, c0, H, W)`` added to the first feature
        map (a spatial control such as a drawn motion path); ``added`` ``(B, E)`` or
        ``(B, T, E)``, a vector per clip or per frame added to the time/label embedding
        (how subclasses bring in further conditions: SVD's micro-conditioning, a guidance
        scale). All None: the plain model."""
        self._check_inputs(x, t, cond)
        self._check_text_inputs(x, context, pooled_context, control)
        if added is not None and (added.ndim not in (2, 3) or added.shape[0] != x.shape[0] or added.shape[-1] != self.config.embed_dim
                                  or (added.ndim == 3 and added.shape[1] != x.shape[1])):
            raise ValueError(f"UNet3D expects added of shape (B, E) or (B, T, E) = ({x.shape[0]}, {x.shape[1]}, {self.config.embed_dim}); "
                             f"got {tuple(added.shape)}")
        batch, frames = x.shape[:2]
        # "T = 1 is an image" is a rule about the input: a clip whose T is halved to 1
        # inside the network keeps its temporal layers.
        video = frames > 1
        if t.ndim == 1:
            clip_emb = self.embed(t, cond)  # (B, E)
        else:
            frame_cond = None if cond is None else cond.repeat_interleave(frames, dim=0)  # (B*T,) or (B*T, K)
            clip_emb = rearrange(self.embed(t.flatten(), frame_cond), "(b t) e -> b t e", b=batch)  # (B, T, E)
        if pooled_context is not None:
            clip_emb = _plus(clip_emb, self.pooled_context(pooled_context))  # (B, E) of text
        if added is not None:
            clip_emb = _plus(clip_emb, added.to(clip_emb.dtype))

        def frame_embedding(frames: int) -> torch.Tensor:
            if clip_emb.ndim == 2:
                return repeat(clip_emb, "b e -> (b t) e", t=frames)
            return reduce(clip_emb, "b (t k) e -> (b t) e", "mean", t=frames)  # merged frames share the mean

        emb = frame_embedding(frames)  # (B*T, E): one vector per frame
        h = self.input_conv(rearrange(x, "b t c h w -> (b t) c h w"))  # (B*T, c0, H, W)
        if control is not None:
            h = h + control
        skips = []
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.blocks):
                h = self._attend_text(f"down{i}_{j}", block(h, emb, frames, video), frames, context, context_mask)
                skips.append((h, frames))
            h = level.resample(h)  # (B*T, c_i, H_i / 2, W_i / 2), except at the lowest level
            if str(i) in self.temporal_down and video:
                h = self.temporal_down[str(i)](h, frames)  # (B*T/2, c_i, ...)
                frames //= 2
                emb = frame_embedding(frames)
        h = self._attend_text("mid", self.mid(h, emb, frames, video), frames, context, context_mask)
        for i, level in zip(reversed(range(len(self.up))), self.up):
            if str(i) in self.temporal_up and frames < skips[-1][1]:
                h = self.temporal_up[str(i)](h, frames)  # (B*2T, c, ...): back to the skip's frame count
                frames *= 2
                emb = frame_embedding(frames)
            for j, block in enumerate(level.blocks):
                skip, _ = skips.pop()
                h = block(torch.cat([h, skip], dim=1), emb, frames, video)  # skip concatenated on channels
                h = self._attend_text(f"up{i}_{j}", h, frames, context, context_mask)
            h = level.resample(h)  # (B*T, c_i, 2 H_i, 2 W_i), except at the top level
        out = self.output(h)  # (B*T, C, H, W)
        return rearrange(out, "(b t) c h w -> b t c h w", b=batch)
