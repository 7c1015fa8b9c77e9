"""Limitations, measured: cost against length and resolution, physics and permanence
failures of the shipped models, and what a CPU cannot do.

    python benchmarks/bench_limits.py cost       # step time and activation memory vs T and H, fitted exponents
    python benchmarks/bench_limits.py physics    # failure catalogue of video-cpu, dit-cpu, video-ctx-cpu
    python benchmarks/bench_limits.py gpu        # the GPU presets: size, one CPU step, the budget they would need

``cost`` times one training step (forward + backward, batch 1, one thread) of each course
model family -- the (2+1)-D U-Net (video-cpu's config), the video DiT with full and with
alternating (factorised) attention (dit-cpu's config), and latent diffusion (the
latent-video-cpu U-Net on vae-cpu's 4x-smaller latents, VAE encoding included) -- over
T at H = 32 and over H at T = 8, and measures the activation memory autograd keeps for the
backward pass (every tensor saved for backward, summed: the part of peak memory that grows
with the clip). A straight line in log-log gives the growth exponent; the 24 GiB line is
where the fitted curve would run out of this machine's memory (extrapolated, not run: the
sizes are capped to keep the benchmark under ten CPU-minutes).

``physics`` samples each shipped model (its own sampler, labels 0-9) and scores, with the
metrics' tracker: bounce correctness and straight-line motion (fitted-law residual and
bounce Jaccard; :func:`vdmcourse.metrics.physics.physics_scores`); permanence (identity
persistence and digit count); and, through video-ctx-cpu's context frames (the only model
that can be shown a situation), two digits about to cross and a digit about to walk out of
the view and back: is each digit still there, and still the same digit, afterwards? A strip of the worst
clip of each is saved.

Results: ``benchmarks/results/limits.md`` / ``.json``, ``limits_cost.png``,
``limits_failures.png``. Run with one torch thread (``OMP_NUM_THREADS=1``), at most one such job per core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import torch

from vdmcourse.course import to_model_range, to_unit_range
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.diffusion import sample, training_loss
from vdmcourse.metrics.features import crop_digits, load_evaluator
from vdmcourse.metrics.physics import physics_scores, track_digits
from vdmcourse.metrics.temporal import digit_count_consistency, identity_persistence
from vdmcourse.presets import get_preset, load_latent_vae
from vdmcourse.pretrained import atomic_path, load_pretrained
from vdmcourse.train import machine_info

RESULTS = Path(__file__).parent / "results"
MEMORY_GIB = 24
T_GRID = (4, 8, 16, 32)
H_GRID = (16, 32, 64)


# --- cost ----------------------------------------------------------------------------------------


def _families():
    """name -> (build(T, H) -> model, input shape (T, H) -> (T', C, h, w), encoder or None)."""
    unet = get_preset("video-cpu").model_config
    dit = get_preset("dit-cpu").model_config
    latent = get_preset("latent-video-cpu").model_config
    from vdmcourse.nn.dit import VideoDiT
    from vdmcourse.nn.unet3d import UNet3D

    return {
        "U-Net (2+1)-D, pixels": (lambda t, h: UNet3D(dataclasses.replace(unet, frames=t, image_size=h)), lambda t, h: (t, 1, h, h), None),
        "DiT full attention": (lambda t, h: VideoDiT(dataclasses.replace(dit, frames=t, image_size=h, layout="full")), lambda t, h: (t, 1, h, h), None),
        "DiT factorised (alternate)": (lambda t, h: VideoDiT(dataclasses.replace(dit, frames=t, image_size=h, layout="alternate")), lambda t, h: (t, 1, h, h), None),
        "latent U-Net + vae-cpu": (lambda t, h: UNet3D(dataclasses.replace(latent, frames=t, image_size=h // 4)), lambda t, h: (t, 4, h // 4, h // 4), "vae-cpu"),
    }


def step_cost(model, shape, encoder=None, repeats: int = 2) -> tuple[float, float]:
    """(seconds, saved-activation GiB) of one training step at batch 1."""
    generator = torch.Generator().manual_seed(0)
    t, c, h, w = shape
    pixels = torch.rand(1, t, 1, h * (4 if encoder else 1), w * (4 if encoder else 1), generator=generator)
    saved = [0]

    def pack(tensor):
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    best = math.inf
    for _ in range(repeats):
        saved[0] = 0
        started = time.perf_counter()
        x0 = to_model_range(pixels)
        if encoder is not None:
            with torch.no_grad():
                x0 = load_latent_vae(encoder).encode_latents(x0, generator)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = training_loss(model, x0, cond=torch.zeros(1, 1, dtype=torch.long), generator=generator)
        loss.backward()
        best = min(best, time.perf_counter() - started)
        model.zero_grad(set_to_none=True)
    return best, saved[0] / 2**30


def slope(xs, ys) -> float:
    """Least-squares slope of log y against log x: the growth exponent."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def cost(args) -> dict:
    out = {}
    for name, (build, shape, encoder) in _families().items():
        rows = {"T": {}, "H": {}}
        for axis, grid in (("T", T_GRID), ("H", H_GRID)):
            for value in grid:
                t, h = (value, 32) if axis == "T" else (8, value)
                torch.manual_seed(0)
                seconds, gib = step_cost(build(t, h), shape(t, h), encoder)
                rows[axis][value] = {"seconds": seconds, "activation_gib": gib}
                print(f"{name} {axis}={value}: {seconds:.3f} s, {gib * 1024:.1f} MiB", flush=True)
        fits = {}
        for axis in ("T", "H"):
            xs = list(rows[axis])
            fits[axis] = {
                "time_exponent": slope(xs, [rows[axis][x]["seconds"] for x in xs]),
                "memory_exponent": slope(xs, [rows[axis][x]["activation_gib"] for x in xs]),
            }
            last = xs[-1]
            exponent = fits[axis]["memory_exponent"]
            fits[axis]["runs_out_at"] = last * (MEMORY_GIB / rows[axis][last]["activation_gib"]) ** (1 / exponent) if exponent > 0 else None
        out[name] = {"rows": rows, "fits": fits}
    plot_cost(out)
    return {"families": out, "batch": 1, "memory_gib": MEMORY_GIB}


def plot_cost(out: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for name, entry in out.items():
        for column, (axis, metric) in enumerate((("T", "seconds"), ("H", "seconds"), ("T", "activation_gib"), ("H", "activation_gib"))):
            xs = list(entry["rows"][axis])
            exponent = entry["fits"][axis]["time_exponent" if metric == "seconds" else "memory_exponent"]
            axes[column].loglog(xs, [entry["rows"][axis][x][metric] for x in xs], marker="o", label=f"{name} (^{exponent:.1f})")
    titles = ("step time vs T (H=32)", "step time vs H (T=8)", "activation memory vs T", "activation memory vs H")
    for axis, title in zip(axes, titles):
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=6)
    axes[0].set_ylabel("seconds / step (batch 1)")
    axes[2].set_ylabel("GiB saved for backward")
    fig.tight_layout()
    fig.savefig(RESULTS / "limits_cost.png", dpi=90)


# --- physics and permanence ----------------------------------------------------------------------


def shipped_samples(name: str, n: int, seed: int = 0) -> torch.Tensor:
    preset = get_preset(name)
    model = load_pretrained(name, device="cpu")
    labels = (torch.arange(n) % 10)[:, None]
    x = sample(model, (n, *preset.sample_shape), objective=preset.objective, sampler=preset.sampler, steps=preset.sample_steps,
               cond=labels, guidance_scale=preset.guidance_scale, progress=False, generator=torch.Generator().manual_seed(seed))
    return to_unit_range(x)


def situations(n: int):
    """Real clips of two situations the training data never isolates, with the frames given as
    context and the frames scored afterwards:

    * ``crossing``: two digits on a collision course (10 frames; 3 given), overlapping in the
      middle frames; scored on the last 3, once they are apart again;
    * ``leave_return``: one digit that leaves the view and comes back (16 frames; 3 given): the
      clip is a 32x32 window of a 48x48 world, so the digit walks out of the left edge, bounces
      off the world's wall out of view, and walks back in; scored on the last 4 frames."""
    from vdmcourse.data import render_clips, simulate_trajectories

    g = torch.Generator().manual_seed(11)
    two = generate_clips(n, MovingMNISTConfig.cpu(digits=2, split="test"), generator=g)
    start = torch.tensor([[[4.0, 0.0], [12.0, 16.0]]]).expand(n, -1, -1).clone()
    velocity = torch.tensor([[[0.0, 2.0], [0.0, -2.0]]]).expand(n, -1, -1).clone()
    positions, _ = simulate_trajectories(start, velocity, 10, 16)
    crossing = render_clips(two.digits, positions, 32)
    one = generate_clips(n, MovingMNISTConfig.cpu(split="test"), generator=g)
    start = torch.tensor([[[16.0, 18.0]]]).expand(n, -1, -1).clone()
    velocity = torch.tensor([[[0.0, -3.0]]]).expand(n, -1, -1).clone()
    positions, _ = simulate_trajectories(start, velocity, 16, 32)
    world = render_clips(one.digits, positions, 48)
    leave = world[..., 8:40, 16:48].contiguous()
    return {"crossing": (crossing, two.labels, 2, 3, slice(7, 10)), "leave_return": (leave, one.labels, 1, 3, slice(12, 16))}


def kept_labels(video: torch.Tensor, labels: torch.Tensor, digits: int, frames: slice, evaluator) -> float:
    """Share of (clip, digit) tracks in ``frames`` that are seen cleanly and classified as one of
    the clip's labels (a vanished or changed digit counts as lost)."""
    part = video[:, frames]
    tracks = track_digits(part, digits)
    crops = crop_digits(part, tracks.centres, evaluator.config.digit_size)  # (B, T, K, S, S)
    with torch.no_grad():
        classes = evaluator.classify(crops.flatten(0, 2)).argmax(1).view(tracks.clean.shape)  # (B, T, K)
    match = (classes[..., None] == labels[:, None, None, :]).any(-1) & tracks.clean
    return match.float().mean().item()


def physics(args) -> dict:
    evaluator = load_evaluator()
    results, strips = {}, {}
    real = generate_clips(args.samples, MovingMNISTConfig.cpu(split="test"), generator=torch.Generator().manual_seed(3)).video
    videos = {"real clips": real}
    for name in ("video-cpu", "dit-cpu", "video-ctx-cpu"):
        started = time.process_time()
        videos[name] = shipped_samples(name, args.samples)
        print(f"{name}: sampled in {time.process_time() - started:.0f} CPU s", flush=True)
    for name, video in videos.items():
        scores = physics_scores(video, 1, 16)
        identity = identity_persistence(video, evaluator, 1)
        results[name] = {
            "straight_line_residual_px": scores.residual_px.nanmean().item(),
            "bounce_accuracy": scores.bounce_accuracy,
            "identity_persistence": identity.nanmean().item(),
            "digit_count": digit_count_consistency(video, 1).mean().item(),
        }
        worst = scores.residual_px.nan_to_num(1e9).argmax().item()
        strips[f"{name}: worst physics clip ({scores.residual_px[worst].item():.1f} px from the bounce law)"] = video[worst]
        print(name, results[name], flush=True)
    # Situations, through masked-frame context: only video-ctx-cpu can be shown one.
    from vdmcourse.pipelines import LongVideoPipeline

    pipe = LongVideoPipeline.from_pretrained("video-ctx-cpu", device="cpu")
    for situation, (clips, labels, digits, given, scored) in situations(args.samples).items():
        future = pipe.predict(clips[:, :given], clips.shape[1] - given, context_frames=given, generator=torch.Generator().manual_seed(4))
        video = torch.cat([clips[:, :given], future], 1)
        entry = {}
        for which, v in (("real", clips), ("video-ctx-cpu", video)):
            entry[which] = {
                "labels_kept_after": kept_labels(v, labels, digits, scored, evaluator),
                "digit_count_after": digit_count_consistency(v[:, scored], digits).mean().item(),
            }
        results[f"situation: {situation}"] = entry
        per_clip = torch.tensor([kept_labels(video[i : i + 1], labels[i : i + 1], digits, scored, evaluator) for i in range(len(video))])
        worst = per_clip.argmin().item()
        strips[f"{situation}, real"] = clips[worst]
        strips[f"{situation}, video-ctx-cpu given {given} frames (labels kept after: {per_clip[worst].item():.2f})"] = video[worst]
        print(situation, entry, flush=True)
    plot_strips(strips)
    return {"samples": args.samples, "results": results}


def plot_strips(strips: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(strips), 1, figsize=(12, 1.3 * len(strips)))
    for axis, (name, video) in zip(axes, strips.items()):
        axis.imshow(torch.cat(list(video[:, 0]), dim=1), cmap="gray", vmin=0, vmax=1)
        axis.set_title(name, fontsize=8, loc="left")
        axis.set_xticks([]), axis.set_yticks([])
    fig.tight_layout()
    fig.savefig(RESULTS / "limits_failures.png", dpi=80)


# --- what a CPU cannot do ------------------------------------------------------------------------


def gpu(args) -> dict:
    out = {}
    for name in ("video-cpu", "video-gpu", "dit-cpu", "latent-video-cpu", "latent-video-gpu"):
        preset = get_preset(name)
        torch.manual_seed(0)
        model = preset.model_class(preset.model_config)
        params = sum(p.numel() for p in model.parameters())
        t, _, h, _ = preset.sample_shape
        latent = name.startswith("latent")
        shape = (t, 4, h // 8 if "gpu" in name else h // 4, h // 8 if "gpu" in name else h // 4) if latent else (t, 1, h, h)
        if latent and "gpu" in name:
            seconds, gib = _latent_gpu_step(model, shape)
        else:
            seconds, gib = step_cost(model, shape, "vae-cpu" if latent else None, repeats=1)
        per_step_cpu = seconds * preset.batch_size
        out[name] = {
            "parameters": params, "clip": [t, h, h], "batch_size": preset.batch_size, "steps": preset.steps,
            "cpu_seconds_per_clip": seconds, "activation_gib_per_clip": gib,
            "cpu_hours_for_preset": per_step_cpu * preset.steps / 3600,
        }
        print(name, out[name], flush=True)
    return out


def _latent_gpu_step(model, shape):
    """vae-gpu is not shipped: time the latent U-Net on random latents of the right shape (encoding excluded)."""
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, *shape, generator=generator)
    saved = [0]

    def pack(tensor):
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = training_loss(model, x0, cond=torch.zeros(1, 1, dtype=torch.long), generator=generator)
    loss.backward()
    return time.perf_counter() - started, saved[0] / 2**30


# --- report --------------------------------------------------------------------------------------


def write_report(key: str, result: dict) -> None:
    path = RESULTS / "limits.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored[key] = {**result, "machine": machine_info(), "load_average": os.getloadavg()}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(stored, indent=2))
    lines = ["# Limitations, measured (bench_limits.py)", ""]
    if "cost" in stored:
        c = stored["cost"]
        lines += ["## Cost against length T and resolution H", "",
                  "One training step at batch 1, one thread, wall-clock (best of 2, shared machine); activation memory = every tensor autograd saves for "
                  f"the backward pass. Exponent: slope of log cost against log T (H = 32, T in {list(T_GRID)}) or log H "
                  f"(T = 8, H in {list(H_GRID)}). 'Runs out' extrapolates the memory fit to {c['memory_gib']} GiB per clip. "
                  "Plot: `limits_cost.png`.", "",
                  "| model | time ~ T^a | memory ~ T^a | runs out at T | time ~ H^a | memory ~ H^a | runs out at H | step at T=8, H=32 (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, e in c["families"].items():
            f = e["fits"]

            def out(axis):
                value = f[axis]["runs_out_at"]
                return f"{value:,.0f}" if value else "-"

            lines.append(f"| {name} | {f['T']['time_exponent']:.2f} | {f['T']['memory_exponent']:.2f} | {out('T')} | "
                         f"{f['H']['time_exponent']:.2f} | {f['H']['memory_exponent']:.2f} | {out('H')} | {e['rows']['T']['8']['seconds']:.3f} |"
                         if "8" in e["rows"]["T"] else
                         f"| {name} | {f['T']['time_exponent']:.2f} | {f['T']['memory_exponent']:.2f} | {out('T')} | "
                         f"{f['H']['time_exponent']:.2f} | {f['H']['memory_exponent']:.2f} | {out('H')} | {e['rows']['T'][8]['seconds']:.3f} |")
        lines.append("")
    if "physics" in stored:
        p = stored["physics"]
        lines += [f"## Physics and permanence ({p['samples']} samples per model, labels 0-9)", "",
                  "| clips | straight-line residual px | bounce accuracy | identity persistence | digit count |", "|---|---|---|---|---|"]
        for name, r in p["results"].items():
            if not name.startswith("situation"):
                lines.append(f"| {name} | {r['straight_line_residual_px']:.2f} | {r['bounce_accuracy']:.2f} | "
                             f"{r['identity_persistence']:.2f} | {r['digit_count']:.2f} |")
        lines += ["", "Situations (video-ctx-cpu given the first 3 real frames; `situations()` in the script): ", "",
                  "| situation | clips | digits kept (seen, right class) after | right digit count after |", "|---|---|---|---|"]
        for name, entry in p["results"].items():
            if name.startswith("situation"):
                for which, r in entry.items():
                    lines.append(f"| {name.split(': ')[1]} | {which} | {r['labels_kept_after']:.2f} | {r['digit_count_after']:.2f} |")
        lines += ["", "Strips: `limits_failures.png` (worst clip of each).", ""]
    if "gpu" in stored:
        lines += ["## What a CPU cannot do: the GPU presets", "",
                  "One training step of one clip on this CPU (one thread; wall-clock seconds on the shared 2-core machine, so an upper bound on CPU time), times the preset's batch and steps.", "",
                  "| preset | parameters | clip T x H x W | activation GiB / clip | s / clip-step | hours for the preset (one thread) |", "|---|---|---|---|---|---|"]
        for name, r in stored["gpu"].items():
            if isinstance(r, dict) and "parameters" in r:
                lines.append(f"| {name} | {r['parameters'] / 1e6:.2f} M | {' x '.join(map(str, r['clip']))} | {r['activation_gib_per_clip']:.3f} | "
                             f"{r['cpu_seconds_per_clip']:.2f} | {r['cpu_hours_for_preset']:.1f} |")
        lines += ["", "latent-video-gpu: vae-gpu is not shipped, so its step is timed on random latents of the right shape (encoding excluded).", ""]
    first = next(iter(stored.values()))
    lines += [f"Machine: {first['machine']['cpu']}, {first['machine']['torch_threads']} thread(s).", ""]
    with atomic_path(RESULTS / "limits.md") as tmp:
        tmp.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("cost", "physics", "gpu"))
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    started = time.process_time()
    result = {"cost": cost, "physics": physics, "gpu": gpu}[args.command](args)
    if isinstance(result, dict):
        result["cpu_s"] = time.process_time() - started
    write_report(args.command, result)


if __name__ == "__main__":
    main()
