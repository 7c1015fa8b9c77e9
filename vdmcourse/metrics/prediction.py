"""Frame-prediction metrics for the 10 -> 10 setting (see 10 context frames, predict
the next 10): MSE, PSNR and SSIM per frame, and two baselines a predictor must beat.

Two MSE conventions are in use and differ by the pixel count (1,024 for 32², 4,096
for 64²): the **per-pixel mean** (what a loss reports) and the **per-frame sum** over
pixels (what OpenSTL's Moving MNIST tables report, e.g. SimVP 21.2 at 64²). Both are
returned, named, so a number is never quoted without its convention.

Baselines: :func:`copy_last_frame` repeats the last context frame (a model that
learned nothing about motion); the constant-velocity oracle in
:mod:`vdmcourse.metrics.physics` moves each digit on with its true velocity (an
upper bound for a model that only knows physics).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["frame_mse", "psnr", "ssim", "prediction_scores", "copy_last_frame"]


def _check_pair(prediction: torch.Tensor, target: torch.Tensor, caller: str) -> None:
    for name, value in (("prediction", prediction), ("target", target)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{caller}: {name} must be a torch.Tensor of shape (B, T, C, H, W); got {type(value).__name__}")
        if value.dim() != 5:
            raise ValueError(f"{caller}: {name} must have shape (B, T, C, H, W) with frames in [0, 1]; got {tuple(value.shape)}")
    if prediction.shape != target.shape:
        raise ValueError(f"{caller}: prediction and target must have the same shape; got {tuple(prediction.shape)} and {tuple(target.shape)}")


def frame_mse(prediction: torch.Tensor, target: torch.Tensor, *, per: str = "pixel") -> torch.Tensor:
    """Squared error per frame, ``(B, T)``, for videos ``(B, T, C, H, W)`` in [0, 1].

    ``per="pixel"`` averages over ``C, H, W``; ``per="frame"`` sums over them (the
    OpenSTL convention: multiply by the pixel count).
    """
    _check_pair(prediction, target, "frame_mse")
    squared = (prediction.float() - target.float()).square()
    if per == "pixel":
        return squared.mean(dim=(2, 3, 4))
    if per == "frame":
        return squared.sum(dim=(2, 3, 4))
    raise ValueError(f"frame_mse: per must be 'pixel' or 'frame'; got {per!r}")


def psnr(prediction: torch.Tensor, target: torch.Tensor, *, max_db: float = 100.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per frame in dB, ``(B, T)``, for data range 1.

    ``10 log10(1 / per-pixel MSE)``; identical frames give ``max_db`` instead of inf,
    so averages stay finite.
    """
    mse = frame_mse(prediction, target, per="pixel")
    return (10 * torch.log10(1 / mse.clamp_min(10 ** (-max_db / 10)))).clamp_max(max_db)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-offsets.square() / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return torch.outer(kernel, kernel)[None, None]  # (1, 1, size, size)


def ssim(prediction: torch.Tensor, target: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per frame, ``(B, T)``, for videos ``(B, T, C, H, W)`` in [0, 1].

    Wang et al. 2004: local means, variances and covariance under an 11x11 Gaussian
    window (sigma 1.5), constants ``(0.01·L)²`` and ``(0.03·L)²`` with L = 1, averaged
    over the positions where the window fits inside the frame ("valid") and over
    channels. 1 means identical; frames must be at least ``window`` pixels wide.
    """
    _check_pair(prediction, target, "ssim")
    height, width = prediction.shape[-2:]
    if min(height, width) < window:
        raise ValueError(f"ssim: frames must be at least {window}x{window} for the window; got {height}x{width}")
    x = rearrange(prediction.float(), "b t c h w -> (b t c) 1 h w")
    y = rearrange(target.float(), "b t c h w -> (b t c) 1 h w")
    kernel = _gaussian_window(window, sigma).to(x.device)
    mean_x, mean_y = F.conv2d(x, kernel), F.conv2d(y, kernel)  # (BTC, 1, H-w+1, W-w+1)
    var_x = F.conv2d(x * x, kernel) - mean_x.square()
    var_y = F.conv2d(y * y, kernel) - mean_y.square()
    cov = F.conv2d(x * y, kernel) - mean_x * mean_y
    c1, c2 = 0.01**2, 0.03**2
    local = ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x.square() + mean_y.square() + c1) * (var_x + var_y + c2))
    per_channel = local.mean(dim=(1, 2, 3))  # (BTC,)
    b, t, c = prediction.shape[:3]
    return rearrange(per_channel, "(b t c) -> b t c", b=b, t=t, c=c).mean(dim=2)


def prediction_scores(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """All frame-prediction metrics for videos ``(B, T, C, H, W)`` in [0, 1], over all clips and frames.

    Returns ``mse_per_pixel``, ``mse_per_frame`` (sum over the frame's pixels, averaged
    over frames), ``psnr_db`` and ``ssim`` (mean over frames). ``psnr_db`` is the PSNR of
    the mean per-pixel MSE: averaging per-frame PSNRs instead lets frames predicted
    exactly (infinite PSNR, capped) dominate the average.
    """
    mse = frame_mse(prediction, target, per="pixel")
    return {
        "mse_per_pixel": mse.mean().item(),
        "mse_per_frame": frame_mse(prediction, target, per="frame").mean().item(),
        "psnr_db": min(10 * math.log10(1 / max(mse.mean().item(), 1e-10)), 100.0),
        "ssim": ssim(prediction, target).mean().item(),
    }


def copy_last_frame(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The copy-last-frame baseline: ``context`` ``(B, T0, C, H, W)`` -> ``(B, horizon, C, H, W)``,
    every predicted frame equal to the last context frame."""
    if not isinstance(context, torch.Tensor) or context.dim() != 5:
        shape = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
        raise ValueError(f"copy_last_frame: context must have shape (B, T0, C, H, W); got {shape}")
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"copy_last_frame: horizon must be a positive int; got {horizon!r}")
    return context[:, -1:].expand(-1, horizon, -1, -1, -1).clone()
