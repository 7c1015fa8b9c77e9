"""Self-checks for lesson 07, the video DiT and spacetime patches.

* :func:`check_patchify` -- ``patchify(x, patch)``: clips ``(B, T, C, H, W)`` cut into
  tubelet tokens ``(B, t, h, w, pt*ph*pw*C)``, as :func:`vdmcourse.nn.dit.patchify`.
* :func:`check_modulate` -- ``modulate(x, shift, scale)``: adaLN's ``x * (1 + scale) + shift``.
* :func:`check_dit_block` -- ``make_block(dim, heads, cond_dim)``: an adaLN-Zero DiT
  block on tokens ``(B, L, D)``, as :class:`vdmcourse.nn.dit.DiTBlock`.
* :func:`check_packing_mask` -- ``packing_mask(lengths)``: the block-diagonal attention
  mask of clips packed into one sequence.
* :func:`check_frame_noise` -- ``frame_noise(shape, mix, generator)``: Gaussian noise whose
  frames share a part (PYoCo's mixed noise prior), as :func:`vdmcourse.diffusion.frame_noise`.

Each names the real mistakes: patches scrambled by the wrong rearrange order, the
modulation without its ``1 +``, a gate that is not applied or not zero-initialised,
``nn.MultiheadAttention`` fed ``(B, L, D)`` without ``batch_first`` (attention over
the batch), modulation without the norm, and a packing mask that lets clips see
each other (or uses the opposite True/False convention); for the shared noise, a mix
that is not renormalised, a shared part drawn per frame, and one shared for the whole batch.
"""

from __future__ import annotations

import torch
from torch import nn

from vdmcourse.diffusion import frame_noise as reference_frame_noise
from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check
from vdmcourse.nn.dit import DiTBlock, TokenLayout
from vdmcourse.nn.dit import patchify as reference_patchify

__all__ = [
    "PATCHES_SCRAMBLED",
    "TOKEN_ORDER",
    "NO_ONE_PLUS",
    "GATE_NOT_ZERO",
    "BATCH_FIRST",
    "NO_NORM",
    "CLIPS_SEE_EACH_OTHER",
    "MASK_INVERTED",
    "NOISE_NOT_UNIT",
    "NOT_SHARED",
    "SHARED_ACROSS_CLIPS",
    "reference_patchify",
    "reference_modulate",
    "reference_packing_mask",
    "reference_make_block",
    "reference_frame_noise",
    "check_patchify",
    "check_modulate",
    "check_dit_block",
    "check_packing_mask",
    "check_frame_noise",
]

PATCHES_SCRAMBLED = "patchify with the wrong rearrange order (patches scrambled)"
TOKEN_ORDER = "numbers inside a token in another order than (pt, ph, pw, c)"
NO_ONE_PLUS = "x * scale + shift without the 1 +"
GATE_NOT_ZERO = "the gate not applied or not zero-initialised"
BATCH_FIRST = "nn.MultiheadAttention without batch_first: attention over the batch axis"
NO_NORM = "modulation without the LayerNorm before it"
CLIPS_SEE_EACH_OTHER = "a packing mask that lets clips see each other"
MASK_INVERTED = "mask convention flipped (True must mean 'may attend')"
NOISE_NOT_UNIT = "own + mix * shared not divided by sqrt(1 + mix**2): the noise is not N(0, 1)"
NOT_SHARED = "the shared part drawn afresh for every frame, so the frames share nothing"
SHARED_ACROSS_CLIPS = "one shared part for the whole batch instead of one per clip"


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Patches.


