"""What the network is trained to predict, the exact conversions between the
choices, timestep sampling, and the training loss.

On a path ``x_t = alpha x0 + sigma eps`` (see :mod:`vdmcourse.diffusion.schedules`)
every objective is a linear combination ``a x0 + b eps`` of the clean sample and
the noise:

========  =================================  ==========================================
name      target                             paper
========  =================================  ==========================================
``eps``   ``eps``                            Ho et al. 2020 (DDPM)
``x0``    ``x0``                             the clean sample itself
``v``     ``alpha eps - sigma x0``           Salimans & Ho 2022 (progressive distillation)
``flow``  ``eps - x0`` = ``d x_t / dt``      Liu et al. 2022 (rectified flow), Lipman et al. 2022
========  =================================  ==========================================

Given ``x_t`` and ``t``, a prediction of any of them fixes both ``x0`` and ``eps``
(two linear equations in two unknowns), so the conversions are exact:
:func:`predict_x0_eps`, :func:`model_target`, :func:`convert`.

Convention for flow (tested): ``x_t = (1 - t) x0 + t eps``, velocity target
``eps - x0``, ``t = 1`` is noise. The ``flow`` objective lives on that straight path
only; ``eps``, ``x0`` and ``v`` work on any schedule.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vdmcourse.diffusion.guidance import check_labels, null_label_of
from vdmcourse.diffusion.schedules import (
    FlowSchedule,
    Schedule,
    broadcast_time,
    check_time,
    cosine_schedule,
    linear_schedule,
)
from vdmcourse.nn.embeddings import drop_labels

__all__ = [
    "OBJECTIVES",
    "TIME_DISTRIBUTIONS",
    "resolve_schedule",
    "model_target",
    "predict_x0_eps",
    "convert",
    "frame_noise",
    "noise_mix_of",
    "sample_timesteps",
    "check_motion_weight",
    "training_loss",
]

OBJECTIVES = ("flow", "eps", "v", "x0")
TIME_DISTRIBUTIONS = ("uniform", "logit_normal")
_SCHEDULES = {"flow": FlowSchedule, "cosine": cosine_schedule, "linear": linear_schedule}


def _check_objective(objective, name: str = "objective") -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"{name} must be one of {OBJECTIVES}; got {objective!r}")
    return objective


def resolve_schedule(schedule, objective: str) -> Schedule:
    """The schedule an objective trains and samples on.

    ``schedule`` is a :class:`Schedule`, a name (``"flow"``, ``"cosine"``, ``"linear"``,
    the latter two with 1000 steps), or ``None``: the straight path for ``"flow"``,
    the cosine schedule for ``"eps"``, ``"v"`` and ``"x0"``.
    """
    _check_objective(objective)
    if schedule is None:
        schedule = "flow" if objective == "flow" else "cosine"
    if isinstance(schedule, str):
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be a Schedule, None or one of {tuple(_SCHEDULES)}; got {schedule!r}")
        schedule = _SCHEDULES[schedule]()
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, None or a name; got {type(schedule).__name__}")
    if objective == "flow" and not isinstance(schedule, FlowSchedule):
        raise ValueError(
            f"the flow objective's target eps - x0 is the velocity of the straight path "
            f"x_t = (1 - t) x0 + t eps; use schedule=None or 'flow', not {schedule!r}"
        )
    return schedule


def _coefficients(objective: str, alpha: torch.Tensor, sigma: torch.Tensor):
    """``(a, b)`` with target = ``a * x0 + b * eps``."""
    if objective == "eps":
        return torch.zeros_like(alpha), torch.ones_like(alpha)
    if objective == "x0":
        return torch.ones_like(alpha), torch.zeros_like(alpha)
    if objective == "v":
        return -sigma, alpha
    return -torch.ones_like(alpha), torch.ones_like(alpha)  # flow: eps - x0


def _path(x: torch.Tensor, t: torch.Tensor, objective: str, schedule):
    schedule = resolve_schedule(schedule, objective)
    alpha, sigma = schedule.alpha_sigma(check_time(t))
    return broadcast_time(alpha, x), broadcast_time(sigma, x)


def model_target(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, *, objective: str, schedule=None) -> torch.Tensor:
    """What a model trained with ``objective`` should output for the pair ``(x0, eps)``
    at time ``t``. ``x0``, ``eps``: ``(B, ...)``; ``t``: ``(B,)`` or ``(B, T)`` in ``[0, 1]``."""
    if eps.shape != x0.shape:
        raise ValueError(f"model_target: eps must have x0's shape {tuple(x0.shape)}; got {tuple(eps.shape)}")
    alpha, sigma = _path(x0, t, objective, schedule)
    a, b = _coefficients(objective, alpha, sigma)
    return a * x0 + b * eps


def predict_x0_eps(
    output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *, objective: str, schedule=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(x0, eps)`` that a model output implies, given ``x_t`` and ``t``.

    Solves ``x_t = alpha x0 + sigma eps`` and ``output = a x0 + b eps`` exactly. Singular
    where the objective carries no information: ``eps`` at ``alpha = 0`` (t = 1 on the
    flow path) and ``x0`` at ``sigma = 0`` (t = 0); ``v`` and ``flow`` never are.
    ``output``, ``x_t``: ``(B, ...)``; ``t``: ``(B,)`` or ``(B, T)``. Returns two tensors of
    ``x_t``'s shape.
    """
    if output.shape != x_t.shape:
        raise ValueError(f"model output must have x_t's shape {tuple(x_t.shape)}; got {tuple(output.shape)}")
    alpha, sigma = _path(x_t, t, objective, schedule)
    if objective == "eps":
        return (x_t - sigma * output) / alpha, output
    if objective == "x0":
        return output, (x_t - alpha * output) / sigma
    a, b = _coefficients(objective, alpha, sigma)
    det = alpha * b - sigma * a  # alpha^2 + sigma^2 for v, alpha + sigma for flow: never 0
    x0 = (b * x_t - sigma * output) / det
    eps = (alpha * output - a * x_t) / det
    return x0, eps


