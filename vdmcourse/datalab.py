"""The training-data experiments of lesson 13, small enough for a CPU.

Each experiment trains the same tiny label-conditioned video U-Net (:func:`tiny_model`)
for the same number of steps from the same seed, and changes one thing: the data.
The batch sources below make each data condition from Moving MNIST ground truth:

* :func:`static_mix` -- a share of near-static clips mixed in, optionally removed by a
  :class:`~vdmcourse.data.curation.StaticClipFilter` fitted on the training stream;
* :func:`speed_labelled` -- speeds from a range, each clip labelled with its speed;
* :func:`stride_labelled` -- clips at several frame strides, labelled with the stride;
* :func:`noisy_labels` -- a share of the digit labels replaced by a wrong digit;
* :func:`limited_digits` -- clips drawn from only ``per_class`` distinct digits per class;
* :func:`i2v_batches` -- image-to-video batches (lesson 10's knobs: fps and motion bucket,
  measured on each clip) from a speed range and a set of frame strides, for
  :func:`tiny_i2v_model`: experiments 2 and 3 through the motion conditioning.

Speed and stride labels go through the model's label table: the clip's labels are
``(digit, AUX + value)``, and the two embeddings are summed (see
:class:`~vdmcourse.nn.embeddings.LabelEmbedding`). ``benchmarks/bench_data.py`` runs the
experiments at full budget; lesson 13 runs them at quick-mode budgets with the same code.

The image-to-video arms are sampled with :class:`~vdmcourse.pipelines.ImageToVideoPipeline`
(:func:`i2v_pipeline`) and measured with the digit tracker (:func:`per_frame_speed`); their
intervals come from :func:`~vdmcourse.metrics.bootstrap` over the held-out images
(:func:`mean_interval`, :func:`knob_slope`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vdmcourse.conditioned_training import MAX_NOISE_AUG, image_embedding, image_to_video_loss
from vdmcourse.course import to_model_range, to_unit_range
from vdmcourse.data import MovingMNISTConfig, digit_pool, render_clips, simulate_trajectories
from vdmcourse.data.conditions import clips_at_strides
from vdmcourse.data.curation import StaticClipFilter, motion_score, nearest_neighbours, stride_clips
from vdmcourse.data.moving_mnist import Clips
from vdmcourse.diffusion import sample, training_loss
from vdmcourse.metrics.distances import bootstrap
from vdmcourse.metrics.features import Evaluator, crop_digits, load_evaluator
from vdmcourse.metrics.physics import track_digits
from vdmcourse.metrics.temporal import dynamic_degree
from vdmcourse.nn.conditioning import ConditionedUNet3D, ConditionedUNet3DConfig
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.train import TrainConfig, Trainer

__all__ = [
    "SMALL",
    "AUX",
    "STATIC_SPEED",
    "tiny_model",
    "draw_clips",
    "static_mix",
    "speed_labelled",
    "stride_labelled",
    "noisy_labels",
    "limited_digits",
    "train_arm",
    "generate",
    "motion_stats",
    "classify_clips",
    "denoising_loss",
    "memorisation",
    "I2V_GAIN",
    "tiny_i2v_model",
    "ResizedEvaluator",
    "i2v_batches",
    "i2v_loss",
    "i2v_pipeline",
    "per_frame_speed",
    "mean_interval",
    "knob_slope",
]

# 24x24 frames, 8 frames, one 12 px digit moving 1.5 px/frame: a 12 px free range, a bounce or two.
SMALL = MovingMNISTConfig(canvas=24, frames=8, digits=1, digit_size=12, speed=(1.5, 1.5))
AUX = 10  # label-table rows from here on hold speed / stride values (AUX + value)
STATIC_SPEED = (0.0, 0.15)  # "near-static": at most about 1 px over the whole clip


def tiny_model(num_classes: int = 16) -> UNet3D:
    """A 71 k-parameter (2+1)-D U-Net for :data:`SMALL` clips: 8 -> 16 -> 16 channels at
    24 -> 12 -> 6 px, temporal convolutions below full resolution, space-time attention at 6x6."""
    return UNet3D(
        UNet3DConfig(
            image_size=SMALL.canvas, base_channels=8, channel_mults=(1, 2, 2), blocks_per_level=1, heads=2, groups=4,
            num_classes=num_classes, frames=SMALL.frames, temporal_conv_levels=(1, 2), temporal_attention_levels=(2,),
            attention_span="spacetime",
        )
    )


def draw_clips(
    n: int, config: MovingMNISTConfig, generator: torch.Generator, *, pool: tuple[torch.Tensor, torch.Tensor] | None = None
) -> Clips:
    """Like :func:`~vdmcourse.data.generate_clips`, but the digits come from ``pool``
    ``(images (M, S, S), labels (M,))`` when given (default: ``digit_pool(config)``)."""
    images, labels = pool if pool is not None else digit_pool(config)
    choice = torch.randint(len(labels), (n, config.digits), generator=generator)
    start = torch.rand((n, config.digits, 2), generator=generator) * config.free_range
    theta = torch.rand((n, config.digits), generator=generator) * (2 * torch.pi)
    low, high = config.speed
    speed = low + (high - low) * torch.rand((n, config.digits), generator=generator)
    velocity = torch.stack([speed * torch.sin(theta), speed * torch.cos(theta)], -1)
    positions, velocities = simulate_trajectories(start, velocity, config.frames, config.free_range)
    digits = images[choice]
    return Clips(render_clips(digits, positions, config.canvas), labels[choice], positions, velocities, digits)


Batches = Callable[[torch.Generator], dict]


def static_mix(static_share: float, *, batch_size: int = 8, keep: float | None = None, config: MovingMNISTConfig = SMALL) -> Batches:
    """Clips of ``config``, a ``static_share`` of them near-static (speed in
    :data:`STATIC_SPEED`). With ``keep``, a :class:`StaticClipFilter` is fitted on 512 clips of
    this training stream to keep that share, and batches hold only clips that pass it."""
    if not 0 <= static_share <= 1:
        raise ValueError(f"static_mix: static_share must be in [0, 1]; got {static_share!r}")
    still = dataclasses.replace(config, speed=STATIC_SPEED)

    def mixed(n: int, generator: torch.Generator) -> Clips:
        moving, static = draw_clips(n, config, generator), draw_clips(n, still, generator)
        pick = torch.rand(n, generator=generator) < static_share  # (n,) True: the static clip
        return Clips(
            torch.where(pick[:, None, None, None, None], static.video, moving.video),
            torch.where(pick[:, None], static.labels, moving.labels),
            torch.where(pick[:, None, None, None], static.positions, moving.positions),
            torch.where(pick[:, None, None, None], static.velocities, moving.velocities),
            torch.where(pick[:, None, None, None], static.digits, moving.digits),
        )

    curate = None
    if keep is not None:
        curate = StaticClipFilter.fit(motion_score(mixed(512, torch.Generator().manual_seed(12345)).video), keep)

    def batches(generator: torch.Generator) -> dict:
        if curate is None:
            clips = mixed(batch_size, generator)
            return {"video": clips.video, "labels": clips.labels}
        videos, labels, have = [], [], 0
        while have < batch_size:  # draw candidates until enough pass the filter
            clips = mixed(batch_size, generator)
            passed = curate(motion_score(clips.video))
            videos.append(clips.video[passed])
            labels.append(clips.labels[passed])
            have += int(passed.sum())
        return {"video": torch.cat(videos)[:batch_size], "labels": torch.cat(labels)[:batch_size]}

    batches.filter = curate
    return batches


def speed_labelled(speed: tuple[float, float], *, batch_size: int = 8, config: MovingMNISTConfig = SMALL) -> Batches:
    """Clips with speeds uniform in ``speed``, labelled ``(digit, AUX + round(speed))``."""
    data = dataclasses.replace(config, speed=speed)

    def batches(generator: torch.Generator) -> dict:
        clips = draw_clips(batch_size, data, generator)
        value = clips.velocities[:, 0, 0].norm(dim=-1).round().long()  # (B,) px/frame, rounded
        return {"video": clips.video, "labels": torch.stack([clips.labels[:, 0], AUX + value], 1)}

    return batches


def stride_labelled(strides: tuple[int, ...], *, batch_size: int = 8, config: MovingMNISTConfig = SMALL) -> Batches:
    """Clips at a frame stride drawn from ``strides`` per clip (every stride-th frame of a
    longer clip of ``config``; :func:`~vdmcourse.data.curation.stride_clips`), labelled
    ``(digit, AUX + stride)``."""

    def batches(generator: torch.Generator) -> dict:
        which = torch.randint(len(strides), (batch_size,), generator=generator)
        videos, labels = [], []
        for index, stride in enumerate(strides):
            n = int((which == index).sum())
            if n:
                clips = stride_clips(n, config, stride, generator=generator)
                videos.append(clips.video)
                labels.append(torch.stack([clips.labels[:, 0], torch.full((n,), AUX + stride)], 1))
        return {"video": torch.cat(videos), "labels": torch.cat(labels)}

    return batches


def noisy_labels(wrong_share: float, *, batch_size: int = 8, config: MovingMNISTConfig = SMALL) -> Batches:
    """Clips whose digit label is replaced, with probability ``wrong_share``, by a different
    digit drawn uniformly: the label analogue of a wrong caption."""

    def batches(generator: torch.Generator) -> dict:
        clips = draw_clips(batch_size, config, generator)
        wrong = torch.rand(batch_size, generator=generator) < wrong_share
        other = (clips.labels[:, 0] + torch.randint(1, 10, (batch_size,), generator=generator)) % 10
        return {"video": clips.video, "labels": torch.where(wrong, other, clips.labels[:, 0])[:, None]}

    return batches


def limited_digits(per_class: int, config: MovingMNISTConfig = SMALL) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` training digits of each class: ``(images (10 n, S, S), labels)``."""
    images, labels = digit_pool(config)
    keep = torch.cat([torch.nonzero(labels == digit).flatten()[:per_class] for digit in range(10)])
    return images[keep], labels[keep]


