"""Sampler settings of trained cascaded models on one fixed protocol (issue 12; docs/prior_experiments.md).

``run``: for each model NAME=PATH and each sampler variant LABEL=KEY=VALUE,...: sample N pairs with one seed and
evaluate them exactly as ``benchmarks/fair_comparison.py run`` does (FHID/KHID/precision/recall over seeded subsets,
density/coverage, C2ST, category total variation, contact and proximity on all pairs, exact penetration on the
first ``--geometry-pairs``), plus the C2ST on three views of the joint features that split the error between the
two stages (:func:`stage_views`): the anchor's articulation (stage 1 alone), the partner's articulation in its own
frame, and the relative placement (stage 2). Variants start from "network + APG only" (``--settle-steps 0
--resample-rounds 0``); their keys are :class:`interhandgen.generation.SamplerSettings` fields, plus
``anchors=floor``: the partners are completed for the floor draw's real anchors (:meth:`InterHandGen.complete`),
which removes stage 1's error and leaves the conditional stage's. The floor draw itself is evaluated as a row.
One JSON per (model, variant) in ``--work``; existing ones are kept (an interrupted run resumes).

``table``: the per-run JSONs -> one JSON with every value and a Markdown table (rows in the order of ``--row``).

    python benchmarks/prior_sampler.py run --model bundled=bundled --variant base= --variant steps50=steps=50 \\
        --reference heldout.npz --work runs/prior_sampler --num 5000 --threads 1
    python benchmarks/prior_sampler.py table --work runs/prior_sampler --row "floor=floor" --row "base=bundled:base" \\
        --out benchmarks/results/prior_sampler.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.diffusion import Schedule
from interhandgen.diffusion.samplers import sampling_timesteps
from interhandgen.evaluation.bundled import load_evaluator
from interhandgen.evaluation.floor import floor_draw
from interhandgen.evaluation.joint_features import (
    JOINT_FEATURE_DIM,
    NUM_JOINTS,
    PLACEMENT,
)
from interhandgen.evaluation.protocol import (
    EvaluationSettings,
    canonical_joint_features,
)
from interhandgen.evaluation.two_sample import C2STSettings, classifier_two_sample_test
from interhandgen.exceptions import InputError
from interhandgen.generation import (
    InterHandGen,
    SamplerSettings,
    load_model,
    sample_model,
)
from interhandgen.models.registry import CASCADED_KINDS
from interhandgen.rotations import rot6d_to_matrix

_spec = importlib.util.spec_from_file_location("fair_comparison", Path(__file__).with_name("fair_comparison.py"))
fair = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fair)
_spec = importlib.util.spec_from_file_location("variant_overrides", Path(__file__).with_name("variant_overrides.py"))
overrides_of = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(overrides_of)

#: "Network + APG only": the base every variant starts from (the paper's sampler; fair_comparison's "none").
BASE = dict(fair.POSTS["none"])
#: Where the partners' anchors come from: sampled by stage 1, or the floor draw's real anchors.
ANCHOR_SOURCES = ("sampled", "floor")

LEFT = slice(0, NUM_JOINTS * 3)
RIGHT = slice(NUM_JOINTS * 3, 2 * NUM_JOINTS * 3)

COLUMNS = fair.COLUMNS[:9] + [
    ("c2st_anchor", "C2ST anchor", "{:.3f}", "low"),
    ("c2st_partner", "C2ST partner art.", "{:.3f}", "low"),
    ("c2st_placement", "C2ST placement", "{:.3f}", "low"),
] + fair.COLUMNS[10:] + [
    ("spread_betas", "spread betas", "{:.3f}", ""),
    ("spread_pose", "spread pose", "{:.3f}", ""),
    ("sample_cpu_s", "sample CPU s", "{:.0f}", "low"),
]


def stage_views(feats: torch.Tensor) -> dict[str, torch.Tensor]:
    """Three views of joint features [N, 135] (:func:`interhandgen.evaluation.joint_features.joint_features`).

    Returns {"anchor": [N, 63] the left (anchor) hand's joints in its own canonical frame (stage 1's output alone),
    "partner": [N, 63] the right hand's joints in ITS own frame, R_rel^T (j - t_rel) (its articulation and shape,
    independent of where it is placed), "placement": [N, 9] the relative rotation (6D) and translation}."""
    if feats.ndim != 2 or feats.shape[1] != JOINT_FEATURE_DIM:
        raise InputError(f"joint features must have shape [N, {JOINT_FEATURE_DIM}], got {list(feats.shape)}")
    place = feats[:, PLACEMENT]
    rot = rot6d_to_matrix(place[:, :6])                                   # [N, 3, 3]
    right = feats[:, RIGHT].reshape(-1, NUM_JOINTS, 3) - place[:, None, 6:9]
    local = torch.einsum("nji,nkj->nki", rot, right)                    # R^T (j - t) per joint
    return {"anchor": feats[:, LEFT], "partner": local.reshape(len(feats), -1), "placement": place}


def spread_ratios(samples: TwoHandSet, reference: TwoHandSet) -> dict[str, float]:
    """Mean over parameters of std(samples) / std(reference) for both hands' shape (betas, [N, 10] each) and pose
    coefficients ([N, 45] each): frame-independent parameters, so 1.0 is the data's spread and below 1 an
    under-dispersed sampler. Returns {"spread_betas", "spread_pose"}."""
    out = {}
    for field in ("betas", "pose"):
        s = np.concatenate([getattr(samples.left, field), getattr(samples.right, field)], 1).astype(np.float64)
        r = np.concatenate([getattr(reference.left, field), getattr(reference.right, field)], 1).astype(np.float64)
        ref_std = r.std(0)
        if len(s) < 2 or len(r) < 2 or not np.all(ref_std > 0):
            raise InputError(f"spread of {field}: needs >= 2 pairs per set and a reference with non-zero spread")
        out[f"spread_{field}"] = float(np.mean(s.std(0) / ref_std))
    return out


def gaussian_spread(alphas_cumprod: torch.Tensor, timesteps: list[int], eta: float, variance: float) -> float:
    """std(sample) / std(data) of DDIM (``eta``, visiting ``timesteps``) with the EXACT denoiser of 1-D data
    x0 ~ N(0, ``variance``), in closed form: the sampler's discretisation error alone, no network.

    The state starts as N(0, 1) at the first visited timestep; the exact denoiser is x0_hat = k x_t with
    k = a v / (a^2 v + s^2) (a^2 = abar_t, s^2 = 1 - abar_t); each step maps the state's variance V to
    (a' k + c (1 - a k) / s)^2 V + sigma^2 (a'^2 = abar_next, sigma and c as in docs/diffusion.md, section 3);
    the last step returns x0_hat."""
    ab = alphas_cumprod.double()
    var_x = 1.0
    for i, t in enumerate(timesteps):
        a2 = float(ab[t])
        k = math.sqrt(a2) * variance / (a2 * variance + 1.0 - a2)
        if i == len(timesteps) - 1:
            return math.sqrt(k * k * var_x / variance)
        a2n = float(ab[timesteps[i + 1]])
        sigma2 = eta ** 2 * (1.0 - a2n) / (1.0 - a2) * (1.0 - a2 / a2n)
        c = math.sqrt(max(1.0 - a2n - sigma2, 0.0))
        coef = math.sqrt(a2n) * k + c * (1.0 - math.sqrt(a2) * k) / math.sqrt(1.0 - a2)
        var_x = coef * coef * var_x + sigma2
    raise InputError("gaussian_spread: no timesteps")


def parse_variant(spec: str) -> tuple[str, dict[str, Any], str]:
    """``LABEL=KEY=VALUE,KEY=VALUE`` -> (label, SamplerSettings overrides on top of :data:`BASE`, anchor source).

    Values are parsed by the type of the field's default (:func:`variant_overrides.field_overrides`; bool:
    true/false; cfg_dims: START:STOP; anchor_steps: a number or none); ``anchors=sampled|floor`` is not a field."""
    label, sep, rest = spec.partition("=")
    if not sep or not label:
        raise InputError(f"--variant {spec!r}: expected LABEL=KEY=VALUE,... (LABEL= for the base)")
    fields, extra = overrides_of.field_overrides(SamplerSettings, rest, f"--variant {spec!r}", reserved=("anchors",))
    anchors = extra.get("anchors", "sampled")
    if anchors not in ANCHOR_SOURCES:
        raise InputError(f"--variant {spec!r}: anchors must be one of {ANCHOR_SOURCES}, got {anchors!r}")
    overrides: dict[str, Any] = {**BASE, **fields}
    SamplerSettings(**overrides).validate()
    return label, overrides, anchors


def view_c2st(samples: TwoHandSet, reference_views: dict[str, torch.Tensor], settings: C2STSettings) -> dict[str, Any]:
    """C2ST accuracy/AUC of each :func:`stage_views` view of ``samples`` against the reference's."""
    views = stage_views(canonical_joint_features(samples, samples.hand_models()))
    out = {}
    for name, feats in views.items():
        res = classifier_two_sample_test(feats, reference_views[name], settings)
        out[name] = {"accuracy": res["accuracy"]["mean"], "auc": res["auc"]["mean"],
                     "accuracy_ci95": [res["accuracy"]["ci_low"], res["accuracy"]["ci_high"]]}
    return out


