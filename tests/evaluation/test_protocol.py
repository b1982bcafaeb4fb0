"""The evaluation protocol glue: replicated distribution metrics and per-pair geometry on open hands."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.evaluation.protocol import (
    EvaluationSettings,
    canonical_two_hand_vertices,
    check_compatible,
    distribution_metrics,
    geometry_metrics,
)
from interhandgen.evaluation.report import markdown_table, public
from interhandgen.hand import open_hand


def pairs(offsets) -> TwoHandSet:
    n = len(offsets)
    zeros = lambda k: np.zeros((n, k))  # noqa: E731
    left = dict(pose=zeros(45), betas=zeros(10), global_orient=zeros(3), transl=zeros(3))
    right = dict(pose=zeros(45), betas=zeros(10), global_orient=zeros(3), transl=np.asarray(offsets, float))
    return TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, hand_model="open_hand")


def test_distribution_metrics_separate_far_sets_and_accept_same_distribution():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 8, generator=g)
    same = torch.randn(400, 8, generator=g)
    far = same + 50.0
    s = EvaluationSettings(replications=3, subset_size=150, kid_subset_size=100, kid_subsets=10)
    near, away = distribution_metrics(same, real, s), distribution_metrics(far, real, s)
    assert away["precision"]["mean"] == 0.0 and away["recall"]["mean"] == 0.0
    assert away["fhid"]["mean"] > 100 * max(near["fhid"]["mean"], 1e-3)
    assert near["precision"]["mean"] > 0.7 and near["recall"]["mean"] > 0.7
    assert near["fhid"]["ci_low"] <= near["fhid"]["mean"] <= near["fhid"]["ci_high"]


def test_geometry_metrics_on_open_hands():
    models = {"left": open_hand("left"), "right": open_hand("right")}
    # the right hand at +30 cm is far away; at the same place as the left one it overlaps its mirror image
    two = pairs([[0.3, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.01]])
    verts = canonical_two_hand_vertices(two, models)
    assert verts.shape == (3, 2, models["left"].num_verts, 3)
    geo = geometry_metrics(verts, models["left"].faces_np, models["right"].faces_np, EvaluationSettings(),
                           progress=False)
    vol, depth = geo["_arrays"]["penetration_volume_cm3"], geo["_arrays"]["penetration_depth_mm"]
    assert vol[0] == 0.0 and depth[0] == 0.0
    assert (vol[1:] > 1.0).all() and (depth[1:] > 1.0).all()
    assert geo["_arrays"]["min_distance_mm"][0] > 100
    assert geo["contact_rate"] == pytest.approx(2 / 3)
    result = {"num_samples": 3, "num_reference": 3, "settings": {"kid_degree": 3, "replications": 3},
              "distribution": distribution_metrics(torch.randn(40, 4), torch.randn(40, 4),
                                                   EvaluationSettings(replications=2, subset_size=20,
                                                                      kid_subset_size=10, kid_subsets=5)),
              "geometry": geo, "timings": {"total_s": 1.0}}
    assert "Penetration volume" in markdown_table(result)
    assert "_arrays" not in public(result)["geometry"]


def test_mismatched_hand_models_fail_loudly():
    a = pairs([[0.1, 0, 0], [0.2, 0, 0]])
    b = a.with_hand_model(HandModelSpec.mano())
    with pytest.raises(ValueError, match="same hand model"):
        check_compatible(a, b)
    with pytest.raises(ValueError, match="at least 2"):
        check_compatible(a[:1], a)


def test_min_vertex_distance_equals_the_geometry_module():
    from interhandgen.evaluation.protocol import min_vertex_distance
    from interhandgen.geometry import min_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 300, 3, generator=g, dtype=torch.float64) * 0.05
    b = torch.randn(6, 250, 3, generator=g, dtype=torch.float64) * 0.05 + torch.linspace(0, 0.3, 6)[:, None, None]
    np.testing.assert_allclose(min_vertex_distance(a, b), min_distance(a, b).numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"\[B, V, 3\]"):
        min_vertex_distance(a, b[:5])
