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
    p.add_argument("--meshes", default=None, help="with an object: also write each pair's meshes (.ply) here")
    from interhandgen.cli.sample_object import add_object_options

    add_object_options(p, families=False)
    p.add_argument("--ignore-object", action="store_true",
                   help="complete with the two-hand model even when --given holds objects")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interhandgen.cli._sampling_opts import DEFAULTS, settings_from_args
    from interhandgen.data.format import TwoHandSet
    from interhandgen.generation import InterHandGen

    from interhandgen.io_guard import Out, check_outputs

    check_outputs({"--out": Out(args.out, (".npz",)), "--render": Out(args.render, (".png",)),
                   "--meshes": Out(args.meshes, folder=True)},
                  {"--given": args.given, "--checkpoint": args.checkpoint, "--object": args.object})
    settings = settings_from_args(args, DEFAULTS.apg_weight)
    given = TwoHandSet.load(args.given)
    if args.object or (given.object_library is not None and not args.ignore_object):
        return _complete_with_object(args, settings, given)
    if args.meshes:
        from interhandgen.exceptions import InputError

        raise InputError("--meshes: available for completion with an object (the two-hand files: use sample)")
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


def _complete_with_object(args: argparse.Namespace, settings, given) -> int:
    """Completion conditioned on each pair's object (from --given's object library, or --object for all pairs)."""
    import numpy as np

    from interhandgen.cli._sampling_opts import DEFAULTS
    from interhandgen.cli.sample_object import (load_object_generator, object_sampler_settings,
                                                object_settings_from_args, write_object_extras)
    from interhandgen.exceptions import InputError
    from interhandgen.generation.object_api import user_object

    if args.ignore_object:
        raise InputError("--ignore-object and --object contradict each other")
    settings = object_sampler_settings(args, settings, DEFAULTS)
    if args.object:
        scene = user_object(args.object)
        n = len(given)
        given = given._replace(object_library=scene.library, object_pose=np.repeat(scene.object_pose, n, 0),
                               object_id=np.zeros(n, dtype=np.int64), object_names=scene.library.names)
    gen = load_object_generator(args, hand_model=given.hand_model)
    done = gen.complete(given, side=args.side, seed=args.seed, settings=settings,
                        object_settings=object_settings_from_args(args), batch_size=args.batch_size,
                        progress=not args.no_progress)
    out = done.save(args.out)
    print(f"wrote {len(done)} completed pairs with their objects to {out}")
    write_object_extras(done, gen.hands, args)
    return 0
