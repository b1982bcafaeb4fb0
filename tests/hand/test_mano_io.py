"""Tests of MANO file I/O: load_mano / read_mano_data / save_mano_pkl against smplx.MANO.

Two kinds of files: (a) plain-numpy MANO-format pickles written by save_mano_pkl (read by smplx too), and
(b) pickles in the style of the official Python 2 files: chumpy ``Ch`` objects (from a fake ``chumpy.ch`` module
that pickles its state the way chumpy does, removed from sys.modules before loading), a scipy sparse
J_regressor under its old module name, Python 2 byte strings (BINSTRING opcodes) and old numpy module names.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import pickletools
import struct
import sys
import types
import weakref

import numpy as np
import pytest
import scipy.sparse
import torch

from interhandgen.hand import HandModel, HandModelData, load_mano, read_mano_data, save_mano_pkl
from interhandgen.hand.mano_io import KINTREE_ROOT
from fixtures.hands import random_hand_data, random_inputs

smplx = pytest.importorskip("smplx")

ATOL = 1e-6  # metres


# ------------------------------------------------------------------------------------------ py2-style pickles
class _Py2StylePickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote: byte and text strings as BINSTRING, Python 2 / numpy 1 module names."""

    dispatch = dict(pickle._Pickler.dispatch)
    RENAMES = {
        "builtins": "__builtin__", "copyreg": "copy_reg",
        "numpy._core.multiarray": "numpy.core.multiarray", "numpy._core.numeric": "numpy.core.numeric",
        "scipy.sparse._csc": "scipy.sparse.csc", "scipy.sparse._csr": "scipy.sparse.csr",
    }

    def _save_py2_str(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj, name=None):
        module = self.RENAMES.get(obj.__module__, obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[type] = save_global
    dispatch[types.FunctionType] = save_global
    dispatch[types.BuiltinFunctionType] = save_global


def _py2_dumps(obj, protocol: int) -> bytes:
    import io

    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def _chumpy_state(obj) -> dict:
    # chumpy.ch.Ch.__getstate__: the instance dict without the unpicklable _parents and _cache.
    state = dict(obj.__dict__)
    del state["_parents"], state["_cache"]
    return state


@pytest.fixture
def fake_chumpy():
    """Install fake chumpy modules with chumpy's class names and state layout; removed before loading."""
    mods = {name: types.ModuleType(name) for name in ("chumpy", "chumpy.ch", "chumpy.reordering", "chumpy.ch_ops")}

    def make(module, name, dterms, terms=()):
        def __init__(self, **kw):
            d = self.__dict__
            d.update(_dirty_vars=set(), _itr=None, _parents=weakref.WeakKeyDictionary(), _depends_on_deps={})
            d.update(_cache={"r": None, "drs": weakref.WeakKeyDictionary()}, _make_dense=False, _make_sparse=False)
            d.update(kw)
            d["_dirty_vars"] = set(kw)

        cls = type(name, (object,), {"__init__": __init__, "__getstate__": _chumpy_state, "dterms": list(dterms), "terms": list(terms)})
        cls.__module__ = module
        setattr(mods[module], name, cls)
        return cls

    classes = {
        "Ch": make("chumpy.ch", "Ch", ["x"]),
        "Select": make("chumpy.reordering", "Select", ["a"], ["idxs", "preferred_shape"]),
        "Reshape": make("chumpy.reordering", "Reshape", ["a"], ["newshape"]),
        "transpose": make("chumpy.reordering", "transpose", ["a"], ["axes"]),
        "add": make("chumpy.ch_ops", "add", ["a", "b"]),
    }
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield types.SimpleNamespace(**classes)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _official_style_dict(data: HandModelData, ch) -> dict:
    """The key set and types of mano_v1_2's MANO_*.pkl: shapedirs as chumpy Ch, sparse J_regressor, extras."""
    kintree = np.stack([data.parents, np.arange(16)]).astype(np.int64)
    kintree[0, 0] = KINTREE_ROOT
    rng = np.random.default_rng(0)
    return {
        "hands_components": data.hands_components.copy(), "f": data.faces.astype(np.uint32),
        "J_regressor": scipy.sparse.csc_matrix(data.J_regressor), "kintree_table": kintree,
        "J": data.J_regressor @ data.v_template, "bs_style": "lbs", "weights": data.weights.copy(),
        "posedirs": data.posedirs.copy(), "hands_coeffs": rng.normal(size=(20, 45)), "bs_type": "lrotmin",
        "hands_mean": data.hands_mean.copy(), "v_template": data.v_template.copy(), "shapedirs": ch.Ch(x=data.shapedirs.copy()),
    }


def _write_py2_pickle(path, obj, protocol=2):
    blob = _py2_dumps(obj, protocol)
    path.write_bytes(blob)
    return blob


def _drop_fake_chumpy():
    for name in ("chumpy", "chumpy.ch", "chumpy.reordering", "chumpy.ch_ops"):
        sys.modules.pop(name, None)


# ------------------------------------------------------------------------------------------ smplx comparison
MODES = [  # (our use_pca, our num_pca_comps); smplx's switch-off at 45 PCA components is handled in _compare
    (False, 45),
    (True, 45),
    (True, 6),
    (True, 12),
]


def _compare_with_smplx(ours_path, smplx_path, data, tmp_seed=0, fix_left_shapedirs=False):
    for use_pca, ncomps in MODES:
        for flat in (False, True):
            ours = load_mano(ours_path, use_pca=use_pca, num_pca_comps=ncomps, flat_hand_mean=flat,
                             fix_left_shapedirs=fix_left_shapedirs)
            inp = random_inputs(6, ncomps, seed=tmp_seed + ncomps + int(flat), scale=0.4 if use_pca else 0.5)
            out = ours(**inp)
            if use_pca and ncomps == 45:
                # smplx.MANO turns PCA off at 45 components; PCA by definition: axis-angle = coeffs @ components.
                ref_model = smplx.MANO(str(smplx_path), use_pca=False, flat_hand_mean=flat, dtype=torch.float64,
                                       batch_size=6)
                ref_inp = {**inp, "hand_pose": inp["hand_pose"] @ torch.as_tensor(data.hands_components)}
            else:
                ref_model = smplx.MANO(str(smplx_path), use_pca=use_pca, num_pca_comps=ncomps, flat_hand_mean=flat,
                                       dtype=torch.float64, batch_size=6)
                ref_inp = inp
            assert ref_model.use_pca == (use_pca and ncomps != 45)
            ref = ref_model(**ref_inp)
            tag = f"use_pca={use_pca} num_pca_comps={ncomps} flat_hand_mean={flat} side={data.side}"
            assert (out.vertices - ref.vertices).abs().max().item() < ATOL, tag
            assert (out.joints[:, :16] - ref.joints).abs().max().item() < ATOL, tag
            tips = ref.vertices[:, torch.as_tensor(data.fingertip_ids)]
            assert (out.joints[:, 16:] - tips).abs().max().item() < ATOL, tag
            # The posed hand must actually differ from the rest pose, or the comparison would be vacuous.
            assert (out.vertices - out.vertices.mean(1, keepdim=True)).abs().max() > 0.01


@pytest.mark.parametrize("side", ["right", "left"])
def test_save_mano_pkl_matches_smplx(tmp_path, side):
    data = random_hand_data(seed=2 if side == "right" else 3, side=side)
    path = tmp_path / f"MANO_{side.upper()}.pkl"
    save_mano_pkl(data, path)
    _compare_with_smplx(path, path, data)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("protocol", [1, 2])
def test_official_style_chumpy_pickle_matches_smplx(tmp_path, fake_chumpy, side, protocol):
    data = random_hand_data(seed=4, side=side)
    official = tmp_path / "official" / f"MANO_{side.upper()}.pkl"
    official.parent.mkdir()
    blob = _write_py2_pickle(official, _official_style_dict(data, fake_chumpy), protocol)
    assert b"chumpy.ch\nCh\n" in blob and b"scipy.sparse.csc\ncsc_matrix\n" in blob and b"numpy.core.multiarray" in blob
    # Protocol 1 rebuilds objects with copy_reg._reconstructor, protocol 2 with NEWOBJ, as Python 2 did.
    opcodes = {op.name for op, _, _ in pickletools.genops(blob)}
    assert (b"copy_reg\n_reconstructor\n" in blob) == (protocol == 1) and ("NEWOBJ" in opcodes) == (protocol == 2)
    assert "BINUNICODE" not in opcodes and "SHORT_BINSTRING" in opcodes
    _drop_fake_chumpy()
    assert importlib.util.find_spec("chumpy") is None, "tests must run without chumpy installed"

    got = read_mano_data(official, fix_left_shapedirs=False)
    for f in HandModelData.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(got, f), getattr(data, f), err_msg=f)
    assert got.side == side and got.name == f"MANO_{side.upper()}"

    plain = tmp_path / "plain" / f"MANO_{side.upper()}.pkl"
    save_mano_pkl(data, plain)
    _compare_with_smplx(official, plain, data, fix_left_shapedirs=False)


