"""Self-checks for lesson 08, Samplers and guidance.

* :func:`check_ddim_step` -- one deterministic DDIM step from an eps-prediction;
* :func:`check_euler_step` -- one Euler step of the flow ODE, from t down to s;
* :func:`check_heun_step` -- one Heun step (Euler, then the average of both slopes);
* :func:`check_cfg` -- the classifier-free guidance combination.

Each compares the learner's function with ``vdmcourse.diffusion`` on small inputs
and names the mistakes people really make: fresh noise in DDIM, a forgotten square
root, dt with the wrong sign, the guidance scale off by one, cond and uncond swapped,
only some channels guided.
"""

from __future__ import annotations

import math

import torch

from vdmcourse.diffusion import classifier_free_guidance
from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check

__all__ = [
    "FRESH_NOISE",
    "MISSING_SQRT",
    "TIMES_SWAPPED",
    "DT_SIGN",
    "END_SLOPE_ONLY",
    "START_SLOPE_TWICE",
    "SCALE_OFF_BY_ONE",
    "COND_UNCOND_SWAPPED",
    "PARTIAL_CHANNELS",
    "reference_ddim_step",
    "reference_euler_step",
    "reference_heun_step",
    "check_ddim_step",
    "check_euler_step",
    "check_heun_step",
    "check_cfg",
]

FRESH_NOISE = "fresh noise instead of the predicted eps (DDIM with eta = 0 is deterministic)"
MISSING_SQRT = "alpha_bar used where sqrt(alpha_bar) belongs"
TIMES_SWAPPED = "alpha_bar_t and alpha_bar_s swapped (the step adds noise)"
DT_SIGN = "Euler step with the wrong sign of dt (it walks towards noise)"
END_SLOPE_ONLY = "Heun step that uses only the slope at the end point"
START_SLOPE_TWICE = "Heun step whose second slope is taken at the start point again (that is Euler)"
SCALE_OFF_BY_ONE = "guidance scale off by one: (1 + w) cond - w uncond with w = scale"
COND_UNCOND_SWAPPED = "cond and uncond swapped (guidance pushes away from the label)"
PARTIAL_CHANNELS = "only some channels guided (public DiT guides 3 of 4; guide them all)"


def _clips(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 4, 3, 3, generator=g), torch.randn(2, 3, 4, 3, 3, generator=g)  # (B, T, C, H, W)


def _ddim(x_t, eps, ab_t, ab_s):
    x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    return math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps


@self_check(
    "One DDIM step", reference='vdmcourse.diffusion.sample(..., sampler="ddim")',
    more="The likely slips are fresh noise (DDIM with eta = 0 re-uses eps_hat), alpha_bar where its square"
         " root belongs, and t and s swapped. Two lines: x0_hat = (x_t - (1 - ab_t) ** 0.5 * eps_hat) / "
         "ab_t ** 0.5, then x_s = ab_s ** 0.5 * x0_hat + (1 - ab_s) ** 0.5 * eps_hat.",
)
def check_ddim_step(ddim_step):
    """``ddim_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s) -> x_s``: deterministic DDIM (eta = 0)
    on a DDPM path ``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps``, from time t to the less noisy s;
    ``alpha_bar_t < alpha_bar_s`` are floats, the tensors are clips ``(B, T, C, H, W)``."""
    x_t, eps = _clips(0)
    ab_t, ab_s = 0.3, 0.7
    out = ddim_step(x_t.clone(), eps.clone(), ab_t, ab_s)
    expect_shape(out, tuple(x_t.shape), "ddim_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s)")
    again = ddim_step(x_t.clone(), eps.clone(), ab_t, ab_s)
    if not torch.equal(out, again):
        raise Wrong(
            "Two calls with the same inputs gave different x_s: the step draws random numbers.",
            mistake=FRESH_NOISE,
            hint="Re-noise x0_hat with the predicted eps_hat, not with torch.randn: x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s) eps_hat.",
        )
    out = out.float()
    x0 = (x_t - (1 - ab_t) * eps) / ab_t
    if torch.allclose(out, ab_s * x0 + (1 - ab_s) * eps, atol=1e-5):
        raise Wrong("x_s is scaled wrongly: the coefficients are alpha_bar rather than its square root.",
                    mistake=MISSING_SQRT, hint="Signal coefficient sqrt(alpha_bar), noise coefficient sqrt(1 - alpha_bar).")
    if torch.allclose(out, _ddim(x_t, eps, ab_s, ab_t), atol=1e-5):
        raise Wrong("Your step went from the less noisy time to the noisier one.", mistake=TIMES_SWAPPED,
                    hint="First undo the noise of time t (alpha_bar_t) to get x0_hat, then re-noise to time s (alpha_bar_s).")
    expect_close(out, _ddim(x_t, eps, ab_t, ab_s), "x_s", atol=1e-5,
                 hint="x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t); x_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s) eps.")
    return "Predict x0, re-noise it with the same eps to the next time: deterministic DDIM."


