"""The interaction categories: per-hand pose families, relative placement and designated contacts.

Hand A is the *active* hand (either side, chosen per sample), hand B the other one. Every category's
``arrange`` function receives the posed hands in their own frames and returns, batched,

- the rigid map (R, t) of hand B's frame into hand A's frame (the initial placement), and
- the contacts the optimisation pulls together: ``Contact(mask_a [B, Ka], mask_b [B, Kb], weight, fraction)``
  over the optimisation vertex subsets; each selected A vertex is pulled to its nearest selected B vertex,
  using the ``fraction`` of A vertices that are closest (a region only has to touch, not coincide).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F

from interhandgen.hand.joints import FINGER_JOINTS
from interhandgen.data.synth.kinematics import HandKinematics, PosedHand
from interhandgen.rotations import quaternion_to_matrix
from interhandgen.data.synth.placement import (
    AnchorFrame,
    align,
    bone_direction,
    facing_target,
    hand_vector,
    region_centroid,
    region_normal,
    rotate_about,
)


@dataclasses.dataclass
class Contact:
    mask_a: torch.Tensor
    mask_b: torch.Tensor
    weight: float = 1.0
    fraction: float = 0.3
    from_b: bool = False  # pull B's selected vertices onto A's region instead


@dataclasses.dataclass
class Scene:
    """Inputs of ``arrange``: both hands posed in their own frames, plus per-sample family choices."""

    kin_a: HandKinematics
    kin_b: HandKinematics
    posed_a: PosedHand
    posed_b: PosedHand
    family_a: torch.Tensor  # [B] index into the category's families_a
    family_b: torch.Tensor
    generator: torch.Generator  # CPU generator; draw then move to the device

    @property
    def batch(self) -> int:
        return self.posed_a.vertices.shape[0]

    @property
    def device(self) -> torch.device:
        return self.posed_a.vertices.device

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator).to(self.device, self.posed_a.vertices.dtype)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator).to(self.device, self.posed_a.vertices.dtype)

    def sign(self, n: int) -> torch.Tensor:
        return torch.where(self.rand(n) < 0.5, -1.0, 1.0).to(self.posed_a.vertices.dtype)

    def sub_a(self, region: str) -> torch.Tensor:
        return self.kin_a.region_mask_sub[region].expand(self.batch, -1)

    def sub_b(self, region: str) -> torch.Tensor:
        return self.kin_b.region_mask_sub[region].expand(self.batch, -1)


@dataclasses.dataclass
class Arrangement:
    """Initial placement of B in A's frame (R [B, 3, 3], t [B, 3]), the contacts to establish, and the unit
    direction [B, 3] (A's frame) along which B is slid until it just clears A before the optimisation."""

    R: torch.Tensor
    t: torch.Tensor
    contacts: list[Contact]
    approach: torch.Tensor | None  # None: keep the placement as is (linked configurations)


@dataclasses.dataclass(frozen=True)
class Category:
    name: str
    description: str
    families_a: tuple[str, ...]
    families_b: tuple[str, ...]
    arrange: Callable[[Scene], Arrangement]
    in_contact: bool = True


def _deg(x: float) -> float:
    return math.radians(x)


def _palm_anchor(kin: HandKinematics, posed: PosedHand, region: str = "palm_center", tangent: str = "forward") -> AnchorFrame:
    return AnchorFrame(region_centroid(kin, posed, region), hand_vector(kin, posed, "palmar"), hand_vector(kin, posed, tangent))


def _in_plane_offset(s: Scene, normal: torch.Tensor, std: float) -> torch.Tensor:
    """Random offset [B, 3] orthogonal to ``normal`` with per-axis standard deviation ``std`` metres."""
    v = s.randn(s.batch, 3) * std
    return v - (v * normal).sum(-1, keepdim=True) * normal


# ---------------------------------------------------------------------------------------------- categories
def _palms_pressed(s: Scene) -> Arrangement:
    a = _palm_anchor(s.kin_a, s.posed_a)
    b = _palm_anchor(s.kin_b, s.posed_b)
    target = facing_target(a, s.randn(s.batch) * _deg(8), offset=_in_plane_offset(s, a.normal, 0.004))
    R, t = align(b, target)
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("palm"), s.sub_b("palm"), 1.0, 0.5),
                  Contact(s.sub_a("fingers_palmar"), s.sub_b("fingers_palmar"), 0.5, 0.3)])