@self_check(
    "patchify into tubelets", reference="vdmcourse.nn.dit.patchify",
    more="The likely slip is the rearrange pattern: each axis splits as (count, size), and the token is "
         "flattened as (pt ph pw c). Pattern: 'b (t pt) c (h ph) (w pw) -> b t h w (pt ph pw c)' with pt, "
         "ph, pw = patch.",
)
def check_patchify(patchify):
    """``patchify(x, patch)``: x ``(B, T, C, H, W)``, patch ``(pt, ph, pw)`` ->
    ``(B, T/pt, H/ph, W/pw, pt*ph*pw*C)``."""
    patch = (2, 2, 4)
    x = torch.randn(2, 4, 3, 6, 8, generator=_generator(), dtype=torch.float64)
    out = patchify(x, patch)
    expected = reference_patchify(x, patch)
    expect_shape(out, expected.shape, "patchify(x, (2, 2, 4)) for x (2, 4, 3, 6, 8)",
                 hint="Each token is one 2x2x4 tubelet of 3 channels: (B, T/2, H/2, W/4, 2*2*4*3).")
    out = out.detach().to(expected.dtype)
    if not torch.equal(out.sort(dim=-1).values, expected.sort(dim=-1).values):
        raise Wrong(
            "Some token does not hold one contiguous tubelet: its numbers come from frames, rows or columns "
            "that are not neighbours, so the patches are scrambled and no spatial structure survives.",
            mistake=PATCHES_SCRAMBLED,
            hint="Split each axis as (count, size): 'b (t pt) c (h ph) (w pw) -> b t h w (pt ph pw c)'. "
                 "Writing '(pt t)' instead of '(t pt)' takes every t-th frame into one token.",
        )
    if not torch.equal(out, expected):
        raise Wrong(
            "Every token holds the right tubelet, but its numbers are in another order than the package's.",
            mistake=TOKEN_ORDER,
            hint="Flatten the tubelet as (pt ph pw c), channels fastest, so that unpatchify can undo it.",
        )
    return "Each token is one contiguous tubelet, flattened as (pt, ph, pw, c)."


# adaLN.


def reference_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


@self_check(
    "adaLN modulation", reference="vdmcourse.nn.dit.modulate",
    more="The likely slip is x * scale + shift without the 1 +: zero modulation must leave x as it is. "
         "Return x * (1 + scale) + shift; the (B, 1, D) shift and scale broadcast over the L tokens.",
)
def check_modulate(modulate):
    """``modulate(x, shift, scale)``: x ``(B, L, D)``, shift and scale ``(B, 1, D)`` -> ``(B, L, D)``."""
    g = _generator(1)
    x = torch.randn(2, 5, 4, generator=g, dtype=torch.float64)
    shift, scale = torch.randn(2, 2, 1, 4, generator=g, dtype=torch.float64)
    out = modulate(x, shift, scale)
    expect_shape(out, x.shape, "modulate(x, shift, scale) for x (2, 5, 4)")
    zero = torch.zeros_like(shift)
    if torch.allclose(modulate(x, zero, zero).detach().to(x.dtype), torch.zeros_like(x)):
        raise Wrong(
            "With shift = scale = 0 your modulation returns zeros. A zero-initialised modulation Linear gives "
            "exactly those values at init, so every branch would see a zero input and the block could not learn.",
            mistake=NO_ONE_PLUS,
            hint="DiT multiplies by (1 + scale): zero scale means 'leave the normalised x as it is'.",
        )
    expect_close(out, reference_modulate(x, shift, scale), "modulate(x, shift, scale)", atol=1e-9, rtol=1e-7,
                 hint="x * (1 + scale) + shift, broadcast over the L tokens.")
    return "x * (1 + scale) + shift: zero modulation leaves x unchanged."


