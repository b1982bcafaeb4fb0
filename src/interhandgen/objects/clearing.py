"""Exact clearance of sampled hands from their objects, in the world frame of a two-hand set with objects.

The sampler's checks judge a hand against its object by planes through the object's surface samples and by the
hand's inscribed spheres; a plate's rim or a bowl's wall can pass through a hand between both. This stage takes
the hands those checks screen as possibly inside (``screen``), measures them exactly (manifold3d booleans of the
meshes) and moves those with more than ``min_cm3`` inside by the shortest clearing translation
(:func:`interhandgen.geometry.clearance.clearing_translations`): still within the contact distance of the object,
no deeper in the other hand. Left hands first, then right hands against the moved left hands.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch

from interhandgen.data.format import HAND_SIDES, TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.geometry.clearance import clearing_translations
from interhandgen.objects.metrics import CONTACT_THRESHOLD, object_world_vertices, require_objects

__all__ = ["clear_hands_exactly"]


def clear_hands_exactly(two_hands: TwoHandSet, screen: np.ndarray, steps_mm: Sequence[float], rounds: int = 2,
                        min_cm3: float = 0.03, sides: Sequence[str] = HAND_SIDES, models: dict | None = None,
                        progress: bool = False) -> tuple[TwoHandSet, dict]:
    """The set with screened hands translated out of their objects, and a record of the stage.

    Args:
        two_hands: pairs with an object library (world frame).
        screen: [N, 2] bool, (left, right): the hands to measure.
        steps_mm: the translation lengths tried (mm).
        rounds: search rounds per hand.
        min_cm3: hands with at most this volume inside their object are measured but not moved.
        sides: the sides that may move (completion keeps the given hand).
        models: hand layers for the set's conventions (default: its own).
        progress: progress bars over the measured hands.
    Returns:
        (the set with the moved hands' ``transl`` changed, a dict with per side the hands measured, searched and
        moved, their summed volumes before and after (cm^3) and the moved pairs' indices).
    """
    library = require_objects(two_hands)
    screen = np.asarray(screen)
    n = len(two_hands)
    if screen.dtype != bool or screen.shape != (n, 2):
        raise InputError(f"argument 'screen' must be a [{n}, 2] bool array (left, right), got {screen.dtype} "
                         f"{screen.shape}")
    for side in sides:
        if side not in HAND_SIDES:
            raise InputError(f"argument 'sides' must name 'left' and/or 'right', got {side!r}")
    models = models if models is not None else two_hands.hand_models()
    steps = [float(m) / 1000.0 for m in steps_mm]
    record: dict = {"rule": "exact intersection volume (manifold3d) of screened hands; moved when above "
                            f"{min_cm3} cm^3 by the shortest clearing translation",
                    "steps_mm": list(map(float, steps_mm)), "rounds": int(rounds)}
    # one forward of every screened pair; a move only translates a hand, so its vertices follow by the same shift
    screened = np.flatnonzero(screen.any(axis=1))
    verts = {k: v.numpy() for k, v in two_hands[screened].vertices(models, dtype=torch.float64).items()}
    at = np.full(n, -1)
    at[screened] = np.arange(screened.size)
    transl = {side: two_hands.hand(side).transl.copy() for side in HAND_SIDES}
    for s, side in enumerate(HAND_SIDES):
        if side not in sides:
            continue
        rows = np.flatnonzero(screen[:, s])
        entry = {"measured": int(rows.size), "searched": 0, "moved": [], "volume_before_cm3": 0.0,
                 "volume_after_cm3": 0.0}
        record[side] = entry
        if not rows.size:
            continue
        part = two_hands[rows]
        other = HAND_SIDES[1 - s]
        # rows sharing a placement (object and pose) share its solid
        placements = np.concatenate([part.object_id[:, None].astype(np.float64), part.object_pose], axis=1)
        unique, index = np.unique(placements, axis=0, return_inverse=True)
        solids = [(object_world_vertices(library.vertices[int(u[0])], u[None, 1:])[0], library.faces[int(u[0])])
                  for u in unique]
        res = clearing_translations(verts[side][at[rows]], models[side].faces_np, solids, steps,
                                    solid_index=index.ravel(), guards=verts[other][at[rows]],
                                    guard_faces=models[other].faces_np, contact=CONTACT_THRESHOLD, rounds=rounds,
                                    search_above_cm3=min_cm3, progress=progress, desc=f"exact clearance ({side})")
        moved = np.flatnonzero(np.any(res.shift != 0, axis=1))
        entry.update(searched=int((res.volume_before > min_cm3).sum()), moved=rows[moved].tolist(),
                     volume_before_cm3=float(res.volume_before.sum()), volume_after_cm3=float(res.volume_after.sum()))
        transl[side][rows[moved]] += res.shift[moved].astype(transl[side].dtype)
        verts[side][at[rows[moved]]] += res.shift[moved][:, None, :]
    out = two_hands._replace(**{side: dataclasses.replace(two_hands.hand(side), transl=transl[side])
                                for side in HAND_SIDES if record.get(side, {}).get("moved")})
    return out, record
