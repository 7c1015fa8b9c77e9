"""Trajectory physics: track the digits in a video, fit the generator's motion law
(constant velocity, clamped and reflected at the walls) and measure how far the
video strays from it.

Tracking works on pixels only, so it scores generated videos as well as real
ones. Each frame's ink (pixels above ``threshold``, weighted by intensity) is split
into K clusters by a few k-means steps started from where each digit should be by
now; a cluster's centre is that digit's ink centroid. Where two clusters touch,
the split is ambiguous and the frame is marked *unclean* for both digits (it is
left out of fits and identity checks); after such a stretch, the clusters are
matched to the tracks by their distance to the tracks' constant-velocity
predictions.

The fit: a digit's box (its S×S square, top-left corner ``b``) moves inside
``[0, H - S] x [0, W - S]`` (frames of any shape) by the generator's rule (:func:`vdmcourse.data.simulate_trajectories`),
and the ink centroid sits at a fixed offset ``g`` inside the box. Per axis, a grid
search over the start ``b0`` and velocity ``v`` (coarse, then fine) with ``g`` in
closed form -- constrained to the offsets the digit's ink extent allows, so a
reversal in mid-air cannot be explained away by moving the walls -- gives the
best fitting trajectory. The **residual** is the RMS distance in pixels between
the tracked and fitted centroids; **bounce accuracy** compares the direction
reversals the video shows with those the fitted law makes (Jaccard index of the
events, matched within one frame). Real clips with deterministic bounces score
≈ 0.5 px or less (pasting rounds positions to whole pixels) and accuracy ≈ 1;
stochastic bounces break the law by design.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from vdmcourse.data import render_clips, simulate_trajectories

__all__ = [
    "Tracks",
    "BounceFit",
    "PhysicsScores",
    "check_video",
    "ink_centroid",
    "track_digits",
    "fit_bounces",
    "physics_scores",
    "constant_velocity_prediction",
]

NAN = float("nan")


def check_video(video: torch.Tensor, name: str = "video", *, caller: str) -> torch.Tensor:
    """Refuse anything but a float video ``(B, T, 1, H, W)`` in [0, 1]; return it as float32."""
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"{caller}: {name} must be a torch.Tensor of shape (B, T, 1, H, W); got {type(video).__name__}")
    if video.dim() != 5 or video.shape[2] != 1:
        hint = " (is the time axis in the right place? the layout is (B, T, C, H, W))" if video.dim() == 5 else ""
        raise ValueError(f"{caller}: {name} must have shape (B, T, 1, H, W), grey frames; got {tuple(video.shape)}{hint}")
    if not video.is_floating_point():
        raise TypeError(f"{caller}: {name} must be a float tensor in [0, 1]; got dtype {video.dtype}")
    if video.numel() and (video.min() < -1e-3 or video.max() > 1 + 1e-3):
        raise ValueError(
            f"{caller}: {name} must hold frames in [0, 1]; got values in [{video.min().item():.3g}, {video.max().item():.3g}] "
            "(model outputs in [-1, 1] go through vdmcourse.course.to_unit_range first)"
        )
    return video.float()


def ink_centroid(images: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """Ink centroid ``(..., 2)`` as (row, col) of images ``(..., H, W)`` in [0, 1]: the
    intensity-weighted mean position of pixels above ``threshold`` (NaN where there is none)."""
    weights = images * (images > threshold)
    rows = torch.arange(images.shape[-2], dtype=images.dtype)
    cols = torch.arange(images.shape[-1], dtype=images.dtype)
    mass = weights.sum(dim=(-2, -1))
    row = (weights.sum(-1) * rows).sum(-1) / mass
    col = (weights.sum(-2) * cols).sum(-1) / mass
    return torch.stack([row, col], dim=-1)


@dataclass
class Tracks:
    """Digits tracked through a batch of videos.

    centres   (B, T, K, 2) ink centroid (row, col) in pixels; NaN where the digit is not seen
    clean     (B, T, K) bool: the digit's ink was separate from the others', so its centre is its own
    mass      (B, T, K) the digit's ink mass (sum of intensities above the threshold)
    ink_low   (B, T, K, 2) first ink row/col of the digit (inclusive); NaN where not clean
    ink_high  (B, T, K, 2) last ink row/col of the digit (inclusive); NaN where not clean
    """

    centres: torch.Tensor
    clean: torch.Tensor
    mass: torch.Tensor
    ink_low: torch.Tensor
    ink_high: torch.Tensor


def _first_centres(weights: torch.Tensor, coords: torch.Tensor, k: int) -> torch.Tensor:
    """Farthest-point start for k-means: weights (B, N), coords (B, N, 2) -> centres (B, K, 2)."""
    ink = weights > 0
    centre = (weights[:, None] @ coords)[:, 0] / weights.sum(1, keepdim=True).clamp_min(1e-12)  # (B, 2)
    if k == 1:
        return centre[:, None]
    distance = (coords - centre[:, None]).norm(dim=-1)  # (B, N)
    chosen = []
    for _ in range(k):
        pick = torch.where(ink, distance, torch.full_like(distance, -1.0)).argmax(1)  # (B,)
        chosen.append(coords[torch.arange(len(coords)), pick])
        distance = torch.minimum(distance, (coords - chosen[-1][:, None]).norm(dim=-1))
    return torch.stack(chosen, dim=1)  # (B, K, 2)


def _kmeans(weights: torch.Tensor, coords: torch.Tensor, centres: torch.Tensor, iterations: int) -> torch.Tensor:
    """Weighted k-means steps on weights (B, N) at coords (B, N, 2), moving ``centres``
    (B, K, 2) in place; returns each point's cluster (B, N)."""
    for _ in range(iterations):
        assign = torch.cdist(coords, centres).argmin(-1)  # (B, N)
        member = F.one_hot(assign, centres.shape[1]).to(weights.dtype) * weights[..., None]  # (B, N, K)
        mass = member.sum(1)  # (B, K)
        moved = member.transpose(1, 2) @ coords / mass.clamp_min(1e-12)[..., None]  # (B, K, 2)
        centres.copy_(torch.where(mass[..., None] > 0, moved, centres))
    return torch.cdist(coords, centres).argmin(-1)