def convert(
    output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *, source: str, target: str, schedule=None
) -> torch.Tensor:
    """Turn a ``source``-prediction into the equivalent ``target``-prediction (same path).

    E.g. ``convert(eps_hat, x_t, t, source="eps", target="v", schedule=s)``. ``schedule``
    is resolved for ``source`` (``None``: flow path if either side is ``"flow"``).
    Shapes as in :func:`predict_x0_eps`.
    """
    _check_objective(source, "source")
    _check_objective(target, "target")
    if schedule is None and "flow" in (source, target):
        schedule = "flow"
    schedule = resolve_schedule(schedule, source)
    resolve_schedule(schedule, target)
    x0, eps = predict_x0_eps(output, x_t, t, objective=source, schedule=schedule)
    return model_target(x0, eps, t, objective=target, schedule=schedule)


def frame_noise(
    shape: tuple[int, ...],
    *,
    mix: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Standard Gaussian noise of ``shape`` ``(B, T, ...)`` whose frames share a part: the
    mixed noise prior of PYoCo (Ge et al. 2023, "Preserve Your Own Correlation: A Noise Prior
    for Video Diffusion Models"), ``eps[:, t] = (own[:, t] + mix * shared) / sqrt(1 + mix**2)``
    with ``shared`` ``(B, 1, ...)`` and every ``own[:, t]`` independent ``N(0, I)``.

    Every element is still ``N(0, 1)``, so the flow path ends where it always does; two frames
    of one clip correlate ``mix**2 / (1 + mix**2)`` (0.5 at ``mix=1``, 0.8 at 2). ``mix=0``:
    independent frames, the very draw ``torch.randn(shape, generator=generator)`` gives. A model
    trained on such noise must be sampled from it (:func:`noise_mix_of` says which it was).
    Drawn on the generator's device, returned on ``device``.
    """
    if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not (math.isfinite(mix) and mix >= 0):
        raise ValueError(f"frame_noise: mix must be a finite number >= 0 (0: independent frames); got mix={mix!r}")
    shape = tuple(shape)
    if mix and len(shape) < 3:
        raise ValueError(f"frame_noise: mix={mix} shares noise across frames and needs shape (B, T, ...); got {shape}")
    draw_device = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=draw_device, dtype=dtype)
    if mix:
        shared = torch.randn((shape[0], 1, *shape[2:]), generator=generator, device=draw_device, dtype=dtype)
        noise = (noise + mix * shared) / math.sqrt(1 + mix * mix)
    return noise.to(device) if device is not None else noise


def noise_mix_of(model) -> float:
    """The :func:`frame_noise` mix ``model`` is trained and sampled with: its
    ``config.noise_mix`` (also through a ``torch.compile`` or DistributedDataParallel wrapper),
    else 0 (independent frames, what every model without the field was trained on)."""
    for owner in (model, getattr(model, "_orig_mod", None), getattr(model, "module", None)):
        mix = getattr(getattr(owner, "config", None), "noise_mix", None)
        if mix is not None:
            return mix
    return 0.0


def sample_timesteps(
    n: int,
    *,
    distribution: str = "uniform",
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` training times in ``[0, 1]``, shape ``(n,)``, float32.

    ``"uniform"``: ``t ~ U[0, 1)``. ``"logit_normal"``: ``t = sigmoid(mean + std * z)``,
    ``z ~ N(0, 1)`` -- more weight on middle times, as in Stable Diffusion 3
    (Esser et al. 2024) and Open-Sora; ``mean > 0`` moves the weight towards noise
    (``t = 1``). Drawn on the generator's device, returned on ``device``.
    """
    if distribution not in TIME_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {TIME_DISTRIBUTIONS}; got {distribution!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    if std <= 0:
        raise ValueError(f"std must be > 0; got {std}")
    if distribution == "uniform" and (mean, std) != (0.0, 1.0):
        raise ValueError(f"mean and std shape the logit-normal distribution only; got mean={mean}, std={std} with 'uniform'")
    draw_device = generator.device if generator is not None else device
    if distribution == "uniform":
        t = torch.rand(n, generator=generator, device=draw_device)
    else:
        t = torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=draw_device))
    return t.to(device) if device is not None else t


def check_motion_weight(weight) -> float:
    """``weight`` as the frame-difference weight of :func:`training_loss`, or a ValueError."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
        raise ValueError(f"motion_weight must be a finite number >= 0; got {weight!r}")
    return float(weight)


def check_frame_t_share(share) -> float:
    """``share`` as :func:`training_loss`'s share of clips with a time per frame, or a ValueError."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(f"frame_t_share must be a number in [0, 1] (the share of clips with a time per frame); got {share!r}")
    return float(share)


def training_loss(
    model,
    x0: torch.Tensor,
    *,
    objective: str = "flow",
    schedule=None,
    cond: torch.Tensor | None = None,
    p_uncond: float = 0.0,
    generator: torch.Generator | None = None,
    one_t_per_clip: bool = True,
    t_distribution: str = "uniform",
    t_mean: float = 0.0,
    t_std: float = 1.0,
    null_label: int | None = None,
    motion_weight: float = 0.0,
    frame_t_share: float = 0.0,
) -> torch.Tensor:
    """The denoising loss for one batch: noise ``x0`` to a random time, ask the model
    for ``objective``'s target, return the mean squared error (a scalar tensor).

    ``model(x_t, t, cond=cond)``: the course's model contract. ``x0``: clean clips
    ``(B, T, C, H, W)`` in ``[-1, 1]`` (any ``(B, ...)`` works). ``cond``: labels
    ``(B,)`` / ``(B, K)`` or ``None``; with ``p_uncond > 0`` each clip's labels become
    the model's null label with that probability (classifier-free guidance training;
    ``null_label`` overrides :func:`~vdmcourse.diffusion.guidance.null_label_of`).

    ``one_t_per_clip=True`` (the usual): one ``t`` per clip, shape ``(B,)``, shared by all
    its frames. ``False``: an independent ``t`` per frame, shape ``(B, T)``, passed to
    the model as is -- only for models built for per-frame noise levels (diffusion
    forcing, Chen et al. 2024). ``t_distribution``, ``t_mean``, ``t_std``: how the
    times are drawn, see :func:`sample_timesteps`. ``frame_t_share`` in ``[0, 1]``: that share
    of the clips (each clip drawn with this probability) gets an independent time per frame,
    the others one time for the clip -- diffusion forcing's training beside the usual, so a
    model learns to place a noisy frame from its cleaner neighbours and still samples with
    one time for the clip; the times are then ``(B, T)`` for every clip (a shared clip's
    row constant). 0 (the default) draws exactly what it always drew.
    ``generator`` fixes the times, the noise and the label dropout (drawn in that order).
    The noise is :func:`frame_noise` with the model's :func:`noise_mix_of` (independent
    frames unless the model says otherwise).

    ``motion_weight`` > 0 adds that weight times the squared error of the frame-to-frame
    differences (output[:, 1:] - output[:, :-1] against the target's): the same target,
    with errors that change from frame to frame -- jitter -- weighed more.
    """
    schedule = resolve_schedule(schedule, objective)
    check_motion_weight(motion_weight)
    if not isinstance(p_uncond, (int, float)) or not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1]; got {p_uncond}")
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2:
        raise ValueError(f"x0 must be a tensor of shape (B, T, C, H, W); got {getattr(x0, 'shape', type(x0).__name__)}")
    batch = x0.shape[0]
    frame_t_share = check_frame_t_share(frame_t_share)
    if frame_t_share and (not one_t_per_clip or x0.ndim != 5):
        raise ValueError(f"frame_t_share={frame_t_share} mixes per-clip and per-frame times: it needs one_t_per_clip=True and "
                         f"clips (B, T, C, H, W); got one_t_per_clip={one_t_per_clip}, x0 of shape {tuple(x0.shape)}")
    if one_t_per_clip:
        t = sample_timesteps(batch, distribution=t_distribution, mean=t_mean, std=t_std, generator=generator, device=x0.device)  # (B,)
        if frame_t_share:  # drawn after the per-clip times, so the share 0 keeps the old random stream
            frames = x0.shape[1]
            own = sample_timesteps(batch * frames, distribution=t_distribution, mean=t_mean, std=t_std, generator=generator, device=x0.device)
            chosen = sample_timesteps(batch, generator=generator, device=x0.device) < frame_t_share  # uniform: a coin per clip
            t = torch.where(chosen[:, None], own.reshape(batch, frames), t[:, None])  # (B, T)
    else:
        if x0.ndim != 5:
            raise ValueError(f"one_t_per_clip=False needs clips of shape (B, T, C, H, W); got {tuple(x0.shape)}")
        frames = x0.shape[1]
        t = sample_timesteps(
            batch * frames, distribution=t_distribution, mean=t_mean, std=t_std, generator=generator, device=x0.device
        )
        t = t.reshape(batch, frames)  # (B, T)
    t = t.to(x0.dtype)
    eps = frame_noise(x0.shape, mix=noise_mix_of(model), generator=generator, device=x0.device, dtype=x0.dtype)
    if cond is not None:
        cond = check_labels(cond, batch)
        if p_uncond > 0:
            cond = drop_labels(cond, p_uncond, null_label=null_label_of(model, null_label), generator=generator)
    elif p_uncond > 0:
        raise ValueError(f"p_uncond={p_uncond} needs labels to drop; got cond=None")
    x_t = schedule.q_sample(x0, t, eps)
    output = model(x_t, t, cond=cond)
    if output.shape != x0.shape:
        raise ValueError(f"the model returned shape {tuple(output.shape)}; expected x's shape {tuple(x0.shape)}")
    target = model_target(x0, eps, t, objective=objective, schedule=schedule)
    loss = F.mse_loss(output, target)
    if motion_weight:
        if x0.ndim != 5 or x0.shape[1] < 2:
            raise ValueError(f"motion_weight needs clips of shape (B, T, C, H, W) with T >= 2; got {tuple(x0.shape)}")
        loss = loss + motion_weight * F.mse_loss(output.diff(dim=1), target.diff(dim=1))
    return loss
