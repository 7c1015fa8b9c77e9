"""Training a text-, image- and motion-conditioned video model (lesson 09).

* :func:`caption_batch` -- the batch source: one-digit clips, their captions (``"short"``
  labels, ground-truth ``"descriptive"`` ones, or ``"recaptioned"`` by a trained
  :class:`~vdmcourse.metrics.captioner.Captioner`, as Sora's training set was), the
  tokenized captions, and each clip's motion path (the digit's ink centroid per frame).
* :func:`drop_conditions` -- per-clip, per-modality dropout: each clip loses its caption,
  its first frame and its motion path independently, with its own probability, so that
  every subset of the three is trained and classifier-free guidance has its
  unconditional branches.
* :func:`text_video_loss` -- the flow-matching loss of :class:`~vdmcourse.nn.text.TextVideoUNet`
  with those conditions: a kept first frame is a clean context frame at time 0 and
  stays out of the loss (masked-frame conditioning, lesson 12), a dropped caption is the
  null caption (only ``<start>``), a dropped motion path is masked out.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from vdmcourse.course import CHECKPOINT_DIR, to_model_range
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.data.captions import STYLES, CaptionTokenizer, captions_for
from vdmcourse.diffusion.context import masked_training_loss
from vdmcourse.metrics.captioner import recaption
from vdmcourse.metrics.physics import ink_centroid
from vdmcourse.pretrained import load_pretrained

__all__ = ["CAPTION_SOURCES", "DROPOUT", "caption_batch", "drop_conditions", "null_caption", "text_video_loss", "load_captioner"]

CAPTION_SOURCES = (*STYLES, "recaptioned")
# Per-clip drop probabilities: the caption (classifier-free guidance, as for labels), the
# first frame and the motion path (each given half the time, so both halves train).
DROPOUT = {"caption": 0.1, "image": 0.5, "motion": 0.5}


@functools.lru_cache(maxsize=2)
def load_captioner(name: str = "captioner-cpu"):
    """The shipped captioner (``data/checkpoints/<name>.safetensors``) on the CPU, frozen."""
    path = Path(CHECKPOINT_DIR) / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"recaptioning needs the captioner {path}: train it with `python -m vdmcourse train --preset {name}`")
    return load_pretrained(name, device="cpu").requires_grad_(False)


def digit_centres(clips) -> torch.Tensor:
    """Ink centroid ``(N, T, 2)`` (row, col) in pixels of each clip's (first) digit: the
    motion path a clip follows, as :func:`~vdmcourse.metrics.physics.track_digits` sees it."""
    return clips.positions[:, :, 0].round() + ink_centroid(clips.digits[:, 0])[:, None]


def caption_batch(
    generator: torch.Generator,
    *,
    batch_size: int,
    data: MovingMNISTConfig,
    captions: str = "descriptive",
    tokenizer: CaptionTokenizer | None = None,
    captioner: str = "captioner-cpu",
    wrong_share: float = 0.0,
) -> dict:
    """``{"video" (B, T, 1, H, W) in [0, 1], "ids", "ids_mask" (B, L), "motion" (B, T, 2),
    "labels" (B, K), "captions": list[str]}`` for ``batch_size`` fresh clips of ``data``.

    ``captions``: ``"short"`` ("a 3"), ``"descriptive"`` (from ground truth) or
    ``"recaptioned"`` (written by the ``captioner`` checkpoint from the pixels).
    Descriptive wordings are paraphrased from ``generator`` (a paraphrase longer than the
    ``tokenizer`` takes falls back to the canonical wording). ``wrong_share``: the share of
    clips (drawn per clip) whose caption is replaced by the next clip's in the batch --
    noisy captions, as a careless captioner or scraped alt-text gives (0: none, nothing drawn).
    """
    if captions not in CAPTION_SOURCES:
        raise ValueError(f"caption_batch: captions must be one of {CAPTION_SOURCES}; got {captions!r}")
    if not 0.0 <= wrong_share <= 1.0:
        raise ValueError(f"caption_batch: wrong_share must lie in [0, 1]; got {wrong_share!r}")
    tokenizer = tokenizer or CaptionTokenizer()
    clips = generate_clips(batch_size, data, generator=generator)
    if captions == "recaptioned":
        texts = recaption(load_captioner(captioner), clips.video, generator=generator)
    else:
        texts = captions_for(clips, data.free_range, captions, generator=generator)
    limit = tokenizer.max_length - 1
    if captions == "descriptive" and any(len(text.split()) > limit for text in texts):
        # A paraphrase of a clip with several bounces can outgrow the tokenizer (49 words for four
        # bounces); that clip keeps the canonical wording instead (the same facts, nothing more drawn).
        canonical = captions_for(clips, data.free_range, captions)
        texts = [short if len(text.split()) > limit else text for text, short in zip(texts, canonical)]
    if wrong_share > 0:
        wrong = (torch.rand(batch_size, generator=generator) < wrong_share).tolist()
        texts = [texts[(i + 1) % batch_size] if w else text for i, (text, w) in enumerate(zip(texts, wrong))]
    ids, mask = tokenizer(texts)
    return {"video": clips.video, "ids": ids, "ids_mask": mask, "motion": digit_centres(clips), "labels": clips.labels, "captions": texts}


def null_caption(batch: int, length: int, *, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The null caption, ``batch`` times: ``<start>`` then padding -> ``(ids, mask)`` ``(B, L)``."""
    ids = torch.zeros(batch, length, dtype=torch.long, device=device)
    ids[:, 0] = CaptionTokenizer.start_id
    return ids, ids != CaptionTokenizer.pad_id


def drop_conditions(batch: int, dropout: dict[str, float] = DROPOUT, *, generator: torch.Generator | None = None, device=None) -> dict[str, torch.Tensor]:
    """Which clips *lose* each condition: ``{name: bool (B,)}``, an independent draw per
    clip and per modality (in the order of ``dropout``), True with probability ``dropout[name]``."""
    for name, p in dropout.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop_conditions: the drop probability of {name!r} must lie in [0, 1]; got {p!r}")
    draw_device = generator.device if generator is not None else device
    return {name: (torch.rand(batch, generator=generator, device=draw_device) < p).to(device) for name, p in dropout.items()}


def text_video_loss(
    model: nn.Module,
    batch: dict,
    generator: torch.Generator,
    *,
    dropout: dict[str, float] = DROPOUT,
    t_distribution: str = "logit_normal",
) -> torch.Tensor:
    """Flow-matching loss of a :class:`~vdmcourse.nn.text.TextVideoUNet` on a :func:`caption_batch`,
    with the per-clip dropout of :func:`drop_conditions` (drawn first from ``generator``)."""
    x0 = to_model_range(batch["video"])
    b, frames = x0.shape[:2]
    dropped = drop_conditions(b, dropout, generator=generator, device=x0.device)
    null_ids, null_mask = null_caption(b, batch["ids"].shape[1], device=x0.device)
    ids = torch.where(dropped["caption"][:, None], null_ids, batch["ids"])
    ids_mask = torch.where(dropped["caption"][:, None], null_mask, batch["ids_mask"])
    first_frame = torch.zeros(b, frames, dtype=torch.bool, device=x0.device)
    first_frame[:, 0] = ~dropped["image"]
    motion_mask = ~dropped["motion"]

    def conditioned(x, t, cond=None):
        return model(x, t, ids, ids_mask, motion=batch["motion"], motion_mask=motion_mask)

    return masked_training_loss(conditioned, x0, first_frame, generator=generator, t_distribution=t_distribution)
