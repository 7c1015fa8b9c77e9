"""Classifier-free guidance (Ho & Salimans 2022).

One model learns both p(x | label) and p(x): during training the label is replaced
by the model's *null* label -- ``num_classes``, the extra embedding row after the
classes (10 for the digits 0-9, :data:`NULL_LABEL`) -- with probability ``p_uncond`` (``training_loss(..., p_uncond=0.1)``, which uses
:func:`vdmcourse.nn.embeddings.drop_labels`). At sampling time the two
predictions are combined,

    guided = uncond + scale * (cond - uncond),

on *all* channels (the public DiT code guides 3 of its 4 latent channels, an
inherited quirk; we guide every one). ``scale = 1`` is the conditional model
exactly, ``scale = 0`` the unconditional one, ``scale > 1`` pushes samples towards
what makes the label likely. The combination is affine with weights summing to 1,
so guiding eps-, x0-, v- or flow-predictions gives the same sample.

The null label is read from the model (:func:`null_label_of`), never assumed: a
model with 5 or 20 classes has null label 5 or 20. Labels are integer tensors of
any integer dtype (int64, int32, int16, int8, uint8), the rule the models keep too.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NULL_LABEL", "LABEL_DTYPES", "check_labels", "check_scale", "null_label_of", "classifier_free_guidance", "guided_output"]

NULL_LABEL = 10  # the null label of the course's 10-digit models (num_classes = 10)
LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def null_label_of(model, null_label: int | None = None) -> int:
    """The label that means "no label" for ``model``: ``null_label`` if given, else the
    model's ``null_label`` attribute, its ``label_embed.null_label`` or its
    ``config.num_classes``; a plain function with none of these gets :data:`NULL_LABEL`."""
    if null_label is None:
        for owner, name in ((model, "null_label"), (getattr(model, "label_embed", None), "null_label"),
                            (getattr(model, "config", None), "num_classes")):
            value = getattr(owner, name, None)
            if value is not None:
                null_label = value
                break
        else:
            null_label = NULL_LABEL
    if not isinstance(null_label, int) or isinstance(null_label, bool) or null_label < 0:
        raise ValueError(f"null_label must be an int >= 0 (the model's num_classes); got {null_label!r}")
    return null_label


def check_labels(cond: torch.Tensor, batch: int | None = None, name: str = "cond") -> torch.Tensor:
    """Return ``cond`` as int64 if it is an integer tensor of labels (any of
    :data:`LABEL_DTYPES`) of shape ``(B,)`` or ``(B, K)`` (with ``B == batch`` when
    ``batch`` is given)."""
    if not isinstance(cond, torch.Tensor) or cond.dtype not in LABEL_DTYPES:
        got = cond.dtype if isinstance(cond, torch.Tensor) else type(cond).__name__
        raise TypeError(f"{name} must be an integer tensor (a LongTensor, or int32/int16/int8/uint8) of labels of shape (B,) or (B, K); got {got}")
    if cond.ndim not in (1, 2) or (batch is not None and cond.shape[0] != batch):
        expected = "(B,) or (B, K)" + (f" with B = {batch}" if batch is not None else "")
        raise ValueError(f"{name} must have shape {expected}; got {tuple(cond.shape)}")
    return cond.long()


def check_scale(scale, name: str = "guidance_scale") -> float:
    """Return ``scale`` if it is a finite real number (NaN and infinity are refused)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"{name} must be a finite number (1: no guidance); got {scale!r}")
    return float(scale)


def classifier_free_guidance(cond_out: torch.Tensor, uncond_out: torch.Tensor, scale: float) -> torch.Tensor:
    """``uncond_out + scale * (cond_out - uncond_out)`` on every channel; same shapes in and out."""
    if cond_out.shape != uncond_out.shape:
        raise ValueError(
            f"classifier_free_guidance: cond_out {tuple(cond_out.shape)} and uncond_out "
            f"{tuple(uncond_out.shape)} must have the same shape"
        )
    return uncond_out + scale * (cond_out - uncond_out)


def guided_output(
    model, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, scale: float = 1.0, *, null_label: int | None = None
) -> torch.Tensor:
    """The model's guided prediction at ``(x, t)``.

    ``x``: ``(B, ...)`` (a video: ``(B, T, C, H, W)`` in ``[-1, 1]``), ``t``: ``(B,)`` in
    ``[0, 1]``, ``cond``: labels ``(B,)`` / ``(B, K)`` or ``None``. With ``scale == 1`` (or
    no labels) this is one plain call ``model(x, t, cond=cond)``; otherwise one batched
    forward of ``2B`` samples -- the labels and the model's null label
    (:func:`null_label_of`; ``null_label`` overrides it) -- combined by
    :func:`classifier_free_guidance`. Returns ``x``'s shape.

    A guidance-distilled model (``model.guidance_distilled``, e.g.
    :class:`~vdmcourse.diffusion.distillation.GuidedUNet3D`) learned that combination:
    it is called once, ``model(x, t, cond=cond, guidance=scale)``, with batch ``B``.
    """
    scale = check_scale(scale)
    if getattr(model, "guidance_distilled", False) or getattr(getattr(model, "_orig_mod", None), "guidance_distilled", False):
        if cond is None and scale != 1.0:
            raise ValueError(f"guidance_scale={scale} needs labels to guide towards; got cond=None")
        return model(x, t, cond=None if cond is None else check_labels(cond, x.shape[0]), guidance=scale)
    if cond is None:
        if scale != 1.0:
            raise ValueError(f"guidance_scale={scale} needs labels to guide towards; got cond=None")
        return model(x, t, cond=None)
    cond = check_labels(cond, x.shape[0])
    if scale == 1.0:
        return model(x, t, cond=cond)
    null = torch.full_like(cond, null_label_of(model, null_label))
    out = model(torch.cat([x, x]), torch.cat([t, t]), cond=torch.cat([cond, null]))  # (2B, ...)
    cond_out, uncond_out = out.chunk(2)
    return classifier_free_guidance(cond_out, uncond_out, scale)
