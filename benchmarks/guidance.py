"""Sampling-time guidance sweep of a cascaded model (issue 12, "network + APG only"): each named setting is a set of
:class:`interhandgen.generation.SamplerSettings` overrides (by default no settling, no resampling); the samples are
drawn in this process (one thread by default), timed, written, and scored by ``interhandgen evaluate`` against a
held-out reference (exact geometry, FHID/KHID, precision/recall, density/coverage, C2ST, categories). Writes one
JSON with every setting's overrides, time and metrics.

    python benchmarks/guidance.py --num 2000 --reference /work/data/synth.npz --work gw \\
        --setting "apg=" --setting "contact1=contact_weight=1" --out benchmarks/results/guidance_2k.json

A setting is ``name=key=value,key=value`` (empty after the first ``=``: the base settings). ``--phase sample`` /
``evaluate`` / ``collect`` run one part (evaluate and collect read what the earlier parts wrote in ``--work``).
``--geometry-only`` (a quick screen) measures the exact geometry of the samples in this process instead of the
full evaluation: mean penetration volume, penetrating fraction, contact rate, proximity ratio, median minimum
distance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.evaluation.protocol import EvaluationSettings, canonical_two_hand_vertices, geometry_metrics
from interhandgen.generation import InterHandGen, SamplerSettings

# The protocol's base: the network and guidance only (no post-processing).
BASE = {"settle_steps": 0, "resample_rounds": 0}


def parse_setting(text: str) -> tuple[str, dict]:
    """``name=key=value,key=value`` -> (name, overrides), each value typed like the SamplerSettings field."""
    name, _, rest = text.partition("=")
    if not name:
        raise SystemExit(f"--setting {text!r}: expected name=key=value,...")
    fields = {f.name: f for f in dataclasses.fields(SamplerSettings)}
    types = {k: type(getattr(SamplerSettings(), k)) for k in fields}
    out = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"--setting {text!r}: unknown SamplerSettings field {key!r}")
        kind = types[key]
        if kind is bool:
            out[key] = value.lower() in ("1", "true", "yes")
        elif value.lower() == "none":
            out[key] = None
        else:
            out[key] = kind(float(value)) if kind is int else kind(value)
    return name, out


def exact_geometry(two) -> dict:
    """The exact geometry figures of a TwoHandSet (penetration volume in cm^3, distances in mm)."""
    models = two.hand_models()
    verts = canonical_two_hand_vertices(two, models)
    g = geometry_metrics(verts, models["left"].faces, models["right"].faces, EvaluationSettings(), progress=False)
    vol = np.asarray(g["_arrays"]["penetration_volume_cm3"])
    return {"penetration_volume_cm3_mean": float(vol.mean()), "penetrating_fraction": float((vol > 0).mean()),
            "contact_rate": float(g["contact_rate"]), "proximity_ratio": float(g["proximity_ratio"]),
            "min_distance_mm_median": float(g["min_distance_mm"]["median"])}


def _ci(d: dict, digits: int) -> str:
    return f"{d['mean']:.{digits}f} ± {(d['ci_high'] - d['ci_low']) / 2:.{digits}f}"


def table(results: dict) -> str:
    """Markdown rows of the evaluated settings: geometry, then the distribution figures with 95% intervals."""
    head = ("| setting | sample CPU s | PenVol cm^3 | PenDepth mm | penetrating | contact | proximity | FHID | precision "
            "| recall | coverage | C2ST joints | C2ST evaluator | C2ST placement | category TV |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    floor = None
    for name, row in results["settings"].items():
        m = row.get("metrics")
        if m is None:
            continue
        g, d, a = m["geometry"], m["distribution"], m["additions"]
        c2 = a["c2st"]["samples"]
        cpu = row.get("sample_cpu_s")
        rows.append(f"| {name} | {'' if cpu is None else f'{cpu:.1f}'} | {g['penetration_volume_cm3']['mean']:.4f} | "
                    f"{g['penetration_depth_mm']['mean']:.2f} | {g['penetrating_fraction']:.3f} | "
                    f"{g['contact_rate']:.3f} | {g['proximity_ratio']:.3f} | {_ci(d['fhid'], 2)} | "
                    f"{_ci(d['precision'], 3)} | {_ci(d['recall'], 3)} | "
                    f"{a['density_coverage']['samples']['coverage']['mean']:.3f} | {_ci(c2['joints']['accuracy'], 3)} | "
                    f"{_ci(c2['evaluator']['accuracy'], 3)} | {_ci(c2['placement']['accuracy'], 3)} | "
                    f"{a['categories']['tv_samples']:.3f} |")
        floor = a
    if floor is not None:
        c2 = floor["c2st"]["floor"]
        rows.append(f"| data floor (reference file's train split) | | | | | | | | | | "
                    f"{floor['density_coverage']['floor']['coverage']['mean']:.3f} | {_ci(c2['joints']['accuracy'], 3)} | "
                    f"{_ci(c2['evaluator']['accuracy'], 3)} | {_ci(c2['placement']['accuracy'], 3)} | "
                    f"{floor['categories']['tv_floor']:.3f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", action="append", required=True, help="name=key=value,... (repeatable)")
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reference", default=None, help="reference .npz (its test split is used); required unless "
                    "--geometry-only")
    ap.add_argument("--geometry-only", action="store_true", help="exact geometry in this process, no evaluation")
    ap.add_argument("--no-base", action="store_true", help="do not start from no settling / no resampling")
    ap.add_argument("--work", default="guidance_work")
    ap.add_argument("--phase", choices=["all", "sample", "evaluate", "collect", "table"], default="all",
                    help="table: print the Markdown table of the JSON --out and stop")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.phase == "table":
        print(table(json.loads(Path(args.out).read_text())))
        return
    if args.reference is None and not args.geometry_only:
        raise SystemExit("--reference is required unless --geometry-only")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    settings = [parse_setting(s) for s in args.setting]
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results.setdefault("settings", {})
    results["setup"] = {"num": args.num, "seed": args.seed, "threads": args.threads, "reference": args.reference,
                        "base": {} if args.no_base else BASE, "torch": torch.__version__}
    gen = InterHandGen.load() if args.phase in ("all", "sample") else None
    for name, over in settings:
        row = results["settings"].setdefault(name, {})
        row["overrides"] = over
        samples, report = work / f"s_{name}.npz", work / f"e_{name}"
        if args.phase in ("all", "sample"):
            s = SamplerSettings(**{**({} if args.no_base else BASE), **over})
            load = os.getloadavg()
            t0, c0 = time.perf_counter(), time.process_time()
            two = gen.sample(args.num, seed=args.seed, settings=s, progress=False)
            row["sample_wall_s"], row["sample_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
            row["load_average_before"] = load
            row["sampler"] = dataclasses.asdict(s)
            two.save(samples)
            if args.geometry_only:
                row["geometry"] = exact_geometry(two)
                print(name, {k: round(v, 4) for k, v in row["geometry"].items()}, flush=True)
            print(f"{name}: sampled {args.num} in {row['sample_wall_s']:.1f} s wall, {row['sample_cpu_s']:.1f} s cpu",
                  flush=True)
            atomic_write_bytes(out_path, json.dumps(results, indent=2).encode())
        if args.phase in ("all", "evaluate") and not args.geometry_only:
            cmd = [sys.executable, "-m", "interhandgen", "evaluate", "--samples", str(samples), "--reference",
                   args.reference, "--out", str(report), "--threads", str(args.threads), "--no-progress"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
            row["evaluate_command"] = " ".join(cmd[1:])
        if args.phase in ("all", "evaluate", "collect") and (report / "metrics.json").is_file():
            row["metrics"] = json.loads((report / "metrics.json").read_text())
            atomic_write_bytes(out_path, json.dumps(results, indent=2, default=float).encode())
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
