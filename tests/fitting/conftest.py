"""Shared small fitting problems for the tests of interhandgen.fitting (seeded, well-separated hands)."""

from __future__ import annotations

import pytest
import torch

from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d


def random_vectors(batch: int, seed: int = 0, separation: float = 0.25) -> torch.Tensor:
    """Camera-frame hand vectors [B, 2, 64]: moderate poses and shapes, random rotations, hands ``separation``
    metres apart (no contact) about 0.5 m in front of the camera."""
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(batch, 2, 64)
    y[..., :45] = torch.randn(batch, 2, 45, generator=g) * 0.3
    y[..., 45:55] = torch.randn(batch, 2, 10, generator=g) * 0.5
    y[..., 55:61] = matrix_to_rot6d(axis_angle_to_matrix(torch.randn(batch, 2, 3, generator=g)))
    y[..., 61:] = torch.tensor([0.0, 0.0, 0.5]) + torch.randn(batch, 2, 3, generator=g) * 0.01
    y[:, 0, 61] -= separation / 2
    y[:, 1, 61] += separation / 2
    return y


@pytest.fixture
def make_vectors():
    return random_vectors