@self_check(
    "adaLN-Zero DiT block", reference="vdmcourse.nn.dit.DiTBlock",
    more="The likely slips: the gates not zero at init, attention without batch_first, modulation without "
         "the LayerNorm (elementwise_affine=False, eps=1e-6) before it. Zero adaLN_modulation[-1]'s weight"
         " and bias; shift, scale, gate = chunks of it; x = x + gate * attn(modulate(norm(x), shift, "
         "scale)), then the MLP likewise.",
)
def check_dit_block(make_block):
    """``make_block(dim, heads, cond_dim)`` -> a module with ``forward(x, c)``, x ``(B, L, D)``,
    c ``(B, cond_dim)``, and an attribute ``adaLN_modulation`` = ``nn.Sequential(nn.SiLU(),
    nn.Linear(cond_dim, 6 * dim))`` giving (shift, scale, gate) of attention, then of the MLP."""
    dim, heads, cond_dim = 16, 4, 8
    torch.manual_seed(0)
    block = make_block(dim, heads, cond_dim)
    if not isinstance(block, nn.Module):
        raise Wrong(f"make_block(16, 4, 8) should return an nn.Module; got {type(block).__name__}.")
    modulation = getattr(block, "adaLN_modulation", None)
    if not isinstance(modulation, nn.Sequential) or not isinstance(modulation[-1], nn.Linear) or modulation[-1].out_features != 6 * dim:
        raise Wrong("The block needs adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim)).")
    g = _generator(2)
    x, c = torch.randn(3, 10, dim, generator=g), torch.randn(3, cond_dim, generator=g)
    with torch.no_grad():
        out = block(x, c)
        expect_shape(out, x.shape, "block(x, c) for x (3, 10, 16), c (3, 8)")
        if not torch.allclose(out, x, atol=1e-6):
            raise Wrong(
                f"At init your block changes its input (by up to {(out - x).abs().max().item():.3g}); an "
                "adaLN-Zero block starts as the identity, so a deep stack of them trains from a network that "
                "passes its input through.",
                mistake=GATE_NOT_ZERO,
                hint="Zero the modulation Linear's weight and bias (so every gate is 0 at init) and multiply "
                     "each branch's output by its gate: x = x + gate * branch(...).",
            )
        for parameter in block.parameters():  # what training does: the zero layers wake up
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=g))
        changed = x.clone()
        changed[1] = torch.randn(10, dim, generator=g)
        leaked = (block(changed, c) - block(x, c))[[0, 2]].abs().max().item()
        if leaked > 1e-5:
            raise Wrong(
                f"Changing clip 1 of the batch changed the outputs of clips 0 and 2 (by up to {leaked:.3g}): "
                "tokens attend across the batch.",
                mistake=BATCH_FIRST,
                hint="nn.MultiheadAttention expects (L, B, D) unless built with batch_first=True; given (B, L, D) "
                     "it treats the batch as the sequence. Pass batch_first=True (or use "
                     "F.scaled_dot_product_attention on (B, heads, L, d)).",
            )
        linear = modulation[-1]
        linear.weight.zero_()
        linear.bias.zero_()
        linear.bias[2 * dim : 3 * dim] = 1.0  # attention gate 1, everything else 0
        linear.bias[5 * dim :] = 1.0  # MLP gate 1
        branches = block(x, c) - x  # (3, 10, D): what the two branches add
        if torch.allclose(branches, branches[:, :1].expand_as(branches), atol=1e-6):
            raise Wrong(
                "With shift = scale = 0 and the gates open, your branches add the same vector to every token: "
                "they saw a zero input.",
                mistake=NO_ONE_PLUS,
                hint="Modulate with x * (1 + scale) + shift, so that zero modulation keeps the normalised tokens.",
            )
        small = block(x, c) - x
        large = block(1000 * x, c) - 1000 * x
        growth = (large.abs().max() / small.abs().max().clamp(min=1e-12)).item()
        if growth > 10:
            raise Wrong(
                f"Multiplying the tokens by 1000 made what the branches add {growth:.0f} times larger: the "
                "branches see the raw activations, which grow from block to block.",
                mistake=NO_NORM,
                hint="Put a LayerNorm without affine parameters (elementwise_affine=False, eps=1e-6) before "
                     "each modulation: modulate(norm(x), shift, scale).",
            )
    return "Identity at init, clips stay apart, norm then x * (1 + scale) + shift, gated residuals."


def reference_make_block(dim: int, heads: int, cond_dim: int) -> nn.Module:
    """The package's :class:`~vdmcourse.nn.dit.DiTBlock` (full attention) behind the exercise's
    interface: ``forward(x, c)`` for tokens ``(B, L, D)``, and its ``adaLN_modulation``, zeroed
    as :class:`~vdmcourse.nn.dit.VideoDiT` zeroes it (so the block starts as the identity)."""
    return _ReferenceBlock(dim, heads, cond_dim)


class _ReferenceBlock(nn.Module):
    def __init__(self, dim: int, heads: int, cond_dim: int):
        super().__init__()
        self.block = DiTBlock(dim, heads, ("full",), cond_dim=cond_dim)
        self.adaLN_modulation = self.block.adaLN_modulation
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        layout = TokenLayout.build([(x.shape[1], 1, 1)], packed=False, causal=False, device=x.device)  # L tokens in a row
        return self.block(x, c, layout)


# Packing.


def reference_packing_mask(lengths) -> torch.Tensor:
    """``(L, L)`` bool, ``L = sum(lengths)``: True where query and key belong to the same clip."""
    segments = torch.repeat_interleave(torch.arange(len(lengths)), torch.as_tensor(lengths))
    return segments[:, None] == segments[None, :]


