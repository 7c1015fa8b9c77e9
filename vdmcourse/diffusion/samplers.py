"""Samplers: from pure noise at ``t = 1`` to a clean sample at ``t = 0``, one interface.

:func:`sample` walks the time grid ``t_k = k / steps`` from 1 down to 0. At each
step the model's output -- whatever its objective -- is turned into predictions
``(x0_hat, eps_hat)`` (:func:`~vdmcourse.diffusion.objectives.predict_x0_eps`), and
the sampler moves from ``t`` to the next time ``s < t``:

* ``"ddpm"`` -- ancestral sampling (Ho et al. 2020): draw from the posterior
  ``q(x_s | x_t, x0 = x0_hat)``; fresh noise every step.
* ``"ddim"`` -- Song et al. 2021: ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z``
  with ``c = eta * (DDPM's posterior std)``: ``eta = 0`` is deterministic, ``eta = 1`` is DDPM.
* ``"euler"`` / ``"heun"`` -- first- / second-order solvers of the probability-flow ODE
  (Song et al. 2021b; Karras et al. 2022). On the flow path the ODE is
  ``dx/dt = eps - x0``; any other path is the same straight path after rescaling
  ``z = x / (alpha + sigma)`` and re-timing ``tau = sigma / (alpha + sigma)``, and the
  solvers step in those coordinates. There an Euler step *is* a DDIM (eta = 0) step.
  Heun averages the slopes at both ends of a step: two model calls per step,
  except the last (an Euler step, so the model is never asked about ``t = 0``).
* ``"dpm++2m"`` -- DPM-Solver++(2M) (Lu et al. 2022b): second order at one model call per
  step, by reusing the previous step's ``x0_hat``. In ``lambda = log(alpha / sigma)`` the
  ODE's exact solution is ``x_s = (sigma_s / sigma_t) x_t + alpha_s int e^{-lambda} x0(lambda)``;
  DPM-Solver++ extrapolates ``x0`` linearly in ``lambda`` through the last two predictions,
  ``D = (1 + 1/(2r)) x0_t - 1/(2r) x0_prev`` with ``r`` the ratio of the last two steps'
  lengths in ``lambda``, and integrates that exactly. The first step (nothing to reuse; on
  the flow path ``lambda(1) = -inf``) and the last (to ``sigma = 0``) are DDIM steps.
  Made for few steps (8-10) of guided sampling; not among :data:`SAMPLERS`, the four the
  lessons compare, but :func:`sample` and presets take it (:data:`ALL_SAMPLERS`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from tqdm.auto import tqdm

from vdmcourse import fast_paths
from vdmcourse.diffusion.guidance import check_labels, check_scale, guided_output
from vdmcourse.diffusion.objectives import frame_noise, noise_mix_of, predict_x0_eps, resolve_schedule
from vdmcourse.diffusion.schedules import FlowSchedule, Schedule

__all__ = ["SAMPLERS", "ALL_SAMPLERS", "GUIDE_EVERY_CALL", "sample", "model_evaluations", "check_guidance_interval"]

SAMPLERS = ("ddpm", "ddim", "euler", "heun")
ALL_SAMPLERS = SAMPLERS + ("dpm++2m",)  # with the multistep solver for few steps
GUIDE_EVERY_CALL = (0.0, 1.0)  # the guidance interval that guides every model call (a checkpoint without one)


def model_evaluations(sampler: str, steps: int) -> int:
    """How many (guided) model calls ``sample`` makes: ``steps``, or ``2 * steps - 1`` for Heun."""
    _check_sampler(sampler, steps)
    return 2 * steps - 1 if sampler == "heun" else steps


def check_guidance_interval(interval) -> tuple[float, float]:
    """``interval`` as ``(low, high)`` floats with ``0 <= low <= high <= 1``, or a ValueError naming it."""
    values = tuple(interval) if isinstance(interval, (tuple, list)) else ()
    if not (len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            and 0.0 <= values[0] <= values[1] <= 1.0):
        raise ValueError(f"guidance_interval must be (low, high) with 0 <= low <= high <= 1 (the times guided); got {interval!r}")
    return float(values[0]), float(values[1])


def _check_sampler(sampler, steps) -> None:
    if sampler not in ALL_SAMPLERS:
        raise ValueError(f"sampler must be one of {ALL_SAMPLERS}; got {sampler!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1; got {steps!r}")


def _alpha_sigma(schedule: Schedule, t: float) -> tuple[float, float]:
    alpha, sigma = schedule.alpha_sigma(torch.tensor([t], dtype=torch.float64))
    return alpha.item(), sigma.item()


def _model_device(model, fallback: torch.device) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
    return fallback


@torch.no_grad()
def sample(
    model,
    shape: tuple[int, ...],
    *,
    objective: str = "flow",
    sampler: str = "euler",
    steps: int = 50,
    schedule=None,
    cond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    guidance_interval: tuple[float, float] = GUIDE_EVERY_CALL,
    null_label: int | None = None,
    eta: float = 0.0,
    clip_x0: bool = False,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    t_start: float = 1.0,
) -> torch.Tensor:
    """Generate samples with ``model`` (called as ``model(x, t, cond=cond)``).

    Args:
        shape: ``(B, T, C, H, W)`` for a video model (any ``(B, ...)`` works, e.g.
            ``(N, 2)`` for a 2-D toy).
        objective: what the model predicts, one of ``"flow"``, ``"eps"``, ``"v"``, ``"x0"``.
        sampler: ``"ddpm"``, ``"ddim"``, ``"euler"``, ``"heun"`` or ``"dpm++2m"``.
        steps: number of steps on the grid ``t = 1, 1 - 1/steps, ..., 0``.
        schedule: as in :func:`~vdmcourse.diffusion.objectives.resolve_schedule`; it
            must be the one the model was trained with.
        cond: labels ``(B,)`` or ``(B, K)``, or ``None``.
        guidance_scale: classifier-free guidance scale (1 = the conditional model).
        guidance_interval: ``(low, high)``: guide only the model calls at times ``low <= t <= high``;
            the others are the conditional model alone, one plain call (Kynkaenniemi et al.
            2024 guide a middle interval; the default ``(0, 1)`` guides every call).
        null_label: the unconditional label for guidance; default: the model's
            (:func:`~vdmcourse.diffusion.guidance.null_label_of`).
        eta: DDIM's noise level in ``[0, 1]`` (``"ddim"`` only).
        clip_x0: clamp ``x0_hat`` to ``[-1, 1]`` at every step (DDPM's ``clip_denoised``);
            helps eps-prediction near ``t = 1``, where ``x0_hat`` divides by a tiny alpha.
        noise: the starting point ``x_1`` of shape ``shape``; drawn from ``generator`` if None,
            as :func:`~vdmcourse.diffusion.objectives.frame_noise` with the model's
            :func:`~vdmcourse.diffusion.objectives.noise_mix_of` (so is DDPM/DDIM's fresh noise).
        generator: a ``torch.Generator`` for the start noise and DDPM/DDIM noise: the
            same seed gives the same samples.
        callback: called after every step as ``callback(step, x, x0_hat)`` with the new
            state and the prediction made at that step (e.g. to film the denoising).
        progress: show a tqdm bar.
        device: where to sample; default: the model's device (for a plain function:
            ``noise``'s device, else the CPU).
        precision: the model calls' arithmetic, ``"fp32"``, ``"bf16"`` (autocast; the
            sampler's own state stays fp32) or ``"auto"`` (bf16 where it is faster; see
            :mod:`vdmcourse.fast_paths`).
        channels_last: run the model's 2-D convolutions channels-last (faster on most
            CPUs and GPUs; same outputs up to rounding).
        compile: ``torch.compile`` the model first (a minute or more, once per model).
        t_start: the time ``noise`` sits at, in ``(0, 1]``; the ``steps`` steps then run on the
            grid ``t_start, ..., 0``. Below 1 it is SDEdit (Meng et al. 2022): pass a clip
            noised to ``t_start`` as ``noise`` and it is denoised from there.

    Returns:
        ``x0`` of ``shape``, in the model range ``[-1, 1]`` for a model trained there
        (not clamped; :func:`vdmcourse.course.to_unit_range` clamps for display).
    """
    _check_sampler(sampler, steps)
    schedule = resolve_schedule(schedule, objective)  # also refuses an unknown objective
    if objective == "eps" and isinstance(schedule, FlowSchedule):
        raise ValueError("eps-prediction cannot start at t = 1 on the flow path (alpha = 0 leaves x0 undefined); "
                         "use objective 'flow', 'v' or 'x0'")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1]; got {eta}")
    check_scale(guidance_scale)
    low, high = check_guidance_interval(guidance_interval)
    if isinstance(t_start, bool) or not isinstance(t_start, (int, float)) or not 0.0 < t_start <= 1.0:
        raise ValueError(f"t_start must lie in (0, 1] (1: start from pure noise); got {t_start!r}")
    shape = tuple(shape)
    if not shape or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ValueError(f"shape must be a tuple of positive ints such as (B, T, C, H, W); got {shape}")
    if device is None:
        device = _model_device(model, noise.device if noise is not None else torch.device("cpu"))
    device = torch.device(device)
    bf16 = fast_paths.resolve_precision(precision, device) == "bf16"
    net = fast_paths.compiled(model) if compile and isinstance(model, torch.nn.Module) else model
    mix = noise_mix_of(model)
    if noise is None:
        noise = frame_noise(shape, mix=mix, generator=generator, device=generator.device if generator is not None else device)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise must have shape {shape}; got {tuple(noise.shape)}")
    if cond is not None:
        cond = check_labels(cond, shape[0]).to(device)

    def denoise(x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        t_batch = torch.full((shape[0],), t, device=device, dtype=x.dtype)  # (B,)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            scale = guidance_scale if low <= t <= high else 1.0
            output = guided_output(net, x, t_batch, cond, scale, null_label=null_label).to(x.dtype)
        if output.shape != x.shape:
            raise ValueError(f"the model returned shape {tuple(output.shape)}; expected x's shape {tuple(x.shape)}")
        x0, eps = predict_x0_eps(output, x, t_batch, objective=objective, schedule=schedule)
        if clip_x0:
            alpha, sigma = _alpha_sigma(schedule, t)
            x0 = x0.clamp(-1, 1)
            eps = (x - alpha * x0) / sigma
        return x0, eps

    def gaussian(like: torch.Tensor) -> torch.Tensor:
        return frame_noise(like.shape, mix=mix, generator=generator, dtype=like.dtype,
                           device=generator.device if generator is not None else device).to(device)

    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    with fast_paths.channels_last(model, channels_last):
        try:
            x = noise.to(device)
            times = torch.linspace(t_start, 0, steps + 1, dtype=torch.float64).tolist()
            previous = None  # dpm++2m: the last step's (time, x0_hat)
            for step in tqdm(range(steps), desc=f"{sampler} sampling", disable=not progress, leave=False):
                t, s = times[step], times[step + 1]
                x0, eps = denoise(x, t)
                if sampler == "ddpm":
                    x = _ddpm_step(schedule, x, x0, t, s, gaussian)
                elif sampler == "ddim":
                    x = _ddim_step(schedule, x0, eps, t, s, eta, gaussian)
                elif sampler == "dpm++2m":
                    x, previous = _dpmpp_2m_step(schedule, x, x0, eps, t, s, previous), (t, x0)
                else:
                    x = _ode_step(schedule, x, x0, eps, t, s, denoise if sampler == "heun" else None)
                if callback is not None:
                    callback(step, x, x0)
            return x
        finally:
            if was_training:
                model.train()


def _ddpm_step(schedule, x, x0, t, s, gaussian):
    """One ancestral step: a draw of ``q(x_s | x_t, x0_hat)``."""
    t_batch = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)  # (B,)
    s_batch = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)  # (B,)
    mean, variance = schedule.posterior(x, x0, t_batch, s_batch)
    return mean + variance.sqrt() * gaussian(x)


def _ddim_step(schedule, x0, eps, t, s, eta, gaussian):
    """``x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z`` (Song et al. 2021, eq. 12)."""
    alpha_s, sigma_s = _alpha_sigma(schedule, s)
    if eta == 0:
        return alpha_s * x0 + sigma_s * eps
    alpha_t, sigma_t = _alpha_sigma(schedule, t)
    alpha_ts = alpha_t / alpha_s
    posterior_variance = (sigma_t**2 - alpha_ts**2 * sigma_s**2) * sigma_s**2 / sigma_t**2
    c = eta * math.sqrt(posterior_variance)
    return alpha_s * x0 + math.sqrt(max(sigma_s**2 - c**2, 0.0)) * eps + c * gaussian(x0)


def _log_snr(schedule, t: float) -> float:
    """``lambda = log(alpha / sigma)`` at ``t`` (-inf where alpha = 0, +inf where sigma = 0)."""
    alpha, sigma = _alpha_sigma(schedule, t)
    if alpha <= 0:
        return -math.inf
    return math.inf if sigma <= 0 else math.log(alpha / sigma)


def _dpmpp_2m_step(schedule, x, x0, eps, t, s, previous):
    """One DPM-Solver++(2M) step from ``t`` to ``s`` (Lu et al. 2022b, Algorithm 2);
    ``previous``: the last step's ``(time, x0_hat)`` or None. DDIM where either end or the
    previous time is infinite in ``lambda`` (the first step on the flow path, the last step)."""
    alpha_s, sigma_s = _alpha_sigma(schedule, s)
    lambda_t, lambda_s = _log_snr(schedule, t), _log_snr(schedule, s)
    lambda_previous = -math.inf if previous is None else _log_snr(schedule, previous[0])
    if not all(map(math.isfinite, (lambda_t, lambda_s, lambda_previous))):
        return alpha_s * x0 + sigma_s * eps  # first order: DDIM (eta = 0)
    alpha_t, sigma_t = _alpha_sigma(schedule, t)
    h, h_previous = lambda_s - lambda_t, lambda_t - lambda_previous
    r = h_previous / h
    d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous[1]  # x0 extrapolated linearly in lambda
    return (sigma_s / sigma_t) * x - alpha_s * math.expm1(-h) * d


def _ode_step(schedule, x, x0, eps, t, s, denoise):
    """One Euler step, or Heun's when ``denoise`` is given and ``s > 0``.

    Any path is the straight path in disguise: ``z = x / (alpha + sigma)`` equals
    ``(1 - tau) x0 + tau eps`` with ``tau = sigma / (alpha + sigma)`` in ``[0, 1]``, so the
    ODE is ``dz/dtau = eps - x0`` on every schedule (on the flow path ``z = x``, ``tau = t``).
    """
    alpha_t, sigma_t = _alpha_sigma(schedule, t)
    alpha_s, sigma_s = _alpha_sigma(schedule, s)
    tau_t, tau_s = sigma_t / (alpha_t + sigma_t), sigma_s / (alpha_s + sigma_s)
    z = x / (alpha_t + sigma_t)
    slope = eps - x0  # dz/dtau
    z_s = z + (tau_s - tau_t) * slope
    if denoise is not None and s > 0:
        x0_s, eps_s = denoise((alpha_s + sigma_s) * z_s, s)
        z_s = z + (tau_s - tau_t) * (slope + (eps_s - x0_s)) / 2
    return (alpha_s + sigma_s) * z_s
