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
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vdmcourse.course import CHECKPOINT_DIR, budget, to_model_range
from vdmcourse.conditioned_training import (
    STYLE_CLASSES, image_to_video_batch, image_to_video_loss, signal_batch, signal_loss, style_batch,
)
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.diffusion import (
    GUIDE_EVERY_CALL,
    OBJECTIVES,
    TIME_DISTRIBUTIONS,
    check_frame_t_share,
    check_guidance_interval,
    check_motion_weight,
    training_loss,
)
from vdmcourse.diffusion.context import ContextConfig, masked_training_loss, random_context_masks, random_context_times
from vdmcourse.diffusion.distillation import GuidedUNet3D, GuidedUNet3DConfig, guidance_distillation_loss
from vdmcourse.metrics.alignment import MiniCLIP, MiniCLIPConfig, miniclip_batch, miniclip_loss
from vdmcourse.metrics.captioner import Captioner, CaptionerConfig, captioner_batch, captioner_loss
from vdmcourse.metrics.features import Evaluator, EvaluatorConfig, evaluator_batch, evaluator_loss
from vdmcourse.multisize import bucketed_batch
from vdmcourse.nn.conditioning import ConditionedUNet3D, ConditionedUNet3DConfig
from vdmcourse.nn.dit import VideoDiT, VideoDiTConfig
from vdmcourse.nn.text import TextEncoderConfig, TextVideoConfig, TextVideoUNet
from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.nn.vae import VideoVAE, VideoVAEConfig, vae_fingerprint, vae_loss
from vdmcourse import pretrained
from vdmcourse.text_conditioning import caption_batch, text_video_loss
from vdmcourse.train import TrainConfig

