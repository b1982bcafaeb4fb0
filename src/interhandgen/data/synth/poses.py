"""Named hand-pose families in anatomical joint components, and their batched random sampling.

A pose family is a table of mean anatomical components [15, 3] (joints 1..15; flexion, abduction, twist; see
:mod:`interhandgen.data.synth.anatomy`) plus noise scales. Samples are drawn in the *logit space of the joint
limits*: ``c = lo + (hi - lo) * sigmoid(z)``, ``z = logit((mean - lo) / (hi - lo)) + noise``. Every sample is
therefore strictly inside the joint limits by construction (no clipping), and the same parameterisation is used
by the contact optimisation, which can never leave the limits either.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from interhandgen.data.synth.anatomy import JOINT_LIMITS
from interhandgen.hand.joints import FINGER_JOINTS
from interhandgen.exceptions import InputError

LONG_FINGERS = ("index", "middle", "ring", "pinky")
# Abduction of each long finger per unit of "spread" (fingers fan out around the middle finger).
SPREAD_PATTERN = {"index": 1.0, "middle": 0.1, "ring": -0.7, "pinky": -1.3}


def pose_table(
    curl: dict[str, tuple[float, float, float]] | tuple[float, float, float],
    spread: float = 0.0,
    thumb: tuple[float, float, float, float, float] = (0.2, 0.0, 0.1, 0.1, 0.1),
) -> np.ndarray:
    """Mean anatomical components [15, 3] of a pose.

    Args:
        curl: (MCP, PIP, DIP) flexion in radians, one triple for all long fingers or a dict per finger name.
        spread: abduction scale of the long fingers (radians for the index finger), see ``SPREAD_PATTERN``.
        thumb: (CMC palmar abduction, CMC adduction, CMC twist, MCP flexion, IP flexion), radians.
    """
    table = np.zeros((15, 3))
    for name in LONG_FINGERS:
        c = curl[name] if isinstance(curl, dict) else curl
        mcp, pip, dip = FINGER_JOINTS[name]
        table[mcp - 1, 0], table[pip - 1, 0], table[dip - 1, 0] = c
        table[mcp - 1, 1] = spread * SPREAD_PATTERN[name]
    cmc, tmcp, tip = FINGER_JOINTS["thumb"]
    table[cmc - 1] = thumb[0], thumb[1], thumb[2]
    table[tmcp - 1, 0] = thumb[3]
    table[tip - 1, 0] = thumb[4]
    return table


FIST = (1.45, 1.65, 1.0)
FIST_THUMB = (0.55, 0.55, 0.55, 0.55, 0.45)


@dataclasses.dataclass(frozen=True)
class PoseFamily:
    """A named hand pose with random variation.

    ``mean`` [15, 3] anatomical components; ``joint_noise`` radians of independent noise per component;
    ``curl_noise`` radians of a shared flexion offset of all long fingers (the whole hand opens/closes).
    """

    name: str
    mean: np.ndarray
    joint_noise: float = 0.08
    curl_noise: float = 0.10


POSE_FAMILIES: dict[str, PoseFamily] = {
    f.name: f
    for f in [
        PoseFamily("flat", pose_table((0.08, 0.08, 0.05), spread=0.05, thumb=(-0.2, 0.15, 0.0, 0.05, 0.05)), 0.05, 0.06),
        PoseFamily("flat_spread", pose_table((0.05, 0.08, 0.05), spread=0.22, thumb=(-0.2, -0.35, 0.0, 0.0, 0.05)), 0.05, 0.05),
        PoseFamily("relaxed", pose_table((0.35, 0.45, 0.3), spread=0.05, thumb=(0.35, 0.1, 0.2, 0.2, 0.2)), 0.08, 0.12),
        PoseFamily("fist", pose_table(FIST, thumb=FIST_THUMB), 0.05, 0.05),
        PoseFamily("point_index", pose_table(
            {"index": (0.05, 0.05, 0.05), "middle": FIST, "ring": FIST, "pinky": FIST}, thumb=FIST_THUMB), 0.05, 0.03),
        PoseFamily("grip", pose_table((0.75, 0.95, 0.6), spread=0.0, thumb=(0.75, 0.2, 0.55, 0.25, 0.25)), 0.07, 0.12),
        PoseFamily("cup", pose_table((0.3, 0.35, 0.2), spread=-0.05, thumb=(0.25, 0.35, 0.2, 0.2, 0.1)), 0.05, 0.08),
        PoseFamily("hook", pose_table((0.35, 1.5, 0.95), spread=0.0, thumb=(0.35, 0.1, 0.2, 0.2, 0.2)), 0.06, 0.08),
        PoseFamily("heart", pose_table(
            {"index": (0.6, 1.3, 0.8), "middle": FIST, "ring": FIST, "pinky": FIST},
            thumb=(0.25, -0.35, 0.1, 0.0, 0.0)), 0.05, 0.03),
        PoseFamily("steeple", pose_table((0.25, 0.35, 0.25), spread=0.15, thumb=(0.3, -0.2, 0.1, 0.1, 0.1)), 0.06, 0.08),
        PoseFamily("thumb_out", pose_table((0.5, 0.6, 0.4), spread=0.05, thumb=(0.5, -0.25, 0.3, 0.05, 0.05)), 0.07, 0.1),
    ]
}
for _finger in LONG_FINGERS:
    _curl = {n: ((0.05, 0.05, 0.05) if n == _finger else (0.9, 1.0, 0.7)) for n in LONG_FINGERS}
    POSE_FAMILIES[f"point_{_finger}"] = PoseFamily(
        f"point_{_finger}", pose_table(_curl, thumb=(0.45, 0.35, 0.4, 0.3, 0.3)), 0.06, 0.03
    )


def _limits_t(device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    lim = torch.as_tensor(JOINT_LIMITS, device=device, dtype=dtype)
    return lim[..., 0], lim[..., 1]


def components_to_logits(components: torch.Tensor) -> torch.Tensor:
    """[..., 15, 3] components strictly inside the joint limits -> logits z."""
    lo, hi = _limits_t(components.device, components.dtype)
    u = (components - lo) / (hi - lo)
    if not bool(((u > 0) & (u < 1)).all()):
        raise InputError("components must lie strictly inside the joint limits (JOINT_LIMITS)")
    return torch.logit(u)


def logits_to_components(logits: torch.Tensor) -> torch.Tensor:
    """[..., 15, 3] logits -> components inside the joint limits (smooth, differentiable)."""
    lo, hi = _limits_t(logits.device, logits.dtype)
    return lo + (hi - lo) * torch.sigmoid(logits)


def sample_pose_logits(family: PoseFamily, num: int, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """[num, 15, 3] random logits of ``family`` (CPU; move to the device afterwards for determinism).

    Noise given in radians is converted to logit units with the local slope of the sigmoid at the mean, so
    that near the mean the angular noise has the stated standard deviation; PIP-DIP coupling is kept by
    adding the shared curl offset to all flexions of the long fingers (DIP gets 2/3 of it).
    """
    if num < 0:
        raise InputError(f"num must be >= 0, got {num}")
    mean = torch.as_tensor(family.mean, dtype=torch.float64)
    lo, hi = _limits_t("cpu", torch.float64)
    u = ((mean - lo) / (hi - lo)).clamp(0.02, 0.98)  # families are authored inside the limits; keep a margin
    z0 = torch.logit(u)
    slope = (hi - lo) * u * (1 - u)  # d angle / d z at the mean
    eps = torch.randn((num, 15, 3), generator=generator, dtype=torch.float64)
    curl = torch.randn((num, 1), generator=generator, dtype=torch.float64) * family.curl_noise
    angle_noise = eps * family.joint_noise
    for name in LONG_FINGERS:
        mcp, pip, dip = FINGER_JOINTS[name]
        angle_noise[:, mcp - 1, 0] += curl[:, 0]
        angle_noise[:, pip - 1, 0] += curl[:, 0]
        angle_noise[:, dip - 1, 0] += curl[:, 0] * (2.0 / 3.0)
    # Twist is the least natural degree of freedom: keep its noise small.
    angle_noise[..., 2] *= 0.4
    z = z0 + angle_noise / slope
    return z.to(dtype)


# Synergies the contact optimisation may adjust: each column adds to the logits of a group of components.
SYNERGY_NAMES = ("curl_thumb", "curl_index", "curl_middle", "curl_ring", "curl_pinky", "spread", "thumb_opposition")


def synergy_basis(dtype=torch.float32, device="cpu") -> torch.Tensor:
    """[7, 15, 3] logit directions of the pose synergies named in ``SYNERGY_NAMES``."""
    basis = torch.zeros((len(SYNERGY_NAMES), 15, 3), dtype=dtype, device=device)
    for k, name in enumerate(("thumb",) + LONG_FINGERS):
        j0, j1, j2 = FINGER_JOINTS[name]
        if name == "thumb":
            basis[k, j1 - 1, 0] = basis[k, j2 - 1, 0] = 1.0
        else:
            basis[k, j0 - 1, 0] = basis[k, j1 - 1, 0] = 1.0
            basis[k, j2 - 1, 0] = 0.67
    for name in LONG_FINGERS:
        basis[5, FINGER_JOINTS[name][0] - 1, 1] = float(np.sign(SPREAD_PATTERN[name])) * (name != "middle")
    cmc = FINGER_JOINTS["thumb"][0]
    basis[6, cmc - 1, 0] = 1.0
    basis[6, cmc - 1, 2] = 0.5
    return basis
