"""Sealing: boundary loops capped by centroid fans give watertight, consistently oriented meshes (checked by trimesh)."""

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.geometry import SealPlan, mesh_volume, seal, seal_faces, vertex_normals
from fixtures.meshes import blob_topology, open_tube
from interhandgen.exceptions import InputError


def test_open_tube_is_sealed_watertight_with_exact_volume():
    verts, faces = open_tube(radius=0.01, length=0.05, sections=16)
    assert not trimesh.Trimesh(verts, faces, process=False).is_watertight
    plan = seal_faces(faces, len(verts))
    assert plan.num_loops == 1 and len(plan.loops[0]) == 16
    sealed, faces_sealed = seal(verts[None], plan)
    mesh = trimesh.Trimesh(sealed[0], faces_sealed, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    # The sealed tube is a prism over a regular 16-gon: area 1/2 n r^2 sin(2 pi / n) times the length.
    expected = 0.5 * 16 * 0.01**2 * np.sin(2 * np.pi / 16) * 0.05
    assert mesh.volume == pytest.approx(expected, rel=1e-12)
    # The cap vertex is the centroid of the boundary loop.
    np.testing.assert_allclose(sealed[0, -1], verts[plan.loops[0]].mean(axis=0), atol=1e-15)


def test_two_holes_give_two_caps():
    # A tube open at both ends: remove the bottom fan (faces touching the centre vertex).
    verts, faces = open_tube(sections=12)
    centre = len(verts) - 1
    faces = faces[~(faces == centre).any(axis=1)]
    plan = seal_faces(faces, len(verts))
    assert plan.num_loops == 2
    sealed, faces_sealed = seal(verts[None], plan)
    mesh = trimesh.Trimesh(sealed[0], faces_sealed, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_closed_mesh_passes_through_unchanged():
    verts, faces = blob_topology()
    plan = seal_faces(faces, len(verts))
    assert plan.is_closed
    v = torch.tensor(verts)[None]
    out, out_faces = seal(v, plan)
    assert out is v
    np.testing.assert_array_equal(out_faces, faces)


def test_torch_seal_is_differentiable_and_matches_numpy():
    verts, faces = open_tube()
    plan = seal_faces(torch.as_tensor(faces), len(verts))
    v = torch.tensor(np.stack([verts, verts * 1.5]), requires_grad=True)
    sealed, faces_sealed = seal(v, plan)
    np.testing.assert_allclose(sealed.detach().numpy(), seal(v.detach().numpy(), plan)[0], atol=1e-15)
    vol = mesh_volume(sealed, faces_sealed)
    vol.sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    # Volume scales with the cube of the size.
    assert (vol[1] / vol[0]).item() == pytest.approx(1.5**3, rel=1e-12)


def test_non_manifold_edge_raises():
    verts, faces = open_tube()
    # A third triangle on an existing interior edge (0, 1) of the side makes it non-manifold.
    bad = np.concatenate([faces, [[0, 1, len(verts) - 1]]])
    with pytest.raises(ValueError, match="non-manifold|not consistently oriented"):
        seal_faces(bad, len(verts))


def test_edge_used_three_times_raises_non_manifold():
    # Three triangles sharing edge (0, 1), with alternating direction so orientation is not the first failure.
    faces = np.array([[0, 1, 2], [1, 0, 3], [1, 0, 4]])
    with pytest.raises(ValueError):
        seal_faces(faces, 5)
    faces = np.array([[0, 1, 2], [1, 0, 3], [0, 5, 1], [1, 5, 4]])  # (0,1) in 3 faces, directions differ
    with pytest.raises(ValueError, match="non-manifold|oriented"):
        seal_faces(faces, 6)


def test_inconsistent_orientation_raises():
    verts, faces = blob_topology()
    flipped = faces.copy()
    flipped[0] = flipped[0, ::-1]
    with pytest.raises(ValueError, match="oriented"):
        seal_faces(flipped, len(verts))


def test_bad_arguments():
    verts, faces = open_tube()
    with pytest.raises(ValueError, match="faces"):
        seal_faces(faces[:, :2], len(verts))
    with pytest.raises(ValueError, match="references vertex"):
        seal_faces(faces, 10)
    with pytest.raises(TypeError, match="integer"):
        seal_faces(faces.astype(float), len(verts))
    plan = seal_faces(faces, len(verts))
    with pytest.raises(ValueError, match="shape"):
        seal(verts[None, :-1], plan)
    with pytest.raises(TypeError, match="SealPlan"):
        seal(verts[None], faces)
    assert isinstance(plan, SealPlan)


def test_vertex_normals_point_outward_on_sphere():
    verts, faces = blob_topology()
    n = vertex_normals(torch.tensor(verts)[None], faces)[0]
    # On a sphere the area-weighted normal is close to the radial direction.
    cos = (n * torch.tensor(verts)).sum(-1)
    assert cos.min() > 0.99
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(verts), dtype=n.dtype))


def test_vertex_normals_at_a_few_vertices_equal_the_full_ones_bit_for_bit():
    from interhandgen.geometry import vertex_normals_at
    from interhandgen.geometry.mesh import seal_torch
    from interhandgen.hand import open_hand

    hand = open_hand("right")
    g = torch.Generator().manual_seed(3)
    out = hand(betas=torch.randn(5, 10, generator=g), hand_pose=0.4 * torch.randn(5, 45, generator=g),
               global_orient=torch.randn(5, 3, generator=g))
    sealed, faces = seal_torch(out.vertices, hand.data.faces)
    full = vertex_normals(sealed, faces)
    ids = torch.tensor([0, 700, 5, 333, 5, sealed.shape[1] - 1])  # unsorted, a repeat, the wrist cap's centre
    assert torch.equal(vertex_normals_at(sealed, faces, ids), full[:, ids])
    assert torch.equal(vertex_normals_at(sealed[2:3], faces, ids), full[2:3, ids])  # per row alike
    with pytest.raises(InputError, match="ids"):
        vertex_normals_at(sealed, faces, torch.tensor([sealed.shape[1]]))
