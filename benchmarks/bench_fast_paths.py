"""The fast paths on the course's CPU models: bf16 autocast, channels-last, torch.compile;
bf16 against fp32 on the shipped checkpoints; 2-process DistributedDataParallel against 1
process; and how close sampling the shipped video model comes to 8 clips in 2 s.

Four parts, each merged into benchmarks/results/fast_paths.json and fast_paths.md:

* **table** (default) -- for each shipped model (image-cpu, video-cpu, dit-cpu,
  latent-video-cpu), on one thread:

  - *sampling*: the time of one guided model call (the labels and the null label: a
    batch of 16 for 8 clips) in each configuration, the median of ``--repeats`` calls
    after one warm-up call (which also compiles). An emulated bf16 can be 20-30x
    slower than fp32, so a configuration whose first timed call takes more than twice
    fp32's is timed by that one call. Times the number of calls the preset's sampler
    makes (plus the VAE decode of a latent model) gives seconds per 8 clips (the
    sampler's own work is under 0.5 %: sampling.md). One full ``sample`` of 8 clips is
    timed for fp32 and for the fastest configuration without compile to check the
    product. FLOP/s: the call's FLOPs (``torch.utils.flop_counter``) over its time,
    against the fp32 matmul rate measured in the same run. Accuracy: the mean and max
    difference of the call's output from fp32's.
  - *training*: seconds per Trainer step of the preset (median of ``--steps`` steps
    after one warm-up step) in fp32, bf16, channels-last and bf16 + channels-last.
    ``torch.compile`` is timed for sampling only (the issue measured nothing from it
    in training, and compiling the backward pass takes minutes more).

* ``--quality`` -- bf16 against fp32 on the shipped checkpoints: ``--quality-clips``
  clips of each model at its own sampler, steps and guidance, from the same noise,
  sampled in fp32 and in bf16 (with channels-last for the convolutional models: the
  emulated bf16 convolutions are 4x faster that way, and channels-last alone moves
  outputs by 1e-5 only); the mean and max difference of the clips, and the per-clip
  metrics of both (:func:`vdmcourse.metrics.clip_metrics`).

* ``--ddp`` -- image-cpu training for ``--ddp-steps`` steps with ``python -m vdmcourse
  train`` (1 process, 1 thread; 1 process, 2 threads) and with ``torchrun
  --nproc_per_node=2`` (2 gloo processes, one thread each): clips per second of
  training time. Needs both cores: run it with nothing else running.

* ``--goal`` -- 8 clips of the shipped video-cpu (10x32x32) on ``--threads`` threads:
  full ``sample`` times with the fast paths and with cheaper sampler settings, the
  per-call time of cheaper attention layouts of lesson 05's UNet3D (random weights:
  speed does not depend on them), and ``evaluate_videos`` metrics (Fréchet, identity,
  physics, ...) of ``--goal-clips`` clips for each sampler setting.

    OMP_NUM_THREADS=1 python benchmarks/bench_fast_paths.py --compile    # one core
    OMP_NUM_THREADS=1 python benchmarks/bench_fast_paths.py --quality
    OMP_NUM_THREADS=1 python benchmarks/bench_fast_paths.py --ddp        # both cores, nothing else running
    OMP_NUM_THREADS=1 python benchmarks/bench_fast_paths.py --goal --threads 2   # both cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vdmcourse.course import seed_everything, to_unit_range
from vdmcourse.diffusion import model_evaluations, sample
from vdmcourse.diffusion.guidance import guided_output
from vdmcourse.fast_paths import bf16_benchmark, channels_last, compiled
from vdmcourse.presets import get_preset, load_latent_vae
from vdmcourse.pretrained import atomic_path, load_pretrained
from vdmcourse.train import Trainer, machine_info

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
CLIPS = 8
MODELS = ["image-cpu", "video-cpu", "dit-cpu", "latent-video-cpu"]
CONFIGS = {  # name: (bf16, channels_last, compile)
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "channels_last": (False, True, False),
    "bf16 + channels_last": (True, True, False),
    "compile": (False, False, True),
    "compile + channels_last": (False, True, True),
}
TRAINING_CONFIGS = {"fp32": (False, False), "bf16": (True, False), "channels_last": (False, True), "bf16 + channels_last": (True, True)}
# --goal: cheaper sampler settings of the shipped video model (the preset's own is heun, 10 steps)
SAMPLER_SETTINGS = [("heun", 10), ("euler", 10), ("heun", 5), ("euler", 8)]
METRIC_SETTINGS = SAMPLER_SETTINGS
# --goal-models: the shipped video model and its guidance-distilled student (one call per step)
GOAL_MODELS = ["video-cpu"]
# --goal: lesson 05's attention layouts, as UNet3DConfig fields over video-cpu's
LAYOUTS = {
    "video-cpu's: spacetime attention at 8x8, 4x4 and mid": {},
    "time-only attention (each pixel across frames) at every level": {"attention_span": "time"},
    "spacetime attention at 4x4 and mid only (none at 8x8)": {"temporal_attention_levels": (3,)},
    "spacetime attention in mid only": {"temporal_attention_levels": ()},
}


def matmul_rate() -> float:
    """fp32 FLOP/s of a 512 x 512 matmul on this process's threads (best of 20)."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    best = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * 512**3 / best


