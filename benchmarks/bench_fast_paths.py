"""The fast paths on the course's CPU models: bf16 autocast, channels-last, torch.compile,
and 2-process DistributedDataParallel against 1 process.

For each shipped model (image-cpu, video-cpu):

* **sampling** -- the time of one guided model call (the labels and the null label:
  a batch of 16 for 8 clips) in each configuration, the median of ``--repeats`` calls
  after a warm-up; times the number of calls the preset's sampler makes gives
  seconds per 8 clips (the sampler's own work is under 0.5 %: sampling.md). One full
  ``sample`` of 8 clips is timed for fp32 and for the fastest configuration to check
  the product. FLOP/s: the call's FLOPs (``torch.utils.flop_counter``) over its
  time, against the fp32 matmul rate measured in the same run. Accuracy: the
  mean and max difference of the call's output from fp32's, and of the 8 clips when
  sampled in full.
* **training** -- seconds per Trainer step of the preset (median of ``--steps``
  steps after one warm-up step) in fp32, bf16 and channels-last.

``--ddp`` instead trains image-cpu for ``--ddp-steps`` steps with ``python -m vdmcourse
train`` (1 process) and with ``torchrun --nproc_per_node=2`` (2 gloo processes, one
thread each) and compares clips per second of training time.

    /work/bin/heavy python benchmarks/bench_fast_paths.py [--compile]
    python benchmarks/bench_fast_paths.py --ddp

Writes benchmarks/results/fast_paths.json and fast_paths.md (the DDP run merges
its rows into the same files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vdmcourse.diffusion import model_evaluations, sample
from vdmcourse.diffusion.guidance import guided_output
from vdmcourse.fast_paths import bf16_benchmark, channels_last, compiled
from vdmcourse.presets import get_preset
from vdmcourse.pretrained import atomic_path, load_pretrained
from vdmcourse.train import Trainer, machine_info

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
CLIPS = 8
CONFIGS = {  # name: (bf16, channels_last, compile)
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "channels_last": (False, True, False),
    "bf16 + channels_last": (True, True, False),
    "compile": (False, False, True),
    "compile + channels_last": (False, True, True),
}


def matmul_rate() -> float:
    """fp32 FLOP/s of a 512 x 512 matmul on this thread (best of 20)."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    best = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * 512**3 / best


