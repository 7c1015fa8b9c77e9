"""Self-checks for lesson 00, Set-up and Moving MNIST.

* :func:`check_reflect` -- one vectorised step of bouncing motion (clamp + negate);
* :func:`check_combine` -- digits on their own layers -> one frame (max, or sum then clip);
* :func:`check_velocities` -- velocities recovered from a position track.

Each compares the learner's function with the package (``vdmcourse.data``) on
small inputs and names the mistakes learners really make.
"""

from __future__ import annotations

import torch

from vdmcourse.data import simulate_trajectories, velocities_from_positions
from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check

__all__ = [
    "VELOCITY_NOT_NEGATED",
    "POSITION_NOT_CLAMPED",
    "BOTH_COMPONENTS_FLIPPED",
    "POSITION_MIRRORED",
    "SUM_NOT_CLIPPED",
    "MEAN_INSTEAD_OF_MAX",
    "OFF_BY_ONE_FRAME",
    "SIGN_FLIPPED",
    "check_reflect",
    "check_combine",
    "check_velocities",
]

VELOCITY_NOT_NEGATED = "velocity not negated at the wall"
POSITION_NOT_CLAMPED = "position not clamped to the wall"
BOTH_COMPONENTS_FLIPPED = "both velocity components negated at a one-wall hit"
POSITION_MIRRORED = "position mirrored back from the wall instead of clamped"
SUM_NOT_CLIPPED = "sum without clipping to [0, 1]"
MEAN_INSTEAD_OF_MAX = "mean instead of max"
OFF_BY_ONE_FRAME = "velocity off by one frame"
SIGN_FLIPPED = "velocity sign flipped"

FREE_RANGE = 10.0
# Six digits, one frame each (N=6, K=1): inside, each wall, and a corner.
_POSITIONS = torch.tensor([[[5.0, 5.0]], [[1.0, 5.0]], [[9.0, 5.0]], [[5.0, 1.5]], [[5.0, 8.5]], [[0.5, 9.5]]])
_VELOCITIES = torch.tensor([[[1.0, -2.0]], [[-3.0, 1.0]], [[2.5, -1.0]], [[0.5, -2.0]], [[-1.0, 3.0]], [[-2.0, 2.0]]])


def _reflect_reference() -> tuple[torch.Tensor, torch.Tensor]:
    positions, velocities = simulate_trajectories(_POSITIONS, _VELOCITIES, frames=2, free_range=FREE_RANGE)
    return positions[:, 1], velocities[:, 1]  # (N, K, 2) each


@self_check(
    "Reflection at a wall", reference="vdmcourse.data.simulate_trajectories",
    more="The likely slips are reflecting the overshoot past the wall instead of clamping onto it, and "
         "negating both velocity components when only one hit a wall. Work per component: p = p + v; hit ="
         " (p < 0) | (p > free_range); v = torch.where(hit, -v, v); p = p.clamp(0, free_range).",
)
def check_reflect(reflect_step):
    """``reflect_step(positions, velocities, free_range) -> (positions, velocities)`` after one frame;
    positions and velocities are (N, K, 2) as (row, col); positions stay in [0, free_range]."""
    out = reflect_step(_POSITIONS.clone(), _VELOCITIES.clone(), FREE_RANGE)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Wrong("reflect_step should return a pair (positions, velocities).", hint="End with `return position, velocity`.")
    position, velocity = out
    want_p, want_v = _reflect_reference()
    expect_shape(position, tuple(want_p.shape), "the position tensor")
    expect_shape(velocity, tuple(want_v.shape), "the velocity tensor")
    position, velocity = position.float(), velocity.float()
    moved = _POSITIONS + _VELOCITIES
    if position.min() < -1e-6 or position.max() > FREE_RANGE + 1e-6:
        raise Wrong(
            f"A digit left the box: a position is {position.min():.2f} or {position.max():.2f}, outside [0, {FREE_RANGE:g}].",
            mistake=POSITION_NOT_CLAMPED,
            hint="After `p = p + v`, set a component that went below 0 to 0 and one above free_range to free_range.",
        )
    if torch.allclose(position, want_p) and torch.allclose(velocity, _VELOCITIES):
        raise Wrong(
            "Positions stop at the wall, but the velocity is unchanged: the digit will press into the wall for ever.",
            mistake=VELOCITY_NOT_NEGATED,
            hint="Where a component hit a wall, negate that component of the velocity.",
        )
    mirrored = torch.where(moved < 0, -moved, torch.where(moved > FREE_RANGE, 2 * FREE_RANGE - moved, moved))
    if torch.allclose(position, mirrored) and not torch.allclose(position, want_p):
        raise Wrong(
            "Positions bounce back past the wall by the overshoot; Srivastava et al. clamp them onto the wall.",
            mistake=POSITION_MIRRORED,
            hint="Use `position.clamp(0, free_range)` rather than reflecting the overshoot.",
        )
    hit = ((moved < 0) | (moved > FREE_RANGE)).any(-1, keepdim=True)  # (N, K, 1): any wall hit
    both = torch.where(hit, -_VELOCITIES, _VELOCITIES)
    if torch.allclose(velocity, both) and not torch.allclose(velocity, want_v):
        raise Wrong(
            "A digit that hit one wall had both velocity components negated: it flies back the way it came.",
            mistake=BOTH_COMPONENTS_FLIPPED,
            hint="Hitting the top or bottom wall flips only the row velocity; left or right flips only the column velocity.",
        )
    expect_close(position, want_p, "the position tensor", hint="p = clamp(p + v, 0, free_range), per component.")
    expect_close(velocity, want_v, "the velocity tensor", hint="Negate exactly the components whose position hit a wall.")
    return "Clamped to the wall and only the hitting component negated, for a whole batch at once."


