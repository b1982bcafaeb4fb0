"""The static-equilibrium proxy of the stability test: closed-form cases, scipy's LP, and MuJoCo on built cases."""

import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.optimize import linprog

from interhandgen.exceptions import InputError
from interhandgen.objects.equilibrium import can_hold, equilibrium_residual, friction_wrenches, select_contacts
from interhandgen.objects.sdf import ObjectSDF

H = 0.025  # half edge of the cube (metres); its centre of mass at the origin


def _hold(points, normals, mu, centre=(0.0, 0.0, 0.0)):
    p = torch.tensor(points, dtype=torch.float64)[None]
    n = torch.tensor(normals, dtype=torch.float64)[None]
    mask = torch.ones(p.shape[:2], dtype=torch.bool)
    return bool(can_hold(p, n, mask, torch.tensor([centre], dtype=torch.float64), mu)[0])


def test_pinch_by_two_opposing_fingertips_holds_with_friction_and_slips_without():
    points, normals = [[-H, 0, 0], [H, 0, 0]], [[-1, 0, 0], [1, 0, 0]]
    assert _hold(points, normals, 1.0)
    assert not _hold(points, normals, 0.0)


@pytest.mark.parametrize("mu, held", [(1.0, True), (0.4, False)])
def test_pinch_above_the_equator_of_a_sphere_needs_mu_above_tan_theta(mu, held):
    # contacts 30 degrees above the equator: the cones reach above horizontal iff mu > tan 30 deg = 0.577
    t = math.radians(30)
    n = [[-math.cos(t), 0, math.sin(t)], [math.cos(t), 0, math.sin(t)]]
    assert _hold([[0.04 * a for a in v] for v in n], n, mu) is held


def test_box_resting_on_a_flat_palm_holds_without_friction():
    points = [[x, y, -H] for x in (-0.02, 0.02) for y in (-0.02, 0.02)]
    assert _hold(points, [[0, 0, -1]] * 4, 0.0)


def test_support_beside_the_centre_of_mass_cannot_hold_it():
    # all contacts under x > 0.01: the weight's torque about them is not balanced, whatever the friction
    points = [[x, y, -H] for x in (0.01, 0.02) for y in (-0.02, 0.02)]
    assert not _hold(points, [[0, 0, -1]] * 4, 1.0)


def test_contacts_all_on_top_do_not_hold():
    points = [[x, y, H] for x in (-0.02, 0.02) for y in (-0.02, 0.02)]
    assert not _hold(points, [[0, 0, 1]] * 4, 1.0)


