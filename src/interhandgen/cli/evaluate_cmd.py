"""`interhandgen evaluate`: the evaluation protocol on generated samples against a reference set."""

from __future__ import annotations

import argparse

from interhandgen.cli._args import positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate generated two-hand samples against reference data (FHID, KHID, P/R, penetration, ...)",
        description=(
            "Feature-based FHID/KHID, diversity and precision/recall (replicated over seeded subsets, 95%% CI), "
            "and per-pair geometry: exact penetration volume (cm^3), penetration depth (mm), minimum distance, "
            "contact rate and proximity ratio. Writes metrics.json, report.md and plots into --out. Fails on sets "
            "of different hand models."
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
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--feature-cache", default=None,
                       help="folder of the reference-feature cache (default: $INTERHANDGEN_CACHE, else "
                            "$XDG_CACHE_HOME/interhandgen or ~/.cache/interhandgen); the key hashes the reference "
                            "arrays and the extractor's weights, so a changed input never hits a stale entry")
    cache.add_argument("--no-feature-cache", action="store_true", help="always extract the reference features")
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
                  {"--samples": args.samples, "--reference": args.reference, "--evaluator": args.evaluator})
    if args.subset_size is not None and args.subset_size < 1:
        raise InputError(f"--subset-size must be >= 1 (omit it for half the smaller set), got {args.subset_size}")
    if args.replications < 1:
        raise InputError(f"--replications must be >= 1, got {args.replications}")
    samples = TwoHandSet.load(args.samples)
    reference = TwoHandSet.load(args.reference)
    if args.reference_split != "all" and reference.split is not None:
        reference = reference.select_split(args.reference_split)
    settings = EvaluationSettings(replications=args.replications, subset_size=args.subset_size,
                                  kid_degree=args.kid_degree, penetration=not args.no_penetration, seed=args.seed)
    extractor = load_evaluator(args.evaluator, device=args.device)
    from interhandgen.evaluation.cache import default_cache_dir

    cache = None if args.no_feature_cache else str(args.feature_cache or default_cache_dir())
    result = evaluate(samples, reference, extractor, settings, device=args.device, progress=not args.no_progress,
                      feature_cache=cache)
    if result["reference_feature_cache"] is not None:
        info = result["reference_feature_cache"]
        print(f"reference features {'read from' if info['hit'] else 'stored in'} {info['file']}")
    write_report(result, args.out, samples=samples, title=f"Evaluation of {args.samples}")
    print(markdown_table(result, f"Evaluation of {args.samples}"))
    print(f"wrote {args.out}/metrics.json, report.md and plots")
    return 0
