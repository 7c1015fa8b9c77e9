"""Samplers checked against exact answers: a 2-D Gaussian mixture whose optimal
denoiser is known in closed form, so no training is involved."""

import pytest
import torch

from vdmcourse.diffusion import model_evaluations, sample
from vdmcourse.diffusion.objectives import model_target, resolve_schedule
from vdmcourse.diffusion.schedules import linear_schedule

WEIGHTS = torch.tensor([0.3, 0.7], dtype=torch.float64)
MEANS = torch.tensor([[-0.6, 0.4], [0.5, -0.3]], dtype=torch.float64)
COVS = torch.tensor([[[0.04, 0.01], [0.01, 0.02]], [[0.02, -0.01], [-0.01, 0.05]]], dtype=torch.float64)


def mixture_moments():
    mean = (WEIGHTS[:, None] * MEANS).sum(0)
    second = (WEIGHTS[:, None, None] * (COVS + MEANS[:, :, None] * MEANS[:, None, :])).sum(0)
    return mean, second - mean[:, None] * mean[None, :]


def optimal_model(objective, schedule=None, weights=WEIGHTS, means=MEANS, covs=COVS):
    """The exact E[x0 | x_t] and E[eps | x_t] for a Gaussian mixture, returned as the
    target of ``objective``: the model a perfectly trained network converges to."""
    schedule = resolve_schedule(schedule, objective)

    def model(x, t, cond=None):
        alpha, sigma = schedule.alpha_sigma(t.double())
        a, s = alpha[:, None, None], sigma[:, None, None]  # (B, 1, 1)
        x = x.double()
        cov_t = a[..., None] ** 2 * covs + s[..., None] ** 2 * torch.eye(2, dtype=torch.float64)  # (B, K, 2, 2)
        det = cov_t[..., 0, 0] * cov_t[..., 1, 1] - cov_t[..., 0, 1] * cov_t[..., 1, 0]  # (B, K)
        inverse = torch.stack([cov_t[..., 1, 1], -cov_t[..., 0, 1], -cov_t[..., 1, 0], cov_t[..., 0, 0]], -1)
        inverse = inverse.reshape(cov_t.shape) / det[..., None, None]  # (B, K, 2, 2)
        diff = x[:, None, :] - a * means  # (B, K, 2)
        solved = (inverse @ diff.unsqueeze(-1)).squeeze(-1)  # C^-1 (x - a mu), (B, K, 2)
        log_p = torch.log(weights) - 0.5 * (diff * solved).sum(-1) - 0.5 * torch.log(det)
        r = torch.softmax(log_p, dim=1)[..., None]  # (B, K, 1)
        x0 = (r * (means + a * (covs @ solved.unsqueeze(-1)).squeeze(-1))).sum(1)  # (B, 2)
        eps = (r * s * solved).sum(1)  # (B, 2)
        return model_target(x0, eps, t.double(), objective=objective, schedule=schedule).to(t.dtype)

    return model


def moments(x):
    mean = x.mean(0)
    return mean, torch.cov(x.T)


N = 4000


def noise(seed=0, n=N):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("sampler, steps", [("euler", 100), ("heun", 20)])
def test_flow_ode_recovers_mixture_mean_and_covariance(sampler, steps):
    target_mean, target_cov = mixture_moments()
    n = 20_000  # Monte Carlo error of the moments: about 0.005
    x = sample(optimal_model("flow"), (n, 2), objective="flow", sampler=sampler, steps=steps,
               noise=noise(0, n), progress=False)
    mean, cov = moments(x)
    torch.testing.assert_close(mean, target_mean, rtol=0, atol=0.012)
    torch.testing.assert_close(cov, target_cov, rtol=0, atol=0.01)
    # both modes keep their share of samples
    in_first = ((x - MEANS[0]).norm(dim=1) < (x - MEANS[1]).norm(dim=1)).double().mean()
    assert in_first.item() == pytest.approx(0.3, abs=0.02)


# Heun's last step is an Euler step (the model is never asked about t = 0, as in Karras
# et al. 2022); on the uniform t grid that step is large for VP schedules, so Heun's gain
# there is smaller than on the flow path.
@pytest.mark.parametrize("objective, schedule, factor", [("flow", None, 0.5), ("v", "cosine", 0.85), ("eps", "linear", 0.85)])
def test_heun_beats_euler_at_equal_steps(objective, schedule, factor):
    model = optimal_model(objective, schedule)
    kwargs = dict(objective=objective, schedule=schedule, noise=noise(1, 1000), progress=False)
    reference = sample(model, (1000, 2), sampler="heun", steps=200, **kwargs)
    euler = sample(model, (1000, 2), sampler="euler", steps=10, **kwargs)
    heun = sample(model, (1000, 2), sampler="heun", steps=10, **kwargs)
    euler_error = (euler - reference).norm(dim=1).mean()
    heun_error = (heun - reference).norm(dim=1).mean()
    assert heun_error < factor * euler_error, (heun_error, euler_error)


