"""Fair comparison of the model kinds (issue 12; docs/results.md): every kind trained with one budget, sampled
with and without the sampler's post-processing, N pairs for several seeds, evaluated by one protocol.

``run``: for each model NAME=PATH, each post-processing that applies to its kind and each seed: sample N pairs
(:func:`interhandgen.generation.sample_model`), evaluate them with :func:`interhandgen.evaluation.protocol.evaluate`
(FHID/KHID/diversity/precision/recall over seeded subsets, density/coverage, C2ST on three feature sets, category
frequencies, each beside the data floor drawn from ``--floor-split``), minimum distance on all N pairs, exact
penetration volume on the first ``--geometry-pairs`` pairs and exact depth on at most ``--depth-pairs`` of their
penetrating pairs. One small JSON per (model, post-processing, seed) in ``--work``; existing ones are kept, so an
interrupted run resumes. ``--floor-row`` evaluates the floor draw itself as samples (FHID, precision, recall,
geometry of the data under the same protocol).

``curves``: per-epoch validation and training losses of the runs' log.csv (JSON, PNG).

``table``: the per-run JSONs -> one JSON with every value and the mean and spread over the seeds, and a Markdown
table (rows in the order of ``--row``).

    python benchmarks/fair_comparison.py run --model shared=runs/fair/shared --reference heldout.npz \
        --work runs/fair/eval --num 10000 --seeds 0 1 --threads 1
    python benchmarks/fair_comparison.py table --work runs/fair/eval --row "cascaded=shared:default" ... \
        --out benchmarks/results/fair_comparison.json
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.evaluation.bundled import load_evaluator
from interhandgen.evaluation.cache import default_cache_dir
from interhandgen.evaluation.floor import floor_draw
from interhandgen.evaluation.protocol import (
    EvaluationSettings,
    evaluate,
    geometry_metrics,
)
from interhandgen.evaluation.report import public
from interhandgen.exceptions import InputError
from interhandgen.generation import SamplerSettings, load_model, sample_model
from interhandgen.models.registry import CASCADED_KINDS

# Post-processing variants. "default": the sampler's defaults (APG, settling, resampling) for the cascaded kinds;
# "none": no settling and no resampling (APG stays: it is guidance inside the reverse process, as in the paper).
# The single-stage kinds (joint diffusion, VAE) have no conditional stage: neither APG nor resampling applies to
# them, and the project's settling is part of the cascaded sampler, so their only variant is "none".
POSTS = {"default": {}, "none": {"settle_steps": 0, "resample_rounds": 0}}

# (key, title, format, better) of the table's columns; "better" is "low", "high" or "" (compare with the floor).
COLUMNS = [
    ("fhid", "FHID", "{:.2f}", "low"),
    ("khid_x100", "KHID x100", "{:.0f}", "low"),
    ("precision", "Precision", "{:.3f}", "high"),
    ("recall", "Recall", "{:.3f}", "high"),
    ("density", "Density", "{:.3f}", ""),
    ("coverage", "Coverage", "{:.3f}", "high"),
    ("c2st_evaluator", "C2ST eval.", "{:.3f}", "low"),
    ("c2st_joints", "C2ST joints", "{:.3f}", "low"),
    ("category_tv", "Cat. TV", "{:.3f}", "low"),
    ("diversity", "Diversity", "{:.2f}", ""),
    ("contact_rate", "Contact", "{:.3f}", ""),
    ("proximity_ratio", "Proximity", "{:.3f}", ""),
    ("pen_vol_cm3", "PenVol cm^3", "{:.3g}", "low"),
    ("pen_depth_mm", "PenDepth mm", "{:.3g}", "low"),
]


def posts_for_kind(kind: str) -> list[str]:
    """The post-processing variants that apply to a model kind."""
    return ["default", "none"] if kind in CASCADED_KINDS else ["none"]


def sampler_settings(kind: str, post: str) -> SamplerSettings | None:
    """The sampler settings of (kind, post); None for the single-stage kinds (their defaults: nothing applies)."""
    if post not in POSTS:
        raise InputError(f"post-processing {post!r}: expected one of {sorted(POSTS)}")
    if post not in posts_for_kind(kind):
        raise InputError(f"post-processing {post!r} does not apply to model kind {kind!r} "
                         f"(it has: {posts_for_kind(kind)})")
    return SamplerSettings(**POSTS[post]) if kind in CASCADED_KINDS else None


def scalars(result: dict[str, Any]) -> dict[str, float]:
    """The table's values from one :func:`evaluate` result (``public`` form) plus its subset geometry."""
    d, g, a = result["distribution"], result["geometry"], result.get("additions") or {}
    out = {
        "fhid": d["fhid"]["mean"], "khid_x100": 100.0 * d["khid"]["mean"], "precision": d["precision"]["mean"],
        "recall": d["recall"]["mean"], "diversity": d["diversity"]["mean"],
        "contact_rate": g["contact_rate"], "proximity_ratio": g["proximity_ratio"],
    }
    if a.get("density_coverage"):
        out["density"] = a["density_coverage"]["samples"]["density"]["mean"]
        out["coverage"] = a["density_coverage"]["samples"]["coverage"]["mean"]
    if a.get("c2st"):
        out["c2st_evaluator"] = a["c2st"]["samples"]["evaluator"]["accuracy"]["mean"]
        out["c2st_joints"] = a["c2st"]["samples"]["joints"]["accuracy"]["mean"]
        out["c2st_placement"] = a["c2st"]["samples"]["placement"]["accuracy"]["mean"]
    if a.get("categories"):
        out["category_tv"] = a["categories"]["tv_samples"]
    sub = result.get("geometry_subset")
    if sub is not None:
        out["pen_vol_cm3"] = sub["penetration_volume_cm3"]["mean"]
        out["pen_depth_mm"] = sub["penetration_depth_mm"]["mean"]
        out["penetrating_fraction"] = sub["penetrating_fraction"]
    return out


