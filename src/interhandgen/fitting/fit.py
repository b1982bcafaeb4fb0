"""Two-hand fitting by optimisation: data terms + prior + hand-hand penetration, in stages.

Unknowns (:mod:`interhandgen.fitting.body`): per hand 45 pose PCA coefficients, 10 betas, a 6D rotation and the
camera-frame centre joint, batched over frames [B, 2, 64]. The loss per frame is

    E = E_2d + E_3d + E_init + w_prior(p) * prior(canonical(y)) + ramp(p) (w_pen * penetration(y) / (2 mm)^2
                                                                          + w_contact * contact(y))
        + w_vol(p) * volume(y) / (2 mm)^2

- E_2d = sum_j c_j rho(|pi(J_j) - u_j| / sigma_2d): confidence-weighted, Geman-McClure robust pixel residuals
  (``robust_2d`` pixels of saturation) of the projected joints (OpenCV pinhole, :mod:`interhandgen.fitting.camera`).
- E_3d = sum_j c_j rho(|J_j - X_j| / sigma_3d): the same on camera-frame 3D joints.
- E_init = sum_j |J_j - J_j^init|^2 / sigma_init^2 when an initial estimate is given (it acts as a soft 3D
  observation of every joint, so a refit stays near it where the other terms are silent).
- prior: one of :mod:`interhandgen.fitting.priors` on the canonical pair (left = anchor).
- w_prior(p): falls linearly from ``prior_weight`` to ``prior_weight_end`` over stage 2 (p = its progress in
  [0, 1]); ramp(p) = 0.1 + 0.9 p.
- contact (off by default): (d / 2 mm)^2 of the closest distance d between the two hands' surface samples when
  d < ``contact_range``.
- penetration: :func:`interhandgen.guidance.surface_penetration_loss` (the anti-penetration guidance's
  tangent-plane depth penalty on farthest-point surface subsets of both hands), squared metres.
- volume: :func:`interhandgen.geometry.proxy.sphere_penetration` on the hands' inscribed-sphere proxies (sees deep
  overlaps; exactly 0 for hands apart); w_vol(p) is 0 before ``volume_start``, then rises linearly to
  ``volume_weight`` at the end of stage 2.

A confidence of 0 removes a joint from every term and from the initialisation exactly (its gradient is 0).

Stages:
 0. initialisation per hand: from the initial estimate; else a weighted Kabsch fit of the mean-pose hand's joints to
    the observed 3D joints; else (2D only) depth from the keypoints' spread, centre by back-projection, and
    ``hypotheses`` rotations (the 24 rotations of the cube), each refined for ``hypothesis_iterations`` steps of
    stage 1, keeping the best per hand; a hand never observed is placed at the training data's mean pose
    relative to the other hand. With ``flip_hypotheses``, every hand seen only in 2D also starts in its
    depth-mirrored orientation (:func:`depth_mirrored_rotation`); the 4 combinations run batched through stage 1
    and the first ``flip_iterations`` of stage 2, then each frame keeps the one of lowest energy (:meth:`Fitter.select`).
 1. global: rotation and centre of both hands on the data terms only (pose and shape held).
 2. fingers: all unknowns with the data terms, the prior and the penetration term.
Adam throughout; every frame's unknowns get their own moments, so frames do not interact and the batch is only a
speed-up.
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import torch
from tqdm.auto import tqdm

from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.fitting.body import BETAS, CENTER, POSE, ROT6D, TwoHandBody, camera_from_canonical, \
    canonical_from_camera, set_from_vectors, vectors_from_set
from interhandgen.fitting.camera import project
from interhandgen.fitting.observations import Observations
from interhandgen.geometry.loss import geman_mcclure
from interhandgen.geometry.proxy import sphere_penetration
from interhandgen.hand.joints import MCP_JOINTS
from interhandgen.fitting._model import surface_penetration_loss
from interhandgen.fitting.priors import DiffusionPrior
from interhandgen.rotations import matrix_to_rot6d, rot6d_to_matrix

PENETRATION_SCALE = 0.002  # metres: a point 2 mm deep costs about 1
FLIP_SELECT = ("energy", "data")  # FitSettings.flip_select


@dataclasses.dataclass
class FitSettings:
    """Options of :func:`fit` (the CLI and the benchmark read their defaults from here)."""

    # stages 1 + 2; 600 since 2026-12-06 (200 before): on the validation split the fits with a prior still improved
    # from 200 to 600, the fit without one stopped improving at 300 (docs/fitting.md, "Iterations")
    iterations: int = 600
    global_fraction: float = 0.3  # share of the iterations in stage 1
    hypotheses: int = 24  # initial rotations tried for a hand seen only in 2D (<= 24)
    hypothesis_iterations: int = 15
    lr_pose: float = 0.05
    lr_betas: float = 0.05
    lr_rotation: float = 0.03
    lr_center: float = 0.004  # metres per step
    sigma_2d: float = 4.0  # pixels
    robust_2d: float = 30.0  # pixels: Geman-McClure saturation of the 2D residual
    sigma_3d: float = 0.01  # metres
    robust_3d: float = 0.05  # metres
    sigma_init: float = 0.01  # metres
    prior_weight: float = 5.0  # tuned on the validation split for all three priors (docs/fitting.md)
    # Weight at the end of stage 2 (linear from prior_weight); None keeps it constant. A falling weight lets the
    # prior shape the solution early and the data settle the details late (DPoser's decreasing schedule).
    prior_weight_end: float | None = None
    penetration_weight: float = 10.0  # ramped up over stage 2, see Fitter.energy
    penetration_points: int = 192
    # Contact: when the fitted hands' surface samples come within contact_range of each other, their closest pair
    # is pulled together (weight ramped up over stage 2 like the penetration term; 0 disables): most interacting
    # hands touch, and the penetration term alone leaves a gap.
    contact_weight: float = 0.0
    contact_range: float = 0.01  # metres
    # ScoreHMR-style guided reverse diffusion (interhandgen prior only; None: off): at this progress of stage 2 the
    # estimate is noised to guided_t * T and denoised by guided_steps DDIM steps of the prior, each guided by
    # guided_inner normalised data-gradient steps of guided_step_size (DiffusionPrior.guided_projection).
    guided_at: float | None = None
    guided_t: float = 0.2
    guided_steps: int = 10
    guided_step_size: float = 0.05
    guided_inner: int = 3
    # how the estimate reaches guided_t: False the forward process (fresh noise), True DDIM inversion (deterministic)
    guided_invert: bool = False
    # Depth-flip hypotheses (2D-only hands): every hand seen only in 2D also starts in its depth-mirrored
    # orientation (depth_mirrored_rotation), the 4 combinations of the two hands run batched through stage 1 and
    # the first flip_iterations of stage 2, and each frame keeps the combination of lowest energy (flip_select).
    # On, chosen by the data term right after stage 1: validation split, docs/fitting.md (Tuning, task a).
    flip_hypotheses: bool = True
    flip_iterations: int = 0
    flip_prior_draws: int = 4
    # What the choice minimises: "data" (the data term alone) or "energy" (the stage-2 total: data + this fit's
    # prior, averaged over flip_prior_draws noise draws shared by the candidates, + penetration). The priors,
    # the diffusion prior's ELBO included, rank the candidates worse than the data term does (docs/fitting.md,
    # "Can the diffusion prior's likelihood arbitrate the depth flips?").
    flip_select: str = "data"
    # Volumetric hand-hand penetration (inscribed-sphere proxies, geometry.proxy.sphere_penetration), ramped up
    # over stage 2 like the surface term; 0 disables. Sphere radii are re-capped every volume_radii_every steps.
    volume_weight: float = 50.0  # validation, task a: docs/fitting.md (Tuning)
    volume_radii_every: int = 10
    # The volume term is off until this progress of stage 2, then ramps linearly to volume_weight at its end: its
    # pull on deeply overlapping spheres is strong, and early it would push hands apart before the data has placed them.
    volume_start: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        if self.iterations < 1:
            raise InputError(f"iterations must be >= 1, got {self.iterations}")
        if not 0 <= self.global_fraction <= 1:
            raise InputError(f"global_fraction must lie in [0, 1], got {self.global_fraction}")
        if not 1 <= self.hypotheses <= 24:
            raise InputError(f"hypotheses must lie in 1..24, got {self.hypotheses}")
        for name in ("sigma_2d", "robust_2d", "sigma_3d", "robust_3d", "sigma_init", "lr_pose", "lr_betas",
                     "lr_rotation", "lr_center"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.prior_weight < 0 or self.penetration_weight < 0:
            raise InputError("prior_weight and penetration_weight must be >= 0")
        if self.contact_weight < 0 or not self.contact_range > 0:
            raise InputError(f"contact_weight must be >= 0 and contact_range > 0, got {self.contact_weight}, "
                             f"{self.contact_range}")
        if self.guided_at is not None and not (0.0 <= self.guided_at <= 1.0 and 0.0 < self.guided_t <= 1.0
                                               and self.guided_steps >= 1 and self.guided_inner >= 0
                                               and self.guided_step_size >= 0):
            raise InputError("guided_at must lie in [0, 1], guided_t in (0, 1], guided_steps >= 1, guided_inner >= 0 "
                             f"and guided_step_size >= 0; got {self.guided_at}, {self.guided_t}, {self.guided_steps}, "
                             f"{self.guided_inner}, {self.guided_step_size}")
        if self.flip_iterations < 0 or self.flip_prior_draws < 1:
            raise InputError(f"flip_iterations must be >= 0 and flip_prior_draws >= 1, got {self.flip_iterations}, "
                             f"{self.flip_prior_draws}")
        if self.flip_select not in FLIP_SELECT:
            raise InputError(f"flip_select must be one of {FLIP_SELECT}, got {self.flip_select!r}")
        if not 0.0 <= self.volume_start < 1.0:
            raise InputError(f"volume_start must lie in [0, 1), got {self.volume_start}")
        if self.volume_weight < 0 or self.volume_radii_every < 1:
            raise InputError(f"volume_weight must be >= 0 and volume_radii_every >= 1, got {self.volume_weight}, "
                             f"{self.volume_radii_every}")
        if self.prior_weight_end is not None and self.prior_weight_end < 0:
            raise InputError(f"prior_weight_end must be >= 0, got {self.prior_weight_end}")

    def prior_weight_at(self, progress: float) -> float:
        """The prior weight at ``progress`` in [0, 1] of stage 2."""
        if self.prior_weight_end is None:
            return self.prior_weight
        return self.prior_weight + (self.prior_weight_end - self.prior_weight) * progress


@dataclasses.dataclass
class FitResult:
    """vectors: camera-frame unknowns [B, 2, 64]; two_hands: the fitted pairs (camera frame, PCA pose space);
    diagnostics: per-frame lists (reprojection_px: mean pixel error over the observed 2D joints, None without
    2D; joint_3d_mm: the same for 3D joints; prior: the prior's value; penetration: the penalty) and seconds."""

    vectors: torch.Tensor
    two_hands: TwoHandSet
    diagnostics: dict


def cube_rotations() -> torch.Tensor:
    """The 24 rotations of the cube [24, 3, 3] (signed permutation matrices of determinant +1), identity first."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3)
            for r, c in enumerate(perm):
                m[r, c] = signs[r]
            if torch.det(m) > 0:
                mats.append(m)
    mats.sort(key=lambda m: -float(torch.trace(m)))
    return torch.stack(mats)


def depth_mirrored_rotation(rotation: torch.Tensor, centre: torch.Tensor, palm_normal: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] the depth-mirrored counterparts of hand rotations [N, 3, 3] centred at camera-frame ``centre`` [N, 3]:
    M R S, with M the reflection across the plane through the centre normal to the viewing ray and S the reflection
    of the hand's own palm normal ``palm_normal`` [3] (hand frame). A flat hand is its own mirror image across its
    palm plane, so M R S places it as the reflection in depth of the hand placed by R: both project to nearly the
    same keypoints (exactly, for a flat hand under orthographic projection), the 2D ambiguity the prior must resolve.
    The product of two reflections is a proper rotation."""
    d = torch.nn.functional.normalize(centre, dim=-1)
    eye = torch.eye(3, dtype=rotation.dtype, device=rotation.device)
    M = eye - 2.0 * d[:, :, None] * d[:, None, :]
    n = torch.nn.functional.normalize(palm_normal.to(rotation), dim=0)
    S = eye - 2.0 * n[:, None] * n[None, :]
    return M @ rotation @ S


def flip_candidates(y: torch.Tensor, needs: torch.Tensor, palm_normals: torch.Tensor) -> torch.Tensor:
    """[B, 4, 2, 64] the four depth-flip combinations of camera-frame pairs y [B, 2, 64]: candidate k flips the
    left hand if bit 0 of k is set and the right hand if bit 1 is, where ``needs`` [B, 2] (hands seen only in 2D)
    allows it (else the hand is kept). palm_normals [2, 3]: each hand's palm normal in its own frame."""
    B = y.shape[0]
    out = y[:, None].repeat(1, 4, 1, 1)
    for side in range(2):
        R = rot6d_to_matrix(y[:, side, ROT6D])
        flipped = matrix_to_rot6d(depth_mirrored_rotation(R, y[:, side, CENTER], palm_normals[side]))
        for k in range(4):
            if (k >> side) & 1:
                out[:, k, side, ROT6D] = torch.where(needs[:, side, None], flipped, y[:, side, ROT6D])
    return out.reshape(B, 4, 2, 64)


def data_terms(joints: torch.Tensor, obs: Observations, settings: FitSettings, robust: bool = True,
               init_joints: torch.Tensor | None = None) -> torch.Tensor:
    """Per-hand data energy [B, 2] of camera-frame joints [B, 2, 21, 3] (see the module docstring)."""
    out = joints.new_zeros(joints.shape[:2])
    if obs.keypoints_2d is not None:
        r = (project(joints.reshape(joints.shape[0], -1, 3), obs.intrinsics).reshape(*joints.shape[:3], 2)
             - obs.keypoints_2d.to(joints)).norm(dim=-1) / settings.sigma_2d
        rho = geman_mcclure(r, settings.robust_2d / settings.sigma_2d) if robust else r * r
        out = out + (obs.confidence_2d.to(joints) * rho).sum(-1)
    if obs.keypoints_3d is not None:
        r = (joints - obs.keypoints_3d.to(joints)).norm(dim=-1) / settings.sigma_3d
        rho = geman_mcclure(r, settings.robust_3d / settings.sigma_3d) if robust else r * r
        out = out + (obs.confidence_3d.to(joints) * rho).sum(-1)
    if init_joints is not None:
        out = out + (((joints - init_joints) / settings.sigma_init) ** 2).sum(dim=(-1, -2))
    return out


def contact_loss(points_a: torch.Tensor, points_b: torch.Tensor, contact_range: float) -> torch.Tensor:
    """[B] (d / 2 mm)^2 of the distance d between the closest points of two surface samples [B, N, 3] and
    [B, M, 3] (metres) where d < contact_range, else 0 (hands apart are left alone)."""
    d = torch.cdist(points_a, points_b).flatten(1).min(1).values
    return torch.where(d < contact_range, (d / PENETRATION_SCALE) ** 2, torch.zeros_like(d))


def _kabsch(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted rigid fit R [N, 3, 3], t [N, 3] minimising sum_j w_j |R src_j + t - dst_j|^2; src, dst [N, J, 3]."""
    wn = w / w.sum(1, keepdim=True).clamp(min=1e-12)
    ms, md = (wn[..., None] * src).sum(1), (wn[..., None] * dst).sum(1)
    H = ((src - ms[:, None]) * wn[..., None]).transpose(1, 2) @ (dst - md[:, None])
    U, _, Vh = torch.linalg.svd(H)
    d = torch.sign(torch.det(Vh.transpose(1, 2) @ U.transpose(1, 2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = Vh.transpose(1, 2) @ D @ U.transpose(1, 2)
    return R, md - (R @ ms[..., None])[..., 0]


def placement_observed(obs: Observations) -> bool:
    """True when the observations place the two hands in 3D (3D joints with a confidence > 0, or an initial
    estimate); 2D keypoints alone leave the relative depth open."""
    if obs.initial is not None:
        return True
    if obs.keypoints_3d is None:
        return False
    return obs.confidence_3d is None or bool((obs.confidence_3d > 0).any())


class Fitter:
    """Fits batches of observations with one hand model, one prior and one set of settings (built once).

    Args:
        hand_model: the hand model of the fitted pairs (default: the bundled open hand).
        prior: a module of :mod:`interhandgen.fitting.priors` (value [B] of canonical pairs [B, 2, 64]).
        stats_mean, stats_std: [2, 64] training statistics of the canonical vectors (the prior's model file): the
            mean relative placement of an unobserved hand.
        device: where the fit runs.
    """

    def __init__(self, prior: torch.nn.Module, stats_mean: torch.Tensor, stats_std: torch.Tensor,
                 hand_model: HandModelSpec | None = None, settings: FitSettings | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.settings = settings or FitSettings()
        self.settings.validate()
        self.hand_model = hand_model or HandModelSpec.open_hand()
        self.models = self.hand_model.load(pose_space="pca", device=self.device)
        self.body = TwoHandBody(self.models, self.settings.penetration_points).to(self.device)
        self.prior = prior.to(self.device)
        self.stats_mean = torch.as_tensor(stats_mean, dtype=torch.float32, device=self.device)
        self.stats_std = torch.as_tensor(stats_std, dtype=torch.float32, device=self.device)
        rest = torch.zeros(1, 2, 64, device=self.device)
        rest[..., ROT6D] = matrix_to_rot6d(torch.eye(3, device=self.device))
        with torch.no_grad():
            self.rest_joints = self.body.joints(rest)[0]  # [2, 21, 3], centre joint at the origin
        # Palm normal per hand (hand frame): the least-spread axis of the wrist and the four MCP joints.
        palm = self.rest_joints[:, (0,) + MCP_JOINTS]
        self.palm_normals = torch.linalg.svd(palm - palm.mean(1, keepdim=True)).Vh[:, 2]  # [2, 3]

    # ------------------------------------------------------------------ initialisation
    def initial_vectors(self, obs: Observations) -> tuple[torch.Tensor, torch.Tensor]:
        """(y [B, 2, 64], needs_hypotheses [B, 2] bool) before stage 1."""
        B, dev = len(obs), self.device
        y = torch.zeros(B, 2, 64, device=dev)
        y[..., ROT6D] = matrix_to_rot6d(torch.eye(3, device=dev))
        y[..., CENTER] = torch.tensor([0.0, 0.0, 0.5], device=dev)
        done = torch.zeros(B, 2, dtype=torch.bool, device=dev)
        hyp = torch.zeros(B, 2, dtype=torch.bool, device=dev)
        if obs.initial is not None:
            return vectors_from_set(obs.initial, self.models, device=dev), hyp
        rest = self.rest_joints
        if obs.keypoints_3d is not None:
            w = obs.confidence_3d
            ok = (w > 0).sum(-1) >= 3
            for s in range(2):
                R, t = _kabsch(rest[s].expand(B, 21, 3), obs.keypoints_3d[:, s], w[:, s])
                sel = ok[:, s]
                y[sel, s, ROT6D] = matrix_to_rot6d(R[sel])
                y[sel, s, CENTER] = t[sel]
                done[:, s] |= sel
        if obs.keypoints_2d is not None:
            w = obs.confidence_2d
            fx, fy, cx, cy = obs.intrinsics.unbind(1)
            for s in range(2):
                ws = w[:, s]
                ok = ((ws > 0).sum(-1) >= 2) & ~done[:, s]
                wn = ws / ws.sum(-1, keepdim=True).clamp(min=1e-12)
                m2 = (wn[..., None] * obs.keypoints_2d[:, s]).sum(1)
                spread2 = ((wn * ((obs.keypoints_2d[:, s] - m2[:, None]) ** 2).sum(-1)).sum(-1)).sqrt()
                m3 = (wn[..., None] * rest[s]).sum(1)
                spread3 = ((wn * ((rest[s] - m3[:, None]) ** 2).sum(-1)).sum(-1)).sqrt()
                # A random orientation shows sqrt(2/3) of a 3D spread in the image on average.
                z = (0.5 * (fx + fy) * (2.0 / 3.0) ** 0.5 * spread3 / spread2.clamp(min=1e-6)).clamp(0.1, 5.0)
                centre = torch.stack([(m2[:, 0] - cx) * z / fx, (m2[:, 1] - cy) * z / fy, z], dim=1)
                y[ok, s, CENTER] = centre[ok]
                hyp[:, s] |= ok
                done[:, s] |= ok
        # A hand never observed: the data's mean placement relative to the other hand.
        for s in range(2):
            lone = ~done[:, s] & done[:, 1 - s]
            if lone.any():
                y[lone, s] = self._partner_guess(y[lone], s)
        if (~done).all(1).any():
            bad = torch.nonzero((~done).all(1)).squeeze(1).tolist()
            raise InputError(f"frames {bad[:10]} have no usable observation of either hand (a hand needs >= 3 "
                             "3D joints or >= 2 2D keypoints with confidence > 0)")
        return y, hyp

    def _partner_guess(self, y: torch.Tensor, side: int) -> torch.Tensor:
        """The mean pose of the hand ``side`` relative to the other hand of y [N, 2, 64]."""
        mean = self.stats_mean
        R_rel = rot6d_to_matrix(mean[1, ROT6D])
        t_rel = mean[1, CENTER]
        other = y[:, 1 - side]
        R_o = rot6d_to_matrix(other[:, ROT6D])
        if side == 1:  # right hand from the left anchor
            R, c = R_o @ R_rel, other[:, CENTER] + (R_o @ t_rel)
        else:  # left anchor from the right hand: invert the relative pose
            R = R_o @ R_rel.T
            c = other[:, CENTER] - (R @ t_rel)
        out = torch.zeros_like(other)
        out[:, :55] = mean[side, :55]
        out[:, ROT6D] = matrix_to_rot6d(R)
        out[:, CENTER] = c
        return out

    # ------------------------------------------------------------------ stages
    def _optimiser(self, tensors: dict[str, torch.Tensor]) -> torch.optim.Optimizer:
        s = self.settings
        lrs = {"pose": s.lr_pose, "betas": s.lr_betas, "rot": s.lr_rotation, "center": s.lr_center}
        opt = torch.optim.Adam([{"params": [t], "lr": lrs[k]} for k, t in tensors.items()])
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
        return opt

    @staticmethod
    def _decay(opt: torch.optim.Optimizer, progress: float) -> None:
        """Learning rates fall linearly to 10% over a stage: Adam's steps are about lr long whatever the
        gradient, so the final precision follows the final rate."""
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * (1.0 - 0.9 * progress)

    @staticmethod
    def _assemble(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([p["pose"], p["betas"], p["rot"], p["center"]], dim=-1)

    def _split(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"pose": y[..., POSE].clone(), "betas": y[..., BETAS].clone(), "rot": y[..., ROT6D].clone(),
                "center": y[..., CENTER].clone()}

    def _global(self, y: torch.Tensor, obs: Observations, steps: int, init_joints, bar) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1 on y [N, 2, 64]: rotation and centre only. Returns (y, final per-hand data energy [N, 2])."""
        s = self.settings
        p = self._split(y)
        free = {k: p[k].requires_grad_() for k in ("rot", "center")}
        opt = self._optimiser(free)
        e = None
        for i in range(steps):
            self._decay(opt, i / max(steps - 1, 1))
            opt.zero_grad(set_to_none=True)
            e = data_terms(self.body.joints(self._assemble(p)), obs, s, robust=True, init_joints=init_joints)
            e.sum().backward()
            opt.step()
            bar.update(1)
        with torch.no_grad():
            y = self._assemble(p).detach()
            e = data_terms(self.body.joints(y), obs, self.settings, robust=True, init_joints=init_joints)
        return y, e

    def _guided(self, p: dict[str, torch.Tensor], obs: Observations, init_joints, gen: torch.Generator) -> None:
        """Replace the unknowns ``p`` in place by the prior's guided projection (see FitSettings.guided_at); the
        left hand's camera pose is kept, everything the canonical pair holds is projected."""
        s = self.settings
        if not hasattr(self.prior, "guided_projection"):
            raise InputError(f"guided_at needs the interhandgen prior, got {getattr(self.prior, 'name', self.prior)!r}")
        y = self._assemble(p).detach()
        R_l, c_l = rot6d_to_matrix(y[:, 0, ROT6D]), y[:, 0, CENTER]

        def energy(x: torch.Tensor) -> torch.Tensor:
            yc = camera_from_canonical(x, R_l, c_l)
            return data_terms(self.body.joints(yc), obs, s, robust=True, init_joints=init_joints).sum(1)

        x = self.prior.guided_projection(canonical_from_camera(y), energy, s.guided_t, s.guided_steps,
                                         s.guided_step_size, s.guided_inner, gen, invert=s.guided_invert)
        with torch.no_grad():
            for k, v in self._split(camera_from_canonical(x, R_l, c_l)).items():
                p[k].copy_(v)

    def _expand(self, obs: Observations, k: int) -> Observations:
        rep = lambda t: None if t is None else t.repeat_interleave(k, 0)  # noqa: E731
        return Observations(rep(obs.keypoints_2d), rep(obs.confidence_2d), rep(obs.keypoints_3d),
                            rep(obs.confidence_3d), rep(obs.intrinsics), obs.image_size)

    def energy(self, y: torch.Tensor, obs: Observations, progress: float, generator: torch.Generator,
               init_joints: torch.Tensor | None = None, radii: list[torch.Tensor] | None = None,
               candidates: int = 1) -> dict[str, torch.Tensor]:
        """The stage-2 terms per frame [B]: data, prior, penetration, volume, contact, total.

        radii: the hands' sphere radii for the volume term (computed when None). candidates > 1: y holds that many
        consecutive candidates per frame and the prior value is the mean over ``flip_prior_draws`` draws of noise
        shared by the candidates of a frame (selection, not optimisation)."""
        s = self.settings
        joints, surface = self.body.joints_and_surface(y)
        data = data_terms(joints, obs, s, robust=True, init_joints=init_joints).sum(1)
        w_prior = s.prior_weight_at(progress)
        used = max(s.prior_weight, s.prior_weight_end or 0.0) > 0  # the value is reported even where w_prior is 0
        x = canonical_from_camera(y)
        if not used:
            prior = data.new_zeros(len(data))
        elif candidates > 1 and isinstance(self.prior, DiffusionPrior):
            prior = self._shared_noise_prior(x, progress, generator, candidates)
        else:
            prior = self.prior(x, progress, generator)
        zeros = data.new_zeros(len(data))
        pen = surface_penetration_loss(*surface) / PENETRATION_SCALE ** 2 if s.penetration_weight > 0 else zeros
        w_volume = s.volume_weight * min(max((progress - s.volume_start) / (1.0 - s.volume_start), 0.0), 1.0)
        if w_volume > 0:
            centres, radii = self.body.spheres(y, radii)
            volume = sphere_penetration(surface[0], centres[0], radii[0], surface[2], centres[1], radii[1]) \
                / PENETRATION_SCALE ** 2
        else:
            volume = zeros
        contact = contact_loss(surface[0], surface[2], s.contact_range) if s.contact_weight > 0 else zeros
        # The penetration and contact weights ramp up over stage 2 (from 10% to 100%): the hands first find their
        # places from the data and the prior, then are pushed apart where they still overlap.
        ramp = 0.1 + 0.9 * progress
        total = data + w_prior * prior + ramp * (s.penetration_weight * pen + s.contact_weight * contact) \
            + w_volume * volume
        return {"data": data, "prior": prior, "penetration": pen, "volume": volume, "contact": contact,
                "total": total}

    @torch.no_grad()
    def select(self, y: torch.Tensor, obs: Observations, progress: float, generator: torch.Generator,
               init_joints: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(best [B], energies [B, k]) of the k consecutive candidates per frame in y [B k, 2, 64] (obs and
        init_joints expanded alike): the stage-2 energy at ``progress`` (data + this fit's prior + penetration), its
        prior value averaged under noise shared by the candidates of a frame, or with ``flip_select="data"`` the
        data term alone; lowest wins."""
        key = "total" if self.settings.flip_select == "energy" else "data"
        e = self.energy(y, obs, progress, generator, init_joints, candidates=k)[key].view(-1, k)
        return e.argmin(1), e

    def _shared_noise_prior(self, x: torch.Tensor, progress: float, generator: torch.Generator, k: int) -> torch.Tensor:
        """[B K] the diffusion prior's value of x [B K, 2, 64] (k candidates per frame), averaged over
        ``flip_prior_draws`` draws of timestep and noise, each shared by the k candidates of a frame: candidates
        are compared under the same noise, so their difference is not buried in the noise's variance."""
        B = x.shape[0] // k
        total = x.new_zeros(x.shape[0])
        for _ in range(self.settings.flip_prior_draws):
            t = self.prior.timesteps(B, progress, generator).repeat_interleave(k)
            eps = torch.randn((B, 1) + x.shape[1:], generator=generator).expand(B, k, *x.shape[1:])
            total = total + self.prior(x, progress, generator, timesteps=t, noise=eps.reshape(x.shape))
        return total / self.settings.flip_prior_draws

    def _take(self, p: dict[str, torch.Tensor], opt: torch.optim.Optimizer, best: torch.Tensor, k: int
              ) -> tuple[dict[str, torch.Tensor], torch.optim.Optimizer]:
        """Keep candidate ``best`` [B] of each frame's k consecutive candidates in the unknowns p [B k, ...],
        with their Adam moments (the optimisation goes on as if it had run on the winners alone)."""
        B = best.shape[0]
        idx = torch.arange(B, device=best.device)
        pick = lambda t: t.detach().view(B, k, *t.shape[1:])[idx, best].clone()  # noqa: E731
        new = {name: pick(t).requires_grad_() for name, t in p.items()}
        new_opt = self._optimiser(new)
        for name, t in p.items():
            new_opt.state[new[name]] = {key: pick(v) if v.dim() and v.shape[0] == B * k else v.clone()
                                        for key, v in opt.state[t].items()}
        for old_group, group in zip(opt.param_groups, new_opt.param_groups):
            group["lr"] = old_group["lr"]
        return new, new_opt

    def fit(self, obs: Observations, progress: bool = True) -> FitResult:
        """Fit every frame of ``obs``; see the module docstring."""
        s = self.settings
        t0 = time.perf_counter()
        obs = obs.to(self.device)
        if hasattr(self.prior, "observe_placement"):  # the two-hand priors' placement weight is for 2D-only fits
            self.prior.observe_placement(placement_observed(obs))
        gen = torch.Generator().manual_seed(int(s.seed))
        y, hyp = self.initial_vectors(obs)
        B = len(obs)
        init_joints = None
        if obs.initial is not None:
            with torch.no_grad():
                init_joints = self.body.joints(y)
        n1 = int(round(s.iterations * s.global_fraction))
        n2 = s.iterations - n1
        K = s.hypotheses if bool(hyp.any()) else 1
        total = n2 + n1 + (s.hypothesis_iterations if K > 1 else 0)
        bar = tqdm(total=total, desc="fit", unit="it", disable=not progress)
        if K > 1:
            rots = cube_rotations()[:K].to(self.device)  # [K, 3, 3]
            yk = y.repeat_interleave(K, 0).clone()  # [B K, 2, 64]
            hk = hyp.repeat_interleave(K, 0)
            cand = matrix_to_rot6d(rots).repeat(B, 1)  # [B K, 6]
            for side in range(2):
                yk[hk[:, side], side, ROT6D] = cand[hk[:, side]]
            ij = None if init_joints is None else init_joints.repeat_interleave(K, 0)
            yk, e = self._global(yk, self._expand(obs, K), s.hypothesis_iterations, ij, bar)
            best = e.view(B, K, 2).argmin(1)  # [B, 2]: hands are independent in stage 1
            yk = yk.view(B, K, 2, 64)
            idx = torch.arange(B, device=self.device)
            y = torch.stack([yk[idx, best[:, side], side] for side in range(2)], dim=1)
        # Depth-flip hypotheses: every frame's 4 combinations run batched (frames stay independent) until the
        # selection, at stage-2 iteration ``select_at`` (0: right after stage 1).
        flips = 4 if s.flip_hypotheses and bool(hyp.any()) and n2 > 0 else 1
        cur_obs, cur_init = obs, init_joints
        if flips > 1:
            y = flip_candidates(y, hyp, self.palm_normals).reshape(B * flips, 2, 64)
            cur_obs = self._expand(obs, flips)
            cur_init = None if init_joints is None else init_joints.repeat_interleave(flips, 0)
        select_at = min(s.flip_iterations, n2 - 1) if flips > 1 else -1
        if n1:
            y, _ = self._global(y, cur_obs, n1, cur_init, bar)
        p = self._split(y)
        for t in p.values():
            t.requires_grad_()
        opt = self._optimiser(p)
        guided_it = None if s.guided_at is None else int(round(s.guided_at * max(n2 - 1, 1)))
        radii = None
        choice = None
        for it in range(n2):
            progress = it / max(n2 - 1, 1)
            if it == select_at:
                best, _ = self.select(self._assemble(p).detach(), cur_obs, progress, gen, cur_init, flips)
                choice = best
                p, opt = self._take(p, opt, best, flips)
                cur_obs, cur_init, flips, radii = obs, init_joints, 1, None
            if it == guided_it:
                self._guided(p, cur_obs, cur_init, gen)
            if s.volume_weight > 0 and progress > s.volume_start and (radii is None or it % s.volume_radii_every == 0):
                radii = self.body.spheres(self._assemble(p).detach())[1]
            self._decay(opt, progress)
            opt.zero_grad(set_to_none=True)
            terms = self.energy(self._assemble(p), cur_obs, progress, gen, cur_init, radii)
            terms["total"].sum().backward()
            opt.step()
            bar.update(1)
        bar.close()
        y = self._assemble(p).detach()
        diagnostics = self.diagnostics(y, obs, gen, init_joints)
        diagnostics["flip_choice"] = None if choice is None else choice.tolist()  # candidate kept (flip_candidates)
        diagnostics["seconds"] = time.perf_counter() - t0
        meta = {"fit": {"prior": getattr(self.prior, "name", type(self.prior).__name__),
                        "settings": dataclasses.asdict(s), "frames": diagnostics}}
        two = set_from_vectors(y, self.models, self.hand_model, metadata=meta)
        return FitResult(y, two, diagnostics)

    @torch.no_grad()
    def diagnostics(self, y: torch.Tensor, obs: Observations, gen: torch.Generator, init_joints=None) -> dict:
        joints = self.body.joints(y)
        out: dict = {}
        for key, kp, conf, err in (
                ("reprojection_px", obs.keypoints_2d, obs.confidence_2d,
                 lambda: (project(joints.reshape(len(y), -1, 3), obs.intrinsics).reshape(*joints.shape[:3], 2)
                          - obs.keypoints_2d).norm(dim=-1)),
                ("joint_3d_mm", obs.keypoints_3d, obs.confidence_3d,
                 lambda: (joints - obs.keypoints_3d).norm(dim=-1) * 1000.0)):
            if kp is None:
                out[key] = [None] * len(y)
                continue
            m = (conf > 0).float()
            e = (err() * m).sum((1, 2)) / m.sum((1, 2)).clamp(min=1)
            out[key] = [float(v) if c > 0 else None for v, c in zip(e.tolist(), m.sum((1, 2)).tolist())]
        terms = self.energy(y, obs, 1.0, gen, init_joints)
        out["prior"] = terms["prior"].tolist()
        out["penetration"] = terms["penetration"].tolist()
        out["volume"] = terms["volume"].tolist()
        out["contact"] = terms["contact"].tolist()
        out["data"] = terms["data"].tolist()
        return out
