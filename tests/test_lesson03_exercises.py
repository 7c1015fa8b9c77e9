"""Lesson 03 self-checks: the reference passes; each planted bug fails, naming its mistake."""

import pytest
import torch
import torch.nn.functional as F

from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson03 as l03
from vdmcourse.nn import causal_mask
from vdmcourse.exercises.harness import WRONG as PLANTED_WRONG
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


def block_forward(x, block, mask=None):
    x = x + block.spatial(block.norms[0](x))
    x = x + block.temporal(block.norms[1](x), mask=mask)
    return x + block.ffn(block.norms[2](x))


def causal_block_forward(x, block):
    return block_forward(x, block, mask=causal_mask(x.shape[1]))


def score_count(kind, frames, height, width):
    pixels = height * width
    spatial, temporal = frames * pixels**2, pixels * frames**2
    return {"full 3D": (frames * pixels) ** 2, "spatial": spatial, "temporal": temporal,
            "spatial + temporal": spatial + temporal}[kind]


def test_references_pass():
    expect_pass(l03.check_block, block_forward)
    expect_pass(l03.check_block, lambda x, block: block(x))
    expect_pass(l03.check_causal_block, causal_block_forward)
    expect_pass(l03.check_score_count, score_count)


def test_stubs_are_not_attempted():
    def stub(*args):
        raise NotImplementedError

    for check in (l03.check_block, l03.check_causal_block, l03.check_score_count):
        assert check(stub).status == NOT_ATTEMPTED


def test_missing_residuals_are_named():
    def no_residuals(x, block):
        x = block.spatial(block.norms[0](x))
        x = block.temporal(block.norms[1](x))
        return block.ffn(block.norms[2](x))

    def ffn_without_residual(x, block):
        x = x + block.spatial(block.norms[0](x))
        x = x + block.temporal(block.norms[1](x))
        return block.ffn(block.norms[2](x))

    for bug in (no_residuals, ffn_without_residual):
        expect_mistake(l03.check_block, bug, l03.MISSING_RESIDUAL)


def test_norm_placement_mistakes_are_named():
    def post_norm(x, block):
        for norm, branch in zip(block.norms, (block.spatial, block.temporal, block.ffn)):
            x = norm(x + branch(x))
        return x

    def normed_stream(x, block):
        for norm, branch in zip(block.norms, (block.spatial, block.temporal, block.ffn)):
            x = norm(x)
            x = x + branch(x)
        return x

    def no_norm(x, block):
        for branch in (block.spatial, block.temporal, block.ffn):
            x = x + branch(x)
        return x

    def one_post_norm(x, block):
        x = x + block.spatial(block.norms[0](x))
        x = block.norms[1](x + block.temporal(x))
        return x + block.ffn(block.norms[2](x))

    for bug in (post_norm, normed_stream, no_norm, one_post_norm):
        expect_mistake(l03.check_block, bug, l03.NORM_PLACEMENT)


def test_branch_order_is_named():
    def temporal_first(x, block):
        x = x + block.temporal(block.norms[0](x))
        x = x + block.spatial(block.norms[1](x))
        return x + block.ffn(block.norms[2](x))

    expect_mistake(l03.check_block, temporal_first, l03.BRANCH_ORDER)


def test_causal_leaks_are_named():
    expect_mistake(l03.check_causal_block, block_forward, l03.CAUSAL_LEAK)

    def future_mask(x, block):
        return block_forward(x, block, mask=causal_mask(x.shape[1]).T)

    expect_mistake(l03.check_causal_block, future_mask, l03.CAUSAL_LEAK)


def test_a_norm_over_the_frames_is_named():
    def clip_norm(x, block):
        # Normalising over (T, H, W, D) together: the statistics include future frames.
        x = F.layer_norm(x, x.shape[1:])
        return causal_block_forward(x, block)

    expect_mistake(l03.check_causal_block, clip_norm, l03.NORM_MIXES_FRAMES)


def test_a_too_strict_mask_is_causal_but_wrong():
    def each_frame_alone(x, block):
        return block_forward(x, block, mask=torch.eye(x.shape[1], dtype=torch.bool))

    expect_mistake(l03.check_causal_block, each_frame_alone, None)


def test_cost_formula_mistakes_are_named():
    def linear(kind, frames, height, width):
        return frames * height * width if kind == "full 3D" else score_count(kind, frames, height, width)

    def one_sequence(kind, frames, height, width):
        return {"spatial": (height * width) ** 2, "temporal": frames**2}.get(kind) or score_count(kind, frames, height, width)

    def swapped(kind, frames, height, width):
        other = {"spatial": "temporal", "temporal": "spatial"}.get(kind, kind)
        return score_count(other, frames, height, width)

    expect_mistake(l03.check_score_count, linear, l03.NOT_QUADRATIC)
    expect_mistake(l03.check_score_count, one_sequence, l03.ONE_SEQUENCE)
    expect_mistake(l03.check_score_count, swapped, l03.SWAPPED_AXES)
    expect_mistake(l03.check_score_count, lambda kind, t, h, w: score_count(kind, t, h, w) + 1, None)


def test_every_other_branch_order_is_named():
    def ordered(order, own_norm):
        def forward(x, block):
            branches = (block.spatial, block.temporal, block.ffn)
            for position, index in enumerate(order):
                x = x + branches[index](block.norms[index if own_norm else position](x))
            return x
        return forward

    for order in [(1, 0, 2), (2, 0, 1), (0, 2, 1), (2, 1, 0)]:
        for own_norm in (True, False):
            result = expect_mistake(l03.check_block, ordered(order, own_norm), l03.BRANCH_ORDER)
            assert "->" in result.message
    expect_pass(l03.check_block, ordered((0, 1, 2), True))


# Issue 18: every check fails the stub's neighbours -------------------------------------------


PLANTED = [(l03.check_block, block_forward), (l03.check_causal_block, causal_block_forward),
           (l03.check_score_count, score_count)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == PLANTED_WRONG, f"{kind} should fail:\n{result}"
    assert result.message
