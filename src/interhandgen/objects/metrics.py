"""Hand-object geometry and physics metrics of a TwoHandSet with objects (exact; nothing silently 0).

Per pair and hand: the exact penetration volume with the object (manifold3d booleans,
:func:`interhandgen.geometry.penetration_volume`, cm^3), the exact penetration depth (deepest vertex of the hand
inside the object or of the object inside the hand, :func:`interhandgen.geometry.penetration_depth`, mm), the
minimum hand-object distance (exact vertex-to-surface both ways, :func:`interhandgen.geometry.min_distance`, mm)
and contact (distance below 2 mm, or any penetration); contact of both hands; and the MuJoCo stability test
(:mod:`interhandgen.objects.physics`). Every function raises when the set has no object library, or when a
quantity cannot be computed.

The object of pair i is ``object_library`` entry ``object_id[i]`` placed by ``object_pose[i]`` = (articulation,
axis-angle rotation [3], translation [3] in metres): world = R v + t (articulation must be 0 for rigid library
objects).
"""

from __future__ import annotations

import hashlib
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from interhandgen import geometry
from interhandgen.geometry.decompose import convex_parts
from interhandgen.exceptions import InputError
from interhandgen.objects.physics import (PhysicsConfig, convex_part_indices, require_mujoco, simulate_drop,
                                          simulate_motion)
from interhandgen.rotations import axis_angle_to_matrix

__all__ = ["CONTACT_THRESHOLD", "require_objects", "object_rotation", "object_world_vertices", "hand_object_metrics",
           "summarise_hand_object", "object_stability", "object_motion", "hand_object_contact", "wilson_interval",
           "bootstrap_mean_interval"]

#: A hand touches the object when closer than this (metres), as for two hands.
CONTACT_THRESHOLD = 0.002
SIDES = ("left", "right")


def require_objects(two_hands, name: str = "this two-hand set") -> Any:
    """The set's object library; InputError naming ``name`` when it has none or an articulation is not 0."""
    if getattr(two_hands, "object_library", None) is None:
        raise InputError(f"{name} has no object library (fields 'object_library_*'); hand-object metrics and the "
                         "object-aware evaluator need one (interhandgen data synth --objects)")
    if np.any(two_hands.object_pose[:, 0] != 0.0):
        raise InputError(f"{name}: field 'object_pose': articulated objects (articulation != 0) are not library "
                         "objects (ARCTIC conversion bakes the articulation into library entries)")
    return two_hands.object_library


