"""Density and coverage against a brute-force loop and closed forms: identical sets give coverage 1 and density
(k + 1) / k exactly; an independent draw of the same distribution gives density 1 in expectation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen.evaluation.density_coverage import density_coverage
from interhandgen.evaluation.protocol_additions import density_coverage_replicated


def brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    n = len(real)
    radii = np.empty(n)
    for i in range(n):
        d = sorted(np.linalg.norm(real[i] - real[j]) for j in range(n) if j != i)
        radii[i] = d[k - 1]
    inside = np.array([[np.linalg.norm(f - real[i]) <= radii[i] for i in range(n)] for f in fake])
    return inside.sum() / (k * len(fake)), inside.any(axis=0).mean()


@pytest.mark.parametrize("seed,k", [(0, 1), (1, 3), (2, 5)])
def test_matches_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(40, 3)), rng.normal(0.3, 1.2, size=(33, 3))
    d, c = density_coverage(real, fake, k=k, dtype=torch.float64, block_size=7)
    bd, bc = brute_force(real, fake, k)
    assert d == pytest.approx(bd, abs=1e-12) and c == pytest.approx(bc, abs=1e-12)


def test_identical_sets_closed_form():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 6))
    for k in (1, 5):
        d, c = density_coverage(x, x, k=k, dtype=torch.float64)
        # Each ball holds its centre and exactly k neighbours (no ties in continuous data): sum = N (k + 1).
        assert c == 1.0 and d == pytest.approx((k + 1) / k, abs=1e-12)


def test_density_of_an_independent_draw_is_one_in_expectation():
    # E[#balls holding y] = N * E[mass of a k-NN ball] = N * k / N, so E[density] = 1 at any N (Naeem et al. 2020).
    rng = np.random.default_rng(4)
    values = [density_coverage(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)), k=5)[0] for _ in range(20)]
    mean, sem = np.mean(values), np.std(values, ddof=1) / np.sqrt(len(values))
    assert abs(mean - 1.0) < max(4 * sem, 0.02)


def test_disjoint_sets_give_zero():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(50, 3))
    d, c = density_coverage(real, real + 100.0, k=3)
    assert d == 0.0 and c == 0.0


def test_replicated_uses_the_same_subsets_for_both_and_is_seeded():
    rng = np.random.default_rng(6)
    fake, real = torch.as_tensor(rng.normal(size=(80, 3))), torch.as_tensor(rng.normal(size=(90, 3)))
    a = density_coverage_replicated(fake, real, k=3, subset_size=30, replications=3, seed=0)
    b = density_coverage_replicated(fake, real, k=3, subset_size=30, replications=3, seed=0)
    assert a == b and a["density"]["num_replications"] == 3
    assert all(0 <= v <= 1 for v in a["coverage"]["values"])


def test_invalid_inputs():
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match="at least 6 samples"):
        density_coverage(rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), k=5)
    with pytest.raises(ValueError, match="same feature dimension"):
        density_coverage(rng.normal(size=(10, 2)), rng.normal(size=(10, 3)), k=2)
