"""Sampling with an object: the hand-object penalty against the exact SDF, object settling, guidance, the cascade
(determinism, devices), placement of a user's mesh and completion."""

import dataclasses

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.data.canonical import canonical_vertices
from interhandgen.exceptions import InputError
from interhandgen.generation.cascade import SamplerSettings
from interhandgen.generation.object_api import ObjectInterHandGen, family_objects, mesh_centre_of_mass, user_object
from interhandgen.generation.object_sampling import (HandObjectGuidance, ObjectSettings, object_contact,
                                                     object_penetration, settle_on_object)
from interhandgen.generation.subset import SubsetHand
from interhandgen.hand import open_hand
from interhandgen.models import build_model
from interhandgen.models.artifact import export_model
from interhandgen.objects.frame import surface_samples
from interhandgen.objects.library import make_object
from interhandgen.objects.metrics import object_world_vertices
from interhandgen.objects.sdf import object_signed_distance

CONFIG = {"kind": "shared_object", "hidden_dim": 64, "embed_dim": 32, "num_layers": 3, "skips": [1], "num_heads": 2,
          "ff_dim": 64, "dropout": 0.0, "object_encoder": {"type": "pointnet", "width": 16, "num_points": 64}}



def _box():
    from interhandgen.objects.library import FAMILIES

    params = FAMILIES["box"].sample(np.random.default_rng(0))
    return make_object("box", params)


def _exact(points, obj):
    return object_signed_distance(points.double(), torch.tensor(obj.vertices), torch.tensor(obj.faces))[0]


def test_penetration_signs_and_depths_follow_the_exact_sdf():
    obj = _box()
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 4096, seed=2))[None]
    rng = np.random.default_rng(1)
    ext = np.ptp(obj.vertices, axis=0) / 2 + 0.02
    pts = torch.tensor(rng.uniform(-ext, ext, (1, 2000, 3)))
    exact = _exact(pts, obj)
    _, signed, _ = object_penetration(pts, surf, 0.02)
    clear = exact.abs() > 0.003
    assert ((signed > 0) == (exact > 0))[clear].float().mean() > 0.99
    near = exact.abs() < 0.02
    assert (signed - exact)[near].abs().median() < 1e-3  # a plane test on a 4,096-sample box surface



def _near_surface(surf, rng, num=4000):
    """Points within about 1.5 cm of a surface sampled by ``surf`` [1, K, 6]: along the normal and sideways."""
    base = surf[0, rng.integers(0, surf.shape[1], num)]
    along = torch.tensor(rng.uniform(-0.012, 0.012, (num, 1))) * base[:, 3:]
    return (base[:, :3] + along + torch.tensor(rng.normal(0, 0.004, (num, 3))))[None]


@pytest.mark.parametrize("family", ["plate", "bowl"])
def test_nearby_planes_read_thin_rims_and_dishes_as_the_exact_sdf_does(family):
    from interhandgen.objects.library import FAMILIES

    obj = make_object(family, FAMILIES[family].sample(np.random.default_rng(0)))
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 1024, seed=2))[None]  # the sampler's samples
    pts = _near_surface(surf, np.random.default_rng(1))
    exact = _exact(pts, obj)
    wrong = {}
    for reach in (0.0, 4.0):
        signed = object_penetration(pts, surf, 0.02, reach)[1]
        false_in = ((signed < 0) & (exact > 1e-3)).double().mean().item()
        false_out = ((signed > 0) & (exact < -1e-3)).double().mean().item()
        wrong[reach] = (false_in, false_out)
    # the nearest plane alone puts points beside a 1.5-2.5 cm rim or under the dish inside (5-6 % measured); with
    # every sample within 4 mm of the nearest one's distance voting, 0.8-0.9 % of the points are misread
    assert wrong[0.0][0] > 0.03, wrong
    assert sum(wrong[4.0]) < 0.015, wrong


def test_nearby_planes_match_a_brute_force_search():
    obj = _box()
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 1024, seed=2))[None].expand(3, -1, -1)
    pts = torch.cat([_near_surface(surf[:1], np.random.default_rng(k), 300) for k in range(3)])
    _, signed, normals = object_penetration(pts, surf, 0.02, 4.0)
    # brute force, one point at a time in double precision
    want = torch.empty(3, 300, dtype=torch.float64)
    for b in range(3):
        for i in range(300):
            d = (surf[b, :, :3] - pts[b, i]).norm(dim=-1)
            vote = d <= d.min() + 0.004
            plane = ((pts[b, i] - surf[b, vote, :3]) * surf[b, vote, 3:]).sum(-1).max()
            want[b, i] = plane if plane < 0 else max(plane, d.min() - 0.008)
    # the search runs in single precision: a sample at the edge of the reach may vote differently (rarely)
    assert (signed - want).abs().lt(1e-9).double().mean() > 0.995


