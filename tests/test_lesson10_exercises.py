"""Lesson 10 self-checks: the references and the package pass; each planted bug fails, naming its mistake."""

import pytest
import torch

from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson10 as l10
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers
from vdmcourse.nn.conditioning import MicroConditioning, concat_condition
from vdmcourse.pipelines import VideoToVideoPipeline, frame_guidance, guidance_ramp

CHECKS = [
    (l10.check_concat_condition, l10.reference_concat_condition),
    (l10.check_condition_latent, l10.reference_condition_latent),
    (l10.check_micro_embedding, l10.reference_micro_embedding),
    (l10.check_ramp_guidance, l10.reference_ramp_guidance),
    (l10.check_sdedit_start, l10.reference_sdedit_start),
]
PLANTED = CHECKS  # every check meets the stub's neighbours (tests/test_second_hints.py reads this name)


def stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("check, reference", CHECKS)
def test_references_pass_and_stubs_are_not_attempted(check, reference):
    expect_pass(check, reference)
    assert check(stub).status == NOT_ATTEMPTED


@pytest.mark.parametrize("check, reference", CHECKS)
@pytest.mark.parametrize("kind", PLANTED_KINDS)
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == "wrong", f"{check.__name__} passed the planted answer '{kind}'"


def test_the_package_functions_pass():
    expect_pass(l10.check_concat_condition, concat_condition)
    expect_pass(l10.check_ramp_guidance, lambda c, u, lo, hi: frame_guidance(c, u, guidance_ramp(lo, hi, c.shape[1])))

    def package_start(x0, eps, strength, steps):
        t0, n = VideoToVideoPipeline.start(strength, steps)
        return (1 - t0) * x0 + t0 * eps, torch.linspace(t0, 0, n + 1)

    expect_pass(l10.check_sdedit_start, package_start)


def test_the_reference_micro_embedding_equals_the_package_module():
    torch.manual_seed(0)
    module = MicroConditioning(12, frequency_dim=8)
    torch.nn.init.normal_(module.mlp[2].weight)  # the zero-initialised last layer, made visible
    ids, time_emb = torch.tensor([[5.0, 127.0, 0.02], [3.0, 10.0, 0.3]]), torch.randn(2, 12)
    torch.testing.assert_close(l10.reference_micro_embedding(time_emb, ids, module.mlp, 8), time_emb + module(ids))


def test_a_frame_beside_the_first_noisy_frame_only_is_named():
    def first_only(x, frame):
        frames = torch.zeros(x.shape[0], x.shape[1], *frame.shape[1:])
        frames[:, 0] = frame
        return torch.cat([x, frames], dim=2)

    expect_mistake(l10.check_concat_condition, first_only, l10.FRAME_NOT_REPEATED)


def test_a_frame_added_on_the_time_axis_fails():
    expect_mistake(l10.check_concat_condition, lambda x, frame: torch.cat([x, frame[:, None, :1]], dim=1), None)


def test_noise_after_encoding_is_named():
    expect_mistake(l10.check_condition_latent, lambda image, s, eps, encode: encode(image) + s * eps, l10.NOISE_AFTER_ENCODING)


def test_no_noise_augmentation_fails():
    expect_mistake(l10.check_condition_latent, lambda image, s, eps, encode: encode(image), None)


def test_micro_conditioning_concatenated_is_named():
    def concatenated(time_emb, ids, project, frequency_dim):
        return torch.cat([time_emb, l10.reference_micro_embedding(time_emb, ids, project, frequency_dim) - time_emb], dim=1)

    expect_mistake(l10.check_micro_embedding, concatenated, l10.MICRO_NOT_ADDED)


def test_micro_conditioning_replacing_the_time_embedding_is_named():
    def replaced(time_emb, ids, project, frequency_dim):
        return l10.reference_micro_embedding(time_emb, ids, project, frequency_dim) - time_emb

    expect_mistake(l10.check_micro_embedding, replaced, l10.MICRO_NOT_ADDED)


def test_raw_noise_level_embedding_fails():
    from vdmcourse.nn.embeddings import sinusoidal_embedding

    def unscaled(time_emb, ids, project, frequency_dim):
        parts = [sinusoidal_embedding(ids[:, i], frequency_dim) for i in range(3)]
        return time_emb + project(torch.cat(parts, dim=1))

    expect_mistake(l10.check_micro_embedding, unscaled, None)


def test_a_reversed_ramp_is_named():
    def reversed_ramp(cond, uncond, lo, hi):
        return l10.reference_ramp_guidance(cond, uncond, hi, lo)

    expect_mistake(l10.check_ramp_guidance, reversed_ramp, l10.RAMP_REVERSED)


def test_a_constant_scale_fails():
    expect_mistake(l10.check_ramp_guidance, lambda c, u, lo, hi: u + (lo + hi) / 2 * (c - u), None)


def test_sdedit_from_the_wrong_end_is_named():
    def wrong_end(x0, eps, strength, steps):
        t0 = 1 - strength
        return (1 - t0) * x0 + t0 * eps, torch.linspace(t0, 0, max(1, round(strength * steps)) + 1)

    expect_mistake(l10.check_sdedit_start, wrong_end, l10.SDEDIT_WRONG_END)


def test_sdedit_running_every_step_fails():
    def every_step(x0, eps, strength, steps):
        return (1 - strength) * x0 + strength * eps, torch.linspace(strength, 0, steps + 1)

    expect_mistake(l10.check_sdedit_start, every_step, None)
