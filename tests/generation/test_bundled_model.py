"""The bundled model ships with the package, matches its recorded hash and samples out of the box."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from interhandgen.generation import InterHandGen, bundled_model_path


def test_bundled_model_matches_its_sidecar():
    path = bundled_model_path()
    side = json.loads(path.with_suffix(".json").read_text())
    payload = path.read_bytes()
    assert hashlib.sha256(payload).hexdigest() == side["sha256"]
    assert len(payload) == side["bytes"] <= 20 * 1024 * 1024  # the size limit


def test_bundled_model_samples_finite_deterministic_pairs():
    torch.set_num_threads(1)
    gen = InterHandGen.load()
    a = gen.sample(6, seed=3)
    b = gen.sample(6, seed=3)
    for side in ("left", "right"):
        x, y = getattr(a, side), getattr(b, side)
        assert np.isfinite(x.transl).all() and np.isfinite(x.pose).all()
        np.testing.assert_array_equal(x.transl, y.transl)
        np.testing.assert_array_equal(x.pose, y.pose)
    # the hands of a sampled pair are near each other as in the training data (the no-contact category keeps them
    # 1-10 cm apart, the others touch): the model learnt interactions, not two independent hands
    verts = a.vertices(a.hand_models())
    gap = torch.cdist(verts["left"][:, ::10].double(), verts["right"][:, ::10].double()).amin(dim=(1, 2))
    assert (gap < 0.12).all() and (gap < 0.02).sum() >= 3, gap
