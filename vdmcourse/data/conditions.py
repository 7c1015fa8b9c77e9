"""Conditions measured on Moving MNIST ground truth: motion buckets, frame rates, signals.

The knobs of image-to-video (Stable Video Diffusion, Blattmann et al. 2023) are
*measured* on every training clip, never made up:

* **fps** -- one trajectory rendered at several frame strides: keeping every k-th frame
  of a clip filmed at :data:`BASE_FPS` gives a clip at ``BASE_FPS / k`` frames per second
  whose digit moves k times further per frame (:func:`clips_at_strides`).
* **motion bucket** -- the digit's centroid speed from the ground-truth positions, in
  pixels per *second* (per-frame displacement x fps), mapped linearly onto the integers
  0-255 (:func:`motion_bucket`). Speed per second is a property of the scene, fps of the
  camera: at a fixed bucket, halving the fps doubles the per-frame displacement, which is
  what SVD's two knobs mean.
* **signal** -- the lip-sync analogue (Pika): a per-frame 1-D "audio envelope" in
  ``[0, 1]`` drives the digit's brightness (:func:`apply_brightness`), and
  :func:`frame_brightness` measures it back from pixels; or its scale
  (:func:`apply_scale`), measured back by :func:`frame_scale`.
* **style** -- the restyles of video-to-video (Pika): the digit's strokes thinner or thicker
  (:func:`restroke`, before the digit is placed) and the ink inverted (:func:`styled_clips`),
  with the style of every clip returned as labels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vdmcourse.data.moving_mnist import MovingMNISTConfig, digit_pool, generate_clips, render_clips, simulate_trajectories

__all__ = [
    "BASE_FPS",
    "FRAME_STRIDES",
    "MAX_BUCKET_SPEED",
    "BRIGHTNESS_FLOOR",
    "StrideClips",
    "measured_speed",
    "motion_bucket",
    "bucket_speed",
    "clips_at_strides",
    "random_signals",
    "apply_brightness",
    "frame_brightness",
    "SCALE_FLOOR",
    "apply_scale",
    "frame_scale",
    "STROKES",
    "INKS",
    "StyleClips",
    "restroke",
    "styled_clips",
]

BASE_FPS = 12.0  # the frame rate of a stride-1 clip
FRAME_STRIDES = (1, 2, 3)  # fps 12, 6 and 4
MAX_BUCKET_SPEED = 16.0  # px/s that maps to bucket 255 (faster clips are clamped there)
BRIGHTNESS_FLOOR = 0.3  # ink brightness at signal 0 (1 at signal 1), so a silent frame still shows its digit
SCALE_FLOOR = 0.5  # the digit's size at signal 0 (1 at signal 1): a 16 px digit shrinks to 8 px, still readable


def measured_speed(positions: torch.Tensor, fps: torch.Tensor | float | None = None) -> torch.Tensor:
    """Mean centroid speed of each clip from its ground-truth positions.

    ``positions`` ``(N, T, K, 2)`` (T >= 2; a digit's top-left corner moves exactly as its
    centroid) -> ``(N,)``: the mean over steps and digits of ``|p[t+1] - p[t]|`` in px/frame,
    times ``fps`` (a number or ``(N,)``) when given: px/s. Bounces clamp a step at the wall,
    so a bouncing clip measures a little slower than its velocity: measured, not assumed.
    """
    if not isinstance(positions, torch.Tensor) or positions.ndim != 4 or positions.shape[1] < 2 or positions.shape[-1] != 2:
        got = tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
        raise ValueError(f"measured_speed: positions must have shape (N, T>=2, K, 2); got {got}")
    steps = (positions[:, 1:] - positions[:, :-1]).norm(dim=-1)  # (N, T-1, K)
    speed = steps.mean(dim=(1, 2))  # (N,) px/frame
    return speed if fps is None else speed * fps


def motion_bucket(speed: torch.Tensor, max_speed: float = MAX_BUCKET_SPEED) -> torch.Tensor:
    """Speeds ``(N,)`` in px/s -> motion bucket ids ``(N,)`` int64 in 0-255:
    ``round(255 * speed / max_speed)``, clamped to the range."""
    if not isinstance(speed, torch.Tensor) or not torch.isfinite(speed).all() or (speed < 0).any():
        raise ValueError(f"motion_bucket: speed must be a tensor of finite speeds >= 0 (px/s); got {speed!r}")
    if not max_speed > 0:
        raise ValueError(f"motion_bucket: max_speed must be > 0 (px/s); got {max_speed!r}")
    return (255 * speed / max_speed).round().clamp(0, 255).long()


def bucket_speed(bucket, max_speed: float = MAX_BUCKET_SPEED) -> torch.Tensor:
    """The speed in px/s that bucket id(s) ``bucket`` (0-255) stand for: the inverse of
    :func:`motion_bucket` (up to rounding)."""
    return torch.as_tensor(bucket, dtype=torch.float32) * max_speed / 255


@dataclass
class StrideClips:
    """Clips rendered at frame strides, with the knobs measured on each.

    video          (N, T, 1, H, W) float32 in [0, 1]
    labels         (N, K) int64 digit classes
    positions      (N, T, K, 2) top-left (row, col) of each digit, in the rendered frames
    stride         (N,) int64: every ``stride``-th frame of the trajectory was kept
    fps            (N,) float32: ``BASE_FPS / stride``
    speed          (N,) float32: measured centroid speed in px/s
    motion_bucket  (N,) int64 in 0-255, from ``speed``
    """

    video: torch.Tensor
    labels: torch.Tensor
    positions: torch.Tensor
    stride: torch.Tensor
    fps: torch.Tensor
    speed: torch.Tensor
    motion_bucket: torch.Tensor


def clips_at_strides(
    n: int,
    config: MovingMNISTConfig,
    *,
    strides: tuple[int, ...] = FRAME_STRIDES,
    base_fps: float = BASE_FPS,
    generator: torch.Generator | None = None,
    group: int = 1,
) -> StrideClips:
    """``n`` clips of ``config.frames`` frames, each every k-th frame (k drawn from
    ``strides``) of a trajectory filmed at ``base_fps`` with ``config``'s speeds (px per
    base frame). Returns :class:`StrideClips` with fps, measured speed and motion bucket.

    ``group > 1``: consecutive runs of ``group`` clips share their digit, start position and
    direction, and differ only in speed and stride (each drawn per clip): the same first
    frame at several motion buckets and frame rates, so within a batch nothing but the
    knobs explains the different motions (a paired design for learning the knobs)."""
    if not strides or not all(isinstance(k, int) and k >= 1 for k in strides):
        raise ValueError(f"clips_at_strides: strides must be a non-empty tuple of ints >= 1; got {strides!r}")
    if not isinstance(group, int) or isinstance(group, bool) or group < 1 or n % group:
        raise ValueError(f"clips_at_strides: group must be an int >= 1 that divides n = {n}; got {group!r}")
    longest = (config.frames - 1) * max(strides) + 1
    if group == 1:
        clips = generate_clips(n, dataclasses.replace(config, frames=longest), generator=generator)
    else:
        clips = _grouped_clips(n, dataclasses.replace(config, frames=longest), group, generator)
    stride = torch.tensor(strides)[torch.randint(len(strides), (n,), generator=generator)]  # (N,)
    index = torch.arange(config.frames)[None] * stride[:, None]  # (N, T): frames 0, k, 2k, ...
    rows = torch.arange(n)[:, None]
    positions = clips.positions[rows, index]  # (N, T, K, 2)
    fps = (base_fps / stride).float()
    speed = measured_speed(positions, fps)
    return StrideClips(
        video=clips.video[rows, index],
        labels=clips.labels,
        positions=positions,
        stride=stride,
        fps=fps,
        speed=speed,
        motion_bucket=motion_bucket(speed),
    )


def _grouped_clips(n: int, config: MovingMNISTConfig, group: int, generator: torch.Generator | None):
    """``n`` clips in runs of ``group`` that share digits, start and direction; speed per clip."""
    pool_images, pool_labels = digit_pool(config)
    m, k = n // group, config.digits
    choice = torch.randint(len(pool_labels), (m, k), generator=generator).repeat_interleave(group, 0)  # (N, K)
    start = (torch.rand((m, k, 2), generator=generator) * config.free_range).repeat_interleave(group, 0)  # (N, K, 2)
    theta = (torch.rand((m, k), generator=generator) * (2 * torch.pi)).repeat_interleave(group, 0)  # (N, K)
    low, high = config.speed
    magnitude = low + (high - low) * torch.rand((n, k), generator=generator)  # (N, K): the one thing that differs
    velocity = torch.stack([magnitude * torch.sin(theta), magnitude * torch.cos(theta)], dim=-1)  # (N, K, 2) (row, col)
    positions, velocities = simulate_trajectories(
        start, velocity, config.frames, config.free_range, bounce=config.bounce, speed=config.speed, generator=generator
    )
    digits = pool_images[choice]  # (N, K, S, S)
    video = render_clips(digits, positions, config.canvas, combine=config.combine)
    return dataclasses.make_dataclass("GroupedClips", ["video", "labels", "positions"])(video, pool_labels[choice], positions)


def random_signals(n: int, frames: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, frames)`` training signals in ``[0, 1]``, independent per frame (uniform), so a
    model trained on them must read every frame's value and can follow any drawn signal."""
    return torch.rand((n, frames), generator=generator)


