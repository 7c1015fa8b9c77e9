import pytest
import torch

from vdmcourse.data import velocities_from_positions
from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson00 as ex
from vdmcourse.exercises.harness import WRONG as PLANTED_WRONG
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


def stub(*args):
    raise NotImplementedError


# -- reflection at a wall ----------------------------------------------------------


def reflect(position, velocity, free_range):
    position = position + velocity
    hit = (position < 0) | (position > free_range)
    return position.clamp(0, free_range), torch.where(hit, -velocity, velocity)


def reflect_without_negating(position, velocity, free_range):
    return (position + velocity).clamp(0, free_range), velocity


def reflect_without_clamping(position, velocity, free_range):
    position = position + velocity
    return position, torch.where((position < 0) | (position > free_range), -velocity, velocity)


def reflect_flipping_both(position, velocity, free_range):
    position = position + velocity
    hit = ((position < 0) | (position > free_range)).any(-1, keepdim=True)
    return position.clamp(0, free_range), torch.where(hit, -velocity, velocity)


def reflect_mirroring(position, velocity, free_range):
    position = position + velocity
    hit = (position < 0) | (position > free_range)
    mirrored = torch.where(position < 0, -position, torch.where(position > free_range, 2 * free_range - position, position))
    return mirrored, torch.where(hit, -velocity, velocity)


def test_reflect_reference_passes_and_stub_is_not_attempted():
    expect_pass(ex.check_reflect, reflect)
    assert ex.check_reflect(stub).status == NOT_ATTEMPTED


def test_reflect_names_the_real_mistakes():
    expect_mistake(ex.check_reflect, reflect_without_negating, ex.VELOCITY_NOT_NEGATED)
    expect_mistake(ex.check_reflect, reflect_without_clamping, ex.POSITION_NOT_CLAMPED)
    expect_mistake(ex.check_reflect, reflect_flipping_both, ex.BOTH_COMPONENTS_FLIPPED)
    expect_mistake(ex.check_reflect, reflect_mirroring, ex.POSITION_MIRRORED)
    expect_mistake(ex.check_reflect, lambda p, v, r: p + v, None)


# -- combining digits ----------------------------------------------------------------


def combine(layers, mode):
    return layers.amax(1) if mode == "max" else layers.sum(1).clamp(0, 1)


def test_combine_reference_passes_and_stub_is_not_attempted():
    expect_pass(ex.check_combine, combine)
    assert ex.check_combine(stub).status == NOT_ATTEMPTED


def test_combine_names_the_real_mistakes():
    expect_mistake(ex.check_combine, lambda layers, mode: layers.amax(1) if mode == "max" else layers.sum(1), ex.SUM_NOT_CLIPPED)
    expect_mistake(ex.check_combine, lambda layers, mode: layers.mean(1), ex.MEAN_INSTEAD_OF_MAX)
    expect_mistake(ex.check_combine, lambda layers, mode: layers.amax(1) if mode == "max" else layers.mean(1), ex.MEAN_INSTEAD_OF_MAX)
    expect_mistake(ex.check_combine, lambda layers, mode: layers.amax(0), None)  # reduced over the batch


# -- velocity from positions ---------------------------------------------------------


def backward_difference(positions):
    velocity = torch.zeros_like(positions)
    velocity[:, 1:] = positions[:, 1:] - positions[:, :-1]
    return velocity


def forward_difference_from_t_plus_1(positions):
    steps = positions[:, 2:] - positions[:, 1:-1]
    return torch.cat([steps, steps[:, -1:], steps[:, -1:]], dim=1)


def test_velocities_reference_passes_and_stub_is_not_attempted():
    expect_pass(ex.check_velocities, velocities_from_positions)
    assert ex.check_velocities(stub).status == NOT_ATTEMPTED


def test_velocities_names_the_real_mistakes():
    expect_mistake(ex.check_velocities, lambda p: -velocities_from_positions(p), ex.SIGN_FLIPPED)
    expect_mistake(ex.check_velocities, backward_difference, ex.OFF_BY_ONE_FRAME)
    expect_mistake(ex.check_velocities, forward_difference_from_t_plus_1, ex.OFF_BY_ONE_FRAME)
    expect_mistake(ex.check_velocities, lambda p: p[:, 1:] - p[:, :-1], None)  # T - 1 frames only


def test_max_with_a_dim_gets_a_hint_about_values_and_amax():
    result = expect_mistake(ex.check_combine, lambda layers, mode: layers.max(1), None)
    assert "(values, indices)" in result.message and ".values" in result.hint and "amax" in result.hint


def test_messages_about_plural_tensors_read_as_english():
    result = ex.check_velocities(lambda p: velocities_from_positions(p) * 1.5)
    assert "differs" in result.message and "the velocity tensor differs" in result.message


# Issue 18: every check fails the stub's neighbours -------------------------------------------


PLANTED = [(ex.check_reflect, reflect), (ex.check_combine, combine), (ex.check_velocities, velocities_from_positions)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == PLANTED_WRONG, f"{kind} should fail:\n{result}"
    assert result.message
