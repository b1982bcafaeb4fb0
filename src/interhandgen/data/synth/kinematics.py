"""Batched posing of one hand model from anatomical joint components (torch), on the full mesh or a subset.

Shapes: B batch, V vertices, S shape components, K vertices of a subset.
Poses are local axis-angle relative to the FLAT hand (``hands_mean`` is not involved here; it only matters
when poses are written in the model's PCA space, see :func:`pose_to_pca`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from interhandgen.data.synth.anatomy import HandAnatomy, hand_anatomy
from interhandgen.data.synth.poses import logits_to_components
from interhandgen.geometry.proxy import build_sphere_proxy
from interhandgen.hand.lbs import kinematic_levels, lbs, rigid_transforms
from interhandgen.hand.model_data import HandModelData
from interhandgen.geometry.points import farthest_point_sample
from interhandgen.rotations import axis_angle_to_matrix
from interhandgen.exceptions import InputError


def farthest_point_order(points: np.ndarray, k: int) -> np.ndarray:
    """Deterministic farthest-point sampling: ``k`` indices of ``points`` [N, 3] in selection order, starting
    from the point with the smallest x. Every prefix of the result is itself a farthest-point sample.
    (:func:`interhandgen.geometry.points.farthest_point_sample` in float64; on the open hand's vertices it gives the
    same order as the earlier numpy loop over Euclidean distances, checked for every k on 2026-12-04.)"""
    n = len(points)
    if not 1 <= k <= n:
        raise InputError(f"k must be in [1, {n}], got {k}")
    p = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float64))[None]
    return farthest_point_sample(p, k, int(np.argmin(points[:, 0])))[0].numpy().astype(np.int64)


def covering_radius(points: np.ndarray, subset: np.ndarray) -> float:
    """Largest distance from any point to its nearest point of ``subset`` (metres)."""
    from scipy.spatial import cKDTree

    d, _ = cKDTree(points[subset]).query(points)
    return float(d.max())


@dataclasses.dataclass
class PosedHand:
    """A batch of posed hands in their own model frame (zero global orientation, zero translation).

    vertices [B, V, 3], joints [B, 16, 3] (posed), rest_joints [B, 16, 3] (shaped), rotations [B, 16, 3, 3]
    (global rotation of each joint's frame), normals [B, V, 3] (rest normals carried by the skinning rotation),
    transforms [B, 16, 3, 4] (rigid map of rest points attached to each joint).
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    rest_joints: torch.Tensor
    rotations: torch.Tensor
    normals: torch.Tensor
    transforms: torch.Tensor


class HandKinematics:
    """Everything needed to pose one hand model from anatomical components, as tensors on one device.

    ``subset_size`` vertices are chosen by farthest-point sampling for the contact optimisation, and its
    first ``coarse_size`` (a coarser farthest-point sample) for the placement search.
    """

    def __init__(self, data: HandModelData, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 subset_size: int = 512, coarse_size: int = 160, anatomy: HandAnatomy | None = None) -> None:
        if not isinstance(data, HandModelData):
            raise TypeError(f"data must be a HandModelData, got {type(data).__name__}")
        self.data = data
        self.side = data.side
        self.anatomy = anatomy if anatomy is not None else hand_anatomy(data)
        self.device = torch.device(device)
        self.dtype = dtype
        t = lambda a: torch.as_tensor(np.array(a), dtype=dtype, device=self.device)  # noqa: E731
        V, S = data.num_verts, data.num_betas
        self.num_verts, self.num_betas = V, S
        self.parents = [int(p) for p in data.parents]
        self.levels = kinematic_levels(self.parents)
        self.v_template = t(data.v_template)
        self.shapedirs = t(data.shapedirs.reshape(V * 3, S))
        self.posedirs = t(data.posedirs.reshape(V * 3, -1).T)
        self.J_regressor = t(data.J_regressor)
        self.weights = t(data.weights)
        self.rest_normals = t(self.anatomy.rest_normals)
        self.joint_axes = t(self.anatomy.joint_axes)
        self.hands_mean = t(data.hands_mean)
        self.components_pinv = t(np.linalg.pinv(data.hands_components))
        order = farthest_point_order(data.v_template, min(max(subset_size, coarse_size), V))
        self.subset = torch.as_tensor(order[: min(subset_size, V)], device=self.device)
        self.coarse = torch.as_tensor(order[: min(coarse_size, V)], device=self.device)
        self.proxy = build_sphere_proxy(data, self.device, dtype)
        #: every rest vertex lies within this distance (metres) of a subset vertex
        self.subset_cover = covering_radius(data.v_template, order[: min(subset_size, V)])
        sub = self.subset
        self.sub_template = self.v_template[sub]
        self.sub_shapedirs = self.shapedirs.view(V, 3, S)[sub].reshape(-1, S)
        self.sub_posedirs = self.posedirs.view(-1, V, 3)[:, sub].reshape(self.posedirs.shape[0], -1)
        self.sub_weights = self.weights[sub]
        self.sub_normals = self.rest_normals[sub]
        # Region masks over the full mesh and over the subset.
        self.region_mask = {}
        self.region_mask_sub = {}
        for name, ids in self.anatomy.regions.items():
            m = torch.zeros(V, dtype=torch.bool, device=self.device)
            m[torch.as_tensor(ids, device=self.device)] = True
            self.region_mask[name] = m
            self.region_mask_sub[name] = m[sub]
            if not bool(m[sub].any()):
                raise InputError(f"region {name!r} has no vertex in the optimisation subset; raise subset_size")

    # ------------------------------------------------------------------ poses
    def components_to_full_pose(self, components: torch.Tensor) -> torch.Tensor:
        """[B, 15, 3] anatomical components -> [B, 48] full pose (zero global orientation, flat-relative)."""
        aa = torch.einsum("bjk,jkc->bjc", components, self.joint_axes).reshape(components.shape[0], 45)
        return torch.cat([torch.zeros_like(aa[:, :3]), aa], dim=1)

    def logits_to_full_pose(self, logits: torch.Tensor) -> torch.Tensor:
        return self.components_to_full_pose(logits_to_components(logits))

    def pose_to_pca(self, local_axis_angle: torch.Tensor) -> torch.Tensor:
        """[B, 45] flat-relative local axis-angle -> [B, 45] coefficients of the model's pose PCA (hands_mean removed)."""
        return (local_axis_angle - self.hands_mean) @ self.components_pinv

    def shaped_joints(self, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shaped rest vertices [B, V, 3] and joints [B, 16, 3]."""
        B = betas.shape[0]
        v_shaped = self.v_template + (betas @ self.shapedirs.T).view(B, self.num_verts, 3)
        return v_shaped, torch.einsum("jv,bvk->bjk", self.J_regressor, v_shaped)

    # ------------------------------------------------------------------ posing
    def pose_full(self, betas: torch.Tensor, full_pose: torch.Tensor) -> PosedHand:
        """Pose the full mesh. betas [B, S], full_pose [B, 48] -> :class:`PosedHand`."""
        verts, joints = lbs(betas, full_pose, self.v_template, self.shapedirs, self.posedirs, self.J_regressor,
                            self.parents, self.weights, self.levels)
        _, rest_joints = self.shaped_joints(betas)
        rot = axis_angle_to_matrix(full_pose.view(-1, 16, 3))
        _, transforms = rigid_transforms(rot, rest_joints, self.parents, self.levels)
        blend_rot = torch.einsum("vj,bjrc->bvrc", self.weights, transforms[..., :3])
        normals = torch.nn.functional.normalize((blend_rot @ self.rest_normals[..., None]).squeeze(-1), dim=-1)
        return PosedHand(verts, joints, rest_joints, transforms[..., :3], normals, transforms)

    def pose_subset(self, betas: torch.Tensor, rest_joints: torch.Tensor, full_pose: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose only the optimisation subset (differentiable). Returns vertices and unit normals [B, K, 3]."""
        B = betas.shape[0]
        K = self.subset.shape[0]
        v_shaped = self.sub_template + (betas @ self.sub_shapedirs.T).view(B, K, 3)
        rot = axis_angle_to_matrix(full_pose.view(B, 16, 3))
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        v_posed = v_shaped + ((rot[:, 1:] - eye).reshape(B, -1) @ self.sub_posedirs).view(B, K, 3)
        _, transforms = rigid_transforms(rot, rest_joints, self.parents, self.levels)
        T = (self.sub_weights @ transforms.reshape(B, 16, 12)).view(B, K, 3, 4)
        # Broadcast-and-sum instead of B*K tiny 3x3 matmuls: much faster on CPU, forward and backward.
        verts = (T[..., :3] * v_posed[..., None, :]).sum(-1) + T[..., 3]
        normals = torch.nn.functional.normalize((T[..., :3] * self.sub_normals[:, None, :]).sum(-1), dim=-1)
        return verts, normals

    def prepare_points(self, betas: torch.Tensor, full_pose: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample constants for posing the subset vertices ``index`` [B, K] (indices into ``subset``) many
        times near ``full_pose`` [B, 48] with fixed betas.

        The pose-corrective offsets are evaluated once at ``full_pose`` and then held fixed (they change by far
        less than a millimetre for the small pose adjustments of the contact optimisation, and evaluating
        them per step would dominate its cost); the final meshes are always posed exactly.
        """
        B, K = index.shape
        gather = lambda x: torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
        v_shaped = self.sub_template + (betas @ self.sub_shapedirs.T).view(B, -1, 3)
        rot = axis_angle_to_matrix(full_pose.view(B, 16, 3))
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        corrective = ((rot[:, 1:] - eye).reshape(B, -1) @ self.sub_posedirs).view(B, -1, 3)
        return {
            "v_posed": gather(v_shaped + corrective),
            "weights": self.sub_weights[index],
            "normals": self.sub_normals[index],
        }

    def pose_points(self, prepared: dict[str, torch.Tensor], rest_joints: torch.Tensor, full_pose: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Skin prepared points (see :meth:`prepare_points`); differentiable w.r.t. ``full_pose``.
        Returns vertices and unit normals [B, K, 3] and the joint transforms [B, 16, 3, 4]."""
        B, K = prepared["v_posed"].shape[:2]
        rot = axis_angle_to_matrix(full_pose.view(B, 16, 3))
        _, transforms = rigid_transforms(rot, rest_joints, self.parents, self.levels)
        T = torch.bmm(prepared["weights"], transforms.reshape(B, 16, 12)).view(B, K, 3, 4)
        verts = (T[..., :3] * prepared["v_posed"][..., None, :]).sum(-1) + T[..., 3]
        normals = torch.nn.functional.normalize((T[..., :3] * prepared["normals"][..., None, :]).sum(-1), dim=-1)
        return verts, normals, transforms

    def anatomy_vector(self, name: str) -> torch.Tensor:
        """A named rest direction of the hand frame as a [3] tensor."""
        a = self.anatomy
        table = {"forward": a.forward, "radial": a.radial, "palmar": a.palmar, "ulnar": -a.radial, "dorsal": -a.palmar}
        if name not in table:
            raise InputError(f"unknown anatomy vector {name!r}; expected one of {sorted(table)}")
        return torch.as_tensor(table[name], dtype=self.dtype, device=self.device)