def test_deciding_samples_only_near_the_object_keep_every_value_and_the_normals_needed():
    obj = _box()
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 1024, seed=2))[None].expand(4, -1, -1)
    rng = np.random.default_rng(5)
    ext = np.ptp(obj.vertices, axis=0) / 2 + 0.03
    near = torch.cat([_near_surface(surf[:1], np.random.default_rng(k), 150) for k in range(2)])
    # two rows near the surface, one wholly 1-3 cm away, one far (its closest point must keep its normal)
    far = torch.tensor(rng.uniform(-ext, ext, (2, 150, 3)))
    far[1] += torch.tensor([0.0, 0.0, 0.3], dtype=far.dtype)
    pts = torch.cat([near, far]).requires_grad_(True)
    full_pen, full, full_n = object_penetration(pts, surf, 0.02, 4.0)
    (full_g,) = torch.autograd.grad(full_pen.sum() + full.amin(1).sum(), pts)
    part_pen, part, part_n = object_penetration(pts, surf, 0.02, 4.0, within_mm=2.0)
    (part_g,) = torch.autograd.grad(part_pen.sum() + part.amin(1).sum(), pts)
    has = part_n.norm(dim=-1) > 0
    # every value as before (the points without a deciding sample: from the single-precision search)
    assert torch.equal(part.detach()[has], full.detach()[has])
    assert (part.detach() - full.detach()).abs().max() < 1e-6
    # normals and gradients exactly where the callers use them: inside, within 2 mm, each row's closest point
    needed = (full.detach() < 0.002) | (full.detach() == full.detach().amin(1, keepdim=True))
    assert bool(has[needed].all()) and bool((~has).any())
    assert torch.equal(part_n[has], full_n[has]) and bool((part_n[~has] == 0).all())
    torch.testing.assert_close(part_pen, full_pen)
    torch.testing.assert_close(part_g, full_g)
    with pytest.raises(InputError, match="within_mm"):
        object_penetration(pts, surf, 0.02, 0.0, within_mm=2.0)


@pytest.mark.parametrize("within", [None, 0.002])
def test_deciding_samples_do_not_depend_on_the_chunking(monkeypatch, within):
    # the search reuses its chunk buffers: rows split 3 + 3 + 1 must give exactly the values of one chunk of 7
    from interhandgen.generation import object_sampling

    obj = _box()
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 256, seed=2), dtype=torch.float32)
    surf = surf[None].expand(7, -1, -1).contiguous()
    pts = torch.cat([_near_surface(surf[:1], np.random.default_rng(k), 40) for k in range(7)]).float()
    pts[3] += 0.05  # one row wholly away from the box
    whole = object_sampling._deciding_samples(pts, surf, 0.004, True, within)
    monkeypatch.setattr(object_sampling, "_SEARCH_CHUNK", 3 * 40 * 256)
    split = object_sampling._deciding_samples(pts, surf, 0.004, True, within)
    for a, b in zip(whole, split):
        assert (a is None and b is None) or torch.equal(a, b)
    # and the nearest sample it reports is the brute-force nearest
    d = torch.cdist(pts.double(), surf[..., :3].double())
    assert torch.equal(split[2][split[2] >= 0], d.argmin(-1)[split[2] >= 0])


def test_nearby_planes_keep_the_gradient_and_reject_a_negative_reach():
    obj = _box()
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 1024, seed=2))[None]
    pts = _near_surface(surf, np.random.default_rng(2), 200).requires_grad_(True)
    penalty, signed, normals = object_penetration(pts, surf, 0.02, 4.0)
    (grad,) = torch.autograd.grad(signed.sum(), pts)
    # inside, the value is a plane distance: its gradient is the deciding sample's unit normal
    inside = signed[0].detach() < 0
    assert inside.sum() > 20
    assert torch.allclose(grad[0][inside], normals[0][inside])
    assert torch.allclose(normals.norm(dim=-1), torch.ones(1, 200, dtype=normals.dtype))
    # the same values without a gradient; outside, where the bound by the nearest sample decides, the gradient is
    # the unit vector from that sample (brute force)
    with torch.no_grad():
        assert torch.equal(object_penetration(pts, surf, 0.02, 4.0)[1], signed.detach())
    ext = np.ptp(obj.vertices, axis=0) / 2 + 0.05
    far = torch.tensor(np.random.default_rng(3).uniform(-ext, ext, (1, 400, 3))).requires_grad_(True)
    _, signed, normals = object_penetration(far, surf, 0.02, 4.0)
    (grad,) = torch.autograd.grad(signed.sum(), far)
    q = surf[0, torch.cdist(far.detach()[0], surf[0, :, :3]).argmin(1), :3]
    away = far.detach()[0] - q
    bound = ~torch.isclose(grad[0], normals[0]).all(1)
    assert bound.sum() > 5 and (signed[0].detach()[bound] > 0).all()
    assert torch.allclose(grad[0][bound], away[bound] / away[bound].norm(dim=1, keepdim=True))
    with torch.no_grad():
        assert torch.equal(object_penetration(far, surf, 0.02, 4.0)[1], signed.detach())
    with pytest.raises(InputError, match="reach_mm"):
        object_penetration(pts, surf, 0.02, -1.0)
    with pytest.raises(InputError, match="object_plane_reach_mm"):
        ObjectSettings(object_plane_reach_mm=-1.0).validate()



