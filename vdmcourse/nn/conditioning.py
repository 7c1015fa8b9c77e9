"""A video U-Net with Stable Video Diffusion's conditioning, and the lip-sync analogue.

:class:`ConditionedUNet3D` is :class:`~vdmcourse.nn.unet3d.UNet3D` with three ways in
for a condition (Blattmann et al. 2023, "Stable Video Diffusion"; diffusers'
``UNetSpatioTemporalConditionModel``):

* **Channel concatenation.** The conditioning frame ``(B, C_c, H, W)`` -- SVD's image
  latent, here the pixels -- is noise-augmented *before* it is encoded
  (:func:`augment_frame`), repeated over the T frames and concatenated to the noisy clip
  on the channel axis (:func:`concat_condition`): the input conv sees ``C + C_c`` channels.
* **Added conditioning vectors.** :class:`MicroConditioning` embeds SVD's "added time ids"
  ``[fps - 1, motion_bucket_id, noise_aug_strength]`` -- each scalar its own sinusoid,
  concatenated, then an MLP -- and the result is **added to the timestep embedding**, as is
  a projection of the image embedding (the course's evaluator features stand in for
  CLIP's; SVD cross-attends to it, the course adds it: one token, the same information).
* **A per-frame signal** (:class:`SignalEmbedding`, Pika's lip-sync in miniature): one
  scalar per frame, embedded and added to *that frame's* time embedding.
* **Style labels** (Pika's restyles): ``style_classes`` more rows in the label table, after
  the digits' ``num_classes``; a clip's labels ``(B, K)`` hold its digit and its style rows,
  summed as :class:`~vdmcourse.nn.embeddings.LabelEmbedding` sums K labels.

The unconditional branch of classifier-free guidance is all zeros: a zero frame and a
zero image embedding (the micro-conditioning stays, as in SVD).

Every new layer starts at zero (:meth:`ConditionedUNet3D.from_image_model`), so a
conditioned model made from a trained video model equals it at initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from einops import rearrange, repeat
from torch import nn

from vdmcourse.nn.embeddings import LabelEmbedding, sinusoidal_embedding
from vdmcourse.nn.unet2d import UNet2D
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig, extended_config

__all__ = [
    "ConditionedUNet3DConfig",
    "ConditionedUNet3D",
    "Gain",
    "MicroConditioning",
    "SignalEmbedding",
    "augment_frame",
    "concat_condition",
    "added_time_ids",
]


def augment_frame(frame: torch.Tensor, strength, generator: torch.Generator | None = None) -> torch.Tensor:
    """SVD's noise augmentation: ``frame + strength * eps``, applied to the image *before*
    it is encoded (in pixel space there is no encoder: it is the frame itself).

    ``frame`` ``(B, C, H, W)`` in ``[-1, 1]``; ``strength`` a number or ``(B,)``. Returns
    ``frame``'s shape. The noise is drawn from ``generator`` (on its device)."""
    if not isinstance(frame, torch.Tensor) or frame.ndim != 4:
        got = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
        raise ValueError(f"augment_frame: frame must have shape (B, C, H, W); got {got}")
    strength = torch.as_tensor(strength, dtype=frame.dtype, device=frame.device).reshape(-1, 1, 1, 1)  # (B or 1, 1, 1, 1)
    draw_device = generator.device if generator is not None else frame.device
    eps = torch.randn(frame.shape, generator=generator, device=draw_device, dtype=frame.dtype).to(frame.device)
    return frame + strength * eps


