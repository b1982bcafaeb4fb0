"""Which energy picks the right depth-flip candidate? A direct diagnostic on task a of benchmarks/fitting.py.

Each frame's 4 depth-flip combinations (``FitSettings.flip_hypotheses``) are fitted side by side through stage 1
and ALL of stage 2 (the selection is put off to the last iteration), and the candidates are recorded at the
stage-2 iterations of --record (so the fingers have adapted to each hypothesis). Every recorded candidate is scored
by: the data term; the fit's own stage-2 energy (what ``Fitter.select`` uses); the cascaded diffusion prior's
ELBO estimate of -log p (``DiffusionPrior.elbo_terms``: --elbo-steps timesteps over --elbo-range with the ELBO's
weights, --elbo-draws noises shared by the 4 candidates of a frame), whole and split into the anchor term, the
partner's fingers and shape, and the partner's relative placement (R_rel, t_rel); the per-timestep denoising
residuals; the Gaussian and VAE priors' values; and the gap between the hands (closest surface samples: the data's
hands touch). A candidate is right when both hands are within 45 degrees of
the true rotation. Reported: how often each rule (argmin of a score, data + lambda x score over a lambda grid)
keeps a right candidate, against keeping the unflipped one and the oracle, judged both at the iteration of the
scores ("now") and at the last recorded iteration ("final": what the fit would end with had it chosen then).

A check on the true pairs first (--truth-frames): the 4 flip combinations of each TRUE pair (right = the truth),
scored by the ELBO as they are, with the right hand moved along its viewing ray (a depth error) or every pose
number noised by a multiple of the data's standard deviation (finger errors), and with both hands' fingers and
shapes replaced by the data's mean (the relative placement alone): where the prior's knowledge of the flip lies.

    python benchmarks/fitting_flip_choice.py --data data/synth6k.npz --split validation --num 64 \
        --vae-checkpoint runs/vae --fit-priors interhandgen,none --out flip_choice.json

Use the validation split (the choice rule and lambda are tuned here, never on the test frames).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fitting import build_problems  # noqa: E402  (the benchmark's own problems: same cameras and corruption)

from interhandgen._atomic import atomic_write  # noqa: E402
from interhandgen.data.format import TwoHandSet  # noqa: E402
from interhandgen.fitting import Fitter, Observations, canonical_from_camera, default_settings, make_prior, vectors_from_set  # noqa: E402
from interhandgen.fitting.fit import data_terms, flip_candidates  # noqa: E402
from interhandgen.fitting.priors import elbo_grid  # noqa: E402
from interhandgen.fitting.synthetic import CameraSpec, random_cameras, to_camera  # noqa: E402
from interhandgen.rotations import rot6d_to_matrix  # noqa: E402

FLIPS = 4


class RecordingFitter(Fitter):
    """A Fitter that keeps copies of the candidates (and the energies the fit sees) at chosen stage-2 iterations."""

    def __init__(self, *args, record: tuple[int, ...], **kw) -> None:
        super().__init__(*args, **kw)
        self.record = set(record)
        self.rows = -1
        self.captured: dict[int, torch.Tensor] = {}

    def energy(self, y, obs, progress, generator, init_joints=None, radii=None, candidates=1):
        out = super().energy(y, obs, progress, generator, init_joints, radii, candidates)
        n2 = self.settings.iterations - int(round(self.settings.iterations * self.settings.global_fraction))
        it = int(round(progress * max(n2 - 1, 1)))
        if y.requires_grad and y.shape[0] == self.rows and it in self.record and it not in self.captured:
            self.captured[it] = y.detach().clone()
        return out


def rotation_error_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[...] angle between the rotations of vectors a and b [..., 64] (degrees)."""
    rel = rot6d_to_matrix(a[..., 55:61]).transpose(-1, -2) @ rot6d_to_matrix(b[..., 55:61])
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))


def accuracy(score: np.ndarray, right: np.ndarray) -> float:
    """Share of frames whose lowest-score candidate is right; score, right [N, 4]."""
    return float(right[np.arange(len(score)), score.argmin(1)].mean())


