"""Data curation: the filters production video models put between scraped video and training.

Stable Video Diffusion (Blattmann et al. 2023) drops static clips by an optical-flow
score, de-duplicates, and conditions on frame rate. On Moving MNIST every one of these
can be measured against ground truth, so each helper here is small and tested:

* :func:`motion_score` -- how far a clip's content moves, in px/frame: per step, the
  whole-pixel shift that best aligns frame t with frame t + 1 (block matching, a global
  optical flow). Independent pixel noise changes every frame but aligns with no shift,
  so a static noisy clip scores ~0; the naive mean absolute frame difference
  (:func:`frame_difference`) counts that noise as motion.
* :class:`StaticClipFilter` -- keep the clips whose motion score is at least a threshold
  fitted on the *training* split to keep a stated share of it.
* :func:`stride_clips` / :class:`StridedMovingMNIST` -- clips at a lower frame rate: every
  ``stride``-th frame of a longer clip, with positions and velocities resampled to match
  (a velocity is then in px per *output* frame).
* :func:`shift_tolerant_distance`, :func:`nearest_neighbours`, :func:`find_duplicates` --
  image or clip distances that forgive a shift of a few pixels, so a copy moved by one
  pixel is still found.

Videos are ``(N, T, 1, H, W)`` float in ``[0, 1]``, as everywhere in the package.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vdmcourse.data.moving_mnist import Clips, MovingMNISTConfig, _is_int, generate_clips

__all__ = [
    "motion_score",
    "frame_difference",
    "StaticClipFilter",
    "stride_clips",
    "StridedMovingMNIST",
    "shift_tolerant_distance",
    "nearest_neighbours",
    "find_duplicates",
]


# --- motion score ------------------------------------------------------------------------------


def motion_score(video: torch.Tensor, *, max_shift: int = 6, blur: int = 3) -> torch.Tensor:
    """Mean displacement of a clip's content, px/frame: ``(N,)``, 0 for a frozen clip.

    video: ``(N, T, 1, H, W)`` float in ``[0, 1]``, T >= 2.

    For every step t -> t + 1 both frames are blurred (a ``blur`` x ``blur`` box), frame t is
    shifted by every whole-pixel offset ``(dy, dx)`` with ``|dy|, |dx| <= max_shift`` (zeros
    fill in), and the offset with the smallest squared error to frame t + 1 wins (ties go to
    the shorter shift). The score is the mean length of the winning offsets over the steps.
    Pixel noise that is independent from frame to frame adds the same error to every
    offset, so it moves no winner: that is why this is a *motion* score and not a change
    score. Speeds above ``max_shift`` px/frame are under-estimated; a clip with several
    objects moving differently scores the motion of whichever aligns most ink.
    """
    video = _check_video(video, "motion_score", min_frames=2)
    if not _is_int(max_shift) or max_shift < 0:
        raise ValueError(f"motion_score: max_shift must be an int >= 0 (pixels); got {max_shift!r}")
    if not _is_int(blur) or blur < 1 or blur % 2 == 0:
        raise ValueError(f"motion_score: blur must be an odd int >= 1 (box size in pixels); got {blur!r}")
    n, t, _, h, w = video.shape
    frames = video[:, :, 0].reshape(n * t, 1, h, w)
    if blur > 1:
        frames = F.avg_pool2d(frames, blur, stride=1, padding=blur // 2, count_include_pad=False)
    frames = frames.view(n, t, h, w)
    before, after = frames[:, :-1].reshape(1, -1, h, w), frames[:, 1:].reshape(-1, 1, h, w)  # G = N(T-1) steps
    steps, span = after.shape[0], 2 * max_shift + 1
    padded = F.pad(before, (max_shift,) * 4)  # (1, G, H+2m, W+2m)
    # error(shift) = |before moved|^2 - 2 <before moved, after> + |after|^2, every shift at once:
    # a grouped convolution of each padded frame t with frame t + 1 as its kernel.
    cross = F.conv2d(padded, after, groups=steps)  # (1, G, 2m+1, 2m+1), index (m - dy, m - dx)
    energy = F.conv2d(padded.square(), torch.ones(steps, 1, h, w), groups=steps)
    errors = (energy - 2 * cross + after.square().sum((-2, -1)).view(1, steps, 1, 1)).flip(-2, -1)
    errors = errors.reshape(n, t - 1, span * span)  # (N, T-1, S), offsets in (dy, dx) row-major order
    shifts = torch.arange(-max_shift, max_shift + 1, dtype=torch.float32)
    length = torch.hypot(shifts[:, None], shifts[None, :]).flatten()  # (S,)
    # A tie (e.g. two blank frames) must not read as motion: the shorter shift wins.
    scale = errors.abs().amax(-1, keepdim=True).clamp_min(1e-12)
    best = (errors + 1e-6 * scale * length).argmin(-1)  # (N, T-1)
    return length[best].mean(-1)


def frame_difference(video: torch.Tensor) -> torch.Tensor:
    """The naive "motion" score: mean absolute difference of consecutive frames, ``(N,)``.

    It rises with motion, and just as much with noise, flicker or compression artefacts
    on a clip where nothing moves; :func:`motion_score` does not."""
    video = _check_video(video, "frame_difference", min_frames=2)
    return (video[:, 1:] - video[:, :-1]).abs().mean((1, 2, 3, 4))


# --- static-clip filter ------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticClipFilter:
    """Keep clips whose motion score is at least ``threshold``.

    Fit it on the training split with :meth:`fit`: the threshold is then the score of the
    ``ceil(keep * N)``-th most moving training clip, so exactly that share of the training
    clips is kept (more only where scores tie). Applying it to a test split keeps about
    that share; fitting it *on* the test split leaks the test set into curation.

    threshold  clips scoring >= threshold pass
    keep       the share of the training clips it was fitted to keep
    fitted_on  how many training clips it was fitted on
    """

    threshold: float
    keep: float
    fitted_on: int

    @classmethod
    def fit(cls, train_scores: torch.Tensor, keep: float) -> StaticClipFilter:
        """Fit the threshold on the training clips' scores ``(N,)`` to keep a ``keep`` share."""
        scores = _check_scores(train_scores, "train_scores", "StaticClipFilter.fit")
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise ValueError(f"StaticClipFilter.fit: keep must be a share in (0, 1]; got {keep!r}")
        count = math.ceil(keep * len(scores) - 1e-9)
        threshold = scores.sort(descending=True).values[count - 1].item()
        return cls(threshold=threshold, keep=float(keep), fitted_on=len(scores))

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        """Boolean mask ``(N,)``: True for the clips kept."""
        return _check_scores(scores, "scores", "StaticClipFilter") >= self.threshold


