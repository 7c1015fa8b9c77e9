"""The corruption ladder: real clips made worse in one known way, at graded severity.

A metric earns trust when it rises (or falls) steadily as a corruption it should
see gets stronger, and stays put for corruptions it should not care about. Each
corruption here takes real clips *with their ground truth* (:class:`vdmcourse.data.Clips`)
and a level 0..4 (0 = untouched) and returns videos ``(B, T, 1, H, W)`` in [0, 1].

Spatial:  ``blur`` (Gaussian, sigma 0.5..2 px), ``noise`` (Gaussian, std 0.05..0.3).
Temporal -- every single frame stays a perfect real frame:
          ``freeze`` (the last k frames repeat the frame before them),
          ``shuffle`` (k frames trade places), ``reverse`` (the last k frames replay
          the motion backwards: a reversal in mid-air).
Physical: ``velocity`` (each step's velocity gets a random kick, 0.25..1.5 px/frame,
          walls still obeyed), ``swap`` (the first digit becomes a digit of another
          class for the last k frames), ``delete`` (the first digit vanishes for the
          last k frames).
k grows with the level (:func:`frames_affected`): 2, 4, 6, 8 frames of 10 for freeze,
shuffle and delete; 1, 2, 3, 4 for reverse (it needs as many frames before the turn);
1, 2, 4, 5 for swap -- beyond half the clip a swap turns into a clip of the *new* digit
with a short glitch at the start, which is less wrong, not more. The whole-clip time
reversal is :func:`reverse_clips`: by design of the data it is a *valid* Moving MNIST
clip in distribution, so only a conditional task (frame prediction) can catch it --
see the benchmark.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdmcourse.data import Clips, MovingMNISTConfig, digit_pool, render_clips, simulate_trajectories

__all__ = ["CORRUPTIONS", "LEVELS", "corrupt", "frames_affected", "reverse_clips", "spearman"]

LEVELS = (0, 1, 2, 3, 4)
_BLUR_SIGMA = (0.0, 0.5, 1.0, 1.5, 2.0)
_NOISE_STD = (0.0, 0.05, 0.1, 0.2, 0.3)
_VELOCITY_KICK = (0.0, 0.25, 0.5, 1.0, 1.5)


def frames_affected(level: int, frames: int, name: str = "freeze") -> int:
    """How many of ``frames`` frames the temporal corruption ``name`` touches at ``level``."""
    if name == "reverse":
        return round(level * ((frames - 1) // 2) / 4)
    if name == "swap":
        return round(level * frames / 8)
    return round(level * (frames - 2) / 4)


def _blur(clips: Clips, level: int, config: MovingMNISTConfig, generator) -> torch.Tensor:
    sigma = _BLUR_SIGMA[level]
    if sigma == 0:
        return clips.video.clone()
    radius = int(3 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets.square() / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    b, t, c, h, w = clips.video.shape
    frames = clips.video.reshape(b * t, 1, h, w)
    frames = F.conv2d(F.pad(frames, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    frames = F.conv2d(F.pad(frames, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return frames.view(b, t, c, h, w)


def _noise(clips: Clips, level: int, config: MovingMNISTConfig, generator) -> torch.Tensor:
    noise = torch.randn(clips.video.shape, generator=generator) * _NOISE_STD[level]
    return (clips.video + noise).clamp(0, 1)


def _freeze(clips: Clips, level: int, config: MovingMNISTConfig, generator) -> torch.Tensor:
    t = clips.video.shape[1]
    k = frames_affected(level, t)
    order = torch.arange(t).clamp_max(t - 1 - k)
    return clips.video[:, order]


def _shuffle(clips: Clips, level: int, config: MovingMNISTConfig, generator) -> torch.Tensor:
    b, t = clips.video.shape[:2]
    k = frames_affected(level, t)
    order = torch.arange(t).repeat(b, 1)  # (B, T)
    if k >= 2:
        chosen = torch.rand(b, t, generator=generator).argsort(1)[:, :k]  # (B, k) frames that move
        # A cyclic shift among the chosen frames moves every one of them.
        order.scatter_(1, chosen, chosen.roll(1, dims=1))
    return clips.video[torch.arange(b)[:, None], order]


def _reverse(clips: Clips, level: int, config: MovingMNISTConfig, generator) -> torch.Tensor:
    t = clips.video.shape[1]
    k = frames_affected(level, t, "reverse")
    pivot = t - 1 - k
    # Frames after the pivot mirror those before it: the motion turns round at the pivot.
    order = torch.tensor([i if i <= pivot else 2 * pivot - i for i in range(t)])
    return clips.video[:, order]


def _velocity(clips: Clips, level: int, config: MovingMNISTConfig, generator) -> torch.Tensor:
    kick = _VELOCITY_KICK[level]
    if kick == 0:
        return clips.video.clone()
    position, velocity = clips.positions[:, 0], clips.velocities[:, 0]
    track = [position]
    for _ in range(clips.video.shape[1] - 1):
        velocity = velocity + torch.randn(velocity.shape, generator=generator) * kick
        # One step of the generator's own law, so walls are still obeyed.
        steps, velocities = simulate_trajectories(position, velocity, 2, config.free_range)
        position, velocity = steps[:, 1], velocities[:, 1]
        track.append(position)
    return render_clips(clips.digits, torch.stack(track, 1), config.canvas, combine=config.combine)


def _render_changed_tail(clips: Clips, k: int, config: MovingMNISTConfig, new_first_digit: torch.Tensor) -> torch.Tensor:
    t = clips.video.shape[1]
    if k == 0:
        return clips.video.clone()
    changed = clips.digits.clone()
    changed[:, 0] = new_first_digit
    tail = render_clips(changed, clips.positions[:, t - k :], config.canvas, combine=config.combine)
    return torch.cat([clips.video[:, : t - k], tail], dim=1)


def _swap(clips: Clips, level: int, config: MovingMNISTConfig, generator) -> torch.Tensor:
    images, labels = digit_pool(config)
    # Draw a digit of another class for each clip: shift the class by 1..9.
    target = (clips.labels[:, 0] + torch.randint(1, 10, (len(clips),), generator=generator)) % 10
    choice = torch.stack([
        torch.nonzero(labels == c).flatten()[torch.randint((labels == c).sum().item(), (1,), generator=generator)][0]
        for c in target.tolist()
    ])
    k = frames_affected(level, clips.video.shape[1], "swap")
    return _render_changed_tail(clips, k, config, images[choice])


def _delete(clips: Clips, level: int, config: MovingMNISTConfig, generator) -> torch.Tensor:
    k = frames_affected(level, clips.video.shape[1], "delete")
    return _render_changed_tail(clips, k, config, torch.zeros_like(clips.digits[:, 0]))


CORRUPTIONS = {
    "blur": _blur,
    "noise": _noise,
    "freeze": _freeze,
    "shuffle": _shuffle,
    "reverse": _reverse,
    "velocity": _velocity,
    "swap": _swap,
    "delete": _delete,
}


def corrupt(clips: Clips, name: str, level: int, config: MovingMNISTConfig, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clips`` (drawn with ``config``) corrupted by ``name`` at ``level`` (0..4): ``(B, T, 1, H, W)`` in [0, 1].

    ``config`` supplies the canvas, free range, combine rule and digit pool the
    physical corruptions re-render with. Level 0 returns an unchanged copy.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"corrupt: name must be one of {sorted(CORRUPTIONS)}; got {name!r}")
    if level not in LEVELS:
        raise ValueError(f"corrupt: level must be one of {LEVELS}; got {level!r}")
    if not isinstance(clips, Clips):
        raise TypeError(f"corrupt: clips must be vdmcourse.data.Clips (video plus ground truth); got {type(clips).__name__}")
    if tuple(clips.video.shape[2:]) != (1, config.canvas, config.canvas) or clips.digits.shape[-1] != config.digit_size:
        raise ValueError(f"corrupt: clips of shape {tuple(clips.video.shape)} were not drawn with this config ({config})")
    return CORRUPTIONS[name](clips, level, config, generator)


def reverse_clips(video: torch.Tensor) -> torch.Tensor:
    """The whole clip played backwards: ``(B, T, C, H, W)`` -> same shape."""
    return video.flip(1)


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n with ties given their average rank."""
    order = values.argsort()
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64)
    for value in values.unique():
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equally long sequences (Pearson of the ranks,
    ties averaged). NaN when either sequence is constant."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.shape != y.shape or x.dim() != 1 or len(x) < 2:
        raise ValueError(f"spearman: x and y must be 1-D of equal length >= 2; got {tuple(x.shape)} and {tuple(y.shape)}")
    rx, ry = _ranks(x) - (len(x) + 1) / 2, _ranks(y) - (len(y) + 1) / 2
    denominator = (rx.square().sum() * ry.square().sum()).sqrt()
    return float("nan") if denominator == 0 else float((rx * ry).sum() / denominator)
