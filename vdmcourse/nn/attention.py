"""Attention over space and time on channels-last video grids ``(B, T, H, W, D)``.

* :func:`attention` (on ``torch.nn.functional.scaled_dot_product_attention``) and
  :func:`naive_attention`, the textbook ``softmax(Q K^T / sqrt(d)) V`` that lesson 02
  builds -- the two agree to float64 precision.
* Masks over frames. **A boolean mask is True where a query may attend to a key**
  (the convention of ``scaled_dot_product_attention``; note that
  ``nn.MultiheadAttention``'s ``key_padding_mask`` uses the opposite one).
  :func:`causal_mask` (frame t sees frames s <= t), :func:`window_mask`
  (|t - s| <= w), :func:`frame_mask` (both, as asked), :func:`padding_mask`
  (clips of different lengths in one batch).
* Three ways to relate the ``T * H * W`` tokens of a clip:
  :class:`SpatialAttention` (within each frame), :class:`TemporalAttention` (each
  pixel position across frames) and :class:`FullAttention` (all with all).
  For ``N = H * W`` positions and ``T`` frames the score matrices cost
  ``T * N^2`` (spatial) + ``N * T^2`` (temporal) entries against ``(T * N)^2``
  (full): the reason video models factorise (Ho et al. 2022; Latte; Open-Sora).

Position over time is explicit (``time_position``): RoPE over the frame index
(Su et al. 2021), an added sin-cos frame embedding, a T5 relative bias -- all three
work for any number of frames -- or a learned table with a fixed maximum length.
Without it, temporal attention cannot tell frame order: permuting the input frames
just permutes the output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vdmcourse.nn.embeddings import PositionTable, RelativePositionBias, apply_rope, sincos_table_1d

__all__ = [
    "attention",
    "naive_attention",
    "causal_mask",
    "window_mask",
    "frame_mask",
    "padding_mask",
    "check_grid",
    "SpatialAttention",
    "TemporalAttention",
    "FullAttention",
    "TIME_POSITIONS",
]

TIME_POSITIONS = (None, "rope", "sincos", "relative", "learned")


def _check_qkv(q, k, v, mask, bias, who: str) -> None:
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 2:
            raise ValueError(f"{who}: {name} must be a tensor of shape (..., N, d); got {getattr(tensor, 'shape', tensor)}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] or q.shape[:-2] != k.shape[:-2] or k.shape[:-2] != v.shape[:-2]:
        raise ValueError(
            f"{who}: expected q (..., N, d), k (..., M, d), v (..., M, e) with the same leading axes; "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    scores = (q.shape[-2], k.shape[-2])
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"{who}: mask must be a bool tensor (True = may attend); got {getattr(mask, 'dtype', type(mask))}")
        if mask.ndim < 2 or mask.shape[-1] != scores[1] or mask.shape[-2] not in (1, scores[0]):
            raise ValueError(
                f"{who}: mask must end in (N, M) = {scores} (queries, keys) or (1, M); got {tuple(mask.shape)}"
            )
        if not mask.any(dim=-1).all():
            raise ValueError(f"{who}: every query must be allowed at least one key; the mask has an all-False row")
    if bias is not None and (bias.ndim < 2 or bias.shape[-1] != scores[1] or bias.shape[-2] not in (1, scores[0])):
        raise ValueError(f"{who}: bias must end in (N, M) = {scores} or (1, M); got {tuple(bias.shape)}")


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention ``softmax(Q K^T / sqrt(d) + bias) V``.

    Args:
        q: ``(..., N, d)`` queries. k: ``(..., M, d)`` keys. v: ``(..., M, e)`` values.
        mask: optional bool, broadcastable to ``(..., N, M)`` (ending in ``(N, M)`` or
            ``(1, M)``); **True = may attend**. Every query must keep at least one key.
        bias: optional float, broadcastable to ``(..., N, M)``, added to the scores.

    Returns:
        ``(..., N, e)``. Runs on ``scaled_dot_product_attention``, which never stores
        the ``N x M`` weights where a fused kernel is available.
    """
    _check_qkv(q, k, v, mask, bias, "attention")
    attn_mask = mask
    if bias is not None:
        attn_mask = bias.to(q.dtype) if mask is None else bias.to(q.dtype).masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def naive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    *,
    return_weights: bool = False,
):
    """The textbook ``softmax(Q K^T / sqrt(d)) V``, every step spelled out.

    Same arguments and result as :func:`attention`; it materialises the
    ``(..., N, M)`` weights, which ``return_weights=True`` also returns (each row
    sums to 1 over the keys) -- handy for drawing them.
    """
    _check_qkv(q, k, v, mask, bias, "naive_attention")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., N, M)
    if bias is not None:
        scores = scores + bias.to(scores.dtype)  # as attention() does: the scores keep q's dtype
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # over the keys
    out = weights @ v  # (..., N, e)
    return (out, weights) if return_weights else out


