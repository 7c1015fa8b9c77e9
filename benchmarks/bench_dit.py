"""The video DiT on a CPU: FLOP/s, layouts, variable sizes, a mini scaling study, sampling
time, and sample quality at fixed training budgets against the U-Net.

    python benchmarks/bench_dit.py flops [--preset NAME]     # a DiT preset's step (dit-cpu): FLOP/s vs this machine's matmul peak
    python benchmarks/bench_dit.py layouts --seconds 120     # full / alternate / STDiT at about equal parameters
    python benchmarks/bench_dit.py packing                   # packing vs padding vs buckets on a mixed batch
    python benchmarks/bench_dit.py scaling --seconds 120     # three widths, the same CPU budget each
    python benchmarks/bench_dit.py sampling                  # 8 clips at the defaults, DiTs and U-Nets, pixels and latents, 1 and 2 threads
    python benchmarks/bench_unet3d.py snapshot runs/dit-cpu  # beside training: keeps every saved model
    python benchmarks/bench_dit.py budgets runs/dit-cpu      # strips + metrics at 5/10/15/30 min
    python benchmarks/bench_dit.py pilot NAME --seconds 210 --set layout=alternate position=sincos+rope
                                                             # a short run of dit-cpu with changes, scored as budgets
    python benchmarks/bench_dit.py pilot NAME --base dit-joint-x4-cpu --cpu --seconds 900 --set "buckets=((10,32,32),)" --cooldown 0.2
                                                             # other batch sizes (Open-Sora buckets), a learning-rate cooldown
    python benchmarks/bench_dit.py multisize --models dit-multisize-cpu dit-multisize-sizecond-cpu
                                                             # models at sizes they saw and never saw, 100 clips each
    python benchmarks/bench_dit.py multisize --key multisize_interp --sizes 20x32x32 --interpolate
                                                             # longer clips as sampled and with time positions squeezed
    python benchmarks/bench_dit.py identity --clips 60       # what identity persistence counts, on dit-cpu and video-cpu
    python benchmarks/bench_dit.py frames NAME --base dit-cpu --seconds 300 --set prediction=x
                                                             # a preset's model on single frames: does it draw the digit?
    python benchmarks/bench_dit.py guidance --models dit-joint-x-cpu --scales 1 2 3 5 7 --start-mix 0 1 2
                                                             # sampling settings: guidance scale and frame-shared start noise
    python benchmarks/bench_dit.py motion --models dit-joint-x3-cpu dit-cpu
                                                             # where the physics residual comes from: steps inside / across tokens

``flops`` counts one training step's FLOPs with ``torch.utils.flop_counter.FlopCounterMode``
(forward + backward; the optimiser's elementwise work is not counted), times the step, and
times a large fp32 matmul in the same process with the same threads: achieved FLOP/s
over matmul peak. A ``torch.profiler`` run splits the step's time by operator kind.

``layouts`` and ``scaling`` train each variant for the same wall-clock seconds, one after
the other in one process (one thread), and report step time, the memory autograd keeps
for the backward pass, and the loss; ``scaling`` also plots loss against training FLOPs
and draws a strip per width. ``budgets`` scores the snapshots of a ``dit-cpu`` run exactly
as ``bench_unet3d.py budgets`` scores ``video-cpu`` (same clips, seeds, metrics).

``multisize`` samples checkpoints at clip sizes their bucketed training saw and at sizes they
never saw, and scores each size against real clips of that size: the per-clip metrics work on
any size (the tracker, identity on 16-px crops, physics with each axis's own walls); KID and the
Fréchet distance need the evaluator's 32x32x10 input, so generated and real clips alike go through
``vdmcourse.multisize.evaluator_window`` (first 10 frames, the square around the digit's path,
zero-padded below 32 px), and the real-vs-real distance at the same size is the floor. The
Fréchet distance needs more clips than the evaluator's 64 feature dimensions (100 by default).
``vdmcourse.multisize.background_level`` measures what a model paints behind the digit, before
and after the longest clips it trained on.
``identity`` splits identity persistence into what it counts and what it leaves out.
``guidance`` redraws checkpoints at other guidance scales, and from start noise whose frames share
a part (``vdmcourse.diffusion.frame_noise``) that the model may never have trained on: what the
sampler alone can buy, with the motion's speed beside identity so that a frozen digit shows.

Everything goes to ``benchmarks/results/dit.md`` (and ``.json``) with the machine and the
load average: on a shared machine the wall-clock figures are pessimistic.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import math
import re
import sys
import time
from pathlib import Path
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from bench_unet3d import CLIPS, PER_DIGIT, _draw, _evaluator, _scores, load_average, saved_for_backward_mb  # noqa: E402

from vdmcourse.course import CHECKPOINT_DIR, seed_everything, to_unit_range  # noqa: E402
from vdmcourse.metrics import clip_metrics, frame_classes, frechet_distance, identity_left_out, identity_persistence, kid, physics_scores, track_digits, video_features  # noqa: E402
from vdmcourse.metrics.temporal import shape_change  # noqa: E402
from vdmcourse.multisize import background_level, bucketed_batch, evaluator_window, generate_sized_clips  # noqa: E402
from vdmcourse.data import MovingMNISTConfig, generate_clips  # noqa: E402
from vdmcourse.diffusion import GUIDE_EVERY_CALL, check_guidance_interval, frame_noise, noise_mix_of, null_label_of, sample  # noqa: E402
import vdmcourse.nn.dit as dit_module  # noqa: E402
from vdmcourse.nn.attention import naive_attention  # noqa: E402
from vdmcourse.nn.dit import bucket_batch_sizes  # noqa: E402
from vdmcourse.presets import MULTISIZE_BUCKETS, get_preset, load_latent_vae  # noqa: E402
from vdmcourse.pretrained import atomic_path, build_model, load_checkpoint, load_pretrained, read_manifest, save_checkpoint  # noqa: E402
from vdmcourse.train import Trainer, machine_info  # noqa: E402
from vdmcourse.viz import frame_strip  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BUDGETS_MIN = (5, 10, 15, 30)
# (T, H, W): sizes dit-multisize-cpu trained on (MULTISIZE_BUCKETS), then sizes it never saw:
# larger squares, a larger 2:1 canvas, the 2:1 canvas turned upright, longer clips.
MULTISIZE_SEEN = [(10, 32, 32), (6, 24, 24), (12, 24, 48)]
MULTISIZE_UNSEEN = [(10, 40, 40), (10, 32, 64), (10, 48, 24), (20, 32, 32)]


def _batch(preset, seed=0):
    return preset.batches()(torch.Generator().manual_seed(seed))


def _step_flops(model, loss_fn, batch) -> int:
    """FLOPs of one forward + backward. ``FlopCounterMode`` counts nothing for the CPU
    kernels of ``scaled_dot_product_attention``, so attention is counted on the textbook
    ``naive_attention`` (the same matmuls, spelled out)."""
    counter = FlopCounterMode(display=False)
    with counter, mock.patch.object(dit_module, "attention", naive_attention):
        loss_fn(model, batch, torch.Generator().manual_seed(1)).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _time_steps(model, loss_fn, batch, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(1)
    for i in range(steps + 1):
        if i == 1:
            started = time.perf_counter()  # the first step warms up
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model, batch, generator).backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def matmul_peak(size: int = 1024, repeats: int = 20) -> float:
    """fp32 FLOP/s of a ``size``-square matmul with the current threads (best of three)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - started) / repeats)
    return 2 * size**3 / best


def _kind(name: str) -> str:
    name = name.lower()
    if "attention" in name or "sdpa" in name or "softmax" in name or "bmm" in name or "baddbmm" in name:
        return "attention"
    if "addmm" in name or name in ("aten::mm", "aten::linear", "aten::matmul"):
        return "linear (matmul)"
    if "norm" in name:
        return "layer / RMS norms"
    if any(k in name for k in ("mul", "add", "sub", "div", "gelu", "silu", "cos", "sin", "cat", "neg", "pow", "where")):
        return "elementwise (RoPE, modulation, activations)"
    if any(k in name for k in ("copy", "clone", "contiguous", "permute", "view", "reshape", "transpose", "expand", "index")):
        return "copies and reshapes"
    return "other"


