"""Validation of the course's video metrics: do they earn trust?

1. **Corruption ladder.** Real clips (the CPU preset: 32x32, 10 frames, one 16 px
   digit, 2 px/frame, test digits) corrupted by each corruption of
   :mod:`vdmcourse.metrics.corruptions` at levels 0..4. Every metric is computed at
   every level; Spearman's rho between level and the metric, oriented so that
   "worse" is positive (higher-is-better metrics are negated), says whether the
   metric rises steadily with severity. The cells where a metric *should* respond
   are marked; the aim there is rho >= 0.9.
2. **Whole-clip time reversal**, which no per-clip or distribution metric can see on
   Moving MNIST (the data is time-symmetric), and which frame prediction does see.
3. **Real-vs-real floor** and **distance against sample size**: two disjoint real
   sets of n clips each, n = 100 .. 2000, and a mildly blurred set against real,
   to show how many clips a distance needs before it settles.
4. **Frame prediction, 10 -> 10** (20-frame CPU clips): the copy-last-frame and
   constant-velocity baselines under MSE (both conventions), PSNR and SSIM.
5. **The floor is one draw** (``--floor-sets K``, alone): ``evaluate_videos`` reports
   the distance of one second real set (seed 1) to its reference (seed 0). K disjoint
   real sets (seeds 1..K) against the same reference show how far that floor moves
   from draw to draw at the sample size a lesson uses.

    python benchmarks/bench_metrics.py            # full: 1000 clips per set
    python benchmarks/bench_metrics.py --clips 200 --clip-metrics 100   # a quick look
    python benchmarks/bench_metrics.py --floor-sets 8 --clips 100      # only study 5

Writes benchmarks/results/metrics.md, metrics.json, metrics_ladder.png and
metrics_sample_size.png; study 5 writes metrics_floor.md and metrics_floor.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from vdmcourse.data import MovingMNISTConfig, generate_clips  # noqa: E402
from vdmcourse.metrics import (  # noqa: E402
    CORRUPTIONS,
    LEVELS,
    METRICS,
    SHOULD_RESPOND,
    bootstrap,
    clip_metrics,
    constant_velocity_prediction,
    copy_last_frame,
    corrupt,
    frechet_distance,
    kid,
    kid_bootstrap,
    load_evaluator,
    prediction_scores,
    reverse_clips,
    spearman,
    video_features,
)
from vdmcourse.pretrained import atomic_path  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = MovingMNISTConfig.cpu(split="test")


def distances(features: torch.Tensor, reference: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
    return {
        "frechet": frechet_distance(features, reference),
        "kid": kid(features, reference, subset_size=min(len(features), 1000), subsets=10, generator=generator)[0],
    }


def ladder(model, clips, reference_features, clip_count: int) -> dict:
    """metric values for every corruption and level: {corruption: {metric: [v0..v4]}}."""
    generator = torch.Generator().manual_seed(10)
    table = {}
    for name in CORRUPTIONS:
        rows = {metric: [] for metric in METRICS}
        for level in LEVELS:
            video = corrupt(clips, name, level, CONFIG, generator=torch.Generator().manual_seed(100 + level))
            scores = distances(video_features(model, video), reference_features, generator)
            scores.update(clip_metrics(video[:clip_count], model, CONFIG.digits))
            for metric in METRICS:
                rows[metric].append(scores[metric])
        table[name] = rows
        print(f"  {name}: done", flush=True)
    return table


def oriented_rho(values: list[float], metric: str) -> float:
    higher_is_better = METRICS[metric][1]
    return spearman(list(LEVELS), [-v if higher_is_better else v for v in values])


def sample_size_study(model, sizes: list[int]) -> dict:
    """Real-vs-real and blurred-vs-real distances (with bootstrap intervals) for growing n."""
    largest = max(sizes)
    first = generate_clips(largest, CONFIG, generator=torch.Generator().manual_seed(20))
    second = generate_clips(largest, CONFIG, generator=torch.Generator().manual_seed(21))
    blurred = corrupt(second, "blur", 1, CONFIG)
    features = {name: video_features(model, video) for name, video in
                (("first", first.video), ("second", second.video), ("blurred", blurred))}
    generator = torch.Generator().manual_seed(22)
    study = {"n": sizes, "real": [], "blur": [], "kid_real": [], "kid_blur": []}
    for n in sizes:
        for key, other in (("real", "second"), ("blur", "blurred")):
            result = bootstrap(frechet_distance, features[other][:n], features["first"][:n], name="Fréchet",
                               resamples=50, generator=generator, lower_bound=0.0)
            study[key].append([result.value, result.low, result.high])
            value, _ = kid(features[other][:n], features["first"][:n], subset_size=min(n, 1000), subsets=10, generator=generator)
            study["kid_" + key].append(value)
    return study


def floor_spread(model, clips: int, sets: int) -> dict:
    """Fréchet and KID, with 95 % intervals, of real sets drawn with seeds 1..sets against
    the seed-0 reference, exactly as ``evaluate_videos`` draws its floor (seed 0 vs seed 1)."""
    reference = video_features(model, generate_clips(clips, CONFIG, generator=torch.Generator().manual_seed(0)).video)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for seed in range(1, sets + 1):
        features = video_features(model, generate_clips(clips, CONFIG, generator=torch.Generator().manual_seed(seed)).video)
        frechet = bootstrap(frechet_distance, features, reference, name="Fréchet", resamples=100,
                            generator=generator, lower_bound=0.0)
        kernel = kid_bootstrap(features, reference, resamples=100, generator=generator)
        rows.append({"seed": seed, "frechet": [frechet.value, frechet.low, frechet.high],
                     "kid": [kernel.value, kernel.low, kernel.high]})
    return {"clips": clips, "dim": reference.shape[1], "rows": rows}


def write_floor(study: dict, seconds: float) -> None:
    rows = study["rows"]
    lines = [
        "# The real-vs-real floor is one draw",
        "",
        f"Real sets of {study['clips']} clips (CPU preset, test digits) drawn with seeds 1..{len(rows)}, each against "
        f"the seed-0 reference, in the evaluator's {study['dim']}-d features; 95 % bootstrap intervals. "
        "`evaluate_videos` reports seed 1's row as its floor. "
        f"Command: `python benchmarks/bench_metrics.py --floor-sets {len(rows)} --clips {study['clips']}` ({seconds:.0f} s).",
        "",
        "| seed | Fréchet | KID |",
        "|---|---|---|",
    ]
    for row in rows:
        (f, f_lo, f_hi), (k, k_lo, k_hi) = row["frechet"], row["kid"]
        lines.append(f"| {row['seed']} | {f:.2f} [{f_lo:.2f}, {f_hi:.2f}] | {k:.3f} [{k_lo:.3f}, {k_hi:.3f}] |")
    frechets, kids = [row["frechet"][0] for row in rows], [row["kid"][0] for row in rows]
    lines += [
        "",
        f"Across the {len(rows)} draws the floor's Fréchet distance runs from {min(frechets):.2f} to {max(frechets):.2f} "
        f"and its KID from {min(kids):.3f} to {max(kids):.3f}. A model whose distance lies inside that range is not "
        "shown worse than real clips by this sample size, and one that lands below the reported floor is not better "
        "than real clips: it had a luckier draw. Compare intervals, not point values.",
        "",
    ]
    with atomic_path(RESULTS / "metrics_floor.md") as tmp:
        tmp.write_text("\n".join(lines))
    with atomic_path(RESULTS / "metrics_floor.json") as tmp:
        tmp.write_text(json.dumps(study, indent=1))


def prediction_study(clips_count: int) -> dict:
    config = MovingMNISTConfig.cpu(frames=20, split="test")
    clips = generate_clips(clips_count, config, generator=torch.Generator().manual_seed(30))
    context, future = clips.video[:, :10], clips.video[:, 10:]
    return {
        "copy last frame": prediction_scores(copy_last_frame(context, 10), future),
        "constant velocity (tracked, bounce law)": prediction_scores(
            constant_velocity_prediction(context, 10, config.digits, config.digit_size), future),
        "time-reversed future (real frames, wrong order)": prediction_scores(reverse_clips(future), future),
    }


def plot_ladder(table: dict, path: Path) -> None:
    """One panel per corruption, showing the metrics that should respond to it."""
    figure, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True, sharey=True)
    for axis, name in zip(axes.flat, CORRUPTIONS):
        for metric in METRICS:
            if name not in SHOULD_RESPOND[metric]:
                continue
            values = torch.tensor(table[name][metric], dtype=torch.float64)
            if METRICS[metric][1]:
                values = -values
            span = (values.max() - values.min()).item()
            scaled = (values - values[0]) / span if span > 0 else values * 0
            axis.plot(LEVELS, scaled.tolist(), marker="o", markersize=4, label=metric)
        axis.set_title(name)
        axis.set_xticks(list(LEVELS))
        axis.legend(fontsize=8, loc="upper left")
    for row in axes:
        row[0].set_ylabel("change from clean, scaled (worse = up)")
    for axis in axes[1]:
        axis.set_xlabel("severity level")
    figure.suptitle("Corruption ladder: the metrics that should respond to each corruption (all values in metrics.md)")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)


def plot_sample_size(study: dict, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    for key, label in (("real", "real vs real (floor)"), ("blur", "blur sigma 0.5 vs real")):
        values = torch.tensor(study[key])
        axis.plot(study["n"], values[:, 0], marker="o", label=label)
        axis.fill_between(study["n"], values[:, 1], values[:, 2], alpha=0.2)
    axis.set_xscale("log")
    axis.set_xlabel("clips per set (n)")
    axis.set_ylabel("Fréchet distance (evaluator features)")
    axis.set_title("Distance against sample size (95 % bootstrap band)")
    axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)


def fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.3g}"


def write_markdown(results: dict, path: Path) -> None:
    table, rhos = results["ladder"], results["rho"]
    expected_cells = [(m, c) for m in METRICS for c in CORRUPTIONS if c in SHOULD_RESPOND[m]]
    passed = [cell for cell in expected_cells if rhos[cell[0]][cell[1]] >= 0.9]
    lines = [
        "# Metric validation",
        "",
        f"Made by `python benchmarks/bench_metrics.py` in {results['seconds']:.0f} s on {results['machine']} "
        f"({results['threads']} torch threads; the machine was shared with other jobs). Clips: the CPU preset "
        f"(32x32, 10 frames, one 16 px digit, 2 px/frame) from the *test* digits. Distances: {results['clips']} "
        f"corrupted clips against {results['clips']} other real clips in the {results['dim']}-d features of "
        f"the course evaluator (`data/checkpoints/evaluator-cpu.safetensors`), not FVD. Per-clip metrics: the "
        f"first {results['clip_metrics']} clips.",
        "",
        "## Corruption ladder: Spearman's rho of severity (levels 0-4) against each metric",
        "",
        "Oriented so that +1 means the metric gets steadily *worse* with severity. **Bold**: the metric "
        "should respond to that corruption (aim: rho >= 0.9); plain: it need not. "
        f"Expected cells reaching 0.9: **{len(passed)} of {len(expected_cells)}**.",
        "",
        "| metric | " + " | ".join(CORRUPTIONS) + " |",
        "|---|" + "---|" * len(CORRUPTIONS),
    ]
    for metric in METRICS:
        cells = []
        for name in CORRUPTIONS:
            text = fmt(rhos[metric][name])
            cells.append(f"**{text}**" if name in SHOULD_RESPOND[metric] else text)
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    missed = [f"{metric} on {name} (rho = {fmt(rhos[metric][name])})" for metric, name in expected_cells
              if not rhos[metric][name] >= 0.9]
    note = ""
    if any("on reverse" in cell for cell in missed):
        note = (" Mid-air reversal is the hard case for the distances: one or two frames replayed backwards move "
                "the features, but a longer replay looks like a bounce, so the distance falls back towards the floor; "
                "the physics residual and bounce accuracy catch it at every level.")
    lines += ["", "Expected cells below 0.9: " + ("; ".join(missed) if missed else "none") + "." + note]
    lines += ["", "Values per level (0 = clean), as measured:", ""]
    lines += ["| corruption | metric | " + " | ".join(f"L{level}" for level in LEVELS) + " |",
              "|---|---|" + "---|" * len(LEVELS)]
    for name in CORRUPTIONS:
        for metric in METRICS:
            lines.append(f"| {name} | {metric} | " + " | ".join(fmt(v) for v in table[name][metric]) + " |")
    reversal = results["reversal"]
    lines += [
        "",
        "Levels: blur sigma 0.5/1/1.5/2 px; noise std 0.05/0.1/0.2/0.3; freeze, shuffle, swap, delete touch the "
        "last (or, for shuffle, random) 2/4/6/8 frames; reverse replays the last 1/2/3/4 frames backwards "
        "(a turn in mid-air); velocity adds random kicks of 0.25/0.5/1/1.5 px/frame per step.",
        "",
        "## Whole-clip time reversal",
        "",
        "Reversed real clips against the same clips forwards (metric: forward, reversed):",
        "",
        "| metric | forward | reversed |",
        "|---|---|---|",
    ]
    for metric in METRICS:
        lines.append(f"| {metric} | {fmt(reversal['forward'][metric])} | {fmt(reversal['reversed'][metric])} |")
    lines += [
        "",
        "Moving MNIST is time-symmetric: a reversed clip is a valid clip (start uniform, direction uniform), so a "
        "distribution distance cannot see it and should not. Only conditional tasks can: see frame prediction below.",
        "",
        "## Real-vs-real floor and sample size",
        "",
        "| n per set | Fréchet real vs real [95% CI] | Fréchet blur (sigma 0.5) vs real [95% CI] | KID real vs real | KID blur vs real |",
        "|---|---|---|---|---|",
    ]
    study = results["sample_size"]
    for i, n in enumerate(study["n"]):
        real, blur = study["real"][i], study["blur"][i]
        lines.append(
            f"| {n} | {fmt(real[0])} [{fmt(real[1])}, {fmt(real[2])}] | {fmt(blur[0])} [{fmt(blur[1])}, {fmt(blur[2])}] "
            f"| {fmt(study['kid_real'][i])} | {fmt(study['kid_blur'][i])} |"
        )
    separated = [n for i, n in enumerate(study["n"]) if study["blur"][i][1] > study["real"][i][2]]
    lines += [
        "",
        "Blur at sigma 0.5 separates from the real floor (intervals apart) from n = "
        + (f"{separated[0]} clips per set on." if separated else "no n tried."),
        "",
        "The Fréchet distance of two real sets is not 0: it is biased upwards by roughly (feature dim)/n, so "
        "distances are only comparable at equal n, and a model's distance means something only next to the floor at "
        "the same n. KID is unbiased (its real-vs-real value scatters around 0 at every n).",
        "",
        "## Frame prediction, 10 -> 10 (CPU clips of 20 frames, test digits)",
        "",
        f"{results['prediction_clips']} clips. MSE per pixel is the mean over pixels; MSE per frame sums the "
        "1,024 pixels of a frame (the OpenSTL convention, whose 64x64 numbers are not comparable with these).",
        "",
        "| predictor | MSE / pixel | MSE / frame | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|",
    ]
    for name, scores in results["prediction"].items():
        lines.append(f"| {name} | {scores['mse_per_pixel']:.4f} | {scores['mse_per_frame']:.1f} | "
                     f"{scores['psnr_db']:.2f} | {scores['ssim']:.3f} |")
    lines += ["", "Plots: `metrics_ladder.png`, `metrics_sample_size.png`.", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=1000, help="clips per set for the distances")
    parser.add_argument("--clip-metrics", type=int, default=300, help="clips the per-clip metrics are averaged over")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500, 1000, 2000])
    parser.add_argument("--floor-sets", type=int, default=0, help="run only study 5 with this many real sets")
    args = parser.parse_args()
    started = time.perf_counter()
    model = load_evaluator()
    if args.floor_sets:
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_floor(floor_spread(model, args.clips, args.floor_sets), time.perf_counter() - started)
        print((RESULTS / "metrics_floor.md").read_text())
        return
    reference = generate_clips(args.clips, CONFIG, generator=torch.Generator().manual_seed(0))
    clips = generate_clips(args.clips, CONFIG, generator=torch.Generator().manual_seed(1))
    reference_features = video_features(model, reference.video)
    print("corruption ladder", flush=True)
    table = ladder(model, clips, reference_features, args.clip_metrics)
    rho = {metric: {name: oriented_rho(table[name][metric], metric) for name in CORRUPTIONS} for metric in METRICS}
    generator = torch.Generator().manual_seed(11)
    reversal = {}
    for key, video in (("forward", clips.video), ("reversed", reverse_clips(clips.video))):
        scores = distances(video_features(model, video), reference_features, generator)
        scores.update(clip_metrics(video[: args.clip_metrics], model, CONFIG.digits))
        reversal[key] = scores
    print("sample size", flush=True)
    study = sample_size_study(model, args.sizes)
    print("prediction", flush=True)
    prediction = prediction_study(args.clip_metrics)
    results = {
        "clips": args.clips,
        "clip_metrics": args.clip_metrics,
        "dim": reference_features.shape[1],
        "ladder": table,
        "rho": rho,
        "reversal": reversal,
        "sample_size": study,
        "prediction": prediction,
        "prediction_clips": args.clip_metrics,
        "machine": os.uname().machine + ", " + (os.cpu_count() and f"{os.cpu_count()} cores"),
        "threads": torch.get_num_threads(),
    }
    results["seconds"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_path(RESULTS / "metrics.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    write_markdown(results, RESULTS / "metrics.md")
    plot_ladder(table, RESULTS / "metrics_ladder.png")
    plot_sample_size(study, RESULTS / "metrics_sample_size.png")
    print((RESULTS / "metrics.md").read_text())


if __name__ == "__main__":
    main()
