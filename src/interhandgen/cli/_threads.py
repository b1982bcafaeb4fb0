"""``--threads`` for every command, and the thread policy applied before torch is imported.

:func:`main` of :mod:`interhandgen.cli` calls :func:`before_torch` first (the OpenMP wait policy must be in the
environment before torch loads its runtime: building the parser imports torch), then :func:`add_threads_option`
on every leaf parser (also those of commands registered later) and :func:`apply_threads` with the parsed value.
See :mod:`interhandgen.threads` and docs/threads.md.
"""

from __future__ import annotations

import argparse
import sys

from interhandgen import threads as _policy
from interhandgen.cli._args import positive_int

HELP = ("torch CPU threads (default: one per available CPU, or OMP_NUM_THREADS; under torchrun the CPUs are "
        "shared among the local processes). Idle threads sleep at once when other programs keep the CPUs busy at "
        "start (OMP_WAIT_POLICY=PASSIVE) and spin briefly otherwise (GOMP_SPINCOUNT=10000), so the default stays "
        "fast on a busy CPU. The count can change the last bits of results (docs/threads.md)")


def add_threads_option(parser) -> None:
    """Add ``--threads N`` to a parser (or argument group) unless the parser already has it."""
    actions = getattr(parser, "_option_string_actions", {})
    if "--threads" not in actions:
        parser.add_argument("--threads", type=positive_int, default=None, metavar="N", help=HELP)


def add_threads_everywhere(parser: argparse.ArgumentParser) -> None:
    """``--threads`` on every leaf (sub)command of ``parser``: ``interhandgen data synth --threads 1`` etc."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        add_threads_option(parser)
        return
    seen = set()
    for action in subs:
        for child in action.choices.values():
            if id(child) not in seen:
                seen.add(id(child))
                add_threads_everywhere(child)


def threads_in_argv(argv: list[str]) -> int | None:
    """The value of ``--threads N`` / ``--threads=N`` in a raw command line, None when absent or not valid.

    Read before the parser exists (building it imports torch), only to choose the wait policy for the count that
    will run; the parser validates the option itself and reports a bad value.
    """
    for i, token in enumerate(argv):
        if token == "--":
            break
        value = token[len("--threads="):] if token.startswith("--threads=") else (
            argv[i + 1] if token == "--threads" and i + 1 < len(argv) else None)
        if value is not None:
            return int(value) if value.isdigit() and int(value) >= 1 else None
    return None


def before_torch(argv: list[str] | None = None) -> _policy.ThreadSettings:
    """The wait policy (and the per-process default under torchrun) before anything imports torch."""
    argv = sys.argv[1:] if argv is None else argv
    return _policy.configure(None, planned_threads=threads_in_argv(argv))


def apply_threads(threads: int | None) -> _policy.ThreadSettings:
    """The parsed ``--threads`` value (None keeps the default chosen by :func:`before_torch`)."""
    return _policy.configure(threads)
