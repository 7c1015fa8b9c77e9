"""Classifier-free guidance (Ho & Salimans 2022).

One model learns both p(x | label) and p(x): during training the label is replaced
by the *null* label ``NULL_LABEL = 10`` (the extra embedding row after the digits
0-9) with probability ``p_uncond`` (``training_loss(..., p_uncond=0.1)``, which uses
:func:`vdmcourse.nn.embeddings.drop_labels`). At sampling time the two
predictions are combined,

    guided = uncond + scale * (cond - uncond),

on *all* channels (the public DiT code guides 3 of its 4 latent channels, an
inherited quirk; we guide every one). ``scale = 1`` is the conditional model
exactly, ``scale = 0`` the unconditional one, ``scale > 1`` pushes samples towards
what makes the label likely. The combination is affine with weights summing to 1,
so guiding eps-, x0-, v- or flow-predictions gives the same sample.
"""

from __future__ import annotations

import torch

__all__ = ["NULL_LABEL", "check_labels", "classifier_free_guidance", "guided_output"]

NULL_LABEL = 10


def check_labels(cond: torch.Tensor, batch: int | None = None, name: str = "cond") -> torch.Tensor:
    """Return ``cond`` if it is a LongTensor of labels of shape ``(B,)`` or ``(B, K)``
    (with ``B == batch`` when ``batch`` is given)."""
    if not isinstance(cond, torch.Tensor) or cond.dtype != torch.long:
        got = cond.dtype if isinstance(cond, torch.Tensor) else type(cond).__name__
        raise TypeError(f"{name} must be a LongTensor of digit labels of shape (B,) or (B, K); got {got}")
    if cond.ndim not in (1, 2) or (batch is not None and cond.shape[0] != batch):
        expected = "(B,) or (B, K)" + (f" with B = {batch}" if batch is not None else "")
        raise ValueError(f"{name} must have shape {expected}; got {tuple(cond.shape)}")
    return cond


def classifier_free_guidance(cond_out: torch.Tensor, uncond_out: torch.Tensor, scale: float) -> torch.Tensor:
    """``uncond_out + scale * (cond_out - uncond_out)`` on every channel; same shapes in and out."""
    if cond_out.shape != uncond_out.shape:
        raise ValueError(
            f"classifier_free_guidance: cond_out {tuple(cond_out.shape)} and uncond_out "
            f"{tuple(uncond_out.shape)} must have the same shape"
        )
    return uncond_out + scale * (cond_out - uncond_out)


def guided_output(model, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, scale: float = 1.0) -> torch.Tensor:
    """The model's guided prediction at ``(x, t)``.

    ``x``: ``(B, ...)`` (a video: ``(B, T, C, H, W)`` in ``[-1, 1]``), ``t``: ``(B,)`` in
    ``[0, 1]``, ``cond``: labels ``(B,)`` / ``(B, K)`` or ``None``. With ``scale == 1`` (or
    no labels) this is one plain call ``model(x, t, cond=cond)``; otherwise one batched
    forward of ``2B`` samples -- the labels and the null label -- combined by
    :func:`classifier_free_guidance`. Returns ``x``'s shape.
    """
    if cond is None:
        if scale != 1.0:
            raise ValueError(f"guidance_scale={scale} needs labels to guide towards; got cond=None")
        return model(x, t, cond=None)
    check_labels(cond, x.shape[0])
    if scale == 1.0:
        return model(x, t, cond=cond)
    null = torch.full_like(cond, NULL_LABEL)
    out = model(torch.cat([x, x]), torch.cat([t, t]), cond=torch.cat([cond, null]))  # (2B, ...)
    cond_out, uncond_out = out.chunk(2)
    return classifier_free_guidance(cond_out, uncond_out, scale)