def apply_brightness(video: torch.Tensor, signal: torch.Tensor, floor: float = BRIGHTNESS_FLOOR) -> torch.Tensor:
    """Scale frame t of ``video`` ``(N, T, C, H, W)`` in [0, 1] by ``floor + (1 - floor) *
    signal[:, t]``, ``signal`` ``(N, T)`` in [0, 1]: the ink follows the signal."""
    if signal.shape != video.shape[:2]:
        raise ValueError(f"apply_brightness: signal must have shape (N, T) = {tuple(video.shape[:2])}; got {tuple(signal.shape)}")
    gain = floor + (1 - floor) * signal.clamp(0, 1)  # (N, T)
    return video * gain[:, :, None, None, None]


def frame_brightness(video: torch.Tensor, top: int = 16) -> torch.Tensor:
    """The ink brightness of every frame: the mean of its ``top`` brightest pixels.
    ``video`` ``(N, T, C, H, W)`` in [0, 1] -> ``(N, T)``. The brightest pixels are
    the stroke centres, which :func:`apply_brightness` scales by its gain."""
    flat = video.flatten(2)  # (N, T, C*H*W)
    return flat.topk(min(top, flat.shape[-1]), dim=-1).values.mean(-1)


def apply_scale(video: torch.Tensor, signal: torch.Tensor, centres: torch.Tensor, floor: float = SCALE_FLOOR) -> torch.Tensor:
    """Shrink the digit of frame t of ``video`` ``(N, T, 1, H, W)`` about its centre by the factor
    ``floor + (1 - floor) * signal[:, t]`` (``signal`` ``(N, T)`` in [0, 1]; 1 leaves the frame as
    it is). ``centres`` ``(N, T, 2)``: the digit's centre (row, col) in pixels from the top-left
    corner of the frame (a one-digit clip's ``positions[:, :, 0] + digit_size / 2``). Bilinear."""
    if signal.shape != video.shape[:2]:
        raise ValueError(f"apply_scale: signal must have shape (N, T) = {tuple(video.shape[:2])}; got {tuple(signal.shape)}")
    if centres.shape != (*video.shape[:2], 2):
        raise ValueError(f"apply_scale: centres must have shape (N, T, 2) = {(*video.shape[:2], 2)}; got {tuple(centres.shape)}")
    n, t, c, h, w = video.shape
    gain = (floor + (1 - floor) * signal.clamp(0, 1)).reshape(-1)  # (N*T,)
    size = torch.tensor([h, w], dtype=video.dtype, device=video.device)
    centre = (2 * centres.reshape(-1, 2).to(video.dtype) / size - 1).flip(-1)  # (N*T, 2) as (x, y) in [-1, 1]
    theta = torch.zeros(n * t, 2, 3, dtype=video.dtype, device=video.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / gain  # output pixel u reads the input at centre + (u - centre) / gain
    theta[:, :, 2] = centre * (1 - 1 / gain[:, None])
    frames = video.reshape(n * t, c, h, w)
    grid = torch.nn.functional.affine_grid(theta, list(frames.shape), align_corners=False)
    return torch.nn.functional.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False).reshape(video.shape)


