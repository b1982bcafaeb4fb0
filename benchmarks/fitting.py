"""Benchmark of two-hand fitting with each prior on held-out synthetic pairs (docs/fitting.md).

Frames: the first --num pairs of the --split split of --data (a TwoHandSet from `interhandgen data synth`), each
seen by a camera from a random direction at 0.3-0.8 m (random roll, 600 px focal length, 640 x 480).
Tasks:
  a  occluded 2D keypoints: exact projections, joints hidden by the OTHER hand (exact ray casting against its
     mesh) dropped, Gaussian pixel noise with a per-frame sigma in [2, 5] px, 5% outliers (uniform in the image);
  b  3D joints with Gaussian noise of 1 cm per coordinate;
  c  completion: one hand (random side) with all 21 3D joints (1 cm noise), the other with a random half masked;
  d  refinement: task a's keypoints plus an initial estimate = the truth perturbed (pose PCA sigma 0.3, betas
     sigma 0.5, rotation 10 degrees about a random axis, centre 1.5 cm per coordinate).
Metrics per task and prior (mean and 95% interval over frames): MPJPE and MPVPE per hand (mm, wrist-aligned),
MRRPE (mm), 2D reprojection error of all 42 joints against the exact projections of the truth (px), exact
penetration volume (cm^3, manifold3d) and contact rate (minimum vertex distance < 2 mm), seconds per frame at
--batch frames per fit. The truth's penetration volume and contact rate are reported as the data's level.

    python benchmarks/fitting.py --data data/synth.npz --vae-checkpoint runs/vae --out fitting.json
    python benchmarks/fitting.py --tables fitting.json [more.json ...]      # markdown tables of result files

Timings are wall-clock on whatever else the machine runs; compare priors within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time

import numpy as np
import torch

from interhandgen._atomic import atomic_write
from interhandgen.data.format import TwoHandSet
from interhandgen.fitting import DEFAULT_VARIANT, FitSettings, Fitter, Observations, default_settings, make_prior, \
    set_from_vectors, vectors_from_set
from interhandgen.fitting.metrics import mrrpe_mm, reprojection_px, root_aligned_error_mm
from interhandgen.fitting.synthetic import CameraSpec, corrupt_keypoints, exact_projection, occluded_by_other, \
    random_cameras, to_camera
from interhandgen.geometry import min_distance, penetration_volume
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix

TASKS = ("a", "b", "c", "d")
CONTACT_M = 0.002


def interval(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=np.float64)
    half = 1.96 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "ci95": float(half), "n": int(len(v))}


def build_problems(y: torch.Tensor, body, spec: CameraSpec, seed: int) -> dict:
    """Observations of every task for camera-frame truths y [N, 2, 64]."""
    g = torch.Generator().manual_seed(seed)
    N = y.shape[0]
    K = spec.intrinsics(N)
    with torch.no_grad():
        verts, joints = body.meshes(y)
    faces = (body.models["left"].faces, body.models["right"].faces)
    hidden = occluded_by_other(joints, verts, faces)
    exact = exact_projection(joints, K)
    kp, conf = corrupt_keypoints(exact, spec, g)
    conf = torch.where(hidden, torch.zeros_like(conf), conf)
    obs_a = Observations(keypoints_2d=kp, confidence_2d=conf, intrinsics=K, image_size=(spec.width, spec.height))
    noisy3 = joints + 0.01 * torch.randn(joints.shape, generator=g)
    obs_b = Observations(keypoints_3d=noisy3, confidence_3d=torch.ones(N, 2, 21))
    conf_c = torch.ones(N, 2, 21)
    side = torch.randint(0, 2, (N,), generator=g)
    order = torch.argsort(torch.rand(N, 21, generator=g), dim=1)[:, :10]
    for i in range(N):
        conf_c[i, 1 - side[i], order[i]] = 0.0
    obs_c = Observations(keypoints_3d=noisy3, confidence_3d=conf_c)
    yp = y.clone()
    yp[..., :45] += 0.3 * torch.randn(N, 2, 45, generator=g)
    yp[..., 45:55] += 0.5 * torch.randn(N, 2, 10, generator=g)
    axis = torch.nn.functional.normalize(torch.randn(N, 2, 3, generator=g), dim=-1)
    R = axis_angle_to_matrix(axis * math.radians(10.0))
    yp[..., 55:61] = matrix_to_rot6d(R @ rot6d_to_matrix(y[..., 55:61]))
    yp[..., 61:] += 0.015 * torch.randn(N, 2, 3, generator=g)
    return {"a": obs_a, "b": obs_b, "c": obs_c, "d": yp, "_exact2d": exact, "_hidden": hidden, "_K": K,
            "_verts": verts, "_joints": joints, "_y": y}


def flipped_per_hand(fitted: torch.Tensor, truth: torch.Tensor, degrees: float = 45.0) -> torch.Tensor:
    """[N, 2] bool: the hand's fitted rotation is more than ``degrees`` from the truth (vectors [N, 2, 64])."""
    rel = rot6d_to_matrix(fitted[..., 55:61]).transpose(-1, -2) @ rot6d_to_matrix(truth[..., 55:61])
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos)) > degrees


