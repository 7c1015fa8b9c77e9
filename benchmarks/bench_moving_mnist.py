"""How fast the Moving MNIST generator makes clips on one CPU thread.

    python benchmarks/bench_moving_mnist.py

Prints a table and writes it to benchmarks/results/moving_mnist.md (and .json).
Each row times `generate_clips(batch, config)` -- drawing digits and starting
states, simulating the trajectories and rendering the frames -- as the median of
repeated calls after one warm-up call (which also loads and resizes the digit pool).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips

RESULTS = Path(__file__).resolve().parent / "results"

CASES = [
    ("cpu size: 8x32x32, 1 digit of 16 px", MovingMNISTConfig.cpu(frames=8)),
    ("standard: 20x64x64, 2 digits of 28 px", MovingMNISTConfig.srivastava()),
    ("stochastic: 20x64x64, 2 digits of 32 px, sum", MovingMNISTConfig.stochastic()),
]
BATCHES = (64, 256)


def median_seconds(call, seconds: float = 1.0) -> float:
    """Median seconds per call of ``call()``, after one warm-up call."""
    call()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        tick = time.perf_counter()
        call()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(tmp, path)


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for name, config in CASES:
        for batch in BATCHES:
            generator = torch.Generator().manual_seed(0)
            seconds = median_seconds(lambda: generate_clips(batch, config, generator=generator))
            # The bare cost of a fresh output tensor (zero-filled, first-touch page faults).
            shape = (batch, config.frames, 1, config.canvas, config.canvas)
            allocate = median_seconds(lambda: torch.zeros(shape))
            rows.append({"case": name, "batch": batch, "ms_per_batch": 1000 * seconds, "clips_per_s": batch / seconds,
                         "frames_per_s": batch * config.frames / seconds, "ms_allocating_output": 1000 * allocate})
    header = "| case | batch | ms / batch | clips / s | frames / s | of which: allocating the output (ms) |\n|---|---:|---:|---:|---:|---:|\n"
    table = header + "".join(
        f"| {r['case']} | {r['batch']} | {r['ms_per_batch']:.1f} | {r['clips_per_s']:,.0f} | {r['frames_per_s']:,.0f} "
        f"| {r['ms_allocating_output']:.1f} |\n"
        for r in rows
    )
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread (torch.set_num_threads(1))"
    print(table)
    report = (
        "# Moving MNIST generator speed\n\n"
        f"`python benchmarks/bench_moving_mnist.py` on {machine}; median of repeated calls of\n"
        "`generate_clips(batch, config)` (digits, trajectories and rendering) after a warm-up call.\n"
        "The last column times `torch.zeros` of the output's shape alone: for large batches of\n"
        "64x64 clips most of the time is the memory system handing out fresh pages, not the generator.\n\n" + table
    )
    write_atomic(RESULTS / "moving_mnist.md", report)
    write_atomic(RESULTS / "moving_mnist.json", json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