def pool_batches(pool: tuple[torch.Tensor, torch.Tensor], *, batch_size: int = 8, config: MovingMNISTConfig = SMALL) -> Batches:
    """Clips of ``config`` whose digits come from ``pool`` only."""

    def batches(generator: torch.Generator) -> dict:
        clips = draw_clips(batch_size, config, generator, pool=pool)
        return {"video": clips.video, "labels": clips.labels}

    return batches


def _loss(model, batch, generator):
    return training_loss(
        model, to_model_range(batch["video"]), cond=batch["labels"], p_uncond=0.1, generator=generator,
        t_distribution="logit_normal",
    )


def train_arm(
    batches: Batches, steps: int, *, seed: int = 0, out_dir=None, progress: bool = False, num_classes: int = 16,
    model: Callable[[], nn.Module] | None = None, loss: Callable | None = None,
):
    """Train :func:`tiny_model` on ``batches`` for ``steps`` steps from ``seed``; returns
    ``(ema_model, info)`` with info ``{"steps", "cpu_s", "wall_s", "final_loss"}``. With
    ``out_dir`` it checkpoints and resumes an interrupted run there. ``model`` (a factory)
    and ``loss`` replace the label-conditioned pair, e.g. ``model=tiny_i2v_model, loss=i2v_loss``."""
    torch.manual_seed(seed)
    network = tiny_model(num_classes) if model is None else model()
    config = TrainConfig(lr=2e-3, warmup_steps=20, ema_decay=0.99, seed=seed, checkpoint_every=100)
    trainer = Trainer(network, _loss if loss is None else loss, batches, config, out_dir=out_dir, device="cpu", progress=progress)
    if out_dir is not None and trainer.checkpoint_path.is_file():
        trainer.resume()
    cpu, wall = time.process_time(), time.perf_counter()
    history = trainer.fit(steps)
    tail = history[-50:]
    info = {"steps": trainer.step, "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
            "train_s": trainer.elapsed, "final_loss": sum(tail) / max(len(tail), 1)}
    return trainer.ema, info


