"""The video U-Net on a CPU: (2+1)-D vs Conv3d cost, and sample quality at fixed training budgets.

    python benchmarks/bench_unet3d.py speed                  # cost table (a few minutes)
    python benchmarks/bench_unet3d.py snapshot runs/video-cpu  # run beside training: keeps every saved model
    python benchmarks/bench_unet3d.py budgets runs/video-cpu   # strips + metrics at 5/10/15/30 min
    python benchmarks/bench_unet3d.py ablate --steps 1000      # uniform vs logit-normal times, side by side

``speed`` times training steps of the ``video-cpu`` model at equal width with the
two convolution types, the per-frame image model for reference, and the memory the
autograd graph keeps for the backward pass (the bulk of training memory; on a GPU
the peak allocated memory is measured as well).

``snapshot`` copies the run's ``model.safetensors`` (the EMA weights) every time the
trainer saves, with its step and training seconds. ``budgets`` picks, for each
budget, the last snapshot within it, draws the same clips from it (same seeds,
digits 0-9), writes a PNG frame strip per budget to ``benchmarks/results/`` and
scores flicker, identity persistence (the course's evaluator) and the motion
measures of :mod:`vdmcourse.metrics.temporal`.

``ablate`` trains ``video-cpu`` once per variant of its recipe (one process and one
thread each, side by side, same seeds) for the same number of steps and scores the
samples as ``budgets`` does.

Everything is written to ``benchmarks/results/unet3d.md`` (and ``.json``), with the
machine and its load average: on a shared machine the wall-clock figures are pessimistic.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from vdmcourse.course import CHECKPOINT_DIR, seed_everything, to_unit_range
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.diffusion import GUIDE_EVERY_CALL, sample, training_loss
from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig
from vdmcourse.nn.unet3d import UNet3D
from vdmcourse.presets import get_preset
from vdmcourse.pretrained import atomic_path, build_model, load_checkpoint
from vdmcourse.train import Trainer, machine_info
from vdmcourse.viz import frame_strip

RESULTS = Path(__file__).parent / "results"
BUDGETS_MIN = (5, 10, 15, 30)
PER_DIGIT = 3  # clips drawn per digit at each budget
CLIPS = 10 * PER_DIGIT
# Changes to the video-cpu preset compared by `ablate`: name -> (description, preset fields).
ABLATIONS = {
    "uniform": ("uniform training times (video-cpu until this change)", {"t_distribution": "uniform"}),
    "logit_normal": ("logit-normal training times (video-cpu)", {"t_distribution": "logit_normal", "t_mean": 0.0}),
}


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def saved_for_backward_mb(model, x, t, cond) -> float:
    """Megabytes of tensors the autograd graph keeps for the backward pass (each storage once)."""
    storages = {}

    def keep(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(x, t, cond).square().mean()
    return sum(storages.values()) / 2**20


def time_training(models: dict, x, cond, steps: int) -> dict:
    """Median seconds per optimiser step (flow loss) of each model. The models take turns,
    one step each per round (the first round is a warm-up), so a change in the machine's
    load during the measurement hits them all alike."""
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}
    generator = torch.Generator().manual_seed(0)
    durations = {name: [] for name in models}
    for round_ in range(steps + 1):
        for name, model in models.items():
            started = time.perf_counter()
            loss = training_loss(model, x, cond=cond, generator=generator)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            if round_ > 0:
                durations[name].append(time.perf_counter() - started)
    return {name: sorted(values)[len(values) // 2] for name, values in durations.items()}


def speed(args) -> dict:
    torch.set_num_threads(args.threads)
    preset = get_preset("video-cpu")
    video_config = preset.model_config
    image = UNet2D(UNet2DConfig(**video_config.image_fields()))
    batch, frames = preset.batch_size, video_config.frames
    x = torch.rand(batch, frames, 1, video_config.image_size, video_config.image_size) * 2 - 1
    t, cond = torch.rand(batch), torch.randint(0, 10, (batch,))
    variants = {
        "image model, per frame (no time)": image,
        "(2+1)D (video-cpu)": UNet3D.from_image_model(image, video_config),
        "(2+1)D, temporal conv at every level": UNet3D.from_image_model(image, temporal_conv_levels=None, **_video_fields(video_config, "temporal_conv_levels")),
        "Conv3d 3x3x3": UNet3D.from_image_model(image, conv="3d", **_video_fields(video_config, "conv")),
    }
    rows = []
    timings = time_training(variants, x, cond, args.steps)
    for name, model in variants.items():
        seconds = timings[name]
        row = {
            "model": name,
            "params": sum(p.numel() for p in model.parameters()),
            "train_s_per_step": seconds,
            "steps_per_s": 1 / seconds,
            "clip_frames_per_s": batch * frames / seconds,
            "saved_for_backward_mb": saved_for_backward_mb(model, x, t, cond),
        }
        if torch.cuda.is_available():
            row["cuda_peak_mb"] = _cuda_peak_mb(model, x, t, cond)
        rows.append(row)
        print(f"{name:<40} {row['params']:>9,} params  {seconds:6.2f} s/step  {row['saved_for_backward_mb']:7.1f} MB", flush=True)
    return {
        "batch": f"{batch} clips x {frames} frames x {video_config.image_size}x{video_config.image_size}",
        "threads": args.threads,
        "load_average": load_average(),
        "rows": rows,
    }


def _video_fields(config, *leave_out) -> dict:
    fields = {name: getattr(config, name) for name in config.__dataclass_fields__ if name not in config.image_fields()}
    return {name: value for name, value in fields.items() if name not in leave_out}


def _cuda_peak_mb(model, x, t, cond) -> float:
    model, device = model.cuda(), torch.device("cuda")
    torch.cuda.reset_peak_memory_stats()
    model(x.to(device), t.to(device), cond.to(device)).square().mean().backward()
    peak = torch.cuda.max_memory_allocated() / 2**20
    model.cpu()
    return peak


def snapshot(args) -> None:
    """Copy RUN/model.safetensors into RUN/snapshots/ whenever the trainer rewrites it."""
    run = Path(args.run)
    target = run / "snapshots"
    target.mkdir(parents=True, exist_ok=True)
    seen = None
    while True:
        source = run / "checkpoint.safetensors"
        if source.is_file() and source.stat().st_mtime != seen:
            seen = source.stat().st_mtime
            try:
                checkpoint = load_checkpoint(source)
            except (ValueError, FileNotFoundError):
                continue  # caught mid-rename; the next poll sees the finished file
            name = f"step_{checkpoint.step:06d}.safetensors"
            shutil.copyfile(run / "model.safetensors", target / name)
            index_path = target / "index.json"
            index = json.loads(index_path.read_text()) if index_path.is_file() else {}
            index[name] = {"step": checkpoint.step, "train_s": checkpoint.state["elapsed_s"], "cpu_s": checkpoint.state.get("cpu_s"),
                           "load_average": load_average(),
                           "wall_clock": time.strftime("%H:%M:%S")}
            with atomic_path(index_path) as tmp:
                tmp.write_text(json.dumps(index, indent=1))
            print(f"snapshot {name} at {checkpoint.state['elapsed_s'] / 60:.1f} min of training", flush=True)
        if args.once:
            return
        time.sleep(5)


def _scores(video, evaluator, digit_size: int) -> dict:
    """The budget table's measures of ``video`` ``(B, T, 1, H, W)`` in [0, 1] (one-digit clips)."""
    from vdmcourse.metrics import dynamic_degree, flicker, identity_persistence, physics_scores, shape_change

    return {
        "frame_difference": (video[:, 1:] - video[:, :-1]).abs().mean().item(),
        "flicker": flicker(video).nanmean().item(),
        "identity_persistence": identity_persistence(video, evaluator, digits=1).nanmean().item() if evaluator else None,
        "dynamic_degree": dynamic_degree(video).mean().item(),
        "shape_change": shape_change(video).mean().item(),
        "physics_px": physics_scores(video, 1, digit_size).residual_px.nanmean().item(),
    }


