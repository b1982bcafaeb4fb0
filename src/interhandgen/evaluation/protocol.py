"""The evaluation protocol: generated two-hand samples against a reference set.

Distribution metrics on learned features (FHID = Frechet distance, KHID = kernel distance, diversity,
precision/recall), each replicated over R seeded subsets with a 95% t confidence interval, and geometry metrics
on every generated pair: exact penetration volume (cm^3), penetration depth (mm), minimum distance (mm), contact
rate and proximity ratio. Nothing that cannot be measured is reported as 0: failures raise.

Both sets are brought into the canonical frame of the left hand (the frame the feature extractor is trained in),
so only the relative configuration of the hands matters, as in the paper.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import numpy as np
import torch

from interhandgen.data.canonical import canonical_vertices, to_canonical
from interhandgen.data.format import TwoHandSet
from interhandgen.evaluation.joint_features import joint_features
from interhandgen.evaluation.metrics import diversity, fid, kid, precision_recall
from interhandgen.evaluation.protocol_additions import additional_metrics
from interhandgen.evaluation.replication import replicate
from interhandgen.exceptions import InputError
from interhandgen.evaluation.cache import cached_reference_features
from interhandgen.evaluation.features import extract_features
from interhandgen.evaluation.object_features import canonical_object_points
from interhandgen.evaluation.object_protocol import ObjectSettings, object_set_metrics
from interhandgen.geometry import penetration_depth, penetration_volume, proximity_ratio
from interhandgen.geometry.queries import min_vertex_distance_clustered, vertex_clusters


@dataclasses.dataclass
class EvaluationSettings:
    replications: int = 5
    subset_size: int | None = None  # default: min(len(samples), len(reference), 10000) // 2, at least 2 * k
    kid_degree: int = 3
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    diversity_pairs: int = 200
    pr_k: int = 5
    pr_size: int = 1000  # precision/recall on this many samples per replication (paper: 1,000)
    contact_threshold_m: float = 0.002
    proximity_threshold_m: float = 0.01
    penetration: bool = True
    # Exact penetration depth on every penetrating pair (None), or on a seeded random subset of at most this many
    # penetrating pairs; the depth statistics are then estimates over that subset (reported with the count).
    depth_pairs: int | None = None
    seed: int = 0
    # Protocol additions (docs/evaluation.md): density/coverage beside precision/recall, the classifier two-sample
    # test on the evaluator and joint features, per-category frequencies by nearest reference label.
    density_coverage: bool = True
    c2st: bool = True
    c2st_folds: int = 5
    c2st_max_per_class: int | None = 10000
    c2st_hidden: int = 64
    c2st_epochs: int = 10
    categories: bool = True
    # Measured on the 2-core CPU: 64 extracts faster than 256 or 1024 (7.1 s vs 9.1 s vs 14.7 s per 1,000 pairs).
    feature_batch_size: int = 64


def check_compatible(samples: TwoHandSet, reference: TwoHandSet) -> None:
    """Fail loudly when two sets cannot be compared."""
    if samples.hand_model != reference.hand_model:
        raise InputError(f"samples use hand model {samples.hand_model}, the reference {reference.hand_model}: "
                         "evaluate sets made with the same hand model files")
    for name, s in (("samples", samples), ("reference", reference)):
        if len(s) < 2:
            raise InputError(f"{name} has {len(s)} pair(s); at least 2 are needed")


def canonical_two_hand_vertices(two: TwoHandSet, models, device="cpu", batch_size: int = 256,
                                with_joints: bool = False):
    """Vertices [N, 2, V, 3] (slot 0 left, slot 1 right) in the left hand's canonical frame, float32, metres.

    The canonical parameters are computed in float64, the hand forward in float32 (the vertices are returned in
    float32 anyway; float32 and batches of 256 measured 3.3x faster than float64 in batches of 4,096).
    ``with_joints``: return (vertices, joints [N, 2, 21, 3], canonical x [N, 2, 64]) instead.
    """
    x = to_canonical(two, models, anchor="left", device=device, dtype=torch.float64).x.float()
    chunks, joint_chunks = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            left, left_j = canonical_vertices(xb[:, 0], models["left"])
            right, right_j = canonical_vertices(xb[:, 1], models["right"])
            if left.shape[1] != right.shape[1]:
                raise InputError("the two hand models have different vertex counts; the feature extractor needs equal counts")
            chunks.append(torch.stack([left, right], dim=1).float())
            joint_chunks.append(torch.stack([left_j, right_j], dim=1).float())
    if with_joints:
        return torch.cat(chunks), torch.cat(joint_chunks), x
    return torch.cat(chunks)


def canonical_joint_features(two: TwoHandSet, models, device="cpu", batch_size: int = 256) -> torch.Tensor:
    """Interpretable features [N, 135] of :func:`interhandgen.evaluation.joint_features.joint_features`, computed
    batch by batch (the vertices of each batch are dropped)."""
    chunks = []
    for i in range(0, len(two), batch_size):
        _, joints, x = canonical_two_hand_vertices(two[i:i + batch_size], models, device, batch_size, with_joints=True)
        chunks.append(joint_features(x, joints))
    return torch.cat(chunks)


#: Clusters per hand of the exact minimum-distance search (fastest of 64, 128, 256 on 2,718-vertex hands).
MIN_DISTANCE_CLUSTERS = 128


def min_vertex_distance(verts_a: torch.Tensor, verts_b: torch.Tensor, template_a: torch.Tensor | None = None,
                        template_b: torch.Tensor | None = None) -> np.ndarray:
    """Smallest vertex-to-vertex distance [B] (float64, metres) between two hands [B, V, 3] and [B, W, 3].

    Same value as :func:`interhandgen.geometry.min_distance` without faces (tested), computed exactly with
    cluster bounds (:func:`interhandgen.geometry.queries.min_vertex_distance_clustered`): only the cluster pairs
    that can hold the minimum are evaluated. The clusters are a fixed partition of each hand's template
    (``template_a``/``template_b`` [V, 3]; default: the first sample); the bounds are recomputed per pose, so
    the value does not depend on the template. 5x faster than a k-d tree per pair on the 2-core CPU.
    """

    if verts_a.ndim != 3 or verts_b.ndim != 3 or verts_a.shape[0] != verts_b.shape[0] or verts_a.shape[2] != 3 \
            or verts_b.shape[2] != 3:
        raise InputError(f"verts_a and verts_b must have shapes [B, V, 3] and [B, W, 3], got "
                         f"{tuple(verts_a.shape)} and {tuple(verts_b.shape)}")
    template_a = verts_a[0] if template_a is None else template_a
    template_b = verts_b[0] if template_b is None else template_b
    clusters_a = vertex_clusters(template_a, min(MIN_DISTANCE_CLUSTERS, verts_a.shape[1]))
    clusters_b = vertex_clusters(template_b, min(MIN_DISTANCE_CLUSTERS, verts_b.shape[1]))
    return min_vertex_distance_clustered(verts_a, verts_b, clusters_a, clusters_b).cpu().numpy()


def geometry_metrics(verts: torch.Tensor, faces_left, faces_right, settings: EvaluationSettings,
                     progress: bool = True, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Per-pair geometry of [N, 2, V, 3] vertices: summary statistics plus the raw arrays (for plots).

    ``timings``, when given, receives the seconds of each part (min_distance_s, penetration_volume_s,
    penetration_depth_s).
    """

    timings = {} if timings is None else timings
    left, right = verts[:, 0], verts[:, 1]
    t0 = time.perf_counter()
    mind = min_vertex_distance(left, right)  # metres
    timings["min_distance_s"] = time.perf_counter() - t0
    out: dict[str, Any] = {
        "min_distance_mm": _summary(mind * 1000.0),
        "contact_rate": float((mind < settings.contact_threshold_m).mean()),
        "proximity_ratio": float(proximity_ratio(torch.as_tensor(mind), settings.proximity_threshold_m)),
        "thresholds_mm": {"contact": settings.contact_threshold_m * 1000, "proximity": settings.proximity_threshold_m * 1000},
        "_arrays": {"min_distance_mm": mind * 1000.0},
    }
    if settings.penetration:
        t0 = time.perf_counter()
        vol, boxes = penetration_volume(left, faces_left, right, faces_right, progress=progress, return_bounds=True)
        vol = np.asarray(vol, dtype=np.float64)
        timings["penetration_volume_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # Exact depth, computed only where the exact volume says the hands intersect (elsewhere it is exactly 0),
        # and there only for the vertices inside the intersection's bounding box (the others cannot be inside).
        hit = np.nonzero(vol > 0)[0]
        if settings.depth_pairs is not None:
            if settings.depth_pairs < 1:
                raise InputError(f"settings.depth_pairs must be None or >= 1, got {settings.depth_pairs}")
            if hit.size > settings.depth_pairs:
                rng = np.random.default_rng(settings.seed)
                hit = np.sort(rng.choice(hit, size=settings.depth_pairs, replace=False))
        depth_hit = np.zeros(0)
        if hit.size:
            idx = torch.as_tensor(hit)
            depth_hit = penetration_depth(left[idx], faces_left, right[idx], faces_right, method="exact",
                                          region=(boxes[hit, 0], boxes[hit, 1])).double().cpu().numpy()
        num_pen = int((vol > 0).sum())
        if hit.size == num_pen:
            depth = np.zeros(len(vol))
            depth[hit] = depth_hit
            out["penetration_depth_mm"] = _summary(depth * 1000.0)
            out["_arrays"]["penetration_depth_mm"] = depth * 1000.0
        else:
            # Mean over all pairs = (penetrating fraction) x (mean depth of penetrating pairs), estimated on the
            # subset; the other statistics are those of the subset of penetrating pairs.
            frac = num_pen / len(vol)
            sub = _summary(depth_hit * 1000.0)
            out["penetration_depth_mm"] = {"mean": frac * sub["mean"], "estimated_from_pairs": int(hit.size),
                                           "penetrating_pairs_summary": sub}
            out["_arrays"]["penetration_depth_mm_of_subset"] = depth_hit * 1000.0
        out["penetration_depth_mm"]["pairs_evaluated"] = int(hit.size)
        timings["penetration_depth_s"] = time.perf_counter() - t0
        out["penetration_volume_cm3"] = _summary(vol)
        out["penetrating_fraction"] = float(num_pen / len(vol))
        out["_arrays"]["penetration_volume_cm3"] = vol
    return out


def _summary(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def distribution_metrics(fake: torch.Tensor, real: torch.Tensor, settings: EvaluationSettings,
                         progress: bool = False, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """FHID, KHID, diversity, precision, recall on feature arrays [N, D], replicated with 95% CIs.

    ``timings``, when given, receives the seconds of each metric (fhid_s, khid_s, diversity_s, precision_recall_s).
    """
    n = min(fake.shape[0], real.shape[0])
    size = settings.subset_size if settings.subset_size is not None else max(2 * settings.pr_k + 2, min(n, 10000) // 2)
    if size < 1:  # 0 used to mean the default silently, while the report recorded 0
        raise ValueError(f"subset_size must be >= 1 (None: the default), got {size}")
    if size > n:
        raise InputError(f"subset_size {size} exceeds the smaller set ({n} samples)")
    R, seed = settings.replications, settings.seed
    ksize = min(settings.kid_subset_size, size)
    pr_size = min(settings.pr_size, size)
    timings = {} if timings is None else timings
    results = {}
    t0 = time.perf_counter()
    results["fhid"] = replicate(fid, fake, real, num_replications=R, subset_size=size, seed=seed, progress=progress)
    timings["fhid_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["khid"] = replicate(functools.partial(kid, degree=settings.kid_degree, num_subsets=settings.kid_subsets,
                                                  subset_size=ksize, seed=seed),
                                fake, real, num_replications=R, subset_size=size, seed=seed + 1)
    timings["khid_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    div = functools.partial(diversity, num_pairs=settings.diversity_pairs, seed=seed)
    results["diversity"] = replicate(div, fake, num_replications=R, subset_size=size, seed=seed + 2)
    results["diversity_reference"] = replicate(div, real, num_replications=R, subset_size=size, seed=seed + 2)
    timings["diversity_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # One precision_recall call per replication gives both numbers: the recall pass draws the same subsets (same
    # seed) and reads the recalls computed by the precision pass, in order.
    recalls: list[float] = []

    def precision_keep_recall(f, r):
        p, rec = precision_recall(r, f, k=settings.pr_k)
        recalls.append(rec)
        return p

    results["precision"] = replicate(precision_keep_recall, fake, real, num_replications=R, subset_size=pr_size,
                                     seed=seed + 3)
    recall_iter = iter(recalls)
    results["recall"] = replicate(lambda f, r: next(recall_iter), fake, real, num_replications=R,
                                  subset_size=pr_size, seed=seed + 3)
    timings["precision_recall_s"] = time.perf_counter() - t0
    out = {k: v.as_dict() for k, v in results.items()}
    out["_settings"] = {"subset_size": size, "kid_subset_size": ksize, "pr_size": pr_size, "replications": R}
    return out


def _set_features(two: TwoHandSet, extractor, models, settings: EvaluationSettings, device, progress: bool,
                  feature_cache: str | None, timings: dict[str, float], name: str):
    """Evaluator features [N, D] of a reference-like set, through the cache when one is given; returns
    (features, cache info or None)."""
    def compute() -> torch.Tensor:
        t1 = time.perf_counter()
        verts = canonical_two_hand_vertices(two, models, device)
        points = _object_points(extractor, two, models, device, name)
        timings[f"vertices_{name}_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        feats = extract_features(extractor, verts, batch_size=settings.feature_batch_size, progress=progress,
                                 object_points=points)
        timings[f"features_{name}_s"] = time.perf_counter() - t1
        return feats

    if feature_cache is None:
        return compute(), None
    t1 = time.perf_counter()
    feats, hit, path = cached_reference_features(extractor, two, compute, settings.feature_batch_size, device,
                                                 feature_cache)
    timings[f"{name}_features_cache_s" if hit else f"{name}_features_with_cache_write_s"] = time.perf_counter() - t1
    return feats, {"file": str(path), "hit": hit}


def _object_points(extractor, two: TwoHandSet, models, device, name: str) -> torch.Tensor | None:
    """Object points [N, Q, 3] for an object-aware extractor (raises for a set without objects), else None."""
    q = extractor.config.object_points
    return canonical_object_points(two, models, q, device, name) if q else None


def evaluate(samples: TwoHandSet, reference: TwoHandSet, extractor, settings: EvaluationSettings | None = None,
             device: str | torch.device = "cpu", progress: bool = True,
             reference_features: torch.Tensor | None = None, feature_cache: str | None = None,
             floor: TwoHandSet | None = None, objects: ObjectSettings | None = None) -> dict[str, Any]:
    """Run the whole protocol. Returns a JSON-ready dict (raw per-sample arrays under keys starting with '_').

    ``feature_cache``: a folder for the content-addressed reference-feature cache
    (:mod:`interhandgen.evaluation.cache`), or None (no cache). Ignored when ``reference_features`` is given.
    ``floor``: a second reference draw, disjoint from ``reference``, evaluated like the samples by the protocol
    additions (density/coverage, C2ST, category frequencies) as their data floor; None: no floor columns.
    ``objects``: also run the hand-object protocol (:mod:`interhandgen.evaluation.object_protocol`) on the samples
    and the floor, and give the floor its own rows of every table (FHID/KHID/P/R/diversity, hand-hand geometry).
    An object-aware extractor (``config.object_points > 0``) gets each set's object points (sets without an
    object library then raise).
    """
    settings = settings or EvaluationSettings()
    check_compatible(samples, reference)
    if floor is not None:
        check_compatible(floor, reference)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    models = samples.hand_models(device=device)
    fake_v, fake_j, fake_x = canonical_two_hand_vertices(samples, models, device, with_joints=True)
    timings["vertices_samples_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    feats_fake = extract_features(extractor, fake_v, batch_size=settings.feature_batch_size, progress=progress,
                                  object_points=_object_points(extractor, samples, models, device, "samples"))
    timings["features_samples_s"] = time.perf_counter() - t1
    cache_info = None
    if reference_features is None:
        feats_real, cache_info = _set_features(reference, extractor, models, settings, device, progress,
                                               feature_cache, timings, "reference")
    else:
        if reference_features.shape[0] != len(reference):
            raise InputError(f"reference_features has {reference_features.shape[0]} rows but the reference set "
                             f"{len(reference)} pairs")
        feats_real = reference_features
    timings["features_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    dist = distribution_metrics(feats_fake, feats_real, settings, timings=timings)
    timings["distribution_metrics_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    extra = {}
    additions = settings.density_coverage or settings.c2st or settings.categories
    floor_eval = None
    if floor is not None and (additions or objects is not None):
        floor_eval = _set_features(floor, extractor, models, settings, device, progress, feature_cache, timings,
                                   "floor")[0]
    if additions:
        floor_feats = None if floor_eval is None else {"evaluator": floor_eval}
        fake_feats, real_feats = {"evaluator": feats_fake}, {"evaluator": feats_real}
        if settings.c2st:
            t2 = time.perf_counter()
            fake_feats["joints"] = joint_features(fake_x, fake_j)
            real_feats["joints"] = canonical_joint_features(reference, models, device)
            if floor_feats is not None:
                floor_feats["joints"] = canonical_joint_features(floor, models, device)
            timings["joint_features_s"] = time.perf_counter() - t2
        extra = additional_metrics(fake_feats, real_feats, floor_feats, reference.category, reference.category_names,
                                   settings, dist["_settings"]["pr_size"], timings)
        extra["num_floor"] = None if floor is None else len(floor)
    timings["protocol_additions_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    geo = geometry_metrics(fake_v, models["left"].faces_np, models["right"].faces_np, settings, progress, timings)
    timings["geometry_s"] = time.perf_counter() - t2
    obj_result = None
    if objects is not None:
        obj_result = {"samples": object_set_metrics(samples, models, objects, progress, timings, "samples"),
                      "settings": dataclasses.asdict(objects), "num_floor": None if floor is None else len(floor)}
        if floor is not None:
            obj_result["floor"] = object_set_metrics(floor, models, objects, progress, timings, "floor")
            obj_result["distribution_floor"] = distribution_metrics(floor_eval, feats_real, settings)
            floor_v = canonical_two_hand_vertices(floor, models, device)
            obj_result["geometry_floor"] = geometry_metrics(floor_v, models["left"].faces_np,
                                                            models["right"].faces_np, settings, progress)
    timings["total_s"] = time.perf_counter() - t0
    return {
        "num_samples": len(samples), "num_reference": len(reference),
        "hand_model": samples.hand_model.kind,
        "distribution": dist, "additions": extra, "geometry": geo, "objects": obj_result, "timings": timings,
        "settings": dataclasses.asdict(settings), "reference_feature_cache": cache_info,
        "_features": {"samples": feats_fake, "reference": feats_real}, "_vertices": fake_v,
    }
