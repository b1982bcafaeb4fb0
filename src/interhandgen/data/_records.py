"""Shared pieces of the real-data loaders: the load summary, bad-record handling, and safe unpickling."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from interhandgen.exceptions import InputError

MAX_BAD_MESSAGES = 50


class BadRecordError(InputError):
    """A record of a data file is malformed (missing key, wrong shape, NaN); the message names file and record."""


@dataclasses.dataclass
class LoadSummary:
    """What a loader read, kept, filtered and skipped. Nothing is dropped without being counted here.

    Invariant: ``records == kept + sum(filtered.values()) + skipped_bad`` (records of files that could not be
    parsed at all are counted in ``skipped_files`` instead).
    """

    source: str
    records: int = 0
    kept: int = 0
    filtered: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped_bad: int = 0
    skipped_files: int = 0
    bad_messages: list[str] = dataclasses.field(default_factory=list)

    def filter(self, reason: str, count: int = 1) -> None:
        self.filtered[reason] = self.filtered.get(reason, 0) + count

    def bad(self, message: str, skip_bad: bool, count: int = 1, whole_file: bool = False) -> None:
        """Raise BadRecordError(message), or with ``skip_bad`` count the record(s) (or file) as skipped."""
        if not skip_bad:
            raise BadRecordError(message + " (pass skip_bad=True / --skip-bad to skip such records and count them)")
        if whole_file:
            self.skipped_files += 1
        else:
            self.skipped_bad += count
        if len(self.bad_messages) < MAX_BAD_MESSAGES:
            self.bad_messages.append(message)

    def check(self) -> None:
        total = self.kept + sum(self.filtered.values()) + self.skipped_bad
        if total != self.records:
            raise AssertionError(f"load summary does not add up: {self.records} records vs {total} accounted for")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lines = [f"{self.source}: {self.records} records read, {self.kept} kept"]
        for reason, count in sorted(self.filtered.items()):
            lines.append(f"  filtered ({reason}): {count}")
        if self.skipped_bad or self.skipped_files:
            lines.append(f"  skipped as bad: {self.skipped_bad} records, {self.skipped_files} files")
            lines += [f"    {m}" for m in self.bad_messages[:10]]
            if len(self.bad_messages) > 10:
                lines.append(f"    ... ({len(self.bad_messages) - 10} more messages kept in the summary)")
        return "\n".join(lines)


def merge_summaries(source: str, parts: list[LoadSummary]) -> LoadSummary:
    out = LoadSummary(source)
    for p in parts:
        out.records += p.records
        out.kept += p.kept
        out.skipped_bad += p.skipped_bad
        out.skipped_files += p.skipped_files
        for k, v in p.filtered.items():
            out.filter(k, v)
        out.bad_messages += p.bad_messages[: MAX_BAD_MESSAGES - len(out.bad_messages)]
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Safe unpickling of data files (numpy arrays and plain Python containers only; never code)
# ---------------------------------------------------------------------------------------------------------------------

def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray as ma
    except ImportError:  # numpy < 2
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    allowed = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _frombuffer
    allowed[("collections", "OrderedDict")] = __import__("collections").OrderedDict
    return allowed


def _frombuffer(buf, dtype, shape, order):
    # numpy's pickle helper for protocol-5 arrays; rebuilt here without touching other numpy internals.
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


_ALLOWED = _numpy_globals()
_NUMPY_SCALARS = {name for name in dir(np) if isinstance(getattr(np, name, None), type) and issubclass(getattr(np, name), np.generic)}


class SafeUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays/scalars and builtin containers; refuses any other global (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "numpy" and name in _NUMPY_SCALARS:  # dtype classes referenced by new numpy pickles
            return getattr(np, name)
        if module.startswith("numpy.dtypes") and name.endswith("DType"):
            import numpy.dtypes

            return getattr(numpy.dtypes, name)
        raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}' (only numpy arrays and builtin containers are read)")


def safe_pickle_load(path: Path) -> Any:
    """Load a pickle file holding only numpy arrays and builtin containers."""
    with open(path, "rb") as fh:
        return SafeUnpickler(fh, encoding="latin1").load()


def safe_npy_load(path: Path) -> Any:
    """np.load for a .npy file; object arrays (pickled dicts, as ARCTIC writes) are unpickled safely.

    Returns the array, or for a 0-d object array (``np.save(path, dict)``) the stored object.
    """
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise InputError(f"{path}: unsupported .npy format version {version}")
        if dtype.hasobject:
            arr = SafeUnpickler(fh, encoding="latin1").load()
        else:
            arr = None
    if arr is None:
        return np.load(path, allow_pickle=False)
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{path}: object .npy does not hold an array")
    return arr.item() if arr.shape == () else arr
