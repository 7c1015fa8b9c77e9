"""Training speed of the course's presets with the one Trainer: steps/s, clips/s and
CPU seconds per step, at 1 and 2 threads.

    python benchmarks/bench_training.py [--steps 10] [--presets image-tiny image-cpu ...]

Writes ``benchmarks/results/training.md`` and ``training.json``. Every configuration runs
in a fresh subprocess, because OpenMP reads ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY``
once, when it starts. GPU-sized presets (``*-gpu``) are skipped on a machine without one.

Why the wait policy is a row of its own: by default OpenMP threads *spin* for a while
when they wait for each other. On a shared machine where the other thread is
descheduled, the spinning thread burns the core the worker needs;
``OMP_WAIT_POLICY=PASSIVE`` lets it sleep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = "(unset)"  # OpenMP's default: spin for a while, then sleep
SETTINGS = [  # (threads, OMP_WAIT_POLICY)
    (1, "PASSIVE"),
    (2, "PASSIVE"),
    (2, DEFAULT),
]


def measure(preset_name: str, steps: int) -> dict:
    """Time ``steps`` Trainer steps of a preset in this process (after 2 warm-up steps)."""
    import torch

    from vdmcourse.presets import get_preset
    from vdmcourse.train import Trainer

    preset = get_preset(preset_name)
    torch.manual_seed(0)
    # Speed does not depend on the initial weights: skip init_from's checkpoint.
    model = preset.model_class(preset.model_config)
    trainer = Trainer(model, preset.loss_fn(), preset.batches(), preset.train, device="cpu", progress=False)
    trainer.fit(2)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(2 + steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "preset": preset_name,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": preset.batch_size,
        "frames": preset.data.frames,
        "threads": torch.get_num_threads(),
        "wait_policy": os.environ.get("OMP_WAIT_POLICY", DEFAULT),
        "steps_per_s": steps / wall,
        "clips_per_s": steps * preset.batch_size / wall,
        "cpu_s_per_step": cpu / steps,
        "load_average": os.getloadavg()[0],
        "full_run_min": preset.steps * wall / steps / 60,
        "preset_steps": preset.steps,
    }


def run_all(presets: list[str], steps: int) -> list[dict]:
    rows = []
    for name in presets:
        for threads, policy in SETTINGS:
            if name != "image-cpu" and policy == DEFAULT:
                continue  # the spin-wait comparison once is enough
            env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
            env["OMP_NUM_THREADS"] = str(threads)
            if policy != DEFAULT:
                env["OMP_WAIT_POLICY"] = policy
            out = subprocess.run(
                [sys.executable, __file__, "--one", name, "--steps", str(steps)], env=env, capture_output=True, text=True, check=True
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print(f"{name:14} {threads} thread(s) {policy:8} {row['steps_per_s']:6.2f} steps/s", flush=True)
            rows.append(row)
    return rows


def to_markdown(rows: list[dict], machine: dict) -> str:
    lines = [
        "# Training speed of the presets (CPU)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}. The machine was "
        "shared with other jobs while this ran (load average in the table), so wall-clock rates are "
        "lower bounds; CPU seconds per step vary less.",
        "",
        "| preset | params | batch x frames | threads | OMP_WAIT_POLICY | steps/s | clips/s | CPU s/step | load avg | preset steps | full run (min) |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['params'] / 1e6:.2f} M | {r['batch']} x {r['frames']} | {r['threads']} | {r['wait_policy']} "
            f"| {r['steps_per_s']:.2f} | {r['clips_per_s']:.1f} | {r['cpu_s_per_step']:.3f} | {r['load_average']:.1f} "
            f"| {r['preset_steps']} | {r['full_run_min']:.0f} |"
        )
    image = {(r["threads"], r["wait_policy"]): r for r in rows if r["preset"] == "image-cpu"}
    if {(1, "PASSIVE"), (2, "PASSIVE"), (2, DEFAULT)} <= set(image):
        spin, passive, single = image[(2, DEFAULT)], image[(2, "PASSIVE")], image[(1, "PASSIVE")]
        lines += [
            "",
            f"image-cpu on 2 threads: with OpenMP's default wait policy {spin['steps_per_s']:.2f} steps/s "
            f"({spin['cpu_s_per_step']:.2f} CPU s/step), with `OMP_WAIT_POLICY=PASSIVE` {passive['steps_per_s']:.2f} "
            f"steps/s ({passive['cpu_s_per_step']:.2f} CPU s/step): {passive['steps_per_s'] / spin['steps_per_s']:.0f}x "
            f"faster. On 1 thread: {single['steps_per_s']:.2f} steps/s. When the cores are shared, train with "
            "`OMP_WAIT_POLICY=PASSIVE`, and compare 1 and 2 threads on your machine.",
        ]
    lines += ["", "Made by `python benchmarks/bench_training.py`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--presets", nargs="*", help="default: every preset not ending in -gpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps)))
        return

    from vdmcourse.presets import PRESETS
    from vdmcourse.train import machine_info

    presets = args.presets or [name for name in PRESETS if not name.endswith("-gpu")]
    rows = run_all(presets, args.steps)
    machine = machine_info()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    table = to_markdown(rows, machine)
    (RESULTS / "training.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
