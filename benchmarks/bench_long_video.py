"""Long videos: how each strategy drifts over 128 frames, what a frame costs, and frame prediction.

    python benchmarks/bench_long_video.py drift      # 128-frame rollouts per strategy vs real long clips
    python benchmarks/bench_long_video.py predict    # 10 -> 10 prediction vs copy-last and constant velocity

``drift`` rolls out ``--clips`` videos of ``--frames`` frames with the shipped
``video-ctx-cpu`` model for each strategy of :class:`vdmcourse.pipelines.LongVideoPipeline`
(autoregressive with k = 2 and 5 context frames, with and without context noise
augmentation; sliding windows; keyframes + interpolation), conditioned on the labels of
real long clips drawn from the test digits, and scores every 10-frame window along the
video: whether the digit is still the one asked for (the course's evaluator classifies the
tracked digit in every frame; the share of frames showing the clip's label -- a swap at a window
seam shows here even when each window is self-consistent), identity persistence within the
window, digit-count stability, ink mass
(relative to the real clips' mean), the physics residual (px) and flicker. The real
clips are the floor. It also records the model calls and seconds per generated frame.

``predict`` gives the model the first 10 frames of real 20-frame test clips and scores
its next 10 (MSE, PSNR, SSIM; :mod:`vdmcourse.metrics.prediction`) against copying the
last frame and the constant-velocity physics baseline.

Results: ``benchmarks/results/long_video.md`` / ``.json`` and ``long_video_drift.png``,
``long_video_strips.png``. Run with one torch thread (``OMP_NUM_THREADS=1``), at most one such job per core.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from vdmcourse.course import CHECKPOINT_DIR
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.metrics import prediction_scores
from vdmcourse.metrics.features import crop_digits, load_evaluator
from vdmcourse.metrics.physics import constant_velocity_prediction, physics_scores, track_digits
from vdmcourse.metrics.prediction import copy_last_frame
from vdmcourse.metrics.temporal import digit_count_consistency, flicker, identity_persistence
from vdmcourse.pipelines import LongVideoPipeline
from vdmcourse.pretrained import atomic_path
from vdmcourse.train import machine_info

RESULTS = Path(__file__).parent / "results"
SEGMENT = 10  # frames per scored window along the video

STRATEGIES = {
    "autoregressive k=2": dict(strategy="autoregressive", context_frames=2),
    "autoregressive k=2, context noise 0.1": dict(strategy="autoregressive", context_frames=2, context_noise=0.1),
    "autoregressive k=5": dict(strategy="autoregressive", context_frames=5),
    "sliding (stride 5)": dict(strategy="sliding", stride=5),
    "hierarchical (keyframes every 3)": dict(strategy="hierarchical", keyframe_stride=3, context_frames=2),
}


def ink_mass(video: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    return (video * (video > threshold)).flatten(2).sum(-1)  # (B, T)


def digit_classes(video: torch.Tensor, evaluator) -> torch.Tensor:
    """The evaluator's class of the (one) tracked digit in every frame: ``(B, T)``, -1 where unseen."""
    tracks = track_digits(video, 1)
    crops = crop_digits(video, tracks.centres, evaluator.config.digit_size)[:, :, 0]  # (B, T, S, S)
    with torch.no_grad():
        classes = evaluator.classify(crops.flatten(0, 1)).argmax(1).view(video.shape[:2])
    return classes.masked_fill(~tracks.clean[:, :, 0], -1)


def window_curves(video: torch.Tensor, evaluator, labels: torch.Tensor) -> dict[str, list[float]]:
    """Each metric on consecutive 10-frame windows: one value per window (mean over clips)."""
    curves = {name: [] for name in ("label_kept", "identity_persistence", "digit_count", "ink_mass", "physics_px", "flicker")}
    kept = (digit_classes(video, evaluator) == labels[:, :1]).float()  # (B, T); unseen frames count as lost
    for start in range(0, video.shape[1] - SEGMENT + 1, SEGMENT):
        part = video[:, start : start + SEGMENT]
        curves["label_kept"].append(kept[:, start : start + SEGMENT].mean().item())
        curves["identity_persistence"].append(identity_persistence(part, evaluator, 1).nanmean().item())
        curves["digit_count"].append(digit_count_consistency(part, 1).mean().item())
        curves["ink_mass"].append(ink_mass(part).mean().item())
        curves["physics_px"].append(physics_scores(part, 1, 16).residual_px.nanmean().item())
        curves["flicker"].append(flicker(part).nanmean().item())
    return curves


def drift(args) -> dict:
    pipe = LongVideoPipeline.from_pretrained(args.checkpoint, device="cpu")
    evaluator = load_evaluator()
    real = generate_clips(args.clips, MovingMNISTConfig.cpu(frames=args.frames, split="test"), generator=torch.Generator().manual_seed(1))
    results = {"real clips": {"curves": window_curves(real.video, evaluator, real.labels)}}
    real_ink = sum(results["real clips"]["curves"]["ink_mass"]) / len(results["real clips"]["curves"]["ink_mass"])
    videos = {"real clips": real.video}
    for name, settings in STRATEGIES.items():
        cpu_start = time.process_time()
        out = pipe(args.frames, labels=real.labels, batch_size=args.clips, generator=torch.Generator().manual_seed(2), progress=False, **settings)
        cpu = time.process_time() - cpu_start
        videos[name] = out.frames
        results[name] = {
            "curves": window_curves(out.frames, evaluator, real.labels),
            "model_calls": out.model_calls,
            "model_calls_per_frame": out.model_calls / args.frames,
            "seconds_per_frame": out.seconds / (args.frames * args.clips),
            "cpu_seconds_per_frame": cpu / (args.frames * args.clips),
        }
        print(f"{name}: {out.seconds:.0f} s", flush=True)
    for entry in results.values():
        entry["curves"]["ink_mass"] = [m / real_ink for m in entry["curves"]["ink_mass"]]
    plot_drift(results)
    plot_strips(videos)
    return {"clips": args.clips, "frames": args.frames, "checkpoint": args.checkpoint.name, "sampler": [pipe.sampler, pipe.steps, pipe.guidance_scale], "results": results}


