"""A content-addressed cache of reference features.

Every evaluation against the same reference set with the same feature extractor extracts the same reference
features (10,000 pairs: about 30 s on the 2-core CPU). They are stored once under a key that hashes everything
they depend on: the extractor's weights and config, every array of the reference set, the extraction batch size,
the device type and the package version. A changed reference or extractor gives a new key, never a stale hit.
Each entry is ``<key>.npy`` plus ``<key>.sha256`` (the SHA-256 of the .npy bytes), both written atomically, the
checksum last. An entry whose checksum is missing or does not match (a damaged, zeroed or edited file), that cannot
be read back or has the wrong shape is recomputed, with a warning, and replaced.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen import __version__

__all__ = ["default_cache_dir", "reference_features_key", "cached_reference_features"]


def default_cache_dir() -> Path:
    """``$INTERHANDGEN_CACHE``, else ``$XDG_CACHE_HOME/interhandgen``, else ``~/.cache/interhandgen``."""
    if os.environ.get("INTERHANDGEN_CACHE"):
        return Path(os.environ["INTERHANDGEN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "interhandgen"


def reference_features_key(extractor: torch.nn.Module, reference, batch_size: int, device: str | torch.device) -> str:
    """SHA-256 over the extractor's state (names, shapes, dtypes, bytes) and config, the reference set's arrays,
    the batch size, the device type and the package version."""

    h = hashlib.sha256()
    h.update(f"interhandgen {__version__}; batch {int(batch_size)}; device {torch.device(device).type}\n".encode())
    config = getattr(extractor, "config", None)
    h.update(repr(config).encode())
    for name, value in sorted(extractor.state_dict().items()):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name} {tuple(value.shape)} {t.dtype}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for name, arr in sorted(reference.to_arrays().items()):
        a = np.ascontiguousarray(np.asarray(arr))
        h.update(f"{name} {a.shape} {a.dtype}\n".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()


def cached_reference_features(extractor: torch.nn.Module, reference, compute, batch_size: int,
                              device: str | torch.device, cache_dir: str | Path | None = None
                              ) -> tuple[torch.Tensor, bool, Path]:
    """Reference features [N, D] from the cache, or ``compute()`` and store them.

    Returns (features, whether they came from the cache, the cache file).
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / "reference_features" / f"{reference_features_key(extractor, reference, batch_size, device)}.npy"
    digest_path = path.with_suffix(".sha256")
    if path.exists():
        try:
            payload = path.read_bytes()
            want = digest_path.read_text().strip() if digest_path.is_file() else None
            got = hashlib.sha256(payload).hexdigest()
            if want != got:
                raise ValueError(f"checksum {got[:12]}... does not match the stored "
                                 f"{(want or 'none')[:12]}... (damaged or modified file)")
            feats = np.load(io.BytesIO(payload), allow_pickle=False)
            if feats.ndim == 2 and feats.shape[0] == len(reference) and np.isfinite(feats).all():
                return torch.from_numpy(feats).to(device), True, path
            warnings.warn(f"{path}: cached features have shape {feats.shape}, expected [{len(reference)}, D]; "
                          "recomputing them", stacklevel=2)
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path}: unreadable cached features ({exc}); recomputing them", stacklevel=2)
    feats = compute()
    buf = io.BytesIO()
    np.save(buf, feats.detach().cpu().numpy(), allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_bytes(digest_path, (hashlib.sha256(buf.getvalue()).hexdigest() + "\n").encode())
    return feats, False, path
