"""The fitter against known truths: exact recovery, masked joints, the camera-frame vectors vs the hand layer."""

import torch

from interhandgen.data.format import HandModelSpec
from interhandgen.fitting import FitSettings, Fitter, Observations, data_terms, make_prior, set_from_vectors, \
    vectors_from_set
from interhandgen.fitting.metrics import mrrpe_mm, root_aligned_error_mm
from interhandgen.fitting.synthetic import CameraSpec, exact_projection


def _fitter(prior="none", **kw):
    module, mean, std = make_prior(prior)
    return Fitter(module, mean, std, settings=FitSettings(**kw))


def test_vectors_pose_the_hand_layer_exactly(make_vectors):
    fitter = _fitter()
    y = make_vectors(3, seed=4)
    pairs = set_from_vectors(y, fitter.models, HandModelSpec.open_hand())
    layer = pairs.forward(fitter.models, dtype=torch.float64)
    verts, joints = fitter.body.meshes(y)
    for s, side in enumerate(("left", "right")):
        assert torch.allclose(layer[side][1].float(), joints[:, s], atol=1e-5)
        assert torch.allclose(layer[side][0].float(), verts[:, s], atol=1e-5)
    assert torch.allclose(fitter.body.joints(y), joints, atol=1e-5)
    assert torch.allclose(vectors_from_set(pairs, fitter.models), y, atol=1e-5)


def test_exact_3d_joints_without_prior_recover_the_truth(make_vectors):
    fitter = _fitter(iterations=300, penetration_weight=0.0, prior_weight=0.0)
    y = make_vectors(3, seed=1)
    true_joints = fitter.body.joints(y).detach()
    res = fitter.fit(Observations(keypoints_3d=true_joints, confidence_3d=torch.ones(3, 2, 21)), progress=False)
    _, jp = fitter.body.meshes(res.vectors)
    _, jt = fitter.body.meshes(y)
    mpjpe = root_aligned_error_mm(jp, jt, jp, jt)
    assert mpjpe.max() < 1.0, mpjpe
    # (Vertices are not asserted: 21 joints do not determine the twist of a bone about its own axis.)
    assert mrrpe_mm(jp, jt).max() < 1.0
    assert max(res.diagnostics["joint_3d_mm"]) < 0.5


def test_masked_observations_get_exactly_zero_gradient(make_vectors):
    settings = FitSettings()
    y = make_vectors(2, seed=2)
    fitter = _fitter()
    joints = fitter.body.joints(y).detach()
    K = CameraSpec().intrinsics(2)
    kp2 = (exact_projection(joints, K) + 3.0).requires_grad_()
    kp3 = (joints + 0.004).requires_grad_()
    conf = torch.ones(2, 2, 21)
    conf[0, 1, ::2] = 0.0
    conf[1, 0] = 0.0
    obs = Observations(keypoints_2d=kp2, confidence_2d=conf, keypoints_3d=kp3, confidence_3d=conf, intrinsics=K)
    # Observations stores the tensors it was given (no copy), so gradients reach kp2 and kp3.
    data_terms(joints, obs, settings).sum().backward()
    masked = conf == 0
    assert torch.count_nonzero(kp2.grad[masked]) == 0 and torch.count_nonzero(kp3.grad[masked]) == 0
    assert (kp2.grad[~masked].norm(dim=-1) > 0).all() and (kp3.grad[~masked].norm(dim=-1) > 0).all()


def test_masked_values_do_not_change_the_fit(make_vectors):
    fitter = _fitter("gaussian", iterations=12, hypotheses=3, hypothesis_iterations=2)
    y = make_vectors(2, seed=3)
    joints = fitter.body.joints(y).detach()
    K = CameraSpec().intrinsics(2)
    kp = exact_projection(joints, K)
    conf = torch.ones(2, 2, 21)
    conf[:, 1, 10:] = 0.0
    other = kp.clone()
    other[conf == 0] = torch.tensor([5000.0, -300.0])  # wild values where the confidence is 0
    a = fitter.fit(Observations(keypoints_2d=kp, confidence_2d=conf, intrinsics=K), progress=False)
    b = fitter.fit(Observations(keypoints_2d=other, confidence_2d=conf, intrinsics=K), progress=False)
    assert torch.equal(a.vectors, b.vectors)