def _evaluator():
    from vdmcourse.metrics import load_evaluator

    try:
        return load_evaluator()
    except ValueError:  # the evaluation network is not shipped: identity is left out
        return None


def budgets(args) -> dict:
    run = Path(args.run)
    index = json.loads((run / "snapshots" / "index.json").read_text())
    evaluator = _evaluator()

    def scores(video) -> dict:
        return _scores(video, evaluator, preset_info["data"]["digit_size"])

    def strip_for(video, label: str) -> str:
        strip = RESULTS / f"unet3d_samples_{label}.png"
        with atomic_path(strip) as tmp:
            frame_strip(video[:5], titles=[str(i) for i in range(5)]).savefig(tmp, format="png", dpi=120)
        return str(strip.relative_to(RESULTS.parent.parent))

    first = load_checkpoint(run / "snapshots" / min(index))
    preset_info = first.metadata
    real = generate_clips(CLIPS, MovingMNISTConfig(**preset_info["data"]), generator=seed_everything(0))
    # At 0 minutes the inflated model is the image model applied frame by frame.
    image = load_checkpoint(CHECKPOINT_DIR / "image-cpu.safetensors")
    per_frame = _draw(build_model(image), preset_info)
    rows = [
        {"budget_min": None, "snapshot": "real clips", "step": None, "train_min": None, "load_average": "",
         **scores(real.video), "strip": strip_for(real.video, "real")},
        {"budget_min": 0, "snapshot": f"image-cpu ({image.step} steps) per frame, what inflation starts from", "step": 0, "train_min": 0.0,
         "load_average": "", **scores(per_frame), "strip": strip_for(per_frame, "00min")},
    ]
    trained_s = max(entry["train_s"] for entry in index.values())
    # A run stopped by --minutes ends less than one step past its budget: one step of slack.
    step_s = trained_s / max(entry["step"] for entry in index.values())
    for minutes in BUDGETS_MIN:
        if trained_s < minutes * 60 - step_s:
            continue  # the run ended before this budget
        within = [(entry["train_s"], name) for name, entry in index.items() if entry["train_s"] <= minutes * 60 + step_s]
        _, name = max(within)
        entry = index[name]
        checkpoint = load_checkpoint(run / "snapshots" / name)
        video = _draw(build_model(checkpoint), checkpoint.metadata)
        rows.append({
            "budget_min": minutes,
            "snapshot": name,
            "step": entry["step"],
            "train_min": entry["train_s"] / 60,
            "load_average": entry["load_average"],
            **scores(video),
            "strip": strip_for(video, f"{minutes:02d}min"),
        })
        print(rows[-1], flush=True)
    return {"run": str(run), "rows": rows}


