"""The course's training presets: one registry, one small dataclass per entry.

A :class:`Preset` says what to train (a model class and its config), on what (a
Moving MNIST config: ``frames=1`` for an image model), with which objective, and
for how long (``steps``; ``quick_steps`` in quick mode). ``python -m vdmcourse
train --preset NAME`` and the lessons read presets from :data:`PRESETS`.

Adding a preset is adding one ``Preset(...)`` to ``_PRESETS`` below. A model
that is not a diffusion model (e.g. the metrics' evaluation network) brings its
own ``loss`` and ``batch_source`` and sets ``objective=None``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from vdmcourse.course import budget, to_model_range
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.diffusion import OBJECTIVES, TIME_DISTRIBUTIONS, training_loss
from vdmcourse.metrics.features import Evaluator, EvaluatorConfig, evaluator_batch, evaluator_loss
from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse import pretrained
from vdmcourse.train import TrainConfig

__all__ = ["Preset", "PRESETS", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """A named training recipe.

    Attributes:
        name, description: what ``--preset`` takes and what ``--help`` shows.
        model_class, model_config: the model is ``model_class(model_config)``.
        data: the Moving MNIST clips each batch is drawn from (``frames=1``: single frames).
        objective: the diffusion objective ("flow", "eps", "v" or "x0"); None with ``loss``.
        p_uncond: probability of dropping the labels (classifier-free guidance training);
            labels are used only when the model has ``num_classes``.
        t_distribution, t_mean: how training times are drawn (``"uniform"``, or
            ``"logit_normal"`` with logit mean ``t_mean``; see
            :func:`vdmcourse.diffusion.sample_timesteps`).
        batch_size, steps, quick_steps: clips per step; steps of a full and a quick run.
        train: the :class:`~vdmcourse.train.TrainConfig` (lr, warm-up, EMA, ...).
        sampler, sample_steps, guidance_scale: how previews and ``sample`` draw by default.
        init_from: None, or a shipped checkpoint's name (or a ``.safetensors`` path) whose
            model the new one starts from, through
            ``model_class.from_image_model(that_model, model_config)`` (a video U-Net
            inflated from a trained image model).
        loss: ``(model, batch, generator) -> loss`` replacing the diffusion loss.
        batch_source: ``(generator, batch_size=...) -> batch`` replacing the Moving MNIST clips.
    """

    name: str
    description: str
    model_class: type[nn.Module]
    model_config: Any
    data: MovingMNISTConfig
    objective: str = "flow"
    p_uncond: float = 0.1
    t_distribution: str = "uniform"
    t_mean: float = 0.0
    batch_size: int = 32
    steps: int = 4000
    quick_steps: int = 20
    train: TrainConfig = field(default_factory=TrainConfig)
    sampler: str = "euler"
    sample_steps: int = 30
    guidance_scale: float = 2.0
    init_from: str | None = None
    loss: Callable[[nn.Module, Any, torch.Generator], torch.Tensor] | None = None
    batch_source: Callable[..., Any] | None = None

    def __post_init__(self):
        if self.loss is None and self.objective not in OBJECTIVES:
            raise ValueError(f"Preset {self.name!r}: objective must be one of {OBJECTIVES}; got {self.objective!r}")
        if self.t_distribution not in TIME_DISTRIBUTIONS:
            raise ValueError(f"Preset {self.name!r}: t_distribution must be one of {TIME_DISTRIBUTIONS}; got {self.t_distribution!r}")
        if self.t_distribution == "uniform" and self.t_mean != 0.0:
            raise ValueError(f"Preset {self.name!r}: t_mean shifts logit-normal times only; got t_mean={self.t_mean} with uniform times")
        if self.loss is not None and self.objective is not None:
            raise ValueError(f"Preset {self.name!r}: a preset with its own loss trains no diffusion objective; set objective=None")

    @property
    def generative(self) -> bool:
        """True for a diffusion model (one that ``sample`` and previews can draw from)."""
        return self.objective is not None

    @property
    def conditional(self) -> bool:
        """True when the model takes digit labels (its config has ``num_classes``)."""
        return getattr(self.model_config, "num_classes", None) is not None

    @property
    def sample_shape(self) -> tuple[int, int, int, int]:
        """``(T, C, H, W)`` of one generated clip."""
        return (self.data.frames, 1, self.data.canvas, self.data.canvas)

    def budget_steps(self) -> int:
        """``steps``, or ``quick_steps`` in quick mode (``VDM_QUICK=1``)."""
        return budget(full=self.steps, quick=self.quick_steps)

    def build_model(self) -> nn.Module:
        if self.init_from is None:
            return self.model_class(self.model_config)
        if self.init_from.endswith(".safetensors"):
            source = pretrained.build_model(self.init_from)
        else:
            source = pretrained.load_pretrained(self.init_from, device="cpu")
        return self.model_class.from_image_model(source, self.model_config)

    def batches(self) -> Callable[[torch.Generator], Any]:
        """The batch source: ``generator -> {"video": (B, T, 1, H, W) in [0, 1], "labels": (B, K)}``,
        drawn afresh from ``self.data`` at every step (or from ``batch_source``)."""

        def draw(generator: torch.Generator) -> Any:
            if self.batch_source is not None:
                return self.batch_source(generator, batch_size=self.batch_size)
            clips = generate_clips(self.batch_size, self.data, generator=generator)
            return {"video": clips.video, "labels": clips.labels}

        return draw

    def loss_fn(self) -> Callable[[nn.Module, dict, torch.Generator], torch.Tensor]:
        """``(model, batch, generator) -> loss``: the diffusion loss on the batch's clips,
        mapped to ``[-1, 1]``, conditioned on their labels (dropped with ``p_uncond``);
        or the preset's own ``loss``."""
        if self.loss is not None:
            return self.loss

        def loss(model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
            return training_loss(
                model,
                to_model_range(batch["video"]),
                objective=self.objective,
                cond=batch["labels"] if self.conditional else None,
                p_uncond=self.p_uncond if self.conditional else 0.0,
                generator=generator,
                t_distribution=self.t_distribution,
                t_mean=self.t_mean,
            )

        return loss

    def metadata(self) -> dict:
        """What a checkpoint made from this preset records, so that sampling needs no preset."""
        return {
            "preset": self.name,
            "objective": self.objective,
            "t_distribution": self.t_distribution,
            "t_mean": self.t_mean,
            "sample_shape": list(self.sample_shape),
            "sampler": self.sampler,
            "sample_steps": self.sample_steps,
            "guidance_scale": self.guidance_scale,
            "data": dataclasses.asdict(self.data),
            "batch_size": self.batch_size,
        }


_PRESETS = [
    Preset(
        name="image-tiny",
        description="a seconds-long smoke test: a tiny image U-Net on 16x16 frames",
        model_class=UNet2D,
        model_config=UNet2DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4),
        data=MovingMNISTConfig.cpu(canvas=16, digit_size=12, frames=1),
        batch_size=8,
        steps=50,
        quick_steps=4,
        train=TrainConfig(lr=1e-3, warmup_steps=5, checkpoint_every=25),
        sample_steps=4,
    ),
    Preset(
        name="image-cpu",
        description="the course's image model: label-conditioned flow U-Net on single 32x32 Moving MNIST frames (CPU)",
        model_class=UNet2D,
        model_config=UNet2DConfig(image_size=32, base_channels=16, channel_mults=(1, 2, 2, 2), blocks_per_level=1, heads=4, groups=8),
        data=MovingMNISTConfig.cpu(frames=1),
        batch_size=16,
        steps=6000,
        quick_steps=20,
        train=TrainConfig(lr=1e-3, warmup_steps=100, ema_decay=0.995, checkpoint_every=100),
    ),
    Preset(
        name="image-gpu",
        description="image model for the standard 64x64 two-digit frames (Srivastava et al. 2015); GPU-sized",
        model_class=UNet2D,
        model_config=UNet2DConfig(image_size=64, base_channels=64, channel_mults=(1, 2, 2, 2), blocks_per_level=2, heads=4, groups=8),
        data=MovingMNISTConfig.srivastava(frames=1),
        batch_size=128,
        steps=20_000,
        quick_steps=20,
        train=TrainConfig(lr=2e-4, warmup_steps=500, ema_decay=0.9995, checkpoint_every=1000, precision="auto"),
        sample_steps=50,
    ),
    Preset(
        name="video-cpu",
        description="the course's video model: image-cpu inflated to a (2+1)-D U-Net, 10-frame 32x32 one-digit clips (CPU)",
        model_class=UNet3D,
        # The image fields are image-cpu's: from_image_model refuses any difference.
        model_config=UNet3DConfig(
            image_size=32, base_channels=16, channel_mults=(1, 2, 2, 2), blocks_per_level=1, heads=4, groups=8,
            frames=10, temporal_conv_levels=(1, 2, 3), temporal_attention_levels=(2, 3), attention_span="spacetime",
        ),
        data=MovingMNISTConfig.cpu(),
        # What the temporal layers add is in the middle of the noise range (lesson 05
        # measures it): logit-normal times train there. 6000 steps: 30 min on 2 idle cores
        # (the shipped checkpoint); --minutes 15 gives the 15-minute model.
        t_distribution="logit_normal",
        batch_size=8,
        steps=6000,
        quick_steps=2,
        train=TrainConfig(lr=1e-3, warmup_steps=20, ema_decay=0.995, checkpoint_every=50),
        sampler="heun",
        sample_steps=10,
        init_from="image-cpu",
    ),
    Preset(
        name="video-gpu",
        description="image-gpu inflated to a (2+1)-D U-Net for 64x64, 20-frame two-digit clips (Srivastava et al. 2015); GPU-sized",
        model_class=UNet3D,
        model_config=UNet3DConfig(
            image_size=64, base_channels=64, channel_mults=(1, 2, 2, 2), blocks_per_level=2, heads=4, groups=8,
            frames=20, temporal_attention_levels=(2, 3),
        ),
        data=MovingMNISTConfig.srivastava(),
        batch_size=32,
        steps=20_000,
        quick_steps=2,
        train=TrainConfig(lr=2e-4, warmup_steps=500, ema_decay=0.9995, checkpoint_every=500, precision="auto"),
        sampler="heun",
        sample_steps=25,
        init_from="image-gpu",
    ),
    Preset(
        name="evaluator-cpu",
        description="the metrics' evaluation network: (2+1)D clip encoder + per-frame digit classifier, 32x32x10 clips with 1-2 digits (CPU)",
        model_class=Evaluator,
        model_config=EvaluatorConfig(),
        data=MovingMNISTConfig.cpu(speed=(1.0, 3.0)),
        objective=None,
        loss=evaluator_loss,
        batch_source=functools.partial(evaluator_batch, config=EvaluatorConfig()),
        batch_size=64,
        steps=2000,
        quick_steps=20,
        train=TrainConfig(lr=3e-3, warmup_steps=100, weight_decay=0.01, ema_decay=0.995, checkpoint_every=250),
    ),
]

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _PRESETS}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ``ValueError`` listing the known names otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
