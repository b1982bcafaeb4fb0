"""The batched, differentiable hand layer (an ``nn.Module`` over :func:`interhandgen.hand.lbs.lbs`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from interhandgen.hand.lbs import kinematic_levels, lbs
from interhandgen.hand.model_data import HandModelData
from interhandgen.exceptions import InputError


@dataclasses.dataclass
class HandOutput:
    """Output of :class:`HandModel`. Metres.

    vertices: [B, V, 3]; joints: [B, 21, 3] (16 MANO joints then 5 fingertips, see hand.joints);
    full_pose: [B, 48] axis-angle (global orientation then 15 joints, hands_mean included);
    betas: [B, S]; transl: [B, 3].
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    full_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor


class HandModel(nn.Module):
    """MANO-compatible hand layer with the smplx calling convention.

    ``model(betas=[B,10], global_orient=[B,3], hand_pose=[B,P], transl=[B,3])``; omitted arguments are zeros of
    the batch size of the given ones. With ``use_pca`` (default) ``hand_pose`` holds P = ``num_pca_comps``
    coefficients of the pose PCA; otherwise 45 axis-angle numbers (15 joints x 3). Unless ``flat_hand_mean``,
    the model's mean pose ``hands_mean`` is added in both modes, as smplx.MANO does.
    Device and dtype of the computation follow the inputs.
    """

    def __init__(
        self,
        data: HandModelData,
        use_pca: bool = True,
        num_pca_comps: int = 45,
        flat_hand_mean: bool = False,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(data, HandModelData):
            raise TypeError(f"data must be a HandModelData, got {type(data).__name__}")
        if use_pca and not (1 <= int(num_pca_comps) <= 45):
            raise InputError(f"num_pca_comps must be in [1, 45], got {num_pca_comps}")
        self.data = data
        self.side = data.side
        self.name = data.name
        self.use_pca = bool(use_pca)
        self.num_pca_comps = int(num_pca_comps) if use_pca else 45
        self.flat_hand_mean = bool(flat_hand_mean)
        self.check_inputs = check_inputs
        self.parents = [int(p) for p in data.parents]
        self._levels = kinematic_levels(self.parents)
        V, S = data.num_verts, data.num_betas
        self.num_verts = V
        self.num_betas = S
        self.faces_np = data.faces.copy()
        f32 = torch.float32
        self.register_buffer("faces", torch.as_tensor(data.faces, dtype=torch.long), persistent=False)
        self.register_buffer("v_template", torch.as_tensor(data.v_template, dtype=f32), persistent=False)
        self.register_buffer("shapedirs", torch.as_tensor(data.shapedirs.reshape(V * 3, S), dtype=f32), persistent=False)
        self.register_buffer(
            "posedirs", torch.as_tensor(data.posedirs.reshape(V * 3, -1).T.copy(), dtype=f32), persistent=False
        )
        self.register_buffer("J_regressor", torch.as_tensor(data.J_regressor, dtype=f32), persistent=False)
        self.register_buffer("lbs_weights", torch.as_tensor(data.weights, dtype=f32), persistent=False)
        self.register_buffer(
            "hand_components", torch.as_tensor(data.hands_components[: self.num_pca_comps], dtype=f32), persistent=False
        )
        mean = np.zeros(45) if flat_hand_mean else data.hands_mean
        self.register_buffer("pose_mean", torch.as_tensor(mean, dtype=f32), persistent=False)
        self.register_buffer("fingertip_ids", torch.as_tensor(data.fingertip_ids, dtype=torch.long), persistent=False)
        self._cache: dict[tuple, dict[str, torch.Tensor]] = {}

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, side={self.side!r}, num_verts={self.num_verts}, use_pca={self.use_pca}, "
            f"num_pca_comps={self.num_pca_comps}, flat_hand_mean={self.flat_hand_mean}"
        )

    @property
    def pose_dim(self) -> int:
        return self.num_pca_comps if self.use_pca else 45

    def _apply(self, fn, *args, **kwargs):
        self._cache = {}
        return super()._apply(fn, *args, **kwargs)

    def _buffers_like(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        key = (device, dtype)
        if key not in self._cache:
            names = ("v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights", "hand_components", "pose_mean")
            self._cache[key] = {n: getattr(self, n).to(device=device, dtype=dtype) for n in names}
        return self._cache[key]

    def _gather_inputs(self, **inputs: torch.Tensor | None) -> tuple[int, torch.device, torch.dtype]:
        given = {k: v for k, v in inputs.items() if v is not None}
        if not given:
            raise InputError("HandModel needs at least one of betas, global_orient, hand_pose, transl to know the batch size")
        ref_name, ref = next(iter(given.items()))
        for name, t in given.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
            if t.dtype != ref.dtype or t.device != ref.device:
                raise TypeError(
                    f"{name} has dtype {t.dtype} on {t.device}, but {ref_name} has {ref.dtype} on {ref.device}; "
                    "all inputs must share dtype and device"
                )
        expected = {"betas": self.num_betas, "global_orient": 3, "hand_pose": self.pose_dim, "transl": 3}
        B = ref.shape[0] if ref.dim() == 2 else None
        for name, t in given.items():
            if t.dim() != 2 or t.shape[1] != expected[name] or t.shape[0] != B:
                raise InputError(
                    f"{name} must have shape [B, {expected[name]}] with the batch size B shared by all inputs "
                    f"(B = {B} from {ref_name}), got {list(t.shape)}"
                )
            if self.check_inputs and not torch.isfinite(t).all():
                raise InputError(f"{name} contains NaN or inf")
        return int(B), ref.device, ref.dtype

    def full_pose(self, global_orient: torch.Tensor, hand_pose: torch.Tensor) -> torch.Tensor:
        """[B, 48] axis-angle pose (hands_mean added unless flat_hand_mean)."""
        bufs = self._buffers_like(hand_pose.device, hand_pose.dtype)
        joint_pose = hand_pose @ bufs["hand_components"] if self.use_pca else hand_pose
        return torch.cat([global_orient, joint_pose + bufs["pose_mean"]], dim=1)

    def forward(
        self,
        betas: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        hand_pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> HandOutput:
        B, device, dtype = self._gather_inputs(betas=betas, global_orient=global_orient, hand_pose=hand_pose, transl=transl)
        zeros = lambda n: torch.zeros(B, n, device=device, dtype=dtype)  # noqa: E731
        betas = zeros(self.num_betas) if betas is None else betas
        global_orient = zeros(3) if global_orient is None else global_orient
        hand_pose = zeros(self.pose_dim) if hand_pose is None else hand_pose
        transl = zeros(3) if transl is None else transl
        bufs = self._buffers_like(device, dtype)
        full_pose = self.full_pose(global_orient, hand_pose)
        verts, joints = lbs(
            betas, full_pose, bufs["v_template"], bufs["shapedirs"], bufs["posedirs"],
            bufs["J_regressor"], self.parents, bufs["lbs_weights"], self._levels,
        )
        tips = verts[:, self.fingertip_ids.to(device)]
        joints = torch.cat([joints, tips], dim=1) + transl[:, None]
        verts = verts + transl[:, None]
        return HandOutput(vertices=verts, joints=joints, full_pose=full_pose, betas=betas, transl=transl)
