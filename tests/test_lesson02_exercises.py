"""Lesson 02 self-checks: the reference passes; each planted bug fails, naming its mistake."""

import pytest
import math

import torch
from einops import rearrange

from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson02 as l02
from vdmcourse.nn import causal_mask, naive_attention
from vdmcourse.exercises.harness import WRONG as PLANTED_WRONG
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


def attend(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def temporal(q, k, v, attend=attend):
    h, w = q.shape[2:4]
    tokens = [rearrange(z, "b t h w d -> (b h w) t d") for z in (q, k, v)]
    return rearrange(attend(*tokens), "(b h w) t d -> b t h w d", h=h, w=w)


def test_references_pass():
    expect_pass(l02.check_attention, attend)
    expect_pass(l02.check_attention, naive_attention)
    expect_pass(l02.check_temporal_attention, temporal)
    expect_pass(l02.check_causal_mask, causal_mask)


def test_stubs_are_not_attempted():
    def stub(*args):
        raise NotImplementedError

    for check in (l02.check_attention, l02.check_temporal_attention, l02.check_causal_mask):
        assert check(stub).status == NOT_ATTEMPTED


def test_softmax_over_the_queries_is_named():
    def bug(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2) @ v

    expect_mistake(l02.check_attention, bug, l02.WRONG_SOFTMAX_AXIS)


def test_missing_scale_is_named():
    def no_scale(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v

    def scale_by_d(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], dim=-1) @ v

    expect_mistake(l02.check_attention, no_scale, l02.MISSING_SCALE)
    expect_mistake(l02.check_attention, scale_by_d, l02.MISSING_SCALE)


def test_the_batch_first_trap_of_multihead_attention_is_named():
    def batch_first_trap(q, k, v):
        # nn.MultiheadAttention(batch_first=False) reads (B*H*W, T, D) as (sequence, batch, D):
        # it attends over B*H*W for each frame.
        h, w = q.shape[2:4]
        tokens = [rearrange(z, "b t h w d -> (b h w) t d").transpose(0, 1) for z in (q, k, v)]  # (T, BHW, D)
        return rearrange(attend(*tokens).transpose(0, 1), "(b h w) t d -> b t h w d", h=h, w=w)

    expect_mistake(l02.check_temporal_attention, batch_first_trap, l02.BATCH_AXIS)


def test_real_multihead_attention_without_batch_first_is_named():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(5, 1, bias=False).double()  # batch_first=False: the default

    def with_mha(q, k, v):
        h, w = q.shape[2:4]
        tokens = [rearrange(z, "b t h w d -> (b h w) t d") for z in (q, k, v)]
        out, _ = mha(*tokens)
        return rearrange(out, "(b h w) t d -> b t h w d", h=h, w=w)

    expect_mistake(l02.check_temporal_attention, with_mha, l02.BATCH_AXIS)


def test_wrong_rearrange_orders_are_named():
    def plain_reshape(q, k, v):
        b, t, h, w, d = q.shape
        tokens = [z.reshape(b * h * w, t, d) for z in (q, k, v)]  # t is not moved: frames and pixels mix
        return attend(*tokens).reshape(b, t, h, w, d)

    def channels_as_time(q, k, v):
        h, w = q.shape[2:4]
        tokens = [rearrange(z, "b t h w d -> (b h w) d t") for z in (q, k, v)]
        return rearrange(attend(*tokens), "(b h w) d t -> b t h w d", h=h, w=w)

    def back_in_another_order(q, k, v):
        h, w = q.shape[2:4]
        tokens = [rearrange(z, "b t h w d -> (b h w) t d") for z in (q, k, v)]
        return rearrange(attend(*tokens), "(b w h) t d -> b t h w d", h=h, w=w)

    for bug in (plain_reshape, channels_as_time, back_in_another_order):
        expect_mistake(l02.check_temporal_attention, bug, l02.WRONG_REARRANGE)


def test_attention_bugs_inside_temporal_attention_fail():
    def unscaled(q, k, v):
        return temporal(q, k, v, attend=lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v)

    expect_mistake(l02.check_temporal_attention, unscaled, None)


def test_causal_mask_bugs_are_named():
    expect_mistake(l02.check_causal_mask, lambda t: torch.ones(t, t, dtype=torch.bool).triu(), l02.CAUSAL_LEAK)
    expect_mistake(l02.check_causal_mask, lambda t: torch.ones(t, t, dtype=torch.bool), l02.CAUSAL_LEAK)
    expect_mistake(l02.check_causal_mask, lambda t: ~causal_mask(t), l02.INVERTED_MASK)
    expect_mistake(l02.check_causal_mask, lambda t: torch.ones(t, t, dtype=torch.bool).tril(-1), None)
    result = expect_mistake(l02.check_causal_mask, lambda t: torch.ones(t, t).tril(), None)
    assert "bool" in result.message


def test_attention_within_each_frame_is_named_as_space_not_time():
    def within_frame(q, k, v):
        b, t, h, w, d = q.shape
        tokens = [rearrange(z, "b t h w d -> (b t) (h w) d") for z in (q, k, v)]
        return rearrange(attend(*tokens), "(b t) (h w) d -> b t h w d", b=b, h=h)

    result = expect_mistake(l02.check_temporal_attention, within_frame, l02.SPACE_NOT_TIME)
    assert "(b h w) t d" in result.hint and "reshape" not in result.hint


# Issue 18: every check fails the stub's neighbours -------------------------------------------


PLANTED = [(l02.check_attention, attend), (l02.check_temporal_attention, temporal), (l02.check_causal_mask, causal_mask)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == PLANTED_WRONG, f"{kind} should fail:\n{result}"
    assert result.message
