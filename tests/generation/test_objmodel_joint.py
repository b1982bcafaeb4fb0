"""The joint-diffusion baseline with an object (kind joint_object): its network's null object, its loss against a
closed form, and sampling with the object sampler's post-processing."""

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.data.canonical import HAND_DIM
from interhandgen.exceptions import InputError, ModelMismatchError
from interhandgen.generation.cascade import SamplerSettings
from interhandgen.generation.object_api import ObjectInterHandGen, user_object
from interhandgen.generation.object_sampling import ObjectSettings
from interhandgen.models import build_model
from interhandgen.models.artifact import export_model
from interhandgen.models.object_loss import joint_object_loss
from interhandgen.objects.library import FAMILIES, make_object
from interhandgen.objects.metrics import object_world_vertices

CONFIG = {"kind": "joint_object", "width": 48, "depth": 2, "time_dim": 16,
          "object_encoder": {"type": "pointnet", "width": 16, "num_points": 64}}


def test_null_object_rows_equal_the_object_free_forward_and_the_token_matters():
    torch.manual_seed(0)
    net = build_model(CONFIG).eval()
    x, t = torch.randn(4, 128), torch.tensor([0, 3, 7, 11])
    token = net.encode(torch.randn(4, 64, 6))
    with torch.no_grad():
        free = net(x, t)
        masked = net(x, t, object_token=token, object_mask=torch.tensor([False, True, False, True]))
        full = net(x, t, object_token=token)
    torch.testing.assert_close(masked[[0, 2]], free[[0, 2]])
    torch.testing.assert_close(masked[[1, 3]], full[[1, 3]])
    assert not torch.allclose(full, free, atol=1e-4)
    with pytest.raises(InputError, match="no hand condition"):
        net(x, t, torch.zeros(4, 128), torch.ones(4, dtype=torch.bool))


class _Zero(torch.nn.Module):
    """Predicts 0 for every number, so the loss is the mean square of the (augmented) targets."""

    def encode(self, points):
        return torch.zeros(points.shape[0], 8)

    def forward(self, x_t, t, object_token=None, object_mask=None):
        return torch.zeros_like(x_t)


def test_joint_object_loss_is_the_mean_square_error_over_the_weighted_numbers():
    from interhandgen.diffusion import Schedule
    from interhandgen.training.config import TrainConfig

    g = torch.Generator().manual_seed(0)
    batch, points = torch.randn(6, 2, HAND_DIM, generator=g), torch.randn(6, 32, 6, generator=g)
    stats = (torch.zeros(2, HAND_DIM), torch.ones(2, HAND_DIM))
    cfg = TrainConfig(num_timesteps=20)
    schedule = Schedule.cosine(20)
    total, a, o = joint_object_loss(_Zero(), batch, schedule, cfg, g, points=points, stats=stats,
                                    object_drop_prob=0.0, rotate_z=False)
    torch.testing.assert_close(total, (batch.reshape(6, 128) ** 2).mean())
    torch.testing.assert_close(a, (batch[:, 0] ** 2).mean())
    torch.testing.assert_close(o, (batch[:, 1] ** 2).mean())
    # every object dropped: the anchor's canonical slots carry no loss
    total, a, o = joint_object_loss(_Zero(), batch, schedule, cfg, g, points=points, stats=stats,
                                    object_drop_prob=1.0, rotate_z=False)
    k = cfg.anchor_loss_dims
    kept = torch.cat([batch[:, 0, :k], batch[:, 1]], 1)
    torch.testing.assert_close(total, (kept ** 2).mean())
    torch.testing.assert_close(a, (batch[:, 0, :k] ** 2).mean())