__all__ = ["Preset", "PRESETS", "get_preset", "load_latent_vae", "context_clips"]


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
        motion_weight: the weight of the frame-difference term of the diffusion loss (see
            :func:`vdmcourse.diffusion.training_loss`); 0 leaves it out.
        frame_t_share: the share of clips trained with a time per frame (diffusion forcing
            beside one time per clip; :func:`vdmcourse.diffusion.training_loss`); 0 leaves it out.
        batch_size, steps, quick_steps: clips per step; steps of a full and a quick run.
        train: the :class:`~vdmcourse.train.TrainConfig` (lr, warm-up, EMA, ...).
        sampler, sample_steps, guidance_scale: how previews and ``sample`` draw by default.
        guidance_interval: ``(low, high)``: the times whose model calls are guided (see
            :func:`vdmcourse.diffusion.sample`); recorded in the checkpoint when not ``(0, 1)``.
        init_from: None, or a shipped checkpoint's name (or a ``.safetensors`` path) whose
            model the new one starts from, through
            ``model_class.from_image_model(that_model, model_config)`` (a video U-Net
            inflated from a trained image model).
        loss: ``(model, batch, generator) -> loss`` replacing the diffusion loss.
        batch_source: ``(generator, batch_size=...) -> batch`` replacing the Moving MNIST clips.
        finish: ``(model) -> None`` run on the model and on its EMA after training, before
            the last save (the VAE measures its latent scaling factor there).
        vae: None, or a shipped VAE's name (or a ``.safetensors`` path): the model is then a
            latent diffusion model trained on that VAE's scaled latents, and sampling decodes
            through it. Checkpoints record the VAE's fingerprint; any other VAE is refused.
        context: a :class:`~vdmcourse.diffusion.context.ContextConfig`: train with masked-frame
            conditioning (random context frames per clip, clean or noise-augmented, out of the
            loss); batches then carry ``"mask"`` and ``"context_t"`` (see :func:`context_clips`).
            ``init_from`` may then name a model of the preset's own class, which is fine-tuned.
        teacher: None, or a shipped checkpoint's name (or a ``.safetensors`` path): guidance
            distillation (:mod:`vdmcourse.diffusion.distillation`) -- the model learns that
            teacher's classifier-free-guided output, one call per sampler step.
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
    motion_weight: float = 0.0
    frame_t_share: float = 0.0
    batch_size: int = 32
    steps: int = 4000
    quick_steps: int = 20
    train: TrainConfig = field(default_factory=TrainConfig)
    sampler: str = "euler"
    sample_steps: int = 30
    guidance_scale: float = 2.0
    guidance_interval: tuple[float, float] = GUIDE_EVERY_CALL
    init_from: str | None = None
    loss: Callable[[nn.Module, Any, torch.Generator], torch.Tensor] | None = None
    batch_source: Callable[..., Any] | None = None
    finish: Callable[[nn.Module], None] | None = None
    vae: str | None = None
    context: ContextConfig | None = None
    teacher: str | None = None

    def __post_init__(self):
        if self.loss is None and self.objective not in OBJECTIVES:
            raise ValueError(f"Preset {self.name!r}: objective must be one of {OBJECTIVES}; got {self.objective!r}")
        if self.t_distribution not in TIME_DISTRIBUTIONS:
            raise ValueError(f"Preset {self.name!r}: t_distribution must be one of {TIME_DISTRIBUTIONS}; got {self.t_distribution!r}")
        if self.t_distribution == "uniform" and self.t_mean != 0.0:
            raise ValueError(f"Preset {self.name!r}: t_mean shifts logit-normal times only; got t_mean={self.t_mean} with uniform times")
        try:
            check_guidance_interval(self.guidance_interval)
            check_motion_weight(self.motion_weight)
            check_frame_t_share(self.frame_t_share)
        except ValueError as error:
            raise ValueError(f"Preset {self.name!r}: {error}") from None
        if (self.motion_weight or self.frame_t_share) and (self.loss, self.context, self.teacher) != (None, None, None):
            raise ValueError(f"Preset {self.name!r}: motion_weight and frame_t_share shape the plain diffusion loss; this preset trains its own loss, "
                             "masked-frame context or a teacher's guidance")
        if self.loss is not None and self.objective is not None:
            raise ValueError(f"Preset {self.name!r}: a preset with its own loss trains no diffusion objective; set objective=None")
        if getattr(self.model_config, "prediction", "v") == "x" and self.objective != "flow":
            raise ValueError(
                f"Preset {self.name!r}: a DiT with prediction='x' turns its clean-clip output into the flow "
                f"velocity, so it trains the 'flow' objective; got objective={self.objective!r}"
            )

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

    @property
    def latent_shape(self) -> tuple[int, int, int, int] | None:
        """``(T', C_z, h, w)`` of one clip's latent for a latent diffusion preset (None otherwise)."""
        if self.vae is None:
            return None
        return load_latent_vae(self.vae).config.latent_shape(self.data.frames, self.data.canvas, self.data.canvas)

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
        if isinstance(source, self.model_class):  # fine-tuning a model of the same kind (e.g. video-ctx-cpu)
            if source.config != self.model_config:
                raise ValueError(f"Preset {self.name!r}: init_from {self.init_from!r} has config {source.config}, not the preset's {self.model_config}")
            return source.train()
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
        if self.context is not None:
            return self._context_loss
        if self.teacher is not None:
            return functools.partial(
                guidance_distillation_loss, teacher=self.teacher, objective=self.objective, p_uncond=self.p_uncond,
                t_distribution=self.t_distribution, t_mean=self.t_mean,
            )

        def loss(model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
            x0 = to_model_range(batch["video"])
            if self.vae is not None:
                with torch.no_grad():  # the VAE is frozen: diffusion learns its unit-variance latents
                    # fp32 latents: under bf16 autocast the encoder returns bf16, which the model refuses as input
                    x0 = load_latent_vae(self.vae, device=x0.device).encode_latents(x0.float(), generator).float()
            return training_loss(
                model,
                x0,
                objective=self.objective,
                cond=batch["labels"] if self.conditional else None,
                p_uncond=self.p_uncond if self.conditional else 0.0,
                generator=generator,
                t_distribution=self.t_distribution,
                t_mean=self.t_mean,
                motion_weight=self.motion_weight,
                frame_t_share=self.frame_t_share,
            )

        return loss

    def _context_loss(self, model: nn.Module, batch: dict, generator: torch.Generator) -> torch.Tensor:
        return masked_training_loss(
            model,
            to_model_range(batch["video"]),
            batch["mask"],
            context_t=batch["context_t"],
            objective=self.objective,
            cond=batch["labels"] if self.conditional else None,
            p_uncond=self.p_uncond if self.conditional else 0.0,
            generator=generator,
            t_distribution=self.t_distribution,
            t_mean=self.t_mean,
        )

    def metadata(self) -> dict:
        """What a checkpoint made from this preset records, so that sampling needs no preset."""
        return {
            "preset": self.name,
            "objective": self.objective,
            "t_distribution": self.t_distribution,
            "t_mean": self.t_mean,
            **({"motion_weight": self.motion_weight} if self.motion_weight else {}),
            **({"frame_t_share": self.frame_t_share} if self.frame_t_share else {}),
            "sample_shape": list(self.sample_shape),
            "sampler": self.sampler,
            "sample_steps": self.sample_steps,
            "guidance_scale": self.guidance_scale,
            **({"guidance_interval": list(self.guidance_interval)} if tuple(self.guidance_interval) != GUIDE_EVERY_CALL else {}),
            "data": dataclasses.asdict(self.data),
            "batch_size": self.batch_size,
            **({"context": dataclasses.asdict(self.context)} if self.context is not None else {}),
            **({"teacher": self.teacher} if self.teacher is not None else {}),
        } | (self._vae_metadata() if self.vae is not None else {})

    def _vae_metadata(self) -> dict:
        vae = load_latent_vae(self.vae)
        return {"vae": {"name": self.vae, "fingerprint": vae_fingerprint(vae)}, "latent_shape": list(self.latent_shape)}


def _fit_scaling_factor(model: nn.Module, data: MovingMNISTConfig, clips: int = 64) -> None:
    """Measure a VAE's latent scaling factor on ``clips`` fresh clips of ``data`` (seeded)."""
    generator = torch.Generator().manual_seed(1234)
    video = generate_clips(clips, data, generator=generator).video
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    model.fit_scaling_factor(to_model_range(video).to(device), torch.Generator(device=device).manual_seed(1234))
    model.train(was_training)


@functools.lru_cache(maxsize=2)
def _frozen_evaluator(device: str) -> nn.Module:
    return pretrained.load_pretrained("evaluator-cpu", device=device).requires_grad_(False)


def _feature_matched_vae_loss(model: nn.Module, batch: dict, generator: torch.Generator, **kwargs) -> torch.Tensor:
    """:func:`vae_loss` with the feature-matching term on the shipped ``evaluator-cpu`` (loaded once)."""
    evaluator = _frozen_evaluator(str(next(model.parameters()).device))
    return vae_loss(model, batch, generator, evaluator=evaluator, **kwargs)


def context_clips(
    generator: torch.Generator,
    *,
    batch_size: int,
    data: MovingMNISTConfig,
    context: ContextConfig,
    keyframe_stride: int = 1,
    keyframe_fraction: float = 0.0,
) -> dict:
    """A batch for masked-frame conditioning: ``{"video", "labels", "mask" (B, T) bool,
    "context_t" (B,)}``. A ``keyframe_fraction`` of the clips move ``keyframe_stride`` times
    faster -- every ``keyframe_stride``-th frame of a ``data`` clip (bounces are elastic) --
    so the model can also generate the sparse keyframes of hierarchical generation."""
    fast = round(batch_size * keyframe_fraction) if keyframe_stride > 1 else 0
    parts = [generate_clips(batch_size - fast, data, generator=generator)]
    if fast:
        speed = tuple(keyframe_stride * v for v in data.speed)
        parts.append(generate_clips(fast, dataclasses.replace(data, speed=speed), generator=generator))
    frames = data.frames
    return {
        "video": torch.cat([part.video for part in parts]),
        "labels": torch.cat([part.labels for part in parts]),
        "mask": random_context_masks(batch_size, frames, context, generator=generator),
        "context_t": random_context_times(batch_size, context, generator=generator),
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
        name="dit-cpu",
        description="the course's video transformer: a DiT over 2x4x4 spacetime patches, trained from scratch on 10-frame 32x32 one-digit clips (CPU)",
        model_class=VideoDiT,
        model_config=VideoDiTConfig(patch=(2, 4, 4), dim=64, depth=4, heads=4, layout="full", position="rope", qk_norm=True, frames=10, image_size=32),
        data=MovingMNISTConfig.cpu(),
        # From scratch (no image model to inflate). The shipped checkpoint is --minutes 15 on one
        # core of a shared 2-core machine: 3307 steps; 3300 steps is that run as a step budget.
        t_distribution="logit_normal",
        batch_size=8,
        steps=3300,
        quick_steps=2,
        train=TrainConfig(lr=1e-3, warmup_steps=100, ema_decay=0.995, checkpoint_every=100),
        sampler="heun",
        sample_steps=10,
    ),
    Preset(
        name="dit-gpu",
        description="a video DiT (DiT-S width) over 2x4x4 spacetime patches of 64x64, 20-frame two-digit clips (Srivastava et al. 2015); GPU-sized",
        model_class=VideoDiT,
        # 2560 tokens per clip: full spacetime attention (flash / memory-efficient SDPA on CUDA);
        # absolute sin-cos positions (where the walls are) plus 3-D RoPE (relative offsets).
        model_config=VideoDiTConfig(patch=(2, 4, 4), dim=384, depth=12, heads=6, layout="full", position="sincos+rope", qk_norm=True, frames=20, image_size=64),
        data=MovingMNISTConfig.srivastava(),
        t_distribution="logit_normal",
        batch_size=32,
        steps=40_000,
        quick_steps=2,
        train=TrainConfig(lr=2e-4, warmup_steps=1000, ema_decay=0.9995, checkpoint_every=1000, precision="auto"),
        sampler="heun",
        sample_steps=25,
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
    Preset(
        name="vae-cpu",
        description="the course's video VAE: causal (2+1)-D, 32x32 frames -> 8x8x4 latents, one-digit clips (CPU)",
        model_class=VideoVAE,
        model_config=VideoVAEConfig(widths=(16, 32, 32)),
        # Convolutional in time, so 5-frame clips teach it at half the cost of 10; the
        # scaling factor is measured on the 10-frame clips latent diffusion trains on.
        # MSE, not L1: in a 200-step probe L1 settled on blank frames (16.8 dB), MSE reached 26.4 dB.
        data=MovingMNISTConfig.cpu(frames=5),
        objective=None,
        loss=functools.partial(vae_loss, beta=1e-4, reconstruction="mse"),
        finish=functools.partial(_fit_scaling_factor, data=MovingMNISTConfig.cpu()),
        batch_size=8,
        steps=1500,
        quick_steps=4,
        train=TrainConfig(lr=1e-3, warmup_steps=50, ema_decay=0.995, checkpoint_every=100),
    ),
    Preset(
        name="latent-video-cpu",
        description="latent video diffusion: a (2+1)-D U-Net on vae-cpu's 10x4x8x8 scaled latents of one-digit clips (CPU)",
        model_class=UNet3D,
        model_config=UNet3DConfig(
            image_size=8, channels=4, base_channels=32, channel_mults=(1, 2), blocks_per_level=1, heads=4, groups=8,
            frames=10, temporal_attention_levels=(1,), attention_span="spacetime",
        ),
        data=MovingMNISTConfig.cpu(),
        t_distribution="logit_normal",
        batch_size=16,
        steps=6000,
        quick_steps=2,
        train=TrainConfig(lr=1e-3, warmup_steps=50, ema_decay=0.995, checkpoint_every=100),
        sampler="heun",
        sample_steps=10,
        vae="vae-cpu",
    ),
    Preset(
        name="latent-dit-cpu",
        description="latent video diffusion with the course's DiT as denoiser: 1x2x2 patches of vae-cpu's 10x4x8x8 "
        "scaled latents (160 tokens, full attention), one-digit clips (CPU)",
        model_class=VideoDiT,
        # The latent preset path does not care which denoiser it trains: this is latent-video-cpu with
        # the DiT in place of the U-Net (sin-cos + RoPE positions, as dit-alt-cpu; width 96, as the
        # scaling study in benchmarks/results/dit.md favours wider models at equal time). Not shipped: a
        # 10-minute run (1355 steps, 588 CPU-s, one thread, load ~3) scored identity 0.27, physics 1.89 px,
        # Frechet 31.9 against latent-video-cpu's 0.44, 1.55, 19.7 (661 CPU-s; evaluate --num 100 --seed 0).
        model_config=VideoDiTConfig(
            channels=4, patch=(1, 2, 2), dim=96, depth=4, heads=4, layout="full", position="sincos+rope",
            qk_norm=True, frames=10, image_size=8,
        ),
        data=MovingMNISTConfig.cpu(),
        t_distribution="logit_normal",
        batch_size=16,
        steps=6000,
        quick_steps=2,
        train=TrainConfig(lr=1e-3, warmup_steps=100, ema_decay=0.995, checkpoint_every=100),
        sampler="heun",
        sample_steps=10,
        vae="vae-cpu",
    ),
    Preset(
        name="vae-gpu",
        description="video VAE for 64x64, 20-frame two-digit clips (Srivastava et al. 2015): 8x8x4 latents per frame; GPU-sized",
        model_class=VideoVAE,
        model_config=VideoVAEConfig(widths=(64, 128, 128, 256), blocks_per_level=2),
        data=MovingMNISTConfig.srivastava(),
        objective=None,
        loss=functools.partial(vae_loss, beta=1e-4, reconstruction="l1"),
        finish=functools.partial(_fit_scaling_factor, data=MovingMNISTConfig.srivastava()),
        batch_size=32,
        steps=20_000,
        quick_steps=2,
        train=TrainConfig(lr=5e-4, warmup_steps=500, ema_decay=0.999, checkpoint_every=1000),
    ),
    Preset(
        name="latent-video-gpu",
        description="latent video diffusion on vae-gpu's 20x4x8x8 latents of 64x64 two-digit clips; GPU-sized",
        model_class=UNet3D,
        model_config=UNet3DConfig(
            image_size=8, channels=4, base_channels=128, channel_mults=(1, 2), blocks_per_level=2, heads=4, groups=8,
            frames=20, temporal_attention_levels=(1,), attention_span="spacetime",
        ),
        data=MovingMNISTConfig.srivastava(),
        t_distribution="logit_normal",
        batch_size=64,
        steps=20_000,
        quick_steps=2,
        train=TrainConfig(lr=2e-4, warmup_steps=500, ema_decay=0.9995, checkpoint_every=1000),
        sampler="heun",
        sample_steps=25,
        vae="vae-gpu",
    ),
]

# Lesson 06's loss-term experiments: vae-cpu's recipe plus one term each, trained for equal
# minutes beside vae-cpu itself (benchmarks/bench_vae.py score; results/vae.md).
_VAE_CPU = next(preset for preset in _PRESETS if preset.name == "vae-cpu")
_PRESETS.append(
    dataclasses.replace(
        _VAE_CPU,
        name="vae-adv-cpu",
        description="vae-cpu plus a per-frame patch discriminator (hinge loss, VQGAN's adaptive weight x 0.5, "
        "from step 150): lesson 06's adversarial-term experiment (CPU)",
        model_config=dataclasses.replace(_VAE_CPU.model_config, discriminator=(32, 64)),
        loss=functools.partial(vae_loss, beta=1e-4, reconstruction="mse", adversarial_weight=0.5, adversarial_start=150),
    )
)
_PRESETS.append(
    dataclasses.replace(
        _VAE_CPU,
        name="vae-feat-cpu",
        description="vae-cpu plus feature matching on evaluator-cpu's activations (weight 0.1), on the 10-frame clips "
        "the evaluator takes, 4 per batch (the same frames per batch as vae-cpu): lesson 06's experiment (CPU)",
        # At weight 0.1 the term is about MSE's size: evaluator features differ 6-14x more than pixels.
        data=MovingMNISTConfig.cpu(),
        loss=functools.partial(_feature_matched_vae_loss, beta=1e-4, reconstruction="mse", feature_weight=0.1),
        batch_size=4,
    )
)

# dit-cpu with Latte's alternating spatial (64 tokens) / temporal (5 tokens) blocks -- about 1.7x the
# steps per minute of full attention over 320 tokens at about the same loss per step -- and absolute
# sin-cos positions beside RoPE (RoPE alone gives offsets only; with a head width of 16 each spatial
# axis gets two RoPE frequencies, 1 and 1/100 rad per token). A 15-minute trial
# (benchmarks/results/dit.md) improved physics, flicker and Frechet but not identity: not shipped.
_DIT_CPU = next(preset for preset in _PRESETS if preset.name == "dit-cpu")
_PRESETS.append(
    dataclasses.replace(
        _DIT_CPU,
        name="dit-alt-cpu",
        description="dit-cpu with alternating spatial / temporal attention blocks (Latte) and sin-cos + RoPE positions (CPU; not shipped)",
        model_config=dataclasses.replace(_DIT_CPU.model_config, layout="alternate", position="sincos+rope"),
    )
)

# dit-cpu twice as wide (128, heads of 32: five RoPE frequencies per spatial axis instead of two),
# sin-cos + RoPE positions, full attention (a token can follow its part of the moving digit into
# other frames, which the alternating layout's temporal blocks cannot). The scaling study in
# benchmarks/results/dit.md: wider wins at equal CPU time, the step being overhead-bound. But at
# full attention width 128 costs 0.48 CPU-s a step against dit-cpu's 0.28. Trial (dit3, not
# shipped): train --preset dit-wide-cpu --steps 1600 (769 CPU-s, one thread, load 6-9), evaluate
# --num 200 --seed 0: identity 0.25, physics 2.21 px, Frechet 35.4 against the shipped dit-cpu's
# 0.35, 2.72, 35.2 -- better physics, worse identity, as dit-alt-cpu. The pilots (90 CPU-s each)
# chose batch 8 over 16 (dit-wide-b16-cpu: 0.91 CPU-s a step, still in warm-up at 99 steps).
_PRESETS.extend(
    dataclasses.replace(
        _DIT_CPU,
        name=name,
        description=f"dit-cpu at width 128 with sin-cos + RoPE positions{extra} (CPU; a trial recipe, not shipped)",
        model_config=dataclasses.replace(_DIT_CPU.model_config, dim=128, position="sincos+rope"),
        batch_size=batch_size,
        steps=steps,
    )
    for name, extra, batch_size, steps in (("dit-wide-cpu", "", 8, 1600), ("dit-wide-b16-cpu", ", batch 16", 16, 900))
)

# Joint image-video training (Latte, Open-Sora) in its cheapest form for 2-frame tubelets:
# half the steps are bucketed batches of 2-frame snippets (one token frame: 64 tokens a clip,
# so 40 clips at dit-cpu's 2560 tokens a batch), which show five times the digits a 10-frame
# batch shows for about the same linear-layer work; the other half are dit-cpu's clips. The
# label table starts at ADM's std 1 (label_std) instead of DiT's 0.02: after 3300 steps the
# shipped dit-cpu's label rows have norm 0.3-1.1 against a time embedding of 7-28, and its
# samples ignore the label (benchmarks/results/dit.md, "What identity persistence counts").
# Trial (dit5, not trained further): a 270 CPU-s pilot (`bench_dit.py pilot P2_joint --base
# dit-joint-cpu --seconds 270 --cpu`) scored identity 0.34, asked digit 0.15, physics 2.80 px
# against dit-cpu's 0.36, 0.10, 3.04 in the same pilot (P0_base): no measurable gain.
_PRESETS.append(
    dataclasses.replace(
        _DIT_CPU,
        name="dit-joint-cpu",
        description="dit-cpu trained jointly on 2-frame snippets (40 a batch) and 10-frame clips, label table at std 1 (CPU; a trial recipe)",
        model_config=dataclasses.replace(_DIT_CPU.model_config, label_std=1.0),
        batch_source=functools.partial(bucketed_batch, data=MovingMNISTConfig.cpu(), sizes=((2, 32, 32), (10, 32, 32)),
                                       patch=_DIT_CPU.model_config.patch),
    )
)

# dit-cpu predicting the clean clip (VideoDiTConfig.prediction="x"; Li & He 2025, JiT): the
# network's last layer draws x0, which is smooth and mostly background, and the model turns it
# into the flow velocity, so loss, samplers and guidance are dit-cpu's. The shipped checkpoint is
# --cpu-minutes 15 on one core of a shared machine: 5484 steps, the preset's step budget.
# evaluate --num 200: Frechet 25.2 against dit-cpu's 35.2, a third of its flicker, physics 2.31
# against 2.72 px, identity unchanged (0.35); strokes where dit-cpu paints speckle. On single
# frames the gain is small (benchmarks/results/dit.md, "Predicting the clean clip").
_PRESETS.append(
    dataclasses.replace(
        _DIT_CPU,
        name="dit-x-cpu",
        description="dit-cpu predicting the clean clip, turned into the flow velocity (JiT), trained from scratch (CPU)",
        model_config=dataclasses.replace(_DIT_CPU.model_config, prediction="x"),
        steps=5484,
    )
)
# ... and trained as dit-joint-cpu: half the steps on batches of 40 two-frame snippets, where the
# digit's shape is most of what there is to learn (Video LDM and Sora train on images beside
# clips). The shipped checkpoint is --cpu-minutes 15 as above: 6291 steps, the step budget.
# evaluate --num 200: Frechet 17.1, identity 0.41, digit count 0.91 -- the best DiT at 15
# CPU-minutes, and still rising at 30 (identity 0.54 on the budget table's 30 draws).
_DIT_JOINT = next(preset for preset in _PRESETS if preset.name == "dit-joint-cpu")
_DIT_JOINT_X = dataclasses.replace(
    _DIT_JOINT,
    name="dit-joint-x-cpu",
    description="dit-joint-cpu predicting the clean clip (JiT): 2-frame snippets beside 10-frame clips (CPU)",
    model_config=dataclasses.replace(_DIT_JOINT.model_config, prediction="x"),
    steps=6291,
)
_PRESETS.append(_DIT_JOINT_X)

# Trial (not shipped): dit-joint-x-cpu with three steps in four on snippets instead of one in
# two, to see whether still more shapes per CPU-second keep the digit better. A 900 CPU-s pilot
# (`bench_dit.py pilot joint3_x_cpu900 --base dit-joint3-x-cpu --seconds 900 --cpu`) scored
# identity 0.45, asked digit 0.47, physics 2.31 px against dit-joint-x-cpu's 0.43, 0.45, 2.41 at
# 15 minutes (30 draws each): no measurable gain (benchmarks/results/dit.md, "Snippet share").
_PRESETS.append(
    dataclasses.replace(
        _DIT_JOINT_X,
        name="dit-joint3-x-cpu",
        description="dit-joint-x-cpu with three steps in four on 2-frame snippets (CPU; a trial recipe)",
        batch_source=functools.partial(bucketed_batch, data=MovingMNISTConfig.cpu(), sizes=((2, 32, 32),) * 3 + ((10, 32, 32),),
                                       patch=_DIT_CPU.model_config.patch),
    )
)

# dit-joint-x-cpu at twice the learning rate, sampled at guidance 5 (benchmarks/results/dit.md,
# "What we see": "Guidance and shared noise", "Learning rate, time shift and snippet length"):
# `bench_dit.py guidance` on 100 clips put dit-joint-x-cpu's identity at 0.41 / 0.60 for guidance 2 / 5, and a 900 CPU-s pilot
# at lr 2e-3 (`pilot lr2e3_jointx900 --base dit-joint-x-cpu --seconds 900 --cpu --set lr=0.002`)
# at 0.44 / 0.65, with half the flicker. The shipped checkpoint is --cpu-minutes 15 from scratch on
# one core of a shared machine: 7069 steps, the preset's step budget.
_DIT_JOINT_X2 = dataclasses.replace(
    _DIT_JOINT_X,
    name="dit-joint-x2-cpu",
    description="dit-joint-x-cpu trained at learning rate 2e-3 and sampled at guidance 5 (CPU)",
    train=dataclasses.replace(_DIT_JOINT_X.train, lr=2e-3),
    guidance_scale=5.0,
    steps=7069,
)
_PRESETS.append(_DIT_JOINT_X2)

# dit-joint-x2-cpu with absolute positions beside RoPE (position="sincos+rope": the 3-D sin-cos
# table added to the tokens, as dit-gpu), sampled at guidance 8 on t >= 0.2 only (the guidance
# interval; benchmarks/results/dit.md, "Absolute positions and the guidance interval"). A 900
# CPU-s pilot (`bench_dit.py pilot sincos --base dit-joint-x2-cpu --seconds 900 --cpu --set
# position=sincos+rope`), scored on 100 clips: identity 0.75 at guidance 5 against
# dit-joint-x2-cpu's 0.66, and 0.82 at guidance 8 on t >= 0.2 against its 0.74; with seed 1 both
# recipes scored alike (0.70 / 0.78 against 0.72 / 0.77): the identity gain is within the spread
# between runs, the faster digit held in both. The shipped checkpoint is --cpu-minutes 15 from
# scratch on one core of a shared machine: 7001 steps, the preset's step budget.
_DIT_JOINT_X3 = dataclasses.replace(
    _DIT_JOINT_X2,
    name="dit-joint-x3-cpu",
    description="dit-joint-x2-cpu with sin-cos + RoPE positions, sampled at guidance 8 on t >= 0.2 (CPU)",
    model_config=dataclasses.replace(_DIT_JOINT_X2.model_config, position="sincos+rope"),
    guidance_scale=8.0,
    guidance_interval=(0.2, 1.0),
    steps=7001,
)
_PRESETS.append(_DIT_JOINT_X3)

# dit-joint-x3-cpu's recipe on 1x8x8 patches at width 96: each token is one frame in time (so no
# two frames are written by one vector -- the tubelet-2 DiTs move the digit less inside a token
# and jump at every token boundary, benchmarks/results/dit.md "Where the physics residual comes
# from") and an 8x8 square in space, 16 tokens a frame: 160 tokens a 10-frame clip where 2x4x4
# patches make 320, so a wider model still steps faster. The batches are dit-joint-x3-cpu's
# (bucketed under dit-cpu's patch: 8 clips of 10 frames or 40 of 2, the same counts under 1x8x8).
# 900 CPU-s pilots of x3's recipe, scored on 100 clips (`bench_dit.py pilot NAME --base
# dit-joint-x3-cpu --seconds 900 --cpu --set "patch=(1,8,8)" [dim=96]`; tables guidance_s10b/c):
# identity 0.88 at width 64 (15152 steps) and 0.94 at width 96 (9595 steps) at guidance 8 on
# t >= 0.2, against the x3 recipe's 0.82 and 0.78 (two seeds); seeds 1 and 2 of this recipe 0.89
# and 0.92. Physics (1.84 / 1.97 / 2.12 px over the three seeds, x3's 2.02 / 2.14) is within the
# spread. The shipped checkpoint is --cpu-minutes 15 from scratch on one core of a shared
# machine: 9162 steps, the preset's step budget.
_PRESETS.append(
    dataclasses.replace(
        _DIT_JOINT_X3,
        name="dit-joint-x4-cpu",
        description="dit-joint-x3-cpu on 1x8x8 patches (one frame a token in time) at width 96, sampled at guidance 8 on t >= 0.2 (CPU)",
        model_config=dataclasses.replace(_DIT_JOINT_X3.model_config, patch=(1, 8, 8), dim=96),
        steps=9162,
    )
)

# Trials (not shipped): dit-joint-x-cpu's snippets made 4 frames long (two token frames: 128
# tokens, 20 clips a batch), so that the short batches also teach carrying a shape from one token
# frame to the next -- where every DiT's strips redraw it; and 2-, 4- and 10-frame batches in
# thirds. 900 CPU-s pilots (`bench_dit.py pilot joint4_x900 --base dit-joint4-x-cpu --seconds 900
# --cpu`), scored on 100 clips at guidance 2 / 5: identity 0.42 / 0.59 and 0.41 / 0.63 against
# dit-joint-x-cpu's 0.41 / 0.60: no gain (benchmarks/results/dit.md, "Learning rate, time shift
# and snippet length").
_PRESETS.extend(
    dataclasses.replace(
        _DIT_JOINT_X,
        name=name,
        description=f"dit-joint-x-cpu with {what} (CPU; a trial recipe)",
        batch_source=functools.partial(bucketed_batch, data=MovingMNISTConfig.cpu(), sizes=sizes, patch=_DIT_CPU.model_config.patch),
    )
    for name, what, sizes in (
        ("dit-joint4-x-cpu", "4-frame snippets in place of 2-frame ones", ((4, 32, 32), (10, 32, 32))),
        ("dit-joint24-x-cpu", "2- and 4-frame snippets and 10-frame clips, a third each", ((2, 32, 32), (4, 32, 32), (10, 32, 32))),
    )
)

# One DiT for many sizes (lesson 07, benchmarks/results/dit.md "Many sizes"): dit-cpu's model
# with sin-cos + RoPE positions (the walls of each canvas at known rows and columns), trained on
# Open-Sora's bucketed batches -- 24 and 32 px squares and a 24x48 (2:1) canvas, 6 to 12 frames,
# one size per step and about dit-cpu's 2560 tokens per batch. Nothing tells the model the
# canvas size: it must find the far walls from the tokens it sees. The shipped checkpoint is
# --cpu-minutes 13 on one core of a shared machine: 4171 steps, the preset's step budget.
MULTISIZE_BUCKETS = tuple((frames, height, width) for frames in (6, 8, 10, 12) for height, width in ((24, 24), (32, 32), (24, 48)))
_PRESETS.append(
    dataclasses.replace(
        _DIT_CPU,
        name="dit-multisize-cpu",
        description="dit-cpu with sin-cos + RoPE positions trained on bucketed batches of mixed sizes: 24x24, 32x32 and "
        "24x48 canvases, 6-12 frames (CPU)",
        model_config=dataclasses.replace(_DIT_CPU.model_config, position="sincos+rope"),
        batch_source=functools.partial(
            bucketed_batch, data=MovingMNISTConfig.cpu(), sizes=MULTISIZE_BUCKETS, patch=_DIT_CPU.model_config.patch
        ),
        steps=4171,
    )
)

# The same recipe told its canvas (issue 11): each clip's (frames, height, width) embedded and
# added to the conditioning vector, as SDXL and PixArt-alpha condition on image size
# (VideoDiTConfig.size_conditioning; zero at init). Trained as dit-multisize-cpu: --cpu-minutes 13,
# which gave the shipped checkpoint's 4730 steps, the preset's step budget.
# Its gain at canvases neither saw is not established: with two runs of each recipe (seed 1 of
# each, same CPU budget) the difference of the recipes' means changes sign with the canvas (digit
# count worse at 40x40 and 48x24, better at 32x64) and is larger than the gap between two runs of
# one recipe only for digit count at 32x64, just (benchmarks/results/dit.md, 'Run-to-run spread,
# both recipes'). Shipped as lesson 07's example of size conditioning, not as the better model.
_MULTISIZE = next(preset for preset in _PRESETS if preset.name == "dit-multisize-cpu")
_PRESETS.append(
    dataclasses.replace(
        _MULTISIZE,
        name="dit-multisize-sizecond-cpu",
        description="dit-multisize-cpu told each clip's size: (frames, height, width) embedded and added to the "
        "conditioning vector, as SDXL / PixArt-alpha condition on image size (CPU)",
        model_config=dataclasses.replace(_MULTISIZE.model_config, size_conditioning=True),
        steps=4730,
    )
)

# video-cpu fine-tuned with masked-frame conditioning (lesson 12): the same model, new loss and batches.
_VIDEO_CPU = next(preset for preset in _PRESETS if preset.name == "video-cpu")

# Lesson 06's pixel arm of the latent-against-pixel comparison at equal CPU time: video-cpu's
# U-Net and recipe trained from scratch (no image-cpu pretraining), like latent-video-cpu.
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_CPU,
        name="video-scratch-cpu",
        description="video-cpu's (2+1)-D U-Net trained from scratch on 10-frame 32x32 one-digit clips: the pixel arm "
        "of lesson 06's latent-against-pixel comparison (CPU)",
        train=TrainConfig(lr=1e-3, warmup_steps=50, ema_decay=0.995, checkpoint_every=50),
        init_from=None,
    )
)
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_CPU,
        name="video-ctx-cpu",
        description="video-cpu fine-tuned with masked-frame conditioning (random context frames, clean or "
        "noise-augmented, out of the loss): prediction, extension, interpolation, keyframes (CPU)",
        # A quarter of the clips move 3x faster, so the same model draws keyframes 3 frames apart.
        batch_source=functools.partial(
            context_clips, data=_VIDEO_CPU.data, context=ContextConfig(), keyframe_stride=3, keyframe_fraction=0.25
        ),
        context=ContextConfig(),
        steps=3000,
        quick_steps=2,
        train=TrainConfig(lr=5e-4, warmup_steps=20, ema_decay=0.995, checkpoint_every=50),
        init_from="video-cpu",
    )
)