def truth_check(diff, mean, std, fitter, truth, steps, weights, draws, generator) -> dict:
    """ELBO choice accuracy on the 4 flip combinations of true camera-frame pairs [N, 2, 64] (see the docstring)."""
    N = truth.shape[0]
    noise = torch.randn((draws, N, 1, 2, 64), generator=generator).expand(-1, -1, FLIPS, -1, -1)
    noise = noise.reshape(draws, N * FLIPS, 2, 64)
    sign = torch.where(torch.rand(N, generator=generator) < 0.5, -1.0, 1.0)
    pose_noise = torch.randn(N, 2, 45, generator=generator)
    out = {}
    for depth_cm, pose_sd in ((0, 0.0), (2, 0.0), (5, 0.0), (10, 0.0), (0, 0.5), (0, 1.0), (0, 2.0), (5, 1.0)):
        y = truth.clone()
        y[:, 1, 61:] += torch.nn.functional.normalize(y[:, 1, 61:], dim=-1) * (sign * depth_cm / 100.0)[:, None]
        y[:, :, :45] += pose_sd * std[:, :45] * pose_noise
        cand = flip_candidates(y, torch.ones(N, 2, dtype=torch.bool), fitter.palm_normals).reshape(N * FLIPS, 2, 64)
        x = canonical_from_camera(cand)
        mean_fingers = x.clone()
        mean_fingers[:, :, :55] = mean[:, :55]
        row = {}
        for name, xs in (("as_is", x), ("mean_fingers", mean_fingers)):
            terms = diff.elbo_terms(xs, steps, weights, noise).view(N, FLIPS, 2, 64)
            row[f"elbo_{name}"] = float((terms.sum((2, 3)).argmin(1) == 0).double().mean())
            row[f"elbo_placement_{name}"] = float((terms[:, :, 1, 55:].sum(-1).argmin(1) == 0).double().mean())
        out[f"depth_{depth_cm}cm_pose_{pose_sd}std"] = row
        print("truth check", depth_cm, "cm", pose_sd, "std", json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="validation")
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--fit-priors", default="interhandgen", help="priors the candidates are fitted with")
    ap.add_argument("--vae-checkpoint", default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--record", default="0,30,60,100,138",
                    help="stage-2 iterations at which candidates are scored (before the last one, where the choice is made)")
    ap.add_argument("--elbo-steps", type=int, default=24)
    ap.add_argument("--elbo-draws", type=int, default=4)
    ap.add_argument("--elbo-range", default="0.02,0.6")
    ap.add_argument("--truth-frames", type=int, default=256, help="true pairs of the truth check (0: skip it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scores", default=None, help="optional .npz of every candidate's scores")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    record = tuple(int(v) for v in args.record.split(","))
    t_range = tuple(float(v) for v in args.elbo_range.split(","))

    data = TwoHandSet.load(args.data).select_split(args.split)[: args.num]
    diff, mean, std = make_prior("interhandgen", args.checkpoint)
    scorers = {"gaussian": make_prior("gaussian", args.checkpoint)[0]}
    if args.vae_checkpoint:
        scorers["vae"] = make_prior("vae", args.vae_checkpoint)[0]
    steps, weights = elbo_grid(diff.sqrt_abar.double() ** 2, t_range, args.elbo_steps)
    probe = Fitter(diff, mean, std)
    y_world = vectors_from_set(data, probe.models)
    spec = CameraSpec()
    g = torch.Generator().manual_seed(args.seed + 1)
    R, eye = random_cameras(0.5 * (y_world[:, 0, 61:] + y_world[:, 1, 61:]), spec, g)
    problems = build_problems(to_camera(y_world, R, eye), probe.body, spec, args.seed)
    truth = problems["_y"]
    obs_all = problems["a"]
    results = {"settings": vars(args), "elbo_timesteps": steps.tolist(), "elbo_weights": weights.tolist(), "fits": {}}
    if args.truth_frames:
        more = TwoHandSet.load(args.data).select_split(args.split)[: args.truth_frames]
        yw = vectors_from_set(more, probe.models)
        gt = torch.Generator().manual_seed(args.seed + 3)
        Rt, et = random_cameras(0.5 * (yw[:, 0, 61:] + yw[:, 1, 61:]), spec, gt)
        results["truth_check"] = truth_check(diff, mean, std, probe, to_camera(yw, Rt, et), steps, weights,
                                             args.elbo_draws, gt)
    arrays = {}
    for prior_name in args.fit_priors.split(","):
        module, pm, ps = (diff, mean, std) if prior_name == "interhandgen" else make_prior(
            prior_name, args.vae_checkpoint if prior_name == "vae" else args.checkpoint)
        settings = default_settings(prior_name, iterations=args.iterations, flip_hypotheses=True,
                                    flip_iterations=10 ** 6, seed=args.seed)  # the choice at the last iteration
        fitter = RecordingFitter(module, pm, ps, settings=settings, record=record)
        per_it: dict[int, dict[str, list]] = {it: {} for it in record}
        t0 = time.perf_counter()
        for s in range(0, len(data), args.batch):
            sl = slice(s, s + args.batch)
            obs = Observations(keypoints_2d=obs_all.keypoints_2d[sl], confidence_2d=obs_all.confidence_2d[sl],
                               intrinsics=obs_all.intrinsics[sl], image_size=obs_all.image_size)
            B = truth[sl].shape[0]
            fitter.rows, fitter.captured = B * FLIPS, {}
            fitter.fit(obs, progress=False)
            obs4 = fitter._expand(obs, FLIPS)
            gen = torch.Generator().manual_seed(args.seed + 7 + s)
            noise = torch.randn((args.elbo_draws, B, 1, 2, 64), generator=gen).expand(-1, -1, FLIPS, -1, -1)
            noise = noise.reshape(args.elbo_draws, B * FLIPS, 2, 64)
            for it, y in fitter.captured.items():
                cols = per_it[it]
                x = canonical_from_camera(y)
                err = rotation_error_deg(y, truth[sl].repeat_interleave(FLIPS, 0)).view(B, FLIPS, 2)
                with torch.no_grad():
                    data_e = data_terms(fitter.body.joints(y), obs4, settings).sum(1)
                    progress = it / max(settings.iterations - int(round(settings.iterations * settings.global_fraction)) - 1, 1)
                    total = fitter.energy(y, obs4, progress, gen, candidates=FLIPS)["total"]
                    per_t = torch.stack([diff.elbo_terms(x, steps[k:k + 1], torch.ones(1, dtype=torch.float64), noise)
                                         for k in range(len(steps))], 1)  # [B 4, K, 2, 64], unweighted
                    terms = (per_t * weights.to(per_t)[None, :, None, None]).sum(1)
                    extra = {name: m(x) for name, m in scorers.items()}
                    _, surface = fitter.body.joints_and_surface(y)
                    gap = torch.cdist(surface[0], surface[2]).flatten(1).min(1).values
                add = lambda key, v: cols.setdefault(key, []).append(v.reshape(B, FLIPS, *v.shape[1:]).double().numpy())  # noqa: E731
                add("max_rotation_error", err.amax(-1).reshape(B * FLIPS))
                add("data", data_e)
                add("fit_total", total)
                add("elbo", terms.sum((1, 2)))
                add("elbo_anchor", terms[:, 0].sum(1))
                add("elbo_partner", terms[:, 1].sum(1))
                add("elbo_partner_fingers", terms[:, 1, :55].sum(1))
                add("elbo_partner_placement", terms[:, 1, 55:].sum(1))
                add("hand_gap", gap)
                add("residual_per_t", per_t.sum((2, 3)))
                add("residual_placement_per_t", per_t[:, :, 1, 55:].sum(2))
                for name, v in extra.items():
                    add(name, v.detach())
        seconds = time.perf_counter() - t0
        fit_out = {"seconds": seconds, "iterations": {}}
        last = max(it for it, cols in per_it.items() if cols)
        final_right = np.concatenate(per_it[last]["max_rotation_error"]) < 45.0
        for it, cols in per_it.items():
            if not cols:
                continue
            a = {k: np.concatenate(v) for k, v in cols.items()}
            right = a["max_rotation_error"] < 45.0
            for k, v in a.items():
                arrays[f"{prior_name}_{it}_{k}"] = v
            decisive = right.any(1) & ~right.all(1)
            row = {"frames": int(len(right)), "decisive_frames": int(decisive.sum()),
                   "keep_unflipped": float(right[:, 0].mean()), "oracle": float(right.any(1).mean())}
            for key in ("data", "fit_total", "elbo", "elbo_anchor", "elbo_partner", "elbo_partner_fingers",
                        "elbo_partner_placement", "hand_gap", *scorers):
                row[key] = accuracy(a[key], right)
            for k, t in enumerate(steps.tolist()):
                row[f"residual_t{t}"] = accuracy(a["residual_per_t"][..., k], right)
                row[f"residual_placement_t{t}"] = accuracy(a["residual_placement_per_t"][..., k], right)
            lambdas = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
            for key in ("elbo", "elbo_partner", "elbo_partner_placement", "hand_gap", *scorers):
                # Each score is brought to a common scale first: its median spread between a frame's candidates.
                spread = float(np.median(a[key].max(1) - a[key].min(1))) or 1.0
                dspread = float(np.median(a["data"].max(1) - a["data"].min(1))) or 1.0
                row[f"data+lambda*{key}"] = {lam: accuracy(a["data"] / dspread + lam * a[key] / spread, right)
                                             for lam in lambdas}
            # Judged by what the candidates become: right at the last recorded iteration.
            row["final"] = {"keep_unflipped": float(final_right[:, 0].mean()), "oracle": float(final_right.any(1).mean()),
                            **{key: accuracy(a[key], final_right) for key in
                               ("data", "fit_total", "elbo", "elbo_partner", "elbo_partner_placement", "hand_gap",
                                *scorers)}}
            fit_out["iterations"][str(it)] = row
            print(prior_name, it, json.dumps({k: v for k, v in row.items() if not k.startswith("residual")}), flush=True)
        results["fits"][prior_name] = fit_out
        payload = json.dumps(results, indent=1).encode()
        atomic_write(args.out, lambda fh: fh.write(payload))
        if args.scores:
            np.savez(args.scores, **arrays)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
