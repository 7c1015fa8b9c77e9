"""Lesson 13 self-checks: the references pass; each planted bug fails, naming its mistake."""

import pytest
import torch

from vdmcourse.data.curation import StaticClipFilter, frame_difference, shift_tolerant_distance
from vdmcourse.exercises import NOT_ATTEMPTED, WRONG, expect_mistake, expect_pass
from vdmcourse.exercises import lesson13 as l13
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted():
    for check in (l13.check_motion_score, l13.check_split_filter, l13.check_find_duplicates):
        assert check(stub).status == NOT_ATTEMPTED


# motion score --------------------------------------------------------------------------------


def test_motion_score_reference_passes():
    expect_pass(l13.check_motion_score, l13.reference_motion)


def test_mean_frame_difference_is_named_as_counting_noise_as_motion():
    result = expect_mistake(l13.check_motion_score, frame_difference, l13.NOISE_AS_MOTION)
    assert "pixel noise" in result.message


def test_a_score_blind_to_motion_fails_without_naming_noise():
    expect_mistake(l13.check_motion_score, lambda video: video.mean((1, 2, 3, 4)), None)


# filter ---------------------------------------------------------------------------------------


def test_filter_reference_passes():
    expect_pass(l13.check_split_filter, l13.reference_filter_splits)


def test_threshold_fitted_on_the_test_set_is_named():
    def leaky(train, test, keep):
        curate = StaticClipFilter.fit(test, keep)
        return curate(train), curate(test)

    result = expect_mistake(l13.check_split_filter, leaky, l13.THRESHOLD_ON_TEST)
    assert "test scores" in result.message


def test_a_filter_keeping_the_wrong_share_fails():
    def wrong_share(train, test, keep):
        curate = StaticClipFilter.fit(train, keep / 2)
        return curate(train), curate(test)

    expect_mistake(l13.check_split_filter, wrong_share, None)


def test_a_filter_keeping_the_least_moving_clips_fails():
    def inverted(train, test, keep):
        curate = StaticClipFilter.fit(-train, keep)
        return curate(-train), curate(-test)

    expect_mistake(l13.check_split_filter, inverted, None)


# duplicates -----------------------------------------------------------------------------------


def test_duplicates_reference_passes():
    expect_pass(l13.check_find_duplicates, l13.reference_duplicates)


def test_a_plain_pixel_comparison_is_named_as_fooled_by_a_shift():
    def plain(images, threshold):
        distance = shift_tolerant_distance(images, images, max_shift=0)
        return [(i, j) for i in range(len(images)) for j in range(i + 1, len(images)) if distance[i, j] < threshold]

    result = expect_mistake(l13.check_find_duplicates, plain, l13.FOOLED_BY_SHIFT)
    assert "one pixel" in result.message


def test_a_finder_pairing_everything_fails():
    expect_mistake(l13.check_find_duplicates, lambda images, t: [(i, j) for i in range(10) for j in range(i + 1, 10)], None)


# every check fails the stub's neighbours ------------------------------------------------------


PLANTED = [(l13.check_motion_score, l13.reference_motion), (l13.check_split_filter, l13.reference_filter_splits)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == WRONG, f"{kind} should fail:\n{result}"


@pytest.mark.parametrize("answer", [lambda images, t: [], lambda images, t: [(0, 0)], lambda images, t: images])
def test_duplicate_finder_neighbours_of_the_stub_fail(answer):
    assert l13.check_find_duplicates(answer).status == WRONG
