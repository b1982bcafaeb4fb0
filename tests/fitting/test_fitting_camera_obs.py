"""Pinhole projection against the brute-force matrix formula; joint orders; obs.json validation messages."""

import json

import numpy as np
import pytest
import torch

from interhandgen.exceptions import InputError
from interhandgen.fitting import Observations, from_mano21, load_observations, parse_observations, project, \
    save_observations, to_mano21
from interhandgen.fitting.camera import look_at
from interhandgen.hand import INTERHAND_FROM_MANO21, JOINT_NAMES_21, OPENPOSE_FROM_MANO21


def test_projection_matches_brute_force_pinhole():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(3, 7, 3, generator=g, dtype=torch.float64) * 0.2 + torch.tensor([0.0, 0.0, 0.6],
                                                                                       dtype=torch.float64)
    K = torch.tensor([[500.0, 520.0, 320.0, 240.0], [800.0, 790.0, 300.0, 200.0], [100.0, 100.0, 0.0, 0.0]],
                     dtype=torch.float64)
    got = project(pts, K)
    for b in range(3):
        fx, fy, cx, cy = K[b].tolist()
        M = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        for j in range(7):
            h = M @ pts[b, j].numpy()
            assert np.allclose(got[b, j].numpy(), h[:2] / h[2], rtol=1e-12, atol=1e-9)


def test_look_at_is_a_rotation_with_opencv_axes():
    eye = torch.tensor([[0.0, 0.0, -1.0]])
    R = look_at(eye, torch.zeros(1, 3), torch.tensor([[0.0, -1.0, 0.0]]))
    assert torch.allclose(R[0], torch.eye(3), atol=1e-6)  # world y down, z forward: camera = world axes
    g = torch.Generator().manual_seed(1)
    eye, up = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    R = look_at(eye, torch.zeros(5, 3), up)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.det(R), torch.ones(5), atol=1e-5)
    cam = (R @ (-eye)[..., None])[..., 0]  # the target is straight ahead
    assert torch.allclose(cam[:, :2], torch.zeros(5, 2), atol=1e-5) and (cam[:, 2] > 0).all()


@pytest.mark.parametrize("order,table", [("openpose", OPENPOSE_FROM_MANO21), ("interhand", INTERHAND_FROM_MANO21)])
def test_joint_orders_round_trip_and_name_the_right_joints(order, table):
    x = torch.arange(21 * 2, dtype=torch.float32).view(21, 2)
    assert torch.equal(to_mano21(from_mano21(x, order), order), x)
    names = np.array(JOINT_NAMES_21)[np.asarray(from_mano21(np.arange(21)[:, None], order))[:, 0]]
    assert list(names) == [JOINT_NAMES_21[i] for i in table]
    if order == "openpose":
        assert names[0] == "wrist" and names[4] == "thumb_tip" and names[9] == "middle_mcp"


def _doc():
    kp2 = lambda: [[100.0 + j, 200.0, 0.9] for j in range(21)]  # noqa: E731
    kp3 = [[0.01 * j, 0.0, 0.5, 1.0] for j in range(21)]
    return {"camera": {"fx": 600, "fy": 600, "cx": 320, "cy": 240, "width": 640, "height": 480},
            "joint_order": "openpose",
            "frames": [{"left": {"keypoints_2d": kp2(), "keypoints_3d": kp3}, "right": None},
                       {"left": None, "right": {"keypoints_2d": kp2()}}]}


def test_parse_and_write_round_trip(tmp_path):
    obs, order = parse_observations(_doc())
    assert order == "openpose" and len(obs) == 2
    assert obs.confidence_2d[0, 1].sum() == 0 and obs.confidence_2d[1, 0].sum() == 0
    # openpose joint 4 is the thumb tip = MANO21 joint 16
    assert obs.keypoints_2d[0, 0, 16, 0] == 104.0
    path = save_observations(obs, tmp_path / "obs.json", joint_order="interhand")
    again, order2 = load_observations(path)
    assert order2 == "interhand"
    for name in ("keypoints_2d", "confidence_2d", "keypoints_3d", "confidence_3d", "intrinsics"):
        assert torch.allclose(getattr(again, name), getattr(obs, name)), name


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["frames"][1]["right"]["keypoints_2d"].pop(), "frames[1].right.keypoints_2d: expected a list of 21"),
    (lambda d: d["frames"][0]["left"]["keypoints_2d"].__setitem__(3, [1.0, 2.0]), "frames[0].left.keypoints_2d[3]"),
    (lambda d: d["frames"][0]["left"]["keypoints_3d"].__setitem__(5, [0, 0, "a", 1]), "frames[0].left.keypoints_3d[5]"),
    (lambda d: d["frames"][1]["right"]["keypoints_2d"].__setitem__(2, [1.0, 2.0, -0.5]), "frames[1].right.keypoints_2d[2]: confidence"),
    (lambda d: d["frames"][1].__setitem__("middle", None), "frames[1]: unknown field"),
    (lambda d: d["frames"][0]["left"].__setitem__("kp", []), "frames[0].left: unknown field"),
    (lambda d: d["camera"].pop("fy"), "camera is missing ['fy']"),
    (lambda d: d["camera"].__setitem__("fx", 0), "camera.fx must be > 0"),
    (lambda d: d.__setitem__("joint_order", "coco"), "joint_order must be one of"),
    (lambda d: d.__setitem__("frames", []), "'frames' must be a non-empty list"),
    (lambda d: d["frames"][0].pop("right"), "frames[0]: missing 'right' (give null"),
    (lambda d: d["frames"][1].__setitem__("left", {}), "frames[1].left: holds neither keypoints_2d nor keypoints_3d"),
    (lambda d: d["frames"][1]["right"].__setitem__("keypoints_2d", None), "frames[1].right: holds neither"),
    (lambda d: d["frames"][1]["right"]["keypoints_2d"].__setitem__(4, [1.0, 2.0, 1.5]),
     "frames[1].right.keypoints_2d[4]: confidence must be in [0, 1]"),
    (lambda d: d["frames"][0]["left"]["keypoints_3d"].__setitem__(7, [0.0, 0.0, -0.2, 1.0]),
     "frames[0].left.keypoints_3d[7]: z must be > 0"),
])
def test_validation_errors_name_frame_and_field(mutate, needle, tmp_path):
    doc = _doc()
    mutate(doc)
    path = tmp_path / "obs.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError) as info:
        load_observations(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_unobserved_joints_may_lie_anywhere():
    """A joint with confidence 0 is not observed: its numbers (e.g. a detector's placeholder z = 0) are not checked."""
    doc = _doc()
    doc["frames"][0]["left"]["keypoints_3d"][7] = [0.0, 0.0, 0.0, 0.0]
    obs, _ = parse_observations(doc)
    assert obs.confidence_3d[0, 0].sum() == 20


def test_observations_reject_bad_shapes_and_missing_camera():
    with pytest.raises(InputError, match="keypoints_2d need"):
        Observations(keypoints_2d=torch.zeros(1, 2, 21, 2), confidence_2d=torch.ones(1, 2, 21))
    with pytest.raises(InputError, match=r"shape \[B, 2, 21, 3\]"):
        Observations(keypoints_3d=torch.zeros(1, 2, 20, 3), confidence_3d=torch.ones(1, 2, 20))
