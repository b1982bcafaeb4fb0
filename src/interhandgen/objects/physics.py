"""Physics stability of a held object in MuJoCo: the simulation-displacement test of grasp papers.

Both hands are fixed (static collision geometry), the object is a free body under gravity (world -z) for a
fixed time; the result is the displacement of its centre of mass and whether it is *held* (displacement below
:data:`HOLD_THRESHOLD`, 2 cm). MuJoCo collides convex shapes only (a mesh geom is replaced by its convex hull), so

* a hand is a set of convex parts: the convex hull of the vertices of each bone (vertices grouped by their
  dominant skinning weight, each group grown by the vertices of the faces that touch it so that neighbouring
  hulls overlap instead of leaving gaps at the joints): 16 parts per hand (:func:`hand_convex_parts`);
* an object is the union of its convex parts (:attr:`interhandgen.objects.library.ObjectMesh.parts`, exact by
  construction for every family, see the library).

The setup (time step, duration, friction, density, contact softness) is :class:`PhysicsConfig` and is
documented in docs/objects.md. ``mujoco`` is an optional dependency (``pip install interhandgen[physics]``);
without it the functions here raise ImportError with the install hint (nothing is silently skipped).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import numpy as np

__all__ = ["PhysicsConfig", "HOLD_THRESHOLD", "convex_part_indices", "hand_convex_parts", "build_model",
           "build_model_xml", "simulate_drop", "simulate_motion", "step_checked", "require_mujoco"]

_log = logging.getLogger(__name__)

#: An object counts as held when its centre of mass moved less than this (metres) during the simulation.
HOLD_THRESHOLD = 0.02
#: Standard gravity (m/s^2), along world -z.
GRAVITY = 9.81


@dataclasses.dataclass(frozen=True)
class PhysicsConfig:
    """MuJoCo settings of the stability test (SI units)."""

    timestep: float = 0.002  # s, semi-implicit Euler (MuJoCo's default integrator)
    duration: float = 1.0  # s of simulated time
    density: float = 400.0  # kg/m^3 of the object (everyday objects: 100-1000)
    friction: float = 1.0  # sliding friction coefficient (skin on wood/plastic: 0.5-1.0)
    torsional_friction: float = 0.005
    rolling_friction: float = 0.0001
    condim: int = 6  # contact dimensionality: normal + 2 tangential + torsional + 2 rolling
    solref: tuple[float, float] = (0.01, 1.0)  # contact time constant (s) and damping ratio (critical)
    solimp: tuple[float, float, float] = (0.95, 0.99, 0.001)  # MuJoCo's impedance curve
    margin: float = 0.0  # contacts are active from this distance (m)
    hold_threshold: float = HOLD_THRESHOLD


def require_mujoco():
    """The ``mujoco`` module, or ImportError naming the extra that installs it."""
    try:
        import mujoco
    except ImportError as exc:
        raise ImportError("the physics stability test needs MuJoCo: pip install 'interhandgen[physics]' "
                          f"(or pip install mujoco) [{exc}]") from None
    if mujoco.get_mju_user_warning() is None:
        # MuJoCo's default handler appends every warning to MUJOCO_LOG.TXT in the working directory. The one we
        # meet (an unstable simulation) is detected by step_checked and counted as not held
        # (``unstable_simulations``), so its text goes to this module's logger instead of a stray file. A handler
        # the application installed itself is left alone.
        mujoco.set_mju_user_warning(_log_mujoco_warning)
    return mujoco


def _log_mujoco_warning(message: str) -> None:
    _log.debug("MuJoCo: %s", message.strip())


def convex_part_indices(faces: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    """Vertex indices of the convex parts of :func:`hand_convex_parts`: per bone, the vertices whose dominant skinning
    weight is that bone plus the other corners of every face touching them. They depend on the hand's faces and
    weights only, not on its pose, so a caller posing many hands computes them once.

    Args:
        faces: [F, 3]; weights: [V, J] skinning weights.
    Returns:
        a list of sorted index arrays [K_j], one per bone with at least 4 vertices.
    """
    owner = np.asarray(weights).argmax(1)
    faces = np.asarray(faces, dtype=np.int64)
    parts = []
    for j in range(np.asarray(weights).shape[1]):
        mine = owner == j
        if mine.sum() < 4:
            continue
        touching = mine[faces].any(1)
        parts.append(np.union1d(np.flatnonzero(mine), faces[touching].ravel()))
    return parts


def hand_convex_parts(vertices: np.ndarray, faces: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    """Convex parts of a posed hand: per bone, the vertices whose dominant skinning weight is that bone plus the
    other corners of every face touching them (see the module docstring and :func:`convex_part_indices`).

    Args:
        vertices: [V, 3] posed vertices (metres); faces: [F, 3]; weights: [V, J] skinning weights.
    Returns:
        a list of point arrays [K_j, 3], one per bone with at least 4 vertices.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    return [vertices[ids] for ids in convex_part_indices(faces, weights)]