def concat_condition(x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """The model input: the conditioning frame repeated over time, concatenated on channels.

    ``x`` ``(B, T, C, H, W)`` (the noisy clip), ``frame`` ``(B, C_c, H, W)`` -> ``(B, T, C + C_c, H, W)``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        raise ValueError(f"concat_condition: x must have shape (B, T, C, H, W); got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(frame, torch.Tensor) or frame.ndim != 4 or frame.shape[0] != x.shape[0] or frame.shape[-2:] != x.shape[-2:]:
        got = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
        raise ValueError(f"concat_condition: frame must have shape (B, C_c, H, W) = ({x.shape[0]}, C_c, {x.shape[3]}, {x.shape[4]}); got {got}")
    frames = repeat(frame, "b c h w -> b t c h w", t=x.shape[1])  # the same frame beside every noisy frame
    return torch.cat([x, frames.to(x.dtype)], dim=2)  # (B, T, C + C_c, H, W)


def added_time_ids(fps, motion_bucket_id, noise_aug_strength, batch: int | None = None) -> torch.Tensor:
    """SVD's ``added_time_ids``: ``[fps - 1, motion_bucket_id, noise_aug_strength]`` per clip.

    Each argument is a number or a ``(B,)`` tensor; returns float32 ``(B, 3)`` (``B`` from
    the tensors, or ``batch``, or 1)."""
    columns = [torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in (fps, motion_bucket_id, noise_aug_strength)]
    n = max([len(c) for c in columns] + [batch or 1])
    columns = [c.to(columns[0].device).expand(n) if len(c) == 1 else c for c in columns]
    if any(len(c) != n for c in columns):
        raise ValueError(f"added_time_ids: fps, motion_bucket_id and noise_aug_strength must be numbers or (B,) tensors of one B; got lengths {[len(c) for c in columns]}")
    return torch.stack([columns[0] - 1, columns[1], columns[2]], dim=1)  # (B, 3)


class Gain(nn.Module):
    """Multiply by a fixed number (no parameters). After a zero-initialised layer it sets how
    fast that layer's effect grows: AdamW moves a weight by about ``lr`` per step whatever the
    scale of its gradient, so ``gain`` times the layer's output grows ``gain`` times faster."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = float(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain

    def extra_repr(self) -> str:
        return f"gain={self.gain:g}"


def _mlp(in_dim: int, dim: int, gain: float = 1.0) -> nn.Sequential:
    mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
    nn.init.zeros_(mlp[2].weight)  # a new condition starts as "no change" to the embedding
    nn.init.zeros_(mlp[2].bias)
    if gain != 1.0:
        mlp.append(Gain(gain))  # no parameters: the state dict is the same as without it
    return mlp


class MicroConditioning(nn.Module):
    """``[fps - 1, motion_bucket_id, noise_aug_strength]`` -> a vector to add to the time embedding.

    Each of the three scalars gets its own sinusoidal embedding (``frequency_dim`` wide),
    the three are concatenated and projected by Linear -> SiLU -> Linear (SVD's
    ``add_time_proj`` + ``add_embedding``). ``noise_aug_strength`` (about 0-1) is multiplied
    by 1000 first, like diffusion time (:class:`~vdmcourse.nn.embeddings.TimestepEmbedding`):
    SVD embeds its raw value, whose sinusoid hardly changes between 0 and 0.1.

    Input ``(B, 3)`` float; output ``(B, dim)``. The last layer starts at zero; ``gain`` (a
    fixed :class:`Gain` at the end of ``mlp``) sets how fast it grows.
    """

    scales = (1.0, 1.0, 1000.0)

    def __init__(self, dim: int, frequency_dim: int = 64, gain: float = 1.0):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = _mlp(3 * frequency_dim, dim, gain)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.shape[1] != 3:
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"MicroConditioning expects added_time_ids of shape (B, 3) = [fps - 1, motion_bucket_id, noise_aug_strength]; got {got}")
        parts = [sinusoidal_embedding(ids[:, i] * scale, self.frequency_dim) for i, scale in enumerate(self.scales)]  # 3 x (B, F)
        return self.mlp(torch.cat(parts, dim=1).to(self.mlp[0].weight.dtype))  # (B, dim)


class SignalEmbedding(nn.Module):
    """A per-frame signal in ``[0, 1]`` -> one vector per frame, to add to that frame's time
    embedding (sinusoid of ``1000 * signal``, then Linear -> SiLU -> Linear, last layer zero).

    Input ``(B, T)``; output ``(B, T, dim)``."""

    def __init__(self, dim: int, frequency_dim: int = 64, gain: float = 1.0):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = _mlp(frequency_dim, dim, gain)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        frequencies = sinusoidal_embedding(signal.flatten().float() * 1000.0, self.frequency_dim)  # (B*T, F)
        out = self.mlp(frequencies.to(self.mlp[0].weight.dtype))  # (B*T, dim)
        return rearrange(out, "(b t) e -> b t e", b=signal.shape[0])


