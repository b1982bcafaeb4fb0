"""Anti-penetration guidance (APG): push the conditioned hand out of the anchor during sampling.

At every reverse step the predicted clean sample x0_hat (standardised 64-vector of the other hand) is moved
against the gradient of the differentiable penetration penalty between the fixed anchor mesh and the mesh that
x0_hat decodes to, with step weights ``weight * decay**(steps_left)``: small while the sample is still mostly
noise, largest at the end (the reference code's schedule, 7 * 0.9^k). Only the last ``last_steps`` steps are
guided (default 10: earlier weights are below 0.9^10 = 0.35 of the final one, while each guided step costs a hand
forward, a nearest-vertex search and a backward pass). Batched over all samples: one hand-layer
forward, one penetration loss and one backward per step, no per-sample loop, CPU or GPU.
"""

from __future__ import annotations

import torch

from interhandgen.geometry import penetration_loss
from interhandgen.hand import CENTER_JOINT, HandModel
from interhandgen.rotations import rot6d_to_matrix

POSE, SHAPE, ROT6D, TRANSL = slice(0, 45), slice(45, 55), slice(55, 61), slice(61, 64)


def canonical_vertices(x: torch.Tensor, model: HandModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode raw (de-standardised) canonical hand vectors [B, 64] into vertices and joints in the anchor frame.

    The hand is posed with zero global orientation, centred on its middle-finger MCP joint, then rotated by the
    6D rotation about that joint and moved to the translation: v = R (v0 - c0) + t. Differentiable.
    Returns vertices [B, V, 3] and joints [B, 21, 3], metres.
    """
    if x.dim() != 2 or x.shape[1] != 64:
        raise ValueError(f"x must have shape [B, 64], got {list(x.shape)}")
    out = model(betas=x[:, SHAPE], hand_pose=x[:, POSE])
    R = rot6d_to_matrix(x[:, ROT6D])
    c = out.joints[:, CENTER_JOINT : CENTER_JOINT + 1]
    t = x[:, None, TRANSL]
    verts = (out.vertices - c) @ R.transpose(1, 2) + t
    joints = (out.joints - c) @ R.transpose(1, 2) + t
    return verts, joints


class AntiPenetrationGuidance:
    """An ``x0_guidance`` hook for :func:`interhandgen.diffusion.ddim_sample`.

    Args:
        anchor_verts: [B, V, 3] the anchor hand's vertices in the canonical frame (fixed).
        anchor_faces: [F, 3].
        other_model: hand layer of the conditioned hand.
        mean, std: [64] statistics that standardise the conditioned hand's vector.
        weight: step size scale (0 disables); decay: per-step factor, see module docstring.
        num_steps: number of reverse steps of the sampler (for the schedule).
        rho: Geman-McClure scale in metres.
        vertex_stride: test every k-th vertex (see :func:`interhandgen.geometry.penetration_loss`); 3 cuts the
            nearest-vertex search ninefold on the 2,718-vertex open hand.
    """

    def __init__(self, anchor_verts: torch.Tensor, anchor_faces, other_model: HandModel, mean: torch.Tensor,
                 std: torch.Tensor, weight: float, num_steps: int, decay: float = 0.9, rho: float = 0.05,
                 last_steps: int | None = 10, vertex_stride: int = 3) -> None:
        if weight < 0:
            raise ValueError(f"apg weight must be >= 0, got {weight}")
        self.anchor_verts = anchor_verts.detach()
        self.anchor_faces = torch.as_tensor(anchor_faces, dtype=torch.long, device=anchor_verts.device)
        self.model = other_model
        self.mean, self.std = mean, std
        self.weight, self.decay, self.rho, self.num_steps = float(weight), float(decay), float(rho), int(num_steps)
        self.last_steps = last_steps
        self.vertex_stride = int(vertex_stride)
        self.calls = 0

    def step_weight(self, step_index: int) -> float:
        steps_left = self.num_steps - 1 - step_index
        if self.last_steps is not None and steps_left >= self.last_steps:
            return 0.0
        return self.weight * self.decay ** steps_left

    def __call__(self, x0_hat: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, step_index: int) -> torch.Tensor:
        w = self.step_weight(step_index)
        self.calls += 1
        if w == 0.0:
            return x0_hat
        with torch.enable_grad():
            x = x0_hat.detach().requires_grad_(True)
            verts, _ = canonical_vertices(x * self.std + self.mean, self.model)
            loss = penetration_loss(self.anchor_verts, self.anchor_faces, verts, self.model.faces, rho=self.rho,
                                    vertex_stride=self.vertex_stride)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        return x0_hat - w * grad
