"""The synthetic two-hand interaction set: sampling, contact optimisation, checks, global pose, splits."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from interhandgen import geometry
from interhandgen.geometry.mesh import seal_torch
from interhandgen.geometry.queries import signed_distance_few
from interhandgen.data.synth.categories import CATEGORIES, CATEGORY_NAMES, Category, Scene
from interhandgen.data.synth.kinematics import HandKinematics
from interhandgen.data.synth.optimize import OptimConfig, optimise_contacts, subset_quality
from interhandgen.data.synth.placement import slide_to_distance
from interhandgen.geometry.proxy import slide_to_clearance
from interhandgen.data.synth.poses import POSE_FAMILIES, sample_pose_logits
from interhandgen.hand.model_data import HandModelData
from interhandgen.rotations import matrix_to_axis_angle, quaternion_to_matrix
from interhandgen.exceptions import InputError
from interhandgen._atomic import atomic_write
from interhandgen.data.format import HandModelSpec, STANDARD_SPLITS, TwoHandSet
from interhandgen.hand import open_hand
from interhandgen.limits import check_count

#: Acceptance thresholds (metres).
CONTACT_DISTANCE = 0.002  # a contact-category sample counts as touching below this minimum distance
MAX_PENETRATION_DEPTH = 0.005  # samples deeper than this are rejected and regenerated
NO_CONTACT_RANGE = (0.01, 0.10)  # the no-contact category's minimum distance range


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    optim: OptimConfig = OptimConfig()
    subset_size: int = 512
    require_contact: bool = True  # reject contact-category samples that do not touch (counted)
    max_attempts: int = 20
    pair_center_std: float = 0.03  # metres, random offset of the pair's centre from the origin
    no_contact_target: tuple[float, float] = (0.015, 0.085)  # metres, uniform target of the separation search
    random_pair_rotation: bool = True  # rotate every pair uniformly at random (False: hand A stays canonical)
    approach_clearance: float = 0.004  # metres between the sphere proxies when the optimisation starts


@dataclasses.dataclass
class HandBatch:
    """Per-hand parameters of generated samples (numpy, float32): see :func:`generate_arrays`."""

    pose_axis_angle: np.ndarray  # [N, 45] local axis-angle, flat-hand relative (hands_mean included)
    pose_pca: np.ndarray  # [N, 45] the model's PCA coefficients (hands_mean removed)
    betas: np.ndarray  # [N, 10]
    global_orient: np.ndarray  # [N, 3]
    transl: np.ndarray  # [N, 3]


def _seed_for(*parts: int | str) -> int:
    """A 63-bit seed derived from a tuple; stable across runs and platforms."""
    digest = hashlib.sha256(repr(tuple(parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _random_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 3, 3] uniformly distributed rotations (normalised Gaussian quaternions)."""
    q = torch.randn((n, 4), generator=gen, dtype=torch.float64)
    return quaternion_to_matrix(q / q.norm(dim=1, keepdim=True))


def _choice(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, k, (n,), generator=gen)


