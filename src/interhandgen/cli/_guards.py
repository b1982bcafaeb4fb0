"""Checks every command gets before it runs (see docs/reliability.md): finite numeric arguments, a valid
``--device``, and OS errors about the user's paths reported as clean errors."""

from __future__ import annotations

import argparse

from interhandgen import limits
from interhandgen.io_guard import user_os_errors


def run_guarded(args: argparse.Namespace) -> int:
    if getattr(args, "no_limits", False):
        limits.disable_limits()
    limits.check_finite_args(args)
    if getattr(args, "device", None) is not None:
        limits.check_device(args.device)
    with user_os_errors():
        return int(args.func(args) or 0)