def test_chumpy_fix_left_shapedirs(tmp_path, fake_chumpy):
    """MANO_LEFT.pkl carries the right hand's shapedirs; the fix makes equal betas give mirror-image hands."""
    right = random_hand_data(seed=5, side="right")
    left_buggy = right.mirrored()
    left_buggy.shapedirs = right.shapedirs.copy()  # the defect: x components not mirrored
    _write_py2_pickle(tmp_path / "MANO_RIGHT.pkl", _official_style_dict(right, fake_chumpy))
    _write_py2_pickle(tmp_path / "MANO_LEFT.pkl", _official_style_dict(left_buggy, fake_chumpy))
    _drop_fake_chumpy()

    betas = torch.randn(4, 10, dtype=torch.float64) * 2
    r = load_mano(tmp_path / "MANO_RIGHT.pkl", flat_hand_mean=True)(betas=betas).vertices
    l_fixed = load_mano(tmp_path / "MANO_LEFT.pkl", flat_hand_mean=True)(betas=betas).vertices
    l_raw = load_mano(tmp_path / "MANO_LEFT.pkl", flat_hand_mean=True, fix_left_shapedirs=False)(betas=betas).vertices
    mirror = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert (l_fixed - r * mirror).abs().max() < 1e-7
    assert (l_raw - r * mirror).abs().max() > 1e-3  # unfixed: visibly different hands

    fixed = read_mano_data(tmp_path / "MANO_LEFT.pkl")
    raw = read_mano_data(tmp_path / "MANO_LEFT.pkl", fix_left_shapedirs=False)
    np.testing.assert_array_equal(fixed.shapedirs[:, 0], -raw.shapedirs[:, 0])
    np.testing.assert_array_equal(fixed.shapedirs[:, 1:], raw.shapedirs[:, 1:])
    # Right models are never touched.
    np.testing.assert_array_equal(read_mano_data(tmp_path / "MANO_RIGHT.pkl").shapedirs, right.shapedirs)


