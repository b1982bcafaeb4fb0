"""`interhandgen complete`: sample the partner of given hands (the conditional stage on its own)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from interhandgen.cli._sampling_opts import add_sampler_options

    p = sub.add_parser(
        "complete",
        help="sample the partner hand of given hands",
        description=(
            "For every pair in --given, keep the --side hand exactly and sample the other hand conditioned on it "
            "(classifier-free and anti-penetration guidance as in `sample`). A right hand is completed by "
            "mirroring it into a left hand, completing and mirroring back."
        ),
    )
    p.add_argument("--given", required=True, help="a .npz in the TwoHandSet format holding the given hands")
    p.add_argument("--side", choices=["left", "right"], required=True, help="which hand of each pair is given")
    p.add_argument("--out", required=True, help="output .npz with the completed pairs")
    add_sampler_options(p)
    p.add_argument("--render", default=None, help="also write a PNG grid of (up to 16) completed pairs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interhandgen.cli._sampling_opts import DEFAULTS, settings_from_args
    from interhandgen.data.format import TwoHandSet
    from interhandgen.generation import InterHandGen

    from interhandgen.io_guard import Out, check_outputs

    check_outputs({"--out": Out(args.out, (".npz",)), "--render": Out(args.render, (".png",))},
                  {"--given": args.given, "--checkpoint": args.checkpoint})
    settings = settings_from_args(args, DEFAULTS.apg_weight)
    given = TwoHandSet.load(args.given)
    gen = InterHandGen.load(args.checkpoint, device=args.device, hand_model=given.hand_model)
    done = gen.complete(given, side=args.side, seed=args.seed, settings=settings, batch_size=args.batch_size,
                        progress=not args.no_progress)
    out = done.save(args.out)
    print(f"wrote {len(done)} completed pairs to {out}")
    if args.render:
        from interhandgen.viz import render

        render(done[: min(16, len(done))], out_path=args.render)
        print(f"wrote {args.render}")
    return 0
