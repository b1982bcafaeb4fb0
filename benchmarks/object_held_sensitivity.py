"""How sharp the physics test is: the held fraction and both-hands contact of a set's OWN grasps after small random
perturbations of the hands.

Each pair of ``--reference`` (e.g. the data's held-out placements, all of which hold) is repeated ``--repeats``
times; per level, every hand's translation gets Gaussian noise of ``sigma`` mm per coordinate, or every number of
its finger joints' axis-angle rotations (15 joints x 3, the pose as the hand layer applies it, whatever the set's
pose space) Gaussian noise of ``sigma`` rad; then the MuJoCo stability test
(:func:`interhandgen.objects.metrics.object_stability`) and the exact contact
(:func:`interhandgen.objects.metrics.hand_object_contact`). It tells how precisely a generator must place hands and
fingers for its grasps to hold as the data's do.

    python benchmarks/object_held_sensitivity.py --reference obj_s1005.npz --repeats 5 --threads 2 \\
        --out benchmarks/results/object_held_sensitivity.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import HAND_SIDES, TwoHandSet, full_pose_from, pose_from_full
from interhandgen.objects.metrics import hand_object_contact, object_stability, wilson_interval

#: (translation sigma mm, pose sigma rad) per level; the first is the set unchanged.
LEVELS = ((0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (2.0, 0.0), (4.0, 0.0), (0.0, 0.01), (0.0, 0.02), (0.0, 0.05), (0.0, 0.1),
          (0.0, 0.2))


def perturbed(pairs: TwoHandSet, transl_mm: float, pose_rad: float, rng: np.random.Generator,
              models: dict) -> TwoHandSet:
    """``pairs`` with Gaussian noise on both hands' translations (mm per coordinate) and finger joints' axis-angle
    numbers (rad), the pose mapped back to the set's pose space."""
    hands = {}
    for side in HAND_SIDES:
        h = pairs.hand(side)
        transl = h.transl + rng.normal(0.0, transl_mm / 1000.0, h.transl.shape) if transl_mm else h.transl
        pose = h.pose
        if pose_rad:
            data = models[side].data
            full = full_pose_from(h.pose, pairs.pose_space, pairs.flat_hand_mean, data)
            full = full + rng.normal(0.0, pose_rad, full.shape)
            pose = pose_from_full(full, pairs.pose_space, pairs.flat_hand_mean, data)
        hands[side] = dataclasses.replace(h, transl=transl.astype(h.transl.dtype), pose=pose.astype(h.pose.dtype))
    return pairs._replace(**hands)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="TwoHandSet .npz with objects")
    ap.add_argument("--repeats", type=int, default=5, help="copies of every pair per level (fresh noise each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads and MuJoCo worker threads")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.repeats < 1 or a.threads < 1:
        raise SystemExit(f"--repeats and --threads must be >= 1, got {a.repeats} and {a.threads}")
    torch.set_num_threads(a.threads)
    data = TwoHandSet.load(a.reference)
    pairs = data[np.tile(np.arange(len(data)), a.repeats)]
    rng = np.random.default_rng(a.seed)
    models = pairs.hand_models()
    levels = []
    for transl_mm, pose_rad in LEVELS:
        start = time.perf_counter()
        s = perturbed(pairs, transl_mm, pose_rad, rng, models)
        held = object_stability(s, models=models, workers=a.threads)["held"]
        contact = hand_object_contact(s, models)
        levels.append({"transl_sigma_mm": transl_mm, "pose_sigma_rad": pose_rad, "pairs": len(s),
                       "held": float(held.mean()), "held_ci95": list(wilson_interval(int(held.sum()), len(s))),
                       "both_contact": float(contact.mean()),
                       "both_contact_ci95": list(wilson_interval(int(contact.sum()), len(s))),
                       "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(levels[-1]), flush=True)
    result = {"command": " ".join(sys.argv), "reference": a.reference, "reference_pairs": len(data),
              "repeats": a.repeats, "seed": a.seed, "levels": levels}
    atomic_write_bytes(a.out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