def flops(args) -> dict:
    preset = get_preset(args.preset)
    model = preset.build_model()
    loss_fn, batch = preset.loss_fn(), _batch(preset)
    step_flops = _step_flops(model, loss_fn, batch)
    step_s = _time_steps(model, loss_fn, batch, args.steps)
    peak = matmul_peak()
    # Where the time goes: self CPU time of the step's operators, grouped.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        _time_steps(model, loss_fn, batch, 2)
    shares: dict[str, float] = {}
    for event in profiler.key_averages():
        if event.key.startswith("aten::") and not event.key.startswith("aten::_to_copy"):
            shares[_kind(event.key)] = shares.get(_kind(event.key), 0.0) + event.self_cpu_time_total
    total = sum(shares.values())
    profile_total_s = profiler.key_averages().self_cpu_time_total / 1e6
    row = {
        "model": f"{preset.name} ({sum(p.numel() for p in model.parameters()):,} params), batch {preset.batch_size}",
        "step_gflop": step_flops / 1e9,
        "step_s": step_s,
        "achieved_gflops": step_flops / step_s / 1e9,
        "matmul_peak_gflops": peak / 1e9,
        "fraction_of_peak": step_flops / step_s / peak,
        "time_shares": {k: v / total for k, v in sorted(shares.items(), key=lambda kv: -kv[1])},
        "aten_share_of_profiled_time": total / 1e6 / profile_total_s if profile_total_s else None,
        "threads": torch.get_num_threads(),
        "load_average": load_average(),
    }
    print(row, flush=True)
    return row


def _train_for(preset, seconds: float, seed: int = 0, cpu: bool = False, cooldown: float = 0.0) -> dict:
    """Train ``preset``'s model from ``seed`` for ``seconds`` of the trainer's clock -- wall
    time, or with ``cpu`` this process's CPU time (``time.process_time``: on a shared machine
    a budget that does not shrink when other jobs take the core). ``cooldown``: over the last
    this fraction of ``seconds`` the learning rate falls linearly to 0 (warmup-stable-decay,
    Hägele et al. 2024); 0: the preset's constant rate after warm-up."""
    if cpu:
        with mock.patch.object(time, "perf_counter", time.process_time):
            return _train_for(preset, seconds, seed, cooldown=cooldown)
    seed_everything(seed)
    model = preset.build_model()
    batch = _batch(preset)
    step_flops = _step_flops(model, preset.loss_fn(), batch)
    memory = saved_for_backward_mb(model, batch["video"] * 2 - 1, torch.rand(len(batch["video"])), batch["labels"])
    trainer = Trainer(model, preset.loss_fn(), preset.batches(), preset.train, device="cpu", progress=False)
    if cooldown:
        constant = trainer.lr_at
        trainer.lr_at = lambda step: constant(step) * min(1.0, max(0.0, 1 - trainer.elapsed / seconds) / cooldown)
    trainer.fit(10**9, time_limit=seconds)
    losses = trainer.history
    tail = losses[-min(50, len(losses)):]
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "steps": trainer.step,
        "train_s": trainer.elapsed,
        "s_per_step": trainer.elapsed / trainer.step,
        "step_gflop": step_flops / 1e9,
        "saved_for_backward_mb": memory,
        "loss_last_50": sum(tail) / len(tail),
        "loss_curve": [sum(losses[i : i + 25]) / len(losses[i : i + 25]) for i in range(0, len(losses), 25)],
        "trainer": trainer,
    }


def layouts(args) -> dict:
    base = get_preset("dit-cpu")
    config = base.model_config
    # STDiT has two attentions per block (and nine modulation vectors): one block fewer keeps
    # the parameter count within a few per cent of the others.
    variants = {
        "full (every block: all tokens)": dataclasses.replace(config, layout="full"),
        "alternate (Latte: spatial / temporal blocks)": dataclasses.replace(config, layout="alternate"),
        "stdit (spatial then temporal in each block)": dataclasses.replace(config, layout="stdit", depth=config.depth - 1),
    }
    rows = []
    for name, variant in variants.items():
        result = _train_for(dataclasses.replace(base, model_config=variant), args.seconds)
        result.pop("trainer")
        rows.append({"layout": name, "depth": variant.depth, **result})
        print({k: v for k, v in rows[-1].items() if k != "loss_curve"}, flush=True)
    return {"seconds": args.seconds, "load_average": load_average(), "rows": rows}


def packing(args) -> dict:
    torch.manual_seed(0)
    model = get_preset("dit-cpu").build_model()
    sizes = [(10, 32, 32), (6, 24, 24), (12, 16, 32), (8, 32, 16), (4, 24, 48), (10, 16, 16)] * 2
    clips = [torch.randn(t, 1, h, w) for t, h, w in sizes]
    times, labels = torch.rand(len(clips)), torch.randint(0, 10, (len(clips),))
    real_tokens = sum(model.tokens_per_clip(*s) for s in sizes)
    frames, height, width = (max(s[i] for s in sizes) for i in range(3))

    def padded():  # everything padded to the largest T, H, W: one batch
        x = torch.zeros(len(clips), frames, 1, height, width)
        for i, clip in enumerate(clips):
            x[i, : clip.shape[0], :, : clip.shape[2], : clip.shape[3]] = clip
        model(x, times, labels).square().mean().backward()

    def bucketed():  # one forward per size
        for size in sorted(set(sizes)):
            index = [i for i, s in enumerate(sizes) if s == size]
            model(torch.stack([clips[i] for i in index]), times[index], labels[index]).square().mean().backward()

    def packed():  # one sequence, block-diagonal mask
        sum(out.square().mean() for out in model.forward_packed(clips, times, labels)).backward()

    rows = []
    for name, run, tokens in [
        ("padding to the largest T x H x W", padded, len(clips) * model.tokens_per_clip(frames, height, width)),
        ("buckets (one forward per size)", bucketed, real_tokens),
        ("packing (one sequence, block-diagonal mask)", packed, real_tokens),
    ]:
        run()
        started = time.perf_counter()
        for _ in range(args.repeats):
            run()
            model.zero_grad(set_to_none=True)
        rows.append({"method": name, "tokens": tokens, "wasted_tokens": (tokens - real_tokens) / tokens,
                     "s_per_step": (time.perf_counter() - started) / args.repeats})
        print(rows[-1], flush=True)
    return {"clips": [list(s) for s in sizes], "real_tokens": real_tokens, "load_average": load_average(), "rows": rows,
            "bucket_batch_sizes_at_2560_tokens": {str(k): v for k, v in bucket_batch_sizes(sorted(set(sizes)), model.config.patch, 2560).items()}}


