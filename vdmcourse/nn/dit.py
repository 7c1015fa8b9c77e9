"""A video diffusion transformer over spacetime patches (Sora's backbone, lesson 07).

Peebles & Xie 2023 (DiT) turned a diffusion U-Net into a plain transformer over
image patches; Sora, Latte, Open-Sora, CogVideoX and Wan do the same over *spacetime*
patches of a clip. This file holds the whole model, in sections: patches, 3-D
positions, attention, the adaLN-Zero block, the final layer, the model, variable
sizes (buckets and packing).

* **Tubelets.** A clip ``(B, T, C, H, W)`` is cut into non-overlapping
  ``pt x ph x pw`` tubelets; each becomes one token (:func:`patchify`, exactly undone
  by :func:`unpatchify`). Pixels or VAE latents alike: C is any channel count.
* **Positions for any T x H x W**, computed on the fly: a 3-D sin-cos table added
  to the tokens (:func:`vdmcourse.nn.embeddings.sincos_table_3d`, as DiT's 2-D one)
  and/or 3-D RoPE (CogVideoX): each head's channels split in three, each part rotated
  by the token's frame, row or column (:func:`rope_3d`).
* **Layouts** (Latte compares them; :data:`LAYOUTS`): ``"full"`` (every block attends
  over all tokens of a clip), ``"alternate"`` (spatial and temporal blocks
  alternate, Latte), ``"stdit"`` (spatial then temporal attention inside one block,
  Open-Sora's STDiT).
* **adaLN-Zero exactly as DiT**: ``LayerNorm`` without affine parameters (eps 1e-6),
  ``x * (1 + scale) + shift``, gated residuals; (shift, scale, gate) per branch from
  ``SiLU -> Linear`` of the conditioning vector (six vectors for attention + MLP).
  Every modulation Linear and the final layer are zero-initialised: at init every
  block is the identity and the model outputs exactly zero.
* **Conditioning**: diffusion time + digit label (with the null row of
  classifier-free guidance), summed into one vector per clip; with ``context_dim``,
  a cross-attention branch per block (zero-initialised output, PixArt-alpha) takes
  caption tokens ``(B, L, context_dim)``.
* **U-ViT's pixel-space fixes**, opt-in (Bao et al. 2023, "All are Worth Words"):
  ``long_skips`` joins the output of each block of the first half to the input of
  its mirror in the second half (concatenate, then a Linear), as a U-Net's skips
  carry fine detail to the output; ``final_conv`` adds a 3x3 convolution on each
  output frame after :func:`unpatchify`, which smooths the seams between patches.
  Both start as nothing (the Linear as ``[I | 0]``, the convolution as a
  zero-initialised residual), so the untrained model still outputs exactly zero.
* **What the last layer writes**: the flow velocity (DiT, SD3), or with
  ``prediction="x"`` the clean clip, which the model turns into the velocity
  (:meth:`VideoDiT.to_velocity`; Li & He 2025, JiT). A clean clip is smooth and mostly
  background, a velocity holds fresh noise in every pixel: for a small pixel-space DiT
  the clean clip is the easier thing to write (benchmarks/results/dit.md).
* **More options for motion**, off by default (benchmarks/results/dit.md, 900 CPU-second
  pilots): a *motion stream* (``motion_patch``) cuts the clip a second time into long
  tubelets whose tokens join the main ones in the same attention, with their own
  embedding and output layer; with ``motion_means`` the main tokens' outputs lose their
  means, so the long tokens alone say where the ink is (a steadier digit, a worse-drawn
  one); a *time per frame* (``t`` of shape ``(B, T)``, diffusion forcing) modulates each
  token frame by its own noise level (no gain).
* **Variable size**, both ways the field does it: a batch of one size (a *bucket*,
  Open-Sora; :func:`bucket_batch_sizes` keeps tokens per batch about constant), or
  clips of different sizes *packed* into one token sequence with a block-diagonal
  attention mask and per-clip positions (NaViT; :meth:`VideoDiT.forward_packed`).

Tokens travel as ``(B, L, D)`` with ``L = t * h * w`` in (t, h, w) order; a
:class:`TokenLayout` says how they group for spatial / temporal / full attention.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmcourse.nn.attention import attention, causal_mask
from vdmcourse.nn.blocks import FeedForward
from vdmcourse.nn.conditioning import MicroConditioning
from vdmcourse.nn.embeddings import (
    LabelEmbedding,
    TimestepEmbedding,
    _check_position_scale,
    apply_rope,
    sincos_table_3d,
)

__all__ = [
    "VideoDiTConfig",
    "VideoDiT",
    "DiTBlock",
    "DiTAttention",
    "FinalLayer",
    "SizeEmbedding",
    "TokenLayout",
    "patchify",
    "unpatchify",
    "modulate",
    "rope_3d",
    "token_grid",
    "bucket_batch_sizes",
    "LAYOUTS",
    "POSITIONS",
    "PREDICTIONS",
]

LAYOUTS = ("full", "alternate", "stdit")
POSITIONS = (None, "sincos", "rope", "sincos+rope")
PREDICTIONS = ("v", "x")
# prediction="x": the velocity divides by t, floored here (JiT's clip) so t -> 0 stays finite.
X_PREDICTION_T_MIN = 0.05


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class VideoDiTConfig:
    """Everything that defines a :class:`VideoDiT` (and what its checkpoint stores).

    Attributes:
        channels: C of the clips, in and out (1 for MNIST pixels; a VAE's latent channels).
        patch: tubelet size ``(pt, ph, pw)``: frames, rows and columns per token.
        dim: token width D. depth: number of blocks. heads: attention heads (divide D).
        mlp_ratio: MLP hidden width as a multiple of D.
        layout: ``"full"``, ``"alternate"`` or ``"stdit"`` (see the module docstring).
        position: ``"sincos"`` (added table), ``"rope"`` (3-D rotary), ``"sincos+rope"``
            or None (no position: permuting tokens permutes the output).
        qk_norm: RMS-normalise queries and keys per head (SD3): bounded attention logits.
        causal: a token sees only tokens of its own and earlier frames (token frames:
            ``pt`` video frames each).
        num_classes: digit classes for label conditioning (plus the null row), or None.
        context_dim: width of caption tokens for cross-attention, or None (no branch).
        max_grid: the largest token grid ``(t, h, w)`` the model accepts, or None (any
            grid: positions are computed on the fly).
        frames, image_size: the clip size it is trained on (what samplers draw by
            default); any T, H, W divisible by the patch runs.
        rope_base: RoPE's slowest wavelength (frequencies ``base ** (-i / (d/2))`` per axis).
            10,000 (RoFormer) suits long sequences; a grid of 8 rows reaches only the first
            one or two frequencies of a small head, so a small grid may want a smaller base.
        label_std: std of the label table's initial rows. 0.02 is DiT's, made for 400k steps;
            1.0 is ADM's (``nn.Embedding``'s default): the label starts about as loud in the
            conditioning vector as the time embedding.
        long_skips: U-ViT's long skip connections: block ``depth - 1 - i`` takes
            ``Linear(cat(x, output of block i))`` for each ``i < depth // 2`` (needs depth >= 2).
        final_conv: U-ViT's 3x3 convolution on each output frame after unpatchify, as a
            zero-initialised residual (against the blocky seams of patch-wise outputs).
            These three were tried on dit-cpu in 270 CPU-second pilots and gained nothing
            measurable there (benchmarks/results/dit.md, "Recipe pilots" and "What we see").
        size_conditioning: add an embedding of each clip's (frames, height, width) to its
            conditioning vector (:class:`SizeEmbedding`, as SDXL and PixArt-alpha do with image
            size and aspect ratio): the model is told its canvas. Zero at init.
        prediction: what the network's last layer outputs. ``"v"``: the flow velocity
            ``eps - x0`` itself (DiT, SD3). ``"x"``: the clean clip ``x0``, which the model
            turns into the velocity of the flow path ``x_t = (1 - t) x0 + t eps`` as
            ``(x_t - x0_hat) / max(t, X_PREDICTION_T_MIN)`` (Li & He 2025, "Back to Basics:
            Let Denoising Generative Models Denoise", JiT) -- so the loss, the samplers and
            guidance see a velocity either way. A clean clip is smooth and mostly background; a
            velocity carries the noise of every pixel, which a token's linear head has to
            reproduce. With ``"x"`` the untrained model outputs ``x_t / max(t, ...)``, not zero.
        noise_mix: the noise the model is trained and sampled with shares this much of itself
            across frames: PYoCo's mixed noise prior (Ge et al. 2023),
            :func:`vdmcourse.diffusion.objectives.frame_noise`. 0 (the default): independent
            frames. ``training_loss`` and ``sample`` read it from the model
            (:func:`~vdmcourse.diffusion.objectives.noise_mix_of`), so the checkpoint carries the
            noise its model expects. The network itself does not use it.
        motion_patch: None, or a second tubelet size ``(mt, mh, mw)`` that cuts the same clip
            a second time into *motion tokens* -- long in time (``mt = frames``: one token
            writes a whole clip's history of an ``mh x mw`` square), few, and coarse. They join
            the main tokens in one attention (two token streams in one sequence, as SD3's MMDiT
            joins text and image), each stream with its own embedding and output layer, and
            the two outputs add. Main tokens short in time draw the digit's shape; a token as
            long as the clip moves it (benchmarks/results/dit.md, "Shape or motion"). A clip
            shorter than ``mt`` frames gets no motion tokens; a longer one is zero-padded in
            time to a multiple of ``mt`` for them. Needs ``layout="full"``, RoPE in
            ``position`` (the motion tokens' only position: rotations at their centres, in
            main-token units) and ``causal=False``; :meth:`VideoDiT.forward` only (no packing).
        motion_means: with a motion stream, each main token's output has its mean taken out
            whenever motion tokens are present, so only the motion tokens set how much ink each
            square holds in each frame -- where the digit is -- and the main tokens add the
            detail inside their squares. Clips shorter than ``mt`` (no motion tokens) keep the
            main stream whole.
    """

    channels: int = 1
    patch: tuple[int, int, int] = (1, 4, 4)
    dim: int = 128
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    layout: str = "full"
    position: str | None = "rope"
    qk_norm: bool = True
    causal: bool = False
    num_classes: int | None = 10
    context_dim: int | None = None
    max_grid: tuple[int, int, int] | None = None
    frames: int = 10
    image_size: int = 32
    rope_base: float = 10000.0
    label_std: float = 0.02
    long_skips: bool = False
    final_conv: bool = False
    size_conditioning: bool = False
    prediction: str = "v"
    noise_mix: float = 0.0
    motion_patch: tuple[int, int, int] | None = None
    motion_means: bool = False

    def __post_init__(self):
        _positive_ints(self, ("channels", "dim", "depth", "heads", "frames", "image_size"))
        if not (isinstance(self.patch, tuple) and len(self.patch) == 3 and all(_is_positive_int(p) for p in self.patch)):
            raise ValueError(f"VideoDiTConfig: patch must be a tuple (pt, ph, pw) of positive ints; got {self.patch!r}")
        if self.dim % self.heads:
            raise ValueError(f"VideoDiTConfig: heads={self.heads} must divide dim={self.dim}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"VideoDiTConfig: layout must be one of {LAYOUTS}; got {self.layout!r}")
        if self.position not in POSITIONS:
            raise ValueError(f"VideoDiTConfig: position must be one of {POSITIONS}; got {self.position!r}")
        if self.position and "rope" in self.position and (self.head_dim < 6 or self.head_dim % 2):
            raise ValueError(f"VideoDiTConfig: 3-D RoPE needs an even head width >= 6; got dim // heads = {self.head_dim}")
        if self.position and "sincos" in self.position and (self.dim < 6 or self.dim % 2):
            raise ValueError(f"VideoDiTConfig: the 3-D sin-cos table needs an even dim >= 6; got dim={self.dim}")
        if self.num_classes is not None and not _is_positive_int(self.num_classes):
            raise ValueError(f"VideoDiTConfig: num_classes must be None or a positive int; got {self.num_classes!r}")
        if self.context_dim is not None and not _is_positive_int(self.context_dim):
            raise ValueError(f"VideoDiTConfig: context_dim must be None or a positive int; got {self.context_dim!r}")
        if self.max_grid is not None and not (
            isinstance(self.max_grid, tuple) and len(self.max_grid) == 3 and all(_is_positive_int(g) for g in self.max_grid)
        ):
            raise ValueError(f"VideoDiTConfig: max_grid must be None or a tuple (t, h, w) of positive ints; got {self.max_grid!r}")
        if isinstance(self.rope_base, bool) or not isinstance(self.rope_base, (int, float)) or not self.rope_base > 1:
            raise ValueError(f"VideoDiTConfig: rope_base must be a number > 1 (the slowest RoPE wavelength); got {self.rope_base!r}")
        if isinstance(self.label_std, bool) or not isinstance(self.label_std, (int, float)) or not self.label_std > 0:
            raise ValueError(f"VideoDiTConfig: label_std must be a number > 0 (the label table's init std); got {self.label_std!r}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"VideoDiTConfig: mlp_ratio must be positive; got {self.mlp_ratio!r}")
        for name in ("long_skips", "final_conv", "size_conditioning"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"VideoDiTConfig: {name} must be True or False; got {getattr(self, name)!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"VideoDiTConfig: prediction must be one of {PREDICTIONS}; got {self.prediction!r}")
        if isinstance(self.noise_mix, bool) or not isinstance(self.noise_mix, (int, float)) or not (
            math.isfinite(self.noise_mix) and self.noise_mix >= 0
        ):
            raise ValueError(f"VideoDiTConfig: noise_mix must be a finite number >= 0 (0: independent frames); got {self.noise_mix!r}")
        if self.motion_patch is not None:
            if not (isinstance(self.motion_patch, tuple) and len(self.motion_patch) == 3 and all(_is_positive_int(p) for p in self.motion_patch)):
                raise ValueError(f"VideoDiTConfig: motion_patch must be None or a tuple (mt, mh, mw) of positive ints; got {self.motion_patch!r}")
            needs = [f"{what} (got {name}={getattr(self, name)!r})" for name, what, ok in (
                ("layout", 'layout="full"', self.layout == "full"),
                ("position", "RoPE in position", bool(self.position) and "rope" in self.position),
                ("causal", "causal=False", not self.causal),
            ) if not ok]
            if needs:
                raise ValueError("VideoDiTConfig: motion_patch needs " + ", ".join(needs))
        if not isinstance(self.motion_means, bool):
            raise ValueError(f"VideoDiTConfig: motion_means must be True or False; got {self.motion_means!r}")
        if self.motion_means and self.motion_patch is None:
            raise ValueError("VideoDiTConfig: motion_means=True leaves the squares' ink to the motion stream, and there is none (motion_patch=None)")
        if self.long_skips and self.depth < 2:
            raise ValueError(f"VideoDiTConfig: long_skips join block i to block depth - 1 - i and need depth >= 2; got depth={self.depth}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def patch_dim(self) -> int:
        """Numbers in one tubelet: ``pt * ph * pw * C`` (a token's input and output width)."""
        pt, ph, pw = self.patch
        return pt * ph * pw * self.channels

    @property
    def motion_patch_dim(self) -> int:
        """Numbers in one motion tubelet, ``mt * mh * mw * C`` (0 without a motion stream)."""
        return math.prod(self.motion_patch) * self.channels if self.motion_patch else 0

    def block_kinds(self) -> list[tuple[str, ...]]:
        """The attention branches of each block, in order, e.g. ``[("spatial", "temporal"), ...]``."""
        if self.layout == "full":
            return [("full",)] * self.depth
        if self.layout == "stdit":
            return [("spatial", "temporal")] * self.depth
        return [("spatial",) if i % 2 == 0 else ("temporal",) for i in range(self.depth)]


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_ints(config, names) -> None:
    for name in names:
        if not _is_positive_int(getattr(config, name)):
            raise ValueError(f"VideoDiTConfig: {name} must be a positive int; got {getattr(config, name)!r}")


# ---------------------------------------------------------------------------- patches


def token_grid(shape, patch) -> tuple[int, int, int]:
    """The token grid ``(t, h, w) = (T / pt, H / ph, W / pw)`` of a clip ``(..., T, C, H, W)``;
    a ``ValueError`` naming the numbers when a size is not divisible by its patch."""
    frames, _, height, width = shape[-4:]
    pt, ph, pw = patch
    bad = [f"{name}={size} is not a multiple of {p}" for name, size, p in (("T", frames, pt), ("H", height, ph), ("W", width, pw)) if size % p]
    if bad:
        raise ValueError(f"clip of shape {tuple(shape)} does not split into {pt}x{ph}x{pw} tubelets: " + "; ".join(bad))
    return frames // pt, height // ph, width // pw


def patchify(x: torch.Tensor, patch) -> torch.Tensor:
    """Cut clips into tubelets: ``(B, T, C, H, W)`` -> ``(B, t, h, w, pt*ph*pw*C)``.

    Token ``(i, j, k)`` holds frames ``i*pt .. i*pt+pt-1``, rows ``j*ph ..`` and columns
    ``k*pw ..``, flattened in the order (pt, ph, pw, C). Nothing is computed: it is a
    reshape, and :func:`unpatchify` undoes it exactly.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        raise ValueError(f"patchify expects clips of shape (B, T, C, H, W); got {getattr(x, 'shape', type(x).__name__)}")
    token_grid(x.shape, patch)
    pt, ph, pw = patch
    return rearrange(x, "b (t pt) c (h ph) (w pw) -> b t h w (pt ph pw c)", pt=pt, ph=ph, pw=pw)


def unpatchify(tokens: torch.Tensor, patch, channels: int) -> torch.Tensor:
    """The exact inverse of :func:`patchify`: ``(B, t, h, w, pt*ph*pw*C)`` -> ``(B, T, C, H, W)``."""
    pt, ph, pw = patch
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 5 or tokens.shape[-1] != pt * ph * pw * channels:
        raise ValueError(
            f"unpatchify expects tokens of shape (B, t, h, w, pt*ph*pw*C) = (B, t, h, w, {pt * ph * pw * channels}) "
            f"for patch {tuple(patch)} and C={channels}; got {getattr(tokens, 'shape', type(tokens).__name__)}"
        )
    return rearrange(tokens, "b t h w (pt ph pw c) -> b (t pt) c (h ph) (w pw)", pt=pt, ph=ph, pw=pw, c=channels)


# -------------------------------------------------------------------------- positions


def _grid_positions(grid, device) -> torch.Tensor:
    """``(t*h*w, 3)`` float (frame, row, column) index of every token, in (t, h, w) order."""
    axes = [torch.arange(n, device=device, dtype=torch.float32) for n in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def _rope_split(head_dim: int) -> tuple[int, int, int]:
    """Channels of a head given to (frame, row, column), each even -- the split of
    :func:`~vdmcourse.nn.embeddings.sincos_table_3d`: rows and columns ``2 * (d // 6)`` each."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_3d(x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0) -> torch.Tensor:
    """3-D rotary embedding: the last axis of ``x`` ``(..., L, d)`` is split in three even
    parts (:func:`_rope_split`), rotated by each token's frame, row and column
    (:func:`~vdmcourse.nn.embeddings.apply_rope` per axis, with its ``base``). ``positions``: ``(L, 3)``.

    The score of two rotated vectors depends only on the *offset* between their
    positions along each axis: attention sees relative spacetime, for any grid."""
    if positions.ndim != 2 or positions.shape != (x.shape[-2], 3):
        raise ValueError(f"rope_3d: positions must have shape (L, 3) = ({x.shape[-2]}, 3); got {tuple(positions.shape)}")
    parts = x.split(_rope_split(x.shape[-1]), dim=-1)
    return torch.cat([apply_rope(part, positions[:, i], base=base) for i, part in enumerate(parts)], dim=-1)


# -------------------------------------------------------------------- token layouts


@dataclass
class TokenLayout:
    """How the tokens of a forward pass are arranged, so attention can group them.

    ``grids``: the ``(t, h, w)`` of each clip. ``packed=False``: ``B`` clips of the same
    grid, tokens ``(B, t*h*w, D)``. ``packed=True``: the clips' tokens one after the
    other in a single sequence ``(1, sum(t*h*w), D)``; ``segments`` ``(L,)`` says which
    clip each token belongs to, and attention is masked to stay inside a clip
    (block-diagonal). ``positions`` ``(L, 3)``: each token's (frame, row, column) in
    its own clip, the frame times ``time_scale`` (1: token frames 0, 1, 2, ...; below 1:
    position interpolation, which the sin-cos table follows too).
    """

    grids: list[tuple[int, int, int]]
    packed: bool
    positions: torch.Tensor
    segments: torch.Tensor | None = None
    causal: bool = False
    time_scale: float = 1.0

    @classmethod
    def build(cls, grids, *, packed: bool, causal: bool, device, time_scale: float = 1.0) -> TokenLayout:
        time_scale = _check_position_scale(time_scale, "time_scale", "TokenLayout.build")
        positions = torch.cat([_grid_positions(g, device) for g in grids])  # (L, 3)
        if time_scale != 1.0:
            positions[:, 0] *= time_scale
        segments = None
        if packed:
            sizes = torch.tensor([math.prod(g) for g in grids], device=device)
            segments = torch.repeat_interleave(torch.arange(len(grids), device=device), sizes)  # (L,)
        return cls(list(grids), packed, positions, segments, causal, time_scale)

    @property
    def length(self) -> int:
        return self.positions.shape[0]

    def rope_tables(self, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`rope_3d` as one multiply-add, computed once per forward pass:
        ``rope_3d(x, base=base) == x * cos + x[..., swap] * sin`` with ``cos``, ``sin``
        ``(L, head_dim)`` and ``swap`` the permutation that exchanges the two halves of each
        axis' channels."""
        cached = self.__dict__.setdefault("_rope", {})
        if (head_dim, base) not in cached:
            cos, sin, swap, start = [], [], [], 0
            for axis, width in enumerate(_rope_split(head_dim)):
                half = width // 2
                freqs = base ** (-torch.arange(half, dtype=torch.float32, device=self.positions.device) / half)
                angles = self.positions[:, axis, None] * freqs  # (L, half), as apply_rope
                cos += [angles.cos(), angles.cos()]
                sin += [-angles.sin(), angles.sin()]
                swap += list(range(start + half, start + width)) + list(range(start, start + half))
                start += width
            cached[head_dim, base] = (torch.cat(cos, -1), torch.cat(sin, -1), torch.tensor(swap, device=self.positions.device))
        return cached[head_dim, base]

    def mask(self, kind: str) -> torch.Tensor | None:
        """Bool ``(L, L)`` (packed; True = may attend) or, for a bucket, the frame mask
        of the grouped sequences (``None`` when every token may see every other)."""
        if not self.packed:
            frames = self.grids[0][0]
            if not self.causal or kind == "spatial":
                return None
            mask = causal_mask(frames, device=self.positions.device)  # (t, t)
            if kind == "temporal":
                return mask
            h, w = self.grids[0][1:]
            return mask.repeat_interleave(h * w, 0).repeat_interleave(h * w, 1)  # (L, L)
        cached = self.__dict__.setdefault("_masks", {})
        if kind not in cached:
            seg, pos = self.segments, self.positions
            allowed = seg[:, None] == seg[None, :]  # block-diagonal: clips never see each other
            if kind == "spatial":
                allowed &= pos[:, None, 0] == pos[None, :, 0]
            elif kind == "temporal":
                allowed &= (pos[:, None, 1:] == pos[None, :, 1:]).all(-1)
            if self.causal:
                allowed &= pos[None, :, 0] <= pos[:, None, 0]
            cached[kind] = allowed
        return cached[kind]


def _group(x: torch.Tensor, kind: str, layout: TokenLayout) -> torch.Tensor:
    """``(B, heads, L, c)`` -> the sequences ``kind`` attends within (bucket only)."""
    if layout.packed or kind == "full":
        return x
    t, h, w = layout.grids[0]
    if kind == "spatial":
        return rearrange(x, "b n (t s) c -> (b t) n s c", t=t)  # each frame on its own
    return rearrange(x, "b n (t s) c -> (b s) n t c", t=t)  # each position across frames


def _ungroup(x: torch.Tensor, kind: str, layout: TokenLayout, batch: int) -> torch.Tensor:
    if layout.packed or kind == "full":
        return x
    if kind == "spatial":
        return rearrange(x, "(b t) n s c -> b n (t s) c", b=batch)
    return rearrange(x, "(b s) n t c -> b n (t s) c", b=batch)


# -------------------------------------------------------------------------- attention


class DiTAttention(nn.Module):
    """Multi-head self-attention over tokens ``(B, L, D)``, grouped by ``kind``:
    ``"full"`` (all tokens of a clip), ``"spatial"`` (the tokens of one frame),
    ``"temporal"`` (one position across frames). Optional QK-norm (RMSNorm per head)
    and 3-D RoPE, both applied per token *before* grouping."""

    def __init__(self, dim: int, heads: int, *, qk_norm: bool = False, rope: bool = False, rope_base: float = 10000.0):
        super().__init__()
        self.heads = heads
        self.rope = rope
        self.rope_base = rope_base
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(dim // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, kind: str, layout: TokenLayout) -> torch.Tensor:
        batch = x.shape[0]
        q, k, v = rearrange(self.qkv(x), "b l (three n c) -> three b n l c", three=3, n=self.heads)  # (B, heads, L, c) each
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope:
            cos, sin, swap = layout.rope_tables(q.shape[-1], self.rope_base)  # rope_3d, precomputed once per forward
            q, k = q * cos + q[..., swap] * sin, k * cos + k[..., swap] * sin
        q, k, v = (_group(z, kind, layout) for z in (q, k, v))
        out = attention(q, k, v, mask=layout.mask(kind))
        out = _ungroup(out, kind, layout, batch)  # (B, heads, L, c)
        return self.out(rearrange(out, "b n l c -> b l (n c)"))  # (B, L, D)


class CrossAttention(nn.Module):
    """Tokens ``(B, L, D)`` attend to caption tokens ``(B, M, context_dim)``; the output
    projection is zero-initialised, so the branch adds nothing until trained."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = rearrange(self.q(x), "b l (n c) -> b n l c", n=self.heads)
        k, v = rearrange(self.kv(context), "b m (two n c) -> two b n m c", two=2, n=self.heads)
        mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, M): True = a real token
        out = attention(q, k, v, mask=mask)  # (B, heads, L, c)
        return self.out(rearrange(out, "b n l c -> b l (n c)"))


# ------------------------------------------------------------------------------ block


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN's affine map ``x * (1 + scale) + shift``: with zero (shift, scale) it is ``x``."""
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """One adaLN-Zero transformer block (Peebles & Xie 2023), for video.

    For each branch -- the attentions in ``kinds`` (e.g. ``("full",)`` or
    ``("spatial", "temporal")``), then the MLP::

        x = x + gate * branch(modulate(LayerNorm(x), shift, scale))

    with a LayerNorm *without* affine parameters (eps 1e-6) and one (shift, scale,
    gate) per branch from ``SiLU -> Linear(cond_dim, 3 * branches * D)`` of the
    conditioning vector -- six vectors for the DiT block ``("full",)``. That Linear is
    zero-initialised (by :class:`VideoDiT`), so every gate starts at 0 and the block
    starts as the identity. With ``context_dim``, a cross-attention branch (pre-norm,
    zero-initialised output) sits before the MLP.

    ``forward(x, modulation, layout, context=None, context_mask=None)``: ``x`` ``(B, L, D)``;
    ``modulation`` the per-clip conditioning ``(B, cond_dim)`` (packed: one row per clip);
    returns ``(B, L, D)``.
    """

    def __init__(self, dim: int, heads: int, kinds: tuple[str, ...], *, cond_dim: int, mlp_ratio: float = 4.0,
                 qk_norm: bool = False, rope: bool = False, context_dim: int | None = None, rope_base: float = 10000.0):
        super().__init__()
        self.kinds = tuple(kinds)
        self.norm = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)  # no parameters: shared by every branch
        self.attentions = nn.ModuleList(DiTAttention(dim, heads, qk_norm=qk_norm, rope=rope, rope_base=rope_base) for _ in self.kinds)
        self.cross_norm = nn.LayerNorm(dim, eps=1e-6) if context_dim else None
        self.cross = CrossAttention(dim, heads, context_dim) if context_dim else None
        self.mlp = FeedForward(dim, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 3 * (len(self.kinds) + 1) * dim))

    def forward(self, x, cond, layout: TokenLayout, context=None, context_mask=None) -> torch.Tensor:
        params = _per_token(self.adaLN_modulation(cond), layout)  # (B, 1, 3kD) or packed (1, L, 3kD)
        params = params.chunk(3 * (len(self.kinds) + 1), dim=-1)
        for i, (kind, attend) in enumerate(zip(self.kinds, self.attentions)):
            shift, scale, gate = params[3 * i : 3 * i + 3]
            x = x + gate * attend(modulate(self.norm(x), shift, scale), kind, layout)
        if self.cross is not None and context is not None:
            x = x + self.cross(self.cross_norm(x), context, context_mask)
        shift, scale, gate = params[-3:]
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


def _per_token(params: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Per-clip vectors ``(B, P)`` -> broadcastable to the tokens: ``(B, 1, P)``, or for a
    packed sequence each token's own clip's row, ``(1, L, P)``. Per token frame ``(B, t, P)``
    (one clip size) -> each token its frame's row, ``(B, L, P)``; tokens beyond the grid
    (the motion stream's, which span every frame) take the mean over frames."""
    if params.ndim == 3:
        t, h, w = layout.grids[0]
        rows = params.repeat_interleave(h * w, dim=1)  # (B, t*h*w, P)
        extra = layout.length - rows.shape[1]
        return torch.cat([rows, params.mean(1, keepdim=True).expand(-1, extra, -1)], dim=1) if extra else rows
    return params[layout.segments][None] if layout.packed else params[:, None]


class FinalLayer(nn.Module):
    """LayerNorm (no affine) -> ``modulate`` by (shift, scale) from the condition ->
    Linear to a tubelet's ``pt*ph*pw*C`` numbers. Its modulation and output Linear are
    zero-initialised (DiT), so the model outputs exactly zero at init."""

    def __init__(self, dim: int, cond_dim: int, patch_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        shift, scale = _per_token(self.adaLN_modulation(cond), layout).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, L, patch_dim)


# ------------------------------------------------------------------------------ model


class SizeEmbedding(MicroConditioning):
    """A clip's ``(frames, height, width)`` ``(B, 3)`` -> ``(B, D)``, added to its conditioning
    vector: SDXL's size micro-conditioning, PixArt-alpha's resolution and aspect-ratio
    embedding. SVD's micro-conditioning MLP (a sinusoid per number, Linear -> SiLU -> Linear)
    on the raw sizes; its last Linear starts at zero, so a model with it equals the model
    without it until training moves it."""

    scales = (1.0, 1.0, 1.0)


class VideoDiT(nn.Module):
    """A diffusion transformer over spacetime patches.

    ``model(x, t, cond=None, context=None, context_mask=None)``:

    * ``x``: ``(B, T, C, H, W)`` -- noisy clips in ``[-1, 1]`` or noisy VAE latents;
      C = ``config.channels``; T, H, W multiples of ``config.patch`` (any such size runs).
    * ``t``: float ``(B,)`` in ``[0, 1]`` (1 = pure noise), or one time per frame ``(B, T)``
      (diffusion forcing, Chen et al. 2024: each token frame's blocks are modulated by its
      own time; equal within each ``pt``-frame tubelet; the motion stream takes the mean).
    * ``cond``: None (the null label), or long labels ``(B,)`` / ``(B, K)`` in
      ``[0, num_classes]`` (``num_classes`` is the null label; K labels are summed).
    * ``context``: caption tokens ``(B, M, context_dim)`` for a model built with
      ``context_dim`` (``context_mask`` bool ``(B, M)``, True = a real token).

    Returns ``(B, T, C, H, W)``: the prediction the objective asks for. Clips of
    different sizes in one call: :meth:`forward_packed`.
    """

    def __init__(self, config: VideoDiTConfig | None = None):
        super().__init__()
        config = config or VideoDiTConfig()
        if not isinstance(config, VideoDiTConfig):
            raise TypeError(f"VideoDiT expects a VideoDiTConfig; got {type(config).__name__}")
        self.config = config
        dim = config.dim
        self.patch_embed = nn.Linear(config.patch_dim, dim)  # = a Conv3d with stride = kernel = patch
        self.time_embed = TimestepEmbedding(dim)
        self.label_embed = LabelEmbedding(config.num_classes, dim) if config.num_classes else None
        self.size_embed = SizeEmbedding(dim) if config.size_conditioning else None
        rope = bool(config.position) and "rope" in config.position
        self.blocks = nn.ModuleList(
            DiTBlock(dim, config.heads, kinds, cond_dim=dim, mlp_ratio=config.mlp_ratio, qk_norm=config.qk_norm,
                     rope=rope, context_dim=config.context_dim, rope_base=config.rope_base)
            for kinds in config.block_kinds()
        )
        self.final = FinalLayer(dim, dim, config.patch_dim)
        # U-ViT (opt-in; built only when asked, so a plain DiT draws the weights it always drew).
        self.skip_fuse = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(config.depth // 2)) if config.long_skips else None
        self.out_conv = nn.Conv2d(config.channels, config.channels, 3, padding=1) if config.final_conv else None
        # The motion stream (opt-in, built last for the same reason).
        motion = config.motion_patch_dim
        self.motion_embed = nn.Linear(motion, dim) if motion else None
        self.motion_final = FinalLayer(dim, dim, motion) if motion else None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """All of the model's initialisation, in one place (as DiT's ``initialize_weights``)."""
        # Xavier-uniform for the transformer's Linears, zero biases (DiT's _basic_init);
        # the time embedding keeps its own std-0.02 init, the label table config.label_std's.
        if self.label_embed is not None:
            # LabelEmbedding drew its rows with std 0.02; rescaling (not redrawing) keeps the
            # random stream, so label_std=0.02 gives bit for bit the weights it always gave.
            with torch.no_grad():
                self.label_embed.table.weight.mul_(self.config.label_std / 0.02)
        for module in [self.patch_embed, *self.blocks.modules(), self.final.linear]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            # adaLN-Zero: shift, scale and gate start at 0, so every block is the identity.
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            if block.cross is not None:
                # A caption branch added later must not change a trained model at first.
                nn.init.zeros_(block.cross.out.weight)
                nn.init.zeros_(block.cross.out.bias)
        # A zero final layer: the untrained model predicts exactly 0.
        for layer in (self.final.adaLN_modulation[-1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        with torch.no_grad():
            for fuse in self.skip_fuse or ():
                # [I | 0]: the skip starts unheard and every block stays the identity at init.
                fuse.weight.zero_()
                fuse.weight[:, : self.config.dim] = torch.eye(self.config.dim)
                fuse.bias.zero_()
        if self.out_conv is not None:
            nn.init.zeros_(self.out_conv.weight)  # a zero residual: out = y + conv(y) = y at init
            nn.init.zeros_(self.out_conv.bias)
        if self.motion_embed is not None:  # embedded as the main tokens; its output layer zero as theirs
            nn.init.xavier_uniform_(self.motion_embed.weight)
            nn.init.zeros_(self.motion_embed.bias)
            for layer in (self.motion_final.adaLN_modulation[-1], self.motion_final.linear):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def embed(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The conditioning vectors: time + label embedding, one per clip ``(B, D)`` for ``t``
        ``(B,)``, or one per token frame ``(B, t, D)`` for ``t`` ``(B, t)`` (already one time per token frame)."""
        emb = self.time_embed(t.flatten()).reshape(*t.shape, -1)  # (B, D) or (B, t, D)
        if self.label_embed is None:
            if cond is not None:
                raise ValueError("VideoDiT: this model is unconditional (config.num_classes=None) but cond was given")
            return emb
        if cond is None:
            cond = torch.full((t.shape[0],), self.label_embed.null_label, dtype=torch.long, device=t.device)
        label = self.label_embed(cond)  # (B, D)
        return emb + (label[:, None] if t.ndim == 2 else label)

    def forward(self, x, t, cond=None, context=None, context_mask=None, *, time_scale: float = 1.0) -> torch.Tensor:
        """See the class docstring. ``time_scale``: a factor on the token frames' positions
        (sin-cos and RoPE alike; 1 = as trained). Below 1 it is *position interpolation*
        (Chen et al. 2023): clips longer than any trained sampled with their frames squeezed
        onto the positions training saw, ``time_scale = trained frames / asked frames``."""
        self._check_clips(x, t, cond, context)
        grid = self._grid(x.shape)
        tokens = rearrange(self.patch_embed(patchify(x, self.config.patch)), "b t h w d -> b (t h w) d")  # (B, L, D)
        layout = TokenLayout.build([grid], packed=False, causal=self.config.causal, device=x.device, time_scale=time_scale)
        motion = self._motion_tokens(x, time_scale)
        if motion is not None:  # the motion tokens after the main ones, with their own positions
            tokens = torch.cat([tokens, motion[0]], dim=1)  # (B, L + M, D)
            layout = dataclasses.replace(layout, positions=torch.cat([layout.positions, motion[1]]))
        tokens, cond_emb = self.run_blocks(tokens, self.embed(self._token_frame_times(t), cond), layout, context, context_mask)
        main = math.prod(grid)  # each output layer reads every token, its own stream's are kept
        out = self.final(tokens, cond_emb, layout)[:, :main]  # (B, L, patch_dim)
        if motion is not None and self.config.motion_means:  # the motion stream alone says where the ink is
            out = out - out.mean(-1, keepdim=True)
        out = rearrange(out, "b (t h w) p -> b t h w p", t=grid[0], h=grid[1], w=grid[2])
        video = unpatchify(out, self.config.patch, self.config.channels)  # (B, T, C, H, W)
        if motion is not None:
            video = video + self._motion_video(self.motion_final(tokens, cond_emb, layout)[:, main:], x.shape)
        return self.to_velocity(x, t, self.smooth(video))  # (B, T, C, H, W)

    def _token_frame_times(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` ``(B,)`` as is; per frame ``(B, T)`` -> one time per token frame ``(B, T / pt)``."""
        if t.ndim == 1:
            return t
        tubelets = rearrange(t, "b (n pt) -> b n pt", pt=self.config.patch[0])
        if not (tubelets == tubelets[..., :1]).all():
            raise ValueError(f"VideoDiT: per-frame times must be equal within each tubelet of pt={self.config.patch[0]} frames; got {t.tolist()}")
        return tubelets[..., 0]

    def _motion_tokens(self, x: torch.Tensor, time_scale: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The motion stream's tokens ``(B, M, D)`` and positions ``(M, 3)`` (each tubelet's
        centre in main-token units, so RoPE relates the two streams), or None (no stream, or
        a clip shorter than ``mt`` frames)."""
        motion = self.config.motion_patch
        if motion is None or x.shape[1] < motion[0]:
            return None
        padded = F.pad(x, (0, 0, 0, 0, 0, 0, 0, -x.shape[1] % motion[0]))  # zero frames at the end, to a multiple of mt
        tokens = rearrange(self.motion_embed(patchify(padded, motion)), "b t h w d -> b (t h w) d")
        main = torch.tensor(self.config.patch, dtype=torch.float32, device=x.device)
        long = torch.tensor(motion, dtype=torch.float32, device=x.device)
        positions = _grid_positions(token_grid(padded.shape, motion), x.device) * long / main + (long - main) / (2 * main)
        positions[:, 0] *= time_scale
        return tokens, positions

    def _motion_video(self, out: torch.Tensor, shape) -> torch.Tensor:
        """The motion stream's outputs ``(B, M, mt*mh*mw*C)`` as a clip of ``shape``'s
        ``(B, T, C, H, W)`` (the padding frames cut off)."""
        frames, _, height, width = shape[-4:]
        mt, mh, mw = self.config.motion_patch
        out = rearrange(out, "b (t h w) p -> b t h w p", h=height // mh, w=width // mw)
        return unpatchify(out, self.config.motion_patch, self.config.channels)[:, :frames]

    def to_velocity(self, x: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The network's output ``out`` as the flow velocity: itself (``prediction="v"``), or
        for ``prediction="x"`` (``out`` = the clean clip) ``(x - out) / max(t, X_PREDICTION_T_MIN)``.
        ``x``, ``out``: ``(B, T, C, H, W)`` (or one clip ``(T, C, H, W)`` with ``t`` ``()``)."""
        if self.config.prediction == "v":
            return out
        return (x - out) / t.clamp(min=X_PREDICTION_T_MIN).reshape(*t.shape, *[1] * (x.ndim - t.ndim))

    def smooth(self, video: torch.Tensor) -> torch.Tensor:
        """U-ViT's last layer (``config.final_conv``): ``video + conv3x3(video)`` on each frame
        of ``(B, T, C, H, W)``, same shape out; without it, ``video`` unchanged."""
        if self.out_conv is None:
            return video
        frames = rearrange(video, "b t c h w -> (b t) c h w")  # per frame: no frame mixing here
        return video + rearrange(self.out_conv(frames), "(b t) c h w -> b t c h w", b=video.shape[0])

    def forward_tokens(self, tokens, cond_emb, layout: TokenLayout, context=None, context_mask=None) -> torch.Tensor:
        """The transformer on embedded tokens: ``(B, L, D)`` + per-clip conditioning
        ``(clips, D)`` -> ``(B, L, pt*ph*pw*C)`` (:meth:`run_blocks`, then the final layer)."""
        tokens, cond_emb = self.run_blocks(tokens, cond_emb, layout, context, context_mask)
        return self.final(tokens, cond_emb, layout)

    def run_blocks(self, tokens, cond_emb, layout: TokenLayout, context=None, context_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The blocks on embedded tokens ``(B, L, D)``: returns them ``(B, L, D)`` with the
        conditioning ``(clips, D)`` the output layers take. Adds the sin-cos table (to the
        clips' grid tokens; tokens beyond them, the motion stream's, take none) and the size
        embedding if configured."""
        expected = layout.length
        if tokens.shape[1] != expected:
            sizes = " + ".join(f"{t}*{h}*{w}" for t, h, w in layout.grids)
            extra = expected - sum(math.prod(g) for g in layout.grids)
            sizes += f" (+ {extra} motion tokens)" if extra else ""
            raise ValueError(f"VideoDiT: the clips' token grids add up to {sizes} = {expected} tokens; got {tokens.shape[1]}")
        if self.config.position and "sincos" in self.config.position:
            table = torch.cat([sincos_table_3d(*g, self.config.dim, time_scale=layout.time_scale, device=tokens.device).reshape(-1, self.config.dim)
                               for g in layout.grids])
            tokens = tokens + F.pad(table, (0, 0, 0, expected - table.shape[0])).to(tokens.dtype)  # (B, L, D)
        if self.size_embed is not None:  # each clip's (frames, height, width) = its token grid times the patch
            sizes = torch.tensor([[g * p for g, p in zip(grid, self.config.patch)] for grid in layout.grids], device=tokens.device)
            size = self.size_embed(sizes)  # (clips, D)
            cond_emb = cond_emb + (size[:, None] if cond_emb.ndim == 3 else size)
        skips, first_out = [], self.config.depth - self.config.depth // 2  # U-ViT: blocks >= first_out take a skip
        for i, block in enumerate(self.blocks):
            if self.skip_fuse is not None and i >= first_out:
                tokens = self.skip_fuse[i - first_out](torch.cat([tokens, skips.pop()], dim=-1))
            tokens = block(tokens, cond_emb, layout, context, context_mask)
            if self.skip_fuse is not None and i < self.config.depth // 2:
                skips.append(tokens)
        return tokens, cond_emb

    def forward_packed(self, clips, t, cond=None, *, time_scale: float = 1.0) -> list[torch.Tensor]:
        """Clips of different sizes in ONE token sequence (NaViT, "Patch n' Pack").

        ``clips``: a list of ``(T_i, C, H_i, W_i)`` tensors; ``t`` ``(N,)``; ``cond`` None or
        ``(N,)`` / ``(N, K)``. Each clip's tokens keep their own positions and attend only
        within their clip (a block-diagonal mask), so each output equals what the clip
        gives alone, to float rounding. ``time_scale`` as in :meth:`forward`, for every clip.
        Returns the list of ``(T_i, C, H_i, W_i)`` outputs.
        """
        if not isinstance(clips, (list, tuple)) or not clips:
            raise ValueError(f"VideoDiT.forward_packed expects a non-empty list of (T, C, H, W) clips; got {type(clips).__name__}")
        for i, clip in enumerate(clips):
            if not isinstance(clip, torch.Tensor) or clip.ndim != 4 or clip.shape[1] != self.config.channels:
                raise ValueError(
                    f"VideoDiT.forward_packed: clip {i} must have shape (T, C, H, W) with C={self.config.channels}; "
                    f"got {getattr(clip, 'shape', type(clip).__name__)}"
                )
        if self.config.motion_patch is not None:
            raise ValueError("VideoDiT.forward_packed: packing is not built for a model with a motion stream "
                             f"(config.motion_patch={self.config.motion_patch}); call the model on one size at a time")
        self._check_conditioning(len(clips), t, cond, None)
        grids = [self._grid(clip.shape) for clip in clips]
        tokens = torch.cat([rearrange(patchify(c[None], self.config.patch), "1 t h w p -> (t h w) p") for c in clips])[None]
        layout = TokenLayout.build(grids, packed=True, causal=self.config.causal, device=tokens.device, time_scale=time_scale)
        out = self.forward_tokens(self.patch_embed(tokens), self.embed(t, cond), layout)[0]  # (L, patch_dim)
        pieces = out.split([math.prod(g) for g in grids])
        return [
            self.to_velocity(
                clip, time, self.smooth(unpatchify(rearrange(p, "(t h w) q -> 1 t h w q", t=g[0], h=g[1], w=g[2]), self.config.patch, self.config.channels))[0]
            )
            for clip, time, p, g in zip(clips, t, pieces, grids)
        ]

    def tokens_per_clip(self, frames: int, height: int, width: int) -> int:
        """Tokens of one ``frames x height x width`` clip (the sequence length attention sees,
        the motion stream's tokens included)."""
        shape = (frames, self.config.channels, height, width)
        motion = self.config.motion_patch
        extra = 0
        if motion is not None and frames >= motion[0]:
            extra = math.prod(token_grid((math.ceil(frames / motion[0]) * motion[0], *shape[1:]), motion))
        return math.prod(token_grid(shape, self.config.patch)) + extra

    # Guard rails.

    def _grid(self, shape) -> tuple[int, int, int]:
        grid = token_grid(shape, self.config.patch)
        limit = self.config.max_grid
        if limit is not None and any(g > m for g, m in zip(grid, limit)):
            raise ValueError(
                f"VideoDiT: a clip of shape {tuple(shape)} is a {grid[0]}x{grid[1]}x{grid[2]} token grid, beyond "
                f"config.max_grid = {limit[0]}x{limit[1]}x{limit[2]} (t x h x w)"
            )
        return grid

    def _check_clips(self, x, t, cond, context) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"VideoDiT expects x to be a torch.Tensor (B, T, C, H, W); got {type(x).__name__}")
        if x.ndim != 5 or x.shape[2] != self.config.channels:
            hint = " -- a batch of images? Add the frame axis: x[:, None]" if x.ndim == 4 else ""
            raise ValueError(f"VideoDiT expects x of shape (B, T, C, H, W) with C={self.config.channels}; got {tuple(x.shape)}{hint}")
        self._check_conditioning(x.shape[0], t, cond, context, frames=x.shape[1])

    def _check_conditioning(self, batch, t, cond, context, frames: int | None = None) -> None:
        per_frame = frames is not None and isinstance(t, torch.Tensor) and t.shape == (batch, frames)
        if not isinstance(t, torch.Tensor) or (t.shape != (batch,) and not per_frame):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            also = f" or one time per frame (B, T) = ({batch}, {frames})" if frames is not None else ""
            raise ValueError(f"VideoDiT expects t of shape (B,) = ({batch},), one time per clip{also}; got {got}")
        if cond is not None and (not isinstance(cond, torch.Tensor) or cond.ndim not in (1, 2) or cond.shape[0] != batch):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"VideoDiT expects cond of shape (B,) or (B, K) with B={batch}, or None; got {got}")
        if context is not None:
            if self.config.context_dim is None:
                raise ValueError("VideoDiT: this model has no caption branch (config.context_dim=None) but context was given")
            if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != self.config.context_dim:
                raise ValueError(
                    f"VideoDiT expects context of shape (B, M, context_dim) = ({batch}, M, {self.config.context_dim}); "
                    f"got {tuple(context.shape)}"
                )


# ---------------------------------------------------------------------------- buckets


def bucket_batch_sizes(sizes, patch, tokens_per_batch: int) -> dict[tuple[int, int, int], int]:
    """Open-Sora's buckets: one batch size per clip size ``(T, H, W)``, chosen so that
    every batch holds about ``tokens_per_batch`` tokens (at least one clip).

    ``patch``: the model's ``(pt, ph, pw)``. Returns ``{(T, H, W): batch_size}``.
    """
    if not _is_positive_int(tokens_per_batch):
        raise ValueError(f"bucket_batch_sizes: tokens_per_batch must be a positive int; got {tokens_per_batch!r}")
    out = {}
    for size in sizes:
        frames, height, width = size
        tokens = math.prod(token_grid((frames, 1, height, width), patch))
        out[tuple(size)] = max(1, round(tokens_per_batch / tokens))
    return out
