"""Distances between two sets of features: Fréchet distance and kernel inception
distance (KID), with bootstrap confidence intervals and the sample size stated.

The features come from the course's own video feature network
(:mod:`vdmcourse.metrics.features`), so these numbers are *not* FVD: FVD is the
Fréchet distance of I3D (Kinetics-400) logits on 16-frame 224² clips (Unterthiner
et al. 2018), which is neither available offline nor meaningful on grey digits.
Numbers from different feature networks, or from different sample sizes, are not
comparable -- every result here carries its feature dimension and sample sizes.

* Fréchet distance (Heusel et al. 2017; Dowson & Landau 1982): fit a Gaussian to
  each set and compute
  ``|mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a^½ S_b S_a^½)^½)``.
  Both square roots are of symmetric positive semi-definite matrices, so they come
  from a symmetric eigen-decomposition with negative round-off eigenvalues clamped to
  0: real by construction, no complex part to discard silently.
* KID (Bińkowski et al. 2018): the unbiased estimate of the squared maximum mean
  discrepancy with the cubic polynomial kernel ``k(x, y) = (x·y / d + 1)³``, averaged
  over random subsets. Unbiased means its expectation is exactly 0 when both sets
  come from one distribution, so it can come out slightly negative. Its interval
  comes from :func:`kid_bootstrap`, not :func:`bootstrap` (see there why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = [
    "DistanceResult",
    "feature_statistics",
    "sqrtm_psd",
    "frechet_distance_from_statistics",
    "frechet_distance",
    "kid",
    "bootstrap",
    "kid_bootstrap",
]


@dataclass(frozen=True)
class DistanceResult:
    """A distance between two feature sets, with its uncertainty and sample sizes.

    ``low``/``high`` bound the ``level`` bootstrap confidence interval (``nan`` when no
    bootstrap was run); ``n_a``/``n_b`` are the set sizes and ``dim`` the feature
    dimension -- a distance means little without them.
    """

    name: str
    value: float
    low: float
    high: float
    n_a: int
    n_b: int
    dim: int
    level: float = 0.95

    def __str__(self) -> str:
        interval = "" if math.isnan(self.low) else f" [{self.level:.0%} CI {self.low:.4g} to {self.high:.4g}]"
        return f"{self.name} = {self.value:.4g}{interval} (n = {self.n_a} vs {self.n_b}, {self.dim}-d features)"


def _check_features(features: torch.Tensor, name: str, *, min_samples: int) -> torch.Tensor:
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D); got {type(features).__name__}")
    if features.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D) (one feature row per sample); got {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} holds NaN or inf values")
    if features.shape[0] < min_samples:
        raise ValueError(
            f"{name} has {features.shape[0]} samples; at least {min_samples} are needed here "
            f"(feature dimension {features.shape[1]})"
        )
    return features.detach().to(torch.float64)


def _check_pair(a: torch.Tensor, b: torch.Tensor, allow_unequal: bool) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same feature dimension; got {a.shape[1]} and {b.shape[1]}")
    if a.shape[0] != b.shape[0] and not allow_unequal:
        raise ValueError(
            f"features_a has {a.shape[0]} samples but features_b has {b.shape[0]}: the estimate's bias depends on "
            "the sample size, so compare sets of equal size (or pass allow_unequal=True and report both sizes)"
        )


def feature_statistics(features: torch.Tensor, *, allow_rank_deficient: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (float64) of ``features`` ``(N, D)``.

    Rows are samples, columns are feature dimensions; the covariance divides by
    ``N - 1``. With ``N <= D`` the covariance is singular (rank at most ``N - 1``) and
    the Fréchet distance is dominated by estimation noise, so that is refused unless
    ``allow_rank_deficient=True``; fewer than 2 samples is always refused.
    """
    features = _check_features(features, "features", min_samples=2)
    n, d = features.shape
    if n <= d and not allow_rank_deficient:
        raise ValueError(
            f"features has {n} samples of dimension {d}: a covariance needs more samples than dimensions "
            f"(N > D, here at least {d + 1}); use more clips or pass allow_rank_deficient=True"
        )
    mean = features.mean(dim=0)  # (D,)
    centred = features - mean  # (N, D)
    return mean, centred.T @ centred / (n - 1)  # (D,), (D, D)


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite ``matrix`` ``(D, D)``.

    Uses the eigen-decomposition ``V diag(λ) Vᵀ`` and returns ``V diag(√max(λ, 0)) Vᵀ``;
    eigenvalues a little below 0 are round-off and are clamped. A clearly negative
    eigenvalue (or an asymmetric input) means the input is not a covariance, and is
    refused rather than turned into complex numbers.
    """
    if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise ValueError(f"sqrtm_psd expects a square matrix of shape (D, D); got {shape}")
    matrix = matrix.to(torch.float64)
    scale = matrix.abs().max().clamp_min(1e-300)
    if (matrix - matrix.T).abs().max() > 1e-8 * scale:
        raise ValueError("sqrtm_psd expects a symmetric matrix; got one that differs from its transpose")
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    if eigenvalues.min() < -1e-8 * scale:
        raise ValueError(
            f"sqrtm_psd expects a positive semi-definite matrix; its smallest eigenvalue is {eigenvalues.min().item():.3g}"
        )
    return eigenvectors @ torch.diag(eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T  # (D, D)


def frechet_distance_from_statistics(
    mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor
) -> float:
    """Fréchet (2-Wasserstein) distance² between N(mean_a, cov_a) and N(mean_b, cov_b).

    ``|mean_a - mean_b|² + tr(cov_a) + tr(cov_b) - 2 tr((cov_a^½ cov_b cov_a^½)^½)``;
    ``cov_a^½ cov_b cov_a^½`` is symmetric PSD, so its square root's trace is the sum of
    the square roots of its (clamped) eigenvalues. Means ``(D,)``, covariances ``(D, D)``.
    """
    d = mean_a.shape[0]
    for name, value, shape in (("mean_a", mean_a, (d,)), ("mean_b", mean_b, (d,)), ("cov_a", cov_a, (d, d)), ("cov_b", cov_b, (d, d))):
        if tuple(value.shape) != shape:
            raise ValueError(f"frechet_distance_from_statistics: {name} should have shape {shape}; got {tuple(value.shape)}")
    mean_a, cov_a, mean_b, cov_b = (v.to(torch.float64) for v in (mean_a, cov_a, mean_b, cov_b))
    root_a = sqrtm_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    # Round-off can push a true 0 a hair below zero; a distance is never negative.
    return max(value.item(), 0.0)


def frechet_distance(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    allow_unequal: bool = False,
    allow_rank_deficient: bool = False,
) -> float:
    """Fréchet distance between Gaussians fitted to ``features_a`` ``(N, D)`` and ``features_b`` ``(M, D)``.

    Both sets must have ``N = M`` (the estimate is biased upwards by an amount that
    shrinks with the sample size, so sets of different size are not comparable)
    unless ``allow_unequal=True``, and more samples than dimensions unless
    ``allow_rank_deficient=True``.
    """
    a = _check_features(features_a, "features_a", min_samples=2)
    b = _check_features(features_b, "features_b", min_samples=2)
    _check_pair(a, b, allow_unequal)
    mean_a, cov_a = feature_statistics(a, allow_rank_deficient=allow_rank_deficient)
    mean_b, cov_b = feature_statistics(b, allow_rank_deficient=allow_rank_deficient)
    return frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b)


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3  # (n, m)


def _polynomial_mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)  # (m, m) each
    m = x.shape[0]
    # Unbiased: the diagonals k(x_i, x_i) compare a sample with itself and are left out.
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.mean()


def kid(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    subsets: int = 50,
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
    allow_unequal: bool = False,
) -> tuple[float, float]:
    """Kernel inception distance: mean and standard deviation over ``subsets`` random
    subsets of the unbiased polynomial-kernel MMD² between ``features_a`` ``(N, D)``
    and ``features_b`` ``(M, D)``.

    ``subset_size`` defaults to ``min(N, M, 1000)`` (each subset draws that many rows
    from each set without replacement). Equal set sizes are required unless
    ``allow_unequal=True``.
    """
    a = _check_features(features_a, "features_a", min_samples=2)
    b = _check_features(features_b, "features_b", min_samples=2)
    _check_pair(a, b, allow_unequal)
    largest = min(a.shape[0], b.shape[0])
    m = min(largest, 1000) if subset_size is None else subset_size
    if not isinstance(m, int) or not 2 <= m <= largest:
        raise ValueError(f"kid: subset_size must be an int in [2, {largest}] (the smaller set's size); got {subset_size!r}")
    if not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"kid: subsets must be a positive int; got {subsets!r}")
    values = torch.stack([
        _polynomial_mmd2_unbiased(
            a[torch.randperm(a.shape[0], generator=generator)[:m]],
            b[torch.randperm(b.shape[0], generator=generator)[:m]],
        )
        for _ in range(subsets)
    ])
    spread = values.std().item() if subsets > 1 else float("nan")
    return values.mean().item(), spread


def _bootstrap_inputs(who: str, features_a, features_b, allow_unequal: bool, level: float, resamples: int):
    a = _check_features(features_a, "features_a", min_samples=2)
    b = _check_features(features_b, "features_b", min_samples=2)
    _check_pair(a, b, allow_unequal)
    if not 0 < level < 1:
        raise ValueError(f"{who}: level must be in (0, 1); got {level!r}")
    if not isinstance(resamples, int) or resamples < 2:
        raise ValueError(f"{who}: resamples must be an int >= 2; got {resamples!r}")
    return a, b


def _basic_interval(value: float, rounds: torch.Tensor, level: float) -> tuple[float, float]:
    """The basic (reverse-percentile) interval ``[2v - q_hi, 2v - q_lo]`` of ``value`` from its bootstrap ``rounds``."""
    tail = (1 - level) / 2
    q_low, q_high = torch.quantile(rounds, torch.tensor([tail, 1 - tail], dtype=rounds.dtype)).tolist()
    return 2 * value - q_high, 2 * value - q_low


def bootstrap(
    distance: Callable[[torch.Tensor, torch.Tensor], float],
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    name: str,
    resamples: int = 200,
    level: float = 0.95,
    generator: torch.Generator | None = None,
    allow_unequal: bool = False,
    lower_bound: float = -math.inf,
) -> DistanceResult:
    """``distance(features_a, features_b)`` with a basic (reverse-percentile) bootstrap interval.

    Each of ``resamples`` rounds redraws both sets with replacement (keeping their
    sizes) and recomputes the distance ``d*``; with ``q_lo, q_hi`` the ``(1 ∓ level)/2``
    quantiles of ``d*``, the interval is ``[2d - q_hi, 2d - q_lo]``. Reflecting matters
    for a Fréchet distance: resampling repeats rows, which inflates ``d*`` much as finite
    samples inflate ``d`` itself, and the plain percentile interval ``[q_lo, q_hi]``
    then misses the true distance almost always (the reflected one covers it about as
    often as ``level`` says, checked on Gaussians in the tests). The interval is for the
    true distance, so it may lie wholly below the (upward-biased) estimate itself. ``distance`` takes
    ``(N, D)`` and ``(M, D)`` tensors and returns a float, e.g. ``frechet_distance``
    (for KID use :func:`kid_bootstrap`: this one's resamples break its unbiasedness). Reflection can push the lower end below what the
    distance can take; ``lower_bound`` (0 for a Fréchet distance, which is never negative)
    clips it. With few samples per dimension the interval is wide: believe it.
    """
    a, b = _bootstrap_inputs("bootstrap", features_a, features_b, allow_unequal, level, resamples)
    value = distance(a, b)
    rounds = torch.tensor([
        distance(
            a[torch.randint(a.shape[0], (a.shape[0],), generator=generator)],
            b[torch.randint(b.shape[0], (b.shape[0],), generator=generator)],
        )
        for _ in range(resamples)
    ])
    low, high = _basic_interval(value, rounds, level)
    return DistanceResult(name, float(value), max(low, lower_bound), max(high, lower_bound), a.shape[0], b.shape[0], a.shape[1], level)


def kid_bootstrap(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    resamples: int = 200,
    level: float = 0.95,
    generator: torch.Generator | None = None,
    allow_unequal: bool = False,
) -> DistanceResult:
    """KID of the whole sets, ``features_a`` ``(N, D)`` against ``features_b`` ``(M, D)``,
    with a basic bootstrap interval that keeps the estimate unbiased.

    The value is the unbiased polynomial-kernel MMD² of :func:`kid` on all rows (no
    subsets). Redrawing rows with replacement repeats some of them, and the unbiased
    estimate would count a repeated row against its own copy as two distinct samples:
    every round is then biased upwards, and ``bootstrap(lambda a, b: kid(a, b)[0], ...)``
    covered the true KID of two Gaussians in only 4 of 100 trials (100 rows each). Here
    each round leaves out the pairs of a row with a copy of itself, as the estimate
    leaves out the diagonal; the interval then covered it in 95-99 of 100. At 100 clips
    a KID interval is often wider than the differences between models: believe it.
    """
    a, b = _bootstrap_inputs("kid_bootstrap", features_a, features_b, allow_unequal, level, resamples)
    k_aa, k_bb, k_ab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)

    def mmd2(rows_a: torch.Tensor, rows_b: torch.Tensor) -> float:
        # Pairs (i, j) whose rows are copies of one original row are left out, like the diagonal.
        distinct_a = rows_a[:, None] != rows_a[None, :]  # (N, N)
        distinct_b = rows_b[:, None] != rows_b[None, :]  # (M, M)
        within_a = k_aa[rows_a][:, rows_a][distinct_a].mean()
        within_b = k_bb[rows_b][:, rows_b][distinct_b].mean()
        return (within_a + within_b - 2 * k_ab[rows_a][:, rows_b].mean()).item()

    n, m = a.shape[0], b.shape[0]
    value = mmd2(torch.arange(n), torch.arange(m))
    rounds = torch.tensor([
        mmd2(torch.randint(n, (n,), generator=generator), torch.randint(m, (m,), generator=generator))
        for _ in range(resamples)
    ])
    low, high = _basic_interval(value, rounds, level)
    return DistanceResult("KID", value, low, high, n, m, a.shape[1], level)