def test_heun_moments_beat_euler_moments_at_ten_steps():
    _, target_cov = mixture_moments()
    errors = {}
    for sampler in ["euler", "heun"]:
        x = sample(optimal_model("flow"), (N, 2), sampler=sampler, steps=10, noise=noise(2), progress=False)
        errors[sampler] = (moments(x)[1] - target_cov).abs().max()
    assert errors["heun"] < 0.5 * errors["euler"], errors


def test_euler_step_is_a_ddim_step_on_every_path():
    for objective, schedule in [("flow", None), ("eps", "cosine"), ("x0", "linear")]:
        model = optimal_model(objective, schedule)
        kwargs = dict(objective=objective, schedule=schedule, steps=7, noise=noise(2)[:200], progress=False)
        euler = sample(model, (200, 2), sampler="euler", **kwargs)
        ddim = sample(model, (200, 2), sampler="ddim", eta=0.0, **kwargs)
        torch.testing.assert_close(euler, ddim, rtol=0, atol=1e-8, msg=objective)


def test_ddim_eta_zero_is_deterministic_whatever_the_generator():
    model = optimal_model("v", "cosine")
    kwargs = dict(objective="v", schedule="cosine", sampler="ddim", steps=10, noise=noise(3)[:100], progress=False)
    a = sample(model, (100, 2), eta=0.0, generator=torch.Generator().manual_seed(1), **kwargs)
    b = sample(model, (100, 2), eta=0.0, generator=torch.Generator().manual_seed(2), **kwargs)
    assert torch.equal(a, b)
    c = sample(model, (100, 2), eta=0.5, generator=torch.Generator().manual_seed(1), **kwargs)
    d = sample(model, (100, 2), eta=0.5, generator=torch.Generator().manual_seed(2), **kwargs)
    assert not torch.allclose(c, d)


def test_ddim_eta_one_is_ddpm():
    model = optimal_model("eps", "linear")
    kwargs = dict(objective="eps", schedule="linear", steps=20, noise=noise(4)[:300], progress=False)
    ddpm = sample(model, (300, 2), sampler="ddpm", generator=torch.Generator().manual_seed(5), **kwargs)
    ddim = sample(model, (300, 2), sampler="ddim", eta=1.0, generator=torch.Generator().manual_seed(5), **kwargs)
    torch.testing.assert_close(ddpm, ddim, rtol=0, atol=1e-6)


def test_ddpm_on_the_exact_eps_of_a_gaussian_recovers_its_variance():
    mean = torch.tensor([[0.2, -0.1]], dtype=torch.float64)
    cov = torch.tensor([[[0.09, 0.03], [0.03, 0.04]]], dtype=torch.float64)
    model = optimal_model("eps", "linear", torch.ones(1, dtype=torch.float64), mean, cov)
    x = sample(model, (N, 2), objective="eps", schedule="linear", sampler="ddpm", steps=200,
               generator=torch.Generator().manual_seed(0), progress=False, noise=noise(5))
    sample_mean, sample_cov = moments(x)
    torch.testing.assert_close(sample_mean, mean[0], rtol=0, atol=0.015)
    torch.testing.assert_close(sample_cov, cov[0], rtol=0.1, atol=0.004)