def test_saved_left_model_is_not_fixed_twice(tmp_path):
    left = random_hand_data(seed=6, side="left")
    save_mano_pkl(left, tmp_path / "MANO_LEFT.pkl")
    np.testing.assert_array_equal(read_mano_data(tmp_path / "MANO_LEFT.pkl").shapedirs, left.shapedirs)
    save_mano_pkl(left, tmp_path / "orig" / "MANO_LEFT.pkl", left_shapedirs_fixed=False)
    flipped = read_mano_data(tmp_path / "orig" / "MANO_LEFT.pkl")
    np.testing.assert_array_equal(flipped.shapedirs, left.shapedirs * np.array([-1.0, 1.0, 1.0])[None, :, None])


def test_chumpy_derived_objects(tmp_path, fake_chumpy):
    data = random_hand_data(seed=7)
    ch = fake_chumpy
    raw = _official_style_dict(data, ch)
    flat = ch.Ch(x=data.posedirs.ravel().copy())
    raw["posedirs"] = ch.Select(a=flat, idxs=np.arange(flat.x.size), preferred_shape=data.posedirs.shape)
    raw["v_template"] = ch.Reshape(a=ch.Ch(x=data.v_template.ravel().copy()), newshape=(778, 3))
    raw["weights"] = ch.transpose(a=ch.Ch(x=data.weights.T.copy()), axes=None)
    _write_py2_pickle(tmp_path / "MANO_RIGHT.pkl", raw)
    raw["shapedirs"] = ch.add(a=ch.Ch(x=data.shapedirs), b=ch.Ch(x=np.zeros_like(data.shapedirs)))
    (tmp_path / "bad").mkdir()
    _write_py2_pickle(tmp_path / "bad" / "MANO_RIGHT.pkl", raw)
    _drop_fake_chumpy()
    got = read_mano_data(tmp_path / "MANO_RIGHT.pkl")
    for f in ("posedirs", "v_template", "weights"):
        np.testing.assert_array_equal(getattr(got, f), getattr(data, f), err_msg=f)
    with pytest.raises(ValueError, match=r"'shapedirs'.*chumpy\.ch_ops\.add"):
        read_mano_data(tmp_path / "bad" / "MANO_RIGHT.pkl")


