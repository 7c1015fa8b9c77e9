"""Lesson 12 self-checks: the references pass; each planted bug fails, naming its mistake."""

import torch

from vdmcourse.diffusion.context import masked_training_loss
from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson12 as l12
from vdmcourse.nn.attention import causal_mask
from vdmcourse.pipelines import autoregressive_plan


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted():
    for check in (l12.check_masked_loss, l12.check_window_starts, l12.check_blend, l12.check_chunk_mask):
        assert check(stub).status == NOT_ATTEMPTED


# masked loss ---------------------------------------------------------------------------------


def flow_loss(model, x0, mask, t, eps, *, times_for_model, noise_context, keep_context):
    times = torch.where(mask, torch.zeros_like(t[:, None]), t[:, None])
    s = (times if not noise_context else t[:, None].expand_as(times))[:, :, None, None, None]
    x_t = (1 - s) * x0 + s * eps
    output = model(x_t, times if times_for_model == "frame" else t)
    keep = torch.ones_like(times) if keep_context else (~mask).float()
    keep = keep[:, :, None, None, None]
    return ((output - (eps - x0)).square() * keep).sum() / (keep.sum() * x0[0, 0].numel())


def test_masked_loss_reference_passes():
    expect_pass(l12.check_masked_loss, l12.reference_masked_loss)


def test_the_package_loss_agrees_with_the_reference():
    x0 = torch.rand(2, 5, 1, 4, 4) * 2 - 1
    mask = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    model = lambda x, t, cond=None: x * 0.5 + t[:, :, None, None, None]  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    t = torch.rand(2, generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    package = masked_training_loss(model, x0, mask, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(package, l12.reference_masked_loss(model, x0, mask, t, eps))


def test_context_frames_left_in_the_loss_are_named():
    answer = lambda *a: flow_loss(*a, times_for_model="frame", noise_context=False, keep_context=True)  # noqa: E731
    result = expect_mistake(l12.check_masked_loss, answer, l12.CONTEXT_IN_LOSS)
    assert "gradient on the context frames" in result.message


def test_context_frames_noised_like_the_rest_are_named():
    answer = lambda *a: flow_loss(*a, times_for_model="frame", noise_context=True, keep_context=False)  # noqa: E731
    result = expect_mistake(l12.check_masked_loss, answer, l12.CONTEXT_NOISED)
    assert "noisy context frames" in result.message


def test_clean_context_at_the_clips_time_is_named():
    answer = lambda *a: flow_loss(*a, times_for_model="clip", noise_context=False, keep_context=False)  # noqa: E731
    result = expect_mistake(l12.check_masked_loss, answer, l12.CONTEXT_TIME_NOT_ZERO)
    assert "cannot tell a clean frame" in result.message


def test_a_loss_averaged_over_all_frames_fails_without_a_named_mistake():
    def over_all_frames(model, x0, mask, t, eps):
        keep_count = x0.numel()
        loss = l12.reference_masked_loss(model, x0, mask, t, eps)
        return loss * ((~mask).sum() * x0[0, 0].numel()) / keep_count

    expect_mistake(l12.check_masked_loss, over_all_frames, None)


# window starts -------------------------------------------------------------------------------


def test_window_starts_reference_and_the_package_plan_pass():
    expect_pass(l12.check_window_starts, l12.reference_window_starts)
    expect_pass(l12.check_window_starts, lambda n, w, k: [p.frames[0] for p in autoregressive_plan(n, w, k)])


def test_stride_one_too_long_is_named_as_skipping():
    def too_long(num_frames, window, context):
        starts = [0]
        while starts[-1] + window < num_frames:
            starts.append(starts[-1] + window - context + 1)
        return starts

    result = expect_mistake(l12.check_window_starts, too_long, l12.STRIDE_OFF_BY_ONE)
    assert "never generated" in result.message


def test_stride_one_too_short_is_named_as_repeating():
    def too_short(num_frames, window, context):
        starts = [0]
        while starts[-1] + window < num_frames:
            starts.append(starts[-1] + window - context - 1)
        return starts

    result = expect_mistake(l12.check_window_starts, too_short, l12.STRIDE_OFF_BY_ONE)
    assert "generated twice" in result.message


def test_an_extra_window_fails_without_a_named_mistake():
    expect_mistake(l12.check_window_starts, lambda n, w, k: l12.reference_window_starts(n, w, k) + [n], None)


# blending ------------------------------------------------------------------------------------


def test_blend_reference_passes():
    expect_pass(l12.check_blend, l12.reference_blend)


def test_summing_overlaps_is_named():
    def summed(predictions, starts, num_frames):
        out = predictions[0].new_zeros((predictions[0].shape[0], num_frames, *predictions[0].shape[2:]))
        for p, s in zip(predictions, starts):
            out[:, s : s + p.shape[1]] += p
        return out

    result = expect_mistake(l12.check_blend, summed, l12.UNNORMALISED_BLEND)
    assert "summed, not averaged" in result.message


def test_overwriting_overlaps_fails_with_its_own_message():
    def overwritten(predictions, starts, num_frames):
        out = predictions[0].new_zeros((predictions[0].shape[0], num_frames, *predictions[0].shape[2:]))
        for p, s in zip(predictions, starts):
            out[:, s : s + p.shape[1]] = p
        return out

    result = expect_mistake(l12.check_blend, overwritten, None)
    assert "overwrites" in result.message


# chunk mask ----------------------------------------------------------------------------------


def test_chunk_mask_reference_passes():
    expect_pass(l12.check_chunk_mask, l12.reference_chunk_mask)


def test_a_mask_that_sees_the_next_chunk_is_named():
    def leaky(frames, chunk):
        index = torch.arange(frames) // chunk
        return index[None, :] <= index[:, None] + 1  # one chunk too far

    result = expect_mistake(l12.check_chunk_mask, leaky, l12.FUTURE_CHUNK_LEAK)
    assert "generated later" in result.message


def test_a_frame_mask_shifted_by_one_is_named_as_a_leak():
    # frame i sees frame i + 1: at each chunk's last frame that is the next chunk
    expect_mistake(l12.check_chunk_mask, lambda frames, chunk: torch.ones(frames, frames).tril(1).bool(), l12.FUTURE_CHUNK_LEAK)


def test_a_frame_causal_mask_fails_without_a_named_mistake():
    result = expect_mistake(l12.check_chunk_mask, lambda frames, chunk: causal_mask(frames), None)
    assert "own or an earlier chunk" in result.message
