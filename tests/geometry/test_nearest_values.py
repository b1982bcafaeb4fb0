"""Nearest-neighbour values and the within-radius search (interhandgen.geometry.points) against brute force."""

from __future__ import annotations

import torch

from interhandgen.geometry.points import mutual_nearest, nearest_squared_distances, nearest_within


def _clouds(B: int, N: int, M: int, seed: int, spread: float = 30.0, offset: float = 25.0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(B, N, 3, generator=g, dtype=torch.float64) * spread
    b = torch.randn(B, M, 3, generator=g, dtype=torch.float64) * spread + offset
    return a, b


def test_nearest_squared_distances_equal_brute_force():
    a, b = _clouds(5, 300, 200, seed=0)
    d = torch.cdist(a, b) ** 2  # the truth: every distance, then the minimum
    d_ab, d_ba = nearest_squared_distances(a, b, chunk_elems=50_000)
    torch.testing.assert_close(d_ab, d.amin(2), atol=1e-8, rtol=1e-10)
    torch.testing.assert_close(d_ba, d.amin(1), atol=1e-8, rtol=1e-10)
    # float32 (the sampler's dtype): within the expanded form's rounding of coordinates of ~100 (mm)
    d32_ab, _ = nearest_squared_distances(a.float(), b.float())
    torch.testing.assert_close(d32_ab.double(), d.amin(2), atol=2e-2, rtol=1e-4)
    assert (d32_ab >= 0).all()


def test_nearest_within_is_exact_for_the_points_within_the_radius():
    a, b = _clouds(7, 250, 180, seed=1)
    d = torch.cdist(a, b) ** 2
    radius_sq = 20.0 ** 2
    d_ab, d_ba = nearest_squared_distances(a, b)
    i_ab, within_a, i_ba, within_b = nearest_within(a, b, d_ab, d_ba, radius_sq, chunk=3)
    assert torch.equal(within_a, d.amin(2) < radius_sq) and torch.equal(within_b, d.amin(1) < radius_sq)
    assert 0 < within_a.sum() < within_a.numel()  # the radius splits the points
    assert torch.equal(i_ab[within_a], d.argmin(2)[within_a])
    assert torch.equal(i_ba[within_b], d.argmin(1)[within_b])
    assert (i_ab[~within_a] == 0).all() and (i_ba[~within_b] == 0).all()
    # An infinite radius searches everything: mutual_nearest's answer.
    j_ab, all_a, j_ba, _ = nearest_within(a, b, d_ab, d_ba, float("inf"))
    m_ab, m_ba = mutual_nearest(a, b)
    assert all_a.all() and torch.equal(j_ab, m_ab) and torch.equal(j_ba, m_ba)


def test_nearest_within_skips_pairs_with_nothing_within_the_radius():
    a, b = _clouds(3, 40, 30, seed=2, spread=5.0, offset=0.0)
    b[1] += 500.0  # pair 1 is far apart
    d_ab, d_ba = nearest_squared_distances(a, b)
    i_ab, within_a, i_ba, within_b = nearest_within(a, b, d_ab, d_ba, 10.0 ** 2)
    assert not within_a[1].any() and not within_b[1].any() and (i_ab[1] == 0).all()
    assert within_a[0].any() and within_a[2].any()


def test_mutual_nearest_one_way_is_the_first_direction():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(7, 50, 3, generator=g, dtype=torch.float64), torch.randn(7, 80, 3, generator=g,
                                                                               dtype=torch.float64)
    idx_ab, idx_ba = mutual_nearest(a, b)
    one, none = mutual_nearest(a, b, both=False)
    assert none is None and torch.equal(one, idx_ab)
    assert torch.equal(one, torch.cdist(a, b).argmin(dim=2))  # brute force
