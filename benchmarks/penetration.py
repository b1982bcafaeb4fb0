"""Benchmark of the two-hand penetration metrics on synthetic hand-sized meshes in contact.

Measures, on pairs of closed 1538-vertex blobs (tests/fixtures/meshes.py blob_pairs):
  * exact penetration volume (manifold3d, all cores): pairs/s, projected time for 10,000 pairs;
  * fast torch approximations (penetration depth "fast", vertex min distance, penetration loss): pairs/s;
  * exact penetration depth (pseudo-normal inside test + exact distance): pairs/s, and the error of the
    fast depth against it on the same pairs (mm);
  * the reference code's way: one fresh Python process per pair running a trimesh boolean intersection
    (~5 pairs), for the speed ratio.
Writes JSON (atomically) to --out. Timings are wall-clock on whatever else the machine is running.

    python benchmarks/penetration.py --pairs 10000 --exact-pairs 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from interhandgen.geometry import min_distance, penetration_depth, penetration_loss, penetration_volume

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.meshes import blob_pairs  # noqa: E402  (test meshes live with the tests)

REFERENCE_SNIPPET = """
import sys, numpy as np, trimesh
data = np.load(sys.argv[1])
a = trimesh.Trimesh(data["a"], data["faces"])
b = trimesh.Trimesh(data["b"], data["faces"])
try:
    inter = trimesh.boolean.intersection([a, b])
    print(inter.volume * 1e6)
except Exception:
    print(0.0)