def track_digits(video: torch.Tensor, digits: int, *, threshold: float = 0.3, iterations: int = 6) -> Tracks:
    """Track ``digits`` digits through each clip of ``video`` ``(B, T, 1, H, W)`` in [0, 1].

    Returns :class:`Tracks` (see the module docstring for the method). A digit with
    less than 4 px worth of ink in a frame is taken as not seen there.
    """
    video = check_video(video, caller="track_digits")
    if not isinstance(digits, int) or not 1 <= digits <= 4:
        raise ValueError(f"track_digits: digits must be an int in [1, 4]; got {digits!r}")
    b, t, _, h, w = video.shape
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()], dim=1)  # (HW, 2)
    frames = rearrange(video, "b t 1 h w -> b t (h w)")
    weights_all = frames * (frames > threshold)
    centres_out = torch.full((b, t, digits, 2), NAN)
    clean_out = torch.zeros(b, t, digits, dtype=torch.bool)
    mass_out = torch.zeros(b, t, digits)
    low_out, high_out = torch.full((b, t, digits, 2), NAN), torch.full((b, t, digits, 2), NAN)
    last_seen = torch.full((b, digits, 2), NAN)  # position at the last clean frame
    velocity = torch.zeros(b, digits, 2)
    last_time = torch.zeros(b, digits)
    orders = torch.tensor(list(itertools.permutations(range(digits))))  # (P, K)
    for step in range(t):
        weights = weights_all[:, step]  # (B, HW)
        # k-means runs on the ink pixels only: the n heaviest of each frame.
        n = max(int((weights > 0).sum(1).max()), 1)
        heavy = weights.topk(n, dim=1).indices  # (B, n)
        ink_weights, ink_coords = weights.gather(1, heavy), coords[heavy]  # (B, n), (B, n, 2)
        predicted = last_seen + velocity * (step - last_time)[..., None]  # (B, K, 2)
        start = _first_centres(ink_weights, ink_coords, digits)
        known = torch.isfinite(predicted).all(-1, keepdim=True)
        centres = torch.where(known, predicted, start).clone()
        ink_assign = _kmeans(ink_weights, ink_coords, centres, iterations)  # (B, n)
        assign = torch.full_like(weights, -1, dtype=torch.long).scatter(1, heavy, ink_assign)  # (B, HW)
        # Give each cluster to the track whose prediction it is closest to.
        reference = torch.where(known, predicted, centres)
        cost = (centres[:, orders] - reference[:, None]).norm(dim=-1).sum(-1)  # (B, P)
        order = orders[cost.argmin(1)]  # (B, K): cluster feeding track k
        centres = torch.gather(centres, 1, order[..., None].expand(-1, -1, 2))
        masks = (assign[:, None] == order[..., None]) & (weights[:, None] > 0)  # (B, K, HW)
        mass = (masks * weights[:, None]).sum(-1)  # (B, K)
        grid = rearrange(masks.float(), "b k (h w) -> b k h w", h=h)
        grown = F.max_pool2d(grid, 3, stride=1, padding=1)
        others = grid.sum(1, keepdim=True) - grid
        touching = (grown * others).flatten(2).amax(-1) > 0  # (B, K)
        seen = mass > 4.0
        clean = seen & ~touching
        (first_row, last_row), (first_col, last_col) = _first_last(grid.amax(-1) > 0), _first_last(grid.amax(-2) > 0)
        low, high = torch.stack([first_row, first_col], -1), torch.stack([last_row, last_col], -1)  # (B, K, 2)
        centres_out[:, step] = torch.where(seen[..., None], centres, torch.full_like(centres, NAN))
        clean_out[:, step], mass_out[:, step] = clean, mass
        low_out[:, step] = torch.where(clean[..., None], low, torch.full_like(low, NAN))
        high_out[:, step] = torch.where(clean[..., None], high, torch.full_like(high, NAN))
        has_last = torch.isfinite(last_seen).all(-1)
        step_velocity = (centres - last_seen) / (step - last_time).clamp_min(1)[..., None]
        velocity = torch.where((clean & has_last)[..., None], step_velocity, velocity)
        last_seen = torch.where(clean[..., None], centres, last_seen)
        last_time = torch.where(clean, torch.full_like(last_time, step), last_time)
    return Tracks(centres_out, clean_out, mass_out, low_out, high_out)


