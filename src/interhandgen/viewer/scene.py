"""What the viewer draws for one two-hand sample, as pure functions (no browser, no server).

A scene is a tuple of :class:`MeshSpec` (name, vertices, faces, one colour): the server layer adds each one
with ``viser``'s ``scene.add_mesh_simple`` and the standalone export embeds them, so both show the same thing
and the tests check the scene without a browser.

Conventions
-----------
- Colours are those of :mod:`interhandgen.viz`: left hand ``LEFT_COLOUR`` (blue), right hand ``RIGHT_COLOUR``
  (orange); an object is grey (``OBJECT_COLOUR``); interpenetrating regions are red (``HIGHLIGHT_COLOUR``).
- Highlighting: a vertex of one hand is *inside* when the project's exact inside test
  (:func:`interhandgen.geometry.points_inside`: closest surface point + pseudo-normal sign against the sealed
  other hand) says so, i.e. its signed distance to the other hand is negative. Each hand is then split into
  two meshes: the faces with at least one inside vertex (``<name>_inside``, red) and the others (``<name>``,
  the hand's colour). The vertices stay shared, so the split is seamless.
- Names: ``<prefix>/left``, ``<prefix>/right``, ``<prefix>/object``, and ``<prefix>/left_inside``,
  ``<prefix>/right_inside`` (siblings, not children: in viser removing a node removes its children).
- Units: metres in the meshes; figures in cm^3 and mm.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from interhandgen.exceptions import InputError
from interhandgen.geometry import (
    DEFAULT_CONTACT_THRESHOLD,
    contact_vertices,
    min_distance,
    penetration_volume,
    points_inside,
)
from interhandgen.viz import LEFT_COLOUR, RIGHT_COLOUR

HIGHLIGHT_COLOUR = (220, 30, 40)
OBJECT_COLOUR = (150, 150, 150)
HAND_COLOURS = {"left": LEFT_COLOUR, "right": RIGHT_COLOUR}
SIDES = ("left", "right")


@dataclasses.dataclass(frozen=True)
class MeshSpec:
    """One mesh of a scene: vertices [V, 3] float32 metres, faces [F, 3] int32, an sRGB colour."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    colour: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class ObjectMesh:
    """An optional object held by the hands: vertices [V, 3] metres (world frame of the sample), faces [F, 3]."""

    vertices: np.ndarray
    faces: np.ndarray
    name: str = "object"

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices)
        f = np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
            raise InputError(f"object '{self.name}': vertices must be a finite [V, 3] array, got shape {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu" or (f.size and (f.min() < 0 or f.max() >= len(v))):
            raise InputError(f"object '{self.name}': faces must be an integer [F, 3] array indexing its {len(v)} "
                             f"vertices, got shape {f.shape}, dtype {f.dtype}")


@dataclasses.dataclass(frozen=True)
class SampleFigures:
    """Geometry figures of one pair (see :func:`sample_figures`)."""

    penetration_volume_cm3: float
    min_distance_mm: float
    contact_vertices: tuple[int, int]  # (left, right) vertices within the contact threshold of the other hand
    inside_vertices: tuple[int, int]  # (left, right) vertices inside the other hand

    @property
    def in_contact(self) -> bool:
        return sum(self.contact_vertices) > 0


@dataclasses.dataclass(frozen=True)
class SampleScene:
    """Everything drawn for one sample: meshes, the per-vertex inside masks used to highlight, the figures."""

    meshes: tuple[MeshSpec, ...]
    inside: dict  # {"left": [V] bool, "right": [W] bool}

    def names(self) -> list[str]:
        return [m.name for m in self.meshes]

    def mesh(self, name: str) -> MeshSpec:
        for m in self.meshes:
            if m.name == name:
                return m
        raise KeyError(f"no mesh named {name!r}; have {self.names()}")


# ---------------------------------------------------------------------------------------------------------------------
# Batched geometry (a few samples at a time; the viewer calls these lazily per shown sample)
# ---------------------------------------------------------------------------------------------------------------------

def interpenetration_masks(left_vertices: Any, left_faces: Any, right_vertices: Any,
                           right_faces: Any) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of each hand strictly inside the other (negative signed distance), exact.

    Args:
        left_vertices: [B, V, 3] metres; left_faces: [F, 3]; right_vertices: [B, W, 3]; right_faces: [G, 3].
    Returns:
        (left_inside [B, V] bool, right_inside [B, W] bool) numpy arrays.
    """
    lv, rv = _as_batch(left_vertices, "left_vertices"), _as_batch(right_vertices, "right_vertices")
    left_in = points_inside(lv, rv, right_faces)
    right_in = points_inside(rv, lv, left_faces)
    return left_in.cpu().numpy(), right_in.cpu().numpy()


def sample_figures(left_vertices: Any, left_faces: Any, right_vertices: Any, right_faces: Any,
                   left_inside: np.ndarray, right_inside: np.ndarray,
                   contact_threshold: float = DEFAULT_CONTACT_THRESHOLD) -> list[SampleFigures]:
    """Exact geometry figures of B pairs: penetration volume (manifold3d boolean, cm^3), minimum surface
    distance (vertex-to-triangle both ways, mm), contact vertex counts (within ``contact_threshold`` metres of
    the other hand's vertices) and inside vertex counts (from the given masks [B, V] / [B, W]).
    """
    lv, rv = _as_batch(left_vertices, "left_vertices"), _as_batch(right_vertices, "right_vertices")
    volume = penetration_volume(lv, left_faces, rv, right_faces, num_workers=1)
    dist = min_distance(lv, rv, left_faces, right_faces).double().cpu().numpy() * 1000.0
    c_left, c_right = contact_vertices(lv, rv, contact_threshold)
    c_left, c_right = c_left.sum(1).cpu().numpy(), c_right.sum(1).cpu().numpy()
    n_left, n_right = np.asarray(left_inside).sum(1), np.asarray(right_inside).sum(1)
    return [SampleFigures(float(volume[b]), float(dist[b]), (int(c_left[b]), int(c_right[b])),
                          (int(n_left[b]), int(n_right[b]))) for b in range(lv.shape[0])]


def _as_batch(verts: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(verts) if not isinstance(verts, torch.Tensor) else verts)
    if t.ndim != 3 or t.shape[-1] != 3:
        raise InputError(f"{name} must have shape [B, V, 3], got {list(t.shape)}")
    return t


# ---------------------------------------------------------------------------------------------------------------------
# Scene building (pure)
# ---------------------------------------------------------------------------------------------------------------------

def split_faces(faces: np.ndarray, vertex_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(faces touching no masked vertex, faces with at least one masked vertex), order kept."""
    faces = np.asarray(faces)
    hit = np.asarray(vertex_mask, dtype=bool)[faces].any(axis=1)
    return faces[~hit], faces[hit]


def build_sample_scene(
    left_vertices: np.ndarray,
    left_faces: np.ndarray,
    right_vertices: np.ndarray,
    right_faces: np.ndarray,
    *,
    inside: tuple[np.ndarray, np.ndarray] | None = None,
    obj: ObjectMesh | None = None,
    prefix: str = "/sample",
    offset: Sequence[float] = (0.0, 0.0, 0.0),
    colours: dict | None = None,
) -> SampleScene:
    """The meshes of one sample.

    Args:
        left_vertices: [V, 3] metres; left_faces: [F, 3]; right_vertices: [W, 3]; right_faces: [G, 3].
        inside: (left [V] bool, right [W] bool) vertices inside the other hand (:func:`interpenetration_masks`);
            None draws no highlight.
        obj: an optional object mesh, drawn grey.
        prefix: scene-tree prefix of the names (e.g. "/sample", "/reference").
        offset: translation added to every vertex (metres), to place two samples side by side.
        colours: {"left": rgb, "right": rgb} to override the hand colours (e.g. paler for a reference).
    Returns:
        A :class:`SampleScene`.
    """
    shift = np.asarray(offset, dtype=np.float64).reshape(3)
    colours = {**HAND_COLOURS, **(colours or {})}
    verts = {"left": np.asarray(left_vertices), "right": np.asarray(right_vertices)}
    faces = {"left": np.asarray(left_faces), "right": np.asarray(right_faces)}
    masks = {}
    for i, side in enumerate(SIDES):
        v = verts[side]
        if v.ndim != 2 or v.shape[1] != 3:
            raise InputError(f"{side}_vertices must have shape [V, 3], got {list(v.shape)}")
        masks[side] = (np.zeros(len(v), dtype=bool) if inside is None else np.asarray(inside[i], dtype=bool))
        if masks[side].shape != (len(v),):
            raise InputError(f"inside[{i}] ({side}) must have shape [{len(v)}], got {list(masks[side].shape)}")
    meshes = []
    for side in SIDES:
        v = (verts[side] + shift).astype(np.float32)
        plain, hit = split_faces(faces[side], masks[side])
        meshes.append(MeshSpec(f"{prefix}/{side}", v, plain.astype(np.int32), tuple(colours[side])))
        if len(hit):
            meshes.append(MeshSpec(f"{prefix}/{side}_inside", v, hit.astype(np.int32), HIGHLIGHT_COLOUR))
    if obj is not None:
        meshes.append(MeshSpec(f"{prefix}/object", (np.asarray(obj.vertices) + shift).astype(np.float32),
                               np.asarray(obj.faces).astype(np.int32), OBJECT_COLOUR))
    return SampleScene(tuple(meshes), masks)


def describe(index: int, total: int, figures: SampleFigures | None, category: str | None = None,
             seed: int | None = None, source: str | None = None) -> str:
    """Markdown shown beside the scene for one sample."""
    lines = [f"**Sample {index} of {total}**" + (f" ({source})" if source else "")]
    if category is not None:
        lines.append(f"category: `{category}`")
    if seed is not None:
        lines.append(f"seed: `{seed}`")
    if figures is not None:
        lines += [
            f"penetration volume: {figures.penetration_volume_cm3:.4f} cm³",
            f"minimum distance: {figures.min_distance_mm:.2f} mm",
            f"contact: {'yes' if figures.in_contact else 'no'} ({figures.contact_vertices[0]} left, "
            f"{figures.contact_vertices[1]} right vertices within {DEFAULT_CONTACT_THRESHOLD * 1000:.0f} mm)",
            f"inside the other hand (red): {figures.inside_vertices[0]} left, {figures.inside_vertices[1]} right "
            f"vertices",
        ]
    return "  \n".join(lines)
