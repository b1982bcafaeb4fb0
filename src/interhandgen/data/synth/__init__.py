"""Synthetic two-hand interactions generated with an open MANO-compatible hand (the default training data).

Each sample belongs to one of the interaction categories in :data:`CATEGORY_NAMES`. A category is a pair of
pose generators (named pose families with noise, inside joint limits), a relative placement of the two hands
(which contact regions meet), and a batched contact optimisation that pulls the designated regions together
while pushing interpenetration out. See docs/synth.md.
"""

from interhandgen.data.synth.anatomy import JOINT_LIMITS, HandAnatomy, hand_anatomy
from interhandgen.data.synth.categories import CATEGORIES, CATEGORY_NAMES, Category
from interhandgen.data.synth.generator import (
    CONTACT_DISTANCE,
    MAX_PENETRATION_DEPTH,
    NO_CONTACT_RANGE,
    SynthConfig,
    assign_splits,
    generate_group,
    generate_synthetic_set,
)
from interhandgen.data.synth.kinematics import HandKinematics
from interhandgen.data.synth.optimize import OptimConfig
from interhandgen.data.synth.poses import POSE_FAMILIES, PoseFamily

__all__ = [
    "generate_synthetic_set", "assign_splits", "generate_group", "SynthConfig", "OptimConfig", "CATEGORIES",
    "CATEGORY_NAMES", "Category", "POSE_FAMILIES", "PoseFamily", "JOINT_LIMITS", "HandAnatomy", "hand_anatomy",
    "HandKinematics", "CONTACT_DISTANCE", "MAX_PENETRATION_DEPTH", "NO_CONTACT_RANGE",
]
