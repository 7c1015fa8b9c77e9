"""Batches and losses for the conditioned video models (lesson 10): image-to-video and sync.

Both train :class:`~vdmcourse.nn.conditioning.ConditionedUNet3D` with the flow objective
(:func:`vdmcourse.diffusion.training_loss`), its conditions measured on the clips:

* **image-to-video** (:func:`image_to_video_batch`, :func:`image_to_video_loss`): the
  first frame of each clip is the image; fps and motion bucket come from rendering at
  frame strides and measuring the ground-truth speed
  (:func:`vdmcourse.data.conditions.clips_at_strides`); ``noise_aug_strength`` is drawn
  per clip and the image is noised by it *before* encoding; with probability
  ``p_uncond`` the image and its embedding become zeros (the unconditional branch).
* **sync** (:func:`signal_batch`, :func:`signal_loss`): the digit's brightness (or, with
  ``drive="scale"``, its size) follows a random per-frame signal that the model is given.
* **style** (:func:`style_batch`, :func:`style_labels`): clips drawn thin, regular or thick and
  in normal or inverted ink (:func:`vdmcourse.data.conditions.styled_clips`), their style
  given as extra labels beside the digit, and their brightness following a signal as in sync:
  one model for video-to-video's restyles and for sync (trained by :func:`signal_loss`).

The image embedding is the metrics' evaluator's feature vector of the image shown as a
still clip (:func:`image_embedding`): the course's stand-in for CLIP.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from vdmcourse.course import to_model_range
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.data.conditions import INKS, STROKES, apply_brightness, apply_scale, clips_at_strides, random_signals, styled_clips
from vdmcourse.diffusion import null_label_of, training_loss
from vdmcourse.metrics.features import EVALUATOR_NAME, Evaluator, load_evaluator
from vdmcourse.nn.conditioning import added_time_ids, augment_frame, concat_condition

__all__ = [
    "MAX_NOISE_AUG",
    "STYLE_CLASSES",
    "image_embedding",
    "image_to_video_batch",
    "image_to_video_loss",
    "signal_batch",
    "signal_loss",
    "style_batch",
    "style_labels",
]

MAX_NOISE_AUG = 0.5  # training draws noise_aug_strength = MAX_NOISE_AUG * u^2, u ~ U[0, 1): mostly small


@functools.lru_cache(maxsize=2)
def _evaluator(name: str) -> Evaluator:
    return load_evaluator(name, device="cpu").requires_grad_(False)


@torch.no_grad()
def image_embedding(image: torch.Tensor, evaluator: Evaluator | str = EVALUATOR_NAME) -> torch.Tensor:
    """The evaluator's features of ``image`` ``(B, 1, H, W)`` in ``[0, 1]`` shown as a still clip
    (repeated over the evaluator's frames): ``(B, feature_dim)``, on ``image``'s device."""
    model = _evaluator(evaluator) if isinstance(evaluator, str) else evaluator
    frames = model.config.frames
    still = image[:, None].expand(-1, frames, -1, -1, -1)  # (B, T_eval, 1, H, W)
    device = next(model.parameters()).device
    return model.eval()(still.to(device).clamp(0, 1)).to(image.device)


def image_to_video_batch(
    generator: torch.Generator, *, batch_size: int, data: MovingMNISTConfig, max_noise_aug: float = MAX_NOISE_AUG, group: int = 1
) -> dict:
    """``{"video" (B, T, 1, H, W) in [0, 1], "fps" (B,), "motion_bucket" (B,), "noise_aug_strength" (B,),
    "image_embedding" (B, F)}``: clips at random frame strides with their measured knobs. ``group > 1``:
    runs of ``group`` clips share their first frame and direction and differ in speed and stride
    (:func:`~vdmcourse.data.conditions.clips_at_strides`)."""
    clips = clips_at_strides(batch_size, data, generator=generator, group=group)
    noise_aug = max_noise_aug * torch.rand(batch_size, generator=generator) ** 2
    return {
        "video": clips.video,
        "fps": clips.fps,
        "motion_bucket": clips.motion_bucket.float(),
        "noise_aug_strength": noise_aug,
        "image_embedding": image_embedding(clips.video[:, 0]),  # of the clean image, as SVD's CLIP embedding
    }


def image_to_video_loss(
    model: nn.Module,
    batch: dict,
    generator: torch.Generator,
    *,
    p_uncond: float = 0.1,
    t_distribution: str = "logit_normal",
    t_mean: float = 0.0,
    vae: str | None = None,
) -> torch.Tensor:
    """The flow loss of ``model`` (a ConditionedUNet3D) generating ``batch["video"]`` from its
    first frame: the frame noised by ``noise_aug_strength`` and concatenated on channels, the
    image embedding and ``[fps - 1, motion_bucket_id, noise_aug_strength]`` added to the time
    embedding; both image conditions zeroed together with probability ``p_uncond``. ``t_mean > 0``
    trains more at high noise, where the conditions decide what the clip becomes.

    ``vae`` (a shipped VAE's name, e.g. ``"vae-cpu"``): latent image-to-video, SVD's own setting.
    The model generates the frozen VAE's scaled latents of the clip (a posterior sample, as latent
    diffusion trains), and the conditioning frame is the latent mean of the *noised* image, as
    :class:`~vdmcourse.pipelines.ImageToVideoPipeline` encodes it."""
    x0 = to_model_range(batch["video"])  # (B, T, 1, H, W)
    batch_size = x0.shape[0]
    frame = augment_frame(x0[:, 0], batch["noise_aug_strength"], generator)  # noised before encoding
    if vae is not None:
        from vdmcourse.presets import load_latent_vae  # presets imports this module

        encoder = load_latent_vae(vae, device=x0.device)
        with torch.no_grad():  # the VAE is frozen; fp32 latents, as the presets' latent loss
            x0 = encoder.encode_latents(x0.float(), generator).float()  # (B, T, C_z, h, w)
            frame = encoder.encode_latents(frame[:, None].float(), sample=False)[:, 0].float()  # (B, C_z, h, w)
    draw_device = generator.device if generator is not None else x0.device
    keep = (torch.rand(batch_size, generator=generator, device=draw_device) >= p_uncond).to(x0)  # (B,)
    frame = frame * keep[:, None, None, None]  # dropped: zeros, the unconditional branch
    embedding = batch["image_embedding"] * keep[:, None]
    ids = added_time_ids(batch["fps"], batch["motion_bucket"], batch["noise_aug_strength"]).to(x0.device)

    def conditioned(x, t, cond=None):
        return model(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=embedding)

    return training_loss(conditioned, x0, objective="flow", generator=generator, t_distribution=t_distribution, t_mean=t_mean)


SIGNAL_DRIVES = ("brightness", "scale")


def signal_batch(generator: torch.Generator, *, batch_size: int, data: MovingMNISTConfig, drive: str = "brightness") -> dict:
    """``{"video", "labels", "signal" (B, T) in [0, 1]}``: clips whose ink brightness
    (``drive="brightness"``) or digit size (``"scale"``, one-digit clips) follows an
    independent random value per frame."""
    if drive not in SIGNAL_DRIVES:
        raise ValueError(f"signal_batch: drive must be one of {SIGNAL_DRIVES}; got {drive!r}")
    if drive == "scale" and data.digits != 1:
        raise ValueError(f"signal_batch: drive='scale' needs one-digit clips; got digits={data.digits}")
    clips = generate_clips(batch_size, data, generator=generator)
    signal = random_signals(batch_size, data.frames, generator=generator)
    if drive == "scale":
        video = apply_scale(clips.video, signal, clips.positions[:, :, 0] + data.digit_size / 2)
    else:
        video = apply_brightness(clips.video, signal)
    return {"video": video, "labels": clips.labels, "signal": signal}


def signal_loss(
    model: nn.Module, batch: dict, generator: torch.Generator, *, p_uncond: float = 0.1, t_distribution: str = "logit_normal"
) -> torch.Tensor:
    """The flow loss of ``model`` (a ConditionedUNet3D with ``signal=True``) on ``batch``,
    conditioned on the digit labels (dropped with ``p_uncond`` for guidance) and the signal."""

    def conditioned(x, t, cond=None):
        return model(x, t, cond, signal=batch["signal"])

    return training_loss(
        conditioned, to_model_range(batch["video"]), objective="flow", cond=batch["labels"],
        p_uncond=p_uncond, generator=generator, t_distribution=t_distribution,
        null_label=null_label_of(model),  # the closure has no label table to read it from
    )


STYLE_CLASSES = len(STROKES) + len(INKS)  # label rows after the 10 digits: the strokes', then the inks'


def style_labels(digits: torch.Tensor, stroke: torch.Tensor, ink: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """A clip's labels for a style model: ``(B, 3)`` = [digit, ``num_classes`` + stroke,
    ``num_classes + len(STROKES)`` + ink], with ``digits``, ``stroke`` (index into
    :data:`~vdmcourse.data.conditions.STROKES`) and ``ink`` (into ``INKS``) each ``(B,)`` ints."""
    return torch.stack([digits.long(), num_classes + stroke.long(), num_classes + len(STROKES) + ink.long()], dim=1)


def style_batch(generator: torch.Generator, *, batch_size: int, data: MovingMNISTConfig) -> dict:
    """``{"video", "labels" (B, 3) (:func:`style_labels`), "signal" (B, T)}``: one-digit clips in a
    random style (:func:`~vdmcourse.data.conditions.styled_clips`) whose ink brightness follows
    an independent random value per frame, applied before the ink is inverted."""
    if data.digits != 1:
        raise ValueError(f"style_batch: needs one-digit clips (one style label set per clip); got digits={data.digits}")
    signal = random_signals(batch_size, data.frames, generator=generator)
    clips = styled_clips(batch_size, data, generator=generator, signal=signal)
    return {"video": clips.video, "labels": style_labels(clips.labels[:, 0], clips.stroke, clips.ink), "signal": signal}
