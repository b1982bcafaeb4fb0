"""A fixed, evenly spread subset of a hand's surface vertices, posed with their normals, for cheap guidance.

Anti-penetration guidance needs, at every guided reverse step, the conditioned hand's surface and outward normals
as a differentiable function of its parameters. Skinning all 2,718 vertices of the open hand (and searching
nearest neighbours among them) costs far more than the denoiser; a farthest-point subset of a few hundred
vertices spaced about a centimetre apart covers the hand evenly at a fraction of the cost.

:class:`SubsetHand` skins ONLY the subset: it slices the hand layer's template, blend shapes and skinning
weights to the chosen rows (the joints still come from the whole shaped mesh, through the joint regressor folded
into the shape space). Normals are the rest-pose vertex normals of the whole (sealed) mesh rotated by each vertex's
blended skinning rotation, then renormalised: this ignores the small change of the normals by the pose and shape
blend shapes, which is far below what the inside test (the sign of an offset along the normal) can notice.

Shapes: B batch, S subset size, V vertices of the whole mesh. Metres.
"""

from __future__ import annotations

import torch
from torch import nn

from interhandgen.data.canonical import BETAS_SLICE, POSE_SLICE, ROT_SLICE, TRANSL_SLICE
from interhandgen.geometry.mesh import seal_torch, vertex_normals
from interhandgen.geometry.points import farthest_point_indices
from interhandgen.hand import CENTER_JOINT, HandModel
from interhandgen.hand.lbs import blend_skinning, rigid_transforms
from interhandgen.rotations import axis_angle_to_matrix, rot6d_to_matrix
from interhandgen.exceptions import InputError


__all__ = ["SubsetHand"]


