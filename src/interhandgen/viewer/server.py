"""The live viewer: a thin ``viser`` layer over the scene functions, the lazy sample source and the generator.

``viser`` serves its web client (bundled in its wheel) and a websocket on one local port; the page works
over an SSH tunnel and needs no display on the machine that runs it. Every GUI callback only picks what to
show; what is shown comes from :func:`interhandgen.viewer.scene.build_sample_scene`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from interhandgen.data.format import TwoHandSet, concatenate
from interhandgen.exceptions import InputError
from interhandgen.viewer.compare import align, anchor_frames, canonical_joints, nearest_pairs
from interhandgen.viewer.generation import MAX_DRAW, DrawSettings
from interhandgen.viewer.scene import ObjectMesh, SampleScene, build_sample_scene, describe
from interhandgen.viewer.source import SampleSource

COMPARE_MODES = ("off", "side by side", "overlay")
#: Gap between the sample and the reference in side-by-side mode, metres along +x.
SIDE_BY_SIDE_OFFSET = 0.25
REFERENCE_OPACITY = 0.45


def _hands_only(pairs: TwoHandSet) -> TwoHandSet:
    """The hands of ``pairs`` in one convention (PCA, not flat), without labels or metadata, so that draws and
    completions of files with other conventions or labels concatenate into one "generated" set."""
    pairs = pairs.converted(pose_space="pca", flat_hand_mean=False)
    return TwoHandSet(pairs.left, pairs.right, pose_space="pca", flat_hand_mean=False, hand_model=pairs.hand_model)


def _viser():
    try:
        import viser
    except ImportError as exc:  # the optional extra is missing
        raise InputError("the viewer needs the optional dependency viser: pip install 'interhandgen[viewer]'") from exc
    return viser


class ViewerApp:
    """The interactive viewer.

    Args:
        source: the samples to browse.
        reference: an optional second file, shown beside or over the current sample as its nearest pair.
        generator: an optional :class:`interhandgen.viewer.generation.LiveGenerator`; enables the Generate panel.
        host, port: where to serve (port 0 picks a free one).
    Extension point: :meth:`add_set` adds another browsable set (e.g. fitted hands once fitting exists) to the
    "set" dropdown; each set is browsed with the same panel.
    """

    def __init__(self, source: SampleSource, reference: SampleSource | None = None, generator: Any = None,
                 host: str = "127.0.0.1", port: int = 8080) -> None:
        viser = _viser()
        self.server = viser.ViserServer(host=host, port=port, label="interhandgen", verbose=False)
        self.reference = reference
        self.generator = generator
        self.sets: dict[str, SampleSource] = {source.name: source}
        self.current = source.name
        self._handles: dict[str, Any] = {}
        self._scene_lock = threading.Lock()
        self._ref_joints = None
        self.last_scene: SampleScene | None = None
        self.generated: TwoHandSet | None = None
        self._build_gui()
        self.show(0)

    # ------------------------------------------------------------------ public
    @property
    def port(self) -> int:
        return int(self.server.get_port())

    @property
    def source(self) -> SampleSource:
        return self.sets[self.current]

    def add_set(self, source: SampleSource, select: bool = True) -> None:
        """Add (or replace) a browsable set; with ``select`` it is shown from its first sample."""
        self.sets[source.name] = source
        self._set_dropdown.options = tuple(self.sets)
        if select:
            self._select(source.name, 0)

    def show(self, index: int) -> SampleScene:
        """Draw sample ``index`` of the current set (and its reference pair), update the panel; returns the scene.

        The sample is centred on the origin (the camera's target). A reference pair is moved rigidly so that
        its left hand's canonical frame lands on the sample's (same orientation), then drawn over the sample
        ("overlay", translucent) or beside it ("side by side").
        """
        src = self.source
        index = src.check_index(index)
        view = src.get(index)
        highlight = self._highlight.value
        mode = self._compare_mode.value if self.reference is not None else "off"
        both = np.concatenate([view.left_vertices, view.right_vertices])
        centre = (both.min(0) + both.max(0)) / 2
        gap = np.array([SIDE_BY_SIDE_OFFSET, 0.0, 0.0])
        offset = -centre - (gap / 2 if mode == "side by side" else 0.0)
        scene = build_sample_scene(view.left_vertices, src.faces["left"], view.right_vertices, src.faces["right"],
                                   inside=view.inside if highlight else None, obj=view.obj, prefix="/sample",
                                   offset=offset)
        meshes = list(scene.meshes)
        text = describe(index, len(src), view.figures, view.category, view.seed, src.name)
        if mode != "off":
            ref_index, ref_mm = self._nearest_reference(src, index)
            ref = self.reference.get(ref_index)
            frame_from = tuple(a[0].numpy() for a in anchor_frames(self.reference.samples[[ref_index]]))
            frame_to = tuple(a[0].numpy() for a in anchor_frames(src.samples[[index]]))
            moved = lambda x: align(x, frame_from, frame_to)  # noqa: E731
            obj = None if ref.obj is None else ObjectMesh(moved(ref.obj.vertices), ref.obj.faces, ref.obj.name)
            ref_offset = offset + (gap if mode == "side by side" else 0.0)
            ref_scene = build_sample_scene(moved(ref.left_vertices), self.reference.faces["left"],
                                           moved(ref.right_vertices), self.reference.faces["right"],
                                           inside=ref.inside if highlight else None, obj=obj, prefix="/reference",
                                           offset=ref_offset)
            meshes += list(ref_scene.meshes)
            text += (f"\n\n**Nearest reference pair: #{ref_index}** of {len(self.reference)} "
                     f"({self.reference.name}), mean joint distance {ref_mm:.1f} mm  \n"
                     + describe(ref_index, len(self.reference), ref.figures, ref.category).split("  \n", 1)[-1])
        self._draw(meshes, opacity={m.name: REFERENCE_OPACITY for m in meshes
                                    if mode == "overlay" and m.name.startswith("/reference")})
        self._info.content = text
        for widget in (self._index, self._jump):
            if widget.value != index:
                widget.value = index
        self.last_scene = scene
        return scene

    def close(self) -> None:
        self.server.stop()

    # ------------------------------------------------------------------ scene
    def _draw(self, meshes, opacity: dict) -> None:
        with self._scene_lock:
            names = {m.name for m in meshes}
            for name in [n for n in self._handles if n not in names]:
                self._handles.pop(name).remove()
            for m in meshes:
                if m.name in self._handles:
                    self._handles.pop(m.name).remove()
                self._handles[m.name] = self.server.scene.add_mesh_simple(
                    m.name, m.vertices, m.faces, color=m.colour, opacity=opacity.get(m.name), side="double",
                    cast_shadow=False, receive_shadow=False)

    def _nearest_reference(self, src: SampleSource, index: int) -> tuple[int, float]:
        if self._ref_joints is None:
            self._ref_joints = canonical_joints(self.reference.samples)
        q = canonical_joints(src.samples[[index]])
        idx, dist = nearest_pairs(q, self._ref_joints)
        return int(idx[0]), float(dist[0])

    # ------------------------------------------------------------------ GUI
    def _build_gui(self) -> None:
        gui, scene = self.server.gui, self.server.scene
        scene.set_up_direction("+y")
        self.server.initial_camera.position = (0.1, 0.2, 0.38)  # a little from above and the right
        self.server.initial_camera.look_at = (0.0, 0.0, 0.0)
        self.server.initial_camera.up = (0.0, 1.0, 0.0)
        with gui.add_folder("Browse"):
            self._set_dropdown = gui.add_dropdown("set", tuple(self.sets), initial_value=self.current)
            n = len(self.source)
            self._index = gui.add_slider("sample", min=0, max=max(n - 1, 1), step=1, initial_value=0,
                                         disabled=n == 1)
            prev_next = gui.add_button_group("step", ("Previous", "Next"))
            self._jump = gui.add_number("jump to", initial_value=0, min=0, max=n - 1, step=1)
            self._highlight = gui.add_checkbox("highlight interpenetration", initial_value=True)
        if self.reference is not None:
            with gui.add_folder("Compare"):
                self._compare_mode = gui.add_dropdown("reference", COMPARE_MODES, initial_value="side by side")
        else:
            self._compare_mode = None
        self._info = gui.add_markdown("")
        if self.generator is not None:
            self._build_generate_gui()

        @self._index.on_update
        def _(_event) -> None:
            self._safe(lambda: self.show(int(self._index.value)))

        @prev_next.on_click
        def _(event) -> None:
            step = -1 if event.target.value == "Previous" else 1
            self._safe(lambda: self.show(int(np.clip(self._index.value + step, 0, len(self.source) - 1))))

        @self._jump.on_update
        def _(_event) -> None:
            self._safe(lambda: self.show(int(self._jump.value)))

        @self._highlight.on_update
        def _(_event) -> None:
            self._safe(lambda: self.show(int(self._index.value)))

        @self._set_dropdown.on_update
        def _(_event) -> None:
            self._safe(lambda: self._select(self._set_dropdown.value, 0))

        if self._compare_mode is not None:
            @self._compare_mode.on_update
            def _(_event) -> None:
                self._safe(lambda: self.show(int(self._index.value)))

    def _build_generate_gui(self) -> None:
        gui = self.server.gui
        d = DrawSettings.defaults()
        with gui.add_folder("Generate"):
            self._num = gui.add_slider("pairs", min=1, max=MAX_DRAW, step=1, initial_value=1)
            self._steps = gui.add_number("DDIM steps", initial_value=d.steps, min=1, max=1000, step=1)
            self._cfg = gui.add_number("CFG scale", initial_value=d.cfg_scale, min=0.0, max=10.0, step=0.05)
            self._apg = gui.add_checkbox("anti-penetration guidance", initial_value=True)
            self._seed = gui.add_number("seed", initial_value=d.seed, min=0, max=2**31 - 1, step=1)
            self._new = gui.add_button("New sample")
            self._side = gui.add_dropdown("keep hand", ("left", "right"), initial_value="left")
            self._complete = gui.add_button("New partner for the kept hand")
            self._progress = gui.add_progress_bar(0.0, visible=False, animated=True)
            self._status = gui.add_markdown("")

        @self._new.on_click
        def _(_event) -> None:
            self._run_generation(lambda s: self.generator.sample(int(self._num.value), s),
                                 f"drawing {int(self._num.value)} pair(s)")

        @self._complete.on_click
        def _(_event) -> None:
            side = self._side.value
            given = self.source.samples[[int(self._index.value)]]
            self._run_generation(lambda s: self.generator.complete(given, side, s),
                                 f"new partner for the {side} hand of {self.source.name} #{int(self._index.value)}")

    def draw_settings(self):
        return DrawSettings(steps=int(self._steps.value), cfg_scale=float(self._cfg.value),
                            apg_weight=None if self._apg.value else 0.0, seed=int(self._seed.value))

    def _run_generation(self, draw, what: str) -> None:
        buttons = (self._new, self._complete)
        for b in buttons:
            b.disabled = True
        self._progress.visible = True
        self._progress.value = 100.0
        self._status.content = f"{what} (seed {int(self._seed.value)}) ..."
        t0 = time.perf_counter()
        try:
            settings = self.draw_settings()
            pairs = _hands_only(draw(settings))
            self.generated = pairs if self.generated is None else concatenate([self.generated, pairs])
            first_new = len(self.generated) - len(pairs)
            self.add_set(SampleSource(self.generated, name="generated"), select=False)
            self._select("generated", first_new)
            self._status.content = (f"{what}: done in {time.perf_counter() - t0:.1f} s (seed {settings.seed}); "
                                    f"generated #{first_new}..{len(self.generated) - 1}")
            self._seed.value = int(self._seed.value) + 1  # the next press draws something new
        except Exception as exc:  # shown in the panel: the server must keep serving
            self._status.content = f"**error:** {exc}"
            raise
        finally:
            self._progress.visible = False
            for b in buttons:
                b.disabled = False

    def _select(self, name: str, index: int) -> None:
        if name not in self.sets:
            raise InputError(f"no set named {name!r}; have {list(self.sets)}")
        self.current = name
        if self._set_dropdown.value != name:
            self._set_dropdown.value = name
        n = len(self.source)
        self._index.max = max(n - 1, 1)
        self._index.disabled = n == 1
        self._jump.max = n - 1
        self.show(index)

    def _safe(self, action) -> None:
        try:
            action()
        except Exception as exc:  # report in the panel, keep serving; the traceback goes to the terminal
            self._info.content = f"**error:** {exc}"
            raise