def test_refuses_code_in_pickle(tmp_path):
    marker = tmp_path / "created_by_pickle"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(ValueError, match=r"MANO_RIGHT\.pkl.*not allowed"):
        read_mano_data(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ other formats
def test_npz_model_files(tmp_path):
    data = random_hand_data(seed=8, side="left")
    data.save_npz(tmp_path / "hand_left.npz")
    model = load_mano(tmp_path / "hand_left.npz", use_pca=False)
    assert isinstance(model, HandModel) and model.side == "left"
    inp = random_inputs(3, 45, seed=1)
    torch.testing.assert_close(model(**inp).vertices, HandModel(data, use_pca=False)(**inp).vertices, rtol=0, atol=0)
    with pytest.raises(ValueError, match="conflicting"):
        read_mano_data(tmp_path / "hand_left.npz", side="right")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        read_mano_data(tmp_path / "junk.npz")


def test_open_hand_through_mano_pickle_matches_smplx(tmp_path):
    if importlib.util.find_spec("interhandgen.hand.open_hand") is None:
        pytest.skip("interhandgen.hand.open_hand is not in this checkout")
    module = importlib.import_module("interhandgen.hand.open_hand")
    for side in ("right", "left"):
        hand = module.open_hand(side)
        data = hand.data if isinstance(hand, HandModel) else hand
        assert isinstance(data, HandModelData) and data.side == side
        path = tmp_path / side / f"MANO_{side.upper()}.pkl"
        save_mano_pkl(hand, path)
        _compare_with_smplx(path, path, data)


# ------------------------------------------------------------------------------------------ save_mano_pkl
def test_save_mano_pkl_layout_and_atomicity(tmp_path):
    data = random_hand_data(seed=9)
    path = tmp_path / "out" / "MANO_RIGHT.pkl"
    save_mano_pkl(HandModel(data), path)
    save_mano_pkl(data, path)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["MANO_RIGHT.pkl"]  # no temp files left
    with open(path, "rb") as fh:
        raw = pickle.load(fh, encoding="latin1")  # what smplx does: a plain pickle, no chumpy needed
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f",
                "hands_components", "hands_mean"):
        assert key in raw, key
    assert scipy.sparse.issparse(raw["J_regressor"]) and raw["J_regressor"].nnz == np.count_nonzero(data.J_regressor)
    assert raw["kintree_table"][0, 0] == 4294967295 and raw["kintree_table"][0, 1:].tolist() == data.parents[1:].tolist()
    assert raw["f"].dtype == np.uint32
    np.testing.assert_allclose(raw["J"], data.J_regressor @ data.v_template)
    with pytest.raises(TypeError, match="model_or_data"):
        save_mano_pkl({"v_template": data.v_template}, tmp_path / "x.pkl")


# ------------------------------------------------------------------------------------------ errors
def test_missing_file_says_where_to_get_mano(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"mano\.is\.tue\.mpg\.de.*Models & Code.*mano_v1_2.*--mano"):
        load_mano(tmp_path / "MANO_RIGHT.pkl")
    with pytest.raises(FileNotFoundError, match="directory"):
        read_mano_data(tmp_path)


def _saved_bytes(data) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        save_mano_pkl(data, Path(d) / "m.pkl")
        return (Path(d) / "m.pkl").read_bytes()


