"""The exact push-out and the object-through-a-hand check of the object sampler."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from interhandgen.data.object_library import ObjectLibrary
from interhandgen.exceptions import InputError
from interhandgen.generation.object_api import exact_objects
from interhandgen.generation.object_sampling import (ObjectSettings, exact_push_out, hand_object_violation,
                                                     object_in_hand_depth, other_in_object_frame,
                                                     clearance_search, translation_search)
from interhandgen.generation.settle import hand_spheres
from interhandgen.generation.subset import SubsetHand
from interhandgen.hand import open_hand
from interhandgen.objects.frame import surface_samples
from interhandgen.objects.library import FAMILIES, make_object
from interhandgen.objects.metrics import object_world_vertices
from interhandgen.objects.sdf import object_signed_distance
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d

from tests.generation.test_objmodel_sampling import _box_rows, model_file  # noqa: F401  (the fixture)


def _slab(thickness: float, size: float = 0.3) -> "trimesh.Trimesh":
    """A closed box of ``size`` x ``size`` x ``thickness`` metres centred at the origin (a plate's wall)."""
    import trimesh

    return trimesh.creation.box((size, size, thickness))


def _flat_hand(side: str = "left", points: int = 512):
    hand = SubsetHand(open_hand(side), points)
    x = torch.zeros(1, 64, dtype=torch.float64)
    x[0, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])  # identity rotation: the hand lies flat, palm along z
    return hand, x


