"""Object library fields of the TwoHandSet npz: round trip, old files unchanged, concatenation, validation."""

import hashlib
import json

import numpy as np
import pytest

from interhandgen.data.format import TwoHandSet, concatenate
from interhandgen.data.object_library import ObjectLibrary
from interhandgen.exceptions import InputError
from interhandgen.objects.library import sample_object


def _hands(n, rng):
    return {k: rng.normal(size=(n, w)).astype(np.float32) * 0.1
            for k, w in (("pose", 45), ("betas", 10), ("global_orient", 3), ("transl", 3))}


def _set(n=5, seed=0, names=("box_a", "mug_b")):
    rng = np.random.default_rng(seed)
    objs = [sample_object(f, rng) for f in ("box", "mug")]
    pose = np.zeros((n, 7))
    pose[:, 1:4] = rng.normal(size=(n, 3))
    pose[:, 4:] = rng.normal(size=(n, 3)) * 0.05
    return TwoHandSet(_hands(n, rng), _hands(n, rng), pose_space="pca", flat_hand_mean=False,
                      object_id=rng.integers(0, 2, n), object_names=list(names), object_pose=pose,
                      object_library=ObjectLibrary.from_meshes(list(names), objs))


def test_round_trip_without_pickle(tmp_path):
    s = _set()
    path = s.save(tmp_path / "o.npz")
    with np.load(path, allow_pickle=False) as z:  # nothing pickled
        assert "object_library_vertices" in z.files
    t = TwoHandSet.load(path)
    lib, lib2 = s.object_library, t.object_library
    assert lib2.names == lib.names and lib2.families == lib.families and lib2.params == lib.params
    for i in range(len(lib)):
        assert np.array_equal(lib.vertices[i], lib2.vertices[i]) and np.array_equal(lib.faces[i], lib2.faces[i])
        assert len(lib.parts[i]) == len(lib2.parts[i])
        assert all(np.array_equal(a, b) for a, b in zip(lib.parts[i], lib2.parts[i]))
    assert json.loads(lib2.params[0])["size_x"] > 0
    np.testing.assert_array_equal(t.object_pose, s.object_pose)
    # re-saving gives the same bytes
    p2 = t.save(tmp_path / "o2.npz")
    assert path.read_bytes() == p2.read_bytes()


def test_old_files_without_objects_are_unchanged(tmp_path):
    rng = np.random.default_rng(1)
    s = TwoHandSet(_hands(4, rng), _hands(4, rng), pose_space="pca", flat_hand_mean=False,
                   category=[0, 1, 0, 1], category_names=["a", "b"])
    p1 = s.save(tmp_path / "a.npz")
    t = TwoHandSet.load(p1)
    assert t.object_library is None
    p2 = t.save(tmp_path / "b.npz")
    assert hashlib.sha256(p1.read_bytes()).digest() == hashlib.sha256(p2.read_bytes()).digest()
    with np.load(p1) as z:
        assert not [k for k in z.files if k.startswith("object_library")]


def test_indexing_and_concatenation_keep_the_library():
    s = _set(6)
    sub = s[[1, 3]]
    assert sub.object_library is s.object_library
    merged = concatenate([s, _set(3, seed=0)])
    assert len(merged) == 9 and merged.object_library.names == s.object_library.names
    clash = _set(3, seed=7)  # same names, other geometry
    with pytest.raises(ValueError, match="differs"):
        concatenate([s, clash])
    other = _set(3, seed=7, names=("c", "d"))
    m2 = concatenate([s, other])
    assert m2.object_library.names == ("box_a", "mug_b", "c", "d")
    np.testing.assert_array_equal(m2.object_id[6:], other.object_id + 2)


def test_validation():
    s = _set()
    with pytest.raises(ValueError, match="object_names"):
        TwoHandSet(s.left, s.right, pose_space="pca", flat_hand_mean=False, object_id=s.object_id,
                   object_names=["x", "y"], object_pose=s.object_pose, object_library=s.object_library)
    with pytest.raises(ValueError, match="object_pose"):
        TwoHandSet(s.left, s.right, pose_space="pca", flat_hand_mean=False, object_id=s.object_id,
                   object_names=list(s.object_names), object_library=s.object_library)
    lib = s.object_library
    with pytest.raises(InputError, match="faces of object"):
        ObjectLibrary(lib.names, lib.families, lib.params, lib.vertices, (lib.faces[0] + 1000, lib.faces[1]), lib.parts)


def test_corrupt_offsets_raise(tmp_path):
    s = _set()
    arrays = s.to_arrays()
    arrays["object_library_vertex_offsets"] = arrays["object_library_vertex_offsets"][::-1].copy()
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match="object_library_vertex_offsets"):
        TwoHandSet.load(tmp_path / "bad.npz")
