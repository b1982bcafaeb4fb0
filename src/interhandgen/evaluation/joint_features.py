"""Interpretable two-hand features: both hands' joints and the relative placement in the anchor hand's frame.

Defined once here for the classifier two-sample test (:mod:`interhandgen.evaluation.two_sample`), where a
learned embedding could hide a difference it was never trained to see. With the canonical vector x [N, 2, 64]
(anchor = left hand first, :mod:`interhandgen.data.canonical`) and the 21 joints of each hand in that frame
(origin: the left hand's middle-finger MCP; axes: the left hand's root rotation):

    columns   0..62   left hand's 21 joints (MANO21 order, :data:`interhandgen.hand.JOINT_NAMES_21`), x y z, metres
    columns  63..125  right hand's 21 joints, same order and frame
    columns 126..131  relative root rotation R_rel = R_left^T R_right, 6D (first two columns, interhandgen.rotations)
    columns 132..134  relative translation t_rel (right centre joint in the left frame), metres

The last 9 columns (:data:`PLACEMENT`) are the relative placement alone: where the partner hand is and how it
is turned, independent of the finger articulation.
"""

from __future__ import annotations

import torch

from interhandgen.data.canonical import HAND_DIM, ROT_SLICE, TRANSL_SLICE
from interhandgen.exceptions import InputError

__all__ = ["JOINT_FEATURE_DIM", "PLACEMENT", "FEATURE_SETS", "joint_features"]

NUM_JOINTS = 21
JOINT_FEATURE_DIM = 2 * NUM_JOINTS * 3 + 6 + 3
#: Columns of the relative placement (6D rotation + translation of the right hand in the left hand's frame).
PLACEMENT = slice(2 * NUM_JOINTS * 3, JOINT_FEATURE_DIM)
#: Named column subsets of :func:`joint_features` that the protocol tests separately.
FEATURE_SETS = {"joints": slice(0, JOINT_FEATURE_DIM), "placement": PLACEMENT}


def joint_features(x: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
    """[N, 135] features (layout in the module docstring) from canonical vectors x [N, 2, 64] (left anchor first)
    and joints [N, 2, 21, 3] (slot 0 left, slot 1 right) in the left hand's canonical frame."""
    if x.ndim != 3 or tuple(x.shape[1:]) != (2, HAND_DIM):
        raise InputError(f"x must have shape [N, 2, {HAND_DIM}], got {list(x.shape)}")
    if joints.ndim != 4 or tuple(joints.shape[1:]) != (2, NUM_JOINTS, 3) or joints.shape[0] != x.shape[0]:
        raise InputError(f"joints must have shape [{x.shape[0]}, 2, {NUM_JOINTS}, 3], got {list(joints.shape)}")
    other = x[:, 1].to(joints.dtype)
    return torch.cat([joints.reshape(joints.shape[0], -1), other[:, ROT_SLICE], other[:, TRANSL_SLICE]], dim=1)