def plot_drift(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(next(iter(results.values()))["curves"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.4))
    for axis, metric in zip(axes, names):
        for name, entry in results.items():
            curve = entry["curves"][metric]
            style = dict(color="black", linewidth=2.5) if name == "real clips" else {}
            axis.plot([SEGMENT * i for i in range(len(curve))], curve, marker=".", label=name, **style)
        axis.set_title(metric.replace("_", " "))
        axis.set_xlabel("first frame of the 10-frame window")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "long_video_drift.png", dpi=90)


def plot_strips(videos: dict) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(videos), 1, figsize=(16, 1.2 * len(videos)))
    for axis, (name, video) in zip(axes, videos.items()):
        strip = torch.cat(list(video[0, ::4, 0]), dim=1)  # every 4th frame of the first clip
        axis.imshow(strip, cmap="gray", vmin=0, vmax=1)
        axis.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        axis.set_xticks([]), axis.set_yticks([])
    fig.tight_layout()
    fig.savefig(RESULTS / "long_video_strips.png", dpi=80)


def predict(args) -> dict:
    pipe = LongVideoPipeline.from_pretrained(args.checkpoint, device="cpu")
    clips = generate_clips(args.clips, MovingMNISTConfig.cpu(frames=20, split="test"), generator=torch.Generator().manual_seed(3))
    context, target = clips.video[:, :10], clips.video[:, 10:]
    results = {
        "copy last frame": prediction_scores(copy_last_frame(context, 10), target),
        "constant velocity": prediction_scores(constant_velocity_prediction(context, 10, 1, 16), target),
    }
    for k in (2, 5):
        started = time.perf_counter()
        future = pipe.predict(context, 10, context_frames=k, generator=torch.Generator().manual_seed(4))
        results[f"video-ctx-cpu, k={k}, unconditional"] = {**prediction_scores(future, target), "seconds": time.perf_counter() - started}
        print(k, results[f"video-ctx-cpu, k={k}, unconditional"], flush=True)
    return {"clips": args.clips, "checkpoint": args.checkpoint.name, "results": results}


def write_report(key: str, result: dict) -> None:
    path = RESULTS / "long_video.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored[key] = {**result, "machine": machine_info(), "load_average": os.getloadavg()}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(stored, indent=2))
    lines = ["# Long videos (bench_long_video.py)", ""]
    if "drift" in stored:
        d = stored["drift"]
        lines += [
            f"## Drift over {d['frames']} frames ({d['clips']} clips per strategy, {d['checkpoint']}, sampler {d['sampler']})",
            "",
            "Mean over the 10-frame windows of the first 30 frames -> of the last 30 frames. "
            "Ink mass is relative to the real clips' mean. Plot: `long_video_drift.png`; strips: `long_video_strips.png`.",
            "",
            "| strategy | label kept | identity in window | digit count | ink mass | physics px | flicker | model calls / frame | CPU s / frame |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, entry in d["results"].items():
            c = entry["curves"]

            def span(metric, digits=2):
                first, last = c[metric][:3], c[metric][-3:]
                return f"{sum(first) / len(first):.{digits}f} -> {sum(last) / len(last):.{digits}f}"

            cost = f"{entry['model_calls_per_frame']:.1f} | {entry['cpu_seconds_per_frame']:.3f}" if "model_calls" in entry else "- | -"
            lines.append(
                f"| {name} | {span('label_kept')} | {span('identity_persistence')} | {span('digit_count')} | {span('ink_mass')} | "
                f"{span('physics_px')} | {span('flicker', 4)} | {cost} |"
            )
        lines += ["", f"Machine: {stored['drift']['machine']['cpu']}, {stored['drift']['machine']['torch_threads']} thread(s), load average {stored['drift']['load_average']}.", ""]
    if "predict" in stored:
        p = stored["predict"]
        lines += [
            f"## Frame prediction 10 -> 10 ({p['clips']} one-digit 32x32 test clips, {p['checkpoint']})",
            "",
            "| predictor | MSE / pixel | MSE / frame | PSNR dB | SSIM |",
            "|---|---|---|---|---|",
        ]
        for name, s in p["results"].items():
            lines.append(f"| {name} | {s['mse_per_pixel']:.4f} | {s['mse_per_frame']:.1f} | {s['psnr_db']:.2f} | {s['ssim']:.3f} |")
        lines += ["", "k: context frames each window sees (of the 10 given). Unconditional: no labels, no guidance.", ""]
    with atomic_path(RESULTS / "long_video.md") as tmp:
        tmp.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["drift", "predict"])
    parser.add_argument("--clips", type=int, default=None, help="clips (drift: 6, predict: 64)")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT_DIR / "video-ctx-cpu.safetensors")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.command == "drift":
        args.clips = args.clips or 6
        write_report("drift", drift(args))
    else:
        args.clips = args.clips or 64
        write_report("predict", predict(args))


if __name__ == "__main__":
    main()
