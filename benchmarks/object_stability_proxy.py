"""How well the static-equilibrium proxy (interhandgen.objects.equilibrium) predicts MuJoCo's held / dropped.

For the first ``--pairs`` pairs of each set given (the data, the sampler's output): the MuJoCo stability test
(:func:`interhandgen.objects.metrics.object_stability`) and, from the EXACT signed distance of every hand vertex
(:class:`interhandgen.objects.sdf.ObjectSDF`), the proxy's variants (contact distance, surfaces facing down or
all, friction); per variant the confusion table against MuJoCo. ``--push-out-mm D`` first translates each hand
rigidly out of the object until every vertex is D mm outside (exact; at most 12 iterations) and rebuilds the set,
to measure what the hand-object penetration does to the physics test.

    python benchmarks/object_stability_proxy.py --set data=data/obj_s1005.npz --set samples=data/default1000.npz \\
        --pairs 160 --out benchmarks/results/object_stability_proxy.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.objects.equilibrium import can_hold, select_contacts
from interhandgen.objects.metrics import SIDES, object_rotation, object_stability
from interhandgen.objects.sdf import ObjectSDF

#: (contact distance mm, largest normal z of a contact (None: all), friction)
VARIANTS = [(2.0, None, 1.0), (2.0, None, 0.0), (5.0, None, 1.0), (2.0, 0.0, 1.0), (5.0, 0.0, 1.0),
            (5.0, -0.2, 1.0), (10.0, 0.0, 1.0), (5.0, 0.0, 0.5)]


def exact_contacts(two: TwoHandSet, n: int) -> tuple[list, list, np.ndarray]:
    """Per pair: hand vertices' exact (signed distance [V2], outward direction [V2, 3]) to the object, both hands
    stacked, world frame; and the objects' centres [n, 3]."""
    models = two.hand_models()
    hands = two.vertices(models, dtype=torch.float64)
    R = object_rotation(two.object_pose)
    lib = two.object_library
    out_d, out_g, pts = [], [], []
    for i in range(n):
        k, t = int(two.object_id[i]), two.object_pose[i, 4:7]
        sdf = ObjectSDF(torch.as_tensor(lib.vertices[k] @ R[i].T + t), torch.as_tensor(lib.faces[k]))
        v = torch.cat([hands[s][i] for s in SIDES])[None]
        d, _, g = sdf(v)
        out_d.append(d[0]), out_g.append(g[0]), pts.append(v[0])
    return pts, list(zip(out_d, out_g)), two.object_pose[:n, 4:7]


def push_out(two: TwoHandSet, n: int, margin_mm: float) -> TwoHandSet:
    """The first n pairs with each hand translated rigidly until all its vertices are ``margin_mm`` outside."""
    models = two.hand_models()
    hands = two.vertices(models, dtype=torch.float64)
    R = object_rotation(two.object_pose)
    lib = two.object_library
    sub = two[np.arange(n)]
    margin = margin_mm / 1000.0
    params = {}
    for s in SIDES:
        h = sub.hand(s)
        transl = np.array(h.transl, dtype=np.float64)
        for i in range(n):
            k, t = int(two.object_id[i]), two.object_pose[i, 4:7]
            sdf = ObjectSDF(torch.as_tensor(lib.vertices[k] @ R[i].T + t), torch.as_tensor(lib.faces[k]))
            v = hands[s][i].clone()
            for _ in range(12):
                d, _, g = sdf(v[None])
                depth = (margin - d[0]).clamp_min(0)
                if float(depth.max()) <= 1e-5:
                    break
                w = torch.nn.functional.normalize((depth[:, None] * g[0]).sum(0), dim=0)
                v = v + w * depth.max()
            transl[i] += (v - hands[s][i]).mean(0).numpy()
        params[s] = dataclasses.replace(h, transl=transl.astype(h.transl.dtype))
    return sub._replace(**params)


def confusion(pred: np.ndarray, held: np.ndarray) -> dict:
    return {"predicted_held": int(pred.sum()), "true_positive": int((pred & held).sum()),
            "false_positive": int((pred & ~held).sum()), "false_negative": int((~pred & held).sum()),
            "true_negative": int((~pred & ~held).sum()), "accuracy": float((pred == held).mean()),
            "held_given_predicted": float(held[pred].mean()) if pred.any() else None,
            "held_given_rejected": float(held[~pred].mean()) if (~pred).any() else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", required=True, help="NAME=PATH (a set with objects)")
    ap.add_argument("--pairs", type=int, default=80)
    ap.add_argument("--push-out-mm", type=float, default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    result = {"pairs": args.pairs, "push_out_mm": args.push_out_mm, "load_average_start": os.getloadavg(),
              "variants": [list(v) for v in VARIANTS], "sets": {}}
    for spec in args.set:
        name, path = spec.split("=", 1)
        two = TwoHandSet.load(path)
        n = min(args.pairs, len(two))
        if args.push_out_mm is not None:
            two = push_out(two, n, args.push_out_mm)
        t0 = time.process_time()
        stab = object_stability(two[np.arange(n)])
        held = stab["held"]
        pts, sd, centre = exact_contacts(two, n)
        entry = {"path": path, "pairs": n, "held_fraction": float(held.mean()),
                 "displacement_cm_quantiles": np.percentile(stab["displacement_cm"], [10, 25, 50, 75, 90]).tolist(),
                 "proxy": {}}
        for contact_mm, nz, mu in VARIANTS:
            t1 = time.process_time()
            pred = []
            for p, (d, g) in zip(pts, sd):
                c, nrm, mask = select_contacts(p[None], g[None], d[None], contact_mm / 1000.0, nz)
                pred.append(bool(can_hold(c, nrm, mask, torch.as_tensor(centre[len(pred)])[None], mu)[0]))
            key = f"contact<{contact_mm:g}mm,normal_z<{nz},mu={mu:g}"
            entry["proxy"][key] = {**confusion(np.array(pred), held), "cpu_s": time.process_time() - t1}
            print(name, key, json.dumps(entry["proxy"][key]), flush=True)
        entry["total_cpu_s"] = time.process_time() - t0
        result["sets"][name] = entry
    result["load_average_end"] = os.getloadavg()
    atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print("wrote", args.out)


if __name__ == "__main__":
    main()
