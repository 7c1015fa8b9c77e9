"""Lesson 09 self-checks: the references and the package pass; each planted bug fails, naming its mistake."""

import math

import pytest
import torch

from vdmcourse.data.captions import direction_index
from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson09 as l09
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers
from vdmcourse.text_conditioning import drop_conditions


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted():
    for check in (l09.check_direction, l09.check_cross_attention, l09.check_guided, l09.check_drop_conditions):
        assert check(stub).status == NOT_ATTEMPTED


PLANTED = [(l09.check_direction, l09.reference_direction), (l09.check_cross_attention, l09.reference_cross_attention),
           (l09.check_guided, l09.reference_guided)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=["direction", "cross_attention", "guided"])
def test_planted_answers_fail(check, reference, kind):
    assert not check(planted_answers(reference)[kind]).passed


# directions ----------------------------------------------------------------------------------


def test_direction_reference_and_package_pass():
    expect_pass(l09.check_direction, l09.reference_direction)
    expect_pass(l09.check_direction, direction_index)


def test_y_flipped_is_named():
    flipped = lambda v: torch.round(torch.atan2(-v[:, 0], v[:, 1]) / (math.pi / 4)).long() % 8  # noqa: E731
    result = expect_mistake(l09.check_direction, flipped, l09.Y_FLIPPED)
    assert "'up'" in result.message


def test_rows_and_columns_swapped_fail_without_the_y_name():
    swapped = lambda v: torch.round(torch.atan2(v[:, 1], v[:, 0]) / (math.pi / 4)).long() % 8  # noqa: E731
    expect_mistake(l09.check_direction, swapped, None)


# cross-attention -----------------------------------------------------------------------------


def test_cross_attention_reference_passes():
    expect_pass(l09.check_cross_attention, l09.reference_cross_attention)


def test_queries_from_the_text_are_named():
    def swapped(x, context, mask, wq, wk, wv):
        q, k, v = context @ wq, x @ wk, x @ wv
        return (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).softmax(-1) @ v

    expect_mistake(l09.check_cross_attention, swapped, l09.ROLES_SWAPPED)


def test_mask_not_applied_and_inverted_are_named():
    def unmasked(x, context, mask, wq, wk, wv):
        return l09.reference_cross_attention(x, context, torch.ones_like(mask), wq, wk, wv)

    def inverted(x, context, mask, wq, wk, wv):
        return l09.reference_cross_attention(x, context, ~mask, wq, wk, wv)

    expect_mistake(l09.check_cross_attention, unmasked, l09.MASK_NOT_APPLIED)
    expect_mistake(l09.check_cross_attention, inverted, l09.MASK_INVERTED)


def test_cross_attention_without_scaling_fails_unnamed():
    def unscaled(x, context, mask, wq, wk, wv):
        q, k, v = x @ wq, context @ wk, context @ wv
        scores = (q @ k.transpose(1, 2)).masked_fill(~mask[:, None, :], float("-inf"))
        return scores.softmax(-1) @ v * 1.5

    expect_mistake(l09.check_cross_attention, unscaled, None)


# guidance ------------------------------------------------------------------------------------


def test_guided_reference_passes():
    expect_pass(l09.check_guided, l09.reference_guided)


def test_the_caption_itself_as_unconditional_is_named():
    def same_caption(model, x, t, ids, ids_mask, scale):
        cond = model(x, t, ids, ids_mask)
        uncond = model(x, t, ids, ids_mask)
        return uncond + scale * (cond - uncond)

    expect_mistake(l09.check_guided, same_caption, l09.NULL_CAPTION_NOT_USED)


def test_all_padding_as_unconditional_is_named():
    def all_padding(model, x, t, ids, ids_mask, scale):
        cond = model(x, t, ids, ids_mask)
        uncond = model(x, t, torch.zeros_like(ids), torch.zeros_like(ids_mask))
        return uncond + scale * (cond - uncond)

    expect_mistake(l09.check_guided, all_padding, l09.NULL_CAPTION_NOT_USED)


def test_guidance_the_wrong_way_round_fails_unnamed():
    def backwards(model, x, t, ids, ids_mask, scale):
        return l09.reference_guided(model, x, t, ids, ids_mask, -scale)

    expect_mistake(l09.check_guided, backwards, None)


# dropout -------------------------------------------------------------------------------------


def test_drop_reference_and_package_pass():
    expect_pass(l09.check_drop_conditions, l09.reference_drop_conditions)
    expect_pass(l09.check_drop_conditions, lambda batch, p, generator: drop_conditions(batch, p, generator=generator))


def test_whole_batch_dropout_is_named():
    def whole_batch(batch, probabilities, generator):
        return {name: (torch.rand(1, generator=generator) < p).expand(batch) for name, p in probabilities.items()}

    expect_mistake(l09.check_drop_conditions, whole_batch, l09.WHOLE_BATCH_DROPPED)


def test_modalities_dropped_together_are_named():
    def tied(batch, probabilities, generator):
        draw = torch.rand(batch, generator=generator)
        return {name: draw < p for name, p in probabilities.items()}

    expect_mistake(l09.check_drop_conditions, tied, l09.MODALITIES_TIED)


def test_dropping_kept_clips_fails_unnamed():
    def inverted(batch, probabilities, generator):
        return {name: torch.rand(batch, generator=generator) >= p * 0.5 for name, p in probabilities.items()}

    expect_mistake(l09.check_drop_conditions, inverted, None)


# the stub's neighbours for the dict-returning drop (planted_answers covers tensors and tuples) -------


def _drop_all(batch, probabilities, generator):
    return {name: torch.ones(batch, dtype=torch.bool) for name in probabilities}


def _drop_none(batch, probabilities, generator):
    return {name: torch.zeros(batch, dtype=torch.bool) for name in probabilities}


@pytest.mark.parametrize("answer", [lambda b, p, g: b, _drop_none, _drop_all,
                                    lambda b, p, g: {n: torch.rand(b, generator=g) for n in p}], ids=["input", "none", "all", "floats"])
def test_drop_neighbours_of_the_stub_fail(answer):
    assert l09.check_drop_conditions(answer).status == "wrong"


def test_drop_ignoring_the_generator_is_named():
    expect_mistake(l09.check_drop_conditions,
                   lambda b, p, g: {n: torch.rand(b) < q for n, q in p.items()}, l09.GENERATOR_IGNORED)
    expect_mistake(l09.check_drop_conditions,
                   lambda b, p, g: reference_drop_fixed(b, p), l09.GENERATOR_IGNORED)


def reference_drop_fixed(batch, probabilities):
    return l09.reference_drop_conditions(batch, probabilities, torch.Generator().manual_seed(7))
