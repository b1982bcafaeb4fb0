"""Tests of the distribution metrics against closed forms, brute-force versions and scipy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from interhandgen.evaluation.metrics import (
    diversity,
    feature_statistics,
    fid,
    fid_from_statistics,
    kid,
    kid_subset_values,
    kid_with_std,
    knn_radii,
    precision_recall,
)


def _gaussian_fid_closed_form(mu_a, cov_a, mu_b, cov_b):
    """Frechet distance of two Gaussians with scipy's general matrix square root (independent of the library)."""
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    covmean = np.real(covmean)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def _random_cov(rng, d, scale=1.0):
    m = rng.normal(size=(d, d)) * scale
    return m @ m.T / d + 0.1 * np.eye(d)


# ------------------------------------------------------------------ FID


def test_fid_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 32)) * 3.0 + 1.0
    value = fid(x, x.copy())
    assert abs(value) < 1e-9 * np.trace(np.cov(x, rowvar=False))


def test_fid_matches_closed_form_of_true_gaussians():
    rng = np.random.default_rng(1)
    d = 3
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d) + 1.0
    cov_a, cov_b = _random_cov(rng, d), _random_cov(rng, d, scale=2.0)
    truth = _gaussian_fid_closed_form(mu_a, cov_a, mu_b, cov_b)
    n = 200_000
    a = rng.multivariate_normal(mu_a, cov_a, size=n)
    b = rng.multivariate_normal(mu_b, cov_b, size=n)
    # Sampling error of the estimate is O(|mu diff| * sigma / sqrt(n)) ~ 1e-2 here.
    assert fid(a, b) == pytest.approx(truth, rel=0.02, abs=0.02)
    assert truth > 1.0  # the check is not trivially about a zero distance


def test_fid_matches_scipy_sqrtm_bruteforce():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(size=(250, 16)) * 1.5 + 0.3
    mu_a, cov_a = a.mean(0), np.cov(a, rowvar=False)
    mu_b, cov_b = b.mean(0), np.cov(b, rowvar=False)
    expected = _gaussian_fid_closed_form(mu_a, cov_a, mu_b, cov_b)
    assert fid(a, b) == pytest.approx(expected, rel=1e-8)
    assert fid(torch.from_numpy(a).float(), torch.from_numpy(b).float()) == pytest.approx(expected, rel=1e-4)
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-10)


def test_fid_singular_covariances_agree_with_product_eigenvalues():
    # Fewer samples than dimensions: both covariances are singular (rank 9 in 32 dimensions).
    rng = np.random.default_rng(3)
    a = rng.normal(size=(10, 32))
    b = rng.normal(size=(10, 32)) + 0.5
    value = fid(a, b)
    mu_a, cov_a = feature_statistics(a)
    mu_b, cov_b = feature_statistics(b)
    # Eigenvalues of a product of two PSD matrices are real and >= 0; take them from the non-symmetric product.
    ev = np.linalg.eigvals(cov_a @ cov_b)
    trace_sqrt = np.sqrt(np.clip(ev.real, 0.0, None)).sum()
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
    assert np.isfinite(value) and value > 0.0
    assert value == pytest.approx(expected, rel=1e-6)


def test_fid_statistics_match_numpy_cov():
    x = np.random.default_rng(4).normal(size=(50, 6))
    mu, cov = feature_statistics(x)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-12)


def test_fid_from_statistics_validates():
    mu = np.zeros(3)
    cov = np.eye(3)
    with pytest.raises(ValueError, match="cov_b"):
        fid_from_statistics(mu, cov, mu, np.eye(4))
    with pytest.raises(ValueError, match="symmetric"):
        fid_from_statistics(mu, cov, mu, np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="mu_b"):
        fid_from_statistics(mu, cov, np.zeros(2), cov)


@pytest.mark.parametrize(
    "a, b, error, pattern",
    [
        (np.zeros((1, 4)), np.zeros((5, 4)), ValueError, "'a'.*at least 2"),
        (np.zeros((5, 4, 1)), np.zeros((5, 4)), ValueError, r"'a'.*\[N, D\]"),
        (np.ones((5, 4)), np.full((5, 4), np.nan), ValueError, "'b'.*NaN"),
        (np.ones((5, 4)), np.ones((5, 3)), ValueError, "same feature dimension"),
        ([[1.0, 2.0], [3.0, 4.0]], np.ones((5, 2)), TypeError, "'a'"),
    ],
)
def test_fid_rejects_bad_input(a, b, error, pattern):
    with pytest.raises(error, match=pattern):
        fid(a, b)


# ------------------------------------------------------------------ KID


def _mmd2_unbiased_bruteforce(x, y, degree):
    d = x.shape[1]

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1.0) ** degree

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


@pytest.mark.parametrize("degree", [1, 3])
@pytest.mark.parametrize("kernel_dtype", [torch.float32, torch.float64])
def test_kid_equals_bruteforce_double_loop(degree, kernel_dtype):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(25, 6))
    y = rng.normal(size=(25, 6)) * 1.3 + 0.2
    expected = _mmd2_unbiased_bruteforce(x, y, degree)
    # subset_size = N: every subset is a permutation of the whole set, and MMD^2_u is permutation invariant.
    values = kid_subset_values(x, y, degree=degree, num_subsets=3, subset_size=25, kernel_dtype=kernel_dtype)
    tol = 1e-10 if kernel_dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(values, expected, rtol=tol, atol=tol)


