"""Sampling two hands with an object: the object-conditioned cascade, hand-object guidance and object settling.

The model (kind ``shared_object``) works in the object frame (:mod:`interhandgen.objects.frame`: the object's
centre, world axes): stage 1 samples the anchor (left hand) with its pose relative to the object, stage 2 the
right hand relative to the anchor, both conditioned on the object's token. Each sample has its own object (rows
may share one); everything is batched over the rows, on any device.

Post-processing and guidance, each switchable (:class:`ObjectSettings`):

- **hand-object guidance** (``object_guidance_weight``; 0 disables): at the last guided steps of BOTH stages the
  predicted x0 takes a Polyak step (:class:`interhandgen.generation.apg.PolyakGuidance`) on the hand's
  penetration of the object: each hand subset point p, its nearest object surface sample q with outward normal n,
  depth max(0, -(p - q) . n), Geman-McClure; in stage 2 the same step also carries hand-hand APG (one loss, one
  backward), when ``apg_weight`` > 0; with ``object_contact_weight`` > 0 also a hand-object contact term
  (:func:`object_contact`: a hand close to the object but not touching it is pulled into touch);
- **object settling** (``object_settle_steps``; 0 disables): each hand that is within ``object_attract_mm`` of the
  object or inside it is translated rigidly (pose untouched) out of the object along the depth-weighted mean
  normal of its penetrating points, or toward the object until its closest point is ``touch_mm`` away;
- **grasp settling** (``grasp_steps``; 0 disables), after the object settling: each hand within
  ``object_attract_mm`` of the object is optimised (translation, rotation about its centre joint and the 45 pose
  coefficients, so the fingers close onto the surface) with the data generator's hand-object terms
  (:func:`interhandgen.objects.grasps.add_contact_terms`: the closest ``grasp_fraction`` of the hand's points
  pulled to 0.5 mm outside the surface, every point pushed out to 1 mm) and its Adam
  (:class:`~interhandgen.geometry.optim.BatchedAdam`), the distances from the surface samples' tangent planes;
- **redraw** (``redraw_rounds``; 0 disables): pairs failing the cheap checks (a hand farther than
  ``redraw_gap_mm`` from the object or deeper in it than ``redraw_depth_mm``, by the surface samples' planes; with
  ``redraw_support`` also contacts that cannot hold the object against gravity, :func:`support_check`) are
  drawn again, with fresh noise, up to that many rounds (the two-hand sampler's resampling, per row with its own
  object); a redraw replaces a pair when it passes or (``redraw_keep_best``) fails by less
  (:func:`hand_object_violation`), so pairs failing every round keep their least failing draw; with
  ``redraw_object_in_hand_mm`` a pair also fails by how deep the object's surface samples lie inside a hand's
  inscribed spheres (:func:`object_in_hand_depth`: a thin wall through the fingers, which the hand's own depth
  check cannot see);
- **translation search** (``search_rounds``; 0 disables), after the redraw, for the pairs that still fail its
  checks: each hand tries rigid moves off the object (:func:`translation_search`; a thin wall through the hand, which
  no redraw of the network avoided) and a pair keeps them where it then fails the checks by less;
- **clearance moves** (``clear_rounds``; 0 disables), after the translation search, for the pairs that still fail:
  each hand, then both hands together, moved off the object until none of its surface points is inside
  (:func:`clearance_search`), then back into touch (object settling without its push-out); a pair keeps the
  result where it then fails the checks by less;
- **exact push-out** (``exact_push_rounds``; 0 disables), after the redraw: each hand is translated out of the
  object by the exact signed distance of the points the redraw judged exactly (:func:`exact_push_out`);
- hand-hand contact settling (``settle_steps`` of :class:`SamplerSettings`) runs before the object settling;
- **hand guard** (``settle_hand_guard``, ``redraw_hand_check``): object settling moves each hand on its own and can
  push one into the other; a settled pair whose hands interpenetrate (:func:`hands_interpenetrate`) takes the first
  of (anchor's move only, other's move only, no move) that does not, and such pairs fail the redraw's checks;
- **MuJoCo settling** (``physics_rounds``; 0 disables), last, in
  :meth:`interhandgen.generation.object_api.ObjectInterHandGen.sample` (it needs the whole hand meshes): the object
  falls among the fixed hands in the stability test's simulation, the hands are moved by the inverse of its motion
  (:func:`move_with_object`: the object keeps its given pose) and a hand apart from it is pulled into touch again;
  a pair is kept when both hands then touch the object (the redraw's gap check and the exact 2 mm distance) and it
  passes the stability test, else it is drawn again, up to that many rounds in all.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from tqdm.auto import tqdm

from interhandgen._seeding import derived_seed
from interhandgen.data.canonical import RIGID_SLICE, ROT_SLICE, TRANSL_SLICE, HAND_DIM
from interhandgen.diffusion import Schedule, ddim_sample, unconditional
from interhandgen.exceptions import InputError
from interhandgen.generation.apg import PolyakGuidance, gap_pull, surface_penetration_loss
from interhandgen.generation.cascade import SamplerSettings, sample_anchor, sample_partner
from interhandgen.data.canonical import POSE_SLICE
from interhandgen.generation.settle import hand_spheres, interpenetrating
from interhandgen.generation.subset import SubsetHand
from interhandgen.geometry.loss import geman_mcclure
from interhandgen.geometry.optim import BatchedAdam
from interhandgen.models.object_encoder import BoundObject, JointObjectDenoiser, ObjectConditionedDenoiser
from interhandgen.objects.frame import canonical_anchor_tail
from interhandgen.objects.equilibrium import can_hold, select_contacts
from interhandgen.objects.grasps import add_contact_terms
from interhandgen.objects.sdf import ObjectSDF
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix

__all__ = ["ObjectSettings", "object_penetration", "object_contact", "HandObjectGuidance", "settle_on_object",
           "other_in_object_frame", "object_cascaded_sample", "support_check", "hand_object_check",
           "move_with_object", "settle_pair", "ObjectGuided", "hands_interpenetrate", "hand_object_violation",
           "ExactObjects"]


#: What the failed support check adds to :func:`hand_object_violation` (mm): as much as a hand 3 mm beyond the gap or
#: depth thresholds (the hand check adds ``ObjectSettings.redraw_hand_failure_mm``; it added this until 2026-12-07).
BINARY_FAILURE_MM = 3.0

#: Spacing (metres) of the objects' surface samples allowed for in :func:`object_penetration` (1,024 samples on the
#: larger library objects lie about 1 cm apart).
SAMPLE_SPACING = 0.008


@dataclasses.dataclass
class ObjectSettings:
    """Options of sampling with an object (lengths in millimetres where named so).

    The figures quoted below "on the bundled model" were measured with the object model bundled until 2026-12-07
    (sha256 ec2427fd...; docs/results_object.md says which model each section measured)."""

    object_guidance_weight: float = 1.5  # Polyak fraction of the hand-object penalty removed by the last step; 0 off
    object_guidance_rho: float = 0.02  # Geman-McClure scale (metres)
    object_guidance_points: int = 1024  # object surface samples the guidance and settling test against
    # The surface samples whose tangent planes decide inside / outside in the guidance, settling and redraw checks:
    # those within this many mm of the point's nearest sample distance (object_penetration; 0: the nearest plane
    # alone, the rule before 2026-12-06, which reads hands beside thin rims and edges "inside")
    object_plane_reach_mm: float = 4.0
    # Hand-object contact in the same guidance (0 disables): each hand whose closest subset point lies between
    # touch_mm and object_contact_attract_mm from the object (by the surface samples' planes) gets
    # object_contact_weight x (gap - touch)^2 (metres^2) added to its penalty, so the guided x0 (placement AND
    # fingers) moves into touch; object_guidance_iters Polyak steps per guided reverse step.
    object_contact_weight: float = 0.0
    object_contact_attract_mm: float = 20.0
    object_guidance_iters: int = 1
    object_settle_steps: int = 6  # settling iterations; 0 disables object settling
    # Hands closer than this to the object are moved into touch. Every hand of the data touches its object; on the
    # bundled model 60 mm gave both-hands contact 0.48 vs 0.32 at 20 mm with the same penetration volume and held
    # fraction (benchmarks/results/object_settle_sweep.json, docs/results_object.md).
    object_attract_mm: float = 60.0
    touch_mm: float = 0.5  # settled hands end this far from the object
    # grasp settling iterations (0 disables it; off by default: on the bundled model it lowered the penetration
    # volume 1.39 -> 1.14 cm^3 per hand but also both-hands contact 0.59 -> 0.51, at 4x the sampling time;
    # docs/results_object.md)
    grasp_steps: int = 0
    grasp_points: int = 512  # hand points per hand of grasp settling and of the redraw checks
    grasp_fraction: float = 0.15  # closest fraction of a hand's guidance points pulled onto the surface
    # rounds of redrawing pairs that fail the checks (0 disables): on the bundled model, 1,000 samples (480 measured),
    # with the nearby planes and the exact check, two rounds gave both-hands contact 0.948 / 0.954 (seeds 0 / 1) at
    # 50-51 s of CPU, three 0.979 / 0.981 at 52-54 s (the issue's budget is 60 s; docs/results_object.md, "Nearby
    # planes"); with the object-through-a-hand check and the exact push-out, four rounds instead of three: contact
    # 0.973 / 0.977 -> 0.983 / 0.985, penetration 0.49 / 0.55 -> 0.35 / 0.36 cm^3 per hand, 47-51 -> 49-56 s
    # (docs/results_object.md, "A thin wall through a hand")
    redraw_rounds: int = 4
    redraw_gap_mm: float = 2.0  # a hand farther than this from the object fails
    # the redraw checks the gap and depth of each hand's this many closest (deepest) points by the planes on the
    # EXACT signed distance to the object's mesh (needs the meshes: ObjectInterHandGen passes them; 0: planes only)
    redraw_exact_points: int = 8
    redraw_depth_mm: float = 3.0  # a hand deeper than this in the object fails
    # a pair failing every round keeps its least failing draw (hand_object_violation: mm beyond the thresholds), not
    # its first: failing pairs carried 98 % of the penetration volume (160 samples); on 1,000 samples (seeds 0 / 1)
    # both-hands contact 0.619 / 0.594 -> 0.644 / 0.675, penetration 1.47 / 1.29 -> 1.30 / 1.08 cm^3 per hand,
    # hand-hand 0.30 / 0.87 -> 0.14 / 0.05 cm^3, same CPU (docs/results_object.md)
    redraw_keep_best: bool = True
    # support lift (0 disables): after the object settling, each hand is moved straight up (world +z, against
    # gravity) until it touches a surface of the object that faces down, if one lies within this many millimetres
    # above it; hands with nothing above them within that stay where they are
    support_lift_mm: float = 0.0
    # the redraw's static-equilibrium check (interhandgen.objects.equilibrium): a pair also fails when the forces
    # of its contacts within support_contact_mm on surfaces facing down (normal z < support_normal_z), inside
    # friction cones of support_mu (MuJoCo's friction in the stability test), cannot balance the object's weight.
    # Off by default: on the bundled model (1,000 samples, MuJoCo on 160) it moved the held fraction 0.119 ->
    # 0.131 (2 pairs) and both-hands contact 0.669 -> 0.656 for 21 % more CPU (docs/results_object.md)
    redraw_support: bool = False
    support_contact_mm: float = 5.0
    support_normal_z: float = 0.0
    support_mu: float = 1.0
    # MuJoCo settling (0 disables; needs the mujoco package): after everything above, the object of each pair is
    # let fall for physics_settle_s seconds among the fixed hands in the stability test's simulation
    # (interhandgen.objects.physics); where it comes to rest within physics_max_drop_mm of its placement, both hands
    # are moved rigidly by the inverse of the object's motion (the object keeps its given pose, the hands take the
    # relative pose it settled into) and a hand apart from the object is pulled into touch (object settling without
    # its push-out); the settled pair is kept when both hands pass the redraw's gap check (and physics_exact_contact)
    # and it passes the stability test itself (hold_threshold after PhysicsConfig().duration s); a pair whose object
    # came to rest but that was not kept settles again from there (physics_settle_passes). Pairs that are not kept are
    # drawn again and settled, up to physics_rounds - 1 more times; pairs failing every round keep their first
    # draw. Off by default: it costs MuJoCo time per pair and round (docs/results_object.md)
    physics_rounds: int = 0
    # settle passes per draw: a pair whose object came to rest but that failed the checks or the stability test
    # after the move is let fall again from where it was moved and moved again, up to this many passes in all,
    # before it is drawn again. On the bundled model (1,000 samples, 16 rounds, both cores, 160 measured) 2 passes
    # instead of 1: held 0.944 -> 0.975, 15 % fewer pairs drawn again (443 -> 392 s of wall time; runs vary by
    # 10-20 %), contact 1.000 both, penetration 0.035 -> 0.046 cm^3 per hand (within the intervals);
    # docs/results_object.md, "MuJoCo settling"
    physics_settle_passes: int = 2
    physics_settle_s: float = 0.5
    physics_max_drop_mm: float = 100.0
    # a depth check of the settled pair (redraw_depth_mm of the redraw's checks); None: none, contact and the
    # stability test decide. On the bundled model 3 mm rejected half of the pairs that came to rest (the surface
    # samples' planes overstate the depth of hands the object rests on) and kept held at 0.42 instead of 0.70 with
    # 6 rounds (160 samples, docs/results_object.md)
    physics_depth_mm: float | None = None
    # the settled pair's contact check also on the exact distance of every hand vertex to the object's mesh (the
    # contact metric's 2 mm, interhandgen.objects.metrics.hand_object_contact), not only the surface samples'
    # planes: on 160 samples with 16 rounds both-hands contact 0.844 -> 0.950, held 0.875 -> 0.863, 7 % more CPU
    physics_exact_contact: bool = True
    # classifier-free guidance on the OBJECT (0 disables): x0 = c + scale (c - u), c with the object's token, u with
    # the null object token (the object-token dropout of training), in both stages; in the anchor stage only on the
    # pose and shape numbers, since the null object's anchor placement is the canonical frame, not trained
    object_cfg_scale: float = 0.0
    # Hand-hand interpenetration with an object. Object settling moves each hand on its own, so it can push one
    # hand into the other: on the bundled model (200 samples) pairs interpenetrating by > 0.1 cm^3 went 2.5 % -> 23 %.
    # settle_hand_guard: a row whose settled hands interpenetrate deeper than hand_depth_mm (the two-hand
    # resampling test, interhandgen.generation.settle.interpenetrating, on grasp_points points per hand) takes the
    # first of (both hands moved, the anchor only, the other only, neither) that does not; redraw_hand_check: such
    # pairs also fail the redraw. Both on: hand-hand penetration 1.99 -> 0.14 cm^3 per pair (160 of 400 samples;
    # the data's 0.027), both-hands contact and held within noise, 4 % more CPU (docs/results_object.md)
    settle_hand_guard: bool = True
    redraw_hand_check: bool = True
    # What the hand check adds to hand_object_violation (mm of hand-object failure): the redraw keeps a row's least
    # failing draw, and at 3 mm (BINARY_FAILURE_MM, until 2026-12-07) a draw with one hand through the other outranked
    # every clear draw failing the hand-object checks by more than 3 mm: every pair above 0.1 cm^3 of hand-hand
    # volume was such a kept draw. At 30 mm (the model bundled 2026-12-07 to 2026-12-08, 1,000 samples, seed 0):
    # hand-hand 0.140 -> 0.002 cm^3 per pair, max 39 -> 1.3, both-hands contact 0.982 -> 0.975, held 0.341 -> 0.343
    # (docs/results_object.md, "The hand-hand tail, examined")
    redraw_hand_failure_mm: float = 30.0
    hand_depth_mm: float = 1.0
    # The object through a hand (0 disables): a pair also fails the redraw by the depth beyond this (mm) of the
    # deepest of the object's surface samples inside a hand's inscribed spheres (which lie inside its mesh). A thin
    # wall (a bowl's, a plate's) through a palm or fingers lies at most half its thickness deep in the object, so the
    # hand's own depth check passes it, while the volume inside both is centimetres^3. On the bundled model (1,000
    # samples, 480 measured, seed 0) 3 mm took the penetration volume 1.29 -> 0.57 cm^3 per hand (bowls and plates
    # carried 90 % of it), both-hands contact 0.979 -> 0.973 (docs/results_object.md, "A thin wall through a hand")
    redraw_object_in_hand_mm: float = 3.0
    # Exact push-out (0 disables; needs the meshes and redraw_exact_points > 0): after the redraw, each hand's
    # redraw_exact_points closest points by the planes (those the redraw judged on the exact signed distance) that lie
    # less than exact_push_margin_mm outside move the hand by the deepest one's shortfall along their
    # shortfall-weighted outward directions, at most exact_push_rounds times; a move that puts one hand into the
    # other falls back as in settling (settle_hand_guard). With the check above: 0.57 -> 0.49 cm^3 per hand, contact
    # unchanged, about 1 s per 1,000 samples (the points and their first exact values are the redraw's)
    exact_push_rounds: int = 2
    # 1.5 mm, not 0.2: the judged points are of the 512-point subset, and the mesh vertices between them reach up to
    # about 2 mm closer (measured on sampled grasps); with 1.5 the penetration of boxes, convex hulls and frustums fell
    # 3-5x (0.034 -> 0.008 cm^3 per hand on boxes), contact unchanged (docs/results_object.md)
    exact_push_margin_mm: float = 1.5
    # Translation search (0 disables): a pair still failing the checks after the redraw tries, per hand, rigid
    # translations along both senses of the dominant normal of the object's surface samples inside the hand's
    # inscribed spheres (a thin wall through the hand has samples of both faces there, so their mean cancels) and
    # of world z, at the magnitudes of search_steps_mm; each is scored on the hand's spheres (depth of each sphere
    # in the object by the planes, gap beyond redraw_gap_mm), the best replaces the hand where it scores lower, and
    # the pair keeps the result where the redraw's own checks then fail it by less; search_rounds times (a second
    # round starts from the first's moves). On the bundled model (1,000 samples, 480 measured, seeds 0 / 1), with the
    # 1.5 mm push-out margin above: penetration 0.35 / 0.36 -> 0.12 / 0.11 cm^3 per hand (one round to 50 mm alone:
    # 0.17, seed 0), contact unchanged, held 0.21 / 0.19 -> 0.18 / 0.19, 2-5 s more CPU per 1,000 samples
    # (docs/results_object.md, "Moving hands off a wall, and a wider push-out margin")
    search_rounds: int = 2
    search_steps_mm: tuple[float, ...] = (2.0, 4.0, 6.0, 9.0, 12.0, 16.0, 20.0, 25.0, 30.0, 36.0, 43.0, 50.0)
    # Clearance moves (0 disables): a pair still failing after the translation search moves each hand, then both
    # hands by one translation (their relative pose kept), off the object by the shortest of clear_steps_mm along
    # both senses of the principal axis of the normals its surface points meet inside the object and of world z
    # after which none of its guidance points (apg_points) is inside by the planes (else the move leaving the least
    # summed depth), then pulls them back into touch (object settling without the push-out); the pair keeps the
    # result where the checks then fail it by less. The search's score is on the inscribed spheres, which lie a few
    # mm inside the skin and miss a thin wall (a 7 mm bowl wall) through the skin; the pull brings back the contact
    # the search's gap term held it to. On the bundled model (1,000 samples, 480 measured, seeds 0 / 1): penetration
    # 0.117 / 0.113 -> 0.024 / 0.063 cm^3 per hand, contact and held unchanged, 2-5 s more CPU per 1,000 samples
    # (docs/results_object.md, "Clearing the object")
    clear_rounds: int = 1
    clear_steps_mm: tuple[float, ...] = (3.0, 6.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 65.0, 80.0)
    # Exact clearance (0 disables; world frame, after every other stage but the finger closing; after MuJoCo
    # settling every hand is measured and a moved pair that held before and not after keeps its settled hands): the
    # hands that the checks screened in the kept draw as possibly in their object (one of the object's surface
    # samples inside the hand's inscribed spheres deeper than exact_clear_sphere_mm, or a hand point deeper in the
    # object than exact_clear_depth_mm by the planes) are measured exactly (manifold3d), and those with more than
    # exact_clear_min_cm3 inside move by the shortest translation along the six senses of the world axes that takes
    # them out of the object (steps exact_clear_steps_mm, a clearing step bisected back to 1 mm), within 2 mm of it
    # by the exact gap and no deeper in the other hand by the exact volume, else by the one leaving the least volume;
    # exact_clear_rounds searches, each from the last move (objects.clearing.clear_hands_exactly). The checks above
    # judge planes and spheres that a plate's rim or a bowl's wall inside a hand passes between; this judges the
    # meshes. On the bundled model (1,000 samples on the held-out placements, all pairs, seeds 0 / 1): penetration
    # 0.044 / 0.056 -> 0.0027 / 0.0023 cm^3 per hand, contact and held unchanged, 2-8 s of wall time per 1,000
    # (docs/results_object.md, "Exact clearance").
    exact_clear_rounds: int = 2
    exact_clear_steps_mm: tuple[float, ...] = (2.0, 8.0, 32.0, 80.0)
    exact_clear_min_cm3: float = 0.03
    exact_clear_sphere_mm: float = 0.0
    exact_clear_depth_mm: float = 2.0
    # Finger closing (0 disables; world frame, the last stage, after the exact clearance; not after MuJoCo settling,
    # whose kept pairs passed the stability test as they are): each finger open towards the object flexes about its
    # anatomical flexion axes in close_step_deg steps (longer where it is far: a bound on how fast its points move)
    # up to close_fingers_deg or its joint limit, and keeps the last closing at which its close_points points are at
    # least close_clear_mm outside the object, once within close_touch_mm of it (the planes of the object's surface
    # samples); a finger already within close_touch_mm, or moving away from the object, keeps its pose, and where
    # the hands are near each other the other hand stops it too (generation.finger_closing). The network's fingers
    # rarely wrap the object; MuJoCo holds an object on what is under and around it. On the bundled model (1,000
    # samples on the held-out placements, all pairs, seeds 0 / 1): held 0.176 / 0.186 -> 0.288 / 0.280, both-hands
    # contact 0.990 / 0.991 -> 0.985 / 0.991, penetration 0.0027 / 0.0023 -> 0.0030 / 0.0024 cm^3 per hand, hand-hand
    # unchanged (docs/results_object.md, "Finger closing").
    close_fingers_deg: float = 60.0
    close_step_deg: float = 3.0
    close_touch_mm: float = 4.0
    close_clear_mm: float = 2.0
    close_points: int = 48

    def validate(self) -> None:
        if not self.hand_depth_mm > 0:
            raise InputError(f"hand_depth_mm must be > 0, got {self.hand_depth_mm}")
        if not self.redraw_hand_failure_mm > 0:
            raise InputError(f"redraw_hand_failure_mm must be > 0 (redraw_hand_check=False turns the check off), "
                             f"got {self.redraw_hand_failure_mm}")
        if not 0 <= self.object_cfg_scale <= 10:
            raise InputError(f"object_cfg_scale must lie in [0, 10] (0 disables), got {self.object_cfg_scale}")
        if not 0 <= self.object_guidance_weight <= 2:
            raise InputError(f"object_guidance_weight must lie in [0, 2] (0 disables), got {self.object_guidance_weight}")
        if not self.object_guidance_rho > 0 or self.object_guidance_points < 1 or not self.object_plane_reach_mm >= 0:
            raise InputError(f"object_guidance_rho must be > 0, object_guidance_points >= 1 and object_plane_reach_mm "
                             f">= 0, got {self.object_guidance_rho}, {self.object_guidance_points} and "
                             f"{self.object_plane_reach_mm}")
        if (not self.object_contact_weight >= 0 or self.object_guidance_iters < 1
                or not self.object_contact_attract_mm > self.touch_mm):
            raise InputError(f"object_contact_weight must be >= 0, object_guidance_iters >= 1 and "
                             f"object_contact_attract_mm > touch_mm, got {self.object_contact_weight}, "
                             f"{self.object_guidance_iters}, {self.object_contact_attract_mm} and {self.touch_mm}")
        if self.object_settle_steps < 0 or not self.object_attract_mm > 0 or not self.touch_mm >= 0:
            raise InputError("object_settle_steps must be >= 0, object_attract_mm > 0 and touch_mm >= 0")
        if self.grasp_steps < 0 or not 0 < self.grasp_fraction <= 1 or self.grasp_points < 1:
            raise InputError(f"grasp_steps must be >= 0, grasp_fraction in (0, 1] and grasp_points >= 1, got "
                             f"{self.grasp_steps}, {self.grasp_fraction} and {self.grasp_points}")
        if self.redraw_rounds < 0 or not self.redraw_gap_mm > 0 or not self.redraw_depth_mm > 0 \
                or self.redraw_exact_points < 0:
            raise InputError(f"redraw_rounds and redraw_exact_points must be >= 0, redraw_gap_mm and redraw_depth_mm "
                             f"> 0, got {self.redraw_rounds}, {self.redraw_exact_points}, {self.redraw_gap_mm} and "
                             f"{self.redraw_depth_mm}")
        if not self.support_lift_mm >= 0:
            raise InputError(f"support_lift_mm must be >= 0 (0 disables it), got {self.support_lift_mm}")
        if not self.support_contact_mm > 0 or not -1 <= self.support_normal_z <= 1 or not self.support_mu >= 0:
            raise InputError(f"support_contact_mm must be > 0, support_normal_z in [-1, 1] and support_mu >= 0, got "
                             f"{self.support_contact_mm}, {self.support_normal_z} and {self.support_mu}")
        if not self.redraw_object_in_hand_mm >= 0 or self.exact_push_rounds < 0 or not self.exact_push_margin_mm >= 0:
            raise InputError(f"redraw_object_in_hand_mm and exact_push_rounds must be >= 0 (0 disables) and "
                             f"exact_push_margin_mm >= 0, got {self.redraw_object_in_hand_mm}, {self.exact_push_rounds} "
                             f"and {self.exact_push_margin_mm}")
        if self.search_rounds < 0:
            raise InputError(f"search_rounds must be >= 0 (0 disables the translation search), got {self.search_rounds}")
        if self.search_rounds and (not self.search_steps_mm or not all(m > 0 for m in self.search_steps_mm)):
            raise InputError(f"search_steps_mm must be one or more distances > 0 (mm), got {self.search_steps_mm}")
        if self.clear_rounds < 0:
            raise InputError(f"clear_rounds must be >= 0 (0 disables the clearance moves), got {self.clear_rounds}")
        if self.clear_rounds and (not self.clear_steps_mm or not all(m > 0 for m in self.clear_steps_mm)):
            raise InputError(f"clear_steps_mm must be one or more distances > 0 (mm), got {self.clear_steps_mm}")
        if self.exact_clear_rounds < 0:
            raise InputError(f"exact_clear_rounds must be >= 0 (0 disables the exact clearance), got "
                             f"{self.exact_clear_rounds}")
        if self.exact_clear_rounds and (not self.exact_clear_steps_mm
                                        or not all(m > 0 for m in self.exact_clear_steps_mm)):
            raise InputError(f"exact_clear_steps_mm must be one or more distances > 0 (mm), got "
                             f"{self.exact_clear_steps_mm}")
        if not self.close_fingers_deg >= 0:
            raise InputError(f"close_fingers_deg must be >= 0 (0 disables the finger closing), got "
                             f"{self.close_fingers_deg}")
        if self.close_fingers_deg and not (self.close_step_deg > 0 and self.close_touch_mm >= self.close_clear_mm >= 0
                                           and self.close_points >= 1):
            raise InputError("finger closing: close_step_deg must be > 0, close_touch_mm >= close_clear_mm >= 0 and "
                             f"close_points >= 1, got {self.close_step_deg}, {self.close_touch_mm}, "
                             f"{self.close_clear_mm} and {self.close_points}")
        if not (self.exact_clear_min_cm3 >= 0 and self.exact_clear_sphere_mm >= 0 and self.exact_clear_depth_mm >= 0):
            raise InputError(f"exact_clear_min_cm3, exact_clear_sphere_mm and exact_clear_depth_mm must be >= 0, got "
                             f"{self.exact_clear_min_cm3}, {self.exact_clear_sphere_mm} and "
                             f"{self.exact_clear_depth_mm}")
        if self.exact_push_rounds > 0 and self.redraw_exact_points < 1:
            raise InputError("exact_push_rounds > 0 moves hands by the redraw's exact points: set redraw_exact_points "
                             f">= 1 (got {self.redraw_exact_points})")
        if (self.physics_rounds < 0 or not self.physics_settle_s > 0 or not self.physics_max_drop_mm > 0
                or not (self.physics_depth_mm is None or self.physics_depth_mm > 0)):
            raise InputError(f"physics_rounds must be >= 0 (0 disables MuJoCo settling), physics_settle_s, "
                             f"physics_max_drop_mm > 0 and physics_depth_mm None or > 0, got {self.physics_rounds}, "
                             f"{self.physics_settle_s}, {self.physics_max_drop_mm} and {self.physics_depth_mm}")
        if self.physics_settle_passes < 1:
            raise InputError(f"physics_settle_passes must be >= 1 (settle passes per draw), got "
                             f"{self.physics_settle_passes}")


def object_penetration(points: torch.Tensor, surface: torch.Tensor, rho: float, reach_mm: float = 0.0,
                       within_mm: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Penetration of hand points [B, S, 3] into objects sampled by ``surface`` [B, K, 6] (points, outward normals).

    Returns (penalty [B]: sum of Geman-McClure(depth, rho), signed [B, S], normals [B, S, 3] of the deciding
    samples). ``signed`` is the LARGEST of the distances (p - q) . n to the tangent planes of the samples q that lie
    within ``reach_mm`` of the point's nearest sample distance (negative inside; differentiable w.r.t. ``points``):
    a point counts as inside only where every such plane has it inside. With ``reach_mm`` = 0 this is the nearest
    sample's plane alone, exact for a point whose nearest sample lies on the face it is closest to, as in the
    hand-hand APG, but a point beside a thin rim or under a dish, whose one nearest plane can put it centimetres
    "inside", needs the planes of the other side too; a small reach keeps the samples of a concave (bowl-like)
    surface farther along, whose planes pass above points just inside it, from voting. Outside, the value is at
    least the distance to the nearest sample less :data:`SAMPLE_SPACING`.

    ``within_mm`` (needs ``reach_mm`` > 0; None: every point): only the points closer than that to the object (by
    ``signed``) and each row's closest point get their deciding sample; the others (outside, farther) have the
    same ``signed`` value (from the single-precision search, no gradient through the plane) and a zero normal. The
    sampler's callers need normals of inside points and of the closest one only, and the sample searches are most
    of their time.
    """
    if points.dim() != 3 or surface.dim() != 3 or surface.shape[0] != points.shape[0] or surface.shape[2] != 6:
        raise InputError(f"points [B, S, 3] and surface [B, K, 6] expected, got {list(points.shape)} and "
                         f"{list(surface.shape)}")
    if not reach_mm >= 0:
        raise InputError(f"reach_mm must be >= 0, got {reach_mm}")
    surface = surface.to(points.dtype)
    grad = torch.is_grad_enabled() and points.requires_grad
    if within_mm is not None and not (reach_mm > 0 and within_mm >= 0):
        raise InputError(f"within_mm needs reach_mm > 0 and must be >= 0, got {within_mm} (reach_mm {reach_mm})")
    within = None if within_mm is None else within_mm / 1000.0
    best, apart, nearest, value = _deciding_samples(points, surface, reach_mm / 1000.0, grad, within)
    has = None if within is None else best >= 0
    if has is not None:
        best = best.clamp_min(0)
        nearest = None if nearest is None else nearest.clamp_min(0)
    near = torch.gather(surface, 1, best[..., None].expand(-1, -1, 6))
    offset = points - near[..., :3]
    plane = (offset * near[..., 3:]).sum(-1)
    normals = near[..., 3:]
    if has is not None:
        plane = torch.where(has, plane, value.to(plane.dtype))
        normals = normals * has[..., None].to(normals.dtype)
    apart = apart.to(points.dtype)
    if grad:  # the distance to the nearest sample, with its gradient (the unit vector from that sample)
        away = points - torch.gather(surface[..., :3], 1, nearest[..., None].expand(-1, -1, 3))
        unit = (away / away.norm(dim=-1, keepdim=True).clamp_min(1e-12)).detach()
        if has is not None:
            unit = unit * has[..., None].to(unit.dtype)
        apart = apart + (unit * (points - points.detach())).sum(-1)
    # Outside, the distance is at least the distance to the nearest sample less the samples' spacing: a point
    # beyond an edge (level with a box's top face, beside it) lies ON the face's plane but far from the face.
    signed = torch.where(plane < 0, plane, torch.maximum(plane, apart - SAMPLE_SPACING))
    return geman_mcclure(torch.relu(-signed), rho).sum(1), signed, normals