def _draw(model, name: str, label: str, overrides: dict[str, Any], anchors: str, floor: TwoHandSet, args):
    settings = SamplerSettings(**overrides)
    t0, c0 = time.perf_counter(), time.process_time()
    if anchors == "floor":
        if model.kind not in CASCADED_KINDS:
            raise InputError(f"--variant {label}: anchors=floor needs a cascaded model, {name} is {model.kind!r}")
        samples = InterHandGen(model).complete(floor, side="left", seed=args.seed, settings=settings,
                                               progress=not args.no_progress)
    else:
        samples = sample_model(model, args.num, seed=args.seed, settings=settings, progress=not args.no_progress)
    return samples, {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def cmd_run(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    reference = TwoHandSet.load(args.reference).select_split(args.reference_split)
    floor = floor_draw(args.reference, args.floor_split, args.reference, args.reference_split, reference,
                       size=args.num, seed=args.eval_seed)
    extractor = load_evaluator(args.evaluator)
    ev = EvaluationSettings()
    c2 = C2STSettings(folds=ev.c2st_folds, max_per_class=ev.c2st_max_per_class, hidden=ev.c2st_hidden,
                      epochs=ev.c2st_epochs, seed=args.eval_seed)
    reference_views = stage_views(canonical_joint_features(reference, reference.hand_models()))
    # fair_comparison's evaluation reads these arguments; the same defaults as its `run`.
    args.replications, args.no_floor_additions = 5, True
    command = "python benchmarks/prior_sampler.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    common = {"reference": str(args.reference), "reference_split": args.reference_split,
              "num_reference": len(reference), "floor_split": args.floor_split, "num_floor": len(floor),
              "geometry_pairs": args.geometry_pairs, "depth_pairs": args.depth_pairs, "command": command,
              "threads": torch.get_num_threads(), "c2st": dataclasses.asdict(c2), "eval_seed": args.eval_seed}
    # variant-major: every model gets a variant before the next variant starts (early side-by-side numbers)
    jobs = [("floor", None)] + [(m, v) for v in args.variant for m in args.model]
    for model_spec, variant in jobs:
        if model_spec == "floor":
            key, name, label = "floor", "floor", "floor"
        else:
            name, _, path = model_spec.partition("=")
            if not name or not path:
                raise InputError(f"--model {model_spec!r}: expected NAME=PATH")
            label, overrides, anchors = parse_variant(variant)
            key = f"{name}__{label}"
        out = work / f"{key}.json"
        if out.exists():
            print(f"{out} exists; kept", flush=True)
            continue
        if key == "floor":
            samples, times, extra = floor, {}, {"name": "floor", "variant": "floor"}
        else:
            model = load_model(None if path == "bundled" else path)
            samples, times = _draw(model, name, label, overrides, anchors, floor, args)
            samples.save(work / f"samples_{key}.npz")
            extra = {"name": name, "path": path, "kind": model.kind, "variant": label, "overrides": overrides,
                     "anchors": anchors, "sampler": samples.metadata.get("sampler")}
        t0 = time.perf_counter()
        res = fair._evaluate_set(samples, reference, extractor, args, None, additions=True)
        views = view_c2st(samples, reference_views, c2)
        values = fair.scalars(res)
        values.update({f"c2st_{v}": views[v]["accuracy"] for v in views})
        values.update(spread_ratios(samples, reference))
        if times:
            values["sample_cpu_s"], values["sample_wall_s"] = times["cpu_s"], times["wall_s"]
        doc = {**common, **extra, "seed": args.seed, "num": len(samples), "sample_time": times, "values": values,
               "views": views, "eval_seconds": time.perf_counter() - t0, "result": res}
        atomic_write_bytes(out, (json.dumps(doc, indent=1) + "\n").encode())
        print(f"wrote {out}: " + json.dumps({k: round(v, 4) for k, v in values.items()}), flush=True)


def cmd_table(args) -> None:
    docs = {f.stem: json.loads(f.read_text()) for f in sorted(Path(args.work).glob("*.json"))}
    rows = []
    for spec in args.row:
        label, sep, target = spec.rpartition("=")
        if not sep or not label:
            raise InputError(f"--row {spec!r}: expected LABEL=NAME:VARIANT or LABEL=floor")
        key = "floor" if target == "floor" else target.replace(":", "__", 1)
        if key not in docs:
            raise InputError(f"--row {spec!r}: no {key}.json in {args.work}")
        d = docs[key]
        if "spread_pose" not in d["values"]:  # runs written before the spread was measured: from their files
            reference = TwoHandSet.load(d["reference"]).select_split(d["reference_split"])
            if key == "floor":
                samples = floor_draw(d["reference"], d["floor_split"], d["reference"], d["reference_split"],
                                     reference, size=d["num"], seed=d.get("eval_seed", 0))
            else:
                samples = TwoHandSet.load(Path(args.work) / f"samples_{key}.npz")
            d["values"].update(spread_ratios(samples, reference))
        rows.append({"label": label, "key": key, "overrides": d.get("overrides"), "anchors": d.get("anchors"),
                     "stats": fair.aggregate_seeds([d["values"]]), "views": d["views"],
                     "sample_time": d.get("sample_time"), "eval_seconds": d["eval_seconds"]})
    md = fair.table_markdown(rows, COLUMNS)
    out = {"rows": rows, "markdown": md,
           "runs": {k: {kk: v for kk, v in d.items() if kk != "result"} for k, d in docs.items()},
           "command_table": "python benchmarks/prior_sampler.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    atomic_write_bytes(args.out, (json.dumps(out, indent=1) + "\n").encode())
    print(md)


def cmd_gaussian(args) -> None:
    schedule = Schedule.cosine(args.num_timesteps)
    rows = [{"variance": v, "eta": eta, "steps": n,
             "std_ratio": gaussian_spread(schedule.alphas_cumprod,
                                          sampling_timesteps(args.num_timesteps, n).tolist(), eta, v)}
            for v in args.variance for eta in args.eta for n in args.steps]
    doc = {"schedule": f"cosine, T = {args.num_timesteps}", "spacing": "linspace", "rows": rows,
           "command": "python benchmarks/prior_sampler.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    atomic_write_bytes(args.out, (json.dumps(doc, indent=1) + "\n").encode())
    for r in rows:
        print(f"variance {r['variance']:g} eta {r['eta']:g} steps {r['steps']:3d}: std ratio {r['std_ratio']:.3f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="sample and evaluate sampler variants")
    r.add_argument("--model", action="append", default=[], help="NAME=PATH (run folder, model file, or 'bundled')")
    r.add_argument("--variant", action="append", default=[],
                   help="LABEL=KEY=VALUE,... SamplerSettings overrides on top of network + APG only; anchors=floor")
    r.add_argument("--reference", required=True, help="TwoHandSet .npz with the reference and floor splits")
    r.add_argument("--reference-split", default="test")
    r.add_argument("--floor-split", default="train")
    r.add_argument("--evaluator", default=None, help="feature extractor (default: the bundled one)")
    r.add_argument("--work", required=True)
    r.add_argument("--num", type=int, default=5000)
    r.add_argument("--seed", type=int, default=0, help="sampling seed")
    r.add_argument("--eval-seed", type=int, default=0)
    r.add_argument("--geometry-pairs", type=int, default=1000)
    r.add_argument("--depth-pairs", type=int, default=100)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--no-progress", action="store_true")
    t = sub.add_parser("table", help="aggregate the per-run JSONs")
    t.add_argument("--work", required=True)
    t.add_argument("--row", action="append", required=True, help="LABEL=NAME:VARIANT or LABEL=floor (in order)")
    t.add_argument("--out", required=True)
    gs = sub.add_parser("gaussian", help="the sampler's spread with the exact denoiser of 1-D Gaussians (closed form)")
    gs.add_argument("--variance", type=float, nargs="+", default=[1.0, 0.1])
    gs.add_argument("--eta", type=float, nargs="+", default=[1.0, 0.0])
    gs.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 129])
    gs.add_argument("--num-timesteps", type=int, default=129)
    gs.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.cmd == "gaussian":
        cmd_gaussian(args)
    elif args.cmd == "run":
        fair.check_num(args.num)
        for v in args.variant:
            parse_variant(v)  # fail before any sampling
        cmd_run(args)
    else:
        cmd_table(args)


if __name__ == "__main__":
    main()