def _floats(a) -> str:
    values = np.asarray(a, dtype=np.float64).ravel().tolist()
    return ("%.9g " * len(values) % tuple(values))[:-1]  # one C-level format: the hands' parts are ~4k numbers


def build_model_xml(static_parts: Sequence[np.ndarray], object_parts: Sequence[np.ndarray],
                    config: PhysicsConfig = PhysicsConfig()) -> str:
    """MJCF of fixed convex ``static_parts`` and a free object made of convex ``object_parts`` (world metres)."""
    c = config
    default = (f'<geom condim="{c.condim}" friction="{c.friction:.9g} {c.torsional_friction:.9g} '
               f'{c.rolling_friction:.9g}" solref="{_floats(c.solref)}" solimp="{_floats(c.solimp)}" '
               f'margin="{c.margin:.9g}"/>')
    assets, statics, body = [], [], []
    for i, pts in enumerate(static_parts):
        assets.append(f'<mesh name="s{i}" vertex="{_floats(pts)}"/>')
        statics.append(f'<geom type="mesh" mesh="s{i}"/>')
    for i, pts in enumerate(object_parts):
        assets.append(f'<mesh name="o{i}" vertex="{_floats(pts)}"/>')
        body.append(f'<geom type="mesh" mesh="o{i}" density="{c.density:.9g}"/>')
    return (f'<mujoco><compiler inertiafromgeom="true"/>'
            f'<option timestep="{c.timestep:.9g}" gravity="0 0 {-GRAVITY:.9g}"/>'
            f'<default>{default}</default><asset>{"".join(assets)}</asset><worldbody>{"".join(statics)}'
            f'<body name="object"><freejoint/>{"".join(body)}</body></worldbody></mujoco>')


def build_model(static_parts: Sequence[np.ndarray], object_parts: Sequence[np.ndarray],
                config: PhysicsConfig = PhysicsConfig()):
    """The compiled ``mujoco.MjModel`` of :func:`build_model_xml`'s scene, built through MuJoCo's model-editing API
    (``MjSpec``) from the parts' numbers directly: writing and parsing the ~4k numbers of two hands as text took
    about a quarter of the XML route's time (benchmarks/object_physics_time.py). The same model up to the float32
    rounding of the XML's 9-digit text (tests/objects/test_obj_physics.py)."""
    mujoco = require_mujoco()
    c = config
    spec = mujoco.MjSpec()
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_TRUE
    spec.option.timestep = c.timestep
    spec.option.gravity = [0.0, 0.0, -GRAVITY]
    geom = spec.default.geom
    geom.condim = c.condim
    geom.friction = [c.friction, c.torsional_friction, c.rolling_friction]
    geom.solref = list(c.solref)
    geom.solimp = list(c.solimp) + list(geom.solimp[3:])  # MuJoCo's own midpoint and power, as the XML leaves them
    geom.margin = c.margin
    mesh_type = mujoco.mjtGeom.mjGEOM_MESH

    def add(parent, name: str, pts: np.ndarray, **attrs) -> None:
        mesh = spec.add_mesh()
        mesh.name = name
        mesh.uservert = np.asarray(pts, dtype=np.float64).ravel().tolist()
        g = parent.add_geom()
        g.type, g.meshname = mesh_type, name
        for key, value in attrs.items():
            setattr(g, key, value)

    for i, pts in enumerate(static_parts):
        add(spec.worldbody, f"s{i}", pts)
    body = spec.worldbody.add_body()
    body.name = "object"
    body.add_freejoint()
    for i, pts in enumerate(object_parts):
        add(body, f"o{i}", pts, density=c.density)
    return spec.compile()


