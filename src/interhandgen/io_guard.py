"""Output-path guards: every path a command will write is checked before any work starts.

A command declares its outputs (file with allowed suffixes, or folder) and its inputs, and calls
:func:`check_outputs` first thing. It refuses, with an :class:`~interhandgen.exceptions.InputError` naming the
option and the path:

- a file output whose suffix is not one of the allowed ones (``--out x.np``, ``--render a.npz``);
- a file output that is an existing folder, a folder output that is an existing file;
- an output whose folder cannot be created or written (probed by creating and removing a temp file in the
  nearest existing ancestor, which also catches read-only and pseudo file systems such as ``/sys``);
- an output that is the same file as an input or as another output (resolved paths, and the same inode for
  existing files, so a symlink or hard link is caught too).

An existing output FILE is replaced atomically (documented behaviour of every command); an existing output
FOLDER is written into. Failures of the file system later on (disk full, permissions changed meanwhile) are
mapped to an InputError naming the path by :func:`user_os_errors`, which :func:`interhandgen.cli.main` wraps
around every command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

from interhandgen.exceptions import InputError, MissingFileError

__all__ = ["Out", "check_outputs", "user_os_errors", "same_path"]

# OS errors caused by the user's paths or machine (not by a bug of ours): reported without a traceback.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.EROFS,
                errno.EDQUOT, errno.ENAMETOOLONG, errno.ENOENT, errno.ELOOP, errno.EFBIG, errno.EMFILE}


@dataclasses.dataclass(frozen=True)
class Out:
    """One output: ``path`` (None when the option was not given), ``suffixes`` (lower-case, with the dot) for a
    file, or ``folder=True`` for a folder."""

    path: str | os.PathLike | None
    suffixes: tuple[str, ...] = ()
    folder: bool = False

    def __post_init__(self) -> None:
        if not self.folder and not self.suffixes:
            raise TypeError("a file output needs its allowed suffixes")


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal resolved paths, or the same inode when both exist."""
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)
    except OSError:
        return False


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe_writable(option: str, path: Path, target: Path) -> None:
    """Create and remove a temp file in ``target`` (an existing folder)."""
    if not target.is_dir():
        raise InputError(f"{option} {path}: {target} is not a folder, so {path} cannot be created")
    try:
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".interhandgen-probe-")
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write in {target} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(tmp)


def check_outputs(outputs: Mapping[str, Out], inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """Check every output of a command before it does any work; see the module docstring for the rules.

    outputs: option name (as the user typed it, e.g. ``"--out"``) -> :class:`Out`.
    inputs: option name -> input path (None entries are ignored).
    """
    given = {name: o for name, o in outputs.items() if o.path is not None}
    ins = {name: p for name, p in (inputs or {}).items() if p is not None}
    for name, o in given.items():
        path = Path(o.path)
        if o.folder:
            if path.exists() and not path.is_dir():
                raise InputError(f"{name} {path}: exists and is not a folder (it must be a folder)")
        else:
            if path.suffix.lower() not in o.suffixes:
                want = " or ".join(o.suffixes)
                raise InputError(f"{name} must end in {want}, got {path}")
            if path.is_dir():
                raise InputError(f"{name} {path}: is an existing folder, expected a file path ({'/'.join(o.suffixes)})")
            if path.exists() and not os.access(path, os.W_OK):
                raise InputError(f"{name} {path}: the existing file is not writable")
        target = _nearest_existing(path if o.folder else path.parent)
        _probe_writable(name, path, target)
        for in_name, in_path in ins.items():
            if same_path(path, in_path):
                raise InputError(f"{name} {path} is the input {in_name}: refusing to overwrite an input")
    names = list(given)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if same_path(given[a].path, given[b].path):
                raise InputError(f"{a} and {b} are the same path ({given[a].path}): each output needs its own path")


@contextlib.contextmanager
def user_os_errors() -> Iterator[None]:
    """Re-raise OS errors about a named path (permission, no space, is a folder, ...) as a clean InputError /
    MissingFileError naming the path; other OS errors propagate unchanged (they are bugs)."""
    try:
        yield
    except (InputError, MissingFileError):
        raise
    except OSError as exc:
        if exc.errno not in _USER_ERRNOS or not exc.filename:
            raise
        where = exc.filename if not exc.filename2 else f"{exc.filename} -> {exc.filename2}"
        cls = MissingFileError if exc.errno == errno.ENOENT else InputError
        raise cls(f"{where}: {exc.strerror or exc}") from None
