"""`interhandgen fit` round trip on a tiny case, and its user-facing errors."""

import json

import numpy as np
import torch
from PIL import Image

from interhandgen.cli import main
from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.fitting import (FitSettings, Fitter, Observations, make_prior, save_observations, set_from_vectors,
                                  vectors_from_set)
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


def _perturbed(y: torch.Tensor, seed: int) -> torch.Tensor:
    """y with every hand moved by ~1 cm and its finger PCA coefficients noised (another method's estimate)."""
    g = torch.Generator().manual_seed(seed)
    out = y.clone()
    out[..., :45] += 0.3 * torch.randn(out[..., :45].shape, generator=g)
    out[..., 61:] += 0.01 * torch.randn(out[..., 61:].shape, generator=g)
    return out


def test_fit_cli_refines_an_initial_estimate(tmp_path, make_vectors):
    """--initial: alone, the fit keeps the estimate (its only data term is the estimate itself and the hands are
    apart); with 3D keypoints of the truth, the fit moves from the estimate towards the truth."""
    module, mean, std = make_prior("none")
    fitter = Fitter(module, mean, std, settings=FitSettings(iterations=2))
    truth = make_vectors(2, seed=3)
    guess = _perturbed(truth, seed=4)
    initial = tmp_path / "estimate.npz"
    set_from_vectors(guess, fitter.models, HandModelSpec.open_hand()).save(initial)
    j_truth, j_guess = fitter.body.joints(truth).detach(), fitter.body.joints(guess).detach()
    mm = lambda a, b: float((a - b).norm(dim=-1).mean()) * 1000.0  # noqa: E731
    assert mm(j_guess, j_truth) > 8.0  # the estimate is off by about a centimetre

    base = ["--prior", "none", "--iterations", "100", "--penetration-weight", "0", "--volume-weight", "0",
            "--no-progress"]
    alone = tmp_path / "alone.npz"
    assert main(["fit", "--initial", str(initial), "--out", str(alone)] + base) == 0
    j_alone = fitter.body.joints(vectors_from_set(TwoHandSet.load(alone), fitter.models))
    assert mm(j_alone, j_guess) < 1.0

    obs = Observations(keypoints_3d=j_truth, confidence_3d=torch.ones(2, 2, 21))
    path = save_observations(obs, tmp_path / "obs.json")
    both = tmp_path / "both.npz"
    assert main(["fit", "--observations", str(path), "--initial", str(initial), "--out", str(both)] + base) == 0
    j_both = fitter.body.joints(vectors_from_set(TwoHandSet.load(both), fitter.models))
    # The fit ends between the two: the estimate's term is quadratic, the 3D joints' robust (FitSettings.robust_3d),
    # so at ~3 cm of disagreement the estimate keeps the larger share (measured: 17 mm from the truth, 10 from it).
    d_truth, d_guess, gap = mm(j_both, j_truth), mm(j_both, j_guess), mm(j_guess, j_truth)
    assert d_truth < 0.8 * gap and d_guess < 0.8 * gap and d_truth + d_guess < 1.2 * gap, (d_truth, d_guess, gap)


def test_fit_cli_initial_and_render_errors(tmp_path, make_vectors, capsys):
    module, mean, std = make_prior("none")
    fitter = Fitter(module, mean, std, settings=FitSettings(iterations=2))
    initial = tmp_path / "estimate.npz"
    set_from_vectors(make_vectors(3, seed=5), fitter.models, HandModelSpec.open_hand()).save(initial)
    j = fitter.body.joints(make_vectors(2, seed=6)).detach()
    path = save_observations(Observations(keypoints_3d=j, confidence_3d=torch.ones(2, 2, 21)), tmp_path / "obs.json")
    out = tmp_path / "fit.npz"
    code = main(["fit", "--observations", str(path), "--initial", str(initial), "--out", str(out), "--no-progress"])
    assert code == 2 and "3 pairs, but the observations have 2 frames" in capsys.readouterr().err
    # --render without a camera fails before the fit: nothing is written
    code = main(["fit", "--observations", str(path), "--out", str(out), "--render", str(tmp_path / "o.png"),
                 "--prior", "none", "--no-progress"])
    assert code == 2 and "--render needs a camera" in capsys.readouterr().err and not out.exists()
    code = main(["fit", "--out", str(out)])
    assert code == 2 and "give what to fit" in capsys.readouterr().err


