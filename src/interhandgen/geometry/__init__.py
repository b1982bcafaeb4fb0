"""Interaction geometry of two hand meshes: sealing, penetration volume/depth, distances, contact, penalties.

Units: vertices in metres everywhere; :func:`penetration_volume` returns cm^3 (the reported metric);
depths and distances are metres (reports convert to mm). Meshes are batched vertices [B, V, 3] with one
faces array [F, 3] per hand model, shared by the batch. See docs/geometry.md.
"""

from interhandgen.geometry.loss import PenetrationLoss, geman_mcclure, penetration_loss
from interhandgen.geometry.mesh import face_normals, mesh_volume, vertex_normals, vertex_normals_at
from interhandgen.geometry.queries import (
    DEFAULT_CONTACT_THRESHOLD,
    DEFAULT_PROXIMITY_THRESHOLD,
    contact_vertices,
    min_distance,
    nearest_vertex,
    penetration_depth,
    point_to_surface_distance,
    points_inside,
    proximity_ratio,
    signed_distance_few,
    winding_numbers,
)
from interhandgen.geometry.sealing import SealPlan, seal, seal_faces
from interhandgen.geometry.volume import PenetrationVolumeError, penetration_volume

__all__ = [
    "SealPlan",
    "seal_faces",
    "seal",
    "penetration_volume",
    "PenetrationVolumeError",
    "penetration_depth",
    "min_distance",
    "contact_vertices",
    "proximity_ratio",
    "DEFAULT_PROXIMITY_THRESHOLD",
    "DEFAULT_CONTACT_THRESHOLD",
    "penetration_loss",
    "PenetrationLoss",
    "geman_mcclure",
    "vertex_normals",
    "vertex_normals_at",
    "face_normals",
    "mesh_volume",
    "nearest_vertex",
    "winding_numbers",
    "points_inside",
    "point_to_surface_distance",
    "signed_distance_few",
]