@dataclass(frozen=True)
class ConditionedUNet3DConfig(UNet3DConfig):
    """:class:`~vdmcourse.nn.unet3d.UNet3DConfig` plus the conditions the model takes.

    Attributes (besides UNet3DConfig's):
        condition_channels: channels of the conditioning frame concatenated to the input
            (0: none; 1 for a grey pixel frame, a VAE's latent channels in latent space).
        image_embed_dim: width of the image embedding projected and added to the time
            embedding (0: none; 64 for the evaluator's features).
        micro_conditioning: take SVD's ``added_time_ids`` (:class:`MicroConditioning`).
        signal: take a per-frame signal ``(B, T)`` in ``[0, 1]`` (:class:`SignalEmbedding`).
        style_classes: label rows after the ``num_classes`` digits (0: none): labels
            ``num_classes .. num_classes + style_classes - 1`` name styles; the null label
            (guidance) is then ``num_classes + style_classes``.
        condition_frequency_dim: sinusoid width of each embedded scalar.
        condition_gain: a fixed factor on every conditioning path (the concatenated frame,
            the image embedding, the micro-conditioning and signal vectors). The layers that
            read them start at zero and AdamW moves each weight by about ``lr`` per step, so
            the conditions' effect grows ``condition_gain`` times faster: a learning-rate
            multiplier for the new paths alone (1: none, SVD's form).
    """

    condition_channels: int = 0
    image_embed_dim: int = 0
    micro_conditioning: bool = False
    signal: bool = False
    condition_frequency_dim: int = 64
    condition_gain: float = 1.0
    style_classes: int = 0

    def __post_init__(self):
        super().__post_init__()
        if self.style_classes and not self.num_classes:
            raise ValueError(f"ConditionedUNet3DConfig: style_classes needs label conditioning (num_classes); got num_classes={self.num_classes!r}")
        for name in ("condition_channels", "image_embed_dim", "style_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ConditionedUNet3DConfig: {name} must be an int >= 0; got {value!r}")
        if not isinstance(self.condition_frequency_dim, int) or self.condition_frequency_dim < 2:
            raise ValueError(f"ConditionedUNet3DConfig: condition_frequency_dim must be an int >= 2; got {self.condition_frequency_dim!r}")
        gain = self.condition_gain
        if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not 0 < gain < float("inf"):
            raise ValueError(f"ConditionedUNet3DConfig: condition_gain must be a finite number > 0; got {gain!r}")

    def video_fields(self) -> dict:
        """The fields of the plain :class:`~vdmcourse.nn.unet3d.UNet3DConfig`, as a dict."""
        return {f.name: getattr(self, f.name) for f in fields(UNet3DConfig)}


