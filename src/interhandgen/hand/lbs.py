"""Linear blend skinning for MANO-compatible hands, as pure batched functions.

Shapes: B batch, V vertices, J = 16 joints, S shape components.
The math is MANO's (Romero et al. 2017), identical to smplx.lbs up to floating-point rounding.
"""

from __future__ import annotations

from typing import Sequence

import torch

from interhandgen.rotations import axis_angle_to_matrix


def kinematic_levels(parents: Sequence[int]) -> list[list[int]]:
    """Group joints by depth in the tree so that each level can be composed in one batched matmul."""
    depth = []
    for j, p in enumerate(parents):
        depth.append(0 if p < 0 else depth[p] + 1)
    levels: list[list[int]] = [[] for _ in range(max(depth) + 1)]
    for j, d in enumerate(depth):
        levels[d].append(j)
    return levels


def rigid_transforms(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: Sequence[int], levels: list[list[int]] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose local joint rotations along the kinematic tree.

    Args:
        rot_mats: [B, J, 3, 3] local rotations.
        joints: [B, J, 3] rest-pose joint locations.
        parents: J parent indices (-1 for the root).
    Returns:
        posed_joints [B, J, 3] and rel_transforms [B, J, 3, 4]: the affine map taking a rest-pose point
        attached to joint j to its posed location.
    """
    levels = levels if levels is not None else kinematic_levels(parents)
    dev = joints.device
    parents_t = torch.as_tensor(list(parents), device=dev)
    rel = torch.cat([joints[:, :1], joints[:, 1:] - joints[:, parents_t[1:]]], dim=1)
    # Out-of-place, one level of the tree at a time (a parent always sits in the previous level): in-place
    # writes into preallocated tensors make autograd copy them at every level.
    root = torch.as_tensor(levels[0], device=dev)
    rots, transs = [rot_mats[:, root]], [rel[:, root]]
    for prev, level in zip(levels[:-1], levels[1:]):
        idx = torch.as_tensor(level, device=dev)
        pos = torch.as_tensor([prev.index(int(parents[j])) for j in level], device=dev)
        pr = rots[-1][:, pos]
        rots.append(pr @ rot_mats[:, idx])
        transs.append((pr @ rel[:, idx, :, None]).squeeze(-1) + transs[-1][:, pos])
    order = torch.as_tensor([j for level in levels for j in level], device=dev)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=dev)
    g_rot = torch.cat(rots, dim=1)[:, inverse]
    g_trans = torch.cat(transs, dim=1)[:, inverse]
    # Remove the rest-pose joint location so the transform applies to rest-pose vertices directly.
    offset = g_trans - (g_rot @ joints[..., None]).squeeze(-1)
    return g_trans, torch.cat([g_rot, offset[..., None]], dim=-1)


def lbs(
    betas: torch.Tensor,
    full_pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor,
    J_regressor: torch.Tensor,
    parents: Sequence[int],
    weights: torch.Tensor,
    levels: list[list[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MANO forward kinematics and skinning.

    Args:
        betas: [B, S] shape coefficients.
        full_pose: [B, J*3] axis-angle of the root (global orientation) then joints 1..15.
        v_template: [V, 3]; shapedirs: [V*3, S]; posedirs: [(J-1)*9, V*3];
        J_regressor: [J, V]; weights: [V, J].
    Returns:
        vertices [B, V, 3] and joints [B, J, 3], before any translation.
    """
    B = betas.shape[0]
    V = v_template.shape[0]
    J = J_regressor.shape[0]
    v_shaped = v_template + (betas @ shapedirs.T).view(B, V, 3)
    joints = torch.einsum("jv,bvk->bjk", J_regressor, v_shaped)
    rot_mats = axis_angle_to_matrix(full_pose.view(B, J, 3))
    posed_joints, transforms = rigid_transforms(rot_mats, joints, parents, levels)
    verts, _ = blend_skinning(v_shaped, rot_mats, transforms, posedirs, weights)
    return verts, posed_joints


def blend_skinning(v_shaped: torch.Tensor, rot_mats: torch.Tensor, transforms: torch.Tensor, posedirs: torch.Tensor,
                   weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose-corrective offsets, then linear blend skinning, of shaped rest vertices (all of a model's or a subset).

    Args:
        v_shaped: [B, V, 3]; rot_mats: [B, J, 3, 3] local joint rotations; transforms: [B, J, 3, 4] from
        :func:`rigid_transforms`; posedirs: [(J-1)*9, V*3]; weights: [V, J].
    Returns:
        vertices [B, V, 3] and each vertex's blended transform [B, V, 3, 4].
    """
    B, V, J = v_shaped.shape[0], v_shaped.shape[1], rot_mats.shape[1]
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    pose_feature = (rot_mats[:, 1:] - eye).reshape(B, -1)
    v_posed = v_shaped + (pose_feature @ posedirs).view(B, V, 3)
    # Blend the per-joint 3x4 transforms per vertex, then apply.
    T = (weights @ transforms.reshape(B, J, 12)).view(B, V, 3, 4)
    return (T[..., :3] @ v_posed[..., None]).squeeze(-1) + T[..., 3], T
