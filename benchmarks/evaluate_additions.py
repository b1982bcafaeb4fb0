"""Wall time of the protocol additions (density/coverage, C2ST on three feature sets, categories) at N vs N.

Features are seeded Gaussian stand-ins of the evaluator (256-d) and joint (135-d) features for samples, reference
and floor draw (the cost does not depend on the values); the reference gets 12 category labels. Feature extraction
is not included (see docs/evaluation.md). Writes JSON.

    python benchmarks/evaluate_additions.py --num 10000 --threads 1 --out benchmarks/results/evaluate_additions.json
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
from interhandgen.evaluation.joint_features import JOINT_FEATURE_DIM
from interhandgen.evaluation.protocol import EvaluationSettings
from interhandgen.evaluation.protocol_additions import additional_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    sets = [{"evaluator": torch.randn(args.num, 256, generator=g),
             "joints": torch.randn(args.num, JOINT_FEATURE_DIM, generator=g)} for _ in range(3)]
    labels = np.random.default_rng(0).integers(0, 12, args.num)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    additional_metrics(sets[0], sets[1], sets[2], labels, tuple(f"c{i}" for i in range(12)), EvaluationSettings(),
                       1000, timings)
    timings["total_s"] = time.perf_counter() - t0
    out = {"command": f"python benchmarks/evaluate_additions.py --num {args.num} --threads {args.threads}",
           "num": args.num, "threads": args.threads, "timings": timings, "platform": platform.platform(),
           "load_average_1min": os.getloadavg()[0]}
    atomic_write_bytes(args.out, json.dumps(out, indent=2).encode())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