#: The sampler's guidance, settling and redraw checks need the deciding samples (normals, gradients) of the points
#: inside the object or closer than this (mm) and of each hand's closest point only (``within_mm`` of
#: :func:`object_penetration`).
NORMALS_WITHIN_MM = 2.0


def _within(reach_mm: float, needed_mm: float = 0.0) -> float | None:
    """``within_mm`` for the sampler's calls: :data:`NORMALS_WITHIN_MM` (or ``needed_mm`` if larger) where the
    planes of nearby samples decide, None (every point) for the nearest plane alone (``reach_mm`` 0)."""
    return max(NORMALS_WITHIN_MM, needed_mm) if reach_mm > 0 else None


#: (point, sample) pairs per chunk of :func:`_deciding_samples` (a few MB: the chunk stays in the CPU's caches).
_SEARCH_CHUNK = 1 << 21
#: Squared-distance excess (m^2) -> plane-distance penalty (m) of the samples beyond the reach. The reach ball's
#: squared radius is at least reach^2, so a sample outside it exceeds it by at least one float32 ulp of reach^2
#: (1e-17 m^2 at a reach of 0.01 mm): the penalty is then >= 10 m, far below any sample inside (whose plane distance
#: is at least minus the nearest distance), so the choice is that of masking them out.
_OUT_OF_REACH = 1e18


