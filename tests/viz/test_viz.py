"""Tests of the headless renderer: rasteriser against a brute-force z-buffer, placement, colours,
z-order, layout, determinism and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.viz import (
    BACKGROUND,
    LEFT_COLOUR,
    RIGHT_COLOUR,
    grid_layout,
    rasterize,
    render,
    render_meshes,
    save_png,
)

WHITE = np.array(BACKGROUND)


def _brute_force(screen: np.ndarray, faces: np.ndarray, H: int, W: int, margin: float = 1e-4):
    """Per-pixel nearest triangle by testing every triangle at every pixel centre (float64), and a mask of the
    pixels whose answer is unambiguous (no triangle within ``margin`` of an edge or a depth tie)."""
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    best = np.full((H, W), -1)
    best_depth = np.full((H, W), np.inf)
    clear = np.ones((H, W), dtype=bool)
    depths = []
    for f, (a, b, c) in enumerate(screen[faces]):
        m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
        if abs(np.linalg.det(m)) < 1e-12:
            continue
        inv = np.linalg.inv(m)
        u = inv[0, 0] * (xs - a[0]) + inv[0, 1] * (ys - a[1])
        v = inv[1, 0] * (xs - a[0]) + inv[1, 1] * (ys - a[1])
        bary = np.stack([1 - u - v, u, v])
        inside = (bary >= 0).all(0)
        clear &= ~((np.abs(bary) < margin).any(0) & (bary > -margin).all(0))
        z = bary[0] * a[2] + bary[1] * b[2] + bary[2] * c[2]
        depths.append(np.where(inside, z, np.inf))
        nearer = inside & (z < best_depth)
        best[nearer], best_depth[nearer] = f, z[nearer]
    depths = np.sort(np.stack(depths), axis=0)
    with np.errstate(invalid="ignore"):
        clear &= ~(np.isfinite(depths[1]) & (depths[1] - depths[0] < margin))
    return best, clear


def test_rasterize_matches_brute_force_on_random_overlapping_triangles():
    rng = np.random.default_rng(0)
    H, W, F = 48, 64, 40
    centres = rng.uniform([0, 0], [W, H], size=(F, 2))
    corners = centres[:, None] + rng.normal(0, 8, size=(F, 3, 2))
    depth = rng.uniform(0, 10, size=(F, 3, 1))
    screen = np.concatenate([corners, depth], axis=-1).reshape(-1, 3)
    faces = np.arange(3 * F).reshape(F, 3)
    frags = rasterize(torch.tensor(screen, dtype=torch.float32), torch.tensor(faces), H, W, max_candidates=997)
    ours = frags.face_index_image().numpy()
    truth, clear = _brute_force(screen, faces, H, W)
    assert clear.mean() > 0.95
    assert (truth >= 0).sum() > 0.3 * H * W and (truth < 0).sum() > 0.05 * H * W  # both covered and empty
    np.testing.assert_array_equal(ours[clear], truth[clear])
    # Barycentric coordinates reproduce the pixel centres.
    rows, cols = np.divmod(frags.pixels.numpy(), W)
    tri = screen[faces[frags.face_index.numpy()]]
    recon = np.einsum("mk,mkc->mc", frags.bary.numpy(), tri[:, :, :2])
    np.testing.assert_allclose(recon, np.stack([cols + 0.5, rows + 0.5], 1), atol=2e-3)


def test_rasterize_nearer_triangle_hides_farther_one_in_any_order():
    near = [[10, 10, 1.0], [50, 10, 1.0], [10, 50, 1.0]]
    far = [[5, 5, 2.0], [60, 5, 2.0], [5, 60, 2.0]]
    for verts, near_id in (([*near, *far], 0), ([*far, *near], 1)):
        frags = rasterize(torch.tensor(verts), torch.tensor([[0, 1, 2], [3, 4, 5]]), 64, 64)
        img = frags.face_index_image()
        assert img[20, 20] == near_id  # inside both: the nearer one wins
        assert img[7, 55] == 1 - near_id  # inside the far one only
        assert img[62, 62] == -1
        assert frags.depth_image()[20, 20] == pytest.approx(1.0)


def test_rasterize_a_hand_matches_brute_force():
    """The rest open hand (5432 triangles, closed) seen from the front: nearest triangle per pixel centre."""
    from interhandgen.hand.open_hand import open_hand_data

    data = open_hand_data("right")
    verts, faces = data.v_template, data.faces
    size = 40
    lo, hi = verts.min(0), verts.max(0)
    scale = (size - 2) / (hi - lo)[:2].max()
    screen = np.stack([(verts[:, 0] - lo[0]) * scale + 1, (hi[1] - verts[:, 1]) * scale + 1, -verts[:, 2] * scale], 1)
    truth, clear = _brute_force(screen, faces, size, size)
    for cull in (False, True):
        ours = rasterize(torch.tensor(screen), torch.tensor(faces), size, size, cull_back_faces=cull)
        ours = ours.face_index_image().numpy()
        assert (truth >= 0).sum() > 200 and clear.mean() > 0.9
        np.testing.assert_array_equal(ours[clear], truth[clear])


def _box(centre, size=0.05):
    box = trimesh.creation.box(extents=[size] * 3)
    return np.asarray(box.vertices) + np.asarray(centre), np.asarray(box.faces)


def _colour_mask(img: np.ndarray, colour, tol: int = 0) -> np.ndarray:
    """Pixels whose hue matches ``colour`` (any shading): proportional to it within rounding."""
    c = np.asarray(colour, dtype=float)
    px = img.astype(float)
    k = (px @ c) / (c @ c)
    return (np.abs(px - k[..., None] * c).max(-1) <= 1.5 + tol) & (k > 0.2) & (np.abs(px - WHITE).max(-1) > 0)


def test_render_puts_each_hand_where_it_is_in_both_views():
    lv, lf = _box([-0.1, 0.0, 0.0])
    rv, rf = _box([0.1, 0.0, 0.0])
    size = 96
    img = np.asarray(render(left_vertices=lv[None], left_faces=lf, right_vertices=rv[None], right_faces=rf,
                            view_size=size, label_views=False))
    layout = grid_layout(1, 4, 2, size)
    assert img.shape == (layout.height, layout.width, 3)
    for view in range(2):
        x0, y0 = layout.view_origin(0, view)
        cell = img[y0:y0 + size, x0:x0 + size]
        blue, orange = _colour_mask(cell, LEFT_COLOUR), _colour_mask(cell, RIGHT_COLOUR)
        assert blue.sum() > 100 and orange.sum() > 100
        assert np.nonzero(blue)[1].max() < size // 2 < np.nonzero(orange)[1].min()  # left hand on the left
        background = ~(blue | orange)
        assert (cell[background] == WHITE).all(-1).mean() > 0.97  # the rest is background (edges anti-aliased)
        for corner in (cell[2, 2], cell[-3, -3], cell[2, -3], cell[-3, 2]):  # inside the frame lines
            np.testing.assert_array_equal(corner, WHITE)


def test_render_occlusion_and_top_view_orientation():
    # Right (orange) box nearer the front camera (+z), left (blue) box behind it.
    lv, lf = _box([0.0, 0.0, -0.1], size=0.06)
    rv, rf = _box([0.0, 0.0, 0.1], size=0.04)
    size = 96
    img = np.asarray(render(left_vertices=lv[None], left_faces=lf, right_vertices=rv[None], right_faces=rf,
                            view_size=size, label_views=False))
    layout = grid_layout(1, 4, 2, size)
    x0, y0 = layout.view_origin(0, 0)
    front = img[y0:y0 + size, x0:x0 + size]
    c = size // 2
    assert _colour_mask(front[c - 3:c + 4, c - 3:c + 4], RIGHT_COLOUR).all()  # the nearer box hides the far one
    assert _colour_mask(front, LEFT_COLOUR).sum() > 100  # the bigger far box shows around it
    x1, y1 = layout.view_origin(0, 1)
    top = img[y1:y1 + size, x1:x1 + size]
    rows_blue = np.nonzero(_colour_mask(top, LEFT_COLOUR))[0]
    rows_orange = np.nonzero(_colour_mask(top, RIGHT_COLOUR))[0]
    assert rows_blue.max() < rows_orange.min()  # top view: image up = -z, so +z is lower


@pytest.mark.parametrize("n, cols, titles", [(5, 2, False), (3, 4, True), (16, 4, True), (1, 1, False)])
def test_output_size_is_the_requested_grid(n, cols, titles):
    lv, lf = _box([-0.05, 0, 0])
    rv, rf = _box([0.05, 0, 0])
    size = 32
    img = render(left_vertices=np.repeat(lv[None], n, 0), left_faces=lf, right_vertices=np.repeat(rv[None], n, 0),
                 right_faces=rf, cols=cols, view_size=size, views=("front", "top", "side"),
                 titles=[f"s{i}" for i in range(n)] if titles else None, supersample=1)
    c = min(cols, n)
    rows = -(-n // c)
    pad = max(4, size // 32)
    title_h = max(10, size // 16) + 8 if titles else 0
    assert img.size == (c * 3 * size + (c + 1) * pad, rows * (size + title_h) + (rows + 1) * pad)
    assert img.mode == "RGB"


def _random_hands(n=3, seed=0):
    from interhandgen.hand.open_hand import open_hand

    g = torch.Generator().manual_seed(seed)
    left, right = open_hand("left"), open_hand("right")
    lv = left(hand_pose=0.5 * torch.randn(n, 45, generator=g), transl=torch.tensor([[-0.08, 0.0, 0.0]]).repeat(n, 1))
    rv = right(hand_pose=0.5 * torch.randn(n, 45, generator=g), transl=torch.tensor([[0.08, 0.0, 0.0]]).repeat(n, 1))
    return lv.vertices, left.faces_np, rv.vertices, right.faces_np


def test_render_is_deterministic_and_writes_png(tmp_path):
    lv, lf, rv, rf = _random_hands()
    kw = dict(left_vertices=lv, left_faces=lf, right_vertices=rv, right_faces=rf, view_size=64, titles=["a", "b", "c"])
    a = render(**kw, out_path=tmp_path / "a.png")
    b = render(**kw, out_path=tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # numpy float64 input gives the same picture as torch float32 input.
    as64 = {"left_vertices": lv.numpy().astype(np.float64), "right_vertices": rv.numpy().astype(np.float64)}
    c = render(**{**kw, **as64})
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    assert not list(tmp_path.glob(".*.tmp"))


def test_flat_and_gouraud_shading_differ_only_in_shading():
    lv, lf, rv, rf = _random_hands(1)
    kw = dict(left_vertices=lv, left_faces=lf, right_vertices=rv, right_faces=rf, view_size=64, supersample=1,
              label_views=False)
    g = np.asarray(render(**kw, shading="gouraud"))
    f = np.asarray(render(**kw, shading="flat"))
    covered_g = (g != WHITE).any(-1)
    covered_f = (f != WHITE).any(-1)
    np.testing.assert_array_equal(covered_g, covered_f)  # same coverage
    assert (g[covered_g] != f[covered_g]).any()
    # Lit colours stay between the ambient and the full colour of their hand.
    for colour in (LEFT_COLOUR, RIGHT_COLOUR):
        mask = _colour_mask(g, colour)
        k = (g[mask].astype(float) @ np.array(colour)) / (np.array(colour) @ np.array(colour))
        assert mask.sum() > 50 and k.min() >= 0.3 - 0.02 and k.max() <= 1.0 + 0.02


def test_render_a_two_hand_set_equals_rendering_its_vertices():
    from interhandgen.data.format import TwoHandSet

    rng = np.random.default_rng(1)
    n = 2

    def hand(x):
        return dict(pose=rng.normal(0, 0.5, (n, 45)), betas=rng.normal(0, 1, (n, 10)),
                    global_orient=rng.normal(0, 0.3, (n, 3)), transl=np.tile([x, 0.0, 0.0], (n, 1)))

    two = TwoHandSet(hand(-0.08), hand(0.08), pose_space="pca", flat_hand_mean=False)
    models = two.hand_models()
    verts = two.vertices(models, dtype=torch.float32)  # render poses in float32
    a = render(two, view_size=48, titles=["x", "y"])
    b = render(left_vertices=verts["left"], left_faces=models["left"].faces_np, right_vertices=verts["right"],
               right_faces=models["right"].faces_np, view_size=48, titles=["x", "y"])
    # The same picture; on other numpy/torch builds float rounding of the two vertex paths has moved single
    # shading values by 1 (1 of 45,288 on the GPU machine): a different pose or side would change thousands.
    diff = np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int))
    assert np.asarray(a).shape == np.asarray(b).shape and (diff > 0).mean() < 1e-3 and diff.max() <= 8


def test_render_meshes_scene(tmp_path):
    a_v, a_f = _box([-0.1, 0, 0])
    b_v, b_f = _box([0.1, 0, 0])
    img = render_meshes([(a_v, a_f, (200, 30, 30)), (torch.tensor(b_v), torch.tensor(b_f), (30, 200, 30))],
                        title="two boxes", view_size=64, out_path=tmp_path / "s.png", views=("front",))
    arr = np.asarray(img)
    assert _colour_mask(arr, (200, 30, 30)).sum() > 50 and _colour_mask(arr, (30, 200, 30)).sum() > 50
    assert np.nonzero(_colour_mask(arr, (200, 30, 30)))[1].max() < np.nonzero(_colour_mask(arr, (30, 200, 30)))[1].min()
    assert (tmp_path / "s.png").is_file()
    save_png(img, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes() == (tmp_path / "s.png").read_bytes()


def test_bad_input_raises_naming_the_argument():
    lv, lf = _box([-0.1, 0, 0])
    rv, rf = _box([0.1, 0, 0])
    ok = dict(left_vertices=lv[None], left_faces=lf, right_vertices=rv[None], right_faces=rf, view_size=32)
    bad_faces = rf.copy()
    bad_faces[0, 0] = len(rv)
    with pytest.raises(ValueError, match="right_faces"):
        render(**{**ok, "right_faces": bad_faces})
    with pytest.raises(ValueError, match="left_faces"):
        render(**{**ok, "left_faces": lf[:, :2]})
    with pytest.raises(TypeError, match="left_faces"):
        render(**{**ok, "left_faces": lf.astype(float)})
    nan = rv[None].copy()
    nan[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="right_vertices.*NaN"):
        render(**{**ok, "right_vertices": nan})
    with pytest.raises(ValueError, match="left_vertices"):
        render(**{**ok, "left_vertices": lv})  # not batched
    with pytest.raises(ValueError, match="same number of samples"):
        render(**{**ok, "left_vertices": np.repeat(lv[None], 2, 0)})
    with pytest.raises(ValueError, match="titles"):
        render(**ok, titles=["a", "b"])
    with pytest.raises(ValueError, match="view"):
        render(**ok, views=("front", "diagonal"))
    with pytest.raises(ValueError, match="shading"):
        render(**ok, shading="phong")
    with pytest.raises(ValueError, match="missing"):
        render(left_vertices=lv[None], left_faces=lf)
    with pytest.raises(TypeError, match="TwoHandSet"):
        render([1, 2, 3])
    with pytest.raises(ValueError, match=r"meshes\[0\] colour"):
        render_meshes([(lv, lf, (300, 0, 0))])
    with pytest.raises(ValueError, match="screen_verts"):
        rasterize(torch.tensor([[0.0, 0.0, float("nan")]] * 3), torch.tensor([[0, 1, 2]]), 4, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_render_on_cuda_matches_cpu():
    lv, lf, rv, rf = _random_hands(2)
    kw = dict(left_faces=lf, right_faces=rf, view_size=64)
    a = np.asarray(render(left_vertices=lv, right_vertices=rv, **kw)).astype(int)
    b = np.asarray(render(left_vertices=lv.cuda(), right_vertices=rv.cuda(), device="cuda", **kw)).astype(int)
    assert (np.abs(a - b).max(-1) > 8).mean() < 0.002