# Guidance distillation (Meng et al. 2023, stage one; issue 17's 2-second goal): video-cpu's
# student takes the guidance scale w as an input and learns video-cpu's guided output, so a
# sampler step is one call of 8 clips instead of a call of 16 (the labels and the null label).
# It starts as video-cpu (its w embedding at zero), trained at uniform times (where samplers
# ask) with w drawn from [1, 3]; the shipped checkpoint's run is in the manifest.
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_CPU,
        name="video-distilled-cpu",
        description="video-cpu guidance-distilled (Meng et al. 2023): takes the guidance scale as an input and "
        "returns video-cpu's guided output in one call, half the sampling work (CPU)",
        model_class=GuidedUNet3D,
        model_config=GuidedUNet3DConfig(**_VIDEO_CPU.model_config.__dict__, guidance_range=(1.0, 3.0)),
        t_distribution="uniform",
        steps=600,
        quick_steps=2,
        train=TrainConfig(lr=5e-4, warmup_steps=20, ema_decay=0.995, checkpoint_every=50),
        init_from="video-cpu",
        teacher="video-cpu",
    )
)

# The same distillation continued from the shipped student (its run directory, hence its
# optimizer state, was not kept: Adam restarts with a short warm-up; a new data seed), and
# recording DPM-Solver++(2M) at 8 steps as its default sampler: 8 calls of 8 clips, the
# 2-second setting of issue 17. The shipped checkpoint is --cpu-minutes 11 (430 steps); 430 steps
# is that run as a step budget. Its run and metrics are in the manifest and fast_paths.md.
_VIDEO_DISTILLED = next(preset for preset in _PRESETS if preset.name == "video-distilled-cpu")
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_DISTILLED,
        name="video-distilled-8-cpu",
        description="video-distilled-cpu trained further on video-cpu's guided outputs; samples with dpm++2m in 8 steps "
        "by default (one call of B clips per step) (CPU)",
        steps=430,
        train=dataclasses.replace(_VIDEO_DISTILLED.train, seed=1),
        sampler="dpm++2m",
        sample_steps=8,
        init_from="video-distilled-cpu",
    )
)