#: Points within this (metres) of their row's smallest signed distance also get their deciding sample with
#: ``within``: the row's closest point, whose normal settling pulls along, must have one despite float rounding.
_CLOSEST_TIE = 1e-6


def _dot3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[...] the dot products of [..., 3] vectors as (a0 b0 + a1 b1) + a2 b2: the values of ``(a * b).sum(-1)``
    here at a third of its time (torch's reduction over three contiguous numbers is slow on the CPU)."""
    a0, a1, a2 = a.unbind(-1)
    b0, b1, b2 = b.unbind(-1)
    return a0 * b0 + a1 * b1 + a2 * b2


@torch.no_grad()
def _deciding_samples(points: torch.Tensor, surface: torch.Tensor, reach: float, index: bool,
                      within: float | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(index [B, S] of the sample whose plane decides each point in :func:`object_penetration`, distance [B, S] to
    the nearest sample, with ``index`` that sample's index [B, S] (else None), and with ``within`` the deciding
    plane distance [B, S] (else None)). In single precision and in chunks of rows: squared distances and plane
    distances are two batched matrix products that stay in the CPU's caches; the search only picks samples
    (millimetres apart) and the nearest distance is used only beyond the samples' spacing, where its
    single-precision error is below a micrometre.

    ``within`` (metres; needs ``reach`` > 0): the two index searches (the slow part) run only for the points whose
    signed distance (as :func:`object_penetration` forms it from these values) is below ``within`` or within
    :data:`_CLOSEST_TIE` of their row's smallest; the other points get index -1 and are judged by the plane
    distance returned."""
    if within is not None and reach == 0:
        raise ValueError("_deciding_samples: 'within' needs reach > 0")
    B, S = points.shape[:2]
    P, Q, N = points.detach().float(), surface[..., :3].float(), surface[..., 3:].float()
    pp, qq, qn = _dot3(P, P), _dot3(Q, Q), _dot3(Q, N)
    best = torch.empty(B, S, dtype=torch.long, device=points.device)
    nearest = torch.empty(B, S, dtype=torch.float32, device=points.device)
    which = torch.empty(B, S, dtype=torch.long, device=points.device) if index or reach == 0 else None
    value = None if within is None else torch.empty(B, S, dtype=torch.float32, device=points.device)
    K = Q.shape[1]
    step = max(1, min(B, _SEARCH_CHUNK // max(1, S * K)))
    # one buffer each for the chunks' squared and plane distances, reused: fresh chunk-sized tensors per chunk cost
    # about a quarter of the search's time (memory the system had to map again)
    d2_buf = torch.empty(step, S, K, dtype=torch.float32, device=points.device)
    plane_buf = None if reach == 0 else torch.empty_like(d2_buf)
    neg_qn = -qn[:, None, :]
    for i in range(0, B, step):
        r = slice(i, i + step)
        b = min(step, B - i)
        d2 = torch.baddbmm(qq[r, None, :], P[r], Q[r].transpose(1, 2), alpha=-2.0, out=d2_buf[:b])
        d2.add_(pp[r, :, None])
        first = d2.amin(dim=2, keepdim=True)
        nearest[r] = first[..., 0].clamp_min(0).sqrt()
        if within is None and which is not None:
            which[r] = d2.argmin(dim=2)
        if reach == 0:
            best[r] = which[r]
            continue
        # every sample within the reach of the nearest one's distance votes (the nearest itself always)
        bound = torch.maximum((nearest[r, :, None] + reach).square(), first)
        # samples beyond the reach are pushed _OUT_OF_REACH below: arithmetic, a quarter of the time of a comparison
        # and masked_fill, and the same choice (module constant). The push goes into the product's input (-q.n): for a
        # sample within the reach that input is -q.n - 0, exactly the unpushed one, so the plane distances that can
        # be chosen are bit for bit those of the product alone, and the product writes over its input in place.
        plane = torch.sub(d2, bound, out=plane_buf[:b]).clamp_min_(0.0)
        plane = torch.sub(neg_qn[r], plane, alpha=_OUT_OF_REACH, out=plane)
        plane = torch.baddbmm(plane, P[r], N[r].transpose(1, 2), out=plane)
        if within is None:
            best[r] = plane.argmax(dim=2)
            continue
        top = plane.amax(dim=2)
        value[r] = top
        signed = torch.where(top < 0, top, torch.maximum(top, nearest[r] - SAMPLE_SPACING))
        need = (signed < within) | (signed <= signed.amin(dim=1, keepdim=True) + _CLOSEST_TIE)
        rows, cols = need.nonzero(as_tuple=True)
        best[r] = -1
        best[r][rows, cols] = plane[rows, cols].argmax(dim=1)
        if which is not None:
            which[r] = -1
            which[r][rows, cols] = d2[rows, cols].argmin(dim=1)
    return best, nearest, which, value


def other_in_object_frame(points: torch.Tensor, anchor_raw: torch.Tensor) -> torch.Tensor:
    """Points [B, S, 3] of the other hand in the anchor's frame -> the object frame (the anchor's raw object-frame
    vector [B, 64] gives its rotation and translation)."""
    R = rot6d_to_matrix(anchor_raw[:, ROT_SLICE]).to(points.dtype)
    return points @ R.transpose(1, 2) + anchor_raw[:, None, TRANSL_SLICE].to(points.dtype)


def object_contact(signed: torch.Tensor, touch: float, attract: float) -> torch.Tensor:
    """[B] (gap - touch)^2 with gap = the smallest of a hand's signed distances [B, S] (metres, from
    :func:`object_penetration`), for hands with touch < gap < attract; exactly 0 for hands touching, inside or
    farther than ``attract`` (the rule of the two-hand contact guidance, :func:`interhandgen.generation.apg.
    contact_gap_loss`, against the object). Differentiable through the closest point."""
    return gap_pull(signed.min(dim=1).values, touch, attract)


class HandObjectGuidance(PolyakGuidance):
    """x0 guidance against the object for one stage (module docstring).

    Args:
        hand: :class:`SubsetHand` of the stage's hand; mean, std: [64] its statistics; surface: [B, K, 6].
        anchor_raw: None for stage 1 (the hand is the anchor, placed in the object frame by its own vector); for
            stage 2 the raw anchors [B, 64] (the hand is placed relative to them).
        apg: optional (anchor subset points, normals [B, N, 3] in the anchor frame, rho, margin): hand-hand APG in
            the same step (stage 2).
        contact: optional (weight, touch, attract) in metres: the hand-object contact term (:func:`object_contact`).
        iters: Polyak steps per guided reverse step.
        reach_mm: which surface samples' planes decide inside / outside (:func:`object_penetration`).
    """

    def __init__(self, hand: SubsetHand, mean: torch.Tensor, std: torch.Tensor, surface: torch.Tensor,
                 weight: float, num_steps: int, decay: float, last_steps: int | None, rho: float, max_step: float,
                 anchor_raw: torch.Tensor | None = None, apg: tuple | None = None, contact: tuple | None = None,
                 iters: int = 1, reach_mm: float = 0.0) -> None:
        self.hand, self.mean, self.std, self.surface = hand, mean, std, surface
        self.weight, self.decay, self.num_steps = float(weight), float(decay), int(num_steps)
        self.last_steps, self.rho, self.max_step = last_steps, float(rho), float(max_step)
        self.anchor_raw, self.apg, self.contact, self.iters = anchor_raw, apg, contact, int(iters)
        self.reach_mm = float(reach_mm)
        self.calls = self.guided_calls = 0

    def loss(self, x_std: torch.Tensor) -> torch.Tensor:
        points, normals = self.hand(x_std * self.std + self.mean)
        placed = points if self.anchor_raw is None else other_in_object_frame(points, self.anchor_raw)
        total = 0.0
        if self.surface is not None:
            penalty, signed, _ = object_penetration(placed, self.surface, self.rho, self.reach_mm,
                                                    _within(self.reach_mm))
            total = penalty
            if self.contact is not None and self.contact[0] > 0:
                weight, touch, attract = self.contact
                total = total + weight * object_contact(signed, touch, attract)
        if self.apg is not None:
            a_pts, a_nrm, rho, margin = self.apg
            total = total + surface_penetration_loss(a_pts, a_nrm, points, normals, rho=rho, margin=margin)
        return total


@torch.no_grad()
def settle_on_object(points: torch.Tensor, surface: torch.Tensor, settings: ObjectSettings, push: bool = True
                     ) -> torch.Tensor:
    """Rigid translations [B, 3] (object frame, metres) that move hands with points [B, S, 3] out of the object and
    into touch (module docstring); rows farther than ``object_attract_mm`` get exactly 0, and with ``push`` False
    so do rows touching the object (within ``touch_mm``) or inside it at the start: only hands apart from it move."""
    B = points.shape[0]
    if not push:
        reach = settings.object_plane_reach_mm
        start = object_penetration(points, surface, 1.0, reach, _within(reach))[1].amin(1)
        apart = start > settings.touch_mm / 1000.0
        move = torch.zeros(B, 3, dtype=points.dtype, device=points.device)
        if bool(apart.any()):
            move[apart] = settle_on_object(points[apart], surface[apart], settings)
        return move
    move = torch.zeros(B, 3, dtype=points.dtype, device=points.device)
    attract, touch = settings.object_attract_mm / 1000.0, settings.touch_mm / 1000.0
    active = torch.arange(B, device=points.device)
    for _ in range(settings.object_settle_steps):
        if not active.numel():
            break
        _, signed, normals = object_penetration(points[active] + move[active, None], surface[active], 1.0,
                                                settings.object_plane_reach_mm,
                                                _within(settings.object_plane_reach_mm))
        depth = torch.relu(-signed)
        deepest = depth.amax(1)
        inside = deepest > 0
        pushed = (depth[..., None] * normals).sum(1)
        push_dir = pushed / pushed.norm(dim=1, keepdim=True).clamp_min(1e-12)
        gap, closest = signed.min(dim=1)
        n_closest = torch.gather(normals, 1, closest[:, None, None].expand(-1, 1, 3))[:, 0]
        pull = (~inside & (gap > touch) & (gap < attract))[:, None]
        step = torch.where(inside[:, None], push_dir * (deepest[:, None] + touch),
                           torch.where(pull, -n_closest * (gap - touch)[:, None], torch.zeros_like(n_closest)))
        move[active] = move[active] + step
        # a row that did not move meets the same test again: it would never move; drop it
        active = active[(step != 0).any(1)]
    return move


#: Iterations of the support lift (each a query of every hand point against the surface samples; the plane model
#: is conservative on convex surfaces, so a second pass closes the rest of the gap; 6 cost 22 s per 1,000 samples).
LIFT_ITERATIONS = 2
#: Object surfaces count as facing down (a lifted hand may rest under them) when their normal's z is below this.
FACING_DOWN = -0.2


@torch.no_grad()
def lift_to_support(points: torch.Tensor, surface: torch.Tensor, settings: ObjectSettings) -> torch.Tensor:
    """Upward translations [B] (metres, object frame: world axes) that bring hands with points [B, S, 3] into touch
    (``touch_mm``) with a surface of the object facing down above them, 0 for rows with none within
    ``support_lift_mm`` or with a point inside the object. Per iteration each point's vertical clearance is its
    signed distance over the downward slope of its nearest surface sample (the plane model), the row moves by the
    smallest; :data:`LIFT_ITERATIONS` iterations."""
    B = points.shape[0]
    lift = torch.zeros(B, dtype=points.dtype, device=points.device)
    limit, touch = settings.support_lift_mm / 1000.0, settings.touch_mm / 1000.0
    up = torch.tensor([0.0, 0.0, 1.0], dtype=points.dtype, device=points.device)
    start_ok = None
    reach = settings.object_plane_reach_mm
    for _ in range(LIFT_ITERATIONS):
        _, signed, normals = object_penetration(points + lift[:, None, None] * up, surface, 1.0, reach)
        if start_ok is None:
            start_ok = signed.amin(1) >= 0
        slope = -normals[..., 2]
        clearance = torch.where(slope > -FACING_DOWN, (signed - touch).clamp_min(0) / slope.clamp_min(1e-6),
                                torch.full_like(signed, math.inf))
        lift = lift + clearance.amin(1).clamp_max(limit)
        lift = torch.minimum(lift, torch.full_like(lift, limit))
    _, signed, normals = object_penetration(points + lift[:, None, None] * up, surface, 1.0, reach)
    touching = (signed.amin(1) < 2 * touch + 1e-4) & (signed.amin(1) > -touch)
    keep = start_ok & touching & (lift < limit)
    return torch.where(keep, lift, torch.zeros_like(lift))


def _compose(raw: torch.Tensor, shift_mm: torch.Tensor, turn: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Raw hand vectors [B, 64] moved by ``shift_mm`` [B, 3], turned by axis-angle ``turn`` [B, 3] about their
    centre joint (the vector's translation) and with ``pose`` [B, 45] added to the pose coefficients."""
    R = axis_angle_to_matrix(turn) @ rot6d_to_matrix(raw[:, ROT_SLICE])
    return torch.cat([raw[:, POSE_SLICE] + pose, raw[:, POSE_SLICE.stop:ROT_SLICE.start], matrix_to_rot6d(R),
                      raw[:, TRANSL_SLICE] + shift_mm / 1000.0], dim=1)


