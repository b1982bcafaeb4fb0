"""Anti-penetration guidance: surface subsets, the nearest-point search, the penalty against the exact metrics,
and the Polyak guidance step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen.geometry import min_distance, penetration_depth, penetration_volume, vertex_normals
from interhandgen.geometry.loss import geman_mcclure
from interhandgen.data.canonical import canonical_vertices
from interhandgen.generation import AntiPenetrationGuidance, SubsetHand, boxes_overlap, surface_penetration_loss
from interhandgen.geometry.points import farthest_point_indices, mutual_nearest
from interhandgen.hand import open_hand


@pytest.fixture(scope="module")
def hands():
    left, right = open_hand("left"), open_hand("right")
    return left, right, SubsetHand(left), SubsetHand(right)


def canonical(n: int, pose_scale: float = 0.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 64)
    x[:, :45] = torch.randn(n, 45, generator=g) * pose_scale
    x[:, 45:55] = torch.randn(n, 10, generator=g) * 0.5
    x[:, 55] = x[:, 59] = 1.0
    return x


def pushed_together(direction, rot6d, n: int = 12, start: float = 0.12) -> tuple[torch.Tensor, torch.Tensor]:
    """A rest-pose anchor and a right hand moved from ``start`` metres along ``direction`` onto it, step by step."""
    anchor = canonical(n)
    anchor[:, 45:55] = 0.0
    other = anchor.clone()
    other[:, 55:61] = torch.tensor(rot6d)
    d = torch.tensor(direction, dtype=torch.float32)
    other[:, 61:] = torch.linspace(start, 0.0, n)[:, None] * d / d.norm()
    return anchor, other


PATHS = [((1, 0, 0), (1, 0, 0, 0, 1, 0)), ((0, 1, 0), (1, 0, 0, 0, 1, 0)), ((0, 0, 1), (1, 0, 0, 0, 1, 0)),
         ((0, 1, 0), (1, 0, 0, 0, -1, 0)), ((0, 0, 1), (-1, 0, 0, 0, 1, 0))]


def test_farthest_point_indices_match_a_brute_force_greedy():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(200, 3, generator=g)
    idx = farthest_point_indices(pts, 30, start=5)
    p = pts.double().numpy()
    chosen = [5]
    for _ in range(29):
        d = np.min(((p[:, None] - p[chosen][None]) ** 2).sum(-1), axis=1)
        chosen.append(int(np.argmax(d)))
    assert idx.tolist() == chosen and len(set(chosen)) == 30
    with pytest.raises(ValueError, match="num"):
        farthest_point_indices(pts, 0)
    with pytest.raises(ValueError, match="points"):
        farthest_point_indices(pts[:, :2], 3)


@pytest.mark.parametrize("side", ["left", "right"])
def test_subset_hand_equals_the_full_layer_on_its_vertices(hands, side):
    left, right, sub_left, sub_right = hands
    model, sub = (left, sub_left) if side == "left" else (right, sub_right)
    x = canonical(6, pose_scale=0.2, seed=1)
    g = torch.Generator().manual_seed(2)
    x[:, 55:61] = torch.randn(6, 6, generator=g)
    x[:, 61:] = torch.randn(6, 3, generator=g) * 0.05
    verts, _ = canonical_vertices(x, model)
    points, normals = sub(x)
    torch.testing.assert_close(points, verts[:, sub.indices], atol=1e-6, rtol=0)
    # Skinned rest normals against the exact normals of the posed mesh.
    exact = vertex_normals(verts, model.faces)[:, sub.indices]
    cos = (exact * normals).sum(-1)
    assert torch.allclose(normals.norm(dim=-1), torch.ones(()), atol=1e-5)
    assert cos.mean() > 0.98 and (cos > 0).float().mean() > 0.995
    # Even spread: the subset's nearest-neighbour spacing on the rest template is about a centimetre.
    rest = sub.v_template
    d = torch.cdist(rest, rest) + torch.eye(sub.num_points) * 1e3
    assert 0.005 < d.min(dim=1).values.mean() < 0.02
    with pytest.raises(ValueError, match=r"\[B, 64\]"):
        sub(x[:, :60])


def test_mutual_nearest_and_boxes_match_brute_force():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(9, 70, 3, generator=g) * 0.05
    b = torch.randn(9, 50, 3, generator=g) * 0.05 + 0.03
    d = torch.cdist(a.double(), b.double())
    for chunk in (1 << 18, 70 * 50, 1):  # all rows at once, one pair per chunk, degenerate chunk size
        i_ab, i_ba = mutual_nearest(a, b, chunk_elems=chunk)
        assert torch.equal(i_ab, d.argmin(2)) and torch.equal(i_ba, d.argmin(1))
    shift = torch.zeros(9, 1, 3)
    shift[:3, 0, 0] = 1.0  # first three pairs far apart
    overlap = boxes_overlap(a, b + shift)
    want = [bool(((torch.maximum(p.amin(0), q.amin(0)) <= torch.minimum(p.amax(0), q.amax(0))).all()))
            for p, q in zip(a, b + shift)]
    assert overlap.tolist() == want and not any(want[:3]) and all(want[3:])
    gap = torch.zeros(1, 1, 3)
    gap[..., 0] = 0.01
    cube = torch.tensor([[[0.0, 0, 0], [0.1, 0.1, 0.1]]])
    assert not boxes_overlap(cube, cube + 0.1 + gap, margin=0.004).item()
    assert boxes_overlap(cube, cube + 0.1 + gap, margin=0.006).item()


def test_penalty_closed_form_and_gradient_on_a_plane():
    """A point at depth d below a plane of points with normal +z: the penalty is Geman-McClure(d), its gradient
    pushes the point out along the normal."""
    xs = torch.linspace(-0.02, 0.02, 5)
    plane = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(1, -1, 2)
    plane = torch.cat([plane, torch.zeros(1, 25, 1)], -1).double()
    up = torch.zeros_like(plane)
    up[..., 2] = 1.0
    for depth in (0.001, 0.01, 0.04):
        p = torch.tensor([[[0.002, -0.001, -depth]]], dtype=torch.float64, requires_grad=True)
        n_p = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)  # the plane lies above p's own surface
        loss = surface_penetration_loss(plane, up, p, n_p, rho=0.05, margin=None)
        want = geman_mcclure(torch.tensor(depth, dtype=torch.float64), 0.05)
        torch.testing.assert_close(loss, want.reshape(1))
        (grad,) = torch.autograd.grad(loss.sum(), p)
        rho2 = 0.05 ** 2
        slope = 2 * rho2 * rho2 * depth / (depth ** 2 + rho2) ** 2  # d GM / d depth
        torch.testing.assert_close(grad, torch.tensor([[[0.0, 0.0, -slope]]], dtype=torch.float64))
    # A point 3 mm above the plane, on a surface facing it (outward normal -z): separated, exactly 0.
    above = torch.tensor([[[0.0, 0.0, 0.003]]], dtype=torch.float64)
    assert surface_penetration_loss(plane, up, above, -n_p, margin=None).item() == 0.0


def test_penalty_tracks_the_exact_metrics_on_hands_pushed_together(hands):
    """Zero while the hands are apart, positive once they intersect by more than a sliver, rank-correlated with
    the exact penetration volume along the pushes (before deep overlap, where nearest-point tests fail)."""
    left, right, sub_left, sub_right = hands
    losses, volumes, verts = [], [], []
    for direction, rot in PATHS:
        anchor, other = pushed_together(direction, rot)
        pa, na = sub_left(anchor)
        po, no = sub_right(other)
        loss = surface_penetration_loss(pa, na, po, no)
        va, _ = canonical_vertices(anchor, left)
        vo, _ = canonical_vertices(other, right)
        losses.append(loss.numpy())
        volumes.append(penetration_volume(va, left.faces, vo, right.faces, num_workers=1))
        verts.append((va, vo))
        # The prefilter only skips work: the same values as a search over every pair.
        torch.testing.assert_close(loss, surface_penetration_loss(pa, na, po, no, margin=None))
    loss, vol = np.concatenate(losses), np.concatenate(volumes)
    va, vo = (torch.cat(v) for v in zip(*verts))
    # Exact surface gaps of the non-intersecting pairs, exact depths of the barely intersecting ones.
    free = np.nonzero(vol == 0)[0]
    gap = min_distance(va[free], vo[free], left.faces, right.faces).numpy()
    apart = free[gap > 0.004]
    assert apart.size >= 10 and (loss[apart] == 0).all()
    assert (loss[vol > 0.5] > 0).all()
    slight = np.nonzero((vol > 0) & (vol <= 0.5))[0]
    if slight.size:
        depth = penetration_depth(va[slight], left.faces, vo[slight], right.faces, method="exact").numpy()
        assert (loss[slight[depth > 0.005]] > 0).all()
    shallow = vol < 60.0
    rank = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable")  # noqa: E731
    spearman = np.corrcoef(rank(loss[shallow]), rank(vol[shallow]))[0, 1]
    assert spearman > 0.85, spearman


def test_penalty_errors():
    p = torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match="normals"):
        surface_penetration_loss(p, p[:, :4], p, p)
    with pytest.raises(ValueError, match="rho"):
        surface_penetration_loss(p, p, p, p, rho=0.0)
    with pytest.raises(ValueError, match="batch size"):
        surface_penetration_loss(p, p, p[:1], p[:1])
    with pytest.raises(ValueError, match="margin"):
        boxes_overlap(p, p, margin=-1.0)


def test_guidance_step_lowers_the_exact_penetration_and_leaves_separated_pairs_alone(hands):
    left, right, sub_left, sub_right = hands
    anchor = canonical(6)
    anchor[:, 45:55] = 0.0
    other = anchor.clone()
    other[:, 61] = torch.tensor([0.0, 0.01, 0.02, 0.03, 0.25, 0.30])  # 4 overlapping, 2 far apart
    other[:, 62] = 0.02
    mean, std = torch.zeros(64), torch.full((64,), 0.5)
    mean[55] = mean[59] = 1.0
    x_std = (other - mean) / std
    apg = AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, weight=1.0, num_steps=1)

    def exact_volume(x):
        va, _ = canonical_vertices(anchor, left)
        vo, _ = canonical_vertices(x * std + mean, right)
        return penetration_volume(va, left.faces, vo, right.faces, num_workers=1)

    x = x_std
    for _ in range(3):
        x = apg(x, x, torch.zeros(6, dtype=torch.long), 0)
    before, after = exact_volume(x_std), exact_volume(x)
    assert (before[:4] > 1.0).all() and after[:4].sum() < 0.5 * before[:4].sum()
    with torch.no_grad():
        assert (apg.loss(x)[:4] < apg.loss(x_std)[:4]).all()
    assert torch.equal(x[4:], x_std[4:])  # far apart: bit-for-bit untouched
    assert apg.guided_calls == 3
    # The trust region bounds every step.
    tight = AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, weight=2.0, num_steps=1,
                                                 max_step=0.01)
    step = tight(x_std, x_std, torch.zeros(6, dtype=torch.long), 0) - x_std
    assert step.norm(dim=1).max() <= 0.01 + 1e-6 and step.norm(dim=1).max() > 0.005


def test_guidance_schedule_and_errors(hands):
    _, _, sub_left, sub_right = hands
    anchor = canonical(2)
    mean, std = torch.zeros(64), torch.ones(64)
    apg = AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, weight=0.8, num_steps=42,
                                               decay=0.9, last_steps=10)
    assert apg.step_weight(0) == 0.0 and apg.step_weight(31) == 0.0
    assert apg.step_weight(41) == pytest.approx(0.8) and apg.step_weight(32) == pytest.approx(0.8 * 0.9 ** 9)
    x = torch.randn(2, 64)
    assert apg(x, x, torch.zeros(2, dtype=torch.long), 0) is x and apg.guided_calls == 0
    for bad, match in (({"weight": 2.5}, "weight"), ({"decay": 0.0}, "decay"), ({"last_steps": 0}, "last_steps"),
                       ({"max_step": 0.0}, "max_step")):
        kwargs = {"weight": 1.0, "num_steps": 5, **bad}
        with pytest.raises(ValueError, match=match):
            AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, **kwargs)
    with pytest.raises(TypeError, match="SubsetHand"):
        AntiPenetrationGuidance(torch.zeros(2, 5, 3), torch.zeros(2, 5, 3), object(), mean, std, 1.0, 5)
