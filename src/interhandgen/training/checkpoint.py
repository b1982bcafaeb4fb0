"""Atomic training checkpoints and the exported (bundled) model format.

Training checkpoint (``checkpoint.pt``, torch.save of plain containers, loadable with ``weights_only=True``):
format, step, epoch, next_batch, model, ema, optimizer, rng (per rank), model_config, train_config, stats,
data (fingerprint of the training array), log_rows (CSV rows written when it was saved).

Exported model (``.safetensors``): the EMA weights under ``net.*``, the normalisation statistics under
``stats.mean`` / ``stats.std`` ([2, 64]: anchor, other), and the JSON model config plus provenance in the metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from interhandgen._atomic import atomic_write, atomic_write_bytes

CHECKPOINT_FORMAT = "interhandgen.train.v1"
MODEL_FORMAT = "interhandgen.model.v1"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training checkpoint, with a clear error for missing, corrupt or foreign files."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise ValueError(f"{path}: not a readable interhandgen checkpoint (corrupt or truncated?): {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: expected checkpoint format {CHECKPOINT_FORMAT!r}, found {found!r}")
    missing = [k for k in ("step", "epoch", "next_batch", "model", "ema", "optimizer", "rng", "model_config",
                           "train_config", "stats", "data", "log_rows") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks field(s) {missing}")
    from interhandgen.exceptions import InputError
    from interhandgen.limits import check_model_stats

    stats = ckpt["stats"]
    if not isinstance(stats, dict) or not all(isinstance(stats.get(k), torch.Tensor) for k in ("mean", "std")):
        raise InputError(f"{path}: field 'stats' must hold the tensors 'mean' and 'std'")
    if not isinstance(ckpt["model_config"], dict) or not isinstance(ckpt["train_config"], dict):
        raise InputError(f"{path}: fields 'model_config' and 'train_config' must be mappings")

    check_model_stats(str(path), stats["mean"], stats["std"])
    return ckpt


def data_fingerprint(x: torch.Tensor) -> dict[str, Any]:
    """Identify a training array cheaply but reliably (shape + SHA-256 of its bytes)."""
    arr = x.detach().cpu().contiguous().numpy()
    return {"shape": list(arr.shape), "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}


def export_model(
    state_dict: dict[str, torch.Tensor],
    model_config: dict[str, Any],
    stats_mean: torch.Tensor,
    stats_std: torch.Tensor,
    path: str | os.PathLike,
    provenance: dict[str, Any] | None = None,
) -> str:
    """Write the model as one safetensors file; returns its SHA-256."""
    from safetensors.torch import save as st_save

    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in state_dict.items()}
    tensors["stats.mean"] = stats_mean.detach().cpu().float().contiguous()
    tensors["stats.std"] = stats_std.detach().cpu().float().contiguous()
    metadata = {
        "format": MODEL_FORMAT,
        "model_config": json.dumps(model_config, sort_keys=True),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    from interhandgen.reproducible import canonical_safetensors

    payload = canonical_safetensors(st_save(tensors, metadata=metadata))
    atomic_write_bytes(path, payload)
    return hashlib.sha256(payload).hexdigest()


def read_exported_model(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any], torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Read an exported model: (state_dict, model_config, stats_mean, stats_std, provenance)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable safetensors model file: {exc}") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: expected model format {MODEL_FORMAT!r} in the metadata, found {meta.get('format')!r}")
    for key in ("stats.mean", "stats.std"):
        if key not in tensors:
            raise ValueError(f"{path}: missing tensor {key!r}")
    from interhandgen.exceptions import InputError
    from interhandgen.limits import check_model_stats
    from interhandgen.safe_files import loads_json

    state = {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}
    if "model_config" not in meta:
        raise InputError(f"{path}: missing metadata field 'model_config'")
    model_config = loads_json(meta["model_config"], f"{path}: metadata field 'model_config'", allow_nan=False)
    provenance = loads_json(meta.get("provenance", "{}"), f"{path}: metadata field 'provenance'")
    for name, value in (("model_config", model_config), ("provenance", provenance)):
        if not isinstance(value, dict):
            raise InputError(f"{path}: metadata field '{name}' must be a JSON object, got {type(value).__name__}")
    check_model_stats(str(path), tensors["stats.mean"], tensors["stats.std"])
    return state, model_config, tensors["stats.mean"], tensors["stats.std"], provenance
