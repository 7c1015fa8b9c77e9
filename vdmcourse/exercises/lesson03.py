"""Self-checks for lesson 03, spatiotemporal blocks and the cost of attention.

* :func:`check_block` -- ``block_forward(x, block)``: spatial -> temporal -> FFN with the
  parts of a :class:`~vdmcourse.nn.SpatiotemporalBlock`, each pre-norm and residual.
* :func:`check_causal_block` -- ``causal_block_forward(x, block)``: the same block, but
  frame t may only use frames <= t.
* :func:`check_score_count` -- ``score_count(kind, frames, height, width)``: how many
  query-key scores one head computes per clip, for full 3D and factorised attention.
"""

from __future__ import annotations

import copy
import itertools

import torch

from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check
from vdmcourse.nn.attention import causal_mask
from vdmcourse.nn.blocks import SpatiotemporalBlock

__all__ = [
    "MISSING_RESIDUAL",
    "NORM_PLACEMENT",
    "BRANCH_ORDER",
    "CAUSAL_LEAK",
    "NORM_MIXES_FRAMES",
    "NOT_QUADRATIC",
    "ONE_SEQUENCE",
    "SWAPPED_AXES",
    "SCORE_KINDS",
    "check_block",
    "check_causal_block",
    "check_score_count",
    "practice_block",
    "reference_score_count",
]

MISSING_RESIDUAL = "missing residual connection"
NORM_PLACEMENT = "norm in the wrong place"
BRANCH_ORDER = "branches in the wrong order"
CAUSAL_LEAK = "temporal attention sees the future"
NORM_MIXES_FRAMES = "a norm mixes frames"
NOT_QUADRATIC = "attention cost is not linear in the sequence length"
ONE_SEQUENCE = "counted one sequence instead of all of them"
SWAPPED_AXES = "spatial and temporal swapped"

SCORE_KINDS = ("full 3D", "spatial", "temporal", "spatial + temporal")

_SHAPE = (2, 5, 2, 3, 8)  # B, T, H, W, D


def practice_block(seed: int = 0, *, dim: int = 8, heads: int = 2) -> SpatiotemporalBlock:
    """A small float64 :class:`SpatiotemporalBlock` with random (non-zero) weights, as the checks use."""
    torch.manual_seed(seed)
    block = SpatiotemporalBlock(dim, heads).double()
    for norm in block.norms:  # trained-looking norms, so a missing or extra norm shows
        torch.nn.init.normal_(norm.weight, 1.0, 0.3)
        torch.nn.init.normal_(norm.bias, 0.0, 0.3)
    return block