def _train_variant(name: str, steps: int) -> dict:
    torch.set_num_threads(1)
    description, fields = ABLATIONS[name]
    preset = dataclasses.replace(get_preset("video-cpu"), **fields)
    seed_everything(preset.train.seed)
    trainer = Trainer(preset.build_model(), preset.loss_fn(), preset.batches(), preset.train, device="cpu", progress=False)
    trainer.fit(steps)
    video = _draw(trainer.ema, preset.metadata())
    strip = RESULTS / f"unet3d_ablation_{name}.png"
    with atomic_path(strip) as tmp:
        frame_strip(video[:5], titles=[str(i) for i in range(5)]).savefig(tmp, format="png", dpi=120)
    print(f"{name}: {steps} steps in {trainer.elapsed / 60:.1f} min", flush=True)
    return {"variant": description, "steps": steps, "train_min": trainer.elapsed / 60,
            **_scores(video, _evaluator(), preset.data.digit_size), "strip": str(strip.relative_to(RESULTS.parent.parent))}


def ablate(args) -> dict:
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=len(ABLATIONS), mp_context=spawn) as pool:
        rows = list(pool.map(_train_variant, ABLATIONS, [args.steps] * len(ABLATIONS)))
    return {"steps": args.steps, "load_average": load_average(), "rows": rows}


def _draw(model, info: dict) -> torch.Tensor:
    """``PER_DIGIT`` clips of each digit 0-9 with the checkpoint's sampler settings, seed 0:
    ``(CLIPS, T, 1, H, W)`` in [0, 1], digits 0, 1, ..., 9, 0, 1, ..."""
    clips = sample(
        model,
        (CLIPS, *info["sample_shape"]),
        sampler=info["sampler"],
        steps=info["sample_steps"],
        cond=torch.arange(10).repeat(PER_DIGIT),
        guidance_scale=info["guidance_scale"],
        guidance_interval=info.get("guidance_interval", GUIDE_EVERY_CALL),
        generator=seed_everything(0),
        progress=False,
    )
    return to_unit_range(clips)


