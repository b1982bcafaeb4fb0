"""The hand-object evaluation protocol on a samples file against a reference set, with its data floor.

Runs :func:`interhandgen.evaluation.protocol.evaluate` with the hand-object part (exactly what ``interhandgen
evaluate`` runs on sets with objects): FHID, KHID, precision/recall and diversity on the object-aware evaluator's
features; hand-object penetration volume and depth and contact per hand, contact of both hands; hand-hand
penetration; the MuJoCo stability test; each for the samples and for the data floor (a reference draw disjoint
from the reference). Prints the tables, checks issue 13's targets (samples against the floor) and writes JSON
(atomically).

Without ``--samples`` the held-out split of ``--reference`` (``--heldout-split``) is cut in two seeded, disjoint
halves: one plays the samples, the other the floor, so every figure of the samples row should be at the floor's
level. ``--shift-into-object-cm D`` degrades the samples: each hand moves D cm towards the centroid of its object
(straight line from the hand's vertex mean), which must raise the hand-object penetration and lower stability.
``--move-object-cm D`` moves each object D cm in a seeded random direction, hands unchanged: a hands-only
evaluator cannot see it, an object-aware one must.

    interhandgen data synth --objects --num 160 --seed 3 --splits 0.5,0,0.5 --threads 1 --out obj160.npz
    interhandgen evaluator train --data obj160.npz --out ev_obj --epochs 30
    python benchmarks/object_protocol.py --reference obj160.npz --evaluator ev_obj \
        --out benchmarks/results/object_protocol.json
    python benchmarks/object_protocol.py --reference obj160.npz --evaluator ev_obj --shift-into-object-cm 1 \
        --out benchmarks/results/object_protocol_shift1cm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import HandParams, TwoHandSet
from interhandgen.evaluation.bundled import load_evaluator
from interhandgen.evaluation.object_protocol import ObjectSettings, object_markdown
from interhandgen.evaluation.protocol import EvaluationSettings, evaluate
from interhandgen.evaluation.report import public
from interhandgen.objects.metrics import object_world_vertices


def shift_hands_into_objects(two: TwoHandSet, distance_m: float) -> TwoHandSet:
    """Each hand translated by ``distance_m`` towards the centroid of its pair's object vertices (from the hand's
    vertex mean)."""
    lib = two.object_library
    centre = np.stack([object_world_vertices(lib.vertices[int(k)], two.object_pose[i:i + 1].astype(np.float64))[0]
                       .mean(0) for i, k in enumerate(two.object_id)])
    verts = two.vertices(dtype=torch.float64)
    hands = {}
    for side in ("left", "right"):
        h = two.hand(side)
        d = centre - verts[side].mean(1).numpy()
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        hands[side] = HandParams(pose=h.pose, betas=h.betas, global_orient=h.global_orient,
                                 transl=(h.transl + distance_m * d).astype(h.transl.dtype))
    return two._replace(left=hands["left"], right=hands["right"])


def move_objects(two: TwoHandSet, distance_m: float, seed: int) -> TwoHandSet:
    """Each object translated by ``distance_m`` in a seeded uniformly random direction."""
    d = np.random.default_rng(seed).normal(size=(len(two), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pose = two.object_pose.copy()
    pose[:, 4:7] += distance_m * d
    return two._replace(object_pose=pose)


def targets(result: dict) -> dict:
    """Issue 13's evaluation targets, samples against the data floor; each with both numbers and met or not."""
    o = result["objects"]
    s, f = o["samples"], o["floor"]
    out = {}
    pen_s, pen_f = s["penetration_volume_cm3_per_hand_mean"], f["penetration_volume_cm3_per_hand_mean"]
    out["hand_object_penetration_at_most_2x_data"] = {"samples": pen_s, "data": pen_f, "met": pen_s <= 2 * pen_f}
    c_s, c_f = s["both_contact_rate"], f["both_contact_rate"]
    out["both_contact_within_5_points"] = {"samples": c_s, "data": c_f, "met": abs(c_s - c_f) <= 0.05}
    if isinstance(s.get("physics"), dict) and isinstance(f.get("physics"), dict):
        h_s, h_f = s["physics"]["held_fraction"], f["physics"]["held_fraction"]
        out["held_within_10_points"] = {"samples": h_s, "data": h_f, "met": abs(h_s - h_f) <= 0.10}
    fh_s, fh_f = result["distribution"]["fhid"]["mean"], o["distribution_floor"]["fhid"]["mean"]
    out["fhid_within_3x_floor"] = {"samples": fh_s, "floor": fh_f, "met": fh_s <= 3 * fh_f}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, help="TwoHandSet .npz with an object library and splits")
    p.add_argument("--reference-split", default="train", help="split of --reference used as the reference")
    p.add_argument("--heldout-split", default="test",
                   help="split of --reference that gives the floor (and, without --samples, the samples)")
    p.add_argument("--samples", default=None, help="generated pairs with an object library (default: half of the "
                                                   "held-out split)")
    p.add_argument("--evaluator", required=True, help="object-aware evaluator (interhandgen evaluator train)")
    p.add_argument("--shift-into-object-cm", type=float, default=0.0, help="degrade the samples (see above)")
    p.add_argument("--move-object-cm", type=float, default=0.0, help="degrade the samples (see above)")
    p.add_argument("--replications", type=int, default=5)
    p.add_argument("--no-physics", action="store_true")
    p.add_argument("--physics-pairs", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/object_protocol.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = TwoHandSet.load(args.reference)
    reference = data.select_split(args.reference_split)
    heldout = data.select_split(args.heldout_split)
    if args.samples is None:
        perm = np.random.default_rng(args.seed).permutation(len(heldout))
        half = len(heldout) // 2
        samples, floor = heldout[np.sort(perm[:half])], heldout[np.sort(perm[half:])]
    else:
        samples, floor = TwoHandSet.load(args.samples), heldout
    if args.shift_into_object_cm:
        samples = shift_hands_into_objects(samples, args.shift_into_object_cm / 100.0)
    if args.move_object_cm:
        samples = move_objects(samples, args.move_object_cm / 100.0, args.seed)
    extractor = load_evaluator(args.evaluator)
    settings = EvaluationSettings(replications=args.replications, seed=args.seed, density_coverage=False,
                                  c2st=False, categories=False)
    objects = ObjectSettings(physics=not args.no_physics, physics_pairs=args.physics_pairs, seed=args.seed)
    t0 = time.perf_counter()
    result = evaluate(samples, reference, extractor, settings, progress=False, floor=floor, objects=objects)
    wall = time.perf_counter() - t0
    table = object_markdown(result)
    record = {
        "command": "python benchmarks/object_protocol.py " + " ".join(argv if argv is not None else os.sys.argv[1:]),
        "reference_file": os.path.abspath(args.reference), "num_samples": len(samples),
        "num_reference": len(reference), "num_floor": len(floor), "shift_into_object_cm": args.shift_into_object_cm,
        "move_object_cm": args.move_object_cm,
        "evaluator": os.path.abspath(args.evaluator), "wall_s": wall, "threads": args.threads,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
        "targets": targets(result) if result["objects"].get("floor") is not None else None,
        "table_markdown": table, "result": public(result),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    atomic_write_bytes(args.out, (json.dumps(record, indent=2, default=float) + "\n").encode())
    print(table)
    print(json.dumps(record["targets"], indent=2))
    print(f"wall {wall:.1f} s; wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
