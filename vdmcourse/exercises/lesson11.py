"""Self-checks for lesson 11, Evaluating video models.

* :func:`check_covariance` -- the covariance of a feature set, as a Fréchet distance needs it;
* :func:`check_matrix_sqrt` -- the square root of a covariance matrix, real and finite
  even when the matrix is singular;
* :func:`check_frechet` -- the Fréchet distance between two feature sets, which must
  refuse sets of different size.

Each compares the learner's function with :mod:`vdmcourse.metrics.distances` on small
inputs and names the mistakes people really make.
"""

from __future__ import annotations

import torch

from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check
from vdmcourse.metrics.distances import feature_statistics, frechet_distance

__all__ = [
    "DIVIDED_BY_N",
    "WRONG_AXIS",
    "NOT_CENTRED",
    "ELEMENTWISE_SQRT",
    "COMPLEX_GARBAGE",
    "UNEQUAL_SIZES",
    "MISSING_MEAN_TERM",
    "NOT_SQUARED",
    "check_covariance",
    "check_matrix_sqrt",
    "check_frechet",
    "reference_covariance",
]

DIVIDED_BY_N = "covariance divided by N instead of N - 1"
WRONG_AXIS = "covariance over the wrong axis (samples instead of features)"
NOT_CENTRED = "mean not subtracted before the covariance"
ELEMENTWISE_SQRT = "element-wise square root instead of a matrix square root"
COMPLEX_GARBAGE = "matrix square root returns complex or NaN values silently"
UNEQUAL_SIZES = "sets of different sizes compared without saying so"
MISSING_MEAN_TERM = "the |mu_a - mu_b|² term left out"
NOT_SQUARED = "square root of the Fréchet distance returned"


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mixing + 1.5 + shift


def reference_covariance(features: torch.Tensor) -> torch.Tensor:
    """The unbiased covariance ``(D, D)`` (float64) of ``features`` ``(N, D)``, rows = samples:
    :func:`~vdmcourse.metrics.feature_statistics`'s, singular sets (N <= D) allowed."""
    return feature_statistics(features, allow_rank_deficient=True)[1]


@self_check(
    "Covariance of a feature set", reference="vdmcourse.metrics.feature_statistics",
    more="The likely slips are the axis (torch.cov treats rows as variables), dividing by N and forgetting"
         " the mean. For features (N, D): centred = features - features.mean(dim=0); return centred.T @ "
         "centred / (N - 1), shape (D, D).",
)
def check_covariance(covariance):
    """``covariance(features) -> (D, D)``: features (N, D), one row per sample; the
    unbiased sample covariance (divide by N - 1)."""
    features = _features(12, 5, seed=0)
    _, want = feature_statistics(features, allow_rank_deficient=True)
    out = covariance(features.clone())
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (12, 12):
        raise Wrong(
            "covariance(features) of 12 samples of 5 features came out 12x12: one row and column per *sample*.",
            mistake=WRONG_AXIS,
            hint="With rows as samples, the covariance is centred.T @ centred / (N - 1), shape (D, D).",
        )
    expect_shape(out, (5, 5), "covariance(features) for 12 samples of 5 features", hint="One row and column per feature.")
    out = out.to(torch.float64)
    n = features.shape[0]
    if torch.allclose(out, want * (n - 1) / n, atol=1e-8):
        raise Wrong(
            "Your covariance is (N - 1)/N times the unbiased one: you divided by N.",
            mistake=DIVIDED_BY_N,
            hint="Divide the sum of products by N - 1 (Bessel's correction), as torch.cov does.",
        )
    raw = features.T @ features
    if torch.allclose(out, raw / (n - 1), atol=1e-8) or torch.allclose(out, raw / n, atol=1e-8):
        raise Wrong(
            "Your covariance includes the squared mean: the features were not centred.",
            mistake=NOT_CENTRED,
            hint="Subtract features.mean(0) from every row first.",
        )
    expect_close(out, want, "covariance(features)", atol=1e-8, hint="centred = features - features.mean(0); centred.T @ centred / (N - 1).")
    return "Unbiased covariance over the feature axis, (D, D)."


def _singular_covariance() -> torch.Tensor:
    # 4 samples in 6 dimensions: rank 3, so round-off leaves eigenvalues a hair below 0.
    features = _features(4, 6, seed=1)
    _, cov = feature_statistics(features, allow_rank_deficient=True)
    return cov


