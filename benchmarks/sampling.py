"""Sampling speed: cascaded sampling with CFG, without and with anti-penetration guidance, in one run.

Speed does not depend on the weights, so a randomly initialised `small` network is timed (the bundled model has
the same architecture). Reports pairs/s and the APG overhead ratio; writes JSON.

    python benchmarks/sampling.py --num 500 --out benchmarks/results/sampling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.diffusion import Schedule
from interhandgen.guidance import AntiPenetrationGuidance, canonical_vertices
from interhandgen.hand import open_hand
from interhandgen.models import DenoiserConfig, build_denoiser
from interhandgen.sampling import SamplerSettings, cascaded_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--steps", type=int, default=42)
    ap.add_argument("--out", default="benchmarks/results/sampling.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    net = build_denoiser(DenoiserConfig.from_yaml("configs/small.yaml")).eval()
    sched = Schedule.cosine(129)
    mean, std = torch.zeros(2, 64), torch.ones(2, 64) * 0.2
    mean[:, 55] = mean[:, 59] = 1.0
    left, right = open_hand("left"), open_hand("right")

    def make_apg(anchor_raw):
        with torch.no_grad():
            verts, _ = canonical_vertices(anchor_raw, left)
        return AntiPenetrationGuidance(verts, left.faces, right, mean[1], std[1], weight=1.0, num_steps=args.steps)

    results = {}
    for name, apg in (("no_apg", 0.0), ("apg", 1.0)):
        s = SamplerSettings(steps=args.steps, apg_weight=apg)
        t0 = time.perf_counter()
        cascaded_sample(net, sched, mean, std, args.num, s, make_apg=make_apg, batch_size=args.batch_size,
                        progress=False)
        dt = time.perf_counter() - t0
        results[name] = {"seconds": dt, "pairs_per_s": args.num / dt}
        print(f"{name}: {args.num} pairs in {dt:.1f} s ({args.num / dt:.1f} pairs/s)")
    results["apg_overhead_ratio"] = results["apg"]["seconds"] / results["no_apg"]["seconds"]
    results["extrapolated_10k_with_apg_s"] = 10000 / results["apg"]["pairs_per_s"]
    results["setup"] = {"num": args.num, "steps": args.steps, "threads": torch.get_num_threads(),
                        "load_average": os.getloadavg(), "machine": platform.processor() or platform.machine()}
    print(f"APG overhead: {results['apg_overhead_ratio']:.2f}x (target <= 2x); "
          f"10,000 pairs with APG ~ {results['extrapolated_10k_with_apg_s']:.0f} s (target <= 180 s)")
    atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())


if __name__ == "__main__":
    main()
