"""Exact clearance of a hand from a rigid solid by a translation: the shortest of a set of steps along a set of
directions after which the hand's boolean intersection with the solid (manifold3d) is smallest, keeping it in
contact with the solid and no deeper in a third mesh (the other hand) than before.

Every candidate is judged exactly: the intersection volume of the translated, sealed hand with the solid, the
gap between their surfaces (manifold3d ``min_gap``) and the intersection volume with the guard mesh. A hand's
manifold is built once and translated per candidate (a translation does not rebuild it), so a candidate costs
one boolean. manifold3d runs its booleans on all the process's cores (measured: two worker processes pinned to
one core each were no faster on 2 cores). Units: metres in and out, cm^3 for volumes (as
:func:`~interhandgen.geometry.penetration_volume`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from interhandgen.exceptions import InputError
from interhandgen.geometry import _volume_worker as worker_lib
from interhandgen.geometry.sealing import check_faces, seal, seal_faces
from interhandgen.geometry.volume import PenetrationVolumeError, _as_numpy_verts

__all__ = ["ClearanceResult", "clearing_translations", "AXIS_DIRECTIONS"]

#: The six senses of the coordinate axes: the default search directions.
AXIS_DIRECTIONS = np.concatenate([np.eye(3), -np.eye(3)])
_CM = worker_lib.CM_PER_M
#: min_gap's search length (cm) for a hand's gap before the search: a gap beyond it reads as this long.
_GAP_SEARCH_CM = 5.0


@dataclass
class ClearanceResult:
    """Per row: ``shift`` [N, 3] the chosen translation (metres; 0 where none qualified or the row was clear),
    ``volume_before`` / ``volume_after`` [N] the intersection volume with the solid (cm^3; of the hand, or with
    companions of the hand and its companion together), and ``guard_before`` / ``guard_after`` [N] with the guard
    mesh (cm^3; 0 without guards; NaN for rows not searched, whose guard is not measured)."""

    shift: np.ndarray
    volume_before: np.ndarray
    volume_after: np.ndarray
    guard_before: np.ndarray
    guard_after: np.ndarray


def clearing_translations(
    hands: Any,
    hand_faces: Any,
    solids: Sequence[tuple[np.ndarray, np.ndarray]],
    steps: Sequence[float],
    *,
    solid_index: Any = None,
    guards: Any = None,
    guard_faces: Any = None,
    companions: Any = None,
    companion_faces: Any = None,
    directions: np.ndarray = AXIS_DIRECTIONS,
    contact: float = 0.002,
    rounds: int = 2,
    clear_cm3: float = 1e-3,
    guard_slack_cm3: float = 1e-3,
    search_above_cm3: float = 0.0,
    refine: float = 0.001,
    progress: bool = False,
    desc: str = "exact clearance",
) -> ClearanceResult:
    """Translations that take hands out of solids, judged exactly.

    Each round tries, from the hand's current translation, every direction at each step (shortest first); a
    direction that clears the solid at a step (volume at most ``clear_cm3``) is bisected back towards the previous
    step until the bracket is at most ``refine`` long, and the shortest clearing length found is its candidate
    (so coarse steps cost few booleans yet the move is about as short as needed). A candidate qualifies when its
    intersection volume with the solid is below the current one by more than ``clear_cm3``, its gap to the solid
    is below ``max(contact, the gap before the search)`` (a touching hand stays in touch), and its intersection
    with the guard mesh exceeds the one before the search by at most
    ``guard_slack_cm3``. A round takes the first qualifying clearing candidate (directions in their order) of the
    shortest step at which one exists, else the qualifying candidate with the least volume over all steps (the
    shorter step on a tie); a round without one ends the search. Rows whose volume before is at most
    ``max(clear_cm3, search_above_cm3)`` are measured but not searched.

    Args:
        hands: [N, V, 3] hand vertices (metres; numpy or torch), ``hand_faces`` [F, 3] (an open wrist is sealed).
        solids: pairs (vertices [W, 3] metres, faces [G, 3]) of closed, outward-oriented solids: one per row, or
            with ``solid_index`` [N] (int) the solid of each row (a solid shared by rows is built once).
        steps: translation lengths (metres, > 0), tried in increasing order.
        guards: optional [N, U, 3] vertices of a mesh per row that the hand must not enter further (the other
            hand), ``guard_faces`` [H, 3].
        companions: optional [N, U, 3] vertices of a mesh per row that moves WITH the hand (the other hand, their
            relative pose kept), ``companion_faces`` [H, 3]: the volumes are those of the two together, and each
            must stay within its own contact reach; not with ``guards``.
        directions: [D, 3] search directions (normalised here).
        contact: the gap (metres) below which a hand touches its solid.
        rounds: search rounds, each from the previous one's translation.
        refine: the bisection's resolution (metres, > 0).
        progress: a progress bar (tqdm, ``desc``) over the rows.
    Returns:
        :class:`ClearanceResult`.
    Raises:
        InputError: bad shapes or values (naming the argument).
        PenetrationVolumeError: a mesh that manifold3d rejects (naming the row).
    """
    import manifold3d as m3

    hands = _as_numpy(hands, "hands")
    n = hands.shape[0]
    if solid_index is None:
        if len(solids) != n:
            raise InputError(f"argument 'solids' must hold one (vertices, faces) pair per hand row ({n}), got "
                             f"{len(solids)} (or give solid_index)")
        solid_index = np.arange(n)
    solid_index = np.asarray(solid_index)
    if solid_index.shape != (n,) or solid_index.dtype.kind not in "iu" or (
            n and (solid_index.min() < 0 or solid_index.max() >= len(solids))):
        raise InputError(f"argument 'solid_index' must be [{n}] integers in [0, {len(solids)}), got "
                         f"{solid_index.dtype} {solid_index.shape}")
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or steps.size == 0 or not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        raise InputError(f"argument 'steps' must be a non-empty list of positive lengths (metres), got "
                         f"{steps.tolist()}")
    steps = np.sort(steps)
    directions = np.asarray(directions, dtype=np.float64)
    if directions.ndim != 2 or directions.shape[1] != 3 or directions.shape[0] == 0:
        raise InputError(f"argument 'directions' must have shape [D, 3], got {tuple(directions.shape)}")
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms < 1e-12):
        raise InputError("argument 'directions' must hold finite, non-zero vectors")
    directions = directions / norms
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InputError(f"argument 'rounds' must be a positive integer, got {rounds!r}")
    for name, value in (("contact", contact), ("clear_cm3", clear_cm3), ("guard_slack_cm3", guard_slack_cm3),
                        ("search_above_cm3", search_above_cm3)):
        if not (np.isfinite(value) and value >= 0):
            raise InputError(f"argument '{name}' must be a finite number >= 0, got {value!r}")
    if not (np.isfinite(refine) and refine > 0):
        raise InputError(f"argument 'refine' must be a finite length > 0 (metres), got {refine!r}")
    plan = seal_faces(check_faces(hand_faces, hands.shape[1], "hand_faces"), hands.shape[1])
    hands_sealed, faces_sealed = seal(hands, plan)
    guards_sealed = _second_mesh(guards, guard_faces, n, "guards", "guard_faces")
    companions_sealed = _second_mesh(companions, companion_faces, n, "companions", "companion_faces")
    if guards_sealed is not None and companions_sealed is not None:
        raise InputError("arguments 'guards' and 'companions' exclude each other (a companion moves with the hand)")

    result = np.zeros((n, 7))
    built: dict[int, Any] = {}
    for i in tqdm(range(n), desc=desc, unit="hand", disable=not progress):
        k = int(solid_index[i])
        if k not in built:
            built[k] = _solid(m3, solids[k], k)
        solid = built[k]
        hand = _built(m3, hands_sealed[i], faces_sealed, "the hand", i)
        parts = [hand]
        if companions_sealed is not None:
            parts.append(_built(m3, companions_sealed[0][i], companions_sealed[1], "the companion", i))
            hand = parts[0] + parts[1]
        # the guard is built only for a row that is searched
        guard = (lambda i=i: _built(m3, guards_sealed[0][i], guards_sealed[1], "the guard", i)) \
            if guards_sealed is not None else None
        _search_row(hand, parts, solid, guard, steps, directions, contact * _CM, rounds, clear_cm3,
                    guard_slack_cm3, max(clear_cm3, search_above_cm3), refine, result[i])
    return ClearanceResult(result[:, :3].copy(), *(result[:, k].copy() for k in range(3, 7)))


def _search_row(hand, parts: list, solid, guard, steps: np.ndarray, directions: np.ndarray, contact_cm: float,
                rounds: int, clear: float, slack: float, search_above: float, refine: float,
                result: np.ndarray) -> None:
    """One row of :func:`clearing_translations` (manifolds in cm; ``guard``: None or a function building it);
    writes ``result`` [7] = (shift xyz m, volume before, after, guard before, after; the guard's NaN when the row
    is not searched)."""
    volume = float((hand ^ solid).volume())
    unmeasured = np.nan if guard is not None else 0.0
    result[:] = (0.0, 0.0, 0.0, volume, volume, unmeasured, unmeasured)
    if volume <= search_above:
        return
    if guard is not None:
        guard = guard()
    guard_volume = float((hand ^ guard).volume()) if guard is not None else 0.0
    result[5] = result[6] = guard_volume
    reach = [max(contact_cm, float(p.min_gap(solid, _GAP_SEARCH_CM))) for p in parts]
    guard_limit = guard_volume + slack
    current = np.zeros(3)

    def qualifies(t: np.ndarray, moved) -> float | None:
        """The guard volume of a candidate that keeps every part in touch and the guard out, else None."""
        # min_gap returns at most its search length, so twice the reach decides "below the reach"
        if any(float(p.translate(tuple(t * _CM)).min_gap(solid, 2.0 * r)) >= r for p, r in zip(parts, reach)):
            return None
        g = float((moved ^ guard).volume()) if guard is not None else 0.0
        return g if g <= guard_limit else None

    def volume_at(t: np.ndarray):
        moved = hand.translate(tuple(t * _CM))
        return float((moved ^ solid).volume()), moved

    for _ in range(rounds):
        best = None  # (volume, translation m, guard volume)
        previous = 0.0
        for step in steps:
            found, clearing = [], []
            for d in directions:
                t = current + d * step
                v, moved = volume_at(t)
                if v <= clear:
                    clearing.append((d, (v, moved)))
                elif v < volume - clear:
                    found.append((v, t, moved))
            for d, (v, moved) in clearing:  # in the directions' order; each bisected back to its shortest clearing
                lo, hi = previous, step
                while hi - lo > refine:
                    mid = 0.5 * (lo + hi)
                    v_mid, moved_mid = volume_at(current + d * mid)
                    if v_mid <= clear:
                        hi, v, moved = mid, v_mid, moved_mid
                    else:
                        lo = mid
                t = current + d * hi
                g = qualifies(t, moved)
                if g is not None:
                    best = (v, t, g)
                    break
            if best is not None and best[0] <= clear:
                break
            found.sort(key=lambda c: c[0])
            for v, t, moved in found:  # least volume first; qualification judged only as far as needed
                g = qualifies(t, moved)
                if g is None:
                    continue
                if best is None or v < best[0]:
                    best = (v, t, g)
                break
            previous = step
        if best is None:
            return
        volume, current = best[0], best[1]
        result[:3], result[4], result[6] = current, volume, best[2]
        if volume <= clear:
            return


def _solid(m3, pair, k: int):
    try:
        verts, faces = pair
    except (TypeError, ValueError):
        raise InputError(f"argument 'solids': entry {k} must be a (vertices, faces) pair") from None
    verts = np.asarray(verts, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] != 3 or not np.isfinite(verts).all():
        raise InputError(f"argument 'solids': entry {k} vertices must be finite with shape [W, 3], got "
                         f"{tuple(verts.shape)}")
    return _built(m3, verts, check_faces(faces, verts.shape[0], f"solids[{k}] faces"), "the solid", k)


def _built(m3, verts: np.ndarray, faces: np.ndarray, what: str, row: int):
    mesh = worker_lib._manifold(m3, verts, np.ascontiguousarray(faces, dtype=np.uint64))
    code = worker_lib._code(mesh.status())
    if code != worker_lib._code(m3.Error.NoError):
        raise PenetrationVolumeError(f"clearing_translations: manifold3d rejected {what} of row {row} (status "
                                     f"{code}); it must be a closed, consistently oriented mesh")
    return mesh


def _second_mesh(verts: Any, faces: Any, n: int, name: str, faces_name: str):
    """(sealed vertices [N, U', 3], sealed faces) of an optional per-row mesh, or None."""
    if (verts is None) != (faces is None):
        raise InputError(f"arguments '{name}' and '{faces_name}' go together")
    if verts is None:
        return None
    verts = _as_numpy(verts, name)
    if verts.shape[0] != n:
        raise InputError(f"argument '{name}' must have {n} rows like 'hands', got {verts.shape[0]}")
    return seal(verts, seal_faces(check_faces(faces, verts.shape[1], faces_name), verts.shape[1]))


def _as_numpy(verts: Any, name: str) -> np.ndarray:
    return _as_numpy_verts(verts, name).astype(np.float64, copy=False)