def test_malformed_files_name_file_and_key(tmp_path):
    data = random_hand_data(seed=10)
    raw = pickle.loads(_saved_bytes(data))

    def write(name, obj):
        p = tmp_path / name
        p.write_bytes(pickle.dumps(obj))
        return p

    (tmp_path / "MANO_RIGHT.pkl").write_text("this is not a pickle")
    with pytest.raises(ValueError, match=r"MANO_RIGHT\.pkl"):
        read_mano_data(tmp_path / "MANO_RIGHT.pkl")
    with pytest.raises(ValueError, match=r"list\.pkl.*dict"):
        read_mano_data(write("list.pkl", [1, 2]), side="right")
    with pytest.raises(ValueError, match=r"nokey_right\.pkl.*missing key 'posedirs'"):
        read_mano_data(write("nokey_right.pkl", {k: v for k, v in raw.items() if k != "posedirs"}))
    with pytest.raises(ValueError, match=r"shape_right\.pkl.*'posedirs'.*\[778, 3, 135\]"):
        read_mano_data(write("shape_right.pkl", {**raw, "posedirs": raw["posedirs"][:, :, :100]}))
    with pytest.raises(ValueError, match=r"'J_regressor'"):
        read_mano_data(write("jreg_right.pkl", {**raw, "J_regressor": raw["J_regressor"][:15]}))
    with pytest.raises(ValueError, match=r"'kintree_table'"):
        read_mano_data(write("kin_right.pkl", {**raw, "kintree_table": raw["kintree_table"][:, ::-1]}))
    with pytest.raises(ValueError, match=r"'hands_mean'"):
        read_mano_data(write("mean_right.pkl", {**raw, "hands_mean": np.full(45, np.nan)}))
    with pytest.raises(ValueError, match=r"'v_template'.*numeric"):
        read_mano_data(write("str_right.pkl", {**raw, "v_template": "abc"}))


def test_side_resolution(tmp_path):
    data = random_hand_data(seed=11)
    raw = pickle.loads(_saved_bytes(data))
    del raw["side"]

    def write(name, obj=raw):
        p = tmp_path / name
        p.write_bytes(pickle.dumps(obj))
        return p

    assert read_mano_data(write("MANO_RIGHT.pkl")).side == "right"
    assert read_mano_data(write("MANO_LEFT.pkl")).side == "left"
    assert read_mano_data(write("model.pkl"), side="left").side == "left"
    with pytest.raises(ValueError, match=r"MANO_RIGHT\.pkl.*conflicting.*file name says 'right'.*argument says 'left'"):
        read_mano_data(tmp_path / "MANO_RIGHT.pkl", side="left")
    with pytest.raises(ValueError, match=r"model\.pkl.*neither RIGHT nor LEFT.*side="):
        read_mano_data(tmp_path / "model.pkl")
    with pytest.raises(ValueError, match=r"both RIGHT and LEFT"):
        read_mano_data(write("right_to_left.pkl"))
    with pytest.raises(ValueError, match=r"conflicting.*'side' entry says 'right'"):
        read_mano_data(write("MANO_LEFT_copy.pkl", {**raw, "side": "right"}))
    with pytest.raises(ValueError, match="side must be"):
        read_mano_data(tmp_path / "model.pkl", side="Right")


def test_fingertip_ids_needed_for_non_mano_meshes(tmp_path):
    small = random_hand_data(seed=12, num_verts=300)
    raw = pickle.loads(_saved_bytes(small))
    assert read_mano_data(_dump(tmp_path / "with_ids_right.pkl", raw)).fingertip_ids.tolist() == small.fingertip_ids.tolist()
    del raw["fingertip_ids"]
    with pytest.raises(ValueError, match=r"300 vertices.*fingertip_ids"):
        read_mano_data(_dump(tmp_path / "no_ids_right.pkl", raw))
    # 778-vertex files without ids get the documented MANO fingertip vertices.
    mano_like = pickle.loads(_saved_bytes(random_hand_data(seed=13)))
    del mano_like["fingertip_ids"]
    from interhandgen.hand import MANO_FINGERTIP_VERTEX_IDS

    assert read_mano_data(_dump(tmp_path / "MANO_RIGHT.pkl", mano_like)).fingertip_ids.tolist() == MANO_FINGERTIP_VERTEX_IDS


def _dump(path, obj):
    path.write_bytes(pickle.dumps(obj))
    return path


def test_docs_example_runs(monkeypatch):
    """The example in docs/hand.md runs as written (on the open hand) and shows the mirror property."""
    import re
    from pathlib import Path

    if importlib.util.find_spec("interhandgen.hand.open_hand") is None:
        pytest.skip("interhandgen.hand.open_hand is not in this checkout")
    doc = Path(__file__).resolve().parents[2] / "docs" / "hand.md"
    example = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)[-1]
    monkeypatch.delenv("MANO", raising=False)
    scope: dict = {}
    exec(compile(example, str(doc), "exec"), scope)
    assert scope["out"].vertices.shape[-1] == 3
    assert (scope["out_l"].vertices - scope["out"].vertices * torch.tensor([-1.0, 1.0, 1.0])).abs().max() < 1e-6
    assert torch.isfinite(scope["transl"].grad).all()
