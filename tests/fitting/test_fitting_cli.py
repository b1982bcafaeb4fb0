"""`interhandgen fit` round trip on a tiny case, and its user-facing errors."""

import json

import torch
from PIL import Image

from interhandgen.cli import main
from interhandgen.data.format import TwoHandSet
from interhandgen.fitting import FitSettings, Fitter, Observations, make_prior, save_observations, vectors_from_set
from interhandgen.fitting.synthetic import CameraSpec, exact_projection


def test_fit_cli_round_trip(tmp_path, make_vectors):
    module, mean, std = make_prior("none")
    fitter = Fitter(module, mean, std, settings=FitSettings(iterations=2))
    y = make_vectors(2, seed=8)
    joints = fitter.body.joints(y).detach()
    spec = CameraSpec(width=160, height=120, fx=150.0, fy=150.0)
    K = spec.intrinsics(2)
    conf = torch.ones(2, 2, 21)
    conf[1, 1] = 0.0  # frame 1: right hand not seen
    obs = Observations(keypoints_2d=exact_projection(joints, K), confidence_2d=conf, keypoints_3d=joints,
                       confidence_3d=conf, intrinsics=K, image_size=(spec.width, spec.height))
    path = save_observations(obs, tmp_path / "obs.json", joint_order="openpose")
    doc = json.loads(path.read_text())
    assert doc["frames"][1]["right"] is None and len(doc["frames"][0]["left"]["keypoints_2d"][0]) == 3
    out, png = tmp_path / "fit.npz", tmp_path / "overlay.png"
    code = main(["fit", "--observations", str(path), "--out", str(out), "--prior", "none", "--iterations", "60", "--penetration-weight", "0",
                 "--render", str(png), "--no-progress"])
    assert code == 0
    fitted = TwoHandSet.load(out)
    assert len(fitted) == 2
    frames = fitted.metadata["fit"]["frames"]
    assert len(frames["reprojection_px"]) == 2 and all(e < 5.0 for e in frames["reprojection_px"])
    assert len(frames["prior"]) == 2
    # The seen hands come back where they were observed (camera frame).
    got = vectors_from_set(fitted, fitter.models)
    j = fitter.body.joints(got)
    err = (j - joints).norm(dim=-1).mean(-1) * 1000.0
    assert err[0].max() < 15.0 and err[1, 0] < 15.0, err
    assert Image.open(png).size == (2 * spec.width, spec.height)


def test_fit_cli_reports_bad_observations(tmp_path, capsys):
    path = tmp_path / "obs.json"
    path.write_text(json.dumps({"joint_order": "openpose", "frames": [{"left": {"keypoints_3d": [[0, 0, 0.5, 1]] * 20}}]}))
    code = main(["fit", "--observations", str(path), "--out", str(tmp_path / "x.npz"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "frames[0].left.keypoints_3d" in err and "21" in err
    code = main(["fit", "--observations", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.npz")])
    assert code == 2 and "not found" in capsys.readouterr().err
