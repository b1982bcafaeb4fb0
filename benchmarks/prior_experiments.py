"""Collect the objective experiments of docs/prior_experiments.md into one JSON and a markdown table.

Each entry is a name, the `interhandgen evaluate` folder of its samples and (for trained variants) its run folder;
the floor entry is the evaluate folder of reference-distribution pairs used as samples (FHID, precision, recall
and geometry of the data under the same protocol). Reads only; the runs, samples and evaluations are made by the
commands listed in the doc.

    python benchmarks/prior_experiments.py --entry baseline=EVAL_DIR:RUN_DIR ... --floor EVAL_DIR \
        --out benchmarks/results/prior_experiments.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def _ci(x: dict) -> dict:
    return {"mean": x["mean"], "halfwidth": (x["ci_high"] - x["ci_low"]) / 2}


def read_eval(folder: Path) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    d, g = m["distribution"], m["geometry"]
    out = {
        "num_samples": m["num_samples"], "num_reference": m["num_reference"],
        "fhid": _ci(d["fhid"]), "khid": _ci(d["khid"]), "precision": _ci(d["precision"]),
        "recall": _ci(d["recall"]), "diversity": _ci(d["diversity"]),
        "contact_rate": g["contact_rate"], "proximity_ratio": g["proximity_ratio"],
        "min_distance_mm_median": g["min_distance_mm"]["median"],
    }
    if "penetration_volume_cm3" in g:
        out["penetration_volume_cm3"] = g["penetration_volume_cm3"]["mean"]
        out["penetration_depth_mm"] = g["penetration_depth_mm"]["mean"]
        out["penetrating_fraction"] = g["penetrating_fraction"]
    a = m.get("additions") or {}
    if a.get("c2st"):
        for side in ("samples", "floor"):
            for feats in ("evaluator", "joints", "placement"):
                block = a["c2st"].get(side, {}).get(feats)
                if block:
                    out[f"c2st_{feats}_accuracy" + ("" if side == "samples" else "_floor")] = _ci(block["accuracy"])
    if a.get("categories"):
        out["category_tv"] = a["categories"]["tv_samples"]
        out["category_tv_floor"] = a["categories"]["tv_floor"]
    if a.get("density_coverage"):
        out["density"] = _ci(a["density_coverage"]["samples"]["density"])
        out["coverage"] = _ci(a["density_coverage"]["samples"]["coverage"])
    out["evaluate_seconds"] = m["timings"]["total_s"]
    return out


def read_run(folder: Path) -> dict:
    rows = list(csv.DictReader(open(folder / "log.csv", newline="")))
    train = [r for r in rows if r["kind"] == "train"]
    val = [float(r["loss"]) for r in rows if r["kind"] == "val"]
    return {"steps": int(train[-1]["step"]), "train_seconds": float(train[-1]["seconds"]),
            "final_train_loss": float(train[-1]["loss"]), "validation_x0_loss": val}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entry", action="append", required=True, help="NAME=EVAL_DIR[:RUN_DIR]")
    p.add_argument("--floor", required=True, help="evaluate folder of reference-distribution pairs as samples")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    doc = {"entries": {}, "floor": read_eval(Path(args.floor))}
    for spec in args.entry:
        name, _, paths = spec.partition("=")
        eval_dir, _, run_dir = paths.partition(":")
        entry = read_eval(Path(eval_dir))
        if run_dir:
            entry["run"] = read_run(Path(run_dir))
        doc["entries"][name] = entry
    Path(args.out).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")

    def f(e, key, nd=3):
        v = e.get(key)
        if v is None:
            return ""
        return f"{v['mean']:.{nd}f} ± {v['halfwidth']:.{nd}f}" if isinstance(v, dict) else f"{v:.{nd}g}"

    cols = [("PenVol cm^3", "penetration_volume_cm3", 3), ("contact", "contact_rate", 3),
            ("proximity", "proximity_ratio", 3), ("FHID", "fhid", 2), ("precision", "precision", 3),
            ("recall", "recall", 3), ("C2ST joints", "c2st_joints_accuracy", 3),
            ("C2ST evaluator", "c2st_evaluator_accuracy", 3), ("category TV", "category_tv", 3)]
    print("| entry | val x0 loss | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name, e in {**doc["entries"], "data floor": doc["floor"]}.items():
        val = e.get("run", {}).get("validation_x0_loss")
        print(f"| {name} | {val[-1]:.4f} | " if val else f"| {name} | | ", end="")
        print(" | ".join(f(e, k, nd) for _, k, nd in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
