"""Planted wrong answers that every self-check must fail (a test helper).

A check that only looks for the mistakes it names can pass answers nobody would
call right. :func:`planted_answers` turns a check's reference function into the
three neighbours of an untouched stub that the course's design names:

* ``"input unchanged"`` -- the first tensor argument handed straight back;
* ``"zeros"`` -- zeros of the reference answer's shape;
* ``"right shape, wrong values"`` -- random values of the reference answer's shape.

Outputs that are tuples of tensors keep their structure; plain numbers become
the first argument, 0 and the reference plus one.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["PLANTED_KINDS", "planted_answers"]

PLANTED_KINDS = ("input unchanged", "zeros", "right shape, wrong values")


def _wrong_values(value, generator: torch.Generator):
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            return torch.rand(value.shape, generator=generator) < 0.5
        if not value.is_floating_point():
            return value + 1 + torch.randint(0, 3, value.shape, generator=generator).to(value.dtype)
        return torch.randn(value.shape, generator=generator, dtype=value.dtype).to(value.device)
    if isinstance(value, tuple):
        return tuple(_wrong_values(item, generator) for item in value)
    return value + 1


def _zeros(value):
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, tuple):
        return tuple(_zeros(item) for item in value)
    return type(value)(0)


def planted_answers(reference: Callable) -> dict[str, Callable]:
    """``{kind: answer}`` for the kinds in :data:`PLANTED_KINDS`; each answer takes the
    reference's arguments."""

    def unchanged(*args, **kwargs):
        out = reference(*args, **kwargs)
        tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
        if isinstance(out, tuple) and len(tensors) >= len(out):
            return tuple(tensors[: len(out)])
        return tensors[0] if tensors else args[0]

    def zeros(*args, **kwargs):
        return _zeros(reference(*args, **kwargs))

    def wrong(*args, **kwargs):
        return _wrong_values(reference(*args, **kwargs), torch.Generator().manual_seed(123))

    return dict(zip(PLANTED_KINDS, (unchanged, zeros, wrong)))
