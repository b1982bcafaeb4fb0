"""Scene building of the viewer, without a browser: what is added for a sample, with an object, with highlighting."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.exceptions import InputError
from interhandgen.geometry import winding_numbers
from interhandgen.viewer import (
    HIGHLIGHT_COLOUR,
    OBJECT_COLOUR,
    ObjectMesh,
    SampleSource,
    build_sample_scene,
    interpenetration_masks,
    sample_figures,
    split_faces,
)
from interhandgen.viewer.compare import canonical_joints, nearest_pairs
from interhandgen.viewer.export import build_payload, dequantise, render_page
from interhandgen.viz import LEFT_COLOUR, RIGHT_COLOUR


@pytest.fixture(scope="module")
def crafted(crafted_pairs):
    pairs = crafted_pairs([[0.12, 0.0, 0.0], [0.30, 0.0, 0.0]])
    models = pairs.hand_models()
    verts = pairs.vertices(models, dtype=torch.float64)
    faces = {s: models[s].faces_np.astype(np.int64) for s in ("left", "right")}
    return pairs, verts, faces


def test_plain_sample_adds_two_meshes_in_the_hand_colours(crafted):
    _, verts, faces = crafted
    lv, rv = verts["left"][1].numpy(), verts["right"][1].numpy()
    scene = build_sample_scene(lv, faces["left"], rv, faces["right"], offset=(0.5, 0.0, -0.25))
    assert scene.names() == ["/sample/left", "/sample/right"]
    left, right = scene.mesh("/sample/left"), scene.mesh("/sample/right")
    assert left.colour == LEFT_COLOUR and right.colour == RIGHT_COLOUR
    np.testing.assert_allclose(left.vertices, lv + [0.5, 0.0, -0.25], atol=1e-6)
    np.testing.assert_allclose(right.vertices, rv + [0.5, 0.0, -0.25], atol=1e-6)
    np.testing.assert_array_equal(left.faces, faces["left"])
    np.testing.assert_array_equal(right.faces, faces["right"])
    assert left.vertices.dtype == np.float32 and left.faces.dtype == np.int32


def test_highlighted_vertices_are_exactly_those_inside_the_other_hand(crafted):
    _, verts, faces = crafted
    lv, rv = verts["left"], verts["right"]
    left_in, right_in = interpenetration_masks(lv, faces["left"], rv, faces["right"])
    # Independent truth: the generalised winding number (a different algorithm: solid angles, no closest point),
    # evaluated on the vertices inside the other hand's bounding box (a point outside the box is outside).
    for mine, other, other_faces, got in ((lv, rv, faces["right"], left_in), (rv, lv, faces["left"], right_in)):
        for b in range(2):
            lo, hi = other[b].amin(0), other[b].amax(0)
            in_box = ((mine[b] >= lo) & (mine[b] <= hi)).all(-1)
            truth = np.zeros(mine.shape[1], dtype=bool)
            if in_box.any():
                w = winding_numbers(mine[b][in_box][None], other[b:b + 1], other_faces)[0].numpy()
                truth[in_box.numpy()] = w > 0.5
            np.testing.assert_array_equal(got[b], truth)
    assert 10 < left_in[0].sum() < 500 and 10 < right_in[0].sum() < 500  # the crafted pair interpenetrates partly
    assert not left_in[1].any() and not right_in[1].any()  # the separated pair does not

    scene = build_sample_scene(lv[0].numpy(), faces["left"], rv[0].numpy(), faces["right"],
                               inside=(left_in[0], right_in[0]))
    assert scene.names() == ["/sample/left", "/sample/left_inside", "/sample/right", "/sample/right_inside"]
    for side, mask in (("left", left_in[0]), ("right", right_in[0])):
        plain, hit = scene.mesh(f"/sample/{side}"), scene.mesh(f"/sample/{side}_inside")
        assert hit.colour == HIGHLIGHT_COLOUR
        # The red faces are exactly those touching an inside vertex; together with the rest they are the hand.
        expected_hit = mask[faces[side]].any(axis=1)
        np.testing.assert_array_equal(hit.faces, faces[side][expected_hit])
        np.testing.assert_array_equal(plain.faces, faces[side][~expected_hit])
        assert set(np.unique(hit.faces)) >= set(np.flatnonzero(mask))
        np.testing.assert_array_equal(scene.inside[side], mask)


def test_split_faces_partitions_in_order():
    faces = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 0], [1, 3, 5]])
    plain, hit = split_faces(faces, np.array([False, False, False, True, False, False]))
    np.testing.assert_array_equal(hit, faces[[1, 3]])
    np.testing.assert_array_equal(plain, faces[[0, 2]])


def test_object_is_an_optional_grey_mesh(crafted):
    _, verts, faces = crafted
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.03)
    obj = ObjectMesh(ball.vertices, ball.faces, name="ball")
    scene = build_sample_scene(verts["left"][1].numpy(), faces["left"], verts["right"][1].numpy(), faces["right"],
                               obj=obj, prefix="/ref", offset=(0.1, 0.0, 0.0))
    assert scene.names() == ["/ref/left", "/ref/right", "/ref/object"]
    m = scene.mesh("/ref/object")
    assert m.colour == OBJECT_COLOUR
    np.testing.assert_allclose(m.vertices, ball.vertices + [0.1, 0.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(m.faces, ball.faces)
    with pytest.raises(InputError, match="faces"):
        ObjectMesh(ball.vertices, ball.faces + len(ball.vertices))
    with pytest.raises(InputError, match="vertices"):
        ObjectMesh(ball.vertices[:, :2], ball.faces)


def test_figures_of_two_overlapping_spheres_match_the_closed_forms():
    # Two balls of radius r with centres d apart: lens volume pi (4r + d)(2r - d)^2 / 12; apart: gap d - 2r.
    r = 0.02
    ball = trimesh.creation.icosphere(subdivisions=4, radius=r)
    v = torch.as_tensor(ball.vertices)[None].repeat(2, 1, 1)
    shifts = torch.tensor([[0.03, 0.0, 0.0], [0.05, 0.0, 0.0]], dtype=torch.float64)
    w = v + shifts[:, None]
    masks = interpenetration_masks(v, ball.faces, w, ball.faces)
    figs = sample_figures(v, ball.faces, w, ball.faces, *masks)
    d = 0.03
    lens_cm3 = np.pi * (4 * r + d) * (2 * r - d) ** 2 / 12 * 1e6
    assert figs[0].penetration_volume_cm3 == pytest.approx(lens_cm3, rel=0.02)
    assert figs[0].in_contact and figs[0].inside_vertices[0] > 0
    assert figs[1].penetration_volume_cm3 == 0.0
    assert figs[1].min_distance_mm == pytest.approx((0.05 - 2 * r) * 1000, abs=0.05)
    assert not figs[1].in_contact and figs[1].inside_vertices == (0, 0)
    # The inside vertices of a ball are those within the other ball (closed form, up to the facets' sag).
    centre_dist = np.linalg.norm(v[0].numpy() - shifts[0].numpy(), axis=1)
    assert (centre_dist[masks[0][0]] < r).all()
    assert masks[0][0][centre_dist < r * 0.99].all()


def test_source_is_lazy_and_bounded_on_a_10k_file(crafted):
    pairs, verts, _ = crafted
    big = pairs[np.arange(10_000) % 2]
    src = SampleSource(big, name="big", cache_size=3)
    assert src.cached() == [] and len(src) == 10_000
    view = src.get(9_999)  # odd index: the separated pair
    np.testing.assert_allclose(view.left_vertices, verts["left"][1].numpy(), atol=1e-9)
    assert view.category == "crafted" and view.seed == 7 and view.figures.penetration_volume_cm3 == 0.0
    for i in (0, 1, 2, 3):
        src.get(i)
    assert src.cached() == [1, 2, 3]
    with pytest.raises(InputError, match="sample index"):
        src.get(10_000)


def test_nearest_reference_pair(crafted_pairs):
    pairs = crafted_pairs([[0.12, 0.0, 0.0], [0.30, 0.0, 0.0], [0.20, 0.05, 0.0]])
    joints = canonical_joints(pairs)
    idx, dist = nearest_pairs(joints, joints)
    np.testing.assert_array_equal(idx, [0, 1, 2])
    np.testing.assert_allclose(dist, 0.0, atol=1e-9)
    # Against brute force on random points.
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 42, 3, generator=g, dtype=torch.float64)
    ref = torch.randn(3000, 42, 3, generator=g, dtype=torch.float64)
    idx, dist = nearest_pairs(q, ref)
    brute = np.array([[np.linalg.norm(a - b, axis=-1).mean() for b in ref.numpy()] for a in q.numpy()])
    np.testing.assert_array_equal(idx, brute.argmin(1))
    np.testing.assert_allclose(dist, brute.min(1) * 1000, rtol=1e-9)


def test_export_payload_round_trips_and_page_is_self_contained(crafted):
    pairs, verts, faces = crafted
    src = SampleSource(pairs, name="crafted")
    views = src.compute([0, 1])
    payload = build_payload(views, src.faces, len(src), src.name)
    lo, step = np.asarray(payload["lo"]), payload["step"]
    for b, entry in enumerate(payload["samples"]):
        codes = np.frombuffer(base64.b64decode(entry["l"]), dtype="<u2").reshape(-1, 3)
        err = np.abs(dequantise(codes, lo, step) - verts["left"][b].numpy()).max()
        assert err <= step / 2 + 1e-12 and step < 1e-5
        bits = np.unpackbits(np.frombuffer(base64.b64decode(entry["li"]), dtype=np.uint8), bitorder="little")
        np.testing.assert_array_equal(bits[: len(views[b].inside[0])].astype(bool), views[b].inside[0])
    f = np.frombuffer(base64.b64decode(payload["faces"]["right"]), dtype="<u2").reshape(-1, 3)
    np.testing.assert_array_equal(f, faces["right"])
    page = render_page(payload)
    # Nothing is loaded from elsewhere: no external script, stylesheet, image or fetch.
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!#)", page)
    assert "fetch(" not in page and "http://" not in page and "https://" not in page
    data = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["title"] == "crafted: 2 of 2 samples"


def test_align_puts_a_reference_pair_in_the_samples_left_hand_frame(crafted_pairs):
    from interhandgen.viewer.compare import align, anchor_frames

    a = crafted_pairs([[0.12, 0.0, 0.0]])
    b = crafted_pairs([[0.20, 0.05, 0.0]])
    b.left.global_orient[:] = [0.3, -1.1, 0.4]  # turn and move the whole reference pair
    b.right.global_orient[:] = [0.3, -1.1, 0.4]
    b.left.transl[:] = [0.5, -0.2, 0.1]
    fa = tuple(x[0].numpy() for x in anchor_frames(a))
    fb = tuple(x[0].numpy() for x in anchor_frames(b))
    va, vb = a.vertices(dtype=torch.float64), b.vertices(dtype=torch.float64)
    # The left hands share pose and shape, so aligned on the left hand's frame they coincide.
    np.testing.assert_allclose(align(vb["left"][0].numpy(), fb, fa), va["left"][0].numpy(), atol=1e-7)
    # And the alignment is rigid: distances between the hands are kept.
    moved = align(vb["right"][0].numpy(), fb, fa)
    np.testing.assert_allclose(np.linalg.norm(moved[:50] - moved[50:100], axis=1),
                               np.linalg.norm(vb["right"][0].numpy()[:50] - vb["right"][0].numpy()[50:100], axis=1),
                               atol=1e-12)


def test_source_draws_the_object_of_a_set_with_an_object_library():
    """A set written by ``data synth --objects`` / ``sample --object`` shows its own object, placed by its pose."""
    from scipy.spatial.transform import Rotation

    from interhandgen.data.format import TwoHandSet
    from interhandgen.data.object_library import ObjectLibrary
    from interhandgen.objects.library import make_object, sample_object

    n = 3
    rng = np.random.default_rng(0)

    def pairs_with(pose=None, library=None):
        hand = lambda t: dict(pose=np.zeros((n, 45)), betas=np.zeros((n, 10)),  # noqa: E731
                              global_orient=np.zeros((n, 3)), transl=np.full((n, 3), t))
        kw = {} if library is None else dict(object_id=[1, 0, 1], object_names=["box", "other"], object_pose=pose,
                                            object_library=library)
        return TwoHandSet(hand(0.0), hand(0.3), pose_space="pca", flat_hand_mean=False, **kw)

    meshes = [make_object("box", {"size_x": 0.1, "size_y": 0.08, "size_z": 0.06}),
              sample_object("mug", np.random.default_rng(1))]
    library = ObjectLibrary.from_meshes(["box", "other"], meshes)
    pose = np.zeros((n, 7))
    pose[:, 1:4] = rng.normal(0, 1, (n, 3))
    pose[:, 4:] = rng.normal(0, 0.05, (n, 3))
    source = SampleSource(pairs_with(pose, library), name="objects.npz")
    for i, k in ((0, 1), (1, 0), (2, 1)):
        obj = source.get(i).obj
        assert obj is not None and obj.name == ["box", "other"][k]
        # Independent truth: scipy's rotation of the library mesh's vertices, then the translation.
        want = Rotation.from_rotvec(pose[i, 1:4]).apply(meshes[k].vertices) + pose[i, 4:]
        np.testing.assert_allclose(obj.vertices, want, atol=1e-12)
        np.testing.assert_array_equal(obj.faces, meshes[k].faces)
    # A hands-only set draws no object; an articulated pose (not a library object) is refused when opened.
    assert SampleSource(pairs_with()).get(0).obj is None
    bad = pose.copy()
    bad[1, 0] = 0.3
    with pytest.raises(InputError, match="objects.npz.*articulat"):
        SampleSource(pairs_with(bad, library), name="objects.npz")