def _grid(seed: int = 0) -> torch.Tensor:
    return torch.randn(_SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _close(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a.detach(), b, atol=1e-9, rtol=1e-7)


def _silenced(block: SpatiotemporalBlock) -> SpatiotemporalBlock:
    """A copy whose three branches output exactly zero: a correct residual block is then the identity."""
    quiet = copy.deepcopy(block)
    for layer in (quiet.spatial.out, quiet.temporal.out, quiet.ffn.net[-1]):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    return quiet


def _variants(x, block):
    """What the usual wrong assemblies compute."""
    n, branches = block.norms, (block.spatial, block.temporal, block.ffn)
    post, no_norm, normed_stream = x, x, x
    for norm, branch in zip(n, branches):
        post = norm(post + branch(post))
        no_norm = no_norm + branch(no_norm)
        normed_stream = norm(normed_stream) + branch(norm(normed_stream))
    return {"post": post, "no norm": no_norm, "normed stream": normed_stream}


def _reordered(x, block):
    """Every other order of the three branches, each with its own norm or with the norm of
    the position it runs at: ``{"temporal -> spatial -> FFN": output, ...}``."""
    names, branches = ("spatial", "temporal", "FFN"), (block.spatial, block.temporal, block.ffn)
    orders = {}
    for order in itertools.permutations(range(3)):
        if order == (0, 1, 2):
            continue
        for own_norm in (True, False):
            h = x
            for position, index in enumerate(order):
                h = h + branches[index](block.norms[index if own_norm else position](h))
            orders.setdefault(" -> ".join(names[i] for i in order), []).append(h)
    return orders


@self_check(
    "assemble the spatiotemporal block", reference="vdmcourse.nn.SpatiotemporalBlock",
    more="The likely slips are a residual left out, a norm applied after its branch (post-norm) or to the "
         "stream itself, and the branches in another order. Pre-norm, spatial -> temporal -> FFN: x = x + "
         "block.spatial(block.norms[0](x)), then the same with block.temporal and norms[1], then block.ffn"
         " and norms[2].",
)
def check_block(block_forward):
    """``block_forward(x, block)``: x ``(B, T, H, W, D)`` -> ``(B, T, H, W, D)``."""
    block, x = practice_block(), _grid()
    with torch.no_grad():
        out = block_forward(x, block)
        expect_shape(out, _SHAPE, "block_forward(x, block) for x of shape (2, 5, 2, 3, 8)")
        if _close(out, block(x)):
            return "x + spatial(norm(x)), then the same for temporal and the FFN: pre-norm, residual."
        quiet_out = block_forward(x, _silenced(block))
        if isinstance(quiet_out, torch.Tensor) and quiet_out.shape == x.shape and quiet_out.abs().max() < 1e-9:
            raise Wrong("With every branch outputting zero your block outputs zero: the input is lost.",
                        mistake=MISSING_RESIDUAL,
                        hint="Each line is x = x + branch(norm(x)): add the branch to x, do not replace x.")
        variants = _variants(x, block)
        if _close(out, variants["post"]) or _close(out, variants["normed stream"]):
            raise Wrong("Your residual stream itself gets normalised (norm after the add, or x replaced by norm(x)).",
                        mistake=NORM_PLACEMENT,
                        hint="Pre-norm: only the branch input is normalised, x = x + branch(norm(x)); "
                             "the stream x passes through untouched.")
        if _close(out, variants["no norm"]):
            raise Wrong("Your branches see x without its norm.", mistake=NORM_PLACEMENT,
                        hint="Use block.norms[i] on each branch's input: x = x + branch(norms[i](x)).")
        for order, outputs in _reordered(x, block).items():
            if any(_close(out, candidate) for candidate in outputs):
                raise Wrong(f"Your block runs its branches as {order}.", mistake=BRANCH_ORDER,
                            hint="The order is spatial (within each frame), temporal (across frames), then FFN, "
                                 "each with its own norm: norms[0], norms[1], norms[2].")
        if not _close(quiet_out, x):
            raise Wrong("With every branch outputting zero your block does not return its input.",
                        mistake=NORM_PLACEMENT,
                        hint="A pre-norm residual block is the identity when its branches are zero.")
        expect_close(out, block(x), "block_forward(x, block)", atol=1e-9, rtol=1e-7,
                     hint="Use norms[0] with spatial, norms[1] with temporal, norms[2] with the FFN.")


@self_check(
    "make the block causal", reference="vdmcourse.nn.SpatiotemporalBlock(..., causal=True)",
    more="The likely slip is a mask that leaks the future or the wrong convention. Only the temporal "
         "branch changes: call block(x, mask=causal_mask(T)) or pass mask=causal_mask(T) to "
         "block.temporal, with True on and below the diagonal (frame t sees s <= t).",
)
def check_causal_block(causal_block_forward):
    """``causal_block_forward(x, block)``: x ``(B, T, H, W, D)`` -> ``(B, T, H, W, D)``;
    output frame t depends on input frames 0..t only."""
    block, x = practice_block(1), _grid(1)
    frames = x.shape[1]
    with torch.no_grad():
        out = causal_block_forward(x, block)
        expect_shape(out, _SHAPE, "causal_block_forward(x, block) for x of shape (2, 5, 2, 3, 8)")
        for k in (1, 3):
            perturbed = x.clone()
            perturbed[:, k] = torch.randn(perturbed[:, k].shape, generator=torch.Generator().manual_seed(k), dtype=x.dtype)
            earlier = causal_block_forward(perturbed, block)[:, :k]
            if torch.allclose(earlier, out[:, :k], atol=1e-9):
                continue
            quiet = copy.deepcopy(block)
            torch.nn.init.zeros_(quiet.temporal.out.weight)  # no attention across frames at all
            torch.nn.init.zeros_(quiet.temporal.out.bias)
            leak = causal_block_forward(perturbed, quiet)[:, :k] - causal_block_forward(x, quiet)[:, :k]
            if leak.abs().max() > 1e-9:
                raise Wrong(f"Changing frame {k} changed earlier frames even with temporal attention switched off: "
                            "something else combines frames.", mistake=NORM_MIXES_FRAMES,
                            hint="Normalise each token over its channels only (LayerNorm on the last axis); "
                                 "statistics over T mix the future into the past.")
            raise Wrong(f"Changing frame {k} changed the output of frames before it.", mistake=CAUSAL_LEAK,
                        hint="Pass a causal frame mask (True where s <= t) to the temporal attention: "
                             "block.temporal(h, mask=causal_mask(T)).")
        expect_close(out, block(x, mask=causal_mask(frames)), "causal_block_forward(x, block)", atol=1e-9, rtol=1e-7,
                     hint="Causal only removes the future: the block is otherwise unchanged, and frame t still sees "
                          "every frame s <= t.")
    return "Perturbing frame k leaves every earlier output unchanged."


def _score_counts(frames: int, height: int, width: int) -> dict:
    pixels = height * width
    spatial, temporal = frames * pixels**2, pixels * frames**2
    return {"full 3D": (frames * pixels) ** 2, "spatial": spatial, "temporal": temporal,
            "spatial + temporal": spatial + temporal}


def reference_score_count(kind: str, frames: int, height: int, width: int) -> int:
    """Query-key scores one head computes for one clip of ``frames`` frames of ``height`` x ``width``
    positions, ``kind`` in :data:`SCORE_KINDS`."""
    if kind not in SCORE_KINDS:
        raise ValueError(f"reference_score_count: kind must be one of {SCORE_KINDS}; got {kind!r}")
    return _score_counts(frames, height, width)[kind]


@self_check(
    "the cost of attention", reference="vdmcourse.exercises.lesson03.reference_score_count",
    more="The likely slips are counting one sequence instead of all of them, or swapping which axis is the"
         " sequence. With P = height * width: spatial attention has T sequences of P tokens (T * P**2 "
         "scores), temporal has P sequences of T tokens (P * T**2), full 3D one sequence of T * P tokens "
         "((T * P)**2).",
)
def check_score_count(score_count):
    """``score_count(kind, frames, height, width)`` -> the number of query-key scores one head
    computes for one clip, ``kind`` in :data:`SCORE_KINDS`."""
    for frames, height, width in ((5, 3, 4), (2, 7, 6), (16, 8, 8)):
        pixels, expected = height * width, _score_counts(frames, height, width)
        for kind in SCORE_KINDS:
            got = score_count(kind, frames, height, width)
            if isinstance(got, torch.Tensor):
                got = got.item()
            where = f"score_count({kind!r}, frames={frames}, height={height}, width={width})"
            if got == expected[kind]:
                continue
            if kind == "full 3D" and got == frames * pixels:
                raise Wrong(f"{where} = {got}, the number of tokens.", mistake=NOT_QUADRATIC,
                            hint="Every one of the T*H*W queries scores every one of the T*H*W keys.")
            if (kind, got) in (("spatial", pixels**2), ("temporal", frames**2)):
                raise Wrong(f"{where} = {got}: the scores of one sequence.", mistake=ONE_SEQUENCE,
                            hint="Spatial attention runs one sequence per frame (T of them); temporal attention "
                                 "one per pixel position (H*W of them).")
            if (kind, got) in (("spatial", pixels * frames**2), ("temporal", frames * pixels**2)):
                raise Wrong(f"{where} = {got}: the count of the other factor.", mistake=SWAPPED_AXES,
                            hint="Spatial: sequences of H*W tokens within a frame; temporal: sequences of T frames.")
            raise Wrong(f"{where} = {got}; expected {expected[kind]}.",
                        hint="A sequence of S tokens has S^2 scores; count the sequences and multiply.")
    return "Full 3D: (T·H·W)²; factorised: T·(H·W)² + H·W·T², a factor of about min(T, H·W) fewer."