def grasp_settle(hand: SubsetHand, raw: torch.Tensor, surface: torch.Tensor, settings: ObjectSettings
                 ) -> torch.Tensor:
    """Grasp settling (module docstring) of hands with raw vectors [B, 64] in the object frame around objects
    sampled by ``surface`` [B, K, 6]: the settled vectors [B, 64]; rows farther than ``object_attract_mm`` from
    the object are returned unchanged (bit for bit)."""
    B = raw.shape[0]
    with torch.no_grad():
        gap = object_penetration(hand(raw)[0], surface, 1.0, settings.object_plane_reach_mm)[1].amin(1)
    active = gap < settings.object_attract_mm / 1000.0
    if settings.grasp_steps == 0 or not bool(active.any()):
        return raw
    x, surf = raw[active].detach(), surface[active]
    n = x.shape[0]
    params = [torch.zeros(n, 3, dtype=x.dtype, device=x.device), torch.zeros(n, 3, dtype=x.dtype, device=x.device),
              torch.zeros(n, POSE_SLICE.stop, dtype=x.dtype, device=x.device)]
    # the data generator's step sizes: 0.6 mm, 0.012 rad, 0.05 per pose coefficient
    opt = BatchedAdam(params, [0.6, 0.012, 0.05], settings.grasp_steps)
    every = torch.ones(n, hand.indices.numel(), dtype=torch.bool, device=x.device)
    with torch.enable_grad():
        for _ in range(settings.grasp_steps):
            for p in params:
                p.requires_grad_(True)
            points = hand(_compose(x, *params))[0]
            signed = object_penetration(points, surf, 1.0, settings.object_plane_reach_mm)[1] * 1000.0
            loss = add_contact_terms(torch.zeros(n, dtype=x.dtype, device=x.device), signed, every,
                                     settings.grasp_fraction)
            shift, turn, pose = params
            loss = loss + 1e-3 * shift.square().sum(1) + 50.0 * turn.square().sum(1) + 2.0 * pose.square().sum(1)
            grads = torch.autograd.grad(loss.sum(), params)
            for p in params:
                p.requires_grad_(False)
            opt.step(list(grads))
    out = raw.clone()
    with torch.no_grad():
        out[active] = _compose(x, *params)
    return out


