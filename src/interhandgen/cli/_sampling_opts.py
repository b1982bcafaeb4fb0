"""Options shared by `sample` and `complete`."""

from __future__ import annotations

import argparse

from interhandgen.cli._args import positive_int
from interhandgen.diffusion import SOLVERS
from interhandgen.generation.cascade import OBJECT_TEMPERATURE, SamplerSettings
from interhandgen.exceptions import InputError

DEFAULTS = SamplerSettings()


def add_sampler_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampler")
    g.add_argument("--checkpoint", default=None,
                   help="model: a run folder, checkpoint.pt or model.safetensors (default: the bundled model)")
    g.add_argument("--mano-dir", default=None,
                   help="folder with the MANO_RIGHT.pkl / MANO_LEFT.pkl a MANO-trained model was trained with "
                        "(their SHA-256 are checked against the model file)")
    g.add_argument("--seed", type=int, default=0, help="random seed (same seed, same machine: same output)")
    g.add_argument("--steps", type=positive_int, default=DEFAULTS.steps, help="number of DDIM steps (default %(default)s)")
    g.add_argument("--anchor-steps", type=positive_int, default=None,
                   help=f"DDIM steps of the anchor stage alone (default: {DEFAULTS.anchor_steps} for the two-hand "
                        "model, --steps with an object; docs/prior_experiments.md)")
    g.add_argument("--eta", type=float, default=DEFAULTS.eta, help="DDIM eta: 0 deterministic, 1 ancestral")
    g.add_argument("--temperature", type=float, default=None,
                   help=f"scale of every Gaussian draw of the reverse process, the initial noise included (default: "
                        f"{DEFAULTS.temperature:g}, the model's own distribution, for the two-hand models; "
                        f"{OBJECT_TEMPERATURE:g} with an object, docs/results_object.md); below 1 the samples gather "
                        "nearer the modes, with less spread (docs/diffusion.md)")
    g.add_argument("--anchor-solver", choices=list(SOLVERS), default=None,
                   help=f"solver of the two-hand model's anchor stage (default: {DEFAULTS.anchor_solver} with eta 0 or "
                        "1 and the ddim update, else ddim; dpmpp2m = DPM-Solver++(2M), docs/diffusion.md)")
    g.add_argument("--cfg-scale", type=float, default=DEFAULTS.cfg_scale,
                   help="classifier-free guidance scale w on the relative rotation/translation: "
                        "x0 = c + w (c - u) (default %(default)s)")
    apg = g.add_mutually_exclusive_group()
    apg.add_argument("--apg-weight", type=float, default=None,
                     help="anti-penetration guidance step weight (default: the model's recommended value)")
    apg.add_argument("--no-apg", action="store_true", help="disable anti-penetration guidance")
    g.add_argument("--apg-points", type=positive_int, default=DEFAULTS.apg_points,
                   help="surface points per hand that the guidance tests (default %(default)s)")
    g.add_argument("--apg-iters", type=positive_int, default=DEFAULTS.apg_iters,
                   help="guidance (Polyak) steps per guided reverse step (default %(default)s)")
    g.add_argument("--contact-weight", type=float, default=DEFAULTS.contact_weight,
                   help="weight of the contact (attraction) guidance term for pairs closer than "
                        "--contact-attract-mm but not touching (default %(default)s: off; see docs/guidance.md)")
    g.add_argument("--contact-attract-mm", type=float, default=DEFAULTS.contact_attract_mm,
                   help="the contact guidance pulls pairs closer than this (mm) into touch (default %(default)s)")
    g.add_argument("--apg-proxy-weight", type=float, default=DEFAULTS.apg_proxy_weight,
                   help="weight of the inscribed-sphere overlap term in the guidance (deep overlaps; default "
                        "%(default)s: off)")
    g.add_argument("--settle-steps", type=int, default=DEFAULTS.settle_steps,
                   help="contact settling after the last step: rigid optimisation steps of the second hand for pairs "
                        "closer than --settle-attract-mm (default %(default)s; 0 disables it, see "
                        "interhandgen.generation.settle)")
    g.add_argument("--settle-attract-mm", type=float, default=DEFAULTS.settle_attract_mm,
                   help="pairs closer than this (mm) are settled into touch without penetration (default %(default)s)")
    g.add_argument("--resample-rounds", type=int, default=DEFAULTS.resample_rounds,
                   help="partners still interpenetrating after settling are sampled again, up to this many times "
                        "(default %(default)s; 0 disables it)")
    g.add_argument("--update", choices=["ddim", "reference"], default="ddim",
                   help="reverse update: standard DDIM, or the reference code's variant (compatibility)")
    g.add_argument("--batch-size", type=positive_int, default=2500, help="pairs per batch (default %(default)s)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def temperature_of(args: argparse.Namespace, default: float = DEFAULTS.temperature) -> float:
    """``--temperature``, or the model kind's default when it was not given (``OBJECT_TEMPERATURE`` with an object)."""
    return default if args.temperature is None else args.temperature


def settings_from_args(args: argparse.Namespace, default_apg_weight: float) -> SamplerSettings:
    if args.no_apg:
        apg = 0.0
    elif args.apg_weight is None:
        apg = default_apg_weight
    else:
        apg = args.apg_weight
    anchor_steps = DEFAULTS.anchor_steps if args.anchor_steps is None else args.anchor_steps
    solver = args.anchor_solver
    if solver is None:  # the second-order solver exists for eta 0 or 1 and the ddim update only
        solver = DEFAULTS.anchor_solver if (args.eta in (0.0, 1.0) and args.update == "ddim") else "ddim"
    s = SamplerSettings(steps=args.steps, anchor_steps=anchor_steps, eta=args.eta,
                        temperature=temperature_of(args),
                        cfg_scale=args.cfg_scale,
                        apg_weight=apg, update=args.update, anchor_solver=solver,
                        settle_steps=args.settle_steps, settle_attract_mm=args.settle_attract_mm,
                        resample_rounds=args.resample_rounds, apg_points=args.apg_points, apg_iters=args.apg_iters,
                        contact_weight=args.contact_weight, contact_attract_mm=args.contact_attract_mm,
                        apg_proxy_weight=args.apg_proxy_weight)
    from interhandgen.limits import CFG_SCALE_MAX, check_range

    check_range("--cfg-scale", args.cfg_scale, 0.0, CFG_SCALE_MAX)
    s.validate()
    return s


def hand_model_from_args(args: argparse.Namespace, model):
    """The hand model given by ``--mano-dir`` for a loaded model (its shapedirs flag from the model's record), or
    None (the model's own: the open hand, or an error naming the MANO files a MANO-trained model needs)."""
    if args.mano_dir is None:
        return None
    from interhandgen.data.format import HandModelSpec

    rec = model.artifact.hand_model if model.artifact is not None else None
    fix = bool(rec["fix_left_shapedirs"]) if rec is not None and rec["kind"] == "mano" else True
    return HandModelSpec.mano(args.mano_dir, fix_left_shapedirs=fix)