def generate(model: UNet3D, labels: torch.Tensor, *, seed: int = 1, steps: int = 10, guidance_scale: float = 2.0) -> torch.Tensor:
    """Samples for ``labels`` ``(N, K)``: video ``(N, T, 1, H, W)`` in ``[0, 1]`` (Euler, flow)."""
    shape = (len(labels), SMALL.frames, 1, SMALL.canvas, SMALL.canvas)
    x = sample(model, shape, steps=steps, cond=labels, guidance_scale=guidance_scale, progress=False,
               generator=torch.Generator().manual_seed(seed))
    return to_unit_range(x)


def motion_stats(video: torch.Tensor) -> dict:
    """``{"dynamic_degree", "motion_px", "static_share"}``: mean dynamic degree, mean motion
    score (px/frame), share of clips with a motion score below 0.5 px/frame."""
    motion = motion_score(video)
    return {
        "dynamic_degree": dynamic_degree(video).mean().item(),
        "motion_px": motion.mean().item(),
        "static_share": (motion < 0.5).float().mean().item(),
    }


def _upsample(video: torch.Tensor, size: int) -> torch.Tensor:
    n, t, c, h, w = video.shape
    frames = F.interpolate(video.reshape(n * t, c, h, w), size=(size, size), mode="bilinear", align_corners=False)
    return frames.view(n, t, c, size, size).clamp(0, 1)


