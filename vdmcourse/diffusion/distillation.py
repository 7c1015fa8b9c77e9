"""Guidance distillation: one model call per sampler step instead of classifier-free guidance's two.

Classifier-free guidance (:mod:`vdmcourse.diffusion.guidance`) asks the model twice per
step -- with the labels and with the null label -- and mixes the two predictions,

    guided = uncond + w * (cond - uncond).

Stage one of Meng et al. 2023 ("On Distillation of Guided Diffusion Models") trains a
*student* that takes the guidance scale ``w`` as an input and predicts the teacher's
guided output in one call: at a noisy clip ``x_t = alpha x0 + sigma eps`` of a training
clip, a random time ``t`` and a random ``w``, the loss is

    || student(x_t, t, labels, w) - guided_teacher(x_t, t, labels, w) ||^2

(:func:`guidance_distillation_loss`; the target is :func:`distillation_target`). No
sampling happens during training: the student learns the teacher's guided *field* at the
points the forward process visits, so any sampler can then walk it.

:class:`GuidedUNet3D` is :class:`~vdmcourse.nn.unet3d.UNet3D` plus an embedding of ``w``
(a sinusoid, then Linear -> SiLU -> Linear, the last layer zero) added to the time + label
embedding, as Meng et al. do. Made from a trained UNet3D (:meth:`GuidedUNet3D.from_image_model`,
the hook a preset's ``init_from`` calls) it copies every weight, so at initialisation it
returns its teacher's *conditional* output whatever ``w`` is -- the guided target at
``w = 1`` -- and training only has to learn what guidance adds.

The samplers see ``guidance_distilled = True`` on the model and call it once per step with
``guidance=scale`` (:func:`~vdmcourse.diffusion.guidance.guided_output`): same interface,
half the model work. The preset ``video-distilled-cpu`` is video-cpu's student.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from vdmcourse.course import to_model_range
from vdmcourse.diffusion.guidance import check_labels, null_label_of
from vdmcourse.diffusion.objectives import frame_noise, noise_mix_of, resolve_schedule, sample_timesteps
from vdmcourse.nn.embeddings import drop_labels, sinusoidal_embedding
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig, extended_config

__all__ = [
    "GuidedUNet3DConfig",
    "GuidedUNet3D",
    "GuidanceEmbedding",
    "distillation_target",
    "guidance_distillation_loss",
    "frozen_teacher",
]


class GuidanceEmbedding(nn.Module):
    """A guidance scale ``w`` per clip -> a vector to add to the time embedding.

    ``w`` is embedded like diffusion time (:class:`~vdmcourse.nn.embeddings.TimestepEmbedding`
    scales ``t`` in ``[0, 1]`` by 1000): ``sinusoid(scale * w)``, then Linear -> SiLU -> Linear
    with the last layer at zero, so a new embedding changes nothing. Input ``(B,)``; output ``(B, dim)``.
    """

    def __init__(self, dim: int, frequency_dim: int = 64, scale: float = 250.0):
        super().__init__()
        self.frequency_dim, self.scale = frequency_dim, float(scale)
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        frequencies = sinusoidal_embedding(w.float() * self.scale, self.frequency_dim)  # (B, F)
        return self.mlp(frequencies.to(self.mlp[0].weight.dtype))  # (B, dim)


@dataclass(frozen=True)
class GuidedUNet3DConfig(UNet3DConfig):
    """:class:`~vdmcourse.nn.unet3d.UNet3DConfig` plus the guidance input.

    Attributes (besides UNet3DConfig's):
        guidance_range: ``(low, high)``: the scales ``w`` training draws uniformly (1 = the
            conditional model, no guidance). Outside it the student was never taught.
        guidance_frequency_dim: width of ``w``'s sinusoid.
    """

    guidance_range: tuple[float, float] = (1.0, 3.0)
    guidance_frequency_dim: int = 64

    def __post_init__(self):
        super().__post_init__()
        if self.num_classes is None:
            raise ValueError("GuidedUNet3DConfig: guidance distillation needs a label-conditional model (num_classes)")
        low_high = self.guidance_range
        if (not isinstance(low_high, tuple) or len(low_high) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in low_high)
                or not 0 <= low_high[0] <= low_high[1] < float("inf")):
            raise ValueError(f"GuidedUNet3DConfig: guidance_range must be (low, high) with 0 <= low <= high; got {low_high!r}")
        if not isinstance(self.guidance_frequency_dim, int) or self.guidance_frequency_dim < 2:
            raise ValueError(f"GuidedUNet3DConfig: guidance_frequency_dim must be an int >= 2; got {self.guidance_frequency_dim!r}")

    def video_fields(self) -> dict:
        """The fields of the plain :class:`~vdmcourse.nn.unet3d.UNet3DConfig`, as a dict."""
        return {f.name: getattr(self, f.name) for f in fields(UNet3DConfig)}


class GuidedUNet3D(UNet3D):
    """A guidance-distilled :class:`~vdmcourse.nn.unet3d.UNet3D` (see the module docstring).

    ``model(x, t, cond=None, *, guidance=None)``: ``x``, ``t``, ``cond`` as for UNet3D;
    ``guidance`` the scale ``w``, a number or ``(B,)`` (None: 1, the conditional model).
    Returns the guided prediction, ``x``'s shape. The samplers call it once per step.
    """

    guidance_distilled = True  # read by guided_output: one call with guidance=scale

    def __init__(self, config: GuidedUNet3DConfig | None = None):
        config = config or GuidedUNet3DConfig()
        if not isinstance(config, GuidedUNet3DConfig):
            raise TypeError(f"GuidedUNet3D expects a GuidedUNet3DConfig; got {type(config).__name__}")
        super().__init__(config)
        self.guidance_embed = GuidanceEmbedding(config.embed_dim, config.guidance_frequency_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, *, guidance=None) -> torch.Tensor:
        batch = x.shape[0] if isinstance(x, torch.Tensor) and x.ndim >= 1 else 0
        w = torch.as_tensor(1.0 if guidance is None else guidance, dtype=torch.float32, device=self.input_conv.weight.device)
        if w.ndim == 0:
            w = w.expand(batch)
        if w.shape != (batch,) or not torch.isfinite(w).all():
            raise ValueError(f"GuidedUNet3D expects guidance as a finite number or a (B,) = ({batch},) tensor; got shape {tuple(w.shape)}")
        return super().forward(x, t, cond, added=self.guidance_embed(w))  # (B, E) added to the time embedding

    @classmethod
    def from_image_model(cls, image_model: nn.Module, config: GuidedUNet3DConfig | None = None, **fields_) -> GuidedUNet3D:
        """The student of a trained :class:`~vdmcourse.nn.unet3d.UNet3D` (its teacher), the hook a
        preset's ``init_from`` calls: every weight copied, the guidance embedding at zero, so at
        initialisation it returns the teacher's conditional output for every ``w``. ``config``'s
        UNet3D fields must equal the teacher's (or give ``fields_``: the new fields only)."""
        if not isinstance(image_model, UNet3D) or isinstance(image_model, GuidedUNet3D):
            raise TypeError(f"GuidedUNet3D.from_image_model expects a trained UNet3D (the teacher); got {type(image_model).__name__}")
        config = extended_config(image_model, GuidedUNet3DConfig, config, fields_, owner="GuidedUNet3D.from_image_model", role="teacher")
        model = cls(config).to(next(image_model.parameters()).device)
        missing, unexpected = model.load_state_dict(image_model.state_dict(), strict=False)
        if unexpected or any(not name.startswith("guidance_embed.") for name in missing):
            raise ValueError(f"GuidedUNet3D.from_image_model: weights do not match (missing {missing}, unexpected {unexpected})")
        return model


@torch.no_grad()
def distillation_target(teacher: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, guidance) -> torch.Tensor:
    """The teacher's classifier-free-guided output at ``(x_t, t)`` with scale ``guidance``
    (a number or one per clip ``(B,)``): ``uncond + w (cond - uncond)`` from one batched call
    of ``2B`` (the labels, then the teacher's null label). Equals
    :func:`~vdmcourse.diffusion.guidance.guided_output` for a number ``w`` (tested)."""
    cond = check_labels(cond, x_t.shape[0])
    null = torch.full_like(cond, null_label_of(teacher))
    out = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), cond=torch.cat([cond, null]))  # (2B, ...)
    cond_out, uncond_out = out.chunk(2)
    w = torch.as_tensor(guidance, dtype=out.dtype, device=out.device)
    w = w.reshape(-1, *([1] * (out.ndim - 1))) if w.ndim == 1 else w  # (B, 1, 1, 1, 1)
    return uncond_out + w * (cond_out - uncond_out)


