"""Self-checks for lesson 10, image-to-video and video-to-video.

* :func:`check_concat_condition` -- ``concat_condition(x, frame)``: the conditioning frame
  repeated over time and concatenated to the noisy clip on channels.
* :func:`check_condition_latent` -- ``condition_latent(image, strength, eps, encode)``:
  SVD's noise augmentation, applied to the image before it is encoded.
* :func:`check_micro_embedding` -- ``micro_embedding(time_emb, ids, project, frequency_dim)``:
  ``[fps - 1, motion_bucket_id, noise_aug_strength]`` embedded and added to the time embedding.
* :func:`check_ramp_guidance` -- ``ramp_guidance(cond_out, uncond_out, min_scale, max_scale)``:
  classifier-free guidance whose scale ramps over the frames.
* :func:`check_sdedit_start` -- ``sdedit_start(x0, eps, strength, steps)``: where SDEdit
  starts, and the time grid that remains.

Each names the real mistake it looks for (the list below).
"""

from __future__ import annotations

import torch

from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check
from vdmcourse.nn.embeddings import sinusoidal_embedding

__all__ = [
    "FRAME_NOT_REPEATED",
    "NOISE_AFTER_ENCODING",
    "MICRO_NOT_ADDED",
    "RAMP_REVERSED",
    "SDEDIT_WRONG_END",
    "MICRO_SCALES",
    "reference_concat_condition",
    "reference_condition_latent",
    "reference_micro_embedding",
    "reference_ramp_guidance",
    "reference_sdedit_start",
    "check_concat_condition",
    "check_condition_latent",
    "check_micro_embedding",
    "check_ramp_guidance",
    "check_sdedit_start",
]

FRAME_NOT_REPEATED = "the conditioning frame not repeated over time"
NOISE_AFTER_ENCODING = "noise augmentation applied after encoding instead of before"
MICRO_NOT_ADDED = "micro-conditioning concatenated to the input instead of added to the timestep embedding"
RAMP_REVERSED = "the guidance ramp reversed over frames"
SDEDIT_WRONG_END = "the SDEdit start time computed from the wrong end of the schedule"

MICRO_SCALES = (1.0, 1.0, 1000.0)  # fps - 1 and the bucket as they are; noise_aug_strength like a time


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- channel concatenation -------------------------------------------------------------------


