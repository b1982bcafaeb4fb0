"""The one scheme for deriving per-item seeds (data-order epochs, sampling batches) from a user's seed."""

from __future__ import annotations

SEED_STRIDE = 1_000_003  # a prime larger than any batch or epoch count: (seed, index) pairs never collide


def derived_seed(seed: int, index: int) -> int:
    """The seed of item ``index`` (a sampling batch, a training epoch) of a run seeded with ``seed``."""
    return int(seed) * SEED_STRIDE + int(index)
