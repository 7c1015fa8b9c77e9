"""Self-checks for lesson 13, training data and limitations.

* :func:`check_motion_score` -- ``motion(video)``: a per-clip motion score ``(N,)`` that is
  high for moving clips and low for static ones, *also* when the static ones carry pixel noise.
* :func:`check_split_filter` -- ``filter_splits(train_scores, test_scores, keep)``: keep masks
  for both splits from one threshold fitted on the training split only.
* :func:`check_find_duplicates` -- ``duplicates(images, threshold)``: the pairs ``(i, j)``,
  ``i < j``, of near-identical images, found even when a copy is shifted by one pixel.

Each names the real mistake: a motion score that counts static noise as motion (the mean
absolute frame difference), a filter threshold computed on the test set, and a duplicate
finder fooled by a one-pixel shift (a plain pixel comparison).
"""

from __future__ import annotations

import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.data.curation import StaticClipFilter, find_duplicates, motion_score, shift_tolerant_distance
from vdmcourse.exercises.harness import Wrong, expect_shape, self_check

__all__ = [
    "NOISE_AS_MOTION",
    "THRESHOLD_ON_TEST",
    "FOOLED_BY_SHIFT",
    "reference_motion",
    "reference_filter_splits",
    "reference_duplicates",
    "check_motion_score",
    "check_split_filter",
    "check_find_duplicates",
]

NOISE_AS_MOTION = "a motion score that counts static noise as motion"
THRESHOLD_ON_TEST = "a filter threshold computed on the test set"
FOOLED_BY_SHIFT = "a duplicate finder fooled by a one-pixel shift"


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_motion(video: torch.Tensor) -> torch.Tensor:
    """Motion score ``(N,)`` of ``video`` ``(N, T, 1, H, W)`` in [0, 1]: :func:`~vdmcourse.data.curation.motion_score`."""
    return motion_score(video)


def reference_filter_splits(train_scores: torch.Tensor, test_scores: torch.Tensor, keep: float):
    """Keep masks ``(train (N,), test (M,))`` from one threshold fitted on ``train_scores``."""
    curate = StaticClipFilter.fit(train_scores, keep)
    return curate(train_scores), curate(test_scores)


