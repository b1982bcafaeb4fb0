"""Shared test data of the viewer tests."""

from __future__ import annotations

import numpy as np
import pytest

from interhandgen.data.format import TwoHandSet


def make_crafted_pairs(offsets) -> TwoHandSet:
    """Open hands in the rest pose, left at the origin, right translated by each offset (metres).

    With an offset of 12 cm along x the right hand's fingers enter the left hand's; at 30 cm the hands are apart.
    """
    n = len(offsets)
    zeros = lambda d: np.zeros((n, d))  # noqa: E731
    left = dict(pose=zeros(45), betas=zeros(10), global_orient=zeros(3), transl=zeros(3))
    right = dict(pose=zeros(45), betas=zeros(10), global_orient=zeros(3), transl=np.asarray(offsets, dtype=float))
    return TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, category=[0] * n,
                      category_names=["crafted"], metadata={"seed": 7})


@pytest.fixture(scope="session")
def crafted_pairs():
    """The builder :func:`make_crafted_pairs`."""
    return make_crafted_pairs
