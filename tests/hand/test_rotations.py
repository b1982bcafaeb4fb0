"""Rotation conversions of interhandgen.rotations against scipy.spatial.transform.Rotation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from interhandgen.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rot6d_to_matrix,
)

# Angles from exactly 0 through the small-angle series switch (1e-4) to exactly pi.
ANGLES = np.array([0.0, 1e-12, 1e-8, 1e-6, 1e-5, 9.9e-5, 1e-4, 1.01e-4, 3e-4, 1e-3, 0.1, 1.0, 2.0, 3.0,
                   np.pi - 1e-3, np.pi - 1e-6, np.pi - 1e-9, np.pi])
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


def rotvecs(seed: int = 0, random: int = 200) -> np.ndarray:
    """Rotation vectors: every angle of ANGLES on random axes (incl. coordinate axes), plus random ones."""
    rng = np.random.default_rng(seed)
    axes = np.concatenate([np.eye(3), -np.eye(3), rng.normal(size=(6, 3))])
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    special = (axes[:, None, :] * ANGLES[None, :, None]).reshape(-1, 3)
    rand = rng.normal(size=(random, 3))
    rand *= (rng.uniform(0, np.pi, random) / np.linalg.norm(rand, axis=1))[:, None]
    return np.concatenate([special, rand])


def t(a, dtype=torch.float64):
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def same_up_to_sign(a: np.ndarray, b: np.ndarray, atol: float) -> None:
    sign = np.where((a * b).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    np.testing.assert_allclose(a * sign, b, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_axis_angle_to_matrix(dtype):
    rv = rotvecs()
    got = axis_angle_to_matrix(t(rv, dtype)).double().numpy()
    np.testing.assert_allclose(got, Rotation.from_rotvec(rv).as_matrix(), atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matrix_to_axis_angle(dtype):
    rv = rotvecs(1)
    mats = Rotation.from_rotvec(rv).as_matrix()
    got = matrix_to_axis_angle(t(mats, dtype)).double().numpy()
    angle = np.linalg.norm(rv, axis=1)
    # Away from pi the rotation vector is unique; at pi, +axis and -axis are the same rotation.
    unique = angle < np.pi - 1e-3
    tol = 1e-9 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(got[unique], Rotation.from_matrix(mats[unique]).as_rotvec(), atol=tol)
    same_up_to_sign(got[~unique], rv[~unique], atol=tol if dtype == torch.float64 else 1e-3)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), angle, atol=tol if dtype == torch.float64 else 1e-3)
    np.testing.assert_allclose(Rotation.from_rotvec(got).as_matrix(), mats, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_quaternion_conversions(dtype):
    rv = rotvecs(2)
    ref = Rotation.from_rotvec(rv)
    q_ref = ref.as_quat()  # (x, y, z, w), like ours
    tol = TOL[dtype] * 10
    q = axis_angle_to_quaternion(t(rv, dtype)).double().numpy()
    same_up_to_sign(q, q_ref, atol=tol)
    q_m = matrix_to_quaternion(t(ref.as_matrix(), dtype)).double().numpy()
    same_up_to_sign(q_m, q_ref, atol=tol if dtype == torch.float64 else 1e-5)
    assert (q_m[:, 3] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q_m, axis=1), 1.0, atol=tol)
    # quaternion_to_matrix normalises: scaled quaternions give the same matrix.
    scale = np.random.default_rng(3).uniform(0.2, 5.0, (len(rv), 1))
    np.testing.assert_allclose(quaternion_to_matrix(t(q_ref * scale, dtype)).double().numpy(), ref.as_matrix(), atol=tol)
    aa = quaternion_to_axis_angle(t(q_ref * scale, dtype)).double().numpy()
    unique = np.linalg.norm(rv, axis=1) < np.pi - 1e-3
    np.testing.assert_allclose(aa[unique], rv[unique], atol=1e-9 if dtype == torch.float64 else 1e-5)
    np.testing.assert_allclose(Rotation.from_rotvec(aa).as_matrix(), ref.as_matrix(), atol=1e-9 if dtype == torch.float64 else 1e-5)
    # q and -q are the same rotation; the axis-angle must not depend on the sign.
    np.testing.assert_allclose(quaternion_to_axis_angle(t(-q_ref[unique], dtype)).double().numpy(), rv[unique],
                               atol=1e-9 if dtype == torch.float64 else 1e-5)


def test_rot6d_is_first_two_columns_and_round_trips():
    mats = Rotation.random(100, random_state=4).as_matrix()
    r6 = matrix_to_rot6d(t(mats)).numpy()
    np.testing.assert_array_equal(r6, np.concatenate([mats[:, :, 0], mats[:, :, 1]], axis=1))
    np.testing.assert_allclose(rot6d_to_matrix(t(r6)).numpy(), mats, atol=1e-14)


def test_rot6d_to_matrix_of_arbitrary_vectors():
    """Any 6-vector with independent halves maps to the rotation whose first column is along a1 and whose first
    two columns span (a1, a2) with the second on a2's side: Gram-Schmidt, checked by its defining properties."""
    rng = np.random.default_rng(5)
    r6 = rng.normal(size=(200, 6))
    R = rot6d_to_matrix(t(r6)).numpy()
    a1, a2 = r6[:, :3], r6[:, 3:]
    np.testing.assert_allclose(R.transpose(0, 2, 1) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(R[:, :, 0], a1 / np.linalg.norm(a1, axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose((R[:, :, 2] * a2).sum(1), 0.0, atol=1e-12)  # a2 lies in the span of columns 0, 1
    assert ((R[:, :, 1] * a2).sum(1) > 0).all()
    scaled = rot6d_to_matrix(t(np.concatenate([a1 * 3.0, a2 * 0.5], 1))).numpy()
    np.testing.assert_allclose(scaled, R, atol=1e-12)


def test_round_trips():
    rv = rotvecs(6)
    rv = rv[np.linalg.norm(rv, axis=1) < np.pi - 1e-3]
    x = t(rv)
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(x)), x, rtol=0, atol=1e-10)
    torch.testing.assert_close(quaternion_to_axis_angle(axis_angle_to_quaternion(x)), x, rtol=0, atol=1e-12)
    R = axis_angle_to_matrix(x)
    torch.testing.assert_close(quaternion_to_matrix(matrix_to_quaternion(R)), R, rtol=0, atol=1e-12)
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(R)), R, rtol=0, atol=1e-12)


