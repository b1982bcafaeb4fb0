"""Object options of `sample` and `complete`: --object / --object-family, hand-object guidance and settling, and
the outputs with the object (meshes, render)."""

from __future__ import annotations

import argparse
from pathlib import Path

from interhandgen.cli._args import positive_int
from interhandgen.cli._sampling_opts import temperature_of
from interhandgen.generation.cascade import OBJECT_TEMPERATURE
from interhandgen.generation.object_sampling import ObjectSettings

OBJECT_DEFAULTS = ObjectSettings()


def add_object_options(p: argparse.ArgumentParser, families: bool = True) -> None:
    g = p.add_argument_group("object (docs/objects_model.md)")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--object", default=None,
                       help="a closed object mesh (.obj/.ply/.stl/.glb) in METRES and world coordinates (z up, "
                            "gravity -z): the hands are sampled around it where it is (its centre of mass is the "
                            "object frame's origin); uses the bundled object model unless --checkpoint is an "
                            "object model")
    if families:
        which.add_argument("--object-family", default=None,
                           help="sample around random objects of this library family (box, mug, bowl, ...), "
                                "turned as the model's training objects of the family were")
        g.add_argument("--num-objects", type=positive_int, default=8,
                       help="with --object-family: distinct objects, sample i gets object i mod this "
                            "(default %(default)s)")
    g.add_argument("--object-guidance-weight", type=float, default=OBJECT_DEFAULTS.object_guidance_weight,
                   help="hand-object anti-penetration guidance (Polyak fraction, 0 disables; default %(default)s)")
    g.add_argument("--object-plane-reach-mm", type=float, default=OBJECT_DEFAULTS.object_plane_reach_mm,
                   help="a hand point is inside the object only when the tangent planes of every object surface "
                        "sample within this many mm of its nearest sample's distance have it inside (guidance, "
                        "settling and redraw checks; default %(default)s; 0: the nearest plane alone)")
    g.add_argument("--object-settle-steps", type=int, default=OBJECT_DEFAULTS.object_settle_steps,
                   help="object settling iterations: hands within --object-attract-mm are moved rigidly out of "
                        "the object and into touch (default %(default)s; 0 disables it)")
    g.add_argument("--object-attract-mm", type=float, default=OBJECT_DEFAULTS.object_attract_mm,
                   help="hands closer than this to the object are settled into touch (default %(default)s)")
    g.add_argument("--grasp-steps", type=int, default=OBJECT_DEFAULTS.grasp_steps,
                   help="grasp settling iterations after the object settling: translation, rotation and finger "
                        "pose of each hand near the object, pulled into touch and out of the object (default "
                        "%(default)s; 0 disables it)")
    g.add_argument("--redraw-rounds", type=int, default=OBJECT_DEFAULTS.redraw_rounds,
                   help="rounds of drawing again the pairs with a hand not touching the object or deep in it "
                        "(default %(default)s; 0 disables it)")
    g.add_argument("--object-in-hand-mm", type=float, default=OBJECT_DEFAULTS.redraw_object_in_hand_mm,
                   help="the redraw also draws again pairs with the object's surface deeper than this many mm inside "
                        "a hand (a thin wall through the fingers or palm; judged on the hand's inscribed spheres; "
                        "default %(default)s; 0 disables it)")
    g.add_argument("--exact-push-rounds", type=int, default=OBJECT_DEFAULTS.exact_push_rounds,
                   help="after the redraw, move each hand rigidly out of the object by the exact signed distance of "
                        "its points closest to it, at most this many moves (default %(default)s; 0 disables it)")
    g.add_argument("--search-rounds", type=int, default=OBJECT_DEFAULTS.search_rounds,
                   help="pairs still failing the redraw's checks try rigid moves of each hand off the object (along "
                        "the axis of the object normals it meets and world z, up to 5 cm) and keep the best where it "
                        "fails them by less; this many rounds (default %(default)s; 0 disables it)")
    g.add_argument("--clear-rounds", type=int, default=OBJECT_DEFAULTS.clear_rounds,
                   help="pairs still failing after the search move each hand, then both together, off the object "
                        "until no point of theirs is inside (up to 8 cm), pull them back into touch and keep the "
                        "result where it fails the checks by less; this many rounds (default %(default)s; 0 disables "
                        "it)")
    g.add_argument("--exact-clear-rounds", type=int, default=OBJECT_DEFAULTS.exact_clear_rounds,
                   help="last stage: the hands the checks screen as possibly inside the object are measured exactly "
                        "(manifold3d) and those with more than %s cm^3 inside move by the shortest translation "
                        "along a world axis (up to 8 cm) that takes them out, staying within 2 mm of the object and "
                        "out of the other hand; this many searches per hand (default %%(default)s; 0 disables it; "
                        "after --physics-rounds every hand is measured and a pair that no longer holds keeps its "
                        "settled hands)" % OBJECT_DEFAULTS.exact_clear_min_cm3)
    g.add_argument("--close-fingers-deg", type=float, default=OBJECT_DEFAULTS.close_fingers_deg,
                   help="last stage: each finger open towards the object flexes until it comes within %s mm of it, "
                        "stopping %s mm short, up to this many degrees or its joint limit (default %%(default)s; 0 "
                        "disables it; not applied after --physics-rounds)"
                        % (OBJECT_DEFAULTS.close_touch_mm, OBJECT_DEFAULTS.close_clear_mm))
    g.add_argument("--exact-push-margin-mm", type=float, default=OBJECT_DEFAULTS.exact_push_margin_mm,
                   help="the exact push-out moves a hand until its judged points are this far outside the object "
                        "(default %(default)s)")
    g.add_argument("--support-lift-mm", type=float, default=OBJECT_DEFAULTS.support_lift_mm,
                   help="after the object settling, move each hand straight up into touch with a surface of the "
                        "object facing down within this many mm above it (default %(default)s; 0 disables it)")
    g.add_argument("--redraw-support", action=argparse.BooleanOptionalAction, default=OBJECT_DEFAULTS.redraw_support,
                   help="the redraw also draws again pairs whose contacts cannot hold the object against gravity "
                        "(static equilibrium with friction cones on the surfaces facing down; default %(default)s)")
    g.add_argument("--physics-rounds", type=int, default=OBJECT_DEFAULTS.physics_rounds,
                   help="MuJoCo settling (needs interhandgen[physics]): let each object fall among the fixed hands, "
                        "move the hands to where it comes to rest, keep the pairs that then pass the cheap checks "
                        "and the stability test, draw the others again, this many rounds in all (default "
                        "%(default)s: off; costs MuJoCo time per pair and round)")
    g.add_argument("--physics-settle-passes", type=int, default=OBJECT_DEFAULTS.physics_settle_passes,
                   help="MuJoCo settling: a pair whose object came to rest but that was not kept is let fall again "
                        "from where its hands were moved, up to this many passes per draw (default %(default)s)")
    g.add_argument("--support-contact-mm", type=float, default=OBJECT_DEFAULTS.support_contact_mm,
                   help="contacts of the equilibrium check: hand points within this of the object (default "
                        "%(default)s)")