class SubsetHand(nn.Module):
    """Skin a fixed vertex subset of a hand layer from raw canonical 64-vectors, with outward normals.

    ``forward(x [B, 64]) -> (points [B, S, 3], normals [B, S, 3])`` in the canonical two-hand frame, the same
    placement as :func:`interhandgen.data.canonical.canonical_vertices`: the hand posed with zero global orientation,
    centred on its middle-finger MCP joint, rotated by the 6D rotation and moved to the translation. ``points``
    equal ``canonical_vertices(x, model)[0][:, indices]`` up to float rounding; differentiable w.r.t. ``x``.

    Args:
        model: the hand layer (PCA pose space, as used by the canonical vectors; any number of PCA components
            up to 45 fills the first slots of the 45 pose numbers).
        num_points: subset size S (farthest-point sampling on the rest template), or
        indices: explicit vertex indices [S] (overrides ``num_points``).
    """

    def __init__(self, model: HandModel, num_points: int = 192, indices: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(model, HandModel):
            raise TypeError(f"model must be a HandModel, got {type(model).__name__}")
        if not model.use_pca:
            raise InputError("SubsetHand needs a hand layer in PCA pose space (the canonical vectors hold PCA "
                             "coefficients); build it with use_pca=True")
        self._hand_model = [model]  # a plain reference, not a submodule
        V, S_betas = model.num_verts, model.num_betas
        template = model.v_template.detach()
        if indices is None:
            indices = farthest_point_indices(template, num_points)
        indices = torch.as_tensor(indices, dtype=torch.int64, device=template.device)
        if indices.dim() != 1 or indices.numel() < 1 or int(indices.min()) < 0 or int(indices.max()) >= V:
            raise InputError(f"indices must be a non-empty 1-D tensor of vertex indices in 0..{V - 1}")
        self.parents = list(model.parents)
        self.levels = model._levels
        self.num_pca_comps = model.num_pca_comps
        f32 = torch.float32
        sealed, faces = seal_torch(template[None].to(f32), model.faces_np)
        rest_normals = vertex_normals(sealed, faces)[0, :V]
        shapedirs = model.shapedirs.detach().view(V, 3, S_betas)
        posedirs = model.posedirs.detach().view(-1, V, 3)
        self.register_buffer("indices", indices, persistent=False)
        self.register_buffer("v_template", template[indices].to(f32), persistent=False)
        self.register_buffer("shapedirs", shapedirs[indices].reshape(-1, S_betas).to(f32), persistent=False)
        self.register_buffer("posedirs", posedirs[:, indices].reshape(posedirs.shape[0], -1).to(f32),
                             persistent=False)
        self.register_buffer("lbs_weights", model.lbs_weights.detach()[indices].to(f32), persistent=False)
        self.register_buffer("rest_normals", rest_normals[indices].to(f32), persistent=False)
        # Joints are linear in the shape: J = J_reg (T + dirs beta) = J_template + J_dirs beta.
        J_reg = model.J_regressor.detach().to(f32)
        self.register_buffer("joint_template", J_reg @ template.to(f32), persistent=False)
        self.register_buffer("joint_shapedirs", torch.einsum("jv,vks->jks", J_reg, shapedirs.to(f32)),
                             persistent=False)
        self.register_buffer("hand_components", model.hand_components.detach().to(f32), persistent=False)
        self.register_buffer("pose_mean", model.pose_mean.detach().to(f32), persistent=False)

    @property
    def num_points(self) -> int:
        return self.indices.numel()

    @property
    def hand_model(self) -> HandModel:
        """The full hand layer this subset was taken from."""
        return self._hand_model[0]

    def skeleton(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shaped rest joints [B, J, 3] and the joints' rigid transforms [B, J, 3, 4] into the canonical
        two-hand frame (rest point attached to joint j -> its placed location), for raw vectors x [B, 64]."""
        _, _, joints, posed_joints, transforms = self._articulate(x)
        R = rot6d_to_matrix(x[:, ROT_SLICE])
        centre = posed_joints[:, CENTER_JOINT]
        rot = R[:, None] @ transforms[..., :3]
        trans = ((transforms[..., 3] - centre[:, None]) @ R.transpose(1, 2)) + x[:, None, TRANSL_SLICE]
        return joints, torch.cat([rot, trans[..., None]], dim=-1)

    @staticmethod
    def _check(x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 64:
            raise InputError(f"x must be raw canonical hand vectors [B, 64], got "
                             f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")

    def _articulate(self, x: torch.Tensor):
        """(betas, local rotations [B, J, 3, 3], shaped rest joints [B, J, 3], posed joints, rigid transforms
        [B, J, 3, 4]) of raw vectors x [B, 64], before the canonical placement."""
        self._check(x)
        B, J = x.shape[0], self.joint_template.shape[0]
        dt = x.dtype
        betas = x[:, BETAS_SLICE]
        joint_pose = x[:, POSE_SLICE][:, : self.num_pca_comps] @ self.hand_components.to(dt) + self.pose_mean.to(dt)
        full_pose = torch.cat([torch.zeros(B, 3, dtype=dt, device=x.device), joint_pose], dim=1)
        rot_mats = axis_angle_to_matrix(full_pose.view(B, J, 3))
        joints = self.joint_template.to(dt) + torch.einsum("jks,bs->bjk", self.joint_shapedirs.to(dt), betas)
        posed_joints, transforms = rigid_transforms(rot_mats, joints, self.parents, self.levels)
        return betas, rot_mats, joints, posed_joints, transforms

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        betas, rot_mats, joints, posed_joints, transforms = self._articulate(x)
        B, S = x.shape[0], self.num_points
        dt = x.dtype
        v_shaped = self.v_template.to(dt) + (betas @ self.shapedirs.to(dt).T).view(B, S, 3)
        verts, T = blend_skinning(v_shaped, rot_mats, transforms, self.posedirs.to(dt), self.lbs_weights.to(dt))
        rot = T[..., :3]
        normals = torch.nn.functional.normalize((rot @ self.rest_normals.to(dt)[..., None]).squeeze(-1), dim=-1)
        R = rot6d_to_matrix(x[:, ROT_SLICE])
        centre = posed_joints[:, CENTER_JOINT : CENTER_JOINT + 1]
        points = (verts - centre) @ R.transpose(1, 2) + x[:, None, TRANSL_SLICE]
        return points, normals @ R.transpose(1, 2)
