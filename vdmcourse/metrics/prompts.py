"""Prompt following: does a generated clip do what its caption says?

A caption's facts (:class:`~vdmcourse.data.captions.ClipFacts`) are checked against
what is *measured* in the generated pixels, with the same tools as the other metrics:

* **digit** -- the evaluator's per-frame digit classifier on crops around the tracked
  digit, logits averaged over frames;
* **direction** -- the tracked ink centroid's displacement over the first steps, stopped
  at the first reversal (a bounce), rounded to one of 8 compass directions, image rows
  growing downwards (:func:`~vdmcourse.data.captions.direction_index`);
* **speed class** -- the mean step length of the track, per axis;
* **bounce walls** -- the walls at which the track reverses (moving down, then up: the
  bottom wall), compared as a set with the caption's;
* **trajectory error** -- mean distance in px between the tracked centroid and a
  requested motion path (multimodal control).

:func:`prompt_ladder` builds deliberately wrong clips for the prompts of real ones
(wrong digit, then also reversed direction, then also wrong speed): every
score must get monotonically worse along it, the check that the metrics measure
what they claim (as lesson 11's corruption ladder does for the other metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips, render_clips, simulate_trajectories
from vdmcourse.data.captions import ClipFacts, clip_facts, direction_index, speed_class
from vdmcourse.metrics.features import Evaluator, crop_digits
from vdmcourse.metrics.physics import check_video, track_digits

__all__ = ["MeasuredClip", "measure_clips", "prompt_hits", "prompt_scores", "trajectory_error", "LADDER", "prompt_ladder"]

# A step shorter than this (px) says nothing about the direction of motion.
_STILL = 0.5


@dataclass(frozen=True)
class MeasuredClip:
    """What was measured in one clip: ``digit``, ``direction`` (index into DIRECTIONS),
    ``speed`` (px/frame), ``walls`` (frozenset of walls it bounced off)."""

    digit: int
    direction: int
    speed: float
    walls: frozenset[str]


def _first_direction(steps: torch.Tensor, window: int = 5) -> torch.Tensor:
    """Sum of the first ``window`` steps ``(B, T-1, 2)``, stopped at the first reversal -> ``(B, 2)``."""
    total = steps[:, 0].clone()
    going = torch.ones(len(steps), dtype=torch.bool)
    for k in range(1, min(window, steps.shape[1])):
        step = steps[:, k]
        reversed_ = ((torch.sign(step) != torch.sign(total)) & (step.abs() > _STILL) & (total.abs() > _STILL)).any(-1)
        going &= ~reversed_
        total = torch.where(going[:, None], total + step, total)
    return total


def _walls(steps: torch.Tensor) -> frozenset[str]:
    """Walls of one track's steps ``(T-1, 2)``: a reversal of the row motion from down to up
    is the bottom wall, and so on (steps shorter than ``_STILL`` keep the previous sign)."""
    found = set()
    for axis, (low, high) in enumerate((("top", "bottom"), ("left", "right"))):
        previous = 0.0
        for value in steps[:, axis].tolist():
            if abs(value) < _STILL or math.isnan(value):
                continue
            sign = math.copysign(1.0, value)
            if previous > 0 and sign < 0:
                found.add(high)
            elif previous < 0 and sign > 0:
                found.add(low)
            previous = sign
    return frozenset(found)


@torch.no_grad()
def measure_clips(video: torch.Tensor, evaluator: Evaluator) -> list[MeasuredClip]:
    """Measure digit, direction, speed and bounce walls of one-digit clips
    ``video`` ``(B, T, 1, H, W)`` in [0, 1] (the size ``evaluator`` was trained for)."""
    video = evaluator.check_clips(check_video(video, caller="measure_clips"), "measure_clips")
    centres = track_digits(video, 1).centres[:, :, 0]  # (B, T, 2), NaN where no digit is seen
    filled = _fill_gaps(centres)
    steps = filled[:, 1:] - filled[:, :-1]  # (B, T-1, 2)
    directions = direction_index(_first_direction(steps))
    # Mean |step| per axis: rounding to whole pixels cancels along a run (a median of steps would not).
    speeds = steps.abs().mean(dim=1).norm(dim=-1)  # (B,)
    crops = crop_digits(video, centres[:, :, None], evaluator.config.digit_size)[:, :, 0]  # (B, T, S, S)
    logits = evaluator.classify(crops.flatten(0, 1)).view(*crops.shape[:2], 10)  # (B, T, 10)
    seen = torch.isfinite(centres).all(-1)  # (B, T)
    digits = (logits.softmax(-1) * seen[..., None]).sum(1).argmax(1)
    return [
        MeasuredClip(int(digits[i]), int(directions[i]), float(speeds[i]), _walls(steps[i]) if seen[i].any() else frozenset())
        for i in range(len(video))
    ]


def _fill_gaps(centres: torch.Tensor) -> torch.Tensor:
    """Carry the last seen centre over frames where the digit was not seen (the canvas
    centre before the first sighting): ``(B, T, 2)`` with no NaN."""
    out = centres.clone()
    last = torch.full_like(out[:, 0], float("nan"))
    for t in range(out.shape[1]):
        last = torch.where(torch.isfinite(out[:, t]), out[:, t], last)
        out[:, t] = last
    first_seen = torch.isfinite(out).all(-1).float().argmax(1)  # (B,)
    first = out[torch.arange(len(out)), first_seen]  # (B, 2)
    return torch.where(torch.isfinite(out), out, first[:, None].nan_to_num(0.0))


def prompt_hits(measured: list[MeasuredClip], prompts: list[ClipFacts]) -> dict[str, list[bool]]:
    """Per clip, whether ``measured`` clips do what the ``prompts`` they were made for ask:
    ``digit``, ``direction``, ``speed`` (class) and ``bounce_walls`` (the set of walls
    exactly), one bool per clip each (for counts, intervals and paired comparisons)."""
    if len(measured) != len(prompts) or not prompts:
        raise ValueError(f"prompt_hits: need one prompt per clip; got {len(measured)} clips and {len(prompts)} prompts")
    return {
        "digit": [got.digit == want.digits[0] for got, want in zip(measured, prompts)],
        "direction": [got.direction == want.directions[0] for got, want in zip(measured, prompts)],
        "speed": [speed_class(got.speed) == speed_class(want.speeds[0]) for got, want in zip(measured, prompts)],
        "bounce_walls": [got.walls == want.walls(0) for got, want in zip(measured, prompts)],
    }


def prompt_scores(measured: list[MeasuredClip], prompts: list[ClipFacts]) -> dict[str, float]:
    """Accuracies of ``measured`` clips against the ``prompts`` they were made for:
    ``digit``, ``direction``, ``speed`` (class) and ``bounce_walls`` (the set of walls
    exactly), and their mean ``overall`` (the shares of :func:`prompt_hits`)."""
    if len(measured) != len(prompts) or not prompts:
        raise ValueError(f"prompt_scores: need one prompt per clip; got {len(measured)} clips and {len(prompts)} prompts")
    scores = {name: sum(hits) / len(prompts) for name, hits in prompt_hits(measured, prompts).items()}
    return scores | {"overall": sum(scores.values()) / len(scores)}


@torch.no_grad()
def trajectory_error(video: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """Mean distance in px, per clip ``(B,)``, between the tracked ink centroid of
    ``video`` ``(B, T, 1, H, W)`` and the requested ``path`` ``(B, T, 2)`` (row, col);
    a frame where no digit is seen counts as the canvas diagonal."""
    centres = track_digits(check_video(video, caller="trajectory_error"), 1).centres[:, :, 0]  # (B, T, 2)
    distance = (centres - path.to(centres)).norm(dim=-1)  # (B, T)
    return distance.nan_to_num(math.hypot(*video.shape[-2:])).mean(1)


LADDER = ("real", "wrong digit", "+ reversed direction", "+ wrong speed")


def prompt_ladder(n: int, config: MovingMNISTConfig, *, seed: int = 0) -> tuple[list[ClipFacts], dict[str, torch.Tensor]]:
    """Prompts and deliberately wrong clips for them: ``(prompts, {rung: video})``.

    ``n`` real one-digit clips of ``config`` (test digits) give the prompts (their
    ground-truth facts). Each rung of :data:`LADDER` adds a mistake to the one before:
    the same motion with another digit; then the velocity reversed; then the speed
    changed by a class (slow <-> fast, medium -> slow). Uniform noise frames come as
    ``"noise"``, a chance-level reference outside the ladder (a deliberately wrong clip
    scores *below* chance: each of its facts is chosen to be wrong).
    """
    generator = torch.Generator().manual_seed(seed)
    clips = generate_clips(n, config, generator=generator)
    prompts = clip_facts(clips.labels, clips.positions, clips.velocities, config.free_range)
    other = generate_clips(n, config, generator=generator)
    keep = other.labels[:, 0] != clips.labels[:, 0]
    # Another clip's digit image where it differs; a flipped image otherwise (still not the prompt's digit shape).
    wrong_digits = torch.where(keep[:, None, None, None], other.digits, clips.digits.flip(-1, -2))
    start, velocity = clips.positions[:, 0], clips.velocities[:, 0]  # (N, 1, 2)
    speed = velocity.norm(dim=-1, keepdim=True)
    classes = [speed_class(s) for s in speed.flatten().tolist()]
    new_speed = torch.tensor([{"slow": 2.8, "medium": 1.2, "fast": 1.2}[c] for c in classes])[:, None, None]

    def render(digits, v):
        positions, _ = simulate_trajectories(start, v, config.frames, config.free_range)
        return render_clips(digits, positions, config.canvas)

    reversed_velocity = -velocity
    videos = {
        "real": clips.video,
        "wrong digit": render(wrong_digits, velocity),
        "+ reversed direction": render(wrong_digits, reversed_velocity),
        "+ wrong speed": render(wrong_digits, reversed_velocity / speed.clamp_min(1e-6) * new_speed),
        "noise": torch.rand(clips.video.shape, generator=generator),
    }
    return prompts, videos


