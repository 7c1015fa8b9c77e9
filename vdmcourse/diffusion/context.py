"""Masked-frame conditioning: one training scheme for prediction, extension and interpolation.

Some frames of a clip are *context*: given, not generated. Open-Sora (Zheng et al.
2024) trains one model for image-to-video, frame prediction, extension and
interpolation with a single idea, used here:

* context frames stay clean -- their own time is 0, so the model is *told* they are
  clean (it needs a per-frame time ``t`` of shape ``(B, T)``);
* they are left out of the loss: the model is never asked to reproduce what it was given;
* the mask is drawn at random per clip during training (:data:`CONTEXT_MASKS`: none,
  the first frame, the first k, the last k, every n-th), so one model serves every use;
* optionally the context is noise-augmented: noised to a small level ``t_ctx`` that is
  given to the model as those frames' time, so at sampling time slightly wrong
  context (the model's own earlier output) looks like something it was trained on
  (the "noise augmentation" of cascaded models, Ho et al. 2022; SVD's
  ``noise_aug_strength``), which fights error accumulation in long rollouts.

At sampling time (:func:`sample_with_context`) the context frames are put back at
every model call, with their time, and pasted exactly into the result.

**Diffusion forcing** (Chen et al. 2024) is the alternative training scheme: an independent
noise level per frame (``training_loss(..., one_t_per_clip=False)``), so the model learns
every mix of clean, half-noisy and noisy frames. It samples on a per-frame time grid
(:func:`forcing_times`): all frames together, or a *pyramid* where each later frame lags
behind (is noisier than) the one before -- the first frames come out clean first and the
later ones are drawn knowing more and more of them (:func:`sample_forcing`).

Masks are boolean ``(B, T)`` tensors, True where a frame is context.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vdmcourse.diffusion.guidance import NULL_LABEL, check_labels, guided_output
from vdmcourse.diffusion.objectives import frame_noise, model_target, noise_mix_of, resolve_schedule, sample_timesteps
from vdmcourse.diffusion.samplers import sample
from vdmcourse.nn.embeddings import drop_labels

__all__ = [
    "CONTEXT_MASKS",
    "ContextConfig",
    "context_mask",
    "random_context_masks",
    "random_context_times",
    "frame_times",
    "masked_training_loss",
    "sample_with_context",
    "FORCING_SCHEDULES",
    "forcing_times",
    "sample_forcing",
]

CONTEXT_MASKS = ("none", "first", "first_k", "last_k", "every_n")
FORCING_SCHEDULES = ("together", "pyramid")


@dataclass(frozen=True)
class ContextConfig:
    """How training picks each clip's context frames (and their noise level).

    Attributes:
        probabilities: one per kind of :data:`CONTEXT_MASKS`, in that order; they must sum to 1.
        max_k: ``first_k`` / ``last_k`` draw k uniformly from ``1 .. max_k`` (below T).
        every_n: ``every_n`` draws n from these (frames 0, n, 2n, ... are context; n = T - 1
            gives both ends: interpolation).
        noise_probability: chance that a clip's context is noise-augmented.
        max_noise: an augmented clip's context time is drawn uniformly from ``[0, max_noise]``.
    """

    probabilities: tuple[float, ...] = (0.15, 0.1, 0.4, 0.1, 0.25)
    max_k: int = 5
    every_n: tuple[int, ...] = (2, 3, 9)
    noise_probability: float = 0.5
    max_noise: float = 0.2

    def __post_init__(self):
        if len(self.probabilities) != len(CONTEXT_MASKS) or any(p < 0 for p in self.probabilities):
            raise ValueError(f"ContextConfig: probabilities must be {len(CONTEXT_MASKS)} numbers >= 0, one per {CONTEXT_MASKS}; got {self.probabilities!r}")
        if abs(sum(self.probabilities) - 1.0) > 1e-6:
            raise ValueError(f"ContextConfig: probabilities must sum to 1; got {self.probabilities!r} (sum {sum(self.probabilities)})")
        if not isinstance(self.max_k, int) or self.max_k < 1:
            raise ValueError(f"ContextConfig: max_k must be an int >= 1; got {self.max_k!r}")
        if not self.every_n or not all(isinstance(n, int) and n >= 1 for n in self.every_n):
            raise ValueError(f"ContextConfig: every_n must be a non-empty tuple of ints >= 1; got {self.every_n!r}")
        if not 0.0 <= self.noise_probability <= 1.0:
            raise ValueError(f"ContextConfig: noise_probability must lie in [0, 1]; got {self.noise_probability!r}")
        if not 0.0 <= self.max_noise <= 1.0:
            raise ValueError(f"ContextConfig: max_noise must lie in [0, 1]; got {self.max_noise!r}")


def context_mask(kind: str, frames: int, *, k: int = 1, n: int = 2) -> torch.Tensor:
    """The ``(T,)`` boolean mask of one kind: ``"none"``, ``"first"``, ``"first_k"``
    (frames ``0 .. k-1``), ``"last_k"`` (the last k), ``"every_n"`` (frames 0, n, 2n, ...)."""
    if kind not in CONTEXT_MASKS:
        raise ValueError(f"context_mask: kind must be one of {CONTEXT_MASKS}; got {kind!r}")
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"context_mask: frames must be an int >= 1; got {frames!r}")
    index = torch.arange(frames)
    if kind == "none":
        return torch.zeros(frames, dtype=torch.bool)
    if kind == "first":
        return index < 1
    if kind in ("first_k", "last_k") and not (isinstance(k, int) and 1 <= k < frames):
        raise ValueError(f"context_mask: k must be an int in [1, frames) = [1, {frames}) for {kind!r}; got {k!r}")
    if kind == "first_k":
        return index < k
    if kind == "last_k":
        return index >= frames - k
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"context_mask: n must be an int >= 1 for 'every_n'; got {n!r}")
    return index % n == 0


def random_context_masks(
    batch: int, frames: int, config: ContextConfig | None = None, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One mask per clip, of a kind drawn with ``config.probabilities``: ``(B, T)`` bool (CPU).
    Never all frames: ``k`` stays below T, and an ``every_n`` mask with n = 1 is dropped to none."""
    config = config or ContextConfig()
    kinds = torch.multinomial(torch.tensor(config.probabilities), batch, replacement=True, generator=generator)  # (B,)
    ks = torch.randint(1, min(config.max_k, frames - 1) + 1, (batch,), generator=generator) if frames > 1 else None
    ns = torch.tensor(config.every_n)[torch.randint(len(config.every_n), (batch,), generator=generator)]
    masks = []
    for kind, k, n in zip(kinds.tolist(), (ks.tolist() if ks is not None else [1] * batch), ns.tolist()):
        name = CONTEXT_MASKS[kind]
        if frames == 1 or (name == "every_n" and n == 1):
            name = "none"
        masks.append(context_mask(name, frames, k=k, n=n))
    return torch.stack(masks)  # (B, T)


