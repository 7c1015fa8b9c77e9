"""The course's own evaluation network, trained on Moving MNIST ground truth.

One small model, :class:`Evaluator`, holds two parts:

* a **video encoder** -- (2+1)D convolutions (a 3x3 spatial conv per frame, then a
  3-tap conv over time), frames pooled over space and the per-frame vectors of all T
  frames mapped to a ``feature_dim`` vector. It is trained to read from a clip which
  digits it shows and how each moves (velocity at the first and at the last frame,
  so it must see bounces and the direction of time). Its features are the space in
  which :mod:`vdmcourse.metrics.distances` compares sets of clips;
* a **per-frame digit classifier** -- a small CNN on S×S crops centred on a digit's
  ink centroid, used by :func:`vdmcourse.metrics.temporal.identity_persistence`.

The shipped checkpoint ``data/checkpoints/evaluator-cpu.safetensors`` is made by
``python -m vdmcourse train --preset evaluator-cpu``; its manifest entry records the
command, wall time and held-out accuracies. The network only accepts the clip size
it was trained for (``canvas``, ``frames``, ``digit_size`` in its config): features of
another size would be meaningless, so they are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.metrics.physics import check_video, ink_centroid
from vdmcourse.pretrained import load_pretrained

__all__ = [
    "EvaluatorConfig",
    "Evaluator",
    "crop_digits",
    "evaluator_batch",
    "evaluator_loss",
    "evaluator_accuracy",
    "video_features",
    "load_evaluator",
]

EVALUATOR_NAME = "evaluator-cpu"


@dataclass
class EvaluatorConfig:
    """What the evaluation network sees and how big it is.

    canvas, frames, digit_size  the clip size it is trained for (and accepts)
    widths                      channels of the three (2+1)D stages (each halves H and W)
    feature_dim                 size of the feature vector used for distances
    classifier_width            channels of the per-frame digit classifier
    max_speed                   px/frame that velocity targets are divided by
    """

    canvas: int = 32
    frames: int = 10
    digit_size: int = 16
    widths: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 64
    classifier_width: int = 32
    max_speed: float = 3.0

    @classmethod
    def for_clips(cls, config: MovingMNISTConfig, **overrides) -> EvaluatorConfig:
        """An evaluator sized for the clips ``config`` makes."""
        return cls(canvas=config.canvas, frames=config.frames, digit_size=config.digit_size, **overrides)


def digit_classifier(width: int) -> nn.Sequential:
    """The evaluator's per-digit crop classifier, ``(N, 1, S, S) -> (N, 10)`` logits: three
    3x3 convs (two with stride 2), global average pool, linear. The captioner and the mini-CLIP
    build the same one, so they can start from the evaluator's weights (same state-dict keys)."""
    c = width
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.SiLU(),
        nn.Conv2d(c, c, 3, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, 10),
    )