def object_settings_from_args(args: argparse.Namespace) -> ObjectSettings:
    s = ObjectSettings(object_guidance_weight=args.object_guidance_weight,
                       object_plane_reach_mm=args.object_plane_reach_mm,
                       object_settle_steps=args.object_settle_steps, object_attract_mm=args.object_attract_mm,
                       grasp_steps=args.grasp_steps, redraw_rounds=args.redraw_rounds,
                       redraw_object_in_hand_mm=args.object_in_hand_mm, exact_push_rounds=args.exact_push_rounds,
                       search_rounds=args.search_rounds, clear_rounds=args.clear_rounds,
                       exact_clear_rounds=args.exact_clear_rounds, close_fingers_deg=args.close_fingers_deg,
                       exact_push_margin_mm=args.exact_push_margin_mm,
                       redraw_support=args.redraw_support, support_contact_mm=args.support_contact_mm,
                       support_lift_mm=args.support_lift_mm, physics_rounds=args.physics_rounds,
                       physics_settle_passes=args.physics_settle_passes)
    s.validate()
    return s


def wants_object(args: argparse.Namespace) -> bool:
    return bool(args.object or getattr(args, "object_family", None))


def object_sampler_settings(args: argparse.Namespace, settings, defaults):
    """The cascade settings for sampling with an object: resampling is not available there."""
    import dataclasses

    from interhandgen.exceptions import InputError

    if args.resample_rounds != defaults.resample_rounds and args.resample_rounds != 0:
        raise InputError("--resample-rounds: resampling is not available with an object (hand-object guidance and "
                         "settling take its place); drop the option")
    # The anchor stage takes --anchor-steps if given, else --steps, and DDIM steps: the two-hand defaults (25 steps
    # of the second-order solver) were not measured with an object.
    if args.anchor_solver not in (None, "ddim"):
        raise InputError(f"--anchor-solver {args.anchor_solver}: the object sampler's anchor stage takes DDIM steps "
                         "only; drop the option")
    return dataclasses.replace(settings, resample_rounds=0, anchor_steps=args.anchor_steps, anchor_solver="ddim",
                               temperature=temperature_of(args, OBJECT_TEMPERATURE))


def load_object_generator(args: argparse.Namespace, hand_model=None):
    from interhandgen.generation.object_api import ObjectInterHandGen

    return ObjectInterHandGen.load(args.checkpoint, device=args.device, hand_model=hand_model)


def write_object_extras(two, hands, args: argparse.Namespace) -> None:
    """A line on the pairs that still fail the sampler's hand-object checks (metadata 'object_checks'); --meshes:
    {i:06d}_left/right/object.ply in one world frame; --render: the object in a third colour."""
    checks = two.metadata.get("object_checks")
    if checks and checks["failing"]:
        print(f"{len(checks['failing'])} of {checks['pairs']} pairs still fail the sampler's hand-object checks "
              "(a hand off the object, in it, the object through a hand, or hands through each other); their "
              "indices and how far they fail (mm) are in the file's metadata 'object_checks'")
    if getattr(args, "meshes", None):
        import trimesh

        from interhandgen.objects.metrics import object_world_vertices

        folder = Path(args.meshes)
        folder.mkdir(parents=True, exist_ok=True)
        verts = two.vertices(hands)
        lib = two.object_library
        for i in range(len(two)):
            for side in ("left", "right"):
                trimesh.Trimesh(verts[side][i].cpu().numpy(), hands[side].faces_np,
                                process=False).export(folder / f"{i:06d}_{side}.ply")
            k = int(two.object_id[i])
            obj = object_world_vertices(lib.vertices[k], two.object_pose[i:i + 1])[0]
            trimesh.Trimesh(obj, lib.faces[k], process=False).export(folder / f"{i:06d}_object.ply")
        print(f"wrote meshes to {folder}")
    if getattr(args, "render", None):
        from interhandgen.objects.cli import render_with_objects

        render_with_objects(two[: min(16, len(two))], hands, args.render)
        print(f"wrote {args.render}")