def _fingers_interlocked(s: Scene) -> Arrangement:
    """Finger lock: both hands hooked (PIP/DIP flexed), palms facing, fingers pointing opposite ways, each
    hand's fingertips inside the other's hook. Placed linked (a slide from outside cannot link hooks); the
    optimisation resolves the overlap with the sphere proxy and pulls the finger pads together."""
    names = ("index", "middle", "ring", "pinky")

    def anchor(kin, posed):
        tips = torch.stack([region_centroid(kin, posed, f"tip_{n}") for n in names]).mean(0)
        cavity = region_centroid(kin, posed, "knuckles_palmar")
        return AnchorFrame(0.5 * (tips + cavity), hand_vector(kin, posed, "palmar"), hand_vector(kin, posed, "forward"))

    a, b = anchor(s.kin_a, s.posed_a), anchor(s.kin_b, s.posed_b)
    R, t = align(b, facing_target(a, s.randn(s.batch) * _deg(8), flip_tangent=True,
                                  offset=_in_plane_offset(s, a.normal, 0.003)))
    return Arrangement(R, t, approach=None, contacts=[
        Contact(s.sub_a("fingers_palmar"), s.sub_b("fingers_palmar"), 1.0, 0.2)])


def _fingertip_steeple(s: Scene) -> Arrangement:
    def anchor(kin, posed):
        names = ("index", "middle", "ring", "pinky")
        origin = torch.stack([region_centroid(kin, posed, f"pad_{n}") for n in names]).mean(0)
        normal = F.normalize(torch.stack([region_normal(kin, posed, f"pad_{n}") for n in names]).sum(0), dim=-1)
        tangent = F.normalize(torch.stack([bone_direction(kin, posed, FINGER_JOINTS[n][2]) for n in names]).sum(0), dim=-1)
        # Tilt the contact normal towards the finger direction: the hands then meet tip to tip and their
        # palms open like a tent instead of closing flat.
        normal = torch.cos(tilt)[:, None] * normal + torch.sin(tilt)[:, None] * tangent
        return AnchorFrame(origin, normal, tangent)

    tilt = _deg(25) + s.rand(s.batch) * _deg(20)
    a, b = anchor(s.kin_a, s.posed_a), anchor(s.kin_b, s.posed_b)
    R, t = align(b, facing_target(a, s.randn(s.batch) * _deg(6)))
    contacts = [Contact(s.sub_a(f"pad_{n}"), s.sub_b(f"pad_{n}"), 1.0, 0.3) for n in ("index", "middle", "ring", "pinky")]
    contacts.append(Contact(s.sub_a("tip_thumb"), s.sub_b("tip_thumb"), 0.7, 0.3))
    return Arrangement(R, t, contacts, a.normal)


def _wrist_grip(s: Scene) -> Arrangement:
    a = _palm_anchor(s.kin_a, s.posed_a, "palm_center", tangent="radial")
    kb, pb = s.kin_b, s.posed_b
    ring = pb.vertices[:, kb.region_mask["wrist_ring"]]
    forward = hand_vector(kb, pb, "forward")
    center = ring.mean(1)
    radial_part = ring - center[:, None]
    radial_part = radial_part - (radial_part * forward[:, None]).sum(-1, keepdim=True) * forward[:, None]
    radius = radial_part.norm(dim=-1).mean(1, keepdim=True)
    # Grip from a random side of the wrist, most often from the back or the sides.
    psi = math.pi + s.randn(s.batch) * _deg(60)
    u = torch.cos(psi)[:, None] * hand_vector(kb, pb, "palmar") + torch.sin(psi)[:, None] * hand_vector(kb, pb, "radial")
    b = AnchorFrame(center + radius * u, u, forward)
    target = AnchorFrame(a.origin, -a.normal, a.tangent * s.sign(s.batch)[:, None])
    R, t = align(b, target)
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("palm"), s.sub_b("wrist_ring"), 1.0, 0.3),
                  Contact(s.sub_a("fingers_palmar"), s.sub_b("wrist_ring"), 0.6, 0.3),
                  Contact(s.sub_a("pad_thumb"), s.sub_b("wrist_ring"), 0.3, 0.3)])


