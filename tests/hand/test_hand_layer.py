"""Tests of the hand layer (HandModel, lbs, HandModelData) on random MANO-shaped models.

Truths used: smplx.MANO (the reference implementation of MANO's forward pass), closed forms of the rest pose,
finite differences (gradcheck), and the mirror symmetry that HandModelData.mirrored() must satisfy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen.hand import MANO_FINGERTIP_VERTEX_IDS, MANO_PARENTS, HandModel, HandModelData, lbs
from interhandgen.rotations import axis_angle_to_matrix

from fixtures.hands import random_hand_data, random_inputs




@pytest.fixture(scope="module")
def data() -> HandModelData:
    return random_hand_data(seed=1)


# HandModel keeps its model arrays in float32 (as smplx does), so float64 results carry the float32 rounding of
# the model data: up to ~1e-8 m on these hand-sized coordinates.
DATA_ATOL = 2e-8


# ------------------------------------------------------------------------------------------ closed forms
def test_rest_pose_is_shaped_template(data):
    model = HandModel(data, use_pca=False, flat_hand_mean=True)
    betas = torch.randn(4, 10, dtype=torch.float64)
    out = model(betas=betas)
    v_shaped = data.v_template[None] + np.einsum("vks,bs->bvk", data.shapedirs, betas.numpy())
    np.testing.assert_allclose(out.vertices.numpy(), v_shaped, atol=DATA_ATOL)
    np.testing.assert_allclose(out.joints[:, :16].numpy(), np.einsum("jv,bvk->bjk", data.J_regressor, v_shaped), atol=DATA_ATOL)
    np.testing.assert_allclose(out.joints[:, 16:].numpy(), v_shaped[:, data.fingertip_ids], atol=DATA_ATOL)
    assert torch.count_nonzero(out.full_pose) == 0


def test_single_joint_rotation_closed_form(data):
    """Rotating only the root by R with identity elsewhere (no pose blend shapes) rotates everything about the wrist."""
    model = HandModel(data, use_pca=False, flat_hand_mean=True)
    aa = torch.tensor([[0.3, -1.2, 0.7]], dtype=torch.float64)
    out = model(global_orient=aa)
    R = axis_angle_to_matrix(aa)[0].numpy()
    j0 = data.J_regressor[0] @ data.v_template
    expect = (data.v_template - j0) @ R.T + j0
    np.testing.assert_allclose(out.vertices[0].numpy(), expect, atol=DATA_ATOL)


def test_fingertip_joints_are_vertices_and_transl_shifts(data):
    model = HandModel(data, use_pca=True, num_pca_comps=12)
    inp = random_inputs(5, 12, seed=3)
    out = model(**inp)
    assert out.vertices.shape == (5, 778, 3) and out.joints.shape == (5, 21, 3) and out.full_pose.shape == (5, 48)
    torch.testing.assert_close(out.joints[:, 16:], out.vertices[:, data.fingertip_ids], rtol=0, atol=0)
    moved = model(**{**inp, "transl": inp["transl"] + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)})
    torch.testing.assert_close(moved.vertices - out.vertices, torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64).expand(5, 778, 3))


def test_omitted_inputs_are_zeros(data):
    model = HandModel(data, use_pca=True, num_pca_comps=6)
    betas = torch.randn(3, 10, dtype=torch.float64)
    a = model(betas=betas)
    z = lambda n: torch.zeros(3, n, dtype=torch.float64)  # noqa: E731
    b = model(betas=betas, global_orient=z(3), hand_pose=z(6), transl=z(3))
    torch.testing.assert_close(a.vertices, b.vertices, rtol=0, atol=0)


def test_batch_independence(data):
    model = HandModel(data, use_pca=False)
    inp = random_inputs(6, 45, seed=4)
    full = model(**inp).vertices
    for i in (0, 5):
        single = model(**{k: v[i : i + 1] for k, v in inp.items()}).vertices
        torch.testing.assert_close(single[0], full[i], rtol=0, atol=1e-14)


def test_lbs_function_matches_module(data):
    model = HandModel(data, use_pca=False, flat_hand_mean=True)
    inp = random_inputs(3, 45, seed=5)
    out = model(**{**inp, "transl": None})
    V = data.num_verts
    t = lambda a: torch.as_tensor(a, dtype=torch.float32).double()  # noqa: E731  (the module's float32 copy)
    verts, joints = lbs(
        inp["betas"], torch.cat([inp["global_orient"], inp["hand_pose"]], 1), t(data.v_template),
        t(data.shapedirs.reshape(V * 3, 10)), t(data.posedirs.reshape(V * 3, -1).T), t(data.J_regressor),
        data.parents.tolist(), t(data.weights),
    )
    torch.testing.assert_close(verts, out.vertices, rtol=0, atol=1e-14)
    torch.testing.assert_close(joints, out.joints[:, :16], rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------------------ smplx reference
def _smplx_reference(data, tmp_path, inp, use_pca, num_pca_comps, flat_hand_mean):
    smplx = pytest.importorskip("smplx")
    from interhandgen.hand import save_mano_pkl

    path = tmp_path / f"MANO_{data.side.upper()}.pkl"
    save_mano_pkl(data, path)
    ref = smplx.MANO(
        str(path), is_rhand=data.side == "right", use_pca=use_pca, num_pca_comps=num_pca_comps,
        flat_hand_mean=flat_hand_mean, batch_size=inp["betas"].shape[0], dtype=torch.float64,
    )
    return ref(**inp)


@pytest.mark.parametrize("flat_hand_mean", [False, True])
def test_matches_smplx_full_pose_random_model(data, tmp_path, flat_hand_mean):
    inp = random_inputs(8, 45, seed=6)
    ours = HandModel(data, use_pca=False, flat_hand_mean=flat_hand_mean)(**inp)
    ref = _smplx_reference(data, tmp_path, inp, use_pca=False, num_pca_comps=45, flat_hand_mean=flat_hand_mean)
    assert (ours.vertices - ref.vertices).abs().max() < 1e-6
    assert (ours.joints[:, :16] - ref.joints).abs().max() < 1e-6


def test_gradients_match_smplx(data, tmp_path):
    smplx = pytest.importorskip("smplx")
    from interhandgen.hand import save_mano_pkl

    save_mano_pkl(data, tmp_path / "MANO_RIGHT.pkl")
    ref = smplx.MANO(str(tmp_path / "MANO_RIGHT.pkl"), use_pca=True, num_pca_comps=12, dtype=torch.float64)
    ours = HandModel(data, use_pca=True, num_pca_comps=12)
    grads = []
    for model in (ours, ref):
        inp = {k: v.requires_grad_(True) for k, v in random_inputs(4, 12, seed=13).items()}
        out = model(**inp)
        (out.vertices.square().sum() + out.joints[:, :16].sum()).backward()  # smplx has no fingertip joints
        grads.append(torch.cat([inp[k].grad for k in inp], 1))
    assert ((grads[0] - grads[1]).abs().max() / grads[1].abs().max()).item() < 1e-6


# ------------------------------------------------------------------------------------------ gradients, dtypes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_reach_all_four_inputs(data, dtype):
    model = HandModel(data, use_pca=True, num_pca_comps=45)
    inp = {k: v.requires_grad_(True) for k, v in random_inputs(3, 45, seed=7, dtype=dtype).items()}
    out = model(**inp)
    assert out.vertices.dtype == dtype and out.joints.dtype == dtype
    (out.vertices.square().sum() + out.joints.sum()).backward()
    for name, t in inp.items():
        assert t.grad is not None and t.grad.dtype == dtype, name
        assert torch.isfinite(t.grad).all() and (t.grad.abs().sum(1) > 0).all(), name


def test_gradcheck_float64(data):
    model = HandModel(data, use_pca=True, num_pca_comps=6)
    inp = random_inputs(2, 6, seed=8)
    names = list(inp)

    def f(*args):
        out = model(**dict(zip(names, args)))
        return out.vertices[:, ::37], out.joints

    assert torch.autograd.gradcheck(f, tuple(v.requires_grad_(True) for v in inp.values()), eps=1e-6, atol=1e-6,
                                    fast_mode=True)


def test_float32_close_to_float64(data):
    model = HandModel(data, use_pca=True, num_pca_comps=12)
    inp = random_inputs(16, 12, seed=9)
    ref = model(**inp).vertices
    got = model(**{k: v.float() for k, v in inp.items()}).vertices
    assert got.dtype == torch.float32
    assert (got.double() - ref).abs().max() < 2e-6  # metres


def test_float64_gradients_match_finite_differences_in_global_orient_at_zero(data):
    model = HandModel(data, use_pca=False)
    go = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    model(global_orient=go).vertices.sum().backward()
    assert torch.isfinite(go.grad).all()
    eps = 1e-6
    for k in range(3):
        d = torch.zeros(1, 3, dtype=torch.float64)
        d[0, k] = eps
        fd = (model(global_orient=d).vertices.sum() - model(global_orient=-d).vertices.sum()) / (2 * eps)
        assert abs(fd.item() - go.grad[0, k].item()) < 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available on this machine")
def test_cuda_matches_cpu(data):
    model = HandModel(data, use_pca=True, num_pca_comps=12)
    inp = random_inputs(4, 12, seed=10)
    cpu = model(**inp).vertices
    gpu = model.to("cuda")(**{k: v.cuda() for k, v in inp.items()}).vertices
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------ bad inputs
def test_bad_inputs_name_the_argument(data):
    model = HandModel(data, use_pca=True, num_pca_comps=6)
    good = random_inputs(2, 6, seed=11)
    cases = [
        ({"hand_pose": torch.zeros(2, 45, dtype=torch.float64)}, ValueError, "hand_pose"),
        ({"betas": torch.zeros(2, 9, dtype=torch.float64)}, ValueError, "betas"),
        ({"transl": torch.zeros(2, 3, 1, dtype=torch.float64)}, ValueError, "transl"),
        ({"global_orient": torch.zeros(3, 3, dtype=torch.float64)}, ValueError, "global_orient"),  # batch 3 vs 2
        ({"global_orient": torch.zeros(2, 3, dtype=torch.int64)}, TypeError, "global_orient"),
        ({"transl": torch.zeros(2, 3, dtype=torch.float32)}, TypeError, "transl"),  # dtype differs from the rest
        ({"betas": torch.full((2, 10), float("nan"), dtype=torch.float64)}, ValueError, "betas"),
        ({"hand_pose": torch.tensor([[0.0, 0, 0, 0, 0, float("inf")]] * 2, dtype=torch.float64)}, ValueError, "hand_pose"),
        ({"transl": np.zeros((2, 3))}, TypeError, "transl"),
    ]
    for override, exc, name in cases:
        with pytest.raises(exc, match=name):
            model(**{**good, **override})
    with pytest.raises(ValueError, match="batch size"):
        model()
    with pytest.raises(ValueError, match="num_pca_comps"):
        HandModel(data, use_pca=True, num_pca_comps=46)
    with pytest.raises(TypeError, match="data"):
        HandModel({"v_template": data.v_template})


def test_model_data_rejects_bad_fields(data):
    fields = {f: getattr(data, f) for f in HandModelData.ARRAY_FIELDS}
    bad = [
        ("posedirs", data.posedirs[:, :, :100]),
        ("J_regressor", data.J_regressor[:15]),
        ("weights", np.full_like(data.weights, np.nan)),
        ("parents", np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 15])),  # joint 15 its own parent
        ("faces", np.array([[0, 1, 778]])),
        ("fingertip_ids", np.array([0, 1, 2, 3])),
    ]
    for field, value in bad:
        with pytest.raises(ValueError, match=field):
            HandModelData(**{**fields, field: value}, side="right")
    with pytest.raises(ValueError, match="side"):
        HandModelData(**fields, side="both")


def test_npz_round_trip(data, tmp_path):
    data.save_npz(tmp_path / "m.npz")
    back = HandModelData.load_npz(tmp_path / "m.npz")
    for f in HandModelData.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(back, f), getattr(data, f), err_msg=f)
    assert (back.side, back.name) == (data.side, data.name)


# ------------------------------------------------------------------------------------------ mirroring
@pytest.mark.parametrize("use_pca", [True, False])
def test_mirrored_model_mirrors_the_mesh(data, use_pca):
    """Mirrored model + mirrored inputs = original output with x negated (for PCA and axis-angle poses)."""
    mirrored = data.mirrored()
    assert mirrored.side == "left" and data.mirrored().mirrored().side == "right"
    a = HandModel(data, use_pca=use_pca, num_pca_comps=45)
    b = HandModel(mirrored, use_pca=use_pca, num_pca_comps=45)
    inp = random_inputs(6, 45, seed=12)
    flip_aa = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    mirror_inp = dict(inp)
    mirror_inp["global_orient"] = inp["global_orient"] * flip_aa
    mirror_inp["transl"] = inp["transl"] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    if not use_pca:  # axis-angle joint poses mirror like the global orientation; PCA coefficients stay the same
        mirror_inp["hand_pose"] = inp["hand_pose"] * flip_aa.repeat(15)
    out_a, out_b = a(**inp), b(**mirror_inp)
    x_flip = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(out_b.vertices, out_a.vertices * x_flip, rtol=0, atol=1e-12)
    torch.testing.assert_close(out_b.joints, out_a.joints * x_flip, rtol=0, atol=1e-12)


def test_mirrored_faces_keep_outward_orientation(data):
    """Reflection reverses handedness, so faces are re-wound: the mirrored normal is the reflected normal."""
    def normals(v, f):
        return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])

    m = data.mirrored()
    np.testing.assert_allclose(normals(m.v_template, m.faces), normals(data.v_template, data.faces) * [-1, 1, 1], atol=1e-15)
    twice = m.mirrored()
    for f in HandModelData.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(twice, f), getattr(data, f), err_msg=f)
