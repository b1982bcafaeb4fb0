"""The fitted unknowns and the two hands they pose.

Each hand is one 64-vector in the CAMERA frame with the slots of the canonical representation
(:mod:`interhandgen.data.canonical`): 45 pose PCA coefficients (all 45 components of the hand model, its
``hands_mean`` added), 10 betas, the 6D rotation of the hand (first two columns of its root rotation matrix in
the camera frame) and the camera-frame position (metres) of its middle-finger MCP joint. The hand's vertices are
its zero-orientation posed mesh, centred on that joint, rotated and moved there: v = R (v0 - c0) + t, which is
exactly MANO's placement by global_orient and transl (a rigid motion of the same posed mesh).

Why these unknowns: the 45 PCA coefficients span the whole 45-d joint rotation space (the same poses as axis-angle,
nothing is truncated), they are the numbers the diffusion prior is trained on (no conversion between the data
term and the prior), and their leading components move whole fingers together, which conditions the early
iterations; the 6D rotation has no singularity, and the centre joint is what the two-hand canonical frame uses.
Batched [B, 2, 64] with the left hand first.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from interhandgen.data.canonical import IDENTITY_ROT6D, to_canonical, to_world
from interhandgen.data.format import HAND_SIDES, HandModelSpec, TwoHandSet
from interhandgen.fitting._model import SubsetHand, canonical_vertices
from interhandgen.geometry.proxy import SphereProxy, build_sphere_proxy
from interhandgen.hand import HandModel
from interhandgen.rotations import matrix_to_rot6d, rot6d_to_matrix

POSE, BETAS, ROT6D, CENTER = slice(0, 45), slice(45, 55), slice(55, 61), slice(61, 64)
ANCHOR_SIDE = "left"  # the cascaded prior generates the left hand first


class TwoHandBody(nn.Module):
    """Joints, surface subsets and meshes of both hands from camera-frame vectors y [B, 2, 64] (differentiable).

    Args:
        models: {"left", "right"}: hand layers in PCA pose space with 45 components, ``flat_hand_mean=False``.
        surface_points: size of the farthest-point surface subset per hand used by the penetration term.
    """

    def __init__(self, models: Mapping[str, HandModel], surface_points: int = 192) -> None:
        super().__init__()
        for side in HAND_SIDES:
            m = models[side]
            if not isinstance(m, HandModel) or not m.use_pca or m.num_pca_comps != 45 or m.flat_hand_mean:
                raise ValueError(f"models[{side!r}] must be a HandModel in PCA pose space with 45 components and "
                                 "flat_hand_mean=False (the canonical convention)")
        self.models = dict(models)
        self.tips = nn.ModuleList(SubsetHand(models[s], indices=models[s].fingertip_ids) for s in HAND_SIDES)
        # Fingertips first, then the surface subset: one skinning pass gives both in stage 2.
        self.surface = nn.ModuleList(
            SubsetHand(models[s], indices=torch.cat([models[s].fingertip_ids, SubsetHand(models[s], surface_points).indices]))
            for s in HAND_SIDES)
        # Inscribed-sphere proxies (the volumetric penetration term), built from each hand model's template.
        self.proxies: list[SphereProxy] = [build_sphere_proxy(models[s].data) for s in HAND_SIDES]

    def _apply(self, fn, *args, **kwargs):  # keep the proxies' tensors on the module's device
        out = super()._apply(fn, *args, **kwargs)
        for proxy in self.proxies:
            for field in ("coeff", "joint", "radius"):
                setattr(proxy, field, fn(getattr(proxy, field)))
        return out

    def spheres(self, y: torch.Tensor, radii: list[torch.Tensor] | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Inscribed spheres of both hands of y [B, 2, 64] in the camera frame: centres (per hand [B, S, 3],
        differentiable) and radii (per hand [B, S]). Without ``radii`` they are computed, without gradient: scaled
        with each hand's size and capped by the distance to its posed full mesh (:meth:`SphereProxy.radii`), which
        needs the whole mesh skinned, so callers reuse them for a few iterations."""
        centres, out = [], []
        for s, side in enumerate(HAND_SIDES):
            rest, transforms = self.surface[s].skeleton(y[:, s])
            c = self.proxies[s].centres(rest, transforms)
            centres.append(c)
            if radii is None:
                with torch.no_grad():
                    verts, _ = canonical_vertices(y[:, s].detach(), self.models[side])
                    out.append(self.proxies[s].radii(rest.detach(), c.detach(), verts.to(c.dtype)))
        return centres, (out if radii is None else radii)

    def joints(self, y: torch.Tensor) -> torch.Tensor:
        """[B, 2, 21, 3] camera-frame joints (MANO21 order) of y [B, 2, 64]."""
        out = []
        for s in range(2):
            rest, transforms = self.tips[s].skeleton(y[:, s])
            posed = (transforms[..., :3] @ rest[..., None])[..., 0] + transforms[..., 3]
            tips, _ = self.tips[s](y[:, s])
            out.append(torch.cat([posed, tips], dim=1))
        return torch.stack(out, dim=1)

    def joints_and_surface(self, y: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(joints [B, 2, 21, 3], (points_left, normals_left, points_right, normals_right) each [B, S, 3]),
        camera frame: the joints of :meth:`joints` and the surface subsets for the penetration term."""
        joints, surface = [], []
        for s in range(2):
            rest, transforms = self.surface[s].skeleton(y[:, s])
            posed = (transforms[..., :3] @ rest[..., None])[..., 0] + transforms[..., 3]
            points, normals = self.surface[s](y[:, s])
            joints.append(torch.cat([posed, points[:, :5]], dim=1))
            surface += [points[:, 5:], normals[:, 5:]]
        return torch.stack(joints, dim=1), tuple(surface)

    def meshes(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full meshes (vertices [B, 2, V, 3], joints [B, 2, 21, 3]) through the hand layer."""
        parts = [canonical_vertices(y[:, s], self.models[side]) for s, side in enumerate(HAND_SIDES)]
        return torch.stack([p[0] for p in parts], 1), torch.stack([p[1] for p in parts], 1)


def canonical_from_camera(y: torch.Tensor) -> torch.Tensor:
    """Camera-frame vectors y [B, 2, 64] -> canonical pairs x [B, 2, 64] (left = anchor first), differentiable.

    R_rel = R_l^T R_r, t_rel = R_l^T (c_r - c_l) (:mod:`interhandgen.data.canonical`); the anchor gets the
    identity rotation and zero translation.
    """
    R_l = rot6d_to_matrix(y[:, 0, ROT6D])
    R_r = rot6d_to_matrix(y[:, 1, ROT6D])
    rel_R = R_l.transpose(1, 2) @ R_r
    rel_t = (R_l.transpose(1, 2) @ (y[:, 1, CENTER] - y[:, 0, CENTER])[..., None])[..., 0]
    B = y.shape[0]
    tail = torch.tensor([*IDENTITY_ROT6D, 0.0, 0.0, 0.0], dtype=y.dtype, device=y.device).expand(B, 9)
    anchor = torch.cat([y[:, 0, :55], tail], dim=1)
    other = torch.cat([y[:, 1, :55], matrix_to_rot6d(rel_R), rel_t], dim=1)
    return torch.stack([anchor, other], dim=1)


def camera_from_canonical(x: torch.Tensor, anchor_rotation: torch.Tensor, anchor_center: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`canonical_from_camera` given the anchor's camera pose (R [B, 3, 3], centre [B, 3])."""
    R_r = anchor_rotation @ rot6d_to_matrix(x[:, 1, ROT6D])
    c_r = anchor_center + (anchor_rotation @ x[:, 1, CENTER, None])[..., 0]
    left = torch.cat([x[:, 0, :55], matrix_to_rot6d(anchor_rotation), anchor_center], dim=1)
    right = torch.cat([x[:, 1, :55], matrix_to_rot6d(R_r), c_r], dim=1)
    return torch.stack([left, right], dim=1)


def vectors_from_set(two_hands: TwoHandSet, models: Mapping[str, HandModel], device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Camera-frame vectors y [N, 2, 64] of a TwoHandSet given in the camera frame (any pose space, exact)."""
    can = to_canonical(two_hands, models, anchor=ANCHOR_SIDE, device=device, dtype=torch.float64)
    return camera_from_canonical(can.x, can.anchor_rotation, can.anchor_center).to(dtype)


def set_from_vectors(y: torch.Tensor, models: Mapping[str, HandModel], hand_model: HandModelSpec,
                     **set_fields) -> TwoHandSet:
    """A camera-frame TwoHandSet (PCA pose space, float64) from vectors y [N, 2, 64]."""
    y = y.detach().to(torch.float64)
    R_l = rot6d_to_matrix(y[:, 0, ROT6D])
    return to_world(canonical_from_camera(y), models, anchor=ANCHOR_SIDE, anchor_world=(R_l, y[:, 0, CENTER]),
                    hand_model=hand_model, **set_fields)
