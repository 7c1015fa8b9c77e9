"""One call that scores a set of videos against real clips, and prints the table
``python -m vdmcourse evaluate`` shows.

Every number comes with what it needs to be read: the distances with their
sample size, feature dimension and bootstrap interval; the per-clip metrics with
the value the same metric gives on real clips beside them (the floor a model is
compared against, not 0).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.metrics.distances import bootstrap, frechet_distance, kid_bootstrap
from vdmcourse.metrics.features import Evaluator, video_features
from vdmcourse.metrics.physics import check_video, physics_scores, track_digits
from vdmcourse.metrics.temporal import (
    digit_count_consistency,
    dynamic_degree,
    flicker,
    identity_persistence,
    ink_mass_variation,
)

__all__ = ["METRICS", "SHOULD_RESPOND", "clip_metrics", "evaluate_videos", "format_report"]

# name -> (what it measures, True when higher is better)
METRICS = {
    "frechet": ("Fréchet distance to real clips, evaluator features", False),
    "kid": ("kernel distance (unbiased MMD², cubic kernel) to real clips", False),
    "flicker": ("mean |frame change| on static background", False),
    "identity": ("identity persistence: frames keeping the first frame's digit class", True),
    "physics_px": ("RMS distance (px) of tracked digits from the bounce law", False),
    "bounce": ("bounce accuracy: reversals matching the law (Jaccard)", True),
    "dynamic": ("dynamic degree: share of frame steps with motion", True),
    "ink_variation": ("ink-mass coefficient of variation over time", False),
    "digit_count": ("frames showing the right number of digits", True),
}


# Which corruptions of the ladder (vdmcourse.metrics.corruptions) each metric is meant
# to catch; the validation benchmark aims at Spearman rho >= 0.9 in these cells.
SHOULD_RESPOND = {
    "frechet": {"blur", "noise", "freeze", "shuffle", "reverse", "velocity", "swap", "delete"},
    "kid": {"blur", "noise", "freeze", "shuffle", "reverse", "velocity", "swap", "delete"},
    "flicker": {"noise"},
    "identity": {"swap", "delete"},
    # A clip frozen for good is lawful (a digit at rest): the dynamic degree catches it.
    "physics_px": {"shuffle", "reverse", "velocity"},
    "bounce": {"shuffle", "reverse", "velocity"},
    "dynamic": {"freeze"},
    "ink_variation": {"delete"},
    "digit_count": {"delete"},
}


def clip_metrics(video: torch.Tensor, model: Evaluator, digits: int) -> dict[str, float]:
    """The per-clip metrics of ``video`` ``(B, T, 1, H, W)`` in [0, 1], averaged over clips
    (NaN clips, e.g. with no digit seen clearly, left out)."""
    video = check_video(video, caller="clip_metrics")
    tracks = track_digits(video, digits)
    physics = physics_scores(video, digits, model.config.digit_size, tracks=tracks)
    per_clip = {
        "flicker": flicker(video),
        "identity": identity_persistence(video, model, digits, tracks=tracks),
        "physics_px": physics.residual_px,
        "dynamic": dynamic_degree(video),
        "ink_variation": ink_mass_variation(video),
        "digit_count": digit_count_consistency(video, digits),
    }
    scores = {name: values.nanmean().item() for name, values in per_clip.items()}
    scores["bounce"] = physics.bounce_accuracy
    return scores


def evaluate_videos(
    video: torch.Tensor,
    model: Evaluator,
    *,
    digits: int,
    real: MovingMNISTConfig | None = None,
    seed: int = 0,
    resamples: int = 100,
) -> dict:
    """Score ``video`` ``(N, T, 1, H, W)`` in [0, 1] against N real clips.

    The real clips are drawn from ``real`` (default: ``MovingMNISTConfig.cpu`` at the
    evaluator's clip size with ``digits`` digits), always from the *test* digits, with
    ``seed``; a second, disjoint real set (``seed + 1``) gives the real-vs-real floor of
    every metric. Returns ``{"n": N, "dim": D, "videos": {...}, "real": {...}}``, each
    inner dict mapping the names in :data:`METRICS` to values; the Fréchet distance
    and KID also carry ``frechet_low``/``frechet_high`` and ``kid_low``/``kid_high``
    (95 % bootstrap intervals). The floor is one draw: at 100 clips, eight more real
    sets against the same reference gave Fréchet distances from 3.4 to 7.5 and KIDs
    from -0.04 to 0.22 (``benchmarks/results/metrics_floor.md``); compare intervals.
    """
    video = model.check_clips(video, "evaluate_videos")
    n = video.shape[0]
    c = model.config
    base = real or MovingMNISTConfig.cpu()
    config = dataclasses.replace(base, canvas=c.canvas, frames=c.frames, digits=digits, digit_size=c.digit_size, split="test")
    reference = generate_clips(n, config, generator=torch.Generator().manual_seed(seed)).video
    second = generate_clips(n, config, generator=torch.Generator().manual_seed(seed + 1)).video
    features = {name: video_features(model, clips) for name, clips in (("videos", video), ("reference", reference), ("real", second))}
    results = {"n": n, "dim": features["videos"].shape[1],
               "videos": clip_metrics(video, model, digits), "real": clip_metrics(second, model, digits)}
    generator = torch.Generator().manual_seed(seed)
    for name in ("videos", "real"):
        frechet = bootstrap(frechet_distance, features[name], features["reference"], name="Fréchet",
                            resamples=resamples, generator=generator, lower_bound=0.0)
        kernel = kid_bootstrap(features[name], features["reference"], resamples=resamples, generator=generator)
        results[name].update(frechet=frechet.value, frechet_low=frechet.low, frechet_high=frechet.high,
                             kid=kernel.value, kid_low=kernel.low, kid_high=kernel.high)
    return results


def format_report(results: dict, *, title: str = "videos") -> str:
    """A markdown table of :func:`evaluate_videos`'s results, one metric per row."""
    lines = [
        f"Scored {results['n']} clips ({title}) against {results['n']} real clips (test digits); distances in the "
        f"{results['dim']}-d features of the course evaluator (not FVD), Fréchet and KID with their 95 % bootstrap intervals "
        "(the Fréchet interval is for the true distance, which a small sample's estimate overstates, so it can lie below the estimate). "
        f"'real clips' scores a second, disjoint set of {results['n']} real clips: the floor to compare with.",
        "",
        f"| metric | {title} | real clips | better | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, (meaning, higher) in METRICS.items():
        value, real = results["videos"].get(name, math.nan), results["real"].get(name, math.nan)
        shown, floor = f"{value:.4g}", f"{real:.4g}"
        if name in ("frechet", "kid"):
            shown += f" [{results['videos'][name + '_low']:.3g}, {results['videos'][name + '_high']:.3g}]"
            floor += f" [{results['real'][name + '_low']:.3g}, {results['real'][name + '_high']:.3g}]"
        lines.append(f"| {name} | {shown} | {floor} | {'higher' if higher else 'lower'} | {meaning} |")
    return "\n".join(lines)
