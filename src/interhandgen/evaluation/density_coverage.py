"""Density and coverage (Naeem et al., ICML 2020) of generated features against reference features.

With B(x, r) the closed ball of radius r around x and NND_k(x_i) the distance from the reference feature x_i to
its k-th nearest OTHER reference feature (the radii of improved precision/recall, :func:`knn_radii`):

    density  = 1 / (k M) * sum_j sum_i 1[y_j in B(x_i, NND_k(x_i))]      (M generated y_j, N reference x_i)
    coverage = 1 / N * sum_i 1[exists j: y_j in B(x_i, NND_k(x_i))]

Density counts how many reference balls hold each generated sample (1 in expectation when both sets come from
the same distribution; above 1 when samples crowd into dense reference regions, below when they fall outside);
coverage is the fraction of reference balls that hold at least one sample (robust to reference outliers, unlike
recall). Same features, k and subsets as precision/recall in the protocol.
"""

from __future__ import annotations

from typing import Any

import torch

from interhandgen.evaluation.metrics import (
    _as_feature_tensor,
    _block_distances,
    _check_positive_int,
    _check_same_dim,
    knn_radii,
)

__all__ = ["density_coverage"]


def density_coverage(real: Any, fake: Any, k: int = 5, block_size: int = 1024,
                     device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                     ) -> tuple[float, float]:
    """(density, coverage) of ``fake`` [M, D] against ``real`` [N, D], N > k, M >= 1.

    The reference x fake distance matrix is computed in blocks of ``block_size`` reference rows (memory
    O(block_size * M));
    a point exactly on a ball's boundary counts as inside (<=), as for precision/recall.
    """
    k = _check_positive_int(k, "k")
    block_size = _check_positive_int(block_size, "block_size")
    if device is None:
        device = real.device if isinstance(real, torch.Tensor) else "cpu"
    r = _as_feature_tensor(real, "real", min_samples=k + 1, dtype=dtype, device=device)
    f = _as_feature_tensor(fake, "fake", min_samples=1, dtype=dtype, device=device)
    _check_same_dim(r, f, "real", "fake")
    radii = knn_radii(r, k, block_size)
    inside_count = torch.zeros((), dtype=torch.float64, device=r.device)
    covered = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    # Rows are reference points, as in knn_radii: the distance of x_i to a sample equal to x_j is then computed
    # exactly as the radius' distance of x_i to x_j (the mm-based cdist is not bitwise symmetric), so a sample on
    # a ball's boundary is decided the same way as the reference neighbour that set the radius.
    for start in range(0, r.shape[0], block_size):
        inside = _block_distances(r[start:start + block_size], f) <= radii[start:start + block_size, None]
        inside_count += inside.sum(dtype=torch.float64)
        covered[start:start + block_size] = inside.any(dim=1)
    return float(inside_count / (k * f.shape[0])), float(covered.double().mean())
