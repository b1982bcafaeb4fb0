"""Differentiable penetration loss: zero when apart, positive when overlapping, its gradient separates the hands."""

import numpy as np
import pytest
import torch

from interhandgen.geometry import PenetrationLoss, geman_mcclure, penetration_loss, penetration_volume
from fixtures.meshes import blob_pairs, open_tube


def test_geman_mcclure_closed_form():
    d = torch.tensor([0.0, 0.001, 0.05, 10.0], dtype=torch.float64)
    rho = 0.05
    expected = rho**2 * d**2 / (d**2 + rho**2)
    torch.testing.assert_close(geman_mcclure(d, rho), expected)
    assert geman_mcclure(d, rho)[2].item() == pytest.approx(rho**2 / 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_apart_positive_overlapping_and_gradient_separates(dtype):
    verts_a, verts_b, faces = blob_pairs(6, seed=4, overlap=0.008)
    a = torch.tensor(verts_a, dtype=dtype, requires_grad=True)
    b = torch.tensor(verts_b, dtype=dtype, requires_grad=True)
    volume_before = penetration_volume(verts_a, faces, verts_b, faces, num_workers=1)
    loss = penetration_loss(a, faces, b, faces)
    assert loss.dtype == dtype and loss.shape == (6,)
    overlapping = volume_before > 1e-3
    assert overlapping.sum() >= 3
    assert (loss[torch.as_tensor(overlapping)] > 0).all()
    loss.sum().backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0  # gradients reach both hands
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # A small step along -grad (0.3 mm for the largest-gradient vertex) reduces the loss and the overlap.
    scale = 3e-4 / torch.cat([a.grad, b.grad], dim=1).norm(dim=-1).amax(dim=1).clamp_min(1e-30)
    with torch.no_grad():
        a2 = a - scale[:, None, None] * a.grad
        b2 = b - scale[:, None, None] * b.grad
    loss_after = penetration_loss(a2, faces, b2, faces)
    idx = torch.as_tensor(overlapping)
    assert (loss_after[idx] < loss.detach()[idx]).all()
    volume_after = penetration_volume(a2.double().numpy(), faces, b2.double().numpy(), faces, num_workers=1)
    assert (volume_after[overlapping] < volume_before[overlapping]).all()
    # Separated far apart: exactly zero, with zero gradient.
    far = torch.tensor(verts_b + np.array([1.0, 0, 0]), dtype=dtype, requires_grad=True)
    zero = penetration_loss(a.detach(), faces, far, faces)
    assert torch.equal(zero, torch.zeros(6, dtype=dtype))


def test_one_direction_mean_reduction_and_module():
    verts_a, verts_b, faces = blob_pairs(3, seed=6)
    a, b = torch.tensor(verts_a), torch.tensor(verts_b)
    both = penetration_loss(a, faces, b, faces)
    b_in_a = penetration_loss(a, faces, b, faces, both_directions=False)
    a_in_b = penetration_loss(b, faces, a, faces, both_directions=False)
    torch.testing.assert_close(both, b_in_a + a_in_b)
    mean = penetration_loss(a, faces, b, faces, reduction="mean", both_directions=False)
    torch.testing.assert_close(mean, b_in_a / a.shape[1])
    module = PenetrationLoss(faces, faces)
    torch.testing.assert_close(module(a, b), both)
    with pytest.raises(ValueError, match="rho"):
        penetration_loss(a, faces, b, faces, rho=0)
    with pytest.raises(ValueError, match="reduction"):
        penetration_loss(a, faces, b, faces, reduction="max")


def test_open_mesh_vertex_beyond_the_hole_is_not_inside():
    # A point on the tube's axis just beyond its open end: unsealed, its nearest vertex is a rim vertex
    # whose normal points sideways, so the normal test calls it inside; sealed, the cap vertex is nearest.
    from interhandgen.geometry.mesh import seal_torch
    from interhandgen.geometry.queries import fast_inside

    v, f = open_tube(radius=0.01, length=0.05, sections=16)
    probe = torch.tensor([[[0.0, 0.0, 0.056], [0.0, 0.0, 0.03]]])
    tube = torch.tensor(v, dtype=torch.float32)[None]
    unsealed, _ = fast_inside(probe, tube, torch.as_tensor(f))
    assert unsealed.tolist() == [[True, True]]
    sealed, fs = seal_torch(tube, f)
    inside, _ = fast_inside(probe, sealed, fs)
    assert inside.tolist() == [[False, True]]


def test_strided_loss_approximates_the_full_loss_on_hands():
    """vertex_stride trades exactness for speed: same sign, same order of magnitude, zero when apart."""
    from interhandgen.hand import open_hand

    left, right = open_hand("left"), open_hand("right")
    a = left(hand_pose=torch.zeros(3, 45)).vertices
    shift = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.01, 0.0], [0.3, 0.0, 0.0]])
    b = right(hand_pose=torch.zeros(3, 45), transl=shift).vertices
    full = penetration_loss(a, left.faces, b, right.faces)
    strided = penetration_loss(a, left.faces, b, right.faces, vertex_stride=3)
    assert full[2] == 0 and strided[2] == 0
    assert (full[:2] > 0).all() and (strided[:2] > 0).all()
    assert ((strided[:2] / full[:2]) - 1).abs().max() < 0.5
    with pytest.raises(ValueError, match="vertex_stride"):
        penetration_loss(a, left.faces, b, right.faces, vertex_stride=0)