def _gather_families(names: Sequence[str], choice: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """[n, 15, 3] logits, each sample from its chosen family (all families sampled for determinism)."""
    n = choice.shape[0]
    stack = torch.stack([sample_pose_logits(POSE_FAMILIES[f], n, gen, torch.float64) for f in names])
    return stack[choice, torch.arange(n)]


@dataclasses.dataclass
class GroupResult:
    hand_a: HandBatch
    hand_b: HandBatch
    min_distance: np.ndarray  # [n] metres: full-mesh vertex distance where the subset bound could not decide
    penetration_depth: np.ndarray  # [n] metres: full-mesh (fast) depth where the subset estimate was above 1 mm
    full_checked: np.ndarray  # [n] bool, whether full-mesh metrics were computed for the sample


def generate_group(category: Category, kin_a: HandKinematics, kin_b: HandKinematics, n: int, seed: int,
                   config: SynthConfig = SynthConfig()) -> GroupResult:
    """Generate ``n`` samples of ``category`` with hand A = ``kin_a`` (active) and B = ``kin_b``, fully batched.

    Random numbers come from a CPU generator seeded with ``seed`` (device-independent draws).
    """
    gen = torch.Generator().manual_seed(seed)
    device, dtype = kin_a.device, kin_a.dtype
    fam_a = _choice(n, len(category.families_a), gen)
    fam_b = _choice(n, len(category.families_b), gen)
    logits_a = _gather_families(category.families_a, fam_a, gen).to(device, dtype)
    logits_b = _gather_families(category.families_b, fam_b, gen).to(device, dtype)
    betas_a = torch.randn((n, kin_a.num_betas), generator=gen).to(device, dtype)
    betas_b = torch.randn((n, kin_b.num_betas), generator=gen).to(device, dtype)
    with torch.no_grad():
        posed_a = kin_a.pose_full(betas_a, kin_a.logits_to_full_pose(logits_a))
        posed_b = kin_b.pose_full(betas_b, kin_b.logits_to_full_pose(logits_b))
        scene = Scene(kin_a, kin_b, posed_a, posed_b, fam_a.to(device), fam_b.to(device), gen)
        arr = category.arrange(scene)
        R, t, contacts = arr.R, arr.t, arr.contacts
        # Slide B along the approach direction until it just clears A (contact categories: by
        # ``approach_clearance``; no-contact: by a random target distance). The optimisation then starts from
        # first contact instead of a deep overlap, where nearest-vertex inside tests are unreliable.
        if category.in_contact:
            target = torch.full((n,), config.approach_clearance, dtype=dtype, device=device)
        else:
            lo, hi = config.no_contact_target
            target = (lo + (hi - lo) * torch.rand((n,), generator=gen, dtype=torch.float64)).to(device, dtype)
        pa, pb = kin_a.proxy, kin_b.proxy
        ca = pa.centres(posed_a.rest_joints, posed_a.transforms)
        cb = pb.centres(posed_b.rest_joints, posed_b.transforms) @ R.transpose(1, 2) + t[:, None]
        ra = pa.radii(posed_a.rest_joints, ca, posed_a.vertices)
        rb = pb.radii(posed_b.rest_joints, cb, posed_b.vertices @ R.transpose(1, 2) + t[:, None])
        if arr.approach is None:
            shift = torch.zeros_like(target)
        elif category.in_contact:
            shift = slide_to_clearance(ca, ra, cb, rb, arr.approach, target)
        else:
            # Touching proxies first (never interpenetrating), then out to the target vertex distance, which for
            # centimetre gaps is the true distance up to the subset's spacing.
            touch = slide_to_clearance(ca, ra, cb, rb, arr.approach, torch.zeros_like(target))
            sub_a = posed_a.vertices[:, kin_a.subset]
            sub_b = posed_b.vertices[:, kin_b.subset] @ R.transpose(1, 2) + (t + touch[:, None] * arr.approach)[:, None]
            shift = touch + slide_to_distance(sub_a, sub_b, arr.approach, target, lo=0.0, hi=0.12)
        if arr.approach is not None:
            t = t + shift[:, None] * arr.approach
    if category.in_contact:
        logits_a, logits_b, R, t = optimise_contacts(kin_a, kin_b, betas_a, betas_b, logits_a, logits_b, R, t,
                                                     contacts, config.optim)
    with torch.no_grad():
        pose_a = kin_a.logits_to_full_pose(logits_a)
        pose_b = kin_b.logits_to_full_pose(logits_b)
        posed_a = kin_a.pose_full(betas_a, pose_a)
        posed_b = kin_b.pose_full(betas_b, pose_b)
        va = posed_a.vertices
        vb = posed_b.vertices @ R.transpose(1, 2) + t[:, None]
        min_dist, depth, checked = _quality(kin_a, kin_b, posed_a, posed_b, va, vb, R, category.in_contact)
        # Random rotation of the whole pair about its centre, and a random position of the centre.
        G = _random_rotations(n, gen).to(device, dtype)
        if not config.random_pair_rotation:
            G = torch.eye(3, dtype=dtype, device=device).expand(n, 3, 3)
        center = 0.5 * (va.mean(1) + vb.mean(1))
        g = (torch.randn((n, 3), generator=gen, dtype=torch.float64) * config.pair_center_std).to(device, dtype)
        g = g - (G @ center[..., None]).squeeze(-1)
        hand_a = _hand_params(kin_a, betas_a, pose_a, G, g, posed_a.rest_joints[:, 0])
        hand_b = _hand_params(kin_b, betas_b, pose_b, G @ R, (G @ t[..., None]).squeeze(-1) + g, posed_b.rest_joints[:, 0])
    f = lambda x: x.detach().cpu().double().numpy()  # noqa: E731
    return GroupResult(hand_a, hand_b, f(min_dist), f(depth), checked.cpu().numpy())


#: Subset depth estimates above this go to the exact checks (metres). The subset can miss the deepest vertex
#: by about half the subset spacing (~3 mm), so 2 mm keeps every sample whose true depth could exceed the
#: 5 mm limit in the exact checks (verified with exact full-mesh metrics in tests/test_synth.py).
_DEPTH_RECHECK = 0.002
#: Subset vertices farther than this from the other hand are not tested as inside it (no hand is this thick).
_DEPTH_RADIUS = 0.02
#: Subset vertices per hand whose inside test and depth are computed exactly in the second stage.
_EXACT_CANDIDATES = 32
#: Exact subset depths above this send a sample to the exact full-mesh depth (metres).
_DEPTH_RECHECK_EXACT = 0.0015


def _quality(kin_a, kin_b, posed_a, posed_b, va, vb, R, in_contact: bool):
    """Per-sample (min distance, penetration depth, full_checked), cheap where a bound decides.

    Distance: the subset's min distance is an upper bound of the full mesh's, so a subset distance below the
    contact threshold proves contact; every vertex is within ``subset_cover`` of a subset vertex (at rest;
    1.5x for posing), which bounds the full distance from below. Undecided samples get the full-mesh
    :func:`interhandgen.geometry.min_distance`.

    Depth, in three stages: (1) the nearest-vertex + normal estimate on the subsets (cheap, but it reports
    false depths near concave regions); (2) where it exceeds 2 mm, the exact inside test and exact surface
    distance of the ``_EXACT_CANDIDATES`` subset vertices with the largest estimates; (3) where that exact
    subset depth exceeds 1.5 mm (the deepest vertex may lie between subset vertices), the exact full-mesh
    :func:`interhandgen.geometry.penetration_depth`.
    """

    sa, sb = kin_a.subset, kin_b.subset
    pa_sub, pb_sub = va[:, sa], vb[:, sb]
    nb = posed_b.normals[:, sb] @ R.transpose(1, 2)
    d_sub, depth, est_a, est_b = subset_quality(pa_sub, posed_a.normals[:, sa], pb_sub, nb, radius=_DEPTH_RADIUS,
                                                per_point=True)
    slack = 1.5 * (kin_a.subset_cover + kin_b.subset_cover)
    if in_contact:
        need_dist = d_sub >= CONTACT_DISTANCE
    else:
        need_dist = (d_sub - slack < NO_CONTACT_RANGE[0]) | (d_sub > NO_CONTACT_RANGE[1])
    min_dist = d_sub.clone()
    if bool(need_dist.any()):
        idx = need_dist.nonzero(as_tuple=True)[0]
        min_dist[idx] = geometry.min_distance(va[idx], vb[idx])
    depth = depth.clone()
    stage2 = depth > _DEPTH_RECHECK
    full = torch.zeros_like(stage2)
    if bool(stage2.any()):
        idx = stage2.nonzero(as_tuple=True)[0]
        exact = torch.zeros(len(idx), dtype=depth.dtype, device=depth.device)
        for points, est, verts, faces in ((pa_sub[idx], est_a[idx], vb[idx], kin_b.data.faces),
                                          (pb_sub[idx], est_b[idx], va[idx], kin_a.data.faces)):
            k = min(_EXACT_CANDIDATES, est.shape[1])
            top = est.topk(k, dim=1)
            cand = torch.gather(points, 1, top.indices[..., None].expand(-1, -1, 3))
            sealed, sealed_faces = seal_torch(verts, faces)
            dist, inside = signed_distance_few(cand, sealed, sealed_faces)
            inside = inside & (top.values > 0)
            exact = torch.maximum(exact, torch.where(inside, dist.to(depth.dtype), torch.zeros_like(exact[:, None])).amax(1))
        depth[idx] = exact
        full[idx] = exact > _DEPTH_RECHECK_EXACT
    if bool(full.any()):
        idx = full.nonzero(as_tuple=True)[0]
        depth[idx] = geometry.penetration_depth(va[idx], kin_a.data.faces, vb[idx], kin_b.data.faces, method="exact")
    return min_dist, depth, need_dist | full


def _hand_params(kin: HandKinematics, betas, full_pose, R_world, t_world, root) -> HandBatch:
    """Parameters that place the locally posed hand with the rigid map x -> R_world x + t_world.

    The hand layer rotates about the shaped root joint J0: x -> R (x - J0) + J0 + transl, so
    transl = t_world + R_world J0 - J0.
    """
    local = full_pose[:, 3:]
    transl = t_world + (R_world @ root[..., None]).squeeze(-1) - root
    f = lambda x: x.detach().cpu().to(torch.float32).numpy()  # noqa: E731
    return HandBatch(
        pose_axis_angle=f(local),
        pose_pca=f(kin.pose_to_pca(local)),
        betas=f(betas),
        global_orient=f(matrix_to_axis_angle(R_world)),
        transl=f(transl),
    )


# ------------------------------------------------------------------------------------------------- the set
def _accept(category: Category, result: GroupResult, config: SynthConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Boolean acceptance per sample and the boolean mask of each rejection reason."""
    md, depth = result.min_distance, result.penetration_depth
    reasons = {"penetration_depth_over_5mm": depth > MAX_PENETRATION_DEPTH}
    if category.in_contact:
        if config.require_contact:
            reasons["no_contact_within_2mm"] = md >= CONTACT_DISTANCE
    else:
        lo, hi = NO_CONTACT_RANGE
        reasons["distance_outside_1_10cm"] = (md < lo) | (md > hi)
    bad = np.zeros(len(md), dtype=bool)
    for mask in reasons.values():
        bad |= mask
    return ~bad, reasons


def _balanced_counts(num: int, k: int) -> list[int]:
    return [num // k + (1 if i < num % k else 0) for i in range(k)]


def _default_models() -> dict[str, HandModelData]:

    return {side: getattr(open_hand(side), "data", open_hand(side)) for side in ("left", "right")}


def generate_synthetic_set(
    num: int,
    seed: int,
    out: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    progress: bool = True,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    categories: Iterable[str] | None = None,
    hand_models: dict[str, HandModelData] | None = None,
    config: SynthConfig = SynthConfig(),
    workers: int | None = None,
    resume: bool = True,
    work_dir: str | os.PathLike | None = None,
):
    """Generate ``num`` synthetic two-hand interactions, deterministic for ``seed``.

    Args:
        num: number of samples (>= 1), spread evenly over the categories.
        seed: integer seed; the same seed gives identical arrays on the same machine and thread count.
        out: optional ``.npz`` path; the set is written there atomically (``TwoHandSet.save``).
        device: torch device of the computation ("cpu", "cuda", ...). Random draws happen on the CPU.
        batch_size: samples optimised together (memory grows with batch_size x subset_size^2).
        progress: show a tqdm progress bar.
        splits: fractions of (train, validation, test), summing to 1; assigned by a seeded permutation.
        categories: names to generate (default: all of ``CATEGORY_NAMES``).
        hand_models: {"left": HandModelData, "right": HandModelData}; default the bundled open hand.
        config: :class:`SynthConfig`.
        workers: CPU worker processes (None: one per core, up to 8, when the device is the CPU and the set
            is large; 1 otherwise). The arrays do not depend on it: every chunk is computed single-threaded
            from its own seed and accepted samples are taken in chunk order.
        resume: with ``out`` (or ``work_dir``), store every finished chunk atomically in the work folder and
            reuse the chunks found there, so an interrupted run continues where it stopped and gives the
            same arrays as an uninterrupted one. The work folder is removed after ``out`` is written.
        work_dir: the work folder (default ``<out>.parts``). Chunks live in a subfolder named after the
            seed and a hash of everything that determines them (config, batch size, hand models, device
            type, generator source), so stale chunks of another setting are never reused.
    Returns:
        a :class:`interhandgen.data.TwoHandSet` with ``pose_space="pca"`` (all 45 coefficients),
        ``flat_hand_mean=False``, category and split labels, per-sample ``record_id``
        ``"<category>/<active side>/<index>"`` and the generation statistics in ``metadata["synth"]``.
    """

    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise InputError(f"num must be a positive integer, got {num!r}")
    # The whole set is assembled in memory: refuse at once what cannot fit (documented in docs/reliability.md).
    check_count("num", int(num), out=out, disk_bytes_each=SYNTH_DISK_BYTES, memory_bytes_each=SYNTH_MEMORY_BYTES)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    splits = tuple(float(s) for s in splits)
    if len(splits) != 3 or any(not math.isfinite(s) or s < 0 for s in splits) or abs(sum(splits) - 1.0) > 1e-6:
        raise InputError(f"splits must be three non-negative fractions (train, validation, test) summing to 1, got {splits}")
    names = CATEGORY_NAMES if categories is None else tuple(categories)
    unknown = [c for c in names if c not in CATEGORIES]
    if not names or unknown or len(set(names)) != len(names):
        raise InputError(f"categories must be distinct names from {list(CATEGORY_NAMES)}, got {list(names)}")
    spec = HandModelSpec.open_hand()
    if hand_models is None:
        hand_models = _default_models()
    elif set(hand_models) != {"left", "right"}:
        raise InputError(f"hand_models must map 'left' and 'right' to HandModelData, got keys {sorted(hand_models)}")
    for side, data in hand_models.items():
        if not isinstance(data, HandModelData) or data.side != side:
            raise InputError(f"hand_models['{side}'] must be a {side} HandModelData")
    device = torch.device(device)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if device.type == "cpu" and num >= 4 * batch_size else 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a positive integer or None, got {workers!r}")
    if workers > 1 and device.type != "cpu":
        raise InputError("workers > 1 runs CPU worker processes; use workers=1 with an accelerator device")

    store = None
    if resume and (out is not None or work_dir is not None):
        root = Path(work_dir) if work_dir is not None else Path(str(out) + ".parts")
        store = _ChunkStore(root, _run_key(int(seed), int(batch_size), config, hand_models, device),
                            owns_root=work_dir is None)
    elif not resume and out is not None and work_dir is None and Path(str(out) + ".parts").is_dir():
        # A stale folder of an earlier run would otherwise stay on disk forever.
        warnings.warn(f"resume=False: removing the chunks of an earlier run in {str(out) + '.parts'}", stacklevel=2)
        shutil.rmtree(str(out) + ".parts")
    counts = _balanced_counts(int(num), len(names))
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(num), desc="synth", unit="sample")
    # Chunks have fixed sizes and seeds, and accepted samples are taken in chunk order, so the result does
    # not depend on how many worker processes computed the chunks.
    accepted: dict[str, list] = {name: [] for name in names}
    have = dict.fromkeys(names, 0)
    stats = {name: {"requested": c, "generated": 0, "rejected": {}, "chunks": 0} for name, c in zip(names, counts)}
    next_chunk = dict.fromkeys(names, 0)
    runner = _ChunkRunner(hand_models, str(device), config, workers, store)
    try:
        rounds = 0
        while True:
            tasks = []
            for name, target in zip(names, counts):
                missing = target - have[name]
                if missing <= 0:
                    continue
                # First round: the requested count plus 5 % (rejections); later rounds: what is missing, +25 %.
                want = math.ceil(missing * (1.05 if rounds == 0 else 1.25)) + (0 if rounds == 0 else 4)
                for _ in range(math.ceil(want / batch_size)):
                    size = min(batch_size, want)
                    want -= size
                    tasks.append((name, next_chunk[name], size))
                    next_chunk[name] += 1
            if not tasks:
                break
            if rounds >= config.max_attempts:
                short = {n: counts[i] - have[n] for i, n in enumerate(names) if have[n] < counts[i]}
                raise RuntimeError(f"acceptance too low after {rounds} rounds; still missing {short}")
            for (name, chunk, size), result in zip(tasks, runner.map(int(seed), tasks)):
                category = CATEGORIES[name]
                st = stats[name]
                st["chunks"] += 1
                for side_a, res in result:
                    ok, reasons = _accept(category, res, config)
                    st["generated"] += len(ok)
                    for reason, bad in reasons.items():
                        st["rejected"][reason] = st["rejected"].get(reason, 0) + int(bad.sum())
                    take = np.flatnonzero(ok)[: max(0, counts[names.index(name)] - have[name])]
                    if len(take):
                        accepted[name].append((side_a, res, take))
                        have[name] += len(take)
                        if bar is not None:
                            bar.update(len(take))
            rounds += 1
    finally:
        runner.close()
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - started

    fields = ("pose_pca", "betas", "global_orient", "transl")
    collected = {side: {f: [] for f in fields} for side in ("left", "right")}
    cat_ids, active, min_dist, depth = [], [], [], []
    other = {"left": "right", "right": "left"}
    for c_idx, name in enumerate(names):
        for side_a, res, take in accepted[name]:
            hands = {side_a: res.hand_a, other[side_a]: res.hand_b}
            for side in ("left", "right"):
                for f in fields:
                    collected[side][f].append(getattr(hands[side], f)[take])
            cat_ids.append(np.full(len(take), c_idx))
            active.append(np.full(len(take), side_a))
            min_dist.append(res.min_distance[take])
            depth.append(res.penetration_depth[take])

    # Mix the categories with a seeded permutation, then assign splits with another.
    total = int(num)
    rng = np.random.Generator(np.random.PCG64(_seed_for("order", int(seed))))
    order = rng.permutation(total)
    cat_arr = np.concatenate(cat_ids)[order]
    active_arr = np.concatenate(active)[order]
    md_arr = np.concatenate(min_dist)[order]
    depth_arr = np.concatenate(depth)[order]
    hands = {}
    for side in ("left", "right"):
        arr = {f: np.concatenate(collected[side][f])[order] for f in fields}
        hands[side] = {"pose": arr["pose_pca"], "betas": arr["betas"], "global_orient": arr["global_orient"],
                       "transl": arr["transl"]}
    split_arr = assign_splits(total, splits, seed)
    record_id = np.array([f"{names[c]}/{a}/{i}" for i, (c, a) in enumerate(zip(cat_arr, active_arr))])
    summary = _summary(names, cat_arr, md_arr, depth_arr)
    metadata = {
        "synth": {
            "generator": "interhandgen.data.synth",
            "seed": int(seed),
            "num": total,
            "categories": {n_: CATEGORIES[n_].description for n_ in names},
            "splits": dict(zip(STANDARD_SPLITS, splits)),
            "thresholds_m": {"contact_distance": CONTACT_DISTANCE, "max_penetration_depth": MAX_PENETRATION_DEPTH,
                             "no_contact_range": list(NO_CONTACT_RANGE)},
            "hand_models": {s: hand_models[s].name for s in ("left", "right")},
            "per_category": stats,
            "quality": summary,
            # No wall time or worker count here: the file (and its SHA-256) depends on the seed and settings only.
            "device": str(device),
        }
    }
    result = TwoHandSet(
        left=hands["left"], right=hands["right"], pose_space="pca", flat_hand_mean=False, hand_model=spec,
        category=cat_arr, category_names=names, split=split_arr, split_names=STANDARD_SPLITS,
        record_id=record_id, metadata=metadata,
    )
    if out is not None:
        result.save(out)
    if store is not None:
        store.remove()
    if progress:
        tqdm.write(f"synth: {total} samples in {elapsed:.1f} s with {workers} worker process(es)")
    return result


def _generate_chunk(kin: dict, config: SynthConfig, seed: int, name: str, chunk: int, size: int) -> list:
    """One chunk: ``size`` samples of category ``name``, active side drawn per sample; [(side_a, GroupResult)]."""
    category = CATEGORIES[name]
    gen = torch.Generator().manual_seed(_seed_for("synth", seed, name, chunk))
    right_active = torch.rand((size,), generator=gen) < 0.5
    out = []
    for side_a, mask in (("right", right_active), ("left", ~right_active)):
        m = int(mask.sum())
        if m:
            side_b = "left" if side_a == "right" else "right"
            out.append((side_a, generate_group(category, kin[side_a], kin[side_b], m,
                                               _seed_for("group", seed, name, chunk, side_a), config)))
    return out


class _single_thread:
    """Run torch single-threaded inside the block (results then do not depend on the caller's setting)."""

    def __enter__(self):
        self.previous = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)


_WORKER_STATE: dict = {}


def _worker_init(hand_models: dict, config: SynthConfig) -> None:
    torch.set_num_threads(1)
    _WORKER_STATE["kin"] = {side: HandKinematics(hand_models[side], "cpu", subset_size=config.subset_size)
                            for side in ("left", "right")}
    _WORKER_STATE["config"] = config


def _worker_task(args: tuple) -> list:
    seed, name, chunk, size = args
    return _generate_chunk(_WORKER_STATE["kin"], _WORKER_STATE["config"], seed, name, chunk, size)


class _ChunkRunner:
    """Computes chunks in this process or in a pool of worker processes (spawned, single-threaded); with a
    :class:`_ChunkStore`, chunks found there are loaded instead and computed ones are stored as they arrive."""

    def __init__(self, hand_models: dict, device: str, config: SynthConfig, workers: int,
                 store: "_ChunkStore | None" = None) -> None:
        self.config = config
        self.store = store
        self.pool = None
        self.computed = 0  # chunks computed (not loaded) by this runner
        if workers > 1:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(hand_models, config))
        else:
            self.kin = {side: HandKinematics(hand_models[side], device, subset_size=config.subset_size)
                        for side in ("left", "right")}

    def map(self, seed: int, tasks: list[tuple[str, int, int]]):
        """Results of ``tasks`` [(category, chunk, size)], in task order."""
        stored = [self.store is not None and self.store.usable(*t) for t in tasks]
        todo = [t for t, done in zip(tasks, stored) if not done]
        if self.pool is not None:
            computed = self.pool.imap(_worker_task, [(seed, *t) for t in todo])
        else:
            computed = (self._compute_here(seed, *t) for t in todo)
        for task, done in zip(tasks, stored):
            if done:
                yield self.store.load(*task)
                continue
            result = next(computed)
            self.computed += 1
            if self.store is not None:
                self.store.save(*task, result)
            yield result

    def _compute_here(self, seed: int, name: str, chunk: int, size: int) -> list:
        with _single_thread():
            return _generate_chunk(self.kin, self.config, seed, name, chunk, size)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


def assign_splits(num: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """[num] split ids (0 train, 1 validation, 2 test) from a permutation seeded by ``seed``; the counts are
    the rounded fractions (test gets the remainder)."""
    rng = np.random.Generator(np.random.PCG64(_seed_for("split", int(seed))))
    n_train = int(round(fractions[0] * num))
    n_val = min(num - n_train, int(round(fractions[1] * num)))
    ids = np.full(num, 2, dtype=np.int64)
    perm = rng.permutation(num)
    ids[perm[:n_train]] = 0
    ids[perm[n_train:n_train + n_val]] = 1
    return ids


def _summary(names: Sequence[str], cat: np.ndarray, md: np.ndarray, depth: np.ndarray) -> dict:
    """Per-category quality of the accepted samples (fast full-mesh metrics), millimetres."""
    out = {}
    for c, name in enumerate(names):
        sel = cat == c
        if not sel.any():
            continue
        d_mm, p_mm = md[sel] * 1000.0, depth[sel] * 1000.0
        out[name] = {
            "count": int(sel.sum()),
            "contact_rate_2mm": float(np.mean(d_mm < CONTACT_DISTANCE * 1000.0)),
            "min_distance_mm": {"median": float(np.median(d_mm)), "p95": float(np.percentile(d_mm, 95)),
                                "min": float(d_mm.min()), "max": float(d_mm.max())},
            "penetration_depth_mm": {"mean": float(p_mm.mean()), "p95": float(np.percentile(p_mm, 95)),
                                     "max": float(p_mm.max())},
        }
    return out


# ------------------------------------------------------------------------------------------- resumable chunks
_HAND_FIELDS = ("pose_axis_angle", "pose_pca", "betas", "global_orient", "transl")
# Per-sample bounds for the size check: the .npz measured 620 B per sample (256 vs 1024 samples); in memory the
# accepted chunks (both hands' 106 float32 numbers and the quality arrays, plus the rejected share), the collected
# copies and the final set: about 2.5 kB by count of the arrays, rounded up.
SYNTH_DISK_BYTES = 640
SYNTH_MEMORY_BYTES = 4096
_RESULT_FIELDS = ("min_distance", "penetration_depth", "full_checked")


def _run_key(seed: int, batch_size: int, config: SynthConfig, hand_models: dict, device: torch.device) -> str:
    """Folder name of a run's chunks: the seed and a hash of everything else that determines a chunk's content
    (the config, the batch size, the hand models' arrays, the device type and the generator's source code)."""
    h = hashlib.sha256()
    h.update(repr((batch_size, config, device.type, torch.__version__)).encode())
    for side in ("left", "right"):
        data = hand_models[side]
        h.update(side.encode())
        for field in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "faces", "hands_components",
                      "hands_mean", "parents"):
            h.update(np.ascontiguousarray(np.asarray(getattr(data, field))).tobytes())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        h.update(source.read_bytes())
    return f"seed{seed}-{h.hexdigest()[:16]}"


class _ChunkStore:
    """Finished chunks of one run as ``<root>/<run key>/<category>.<chunk>.<size>.npz``, written atomically."""

    def __init__(self, root: Path, key: str, owns_root: bool) -> None:
        self.root = root
        self.folder = root / key
        self.owns_root = owns_root  # the default <out>.parts folder is removed whole, a given work_dir is kept

    def path(self, name: str, chunk: int, size: int) -> Path:
        return self.folder / f"{name}.{chunk:06d}.{size}.npz"

    def has(self, name: str, chunk: int, size: int) -> bool:
        return self.path(name, chunk, size).is_file()

    def usable(self, name: str, chunk: int, size: int) -> bool:
        """Whether the chunk is stored and reads back whole; a damaged one is removed (with a warning) so that
        it is computed again."""
        if not self.has(name, chunk, size):
            return False
        try:
            self.load(name, chunk, size)
        except ValueError as exc:
            warnings.warn(f"{exc}; computing that chunk again", stacklevel=2)
            self.path(name, chunk, size).unlink()
            return False
        return True

    def save(self, name: str, chunk: int, size: int, result: list) -> None:

        arrays = {"groups": np.array([side for side, _ in result])}
        for g, (_, res) in enumerate(result):
            for hand, batch in (("a", res.hand_a), ("b", res.hand_b)):
                for field in _HAND_FIELDS:
                    arrays[f"{g}/{hand}/{field}"] = getattr(batch, field)
            for field in _RESULT_FIELDS:
                arrays[f"{g}/{field}"] = getattr(res, field)
        atomic_write(self.path(name, chunk, size), lambda fh: np.savez(fh, **arrays))

    def load(self, name: str, chunk: int, size: int) -> list:
        path = self.path(name, chunk, size)
        try:
            with np.load(path, allow_pickle=False) as z:
                out = []
                for g, side in enumerate(z["groups"].tolist()):
                    hands = [HandBatch(**{f: z[f"{g}/{hand}/{f}"] for f in _HAND_FIELDS}) for hand in ("a", "b")]
                    out.append((side, GroupResult(*hands, *(z[f"{g}/{f}"] for f in _RESULT_FIELDS))))
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise InputError(f"stored chunk {path} is unreadable ({type(exc).__name__}: {exc})") from None
        if sum(len(res.min_distance) for _, res in out) != size:
            raise InputError(f"stored chunk {path} does not hold {size} samples")
        return out

    def remove(self) -> None:
        shutil.rmtree(self.root if self.owns_root else self.folder, ignore_errors=True)
