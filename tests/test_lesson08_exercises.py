"""Lesson 08 self-checks: the reference passes; each planted bug fails, naming its mistake."""

import pytest
import math

import torch

from vdmcourse.diffusion import classifier_free_guidance, linear_schedule, sample
from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson08 as l08
from vdmcourse.exercises.harness import WRONG as PLANTED_WRONG
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


def ddim_step(x_t, eps, ab_t, ab_s):
    x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    return math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps


def euler_step(x_t, u, t, s):
    return x_t + (s - t) * u


def heun_step(velocity, x_t, t, s):
    d1 = velocity(x_t, t)
    d2 = velocity(x_t + (s - t) * d1, s)
    return x_t + (s - t) * (d1 + d2) / 2


def test_references_pass():
    expect_pass(l08.check_ddim_step, ddim_step)
    expect_pass(l08.check_euler_step, euler_step)
    expect_pass(l08.check_heun_step, heun_step)
    expect_pass(l08.check_cfg, classifier_free_guidance)


def test_reference_steps_are_one_step_of_the_package_samplers():
    x = torch.randn(3, 2)

    def model(x, t, cond=None):
        return torch.sin(x) + t[:, None]

    first = model(x, torch.ones(3))
    euler = sample(model, (3, 2), sampler="euler", steps=1, noise=x, progress=False)
    torch.testing.assert_close(euler, euler_step(x, first, 1.0, 0.0))
    states = []
    sample(model, (3, 2), objective="eps", schedule="linear", sampler="ddim", steps=2, noise=x, progress=False,
           callback=lambda step, x_s, x0: states.append(x_s))
    ab_t, ab_s = linear_schedule().alpha_bar(torch.tensor([1.0, 0.5], dtype=torch.float64)).tolist()
    torch.testing.assert_close(states[0], ddim_step(x, first, ab_t, ab_s), rtol=1e-4, atol=1e-4)


def test_stubs_are_not_attempted():
    def stub(*args):
        raise NotImplementedError

    for check in (l08.check_ddim_step, l08.check_euler_step, l08.check_heun_step, l08.check_cfg):
        assert check(stub).status == NOT_ATTEMPTED


def test_fresh_noise_in_ddim_is_named():
    def bug(x_t, eps, ab_t, ab_s):
        x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        return math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * torch.randn_like(x_t)

    expect_mistake(l08.check_ddim_step, bug, l08.FRESH_NOISE)


def test_missing_sqrt_in_ddim_is_named():
    def bug(x_t, eps, ab_t, ab_s):
        x0 = (x_t - (1 - ab_t) * eps) / ab_t
        return ab_s * x0 + (1 - ab_s) * eps

    expect_mistake(l08.check_ddim_step, bug, l08.MISSING_SQRT)


def test_swapped_times_in_ddim_are_named():
    expect_mistake(l08.check_ddim_step, lambda x, e, ab_t, ab_s: ddim_step(x, e, ab_s, ab_t), l08.TIMES_SWAPPED)


def test_wrong_sign_of_dt_is_named():
    expect_mistake(l08.check_euler_step, lambda x, u, t, s: x + (t - s) * u, l08.DT_SIGN)
    expect_mistake(l08.check_heun_step, lambda v, x, t, s: x + (t - s) * (v(x, t) + v(x + (t - s) * v(x, t), s)) / 2,
                   l08.DT_SIGN)


def test_heun_slope_mistakes_are_named():
    def start_twice(v, x, t, s):
        d1 = v(x, t)
        return x + (s - t) * (d1 + d1) / 2

    def end_only(v, x, t, s):
        return x + (s - t) * v(x + (s - t) * v(x, t), s)

    expect_mistake(l08.check_heun_step, start_twice, l08.START_SLOPE_TWICE)
    expect_mistake(l08.check_heun_step, end_only, l08.END_SLOPE_ONLY)


def test_guidance_mistakes_are_named():
    expect_mistake(l08.check_cfg, lambda c, u, w: c + w * (c - u), l08.SCALE_OFF_BY_ONE)
    expect_mistake(l08.check_cfg, lambda c, u, w: c + w * (u - c), l08.COND_UNCOND_SWAPPED)

    def three_of_four(c, u, w):  # public DiT: guide channels [:3], keep the rest conditional
        return torch.cat([u[:, :, :3] + w * (c[:, :, :3] - u[:, :, :3]), c[:, :, 3:]], dim=2)

    expect_mistake(l08.check_cfg, three_of_four, l08.PARTIAL_CHANNELS)


# Issue 18: every check fails the stub's neighbours -------------------------------------------


PLANTED = [(l08.check_ddim_step, ddim_step), (l08.check_euler_step, euler_step), (l08.check_heun_step, heun_step),
           (l08.check_cfg, classifier_free_guidance)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == PLANTED_WRONG, f"{kind} should fail:\n{result}"
    assert result.message


def test_reference_ddim_step_passes_and_is_an_euler_step_on_the_flow_path():
    """Lesson 08 goes on with the learner's ddim_step to show that a DDIM step is an Euler step."""
    expect_pass(l08.check_ddim_step, l08.reference_ddim_step)
    x, velocity, t, s = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64), 0.75, 0.5
    scale = lambda u: ((1 - u) ** 2 + u ** 2) ** 0.5  # noqa: E731  the flow point x is the DDPM-path point x / scale(t)
    alpha_bar = lambda u: ((1 - u) / scale(u)) ** 2  # noqa: E731
    eps_hat = x + (1 - t) * velocity
    x_s = l08.reference_ddim_step(x / scale(t), eps_hat, alpha_bar(t), alpha_bar(s)) * scale(s)
    torch.testing.assert_close(x_s, l08.reference_euler_step(x, velocity, t, s))
