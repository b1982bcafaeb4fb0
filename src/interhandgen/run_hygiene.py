"""Tidying a run folder before training (re)starts in it, under its lock (:mod:`interhandgen.run_lock`).

- Temp files of interrupted atomic writes (``.<name>.<random>.tmp``, see :mod:`interhandgen._atomic`) are removed:
  a kill -9 during a checkpoint write leaves one behind each time.
- TensorBoard event files are cut at the resumed step: the events a killed run logged after its last checkpoint
  are logged again by the resumed run, so they are removed from the old files (the writer's ``purge_step`` only
  hides them from TensorBoard's reader; other readers would see every step twice).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from interhandgen._atomic import TEMP_SUFFIX, atomic_write

__all__ = ["remove_orphan_temps", "truncate_event_files"]


def remove_orphan_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete ``folder``'s leftover atomic-write temp files (not recursive); returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.glob(f".*{TEMP_SUFFIX}")):
        if p.is_file():
            p.unlink()
            removed.append(p)
    if removed:
        print(f"interhandgen: removed {len(removed)} temp file(s) of interrupted writes in {folder}", file=sys.stderr)
    return removed


def truncate_event_files(tb_dir: str | os.PathLike, step: int) -> int:
    """Drop every event with ``step >= step`` from the TensorBoard event files in ``tb_dir`` (atomically per
    file). Returns the number of events dropped; 0 when tensorboard is not installed or there are no files."""
    tb_dir = Path(tb_dir)
    files = sorted(tb_dir.glob("events.out.tfevents.*")) if tb_dir.is_dir() else []
    if not files:
        return 0
    try:
        from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError:
        return 0
    dropped = 0
    for path in files:
        kept, n_drop = [], 0
        for raw in RawEventFileLoader(str(path)).Load():
            event = event_pb2.Event.FromString(raw)
            if event.step >= step and event.HasField("summary"):
                n_drop += 1
            else:
                kept.append(raw)
        if n_drop:
            def write(fh, records=kept):
                writer = RecordWriter(fh)
                for r in records:
                    writer.write(r)
                writer.flush()

            atomic_write(path, write)
            dropped += n_drop
    if dropped:
        print(f"interhandgen: removed {dropped} TensorBoard event(s) at steps >= {step} logged after the last "
              f"checkpoint in {tb_dir}", file=sys.stderr)
    return dropped
