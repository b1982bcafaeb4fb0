"""Benchmark: forward throughput of the denoiser at batch 2,500 (the sampling batch), on CPU (or --device cuda).

Times, in the same run and interleaved, several repeats each:
  * ours_paper        -- our paper network (attention over the 3 tokens of each sample);
  * reference         -- the reference definition (tests/test_reference_import.py: ReferenceTwoHandDiff, attention
                          across the batch, O(B^2), concatenating layers), random weights;
  * ours_paper_compat -- our network with the reference's weights in reference-compat mode (same outputs as
                          `reference`: the max difference is reported);
  * ours_small        -- the bundled small network.
plus the float32 matmul roofline (a large square GEMM). FLOPs are counted analytically: "executed" = the
multiply-adds each implementation performs (x2), "nominal" = the concatenating architecture without attention
(the same useful work for every paper-sized variant). Reports samples/s, GFLOP/s and the paper/reference ratio.

    python benchmarks/network_speed.py [--threads 2] [--batch 2500] [--repeats 5]
        [--out benchmarks/results/network_speed.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from interhandgen._atomic import atomic_write_bytes

from interhandgen.models import DenoiserConfig, build_denoiser, count_parameters, import_reference_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def load_reference_definition():
    spec = importlib.util.spec_from_file_location("reference_definition", ROOT / "tests" / "test_reference_import.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ReferenceTwoHandDiff


def nominal_macs(cfg: DenoiserConfig) -> int:
    """Multiply-adds per sample of the concatenating architecture, attention excluded."""
    D, H, E, F, L = cfg.data_dim, cfg.hidden_dim, cfg.embed_dim, cfg.ff_dim, cfg.num_layers
    mlps = (E * H + H * E) + 2 * (D * H + H * E)
    encoder = cfg.num_encoder_layers * 3 * (E * 3 * E + E * E + 2 * E * F)
    stack = sum(H * (H + 2 * E + (H if i in cfg.skips else 0)) for i in range(L))
    return mlps + encoder + 3 * E * H + D * H + stack + H * D


def attention_macs(cfg: DenoiserConfig, batch: int, across_batch: bool) -> int:
    """Per-sample multiply-adds of QK^T and AV: sequence = batch (reference) or 3 tokens (ours)."""
    seq = batch if across_batch else 3
    # per layer and per sample: 3 queries/keys... -> 2 * seq * E for each of the 3 tokens (across batch: 3 columns)
    return cfg.num_encoder_layers * 2 * 3 * seq * cfg.embed_dim


def ours_executed_macs(cfg: DenoiserConfig, batch: int) -> float:
    """Per-sample multiply-adds of our implementation (skip blocks folded through the input projection when the
    batch is large enough; the folding product is amortised over the batch)."""
    D, H, E, L, S = cfg.data_dim, cfg.hidden_dim, cfg.embed_dim, cfg.num_layers, len(cfg.skips)
    base = nominal_macs(cfg) - sum(H * (H + 2 * E + (H if i in cfg.skips else 0)) for i in range(L))
    stack = L * H * H + 2 * E * L * H
    if batch * (H - D) > H * D:
        skip = S * H * D + S * H * H * D / batch
    else:
        skip = S * H * H
    return base + stack + skip


def time_call(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def matmul_roofline(n: int, repeats: int, device: torch.device) -> dict:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    secs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync()
        secs.append(time.perf_counter() - t0)
    flop = 2.0 * n ** 3
    return {"n": n, "seconds": secs, "gflops_best": flop / min(secs) / 1e9,
            "gflops_median": flop / statistics.median(secs) / 1e9}


def atomic_write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=2500)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--matmul-n", type=int, default=2048)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "network_speed.json")
    args = p.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        p.error("--batch and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)

    Reference = load_reference_definition()
    reference = Reference().to(device).eval()
    compat, compat_cfg = import_reference_checkpoint(reference.state_dict())
    compat = compat.to(device)
    paper_cfg, small_cfg = DenoiserConfig.paper(), DenoiserConfig.small()
    nets = {
        "ours_paper": (build_denoiser(paper_cfg).to(device).eval(), paper_cfg, False),
        "reference": (reference, compat_cfg, True),
        "ours_paper_compat": (compat, compat_cfg, False),
        "ours_small": (build_denoiser(small_cfg).to(device).eval(), small_cfg, False),
    }

    B = args.batch
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 64, generator=g).to(device)
    t = torch.randint(0, 129, (B,), generator=g).to(device)
    cond = torch.randn(B, 64, generator=g).to(device)
    mask = (torch.rand(B, generator=g) < 0.5).to(device)
    cond_ref = torch.where(mask[:, None], cond, torch.zeros_like(cond))

    def run(name):
        net = nets[name][0]
        out = net(x, t, cond_ref) if name == "reference" else net(x, t, cond, mask)
        sync()
        return out

    roofline = matmul_roofline(args.matmul_n, args.repeats, device)
    seconds = {name: [] for name in nets}
    outputs = {}
    with torch.inference_mode():
        for name in nets:  # warm-up (allocations, kernel selection)
            outputs[name] = run(name)
        for _ in range(args.repeats):
            for name in nets:  # interleaved: load changes hit all variants alike
                seconds[name].append(time_call(run, name))
        roofline_after = matmul_roofline(args.matmul_n, args.repeats, device)
        compat_vs_reference = (outputs["ours_paper_compat"] - outputs["reference"]).abs().max().item()
        fixed = build_denoiser(DenoiserConfig(**{**compat_cfg.to_dict(), "reference_compat": False})).to(device)
        fixed.load_state_dict(compat.state_dict())
        out_fixed = fixed.eval()(x, t, cond, mask)
        fixed_vs_compat_rel = ((out_fixed - outputs["reference"]).norm() / outputs["reference"].norm()).item()

    results = {}
    for name, (net, cfg, across) in nets.items():
        med = statistics.median(seconds[name])
        nominal = nominal_macs(cfg)
        executed = (nominal + attention_macs(cfg, B, True)) if name == "reference" else (
            ours_executed_macs(cfg, B) + attention_macs(cfg, B, name == "ours_paper_compat"))
        results[name] = {
            "params": count_parameters(net),
            "seconds": seconds[name],
            "median_seconds": med,
            "samples_per_s": B / med,
            "nominal_gflop_per_sample": 2 * nominal / 1e9,
            "executed_gflop_per_sample": 2 * executed / 1e9,
            "nominal_gflops": 2 * nominal * B / med / 1e9,
            "executed_gflops": 2 * executed * B / med / 1e9,
            "executed_fraction_of_roofline": 2 * executed * B / med / 1e9 / roofline["gflops_best"],
        }
    ref_med = results["reference"]["median_seconds"]
    report = {
        "benchmark": "network_speed",
        "batch": B,
        "device": str(device),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "matmul_roofline": roofline,
        "matmul_roofline_after": roofline_after,
        "networks": results,
        "speedup_paper_vs_reference": ref_med / results["ours_paper"]["median_seconds"],
        "speedup_paper_compat_vs_reference": ref_med / results["ours_paper_compat"]["median_seconds"],
        "speedup_small_vs_reference": ref_med / results["ours_small"]["median_seconds"],
        "max_abs_diff_compat_vs_reference": compat_vs_reference,
        "relative_l2_diff_fixed_vs_compat_same_weights": fixed_vs_compat_rel,
        "note": "speedup = reference median time / variant median time (above 1 = faster than the reference). "
                "Random weights. Timings on a shared machine are noisy; compare ratios from one run.",
    }
    atomic_write_json(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k not in ("networks",)}, indent=2, default=str)[:2000])
    for name, r in results.items():
        print(f"{name:18s} {r['params'] / 1e6:7.2f}M params  {r['median_seconds']:.3f} s  "
              f"{r['samples_per_s']:9.0f} samples/s  {r['executed_gflops']:6.1f} GFLOP/s executed "
              f"({100 * r['executed_fraction_of_roofline']:.0f}% of roofline)  {r['nominal_gflops']:6.1f} nominal")
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
