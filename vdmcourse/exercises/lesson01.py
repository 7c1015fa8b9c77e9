"""Self-checks for lesson 01, From images to video.

* :func:`check_video_bytes` -- the memory a clip takes, from its shape and dtype;
* :func:`check_frame_difference` -- a flicker measure: mean absolute change between
  neighbouring frames, one number per clip;
* :func:`check_generate_frames` -- a "video" made by an image model, every frame
  drawn independently.

The lesson's reference answers are here too (:func:`video_bytes`,
:func:`frame_difference`, :func:`generate_frames`), so that a lesson goes on with
them when an exercise is not attempted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vdmcourse.diffusion import NULL_LABEL, sample
from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check

__all__ = [
    "WRONG_DTYPE_SIZE",
    "FORGOT_CHANNELS",
    "FIRST_FRAME_NOT_NEIGHBOUR",
    "SIGNED_DIFFERENCE",
    "WRONG_AXIS",
    "SAME_NOISE_EVERY_FRAME",
    "LABELS_NOT_PASSED",
    "UNIT_RANGE",
    "GUIDANCE_IGNORED",
    "video_bytes",
    "frame_difference",
    "generate_frames",
    "check_video_bytes",
    "check_frame_difference",
    "check_generate_frames",
]

WRONG_DTYPE_SIZE = "wrong number of bytes per value for the dtype"
FORGOT_CHANNELS = "forgot the colour channels"
FIRST_FRAME_NOT_NEIGHBOUR = "compared every frame with the first frame, not with its neighbour"
SIGNED_DIFFERENCE = "signed differences that cancel out"
WRONG_AXIS = "differences along an axis other than time"
SAME_NOISE_EVERY_FRAME = "the same noise for every frame"
LABELS_NOT_PASSED = "the labels never reach the model"
UNIT_RANGE = "frames returned in [0, 1] instead of the model range [-1, 1]"
GUIDANCE_IGNORED = "guidance_scale ignored"


def video_bytes(frames: int, channels: int, height: int, width: int, dtype: torch.dtype) -> int:
    """Bytes of one clip ``(T, C, H, W)`` stored as ``dtype``."""
    return frames * channels * height * width * torch.empty((), dtype=dtype).element_size()


def frame_difference(video: torch.Tensor) -> torch.Tensor:
    """Mean ``|x[t+1] - x[t]|`` over neighbouring frames and pixels: ``(B, T, C, H, W)`` -> ``(B,)``."""
    return (video[:, 1:] - video[:, :-1]).abs().mean(dim=(1, 2, 3, 4))


def generate_frames(
    model: nn.Module, labels: torch.Tensor, frames: int, generator: torch.Generator, steps: int = 30, guidance_scale: float = 2.0
) -> torch.Tensor:
    """``frames`` independent images per label from a flow image model, stacked as a clip.

    ``labels`` ``(B,)``; returns ``(B, T, C, H, W)`` in ``[-1, 1]``, frame size from
    ``model.config``. One sampler call suffices: the image model treats the T frames
    of its input as independent images, and the start noise differs in every frame.
    """
    config = model.config
    shape = (len(labels), frames, config.channels, config.image_size, config.image_size)
    return sample(model, shape, steps=steps, cond=labels, guidance_scale=guidance_scale, generator=generator, progress=False)


@self_check(
    "Memory of a clip", reference="vdmcourse.exercises.lesson01.video_bytes",
    more="The likely slips are a forgotten factor (often the channels) or 4 bytes for every dtype. "
         "Multiply frames * channels * height * width by torch.tensor([], dtype=dtype).element_size() "
         "(uint8 1, float16/bfloat16 2, float32 4) and return a plain int.",
)
def check_video_bytes(video_bytes_fn):
    """``video_bytes(frames, channels, height, width, dtype) -> int``."""
    cases = [
        (120, 3, 1080, 1920, torch.uint8),
        (10, 1, 32, 32, torch.float32),
        (20, 1, 64, 64, torch.bfloat16),
        (16, 3, 256, 256, torch.float16),
    ]
    for frames, channels, height, width, dtype in cases:
        got = video_bytes_fn(frames, channels, height, width, dtype)
        want = video_bytes(frames, channels, height, width, dtype)
        if got == want:
            continue
        values = frames * channels * height * width
        size = torch.empty((), dtype=dtype).element_size()
        where = f"For {frames} frames of {channels}x{height}x{width} in {dtype} you return {got:,}; the clip takes {want:,} bytes."
        if got == values or got == values * size * 8 or (values and got % values == 0):
            raise Wrong(
                where + f" Each {dtype} value takes {size} byte(s).",
                mistake=WRONG_DTYPE_SIZE,
                hint="torch.empty((), dtype=dtype).element_size() gives the bytes per value (1 for uint8, 2 for bfloat16, 4 for float32).",
            )
        if channels > 1 and got * channels == want:
            raise Wrong(where, mistake=FORGOT_CHANNELS, hint="A colour frame holds C = 3 values per pixel: multiply by the channels too.")
        raise Wrong(where, hint="Values = frames x channels x height x width; bytes = values x bytes per value.")
    film = video_bytes(120, 3, 1080, 1920, torch.uint8)
    return f"5 s of 1080p at 24 fps is {film / 1e6:.0f} MB as uint8 -- and {4 * film / 1e9:.1f} GB as float32."


def _flicker_test_video() -> torch.Tensor:
    # Clip 0 brightens then darkens (signed changes cancel); clip 1 alternates pixels
    # (neighbours differ a lot, frames 0 and 2 match); shapes differ on every axis.
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 2, 3, 4, generator=generator) * 0.5
    brighten = torch.tensor([0.0, 0.3, 0.5, 0.2, 0.0]).view(1, 5, 1, 1, 1)
    clip0 = base + brighten  # (1, 5, 2, 3, 4)
    other = torch.rand(1, 1, 2, 3, 4, generator=generator)
    clip1 = torch.cat([base, other, base, other, base], dim=1)  # (1, 5, 2, 3, 4)
    return torch.cat([clip0, clip1])  # (2, 5, 2, 3, 4)


@self_check(
    "Flicker: mean change between neighbouring frames", reference="vdmcourse.exercises.lesson01.frame_difference",
    more="The likely slips: signed differences that cancel, comparing every frame with frame 0, or the "
         "wrong axis. For (B, T, C, H, W): (video[:, 1:] - video[:, :-1]).abs().mean(dim=(1, 2, 3, 4)) -- "
         "one number per clip.",
)
def check_frame_difference(frame_difference_fn):
    """``frame_difference(video) -> (B,)``: mean |x[t+1] - x[t]| of each clip."""
    video = _flicker_test_video()
    got = frame_difference_fn(video.clone())
    want = frame_difference(video)
    expect_shape(got, (2,), "frame_difference(video) for 2 clips", hint="Average over time, channels, height and width, but keep the batch axis: one number per clip.")
    got = got.detach().float()
    if torch.allclose(got, want, atol=1e-6):
        return "Neighbouring frames compared, one number per clip."
    first = (video[:, 1:] - video[:, :1]).abs().mean(dim=(1, 2, 3, 4))
    signed = (video[:, 1:] - video[:, :-1]).mean(dim=(1, 2, 3, 4))
    if torch.allclose(got, first, atol=1e-6):
        raise Wrong(
            "Your numbers grow with the distance from frame 0: smooth motion far from the start would look like flicker, "
            "and a clip that jumps back and forth would look still.",
            mistake=FIRST_FRAME_NOT_NEIGHBOUR,
            hint="Compare each frame with the one just before it: video[:, 1:] - video[:, :-1].",
        )
    if torch.allclose(got, signed, atol=1e-6) or torch.allclose(got, signed.abs(), atol=1e-6):
        raise Wrong(
            "A clip that brightens and then darkens back scores almost 0: positive and negative changes cancel.",
            mistake=SIGNED_DIFFERENCE,
            hint="Take .abs() of the differences before averaging.",
        )
    for axis in (2, 3, 4):
        wrong = video.diff(dim=axis).abs().mean(dim=(1, 2, 3, 4))
        if torch.allclose(got, wrong, atol=1e-6):
            raise Wrong(
                f"Your differences run along axis {axis} of (B, T, C, H, W), not along time (axis 1).",
                mistake=WRONG_AXIS,
                hint="Time is axis 1: slice video[:, 1:] and video[:, :-1].",
            )
    expect_close(got, want, "frame_difference(video)", atol=1e-6)


@dataclass(frozen=True)
class _StubConfig:
    image_size: int = 8
    channels: int = 1


class _StillModel(nn.Module):
    """Predicts zero velocity, so a flow sampler returns its start noise unchanged:
    whatever differs between frames of the result came from the noise. Records the
    labels it was called with."""

    def __init__(self):
        super().__init__()
        self.config = _StubConfig()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.seen_labels: list = []
        self.seen_frames: list = []

    def forward(self, x, t, cond=None):
        self.seen_labels.append(cond)
        self.seen_frames.append(x.detach().reshape(-1, x.shape[-3] * x.shape[-2] * x.shape[-1]))
        return torch.zeros_like(x) + 0 * self.anchor


@self_check(
    "Frames from an image model", reference="vdmcourse.exercises.lesson01.generate_frames",
    more="The likely slip is something that never reaches the sampler: the labels (cond=labels), the "
         "guidance_scale, the generator, and a shape (B, frames, C, H, W) taken from model.config, so "
         "every frame starts from its own noise. One call does it: sample(model, shape, steps=steps, cond=labels, "
         "guidance_scale=guidance_scale, generator=generator, progress=False) -- and return it in [-1, 1],"
         " not converted to [0, 1].",
)
def check_generate_frames(generate_frames_fn):
    """``generate_frames(model, labels, frames, generator, steps=..., guidance_scale=...) -> (B, T, C, H, W)``."""
    model = _StillModel()
    labels = torch.tensor([3, 7])
    clip = generate_frames_fn(model, labels, 4, torch.Generator().manual_seed(0), steps=2)
    expect_shape(clip, (2, 4, 1, 8, 8), "generate_frames(model, labels of 2 clips, frames=4, ...)",
                 hint="Ask the sampler for shape (B, T, C, H, W) = (len(labels), frames, channels, image_size, image_size).")
    clip = clip.detach()
    if torch.allclose(clip[:, 1:], clip[:, :1].expand_as(clip[:, 1:])):
        raise Wrong(
            "Every frame of a clip is the same image: a still picture, not a video. An independent image model "
            "gives a different image for different noise -- and the same image for the same noise.",
            mistake=SAME_NOISE_EVERY_FRAME,
            hint="Draw fresh noise for every frame: sample the whole (B, T, C, H, W) at once, or keep using the same generator without re-seeding it.",
        )
    # With guidance the model is also called with null labels; one call with the labels suffices.
    if not any(cond is not None and torch.equal(cond.flatten()[: len(labels)].cpu(), labels) for cond in model.seen_labels):
        raise Wrong(
            "The model was called without the digit labels, so it draws any digit.",
            mistake=LABELS_NOT_PASSED,
            hint="Pass cond=labels to vdmcourse.diffusion.sample.",
        )
    if clip.min() >= 0 and clip.max() <= 1:
        raise Wrong(
            "Every value of your clip lies in [0, 1]; the sampler's start noise alone reaches well below 0. "
            "The rest of the lesson expects the model range [-1, 1].",
            mistake=UNIT_RANGE,
            hint="Return the sampler's output as it is; convert with to_unit_range only when showing the clip.",
        )
    again = generate_frames_fn(_StillModel(), labels, 4, torch.Generator().manual_seed(0), steps=2)
    if not torch.allclose(again.detach(), clip):
        raise Wrong(
            "Two calls with generators seeded the same way give different clips: the randomness does not come from `generator`.",
            hint="Pass generator=generator to the sampler (and draw nothing with torch.randn without it).",
        )
    # The still model leaves the sampler's state as it is, so every frame returned must be one the model saw.
    seen = torch.cat(model.seen_frames).float()
    returned = clip.reshape(-1, seen.shape[1]).float()
    if (returned[:, None] - seen[None]).abs().amax(dim=-1).min(dim=1).values.max() > 1e-4:
        raise Wrong(
            "Some frames you return are not what the sampler produced (with this test model the sampler returns "
            "its start noise unchanged, and your frames differ from it).",
            hint="Return the sampler's output itself: no re-drawing, re-scaling or post-processing.",
        )
    guided = _StillModel()
    generate_frames_fn(guided, labels, 4, torch.Generator().manual_seed(0), steps=2, guidance_scale=3.0)
    if not any(cond is not None and bool((cond == NULL_LABEL).any()) for cond in guided.seen_labels):
        raise Wrong(
            "With guidance_scale=3.0 the model was never asked for its unconditional prediction (the null label): "
            "the guidance scale never reached the sampler.",
            mistake=GUIDANCE_IGNORED,
            hint="Pass guidance_scale=guidance_scale to vdmcourse.diffusion.sample.",
        )
    return "Each frame drawn from its own noise: the lesson's flicker comes from exactly this."