def classify_clips(video: torch.Tensor, evaluator: Evaluator) -> torch.Tensor:
    """The digit class each (one-digit) clip shows: the evaluator's majority vote over the
    clean frames, after upsampling to its canvas: ``(N,)``, -1 where no digit was seen."""
    video = _upsample(video, evaluator.config.canvas)
    tracks = track_digits(video, 1)
    crops = crop_digits(video, tracks.centres, evaluator.config.digit_size)[:, :, 0]  # (N, T, S, S)
    with torch.no_grad():
        classes = evaluator.classify(crops.flatten(0, 1)).argmax(1).view(video.shape[:2])
    votes = F.one_hot(classes, 10) * tracks.clean[:, :, 0, None]  # (N, T, 10)
    counts = votes.sum(1)
    return torch.where(counts.sum(1) > 0, counts.argmax(1), -1)


@torch.no_grad()
def denoising_loss(model: UNet3D, clips: Clips, *, seed: int = 7, times: int = 8) -> float:
    """The flow loss on ``clips`` at ``times`` evenly spaced noise levels, with fixed noise:
    the same number for the same model and clips (lower is better)."""
    x0 = to_model_range(clips.video)
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for t_value in torch.linspace(0.1, 0.9, times):
        eps = torch.randn(x0.shape, generator=generator)
        t = torch.full((len(x0),), t_value.item())
        s = t[:, None, None, None, None]
        output = model((1 - s) * x0 + s * eps, t, cond=clips.labels)
        total += F.mse_loss(output, eps - x0).item()
    return total / times