@functools.lru_cache(maxsize=2)
def _cached_teacher(name: str, device: str) -> nn.Module:
    from vdmcourse import pretrained  # the package's loader, imported late (it is imported by the presets too)

    model = pretrained.build_model(name) if name.endswith(".safetensors") else pretrained.load_pretrained(name, device="cpu")
    if isinstance(model, GuidedUNet3D) or not isinstance(model, UNet3D):
        raise ValueError(f"a guidance-distillation teacher must be a plain UNet3D checkpoint; {name} holds a {type(model).__name__}")
    return model.to(device).eval().requires_grad_(False)


def frozen_teacher(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The teacher ``name`` (a shipped checkpoint's name or a ``.safetensors`` path), frozen, in
    eval mode on ``device``; loaded once per process."""
    return _cached_teacher(name, str(torch.device(device)))


def guidance_distillation_loss(
    model: nn.Module,
    batch: dict,
    generator: torch.Generator | None,
    *,
    teacher: str | nn.Module,
    objective: str = "flow",
    schedule=None,
    p_uncond: float = 0.1,
    t_distribution: str = "uniform",
    t_mean: float = 0.0,
) -> torch.Tensor:
    """One batch of guidance distillation (Meng et al. 2023, stage one).

    ``batch``: ``{"video": (B, T, C, H, W) in [0, 1], "labels": (B,) or (B, K)}`` (a preset's
    Moving MNIST batch). Each clip is noised to a time drawn from ``t_distribution``; its
    labels become the null label with probability ``p_uncond`` (the teacher's guided output
    there is its unconditional one, so the student keeps that too); ``w`` is drawn uniformly
    from the student's ``config.guidance_range``. Returns the mean squared error between the
    student's output and :func:`distillation_target` (the teacher's guided output, no gradient).
    ``generator`` fixes times, noise, label dropout and scales (drawn in that order).
    """
    if isinstance(teacher, str):
        teacher = frozen_teacher(teacher, next(model.parameters()).device)
    student = getattr(model, "module", model)  # under DistributedDataParallel
    schedule = resolve_schedule(schedule, objective)
    x0 = to_model_range(batch["video"])  # (B, T, C, H, W) in [-1, 1]
    size, device = x0.shape[0], x0.device
    draw_device = generator.device if generator is not None else device
    t = sample_timesteps(size, distribution=t_distribution, mean=t_mean, generator=generator, device=device).to(x0.dtype)  # (B,)
    eps = frame_noise(x0.shape, mix=noise_mix_of(student), generator=generator, device=draw_device, dtype=x0.dtype).to(device)
    cond = check_labels(batch["labels"], size).to(device)
    if p_uncond > 0:
        cond = drop_labels(cond, p_uncond, null_label=null_label_of(student), generator=generator)
    low, high = student.config.guidance_range
    w = low + (high - low) * torch.rand(size, generator=generator, device=draw_device).to(device)  # (B,)
    x_t = schedule.q_sample(x0, t, eps)
    target = distillation_target(teacher, x_t, t, cond, w).float()
    output = model(x_t, t, cond=cond, guidance=w)
    if output.shape != x0.shape:
        raise ValueError(f"the student returned shape {tuple(output.shape)}; expected {tuple(x0.shape)}")
    return F.mse_loss(output.float(), target)