def floor_scalars(result: dict[str, Any]) -> dict[str, float]:
    """The data floor's values of the protocol additions, as each evaluation's own floor draw measured them."""
    a = result.get("additions") or {}
    out = {}
    # An evaluation without a floor draw has None in the floor slots: no floor values from it.
    if (a.get("density_coverage") or {}).get("floor"):
        out["density"] = a["density_coverage"]["floor"]["density"]["mean"]
        out["coverage"] = a["density_coverage"]["floor"]["coverage"]["mean"]
    if (a.get("c2st") or {}).get("floor"):
        out["c2st_evaluator"] = a["c2st"]["floor"]["evaluator"]["accuracy"]["mean"]
        out["c2st_joints"] = a["c2st"]["floor"]["joints"]["accuracy"]["mean"]
        out["c2st_placement"] = a["c2st"]["floor"]["placement"]["accuracy"]["mean"]
    if (a.get("categories") or {}).get("tv_floor") is not None:
        out["category_tv"] = a["categories"]["tv_floor"]
    return out


def aggregate_seeds(per_seed: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Mean over the seeds and spread (half the range, max - min over 2) of every key that all seeds have.

    ``per_seed``: one dict of values per seed. Returns ``{key: {"mean", "half_range", "values"}}``; keys
    missing from any seed are left out (a row evaluated without a part has no value for it, not a zero)."""
    if not per_seed:
        raise ValueError("aggregate_seeds: no seeds")
    keys = set(per_seed[0])
    for v in per_seed[1:]:
        keys &= set(v)
    out = {}
    for k in sorted(keys):
        vals = [float(v[k]) for v in per_seed]
        if not all(math.isfinite(x) for x in vals):
            raise ValueError(f"aggregate_seeds: {k} is not finite: {vals}")
        out[k] = {"mean": sum(vals) / len(vals), "half_range": (max(vals) - min(vals)) / 2, "values": vals}
    return out


def format_cell(stat: dict[str, Any] | None, fmt: str) -> str:
    """``mean ± half-range`` (one value alone when there is one seed); empty when the row lacks the value."""
    if stat is None:
        return ""
    if len(stat["values"]) == 1:
        return fmt.format(stat["mean"])
    return f"{fmt.format(stat['mean'])} ± {fmt.format(stat['half_range'])}"


def table_markdown(rows: list[dict[str, Any]], columns=COLUMNS) -> str:
    """Markdown table of aggregated rows (``{"label", "stats": {key: aggregate}}``), one column per entry of
    ``columns``."""
    head = "| entry | " + " | ".join(title for _, title, _, _ in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        cells = [format_cell(row["stats"].get(k), fmt) for k, _, fmt, _ in columns]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_key(name: str, post: str, seed: int) -> str:
    return f"{name}_{post}_s{seed}"


def _evaluate_set(samples: TwoHandSet, reference: TwoHandSet, extractor, args, floor: TwoHandSet | None,
                  additions: bool) -> dict[str, Any]:
    settings = EvaluationSettings(replications=args.replications, penetration=False, seed=args.eval_seed,
                                  density_coverage=additions, c2st=additions, categories=additions)
    result = evaluate(samples, reference, extractor, settings, progress=not args.no_progress,
                      feature_cache=str(default_cache_dir()), floor=floor)
    n_geo = min(args.geometry_pairs, len(samples))
    geo_settings = dataclasses.replace(settings, penetration=True, depth_pairs=args.depth_pairs)
    t0 = time.perf_counter()
    verts = result["_vertices"][:n_geo]
    models = samples.hand_models()
    result["geometry_subset"] = geometry_metrics(verts, models["left"].faces_np, models["right"].faces_np,
                                                 geo_settings, progress=not args.no_progress)
    result["geometry_subset"]["pairs"] = n_geo
    result["timings"]["geometry_subset_s"] = time.perf_counter() - t0
    return public(result)


def cmd_run(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    reference_all = TwoHandSet.load(args.reference)
    reference = reference_all.select_split(args.reference_split)
    floor = floor_draw(args.reference, args.floor_split, args.reference, args.reference_split, reference,
                       size=args.num, seed=args.eval_seed)
    extractor = load_evaluator(args.evaluator)
    command = "python benchmarks/fair_comparison.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    common = {"reference": str(args.reference), "reference_split": args.reference_split,
              "num_reference": len(reference), "floor_split": args.floor_split, "num_floor": len(floor),
              "geometry_pairs": args.geometry_pairs, "depth_pairs": args.depth_pairs, "command": command,
              "threads": torch.get_num_threads()}
    if args.floor_row:
        out = work / "floor.json"
        if not out.exists():
            t0 = time.perf_counter()
            res = _evaluate_set(floor, reference, extractor, args, None, additions=False)
            doc = {**common, "name": "floor", "post": "n/a", "seed": None, "num": len(floor),
                   "values": scalars(res), "eval_seconds": time.perf_counter() - t0, "result": res}
            atomic_write_bytes(out, (json.dumps(doc, indent=1) + "\n").encode())
            print(f"wrote {out}", flush=True)
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise InputError(f"--model {spec!r}: expected NAME=PATH")
        model = load_model(None if path == "bundled" else path)
        posts = [p for p in args.post if p in posts_for_kind(model.kind)]
        for post in posts:
            for seed in args.seeds:
                key = run_key(name, post, seed)
                out = work / f"{key}.json"
                if out.exists():
                    print(f"{out} exists; kept", flush=True)
                    continue
                sample_file = work / f"samples_{key}.npz"
                timing_file = work / f"samples_{key}.time.json"
                if not sample_file.exists():
                    t0, c0 = time.perf_counter(), time.process_time()
                    samples = sample_model(model, args.num, seed=seed, settings=sampler_settings(model.kind, post),
                                           progress=not args.no_progress)
                    times = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
                    samples.save(sample_file)
                    atomic_write_bytes(timing_file, json.dumps(times).encode())
                samples = TwoHandSet.load(sample_file)
                if args.eval_pairs is not None and len(samples) > args.eval_pairs:
                    samples = samples[np.arange(args.eval_pairs)]  # the first pairs: i.i.d. draws, no selection
                times = json.loads(timing_file.read_text()) if timing_file.exists() else {}
                t0 = time.perf_counter()
                res = _evaluate_set(samples, reference, extractor, args,
                                    None if args.no_floor_additions else floor, additions=True)
                doc = {**common, "name": name, "path": path, "kind": model.kind, "post": post, "seed": seed,
                       "num": len(samples), "sampler": samples.metadata.get("sampler"), "sample_time": times,
                       "values": scalars(res), "floor_values": floor_scalars(res),
                       "eval_seconds": time.perf_counter() - t0, "result": res}
                atomic_write_bytes(out, (json.dumps(doc, indent=1) + "\n").encode())
                print(f"wrote {out}: " + json.dumps({k: round(v, 4) for k, v in doc["values"].items()}), flush=True)


def build_rows(docs: dict[str, dict], row_specs: list[str]) -> list[dict[str, Any]]:
    """Aggregate the per-seed documents into table rows. ``row_specs``: ``LABEL=NAME:POST`` (all seeds found in
    ``docs`` for that NAME and POST), or ``LABEL=floor`` (the floor row: the floor set's own evaluation, with the
    protocol additions' floor values read from the evaluations of the samples)."""
    rows = []
    for spec in row_specs:
        label, sep, target = spec.rpartition("=")
        if not sep or not label:
            raise InputError(f"--row {spec!r}: expected LABEL=NAME:POST or LABEL=floor")
        if target == "floor":
            if "floor" not in docs:
                raise InputError("--row ...=floor: no floor.json in the work folder (run with --floor-row)")
            values = dict(docs["floor"]["values"])
            floors = [d["floor_values"] for d in docs.values() if d.get("floor_values")]
            if floors:
                values.update(floors[0])
            rows.append({"label": label, "name": "floor", "post": "n/a", "seeds": [],
                         "stats": aggregate_seeds([values])})
            continue
        name, _, post = target.partition(":")
        found = sorted((d for d in docs.values() if d.get("name") == name and d.get("post") == post),
                       key=lambda d: d["seed"])
        if not found:
            raise InputError(f"--row {spec!r}: no evaluation of {name}:{post} in the work folder")
        rows.append({"label": label, "name": name, "post": post, "seeds": [d["seed"] for d in found],
                     "kind": found[0]["kind"], "stats": aggregate_seeds([d["values"] for d in found]),
                     "sample_time": [d.get("sample_time") for d in found],
                     "eval_seconds": [d["eval_seconds"] for d in found]})
    return rows


def cmd_table(args) -> None:
    docs = {}
    for f in sorted(Path(args.work).glob("*.json")):
        if f.name.endswith(".time.json"):
            continue
        d = json.loads(f.read_text())
        docs[f.stem] = d
    rows = build_rows(docs, args.row)
    md = table_markdown(rows)
    out = {"rows": rows, "markdown": md,
           "runs": {k: {kk: v for kk, v in d.items() if kk != "result"} for k, d in docs.items()},
           "command_table": "python benchmarks/fair_comparison.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    atomic_write_bytes(args.out, (json.dumps(out, indent=1) + "\n").encode())
    if args.markdown:
        atomic_write_bytes(args.markdown, (md + "\n").encode())
    print(md)


def read_curves(log_csv: str | Path) -> dict[str, list[float]]:
    """Per-epoch validation loss and the mean training loss of each epoch from a run's log.csv.

    Returns ``{"steps": [...], "val": [...], "train_mean": [...]}`` (one entry per finished epoch; the training
    mean averages the logged steps of that epoch)."""
    steps, val, train_mean, current = [], [], [], []
    with open(log_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["kind"] == "train":
                current.append(float(row["loss"]))
            elif row["kind"] == "val":
                steps.append(int(row["step"]))
                val.append(float(row["loss"]))
                train_mean.append(sum(current) / len(current) if current else float("nan"))
                current = []
    if not val:
        raise InputError(f"{log_csv}: no validation rows (kind 'val'); is it a training log.csv?")
    return {"steps": steps, "val": val, "train_mean": train_mean}


def cmd_curves(args) -> None:
    curves = {}
    for spec in args.run:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise InputError(f"--run {spec!r}: expected NAME=RUN_FOLDER")
        curves[name] = read_curves(Path(path) / "log.csv")
    atomic_write_bytes(args.out, (json.dumps(curves, indent=1) + "\n").encode())
    if args.png:
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        for name, c in curves.items():
            ax.plot(c["steps"], c["val"], marker=".", label=name)
        ax.set_xlabel("optimiser step (batch 512)")
        ax.set_ylabel("validation loss (EMA weights)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
    for name, c in curves.items():
        print(name, " ".join(f"{v:.3f}" for v in c["val"]))


def check_num(num: int) -> None:
    """``--num`` of the run commands: precision/recall use k = 5 nearest neighbours, so at least 12 pairs."""
    if num < 12:
        raise InputError(f"--num must be at least 12 (precision/recall with k = 5), got {num}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="sample and evaluate models")
    r.add_argument("--model", action="append", default=[], help="NAME=PATH (run folder, model file, or 'bundled')")
    r.add_argument("--reference", required=True, help="TwoHandSet .npz with the reference and floor splits")
    r.add_argument("--reference-split", default="test")
    r.add_argument("--floor-split", default="train")
    r.add_argument("--evaluator", default=None, help="feature extractor (default: the bundled one)")
    r.add_argument("--work", required=True, help="folder of the samples and per-run JSONs")
    r.add_argument("--num", type=int, default=10000)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    r.add_argument("--post", nargs="+", default=["default", "none"], choices=sorted(POSTS))
    r.add_argument("--eval-pairs", type=int, default=None,
                   help="evaluate only the first this many of the N sampled pairs (default: all)")
    r.add_argument("--replications", type=int, default=5)
    r.add_argument("--eval-seed", type=int, default=0, help="seed of the evaluation's subsets and floor draw")
    r.add_argument("--geometry-pairs", type=int, default=2000,
                   help="exact penetration volume on the first this many pairs of each set")
    r.add_argument("--depth-pairs", type=int, default=200,
                   help="exact depth on at most this many penetrating pairs of those (seeded)")
    r.add_argument("--floor-row", action="store_true", help="also evaluate the floor draw as samples")
    r.add_argument("--no-floor-additions", action="store_true",
                   help="skip the additions' floor (C2ST, density/coverage, categories of the floor draw against the "
                        "reference): it is the same for every run, so one run of the work folder measuring it is enough")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--no-progress", action="store_true")
    t = sub.add_parser("table", help="aggregate the per-run JSONs")
    t.add_argument("--work", required=True)
    t.add_argument("--row", action="append", required=True, help="LABEL=NAME:POST or LABEL=floor (in order)")
    t.add_argument("--out", required=True, help="JSON with every value")
    t.add_argument("--markdown", default=None, help="also write the table here")
    c = sub.add_parser("curves", help="validation-loss curves of training runs (JSON, optional PNG)")
    c.add_argument("--run", action="append", required=True, help="NAME=RUN_FOLDER (with its log.csv)")
    c.add_argument("--out", required=True)
    c.add_argument("--png", default=None)
    args = p.parse_args(argv)
    if args.cmd == "curves":
        cmd_curves(args)
    elif args.cmd == "run":
        check_num(args.num)
        cmd_run(args)
    else:
        cmd_table(args)


if __name__ == "__main__":
    main()
