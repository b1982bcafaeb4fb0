"""Benchmark: forward and forward+backward of a batch of hands, our HandModel vs smplx.MANO, on CPU.

Both layers load the SAME MANO-format pickle (written by save_mano_pkl) and are timed in the same run,
alternating, several repeats each; the report gives medians and ratios (ours / smplx: below 1 = ours faster)
and the largest vertex difference between the two, so the speed is never bought with a different result.

Model: --mano PATH (official MANO_RIGHT.pkl / MANO_LEFT.pkl or any file load_mano reads; converted to a plain
MANO pickle so that smplx, which needs chumpy for the official files, can read it too); otherwise the bundled
open hand when available; otherwise a synthetic model of MANO's sizes (778 vertices, 1538 faces; random values,
timing depends only on the sizes).

    python benchmarks/hand_forward.py [--mano MANO_RIGHT.pkl | --model synthetic] [--batch 10000] [--repeats 5]
        [--out benchmarks/results/hand_forward.json]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from interhandgen.hand import MANO_FINGERTIP_VERTEX_IDS, MANO_PARENTS, HandModel, HandModelData, read_mano_data, save_mano_pkl
from interhandgen.hand.model_data import _atomic_write_bytes


def synthetic_mano_sized(seed: int = 0) -> HandModelData:
    """MANO-sized model with random values (valid tree, convex skinning weights and joint regressor)."""
    rng = np.random.default_rng(seed)
    V, F = 778, 1538
    weights = rng.random((V, 16)) ** 8  # a few dominant joints per vertex, like MANO
    weights /= weights.sum(1, keepdims=True)
    J_regressor = np.zeros((16, V))
    for j in range(16):
        near = rng.choice(V, 12, replace=False)
        J_regressor[j, near] = rng.random(12)
    J_regressor /= J_regressor.sum(1, keepdims=True)
    faces = np.stack([rng.choice(V, 3, replace=False) for _ in range(F)])
    return HandModelData(
        v_template=rng.normal(0, 0.04, (V, 3)), shapedirs=rng.normal(0, 1e-3, (V, 3, 10)),
        posedirs=rng.normal(0, 1e-3, (V, 3, 135)), J_regressor=J_regressor, weights=weights,
        parents=np.array(MANO_PARENTS), faces=faces, hands_components=rng.normal(0, 0.3, (45, 45)),
        hands_mean=rng.normal(0, 0.1, 45), fingertip_ids=np.array(MANO_FINGERTIP_VERTEX_IDS), side="right",
        name="synthetic_mano_sized",
    )


def pick_model(mano: str | None, model: str) -> tuple[HandModelData, str]:
    if mano:
        return read_mano_data(mano), f"file {mano}"
    if model == "synthetic":
        return synthetic_mano_sized(), "synthetic MANO-sized model (random values)"
    if importlib.util.find_spec("interhandgen.hand.open_hand") is not None:
        hand = importlib.import_module("interhandgen.hand.open_hand").open_hand("right")
        return getattr(hand, "data", hand), "open hand (interhandgen.hand.open_hand)"
    return synthetic_mano_sized(), "synthetic MANO-sized model (random values)"


def timed(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mano", default=None, help="MANO model file (e.g. mano_v1_2/models/MANO_RIGHT.pkl)")
    ap.add_argument("--model", choices=["auto", "synthetic"], default="auto",
                    help="without --mano: auto = the open hand if installed, else synthetic (MANO's sizes)")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/hand_forward.json")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        ap.error("--batch and --repeats must be >= 1, --warmup >= 0")
    import smplx  # test dependency (pyproject extra "test")

    if args.threads:
        torch.set_num_threads(args.threads)
    data, source = pick_model(args.mano, args.model)
    B, dtype = args.batch, torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"MANO_{data.side.upper()}.pkl"
        save_mano_pkl(data, path)  # both layers read this one file
        ours = HandModel(read_mano_data(path, fix_left_shapedirs=False), use_pca=False, flat_hand_mean=False)
        ref = smplx.MANO(str(path), is_rhand=data.side == "right", use_pca=False, flat_hand_mean=False,
                         batch_size=1, dtype=dtype)
    g = torch.Generator().manual_seed(args.seed)
    inputs = {
        "betas": torch.randn(B, 10, generator=g),
        "global_orient": torch.randn(B, 3, generator=g),
        "hand_pose": torch.randn(B, 45, generator=g) * 0.5,
        "transl": torch.randn(B, 3, generator=g) * 0.1,
    }

    def forward(model):
        def run():
            with torch.no_grad():
                out = model(**inputs)
            return out.vertices

        return run

    def forward_backward(model):
        def run():
            leaf = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
            out = model(**leaf)
            # smplx.MANO returns the 16 kinematic joints only; ours appends 5 fingertips.
            (out.vertices.square().sum() + out.joints[:, :16].sum()).backward()
            return torch.cat([leaf[k].grad for k in inputs], dim=1)

        return run

    max_diff = (forward(ours)() - forward(ref)()).abs().max().item()
    grad_ours, grad_ref = forward_backward(ours)(), forward_backward(ref)()
    grad_diff = ((grad_ours - grad_ref).abs().max() / grad_ref.abs().max()).item()
    times: dict[str, dict[str, list[float]]] = {"forward": {"ours": [], "smplx": []}, "forward_backward": {"ours": [], "smplx": []}}
    # Back to back, alternating which goes first, so that drifting machine load hits both alike; the per-repeat
    # ratios of these pairs are reported besides the ratio of the medians.
    for rep in tqdm(range(args.repeats), desc="repeats"):
        for task, make in (("forward", forward), ("forward_backward", forward_backward)):
            order = (("ours", ours), ("smplx", ref)) if rep % 2 == 0 else (("smplx", ref), ("ours", ours))
            for name, model in order:
                times[task][name] += timed(make(model), 1, args.warmup)
    report = {
        "benchmark": "hand_forward",
        "batch": B, "dtype": "float32", "device": "cpu", "pose": "full axis-angle (use_pca=False)",
        "model": source, "num_verts": data.num_verts,
        "torch": torch.__version__, "smplx": getattr(smplx, "__version__", "unknown"),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "repeats": args.repeats, "warmup_per_repeat": args.warmup,
        "max_abs_vertex_diff_m": max_diff, "max_grad_diff_relative_to_max_grad": grad_diff,
        "seconds": times,
        "median_s": {task: {n: statistics.median(v) for n, v in d.items()} for task, d in times.items()},
    }
    report["ratio_ours_over_smplx"] = {t: m["ours"] / m["smplx"] for t, m in report["median_s"].items()}
    report["median_paired_ratio_ours_over_smplx"] = {
        t: statistics.median(o / r for o, r in zip(d["ours"], d["smplx"])) for t, d in times.items()
    }
    report["load_average_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report["hands_per_second_ours"] = {t: B / m["ours"] for t, m in report["median_s"].items()}
    _atomic_write_bytes(Path(args.out), (json.dumps(report, indent=2) + "\n").encode())
    for t, m in report["median_s"].items():
        print(f"{t:17s} ours {m['ours']:.3f} s  smplx {m['smplx']:.3f} s  ratio ours/smplx {m['ours'] / m['smplx']:.3f}"
              f"  (median paired ratio {report['median_paired_ratio_ours_over_smplx'][t]:.3f})")
    print(f"max |vertex diff| {max_diff:.2e} m, max |grad diff| / max |grad| {grad_diff:.2e}; written {args.out}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
