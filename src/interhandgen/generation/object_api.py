"""The object-conditioned API: sample two hands around an object, or complete a hand holding an object.

    >>> from interhandgen.generation.object_api import ObjectInterHandGen, family_objects, user_object
    >>> gen = ObjectInterHandGen.load()                        # the bundled object model
    >>> scene = family_objects("mug", 8, seed=0, orientations=gen.orientations)   # 8 mugs, placed as in training
    >>> pairs = gen.sample(100, scene, seed=0)                  # TwoHandSet with the object library, world frame
    >>> scene = user_object("mug.obj")                          # a closed mesh in metres, world coordinates

Placement of an object: a user's mesh stays where it is (its coordinates are the world's, metres, z up: gravity
is -z); its centre of mass (uniform density) becomes the object frame's origin, so the hands are generated around
it as given (an upright mug gets grasps of an upright mug). A family object is drawn from the library
(:mod:`interhandgen.objects.library`, its centre of mass at the world origin) and turned by a world rotation drawn
from those of the model's training objects of that family (recorded in the model file), so it is presented as
the model saw such objects. The samples' object is stored in the TwoHandSet's object library (docs/data.md), so
``evaluate``, ``data stats`` and the metrics of :mod:`interhandgen.objects.metrics` read it.
"""

from __future__ import annotations

import dataclasses
import math
from importlib import resources
from pathlib import Path
import numpy as np
import torch
from tqdm.auto import tqdm

from interhandgen._seeding import derived_seed
from interhandgen.data.canonical import ANCHOR_SIDE, mirror, to_world
from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.data.object_library import ObjectLibrary
from interhandgen.exceptions import InputError, MissingFileError, ModelMismatchError
from interhandgen.geometry.decompose import CONVEX_TOLERANCE, hull_excess
from interhandgen.generation.api import InterHandGen, LoadedModel, load_model
from interhandgen.generation.cascade import OBJECT_TEMPERATURE, SamplerSettings
from interhandgen.generation.finger_closing import close_fingers
from interhandgen.generation.object_sampling import (ExactObjects, ObjectSettings, describe, hand_object_check,
                                                     move_with_object,
                                                     object_cascaded_sample, settle_pair)
from interhandgen.models import registered
from interhandgen.objects.clearing import clear_hands_exactly
from interhandgen.objects.frame import SURFACE_POINTS, anchor_world_pose, surface_samples, to_object_frame
from interhandgen.objects.library import FAMILY_NAMES, sample_objects
# mujoco itself (optional) is imported by require_mujoco only when the physics stage runs
from interhandgen.objects.metrics import hand_object_contact, object_motion, object_rotation, object_stability
from interhandgen.objects.physics import PhysicsConfig, require_mujoco
from interhandgen.rotations import axis_angle_to_matrix

BUNDLED_OBJECT_MODEL = "object_small.safetensors"
#: Index offset of the seeds of MuJoCo settling's redraw rounds (derived_seed(seed, PHYSICS_SEED + round)).
PHYSICS_SEED = 500_000

__all__ = ["ObjectScene", "user_object", "family_objects", "ObjectInterHandGen", "bundled_object_model_path",
           "mesh_centre_of_mass", "object_sampler_defaults"]


def bundled_object_model_path() -> Path:
    path = Path(str(resources.files("interhandgen") / "checkpoints" / BUNDLED_OBJECT_MODEL))
    if not path.is_file():
        raise MissingFileError(f"the bundled object model {path} is missing from this installation; reinstall "
                               "interhandgen or pass --checkpoint PATH (an object model, kind shared_object)")
    return path


