"""Lesson 05 self-checks: the references pass; each planted bug fails, naming its mistake."""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson05 as l05
from vdmcourse.nn.unet3d import TemporalConv


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted():
    for check in (l05.check_frame_norm, l05.check_unet_forward, l05.check_temporal_layer, l05.check_temporal_conv):
        assert check(stub).status == NOT_ATTEMPTED


# GroupNorm per frame ------------------------------------------------------------------


def test_frame_norm_reference_and_nn_group_norm_on_folded_frames_pass():
    def with_module(x, groups):
        norm = nn.GroupNorm(groups, x.shape[2], affine=False).double()
        return rearrange(norm(rearrange(x, "b t c h w -> (b t) c h w")), "(b t) c h w -> b t c h w", b=x.shape[0])

    expect_pass(l05.check_frame_norm, l05.reference_frame_group_norm)
    expect_pass(l05.check_frame_norm, with_module)


def test_group_norm_over_the_whole_clip_is_named():
    def across_frames(x, groups):
        clip = rearrange(x, "b t c h w -> b c t h w")  # GroupNorm then averages over T too
        return rearrange(F.group_norm(clip, groups), "b c t h w -> b t c h w")

    expect_mistake(l05.check_frame_norm, across_frames, l05.FRAMES_MIX_IN_NORM)


def test_wrong_group_count_fails_without_a_named_mistake():
    expect_mistake(l05.check_frame_norm, lambda x, groups: l05.reference_frame_group_norm(x, 1), None)


# U-Net skips --------------------------------------------------------------------------


def test_unet_reference_passes():
    expect_pass(l05.check_unet_forward, l05.reference_unet_forward)


def test_skip_saved_after_downsampling_is_named():
    def late_skip(x, parts):
        h = parts.inp(x)
        skips = []
        for conv in parts.down:
            h = parts.downsample(F.silu(conv(h)))
            skips.append(h)  # already halved: one level too low
        h = F.silu(parts.mid(h))
        for conv in parts.up:
            h = F.silu(conv(torch.cat([h, skips.pop()], dim=1)))
            h = parts.upsample(h)
        return parts.out(h)

    expect_mistake(l05.check_unet_forward, late_skip, l05.SKIP_WRONG_RESOLUTION)


def test_skip_order_swapped_in_the_concatenation_is_named():
    def skip_first(x, parts):
        h = parts.inp(x)
        skips = []
        for conv in parts.down:
            h = F.silu(conv(h))
            skips.append(h)
            h = parts.downsample(h)
        h = F.silu(parts.mid(h))
        for conv in parts.up:
            h = parts.upsample(h)
            h = F.silu(conv(torch.cat([skips.pop(), h], dim=1)))
        return parts.out(h)

    expect_mistake(l05.check_unet_forward, skip_first, l05.SKIP_WRONG_ORDER)


# Zero-initialised temporal layer --------------------------------------------------------


def zero_conv(channels):
    conv = nn.Conv1d(channels, channels, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def test_zero_conv_and_package_temporal_conv_pass():
    expect_pass(l05.check_temporal_layer, zero_conv)
    expect_pass(l05.check_temporal_layer, lambda channels: TemporalConv(channels).conv)


def test_default_initialised_conv_is_named():
    expect_mistake(l05.check_temporal_layer, lambda channels: nn.Conv1d(channels, channels, 3, padding=1), l05.NOT_ZERO_INIT)


def test_kernel_of_one_frame_is_named():
    def pointwise(channels):
        conv = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        return conv

    expect_mistake(l05.check_temporal_layer, pointwise, l05.NO_TIME_MIXING)


# Temporal conv padding ------------------------------------------------------------------


def test_temporal_conv_reference_passes():
    expect_pass(l05.check_temporal_conv, l05.reference_temporal_conv)


def test_padding_in_front_only_is_named():
    def causal_padding(x, weight):
        height, width = x.shape[-2:]
        sequences = F.pad(rearrange(x, "b t c h w -> (b h w) c t"), (2, 0))  # k - 1 frames in front
        return rearrange(F.conv1d(sequences, weight), "(b h w) c t -> b t c h w", h=height, w=width)

    expect_mistake(l05.check_temporal_conv, causal_padding, l05.SHIFTED_FRAMES)


def test_padding_both_sides_then_cropping_the_start_is_named():
    def cropped(x, weight):
        height, width, frames = x.shape[-2], x.shape[-1], x.shape[1]
        sequences = rearrange(x, "b t c h w -> (b h w) c t")
        out = F.conv1d(sequences, weight, padding=2)[..., :frames]  # T + 2 frames, the first T kept
        return rearrange(out, "(b h w) c t -> b t c h w", h=height, w=width)

    expect_mistake(l05.check_temporal_conv, cropped, l05.SHIFTED_FRAMES)


def test_plain_reshape_that_mixes_pixels_fails():
    def reshaped(x, weight):
        b, t, c, h, w = x.shape
        out = F.conv1d(x.reshape(b * h * w, c, t), weight, padding=1)
        return out.reshape(b, t, -1, h, w)

    expect_mistake(l05.check_temporal_conv, reshaped, None)
