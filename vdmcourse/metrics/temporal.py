"""Temporal metrics: what a per-frame score cannot see.

Each function takes videos ``(B, T, 1, H, W)`` in [0, 1] and returns one number per
clip, ``(B,)``. On real Moving MNIST they sit at (or very near) their ideal value;
the validation benchmark (``benchmarks/bench_metrics.py``) shows each one moving
away from it as the corruption it is meant to catch gets stronger.

* :func:`flicker` -- mean absolute change between consecutive frames on pixels that
  are background in both frames (and not near ink). Real backgrounds are exactly
  static (0); per-frame generation makes them shimmer. Cf. VBench's "temporal
  flickering", which must restrict itself to static scenes for the same reason.
* :func:`identity_persistence` -- track the digits, classify each tracked digit in
  each frame with the evaluator's per-frame classifier, and count the frames whose
  class matches the class in the track's first frame (a digit that vanishes counts as
  a mismatch; frames where digits overlap are skipped). Real clips: 1.0.
* :func:`dynamic_degree` -- the share of frame-to-frame steps in which something
  moved. A frozen video has perfect frames and perfect flicker; this is the metric
  it fails (cf. VBench's dynamic degree).
* :func:`ink_mass_variation` -- coefficient of variation of the total ink over
  time: digits should not fade, swell or vanish (overlaps under ``max`` make real
  clips vary a little).
* :func:`digit_count_consistency` -- share of frames showing the right number of
  digits (connected blobs of ink). Frames where two real digits touch count one.
* :func:`shape_change` -- how much of a frame is *not* the previous frame moved by
  whole pixels. A real one-digit clip translates one fixed image: 0. A digit
  redrawn in another hand at every frame (what a video model's handwriting
  "jitter" is) scores high even when identity and position hold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from vdmcourse.metrics.features import Evaluator, crop_digits
from vdmcourse.metrics.physics import Tracks, check_video, track_digits

__all__ = [
    "flicker",
    "identity_persistence",
    "identity_left_out",
    "frame_classes",
    "dynamic_degree",
    "ink_mass_variation",
    "digit_count_consistency",
    "count_blobs",
    "shape_change",
]


def _need_frames(video: torch.Tensor, caller: str) -> torch.Tensor:
    video = check_video(video, caller=caller)
    if video.shape[1] < 2:
        raise ValueError(f"{caller}: needs at least 2 frames to measure change over time; got T={video.shape[1]}")
    return video


def _near_ink(frames: torch.Tensor, threshold: float, margin: int) -> torch.Tensor:
    """``(B, T, H, W)`` bool: pixels within ``margin`` px of ink, i.e. of a pixel whose 3x3
    neighbourhood averages above ``threshold``."""
    ink = (F.avg_pool2d(frames, 3, stride=1, padding=1, count_include_pad=False) > threshold).float()
    return F.max_pool2d(ink, 2 * margin + 1, stride=1, padding=margin) > 0


def flicker(video: torch.Tensor, *, threshold: float = 0.2, margin: int = 2) -> torch.Tensor:
    """Mean |x[t+1] - x[t]| over static background, per clip ``(B,)``, in intensity units.

    A pixel counts as background at a step when, in both frames of the step, it is more
    than ``margin`` pixels from ink: from any pixel whose 3x3 neighbourhood averages above
    ``threshold``. Averaging first keeps isolated noisy pixels from counting as ink (they
    are what flicker measures), while strokes and their soft edges do. NaN for a clip
    with no background at all.
    """
    video = _need_frames(video, "flicker")
    frames = video[:, :, 0]  # (B, T, H, W)
    near_ink = _near_ink(frames, threshold, margin)
    background = ~(near_ink[:, 1:] | near_ink[:, :-1])  # (B, T-1, H, W)
    change = (frames[:, 1:] - frames[:, :-1]).abs()
    return (change * background).sum(dim=(1, 2, 3)) / background.sum(dim=(1, 2, 3))


def frame_classes(video: torch.Tensor, model: Evaluator, tracks: Tracks) -> torch.Tensor:
    """The evaluator's digit class of each tracked digit in each frame: ``(B, T, K)`` int64,
    from ``model.classify`` on crops of ``model.config.digit_size`` around the track's centres
    (an empty crop where the digit is not seen)."""
    crops = crop_digits(video, tracks.centres, model.config.digit_size)  # (B, T, K, S, S)
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = torch.cat([model.classify(part.to(device)).cpu() for part in crops.flatten(0, 2).split(4096)])
    return logits.argmax(1).view(tracks.clean.shape)  # (B, T, K)


def identity_persistence(
    video: torch.Tensor, model: Evaluator, digits: int, *, tracks: Tracks | None = None, left_out: str = "skip"
) -> torch.Tensor:
    """Share of frames in which each tracked digit keeps the class it had in its first
    clean frame, averaged over the clip's digits: ``(B,)`` in [0, 1]. Uses
    ``model.classify`` on crops of ``model.config.digit_size``.

    Frames where a digit is seen but not clean (its ink touches another digit's) are
    left out with ``left_out="skip"`` (the default, and every shipped number), and a
    clip with no digit ever seen clearly is NaN. ``left_out="miss"`` counts both as
    failures instead: every frame of every digit is counted, so a never-clean digit
    scores 0. :func:`identity_left_out` measures how much "skip" leaves out."""
    video = _need_frames(video, "identity_persistence")
    if left_out not in ("skip", "miss"):
        raise ValueError(f"identity_persistence: left_out must be 'skip' or 'miss'; got {left_out!r}")
    tracks = tracks if tracks is not None else track_digits(video, digits)
    classes = frame_classes(video, model, tracks)  # (B, T, K)
    seen = torch.isfinite(tracks.centres).all(-1)
    first_clean = tracks.clean.float().argmax(1)  # (B, K): argmax returns the first True
    first_class = classes.gather(1, first_clean[:, None]).expand_as(classes)
    keeps = (classes == first_class) & tracks.clean
    if left_out == "miss":
        return (keeps.sum(1) / video.shape[1]).mean(1)  # a never-clean digit keeps nothing: 0
    # Counted: clean frames (match or not) and frames where the digit has vanished (a miss).
    counted = tracks.clean | ~seen
    per_digit = keeps.sum(1) / counted.sum(1).clamp_min(1)  # (B, K)
    per_digit = per_digit.masked_fill(~tracks.clean.any(1), float("nan"))
    return per_digit.nanmean(1)


def identity_left_out(video: torch.Tensor, digits: int, *, tracks: Tracks | None = None) -> torch.Tensor:
    """Share of a clip's frames that :func:`identity_persistence` (``left_out="skip"``)
    does not count, averaged over the clip's digits: ``(B,)`` in [0, 1]. A frame is left
    out where the digit is seen but not clean; a digit never seen clearly leaves out all
    its frames (its clip is NaN there). With one digit nothing can touch it, so only
    such clips add to it."""
    video = _need_frames(video, "identity_left_out")
    tracks = tracks if tracks is not None else track_digits(video, digits)
    seen = torch.isfinite(tracks.centres).all(-1)
    skipped = (seen & ~tracks.clean).float().mean(1)  # (B, K)
    return torch.where(tracks.clean.any(1), skipped, torch.ones_like(skipped)).mean(1)


def dynamic_degree(video: torch.Tensor, *, threshold: float = 0.1, min_pixels: int = 4) -> torch.Tensor:
    """Share of steps t -> t+1 in which at least ``min_pixels`` pixels changed by more
    than ``threshold``: ``(B,)`` in [0, 1]. Real clips (every digit always moves): ≈ 1;
    a frozen clip: 0."""
    video = _need_frames(video, "dynamic_degree")
    changed = ((video[:, 1:] - video[:, :-1]).abs() > threshold).flatten(2).sum(-1)  # (B, T-1)
    return (changed >= min_pixels).float().mean(1)


def ink_mass_variation(video: torch.Tensor, *, threshold: float = 0.3) -> torch.Tensor:
    """Coefficient of variation (std / mean over time) of each frame's ink mass (sum of
    intensities above ``threshold``): ``(B,)``, 0 for perfectly steady ink. An empty
    clip scores 0; a clip whose digits vanish scores high."""
    video = _need_frames(video, "ink_mass_variation")
    mass = (video * (video > threshold)).flatten(2).sum(-1)  # (B, T)
    return mass.std(1) / mass.mean(1).clamp_min(1e-6)


def count_blobs(frames: torch.Tensor, *, threshold: float = 0.3, min_area: int = 12) -> torch.Tensor:
    """Number of ink blobs in each frame of ``frames`` ``(N, H, W)`` in [0, 1]: connected
    regions of ink (pixels above ``threshold``) holding at least ``min_area`` ink pixels.
    Returns ``(N,)`` int64.

    Connectivity is found on a half-resolution grid (2x2 cells, after growing the ink by
    one pixel), so strokes less than about 3 px apart -- a broken "4", a "5" with a gap --
    stay one digit, and the label propagation below runs on a quarter of the pixels.
    """
    n, h, w = frames.shape
    ink = frames > threshold
    grown = F.max_pool2d(ink.float()[:, None], 3, stride=1, padding=1)
    mask = F.max_pool2d(grown, 2, ceil_mode=True)[:, 0] > 0  # (N, H/2, W/2)
    cells = mask.shape[1] * mask.shape[2]
    # Label propagation: every cell takes the largest label among its 8 neighbours until
    # nothing changes; each blob ends up labelled by its largest cell index.
    labels = torch.where(mask, torch.arange(1, cells + 1, dtype=torch.float32).view(1, *mask.shape[1:]), 0.0)
    while True:
        spread = F.max_pool2d(labels[:, None], 3, stride=1, padding=1)[:, 0] * mask
        if torch.equal(spread, labels):
            break
        labels = spread
    full = labels.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)[:, :h, :w]  # each pixel's blob
    area = torch.zeros(n, cells + 1).scatter_add_(1, full.long().flatten(1), ink.float().flatten(1))
    return (area[:, 1:] >= min_area).sum(1)


def digit_count_consistency(video: torch.Tensor, digits: int, *, threshold: float = 0.3, min_area: int = 12) -> torch.Tensor:
    """Share of frames that show exactly ``digits`` ink blobs (see :func:`count_blobs`): ``(B,)``."""
    video = check_video(video, caller="digit_count_consistency")
    counts = count_blobs(rearrange(video, "b t 1 h w -> (b t) h w"), threshold=threshold, min_area=min_area)
    return (counts.view(video.shape[:2]) == digits).float().mean(1)


def shape_change(video: torch.Tensor, *, max_shift: int = 4) -> torch.Tensor:
    """Change of appearance between consecutive frames that no translation explains:
    ``(B,)``, mean over steps t -> t+1, 0 for a clip that only moves.

    For each step, frame t is shifted by every whole-pixel offset up to ``max_shift``
    in each direction (zeros fill in), and the smallest L1 distance to frame t+1 is
    kept, divided by the mean ink of the two frames (sum of intensities). Real
    one-digit Moving MNIST scores 0 (the digit moves by whole pixels and stays inside
    the canvas); two digits that move apart cannot be aligned by one shift, so use it
    on one-digit clips. About 1 means the overlap is no better than a redrawn digit.
    An empty step (no ink in either frame) scores 0.
    """
    video = _need_frames(video, "shape_change")
    if not isinstance(max_shift, int) or isinstance(max_shift, bool) or max_shift < 0:
        raise ValueError(f"shape_change: max_shift must be an int >= 0 (pixels); got {max_shift!r}")
    before, after = video[:, :-1, 0], video[:, 1:, 0]  # (B, T-1, H, W)
    height, width = after.shape[-2:]
    padded = F.pad(before, (max_shift,) * 4)
    span = 2 * max_shift + 1
    best = torch.stack(
        [
            (padded[..., dy : dy + height, dx : dx + width] - after).abs().sum((-2, -1))
            for dy in range(span)
            for dx in range(span)
        ]
    ).amin(0)  # (B, T-1)
    ink = (before.sum((-2, -1)) + after.sum((-2, -1))) / 2
    return (best / ink.clamp_min(1e-6)).mean(1)
