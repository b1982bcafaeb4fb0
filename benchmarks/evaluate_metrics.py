"""Benchmark of the evaluation metrics and the feature extractor on CPU (or any torch device).

Times, in one run:
- fid, kid (degree 3 and 1, 100 subsets of 1000), diversity (200 pairs), precision_recall (k = 5) on
  N x 256 random features (N = 10,000 by default);
- feature extraction for N random hand-sized two-hand point clouds [N, 2, V, 3] with the default
  (untrained) extractor architecture; speed does not depend on the weights;
- a brute-force O(N^2) precision/recall with Python loops over sample pairs (the reference code's approach),
  timed on a small subset, checked equal to the vectorised result there, and extrapolated quadratically to N.

Writes a JSON report (atomically). Example:
    python benchmarks/evaluate_metrics.py --out benchmarks/results/evaluate_metrics.json
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
from interhandgen.evaluation.features import FeatureExtractorConfig, TwoHandPointNet, extract_features
from interhandgen.evaluation.metrics import diversity, fid, kid_with_std, precision_recall


def _timed(fn, repeats: int = 1):
    best, value = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def bruteforce_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Improved precision/recall with explicit loops over sample pairs: O(N^2) Python-level distance calls."""

    def radii(points):
        out = []
        for p in points:
            dists = [float(np.linalg.norm(p - q)) for q in points]
            dists.sort()
            out.append(dists[k])  # dists[0] is the point itself
        return out

    def fraction_inside(support, support_radii, queries):
        inside = 0
        for q in queries:
            for p, r in zip(support, support_radii):
                if float(np.linalg.norm(q - p)) <= r:
                    inside += 1
                    break
        return inside / len(queries)

    real_radii, fake_radii = radii(real), radii(fake)
    return fraction_inside(real, real_radii, fake), fraction_inside(fake, fake_radii, real)


def random_hand_clouds(n: int, vertices: int, seed: int) -> torch.Tensor:
    """[n, 2, vertices, 3] float32: two noisy ellipsoidal clouds of hand size (~18 x 9 x 3 cm), metres."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(vertices, 3, generator=g)
    directions = directions / directions.norm(dim=1, keepdim=True)
    out = torch.empty(n, 2, vertices, 3)
    chunk = 1000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        axes = torch.tensor([0.09, 0.045, 0.015]) * (0.8 + 0.4 * torch.rand(m, 2, 1, 3, generator=g))
        centres = torch.tensor([[[-0.06, 0.0, 0.0]], [[0.06, 0.0, 0.0]]]) + 0.03 * torch.randn(m, 2, 1, 3, generator=g)
        noise = 0.002 * torch.randn(m, 2, vertices, 3, generator=g)
        out[start:start + m] = centres + axes * directions + noise
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000, help="N for metrics and feature extraction")
    parser.add_argument("--dim", type=int, default=256, help="feature dimension D")
    parser.add_argument("--vertices", type=int, default=1500, help="vertices per hand of the random clouds")
    parser.add_argument("--points-per-hand", type=int, default=128, help="vertex subset used by the extractor")
    parser.add_argument("--batch-size", type=int, default=64, help="feature extraction batch size")
    parser.add_argument("--bruteforce-samples", type=int, default=150, help="subset size for the O(N^2) loop")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/evaluate_metrics.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    n, d = args.samples, args.dim
    rng = np.random.default_rng(0)
    real = rng.normal(size=(n, d)).astype(np.float32)
    fake = (rng.normal(size=(n, d)) * 1.05 + 0.05).astype(np.float32)
    report: dict = {
        "samples": n, "dim": d, "device": args.device, "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
        "seconds": {}, "values": {},
    }
    sec, val = report["seconds"], report["values"]

    sec["fid"], val["fid"] = _timed(lambda: fid(real, fake))
    sec["kid_degree3"], kid3 = _timed(lambda: kid_with_std(real, fake, degree=3, device=args.device))
    sec["kid_degree1"], kid1 = _timed(lambda: kid_with_std(real, fake, degree=1, device=args.device))
    val["kid_degree3"], val["kid_degree3_std"] = kid3
    val["kid_degree1"], val["kid_degree1_std"] = kid1
    sec["diversity"], val["diversity"] = _timed(lambda: diversity(fake), repeats=3)
    sec["precision_recall"], pr = _timed(lambda: precision_recall(real, fake, k=5, device=args.device))
    val["precision"], val["recall"] = pr
    print(f"metrics on {n} x {d}: " + ", ".join(f"{k} {v:.2f} s" for k, v in sec.items()), flush=True)

    m = args.bruteforce_samples
    sec_bf, pr_bf = _timed(lambda: bruteforce_precision_recall(real[:m].astype(np.float64),
                                                               fake[:m].astype(np.float64), 5))
    sec_vec_small, pr_small = _timed(lambda: precision_recall(real[:m], fake[:m], k=5, dtype=torch.float64),
                                     repeats=3)
    extrapolated = sec_bf * (n / m) ** 2
    report["bruteforce_precision_recall"] = {
        "subset": m, "seconds_subset": sec_bf, "vectorised_seconds_subset": sec_vec_small,
        "agrees_with_vectorised": list(pr_bf) == list(pr_small),
        "extrapolated_seconds_at_samples": extrapolated,
        "speedup_vs_vectorised_at_samples": extrapolated / sec["precision_recall"],
    }
    print(f"brute-force P/R on {m}: {sec_bf:.2f} s (agrees: {list(pr_bf) == list(pr_small)}), extrapolated to "
          f"{n}: {extrapolated:.0f} s = {extrapolated / sec['precision_recall']:.0f} x the vectorised time", flush=True)

    v = args.vertices
    indices = np.linspace(0, v - 1, args.points_per_hand).round().astype(int)
    torch.manual_seed(0)
    model = TwoHandPointNet(FeatureExtractorConfig(num_vertices=v, vertex_indices=tuple(indices.tolist())))
    model = model.to(args.device).eval()
    clouds = random_hand_clouds(n, v, seed=1)
    sec["feature_extraction"], feats = _timed(
        lambda: extract_features(model, clouds, batch_size=args.batch_size, device=args.device, progress=True)
    )
    report["feature_extraction"] = {
        "vertices_per_hand": v, "points_per_hand": args.points_per_hand, "batch_size": args.batch_size,
        "feature_shape": list(feats.shape), "samples_per_second": n / sec["feature_extraction"],
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    print(f"feature extraction of {n} samples [2, {v}, 3]: {sec['feature_extraction']:.1f} s "
          f"({n / sec['feature_extraction']:.0f} samples/s)", flush=True)
    report["load_average_end"] = list(os.getloadavg())

    atomic_write_bytes(args.out, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
