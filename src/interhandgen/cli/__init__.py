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
]


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"interhandgen.cli.{name}_cmd")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"interhandgen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
