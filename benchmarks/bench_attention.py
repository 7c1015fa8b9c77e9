"""Cost of attention over video: full 3D vs factorised, and SDPA vs naive.

Measures, for one attention layer (forward, no gradients) on a ``(1, T, H, W, 64)``
grid with 4 heads:

1. time and peak memory of full 3D attention, spatial + temporal (factorised),
   temporal alone, causal temporal and windowed temporal, against frames T and
   resolution H*W, next to the FLOP count of each -- with the package's SDPA
   kernel and with the naive kernel swapped in;
2. ``scaled_dot_product_attention`` against the naive ``softmax(QK^T/sqrt(d))V``
   for growing sequence lengths, with and without a causal mask.

Peak memory is measured, not estimated: on CPU, torch.profiler's memory events
(every allocation and free of the CPU allocator, in order) give the most bytes
held at once by tensors created during the call; on CUDA,
``torch.cuda.max_memory_allocated``. The analytic size of one float32 score
matrix set (what naive attention must store) is printed beside it.

    python benchmarks/bench_attention.py            # CPU, 1 thread
    python benchmarks/bench_attention.py --device cuda

Writes benchmarks/results/attention.md (and attention.json; suffixed by the device
when it is not the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from unittest import mock
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vdmcourse.nn.attention import (
    FullAttention,
    SpatialAttention,
    TemporalAttention,
    attention,
    causal_mask,
    naive_attention,
)

# Kineto, the profiler's backend, logs every profiler start and stop to stderr.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

DIM, HEADS = 64, 4
RESULTS = Path(__file__).resolve().parent / "results"


def peak_bytes(fn, device: torch.device) -> int:
    """Most bytes held at once by tensors allocated while ``fn()`` runs."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()  # negative for a free
        peak = max(peak, held)
    return peak


def seconds(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up (best: least disturbed by other load)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def attention_flops(kind: str, frames: int, pixels: int) -> int:
    """FLOPs of the attention core (QK^T and weights @ V: 2 matmuls, 2 FLOPs per
    multiply-add) plus the q, k, v and output projections, for batch 1."""
    tokens = frames * pixels
    projections = 2 * 4 * tokens * DIM * DIM  # 4 Linear(D, D) per token
    core = {
        "full 3D": 4 * tokens**2 * DIM,  # one sequence of T*N tokens
        "spatial": 4 * frames * pixels**2 * DIM,  # T sequences of N
        "temporal": 4 * pixels * frames**2 * DIM,  # N sequences of T
    }
    if kind == "spatial + temporal":
        return core["spatial"] + core["temporal"] + 2 * projections
    base = "temporal" if "temporal" in kind else kind
    return core[base] + projections


def score_bytes(kind: str, frames: int, pixels: int) -> int:
    """Bytes of the float32 attention weights a naive implementation stores (all heads)."""
    per_head = {
        "full 3D": (frames * pixels) ** 2,
        "spatial + temporal": max(frames * pixels**2, pixels * frames**2),  # one at a time
    }.get(kind, pixels * frames**2)
    return 4 * HEADS * per_head


def factorised_table(device, frame_list, side_list, fixed_frames, fixed_side, repeats):
    torch.manual_seed(0)
    spatial = SpatialAttention(DIM, HEADS).to(device).eval()
    temporal = TemporalAttention(DIM, HEADS).to(device).eval()
    calls = {
        "full 3D": FullAttention(DIM, HEADS).to(device).eval(),
        "spatial + temporal": lambda x: temporal(spatial(x)),
        "temporal": temporal,
        "causal temporal": TemporalAttention(DIM, HEADS, causal=True).to(device).eval(),
        "windowed temporal (w=2)": TemporalAttention(DIM, HEADS, window=2).to(device).eval(),
    }
    sizes = [(t, fixed_side) for t in frame_list] + [(fixed_frames, s) for s in side_list if s != fixed_side]
    rows = []
    for frames, side in sizes:
        x = torch.randn(1, frames, side, side, DIM, device=device)
        for kind, call in calls.items():
            row = {"kind": kind, "T": frames, "H*W": side * side}
            run = lambda: call(x)  # noqa: E731
            # The same modules with the fused kernel swapped for the naive one.
            for kernel, function in (("sdpa", attention), ("naive", naive_attention)):
                with torch.no_grad(), mock.patch("vdmcourse.nn.attention.attention", function):
                    row[f"{kernel}_seconds"] = seconds(run, device, repeats)
                    row[f"{kernel}_peak_MiB"] = peak_bytes(run, device) / 2**20
            row["GFLOP"] = attention_flops(kind, frames, side * side) / 1e9
            row["naive_scores_MiB"] = score_bytes(kind, frames, side * side) / 2**20
            rows.append(row)
            print(f"  T={frames:3d} H*W={side * side:5d} {kind:24s} SDPA {row['sdpa_seconds'] * 1e3:8.1f} ms "
                  f"{row['sdpa_peak_MiB']:7.1f} MiB | naive {row['naive_seconds'] * 1e3:8.1f} ms "
                  f"{row['naive_peak_MiB']:7.1f} MiB", flush=True)
    return rows


def sdpa_table(device, lengths, repeats, naive_limit):
    rows = []
    for n in lengths:
        g = torch.Generator(device=device).manual_seed(0)
        q, k, v = (torch.randn(1, HEADS, n, DIM, device=device, generator=g) for _ in range(3))
        mask = causal_mask(n, device=device)
        cases = {
            ("SDPA", "none"): lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
            ("SDPA", "causal (is_causal)"): lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
            ("SDPA", "causal (bool mask)"): lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask),
            ("naive", "none"): lambda: naive_attention(q, k, v),
            ("naive", "causal (bool mask)"): lambda: naive_attention(q, k, v, mask=mask),
        }
        for (impl, masking), run in cases.items():
            if impl == "naive" and n > naive_limit:
                continue
            rows.append({
                "impl": impl, "mask": masking, "N": n,
                "seconds": seconds(run, device, repeats),
                "peak_MiB": peak_bytes(run, device) / 2**20,
                "scores_MiB": 4 * HEADS * n * n / 2**20,
            })
            print(f"  N={n:5d} {impl:5s} {masking:20s} {rows[-1]['seconds'] * 1e3:9.1f} ms {rows[-1]['peak_MiB']:9.1f} MiB", flush=True)
    return rows


