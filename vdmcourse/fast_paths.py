"""The fast paths: bf16 autocast, channels-last convolutions, ``torch.compile``.

Each is a switch that changes how fast a model runs, never what it computes beyond
rounding (the tests bound the difference):

* **precision** -- ``"fp32"``, ``"bf16"`` (``torch.autocast`` to bfloat16: matmuls and
  convolutions in bf16, reductions and the sampler's state in fp32) or ``"auto"``
  (:func:`resolve_precision`): bf16 on a CUDA GPU that supports it; on a CPU, bf16
  only where a one-off micro-benchmark finds it faster than fp32. bf16 is fast on
  CPUs with native bf16 instructions (AVX-512 BF16, AMX) and slower than fp32 on
  CPUs that emulate it, so it is measured, not assumed. The measurement is cached per
  machine (CPU model, threads, torch version) in ``CACHE_DIR/fast_paths.json``.
* **channels-last** (:func:`channels_last`) -- 2-D convolution weights stored as
  ``(O, H, W, I)`` in memory, which oneDNN and cuDNN run faster; activations follow
  the weights. Shapes, and the public ``(B, T, C, H, W)`` layout, do not change; only
  strides do. Temporary: the weights are contiguous again afterwards (safetensors
  saves contiguous tensors only).
* **compile** (:func:`compiled`) -- ``torch.compile`` of a model, cached per model.
  Compiling takes a minute or more, so it is never on by default, in CI or in quick mode.
"""

from __future__ import annotations

import json
import os
import platform
import time
import weakref
from contextlib import contextmanager

import torch
from torch import nn

from vdmcourse.course import CACHE_DIR

__all__ = ["PRECISIONS", "resolve_precision", "autocast", "bf16_benchmark", "channels_last", "compiled"]

PRECISIONS = ("fp32", "bf16", "auto")
# bf16 must beat fp32 by this factor in the micro-benchmark: a tie is not worth the rounding.
_BF16_MARGIN = 1.1


def _check_precision(precision) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"fp32"`` or ``"bf16"``: what ``precision`` means on ``device`` (``"auto"`` decided
    as the module docstring says; mps and other devices: fp32)."""
    _check_precision(precision)
    device = torch.device(device)
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if bf16_benchmark()["bf16_faster"] else "fp32"
    return "fp32"


def autocast(precision: str, device: torch.device | str):
    """A ``torch.autocast`` context for ``precision`` on ``device`` (disabled for fp32)."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=resolved == "bf16")


def _machine_key() -> str:
    cpu = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu} | {torch.get_num_threads()} threads | torch {torch.__version__}"


def _time(run, repeats: int = 5, give_up: float = float("inf")) -> float:
    """Median time of ``run``; after one timed run slower than ``give_up``, that one."""
    run()  # warm-up: oneDNN builds its kernels on the first call
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
        if times[-1] > give_up:  # an emulated bf16 can be 30x slower: no need to wait for more
            return times[-1]
    return sorted(times)[len(times) // 2]


def _measure_bf16() -> dict:
    """Median time of a conv + matmul workload the size of the course's CPU models, in
    fp32 and under bf16 autocast."""
    generator = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.Conv2d(64, 32, 3, padding=1))
    x = torch.randn(64, 32, 16, 16, generator=generator)
    a, b = torch.randn(640, 256, generator=generator), torch.randn(256, 256, generator=generator)

    def run():
        with torch.no_grad():
            net(x)
            for _ in range(4):
                a @ b

    def run_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            run()

    fp32 = _time(run)
    try:
        bf16 = _time(run_bf16, give_up=2 * fp32)
    except RuntimeError:  # no bf16 kernels at all
        bf16 = float("inf")
    return {"fp32_s": fp32, "bf16_s": bf16, "bf16_faster": bf16 * _BF16_MARGIN < fp32}


def bf16_benchmark(*, refresh: bool = False) -> dict:
    """Is bf16 autocast faster than fp32 on this CPU? Measured once per machine (about a
    second) and cached in ``CACHE_DIR/fast_paths.json``; ``refresh`` measures again.
    Returns ``{"fp32_s", "bf16_s", "bf16_faster", "machine"}``."""
    path = CACHE_DIR / "fast_paths.json"
    key = _machine_key()
    cache = {}
    if path.is_file():
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
    if key in cache and not refresh:
        return {**cache[key], "machine": key}
    cache[key] = _measure_bf16()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError:  # a read-only install: measure again next time
        pass
    return {**cache[key], "machine": key}


@contextmanager
def channels_last(model, enabled: bool = True):
    """Within the block, store ``model``'s 2-D convolution weights channels-last; put
    them back contiguous on exit. Outputs equal the contiguous ones up to rounding."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)] if enabled and isinstance(model, nn.Module) else []
    for conv in convs:
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        for conv in convs:
            conv.weight.data = conv.weight.data.contiguous()


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model)``, compiled once per model and reused (the first call
    compiles: a minute or more on a CPU). Same weights: training the model changes it."""
    if model not in _COMPILED:
        _COMPILED[model] = torch.compile(model)
    return _COMPILED[model]
