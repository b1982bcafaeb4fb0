"""The Table-1-style results table: the bundled model, its ablations and the baselines under ONE protocol.

For every entry, R replications: replication r samples N pairs with seed ``seed + r`` (a run folder or
checkpoint, sampled with :func:`interhandgen.generation.sample_model`, any model kind) or takes rows
[r N, (r + 1) N) of a samples .npz; each replication is evaluated against the test split of ``--data`` with the
same feature extractor (reference features computed once): FHID, KHID, diversity, precision and recall (k = 5 on
``--pr-size`` pairs of each set), mean penetration volume (cm^3), mean penetration depth (mm; exact), proximity
ratio and contact rate. The table shows mean +- half-width of the 95% t interval over the R replications.

Entries: ``NAME=PATH[:key=value,...]`` with sampler keys steps, cfg_scale, apg_weight, eta, update (e.g.
``"no APG=runs/small:apg_weight=0"``), or ``--bundled RUN`` (+ ``--baselines-dir DIR``) for the standard set:
InterHandGen (APG ``--apg-weight``, default the sampler's), no APG, no CFG, CFG scales 0.5 and 1.0, 10 and 20 steps, and the baselines
found in DIR (joint, separate, shared_budget, vae).

    python benchmarks/results_table.py --data data/synth.npz --evaluator runs/evaluator --bundled runs/small \
        --baselines-dir runs --num 2000 --replications 5 --out docs/results.md

Writes the Markdown (atomically) and ``--json`` with every value; ``--from-json`` rewrites the Markdown only.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes

# (key in a replication's values, column title, format); lower/higher is better in the legend below the table.
COLUMNS = [
    ("fhid", "FHID", "{:.3g}"),
    ("khid", "KHID", "{:.3g}"),
    ("diversity", "Diversity", "{:.3g}"),
    ("precision", "Precision", "{:.3f}"),
    ("recall", "Recall", "{:.3f}"),
    ("pen_vol_cm3", "PenVol cm^3", "{:.3g}"),
    ("pen_dist_mm", "PenDist mm", "{:.3g}"),
    ("prox_ratio", "ProxRatio", "{:.3f}"),
    ("contact_rate", "Contact rate", "{:.3f}"),
]

SAMPLER_KEYS = {"steps": int, "cfg_scale": float, "apg_weight": float, "eta": float, "update": str}

# Quoted from /work/shared/reference/interhandgen-facts.md ("Headline numbers (paper, InterHand2.6M, 10K samples)").
PAPER_TABLE = """| method (paper, InterHand2.6M) | FHID | KHID | Diversity | Precision | PenVol cm^3 | PenDist | ProxRatio |
|---|---|---|---|---|---|---|---|
| InterHandGen | 1.00 | 0.15 | 3.59 | 0.86 | 0.76 (APG) / 4.23 (no APG) | 0.04 | 0.97 |
| w/o cascaded decomposition (parallel) | - | - | 2.68 | 0.75 | - | - | - |"""
PAPER_NOTE = (
    "Source: the project's facts file (/work/shared/reference/interhandgen-facts.md). It does not give the paper's "
    "recall, contact rate, the unit of PenDist, KHID's scale, nor the rows of the VAE, BUDDI-style, w/o shared "
    "network and other ablations; they are left out rather than invented. The paper's numbers come from a "
    "different data set (InterHand2.6M, MANO) and a different evaluator, so only the ordering of methods is "
    "comparable, not the values (KHID there uses a degree-1 kernel)."
)


@dataclasses.dataclass
class Entry:
    name: str
    path: str
    overrides: dict[str, Any]


def parse_entry(text: str) -> Entry:
    """``NAME=PATH[:key=value,...]`` -> Entry; raises ValueError naming what is wrong."""
    if "=" not in text:
        raise ValueError(f"--entry {text!r}: expected NAME=PATH[:key=value,...]")
    name, rest = text.split("=", 1)
    path, _, opts = rest.partition(":")
    if not name.strip() or not path:
        raise ValueError(f"--entry {text!r}: empty name or path")
    overrides: dict[str, Any] = {}
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in SAMPLER_KEYS:
            raise ValueError(f"--entry {text!r}: option {item!r} must be key=value with key in {sorted(SAMPLER_KEYS)}")
        overrides[key] = SAMPLER_KEYS[key](value)
    return Entry(name.strip(), path, overrides)


def standard_entries(bundled: str, baselines_dir: str | None, apg_weight: float) -> list[Entry]:
    a = {"apg_weight": apg_weight}
    entries = [
        Entry("InterHandGen (bundled)", bundled, dict(a)),
        Entry("ablation: no APG", bundled, {"apg_weight": 0.0}),
        Entry("ablation: no resampling", bundled, {**a, "resample_rounds": 0}),
        Entry("ablation: no settling, no resampling", bundled, {**a, "settle_steps": 0, "resample_rounds": 0}),
        Entry("ablation: no APG, no settling, no resampling", bundled,
              {"apg_weight": 0.0, "settle_steps": 0, "resample_rounds": 0}),
        Entry("ablation: no CFG", bundled, {**a, "cfg_scale": 0.0}),
        Entry("ablation: CFG 0.5", bundled, {**a, "cfg_scale": 0.5}),
        Entry("ablation: CFG 1.0", bundled, {**a, "cfg_scale": 1.0}),
        Entry("ablation: 10 steps", bundled, {**a, "steps": 10}),
        Entry("ablation: 42 steps", bundled, {**a, "steps": 42}),
    ]
    names = {"joint": "baseline: w/o decomposition (joint diffusion)",
             "separate": "baseline: w/o shared network (separate networks)",
             "shared_budget": "control: shared network, same budget as 'separate'",
             "vae": "baseline: two-hand VAE prior"}
    if baselines_dir is not None:
        for run, title in names.items():
            path = Path(baselines_dir) / run
            if path.exists():
                over = dict(a) if run in ("separate", "shared_budget") else {}
                entries.append(Entry(title, str(path), over))
            else:
                print(f"results_table: {path} not found; entry {title!r} left out", file=sys.stderr)
    return entries


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def evaluator_sha256(path: str | Path) -> str:
    """SHA-256 of an extractor's weights as recorded (and checked at load) in its config.json."""
    path = Path(path)
    config = path / "config.json" if path.is_dir() else path
    if config.suffix == ".json":
        return str(json.loads(config.read_text())["weights_sha256"])
    return file_sha256(config)


