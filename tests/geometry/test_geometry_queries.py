"""Inside tests, distances, penetration depth, contact and proximity against closed forms and brute force."""

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.geometry import (
    contact_vertices,
    min_distance,
    nearest_vertex,
    penetration_depth,
    point_to_surface_distance,
    points_inside,
    proximity_ratio,
    signed_distance_few,
    winding_numbers,
)
from interhandgen.geometry.mesh import seal_torch
from fixtures.meshes import blob_pairs, open_tube

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _grid_box(half, centre, subdivisions=3):
    mesh = trimesh.creation.box(extents=[2 * half] * 3)
    for _ in range(subdivisions):
        mesh = mesh.subdivide()
    return np.asarray(mesh.vertices) + np.asarray(centre), np.asarray(mesh.faces)


def test_winding_numbers_and_inside_on_a_box():
    v, f = _grid_box(0.02, [0, 0, 0], subdivisions=1)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.03, 0.03, size=(1, 400, 3))
    pts = pts[:, np.abs(np.abs(pts[0]).max(axis=1) - 0.02) > 1e-4]  # keep away from the surface
    truth = (np.abs(pts[0]) < 0.02).all(axis=1)
    w = winding_numbers(torch.tensor(pts), torch.tensor(v)[None], f)[0].numpy()
    np.testing.assert_allclose(w, truth.astype(float), atol=1e-9)
    inside = points_inside(torch.tensor(pts), torch.tensor(v)[None], f)[0].numpy()
    np.testing.assert_array_equal(inside, truth)


def test_inside_matches_winding_number_on_blobs_and_open_tube():
    verts_a, verts_b, faces = blob_pairs(2, seed=5)
    a, b = torch.tensor(verts_a), torch.tensor(verts_b)
    inside = points_inside(a, b, faces)
    w = winding_numbers(a, b, faces)
    assert inside.any()
    assert torch.equal(inside, w > 0.5)
    # Open tube (sealed internally) against the analytic solid: r < radius, 0 < z < length.
    v, f = open_tube(radius=0.01, length=0.05, sections=32)
    rng = np.random.default_rng(1)
    pts = rng.uniform([-0.012, -0.012, -0.005], [0.012, 0.012, 0.055], size=(1, 500, 3))
    r = np.linalg.norm(pts[0, :, :2], axis=1)
    inscribed = 0.01 * np.cos(np.pi / 32)  # the polygon lies between the inscribed and outer circles
    clear = ((r < inscribed - 1e-4) | (r > 0.01 + 1e-4)) & (np.abs(pts[0, :, 2] - 0.025) < 0.025 - 1e-4) \
        | (np.abs(pts[0, :, 2] - 0.025) > 0.025 + 1e-4)
    truth = (r < inscribed) & (pts[0, :, 2] > 0) & (pts[0, :, 2] < 0.05)
    got = points_inside(torch.tensor(pts), torch.tensor(v)[None], f)[0].numpy()
    np.testing.assert_array_equal(got[clear], truth[clear])


