"""Moving MNIST: digits bouncing in a box, with ground truth for every clip.

The generator follows Srivastava et al. 2015 ("Unsupervised Learning of Video
Representations using LSTMs"): 28x28 digits on a 64x64 canvas, start position
uniform, direction uniform in [0, 2pi), a step of 0.1 of the free range
(64 - 28 = 36, so 3.6 px/frame); at a wall the position is clamped and that
velocity component negated; digits are combined with a pixel-wise max.
Everything is a parameter: canvas, frames, digits, digit size, speed range,
deterministic or stochastic bounces (Denton & Fergus 2018: a new random velocity
at each wall hit) and max or sum combination.

Coordinates. A digit's position is the (row, col) of its top-left pixel, in
pixels, floating point, in ``[0, canvas - digit_size]`` (the *free range*). Row
grows downwards, col to the right. ``velocities[:, t]`` is the velocity the digit
has at frame ``t``, i.e. the step it takes to frame ``t + 1`` (after any bounce at
frame ``t``). Frame 0 shows the initial position. For pasting, positions are
rounded to the nearest integer pixel (``torch.round``, ties to even); the float
positions are what ``Clips.positions`` holds.

Three layers, each usable on its own:

* :func:`simulate_trajectories` -- initial positions and velocities -> positions
  and velocities for every frame;
* :func:`render_clips` -- digit images and positions -> frames;
* :func:`generate_clips` -- draws digits and initial states from a
  ``torch.Generator`` and calls the two above (vectorised over the batch).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch.utils.data import Dataset

from vdmcourse.data.mnist import load_mnist_subset

__all__ = [
    "BOUNCES",
    "COMBINES",
    "SPLITS",
    "SPLIT_SEED",
    "MovingMNISTConfig",
    "Clips",
    "digit_pool",
    "simulate_trajectories",
    "render_clips",
    "generate_clips",
    "velocities_from_positions",
    "MovingMNIST",
]

BOUNCES = ("deterministic", "stochastic")
COMBINES = ("max", "sum")
SPLITS = ("train", "test")
# The subset is split once, per class, by a permutation drawn from this seed:
# 450 digits of each class for "train", the other 50 for "test".
SPLIT_SEED = 2015
_TEST_PER_CLASS = 50


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class MovingMNISTConfig:
    """What a Moving MNIST clip looks like. Defaults are Srivastava et al. 2015.

    canvas       frame height and width in pixels (square frames)
    frames       clip length T
    digits       digits per clip
    digit_size   digit height and width in pixels (MNIST's 28x28 resized, bilinear with antialiasing)
    speed        (min, max) speed in px/frame, drawn uniformly per digit; a number means min = max
    bounce       "deterministic": clamp to the wall and negate that velocity component;
                 "stochastic": at a wall hit draw a new velocity (speed from ``speed``,
                 direction uniform over the directions pointing away from the wall)
    combine      "max" (pixel-wise max of the digits) or "sum" (sum, then clip to [0, 1])
    split        "train" or "test": which of the two disjoint digit pools to draw from
    """

    canvas: int = 64
    frames: int = 20
    digits: int = 2
    digit_size: int = 28
    speed: tuple[float, float] = (3.6, 3.6)
    bounce: str = "deterministic"
    combine: str = "max"
    split: str = "train"

    def __post_init__(self):
        for name in ("canvas", "frames", "digits", "digit_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"MovingMNISTConfig: {name} must be a positive int; got {value!r}")
        if self.digit_size > self.canvas:
            raise ValueError(
                f"MovingMNISTConfig: digit_size={self.digit_size} is larger than canvas={self.canvas}; "
                "a digit must fit inside the frame"
            )
        if self.digits * self.digit_size**2 > self.canvas**2:
            raise ValueError(
                f"MovingMNISTConfig: digits={self.digits} digits of {self.digit_size} px cover more than the "
                f"{self.canvas}x{self.canvas} canvas (at most {self.canvas**2 // self.digit_size**2} fit); "
                "use fewer or smaller digits, or a larger canvas"
            )
        speed = self.speed
        if isinstance(speed, (int, float)) and not isinstance(speed, bool):
            speed = (speed, speed)
        if not (isinstance(speed, (tuple, list)) and len(speed) == 2 and all(isinstance(s, (int, float)) for s in speed)):
            raise ValueError(f"MovingMNISTConfig: speed must be a number or a (min, max) pair in px/frame; got {self.speed!r}")
        low, high = float(speed[0]), float(speed[1])
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
            raise ValueError(f"MovingMNISTConfig: speed needs 0 <= min <= max (px/frame); got {self.speed!r}")
        object.__setattr__(self, "speed", (low, high))
        for name, allowed in (("bounce", BOUNCES), ("combine", COMBINES), ("split", SPLITS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"MovingMNISTConfig: {name} must be one of {allowed}; got {getattr(self, name)!r}")

    @property
    def free_range(self) -> int:
        """How far a digit's top-left corner can move on each axis: ``canvas - digit_size``."""
        return self.canvas - self.digit_size

    @classmethod
    def srivastava(cls, **overrides) -> MovingMNISTConfig:
        """The standard: 64x64, 20 frames, 2 digits of 28 px, 3.6 px/frame, deterministic bounces, max."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def cpu(cls, **overrides) -> MovingMNISTConfig:
        """The course's CPU size: 32x32, 10 frames, 1 digit of 16 px, 2 px/frame.

        A 16 px digit is still clearly readable, leaves a free range of 16 px, and
        at 2 px/frame a clip shows one or two bounces -- visible motion at 1/16 of
        the standard clip's pixels.
        """
        return dataclasses.replace(cls(canvas=32, frames=10, digits=1, digit_size=16, speed=(2.0, 2.0)), **overrides)

    @classmethod
    def stochastic(cls, **overrides) -> MovingMNISTConfig:
        """Stochastic Moving MNIST in the spirit of Denton & Fergus 2018: 64x64, 20 frames,
        2 digits of 32 px, summed then clipped, a new random velocity at every wall hit.

        Denton & Fergus draw integer velocity components in [-4, 4]; here the speed is
        continuous in [1, 4] px/frame with a uniform direction.
        """
        base = cls(digit_size=32, speed=(1.0, 4.0), bounce="stochastic", combine="sum")
        return dataclasses.replace(base, **overrides)


@dataclass
class Clips:
    """A batch of Moving MNIST clips and their ground truth.

    video        (N, T, 1, H, W) float32 in [0, 1]
    labels       (N, K) int64, the digit classes (K = digits per clip)
    positions    (N, T, K, 2) float32, top-left (row, col) of each digit in pixels
    velocities   (N, T, K, 2) float32, (row, col) px/frame: the step from frame t to t + 1
    digits       (N, K, S, S) float32 in [0, 1], the digit images pasted (S = digit_size)
    """

    video: torch.Tensor
    labels: torch.Tensor
    positions: torch.Tensor
    velocities: torch.Tensor
    digits: torch.Tensor

    def __len__(self) -> int:
        return self.video.shape[0]


@functools.lru_cache(maxsize=None)
def _split_indices(split: str) -> torch.Tensor:
    """Indices into the shipped subset for one split: a stratified, seeded 90/10 cut."""
    _, labels = load_mnist_subset()
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    chosen = []
    for digit in range(10):
        members = torch.nonzero(labels == digit).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        chosen.append(members[_TEST_PER_CLASS:] if split == "train" else members[:_TEST_PER_CLASS])
    return torch.cat(chosen).sort().values


@functools.lru_cache(maxsize=8)
def _cached_pool(split: str, digit_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_mnist_subset()
    keep = _split_indices(split)
    return _resize_digits(images[keep], digit_size), labels[keep]


def _resize_digits(images: torch.Tensor, digit_size: int) -> torch.Tensor:
    """uint8 (M, 28, 28) in [0, 255] -> float32 (M, S, S) in [0, 1]."""
    digits = images.float().div(255)[:, None]  # (M, 1, 28, 28)
    if digits.shape[-1] != digit_size:
        digits = F.interpolate(digits, size=(digit_size, digit_size), mode="bilinear", antialias=True, align_corners=False)
    return digits[:, 0].clamp(0, 1).contiguous()  # (M, S, S)


def digit_pool(config: MovingMNISTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits a config draws from: ``(images, labels)``.

    ``images`` float32 ``(M, S, S)`` in ``[0, 1]`` (S = ``config.digit_size``),
    ``labels`` int64 ``(M,)``. The "train" pool holds 4,500 digits of the shipped
    subset, the "test" pool the other 500 (50 per class); they never share a digit.
    The tensors are cached: treat them as read-only.
    """
    return _cached_pool(config.split, config.digit_size)


def _random_velocities(speed: tuple[float, float], shape: tuple[int, ...], generator) -> torch.Tensor:
    """Velocities of uniform direction and speed uniform in ``speed``: (*shape, 2) as (row, col)."""
    theta = torch.rand(shape, generator=generator) * (2 * math.pi)
    magnitude = speed[0] + (speed[1] - speed[0]) * torch.rand(shape, generator=generator)
    return torch.stack([magnitude * torch.sin(theta), magnitude * torch.cos(theta)], dim=-1)


def simulate_trajectories(
    positions: torch.Tensor,
    velocities: torch.Tensor,
    frames: int,
    free_range: float,
    *,
    bounce: str = "deterministic",
    speed: tuple[float, float] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move digits for ``frames`` frames inside ``[0, free_range]`` on both axes.

    positions   (N, K, 2) float, the top-left (row, col) at frame 0, inside [0, free_range]
    velocities  (N, K, 2) float, px/frame at frame 0
    Returns ``(positions, velocities)`` of shape (N, T, K, 2) with T = ``frames``.

    Each frame: ``p = p + v``; a component that reached or left ``[0, free_range]``
    while moving towards that wall (Srivastava et al.: a digit bounces on *reaching*
    the wall, so one landing exactly on it does not pause there a frame) is clamped
    to the wall, and its velocity component negated ("deterministic") or the
    whole velocity redrawn with speed in ``speed`` and a direction pointing away
    from the wall(s) hit ("stochastic", needs ``speed``). Speed is therefore
    constant between bounces, and exactly preserved by deterministic bounces.
    """
    if positions.ndim != 3 or positions.shape[-1] != 2 or velocities.shape != positions.shape:
        raise ValueError(
            "simulate_trajectories: positions and velocities must both have shape (N, K, 2); "
            f"got {tuple(positions.shape)} and {tuple(velocities.shape)}"
        )
    if not _is_int(frames) or frames < 1:
        raise ValueError(f"simulate_trajectories: frames must be a positive int; got {frames!r}")
    if bounce not in BOUNCES:
        raise ValueError(f"simulate_trajectories: bounce must be one of {BOUNCES}; got {bounce!r}")
    if bounce == "stochastic" and speed is None:
        raise ValueError("simulate_trajectories: bounce='stochastic' needs speed=(min, max) for the redrawn velocities")
    if not (isinstance(free_range, (int, float)) and 0 <= free_range < math.inf):
        raise ValueError(f"simulate_trajectories: free_range must be a finite number >= 0 (canvas - digit_size); got {free_range!r}")
    if positions.numel() and not (positions.min() >= 0 and positions.max() <= free_range):  # NaN fails too
        raise ValueError(
            f"simulate_trajectories: positions must lie in [0, free_range] = [0, {free_range}] (the top-left "
            f"corners that keep a digit on the canvas); got values in [{positions.min().item():.4g}, {positions.max().item():.4g}]"
        )
    if velocities.numel() and not torch.isfinite(velocities).all():
        raise ValueError("simulate_trajectories: velocities must be finite numbers (px/frame); got NaN or inf")
    position, velocity = positions.float(), velocities.float()
    track_p, track_v = [position], [velocity]
    for _ in range(frames - 1):  # a loop over time only; every clip and digit moves at once
        position = position + velocity
        # (N, K, 2) wall hits per axis: reaching a wall counts, not only crossing it
        low, high = (position <= 0) & (velocity < 0), (position >= free_range) & (velocity > 0)
        position = position.clamp(0, free_range)
        if bounce == "deterministic":
            velocity = torch.where(low | high, -velocity, velocity)
        else:
            # Draw for every digit (so the random stream does not depend on who hit a
            # wall), keep the draw only where a wall was hit, and point it away.
            fresh = _random_velocities(speed, velocity.shape[:-1], generator)
            fresh = torch.where(low, fresh.abs(), torch.where(high, -fresh.abs(), fresh))
            velocity = torch.where((low | high).any(-1, keepdim=True), fresh, velocity)
        track_p.append(position)
        track_v.append(velocity)
    return torch.stack(track_p, dim=1), torch.stack(track_v, dim=1)  # (N, T, K, 2) each


def render_clips(digits: torch.Tensor, positions: torch.Tensor, canvas: int, *, combine: str = "max") -> torch.Tensor:
    """Paste digits onto blank frames.

    digits     (N, K, S, S) float in [0, 1]
    positions  (N, T, K, 2) top-left (row, col) in pixels; rounded to the nearest
               integer, and must then lie in [0, canvas - S]
    Returns video (N, T, 1, canvas, canvas) float32 in [0, 1]: the pixel-wise max of
    the digits (``combine="max"``) or their sum clipped to [0, 1] (``"sum"``).
    """
    if digits.ndim != 4 or digits.shape[-1] != digits.shape[-2]:
        raise ValueError(f"render_clips: digits must have shape (N, K, S, S); got {tuple(digits.shape)}")
    n, k, size, _ = digits.shape
    if positions.ndim != 4 or positions.shape[0] != n or positions.shape[2] != k or positions.shape[3] != 2:
        raise ValueError(f"render_clips: positions must have shape (N={n}, T, K={k}, 2); got {tuple(positions.shape)}")
    if combine not in COMBINES:
        raise ValueError(f"render_clips: combine must be one of {COMBINES}; got {combine!r}")
    frames = positions.shape[1]
    corner = positions.round().long()  # (N, T, K, 2)
    if corner.numel() and (corner.min() < 0 or corner.max() > canvas - size):
        raise ValueError(f"render_clips: rounded positions must lie in [0, {canvas - size}] for digits of {size} px on a {canvas} px canvas")
    offsets = torch.arange(size)
    rows = corner[..., 0, None] + offsets  # (N, T, K, S)
    cols = corner[..., 1, None] + offsets  # (N, T, K, S)
    # Flat pixel index of every digit pixel in its frame: row * W + col.
    index = rows[..., :, None] * canvas + cols[..., None, :]  # (N, T, K, S, S)
    index = rearrange(index, "n t k r c -> (n t) (k r c)")
    values = repeat(digits.float(), "n k r c -> (n t) (k r c)", t=frames)
    video = torch.zeros(n * frames, canvas * canvas)
    if combine == "max":
        video.scatter_reduce_(1, index, values, reduce="amax")
    else:
        video.scatter_add_(1, index, values).clamp_(0, 1)
    return video.view(n, frames, 1, canvas, canvas)  # (N, T, 1, H, W); a view, since einops cannot infer N = 0


def generate_clips(n: int, config: MovingMNISTConfig | None = None, *, generator: torch.Generator | None = None) -> Clips:
    """Draw ``n`` Moving MNIST clips with their ground truth (see :class:`Clips`).

    ``config`` defaults to Srivastava et al. 2015; ``generator`` (a CPU
    ``torch.Generator``) makes the draw reproducible: same seed, same clips. Digits
    come from ``digit_pool(config)``; start positions are uniform over the free
    range, directions uniform in [0, 2pi), speeds uniform in ``config.speed``.
    Vectorised over the batch: the only Python loop runs over frames.
    """
    if not _is_int(n) or n < 0:
        raise ValueError(f"generate_clips: n must be a non-negative int; got {n!r}")
    config = config if config is not None else MovingMNISTConfig()
    if not isinstance(config, MovingMNISTConfig):
        raise TypeError(f"generate_clips: config must be a MovingMNISTConfig; got {type(config).__name__}")
    pool_images, pool_labels = digit_pool(config)
    k = config.digits
    choice = torch.randint(len(pool_labels), (n, k), generator=generator)  # (N, K)
    start = torch.rand((n, k, 2), generator=generator) * config.free_range  # (N, K, 2)
    velocity = _random_velocities(config.speed, (n, k), generator)  # (N, K, 2)
    positions, velocities = simulate_trajectories(
        start, velocity, config.frames, config.free_range, bounce=config.bounce, speed=config.speed, generator=generator
    )
    digits = pool_images[choice]  # (N, K, S, S)
    video = render_clips(digits, positions, config.canvas, combine=config.combine)
    return Clips(video=video, labels=pool_labels[choice], positions=positions, velocities=velocities, digits=digits)


def velocities_from_positions(positions: torch.Tensor) -> torch.Tensor:
    """Estimate velocities from a position track, aligned like :attr:`Clips.velocities`.

    positions (N, T, K, 2) -> velocities (N, T, K, 2) with ``v[:, t] = p[:, t + 1] - p[:, t]``
    (the step to the next frame); the last frame repeats the last step. Exact
    away from walls; at a bounce the clamped step differs from the true velocity.
    """
    if positions.ndim != 4 or positions.shape[1] < 2 or positions.shape[-1] != 2:
        raise ValueError(f"velocities_from_positions: positions must have shape (N, T>=2, K, 2); got {tuple(positions.shape)}")
    steps = positions[:, 1:] - positions[:, :-1]  # (N, T-1, K, 2)
    return torch.cat([steps, steps[:, -1:]], dim=1)  # (N, T, K, 2)


class MovingMNIST(Dataset):
    """A fixed-length, deterministic Moving MNIST dataset generated on the fly.

    ``MovingMNIST(config, length, seed)[i]`` is a dict ``{"video": (T, 1, H, W)
    float32 in [0, 1], "labels": (K,) int64, "positions": (T, K, 2),
    "velocities": (T, K, 2)}``; the same ``(seed, i)`` always gives the same clip,
    in any worker and in any order. Clip ``i`` is
    ``generate_clips(1, config, generator=dataset.generator_for(i))``.
    """

    def __init__(self, config: MovingMNISTConfig | None = None, length: int = 10_000, seed: int = 0):
        if config is not None and not isinstance(config, MovingMNISTConfig):
            raise TypeError(f"MovingMNIST: config must be a MovingMNISTConfig; got {type(config).__name__}")
        if not _is_int(length) or length < 1:
            raise ValueError(f"MovingMNIST: length must be a positive int; got {length!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"MovingMNIST: seed must be a non-negative int; got {seed!r}")
        self.config = config if config is not None else MovingMNISTConfig()
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def generator_for(self, index: int) -> torch.Generator:
        """The generator clip ``index`` is drawn with: seeded from (seed, index) by numpy's SeedSequence."""
        mixed = np.random.SeedSequence([self.seed, index]).generate_state(1, dtype=np.uint64)[0]
        return torch.Generator().manual_seed(int(mixed) & (2**63 - 1))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not _is_int(index):
            raise TypeError(f"MovingMNIST: index must be an int; got {type(index).__name__}")
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"MovingMNIST: index {index} out of range for length {self.length}")
        clips = generate_clips(1, self.config, generator=self.generator_for(index))
        return {"video": clips.video[0], "labels": clips.labels[0], "positions": clips.positions[0], "velocities": clips.velocities[0]}
