"""Evaluation of generated two-hand interactions: distribution metrics on learned features, replications,
and the point-cloud feature extractor that produces the features.

See docs/evaluation.md for definitions and choices.
"""

from interhandgen.evaluation.features import (
    FeatureExtractorConfig,
    TwoHandPointNet,
    extract_features,
    load_feature_extractor,
    mirror_feature_gap,
    mirror_two_hands,
    save_feature_extractor,
    select_vertex_indices,
    train_feature_extractor,
)
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
from interhandgen.evaluation.two_sample import C2STSettings, classifier_two_sample_test, mann_whitney_auc
from interhandgen.evaluation.density_coverage import density_coverage
from interhandgen.evaluation.categories import category_report, nearest_labels, total_variation
from interhandgen.evaluation.joint_features import joint_features

__all__ = [
    "FeatureExtractorConfig",
    "TwoHandPointNet",
    "extract_features",
    "load_feature_extractor",
    "mirror_feature_gap",
    "mirror_two_hands",
    "save_feature_extractor",
    "select_vertex_indices",
    "train_feature_extractor",
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
    "C2STSettings",
    "classifier_two_sample_test",
    "mann_whitney_auc",
    "density_coverage",
    "category_report",
    "nearest_labels",
    "total_variation",
    "joint_features",
]