def flipped_hands(fitted: torch.Tensor, truth: torch.Tensor, degrees: float = 45.0) -> torch.Tensor:
    """[N] share of the two hands whose fitted rotation is more than ``degrees`` from the truth (vectors [N, 2, 64])."""
    return flipped_per_hand(fitted, truth, degrees).double().mean(1)


def geometry(verts: torch.Tensor, faces) -> tuple[np.ndarray, np.ndarray]:
    vol = penetration_volume(verts[:, 0], faces[0], verts[:, 1], faces[1], num_workers=1)
    contact = (min_distance(verts[:, 0], verts[:, 1]) < CONTACT_M).double().numpy()
    return np.asarray(vol, dtype=np.float64), contact


def _cell(m: dict, digits: int) -> str:
    return f"{m['mean']:.{digits}f} ± {m['ci95']:.{digits}f}"


def markdown_tables(paths: list[str]) -> str:
    """Markdown tables (one per task, a row per prior) of result files written by this script."""
    tasks: dict = {}
    for path in paths:
        with open(path) as fh:
            doc = json.load(fh)
        for task, rows in doc["tasks"].items():
            tasks.setdefault(task, {}).update(rows)
        level = doc["data_level"]
    out = [f"Data level (truth): penetration volume {_cell(level['penetration_volume_cm3'], 4)} cm^3, contact rate "
           f"{_cell(level['contact_rate'], 3)}, occluded joints {level['occluded_joint_fraction']:.3f}", ""]
    head = ("| prior (weight) | MPJPE L / R (mm) | MPVPE L / R (mm) | MPVPE both | MRRPE (mm) | 2D error (px) | "
            "pen. volume (cm^3) | contact rate | flipped | s/frame |")
    for task in sorted(tasks):
        out += [f"Task {task} ({next(iter(tasks[task].values()))['mpvpe_mm']['both']['n']} frames)", "", head,
                "|" + "---|" * 10]
        for entry, r in tasks[task].items():
            w = r["prior_weight"] if r.get("prior_weight_end") in (None, r["prior_weight"]) else \
                f"{r['prior_weight']:g} -> {r['prior_weight_end']:g}"
            out.append(
                f"| {entry} ({w}) | {_cell(r['mpjpe_mm']['left'], 1)} / {_cell(r['mpjpe_mm']['right'], 1)} | "
                f"{_cell(r['mpvpe_mm']['left'], 1)} / {_cell(r['mpvpe_mm']['right'], 1)} | {_cell(r['mpvpe_mm']['both'], 2)} | "
                f"{_cell(r['mrrpe_mm'], 1)} | {_cell(r['reprojection_px'], 1)} | {_cell(r['penetration_volume_cm3'], 4)} | "
                f"{_cell(r['contact_rate'], 3)} | {_cell(r['flipped'], 3) if 'flipped' in r else '-'} | "
                f"{r['seconds_per_frame']:.2f} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--tables":  # python benchmarks/fitting.py --tables a.json [b.json ...]
        print(markdown_tables(sys.argv[2:]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--num", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--tasks", default="a,b,c,d")
    ap.add_argument("--priors", default="interhandgen:sds,interhandgen:dposer,vae,gaussian,none")
    ap.add_argument("--checkpoint", default=None, help="cascaded model file (default: the bundled model)")
    ap.add_argument("--vae-checkpoint", default=None, help="model file of kind vae (needed for the vae prior)")
    ap.add_argument("--iterations", type=int, default=FitSettings.iterations)
    ap.add_argument("--prior-weights", default="", help="overrides of the start weights, e.g. interhandgen=2,gaussian=0.5 "
                                                         "(a prior name or a whole entry such as interhandgen:sds)")
    ap.add_argument("--prior-weights-end", default="", help="overrides of the end weights, same form")
    ap.add_argument("--penetration-weight", type=float, default=FitSettings.penetration_weight)
    ap.add_argument("--contact-weight", type=float, default=FitSettings.contact_weight)
    ap.add_argument("--volume-weight", type=float, default=FitSettings.volume_weight,
                    help="weight of the volumetric (inscribed-sphere) penetration term")
    ap.add_argument("--volume-start", type=float, default=FitSettings.volume_start)
    ap.add_argument("--flip-hypotheses", action=argparse.BooleanOptionalAction, default=FitSettings.flip_hypotheses,
                    help="depth-flip hypotheses (chosen as --flip-select says)")
    ap.add_argument("--flip-iterations", type=int, default=FitSettings.flip_iterations)
    ap.add_argument("--flip-select", default=FitSettings.flip_select, help="energy or data (what the flip choice minimises)")
    ap.add_argument("--guided", action=argparse.BooleanOptionalAction, default=None,
                    help="the interhandgen prior's guided projection (default: on, fitting.DEFAULT_PRIOR_FIELDS)")
    ap.add_argument("--guided-at", type=float, default=None,
                    help="FitSettings.guided_at for the interhandgen entries (fraction of stage 2; default: the prior's)")
    ap.add_argument("--guided-t", type=float, default=None)
    ap.add_argument("--guided-steps", type=int, default=None)
    ap.add_argument("--guided-inner", type=int, default=None)
    ap.add_argument("--guided-step-size", type=float, default=None)
    ap.add_argument("--guided-invert", action=argparse.BooleanOptionalAction, default=None,
                    help="FitSettings.guided_invert: DDIM inversion to guided_t instead of the forward process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-frame", action="store_true",
                    help="also store per-frame MPVPE and MPJPE per hand, MRRPE and flipped hands in the JSON")
    ap.add_argument("--placement-weights", default="",
                    help="overrides of the two-hand priors' relative-placement weights, e.g. interhandgen=3,vae=1 "
                         "(default: fitting.DEFAULT_PLACEMENT_WEIGHTS)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks = [t for t in args.tasks.split(",") if t]
    parse = lambda text: {k: float(v) for k, v in (kv.split("=") for kv in text.split(",") if kv)}  # noqa: E731
    overrides, overrides_end = parse(args.prior_weights), parse(args.prior_weights_end)
    placements = parse(args.placement_weights)

    data = TwoHandSet.load(args.data)
    data = data.select_split(args.split) if args.split else data
    if len(data) < args.num:
        raise SystemExit(f"{args.data} split {args.split!r} has {len(data)} pairs, fewer than --num {args.num}")
    data = data[: args.num]
    spec = CameraSpec()
    results: dict = {"settings": {**vars(args), "camera": dataclasses.asdict(spec), "torch_threads": torch.get_num_threads(),
                                  "platform": platform.platform(), "cpu_count": __import__("os").cpu_count()},
                     "tasks": {}}
    fitters: dict = {}
    for entry in args.priors.split(","):
        name, _, variant = entry.partition(":")
        pick = lambda table: table.get(entry, table.get(name))  # noqa: E731
        module, mean, std = make_prior(name, args.vae_checkpoint if name == "vae" else args.checkpoint,
                                       variant=variant or DEFAULT_VARIANT, placement_weight=pick(placements))
        settings = default_settings(name, iterations=args.iterations, prior_weight=pick(overrides),
                                    prior_weight_end=pick(overrides_end), penetration_weight=args.penetration_weight,
                                    contact_weight=args.contact_weight, volume_weight=args.volume_weight,
                                    volume_start=args.volume_start,
                                    flip_hypotheses=args.flip_hypotheses, flip_iterations=args.flip_iterations,
                                    flip_select=args.flip_select,
                                    **(dict(guided=args.guided, guided_at=args.guided_at, guided_t=args.guided_t,
                                            guided_steps=args.guided_steps,
                                            guided_inner=args.guided_inner, guided_step_size=args.guided_step_size,
                                            guided_invert=args.guided_invert)
                                       if name == "interhandgen" else {}),
                                    seed=args.seed)
        fitters[entry] = Fitter(module, mean, std, settings=settings)
    first = next(iter(fitters.values()))
    models = first.models
    faces = (models["left"].faces, models["right"].faces)
    y_world = vectors_from_set(data, models)
    g = torch.Generator().manual_seed(args.seed + 1)
    target = 0.5 * (y_world[:, 0, 61:] + y_world[:, 1, 61:])
    R, eye = random_cameras(target, spec, g)
    problems = build_problems(to_camera(y_world, R, eye), first.body, spec, args.seed)
    vol, contact = geometry(problems["_verts"], faces)
    results["data_level"] = {"penetration_volume_cm3": interval(vol), "contact_rate": interval(contact),
                             "occluded_joint_fraction": float(problems["_hidden"].float().mean())}
    print(json.dumps(results["data_level"]), flush=True)
    # Task-major order: a partial run still compares every prior on the first tasks.
    for task in tasks:
        for entry, fitter in fitters.items():
            obs = problems[task]
            if task == "d":
                init = set_from_vectors(problems["d"], models, data.hand_model)
                a = problems["a"]
                obs = Observations(keypoints_2d=a.keypoints_2d, confidence_2d=a.confidence_2d, intrinsics=a.intrinsics,
                                   image_size=a.image_size, initial=init)
            fitted, seconds = [], 0.0
            for s in range(0, len(data), args.batch):
                sl = slice(s, s + args.batch)
                part = Observations(
                    keypoints_2d=None if obs.keypoints_2d is None else obs.keypoints_2d[sl],
                    confidence_2d=None if obs.confidence_2d is None else obs.confidence_2d[sl],
                    keypoints_3d=None if obs.keypoints_3d is None else obs.keypoints_3d[sl],
                    confidence_3d=None if obs.confidence_3d is None else obs.confidence_3d[sl],
                    intrinsics=None if obs.intrinsics is None else obs.intrinsics[sl], image_size=obs.image_size,
                    initial=None if obs.initial is None else obs.initial[sl])
                t0 = time.perf_counter()
                res = fitter.fit(part, progress=False)
                seconds += time.perf_counter() - t0
                fitted.append(res.vectors)
            yf = torch.cat(fitted)
            with torch.no_grad():
                vp, jp = fitter.body.meshes(yf)
            vt, jt = problems["_verts"], problems["_joints"]
            mpjpe = root_aligned_error_mm(jp, jt, jp, jt).numpy()
            mpvpe = root_aligned_error_mm(vp, vt, jp, jt).numpy()
            vol, contact = geometry(vp, faces)
            row = {
                "mpjpe_mm": {"left": interval(mpjpe[:, 0]), "right": interval(mpjpe[:, 1]), "both": interval(mpjpe.mean(1))},
                "mpvpe_mm": {"left": interval(mpvpe[:, 0]), "right": interval(mpvpe[:, 1]), "both": interval(mpvpe.mean(1))},
                "mrrpe_mm": interval(mrrpe_mm(jp, jt).numpy()),
                "reprojection_px": interval(reprojection_px(jp, problems["_exact2d"], problems["_K"]).numpy()),
                "penetration_volume_cm3": interval(vol),
                "contact_rate": interval(contact),
                "flipped": interval(flipped_hands(yf, problems["_y"]).numpy()),
                "seconds_per_frame": seconds / len(data),
                "prior_weight": fitter.settings.prior_weight,
                "prior_weight_end": fitter.settings.prior_weight_end,
            }
            results["tasks"].setdefault(task, {})[entry] = row
            print(task, entry, json.dumps({k: (v["both"]["mean"] if "both" in v else v["mean"]) if isinstance(v, dict) else v
                                           for k, v in row.items()}), flush=True)
            if args.per_frame:
                row["per_frame"] = {"mpvpe_mm": mpvpe.tolist(), "mpjpe_mm": mpjpe.tolist(),
                                    "mrrpe_mm": mrrpe_mm(jp, jt).tolist(),
                                    "flipped": flipped_per_hand(yf, problems["_y"]).tolist()}
            payload = json.dumps(results, indent=1).encode()
            atomic_write(args.out, lambda fh: fh.write(payload))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
