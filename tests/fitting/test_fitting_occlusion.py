"""Occlusion by the other hand (exact ray casting) against a closed-form scene, and the synthetic cameras."""

import torch

from interhandgen.fitting.synthetic import CameraSpec, occluded_by_other, random_cameras, to_camera
from interhandgen.rotations import rot6d_to_matrix


def _square(z: float, half: float = 0.1) -> torch.Tensor:
    return torch.tensor([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])


def test_ray_casting_matches_the_shadow_of_a_square():
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    verts = torch.stack([_square(-1.0), _square(0.3)])[None]  # left: behind the camera; right: at z = 0.3
    g = torch.Generator().manual_seed(0)
    xy = (torch.rand(21, 2, generator=g) - 0.5) * 0.5
    z = torch.where(torch.arange(21) % 3 == 0, torch.tensor(0.2), torch.tensor(0.5))
    pts = torch.cat([xy, z[:, None]], dim=1)
    joints = torch.stack([pts, pts])[None]  # [1, 2, 21, 3]
    hit = occluded_by_other(joints, verts, (faces, faces))
    # Left joints: the segment from the camera crosses the plane z = 0.3 at (0.3 / z) (x, y) if z > 0.3.
    scale = 0.3 / z
    want = (z > 0.3) & ((xy * scale[:, None]).abs() < 0.1).all(1)
    assert want.any() and (~want).any()
    assert torch.equal(hit[0, 0], want)
    assert not hit[0, 1].any()  # right joints against the left square behind the camera


def test_random_cameras_look_at_the_target_from_the_distance_range():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(50, 3, generator=g) * 0.1
    spec = CameraSpec()
    R, eye = random_cameras(target, spec, g)
    d = (eye - target).norm(dim=-1)
    assert (d >= spec.min_distance - 1e-6).all() and (d <= spec.max_distance + 1e-6).all()
    y = torch.zeros(50, 2, 64)
    y[..., 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    y[..., 61:] = target[:, None]
    cam = to_camera(y, R, eye)
    assert torch.allclose(cam[:, 0, 61:63], torch.zeros(50, 2), atol=1e-5)
    assert torch.allclose(cam[:, 0, 63], d, atol=1e-5)
    assert torch.allclose(rot6d_to_matrix(cam[:, 0, 55:61]), R, atol=1e-5)


def test_corrupt_keypoints_noise_outliers_and_confidences_follow_their_definition():
    """Statistics of the benchmark's corruption on 4,000 frames against its definition: per-frame noise sigma
    uniform in [2, 5] px (so the pooled per-axis variance is E[sigma^2] = 13 px^2), 5 % outliers uniform in the
    image, confidences uniform in [0.6, 1] (inliers) and [0.3, 0.9] (outliers); seeded."""
    from interhandgen.fitting.synthetic import corrupt_keypoints

    # a very large image, so that an outlier almost never lands within the 40 px that tell it from an inlier
    spec = CameraSpec(width=64000, height=48000, fx=500.0, fy=500.0)
    exact = torch.full((4000, 2, 21, 2), 200.0)
    kp, conf = corrupt_keypoints(exact, spec, torch.Generator().manual_seed(0))
    again = corrupt_keypoints(exact, spec, torch.Generator().manual_seed(0))
    assert torch.equal(kp, again[0]) and torch.equal(conf, again[1])
    err = kp - exact
    outlier = err.abs().amax(-1) > 40.0  # 8 sigma of the largest noise: inliers never get there
    assert abs(outlier.float().mean().item() - 0.05) < 0.003
    inlier_err = err[~outlier]
    assert abs(inlier_err.var().item() - 13.0) < 0.4 and abs(inlier_err.mean().item()) < 0.05
    # per-frame sigma in [2, 5]: each frame's sample std (about 80 numbers, relative standard error 8 %) stays
    # within 5 standard errors of that range, and the frames spread over it
    per_frame = torch.where(outlier[..., None], torch.nan, err).reshape(4000, -1)
    std = torch.sqrt(torch.nanmean(per_frame ** 2, dim=1))
    assert std.min() > 2.0 * 0.6 and std.max() < 5.0 * 1.4
    assert (std < 2.5).float().mean() > 0.1 and (std > 4.5).float().mean() > 0.1
    c_in, c_out = conf[~outlier], conf[outlier]
    assert 0.6 <= c_in.min() and c_in.max() <= 1.0 and abs(c_in.mean().item() - 0.8) < 0.01
    assert 0.3 <= c_out.min() and c_out.max() <= 0.9 and abs(c_out.mean().item() - 0.6) < 0.02
    w = kp[outlier]
    assert 0 <= w.min() and (w[:, 0] <= 64000).all() and (w[:, 1] <= 48000).all()
    assert abs(w[:, 0].mean().item() - 32000) < 1500 and abs(w[:, 1].mean().item() - 24000) < 1200  # uniform
