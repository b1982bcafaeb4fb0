"""Sampling speed and APG effect: cascaded sampling unguided, with CFG, with CFG + APG, and with CFG + APG +
contact settling and resampling (the default sampler; key ``cfg_apg_settle``), timed in one run.

Without ``--checkpoint`` a freshly initialised `small` network with identity-like statistics is timed (speed does
not depend on the weights; the bundled model has this architecture). With ``--checkpoint`` the trained model is
timed and, on the first ``--quality-num`` pairs of the CFG and CFG + APG runs (same seed, hence the same anchors),
the exact penetration volume (cm^3, manifold3d booleans) and the contact rate (minimum vertex distance < 2 mm, as
in the evaluation protocol) are measured. ``--steps`` takes several step counts. Writes JSON.

    python benchmarks/sampling.py --num 1000 --steps 42 20 10 --out benchmarks/results/sampling.json
    python benchmarks/sampling.py --checkpoint runs/small --num 1000 --quality-num 500

The speed of the default sampler against an earlier checkout (both as `interhandgen sample` processes, back to
back, with the quality of both outputs) is measured by benchmarks/sampler_speed.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.diffusion import Schedule
from interhandgen.data.canonical import canonical_vertices
from interhandgen.generation import SamplerSettings, SubsetHand, cascaded_sample, load_model
from interhandgen.generation.api import apg_factory, reject_factory, settle_factory
from interhandgen.hand import open_hand
from interhandgen.models import DenoiserConfig, build_denoiser

DEFAULTS = SamplerSettings()
TARGET_10K_S = 180.0
TARGET_OVERHEAD = 2.0


def fresh_small():
    torch.manual_seed(0)
    net = build_denoiser(DenoiserConfig.from_yaml("configs/small.yaml")).eval()
    mean, std = torch.zeros(2, 64), torch.ones(2, 64) * 0.2
    mean[:, 55] = mean[:, 59] = 1.0  # raw canonical rotation = identity
    return net, Schedule.cosine(129), mean, std, "fresh small (random weights)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def geometry(x: torch.Tensor, left, right) -> dict:
    from interhandgen.evaluation.protocol import EvaluationSettings, geometry_metrics

    with torch.no_grad():
        va, _ = canonical_vertices(x[:, 0], left)
        vo, _ = canonical_vertices(x[:, 1], right)
    g = geometry_metrics(torch.stack([va, vo], dim=1), left.faces, right.faces, EvaluationSettings(),
                         progress=False)
    vol = g["_arrays"]["penetration_volume_cm3"]
    return {"penetration_volume_cm3_mean": float(np.mean(vol)), "penetrating_fraction": float(np.mean(vol > 0)),
            "penetration_depth_mm_mean": g["penetration_depth_mm"]["mean"], "contact_rate": g["contact_rate"],
            "min_distance_mm_median": g["min_distance_mm"]["median"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="a run folder, checkpoint.pt or model.safetensors")
    ap.add_argument("--num", type=int, default=500, help="pairs per timed configuration")
    ap.add_argument("--batch-size", type=int, default=2500)
    ap.add_argument("--steps", type=int, nargs="+", default=[DEFAULTS.steps], help="one or more step counts")
    ap.add_argument("--apg-weight", type=float, default=DEFAULTS.apg_weight)
    ap.add_argument("--cfg-scale", type=float, default=DEFAULTS.cfg_scale)
    ap.add_argument("--apg-last-steps", type=int, default=DEFAULTS.apg_last_steps)
    ap.add_argument("--apg-points", type=int, default=DEFAULTS.apg_points)
    ap.add_argument("--quality-num", type=int, default=500, help="pairs whose exact geometry is measured")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the exact geometry runs on the CPU either way)")
    ap.add_argument("--out", default="benchmarks/results/sampling.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        m = load_model(args.checkpoint)
        net, sched, mean, std, source = (m.net, m.schedule(), m.stats_mean,
                                         m.stats_std, m.source)
    else:
        net, sched, mean, std, source = fresh_small()
    device = torch.device(args.device)
    left, right = open_hand("left").to(device), open_hand("right").to(device)
    subsets = (SubsetHand(left, args.apg_points), SubsetHand(right, args.apg_points))
    settle_subsets = (SubsetHand(left, DEFAULTS.settle_points), SubsetHand(right, DEFAULTS.settle_points))

    runs = []
    for steps in args.steps:
        base = SamplerSettings(steps=steps, apg_last_steps=args.apg_last_steps, apg_points=args.apg_points,
                               cfg_scale=args.cfg_scale, settle_steps=0, resample_rounds=0)
        configs = {
            "unguided": dataclasses.replace(base, cfg_scale=0.0, apg_weight=0.0),
            "cfg": dataclasses.replace(base, apg_weight=0.0),
            "cfg_apg": dataclasses.replace(base, apg_weight=args.apg_weight),
            # The full sampler: APG, contact settling and resampling of the partners still interpenetrating.
            "cfg_apg_settle": dataclasses.replace(base, apg_weight=args.apg_weight,
                                                  settle_steps=DEFAULTS.settle_steps,
                                                  resample_rounds=DEFAULTS.resample_rounds),
        }
        row: dict = {"steps": steps}
        samples = {}
        for name, s in configs.items():
            make_apg = apg_factory(*subsets, mean[1].to(device), std[1].to(device), s)
            settle, reject = settle_factory(*settle_subsets, s), reject_factory(*settle_subsets, s)
            _sync(device)
            t0 = time.perf_counter()
            x = cascaded_sample(net, sched.to(device), mean, std, args.num, s, make_apg=make_apg, settle=settle,
                                reject=reject, seed=args.seed, batch_size=args.batch_size, progress=False, device=device)
            _sync(device)
            dt = time.perf_counter() - t0
            samples[name] = x
            row[name] = {"seconds": dt, "pairs_per_s": args.num / dt, "extrapolated_10k_s": 10000 * dt / args.num}
            print(f"steps {steps:3d} {name:9s}: {args.num} pairs in {dt:6.1f} s ({args.num / dt:6.1f} pairs/s, "
                  f"10k ~ {10000 * dt / args.num:5.0f} s)", flush=True)
        row["settle_overhead_vs_cfg_apg"] = row["cfg_apg_settle"]["seconds"] / row["cfg_apg"]["seconds"]
        row["apg_overhead_vs_unguided"] = row["cfg_apg"]["seconds"] / row["unguided"]["seconds"]
        row["apg_overhead_vs_cfg"] = row["cfg_apg"]["seconds"] / row["cfg"]["seconds"]
        row["meets_10k_target"] = row["cfg_apg_settle"]["extrapolated_10k_s"] <= TARGET_10K_S
        row["meets_overhead_target"] = row["apg_overhead_vs_unguided"] <= TARGET_OVERHEAD
        print(f"steps {steps:3d}: CFG+APG / unguided = {row['apg_overhead_vs_unguided']:.2f}x, "
              f"CFG+APG / CFG = {row['apg_overhead_vs_cfg']:.2f}x (target <= {TARGET_OVERHEAD}x); "
              f"10k with CFG+APG ~ {row['cfg_apg']['extrapolated_10k_s']:.0f} s, with settling "
              f"~ {row['cfg_apg_settle']['extrapolated_10k_s']:.0f} s (target <= {TARGET_10K_S:.0f} s)",
              flush=True)
        if args.checkpoint and args.quality_num > 0:
            n = min(args.quality_num, args.num)
            t0 = time.perf_counter()
            cl, cr = left.to("cpu"), right.to("cpu")
            row["quality"] = {"num": n, **{name: geometry(samples[name][:n].cpu(), cl, cr)
                                           for name in ("unguided", "cfg", "cfg_apg", "cfg_apg_settle")}}
            q = row["quality"]
            no, yes = q["cfg"]["penetration_volume_cm3_mean"], q["cfg_apg"]["penetration_volume_cm3_mean"]
            q["apg_volume_ratio"] = yes / no if no > 0 else None
            print(f"steps {steps:3d}: mean penetration volume {no:.3f} -> {yes:.3f} cm^3 with APG "
                  f"(ratio {q['apg_volume_ratio'] if q['apg_volume_ratio'] is None else round(q['apg_volume_ratio'], 3)},"
                  f" target <= 0.5); with settling {q['cfg_apg_settle']['penetration_volume_cm3_mean']:.3f} cm^3; contact rate "
                  f"{q['cfg']['contact_rate']:.3f} -> {q['cfg_apg']['contact_rate']:.3f} -> "
                  f"{q['cfg_apg_settle']['contact_rate']:.3f}"
                  f" ({time.perf_counter() - t0:.0f} s for the exact geometry)", flush=True)
        runs.append(row)

    results = {
        "model": source,
        "runs": runs,
        "settings": {k: v for k, v in dataclasses.asdict(SamplerSettings(apg_weight=args.apg_weight,
                                                                         apg_last_steps=args.apg_last_steps,
                                                                         apg_points=args.apg_points,
                                                                         cfg_scale=args.cfg_scale)).items()
                     if k != "steps"},
        "setup": {"num": args.num, "batch_size": args.batch_size, "seed": args.seed, "threads": torch.get_num_threads(),
                  "load_average": os.getloadavg(), "machine": platform.processor() or platform.machine(),
                  "torch": torch.__version__, "device": str(device),
                  "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "targets": {"cfg_apg_10k_s": TARGET_10K_S, "apg_overhead_vs_unguided": TARGET_OVERHEAD,
                    "apg_volume_ratio": 0.5},
    }
    atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
