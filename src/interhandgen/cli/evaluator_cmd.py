"""`interhandgen evaluator train`: train the feature extractor behind FHID/KHID/precision/recall."""

from __future__ import annotations

import argparse
import json

from interhandgen.cli._args import positive_int


def register(sub) -> None:
    p = sub.add_parser("evaluator", help="train the evaluation feature extractor",
                       description="Manage the point-cloud feature extractor used by `interhandgen evaluate`.")
    s = p.add_subparsers(dest="evaluator_command", metavar="ACTION")
    s.required = True
    t = s.add_parser(
        "train",
        help="train a feature extractor on a two-hand data set",
        description=(
            "Train the PointNet++-style extractor to regress both hands' canonical parameters from the two-hand "
            "point cloud (train split of --data). The same command rebuilds the bundled extractor and trains one "
            "for real data. Writes OUT.safetensors with its config and hash."
        ),
    )
    t.add_argument("--data", required=True, help="TwoHandSet .npz (its train split is used when it has splits)")
    t.add_argument("--out", required=True, help="output folder of the extractor (model.safetensors and config.json)")
    t.add_argument("--epochs", type=positive_int, default=30)
    t.add_argument("--batch-size", type=positive_int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--max-samples", type=positive_int, default=None, help="train on a seeded subset of this size")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--hands-only", action="store_true",
                   help="train a hands-only extractor on a set with objects (default there: object-aware, the "
                        "object's surface points as a third channel; docs/evaluation.md)")
    t.add_argument("--object-augment", type=int, default=0, metavar="K",
                   help="object-aware: also train on K copies of the pairs with randomly moved objects (2 cm, "
                        "0.25 rad; targets of the moved objects), for small grasp sets (default %(default)s)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from interhandgen.evaluation.bundled import train_evaluator
    from interhandgen.exceptions import InputError
    from interhandgen.io_guard import Out, check_outputs

    check_outputs({"--out": Out(args.out, folder=True)}, {"--data": args.data})
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.object_augment < 0:
        raise InputError(f"--object-augment must be >= 0, got {args.object_augment}")
    if args.max_samples is not None and args.max_samples < 2:
        raise InputError(f"--max-samples must be >= 2 (omit it to use the whole train split), got {args.max_samples}")
    from interhandgen.limits import LR_RANGE, check_range

    check_range("--lr", args.lr, LR_RANGE[0], LR_RANGE[1])
    if args.lr <= 0:
        raise InputError(f"--lr must be > 0, got {args.lr}")

    info = train_evaluator(args.data, args.out, epochs=args.epochs, max_samples=args.max_samples, seed=args.seed,
                           device=args.device, progress=not args.no_progress, batch_size=args.batch_size, lr=args.lr,
                           objects=False if args.hands_only else None, object_augment=args.object_augment)
    print(json.dumps({k: v for k, v in info.items() if k not in ("train_loss", "val_loss")}, indent=2, default=str))
    return 0
