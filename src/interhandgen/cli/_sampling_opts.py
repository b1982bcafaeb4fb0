"""Options shared by `sample` and `complete`."""

from __future__ import annotations

import argparse

from interhandgen.sampling import SamplerSettings

DEFAULTS = SamplerSettings()


def add_sampler_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampler")
    g.add_argument("--checkpoint", default=None,
                   help="model: a run folder, checkpoint.pt or model.safetensors (default: the bundled model)")
    g.add_argument("--seed", type=int, default=0, help="random seed (same seed, same machine: same output)")
    g.add_argument("--steps", type=int, default=DEFAULTS.steps, help="number of DDIM steps (default %(default)s)")
    g.add_argument("--eta", type=float, default=DEFAULTS.eta, help="DDIM eta: 0 deterministic, 1 ancestral")
    g.add_argument("--cfg-scale", type=float, default=DEFAULTS.cfg_scale,
                   help="classifier-free guidance scale w on the relative rotation/translation: "
                        "x0 = c + w (c - u) (default %(default)s)")
    apg = g.add_mutually_exclusive_group()
    apg.add_argument("--apg-weight", type=float, default=None,
                     help="anti-penetration guidance step weight (default: the model's recommended value)")
    apg.add_argument("--no-apg", action="store_true", help="disable anti-penetration guidance")
    g.add_argument("--settle-steps", type=int, default=DEFAULTS.settle_steps,
                   help="contact settling after the last step: rigid optimisation steps of the second hand for pairs "
                        "closer than --settle-attract-mm (default %(default)s; 0 disables it, see "
                        "interhandgen.guidance.settle)")
    g.add_argument("--settle-attract-mm", type=float, default=DEFAULTS.settle_attract_mm,
                   help="pairs closer than this (mm) are settled into touch without penetration (default %(default)s)")
    g.add_argument("--resample-rounds", type=int, default=DEFAULTS.resample_rounds,
                   help="partners still interpenetrating after settling are sampled again, up to this many times "
                        "(default %(default)s; 0 disables it)")
    g.add_argument("--update", choices=["ddim", "reference"], default="ddim",
                   help="reverse update: standard DDIM, or the reference code's variant (compatibility)")
    g.add_argument("--batch-size", type=int, default=2500, help="pairs per batch (default %(default)s)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def settings_from_args(args: argparse.Namespace, default_apg_weight: float) -> SamplerSettings:
    if args.no_apg:
        apg = 0.0
    elif args.apg_weight is None:
        apg = default_apg_weight
    else:
        apg = args.apg_weight
    s = SamplerSettings(steps=args.steps, eta=args.eta, cfg_scale=args.cfg_scale, apg_weight=apg, update=args.update,
                        settle_steps=args.settle_steps, settle_attract_mm=args.settle_attract_mm,
                        resample_rounds=args.resample_rounds)
    s.validate()
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    return s