def test_kid_is_unbiased_for_identical_distributions():
    rng = np.random.default_rng(6)
    draws = []
    for _ in range(300):
        a = rng.normal(size=(40, 8))
        b = rng.normal(size=(40, 8))
        draws.append(kid(a, b, degree=3, num_subsets=1, subset_size=40, kernel_dtype=torch.float64))
    draws = np.array(draws)
    standard_error = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean()) < 4 * standard_error
    # The biased (V-statistic) estimator would sit far above zero: keep the test able to fail.
    biased_offset = 2 * np.mean([(np.dot(v, v) / 8 + 1) ** 3 for v in rng.normal(size=(1000, 8))]) / 40
    assert biased_offset > 10 * standard_error


def test_kid_degree1_matches_mean_difference():
    # For k(x, y) = x.y/D + 1 the population MMD^2 is |mu_a - mu_b|^2 / D exactly.
    rng = np.random.default_rng(7)
    d = 16
    shift = np.full(d, 0.5)
    a = rng.normal(size=(4000, d))
    b = rng.normal(size=(4000, d)) + shift
    mean, std = kid_with_std(a, b, degree=1, num_subsets=50, subset_size=1000)
    assert mean == pytest.approx(shift @ shift / d, rel=0.1)
    assert std > 0.0


def test_kid_seeded_and_device_parameter():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 0.1
    assert kid(a, b, subset_size=100, num_subsets=5, seed=3) == kid(a, b, subset_size=100, num_subsets=5, seed=3)
    assert kid(a, b, subset_size=100, num_subsets=5, seed=3) != kid(a, b, subset_size=100, num_subsets=5, seed=4)
    ta = torch.from_numpy(a)
    assert kid(ta, b, subset_size=100, num_subsets=5, device="cpu") == pytest.approx(
        kid(a, b, subset_size=100, num_subsets=5), rel=1e-6
    )


def test_kid_rejects_subset_larger_than_set():
    a, b = np.zeros((50, 3)), np.zeros((80, 3))
    with pytest.raises(ValueError, match="subset_size.*'a'"):
        kid(a, b, subset_size=60)
    with pytest.raises(ValueError, match="subset_size"):
        kid(a, b, subset_size=1)
    with pytest.raises(ValueError, match="degree"):
        kid(a, b, degree=0, subset_size=10)


# ------------------------------------------------------------------ Diversity


def test_diversity_follows_documented_pair_scheme():
    x = np.random.default_rng(9).normal(size=(30, 7))
    rng = np.random.default_rng(11)
    first = rng.integers(0, 30, size=200)
    second = (first + 1 + rng.integers(0, 29, size=200)) % 30
    expected = np.mean([np.linalg.norm(x[i] - x[j]) for i, j in zip(first, second)])
    assert np.all(first != second)
    assert diversity(x, num_pairs=200, seed=11) == pytest.approx(expected, rel=1e-6)


def test_diversity_converges_to_bruteforce_mean_pairwise_distance():
    x = np.random.default_rng(10).normal(size=(40, 5))
    brute = np.mean([np.linalg.norm(x[i] - x[j]) for i, j in itertools.permutations(range(40), 2)])
    assert diversity(x, num_pairs=400_000, seed=0) == pytest.approx(brute, rel=5e-3)
    # The reference scheme (indices drawn independently) includes zero-distance self pairs: lower by (N-1)/N.
    assert diversity(x, num_pairs=400_000, seed=0, distinct=False) == pytest.approx(brute * 39 / 40, rel=5e-3)


def test_diversity_two_points_and_errors():
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert diversity(x, num_pairs=17) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="'feats'.*at least 2"):
        diversity(x[:1])
    with pytest.raises(ValueError, match="num_pairs"):
        diversity(x, num_pairs=0)


# ------------------------------------------------------------------ Precision / recall


def _manifold_fraction_bruteforce(support, queries, k):
    radii = []
    for p in support:
        dists = sorted(np.linalg.norm(p - q) for q in support)
        radii.append(dists[k])  # dists[0] is the point itself
    inside = 0
    for q in queries:
        if any(np.linalg.norm(q - p) <= r for p, r in zip(support, radii)):
            inside += 1
    return inside / len(queries)


def test_precision_recall_identical_sets_is_one():
    x = np.random.default_rng(12).normal(size=(200, 16))
    assert precision_recall(x, x.copy(), k=5) == (1.0, 1.0)


def test_precision_recall_far_apart_sets_is_zero():
    rng = np.random.default_rng(13)
    real = rng.normal(size=(150, 8))
    fake = rng.normal(size=(120, 8)) + 100.0
    assert precision_recall(real, fake, k=5) == (0.0, 0.0)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_bruteforce(k):
    rng = np.random.default_rng(14 + k)
    real = rng.normal(size=(60, 4))
    fake = rng.normal(size=(70, 4)) * 1.4 + 0.6
    expected = (_manifold_fraction_bruteforce(real, fake, k), _manifold_fraction_bruteforce(fake, real, k))
    assert 0.0 < expected[0] < 1.0 and 0.0 < expected[1] < 1.0
    got = precision_recall(real, fake, k=k, block_size=16, dtype=torch.float64)
    assert got == pytest.approx(expected, abs=1e-12)
    # float32 default agrees on generic data (no boundary ties).
    assert precision_recall(real, fake, k=k) == pytest.approx(expected, abs=1e-12)


def test_knn_radii_match_sorted_distances():
    x = torch.from_numpy(np.random.default_rng(20).normal(size=(50, 3)))
    full = torch.cdist(x, x)
    expected = torch.sort(full, dim=1).values[:, 4]
    torch.testing.assert_close(knn_radii(x, 4, block_size=7), expected)


def test_precision_recall_errors():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="'real'.*at least 6"):
        precision_recall(x, np.zeros((10, 3)), k=5)
    with pytest.raises(ValueError, match="'fake'.*NaN"):
        precision_recall(np.zeros((10, 3)), np.full((10, 3), np.nan), k=5)
    with pytest.raises(ValueError, match="'k'"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 3)), k=0)
