"""Lazy access to the samples of a TwoHandSet for the viewer: meshes, masks and figures of one sample at a time.

A 10,000-sample file opens instantly: nothing is posed up front; the sample shown is posed, tested and
measured on demand, and the last few results are kept (LRU).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Callable

import numpy as np
import torch

from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.objects.metrics import object_world_vertices, require_objects
from interhandgen.viewer.scene import ObjectMesh, SampleFigures, interpenetration_masks, sample_figures

#: Samples whose meshes and figures are kept in memory.
CACHE_SIZE = 8


@dataclasses.dataclass(frozen=True)
class SampleView:
    """One sample, posed and measured: vertices [V, 3] / [W, 3] metres, inside masks, figures and labels."""

    index: int
    left_vertices: np.ndarray
    right_vertices: np.ndarray
    inside: tuple[np.ndarray, np.ndarray]
    figures: SampleFigures
    category: str | None
    seed: int | None
    obj: ObjectMesh | None


class SampleSource:
    """Samples of a :class:`TwoHandSet`, posed lazily.

    Args:
        samples: the set.
        name: shown in the panel (e.g. the file name).
        object_meshes: optional ``index -> ObjectMesh | None`` giving the object of a sample (world frame);
            None: the set's own objects when it carries an object library (``data synth --objects``,
            ``sample --object``, ARCTIC conversions), else no object.
        cache_size: how many posed samples to keep.
    """

    def __init__(self, samples: TwoHandSet, name: str = "samples",
                 object_meshes: Callable[[int], ObjectMesh | None] | None = None,
                 cache_size: int = CACHE_SIZE) -> None:
        if len(samples) == 0:
            raise InputError(f"{name}: the file holds no samples")
        self.samples = samples
        self.name = name
        if object_meshes is None and samples.object_library is not None:
            require_objects(samples, name)  # checked once, up front: a bad pose field fails at open, not on browse
            object_meshes = self._library_object
        self.object_meshes = object_meshes
        self.models = samples.hand_models()
        self.faces = {side: self.models[side].faces_np.astype(np.int64) for side in ("left", "right")}
        self._cache: collections.OrderedDict[int, SampleView] = collections.OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()
        seed = samples.metadata.get("seed") if isinstance(samples.metadata, dict) else None
        self._seed = int(seed) if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else None

    def __len__(self) -> int:
        return len(self.samples)

    def _library_object(self, index: int) -> ObjectMesh:
        """Sample ``index``'s object from the set's library, placed by its ``object_pose`` (world frame)."""
        k = int(self.samples.object_id[index])
        library = self.samples.object_library
        vertices = object_world_vertices(library.vertices[k], self.samples.object_pose[index:index + 1])[0]
        return ObjectMesh(vertices, np.asarray(library.faces[k], dtype=np.int64), name=str(library.names[k]))

    def check_index(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index < len(self):
            raise InputError(f"{self.name}: sample index must be an integer in [0, {len(self) - 1}], got {index!r}")
        return int(index)

    def category(self, index: int) -> str | None:
        cats, names = self.samples.category, self.samples.category_names
        return None if cats is None else str(names[int(cats[index])])

    def get(self, index: int) -> SampleView:
        """The posed, measured sample ``index`` (cached)."""
        index = self.check_index(index)
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        view = self.compute([index])[0]
        with self._lock:
            self._cache[index] = view
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return view

    def cached(self) -> list[int]:
        with self._lock:
            return list(self._cache)

    def compute(self, indices) -> list[SampleView]:
        """Pose and measure the given samples in one batch (not cached; for exports)."""
        indices = [self.check_index(i) for i in indices]
        part = self.samples[np.asarray(indices, dtype=np.int64)]
        with torch.no_grad():
            verts = part.vertices(self.models, dtype=torch.float64)
        lv, rv = verts["left"], verts["right"]
        masks = interpenetration_masks(lv, self.faces["left"], rv, self.faces["right"])
        figures = sample_figures(lv, self.faces["left"], rv, self.faces["right"], *masks)
        out = []
        for b, index in enumerate(indices):
            obj = self.object_meshes(index) if self.object_meshes is not None else None
            out.append(SampleView(index, lv[b].numpy(), rv[b].numpy(), (masks[0][b], masks[1][b]), figures[b],
                                  self.category(index), self._seed, obj))
        return out
