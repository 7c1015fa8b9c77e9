"""Text conditioning: a tiny text encoder, cross-attention, mini-CLIP, and the text-to-video U-Net.

How text steers a video diffusion model (lesson 09):

* :class:`TextEncoder` -- word embeddings plus learned positions, then a few pre-norm
  transformer layers whose self-attention never looks at padding. Returns one vector
  per token ``(B, L, D)`` and a pooled vector ``(B, D)`` (the mean of the real tokens).
* :class:`CrossAttention` -- **queries from the video**, keys and values from the text
  (Rombach et al. 2022, latent diffusion; Imagen, Saharia et al. 2022), with the text's
  padding mask: a padded token is never attended to, so whatever sits there changes
  nothing. :class:`CrossAttentionBlock` puts it on a U-Net feature map, as a residual
  with a zero-initialised output (it starts as the identity).
* The **pooled** path: the pooled text vector added to the timestep embedding (as a
  label embedding is, and as Imagen adds its pooled text), for comparison -- one
  vector per clip, no place for "which token says what".
* :func:`clip_loss` -- the symmetric InfoNCE loss of CLIP (Radford et al. 2021) over
  a batch of (clip, caption) embeddings; :func:`alignment_score` -- their cosine
  similarity, a text-video alignment score.
* :class:`TextVideoUNet` -- a :class:`~vdmcourse.nn.unet3d.UNet3D` with cross-attention
  and pooled text, plus the two controls of multimodal conditioning (Runway Gen-3 style):
  a **first frame** (given as a clean context frame at time 0, masked-frame conditioning
  as in lesson 12) and a **motion path** (the digit's centre per frame, drawn as a small
  Gaussian heat map per frame and added to the first feature map through a
  zero-initialised conv, as adapters and ControlNet add spatial controls). Each of
  caption, image and motion may be left out; training drops each at random, per clip.

Token layout: ``(B, L, D)``; masks are bool ``(B, L)``, True on real tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmcourse.nn.attention import attention
from vdmcourse.nn.cross_attention import CrossAttention, CrossAttentionBlock, check_context, split_heads
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig

__all__ = [
    "TextEncoderConfig",
    "TextEncoder",
    "CrossAttention",
    "CrossAttentionBlock",
    "clip_loss",
    "alignment_score",
    "motion_heatmap",
    "TextVideoConfig",
    "TextVideoUNet",
]


@dataclass(frozen=True)
class TextEncoderConfig:
    """A tiny text encoder.

    vocab_size   word ids must lie in [0, vocab_size); 0 is padding
    max_length   longest token sequence (learned positions)
    dim          token width D
    depth        transformer layers
    heads        attention heads (must divide ``dim``)
    """

    vocab_size: int = 128
    max_length: int = 48
    dim: int = 64
    depth: int = 2
    heads: int = 4

    def __post_init__(self):
        for name in ("vocab_size", "max_length", "dim", "depth", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TextEncoderConfig: {name} must be a positive int; got {value!r}")
        if self.dim % self.heads:
            raise ValueError(f"TextEncoderConfig: heads={self.heads} must divide dim={self.dim}")


class _TextLayer(nn.Module):
    """Pre-norm transformer layer: LN -> self-attention (padding masked) -> LN -> MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(part, self.heads) for part in self.qkv(self.norm1(x)).chunk(3, dim=-1))  # (B, h, L, d) each
        h = attention(q, k, v, mask=mask[:, None, None, :])  # keys: real tokens only
        x = x + self.out(rearrange(h, "b h n d -> b n (h d)"))
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Word ids -> token vectors. ``model(ids, mask)`` with ``ids`` long ``(B, L)`` and
    ``mask`` bool ``(B, L)`` (True on real tokens; L <= ``max_length``) returns
    ``(tokens (B, L, D), pooled (B, D))``; padded positions of ``tokens`` are zero and
    ``pooled`` is the mean over real tokens."""

    def __init__(self, config: TextEncoderConfig | None = None):
        super().__init__()
        self.config = config = config or TextEncoderConfig()
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.position = nn.Parameter(torch.randn(config.max_length, config.dim) * 0.02)
        self.layers = nn.ModuleList(_TextLayer(config.dim, config.heads) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.dtype != torch.long:
            raise ValueError(f"TextEncoder: ids must be a long tensor (B, L); got {getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
        if ids.shape[1] > self.config.max_length or (ids.numel() and not 0 <= ids.min() <= ids.max() < self.config.vocab_size):
            raise ValueError(f"TextEncoder: ids must be (B, L <= {self.config.max_length}) in [0, {self.config.vocab_size}); got {tuple(ids.shape)}")
        check_context(ids[..., None], mask, "TextEncoder")
        x = self.embed(ids) + self.position[: ids.shape[1]]  # (B, L, D)
        for layer in self.layers:
            x = layer(x, mask)
        keep = mask[..., None].to(x.dtype)  # (B, L, 1)
        x = self.norm(x) * keep  # padding zeroed: nothing downstream can read it by accident
        return x, x.sum(1) / keep.sum(1)  # (B, L, D), (B, D)


def clip_loss(video_embeddings: torch.Tensor, text_embeddings: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss (Radford et al. 2021).

    ``video_embeddings`` and ``text_embeddings`` ``(B, D)``: row i of each is a matching
    pair. Both are L2-normalised, ``logits = v @ t.T / temperature`` ``(B, B)``, and the
    loss is the mean of the cross-entropy over rows (each clip picks its caption) and
    over columns (each caption picks its clip).
    """
    if video_embeddings.ndim != 2 or video_embeddings.shape != text_embeddings.shape:
        raise ValueError(f"clip_loss: embeddings must both be (B, D); got {tuple(video_embeddings.shape)} and {tuple(text_embeddings.shape)}")
    if not temperature > 0:
        raise ValueError(f"clip_loss: temperature must be > 0; got {temperature!r}")
    logits = F.normalize(video_embeddings, dim=-1) @ F.normalize(text_embeddings, dim=-1).T / temperature  # (B, B)
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def alignment_score(video_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of matching (clip, caption) embeddings ``(B, D)`` -> ``(B,)`` in [-1, 1]."""
    return F.cosine_similarity(video_embeddings, text_embeddings, dim=-1)


def motion_heatmap(path: torch.Tensor, size: int, sigma: float = 1.5) -> torch.Tensor:
    """Draw a motion path as heat maps: ``path`` ``(B, T, 2)`` (row, col) of the digit's
    centre in pixels -> ``(B, T, 1, size, size)`` in [0, 1], a Gaussian of ``sigma`` px
    around the centre in each frame."""
    if path.ndim != 3 or path.shape[-1] != 2:
        raise ValueError(f"motion_heatmap: path must be (B, T, 2) (row, col) in pixels; got {tuple(path.shape)}")
    grid = torch.arange(size, dtype=torch.float32, device=path.device)
    rows = (grid - path[..., 0, None]) ** 2  # (B, T, H)
    cols = (grid - path[..., 1, None]) ** 2  # (B, T, W)
    return torch.exp(-(rows[..., :, None] + cols[..., None, :]) / (2 * sigma**2))[:, :, None]  # (B, T, 1, H, W)


@dataclass(frozen=True)
class TextVideoConfig:
    """A :class:`TextVideoUNet`: the U-Net (whose ``context_dim`` must equal the text
    encoder's ``dim``), the text encoder, and whether it takes a motion path."""

    unet: UNet3DConfig = field(
        default_factory=lambda: UNet3DConfig(
            image_size=32, base_channels=16, channel_mults=(1, 2, 2, 2), blocks_per_level=1, heads=4, groups=8,
            frames=10, temporal_conv_levels=(1, 2, 3), temporal_attention_levels=(2, 3), attention_span="spacetime",
            context_dim=64, cross_attention_levels=(2, 3), pooled_context=True,
        )
    )
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    motion: bool = True
    motion_sigma: float = 1.5
    # False: the text reaches the U-Net only as the pooled vector added to the timestep
    # embedding (the adaLN-style path; needs unet.pooled_context and no cross_attention_levels)
    cross_attention: bool = True

    def image_fields(self) -> dict:
        """The config of the plain video U-Net this model extends, as a dict."""
        return dataclasses.asdict(dataclasses.replace(self.unet, context_dim=None, cross_attention_levels=(), pooled_context=False))

    def __post_init__(self):
        if self.unet.context_dim != self.text.dim:
            raise ValueError(f"TextVideoConfig: unet.context_dim={self.unet.context_dim} must equal text.dim={self.text.dim}")
        if not self.cross_attention and (not self.unet.pooled_context or self.unet.cross_attention_levels):
            raise ValueError(
                "TextVideoConfig: cross_attention=False sends the text through the pooled path only: it needs "
                f"unet.pooled_context=True and no cross_attention_levels; got {self.unet.pooled_context}, {self.unet.cross_attention_levels}"
            )


class TextVideoUNet(nn.Module):
    """Text (and optionally image and motion) to video.

    ``model(x, t, ids, ids_mask, motion=None, motion_mask=None)``:

    * ``x`` ``(B, T, 1, H, W)`` in [-1, 1], ``t`` ``(B,)`` or per frame ``(B, T)`` -- a
      given first frame is frame 0 of ``x``, clean, with ``t[:, 0] = 0`` (lesson 12's
      masked-frame conditioning);
    * ``ids``, ``ids_mask`` ``(B, L)``: the tokenized caption (the null caption: only
      ``<start>``);
    * ``motion`` ``(B, T, 2)``: the digit's centre (row, col) in pixels per frame, and
      ``motion_mask`` bool ``(B,)``: which clips are given it (None: all of them).

    Returns the U-Net's prediction ``(B, T, 1, H, W)``. The label input of the U-Net is
    not used (always its null label): the text says which digit.
    """

    def __init__(self, config: TextVideoConfig | None = None):
        super().__init__()
        self.config = config = config or TextVideoConfig()
        self.unet = UNet3D(config.unet)
        self.text = TextEncoder(config.text)
        if config.motion:
            width = config.unet.base_channels * config.unet.channel_mults[0]
            self.motion = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1))
            nn.init.zeros_(self.motion[-1].weight)  # no motion signal until training finds one
            nn.init.zeros_(self.motion[-1].bias)
        else:
            self.motion = None

    @classmethod
    def from_image_model(cls, video_model: UNet3D, config: TextVideoConfig | None = None) -> TextVideoUNet:
        """Start from a trained :class:`~vdmcourse.nn.unet3d.UNet3D` (e.g. ``video-ctx-cpu``)
        whose config equals ``config.unet`` but for the text fields: its weights are copied,
        the cross-attention, pooled-text and motion layers start at zero, so at init the
        model is that video model with its null label. (The name is the hook that a
        preset's ``init_from`` calls.)"""
        config = config or TextVideoConfig()
        if not isinstance(video_model, UNet3D):
            raise TypeError(f"TextVideoUNet.from_image_model expects a UNet3D; got {type(video_model).__name__}")
        plain = cls.plain_unet_config(config)
        if video_model.config != plain:
            raise ValueError(f"TextVideoUNet.from_image_model: the video model's config {video_model.config} differs from {plain}")
        model = cls(config)
        result = model.unet.load_state_dict(video_model.state_dict(), strict=False)
        if result.unexpected_keys or any(not key.startswith(("cross.", "pooled_context.")) for key in result.missing_keys):
            raise ValueError(f"TextVideoUNet.from_image_model: weights do not fit: {result}")
        return model.to(next(video_model.parameters()).device)

    @staticmethod
    def plain_unet_config(config: TextVideoConfig) -> UNet3DConfig:
        """``config.unet`` without its text fields: the plain video U-Net the model extends."""
        return UNet3DConfig(**config.image_fields())

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        ids: torch.Tensor,
        ids_mask: torch.Tensor,
        motion: torch.Tensor | None = None,
        motion_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        tokens, pooled = self.text(ids, ids_mask)  # (B, L, D), (B, D)
        control = None
        if motion is not None:
            if self.motion is None:
                raise ValueError("TextVideoUNet: this model was built without motion control (config.motion=False); got motion")
            if motion.shape != (x.shape[0], x.shape[1], 2):
                raise ValueError(f"TextVideoUNet: motion must be (B, T, 2) = {(x.shape[0], x.shape[1], 2)} centres in pixels; got {tuple(motion.shape)}")
            heat = motion_heatmap(motion.float(), x.shape[-1], self.config.motion_sigma)  # (B, T, 1, H, W)
            control = self.motion(rearrange(heat, "b t c h w -> (b t) c h w"))  # (B*T, c0, H, W)
            if motion_mask is not None:
                keep = motion_mask.to(control.dtype).repeat_interleave(x.shape[1])  # (B*T,)
                control = control * keep[:, None, None, None]
        cross = self.config.cross_attention  # the pooled-only variant gives the U-Net no tokens
        return self.unet(
            x, t,
            context=tokens if cross else None,
            context_mask=ids_mask if cross else None,
            pooled_context=pooled if self.config.unet.pooled_context else None,
            control=control,
        )


