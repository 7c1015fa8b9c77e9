"""Self-checks for lesson 12, long videos.

* :func:`check_masked_loss` -- ``masked_loss(model, x0, mask, t, eps)``: the flow loss
  with context frames kept clean at time 0 and left out of the loss.
* :func:`check_window_starts` -- ``window_starts(num_frames, window, context)``: where the
  autoregressive loop's windows begin, so every frame is generated exactly once.
* :func:`check_blend` -- ``blend(predictions, starts, num_frames)``: overlapping window
  predictions averaged into one video.
* :func:`check_chunk_mask` -- ``chunk_mask(frames, chunk)``: the block-causal attention
  mask of a chunk-by-chunk video model.

Each names the real mistakes: context frames left in the loss, context frames noised like
the rest (or kept clean but not told so), an off-by-one in the window stride, blending
without normalising the weights, and a causal mask that leaks the future chunk.
"""

from __future__ import annotations

import torch
from collections import Counter

from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check

__all__ = [
    "CONTEXT_IN_LOSS",
    "CONTEXT_NOISED",
    "CONTEXT_TIME_NOT_ZERO",
    "STRIDE_OFF_BY_ONE",
    "UNNORMALISED_BLEND",
    "FUTURE_CHUNK_LEAK",
    "reference_masked_loss",
    "reference_window_starts",
    "reference_blend",
    "reference_chunk_mask",
    "check_masked_loss",
    "check_window_starts",
    "check_blend",
    "check_chunk_mask",
]

CONTEXT_IN_LOSS = "context frames left in the loss"
CONTEXT_NOISED = "context frames noised like the rest"
CONTEXT_TIME_NOT_ZERO = "context frames kept clean but given the clip's time (the model is never told they are clean)"
STRIDE_OFF_BY_ONE = "an off-by-one in the window stride that repeats or skips a frame"
UNNORMALISED_BLEND = "overlapping windows blended without normalising the weights"
FUTURE_CHUNK_LEAK = "a causal mask that leaks the future chunk"


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- masked conditioning ---------------------------------------------------------------------