def model_shape(preset) -> tuple[int, ...]:
    """``(T, C, H, W)`` the diffusion model works on: pixels, or a latent model's latents."""
    return preset.latent_shape or preset.sample_shape


def guided_call(model, preset, bf16: bool, compile_: bool):
    x = torch.randn((CLIPS, *model_shape(preset)), generator=torch.Generator().manual_seed(0))
    t = torch.full((CLIPS,), 0.5)
    labels = torch.arange(CLIPS) % 10
    net = compiled(model) if compile_ else model

    def call():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return guided_output(net, x, t, labels, preset.guidance_scale).float()

    return call


def time_call(call, repeats: int, give_up: float = float("inf")) -> tuple[float, torch.Tensor, int]:
    """Median of ``repeats`` timed calls after a warm-up; one call if it took over ``give_up``."""
    out = call()  # warm-up (oneDNN kernels; compilation)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
        if times[-1] > give_up:
            break
    return statistics.median(times), out, len(times)


def draw(model, preset, clips: int, *, sampler=None, steps=None, bf16=False, fast=False, compile_=False, seed=0) -> torch.Tensor:
    """``clips`` clips, digit i % 10, at the preset's sampler settings unless given, in [0, 1]
    (a latent model's decoded through its VAE)."""
    latents = sample(model, (clips, *model_shape(preset)), objective=preset.objective, sampler=sampler or preset.sampler,
                     steps=steps or preset.sample_steps, cond=torch.arange(clips) % 10, guidance_scale=preset.guidance_scale,
                     generator=torch.Generator().manual_seed(seed), progress=False,
                     precision="bf16" if bf16 else "fp32", channels_last=fast, compile=compile_)
    if preset.vae is not None:
        with torch.no_grad():
            latents = load_latent_vae(preset.vae).decode_latents(latents)
    return to_unit_range(latents)


def timed_draw(*args, **kwargs) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    clips = draw(*args, **kwargs)
    return time.perf_counter() - started, clips


def decode_seconds(preset) -> float:
    """The VAE decode of 8 clips' latents (0 for a pixel model)."""
    if preset.vae is None:
        return 0.0
    vae = load_latent_vae(preset.vae)
    latents = torch.randn((CLIPS, *preset.latent_shape))
    with torch.no_grad():
        vae.decode_latents(latents)
        started = time.perf_counter()
        vae.decode_latents(latents)
    return time.perf_counter() - started


def sampling_rows(name: str, repeats: int, with_compile: bool, peak: float) -> list[dict]:
    preset = get_preset(name)
    model = load_pretrained(name, device="cpu").eval()
    calls = model_evaluations(preset.sampler, preset.sample_steps)
    decode = decode_seconds(preset)
    with FlopCounterMode(display=False) as counter:
        guided_call(model, preset, False, False)()
    flops = counter.get_total_flops()
    rows, reference, fp32_seconds = [], None, float("inf")
    for config, (bf16, fast, compile_) in CONFIGS.items():
        if compile_ and not with_compile:
            continue
        with channels_last(model, fast):
            seconds, out, timed = time_call(guided_call(model, preset, bf16, compile_), repeats, give_up=2 * fp32_seconds)
        if reference is None:
            reference, fp32_seconds = out, seconds
        difference = (out - reference).abs()
        row = {"model": name, "part": "sampling", "config": config, "s_per_call": seconds, "timed_calls": timed,
               "s_per_8_clips": seconds * calls + decode, "calls": calls, "decode_s": decode, "gflop_per_call": flops / 1e9,
               "gflop_per_s": flops / seconds / 1e9, "share_of_matmul_peak": flops / seconds / peak,
               "call_mean_diff": difference.mean().item(), "call_max_diff": difference.max().item()}
        rows.append(row)
        print(f"{name} sampling {config:24s} {seconds:.3f} s/call ({timed} timed)  {row['s_per_8_clips']:6.2f} s / 8 clips  "
              f"{flops / seconds / 1e9:5.1f} GFLOP/s  diff mean {row['call_mean_diff']:.1e} max {row['call_max_diff']:.1e}", flush=True)
    # One full sample of 8 clips, fp32 and the fastest configuration without compile, to check the product.
    fastest = min((r for r in rows if "compile" not in r["config"]), key=lambda r: r["s_per_call"])
    rows[0]["full_sample_s"], _ = timed_draw(model, preset, CLIPS)
    if fastest["config"] != "fp32":
        bf16, fast, _ = CONFIGS[fastest["config"]]
        fastest["full_sample_s"], _ = timed_draw(model, preset, CLIPS, bf16=bf16, fast=fast)
    print(f"{name} full sample of 8 clips: fp32 {rows[0]['full_sample_s']:.2f} s; {fastest['config']} {fastest['full_sample_s']:.2f} s", flush=True)
    return rows