def reference_concat_condition(x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, T, C, H, W)``, ``frame`` ``(B, C_c, H, W)`` -> ``(B, T, C + C_c, H, W)``."""
    frames = frame[:, None].expand(-1, x.shape[1], -1, -1, -1)  # (B, T, C_c, H, W): the same frame at every t
    return torch.cat([x, frames], dim=2)


@self_check(
    "conditioning frame on the channels",
    reference="vdmcourse.nn.conditioning.concat_condition",
    more='The likely slips are torch.cat on dim=1 (frames) instead of dim=2 (channels), the frame put beside '
         'frame 0 only, or the frame before x. Print shapes: frame[:, None] is (B, 1, C_c, H, W); .expand(-1, '
         'x.shape[1], -1, -1, -1) makes it (B, T, C_c, H, W); x goes first in the cat.',
)
def check_concat_condition(concat_condition):
    """``concat_condition(x, frame)`` -> ``(B, T, C + C_c, H, W)``."""
    x = torch.randn(2, 5, 1, 4, 4, generator=_generator(1))
    frame = torch.randn(2, 3, 4, 4, generator=_generator(2))
    out = concat_condition(x, frame)
    if isinstance(out, torch.Tensor) and out.ndim == 5 and out.shape[1] != 5:
        raise Wrong(f"The result has shape {tuple(out.shape)}: {out.shape[1]} frames instead of 5 -- the frame went onto the time axis.",
                    hint="Concatenate on the channel axis (dim=2), after repeating the frame T times.")
    expect_shape(out, (2, 5, 4, 4, 4), "concat_condition(x, frame) with x (2, 5, 1, 4, 4), frame (2, 3, 4, 4)",
                 hint="Channels add up: C + C_c = 1 + 3; the frame axis keeps T = 5.")
    if not torch.allclose(out[:, :, :1], x):
        raise Wrong("The first C channels are not the noisy clip x unchanged.", hint="Put x first: torch.cat([x, frames], dim=2).")
    present = [t for t in range(5) if torch.allclose(out[:, t, 1:], frame)]
    if present != list(range(5)):
        raise Wrong(
            f"The conditioning frame is beside the noisy frames {present} only, not beside every frame.",
            mistake=FRAME_NOT_REPEATED,
            hint="Repeat it over time first: frame[:, None].expand(-1, T, -1, -1, -1) (or einops.repeat).",
        )
    return "Every noisy frame sees the conditioning frame on extra channels."


# --- noise augmentation ----------------------------------------------------------------------


def reference_condition_latent(image: torch.Tensor, strength: float, eps: torch.Tensor, encode) -> torch.Tensor:
    """SVD: ``encode(image + strength * eps)`` -- noise first, then the encoder."""
    return encode(image + strength * eps)


def _toy_encoder(image: torch.Tensor) -> torch.Tensor:
    """A nonlinear stand-in for a VAE encoder (shape kept, so noise fits before and after it)."""
    return torch.tanh(2 * image + 0.5)


@self_check(
    "noise augmentation",
    reference="vdmcourse.nn.conditioning.augment_frame (then the VAE's encoder)",
    more='The likely slip is the order: encode(image) + strength * eps noises the latent, after the encoder. '
         'The noise goes on the pixels (noisy = image + strength * eps) and the encoder is called once, on the '
         'noisy image.',
)
def check_condition_latent(condition_latent):
    """``condition_latent(image, strength, eps, encode)`` -> the encoded conditioning frame."""
    image = torch.rand(2, 1, 8, 8, generator=_generator(3)) * 2 - 1
    eps = torch.randn(image.shape, generator=_generator(4))
    strength = 0.3
    out = condition_latent(image, strength, eps, _toy_encoder)
    expect_shape(out, (2, 1, 8, 8), "condition_latent(image (2, 1, 8, 8), ...)", hint="Return the encoder's output.")
    if torch.allclose(out, _toy_encoder(image) + strength * eps, atol=1e-5):
        raise Wrong("The noise was added to the encoded latent, after the encoder.", mistake=NOISE_AFTER_ENCODING,
                    hint="SVD noises the image itself and encodes the noisy image: encode(image + strength * eps).")
    if torch.allclose(out, _toy_encoder(image), atol=1e-5):
        raise Wrong("The result does not depend on the noise: no augmentation was applied.", hint="Add strength * eps to the image.")
    expect_close(out, reference_condition_latent(image, strength, eps, _toy_encoder), "condition_latent(...)",
                 hint="encode(image + strength * eps).")
    return "The image is noised, then encoded."


# --- micro-conditioning ----------------------------------------------------------------------


def reference_micro_embedding(time_emb: torch.Tensor, ids: torch.Tensor, project, frequency_dim: int) -> torch.Tensor:
    """``time_emb`` ``(B, E)`` + ``project(concat of the three scalars' sinusoids)``: ``(B, E)``.
    ``ids`` ``(B, 3)`` = ``[fps - 1, motion_bucket_id, noise_aug_strength]``; ``project``
    maps ``3 * frequency_dim`` -> ``E``."""
    parts = [sinusoidal_embedding(ids[:, i] * scale, frequency_dim) for i, scale in enumerate(MICRO_SCALES)]  # 3 x (B, F)
    return time_emb + project(torch.cat(parts, dim=1))


@self_check(
    "micro-conditioning",
    reference="vdmcourse.nn.conditioning.MicroConditioning",
    more='The likely slips are torch.cat with time_emb (more features than E), project(...) returned without '
         'time_emb, or the raw noise_aug_strength embedded (column 2 needs MICRO_SCALES[2] = 1000). For i in '
         'range(3): sinusoidal_embedding(ids[:, i] * MICRO_SCALES[i], frequency_dim) is (B, F); cat the three '
         'on dim=1 to (B, 3F), project, and add to time_emb.',
)
def check_micro_embedding(micro_embedding):
    """``micro_embedding(time_emb, ids, project, frequency_dim)`` -> ``(B, E)``."""
    frequency_dim, dim = 8, 12
    torch.manual_seed(5)
    project = torch.nn.Linear(3 * frequency_dim, dim)
    time_emb = torch.randn(3, dim, generator=_generator(6))
    ids = torch.tensor([[5.0, 127.0, 0.02], [11.0, 30.0, 0.1], [3.0, 250.0, 0.0]])
    with torch.no_grad():
        out = micro_embedding(time_emb, ids, project, frequency_dim)
        expected = reference_micro_embedding(time_emb, ids, project, frequency_dim)
    if isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[1] > dim:
        raise Wrong(
            f"The result has {out.shape[1]} features, more than the time embedding's {dim}: the micro-conditioning was "
            "concatenated, so it cannot reach the model the way the timestep does.",
            mistake=MICRO_NOT_ADDED,
            hint="Add the projected micro-conditioning to the time embedding: time_emb + project(...).",
        )
    expect_shape(out, (3, dim), "micro_embedding(...) for 3 clips", hint="One vector of the time embedding's width per clip.")
    if torch.allclose(out, time_emb):
        raise Wrong("The result is the time embedding alone: fps, motion bucket and noise augmentation are not in it.",
                    hint="Embed each of the three columns of ids, concatenate, project, and add.")
    if torch.allclose(out, expected - time_emb, atol=1e-5):
        raise Wrong("The result is the micro-conditioning alone: the time embedding was replaced, not added to.",
                    mistake=MICRO_NOT_ADDED, hint="time_emb + project(...): both, summed.")
    expect_close(out, expected, "micro_embedding(...)",
                 hint="Each column gets its own sinusoidal_embedding(column * scale, frequency_dim) with the scales "
                      f"{MICRO_SCALES}; concatenate in the order fps - 1, bucket, noise.")
    return "fps, motion bucket and noise level are embedded and added to the timestep embedding."


# --- the guidance ramp -----------------------------------------------------------------------


def reference_ramp_guidance(cond_out: torch.Tensor, uncond_out: torch.Tensor, min_scale: float, max_scale: float) -> torch.Tensor:
    """Guidance with scale ``min_scale`` on frame 0 rising linearly to ``max_scale`` on the last:
    ``uncond + s_t (cond - uncond)``; ``(B, T, C, H, W)`` in and out."""
    scales = torch.linspace(min_scale, max_scale, cond_out.shape[1]).reshape(1, -1, 1, 1, 1)  # (1, T, 1, 1, 1)
    return uncond_out + scales * (cond_out - uncond_out)


@self_check(
    "per-frame guidance ramp",
    reference="vdmcourse.pipelines.guidance_ramp and frame_guidance",
    more='The likely slips are linspace(max, min, T) (reversed), one scale for every frame, or cond and uncond '
         'swapped. scales = torch.linspace(min_scale, max_scale, cond_out.shape[1]) is (T,); .reshape(1, -1, '
         '1, 1, 1) lines it up with the T axis of (B, T, C, H, W).',
)
def check_ramp_guidance(ramp_guidance):
    """``ramp_guidance(cond_out, uncond_out, min_scale, max_scale)`` -> ``(B, T, C, H, W)``."""
    cond_out, uncond_out = torch.ones(2, 5, 1, 2, 2), torch.zeros(2, 5, 1, 2, 2)
    out = ramp_guidance(cond_out, uncond_out, 1.0, 3.0)
    expect_shape(out, (2, 5, 1, 2, 2), "ramp_guidance(...) on 5 frames")
    per_frame = out[0, :, 0, 0, 0]
    if torch.allclose(per_frame, torch.linspace(3.0, 1.0, 5)):
        raise Wrong(f"The scales per frame are {per_frame.tolist()}: largest on frame 0, next to the given image.",
                    mistake=RAMP_REVERSED,
                    hint="SVD starts at min_guidance_scale on the first frame and rises to max on the last: linspace(min, max, T).")
    if torch.allclose(per_frame, per_frame[:1].expand(5)):
        raise Wrong(f"Every frame gets the same scale {per_frame[0].item():g}: there is no ramp.",
                    hint="One scale per frame, torch.linspace(min_scale, max_scale, T), broadcast over (B, T, C, H, W).")
    if torch.allclose(per_frame, 1 - torch.linspace(1.0, 3.0, 5)):
        raise Wrong("The guidance pushes towards the unconditional prediction: cond and uncond are swapped.",
                    hint="uncond + s * (cond - uncond).")
    cond_out = torch.randn(2, 5, 1, 2, 2, generator=_generator(8))
    uncond_out = torch.randn(2, 5, 1, 2, 2, generator=_generator(9))
    expect_close(ramp_guidance(cond_out, uncond_out, 1.0, 3.0), reference_ramp_guidance(cond_out, uncond_out, 1.0, 3.0),
                 "ramp_guidance(...)", hint="uncond + s_t * (cond - uncond) with s_t = linspace(min, max, T)[t].")
    return "Guidance rises from the first frame to the last."


# --- SDEdit ----------------------------------------------------------------------------------


def reference_sdedit_start(x0: torch.Tensor, eps: torch.Tensor, strength: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SDEdit on the flow path (``t = 1`` is noise): the input noised to ``t0 = strength`` and the
    remaining time grid ``t0, ..., 0`` of ``max(1, round(strength * steps))`` steps."""
    t0, remaining = strength, max(1, round(strength * steps))
    return (1 - t0) * x0 + t0 * eps, torch.linspace(t0, 0, remaining + 1)


@self_check(
    "SDEdit start",
    reference="vdmcourse.pipelines.VideoToVideoPipeline.start",
    more='The likely slips are t0 = 1 - strength (counted from the noisy end) and the whole grid instead of '
         'what remains. Here t = 1 is noise, so t0 = strength and x_start = (1 - t0) * x0 + t0 * eps; n = '
         'max(1, round(strength * steps)) steps remain, and torch.linspace(t0, 0, n + 1) lists their n + 1 '
         'times.',
)
def check_sdedit_start(sdedit_start):
    """``sdedit_start(x0, eps, strength, steps)`` -> ``(x_start, times)``."""
    x0 = torch.rand(1, 4, 1, 3, 3, generator=_generator(10)) * 2 - 1
    eps = torch.randn(x0.shape, generator=_generator(11))
    out = sdedit_start(x0, eps, 0.25, 20)
    if not isinstance(out, tuple) or len(out) != 2:
        raise Wrong(f"sdedit_start should return a pair (x_start, times); got {type(out).__name__}.")
    x_start, times = out
    expect_shape(x_start, tuple(x0.shape), "x_start")
    times = torch.as_tensor(times, dtype=torch.float32).flatten()
    expected_x, expected_times = reference_sdedit_start(x0, eps, 0.25, 20)
    if torch.allclose(x_start, 0.25 * x0 + 0.75 * eps, atol=1e-5) or (len(times) and abs(times[0].item() - 0.75) < 1e-4):
        raise Wrong("With strength 0.25 the clip starts 75 % noise: the start time was counted from the noisy end.",
                    mistake=SDEDIT_WRONG_END,
                    hint="t = 1 is pure noise here, so strength s starts at t0 = s (little strength: little noise).")
    expect_close(x_start, expected_x, "x_start", hint="On the flow path x_t0 = (1 - t0) x0 + t0 eps with t0 = strength.")
    if len(times) != len(expected_times) or not torch.allclose(times, expected_times, atol=1e-5):
        raise Wrong(f"The remaining grid is {[round(v, 3) for v in times.tolist()]}; expected {[round(v, 3) for v in expected_times.tolist()]}.",
                    hint="round(strength * steps) steps (at least 1) from t0 down to 0: torch.linspace(t0, 0, n + 1).")
    return "SDEdit starts at t0 = strength and runs the rest of the schedule."