class _Stage(nn.Module):
    """(2+1)D stage: spatial 3x3 conv (stride 2) then temporal 3-tap conv, each with a
    per-frame GroupNorm and SiLU. (B, C, T, H, W) -> (B, C', T, H/2, W/2)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.spatial = nn.Conv3d(channels_in, channels_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.temporal = nn.Conv3d(channels_out, channels_out, (3, 1, 1), padding=(1, 0, 0))
        self.norm1 = nn.GroupNorm(8, channels_out)
        self.norm2 = nn.GroupNorm(8, channels_out)

    def _norm(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        # Normalise each frame on its own: a norm over (C, T, H, W) would mix frames.
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        return rearrange(norm(frames), "(b t) c h w -> b c t h w", b=x.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self._norm(self.norm1, self.spatial(x)))  # (B, C', T, H/2, W/2)
        return x + F.silu(self._norm(self.norm2, self.temporal(x)))


class Evaluator(nn.Module):
    """Video encoder plus per-frame digit classifier (see the module docstring).

    ``model(video)`` returns features ``(B, feature_dim)`` of ``video`` ``(B, T, 1, H, W)``
    in [0, 1]; :meth:`heads` turns features into digit-presence logits ``(B, 10)`` and
    per-class velocities ``(B, 10, 4)``; :meth:`classify` gives digit logits ``(N, 10)``
    for crops ``(N, S, S)`` in [0, 1].
    """

    def __init__(self, config: EvaluatorConfig):
        super().__init__()
        self.config = config
        widths = (1, *config.widths)
        self.stages = nn.ModuleList(_Stage(a, b) for a, b in zip(widths, widths[1:]))
        self.project = nn.Linear(config.widths[-1] * config.frames, config.feature_dim)
        self.presence = nn.Linear(config.feature_dim, 10)
        self.velocity = nn.Linear(config.feature_dim, 10 * 4)
        self.classifier = digit_classifier(config.classifier_width)

    def check_clips(self, video: torch.Tensor, caller: str) -> torch.Tensor:
        """Refuse videos of a size the network was not trained for."""
        video = check_video(video, caller=caller)
        c = self.config
        if tuple(video.shape[1:]) != (c.frames, 1, c.canvas, c.canvas):
            raise ValueError(
                f"{caller}: this evaluator was trained on clips of shape (B, {c.frames}, 1, {c.canvas}, {c.canvas}); "
                f"got {tuple(video.shape)}. Features of other sizes mean nothing: train an evaluator for that size "
                "(EvaluatorConfig.for_clips) or crop/resample your clips to the trained size"
            )
        return video

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.check_clips(video, "Evaluator") * 2 - 1, "b t c h w -> b c t h w")
        for stage in self.stages:
            x = stage(x)  # (B, C, T, H/2^i, W/2^i)
        per_frame = x.mean(dim=(3, 4))  # (B, C, T)
        return F.silu(self.project(rearrange(per_frame, "b c t -> b (c t)")))  # (B, feature_dim)

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Digit-presence logits ``(B, 10)`` and velocities ``(B, 10, 4)`` (first-frame and
        last-frame (row, col) velocity of each class's digit, in units of ``max_speed``)."""
        return self.presence(features), rearrange(self.velocity(features), "b (k v) -> b k v", v=4)

    def classify(self, crops: torch.Tensor) -> torch.Tensor:
        """Digit logits ``(N, 10)`` for crops ``(N, S, S)`` in [0, 1] centred on a digit's ink."""
        size = self.config.digit_size
        if crops.dim() != 3 or tuple(crops.shape[1:]) != (size, size):
            raise ValueError(f"Evaluator.classify expects crops of shape (N, {size}, {size}); got {tuple(crops.shape)}")
        return self.classifier(crops[:, None] * 2 - 1)


