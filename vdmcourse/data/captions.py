"""Captions from ground truth, and the closed-vocabulary tokenizer that reads them.

Every Moving MNIST clip carries its labels, positions and velocities, so its
caption can be *computed* rather than written by hand -- the same role a
captioner plays for Sora's training videos (Brooks et al. 2024, "recaptioning").

* **short**: ``"a 3"`` (two digits: ``"a 3 and a 7"``), all a label gives;
* **descriptive**: ``"a 3 moves slowly down and to the left and bounces off the
  bottom wall at frame 4"``: the digit, one of 8 compass directions (of the first
  step, frame 0 to 1), a speed class, every bounce (wall and frame) and, for two
  digits, where one starts relative to the other.

Image rows grow **downwards**: a positive row velocity is "down". The direction is
``atan2(row, col)`` rounded to the nearest 45 degrees, index 0 = right, 2 = down
(:data:`DIRECTIONS`). A bounce off a wall at frame ``t`` is a frame where the digit
sits on that wall (position clamped to 0 or ``free_range``) having moved towards it
the frame before (:mod:`vdmcourse.data.moving_mnist`'s rule).

:func:`clip_facts` turns ground truth into :class:`ClipFacts`; :func:`caption`
writes one caption from facts, in one of several paraphrase templates chosen by a
``torch.Generator`` (seeded: same seed, same wording); :class:`CaptionTokenizer`
turns captions into word ids with a padding mask, and refuses a word outside its
closed vocabulary by name -- never a silent "unknown" token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "DIRECTIONS",
    "SPEEDS",
    "SPEED_BOUNDS",
    "WALLS",
    "STYLES",
    "VOCABULARY",
    "ClipFacts",
    "direction_index",
    "speed_class",
    "find_bounces",
    "clip_facts",
    "caption",
    "captions_for",
    "CaptionTokenizer",
]

# Compass directions in image coordinates, by angle atan2(row, col) in steps of 45 degrees.
DIRECTIONS = (
    "right",
    "down and to the right",
    "down",
    "down and to the left",
    "left",
    "up and to the left",
    "up",
    "up and to the right",
)
# A second wording of each direction, for paraphrases.
_DIRECTIONS_ALT = (
    "to the right",
    "towards the bottom right",
    "downwards",
    "towards the bottom left",
    "to the left",
    "towards the top left",
    "upwards",
    "towards the top right",
)
SPEEDS = ("slow", "medium", "fast")
# px/frame: below 5/3 is slow, from 7/3 on fast -- thirds of the (1, 3) px/frame range the captioned data uses.
SPEED_BOUNDS = (5 / 3, 7 / 3)
_SPEED_WORDS = {"slow": ("slowly", "at a slow pace"), "medium": ("steadily", "at a medium pace"), "fast": ("quickly", "at a fast pace")}
WALLS = ("top", "bottom", "left", "right")
STYLES = ("short", "descriptive")
_VERBS = ("moves", "drifts", "travels")
_MAX_FRAMES = 64

# The whole closed vocabulary; <pad> is id 0 and <start> opens every caption.
VOCABULARY = tuple(
    ["<pad>", "<start>", "a", "the", "digit", "and", "of", "at", "to", "towards", "frame", "frames"]
    + [str(i) for i in range(_MAX_FRAMES)]
    + list(_VERBS)
    + ["right", "left", "up", "down", "downwards", "upwards", "bottom", "top", "pace"]
    + ["slowly", "steadily", "quickly", "slow", "medium", "fast"]
    + ["bounces", "off", "hits", "wall", "then", "starts", "above", "below"]
)


@dataclass(frozen=True)
class ClipFacts:
    """What a caption can say about one clip (K digits).

    digits        (K,) digit classes
    directions    (K,) index into :data:`DIRECTIONS` of each digit's first step
    speeds        (K,) speed in px/frame at frame 0
    bounces       ((k, wall, frame), ...) in frame order: digit k hit ``wall`` at ``frame``
    relation      for two digits: "above", "below", "left of" or "right of" (digit 0
                  relative to digit 1 at frame 0, along the axis where they differ most); else None
    """

    digits: tuple[int, ...]
    directions: tuple[int, ...]
    speeds: tuple[float, ...]
    bounces: tuple[tuple[int, str, int], ...] = ()
    relation: str | None = None

    @property
    def speed_classes(self) -> tuple[str, ...]:
        return tuple(speed_class(s) for s in self.speeds)

    def walls(self, k: int = 0) -> frozenset[str]:
        """The walls digit ``k`` bounces off."""
        return frozenset(wall for digit, wall, _ in self.bounces if digit == k)


def direction_index(velocity: torch.Tensor) -> torch.Tensor:
    """Compass direction of ``velocity`` ``(..., 2)`` as (row, col), rows growing
    downwards: the index into :data:`DIRECTIONS` (0 = right, 2 = down), ``(...)`` long."""
    angle = torch.atan2(velocity[..., 0].float(), velocity[..., 1].float())  # row down is +90 degrees
    return torch.round(angle / (math.pi / 4)).long() % 8


def speed_class(speed: float) -> str:
    """``"slow"``, ``"medium"`` or ``"fast"`` for a speed in px/frame (:data:`SPEED_BOUNDS`)."""
    return SPEEDS[sum(speed >= bound for bound in SPEED_BOUNDS)]


def find_bounces(positions: torch.Tensor, velocities: torch.Tensor, free_range: float, eps: float = 1e-4) -> list[tuple[int, str, int]]:
    """Bounces of one clip: ``positions`` and ``velocities`` ``(T, K, 2)`` as in
    :class:`~vdmcourse.data.Clips`. Returns ``[(k, wall, frame), ...]`` sorted by frame:
    digit ``k`` sits on ``wall`` at ``frame`` after moving towards it from ``frame - 1``."""
    found = []
    for frame in range(1, positions.shape[0]):
        for k in range(positions.shape[1]):
            for axis, (low_wall, high_wall) in enumerate((("top", "bottom"), ("left", "right"))):
                p, v = positions[frame, k, axis].item(), velocities[frame - 1, k, axis].item()
                if p <= eps and v < 0:
                    found.append((k, low_wall, frame))
                elif p >= free_range - eps and v > 0:
                    found.append((k, high_wall, frame))
    return found


def _relation(positions: torch.Tensor) -> str:
    """Digit 0 relative to digit 1 at frame 0, from (K=2, 2) positions."""
    d_row, d_col = (positions[0] - positions[1]).tolist()
    if abs(d_row) >= abs(d_col):
        return "above" if d_row < 0 else "below"
    return "left of" if d_col < 0 else "right of"


def clip_facts(labels: torch.Tensor, positions: torch.Tensor, velocities: torch.Tensor, free_range: float) -> list[ClipFacts]:
    """Facts of N clips from their ground truth: ``labels`` ``(N, K)``, ``positions`` and
    ``velocities`` ``(N, T, K, 2)`` (the fields of :class:`~vdmcourse.data.Clips`);
    ``free_range`` = canvas - digit_size."""
    if labels.ndim != 2 or positions.ndim != 4 or positions.shape[-1] != 2 or velocities.shape != positions.shape:
        raise ValueError(
            "clip_facts: labels must be (N, K) and positions, velocities (N, T, K, 2); "
            f"got {tuple(labels.shape)}, {tuple(positions.shape)}, {tuple(velocities.shape)}"
        )
    if positions.shape[1] > _MAX_FRAMES:
        raise ValueError(f"clip_facts: captions name frames up to {_MAX_FRAMES - 1}; got clips of {positions.shape[1]} frames")
    first = velocities[:, 0]  # (N, K, 2): the first step
    directions = direction_index(first)  # (N, K)
    speeds = first.norm(dim=-1)  # (N, K)
    facts = []
    for i in range(labels.shape[0]):
        two = labels.shape[1] == 2
        facts.append(
            ClipFacts(
                digits=tuple(labels[i].tolist()),
                directions=tuple(directions[i].tolist()),
                speeds=tuple(round(s, 4) for s in speeds[i].tolist()),
                bounces=tuple(find_bounces(positions[i], velocities[i], free_range)),
                relation=_relation(positions[i, 0]) if two else None,
            )
        )
    return facts


def _pick(options: tuple[str, ...], generator: torch.Generator | None) -> str:
    if generator is None:
        return options[0]
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def _bounce_clause(bounces, k: int, generator) -> str:
    parts = []
    for digit, wall, frame in bounces:
        if digit == k:
            verb = _pick(("bounces off", "hits"), generator)
            parts.append(f"{verb} the {wall} wall at frame {frame}")
    return "".join(f" and {part}" for part in parts)


def caption(facts: ClipFacts, style: str = "descriptive", *, generator: torch.Generator | None = None) -> str:
    """One caption of ``facts``. ``style``: ``"short"`` or ``"descriptive"``.

    Without ``generator`` the canonical wording (the first template, as in the module
    docstring); with one, a paraphrase drawn from it: the verb, the wording of the
    speed, direction and bounce, and the word order vary, the facts never do.
    """
    if style not in STYLES:
        raise ValueError(f"caption: style must be one of {STYLES}; got {style!r}")
    if style == "short":
        return " and ".join(f"a {d}" for d in facts.digits)
    clauses = []
    for k, digit in enumerate(facts.digits):
        verb = _pick(_VERBS, generator)
        speed = _pick(_SPEED_WORDS[speed_class(facts.speeds[k])], generator)
        direction = _pick((DIRECTIONS[facts.directions[k]], _DIRECTIONS_ALT[facts.directions[k]]), generator)
        subject = _pick((f"a {digit}", f"the digit {digit}"), generator)
        order = _pick(("speed first", "direction first"), generator)
        motion = f"{speed} {direction}" if order == "speed first" else f"{direction} {speed}"
        clauses.append(f"{subject} {verb} {motion}{_bounce_clause(facts.bounces, k, generator)}")
    text = " then ".join(clauses) if len(clauses) == 2 else clauses[0]
    if facts.relation is not None:
        text += f" and the {facts.digits[0]} starts {facts.relation} the {facts.digits[1]}"
    return text


def captions_for(clips, free_range: float, style: str = "descriptive", *, generator: torch.Generator | None = None) -> list[str]:
    """Captions of a batch of clips (anything with ``labels``, ``positions`` and ``velocities``
    as in :class:`~vdmcourse.data.Clips`, or a dict of them)."""
    get = clips.__getitem__ if isinstance(clips, dict) else lambda name: getattr(clips, name)
    facts = clip_facts(get("labels"), get("positions"), get("velocities"), free_range)
    return [caption(f, style, generator=generator) for f in facts]


class CaptionTokenizer:
    """Word-level tokenizer over a closed vocabulary (default :data:`VOCABULARY`).

    ``tokenizer(captions)`` -> ``(ids, mask)``: ``ids`` long ``(B, L)`` with
    ``L = max_length``, each row ``<start>`` followed by the caption's words, then
    ``<pad>`` (id 0); ``mask`` bool ``(B, L)``, True on real tokens (``<start>``
    included, so even the empty -- null -- caption has one token to attend to).
    A word outside the vocabulary, or a caption longer than ``max_length - 1``
    words, is refused with a ``ValueError`` that names it.
    """

    pad_id = 0
    start_id = 1

    def __init__(self, vocabulary: tuple[str, ...] = VOCABULARY, max_length: int = 48):
        if vocabulary[:2] != ("<pad>", "<start>") or len(set(vocabulary)) != len(vocabulary):
            raise ValueError("CaptionTokenizer: the vocabulary must start with '<pad>', '<start>' and have no repeated word")
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"CaptionTokenizer: max_length must be an int >= 2; got {max_length!r}")
        self.vocabulary = tuple(vocabulary)
        self.max_length = max_length
        self.index = {word: i for i, word in enumerate(self.vocabulary)}

    def __len__(self) -> int:
        return len(self.vocabulary)

    def words(self, text: str) -> list[str]:
        """The words of ``text`` (lower case, split on white space), each checked against the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"CaptionTokenizer: a caption must be a str; got {type(text).__name__}")
        words = text.lower().split()
        unknown = [w for w in words if w not in self.index or w in ("<pad>", "<start>")]
        if unknown:
            raise ValueError(
                f"CaptionTokenizer: {unknown[0]!r} (in {text!r}) is not in the vocabulary; captions use only these "
                f"{len(self.vocabulary) - 2} words: {' '.join(self.vocabulary[2:])}"
            )
        if len(words) > self.max_length - 1:
            raise ValueError(f"CaptionTokenizer: {text!r} has {len(words)} words; at most max_length - 1 = {self.max_length - 1} fit")
        return words

    def __call__(self, captions: list[str] | str) -> tuple[torch.Tensor, torch.Tensor]:
        captions = [captions] if isinstance(captions, str) else list(captions)
        ids = torch.full((len(captions), self.max_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(captions):
            tokens = [self.start_id] + [self.index[w] for w in self.words(text)]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids, ids != self.pad_id  # (B, L), (B, L)

    def decode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[str]:
        """Captions back from ``ids`` ``(B, L)`` (``<start>`` and padding dropped)."""
        mask = ids != self.pad_id if mask is None else mask
        return [
            " ".join(self.vocabulary[i] for i, keep in zip(row.tolist(), keep_row.tolist()) if keep and i != self.start_id)
            for row, keep_row in zip(ids, mask)
        ]