def reference_masked_loss(model, x0: torch.Tensor, mask: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Flow loss on ``x0`` ``(B, T, C, H, W)`` with context frames (``mask`` ``(B, T)``, True =
    context) clean at time 0 and out of the loss; ``t`` ``(B,)``, ``eps`` like ``x0``."""
    times = torch.where(mask, torch.zeros_like(mask, dtype=t.dtype), t[:, None])  # (B, T)
    s = times[:, :, None, None, None]
    x_t = (1 - s) * x0 + s * eps  # context frames: exactly x0
    output = model(x_t, times)
    keep = (~mask).to(x0.dtype)[:, :, None, None, None]
    squared = (output - (eps - x0)).square() * keep
    return squared.sum() / (keep.sum() * x0[0, 0].numel())


class _Spy(torch.nn.Module):
    """Predicts a learnable tensor (plus 0 * x); records what it was called with."""

    def __init__(self, shape):
        super().__init__()
        self.prediction = torch.nn.Parameter(torch.randn(shape, generator=_generator(7)))
        self.calls = []

    def forward(self, x, t, cond=None):
        self.calls.append((x.detach().clone(), torch.as_tensor(t).detach().clone()))
        return self.prediction + 0 * x


@self_check(
    "masked-frame loss", reference="vdmcourse.diffusion.context.masked_training_loss",
    more="The likely slips: context frames left in the loss, noised like the rest, or given the clip's "
         "time. Per-frame times times = torch.where(mask, 0, t[:, None]) (B, T); x_t = (1 - tb) x0 + tb "
         "eps with tb = times[:, :, None, None, None]; loss = squared error to eps - x0 averaged over the "
         "frames where mask is False.",
)
def check_masked_loss(masked_loss):
    """``masked_loss(model, x0, mask, t, eps)`` -> a scalar tensor."""
    x0 = torch.rand(3, 6, 1, 4, 4, generator=_generator(1)) * 2 - 1
    eps = torch.randn(x0.shape, generator=_generator(2))
    t = torch.tensor([0.3, 0.6, 0.9])
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [1, 0, 0, 1, 0, 0]], dtype=torch.bool)
    spy = _Spy(x0.shape)
    loss = masked_loss(spy, x0, mask, t, eps)
    expect_shape(loss, (), "masked_loss(...)", hint="Return the mean squared error over the generated frames: one number.")
    if not spy.calls:
        raise Wrong("Your function never called the model.", hint="Call model(x_t, times) with the per-frame times (B, T).")
    x_t, times = spy.calls[0]
    if not torch.allclose(x_t[mask], x0[mask]):
        raise Wrong(
            "The model saw noisy context frames: x_t on the context frames is not the clean x0.",
            mistake=CONTEXT_NOISED,
            hint="Give every frame its own time, (B, T), with 0 on the context frames: x_t = (1 - t) x0 + t eps is then x0 there.",
        )
    if times.shape != mask.shape or not torch.all(times[mask] == 0):
        raise Wrong(
            f"The context frames are clean, but the model was told their time is {times.tolist()} -- "
            "it cannot tell a clean frame from a noisy one at that time.",
            mistake=CONTEXT_TIME_NOT_ZERO,
            hint="Pass per-frame times of shape (B, T): torch.where(mask, 0, t[:, None]).",
        )
    loss.backward()
    grad = spy.prediction.grad
    if grad is None:
        raise Wrong("The loss does not depend on the model's output.", hint="Compare the model's output with eps - x0.")
    frame_grad = grad.abs().flatten(2).sum(-1)  # (B, T)
    if (frame_grad[mask] > 0).any():
        raise Wrong(
            "The loss has a gradient on the context frames' outputs: the model is trained to reproduce frames it was given.",
            mistake=CONTEXT_IN_LOSS,
            hint="Weight the squared error by (~mask) and divide by the number of generated frames' values.",
        )
    if (frame_grad[~mask] == 0).any():
        raise Wrong("Some generated frames get no gradient: the loss ignores frames it should learn from.",
                    hint="Only the context frames (mask True) leave the loss.")
    spy.calls.clear()
    expect_close(loss, reference_masked_loss(spy, x0, mask, t, eps).detach(), "masked_loss(...)",
                 hint="The target of the flow objective is eps - x0; average over the generated frames' values only "
                      "(not over all frames: that shrinks the loss as the context grows).")
    return "Context frames are clean, at time 0, and out of the loss."


# --- the autoregressive loop -----------------------------------------------------------------


def reference_window_starts(num_frames: int, window: int, context: int) -> list[int]:
    """First frame of each window: the first window generates ``window`` frames, each later
    one is given its first ``context`` frames and generates ``window - context``."""
    starts, end = [0], window
    while end < num_frames:
        starts.append(end - context)  # its context: the last `context` frames made so far
        end = starts[-1] + window
    return starts


def _generated(starts: list[int], window: int, context: int) -> Counter:
    made = Counter()
    for i, start in enumerate(starts):
        made.update(range(start if i == 0 else start + context, start + window))
    return made


@self_check(
    "autoregressive window starts", reference="vdmcourse.pipelines.autoregressive_plan",
    more="The likely slip is the stride: after the first window each one adds window - context new frames,"
         " so starts are 0, window - context, 2 * (window - context), ... until a window reaches "
         "num_frames -- no frame repeated or skipped.",
)
def check_window_starts(window_starts):
    """``window_starts(num_frames, window, context)`` -> list of int start frames."""
    for num_frames, window, context in [(28, 10, 2), (50, 10, 5), (13, 4, 1), (10, 10, 3), (37, 8, 3)]:
        starts = window_starts(num_frames, window, context)
        if not isinstance(starts, (list, tuple)) or not all(isinstance(s, int) for s in starts):
            raise Wrong(f"window_starts({num_frames}, {window}, {context}) should be a list of ints; got {starts!r}.")
        made = _generated(list(starts), window, context)
        repeated = sorted(f for f, n in made.items() if n > 1 and f < num_frames)
        skipped = [f for f in range(num_frames) if made[f] == 0]
        if repeated or skipped:
            what = f"frame {repeated[0]} is generated twice" if repeated else f"frame {skipped[0]} is never generated"
            raise Wrong(
                f"With num_frames={num_frames}, window={window}, context={context}: starts {list(starts)} -- {what}.",
                mistake=STRIDE_OFF_BY_ONE,
                hint="Each window after the first makes window - context new frames, so consecutive starts are "
                     "exactly window - context apart.",
            )
        if list(starts) != reference_window_starts(num_frames, window, context):
            raise Wrong(
                f"window_starts({num_frames}, {window}, {context}) = {list(starts)}: every frame is made once, but "
                f"there are too many windows (expected {len(reference_window_starts(num_frames, window, context))}).",
                hint="Stop as soon as the windows reach num_frames.",
            )
    return "Every frame is generated exactly once, each window given the last frames before it."


# --- sliding windows -------------------------------------------------------------------------


def reference_blend(predictions: list[torch.Tensor], starts: list[int], num_frames: int) -> torch.Tensor:
    """Average the windows' predictions ``(B, W, ...)`` placed at ``starts`` into ``(B, N, ...)``."""
    first = predictions[0]
    total = first.new_zeros((first.shape[0], num_frames, *first.shape[2:]))
    weight = first.new_zeros(num_frames)
    for prediction, start in zip(predictions, starts):
        total[:, start : start + prediction.shape[1]] += prediction
        weight[start : start + prediction.shape[1]] += 1
    return total / weight.reshape(1, -1, *([1] * (first.ndim - 2)))


@self_check(
    "blending overlapping windows", reference="vdmcourse.pipelines.LongVideoPipeline (strategy='sliding')",
    more="The likely slip is blending without normalising. Keep two tensors of (B, N, C, H, W): a running "
         "total (add each window's prediction at its start) and a per-frame count; return total / count.",
)
def check_blend(blend):
    """``blend(predictions, starts, num_frames)`` -> ``(B, N, C, H, W)``."""
    starts, window, num_frames = [0, 3, 6, 8], 6, 14
    ones = [torch.ones(2, window, 1, 3, 3) for _ in starts]
    out = blend(ones, starts, num_frames)
    expect_shape(out, (2, num_frames, 1, 3, 3), "blend(...) of 4 windows of 6 frames over 14 frames")
    if out.max() > 1 + 1e-6:
        raise Wrong(
            f"Windows that all predict 1 blend to values up to {out.max().item():.0f}: frames in several windows are summed, not averaged.",
            mistake=UNNORMALISED_BLEND,
            hint="Keep a per-frame count of the windows covering it (their weights) and divide by it.",
        )
    predictions = [torch.randn(2, window, 1, 3, 3, generator=_generator(i)) for i in range(len(starts))]
    out = blend(predictions, starts, num_frames)
    expected = reference_blend(predictions, starts, num_frames)
    if torch.allclose(out[:, 3:6], predictions[1][:, :3]) or torch.allclose(out[:, 3:6], predictions[0][:, 3:6]):
        raise Wrong("Where two windows overlap, the output is one window's prediction: the later window overwrites the earlier.",
                    hint="Add every window's prediction into a running total and divide by the per-frame count.")
    expect_close(out, expected, "blend(...)", hint="Each frame is the mean of the predictions of the windows covering it.")
    return "Overlapping predictions are averaged with weights that sum to one."


# --- a causal chunk mask ---------------------------------------------------------------------


def reference_chunk_mask(frames: int, chunk: int) -> torch.Tensor:
    """``(T, T)`` bool, True where query frame i may attend to key frame j: j's chunk is
    not later than i's (frames of one chunk see each other; earlier chunks are visible)."""
    index = torch.arange(frames) // chunk  # each frame's chunk
    return index[None, :] <= index[:, None]


@self_check(
    "block-causal chunk mask", reference="vdmcourse.nn.attention.causal_mask (per frame)",
    more="The likely slips are a frame-causal mask (tril: frames of one chunk must see each other) and a "
         "leak into the next chunk. Compare chunk indices: c = torch.arange(frames) // chunk; return "
         "c[None, :] <= c[:, None] (key chunk <= query chunk).",
)
def check_chunk_mask(chunk_mask):
    """``chunk_mask(frames, chunk)`` -> ``(T, T)`` bool, True = may attend."""
    for frames, chunk in [(12, 4), (10, 5), (9, 3), (7, 3)]:
        mask = chunk_mask(frames, chunk)
        expect_shape(mask, (frames, frames), f"chunk_mask({frames}, {chunk})")
        mask = mask.bool()
        expected = reference_chunk_mask(frames, chunk)
        leak = mask & ~expected
        if leak.any():
            i, j = leak.nonzero()[0].tolist()
            raise Wrong(
                f"chunk_mask({frames}, {chunk}): frame {i} (chunk {i // chunk}) may attend to frame {j} (chunk {j // chunk}), "
                "a chunk that is generated later.",
                mistake=FUTURE_CHUNK_LEAK,
                hint="Compare chunk indices (frame // chunk), not frame indices shifted by one chunk: key chunk <= query chunk.",
            )
        if not torch.equal(mask, expected):
            i, j = (expected & ~mask).nonzero()[0].tolist()
            raise Wrong(
                f"chunk_mask({frames}, {chunk}): frame {i} cannot attend to frame {j}, which is in its own or an earlier chunk.",
                hint="Frames of one chunk are denoised together and see each other; a frame-causal mask (tril) hides too much.",
            )
    return "Each chunk sees itself and the past, never a later chunk."