def object_rotation(object_pose: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotations of ``object_pose`` [N, 7] (axis-angle in columns 1..3)."""
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(object_pose)[:, 1:4], dtype=torch.float64)).numpy()


def object_world_vertices(vertices: np.ndarray, object_pose: np.ndarray) -> np.ndarray:
    """[N, V, 3] world vertices of one object [V, 3] placed by poses [N, 7]."""
    R = object_rotation(object_pose)
    return np.einsum("nij,vj->nvi", R, np.asarray(vertices, dtype=np.float64)) + np.asarray(object_pose)[:, None, 4:7]


def _groups(ids: np.ndarray):
    for k in np.unique(ids):
        yield int(k), np.flatnonzero(ids == k)


def hand_object_metrics(two_hands, models: dict | None = None, device: str | torch.device = "cpu",
                        volume: bool = True, progress: bool = False) -> dict[str, np.ndarray]:
    """Per-pair hand-object metrics of a set with objects.

    Returns a dict of [N] arrays: ``{side}_penetration_volume_cm3`` (only with ``volume``),
    ``{side}_penetration_depth_mm``, ``{side}_min_distance_mm``, ``{side}_contact`` (bool) for side in left/right,
    and ``both_contact`` (bool).
    """
    from tqdm import tqdm


    library = require_objects(two_hands)
    models = models if models is not None else two_hands.hand_models(device=device)
    hands = two_hands.vertices(models, device=device, dtype=torch.float64)
    n = len(two_hands)
    out: dict[str, np.ndarray] = {}
    for side in SIDES:
        for key in ("penetration_depth_mm", "min_distance_mm") + (("penetration_volume_cm3",) if volume else ()):
            out[f"{side}_{key}"] = np.full(n, np.nan)
    groups = list(_groups(two_hands.object_id))
    for k, idx in tqdm(groups, desc="hand-object metrics", disable=not progress):
        obj = torch.as_tensor(object_world_vertices(library.vertices[k], two_hands.object_pose[idx]),
                              dtype=torch.float64, device=hands["left"].device)
        faces_o = library.faces[k]
        for side in SIDES:
            hv = hands[side][torch.as_tensor(idx, device=hands[side].device)]
            faces_h = models[side].faces_np
            region = None
            if volume:
                vol, boxes = geometry.penetration_volume(hv.cpu(), faces_h, obj.cpu(), faces_o, num_workers=1,
                                                         return_bounds=True)
                out[f"{side}_penetration_volume_cm3"][idx] = vol
                region = (boxes[:, 0], boxes[:, 1])
            depth = geometry.penetration_depth(hv, faces_h, obj, faces_o, method="exact", region=region)
            out[f"{side}_penetration_depth_mm"][idx] = depth.cpu().numpy() * 1000.0
            dist = geometry.min_distance(hv, obj, faces_h, faces_o)
            out[f"{side}_min_distance_mm"][idx] = dist.cpu().numpy() * 1000.0
    for side in SIDES:
        for key in list(out):
            if key.startswith(side) and np.isnan(out[key]).any():
                raise RuntimeError(f"hand-object metric '{key}' was not computed for every pair")
        out[f"{side}_contact"] = ((out[f"{side}_min_distance_mm"] < CONTACT_THRESHOLD * 1000.0)
                                  | (out[f"{side}_penetration_depth_mm"] > 0))
    out["both_contact"] = out["left_contact"] & out["right_contact"]
    return out


def hand_object_contact(two_hands, models: dict | None = None) -> np.ndarray:
    """[N] bool: both hands of each pair within :data:`CONTACT_THRESHOLD` of its object by the exact vertex-to-surface
    distance (both ways, :func:`interhandgen.geometry.min_distance`): ``both_contact`` of :func:`hand_object_metrics`
    without its volume and depth passes, except that a hand with every vertex farther than that from the surface
    counts as apart even when it is inside the object (stricter)."""
    library = require_objects(two_hands)
    models = models if models is not None else two_hands.hand_models()
    hands = two_hands.vertices(models, dtype=torch.float64)
    out = np.ones(len(two_hands), dtype=bool)
    for k, idx in _groups(two_hands.object_id):
        obj = torch.as_tensor(object_world_vertices(library.vertices[k], two_hands.object_pose[idx]),
                              dtype=torch.float64)
        for side in SIDES:
            hv = hands[side][torch.as_tensor(idx)].cpu()
            dist = geometry.min_distance(hv, obj, models[side].faces_np, library.faces[k])
            out[idx] &= dist.numpy() < CONTACT_THRESHOLD
    return out


#: Resamples of :func:`bootstrap_mean_interval` and its fixed seed (the same figures give the same interval).
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 0
#: Per-hand penetration volumes (cm^3) whose shares of hands :func:`summarise_hand_object` reports.
VOLUME_TAILS_CM3 = (0.1, 1.0)
#: Bootstrap indices drawn at once (8M: 64 MB), so that sets of any size fit in memory.
_BOOTSTRAP_CHUNK = 1 << 23


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval (default ``z``) of a rate ``successes`` / ``n``: unlike the normal approximation it
    stays inside [0, 1] and is not empty at 0 or n successes (a held fraction of 0.17 or a contact rate of 1.00)."""
    if n < 1 or not 0 <= successes <= n:
        raise InputError(f"wilson_interval: need n >= 1 and 0 <= successes <= n, got {successes} of {n}")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at 0 (n) successes the lower (upper) end is exactly 0 (1); the formula reaches it up to rounding
    lo = 0.0 if successes == 0 else float(max(0.0, centre - half))
    hi = 1.0 if successes == n else float(min(1.0, centre + half))
    return lo, hi


def bootstrap_mean_interval(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                            ) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of ``values`` [n] (independent units, e.g. pairs); fixed
    seed. Penetration volumes are heavy-tailed (a few hands with centimetres^3 carry the mean), where a normal
    interval would reach below 0."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 1 or not np.isfinite(v).all():
        raise InputError(f"bootstrap_mean_interval: need a non-empty finite 1-D array, got shape {v.shape}")
    rng = np.random.default_rng(seed)
    # resamples drawn in chunks of about _BOOTSTRAP_CHUNK indices: the same stream, hence the same interval, as one draw
    step = max(1, _BOOTSTRAP_CHUNK // v.size)
    means = np.concatenate([v[rng.integers(0, v.size, size=(min(step, resamples - i), v.size))].mean(axis=1)
                            for i in range(0, resamples, step)])
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise_hand_object(metrics: dict[str, np.ndarray], stability: dict[str, np.ndarray] | None = None) -> dict:
    """Set-level figures of :func:`hand_object_metrics` (and :func:`object_stability`): means per hand, rates, with
    95 % intervals (Wilson for rates; percentile bootstrap over pairs for the per-hand penetration mean, whose two
    hands of a pair are resampled together) and the volume's tail (shares of hands above :data:`VOLUME_TAILS_CM3`,
    share of the total volume in the largest 1 % of hands)."""
    summary: dict[str, Any] = {"pairs": int(len(metrics["both_contact"]))}
    for side in SIDES:
        s = {"contact_rate": float(metrics[f"{side}_contact"].mean()),
             "penetration_depth_mm": {"mean": float(metrics[f"{side}_penetration_depth_mm"].mean()),
                                      "max": float(metrics[f"{side}_penetration_depth_mm"].max())},
             "min_distance_mm": {"mean": float(metrics[f"{side}_min_distance_mm"].mean()),
                                 "median": float(np.median(metrics[f"{side}_min_distance_mm"]))}}
        key = f"{side}_penetration_volume_cm3"
        if key in metrics:
            s["penetration_volume_cm3"] = {"mean": float(metrics[key].mean()), "max": float(metrics[key].max())}
        summary[side] = s
    both = np.asarray(metrics["both_contact"], dtype=bool)
    summary["both_contact_rate"] = float(both.mean())
    summary["both_contact_rate_ci95"] = list(wilson_interval(int(both.sum()), int(both.size)))
    vols = [metrics[f"{s}_penetration_volume_cm3"] for s in SIDES if f"{s}_penetration_volume_cm3" in metrics]
    if vols:
        hands = np.concatenate(vols)
        summary["penetration_volume_cm3_per_hand_mean"] = float(np.mean(hands))
        summary["penetration_volume_cm3_per_hand_ci95"] = list(bootstrap_mean_interval(np.mean(np.stack(vols), 0)))
        top = max(1, int(np.ceil(0.01 * hands.size)))
        total = float(hands.sum())
        summary["penetration_volume_tail"] = {
            **{f"hands_above_{t:g}_cm3": float((hands > t).mean()) for t in VOLUME_TAILS_CM3},
            # None when no hand penetrates at all: a share of nothing
            "share_in_largest_1pct_hands": float(np.sort(hands)[::-1][:top].sum() / total) if total > 0 else None}
    if stability is not None:
        disp = stability["displacement_cm"]
        stable = np.isfinite(disp)
        # Unstable simulations (inf) count as not held; the displacement figures are over the stable ones.
        summary["physics"] = {"pairs": int(len(disp)),
                              "unstable_simulations": int((~stable).sum()),
                              "mean_displacement_cm": float(disp[stable].mean()) if stable.any() else None,
                              "median_displacement_cm": float(np.median(disp[stable])) if stable.any() else None,
                              "held_fraction": float(stability["held"].mean()),
                              "held_fraction_ci95": list(wilson_interval(int(np.sum(stability["held"])),
                                                                         int(len(disp))))}
    return summary


def _physics_scenes(two_hands, models: dict | None):
    """Per pair: (fixed convex parts of both hands, the object's convex parts), world frame (see object_stability)."""
    require_mujoco()
    library = require_objects(two_hands)
    models = models if models is not None else two_hands.hand_models()
    hands = {s: v.cpu().numpy() for s, v in two_hands.vertices(models, dtype=torch.float64).items()}
    # the parts' vertex indices depend on the hand model only: found once, not per pair
    parts_of = {s: convex_part_indices(models[s].faces_np, np.asarray(models[s].data.weights)) for s in SIDES}
    R = object_rotation(two_hands.object_pose)
    objects: dict[int, tuple] = {}  # each object's parts looked up once, not per pair
    for i in range(len(two_hands)):
        k = int(two_hands.object_id[i])
        t = two_hands.object_pose[i, 4:7]
        static = [hands[s][i][ids] for s in SIDES for ids in parts_of[s]]
        if k not in objects:
            objects[k] = object_parts(library, k)
        parts = [p @ R[i].T + t for p in objects[k]]
        yield static, parts


_DECOMPOSED: dict[bytes, tuple] = {}


def object_parts(library, k: int) -> tuple:
    """The convex parts of library object ``k``: its stored parts, or, for an object stored without them (a user's
    non-convex mesh, an ARCTIC object), CoACD's (:func:`interhandgen.geometry.decompose.convex_parts`; seconds per
    object, kept for the process: the same mesh always gives the same parts)."""
    if library.parts[k]:
        return library.parts[k]
    v, f = np.ascontiguousarray(library.vertices[k], dtype=np.float64), np.ascontiguousarray(library.faces[k])
    key = hashlib.sha256(v.tobytes() + f.astype(np.int64).tobytes()).digest()
    if key not in _DECOMPOSED:
        try:
            _DECOMPOSED[key] = convex_parts(v, f)
        except ImportError as exc:
            raise ImportError(f"object '{library.names[k]}' is stored without convex parts and is not convex; the "
                              f"physics test decomposes it: {exc}") from None
    return _DECOMPOSED[key]


#: Pairs per thread handed to the pool at once: the scenes are made chunk by chunk, never all in memory.
_PAIRS_PER_THREAD = 8


def _pair_workers(workers: int | None) -> int:
    if workers is None:
        return torch.get_num_threads()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be None (torch's thread count) or an integer >= 1, got {workers!r}")
    return workers


def _simulate_pairs(simulate, scenes, n: int, workers: int | None, progress: bool, desc: str) -> list:
    """``simulate(static, parts)`` of every scene, in order, on ``workers`` threads (None: torch's thread count).
    MuJoCo releases the GIL while it compiles a model and steps it, so threads run the pairs in parallel (1.9x on 2
    cores, benchmarks/object_physics_time.py); each pair is its own model, so the results are those of one thread."""
    from tqdm import tqdm

    workers = _pair_workers(workers)
    out: list = []
    with tqdm(total=n, desc=desc, disable=not progress) as bar:
        if workers == 1:
            for static, parts in scenes:
                out.append(simulate(static, parts))
                bar.update()
            return out
        with ThreadPoolExecutor(workers) as pool:
            while chunk := list(itertools.islice(scenes, _PAIRS_PER_THREAD * workers)):
                out.extend(pool.map(lambda scene: simulate(*scene), chunk))
                bar.update(len(chunk))
    return out


def object_stability(two_hands, config=None, models: dict | None = None, progress: bool = False,
                     workers: int | None = None) -> dict[str, np.ndarray]:
    """MuJoCo stability test of every pair (hands fixed as per-bone convex hulls, the object free under world -z
    gravity): ``displacement_cm`` [N] (inf where the simulation became unstable) and ``held`` [N] bool
    (displacement below ``config.hold_threshold``). ``workers``: threads simulating pairs at once (None: torch's
    thread count); the figures do not depend on it."""
    require_mujoco()
    require_objects(two_hands)
    config = config if config is not None else PhysicsConfig()
    disp = np.asarray(_simulate_pairs(lambda static, parts: simulate_drop(static, parts, config),
                                      _physics_scenes(two_hands, models), len(two_hands), workers, progress,
                                      "physics"), dtype=np.float64).reshape(len(two_hands))
    return {"displacement_cm": disp * 100.0, "held": disp < config.hold_threshold}


def object_motion(two_hands, config=None, models: dict | None = None, workers: int | None = None
                  ) -> dict[str, np.ndarray]:
    """The object's rigid motion in every pair over ``config.duration`` s of the same simulation as
    :func:`object_stability` (:func:`interhandgen.objects.physics.simulate_motion`): ``rotation`` [N, 3, 3] and
    ``translation`` [N, 3] (world: a point x of the object ends at R x + t), ``speed`` [N] (m/s, final, of the
    centre of mass; inf where unstable) and ``stable`` [N] bool. ``workers`` as in :func:`object_stability`."""
    require_mujoco()
    require_objects(two_hands)
    config = config if config is not None else PhysicsConfig()
    n = len(two_hands)
    motions = _simulate_pairs(lambda static, parts: simulate_motion(static, parts, config),
                              _physics_scenes(two_hands, models), n, workers, False, "physics")
    rotation, translation, speed, stable = zip(*motions) if motions else ((), (), (), ())
    return {"rotation": np.asarray(rotation, dtype=np.float64).reshape(n, 3, 3),
            "translation": np.asarray(translation, dtype=np.float64).reshape(n, 3),
            "speed": np.asarray(speed, dtype=np.float64).reshape(n),
            "stable": np.asarray(stable, dtype=bool).reshape(n)}