@dataclasses.dataclass
class ObjectScene:
    """Objects to sample around: a library of objects (own frames) and S placements: ``object_id`` [S] (default
    0..M-1) and ``object_pose`` [S, 7] (articulation 0, axis-angle, translation = the object's centre). Sample i gets
    placement i mod S (e.g. the placements of a data set's test split, to compare with it)."""

    library: ObjectLibrary
    object_pose: np.ndarray
    object_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.object_pose = np.asarray(self.object_pose, dtype=np.float64)
        ids = np.arange(len(self.library)) if self.object_id is None else np.asarray(self.object_id)
        self.object_id = ids.astype(np.int64)
        if self.object_id.ndim != 1 or len(ids) == 0 or ids.min() < 0 or ids.max() >= len(self.library):
            raise InputError(f"object_id must index the {len(self.library)} library objects")
        if self.object_pose.shape != (len(ids), 7) or not np.isfinite(self.object_pose).all():
            raise InputError(f"object_pose must be finite [{len(ids)}, 7], got {self.object_pose.shape}")

    @classmethod
    def of(cls, two_hands: TwoHandSet) -> "ObjectScene":
        """The placements of a set's pairs (its object library, ids and poses)."""
        if two_hands.object_library is None:
            raise InputError("the set has no object library")
        return cls(two_hands.object_library, two_hands.object_pose, two_hands.labels["object_id"][0])

    def rows(self, num: int) -> tuple[np.ndarray, np.ndarray]:
        """(object ids [num], poses [num, 7]) of samples 0..num-1."""
        entry = np.arange(num) % len(self.object_id)
        return self.object_id[entry], self.object_pose[entry]


