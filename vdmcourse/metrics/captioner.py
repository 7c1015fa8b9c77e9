"""A small video captioner: the recaptioning step of Sora (Brooks et al. 2024), in miniature.

Sora's prompt following is credited to *recaptioning*: a captioner trained on a
few well-captioned videos writes descriptive captions for every training video
(as DALL-E 3 did for images, Betker et al. 2023). Here the well-captioned videos
are Moving MNIST clips whose captions are computed from ground truth
(:mod:`vdmcourse.data.captions`); the captioner learns to read, from the pixels
alone, what those captions say:

* the **digit** (10 classes) -- from a (2+1)D clip encoder (the evaluator's trunk,
  started from ``evaluator-cpu``'s weights) plus the evaluator's per-frame digit
  classifier on crops around the ink centroid, averaged over frames;
* the **direction** of the first step (8 classes), the **speed class** (3) and, per
  wall, the **frame of the first bounce** off it (``T`` classes, 0 = no bounce) -- from
  the clip features and the ink-centroid track of the frames.

:meth:`Captioner.facts` turns predictions into :class:`~vdmcourse.data.captions.ClipFacts`,
:func:`recaption` into captions. One-digit clips (the course's CPU data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.data.captions import WALLS, ClipFacts, caption, clip_facts, speed_class
from vdmcourse.metrics.features import Evaluator, _Stage, crop_digits, digit_classifier
from vdmcourse.metrics.physics import check_video, ink_centroid

__all__ = [
    "CaptionerConfig",
    "Captioner",
    "captioner_batch",
    "captioner_targets",
    "captioner_loss",
    "captioner_accuracy",
    "recaption",
]

# A speed class written back as a number: the middle of its third of the (1, 3) px/frame range.
_CLASS_SPEEDS = (4 / 3, 2.0, 8 / 3)


@dataclass(frozen=True)
class CaptionerConfig:
    """What the captioner sees and how big it is.

    canvas, frames, digit_size  the clip size (one digit per clip)
    speed                       (min, max) px/frame of its training clips
    widths, feature_dim         the (2+1)D trunk (the evaluator's sizes, so its weights fit)
    classifier_width            the per-frame digit classifier (the evaluator's)
    hidden                      width of the attribute heads' shared layer
    """

    canvas: int = 32
    frames: int = 10
    digit_size: int = 16
    speed: tuple[float, float] = (1.0, 3.0)
    widths: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 64
    classifier_width: int = 32
    hidden: int = 256

    @property
    def data(self) -> MovingMNISTConfig:
        return MovingMNISTConfig.cpu(canvas=self.canvas, frames=self.frames, digit_size=self.digit_size, speed=self.speed)


class Captioner(nn.Module):
    """Clip -> caption attributes. ``model(video)`` with ``video`` ``(B, T, 1, H, W)`` in [0, 1]
    returns a dict of logits: ``"digit"`` ``(B, 10)``, ``"direction"`` ``(B, 8)``,
    ``"speed"`` ``(B, 3)``, ``"bounce"`` ``(B, 4, T)`` (per wall of :data:`WALLS`: the
    frame of its first bounce, class 0 = none)."""

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        self.config = config
        widths = (1, *config.widths)
        self.stages = nn.ModuleList(_Stage(a, b) for a, b in zip(widths, widths[1:]))
        self.project = nn.Linear(config.widths[-1] * config.frames, config.feature_dim)
        self.classifier = digit_classifier(config.classifier_width)
        track = 2 * config.frames
        self.shared = nn.Sequential(nn.Linear(config.feature_dim + track, config.hidden), nn.SiLU(),
                                    nn.Linear(config.hidden, config.hidden), nn.SiLU())
        self.digit = nn.Linear(config.hidden, 10)
        self.direction = nn.Linear(config.hidden, 8)
        self.speed = nn.Linear(config.hidden, 3)
        self.bounce = nn.Linear(config.hidden, len(WALLS) * config.frames)

    @classmethod
    def from_image_model(cls, evaluator: Evaluator, config: CaptionerConfig) -> Captioner:
        """Start from a trained :class:`~vdmcourse.metrics.features.Evaluator`: its trunk and
        digit classifier are copied, the heads are new. (The name is the hook that a
        preset's ``init_from`` calls.)"""
        if not isinstance(evaluator, Evaluator):
            raise TypeError(f"Captioner.from_image_model expects an Evaluator; got {type(evaluator).__name__}")
        model = cls(config)
        shared = {k: v for k, v in evaluator.state_dict().items() if k.split(".")[0] in ("stages", "project", "classifier")}
        missing = model.load_state_dict(shared, strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"Captioner.from_image_model: the evaluator's {missing.unexpected_keys} have no place here")
        return model

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        video = self._check(video)
        x = rearrange(video * 2 - 1, "b t c h w -> b c t h w")
        for stage in self.stages:
            x = stage(x)  # (B, C, T, H/2^i, W/2^i)
        features = F.silu(self.project(rearrange(x.mean(dim=(3, 4)), "b c t -> b (c t)")))  # (B, F)
        centres = ink_centroid(video[:, :, 0])  # (B, T, 2): where the ink is, frame by frame
        track = (centres.nan_to_num(self.config.canvas / 2) / self.config.canvas) * 2 - 1
        h = self.shared(torch.cat([features, rearrange(track, "b t two -> b (t two)")], dim=1))  # (B, hidden)
        crops = crop_digits(video, centres[:, :, None], self.config.digit_size)  # (B, T, 1, S, S)
        per_frame = self.classifier(rearrange(crops, "b t k s r -> (b t k) 1 s r") * 2 - 1)  # (B*T, 10)
        digit = self.digit(h) + rearrange(per_frame, "(b t) c -> b t c", b=len(video)).mean(1)
        return {
            "digit": digit,
            "direction": self.direction(h),
            "speed": self.speed(h),
            "bounce": rearrange(self.bounce(h), "b (w t) -> b w t", w=len(WALLS)),
        }

    def _check(self, video: torch.Tensor) -> torch.Tensor:
        video = check_video(video, caller="Captioner")
        c = self.config
        if tuple(video.shape[1:]) != (c.frames, 1, c.canvas, c.canvas):
            raise ValueError(f"Captioner: trained on clips of shape (B, {c.frames}, 1, {c.canvas}, {c.canvas}); got {tuple(video.shape)}")
        return video

    @torch.no_grad()
    def facts(self, video: torch.Tensor) -> list[ClipFacts]:
        """What the captioner reads from each clip of ``video`` ``(B, T, 1, H, W)`` in [0, 1]."""
        out = self(video)
        digits, directions, speeds = out["digit"].argmax(1), out["direction"].argmax(1), out["speed"].argmax(1)
        frames = out["bounce"].argmax(2)  # (B, 4)
        facts = []
        for i in range(len(video)):
            bounces = sorted(((0, wall, f) for wall, f in zip(WALLS, frames[i].tolist()) if f > 0), key=lambda b: b[2])
            facts.append(ClipFacts(digits=(digits[i].item(),), directions=(directions[i].item(),),
                                   speeds=(_CLASS_SPEEDS[speeds[i].item()],), bounces=tuple(bounces)))
        return facts


def captioner_targets(clips, free_range: float) -> dict[str, torch.Tensor]:
    """Ground-truth attributes of one-digit clips (fields of :class:`~vdmcourse.data.Clips`):
    ``digit``, ``direction``, ``speed`` ``(B,)`` and ``bounce`` ``(B, 4)`` (first-bounce frame per wall, 0 = none)."""
    facts = clip_facts(clips.labels, clips.positions, clips.velocities, free_range)
    bounce = torch.zeros(len(facts), len(WALLS), dtype=torch.long)
    for i, fact in enumerate(facts):
        for _, wall, frame in reversed(fact.bounces):  # reversed: the first bounce per wall wins
            bounce[i, WALLS.index(wall)] = frame
    speed_index = {"slow": 0, "medium": 1, "fast": 2}
    return {
        "digit": torch.tensor([f.digits[0] for f in facts]),
        "direction": torch.tensor([f.directions[0] for f in facts]),
        "speed": torch.tensor([speed_index[speed_class(f.speeds[0])] for f in facts]),
        "bounce": bounce,
    }


def captioner_batch(generator: torch.Generator | None, config: CaptionerConfig, *, batch_size: int = 64, split: str = "train") -> dict:
    """One-digit clips of ``config``'s size with their attribute targets (the batch source
    a :class:`~vdmcourse.train.Trainer` calls)."""
    data = MovingMNISTConfig.cpu(canvas=config.canvas, frames=config.frames, digit_size=config.digit_size,
                                 speed=config.speed, split=split)
    clips = generate_clips(batch_size, data, generator=generator)
    return {"video": clips.video, **captioner_targets(clips, data.free_range)}


def captioner_loss(model: Captioner, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sum of the cross-entropies of the four attributes (the bounce one averaged over walls)."""
    out = model(batch["video"])
    return (
        F.cross_entropy(out["digit"], batch["digit"])
        + F.cross_entropy(out["direction"], batch["direction"])
        + F.cross_entropy(out["speed"], batch["speed"])
        + F.cross_entropy(rearrange(out["bounce"], "b w t -> (b w) t"), batch["bounce"].flatten())
    )


@torch.no_grad()
def captioner_accuracy(model: Captioner, clips: int = 1000, *, seed: int = 1) -> dict[str, float]:
    """Held-out accuracy per attribute on ``clips`` clips of the *test* digits: digit,
    direction, speed class, bounce walls (the set of walls hit, exactly), bounce frames
    (every wall's first-bounce frame right) and the whole descriptive caption."""
    model.eval()
    batch = captioner_batch(torch.Generator().manual_seed(seed), model.config, batch_size=clips, split="test")
    out = {}
    for part in range(0, clips, 250):
        piece = model(batch["video"][part : part + 250])
        for key, value in piece.items():
            out.setdefault(key, []).append(value.argmax(-1))
    predicted = {key: torch.cat(values) for key, values in out.items()}
    right = {key: predicted[key] == batch[key] for key in ("digit", "direction", "speed")}
    right["bounce_walls"] = ((predicted["bounce"] > 0) == (batch["bounce"] > 0)).all(1)
    right["bounce_frames"] = (predicted["bounce"] == batch["bounce"]).all(1)
    right["caption"] = right["digit"] & right["direction"] & right["speed"] & right["bounce_frames"]
    return {key: value.float().mean().item() for key, value in right.items()} | {"held_out_clips": clips}


@torch.no_grad()
def recaption(model: Captioner, video: torch.Tensor, *, generator: torch.Generator | None = None) -> list[str]:
    """Descriptive captions the captioner writes for ``video`` ``(B, T, 1, H, W)`` in [0, 1]
    (paraphrased from ``generator`` if given)."""
    return [caption(fact, "descriptive", generator=generator) for fact in model.facts(video)]