"""


def _atomic_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _synthetic_depth_study(args) -> dict:
    """Fast penetration depth (verified candidates) and the bare nearest-vertex + normal estimate against the
    exact depth on contact-category pairs of the synthetic generator (open hands, sealed by the metric)."""
    import math

    from interhandgen.data import TwoHandSet
    from interhandgen.data.synth import CATEGORIES, CATEGORY_NAMES, generate_synthetic_set
    from interhandgen.geometry.mesh import seal_torch
    from interhandgen.geometry.queries import fast_inside
    from interhandgen.hand.open_hand import open_hand_data

    if args.synth_set:
        s = TwoHandSet.load(args.synth_set)
    else:
        n_contact = sum(CATEGORIES[n].in_contact for n in CATEGORY_NAMES)
        s = generate_synthetic_set(math.ceil(args.synth_pairs * len(CATEGORY_NAMES) / n_contact) + 12, args.seed,
                                   progress=True)
    contact = np.flatnonzero(np.array([CATEGORIES[n].in_contact for n in s.category_names])[s.category])
    if len(contact) < args.synth_pairs:
        raise ValueError(f"the synthetic set holds {len(contact)} contact pairs, fewer than --synth-pairs {args.synth_pairs}")
    sub = s[contact[: args.synth_pairs]]
    verts = sub.vertices()
    fl, fr = open_hand_data("left").faces, open_hand_data("right").faces
    vl, vr = verts["left"].double().to(args.device), verts["right"].double().to(args.device)
    exact, t_exact = _timed(lambda: penetration_depth(vl, fl, vr, fr, method="exact"))
    fast, t_fast = _timed(lambda: penetration_depth(vl, fl, vr, fr, method="fast"))

    def estimate_only():
        # The unverified rule (what method="fast" returned before): nearest vertex + vertex-normal sign.
        out = torch.zeros(len(vl), dtype=torch.float64, device=vl.device)
        for points, verts_other, faces_other in ((vl, vr, fr), (vr, vl, fl)):
            sealed, sealed_faces = seal_torch(verts_other, faces_other)
            inside, dist = fast_inside(points, sealed, sealed_faces)
            out = torch.maximum(out, torch.where(inside, dist, torch.zeros_like(dist)).amax(1))
        return out

    estimate, t_est = _timed(estimate_only)
    e, f, g = (x.cpu().numpy() * 1000 for x in (exact, fast, estimate))

    def errors(x):
        err = x - e
        return {"max_abs_mm": float(np.abs(err).max()), "mean_abs_mm": float(np.abs(err).mean()),
                "p99_abs_mm": float(np.percentile(np.abs(err), 99)),
                "over_exact_by_0.01mm": int((err > 0.01).sum()), "under_exact_by_0.01mm": int((err < -0.01).sum()),
                "false_positives_exact_0": int(((x > 0) & (e == 0)).sum()),
                "missed_exact_positive": int(((x == 0) & (e > 0)).sum())}

    return {
        "pairs": int(len(vl)), "source": args.synth_set or f"generate_synthetic_set(seed={args.seed})",
        "pairs_with_exact_depth_over_0": int((e > 0).sum()), "exact_depth_mm_max": float(e.max()),
        "exact_pairs_per_s": len(vl) / t_exact, "fast_pairs_per_s": len(vl) / t_fast,
        "estimate_only_pairs_per_s": len(vl) / t_est, "fast_speedup_over_exact": t_exact / t_fast,
        "fast_vs_exact": errors(f), "estimate_only_vs_exact": errors(g),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10000, help="pairs for the exact volume and the fast metrics")
    parser.add_argument("--exact-pairs", type=int, default=200, help="pairs for exact depth and the error study")
    parser.add_argument("--reference-pairs", type=int, default=5, help="pairs run the reference way (subprocess)")
    parser.add_argument("--workers", type=int, default=None, help="volume worker processes (default: all cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "penetration.json"))
    parser.add_argument("--synth-pairs", type=int, default=1000,
                        help="contact pairs of the synthetic generator for the fast-vs-exact depth study (0: skip)")
    parser.add_argument("--synth-set", default=None, help="TwoHandSet .npz to take them from (default: generate)")
    parser.add_argument("--synth-only", action="store_true",
                        help="run only the synthetic-pair study and merge it into an existing --out JSON")
    args = parser.parse_args(argv)

    if args.synth_only:
        result = json.load(open(args.out)) if os.path.exists(args.out) else {}
        result["fast_depth_on_synthetic_contact_pairs"] = _synthetic_depth_study(args)
        _atomic_json(args.out, result)
        print(f"wrote {args.out}")
        return 0

    verts_a, verts_b, faces = blob_pairs(args.pairs, seed=args.seed)
    result: dict = {
        "meshes": {"pairs": args.pairs, "verts_per_hand": int(verts_a.shape[1]), "faces_per_hand": int(faces.shape[0]),
                   "generator": "tests/fixtures/meshes.py:blob_pairs", "seed": args.seed},
        "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": args.device,
                    "load_average_at_start": os.getloadavg()},
    }

    volumes, seconds = _timed(lambda: penetration_volume(verts_a, faces, verts_b, faces, num_workers=args.workers,
                                                         progress=True))
    result["exact_volume"] = {
        "seconds": seconds, "pairs_per_s": args.pairs / seconds,
        "projected_seconds_10k": seconds * 10000 / args.pairs,
        "fraction_overlapping": float((volumes > 0).mean()), "mean_cm3": float(volumes.mean()),
        "median_cm3_of_overlapping": float(np.median(volumes[volumes > 0])) if (volumes > 0).any() else 0.0,
    }
    print(json.dumps(result["exact_volume"], indent=2))

    a = torch.tensor(verts_a, dtype=torch.float32, device=args.device)
    b = torch.tensor(verts_b, dtype=torch.float32, device=args.device)
    fast_depth, t_fast = _timed(lambda: penetration_depth(a, faces, b, faces, method="fast"))
    _, t_dist = _timed(lambda: min_distance(a, b))
    _, t_loss = _timed(lambda: penetration_loss(a, faces, b, faces))
    result["fast"] = {
        "penetration_depth_pairs_per_s": args.pairs / t_fast,
        "min_distance_vertex_pairs_per_s": args.pairs / t_dist,
        "penetration_loss_forward_pairs_per_s": args.pairs / t_loss,
    }

    m = min(args.exact_pairs, args.pairs)
    a64, b64 = torch.tensor(verts_a[:m], device=args.device), torch.tensor(verts_b[:m], device=args.device)
    exact_depth, t_exact = _timed(lambda: penetration_depth(a64, faces, b64, faces, method="exact"))
    _, t_surface = _timed(lambda: min_distance(a64, b64, faces, faces))
    err_mm = (fast_depth[:m].double().cpu() - exact_depth.cpu()).numpy() * 1000
    abs_err = np.abs(err_mm)
    exact_pos, fast_pos, vol_pos = exact_depth.cpu().numpy() > 0, fast_depth[:m].cpu().numpy() > 0, volumes[:m] > 0
    result["exact_depth"] = {"pairs": m, "pairs_per_s": m / t_exact, "mean_mm": float(exact_depth.mean() * 1000)}
    result["min_distance_surface_pairs_per_s"] = m / t_surface
    result["fast_depth_error_vs_exact_mm"] = {
        "pairs": m, "mean_abs": float(abs_err.mean()), "median_abs": float(np.median(abs_err)),
        "p95_abs": float(np.percentile(abs_err, 95)), "max_abs": float(abs_err.max()),
        "mean_signed": float(err_mm.mean()),
        "relative_mean_abs_of_penetrating": float((abs_err[exact_pos] / (exact_depth.cpu().numpy()[exact_pos] * 1000)).mean())
        if exact_pos.any() else None,
        "detection_agreement_fast_vs_exact": float((fast_pos == exact_pos).mean()),
        "detection_agreement_exact_depth_vs_volume": float((exact_pos == vol_pos).mean()),
        "detection_agreement_fast_depth_vs_volume": float((fast_pos == vol_pos).mean()),
    }
    print(json.dumps(result["fast_depth_error_vs_exact_mm"], indent=2))

    k = min(args.reference_pairs, args.pairs)
    ref_volumes, ref_seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "ref.py")
        with open(script, "w") as fh:
            fh.write(REFERENCE_SNIPPET)
        for i in range(k):
            path = os.path.join(tmp, f"pair{i}.npz")
            np.savez(path, a=verts_a[i], b=verts_b[i], faces=faces)
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, script, path], capture_output=True, text=True, check=True)
            ref_seconds.append(time.perf_counter() - t0)
            ref_volumes.append(float(out.stdout.strip().splitlines()[-1]))
    per_pair_ours = seconds / args.pairs
    result["reference_way"] = {
        "description": "fresh python process per pair, trimesh.boolean.intersection (default engine), any exception -> 0",
        "pairs": k, "seconds_per_pair": float(np.mean(ref_seconds)), "pairs_per_s": 1.0 / float(np.mean(ref_seconds)),
        "volumes_cm3": ref_volumes, "ours_cm3_same_pairs": volumes[:k].tolist(),
        "max_abs_diff_cm3": float(np.max(np.abs(np.asarray(ref_volumes) - volumes[:k]))),
        "speedup_of_exact_volume": float(np.mean(ref_seconds)) / per_pair_ours,
        "projected_seconds_10k": float(np.mean(ref_seconds)) * 10000,
    }
    print(json.dumps(result["reference_way"], indent=2))
    if args.synth_pairs:
        result["fast_depth_on_synthetic_contact_pairs"] = _synthetic_depth_study(args)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    _atomic_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