@self_check(
    "Matrix square root of a covariance", reference="vdmcourse.metrics.sqrtm_psd",
    more="The likely slips are an element-wise root (matrix.sqrt()) and negative round-off eigenvalues "
         "that turn into NaN. values, vectors = torch.linalg.eigh(matrix); return vectors @ "
         "torch.diag(values.clamp_min(0).sqrt()) @ vectors.T.",
)
def check_matrix_sqrt(matrix_sqrt):
    """``matrix_sqrt(matrix) -> root``: for a symmetric positive semi-definite (D, D)
    matrix, the symmetric root with ``root @ root == matrix``; real and finite even when
    the matrix is singular (eigenvalues at 0, a little below from round-off)."""
    _, full = feature_statistics(_features(40, 4, seed=2))
    out = matrix_sqrt(full.clone())
    expect_shape(out, (4, 4), "matrix_sqrt of a 4x4 covariance")
    if out.is_complex():
        raise Wrong(
            "matrix_sqrt returned a complex tensor: a general eigen-solver (torch.linalg.eig) on a symmetric matrix.",
            mistake=COMPLEX_GARBAGE,
            hint="A covariance is symmetric: torch.linalg.eigh gives real eigenvalues and orthogonal eigenvectors.",
        )
    out = out.to(torch.float64)
    if torch.allclose(out, full.abs().sqrt() * full.sign(), atol=1e-6) or torch.allclose(out, full.sqrt(), atol=1e-6, equal_nan=True):
        raise Wrong(
            "matrix_sqrt took the square root of every entry; (entry-wise root) @ (entry-wise root) is not the matrix.",
            mistake=ELEMENTWISE_SQRT,
            hint="Decompose matrix = V diag(λ) Vᵀ and return V diag(√λ) Vᵀ.",
        )
    expect_close(out @ out, full, "matrix_sqrt(m) @ matrix_sqrt(m)", atol=1e-8, hint="Return V diag(√λ) Vᵀ from torch.linalg.eigh.")
    singular = _singular_covariance()
    root = matrix_sqrt(singular.clone())
    if not isinstance(root, torch.Tensor) or root.is_complex() or not torch.isfinite(root).all():
        raise Wrong(
            "On a singular covariance (fewer samples than features) matrix_sqrt returned complex, NaN or inf values: "
            "eigenvalues that round-off put just below 0 went into the square root.",
            mistake=COMPLEX_GARBAGE,
            hint="Clamp the eigenvalues at 0 before the square root: eigenvalues.clamp_min(0).sqrt().",
        )
    expect_close(root.to(torch.float64) @ root.to(torch.float64), singular, "the root of a singular covariance, squared",
                 atol=1e-8, hint="Clamp tiny negative eigenvalues to 0; keep the eigenvectors.")
    return "Real, symmetric, squares back -- also for a singular covariance."


@self_check(
    "Fréchet distance of two feature sets", reference="vdmcourse.metrics.frechet_distance",
    more="The likely slips are a missing ValueError for unequal sizes, the |mu_a - mu_b|^2 term left out, "
         "and returning the square root. Raise first if the sizes differ; then mean term + tr(S_a) + "
         "tr(S_b) - 2 * eigvalsh(R @ S_b @ R).clamp_min(0).sqrt().sum(), with R the matrix root of S_a -- "
         "the squared distance.",
)
def check_frechet(frechet):
    """``frechet(features_a, features_b) -> float``: the Fréchet distance
    ``|mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a^½ S_b S_a^½)^½)`` between Gaussians fitted to
    two (N, D) sets; it must raise ``ValueError`` when the sets have different sizes."""
    a, b = _features(60, 4, seed=3), _features(60, 4, seed=4, shift=0.7)
    want = frechet_distance(a, b)
    out = frechet(a.clone(), b.clone())
    value = float(out)
    _, cov_a = feature_statistics(a)
    _, cov_b = feature_statistics(b)
    mean_term = (a.mean(0) - b.mean(0)).square().sum().item()
    if abs(value - (want - mean_term)) < 1e-6 * max(1.0, want):
        raise Wrong(
            f"frechet gave {value:.4g}; with |mu_a - mu_b|² = {mean_term:.4g} added it would be right.",
            mistake=MISSING_MEAN_TERM,
            hint="The distance has two parts: the squared distance of the means, and the covariance term.",
        )
    if abs(value - want**0.5) < 1e-6 * max(1.0, want):
        raise Wrong(
            f"frechet gave {value:.4g}, the square root of the expected {want:.4g}.",
            mistake=NOT_SQUARED,
            hint="FID/FVD report the squared 2-Wasserstein distance: do not take a final square root.",
        )
    if abs(value - want) > 1e-6 * max(1.0, want):
        raise Wrong(f"frechet gave {value:.6g}; expected {want:.6g}.",
                    hint="Check the cross term: trace of the square root of S_a^½ S_b S_a^½, times 2.")
    try:
        unequal = frechet(a.clone(), b[:40].clone())
    except ValueError:
        return "Right value, and sets of different sizes are refused."
    raise Wrong(
        f"frechet compared 60 clips with 40 and returned {float(unequal):.4g} without complaint. The estimate is biased "
        "by an amount that depends on the sample size, so such numbers are not comparable.",
        mistake=UNEQUAL_SIZES,
        hint="Raise ValueError when features_a.shape[0] != features_b.shape[0], saying both sizes.",
    )
