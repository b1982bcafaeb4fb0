"""Joint orders and their mappings.

Our 21-joint output order ("MANO21") is MANO's 16 kinematic joints followed by the five fingertips:

====  ==========  ====  ==========  ====  ==========
 idx  joint        idx  joint        idx  joint
====  ==========  ====  ==========  ====  ==========
   0  wrist          7  pinky MCP     14  thumb MCP
   1  index MCP      8  pinky PIP     15  thumb IP
   2  index PIP      9  pinky DIP     16  thumb tip
   3  index DIP     10  ring MCP      17  index tip
   4  middle MCP    11  ring PIP      18  middle tip
   5  middle PIP    12  ring DIP      19  ring tip
   6  middle DIP    13  thumb CMC     20  pinky tip
====  ==========  ====  ==========  ====  ==========

(MANO's thumb joints 13, 14, 15 are often called MCP, PIP, DIP in MANO code; anatomically they sit at the
CMC, MCP and IP joints.)
"""

from __future__ import annotations

MANO_JOINT_NAMES = [
    "wrist",
    "index_mcp", "index_pip", "index_dip",
    "middle_mcp", "middle_pip", "middle_dip",
    "pinky_mcp", "pinky_pip", "pinky_dip",
    "ring_mcp", "ring_pip", "ring_dip",
    "thumb_cmc", "thumb_mcp", "thumb_ip",
]
TIP_NAMES = ["thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip"]
JOINT_NAMES_21 = MANO_JOINT_NAMES + TIP_NAMES

# Kinematic parents of MANO's 16 joints (-1: root).
MANO_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]

# Fingertip vertex ids of the MANO mesh (778 vertices), thumb, index, middle, ring, pinky; the ids used
# by manopth and most two-hand code bases.
MANO_FINGERTIP_VERTEX_IDS = [745, 317, 444, 556, 673]

# Index into our 21 joints giving InterHand2.6M's per-hand order:
# thumb4(tip), thumb3, thumb2, thumb1, index4..1, middle4..1, ring4..1, pinky4..1, wrist.
INTERHAND_FROM_MANO21 = [16, 15, 14, 13, 17, 3, 2, 1, 18, 6, 5, 4, 19, 12, 11, 10, 20, 9, 8, 7, 0]

# Index into our 21 joints giving the OpenPose / FreiHAND order:
# wrist, thumb1..4, index1..4, middle1..4, ring1..4, pinky1..4 (1 = nearest the wrist).
# Joint 9 of this order is the middle-finger MCP, the centre of the canonical frame (our joint 4).
OPENPOSE_FROM_MANO21 = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]

# The joint that centres both hands in the canonical two-hand frame: the middle-finger MCP.
CENTER_JOINT = 4

# Kinematic joints of each finger (MANO order, proximal to distal) and the four finger MCP joints: defined here once.
FINGER_NAMES = ("thumb", "index", "middle", "ring", "pinky")
FINGER_JOINTS = {"thumb": (13, 14, 15), "index": (1, 2, 3), "middle": (4, 5, 6), "ring": (10, 11, 12), "pinky": (7, 8, 9)}
MCP_JOINTS = (1, 4, 10, 7)  # index, middle, ring, pinky
