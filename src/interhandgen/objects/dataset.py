"""The synthetic bimanual hand-object set: chunks of grasps per object, acceptance, resumable, one TwoHandSet.

:func:`generate_object_set` spreads ``num`` pairs evenly over the categories of
:data:`interhandgen.objects.grasps.CATEGORIES`. Every chunk draws one object of the category's families (seeded
by the chunk), generates ``grasps_per_object`` grasps of it (:func:`~interhandgen.objects.grasps.generate_object_grasps`)
with the right or the left hand in role A (drawn per chunk), and accepts the grasps whose two hands are both within
2 mm of the object (exact signed distance of every vertex), whose deepest vertex is at most 5 mm inside it and
whose hands' inscribed-sphere proxies do not overlap, whose hand-hand penetration depth is at most 5 mm, and (``physics_filter``, on by default) whose object is held
in the MuJoCo stability test. Rejections are counted per reason in
``metadata["synth_objects"]``; missing pairs are regenerated from new chunks. Finished chunks are stored
atomically under ``<out>.parts/`` (keyed by the seed and a hash of the settings and the generator's source) and
reused when an interrupted run is started again.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from interhandgen._atomic import atomic_write
from interhandgen.data.format import STANDARD_SPLITS, HandModelSpec, TwoHandSet
from interhandgen.data.object_library import ObjectLibrary
from interhandgen.data.synth.generator import HandBatch, _default_models, assign_splits
from interhandgen.data.synth.kinematics import HandKinematics
from interhandgen.exceptions import InputError
from interhandgen.objects.grasps import CATEGORIES, CATEGORY_NAMES, CONTACT_DISTANCE, MAX_DEPTH, GraspResult, \
    generate_object_grasps, select_orientation
from interhandgen.objects.library import make_object, sample_object
from interhandgen.objects.metrics import object_stability
from interhandgen.objects.physics import HOLD_THRESHOLD, require_mujoco

__all__ = ["generate_object_set", "GRASPS_PER_OBJECT"]

GRASPS_PER_OBJECT = 8
_HAND_FIELDS = ("pose_axis_angle", "pose_pca", "betas", "global_orient", "transl")


def _seed_for(*parts) -> int:
    digest = hashlib.sha256(repr(tuple(parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _geometric_reasons(res: GraspResult) -> dict[str, np.ndarray]:
    """Rejection masks [n] per geometric reason."""
    return {"no_contact_within_2mm": (res.min_sdf >= CONTACT_DISTANCE).any(1),
            "depth_over_5mm": (res.min_sdf < -MAX_DEPTH).any(1),
            "hands_interpenetrate": res.hand_hand_overlap > 0,
            "hand_hand_depth_over_5mm": res.hand_hand_depth > MAX_DEPTH}


def _geometric_reject(res: GraspResult) -> np.ndarray:
    """[n] grasps failing any geometric check."""
    return np.logical_or.reduce(list(_geometric_reasons(res).values()))


def _accept(res: GraspResult, displacement: np.ndarray | None) -> dict[str, np.ndarray]:
    """Rejection masks per reason (physics only where ``displacement`` [n] metres was measured)."""
    reasons = _geometric_reasons(res)
    if displacement is not None:
        reasons["not_held_in_physics"] = ~_geometric_reject(res) & ~(displacement < HOLD_THRESHOLD)
    return reasons


def _most_stable(res: GraspResult, side_a: str, obj, models: dict) -> tuple[GraspResult, np.ndarray]:
    """Per grasp, the first world orientation (main, then the alternatives) in which the object is held in MuJoCo,
    else the main one: the chosen grasps, their displacements and the main orientation's (metres). Grasps that
    fail a geometric check are rejected whatever their stability: they are not simulated (displacement NaN)."""
    choice = np.zeros(len(res.min_sdf), dtype=np.int64)
    geometric = np.flatnonzero(~_geometric_reject(res))
    disp = np.full(len(choice), np.nan)
    if len(geometric):
        disp[geometric] = _chunk_displacement(_rows(res, geometric), side_a, obj, models)
    main = disp.copy()
    for k in range(1, len(res.alternatives) + 1):
        todo = np.flatnonzero(disp >= HOLD_THRESHOLD)
        if not len(todo):
            break
        d = _chunk_displacement(_rows(select_orientation(res, np.full(len(choice), k)), todo), side_a, obj, models)
        better = d < HOLD_THRESHOLD
        choice[todo[better]], disp[todo[better]] = k, d[better]
    return select_orientation(res, choice), disp, main


def _rows(res: GraspResult, rows: np.ndarray) -> GraspResult:
    hands = [HandBatch(**{f: getattr(h, f)[rows] for f in _HAND_FIELDS}) for h in (res.hand_a, res.hand_b)]
    return GraspResult(*hands, res.object_pose[rows], res.min_sdf[rows], res.hand_hand_overlap[rows],
                       res.hand_hand_depth[rows])


def _chunk_displacement(res: GraspResult, side_a: str, obj, models: dict) -> np.ndarray:
    """[n] MuJoCo displacement (metres) of the object in each grasp of a chunk (:mod:`interhandgen.objects.physics`)."""
    n = len(res.min_sdf)
    hands = {side_a: res.hand_a, ("left" if side_a == "right" else "right"): res.hand_b}
    pairs = TwoHandSet(*({"pose": hands[s].pose_pca, "betas": hands[s].betas, "global_orient": hands[s].global_orient,
                          "transl": hands[s].transl} for s in ("left", "right")),
                       pose_space="pca", flat_hand_mean=False, object_id=np.zeros(n, dtype=np.int64),
                       object_names=["o"], object_pose=res.object_pose,
                       object_library=ObjectLibrary.from_meshes(["o"], [obj]))
    return object_stability(pairs, models=models)["displacement_cm"] / 100.0


def _run_key(seed: int, per_object: int) -> str:
    h = hashlib.sha256(repr((per_object, torch.__version__)).encode())
    here = Path(__file__).parent
    for source in sorted(list(here.glob("*.py")) + list((here.parent / "data" / "synth").glob("*.py"))):
        h.update(source.read_bytes())
    return f"seed{seed}-{h.hexdigest()[:16]}"


class _Chunks:
    def __init__(self, root: Path | None, key: str):
        self.root = root
        self.folder = None if root is None else root / key

    def path(self, name: str, chunk: int) -> Path:
        return self.folder / f"{name}.{chunk:06d}.npz"

    def load(self, name: str, chunk: int):
        if self.folder is None or not self.path(name, chunk).is_file():
            return None

        try:
            with np.load(self.path(name, chunk), allow_pickle=False) as z:
                hands = [HandBatch(**{f: z[f"{h}/{f}"] for f in _HAND_FIELDS}) for h in "ab"]
                res = GraspResult(*hands, z["object_pose"], z["min_sdf"], z["hand_hand_overlap"], z["hand_hand_depth"])
                disp = z["displacement"] if "displacement" in z.files else None
                main = z["displacement_main"] if "displacement_main" in z.files else None
                return str(z["side_a"]), str(z["family"]), json.loads(str(z["params"])), res, disp, main
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"stored chunk {self.path(name, chunk)} is unreadable ({exc}); delete {self.root}") from None

    def save(self, name: str, chunk: int, side_a: str, family: str, params: dict, res: GraspResult,
             displacement: np.ndarray | None, displacement_main: np.ndarray | None) -> None:
        if self.folder is None:
            return

        arrays = {"side_a": np.array(side_a), "family": np.array(family), "params": np.array(json.dumps(params)),
                  "object_pose": res.object_pose, "min_sdf": res.min_sdf, "hand_hand_overlap": res.hand_hand_overlap,
                  "hand_hand_depth": res.hand_hand_depth}
        if displacement is not None:
            arrays["displacement"], arrays["displacement_main"] = displacement, displacement_main
        for h, batch in (("a", res.hand_a), ("b", res.hand_b)):
            for f in _HAND_FIELDS:
                arrays[f"{h}/{f}"] = getattr(batch, f)
        atomic_write(self.path(name, chunk), lambda fh: np.savez(fh, **arrays))

    def remove(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def generate_object_set(num: int, seed: int, out: str | None = None, categories: Iterable[str] | None = None,
                        grasps_per_object: int = GRASPS_PER_OBJECT, splits: Sequence[float] = (0.8, 0.1, 0.1),
                        progress: bool = True, resume: bool = True, max_rounds: int = 12,
                        physics_filter: bool = True):
    """Generate ``num`` bimanual hand-object pairs (a :class:`~interhandgen.data.format.TwoHandSet` with an object
    library, ``object_id``/``object_pose``, ``category`` and ``split`` labels), deterministic for ``seed``.

    With ``out`` the set is written there atomically and, with ``resume``, finished chunks are kept in
    ``<out>.parts/`` until then (an interrupted run continues from them). With ``physics_filter`` (needs
    ``mujoco``: ImportError otherwise) grasps whose object is not held in the MuJoCo test (displacement of 2 cm or
    more, :mod:`interhandgen.objects.physics`) are rejected too (counted as ``not_held_in_physics``).
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise InputError(f"argument 'num' must be a positive integer, got {num!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"argument 'seed' must be a non-negative integer, got {seed!r}")
    if not isinstance(grasps_per_object, int) or grasps_per_object < 1:
        raise InputError(f"argument 'grasps_per_object' must be a positive integer, got {grasps_per_object!r}")
    names = CATEGORY_NAMES if categories is None else tuple(categories)
    unknown = [c for c in names if c not in CATEGORIES]
    if not names or unknown or len(set(names)) != len(names):
        raise InputError(f"argument 'categories' must be distinct names from {list(CATEGORY_NAMES)}, got {list(names)}")
    if out is not None and not str(out).endswith(".npz"):
        raise InputError(f"argument 'out' must end in .npz, got {out}")
    splits = tuple(float(s) for s in splits)
    if len(splits) != 3 or any(s < 0 for s in splits) or abs(sum(splits) - 1.0) > 1e-6:
        raise InputError(f"argument 'splits' must be three non-negative fractions summing to 1, got {splits}")
    models = _default_models()
    layers = None
    if physics_filter:
        require_mujoco()
        layers = HandModelSpec.open_hand().load("pca", False)
    kin = {s: HandKinematics(models[s], "cpu") for s in ("left", "right")}
    store = _Chunks(Path(str(out) + ".parts") if (out is not None and resume) else None,
                    _run_key(int(seed), grasps_per_object))
    counts = [num // len(names) + (1 if i < num % len(names) else 0) for i in range(len(names))]
    have = dict.fromkeys(names, 0)
    next_chunk = dict.fromkeys(names, 0)
    stats = {n: {"requested": c, "generated": 0, "rejected": {}, "chunks": 0} for n, c in zip(names, counts)}
    accepted: list = []  # (category index, side_a, family, params, result, take)
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(num), desc="synth objects", unit="pair")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # chunks are small; the results then do not depend on the caller's thread setting
    try:
        for _ in range(max_rounds):
            todo = [(i, n) for i, n in enumerate(names) if have[n] < counts[i]]
            if not todo:
                break
            for ci, name in todo:
                while have[name] < counts[ci]:
                    chunk = next_chunk[name]
                    next_chunk[name] += 1
                    if next_chunk[name] > max_rounds * (math.ceil(counts[ci] / grasps_per_object) + 2):
                        raise RuntimeError(f"acceptance too low in category {name!r}: {have[name]} of {counts[ci]} "
                                           f"after {chunk} chunks; rejections {stats[name]['rejected']}")
                    loaded = store.load(name, chunk)
                    if loaded is None:
                        cseed = _seed_for("objects", int(seed), name, chunk)
                        rng = np.random.Generator(np.random.PCG64(cseed))
                        cat = CATEGORIES[name]
                        family = cat.object_families[int(rng.integers(len(cat.object_families)))]
                        obj = sample_object(family, rng)
                        side_a = "right" if rng.random() < 0.5 else "left"
                        side_b = "left" if side_a == "right" else "right"
                        res = generate_object_grasps(cat, obj, kin[side_a], kin[side_b], grasps_per_object, cseed)
                        disp = main = None
                        if layers is not None:
                            res, disp, main = _most_stable(res, side_a, obj, layers)
                        store.save(name, chunk, side_a, family, obj.params, res, disp, main)
                        params = obj.params
                    else:
                        side_a, family, params, res, disp, main = loaded
                        if layers is not None and disp is None:
                            res, disp, main = _most_stable(res, side_a, make_object(family, params), layers)
                    st = stats[name]
                    st["chunks"] += 1
                    st["generated"] += len(res.min_sdf)
                    bad = np.zeros(len(res.min_sdf), dtype=bool)
                    for reason, mask in _accept(res, disp).items():
                        st["rejected"][reason] = st["rejected"].get(reason, 0) + int(mask.sum())
                        bad |= mask
                    if main is not None:  # raw stability: among the geometrically accepted grasps
                        geo = ~(bad & ~_accept(res, disp).get("not_held_in_physics", np.zeros_like(bad)))
                        phys = st.setdefault("physics", {"geometric_ok": 0, "held_main_orientation": 0,
                                                         "held_any_orientation": 0})
                        phys["geometric_ok"] += int(geo.sum())
                        phys["held_main_orientation"] += int((geo & (main < HOLD_THRESHOLD)).sum())
                        phys["held_any_orientation"] += int((geo & (disp < HOLD_THRESHOLD)).sum())
                    take = np.flatnonzero(~bad)[: counts[ci] - have[name]]
                    if len(take):
                        accepted.append((ci, side_a, family, params, res, take))
                        have[name] += len(take)
                        if bar is not None:
                            bar.update(len(take))
    finally:
        torch.set_num_threads(previous_threads)
        if bar is not None:
            bar.close()
    missing = {n: counts[i] - have[n] for i, n in enumerate(names) if have[n] < counts[i]}
    if missing:
        raise RuntimeError(f"acceptance too low after {max_rounds} rounds; still missing {missing}")

    # Assemble: one library entry per contributing object, in chunk order.
    lib_names, meshes, fields = [], [], {s: {f: [] for f in ("pose_pca", "betas", "global_orient", "transl")}
                                         for s in ("left", "right")}
    cat_ids, obj_ids, poses, record = [], [], [], []
    for ci, side_a, family, params, res, take in accepted:
        k = len(meshes)
        lib_names.append(f"{family}_{k:05d}")
        meshes.append(make_object(family, params))
        other = "left" if side_a == "right" else "right"
        for side, batch in ((side_a, res.hand_a), (other, res.hand_b)):
            for f in fields[side]:
                fields[side][f].append(getattr(batch, f)[take])
        cat_ids.append(np.full(len(take), ci))
        obj_ids.append(np.full(len(take), k))
        poses.append(res.object_pose[take])
        record += [f"{names[ci]}/{side_a}/{lib_names[-1]}/{j}" for j in take]
    order = np.random.Generator(np.random.PCG64(_seed_for("order", int(seed)))).permutation(int(num))
    hands = {s: {"pose": np.concatenate(fields[s]["pose_pca"])[order], "betas": np.concatenate(fields[s]["betas"])[order],
                 "global_orient": np.concatenate(fields[s]["global_orient"])[order],
                 "transl": np.concatenate(fields[s]["transl"])[order]} for s in ("left", "right")}
    metadata = {"synth_objects": {
        "generator": "interhandgen.objects", "seed": int(seed), "num": int(num), "grasps_per_object": grasps_per_object,
        "categories": {n: CATEGORIES[n].description for n in names}, "per_category": stats,
        "thresholds_m": {"contact_distance": CONTACT_DISTANCE, "max_penetration_depth": MAX_DEPTH},
        "gravity": "world -z", "physics_filter": bool(physics_filter)}}
    result = TwoHandSet(
        hands["left"], hands["right"], pose_space="pca", flat_hand_mean=False, hand_model=HandModelSpec.open_hand(),
        category=np.concatenate(cat_ids)[order], category_names=names, split=assign_splits(int(num), splits, seed),
        split_names=STANDARD_SPLITS, object_id=np.concatenate(obj_ids)[order], object_names=lib_names,
        object_pose=np.concatenate(poses)[order], record_id=np.array(record)[order], metadata=metadata,
        object_library=ObjectLibrary.from_meshes(lib_names, meshes))
    if out is not None:
        result.save(out)
        store.remove()
    if progress:
        from tqdm import tqdm

        tqdm.write(f"synth objects: {num} pairs on {len(meshes)} objects in {time.perf_counter() - started:.1f} s")
    return result