def _first_last(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the first and last True along the last axis (NaN where none): (...) each."""
    size = present.shape[-1]
    first = present.float().argmax(-1).float()  # argmax returns the first of equal maxima
    last = (size - 1 - present.flip(-1).float().argmax(-1)).float()
    none = ~present.any(-1)
    return first.masked_fill(none, NAN), last.masked_fill(none, NAN)


@dataclass
class BounceFit:
    """The motion law fitted to M tracks of T frames (per axis: row, col).

    start     (M, 2) box corner at frame 0;  velocity (M, 2) px/frame at frame 0
    offset    (M, 2) ink centroid inside the box;  centres (M, T, 2) fitted centroids
    residual  (M,) RMS distance (px) between tracked and fitted centroids over the
              frames used (NaN with fewer than 3 of them)
    """

    start: torch.Tensor
    velocity: torch.Tensor
    offset: torch.Tensor
    centres: torch.Tensor
    residual: torch.Tensor


def _trajectories(start: torch.Tensor, velocity: torch.Tensor, frames: int, free_range: float) -> torch.Tensor:
    """1-D box trajectories under the generator's law: (G,) starts and velocities -> (G, T)."""
    positions = torch.stack([start, start], -1)[:, None]  # (G, 1, 2): both axes carry the same candidate
    velocities = torch.stack([velocity, velocity], -1)[:, None]
    track, _ = simulate_trajectories(positions, velocities, frames, free_range)
    return track[:, :, 0, 0]  # (G, T)


def _fit_axis(centre, used, offset_low, offset_high, free_range, max_speed, prior=None):
    """Grid-search one axis: centre/used (M, T), offset bounds (M,) -> start, velocity, offset (M,) and the fit (M, T).

    ``prior`` (M,): a weak preference for the offset, deciding between fits that explain
    the track equally well (with no bounce in view, where the box sits around the ink
    is invisible)."""
    m, frames = centre.shape
    weight = used.float()
    count = weight.sum(1).clamp_min(1)
    observed = centre.nan_to_num(0.0)

    def score(box, rows):  # box (m, G, T) for the tracks ``rows`` -> error (m, G), offset (m, G)
        w = weight[rows, None]
        offset = ((observed[rows, None] - box) * w).sum(-1) / count[rows, None]
        offset = torch.maximum(torch.minimum(offset, offset_high[rows, None]), offset_low[rows, None])
        error = ((observed[rows, None] - box - offset[..., None]).square() * w).sum(-1)
        if prior is not None:
            error = error + 1e-3 * (offset - prior[rows, None]).square()
        return error, offset

    # Coarse grid, shared by all tracks: corner steps of 0.5 px, speed steps of 1/8 px/frame.
    step_start, step_speed = 0.5, 0.125
    starts = torch.arange(0, free_range + 1e-6, step_start)
    speeds = torch.arange(-max_speed, max_speed + 1e-6, step_speed)
    grid_start, grid_speed = (g.flatten() for g in torch.meshgrid(starts, speeds, indexing="ij"))
    coarse = _trajectories(grid_start, grid_speed, frames, free_range)  # (G, T)
    top = torch.cat([
        score(coarse[None].expand(len(rows), -1, -1), rows)[0].topk(4, dim=1, largest=False).indices
        for rows in torch.arange(m).split(128)
    ])  # (M, 4): several basins, since a bounce's timing makes the error surface rugged
    # Fine grid around each of the best coarse candidates, one coarse step either way.
    offsets_start = torch.linspace(-step_start, step_start, 11)
    offsets_speed = torch.linspace(-step_speed, step_speed, 11)
    fine_start = (grid_start[top][..., None, None] + offsets_start[:, None]).clamp(0, free_range)  # (M, 4, 11, 1)
    fine_speed = grid_speed[top][..., None, None] + offsets_speed
    fine_start, fine_speed = (g.reshape(m, -1) for g in torch.broadcast_tensors(fine_start, fine_speed))  # (M, 484)
    fine = _trajectories(fine_start.flatten(), fine_speed.flatten(), frames, free_range).view(m, -1, frames)
    error, offset = score(fine, torch.arange(m))
    best = error.argmin(1, keepdim=True)
    box = torch.gather(fine, 1, best[..., None].expand(-1, -1, frames))[:, 0]  # (M, T)
    offset = torch.gather(offset, 1, best)[:, 0]
    return torch.gather(fine_start, 1, best)[:, 0], torch.gather(fine_speed, 1, best)[:, 0], offset, box + offset[:, None]


def fit_bounces(
    centres: torch.Tensor,
    used: torch.Tensor,
    offset_low: torch.Tensor,
    offset_high: torch.Tensor,
    free_range: float,
    *,
    max_speed: float | None = None,
    offset_prior: torch.Tensor | None = None,
) -> BounceFit:
    """Fit the generator's motion law to M tracks.

    centres      (M, T, 2) tracked ink centroids (row, col), NaN allowed where unused
    used         (M, T) bool, the frames to fit
    offset_low   (M, 2), offset_high (M, 2): the allowed centroid offsets inside the box
    free_range   ``canvas - digit_size``, the box corner's range on each axis; a pair
                 ``(rows, cols)`` for a frame that is not square
    max_speed    largest speed per axis searched (default ``free_range / 3``, per axis)
    offset_prior (M, 2) optional: the offset to prefer among equally good fits (MNIST
                 digits are centred by their centre of mass, so ``(S - 1) / 2``)
    """
    if centres.dim() != 3 or centres.shape[-1] != 2 or used.shape != centres.shape[:2]:
        raise ValueError(f"fit_bounces: centres must be (M, T, 2) and used (M, T); got {tuple(centres.shape)} and {tuple(used.shape)}")
    ranges = tuple(free_range) if isinstance(free_range, (tuple, list)) else (free_range, free_range)
    if len(ranges) != 2:
        raise ValueError(f"fit_bounces: free_range must be a number or a (rows, cols) pair; got {free_range!r}")
    used = used & torch.isfinite(centres).all(-1)
    fits = [
        _fit_axis(centres[..., axis], used, offset_low[:, axis], offset_high[:, axis], float(ranges[axis]),
                  float(ranges[axis] / 3 if max_speed is None else max_speed), None if offset_prior is None else offset_prior[:, axis])
        for axis in (0, 1)
    ]
    start, velocity, offset, fitted = (torch.stack(parts, -1) for parts in zip(*fits))
    distance = (centres - fitted).norm(dim=-1).nan_to_num(0.0)
    count = used.sum(1)
    residual = ((distance.square() * used).sum(1) / count.clamp_min(1)).sqrt()
    residual = torch.where(count >= 3, residual, torch.full_like(residual, NAN))
    return BounceFit(start, velocity, offset, fitted, residual)


def _reversals(steps: list[float], times: list[int], eps: float) -> list[float]:
    """Times at which a 1-D motion reverses: sign flips between successive clear steps."""
    clear = [(time, step) for time, step in zip(times, steps) if abs(step) > eps]
    return [(t1 + t2) / 2 + 1 for (t1, s1), (t2, s2) in zip(clear, clear[1:]) if (s1 > 0) != (s2 > 0)]


def _match_events(observed: list[float], fitted: list[float], tolerance: float = 1.0) -> int:
    unused = list(fitted)
    matched = 0
    for time in observed:
        near = [f for f in unused if abs(f - time) <= tolerance]
        if near:
            unused.remove(min(near, key=lambda f: abs(f - time)))
            matched += 1
    return matched


@dataclass
class PhysicsScores:
    """Trajectory physics of B clips.

    residual_px     (B,) RMS distance (px) of the tracked digits from the fitted law,
                    averaged over the clip's digits with >= 3 clean frames (NaN if none)
    bounces_matched (B,) reversals seen in the video that the law also makes
    bounces_total   (B,) reversals seen or made by the law (the union)
    fit             the per-track :class:`BounceFit` (M = B·K tracks)
    """

    residual_px: torch.Tensor
    bounces_matched: torch.Tensor
    bounces_total: torch.Tensor
    fit: BounceFit

    @property
    def bounce_accuracy(self) -> float:
        """Jaccard index of seen and lawful reversals over all clips (1.0 when no reversal at all)."""
        total = self.bounces_total.sum().item()
        return 1.0 if total == 0 else self.bounces_matched.sum().item() / total


def _offset_bounds(tracks: Tracks, digit_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the ink centroid can sit inside a box of ``digit_size`` given the ink's extent: (B, K, 2) each."""
    to_first = (tracks.centres - tracks.ink_low).nanmedian(dim=1).values  # centroid minus first ink pixel
    to_last = (tracks.ink_high - tracks.centres).nanmedian(dim=1).values
    low, high = to_first - 0.5, digit_size - 1 - to_last + 0.5  # +-0.5: pasting rounds the corner
    middle = (low + high) / 2
    low, high = torch.minimum(low, middle), torch.maximum(high, middle)  # ink wider than the box: pin the middle
    unknown = ~torch.isfinite(low)
    return low.masked_fill(unknown, 0.0), high.masked_fill(unknown, float(digit_size))


def physics_scores(
    video: torch.Tensor, digits: int, digit_size: int, *, tracks: Tracks | None = None, max_speed: float | None = None
) -> PhysicsScores:
    """Track ``digits`` digits of ``digit_size`` px in ``video`` ``(B, T, 1, H, W)`` in [0, 1],
    fit the motion law to each track's clean frames and score the clip (see :class:`PhysicsScores`)."""
    video = check_video(video, caller="physics_scores")
    b, t, _, h, w = video.shape
    if not isinstance(digit_size, int) or not 1 <= digit_size < min(h, w):
        raise ValueError(f"physics_scores: digit_size must be an int in [1, {min(h, w) - 1}] for {h}x{w} px frames; got {digit_size!r}")
    tracks = tracks if tracks is not None else track_digits(video, digits)
    low, high = _offset_bounds(tracks, digit_size)
    centres = rearrange(tracks.centres, "b t k c -> (b k) t c")
    used = rearrange(tracks.clean, "b t k -> (b k) t")
    low, high = low.flatten(0, 1), high.flatten(0, 1)
    # MNIST centres each digit by its centre of mass: the box's middle is the best guess.
    prior = torch.full_like(low, (digit_size - 1) / 2).clamp(low, high)
    fit = fit_bounces(centres, used, low, high, (h - digit_size, w - digit_size), max_speed=max_speed, offset_prior=prior)
    residual = rearrange(fit.residual, "(b k) -> b k", b=b).nanmean(1)
    matched, total = torch.zeros(b), torch.zeros(b)
    for track in range(b * digits):
        frames = [i for i in range(t - 1) if used[track, i] and used[track, i + 1]]
        for axis in (0, 1):
            seen = _reversals([(centres[track, i + 1, axis] - centres[track, i, axis]).item() for i in frames], frames, 0.5)
            lawful = _reversals([(fit.centres[track, i + 1, axis] - fit.centres[track, i, axis]).item() for i in frames], frames, 0.5)
            hits = _match_events(seen, lawful)
            matched[track // digits] += hits
            total[track // digits] += len(seen) + len(lawful) - hits
    return PhysicsScores(residual, matched, total, fit)


def constant_velocity_prediction(context: torch.Tensor, horizon: int, digits: int, digit_size: int) -> torch.Tensor:
    """The physics baseline for frame prediction, from pixels alone.

    Tracks the digits in ``context`` ``(B, T0, 1, H, W)`` in [0, 1], fits the motion law
    to each track, cuts each digit's S×S box out of its last clean context frame and
    pastes it (pixel-wise max) where the law carries it over the next ``horizon``
    frames. Returns ``(B, horizon, 1, H, W)`` in [0, 1]. Close for one digit with
    deterministic bounces -- not exact, since where the box sits around the ink is a
    guess and a bounce can land a pixel off; overlaps spoil the cut-outs with two.
    """
    context = check_video(context, "context", caller="constant_velocity_prediction")
    b, t0, _, h, _ = context.shape
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"constant_velocity_prediction: horizon must be a positive int; got {horizon!r}")
    tracks = track_digits(context, digits)
    fit, free_range = physics_scores(context, digits, digit_size, tracks=tracks).fit, h - digit_size
    # Carry the fitted law on: restart it from the last context frame.
    box = fit.centres - fit.offset[:, None]  # (M, T0, 2) fitted box corners
    last_velocity = simulate_trajectories(fit.start[:, None], fit.velocity[:, None], t0, free_range)[1][:, -1, 0]
    future, _ = simulate_trajectories(box[:, -1:].reshape(-1, 1, 2), last_velocity[:, None], horizon + 1, free_range)
    future = rearrange(future[:, 1:, 0], "(b k) t c -> b t k c", b=b)  # (B, horizon, K, 2)
    clean = rearrange(tracks.clean, "b t k -> (b k) t")
    last_clean = torch.where(clean.any(1), (clean * torch.arange(t0)).argmax(1), torch.full((b * digits,), t0 - 1))
    corner = box[torch.arange(b * digits), last_clean].round().long().clamp(0, free_range)  # (M, 2)
    frames = context[torch.arange(b).repeat_interleave(digits), last_clean, 0]  # (M, H, W)
    offsets = torch.arange(digit_size)
    rows, cols = corner[:, 0, None] + offsets, corner[:, 1, None] + offsets  # (M, S)
    cutouts = frames[torch.arange(b * digits)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (M, S, S)
    return render_clips(rearrange(cutouts, "(b k) r c -> b k r c", b=b), future, h)
