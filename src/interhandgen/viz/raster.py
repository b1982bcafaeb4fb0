"""A batched software z-buffer rasteriser in torch (CPU or CUDA, no OpenGL, no display).

Screen convention: pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)`` and is sampled at its centre
``(col + 0.5, row + 0.5)``; ``x`` grows to the right (columns), ``y`` grows downwards (rows). Depth is the
distance from the camera: smaller is nearer, and the nearest triangle covering a pixel centre wins.

The rasteriser is vectorised over (triangle, pixel) candidates: every triangle proposes the pixels of its
bounding box, candidates are tested with barycentric coordinates, and the winners are found with one integer
``scatter_reduce(amin)`` per chunk on a key that packs the quantised depth above the triangle id. Equal depths
are therefore broken by the smaller triangle id, so the result does not depend on the order in which candidates
are processed (same input -> same pixels, on any device).
"""

from __future__ import annotations

import dataclasses

import torch
from interhandgen.exceptions import InputError

_ID_BITS = 25  # triangle ids below 2**25 (33.5 M triangles)
_DEPTH_LEVELS = 2**37  # depth quantisation levels (key stays below 2**62)
# Candidates whose barycentric coordinates dip below zero by less than this are kept, so that pixel centres
# on an edge shared by two triangles never fall through the crack between them (float32 rounding).
_EDGE_TOLERANCE = 1e-5


@dataclasses.dataclass
class Fragments:
    """Result of :func:`rasterize`: the covered pixels only (an image is mostly background).

    pixels: [M] int64 flat indices ``row * width + col`` of the covered pixels, increasing.
    face_index: [M] int64 the winning (nearest) triangle of each covered pixel.
    bary: [M, 3] float32 barycentric coordinates of the pixel centre in that triangle.
    depth: [M] float32 interpolated depth.
    height, width: image size.
    """

    pixels: torch.Tensor
    face_index: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    height: int
    width: int

    def face_index_image(self) -> torch.Tensor:
        """[H, W] int64 winning triangle per pixel, -1 where no triangle covers the pixel centre."""
        img = torch.full((self.height * self.width,), -1, dtype=torch.int64, device=self.pixels.device)
        img[self.pixels] = self.face_index
        return img.view(self.height, self.width)

    def depth_image(self) -> torch.Tensor:
        """[H, W] float32 depth per pixel, +inf where empty."""
        img = torch.full((self.height * self.width,), float("inf"), dtype=torch.float32, device=self.pixels.device)
        img[self.pixels] = self.depth
        return img.view(self.height, self.width)