def training_rows(name: str, steps: int) -> list[dict]:
    preset = get_preset(name)
    rows, fp32_seconds = [], float("inf")
    for config, (bf16, fast) in TRAINING_CONFIGS.items():
        torch.manual_seed(0)
        model = preset.model_class(preset.model_config)  # speed does not depend on the weights
        train = dataclasses.replace(preset.train, precision="bf16" if bf16 else "fp32")
        trainer = Trainer(model, preset.loss_fn(), preset.batches(), train, device="cpu", progress=False)
        with channels_last(trainer.model, fast):
            trainer.fit(1)  # warm-up step
            times = []
            for _ in range(steps):
                started = time.perf_counter()
                trainer.train_step()
                times.append(time.perf_counter() - started)
                if times[-1] > 2 * fp32_seconds:  # emulated bf16: one step says enough
                    break
        seconds = statistics.median(times)
        fp32_seconds = min(fp32_seconds, seconds)
        rows.append({"model": name, "part": "training", "config": config, "s_per_step": seconds, "timed_steps": len(times),
                     "clips_per_s": preset.batch_size / seconds, "batch": preset.batch_size})
        print(f"{name} training {config:22s} {seconds:.3f} s/step ({len(times)} timed)", flush=True)
    return rows


def _convolutional(model) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def quality_rows(name: str, clips: int) -> list[dict]:
    """bf16 against fp32 on ``clips`` clips of a shipped model, same noise."""
    from vdmcourse.metrics import clip_metrics, load_evaluator

    preset = get_preset(name)
    model = load_pretrained(name, device="cpu").eval()
    fast = _convolutional(model)
    fp32_s, fp32 = timed_draw(model, preset, clips)
    bf16_s, bf16 = timed_draw(model, preset, clips, bf16=True, fast=fast)
    difference = (bf16 - fp32).abs() * 2  # in the model range [-1, 1]
    row = {"model": name, "part": "quality", "config": "bf16 + channels_last" if fast else "bf16", "clips": clips,
           "sampler": preset.sampler, "steps": preset.sample_steps, "guidance": preset.guidance_scale,
           "mean_diff": difference.mean().item(), "max_diff": difference.max().item(),
           "share_over_0.1": (difference > 0.1).float().mean().item(), "fp32_s": fp32_s, "bf16_s": bf16_s}
    evaluator = load_evaluator()
    if preset.sample_shape[0] == evaluator.config.frames:  # an image model's single frames are not clips
        row["metrics_fp32"] = clip_metrics(fp32, evaluator, 1)
        row["metrics_bf16"] = clip_metrics(bf16, evaluator, 1)
    print(f"{name} {row['config']}: clips differ from fp32 by mean {row['mean_diff']:.1e} max {row['max_diff']:.2f} "
          f"({fp32_s:.0f} s fp32, {bf16_s:.0f} s bf16) {row.get('metrics_fp32', '')} {row.get('metrics_bf16', '')}", flush=True)
    return [row]


def ddp_rows(steps: int) -> list[dict]:
    rows = []
    for processes, threads in ((1, 1), (1, 2), (2, 1)):
        with tempfile.TemporaryDirectory() as tmp:
            launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                        if processes > 1 else [sys.executable])
            command = [*launcher, "-m", "vdmcourse", "train", "--preset", "image-cpu", "--steps", str(steps),
                       "--out", f"{tmp}/run", "--no-progress"]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
            started = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            record = json.loads(Path(f"{tmp}/run/run.json").read_text())
        clips = steps * get_preset("image-cpu").batch_size * processes
        rows.append({"model": "image-cpu", "part": "ddp", "config": f"{processes} process(es) x {threads} thread(s)", "processes": processes,
                     "threads": threads, "steps": steps, "clips": clips, "train_time_s": record["train_time_s"], "wall_s": wall,
                     "clips_per_s": clips / record["train_time_s"], "load_average_1min": os.getloadavg()[0]})
        print(f"DDP {rows[-1]['config']}: {steps} steps, {clips} clips in {record['train_time_s']:.1f} s of training "
              f"({wall:.1f} s wall): {rows[-1]['clips_per_s']:.1f} clips/s", flush=True)
    return rows


def _call_batch(model, clips: int = CLIPS) -> int:
    """Clips per model call of a guided draw: 2 x clips (labels and null label), or clips
    for a guidance-distilled model (one call)."""
    return clips if getattr(model, "guidance_distilled", False) else 2 * clips