def _fist_in_palm(s: Scene) -> Arrangement:
    ka, pa = s.kin_a, s.posed_a
    a = AnchorFrame(region_centroid(ka, pa, "fist_front"), hand_vector(ka, pa, "dorsal", joint=4),
                    hand_vector(ka, pa, "radial"))
    b = _palm_anchor(s.kin_b, s.posed_b)
    R, t = align(b, facing_target(a, s.randn(s.batch) * _deg(20), flip_tangent=False))
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("fist_front"), s.sub_b("palm"), 1.0, 0.4),
                  Contact(s.sub_a("dorsal_all"), s.sub_b("finger_pads"), 0.3, 0.3, from_b=True)])


def _index_touch_palm(s: Scene) -> Arrangement:
    ka, pa = s.kin_a, s.posed_a
    pointing = bone_direction(ka, pa, FINGER_JOINTS["index"][2])
    a = AnchorFrame(region_centroid(ka, pa, "tip_index"), pointing, hand_vector(ka, pa, "palmar", joint=3))
    # Tilt the poke direction by up to ~30 degrees and spin the touched hand freely about it.
    tilt_axis = F.normalize(torch.cross(pointing, s.randn(s.batch, 3), dim=-1), dim=-1)
    a.normal = rotate_about(pointing, tilt_axis, s.rand(s.batch) * _deg(30))
    b = _palm_anchor(s.kin_b, s.posed_b)
    target = facing_target(a, s.rand(s.batch) * 2 * math.pi, offset=_in_plane_offset(s, a.normal, 0.008))
    R, t = align(b, target)
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("tip_index"), s.sub_b("palm"), 1.0, 0.3)])


def _handshake_clasp(s: Scene) -> Arrangement:
    a = _palm_anchor(s.kin_a, s.posed_a)
    b = _palm_anchor(s.kin_b, s.posed_b)
    angle = s.sign(s.batch) * _deg(90) + s.randn(s.batch) * _deg(15)
    R, t = align(b, facing_target(a, angle))
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("palm"), s.sub_b("palm"), 1.0, 0.4),
                  Contact(s.sub_a("finger_pads"), s.sub_b("dorsal_all"), 0.5, 0.2),
                  Contact(s.sub_a("dorsal_all"), s.sub_b("finger_pads"), 0.5, 0.2, from_b=True)])


def _stacked_palms(s: Scene) -> Arrangement:
    a = _palm_anchor(s.kin_a, s.posed_a)
    kb, pb = s.kin_b, s.posed_b
    b = AnchorFrame(region_centroid(kb, pb, "dorsum_center"), hand_vector(kb, pb, "dorsal"), hand_vector(kb, pb, "forward"))
    angle = (s.rand(s.batch) * 2 - 1) * _deg(100)
    R, t = align(b, facing_target(a, angle, offset=_in_plane_offset(s, a.normal, 0.01)))
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("palm"), s.sub_b("dorsum"), 1.0, 0.4),
                  Contact(s.sub_a("fingers_palmar"), s.sub_b("dorsal_all"), 0.3, 0.2)])


def _cupped_hands(s: Scene) -> Arrangement:
    def anchor(kin, posed):
        return AnchorFrame(region_centroid(kin, posed, "ulnar_edge"), hand_vector(kin, posed, "ulnar"), hand_vector(kin, posed, "forward"))

    a, b = anchor(s.kin_a, s.posed_a), anchor(s.kin_b, s.posed_b)
    R, t = align(b, facing_target(a, s.randn(s.batch) * _deg(10)))
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("ulnar_edge"), s.sub_b("ulnar_edge"), 1.0, 0.3),
                  Contact(s.sub_a("finger_pinky"), s.sub_b("finger_pinky"), 0.5, 0.2)])


def _heart_gesture(s: Scene) -> Arrangement:
    def anchor(kin, posed):
        index = region_centroid(kin, posed, "tip_index")
        thumb = region_centroid(kin, posed, "tip_thumb")
        origin = 0.5 * (index + thumb)
        tangent = index - thumb
        away = origin - region_centroid(kin, posed, "palm_center")
        tangent_u = F.normalize(tangent, dim=-1)
        normal = away - (away * tangent_u).sum(-1, keepdim=True) * tangent_u
        return AnchorFrame(origin, F.normalize(normal, dim=-1), tangent)

    a, b = anchor(s.kin_a, s.posed_a), anchor(s.kin_b, s.posed_b)
    R, t = align(b, facing_target(a, s.randn(s.batch) * _deg(5)))
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("tip_index"), s.sub_b("tip_index"), 1.0, 0.3),
                  Contact(s.sub_a("tip_thumb"), s.sub_b("tip_thumb"), 1.0, 0.3)])


