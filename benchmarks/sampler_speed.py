"""The default sampler (``interhandgen sample``: cascade, APG, contact settling, resampling) of this checkout against
the same command of another checkout (e.g. main before a change), timed back to back, with the quality of both
outputs: exact geometry of the first ``--quality-num`` pairs and the distribution metrics (FHID, KHID, diversity,
precision, recall with the bundled evaluator) of all pairs against a reference set. Writes JSON.

    git archive c31ec90 | tar -x -C /tmp/base      # the checkout to compare with
    python benchmarks/sampler_speed.py --baseline-src /tmp/base/src --num 10000 --threads 1 \\
        --quality-num 2000 --reference synth_s20261204.npz --out benchmarks/results/sampler_speed.json

Each command is a fresh process (``python -m interhandgen sample``; the baseline with ``PYTHONPATH`` set to its
``src``), so start-up and writing are included; wall and CPU seconds (user + system of the child) are recorded,
with the load average before each run. The machine may be shared: compare the ratio of runs made back to back.
``--phase timing`` / ``quality`` runs one part (quality reads the .npz files the timing part wrote).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.evaluation.bundled import load_evaluator
from interhandgen.evaluation.features import extract_features
from interhandgen.evaluation.protocol import (EvaluationSettings, canonical_two_hand_vertices, distribution_metrics,
                                              geometry_metrics)

TARGET_SPEEDUP = 2.0


def timed_sample(src: str | None, num: int, seed: int, threads: int, out: Path) -> dict:
    """Run ``interhandgen sample`` (of ``src`` when given) in a child process; its wall and CPU seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if src is not None:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "interhandgen", "sample", "--num", str(num), "--seed", str(seed), "--threads",
           str(threads), "--no-progress", "--out", str(out)]
    load = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": " ".join(cmd), "pythonpath": src, "wall_s": wall, "cpu_s": cpu, "load_average_before": load}


def quality(path: Path, num_geometry: int, reference_feats: torch.Tensor | None, extractor, settings) -> dict:
    two = TwoHandSet.load(path)
    models = two.hand_models()
    out: dict = {"file": str(path), "num": len(two)}
    verts = canonical_two_hand_vertices(two, models)
    if num_geometry > 0:
        g = geometry_metrics(verts[:num_geometry], models["left"].faces, models["right"].faces, settings,
                             progress=False)
        vol = np.asarray(g["_arrays"]["penetration_volume_cm3"])
        out["geometry"] = {"num": int(min(num_geometry, len(two))),
                           "penetration_volume_cm3_mean": float(vol.mean()),
                           "penetration_volume_cm3_max": float(vol.max()),
                           "penetrating_fraction": float((vol > 0).mean()),
                           "contact_rate": g["contact_rate"], "proximity_ratio": g["proximity_ratio"],
                           "min_distance_mm_median": g["min_distance_mm"]["median"]}
    if reference_feats is not None:
        feats = extract_features(extractor, verts, batch_size=settings.feature_batch_size, progress=False)
        d = distribution_metrics(feats, reference_feats, settings)
        out["distribution"] = {k: v for k, v in d.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-src", required=True, help="the src/ folder of the checkout to compare with")
    ap.add_argument("--num", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="timed (baseline, this) rounds, back to back")
    ap.add_argument("--quality-num", type=int, default=2000, help="pairs whose exact geometry is measured (0: none)")
    ap.add_argument("--reference", default=None, help="reference pairs (.npz, test split) for FHID etc. (none: skip)")
    ap.add_argument("--phase", choices=["all", "timing", "quality"], default="all")
    ap.add_argument("--work", default="sampler_speed_work", help="folder for the sample files")
    ap.add_argument("--out", default="benchmarks/results/sampler_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    files = {"baseline": work / "baseline.npz", "this": work / "this.npz"}
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.is_file() and args.phase == "quality" else {}
    if args.phase in ("all", "timing"):
        rounds = []
        for r in range(args.repeats):
            row = {}
            for name, src in (("baseline", args.baseline_src), ("this", None)):
                row[name] = timed_sample(src, args.num, args.seed, args.threads, files[name])
                print(f"round {r}: {name:8s} wall {row[name]['wall_s']:7.1f} s, cpu {row[name]['cpu_s']:7.1f} s "
                      f"(load before {row[name]['load_average_before'][0]:.1f})", flush=True)
            row["speedup_wall"] = row["baseline"]["wall_s"] / row["this"]["wall_s"]
            row["speedup_cpu"] = row["baseline"]["cpu_s"] / row["this"]["cpu_s"]
            print(f"round {r}: speed-up {row['speedup_wall']:.2f}x wall, {row['speedup_cpu']:.2f}x cpu "
                  f"(target {TARGET_SPEEDUP}x)", flush=True)
            rounds.append(row)
        results.update({"rounds": rounds, "target_speedup": TARGET_SPEEDUP,
                        "meets_target_cpu": all(r["speedup_cpu"] >= TARGET_SPEEDUP for r in rounds),
                        "meets_target_wall": all(r["speedup_wall"] >= TARGET_SPEEDUP for r in rounds),
                        "setup": {"num": args.num, "seed": args.seed, "threads": args.threads,
                                  "baseline_src": args.baseline_src, "machine": platform.processor() or platform.machine(),
                                  "cpus": os.cpu_count(), "torch": torch.__version__}})
        atomic_write_bytes(out_path, json.dumps(results, indent=2).encode())
    if args.phase in ("all", "quality"):
        settings = EvaluationSettings()
        extractor, ref_feats = None, None
        if args.reference:
            extractor = load_evaluator()
            ref = TwoHandSet.load(args.reference)
            if ref.split is not None:
                ref = ref.select_split("test")
            ref_feats = extract_features(extractor, canonical_two_hand_vertices(ref, ref.hand_models()),
                                         batch_size=settings.feature_batch_size, progress=False)
        results["quality"] = {name: quality(path, args.quality_num, ref_feats, extractor, settings)
                              for name, path in files.items()}
        results["quality_reference"] = args.reference
        for name, q in results["quality"].items():
            g, d = q.get("geometry", {}), q.get("distribution", {})
            print(name, {k: round(v, 5) for k, v in g.items() if isinstance(v, float)},
                  {k: round(d[k]["mean"], 4) for k in ("fhid", "precision", "recall") if k in d}, flush=True)
        atomic_write_bytes(out_path, json.dumps(results, indent=2, default=float).encode())
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
