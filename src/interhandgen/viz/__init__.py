"""Headless visualisation: shaded pictures of two-hand samples (software z-buffer, no OpenGL, no display)."""

from interhandgen.viz.curves import plot_training_curve, read_training_log
from interhandgen.viz.raster import Fragments, rasterize
from interhandgen.viz.render import (
    BACKGROUND,
    LEFT_COLOUR,
    LIGHT_DIRECTION,
    RIGHT_COLOUR,
    VIEWS,
    GridLayout,
    grid_layout,
    render,
    render_meshes,
    save_png,
)

__all__ = [
    "BACKGROUND", "LEFT_COLOUR", "LIGHT_DIRECTION", "RIGHT_COLOUR", "VIEWS", "Fragments", "GridLayout",
    "grid_layout", "plot_training_curve", "rasterize", "read_training_log", "render", "render_meshes", "save_png",
]