_POINT_FAMILIES = ("point_index", "point_middle", "point_ring", "point_pinky")


def _thumb_to_fingertip(s: Scene) -> Arrangement:
    ka, pa, kb, pb = s.kin_a, s.posed_a, s.kin_b, s.posed_b
    a = AnchorFrame(region_centroid(ka, pa, "pad_thumb"), region_normal(ka, pa, "pad_thumb"), bone_direction(ka, pa, 15))
    names = [f.split("_")[1] for f in _POINT_FAMILIES]
    choice = s.family_b  # which finger of B is touched (B's pose points that finger)
    pick = lambda stack: stack[choice, torch.arange(s.batch, device=s.device)]  # noqa: E731
    b = AnchorFrame(
        pick(torch.stack([region_centroid(kb, pb, f"pad_{n}") for n in names])),
        pick(torch.stack([region_normal(kb, pb, f"pad_{n}") for n in names])),
        pick(torch.stack([bone_direction(kb, pb, FINGER_JOINTS[n][2]) for n in names])),
    )
    R, t = align(b, facing_target(a, s.randn(s.batch) * _deg(30), flip_tangent=True))
    mask_b = torch.stack([kb.region_mask_sub[f"pad_{n}"] for n in names])[choice]
    return Arrangement(R, t, approach=a.normal, contacts=[Contact(s.sub_a("pad_thumb"), mask_b, 1.0, 0.3)])


def _near_no_contact(s: Scene) -> Arrangement:
    """A uniformly random relative rotation, centroids together; B then slides out along a random direction
    to its target distance."""
    q = F.normalize(s.randn(s.batch, 4), dim=-1)
    R = quaternion_to_matrix(q)
    center_a = s.posed_a.vertices.mean(1)
    center_b = (s.posed_b.vertices @ R.transpose(1, 2)).mean(1)
    return Arrangement(R, center_a - center_b, [], F.normalize(s.randn(s.batch, 3), dim=-1))


_ALL_FAMILIES = ("flat", "flat_spread", "relaxed", "fist", "point_index", "grip", "cup", "steeple", "thumb_out")

CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in [
        Category("palms_pressed", "palms pressed together, fingers aligned (prayer)", ("flat", "flat_spread"),
                 ("flat", "flat_spread"), _palms_pressed),
        Category("fingers_interlocked", "fingers of both hands hooked into each other (finger lock)",
                 ("hook",), ("hook",), _fingers_interlocked),
        Category("fingertip_steeple", "fingertips pressed together, palms apart (steeple)", ("steeple",), ("steeple",),
                 _fingertip_steeple),
        Category("wrist_grip", "one hand gripping the other's wrist", ("grip",), ("flat", "relaxed", "fist"), _wrist_grip),
        Category("fist_in_palm", "a fist held in the other palm", ("fist",), ("cup", "relaxed", "flat"), _fist_in_palm),
        Category("index_touch_palm", "the index fingertip touching the other palm", ("point_index",),
                 ("flat", "flat_spread", "relaxed"), _index_touch_palm),
        Category("handshake_clasp", "own hands clasped as in a handshake, palms together", ("grip",), ("grip",),
                 _handshake_clasp),
        Category("stacked_palms", "one palm resting on the back of the other hand", ("flat", "relaxed"),
                 ("flat", "relaxed", "fist"), _stacked_palms),
        Category("cupped_hands", "both hands cupped side by side, little-finger edges touching", ("cup",), ("cup",),
                 _cupped_hands),
        Category("heart_gesture", "index and thumb tips of both hands touching to form a heart", ("heart",), ("heart",),
                 _heart_gesture),
        Category("thumb_to_fingertip", "a thumb pad touching a fingertip of the other hand", ("thumb_out",),
                 _POINT_FAMILIES, _thumb_to_fingertip),
        Category("near_no_contact", "hands near each other without contact (1-10 cm apart)", _ALL_FAMILIES,
                 _ALL_FAMILIES, _near_no_contact, in_contact=False),
    ]
}
CATEGORY_NAMES = tuple(CATEGORIES)