def test_residual_matches_scipy_linprog_on_random_contacts():
    rng = np.random.default_rng(0)
    B, C = 60, 6
    n = rng.normal(size=(B, C, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    p = 0.03 * n + 0.003 * rng.normal(size=(B, C, 3))
    W = friction_wrenches(torch.tensor(p), torch.tensor(n), torch.zeros(B, 3, dtype=torch.float64), 0.5, 6)
    res = equilibrium_residual(W).numpy()
    feasible = []
    for b in range(B):  # the exact LP: min sum |slack| s.t. W lambda + s+ - s- = w, lambda, s >= 0
        A = W[b].numpy().T
        out = linprog(np.r_[np.zeros(A.shape[1]), np.ones(12)], A_eq=np.c_[A, np.eye(6), -np.eye(6)],
                      b_eq=[0, 0, 1, 0, 0, 0], bounds=(0, None), method="highs")
        feasible.append(out.fun < 1e-9)
    feasible = np.array(feasible)
    assert 0 < feasible.sum() < B  # both kinds occur
    assert np.array_equal(res < 1e-7, feasible)


def test_mask_drops_contacts_and_empty_rows_count_as_not_held():
    W = friction_wrenches(torch.tensor([[[-H, 0, 0], [H, 0, 0]]]), torch.tensor([[[-1.0, 0, 0], [1.0, 0, 0]]]),
                          torch.zeros(1, 3, dtype=torch.float64), 1.0, 4)
    assert float(equilibrium_residual(W)[0]) < 1e-9
    one = torch.tensor([[True] * 4 + [False] * 4])
    assert float(equilibrium_residual(W, one)[0]) > 0.1
    assert float(equilibrium_residual(W, torch.zeros(1, 8, dtype=torch.bool))[0]) == 1.0
    with pytest.raises(InputError):
        equilibrium_residual(W, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(InputError):
        friction_wrenches(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3), torch.zeros(1, 3), 1.0)


def test_select_contacts_keeps_close_points_facing_down():
    pts = torch.tensor([[[0, 0, -0.03], [0, 0, 0.03], [0.04, 0, 0]]], dtype=torch.float64)
    normals = torch.tensor([[[0, 0, -1.0], [0, 0, 1.0], [1.0, 0, 0]]], dtype=torch.float64)
    signed = torch.tensor([[0.001, 0.001, 0.01]], dtype=torch.float64)
    surface, _, mask = select_contacts(pts, normals, signed, 0.005, max_normal_z=0.0)
    assert mask.tolist() == [[True, False, False]]
    assert torch.allclose(surface[0, 0], torch.tensor([0, 0, -0.029], dtype=torch.float64))


# ---------------------------------------------------------------- against MuJoCo on built cases
def _box_points(centre, size, n=7):
    """Points on the box's surface (a grid on each face) and its corners (for MuJoCo's convex hull)."""
    g = np.linspace(-0.5, 0.5, n)
    face = np.array([[a, b] for a in g for b in g])
    pts = []
    for axis in range(3):
        for sign in (-0.5, 0.5):
            p = np.insert(face, axis, sign, axis=1)
            pts.append(p)
    return np.concatenate(pts) * np.asarray(size) + np.asarray(centre)


def _proxy_and_mujoco(plates, contact=0.005, max_normal_z=0.0):
    physics = pytest.importorskip("interhandgen.objects.physics")
    pytest.importorskip("mujoco")
    cube = trimesh.creation.box((2 * H, 2 * H, 2 * H))
    sdf = ObjectSDF(torch.as_tensor(cube.vertices), torch.as_tensor(cube.faces))
    pts = torch.as_tensor(np.concatenate([_box_points(c, s) for c, s in plates]))[None]
    signed, _, direction = sdf(pts)
    held_proxy = bool(can_hold(*select_contacts(pts, direction, signed, contact, max_normal_z),
                               torch.zeros(1, 3, dtype=torch.float64), 1.0)[0])
    corners = _box_points((0, 0, 0), (2 * H,) * 3, 2)
    statics = [_box_points(c, s, 2) for c, s in plates]
    return held_proxy, physics.simulate_drop(statics, [corners]) < physics.HOLD_THRESHOLD


def test_agrees_with_mujoco_on_a_support_under_the_centre():
    # a 2 cm plate 1 mm under the cube's centre: the cube drops 1 mm onto it and stays
    assert _proxy_and_mujoco([((0, 0, -H - 0.001 - 0.005), (0.02, 0.02, 0.01))]) == (True, True)


def test_agrees_with_mujoco_on_a_support_beside_the_centre():
    # the plate under one edge only (x from 1.5 to 3.5 cm): the cube tips off it
    assert _proxy_and_mujoco([((0.025, 0, -H - 0.001 - 0.005), (0.02, 0.05, 0.01))]) == (False, False)


def test_agrees_with_mujoco_on_side_plates_that_do_not_squeeze():
    # vertical plates 1 mm from the sides: the friction LP alone would say held (it allows any squeeze), the
    # support selection (surfaces facing down) does not, and MuJoCo drops the cube (nothing presses on the plates)
    plates = [((-H - 0.001 - 0.005, 0, 0), (0.01, 0.06, 0.06)), ((H + 0.001 + 0.005, 0, 0), (0.01, 0.06, 0.06))]
    assert _proxy_and_mujoco(plates, max_normal_z=None)[0] is True
    assert _proxy_and_mujoco(plates) == (False, False)