# Its GPU counterpart, written down but not trained here: train image-gpu, then video-gpu, copy each
# run's model.safetensors to data/checkpoints/<name>.safetensors, then train video-ctx-gpu.
# 20-frame windows: interpolation spans both ends with n = 19; keyframes 3 apart need window=19.
_VIDEO_GPU = next(preset for preset in _PRESETS if preset.name == "video-gpu")
_GPU_CONTEXT = ContextConfig(max_k=10, every_n=(2, 3, 19))
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_GPU,
        name="video-ctx-gpu",
        description="video-gpu fine-tuned with masked-frame conditioning for long videos and 10 -> 10 prediction (64x64, 20 frames); GPU-sized",
        batch_source=functools.partial(
            context_clips, data=_VIDEO_GPU.data, context=_GPU_CONTEXT, keyframe_stride=3, keyframe_fraction=0.25
        ),
        context=_GPU_CONTEXT,
        steps=10_000,
        quick_steps=2,
        train=TrainConfig(lr=1e-4, warmup_steps=200, ema_decay=0.9995, checkpoint_every=500),
        init_from="video-gpu",
    )
)

# Image-to-video (Stable Video Diffusion's conditioning) and sync to a signal (lesson 10): video-cpu
# with new ways in for a condition (vdmcourse.nn.conditioning), every new layer starting at zero.
# Speeds are px per base frame at 12 fps; clips are rendered at strides 1-3 (fps 12, 6, 4).
_I2V_DATA = MovingMNISTConfig.cpu(speed=(0.25, 1.25))
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_CPU,
        name="i2v-cpu",
        model_class=ConditionedUNet3D,
        description="image-to-video a la Stable Video Diffusion: video-cpu plus the noise-augmented first frame "
        "concatenated on channels, the evaluator's image embedding and [fps - 1, motion bucket, noise_aug] added to "
        "the time embedding (CPU)",
        model_config=ConditionedUNet3DConfig(
            **_VIDEO_CPU.model_config.__dict__, condition_channels=1, image_embed_dim=64, micro_conditioning=True
        ),
        data=_I2V_DATA,
        objective=None,
        # The new layers start at zero and must grow in a few hundred steps: at lr 5e-4 and uniform
        # logit-normal times a first run (400 steps) left the bucket without effect; the conditions
        # matter most at high noise, so times lean there (t_mean 0.5) and the lr is 2e-3. A retrain with
        # condition_gain=4.0 and image_to_video_batch(group=4) (796 steps, benchmarks/results/i2v.md,
        # "Recipe attempts") moved the knobs a little more but put frame 0 further from the image; not shipped.
        loss=functools.partial(image_to_video_loss, t_mean=0.5),
        batch_source=functools.partial(image_to_video_batch, data=_I2V_DATA),
        steps=1500,
        quick_steps=2,
        train=TrainConfig(lr=2e-3, warmup_steps=20, ema_decay=0.995, checkpoint_every=50),
        init_from="video-cpu",
    )
)
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_CPU,
        name="sync-cpu",
        model_class=ConditionedUNet3D,
        description="sync to a signal (Pika's lip-sync in miniature): video-cpu plus a per-frame signal in [0, 1] "
        "added to each frame's time embedding; the digit's brightness follows it (CPU)",
        model_config=ConditionedUNet3DConfig(**_VIDEO_CPU.model_config.__dict__, signal=True),
        objective=None,
        loss=signal_loss,
        batch_source=functools.partial(signal_batch, data=_VIDEO_CPU.data),
        steps=1000,
        quick_steps=2,
        train=TrainConfig(lr=5e-4, warmup_steps=20, ema_decay=0.995, checkpoint_every=50),
        init_from="video-cpu",
    )
)
# More steps for the knobs: i2v-cpu stopped at 797 of its 1500 steps with bucket and fps only begun
# (benchmarks/results/i2v.md). This continues the shipped i2v-cpu with the same recipe on fresh
# clips (data seed 1; the optimiser starts afresh, the lr is constant after warm-up either way).
_I2V_CPU = next(preset for preset in _PRESETS if preset.name == "i2v-cpu")
_PRESETS.append(
    dataclasses.replace(
        _I2V_CPU,
        name="i2v-long-cpu",
        description="i2v-cpu trained for longer: the shipped i2v-cpu fine-tuned with its own recipe on fresh clips (CPU)",
        steps=800,
        train=dataclasses.replace(_I2V_CPU.train, seed=1),
        init_from="i2v-cpu",
    )
)

