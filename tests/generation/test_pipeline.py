"""Cascaded sampling, completion and anti-penetration guidance, end to end on a tiny trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen.cli import main
from interhandgen.data.format import TwoHandSet
from interhandgen.data.canonical import canonical_vertices
from interhandgen.generation import surface_penetration_loss
from interhandgen.hand import CENTER_JOINT, open_hand
from interhandgen.generation import InterHandGen
from interhandgen.generation import SamplerSettings
from interhandgen.training import TrainConfig, train

TINY = {"preset": "small", "hidden_dim": 64, "embed_dim": 32, "num_layers": 3, "skips": [1], "num_heads": 2,
        "ff_dim": 64, "num_encoder_layers": 1}


def random_set(n: int, seed: int = 0) -> TwoHandSet:
    rng = np.random.default_rng(seed)

    def hand(x):
        return dict(pose=rng.normal(size=(n, 45)) * 0.3, betas=rng.normal(size=(n, 10)) * 0.5,
                    global_orient=rng.normal(size=(n, 3)) * 0.3, transl=np.array([x, 0, 0]) + rng.normal(size=(n, 3)) * 0.01)

    return TwoHandSet(hand(-0.06), hand(0.06), pose_space="pca", flat_hand_mean=False, hand_model="open_hand",
                      split=np.arange(n) % 3, split_names=["train", "validation", "test"])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 2, 64, generator=g)
    x[:, 0, 55:] = 0
    mean = torch.zeros(2, 64)
    mean[:, 55] = mean[:, 59] = 1.0  # raw canonical anchor rotation = identity
    std = torch.full((2, 64), 0.1)
    train(TINY, TrainConfig(epochs=1, batch_size=32, warmup_steps=1, seed=0), x, None, mean, std, out,
          progress=False)
    return out


def test_canonical_vertices_places_the_centre_joint_at_the_translation():
    model = open_hand("right")
    x = torch.zeros(3, 64, dtype=torch.float64)
    x[:, :45] = torch.randn(3, 45, dtype=torch.float64) * 0.3
    x[:, 55], x[:, 59] = 1.0, 1.0
    x[:, 61:] = torch.tensor([[0.1, 0.0, 0.0], [0.0, -0.02, 0.03], [0.0, 0.0, 0.0]], dtype=torch.float64)
    _, joints = canonical_vertices(x, model)
    assert torch.allclose(joints[:, CENTER_JOINT], x[:, 61:], atol=1e-6)


def test_sampling_is_deterministic_and_finite(run_dir):
    gen = InterHandGen.load(run_dir)
    s = SamplerSettings(steps=8, apg_weight=0.0)
    a = gen.sample(6, seed=3, settings=s, progress=False)
    b = gen.sample(6, seed=3, settings=s, progress=False)
    c = gen.sample(6, seed=4, settings=s, progress=False)
    assert np.array_equal(a.right.transl, b.right.transl) and np.array_equal(a.left.pose, b.left.pose)
    assert not np.array_equal(a.right.transl, c.right.transl)
    assert np.allclose(a.left.global_orient, 0.0)  # the anchor defines the frame


@pytest.mark.parametrize("side", ["left", "right"])
def test_complete_keeps_the_given_hand_exactly(run_dir, side):
    gen = InterHandGen.load(run_dir)
    given = random_set(5)
    done = gen.complete(given, side=side, settings=SamplerSettings(steps=6, apg_weight=0.0), progress=False)
    for field in ("pose", "betas", "global_orient", "transl"):
        assert np.array_equal(getattr(done.hand(side), field), getattr(given.hand(side), field))
    other = "right" if side == "left" else "left"
    assert not np.allclose(done.hand(other).transl, given.hand(other).transl)


def test_sampling_with_apg_is_deterministic_and_lowers_the_penalty(run_dir):
    """End to end: the same seed gives the same APG samples; APG changes only the partner, lowering its penalty."""
    gen = InterHandGen.load(run_dir)
    # Settling and resampling off: they remove most of the penetration with or without APG, which then leaves the
    # order of two near-zero penalties to chance.
    on = SamplerSettings(steps=6, apg_weight=1.5, apg_last_steps=3, settle_steps=0, resample_rounds=0)
    off = SamplerSettings(steps=6, apg_weight=0.0, settle_steps=0, resample_rounds=0)
    a = gen.sample_canonical(12, seed=2, settings=on, progress=False)
    b = gen.sample_canonical(12, seed=2, settings=on, progress=False)
    c = gen.sample_canonical(12, seed=2, settings=off, progress=False)
    assert torch.equal(a, b) and torch.equal(a[:, 0], c[:, 0])
    anchor, other = gen.surface_subsets(on.apg_points)

    def penalty(x):
        pa, na = anchor(x[:, 0])
        po, no = other(x[:, 1])
        return surface_penetration_loss(pa, na, po, no)

    with torch.no_grad():
        guided, free = penalty(a), penalty(c)
    assert free.sum() > 0 and guided.sum() < free.sum()


def test_cli_sample_and_complete(run_dir, tmp_path):
    out = tmp_path / "s.npz"
    assert main(["sample", "--num", "5", "--out", str(out), "--checkpoint", str(run_dir), "--steps", "5",
                 "--no-apg", "--no-progress", "--seed", "1"]) == 0
    s = TwoHandSet.load(out)
    assert len(s) == 5 and s.metadata["seed"] == 1
    done = tmp_path / "c.npz"
    assert main(["complete", "--given", str(out), "--side", "left", "--out", str(done), "--checkpoint",
                 str(run_dir), "--steps", "5", "--no-apg", "--no-progress"]) == 0
    assert np.array_equal(TwoHandSet.load(done).left.pose, s.left.pose)
    with pytest.raises(SystemExit) as exc:  # the parser checks counts (positive_int) and exits with status 2
        main(["sample", "--num", "0", "--out", str(out), "--checkpoint", str(run_dir)])
    assert exc.value.code == 2


def test_partner_stage_runs_one_forward_without_cfg_and_one_double_batch_with_it():
    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rows = []

        def forward(self, x, t, cond, mask):
            self.rows.append(x.shape[0])
            return torch.where(mask[:, None], 0.5 * x + cond, 0.5 * x)

    from interhandgen.diffusion import Schedule
    from interhandgen.generation import sample_partner

    net, sched = Recording(), Schedule.cosine(20)
    z, anchor = torch.randn(3, 64), torch.randn(3, 64)
    plain = sample_partner(net, anchor, z, sched, SamplerSettings(steps=4, eta=0.0, cfg_scale=0.0, apg_weight=0.0))
    assert net.rows == [3] * 4
    net.rows.clear()
    zero_scale_cfg = sample_partner(net, anchor, z, sched, SamplerSettings(steps=4, eta=0.0, cfg_scale=1e-30, apg_weight=0.0))
    assert net.rows == [6] * 4
    torch.testing.assert_close(plain, zero_scale_cfg)