def test_same_seed_same_samples_and_callback_sees_every_step():
    model = optimal_model("flow")
    seen = []
    a = sample(model, (8, 2), sampler="ddpm", steps=5, generator=torch.Generator().manual_seed(0), progress=False,
               callback=lambda step, x, x0: seen.append((step, x.clone(), x0.shape)))
    b = sample(model, (8, 2), sampler="ddpm", steps=5, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(a, b)
    assert [s for s, _, _ in seen] == [0, 1, 2, 3, 4] and all(shape == (8, 2) for _, _, shape in seen)
    assert torch.equal(seen[-1][1], a)


def test_video_shapes_reach_the_model_with_one_float_time_per_clip():
    calls = []

    def model(x, t, cond=None):
        calls.append((tuple(x.shape), tuple(t.shape), t.dtype, t.min().item(), t.max().item()))
        return torch.zeros_like(x)

    out = sample(model, (2, 3, 1, 4, 4), sampler="heun", steps=4, progress=False,
                 generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 1, 4, 4) and len(calls) == model_evaluations("heun", 4) == 7
    assert all(c[:3] == ((2, 3, 1, 4, 4), (2,), torch.float32) for c in calls)
    assert calls[0][3] == 1.0 and min(c[3] for c in calls) > 0  # starts at pure noise, never asks t = 0


def test_clip_x0_keeps_predictions_in_model_range():
    model = optimal_model("eps", "cosine", means=MEANS * 3)
    x0_preds = []
    sample(model, (50, 2), objective="eps", schedule="cosine", sampler="ddim", steps=5, clip_x0=True,
           noise=noise(6)[:50], progress=False, callback=lambda step, x, x0: x0_preds.append(x0))
    assert all(p.abs().max() <= 1 for p in x0_preds)


def test_sampling_restores_training_mode():
    model = torch.nn.Linear(2, 2)
    model.forward = lambda x, t, cond=None: torch.zeros_like(x)
    model.train()
    sample(model, (3, 2), steps=2, progress=False)
    assert model.training


def test_bad_arguments_are_refused_clearly():
    model = optimal_model("flow")
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample(model, (2, 2), sampler="dpm++")
    with pytest.raises(ValueError, match="objective must be one of"):
        sample(model, (2, 2), objective="score")
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        sample(model, (2, 2), steps=0)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        sample(model, (2, 2), steps=2.5)
    with pytest.raises(ValueError, match="noise must have shape"):
        sample(model, (2, 2), noise=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="shape must be"):
        sample(model, (2, -1))
    with pytest.raises(ValueError, match="eta must lie"):
        sample(model, (2, 2), sampler="ddim", eta=2.0)
    with pytest.raises(ValueError, match="the model returned shape"):
        sample(lambda x, t, cond=None: x[:, :1], (2, 2), progress=False)
    with pytest.raises(ValueError, match="eps-prediction cannot start"):
        sample(model, (2, 2), objective="eps", schedule="flow")
    with pytest.raises(ValueError, match="needs labels"):
        sample(model, (2, 2), guidance_scale=3.0, progress=False)
    with pytest.raises(ValueError, match="B = 2"):
        sample(model, (2, 2), cond=torch.zeros(5, dtype=torch.long), progress=False)


# DPM-Solver++(2M): one model call per step, second order in between its first and last
# (DDIM) steps. Against a 400-step Heun reference on the exact mixture denoiser.
# Its last step, to sigma = 0, is first order (as in Lu et al.'s "lower order final"): on the
# uniform t grid that step dominates the error at 8 steps (measured: 0.057 vs Euler's 0.083).
def test_dpmpp_2m_beats_euler_at_equal_model_calls():
    model = optimal_model("flow")
    kwargs = dict(objective="flow", noise=noise(3, 1000), progress=False)
    reference = sample(model, (1000, 2), sampler="heun", steps=400, **kwargs)
    errors = {}
    for sampler in ("euler", "dpm++2m"):
        for steps in (8, 16):
            x = sample(model, (1000, 2), sampler=sampler, steps=steps, **kwargs)
            errors[sampler, steps] = (x - reference).norm(dim=1).mean().item()
    assert model_evaluations("dpm++2m", 8) == 8
    assert errors["dpm++2m", 8] < 0.75 * errors["euler", 8], errors
    assert errors["dpm++2m", 16] < 0.5 * errors["euler", 16], errors
    # halving the step shrinks Euler's error about 2x (first order), DPM-Solver++(2M)'s more
    assert errors["dpm++2m", 8] / errors["dpm++2m", 16] > errors["euler", 8] / errors["euler", 16], errors


def test_dpmpp_2m_with_one_or_two_steps_is_ddim():
    model = optimal_model("flow")
    for steps in (1, 2):  # the first step has no previous prediction, the last ends at sigma = 0: both DDIM
        kwargs = dict(objective="flow", steps=steps, noise=noise(4)[:200], progress=False)
        torch.testing.assert_close(sample(model, (200, 2), sampler="dpm++2m", **kwargs), sample(model, (200, 2), sampler="ddim", **kwargs))


def test_sampling_starts_from_the_models_frame_noise():
    """A model trained on PYoCo's mixed noise (config.noise_mix) is sampled from it: with a zero
    velocity, Euler's single step returns its start noise, whose frames then correlate 0.9 at
    mix 3 (and not at all for a model without the field); DDPM's fresh noise is mixed too."""

    class Zero(torch.nn.Module):
        def __init__(self, mix):
            super().__init__()
            self.config = type("Config", (), {"noise_mix": mix})()

        def forward(self, x, t, cond=None):
            return torch.zeros_like(x)

    shape = (400, 4, 1, 4, 4)
    for mix, correlation in ((0.0, 0.0), (3.0, 0.9)):
        start = sample(Zero(mix), shape, sampler="euler", steps=1, generator=torch.Generator().manual_seed(0), progress=False)
        assert (start[:, 0] * start[:, 2]).mean().item() == pytest.approx(correlation, abs=0.05)
    plain = sample(Zero(0.0), shape, sampler="euler", steps=1, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(plain, torch.randn(shape, generator=torch.Generator().manual_seed(0)))  # mix 0: the plain draw
    given = torch.randn(shape)
    assert torch.equal(sample(Zero(3.0), shape, sampler="euler", steps=1, noise=given, progress=False), given)
    # DDPM from x = 0 with a zero eps-prediction: x0_hat = 0, so the first step's x is its fresh noise
    steps = []
    sample(Zero(3.0), (400, 4, 1, 2, 2), objective="eps", schedule=linear_schedule(), sampler="ddpm", steps=3,
           noise=torch.zeros(400, 4, 1, 2, 2), generator=torch.Generator().manual_seed(0), progress=False,
           callback=lambda step, x, x0: steps.append(x.clone()))
    fresh = steps[0]
    assert (fresh[:, 0] * fresh[:, 3]).mean().item() / fresh.var().item() == pytest.approx(0.9, abs=0.05)