def guided_call(model, preset, bf16: bool, fast: bool, compile_: bool):
    shape = (CLIPS, *preset.sample_shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((CLIPS,), 0.5)
    labels = torch.arange(CLIPS) % 10
    net = compiled(model) if compile_ else model

    def call():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return guided_output(net, x, t, labels, preset.guidance_scale).float()

    return call


def time_call(call, repeats: int) -> tuple[float, torch.Tensor]:
    out = call()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def full_sample(model, preset, bf16: bool, fast: bool) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    clips = sample(model, (CLIPS, *preset.sample_shape), objective=preset.objective, sampler=preset.sampler,
                   steps=preset.sample_steps, cond=torch.arange(CLIPS) % 10, guidance_scale=preset.guidance_scale,
                   generator=torch.Generator().manual_seed(0), progress=False,
                   precision="bf16" if bf16 else "fp32", channels_last=fast)
    return time.perf_counter() - started, clips


def sampling_rows(name: str, repeats: int, with_compile: bool, peak: float) -> list[dict]:
    preset = get_preset(name)
    model = load_pretrained(name, device="cpu").eval()
    calls = model_evaluations(preset.sampler, preset.sample_steps)
    with FlopCounterMode(display=False) as counter:
        guided_call(model, preset, False, False, False)()
    flops = counter.get_total_flops()
    rows, reference = [], None
    for config, (bf16, fast, compile_) in CONFIGS.items():
        if compile_ and not with_compile:
            continue
        with channels_last(model, fast):
            seconds, out = time_call(guided_call(model, preset, bf16, fast, compile_), repeats)
        reference = out if reference is None else reference
        difference = (out - reference).abs()
        row = {"model": name, "part": "sampling", "config": config, "s_per_call": seconds,
               "s_per_8_clips": seconds * calls, "calls": calls, "gflop_per_s": flops / seconds / 1e9,
               "share_of_matmul_peak": flops / seconds / peak,
               "call_mean_diff": difference.mean().item(), "call_max_diff": difference.max().item()}
        rows.append(row)
        print(f"{name} sampling {config:24s} {seconds:.3f} s/call  {seconds * calls:6.2f} s / 8 clips  "
              f"{flops / seconds / 1e9:5.1f} GFLOP/s  diff mean {row['call_mean_diff']:.1e} max {row['call_max_diff']:.1e}", flush=True)
    # One full sample of 8 clips, fp32 and the fastest non-compiled configuration, to check the product.
    fastest = min((r for r in rows if "compile" not in r["config"]), key=lambda r: r["s_per_call"])
    fp32_time, fp32_clips = full_sample(model, preset, False, False)
    rows[0]["full_sample_s"] = fp32_time
    if fastest["config"] != "fp32":
        bf16, fast, _ = CONFIGS[fastest["config"]]
        fastest["full_sample_s"], clips = full_sample(model, preset, bf16, fast)
        fastest["clips_mean_diff"] = (clips - fp32_clips).abs().mean().item()
        fastest["clips_max_diff"] = (clips - fp32_clips).abs().max().item()
    print(f"{name} full sample of 8 clips: fp32 {fp32_time:.2f} s; {fastest['config']} {fastest.get('full_sample_s', fp32_time):.2f} s", flush=True)
    return rows


def training_rows(name: str, steps: int) -> list[dict]:
    preset = get_preset(name)
    rows = []
    for config in ("fp32", "bf16", "channels_last"):
        torch.manual_seed(0)
        model = preset.model_class(preset.model_config)  # speed does not depend on the weights
        train = dataclasses.replace(preset.train, precision="bf16" if config == "bf16" else "fp32")
        trainer = Trainer(model, preset.loss_fn(), preset.batches(), train, device="cpu", progress=False)
        with channels_last(trainer.model, config == "channels_last"):
            trainer.fit(1)
            times = []
            for step in range(steps):
                started = time.perf_counter()
                trainer.train_step()
                times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        rows.append({"model": name, "part": "training", "config": config, "s_per_step": seconds,
                     "clips_per_s": preset.batch_size / seconds, "batch": preset.batch_size})
        print(f"{name} training {config:14s} {seconds:.3f} s/step", flush=True)
    return rows


def ddp_rows(steps: int) -> list[dict]:
    rows = []
    for processes in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                        if processes > 1 else [sys.executable])
            command = [*launcher, "-m", "vdmcourse", "train", "--preset", "image-cpu", "--steps", str(steps),
                       "--out", f"{tmp}/run", "--no-progress"]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
            started = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - started
            record = json.loads(Path(f"{tmp}/run/run.json").read_text())
        clips = steps * get_preset("image-cpu").batch_size * processes
        rows.append({"model": "image-cpu", "part": "ddp", "config": f"{processes} process(es)", "processes": processes,
                     "steps": steps, "clips": clips, "train_time_s": record["train_time_s"], "wall_s": wall,
                     "clips_per_s": clips / record["train_time_s"], "load_average_1min": os.getloadavg()[0]})
        print(f"DDP {processes} process(es): {clips / record['train_time_s']:.1f} clips/s of training", flush=True)
    return rows