def findings(cost_rows, sdpa_rows) -> list[str]:
    """One line per headline ratio, computed from the tables."""
    def row(kind, frames, pixels):
        return next(r for r in cost_rows if r["kind"] == kind and r["T"] == frames and r["H*W"] == pixels)

    lines = []
    for frames, pixels in sorted({(r["T"], r["H*W"]) for r in cost_rows}, key=lambda s: s[0] * s[1])[-2:]:
        full, factorised = row("full 3D", frames, pixels), row("spatial + temporal", frames, pixels)
        lines.append(
            f"- T={frames}, H·W={pixels}: full 3D needs {full['GFLOP'] / factorised['GFLOP']:.1f}× the FLOPs of "
            f"spatial + temporal and takes {full['sdpa_seconds'] / factorised['sdpa_seconds']:.1f}× the time (SDPA), "
            f"{full['naive_seconds'] / factorised['naive_seconds']:.1f}× (naive); naive peak memory "
            f"{full['naive_peak_MiB']:.0f} vs {factorised['naive_peak_MiB']:.0f} MiB, SDPA "
            f"{full['sdpa_peak_MiB']:.0f} vs {factorised['sdpa_peak_MiB']:.0f} MiB."
        )
        temporal = [row(k, frames, pixels)["sdpa_seconds"] * 1e3 for k in ("temporal", "causal temporal", "windowed temporal (w=2)")]
        lines.append(
            f"- Same size, temporal / causal / windowed temporal (SDPA): "
            f"{' / '.join(f'{t:.1f}' for t in temporal)} ms: a mask removes information, not work, in a dense kernel."
        )
    longest = max(r["N"] for r in sdpa_rows if r["impl"] == "naive")
    sdpa = next(r for r in sdpa_rows if r["N"] == longest and r["impl"] == "SDPA" and r["mask"] == "none")
    naive = next(r for r in sdpa_rows if r["N"] == longest and r["impl"] == "naive" and r["mask"] == "none")
    causal = next(r for r in sdpa_rows if r["N"] == longest and r["impl"] == "SDPA" and r["mask"] == "causal (is_causal)")
    masked = next(r for r in sdpa_rows if r["N"] == longest and r["impl"] == "SDPA" and r["mask"] == "causal (bool mask)")
    lines.append(
        f"- N={longest}: SDPA is {naive['seconds'] / sdpa['seconds']:.1f}× faster than naive and peaks at "
        f"{sdpa['peak_MiB']:.1f} MiB against {naive['peak_MiB']:.0f} MiB (the score matrices alone: "
        f"{naive['scores_MiB']:.0f} MiB). Causal via `is_causal=True`: {causal['seconds'] * 1e3:.0f} ms; "
        f"via a bool mask: {masked['seconds'] * 1e3:.0f} ms and {masked['peak_MiB']:.0f} MiB (the mask is expanded to floats)."
    )
    return lines


