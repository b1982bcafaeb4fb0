"""An exclusive lock on a run folder, so two processes never write the same run (log.csv, checkpoints).

The lock is the file ``RUN/.lock``, created with O_CREAT | O_EXCL (atomic on local file systems) and holding the
owner's JSON record {pid, host, started}. A second process refuses with a message naming the owner. A lock whose
owner is gone (same host, pid no longer alive) is stale: it is reported on stderr and taken over. A lock from
another host cannot be checked and is never taken over; the message says how to remove it by hand.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from interhandgen.exceptions import InputError

__all__ = ["RunLock", "LOCK_NAME"]

LOCK_NAME = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(folder): ...`` holds the folder's lock for the block (the folder is created if needed)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def _record(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, sort_keys=True).encode()

    def _read_owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_bytes().decode("utf-8"))
            return owner if isinstance(owner, dict) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock is removed, then creation is retried
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._read_owner()
                if owner is None:
                    # Being written this instant, or damaged: give a writer a moment, then judge again.
                    time.sleep(0.2)
                    owner = self._read_owner()
                pid, host = (owner or {}).get("pid"), (owner or {}).get("host")
                if isinstance(pid, int) and host == socket.gethostname() and not _pid_alive(pid):
                    print(f"interhandgen: removing the stale lock {self.path} of process {pid} on {host}, which "
                          "no longer runs", file=sys.stderr)
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                if owner is None:
                    raise InputError(f"{self.folder} is locked by {self.path}, whose owner cannot be read; if no "
                                     "other run uses this folder, delete that file") from None
                where = "this machine" if host == socket.gethostname() else f"host {host}"
                raise InputError(f"{self.folder} is in use by process {pid} on {where} (lock {self.path}, since "
                                 f"{owner.get('started')}); wait for it, or delete the lock if that process is gone"
                                 ) from None
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._record())
                fh.flush()
                os.fsync(fh.fileno())
            self.held = True
            return self
        raise InputError(f"{self.folder}: could not take the lock {self.path} (it keeps reappearing)")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                owner = self._read_owner()
                if owner is not None and owner.get("pid") == os.getpid():
                    os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
