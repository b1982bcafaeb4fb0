"""Anatomical frames, joint axes, joint limits and contact regions derived from any MANO-compatible hand.

Nothing here is tied to one particular mesh: everything is computed from the model's rest joints
(``J_regressor @ v_template``), its skinning weights, its rest vertex normals and its ``side``, so the same
synthetic interactions can be generated with the bundled open hand or with MANO.

Conventions (all in the model's template frame, metres):

- ``forward`` f: wrist -> middle-finger MCP.
- ``radial`` r: from the little finger towards the index finger (thumb side), orthogonal to f.
- ``palmar`` n: out of the palm. For a right hand n = r x f, for a left hand n = f x r (the mirror image).

Every articulated joint j = 1..15 gets an orthonormal basis of three axes, and its local axis-angle rotation is
written as ``theta_j = c_j0 * a_j0 + c_j1 * a_j1 + c_j2 * a_j2`` with *anatomical components* c (radians):

- fingers: c0 = flexion (positive curls the finger towards the palm), c1 = abduction (positive moves the
  finger towards the thumb side), c2 = axial twist;
- thumb CMC (joint 13): c0 = palmar abduction (positive lifts the thumb out of the palm plane, palmar side),
  c1 = adduction (positive moves the thumb towards the index finger within the palm plane), c2 = axial twist
  (positive pronates, turning the thumb pad towards the fingers);
- thumb MCP and IP: c0 = flexion (across the palm towards the little finger; the axis is taken from the
  model's mean pose ``hands_mean`` when that flexes the joint by more than 0.1 rad, else from
  ``thumb_flexion_angle_deg``), c1 = sideways deviation, c2 = axial twist.

Because MANO composes local joint rotations expressed in the rest template frame, axes computed from the
rest geometry are exactly the axes of the local rotations, whatever the parent joints do.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import trimesh

from interhandgen.hand.joints import FINGER_JOINTS, FINGER_NAMES, MCP_JOINTS
from interhandgen.hand.model_data import HandModelData
from interhandgen.exceptions import InputError

# MANO joint ids of each finger's three articulated joints, proximal to distal, and the index of the
# finger in ``fingertip_ids`` (thumb, index, middle, ring, pinky).
PALM_JOINTS = (0, 1, 4, 7, 10)  # joints whose skinned vertices can belong to the palm / dorsum
COMPONENT_NAMES = ("flexion", "abduction", "twist")

# Joint limits of the anatomical components, radians, for joints 1..15 (row j-1), columns (c0, c1, c2).
# Sources: typical active ranges of motion (finger MCP flexion ~90 deg with slight hyperextension, PIP
# ~100-110 deg, DIP ~80-90 deg; thumb MCP ~50-60 deg, IP ~80 deg); abduction from the published maximum
# inter-finger abduction (index-middle 17 deg, ring-little 32 deg, thumb-index 53 deg).
_FINGER_MCP = ((-0.35, 1.60), (-0.35, 0.35), (-0.20, 0.20))
_FINGER_PIP = ((-0.05, 1.90), (-0.10, 0.10), (-0.12, 0.12))
_FINGER_DIP = ((-0.10, 1.45), (-0.10, 0.10), (-0.12, 0.12))
_THUMB_CMC = ((-0.30, 1.10), (-0.70, 0.80), (-0.30, 0.90))
_THUMB_MCP = ((-0.20, 1.00), (-0.20, 0.20), (-0.25, 0.25))
_THUMB_IP = ((-0.30, 1.40), (-0.12, 0.12), (-0.15, 0.15))


def _default_limits() -> np.ndarray:
    lim = np.zeros((15, 3, 2))
    for name, joints in FINGER_JOINTS.items():
        table = (_THUMB_CMC, _THUMB_MCP, _THUMB_IP) if name == "thumb" else (_FINGER_MCP, _FINGER_PIP, _FINGER_DIP)
        for j, rows in zip(joints, table):
            lim[j - 1] = np.asarray(rows)
    return lim


JOINT_LIMITS = _default_limits()


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise InputError("degenerate hand geometry: a direction vector has zero length")
    return v / norm


def _orthogonal_part(v: np.ndarray, d: np.ndarray) -> np.ndarray:
    return v - (v @ d) * d


@dataclasses.dataclass
class HandAnatomy:
    """Anatomy of one hand model (see the module docstring for the conventions).

    Attributes:
        side: "right" | "left".
        rest_joints: [16, 3] rest joints at mean shape, zero pose (metres).
        tip_positions: [5, 3] rest fingertip vertices (thumb, index, middle, ring, pinky).
        forward, radial, palmar: [3] unit axes of the hand frame.
        palm_center: [3] a point in the middle of the palm, between its two surfaces.
        palm_length, palm_width: metres (wrist -> middle MCP; index MCP -> pinky MCP).
        joint_axes: [15, 3, 3] for joints 1..15: ``joint_axes[j-1, k]`` is the unit axis of component k.
        limits: [15, 3, 2] lower/upper bounds of the components (radians).
        regions: name -> sorted vertex ids.
        region_normals: name -> [3] mean rest normal of the region (unit).
        region_joints: name -> the joint that carries most of the region's skinning weight.
        bone_dirs: [16, 3] unit rest direction of each joint's bone (towards its child or fingertip).
    """

    side: str
    rest_joints: np.ndarray
    tip_positions: np.ndarray
    forward: np.ndarray
    radial: np.ndarray
    palmar: np.ndarray
    palm_center: np.ndarray
    palm_length: float
    palm_width: float
    joint_axes: np.ndarray
    limits: np.ndarray
    regions: dict[str, np.ndarray]
    region_normals: dict[str, np.ndarray]
    region_joints: dict[str, int]
    bone_dirs: np.ndarray
    rest_normals: np.ndarray

    def components_to_axis_angle(self, components: np.ndarray) -> np.ndarray:
        """[..., 15, 3] anatomical components -> [..., 45] local axis-angle (flat-hand relative)."""
        comps = np.asarray(components, dtype=np.float64)
        if comps.shape[-2:] != (15, 3):
            raise InputError(f"components must have shape [..., 15, 3], got {list(comps.shape)}")
        aa = np.einsum("...jk,jkc->...jc", comps, self.joint_axes)
        return aa.reshape(*comps.shape[:-2], 45)

    def axis_angle_to_components(self, axis_angle: np.ndarray) -> np.ndarray:
        """[..., 45] local axis-angle -> [..., 15, 3] anatomical components (exact: the axes are orthonormal)."""
        aa = np.asarray(axis_angle, dtype=np.float64)
        if aa.shape[-1] != 45:
            raise InputError(f"axis_angle must have shape [..., 45], got {list(aa.shape)}")
        aa = aa.reshape(*aa.shape[:-1], 15, 3)
        return np.einsum("...jc,jkc->...jk", aa, self.joint_axes)


def hand_anatomy(data: HandModelData, thumb_flexion_angle_deg: float = 45.0) -> HandAnatomy:
    """Derive the :class:`HandAnatomy` of a MANO-compatible hand model.

    Args:
        data: the hand model.
        thumb_flexion_angle_deg: direction in which the thumb's MCP and IP flex, measured from the palm normal
            towards the little finger (0 = straight out of the palm, 90 = within the palm plane).
    """
    if not isinstance(data, HandModelData):
        raise TypeError(f"data must be a HandModelData, got {type(data).__name__}")
    V = data.v_template
    J = data.J_regressor @ V
    tips = V[data.fingertip_ids]
    forward = _unit(J[4] - J[0])
    radial = _unit(_orthogonal_part(J[1] - J[7], forward))
    palmar = np.cross(radial, forward) if data.side == "right" else np.cross(forward, radial)
    palmar = _unit(palmar)
    mcp_mean = J[list(MCP_JOINTS)].mean(0)
    palm_length = float(np.linalg.norm(J[4] - J[0]))
    palm_width = float(np.linalg.norm(J[1] - J[7]))

    mesh = trimesh.Trimesh(V, data.faces, process=False)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    # The palm centre sits between wrist and knuckles, nearer the knuckles, midway through the palm's thickness.
    center_guess = 0.45 * J[0] + 0.55 * mcp_mean
    dominant = data.weights.argmax(1)
    palm_set = np.isin(dominant, PALM_JOINTS)
    depth = (V - center_guess) @ palmar
    near_center = palm_set & (np.abs((V - center_guess) @ forward) < 0.2 * palm_length) & (
        np.abs((V - center_guess) @ radial) < 0.25 * palm_width
    )
    if near_center.sum() < 4:
        raise InputError("could not find palm vertices around the palm centre; is the model's skinning MANO-like?")
    palm_center = center_guess + palmar * 0.5 * (depth[near_center].max() + depth[near_center].min())

    # Bone directions: towards the child joint, or the fingertip for distal joints; root: forward.
    children = {p: j for j, p in enumerate(data.parents.tolist()) if p >= 0 and j != 0}
    bone_dirs = np.zeros((16, 3))
    bone_dirs[0] = forward
    for f_idx, name in enumerate(FINGER_NAMES):
        chain = FINGER_JOINTS[name]
        ends = [J[chain[1]], J[chain[2]], tips[f_idx]]
        for j, end in zip(chain, ends):
            bone_dirs[j] = _unit(end - J[j])
    del children

    theta = np.deg2rad(thumb_flexion_angle_deg)
    thumb_flex_dir = np.cos(theta) * palmar - np.sin(theta) * radial
    axes = np.zeros((15, 3, 3))
    for name, chain in FINGER_JOINTS.items():
        for pos, j in enumerate(chain):
            d = bone_dirs[j]
            if name == "thumb" and pos == 0:
                motion1, motion2 = palmar, -radial  # palmar abduction, adduction towards the index finger
            elif name == "thumb":
                motion1, motion2 = thumb_flex_dir, palmar
            else:
                motion1, motion2 = palmar, radial  # flexion, abduction towards the thumb side
            # Rotating d about (d x m) moves it towards m (first order: (d x m) x d = m_perp).
            a0 = _unit(np.cross(d, motion1))
            if name == "thumb" and pos > 0:
                # The thumb's nail orientation differs between models; its natural flexion axis is best read
                # off the model's mean pose (MANO's and the open hand's hands_mean are relaxed, flexed poses).
                mean_axis = _orthogonal_part(data.hands_mean[3 * (j - 1): 3 * j], d)
                if np.linalg.norm(mean_axis) > 0.1:
                    a0 = _unit(mean_axis)
            a1 = _unit(_orthogonal_part(_orthogonal_part(np.cross(d, motion2), a0), d))
            a2 = d.copy()
            if name == "thumb" and pos == 0:
                # Positive twist pronates the thumb: the pad (initially facing thumb_flex_dir) turns towards
                # the fingers (-radial). Rotating about +d turns m by d x m; pick the sign accordingly.
                if np.dot(np.cross(a2, thumb_flex_dir), -radial) < 0:
                    a2 = -a2
            axes[j - 1] = np.stack([a0, a1, a2])

    # The thumb pad faces where the flexing thumb tip moves: a0 x d at the IP joint.
    thumb_pad_dir = _unit(np.cross(axes[14, 0], bone_dirs[15]))
    regions, region_normals, region_joints = _contact_regions(
        data, J, tips, normals, dominant, forward, radial, palmar, palm_center, palm_length, palm_width,
        bone_dirs, thumb_pad_dir,
    )
    return HandAnatomy(
        side=data.side, rest_joints=J, tip_positions=tips, forward=forward, radial=radial, palmar=palmar,
        palm_center=palm_center, palm_length=palm_length, palm_width=palm_width, joint_axes=axes,
        limits=JOINT_LIMITS.copy(), regions=regions, region_normals=region_normals, region_joints=region_joints,
        bone_dirs=bone_dirs, rest_normals=normals,
    )


def _contact_regions(data, J, tips, normals, dominant, forward, radial, palmar, palm_center, palm_length,
                     palm_width, bone_dirs, thumb_flex_dir):
    """Vertex sets of the contact regions, from skinning weights, joints and rest normals."""
    V = data.v_template
    rel = V - palm_center
    along, across = rel @ forward, rel @ radial
    palm_set = np.isin(dominant, PALM_JOINTS)
    # Longitudinal extent of the palm proper: from just distal of the wrist to just proximal of the knuckles.
    wrist_s = float((J[0] - palm_center) @ forward)
    mcp_s = float((J[list(MCP_JOINTS)] - palm_center).mean(0) @ forward)
    in_palm_box = palm_set & (along > wrist_s + 0.15 * palm_length) & (along < mcp_s + 0.05 * palm_length) & (
        np.abs(across) < 0.6 * palm_width
    )
    ndot = normals @ palmar
    masks: dict[str, np.ndarray] = {}
    masks["palm"] = in_palm_box & (ndot > 0.6)
    masks["palm_center"] = masks["palm"] & (np.abs(along - 0.5 * (wrist_s + mcp_s) - 0.1 * palm_length) < 0.22 * palm_length) & (
        np.abs(across) < 0.3 * palm_width
    )
    masks["dorsum"] = in_palm_box & (ndot < -0.6)
    masks["dorsum_center"] = masks["dorsum"] & (np.abs(along - 0.5 * (wrist_s + mcp_s)) < 0.25 * palm_length) & (
        np.abs(across) < 0.3 * palm_width
    )
    # The ulnar edge: the little-finger side of the palm, facing away from the thumb.
    masks["ulnar_edge"] = palm_set & (across < -0.3 * palm_width) & (normals @ radial < -0.5) & (
        along > wrist_s + 0.1 * palm_length
    ) & (along < mcp_s + 0.1 * palm_length)
    # Palmar side of the knuckle row (where interlaced fingers meet the other palm).
    masks["knuckles_palmar"] = np.isin(dominant, (0,) + MCP_JOINTS) & (np.abs(along - mcp_s) < 0.15 * palm_length) & (ndot > 0.4)
    # The wrist ring: the band just distal of the hand's proximal end, side surfaces only.
    s0 = (V - J[0]) @ forward
    masks["wrist_ring"] = (s0 < s0.min() + 0.22 * palm_length) & (np.abs(normals @ forward) < 0.5)
    finger_palmar_all = np.zeros(len(V), dtype=bool)
    finger_dorsal_all = np.zeros(len(V), dtype=bool)
    pads_all = np.zeros(len(V), dtype=bool)
    for f_idx, name in enumerate(FINGER_NAMES):
        chain = FINGER_JOINTS[name]
        distal = chain[2]
        on_finger = np.isin(dominant, chain)
        pad_dir = thumb_flex_dir if name == "thumb" else palmar
        length = float(np.linalg.norm(tips[f_idx] - J[distal]))
        s = (V - J[distal]) @ bone_dirs[distal]
        tip_mask = (dominant == distal) & (s > 0.45 * length)
        masks[f"tip_{name}"] = tip_mask
        masks[f"pad_{name}"] = (dominant == distal) & (s > 0.2 * length) & (normals @ pad_dir > 0.35)
        masks[f"palmar_{name}"] = on_finger & (normals @ pad_dir > 0.35)
        masks[f"dorsal_{name}"] = on_finger & (normals @ pad_dir < -0.35)
        masks[f"finger_{name}"] = on_finger
        if name != "thumb":
            finger_palmar_all |= masks[f"palmar_{name}"]
            finger_dorsal_all |= masks[f"dorsal_{name}"]
            pads_all |= masks[f"pad_{name}"]
            prox = chain[0]
            masks[f"proximal_dorsal_{name}"] = (dominant == prox) & (normals @ palmar < -0.3)
    masks["fingers_palmar"] = finger_palmar_all
    masks["fingers_dorsal"] = finger_dorsal_all
    masks["finger_pads"] = pads_all
    masks["fist_front"] = np.zeros(len(V), dtype=bool)
    for name in ("index", "middle", "ring", "pinky"):
        masks["fist_front"] |= masks[f"proximal_dorsal_{name}"]
    masks["palmar_all"] = masks["palm"] | finger_palmar_all
    masks["dorsal_all"] = masks["dorsum"] | finger_dorsal_all

    regions, region_normals, region_joints = {}, {}, {}
    for name, mask in masks.items():
        ids = np.flatnonzero(mask)
        if len(ids) < 3:
            raise InputError(
                f"contact region {name!r} has only {len(ids)} vertices on this hand model; the model's skinning "
                "weights or normals do not look MANO-like"
            )
        regions[name] = ids
        region_normals[name] = _unit(normals[ids].mean(0))
        region_joints[name] = int(np.bincount(dominant[ids], minlength=16).argmax())
    return regions, region_normals, region_joints