def rasterize(
    screen_verts: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    cull_back_faces: bool = False,
    max_candidates: int = 2**21,
) -> Fragments:
    """Rasterise triangles given in screen space with a z-buffer.

    Args:
        screen_verts: [P, 3] float (x in pixels to the right, y in pixels downwards, depth: smaller is nearer).
        faces: [F, 3] integer vertex indices into ``screen_verts``.
        height, width: image size in pixels.
        cull_back_faces: drop triangles whose corners appear clockwise in the image, i.e. back faces of a mesh
            whose faces are counter-clockwise seen from outside. Lossless for closed meshes and about twice as
            fast; open meshes (e.g. MANO's wrist hole) then show the background through the hole.
        max_candidates: (triangle, pixel) pairs processed at once; bounds the memory (about 100 bytes each).

    Returns:
        :class:`Fragments`.
    """
    if not isinstance(screen_verts, torch.Tensor) or screen_verts.dim() != 2 or screen_verts.shape[1] != 3:
        raise InputError(f"screen_verts must be a [P, 3] tensor, got {_shape(screen_verts)}")
    if not screen_verts.is_floating_point():
        raise TypeError(f"screen_verts must be floating point, got {screen_verts.dtype}")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[1] != 3:
        raise InputError(f"faces must be a [F, 3] tensor, got {_shape(faces)}")
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise TypeError(f"faces must hold integers, got {faces.dtype}")
    if int(height) < 1 or int(width) < 1:
        raise InputError(f"height and width must be >= 1, got {height} x {width}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= screen_verts.shape[0]):
        raise InputError(f"faces index vertices outside [0, {screen_verts.shape[0]})")
    if not torch.isfinite(screen_verts).all():
        raise InputError("screen_verts contains NaN or inf")
    if faces.shape[0] >= 2**_ID_BITS:
        raise InputError(f"at most {2**_ID_BITS - 1} triangles can be rasterised at once, got {faces.shape[0]}")
    H, W = int(height), int(width)
    device = screen_verts.device
    verts = screen_verts.to(torch.float32)
    faces = faces.to(device=device, dtype=torch.long)
    empty_key = torch.iinfo(torch.int64).max
    zbuf = torch.full((H * W,), empty_key, dtype=torch.int64, device=device)

    tri = verts[faces]  # [F, 3 corners, 3]
    x0, y0 = tri[:, 0, 0], tri[:, 0, 1]
    e1 = tri[:, 1, :2] - tri[:, 0, :2]
    e2 = tri[:, 2, :2] - tri[:, 0, :2]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # > 0: clockwise as seen in the image (y points down)
    keep = area2.abs() > 1e-12
    if cull_back_faces:
        keep &= area2 < 0
    # Barycentric coordinates (b1, b2) of a point p = p0 + u, from u = (dx, dy) relative to corner 0:
    # [e1 e2] [b1 b2]^T = u  ->  b1 = ( e2y dx - e2x dy) / area2,  b2 = (-e1y dx + e1x dy) / area2.
    inv = torch.where(keep, 1.0 / torch.where(keep, area2, torch.ones_like(area2)), torch.zeros_like(area2))
    coef = torch.stack([e2[:, 1] * inv, -e2[:, 0] * inv, -e1[:, 1] * inv, e1[:, 0] * inv], dim=1)  # [F, 4]
    z = tri[:, :, 2]

    # Pixel index ranges of each bounding box: centres c + 0.5 inside [min, max].
    lo_x = torch.ceil(tri[:, :, 0].amin(1) - 0.5).clamp(min=0)
    hi_x = torch.floor(tri[:, :, 0].amax(1) - 0.5).clamp(max=W - 1)
    lo_y = torch.ceil(tri[:, :, 1].amin(1) - 0.5).clamp(min=0)
    hi_y = torch.floor(tri[:, :, 1].amax(1) - 0.5).clamp(max=H - 1)
    box_w = (hi_x - lo_x + 1).clamp(min=0).to(torch.long)
    box_h = (hi_y - lo_y + 1).clamp(min=0).to(torch.long)
    counts = torch.where(keep, box_w * box_h, torch.zeros_like(box_w))
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if ends.numel() else 0
    lo_x, lo_y = lo_x.to(torch.long), lo_y.to(torch.long)

    if total:
        z_valid = z[keep]
        z_min, z_max = float(z_valid.min()), float(z_valid.max())
        z_scale = (_DEPTH_LEVELS - 1) / max(z_max - z_min, 1e-30)
        # One gather per candidate from packed per-triangle tables is much cheaper than one per array.
        float_table = torch.cat([tri[:, 0, :2], coef, z], dim=1)  # [F, 9]: x0, y0, 4 coefficients, 3 depths
        int_table = torch.stack([lo_x, lo_y, box_w, ends - counts], dim=1)  # [F, 4]
    for start in range(0, total, int(max_candidates)):
        cand = torch.arange(start, min(start + int(max_candidates), total), device=device)
        f = torch.searchsorted(ends, cand, right=True)
        ti = int_table[f]
        local = cand - ti[:, 3]
        col = ti[:, 0] + local % ti[:, 2]
        row = ti[:, 1] + local // ti[:, 2]
        tf = float_table[f]
        dx = col.to(torch.float32) + (0.5 - tf[:, 0])
        dy = row.to(torch.float32) + (0.5 - tf[:, 1])
        b1 = tf[:, 2] * dx + tf[:, 3] * dy
        b2 = tf[:, 4] * dx + tf[:, 5] * dy
        b0 = 1.0 - b1 - b2
        inside = (b0 >= -_EDGE_TOLERANCE) & (b1 >= -_EDGE_TOLERANCE) & (b2 >= -_EDGE_TOLERANCE)
        inside = torch.nonzero(inside).squeeze(1)
        zf = tf[inside, 6:9]
        depth = b0[inside] * zf[:, 0] + b1[inside] * zf[:, 1] + b2[inside] * zf[:, 2]
        depth_q = ((depth - z_min) * z_scale).round_().clamp_(0, _DEPTH_LEVELS - 1).to(torch.int64)
        key = (depth_q << _ID_BITS) | f[inside]
        zbuf.scatter_reduce_(0, row[inside] * W + col[inside], key, reduce="amin")

    pix = torch.nonzero(zbuf != empty_key).squeeze(1)
    key = zbuf[pix]
    f = key & (2**_ID_BITS - 1)
    dx = (pix % W).to(torch.float32) + 0.5 - x0[f]
    dy = (pix // W).to(torch.float32) + 0.5 - y0[f]
    c = coef[f]
    b1 = c[:, 0] * dx + c[:, 1] * dy
    b2 = c[:, 2] * dx + c[:, 3] * dy
    bary = torch.stack([1.0 - b1 - b2, b1, b2], dim=1)
    depth = (bary * z[f]).sum(1)
    return Fragments(pix, f, bary, depth, H, W)


def _shape(x) -> str:
    return str(list(x.shape)) if hasattr(x, "shape") else type(x).__name__
