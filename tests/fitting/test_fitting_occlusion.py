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
