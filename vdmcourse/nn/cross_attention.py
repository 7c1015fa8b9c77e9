"""Cross-attention: video tokens (queries) attend to context tokens (keys, values), with a padding mask.

The layer through which a caption steers a video model (Rombach et al. 2022; Saharia
et al. 2022): every position of every frame asks the caption's tokens what to draw.
Used by :class:`vdmcourse.nn.unet3d.UNet3D` (``context_dim``) and
:mod:`vdmcourse.nn.text`. Token layout ``(B, L, D)``; masks bool ``(B, L)``, True on real tokens.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vdmcourse.nn.attention import attention

__all__ = ["CrossAttention", "CrossAttentionBlock", "check_context", "split_heads"]


class CrossAttention(nn.Module):
    """Multi-head cross-attention: ``x`` ``(B, N, dim)`` attends to ``context`` ``(B, L, context_dim)``.

    Queries come from ``x`` (the video tokens), keys and values from ``context`` (the
    text tokens); ``mask`` bool ``(B, L)`` removes padded tokens from the keys. Returns
    ``(B, N, dim)``. ``zero_init`` zeroes the output projection (the residual branch
    starts at zero).
    """

    def __init__(self, dim: int, context_dim: int, heads: int, *, zero_init: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"CrossAttention: heads={heads} must divide dim={dim}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)
        if zero_init:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_context(context, mask, "CrossAttention")
        if x.ndim != 3 or x.shape[0] != context.shape[0]:
            raise ValueError(f"CrossAttention: x must be (B, N, dim) with B = {context.shape[0]}; got {tuple(x.shape)}")
        q = split_heads(self.to_q(x), self.heads)  # (B, h, N, d)
        k, v = (split_heads(part, self.heads) for part in self.to_kv(context).chunk(2, dim=-1))  # (B, h, L, d) each
        h = attention(q, k, v, mask=None if mask is None else mask[:, None, None, :])  # (B, h, N, d)
        return self.to_out(rearrange(h, "b h n d -> b n (h d)"))


class CrossAttentionBlock(nn.Module):
    """GroupNorm (per frame) -> cross-attention from every position of every frame to the
    text, residual. Input and output ``(B*T, C, H, W)``; ``frames`` = T."""

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attention = CrossAttention(channels, context_dim, heads, zero_init=True)

    def forward(self, x: torch.Tensor, frames: int, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        h = rearrange(self.norm(x), "(b t) c h w -> b (t h w) c", t=frames)  # every video token of a clip
        h = self.attention(h, context, mask)  # (B, T*H*W, C)
        return x + rearrange(h, "b (t h w) c -> (b t) c h w", t=frames, h=height, w=width)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return rearrange(x, "b n (h d) -> b h n d", h=heads)


def check_context(tokens, mask, who: str) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        raise ValueError(f"{who}: context must be text tokens of shape (B, L, D); got {getattr(tokens, 'shape', type(tokens).__name__)}")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != tokens.shape[:2]):
        raise ValueError(
            f"{who}: context_mask must be a bool tensor (B, L) = {tuple(tokens.shape[:2])}, True on real tokens; "
            f"got {getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}"
        )
    if mask is not None and not mask.any(1).all():
        raise ValueError(f"{who}: every caption needs at least one real token (the tokenizer's <start>); a context_mask row is all False")
