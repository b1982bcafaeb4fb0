"""Evaluation of generated two-hand interactions: distribution metrics on learned features, replications,
and the point-cloud feature extractor that produces the features.

See docs/evaluation.md for definitions and choices.
"""

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
from interhandgen.evaluation.replication import ReplicationResult, replicate, t_confidence_interval

__all__ = [
    "diversity",
    "feature_statistics",
    "fid",
    "fid_from_statistics",
    "kid",
    "kid_subset_values",
    "kid_with_std",
    "knn_radii",
    "precision_recall",
    "ReplicationResult",
    "replicate",
    "t_confidence_interval",
]