@self_check(
    "packing mask", reference="vdmcourse.nn.dit.TokenLayout.mask",
    more="The likely slips are clips that see each other and the convention (True = may attend). Give each"
         " token its clip's index, ids = torch.repeat_interleave(torch.arange(len(lengths)), "
         "torch.tensor(lengths)), and return ids[:, None] == ids[None, :].",
)
def check_packing_mask(packing_mask):
    """``packing_mask(lengths)``: a list of token counts -> bool ``(L, L)``, True = may attend."""
    lengths = [3, 1, 4]
    out = packing_mask(lengths)
    expected = reference_packing_mask(lengths)
    expect_shape(out, expected.shape, "packing_mask([3, 1, 4])", hint="One row and one column per token: 8 x 8.")
    if out.dtype != torch.bool:
        raise Wrong(f"The mask should be a bool tensor (True = may attend); got {out.dtype}.",
                    hint="Compare segment ids: segments[:, None] == segments[None, :].")
    if torch.equal(out, ~expected):
        raise Wrong(
            "Your mask is True exactly where attention must be blocked.",
            mistake=MASK_INVERTED,
            hint="scaled_dot_product_attention reads True as 'may attend' (nn.MultiheadAttention's "
                 "key_padding_mask uses the opposite convention).",
        )
    if (out & ~expected).any():
        query, key = (out & ~expected).nonzero()[0].tolist()
        raise Wrong(
            f"Token {query} may attend to token {key}, which belongs to another clip: packed clips would "
            "see each other, and each clip's output would depend on what it was packed with.",
            mistake=CLIPS_SEE_EACH_OTHER,
            hint="Block-diagonal: give each token its clip's index and allow only equal indices.",
        )
    if not torch.equal(out, expected):
        query, key = (expected & ~out).nonzero()[0].tolist()
        raise Wrong(f"Token {query} may not attend to token {key} of its own clip.",
                    hint="Within one clip every token sees every other (and itself).")
    return "Block-diagonal: every clip attends only to itself."


# Noise the frames share.


@self_check(
    "noise the frames share", reference="vdmcourse.diffusion.frame_noise",
    more="The likely slips: the sum not divided by sqrt(1 + mix**2), or a shared part of the wrong shape. "
         "Draw own = torch.randn(shape, generator=generator) and shared = torch.randn((B, 1, *shape[2:]), "
         "generator=generator): one shared draw per clip, broadcast over its T frames. Return "
         "(own + mix * shared) / math.sqrt(1 + mix ** 2).",
)
def check_frame_noise(frame_noise):
    """``frame_noise(shape, mix, generator)``: shape ``(B, T, C, H, W)`` -> noise of that shape,
    every element N(0, 1), two frames of a clip correlated ``mix**2 / (1 + mix**2)``, clips independent."""
    shape = (3000, 3, 1, 4, 4)
    for mix in (0.0, 2.0):
        out = frame_noise(shape, mix, _generator(int(mix)))
        expect_shape(out, shape, f"frame_noise({shape}, mix={mix}, generator)")
        out = out.detach().double()
        std = out.std().item()
        frames = (out[:, 0] * out[:, 2]).mean().item() / out.var().item()
        clips = (out[:-1] * out[1:]).mean().item() / out.var().item()
        expected = mix**2 / (1 + mix**2)
        if mix and abs(clips) > 0.05:
            raise Wrong(f"Neighbouring clips of the batch correlate {clips:.2f}: their noise should be independent.",
                        mistake=SHARED_ACROSS_CLIPS, hint="Draw the shared part with shape (B, 1, C, H, W), not (1, 1, C, H, W).")
        if abs(std - 1) > 0.03:
            raise Wrong(f"At mix={mix} your noise has standard deviation {std:.2f}; the flow path ends at N(0, 1) noise.",
                        mistake=NOISE_NOT_UNIT if mix else None,
                        hint="own and mix * shared add their variances, 1 + mix**2: divide by its square root.")
        if abs(frames - expected) > 0.05:
            raise Wrong(f"At mix={mix} frames 0 and 2 of a clip correlate {frames:.2f}; expected {expected:.2f} = mix**2 / (1 + mix**2).",
                        mistake=NOT_SHARED if mix and abs(frames) < 0.05 else None,
                        hint="One shared draw per clip, the same for all its frames: shape (B, 1, ...), broadcast over T.")
    return "Unit variance, frames of a clip correlated mix**2 / (1 + mix**2), clips independent."
