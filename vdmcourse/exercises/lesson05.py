"""Self-checks for lesson 05, the 3D U-Net.

* :func:`check_frame_norm` -- ``frame_group_norm(x, groups)``: GroupNorm of a video
  ``(B, T, C, H, W)`` with statistics per frame.
* :func:`check_unet_forward` -- ``unet_forward(x, parts)``: a two-level U-Net's
  forward pass with skip connections at the right resolutions.
* :func:`check_temporal_layer` -- ``make_temporal_layer(channels)``: the temporal
  layer inserted when inflating an image model, which must start as nothing.
* :func:`check_temporal_conv` -- ``temporal_conv(x, weight)``: a convolution over
  frames whose output frame t is centred on input frame t.

Each names the real mistakes: GroupNorm statistics taken across frames, a skip
concatenated at the wrong resolution, a temporal layer not zero-initialised, and
temporal padding that shifts frames.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check

__all__ = [
    "FRAMES_MIX_IN_NORM",
    "SKIP_WRONG_RESOLUTION",
    "SKIP_WRONG_ORDER",
    "NOT_ZERO_INIT",
    "NO_TIME_MIXING",
    "SHIFTED_FRAMES",
    "MISSING_ACTIVATION",
    "TinyUNetParts",
    "reference_frame_group_norm",
    "reference_unet_forward",
    "reference_temporal_conv",
    "check_frame_norm",
    "check_unet_forward",
    "check_temporal_layer",
    "check_temporal_conv",
]

FRAMES_MIX_IN_NORM = "GroupNorm statistics taken across frames"
SKIP_WRONG_RESOLUTION = "skip connection concatenated at the wrong resolution"
SKIP_WRONG_ORDER = "skips consumed in the wrong order"
NOT_ZERO_INIT = "temporal layer not zero-initialised"
NO_TIME_MIXING = "temporal layer does not look across frames"
SHIFTED_FRAMES = "temporal conv padding that shifts frames"
MISSING_ACTIVATION = "F.silu left out after the convs"


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_frame_group_norm(x: torch.Tensor, groups: int) -> torch.Tensor:
    """GroupNorm (no affine) of ``(B, T, C, H, W)`` with statistics over each frame's
    ``(C / groups, H, W)``; returns ``(B, T, C, H, W)``."""
    frames = rearrange(x, "b t c h w -> (b t) c h w")  # every frame is its own sample
    return rearrange(F.group_norm(frames, groups), "(b t) c h w -> b t c h w", b=x.shape[0])


@self_check(
    "GroupNorm per frame", reference="vdmcourse.nn.unet3d.ResBlock3D (its norms)",
    more="The likely slip is GroupNorm over (B, C, T, H, W), whose groups take statistics across frames. "
         "Fold the frames into the batch first: rearrange(x, 'b t c h w -> (b t) c h w'), "
         "F.group_norm(frames, groups), and back with '(b t) c h w -> b t c h w', b=B.",
)
def check_frame_norm(frame_group_norm):
    """``frame_group_norm(x, groups)``: x ``(B, T, C, H, W)`` -> normalised, same shape."""
    x = torch.randn(2, 4, 6, 5, 5, generator=_generator(), dtype=torch.float64)
    x = x * torch.linspace(0.5, 3, 4, dtype=torch.float64)[None, :, None, None, None]  # frames differ in scale
    out = frame_group_norm(x, 3)
    expect_shape(out, x.shape, "frame_group_norm(x, 3) for x (2, 4, 6, 5, 5)",
                 hint="Normalise, then put the frames back: the output has the input's shape.")
    changed = x.clone()
    changed[:, 2] = 10 * changed[:, 2] + 5  # frame 2 becomes much brighter
    others = [0, 1, 3]
    if not torch.allclose(frame_group_norm(changed, 3)[:, others].detach(), out[:, others].detach(), atol=1e-9):
        raise Wrong(
            "Brightening frame 2 changed the normalised values of frames 0, 1 and 3: the statistics are "
            "shared across frames, so frames leak into each other.",
            mistake=FRAMES_MIX_IN_NORM,
            hint="nn.GroupNorm on (B, C, T, H, W) averages over T too. Fold the frames into the batch first: "
                 "rearrange(x, 'b t c h w -> (b t) c h w'), normalise, and unfold.",
        )
    expect_close(out, reference_frame_group_norm(x, 3), "frame_group_norm(x, 3)", atol=1e-9, rtol=1e-7,
                 hint="Each group of C / groups channels of one frame should end with mean 0 and variance 1.")
    return "Every frame is normalised with its own statistics."


class TinyUNetParts(nn.Module):
    """The pieces of a two-level U-Net on ``(N, C, H, W)`` (frames folded into N).

    ``down[i]`` works at resolution ``H / 2**i``; ``downsample`` halves H and W;
    ``mid`` works at ``H / 4``; ``upsample`` doubles H and W; ``up[0]`` and ``up[1]``
    take the up-path features concatenated with the matching skip (channels
    ``2 * width``) at ``H / 2`` and ``H``: ``up[0]`` belongs to level 1, ``up[1]`` to level 0.
    ``calls`` records the spatial size each ``up`` conv was called with.
    """

    def __init__(self, channels: int = 1, width: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.down = nn.ModuleList([nn.Conv2d(width, width, 3, padding=1) for _ in range(2)])
        self.mid = nn.Conv2d(width, width, 3, padding=1)
        self.up = nn.ModuleList([nn.Conv2d(2 * width, width, 3, padding=1) for _ in range(2)])
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        self.calls: list[tuple[int, int]] = []
        for index, conv in enumerate(self.up):
            conv.register_forward_pre_hook(lambda module, inputs, i=index: self.calls.append((i, inputs[0].shape[-1])))

    def downsample(self, h: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(h, 2)

    def upsample(self, h: torch.Tensor) -> torch.Tensor:
        return F.interpolate(h, scale_factor=2.0, mode="nearest")


def reference_unet_forward(x: torch.Tensor, parts: TinyUNetParts, activation=F.silu) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, H, W)``: skips saved before each down-sampling and
    concatenated, last in first out, after the matching up-sampling."""
    h = parts.inp(x)
    skips = []
    for conv in parts.down:
        h = activation(conv(h))
        skips.append(h)  # at this level's resolution, before halving
        h = parts.downsample(h)
    h = activation(parts.mid(h))
    for conv in parts.up:
        h = parts.upsample(h)
        h = activation(conv(torch.cat([h, skips.pop()], dim=1)))
    return parts.out(h)


