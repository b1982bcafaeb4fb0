"""Tests of replicated evaluation and its t confidence interval."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from interhandgen.evaluation.metrics import diversity, fid, kid
from interhandgen.evaluation.replication import replicate, t_confidence_interval


def test_t_interval_matches_scipy():
    values = np.random.default_rng(0).normal(size=7)
    mean, std, low, high = t_confidence_interval(values, 0.9)
    expected = scipy.stats.t.interval(0.9, df=6, loc=values.mean(), scale=scipy.stats.sem(values))
    assert mean == pytest.approx(values.mean())
    assert std == pytest.approx(values.std(ddof=1))
    assert (low, high) == pytest.approx(expected, rel=1e-12)


def test_replicate_is_seeded_and_uses_subsets():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 4)), rng.normal(size=(300, 4)) + 0.2
    r1 = replicate(fid, a, b, num_replications=5, subset_size=100, seed=3)
    r2 = replicate(fid, torch.from_numpy(a), torch.from_numpy(b), num_replications=5, subset_size=100, seed=3)
    r3 = replicate(fid, a, b, num_replications=5, subset_size=100, seed=4)
    assert r1.values == pytest.approx(r2.values, rel=1e-10)
    assert r1.values != r3.values
    assert len(set(r1.values)) == 5
    assert r1.ci_low < r1.mean < r1.ci_high
    # The first replication is fid on the subsets the documented draw gives.
    draw = np.random.default_rng(3)
    ia, ib = draw.choice(400, 100, replace=False), draw.choice(300, 100, replace=False)
    assert r1.values[0] == pytest.approx(fid(a[ia], b[ib]), rel=1e-12)


def test_replicate_disjoint_subsets_do_not_overlap():
    x = np.arange(60, dtype=np.float64)[:, None]
    seen = []
    replicate(lambda s: seen.append(s[:, 0].copy()) or 0.0, x, num_replications=6, subset_size=10, disjoint=True)
    used = np.concatenate(seen)
    assert len(used) == 60 and len(np.unique(used)) == 60


def _expected_norm_of_difference(d: int) -> float:
    # x - x' ~ N(0, 2 I_d), so E|x - x'| = sqrt(2) * sqrt(2) * Gamma((d+1)/2) / Gamma(d/2).
    return 2.0 * float(np.exp(scipy.special.gammaln((d + 1) / 2) - scipy.special.gammaln(d / 2)))


def test_confidence_interval_coverage_diversity():
    d, trials, reps, n = 6, 500, 8, 30
    truth = _expected_norm_of_difference(d)
    rng = np.random.default_rng(2)
    metric = functools.partial(diversity, num_pairs=50, seed=0)
    covered = 0
    for t in range(trials):
        pool = rng.normal(size=(reps * n, d))
        res = replicate(metric, pool, num_replications=reps, subset_size=n, seed=t, disjoint=True)
        covered += res.ci_low <= truth <= res.ci_high
    coverage = covered / trials
    # Nominal 0.95; binomial standard error over 500 trials is about 0.01.
    assert 0.915 <= coverage <= 0.985, coverage


def test_confidence_interval_coverage_kid_two_sample():
    d, trials, reps, n = 4, 400, 6, 40
    shift = np.array([0.6, 0.0, 0.0, 0.0])
    truth = shift @ shift / d  # population MMD^2 of the degree-1 kernel
    rng = np.random.default_rng(3)
    metric = functools.partial(kid, degree=1, num_subsets=1, subset_size=n, kernel_dtype=torch.float64)
    covered = 0
    for t in range(trials):
        a = rng.normal(size=(reps * n, d))
        b = rng.normal(size=(reps * n, d)) + shift
        res = replicate(metric, a, b, num_replications=reps, subset_size=n, seed=t, disjoint=True)
        covered += res.ci_low <= truth <= res.ci_high
    assert 0.91 <= covered / trials <= 0.99, covered / trials


def test_replicate_errors():
    x = np.zeros((20, 2))
    with pytest.raises(ValueError, match="num_replications"):
        replicate(fid, x, x, num_replications=1, subset_size=5)
    with pytest.raises(ValueError, match="subset_size.*20 samples"):
        replicate(fid, x, x, num_replications=3, subset_size=25)
    with pytest.raises(ValueError, match="num_replications \\* subset_size"):
        replicate(fid, x, x, num_replications=3, subset_size=10, disjoint=True)
    with pytest.raises(ValueError, match="non-finite"):
        replicate(lambda s: float("nan"), x, num_replications=2, subset_size=5)
    with pytest.raises(TypeError, match="feature set 0"):
        replicate(fid, [1, 2, 3], x, num_replications=2, subset_size=2)
    with pytest.raises(ValueError, match="confidence"):
        t_confidence_interval([1.0, 2.0], confidence=1.5)
