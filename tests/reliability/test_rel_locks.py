"""Run-folder locks (two real processes), stale-lock takeover, and the run hygiene done under the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from interhandgen.exceptions import InputError
from interhandgen.run_lock import LOCK_NAME, RunLock

HOLDER = textwrap.dedent("""
    import sys
    from interhandgen.run_lock import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    sys.stdin.read()  # hold until the parent closes stdin (or kills us)
    lock.release()
""")


def _start_holder(run):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_train_on_a_locked_run_refuses(tmp_path):
    run = tmp_path / "run"
    holder = _start_holder(run)
    try:
        # A real second `interhandgen train` process on the same folder.
        other = subprocess.run([sys.executable, "-m", "interhandgen", "train", "--config", tmp_path / "c.yaml",
                                "--data", tmp_path / "d.npz", "--out", run], capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
        assert other.returncode == 2, other.stderr
        assert f"is in use by process {holder.pid} on this machine" in other.stderr
        assert "Traceback" not in other.stderr
        owner = json.loads((run / LOCK_NAME).read_text())
        assert owner["pid"] == holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (run / LOCK_NAME).exists()  # released on exit
    with RunLock(run):
        assert (run / LOCK_NAME).exists()
    assert not (run / LOCK_NAME).exists()


def test_stale_lock_of_a_killed_process_is_reported_and_taken_over(tmp_path, capfd):
    run = tmp_path / "run"
    holder = _start_holder(run)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    holder.stdin.close()
    assert (run / LOCK_NAME).exists()  # kill -9 leaves the lock behind
    with RunLock(run):
        owner = json.loads((run / LOCK_NAME).read_text())
        assert owner["pid"] == os.getpid()
    assert f"removing the stale lock {run / LOCK_NAME} of process {holder.pid}" in capfd.readouterr().err


def test_lock_of_another_host_or_unreadable_is_not_taken(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "t"}))
    with pytest.raises(InputError, match="in use by process 1 on host elsewhere.example"):
        RunLock(run).acquire()
    (run / LOCK_NAME).write_text("garbage")
    with pytest.raises(InputError, match="whose owner cannot be read"):
        RunLock(run).acquire()
    assert (run / LOCK_NAME).read_text() == "garbage"


def test_lock_in_the_same_process_twice_refuses(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(InputError, match=f"in use by process {os.getpid()}"):
            RunLock(tmp_path).acquire()
