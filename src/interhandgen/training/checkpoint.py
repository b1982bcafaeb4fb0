"""Atomic training checkpoints (``checkpoint.pt``).

A checkpoint is a torch.save of plain containers, loadable with ``weights_only=True``: format, step, epoch,
next_batch, model, ema, optimizer, rng (per rank), model_config, train_config, stats, data (fingerprint of the
training array), log_rows (CSV rows written when it was saved) and hand_model (the record of
:func:`interhandgen.models.artifact.hand_model_record`). Its reader lives with the model format
(:func:`interhandgen.models.artifact.read_training_checkpoint`), so that sampling a checkpoint does not need the
trainer; the exported model file is :mod:`interhandgen.models.artifact`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from interhandgen._atomic import atomic_write
from interhandgen.models.artifact import CHECKPOINT_FORMAT, read_training_checkpoint

load_checkpoint = read_training_checkpoint

__all__ = ["CHECKPOINT_FORMAT", "atomic_torch_save", "data_fingerprint", "load_checkpoint"]


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


def data_fingerprint(x: torch.Tensor) -> dict[str, Any]:
    """Identify a training array cheaply but reliably (shape + SHA-256 of its bytes)."""
    arr = x.detach().cpu().contiguous().numpy()
    return {"shape": list(arr.shape), "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}
