"""Interactive 3D viewer of two-hand samples in the browser (``interhandgen view``) and standalone HTML export.

- :mod:`interhandgen.viewer.scene`: what is drawn for a sample (pure functions, testable without a browser).
- :mod:`interhandgen.viewer.source`: lazy, cached posing and measuring of one sample at a time.
- :mod:`interhandgen.viewer.compare`: nearest reference pair (canonical joints).
- :mod:`interhandgen.viewer.export`: a standalone page (own small WebGL renderer, meshes inlined).
- :mod:`interhandgen.viewer.server`: the live viewer on ``viser`` (optional extra ``interhandgen[viewer]``).
- :mod:`interhandgen.viewer.generation`: live generation with the bundled or a given model.

The server and generation modules are not imported here, so the scene functions and the export work without
``viser`` installed.
"""

from interhandgen.viewer.scene import (
    HIGHLIGHT_COLOUR,
    OBJECT_COLOUR,
    MeshSpec,
    ObjectMesh,
    SampleFigures,
    SampleScene,
    build_sample_scene,
    interpenetration_masks,
    sample_figures,
    split_faces,
)
from interhandgen.viewer.source import SampleSource, SampleView

__all__ = [
    "HIGHLIGHT_COLOUR", "OBJECT_COLOUR", "MeshSpec", "ObjectMesh", "SampleFigures", "SampleScene", "SampleSource",
    "SampleView", "build_sample_scene", "interpenetration_masks", "sample_figures", "split_faces",
]
