"""The data-floor draw: a second set of real pairs, disjoint from the reference, evaluated like the samples."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError

__all__ = ["floor_draw"]


def floor_draw(floor_path: str | os.PathLike, floor_split: str, reference_path: str | os.PathLike,
               reference_split: str, reference: TwoHandSet, size: int, seed: int = 0) -> TwoHandSet:
    """Load ``floor_split`` of ``floor_path`` ('all': the whole file) and draw ``size`` pairs (seeded, without
    replacement; all of them when the split holds fewer).

    Raises InputError when the draw cannot be disjoint from the reference: the same file with the same split, or
    the same file without split labels.
    """
    if size < 2:
        raise InputError(f"--floor-size must be >= 2, got {size}")
    floor = TwoHandSet.load(floor_path)
    same_file = Path(floor_path).resolve() == Path(reference_path).resolve()
    ref_part = "all" if reference_split == "all" or floor.split is None else reference_split
    if floor_split != "all":
        if floor.split is None:
            raise InputError(f"the floor set {floor_path} has no 'split' field, so --floor-split {floor_split} cannot "
                             "be selected: pass --floor-split all with a separate --floor file, or --no-floor")
        floor = floor.select_split(floor_split)
    if same_file and (floor_split == "all" or ref_part == "all" or floor_split == ref_part):
        raise InputError(f"the floor draw ({floor_path}, split {floor_split}) overlaps the reference ({reference_path},"
                         f" split {ref_part}): pass a disjoint --floor file or --floor-split, or --no-floor")
    if len(floor) < 2:
        raise InputError(f"the floor draw ({floor_path}, split {floor_split}) has {len(floor)} pair(s); at least 2 "
                         "are needed")
    if len(floor) > size:
        rng = np.random.default_rng(seed + 7)
        floor = floor[np.sort(rng.choice(len(floor), size, replace=False))]
    return floor
