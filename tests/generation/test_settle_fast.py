"""The fast settling and resampling judge (interhandgen.generation.settle): the closed-form gradient against autograd,
the capped proxy radii against SphereProxy.radii, untouched rows, batch independence, and the within-radius
judge against a brute-force judge."""

from __future__ import annotations

import pytest
import torch

from interhandgen.data.canonical import canonical_vertices
from interhandgen.generation import SettleConfig, SubsetHand, interpenetrating, settle_contact
from interhandgen.generation.settle import (MM, _capped_radii, _depth_below, _proxy_for, _RigidState, _spheres,
                                            rigid_settle_gradients)
from interhandgen.geometry.points import gather_rows
from interhandgen.geometry.proxy import sphere_clearance
from interhandgen.hand import open_hand
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d
from test_settle import _placed, pairs  # noqa: F401 (the module fixture `pairs`)

LEFT, RIGHT = open_hand("left"), open_hand("right")


def _state(seed: int, K: int = 6, n: int = 40, m: int = 30, S: int = 9, dtype=torch.float64):
    """Two interleaved point clouds (mm) with unit normals, and sphere proxies overlapping on rows 1, 3, 4."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    pa = r(K, n, 3) * 8.0
    pivot = r(K, 1, 3) * 2.0 + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    pb = r(K, m, 3) * 8.0  # relative to the pivot
    na = torch.nn.functional.normalize(r(K, n, 3), dim=-1)
    nb = torch.nn.functional.normalize(r(K, m, 3), dim=-1)
    prow = torch.tensor([1, 3, 4])
    ca, cb = r(3, S, 3) * 6.0, r(3, S, 3) * 6.0
    reach = (torch.rand(3, S, S, generator=g, dtype=dtype) * 4.0 + 2.0)
    st = _RigidState(pa, na, pb, nb, pivot, prow, ca, cb, reach, reach * reach)
    st.refresh(torch.eye(3, dtype=dtype).expand(K, 3, 3), torch.zeros(K, 3, dtype=dtype))
    tau, omega = r(K, 3) * 0.7, r(K, 3) * 0.05
    return st, tau, omega


def _autograd_loss(st: _RigidState, tau, omega, c: SettleConfig):
    """The settling loss written out with autograd (torch.cdist for the spheres), nearest partners held fixed."""
    Rd = axis_angle_to_matrix(omega)
    move = lambda x, rows=slice(None): x @ Rd[rows].transpose(1, 2) + st.pivot[rows] + tau[rows][:, None]  # noqa: E731
    off_a = st.pa - move(st.pb_near)
    s_a = (off_a * (st.nb_near @ Rd.transpose(1, 2))).sum(-1)
    depth_a = torch.relu(c.margin_mm - s_a) * ((off_a.detach() ** 2).sum(-1) < c.nn_radius_mm ** 2)
    off_b = move(st.pb) - st.pa_near
    depth_b = torch.relu(c.margin_mm - (off_b * st.na_near).sum(-1)) * ((off_b.detach() ** 2).sum(-1) < c.nn_radius_mm ** 2)
    gap = off_a.norm(dim=-1).amin(1)
    overlap = torch.zeros_like(gap).index_put(
        (st.prow,), torch.relu(st.reach - torch.cdist(st.ca, move(st.cb, st.prow))).square().sum(dim=(1, 2)))
    loss = (c.penetration_weight * ((depth_a ** 2).sum(1) + (depth_b ** 2).sum(1) + c.proxy_weight * overlap)
            + c.touch_weight * torch.relu(gap - c.touch_mm) ** 2
            + c.reg_translation * (tau ** 2).sum(1) + c.reg_rotation * (omega ** 2).sum(1))
    return loss, depth_a, depth_b, overlap, gap


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_gradient_equals_autograd(seed):
    c = SettleConfig()
    st, tau, omega = _state(seed)
    g_tau, g_omega, deepest, overlap, gap = rigid_settle_gradients(st, tau, omega, c)
    t, o = tau.clone().requires_grad_(True), omega.clone().requires_grad_(True)
    loss, depth_a, depth_b, ref_overlap, ref_gap = _autograd_loss(st, t, o, c)
    ref_tau, ref_omega = torch.autograd.grad(loss.sum(), [t, o])
    assert (ref_overlap[st.prow] > 0).sum() >= 2 and (depth_a > 0).any() and (depth_b > 0).any()  # all terms active
    torch.testing.assert_close(g_tau, ref_tau, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g_omega, ref_omega, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(overlap, ref_overlap.detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gap, ref_gap.detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(deepest, torch.maximum(depth_a.amax(1), depth_b.amax(1)).detach())


def _hands(n: int, seed: int, rot_deg: float = 180.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 64)
    x[:, :45] = 0.3 * torch.randn(n, 45, generator=g)
    x[:, 45:55] = 0.5 * torch.randn(n, 10, generator=g)
    aa = torch.tensor([0.0, rot_deg / 180.0 * torch.pi, 0.0]) + 0.2 * torch.randn(n, 3, generator=g)
    x[:, 55:61] = matrix_to_rot6d(axis_angle_to_matrix(aa))
    return x


def test_capped_radii_follow_the_sphere_proxy_rule():
    x = _hands(5, seed=3)
    sub = SubsetHand(RIGHT, 64)
    proxy = _proxy_for(RIGHT.data, x.device, x.dtype)
    rest, transforms = sub.skeleton(x)
    centres = proxy.centres(rest, transforms)
    verts, _ = canonical_vertices(x, RIGHT)
    torch.testing.assert_close(_capped_radii(proxy, rest, centres, verts), proxy.radii(rest, centres, verts),
                               atol=2e-6, rtol=0)


@pytest.fixture(scope="module")
def placed_pairs(pairs):
    """The pairs of tests/generation/test_settle.py (a right hand approached along a direction until it first
    touches the anchor, by exact geometry) placed 6 mm deeper (rows 0-5), 0.3 mm from that touch (6-11), 7 mm
    apart (12-17) and 60 mm apart (18-23)."""
    placed = [_placed(pairs, offset) for offset in (-6.0, 0.3, 7.0, 60.0)]
    return torch.cat([a for a, _ in placed]), torch.cat([o for _, o in placed])


def test_settling_alone_equals_settling_in_a_batch(placed_pairs):
    anchor, other = placed_pairs
    sa, so = SubsetHand(LEFT, 768), SubsetHand(RIGHT, 768)
    c = SettleConfig(attract_mm=20.0)
    together = settle_contact(anchor, other, sa, so, c)
    assert not torch.equal(together, other)
    for i in (0, 7, 13, 20):
        alone = settle_contact(anchor[i:i + 1], other[i:i + 1], sa, so, c)
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=0)


def test_pairs_already_settled_or_far_are_returned_bit_identical(placed_pairs):
    anchor, other = placed_pairs
    sa, so = SubsetHand(LEFT, 768), SubsetHand(RIGHT, 768)
    c = SettleConfig(attract_mm=20.0)
    once = settle_contact(anchor, other, sa, so, c)
    # Far pairs (beyond attract_mm) are untouched.
    assert torch.equal(once[18:], other[18:])
    # A pair the first pass left settled (the loop's criterion, recomputed here by brute force: among the
    # near_size points of each hand nearest the other, subset gap <= settle_gap_mm, no near point below its nearest
    # partner's tangent plane within nn_radius_mm, no sphere overlap) is returned bit-identical by a second pass.
    twice = settle_contact(anchor, once, sa, so, c)
    pa, na = sa(anchor)
    pb, nb = so(once)
    pa, pb = pa * MM, pb * MM
    d = torch.cdist(pa, pb)
    ia, ib = d.amin(2).topk(c.near_size, largest=False).indices, d.amin(1).topk(c.near_size, largest=False).indices
    qa, qna, qb, qnb = gather_rows(pa, ia), gather_rows(na, ia), gather_rows(pb, ib), gather_rows(nb, ib)
    dd = torch.cdist(qa, qb)
    j_ab, j_ba = dd.argmin(2), dd.argmin(1)
    deepest = torch.maximum(
        _depth_below(qa, gather_rows(qb, j_ab), gather_rows(qnb, j_ab), c.margin_mm, c.nn_radius_mm).amax(1),
        _depth_below(qb, gather_rows(qa, j_ba), gather_rows(qna, j_ba), c.margin_mm, c.nn_radius_mm).amax(1))
    ca, ra = _spheres(sa, anchor)
    cb, rb = _spheres(so, once)
    overlap = (sphere_clearance(ca, ra, cb, rb) < 0).flatten(1).any(1)
    settled = (deepest <= c.margin_mm) & (dd.amin(dim=(1, 2)) <= c.settle_gap_mm) & ~overlap
    assert settled.sum() >= 3
    assert torch.equal(twice[settled], once[settled])
    assert not torch.equal(twice[~settled][:, 55:], once[~settled][:, 55:])  # the others move on


def _brute_force_judge(anchor, other, sa, so, depth_mm=1.0, radius_mm=20.0):
    """interpenetrating() written with full distance matrices over every subset point."""
    pa, na = sa(anchor)
    pb, nb = so(other)
    pa, pb = pa * MM, pb * MM
    d = torch.cdist(pa, pb)
    i_ab, i_ba = d.argmin(2), d.argmin(1)
    depth = torch.maximum(_depth_below(pa, gather_rows(pb, i_ab), gather_rows(nb, i_ab), radius=radius_mm).amax(1),
                          _depth_below(pb, gather_rows(pa, i_ba), gather_rows(na, i_ba), radius=radius_mm).amax(1))
    out = depth > depth_mm
    for i in torch.nonzero((depth > 0) & ~out).squeeze(1).tolist():
        ca, ra = _spheres(sa, anchor[i:i + 1])
        cb, rb = _spheres(so, other[i:i + 1])
        out[i] = bool((sphere_clearance(ca, ra, cb, rb) < 0).any())
    return out


def test_judge_within_the_radius_equals_the_brute_force_judge(placed_pairs):
    anchor, other = placed_pairs
    sa, so = SubsetHand(LEFT, 768), SubsetHand(RIGHT, 768)
    settled = settle_contact(anchor, other, sa, so, SettleConfig(attract_mm=20.0))
    both_a, both_o = torch.cat([anchor, anchor]), torch.cat([other, settled])
    fast = interpenetrating(both_a, both_o, sa, so)
    assert torch.equal(fast, _brute_force_judge(both_a, both_o, sa, so))
    assert fast[:6].all() and not fast[18:24].any()  # deep pairs flagged, far pairs not