def _check_frames(frames, who: str) -> None:
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ValueError(f"{who}: frames must be a positive int; got {frames!r}")


def causal_mask(frames: int, *, device=None) -> torch.Tensor:
    """``(T, T)`` bool, True where query frame t may attend to key frame s, i.e. s <= t."""
    _check_frames(frames, "causal_mask")
    return torch.ones(frames, frames, dtype=torch.bool, device=device).tril()


def window_mask(frames: int, window: int, *, device=None) -> torch.Tensor:
    """``(T, T)`` bool, True where ``|t - s| <= window`` (``window=0``: each frame sees itself)."""
    _check_frames(frames, "window_mask")
    if not isinstance(window, int) or isinstance(window, bool) or window < 0:
        raise ValueError(f"window_mask: window must be an int >= 0; got {window!r}")
    index = torch.arange(frames, device=device)
    return (index[:, None] - index[None, :]).abs() <= window


def frame_mask(frames: int, *, causal: bool = False, window: int | None = None, device=None) -> torch.Tensor | None:
    """The ``(T, T)`` mask for the options asked: causal, windowed, or both
    (frame t sees frames ``t - window .. t``). ``None`` when neither is asked."""
    mask = causal_mask(frames, device=device) if causal else None
    if window is not None:
        windowed = window_mask(frames, window, device=device)
        mask = windowed if mask is None else mask & windowed
    return mask


def padding_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, T)`` bool, True for the real frames of clips of ``lengths`` frames,
    False for the padding after them. ``lengths``: int ``(B,)`` in ``[1, T]``."""
    _check_frames(frames, "padding_mask")
    if not isinstance(lengths, torch.Tensor) or lengths.ndim != 1 or lengths.is_floating_point():
        got = f"{tuple(lengths.shape)} {lengths.dtype}" if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise ValueError(f"padding_mask: lengths must be an int tensor of shape (B,); got {got}")
    if lengths.numel() and (lengths.min() < 1 or lengths.max() > frames):
        raise ValueError(
            f"padding_mask: lengths must be in [1, {frames}] (the clip has T={frames} frames); "
            f"got {lengths.tolist()}"
        )
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


def check_grid(x, dim: int, who: str) -> None:
    """Raise a clear error unless ``x`` is a ``(B, T, H, W, dim)`` float tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects a torch.Tensor x of shape (B, T, H, W, D); got {type(x).__name__}")
    if x.ndim != 5 or x.shape[-1] != dim:
        note = ""
        if x.ndim == 5 and x.shape[2] == dim:
            note = " -- it looks like (B, T, C, H, W): move channels last with rearrange(x, 'b t c h w -> b t h w c')"
        elif x.ndim == 4:
            note = " -- a batch of images? Add the frame axis: (B, 1, H, W, D)"
        raise ValueError(f"{who} expects x of shape (B, T, H, W, D) with D={dim}; got {tuple(x.shape)}{note}")


class _GridAttention(nn.Module):
    """Multi-head self-attention on ``(B, T, H, W, D)``: projections and checks
    shared by the three groupings. Subclasses say which tokens attend together."""

    def __init__(self, dim: int, heads: int, *, zero_init: bool = False, qkv_bias: bool = True):
        super().__init__()
        name = type(self).__name__
        if not isinstance(dim, int) or not isinstance(heads, int) or dim < 1 or heads < 1:
            raise ValueError(f"{name}: dim and heads must be positive ints; got dim={dim!r}, heads={heads!r}")
        if dim % heads:
            raise ValueError(f"{name}: dim={dim} must be divisible by heads={heads} (each head gets dim // heads channels)")
        self.dim = dim
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.out = nn.Linear(dim, dim)
        if zero_init:
            # Inflating an image model: a zero output projection makes the new layer
            # add exactly nothing at init, so the video model starts as the image model.
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        check_grid(x, self.dim, type(self).__name__)

    def _attend(self, tokens, *, positions=None, mask=None, bias=None) -> torch.Tensor:
        """``tokens`` ``(N, S, D)`` -> ``(N, S, D)``; ``positions`` ``(S,)`` for RoPE."""
        q, k, v = rearrange(self.qkv(tokens), "n s (three heads c) -> three n heads s c", three=3, heads=self.heads)
        if positions is not None:
            q, k = apply_rope(q, positions), apply_rope(k, positions)
        out = attention(q, k, v, mask=mask, bias=bias)  # (N, heads, S, c)
        return self.out(rearrange(out, "n heads s c -> n s (heads c)"))  # (N, S, D)