def scaling(args) -> dict:
    import matplotlib.pyplot as plt

    base = _override(get_preset("dit-cpu"), args.set)
    rows = []
    for dim in args.dims:
        config = dataclasses.replace(base.model_config, dim=dim, heads=4)
        result = _train_for(dataclasses.replace(base, model_config=config), args.seconds)
        trainer = result.pop("trainer")
        video = _draw(trainer.ema, base.metadata())
        strip = RESULTS / f"dit_scaling_dim{dim}.png"
        with atomic_path(strip) as tmp:
            frame_strip(video[:5], titles=[str(i) for i in range(5)]).savefig(tmp, format="png", dpi=120)
        rows.append({"dim": dim, **result, "train_pflop": result["step_gflop"] * result["steps"] / 1e6,
                     **_scores(video, _evaluator(), base.data.digit_size), "strip": str(strip.relative_to(RESULTS.parent.parent))})
        print({k: v for k, v in rows[-1].items() if k != "loss_curve"}, flush=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        steps = [25 * i + 12 for i in range(len(row["loss_curve"]))]
        ax.plot([s * row["step_gflop"] / 1e3 for s in steps], row["loss_curve"], label=f"dim {row['dim']} ({row['params']:,} params)")
    ax.set_xscale("log"), ax.set_xlabel("training TFLOP (forward + backward)"), ax.set_ylabel("flow loss (25-step means)")
    ax.set_title(f"the same {args.seconds:.0f} s of CPU each"), ax.legend()
    fig.tight_layout()
    with atomic_path(RESULTS / "dit_scaling.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return {"seconds": args.seconds, "changes": list(args.set), "load_average": load_average(), "rows": rows, "plot": "benchmarks/results/dit_scaling.png"}


def _best_seconds(run, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``run`` after one warm-up call."""
    run()
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


# (name, weights): the latent models timed. No latent DiT is shipped (latent-dit-cpu was a trial),
# so its preset's untrained model stands in: a sampling step costs the same whatever the weights.
SAMPLING_LATENT = (("latent-video-cpu", "shipped"), ("latent-dit-cpu", "untrained (timing only)"))


def _draw_timed(model, shape, kwargs: dict, vae=None) -> torch.Tensor:
    """One timed draw: ``sample`` from seed 0, then (latent models) the VAE's decoding."""
    with torch.no_grad():
        clips = sample(model, shape, generator=seed_everything(0), **kwargs)
        return clips if vae is None else vae.decode_latents(clips)


def _sampling_case(name, space, weights, model, shape, sampler, steps, guidance, vae=None, interval=GUIDE_EVERY_CALL):
    """(row fields, the timed draw) of one model at its default sampler, steps, guidance and guidance interval."""
    kwargs = {"sampler": sampler, "steps": steps, "cond": torch.arange(8), "guidance_scale": guidance, "guidance_interval": interval,
              "progress": False}
    fields = {"model": name, "space": space, "weights": weights, "sampler": sampler, "steps": steps, "guidance": guidance,
              "guidance_interval": list(interval)}
    return fields, functools.partial(_draw_timed, model, shape, kwargs, vae)


def sampling(args) -> dict:
    """8 clips at each model's default sampler, steps and guidance, with ``--threads`` torch threads:
    the shipped pixel DiTs and U-Net, and latent models with vae-cpu's decoding included."""
    cases = []  # each model loaded once, then timed at every thread count
    for name in ("dit-cpu", "dit-x-cpu", "dit-joint-x-cpu", "dit-joint-x2-cpu", "dit-joint-x3-cpu", "dit-joint-x4-cpu", "video-cpu"):
        if (CHECKPOINT_DIR / f"{name}.safetensors").is_file():
            info = load_checkpoint(CHECKPOINT_DIR / f"{name}.safetensors").metadata
            cases.append(_sampling_case(name, "pixels", "shipped", load_pretrained(name, device="cpu"), (8, *info["sample_shape"]),
                                        info["sampler"], info["sample_steps"], info["guidance_scale"],
                                        interval=tuple(info.get("guidance_interval", GUIDE_EVERY_CALL))))
    for name, weights in SAMPLING_LATENT:
        preset = get_preset(name)
        model = load_pretrained(name, device="cpu") if weights == "shipped" else preset.build_model().eval()
        space = f"{preset.vae} latents {'x'.join(map(str, preset.latent_shape))}, decoding included"
        cases.append(_sampling_case(name, space, weights, model, (8, *preset.latent_shape), preset.sampler, preset.sample_steps,
                                    preset.guidance_scale, load_latent_vae(preset.vae)))
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for fields, draw in cases:
            rows.append({**fields, "seconds_8_clips": _best_seconds(draw, args.repeats), "threads": threads})
            print(rows[-1], flush=True)
    return {"load_average": load_average(), "rows": rows}


def _override(preset, settings):
    """``preset`` with ``key=value`` changes: a field of the model config, of the TrainConfig,
    or of the preset itself (values parsed as Python literals, else kept as strings); or
    ``buckets=((T, H, W), ...)``: Open-Sora batches drawn from those sizes (:func:`_buckets`)."""
    import ast

    model, train, top, buckets = {}, {}, {}, None
    for item in settings:
        key, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        if key == "buckets":
            buckets = value
        elif key in {f.name for f in dataclasses.fields(preset.model_config)}:
            model[key] = value
        elif key in {f.name for f in dataclasses.fields(preset.train)}:
            train[key] = value
        elif key in {f.name for f in dataclasses.fields(preset)}:
            top[key] = value
        else:
            raise SystemExit(f"pilot: {key!r} is not buckets or a field of the model config, the TrainConfig or the preset")
    preset = dataclasses.replace(preset, model_config=dataclasses.replace(preset.model_config, **model),
                                 train=dataclasses.replace(preset.train, **train), **top)
    return preset if buckets is None else dataclasses.replace(preset, batch_source=_buckets(preset, buckets))


def _buckets(preset, sizes) -> functools.partial:
    """``bucketed_batch`` over ``sizes`` on ``preset``'s data, tokens per batch counted under the
    patch its bucketed batches already use (dit-cpu's 2x4x4 for the joint recipes) where that
    patch divides every size, else under the model's own patch."""
    sizes = tuple(tuple(size) for size in sizes)
    source = preset.batch_source
    patch = source.keywords["patch"] if isinstance(source, functools.partial) and source.func is bucketed_batch else None
    if patch is None or any(size % part for frames_hw in sizes for size, part in zip(frames_hw, patch)):
        patch = preset.model_config.patch
    return functools.partial(bucketed_batch, data=preset.data, sizes=sizes, patch=patch)


def pilot(args) -> dict:
    """dit-cpu with the changes of ``--set``, trained ``--seconds``, scored as ``budgets`` scores
    a snapshot (EMA weights, the same 30 draws). Each pilot writes its own ``dit_pilot_NAME.json``."""
    preset = _override(get_preset(args.base), args.set)
    # The TrainConfig's seed also seeds the weights' initialisation, as `python -m vdmcourse train` does.
    result = _train_for(preset, args.seconds, seed=preset.train.seed, cpu=args.cpu, cooldown=args.cooldown)
    trainer = result.pop("trainer")
    video = _draw(trainer.ema, preset.metadata())  # digits 0-9, PER_DIGIT times
    evaluator = _evaluator()
    strip = RESULTS / f"dit_pilot_{args.name}.png"
    with atomic_path(strip) as tmp:
        frame_strip(video[:5], titles=[str(i) for i in range(5)]).savefig(tmp, format="png", dpi=120)
    changes = list(args.set) + ([f"lr cooldown over the last {args.cooldown:.0%}"] if args.cooldown else [])
    row = {"name": args.name, "base": args.base, "changes": changes, "seconds": args.seconds,
           "clock": "CPU seconds of the process" if args.cpu else "wall seconds", **result,
           **_scores(video, evaluator, preset.data.digit_size),
           "asked_digit": _asked_digit(video, evaluator, torch.arange(10).repeat(PER_DIGIT)),
           "speed_px": _speed(video, preset.data.digit_size), "tokens_per_clip": trainer.model.tokens_per_clip(*preset.sample_shape[:1], *preset.sample_shape[2:]),
           "load_average": load_average(), "strip": str(strip.relative_to(RESULTS.parent.parent))}
    print({k: v for k, v in row.items() if k != "loss_curve"}, flush=True)
    if args.save:  # the EMA model, for `multisize --models NAME=PATH`
        save_checkpoint(args.save, trainer.ema, step=trainer.step, metadata={**preset.metadata(), "weights": "EMA"})
    with atomic_path(RESULTS / f"dit_pilot_{args.name}.json") as tmp:
        tmp.write_text(json.dumps(row, indent=1) + "\n")
    return row


FRAME_DRAWS = 200  # single frames drawn per probe: digits 0-9 in turn


def frames(args) -> dict:
    """A single-frame probe: ``--base``'s model with ``--set`` changes trained on single 32x32
    frames (``frames=1``; a DiT's patch becomes ``(1, ph, pw)``) for ``--seconds`` of CPU time,
    then ``FRAME_DRAWS`` frames drawn (the preset's sampler and guidance, seed 0) and read by the
    evaluator: the share showing the digit asked for. Where a DiT's pictures go wrong without
    the question of motion. Each probe writes its own ``dit_frames_NAME.json`` and strip."""
    preset = get_preset(args.base)
    model_config = preset.model_config
    if hasattr(model_config, "patch"):
        model_config = dataclasses.replace(model_config, frames=1, patch=(1, *model_config.patch[1:]))
    preset = _override(dataclasses.replace(preset, model_config=model_config, data=dataclasses.replace(preset.data, frames=1),
                                           batch_source=None), args.set)
    result = _train_for(preset, args.seconds, seed=preset.train.seed, cpu=True)
    trainer = result.pop("trainer")
    info = preset.metadata()
    asked = torch.arange(FRAME_DRAWS) % 10
    video = to_unit_range(sample(trainer.ema.eval(), (FRAME_DRAWS, 1, 1, 32, 32), sampler=info["sampler"], steps=info["sample_steps"],
                                 cond=asked, guidance_scale=info["guidance_scale"],
                                 guidance_interval=info.get("guidance_interval", GUIDE_EVERY_CALL), generator=seed_everything(0), progress=False))
    strip = RESULTS / f"dit_frames_{args.name}.png"
    with atomic_path(strip) as tmp:
        frame_strip(video[:10].transpose(0, 1), titles=[args.name]).savefig(tmp, format="png", dpi=120)
    row = {"name": args.name, "base": args.base, "changes": list(args.set), "model": type(trainer.model).__name__, **result,
           "draws": FRAME_DRAWS, "asked_digit": _asked_digit(video, _evaluator(), asked), "load_average": load_average(),
           "strip": str(strip.relative_to(RESULTS.parent.parent))}
    print({k: v for k, v in row.items() if k != "loss_curve"}, flush=True)
    with atomic_path(RESULTS / f"dit_frames_{args.name}.json") as tmp:
        tmp.write_text(json.dumps(row, indent=1) + "\n")
    return row


def budgets(args) -> dict:
    run = Path(args.run)
    index = json.loads((run / "snapshots" / "index.json").read_text())
    evaluator = _evaluator()
    first = load_checkpoint(run / "snapshots" / min(index))
    info = first.metadata

    def strip_for(video, label: str) -> str:
        strip = RESULTS / f"dit{'_' + args.label if args.label else ''}_samples_{label}.png"
        with atomic_path(strip) as tmp:
            frame_strip(video[:5], titles=[str(i) for i in range(5)]).savefig(tmp, format="png", dpi=120)
        return str(strip.relative_to(RESULTS.parent.parent))

    real = generate_clips(CLIPS, MovingMNISTConfig(**info["data"]), generator=seed_everything(0))
    rows = [{"budget_min": None, "snapshot": "real clips", "step": None, "train_min": None, "load_average": "",
             **_scores(real.video, evaluator, info["data"]["digit_size"]), "strip": strip_for(real.video, "real")}]
    cpu_step = getattr(args, "cpu_s_per_step", None)
    if cpu_step:  # budgets in CPU minutes: a snapshot's CPU time is its step times the run's measured CPU per step
        index = {name: {**entry, "train_s": entry["step"] * cpu_step} for name, entry in index.items()}
    elif getattr(args, "cpu_clock", False):  # the trainer's own CPU clock, recorded by the snapshot copier
        index = {name: {**entry, "train_s": entry["cpu_s"]} for name, entry in index.items()}
    trained_s = max(entry["train_s"] for entry in index.values())
    step_s = trained_s / max(entry["step"] for entry in index.values())
    for previous, minutes in zip((0, *BUDGETS_MIN), BUDGETS_MIN):
        # with CPU minutes a budget is an upper bound: the smallest budget above a run's total stands for the whole run,
        # unless the run passed the budget below it by less than a step (a --cpu-minutes run stops just past its budget)
        cpu_minutes = cpu_step or getattr(args, "cpu_clock", False)
        if (trained_s <= previous * 60 + step_s) if cpu_minutes else (trained_s < minutes * 60 - step_s):
            continue
        _, name = max((entry["train_s"], name) for name, entry in index.items() if entry["train_s"] <= minutes * 60 + (0 if cpu_minutes else step_s))
        entry = index[name]
        checkpoint = load_checkpoint(run / "snapshots" / name)
        video = _draw(build_model(checkpoint), checkpoint.metadata)
        rows.append({"budget_min": minutes, "snapshot": name, "step": entry["step"], "train_min": entry["train_s"] / 60,
                     "load_average": entry["load_average"], **_scores(video, evaluator, info["data"]["digit_size"]),
                     "strip": strip_for(video, f"{minutes:02d}min")})
        print(rows[-1], flush=True)
    return {"run": str(run), "preset": getattr(args, "preset", None), "rows": rows,
            "clock": f"CPU minutes ({cpu_step:.3f} CPU-s per step, the run's /usr/bin/time total over its steps)" if cpu_step
            else "CPU minutes (the trainer's CPU clock, `--cpu-minutes`)" if getattr(args, "cpu_clock", False) else "the trainer's clock (wall)"}


def _draw_sized(model, info: dict, size, n: int, seed: int = 0, time_scale: float = 1.0) -> torch.Tensor:
    """``n`` clips of ``size`` = (T, H, W), digits 0, 1, ..., 9, 0, ... with the checkpoint's
    sampler settings: ``(n, T, 1, H, W)`` in [0, 1]. ``time_scale`` != 1: the model's frame
    positions scaled by it at every step (``VideoDiT.forward``'s position interpolation)."""
    frames, height, width = size
    net = model if time_scale == 1.0 else functools.partial(model, time_scale=time_scale)
    clips = sample(net, (n, frames, 1, height, width), sampler=info["sampler"], steps=info["sample_steps"],
                   cond=torch.arange(n) % 10, guidance_scale=info["guidance_scale"],
                   guidance_interval=info.get("guidance_interval", GUIDE_EVERY_CALL), null_label=null_label_of(model),
                   generator=seed_everything(seed), progress=False)
    return to_unit_range(clips)


def _speed(video, digit_size: int) -> float:
    """The speed (px a frame) of the motion law fitted to each one-digit clip of ``video``
    ``(N, T, 1, H, W)`` (``physics_scores``' bounce fit: constant speed between the walls, so the
    frame-to-frame jitter of the ink centre does not count), averaged over clips with a fit."""
    fit = physics_scores(video, 1, digit_size).fit
    speed = fit.velocity.norm(dim=-1)  # (N,)
    return speed[torch.isfinite(fit.residual)].mean().item()


def _size_scores(video, real_features, evaluator) -> dict:
    """Per-clip metrics of ``video`` ``(N, T, 1, H, W)``, its background level before and after
    the longest training duration, and its KID and Fréchet distance to ``real_features`` (real
    clips of its size through the evaluator window; both None when there are none -- clips
    shorter than the window -- and Fréchet None with fewer clips than feature dimensions)."""
    background = background_level(video)  # (N, T)
    longest = max(size[0] for size in MULTISIZE_BUCKETS)
    scores = {**clip_metrics(video, evaluator, 1), "shape_change": shape_change(video).mean().item(), "speed_px": _speed(video, evaluator.config.digit_size),
              "background": background[:, :longest].nanmean().item(),
              "background_late": background[:, longest:].nanmean().item() if video.shape[1] > longest else None,
              "kid": None, "frechet": None}
    if real_features is not None:
        features = video_features(evaluator, evaluator_window(video, frames=evaluator.config.frames, size=evaluator.config.canvas))
        scores["kid"] = kid(features, real_features, generator=torch.Generator().manual_seed(0))[0]
        if len(features) > features.shape[1]:
            scores["frechet"] = frechet_distance(features, real_features)
    return scores


def _trained_sizes(info: dict) -> list[tuple[int, int, int]]:
    """The (T, H, W) a checkpoint trained on: its preset's buckets, or its one sample size."""
    source = get_preset(info["preset"]).batch_source
    if isinstance(source, functools.partial) and source.func is bucketed_batch:
        return [tuple(size) for size in source.keywords["sizes"]]
    return [(info["sample_shape"][0], *info["sample_shape"][2:])]


INTERPOLATED = ", time squeezed"  # the name suffix of `multisize --interpolate` rows


def multisize(args) -> dict:
    """Each model of ``--models`` at each size of ``--sizes``: ``--clips`` clips against as many
    real clips of that size (a second real set gives the floor). Rows of models not in this
    run are kept from the stored table (``--key``), so models can be scored in separate runs;
    such a run draws its own strip beside the table's others. ``--interpolate``: at sizes
    longer than a model's longest training clip, a second row "NAME, time squeezed" samples
    with the frame positions scaled by trained / asked frames (position interpolation)."""
    import matplotlib.pyplot as plt

    evaluator = _evaluator()
    real_data = MovingMNISTConfig.cpu(split="test")
    window = {"frames": evaluator.config.frames, "size": evaluator.config.canvas}
    references = {}  # (T, H, W) -> (real clips, real-window features or None, the floor's scores)
    rows, shown, paths = [], {}, {}
    for entry in args.models:
        name, _, path = entry.partition("=")
        checkpoint = load_checkpoint(path or CHECKPOINT_DIR / f"{name}.safetensors")
        paths[name] = str(Path(checkpoint.path).resolve().relative_to(RESULTS.parent.parent.resolve()))
        model, info = build_model(checkpoint), checkpoint.metadata
        trained = _trained_sizes(info)
        longest = max(s[0] for s in trained)
        for size in [tuple(s) for s in args.sizes]:
            scales = [1.0] + ([longest / size[0]] if args.interpolate and size[0] > longest else [])
            for time_scale in scales:
                label = name if time_scale == 1.0 else name + INTERPOLATED
                if time_scale != 1.0:
                    paths[label] = paths[name]
                rows.append(_multisize_row(model, info, label, size, trained, time_scale, args.clips, references, real_data, window, evaluator))
                real, video = references[size][0], rows[-1].pop("video")
                shown.setdefault(size, [("real", real[3])]).insert(-1, (label + ("" if rows[-1]["seen"] else " (never seen)"), video[3]))
    path = RESULTS / "dit.json"
    stored = json.loads(path.read_text()).get(args.key, {}) if path.is_file() else {}
    # rows of an earlier run's table (which gave clips and load once for all rows) keep their own
    kept = [{"clips": stored.get("clips"), "load_average": stored.get("load_average"), **row}
            for row in stored.get("rows", []) if row["model"] not in paths]
    # the strip: for each size, digit 3's clip from each model above a real clip of that size (every other frame);
    # a run beside kept rows gets its own file, and the table lists each strip with the models it shows
    # (an older table's single strip showed the models whose rows it keeps)
    slug = "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", entry.partition("=")[0]) for entry in args.models)
    strip = RESULTS / (f"dit_{args.key}.png" if not kept else f"dit_{args.key}_{slug}.png")
    fig, axes = plt.subplots(len(shown), 1, figsize=(11, 0.95 * sum(len(v) for v in shown.values())), layout="constrained",
                             gridspec_kw={"height_ratios": [len(v) for v in shown.values()]}, squeeze=False)
    for ax, (size, clips) in zip(axes[:, 0], shown.items()):
        frame_strip(torch.stack([clip for _, clip in clips]), every=2, titles=[label for label, _ in clips], ax=ax)
        ax.set_title(f"{size[0]} frames, {size[1]}x{size[2]}", fontsize=9, loc="left")
    with atomic_path(strip) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    strip = str(strip.relative_to(RESULTS.parent.parent))
    kept_models = list(dict.fromkeys(row["model"] for row in kept))
    earlier = stored.get("strips") or ([{"path": stored["strip"], "models": kept_models}] if "strip" in stored and kept else [])
    strips = [{"path": s["path"], "models": [m for m in s["models"] if m in kept_models]} for s in earlier if s["path"] != strip]
    strips = [s for s in strips if s["models"]] + [{"path": strip, "models": list(paths)}]
    return {"models": {**stored.get("models", {}), **paths}, "buckets": [list(s) for s in MULTISIZE_BUCKETS],
            "rows": rows + kept, "strips": strips}


def _multisize_row(model, info, name, size, trained, time_scale, clips, references, real_data, window, evaluator) -> dict:
    """One row of ``multisize``'s table (with its clips under "video"); fills ``references``."""
    if size not in references:
        real, floor = (generate_sized_clips(clips, real_data, frames=size[0], height=size[1], width=size[2],
                                            generator=torch.Generator().manual_seed(seed)).video for seed in (0, 1))
        features = video_features(evaluator, evaluator_window(real, **window)) if size[0] >= window["frames"] else None
        references[size] = (real, features, _size_scores(floor, features, evaluator))
    _, features, floor_scores = references[size]
    started = time.process_time()
    video = _draw_sized(model, info, size, clips, time_scale=time_scale)
    row = {"model": name, "size": list(size), "seen": size in trained, "tokens": model.tokens_per_clip(*size),
           "time_scale": time_scale, "clips": clips, "sample_cpu_s": time.process_time() - started, "load_average": load_average(),
           "videos": _size_scores(video, features, evaluator), "real": floor_scores}
    print(row, flush=True)
    return {**row, "video": video}


def _asked_digit(video, evaluator, asked) -> float:
    """The share of frames of one-digit clips ``video`` whose evaluator class is the label
    ``asked`` ``(N,)`` the clip was drawn for (a vanished digit counts as a miss)."""
    tracks = track_digits(video, 1)
    seen = torch.isfinite(tracks.centres).all(-1)[..., 0]  # (N, T)
    classes = frame_classes(video, evaluator, tracks)[..., 0]  # (N, T)
    return ((classes == asked[:, None]) & seen).float().mean().item()


def identity(args) -> dict:
    """Identity persistence split into what it counts: frames left out ("skip"), the same
    score with left-out frames and never-clean clips as failures ("miss"), the share of
    frames whose digit vanished, and how often a frame's class is the digit asked for."""
    evaluator = _evaluator()
    rows = []
    real = generate_clips(args.clips, MovingMNISTConfig.cpu(split="test"), generator=torch.Generator().manual_seed(0))
    sources = [("real clips", None)] + [(name, name) for name in args.models]
    for name, checkpoint_name in sources:
        if checkpoint_name is None:
            video, asked = real.video, real.labels[:, 0]
        else:
            checkpoint = load_checkpoint(CHECKPOINT_DIR / f"{checkpoint_name}.safetensors")
            info = checkpoint.metadata
            video = _draw_sized(build_model(checkpoint), info, (info["sample_shape"][0], *info["sample_shape"][2:]), args.clips)
            asked = torch.arange(args.clips) % 10
        tracks = track_digits(video, 1)
        skip = identity_persistence(video, evaluator, 1, tracks=tracks)
        seen = torch.isfinite(tracks.centres).all(-1)[..., 0]  # (N, T)
        rows.append({"source": name, "clips": len(video), "identity_skip": skip.nanmean().item(),
                     "identity_miss": identity_persistence(video, evaluator, 1, tracks=tracks, left_out="miss").mean().item(),
                     "left_out": identity_left_out(video, 1, tracks=tracks).mean().item(), "nan_clips": int(skip.isnan().sum()),
                     "vanished_frames": (~seen).float().mean().item(),
                     "asked_digit_frames": _asked_digit(video, evaluator, asked)})
        print(rows[-1], flush=True)
    frames = real.video.shape[1]
    return {"rows": rows, "load_average": load_average(), "frames": frames,
            "chance_identity": (1 + (frames - 1) / 10) / frames}


def _fraction(text: str) -> float:
    """A number in [0, 1] (0: off)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a fraction in [0, 1] of the run (0: no cooldown)")
    return value


def _interval(text: str) -> tuple[float, float]:
    """ "LOW-HIGH" -> (low, high), checked as the sampler checks it."""
    try:
        return check_guidance_interval(tuple(float(v) for v in text.split("-")))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def guidance(args) -> dict:
    """Each checkpoint of ``--models`` at each guidance scale of ``--scales`` and guidance interval
    of ``--intervals`` ("LOW-HIGH": the times guided), from its own start
    noise and from each ``--start-mix`` (``frame_noise``'s mix; "model" is its own): ``--clips``
    clips (digits 0-9 in turn, seed 0, the checkpoint's sampler and steps), scored as the pilots
    plus the fitted speed (real clips in ``real_speed_px``)."""
    evaluator = _evaluator()
    rows = []
    for entry in args.models:
        name, _, path = entry.partition("=")
        checkpoint = load_checkpoint(path or CHECKPOINT_DIR / f"{name}.safetensors")
        model, info = build_model(checkpoint).eval(), checkpoint.metadata
        shape, digit_size, asked = (args.clips, *info["sample_shape"]), info["data"]["digit_size"], torch.arange(args.clips) % 10
        for mix, scale, interval in itertools.product(args.start_mix, args.scales, args.intervals):
            generator = seed_everything(0)
            noise = None if mix == "model" else frame_noise(shape, mix=float(mix), generator=generator)
            video = to_unit_range(sample(model, shape, sampler=info["sampler"], steps=info["sample_steps"], cond=asked,
                                         guidance_scale=scale, guidance_interval=interval, noise=noise, generator=generator,
                                         progress=False))
            rows.append({"model": name, "trained_mix": noise_mix_of(model), "start_mix": mix if mix == "model" else float(mix),
                         "guidance": scale, "guidance_interval": list(interval), **_scores(video, evaluator, digit_size),
                         "asked_digit": _asked_digit(video, evaluator, asked), "speed_px": _speed(video, digit_size)})
            print(rows[-1], flush=True)
    real = generate_clips(args.clips, MovingMNISTConfig.cpu(split="test"), generator=torch.Generator().manual_seed(0)).video
    return {"rows": rows, "clips": args.clips, "real_speed_px": _speed(real, MovingMNISTConfig.cpu().digit_size),
            "real_identity": identity_persistence(real, evaluator, 1).nanmean().item(), "load_average": load_average()}


def _motion_row(source: str, video, tubelet: int | None, digit_size: int) -> dict:
    """Where one-digit clips ``video`` lose their physics score: the ink centre's step (px) from
    frame to frame, split as 2-frame tokens split a clip -- inside a pair (frame 0 -> 1, 2 -> 3, ...)
    and across two pairs (1 -> 2, 3 -> 4, ...), whatever the model's own ``tubelet`` (recorded) --
    the fitted law's speed, and the residual's spread over clips."""
    scores = physics_scores(video, 1, digit_size)
    centres = track_digits(video, 1).centres[:, :, 0]  # (N, T, 2)
    steps = (centres[:, 1:] - centres[:, :-1]).norm(dim=-1)  # (N, T-1): step i goes from frame i to i + 1
    residual = scores.residual_px[torch.isfinite(scores.residual_px)]
    return {"source": source, "clips": len(video), "tubelet": tubelet, "step_inside_px": steps[:, 0::2].nanmean().item(),
            "step_across_px": steps[:, 1::2].nanmean().item(), "speed_px": _speed(video, digit_size),
            "physics_px": residual.mean().item(), "physics_median_px": residual.median().item(),
            "physics_p90_px": residual.quantile(0.9).item(), "shape_change": shape_change(video).mean().item()}


def motion(args) -> dict:
    """Each checkpoint of ``--models`` (clips drawn at its recorded settings) and real clips, read
    as the physics score reads them, the steps split by 2-frame pairs (see :func:`_motion_row`)."""
    rows = []
    for entry in args.models:
        name, _, path = entry.partition("=")
        checkpoint = load_checkpoint(path or CHECKPOINT_DIR / f"{name}.safetensors")
        model, info = build_model(checkpoint).eval(), checkpoint.metadata
        video = _draw_sized(model, info, (info["sample_shape"][0], *info["sample_shape"][2:]), args.clips)
        tubelet = model.config.patch[0] if hasattr(model.config, "patch") else 1
        rows.append(_motion_row(name, video, tubelet, info["data"]["digit_size"]))
        print(rows[-1], flush=True)
    real = generate_clips(args.clips, MovingMNISTConfig.cpu(split="test"), generator=torch.Generator().manual_seed(0)).video
    rows.insert(0, _motion_row("real clips", real, None, MovingMNISTConfig.cpu().digit_size))
    return {"rows": rows, "load_average": load_average()}


def write_report(results: dict) -> None:
    path = RESULTS / "dit.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored.update(results)
    stored["machine"] = machine_info()
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(stored, indent=1) + "\n")
    m = stored["machine"]
    lines = ["# The video DiT on a CPU", "",
             f"Machine: {m['cpu']}, {m['cores']} cores (shared with other jobs: the load average is given with each table), "
             f"torch {m['torch']}. One torch thread unless stated.", ""]
    for key in ["flops", *sorted(k for k in stored if k.startswith("flops_"))]:
        if key not in stored:
            continue
        f = stored[key]
        lines += [f"## Training-step FLOP/s against the matmul peak{'' if key == 'flops' else ' (' + key[len('flops_'):] + ')'}", "",
                  f"{f['model']}; FLOPs from `FlopCounterMode` (forward + backward; attention counted on `naive_attention`, "
                  "whose matmuls the counter sees), the peak from a 1024² fp32 matmul in the same "
                  f"process, {f['threads']} thread(s), load average {f['load_average']}.", "",
                  "| step GFLOP | s/step | achieved GFLOP/s | matmul peak GFLOP/s | fraction of peak |", "|---:|---:|---:|---:|---:|",
                  f"| {f['step_gflop']:.2f} | {f['step_s']:.3f} | {f['achieved_gflops']:.1f} | {f['matmul_peak_gflops']:.1f} | {f['fraction_of_peak']:.0%} |",
                  "", "Where the step's operator time goes (`torch.profiler`, self CPU time):", "",
                  "| kind | share |", "|---|---:|"]
        lines += [f"| {kind} | {share:.0%} |" for kind, share in f["time_shares"].items()]
        lines.append("")
    for key in ["budgets", *sorted(k for k in stored if k.startswith("budgets_"))]:
        if key not in stored:
            continue
        name = stored[key].get("preset") or "dit-cpu"
        shipped = key == "budgets" or name in {entry["name"] for entry in read_manifest()["checkpoints"]}
        lines += [f"## Samples at fixed CPU training budgets ({name}, from scratch{'' if shipped else ', a trial recipe: not shipped'})", "",
                  f"Run `{stored[key]['run']}`. "
                  "Measured exactly as `bench_unet3d.py budgets` measures `video-cpu` (see `unet3d.md` for the definitions): "
                  f"{CLIPS} clips ({PER_DIGIT} of each digit), seed 0, the preset's sampler; strips show digits 0-4. "
                  f"Training minutes: {stored[key].get('clock', 'the trainer' + chr(39) + 's own clock')}, one torch thread.", "",
                  "| budget | step | training min | load avg | frame difference | flicker | identity | shape change | physics (px) | dynamic | strip |",
                  "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for row in stored[key]["rows"]:
            budget = "real clips" if row["budget_min"] is None else f"{row['budget_min']} min"
            lines.append(f"| {budget} | {row['step'] or ''} | {'' if row['train_min'] is None else format(row['train_min'], '.1f')} | "
                         f"{row['load_average']} | {row['frame_difference']:.4f} | {row['flicker']:.4f} | "
                         f"{'n/a' if row['identity_persistence'] is None else format(row['identity_persistence'], '.2f')} | "
                         f"{row['shape_change']:.2f} | {row['physics_px']:.2f} | {row['dynamic_degree']:.2f} | "
                         f"[{Path(row['strip']).name}]({Path(row['strip']).name}) |")
        lines.append("")
    if "layouts" in stored:
        lay = stored["layouts"]
        lines += ["## Layouts at about equal parameters", "",
                  f"dit-cpu's width, each trained {lay['seconds']:.0f} s of wall clock from the same seed, one after the other "
                  f"(load average at the end {lay['load_average']}). Memory: tensors autograd keeps for the backward pass, batch 8.", "",
                  "| layout | blocks | params | GFLOP/step | s/step | steps | saved for backward (MB) | loss (last 50 steps) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in lay["rows"]:
            lines.append(f"| {r['layout']} | {r['depth']} | {r['params']:,} | {r['step_gflop']:.2f} | {r['s_per_step']:.3f} | "
                         f"{r['steps']} | {r['saved_for_backward_mb']:.0f} | {r['loss_last_50']:.4f} |")
        lines.append("")
    if "packing" in stored:
        p = stored["packing"]
        lines += ["## Packing vs padding vs buckets", "",
                  f"One forward + backward of the dit-cpu model on {len(p['clips'])} clips of 6 sizes "
                  f"({p['real_tokens']} real tokens); load average {p['load_average']}.", "",
                  "| method | tokens computed | wasted | s/step |", "|---|---:|---:|---:|"]
        for r in p["rows"]:
            lines.append(f"| {r['method']} | {r['tokens']} | {r['wasted_tokens']:.0%} | {r['s_per_step']:.3f} |")
        lines.append("")
    if "scaling" in stored:
        s = stored["scaling"]
        lines += ["## A mini scaling study", "",
                  f"Widths {', '.join(str(r['dim']) for r in s['rows'])} of the dit-cpu model (depth and patch fixed"
                  f"{'; ' + ', '.join(s['changes']) if s.get('changes') else ''}), {s['seconds']:.0f} s of training each, "
                  f"one after the other (load average at the end {s['load_average']}). Plot: [dit_scaling.png](dit_scaling.png).", "",
                  "| width | params | steps | training TFLOP | loss (last 50) | identity | shape change | physics (px) | strip |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in s["rows"]:
            lines.append(f"| {r['dim']} | {r['params']:,} | {r['steps']} | {r['train_pflop'] * 1e3:.2f} | {r['loss_last_50']:.4f} | "
                         f"{'n/a' if r['identity_persistence'] is None else format(r['identity_persistence'], '.2f')} | "
                         f"{r['shape_change']:.2f} | {r['physics_px']:.2f} | [{Path(r['strip']).name}]({Path(r['strip']).name}) |")
        lines.append("")
    pilots = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("dit_pilot_*.json"))]
    if pilots:
        lines += ["## Recipe pilots", "",
                  "Short runs of the dit-cpu preset with the changes shown (`bench_dit.py pilot`), one torch thread each "
                  "(s/step and train min on the clock named by the pilot: wall, or CPU with `--cpu`), "
                  f"scored on the EMA weights exactly as the budget table ({CLIPS} draws, seed 0, the preset's sampler); 'asked digit': "
                  "the share of frames the evaluator reads as the digit the clip was drawn for (chance 0.10; n/a: not measured); speed: "
                  "px a frame of the motion law fitted to each clip (real clips about 2; n/a: pilots before it was measured).", "",
                  "| pilot | changes | tokens/clip | params | s/step | steps | train min | load avg | loss (last 50) | identity | asked digit | shape change | physics (px) | speed px/frame | flicker | strip |",
                  "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in pilots:
            lines.append(f"| {r['name']}{' (CPU clock)' if r.get('clock', '').startswith('CPU') else ''} | {', '.join([*r['changes'], *([] if r.get('base', 'dit-cpu') == 'dit-cpu' else ['preset ' + r['base']])]) or '(none)'} | {r['tokens_per_clip']} | {r['params']:,} | "
                         f"{r['s_per_step']:.3f} | {r['steps']} | {r['train_s'] / 60:.1f} | {r['load_average']} | {r['loss_last_50']:.4f} | "
                         f"{'n/a' if r['identity_persistence'] is None else format(r['identity_persistence'], '.2f')} | "
                         f"{format(r['asked_digit'], '.2f') if 'asked_digit' in r else 'n/a'} | "
                         f"{r['shape_change']:.2f} | {r['physics_px']:.2f} | {format(r['speed_px'], '.2f') if 'speed_px' in r else 'n/a'} | "
                         f"{r['flicker']:.4f} | [{Path(r['strip']).name}]({Path(r['strip']).name}) |")
        lines.append("")
    probes = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("dit_frames_*.json"))]
    if probes:
        lines += ["## Predicting the clean clip: single-frame probes", "",
                  "Each model trained on single 32x32 frames (one 16-px digit) for the same CPU seconds (`bench_dit.py frames NAME "
                  "--base PRESET --seconds S --set ...`; a DiT's patch becomes 1x4x4), one torch thread, then "
                  f"{FRAME_DRAWS} frames drawn (digits 0-9 in turn, seed 0, the preset's sampler and guidance) and read by the "
                  "evaluator: 'asked digit' is the share showing the digit asked for (chance 0.10; standard error about 0.03). "
                  "Loss: the training loss of the last 50 steps; with prediction x it is still the velocity's MSE.", "",
                  "| probe | model | changes | steps | CPU s | load avg | loss (last 50) | asked digit | strip |",
                  "|---|---|---|---:|---:|---|---:|---:|---|"]
        for r in probes:
            lines.append(f"| {r['name']} | {r['base']} ({r['model']}) | {', '.join(r['changes']) or '(none)'} | {r['steps']} | "
                         f"{r['train_s']:.0f} | {r['load_average']} | {r['loss_last_50']:.4f} | {r['asked_digit']:.2f} | "
                         f"[{Path(r['strip']).name}]({Path(r['strip']).name}) |")
        lines.append("")
    for key in sorted(k for k in stored if k == "guidance" or k.startswith("guidance_")):
        gd = stored[key]
        lines += [f"## Sampling settings: guidance and shared start noise ({key})", "",
                  f"`bench_dit.py guidance`: {gd['clips']} clips per row (digits 0-9 in turn, seed 0, each checkpoint's sampler and "
                  "steps) at the guidance scale shown, from start noise whose frames share a part (`frame_noise`'s mix; 'model': the "
                  "noise the model trained on, its `noise_mix`). Speed: px a frame of the motion law fitted to each clip (the physics "
                  f"score's bounce fit); real clips move {gd['real_speed_px']:.2f} px a frame and keep their identity "
                  f"{gd['real_identity']:.2f}. A slower digit makes physics easier: read the two together. Load average {gd['load_average']}.", "",
                  "| model | trained mix | start mix | guidance | guided t | identity | asked digit | physics (px) | speed px/frame | shape change | flicker |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in gd["rows"]:
            low, high = r.get("guidance_interval", GUIDE_EVERY_CALL)  # rows made before intervals existed guided every call
            lines.append(f"| {r['model']} | {r['trained_mix']:g} | {r['start_mix']} | {r['guidance']:g} | {low:g}-{high:g} | {r['identity_persistence']:.2f} | "
                         f"{r['asked_digit']:.2f} | {r['physics_px']:.2f} | {r['speed_px']:.2f} | {r['shape_change']:.2f} | {r['flicker']:.4f} |")
        lines.append("")
    for key in sorted(k for k in stored if k == "motion" or k.startswith("motion_")):
        mo = stored[key]
        lines += [f"## Where the physics residual comes from ({key})", "",
                  "`bench_dit.py motion`: each checkpoint's clips (digits 0-9 in turn, seed 0, its recorded sampler and guidance) "
                  "read as the physics score reads them. Step: the distance (px) the ink centre moves from one frame to the next, "
                  "averaged over the steps inside a pair of frames (0-1, 2-3, ...: one token for a 2-frame tubelet) and across two "
                  "pairs (1-2, 3-4, ...), for every source alike (tubelet: the model's own, 1 for the U-Net and 1-frame patches). "
                  "Speed: the fitted motion law's. "
                  f"Residual: the physics score's per-clip RMS distance from that law. Load average {mo['load_average']}.", "",
                  "| source | clips | tubelet | step inside a pair px | step across pairs px | fitted speed px | residual mean px | median | 90th pct | shape change |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mo["rows"]:
            lines.append(f"| {r['source']} | {r['clips']} | {r['tubelet'] or '-'} | {r['step_inside_px']:.2f} | {r['step_across_px']:.2f} | "
                         f"{r['speed_px']:.2f} | {r['physics_px']:.2f} | {r['physics_median_px']:.2f} | {r['physics_p90_px']:.2f} | "
                         f"{r['shape_change']:.2f} |")
        lines.append("")
    if "sampling" in stored:
        sm = stored["sampling"]
        lines += ["## Sampling time, 8 clips", "", f"Best of a few runs (after a warm-up) at each model's default sampler, steps, "
                  f"guidance and guided t (a call outside the interval is one unguided call, half a guided one), 8 labels at once (load average {sm['load_average']}). Latent models: the clips' latents are sampled, "
                  "then decoded to pixels by the VAE, and the time counts both.", "",
                  "| model | space | weights | sampler | steps | guidance | guided t | threads | seconds |", "|---|---|---|---|---:|---:|---|---:|---:|"]
        for r in sm["rows"]:
            low, high = r.get("guidance_interval", GUIDE_EVERY_CALL)  # rows made before intervals existed guided every call
            lines.append(f"| {r['model']} | {r.get('space', 'pixels')} | {r.get('weights', 'shipped')} | {r['sampler']} | {r['steps']} | "
                         f"{r['guidance']} | {low:g}-{high:g} | {r['threads']} | {r['seconds_8_clips']:.2f} |")
        lines.append("")
    for key in sorted(k for k in stored if k == "multisize" or k.startswith("multisize_")):
        ms = stored[key]
        title = "One model, many sizes" if key == "multisize" else f"Many sizes, pilots ({key.removeprefix('multisize_')})"
        speed = any("speed_px" in r["videos"] for r in ms["rows"])  # a column since ms7: older tables have none
        interpolated = "" if all(r.get("time_scale", 1.0) == 1.0 for r in ms["rows"]) else (
            f"Rows '{INTERPOLATED.removeprefix(', ')}': sampled with the frame positions (sin-cos table and RoPE) scaled by the "
            "longest trained clip's frames over the asked frames, so that they fall inside the range training saw ("
            + ", ".join(sorted({f"x{r['time_scale']:.2f} at {r['size'][0]} frames" for r in ms["rows"] if r.get("time_scale", 1.0) != 1.0}))
            + "; position interpolation, Chen et al. 2023: `VideoDiT.forward(time_scale=...)`, `multisize --interpolate`). ")
        strips = ("Strips (digit 3 at each size, every other frame): " + ", ".join(
            f"[{Path(s['path']).name}]({Path(s['path']).name}) ({'; '.join(s['models'])})" for s in ms["strips"]) + "."
                  if "strips" in ms else f"Strip: [{Path(ms['strip']).name}]({Path(ms['strip']).name}) (digit 3 at each size, every other frame).")
        lines += [f"## {title}", "",
                  f"Checkpoints: {', '.join(f'{name} (`{path}`)' for name, path in ms.get('models', {}).items())}. The multisize presets "
                  f"train on bucketed batches of {len(ms['buckets'])} sizes (T x H x W: {', '.join('x'.join(map(str, b)) for b in ms['buckets'])}). "
                  "At each size the row's clips (digits 0-9 in turn, seed 0, the checkpoint's sampler) against as many real clips of "
                  "that size (test digits); a second real set gives the floor in brackets. KID and Fréchet: generated and real clips "
                  "through the evaluator window (first 10 frames, the 32x32 square around the digit's path, zero-padded below 32 px), "
                  "n/a for clips under 10 frames; Fréchet needs more clips than the evaluator's 64 feature dimensions (n/a with 64 clips or fewer). "
                  f"Background: the mean brightness of each frame's background (`vdmcourse.multisize.background_level`; real clips about 0), "
                  f"over the first {max(b[0] for b in ms['buckets'])} frames (the longest clips trained) and after them. "
                  + ("Speed: px a frame of the motion law fitted to each clip (the physics score's bounce fit, so the ink centre's "
                     "jitter does not count; real clips in brackets). " if speed else "")
                  + interpolated + strips, "",
                  ("| model | T x H x W | in training | tokens | clips | identity | physics px | digit count | flicker | shape change | "
                   f"background | background late | KID | Fréchet | {'speed px/frame | ' if speed else ''}sample CPU s | load avg |"),
                  f"|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{'---:|' if speed else ''}---:|---|"]

        def both(row, key, spec):
            value, floor = row["videos"].get(key), row["real"].get(key)
            return "n/a" if value is None else f"{value:{spec}} ({floor:{spec}})"

        for r in ms["rows"]:
            lines.append(f"| {r['model']} | {'x'.join(map(str, r['size']))} | {'seen' if r['seen'] else '**never seen**'} | {r['tokens']} | "
                         f"{r.get('clips', ms.get('clips'))} | {both(r, 'identity', '.2f')} | {both(r, 'physics_px', '.2f')} | {both(r, 'digit_count', '.2f')} | "
                         f"{both(r, 'flicker', '.4f')} | {both(r, 'shape_change', '.2f')} | {both(r, 'background', '.4f')} | "
                         f"{both(r, 'background_late', '.4f')} | {both(r, 'kid', '.2f')} | {both(r, 'frechet', '.1f')} | "
                         f"{both(r, 'speed_px', '.2f') + ' | ' if speed else ''}"
                         f"{r['sample_cpu_s']:.0f} | {r.get('load_average', ms.get('load_average'))} |")
        lines.append("")
    if "identity" in stored:
        ident = stored["identity"]
        lines += ["## What identity persistence counts", "",
                  "`identity_persistence` counts a digit's clean frames (kept class or not) and the frames where it vanished "
                  "(misses); it leaves out frames where the digit is seen but touches another digit, and a clip with no clean frame "
                  "is NaN (dropped from the mean). 'miss' counts both as failures instead. 'asked digit' is the share of frames whose "
                  "evaluator class is the label the clip was drawn for. "
                  f"A clip whose per-frame class were random would score {ident['chance_identity']:.2f} "
                  f"(the first clean frame always matches itself; {ident['frames']} frames). Load average {ident['load_average']}.", "",
                  "| source | clips | identity (skip: shipped) | identity (miss) | frames left out | NaN clips | vanished frames | asked digit |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ident["rows"]:
            lines.append(f"| {r['source']} | {r['clips']} | {r['identity_skip']:.3f} | {r['identity_miss']:.3f} | {r['left_out']:.3f} | "
                         f"{r['nan_clips']} | {r['vanished_frames']:.3f} | {r['asked_digit_frames']:.3f} |")
        lines.append("")
    if stored.get("notes"):
        lines += ["## What we see", "", stored["notes"], ""]
    with atomic_path(RESULTS / "dit.md") as tmp:
        tmp.write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    flops_parser = sub.add_parser("flops")
    flops_parser.add_argument("--steps", type=int, default=5)
    flops_parser.add_argument("--preset", default="dit-cpu", help="the DiT preset whose step is measured (table flops, or flops_NAME)")
    sub.add_parser("layouts").add_argument("--seconds", type=float, default=120.0)
    scaling_parser = sub.add_parser("scaling")
    scaling_parser.add_argument("--seconds", type=float, default=120.0)
    scaling_parser.add_argument("--dims", type=int, nargs="+", default=[32, 64, 96], help="the widths compared (4 heads each)")
    scaling_parser.add_argument("--set", nargs="*", default=[], help="key=value changes to dit-cpu shared by every width (as pilot)")
    sub.add_parser("packing").add_argument("--repeats", type=int, default=3)
    sampling_parser = sub.add_parser("sampling")
    sampling_parser.add_argument("--repeats", type=int, default=3)
    sampling_parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads of each pass")
    budgets_parser = sub.add_parser("budgets")
    budgets_parser.add_argument("run")
    budgets_parser.add_argument("--label", default="", help="a trial recipe's run: stored as budgets_LABEL, strips dit_LABEL_samples_*.png")
    budgets_parser.add_argument("--preset", default="dit-cpu", help="the preset the run trained (shown in the table)")
    budgets_parser.add_argument("--cpu-s-per-step", type=float, help="budgets in CPU minutes: the run's measured CPU seconds per step")
    budgets_parser.add_argument("--cpu-clock", action="store_true", help="budgets in CPU minutes of the trainer's own CPU clock (a --cpu-minutes run)")
    frames_parser = sub.add_parser("frames", help="a single-frame probe of a preset's model (results/dit_frames_NAME.json)")
    frames_parser.add_argument("name")
    frames_parser.add_argument("--base", default="dit-cpu")
    frames_parser.add_argument("--seconds", type=float, default=300.0, help="CPU seconds of training")
    frames_parser.add_argument("--set", nargs="*", default=[], help="key=value changes, as pilot")
    pilot_parser = sub.add_parser("pilot", help="a short run of dit-cpu with changes (results/dit_pilot_NAME.json)")
    pilot_parser.add_argument("name")
    pilot_parser.add_argument("--base", default="dit-cpu")
    pilot_parser.add_argument("--seconds", type=float, default=210.0)
    pilot_parser.add_argument("--set", nargs="*", default=[], help="key=value changes to the model config, TrainConfig or preset")
    pilot_parser.add_argument("--cpu", action="store_true", help="--seconds of this process's CPU time, not wall time (shared machines)")
    pilot_parser.add_argument("--save", default="", help="also save the pilot's EMA model to this .safetensors path")
    pilot_parser.add_argument("--cooldown", type=_fraction, default=0.0, help="the learning rate falls linearly to 0 over the last this fraction of --seconds")
    multisize_parser = sub.add_parser("multisize", help="models at sizes they saw and never saw")
    multisize_parser.add_argument("--models", nargs="+", default=["dit-multisize-cpu"],
                                  help="shipped checkpoint names, or NAME=PATH (e.g. a pilot's --save)")
    multisize_parser.add_argument("--sizes", type=lambda text: tuple(int(v) for v in text.split("x")), nargs="+",
                                  default=MULTISIZE_SEEN + MULTISIZE_UNSEEN, help="TxHxW, e.g. 10x40x40")
    multisize_parser.add_argument("--clips", type=int, default=100, help="clips per size (the Fréchet distance needs more than 64)")
    multisize_parser.add_argument("--key", default="multisize", help="the table: multisize (the models) or multisize_NAME (pilots)")
    multisize_parser.add_argument("--interpolate", action="store_true",
                                  help="also sample sizes longer than a model's training clips with time positions squeezed into them")
    identity_parser = sub.add_parser("identity", help="what identity persistence counts, on shipped models' samples")
    identity_parser.add_argument("--clips", type=int, default=60)
    identity_parser.add_argument("--models", nargs="+", default=["dit-cpu", "video-cpu"])
    guidance_parser = sub.add_parser("guidance", help="checkpoints at other guidance scales and shared start noise")
    guidance_parser.add_argument("--models", nargs="+", default=["dit-joint-x-cpu"], help="shipped names or NAME=PATH")
    guidance_parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0, 7.0])
    guidance_parser.add_argument("--start-mix", nargs="+", default=["model"], help="frame_noise mixes, or 'model' (its own noise)")
    guidance_parser.add_argument("--intervals", type=_interval, nargs="+", default=[GUIDE_EVERY_CALL], metavar="LOW-HIGH",
                                 help="guidance intervals: the times whose model calls are guided (default 0-1: all)")
    guidance_parser.add_argument("--clips", type=int, default=100)
    guidance_parser.add_argument("--key", default="guidance", help="the table: guidance or guidance_NAME")
    motion_parser = sub.add_parser("motion", help="where the physics residual comes from, token frame by token frame")
    motion_parser.add_argument("--models", nargs="+", default=["dit-joint-x3-cpu", "dit-joint-x4-cpu"], help="shipped names or NAME=PATH")
    motion_parser.add_argument("--clips", type=int, default=100)
    motion_parser.add_argument("--key", default="motion", help="the table: motion or motion_NAME")
    sub.add_parser("note", help="set the closing note of the report").add_argument("text")
    args = parser.parse_args(argv)
    if args.command == "note":
        write_report({"notes": args.text})
        return 0
    if args.command in ("pilot", "frames"):  # its own json (they run side by side); the report gathers them
        {"pilot": pilot, "frames": frames}[args.command](args)
        write_report({})
        return 0
    run = {"flops": flops, "layouts": layouts, "packing": packing, "scaling": scaling, "sampling": sampling, "budgets": budgets,
           "multisize": multisize, "identity": identity, "guidance": guidance, "motion": motion}[args.command]
    key = f"budgets_{args.label}" if args.command == "budgets" and args.label else args.key if args.command in ("multisize", "guidance", "motion") else args.command
    if args.command == "flops" and args.preset != "dit-cpu":
        key = f"flops_{args.preset}"
    write_report({key: run(args)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