# --- frame-stride resampling --------------------------------------------------------------------


def stride_clips(
    n: int, config: MovingMNISTConfig, stride: int, *, generator: torch.Generator | None = None
) -> Clips:
    """``n`` clips of ``config.frames`` frames, each every ``stride``-th frame of a clip
    ``(config.frames - 1) * stride + 1`` frames long: the same motion filmed at
    ``1 / stride`` of the frame rate.

    The ground truth is resampled with the frames: ``positions[:, t]`` is where the digit
    is in output frame t, and ``velocities[:, t]`` is its velocity there in px per
    *output* frame (``stride`` times the source velocity), so that, away from walls,
    ``positions[:, t + 1] - positions[:, t] == velocities[:, t]`` still holds.
    ``stride=1`` is :func:`~vdmcourse.data.generate_clips` itself.
    """
    if not _is_int(stride) or stride < 1:
        raise ValueError(f"stride_clips: stride must be a positive int (source frames per output frame); got {stride!r}")
    if not isinstance(config, MovingMNISTConfig):
        raise TypeError(f"stride_clips: config must be a MovingMNISTConfig; got {type(config).__name__}")
    source = dataclasses.replace(config, frames=(config.frames - 1) * stride + 1)
    clips = generate_clips(n, source, generator=generator)
    return Clips(
        video=clips.video[:, ::stride].contiguous(),
        labels=clips.labels,
        positions=clips.positions[:, ::stride].contiguous(),
        velocities=clips.velocities[:, ::stride] * stride,
        digits=clips.digits,
    )