def _skip_crash(error: RuntimeError) -> Wrong | None:
    """Name the size mismatch a misplaced skip causes at the first up step (8x8 features)."""
    sizes = [int(size) for size in re.findall(r"size (\d+)", str(error))]
    if "Sizes of tensors must match" not in str(error) or 8 not in sizes:
        return None
    other = next((size for size in sizes if size != 8), None)
    if other == 4:
        return Wrong(
            "torch.cat failed at the first up step: a 4x4 skip met the 8x8 up-sampled features. The skip was "
            "saved after down-sampling, one level too low.",
            mistake=SKIP_WRONG_RESOLUTION,
            hint="Save the skip right after a level's conv, before parts.downsample.",
            more="for conv in parts.down: h = F.silu(conv(h)); skips.append(h); h = parts.downsample(h)",
        )
    if other == 16:
        return Wrong(
            "torch.cat failed at the first up step: the 16x16 skip of level 0 met the 8x8 features of level 1. "
            "The skips were taken first in, first out.",
            mistake=SKIP_WRONG_ORDER,
            hint="The decoder's first up step needs the last skip saved: skips.pop(), not skips.pop(0).",
        )
    return None


@self_check(
    "U-Net forward with skips", reference="vdmcourse.nn.unet3d.UNet3D.forward",
    more="The likely slips: skips saved after down-sampling (wrong resolution), popped first-in-first-out,"
         " or F.silu left out. Print h.shape at each step. Save each skip right after its down conv, "
         "before parts.downsample; after each parts.upsample, cat with skips.pop() on dim 1.",
)
def check_unet_forward(unet_forward):
    """``unet_forward(x, parts)`` with ``parts`` a :class:`TinyUNetParts`; x ``(N, 1, 16, 16)``."""
    parts = TinyUNetParts()
    x = torch.randn(3, 1, 16, 16, generator=_generator(1))
    with torch.no_grad():
        try:
            out = unet_forward(x, parts)
        except RuntimeError as error:
            named = _skip_crash(error)
            if named is None:
                raise
            raise named from None
        calls = list(parts.calls)
        parts.calls.clear()
        expected = reference_unet_forward(x, parts)
        reference_calls = list(parts.calls)
    expect_shape(out, x.shape, "unet_forward(x, parts) for x (3, 1, 16, 16)",
                 hint="End with parts.out at full resolution.")
    if [size for _, size in calls] != [size for _, size in reference_calls]:
        sizes = ", ".join(f"up[{i}] at {size}x{size}" for i, size in calls)
        raise Wrong(
            f"Your up-path convs ran as: {sizes}; they should run at 8x8 (level 1) then 16x16 (level 0). "
            "A skip saved after down-sampling is concatenated one level too low, and the full-resolution "
            "features never reach the output.",
            mistake=SKIP_WRONG_RESOLUTION,
            hint="Save the skip right after a level's conv, before parts.downsample; on the way up, "
                 "upsample first, then concatenate the skip of that same resolution.",
        )
    if [i for i, _ in calls] != [0, 1]:
        raise Wrong("The up convs ran in the wrong order.", hint="parts.up[0] is level 1 (8x8), parts.up[1] is level 0.")
    with torch.no_grad():
        parts.calls.clear()
        linear = reference_unet_forward(x, parts, activation=lambda h: h)
    if torch.allclose(out, linear, atol=1e-5):
        raise Wrong(
            "Your wiring matches the reference, but no F.silu was applied: without an activation the whole U-Net "
            "is one linear map, however deep.",
            mistake=MISSING_ACTIVATION,
            hint="Apply F.silu after each conv except parts.inp and parts.out.",
        )
    if not torch.allclose(out, expected, atol=1e-5):
        raise Wrong(
            "The sizes are right but the output differs from the reference: the skips may be concatenated "
            "in another order or from another level.",
            mistake=SKIP_WRONG_ORDER,
            hint="Skips are last in, first out: the decoder's first up step uses the last skip saved "
                 "(skips.pop()), and torch.cat([h, skip], dim=1) puts the up-path features first.",
        )
    return "Skips saved before each down-sampling, concatenated after the matching up-sampling."