def markdown(setup: str, cost_rows, sdpa_rows) -> str:
    lines = [
        "# Attention cost: full 3D vs factorised, SDPA vs naive",
        "",
        "Written by `python benchmarks/bench_attention.py`. " + setup,
        "",
        "Peak memory is measured: the most bytes held at once by tensors allocated during the call "
        "(CPU: torch.profiler memory events; CUDA: `max_memory_allocated`). Time: best of several runs "
        "(the machine may be shared: compare rows of one run, not runs of different days).",
        "",
        "## Findings",
        "",
        *findings(cost_rows, sdpa_rows),
        "",
        f"## 1. One attention layer on a (1, T, H, W, {DIM}) grid, {HEADS} heads",
        "",
        "The package modules as they are (SDPA inside) and the same modules with the kernel swapped "
        "for `naive_attention`.",
        "",
        "FLOPs = attention core `4·S²·D` per sequence of S tokens + projections `8·D²` per token "
        "(full 3D: one sequence of T·H·W; spatial: T of H·W; temporal: H·W of T). "
        "'naive scores' = bytes a naive implementation stores for the weights of all heads.",
        "",
        "| T | H·W | attention | GFLOP | SDPA time (ms) | SDPA peak (MiB) | naive time (ms) | naive peak (MiB) "
        "| naive scores (MiB) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in cost_rows:
        lines.append(
            f"| {r['T']} | {r['H*W']} | {r['kind']} | {r['GFLOP']:.3f} | {r['sdpa_seconds'] * 1e3:.1f} | "
            f"{r['sdpa_peak_MiB']:.1f} | {r['naive_seconds'] * 1e3:.1f} | {r['naive_peak_MiB']:.1f} | "
            f"{r['naive_scores_MiB']:.1f} |"
        )
    lines += [
        "",
        f"## 2. `scaled_dot_product_attention` vs naive `softmax(QKᵀ/√d)V`, (1, {HEADS}, N, {DIM})",
        "",
        "| N | implementation | mask | time (ms) | peak memory (MiB) | one score matrix set (MiB) |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in sdpa_rows:
        lines.append(
            f"| {r['N']} | {r['impl']} | {r['mask']} | {r['seconds'] * 1e3:.1f} | {r['peak_MiB']:.1f} | {r['scores_MiB']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.chmod(handle.name, 0o644)  # a temporary file is private; a result is for everyone to read
    os.replace(handle.name, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier on a shared machine)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.quick:
        frames, sides, lengths, naive_limit = [4, 8], [8], [256, 512], 512
    else:
        frames, sides, lengths, naive_limit = [4, 8, 16, 32], [8, 16, 24, 32], [256, 1024, 2048, 4096, 8192], 4096
    name = "CPU" if device.type == "cpu" else torch.cuda.get_device_name(device)
    setup = (
        f"Device: {name} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU thread(s), float32, forward only."
    )
    print(setup)
    print("1. full vs factorised")
    cost_rows = factorised_table(device, frames, sides, fixed_frames=8, fixed_side=16, repeats=args.repeats)
    print("2. SDPA vs naive")
    sdpa_rows = sdpa_table(device, lengths, args.repeats, naive_limit)
    text = markdown(setup, cost_rows, sdpa_rows)
    print(text)
    if args.quick:
        return
    stem = "attention" if device.type == "cpu" else f"attention_{device.type}"
    write_atomic(RESULTS / f"{stem}.md", text)
    write_atomic(RESULTS / f"{stem}.json", json.dumps({"setup": setup, "factorised": cost_rows, "sdpa": sdpa_rows}, indent=1))


if __name__ == "__main__":
    main()
