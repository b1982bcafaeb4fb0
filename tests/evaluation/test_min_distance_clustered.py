"""Exact minimum vertex distance by cluster bounds (the evaluation's fast path) against brute force and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from interhandgen.geometry import min_distance
from interhandgen.geometry.queries import min_vertex_distance_clustered, vertex_clusters


def brute_force(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1)).min() for x, y in zip(a, b)])


def blobs(B: int, V: int, seed: int, gap: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random deformed point clouds of hand size (10 cm) per sample, the second shifted by gap [B] metres."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(V, 3, generator=g, dtype=torch.float64) * torch.tensor([0.05, 0.02, 0.01], dtype=torch.float64)
    a = base + 0.004 * torch.randn(B, V, 3, generator=g, dtype=torch.float64)
    b = base.flip(0) + 0.004 * torch.randn(B, V, 3, generator=g, dtype=torch.float64)
    b[:, :, 2] += torch.as_tensor(gap, dtype=torch.float64)[:, None]
    return a, b


@pytest.mark.parametrize("num_clusters,seed_pairs", [(1, 1), (7, 1), (16, 4), (300, 2)])
def test_clustered_min_distance_equals_brute_force(num_clusters, seed_pairs):
    gap = np.array([0.0, 0.005, 0.01, 0.02, 0.03, 0.08, 0.3, -0.01])
    a, b = blobs(len(gap), 300, 0, gap)
    clusters = vertex_clusters(a[0] * 1.3, num_clusters)  # partition from another shape: bounds are per pose
    clusters_b = vertex_clusters(b[3], num_clusters)
    d, evaluated = min_vertex_distance_clustered(a, b, clusters, clusters_b, chunk=3, seed_pairs=seed_pairs,
                                                 return_stats=True)
    truth = brute_force(a.numpy(), b.numpy())
    np.testing.assert_allclose(d.numpy(), truth, rtol=0, atol=1e-15)
    np.testing.assert_allclose(d.numpy(), min_distance(a, b).numpy(), rtol=0, atol=1e-15)
    if num_clusters == 16:
        # the pruning does prune: far fewer than all 256 cluster pairs, and fewer for far-apart hands
        assert evaluated.max() < 256 and evaluated[6] <= evaluated[0]


def test_clustered_min_distance_on_hands_equals_kdtree():
    from interhandgen.data.format import TwoHandSet
    from interhandgen.evaluation.protocol import canonical_two_hand_vertices, min_vertex_distance

    rng = np.random.default_rng(4)
    n = 12
    left = dict(pose=rng.normal(0, 0.5, (n, 45)), betas=rng.normal(0, 0.5, (n, 10)), global_orient=np.zeros((n, 3)),
                transl=np.zeros((n, 3)))
    transl = np.zeros((n, 3))
    transl[:, 0] = np.linspace(-0.02, 0.1, n)
    transl[-3:, 1] = 0.2  # three far-apart pairs
    right = dict(pose=rng.normal(0, 0.5, (n, 45)), betas=rng.normal(0, 0.5, (n, 10)),
                 global_orient=rng.normal(0, 0.3, (n, 3)), transl=transl)
    pairs = TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, hand_model="open_hand")
    models = pairs.hand_models()
    v = canonical_two_hand_vertices(pairs, models)
    got = min_vertex_distance(v[:, 0], v[:, 1], models["left"].v_template, models["right"].v_template)
    a, b = v[:, 0].double().numpy(), v[:, 1].double().numpy()
    truth = np.array([cKDTree(b[i]).query(a[i])[0].min() for i in range(n)])
    np.testing.assert_allclose(got, truth, rtol=0, atol=1e-12)
    assert (got < 0.002).any() and (got > 0.01).any()  # both contact and separated pairs are covered


def test_vertex_clusters_partition_and_errors():
    t = torch.randn(50, 3, dtype=torch.float64)
    centres, members = vertex_clusters(t, 6)
    assert centres.shape == (6,) and members.shape[0] == 6
    assert set(members.reshape(-1).tolist()) == set(range(50))
    for k in range(6):
        assert centres[k] in members[k]
    with pytest.raises(ValueError, match="num_clusters"):
        vertex_clusters(t, 51)
    with pytest.raises(ValueError, match="template"):
        vertex_clusters(t[None], 4)
    a = torch.zeros(2, 50, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="clusters_b"):
        min_vertex_distance_clustered(a, a[:, :40], (centres, members), (centres, members))
