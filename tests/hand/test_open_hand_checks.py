"""mesh_checks on meshes whose answers are known: closed/manifold/oriented and exact self-intersection."""

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from interhandgen.hand.mesh_checks import (
    _segments_cross_triangles,
    candidate_pairs,
    closed_mesh_report,
    has_self_intersection,
    self_intersections,
)


def _box(center, extent=1.0):
    m = trimesh.creation.box(extents=[extent] * 3)
    return m.vertices + np.asarray(center, float), np.asarray(m.faces)


def _concat(*meshes):
    vs, fs, off = [], [], 0
    for v, f in meshes:
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def test_closed_report_on_known_meshes():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    rep = closed_mesh_report(sphere.vertices, sphere.faces)
    assert rep.ok and rep.euler_characteristic == 2 and rep.components == 1
    assert rep.volume == pytest.approx(sphere.volume)

    flipped = closed_mesh_report(sphere.vertices, sphere.faces[:, ::-1])  # inward-facing: negative volume
    assert flipped.watertight and flipped.oriented and flipped.volume < 0 and not flipped.ok

    one_flipped = sphere.faces.copy()
    one_flipped[0] = one_flipped[0, ::-1]
    rep = closed_mesh_report(sphere.vertices, one_flipped)
    assert rep.edge_manifold and not rep.oriented and not rep.winding_consistent and not rep.ok

    holed = closed_mesh_report(sphere.vertices, sphere.faces[1:])
    assert not holed.edge_manifold and not holed.watertight and not holed.ok

    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.3)
    rep = closed_mesh_report(torus.vertices, torus.faces)
    assert rep.ok and rep.euler_characteristic == 0


def test_pinched_vertex_is_not_vertex_manifold():
    # Two tetrahedra sharing exactly one vertex (the origin): every edge has two faces, the origin is pinched.
    v1 = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    f1 = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    assert closed_mesh_report(v1, f1).ok
    v = np.concatenate([v1, -v1[1:]])  # point reflection: orientation flips, so faces are reversed below
    f2 = np.where(f1 == 0, 0, f1 + 3)[:, ::-1]
    rep = closed_mesh_report(v, np.concatenate([f1, f2]))
    assert rep.edge_manifold and rep.oriented and rep.volume > 0
    assert not rep.vertex_manifold and not rep.ok


def test_overlapping_boxes_intersect_and_disjoint_do_not():
    overlapping = _concat(_box([0, 0, 0]), _box([0.5, 0.3, 0.2]))
    hits = self_intersections(*overlapping)
    assert len(hits) > 0 and has_self_intersection(*overlapping)
    # Every intersecting pair has one face from each box (12 faces each).
    assert np.all((hits[:, 0] < 12) & (hits[:, 1] >= 12))
    disjoint = _concat(_box([0, 0, 0]), _box([1.5, 0, 0]))
    assert len(self_intersections(*disjoint)) == 0
    sphere = trimesh.creation.icosphere(subdivisions=3)
    assert not has_self_intersection(sphere.vertices, sphere.faces)


def test_nested_boxes_do_not_intersect_but_crossing_ones_do():
    nested = _concat(_box([0, 0, 0], 2.0), _box([0.1, 0, 0], 1.0))  # inside, surfaces apart
    assert not has_self_intersection(*nested)
    # A thin slab piercing a box through two opposite faces.
    slab = trimesh.creation.box(extents=[3.0, 0.2, 0.2])
    crossing = _concat(_box([0, 0, 0]), (slab.vertices, np.asarray(slab.faces)))
    assert has_self_intersection(*crossing)


def test_segment_triangle_predicate_against_constructed_truths():
    rng = np.random.default_rng(0)
    n = 2000
    a, b, c = rng.standard_normal((3, n, 3))
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    # A point strictly inside each triangle (random barycentric weights away from the edges).
    w = rng.uniform(0.1, 1.0, (n, 3))
    w /= w.sum(1, keepdims=True)
    inside = w[:, :1] * a + w[:, 1:2] * b + w[:, 2:] * c
    tilt = normal + 0.5 * rng.standard_normal((n, 3))
    p, q = inside + tilt, inside - 0.7 * tilt  # the segment passes through the inside point
    assert _segments_cross_triangles(p, q, a, b, c).all()
    # Shifted to one side of the plane: never crosses.
    shift = normal * (np.abs(tilt @ np.ones(3))[:, None] + 3.0 * np.linalg.norm(tilt, axis=1, keepdims=True))
    assert not _segments_cross_triangles(p + shift, q + shift, a, b, c).any()
    # Through a point outside the triangle (a vertex pushed outward): never crosses.
    outside = a + 0.5 * (a - 0.5 * (b + c))
    assert not _segments_cross_triangles(outside + tilt, outside - tilt, a, b, c).any()


def test_triangle_pairs_rotated_about_shared_interior_point_intersect():
    rng = np.random.default_rng(1)
    for _ in range(50):
        tri = rng.standard_normal((3, 3))
        w = rng.uniform(0.2, 1.0, 3)
        centre = (w / w.sum()) @ tri
        rot = Rotation.from_rotvec(rng.uniform(0.3, 1.2) * rng.standard_normal(3) / 1.0)
        other = rot.apply(tri - centre) + centre  # both contain `centre`: they intersect
        v = np.concatenate([tri, other])
        assert len(self_intersections(v, np.array([[0, 1, 2], [3, 4, 5]]))) == 1
        far = other + 10.0
        v = np.concatenate([tri, far])
        assert len(self_intersections(v, np.array([[0, 1, 2], [3, 4, 5]]))) == 0


def test_broad_phase_matches_brute_force_pairs():
    rng = np.random.default_rng(2)
    v = rng.uniform(0, 1, (60, 3))
    f = np.stack([rng.choice(60, 3, replace=False) for _ in range(80)])
    pairs = {tuple(p) for p in candidate_pairs(v, f)}
    lo, hi = v[f].min(1), v[f].max(1)
    brute = set()
    for i in range(len(f)):
        for j in range(i + 1, len(f)):
            if set(f[i]) & set(f[j]):
                continue
            if np.all(lo[i] <= hi[j]) and np.all(lo[j] <= hi[i]):
                brute.add((i, j))
    assert pairs == brute


def test_adjacent_faces_are_never_reported():
    # A sharp fold: two faces sharing an edge, folded onto each other; adjacency excludes them.
    v = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, 0.9, 1e-3]])
    assert len(self_intersections(v, np.array([[0, 1, 2], [1, 0, 3]]))) == 0


def test_bad_input_raises():
    with pytest.raises(ValueError, match="vertices"):
        closed_mesh_report(np.zeros((4, 2)), np.zeros((1, 3), int))
    with pytest.raises(ValueError, match="faces"):
        self_intersections(np.zeros((4, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="outside"):
        self_intersections(np.zeros((4, 3)), np.array([[0, 1, 4]]))