_LAYERS = torch.tensor(
    [
        [[[0.0, 0.6, 0.9], [0.3, 0.0, 0.0]], [[0.8, 0.7, 0.0], [0.0, 0.0, 0.2]]],
        [[[1.0, 0.0, 0.5], [0.0, 0.4, 0.0]], [[0.0, 0.0, 0.9], [0.0, 0.4, 0.0]]],
    ]
)  # (N=2, K=2, H=2, W=3): each digit on a canvas of its own, overlapping in places


@self_check(
    "Combining digits", reference="vdmcourse.data.render_clips",
    more="The likely slips are the axis and the reduction: layers are (N, K, H, W), so the digits are dim 1. 'max' is "
         "layers.amax(dim=1) (not .max(1), which returns a (values, indices) pair, and not a mean); 'sum' "
         "is layers.sum(dim=1).clamp(0, 1).",
)
def check_combine(combine):
    """``combine(layers, mode) -> frames``: layers (N, K, H, W) in [0, 1] (one digit per layer)
    to frames (N, H, W) in [0, 1]; ``mode`` is "max" (pixel-wise max) or "sum" (sum, then clip)."""
    layers = _LAYERS.clone()
    as_max = combine(layers.clone(), "max")
    expect_shape(as_max, (2, 2, 3), 'combine(layers, "max")', hint="Reduce over the digit axis K (dim 1).")
    as_max = as_max.float()
    if torch.allclose(as_max, layers.mean(1)):
        raise Wrong(
            'combine(layers, "max") averaged the digits: where one digit is alone it is drawn at half brightness.',
            mistake=MEAN_INSTEAD_OF_MAX,
            hint="Srivastava et al. take the pixel-wise maximum: `layers.amax(dim=1)`.",
        )
    expect_close(as_max, layers.amax(1), 'combine(layers, "max")', hint="Take the maximum over the digit axis (dim 1).")
    as_sum = combine(layers.clone(), "sum")
    expect_shape(as_sum, (2, 2, 3), 'combine(layers, "sum")')
    as_sum = as_sum.float()
    if as_sum.max() > 1 + 1e-6:
        raise Wrong(
            f'combine(layers, "sum") produced {as_sum.max():.2f}, above 1: overlapping strokes saturate past white.',
            mistake=SUM_NOT_CLIPPED,
            hint="Frames live in [0, 1]: clamp the sum with `.clamp(0, 1)`.",
        )
    if torch.allclose(as_sum, layers.mean(1)):
        raise Wrong('combine(layers, "sum") averaged the digits.', mistake=MEAN_INSTEAD_OF_MAX, hint="Sum over dim 1, then clamp.")
    expect_close(as_sum, layers.sum(1).clamp(0, 1), 'combine(layers, "sum")', hint="Sum over the digit axis, then clip to [0, 1].")
    return "Max and clipped sum both right; frames stay in [0, 1]."


def _track() -> torch.Tensor:
    """Positions (N=2, T=5, K=2, 2) whose steps all differ (accelerating), so shifts show."""
    t = torch.arange(5.0)
    base = torch.stack([0.5 * t**2 + t, 3 - 0.25 * t**2], dim=-1)  # (T, 2)
    return torch.stack([torch.stack([base, 2 * base + 1]), torch.stack([base.flip(-1), base - 4])]).transpose(1, 2)


@self_check(
    "Recovering velocity from positions", reference="vdmcourse.data.velocities_from_positions",
    more="The likely slips are the direction (p[t] - p[t + 1]) and the alignment (the step that arrived at"
         " t). Time is dim 1: steps = positions[:, 1:] - positions[:, :-1], then torch.cat([steps, "
         "steps[:, -1:]], dim=1) so the last frame repeats the last step.",
)
def check_velocities(velocities_from_positions_fn):
    """``fn(positions) -> velocities``: positions (N, T, K, 2) -> velocities (N, T, K, 2) with
    ``v[:, t] = p[:, t + 1] - p[:, t]`` and the last frame repeating the last step."""
    positions = _track().contiguous()
    want = velocities_from_positions(positions)
    out = velocities_from_positions_fn(positions.clone())
    expect_shape(out, tuple(want.shape), "the velocity tensor", hint="One velocity per frame: pad the T - 1 steps with a copy of the last one.")
    out = out.float()
    if torch.allclose(out, -want):
        raise Wrong(
            "Every velocity points backwards: you computed p[t] - p[t + 1].",
            mistake=SIGN_FLIPPED,
            hint="A velocity is where the digit goes next minus where it is: p[t + 1] - p[t].",
        )
    if torch.allclose(out[:, 1:], want[:, :-1]) or torch.allclose(out[:, 1:], -want[:, :-1]):
        raise Wrong(
            "Velocity at frame t is the step that *arrived* at frame t (p[t] - p[t - 1]): one frame late.",
            mistake=OFF_BY_ONE_FRAME,
            hint="In Clips.velocities, v[t] is the step from frame t to frame t + 1.",
        )
    if torch.allclose(out[:, :-2], want[:, 1:-1]):
        raise Wrong(
            "Velocity at frame t is the step from t + 1 to t + 2: one frame early.",
            mistake=OFF_BY_ONE_FRAME,
            hint="v[t] = p[t + 1] - p[t].",
        )
    expect_close(out, want, "the velocity tensor", hint="positions[:, 1:] - positions[:, :-1] along the time axis (dim 1), then repeat the last step.")
    return "v[t] = p[t + 1] - p[t], aligned with the frames like Clips.velocities."