class StridedMovingMNIST(Dataset):
    """Moving MNIST at several frame rates, with the stride as a label.

    ``dataset[i]`` is a dict ``{"video": (T, 1, H, W), "labels": (K,), "positions": (T, K, 2),
    "velocities": (T, K, 2), "stride": () int64}``: clip ``i`` is drawn at the stride
    ``strides[i % len(strides)]`` by :func:`stride_clips`, from a generator seeded by
    ``(seed, i)`` (same seed and index, same clip, in any order). Velocities are per
    output frame, so a model conditioned on ``stride`` can be asked for a frame rate.
    """

    def __init__(self, config: MovingMNISTConfig | None = None, strides: tuple[int, ...] = (1, 2, 3), length: int = 10_000, seed: int = 0):
        if config is not None and not isinstance(config, MovingMNISTConfig):
            raise TypeError(f"StridedMovingMNIST: config must be a MovingMNISTConfig; got {type(config).__name__}")
        if not isinstance(strides, (tuple, list)) or not strides or not all(_is_int(s) and s >= 1 for s in strides):
            raise ValueError(f"StridedMovingMNIST: strides must be a non-empty tuple of positive ints; got {strides!r}")
        if not _is_int(length) or length < 1:
            raise ValueError(f"StridedMovingMNIST: length must be a positive int; got {length!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"StridedMovingMNIST: seed must be a non-negative int; got {seed!r}")
        self.config = config if config is not None else MovingMNISTConfig.cpu()
        self.strides = tuple(strides)
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not _is_int(index):
            raise TypeError(f"StridedMovingMNIST: index must be an int; got {type(index).__name__}")
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"StridedMovingMNIST: index {index} out of range for length {self.length}")
        mixed = np.random.SeedSequence([self.seed, index]).generate_state(1, dtype=np.uint64)[0]
        generator = torch.Generator().manual_seed(int(mixed) & (2**63 - 1))
        stride = self.strides[index % len(self.strides)]
        clips = stride_clips(1, self.config, stride, generator=generator)
        return {
            "video": clips.video[0],
            "labels": clips.labels[0],
            "positions": clips.positions[0],
            "velocities": clips.velocities[0],
            "stride": torch.tensor(stride),
        }


# --- duplicates and nearest neighbours ----------------------------------------------------------


def shift_tolerant_distance(queries: torch.Tensor, references: torch.Tensor, *, max_shift: int = 1) -> torch.Tensor:
    """RMS pixel distance between every query and every reference, minimised over whole-pixel
    shifts of the reference up to ``max_shift`` in each direction: ``(N, M)``, in intensity
    units (0 = identical up to such a shift).

    queries ``(N, ..., H, W)``, references ``(M, ..., H, W)`` with the same trailing shape:
    images ``(N, H, W)`` or clips ``(N, T, 1, H, W)`` (a clip is shifted as a whole).
    Computed as ``|a|^2 + |b|^2 - 2 a.b`` per shift, so memory is ``O(N M)``, not ``O(N M H W)``.
    """
    _check_pair(queries, references, "shift_tolerant_distance")
    if not _is_int(max_shift) or max_shift < 0:
        raise ValueError(f"shift_tolerant_distance: max_shift must be an int >= 0 (pixels); got {max_shift!r}")
    a = queries.float().flatten(1)  # (N, D)
    h, w = references.shape[-2:]
    b = references.float().reshape(len(references), -1, h, w)  # (M, C, H, W)
    padded = F.pad(b, (max_shift,) * 4)
    square_a = a.square().sum(1, keepdim=True)  # (N, 1)
    best = None
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            moved = padded[..., dy : dy + h, dx : dx + w].reshape(len(references), -1)  # (M, D)
            squared = (square_a + moved.square().sum(1)[None] - 2 * a @ moved.T).clamp_min(0)  # (N, M)
            best = squared if best is None else torch.minimum(best, squared)
    return (best / a.shape[1]).sqrt()