def write_report(results: dict) -> None:
    path = RESULTS / "unet3d.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored.update(results)
    stored["machine"] = machine_info()
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(stored, indent=1) + "\n")
    lines = ["# The 3D U-Net on a CPU", "", f"Machine: {stored['machine']['cpu']}, {stored['machine']['cores']} cores "
             f"(shared with other jobs: the load average is given with each table), torch {stored['machine']['torch']}.", ""]
    if "speed" in stored:
        speed_result = stored["speed"]
        lines += [
            "## (2+1)D vs Conv3d at equal width",
            "",
            f"Training steps on {speed_result['batch']} (flow loss, AdamW), {speed_result['threads']} threads, "
            f"load average {speed_result['load_average']}. Memory: tensors autograd keeps for the backward pass.",
            "",
            "| model | params | s/step | steps/s | frames/s | saved for backward (MB) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in speed_result["rows"]:
            lines.append(f"| {row['model']} | {row['params']:,} | {row['train_s_per_step']:.2f} | {row['steps_per_s']:.2f} | "
                         f"{row['clip_frames_per_s']:.0f} | {row['saved_for_backward_mb']:.0f} |")
        lines.append("")
    if "budgets" in stored:
        lines += [
            "## Samples at fixed CPU training budgets (video-cpu)",
            "",
            "Training minutes are the trainer's own clock (steps only, no checkpoint writing). "
            f"Samples: {CLIPS} clips ({PER_DIGIT} of each digit 0-9), seed 0, the preset's sampler; strips show the first five "
            "(digits 0-4). Frame difference: mean |x[t+1] - x[t]| "
            "over all pixels (real clips: the motion alone; independent frames: far more); flicker: the same on "
            "the background only (lower is steadier); identity: share of frames whose digit class matches its first clean frame "
            "(the course's evaluator); shape change: what of each frame no whole-pixel shift of the previous frame explains, "
            "per unit of ink (real: 0; a redrawn digit: about 1); physics: distance in px of the tracked digit from the best "
            "constant-velocity-with-bounces path (real: 0.3, pixel rounding); dynamic degree: share of frame steps with visible "
            "motion (real clips: 1).",
            "",
            "| budget | step | training min | load avg (1/5/15) | frame difference | flicker | identity | shape change | physics (px) | dynamic | strip |",
            "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in stored["budgets"]["rows"]:
            budget = "real clips" if row["budget_min"] is None else f"{row['budget_min']} min"
            if row["budget_min"] == 0:
                budget = f"0 min ({row['snapshot']})"
            step = "" if row["step"] is None else row["step"]
            train = "" if row["train_min"] is None else f"{row['train_min']:.1f}"
            lines.append(f"| {budget} | {step} | {train} | {row['load_average']} | {row['frame_difference']:.4f} | "
                         f"{row['flicker']:.4f} | {_maybe(row['identity_persistence'])} | {row['shape_change']:.2f} | "
                         f"{row['physics_px']:.2f} | {row['dynamic_degree']:.2f} | "
                         f"[{Path(row['strip']).name}]({Path(row['strip']).name}) |")
        lines.append("")
    if "ablation" in stored:
        ablation = stored["ablation"]
        lines += [
            "## Changes to the recipe, at equal steps",
            "",
            f"Each variant of video-cpu trained for {ablation['steps']} steps from the same inflated model and seeds, "
            f"one process with one thread each, side by side (load average at the end {ablation['load_average']}); "
            "samples and measures as in the budget table.",
            "",
            "| variant | steps | training min | frame difference | flicker | identity | shape change | physics (px) | dynamic | strip |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in ablation["rows"]:
            lines.append(f"| {row['variant']} | {row['steps']} | {row['train_min']:.1f} | {row['frame_difference']:.4f} | "
                         f"{row['flicker']:.4f} | {_maybe(row['identity_persistence'])} | {row['shape_change']:.2f} | "
                         f"{row['physics_px']:.2f} | {row['dynamic_degree']:.2f} | [{Path(row['strip']).name}]({Path(row['strip']).name}) |")
        lines.append("")
    if stored.get("notes"):
        lines += ["## Where it stands", "", stored["notes"], ""]
    with atomic_path(RESULTS / "unet3d.md") as tmp:
        tmp.write_text("\n".join(lines))
    print("\n".join(lines))


def _maybe(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    speed_parser = sub.add_parser("speed")
    speed_parser.add_argument("--steps", type=int, default=5, help="timed rounds (one step of each model per round)")
    speed_parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared machine)")
    snapshot_parser = sub.add_parser("snapshot")
    snapshot_parser.add_argument("run")
    snapshot_parser.add_argument("--once", action="store_true")
    budgets_parser = sub.add_parser("budgets")
    budgets_parser.add_argument("run")
    ablate_parser = sub.add_parser("ablate")
    ablate_parser.add_argument("--steps", type=int, default=1000, help="training steps of each variant")
    note_parser = sub.add_parser("note", help="set the closing note of the report")
    note_parser.add_argument("text")
    args = parser.parse_args(argv)
    if args.command == "note":
        write_report({"notes": args.text})
        return 0
    if args.command == "snapshot":
        snapshot(args)
        return 0
    run = {"speed": speed, "budgets": budgets, "ablate": ablate}[args.command]
    results = {"ablation" if args.command == "ablate" else args.command: run(args)}
    write_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
