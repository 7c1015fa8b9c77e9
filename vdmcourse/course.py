"""Run-time settings shared by the whole course: quick mode, device, seeding, paths,
and the one place where pixel values change range.

Quick mode (``VDM_QUICK=1``, set by CI) shrinks budgets -- training steps, sample
counts, sizes -- through :func:`budget`, so that a lesson runs the same code path in
both modes and only the numbers differ.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "is_quick",
    "budget",
    "pick_device",
    "seed_everything",
    "REPO_ROOT",
    "DATA_DIR",
    "CHECKPOINT_DIR",
    "CACHE_DIR",
    "to_model_range",
    "to_unit_range",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
# Shipped data (MNIST subset, checkpoints) lives in the repository's data/ folder;
# VDM_DATA_DIR points elsewhere, e.g. for a non-editable install.
DATA_DIR = Path(os.environ.get("VDM_DATA_DIR", REPO_ROOT / "data"))
CHECKPOINT_DIR = DATA_DIR / "checkpoints"
# Downloads (full MNIST, the official Moving MNIST file) go to a git-ignored cache.
CACHE_DIR = Path(os.environ.get("VDM_CACHE_DIR", DATA_DIR / "cache"))

_FALSE = {"", "0", "false", "no", "off"}


def is_quick() -> bool:
    """True when ``VDM_QUICK`` is set to anything but 0/false/no/off (read on every call)."""
    return os.environ.get("VDM_QUICK", "").strip().lower() not in _FALSE


def budget(full, quick):
    """Return ``quick`` in quick mode and ``full`` otherwise.

    Every lesson sizes its work through this one helper, e.g.
    ``steps = budget(full=2000, quick=20)``.
    """
    return quick if is_quick() else full


def pick_device(prefer: str | None = None) -> torch.device:
    """The device to run on: ``prefer`` if given, else cuda, then mps, then cpu.

    ``VDM_DEVICE`` (e.g. ``cpu``) overrides the automatic choice.
    """
    name = prefer or os.environ.get("VDM_DEVICE")
    if name:
        try:
            device = torch.device(name)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps; got {name!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"pick_device: prefer={name!r} but CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"pick_device: prefer={name!r} but MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a CPU ``torch.Generator``
    seeded the same way, for code that takes an explicit generator."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed_everything: seed must be a non-negative int; got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Map frames from the data range ``[0, 1]`` to the model range ``[-1, 1]``."""
    return x * 2 - 1


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map frames from the model range ``[-1, 1]`` back to ``[0, 1]`` (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)
