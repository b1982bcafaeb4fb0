"""Exact object signed distance against trimesh, a brute-force reference and finite differences."""

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.geometry import winding_numbers
from interhandgen.objects.library import sample_object
from interhandgen.objects.sdf import differentiable_sdf, object_signed_distance


def _points(obj, rng, n_box=150, n_surface=150):
    mesh = trimesh.Trimesh(obj.vertices, obj.faces, process=False)
    box = rng.uniform(-0.7, 0.7, (n_box, 3)) * np.ptp(obj.vertices, 0)
    near = mesh.sample(n_surface, seed=int(rng.integers(1 << 30))) + rng.normal(0, 0.004, (n_surface, 3))
    return mesh, np.concatenate([box, near])


@pytest.mark.parametrize("family", ["box", "bottle", "bowl", "mug", "torus", "convex_hull"])
def test_matches_brute_force_and_winding_sign(family):
    rng = np.random.default_rng(3)
    obj = sample_object(family, rng)
    mesh, pts = _points(obj, rng)
    sdf, closest, direction = object_signed_distance(torch.tensor(pts)[None], torch.tensor(obj.vertices),
                                                     torch.tensor(obj.faces))
    tri = mesh.triangles
    d = np.array([np.linalg.norm(trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), 0)) - p, axis=1).min()
                  for p in pts])
    inside = winding_numbers(torch.tensor(pts)[None], torch.tensor(obj.vertices)[None], obj.faces)[0].numpy() > 0.5
    np.testing.assert_allclose(sdf[0].numpy(), np.where(inside, -d, d), atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(pts - closest[0].numpy(), axis=1), d, atol=1e-8)
    np.testing.assert_allclose(np.linalg.norm(direction[0].numpy(), axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("family", ["sphere", "capsule", "plate"])
def test_matches_trimesh_signed_distance(family):
    pytest.importorskip("rtree")
    rng = np.random.default_rng(4)
    obj = sample_object(family, rng)
    mesh, pts = _points(obj, rng)
    sdf, _, _ = object_signed_distance(torch.tensor(pts).view(2, -1, 3), torch.tensor(obj.vertices),
                                       torch.tensor(obj.faces))
    ref = -trimesh.proximity.signed_distance(mesh, pts)  # trimesh: positive inside
    np.testing.assert_allclose(sdf.numpy().ravel(), ref, atol=1e-4)


def test_per_sample_meshes_equal_shared_mesh():
    rng = np.random.default_rng(5)
    obj = sample_object("frustum", rng)
    pts = torch.tensor(rng.normal(0, 0.05, (3, 40, 3)))
    v = torch.tensor(obj.vertices)
    a = object_signed_distance(pts, v, torch.tensor(obj.faces))[0]
    b = object_signed_distance(pts, v[None].expand(3, -1, -1), torch.tensor(obj.faces))[0]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


def test_differentiable_sdf_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    obj = sample_object("ellipsoid", rng)
    v, f = torch.tensor(obj.vertices), torch.tensor(obj.faces)
    pts = torch.tensor(rng.normal(0, 0.06, (1, 20, 3)), requires_grad=True)
    sdf, q, d = object_signed_distance(pts, v, f)
    value = differentiable_sdf(pts, q, d)
    torch.testing.assert_close(value.detach(), sdf)
    (grad,) = torch.autograd.grad(value.sum(), pts)
    eps = 1e-6
    for axis in range(3):
        step = torch.zeros_like(pts)
        step[..., axis] = eps
        fd = (object_signed_distance(pts.detach() + step, v, f)[0] - object_signed_distance(pts.detach() - step, v, f)[0]) / (2 * eps)
        torch.testing.assert_close(grad[..., axis], fd, atol=1e-5, rtol=0)


def test_far_option_is_exact_near_and_an_outside_upper_bound_far():
    rng = np.random.default_rng(7)
    obj = sample_object("mug", rng)
    mesh, pts = _points(obj, rng)
    v, f = torch.tensor(obj.vertices), torch.tensor(obj.faces)
    exact, _, _ = object_signed_distance(torch.tensor(pts)[None], v, f)
    approx, _, _ = object_signed_distance(torch.tensor(pts)[None], v, f, far=0.01)
    near = exact.abs() <= 0.01
    torch.testing.assert_close(approx[near], exact[near], rtol=0, atol=1e-15)
    assert (approx[~near] >= exact[~near].abs() - 1e-15).all() and (approx[~near] > 0.01).all()


def test_object_sdf_index_leaves_cover_every_face_and_clearance_bounds_the_minimum():
    from interhandgen.objects.sdf import ObjectSDF

    rng = np.random.default_rng(8)
    obj = sample_object("mug", rng)
    v, f = torch.tensor(obj.vertices), torch.tensor(obj.faces)
    index = ObjectSDF(v, f)
    assert set(index.members.unique().tolist()) == set(range(len(obj.faces)))
    # the leaf spheres contain their faces' spheres (the leaf bound never exceeds a member's bound)
    inner = (index.centre[index.members] - index.leaf_centre[:, None]).norm(dim=-1) + index.radius[index.members]
    assert (inner <= index.leaf_radius[:, None] + 1e-12).all()
    # rows of points outside the object, near it (1-6 mm) or only far (5-10 cm beyond its bounding sphere)
    mesh = trimesh.Trimesh(obj.vertices, obj.faces, process=False)
    surf = mesh.sample(400, seed=1)
    normal = mesh.face_normals[mesh.nearest.on_surface(surf)[2]]
    near = torch.tensor(surf + normal * rng.uniform(0.001, 0.006, (400, 1))).view(4, 100, 3)
    direction = rng.normal(size=(400, 3))
    reach = np.linalg.norm(obj.vertices, axis=1).max() + rng.uniform(0.05, 0.1, (400, 1))
    far = torch.tensor(direction / np.linalg.norm(direction, axis=1, keepdims=True) * reach).view(4, 100, 3)
    for pts in (near, far):
        exact = object_signed_distance(pts, v[None].expand(4, -1, -1), f)[0].amin(1)  # the per-sample path
        bound = index.clearance(pts, 0.006)
        assert (bound <= exact + 1e-12).all()
        if pts is near:
            torch.testing.assert_close(bound, exact, rtol=0, atol=1e-15)
        else:
            assert (bound > 0.006).all()