def reference_ddim_step(x_t, eps_hat, alpha_bar_t, alpha_bar_s):
    """One deterministic DDIM step (eta = 0) from ``alpha_bar_t`` to the less noisy ``alpha_bar_s``:
    predict ``x0_hat``, re-noise it with the same ``eps_hat`` (Song et al. 2021, eq. 12)."""
    return _ddim(x_t, eps_hat, alpha_bar_t, alpha_bar_s)


def reference_euler_step(x_t, velocity, t, s):
    """One Euler step of the flow ODE from time ``t`` down to ``s``: ``x_t + (s - t) velocity``."""
    return x_t + (s - t) * velocity


def reference_heun_step(velocity_fn, x_t, t, s):
    """One Heun step from ``t`` down to ``s``: the Euler predictor, then the average of the
    slopes at both ends (Karras et al. 2022, Algorithm 1)."""
    d1 = velocity_fn(x_t, t)
    d2 = velocity_fn(x_t + (s - t) * d1, s)
    return x_t + (s - t) * (d1 + d2) / 2


@self_check(
    "One Euler step of the flow ODE", reference='vdmcourse.diffusion.sample(..., sampler="euler")',
    more="The likely slip is the sign of dt: sampling goes from t down to s, so dt = s - t is negative and"
         " x_s = x_t + (s - t) * velocity.",
)
def check_euler_step(euler_step):
    """``euler_step(x_t, velocity, t, s) -> x_s`` on the flow path (``dx/dt = eps - x0``, t = 1 noise),
    from time ``t`` down to ``s < t`` (floats); the tensors are clips ``(B, T, C, H, W)``."""
    x_t, u = _clips(1)
    t, s = 0.8, 0.6
    out = euler_step(x_t.clone(), u.clone(), t, s)
    expect_shape(out, tuple(x_t.shape), "euler_step(x_t, velocity, t, s)")
    out = out.float()
    if torch.allclose(out, x_t + (t - s) * u, atol=1e-6):
        raise Wrong(
            "Your step moved x along the velocity eps - x0, i.e. towards more noise.",
            mistake=DT_SIGN,
            hint="Sampling runs t downwards, so dt = s - t is negative: x_s = x_t + (s - t) * velocity.",
        )
    expect_close(out, x_t + (s - t) * u, "x_s", atol=1e-6, hint="x_s = x_t + (s - t) * velocity.")
    return "x_s = x_t + (s - t) u: the step walks from noise towards data."


def _velocity(x, t):
    """A smooth, nonlinear, time-dependent field to integrate in the Heun check."""
    return torch.sin(x) * (1 + t) - 0.5 * x * t