@pytest.mark.parametrize("mirrored", [False, True])
def test_exact_objects_follow_the_rows_placed_meshes(mirrored):
    from interhandgen.data.object_library import ObjectLibrary
    from interhandgen.generation.object_api import exact_objects
    from interhandgen.objects.library import FAMILIES

    objs = [make_object(f, FAMILIES[f].sample(np.random.default_rng(3))) for f in ("mug", "box")]
    library = ObjectLibrary.from_meshes(["mug", "box"], objs)
    rng = np.random.default_rng(4)
    ids = np.array([0, 1, 0, 1])
    poses = np.zeros((4, 7))
    poses[:, 1:4] = rng.normal(0, 1.0, (4, 3))  # turned, at the origin: the object frame has the world's axes
    exact = exact_objects(library, ids, poses, mirrored=mirrored)
    pts = torch.tensor(rng.normal(0, 0.05, (4, 50, 3)))
    want = torch.empty(4, 50, dtype=torch.float64)
    for i in range(4):
        world = torch.tensor(object_world_vertices(library.vertices[ids[i]], poses[i:i + 1])[0])
        if mirrored:  # the mirror image in x = 0, its faces turned to keep it outward
            world = world * torch.tensor([-1.0, 1.0, 1.0], dtype=world.dtype)
            faces = torch.tensor(library.faces[ids[i]])[:, [0, 2, 1]]
        else:
            faces = torch.tensor(library.faces[ids[i]])
        want[i] = object_signed_distance(pts[i:i + 1], world, faces)[0][0]
    assert torch.allclose(exact.signed(torch.arange(4), pts), want, atol=1e-12)
    # a subset renumbers the rows
    assert torch.allclose(exact.subset(torch.tensor([2, 3])).signed(torch.tensor([1]), pts[3:]), want[3:], atol=1e-12)

def _hand_points(shift):
    hand = SubsetHand(open_hand("left"), 192)
    x = torch.zeros(1, 64)
    x[0, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    pts = hand(x)[0].double()
    return pts - pts[..., 2:3].amin() + shift  # the hand's lowest point at height shift


def test_object_settling_moves_penetrating_hands_out_and_near_hands_into_touch():
    obj = _box()
    top = float(obj.vertices[:, 2].max())
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 4096, seed=2))[None]
    cfg = ObjectSettings(object_settle_steps=6)
    for gap, expect_move in ((-0.008, True), (0.010, True), (0.080, False)):
        pts = _hand_points(top + gap)
        pts[..., :2] -= pts[..., :2].mean(1, keepdim=True)  # over the box's centre
        move = settle_on_object(pts, surf, cfg)
        if not expect_move:
            assert torch.equal(move, torch.zeros_like(move))
            continue
        d = _exact(pts + move[:, None], obj)
        assert float(d.min()) > -0.001  # out of the object (exact SDF), within a millimetre
        assert float(d.min()) < 0.0015  # and touching it


