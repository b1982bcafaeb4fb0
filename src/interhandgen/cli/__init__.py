"""Command-line interface: a thin layer over the Python API.

Each subcommand lives in its own module ``interhandgen.cli.<name>`` exposing
``register(subparsers)``, which adds an ``argparse`` parser whose ``func`` default
takes the parsed namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from interhandgen import __version__
from interhandgen.cli._threads import add_threads_everywhere, apply_threads, before_torch
from interhandgen.exceptions import InterHandGenError

# Order is the order shown in `interhandgen --help`.
SUBCOMMANDS = [
    "hand",
    "render",
    "data",
    "train",
    "sample",
    "complete",
    "evaluate",
    "evaluator",
    "fit",
    "view",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interhandgen",
        description=(
            "InterHandGen: generate, complete, evaluate and refine two-hand interactions "
            "with a cascaded diffusion prior. Runs out of the box on the bundled open hand "
            "model and synthetic data set; point it at MANO files and real data to use those."
        ),
    )
    parser.add_argument("--version", action="version", version=f"interhandgen {__version__}")
    parser.add_argument("--no-limits", action="store_true",
                        help="lift the documented plausibility limits (cfg scale, betas, translations, sizes; "
                             "docs/reliability.md) for this command; NaN/inf are still rejected")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"interhandgen.cli.{name}_cmd")
        module.register(sub)
    add_threads_everywhere(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    before_torch(argv)  # the OpenMP wait policy must be set before torch is imported (build_parser imports it)
    parser = build_parser()
    args = parser.parse_args(argv)
    from interhandgen.cli._guards import run_guarded

    try:
        apply_threads(args.threads)
        return run_guarded(args)
    except InterHandGenError as exc:  # user-facing: a bad file, field or argument; anything else is a bug
        print(f"interhandgen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
