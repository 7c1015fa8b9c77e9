"""Lesson 05 self-checks: the references pass; each planted bug fails, naming its mistake."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson05 as l05
from vdmcourse.nn.unet3d import TemporalConv
from vdmcourse.exercises.harness import WRONG as PLANTED_WRONG
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


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


# Issue 18: misdiagnoses and raw errors ------------------------------------------------------


def unet_variant(x, parts, *, activation=F.silu, save_after_down=False, fifo=False):
    h = parts.inp(x)
    skips = []
    for conv in parts.down:
        h = activation(conv(h))
        if save_after_down:
            h = parts.downsample(h)
            skips.append(h)
        else:
            skips.append(h)
            h = parts.downsample(h)
    h = activation(parts.mid(h))
    for conv in parts.up:
        h = parts.upsample(h)
        h = activation(conv(torch.cat([h, skips.pop(0) if fifo else skips.pop()], dim=1)))
    return parts.out(h)


def test_silu_forgotten_is_named_not_called_a_wrong_skip_order():
    result = expect_mistake(l05.check_unet_forward, lambda x, p: unet_variant(x, p, activation=lambda h: h),
                            l05.MISSING_ACTIVATION)
    assert "F.silu" in result.hint


def test_skips_saved_after_downsampling_are_named_not_a_raw_size_error():
    result = expect_mistake(l05.check_unet_forward, lambda x, p: unet_variant(x, p, save_after_down=True),
                            l05.SKIP_WRONG_RESOLUTION)
    assert "RuntimeError" not in result.message and "4x4" in result.message


def test_skips_taken_first_in_first_out_are_named_not_a_raw_size_error():
    result = expect_mistake(l05.check_unet_forward, lambda x, p: unet_variant(x, p, fifo=True), l05.SKIP_WRONG_ORDER)
    assert "pop(0)" in result.hint


def test_the_stronger_hint_appears_on_the_second_failed_attempt():
    late = lambda x, p: unet_variant(x, p, save_after_down=True)  # noqa: E731
    l05.check_unet_forward(l05.reference_unet_forward)  # a pass resets the count
    assert l05.check_unet_forward(late).more is None
    assert "skips.append(h)" in l05.check_unet_forward(late).more


# Issue 18: every check fails the stub's neighbours -------------------------------------------


PLANTED = [(l05.check_frame_norm, l05.reference_frame_group_norm), (l05.check_unet_forward, l05.reference_unet_forward),
           (l05.check_temporal_conv, l05.reference_temporal_conv)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == PLANTED_WRONG, f"{kind} should fail:\n{result}"
    assert result.message


class _Zeros(nn.Module):
    def forward(self, h):
        return torch.zeros_like(h)


def test_planted_temporal_layers_fail():
    planted = {
        "input unchanged": lambda channels: nn.Identity(),
        "zeros": lambda channels: _Zeros(),
        "right shape, wrong values": lambda channels: nn.Conv1d(channels, channels, 3, padding=1),
    }
    for kind, answer in planted.items():
        assert l05.check_temporal_layer(answer).status == PLANTED_WRONG, kind