def goal_rows(threads: int, repeats: int, models=GOAL_MODELS, settings=SAMPLER_SETTINGS, paths=None, layouts: bool = True) -> list[dict]:
    """8 clips of each of ``models`` (shipped video checkpoints): fast paths and sampler
    settings (each model at its preset's own setting in every path of ``paths``, the other
    ``settings`` compiled + channels-last only); attention layouts of video-cpu."""
    from vdmcourse.nn.unet3d import UNet3D

    torch.set_num_threads(threads)
    paths = paths or ["fp32", "channels_last", "compile + channels_last"]
    rows = []
    for name in models:
        preset = get_preset(name)
        weights = "shipped"
        try:
            model = load_pretrained(name, device="cpu").eval()
        except ValueError:  # not shipped (yet): the preset's model as built (its speed does not depend on the weights)
            model, weights = preset.build_model().eval(), "as built by the preset (not trained; speed only)"

        def timed(sampler, steps, fast, compile_):
            times = [timed_draw(model, preset, CLIPS, sampler=sampler, steps=steps, fast=fast, compile_=compile_)[0] for _ in range(repeats)]
            return statistics.median(times)

        started = time.perf_counter()
        with channels_last(model):
            draw(model, preset, CLIPS, steps=1, sampler="euler", fast=True, compile_=True)  # compiles
        compile_s = time.perf_counter() - started
        for sampler, steps in [(preset.sampler, preset.sample_steps)] + [s for s in settings if s != (preset.sampler, preset.sample_steps)]:
            for path in paths:
                fast, compile_ = {"fp32": (False, False), "channels_last": (True, False), "compile + channels_last": (True, True)}[path]
                if (sampler, steps) != (preset.sampler, preset.sample_steps) and path != "compile + channels_last":
                    continue  # the cheaper settings with the fastest path only
                load_before = os.getloadavg()[0]
                seconds = timed(sampler, steps, fast, compile_)
                rows.append({"model": name, "part": "goal", "config": path, "sampler": sampler, "steps": steps,
                             "calls": model_evaluations(sampler, steps), "call_batch": _call_batch(model), "s_per_8_clips": seconds,
                             "threads": threads, "compile_s": compile_s if compile_ else None, "weights": weights,
                             "load_before": load_before, "load_after": os.getloadavg()[0]})
                print(f"goal {name} {sampler} {steps:2d} steps {path:24s} {seconds:.2f} s / 8 clips ({threads} threads, "
                      f"load {load_before:.1f} -> {rows[-1]['load_after']:.1f})", flush=True)
    if not layouts:
        return rows
    preset = get_preset("video-cpu")
    x = torch.randn((2 * CLIPS, *preset.sample_shape))
    t, labels = torch.full((2 * CLIPS,), 0.5), torch.arange(2 * CLIPS) % 10  # one guided call's batch, as one call
    for layout, fields in LAYOUTS.items():
        torch.manual_seed(0)
        net = UNet3D(dataclasses.replace(preset.model_config, **fields)).eval()
        with torch.no_grad(), channels_last(net):
            seconds, _, _ = time_call(lambda: net(x, t, cond=labels), 3)
        rows.append({"model": "video-cpu", "part": "layout", "config": layout, "fields": {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
                     "s_per_call": seconds, "threads": threads, "parameters": sum(p.numel() for p in net.parameters()),
                     "s_per_8_clips_heun10": seconds * model_evaluations("heun", 10),
                     "s_per_8_clips_euler10": seconds * model_evaluations("euler", 10)})
        print(f"layout {layout}: {seconds:.3f} s per guided call (channels-last, {threads} threads)", flush=True)
    return rows


def goal_metric_rows(clips: int, models=GOAL_MODELS, settings=METRIC_SETTINGS) -> list[dict]:
    """``evaluate_videos`` metrics of ``clips`` clips of each of ``models`` for each of
    ``settings`` (channels-last, on this process's threads). Same labels (digit i % 10) and
    start noise (seeds 0, 50, ...: one per batch of 50) for every model and setting."""
    from vdmcourse.metrics import evaluate_videos, load_evaluator

    evaluator = load_evaluator()
    rows = []
    for name in models:
        preset = get_preset(name)
        model = load_pretrained(name, device="cpu").eval()
        for sampler, steps in settings:
            started = time.perf_counter()
            video = torch.cat([draw(model, preset, min(50, clips - start), sampler=sampler, steps=steps, fast=True, seed=start)
                               for start in range(0, clips, 50)])
            seconds = time.perf_counter() - started
            results = evaluate_videos(video, evaluator, digits=1, seed=0)
            rows.append({"model": name, "part": "goal_metrics", "sampler": sampler, "steps": steps, "clips": clips,
                         "threads": torch.get_num_threads(), "sampling_s": seconds, "videos": results["videos"], "real": results["real"],
                         "load_after": os.getloadavg()[0]})
            print(f"metrics {name} {sampler} {steps}: {results['videos']} ({seconds:.0f} s sampling)", flush=True)
    return rows


def _metric_cell(metrics: dict, name: str) -> str:
    """A metric as the table prints it; KID with its interval where the run measured one."""
    if name == "kid" and "kid_low" in metrics:
        return f"{metrics['kid']:.3g} [{metrics['kid_low']:.3g}, {metrics['kid_high']:.3g}]"
    return f"{metrics[name]:.3g}"


def _machine_line(machine: dict, load: float) -> str:
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch thread(s), torch {machine['torch']}; "
            f"1-minute load average {load:.1f} at the end")


