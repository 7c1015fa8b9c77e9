"""Lesson 11 self-checks: the reference passes; each planted bug fails, naming its mistake."""

import pytest
import torch

from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson11 as l11
from vdmcourse.metrics import feature_statistics, frechet_distance, sqrtm_psd
from vdmcourse.exercises.harness import WRONG as PLANTED_WRONG
from vdmcourse.exercises.planted import PLANTED_KINDS, planted_answers


def covariance(features):
    centred = features - features.mean(0)
    return centred.T @ centred / (features.shape[0] - 1)


def matrix_sqrt(matrix):
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvectors @ torch.diag(eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def frechet(a, b):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"sets of {a.shape[0]} and {b.shape[0]} samples")
    mean_a, cov_a = a.mean(0), covariance(a)
    mean_b, cov_b = b.mean(0), covariance(b)
    root = matrix_sqrt(cov_a)
    cross = torch.linalg.eigvalsh(root @ cov_b @ root).clamp_min(0).sqrt().sum()
    return ((mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross).item()


def test_references_pass():
    expect_pass(l11.check_covariance, covariance)
    expect_pass(l11.check_covariance, lambda f: feature_statistics(f, allow_rank_deficient=True)[1])
    expect_pass(l11.check_matrix_sqrt, matrix_sqrt)
    expect_pass(l11.check_matrix_sqrt, sqrtm_psd)
    expect_pass(l11.check_frechet, frechet)
    expect_pass(l11.check_frechet, frechet_distance)


def test_stubs_are_not_attempted():
    def stub(*args):
        raise NotImplementedError

    for check in (l11.check_covariance, l11.check_matrix_sqrt, l11.check_frechet):
        assert check(stub).status == NOT_ATTEMPTED


def test_covariance_mistakes_are_named():
    expect_mistake(l11.check_covariance, lambda f: (f - f.mean(0)).T @ (f - f.mean(0)) / f.shape[0], l11.DIVIDED_BY_N)
    expect_mistake(l11.check_covariance, lambda f: torch.cov(f), l11.WRONG_AXIS)  # torch.cov wants variables as rows
    expect_mistake(l11.check_covariance, lambda f: f.T @ f / (f.shape[0] - 1), l11.NOT_CENTRED)


def test_matrix_sqrt_mistakes_are_named():
    def general_eig(matrix):
        eigenvalues, eigenvectors = torch.linalg.eig(matrix)
        return eigenvectors @ torch.diag(eigenvalues.sqrt()) @ torch.linalg.inv(eigenvectors)

    def unclamped(matrix):
        eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
        return eigenvectors @ torch.diag(eigenvalues.sqrt()) @ eigenvectors.T

    expect_mistake(l11.check_matrix_sqrt, general_eig, l11.COMPLEX_GARBAGE)
    expect_mistake(l11.check_matrix_sqrt, unclamped, l11.COMPLEX_GARBAGE)
    expect_mistake(l11.check_matrix_sqrt, lambda m: m.sqrt(), l11.ELEMENTWISE_SQRT)


def test_frechet_mistakes_are_named():
    def no_size_check(a, b):
        n = min(a.shape[0], b.shape[0])
        return frechet(a[:n], b[:n]) if a.shape[0] != b.shape[0] else frechet(a, b)

    def no_mean(a, b):
        return frechet(a - a.mean(0), b - b.mean(0))

    expect_mistake(l11.check_frechet, no_size_check, l11.UNEQUAL_SIZES)
    expect_mistake(l11.check_frechet, no_mean, l11.MISSING_MEAN_TERM)
    expect_mistake(l11.check_frechet, lambda a, b: frechet(a, b) ** 0.5, l11.NOT_SQUARED)
    expect_mistake(l11.check_frechet, lambda a, b: frechet(a, b) + 1.0, None)


# Issue 18: every check fails the stub's neighbours -------------------------------------------


PLANTED = [(l11.check_covariance, covariance), (l11.check_matrix_sqrt, matrix_sqrt), (l11.check_frechet, frechet)]


@pytest.mark.parametrize("kind", PLANTED_KINDS)
@pytest.mark.parametrize("check, reference", PLANTED, ids=[check.__name__ for check, _ in PLANTED])
def test_planted_answers_fail(check, reference, kind):
    result = check(planted_answers(reference)[kind])
    assert result.status == PLANTED_WRONG, f"{kind} should fail:\n{result}"
    assert result.message


def test_reference_covariance_passes():
    """Lesson 11 falls back on it when the learner's covariance has not passed."""
    expect_pass(l11.check_covariance, l11.reference_covariance)
