"""Reading and writing MANO model files without chumpy.

Three file kinds are read:

- the official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` of mano_v1_2 (https://mano.is.tue.mpg.de, "Models & Code").
  They were pickled under Python 2 and hold chumpy ``Ch`` objects (e.g. ``shapedirs``) and a scipy sparse
  ``J_regressor``. They are opened with a restricted unpickler: chumpy classes become inert stand-ins whose
  pickled state yields the numpy value, scipy sparse matrices are rebuilt from their index arrays, and any other
  global (code) in the file is refused, so loading a model file never runs code from it;
- plain-numpy MANO-format pickles, the layout ``smplx.MANO`` reads (keys ``v_template``, ``shapedirs``,
  ``posedirs``, ``J_regressor`` sparse or dense, ``weights``, ``kintree_table``, ``f``, ``hands_components``,
  ``hands_mean``), as written by :func:`save_mano_pkl`;
- our own ``.npz`` files (:meth:`HandModelData.save_npz`).

How chumpy pickles (chumpy/ch.py, ``Ch.__getstate__``): an object is rebuilt by ``cls.__new__(cls)`` (protocol 2)
or ``copy_reg._reconstructor(cls, object, None)`` (protocols 0/1) and then receives its ``__dict__`` minus the
unpicklable ``_parents`` and ``_cache`` entries. For a plain ``Ch`` the value is the ``x`` entry of that dict;
for derived objects the entries are their terms (``Select``: ``a``, ``idxs``, ``preferred_shape``; ``Reshape``:
``a``, ``newshape``; ``transpose``: ``a``, ``axes``), which are evaluated here. Any other chumpy class is
refused with an error naming the key and the class.

The MANO left-hand shapedirs quirk: in ``MANO_LEFT.pkl`` the x-components of the shape blend shapes have the
sign of the RIGHT hand, although the left template is the mirror image of the right one, so equal ``betas`` give
left and right hands of different shape. The widely used fix negates them (``shapedirs[:, 0, :] *= -1``), see
https://github.com/vchoutas/smplx/issues/48, https://github.com/facebookresearch/InterHand2.6M/issues/138 and
https://github.com/NVlabs/dex-ycb-toolkit/issues/28. ``fix_left_shapedirs=True`` (default) applies it to left
models read from pickles. Files written by :func:`save_mano_pkl` record whether their left shapedirs are
already fixed (key ``left_shapedirs_fixed``), so saving and re-loading never flips twice.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from interhandgen.hand.joints import MANO_FINGERTIP_VERTEX_IDS
from interhandgen._atomic import atomic_write_bytes as _atomic_write_bytes
from interhandgen.hand.model_data import NUM_JOINTS, NUM_POSE_FEATURES, HandModelData
from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.hand.layer import HandModel

__all__ = ["read_mano_data", "load_mano", "save_mano_pkl", "MANO_DOWNLOAD_HINT"]

MANO_DOWNLOAD_HINT = (
    "MANO is not distributed with interhandgen. Register at https://mano.is.tue.mpg.de, download "
    "'Models & Code' (mano_v1_2), unpack it and pass the path of mano_v1_2/models/MANO_RIGHT.pkl or "
    "MANO_LEFT.pkl to load_mano(...) or to the command line option --mano. The bundled open hand "
    "(interhandgen.hand.open_hand) needs no download."
)

# The root entry of MANO's kintree_table: -1 stored as an unsigned 32-bit integer.
KINTREE_ROOT = 4294967295
NUM_MANO_VERTS = 778
REQUIRED_PICKLE_KEYS = (
    "v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f",
    "hands_components", "hands_mean",
)


# ----------------------------------------------------------------------------------------------- unpickling
class _ChumpyStandIn:
    """Inert replacement for a pickled chumpy object: it only keeps the pickled state (a dict of terms)."""

    chumpy_class = "chumpy.ch.Ch"

    def __new__(cls, *args, **kwargs):  # protocol 2 calls cls.__new__(cls)
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slot state)
            state = state[0]
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.chumpy_class}: expected a dict as pickled state, got {type(state).__name__}")
        self.state = state


class _SparseStandIn:
    """Replacement for a pickled scipy.sparse matrix of any scipy version: keeps the state, rebuilt later."""

    sparse_class = "scipy.sparse.csc_matrix"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0]
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.sparse_class}: expected a dict as pickled state, got {type(state).__name__}")
        self.state = state


_stand_in_cache: dict[tuple[str, str], type] = {}


def _stand_in(base: type, qualified: str) -> type:
    key = (base.__name__, qualified)
    if key not in _stand_in_cache:
        attr = "chumpy_class" if base is _ChumpyStandIn else "sparse_class"
        _stand_in_cache[key] = type(qualified.rsplit(".", 1)[-1], (base,), {attr: qualified})
    return _stand_in_cache[key]


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    """copy_reg._reconstructor restricted to our stand-ins (protocol 0/1 pickles of new-style objects)."""
    if not (isinstance(cls, type) and issubclass(cls, (_ChumpyStandIn, _SparseStandIn)) and base is object and state is None):
        raise pickle.UnpicklingError(f"refusing copy_reg._reconstructor({cls!r}, {base!r}, ...)")
    return object.__new__(cls)


def _numpy_core_module(module: str) -> str:
    """Map numpy.core.* (numpy 1.x, Python 2 files) and numpy._core.* (numpy 2.x) to the running numpy's name."""
    has_private_core = hasattr(np, "_core")
    if module.startswith("numpy.core") and has_private_core:
        return "numpy._core" + module[len("numpy.core"):]
    if module.startswith("numpy._core") and not has_private_core:
        return "numpy.core" + module[len("numpy._core"):]
    return module