def test_guidance_step_reduces_the_penetration_penalty():
    obj = _box()
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 2048, seed=2), dtype=torch.float32)[None]
    hand = SubsetHand(open_hand("left"), 192)
    x = torch.zeros(4, 64)
    x[:, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    x[:, 61:64] = torch.tensor([[0, 0, 0.04], [0.01, 0, 0.05], [0, 0.02, 0.03], [0, 0, 0.3]])  # into the box
    mean, std = torch.zeros(64), torch.ones(64)
    hook = HandObjectGuidance(hand, mean, std, surf.expand(4, -1, -1), 1.0, num_steps=5, decay=0.9, last_steps=3,
                              rho=0.02, max_step=1.0)
    before = hook.loss(x)
    after = hook.loss(hook(x, x, torch.zeros(4, dtype=torch.long), 4))
    assert (after[:3] < 0.7 * before[:3]).all() and before[3] == 0 and after[3] == 0


def test_object_contact_is_the_squared_gap_of_near_hands_only():
    signed = torch.tensor([[0.004, 0.010, 0.003], [0.0002, 0.02, 0.03], [-0.001, 0.005, 0.006],
                           [0.025, 0.03, 0.04]], dtype=torch.float64, requires_grad=True)
    got = object_contact(signed, 0.0005, 0.02)
    # row 0: gap 3 mm -> (3 - 0.5)^2 mm^2; row 1 touches; row 2 is inside; row 3 is beyond the 20 mm band
    torch.testing.assert_close(got, torch.tensor([0.0025 ** 2, 0, 0, 0], dtype=torch.float64))
    got.sum().backward()
    want = torch.zeros_like(signed)
    want[0, 2] = 2 * 0.0025  # only the closest point of the pulled hand carries gradient
    torch.testing.assert_close(signed.grad, want)
    with pytest.raises(ValueError, match="object_contact_weight"):
        ObjectSettings(object_contact_weight=-1.0).validate()
    with pytest.raises(ValueError, match="object_contact_attract_mm"):
        ObjectSettings(object_contact_attract_mm=0.2).validate()  # not beyond touch_mm (0.5)


def test_contact_guidance_pulls_a_hand_above_the_box_into_touch():
    obj = _box()
    top = float(obj.vertices[:, 2].max())
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 2048, seed=2), dtype=torch.float32)[None]
    hand = SubsetHand(open_hand("left"), 192)
    x = torch.zeros(3, 64)
    x[:, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    lowest = float(hand(x[:1])[0][0, :, 2].min())
    x[:, 63] = top - lowest + torch.tensor([0.008, 0.015, 0.05])  # 8 mm, 15 mm and 50 mm above the top face
    mean, std = torch.zeros(64), torch.ones(64)
    args = (hand, mean, std, surf.expand(3, -1, -1), 1.0)
    kw = dict(num_steps=5, decay=1.0, last_steps=3, rho=0.02, max_step=1.0, iters=6)
    plain = HandObjectGuidance(*args, **kw)
    pulled = HandObjectGuidance(*args, **kw, contact=(1.0, 0.0005, 0.02))
    t = torch.zeros(3, dtype=torch.long)
    assert torch.equal(plain(x, x, t, 4), x)  # no penetration: the penetration guidance alone does nothing
    y = pulled(x, x, t, 4)
    exact = lambda v: _exact(hand(v)[0].double(), obj).amin(1)  # noqa: E731
    before, after = exact(x), exact(y)
    assert (after[:2] < 0.002).all() and (after[:2] > -0.002).all()  # into touch, not into the box
    assert after[2] == before[2] and torch.equal(y[2], x[2])  # beyond the band: untouched


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model(CONFIG)
    path = tmp_path_factory.mktemp("objmodel") / "m.safetensors"
    export_model(net.state_dict(), CONFIG, torch.zeros(2, 64), torch.ones(2, 64) * 0.5, path,
                 {"train_config": {"num_timesteps": 20, "schedule": "cosine"}}, conditioning=("hand", "object"),
                 objects={"num_points": 64, "orientations": {"box": [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]}})
    return path


def _write_box(path, centre):
    obj = _box()
    trimesh.Trimesh(obj.vertices + centre, obj.faces).export(path)
    return obj.vertices + centre, obj.faces


def test_user_mesh_is_placed_where_it_is(tmp_path, model_file):
    v, f = _write_box(tmp_path / "box.obj", np.array([0.1, -0.2, 0.8]))
    scene = user_object(tmp_path / "box.obj")
    mesh = trimesh.load(tmp_path / "box.obj", force="mesh")
    np.testing.assert_allclose(scene.object_pose[0, 4:7], mesh.center_mass, atol=1e-9)  # trimesh's centre of mass
    gen = ObjectInterHandGen.load(model_file)
    settings = SamplerSettings(steps=4, resample_rounds=0, settle_steps=0)
    two = gen.sample(5, scene, seed=3, settings=settings, progress=False)
    world = object_world_vertices(two.object_library.vertices[0], two.object_pose[:1])[0]
    np.testing.assert_allclose(np.sort(world, 0), np.sort(np.asarray(mesh.vertices), 0), atol=1e-9)
    again = gen.sample(5, scene, seed=3, settings=settings, progress=False)
    for side in ("left", "right"):
        np.testing.assert_array_equal(two.hand(side).transl, again.hand(side).transl)  # same seed, same samples
    assert not np.allclose(gen.sample(5, scene, seed=4, settings=settings, progress=False).left.transl,
                           two.left.transl)
    c, vol = mesh_centre_of_mass(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    assert abs(vol - mesh.volume) < 1e-15 and np.abs(c - mesh.center_mass).max() < 1e-12


def test_user_mesh_parts_convex_kept_non_convex_decomposed_when_the_physics_test_needs_them(tmp_path):
    """A convex user mesh is its own convex part; a non-convex one (a ring) is stored without parts (its hull would
    fill the hole) and the physics test takes CoACD's parts, the same on every call."""
    from interhandgen.geometry.decompose import convex_parts
    from interhandgen.objects.metrics import object_parts

    v, _ = _write_box(tmp_path / "box.obj", np.array([0.0, 0.0, 0.5]))
    box = user_object(tmp_path / "box.obj")
    (part,) = box.library.parts[0]
    np.testing.assert_array_equal(part, box.library.vertices[0])
    assert object_parts(box.library, 0) is box.library.parts[0]
    ring = trimesh.creation.torus(0.04, 0.01, major_sections=32, minor_sections=12)
    ring.apply_translation([0.0, 0.0, 0.5])
    ring.export(tmp_path / "ring.obj")
    scene = user_object(tmp_path / "ring.obj")
    assert scene.library.parts[0] == ()
    pytest.importorskip("coacd")
    parts = object_parts(scene.library, 0)
    expected = convex_parts(scene.library.vertices[0], scene.library.faces[0])
    assert len(parts) == len(expected) > 1 and all(np.array_equal(a, b) for a, b in zip(parts, expected))
    assert object_parts(scene.library, 0) is parts  # decomposed once per process


def test_family_objects_and_object_free_sampling(model_file):
    gen = ObjectInterHandGen.load(model_file)
    scene = family_objects("box", 3, seed=0, orientations=gen.orientations)
    assert len(scene.library) == 3 and set(map(tuple, scene.object_pose[:, 1:4])) <= {(0.0, 0, 0), (1.0, 0, 0)}
    settings = SamplerSettings(steps=3, resample_rounds=0, settle_steps=0)
    two = gen.sample(4, None, seed=0, settings=settings, progress=False)
    # without an object the left hand is the frame: at the origin, unrotated
    np.testing.assert_allclose(two.left.global_orient, 0.0, atol=1e-6)
    with pytest.raises(Exception):
        family_objects("mug", 2, 0, gen.orientations)


def test_completion_keeps_the_given_hand_and_the_object(model_file, tmp_path):
    from fixtures.objmodel_sets import random_object_set  # noqa: PLC0415 (tests/objects helper)

    gen = ObjectInterHandGen.load(model_file)
    given = random_object_set(4, seed=5, families=("box",), splits=False)
    settings = SamplerSettings(steps=3, resample_rounds=0, settle_steps=0)
    for side in ("left", "right"):
        done = gen.complete(given, side=side, seed=0, settings=settings, progress=False)
        for field in ("pose", "betas", "global_orient", "transl"):
            np.testing.assert_array_equal(getattr(done.hand(side), field), getattr(given.hand(side), field))
        np.testing.assert_array_equal(done.object_pose, given.object_pose)
        other = "right" if side == "left" else "left"
        assert not np.allclose(done.hand(other).transl, given.hand(other).transl)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampling_matches_cpu_closely(model_file, tmp_path):
    v, f = _write_box(tmp_path / "b.obj", np.zeros(3))
    scene = user_object(tmp_path / "b.obj")
    settings = SamplerSettings(steps=4, resample_rounds=0, settle_steps=0, eta=0.0)
    cpu = ObjectInterHandGen.load(model_file).sample(8, scene, seed=1, settings=settings, progress=False)
    gpu = ObjectInterHandGen.load(model_file, device="cuda").sample(8, scene, seed=1, settings=settings,
                                                                     progress=False)
    np.testing.assert_allclose(cpu.left.transl, gpu.left.transl, atol=1e-4)


def test_object_cfg_is_c_plus_scale_times_c_minus_u_with_the_null_object(model_file):
    from interhandgen.data.canonical import RIGID_SLICE
    from interhandgen.generation.object_sampling import ObjectGuided
    from interhandgen.models.object_encoder import BoundObject

    gen = ObjectInterHandGen.load(model_file)
    net = gen.model.net.eval()
    g = torch.Generator().manual_seed(0)
    B = 5
    x, cond = torch.randn(B, 64, generator=g), torch.randn(B, 64, generator=g)
    t, mask = torch.randint(0, 20, (B,), generator=g), torch.ones(B, dtype=torch.bool)
    token = torch.randn(B, net.cfg.embed_dim, generator=g)
    tail = torch.randn(9, generator=g)
    with torch.no_grad():
        c = net(x, t, cond, mask, object_token=token)
        cond_u = cond.clone()
        cond_u[:, RIGID_SLICE] = tail
        u = net(x, t, cond_u, mask)  # no token: the null object for every row
        out = ObjectGuided(net, token, 1.5, null_tail=tail)(x, t, cond, mask)
        part = ObjectGuided(net, token, 1.5, dims=slice(0, 55))(x, t, cond, mask)
        u_same = net(x, t, cond, mask)
        plain = BoundObject(net, token)(x, t, cond, mask)
        zero = ObjectGuided(net, token, 0.0)(x, t, cond, mask)
    torch.testing.assert_close(out, c + 1.5 * (c - u), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(part[:, :55], c[:, :55] + 1.5 * (c[:, :55] - u_same[:, :55]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(part[:, 55:], c[:, 55:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(zero, plain, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, c, atol=1e-3)  # the token matters in this random network


def test_object_cfg_in_the_sampler_is_deterministic_and_changes_samples(tmp_path, model_file):
    _write_box(tmp_path / "box.obj", np.zeros(3))
    scene = user_object(tmp_path / "box.obj")
    gen = ObjectInterHandGen.load(model_file)
    settings = SamplerSettings(steps=4, resample_rounds=0, settle_steps=0)
    plain = ObjectSettings(object_settle_steps=0, redraw_rounds=0)
    guided = ObjectSettings(object_settle_steps=0, redraw_rounds=0, object_cfg_scale=2.0)
    a = gen.sample(6, scene, seed=1, settings=settings, object_settings=guided, progress=False)
    b = gen.sample(6, scene, seed=1, settings=settings, object_settings=guided, progress=False)
    p = gen.sample(6, scene, seed=1, settings=settings, object_settings=plain, progress=False)
    np.testing.assert_array_equal(a.left.pose, b.left.pose)
    assert not np.allclose(a.left.pose, p.left.pose) and not np.allclose(a.right.transl, p.right.transl)
    with pytest.raises(Exception, match="object_cfg_scale"):
        ObjectSettings(object_cfg_scale=-1.0).validate()


def _stacked_pair(box_top):
    """A left hand lying flat on the box (0.5 mm above its top) and a right hand flat 10 mm above the left one:
    raw anchor [1, 64] in the object frame, partner [1, 64] relative to it."""
    hands = (SubsetHand(open_hand("left"), 512), SubsetHand(open_hand("right"), 512))
    flat = torch.zeros(1, 64)
    flat[0, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    a, o = flat.clone(), flat.clone()
    low_a, high_a = hands[0](a)[0][0, :, 2].min(), hands[0](a)[0][0, :, 2].max()
    a[0, 63] = box_top + 0.0005 - low_a
    o[0, 63] = (high_a - low_a) + 0.010 - (hands[1](o)[0][0, :, 2].min() - low_a)
    return hands, a, o


def _hand_hand_volume(a, o):
    from interhandgen.data.canonical import canonical_vertices
    from interhandgen.geometry import penetration_volume
    from interhandgen.generation.object_sampling import _in_own_frame

    left, right = open_hand("left"), open_hand("right")
    va, _ = canonical_vertices(_in_own_frame(a).double(), left.double())
    vo, _ = canonical_vertices(o.double(), right.double())
    return float(penetration_volume(va, left.faces_np, vo, right.faces_np, num_workers=1)[0])


def test_object_settling_hand_guard_keeps_a_hand_out_of_the_other():
    from interhandgen.generation.object_sampling import hand_object_check, hands_interpenetrate, settle_pair

    obj = _box()
    top = float(obj.vertices[:, 2].max())
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 4096, seed=2))[None].float()
    hands, a, o = _stacked_pair(top)
    assert _hand_hand_volume(a, o) == 0.0
    # the identity-rotated hands stand 12 cm tall: attract from farther than the default 60 mm
    plain = ObjectSettings(object_settle_steps=6, object_attract_mm=300.0, settle_hand_guard=False,
                           redraw_hand_check=False)
    guarded = ObjectSettings(object_settle_steps=6, object_attract_mm=300.0, settle_hand_guard=True)
    a1, o1 = settle_pair(a, o, surf, hands, plain)
    a2, o2 = settle_pair(a, o, surf, hands, guarded)
    # without the guard the upper hand is pulled down to the box through the lower one (exact volume, manifold3d)
    assert _hand_hand_volume(a1, o1) > 1.0 and bool(hands_interpenetrate(hands, a1, o1, guarded)[0])
    assert _hand_hand_volume(a2, o2) < 1e-3 and not bool(hands_interpenetrate(hands, a2, o2, guarded)[0])
    torch.testing.assert_close(a2, a1)  # the anchor's own move (none: it touches) is kept
    # the redraw's hand-hand check fails the interpenetrating pair that passes the hand-object checks
    assert bool(hand_object_check(hands, a1, o1, surf, plain)[0])
    assert not bool(hand_object_check(hands, a1, o1, surf, ObjectSettings(redraw_hand_check=True))[0])
    with pytest.raises(Exception, match="hand_depth_mm"):
        ObjectSettings(hand_depth_mm=0.0).validate()
    # what the hand check adds to the redraw's violation: redraw_hand_failure_mm for the pair through each other,
    # nothing for the clear one (the redraw keeps a row's least failing draw by this figure)
    from interhandgen.generation.object_sampling import hand_object_violation
    off = ObjectSettings(redraw_hand_check=False)
    for pair, through in (((a1, o1), True), ((a2, o2), False)):
        without = hand_object_violation(hands, *pair, surf, off)
        for w in (3.0, 30.0):
            d = hand_object_violation(hands, *pair, surf, ObjectSettings(redraw_hand_failure_mm=w)) - without
            assert float(d[0]) == pytest.approx(w if through else 0.0, abs=1e-9)
    with pytest.raises(Exception, match="redraw_hand_failure_mm"):
        ObjectSettings(redraw_hand_failure_mm=0.0).validate()


def test_redraw_violation_is_the_distance_beyond_the_thresholds():
    from interhandgen.generation.object_sampling import hand_object_check, hand_object_violation

    obj = _box()
    top = float(obj.vertices[:, 2].max())
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 4096, seed=2))[None].float()
    hands, a, o = _stacked_pair(top)  # the other hand's lowest point 10 mm above the first hand's highest
    og = ObjectSettings()
    pts_o = hands[1](o)[0][0] + a[0, 61:]  # identity anchor rotation: the other hand in the object frame
    gap_mm = (float(pts_o[:, 2].min()) - top) * 1000.0  # above the flat top face: the plane test is exact there
    v = float(hand_object_violation(hands, a, o, surf, og)[0])
    assert abs(v - (gap_mm - og.redraw_gap_mm)) < 0.05 and not bool(hand_object_check(hands, a, o, surf, og)[0])
    o_far = o.clone()
    o_far[0, 61] += 0.3  # the other hand 30 cm aside; the anchor touches and adds nothing
    far_pts = hands[1](o_far)[0][0] + a[0, 61:]
    exact_gap_mm = float(_exact(far_pts[None], obj).min()) * 1000.0
    v = float(hand_object_violation(hands, a, o_far, surf, og)[0])
    # outside, the plane test gives at least the distance less the samples' spacing (8 mm) and at most the distance
    assert exact_gap_mm - 8.0 - og.redraw_gap_mm - 0.1 <= v <= exact_gap_mm - og.redraw_gap_mm + 0.1


def _box_rows(tmp_path, model_file, og):
    """(generator, its sampler settings, the box scene, ids, poses, tokens, surfaces, the redraw's hand subsets) of
    12 rows around a box at the origin."""
    _write_box(tmp_path / "box.obj", np.zeros(3))
    scene = user_object(tmp_path / "box.obj")
    gen = ObjectInterHandGen.load(model_file)
    ids, poses = scene.rows(12)
    tokens, surfaces = gen.condition(scene.library, ids, poses, og.object_guidance_points)
    settings = SamplerSettings(steps=3, resample_rounds=0, settle_steps=0)
    return gen, settings, scene, ids, poses, tokens, surfaces, gen.cascade.surface_subsets(og.grasp_points)


def box_samples_on_off(tmp_path, model_file, og, seed=3, **off):
    """(pairs sampled around the box with ``og`` changed by ``off``, pairs with ``og``): 12 each, the same seed."""
    gen, settings, scene, *_ = _box_rows(tmp_path, model_file, og)
    return tuple(gen.sample(12, scene, seed=seed, settings=settings, object_settings=o, progress=False)
                 for o in (dataclasses.replace(og, **off), og))


def test_redraw_keeps_the_least_failing_draw(tmp_path, model_file):
    from interhandgen.generation.object_sampling import hand_object_violation

    base = ObjectSettings(object_settle_steps=0, search_rounds=0, clear_rounds=0)  # the redraw alone
    gen, settings, _, _, _, tokens, surfaces, hands = _box_rows(tmp_path, model_file, base)

    def violation(**kw):
        og = dataclasses.replace(base, **kw)
        x = gen._run(12, tokens, surfaces, 0, settings, og, 2500, False)
        return x, hand_object_violation(hands, x[:, 0], x[:, 1], surfaces, og)

    x0, v0 = violation(redraw_rounds=0)
    xf, vf = violation(redraw_rounds=2, redraw_keep_best=False)
    xb, vb = violation(redraw_rounds=2, redraw_keep_best=True)
    assert bool((v0 > 0).any())  # the random network fails somewhere: there is something to redraw
    assert bool((vb <= v0 + 1e-9).all()) and bool((vb <= vf + 1e-9).all())
    replaced = (xf != x0).flatten(1).any(1)
    assert bool((vf[replaced] == 0).all()) and torch.equal(xf[~replaced], x0[~replaced])  # keep-first: only passes


def test_redraw_judges_the_closest_points_on_the_exact_distance(tmp_path, model_file):
    from interhandgen.generation.object_api import exact_objects
    from interhandgen.generation.object_sampling import hand_object_violation, other_in_object_frame

    og = ObjectSettings(redraw_rounds=0, redraw_hand_check=False, clear_rounds=0)  # failing pairs stay
    gen, settings, scene, ids, poses, tokens, surfaces, hands = _box_rows(tmp_path, model_file, og)
    x = gen._run(12, tokens, surfaces, 0, settings, og, 2500, False)
    exact = exact_objects(scene.library, ids, poses)
    got = hand_object_violation(hands, x[:, 0], x[:, 1], surfaces, og, exact, torch.arange(12))
    # brute force: every point of both hands on the exact distance to the box
    mesh = scene.library
    want = torch.zeros(12, dtype=torch.float64)
    for pts in (hands[0](x[:, 0])[0], other_in_object_frame(hands[1](x[:, 1])[0], x[:, 0])):
        sdf = object_signed_distance(pts.double(), torch.tensor(mesh.vertices[0]), torch.tensor(mesh.faces[0]))[0]
        gap, depth = sdf.amin(1) * 1000, torch.relu(-sdf).amax(1) * 1000
        want += torch.relu(gap - og.redraw_gap_mm) + torch.relu(depth - og.redraw_depth_mm)
    # the closest points by the planes are the closest on the exact distance (a box: the planes are exact on its
    # faces); differences only where the planes rank other points first
    assert (got - want).abs().lt(0.05).sum() >= 10, (got, want)
    assert not torch.equal(got, hand_object_violation(hands, x[:, 0], x[:, 1], surfaces, og))


def test_sampler_records_the_pairs_that_still_fail_its_checks(tmp_path, model_file):
    from interhandgen.data.format import TwoHandSet
    from interhandgen.generation.object_api import exact_objects, object_checks_record
    from interhandgen.generation.object_sampling import hand_object_violation

    og = ObjectSettings(redraw_rounds=1, exact_push_rounds=0)  # no push-out: the record is of the final pairs
    gen, settings, scene, ids, poses, tokens, surfaces, hands = _box_rows(tmp_path, model_file, og)
    exact = exact_objects(scene.library, ids, poses)
    v = torch.full((12,), -1.0, dtype=torch.float64)
    x = gen._run(12, tokens, surfaces, 0, settings, og, 2500, False, exact=exact, violation=v)
    # the recorded value of every pair is its violation, recomputed on the returned pairs
    want = hand_object_violation(hands, x[:, 0], x[:, 1], surfaces, og, exact, torch.arange(12))
    torch.testing.assert_close(v, want, atol=1e-9, rtol=0)
    assert bool((v > 0).any()) and bool((v == 0).any())  # the random network: some pairs pass, some fail
    rec = object_checks_record(v)
    assert rec["pairs"] == 12 and rec["failing"] == (v > 0).nonzero()[:, 0].tolist()
    assert rec["violation_mm"] == [round(float(t), 3) for t in v[v > 0]]
    # through the API (the same rows, seed and settings), and kept in the saved file
    two = gen.sample(12, scene, seed=0, settings=settings, object_settings=og, progress=False)
    assert two.metadata["object_checks"] == rec
    assert TwoHandSet.load(two.save(tmp_path / "s.npz")).metadata["object_checks"] == rec
    with pytest.raises(ValueError, match="violation"):
        gen._run(12, tokens, surfaces, 0, settings, og, 2500, False, exact=exact, violation=torch.zeros(5))