def test_batch_shapes_are_kept():
    x = torch.randn(2, 5, 7, 3, dtype=torch.float64)
    R = axis_angle_to_matrix(x)
    assert R.shape == (2, 5, 7, 3, 3)
    assert matrix_to_axis_angle(R).shape == (2, 5, 7, 3)
    assert matrix_to_quaternion(R).shape == (2, 5, 7, 4)
    assert matrix_to_rot6d(R).shape == (2, 5, 7, 6)
    assert rot6d_to_matrix(matrix_to_rot6d(R)).shape == (2, 5, 7, 3, 3)
    torch.testing.assert_close(axis_angle_to_matrix(x[1, 3]), R[1, 3])


# ------------------------------------------------------------------------------------------ gradients
def test_gradients_finite_and_exact_at_zero():
    # d R / d w at w = 0 is the cross-product generator: dR[2,1]/dw_x = 1, dR[1,2]/dw_x = -1, ...
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, w)
    expect = torch.zeros(3, 3, 3, dtype=torch.float64)
    for k, (i, j) in enumerate([(2, 1), (0, 2), (1, 0)]):
        expect[i, j, k], expect[j, i, k] = 1.0, -1.0
    torch.testing.assert_close(jac, expect)
    # Quaternion of w: (w/2, 1) to first order.
    jq = torch.autograd.functional.jacobian(axis_angle_to_quaternion, w)
    torch.testing.assert_close(jq, torch.cat([0.5 * torch.eye(3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)]))
    # Back to axis-angle from the identity: d w / d q_xyz = 2 I.
    q = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    ja = torch.autograd.functional.jacobian(quaternion_to_axis_angle, q)
    torch.testing.assert_close(ja[:, :3], 2.0 * torch.eye(3, dtype=torch.float64))
    # The full chain axis-angle -> matrix -> axis-angle is the identity map, also in its derivative at 0.
    jr = torch.autograd.functional.jacobian(lambda v: matrix_to_axis_angle(axis_angle_to_matrix(v)), w)
    torch.testing.assert_close(jr, torch.eye(3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-5, 1e-4, np.pi - 1e-4])
def test_gradients_finite_everywhere(dtype, angle):
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=dtype)
    x = (axis / axis.norm() * angle).requires_grad_(True)
    for fn in (axis_angle_to_matrix, axis_angle_to_quaternion,
               lambda v: matrix_to_axis_angle(axis_angle_to_matrix(v)),
               lambda v: quaternion_to_axis_angle(axis_angle_to_quaternion(v)),
               lambda v: rot6d_to_matrix(matrix_to_rot6d(axis_angle_to_matrix(v)))):
        x.grad = None
        fn(x).square().sum().backward()
        assert torch.isfinite(x.grad).all(), (fn, angle)


def test_gradcheck_generic_points():
    g = torch.Generator().manual_seed(7)
    aa = (torch.randn(4, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    R = axis_angle_to_matrix(aa).detach().requires_grad_(True)
    q = torch.randn(4, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    r6 = torch.randn(4, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,))
    assert torch.autograd.gradcheck(axis_angle_to_quaternion, (aa,))
    assert torch.autograd.gradcheck(matrix_to_axis_angle, (R,))
    assert torch.autograd.gradcheck(matrix_to_quaternion, (R,))
    assert torch.autograd.gradcheck(quaternion_to_matrix, (q,))
    assert torch.autograd.gradcheck(quaternion_to_axis_angle, (q,))
    assert torch.autograd.gradcheck(rot6d_to_matrix, (r6,))
    assert torch.autograd.gradcheck(matrix_to_rot6d, (R,))


# ------------------------------------------------------------------------------------------ bad inputs
def test_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="axis_angle"):
        axis_angle_to_matrix(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="matrix"):
        matrix_to_axis_angle(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="matrix"):
        matrix_to_rot6d(torch.zeros(3))
    with pytest.raises(ValueError, match="rot6d"):
        rot6d_to_matrix(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="quaternion"):
        quaternion_to_matrix(torch.zeros(3))
    with pytest.raises(TypeError, match="axis_angle"):
        axis_angle_to_matrix(np.zeros(3))
