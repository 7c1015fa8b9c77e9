"""The command line: ``python -m vdmcourse train | sample | evaluate | seal``.

Each subcommand is one function that adds its parser and names the function it
runs (``parser.set_defaults(run=...)``); :func:`main` lists them in
``SUBCOMMANDS``. Mistakes a learner can make (an unknown preset, a missing or
corrupt checkpoint, a bad label) end with a one-line message, not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors_file

from vdmcourse import distributed
from vdmcourse.course import CHECKPOINT_DIR, pick_device, seed_everything, to_unit_range
from vdmcourse.diffusion import ALL_SAMPLERS, GUIDE_EVERY_CALL, check_guidance_interval, sample
from vdmcourse.fast_paths import PRECISIONS
from vdmcourse.metrics import Evaluator, evaluate_videos, format_report
from vdmcourse.presets import PRESETS, get_preset, load_latent_vae
from vdmcourse.pretrained import atomic_path, build_model, load_checkpoint, seal, verify_shipped
from vdmcourse.train import CHECKPOINT_NAME, MODEL_NAME, Trainer, machine_info
from vdmcourse.viz import frame_strip, save_gif

__all__ = ["main", "build_parser"]

DEFAULT_RUNS = Path("runs")


def _train_parser(subparsers) -> None:
    listing = "\n".join(f"  {name:<12} {preset.description} ({preset.steps} steps)" for name, preset in PRESETS.items())
    parser = subparsers.add_parser(
        "train",
        help="train a model from a preset",
        description="Train a preset's model, saving a resumable checkpoint every few hundred steps. "
        "Ctrl-C saves and stops; --resume continues exactly where it stopped.",
        epilog=f"presets:\n{listing}\n\nexample:\n  python -m vdmcourse train --preset image-cpu --steps 500",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", required=True, metavar="NAME", help="which preset to train (listed below)")
    parser.add_argument("--steps", type=int, metavar="N", help="total steps to reach (default: the preset's; quick mode: its quick_steps)")
    parser.add_argument(
        "--minutes", type=float, metavar="M",
        help="stop after M minutes of training (steps only, summed over resumes), even before --steps",
    )
    parser.add_argument(
        "--cpu-minutes", type=float, metavar="M",
        help="stop after M minutes of this process's CPU time in training steps (all threads, summed over resumes): "
        "a budget that load on a shared machine does not shrink",
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="run folder for checkpoints and previews (default: runs/PRESET)")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.safetensors")
    parser.add_argument("--preview-every", type=int, default=0, metavar="N", help="write a GIF of samples every N steps (0: never)")
    parser.add_argument(
        "--checkpoint-every", type=int, metavar="N",
        help="save a resumable checkpoint every N steps (default: the preset's; always at the end and on Ctrl-C)",
    )
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument("--precision", choices=PRECISIONS, help="fp32, bf16 (autocast) or auto (default: the preset's)")
    parser.set_defaults(run=train_command)


def train_command(args) -> int:
    """``train``, in torchrun's process group when started by torchrun (see
    :mod:`vdmcourse.distributed`): every rank trains, rank 0 alone prints and shows progress."""
    with distributed.launched(args.device) as device:
        if not distributed.is_distributed():
            return train(args)
        args.device = str(device)
        if distributed.is_main():
            return train(args)
        args.no_progress = True
        with contextlib.redirect_stdout(io.StringIO()):
            return train(args)


def train(args) -> int:
    started = time.time()
    preset = get_preset(args.preset)
    steps = args.steps if args.steps is not None else preset.budget_steps()
    if steps < 1:
        raise ValueError(f"--steps must be at least 1; got {steps}")
    for flag, minutes in (("--minutes", args.minutes), ("--cpu-minutes", args.cpu_minutes)):
        if minutes is not None and not (minutes > 0 and minutes != float("inf")):
            raise ValueError(f"{flag} must be a positive number of minutes; got {minutes}")
    if args.preview_every < 0:
        raise ValueError(f"--preview-every must be 0 (never) or a number of steps; got {args.preview_every}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be at least 1; got {args.checkpoint_every}")
    pick_device(args.device)  # refuses --device foo before anything is built
    out = args.out or DEFAULT_RUNS / preset.name
    _check_out_folder(out)
    if (out / CHECKPOINT_NAME).exists() and not args.resume:
        raise ValueError(f"{out} already holds a checkpoint; add --resume to continue it, or choose another --out")
    if args.resume and not (out / CHECKPOINT_NAME).exists():
        raise ValueError(f"--resume: there is no checkpoint in {out} to continue; drop --resume to start a new run")

    config = dataclasses.replace(preset.train, preview_every=args.preview_every, precision=args.precision or preset.train.precision)
    if args.checkpoint_every is not None:
        config = dataclasses.replace(config, checkpoint_every=args.checkpoint_every)
    seed_everything(distributed.rank_seed(config.seed))
    command = distributed.launcher() + " -m vdmcourse " + shlex.join(args.argv if args.argv is not None else sys.argv[1:])
    trainer = Trainer(
        preset.build_model(),
        preset.loss_fn(),
        preset.batches(),
        config,
        out_dir=out,
        device=args.device,
        preview=_preview_writer(preset, out) if preset.generative else None,
        metadata=preset.metadata(),
        progress=not args.no_progress,
        on_save=lambda trainer: _write_run_record(out, preset, trainer, command, started),
    )
    if trainer.removed_temporaries:
        print(f"removed {len(trainer.removed_temporaries)} temporary file(s) left in {out} by a killed run")
    if args.resume:
        trainer.resume()
        print(f"resumed {out / CHECKPOINT_NAME} at step {trainer.step}")
        if trainer.repaired:
            print(f"rewrote {', '.join(trainer.repaired)} from the checkpoint (the last save was cut short)")
    try:
        trainer.fit(steps, time_limit=None if args.minutes is None else 60 * args.minutes,
                    cpu_limit=None if args.cpu_minutes is None else 60 * args.cpu_minutes)
        if preset.finish is not None:
            with torch.no_grad():
                preset.finish(trainer.model)
                preset.finish(trainer.ema)
            trainer.save()
    except KeyboardInterrupt:
        again = command if args.resume else command + " --resume"
        print(f"stopped at step {trainer.step}; last checkpoint: step {trainer.saved_step}. Continue with:\n  {again}")
        return 130
    print(f"trained {preset.name} to step {trainer.step} ({trainer.elapsed / 60:.1f} min of training, "
          f"{trainer.cpu_elapsed / 60:.1f} CPU-min)")
    if preset.generative:
        print(f"Sample with:\n  python -m vdmcourse sample --checkpoint {out / MODEL_NAME} --out {out / 'samples.gif'} --num 10")
    return 0


def _check_out_folder(out: Path) -> None:
    """Refuse a train --out that is a file or cannot be written, before any training."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; train writes a run folder there (choose a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot create the run folder ({error.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder is not writable; choose another --out")


