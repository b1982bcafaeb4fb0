"""How well does the sampler's inside/outside test read the object, against the exact signed distance?

For every family of the object library (``--objects`` random objects each), the sampler's 1,024 surface samples
(``surface_samples(..., seed=2)``, as ``ObjectInterHandGen.condition`` builds them) and ``--points`` points near the
surface (a surface sample moved up to 12 mm along its normal and by N(0, 4 mm) in every axis): the share of points
that :func:`interhandgen.generation.object_sampling.object_penetration` puts inside while the exact SDF
(:mod:`interhandgen.objects.sdf`) has them more than 1 mm outside ("false inside"), and the reverse ("false
outside"), for each ``--reach`` (mm; 0 = the nearest sample's plane alone); and the test's time on a batch of hand-
sized point sets (``--threads`` torch threads).

    python benchmarks/object_plane_test.py --threads 1 --out benchmarks/results/object_plane_test.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.generation.object_sampling import object_penetration
from interhandgen.objects.frame import surface_samples
from interhandgen.objects.library import FAMILIES, make_object
from interhandgen.objects.sdf import object_signed_distance


def near_surface(surf: torch.Tensor, rng: np.random.Generator, num: int) -> torch.Tensor:
    base = surf[rng.integers(0, surf.shape[0], num)]
    along = torch.tensor(rng.uniform(-0.012, 0.012, (num, 1))) * base[:, 3:]
    return base[:, :3] + along + torch.tensor(rng.normal(0, 0.004, (num, 3)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=3, help="random objects per family (seeds 0..N-1)")
    ap.add_argument("--points", type=int, default=4000)
    ap.add_argument("--reach", default="0,2,4,8", help="comma-separated reaches in mm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reaches = [float(r) for r in args.reach.split(",")]
    result = {"objects_per_family": args.objects, "points": args.points, "reach_mm": reaches,
              "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "families": {}}
    for family in sorted(FAMILIES):
        rows = {str(r): {"false_inside": [], "false_outside": []} for r in reaches}
        for seed in range(args.objects):
            obj = make_object(family, FAMILIES[family].sample(np.random.default_rng(seed)))
            surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 1024, seed=2))
            pts = near_surface(surf, np.random.default_rng(1000 + seed), args.points)[None]
            exact = object_signed_distance(pts, torch.tensor(obj.vertices), torch.tensor(obj.faces))[0][0]
            for r in reaches:
                signed = object_penetration(pts, surf[None], 0.02, r)[1][0]
                rows[str(r)]["false_inside"].append(float(((signed < 0) & (exact > 1e-3)).double().mean()))
                rows[str(r)]["false_outside"].append(float(((signed > 0) & (exact < -1e-3)).double().mean()))
        result["families"][family] = {r: {k: float(np.mean(v)) for k, v in d.items()} for r, d in rows.items()}
        print(family, {r: (round(d["false_inside"], 4), round(d["false_outside"], 4))
                       for r, d in result["families"][family].items()}, flush=True)
    result["mean"] = {str(r): {k: float(np.mean([f[str(r)][k] for f in result["families"].values()]))
                               for k in ("false_inside", "false_outside")} for r in reaches}
    # time: 200 rows of 512 points against 1,024 samples (the redraw check's size), no gradient
    obj = make_object("box", FAMILIES["box"].sample(np.random.default_rng(0)))
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 1024, seed=2))
    rng = np.random.default_rng(0)
    pts = torch.stack([near_surface(surf, rng, 512) for _ in range(200)])
    batch = surf[None].expand(200, -1, -1).contiguous()
    result["seconds_200x512"] = {}
    for r in reaches:
        object_penetration(pts, batch, 0.02, r)
        t0 = time.perf_counter()
        for _ in range(3):
            object_penetration(pts, batch, 0.02, r)
        result["seconds_200x512"][str(r)] = (time.perf_counter() - t0) / 3
    print("mean", result["mean"], "seconds", result["seconds_200x512"])
    atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print("wrote", args.out)


if __name__ == "__main__":
    main()