def native_bf16() -> bool:
    """Does this CPU have bf16 instructions (AVX-512 BF16 or AMX)? (Linux only; False elsewhere.)"""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_line(table: dict) -> str:
    bench = table["bf16_benchmark"]
    sampling = {(r["model"], r["config"]): r["s_per_call"] for r in table["rows"] if r["part"] == "sampling"}
    ratios = [sampling[model, "bf16"] / seconds for (model, config), seconds in sampling.items() if config == "fp32"]
    native = ("has native bf16 (AVX-512 BF16 or AMX)" if table["native_bf16"]
              else "has **no native bf16** (no `avx512_bf16` or `amx_bf16` flag: bf16 is emulated)")
    return (f"This CPU {native}: a bf16 guided call took {min(ratios):.1f}-{max(ratios):.1f}x fp32's time here. "
            f"The micro-benchmark `precision=\"auto\"` reads measured fp32 {bench['fp32_s'] * 1e3:.1f} ms, bf16 "
            f"{bench['bf16_s'] * 1e3:.1f} ms, so auto picks **{'bf16' if bench['bf16_faster'] else 'fp32'}** here. "
            "(On a CPU with AVX-512 BF16, the issue's Zen 4, bf16 autocast was 1.4-1.6x faster.)")


def markdown(data: dict) -> str:
    lines = ["# Fast paths: bf16, channels-last, compile; bf16 quality; 2-process DDP; the 2-second goal", "",
             "Made by `benchmarks/bench_fast_paths.py` (its docstring gives the method of each part). Shipped checkpoints, "
             "8 clips guided (scale 2) at each preset's own sampler and steps unless said otherwise. The machine is shared "
             "with other jobs (each part ran in a job slot: the machine ran at most two one-thread jobs at once, one per core): times compare within a table, not across days.", ""]
    table = data.get("table")
    if table:
        lines += [f"## Fast paths, {table['machine']['torch_threads']} thread(s)", "",
                  f"Machine: {table['machine']['cpu']}, {table['machine']['cores']} cores, torch {table['machine']['torch']}. "
                  "Commands (FLOP/s are set against the fp32 matmul rate measured by the same command):", ""]
        for command in dict.fromkeys(r["command"] for r in table["rows"]):
            rows = [r for r in table["rows"] if r["command"] == command]
            sampling = [r for r in rows if r["part"] == "sampling"]
            peak = sampling[0]["gflop_per_s"] / sampling[0]["share_of_matmul_peak"]
            lines.append(f"- `{command}`: {', '.join(dict.fromkeys(r['model'] for r in rows))}; matmul rate {peak:.1f} GFLOP/s; "
                         f"1-minute load average {rows[-1]['load_average_1min']:.1f} at the end")
        lines += ["",
                  bf16_line(table), "",
                  f"Sampling: median of {table['repeats']} timed guided calls after one warm-up call (which also compiles); a "
                  "configuration slower than twice fp32 is timed by one call ('timed' column). s / 8 clips = calls x call "
                  "(+ the VAE decode for latent-video-cpu); 'full' is one real `sample` of 8 clips. Training: median of "
                  f"{table['steps']} Trainer steps after one warm-up step (one step when slower than twice fp32).", ""]
        sampling = [r for r in table["rows"] if r["part"] == "sampling"]
        lines += ["### Sampling 8 clips", "",
                  "| model | config | s / guided call | timed | calls | s / 8 clips | full sample, s | GFLOP/s | of matmul rate | call diff vs fp32: mean / max |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in sampling:
            full = f"{r['full_sample_s']:.2f}" if "full_sample_s" in r else ""
            lines.append(f"| {r['model']} | {r['config']} | {r['s_per_call']:.3f} | {r['timed_calls']} | {r['calls']} | {r['s_per_8_clips']:.2f} | {full} | "
                         f"{r['gflop_per_s']:.1f} | {100 * r['share_of_matmul_peak']:.0f} % | {r['call_mean_diff']:.1e} / {r['call_max_diff']:.1e} |")
        gflops = {r["model"]: r["gflop_per_call"] for r in sampling}
        lines += ["", "GFLOP per guided call (batch 16): " + ", ".join(f"{k} {v:.1f}" for k, v in gflops.items()) + ".", ""]
        training = [r for r in table["rows"] if r["part"] == "training"]
        lines += ["### Training", "", "| model | config | s / step | timed | batch | clips / s |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['config']} | {r['s_per_step']:.3f} | {r['timed_steps']} | {r['batch']} | {r['clips_per_s']:.1f} |" for r in training]
        lines.append("")
    quality = data.get("quality")
    if quality:
        commands = "; ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in quality["rows"]))
        lines += ["## bf16 against fp32 on the shipped checkpoints", "",
                  f"Machine: {_machine_line(quality['machine'], quality['load_average_1min'])}. Command: {commands}. "
                  "Same noise and labels; differences in the model range [-1, 1]; per-clip metrics "
                  "(`vdmcourse.metrics.clip_metrics`, evaluator-cpu) of the same clips in each precision.", "",
                  "| model | config | clips | sampler | mean diff | max diff | pixels off by > 0.1 | identity fp32 / bf16 | physics px fp32 / bf16 | flicker fp32 / bf16 | digit count fp32 / bf16 |",
                  "|---|---|---:|---|---:|---:|---:|---|---|---|---|"]
        for r in quality["rows"]:
            def pair(key):
                if "metrics_fp32" not in r:
                    return "n/a (single frames)"
                return f"{r['metrics_fp32'][key]:.3g} / {r['metrics_bf16'][key]:.3g}"
            lines.append(f"| {r['model']} | {r['config']} | {r['clips']} | {r['sampler']} {r['steps']} | {r['mean_diff']:.1e} | {r['max_diff']:.2f} | "
                         f"{100 * r['share_over_0.1']:.2f} % | {pair('identity')} | {pair('physics_px')} | {pair('flicker')} | {pair('digit_count')} |")
        lines += ["", "The tolerances bf16 is held to are stated and tested in tests/test_fast_paths.py (BF16_* constants), "
                  "on fewer clips and steps than here.", ""]
    ddp = data.get("ddp")
    if ddp:
        lines += ["## 2-process gloo DDP against 1 process (image-cpu training)", "",
                  f"Machine: {ddp['machine']['cpu']}, {ddp['machine']['cores']} cores, torch {ddp['machine']['torch']}; 1-minute load "
                  f"average {ddp['load_average_1min']:.1f} at the end. Command: `{ddp['command']}`, holding both job slots (no other "
                  "slot job ran; processes outside the slots did, as the load average shows).", "",
                  "| processes x threads | steps (per process) | clips | training s | wall s | clips / s |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['config']} | {r['steps']} | {r['clips']} | {r['train_time_s']:.1f} | {r['wall_s']:.1f} | {r['clips_per_s']:.1f} |" for r in ddp["rows"]]
        by = {(r["processes"], r["threads"]): r for r in ddp["rows"]}
        if {(1, 1), (1, 2), (2, 1)} <= by.keys():
            two, one, one_two = by[2, 1], by[1, 1], by[1, 2]
            lines += ["", f"2 gloo processes of one thread trained {two['clips_per_s'] / one['clips_per_s']:.2f}x the clips per second "
                      f"of one process of one thread and {two['clips_per_s'] / one_two['clips_per_s']:.2f}x those of one process of "
                      f"two threads; each of their steps took {two['train_time_s'] / one['train_time_s']:.2f}x a lone process's "
                      "(the gradient all-reduce, the per-step loss and stop all-reduces, and presumably the two processes competing for "
                      "caches and memory). "
                      "Two processes cannot beat one process that uses both cores well; for these small convolutions one "
                      "process's second thread gains little (it can even lose on a loaded machine), so here data parallelism "
                      "uses the second core better. Each process holds its own model and optimizer. The CI tests are about "
                      "correctness (tests/test_distributed.py); wall time also counts start-up (torchrun, the process group, loading)."]
        lines.append("")
    goal = data.get("goal")
    if goal:
        rows = goal["rows"]
        timings = [r for r in rows if r["part"] == "goal"]
        lines += ["## The goal: 8 clips of the shipped video model in <= 2 s on 2 cores", ""]
        if timings:
            compile_s = max(r["compile_s"] or 0 for r in timings)
            loads = [v for r in timings for v in (r.get("load_before"), r.get("load_after"), r.get("load_average_1min")) if v is not None]
            models = list(dict.fromkeys(r["model"] for r in timings))
            lines += [f"Machine: {goal['machine']['cpu']}, {goal['machine']['cores']} cores, {timings[0]['threads']} torch threads, torch "
                      f"{goal['machine']['torch']}; 1-minute load average {min(loads):.1f}-{max(loads):.1f} during the rows. Command: "
                      f"`{timings[0]['command']}` ({'both job slots held' if timings[0].get('slots', 'both') == 'both' else 'one job slot held, the other running another job'}). "
                      "Full `sample` of 8 guided clips (10x32x32, guidance scale 2) of "
                      f"{', '.join(models)}, median of {goal['repeats']} run(s), all rows in the same run; the compiled path after compiling, "
                      f"the eager ones with no separate warm-up; compiling (once per model, not counted) took up to {compile_s:.0f} s. "
                      "'clips per call': a guided call of the shipped model is one batch of 16 (the 8 clips with their labels and "
                      "with the null label); a guidance-distilled student (video-distilled-cpu, video-distilled-8-cpu) makes one call of 8.", "",
                      "| model | sampler | steps | calls | clips per call | path | s / 8 clips | load before / after |",
                      "|---|---|---:|---:|---:|---|---:|---|"]
            for r in timings:
                load = f"{r['load_before']:.1f} / {r['load_after']:.1f}" if "load_before" in r else ""
                lines.append(f"| {r['model']} | {r['sampler']} | {r['steps']} | {r['calls']} | {r.get('call_batch', 2 * CLIPS)} | {r['config']} | "
                             f"{r['s_per_8_clips']:.2f} | {load} |")
            untrained = sorted({r["model"] for r in timings if r.get("weights", "shipped") != "shipped"})
            if untrained:
                lines += ["", f"{', '.join(untrained)}: timed with the preset's model as built (not shipped at the time of the run); "
                          "the time of a call does not depend on the weights."]
            lines.append("")
            defaults = {}  # model: {path: row} at the model's own sampler and steps
            for model in models:
                preset = get_preset(model)
                defaults[model] = {r["config"]: r for r in timings
                                   if r["model"] == model and (r["sampler"], r["steps"]) == (preset.sampler, preset.sample_steps)}
            for model in models:
                mine = [r for r in timings if r["model"] == model]
                best = min(mine, key=lambda r: r["s_per_8_clips"])
                preset = get_preset(model)
                default = list(defaults[model].values())
                fastest_default = min(default, key=lambda r: r["s_per_8_clips"]) if default else None
                text = f"- {model}: fastest {best['s_per_8_clips']:.2f} s ({best['sampler']} {best['steps']} steps, {best['config']})"
                if fastest_default:
                    text += (f"; at its default steps ({preset.sampler} {preset.sample_steps}) {fastest_default['s_per_8_clips']:.2f} s "
                             f"({fastest_default['config']}): the 2 s goal is {'reached' if fastest_default['s_per_8_clips'] <= 2 else 'not reached'} there")
                    plain = defaults[model].get("fp32")
                    if plain is not None and plain is not fastest_default:
                        text += f" ({plain['s_per_8_clips']:.2f} s in plain fp32, the sampling a learner gets without options)"
                    first = defaults[models[0]]  # side by side with the first model's default, path for path
                    ratios = [f"{first[path]['s_per_8_clips'] / row['s_per_8_clips']:.2f}x in {path}"
                              for path, row in defaults[model].items() if model != models[0] and path in first]
                    if ratios:
                        text += f"; against {models[0]} at its default in the same run: " + ", ".join(ratios)
                lines.append(text + ".")
            layouts = [r for r in rows if r["part"] == "layout"]
            if layouts:
                lines += ["", "Attention layouts lesson 05's UNet3D can take (UNet3DConfig fields over video-cpu's; random weights, "
                          "channels-last, one guided call of 16 clips, median of 3, same threads; no trained checkpoint exists for "
                          f"the new layouts; command `{layouts[0]['command']}`, load {layouts[0]['load_average_1min']:.1f}):", "",
                          "| layout | fields | parameters | s / guided call | x 19 calls (heun 10) | x 10 calls (euler 10) |",
                          "|---|---|---:|---:|---:|---:|"]
                lines += [f"| {r['config']} | `{json.dumps(r['fields'])}` | {r['parameters']:,} | {r['s_per_call']:.3f} | "
                          f"{r['s_per_8_clips_heun10']:.2f} | {r['s_per_8_clips_euler10']:.2f} |" for r in layouts]
        metrics = [r for r in rows if r["part"] == "goal_metrics"]
        names = ["frechet", "kid", "identity", "physics_px", "bounce", "dynamic", "flicker", "digit_count"]
        for command in dict.fromkeys(r["command"] for r in metrics):
            mine = [r for r in metrics if r["command"] == command]
            lines += ["", f"Metrics of {mine[0]['clips']} clips per model and sampler setting (`vdmcourse.metrics.evaluate_videos`, "
                      "evaluator-cpu, real clips seed 0; the same labels and start noise for every row; channels-last, which moves "
                      "outputs by 1e-5 only), and the real-vs-real floor. Command: "
                      f"`{command}`, {mine[0].get('threads') or mine[0]['machine']['torch_threads']} thread(s).", "",
                      "| model | sampler | steps | " + " | ".join(names) + " |", "|---|---|---:|" + "---:|" * len(names)]
            for r in mine:
                lines.append(f"| {r['model']} | {r['sampler']} | {r['steps']} | " + " | ".join(_metric_cell(r["videos"], n) for n in names) + " |")
            lines.append("| real clips | | | " + " | ".join(_metric_cell(mine[0]["real"], n) for n in names) + " |")
            if "kid_low" in mine[0]["videos"]:
                lines += ["", "KID [low, high]: its 95 % bootstrap interval (`vdmcourse.metrics.kid_bootstrap`, as `evaluate_videos` reports it); the real-vs-real "
                          "row is one draw of the floor (benchmarks/results/metrics_floor.md: Fréchet 3.4 to 7.5, KID -0.04 to 0.22 over eight draws)."]
            floor = mine[0]["real"]["frechet"]
            if floor >= min(r["videos"]["frechet"] for r in mine):
                lines += ["", f"With {mine[0]['clips']} clips, barely more than the evaluator's feature dimensions, the Fréchet "
                          f"distance is dominated by its estimation bias (the real-vs-real floor, {floor:.3g}, is above the samples'): "
                          "compare the settings on KID and the per-clip metrics."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--repeats", type=int, default=3, help="timed guided calls (table) or full samples (--goal)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation)")
    parser.add_argument("--quality", action="store_true", help="only bf16 against fp32 on the shipped checkpoints")
    parser.add_argument("--quality-clips", type=int, default=8)
    parser.add_argument("--ddp", action="store_true", help="only the 1- vs 2-process training comparison")
    parser.add_argument("--ddp-steps", type=int, default=60)
    parser.add_argument("--goal", action="store_true", help="only the 8-clips-in-2-s study of video-cpu")
    parser.add_argument("--goal-metrics", action="store_true", help="only the metrics of the --goal sampler settings")
    parser.add_argument("--goal-clips", type=int, default=70, help="clips per setting for --goal-metrics (at least 65)")
    parser.add_argument("--goal-models", nargs="+", default=GOAL_MODELS, help="shipped video models for --goal / --goal-metrics")
    parser.add_argument("--goal-settings", nargs="+", metavar="SAMPLER:STEPS",
                        help="sampler settings for --goal / --goal-metrics (default: heun:10 euler:10 heun:5 euler:8)")
    parser.add_argument("--goal-paths", nargs="+", choices=["fp32", "channels_last", "compile + channels_last"],
                        help="fast paths timed at each model's own setting (--goal; default: all three)")
    parser.add_argument("--no-layouts", action="store_true", help="--goal without the attention-layout rows (kept from an earlier run)")
    parser.add_argument("--slots", choices=["both", "one"], default="both",
                        help="--goal: whether this run held both job slots or one (the other running another job); said in the table")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    path = RESULTS / "fast_paths.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data = {key: value for key, value in data.items() if key in ("table", "quality", "ddp", "goal")}  # older layouts
    command = "python benchmarks/bench_fast_paths.py " + shlex.join(sys.argv[1:])
    part = "ddp" if args.ddp else "quality" if args.quality else "goal" if args.goal or args.goal_metrics else "table"

    def write(rows: list[dict], **fields) -> None:
        """Merge ``rows`` into the part (the rows of models not run this time are kept) and write both files."""
        if path.is_file():  # read again: another command may have written since this one started
            data.update({key: value for key, value in json.loads(path.read_text()).items() if key in ("table", "quality", "ddp", "goal")})
        parts = {r["part"] for r in rows}  # --goal and --goal-metrics each replace their own rows
        metric_keys = {(r["model"], r["sampler"], r["steps"]) for r in rows if r["part"] == "goal_metrics"}

        def keep_goal(r):  # a metrics run replaces only the (model, sampler, steps) it measured again
            if r["part"] == "goal_metrics" and metric_keys:
                return (r["model"], r["sampler"], r["steps"]) not in metric_keys
            return r["part"] not in parts

        kept = [r for r in data.get(part, {}).get("rows", [])
                if part != "ddp" and (keep_goal(r) if part == "goal" else r["model"] not in args.models)]
        stamp = {"machine": machine_info(), "load_average_1min": os.getloadavg()[0], "command": command}
        if part in ("goal", "table", "quality"):  # several commands may write a part: each row says which
            rows = [{**r, "command": command, "load_average_1min": stamp["load_average_1min"]} for r in rows]
        data[part] = {**data.get(part, {}), **fields, "rows": kept + rows, **stamp}
        RESULTS.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1) + "\n")
        with atomic_path(RESULTS / "fast_paths.md") as tmp:
            tmp.write_text(markdown(data))

    settings = [(sampler, int(steps)) for sampler, steps in (item.split(":") for item in args.goal_settings)] if args.goal_settings else None
    torch.set_num_threads(args.threads)
    if args.ddp:
        write(ddp_rows(args.ddp_steps))
    elif args.goal:
        rows = goal_rows(args.threads, args.repeats, args.goal_models, settings or SAMPLER_SETTINGS, args.goal_paths, not args.no_layouts)
        write([{**r, "slots": args.slots} for r in rows], repeats=args.repeats)
    elif args.goal_metrics:
        write(goal_metric_rows(args.goal_clips, args.goal_models, settings or METRIC_SETTINGS))
    elif args.quality:
        rows = []
        for name in args.models:  # written after each model: an interrupted run keeps what it measured
            rows += quality_rows(name, args.quality_clips)
            write(rows)
    else:
        peak = matmul_rate()
        rows = []
        fields = {"matmul_gflop_per_s": peak / 1e9, "bf16_benchmark": bf16_benchmark(), "native_bf16": native_bf16(),
                  "repeats": args.repeats, "steps": args.steps}
        for name in args.models:  # written after each part: an interrupted run keeps what it measured
            rows += sampling_rows(name, args.repeats, args.compile, peak)
            write(rows, **fields)
            rows += training_rows(name, args.steps)
            write(rows, **fields)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
