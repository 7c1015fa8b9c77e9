"""Text-video alignment: a mini-CLIP trained here, and the score it gives (lesson 09).

CLIP (Radford et al. 2021) trains two encoders -- one for images, one for text -- so
that a matching (image, caption) pair lands on nearby unit vectors and a mismatched
one does not, with the symmetric InfoNCE loss (:func:`~vdmcourse.nn.text.clip_loss`):
in a batch of B pairs, each clip must pick its own caption out of the B, and each
caption its own clip. The cosine of a (clip, caption) pair is then a **text-video
alignment score** (CLIPScore, Hessel et al. 2021; video benchmarks such as VBench
use CLIP/ViCLIP similarities the same way).

:class:`MiniCLIP` is that pair of encoders for the course's one-digit clips:

* the **clip encoder** -- the evaluator's (2+1)D trunk and per-frame digit classifier
  (started from ``evaluator-cpu``'s weights, as the captioner is) plus the ink-centroid
  track, mapped to an ``embed_dim`` unit vector;
* the **text encoder** -- a :class:`~vdmcourse.nn.text.TextEncoder` over the caption
  vocabulary, its pooled vector mapped to the same space;
* a learned **temperature** (CLIP's logit scale), started at 0.07.

It is trained on (clip, caption) pairs with ground-truth captions, paraphrased, and
some short ones (``python -m vdmcourse train --preset miniclip-cpu``). Then:

* :func:`text_video_alignment` -- cosine of each clip with its caption ``(B,)``;
* :func:`retrieval_accuracy` -- on held-out clips (the test digits): top-1 retrieval
  clip -> caption and caption -> clip within pools of clips, and per-attribute probes
  (is the true caption scored above the same caption with the digit, the direction or
  the speed changed?), each with its chance level.

A score of this kind only measures what its encoders learnt to tell apart: the probes
say which words the score can see.

For a text-to-video model, :func:`prompt_report` puts the two kinds of measure side by
side -- prompt following measured from the pixels (:mod:`vdmcourse.metrics.prompts`:
digit, direction, speed class, bounce walls, each with its count and a 95 % interval)
and the alignment score -- and :func:`format_prompt_report` prints them with the real
clips' values beside them (``python -m vdmcourse evaluate --checkpoint text-video-cpu``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.data.captions import DIRECTIONS, SPEEDS, CaptionTokenizer, caption, clip_facts
from vdmcourse.metrics.features import Evaluator, _Stage, crop_digits, digit_classifier
from vdmcourse.metrics.physics import check_video, ink_centroid
from vdmcourse.nn.text import TextEncoder, TextEncoderConfig, clip_loss

__all__ = [
    "MiniCLIPConfig",
    "MiniCLIP",
    "miniclip_batch",
    "miniclip_loss",
    "text_video_alignment",
    "retrieval_accuracy",
    "load_miniclip",
    "held_out_prompts",
    "wilson_interval",
    "prompt_report",
    "format_prompt_report",
]

MINICLIP_NAME = "miniclip-cpu"
# A speed class written back as a number: the middle of its third of the (1, 3) px/frame range.
_CLASS_SPEEDS = {"slow": 4 / 3, "medium": 2.0, "fast": 8 / 3}


@dataclass(frozen=True)
class MiniCLIPConfig:
    """A mini-CLIP for one-digit clips.

    canvas, frames, digit_size, speed   the clips (one digit each) it is trained on and accepts
    widths, feature_dim                 the (2+1)D trunk (the evaluator's sizes, so its weights fit)
    classifier_width                    the per-frame digit classifier (the evaluator's)
    hidden, embed_dim                   the clip head's hidden width; the shared embedding size
    text                                the text encoder
    temperature                         the starting temperature (CLIP: 0.07); it is learnt
    short_share                         share of training captions that are short ("a 3")
    """

    canvas: int = 32
    frames: int = 10
    digit_size: int = 16
    speed: tuple[float, float] = (1.0, 3.0)
    widths: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 64
    classifier_width: int = 32
    hidden: int = 256
    embed_dim: int = 64
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    temperature: float = 0.07
    short_share: float = 0.2

    def __post_init__(self):
        if not 0 < self.temperature:
            raise ValueError(f"MiniCLIPConfig: temperature must be > 0; got {self.temperature!r}")
        if not 0.0 <= self.short_share <= 1.0:
            raise ValueError(f"MiniCLIPConfig: short_share must lie in [0, 1]; got {self.short_share!r}")

    def clips(self, split: str = "train") -> MovingMNISTConfig:
        return MovingMNISTConfig.cpu(canvas=self.canvas, frames=self.frames, digit_size=self.digit_size, speed=self.speed, split=split)

    @property
    def data(self) -> MovingMNISTConfig:
        return self.clips("train")


class MiniCLIP(nn.Module):
    """Clip encoder + text encoder into one space. ``model(video, ids, mask)`` returns the
    unit vectors ``(clip (B, E), text (B, E))``; ``video`` ``(B, T, 1, H, W)`` in [0, 1],
    ``ids``/``mask`` ``(B, L)`` from a :class:`~vdmcourse.data.captions.CaptionTokenizer`.
    :attr:`temperature` is the learnt softmax temperature of the contrastive loss."""

    def __init__(self, config: MiniCLIPConfig | None = None):
        super().__init__()
        self.config = config = config or MiniCLIPConfig()
        widths = (1, *config.widths)
        self.stages = nn.ModuleList(_Stage(a, b) for a, b in zip(widths, widths[1:]))
        self.project = nn.Linear(config.widths[-1] * config.frames, config.feature_dim)
        self.classifier = digit_classifier(config.classifier_width)
        self.clip_head = nn.Sequential(
            nn.Linear(config.feature_dim + 2 * config.frames + 10, config.hidden), nn.SiLU(),
            nn.Linear(config.hidden, config.embed_dim),
        )
        self.text = TextEncoder(config.text)
        self.text_head = nn.Linear(config.text.dim, config.embed_dim)
        # CLIP's logit scale: log(1 / temperature), learnt, clamped so the temperature stays >= 0.01
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.temperature)))
        self.tokenizer = CaptionTokenizer(max_length=config.text.max_length)

    @classmethod
    def from_image_model(cls, evaluator: Evaluator, config: MiniCLIPConfig | None = None) -> MiniCLIP:
        """Start from a trained :class:`~vdmcourse.metrics.features.Evaluator`: its trunk and
        digit classifier are copied, the heads and the text encoder are new. (The name is the
        hook that a preset's ``init_from`` calls.)"""
        if not isinstance(evaluator, Evaluator):
            raise TypeError(f"MiniCLIP.from_image_model expects an Evaluator; got {type(evaluator).__name__}")
        model = cls(config)
        shared = {k: v for k, v in evaluator.state_dict().items() if k.split(".")[0] in ("stages", "project", "classifier")}
        result = model.load_state_dict(shared, strict=False)
        if result.unexpected_keys:
            raise ValueError(f"MiniCLIP.from_image_model: the evaluator's {result.unexpected_keys} have no place here")
        return model

    @property
    def temperature(self) -> torch.Tensor:
        return 1 / self.logit_scale.clamp(max=math.log(100)).exp()

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Unit vectors ``(B, E)`` of clips ``(B, T, 1, H, W)`` in [0, 1]."""
        video = check_video(video, caller="MiniCLIP")
        c = self.config
        if tuple(video.shape[1:]) != (c.frames, 1, c.canvas, c.canvas):
            raise ValueError(f"MiniCLIP: trained on clips of shape (B, {c.frames}, 1, {c.canvas}, {c.canvas}); got {tuple(video.shape)}")
        x = rearrange(video * 2 - 1, "b t c h w -> b c t h w")
        for stage in self.stages:
            x = stage(x)  # (B, C, T, H/2^i, W/2^i)
        features = F.silu(self.project(rearrange(x.mean(dim=(3, 4)), "b c t -> b (c t)")))  # (B, F)
        centres = ink_centroid(video[:, :, 0])  # (B, T, 2)
        track = (centres.nan_to_num(c.canvas / 2) / c.canvas) * 2 - 1
        crops = crop_digits(video, centres[:, :, None], c.digit_size)  # (B, T, 1, S, S)
        digit = rearrange(self.classifier(rearrange(crops, "b t k s r -> (b t k) 1 s r") * 2 - 1), "(b t) c -> b t c", b=len(video)).mean(1)
        h = torch.cat([features, rearrange(track, "b t two -> b (t two)"), digit], dim=1)
        return F.normalize(self.clip_head(h), dim=-1)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit vectors ``(B, E)`` of tokenized captions ``(B, L)``."""
        _, pooled = self.text(ids, mask)
        return F.normalize(self.text_head(pooled), dim=-1)

    def encode_captions(self, captions: list[str]) -> torch.Tensor:
        """Unit vectors ``(B, E)`` of captions in the caption vocabulary (an unknown word is refused)."""
        ids, mask = self.tokenizer(captions)
        device = self.logit_scale.device
        return self.encode_text(ids.to(device), mask.to(device))

    def forward(self, video: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_video(video), self.encode_text(ids, mask)


def miniclip_batch(generator: torch.Generator | None, config: MiniCLIPConfig, *, batch_size: int = 64, split: str = "train") -> dict:
    """``{"video" (B, T, 1, H, W), "ids", "ids_mask" (B, L), "captions"}``: fresh one-digit
    clips and their ground-truth captions -- paraphrased from ``generator``, a share
    ``config.short_share`` of them short -- (the batch source a Trainer calls)."""
    clips = generate_clips(batch_size, config.clips(split), generator=generator)
    facts = clip_facts(clips.labels, clips.positions, clips.velocities, config.clips(split).free_range)
    short = torch.rand(batch_size, generator=generator) < config.short_share
    captions = [caption(f, "short" if s else "descriptive", generator=generator) for f, s in zip(facts, short.tolist())]
    ids, mask = CaptionTokenizer(max_length=config.text.max_length)(captions)
    return {"video": clips.video, "ids": ids, "ids_mask": mask, "captions": captions}


def miniclip_loss(model: MiniCLIP, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
    """The symmetric InfoNCE loss of the batch's (clip, caption) pairs at the model's temperature."""
    clip, text = model(batch["video"], batch["ids"], batch["ids_mask"])
    return clip_loss(clip, text, temperature=model.temperature)


@torch.no_grad()
def text_video_alignment(video: torch.Tensor, captions: list[str], model: MiniCLIP | None = None, *, batch_size: int = 256) -> torch.Tensor:
    """Text-video alignment of each clip with its caption: the cosine ``(B,)`` in [-1, 1]
    of their mini-CLIP embeddings (``model``: the shipped ``miniclip-cpu`` if None).
    Each clip's score depends on that clip and its caption only."""
    if len(captions) != len(video):
        raise ValueError(f"text_video_alignment: {len(video)} clips but {len(captions)} captions; one caption per clip")
    model = load_miniclip() if model is None else model
    was_training = model.training
    model.eval()
    scores = []
    for start in range(0, len(video), batch_size):
        part = slice(start, start + batch_size)
        clip = model.encode_video(video[part].to(model.logit_scale.device))
        scores.append((clip * model.encode_captions(list(captions[part]))).sum(-1).cpu())
    model.train(was_training)
    return torch.cat(scores) if scores else torch.zeros(0)


def _variants(facts, attribute: str) -> list[str]:
    """The canonical caption of ``facts`` with ``attribute`` set to each of its values; the true one first."""
    if attribute == "digit":
        values = [facts.digits[0]] + [d for d in range(10) if d != facts.digits[0]]
        return [caption(dataclasses.replace(facts, digits=(d,))) for d in values]
    if attribute == "direction":
        values = [facts.directions[0]] + [k for k in range(len(DIRECTIONS)) if k != facts.directions[0]]
        return [caption(dataclasses.replace(facts, directions=(k,))) for k in values]
    true = facts.speed_classes[0]
    values = [true] + [s for s in SPEEDS if s != true]
    return [caption(dataclasses.replace(facts, speeds=(_CLASS_SPEEDS[s],))) for s in values]


@torch.no_grad()
def retrieval_accuracy(model: MiniCLIP, clips: int = 512, *, pool: int = 64, seed: int = 1) -> dict[str, float]:
    """Held-out accuracy of a mini-CLIP on ``clips`` clips of the *test* digits, canonical captions.

    * ``clip_to_caption`` / ``caption_to_clip`` -- top-1 retrieval within pools of ``pool``
      clips and their captions (chance ``1 / pool``; captions that say the same thing as
      the true one count as right, since nothing could tell them apart);
    * ``digit`` / ``direction`` / ``speed`` -- the true caption scored above every copy of
      it with that attribute changed (chance 1/10, 1/8, 1/3).
    """
    if clips < pool or pool < 2:
        raise ValueError(f"retrieval_accuracy: need clips >= pool >= 2; got clips={clips}, pool={pool}")
    model.eval()
    config = model.config
    data = config.clips("test")
    batch = generate_clips(clips, data, generator=torch.Generator().manual_seed(seed))
    facts = clip_facts(batch.labels, batch.positions, batch.velocities, data.free_range)
    captions = [caption(f) for f in facts]
    device = model.logit_scale.device
    video = torch.cat([model.encode_video(batch.video[i : i + 256].to(device)) for i in range(0, clips, 256)])
    text = model.encode_captions(captions)
    right = {"clip_to_caption": [], "caption_to_clip": []}
    for start in range(0, clips - pool + 1, pool):
        part = slice(start, start + pool)
        sim = video[part] @ text[part].T  # (P, P)
        same = torch.tensor([[a == b for b in captions[part]] for a in captions[part]])  # identical captions
        right["clip_to_caption"].append(same[torch.arange(pool), sim.argmax(1).cpu()])
        right["caption_to_clip"].append(same[sim.argmax(0).cpu(), torch.arange(pool)])
    out = {key: torch.cat(value).float().mean().item() for key, value in right.items()}
    for attribute in ("digit", "direction", "speed"):
        hits = []
        for i, fact in enumerate(facts):
            scores = model.encode_captions(_variants(fact, attribute)) @ video[i]
            hits.append(bool(scores.argmax() == 0))
        out[attribute] = sum(hits) / len(hits)
    return out | {"held_out_clips": clips, "pool": pool, "chance_retrieval": 1 / pool,
                  "chance": {"digit": 0.1, "direction": 1 / 8, "speed": 1 / 3}}


def load_miniclip(name: str = MINICLIP_NAME, *, device: str | torch.device | None = "cpu") -> MiniCLIP:
    """The shipped mini-CLIP (``data/checkpoints/<name>.safetensors``), frozen, in eval mode."""
    from vdmcourse.course import CHECKPOINT_DIR
    from vdmcourse.pretrained import load_pretrained

    path = Path(CHECKPOINT_DIR) / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"the text-video alignment score needs {path}: train it with `python -m vdmcourse train --preset {name}`")
    model = load_pretrained(name, device=device)
    if not isinstance(model, MiniCLIP):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a MiniCLIP")
    return model.eval().requires_grad_(False)


# The held-out prompts of lesson 09's measurements: test digits at the text models' speeds.
PROMPT_DATA = MovingMNISTConfig.cpu(speed=(1.0, 3.0), split="test")
PROMPT_ATTRIBUTES = ("digit", "direction", "speed", "bounce_walls")


def held_out_prompts(n: int, *, seed: int = 0, data: MovingMNISTConfig | None = None):
    """``n`` clips of the *test* digits (``data``, default :data:`PROMPT_DATA`), their facts and
    canonical descriptive captions: ``(clips, facts, captions)``. Same ``seed``, same prompts."""
    if n < 1:
        raise ValueError(f"held_out_prompts: need at least one prompt; got {n}")
    data = data or PROMPT_DATA
    clips = generate_clips(n, data, generator=torch.Generator().manual_seed(seed))
    facts = clip_facts(clips.labels, clips.positions, clips.velocities, data.free_range)
    return clips, facts, [caption(f) for f in facts]


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % at ``z`` = 1.96) for a share of ``hits`` out of ``n``; unlike
    p ± z·SE it stays inside [0, 1] and is not of zero width at 0 or n hits."""
    if n < 1 or not 0 <= hits <= n:
        raise ValueError(f"wilson_interval: need 0 <= hits <= n and n >= 1; got hits={hits}, n={n}")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@torch.no_grad()
def prompt_report(video: torch.Tensor, prompts: list, evaluator: Evaluator, model: MiniCLIP | None = None,
                  captions: list[str] | None = None) -> dict:
    """Prompt following of one-digit clips ``video`` ``(N, T, 1, H, W)`` in [0, 1] made for
    ``prompts`` (their :class:`~vdmcourse.data.captions.ClipFacts`), and their alignment with
    ``captions`` (default: the prompts' canonical captions) by the mini-CLIP ``model``.

    Returns ``{"n": N, "digit": {...}, "direction": ..., "speed": ..., "bounce_walls": ...,
    "overall": share, "hits": {attribute: [bool] * N}}`` where each attribute holds ``share``,
    ``hits`` (count), ``low`` / ``high`` (Wilson 95 %); with a ``model`` also ``"alignment"``:
    ``{"mean", "sem", "per_clip"}`` (cosines).
    """
    from vdmcourse.metrics.prompts import measure_clips, prompt_hits

    hits = prompt_hits(measure_clips(video, evaluator), prompts)
    n = len(prompts)
    out = {"n": n, "hits": hits}
    for attribute in PROMPT_ATTRIBUTES:
        k = sum(hits[attribute])
        low, high = wilson_interval(k, n)
        out[attribute] = {"share": k / n, "hits": k, "low": low, "high": high}
    out["overall"] = sum(out[a]["share"] for a in PROMPT_ATTRIBUTES) / len(PROMPT_ATTRIBUTES)
    if model is not None:
        score = text_video_alignment(video, captions if captions is not None else [caption(f) for f in prompts], model)
        sem = (score.std() / math.sqrt(n)).item() if n > 1 else math.nan
        out["alignment"] = {"mean": score.mean().item(), "sem": sem, "per_clip": score.tolist()}
    return out


_PROMPT_MEANING = {
    "digit": "the evaluator reads the asked digit (chance 0.1)",
    "direction": "tracked first direction is the asked one of 8 (chance 0.125)",
    "speed": "speed class slow / medium / fast as asked (chance about 1/3)",
    "bounce_walls": "bounces off exactly the walls the caption names",
    "alignment": "mini-CLIP cosine of clip and caption (± standard error)",
}


def format_prompt_report(results: dict, real: dict | None = None, *, title: str = "videos") -> str:
    """A markdown table of :func:`prompt_report`'s ``results``, with ``real`` (the same report
    on the prompts' own clips: the metric's ceiling) beside every number."""

    def cell(report, name):
        if report is None or name not in report:
            return "-"
        if name == "alignment":
            return f"{report[name]['mean']:.3f} ± {report[name]['sem']:.3f}"
        r = report[name]
        return f"{r['share']:.3f} ({r['hits']}/{report['n']}) [{r['low']:.2f}, {r['high']:.2f}]"

    lines = [
        f"Prompt following of {results['n']} clips ({title}) made for {results['n']} held-out descriptive prompts, measured "
        "from the pixels; share (count) [Wilson 95 % interval]. 'real clips' scores the prompts' own clips: the ceiling of "
        "each measure.",
        "",
        f"| measure | {title} | real clips | meaning |",
        "|---|---|---|---|",
    ]
    for name in (*PROMPT_ATTRIBUTES, "alignment"):
        if name in results:
            lines.append(f"| {name} | {cell(results, name)} | {cell(real, name)} | {_PROMPT_MEANING[name]} |")
    if "alignment" not in results:
        lines += ["", f"(no alignment score: {MINICLIP_NAME} is not in the checkpoint folder)"]
    return "\n".join(lines)