class SpatialAttention(_GridAttention):
    """Each frame's ``H * W`` positions attend to each other; frames never mix.

    Input and output ``(B, T, H, W, D)``. Cost: ``B * T`` score matrices of
    ``(H W)^2``. Position within a frame comes from elsewhere (convolutions or a
    patch-position table), as in the video U-Net and DiT.

    Args:
        dim: channels D. heads: number of heads (must divide D).
        zero_init: zero the output projection (the module then outputs zeros at init).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        batch, frames, height, width, _ = x.shape
        tokens = rearrange(x, "b t h w d -> (b t) (h w) d")  # (B*T, H*W, D)
        out = self._attend(tokens)
        return rearrange(out, "(b t) (h w) d -> b t h w d", b=batch, t=frames, h=height, w=width)


class _TimeAwareAttention(_GridAttention):
    """Adds what depends on the frame index: time position, causal / window masks,
    key padding for clips of different lengths."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        causal: bool = False,
        window: int | None = None,
        time_position: str | None = "rope",
        max_frames: int | None = None,
        zero_init: bool = False,
        qkv_bias: bool = True,
    ):
        super().__init__(dim, heads, zero_init=zero_init, qkv_bias=qkv_bias)
        name = type(self).__name__
        if time_position not in TIME_POSITIONS:
            raise ValueError(f"{name}: time_position must be one of {TIME_POSITIONS}; got {time_position!r}")
        if time_position == "rope" and (dim // heads) % 2:
            raise ValueError(f"{name}: RoPE needs an even head width; got dim // heads = {dim // heads}")
        if (time_position == "learned") != (max_frames is not None):
            raise ValueError(f"{name}: max_frames is given exactly when time_position='learned'; got max_frames={max_frames!r}")
        if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 0):
            raise ValueError(f"{name}: window must be None or an int >= 0; got {window!r}")
        self.causal = causal
        self.window = window
        self.time_position = time_position
        self.frame_table = PositionTable(max_frames, dim, learned=True) if time_position == "learned" else None
        self.relative_bias = RelativePositionBias(heads) if time_position == "relative" else None

    def _with_frame_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Add the frame position to the tokens (sin-cos or learned table), else x."""
        frames = x.shape[1]
        if self.time_position == "sincos":
            table = sincos_table_1d(frames, self.dim, device=x.device)  # (T, D)
        elif self.time_position == "learned":
            table = self.frame_table(frames)  # (T, D); raises past max_frames
        else:
            return x
        return x + table.to(x.dtype)[:, None, None, :]  # (B, T, H, W, D)

    def _frame_positions(self, x: torch.Tensor) -> torch.Tensor | None:
        return torch.arange(x.shape[1], device=x.device, dtype=torch.float32) if self.time_position == "rope" else None

    def _frames_allowed(self, x, lengths, mask) -> torch.Tensor | None:
        """Which key frame each query frame may see: bool ``(B or 1, T, T)`` or None."""
        batch, frames = x.shape[:2]
        name = type(self).__name__
        allowed = frame_mask(frames, causal=self.causal, window=self.window, device=x.device)
        if allowed is not None:
            allowed = allowed[None]  # (1, T, T)
        if mask is not None:
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                raise TypeError(f"{name}: mask must be a bool tensor (True = may attend); got {getattr(mask, 'dtype', type(mask))}")
            if tuple(mask.shape) not in ((frames, frames), (batch, frames, frames)):
                raise ValueError(
                    f"{name}: mask must have shape (T, T) or (B, T, T) = ({frames}, {frames}) or "
                    f"({batch}, {frames}, {frames}) for x with T={frames} frames; got {tuple(mask.shape)}"
                )
            mask = mask.to(x.device).reshape(-1, frames, frames)
            allowed = mask if allowed is None else allowed & mask
        if lengths is not None:
            if not isinstance(lengths, torch.Tensor) or tuple(lengths.shape) != (batch,):
                got = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else type(lengths).__name__
                raise ValueError(f"{name}: lengths must have shape (B,) = ({batch},); got {got}")
            keys = padding_mask(lengths.to(x.device), frames)[:, None, :]  # (B, 1, T)
            allowed = keys if allowed is None else allowed & keys
        return None if allowed is None else allowed.expand(-1, frames, frames)

    def _bias(self, frames: int) -> torch.Tensor | None:
        return self.relative_bias(frames) if self.relative_bias is not None else None  # (heads, T, T)

    @staticmethod
    def _zero_padding(out: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        # Padding frames carry no content: their output is set to zero, so a
        # residual connection leaves them as they came.
        if lengths is None:
            return out
        keep = padding_mask(lengths.to(out.device), out.shape[1])  # (B, T)
        return out * keep[:, :, None, None, None].to(out.dtype)


class TemporalAttention(_TimeAwareAttention):
    """Each spatial position attends across the frames of its own clip.

    ``(B, T, H, W, D)`` is regrouped as ``(B*H*W, T, D)``: one sequence of T frames
    per pixel position and clip. Cost: ``B * H * W`` score matrices of ``T^2``.

    Args:
        dim: channels D. heads: number of heads (must divide D).
        causal: frame t attends only to frames s <= t.
        window: frame t attends only to frames with ``|t - s| <= window``
            (with ``causal``: ``t - window <= s <= t``).
        time_position: ``"rope"`` (rotary over the frame index, default),
            ``"sincos"`` (a sin-cos frame embedding added to the tokens),
            ``"relative"`` (T5 bias per head; it starts at zero, so at initialisation
            the layer is permutation-equivariant, as with ``None``, until training
            gives the bias weights), ``"learned"`` (a learned table of
            ``max_frames`` rows; more frames raise ``ValueError``) or ``None``
            (no position: the module cannot tell frame order).
        zero_init: zero the output projection, so the module adds nothing at init
            (for inflating an image model into a video model).

    ``forward(x, lengths=None, mask=None)``: ``lengths`` int ``(B,)`` gives each clip's
    real frames (the rest is padding: never attended to, output zero); ``mask`` bool
    ``(T, T)`` or ``(B, T, T)``, True = may attend, is combined with the options.
    Returns ``(B, T, H, W, D)``.
    """

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input(x)
        batch, frames, height, width, _ = x.shape
        allowed = self._frames_allowed(x, lengths, mask)
        if allowed is not None:
            allowed = repeat(allowed, "b t s -> (b h w) 1 t s", h=height, w=width) if allowed.shape[0] > 1 else allowed[:, None]
        tokens = rearrange(self._with_frame_embedding(x), "b t h w d -> (b h w) t d")  # (B*H*W, T, D)
        out = self._attend(tokens, positions=self._frame_positions(x), mask=allowed, bias=self._bias(frames))
        out = rearrange(out, "(b h w) t d -> b t h w d", b=batch, h=height, w=width)
        return self._zero_padding(out, lengths)


class FullAttention(_TimeAwareAttention):
    """All ``T * H * W`` tokens of a clip attend to each other (joint space-time).

    ``(B, T, H, W, D)`` is flattened to ``(B, T*H*W, D)``. Cost: ``B`` score
    matrices of ``(T H W)^2`` -- the baseline the factorised modules beat.
    Arguments and masks as :class:`TemporalAttention`; a frame mask applies to
    every token of the frames (causal: a token sees all tokens of frames <= its own),
    and RoPE rotates by each token's frame index.
    """

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input(x)
        batch, frames, height, width, _ = x.shape
        grid = {"h": height, "w": width, "h2": height, "w2": width}
        allowed = self._frames_allowed(x, lengths, mask)
        if allowed is not None:
            allowed = repeat(allowed, "b t s -> b 1 (t h w) (s h2 w2)", **grid)  # (B or 1, 1, THW, THW)
        bias = self._bias(frames)
        if bias is not None:
            bias = repeat(bias, "heads t s -> heads (t h w) (s h2 w2)", **grid)  # (heads, THW, THW)
        positions = self._frame_positions(x)
        if positions is not None:
            positions = repeat(positions, "t -> (t h w)", h=height, w=width)  # (T*H*W,)
        tokens = rearrange(self._with_frame_embedding(x), "b t h w d -> b (t h w) d")  # (B, T*H*W, D)
        out = self._attend(tokens, positions=positions, mask=allowed, bias=bias)
        out = rearrange(out, "b (t h w) d -> b t h w d", t=frames, h=height, w=width)
        return self._zero_padding(out, lengths)