# i2v-cpu's model and recipe trained from scratch, so that the whole model fits 30 CPU-minutes
# (i2v-cpu's 14.9 CPU-minutes start from video-cpu, itself inflated from image-cpu: 30 and 26 minutes
# of training on one or two threads, whose CPU time the manifest does not record). The
# conditioning frame shows the digit, so the model mainly has to learn to move it (it does; it keeps the
# digit's shape less well than i2v-cpu: benchmarks/results/i2v.md). A longer warm-up
# than i2v-cpu's, as video-scratch-cpu's; steps is a ceiling, the shipped run's --cpu-minutes stops it.
_PRESETS.append(
    dataclasses.replace(
        _I2V_CPU,
        name="i2v-scratch-cpu",
        description="image-to-video a la Stable Video Diffusion, i2v-cpu's conditioned U-Net and recipe trained from "
        "scratch (no video-cpu or image-cpu pretraining), within 30 CPU-minutes (CPU)",
        steps=4000,
        train=dataclasses.replace(_I2V_CPU.train, warmup_steps=50),
        init_from=None,
    )
)

# Latent image-to-video, SVD's own setting: latent-video-cpu (a U-Net on vae-cpu's scaled 10x4x8x8
# latents) with i2v-cpu's conditions; the conditioning frame is the latent mean of the noised image
# (4 channels), the image embedding stays the evaluator's features of the pixel image.
_LATENT_VIDEO_CPU = next(preset for preset in _PRESETS if preset.name == "latent-video-cpu")
_PRESETS.append(
    dataclasses.replace(
        _LATENT_VIDEO_CPU,
        name="i2v-latent-cpu",
        model_class=ConditionedUNet3D,
        description="latent image-to-video: latent-video-cpu plus i2v-cpu's conditions, the noise-augmented image "
        "encoded by vae-cpu and concatenated on the latent channels; sampling decodes through vae-cpu (CPU)",
        model_config=ConditionedUNet3DConfig(
            **_LATENT_VIDEO_CPU.model_config.__dict__, condition_channels=4, image_embed_dim=64, micro_conditioning=True
        ),
        data=_I2V_DATA,
        objective=None,
        loss=functools.partial(image_to_video_loss, t_mean=0.5, vae="vae-cpu"),
        batch_source=functools.partial(image_to_video_batch, data=_I2V_DATA),
        steps=1500,
        quick_steps=2,
        train=TrainConfig(lr=2e-3, warmup_steps=20, ema_decay=0.995, checkpoint_every=50),
        init_from="latent-video-cpu",
    )
)