class ConditionedUNet3D(UNet3D):
    """A :class:`~vdmcourse.nn.unet3d.UNet3D` that also takes SVD's conditions (see the module docstring).

    ``model(x, t, cond=None, *, added_time_ids=None, image_embedding=None, signal=None)``:

    * ``x``: ``(B, T, C + C_c, H, W)``: the noisy clip in ``[-1, 1]`` with the conditioning
      frame concatenated on channels (:func:`concat_condition`; ``C_c = config.condition_channels``).
    * ``t``, ``cond``: as for :class:`~vdmcourse.nn.unet3d.UNet3D` (time, digit labels).
    * ``added_time_ids``: ``(B, 3)`` (:func:`added_time_ids`), when ``config.micro_conditioning``.
    * ``image_embedding``: ``(B, config.image_embed_dim)`` (zeros: the unconditional branch).
    * ``signal``: ``(B, T)`` in ``[0, 1]``, when ``config.signal``.

    Returns ``(B, T, C, H, W)``: the prediction for the noisy channels only.
    """

    def __init__(self, config: ConditionedUNet3DConfig | None = None):
        config = config or ConditionedUNet3DConfig()
        if not isinstance(config, ConditionedUNet3DConfig):
            raise TypeError(f"ConditionedUNet3D expects a ConditionedUNet3DConfig; got {type(config).__name__}")
        super().__init__(config)
        embed_dim, width = config.embed_dim, self.input_conv.out_channels
        self.input_conv = nn.Conv2d(config.channels + config.condition_channels, width, 3, padding=1)
        self.image_embed = nn.Linear(config.image_embed_dim, embed_dim) if config.image_embed_dim else None
        gain = float(config.condition_gain)
        self.micro_embed = MicroConditioning(embed_dim, config.condition_frequency_dim, gain) if config.micro_conditioning else None
        self.signal_embed = SignalEmbedding(embed_dim, config.condition_frequency_dim, gain) if config.signal else None
        if config.style_classes:  # the digits' rows, then the styles', then the null label
            self.label_embed = LabelEmbedding(config.num_classes + config.style_classes, embed_dim)
        if self.image_embed is not None:
            nn.init.zeros_(self.image_embed.weight)
            nn.init.zeros_(self.image_embed.bias)

    def added_embedding(self, batch: int, frames: int, added_time_ids=None, image_embedding=None, signal=None) -> torch.Tensor:
        """What the conditions add to the time embedding: ``(B, E)``, or ``(B, T, E)`` with a signal."""
        weight = self.input_conv.weight
        added = torch.zeros(batch, self.config.embed_dim, device=weight.device, dtype=weight.dtype)
        if self.micro_embed is not None:
            added = added + self.micro_embed(added_time_ids)  # SVD: added to the timestep embedding
        if self.image_embed is not None:
            added = added + self.image_embed(image_embedding.to(weight.dtype) * self.config.condition_gain)
        if self.signal_embed is not None:
            added = added[:, None] + self.signal_embed(signal)  # (B, T, E): one vector per frame
        return added

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        *,
        added_time_ids: torch.Tensor | None = None,
        image_embedding: torch.Tensor | None = None,
        signal: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_inputs(x, t, cond)
        self._check_conditions(x, added_time_ids, image_embedding, signal)
        batch, frames = x.shape[:2]
        added = self.added_embedding(batch, frames, added_time_ids, image_embedding, signal)
        if self.config.condition_gain != 1 and self.config.condition_channels:
            c = self.config.channels  # the conditioning frame's channels, scaled before the (zero-init) input conv columns
            x = torch.cat([x[:, :, :c], x[:, :, c:] * self.config.condition_gain], dim=2)
        return super().forward(x, t, cond, added=added)  # (B, E) or, with a signal, (B, T, E)

    @classmethod
    def from_image_model(cls, image_model: nn.Module, config: ConditionedUNet3DConfig | None = None, **fields_) -> ConditionedUNet3D:
        """Start from a trained video model (a ``UNet3D``; a ``UNet2D`` is inflated first),
        the hook a preset's ``init_from`` calls.

        Every weight is copied; the input conv's conditioning channels and every new
        embedding start at zero, so at initialisation the model's output equals the source
        model's on the noisy channels, whatever the conditions (new style rows of the label
        table start at zero too; the source's null row moves to the new null label). ``config``'s UNet3D fields
        must equal the source's (or give ``fields_``: the new fields, the rest copied).
        """
        if isinstance(image_model, UNet2D):
            image_model = UNet3D.from_image_model(image_model, UNet3DConfig(**(config.video_fields() if config else {})))
        if not isinstance(image_model, UNet3D):
            raise TypeError(f"ConditionedUNet3D.from_image_model expects a UNet3D or UNet2D; got {type(image_model).__name__}")
        config = extended_config(image_model, ConditionedUNet3DConfig, config, fields_, owner="ConditionedUNet3D.from_image_model")
        model = cls(config).to(next(image_model.parameters()).device)
        target = model.state_dict()
        for name, weight in image_model.state_dict().items():
            if name == "input_conv.weight":
                widened = torch.zeros_like(target[name])  # (c0, C + C_c, 3, 3): the conditioning channels start at zero
                widened[:, : weight.shape[1]] = weight
                target[name] = widened
            elif name == "label_embed.table.weight" and weight.shape != target[name].shape:
                widened = torch.zeros_like(target[name])  # (num_classes + style_classes + 1, E)
                widened[: config.num_classes], widened[-1] = weight[: config.num_classes], weight[-1]
                target[name] = widened
            else:
                target[name] = weight.clone()
        model.load_state_dict(target)
        return model

    # -- guard rails --

    def _check_inputs(self, x, t, cond) -> None:
        c, cc = self.config.channels, self.config.condition_channels
        if isinstance(x, torch.Tensor) and x.ndim == 5:
            if x.shape[2] != c + cc:
                raise ValueError(
                    f"ConditionedUNet3D expects x of shape (B, T, C + C_c, H, W) with C + C_c = {c} + {cc}: the noisy "
                    f"clip and the conditioning frame concatenated on channels (concat_condition); got {tuple(x.shape)}"
                )
            x = x[:, :, :c]  # UNet3D's checks see the noisy channels
        super()._check_inputs(x, t, cond)

    def _check_conditions(self, x, added_time_ids, image_embedding, signal) -> None:
        batch, frames = x.shape[:2]
        config = self.config
        expected = {
            "added_time_ids": ((batch, 3), config.micro_conditioning, added_time_ids),
            "image_embedding": ((batch, config.image_embed_dim), bool(config.image_embed_dim), image_embedding),
            "signal": ((batch, frames), config.signal, signal),
        }
        for name, (shape, wanted, value) in expected.items():
            if not wanted:
                if value is not None:
                    raise ValueError(f"ConditionedUNet3D: this model takes no {name} (see its config); got one")
                continue
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape or not value.is_floating_point():
                got = (value.dtype, tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ValueError(f"ConditionedUNet3D expects {name} as a float tensor of shape {shape}; got {got}")
            if value.device != x.device:
                raise ValueError(f"ConditionedUNet3D expects {name} on x's device {x.device}; got {value.device}")