class ExactObjects:
    """The exact signed distance (:class:`interhandgen.objects.sdf.ObjectSDF`) of object-frame points to each row's
    object: row i is library mesh ``ids[i]`` (centred on its centre of mass) turned by ``rotations[i]`` [3, 3], and
    mirrored in x = 0 with ``mirrored`` (completion of a right hand). Each mesh's search structure is built once,
    on first use."""

    def __init__(self, vertices: list, faces: list, ids: torch.Tensor, rotations: torch.Tensor,
                 mirrored: bool = False) -> None:
        self.vertices, self.faces, self.mirrored = vertices, faces, mirrored
        self.ids, self.rotations = torch.as_tensor(ids, dtype=torch.long), rotations.to(torch.float64)
        self._sdf: dict[int, ObjectSDF] = {}

    def subset(self, rows: torch.Tensor) -> "ExactObjects":
        """The same objects for rows ``rows`` only (renumbered from 0), sharing the built search structures."""
        part = ExactObjects(self.vertices, self.faces, self.ids[rows.cpu()], self.rotations[rows.cpu()], self.mirrored)
        part._sdf = self._sdf
        return part

    def signed(self, rows: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """[b, P] signed distances (metres, negative inside) of points [b, P, 3] of rows ``rows`` [b]."""
        return self.query(rows, points)[0]

    def query(self, rows: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed distances [b, P] (metres, negative inside) and the unit outward directions of their gradients
        [b, P, 3] (object frame) at points [b, P, 3] of rows ``rows`` [b]; float64 on the points' device."""
        rows = rows.cpu()
        flip = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
        local = points.detach().cpu().double()
        if self.mirrored:
            local = local * flip
        R = self.rotations[rows]
        local = local @ R  # the object frame has the world's axes: undo the row's rotation
        out = torch.empty(local.shape[:2], dtype=torch.float64)
        direction = torch.empty(local.shape, dtype=torch.float64)
        ids = self.ids[rows]
        for k in torch.unique(ids).tolist():
            sel = (ids == k).nonzero()[:, 0]
            if k not in self._sdf:
                self._sdf[k] = ObjectSDF(torch.as_tensor(self.vertices[k], dtype=torch.float64),
                                         torch.as_tensor(self.faces[k], dtype=torch.long))
            out[sel], _, direction[sel] = self._sdf[k](local[sel])
        direction = direction @ R.transpose(1, 2)
        if self.mirrored:
            direction = direction * flip
        return out.to(points.device), direction.to(points.device)


def hand_object_violation(hands: tuple[SubsetHand, SubsetHand], a_raw: torch.Tensor, o_raw: torch.Tensor,
                          surface: torch.Tensor, settings: ObjectSettings, exact: "ExactObjects | None" = None,
                          rows: torch.Tensor | None = None, judged_points: bool = False,
                          screen: torch.Tensor | None = None):
    """[B] how far (mm) each pair (raw anchors [B, 64] in the object frame, partners relative to them) is from
    passing the redraw's checks; 0 exactly when it passes. Per hand (surface samples' planes): the gap beyond
    ``redraw_gap_mm`` plus the depth beyond ``redraw_depth_mm``; with ``exact`` (the rows' object meshes, ``rows``
    [B] their indices there) and ``redraw_exact_points`` > 0, gap and depth are those of the hand's that many
    closest points by the planes, on the exact signed distance. With ``redraw_hand_check`` a pair whose hands
    interpenetrate (:func:`hands_interpenetrate`) adds ``redraw_hand_failure_mm``, with ``redraw_support`` a pair
    whose contacts cannot hold the object (:func:`support_check`, judged where the rest passes) adds
    :data:`BINARY_FAILURE_MM`.
    With ``judged_points`` (needs ``exact``) it also returns the exactly judged points of both hands (object frame)
    with their signed distances and outward directions: a tuple of [B, 2, k, 3], [B, 2, k], [B, 2, k, 3].
    ``screen``: an optional [B, 2] bool tensor set in place, per hand (anchor, other), to whether it may lie in the
    object beyond the exact clearance's screen (``exact_clear_sphere_mm``, ``exact_clear_depth_mm``; see
    :class:`ObjectSettings`)."""
    if screen is not None and tuple(screen.shape) != (a_raw.shape[0], 2):
        raise ValueError(f"hand_object_violation: 'screen' must be a [{a_raw.shape[0]}, 2] tensor, got "
                         f"{tuple(screen.shape)}")
    if judged_points and (exact is None or settings.redraw_exact_points < 1):
        raise ValueError("hand_object_violation: 'judged_points' needs 'exact' and redraw_exact_points >= 1")
    if exact is not None and rows is None:
        raise ValueError("hand_object_violation: 'exact' needs 'rows', the pairs' indices among its objects")
    with torch.no_grad():
        out = torch.zeros(a_raw.shape[0], dtype=torch.float64, device=a_raw.device)
        both, kept = [], []
        reach = settings.object_plane_reach_mm
        within = _within(reach, settings.support_contact_mm if settings.redraw_support else 0.0)
        for j, pts in enumerate((hands[0](a_raw)[0], other_in_object_frame(hands[1](o_raw)[0], a_raw))):
            _, signed, normals = object_penetration(pts, surface, 1.0, reach, within)
            if screen is not None:
                screen[:, j] = torch.relu(-signed).amax(1) * 1000.0 > settings.exact_clear_depth_mm
            judged = signed
            if exact is not None and settings.redraw_exact_points > 0:
                k = min(settings.redraw_exact_points, pts.shape[1])
                low = signed.topk(k, dim=1, largest=False).indices
                chosen = torch.gather(pts, 1, low[..., None].expand(-1, -1, 3))
                judged, direction = exact.query(rows, chosen)
                kept.append((chosen.double(), judged, direction))
            gap_mm, depth_mm = judged.amin(1).double() * 1000.0, torch.relu(-judged).amax(1).double() * 1000.0
            out += torch.relu(gap_mm - settings.redraw_gap_mm) + torch.relu(depth_mm - settings.redraw_depth_mm)
            # the pass rule is gap < redraw_gap_mm: a gap exactly at it fails by a hair
            out += (gap_mm == settings.redraw_gap_mm).double() * 1e-9
            both.append((pts, normals, signed))
        if settings.redraw_object_in_hand_mm > 0 or screen is not None:
            samples = surface[..., :3]
            for j, depth in enumerate((object_in_hand_depth(hands[0], a_raw, samples),
                                       object_in_hand_depth(hands[1], o_raw, samples, anchor_raw=a_raw))):
                if settings.redraw_object_in_hand_mm > 0:
                    out += torch.relu(depth.double() - settings.redraw_object_in_hand_mm)
                if screen is not None:
                    screen[:, j] |= depth > settings.exact_clear_sphere_mm
        if settings.redraw_hand_check:
            out += hands_interpenetrate(hands, a_raw, o_raw, settings).double() * settings.redraw_hand_failure_mm
        if settings.redraw_support:
            rows = (out == 0).nonzero()[:, 0]
            if rows.numel():
                pts, normals, signed = (torch.cat([h[k][rows] for h in both], 1) for k in range(3))
                out[rows] += (~support_check(pts, normals, signed, settings)).double() * BINARY_FAILURE_MM
    if judged_points:
        return out, tuple(torch.stack(part, 1) for part in zip(*kept))
    return out


def object_in_hand_depth(hand: SubsetHand, raw: torch.Tensor, samples: torch.Tensor,
                         anchor_raw: torch.Tensor | None = None) -> torch.Tensor:
    """[B] how deep (mm, 0 if none) the deepest of an object's surface samples [B, K, 3] (object frame) lies inside a
    hand, by the hand's inscribed spheres (:func:`interhandgen.generation.settle.hand_spheres`; they lie inside its
    mesh, so the value is a lower bound of the depth). ``raw`` [B, 64]: the hand in the object frame, or, with
    ``anchor_raw`` [B, 64], relative to that anchor (the other hand of a pair)."""
    with torch.no_grad():
        # the spheres' radii before their cap by the posed mesh bound the depth from above: only rows with some
        # sample inside those need the capped radii (a full skinning of the hand), the others are 0 either way
        centres, loose = hand_spheres(hand, raw, capped=False)
        if anchor_raw is not None:
            centres = other_in_object_frame(centres, anchor_raw)
        samples = samples.to(centres.dtype)
        # max over (k, s) of r_s - d_ks is max over s of r_s - min_k d_ks (rounding is monotonic: the same value);
        # the distances in chunks of rows that stay in the caches instead of one [B, K, S] tensor
        step = max(1, _SEARCH_CHUNK // max(1, samples.shape[1] * centres.shape[1]))
        near = torch.cat([torch.cdist(samples[i:i + step], centres[i:i + step]).amin(1)
                          for i in range(0, samples.shape[0], step)])  # [B, S]
        depth = torch.zeros(raw.shape[0], dtype=near.dtype, device=near.device)
        rows = torch.nonzero((loose - near).amax(1) > 0).squeeze(1)
        if rows.numel():
            radii = hand_spheres(hand, raw[rows])[1]
            depth[rows] = torch.relu((radii - near[rows]).amax(1)) * 1000.0
        return depth


def hand_object_check(hands: tuple[SubsetHand, SubsetHand], a_raw: torch.Tensor, o_raw: torch.Tensor,
                      surface: torch.Tensor, settings: ObjectSettings) -> torch.Tensor:
    """[B] bool: the pair passes the redraw's checks (:func:`hand_object_violation` is 0): both hands within
    ``redraw_gap_mm`` of the object and no deeper in it than ``redraw_depth_mm`` (surface samples' planes); with
    ``redraw_hand_check`` also not interpenetrating each other, with ``redraw_support`` also :func:`support_check`."""
    return hand_object_violation(hands, a_raw, o_raw, surface, settings) == 0


def support_check(points: torch.Tensor, normals: torch.Tensor, signed: torch.Tensor, settings: ObjectSettings
                  ) -> torch.Tensor:
    """[B] bool: the contacts of hand points [B, S, 3] (object frame: the centre of mass at the origin, gravity -z)
    with the object, by their signed distances [B, S] and the object's normals [B, S, 3] there, can hold it
    (:func:`interhandgen.objects.equilibrium.can_hold` on the contacts within ``support_contact_mm`` on surfaces
    facing down, normal z below ``support_normal_z``, friction ``support_mu``)."""
    contact, nrm, mask = select_contacts(points, normals, signed, settings.support_contact_mm / 1000.0,
                                         settings.support_normal_z)
    centre = torch.zeros(points.shape[0], 3, dtype=points.dtype, device=points.device)
    return can_hold(contact, nrm, mask, centre, settings.support_mu)


def _in_own_frame(anchor_raw: torch.Tensor) -> torch.Tensor:
    """Raw anchors [B, 64] with the canonical slots (identity, zero): the anchor in its own frame, where the
    hand-hand guidance and settling work."""
    out = anchor_raw.clone()
    out[:, RIGID_SLICE] = canonical_anchor_tail(anchor_raw)
    return out


class ObjectGuided(BoundObject):
    """A :class:`BoundObject` with classifier-free guidance on the object: ``x0 = c + scale (c - u)`` on the numbers
    ``dims`` (a slice; None: all), c the prediction with the object's token, u with the null object token; one
    forward of 2B rows (the object network's rows do not interact). ``null_tail``: standardised [9] anchor slots
    that replace the condition's in u (training gave object-free rows the anchor in the canonical frame), or None.
    """

    def __init__(self, net: ObjectConditionedDenoiser, token: torch.Tensor, scale: float,
                 dims: slice | None = None, null_tail: torch.Tensor | None = None) -> None:
        if token is None:
            raise InputError("classifier-free guidance on the object needs an object token")
        super().__init__(net, token)
        self.scale, self.dims, self.null_tail = float(scale), dims, null_tail

    def forward(self, x_t, t, cond, cond_mask):
        B = x_t.shape[0]
        token = self.rows(x_t)
        on = torch.ones(B, dtype=torch.bool, device=x_t.device)
        cond_u = cond
        if self.null_tail is not None:
            cond_u = cond.clone()
            cond_u[:, RIGID_SLICE] = self.null_tail.to(cond)
        out = self.net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, cond_u]),
                       torch.cat([cond_mask, cond_mask]), object_token=torch.cat([token, token]),
                       object_mask=torch.cat([on, ~on]))
        c, u = out[:B], out[B:]
        guided = c + self.scale * (c - u)
        if self.dims is None:
            return guided
        res = c.clone()
        res[:, self.dims] = guided[:, self.dims]
        return res


