"""The video VAE on a CPU: compression against quality, per-frame against temporal
designs, chunked decoding, and latent against pixel diffusion.

    python benchmarks/bench_vae.py compare --steps 400 [--variants NAME ...]   # train + score VAE variants
    python benchmarks/bench_vae.py chunks                                       # chunked decoding of vae-cpu
    python benchmarks/bench_vae.py latent --arm LABEL CHECKPOINT BUDGET ...     # latent against pixel diffusion
    python benchmarks/bench_vae.py score runs/vae-cpu/model.safetensors         # held-out PSNR / SSIM of a VAE
    python benchmarks/bench_vae.py table                                        # write results/vae.md

``compare`` trains each variant with the ``vae-cpu`` recipe (same seeds, same clips,
5-frame training clips, ``--steps`` steps, one process) and scores its EMA weights on
held-out clips of test digits (9 frames = 1 + 2·4 = 1 + 4·2, so every temporal
compression fits): PSNR, SSIM, flicker of the reconstructions (the course's
background flicker), the flicker of decodes of *noisy* latents (each latent frame
perturbed independently with N(0, 0.1² · var), as a diffusion sample's errors are --
the failure SVD's temporal decoder is for), and encode/decode time per clip.
Each variant's result goes to ``results/vae_runs/NAME.json``, so variants can be
run as separate jobs.

``chunks`` decodes a 41-frame clip with the shipped ``vae-cpu`` in chunks of
1, 2, 5, 10 and all latent frames: time, the largest activation (a proxy of the peak
memory on a CPU; the true peak on CUDA), and the seam: the per-frame difference to
the whole-clip decode, with and without the causal cache.

``latent`` scores diffusion checkpoints (``--arm LABEL CHECKPOINT BUDGET``, e.g. the
shipped ``latent-video-cpu`` and a pixel model trained from scratch for the same CPU
time) on the same machine, back to back: training step time, time to sample 8 clips
(decoding included), and the evaluation report's measures on the same number of clips.

``score --label NAME`` adds a trained VAE to the loss-term table (``vae-cpu`` against
``vae-adv-cpu`` and ``vae-feat-cpu`` at equal minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

from vdmcourse.course import seed_everything, to_model_range, to_unit_range
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.metrics import flicker, psnr, ssim
from vdmcourse.nn.vae import VideoVAE, VideoVAEConfig
from vdmcourse.presets import get_preset
from vdmcourse.pretrained import atomic_path
from vdmcourse.train import Trainer, machine_info
from vdmcourse.viz import frame_strip

sys.path.insert(0, str(Path(__file__).parent))
from bench_unet3d import load_average  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "vae_runs"
TERMS = RESULTS / "vae_terms"
LATENT_RUNS = RESULTS / "vae_latent_runs"
BASE = get_preset("vae-cpu").model_config
# name -> (description, config); every variant has 4 x 8 x 8 latents per latent frame.
VARIANTS = {
    "causal3d_t1": ("causal 3-D VAE, temporal x1 (vae-cpu's design)", BASE),
    "causal3d_t2": ("causal 3-D VAE, temporal x2", dataclasses.replace(BASE, temporal_downsample=(0,))),
    "causal3d_t4": ("causal 3-D VAE, temporal x4", dataclasses.replace(BASE, temporal_downsample=(0, 1))),
    "per_frame": ("per-frame 2-D VAE", dataclasses.replace(BASE, design="per_frame")),
    "temporal_decoder": ("per-frame encoder + temporal decoder (SVD)", dataclasses.replace(BASE, design="temporal_decoder")),
}
TEST_FRAMES = 9
LATENT_NOISE = 0.1


def test_clips(count: int, frames: int = TEST_FRAMES) -> torch.Tensor:
    """Held-out clips (test digits), ``(N, T, 1, 32, 32)`` in [0, 1], always the same ones."""
    return generate_clips(count, MovingMNISTConfig.cpu(split="test", frames=frames), generator=torch.Generator().manual_seed(7)).video


@torch.no_grad()
def score_vae(vae: VideoVAE, clips: torch.Tensor) -> dict:
    """Reconstruction quality, flicker and speed of ``vae`` on ``clips`` in [0, 1]."""
    vae.eval()
    x = to_model_range(clips)
    started = time.perf_counter()
    posterior = vae.encode(x)
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    recon = to_unit_range(vae.decode(posterior.mode()))
    decode_s = time.perf_counter() - started
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3)) * LATENT_NOISE * posterior.mean.std()
    noisy = to_unit_range(vae.decode(posterior.mode() + noise))
    mse = (recon - clips).square().mean().item()
    latent = posterior.mean[0].numel()
    sharpness = edge_energy(recon) / edge_energy(clips)
    return {
        "compression": clips[0].numel() / latent,
        "latent_shape": list(posterior.mean.shape[1:]),
        "psnr_db": 10 * math.log10(1 / mse),
        "ssim": ssim(recon, clips).mean().item(),
        "flicker_real": flicker(clips).nanmean().item(),
        "flicker_recon": flicker(recon).nanmean().item(),
        "flicker_noisy_latents": flicker(noisy).nanmean().item(),
        "sharpness": sharpness,
        "encode_ms_per_clip": 1000 * encode_s / len(clips),
        "decode_ms_per_clip": 1000 * decode_s / len(clips),
    }


def edge_energy(clips: torch.Tensor) -> float:
    """Mean |horizontal| + |vertical| pixel difference of clips ``(N, T, 1, H, W)``: a
    blurred reconstruction has less of it than the real clips (ratio < 1)."""
    return ((clips[..., 1:, :] - clips[..., :-1, :]).abs().mean() + (clips[..., :, 1:] - clips[..., :, :-1]).abs().mean()).item()


def compare(args) -> None:
    preset = get_preset("vae-cpu")
    clips = test_clips(args.clips)
    RUNS.mkdir(parents=True, exist_ok=True)
    for name in args.variants or list(VARIANTS):
        description, config = VARIANTS[name]
        seed_everything(0)
        trainer = Trainer(VideoVAE(config), preset.loss_fn(), preset.batches(), preset.train, progress=False)
        trainer.fit(args.steps)
        result = {
            "variant": name,
            "description": description,
            "steps": args.steps,
            "train_s": trainer.elapsed,
            "final_loss": sum(trainer.history[-50:]) / len(trainer.history[-50:]),
            "load_average": load_average(),
            **score_vae(trainer.ema, clips),
        }
        with atomic_path(RUNS / f"{name}.json") as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        print(json.dumps(result), flush=True)


def score(args) -> None:
    """Held-out reconstruction figures of a trained VAE checkpoint (what its manifest entry records)."""
    from vdmcourse.pretrained import build_model, load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    vae = build_model(checkpoint)
    clips = test_clips(args.clips, frames=10)
    result = {"checkpoint": str(args.checkpoint), "held_out_clips": args.clips, "frames": 10,
              "scaling_factor": vae.scaling_factor.item(), **score_vae(vae, clips)}
    resumable = Path(args.checkpoint).with_name("checkpoint.safetensors")
    if resumable.is_file():  # a run folder: how long it trained
        state = load_checkpoint(resumable)
        result.update(preset=checkpoint.metadata.get("preset"), steps=state.step, train_s=state.state["elapsed_s"])
    print(json.dumps(result, indent=1))
    out = args.out or (TERMS / f"{args.label}.json" if args.label else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps({"label": args.label, **result}, indent=1))


def _largest_activation_mb(module: torch.nn.Module, run) -> float:
    largest = [0]

    def hook(_, __, output):
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return largest[0] / 2**20


@torch.no_grad()
def chunks(args) -> None:
    from vdmcourse.pretrained import load_pretrained

    vae = load_pretrained("vae-cpu", device="cpu")
    clip = test_clips(1, frames=41)
    z = vae.encode(to_model_range(clip)).mode()  # (1, 41, 4, 8, 8)
    whole = vae.decode(z)
    rows = []
    for size in (1, 2, 5, 10, z.shape[1]):
        started = time.perf_counter()
        cached = vae.decode(z, chunk_size=size)
        seconds = time.perf_counter() - started
        independent = vae.decode(z, chunk_size=size, cache=False)
        rows.append({
            "chunk_size": size,
            "decode_s": seconds,
            "largest_activation_mb": _largest_activation_mb(vae.decoder, lambda: vae.decode(z[:, :size])),
            "max_diff_with_cache": (cached - whole).abs().max().item(),
            "max_diff_without_cache": (independent - whole).abs().max().item(),
            "per_frame_diff_without_cache": (independent - whole).abs().flatten(2).mean(2)[0].tolist(),
        })
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_frame_diff_without_cache"}), flush=True)
    seamed = to_unit_range(vae.decode(z, chunk_size=10, cache=False))
    step_change = {
        "whole": (to_unit_range(whole)[0, 1:] - to_unit_range(whole)[0, :-1]).abs().mean(dim=(1, 2, 3)).tolist(),
        "chunks of 10, no cache": (seamed[0, 1:] - seamed[0, :-1]).abs().mean(dim=(1, 2, 3)).tolist(),
    }
    figure = frame_strip(torch.stack([clip[0, 8:13], to_unit_range(whole)[0, 8:13], seamed[0, 8:13]]),
                         titles=["real, frames 8-12", "decoded whole", "chunks of 10, no cache (seam at 10)"])
    figure.savefig(RESULTS / "vae_seam.png", dpi=120)
    with atomic_path(RESULTS / "vae_chunks.json") as tmp:
        tmp.write_text(json.dumps({"rows": rows, "frame_step_change": step_change, "load_average": load_average()}, indent=1))


@torch.no_grad()
def latent(args) -> None:
    """Score each ``--arm LABEL CHECKPOINT BUDGET`` (a latent or pixel diffusion checkpoint,
    shipped name or path) on the same clips: train-step time, time to sample 8 clips
    (decoding included), the evaluation report. One JSON per arm in results/vae_latent_runs/."""
    from vdmcourse.cli import _draw, _load_generative
    from vdmcourse.metrics import evaluate_videos, load_evaluator, shape_change

    evaluator = load_evaluator()
    LATENT_RUNS.mkdir(parents=True, exist_ok=True)
    for label, checkpoint, budget_text in args.arm:
        load_start = load_average()
        model, info = _load_generative(checkpoint, "cpu", "benchmark")
        preset = get_preset(info["preset"])
        batch = preset.batches()(torch.Generator().manual_seed(0))
        with torch.enable_grad():
            model.train()
            step_s = []
            for _ in range(4):
                started = time.perf_counter()
                preset.loss_fn()(model, batch, torch.Generator().manual_seed(1)).backward()
                step_s.append(time.perf_counter() - started)
            model.eval()
        started = time.perf_counter()
        _draw(model, info, (8, 10, 1, 32, 32), torch.arange(8) % 10, seed=0)
        sample8_s = time.perf_counter() - started
        video = _draw(model, info, (args.clips, 10, 1, 32, 32), torch.arange(args.clips) % 10, seed=1)
        results = evaluate_videos(video, evaluator, digits=1, seed=0)
        out = {
            "label": label,
            "checkpoint": checkpoint,
            "preset": info["preset"],
            "latent": "vae" in info,
            "budget": budget_text,
            "clips": args.clips,
            "train_step_s": sorted(step_s[1:])[1],
            "batch_size": preset.batch_size,
            "sample_8_clips_s": sample8_s,
            "sampler": f"{info['sampler']} x {info['sample_steps']}",
            "shape_change": shape_change(video).mean().item(),
            "report": {key: getattr(value, "value", value) for key, value in results.items()},
            "load_average": [load_start, load_average()],
        }
        frame_strip(video[:4], titles=[str(i) for i in range(4)]).savefig(RESULTS / f"vae_samples_{label}.png", dpi=120)
        with atomic_path(LATENT_RUNS / f"{label}.json") as tmp:
            tmp.write_text(json.dumps(out, indent=1, default=str))
        print(label, json.dumps(out, default=str)[:800], flush=True)


def table(args) -> None:
    lines = ["# Video VAE benchmarks", "", f"Machine: {json.dumps(machine_info())}", ""]
    runs = {path.stem: json.loads(path.read_text()) for path in sorted(RUNS.glob("*.json"))}
    if runs:
        steps = {run["steps"] for run in runs.values()}
        lines += [
            f"## Compression against quality, and per-frame against temporal designs ({', '.join(map(str, steps))} training steps each)",
            "",
            f"Held-out clips of test digits, {TEST_FRAMES} frames. Flicker: the course's background flicker "
            f"(mean |x[t+1] - x[t]| away from ink; real clips: {next(iter(runs.values()))['flicker_real']:.4f}). "
            f"'Noisy latents': decodes of latents perturbed per frame by N(0, ({LATENT_NOISE}·std)²), as a diffusion sample's errors are.",
            "",
            "| variant | compression | latent (T', C, h, w) | PSNR dB | SSIM | flicker (recon) | flicker (noisy latents) | encode ms/clip | decode ms/clip | train s | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in VARIANTS:
            if name in runs:
                r = runs[name]
                lines.append(
                    f"| {r['description']} | {r['compression']:.0f}x | {tuple(r['latent_shape'])} | {r['psnr_db']:.2f} | {r['ssim']:.3f} | "
                    f"{r['flicker_recon']:.4f} | {r['flicker_noisy_latents']:.4f} | {r['encode_ms_per_clip']:.1f} | {r['decode_ms_per_clip']:.1f} | "
                    f"{r['train_s']:.0f} | {r['load_average']} |"
                )
        lines.append("")
    chunk_path = RESULTS / "vae_chunks.json"
    if chunk_path.is_file():
        data = json.loads(chunk_path.read_text())
        lines += [
            "## Chunked decoding (vae-cpu, a 41-frame clip = 41 latent frames)",
            "",
            "| chunk (latent frames) | decode s | largest activation MB | max diff, causal cache | max diff, independent chunks |",
            "|---|---|---|---|---|",
        ]
        for r in data["rows"]:
            lines.append(f"| {r['chunk_size']} | {r['decode_s']:.3f} | {r['largest_activation_mb']:.2f} | {r['max_diff_with_cache']:.2e} | {r['max_diff_without_cache']:.3f} |")
        steps = data["frame_step_change"]
        lines += ["", "Mean |x[t+1] - x[t]| per frame step, decoded whole vs in independent chunks of 10 (seams after frames 9, 19, 29, 39):", ""]
        lines.append("| step | " + " | ".join(str(i) for i in range(6, 14)) + " |")
        lines.append("|---|" + "---|" * 8)
        for key, values in steps.items():
            lines.append(f"| {key} | " + " | ".join(f"{v:.4f}" for v in values[6:14]) + " |")
        lines += ["", "![seam](vae_seam.png)", ""]
    arms = [json.loads(path.read_text()) for path in sorted(LATENT_RUNS.glob("*.json"))]
    if arms:
        lines += [
            "## Latent against pixel diffusion at equal CPU time",
            "",
            "Each arm's budget counts everything it needs: a latent model's VAE training is added to its own. "
            "'train-min': the trainer's clock (`--minutes`); 'CPU-min': user + system time of the training "
            "process (one thread each; on the shared 2-core machine the two differ by the load). "
            f"Samples: {arms[0]['clips']} clips (digit i % 10), the checkpoint's sampler; measures from "
            "`evaluate_videos` on the course's evaluator (Fréchet with its bootstrap 90% interval; real-vs-real "
            "floor in the last row).",
            "",
            "| arm | budget | train step s (batch) | 8 clips s (decoded) | flicker | identity ↑ | shape change ↓ | "
            "physics px ↓ | digit count ↑ | Fréchet ↓ [interval] | load (start, end) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for a in arms:
            v = a["report"]["videos"]
            lines.append(
                f"| {a['label']} | {a['budget']} | {a['train_step_s']:.2f} ({a['batch_size']}) | {a['sample_8_clips_s']:.1f} | "
                f"{v['flicker']:.4f} | {v['identity']:.2f} | {a['shape_change']:.3f} | {v['physics_px']:.2f} | {v['digit_count']:.2f} | "
                f"{v['frechet']:.1f} [{v['frechet_low']:.1f}, {v['frechet_high']:.1f}] | {a['load_average'][0]}; {a['load_average'][1]} |"
            )
        r = arms[0]["report"]["real"]
        lines.append(
            f"| real clips | - | - | - | {r['flicker']:.4f} | {r['identity']:.2f} | - | {r['physics_px']:.2f} | {r['digit_count']:.2f} | "
            f"{r['frechet']:.1f} [{r['frechet_low']:.1f}, {r['frechet_high']:.1f}] | - |"
        )
        lines += [""] + [f"![{a['label']}](vae_samples_{a['label']}.png)" for a in arms] + [""]
    if (RESULTS / "vae_latent.json").is_file():
        lines += ["The first, unequal comparison (latent-video-cpu against video-cpu, which also had image-cpu's "
                  "pretraining and 30 minutes of video training) is kept in `vae_latent.json`.", ""]
    terms = [json.loads(path.read_text()) for path in sorted(TERMS.glob("*.json"))]
    if terms:
        lines += [
            "## Loss terms (vae-cpu's recipe plus one term each)",
            "",
            "Each arm trained with `python -m vdmcourse train --preset NAME --steps S` (equal steps, one one-thread job slot each, "
            "back to back; the machine's load moved between 1.2 and 2.9, so the training seconds, not a wall-clock "
            "budget, say what each term costs); EMA weights scored with `bench_vae.py score --label` on 256 "
            "held-out clips of test digits (10 frames). vae-feat-cpu trains on 10-frame clips, 4 per batch (the "
            "evaluator's clip length; the same frames per batch as vae-cpu's 8 x 5). Sharpness: mean |pixel "
            "difference| to the neighbour of the reconstructions over that of the real clips (1 = as sharp, < 1 = blurred).",
            "",
            "| arm | preset | steps | train s | PSNR dB | SSIM | flicker (recon) | sharpness |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in terms:
            lines.append(
                f"| {r['label']} | {r.get('preset')} | {r.get('steps')} | {r.get('train_s', float('nan')):.0f} | {r['psnr_db']:.2f} | "
                f"{r['ssim']:.3f} | {r['flicker_recon']:.4f} | {r['sharpness']:.3f} |"
            )
        lines.append("")
    with atomic_path(RESULTS / "vae.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("compare")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--variants", nargs="*", choices=list(VARIANTS))
    p.set_defaults(run=compare)
    p = sub.add_parser("score")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--out", type=Path)
    p.add_argument("--label", help="also write results/vae_terms/LABEL.json (the loss-term table)")
    p.set_defaults(run=score)
    p = sub.add_parser("chunks")
    p.set_defaults(run=chunks)
    p = sub.add_parser("latent")
    p.add_argument("--clips", type=int, default=100)
    p.add_argument("--arm", nargs=3, action="append", required=True, metavar=("LABEL", "CHECKPOINT", "BUDGET"),
                   help="an arm: a label, a diffusion checkpoint (shipped name or path), its training budget in words")
    p.set_defaults(run=latent)
    p = sub.add_parser("table")
    p.set_defaults(run=table)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.run(args)


if __name__ == "__main__":
    main()
