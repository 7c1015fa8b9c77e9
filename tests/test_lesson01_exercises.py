"""Lesson 01 self-checks pass the references and name the planted mistakes."""

import pytest
import torch

from vdmcourse.course import to_unit_range
from vdmcourse.diffusion import sample
from vdmcourse.exercises import expect_mistake, expect_pass
from vdmcourse.exercises import lesson01 as L
from vdmcourse.exercises.harness import NOT_ATTEMPTED
from vdmcourse.exercises.harness import WRONG as PLANTED_WRONG
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


def test_video_bytes():
    expect_pass(L.check_video_bytes, L.video_bytes)
    expect_mistake(L.check_video_bytes, lambda t, c, h, w, dtype: t * c * h * w, L.WRONG_DTYPE_SIZE)
    expect_mistake(L.check_video_bytes, lambda t, c, h, w, dtype: t * c * h * w * 4, L.WRONG_DTYPE_SIZE)
    bits = lambda t, c, h, w, dtype: t * c * h * w * torch.empty((), dtype=dtype).element_size() * 8  # noqa: E731
    expect_mistake(L.check_video_bytes, bits, L.WRONG_DTYPE_SIZE)
    no_channels = lambda t, c, h, w, dtype: t * h * w * torch.empty((), dtype=dtype).element_size()  # noqa: E731
    expect_mistake(L.check_video_bytes, no_channels, L.FORGOT_CHANNELS)


def test_frame_difference():
    expect_pass(L.check_frame_difference, L.frame_difference)
    expect_mistake(L.check_frame_difference, lambda v: (v[:, 1:] - v[:, :1]).abs().mean(dim=(1, 2, 3, 4)), L.FIRST_FRAME_NOT_NEIGHBOUR)
    expect_mistake(L.check_frame_difference, lambda v: (v[:, 1:] - v[:, :-1]).mean(dim=(1, 2, 3, 4)), L.SIGNED_DIFFERENCE)
    expect_mistake(L.check_frame_difference, lambda v: v.diff(dim=3).abs().mean(dim=(1, 2, 3, 4)), L.WRONG_AXIS)
    expect_mistake(L.check_frame_difference, lambda v: (v[:, 1:] - v[:, :-1]).abs().mean(), None)  # one number, not one per clip


def test_generate_frames():
    expect_pass(L.check_generate_frames, L.generate_frames)

    def looped(model, labels, frames, generator, steps=30, guidance_scale=2.0):  # one sampler call per frame: also right
        shape = (len(labels), 1, 1, model.config.image_size, model.config.image_size)
        return torch.cat([sample(model, shape, steps=steps, cond=labels, guidance_scale=guidance_scale, generator=generator,
                                 progress=False) for _ in range(frames)], 1)

    expect_pass(L.check_generate_frames, looped)

    def same_noise(model, labels, frames, generator, steps=30, guidance_scale=2.0):
        one = sample(model, (len(labels), 1, 1, 8, 8), steps=steps, cond=labels, generator=generator, progress=False)
        return one.expand(-1, frames, -1, -1, -1)

    expect_mistake(L.check_generate_frames, same_noise, L.SAME_NOISE_EVERY_FRAME)

    def reseeded(model, labels, frames, generator, steps=30, guidance_scale=2.0):
        shape = (len(labels), 1, 1, 8, 8)
        return torch.cat([sample(model, shape, steps=steps, cond=labels, generator=torch.Generator().manual_seed(0), progress=False) for _ in range(frames)], 1)

    expect_mistake(L.check_generate_frames, reseeded, L.SAME_NOISE_EVERY_FRAME)

    def unlabelled(model, labels, frames, generator, steps=30, guidance_scale=2.0):
        return sample(model, (len(labels), frames, 1, 8, 8), steps=steps, generator=generator, progress=False)

    expect_mistake(L.check_generate_frames, unlabelled, L.LABELS_NOT_PASSED)

    def unseeded(model, labels, frames, generator, steps=30, guidance_scale=2.0):
        return sample(model, (len(labels), frames, 1, 8, 8), steps=steps, cond=labels, progress=False)

    expect_mistake(L.check_generate_frames, unseeded, None)


def test_stubs_are_not_attempted():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for check in (L.check_video_bytes, L.check_frame_difference, L.check_generate_frames):
        assert check(stub).status == NOT_ATTEMPTED


def test_frames_in_the_unit_range_are_named():
    def unit(model, labels, frames, generator, steps=30, guidance_scale=2.0):
        return to_unit_range(L.generate_frames(model, labels, frames, generator, steps, guidance_scale))

    expect_mistake(L.check_generate_frames, unit, L.UNIT_RANGE)


def test_an_ignored_guidance_scale_is_named():
    def unguided(model, labels, frames, generator, steps=30, guidance_scale=2.0):
        shape = (len(labels), frames, 1, model.config.image_size, model.config.image_size)
        return sample(model, shape, steps=steps, cond=labels, generator=generator, progress=False)

    expect_mistake(L.check_generate_frames, unguided, L.GUIDANCE_IGNORED)


# Issue 18: every check fails the stub's neighbours -------------------------------------------


PLANTED = [(L.check_video_bytes, L.video_bytes), (L.check_frame_difference, L.frame_difference),
           (L.check_generate_frames, L.generate_frames)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == PLANTED_WRONG, f"{kind} should fail:\n{result}"
    assert result.message