# Their GPU counterparts, written down but not trained here: train image-gpu and video-gpu first
# (see video-ctx-gpu), then `python -m vdmcourse train --preset i2v-gpu` and `--preset sync-gpu`.
_I2V_GPU_DATA = MovingMNISTConfig.srivastava(speed=(0.5, 2.5))
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_GPU,
        name="i2v-gpu",
        model_class=ConditionedUNet3D,
        description="image-to-video a la Stable Video Diffusion on 64x64, 20-frame two-digit clips; GPU-sized",
        model_config=ConditionedUNet3DConfig(
            **_VIDEO_GPU.model_config.__dict__, condition_channels=1, image_embed_dim=64, micro_conditioning=True
        ),
        data=_I2V_GPU_DATA,
        objective=None,
        loss=image_to_video_loss,
        batch_source=functools.partial(image_to_video_batch, data=_I2V_GPU_DATA),
        steps=10_000,
        quick_steps=2,
        train=TrainConfig(lr=1e-4, warmup_steps=200, ema_decay=0.9995, checkpoint_every=500, precision="auto"),
        init_from="video-gpu",
    )
)
_PRESETS.append(
    dataclasses.replace(
        _VIDEO_GPU,
        name="sync-gpu",
        model_class=ConditionedUNet3D,
        description="sync to a signal on 64x64, 20-frame two-digit clips: brightness follows a per-frame signal; GPU-sized",
        model_config=ConditionedUNet3DConfig(**_VIDEO_GPU.model_config.__dict__, signal=True),
        objective=None,
        loss=signal_loss,
        batch_source=functools.partial(signal_batch, data=_VIDEO_GPU.data),
        steps=10_000,
        quick_steps=2,
        train=TrainConfig(lr=1e-4, warmup_steps=200, ema_decay=0.9995, checkpoint_every=500, precision="auto"),
        init_from="video-gpu",
    )
)

