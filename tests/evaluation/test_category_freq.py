"""Category frequencies by nearest reference label: the labels equal a brute-force argmin, the reference labelled
against itself reproduces its frequencies, a mis-weighted sample set shows its total variation, and the protocol
refuses a reference without categories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen.evaluation.categories import (
    category_frequencies,
    category_report,
    nearest_labels,
    total_variation,
)
from interhandgen.evaluation.protocol import EvaluationSettings
from interhandgen.evaluation.protocol_additions import additional_metrics
from interhandgen.exceptions import InputError


def clusters(rng, counts, dim=5, spread=0.1):
    centres = rng.normal(scale=5.0, size=(len(counts), dim))
    labels = np.repeat(np.arange(len(counts)), counts)
    return centres[labels] + rng.normal(scale=spread, size=(len(labels), dim)), labels, centres


def test_nearest_labels_equal_brute_force():
    rng = np.random.default_rng(0)
    ref, lab = rng.normal(size=(70, 4)), rng.integers(0, 5, 70)
    q = rng.normal(size=(45, 4))
    brute = np.array([lab[np.argmin(((ref - x) ** 2).sum(1))] for x in q])
    assert np.array_equal(nearest_labels(q, ref, lab, block_size=8), brute)


def test_frequencies_and_total_variation_closed_form():
    assert np.allclose(category_frequencies(np.array([0, 0, 1, 3]), 4), [0.5, 0.25, 0, 0.25])
    assert total_variation([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(0.5)
    assert total_variation([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"\[0, 2\)"):
        category_frequencies(np.array([0, 2]), 2)


def test_report_recovers_a_misweighted_mix_and_the_floor_is_near_zero():
    rng = np.random.default_rng(1)
    ref, lab, centres = clusters(rng, [100, 100, 100, 100])
    floor = centres[np.repeat(np.arange(4), 100)] + rng.normal(scale=0.1, size=(400, 5))
    skew = centres[np.repeat(np.arange(4), [200, 100, 100, 0])] + rng.normal(scale=0.1, size=(400, 5))
    r = category_report(torch.as_tensor(skew), torch.as_tensor(ref), lab, ["a", "b", "c", "d"],
                        floor_features=torch.as_tensor(floor))
    assert r["names"] == ["a", "b", "c", "d"] and np.allclose(r["reference"], 0.25)
    assert np.allclose(r["samples"], [0.5, 0.25, 0.25, 0.0]) and r["tv_samples"] == pytest.approx(0.25)
    assert r["ratio_samples"] == pytest.approx([2.0, 1.0, 1.0, 0.0])
    assert r["tv_floor"] == pytest.approx(0.0)  # well-separated clusters: the nearest label is always right
    # The reference labelled against itself: every pair is its own nearest neighbour.
    same = category_report(ref, ref, lab, ["a", "b", "c", "d"])
    assert same["tv_samples"] == 0.0 and "floor" not in same


def test_protocol_refuses_a_reference_without_categories():
    feats = {"evaluator": torch.randn(20, 4)}
    settings = EvaluationSettings(density_coverage=False, c2st=False, categories=True)
    with pytest.raises(InputError, match="no 'category' labels.*--no-categories"):
        additional_metrics(feats, feats, None, None, None, settings, 10, {})
    out = additional_metrics(feats, feats, None, None, None, EvaluationSettings(density_coverage=False, c2st=False,
                                                                                categories=False), 10, {})
    assert out == {}