def _draw(b: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.randn(b, HAND_DIM, generator=gen).to(device)


def object_cascaded_sample(
    net: ObjectConditionedDenoiser,
    schedule: Schedule,
    stats_mean: torch.Tensor,
    stats_std: torch.Tensor,
    tokens: torch.Tensor | None,
    surfaces: torch.Tensor | None,
    num: int,
    settings: SamplerSettings,
    object_settings: ObjectSettings,
    hands: tuple[SubsetHand, SubsetHand],
    *,
    settle=None,
    grasp_hands: tuple[SubsetHand, SubsetHand] | None = None,
    anchors: torch.Tensor | None = None,
    exact: ExactObjects | None = None,
    seed: int = 0,
    batch_size: int = 2500,
    device: str | torch.device = "cpu",
    progress: bool = True,
    violation: torch.Tensor | None = None,
    screen: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample ``num`` pairs with objects; returns RAW object-frame vectors [num, 2, 64] (anchor first).

    Args:
        tokens: [num, E] object tokens (``net.encode``), or None for object-free sampling (the null object; the
            anchor gets the canonical frame as in the two-hand model); surfaces: [num, K, 6] the objects' surface
            samples (object frame) for guidance and settling (None when ``tokens`` is None).
        hands: (anchor, other) :class:`SubsetHand` of the guidance (APG and hand-object).
        settle: hand-hand contact settling ``settle(anchor_raw, other_raw) -> other_raw`` (or None).
        grasp_hands: (anchor, other) :class:`SubsetHand` of ``grasp_points`` points for grasp settling and the redraw
            checks (default ``hands``).
        anchors: optional RAW anchors [num, 64] to complete (their slots in the object frame).
        exact: the rows' object meshes (:class:`ExactObjects`) for the redraw's exact checks
            (``redraw_exact_points``); None: the surface samples' planes alone.
        seed: batch i uses a generator seeded from (seed, i).
        violation: optional [num] tensor filled with how far (mm, :func:`hand_object_violation`) each pair still
            fails the redraw's checks after every stage but the exact push-out (0: passes); needs an object.
        screen: optional [num, 2] bool tensor filled with the exact clearance's screen of each hand (anchor, other)
            as the checks judged the kept draw (:func:`hand_object_violation`); needs an object.
    """
    settings.validate()
    object_settings.validate()
    if (tokens is None) != (surfaces is None):
        raise InputError("tokens and surfaces go together (both None: no object)")
    if violation is not None and (surfaces is None or tuple(violation.shape) != (num,)):
        raise ValueError(f"object_cascaded_sample: 'violation' must be a [{num}] tensor and needs an object, got "
                         f"{tuple(violation.shape)} with surfaces {'None' if surfaces is None else 'given'}")
    if screen is not None and (surfaces is None or tuple(screen.shape) != (num, 2)):
        raise ValueError(f"object_cascaded_sample: 'screen' must be a [{num}, 2] tensor and needs an object, got "
                         f"{tuple(screen.shape)} with surfaces {'None' if surfaces is None else 'given'}")
    device = torch.device(device)
    mean, std = stats_mean.to(device), stats_std.to(device)
    net = net.to(device).eval()
    anchor_hand, other_hand = hands
    grasp_hands = hands if grasp_hands is None else grasp_hands
    out = torch.empty(num, 2, HAND_DIM, device=device)
    bar = tqdm(total=num, desc="sample", unit="pair", disable=not progress)
    og = object_settings

    joint = isinstance(net, JointObjectDenoiser)
    if joint and (anchors is not None or og.object_guidance_weight > 0 or settings.apg_weight > 0
                  or og.object_cfg_scale > 0):
        raise InputError("a joint object model (kind joint_object) draws both hands at once: it has no completion, "
                         "no in-loop guidance and no object classifier-free guidance; set object_guidance_weight=0, "
                         "apg_weight=0 and object_cfg_scale=0 (--object-guidance-weight 0 --no-apg); the "
                         "post-processing stages apply")

    def draw_joint(b, tok, gen):
        """Standardised (anchor, other) [b, 64] each from one reverse diffusion of both hands."""
        z = torch.randn(b, 2 * HAND_DIM, generator=gen).to(device)
        bound = BoundObject(net, tok)
        x = ddim_sample(lambda x_t, t, cond=None: bound(x_t, t, None, None), z, schedule, settings.steps,
                        eta=settings.eta, generator=gen, update=settings.update, temperature=settings.temperature)
        return x[:, :HAND_DIM], x[:, HAND_DIM:]

    def draw(b, tok, surf, given, gen):
        """One draw of ``b`` pairs: tokens [b, E] and surfaces [b, K, 6] (or None), given anchors [b, 64] (or None)."""
        if joint:
            a_std, o_std = draw_joint(b, tok, gen)
            a_raw, o_raw = a_std * std[0] + mean[0], o_std * std[1] + mean[1]
            if tok is None:  # no object: the anchor is the frame
                a_raw = a_raw.clone()
                a_raw[:, RIGID_SLICE] = canonical_anchor_tail(a_raw)
            return post(a_raw, o_raw, surf, given)
        z = _draw(b, gen, device)
        bound = BoundObject(net, tok)
        bound_anchor = bound
        if tok is not None and og.object_cfg_scale > 0:
            bound_anchor = ObjectGuided(net, tok, og.object_cfg_scale, slice(0, RIGID_SLICE.start))
            tail = (canonical_anchor_tail(mean) - mean[0, RIGID_SLICE]) / std[0, RIGID_SLICE]
            bound = ObjectGuided(net, tok, og.object_cfg_scale, null_tail=tail)
        guide = surf is not None and og.object_guidance_weight > 0
        common = dict(num_steps=settings.steps, decay=settings.apg_decay, last_steps=settings.apg_last_steps,
                      rho=og.object_guidance_rho, max_step=settings.apg_max_step, iters=og.object_guidance_iters,
                      reach_mm=og.object_plane_reach_mm,
                      contact=(og.object_contact_weight, og.touch_mm / 1000.0, og.object_contact_attract_mm / 1000.0))
        if given is None:
            if tok is None:  # no object: the anchor is the frame (the two-hand cascade's stage 1)
                a_std = sample_anchor(bound, z, schedule, settings, mean[0], std[0], generator=gen)
            else:
                hook = HandObjectGuidance(anchor_hand, mean[0], std[0], surf, og.object_guidance_weight,
                                          **common) if guide else None
                a_std = ddim_sample(unconditional(bound_anchor), z, schedule, settings.anchor_steps_for(schedule.num_timesteps),
                                    eta=settings.eta, generator=gen, update=settings.update, x0_guidance=hook,
                                    temperature=settings.temperature)
        else:
            a_std = (given - mean[0]) / std[0]
        a_raw = a_std * std[0] + mean[0]
        z2 = z if settings.same_noise else _draw(b, gen, device)
        apg = None
        if settings.apg_weight > 0:
            with torch.no_grad():
                pts, nrm = anchor_hand(_in_own_frame(a_raw))
            apg = (pts, nrm, settings.apg_rho, settings.apg_margin)
        hook2 = None
        if guide:
            weight = settings.apg_weight if apg is not None else og.object_guidance_weight
            hook2 = HandObjectGuidance(other_hand, mean[1], std[1], surf, weight, anchor_raw=a_raw, apg=apg, **common)
        elif apg is not None:
            hook2 = HandObjectGuidance(other_hand, mean[1], std[1], None, settings.apg_weight, apg=apg, **common)
        o_std = sample_partner(bound, a_std, z2, schedule, settings, x0_guidance=hook2, generator=gen)
        o_raw = o_std * std[1] + mean[1]
        return post(a_raw, o_raw, surf, given)

    def post(a_raw, o_raw, surf, given):
        """The post-processing stages of one draw (raw anchors in the object frame, partners relative to them)."""
        if settle is not None and settings.settle_steps > 0:
            # hand-hand settling works in the anchor's frame: give it the anchor with the canonical slots
            with torch.enable_grad():
                o_raw = settle(_in_own_frame(a_raw), o_raw)
        if surf is not None and og.object_settle_steps > 0:
            # a given anchor (completion) keeps its pose
            a_raw, o_raw = settle_pair(a_raw, o_raw, surf, hands, og, move_anchor=given is None,
                                       check_hands=grasp_hands)
        if surf is not None and og.support_lift_mm > 0:
            a_raw, o_raw = _lift_pair(a_raw, o_raw, surf, hands, og, move_anchor=given is None)
        if surf is not None and og.grasp_steps > 0:
            a_raw, o_raw = _grasp_pair(a_raw, o_raw, surf, grasp_hands, og, move_anchor=given is None)
        return a_raw, o_raw

    for bi, start in enumerate(range(0, num, batch_size)):
        b = min(batch_size, num - start)
        rows = slice(start, start + b)
        gen = torch.Generator().manual_seed(derived_seed(seed, bi))
        tok = None if tokens is None else tokens[rows].to(device)
        surf = None if surfaces is None else surfaces[rows].to(device)
        given = None if anchors is None else anchors[rows].to(device)
        a_raw, o_raw = draw(b, tok, surf, given, gen)
        if surf is not None:
            # only failing rows are drawn again: a passing pair is never replaced; a replacement passes or (keep-best)
            # fails by less, and rows that pass drop out
            index = torch.arange(start, start + b)
            push = exact is not None and og.exact_push_rounds > 0
            # with the exact push-out, each row keeps the exactly judged points of its kept draw
            screened = None if screen is None else torch.zeros(b, 2, dtype=torch.bool, device=device)
            score = hand_object_violation(grasp_hands, a_raw, o_raw, surf, og, exact, index, judged_points=push,
                                          screen=screened)
            if push:
                score, judged = score
            bad = (score > 0).nonzero()[:, 0]
            kept = (a_raw, o_raw, score, judged if push else None, screened)
            for _ in range(og.redraw_rounds):
                if not bad.numel():
                    break
                a2, o2 = draw(bad.numel(), tok[bad], surf[bad], None if given is None else given[bad], gen)
                # a draw that passes replaces its row; with redraw_keep_best so does one that fails by less
                _keep_better(kept, bad, a2, o2, grasp_hands, surf[bad], og, exact, index,
                             passing_only=not og.redraw_keep_best)
                bad = bad[score[bad] > 0]
            for _ in range(og.search_rounds):  # translation search: the failing pairs' hands moved, kept if better
                if not bad.numel():
                    break
                a2, o2 = _searched_moves(a_raw[bad], o_raw[bad], surf[bad], grasp_hands, og,
                                         move_anchor=given is None)
                _keep_better(kept, bad, a2, o2, grasp_hands, surf[bad], og, exact, index)
                bad = bad[score[bad] > 0]
            for _ in range(og.clear_rounds):  # clearance moves: each hand, then both, off the object and back
                for joint in ((False, True) if given is None else (False,)):
                    if not bad.numel():
                        break
                    a2, o2 = _cleared_moves(a_raw[bad], o_raw[bad], surf[bad], hands, grasp_hands, og,
                                            joint=joint, move_anchor=given is None)
                    _keep_better(kept, bad, a2, o2, grasp_hands, surf[bad], og, exact, index)
                    bad = bad[score[bad] > 0]
            if violation is not None:
                violation[rows] = score.to(violation)
            if screen is not None:
                screen[rows] = screened.to(screen.device)
            if push:
                a_raw, o_raw = _exact_push_pair(a_raw, o_raw, judged, grasp_hands, exact, index, og,
                                                move_anchor=given is None)
        out[rows, 0] = a_raw
        out[rows, 1] = o_raw
        bar.update(b)
    bar.close()
    if not torch.isfinite(out).all():
        raise FloatingPointError("sampling produced NaN or inf; check the model and guidance weights")
    return out


def move_with_object(x: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, centre: torch.Tensor
                     ) -> torch.Tensor:
    """Object-frame pairs x [N, 2, 64] (raw, anchor first) with both hands moved rigidly by the inverse of a world
    motion of their object (a point y of the object moves to ``rotation`` [N, 3, 3] y + ``translation`` [N, 3]; the
    object's centre is ``centre`` [N, 3], world), so that the hands take the pose relative to the object that the
    moved object has relative to the unmoved hands, with the object where it was. The other hand's vector is
    relative to the anchor and does not change."""
    x64 = x.to(torch.float64)
    Q = rotation.to(x64).transpose(1, 2)  # the inverse rotation
    c = centre.to(x64).expand(x.shape[0], 3)
    # world hand point h -> Q (h - t); in the object frame (h = c + p): p -> Q p + Q (c - t) - c
    shift = (Q @ (c - translation.to(x64))[..., None])[..., 0] - c
    out = x64.clone()
    out[:, 0, ROT_SLICE] = matrix_to_rot6d(Q @ rot6d_to_matrix(x64[:, 0, ROT_SLICE]))
    out[:, 0, TRANSL_SLICE] = (Q @ x64[:, 0, TRANSL_SLICE, None])[..., 0] + shift
    return out.to(x.dtype)


def _grasp_pair(a_raw: torch.Tensor, o_raw: torch.Tensor, surface: torch.Tensor,
                hands: tuple[SubsetHand, SubsetHand], og: ObjectSettings, move_anchor: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Grasp settling of both hands, each in the object frame; the other hand's vector stays relative to the
    (settled) anchor."""
    R_a = rot6d_to_matrix(a_raw[:, ROT_SLICE])
    o_obj = o_raw.clone()
    o_obj[:, ROT_SLICE] = matrix_to_rot6d(R_a @ rot6d_to_matrix(o_raw[:, ROT_SLICE]))
    o_obj[:, TRANSL_SLICE] = (R_a @ o_raw[:, TRANSL_SLICE, None])[..., 0] + a_raw[:, TRANSL_SLICE]
    a_new = grasp_settle(hands[0], a_raw, surface, og) if move_anchor else a_raw
    o_obj = grasp_settle(hands[1], o_obj, surface, og)
    R_new = rot6d_to_matrix(a_new[:, ROT_SLICE]).transpose(1, 2)
    o_new = o_obj.clone()
    o_new[:, ROT_SLICE] = matrix_to_rot6d(R_new @ rot6d_to_matrix(o_obj[:, ROT_SLICE]))
    o_new[:, TRANSL_SLICE] = (R_new @ (o_obj[:, TRANSL_SLICE] - a_new[:, TRANSL_SLICE])[..., None])[..., 0]
    return a_new, o_new


def settle_pair(a_raw: torch.Tensor, o_raw: torch.Tensor, surface: torch.Tensor,
                hands: tuple[SubsetHand, SubsetHand], og: ObjectSettings, move_anchor: bool = True,
                push: bool = True, check_hands: tuple[SubsetHand, SubsetHand] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Object settling of both hands (translations in the object frame; ``push`` as in :func:`settle_on_object`);
    the other hand's vector stays relative to the (moved) anchor. ``check_hands``: the subsets of the hand-hand
    guard (default ``hands``)."""
    with torch.no_grad():
        o_pts = other_in_object_frame(hands[1](o_raw)[0], a_raw)
        d_a = (settle_on_object(hands[0](a_raw)[0], surface, og, push) if move_anchor
               else torch.zeros_like(a_raw[:, :3]))
        d_o = settle_on_object(o_pts, surface, og, push)
        return _guarded_moves(a_raw, o_raw, d_a, d_o, hands if check_hands is None else check_hands, og)


def _guarded_moves(a_raw: torch.Tensor, o_raw: torch.Tensor, d_a: torch.Tensor, d_o: torch.Tensor,
                   guard: tuple[SubsetHand, SubsetHand], og: ObjectSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair with the translations d_a, d_o [B, 3] (:func:`_translated`); with ``og.settle_hand_guard``, except
    where they put one hand into the other (:func:`hands_interpenetrate`): there the first of (the anchor's move
    only, the other's only, neither) that does not; pairs interpenetrating before the moves take them."""
    a_new, o_new = _translated(a_raw, o_raw, d_a, d_o)
    if not og.settle_hand_guard:
        return a_new, o_new
    bad = hands_interpenetrate(guard, a_new, o_new, og).nonzero()[:, 0]
    if bad.numel():  # pairs interpenetrating before the moves keep them: undoing would not separate them
        bad = bad[~hands_interpenetrate(guard, a_raw[bad], o_raw[bad], og)]
    zero = torch.zeros_like(d_a)
    # the redraw's checks then judge a pair whose moves were undone
    for da, do in ((d_a, zero), (zero, d_o)):
        if not bad.numel():
            break
        a_try, o_try = _translated(a_raw[bad], o_raw[bad], da[bad], do[bad])
        ok = ~hands_interpenetrate(guard, a_try, o_try, og)
        a_new[bad[ok]], o_new[bad[ok]] = a_try[ok], o_try[ok]
        bad = bad[~ok]
    a_new[bad], o_new[bad] = a_raw[bad], o_raw[bad]
    return a_new, o_new


@torch.no_grad()
def exact_push_out(points: torch.Tensor, signed: torch.Tensor, direction: torch.Tensor, exact: ExactObjects,
                   rows: torch.Tensor, settings: ObjectSettings) -> torch.Tensor:
    """Rigid translations [B, 3] (object frame, metres) that move hands out of their objects by the exact signed
    distance of some of their points [B, k, 3] (the redraw's exactly judged points), given those points' signed
    distances [B, k] and outward directions [B, k, 3] (:meth:`ExactObjects.query`; meshes ``exact``, rows ``rows``
    [B]): a hand with a point less than ``exact_push_margin_mm`` outside moves by the largest shortfall along the
    shortfall-weighted sum of the points' directions, then is judged again, ``exact_push_rounds`` moves at most.
    Hands whose points are all clear get exactly 0."""
    B = points.shape[0]
    shift = torch.zeros(B, 3, dtype=torch.float64, device=points.device)
    margin = settings.exact_push_margin_mm / 1000.0
    active = torch.arange(B, device=points.device)
    d, way = signed.to(shift), direction.to(shift)
    for i in range(settings.exact_push_rounds):
        if i:
            d, way = exact.query(rows[active.cpu()], points[active].to(shift) + shift[active, None])
        short = torch.relu(margin - d)
        worst = short.amax(1)
        move = worst > 0
        if not bool(move.any()):
            break
        active, short, way, worst = active[move], short[move], way[move], worst[move]
        shift[active] += torch.nn.functional.normalize((short[..., None] * way).sum(1), dim=1) * worst[:, None]
    return shift


def _sphere_scores(centres: torch.Tensor, radii: torch.Tensor, surface: torch.Tensor, settings: ObjectSettings,
                   groups: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """How far hands given by their inscribed spheres (centres [B, S, 3], radii [B, S], object frame) are from
    touching the object without entering it, by the surface samples' planes: (score [B] in mm: the summed depth of
    the spheres reaching into the object plus the gap beyond ``redraw_gap_mm``; clearance [B, S] in mm, negative
    where a sphere reaches in; the deciding samples' normals [B, S, 3]). With ``groups`` G, each row holds G hands
    of S / G spheres each against the row's object, and the score is [B, G]."""
    reach = settings.object_plane_reach_mm
    _, signed, normals = object_penetration(centres, surface, 1.0, reach, _within(reach))
    clear = (signed - radii) * 1000.0
    per = clear.reshape(clear.shape[0], groups, -1)
    score = torch.relu(-per).sum(2) + torch.relu(per.amin(2) - settings.redraw_gap_mm)
    return (score[:, 0] if groups == 1 else score), clear, normals


def _search_directions(eigenvectors: torch.Tensor) -> torch.Tensor:
    """[B, D, 3] unit directions of the translation search from the eigenvectors [B, 3, 3] (ascending eigenvalues)
    of the normals' scatter: both senses of the principal axis and of world z."""
    axis = eigenvectors[..., -1]
    up = torch.zeros_like(axis)
    up[:, 2] = 1.0
    return torch.stack([axis, -axis, up, -up], 1)


@torch.no_grad()
def translation_search(hand: SubsetHand, raw: torch.Tensor, surface: torch.Tensor, settings: ObjectSettings,
                       anchor_raw: torch.Tensor | None = None) -> torch.Tensor:
    """Rigid translations [B, 3] (object frame, metres; 0 where nothing scores better) of hands ``raw`` [B, 64]
    (in the object frame, or relative to ``anchor_raw`` [B, 64]) found by trying ``settings.search_steps_mm`` along
    both senses of two directions: world z, and the dominant axis of the object normals the hand meets, i.e. the
    principal eigenvector of the sum of n n^T over the object's surface samples inside the hand's inscribed spheres
    (weighted by their depth there) and over the deciding samples of the spheres reaching into the object (weighted
    by that depth; the row's closest sphere with a small weight). A thin wall through the hand puts samples of both
    its faces inside, whose normals cancel in a mean but share that axis. Each candidate is scored by
    :func:`_sphere_scores`, the lowest score (ties: the shortest move) is taken where it is below the hand's own."""
    centres, radii = hand_spheres(hand, raw)
    if anchor_raw is not None:
        centres = other_in_object_frame(centres, anchor_raw)
    radii = radii.to(centres.dtype)
    surface = surface.to(centres.dtype)
    base, clear, sphere_normals = _sphere_scores(centres, radii, surface, settings)
    samples, normals = surface[..., :3], surface[..., 3:]
    inside = torch.relu(radii[:, None, :] - torch.cdist(samples, centres)).amax(2)  # [B, K]
    weight = torch.relu(-clear) + 1e-3 * (clear == clear.amin(1, keepdim=True)).to(clear.dtype)
    axes = (torch.einsum("bk,bki,bkj->bij", inside * 1000.0, normals, normals)
            + torch.einsum("bs,bsi,bsj->bij", weight, sphere_normals, sphere_normals))
    directions = _search_directions(torch.linalg.eigh(axes).eigenvectors)
    D, S = directions.shape[1], centres.shape[1]

    def scores(active, moves):
        # the D moved copies of a hand as one row of D x S points: they share the row's object samples
        moved = (centres[active, None] + moves[:, :, None]).reshape(-1, D * S, 3)
        return _sphere_scores(moved, radii[active].repeat(1, D), surface[active], settings, groups=D)[0]

    return _stepped_moves(base, directions, settings.search_steps_mm, scores)


def _stepped_moves(base: torch.Tensor, directions: torch.Tensor, steps_mm, scores) -> torch.Tensor:
    """The step search shared by :func:`translation_search` and :func:`clearance_search`: for rows with scores
    ``base`` [B] (0: nothing to do) and candidate ``directions`` [B, D, 3], the moves [B, 3] (metres; 0 where nothing
    scores lower) that score lowest by ``scores(active [n], moves [n, D, 3]) -> [n, D]``, trying the steps shortest
    first: a longer move must score strictly lower, of equal scores the first direction wins, and a row that reaches
    0 stops."""
    best, shift = base.clone(), torch.zeros_like(directions[:, 0])
    for step in sorted(steps_mm):
        active = (best > 0).nonzero()[:, 0]  # a row that scores 0 cannot do better
        if not active.numel():
            break
        moves = directions[active] * (step / 1000.0)  # [n, D, 3]
        score = scores(active, moves)
        for k in range(directions.shape[1]):
            better = score[:, k] < best[active] - 1e-6
            rows = active[better]
            best[rows], shift[rows] = score[better, k], moves[better, k]
    return shift


def _searched_moves(a: torch.Tensor, o: torch.Tensor, surface: torch.Tensor, hands: tuple[SubsetHand, SubsetHand],
                    og: ObjectSettings, move_anchor: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs (a [n, 64], o [n, 64]) with both hands moved by :func:`translation_search` (the anchor only with
    ``move_anchor``), with the hand guard (:func:`_guarded_moves`)."""
    d_a = translation_search(hands[0], a, surface, og) if move_anchor else torch.zeros_like(a[:, :3])
    d_o = translation_search(hands[1], o, surface, og, anchor_raw=a)
    return _guarded_moves(a, o, d_a.to(a.dtype), d_o.to(a.dtype), hands, og)


@torch.no_grad()
def clearance_search(points: torch.Tensor, surface: torch.Tensor, settings: ObjectSettings) -> torch.Tensor:
    """Rigid translations [B, 3] (object frame, metres; 0 where nothing scores better) that take point sets
    ``points`` [B, P, 3] (one hand's surface points, or both hands') out of the objects sampled by ``surface``
    [B, K, 6]: of ``settings.clear_steps_mm`` along both senses of the principal axis of the deciding samples' normals
    of the points inside (weighted by depth) and of world z, the shortest move after which no point is inside by the
    planes (:func:`object_penetration`), else the one leaving the least summed depth where it is below the set's own
    (ties: the shorter move, then the first direction). Unlike :func:`translation_search`, no gap term: the caller
    brings the moved hands back into touch."""
    reach = settings.object_plane_reach_mm
    _, signed, normals = object_penetration(points, surface, 1.0, reach, _within(reach))
    depth = torch.relu(-signed)
    best = depth.sum(1) * 1000.0
    # the small constant keeps the scatter well defined where no point is inside (those sets score 0 and stay)
    axes = torch.einsum("bp,bpi,bpj->bij", depth * 1000.0 + 1e-6, normals, normals)
    directions = _search_directions(torch.linalg.eigh(axes).eigenvectors.to(points.dtype))
    D, P = directions.shape[1], points.shape[1]

    def scores(active, moves):
        moved = (points[active, None] + moves[:, :, None]).reshape(-1, D * P, 3)
        signed = object_penetration(moved, surface[active], 1.0, reach, _within(reach))[1]
        return torch.relu(-signed).reshape(-1, D, P).sum(2) * 1000.0

    return _stepped_moves(best, directions, settings.clear_steps_mm, scores)


def _cleared_moves(a: torch.Tensor, o: torch.Tensor, surface: torch.Tensor, hands: tuple[SubsetHand, SubsetHand],
                   guard: tuple[SubsetHand, SubsetHand], og: ObjectSettings, joint: bool, move_anchor: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs (a [n, 64], o [n, 64]) moved off their objects by :func:`clearance_search` on the points of
    ``hands``: each hand on its own (the anchor only with ``move_anchor``; with the hand guard of ``guard``,
    :func:`_guarded_moves`) or, with ``joint``, both by one translation on their points together (their relative
    pose kept, so no guard is needed); then pulled back into touch (:func:`settle_pair` without the push-out)."""
    po = other_in_object_frame(hands[1](o)[0], a)
    if joint:
        d = clearance_search(torch.cat([hands[0](a)[0], po], 1), surface, og).to(a.dtype)
        a2, o2 = _translated(a, o, d, d)
    else:
        d_a = (clearance_search(hands[0](a)[0], surface, og).to(a.dtype) if move_anchor
               else torch.zeros_like(a[:, :3]))
        d_o = clearance_search(po, surface, og).to(a.dtype)
        a2, o2 = _guarded_moves(a, o, d_a, d_o, guard, og)
    return settle_pair(a2, o2, surface, guard, og, move_anchor=move_anchor, push=False)


def _keep_better(kept: tuple, bad: torch.Tensor, a2: torch.Tensor, o2: torch.Tensor,
                 hands: tuple[SubsetHand, SubsetHand], surface: torch.Tensor, og: ObjectSettings,
                 exact: "ExactObjects | None", index: torch.Tensor, passing_only: bool = False) -> None:
    """Candidates (a2, o2) [n, 64] for the rows ``bad`` [n] judged by :func:`hand_object_violation` (``surface``
    [n, K, 6] their objects', ``index`` [B] the batch rows' indices among the meshes of ``exact``); in place, each
    row of ``kept`` = (a_raw [B, 64], o_raw [B, 64], score [B], judged or None: the exactly judged points, screen
    [B, 2] or None: the exact clearance's screen, see :func:`hand_object_violation`) takes its candidate where that
    fails by less (``passing_only``: where it passes)."""
    a_raw, o_raw, score, judged, screen = kept
    screen2 = None if screen is None else torch.zeros(bad.numel(), 2, dtype=torch.bool, device=screen.device)
    s2 = hand_object_violation(hands, a2, o2, surface, og, exact, index[bad.cpu()], judged_points=judged is not None,
                               screen=screen2)
    if judged is not None:
        s2, judged2 = s2
    better = (s2 == 0) if passing_only else (s2 < score[bad])
    rows = bad[better]
    a_raw[rows], o_raw[rows], score[rows] = a2[better], o2[better], s2[better]
    if screen is not None:
        screen[rows] = screen2[better]
    if judged is not None:
        for whole, part in zip(judged, judged2):
            whole[rows] = part[better]


def _exact_push_pair(a_raw: torch.Tensor, o_raw: torch.Tensor, judged: tuple[torch.Tensor, ...],
                     hands: tuple[SubsetHand, SubsetHand], exact: ExactObjects, rows: torch.Tensor,
                     og: ObjectSettings, move_anchor: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact push-out (:func:`exact_push_out`) of both hands from their judged points (``judged``: the points
    [B, 2, k, 3], signed distances [B, 2, k] and directions [B, 2, k, 3] of :func:`hand_object_violation`); the
    other hand's vector stays relative to the anchor; with ``settle_hand_guard`` a move into the other hand falls
    back (:func:`_guarded_moves`)."""
    points, signed, direction = judged
    with torch.no_grad():
        d_a = (exact_push_out(points[:, 0], signed[:, 0], direction[:, 0], exact, rows, og).to(a_raw.dtype)
               if move_anchor else torch.zeros_like(a_raw[:, :3]))
        d_o = exact_push_out(points[:, 1], signed[:, 1], direction[:, 1], exact, rows, og).to(a_raw.dtype)
        return _guarded_moves(a_raw, o_raw, d_a, d_o, hands, og)


def _translated(a_raw: torch.Tensor, o_raw: torch.Tensor, d_a: torch.Tensor, d_o: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair with the anchor translated by d_a [B, 3] and the other hand by d_o [B, 3] (object frame, metres);
    the other hand's vector stays relative to the moved anchor."""
    R_a = rot6d_to_matrix(a_raw[:, ROT_SLICE])
    a_new, o_new = a_raw.clone(), o_raw.clone()
    a_new[:, TRANSL_SLICE] = a_raw[:, TRANSL_SLICE] + d_a
    o_new[:, TRANSL_SLICE] = o_raw[:, TRANSL_SLICE] + (R_a.transpose(1, 2) @ (d_o - d_a)[..., None])[..., 0]
    return a_new, o_new


def hands_interpenetrate(hands: tuple[SubsetHand, SubsetHand], a_raw: torch.Tensor, o_raw: torch.Tensor,
                         og: ObjectSettings) -> torch.Tensor:
    """[B] bool: the two hands (raw anchors in the object frame, partners relative to them) interpenetrate deeper
    than ``og.hand_depth_mm`` (:func:`interhandgen.generation.settle.interpenetrating`, in the anchor's frame)."""
    return interpenetrating(_in_own_frame(a_raw), o_raw, hands[0], hands[1], depth_mm=og.hand_depth_mm)


def _lift_pair(a_raw: torch.Tensor, o_raw: torch.Tensor, surface: torch.Tensor,
               hands: tuple[SubsetHand, SubsetHand], og: ObjectSettings, move_anchor: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Support lift (:func:`lift_to_support`) of both hands; the other hand's vector stays relative to the anchor."""
    with torch.no_grad():
        o_pts = other_in_object_frame(hands[1](o_raw)[0], a_raw)
        z = torch.zeros_like(a_raw[:, :3])
        d_a, d_o = z.clone(), z.clone()
        if move_anchor:
            d_a[:, 2] = lift_to_support(hands[0](a_raw)[0], surface, og)
        d_o[:, 2] = lift_to_support(o_pts, surface, og)
        return _translated(a_raw, o_raw, d_a, d_o)


def describe(settings: SamplerSettings, object_settings: ObjectSettings) -> dict[str, Any]:
    """The settings as recorded in a samples file's metadata."""
    return {**dataclasses.asdict(settings), "object": dataclasses.asdict(object_settings)}