# Lesson 09: the captioner that recaptions training clips (its trunk starts from evaluator-cpu).
_PRESETS.append(
    Preset(
        name="captioner-cpu",
        description="lesson 09's video captioner: digit, direction, speed class and bounces (wall, frame) of one-digit 32x32x10 clips (CPU)",
        model_class=Captioner,
        model_config=CaptionerConfig(),
        data=CaptionerConfig().data,
        objective=None,
        loss=captioner_loss,
        batch_source=functools.partial(captioner_batch, config=CaptionerConfig()),
        batch_size=64,
        steps=600,
        quick_steps=4,
        train=TrainConfig(lr=3e-3, warmup_steps=30, weight_decay=0.01, ema_decay=0.99, checkpoint_every=50),
        init_from="evaluator-cpu",
    )
)

# Lesson 09: text-to-video with image and motion controls, video-ctx-cpu plus cross-attention.
# The recaptioning experiment trains the same model twice at equal compute (same steps, batch,
# seed): on short captions ("a 3") and on captions written by captioner-cpu.
_TEXT_DATA = MovingMNISTConfig.cpu(speed=(1.0, 3.0))
_TEXT_VIDEO = Preset(
    name="text-video-cpu",
    description="lesson 09: text (recaptioned by captioner-cpu) + optional first frame + optional motion path -> "
    "10-frame 32x32 clips; video-ctx-cpu with cross-attention (CPU)",
    model_class=TextVideoUNet,
    model_config=TextVideoConfig(),
    data=_TEXT_DATA,
    objective=None,
    loss=text_video_loss,
    batch_source=functools.partial(caption_batch, data=_TEXT_DATA, captions="recaptioned"),
    batch_size=8,
    steps=900,
    quick_steps=2,
    train=TrainConfig(lr=5e-4, warmup_steps=20, ema_decay=0.99, checkpoint_every=50),
    sampler="heun",
    sample_steps=10,
    init_from="video-ctx-cpu",
)
_PRESETS.append(_TEXT_VIDEO)
_PRESETS.append(
    dataclasses.replace(
        _TEXT_VIDEO,
        name="text-video-short-cpu",
        description="lesson 09's baseline arm: text-video-cpu trained on short captions ('a 3') at the same compute (CPU)",
        batch_source=functools.partial(caption_batch, data=_TEXT_DATA, captions="short"),
    )
)
# Written down, not trained here: train image-gpu, video-gpu, video-ctx-gpu (see above), then
#   python -m vdmcourse train --preset captioner-gpu   (copy to data/checkpoints/captioner-gpu.safetensors)
#   python -m vdmcourse train --preset text-video-gpu
_TEXT_GPU_DATA = MovingMNISTConfig.srivastava(digits=1, speed=(2.0, 5.0))
_PRESETS.append(
    dataclasses.replace(
        _TEXT_VIDEO,
        name="captioner-gpu",
        description="lesson 09's captioner for 64x64, 20-frame one-digit clips; GPU-sized",
        model_class=Captioner,
        model_config=CaptionerConfig(canvas=64, frames=20, digit_size=28, speed=(2.0, 5.0), widths=(32, 64, 128), feature_dim=128, hidden=512),
        data=_TEXT_GPU_DATA,
        loss=captioner_loss,
        batch_source=functools.partial(
            captioner_batch,
            config=CaptionerConfig(canvas=64, frames=20, digit_size=28, speed=(2.0, 5.0), widths=(32, 64, 128), feature_dim=128, hidden=512),
        ),
        batch_size=128,
        steps=5000,
        train=TrainConfig(lr=1e-3, warmup_steps=200, weight_decay=0.01, ema_decay=0.999, checkpoint_every=500),
        init_from=None,
    )
)
_PRESETS.append(
    dataclasses.replace(
        _TEXT_VIDEO,
        name="text-video-gpu",
        description="lesson 09's text + image + motion model for 64x64, 20-frame one-digit clips (video-ctx-gpu's U-Net "
        "with cross-attention; captions by captioner-gpu); GPU-sized",
        model_config=TextVideoConfig(
            unet=dataclasses.replace(_VIDEO_GPU.model_config, context_dim=128, cross_attention_levels=(2, 3), pooled_context=True),
            text=TextEncoderConfig(dim=128, depth=4),
        ),
        data=_TEXT_GPU_DATA,
        batch_source=functools.partial(caption_batch, data=_TEXT_GPU_DATA, captions="recaptioned", captioner="captioner-gpu"),
        batch_size=32,
        steps=20_000,
        train=TrainConfig(lr=1e-4, warmup_steps=500, ema_decay=0.9995, checkpoint_every=500, precision="auto"),
        sample_steps=25,
        init_from="video-ctx-gpu",
    )
)

# Lesson 09: how the text reaches the U-Net, compared at equal compute (same steps, batch, seed,
# data; text only: the first frame and the motion path are always dropped). Pooled text added to
# the timestep embedding only (one vector per clip, as a label is) vs cross-attention only.
_TEXT_ONLY = {"caption": 0.1, "image": 1.0, "motion": 1.0}
for _name, _levels, _pooled, _what in (
    ("text-pooled-cpu", (), True, "pooled text through the timestep embedding only"),
    ("text-cross-cpu", (2, 3), False, "cross-attention to the text tokens only"),
):
    _PRESETS.append(
        dataclasses.replace(
            _TEXT_VIDEO,
            name=_name,
            description=f"lesson 09's text-path comparison: {_what}; ground-truth descriptive captions, text only, 450 steps (CPU)",
            model_config=TextVideoConfig(
                unet=dataclasses.replace(_TEXT_VIDEO.model_config.unet, cross_attention_levels=_levels, pooled_context=_pooled),
                cross_attention=bool(_levels),
            ),
            loss=functools.partial(text_video_loss, dropout=_TEXT_ONLY),
            batch_source=functools.partial(caption_batch, data=_TEXT_DATA, captions="descriptive"),
            steps=450,  # the pooled path follows the digit here (lesson 09); 250 was too few for either
        )
    )

