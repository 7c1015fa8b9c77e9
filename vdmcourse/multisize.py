"""One DiT for many clip sizes (lesson 07): clips of any canvas and length, bucketed
batches, and a fair way to score samples of sizes the evaluator was not trained on.

* :func:`generate_sized_clips` -- Moving MNIST on a ``height x width`` canvas (2:1, 1:2,
  square) for ``frames`` frames: the same digits, speeds and bounce law as a
  :class:`~vdmcourse.data.MovingMNISTConfig`, walls where the canvas ends.
* :func:`bucketed_batch` -- Open-Sora's bucketed batches as a preset's batch source: each
  step draws one size ``(T, H, W)`` from ``sizes`` and as many clips of it as keep the
  tokens per batch about those of ``batch_size`` clips of the reference size
  (:func:`vdmcourse.nn.dit.bucket_batch_sizes`).
* :func:`evaluator_window` -- the course's evaluator takes 32x32, 10-frame clips only. To
  score a clip of another size with it, cut a window of that size: the first frames, and
  the square around the digit's tracked path (zero-padded where the canvas is smaller).
  Real clips of the same size go through the same window, so what the cut does to the
  features is in the real-vs-real floor, not in the model's score.
* :func:`background_level` -- how much a model paints behind the digit, frame by frame (a
  real frame's background is about 0): the texture a model draws at frames it never saw.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vdmcourse.data import MovingMNISTConfig, render_clips, simulate_trajectories
from vdmcourse.data.moving_mnist import Clips, _random_velocities, digit_pool
from vdmcourse.metrics.physics import check_video, track_digits
from vdmcourse.metrics.temporal import _near_ink
from vdmcourse.nn.dit import bucket_batch_sizes, token_grid

__all__ = ["generate_sized_clips", "bucketed_batch", "evaluator_window", "background_level"]


def generate_sized_clips(
    n: int, config: MovingMNISTConfig, *, frames: int, height: int, width: int, generator: torch.Generator | None = None
) -> Clips:
    """``n`` Moving MNIST clips of ``frames`` frames on a ``height x width`` canvas, with
    ``config``'s digits, speed, bounce and split (its ``canvas`` and ``frames`` are ignored).

    Returns :class:`~vdmcourse.data.Clips` with ``video`` ``(n, frames, 1, height, width)``
    in ``[0, 1]``. On a square canvas with ``config``'s own size it equals
    ``generate_clips(n, config, generator=...)`` draw for draw. Each axis bounces on its
    own walls, so a 2:1 canvas needs deterministic bounces (a stochastic bounce redraws
    both velocity components at once).
    """
    size = config.digit_size
    for name, value in (("frames", frames), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"generate_sized_clips: {name} must be a positive int; got {value!r}")
    if height < size or width < size:
        raise ValueError(f"generate_sized_clips: a {height}x{width} canvas cannot hold a digit of {size} px (config.digit_size)")
    if height != width and config.bounce != "deterministic":
        raise ValueError(f"generate_sized_clips: a {height}x{width} canvas needs bounce='deterministic'; got {config.bounce!r}")
    if config.digits * size**2 > height * width:
        raise ValueError(f"generate_sized_clips: {config.digits} digits of {size} px do not fit a {height}x{width} canvas")
    pool_images, pool_labels = digit_pool(config)
    k = config.digits
    free = (height - size, width - size)
    choice = torch.randint(len(pool_labels), (n, k), generator=generator)  # (N, K)
    start = torch.rand((n, k, 2), generator=generator) * torch.tensor(free, dtype=torch.float32)  # (N, K, 2)
    velocity = _random_velocities(config.speed, (n, k), generator)  # (N, K, 2)
    motion = dict(bounce=config.bounce, speed=config.speed, generator=generator)
    if free[0] == free[1]:
        positions, velocities = simulate_trajectories(start, velocity, frames, free[0], **motion)
    else:  # each axis alone under its own free range: deterministic bounces never couple the axes
        rows = simulate_trajectories(start * torch.tensor([1.0, 0.0]), velocity * torch.tensor([1.0, 0.0]), frames, free[0], **motion)
        cols = simulate_trajectories(start * torch.tensor([0.0, 1.0]), velocity * torch.tensor([0.0, 1.0]), frames, free[1], **motion)
        positions, velocities = (torch.stack([r[..., 0], c[..., 1]], -1) for r, c in zip(rows, cols))  # (N, T, K, 2) each
    digits = pool_images[choice]  # (N, K, S, S)
    canvas = max(height, width)  # render on the enclosing square, keep the canvas: no digit reaches past it
    video = render_clips(digits, positions, canvas, combine=config.combine)[..., :height, :width]  # (N, T, 1, H, W)
    return Clips(video=video.contiguous(), labels=pool_labels[choice], positions=positions, velocities=velocities, digits=digits)


def bucketed_batch(
    generator: torch.Generator,
    *,
    batch_size: int,
    data: MovingMNISTConfig,
    sizes,
    patch,
    reference=None,
) -> dict:
    """A bucketed batch (Open-Sora): one size ``(T, H, W)`` drawn uniformly from ``sizes``,
    and ``{"video": (B, T, 1, H, W) in [0, 1], "labels": (B, K)}`` of that size, with B
    chosen so the batch holds about the tokens of ``batch_size`` clips of ``reference``
    (default ``data``'s own size) under the model's ``patch``."""
    sizes = [tuple(size) for size in sizes]
    if not sizes:
        raise ValueError("bucketed_batch: sizes must list at least one (T, H, W)")
    reference = tuple(reference) if reference is not None else (data.frames, data.canvas, data.canvas)
    tokens = batch_size * math.prod(token_grid((reference[0], 1, reference[1], reference[2]), patch))
    per_bucket = bucket_batch_sizes(sizes, patch, tokens)
    frames, height, width = sizes[int(torch.randint(len(sizes), (1,), generator=generator))]
    clips = generate_sized_clips(per_bucket[(frames, height, width)], data, frames=frames, height=height, width=width, generator=generator)
    return {"video": clips.video, "labels": clips.labels}


def evaluator_window(video: torch.Tensor, *, frames: int = 10, size: int = 32) -> torch.Tensor:
    """A ``frames x size x size`` window of each clip of ``video`` ``(B, T, 1, H, W)`` in
    ``[0, 1]``, for an evaluator trained on that size: ``(B, frames, 1, size, size)``.

    The first ``frames`` frames (``T >= frames`` is required); spatially, the square
    centred on the mean of the digits' tracked ink centroids, moved inside the canvas
    (the canvas centre when no ink is found). An axis shorter than ``size`` is
    zero-padded, centred."""
    video = check_video(video, caller="evaluator_window")
    b, t, _, h, w = video.shape
    if t < frames:
        raise ValueError(f"evaluator_window: the window takes the first {frames} frames; got clips of T={t}")
    video = video[:, :frames]
    pad_h, pad_w = max(size - h, 0), max(size - w, 0)
    video = F.pad(video, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))  # (B, frames, 1, H', W')
    h, w = video.shape[-2:]
    centres = track_digits(video, 1).centres[:, :, 0]  # (B, frames, 2): the ink as one blob
    centre = centres.nanmean(1)  # (B, 2)
    centre = torch.where(torch.isfinite(centre), centre, torch.tensor([(h - 1) / 2, (w - 1) / 2]))
    top = (centre[:, 0] - (size - 1) / 2).round().long().clamp(0, h - size)  # (B,)
    left = (centre[:, 1] - (size - 1) / 2).round().long().clamp(0, w - size)
    return torch.stack([video[i, :, :, r : r + size, c : c + size] for i, (r, c) in enumerate(zip(top.tolist(), left.tolist()))])


def background_level(video: torch.Tensor, *, threshold: float = 0.2, margin: int = 2) -> torch.Tensor:
    """Mean intensity of each frame's background, ``(B, T)`` for ``video`` ``(B, T, 1, H, W)``
    in ``[0, 1]``: the pixels more than ``margin`` px from ink, as
    :func:`~vdmcourse.metrics.flicker` finds them. A real Moving MNIST frame scores about 0 (a
    digit's faint stray pixels: under 0.001); a haze or texture a model paints behind the digit
    adds its mean brightness. NaN for a frame with no background."""
    frames = check_video(video, caller="background_level")[:, :, 0]  # (B, T, H, W)
    background = ~_near_ink(frames, threshold, margin)
    return (frames * background).sum((-1, -2)) / background.sum((-1, -2))  # (B, T)
