"""Per-category frequencies of generated pairs, by the label of the nearest reference pair.

A generated pair has no category; it gets the label of its nearest reference pair in the evaluator's feature
space (Euclidean distance between the 256-d features of :mod:`interhandgen.evaluation.features`, the space of
FHID and precision/recall). The frequencies of these labels are compared with the reference's own category
frequencies by the total variation distance TV(p, q) = 1/2 sum_c |p_c - q_c| (0 = same mix, 1 = disjoint).

The nearest-neighbour labelling has errors of its own (a pair near a category boundary may take the neighbour
category), so a second reference draw labelled the same way (the data floor) gives the TV that a perfect
generator would get; the generated TV is read against it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from interhandgen.evaluation.metrics import _as_feature_tensor, _block_distances, _check_same_dim
from interhandgen.exceptions import InputError

__all__ = ["nearest_labels", "category_frequencies", "total_variation", "category_report"]


def nearest_labels(query: Any, reference: Any, reference_labels: Any, block_size: int = 1024,
                   device: torch.device | str | None = None) -> np.ndarray:
    """Label [M] (int64) of the nearest ``reference`` [N, D] row for each ``query`` [M, D] row.

    ``reference_labels`` [N] integers. Ties go to the lower reference index (torch.argmin). float32 distances.
    """
    if device is None:
        device = reference.device if isinstance(reference, torch.Tensor) else "cpu"
    q = _as_feature_tensor(query, "query", dtype=torch.float32, device=device)
    r = _as_feature_tensor(reference, "reference", dtype=torch.float32, device=device)
    _check_same_dim(q, r, "query", "reference")
    labels = np.asarray(reference_labels)
    if labels.shape != (r.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"reference_labels must be {r.shape[0]} integers (one per reference row), got "
                         f"shape {labels.shape} dtype {labels.dtype}")
    nearest = torch.cat([_block_distances(q[s:s + block_size], r).argmin(dim=1)
                         for s in range(0, q.shape[0], block_size)])
    return labels[nearest.cpu().numpy()].astype(np.int64)


def category_frequencies(labels: Any, num_categories: int) -> np.ndarray:
    """Fraction [C] of ``labels`` [N] (integers in [0, C)) in each category; sums to 1."""
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise InputError(f"labels must be a non-empty 1-d array, got shape {lab.shape}")
    if lab.min() < 0 or lab.max() >= num_categories:
        raise InputError(f"labels must lie in [0, {num_categories}), got range [{lab.min()}, {lab.max()}]")
    return np.bincount(lab, minlength=num_categories) / lab.size


def total_variation(p: Any, q: Any) -> float:
    """Total variation distance 1/2 sum |p - q| of two distributions [C] over the same categories."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise InputError(f"p and q must be 1-d of the same length, got shapes {p.shape} and {q.shape}")
    return float(0.5 * np.abs(p - q).sum())


def category_report(sample_features: Any, reference_features: Any, reference_labels: Any,
                    category_names: Sequence[str], floor_features: Any | None = None,
                    device: torch.device | str | None = None) -> dict[str, Any]:
    """Frequencies of the samples' nearest-reference labels against the reference's, with the floor beside.

    Returns a JSON-ready dict: ``names``, ``reference``, ``samples`` (and ``floor``) frequency lists,
    ``tv_samples`` (and ``tv_floor``), ``ratio_samples`` (samples / reference frequency per category, None where
    the reference has none), ``feature_space``.
    """
    names = list(category_names)
    ref_lab = np.asarray(reference_labels)
    ref = category_frequencies(ref_lab, len(names))
    out: dict[str, Any] = {"names": names, "reference": ref.tolist(),
                           "feature_space": "evaluator features (Euclidean nearest reference pair)"}
    groups = [("samples", sample_features)] + ([("floor", floor_features)] if floor_features is not None else [])
    for name, feats in groups:
        freq = category_frequencies(nearest_labels(feats, reference_features, ref_lab, device=device), len(names))
        out[name] = freq.tolist()
        out[f"tv_{name}"] = total_variation(freq, ref)
        out[f"ratio_{name}"] = [float(f / r) if r > 0 else None for f, r in zip(freq, ref)]
    return out
