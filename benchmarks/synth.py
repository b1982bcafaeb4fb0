"""Throughput of the synthetic interaction generator against a reference commit, and its quality (exact metrics).

    python benchmarks/synth.py --num 1000 --ref f25b699 --check 1000 --save-set /tmp/synth_check.npz

Speed: generates ``--num`` samples (all categories, balanced, one process, one torch thread) with the code of
``--ref`` (extracted with ``git archive`` into a temporary folder) and with the working tree, one after the
other, each in a fresh subprocess; records wall and CPU seconds of each. Other processes share the cores, so
the numbers that carry over are the RATIOS of the two runs and the CPU-time rate: a single-threaded process
on a quiet core runs at about its CPU-time rate, so the 100,000-sample time with 2 worker processes on a
quiet 2-core machine is extrapolated as ``target / (2 * num / cpu_seconds)``.

Quality: exact metrics on ``--check`` random samples of the working tree's set: surface minimum distance
(``geometry.min_distance`` with faces), ``penetration_depth(method="exact")`` and ``penetration_volume``
(manifold3d booleans). Writes JSON atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

RUN_SNIPPET = r"""
import json, sys, time, torch
torch.set_num_threads(1)
from interhandgen.data.synth import generate_synthetic_set
num, seed, batch_size, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
wall, cpu = time.perf_counter(), time.process_time()
s = generate_synthetic_set(num, seed, batch_size=batch_size, workers=1, progress=False)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
if out != "-":
    s.save(out)
meta = s.metadata["synth"]["per_category"]
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rejected": {n: st["rejected"] for n, st in meta.items()},
                  "generated": {n: st["generated"] for n, st in meta.items()}}))
"""


def _run(src: Path, num: int, seed: int, batch_size: int, out: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", RUN_SNIPPET, str(num), str(seed), str(batch_size), out],
                          env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise RuntimeError(f"generation with {src} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(path: str, num: int, seed: int) -> dict:
    from interhandgen import geometry
    from interhandgen.data import TwoHandSet
    from interhandgen.data.synth import CATEGORIES, CONTACT_DISTANCE, MAX_PENETRATION_DEPTH
    from interhandgen.hand.open_hand import open_hand_data

    s = TwoHandSet.load(path)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(s), size=min(num, len(s)), replace=False))
    sub = s[idx]
    verts = sub.vertices()
    fl, fr = open_hand_data("left").faces, open_hand_data("right").faces
    vl, vr = verts["left"].double(), verts["right"].double()
    dist = geometry.min_distance(vl, vr, fl, fr).numpy()
    depth = geometry.penetration_depth(vl, fl, vr, fr, method="exact").numpy()
    volume = geometry.penetration_volume(vl, fl, vr, fr)
    contact = np.array([CATEGORIES[n].in_contact for n in sub.category_names])[sub.category]
    return {
        "samples": int(len(idx)),
        "contact_category_samples": int(contact.sum()),
        "contact_rate_2mm_contact_categories": float(np.mean(dist[contact] < CONTACT_DISTANCE)),
        "penetration_volume_cm3_mean": float(volume.mean()),
        "penetration_volume_cm3_max": float(volume.max()),
        "penetration_depth_mm_max": float(depth.max() * 1000),
        "samples_deeper_than_5mm": int((depth > MAX_PENETRATION_DEPTH).sum()),
        "no_contact_min_distance_mm_range": [float(dist[~contact].min() * 1000), float(dist[~contact].max() * 1000)]
        if (~contact).any() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--ref", default=None, help="git commit of the reference code (e.g. f25b699); omit to skip")
    parser.add_argument("--target", type=int, default=100_000, help="set size to extrapolate to")
    parser.add_argument("--check", type=int, default=0, help="exact-metric check of this many random samples")
    parser.add_argument("--save-set", default=None, help="keep the working tree's generated set at this .npz path")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "synth.json"))
    args = parser.parse_args(argv)

    from interhandgen._atomic import atomic_write_bytes

    result: dict = {"num": args.num, "seed": args.seed, "batch_size": args.batch_size, "workers": 1,
                    "torch_threads": 1, "target": args.target, "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average_1min_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        if args.ref:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.ref, "src/interhandgen"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            runs["reference"] = _run(Path(tmp) / "src", args.num, args.seed, args.batch_size, "-")
        set_path = args.save_set or os.path.join(tmp, "set.npz")
        runs["current"] = _run(REPO / "src", args.num, args.seed, args.batch_size, set_path)
        for name, run in runs.items():
            run["samples_per_s_wall"] = round(args.num / run["wall_s"], 2)
            run["samples_per_s_cpu"] = round(args.num / run["cpu_s"], 2)
            run["extrapolated_minutes_quiet_2_workers"] = round(args.target / (2 * args.num / run["cpu_s"]) / 60, 1)
        result["runs"] = runs
        result["reference_commit"] = args.ref
        if "reference" in runs:
            result["speedup_wall"] = round(runs["reference"]["wall_s"] / runs["current"]["wall_s"], 3)
            result["speedup_cpu"] = round(runs["reference"]["cpu_s"] / runs["current"]["cpu_s"], 3)
        result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
        if args.check:
            result["check"] = _check(set_path, args.check, args.seed)
    atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
