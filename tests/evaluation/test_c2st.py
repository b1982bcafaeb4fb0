"""Classifier two-sample test: chance on two draws of one distribution, ~1 on separated ones, the AUC equals a
brute-force Mann-Whitney count, folds are stratified, and the result is a function of the seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interhandgen.evaluation.two_sample import (
    C2STSettings,
    classifier_two_sample_test,
    mann_whitney_auc,
    stratified_folds,
)
from interhandgen.exceptions import InputError

FAST = C2STSettings(folds=4, hidden=32, epochs=8, batch_size=256, lr=3e-3)


def brute_force_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = 0.0
    for p in pos:
        for q in neg:
            wins += 1.0 if p > q else 0.5 if p == q else 0.0
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_brute_force_mann_whitney_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=57).astype(float)  # many ties
    labels = rng.integers(0, 2, size=57)
    assert mann_whitney_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)
    continuous = rng.normal(size=40)
    lab = (np.arange(40) % 3 == 0).astype(int)
    assert mann_whitney_auc(continuous, lab) == pytest.approx(brute_force_auc(continuous, lab), abs=1e-12)


def test_auc_rejects_one_class_and_bad_labels():
    with pytest.raises(InputError, match="both classes"):
        mann_whitney_auc([0.1, 0.2], [1, 1])
    with pytest.raises(InputError, match="0 or 1"):
        mann_whitney_auc([0.1, 0.2], [1, 2])


def test_stratified_folds_balance_each_class():
    rng = np.random.default_rng(0)
    fold = stratified_folds(23, 5, rng)
    for c in range(2):
        counts = np.bincount(fold[c * 23:(c + 1) * 23], minlength=5)
        assert counts.sum() == 23 and counts.max() - counts.min() <= 1


def test_same_distribution_gives_chance_accuracy():
    g = torch.Generator().manual_seed(0)
    n = 2000
    a, b = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
    r = classifier_two_sample_test(a, b, FAST)
    assert r["n_per_class"] == n and r["folds"] == 4 and r["dim"] == 8
    # Pooled held-out accuracy of a chance classifier: Binomial(2n, 1/2) / 2n; 3.3 sigma = a 99.9% interval.
    band = 3.3 * 0.5 / math.sqrt(2 * n)
    assert abs(r["pooled_accuracy"] - 0.5) < band
    assert r["chance_halfwidth_95"] == pytest.approx(1.96 * 0.5 / math.sqrt(2 * n))
    # AUC under the null: Var = (n1 + n2 + 1) / (12 n1 n2) per fold; the fold mean is within 3.3 of its sigma.
    m = n // 4
    assert abs(r["auc"]["mean"] - 0.5) < 3.3 * math.sqrt((2 * m + 1) / (12 * m * m) / 4)
    assert r["p_value"] > 0.001


def test_separated_distributions_give_accuracy_near_one():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1000, 8, generator=g), torch.randn(1000, 8, generator=g)
    b[:, 3] += 6.0  # Bayes accuracy Phi(3) = 0.9987
    r = classifier_two_sample_test(a, b, FAST)
    assert r["accuracy"]["mean"] > 0.98 and r["auc"]["mean"] > 0.99 and r["p_value"] < 1e-100
    # A non-linear difference (same mean, 3x the spread in one coordinate) is also found.
    c = torch.randn(1000, 8, generator=g)
    c[:, 0] *= 3.0
    r = classifier_two_sample_test(a, c, FAST)
    assert r["accuracy"]["mean"] > 0.62 and r["accuracy"]["ci_low"] > 0.5


def test_same_seed_same_result_and_the_seed_matters():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(300, 5, generator=g), torch.randn(400, 5, generator=g) + 0.3
    r1 = classifier_two_sample_test(a, b, FAST)
    r2 = classifier_two_sample_test(a.clone(), b.numpy().copy(), FAST)
    assert r1 == r2
    r3 = classifier_two_sample_test(a, b, C2STSettings(**{**FAST.__dict__, "seed": 1}))
    assert r3["accuracy"]["values"] != r1["accuracy"]["values"]
    # n = min(300, 400) rounded down to a multiple of the folds.
    assert r1["n_per_class"] == 300


def test_constant_feature_and_invalid_inputs():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    a[:, 2] = b[:, 2] = 1.5  # constant column: no division by zero, no NaN
    r = classifier_two_sample_test(a, b, FAST)
    assert np.isfinite(r["accuracy"]["values"]).all()
    with pytest.raises(ValueError, match="same feature dimension"):
        classifier_two_sample_test(a, b[:, :3], FAST)
    with pytest.raises(InputError, match="folds"):
        classifier_two_sample_test(a, b, C2STSettings(folds=1))
    bad = a.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        classifier_two_sample_test(bad, b, FAST)