def mesh_centre_of_mass(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre of mass [3] of the enclosed volume at uniform density, volume m^3) of a closed, outward mesh, by the
    divergence theorem (signed tetrahedra from the origin)."""
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    vol = np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    total = float(vol.sum())
    if not total > 0:
        raise InputError(f"the object mesh encloses volume {total:.3g} m^3; it must be a closed mesh with outward "
                         "normals (metres)")
    return (vol[:, None] * tri.sum(1) / 4.0).sum(0) / total, total


def user_object(path: str | Path, name: str | None = None) -> ObjectScene:
    """A user's closed mesh (.obj/.ply/.stl/.glb, metres, world coordinates) as a one-object scene, placed where
    it is (module docstring). Its convex parts for the MuJoCo test: the mesh itself when it is convex
    (:func:`~interhandgen.geometry.decompose.hull_excess`); else none are stored, and the test cuts it into
    convex parts when it needs them (CoACD, :func:`interhandgen.objects.metrics.object_parts`): its convex hull
    would fill a mug's handle hole or a bowl's inside."""
    import trimesh  # noqa: PLC0415 (an optional reader; trimesh is a dependency)

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"--object {path}: file not found")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=True)
    except Exception as exc:  # trimesh raises many types for foreign files
        raise InputError(f"--object {path}: not a readable mesh: {exc}") from None
    v, f = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    if len(f) == 0 or not mesh.is_watertight:
        raise InputError(f"--object {path}: the mesh must be closed (watertight; {len(f)} faces read): the model "
                         "and its guidance need an inside and an outside")
    extent = float(np.ptp(v, axis=0).max())
    if not 0.01 <= extent <= 1.0:
        raise InputError(f"--object {path}: largest extent {extent:.4g}; give the mesh in metres (0.01-1 m; the "
                         "training objects are 3-40 cm)")
    centre, _ = mesh_centre_of_mass(v, f)
    local = v - centre
    try:
        convex = hull_excess(local, f) <= CONVEX_TOLERANCE
    except InputError as exc:
        raise InputError(f"--object {path}: {exc}") from None
    parts = (local,) if convex else ()
    lib = ObjectLibrary((name or path.stem,), ("user",), ("{}",), (local,), (f,), (parts,))
    return ObjectScene(lib, np.array([[0.0, 0.0, 0.0, 0.0, *centre]]))


def family_objects(family: str, num_objects: int, seed: int, orientations: dict[str, list]) -> ObjectScene:
    """``num_objects`` random objects of a library family, each turned by one of the recorded ``orientations`` of
    that family (axis-angle; drawn with the seed), centred at the world origin."""
    if family not in FAMILY_NAMES:
        raise InputError(f"--object-family: unknown family {family!r}; known: {list(FAMILY_NAMES)}")
    if family not in orientations or not orientations[family]:
        raise InputError(f"--object-family {family}: the model saw no object of this family in training (it has: "
                         f"{sorted(orientations)})")
    if num_objects < 1:
        raise InputError(f"num_objects must be >= 1, got {num_objects}")
    meshes = sample_objects(num_objects, seed, families=[family])
    rng = np.random.default_rng(seed)
    choice = rng.integers(0, len(orientations[family]), num_objects)
    pose = np.zeros((num_objects, 7))
    pose[:, 1:4] = np.asarray(orientations[family], dtype=np.float64)[choice]
    names = [f"{family}_{seed}_{i}" for i in range(num_objects)]
    return ObjectScene(ObjectLibrary.from_meshes(names, meshes), pose)



def object_sampler_defaults() -> SamplerSettings:
    """The cascade settings of sampling with an object: no resampling (hand-object guidance, settling and the redraw
    take its place) and the anchor stage at ``steps`` (the two-hand default of 50 anchor steps was not measured
    with an object) and the temperature :data:`~interhandgen.generation.cascade.OBJECT_TEMPERATURE`."""
    return SamplerSettings(resample_rounds=0, anchor_steps=None, anchor_solver="ddim", temperature=OBJECT_TEMPERATURE)

#: Seed of the objects' surface samples that the guidance, the checks and the finger closing judge against (the
#: network's encoder reads its own, seed 0): one set of samples for every stage.
GUIDANCE_SAMPLES_SEED = 2


def guidance_samples(library: ObjectLibrary, num: int) -> np.ndarray:
    """[M, num, 6] each library object's surface samples and outward normals in its own frame, seeded by
    :data:`GUIDANCE_SAMPLES_SEED`."""
    return np.stack([surface_samples(library.vertices[m], library.faces[m], num, seed=GUIDANCE_SAMPLES_SEED)
                     for m in range(len(library))])


def exact_objects(library: ObjectLibrary, ids: np.ndarray, poses: np.ndarray, mirrored: bool = False) -> ExactObjects:
    """The rows' object meshes for the sampler's exact checks, turned as :meth:`ObjectInterHandGen.condition` turns
    their surface samples."""
    return ExactObjects(library.vertices, library.faces, torch.as_tensor(np.asarray(ids), dtype=torch.long),
                        torch.as_tensor(object_rotation(poses)), mirrored)


def object_checks_record(violation: torch.Tensor) -> dict:
    """The samples' metadata record of the pairs that still fail the sampler's hand-object checks (the redraw's:
    gap, depth, the object through a hand, hands through each other) after every stage but the exact push-out,
    from ``violation`` [N] (mm beyond the checks, :func:`~interhandgen.generation.object_sampling.hand_object_violation`;
    0: passes): their indices and how far each fails, so that a user can drop or redraw them."""
    failing = (violation > 0).nonzero()[:, 0]
    return {"rule": "hand_object_violation after all stages but the exact push-out (mm beyond the checks)",
            "pairs": int(violation.numel()), "failing": failing.tolist(),
            "violation_mm": [round(float(v), 3) for v in violation[failing]]}


class ObjectInterHandGen:
    """A trained object-conditioned prior bound to its hand model: the cascade (kind ``shared_object``) or the joint
    baseline (kind ``joint_object``: both hands in one diffusion, the same post-processing, no in-loop guidance and
    no completion)."""

    def __init__(self, model: LoadedModel, hand_model: HandModelSpec | None = None,
                 device: str | torch.device = "cpu") -> None:
        if not registered(model.model_config).uses_object:
            raise ModelMismatchError(f"{model.source}: a {model.kind!r} model takes no object; use an object model "
                                     "(kind shared_object, e.g. the bundled one) or sample without --object")
        # the cascade's machinery (hand layers, schedule, guidance subsets) is the two-hand generator's
        self.cascade = InterHandGen(model, hand_model, device, require_cascade=False)
        self.joint = not registered(model.model_config).cascaded  # kind joint_object: one diffusion of both hands
        self.model, self.device = model, self.cascade.device
        self.hand_model, self.hands, self.schedule = self.cascade.hand_model, self.cascade.hands, self.cascade.schedule
        objects = (model.artifact.objects if model.artifact is not None else None) or {}
        self.orientations: dict[str, list] = dict(objects.get("orientations", {}))
        self.num_points = int(objects.get("num_points", SURFACE_POINTS))

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
             hand_model: HandModelSpec | None = None) -> "ObjectInterHandGen":
        return cls(load_model(bundled_object_model_path() if path is None else path, device), hand_model, device)

    def condition(self, library: ObjectLibrary, ids: np.ndarray, poses: np.ndarray, guidance_points: int,
                  mirrored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [N, E], surfaces [N, K, 6]) of the rows' objects in the object frame (rotated by their poses;
        ``mirrored``: the mirror images in x = 0, for a completed right hand)."""
        enc = [surface_samples(library.vertices[m], library.faces[m], self.num_points) for m in range(len(library))]
        guide = list(guidance_samples(library, guidance_points))
        R = axis_angle_to_matrix(torch.as_tensor(np.asarray(poses)[:, 1:4], dtype=torch.float64))
        ids = torch.as_tensor(ids, dtype=torch.long)

        def placed(samples: list[np.ndarray]) -> torch.Tensor:
            local = torch.as_tensor(np.stack(samples))[ids]  # [N, P, 6]
            out = torch.cat([local[..., :3] @ R.transpose(1, 2), local[..., 3:] @ R.transpose(1, 2)], -1)
            if mirrored:
                out = out * torch.tensor([-1.0, 1.0, 1.0, -1.0, 1.0, 1.0], dtype=out.dtype)
            return out.float().to(self.device)

        with torch.no_grad():
            tokens = self.model.net.encode(placed(enc))
        return tokens, placed(guide)

    def sample(self, num: int, scene: ObjectScene | None, seed: int = 0, settings: SamplerSettings | None = None,
               object_settings: ObjectSettings | None = None, batch_size: int = 2500,
               progress: bool = True) -> TwoHandSet:
        """``num`` pairs around the scene's objects (sample i: object i mod M), world frame, with the object
        library; ``scene`` None samples without an object (the null object token; the left hand at the origin)."""
        if num < 1:
            raise InputError(f"num must be >= 1, got {num}")
        settings = settings or object_sampler_defaults()
        object_settings = object_settings or ObjectSettings()
        meta = {"generator": "interhandgen", "model": self.model.source, "model_kind": self.model.kind, "seed": seed,
                "sampler": describe(settings, object_settings)}
        if scene is None:
            if object_settings.physics_rounds:
                raise InputError("MuJoCo settling (physics_rounds) needs an object to settle; sample with an object "
                                 "or set physics_rounds=0")
            x = self._run(num, None, None, seed, settings, object_settings, batch_size, progress)
            return to_world(x, self.hands, anchor=ANCHOR_SIDE, hand_model=self.hand_model, metadata=meta)
        ids, poses = scene.rows(num)
        tokens, surfaces = self.condition(scene.library, ids, poses, object_settings.object_guidance_points)
        exact = exact_objects(scene.library, ids, poses)
        violation = torch.zeros(num, dtype=torch.float64)
        physics = object_settings.physics_rounds > 0
        screen = torch.zeros(num, 2, dtype=torch.bool) if object_settings.exact_clear_rounds and not physics else None
        x = self._run(num, tokens, surfaces, seed, settings, object_settings, batch_size, progress, exact=exact,
                      violation=violation, screen=screen)
        if physics:
            x = self._physics_settle(x, ids, poses, scene.library, tokens, surfaces, seed, settings, object_settings,
                                     batch_size, meta, exact, progress)
            pairs = self._world(x, ids, poses, scene.library, meta)
            return self._exact_clear_settled(pairs, object_settings, progress) if object_settings.exact_clear_rounds \
                else pairs
        meta["object_checks"] = object_checks_record(violation)
        cleared = self._exact_clear(self._world(x, ids, poses, scene.library, meta), screen, object_settings,
                                    ("left", "right"), progress)
        return self._close_fingers(cleared, object_settings, ("left", "right"))

    def _close_fingers(self, pairs: TwoHandSet, og: ObjectSettings, sides: tuple[str, ...]) -> TwoHandSet:
        """The finger closing (``ObjectSettings.close_fingers_deg``; 0: off) of world-frame pairs; its record goes
        into the metadata as ``finger_closing``."""
        if not og.close_fingers_deg:
            return pairs
        library = pairs.object_library
        samples = guidance_samples(library, og.object_guidance_points)
        R = object_rotation(pairs.object_pose)
        local = samples[pairs.object_id]
        surface = np.concatenate([np.einsum("nij,nkj->nki", R, local[..., :3]) + pairs.object_pose[:, None, 4:7],
                                  np.einsum("nij,nkj->nki", R, local[..., 3:])], axis=-1)
        closed, record = close_fingers(pairs, torch.as_tensor(surface, dtype=torch.float32),
                                       max_deg=og.close_fingers_deg, step_deg=og.close_step_deg,
                                       touch_mm=og.close_touch_mm, clear_mm=og.close_clear_mm,
                                       reach_mm=og.object_plane_reach_mm, points_per_finger=og.close_points,
                                       sides=sides, models=self.hands)
        return closed.with_metadata(finger_closing=record)

    def _exact_clear(self, pairs: TwoHandSet, screen: torch.Tensor | None, og: ObjectSettings,
                     sides: tuple[str, ...], progress: bool = False) -> TwoHandSet:
        """The exact clearance (``ObjectSettings.exact_clear_rounds``) of world-frame pairs, ``screen`` [N, 2]
        (left, right) the hands to measure (None: the stage is off); its record goes into the metadata as
        ``exact_clearance``."""
        if screen is None:
            return pairs
        cleared, record = self._clear(pairs, screen.cpu().numpy(), og, sides, progress)
        return cleared.with_metadata(exact_clearance=record)

    def _clear(self, pairs: TwoHandSet, screen: np.ndarray, og: ObjectSettings, sides: tuple[str, ...],
               progress: bool) -> tuple[TwoHandSet, dict]:
        return clear_hands_exactly(pairs, screen, og.exact_clear_steps_mm, og.exact_clear_rounds,
                                   og.exact_clear_min_cm3, sides, self.hands, progress=progress)

    def _exact_clear_settled(self, pairs: TwoHandSet, og: ObjectSettings, progress: bool = False) -> TwoHandSet:
        """The exact clearance after MuJoCo settling: every hand is measured (the checks' screen judged the first
        draws, not the settled pairs), and a moved pair that the stability test held before the move and not after
        keeps its settled hands (listed as ``reverted``; the record's volumes are those before that)."""
        cleared, record = self._clear(pairs, np.ones((len(pairs), 2), dtype=bool), og, ("left", "right"), progress)
        moved = np.union1d(record["left"]["moved"], record["right"]["moved"]).astype(int)
        reverted = np.zeros(0, dtype=int)
        if moved.size:
            before = object_stability(pairs[moved], PhysicsConfig(), models=self.hands)["held"]
            after = object_stability(cleared[moved], PhysicsConfig(), models=self.hands)["held"]
            reverted = moved[before & ~after]
        if reverted.size:
            sides = {}
            for side in ("left", "right"):
                transl = cleared.hand(side).transl.copy()
                transl[reverted] = pairs.hand(side).transl[reverted]
                sides[side] = dataclasses.replace(cleared.hand(side), transl=transl)
            cleared = cleared._replace(**sides)
        record["reverted"] = reverted.tolist()
        record["rule"] += ("; after MuJoCo settling every hand is measured, and a moved pair that the stability test "
                           "held before the move and not after keeps its settled hands")
        return cleared.with_metadata(exact_clearance=record)

    def _world(self, x: torch.Tensor, ids: np.ndarray, poses: np.ndarray, library: ObjectLibrary,
               meta: dict | None = None) -> TwoHandSet:
        centre = torch.as_tensor(poses[:, 4:7], dtype=torch.float64)
        return to_world(x, self.hands, anchor=ANCHOR_SIDE, anchor_world=anchor_world_pose(x, centre),
                        hand_model=self.hand_model, metadata=meta, object_id=ids, object_names=library.names,
                        object_pose=poses, object_library=library)

    def _physics_settle(self, x: torch.Tensor, ids: np.ndarray, poses: np.ndarray, library: ObjectLibrary,
                        tokens: torch.Tensor, surfaces: torch.Tensor, seed: int, settings: SamplerSettings,
                        og: ObjectSettings, batch_size: int, meta: dict, exact: ExactObjects | None = None,
                        progress: bool = False) -> torch.Tensor:
        """MuJoCo settling with redraws (``ObjectSettings.physics_rounds``, see there) of raw object-frame pairs
        x [N, 2, 64]; returns the new pairs and records per round the pairs tried, settled and kept in ``meta``.
        ``progress``: a bar over the rounds (each takes seconds to minutes), with the pairs kept and still open."""
        require_mujoco()
        settle_config, test_config = PhysicsConfig(duration=og.physics_settle_s), PhysicsConfig()
        grasp_hands = self.cascade.surface_subsets(og.grasp_points)
        guide_hands = self.cascade.surface_subsets(settings.apg_points)
        centre = torch.as_tensor(poses[:, 4:7], dtype=torch.float64)
        accept = dataclasses.replace(og, redraw_depth_mm=math.inf if og.physics_depth_mm is None
                                     else og.physics_depth_mm)
        x = x.clone()
        pending = torch.arange(x.shape[0])
        candidates = x
        log = []
        # one load of the hand layers for the whole stage (tens of ms each): every set below is of this sampler's
        # hand model and conventions
        models = self._world(x[:1], ids[:1], poses[:1], library).hand_models()

        def settle(candidates: torch.Tensor, rows_of: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
            """One settle pass of raw pairs ``candidates`` [n, 2, 64] (rows ``rows_of`` [n] of the scene): the pairs
            moved by the inverse of their objects' motion, which objects came to rest [n] bool, how many pairs passed
            the checks, and the positions (into the n) of the pairs kept (checks and the stability test passed)."""
            rows = rows_of.numpy()
            motion = object_motion(self._world(candidates, ids[rows], poses[rows], library), settle_config,
                                   models=models)
            R, t = (torch.as_tensor(motion[k], device=x.device) for k in ("rotation", "translation"))
            c = centre[rows_of].to(x.device)
            drop = ((R @ c[..., None])[..., 0] + t - c).norm(dim=1)
            rested = torch.as_tensor(motion["stable"]) & (drop < og.physics_max_drop_mm / 1000.0)
            moved = move_with_object(candidates, R, t, c)
            surf = surfaces[rows_of.to(surfaces.device)]
            if og.object_settle_steps > 0:
                # a hand the object did not come to rest on is pulled into touch again; hands touching or inside it
                # stay where the object rested on them (pushing them out would take its support away)
                a_raw, o_raw = settle_pair(moved[:, 0], moved[:, 1], surf, guide_hands, og, push=False,
                                           check_hands=grasp_hands)
                moved = torch.stack([a_raw, o_raw], 1)
            ok = rested.to(x.device) & hand_object_check(grasp_hands, moved[:, 0], moved[:, 1], surf, accept)
            tried = ok.nonzero()[:, 0].cpu()
            if not tried.numel():
                return moved, rested, 0, tried
            sel = rows[tried.numpy()]
            placed = self._world(moved[tried], ids[sel], poses[sel], library)  # for both exact tests below
            if og.physics_exact_contact:
                touching = hand_object_contact(placed, models)
                tried, placed = tried[torch.as_tensor(touching)], placed[np.flatnonzero(touching)]
                if not tried.numel():
                    return moved, rested, 0, tried
            held = object_stability(placed, test_config, models=models)["held"]
            return moved, rested, int(tried.numel()), tried[torch.as_tensor(held)]

        bar = tqdm(total=og.physics_rounds, desc="MuJoCo settling", unit="round", disable=not progress)
        for r in range(og.physics_rounds):
            rows = pending.numpy()
            if r > 0:  # fresh draws of the pairs not kept so far, same settings, another seed per round
                on = pending.to(tokens.device)
                candidates = self._run(len(rows), tokens[on], surfaces[on], derived_seed(seed, PHYSICS_SEED + r),
                                       settings, og, batch_size, False,
                                       exact=None if exact is None else exact.subset(pending))
            moved, rested, checked, kept = settle(candidates, pending)
            first = {"came_to_rest": int(rested.sum()), "checked": checked, "kept_first_pass": int(kept.numel())}
            for _ in range(og.physics_settle_passes - 1):
                # objects that came to rest in pairs not kept: let fall again from where the hands were moved
                again = rested.clone()
                again[kept] = False
                again = again.nonzero()[:, 0].cpu()
                if not again.numel():
                    break
                moved_again, rested_again, _, kept_again = settle(moved[again.to(x.device)], pending[again])
                moved[again.to(x.device)] = moved_again
                rested = torch.zeros_like(rested)
                rested[again[rested_again.cpu()]] = True
                kept = torch.cat([kept, again[kept_again]])
            x[pending[kept].to(x.device)] = moved[kept.to(x.device)]
            log.append({"round": r, "pairs": len(rows), "came_to_rest": first["came_to_rest"],
                        "checked": first["checked"], "kept": int(kept.numel()),
                        "kept_first_pass": first["kept_first_pass"]})
            mask = torch.ones(len(rows), dtype=torch.bool)
            mask[kept] = False
            pending = pending[mask]
            bar.set_postfix(kept=x.shape[0] - pending.numel(), open=pending.numel(), refresh=False)
            bar.update()
            if not pending.numel():
                break
        bar.close()
        meta["physics_settle"] = log
        return x

    def _run(self, num, tokens, surfaces, seed, settings, object_settings, batch_size, progress, anchors=None,
             exact=None, violation=None, screen=None):
        if settings.resample_rounds:
            raise InputError("resampling of interpenetrating partners is not available with an object "
                             "(set resample_rounds=0; hand-object guidance and settling take its place)")
        settle = self.cascade._settle(settings)
        return object_cascaded_sample(self.model.net, self.schedule, self.model.stats_mean, self.model.stats_std,
                                      tokens, surfaces, num, settings, object_settings,
                                      self.cascade.surface_subsets(settings.apg_points), settle=settle,
                                      grasp_hands=self.cascade.surface_subsets(object_settings.grasp_points),
                                      anchors=anchors, exact=exact, seed=seed,
                                      batch_size=batch_size, device=self.device, progress=progress,
                                      violation=violation, screen=screen)

    def complete(self, given: TwoHandSet, side: str = "left", seed: int = 0, settings: SamplerSettings | None = None,
                 object_settings: ObjectSettings | None = None, batch_size: int = 2500,
                 progress: bool = True) -> TwoHandSet:
        """A partner for the ``side`` hand of every pair of ``given`` (which holds the object library and poses),
        conditioned on the pair's object; the given hand and the object keep their world poses exactly."""
        if side not in ("left", "right"):
            raise InputError(f"side must be 'left' or 'right', got {side!r}")
        if self.joint:
            raise ModelMismatchError(f"{self.model.source}: a joint_object model draws both hands at once and cannot "
                                     "complete a given hand; use a cascaded object model (kind shared_object)")
        if given.object_library is None:
            raise InputError("complete with an object: the given pairs need an object library (fields "
                             "'object_library_*', e.g. from interhandgen data synth --objects or sample --object)")
        if given.hand_model != self.hand_model:
            raise ModelMismatchError(f"the given hands use hand model {given.hand_model.kind!r}, the generator "
                                     f"{self.hand_model.kind!r}")
        settings = settings or object_sampler_defaults()
        object_settings = object_settings or ObjectSettings()
        if object_settings.physics_rounds:
            raise InputError("MuJoCo settling moves both hands, and complete keeps the given hand where it is: set "
                             "physics_rounds=0 (--physics-rounds 0) to complete a hand")
        src = given if side == ANCHOR_SIDE else mirror(given, self.hands)
        frame = to_object_frame(src, self.hands, num_points=self.num_points, dtype=torch.float32, points=False)
        ids = given.labels["object_id"][0]
        tokens, surfaces = self.condition(given.object_library, ids, given.object_pose,
                                          object_settings.object_guidance_points, mirrored=side != ANCHOR_SIDE)
        violation = torch.zeros(len(src), dtype=torch.float64)
        screen = torch.zeros(len(src), 2, dtype=torch.bool) if object_settings.exact_clear_rounds else None
        x = self._run(len(src), tokens, surfaces, seed, settings, object_settings, batch_size, progress,
                      anchors=frame.x[:, 0].to(self.device),
                      exact=exact_objects(given.object_library, ids, given.object_pose, mirrored=side != ANCHOR_SIDE),
                      violation=violation, screen=screen)
        done = to_world(x, self.hands, anchor=ANCHOR_SIDE, anchor_world=anchor_world_pose(x, frame.center),
                        hand_model=self.hand_model, pose_space=given.pose_space, flat_hand_mean=given.flat_hand_mean,
                        metadata={**given.metadata, "completed_side": "right" if side == "left" else "left",
                                  "seed": seed, "sampler": describe(settings, object_settings),
                                  "object_checks": object_checks_record(violation)},
                        object_id=src.labels["object_id"][0], object_names=src.labels["object_id"][1],
                        object_pose=src.object_pose, object_library=src.object_library)
        if side != ANCHOR_SIDE:
            done = mirror(done, self.hands)
        done = done._replace(**{side: given.hand(side)}, object_pose=given.object_pose)
        # the screen's columns are (given, completed); in world order (left, right)
        partner = "right" if side == "left" else "left"
        if screen is not None and side != "left":
            screen = screen.flip(1)
        return self._close_fingers(self._exact_clear(done, screen, object_settings, (partner,), progress),
                                   object_settings, (partner,))