def nearest_neighbours(
    queries: torch.Tensor, references: torch.Tensor, *, max_shift: int = 1, chunk: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's nearest reference under :func:`shift_tolerant_distance`:
    ``(distance (N,), index (N,))``. Computed ``chunk`` queries at a time."""
    _check_pair(queries, references, "nearest_neighbours")
    if not _is_int(chunk) or chunk < 1:
        raise ValueError(f"nearest_neighbours: chunk must be a positive int; got {chunk!r}")
    distances, indices = [], []
    for part in queries.split(chunk):
        d = shift_tolerant_distance(part, references, max_shift=max_shift)
        value, index = d.min(1)
        distances.append(value)
        indices.append(index)
    return torch.cat(distances), torch.cat(indices)


def find_duplicates(items: torch.Tensor, *, threshold: float = 0.02, max_shift: int = 1) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of near-duplicates in ``items`` ``(N, ..., H, W)``: RMS
    distance below ``threshold`` (intensity units) after the best whole-pixel shift up to
    ``max_shift``. A copy moved by one pixel is found at ``max_shift >= 1``; a plain pixel
    comparison (``max_shift=0``) misses it. Sorted by ``(i, j)``."""
    if not isinstance(items, torch.Tensor) or items.ndim < 3:
        raise ValueError(f"find_duplicates: items must be a tensor (N, ..., H, W); got {getattr(items, 'shape', type(items).__name__)}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < math.inf:
        raise ValueError(f"find_duplicates: threshold must be a finite number >= 0 (RMS intensity); got {threshold!r}")
    distance = shift_tolerant_distance(items, items, max_shift=max_shift)
    upper = torch.triu(torch.ones_like(distance, dtype=torch.bool), diagonal=1)
    pairs = torch.nonzero((distance < threshold) & upper)
    return [tuple(pair) for pair in pairs.tolist()]


# --- guard rails -------------------------------------------------------------------------------


def _check_video(video, caller: str, *, min_frames: int) -> torch.Tensor:
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"{caller}: video must be a torch.Tensor of shape (N, T, 1, H, W); got {type(video).__name__}")
    if video.ndim != 5 or video.shape[2] != 1:
        raise ValueError(f"{caller}: video must have shape (N, T, 1, H, W); got {tuple(video.shape)}")
    if video.shape[1] < min_frames:
        raise ValueError(f"{caller}: video needs at least {min_frames} frames to measure motion; got T={video.shape[1]}")
    if not video.is_floating_point():
        raise TypeError(f"{caller}: video must be a float tensor in [0, 1]; got dtype {video.dtype}")
    if video.numel() and not torch.isfinite(video).all():
        raise ValueError(f"{caller}: video holds NaN or inf")
    return video.float()


def _check_scores(scores, name: str, caller: str) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"{caller}: {name} must be a non-empty 1-D tensor of motion scores (N,); got {getattr(scores, 'shape', type(scores).__name__)}")
    if not torch.isfinite(scores).all():
        raise ValueError(f"{caller}: {name} holds NaN or inf")
    return scores.float()


def _check_pair(queries, references, caller: str) -> None:
    for name, value in (("queries", queries), ("references", references)):
        if not isinstance(value, torch.Tensor) or value.ndim < 3:
            raise ValueError(f"{caller}: {name} must be a tensor (N, ..., H, W); got {getattr(value, 'shape', type(value).__name__)}")
    if queries.shape[1:] != references.shape[1:]:
        raise ValueError(
            f"{caller}: queries and references must share their per-item shape; got {tuple(queries.shape[1:])} and {tuple(references.shape[1:])}"
        )