def test_fit_cli_default_prior_and_an_explicit_checkpoint_agree(tmp_path, make_vectors):
    """The default prior (interhandgen, the bundled model) through the CLI; --checkpoint naming the bundled file and
    --device cpu give the same fit bit for bit (the same seed), another seed a different one."""
    from interhandgen.generation import bundled_model_path

    module, mean, std = make_prior("none")
    fitter = Fitter(module, mean, std, settings=FitSettings(iterations=2))
    j = fitter.body.joints(make_vectors(1, seed=9)).detach()
    path = save_observations(Observations(keypoints_3d=j, confidence_3d=torch.ones(1, 2, 21)), tmp_path / "obs.json")
    run = lambda out, *extra: main(["fit", "--observations", str(path), "--out", str(out), "--iterations", "12",  # noqa: E731
                                    "--no-progress", *extra])
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    assert run(a) == 0 and run(b, "--checkpoint", str(bundled_model_path()), "--device", "cpu") == 0
    assert run(c, "--seed", "1") == 0
    A, B, C = (TwoHandSet.load(p) for p in (a, b, c))
    assert A.metadata["fit"]["settings"]["prior_weight"] == 20.0  # the interhandgen prior's tuned weight
    for side in ("left", "right"):
        np.testing.assert_array_equal(A.hand(side).pose, B.hand(side).pose)
    assert not np.array_equal(A.left.pose, C.left.pose)


def test_fit_mano_hands_without_a_prior_and_the_priors_need_a_mano_model(tmp_path, capsys):
    """--mano-dir with --prior none fits MANO-format hands (files written by save_mano_pkl) without a MANO-trained
    model file; a prior whose statistics are in the open hand's pose space says what to pass."""
    from interhandgen.hand import save_mano_pkl

    # MANO-format files of a model with a hand's topology (the open hand's numbers, written as MANO writes them)
    models = HandModelSpec.open_hand().load(pose_space="pca")
    d = tmp_path / "mano"
    d.mkdir()
    save_mano_pkl(models["right"], d / "MANO_RIGHT.pkl")
    save_mano_pkl(models["left"], d / "MANO_LEFT.pkl", left_shapedirs_fixed=True)
    spec = HandModelSpec.mano(d)
    module, mean, std = make_prior("none", hand_model=spec)
    assert torch.equal(mean[:, :55], torch.zeros(2, 55))
    fitter = Fitter(module, mean, std, hand_model=spec, settings=FitSettings(iterations=2))
    y = torch.zeros(2, 2, 64)
    y[..., 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])  # identity rotations (rot6d)
    y[:, 0, 61:] = torch.tensor([-0.12, 0.0, 0.5])
    y[:, 1, 61:] = torch.tensor([0.12, 0.0, 0.5])
    y[1, :, :45] = 0.4 * torch.randn(2, 45, generator=torch.Generator().manual_seed(0))
    joints = fitter.body.joints(y).detach()
    conf = torch.ones(2, 2, 21)
    conf[1, 1] = 0.0  # frame 1: the right hand not seen (placed from the mean placement)
    path = save_observations(Observations(keypoints_3d=joints, confidence_3d=conf), tmp_path / "obs.json")
    out = tmp_path / "fit.npz"
    assert main(["fit", "--observations", str(path), "--mano-dir", str(d), "--prior", "none", "--out", str(out),
                 "--iterations", "60", "--penetration-weight", "0", "--volume-weight", "0", "--no-progress"]) == 0
    fitted = TwoHandSet.load(out)
    assert fitted.hand_model.kind == "mano"
    j = fitter.body.joints(vectors_from_set(fitted.with_hand_model(spec), fitter.models))
    err = (j - joints).norm(dim=-1).mean(-1) * 1000.0
    assert err[0].max() < 5.0 and err[1, 0] < 5.0, err
    code = main(["fit", "--observations", str(path), "--mano-dir", str(d), "--prior", "gaussian", "--out",
                 str(tmp_path / "g.npz"), "--no-progress"])
    assert code == 2 and "pass --checkpoint" in capsys.readouterr().err