def random_context_times(batch: int, config: ContextConfig | None = None, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each clip's context time ``(B,)`` (CPU): 0 (clean), or with ``config.noise_probability``
    a level drawn uniformly from ``[0, config.max_noise]`` (noise augmentation)."""
    config = config or ContextConfig()
    augmented = torch.rand(batch, generator=generator) < config.noise_probability
    level = torch.rand(batch, generator=generator) * config.max_noise
    return torch.where(augmented, level, torch.zeros(batch))


def frame_times(t: torch.Tensor, mask: torch.Tensor, context_t: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Per-frame times ``(B, T)``: ``t`` ``(B,)`` on the generated frames, ``context_t``
    (a number or ``(B,)``) on the context frames of ``mask`` ``(B, T)``."""
    context_t = torch.as_tensor(context_t, dtype=t.dtype, device=t.device)
    if context_t.ndim == 1:
        context_t = context_t[:, None]  # (B, 1)
    return torch.where(mask.to(t.device), context_t, t[:, None])  # (B, T)


def _check_mask(mask, x0: torch.Tensor, caller: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(x0.shape[:2]):
        got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{caller}: mask must be a bool tensor of shape (B, T) = {tuple(x0.shape[:2])}, True on context frames; got {got}")
    return mask.to(x0.device)


def masked_training_loss(
    model,
    x0: torch.Tensor,
    mask: torch.Tensor,
    *,
    context_t: torch.Tensor | float = 0.0,
    objective: str = "flow",
    schedule=None,
    cond: torch.Tensor | None = None,
    p_uncond: float = 0.0,
    generator: torch.Generator | None = None,
    t_distribution: str = "uniform",
    t_mean: float = 0.0,
) -> torch.Tensor:
    """The denoising loss with context frames (a scalar tensor).

    ``x0``: clean clips ``(B, T, C, H, W)`` in ``[-1, 1]``; ``mask``: bool ``(B, T)``,
    True on context frames. One time ``t`` per clip is drawn for the generated frames;
    context frames get ``context_t`` (0: clean, exactly ``x0``; a number or ``(B,)``: noise
    augmentation) and the model sees those per-frame times ``(B, T)``. The mean squared
    error runs over the generated frames only, so the context frames' outputs get no
    gradient. ``generator`` fixes the times, the noise and the label dropout, as in
    :func:`~vdmcourse.diffusion.objectives.training_loss`.
    """
    schedule = resolve_schedule(schedule, objective)
    if not isinstance(x0, torch.Tensor) or x0.ndim != 5:
        raise ValueError(f"masked_training_loss: x0 must be clips of shape (B, T, C, H, W); got {getattr(x0, 'shape', type(x0).__name__)}")
    mask = _check_mask(mask, x0, "masked_training_loss")
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1]; got {p_uncond}")
    batch = x0.shape[0]
    t = sample_timesteps(batch, distribution=t_distribution, mean=t_mean, generator=generator, device=x0.device).to(x0.dtype)
    times = frame_times(t, mask, context_t)  # (B, T): context frames at their own (small) time
    eps = frame_noise(x0.shape, mix=noise_mix_of(model), generator=generator, device=x0.device, dtype=x0.dtype)
    if cond is not None:
        check_labels(cond, batch)
        if p_uncond > 0:
            cond = drop_labels(cond, p_uncond, null_label=NULL_LABEL, generator=generator)
    elif p_uncond > 0:
        raise ValueError(f"p_uncond={p_uncond} needs labels to drop; got cond=None")
    x_t = schedule.q_sample(x0, times, eps)
    output = model(x_t, times, cond=cond)
    if output.shape != x0.shape:
        raise ValueError(f"the model returned shape {tuple(output.shape)}; expected x's shape {tuple(x0.shape)}")
    target = model_target(x0, eps, times, objective=objective, schedule=schedule)
    weight = (~mask).to(x0.dtype).reshape(mask.shape + (1,) * (x0.ndim - 2))  # (B, T, 1, 1, 1): 0 on context
    per_frame = x0[0, 0].numel()
    squared = (output - target).square() * weight
    return squared.sum() / (weight.sum() * per_frame).clamp(min=1)


@torch.no_grad()
def sample_with_context(
    model,
    context: torch.Tensor,
    mask: torch.Tensor,
    *,
    context_t: float = 0.0,
    objective: str = "flow",
    sampler: str = "euler",
    steps: int = 10,
    schedule=None,
    cond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Generate the frames of ``mask == False`` given the others.

    ``context``: ``(B, T, C, H, W)`` in ``[-1, 1]``; only its frames where ``mask``
    (bool ``(B, T)``) is True are read. At every model call those frames are replaced by
    the context -- noised once to ``context_t`` when it is above 0 -- with time
    ``context_t``, while the other frames follow the sampler. Returns ``(B, T, C, H, W)``
    whose context frames equal ``context`` exactly. The start noise, then the context
    noise, come from ``generator``.
    """
    mask = _check_mask(mask, context, "sample_with_context")
    if not 0.0 <= context_t < 1.0:
        raise ValueError(f"sample_with_context: context_t must lie in [0, 1); got {context_t!r}")
    schedule = resolve_schedule(schedule, objective)
    device = context.device
    draw_device, mix = generator.device if generator is not None else device, noise_mix_of(model)
    noise = frame_noise(context.shape, mix=mix, generator=generator, device=draw_device).to(device)
    given = context
    if context_t > 0:
        context_noise = frame_noise(context.shape, mix=mix, generator=generator, device=draw_device).to(device)
        given = schedule.q_sample(context, torch.full(context.shape[:1], context_t, device=device), context_noise)
    expand = mask.reshape(mask.shape + (1,) * (context.ndim - 2))  # (B, T, 1, 1, 1)

    def with_context(x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        copies = x.shape[0] // given.shape[0]  # 2 under classifier-free guidance (cond and null batches)
        x = torch.where(expand.repeat(copies, 1, 1, 1, 1), given.repeat(copies, 1, 1, 1, 1), x)
        return model(x, frame_times(t, mask.repeat(copies, 1), context_t), cond=cond)

    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        out = sample(
            with_context, tuple(context.shape), objective=objective, sampler=sampler, steps=steps, schedule=schedule,
            cond=cond, guidance_scale=guidance_scale, noise=noise, generator=generator, progress=progress, device=device,
        )
    finally:
        if was_training:
            model.train()
    return torch.where(expand, context, out)


def forcing_times(steps: int, frames: int, schedule: str = "together", *, delay: int = 1) -> torch.Tensor:
    """The per-frame time grid of diffusion-forcing sampling: ``(K + 1, T)``, row k the times
    of the T frames after k steps, from all 1 (noise) to all 0 (clean).

    ``"together"``: every frame on ``1 - k / steps`` (K = steps). ``"pyramid"``: frame f starts
    ``f * delay`` steps after frame 0 (K = steps + delay (T - 1)), so at every row a later frame
    is at least as noisy as an earlier one.
    """
    if schedule not in FORCING_SCHEDULES:
        raise ValueError(f"forcing_times: schedule must be one of {FORCING_SCHEDULES}; got {schedule!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"forcing_times: steps must be an int >= 1; got {steps!r}")
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"forcing_times: frames must be an int >= 1; got {frames!r}")
    if not isinstance(delay, int) or delay < 0:
        raise ValueError(f"forcing_times: delay must be an int >= 0; got {delay!r}")
    lag = delay * torch.arange(frames) if schedule == "pyramid" else torch.zeros(frames, dtype=torch.long)
    rows = torch.arange(steps + int(lag[-1]) + 1)[:, None]  # (K + 1, 1)
    progress = (rows - lag[None, :]).clamp(0, steps)  # (K + 1, T): steps each frame has taken
    return 1 - progress.to(torch.float64) / steps


@torch.no_grad()
def sample_forcing(
    model,
    shape: tuple[int, ...],
    *,
    schedule: str = "together",
    steps: int = 10,
    delay: int = 1,
    cond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Euler sampling of a flow model with one time per frame along :func:`forcing_times`.

    ``shape``: ``(B, T, C, H, W)``; the model is called with times ``(B, T)``. Each step moves
    frame f from its time ``t_f`` to the next row's ``s_f`` along the predicted velocity
    (``x += (s_f - t_f) v_f``; frames whose time does not change stay put). With
    ``"together"`` this is the plain Euler sampler. Returns ``(B, T, C, H, W)`` in ``[-1, 1]``.
    """
    grid = forcing_times(steps, shape[1], schedule, delay=delay)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    draw_device = generator.device if generator is not None else device
    x = frame_noise(shape, mix=noise_mix_of(model), generator=generator, device=draw_device).to(device)
    if cond is not None:
        cond = check_labels(cond, shape[0]).to(device)
    for now, after in zip(grid[:-1], grid[1:]):
        if torch.equal(now, after):
            continue
        t = now.to(device=device, dtype=x.dtype).expand(shape[0], -1)  # (B, T)
        velocity = guided_output(model, x, t, cond, guidance_scale)
        step = (after - now).to(device=device, dtype=x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
        x = x + step * velocity
    return x
