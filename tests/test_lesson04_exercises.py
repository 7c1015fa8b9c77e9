"""Lesson 04 self-checks: the reference passes; each planted bug fails, naming its mistake."""

import pytest
import torch
import torch.nn.functional as F

from vdmcourse.diffusion import FlowSchedule, cosine_schedule, predict_x0_eps, training_loss
from vdmcourse.exercises import NOT_ATTEMPTED, WRONG, expect_mistake, expect_pass
from vdmcourse.exercises import lesson04 as l04
from vdmcourse.exercises.harness import WRONG as PLANTED_WRONG
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


def clip_shaped(t, x):
    return t.view(-1, *([1] * (x.ndim - 1)))


def test_references_pass():
    expect_pass(l04.check_add_noise, lambda x0, t, eps: FlowSchedule().q_sample(x0, t, eps))
    expect_pass(l04.check_eps_to_x0, eps_to_x0)
    expect_pass(l04.check_velocity_to_x0, lambda u, x_t, t: predict_x0_eps(u, x_t, t, objective="flow")[0])
    expect_pass(l04.check_flow_loss, lambda model, x0, g: training_loss(model, x0, objective="flow", generator=g))


def eps_to_x0(eps, x_t, alpha_bar):
    ab = clip_shaped(alpha_bar, x_t)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def test_eps_to_x0_answer_agrees_with_the_package():
    schedule, t = cosine_schedule(), torch.tensor([0.2, 0.5, 0.9])
    x_t, eps = torch.randn(3, 2, 1, 4, 4), torch.randn(3, 2, 1, 4, 4)
    want, _ = predict_x0_eps(eps, x_t, t, objective="eps", schedule=schedule)
    torch.testing.assert_close(eps_to_x0(eps, x_t, schedule.alpha_bar(t)), want)


def test_stubs_are_not_attempted():
    def stub(*args):
        raise NotImplementedError

    for check in (l04.check_add_noise, l04.check_eps_to_x0, l04.check_velocity_to_x0, l04.check_flow_loss):
        assert check(stub).status == NOT_ATTEMPTED


def test_time_on_the_frame_axis_is_named():
    def bug(x0, t, eps):
        t = t.view(-1, 1, 1, 1)  # 4-D view of a (B,) tensor: lands on the frame axis of a clip
        return (1 - t) * x0 + t * eps

    expect_mistake(l04.check_add_noise, bug, l04.PER_FRAME_T)


def test_reversed_time_is_named():
    expect_mistake(l04.check_add_noise, lambda x0, t, eps: clip_shaped(t, x0) * x0 + (1 - clip_shaped(t, x0)) * eps,
                   l04.TIME_REVERSED)


def test_missing_square_root_is_named():
    def bug(eps, x_t, ab):
        ab = clip_shaped(ab, x_t)
        return (x_t - (1 - ab) * eps) / ab

    expect_mistake(l04.check_eps_to_x0, bug, l04.MISSING_SQRT)


def test_alpha_bar_per_frame_is_named():
    def bug(eps, x_t, ab):
        ab = ab.view(-1, 1, 1, 1)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    expect_mistake(l04.check_eps_to_x0, bug, l04.PER_FRAME_T)


def test_flipped_velocity_is_named():
    expect_mistake(l04.check_velocity_to_x0, lambda u, x_t, t: x_t + clip_shaped(t, x_t) * u, l04.FLOW_SIGN)


def test_velocity_with_time_on_frames_is_named():
    expect_mistake(l04.check_velocity_to_x0, lambda u, x_t, t: x_t - t.view(-1, 1, 1, 1) * u, l04.PER_FRAME_T)


def flow_loss(model, x0, g, *, sign=1, scale=1.0, per_frame=False, target="flow", reverse=False, integer=False):
    b, frames = x0.shape[:2]
    t = torch.rand(b, frames, generator=g) if per_frame else torch.rand(b, generator=g)
    eps = torch.randn(x0.shape, generator=g)
    tb = t.view(b, -1, 1, 1, 1)
    x_t = tb * x0 + (1 - tb) * eps if reverse else (1 - tb) * x0 + tb * eps
    t_model = (t * 1000).long() if integer else t * scale
    out = model(x_t, t_model)
    goal = {"flow": sign * (eps - x0), "eps": eps}[target]
    return F.mse_loss(out, goal)


