"""Sampling-time guidance sweep of a cascaded model (issue 12, "network + APG only"): each named setting is a set of
:class:`interhandgen.generation.SamplerSettings` overrides (by default no settling, no resampling); the samples are
drawn in this process (one thread by default), timed, written, and scored by ``interhandgen evaluate`` against a
held-out reference (exact geometry, FHID/KHID, precision/recall, density/coverage, C2ST, categories). Writes one
JSON with every setting's overrides, time and metrics.

    python benchmarks/guidance.py --num 2000 --reference /work/data/synth.npz --work gw \\
        --setting "apg=" --setting "contact1=contact_weight=1" --out benchmarks/results/guidance_2k.json

A setting is ``name=key=value,key=value`` (empty after the first ``=``: the base settings). ``--phase sample`` /
``evaluate`` / ``collect`` run one part (evaluate and collect read what the earlier parts wrote in ``--work``).
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

import torch

from interhandgen._atomic import atomic_write_bytes
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", action="append", required=True, help="name=key=value,... (repeatable)")
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reference", required=True, help="reference .npz (its test split is used)")
    ap.add_argument("--no-base", action="store_true", help="do not start from no settling / no resampling")
    ap.add_argument("--work", default="guidance_work")
    ap.add_argument("--phase", choices=["all", "sample", "evaluate", "collect"], default="all")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
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
            print(f"{name}: sampled {args.num} in {row['sample_wall_s']:.1f} s wall, {row['sample_cpu_s']:.1f} s cpu",
                  flush=True)
            atomic_write_bytes(out_path, json.dumps(results, indent=2).encode())
        if args.phase in ("all", "evaluate"):
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
