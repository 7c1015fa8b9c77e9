"""Sampling time per clip against the number of steps, for each sampler.

One clip of the course's CPU Moving MNIST size, ``(1, T=10, C=1, 32, 32)``, is
sampled from pure noise with ``vdmcourse.diffusion.sample`` by DDPM, DDIM, Euler
and Heun at 5, 10, 25 and 50 steps. The model is the course's image U-Net
(``vdmcourse.nn.UNet2D``, default config, 1.4 M parameters) applied to the clip's
frames -- the timing does not depend on its weights, so it is not trained here.
Each time is the fastest of ``--repeats`` runs (after one warm-up run): on a shared
machine other jobs only ever add time, so the minimum is the best estimate of the cost.

A second table runs the same loop with a model that returns zeros: the cost of the
sampler itself (conversions, updates, noise), which is what a sampler adds on top
of the network.

    python benchmarks/bench_sampling.py                 # CPU, 1 thread
    python benchmarks/bench_sampling.py --device cuda

Writes benchmarks/results/sampling.md and sampling.json (suffixed by the device
when it is not the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from vdmcourse.diffusion import SAMPLERS, model_evaluations, sample
from vdmcourse.nn import UNet2D, UNet2DConfig
from vdmcourse.pretrained import atomic_path
from vdmcourse.train import machine_info

SHAPE = (1, 10, 1, 32, 32)  # one clip: (B, T, C, H, W)
STEPS = (5, 10, 25, 50)
RESULTS = Path(__file__).resolve().parent / "results"


def zero_model(x, t, cond=None):
    return torch.zeros_like(x)


def seconds(model, sampler: str, steps: int, device: torch.device, repeats: int) -> float:
    """Fastest wall time of one ``sample`` call over ``repeats`` runs (synchronised on CUDA)."""
    times = []
    for repeat in range(repeats + 1):  # the first run warms up and is not counted
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        sample(model, SHAPE, objective="flow", sampler=sampler, steps=steps, device=device,
               generator=torch.Generator().manual_seed(repeat), progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if repeat:
            times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = UNet2D(UNet2DConfig()).to(device).eval()
    parameters = sum(p.numel() for p in model.parameters())

    rows = []
    for sampler in SAMPLERS:
        for steps in STEPS:
            calls = model_evaluations(sampler, steps)
            unet = seconds(model, sampler, steps, device, args.repeats)
            overhead = seconds(zero_model, sampler, steps, device, args.repeats)
            rows.append({"sampler": sampler, "steps": steps, "model_calls": calls, "seconds_per_clip": unet,
                         "seconds_per_call": unet / calls, "sampler_only_ms": 1000 * overhead})
            print(f"{sampler:5s} {steps:3d} steps {calls:3d} calls  {unet:7.3f} s/clip  "
                  f"{1000 * unet / calls:6.1f} ms/call  sampler alone {1000 * overhead:6.2f} ms", flush=True)

    machine = {**machine_info(), "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
               "device": str(device), "threads": args.threads}
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    RESULTS.mkdir(exist_ok=True)
    with atomic_path(RESULTS / f"sampling{suffix}.json") as tmp:
        tmp.write_text(json.dumps({"shape": SHAPE, "model": "UNet2D()", "parameters": parameters,
                                   "machine": machine, "rows": rows}, indent=1))
    with atomic_path(RESULTS / f"sampling{suffix}.md") as tmp:
        tmp.write_text(markdown(rows, machine, parameters))
    print(f"wrote {RESULTS / f'sampling{suffix}.md'}")


def markdown(rows: list[dict], machine: dict, parameters: int) -> str:
    per_call = statistics.median(row["seconds_per_call"] for row in rows)
    lines = [
        "# Sampling time per clip",
        "",
        f"One clip {SHAPE} (B, T, C, H, W) sampled from noise by `vdmcourse.diffusion.sample`, model "
        f"`UNet2D()` ({parameters / 1e6:.2f} M parameters) on its frames; fastest of repeated runs. "
        "Made by `python benchmarks/bench_sampling.py`.",
        "",
        f"Machine: {machine['cpu']}, {machine['threads']} torch thread(s) on {machine['device']}, torch "
        f"{machine['torch']}; 1-minute load average {machine['load_average_1min']:.1f} on "
        f"{machine['cores']} cores while measuring (a shared machine: absolute times are only comparable within this table).",
        "",
        "| sampler | steps | model calls | s / clip | ms / model call | sampler alone (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['sampler']} | {row['steps']} | {row['model_calls']} | {row['seconds_per_clip']:.3f} | "
                     f"{1000 * row['seconds_per_call']:.1f} | {row['sampler_only_ms']:.2f} |")
    heun = {row["steps"]: row["seconds_per_clip"] for row in rows if row["sampler"] == "heun"}
    euler = {row["steps"]: row["seconds_per_clip"] for row in rows if row["sampler"] == "euler"}
    ratio = statistics.median(heun[s] / euler[s] for s in STEPS)
    overhead = max(row["sampler_only_ms"] / 1000 / row["seconds_per_clip"] for row in rows)
    lines += [
        "",
        f"* Time is the number of model calls times the cost of one call (median {1000 * per_call:.1f} ms here): "
        f"Heun costs {ratio:.2f}x Euler at equal steps (2 steps - 1 calls).",
        f"* The sampler's own work is at most {100 * overhead:.1f} % of the time: choosing a sampler is choosing "
        "how many model calls buy how much quality (lesson 08 measures the quality side).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
