"""Exact penetration volume (cm^3) against closed forms, trimesh and manifold3d used directly."""

import manifold3d
import numpy as np
import pytest
import torch
import trimesh

from interhandgen.geometry import PenetrationVolumeError, penetration_volume, seal, seal_faces
from fixtures.meshes import blob_pairs, open_tube


def _box(extents, centre):
    mesh = trimesh.creation.box(extents=extents)
    return np.asarray(mesh.vertices) + np.asarray(centre), np.asarray(mesh.faces)


def test_overlapping_boxes_closed_form():
    va, fa = _box([0.04, 0.04, 0.04], [0, 0, 0])
    vb, fb = _box([0.02, 0.02, 0.02], [0.024, 0.003, -0.002])
    # Overlap: x in [0.014, 0.02], y in [-0.007, 0.013], z in [-0.012, 0.008] -> 0.6 x 2 x 2 cm.
    expected = 0.6 * 2.0 * 2.0
    vol = penetration_volume(va[None], fa, vb[None], fb, num_workers=1)
    assert vol.shape == (1,) and vol.dtype == np.float64
    assert vol[0] == pytest.approx(expected, rel=1e-6)


def test_disjoint_identical_and_batched_with_workers():
    va, fa = _box([0.04, 0.03, 0.02], [0, 0, 0])
    vb_far, fb = _box([0.02, 0.02, 0.02], [0.1, 0, 0])
    vb_in, _ = _box([0.02, 0.02, 0.02], [0.005, 0.002, 0.0])  # fully inside a: its own volume
    vb_touch, _ = _box([0.02, 0.02, 0.02], [0.03, 0, 0])  # shares the face x = 0.02: zero volume
    verts_a = np.stack([va, va, va, va])
    verts_b = np.stack([vb_far, vb_in, vb_touch, va[[0, 1, 2, 3, 4, 5, 6, 7]] * 0 + vb_in])
    out = penetration_volume(verts_a, fa, verts_b, fb, num_workers=2, chunk_size=1)
    np.testing.assert_allclose(out, [0.0, 8.0, 0.0, 8.0], atol=1e-9, rtol=1e-6)
    # Identical meshes: the intersection is the mesh itself (4 x 3 x 2 cm).
    same = penetration_volume(va[None], fa, va[None], fa, num_workers=1)
    assert same[0] == pytest.approx(24.0, rel=1e-6)


def test_torch_float32_input_and_progress():
    va, fa = _box([0.04, 0.04, 0.04], [0, 0, 0])
    vb, fb = _box([0.02, 0.02, 0.02], [0.024, 0, 0])
    out = penetration_volume(torch.tensor(va[None], dtype=torch.float32), fa,
                             torch.tensor(vb[None], dtype=torch.float32), fb, progress=True)
    assert out[0] == pytest.approx(0.6 * 2 * 2, rel=1e-5)


def test_matches_trimesh_and_manifold3d_on_blob_pairs():
    verts_a, verts_b, faces = blob_pairs(12, seed=3)
    ours = penetration_volume(verts_a, faces, verts_b, faces, num_workers=2)
    assert (ours > 0).sum() >= 6  # most pairs interpenetrate by construction
    for i in range(len(ours)):
        ma = trimesh.Trimesh(verts_a[i] * 100, faces, process=False)
        mb = trimesh.Trimesh(verts_b[i] * 100, faces, process=False)
        inter = trimesh.boolean.intersection([ma, mb], engine="manifold")
        ref = inter.volume if len(inter.faces) else 0.0
        assert ours[i] == pytest.approx(ref, rel=1e-6, abs=1e-9)
        direct = (manifold3d.Manifold(manifold3d.Mesh(vert_properties=(verts_a[i] * 100).astype(np.float32),
                                                      tri_verts=faces.astype(np.uint32)))
                  ^ manifold3d.Manifold(manifold3d.Mesh(vert_properties=(verts_b[i] * 100).astype(np.float32),
                                                        tri_verts=faces.astype(np.uint32)))).volume()
        assert ours[i] == pytest.approx(direct, rel=1e-4, abs=1e-6)


def test_open_meshes_are_sealed_before_the_boolean():
    verts, faces = open_tube(radius=0.01, length=0.05, sections=16)
    shifted = verts + np.array([0.0, 0.0, 0.03])  # overlaps the last 2 cm of the first tube
    vol = penetration_volume(verts[None], faces, shifted[None], faces, num_workers=1)
    # Intersection of the two sealed prisms: a 16-gon prism of length 2 cm.
    expected = 0.5 * 16 * 1.0**2 * np.sin(2 * np.pi / 16) * 2.0
    assert vol[0] == pytest.approx(expected, rel=1e-6)
    plan = seal_faces(faces, len(verts))
    sealed, fs = seal(verts[None], plan)
    assert trimesh.Trimesh(sealed[0], fs, process=False).is_watertight


def test_bad_input_raises_naming_the_sample():
    va, fa = _box([0.04, 0.04, 0.04], [0, 0, 0])
    verts_a = np.stack([va, va])
    verts_b = verts_a.copy()
    verts_b[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="sample 1"):
        penetration_volume(verts_a, fa, verts_b, fa)
    with pytest.raises(ValueError, match="samples"):
        penetration_volume(verts_a, fa, verts_a[:1], fa)
    non_manifold = np.concatenate([fa, fa[:1]])
    with pytest.raises(ValueError, match="faces_b"):
        penetration_volume(verts_a, fa, verts_a, non_manifold)


def test_manifold3d_rejection_raises_instead_of_zero(monkeypatch):
    # Sealing already rejects every topology manifold3d would refuse, so simulate a refusal for the
    # mesh b of sample 1 by handing manifold3d an open triangle there; the pair must raise, not read 0.
    from interhandgen.geometry import _volume_worker

    va, fa = _box([0.04, 0.04, 0.04], [0, 0, 0])
    vb, fb = _box([0.02, 0.02, 0.02], [0.024, 0, 0])
    original = _volume_worker._manifold
    calls = []

    def flaky(m3, verts, tri):
        calls.append(1)
        if len(calls) == 4:
            return original(m3, verts[:3], np.array([[0, 1, 2]], dtype=np.uint64))
        return original(m3, verts, tri)

    monkeypatch.setattr(_volume_worker, "_manifold", flaky)
    with pytest.raises(PenetrationVolumeError, match="sample 1.*mesh b"):
        penetration_volume(np.stack([va, va]), fa, np.stack([vb, vb]), fb, num_workers=1)