@pytest.mark.parametrize("mirrored", [False, True])
def test_exact_query_directions_are_those_of_the_placed_mesh(mirrored):
    objs = [make_object(f, FAMILIES[f].sample(np.random.default_rng(5))) for f in ("mug", "capsule")]
    library = ObjectLibrary.from_meshes(["mug", "capsule"], objs)
    rng = np.random.default_rng(6)
    ids, poses = np.array([1, 0, 1]), np.zeros((3, 7))
    poses[:, 1:4] = rng.normal(0, 1.0, (3, 3))
    exact = exact_objects(library, ids, poses, mirrored=mirrored)
    pts = torch.tensor(rng.normal(0, 0.04, (3, 40, 3)))
    sdf, direction = exact.query(torch.arange(3), pts)
    for i in range(3):
        world = torch.tensor(object_world_vertices(library.vertices[ids[i]], poses[i:i + 1])[0])
        faces = torch.tensor(library.faces[ids[i]])
        if mirrored:
            world, faces = world * torch.tensor([-1.0, 1.0, 1.0], dtype=world.dtype), faces[:, [0, 2, 1]]
        # the exhaustive batched path (one mesh per row), not the per-mesh structure ExactObjects uses
        want_d, _, want_dir = object_signed_distance(pts[i:i + 1], world[None], faces)
        torch.testing.assert_close(sdf[i], want_d[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(direction[i], want_dir[0], atol=1e-9, rtol=0)
    torch.testing.assert_close(exact.signed(torch.arange(3), pts), sdf, atol=0, rtol=0)


def test_object_in_hand_depth_is_the_deepest_sample_in_the_spheres():
    hand, x = _flat_hand()
    centres, radii = hand_spheres(hand, x)
    rng = np.random.default_rng(7)
    samples = centres[:, rng.integers(0, centres.shape[1], 30)] + torch.tensor(rng.normal(0, 0.01, (1, 30, 3)))
    got = object_in_hand_depth(hand, x, samples)
    brute = max(max(float(radii[0, s] - (samples[0, k] - centres[0, s]).norm()) for s in range(centres.shape[1]))
                for k in range(30))
    assert abs(float(got[0]) - max(brute, 0.0) * 1000.0) < 1e-6
    # the other hand of a pair: its spheres are taken to the object frame through the anchor
    turn = torch.tensor([[0.3, -0.8, 0.5]], dtype=torch.float64)
    anchor = x.clone()
    anchor[:, 55:61] = matrix_to_rot6d(axis_angle_to_matrix(turn))
    anchor[:, 61:] = torch.tensor([0.02, -0.01, 0.05])
    placed = other_in_object_frame(samples, anchor)  # the same samples, carried with the hand
    assert torch.allclose(object_in_hand_depth(hand, x, placed, anchor_raw=anchor), got, atol=1e-9)
    far = samples + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    assert float(object_in_hand_depth(hand, x, far)[0]) == 0.0


def test_a_thin_wall_through_the_hand_fails_the_redraw_only_with_the_check():
    left, right = SubsetHand(open_hand("left"), 512), SubsetHand(open_hand("right"), 512)
    a = torch.zeros(1, 64)
    a[0, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    pts = left(a)[0][0]
    o = a.clone()
    o[0, 61] = 0.25  # the other hand far aside: only the anchor matters
    slab = _slab(0.004)
    surf = torch.tensor(surface_samples(np.asarray(slab.vertices), np.asarray(slab.faces), 4096, seed=1))[None]
    surf = surf.float()
    hands = (left, right)
    middle = float(pts[:, 2].min() + pts[:, 2].max()) / 2
    through, below = a.clone(), a.clone()
    through[0, 63] -= middle  # the 4 mm wall through the middle of the hand's thickness
    below[0, 63] += 0.002 + 0.0005 - float(pts[:, 2].min())  # resting 0.5 mm above the wall's top face
    for x, inside in ((through, True), (below, False)):
        depth = float(object_in_hand_depth(left, x, surf[..., :3])[0])
        assert (depth > 3.0) if inside else depth == 0.0, depth
    og = ObjectSettings(redraw_hand_check=False, redraw_gap_mm=500.0, redraw_object_in_hand_mm=0.0)  # depths only
    checked = dataclasses.replace(og, redraw_object_in_hand_mm=3.0)  # the default
    v_plain = hand_object_violation(hands, through, o, surf, og)
    v_checked = hand_object_violation(hands, through, o, surf, checked)
    # the hand's own points lie at most half the wall's thickness deep: the depth check alone passes it
    assert float(v_plain[0]) == 0.0 and float(v_checked[0]) > 0.0
    assert float(hand_object_violation(hands, below, o, surf, checked)[0]) == 0.0


def test_exact_push_out_moves_penetrating_hands_out_by_the_exact_distance():
    box = make_object("box", FAMILIES["box"].sample(np.random.default_rng(0)))
    library = ObjectLibrary.from_meshes(["box"], [box])
    top = float(box.vertices[:, 2].max())
    exact = exact_objects(library, np.zeros(3, dtype=np.int64), np.zeros((3, 7)))
    hand, x = _flat_hand()
    pts = hand(x.float())[0][0].double()
    pts = pts - pts.mean(0) * torch.tensor([1.0, 1.0, 0.0], dtype=pts.dtype)  # over the box's centre
    low = float(pts[:, 2].min())
    rows = torch.stack([pts + torch.tensor([0.0, 0.0, top + gap - low], dtype=pts.dtype)
                        for gap in (-0.002, 0.0001, 0.010)])
    og = ObjectSettings(exact_push_rounds=3, exact_push_margin_mm=0.2)
    judged = rows[:, rows[0, :, 2].topk(16, largest=False).indices]  # the 16 lowest points of each hand
    signed, direction = exact.query(torch.arange(3), judged)
    move = exact_push_out(judged, signed, direction, exact, torch.arange(3), og)
    # 2 mm inside the top face: out along its normal to 0.2 mm above it
    torch.testing.assert_close(move[0], torch.tensor([0.0, 0.0, 0.0022], dtype=move.dtype), atol=1e-6, rtol=0)
    torch.testing.assert_close(move[1], torch.tensor([0.0, 0.0, 0.0001], dtype=move.dtype), atol=1e-6, rtol=0)
    assert torch.equal(move[2], torch.zeros(3, dtype=move.dtype))  # clear of the box: exactly no move
    after = object_signed_distance(rows + move[:, None], torch.tensor(box.vertices), torch.tensor(box.faces))[0]
    assert float(after[:2].min()) > 0.0002 - 1e-6  # every point of the hand, not only the judged ones
    for bad in (dict(exact_push_rounds=-1), dict(exact_push_margin_mm=-0.1), dict(redraw_object_in_hand_mm=-1.0)):
        with pytest.raises(InputError, match=next(iter(bad))):
            ObjectSettings(**bad).validate()
    with pytest.raises(InputError, match="redraw_exact_points"):
        ObjectSettings(exact_push_rounds=2, redraw_exact_points=0).validate()


def test_sampler_push_out_only_moves_hands_out(tmp_path, model_file):  # noqa: F811
    base = ObjectSettings(redraw_rounds=0, redraw_hand_check=False, settle_hand_guard=False, exact_push_rounds=0,
                          search_rounds=0, clear_rounds=0)
    gen, settings, scene, ids, poses, tokens, surfaces, hands = _box_rows(tmp_path, model_file, base)
    exact = exact_objects(scene.library, ids, poses)
    x0 = gen._run(12, tokens, surfaces, 0, settings, base, 2500, False, exact=exact)
    pushed = dataclasses.replace(base, exact_push_rounds=3, redraw_exact_points=32, exact_push_margin_mm=0.2)
    x1 = gen._run(12, tokens, surfaces, 0, settings, pushed, 2500, False, exact=exact)
    mesh = scene.library

    def closest(x):
        out = []
        for pts in (hands[0](x[:, 0])[0], other_in_object_frame(hands[1](x[:, 1])[0], x[:, 0])):
            sdf = object_signed_distance(pts.double(), torch.tensor(mesh.vertices[0]), torch.tensor(mesh.faces[0]))[0]
            out.append(sdf.amin(1))
        return torch.stack(out, 1)  # [12, 2] the smallest exact signed distance of each hand (metres)

    c0, c1 = closest(x0), closest(x1)
    moved = (x1 != x0).flatten(1).any(1)
    # only pairs with a hand inside or within the margin (0.2 mm) moved; the others are bit for bit the same
    assert bool(moved.any()) and bool((c0[moved].amin(1) < 0.0002).all()) and bool((c0[~moved] >= 0.0002).all())
    assert torch.equal(x1[~moved], x0[~moved])
    d0, d1 = torch.relu(-c0), torch.relu(-c1)
    assert float(d0.sum()) > 0 and float(d1.sum()) < 0.5 * float(d0.sum()), (d0, d1)
    # the rigid push changes neither pose nor shape
    torch.testing.assert_close(x1[:, :, :55], x0[:, :, :55], atol=0, rtol=0)


def _slab_distance(points: torch.Tensor, thickness: float) -> torch.Tensor:
    """Closed-form signed distance to an infinite slab |z| <= thickness / 2 (the test slabs are 30 cm wide, far
    wider than a hand, so within the hand's reach their faces are the only surfaces)."""
    return points[..., 2].abs() - thickness / 2


def test_translation_search_takes_the_hand_off_a_thin_wall_through_it():
    left = SubsetHand(open_hand("left"), 512)
    a = torch.zeros(1, 64, dtype=torch.float64)
    a[0, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    centres, _ = hand_spheres(left, a)
    # turn the hand so that its thinnest extent (the smallest principal axis of its spheres' centres) is world z
    spread = (centres[0] - centres[0].mean(0)).T @ (centres[0] - centres[0].mean(0))
    turn = torch.linalg.eigh(spread).eigenvectors.flip(1).T.contiguous()
    turn[2] *= torch.det(turn)
    a[0, 55:61] = matrix_to_rot6d(turn[None])[0]
    centres, radii = hand_spheres(left, a)
    bottom, top = float((centres[..., 2] - radii).min()), float((centres[..., 2] + radii).max())
    slab = _slab(0.004)
    surf = torch.tensor(surface_samples(np.asarray(slab.vertices), np.asarray(slab.faces), 4096, seed=1))[None]
    through, clear = a.clone(), a.clone()
    through[0, 63] -= bottom + 0.25 * (top - bottom)  # the 4 mm wall through the hand's lower quarter
    clear[0, 63] += 0.002 + 0.0005 - bottom  # its spheres 0.5 mm above the wall's top face
    og = ObjectSettings()
    x = torch.cat([through, clear])
    shift = translation_search(left, x, surf.expand(2, -1, -1), og)
    assert torch.equal(shift[1], torch.zeros(3, dtype=shift.dtype))  # nothing scores better than touching: no move
    # the wall's normal is world z here, so the move is along z, out of the wall on one side
    assert float(shift[0, :2].abs().max()) < 1e-9 and float(shift[0, 2].abs()) > 0.005
    centres, radii = hand_spheres(left, x[:1])
    before = _slab_distance(centres, 0.004) - radii
    after = _slab_distance(centres + shift[:1, None], 0.004) - radii
    assert float(before.min()) < -0.003  # spheres cut by the wall
    assert float(after.min()) > -0.0005  # no sphere reaches more than 0.5 mm into it (closed form)
    assert float(after.min()) < og.redraw_gap_mm / 1000.0  # and the hand still touches it
    assert float(object_in_hand_depth(left, x[:1] + _rigid(shift[:1]), surf[..., :3])[0]) == 0.0
    # the shortest clearing move: the next shorter step along the same way still cuts the wall
    steps = sorted(og.search_steps_mm)
    k = steps.index(round(float(shift[0].norm()) * 1000.0, 6))
    if k:
        shorter = shift[:1] * (steps[k - 1] / steps[k])
        assert float((_slab_distance(centres + shorter[:, None], 0.004) - radii).min()) < -0.0005
    for bad in (dict(search_steps_mm=()), dict(search_steps_mm=(2.0, -1.0)), dict(search_rounds=-1)):
        with pytest.raises(InputError, match=next(iter(bad))):
            ObjectSettings(**bad).validate()


def _rigid(shift: torch.Tensor) -> torch.Tensor:
    """Raw-vector offsets [B, 64] that translate anchors by ``shift`` [B, 3] (the translation slots)."""
    out = torch.zeros(shift.shape[0], 64, dtype=shift.dtype)
    out[:, 61:] = shift
    return out


@pytest.mark.parametrize("stage, before, after", [
    # translation search, after one redraw round
    ("search", dict(search_rounds=0, clear_rounds=0), dict(search_rounds=2, clear_rounds=0)),
    # clearance moves, after the redraw and one search round
    ("clear", dict(search_rounds=1, clear_rounds=0), dict(search_rounds=1, clear_rounds=1)),
])
def test_sampler_moves_only_replace_failing_pairs_by_better_ones(tmp_path, model_file,  # noqa: F811
                                                                 stage, before, after):
    base = ObjectSettings(redraw_rounds=1, exact_push_rounds=0, **before)
    gen, settings, scene, ids, poses, tokens, surfaces, hands = _box_rows(tmp_path, model_file, base)
    exact = exact_objects(scene.library, ids, poses)
    x0 = gen._run(12, tokens, surfaces, 0, settings, base, 2500, False, exact=exact)
    x1 = gen._run(12, tokens, surfaces, 0, settings, dataclasses.replace(base, **after), 2500, False, exact=exact)
    rows = torch.arange(12)
    v0 = hand_object_violation(hands, x0[:, 0], x0[:, 1], surfaces, base, exact, rows)
    v1 = hand_object_violation(hands, x1[:, 0], x1[:, 1], surfaces, base, exact, rows)
    moved = (x1 != x0).flatten(1).any(1)
    # passing pairs are never touched; a failing pair changes only to fail by less
    assert bool((v0[moved] > 0).all()) and bool((v1[moved] < v0[moved]).all()), stage
    assert bool(moved.any()) and torch.equal(x1[~moved], x0[~moved]), stage
    torch.testing.assert_close(x1[:, :, :55], x0[:, :, :55], atol=0, rtol=0)  # rigid moves only


def _through_wall(thickness: float = 0.004):
    """A flat left hand turned so that its thinnest extent is world z, with a ``thickness`` wall (a 30 cm slab at
    z = 0) through its lower quarter; and the slab's surface samples [1, 4096, 6]."""
    left = SubsetHand(open_hand("left"), 192)
    a = torch.zeros(1, 64, dtype=torch.float64)
    a[0, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    pts = left(a)[0][0]
    spread = (pts - pts.mean(0)).T @ (pts - pts.mean(0))
    turn = torch.linalg.eigh(spread).eigenvectors.flip(1).T.contiguous()
    turn[2] *= torch.det(turn)
    a[0, 55:61] = matrix_to_rot6d(turn[None])[0]
    z = left(a)[0][0, :, 2]
    a[0, 63] -= float(z.min()) + 0.25 * float(z.max() - z.min())
    slab = _slab(thickness)
    surf = torch.tensor(surface_samples(np.asarray(slab.vertices), np.asarray(slab.faces), 4096, seed=1))[None]
    return left, a, surf


def test_clearance_search_takes_every_point_out_of_a_thin_wall():
    left, through, surf = _through_wall(0.004)
    og = ObjectSettings()
    pts = left(through)[0]
    assert float(_slab_distance(pts, 0.004).min()) < -0.001  # points inside the 4 mm wall (closed form)
    above = pts + torch.tensor([0.0, 0.0, 0.0025 - float(pts[..., 2].min())])  # all points 0.5 mm above the wall
    shift = clearance_search(torch.cat([pts, above]), surf.expand(2, -1, -1), og)
    assert torch.equal(shift[1], torch.zeros(3, dtype=shift.dtype))  # nothing inside: no move
    # along the wall's normal (world z), and by the closed form no point is inside any more
    assert float(shift[0, :2].abs().max()) < 1e-9 and float(shift[0, 2].abs()) > 0.002
    assert float(_slab_distance(pts + shift[:1, None], 0.004).min()) >= -1e-9
    # the shortest such move: the next shorter step, either way along z, leaves points inside
    steps = sorted(og.clear_steps_mm)
    k = steps.index(round(float(shift[0].norm()) * 1000.0, 6))
    if k:
        for sign in (1.0, -1.0):
            shorter = torch.tensor([0.0, 0.0, sign * steps[k - 1] / 1000.0], dtype=pts.dtype)
            assert float(_slab_distance(pts + shorter, 0.004).min()) < 0
    for bad in (dict(clear_steps_mm=()), dict(clear_steps_mm=(3.0, 0.0)), dict(clear_rounds=-1)):
        with pytest.raises(InputError, match=next(iter(bad))):
            ObjectSettings(**bad).validate()


def test_clearance_search_keeps_the_least_depth_when_no_step_clears():
    left, through, surf = _through_wall(0.004)
    og = dataclasses.replace(ObjectSettings(), clear_steps_mm=(1.0,))  # too short to clear a 4 mm wall
    pts = left(through)[0]
    shift = clearance_search(pts, surf, og)
    before = torch.relu(-_slab_distance(pts, 0.004)).sum()
    after = torch.relu(-_slab_distance(pts + shift[:, None], 0.004)).sum()
    assert float(shift.norm()) == pytest.approx(0.001) and float(after) < float(before)


def test_object_in_hand_depth_does_not_depend_on_the_batch():
    """Each row's depth is that of the row alone, bit for bit (the distances are searched in chunks of rows)."""
    hand, x = _flat_hand()
    g = torch.Generator().manual_seed(11)
    rows = 70  # more than one chunk of 1,024 samples x the spheres
    xs = x.repeat(rows, 1)
    xs[:, :45] = 0.3 * torch.randn(rows, 45, generator=g, dtype=torch.float64)
    xs[:, 61:] = 0.02 * torch.randn(rows, 3, generator=g, dtype=torch.float64)
    centres, _ = hand_spheres(hand, x)
    samples = centres[:, :1] + 0.04 * torch.randn(rows, 1024, 3, generator=g, dtype=torch.float64)
    samples[::2] += torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)  # every other object away from its hand
    got = object_in_hand_depth(hand, xs, samples)
    assert (got > 0).any() and (got == 0).any()
    for i in (0, 33, rows - 1):
        assert torch.equal(object_in_hand_depth(hand, xs[i:i + 1], samples[i:i + 1]), got[i:i + 1])