def replication_values(samples, ref_feats: torch.Tensor, extractor, settings, seed: int, pr_size: int) -> dict:
    """One value per metric for one replication of N generated pairs."""
    from interhandgen.evaluation.features import extract_features
    from interhandgen.evaluation.metrics import diversity, fid, kid, precision_recall
    from interhandgen.evaluation.protocol import canonical_two_hand_vertices, geometry_metrics

    models = samples.hand_models()
    verts = canonical_two_hand_vertices(samples, models)
    feats = extract_features(extractor, verts, batch_size=settings.feature_batch_size, progress=False)
    n = min(len(samples), ref_feats.shape[0])
    rng = np.random.default_rng(seed)
    pr_n = min(pr_size, n)
    fi, ri = rng.choice(len(samples), pr_n, replace=False), rng.choice(ref_feats.shape[0], pr_n, replace=False)
    precision, recall = precision_recall(ref_feats[ri], feats[fi], k=settings.pr_k)
    geo = geometry_metrics(verts, models["left"].faces_np, models["right"].faces_np, settings, progress=False)
    return {
        "fhid": fid(feats, ref_feats),
        "khid": kid(feats, ref_feats, degree=settings.kid_degree, num_subsets=settings.kid_subsets,
                    subset_size=min(settings.kid_subset_size, n), seed=seed),
        "diversity": diversity(feats, num_pairs=settings.diversity_pairs, seed=seed),
        "precision": precision, "recall": recall,
        "pen_vol_cm3": geo["penetration_volume_cm3"]["mean"],
        "pen_dist_mm": geo["penetration_depth_mm"]["mean"],
        "prox_ratio": geo["proximity_ratio"], "contact_rate": geo["contact_rate"],
    }


