"""Throughput of the synthetic interaction generator, extrapolated to a 100,000-sample set.

    python benchmarks/synth.py --num 2000 --workers 2 --out benchmarks/results/synth.json

Generates ``--num`` samples (all categories, balanced) with the bundled open hand, measures wall time and
samples per second, extrapolates linearly to ``--target`` samples, and records the machine's load average
(other processes share the cores; the numbers are only comparable under similar load). Optionally checks
the generated set with the exact metrics on ``--check`` random samples. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--target", type=int, default=100_000, help="set size to extrapolate to")
    parser.add_argument("--check", type=int, default=0, help="exact-metric check of this many random samples")
    parser.add_argument("--out", default="benchmarks/results/synth.json")
    args = parser.parse_args(argv)

    from interhandgen.data.synth import CATEGORIES, CONTACT_DISTANCE, generate_synthetic_set

    load_before = os.getloadavg()
    start = time.perf_counter()
    s = generate_synthetic_set(args.num, args.seed, device=args.device, batch_size=args.batch_size,
                               progress=True, workers=args.workers)
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    rate = args.num / seconds
    meta = s.metadata["synth"]
    result = {
        "num": args.num,
        "seconds": round(seconds, 2),
        "samples_per_second": round(rate, 2),
        "extrapolated_seconds_for_target": round(args.target / rate, 1),
        "target": args.target,
        "workers": meta["workers"],
        "batch_size": args.batch_size,
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "rejected": {name: st["rejected"] for name, st in meta["per_category"].items()},
        "generated": {name: st["generated"] for name, st in meta["per_category"].items()},
    }
    if args.check:
        from interhandgen import geometry
        from interhandgen.hand.open_hand import open_hand_data

        rng = np.random.default_rng(args.seed)
        idx = np.sort(rng.choice(len(s), size=min(args.check, len(s)), replace=False))
        sub = s[idx]
        verts = sub.vertices()
        fl, fr = open_hand_data("left").faces, open_hand_data("right").faces
        vl, vr = verts["left"].double(), verts["right"].double()
        dist = geometry.min_distance(vl, vr, fl, fr).numpy()
        depth = geometry.penetration_depth(vl, fl, vr, fr, method="exact").numpy()
        volume = geometry.penetration_volume(vl, fl, vr, fr)
        contact = np.array([CATEGORIES[n].in_contact for n in sub.category_names])[sub.category]
        result["check"] = {
            "samples": int(len(idx)),
            "contact_rate_2mm_contact_categories": float(np.mean(dist[contact] < CONTACT_DISTANCE)),
            "penetration_volume_cm3_mean": float(volume.mean()),
            "penetration_volume_cm3_max": float(volume.max()),
            "penetration_depth_mm_max": float(depth.max() * 1000),
            "no_contact_min_distance_mm_range": [float(dist[~contact].min() * 1000), float(dist[~contact].max() * 1000)]
            if (~contact).any() else None,
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
