import math

import pytest
import torch

from vdmcourse.metrics.distances import (
    DistanceResult,
    bootstrap,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_statistics,
    kid,
    kid_bootstrap,
    sqrtm_psd,
)


def _gaussian(n, mean, cov, generator):
    return mean + torch.randn(n, mean.shape[0], generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(cov).T


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_equals_the_closed_form_for_known_gaussians():
    # Commuting covariances: the distance is |mu_a - mu_b|² + sum_i (sqrt(a_i) - sqrt(b_i))².
    eig_a = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    eig_b = torch.tensor([2.0, 0.5, 0.5, 1.0], dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    cov_a, cov_b = rotation @ torch.diag(eig_a) @ rotation.T, rotation @ torch.diag(eig_b) @ rotation.T
    mean_a, mean_b = torch.zeros(4, dtype=torch.float64), torch.tensor([1.0, -1.0, 0.5, 0.0], dtype=torch.float64)
    expected = (mean_a - mean_b).square().sum() + (eig_a.sqrt() - eig_b.sqrt()).square().sum()
    assert frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected.item(), rel=1e-9)
    # Samples from those Gaussians estimate it (finite samples bias it a little upwards).
    g = torch.Generator().manual_seed(2)
    estimate = frechet_distance(_gaussian(20000, mean_a, cov_a, g), _gaussian(20000, mean_b, cov_b, g))
    assert estimate == pytest.approx(expected.item(), rel=0.03)


def test_frechet_distance_matches_the_non_commuting_closed_form_in_2d():
    # For 2x2 PSD M: tr(sqrt(M)) = sqrt(tr M + 2 sqrt(det M)).
    cov_a = torch.tensor([[2.0, 0.7], [0.7, 1.0]], dtype=torch.float64)
    cov_b = torch.tensor([[1.0, -0.4], [-0.4, 3.0]], dtype=torch.float64)
    root_a = sqrtm_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = math.sqrt(middle.trace().item() + 2 * math.sqrt(torch.det(middle).item()))
    expected = (cov_a.trace() + cov_b.trace()).item() - 2 * cross
    zero = torch.zeros(2, dtype=torch.float64)
    assert frechet_distance_from_statistics(zero, cov_a, zero, cov_b) == pytest.approx(expected, rel=1e-10)


def test_sqrtm_psd_squares_back_and_stays_real_on_singular_input():
    g = torch.Generator().manual_seed(3)
    low_rank = torch.randn(6, 3, generator=g, dtype=torch.float64)
    singular = low_rank @ low_rank.T  # rank 3: round-off gives tiny negative eigenvalues
    root = sqrtm_psd(singular)
    assert root.dtype == torch.float64 and not root.is_complex()
    torch.testing.assert_close(root @ root, singular, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(root, root.T)


def test_sqrtm_psd_refuses_matrices_that_are_not_covariances():
    with pytest.raises(ValueError, match="positive semi-definite"):
        sqrtm_psd(torch.diag(torch.tensor([1.0, -1.0])))
    with pytest.raises(ValueError, match="symmetric"):
        sqrtm_psd(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        sqrtm_psd(torch.ones(2, 3))


def test_feature_statistics_is_the_unbiased_sample_covariance_over_rows():
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    mean, cov = feature_statistics(features)
    torch.testing.assert_close(mean, features.mean(0))
    torch.testing.assert_close(cov, torch.cov(features.T))


def test_too_few_samples_for_a_covariance_are_refused():
    with pytest.raises(ValueError, match="more samples than dimensions"):
        frechet_distance(torch.randn(10, 16), torch.randn(10, 16))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.randn(1, 4), torch.randn(1, 4), allow_rank_deficient=True)
    assert frechet_distance(torch.randn(10, 16), torch.randn(10, 16), allow_rank_deficient=True) > 0


def test_sets_of_different_size_are_refused_unless_allowed():
    a, b = torch.randn(100, 4), torch.randn(80, 4)
    with pytest.raises(ValueError, match="100 samples but features_b has 80"):
        frechet_distance(a, b)
    with pytest.raises(ValueError, match="100 samples but features_b has 80"):
        kid(a, b)
    assert frechet_distance(a, b, allow_unequal=True) > 0


def test_bad_feature_input_is_refused_clearly():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        frechet_distance(torch.randn(10, 2, 3), torch.randn(10, 2, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        frechet_distance([[0.0]], [[0.0]])
    with pytest.raises(ValueError, match="feature dimension"):
        frechet_distance(torch.randn(50, 4), torch.randn(50, 5))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(torch.full((50, 4), float("nan")), torch.randn(50, 4))


def test_kid_is_unbiased_on_identical_distributions():
    g = torch.Generator().manual_seed(5)
    values = [kid(torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g), subsets=1)[0] for _ in range(200)]
    mean = sum(values) / len(values)
    spread = torch.tensor(values).std().item()
    # Mean over 200 independent pairs is within 3 standard errors of 0 (a biased
    # estimator, e.g. one keeping the kernel diagonal, sits several standard errors above).
    assert abs(mean) < 3 * spread / math.sqrt(len(values))
    assert min(values) < 0  # an unbiased estimate of 0 must sometimes be negative


def test_kid_grows_with_a_shift_and_reports_its_spread():
    g = torch.Generator().manual_seed(6)
    a = torch.randn(400, 8, generator=g)
    near, spread = kid(a, torch.randn(400, 8, generator=g) + 0.2, subset_size=100, subsets=20, generator=g)
    far, _ = kid(a, torch.randn(400, 8, generator=g) + 1.0, subset_size=100, subsets=20, generator=g)
    assert 0 < near < far and spread > 0
    with pytest.raises(ValueError, match="subset_size"):
        kid(a, a, subset_size=500)


def test_bootstrap_interval_covers_the_true_frechet_distance():
    # True distance between N(0, I) and N(0.2, 1.3² I) in 8-d: 8·0.04 + 8·0.09 = 1.04.
    g = torch.Generator().manual_seed(7)
    true, covered, trials = 1.04, 0, 20
    for _ in range(trials):
        a = torch.randn(200, 8, generator=g)
        b = torch.randn(200, 8, generator=g) * 1.3 + 0.2
        result = bootstrap(frechet_distance, a, b, name="Fréchet", resamples=60, level=0.9, generator=g)
        covered += result.low <= true <= result.high
    assert covered >= 14  # nominal 90 %; the plain percentile interval covers it ~0 times here


def test_bootstrap_result_states_its_sample_size_and_dimension():
    g = torch.Generator().manual_seed(8)
    result = bootstrap(frechet_distance, torch.randn(60, 4, generator=g), torch.randn(60, 4, generator=g),
                       name="Fréchet", resamples=20, generator=g)
    assert isinstance(result, DistanceResult)
    assert (result.n_a, result.n_b, result.dim) == (60, 60, 4) and result.low <= result.high
    assert "n = 60 vs 60" in str(result) and "4-d" in str(result) and "95% CI" in str(result)
    clipped = bootstrap(frechet_distance, torch.randn(60, 4, generator=g), torch.randn(60, 4, generator=g),
                        name="Fréchet", resamples=20, generator=g, lower_bound=0.0)
    assert clipped.low >= 0.0


def test_kid_bootstrap_value_is_the_whole_set_kid():
    g = torch.Generator().manual_seed(9)
    a, b = torch.randn(80, 6, generator=g), torch.randn(80, 6, generator=g) + 0.3
    result = kid_bootstrap(a, b, resamples=20, generator=g)
    assert result.value == pytest.approx(kid(a, b, subset_size=80, subsets=1)[0], rel=1e-9)
    assert result.name == "KID" and (result.n_a, result.n_b, result.dim) == (80, 80, 6) and result.low < result.high
    # Unequal sizes: the general unbiased estimate, one sample of a pair against every other.
    uneven = kid_bootstrap(a, b[:50], resamples=5, generator=g, allow_unequal=True)
    k = lambda x, y: (x.double() @ y.double().T / 6 + 1) ** 3
    expected = ((k(a, a).sum() - k(a, a).trace()) / (80 * 79) + (k(b[:50], b[:50]).sum() - k(b[:50], b[:50]).trace()) / (50 * 49)
                - 2 * k(a, b[:50]).mean())
    assert uneven.value == pytest.approx(expected.item(), rel=1e-9) and uneven.n_b == 50
    with pytest.raises(ValueError, match="samples"):
        kid_bootstrap(a, b[:50])
    with pytest.raises(ValueError, match="resamples"):
        kid_bootstrap(a, b, resamples=1)


def test_kid_bootstrap_interval_covers_the_true_kid():
    # Shifted Gaussians in 8-d; the true KID is estimated once from 3000 rows each.
    g = torch.Generator().manual_seed(10)
    true = kid(torch.randn(3000, 8, generator=g), torch.randn(3000, 8, generator=g) + 0.3, subset_size=3000, subsets=1)[0]
    covered, trials = 0, 30
    for _ in range(trials):
        a, b = torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g) + 0.3
        result = kid_bootstrap(a, b, resamples=60, level=0.9, generator=g)
        covered += result.low <= true <= result.high
    # Nominal 90 %; counting a repeated row against its own copy (the naive bootstrap) covered it 14 times here.
    assert covered >= 22
