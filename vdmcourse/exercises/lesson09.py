"""Self-checks for lesson 09, captions, recaptioning and multimodal control.

* :func:`check_direction` -- ``direction_of(velocity)``: the compass direction (index into
  :data:`~vdmcourse.data.captions.DIRECTIONS`) of ``(N, 2)`` (row, col) velocities.
* :func:`check_cross_attention` -- ``cross_attention(x, context, mask, wq, wk, wv)``: one head
  of cross-attention from video tokens to text tokens, with the padding mask.
* :func:`check_guided` -- ``guided(model, x, t, ids, ids_mask, scale)``: classifier-free
  guidance with the null caption.
* :func:`check_drop_conditions` -- ``drop(batch, probabilities, generator)``: per-clip,
  per-modality conditioning dropout.

Each names the real mistakes: y's sign flipped (image rows grow downwards), queries taken
from the text (roles swapped), the padding mask not applied or inverted, the null caption
not used for the unconditional branch, and conditioning dropped for the whole batch (or for
every modality at once) instead of per clip.
"""

from __future__ import annotations

import math

import torch

from vdmcourse.data.captions import DIRECTIONS, CaptionTokenizer
from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check

__all__ = [
    "Y_FLIPPED",
    "ROLES_SWAPPED",
    "MASK_NOT_APPLIED",
    "MASK_INVERTED",
    "NULL_CAPTION_NOT_USED",
    "WHOLE_BATCH_DROPPED",
    "MODALITIES_TIED",
    "GENERATOR_IGNORED",
    "reference_direction",
    "reference_cross_attention",
    "reference_guided",
    "reference_drop_conditions",
    "check_direction",
    "check_cross_attention",
    "check_guided",
    "check_drop_conditions",
]

Y_FLIPPED = "direction computed with the sign of y flipped (image rows grow downwards)"
ROLES_SWAPPED = "cross-attention with queries taken from the text (roles swapped)"
MASK_NOT_APPLIED = "the text padding mask not applied"
MASK_INVERTED = "the text padding mask inverted"
NULL_CAPTION_NOT_USED = "the null caption not used for the unconditional branch"
WHOLE_BATCH_DROPPED = "conditioning dropped for the whole batch instead of per clip"
MODALITIES_TIED = "all modalities dropped together instead of independently"
GENERATOR_IGNORED = "the generator it is given not used for the draws"


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- directions from positions ---------------------------------------------------------------