@pytest.fixture(scope="module")
def joint_file(tmp_path_factory):
    from interhandgen.diffusion import Schedule

    torch.manual_seed(0)
    net = build_model(CONFIG, Schedule.cosine(20))
    path = tmp_path_factory.mktemp("jointobj") / "j.safetensors"
    export_model(net.state_dict(), CONFIG, torch.zeros(2, 64), torch.ones(2, 64) * 0.5, path,
                 {"train_config": {"num_timesteps": 20, "schedule": "cosine"}}, conditioning=("hand", "object"),
                 objects={"num_points": 64, "orientations": {"box": [[0.0, 0.0, 0.0]]}})
    return path


def test_joint_object_model_samples_with_the_post_processing_only(tmp_path, joint_file):
    obj = make_object("box", FAMILIES["box"].sample(np.random.default_rng(0)))
    trimesh.Trimesh(obj.vertices + np.array([0.0, 0.0, 0.5]), obj.faces).export(tmp_path / "box.obj")
    scene = user_object(tmp_path / "box.obj")
    gen = ObjectInterHandGen.load(joint_file)
    settings = SamplerSettings(steps=4, resample_rounds=0, apg_weight=0.0)
    osets = ObjectSettings(object_guidance_weight=0.0)
    two = gen.sample(5, scene, seed=2, settings=settings, object_settings=osets, progress=False)
    again = gen.sample(5, scene, seed=2, settings=settings, object_settings=osets, progress=False)
    np.testing.assert_array_equal(two.left.transl, again.left.transl)
    np.testing.assert_array_equal(two.right.pose, again.right.pose)
    assert np.isfinite(two.left.pose).all() and np.isfinite(two.right.transl).all()
    world = object_world_vertices(two.object_library.vertices[0], two.object_pose[:1])[0]
    np.testing.assert_allclose(world.mean(0), (obj.vertices + np.array([0.0, 0.0, 0.5])).mean(0), atol=1e-9)
    with pytest.raises(InputError, match="joint object model"):
        gen.sample(2, scene, settings=settings, progress=False)  # the default in-loop guidance
    with pytest.raises(ModelMismatchError, match="cannot complete"):
        gen.complete(two, side="left", settings=settings, object_settings=osets, progress=False)


def test_the_joint_baseline_config_has_the_bundled_recipe_budget_and_size():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "configs"
    base = yaml.safe_load((root / "object_small.yaml").read_text())
    joint = yaml.safe_load((root / "baselines" / "object_joint.yaml").read_text())
    # equal budget: steps, rows, schedule, optimiser. The EMA warm-up aside: the baseline was measured against a
    # cascade retrained with it (the default then); the bundled recipe predates it (docs/results_object.md)
    assert joint["train"].pop("ema_warmup") is True and base["train"].pop("ema_warmup") is False
    assert joint["train"] == base["train"]
    for key in ("object_encoder", "object_drop_prob", "rotate_z"):
        assert joint["model"][key] == base["model"][key]
    sizes = [sum(p.numel() for p in build_model(doc["model"]).parameters()) for doc in (base, joint)]
    assert abs(sizes[1] - sizes[0]) < 0.01 * sizes[0]


def test_cli_samples_a_joint_object_model_with_and_without_an_object(tmp_path, joint_file):
    from interhandgen.cli import main
    from interhandgen.data.format import TwoHandSet

    assert main(["sample", "--checkpoint", str(joint_file), "--num", "3", "--out", str(tmp_path / "free.npz"),
                 "--steps", "3"]) == 0
    free = TwoHandSet.load(tmp_path / "free.npz")
    np.testing.assert_array_equal(free.left.global_orient, 0.0)  # no object: the left hand is the frame
    assert free.object_library is None
    assert main(["sample", "--checkpoint", str(joint_file), "--num", "3", "--out", str(tmp_path / "box.npz"),
                 "--steps", "3", "--object-family", "box", "--no-apg", "--object-guidance-weight", "0"]) == 0
    assert TwoHandSet.load(tmp_path / "box.npz").object_library is not None
    # the default in-loop guidance is refused with the settings to change
    assert main(["sample", "--checkpoint", str(joint_file), "--num", "3", "--out", str(tmp_path / "x.npz"),
                 "--steps", "3", "--object-family", "box"]) == 2