_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "object"),
    ("builtins", "list"), ("builtins", "tuple"), ("builtins", "dict"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"), ("__builtin__", "object"),
    ("__builtin__", "list"), ("__builtin__", "tuple"), ("__builtin__", "dict"),
}
_SPARSE_CLASS = re.compile(r"^scipy\.sparse(\.[_a-z]+)*$")
_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}


class _MANOUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy arrays, a few builtins, scipy sparse matrices and chumpy objects."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("chumpy"):
            return _stand_in(_ChumpyStandIn, f"{module}.{name}")
        if _SPARSE_CLASS.match(module) and name in _SPARSE_NAMES:
            return _stand_in(_SparseStandIn, f"{module}.{name}")
        if (module, name) in {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}:
            return _safe_reconstructor
        canonical = module.replace("numpy._core", "numpy.core")
        if (canonical, name) in _ALLOWED_GLOBALS:
            return super().find_class(_numpy_core_module(module), name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a MANO model file")


def _as_array(value: Any, key: str, path: Path) -> Any:
    """Turn a loaded value (ndarray, chumpy stand-in, sparse stand-in or scipy sparse) into numpy / scipy data."""
    if isinstance(value, _ChumpyStandIn):
        return _evaluate_chumpy(value, key, path)
    if isinstance(value, _SparseStandIn):
        return _rebuild_sparse(value, key, path)
    return value


def _evaluate_chumpy(obj: _ChumpyStandIn, key: str, path: Path) -> np.ndarray:
    cls = obj.chumpy_class.rsplit(".", 1)[-1]
    state = getattr(obj, "state", None)
    if state is None:
        raise InputError(f"{path}: key '{key}' holds a chumpy {obj.chumpy_class} without pickled state")

    def term(name: str) -> Any:
        if name not in state:
            raise InputError(f"{path}: key '{key}': chumpy {obj.chumpy_class} lacks its term '{name}'")
        return state[name]

    def value_of(x: Any) -> np.ndarray:
        x = _as_array(x, key, path)
        if scipy.sparse.issparse(x):
            x = x.toarray()
        return np.asarray(x, dtype=np.float64)

    if cls == "Ch":
        return value_of(term("x"))
    if cls == "Select":
        picked = value_of(term("a")).ravel()[np.asarray(term("idxs"))]
        return picked.reshape(state["preferred_shape"]) if "preferred_shape" in state else picked
    if cls == "Reshape":
        return value_of(term("a")).reshape(term("newshape"))
    if cls == "transpose":
        return np.ascontiguousarray(np.transpose(value_of(term("a")), axes=state.get("axes")))
    raise InputError(
        f"{path}: key '{key}' holds a chumpy {obj.chumpy_class} object, a derived expression that cannot be "
        "evaluated without chumpy (supported: Ch, Select, Reshape, transpose). Convert the file with chumpy "
        "installed (replace the value by its .r) or use the official mano_v1_2 files."
    )


def _rebuild_sparse(obj: _SparseStandIn, key: str, path: Path) -> scipy.sparse.spmatrix:
    state = getattr(obj, "state", {})
    kind = obj.sparse_class.rsplit(".", 1)[-1][:3]
    shape = state.get("_shape", state.get("shape"))
    try:
        shape = tuple(int(s) for s in shape)
        if kind in ("csc", "csr"):
            arrays = (np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"]))
            build = scipy.sparse.csc_matrix if kind == "csc" else scipy.sparse.csr_matrix
            return build(arrays, shape=shape)
        coords = state.get("coords") or (state["row"], state["col"])
        return scipy.sparse.coo_matrix((np.asarray(state["data"]), tuple(np.asarray(c) for c in coords)), shape=shape)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: key '{key}' holds a malformed {obj.sparse_class}: {exc!r}") from None


def _unpickle(path: Path) -> dict:
    payload = path.read_bytes()
    try:
        obj = _MANOUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path}: not a loadable MANO pickle: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a MANO model pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: a MANO model pickle holds a dict, got {type(obj).__name__}")
    return obj


# ----------------------------------------------------------------------------------------------- validation
def _side_from_name(path: Path) -> str | None | tuple[str, str]:
    """'right' / 'left' from a RIGHT or LEFT word in the file name, None if neither, a tuple if both."""
    words = set(re.split(r"[^a-z]+", path.stem.lower()))
    found = [s for s in ("right", "left") if s in words]
    return found[0] if len(found) == 1 else (tuple(found) if found else None)


def _resolve_side(path: Path, side_arg: str | None, side_in_file: str | None) -> str:
    if side_arg is not None and side_arg not in ("right", "left"):
        raise InputError(f"side must be 'right', 'left' or None, got {side_arg!r}")
    from_name = _side_from_name(path)
    sources = {}
    if isinstance(from_name, str):
        sources["the file name"] = from_name
    if side_in_file is not None:
        sources["the file's 'side' entry"] = side_in_file
    if side_arg is not None:
        sources["the side argument"] = side_arg
    if len(set(sources.values())) > 1:
        detail = ", ".join(f"{k} says {v!r}" for k, v in sources.items())
        raise InputError(f"{path}: conflicting hand side: {detail}")
    if not sources:
        why = "its name contains both RIGHT and LEFT" if isinstance(from_name, tuple) else "its name contains neither RIGHT nor LEFT"
        raise InputError(f"{path}: cannot tell the hand side ({why}); pass side='right' or side='left'")
    return next(iter(sources.values()))


def _array(raw: dict, key: str, path: Path, ndim: int, dtype=np.float64) -> np.ndarray:
    if key not in raw:
        raise InputError(f"{path}: missing key '{key}'; a MANO model pickle needs {list(REQUIRED_PICKLE_KEYS)}")
    value = _as_array(raw[key], key, path)
    if scipy.sparse.issparse(value):
        value = value.toarray()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: key '{key}' is not a numeric array ({exc})") from None
    if arr.ndim != ndim:
        raise InputError(f"{path}: key '{key}' must have {ndim} dimensions, got shape {list(arr.shape)}")
    return arr


def _expect_shape(arr: np.ndarray, want: tuple, key: str, path: Path) -> None:
    if arr.shape != want:
        raise InputError(f"{path}: key '{key}' must have shape {list(want)}, got {list(arr.shape)}")


def _parse_pickle(raw: dict, path: Path, side_arg: str | None, fix_left_shapedirs: bool) -> HandModelData:
    v_template = _array(raw, "v_template", path, 2)
    V = v_template.shape[0]
    _expect_shape(v_template, (V, 3), "v_template", path)
    shapedirs = _array(raw, "shapedirs", path, 3)
    _expect_shape(shapedirs, (V, 3, shapedirs.shape[2]), "shapedirs", path)
    posedirs = _array(raw, "posedirs", path, 3)
    _expect_shape(posedirs, (V, 3, NUM_POSE_FEATURES), "posedirs", path)
    J_regressor = _array(raw, "J_regressor", path, 2)
    _expect_shape(J_regressor, (NUM_JOINTS, V), "J_regressor", path)
    weights = _array(raw, "weights", path, 2)
    _expect_shape(weights, (V, NUM_JOINTS), "weights", path)
    faces = _array(raw, "f", path, 2, dtype=np.int64)
    _expect_shape(faces, (faces.shape[0], 3), "f", path)
    hands_components = _array(raw, "hands_components", path, 2)
    _expect_shape(hands_components, (45, 45), "hands_components", path)
    hands_mean = _array(raw, "hands_mean", path, 1)
    _expect_shape(hands_mean, (45,), "hands_mean", path)
    kintree = _array(raw, "kintree_table", path, 2, dtype=np.int64)
    _expect_shape(kintree, (2, NUM_JOINTS), "kintree_table", path)
    if not np.array_equal(kintree[1], np.arange(NUM_JOINTS)):
        raise InputError(f"{path}: key 'kintree_table' row 1 must list the joints 0..15 in order, got {kintree[1].tolist()}")
    parents = kintree[0].copy()
    parents[0] = -1  # stored as 4294967295 (uint32 -1) in MANO files

    if "fingertip_ids" in raw:
        fingertip_ids = _array(raw, "fingertip_ids", path, 1, dtype=np.int64)
        _expect_shape(fingertip_ids, (5,), "fingertip_ids", path)
    elif V == NUM_MANO_VERTS:
        fingertip_ids = np.asarray(MANO_FINGERTIP_VERTEX_IDS, dtype=np.int64)
    else:
        raise InputError(
            f"{path}: the mesh has {V} vertices, not MANO's {NUM_MANO_VERTS}, and the file has no 'fingertip_ids' "
            "entry, so the fingertip vertices are unknown"
        )

    side_in_file = raw.get("side")
    if side_in_file is not None and side_in_file not in ("right", "left"):
        raise InputError(f"{path}: key 'side' must be 'right' or 'left', got {side_in_file!r}")
    side = _resolve_side(path, side_arg, side_in_file)
    already_fixed = bool(raw.get("left_shapedirs_fixed", False))
    if fix_left_shapedirs and side == "left" and not already_fixed:
        shapedirs = shapedirs.copy()
        shapedirs[:, 0, :] *= -1.0
    name = raw.get("name")
    name = name if isinstance(name, str) else path.stem
    try:
        return HandModelData(
            v_template=v_template, shapedirs=shapedirs, posedirs=posedirs, J_regressor=J_regressor,
            weights=weights, parents=parents, faces=faces, hands_components=hands_components,
            hands_mean=hands_mean, fingertip_ids=fingertip_ids, side=side, name=name,
        )
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------------------------- public API
def read_mano_data(
    path: str | os.PathLike, side: str | None = None, fix_left_shapedirs: bool = True
) -> HandModelData:
    """Read a MANO model file (official mano_v1_2 pickle, plain-numpy MANO pickle, or our .npz).

    Args:
        path: the file. The hand side is taken from a RIGHT / LEFT word in its name (MANO_RIGHT.pkl,
            MANO_LEFT.pkl), from a ``side`` entry in the file, or from ``side``; all given must agree.
        side: 'right', 'left' or None.
        fix_left_shapedirs: negate the x-components of the left model's shape blend shapes (the known MANO left
            shapedirs bug, see the module docstring). Only applied to left-hand pickles that do not record that
            the fix is already in (``left_shapedirs_fixed``); never to .npz files, which always hold consistent
            data. Use False to reproduce smplx.MANO / manopth exactly.
    Returns:
        HandModelData in metres; fingertip_ids from the file if it has them, else MANO_FINGERTIP_VERTEX_IDS
        for 778-vertex meshes.
    Raises:
        FileNotFoundError: no such file (the message says where to get MANO).
        ValueError: not a model file, missing key, wrong shape, or undecidable / conflicting side.
    """
    path = Path(path)
    if not path.is_file():
        where = "is a directory, expected the model file itself" if path.is_dir() else "does not exist"
        raise MissingFileError(f"MANO model file {path} {where}. {MANO_DOWNLOAD_HINT}")
    if path.suffix.lower() == ".npz":
        try:
            data = HandModelData.load_npz(path)
        except (OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            if str(exc).startswith(str(path)):
                raise
            raise InputError(f"{path}: not a hand model .npz ({type(exc).__name__}: {exc})") from None
        _resolve_side(path, side, data.side)
        return data
    return _parse_pickle(_unpickle(path), path, side, fix_left_shapedirs)


def load_mano(
    path: str | os.PathLike,
    side: str | None = None,
    use_pca: bool = True,
    num_pca_comps: int = 45,
    flat_hand_mean: bool = False,
    fix_left_shapedirs: bool = True,
):
    """Load a MANO model file as a :class:`~interhandgen.hand.HandModel` (see :func:`read_mano_data`).

    Unlike smplx.MANO, ``use_pca=True`` with ``num_pca_comps=45`` stays in PCA mode (``hand_pose`` holds 45 PCA
    coefficients); smplx silently switches to axis-angle in that case.
    """

    data = read_mano_data(path, side=side, fix_left_shapedirs=fix_left_shapedirs)
    return HandModel(data, use_pca=use_pca, num_pca_comps=num_pca_comps, flat_hand_mean=flat_hand_mean)


def save_mano_pkl(model_or_data, path: str | os.PathLike, *, left_shapedirs_fixed: bool = True) -> None:
    """Write a MANO-format pickle that smplx.MANO and :func:`load_mano` read (atomic write).

    Keys: v_template, shapedirs, posedirs, J_regressor (scipy CSC), weights, kintree_table (root 4294967295),
    f (uint32), hands_components, hands_mean, J (rest joints), bs_style 'lbs', bs_type 'lrotmin', as in the
    official files, plus fingertip_ids, side, name and left_shapedirs_fixed, which smplx ignores.
    Arrays are plain numpy float64; nothing needs chumpy. smplx picks the side from RIGHT / LEFT in the file
    name, so name the file MANO_RIGHT.pkl / MANO_LEFT.pkl for smplx.

    Args:
        model_or_data: HandModelData or HandModel (its ``data``).
        path: output file.
        left_shapedirs_fixed: for a left model, whether its shapedirs are already consistent with the right
            hand (True for data from load_mano / read_mano_data with the default fix, and for mirrored right
            models); recorded so that load_mano does not apply the fix again. Pass False for left data holding
            the original MANO shapedirs (read with fix_left_shapedirs=False).
    """
    data = getattr(model_or_data, "data", model_or_data)
    if not isinstance(data, HandModelData):
        raise TypeError(f"model_or_data must be a HandModelData or HandModel, got {type(model_or_data).__name__}")
    data.validate()
    kintree = np.stack([data.parents, np.arange(NUM_JOINTS)]).astype(np.int64)
    kintree[0, 0] = KINTREE_ROOT
    payload = {
        "v_template": data.v_template.copy(),
        "shapedirs": data.shapedirs.copy(),
        "posedirs": data.posedirs.copy(),
        "J_regressor": scipy.sparse.csc_matrix(data.J_regressor),
        "weights": data.weights.copy(),
        "kintree_table": kintree,
        "f": data.faces.astype(np.uint32),
        "hands_components": data.hands_components.copy(),
        "hands_mean": data.hands_mean.copy(),
        "J": data.J_regressor @ data.v_template,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "fingertip_ids": data.fingertip_ids.copy(),
        "side": data.side,
        "name": data.name,
        "left_shapedirs_fixed": bool(left_shapedirs_fixed) if data.side == "left" else False,
    }
    _atomic_write_bytes(Path(path), pickle.dumps(payload, protocol=4))