def test_my_reference_style_loss_passes():
    expect_pass(l04.check_flow_loss, flow_loss)


def test_flipped_flow_target_is_named():
    expect_mistake(l04.check_flow_loss, lambda m, x0, g: flow_loss(m, x0, g, sign=-1), l04.FLOW_SIGN)


def test_ddpm_timestep_scale_is_named():
    expect_mistake(l04.check_flow_loss, lambda m, x0, g: flow_loss(m, x0, g, scale=1000.0), l04.TIME_SCALE)
    expect_mistake(l04.check_flow_loss, lambda m, x0, g: flow_loss(m, x0, g, integer=True), l04.TIME_SCALE)


def test_per_frame_noise_is_named():
    expect_mistake(l04.check_flow_loss, lambda m, x0, g: flow_loss(m, x0, g, per_frame=True), l04.PER_FRAME_T)

    def per_frame_noise_but_clip_time(model, x0, g):
        b, frames = x0.shape[:2]
        t = torch.rand(b, frames, generator=g)
        eps = torch.randn(x0.shape, generator=g)
        x_t = (1 - t[..., None, None, None]) * x0 + t[..., None, None, None] * eps
        return F.mse_loss(model(x_t, t[:, 0]), eps - x0)

    expect_mistake(l04.check_flow_loss, per_frame_noise_but_clip_time, l04.PER_FRAME_T)


def test_reversed_time_in_the_loss_is_named():
    expect_mistake(l04.check_flow_loss, lambda m, x0, g: flow_loss(m, x0, g, reverse=True), l04.TIME_REVERSED)


def test_noise_target_is_named():
    expect_mistake(l04.check_flow_loss, lambda m, x0, g: flow_loss(m, x0, g, target="eps"), l04.NOISE_TARGET)


def test_a_loss_that_is_not_a_scalar_fails():
    result = l04.check_flow_loss(lambda m, x0, g: (m(x0, torch.rand(len(x0), generator=g)) - x0) ** 2)
    assert result.status == WRONG and "scalar" in result.message


# Issue 18: wrong answers that used to pass, and raw errors ---------------------------------


def test_a_summed_loss_is_named():
    def summed(model, x0, g):
        t = torch.rand(len(x0), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        tb = clip_shaped(t, x0)
        return ((model((1 - tb) * x0 + tb * eps, t) - (eps - x0)) ** 2).sum()

    result = expect_mistake(l04.check_flow_loss, summed, l04.SUM_NOT_MEAN)
    assert "0.25" in result.message


def test_a_loss_that_ignores_its_generator_is_named():
    def global_rng(model, x0, g):
        t = torch.rand(len(x0))
        eps = torch.randn_like(x0)
        tb = clip_shaped(t, x0)
        return F.mse_loss(model((1 - tb) * x0 + tb * eps, t), eps - x0)

    expect_mistake(l04.check_flow_loss, global_rng, l04.GENERATOR_IGNORED)


def test_a_time_tensor_not_reshaped_is_named_instead_of_a_raw_error():
    expect_mistake(l04.check_add_noise, lambda x0, t, eps: (1 - t) * x0 + t * eps, l04.NOT_BROADCAST)
    expect_mistake(l04.check_eps_to_x0, lambda eps, x_t, ab: (x_t - (1 - ab).sqrt() * eps) / ab.sqrt(), l04.NOT_BROADCAST)
    expect_mistake(l04.check_velocity_to_x0, lambda u, x_t, t: x_t - t * u, l04.NOT_BROADCAST)

    def loss_without_reshape(model, x0, g):
        t = torch.rand(len(x0), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        return F.mse_loss(model((1 - t) * x0 + t * eps, t), eps - x0)

    result = expect_mistake(l04.check_flow_loss, loss_without_reshape, l04.NOT_BROADCAST)
    assert "(B, 1, 1, 1, 1)" in result.hint


# Issue 18: every check fails the stub's neighbours -------------------------------------------


PLANTED = [(l04.check_add_noise, lambda x0, t, eps: FlowSchedule().q_sample(x0, t, eps)), (l04.check_eps_to_x0, eps_to_x0),
           (l04.check_velocity_to_x0, lambda u, x_t, t: predict_x0_eps(u, x_t, t, objective="flow")[0]),
           (l04.check_flow_loss, flow_loss)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == PLANTED_WRONG, f"{kind} should fail:\n{result}"
    assert result.message
