"""Atomic file writes: write a temp file beside the target, fsync it, then rename it onto the target.

The file gets the permissions a plain ``open(path, "w")`` would give (0666 minus the umask), not the 0600 of the
temp file. Temp files are named ``.<target name>.<random>.tmp`` (:data:`TEMP_SUFFIX`); a process killed mid-write
leaves one behind, which :func:`interhandgen.run_hygiene.remove_orphan_temps` clears.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Callable

TEMP_SUFFIX = ".tmp"
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file_handle)`` on a temp file beside ``path``, fsync it, then rename it onto ``path``.

    A crash or interrupt leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(payload))
