"""`interhandgen render`: a PNG grid of two-hand samples from a TwoHandSet .npz."""

from __future__ import annotations

import argparse

from interhandgen.cli._args import positive_int
from interhandgen.exceptions import InputError


def register(sub) -> None:
    p = sub.add_parser(
        "render",
        help="render two-hand samples (.npz) to a PNG grid (headless)",
        description=(
            "Render samples of a TwoHandSet .npz as a grid: one cell per sample with its views side by side "
            "(left hand blue, right hand orange), titled with the sample index and its category when the set "
            "has categories; a set with objects draws each pair's object too (green). Software rasteriser: no display "
            "or OpenGL needed."
        ),
    )
    p.add_argument("--samples", required=True, help="TwoHandSet .npz (from sample, data synth or data convert)")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--num", type=positive_int, default=16,
                   help="samples to draw; all if the set is smaller (default %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random choice of samples when the set has more than --num (default %(default)s)")
    p.add_argument("--first", action="store_true", help="draw the first --num samples instead of a random choice")
    p.add_argument("--cols", type=positive_int, default=4, help="cells per row (default %(default)s)")
    p.add_argument("--views", default="front,top",
                   help="comma-separated views from front, top, side, back (default %(default)s)")
    p.add_argument("--view-size", type=positive_int, default=256, help="pixels per view (default %(default)s)")
    p.add_argument("--shading", choices=["gouraud", "flat"], default="gouraud")
    p.add_argument("--no-titles", action="store_true", help="no title strip above the cells")
    p.add_argument("--mano-dir", default=None, help="MANO folder, for MANO sets that record no model files")
    p.add_argument("--device", default="cpu", help="where to pose and rasterise (default %(default)s)")
    p.set_defaults(func=run)


def pick_samples(n: int, num: int, seed: int, first: bool):
    """Sorted indices of the samples to draw."""
    import numpy as np

    if num < 1:
        raise InputError(f"--num must be >= 1, got {num}")
    if n == 0:
        raise InputError("the sample file holds no samples")
    if num >= n:
        return np.arange(n)
    if first:
        return np.arange(num)
    return np.sort(np.random.default_rng(seed).choice(n, size=num, replace=False))


def run(args: argparse.Namespace) -> int:
    from interhandgen.data.format import HandModelSpec, TwoHandSet
    from interhandgen.viz import render

    from interhandgen.io_guard import Out, check_outputs
    from interhandgen.limits import check_view_size

    check_outputs({"--out": Out(args.out, (".png",))}, {"--samples": args.samples})
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    samples = TwoHandSet.load(args.samples)
    if args.mano_dir:
        if samples.hand_model.kind != "mano":
            raise InputError("--mano-dir given but the set uses the open hand")
        samples = samples.with_hand_model(
            HandModelSpec.mano(args.mano_dir, fix_left_shapedirs=samples.hand_model.fix_left_shapedirs))
    pick = pick_samples(len(samples), args.num, args.seed, args.first)
    check_view_size(args.view_size, len(pick), max(len(views), 1), args.cols)
    chosen = samples[pick]
    titles = None
    if not args.no_titles:
        cats, names = chosen.category, chosen.category_names
        titles = [f"#{i}" + (f" {names[c]}" if cats is not None else "") for i, c in
                  zip(pick.tolist(), cats.tolist() if cats is not None else [None] * len(pick))]
    if chosen.object_library is not None:  # a set with objects: the object in a third colour (green)
        from interhandgen.objects.cli import render_with_objects

        if titles is not None:
            lib = chosen.object_library
            titles = [f"{t} {lib.families[int(k)]}" for t, k in zip(titles, chosen.object_id.tolist())]
        image = render_with_objects(chosen, chosen.hand_models(device=args.device), args.out, cols=args.cols,
                                    titles=titles, views=views, view_size=args.view_size, shading=args.shading)
    else:
        image = render(chosen, titles=titles, cols=args.cols, views=views, view_size=args.view_size,
                       shading=args.shading, out_path=args.out, device=args.device)
    print(f"wrote {args.out}: {len(pick)} of {len(samples)} samples, {image.width}x{image.height} pixels")
    return 0
