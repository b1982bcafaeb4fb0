"""Byte-reproducible files: the same content always gives the same bytes.

safetensors keeps its metadata in a hash map, so two saves of the same tensors and metadata can order the metadata
keys differently (different bytes, different SHA-256). :func:`canonical_safetensors` rewrites the header with the
metadata keys sorted; the header keeps its length, so the tensor data and offsets are untouched.
"""

from __future__ import annotations

import json
import struct

__all__ = ["canonical_safetensors"]


def canonical_safetensors(payload: bytes) -> bytes:
    """``payload`` (a serialised safetensors file) with its ``__metadata__`` keys in sorted order."""
    (n,) = struct.unpack("<Q", payload[:8])
    raw = payload[8:8 + n]
    header = json.loads(raw.decode("utf-8"))
    if "__metadata__" not in header:
        return payload
    ordered = {k: (dict(sorted(v.items())) if k == "__metadata__" else v) for k, v in header.items()}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > n:  # a different JSON spelling than the writer's: keep the writer's bytes rather than guess
        raise RuntimeError(f"canonical safetensors header is longer ({len(text)}) than the original ({n})")
    return payload[:8] + text + b" " * (n - len(text)) + payload[8 + n:]
