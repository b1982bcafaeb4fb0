

def test_jitter_objects_moves_only_the_objects_rigidly():
    from interhandgen.evaluation.bundled import OBJECT_JITTER_M, jitter_objects
    from interhandgen.objects.metrics import object_world_vertices

    s = object_set(40, seed=5)
    j = jitter_objects(s, 2, seed=0)
    assert len(j) == 120 and np.array_equal(j.object_pose[:40], s.object_pose)
    for side in ("left", "right"):
        assert np.array_equal(j.hand(side).transl, np.tile(s.hand(side).transl, (3, 1)))
    v = s.object_library.vertices[0]
    a = object_world_vertices(v, np.tile(s.object_pose, (3, 1)))[40:]
    b = object_world_vertices(v, j.object_pose)[40:]
    # a rigid motion: pairwise distances kept; the origin moved by the translation jitter
    np.testing.assert_allclose(np.linalg.norm(b[:, 0] - b[:, 1], axis=1), np.linalg.norm(a[:, 0] - a[:, 1], axis=1),
                               atol=1e-12)
    dt = j.object_pose[40:, 4:] - np.tile(s.object_pose, (2, 1))[:, 4:]
    assert 0.5 * OBJECT_JITTER_M < dt.std() < 1.5 * OBJECT_JITTER_M and not np.allclose(a, b)
    assert len(jitter_objects(s, 0)) == 40
