import math

import pytest
import torch

from vdmcourse.diffusion.schedules import (
    FlowSchedule,
    VPSchedule,
    broadcast_time,
    check_time,
    cosine_schedule,
    linear_schedule,
)

SCHEDULES = [linear_schedule(), cosine_schedule(), linear_schedule(50), cosine_schedule(20)]


def grid(schedule):
    return torch.arange(schedule.num_steps + 1, dtype=torch.float64) / schedule.num_steps


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_alpha_bar_is_strictly_decreasing_from_one_to_about_zero(schedule):
    assert torch.all(schedule.alpha_bars[1:] < schedule.alpha_bars[:-1])
    assert schedule.alpha_bars[0] < 1
    assert schedule.alpha_bars[-1] < 1e-3 or schedule.num_steps < 100
    fine = torch.linspace(0, 1, 5001, dtype=torch.float64)
    continuous = schedule.alpha_bar(fine)
    assert continuous[0] == 1 and torch.all(continuous[1:] < continuous[:-1])


def test_thousand_step_schedules_end_at_pure_noise():
    assert linear_schedule().alpha_bars[-1] < 1e-4
    assert cosine_schedule().alpha_bars[-1] < 1e-6


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_continuous_alpha_bar_equals_discrete_one_at_t_equal_i_over_n(schedule):
    t = grid(schedule)
    torch.testing.assert_close(schedule.alpha_bar(t)[1:], schedule.alpha_bars, rtol=1e-12, atol=0)
    assert schedule.alpha_bar(t)[0] == 1


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_tables_follow_the_ddpm_definitions(schedule):
    torch.testing.assert_close(schedule.alphas, 1 - schedule.betas)
    torch.testing.assert_close(schedule.alpha_bars, torch.cumprod(schedule.alphas, 0))
    t = torch.rand(100, dtype=torch.float64)
    alpha, sigma = schedule.alpha_sigma(t)
    torch.testing.assert_close(alpha**2, schedule.alpha_bar(t))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    torch.testing.assert_close(schedule.snr(t), schedule.alpha_bar(t) / (1 - schedule.alpha_bar(t)))


