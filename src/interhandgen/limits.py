"""Documented plausibility limits of values with a physical meaning, NaN/inf rejection and device validation.

Every limit is defined here once. A value outside a limit raises an :class:`~interhandgen.exceptions.InputError`
naming the argument, file or field, the value and the limit. The range limits (not the finiteness checks) can be
switched off for one invocation with ``interhandgen --no-limits COMMAND ...`` or the environment variable
``INTERHANDGEN_NO_LIMITS=1``, for a user who really means an extreme value.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from interhandgen.exceptions import InputError

# --- limits (documented in docs/reliability.md) -------------------------------------------------------------------
CFG_SCALE_MAX = 10.0  # x0 = c + w (c - u); beyond ~10 the partner leaves the scene (w = 1000 put it 137 m away)
BETAS_MAX_ABS = 10.0  # shape coefficients are in units of standard deviations of the shape space
TRANSL_MAX_M = 10.0  # a hand more than 10 m from the origin is not a two-hand interaction (metres)
POSE_MAX_ABS = 100.0  # axis-angle radians / PCA coefficients; far beyond any articulated pose
VIEW_SIZE_RANGE = (16, 4096)  # pixels per rendered view
IMAGE_MAX_PIXELS = 200_000_000  # one rendered grid (about 0.8 GB as RGBA uint8)
LR_RANGE = (0.0, 1.0)  # train.lr: (0, 1]
MEMORY_FRACTION = 0.8  # outputs kept in memory may use at most this fraction of the physical memory

NO_LIMITS_ENV = "INTERHANDGEN_NO_LIMITS"


def limits_enabled() -> bool:
    return os.environ.get(NO_LIMITS_ENV, "") in ("", "0")


def disable_limits() -> None:
    """``--no-limits``: switch the range limits off for this process (and the processes it starts)."""
    os.environ[NO_LIMITS_ENV] = "1"


_OVERRIDE = f"(a documented limit, see docs/reliability.md; `interhandgen --no-limits ...` or {NO_LIMITS_ENV}=1 " \
            "lifts it)"


def check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    return value


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None) -> float:
    """``value`` finite and, unless limits are off, within [lo, hi] (None: unbounded on that side)."""
    check_finite(name, value)
    if limits_enabled() and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        span = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise InputError(f"{name} must lie in {span}, got {value} {_OVERRIDE}")
    return value


def check_finite_args(args: Any) -> None:
    """Reject NaN/inf in every float attribute of a parsed argparse namespace (one check for all commands)."""
    for key, value in sorted(vars(args).items()):
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"--{key.replace('_', '-')} must be a finite number, got {value}")


def check_hand_values(arrays: dict[str, np.ndarray], source: str) -> None:
    """Plausibility of hand parameters {field name: [N, D] array}: betas, translations (metres), poses."""
    if not limits_enabled():
        return
    for field, arr in arrays.items():
        limit = (BETAS_MAX_ABS if field.endswith("betas") else TRANSL_MAX_M if field.endswith("transl")
                 else POSE_MAX_ABS if field.endswith(("pose", "global_orient")) else None)
        if limit is None or arr.size == 0:
            continue
        big = np.abs(arr) > limit
        if big.any():
            i, j = np.argwhere(big)[0]
            raise InputError(f"{source}: field '{field}' has |value| {abs(float(arr[i, j])):.4g} > {limit:g} at sample "
                             f"{int(i)} {_OVERRIDE}")


def check_model_stats(source: str, mean, std) -> None:
    """A model's normalisation statistics: finite, and std > 0 (a zero std divides by zero after sampling)."""
    import torch

    mean, std = torch.as_tensor(mean), torch.as_tensor(std)
    if not torch.isfinite(mean).all() or not torch.isfinite(std).all():
        raise InputError(f"{source}: stats.mean / stats.std contain NaN or inf")
    if not (std > 0).all():
        raise InputError(f"{source}: stats.std must be > 0 everywhere, got min {float(std.min()):.4g}")


# --- devices ------------------------------------------------------------------------------------------------------
def check_device(device: str, option: str = "--device") -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` on a machine that has it (``mps`` where available); anything else raises."""
    import torch

    text = str(device).strip()
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"{option} must be cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cpu":
        return text
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{option} {device}: this torch build or machine has no CUDA device; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"{option} {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return text
    if dev.type == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return text
    raise InputError(f"{option} must be cpu, cuda or cuda:N, got {device!r}")


# --- sizes --------------------------------------------------------------------------------------------------------
def physical_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not available on this platform: no memory bound
        return 1 << 62


def free_disk_bytes(path: str | os.PathLike) -> int:
    p = Path(path).absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return shutil.disk_usage(p).free


def check_count(option: str, num: int, *, out: str | os.PathLike | None = None, disk_bytes_each: float = 0.0,
                memory_bytes_each: float = 0.0) -> int:
    """A count of items (samples, pairs) that must fit the disk (``out``'s file system) and the memory."""
    if isinstance(num, bool) or not isinstance(num, int):
        raise InputError(f"{option} must be an integer, got {num!r}")
    if num < 1:
        raise InputError(f"{option} must be >= 1, got {num}")
    if not limits_enabled():
        return num
    if memory_bytes_each:
        need, have = num * memory_bytes_each, physical_memory_bytes() * MEMORY_FRACTION
        if need > have:
            raise InputError(f"{option} {num}: needs about {need / 1e9:.3g} GB of memory, more than "
                             f"{MEMORY_FRACTION:.0%} of this machine's {physical_memory_bytes() / 1e9:.3g} GB; "
                             f"at most {int(have // memory_bytes_each)} fit {_OVERRIDE}")
    if out is not None and disk_bytes_each:
        need, have = num * disk_bytes_each, free_disk_bytes(Path(out).parent)
        if need > have:
            raise InputError(f"{option} {num}: the output needs about {need / 1e9:.3g} GB, but only "
                             f"{have / 1e9:.3g} GB are free for {out} {_OVERRIDE}")
    return num


def check_view_size(view_size: int, cells: int, views: int, cols: int) -> None:
    """Rendered grid: ``view_size`` in VIEW_SIZE_RANGE and the whole image under IMAGE_MAX_PIXELS."""
    lo, hi = VIEW_SIZE_RANGE
    if view_size < 1:
        raise InputError(f"--view-size must be >= 1, got {view_size}")
    if not limits_enabled():
        return
    if not lo <= view_size <= hi:
        raise InputError(f"--view-size must lie in [{lo}, {hi}] pixels, got {view_size} {_OVERRIDE}")
    rows = -(-cells // max(cols, 1))
    pixels = rows * min(cells, cols) * views * view_size * view_size
    if pixels > IMAGE_MAX_PIXELS:
        raise InputError(f"--view-size {view_size}: the grid would have {pixels:,} pixels, more than "
                         f"{IMAGE_MAX_PIXELS:,} {_OVERRIDE}")
