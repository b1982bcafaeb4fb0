"""The object sampler's equilibrium check (redraw_support) on built contact geometry, and its CLI options."""

import argparse

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.cli.sample_object import add_object_options, object_settings_from_args
from interhandgen.exceptions import InputError
from interhandgen.generation.object_sampling import ObjectSettings, lift_to_support, object_penetration, support_check
from interhandgen.objects.frame import surface_samples

H = 0.04  # half edge of a 8 cm cube, centre of mass at the origin (the object frame)


def _check(z=None, x=None, settings=ObjectSettings()):
    cube = trimesh.creation.box((2 * H, 2 * H, 2 * H))
    surface = torch.as_tensor(surface_samples(cube.vertices, cube.faces, 1024, seed=2))[None]
    g = np.linspace(-0.03, 0.03, 7)
    if z is not None:  # a flat patch of hand points in the plane z
        pts = np.array([[a, b, z] for a in g for b in g])
    else:  # a patch in the plane x
        pts = np.array([[x, a, b] for a in g for b in g])
    pts = torch.as_tensor(pts)[None]
    _, signed, normals = object_penetration(pts, surface, 1.0)
    return bool(support_check(pts, normals, signed, settings)[0])


def test_a_palm_under_the_object_holds_it_and_one_on_top_or_beside_does_not():
    assert _check(z=-H - 0.001)
    assert not _check(z=H + 0.001)
    assert not _check(x=H + 0.001)  # a side contact alone: nothing under it
    assert not _check(z=-H - 0.008)  # 8 mm below: farther than support_contact_mm
    assert _check(z=-H - 0.008, settings=ObjectSettings(support_contact_mm=10.0))


def test_settings_are_checked():
    for bad in (dict(support_contact_mm=0.0), dict(support_normal_z=2.0), dict(support_mu=-1.0)):
        with pytest.raises(InputError):
            ObjectSettings(**bad).validate()


def test_cli_options_reach_the_settings():
    p = argparse.ArgumentParser()
    add_object_options(p)
    s = object_settings_from_args(p.parse_args(["--no-redraw-support", "--support-contact-mm", "3",
                                                "--support-lift-mm", "12"]))
    assert s.redraw_support is False and s.support_contact_mm == 3.0 and s.support_lift_mm == 12.0
    s = object_settings_from_args(p.parse_args(["--redraw-support"]))
    assert s.redraw_support is True
    assert object_settings_from_args(p.parse_args([])).redraw_support is ObjectSettings().redraw_support


def _patch(z=None, x=None):
    g = np.linspace(-0.03, 0.03, 7)
    pts = np.array([[a, b, z] for a in g for b in g]) if z is not None else np.array([[x, a, b] for a in g for b in g])
    return torch.as_tensor(pts)[None]


def test_support_lift_moves_a_hand_below_the_object_up_into_touch_and_nothing_else():
    cube = trimesh.creation.box((2 * H, 2 * H, 2 * H))
    surface = torch.as_tensor(surface_samples(cube.vertices, cube.faces, 1024, seed=2))[None]
    s = ObjectSettings(support_lift_mm=10.0)
    pts = torch.cat([_patch(z=-H - 0.006), _patch(z=H + 0.002), _patch(x=H + 0.002), _patch(z=-H - 0.015)])
    lift = lift_to_support(pts, surface.expand(4, -1, -1), s).numpy()
    assert lift[0] == pytest.approx(0.006 - s.touch_mm / 1000.0, abs=1e-6)  # up to 0.5 mm under the bottom
    assert lift[1] == 0.0 and lift[2] == 0.0  # on top, beside: nothing above faces down within reach
    assert lift[3] == 0.0  # 15 mm below: beyond support_lift_mm
    with pytest.raises(InputError):
        ObjectSettings(support_lift_mm=-1.0).validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_support_check_and_lift_on_cuda_match_cpu():
    cube = trimesh.creation.box((2 * H, 2 * H, 2 * H))
    surface = torch.as_tensor(surface_samples(cube.vertices, cube.faces, 1024, seed=2))[None].expand(3, -1, -1)
    pts = torch.cat([_patch(z=-H - 0.006), _patch(z=H + 0.002), _patch(x=H + 0.002)])
    s = ObjectSettings(support_lift_mm=10.0)
    for device in ("cpu", "cuda"):
        p, surf = pts.to(device), surface.to(device)
        _, signed, normals = object_penetration(p, surf, 1.0)
        held = support_check(p, normals, signed, s).cpu()
        lift = lift_to_support(p, surf, s).cpu()
        if device == "cpu":
            ref = (held, lift)
    assert torch.equal(held, ref[0]) and torch.allclose(lift, ref[1], atol=1e-9)