def _centre_crops(video: torch.Tensor, size: int) -> torch.Tensor:
    """The tracked digit of each clip's middle frame, cut ``size`` x ``size`` around its ink centroid."""
    middle = video[:, video.shape[1] // 2][:, None]  # (N, 1, 1, H, W)
    tracks = track_digits(middle, 1)
    return crop_digits(middle, tracks.centres, size)[:, 0, 0]  # (N, S, S)


def memorisation(samples: torch.Tensor, train_images: torch.Tensor, test_images: torch.Tensor) -> dict:
    """Nearest-neighbour distances to the training digits (RMS, tolerant to 1-px shifts):
    ``{"samples_to_train", "test_to_train"}`` medians. Samples much closer to the training
    digits than unseen test digits are copies: memorisation."""
    size = SMALL.digit_size

    def on_canvas(images: torch.Tensor) -> torch.Tensor:  # each digit pasted once in the middle of a canvas
        corner = torch.full((len(images), 1, 1, 2), (SMALL.canvas - size) / 2)
        return render_clips(images[:, None], corner, SMALL.canvas)  # (M, 1, 1, H, W)

    train = _centre_crops(on_canvas(train_images), size)
    samples_to_train, _ = nearest_neighbours(_centre_crops(samples, size), train, max_shift=1)
    test_to_train, _ = nearest_neighbours(_centre_crops(on_canvas(test_images), size), train, max_shift=1)
    return {"samples_to_train": samples_to_train.median().item(), "test_to_train": test_to_train.median().item()}



# --- experiments 2 and 3 through the image-to-video conditioning (lesson 10's knobs) -----------------

I2V_GAIN = 4.0  # condition_gain: the recipe attempt that moved i2v-cpu's knobs most (benchmarks/results/i2v.md)


def tiny_i2v_model() -> ConditionedUNet3D:
    """:func:`tiny_model` with SVD's conditioning (:class:`~vdmcourse.nn.conditioning.ConditionedUNet3D`):
    the first frame concatenated on channels, the evaluator's image embedding and
    ``[fps - 1, motion_bucket_id, noise_aug_strength]`` added to the time embedding; no digit labels."""
    fields = {**tiny_model().config.__dict__, "num_classes": None}
    return ConditionedUNet3D(
        ConditionedUNet3DConfig(**fields, condition_channels=1, image_embed_dim=64, micro_conditioning=True, condition_gain=I2V_GAIN)
    )


class ResizedEvaluator(nn.Module):
    """The course's evaluator for clips of another frame size: each clip is resampled
    (bilinear) to the evaluator's canvas first, so :data:`SMALL`'s 24x24 frames get the
    32x32 evaluator's features. ``model(video (B, T, 1, H, W) in [0, 1]) -> (B, feature_dim)``."""

    def __init__(self, evaluator: Evaluator | None = None):
        super().__init__()
        self.evaluator = (evaluator or load_evaluator()).requires_grad_(False)
        self.config = self.evaluator.config

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.evaluator(_upsample(video, self.config.canvas))


@functools.lru_cache(maxsize=1)
def _resized_evaluator() -> ResizedEvaluator:
    return ResizedEvaluator().eval()


def i2v_batches(
    speed: tuple[float, float], strides: tuple[int, ...], *, batch_size: int = 8, group: int = 4,
    max_noise_aug: float = MAX_NOISE_AUG, config: MovingMNISTConfig = SMALL,
) -> Batches:
    """Image-to-video batches (the keys of :func:`~vdmcourse.conditioned_training.image_to_video_batch`)
    of ``config`` clips whose speed is drawn from ``speed`` (px per base frame at 12 fps) and whose
    frame stride is drawn from ``strides`` (fps = 12 / stride); fps and motion bucket are measured on
    each clip (:func:`~vdmcourse.data.conditions.clips_at_strides`). Runs of ``group`` clips share
    their first frame and direction and differ in speed and stride only (the paired design)."""
    data = dataclasses.replace(config, speed=speed)

    def batches(generator: torch.Generator) -> dict:
        clips = clips_at_strides(batch_size, data, strides=strides, generator=generator, group=group)
        return {
            "video": clips.video,
            "fps": clips.fps,
            "motion_bucket": clips.motion_bucket.float(),
            "noise_aug_strength": max_noise_aug * torch.rand(batch_size, generator=generator) ** 2,
            "image_embedding": image_embedding(clips.video[:, 0], _resized_evaluator()),
        }

    return batches


i2v_loss = functools.partial(image_to_video_loss, t_mean=0.5)  # i2v-cpu's loss: times lean to high noise, where the knobs act


def i2v_pipeline(model: ConditionedUNet3D, sampler: str = "euler"):
    """An :class:`~vdmcourse.pipelines.ImageToVideoPipeline` for a :func:`tiny_i2v_model` (its
    image embedding from :class:`ResizedEvaluator`)."""
    from vdmcourse.pipelines import ImageToVideoPipeline  # the pipelines module imports much; only this needs it

    return ImageToVideoPipeline(model, evaluator=_resized_evaluator(), sampler=sampler)


def per_frame_speed(video: torch.Tensor) -> torch.Tensor:
    """The tracked digit's mean displacement per frame in px: ``video`` ``(B, T, 1, H, W)`` in
    ``[0, 1]`` -> ``(B,)`` (steps where the tracker lost the digit are skipped; NaN if all are)."""
    centres = track_digits(video, 1).centres[:, :, 0]  # (B, T, 2)
    steps = (centres[:, 1:] - centres[:, :-1]).norm(dim=-1)  # (B, T-1)
    return steps.nanmean(dim=1)


def mean_interval(values, *, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``values`` (NaN dropped) and a basic bootstrap interval for it
    (:func:`~vdmcourse.metrics.bootstrap`, resampling the values): ``(mean, low, high)``."""
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    x = x[~x.isnan()][:, None]  # (N, 1)
    result = bootstrap(lambda a, _: a.mean().item(), x, x, name="mean", level=level, resamples=resamples,
                       generator=torch.Generator().manual_seed(seed))
    return result.value, result.low, result.high


def knob_slope(measured: torch.Tensor, asked, *, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """How much of a requested change the clips show: the least-squares slope of ``measured``
    ``(N, K)`` (one row per image, one column per requested value) on ``asked`` ``(K,)``, in the
    same unit (1: follows the knob exactly; 0: ignores it), with a basic bootstrap interval over the
    images (rows resampled, pairing kept): ``(slope, low, high)``. Rows with a NaN are dropped."""
    measured = torch.as_tensor(measured, dtype=torch.float64)
    asked = torch.as_tensor(asked, dtype=torch.float64)
    if measured.ndim != 2 or measured.shape[1] != len(asked) or len(asked) < 2:
        raise ValueError(f"knob_slope: measured must be (N, K) with K = len(asked) >= 2; got {tuple(measured.shape)} and {len(asked)} values")
    rows = measured[~measured.isnan().any(1)]
    centred = asked - asked.mean()

    def slope(m: torch.Tensor, _) -> float:
        return float(((m - m.mean()) * centred).sum() / (len(m) * (centred**2).sum()))

    result = bootstrap(slope, rows, rows, name="slope", level=level, resamples=resamples,
                       generator=torch.Generator().manual_seed(seed))
    return result.value, result.low, result.high


@torch.no_grad()
def i2v_speeds(
    model: ConditionedUNet3D, images: torch.Tensor, requests, *, knob_guidance_scale: float = 0.0, steps: int = 10, seed: int = 0,
) -> torch.Tensor:
    """Generate a clip from each image ``(N, 1, H, W)`` in ``[0, 1]`` for each ``(fps, motion_bucket_id)``
    in ``requests`` through :func:`i2v_pipeline` (Euler, ``steps`` steps, SVD's frame-wise guidance
    1 -> 3, knob guidance ``knob_guidance_scale``; the same noise for every request) and measure
    each clip's tracked motion: ``(N, len(requests))`` px/frame (:func:`per_frame_speed`)."""
    pipe = i2v_pipeline(model)
    columns = []
    for fps, bucket in requests:
        frames = pipe(images, num_inference_steps=steps, fps=fps, motion_bucket_id=bucket, knob_guidance_scale=knob_guidance_scale,
                      generator=torch.Generator().manual_seed(seed)).frames
        columns.append(per_frame_speed(frames))
    return torch.stack(columns, 1)  # (N, K)
