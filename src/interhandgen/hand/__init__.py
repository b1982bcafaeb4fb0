"""Hand models: the MANO-compatible layer, MANO file I/O, and the bundled open hand."""

from interhandgen.hand.joints import (
    CENTER_JOINT,
    INTERHAND_FROM_MANO21,
    JOINT_NAMES_21,
    MANO_FINGERTIP_VERTEX_IDS,
    MANO_JOINT_NAMES,
    MANO_PARENTS,
    OPENPOSE_FROM_MANO21,
)
from interhandgen.hand.layer import HandModel, HandOutput
from interhandgen.hand.lbs import lbs, rigid_transforms
from interhandgen.hand.mano_io import load_mano, read_mano_data, save_mano_pkl
from interhandgen.hand.model_data import HandModelData
from interhandgen.hand.open_hand import open_hand

__all__ = [
    "CENTER_JOINT", "INTERHAND_FROM_MANO21", "JOINT_NAMES_21", "MANO_FINGERTIP_VERTEX_IDS", "MANO_JOINT_NAMES",
    "MANO_PARENTS", "OPENPOSE_FROM_MANO21", "HandModel", "HandOutput", "HandModelData", "lbs", "rigid_transforms",
    "load_mano", "read_mano_data", "save_mano_pkl", "open_hand",
]