@self_check(
    "One Heun step of the flow ODE", reference='vdmcourse.diffusion.sample(..., sampler="heun")',
    more="The likely slips are taking the second slope at the start point again, or using only the end "
         "slope. d1 = velocity_fn(x_t, t); x_euler = x_t + (s - t) * d1; d2 = velocity_fn(x_euler, s); x_s"
         " = x_t + (s - t) * (d1 + d2) / 2.",
)
def check_heun_step(heun_step):
    """``heun_step(velocity_fn, x_t, t, s) -> x_s``: ``velocity_fn(x, t)`` gives the flow velocity;
    take an Euler step to ``s``, evaluate the velocity there, and redo the step with the
    average of both slopes (Karras et al. 2022, Algorithm 1)."""
    x_t, _ = _clips(2)
    t, s = 0.9, 0.5
    out = heun_step(_velocity, x_t.clone(), t, s)
    expect_shape(out, tuple(x_t.shape), "heun_step(velocity_fn, x_t, t, s)")
    out = out.float()
    d1 = _velocity(x_t, t)
    euler = x_t + (s - t) * d1
    d2 = _velocity(euler, s)
    want = x_t + (s - t) * (d1 + d2) / 2
    if torch.allclose(out, x_t + (t - s) * (d1 + _velocity(x_t + (t - s) * d1, s)) / 2, atol=1e-5):
        raise Wrong("Your step walks towards noise.", mistake=DT_SIGN, hint="dt = s - t is negative when sampling.")
    if torch.allclose(out, euler, atol=1e-5):
        raise Wrong("Your Heun step equals the Euler step: the second slope is the first one again.",
                    mistake=START_SLOPE_TWICE, hint="Evaluate velocity_fn at the Euler end point (x_euler, s).")
    if torch.allclose(out, x_t + (s - t) * d2, atol=1e-5):
        raise Wrong("Your step uses only the slope at the end point.", mistake=END_SLOPE_ONLY,
                    hint="Average the two slopes: x_s = x_t + (s - t) * (d1 + d2) / 2.")
    expect_close(out, want, "x_s", atol=1e-5, hint="d1 at (x_t, t); d2 at (x_t + (s - t) d1, s); x_s = x_t + (s - t)(d1 + d2)/2.")
    return "Euler predictor, trapezoid corrector: second order for one extra model call."


@self_check(
    "Classifier-free guidance", reference="vdmcourse.diffusion.classifier_free_guidance",
    more="The likely slips are the scale off by one ((1 + w) cond - w uncond with w = scale) and cond and "
         "uncond swapped. Check the two ends: scale 0 gives uncond, scale 1 gives cond; guided = uncond + "
         "scale * (cond - uncond), on the whole tensor.",
)
def check_cfg(cfg):
    """``cfg(cond_out, uncond_out, scale) -> guided``: model outputs ``(B, T, C, H, W)`` with and
    without the label; scale 1 must give the conditional output, scale 0 the unconditional one."""
    cond, uncond = _clips(3)
    out = cfg(cond.clone(), uncond.clone(), 3.0)
    expect_shape(out, tuple(cond.shape), "cfg(cond_out, uncond_out, 3.0)")
    out = out.float()
    want = classifier_free_guidance(cond, uncond, 3.0)
    if torch.allclose(out, cond + 3.0 * (cond - uncond), atol=1e-6):
        raise Wrong(
            "With your formula scale 1 does not give the conditional model back.",
            mistake=SCALE_OFF_BY_ONE,
            hint="Papers write (1 + w) cond - w uncond with w = scale - 1; the course writes uncond + scale * (cond - uncond).",
        )
    if torch.allclose(out, classifier_free_guidance(uncond, cond, 3.0), atol=1e-6):
        raise Wrong("Your guidance extrapolates away from the conditional output.", mistake=COND_UNCOND_SWAPPED,
                    hint="Start at the unconditional output and move towards (and past) the conditional one.")
    channels_right = [torch.allclose(out[:, :, c], want[:, :, c], atol=1e-6) for c in range(cond.shape[2])]
    if any(channels_right) and not all(channels_right):
        raise Wrong(f"Channels {[c for c, ok in enumerate(channels_right) if not ok]} were not guided.",
                    mistake=PARTIAL_CHANNELS, hint="Apply the combination to the whole tensor.")
    expect_close(out, want, "the guided output", atol=1e-6, hint="guided = uncond + scale * (cond - uncond).")
    expect_close(cfg(cond.clone(), uncond.clone(), 1.0).float(), cond, "cfg(cond, uncond, 1.0)", atol=1e-6,
                 hint="Scale 1 must be exactly the conditional output.")
    return "uncond + scale * (cond - uncond) on every channel; scale 1 is the conditional model."
