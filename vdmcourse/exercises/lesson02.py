"""Self-checks for lesson 02, temporal attention.

* :func:`check_attention` -- ``attend(q, k, v)``: softmax(Q K^T / sqrt(d)) V over the keys.
* :func:`check_temporal_attention` -- ``temporal_attention(q, k, v)`` on
  ``(B, T, H, W, D)`` grids: each pixel position attends across the frames of its clip.
* :func:`check_causal_mask` -- ``causal_mask(T)``: bool ``(T, T)``, True = may attend.

Each names the real mistakes: softmax over the wrong axis, the missing ``1/sqrt(d)``,
attention over the batch axis (``nn.MultiheadAttention``'s ``batch_first=False``
trap), a wrong rearrange order, a causal mask that leaks the future.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check
from vdmcourse.nn.attention import causal_mask as reference_causal_mask
from vdmcourse.nn.attention import naive_attention

__all__ = [
    "WRONG_SOFTMAX_AXIS",
    "MISSING_SCALE",
    "BATCH_AXIS",
    "WRONG_REARRANGE",
    "SPACE_NOT_TIME",
    "CAUSAL_LEAK",
    "INVERTED_MASK",
    "check_attention",
    "check_temporal_attention",
    "check_causal_mask",
]

WRONG_SOFTMAX_AXIS = "softmax over the wrong axis"
MISSING_SCALE = "missing 1/sqrt(d) scale"
BATCH_AXIS = "attention over the batch axis"
WRONG_REARRANGE = "wrong rearrange order"
SPACE_NOT_TIME = "attention over space (within each frame) instead of over time"
CAUSAL_LEAK = "causal mask leaks the future"
INVERTED_MASK = "mask convention inverted"


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _matches(actual, expected) -> bool:
    return (
        isinstance(actual, torch.Tensor)
        and actual.shape == expected.shape
        and torch.allclose(actual.detach().to(expected.dtype), expected, atol=1e-9, rtol=1e-7)
    )


@self_check(
    "scaled dot-product attention", reference="vdmcourse.nn.naive_attention",
    more="The likely slips: the softmax over dim=-2 (the queries), or scaling by d or not at all. "
         "Print weights.sum(-1): every row must be 1. The scores are q @ k.transpose(-2, -1) / "
         "math.sqrt(q.shape[-1]); then softmax(dim=-1) and @ v.",
)
def check_attention(attend):
    """``attend(q, k, v)`` with q ``(N, S, d)``, k ``(N, S2, d)``, v ``(N, S2, e)`` -> ``(N, S, e)``."""
    g = _generator()
    q = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    k = torch.randn(2, 6, 8, generator=g, dtype=torch.float64) * 2  # large scores: the scale shows
    v = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    out = attend(q, k, v)
    expect_shape(out, (2, 5, 3), "attend(q, k, v) for q (2, 5, 8), k (2, 6, 8), v (2, 6, 3)",
                 hint="The output has one row per query and the width of the values.")
    scores = q @ k.transpose(-2, -1)
    scaled = scores / math.sqrt(8)
    if _matches(out, scaled.softmax(dim=-2) @ v):
        raise Wrong("Your weights sum to 1 over the queries, not over the keys.", mistake=WRONG_SOFTMAX_AXIS,
                    hint="Each query's weights over the keys must sum to 1: softmax(dim=-1) on the (queries, keys) scores.")
    if _matches(out, scores.softmax(dim=-1) @ v):
        raise Wrong("Your scores are not divided by sqrt(d).", mistake=MISSING_SCALE,
                    hint="Without 1/sqrt(d) the scores grow with the width d and the softmax saturates.")
    if _matches(out, (scores / 8).softmax(dim=-1) @ v):
        raise Wrong("Your scores are divided by d, not by sqrt(d).", mistake=MISSING_SCALE,
                    hint="The scale is 1/sqrt(d): the dot product of two unit-variance d-vectors has variance d.")
    expect_close(out, naive_attention(q, k, v), "attend(q, k, v)", atol=1e-9, rtol=1e-7,
                 hint="Compute scores = q @ k^T / sqrt(d), softmax over the keys, then weights @ v.")
    return "softmax(Q K^T / sqrt(d)) V, normalised over the keys."


def _reference_temporal(q, k, v):
    height, width = q.shape[2:4]
    tokens = [rearrange(z, "b t h w d -> (b h w) t d") for z in (q, k, v)]
    return rearrange(naive_attention(*tokens), "(b h w) t d -> b t h w d", h=height, w=width)


def _channels_as_time(q, k, v):
    """The permute bug from public code: ``(b h w) d t`` instead of ``(b h w) t d``."""
    height, width = q.shape[2:4]
    tokens = [rearrange(z, "b t h w d -> (b h w) d t") for z in (q, k, v)]
    return rearrange(naive_attention(*tokens), "(b h w) d t -> b t h w d", h=height, w=width)


@self_check(
    "temporal attention on a video grid", reference="vdmcourse.nn.TemporalAttention",
    more="The likely slips are the sequence layout: a reshape that does not move t, '(b t) (h w)' "
         "(attention within a frame), or '(b h w) d t'. Print the token shape: it must be (B*H*W, T, D) --"
         " rearrange(x, 'b t h w d -> (b h w) t d'), attend, and back with '(b h w) t d -> b t h w d', "
         "h=H, w=W.",
)
def check_temporal_attention(temporal_attention):
    """``temporal_attention(q, k, v)``, each ``(B, T, H, W, D)`` -> ``(B, T, H, W, D)``."""
    g = _generator(1)
    shape = (3, 4, 2, 3, 5)  # B, T, H, W, D all different, so axes cannot be confused silently
    q, k, v = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    out = temporal_attention(q, k, v)
    expect_shape(out, shape, "temporal_attention(q, k, v) for (B, T, H, W, D) = (3, 4, 2, 3, 5)",
                 hint="Rearrange back with the same pattern you used going in.")
    out = out.detach()

    other_clips = [z.clone() for z in (q, k, v)]
    for z in other_clips:
        z[1:] = torch.randn(z[1:].shape, generator=g, dtype=torch.float64)
    if not torch.allclose(temporal_attention(*other_clips)[0], out[0], atol=1e-9):
        raise Wrong(
            "Changing clips 1 and 2 of the batch changed the output of clip 0: clips attend to each other.",
            mistake=BATCH_AXIS,
            hint="nn.MultiheadAttention expects (sequence, batch, D) unless batch_first=True; with (B*H*W, T, D) "
                 "it attends over B*H*W. Attention must run over the frame axis t of each (b h w) sequence.",
        )

    one_frame = [z.clone() for z in (q, k, v)]
    for z in one_frame:
        z[:, 0] = torch.randn(z[:, 0].shape, generator=g, dtype=torch.float64)
    frames_moved = (temporal_attention(*one_frame).detach() - out)[:, 1:].abs().max() > 1e-9
    if not frames_moved:
        within_frame = [z.clone() for z in (q, k, v)]
        for z in within_frame:
            z[:, :, 0, 0] = torch.randn(z[:, :, 0, 0].shape, generator=g, dtype=torch.float64)
        pixels_moved = (temporal_attention(*within_frame).detach() - out)[:, :, 1:].abs().max() > 1e-9
        raise Wrong(
            "Changing frame 0 left every other frame's output unchanged: your frames never attend to each other."
            + (" Changing one pixel moved the other pixels of its frame: your attention runs over space." if pixels_moved else ""),
            mistake=SPACE_NOT_TIME if pixels_moved else None,
            hint="Temporal attention makes one sequence per pixel position, over the frames: "
                 "rearrange(x, 'b t h w d -> (b h w) t d'), not '(b t) (h w) d' (that is spatial attention, lesson 03).",
        )

    one_pixel = [z.clone() for z in (q, k, v)]
    for z in one_pixel:
        z[:, :, 0, 1] = torch.randn(z[:, :, 0, 1].shape, generator=g, dtype=torch.float64)
    moved = (temporal_attention(*one_pixel).detach() - out).abs().amax(dim=(0, 1, 4)) > 1e-9  # (H, W)
    moved[0, 1] = False
    if moved.any():
        raise Wrong(
            "Changing the pixel at row 0, column 1 in every frame changed outputs at other pixel positions: "
            "your sequences mix pixels.",
            mistake=WRONG_REARRANGE,
            hint="A plain reshape to (B*H*W, T, D) does not move the t axis; use "
                 "rearrange(x, 'b t h w d -> (b h w) t d') and back with '(b h w) t d -> b t h w d'.",
        )
    if _matches(out, _channels_as_time(q, k, v)):
        raise Wrong(
            "Your sequences run over the channels: frames are treated as features.",
            mistake=WRONG_REARRANGE,
            hint="Each sequence must be T tokens of width D: '(b h w) t d', not '(b h w) d t'.",
        )
    expect_close(out, _reference_temporal(q, k, v), "temporal_attention(q, k, v)", atol=1e-9, rtol=1e-7,
                 hint="Check the softmax axis and the 1/sqrt(D) scale of your attention.")
    return "Each pixel position attends across the frames of its own clip."


@self_check(
    "causal mask", reference="vdmcourse.nn.causal_mask",
    more="The likely slips are the convention (True must mean 'may attend') and the diagonal. Print your "
         "mask for T = 4: it must be the lower triangle with the diagonal, torch.ones(T, T, "
         "dtype=torch.bool).tril().",
)
def check_causal_mask(causal_mask):
    """``causal_mask(T)`` -> bool ``(T, T)``, True where query frame t may attend to key frame s."""
    frames = 5
    mask = causal_mask(frames)
    expect_shape(mask, (frames, frames), "causal_mask(5)")
    if mask.dtype != torch.bool:
        raise Wrong(f"causal_mask(5) should be a bool tensor (True = may attend); got dtype {mask.dtype}.",
                    hint="torch.ones(T, T, dtype=torch.bool).tril() is one way.")
    reference = reference_causal_mask(frames)
    if torch.equal(mask, ~reference):
        raise Wrong("Your mask is True exactly where attention must be blocked.", mistake=INVERTED_MASK,
                    hint="In scaled_dot_product_attention (and in this course) True means 'may attend'. "
                         "nn.MultiheadAttention's masks use the opposite convention.")
    future = torch.ones(frames, frames, dtype=torch.bool).triu(diagonal=1)
    if (mask & future).any():
        query, key = (mask & future).nonzero()[0].tolist()
        raise Wrong(f"Frame {query} may attend to frame {key}, which lies in its future.", mistake=CAUSAL_LEAK,
                    hint="Query t (a row) may see keys s <= t: the lower triangle, diagonal included.")
    if not mask.diagonal().all():
        raise Wrong("A frame may not attend to itself: the first frame sees nothing at all, and softmax "
                    "over no keys gives NaN.", hint="Keep the diagonal: s <= t, not s < t.")
    if not torch.equal(mask, reference):
        raise Wrong("Your mask blocks some past frames that a causal frame may see.",
                    hint="Causal only removes the future: every s <= t stays True.")
    return "Frame t sees frames 0..t, never the future."
