"""`interhandgen evaluate`: the evaluation protocol on generated samples against a reference set."""

from __future__ import annotations

import argparse

from interhandgen.cli._args import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate generated two-hand samples against reference data (FHID, KHID, P/R, C2ST, penetration, ...)",
        description=(
            "Feature-based FHID/KHID, diversity and precision/recall (replicated over seeded subsets, 95%% CI), "
            "and per-pair geometry: exact penetration volume (cm^3), penetration depth (mm), minimum distance, "
            "contact rate and proximity ratio. Also density/coverage, a classifier two-sample test (evaluator and "
            "joint features) and per-category frequencies by nearest reference label, each beside a data floor "
            "(a second, disjoint reference draw: by default the reference file's train split). Writes "
            "metrics.json, report.md and plots into --out. Fails on sets of different hand models."
        ),
    )
    p.add_argument("--samples", required=True, help="generated pairs (.npz, TwoHandSet format)")
    p.add_argument("--reference", required=True,
                   help="reference pairs (.npz); a file with a 'split' field is reduced to its test split "
                        "unless --reference-split all")
    p.add_argument("--reference-split", default="test", help="split of --reference to use, or 'all' (default %(default)s)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--evaluator", default=None,
                   help="feature extractor: the folder written by `interhandgen evaluator train`, its config.json or "
                        "its model.safetensors (default: the bundled one "
                        "for the open hand's synthetic data)")
    p.add_argument("--replications", type=positive_int, default=5, help="R seeded subsets (default %(default)s)")
    p.add_argument("--subset-size", type=positive_int, default=None, help="samples per replication (default: half the smaller set)")
    p.add_argument("--kid-degree", type=int, default=3, help="polynomial kernel degree of KHID (1 = reference code)")
    p.add_argument("--no-penetration", action="store_true", help="skip the penetration metrics")
    p.add_argument("--floor", default=None,
                   help="second reference draw for the data floor of density/coverage, the two-sample test and the "
                        "category frequencies (.npz; default: the --reference file); must be disjoint from the "
                        "reference, e.g. another split")
    p.add_argument("--floor-split", default="train",
                   help="split of --floor to use, or 'all' (default %(default)s)")
    p.add_argument("--floor-size", type=int, default=None,
                   help="pairs of the floor draw (seeded subset; default: as many as --samples, at most all)")
    p.add_argument("--no-floor", action="store_true", help="no floor draw (the floor columns read n/a)")
    p.add_argument("--no-density-coverage", action="store_true", help="skip density and coverage")
    p.add_argument("--no-c2st", action="store_true", help="skip the classifier two-sample test")
    p.add_argument("--c2st-folds", type=int, default=5, help="cross-validation folds of the two-sample test "
                                                             "(default %(default)s)")
    p.add_argument("--c2st-hidden", type=int, default=64,
                   help="hidden width of the two-sample test's MLP (default %(default)s; wider and longer training "
                        "separates better, see docs/evaluation.md)")
    p.add_argument("--c2st-epochs", type=int, default=10, help="training epochs of the two-sample test's MLP "
                                                               "(default %(default)s)")
    p.add_argument("--no-categories", action="store_true",
                   help="skip the per-category frequencies (needed when the reference has no category labels)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--feature-cache", default=None,
                       help="folder of the reference-feature cache (default: $INTERHANDGEN_CACHE, else "
                            "$XDG_CACHE_HOME/interhandgen or ~/.cache/interhandgen); the key hashes the reference "
                            "arrays and the extractor's weights, so a changed input never hits a stale entry")
    cache.add_argument("--no-feature-cache", action="store_true", help="always extract the reference features")
    p.add_argument("--no-objects", action="store_true",
                   help="skip the hand-object protocol (run by default when --samples has an object library: "
                        "hand-object penetration and contact per hand, MuJoCo stability, floor rows; "
                        "docs/evaluation.md)")
    p.add_argument("--no-physics", action="store_true",
                   help="skip the MuJoCo stability test of the hand-object protocol (the slow part)")
    p.add_argument("--physics-pairs", type=positive_int, default=None,
                   help="run the stability test on a seeded subset of this many pairs per set (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interhandgen.data.format import TwoHandSet
    from interhandgen.exceptions import InputError
    from interhandgen.evaluation.bundled import load_evaluator
    from interhandgen.evaluation.protocol import EvaluationSettings, evaluate
    from interhandgen.evaluation.report import markdown_table, write_report

    from interhandgen.io_guard import Out, check_outputs

    check_outputs({"--out": Out(args.out, folder=True), "--feature-cache": Out(args.feature_cache, folder=True)},
                  {"--samples": args.samples, "--reference": args.reference, "--evaluator": args.evaluator,
                   "--floor": args.floor})
    if args.subset_size is not None and args.subset_size < 1:
        raise InputError(f"--subset-size must be >= 1 (omit it for half the smaller set), got {args.subset_size}")
    if args.replications < 1:
        raise InputError(f"--replications must be >= 1, got {args.replications}")
    samples = TwoHandSet.load(args.samples)
    reference = TwoHandSet.load(args.reference)
    if args.reference_split != "all" and reference.split is not None:
        reference = reference.select_split(args.reference_split)
    settings = EvaluationSettings(replications=args.replications, subset_size=args.subset_size,
                                  kid_degree=args.kid_degree, penetration=not args.no_penetration, seed=args.seed,
                                  density_coverage=not args.no_density_coverage, c2st=not args.no_c2st,
                                  c2st_folds=args.c2st_folds, c2st_hidden=args.c2st_hidden,
                                  c2st_epochs=args.c2st_epochs, categories=not args.no_categories)
    from interhandgen.evaluation.protocol import check_compatible

    check_compatible(samples, reference)  # before the floor draw, so a mismatch is the error the user sees
    objects = None
    if samples.object_library is not None and not args.no_objects:
        from interhandgen.evaluation.object_protocol import ObjectSettings

        objects = ObjectSettings(physics=not args.no_physics, physics_pairs=args.physics_pairs, seed=args.seed)
        if not args.no_physics:
            from interhandgen.objects.physics import require_mujoco

            require_mujoco()  # before any work: the stability test needs it (or pass --no-physics)
    elif args.no_physics or args.physics_pairs is not None:
        raise InputError("--no-physics / --physics-pairs apply to the hand-object protocol only (samples with an "
                         "object library, without --no-objects)")
    floor = None
    if not args.no_floor and (settings.density_coverage or settings.c2st or settings.categories
                              or objects is not None):
        from interhandgen.evaluation.floor import floor_draw

        floor = floor_draw(args.floor or args.reference, args.floor_split, args.reference, args.reference_split,
                           reference, size=args.floor_size or len(samples), seed=args.seed)
    extractor = load_evaluator(args.evaluator, device=args.device)
    from interhandgen.evaluation.cache import default_cache_dir

    cache = None if args.no_feature_cache else str(args.feature_cache or default_cache_dir())
    result = evaluate(samples, reference, extractor, settings, device=args.device, progress=not args.no_progress,
                      feature_cache=cache, floor=floor, objects=objects)
    if result["reference_feature_cache"] is not None:
        info = result["reference_feature_cache"]
        print(f"reference features {'read from' if info['hit'] else 'stored in'} {info['file']}")
    write_report(result, args.out, samples=samples, title=f"Evaluation of {args.samples}")
    print(markdown_table(result, f"Evaluation of {args.samples}"))
    if objects is not None:
        from pathlib import Path

        from interhandgen._atomic import atomic_write_bytes
        from interhandgen.evaluation.object_protocol import object_markdown

        table = object_markdown(result)
        atomic_write_bytes(Path(args.out) / "objects.md", (f"# Hand-object evaluation of {args.samples}\n\n"
                                                           f"{table}\n").encode())
        print(table)
    print(f"wrote {args.out}/metrics.json, report.md and plots")
    return 0