def reference_duplicates(images: torch.Tensor, threshold: float) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, whose RMS distance after the best shift of up to 1 px is below ``threshold``."""
    return find_duplicates(images, threshold=threshold, max_shift=1)


# --- motion score ------------------------------------------------------------------------------


def _motion_clips():
    cpu = MovingMNISTConfig.cpu(split="test", frames=6)
    moving = generate_clips(12, cpu, generator=_generator(1)).video
    static = generate_clips(12, MovingMNISTConfig.cpu(split="test", frames=6, speed=0.0), generator=_generator(2)).video
    noisy = (static + 0.1 * torch.randn(static.shape, generator=_generator(3))).clamp(0, 1)
    return moving, static, noisy


@self_check(
    "motion score",
    reference="vdmcourse.data.curation.motion_score",
    more='The likely slip is the mean absolute frame difference, which pixel noise raises as much as motion '
         'does. Block matching instead: for each step t and every shift (dy, dx) with |dy|, |dx| <= 4, err = '
         '((torch.roll(frame_t, (dy, dx), dims=(-2, -1)) - frame_t1) ** 2).mean((-3, -2, -1)); keep the shift '
         'of smallest err per clip, its length (dy ** 2 + dx ** 2) ** 0.5, and average over t -> (N,).',
)
def check_motion_score(motion):
    """``motion(video)`` -> ``(N,)``, larger for clips whose content moves."""
    moving, static, noisy = _motion_clips()
    scores = [motion(video) for video in (moving, static, noisy)]
    for value in scores:
        expect_shape(value, (12,), "motion(video) for 12 clips", hint="One number per clip: reduce over time and pixels.")
    moving_score, static_score, noisy_score = (value.float() for value in scores)
    if not moving_score.min() > static_score.max():
        raise Wrong(
            "Some frozen clip scores as high as a moving one: the score does not separate motion from stillness.",
            hint="Compare consecutive frames: how far did the content move from frame t to t + 1?",
        )
    if not noisy_score.max() < moving_score.min():
        raise Wrong(
            "A frozen clip with a little pixel noise (std 0.1) scores as moving as a real moving digit: "
            f"frozen + noise {noisy_score.mean().item():.3g} on average, moving {moving_score.mean().item():.3g}.",
            mistake=NOISE_AS_MOTION,
            hint="Noise changes every pixel a little; motion moves the ink. Ask which shift best aligns frame t with "
                 "t + 1 (block matching): noise favours no shift at all.",
            more="For each step, shift frame t by every (dy, dx) with |dy|, |dx| <= 4, keep the shift with the smallest "
                 "squared error to frame t + 1, and average its length over the steps.",
        )
    return "Moving > frozen, and pixel noise on a frozen clip does not read as motion."


# --- filter on the training split ------------------------------------------------------------------


def _split_scores():
    # The test split here happens to move less than the training split: a threshold fitted on it differs.
    train = torch.rand(200, generator=_generator(4)) * 3.0
    test = torch.rand(100, generator=_generator(5)) * 2.0
    return train, test


@self_check(
    "static-clip filter",
    reference="vdmcourse.data.curation.StaticClipFilter",
    more='The likely slips are a threshold taken from the test scores (or from both splits pooled), a quantile '
         'that keeps the wrong share, or float masks. Sort train_scores alone, descending; the threshold is '
         'the value at index math.ceil(keep * len(train_scores)) - 1; return (train_scores >= threshold, '
         'test_scores >= threshold).',
)
def check_split_filter(filter_splits):
    """``filter_splits(train_scores, test_scores, keep)`` -> ``(keep_train, keep_test)`` boolean masks."""
    train, test = _split_scores()
    keep = 0.6
    out = filter_splits(train.clone(), test.clone(), keep)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Wrong("Return two masks: (keep_train, keep_test).", hint="One boolean tensor per split.")
    keep_train, keep_test = out
    expect_shape(keep_train, (200,), "keep_train")
    expect_shape(keep_test, (100,), "keep_test")
    if keep_train.dtype != torch.bool or keep_test.dtype != torch.bool:
        raise Wrong("The masks should be boolean tensors (True = keep the clip).", hint="scores >= threshold gives one.")
    kept = keep_train.float().mean().item()
    reference_train, reference_test = reference_filter_splits(train, test, keep)
    leaked_threshold = test.sort(descending=True).values[round(keep * 100) - 1]
    if torch.equal(keep_test, test >= leaked_threshold) and not torch.equal(keep_test, reference_test):
        raise Wrong(
            f"The test split kept exactly {keep:.0%} of its clips: the threshold was chosen by looking at the test scores.",
            mistake=THRESHOLD_ON_TEST,
            hint="Fit the threshold on the training scores only, then apply that same number to the test split.",
            more="threshold = train_scores.sort(descending=True).values[ceil(keep * N) - 1]; mask = scores >= threshold.",
        )
    if abs(kept - keep) > 1 / 200 + 1e-9:
        raise Wrong(f"The filter keeps {kept:.0%} of the training clips; it should keep {keep:.0%}.",
                    hint="The threshold is the score of the ceil(keep * N)-th most moving training clip.")
    if not (torch.equal(keep_train, reference_train) and torch.equal(keep_test, reference_test)):
        raise Wrong("The masks keep the right share of the training clips but not the most moving ones, "
                    "or the test split does not use the same threshold.",
                    hint="Keep a clip when its score is at least the threshold, on both splits.")
    return f"One threshold from the training split: it keeps {keep:.0%} there and {keep_test.float().mean().item():.0%} of the test split."


# --- duplicates ----------------------------------------------------------------------------------


def _duplicate_set():
    digits = generate_clips(40, MovingMNISTConfig.cpu(split="test"), generator=_generator(6)).digits[:, 0]
    far = shift_tolerant_distance(digits, digits, max_shift=1).fill_diagonal_(1.0).min(1).values > 0.1
    unique = digits[far][:6]  # (6, 16, 16) digits with no near-copy among them
    copies = torch.roll(unique[:3], shifts=(0, 1), dims=(-2, -1))  # three copies moved one pixel right
    exact = unique[3:4].clone()
    items = torch.cat([unique, copies, exact])  # 10 images
    expected = [(0, 6), (1, 7), (2, 8), (3, 9)]
    return items, expected


@self_check(
    "duplicate finder",
    reference="vdmcourse.data.curation.find_duplicates",
    more='The likely slips are a pixel comparison without shifts (a 1-px move hides a copy), pairing an image '
         'with itself, or listing (j, i) as well. For i < j: the distance is the minimum over (dy, dx) in {-1, '
         '0, 1} x {-1, 0, 1} of ((torch.roll(images[i], (dy, dx), dims=(-2, -1)) - images[j]) ** '
         '2).mean().sqrt(); keep the pair when it is below threshold.',
)
def check_find_duplicates(duplicates):
    """``duplicates(images, threshold)`` -> list of pairs ``(i, j)``, ``i < j``."""
    items, expected = _duplicate_set()
    found = duplicates(items.clone(), 0.05)
    try:
        pairs = sorted((int(i), int(j)) for i, j in found)
    except (TypeError, ValueError):
        raise Wrong("Return a list of (i, j) index pairs.", hint="e.g. [(0, 6), (3, 9)]") from None
    if any(i >= j for i, j in pairs):
        raise Wrong("List each pair once, with i < j (and never an image paired with itself).")
    missing = [pair for pair in expected if pair not in pairs]
    extra = [pair for pair in pairs if pair not in expected]
    if extra:
        raise Wrong(f"{extra} are reported as duplicates but show different digits.",
                    hint="The threshold is an RMS distance in intensity units; different digits are far apart.")
    if (3, 9) in missing:
        raise Wrong("An exact copy (images 3 and 9) was not found.", hint="Compare every pair: RMS of the pixel difference.")
    if missing:
        raise Wrong(
            f"The exact copy is found, but {missing} -- the same digit moved one pixel -- are not.",
            mistake=FOOLED_BY_SHIFT,
            hint="Compare each pair under every shift of up to one pixel and keep the smallest distance.",
            more="Pad one image by 1 px, cut the 9 windows of the original size, and take the minimum RMS distance.",
        )
    return "Exact and one-pixel-shifted copies found; distinct digits left alone."