@self_check(
    "zero-initialised temporal layer", reference="vdmcourse.nn.unet3d.TemporalConv",
    more="The likely slips are a layer that is not zero at init (so inflation changes the image model) or "
         "one that does not look across frames (kernel 1). Build nn.Conv1d(channels, channels, 3, "
         "padding=1), then nn.init.zeros_ on its weight and its bias.",
)
def check_temporal_layer(make_temporal_layer):
    """``make_temporal_layer(channels)`` -> a module mapping ``(N, C, T)`` to ``(N, C, T)``,
    added residually (``h + layer(h)``) when an image model is inflated."""
    channels, frames = 6, 5
    torch.manual_seed(0)
    layer = make_temporal_layer(channels)
    if not isinstance(layer, nn.Module):
        raise Wrong(f"make_temporal_layer(6) should return an nn.Module; got {type(layer).__name__}.")
    h = torch.randn(4, channels, frames, generator=_generator(2))
    with torch.no_grad():
        out = layer(h)
    expect_shape(out, h.shape, "make_temporal_layer(6)(h) for h (4, 6, 5)",
                 hint="Pad the time axis so that T frames come out: kernel 3, padding 1.")
    if out.abs().max() > 0:
        raise Wrong(
            f"At init your layer adds values up to {out.abs().max().item():.3g} to the features, so the "
            "inflated video model no longer equals the image model it was built from.",
            mistake=NOT_ZERO_INIT,
            hint="Zero the last weight and bias (nn.init.zeros_): the residual h + layer(h) is then "
                 "exactly h, and training moves away from the image model only as far as it helps.",
        )
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(generator=_generator(3))
        impulse = torch.zeros(1, channels, frames)
        impulse[:, :, 2] = 1.0
        response = layer(impulse) - layer(torch.zeros_like(impulse))  # the bias cancels
        reached = response.abs().sum(dim=1)[0] > 1e-9  # (T,): output frames that input frame 2 reaches
    if not reached.any():
        raise Wrong("Even with random weights your layer outputs zeros: it can never learn anything.",
                    hint="Zero the weights at init, but keep them trainable parameters.")
    if reached.sum() == 1 and reached[2]:
        raise Wrong(
            "With random weights, frame 2 of the output depends on frame 2 of the input only: "
            "the layer never looks across frames.",
            mistake=NO_TIME_MIXING,
            hint="A temporal layer needs a kernel over time larger than 1, e.g. nn.Conv1d(C, C, 3, padding=1).",
        )
    return "It adds nothing at init (the inflated model equals the image model) and can learn to mix frames."