def markdown(data: dict) -> str:
    machine = data["machine"]
    lines = [
        "# Fast paths: bf16, channels-last, compile; 2-process DDP",
        "",
        "Made by `benchmarks/bench_fast_paths.py` (see its docstring for the method). Shipped checkpoints, "
        "8 clips guided at each preset's own sampler and steps.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch thread(s), torch "
        f"{machine['torch']}; 1-minute load average {data['load_average_1min']:.1f} while measuring -- a machine shared "
        "with other jobs, so times compare only within a table. "
        f"bf16 micro-benchmark (what `precision=\"auto\"` reads): fp32 {data['bf16_benchmark']['fp32_s'] * 1e3:.1f} ms, "
        f"bf16 {data['bf16_benchmark']['bf16_s'] * 1e3:.1f} ms -> auto picks "
        f"{'bf16' if data['bf16_benchmark']['bf16_faster'] else 'fp32'} here. "
        f"fp32 matmul rate in this run: {data['matmul_gflop_per_s']:.1f} GFLOP/s.",
        "",
    ]
    sampling = [r for r in data["rows"] if r["part"] == "sampling"]
    if sampling:
        lines += ["## Sampling (8 clips)", "",
                  "| model | config | s / guided call | calls | s / 8 clips (calls x call) | full sample, s | GFLOP/s | of matmul rate | diff vs fp32: mean / max |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in sampling:
            full = f"{r['full_sample_s']:.2f}" if "full_sample_s" in r else ""
            lines.append(f"| {r['model']} | {r['config']} | {r['s_per_call']:.3f} | {r['calls']} | {r['s_per_8_clips']:.2f} | {full} | "
                         f"{r['gflop_per_s']:.1f} | {100 * r['share_of_matmul_peak']:.0f} % | {r['call_mean_diff']:.1e} / {r['call_max_diff']:.1e} |")
        for r in sampling:
            if "clips_mean_diff" in r:
                lines.append(f"\n{r['model']}, {r['config']}: 8 full clips differ from fp32's by mean {r['clips_mean_diff']:.1e}, "
                             f"max {r['clips_max_diff']:.1e} (clips in [-1, 1]).")
        lines.append("")
    training = [r for r in data["rows"] if r["part"] == "training"]
    if training:
        lines += ["## Training", "", "| model | config | s / step | clips / s |", "|---|---|---:|---:|"]
        lines += [f"| {r['model']} | {r['config']} | {r['s_per_step']:.3f} | {r['clips_per_s']:.1f} |" for r in training]
        lines.append("")
    ddp = [r for r in data["rows"] if r["part"] == "ddp"]
    if ddp:
        lines += ["## 2-process gloo DDP against 1 process (image-cpu training)", "",
                  "| processes | steps | clips | training s | clips / s | load average |", "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['processes']} | {r['steps']} | {r['clips']} | {r['train_time_s']:.1f} | {r['clips_per_s']:.1f} | {r['load_average_1min']:.1f} |" for r in ddp]
        lines += ["", "Each process has one thread; the 2 processes share the machine's 2 cores with other jobs. DDP cannot "
                  "win on 2 cores against a process that could use both: the CI test is about correctness, and these "
                  "numbers show the overhead (gradient all-reduce, the per-step loss and stop all-reduces).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["image-cpu", "video-cpu"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation)")
    parser.add_argument("--ddp", action="store_true", help="only the 1- vs 2-process training comparison")
    parser.add_argument("--ddp-steps", type=int, default=40)
    args = parser.parse_args()
    path = RESULTS / "fast_paths.json"
    data = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    if args.ddp:
        rows = ddp_rows(args.ddp_steps)
        data["rows"] = [r for r in data["rows"] if r["part"] != "ddp"] + rows
    else:
        peak = matmul_rate()
        rows = []
        for name in args.models:
            rows += sampling_rows(name, args.repeats, args.compile, peak)
            rows += training_rows(name, args.steps)
        data.update(rows=[r for r in data["rows"] if r["part"] == "ddp"] + rows, matmul_gflop_per_s=peak / 1e9,
                    bf16_benchmark=bf16_benchmark(), machine=machine_info(), load_average_1min=os.getloadavg()[0])
    RESULTS.mkdir(exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))
    if "machine" in data:
        with atomic_path(RESULTS / "fast_paths.md") as tmp:
            tmp.write_text(markdown(data))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