def simulate_drop(static_parts: Sequence[np.ndarray], object_parts: Sequence[np.ndarray],
                  config: PhysicsConfig = PhysicsConfig()) -> float:
    """Displacement (metres) of the object's centre of mass after ``config.duration`` seconds under gravity,
    the object starting at rest among the fixed ``static_parts`` (both given as convex point sets, world frame);
    ``inf`` when the simulation became unstable (:func:`step_checked`): such an object is not held.
    """
    data, body, start, stable = _simulate(static_parts, object_parts, config)
    if not stable:
        return float("inf")
    end = data.xipos[body]
    if not np.isfinite(end).all():
        raise FloatingPointError("MuJoCo diverged (non-finite object position)")
    return float(np.linalg.norm(end - start))


def simulate_motion(static_parts: Sequence[np.ndarray], object_parts: Sequence[np.ndarray],
                    config: PhysicsConfig = PhysicsConfig()) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """The object's rigid motion over ``config.duration`` seconds under gravity among the fixed ``static_parts``
    (world frame, as in :func:`simulate_drop`): ``(R [3, 3], t [3], speed, stable)`` such that a point x of the object
    at the start is at ``R x + t`` at the end; ``speed`` is the final linear speed of its centre of mass (m/s);
    ``stable`` False when the simulation became unstable (:func:`step_checked`; R, t then identity and zero).
    """
    data, body, _, stable = _simulate(static_parts, object_parts, config)
    if not stable:
        return np.eye(3), np.zeros(3), float("inf"), False
    # the body frame starts at the world origin with the world's axes (build_model_xml), so its pose IS the motion
    R, t = data.xmat[body].reshape(3, 3).copy(), data.xpos[body].copy()
    if not (np.isfinite(R).all() and np.isfinite(t).all()):
        raise FloatingPointError("MuJoCo diverged (non-finite object pose)")
    # cvel is (angular, linear) about the subtree's centre of mass
    return R, t, float(np.linalg.norm(data.cvel[body][3:])), True


def _simulate(static_parts, object_parts, config: PhysicsConfig):
    """Build the scene and run it for ``config.duration`` seconds: (MjData, the object's body id, its centre of mass
    at the start [3], stable)."""
    mujoco = require_mujoco()
    if len(object_parts) == 0:
        raise ValueError("the object has no convex parts")
    model = build_model(static_parts, object_parts, config)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    body = model.body("object").id
    start = data.xipos[body].copy()
    stable = step_checked(mujoco, model, data, int(round(config.duration / config.timestep)))
    return data, body, start, stable


def step_checked(mujoco, model, data, steps: int) -> bool:
    """Advance ``data`` by ``steps`` steps; False if the simulation became unstable on the way.

    On a NaN or huge acceleration (deep interpenetration) MuJoCo warns, RESETS the state to the model's initial
    pose and goes on, so the final pose alone would show a diverged object at rest where it started, i.e. held.
    The warning counter is therefore checked after every step, and the run stops at the first instability.
    """
    counter = data.warning[mujoco.mjtWarning.mjWARN_BADQACC]
    before = int(counter.number)
    for _ in range(steps):
        mujoco.mj_step(model, data)
        if int(counter.number) != before:
            return False
    return True