def reference_temporal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Conv over frames at each pixel: x ``(B, T, C, H, W)``, weight ``(C_out, C, k)`` with
    odd k -> ``(B, T, C_out, H, W)``; output frame t sees frames ``t - k//2 .. t + k//2``."""
    height, width = x.shape[-2:]
    sequences = rearrange(x, "b t c h w -> (b h w) c t")  # one sequence of T frames per pixel
    out = F.conv1d(sequences, weight, padding=weight.shape[-1] // 2)  # (B*H*W, C_out, T)
    return rearrange(out, "(b h w) c t -> b t c h w", h=height, w=width)


@self_check(
    "temporal convolution", reference="vdmcourse.nn.unet3d.TemporalConv",
    more="The likely slips are padding that shifts the frames (pad on one side only) and sequences that "
         "are not one per pixel. Rearrange 'b t c h w -> (b h w) c t', F.conv1d(seq, weight, padding=1), "
         "and back with '(b h w) c t -> b t c h w', h=H, w=W.",
)
def check_temporal_conv(temporal_conv):
    """``temporal_conv(x, weight)``: x ``(B, T, C, H, W)``, weight ``(C_out, C, 3)`` -> ``(B, T, C_out, H, W)``."""
    g = _generator(4)
    x = torch.randn(2, 6, 3, 4, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    out = temporal_conv(x, weight)
    expect_shape(out, (2, 6, 2, 4, 5), "temporal_conv(x, weight) for x (2, 6, 3, 4, 5), weight (2, 3, 3)",
                 hint="Keep the T frames: pad k // 2 frames on each side.")
    impulse = torch.zeros(1, 7, 3, 1, 1, dtype=torch.float64)
    impulse[:, 3] = 1.0
    reached = temporal_conv(impulse, weight).detach().abs().sum(dim=(0, 2, 3, 4)) > 1e-12  # (T,)
    frames = [t for t in range(7) if reached[t]]
    if frames and frames != [2, 3, 4] and len(frames) == 3:
        raise Wrong(
            f"An impulse in frame 3 reaches output frames {frames}; a centred kernel of 3 reaches 2, 3 and 4. "
            "Your padding shifts every frame in time.",
            mistake=SHIFTED_FRAMES,
            hint="Pad k // 2 frames on both sides (padding=1 for k = 3). Padding k - 1 in front only is a causal "
                 "conv, a different layer; padding k - 1 on both sides and cropping the first T frames shifts them.",
        )
    expect_close(out, reference_temporal_conv(x, weight), "temporal_conv(x, weight)", atol=1e-9, rtol=1e-7,
                 hint="Rearrange to '(b h w) c t', F.conv1d(..., padding=k // 2), and back to 'b t c h w'.")
    return "Output frame t is centred on input frame t; pixels and clips never mix."