def frame_scale(video: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """The digit's size in every frame: the radius of gyration, in px, of the ink about its
    centroid (it grows in proportion to :func:`apply_scale`'s factor). Each frame is first
    divided by its brightest pixel and ink below ``threshold`` of it dropped, so dimmer ink
    alone does not read as a smaller digit. ``video`` ``(N, T, 1, H, W)`` in [0, 1] -> ``(N, T)``;
    NaN for a black frame."""
    n, t, _, h, w = video.shape
    video = video / video.flatten(2).amax(-1)[:, :, None, None, None]  # NaN for a black frame
    ink = (video * (video > threshold)).reshape(n, t, h * w)  # (N, T, HW)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=video.dtype), torch.arange(w, dtype=video.dtype), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()], -1)  # (HW, 2)
    mass = ink.sum(-1, keepdim=True)  # (N, T, 1)
    centroid = ink @ coords / mass  # (N, T, 2)
    spread = (ink * ((coords[None, None] - centroid[:, :, None]) ** 2).sum(-1)).sum(-1) / mass[..., 0]  # (N, T)
    return spread.sqrt()


STROKES = ("thin", "regular", "thick")  # label 0, 1, 2
INKS = ("normal", "inverted")  # label 0, 1: light ink on black, or dark ink on white


def restroke(digits: torch.Tensor, stroke: torch.Tensor) -> torch.Tensor:
    """Each digit's strokes made thinner (``stroke`` 0: erosion, a min filter), kept (1) or
    thicker (2: dilation, a max filter). ``digits`` ``(N, S, S)`` in [0, 1], ``stroke`` ``(N,)``
    ints in {0, 1, 2} -> ``(N, S, S)``. The filter is 3x3 on the digit upsampled 2x and averaged
    back, so a stroke moves by about half a pixel on each side: a 3x3 filter at 16 px erases
    most of a digit (its strokes are about 2 px wide)."""
    if not isinstance(digits, torch.Tensor) or digits.ndim != 3:
        got = tuple(digits.shape) if isinstance(digits, torch.Tensor) else type(digits).__name__
        raise ValueError(f"restroke: digits must have shape (N, S, S); got {got}")
    if not isinstance(stroke, torch.Tensor) or stroke.shape != digits.shape[:1] or stroke.is_floating_point():
        got = (stroke.dtype, tuple(stroke.shape)) if isinstance(stroke, torch.Tensor) else type(stroke).__name__
        raise ValueError(f"restroke: stroke must be an int tensor (N,) = ({digits.shape[0]},) of {dict(enumerate(STROKES))}; got {got}")
    if stroke.numel() and (stroke.min() < 0 or stroke.max() >= len(STROKES)):
        raise ValueError(f"restroke: stroke must hold 0 (thin), 1 (regular) or 2 (thick); got values in [{stroke.min().item()}, {stroke.max().item()}]")
    fine = F.interpolate(digits[:, None].float(), scale_factor=2, mode="bilinear", align_corners=False)  # (N, 1, 2S, 2S)
    thick = F.avg_pool2d(F.max_pool2d(fine, 3, 1, 1), 2)[:, 0]  # (N, S, S)
    thin = F.avg_pool2d(-F.max_pool2d(-fine, 3, 1, 1), 2)[:, 0]
    pick = stroke[:, None, None].to(digits.device)
    return torch.where(pick == 0, thin, torch.where(pick == 2, thick, digits.float())).clamp(0, 1)


@dataclass
class StyleClips:
    """Clips rendered in a drawn style, with the style as labels.

    video      (N, T, 1, H, W) float32 in [0, 1]
    labels     (N, K) int64 digit classes
    positions  (N, T, K, 2) top-left (row, col) of each digit
    stroke     (N,) int64: index into :data:`STROKES` (0 thin, 1 regular, 2 thick)
    ink        (N,) int64: index into :data:`INKS` (0 normal, 1 inverted: ``1 - frame``)
    digits     (N, K, S, S) the digit images as placed (after :func:`restroke`)
    """

    video: torch.Tensor
    labels: torch.Tensor
    positions: torch.Tensor
    stroke: torch.Tensor
    ink: torch.Tensor
    digits: torch.Tensor


def styled_clips(
    n: int,
    config: MovingMNISTConfig,
    *,
    generator: torch.Generator | None = None,
    stroke: torch.Tensor | None = None,
    ink: torch.Tensor | None = None,
    signal: torch.Tensor | None = None,
) -> StyleClips:
    """``n`` clips of ``config`` whose digits are drawn thin, regular or thick (:func:`restroke`)
    and whose ink is normal or inverted, each drawn uniformly per clip unless given (``(N,)``
    ints). ``signal`` ``(N, T)`` in [0, 1]: the ink brightness follows it
    (:func:`apply_brightness`) before any inversion. Returns :class:`StyleClips`."""
    clips = generate_clips(n, config, generator=generator)
    stroke = torch.randint(len(STROKES), (n,), generator=generator) if stroke is None else stroke
    ink = torch.randint(len(INKS), (n,), generator=generator) if ink is None else ink
    if not isinstance(ink, torch.Tensor) or ink.shape != (n,) or ink.is_floating_point() or (n and (ink.min() < 0 or ink.max() > 1)):
        raise ValueError(f"styled_clips: ink must be an int tensor (N,) = ({n},) of 0 (normal) or 1 (inverted); got {ink!r}")
    if not isinstance(stroke, torch.Tensor) or stroke.shape != (n,):  # restroke checks its values, per digit
        raise ValueError(f"styled_clips: stroke must be an int tensor (N,) = ({n},) of 0 (thin), 1 (regular) or 2 (thick); got {stroke!r}")
    k, size = clips.digits.shape[1], clips.digits.shape[-1]
    digits = restroke(clips.digits.reshape(n * k, size, size), stroke.repeat_interleave(k)).reshape(clips.digits.shape)
    video = render_clips(digits, clips.positions, config.canvas, combine=config.combine)  # (N, T, 1, H, W)
    if signal is not None:
        video = apply_brightness(video, signal)
    video = torch.where(ink[:, None, None, None, None] == 1, 1 - video, video)
    return StyleClips(video=video, labels=clips.labels, positions=clips.positions, stroke=stroke, ink=ink, digits=digits)
