"""Transformer blocks for video on channels-last grids ``(B, T, H, W, D)``.

* :class:`SpatiotemporalBlock` -- the factorised block of video U-Nets and video
  DiTs (Ho et al. 2022; Latte; Open-Sora STDiT): spatial attention -> temporal
  attention -> feed-forward, each pre-norm with a residual connection.
* :class:`Full3DBlock` -- joint space-time attention -> feed-forward, the costly
  baseline it is compared with.

Both can be conditioned by **adaLN-Zero** (Peebles & Xie 2023, DiT): every
branch sees ``norm(x) * (1 + scale) + shift`` with a LayerNorm *without* affine
parameters (eps 1e-6), and its output is multiplied by a ``gate`` before the
residual add; shift, scale and gate come from ``SiLU -> Linear`` of the
conditioning vector, and that Linear is zero-initialised, so at init every gate
is zero and the block is exactly the identity.

Norms act on the channels of each token only: nothing mixes frames except the
temporal (or full) attention, so a causal block stays causal.
"""

from __future__ import annotations

import torch
from torch import nn

from vdmcourse.nn.attention import FullAttention, SpatialAttention, TemporalAttention, check_grid

__all__ = ["FeedForward", "SpatiotemporalBlock", "Full3DBlock"]


class FeedForward(nn.Module):
    """Per-token MLP ``Linear(D, hidden) -> GELU (tanh) -> Linear(hidden, D)``
    (as in DiT). Acts on the last axis: ``(..., D) -> (..., D)``."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Block(nn.Module):
    """Pre-norm residual branches, plain or adaLN-Zero conditioned.

    A subclass builds its branch modules, calls :meth:`_setup_norms` with their
    count, and in ``forward`` hands :meth:`_run` one callable per branch.
    """

    def __init__(self, dim: int, cond_dim: int | None):
        super().__init__()
        if cond_dim is not None and (not isinstance(cond_dim, int) or cond_dim < 1):
            raise ValueError(f"{type(self).__name__}: cond_dim must be None or a positive int; got {cond_dim!r}")
        self.dim = dim
        self.cond_dim = cond_dim

    def _setup_norms(self, count: int) -> None:
        adaptive = self.cond_dim is not None
        # adaLN: the norm has no affine parameters of its own; the condition supplies them.
        self.norms = nn.ModuleList(
            nn.LayerNorm(self.dim, eps=1e-6, elementwise_affine=not adaptive) for _ in range(count)
        )
        self.modulation = None
        if adaptive:
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(self.cond_dim, 3 * count * self.dim))
            # adaLN-Zero: all gates start at zero, so the block starts as the identity.
            nn.init.zeros_(self.modulation[1].weight)
            nn.init.zeros_(self.modulation[1].bias)

    def _modulations(self, x: torch.Tensor, cond: torch.Tensor | None) -> list:
        """(shift, scale, gate) per branch, each broadcastable to ``x``, or Nones."""
        name = type(self).__name__
        count = len(self.norms)
        if self.modulation is None:
            if cond is not None:
                raise ValueError(f"{name} was built without cond_dim, so it takes no cond; got a tensor of shape {tuple(cond.shape)}")
            return [None] * count
        batch, frames = x.shape[:2]
        if not isinstance(cond, torch.Tensor) or tuple(cond.shape) not in ((batch, self.cond_dim), (batch, frames, self.cond_dim)):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else cond
            raise ValueError(
                f"{name} expects cond of shape (B, D_cond) = ({batch}, {self.cond_dim}) or per frame "
                f"(B, T, D_cond) = ({batch}, {frames}, {self.cond_dim}); got {got}"
            )
        params = self.modulation(cond)  # (B, 3*count*D) or (B, T, 3*count*D)
        params = params[:, None] if cond.ndim == 2 else params  # (B, 1 or T, 3*count*D)
        params = params[:, :, None, None, :]  # (B, 1 or T, 1, 1, 3*count*D): same for every pixel
        chunks = params.chunk(3 * count, dim=-1)
        return [chunks[3 * i : 3 * i + 3] for i in range(count)]

    def _run(self, x, cond, calls) -> torch.Tensor:
        check_grid(x, self.dim, type(self).__name__)
        for norm, call, modulation in zip(self.norms, calls, self._modulations(x, cond)):
            if modulation is None:
                x = x + call(norm(x))
            else:
                shift, scale, gate = modulation
                x = x + gate * call(norm(x) * (1 + scale) + shift)
        return x


class SpatiotemporalBlock(_Block):
    """Spatial attention -> temporal attention -> feed-forward, each pre-norm and residual.

    ``x = x + spatial(norm(x)); x = x + temporal(norm(x)); x = x + ffn(norm(x))``,
    or with ``cond_dim`` the adaLN-Zero form of each line (see the module docstring).

    Args:
        dim: channels D. heads: attention heads (must divide D).
        mlp_ratio: hidden width of the feed-forward, as a multiple of D.
        cond_dim: width of the conditioning vector for adaLN-Zero, or None (plain
            LayerNorm with affine parameters, no condition).
        causal, window, time_position, max_frames: passed to :class:`TemporalAttention`
            (``causal=True`` makes the whole block causal over frames).
        zero_init_temporal: zero the temporal output projection (inflating an image
            block: at init the block then treats every frame as an image).

    ``forward(x, cond=None, lengths=None, mask=None)``: ``x`` ``(B, T, H, W, D)``;
    ``cond`` ``(B, D_cond)`` or per frame ``(B, T, D_cond)``, required exactly when
    ``cond_dim`` is set; ``lengths`` and ``mask`` as :class:`TemporalAttention`.
    Returns ``(B, T, H, W, D)``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        cond_dim: int | None = None,
        causal: bool = False,
        window: int | None = None,
        time_position: str | None = "rope",
        max_frames: int | None = None,
        zero_init_temporal: bool = False,
    ):
        super().__init__(dim, cond_dim)
        self.spatial = SpatialAttention(dim, heads)
        self.temporal = TemporalAttention(
            dim, heads, causal=causal, window=window, time_position=time_position,
            max_frames=max_frames, zero_init=zero_init_temporal,
        )
        self.ffn = FeedForward(dim, mlp_ratio)
        self._setup_norms(3)

    def forward(self, x, cond=None, lengths=None, mask=None) -> torch.Tensor:
        calls = (self.spatial, lambda h: self.temporal(h, lengths=lengths, mask=mask), self.ffn)
        return self._run(x, cond, calls)


class Full3DBlock(_Block):
    """Joint space-time attention -> feed-forward, each pre-norm and residual.

    The comparison point for :class:`SpatiotemporalBlock`: same arguments (the
    attention options go to :class:`FullAttention`) and same call, but every token
    attends to all ``T * H * W`` tokens -- ``(T H W)^2`` scores per clip.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        cond_dim: int | None = None,
        causal: bool = False,
        window: int | None = None,
        time_position: str | None = "rope",
        max_frames: int | None = None,
    ):
        super().__init__(dim, cond_dim)
        self.attention = FullAttention(
            dim, heads, causal=causal, window=window, time_position=time_position, max_frames=max_frames
        )
        self.ffn = FeedForward(dim, mlp_ratio)
        self._setup_norms(2)

    def forward(self, x, cond=None, lengths=None, mask=None) -> torch.Tensor:
        calls = (lambda h: self.attention(h, lengths=lengths, mask=mask), self.ffn)
        return self._run(x, cond, calls)
