"""Counts and contact/penetration statistics of a two-hand data set (``interhandgen data stats``)."""

from __future__ import annotations

import numpy as np
import torch

from interhandgen import geometry


def _counts(ids, names) -> dict[str, int]:
    counts = np.bincount(ids, minlength=len(names))
    return {name: int(c) for name, c in zip(names, counts)}


def random_subset(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` items drawn without replacement from ``seed`` (all of them when k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def dataset_statistics(two_hands, models=None, max_samples: int = 2000, volume_samples: int = 200, seed: int = 0,
                       device: str = "cpu", progress: bool = False) -> dict:
    """Counts and contact/penetration statistics of a TwoHandSet (distances in mm, volumes in cm^3)."""
    stats: dict = {"samples": len(two_hands), "pose_space": two_hands.pose_space,
                   "flat_hand_mean": two_hands.flat_hand_mean, "hand_model": two_hands.hand_model.kind}
    for key in ("category", "split", "object_id"):
        if key in two_hands.labels:
            ids, names = two_hands.labels[key]
            stats[f"per_{key}"] = _counts(ids, names)
    if "category" in two_hands.labels and "split" in two_hands.labels:
        cat, cat_names = two_hands.labels["category"]
        spl, spl_names = two_hands.labels["split"]
        stats["per_split_category"] = {s: _counts(cat[spl == i], cat_names) for i, s in enumerate(spl_names)}
    if models is None:
        return stats
    idx = random_subset(len(two_hands), max_samples, seed)
    sub = two_hands[idx]
    verts = sub.vertices(models, device=device, dtype=torch.float32, progress=progress)
    va, vb = verts["left"], verts["right"]
    fa, fb = models["left"].faces_np, models["right"].faces_np
    min_dist = geometry.min_distance(va, vb).double().cpu().numpy()
    depth = geometry.penetration_depth(va, fa, vb, fb, method="fast").double().cpu().numpy()
    groups = {"all": np.ones(len(sub), dtype=bool)}
    if "category" in sub.labels:
        ids, names = sub.labels["category"]
        groups.update({name: ids == i for i, name in enumerate(names)})
    vol_idx = random_subset(len(sub), volume_samples, seed + 1) if volume_samples > 0 else np.zeros(0, dtype=np.int64)
    volumes = np.full(len(sub), np.nan)
    if len(vol_idx):
        volumes[vol_idx] = geometry.penetration_volume(va[vol_idx].cpu(), fa, vb[vol_idx].cpu(), fb, progress=progress)
    thr = geometry.DEFAULT_PROXIMITY_THRESHOLD
    geo = {"evaluated_samples": int(len(sub)), "volume_samples": int(len(vol_idx)),
           "proximity_threshold_mm": thr * 1000.0, "per_group": {}}
    for name, mask in groups.items():
        if not mask.any():
            continue
        d, p = min_dist[mask] * 1000.0, depth[mask] * 1000.0
        v = volumes[mask & ~np.isnan(volumes)]
        geo["per_group"][name] = {
            "n": int(mask.sum()),
            "min_distance_mm": {"mean": float(d.mean()), "median": float(np.median(d)), "max": float(d.max())},
            "penetration_depth_mm": {"mean": float(p.mean()), "max": float(p.max()),
                                     "fraction_penetrating": float((p > 0).mean())},
            "proximity_ratio": geometry.proximity_ratio(torch.as_tensor(min_dist[mask]), thr),
            "penetration_volume_cm3": ({"n": int(len(v)), "mean": float(v.mean()), "max": float(v.max())}
                                       if len(v) else None),
        }
    stats["geometry"] = geo
    return stats