def test_linear_betas_are_evenly_spaced_between_the_ddpm_values():
    betas = linear_schedule().betas
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    torch.testing.assert_close(betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_cosine_alpha_bar_matches_nichol_dhariwal_and_clips_betas():
    schedule = cosine_schedule()
    t = grid(schedule)[:-1]  # the last step is where the clip acts
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(schedule.alpha_bar(t), f / f[0], rtol=1e-10, atol=1e-14)
    assert schedule.betas.max() <= 0.999 and schedule.betas[-1] == pytest.approx(0.999)


def test_snr_decreases_to_zero_and_is_infinite_at_the_clean_end():
    for schedule in [cosine_schedule(), FlowSchedule()]:
        snr = schedule.snr(torch.linspace(0, 1, 101, dtype=torch.float64))
        assert math.isinf(snr[0]) and torch.all(snr[1:] < snr[:-1]) and snr[-1] < 1e-6


def test_flow_schedule_is_the_straight_path():
    t = torch.rand(10, dtype=torch.float64)
    alpha, sigma = FlowSchedule().alpha_sigma(t)
    torch.testing.assert_close(alpha, 1 - t)
    torch.testing.assert_close(sigma, t)
    x0, eps = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    torch.testing.assert_close(FlowSchedule().q_sample(x0, t, eps), (1 - t[:, None]) * x0 + t[:, None] * eps)


def test_q_sample_closed_form_equals_running_the_markov_chain():
    # x_i = sqrt(alpha_i) x_{i-1} + sqrt(beta_i) z_i, unrolled: the coefficient of x0 and the
    # total noise variance after i steps must be sqrt(alpha_bar_i) and 1 - alpha_bar_i.
    schedule = linear_schedule(200)
    coef, var = torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    coefs, variances = [], []
    for alpha, beta in zip(schedule.alphas, schedule.betas):
        coef, var = alpha.sqrt() * coef, alpha * var + beta
        coefs.append(coef), variances.append(var)
    t = grid(schedule)[1:]
    alpha_t, sigma_t = schedule.alpha_sigma(t)
    torch.testing.assert_close(alpha_t, torch.stack(coefs))
    torch.testing.assert_close(sigma_t**2, torch.stack(variances))


def test_q_sample_video_uses_one_time_per_clip_and_per_frame_times_when_given():
    schedule = cosine_schedule()
    x0 = torch.zeros(2, 4, 1, 8, 8, dtype=torch.float64)
    noise = torch.ones_like(x0)
    x_t = schedule.q_sample(x0, torch.tensor([0.1, 0.9], dtype=torch.float64), noise)
    _, sigma = schedule.alpha_sigma(torch.tensor([0.1, 0.9], dtype=torch.float64))
    torch.testing.assert_close(x_t[:, :, 0, 0, 0], sigma[:, None].expand(2, 4))
    per_frame = torch.linspace(0.1, 0.9, 8, dtype=torch.float64).reshape(2, 4)
    x_t = schedule.q_sample(x0, per_frame, noise)
    torch.testing.assert_close(x_t[:, :, 0, 0, 0], schedule.alpha_sigma(per_frame)[1])


@pytest.mark.parametrize("schedule", [linear_schedule(), cosine_schedule()], ids=repr)
def test_posterior_one_step_back_is_ddpm_equations_6_and_7(schedule):
    n = schedule.num_steps
    i = torch.tensor([2, 10, 500, 1000])
    t, s = i.double() / n, (i - 1).double() / n
    x_t, x0 = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    mean, variance = schedule.posterior(x_t, x0, t, s)
    beta, alpha = schedule.betas[i - 1], schedule.alphas[i - 1]
    abar_t, abar_s = schedule.alpha_bars[i - 1], schedule.alpha_bars[i - 2]
    coef_x0 = abar_s.sqrt() * beta / (1 - abar_t)
    coef_xt = alpha.sqrt() * (1 - abar_s) / (1 - abar_t)
    torch.testing.assert_close(mean, coef_x0[:, None] * x0 + coef_xt[:, None] * x_t)
    torch.testing.assert_close(variance[:, 0], (1 - abar_s) / (1 - abar_t) * beta)


def test_posterior_agrees_with_bayes_by_monte_carlo():
    # Fix x0, draw x_s ~ q(x_s | x0) and then x_t ~ q(x_t | x_s): the residual x_s - mean must
    # have mean 0, the posterior variance, and no correlation with x_t.
    schedule, g = FlowSchedule(), torch.Generator().manual_seed(0)
    t, s = torch.tensor([0.7], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)
    x0 = torch.full((200_000, 1), 0.5, dtype=torch.float64)
    x_s = schedule.q_sample(x0, s.expand(len(x0)), torch.randn(x0.shape, generator=g, dtype=torch.float64))
    alpha_ts = (1 - t) / (1 - s)
    var_ts = t**2 - alpha_ts**2 * s**2
    x_t = alpha_ts * x_s + var_ts.sqrt() * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    mean, variance = schedule.posterior(x_t, x0, t.expand(len(x0)), s.expand(len(x0)))
    residual = x_s - mean
    assert abs(residual.mean().item()) < 0.005
    assert residual.var().item() == pytest.approx(variance[0, 0].item(), rel=0.02)
    assert abs(torch.corrcoef(torch.cat([residual, x_t], 1).T)[0, 1].item()) < 0.01


def test_time_outside_zero_one_or_integer_steps_are_refused():
    schedule = cosine_schedule()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        schedule.alpha_bar(torch.tensor([1.5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FlowSchedule().alpha_sigma(torch.tensor([-0.1]))
    with pytest.raises(TypeError, match="t = i / N"):
        schedule.alpha_bar(torch.tensor([500]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_time(0.5)


def test_bad_construction_and_shapes_are_refused():
    with pytest.raises(ValueError, match="num_steps"):
        cosine_schedule(0)
    with pytest.raises(ValueError, match="beta"):
        VPSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="beta_start"):
        linear_schedule(10, 0.5, 0.1)
    with pytest.raises(ValueError, match="noise must have x0's shape"):
        cosine_schedule().q_sample(torch.zeros(2, 3), torch.rand(2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="do not match"):
        broadcast_time(torch.rand(3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="s < t"):
        cosine_schedule().posterior(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0.3]), torch.tensor([0.5]))
