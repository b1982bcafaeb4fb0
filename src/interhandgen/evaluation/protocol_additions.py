"""The protocol's distribution tests beyond FHID/KHID/precision/recall, each with its data floor.

- density and coverage (:mod:`interhandgen.evaluation.density_coverage`) on the subsets and k of precision/recall;
- the classifier two-sample test (:mod:`interhandgen.evaluation.two_sample`) on the evaluator features, on the
  interpretable joint features and on their relative-placement columns
  (:mod:`interhandgen.evaluation.joint_features`);
- per-category frequencies by nearest reference label (:mod:`interhandgen.evaluation.categories`).

The data floor is a second reference draw disjoint from the reference (e.g. the train split against the test
split), evaluated exactly like the samples: the value a generator that reproduced the data would get.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import torch

from interhandgen.evaluation.categories import category_report
from interhandgen.evaluation.density_coverage import density_coverage
from interhandgen.evaluation.joint_features import FEATURE_SETS
from interhandgen.evaluation.replication import replicate
from interhandgen.evaluation.two_sample import C2STSettings, classifier_two_sample_test
from interhandgen.exceptions import InputError

__all__ = ["density_coverage_replicated", "c2st_all", "additional_metrics"]


def density_coverage_replicated(fake: torch.Tensor, real: torch.Tensor, k: int, subset_size: int,
                                replications: int, seed: int) -> dict[str, Any]:
    """Density and coverage of fake [M, D] against real [N, D] over ``replications`` seeded subsets of
    ``subset_size`` (the same draws as precision/recall when called with its seed), mean and 95% t interval."""
    coverages: list[float] = []

    def density_keep_coverage(f, r):
        d, c = density_coverage(r, f, k=k)
        coverages.append(c)
        return d

    dens = replicate(density_keep_coverage, fake, real, num_replications=replications, subset_size=subset_size,
                     seed=seed)
    cov_iter = iter(coverages)
    cov = replicate(lambda f, r: next(cov_iter), fake, real, num_replications=replications, subset_size=subset_size,
                    seed=seed)
    return {"density": dens.as_dict(), "coverage": cov.as_dict()}


def c2st_all(groups: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], settings: C2STSettings,
             timings: dict[str, float], prefix: str) -> dict[str, Any]:
    """C2ST of each feature set in ``groups`` against the same-named ``reference`` set; the joint features are
    also tested on their named column subsets (:data:`FEATURE_SETS`)."""
    out = {}
    for name, feats in groups.items():
        views = {name: slice(None)} if name != "joints" else FEATURE_SETS
        for view, cols in views.items():
            t0 = time.perf_counter()
            out[view] = classifier_two_sample_test(feats[:, cols], reference[name][:, cols], settings)
            timings[f"c2st_{prefix}_{view}_s"] = time.perf_counter() - t0
    return out


def additional_metrics(features: dict[str, torch.Tensor], reference_features: dict[str, torch.Tensor],
                       floor_features: dict[str, torch.Tensor] | None, category: np.ndarray | None,
                       category_names: tuple[str, ...] | None, settings, pr_subset_size: int,
                       timings: dict[str, float]) -> dict[str, Any]:
    """Density/coverage, C2ST and category frequencies of the samples (and of the floor draw, when given).

    features / reference_features / floor_features: {"evaluator": [N, 256], "joints": [N, 135]} per set (the
    joint features only needed with ``settings.c2st``). ``category``/``category_names``: the reference's labels
    (needed with ``settings.categories``). ``settings``: the protocol's EvaluationSettings. Returns a JSON-ready
    dict with one entry per enabled test, each holding "samples" and "floor" (None when no floor draw is given).
    """
    out: dict[str, Any] = {}
    sets = {"samples": features, "floor": floor_features}
    real = reference_features["evaluator"]
    if settings.density_coverage:
        t0 = time.perf_counter()
        dc = functools.partial(density_coverage_replicated, k=settings.pr_k, subset_size=pr_subset_size,
                               replications=settings.replications, seed=settings.seed + 3)
        out["density_coverage"] = {name: None if f is None else dc(f["evaluator"], real) for name, f in sets.items()}
        out["density_coverage"]["k"] = settings.pr_k
        timings["density_coverage_s"] = time.perf_counter() - t0
    if settings.c2st:
        c2 = C2STSettings(folds=settings.c2st_folds, max_per_class=settings.c2st_max_per_class,
                          hidden=settings.c2st_hidden, epochs=settings.c2st_epochs, seed=settings.seed)
        out["c2st"] = {name: None if f is None else c2st_all(f, reference_features, c2, timings, name)
                       for name, f in sets.items()}
        out["c2st"]["settings"] = {"folds": c2.folds, "hidden": c2.hidden, "epochs": c2.epochs,
                                   "batch_size": c2.batch_size, "lr": c2.lr, "weight_decay": c2.weight_decay,
                                   "max_per_class": c2.max_per_class}
    if settings.categories:
        if category is None or category_names is None:
            raise InputError("the reference set has no 'category' labels, so per-category frequencies cannot be "
                             "computed: use a reference with categories or turn the test off (--no-categories)")
        t0 = time.perf_counter()
        out["categories"] = category_report(features["evaluator"], real, category, category_names,
                                            None if floor_features is None else floor_features["evaluator"])
        timings["categories_s"] = time.perf_counter() - t0
    return out