def test_point_to_surface_distance_closed_forms():
    # Convex polytope: an interior point's distance to the surface is the smallest face-plane distance.
    ico = trimesh.creation.icosphere(subdivisions=2, radius=0.03)
    v, f = np.asarray(ico.vertices), np.asarray(ico.faces)
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(300, 3))
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * rng.uniform(0, 0.025, size=(300, 1))
    n = np.asarray(ico.face_normals)
    plane = (v[f[:, 0]] * n).sum(1)
    truth = (plane[None] - pts @ n.T).min(axis=1)
    got = point_to_surface_distance(torch.tensor(pts)[None], torch.tensor(v)[None], f)[0].numpy()
    np.testing.assert_allclose(got, truth, atol=1e-12)
    # Outside an axis-aligned box: |max(|p| - h, 0)|.
    vb, fb = _grid_box(0.01, [0, 0, 0], subdivisions=0)
    out = rng.uniform(-0.03, 0.03, size=(300, 3))
    truth = np.linalg.norm(np.maximum(np.abs(out) - 0.01, 0), axis=1)
    got = point_to_surface_distance(torch.tensor(out)[None], torch.tensor(vb)[None], fb)[0].numpy()
    outside = truth > 0
    np.testing.assert_allclose(got[outside], truth[outside], atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_penetration_depth_of_overlapping_boxes(device):
    va, fa = _grid_box(0.02, [0, 0, 0])
    vb, fb = _grid_box(0.01, [0.024, 0, 0])
    a, b = torch.tensor(va, device=device)[None], torch.tensor(vb, device=device)[None]
    # b's face at x = 0.014 lies 6 mm inside a; a's face x = 0.02 lies 6 mm inside b: depth 6 mm.
    exact = penetration_depth(a, fa, b, fb, method="exact")
    assert exact.item() == pytest.approx(0.006, abs=1e-12)
    fast = penetration_depth(a.float(), fa, b.float(), fb, method="fast")
    assert fast.dtype == torch.float32
    # The deepest candidates are verified exactly: the fast depth is the exact one here.
    assert fast.item() == pytest.approx(0.006, abs=1e-6)
    # Disjoint: zero for both methods.
    far = b + torch.tensor([0.05, 0, 0], device=device, dtype=b.dtype)
    assert penetration_depth(a, fa, far, fb, method="exact").item() == 0
    assert penetration_depth(a, fa, far, fb, method="fast").item() == 0


def test_fast_depth_is_verified_never_above_exact_and_close_to_it():
    verts_a, verts_b, faces = blob_pairs(16, seed=7)
    a, b = torch.tensor(verts_a), torch.tensor(verts_b)
    exact = penetration_depth(a, faces, b, faces, method="exact")
    fast = penetration_depth(a, faces, b, faces, method="fast")
    assert (exact > 0).sum() >= 8
    # Every fast depth is the exact depth of a vertex verified to be inside: never above the exact maximum,
    # and zero wherever the exact depth is zero (no false positives).
    assert (fast <= exact + 1e-12).all()
    assert (fast[exact == 0] == 0).all()
    # The deepest vertex is among the verified candidates on these pairs.
    torch.testing.assert_close(fast, exact, atol=1e-4, rtol=0)


def test_signed_distance_few_matches_the_exhaustive_query():
    verts_a, _, faces = blob_pairs(3, seed=5)
    verts = torch.tensor(verts_a)
    gen = torch.Generator().manual_seed(0)
    # Points from deep inside to outside: vertices moved along random directions by up to 15 mm.
    idx = torch.randint(0, verts.shape[1], (3, 200), generator=gen)
    points = torch.gather(verts, 1, idx[..., None].expand(-1, -1, 3))
    points = points + 0.015 * (torch.rand(3, 200, 3, generator=gen, dtype=torch.float64) * 2 - 1)
    sealed, sealed_faces = seal_torch(verts, faces)
    dist, inside = signed_distance_few(points, sealed, sealed_faces)
    torch.testing.assert_close(dist, point_to_surface_distance(points, verts, faces), atol=1e-12, rtol=0)
    assert torch.equal(inside, winding_numbers(points, verts, faces) > 0.5)
    assert inside.any() and (~inside).any()
    # With a single round of 2 triangles most points are uncertified: the exhaustive fallback agrees too.
    dist2, inside2 = signed_distance_few(points, sealed, sealed_faces, near_triangles=(2,))
    torch.testing.assert_close(dist2, dist, atol=1e-12, rtol=0)
    assert torch.equal(inside2, inside)


def test_min_distance_closed_forms():
    va, fa = _grid_box(0.02, [0, 0, 0], subdivisions=0)
    gap = 0.003
    # Box b (half 0.005) sits beside a's +x face; its corner (0.023, 0.008, 0.007) faces a's face.
    vb, fb = _grid_box(0.005, [0.02 + gap + 0.005, 0.003, 0.002], subdivisions=0)
    a, b = torch.tensor(va)[None], torch.tensor(vb)[None]
    vertex = min_distance(a, b)
    assert vertex.item() == pytest.approx(np.sqrt(gap**2 + 0.012**2 + 0.013**2), abs=1e-12)
    surface = min_distance(a, b, fa, fb)
    assert surface.item() == pytest.approx(gap, abs=1e-12)
    with pytest.raises(ValueError, match="both"):
        min_distance(a, b, fa, None)


def test_min_distance_surface_bounded_by_vertex_and_brute_force():
    verts_a, verts_b, faces = blob_pairs(4, seed=11)
    a, b = torch.tensor(verts_a), torch.tensor(verts_b)
    vertex = min_distance(a, b)
    brute = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").amin(dim=(1, 2))
    torch.testing.assert_close(vertex, brute, rtol=0, atol=1e-12)
    surface = min_distance(a, b, faces, faces)
    assert (surface <= vertex + 1e-15).all()
    full = torch.minimum(point_to_surface_distance(a, b, faces).amin(1), point_to_surface_distance(b, a, faces).amin(1))
    torch.testing.assert_close(surface, full, rtol=0, atol=1e-12)


def test_nearest_vertex_matches_brute_force_and_chunking():
    verts_a, verts_b, _ = blob_pairs(3, seed=2)
    a, b = torch.tensor(verts_a).float(), torch.tensor(verts_b).float()
    d, i = nearest_vertex(a, b, chunk_elems=300_000)  # forces chunks within a sample
    ref = torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")
    torch.testing.assert_close(d.double(), ref.amin(-1), rtol=0, atol=1e-7)


def test_contact_vertices_and_proximity_ratio():
    verts_a, verts_b, _ = blob_pairs(4, seed=9)
    a, b = torch.tensor(verts_a), torch.tensor(verts_b)
    mask_a, mask_b = contact_vertices(a, b, threshold=0.004)
    d = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    assert torch.equal(mask_a, d.amin(2) < 0.004) and torch.equal(mask_b, d.amin(1) < 0.004)
    assert proximity_ratio(np.array([0.0, 0.004, 0.02, 0.5]), threshold=0.01) == 0.5
    assert proximity_ratio(torch.tensor([0.001, 0.009])) == 1.0
    with pytest.raises(ValueError, match="min_dist"):
        proximity_ratio(np.array([0.1, -1.0]))
    with pytest.raises(ValueError, match="threshold"):
        proximity_ratio(np.array([0.1]), threshold=0)
    with pytest.raises(ValueError, match="1-D"):
        proximity_ratio(np.zeros((2, 2)))


def test_argument_errors():
    a = torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match="batch size"):
        min_distance(a, torch.zeros(3, 5, 3))
    with pytest.raises(TypeError, match="dtype"):
        min_distance(a, torch.zeros(2, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[B, V, 3\]"):
        min_distance(torch.zeros(5, 3), a)
    v, f = _grid_box(0.01, [0, 0, 0], 0)
    with pytest.raises(ValueError, match="method"):
        penetration_depth(torch.tensor(v)[None], f, torch.tensor(v)[None], f, method="slow")


def test_exact_depth_culled_by_the_intersection_box_equals_the_full_exact_depth():
    from interhandgen.geometry import penetration_volume

    verts_a, verts_b, faces = blob_pairs(12, seed=11)
    a, b = torch.tensor(verts_a), torch.tensor(verts_b)
    vol, boxes = penetration_volume(a, faces, b, faces, num_workers=1, return_bounds=True)
    assert boxes.shape == (12, 2, 3)
    assert (vol > 0).sum() >= 6 and (vol == 0).any()
    # Empty intersections have NaN boxes; the others are proper boxes.
    assert np.isnan(boxes[vol == 0]).all() and (boxes[vol > 0, 1] >= boxes[vol > 0, 0]).all()
    full = penetration_depth(a, faces, b, faces, method="exact")
    boxed = penetration_depth(a, faces, b, faces, method="exact", region=(boxes[:, 0], boxes[:, 1]))
    assert (full[vol > 0] > 0).all() and (full[vol == 0] == 0).all()
    torch.testing.assert_close(boxed, full, atol=0, rtol=0)
    # Every vertex the exhaustive inside test finds inside the other blob lies in the intersection box.
    sealed_b, fb = seal_torch(b, faces)
    inside = points_inside(a, b, faces)
    lo, hi = torch.tensor(boxes[:, 0])[:, None], torch.tensor(boxes[:, 1])[:, None]
    in_box = ((a >= lo - 1e-7) & (a <= hi + 1e-7)).all(-1)
    assert inside.any() and not (inside & ~in_box).any()
    with pytest.raises(ValueError, match="region"):
        penetration_depth(a, faces, b, faces, method="fast", region=(boxes[:, 0], boxes[:, 1]))
    with pytest.raises(ValueError, match="region"):
        penetration_depth(a, faces, b, faces, method="exact", region=(boxes[:3, 0], boxes[:3, 1]))


def test_boxed_exact_depth_on_interpenetrating_hands_equals_the_full_exact_depth():
    from interhandgen.geometry import penetration_volume
    from interhandgen.hand import open_hand

    left, right = open_hand("left"), open_hand("right")
    gen = torch.Generator().manual_seed(3)
    B = 10
    # Moderate poses: hands without self-intersections (with random poses of 0.5 std some fingers pass through
    # each other, where "inside" is ill-defined and the pseudo-normal test and the boolean disagree).
    with torch.no_grad():
        va = left(betas=torch.randn(B, 10, generator=gen), hand_pose=0.2 * torch.randn(B, 45, generator=gen)).vertices
        vb = right(betas=torch.randn(B, 10, generator=gen), hand_pose=0.2 * torch.randn(B, 45, generator=gen)).vertices
    # Push the right hands into the left ones by 0 to 3 cm along random directions.
    shift = torch.nn.functional.normalize(torch.randn(B, 3, generator=gen), dim=1) * torch.linspace(0, 0.03, B)[:, None]
    vb = vb - vb.mean(1, keepdim=True) + va.mean(1, keepdim=True) + shift[:, None]
    vol, boxes = penetration_volume(va, left.faces, vb, right.faces, num_workers=1, return_bounds=True)
    assert (vol > 0).sum() >= 8
    full = penetration_depth(va.double(), left.faces, vb.double(), right.faces, method="exact")
    boxed = penetration_depth(va.double(), left.faces, vb.double(), right.faces, method="exact",
                              region=(boxes[:, 0], boxes[:, 1]))
    torch.testing.assert_close(boxed, full, atol=0, rtol=0)
