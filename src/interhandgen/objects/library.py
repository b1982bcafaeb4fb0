"""Procedural everyday objects: closed watertight meshes, exact volumes and convex parts, seeded.

Every family builds an object from continuous parameters (metres) and draws them with a numpy ``Generator``.
An object is a :class:`ObjectMesh`: vertices [V, 3] float64 (metres, the object frame: the mesh's centre of
mass at the origin, the family's axis along +z), faces [F, 3] (outward, closed, 2-manifold), the volume in
closed form where one exists (the smooth shape; the mesh's own volume differs by the discretisation, see
:data:`SEGMENTS`), and **convex parts** (point sets whose convex hulls cover the object), which the physics
check gives MuJoCo (it collides convex hulls only).

Solids of revolution are built by ``manifold3d`` from a profile polygon in the (radius, height) half-plane; the
profile is given as a list of convex pieces: a piece touching the axis revolves into one convex solid (its
radius is a concave function of the height), a piece off the axis is cut into ``SEGMENTS`` angular sectors,
each the convex hull of the piece at two angles. Sizes: every family's largest extent lies in 3-40 cm
(:data:`SIZE_RANGE`, tested).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Callable

import numpy as np
from interhandgen.exceptions import InputError

__all__ = ["ObjectMesh", "FAMILIES", "FAMILY_NAMES", "SEGMENTS", "SIZE_RANGE", "make_object", "sample_object",
           "sample_objects", "pappus_volume"]

#: Angular segments of solids of revolution and spheres (the mesh's volume is ~0.3 % below the smooth one).
SEGMENTS = 48
#: Points per arc of a profile (bowls, capsules, tori).
ARC_POINTS = 12
#: Angle covered by a mug's handle (a torus arc), degrees.
HANDLE_SPAN_DEG = 200.0
#: Longest triangle edge of an object mesh (metres).
MAX_EDGE = 0.02
#: Largest extent of any object, metres.
SIZE_RANGE = (0.03, 0.40)


@dataclasses.dataclass(frozen=True)
class ObjectMesh:
    """A closed object mesh in its own frame (metres), see the module docstring."""

    family: str
    params: dict
    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    closed_form_volume: float | None  # m^3 of the smooth shape; None where no closed form exists
    parts: tuple  # convex parts: tuple of [K_i, 3] float64 point arrays, in the same frame as vertices

    @property
    def mesh_volume(self) -> float:
        """Volume of the mesh itself (m^3), by the divergence theorem."""
        tri = self.vertices[self.faces]
        return float(np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)

    @property
    def extent(self) -> float:
        """Largest side of the axis-aligned bounding box (metres)."""
        return float(np.ptp(self.vertices, axis=0).max())

    def params_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


# ------------------------------------------------------------------------------------------------------ helpers
def _to_arrays(manifold) -> tuple[np.ndarray, np.ndarray]:
    mesh = manifold.to_mesh64()
    v = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    f = np.asarray(mesh.tri_verts, dtype=np.int64)
    return v, f


def _manifold(v: np.ndarray, f: np.ndarray):
    import manifold3d as m3

    return m3.Manifold(m3.Mesh64(vert_properties=np.ascontiguousarray(v), tri_verts=np.ascontiguousarray(f)))


def pappus_volume(profile: np.ndarray) -> float:
    """Volume (m^3) of the solid swept by a simple polygon [K, 2] of (radius >= 0, height) about the z axis.

    ``2 pi * integral of r dA`` with the polygon's exact first moment (Green's theorem); either orientation.
    """
    x, z = profile[:, 0], profile[:, 1]
    x1, z1 = np.roll(x, -1), np.roll(z, -1)
    cross = x * z1 - x1 * z
    return abs(2.0 * math.pi * float(((x + x1) * cross).sum()) / 6.0)


def _ccw(poly: np.ndarray) -> np.ndarray:
    x, z = poly[:, 0], poly[:, 1]
    area = 0.5 * float((x * np.roll(z, -1) - np.roll(x, -1) * z).sum())
    return poly if area > 0 else poly[::-1]


def _revolve(profile: np.ndarray, segments: int = SEGMENTS):
    import manifold3d as m3

    return m3.CrossSection([np.ascontiguousarray(_ccw(np.asarray(profile, dtype=np.float64)))]).revolve(segments)


def _revolve_parts(pieces: list[np.ndarray], segments: int = SEGMENTS) -> list[np.ndarray]:
    """Convex parts of a solid of revolution given as convex profile pieces (see the module docstring)."""
    angles = 2.0 * math.pi * np.arange(segments + 1) / segments
    parts = []
    for piece in pieces:
        piece = np.asarray(piece, dtype=np.float64)
        r, z = piece[:, 0], piece[:, 1]
        if r.min() <= 1e-12:
            a = angles[:-1]
            pts = np.stack([r[None] * np.cos(a)[:, None], r[None] * np.sin(a)[:, None],
                            np.broadcast_to(z, (len(a), len(z)))], -1).reshape(-1, 3)
            parts.append(np.unique(pts.round(12), axis=0))
            continue
        for k in range(segments):
            a = angles[k:k + 2]
            pts = np.stack([r[None] * np.cos(a)[:, None], r[None] * np.sin(a)[:, None],
                            np.broadcast_to(z, (2, len(z)))], -1).reshape(-1, 3)
            parts.append(pts)
    return parts


def _arc(centre: tuple[float, float], radius: float, a0: float, a1: float, n: int = ARC_POINTS) -> np.ndarray:
    t = np.linspace(a0, a1, n + 1)
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], -1)


# ------------------------------------------------------------------------------------------------------ families
@dataclasses.dataclass(frozen=True)
class Family:
    """A named object family: ``sample(rng) -> params`` and ``build(params) -> (manifold, parts, volume)``."""

    name: str
    description: str
    sample: Callable[[np.random.Generator], dict]
    build: Callable[[dict], tuple]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _box_build(p):
    import manifold3d as m3

    size = (p["size_x"], p["size_y"], p["size_z"])
    man = m3.Manifold.cube(size, center=True)
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * 0.5 * np.array(size)
    return man, [corners], size[0] * size[1] * size[2]


def _box_sample(rng):
    long = _u(rng, 0.06, 0.32)
    return {"size_x": long, "size_y": long * _u(rng, 0.3, 1.0), "size_z": long * _u(rng, 0.2, 0.9)}


def _solid_revolution(profile, pieces, volume):
    return _revolve(profile), _revolve_parts(pieces), volume


def _cylinder_build(p):
    r, h = p["radius"], p["height"]
    rect = np.array([[0, 0], [r, 0], [r, h], [0, h]], dtype=float)
    return _solid_revolution(rect, [rect], math.pi * r * r * h)


def _cylinder_sample(rng):
    return {"radius": _u(rng, 0.02, 0.06), "height": _u(rng, 0.06, 0.28)}


def _rod_sample(rng):
    return {"radius": _u(rng, 0.006, 0.016), "height": _u(rng, 0.15, 0.38)}


def _bottle_build(p):
    r, rn, hb, hs, hn = p["radius"], p["neck_radius"], p["body_height"], p["shoulder_height"], p["neck_height"]
    z1, z2, z3 = hb, hb + hs, hb + hs + hn
    profile = np.array([[0, 0], [r, 0], [r, z1], [rn, z2], [rn, z3], [0, z3]], dtype=float)
    pieces = [np.array([[0, 0], [r, 0], [r, z1], [0, z1]], dtype=float),
              np.array([[0, z1], [r, z1], [rn, z2], [0, z2]], dtype=float),
              np.array([[0, z2], [rn, z2], [rn, z3], [0, z3]], dtype=float)]
    volume = math.pi * (r * r * hb + hs * (r * r + r * rn + rn * rn) / 3.0 + rn * rn * hn)
    return _solid_revolution(profile, pieces, volume)


def _bottle_sample(rng):
    r = _u(rng, 0.025, 0.05)
    return {"radius": r, "neck_radius": r * _u(rng, 0.3, 0.55), "body_height": _u(rng, 0.1, 0.22),
            "shoulder_height": _u(rng, 0.02, 0.05), "neck_height": _u(rng, 0.02, 0.06)}


def _frustum_build(p):
    r0, r1, h = p["bottom_radius"], p["top_radius"], p["height"]
    trap = np.array([[0, 0], [r0, 0], [r1, h], [0, h]], dtype=float)
    return _solid_revolution(trap, [trap], math.pi * h * (r0 * r0 + r0 * r1 + r1 * r1) / 3.0)


def _frustum_sample(rng):
    r0 = _u(rng, 0.025, 0.08)
    return {"bottom_radius": r0, "top_radius": r0 * _u(rng, 0.1, 0.8), "height": _u(rng, 0.05, 0.2)}


def _plate_build(p):
    R, rb, h, t, w = p["radius"], p["base_radius"], p["rim_height"], p["thickness"], p["rim_width"]
    base = np.array([[0, 0], [rb, 0], [rb, t], [0, t]], dtype=float)
    rim = np.array([[rb, 0], [R, h], [R - w, h], [rb, t]], dtype=float)
    profile = np.array([[0, 0], [rb, 0], [R, h], [R - w, h], [rb, t], [0, t]], dtype=float)
    return _solid_revolution(profile, [base, rim], pappus_volume(profile))


def _plate_sample(rng):
    R = _u(rng, 0.08, 0.15)
    t = _u(rng, 0.005, 0.009)
    return {"radius": R, "base_radius": R * _u(rng, 0.55, 0.75), "rim_height": _u(rng, 0.015, 0.03),
            "thickness": t, "rim_width": _u(rng, 0.006, 0.012)}


def _bowl_profile(R, t, c):
    """Spherical shell below z = 0 (sphere centre at height c >= 0 above the rim plane), outer radius R, wall t."""
    r = R - t
    a_out, a_in = math.asin(-c / R), math.asin(-c / r)  # angle of the rim point on each circle
    outer = _arc((0.0, c), R, -math.pi / 2, a_out)  # bottom (on the axis) to rim
    inner = _arc((0.0, c), r, a_in, -math.pi / 2)  # rim to bottom
    outer[0, 0] = inner[-1, 0] = 0.0
    return outer, inner


def _bowl_build(p):
    R, t, c = p["radius"], p["wall"], p["centre_height"]
    r = R - t
    outer, inner = _bowl_profile(R, t, c)
    profile = np.concatenate([outer, inner])
    inner_up = inner[::-1]  # bottom to rim, matching outer's order
    pieces = [np.stack([outer[k], outer[k + 1], inner_up[k + 1], inner_up[k]]) for k in range(len(outer) - 1)]

    def cap(rho, h):
        return math.pi * h * h * (3 * rho - h) / 3.0

    return _revolve(profile), _revolve_parts(pieces), cap(R, R - c) - cap(r, r - c)


def _bowl_sample(rng):
    R = _u(rng, 0.06, 0.14)
    return {"radius": R, "wall": _u(rng, 0.004, 0.008), "centre_height": R * _u(rng, 0.0, 0.5)}


def _capsule_build(p):
    r, L = p["radius"], p["length"]
    top = _arc((0.0, L), r, 0.0, math.pi / 2)
    bottom = _arc((0.0, 0.0), r, -math.pi / 2, 0.0)
    bottom[0, 0] = top[-1, 0] = 0.0
    profile = np.concatenate([bottom, top])
    return _revolve(profile), _revolve_parts([profile]), math.pi * r * r * L + 4.0 / 3.0 * math.pi * r ** 3


def _capsule_sample(rng):
    return {"radius": _u(rng, 0.015, 0.045), "length": _u(rng, 0.03, 0.2)}


def _torus_build(p):
    a, rho = p["major_radius"], p["minor_radius"]
    circle = _arc((a, 0.0), rho, 0.0, 2 * math.pi, 2 * ARC_POINTS)[:-1]
    return _revolve(circle), _revolve_parts([circle]), 2.0 * math.pi ** 2 * a * rho * rho


def _torus_sample(rng):
    a = _u(rng, 0.03, 0.12)
    return {"major_radius": a, "minor_radius": a * _u(rng, 0.12, 0.4)}


def _sphere_build(p):
    import manifold3d as m3

    r = p["radius"]
    man = m3.Manifold.sphere(r, SEGMENTS)
    v, _ = _to_arrays(man)
    return man, [v], 4.0 / 3.0 * math.pi * r ** 3


def _sphere_sample(rng):
    return {"radius": _u(rng, 0.02, 0.13)}


def _ellipsoid_build(p):
    import manifold3d as m3

    axes = (p["semi_x"], p["semi_y"], p["semi_z"])
    man = m3.Manifold.sphere(1.0, SEGMENTS).scale(axes)
    v, _ = _to_arrays(man)
    return man, [v], 4.0 / 3.0 * math.pi * axes[0] * axes[1] * axes[2]


def _ellipsoid_sample(rng):
    a = _u(rng, 0.03, 0.12)
    return {"semi_x": a, "semi_y": a * _u(rng, 0.5, 1.0), "semi_z": a * _u(rng, 0.5, 1.5)}


def _hull_build(p):
    import manifold3d as m3
    from scipy.spatial import ConvexHull

    rng = np.random.Generator(np.random.PCG64(int(p["point_seed"])))
    n = int(p["num_points"])
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = d * np.array([p["semi_x"], p["semi_y"], p["semi_z"]]) * rng.uniform(0.75, 1.0, size=(n, 1))
    hull = ConvexHull(pts)
    return m3.Manifold.hull_points(np.ascontiguousarray(pts[hull.vertices])), [pts[hull.vertices]], float(hull.volume)


def _hull_sample(rng):
    a = _u(rng, 0.03, 0.12)
    return {"semi_x": a, "semi_y": a * _u(rng, 0.4, 1.0), "semi_z": a * _u(rng, 0.4, 1.2),
            "num_points": int(rng.integers(10, 31)), "point_seed": int(rng.integers(0, 2 ** 31))}


def _mug_build(p):
    import manifold3d as m3

    R, H, t, b = p["radius"], p["height"], p["wall"], p["bottom"]
    a, rho = p["handle_radius"], p["handle_thickness"]
    cup_profile = np.array([[0, 0], [R, 0], [R, H], [R - t, H], [R - t, b], [0, b]], dtype=float)
    pieces = [np.array([[0, 0], [R, 0], [R, b], [0, b]], dtype=float),
              np.array([[R - t, b], [R, b], [R, H], [R - t, H]], dtype=float)]
    cup = _revolve(cup_profile)
    # Handle: a 200-degree arc of a torus tube in the xz-plane, centred just outside the wall so that both ends
    # sink into the wall (not through it: the tube stays within the wall's thickness).
    span = math.radians(HANDLE_SPAN_DEG)
    centre_x = R - 0.5 * t - a * math.cos(span / 2)  # the arc's ends (centre line) at x = R - t/2
    circle = _arc((a, 0.0), rho, 0.0, 2 * math.pi, 16)[:-1]  # tube cross-section (u radial, w across)
    steps = 24
    tube = m3.CrossSection([np.ascontiguousarray(_ccw(circle))]).revolve(steps, math.degrees(span))
    # revolve sweeps from +x about +z: centre the arc on +x, stand it in the xz-plane ((x, y, z) -> (x, -z, y)).
    tube = tube.rotate((0.0, 0.0, -math.degrees(span) / 2)).rotate((90.0, 0.0, 0.0))
    tube = tube.translate((centre_x, 0.0, H / 2))
    parts = _revolve_parts(pieces)
    u, w = circle[:, 0], circle[:, 1]
    angles = np.linspace(-span / 2, span / 2, steps + 1)
    for k in range(steps):
        parts.append(np.concatenate([np.stack([centre_x + math.cos(f) * u, -w, H / 2 + math.sin(f) * u], -1)
                                     for f in angles[k:k + 2]]))
    return cup + tube, parts, None


def _mug_sample(rng):
    R = _u(rng, 0.035, 0.055)
    return {"radius": R, "height": _u(rng, 0.08, 0.12), "wall": _u(rng, 0.004, 0.007), "bottom": _u(rng, 0.006, 0.01),
            "handle_radius": _u(rng, 0.022, 0.032), "handle_thickness": _u(rng, 0.005, 0.008)}


def _mallet_build(p):
    import manifold3d as m3

    r, L, d = p["handle_radius"], p["handle_length"], p["insert_depth"]
    sx, sy, sz = p["head_x"], p["head_y"], p["head_z"]
    head = m3.Manifold.cube((sx, sy, sz), center=True).translate((0.0, 0.0, L - d + sz / 2))
    rect = np.array([[0, 0], [r, 0], [r, L], [0, L]], dtype=float)
    handle = _revolve(rect)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * 0.5 * np.array([sx, sy, sz])
    corners[:, 2] += L - d + sz / 2
    parts = [corners] + _revolve_parts([rect])
    # The handle's top (length d) lies inside the head (d < sz, r < sy/2 and sx/2): the union adds pi r^2 (L - d).
    return head + handle, parts, sx * sy * sz + math.pi * r * r * (L - d)


def _mallet_sample(rng):
    r = _u(rng, 0.008, 0.015)
    sz = _u(rng, 0.04, 0.07)
    return {"handle_radius": r, "handle_length": _u(rng, 0.15, 0.3), "insert_depth": sz * _u(rng, 0.3, 0.7),
            "head_x": _u(rng, 0.08, 0.14), "head_y": _u(rng, max(0.035, 2.5 * r), 0.06), "head_z": sz}


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("box", "rectangular box (carton, book, phone)", _box_sample, _box_build),
    Family("cylinder", "solid cylinder (can, jar)", _cylinder_sample, _cylinder_build),
    Family("bottle", "bottle: body, shoulder frustum, neck", _bottle_sample, _bottle_build),
    Family("sphere", "ball", _sphere_sample, _sphere_build),
    Family("ellipsoid", "ellipsoid (egg, melon, rugby ball)", _ellipsoid_sample, _ellipsoid_build),
    Family("capsule", "capsule (pill, torch)", _capsule_sample, _capsule_build),
    Family("bowl", "spherical-shell bowl", _bowl_sample, _bowl_build),
    Family("mug", "cup with bottom and a torus-arc handle", _mug_sample, _mug_build),
    Family("plate", "plate: flat base and a raised rim", _plate_sample, _plate_build),
    Family("rod", "thin rod or handle", _rod_sample, _cylinder_build),
    Family("frustum", "cone frustum (cup, lamp shade, funnel)", _frustum_sample, _frustum_build),
    Family("torus", "ring (torus)", _torus_sample, _torus_build),
    Family("convex_hull", "random convex polyhedron", _hull_sample, _hull_build),
    Family("mallet", "union: handle cylinder sunk into a box head", _mallet_sample, _mallet_build),
]}
FAMILY_NAMES = tuple(FAMILIES)


def make_object(family: str, params: dict) -> ObjectMesh:
    """Build the object of ``family`` with ``params`` (metres); its centre of mass is moved to the origin."""
    if family not in FAMILIES:
        raise InputError(f"unknown object family {family!r}; expected one of {list(FAMILY_NAMES)}")
    man, parts, volume = FAMILIES[family].build(dict(params))
    if man.status().name != "NoError" or man.is_empty():
        raise InputError(f"object family {family!r} with parameters {params} gives an invalid mesh ({man.status().name})")
    # Split long triangles (cylinder sides, cap fans): compact triangles keep the distance queries' bounding-sphere
    # pruning tight; the surface is unchanged (planar subdivision).
    v, f = _to_arrays(man.refine_to_length(MAX_EDGE))
    tri = v[f]
    signed = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    centre = (signed[:, None] * tri.sum(1) / 4.0).sum(0) / signed.sum()
    parts = tuple(np.asarray(p, dtype=np.float64) - centre for p in parts)
    return ObjectMesh(family, dict(params), v - centre, f, None if volume is None else float(volume), parts)


def sample_object(family: str, rng: np.random.Generator) -> ObjectMesh:
    """One random object of ``family`` (parameters drawn with ``rng``)."""
    if family not in FAMILIES:
        raise InputError(f"unknown object family {family!r}; expected one of {list(FAMILY_NAMES)}")
    return make_object(family, FAMILIES[family].sample(rng))


def sample_objects(num: int, seed: int, families=None) -> list[ObjectMesh]:
    """``num`` objects, families taken in turn from ``families`` (default all), deterministic for ``seed``."""
    names = FAMILY_NAMES if families is None else tuple(families)
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    return [sample_object(names[i % len(names)], rng) for i in range(int(num))]