def crop_digits(video: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Cut a ``size``×``size`` square centred on each digit.

    video    (B, T, 1, H, W) in [0, 1]
    centres  (B, T, K, 2) (row, col) in pixels; NaN gives an empty (zero) crop
    Returns  (B, T, K, size, size), zero outside the frame.
    """
    b, t, _, h, w = video.shape
    corner = (centres - (size - 1) / 2).round().nan_to_num(-2.0 * size).long().clamp(-size, max(h, w))  # (B, T, K, 2)
    padded = F.pad(video[:, :, 0], (size, size, size, size))  # (B, T, H + 2S, W + 2S)
    offsets = torch.arange(size)
    rows = (corner[..., 0, None] + size + offsets)[..., :, None]  # (B, T, K, S, 1)
    cols = (corner[..., 1, None] + size + offsets)[..., None, :]  # (B, T, K, 1, S)
    batch = torch.arange(b)[:, None, None, None, None]
    time = torch.arange(t)[None, :, None, None, None]
    crops = padded[batch, time, rows, cols]  # (B, T, K, S, S)
    return crops.masked_fill(~torch.isfinite(centres).all(-1)[..., None, None], 0.0)


def evaluator_batch(
    generator: torch.Generator | None, config: EvaluatorConfig, *, batch_size: int = 64, split: str = "train"
) -> list[dict[str, torch.Tensor]]:
    """Training clips for the evaluator with their ground truth, as two dicts (the
    fields of :class:`vdmcourse.data.Clips`): half the clips with one digit, half with
    two; speeds uniform in [1, ``max_speed``] px/frame; deterministic bounces; digits
    from ``split``. The batch source a :class:`vdmcourse.train.Trainer` calls."""
    batch = []
    for digits, n in ((1, batch_size - batch_size // 2), (2, batch_size // 2)):
        data = MovingMNISTConfig(canvas=config.canvas, frames=config.frames, digits=digits, digit_size=config.digit_size,
                                 speed=(1.0, config.max_speed), split=split)
        batch.append(vars(generate_clips(n, data, generator=generator)))
    return batch


def _targets(clips: dict[str, torch.Tensor], max_speed: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Presence (N, 10), velocity (N, 10, 4) and its mask (N, 10) from ground truth."""
    one_hot = F.one_hot(clips["labels"], 10).float()  # (N, K, 10)
    counts = one_hot.sum(1)  # (N, 10)
    ends = torch.cat([clips["velocities"][:, 0], clips["velocities"][:, -1]], dim=-1) / max_speed  # (N, K, 4)
    velocity = torch.einsum("nkc,nkv->ncv", one_hot, ends)
    # A class shown twice has two velocities: no single target, so it is left out.
    return (counts > 0).float(), velocity, counts == 1


def _true_centres(clips: dict[str, torch.Tensor]) -> torch.Tensor:
    """Ink centroids (N, T, K, 2) of the digits, from their pasted positions and images."""
    return clips["positions"].round() + ink_centroid(clips["digits"])[:, None]


def evaluator_loss(model: Evaluator, batch: list[dict[str, torch.Tensor]], generator: torch.Generator | None = None) -> torch.Tensor:
    """The evaluator's training loss on a batch from :func:`evaluator_batch`: presence
    BCE + masked velocity MSE (video encoder) + cross-entropy of the digit classifier
    on crops of 3 random frames per clip, centred on the true ink centroids jittered
    by up to 1 px. ``generator`` draws the frames and jitter."""
    loss = 0.0
    for clips in batch:
        video = clips["video"]
        presence, velocity, known = _targets(clips, model.config.max_speed)
        logits, predicted = model.heads(model(video))
        loss = loss + F.binary_cross_entropy_with_logits(logits, presence)
        loss = loss + ((predicted - velocity).square().mean(-1) * known).sum() / known.sum().clamp_min(1)
        # Frames of one clip are near copies, so the classifier sees 3 random ones per clip.
        device = video.device
        frames = torch.rand(video.shape[:2], generator=generator, device=device).argsort(1)[:, :3]  # (N, 3)
        rows = torch.arange(len(video), device=device)[:, None]
        centres = _true_centres(clips)[rows, frames]  # (N, 3, K, 2)
        centres = centres + torch.rand(centres.shape, generator=generator, device=device) * 2 - 1
        crops = crop_digits(video[rows, frames], centres, model.config.digit_size)  # (N, 3, K, S, S)
        labels = clips["labels"][:, None].expand(-1, 3, -1)
        loss = loss + F.cross_entropy(model.classify(crops.flatten(0, 2)), labels.flatten())
    return loss


@torch.no_grad()
def evaluator_accuracy(model: Evaluator, clips: int = 512, *, seed: int = 1) -> dict[str, float]:
    """Held-out scores on clips drawn from the *test* digits (never seen in training):
    presence accuracy (all 10 yes/no answers right), velocity error in px/frame, and
    per-frame digit accuracy on crops at the true ink centroids."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    exact = total = digit_right = digit_total = 0
    velocity_errors = []
    for data in evaluator_batch(generator, model.config, batch_size=clips, split="test"):
        presence, velocity, known = _targets(data, model.config.max_speed)
        logits, predicted = model.heads(model(data["video"]))
        exact += ((logits > 0).float() == presence).all(1).sum().item()
        total += len(presence)
        velocity_errors.append(((predicted - velocity).abs() * model.config.max_speed)[known].flatten())  # px/frame
        crops = crop_digits(data["video"], _true_centres(data), model.config.digit_size).flatten(0, 2)
        labels = data["labels"][:, None].expand(-1, data["video"].shape[1], -1).flatten()
        digit_right += (model.classify(crops).argmax(1) == labels).sum().item()
        digit_total += len(labels)
    return {
        "presence_accuracy": exact / total,
        "velocity_mae_px": torch.cat(velocity_errors).mean().item(),
        "digit_accuracy": digit_right / digit_total,
        "held_out_clips": total,
    }


@torch.no_grad()
def video_features(model: Evaluator, video: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Features ``(B, feature_dim)`` of ``video`` ``(B, T, 1, H, W)`` in [0, 1], computed in
    eval mode in batches, on the model's device, returned on the CPU."""
    model.check_clips(video, "video_features")
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(part.to(device)).cpu() for part in video.split(batch_size)])


def load_evaluator(name: str = EVALUATOR_NAME, *, device: str | torch.device | None = "cpu") -> Evaluator:
    """The shipped evaluation network (``data/checkpoints/<name>.safetensors``), in eval mode."""
    return load_pretrained(name, device=device)
