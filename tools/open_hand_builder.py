"""Generator of the bundled open hand: an original, MANO-compatible right hand built from anatomy numbers.

``python tools/open_hand_builder.py --out src/interhandgen/hand/assets/open_hand_right.npz``
rebuilds the shipped file bit for bit (see docs/open_hand.md for the recorded SHA-256).

Construction, in order (every step is deterministic numpy/scipy, plus manifold3d's level-set mesher):

1. Skeleton: the 16 MANO joints and 5 fingertips of a rest hand in MANO's right-hand axes (metres):
   fingers point along -x, the back of the hand faces +y (palm faces -y), the thumb and index lie on +z,
   the middle-finger MCP is at the origin and the wrist at about x = +9 cm.
2. Surface: a signed distance field (SDF) made of round cones (phalanges), a rounded palm slab, ellipsoids
   (thenar and hypothenar eminences, knuckles) and a capped wrist stub, combined with smooth unions; meshed
   by manifold3d's marching tetrahedra (closed, manifold by construction), relaxed tangentially and projected
   back onto the zero level for even triangles, and re-indexed in a canonical vertex order.
3. Skinning weights: per finger chain, a soft-max over distances to the bones, times a soft chain membership.
4. Joint regressor: non-negative weights on a ring of skin around each joint that reproduce the designed joint.
5. Shape space: linear deformation fields of anatomical parameters (palm length/width/thickness, five digit
   lengths, finger and thumb girth) with a covariance that includes a shared size factor; an exact PCA gives
   10 components ordered by variance.
6. Pose space: an anatomical sampler (flexion/abduction/twist per joint, within limits, with natural coupling,
   rejecting poses whose capsule skeleton collides); its mean is ``hands_mean`` and its principal directions
   are ``hands_components`` (rows by variance).
7. Pose correctives: posedirs regressed so that linear blend skinning reproduces dual-quaternion skinning on
   poses of the pose space (no volume loss at bent joints).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from interhandgen._atomic import atomic_write_bytes as _atomic_write_bytes
from interhandgen.hand.model_data import HandModelData

MM = 1e-3
# Finger chains in MANO joint order: (joints from proximal to distal), tip index into TIPS.
FINGERS = {
    "index": (1, 2, 3),
    "middle": (4, 5, 6),
    "pinky": (7, 8, 9),
    "ring": (10, 11, 12),
    "thumb": (13, 14, 15),
}
# Fingertip order of HandModelData.fingertip_ids: thumb, index, middle, ring, pinky.
TIP_ORDER = ("thumb", "index", "middle", "ring", "pinky")
PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])


# ----------------------------------------------------------------------------------------------- design
@dataclasses.dataclass(frozen=True)
class FingerDesign:
    """One finger of the rest hand (lengths in mm, angles in degrees).

    base: MCP joint (thumb: CMC joint) position [x, y, z] in mm.
    yaw: rest direction in the palm plane, degrees from -x towards +z (radial).
    pitch: rest direction out of the palm plane, degrees towards -y (palmar).
    lengths: joint-to-joint distances, the last one from the distal joint to the skin at the tip.
    radii: skin radius at the base joint, the two further joints and the tip sphere.
    """

    base: tuple[float, float, float]
    yaw: float
    pitch: float
    lengths: tuple[float, float, float]
    radii: tuple[float, float, float, float]
    segment_yaw: tuple[float, float, float] = (0.0, 0.0, 0.0)
    segment_pitch: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class HandDesign:
    """The numbers of the rest hand (mm). Defaults: an adult hand of length ~18.5 cm, breadth ~8.5 cm.

    Finger lengths follow Chatzioglou et al. 2024 (palmar lengths, mean of n = 51 young adults) plus the
    distance from the MCP joint centre to the proximal digital crease (about 22 mm); see docs/open_hand.md.
    """

    wrist: tuple[float, float, float] = (90.0, 0.0, 1.0)
    fingers: tuple[tuple[str, FingerDesign], ...] = (
        ("index", FingerDesign((6.0, -1.5, 26.0), 5.0, 0.0, (42.0, 25.0, 21.0), (9.2, 8.3, 7.4, 6.7))),
        ("middle", FingerDesign((0.0, 0.0, 2.0), 0.0, 0.0, (45.0, 28.0, 22.0), (9.5, 8.6, 7.6, 6.9))),
        ("ring", FingerDesign((8.0, -1.5, -19.5), -5.0, 0.0, (42.0, 27.0, 21.0), (9.0, 8.1, 7.2, 6.5))),
        ("pinky", FingerDesign((21.0, -5.0, -38.0), -12.0, 0.0, (33.0, 20.0, 19.0), (8.0, 7.2, 6.5, 5.9))),
        ("thumb", FingerDesign((68.0, -13.0, 24.0), 42.0, 9.0, (44.0, 31.0, 26.0), (12.0, 10.2, 9.3, 8.4),
                               segment_yaw=(0.0, -8.0, -4.0), segment_pitch=(0.0, 3.0, 2.0))),
    )
    # Thumb pad orientation: its normal is palmar (-y) turned by this angle about the thumb axis towards -z
    # (the thumb pad faces the index finger, as in a relaxed hand).
    thumb_pronation: float = 70.0
    # Palm slab: outline points (x, z) in mm, rounded by palm_round; half-thickness at the MCPs and at the wrist.
    palm_outline: tuple[tuple[float, float], ...] = (
        (4.0, 24.0), (-1.0, 2.0), (6.0, -19.0), (19.0, -36.0), (50.0, -37.0), (86.0, -22.0),
        (86.0, 20.0), (55.0, 26.0),
    )
    palm_round: float = 9.0
    palm_half_thickness: tuple[float, float] = (11.5, 15.5)
    palm_arch: float = 3.5  # mid-plane y = -palm_arch * z^2 (metres): the back of the hand is convex
    wrist_half_axes: tuple[float, float] = (27.0, 18.0)  # forearm stub cross-section (z, y)
    wrist_end: float = 112.0  # x of the closed end of the stub
    thenar_half_axes: tuple[float, float, float] = (24.0, 15.0, 12.0)
    hypothenar_half_axes: tuple[float, float, float] = (26.0, 10.5, 11.0)
    knuckle_radius: float = 6.5

    def finger(self, name: str) -> FingerDesign:
        return dict(self.fingers)[name]


DESIGN = HandDesign()


def _check_angles(angles: np.ndarray, name: str = "angles") -> np.ndarray:
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim < 2 or angles.shape[-2:] != (15, 3):
        raise ValueError(f"{name} must have shape [..., 15, 3] (flexion, abduction, twist of joints 1..15), got {list(angles.shape)}")
    if not np.isfinite(angles).all():
        raise ValueError(f"{name} contains NaN or inf")
    return angles


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _direction(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Unit vector: -x turned by yaw towards +z, then by pitch towards -y."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    return np.array([-math.cos(yaw) * math.cos(pitch), -math.sin(pitch), math.sin(yaw) * math.cos(pitch)])


def rest_skeleton(design: HandDesign = DESIGN) -> dict[str, np.ndarray]:
    """Rest joints [16, 3], fingertip skin points [5, 3] (thumb..pinky) and per-joint bone frames, metres.

    ``frames[j]`` ([16, 3, 3], columns = flexion axis, abduction axis (dorsal normal), bone direction) is the
    anatomical frame of joint j: positive rotation about column 0 flexes (the child moves towards the palm
    side), about column 1 deviates radially for the fingers, about column 2 twists (pronation for the right
    thumb). The frames are right-handed and orthonormal. Joint 0 gets the identity.
    """
    joints = np.zeros((16, 3))
    frames = np.tile(np.eye(3), (16, 1, 1))
    tips = {}
    joints[0] = np.array(design.wrist) * MM
    for name, (j0, j1, j2) in FINGERS.items():
        f = design.finger(name)
        p = np.array(f.base) * MM
        chain = [p]
        dirs = []
        for seg in range(3):
            d = _direction(f.yaw + f.segment_yaw[seg], f.pitch + f.segment_pitch[seg])
            p = p + d * f.lengths[seg] * MM
            chain.append(p)
            dirs.append(d)
        joints[[j0, j1, j2]] = chain[:3]
        tips[name] = chain[3]
        for j, d in zip((j0, j1, j2), dirs):
            if name == "thumb":
                palmar = _thumb_pad_normal(d, design.thumb_pronation)
                dorsal = -palmar
            else:
                dorsal = np.array([0.0, 1.0, 0.0])
            dorsal = _unit(dorsal - d * (dorsal @ d))
            flex = np.cross(dorsal, d)
            frames[j] = np.stack([flex, dorsal, d], axis=1)
    tip_array = np.stack([tips[n] for n in TIP_ORDER])
    return {"joints": joints, "tips": tip_array, "frames": frames}


def _thumb_pad_normal(d: np.ndarray, pronation_deg: float) -> np.ndarray:
    """Palmar (-y) normal turned about the thumb axis d by ``pronation_deg``, the way that faces it to -z."""
    base = np.array([0.0, -1.0, 0.0])
    base = _unit(base - d * (base @ d))
    turned = [Rotation.from_rotvec(s * d * math.radians(pronation_deg)).apply(base) for s in (1.0, -1.0)]
    return turned[0] if turned[0][2] < turned[1][2] else turned[1]


# ------------------------------------------------------------------------------------------------- SDF
def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (blend radius k, metres) of two distance fields (negative inside)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return -_smin(-a, -b, k)


def _round_cone(p: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> np.ndarray:
    """Exact signed distance [N] from points p [N, 3] to the sphere-swept cone between spheres (a, ra), (b, rb)."""
    ba = b - a
    l2 = ba @ ba
    rr = ra - rb
    a2 = l2 - rr * rr
    il2 = 1.0 / l2
    pa = p - a
    y = pa @ ba
    z = y - l2
    x2 = np.sum((pa * l2 - y[:, None] * ba) ** 2, axis=1)
    y2 = y * y * l2
    z2 = z * z * l2
    k = math.copysign(1.0, rr) * rr * rr * x2
    d_mid = (np.sqrt(x2 * a2 * il2) + y * rr) * il2 - ra
    d_b = np.sqrt(x2 + z2) * il2 - rb
    d_a = np.sqrt(x2 + y2) * il2 - ra
    return np.where(np.sign(z) * a2 * z2 > k, d_b, np.where(np.sign(y) * a2 * y2 < k, d_a, d_mid))


def _ellipsoid(p: np.ndarray, center: np.ndarray, axes: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Approximate signed distance (Quilez's bound) to an ellipsoid with columns of ``axes`` as its axes."""
    q = (p - center) @ axes
    k0 = np.linalg.norm(q / half, axis=1)
    k1 = np.linalg.norm(q / (half * half), axis=1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _convex_polygon_sdf(q: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Exact signed distance [N] from 2-D points q [N, 2] to a convex polygon poly [M, 2] (counter-clockwise)."""
    a = poly
    b = np.roll(poly, -1, axis=0)
    e = b - a  # [M, 2]
    w = q[:, None, :] - a[None]  # [N, M, 2]
    t = np.clip(np.sum(w * e, -1) / np.sum(e * e, -1), 0.0, 1.0)
    dist = np.linalg.norm(w - t[..., None] * e, axis=-1).min(axis=1)
    cross = e[None, :, 0] * w[..., 1] - e[None, :, 1] * w[..., 0]
    inside = np.all(cross >= 0, axis=1)
    return np.where(inside, -dist, dist)


def _ccw(poly: np.ndarray) -> np.ndarray:
    area = np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    return poly if area > 0 else poly[::-1]


def _frame_from_direction(d: np.ndarray, up: np.ndarray) -> np.ndarray:
    d = _unit(d)
    u = _unit(up - d * (up @ d))
    return np.stack([d, u, np.cross(d, u)], axis=1)


def hand_sdf(p: np.ndarray, design: HandDesign = DESIGN) -> np.ndarray:
    """Signed distance field of the rest hand (metres, negative inside) at points p [N, 3]."""
    sk = rest_skeleton(design)
    J, tips = sk["joints"], sk["tips"]
    tip_of = dict(zip(TIP_ORDER, tips))
    # Palm slab: rounded convex outline in (x, z), extruded along y around an arched mid-plane.
    poly = _ccw(np.array(design.palm_outline) * MM)
    d2 = _convex_polygon_sdf(p[:, [0, 2]], poly) - design.palm_round * MM
    t = np.clip((p[:, 0] - 0.0) / (design.wrist[0] * MM), 0.0, 1.0)
    h0, h1 = design.palm_half_thickness
    half = (h0 + (h1 - h0) * t) * MM
    mid = -design.palm_arch * p[:, 2] ** 2 - 0.001
    dy = np.abs(p[:, 1] - mid) - half
    r_edge = 0.8 * half
    qx, qy = d2 + r_edge, dy + r_edge
    palm = np.minimum(np.maximum(qx, qy), 0.0) + np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) - r_edge
    # Wrist stub: elliptic cylinder along x from the palm to a closed, rounded end.
    wz, wy = np.array(design.wrist_half_axes) * MM
    wc = J[0] + np.array([0.0, 0.002, 0.0])
    rad = np.hypot((p[:, 2] - wc[2]) / wz, (p[:, 1] - wc[1]) / wy) * min(wz, wy) - min(wz, wy)
    stub = _smax(rad, np.maximum(p[:, 0] - design.wrist_end * MM, 0.05 - p[:, 0]), 0.006)
    body = _smin(palm, stub, 0.014)
    # Thenar eminence along the thumb metacarpal (palmar side), hypothenar along the ulnar border.
    cmc, tmcp = J[13], J[14]
    th_axis = _frame_from_direction(tmcp - cmc, np.array([0.0, -1.0, 0.0]))
    th_center = cmc + 0.42 * (tmcp - cmc) + np.array([0.004, -0.002, -0.009])
    body = _smin(body, _ellipsoid(p, th_center, th_axis, np.array(design.thenar_half_axes) * MM), 0.010)
    hy_center = np.array([0.050, -0.006, -0.031])
    hy_axis = _frame_from_direction(np.array([-1.0, 0.0, -0.25]), np.array([0.0, -1.0, 0.0]))
    body = _smin(body, _ellipsoid(p, hy_center, hy_axis, np.array(design.hypothenar_half_axes) * MM), 0.010)
    # Fingers: chains of round cones; knuckle bumps on the back of the MCP joints.
    hand = body
    for name, (j0, j1, j2) in FINGERS.items():
        f = design.finger(name)
        r = np.array(f.radii) * MM
        tip = tip_of[name]
        tip_centre = tip - _unit(tip - J[j2]) * r[3]
        pts = [J[j0], J[j1], J[j2], tip_centre]
        finger = np.minimum.reduce([_round_cone(p, pts[s], pts[s + 1], r[s], r[s + 1]) for s in range(3)])
        if name != "thumb":
            knuckle = J[j0] + np.array([0.001, 0.0045, 0.0])
            finger = _smin(finger, np.linalg.norm(p - knuckle, axis=1) - design.knuckle_radius * MM, 0.004)
            k = 0.007
        else:
            k = 0.008
        hand = _smin(hand, finger, k)
    return hand


# ---------------------------------------------------------------------------------------------- meshing
def _grid_sdf(design: HandDesign, lo: np.ndarray, hi: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    axes = [np.arange(lo[i], hi[i] + step * 0.5, step) for i in range(3)]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel(), Z.ravel()], 1)
    vals = np.concatenate([hand_sdf(pts[i : i + 400_000], design) for i in range(0, len(pts), 400_000)])
    return vals.reshape(X.shape), np.array([len(a) for a in axes])


def _sdf_gradient(p: np.ndarray, design: HandDesign, eps: float = 1e-5) -> np.ndarray:
    offs = np.eye(3) * eps
    g = np.stack([hand_sdf(p + o, design) - hand_sdf(p - o, design) for o in offs], axis=1) / (2 * eps)
    return g


def _vertex_neighbors(faces: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse adjacency as (rows, cols) of unique undirected edges, both directions."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    e = np.unique(e, axis=0)
    return e[:, 0], e[:, 1]


def _project(v: np.ndarray, design: HandDesign, iters: int = 3) -> np.ndarray:
    for _ in range(iters):
        f = hand_sdf(v, design)
        g = _sdf_gradient(v, design)
        v = v - (f / np.maximum(np.sum(g * g, 1), 1e-12))[:, None] * g
    return v


def mesh_surface(design: HandDesign = DESIGN, edge_length: float = 0.0052, relax_iters: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Closed triangle mesh of the SDF's zero level: vertices [V, 3] (metres), faces [F, 3] (outward CCW).

    manifold3d's level set (marching tetrahedra on a body-centred cubic grid) gives a closed manifold; its
    sampling callback reads a 1.5 mm grid of the SDF (trilinear), then vertices are relaxed tangentially
    (umbrella operator minus its normal part) and projected onto the exact zero level.
    """
    import manifold3d

    sk = rest_skeleton(design)
    pts = np.concatenate([sk["joints"], sk["tips"]])
    lo = np.minimum(pts.min(0), [0, -0.03, -0.06]) - 0.03
    hi = np.maximum(pts.max(0), [design.wrist_end * MM, 0.03, 0.05]) + 0.03
    step = 0.0015
    grid, shape = _grid_sdf(design, lo, hi, step)
    flat = (-grid).ravel().tolist()  # manifold3d wants positive inside
    nx, ny, nz = (int(s) for s in shape)
    lx, ly, lz = (float(c) for c in lo)

    def sample(x: float, y: float, z: float) -> float:
        fx, fy, fz = (x - lx) / step, (y - ly) / step, (z - lz) / step
        i, j, k = min(max(int(fx), 0), nx - 2), min(max(int(fy), 0), ny - 2), min(max(int(fz), 0), nz - 2)
        tx, ty, tz = fx - i, fy - j, fz - k
        b = (i * ny + j) * nz + k
        c000, c001 = flat[b], flat[b + 1]
        c010, c011 = flat[b + nz], flat[b + nz + 1]
        c100, c101 = flat[b + ny * nz], flat[b + ny * nz + 1]
        c110, c111 = flat[b + ny * nz + nz], flat[b + ny * nz + nz + 1]
        c00 = c000 + (c001 - c000) * tz
        c01 = c010 + (c011 - c010) * tz
        c10 = c100 + (c101 - c100) * tz
        c11 = c110 + (c111 - c110) * tz
        c0 = c00 + (c01 - c00) * ty
        c1 = c10 + (c11 - c10) * ty
        return c0 + (c1 - c0) * tx

    bounds = [float(lo[0] + step), float(lo[1] + step), float(lo[2] + step),
              float(hi[0] - step), float(hi[1] - step), float(hi[2] - step)]
    solid = manifold3d.Manifold.level_set(sample, bounds, edge_length)
    mesh = solid.to_mesh64()
    v = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3].copy()
    f = np.asarray(mesh.tri_verts, dtype=np.int64).copy()
    v, f = _canonical_order(v, f)
    v = _project(v, design)
    rows, cols = _vertex_neighbors(f, len(v))
    deg = np.bincount(rows, minlength=len(v)).astype(np.float64)
    for _ in range(relax_iters):
        centroid = np.zeros_like(v)
        np.add.at(centroid, rows, v[cols])
        centroid /= deg[:, None]
        g = _unit(_sdf_gradient(v, design))
        delta = centroid - v
        delta -= g * np.sum(delta * g, 1, keepdims=True)
        v = _project(v + 0.6 * delta, design, iters=2)
    return _canonical_order(v, f)


def _canonical_order(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-index vertices by rounded (x, y, z) and faces by their sorted rotation, independent of mesher order."""
    key = np.round(v, 6)
    order = np.lexsort((key[:, 2], key[:, 1], key[:, 0]))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    v = v[order]
    f = inv[f]
    # Rotate each face so its smallest index comes first (keeps orientation), then sort faces.
    r = np.argmin(f, axis=1)
    f = np.stack([f[np.arange(len(f)), (r + i) % 3] for i in range(3)], 1)
    f = f[np.lexsort((f[:, 2], f[:, 1], f[:, 0]))]
    return v, f


# --------------------------------------------------------------------------------------------- skinning
def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance [N] from points [N, 3] to the segment ab, and the parameter t in [0, 1] of the closest point."""
    ab = b - a
    t = np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - a - t[:, None] * ab, axis=1), t


def _chain_segments(sk: dict[str, np.ndarray]) -> dict[str, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Per finger chain: (joint whose transform moves it, start, end) for its palm segments and its bones."""
    J = sk["joints"]
    tips = dict(zip(TIP_ORDER, sk["tips"]))
    forearm = (0, J[0], J[0] + np.array([0.03, 0.0, 0.0]))
    out = {}
    for name, (j0, j1, j2) in FINGERS.items():
        out[name] = [forearm, (0, J[0], J[j0]), (j0, J[j0], J[j1]), (j1, J[j1], J[j2]), (j2, J[j2], tips[name])]
    return out


def skinning_weights(
    v: np.ndarray, sk: dict[str, np.ndarray], tau_bone: float = 0.0032, tau_thumb: float = 0.009,
    tau_chain: float = 0.004,
) -> tuple[np.ndarray, np.ndarray]:
    """LBS weights [V, 16] and chain memberships [V, 5] (FINGERS order) from distances to the bones.

    Within a finger chain the weight of each segment is exp(-(d - d_min) / tau_bone): two segments that meet
    at a joint share the skin around it over a band whose width grows with the finger radius, so a bent
    joint rounds off instead of folding (tau_thumb for the thick thenar). Chains are mixed with weights
    exp(-((d_chain - d_nearest_chain) / tau_chain)^2), so skin in the web between two fingers follows both and
    skin on a finger follows only that finger (under 2 % from a neighbour at the PIP).
    """
    segs = _chain_segments(sk)
    W = np.zeros((len(v), 16))
    chain_d = []
    chain_w = []
    for name in FINGERS:
        d = np.stack([_segment_distance(v, a, b)[0] for _, a, b in segs[name]], axis=1)
        tau = tau_thumb if name == "thumb" else tau_bone  # the thenar is thick: blend it over a wider band
        e = np.exp(-(d - d.min(1, keepdims=True)) / tau)
        e /= e.sum(1, keepdims=True)
        w = np.zeros((len(v), 16))
        for k, (j, _, _) in enumerate(segs[name]):
            w[:, j] += e[:, k]
        chain_w.append(w)
        chain_d.append(d[:, 1:].min(1))
    chain_d = np.stack(chain_d, 1)
    # Gaussian in the distance excess: smooth across the webs, negligible a few mm onto a neighbouring finger.
    m = np.exp(-(((chain_d - chain_d.min(1, keepdims=True)) / tau_chain) ** 2))
    m /= m.sum(1, keepdims=True)
    for c in range(len(FINGERS)):
        W += m[:, c : c + 1] * chain_w[c]
    return W / W.sum(1, keepdims=True), m


def joint_regressor(v: np.ndarray, sk: dict[str, np.ndarray], memberships: np.ndarray) -> np.ndarray:
    """Dense, non-negative J_regressor [16, V]: for each joint, Gaussian weights w0 on the skin ring cut by the
    plane through the joint (normal: mean of the adjacent bone directions), replaced by the non-negative
    weights closest to w0 that sum to 1 and reproduce the designed rest joint (a bounded least-squares
    problem; the constraints are met to about 1e-9 m). Joints thus follow the skin under shape changes."""
    from scipy.optimize import lsq_linear

    J = sk["joints"]
    tips = dict(zip(TIP_ORDER, sk["tips"]))
    R = np.zeros((16, len(v)))
    chain_of = {j: c for c, (name, js) in enumerate(FINGERS.items()) for j in js}
    for j in range(16):
        if j == 0:
            normal, sel = np.array([1.0, 0.0, 0.0]), np.ones(len(v), bool)
            radius = 0.035
        else:
            name = list(FINGERS)[chain_of[j]]
            chain = FINGERS[name]
            k = chain.index(j)
            nxt = J[chain[k + 1]] if k < 2 else tips[name]
            prev = J[chain[k - 1]] if k > 0 else J[0]
            normal = _unit(_unit(nxt - J[j]) + _unit(J[j] - prev))
            sel = memberships[:, chain_of[j]] > 0.5
            radius = 0.025 if j == 13 else 0.016
        dist_plane = (v - J[j]) @ normal
        dist = np.linalg.norm(v - J[j], axis=1)
        w0 = np.exp(-0.5 * (dist_plane / 0.002) ** 2) * (dist < radius) * sel
        if j == 13:  # the thumb CMC sits inside the thenar: use a ball of skin around it instead of a ring
            w0 = np.exp(-0.5 * (dist / 0.012) ** 2) * sel
        idx = np.nonzero(w0 > 1e-3)[0]
        w = w0[idx] / w0[idx].sum()
        # Constraint rows in mm and heavily weighted, so they hold far below the model's precision.
        A = np.concatenate([np.ones((1, len(idx))), v[idx].T * 1e3]) * 1e4
        b = np.concatenate([[1.0], J[j] * 1e3]) * 1e4
        res = lsq_linear(np.concatenate([A, np.eye(len(idx))]), np.concatenate([b, w]), bounds=(0.0, np.inf),
                         method="bvls", tol=1e-14, max_iter=10_000)
        R[j, idx] = res.x / res.x.sum()
    return R


# ------------------------------------------------------------------------------------------ shape space
# Anatomical shape parameters, each a relative change (0.01 = 1 %). Overall size is not a separate field: it
# is all parameters changing together (a uniform scaling about the wrist is exactly the sum of the ten fields),
# which the covariance expresses as a shared factor. Standard deviations assumed for adults: hand length SD
# about 5 % of the mean, breadth 5-6 %, finger lengths 6-8 % of which part is shared by all fingers.
SHAPE_PARAMETERS = (
    "palm_length", "palm_width", "palm_thickness",
    "index_length", "middle_length", "ring_length", "pinky_length", "thumb_length", "finger_girth", "thumb_girth",
)


def shape_parameter_covariance() -> np.ndarray:
    """Covariance [10, 10] of the relative shape parameters (SHAPE_PARAMETERS order)."""
    size_sd = 0.045
    sd = np.array([0.025, 0.03, 0.05, 0.02, 0.02, 0.02, 0.025, 0.03, 0.05, 0.05])
    C = np.diag(sd**2) + size_sd**2  # shared factor: the whole hand scales
    fingers = slice(3, 8)
    C[fingers, fingers] += 0.02**2  # lengths of all fingers also vary together (long- vs short-fingered hands)
    return C


def shape_fields(v: np.ndarray, W: np.ndarray, sk: dict[str, np.ndarray]) -> np.ndarray:
    """Displacement fields [V, 3, 10] per unit of each shape parameter (SHAPE_PARAMETERS order), metres.

    A field is a skeletal deformation: the palm (joint 0) gets a linear map A about the wrist, each bone j a
    linear map S_j about its joint, joints move consistently down the tree (the child joint moves with its
    bone), and skin moves by the skinning-weighted blend of its bones' displacements.
    """
    J = sk["joints"]
    tips = dict(zip(TIP_ORDER, sk["tips"]))
    child = {}
    for name, js in FINGERS.items():
        for k, j in enumerate(js):
            child[j] = J[js[k + 1]] if k < 2 else tips[name]
    bone_dir = {j: _unit(child[j] - J[j]) for j in child}
    fields = []
    for pname in SHAPE_PARAMETERS:
        A = np.zeros((3, 3))
        S = {j: np.zeros((3, 3)) for j in child}
        if pname == "palm_length":
            A = np.diag([1.0, 0.0, 0.0])
        elif pname == "palm_width":
            A = np.diag([0.0, 0.0, 1.0])
        elif pname == "palm_thickness":
            A = np.diag([0.0, 1.0, 0.0])
        elif pname.endswith("_length"):
            for j in FINGERS[pname[: -len("_length")]]:
                S[j] = np.outer(bone_dir[j], bone_dir[j])
        elif pname in ("finger_girth", "thumb_girth"):
            for j in child:
                if (j in FINGERS["thumb"]) == (pname == "thumb_girth"):
                    S[j] = np.eye(3) - np.outer(bone_dir[j], bone_dir[j])
        dJ = np.zeros((16, 3))
        for name, js in FINGERS.items():
            dJ[js[0]] = A @ (J[js[0]] - J[0])
            for k in (1, 2):
                dJ[js[k]] = dJ[js[k - 1]] + S[js[k - 1]] @ (J[js[k]] - J[js[k - 1]])
        disp = W[:, :1] * ((v - J[0]) @ A.T)
        for j in child:
            disp += W[:, j : j + 1] * (dJ[j] + (v - J[j]) @ S[j].T)
        fields.append(disp)
    return np.stack(fields, axis=2)


def shape_space(fields: np.ndarray, num: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the vertex displacements implied by the parameter covariance, computed exactly (no sampling).

    With fields D [3V, P] and parameter covariance C = L L^T, displacements have covariance D C D^T; its
    eigenvectors are the left singular vectors of D L. Returns shapedirs [V, 3, num] scaled so that
    betas ~ N(0, I) reproduce the distribution (ordered by decreasing variance) and the singular values.
    """
    V = fields.shape[0]
    D = fields.reshape(V * 3, -1)
    L = np.linalg.cholesky(shape_parameter_covariance())
    U, s, _ = np.linalg.svd(D @ L, full_matrices=False)
    U, s = U[:, :num], s[:num]
    size_dir = D.sum(1)  # the sum of all fields is the uniform scaling about the wrist
    signs = np.sign(U.T @ size_dir)
    signs[signs == 0] = 1.0
    for k in range(num):  # a deterministic sign: the component grows the hand, else its largest entry is positive
        if abs(U[:, k] @ size_dir) < 1e-9 * np.linalg.norm(size_dir):
            signs[k] = np.sign(U[np.argmax(np.abs(U[:, k])), k])
    U = U * signs
    return (U * s).reshape(V, 3, num), s


# ------------------------------------------------------------------------------------- pose correctives
def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of quaternions [..., 4] stored (x, y, z, w)."""
    av, aw = a[..., :3], a[..., 3:]
    bv, bw = b[..., :3], b[..., 3:]
    return np.concatenate([aw * bv + bw * av + np.cross(av, bv), aw * bw - np.sum(av * bv, -1, keepdims=True)], -1)


def _kinematic_chain(angles: np.ndarray, sk: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For anatomical angles [N, 15, 3]: the world-aligned local rotations [N, 15, 3, 3] of joints 1..15, the
    global joint rotations [N, 16, 3, 3] and the posed joint positions [N, 16, 3] (root fixed)."""
    n = angles.shape[0]
    local = Rotation.from_euler("XYZ", angles.reshape(-1, 3)).as_matrix().reshape(n, 15, 3, 3)
    B = sk["frames"][1:]
    rot = np.einsum("jab,njbc,jdc->njad", B, local, B)
    J = sk["joints"]
    G = np.zeros((n, 16, 3, 3))
    G[:, 0] = np.eye(3)
    P = np.zeros((n, 16, 3))
    P[:, 0] = J[0]
    for j in range(1, 16):
        par = PARENTS[j]
        G[:, j] = G[:, par] @ rot[:, j - 1]
        P[:, j] = P[:, par] + np.einsum("nab,b->na", G[:, par], J[j] - J[par])
    return rot, G, P


def _joint_transforms(angles: np.ndarray, sk: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pose, the world-aligned local rotations [N, 15, 3, 3] of joints 1..15 and the skinning transforms
    (rotation [N, 16, 3, 3], translation [N, 16, 3]) that map rest points attached to joint j to the posed ones."""
    rot, G, P = _kinematic_chain(angles, sk)
    t = P - np.einsum("njab,jb->nja", G, sk["joints"])
    return rot, G, t


def dual_quaternion_skinning(v: np.ndarray, W: np.ndarray, G: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Dual-quaternion skinning (Kavan et al. 2008) of rest vertices v [V, 3] for transforms G [N, J, 3, 3],
    t [N, J, 3]: [N, V, 3]. Blends rigid motions instead of matrices, so bent joints keep their volume."""
    n, nj = G.shape[:2]
    qr = Rotation.from_matrix(G.reshape(-1, 3, 3)).as_quat().reshape(n, nj, 4)
    tq = np.concatenate([t, np.zeros((n, nj, 1))], -1)
    qd = 0.5 * _quat_mul(tq, qr)
    ref = qr[:, np.argmax(W, axis=1)]  # [N, V, 4]: the dominant joint's rotation fixes the hemisphere
    sign = np.sign(np.einsum("njk,nvk->nvj", qr, ref))
    sign[sign == 0] = 1.0
    wv = W[None] * sign  # [N, V, J]
    b0 = np.einsum("nvj,njk->nvk", wv, qr)
    be = np.einsum("nvj,njk->nvk", wv, qd)
    norm = np.linalg.norm(b0, axis=-1, keepdims=True)
    c0, ce = b0 / norm, be / norm
    v0, w0 = c0[..., :3], c0[..., 3:]
    ve, we = ce[..., :3], ce[..., 3:]
    trans = 2.0 * (w0 * ve - we * v0 + np.cross(v0, ve))
    R = Rotation.from_quat(c0.reshape(-1, 4)).as_matrix().reshape(n, -1, 3, 3)
    return np.einsum("nvab,vb->nva", R, v) + trans


def pose_correctives(v: np.ndarray, W: np.ndarray, sk: dict[str, np.ndarray], num_poses: int = 3000,
                     seed: int = 1, chunk: int = 200) -> np.ndarray:
    """posedirs [V, 3, 135] that make linear blend skinning reproduce dual-quaternion skinning.

    For poses of the pose space, the rest-space offset B that LBS needs to land on the DQS result is
    B = M_v^-1 (x_dqs - m_v) - v (M_v, m_v: the vertex's blended LBS matrix and translation). B is regressed,
    per vertex, on MANO's pose features (R_j - I) of the joints that influence the vertex (weight > 1e-3),
    with a small ridge term; other features get zero. This restores the volume LBS loses at bent joints.
    """
    angles = sample_anatomical_angles(num_poses, np.random.default_rng(seed))
    V = len(v)
    feats = np.zeros((num_poses, 135))
    targets = np.zeros((num_poses, V, 3))
    for s in range(0, num_poses, chunk):
        rot, G, t = _joint_transforms(angles[s : s + chunk], sk)
        feats[s : s + chunk] = (rot - np.eye(3)).reshape(len(rot), -1)
        x_dqs = dual_quaternion_skinning(v, W, G, t)
        M = np.einsum("vj,njab->nvab", W, G)
        m = np.einsum("vj,nja->nva", W, t)
        targets[s : s + chunk] = np.linalg.solve(M, (x_dqs - m)[..., None])[..., 0] - v
    posedirs = np.zeros((V, 3, 135))
    influence = W[:, 1:] > 1e-3  # [V, 15]
    masks, group = np.unique(influence, axis=0, return_inverse=True)
    for g, mask in enumerate(masks):
        if not mask.any():
            continue
        cols = np.nonzero(np.repeat(mask, 9))[0]
        verts = np.nonzero(group.ravel() == g)[0]
        F = feats[:, cols]
        A = F.T @ F
        A += 1e-6 * np.trace(A) / len(cols) * np.eye(len(cols))
        coef = np.linalg.solve(A, F.T @ targets[:, verts].reshape(num_poses, -1))  # [C, n*3]
        posedirs[np.ix_(verts, np.arange(3), cols)] = coef.reshape(len(cols), len(verts), 3).transpose(1, 2, 0)
    return posedirs


# ------------------------------------------------------------------------------------------- pose space
# Joint limits in degrees, per MANO joint 1..15, for (flexion, abduction, twist) in the joint's anatomical
# frame (rest_skeleton()["frames"]); R_local = R_x(flexion) R_y(abduction) R_z(twist) (intrinsic "XYZ").
# Positive flexion bends towards the palm; positive abduction of a finger MCP turns it radially (to the thumb).
# Abduction limits are relative to the rest spread (index +5, ring -5, pinky -12 degrees from the middle
# finger) so that neighbour angles stay within the measured maxima (Chatzioglou et al. 2024: index-middle
# 17.2, middle-ring 14.3, ring-little 32.1 degrees) and never go below parallel (fingers touching).
_FINGER_LIMITS = {
    "mcp": ((-10.0, 90.0), None, (-4.0, 4.0)),
    "pip": ((0.0, 100.0), (-2.0, 2.0), (-2.0, 2.0)),
    "dip": ((0.0, 80.0), (-2.0, 2.0), (-2.0, 2.0)),
}
_MCP_ABDUCTION = {"index": (-8.0, 15.2), "middle": (-3.0, 3.0), "ring": (-12.3, 8.0), "pinky": (-37.0, 14.5)}
_THUMB_LIMITS = {
    13: ((-20.0, 25.0), (-15.0, 40.0), (-5.0, 30.0)),
    14: ((-5.0, 55.0), (-8.0, 8.0), (-5.0, 5.0)),
    15: ((-10.0, 80.0), (-3.0, 3.0), (-3.0, 3.0)),
}
# Rest angles between neighbouring fingers (degrees) = differences of the design yaws.
_REST_SPREAD = {"index_middle": 5.0, "middle_ring": 5.0, "ring_pinky": 7.0}
MAX_SPREAD = {"index_middle": 17.2, "middle_ring": 14.3, "ring_pinky": 32.1}


def joint_limits_deg() -> np.ndarray:
    """[15, 3, 2] (min, max) degrees of (flexion, abduction, twist) for MANO joints 1..15."""
    lim = np.zeros((15, 3, 2))
    for name, js in FINGERS.items():
        for k, j in enumerate(js):
            if name == "thumb":
                lim[j - 1] = np.array(_THUMB_LIMITS[j])
            else:
                kind = ("mcp", "pip", "dip")[k]
                rows = list(_FINGER_LIMITS[kind])
                if kind == "mcp":
                    rows[1] = _MCP_ABDUCTION[name]
                lim[j - 1] = np.array(rows)
    return lim


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _segment_segment_distance(p1, q1, p2, q2) -> np.ndarray:
    """Distance [...] between segments p1q1 and p2q2 (arrays [..., 3]); Ericson, Real-Time Collision Detection 5.1.9."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a = np.sum(d1 * d1, -1)
    e = np.sum(d2 * d2, -1)
    f = np.sum(d2 * r, -1)
    c = np.sum(d1 * r, -1)
    b = np.sum(d1 * d2, -1)
    denom = a * e - b * b
    s = np.where(denom > 1e-18, np.clip((b * f - c * e) / np.where(denom > 1e-18, denom, 1.0), 0.0, 1.0), 0.0)
    t = (b * s + f) / e
    s = np.where(t < 0, np.clip(-c / a, 0.0, 1.0), np.where(t > 1, np.clip((b - c) / a, 0.0, 1.0), s))
    t = np.clip(t, 0.0, 1.0)
    c1 = p1 + d1 * s[..., None]
    c2 = p2 + d2 * t[..., None]
    return np.linalg.norm(c1 - c2, axis=-1)


def skeleton_forward(angles: np.ndarray, sk: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Posed joints [N, 16, 3] and fingertip points [N, 5, 3] (thumb..pinky) of the rest skeleton for anatomical
    angles [N, 15, 3] (radians), root fixed. Same kinematics as the LBS layer's joint chain."""
    angles = _check_angles(angles)
    if angles.ndim != 3:
        raise ValueError(f"angles must have shape [N, 15, 3], got {list(angles.shape)}")
    _, G, P = _kinematic_chain(angles, sk)
    J = sk["joints"]
    tips = np.zeros((angles.shape[0], 5, 3))
    for k, name in enumerate(TIP_ORDER):
        last = FINGERS[name][2]
        tips[:, k] = P[:, last] + np.einsum("nab,b->na", G[:, last], sk["tips"][k] - J[last])
    return P, tips


def skeleton_collisions(angles: np.ndarray, design: HandDesign = DESIGN, margin: float = 0.002) -> np.ndarray:
    """[N] bool: the capsule model of a pose collides (distance below the sum of radii plus ``margin``).

    Capsules: each phalanx (radius = its smaller end radius) and the palm (metacarpal lines, radius 12 mm;
    the thumb metacarpal with the thenar, 13 mm). Tested pairs: thumb phalanges against the other fingers'
    phalanges, thumb tip segment and the distal two phalanges of every finger against the palm, and the
    phalanges of neighbouring fingers against each other.
    """
    sk = rest_skeleton(design)
    P, tips = skeleton_forward(angles, sk)
    tip_of = dict(zip(TIP_ORDER, range(5)))
    seg = {}
    for name, js in FINGERS.items():
        f = design.finger(name)
        tip = tips[:, tip_of[name]]
        tip_centre = tip - _unit(tip - P[:, js[2]]) * f.radii[3] * MM
        ends = [P[:, js[0]], P[:, js[1]], P[:, js[2]], tip_centre]
        for k in range(3):
            seg[(name, k)] = (ends[k], ends[k + 1], min(f.radii[k], f.radii[k + 1]) * MM)
    palm = [(P[:, 0], P[:, FINGERS[n][0]], 0.012) for n in ("index", "middle", "ring", "pinky")]
    palm.append((P[:, 13], P[:, 14], 0.013))
    pairs = []
    for other in ("index", "middle", "ring", "pinky"):
        for k in (1, 2):
            pairs += [(seg[("thumb", k)], seg[(other, q)]) for q in range(3)]
            pairs += [(seg[(other, k)], pc) for pc in palm]
    pairs += [(seg[("thumb", 2)], pc) for pc in palm[:4]]
    for a, b in (("index", "middle"), ("middle", "ring"), ("ring", "pinky")):
        pairs += [(seg[(a, k)], seg[(b, q)]) for k in range(3) for q in range(3)]
    hit = np.zeros(angles.shape[0], dtype=bool)
    for (p1, q1, r1), (p2, q2, r2) in pairs:
        hit |= _segment_segment_distance(p1, q1, p2, q2) < r1 + r2 + margin
    return hit


def sample_anatomical_angles(n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 15, 3] radians (flexion, abduction, twist) of MANO joints 1..15: natural poses within the joint limits
    whose capsule model is collision free (:func:`skeleton_collisions`); rejected draws are replaced."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    chunks, have = [], 0
    while have < n:
        cand = _draw_anatomical_angles(max(2 * (n - have), 64), rng)
        ok = cand[~skeleton_collisions(cand)]
        chunks.append(ok)
        have += len(ok)
    return np.concatenate(chunks)[:n]


def _draw_anatomical_angles(n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 15, 3] radians (flexion, abduction, twist) of MANO joints 1..15 from the natural-pose distribution
    before the collision rejection.

    Latent variables shared by the fingers give the coupling of natural hand poses: a closure z_g (all
    fingers flex together, ulnar fingers a little more), a hook z_h (PIP versus MCP), a spread z_s (fingers
    spread, less when the MCPs are flexed) and an opposition z_o (thumb across the palm, correlated with
    closure). DIP flexion is 0.55-0.8 of PIP flexion. Every angle is a sigmoid of Gaussians mapped into its
    limits, so samples respect joint_limits_deg() without clipping.
    """
    lim = joint_limits_deg()
    out = np.zeros((n, 15, 3))
    g = rng.standard_normal(n)
    hook = rng.standard_normal(n)
    spread = _sig(rng.standard_normal(n) * 1.2 - 0.4)
    opp = 0.7 * g + 0.7 * rng.standard_normal(n)

    def within(j: int, a: int, z: np.ndarray) -> np.ndarray:
        lo, hi = lim[j - 1, a]
        return lo + (hi - lo) * _sig(z)

    cascade = {"index": -0.3, "middle": 0.0, "ring": 0.15, "pinky": 0.3}
    mcp_flex = {}
    for name, off in cascade.items():
        mcp, pip, dip = FINGERS[name]
        out[:, mcp - 1, 0] = within(mcp, 0, 1.4 * g + off - 0.6 + 0.6 * rng.standard_normal(n))
        out[:, pip - 1, 0] = within(pip, 0, 1.2 * g + 0.8 * hook + off - 1.0 + 0.6 * rng.standard_normal(n))
        ratio = 0.55 + 0.25 * _sig(rng.standard_normal(n))
        out[:, dip - 1, 0] = out[:, pip - 1, 0] * ratio
        mcp_flex[name] = np.clip(out[:, mcp - 1, 0], 0.0, None)
        for j, a in ((mcp, 2), (pip, 1), (pip, 2), (dip, 1), (dip, 2)):
            out[:, j - 1, a] = within(j, a, 0.8 * rng.standard_normal(n))
    # Spread: neighbour angles in [0, MAX_SPREAD], reduced when the MCPs flex (collateral ligaments tighten).
    damp = 1.0 - 0.7 * np.minimum(1.0, np.stack(list(mcp_flex.values())).mean(0) / 90.0)
    pair = {k: MAX_SPREAD[k] * spread * damp * (0.6 + 0.4 * _sig(rng.standard_normal(n))) for k in MAX_SPREAD}
    middle_abd = 2.5 * np.tanh(0.6 * rng.standard_normal(n))
    idx_abd = middle_abd + pair["index_middle"] - _REST_SPREAD["index_middle"]
    ring_abd = middle_abd - (pair["middle_ring"] - _REST_SPREAD["middle_ring"])
    pinky_abd = ring_abd - (pair["ring_pinky"] - _REST_SPREAD["ring_pinky"])
    for name, val in (("index", idx_abd), ("middle", middle_abd), ("ring", ring_abd), ("pinky", pinky_abd)):
        out[:, FINGERS[name][0] - 1, 1] = val
    # Thumb: opposition drives CMC flexion and pronation together; MCP and IP follow closure.
    out[:, 12, 0] = within(13, 0, 1.0 * opp + 0.5 * rng.standard_normal(n))
    out[:, 12, 1] = within(13, 1, 1.0 * opp + 0.6 * rng.standard_normal(n))
    out[:, 12, 2] = within(13, 2, 1.0 * opp + 0.5 * rng.standard_normal(n))
    out[:, 13, 0] = within(14, 0, 0.8 * g + 0.3 * opp - 0.3 + 0.7 * rng.standard_normal(n))
    out[:, 13, 1] = within(14, 1, 0.8 * rng.standard_normal(n))
    out[:, 13, 2] = within(14, 2, 0.8 * rng.standard_normal(n))
    out[:, 14, 0] = within(15, 0, 0.9 * g + 0.2 * opp + 0.7 * rng.standard_normal(n))
    out[:, 14, 1] = within(15, 1, 0.8 * rng.standard_normal(n))
    out[:, 14, 2] = within(15, 2, 0.8 * rng.standard_normal(n))
    return np.deg2rad(out)


def anatomical_to_axis_angle(angles: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """[..., 15, 3] (flexion, abduction, twist) radians -> [..., 45] MANO axis-angle of joints 1..15.

    frames: [16, 3, 3] joint frames (rest_skeleton()["frames"]); R = B R_local B^T with B the frame of joint j.
    """
    angles = _check_angles(angles)
    if frames.shape != (16, 3, 3):
        raise ValueError(f"frames must have shape [16, 3, 3], got {list(frames.shape)}")
    shape = angles.shape[:-2]
    a = angles.reshape(-1, 15, 3)
    local = Rotation.from_euler("XYZ", a.reshape(-1, 3)).as_matrix().reshape(-1, 15, 3, 3)
    B = frames[1:]
    world = np.einsum("jab,njbc,jdc->njad", B, local, B)
    return Rotation.from_matrix(world.reshape(-1, 3, 3)).as_rotvec().reshape(*shape, 45)


def axis_angle_to_anatomical(pose: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """[..., 45] MANO axis-angle of joints 1..15 -> [..., 15, 3] (flexion, abduction, twist) radians."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.ndim < 1 or pose.shape[-1] != 45 or not np.isfinite(pose).all():
        raise ValueError(f"pose must be a finite array of shape [..., 45], got {list(pose.shape)}")
    if frames.shape != (16, 3, 3):
        raise ValueError(f"frames must have shape [16, 3, 3], got {list(frames.shape)}")
    shape = pose.shape[:-1]
    world = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(-1, 15, 3, 3)
    B = frames[1:]
    local = np.einsum("jba,njbc,jcd->njad", B, world, B)
    return Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("XYZ").reshape(*shape, 15, 3)


def pose_space(frames: np.ndarray, num_samples: int = 200_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean pose [45], PCA components [45, 45] (rows, by decreasing variance) and their std [45] of the
    axis-angle poses of ``num_samples`` draws of sample_anatomical_angles (seeded, deterministic)."""
    rng = np.random.default_rng(seed)
    aa = anatomical_to_axis_angle(sample_anatomical_angles(num_samples, rng), frames)
    mean = aa.mean(0)
    cov = np.cov(aa - mean, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    evals, comps = evals[order], evecs[:, order].T
    biggest = np.argmax(np.abs(comps), axis=1)
    comps *= np.sign(comps[np.arange(45), biggest])[:, None]
    return {"hands_mean": mean, "hands_components": comps, "std": np.sqrt(np.maximum(evals, 0.0))}


# ---------------------------------------------------------------------------------------------- assembly
def _fingertip_ids(v: np.ndarray, sk: dict[str, np.ndarray]) -> np.ndarray:
    """Vertex nearest to each designed fingertip skin point (thumb, index, middle, ring, pinky)."""
    d = np.linalg.norm(v[None] - sk["tips"][:, None], axis=2)
    return np.argmin(d, axis=1)


def _quantise(x: np.ndarray, decimals: int = 12) -> np.ndarray:
    """Round away the last bits so that BLAS thread-count rounding differences cannot change the file."""
    return np.round(x, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


def build(design: HandDesign = DESIGN, edge_length: float = 0.0062, pose_samples: int = 200_000,
          corrective_poses: int = 1500, progress: bool = True) -> tuple[HandModelData, dict]:
    """Build the open right hand. Returns the model and a JSON-able info dict (pose std, limits, numbers)."""
    from tqdm.auto import tqdm

    stages = tqdm(total=6, desc="open hand", unit="stage", disable=not progress)
    sk = rest_skeleton(design)
    stages.set_postfix_str("surface")
    v, f = mesh_surface(design, edge_length=edge_length)
    stages.update()
    stages.set_postfix_str("skinning")
    W, memberships = skinning_weights(v, sk)
    # Drop negligible influences (< 1e-5) so weights are sparse and compress; rows still sum to 1.
    W = np.where(W < 1e-5, 0.0, W)
    W /= W.sum(1, keepdims=True)
    Jreg = joint_regressor(v, sk, memberships)
    stages.update()
    stages.set_postfix_str("pose correctives")
    # float32-exact values: the regression's last bits carry no information and the file compresses better.
    posedirs = pose_correctives(v, W, sk, num_poses=corrective_poses).astype(np.float32).astype(np.float64)
    stages.update()
    stages.set_postfix_str("shape space")
    fields = shape_fields(v, W, sk)
    shapedirs, shape_sd = shape_space(fields)
    stages.update()
    stages.set_postfix_str("pose space")
    pose = pose_space(sk["frames"], num_samples=pose_samples)
    stages.update()
    data = HandModelData(
        v_template=_quantise(v),
        shapedirs=_quantise(shapedirs),
        posedirs=posedirs,
        J_regressor=_quantise(Jreg),
        weights=_quantise(W),
        parents=PARENTS.copy(),
        faces=f,
        hands_components=_quantise(pose["hands_components"]),
        hands_mean=_quantise(pose["hands_mean"]),
        fingertip_ids=_fingertip_ids(v, sk),
        side="right",
        name="open_hand",
    )
    info = {
        "name": "open_hand",
        "pose_pca_std": [round(float(s), 9) for s in pose["std"]],
        "shape_pca_std_m": [round(float(s), 9) for s in shape_sd],
        "shape_parameters": list(SHAPE_PARAMETERS),
        "joint_limits_deg": joint_limits_deg().tolist(),
        "joint_frames": _quantise(sk["frames"], 9).tolist(),
        "pose_samples": pose_samples,
        "corrective_poses": corrective_poses,
    }
    stages.update()
    stages.close()
    return data, info


def write_npz_deterministic(data: HandModelData, path: str | os.PathLike) -> None:
    """Write ``data`` as a deflate-compressed .npz with fixed zip timestamps (same arrays -> same bytes).

    HandModelData.save_npz stores uncompressed (the dense posedirs alone are 8.8 MB) and numpy's savez
    stamps the current time into each zip entry; HandModelData.load_npz reads this file as any .npz.
    """
    import io
    import zipfile

    arrays = {f: getattr(data, f) for f in HandModelData.ARRAY_FIELDS}
    arrays["side"] = np.array(data.side)
    arrays["name"] = np.array(data.name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key, val in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(val), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=9)
    _atomic_write_bytes(Path(path), buf.getvalue())


def sidecar_path(npz_path: str | os.PathLike) -> Path:
    return Path(npz_path).with_suffix(".json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the open, MANO-compatible right hand model (.npz).")
    parser.add_argument("--out", required=True, help="output .npz path; a .json sidecar with PCA std is written beside it")
    parser.add_argument("--figure", default=None, help="also render the documentation figure (PNG) of the built model")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    t0 = time.time()
    data, info = build(progress=not args.no_progress)
    out = Path(args.out)
    write_npz_deterministic(data, out)
    _atomic_write_bytes(sidecar_path(out), (json.dumps(info, indent=1) + "\n").encode())
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out} ({out.stat().st_size} bytes, {data.num_verts} vertices, {len(data.faces)} faces) "
          f"sha256 {digest} in {time.time() - t0:.1f} s")
    if args.figure:
        render_figure(data, args.figure, highlight_intersections=True)
        print(f"wrote {args.figure}")
    return 0



# ------------------------------------------------------------------------------------------------ figure
def named_pose_angles(name: str) -> np.ndarray:
    """[15, 3] radians (flexion, abduction, twist) of a few illustrative poses: 'rest', 'fist', 'pinch', 'spread'."""
    a = np.zeros((15, 3))
    fingers = ("index", "middle", "ring", "pinky")
    if name == "rest":
        return a
    if name == "fist":
        for f, (m_flex, p_flex) in zip(fingers, ((70.0, 80.0), (75.0, 80.0), (80.0, 80.0), (85.0, 80.0))):
            m, p, d = FINGERS[f]
            a[m - 1, 0], a[p - 1, 0], a[d - 1, 0] = m_flex, p_flex, 0.6 * p_flex
        a[12] = (10.0, 35.0, 15.0)
        a[13, 0], a[14, 0] = 35.0, 25.0
    elif name == "pinch":
        for k, f in enumerate(fingers):
            m, p, d = FINGERS[f]
            a[m - 1, 0], a[p - 1, 0], a[d - 1, 0] = 40.0 + 8 * k, 45.0 + 10 * k, 27.0 + 6 * k
        a[12:15] = np.rad2deg(_pinch_thumb(np.deg2rad(a)))
        return np.deg2rad(a)
    elif name == "spread":
        lim = _MCP_ABDUCTION
        a[FINGERS["index"][0] - 1, 1] = lim["index"][1]
        a[FINGERS["ring"][0] - 1, 1] = -7.0
        a[FINGERS["pinky"][0] - 1, 1] = -20.0
        a[12] = (-20.0, 0.0, 0.0)
    else:
        raise ValueError(f"unknown pose name {name!r}; expected 'rest', 'fist', 'pinch' or 'spread'")
    return np.deg2rad(a)


def _pinch_thumb(angles: np.ndarray) -> np.ndarray:
    """Thumb angles [3, 3] (joints 13-15, radians, within limits) that bring the thumb tip to the index tip
    (tip spheres 4 mm apart) for the given finger angles: a bounded least-squares fit on the skeleton."""
    from scipy.optimize import minimize

    sk = rest_skeleton()
    r_thumb, r_index = DESIGN.finger("thumb").radii[3] * MM, DESIGN.finger("index").radii[3] * MM
    r_sum = r_thumb + r_index + 0.004
    lim = np.deg2rad(joint_limits_deg()[12:15]).reshape(9, 2)

    def cost(x: np.ndarray) -> float:
        a = angles.copy()
        a[12:15] = x.reshape(3, 3)
        P, tips = skeleton_forward(a[None], sk)
        c_thumb = tips[0, 0] - _unit(tips[0, 0] - P[0, 15]) * r_thumb
        c_index = tips[0, 1] - _unit(tips[0, 1] - P[0, 3]) * r_index
        gap = np.linalg.norm(c_thumb - c_index) - r_sum
        return float(gap**2 * 1e4 + 1e-4 * np.sum(x**2))

    res = minimize(cost, np.zeros(9), method="L-BFGS-B", bounds=lim.tolist())
    return res.x.reshape(3, 3)


def render_meshes(panels: list[tuple], faces: np.ndarray, path: str | os.PathLike,
                  highlight_intersections: bool = False, columns: int = 3) -> None:
    """Render (title, vertices [V, 3][, azimuth in degrees]) panels of one mesh topology into a PNG (Agg).

    Display axes: horizontal = z (thumb side to the right for a right hand), up = -x (fingers up), depth = y,
    seen from the palm side; a right-handed view, so the right hand is not mirrored.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from interhandgen.hand.mesh_checks import self_intersections

    rows = (len(panels) + columns - 1) // columns
    fig = plt.figure(figsize=(5 * columns, 5.6 * rows))
    to_display = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # det +1
    for k, (title, v, *view) in enumerate(panels):
        azim = view[0] if view else -70.0
        elev = 15.0
        a, e = math.radians(azim), math.radians(elev)
        camera = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
        light = _unit(camera + np.array([0.0, 0.0, 0.6]) + 0.4 * np.cross(camera, [0.0, 0.0, 1.0]))
        v = np.asarray(v, dtype=np.float64) @ to_display.T
        tri = v[faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-15
        shade = 0.3 + 0.7 * np.clip(n @ light, 0, 1)
        colors = np.clip(np.array([0.95, 0.74, 0.6])[None] * shade[:, None], 0, 1)
        colors = np.concatenate([colors, np.ones((len(colors), 1))], 1)
        if highlight_intersections:
            bad = np.unique(self_intersections(v, faces))
            colors[bad] = (1.0, 0.0, 0.0, 1.0)
            title += f" ({len(bad)} faces intersect)"
        ax = fig.add_subplot(rows, columns, k + 1, projection="3d")
        ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolor=(0, 0, 0, 0.06), linewidths=0.2))
        c = 0.5 * (v.min(0) + v.max(0))
        r = 0.085  # one scale for all panels, so that shapes compare
        ax.set_xlim(c[0] - r, c[0] + r)
        ax.set_ylim(c[1] - r, c[1] + r)
        ax.set_zlim(c[2] - r, c[2] + r)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(title)
        ax.set_axis_off()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)


def render_figure(data: HandModelData, path: str | os.PathLike, highlight_intersections: bool = False) -> None:
    """docs/img/open_hand.png: rest (palm, back), fist, pinch, spread, the mean pose, and two shapes
    (beta_0 = -2 / +2) in the mean pose."""
    import torch

    from interhandgen.hand.layer import HandModel

    frames = rest_skeleton()["frames"]
    model = HandModel(data, use_pca=False, flat_hand_mean=True)
    panels = []
    for name, title, azim in (("rest", "rest (zero pose), palm", -70.0), ("rest", "rest, back", 110.0),
                              ("fist", "fist", -70.0), ("pinch", "pinch (thumb side)", -15.0),
                              ("spread", "spread", -70.0)):
        aa = anatomical_to_axis_angle(named_pose_angles(name)[None], frames)
        out = model(hand_pose=torch.as_tensor(aa, dtype=torch.float64))
        panels.append((title, out.vertices[0].numpy(), azim))
    mean = torch.as_tensor(data.hands_mean[None], dtype=torch.float64)
    for value in (-2.0, 2.0):
        betas = torch.zeros(1, data.num_betas, dtype=torch.float64)
        betas[0, 0] = value
        out = model(betas=betas, hand_pose=mean)
        panels.append((f"mean pose, beta_0 = {value:+.0f}", out.vertices[0].numpy(), -70.0))
    mean_out = model(hand_pose=mean)
    panels.insert(5, ("mean pose (hands_mean), beta = 0", mean_out.vertices[0].numpy(), -70.0))
    render_meshes(panels, data.faces, path, highlight_intersections, columns=4)


if __name__ == "__main__":
    sys.exit(main())