def entry_samples(entry: Entry, num: int, replication: int, seed: int):
    """The N pairs of one replication of an entry."""
    from interhandgen.data.format import TwoHandSet
    from interhandgen.generation import SamplerSettings, load_model, sample_model

    path = Path(entry.path)
    if not path.exists():
        raise FileNotFoundError(f"entry {entry.name!r}: {path} not found")
    if path.suffix == ".npz":
        if entry.overrides:
            raise ValueError(f"entry {entry.name!r}: sampler options {entry.overrides} do not apply to a samples file")
        data = TwoHandSet.load(path)
        if len(data) < (replication + 1) * num:
            raise ValueError(f"entry {entry.name!r}: {path} has {len(data)} pairs; replication {replication} needs "
                             f"rows {replication * num}..{(replication + 1) * num - 1}")
        return data[np.arange(replication * num, (replication + 1) * num)]
    model = load_model(path)
    kind = model.kind
    if kind in ("joint", "vae"):
        settings = None if not entry.overrides else SamplerSettings(**{"cfg_scale": 0.0, "apg_weight": 0.0,
                                                                       **entry.overrides})
    else:
        settings = SamplerSettings(**entry.overrides)
    return sample_model(model, num, seed=seed + replication, settings=settings, progress=False)


def summarise(values: list[dict]) -> dict:
    from interhandgen.evaluation.replication import t_confidence_interval

    out = {}
    for key, _, _ in COLUMNS:
        v = [r[key] for r in values]
        mean, std, lo, hi = t_confidence_interval(v)
        out[key] = {"mean": mean, "std": std, "ci_low": lo, "ci_high": hi, "values": v}
    return out


def format_cell(stat: dict, fmt: str) -> str:
    half = (stat["ci_high"] - stat["ci_low"]) / 2
    return f"{fmt.format(stat['mean'])} ± {fmt.format(half)}"


