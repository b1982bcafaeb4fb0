"""`interhandgen data`: convert licensed data sets, summarise a two-hand set, generate the synthetic set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interhandgen.cli._args import positive_int
from interhandgen.exceptions import InputError


def register(sub) -> None:
    p = sub.add_parser(
        "data",
        help="two-hand data: convert InterHand2.6M / IntagHand / ARCTIC, statistics, synthetic data",
        description="Two-hand data in the TwoHandSet .npz format (docs/data.md).",
    )
    data_sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.required = True

    c = data_sub.add_parser(
        "convert",
        help="convert a licensed data set (InterHand2.6M json, IntagHand anno pkl, ARCTIC raw_seqs) to .npz",
        description=(
            "Exact conversion of licensed two-hand data (not distributed with interhandgen) to the TwoHandSet "
            ".npz. Frames without both hands are counted and left out; malformed records stop the conversion "
            "with an error naming the file and record, or with --skip-bad are skipped and counted. The summary "
            "is printed and stored in the file's metadata."
        ),
    )
    c.add_argument("--format", required=True, choices=["interhand-json", "intaghand", "arctic"],
                   help="interhand-json: InterHand2.6M_{split}_MANO_NeuralAnnot.json; intaghand: IntagHand's "
                        "preprocessed anno/*.pkl (a file, anno/ folder, split folder or root with train/val/test); "
                        "arctic: ARCTIC raw_seqs/ (or a subject folder or one <seq>.mano.npy)")
    c.add_argument("input", help="input file or folder")
    c.add_argument("--out", required=True, help="output .npz")
    c.add_argument("--mano-dir", default=None,
                   help="folder with MANO_RIGHT.pkl and MANO_LEFT.pkl (mano_v1_2/models) to record with the data")
    c.add_argument("--skip-bad", action="store_true", help="skip malformed records (counted) instead of stopping")
    c.add_argument("--unique-frames", action="store_true",
                   help="intaghand: keep one record per (capture, frame) instead of one per camera view")
    c.add_argument("--no-objects", action="store_true", help="arctic: do not read <seq>.object.npy")
    c.add_argument("--object-templates", default=None,
                   help="arctic: ARCTIC's meta/object_vtemplates/ folder; stores the object meshes as an object "
                        "library (one entry per object and articulation angle, docs/data.md)")
    c.add_argument("--float64", action="store_true", help="store float64 arrays (default float32)")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=run_convert)

    s = data_sub.add_parser(
        "stats",
        help="counts per category/split/object and contact/penetration statistics of a two-hand set",
        description=(
            "Prints the number of samples per category, split and object, and per category the minimum distance "
            "between the hands, the fast penetration depth and the proximity ratio (on up to --max-samples "
            "random samples), and the exact penetration volume (on up to --volume-samples). With --out, writes "
            "stats.json and samples.png (a grid of random samples)."
        ),
    )
    s.add_argument("data", help="TwoHandSet .npz")
    s.add_argument("--out", default=None, help="folder for stats.json and samples.png")
    s.add_argument("--mano-dir", default=None, help="MANO folder, for MANO sets that record no model files")
    s.add_argument("--max-samples", type=positive_int, default=2000, help="samples for distance/depth statistics (default %(default)s)")
    s.add_argument("--volume-samples", type=int, default=200,
                   help="samples for the exact penetration volume; 0 skips it (default %(default)s)")
    s.add_argument("--no-geometry", action="store_true", help="counts only")
    s.add_argument("--no-png", action="store_true", help="with --out, do not render samples.png")
    s.add_argument("--seed", type=int, default=0, help="seed of the random subsets (default %(default)s)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=run_stats)

    g = data_sub.add_parser(
        "synth",
        help="generate the synthetic two-hand interaction set (open hand)",
        description="Generate the synthetic two-hand set (interhandgen.data.synth; see docs/synth.md).",
    )
    g.add_argument("--num", type=positive_int, required=True, help="number of two-hand samples (spread evenly over the categories)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", required=True, help="output .npz")
    g.add_argument("--device", default="cpu")
    g.add_argument("--batch-size", type=positive_int, default=256, help="samples optimised together (default %(default)s)")
    g.add_argument("--splits", default="0.8,0.1,0.1",
                   help="fractions of train,validation,test summing to 1 (default %(default)s)")
    g.add_argument("--categories", default=None, help="comma-separated category names (default: all)")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="CPU worker processes (default: one per core for large sets; the arrays do not depend on it)")
    g.add_argument("--no-resume", action="store_true",
                   help="do not keep finished chunks in <out>.parts/, and remove such a folder left by an earlier run "
                        "(by default an interrupted run continues from there, damaged chunks are computed again, and "
                        "the folder is removed after the output is written)")
    g.add_argument("--objects", action="store_true",
                   help="generate the bimanual hand-object set instead (interhandgen.objects; docs/objects.md)")
    g.add_argument("--no-physics-filter", action="store_true",
                   help="with --objects: keep grasps that fail the MuJoCo stability test (default: rejected)")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=run_synth)
    s.add_argument("--object-samples", type=int, default=200,
                   help="sets with objects: pairs for the hand-object metrics and the MuJoCo stability test "
                        "(default %(default)s); 0 skips them")


# ---------------------------------------------------------------------------------------------------------------------
def run_convert(args: argparse.Namespace) -> int:
    import numpy as np

    from interhandgen.data.convert import convert

    options = {"dtype": np.float64 if args.float64 else np.float32}
    if args.unique_frames:
        if args.format != "intaghand":
            raise InputError("--unique-frames applies to --format intaghand only")
        options["unique_frames"] = True
    if args.no_objects:
        if args.format != "arctic":
            raise InputError("--no-objects applies to --format arctic only")
        options["include_objects"] = False
    if args.object_templates is not None:
        if args.format != "arctic" or args.no_objects:
            raise InputError("--object-templates applies to --format arctic without --no-objects only")
        options["object_templates"] = args.object_templates
    from interhandgen.io_guard import Out, check_outputs

    out = Path(args.out)
    check_outputs({"--out": Out(out, (".npz",))}, {"input": args.input, "--object-templates": args.object_templates})
    two_hands, summary = convert(args.format, args.input, out, mano_dir=args.mano_dir, skip_bad=args.skip_bad,
                                 progress=not args.no_progress, **options)
    print(summary)
    print(f"wrote {len(two_hands)} two-hand samples to {out}")
    return 0


def _print_stats(stats: dict) -> None:
    print(f"{stats['samples']} samples, pose_space={stats['pose_space']}, flat_hand_mean={stats['flat_hand_mean']}, "
          f"hand_model={stats['hand_model']}")
    for key, title in (("per_split", "split"), ("per_category", "category"), ("per_object_id", "object")):
        if key in stats:
            print(f"per {title}:")
            for name, count in stats[key].items():
                print(f"  {name:<24s} {count:>9d}")
    geo = stats.get("geometry")
    if geo:
        print(f"geometry on {geo['evaluated_samples']} samples (volume on {geo['volume_samples']}), "
              f"proximity threshold {geo['proximity_threshold_mm']:.1f} mm:")
        print(f"  {'group':<24s} {'n':>6s} {'min dist mm':>12s} {'depth mm':>9s} {'pen. frac':>9s} {'prox':>6s} {'vol cm3':>8s}")
        for name, g in geo["per_group"].items():
            vol = g["penetration_volume_cm3"]
            print(f"  {name:<24s} {g['n']:>6d} {g['min_distance_mm']['mean']:>12.2f} {g['penetration_depth_mm']['mean']:>9.2f} "
                  f"{g['penetration_depth_mm']['fraction_penetrating']:>9.3f} {g['proximity_ratio']:>6.3f} "
                  f"{(vol['mean'] if vol else float('nan')):>8.3f}")


def run_stats(args: argparse.Namespace) -> int:
    from interhandgen.data.statistics import dataset_statistics, random_subset
    from interhandgen.data.format import HandModelSpec, TwoHandSet
    from interhandgen.data.format import atomic_write

    from interhandgen.io_guard import Out, check_outputs

    check_outputs({"--out": Out(args.out, folder=True)}, {"data": args.data})
    if args.volume_samples < 0:
        raise InputError(f"--volume-samples must be >= 0, got {args.volume_samples}")
    render = None
    if args.out and not args.no_png:
        try:
            from interhandgen.viz import render
        except ImportError as exc:
            raise InputError(f"cannot write samples.png: interhandgen.viz is not available ({exc}); use --no-png") from None
    two_hands = TwoHandSet.load(args.data)
    if len(two_hands) == 0:
        raise InputError(f"{args.data}: holds no samples, so there are no statistics to compute")
    if args.mano_dir:
        if two_hands.hand_model.kind != "mano":
            raise InputError("--mano-dir given but the set uses the open hand")
        spec = HandModelSpec.mano(args.mano_dir, fix_left_shapedirs=two_hands.hand_model.fix_left_shapedirs)
        two_hands = two_hands.with_hand_model(spec)
    models = None if args.no_geometry else two_hands.hand_models(device=args.device)
    stats = dataset_statistics(two_hands, models, args.max_samples, args.volume_samples, args.seed, args.device,
                               progress=not args.no_progress)
    stats["file"] = str(Path(args.data).resolve())
    if two_hands.object_library is not None and not args.no_geometry and args.object_samples > 0:
        from interhandgen.objects.cli import object_statistics

        stats["objects"] = object_statistics(two_hands, models, args.object_samples, args.seed,
                                             progress=not args.no_progress)
    _print_stats(stats)
    if "objects" in stats:
        from interhandgen.objects.cli import print_object_statistics

        print_object_statistics(stats["objects"])
    if args.out:
        out = Path(args.out)
        payload = json.dumps(stats, indent=1).encode()
        atomic_write(out / "stats.json", lambda fh: fh.write(payload))
        print(f"wrote {out / 'stats.json'}")
        if render is not None:
            pick = random_subset(len(two_hands), 16, args.seed)
            if two_hands.object_library is not None:
                from interhandgen.objects.cli import render_with_objects

                render_with_objects(two_hands[pick], models, out / "samples.png")
            else:
                render(two_hands[pick], out_path=out / "samples.png")
            print(f"wrote {out / 'samples.png'}")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    try:
        from interhandgen.data.synth import generate_synthetic_set
    except ImportError as exc:
        raise InputError(f"the synthetic data generator is not available ({exc})") from None
    from interhandgen.data.synth.generator import SYNTH_DISK_BYTES, SYNTH_MEMORY_BYTES
    from interhandgen.io_guard import Out, check_outputs
    from interhandgen.limits import check_count

    check_outputs({"--out": Out(args.out, (".npz",))})
    check_count("--num", args.num, out=args.out, disk_bytes_each=SYNTH_DISK_BYTES, memory_bytes_each=SYNTH_MEMORY_BYTES)
    try:
        splits = tuple(float(v) for v in args.splits.split(","))
    except ValueError:
        raise InputError(f"--splits must be three comma-separated fractions, got {args.splits!r}") from None
    if getattr(args, "objects", False):
        from interhandgen.objects.cli import run_object_synth

        return run_object_synth(args, splits)
    kw = {"device": args.device, "batch_size": args.batch_size, "splits": splits, "progress": not args.no_progress}
    if args.categories:
        kw["categories"] = [c.strip() for c in args.categories.split(",") if c.strip()]
    if getattr(args, "workers", None) is not None:
        kw["workers"] = args.workers
    if getattr(args, "no_resume", False):
        kw["resume"] = False
    result = generate_synthetic_set(args.num, args.seed, args.out, **kw)
    n = len(result) if hasattr(result, "__len__") else args.num
    print(f"wrote {n} synthetic two-hand samples to {args.out}")
    return 0