def _check_out_file(out: Path) -> None:
    """Refuse a sample --out that is a folder or sits in a folder that cannot be written."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name ending in .gif or .png")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot create its folder ({error.strerror})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder {out.parent} is not writable; choose another --out")


def _write_run_record(out: Path, preset, trainer, command: str, started: float) -> None:
    """``run.json``: what a manifest entry needs -- command, steps, times, machine, loss.
    Written at every save (the Trainer's ``on_save``), so it always describes the
    checkpoint beside it. ``wall_time_s`` is this command's wall clock; ``train_time_s``
    the time spent in training steps and ``train_cpu_s`` their CPU time (all threads),
    both summed over every resume."""
    if not distributed.is_main():  # rank 0 writes for every rank
        return
    recent = trainer.history[-200:]
    record = {
        "preset": preset.name,
        "command": command,
        "steps": trainer.step,
        "wall_time_s": round(time.time() - started, 1),
        "train_time_s": round(trainer.elapsed, 1),
        "train_cpu_s": round(trainer.cpu_elapsed, 1),
        "machine": machine_info(),
        "final_loss": sum(recent) / len(recent) if recent else None,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with atomic_path(out / "run.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def _preview_writer(preset, out: Path):
    """A Trainer preview: one sample per digit 0-9, written to DIR/samples/step_NNNNNN.gif."""

    def preview(model, step: int) -> None:
        labels = torch.arange(10) if preset.conditional else None
        device = next(model.parameters()).device
        clips = sample(
            model,
            (10, *(preset.latent_shape or preset.sample_shape)),
            objective=preset.objective,
            sampler=preset.sampler,
            steps=preset.sample_steps,
            cond=labels,
            guidance_scale=preset.guidance_scale if preset.conditional else 1.0,
            guidance_interval=preset.guidance_interval,
            generator=torch.Generator(device=device).manual_seed(0),
            progress=False,
        )
        if preset.vae is not None:
            clips = load_latent_vae(preset.vae, device=device).decode_latents(clips)
        (out / "samples").mkdir(parents=True, exist_ok=True)
        save_gif(to_unit_range(clips), out / "samples" / f"step_{step:06d}.gif", columns=5, scale=2)

    return preview


def _sample_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="generate clips from a checkpoint",
        description="Generate clips with a trained model and write them to a GIF (a grid when --num > 1) or a PNG frame strip.",
        epilog="examples:\n"
        "  python -m vdmcourse sample --checkpoint image-cpu --out digits.gif --num 10\n"
        "  python -m vdmcourse sample --checkpoint runs/image-cpu/model.safetensors --out three.png --label 3 --frames 8",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="a .safetensors checkpoint, or the name of a shipped one (e.g. image-cpu)")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file: .gif (animated) or .png (frame strip)")
    parser.add_argument("--label", type=int, metavar="DIGIT", help="digit 0-9 for every clip (default: clip i shows digit i %% 10)")
    parser.add_argument("--num", type=int, default=1, metavar="N", help="number of clips (default 1)")
    parser.add_argument("--frames", type=int, metavar="T", help="frames per clip (an image model draws each frame independently)")
    parser.add_argument("--steps", type=int, metavar="N", help="sampler steps (default: the checkpoint's)")
    parser.add_argument("--sampler", choices=ALL_SAMPLERS, help="default: the checkpoint's (dpm++2m: second order at one call per step, for 8-10 steps)")
    _add_guidance_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", help="cpu, cuda or mps (default: the best available)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default), bf16 (autocast) or auto (bf16 where faster)")
    parser.add_argument("--channels-last", action="store_true", help="run the 2-D convolutions channels-last (often faster)")
    parser.set_defaults(run=sample_command)


def _add_guidance_options(parser) -> None:
    parser.add_argument("--guidance", type=float, metavar="SCALE", help="classifier-free guidance scale (1: none; default: the checkpoint's)")
    parser.add_argument("--guidance-interval", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="guide only the model calls at times LOW <= t <= HIGH (1: noise; default: the checkpoint's, else 0 1)")


def _check_guidance_options(args) -> None:
    if args.guidance is not None and not math.isfinite(args.guidance):
        raise ValueError(f"--guidance must be a finite number (1: no guidance); got {args.guidance}")
    if args.guidance_interval is not None:
        try:
            check_guidance_interval(args.guidance_interval)
        except ValueError:
            raise ValueError(f"--guidance-interval must be LOW HIGH with 0 <= LOW <= HIGH <= 1; got {args.guidance_interval}") from None


def _checkpoint_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CHECKPOINT_DIR / f"{name_or_path}.safetensors"
    if shipped.is_file():
        return verify_shipped(shipped)
    known = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.safetensors"))
    raise FileNotFoundError(f"no checkpoint file {path} and no shipped checkpoint named {name_or_path!r} (shipped: {', '.join(known) or 'none'})")


def _load_generative(name_or_path, device, purpose: str):
    """The model of a diffusion checkpoint (on ``device``) and its metadata; anything else is refused."""
    checkpoint = load_checkpoint(_checkpoint_path(name_or_path))
    info = checkpoint.metadata
    if not info.get("objective"):
        raise ValueError(
            f"{checkpoint.path} is not a diffusion model trained from a preset (its metadata names no objective); "
            f"there is nothing to {purpose}"
        )
    model = build_model(checkpoint).to(pick_device(device))
    if "vae" in info:  # a latent model: refuse now, not after sampling, if its VAE is not the one it was trained on
        load_latent_vae(info["vae"]["name"], device=pick_device(device), fingerprint=info["vae"]["fingerprint"])
    return model, info


def _draw(model, info, shape, labels, seed, *, sampler=None, steps=None, guidance=None, guidance_interval=None,
          precision="fp32", channels_last=False) -> torch.Tensor:
    """Sample clips ``shape`` = (N, T, C, H, W) in [0, 1], with the checkpoint's recorded
    sampler, steps, guidance and guidance interval unless given (guidance only for a conditional draw).
    A latent model samples latents and decodes them through its VAE."""
    if guidance is None:
        guidance = info["guidance_scale"] if labels is not None else 1.0
    vae = None
    if "vae" in info:
        vae = load_latent_vae(info["vae"]["name"], device=next(model.parameters()).device, fingerprint=info["vae"]["fingerprint"])
        shape = (shape[0], *vae.config.latent_shape(*shape[1:2], *shape[3:]))
    clips = sample(
        model,
        shape,
        objective=info["objective"],
        sampler=sampler or info["sampler"],
        steps=steps if steps is not None else info["sample_steps"],
        cond=labels,
        guidance_scale=guidance,
        guidance_interval=guidance_interval or tuple(info.get("guidance_interval", GUIDE_EVERY_CALL)),
        generator=seed_everything(seed),
        precision=precision,
        channels_last=channels_last,
    )
    if vae is not None:
        with torch.no_grad():
            clips = vae.decode_latents(clips)  # (N, T, C, H, W) in [-1, 1]
    return to_unit_range(clips.cpu())


def sample_command(args) -> int:
    if args.out.suffix not in (".gif", ".png"):
        raise ValueError(f"--out must end in .gif or .png; got {args.out}")
    if args.num < 1:
        raise ValueError(f"--num must be at least 1; got {args.num}")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1; got {args.frames}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be at least 1 (sampler steps); got {args.steps}")
    _check_guidance_options(args)
    _check_out_file(args.out)
    pick_device(args.device)
    model, info = _load_generative(args.checkpoint, args.device, "sample")
    frames, channels, height, width = info["sample_shape"]
    frames = args.frames if args.frames is not None else frames
    conditional = getattr(model.config, "num_classes", None) is not None
    if args.label is not None and not conditional:
        raise ValueError("--label: this model is unconditional (it was trained without labels)")
    if args.label is not None and not 0 <= args.label <= 9:
        raise ValueError(f"--label must be a digit 0-9; got {args.label}")
    labels = None
    if conditional:
        labels = torch.full((args.num,), args.label) if args.label is not None else torch.arange(args.num) % 10
    clips = _draw(
        model, info, (args.num, frames, channels, height, width), labels, args.seed,
        sampler=args.sampler, steps=args.steps, guidance=args.guidance, guidance_interval=args.guidance_interval,
        precision=args.precision, channels_last=args.channels_last,
    )  # (N, T, C, H, W) in [0, 1]
    if args.out.suffix == ".gif":
        save_gif(clips, args.out, columns=min(args.num, 5), scale=4)
    else:
        titles = [str(int(label)) for label in labels] if labels is not None else None
        with atomic_path(args.out) as tmp:
            frame_strip(clips, titles=titles).savefig(tmp, format="png", dpi=150)
    print(f"wrote {args.num} clip(s) of {frames} frame(s) to {args.out}")
    return 0


def _evaluate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score generated clips against real ones (Fréchet/KID on the course's features, flicker, identity, physics)",
        description="Score clips -- sampled from a checkpoint, or read from a file -- against real Moving MNIST clips "
        "with vdmcourse.metrics, and print a table with the real-vs-real floor beside every number.",
        epilog="examples:\n"
        "  python -m vdmcourse evaluate --checkpoint image-cpu --num 200\n"
        "  python -m vdmcourse evaluate --clips my_clips.npy --digits 1\n"
        "  python -m vdmcourse evaluate --checkpoint text-video-cpu --num 32   (a text model: prompt following + alignment)\n"
        "A clips file is .npy or .safetensors (tensor 'video'): shape (N, T, 1, H, W), float in [0, 1] or uint8.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PATH", help="a .safetensors checkpoint or the name of a shipped one; its samples are scored")
    source.add_argument("--clips", type=Path, metavar="FILE", help="clips to score: .npy or .safetensors")
    parser.add_argument("--num", type=int, default=200, metavar="N", help="clips to sample from --checkpoint (default 200; at least 65 for the Fréchet distance)")
    parser.add_argument("--digits", type=int, default=1, metavar="K", help="digits per clip (default 1, the CPU preset)")
    parser.add_argument("--evaluator", default="evaluator-cpu", metavar="NAME", help="the evaluation network: a shipped name or a .safetensors path (default: evaluator-cpu)")
    _add_guidance_options(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling and the real clips (default 0)")
    parser.add_argument("--device", help="cpu, cuda or mps for sampling (default: the best available)")
    parser.set_defaults(run=evaluate)


def _read_clips(path: Path) -> torch.Tensor:
    """Clips from .npy or .safetensors (no pickle), as float (N, T, 1, H, W) in [0, 1]."""
    if not path.is_file():
        raise FileNotFoundError(f"--clips: no file {path}")
    if path.suffix not in (".npy", ".safetensors"):
        raise ValueError(f"--clips must be a .npy or .safetensors file; got {path}")
    try:
        if path.suffix == ".npy":
            video = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            tensors = load_safetensors_file(path)
            if "video" not in tensors:
                raise ValueError(f"--clips: {path} holds no tensor named 'video' (it has: {', '.join(tensors) or 'none'})")
            video = tensors["video"]
    except (OSError, EOFError, SafetensorError) as error:
        raise ValueError(f"--clips: {path} is truncated or corrupt ({error}); write the clips again") from None
    except ValueError as error:
        if str(error).startswith("--clips"):
            raise
        raise ValueError(f"--clips: {path} cannot be read as clips ({error}); a clips file holds one array (N, T, 1, H, W)") from None
    if not (video.is_floating_point() or video.dtype == torch.uint8):
        raise ValueError(f"--clips: {path} holds {video.dtype} values; clips are float in [0, 1] or uint8")
    return video.float() / 255 if video.dtype == torch.uint8 else video.float()


def evaluate(args) -> int:
    evaluator = build_model(load_checkpoint(_checkpoint_path(args.evaluator)))
    if not isinstance(evaluator, Evaluator):
        raise ValueError(f"--evaluator: {args.evaluator} holds a {type(evaluator).__name__}, not the metrics' Evaluator")
    frames, size = evaluator.config.frames, evaluator.config.canvas
    # the Fréchet distance needs more clips than feature dimensions (a full-rank covariance)
    needed = evaluator.config.feature_dim + 1
    if args.digits < 1:
        raise ValueError(f"--digits must be at least 1; got {args.digits}")
    _check_guidance_options(args)
    if args.clips is not None and (args.guidance is not None or args.guidance_interval is not None):
        raise ValueError("--guidance and --guidance-interval set how --checkpoint samples; --clips are scored as they are")
    if args.clips is None and load_checkpoint(_checkpoint_path(args.checkpoint)).model_class.endswith(".TextVideoUNet"):
        if args.guidance is not None or args.guidance_interval is not None:
            raise ValueError("--guidance and --guidance-interval: a text model is scored at its pipeline's own settings")
        return _evaluate_text(args, evaluator)
    if args.clips is not None:
        video, title = _read_clips(args.clips), args.clips.name
        video = evaluator.check_clips(video, f"--clips {args.clips}")
        if video.shape[0] < needed:
            raise ValueError(
                f"--clips: {args.clips} holds {video.shape[0]} clips; scoring needs at least {needed} "
                f"(more than the evaluator's {needed - 1} feature dimensions): save more clips"
            )
    else:
        if args.num < needed:
            raise ValueError(
                f"--num must be at least {needed} (more clips than the evaluator's {needed - 1} feature dimensions); got {args.num}"
            )
        pick_device(args.device)
        model, info = _load_generative(args.checkpoint, args.device, "evaluate")
        _, channels, height, width = info["sample_shape"]
        if (channels, height, width) != (1, size, size):
            raise ValueError(f"{args.checkpoint} makes {channels}x{height}x{width} frames; the evaluator scores 1x{size}x{size}")
        conditional = getattr(model.config, "num_classes", None) is not None
        labels = torch.arange(args.num) % 10 if conditional else None
        # an image model draws each frame on its own
        video = _draw(model, info, (args.num, frames, channels, height, width), labels, args.seed,
                      guidance=args.guidance, guidance_interval=args.guidance_interval)
        title = Path(args.checkpoint).stem
    results = evaluate_videos(video, evaluator, digits=args.digits, seed=args.seed)
    print(format_report(results, title=title))
    return 0


def _evaluate_text(args, evaluator: Evaluator) -> int:
    """A text-to-video checkpoint (lesson 09): its samples for ``--num`` held-out descriptive
    prompts (seed ``--seed``), scored for prompt following from the pixels and by the
    mini-CLIP alignment score, beside the prompts' own clips."""
    from vdmcourse.metrics.alignment import MINICLIP_NAME, format_prompt_report, held_out_prompts, load_miniclip, prompt_report
    from vdmcourse.pipelines import TextToVideoPipeline

    if args.num < 1:
        raise ValueError(f"--num must be at least 1; got {args.num}")
    if args.digits != 1:
        raise ValueError(f"--digits: a text-to-video checkpoint makes one-digit clips; got --digits {args.digits}")
    pick_device(args.device)
    pipe = TextToVideoPipeline.from_pretrained(str(_checkpoint_path(args.checkpoint)), device=args.device)
    if pipe.shape[1:] != (1, evaluator.config.canvas, evaluator.config.canvas):
        raise ValueError(f"{args.checkpoint} makes {pipe.shape[1:]} frames; the evaluator scores 1x{evaluator.config.canvas}x{evaluator.config.canvas}")
    clips, facts, captions = held_out_prompts(args.num, seed=args.seed)
    # batches of 25, seed + first index: the clips bench_captions.py draws for the same prompts
    video = torch.cat([
        pipe(captions[start : start + 25], generator=torch.Generator().manual_seed(args.seed + start)).frames
        for start in range(0, args.num, 25)
    ])
    model = load_miniclip() if (CHECKPOINT_DIR / f"{MINICLIP_NAME}.safetensors").is_file() else None
    results = prompt_report(video, facts, evaluator, model, captions)
    real = prompt_report(clips.video, facts, evaluator, model, captions)
    print(format_prompt_report(results, real, title=Path(args.checkpoint).stem))
    return 0


def _seal_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "seal",
        help="record a shipped checkpoint's SHA-256 in data/checkpoints/manifest.json",
        description="Give data/checkpoints/NAME.safetensors a content hash in its header (if it has none; the "
        "tensors are unchanged) and record its file SHA-256 and size in its manifest.json entry, which "
        "load_pretrained and --checkpoint NAME then verify. Run it after adding or replacing a shipped checkpoint.",
        epilog="example:\n  python -m vdmcourse seal image-cpu",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="shipped checkpoint names (the manifest's 'name')")
    parser.add_argument("--dir", type=Path, default=None, metavar="DIR", help="checkpoint folder (default: data/checkpoints)")
    parser.set_defaults(run=seal_command)


def seal_command(args) -> int:
    for name in args.names:
        entry = seal(name, args.dir)
        print(f"sealed {name}: sha256 {entry['sha256']} ({entry['bytes']} bytes)")
    return 0


SUBCOMMANDS = (_train_parser, _sample_parser, _evaluate_parser, _seal_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vdmcourse",
        description="vdmcourse: train, sample and evaluate the course's video diffusion models.",
        epilog="Run `python -m vdmcourse COMMAND --help` for a command's options.",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 a usage error, 130 Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except (ValueError, OSError) as error:
        message = str(error).replace("\n", " ")  # one line
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