def reference_direction(velocity: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` (row, col) px/frame -> ``(N,)`` long index into DIRECTIONS (0 = right, 2 = down)."""
    angle = torch.atan2(velocity[:, 0], velocity[:, 1])  # rows grow downwards: +row is "down", +90 degrees
    return torch.round(angle / (math.pi / 4)).long() % 8


@self_check(
    "compass direction of a velocity",
    reference="vdmcourse.data.captions.direction_index",
    more='The likely slips are a negated row (rows grow downwards, so +row is "down", index 2), the arguments '
         'of atan2 swapped (it takes (y, x) = (row, col)), or truncating with .long() instead of rounding. For '
         'velocity (2, 0), torch.atan2(v[:, 0], v[:, 1]) / (math.pi / 4) must print 2.0; then '
         'torch.round(...).long() % 8, so that negative angles wrap to 5, 6, 7.',
)
def check_direction(direction_of):
    """``direction_of(velocity)`` with ``velocity`` ``(N, 2)`` as (row, col) -> ``(N,)`` long."""
    angles = torch.arange(8) * (math.pi / 4) + 0.1  # one velocity per compass direction, a little off-axis
    velocity = torch.stack([torch.sin(angles), torch.cos(angles)], dim=1) * 2.0  # (8, 2) as (row, col)
    got = direction_of(velocity.clone())
    expect_shape(got, (8,), "direction_of(velocity) for 8 velocities", hint="One index into DIRECTIONS per velocity.")
    got = torch.as_tensor(got).long()
    expected = reference_direction(velocity)
    if torch.equal(got, (-expected) % 8):
        raise Wrong(
            f"A digit moving down the screen (row increasing) came out as {DIRECTIONS[int(got[2]) % 8]!r}.",
            mistake=Y_FLIPPED,
            hint="Image rows grow downwards: a positive row velocity is 'down'. Use atan2(row, col) as it is, without negating the row.",
        )
    if not torch.equal(got % 8, expected):
        i = int((got % 8 != expected).nonzero()[0])
        raise Wrong(
            f"velocity (row, col) = {tuple(round(v, 2) for v in velocity[i].tolist())} should be {DIRECTIONS[expected[i]]!r} "
            f"(index {int(expected[i])}); got index {int(got[i])}.",
            hint="angle = atan2(row, col), then round(angle / 45 degrees) modulo 8.",
        )
    return "Eight directions, with rows growing downwards."


# --- cross-attention -------------------------------------------------------------------------


def reference_cross_attention(x, context, mask, wq, wk, wv) -> torch.Tensor:
    """One head: queries ``x @ wq`` from the video ``(B, N, D)``, keys and values from the text
    ``(B, L, D)``; ``mask`` bool ``(B, L)`` True on real tokens. Returns ``(B, N, D)``."""
    q, k, v = x @ wq, context @ wk, context @ wv
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, N, L)
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return scores.softmax(-1) @ v


@self_check(
    "cross-attention from video to text",
    reference="vdmcourse.nn.cross_attention.CrossAttention",
    more='The likely slips are q taken from the context instead of x, the mask applied after the softmax or '
         'with the wrong polarity (mask is True on real tokens), or no 1 / sqrt(d). Print shapes: scores = q @ '
         'k.transpose(1, 2) is (B, N, L); mask[:, None, :] broadcasts over the N queries; masked_fill(~mask[:, '
         'None, :], float("-inf")) goes before .softmax(-1).',
)
def check_cross_attention(cross_attention):
    """``cross_attention(x, context, mask, wq, wk, wv)`` -> ``(B, N, D)``."""
    g = _generator(3)
    b, n, length, d = 2, 6, 4, 8
    x, context = torch.randn(b, n, d, generator=g), torch.randn(b, length, d, generator=g)
    wq, wk, wv = (torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(3))
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    out = cross_attention(x, context, mask.clone(), wq, wk, wv)
    if isinstance(out, torch.Tensor) and out.shape == (b, length, d):
        raise Wrong(
            f"The output has one row per text token, {tuple(out.shape)}, not one per video token {(b, n, d)}.",
            mistake=ROLES_SWAPPED,
            hint="Queries come from the video (x @ wq): every video position asks the caption what to draw. "
                 "Keys and values come from the text.",
        )
    expect_shape(out, (b, n, d), "cross_attention(x, context, mask, ...)")
    padding_changed, words_changed = context.clone(), context.clone()
    padding_changed[~mask] = torch.randn(int((~mask).sum()), d, generator=g) * 10
    words_changed[mask] = torch.randn(int(mask.sum()), d, generator=g) * 10
    hears_padding = not torch.allclose(out, cross_attention(x, padding_changed, mask.clone(), wq, wk, wv), atol=1e-5)
    hears_words = not torch.allclose(out, cross_attention(x, words_changed, mask.clone(), wq, wk, wv), atol=1e-5)
    if hears_padding and not hears_words:
        raise Wrong(
            "Changing the real words of the caption changes nothing, but changing its padding does: the output reads only the padding.",
            mistake=MASK_INVERTED,
            hint="mask is True on real tokens: keep those keys and hide the others (~mask).",
        )
    if hears_padding:
        raise Wrong(
            "Changing only the padded tokens of the caption changed the output: padding is attended to.",
            mistake=MASK_NOT_APPLIED,
            hint="Before the softmax, set the scores of padded keys to -inf: scores.masked_fill(~mask[:, None, :], -inf).",
        )
    if not hears_words:
        raise Wrong("The output does not depend on the caption at all.",
                    hint="Keys and values come from the context (the text tokens): k = context @ wk, v = context @ wv.")
    expect_close(out, reference_cross_attention(x, context, mask, wq, wk, wv), "cross_attention(...)",
                 hint="softmax(q k^T / sqrt(d)) v with q from x and k, v from the context.")
    return "Video tokens ask, text tokens answer, padding is never heard."


# --- guidance with the null caption ----------------------------------------------------------


def _null_caption_like(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    null = torch.zeros_like(ids)
    null[:, 0] = CaptionTokenizer.start_id
    return null, null != CaptionTokenizer.pad_id


def reference_guided(model, x, t, ids, ids_mask, scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)``: ``cond`` with the caption, ``uncond`` with the null
    caption (``<start>`` and padding, what training put in place of a dropped caption)."""
    null_ids, null_mask = _null_caption_like(ids)
    cond = model(x, t, ids, ids_mask)
    uncond = model(x, t, null_ids, null_mask)
    return uncond + scale * (cond - uncond)


class _CaptionSpy:
    """A model whose output depends on the caption; it records the captions it is given."""

    def __init__(self):
        self.seen = []

    def __call__(self, x, t, ids, ids_mask):
        self.seen.append((ids.clone(), ids_mask.clone()))
        code = (ids * ids_mask).float().sum(1) * 0.01 + ids_mask.float().sum(1) * 0.1  # (B,)
        return x * 0.5 + code[:, None, None, None, None] + t[:, None, None, None, None]


@self_check(
    "classifier-free guidance with the null caption",
    reference="vdmcourse.pipelines.TextToVideoPipeline",
    more='The likely slip is the unconditional branch: call the model a second time with the null caption '
         'built from ids -- null = torch.zeros_like(ids); null[:, 0] = CaptionTokenizer.start_id; null_mask = '
         'null != CaptionTokenizer.pad_id -- not with ids again and not with all padding. cond = model(x, t, '
         'ids, ids_mask).',
)
def check_guided(guided):
    """``guided(model, x, t, ids, ids_mask, scale)`` -> ``x``'s shape."""
    ids, mask = CaptionTokenizer()(["a 3 moves quickly up", "a 7"])
    x, t = torch.randn(2, 3, 1, 4, 4, generator=_generator(4)), torch.tensor([0.4, 0.7])
    spy = _CaptionSpy()
    out = guided(spy, x, t, ids.clone(), mask.clone(), 3.0)
    expect_shape(out, tuple(x.shape), "guided(model, x, t, ids, ids_mask, 3.0)")
    null_ids, null_mask = _null_caption_like(ids)
    used_null = any(torch.equal(seen_ids, null_ids) and torch.equal(seen_mask, null_mask) for seen_ids, seen_mask in spy.seen)
    if not used_null:
        called = [CaptionTokenizer().decode(seen_ids, seen_mask) for seen_ids, seen_mask in spy.seen]
        raise Wrong(
            f"The model was only called with the captions {called}: the unconditional branch never saw the null caption.",
            mistake=NULL_CAPTION_NOT_USED,
            hint="The unconditional prediction is the model's answer to the null caption -- <start> then padding, the caption "
                 "training put in place of a dropped one. Not the caption itself, and not all padding (nothing to attend to).",
        )
    expect_close(out, reference_guided(_CaptionSpy(), x, t, ids, mask, 3.0), "guided(...)",
                 hint="uncond + scale * (cond - uncond); scale 1 is the conditional model.")
    return "Guidance pushes away from the null caption, the one the model learned as 'no caption'."


# --- dropout per clip and per modality -------------------------------------------------------


def reference_drop_conditions(batch: int, probabilities: dict[str, float], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``{modality: bool (batch,)}``: True where that clip loses that condition, an independent
    draw per clip and per modality (in the dict's order)."""
    return {name: torch.rand(batch, generator=generator) < p for name, p in probabilities.items()}


@self_check(
    "per-clip conditioning dropout",
    reference="vdmcourse.text_conditioning.drop_conditions",
    more='The likely slips are one draw for the whole batch (torch.rand(1) < p), one draw shared by every '
         'modality, or > in place of <. Loop over probabilities.items() and give each name its own '
         "torch.rand(batch, generator=generator) < p, in the dict's order, so every clip and every modality "
         'gets its own number.',
)
def check_drop_conditions(drop):
    """``drop(batch, probabilities, generator)`` -> ``{name: bool (batch,)}``."""
    probabilities = {"caption": 0.5, "image": 0.5, "motion": 0.5}
    draws = [drop(64, dict(probabilities), _generator(seed)) for seed in range(20)]
    for name in probabilities:
        for dropped in draws:
            expect_shape(dropped[name], (64,), f"drop(64, ...)[{name!r}]", hint="One True/False per clip.")
    rows = {name: torch.stack([torch.as_tensor(d[name]).bool() for d in draws]) for name in probabilities}  # (20, 64)
    whole = all(bool(r.all(1).logical_or(~r.any(1)).all()) for r in rows.values())
    if whole:
        raise Wrong(
            "In every batch either all 64 clips lose a condition or none does.",
            mistake=WHOLE_BATCH_DROPPED,
            hint="Draw one random number per clip: torch.rand(batch, generator=generator) < p. A batch mixes conditioned "
                 "and unconditioned clips, so every step trains both.",
        )
    names = list(probabilities)
    if all(torch.equal(rows[names[0]], rows[name]) for name in names[1:]):
        raise Wrong(
            "Every clip loses its caption, image and motion together: the model never learns 'image but no caption'.",
            mistake=MODALITIES_TIED,
            hint="Draw each modality on its own, so that every subset of the conditions is trained.",
        )
    for name, p in probabilities.items():
        rate = rows[name].float().mean().item()
        if abs(rate - p) > 0.08:
            raise Wrong(f"{name!r} was dropped for {rate:.0%} of the clips; asked for {p:.0%}.",
                        hint="A clip loses a condition when its draw is below that condition's probability.")
    again = drop(64, dict(probabilities), _generator(0))
    repeats = all(torch.equal(torch.as_tensor(again[name]).bool(), rows[name][0]) for name in names)
    if not repeats or all(torch.equal(r[0], r[k]) for r in rows.values() for k in range(1, len(draws))):
        raise Wrong(
            "Two generators with the same seed gave different masks." if not repeats
            else "Twenty generators with different seeds gave the same masks.",
            mistake=GENERATOR_IGNORED,
            hint="Draw from the generator you are given: torch.rand(batch, generator=generator). "
                 "A training run must repeat its dropout from its seed.",
        )
    if drop(64, {"caption": 0.0}, _generator(0))["caption"].any() or not drop(64, {"caption": 1.0}, _generator(0))["caption"].all():
        raise Wrong("p = 0 must drop nothing and p = 1 everything.", hint="Compare torch.rand(...) < p.")
    return "Each clip, and each of its conditions, is dropped on its own."