# Lesson 13's caption-quality experiment (issue 15, experiment 4), with the caption pipeline: the
# text-cross-cpu recipe with 30 % of the captions replaced by another clip's, at equal compute.
_PRESETS.append(
    dataclasses.replace(
        next(preset for preset in _PRESETS if preset.name == "text-cross-cpu"),
        name="text-cross-noisy-cpu",
        description="lesson 13's caption-quality arm: text-cross-cpu with 30% of the captions replaced by another clip's (CPU)",
        batch_source=functools.partial(caption_batch, data=_TEXT_DATA, captions="descriptive", wrong_share=0.3),
    )
)

# The same caption-quality arm on the pooled path: at 450 steps the pooled model follows the digit
# and the cross-attention-only one does not yet, so only the pooled pair can show wrong captions hurt.
_PRESETS.append(
    dataclasses.replace(
        next(preset for preset in _PRESETS if preset.name == "text-pooled-cpu"),
        name="text-pooled-noisy-cpu",
        description="lesson 13's caption-quality arm on the pooled text path: text-pooled-cpu with 30% of the captions replaced by another clip's (CPU)",
        batch_source=functools.partial(caption_batch, data=_TEXT_DATA, captions="descriptive", wrong_share=0.3),
    )
)

# Lesson 09: the mini-CLIP behind the text-video alignment score (clip encoder starts from evaluator-cpu).
_PRESETS.append(
    Preset(
        name="miniclip-cpu",
        description="lesson 09's mini-CLIP: clip and caption encoders trained contrastively (symmetric InfoNCE) "
        "on one-digit 32x32x10 clips; the text-video alignment score (CPU)",
        model_class=MiniCLIP,
        model_config=MiniCLIPConfig(),
        data=MiniCLIPConfig().data,
        objective=None,
        loss=miniclip_loss,
        batch_source=functools.partial(miniclip_batch, config=MiniCLIPConfig()),
        batch_size=64,
        steps=500,
        quick_steps=4,
        train=TrainConfig(lr=1e-3, warmup_steps=30, weight_decay=0.01, ema_decay=0.99, checkpoint_every=50),
        init_from="evaluator-cpu",
    )
)

# Sync by scale (issue 13: "the digit's scale or brightness"): sync-cpu's model and loss on clips whose
# digit shrinks about its centre to 0.5 + 0.5 s_t of its size (apply_scale); continued from sync-cpu,
# whose per-frame signal path is already trained (for brightness).
_SYNC_CPU = next(preset for preset in _PRESETS if preset.name == "sync-cpu")
_PRESETS.append(
    dataclasses.replace(
        _SYNC_CPU,
        name="sync-scale-cpu",
        description="sync to a signal by scale: sync-cpu fine-tuned on clips whose digit's size follows a per-frame signal (CPU)",
        batch_source=functools.partial(signal_batch, data=_VIDEO_CPU.data, drive="scale"),
        train=dataclasses.replace(_SYNC_CPU.train, lr=1e-3),
        init_from="sync-cpu",
    )
)

# Restyle and sync within the 30 CPU-minutes, pretraining counted: video-scratch-cpu (trained from
# scratch, 824 CPU-s) fine-tuned on clips drawn thin / regular / thick and in normal or inverted ink, the
# style given as label rows beside the digit (style_classes), their brightness following a per-frame
# signal as sync-cpu's. One model for video-to-video's stroke and ink restyles and for sync to a signal;
# sync-cpu itself starts from video-cpu (30 training minutes after image-cpu's 25.5; no CPU time recorded for either). Times are uniform:
# the ink (normal or inverted) is decided in the noisiest steps, where x_t still shows the background for t < ~0.97;
# under logit-normal times (sync-cpu's) the model met t > 0.97 in 0.03 % of draws and ignored the ink label from noise
# (a pilot at 1000 steps: sync r 0.43, 82 % of frames inverted when normal ink was asked; see the manifest entry).
_PRESETS.append(
    dataclasses.replace(
        _SYNC_CPU,
        name="style-sync-cpu",
        loss=functools.partial(signal_loss, t_distribution="uniform"),
        description="restyle and sync from scratch within 30 CPU-minutes: video-scratch-cpu plus stroke (thin, regular, "
        "thick) and ink (normal, inverted) labels and a per-frame brightness signal (CPU)",
        model_config=ConditionedUNet3DConfig(**_VIDEO_CPU.model_config.__dict__, signal=True, style_classes=STYLE_CLASSES),
        batch_source=functools.partial(style_batch, data=_VIDEO_CPU.data),
        train=dataclasses.replace(_SYNC_CPU.train, lr=1e-3),
        init_from="video-scratch-cpu",
    )
)

# Sync alone within the 30 CPU-minutes, pretraining counted: sync-cpu's model, loss, clips and
# recipe started from video-scratch-cpu (824 CPU-s from scratch, the same U-Net as video-cpu, so the
# signal embedding is added at zero exactly as for sync-cpu) instead of video-cpu (image-cpu before it).
# steps is a ceiling; the shipped run's --cpu-minutes 14 stopped it at 1142 steps (847 CPU-s; 27.8 CPU-minutes
# with video-scratch-cpu's 824). Sync pooled r 0.954 against sync-cpu's 0.944 and style-sync-cpu's 0.716 on the
# same signals, but the digit's identity is weak, as video-scratch-cpu's (benchmarks/results/i2v.md,
# "Sync within 30 CPU-minutes"; the manifest entry).
_PRESETS.append(
    dataclasses.replace(
        _SYNC_CPU,
        name="sync-scratch-cpu",
        description="sync to a signal within 30 CPU-minutes: sync-cpu's model and recipe fine-tuned from "
        "video-scratch-cpu (trained from scratch) instead of video-cpu (CPU)",
        steps=2000,
        init_from="video-scratch-cpu",
    )
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _PRESETS}


@functools.lru_cache(maxsize=4)
def _cached_vae(path: str, device: str, stamp: tuple[int, int]) -> VideoVAE:
    model = pretrained.build_model(path).to(device)  # stamp (mtime, size): a changed file is read again
    if not isinstance(model, VideoVAE):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a VideoVAE; latent diffusion needs the VAE it was trained on")
    return model.eval().requires_grad_(False)


def load_latent_vae(name: str, *, device: str | torch.device = "cpu", fingerprint: str | None = None) -> VideoVAE:
    """The frozen VAE of a latent diffusion preset or checkpoint: a shipped name (e.g.
    ``"vae-cpu"``) or a ``.safetensors`` path, in eval mode on ``device``. With
    ``fingerprint`` (what a latent checkpoint records), any other VAE is refused."""
    path = Path(name) if name.endswith(".safetensors") else CHECKPOINT_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(
            f"no VAE checkpoint {path}; latent diffusion needs its VAE: ship it, or train it with "
            f"`python -m vdmcourse train --preset {Path(name).stem}`"
        )
    stat = path.stat()
    vae = _cached_vae(str(path), str(device), (stat.st_mtime_ns, stat.st_size))
    if fingerprint is not None and vae_fingerprint(vae) != fingerprint:
        raise ValueError(
            f"this latent model was trained on the latents of a VAE {name!r} with fingerprint {fingerprint[:12]}..., "
            f"but the VAE found under that name has fingerprint {vae_fingerprint(vae)[:12]}...; its latents mean "
            "something else. Restore the VAE the model was trained with, or retrain the latent model on this one"
        )
    return vae


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ``ValueError`` listing the known names otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