def results_markdown(doc: dict) -> str:
    """The Markdown page of a results document (see :func:`main` for its fields)."""
    head = "| entry | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [
        "# Results on the synthetic data set",
        "",
        f"{doc['num']} generated pairs per replication, {doc['replications']} replications (seeds "
        f"{doc['seed']}..{doc['seed'] + doc['replications'] - 1}); values are mean ± half-width of the 95% t "
        f"interval over the replications. Reference: the '{doc['reference_split']}' split of `{doc['data']}` "
        f"({doc['num_reference']} pairs).",
        "",
        head, "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for row in doc["entries"]:
        cells = [format_cell(row["summary"][k], fmt) for k, _, fmt in COLUMNS]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    s = doc["settings"]
    lines += [
        "",
        f"FHID: Frechet distance of the {doc['feature_dim']}-d features of all N pairs to the reference; KHID: "
        f"unbiased MMD^2, polynomial kernel of degree {s['kid_degree']}, {s['kid_subsets']} subsets of "
        f"min({s['kid_subset_size']}, N); Diversity: mean feature distance of {s['diversity_pairs']} random pairs; "
        f"Precision/Recall: k = {s['pr_k']} on {doc['pr_size']} pairs of each set (lower FHID/KHID/PenVol/PenDist "
        "is better, higher precision/recall is better; diversity should be near the reference's). PenVol: mean "
        "exact intersection volume of the sealed meshes; PenDist: mean exact depth of the deepest vertex inside the "
        f"other hand (0 without penetration){doc['depth_note']}; ProxRatio: fraction of pairs closer than "
        f"{s['proximity_threshold_m'] * 1000:g} mm; contact rate: fraction closer than "
        f"{s['contact_threshold_m'] * 1000:g} mm.",
        "",
        "Entries:",
        "",
    ]
    lines += [f"- {row['name']}: `{row['path']}` {json.dumps(row['overrides']) if row['overrides'] else ''}".rstrip()
              for row in doc["entries"]]
    lines += [
        "",
        "Regenerate with:",
        "",
        "```bash",
        doc["command"],
        "```",
        "",
        f"- evaluator: `{doc['evaluator']}`, weights SHA-256 `{doc['evaluator_sha256']}`",
        f"- data set: `{doc['data']}`, SHA-256 `{doc['data_sha256']}`",
        f"- wall time: {doc['seconds']:.0f} s",
        "",
        "## The paper's Table 1 (InterHand2.6M), for context",
        "",
        PAPER_TABLE,
        "",
        PAPER_NOTE,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="TwoHandSet .npz; its --reference-split is the reference")
    p.add_argument("--reference-split", default="test")
    p.add_argument("--evaluator", help="feature extractor (directory or config.json from `interhandgen evaluator train`)")
    p.add_argument("--entry", action="append", default=[], help="NAME=PATH[:key=value,...] (repeatable)")
    p.add_argument("--bundled", default=None, help="run of the bundled model: adds the standard ablations")
    p.add_argument("--baselines-dir", default=None, help="folder holding runs joint/, separate/, shared_budget/, vae/")
    p.add_argument("--apg-weight", type=float, default=None,
                   help="APG weight of the bundled entries (default: the sampler's default, SamplerSettings)")
    p.add_argument("--num", type=int, default=2000, help="N, pairs per replication")
    p.add_argument("--replications", type=int, default=5, help="R >= 2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pr-size", type=int, default=1000, help="pairs of each set for precision/recall (paper: 1,000)")
    p.add_argument("--kid-degree", type=int, default=3)
    p.add_argument("--depth-pairs", type=int, default=None,
                   help="exact depth on at most this many penetrating pairs per replication (default: all)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--json", default=None, help="all values as JSON (default: OUT with .json)")
    p.add_argument("--from-json", default=None, help="only rewrite the Markdown from this JSON")
    args = p.parse_args(argv)

    if args.from_json:
        doc = json.loads(Path(args.from_json).read_text())
        atomic_write_bytes(args.out, results_markdown(doc).encode())
        print(f"wrote {args.out}")
        return doc
    if not args.data or not args.evaluator:
        p.error("--data and --evaluator are required (unless --from-json)")
    if args.replications < 2:
        raise ValueError(f"--replications must be >= 2 for a confidence interval, got {args.replications}")
    if args.num < 2 * 5 + 2:
        raise ValueError(f"--num must be at least 12 (precision/recall with k = 5), got {args.num}")
    if args.threads:
        torch.set_num_threads(args.threads)
    entries = [parse_entry(e) for e in args.entry]
    if args.bundled:
        from interhandgen.generation import SamplerSettings

        apg = SamplerSettings().apg_weight if args.apg_weight is None else args.apg_weight
        entries = standard_entries(args.bundled, args.baselines_dir, apg) + entries
    if not entries:
        raise ValueError("no entries: pass --bundled RUN and/or --entry NAME=PATH")

    from tqdm.auto import tqdm

    from interhandgen.data.format import TwoHandSet
    from interhandgen.evaluation.bundled import load_evaluator
    from interhandgen.evaluation.features import extract_features
    from interhandgen.evaluation.protocol import EvaluationSettings, canonical_two_hand_vertices, check_compatible

    t0 = time.perf_counter()
    data = TwoHandSet.load(args.data)
    if data.split is None:
        raise ValueError(f"{args.data}: no 'split' field; the reference is its {args.reference_split!r} split")
    reference = data.select_split(args.reference_split)
    extractor = load_evaluator(args.evaluator)
    settings = EvaluationSettings(kid_degree=args.kid_degree, depth_pairs=args.depth_pairs, seed=args.seed)
    ref_feats = extract_features(extractor, canonical_two_hand_vertices(reference, reference.hand_models()),
                                 batch_size=settings.feature_batch_size, progress=True)
    rows = []
    bar = tqdm(total=len(entries) * args.replications, desc="entries x replications")
    for entry in entries:
        values = []
        for r in range(args.replications):
            samples = entry_samples(entry, args.num, r, args.seed)
            check_compatible(samples, reference)
            values.append(replication_values(samples, ref_feats, extractor, settings, args.seed + r, args.pr_size))
            bar.update(1)
        rows.append({"name": entry.name, "path": entry.path, "overrides": entry.overrides,
                     "summary": summarise(values)})
    bar.close()
    depth_note = "" if args.depth_pairs is None else (
        f", estimated per replication from at most {args.depth_pairs} penetrating pairs")
    doc = {
        "num": args.num, "replications": args.replications, "seed": args.seed, "pr_size": args.pr_size,
        "data": str(args.data), "data_sha256": file_sha256(args.data), "reference_split": args.reference_split,
        "num_reference": len(reference), "evaluator": str(args.evaluator),
        "evaluator_sha256": evaluator_sha256(args.evaluator), "feature_dim": int(ref_feats.shape[1]),
        "settings": dataclasses.asdict(settings), "depth_note": depth_note,
        "command": "python benchmarks/results_table.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "entries": rows, "seconds": time.perf_counter() - t0,
    }
    json_path = args.json or str(Path(args.out).with_suffix(".json"))
    atomic_write_bytes(json_path, (json.dumps(doc, indent=2) + "\n").encode())
    atomic_write_bytes(args.out, results_markdown(doc).encode())
    print(results_markdown(doc))
    print(f"wrote {args.out} and {json_path}")
    return doc


if __name__ == "__main__":
    main()
