"""The live viewer's server layer without a browser: what it puts in the scene for each compare mode, completion."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("viser")

from interhandgen.viewer import SampleSource  # noqa: E402
from interhandgen.viewer.server import SIDE_BY_SIDE_OFFSET, ViewerApp  # noqa: E402


@pytest.fixture()
def app(crafted_pairs):
    samples = SampleSource(crafted_pairs([[0.12, 0.0, 0.0], [0.30, 0.0, 0.0]]), name="samples")
    reference = SampleSource(crafted_pairs([[0.29, 0.0, 0.0], [0.13, 0.0, 0.0], [0.5, 0.0, 0.0]]), name="reference")
    from interhandgen.viewer.generation import LiveGenerator

    viewer = ViewerApp(samples, reference=reference, generator=LiveGenerator(), port=0)
    yield viewer
    viewer.close()


def _centre(vertices: np.ndarray) -> np.ndarray:
    return (vertices.min(0) + vertices.max(0)) / 2


def test_compare_modes_place_the_nearest_reference_pair(app):
    # Default mode: side by side. Sample 0 (right hand 12 cm along x) is nearest to reference #1 (13 cm).
    app.show(0)
    names = set(app._handles)
    assert {"/sample/left", "/sample/right", "/sample/left_inside", "/sample/right_inside",
            "/reference/left", "/reference/right", "/reference/left_inside", "/reference/right_inside"} == names
    assert "Nearest reference pair: #1" in app._info.content
    sample_left = app.last_scene.mesh("/sample/left").vertices
    ref_left = app._handles["/reference/left"].vertices
    # Same left hand (rest pose at the origin in both files): the reference copy sits SIDE_BY_SIDE_OFFSET along +x.
    np.testing.assert_allclose(ref_left - sample_left, np.broadcast_to([SIDE_BY_SIDE_OFFSET, 0, 0], ref_left.shape),
                               atol=1e-6)
    both = np.concatenate([app.last_scene.mesh("/sample/left").vertices, app.last_scene.mesh("/sample/right").vertices])
    np.testing.assert_allclose(_centre(both), [-SIDE_BY_SIDE_OFFSET / 2, 0, 0], atol=1e-6)

    app._compare_mode.value = "overlay"  # the callback redraws
    app.show(1)  # sample 1 (30 cm) -> reference #0 (29 cm)
    assert "Nearest reference pair: #0" in app._info.content
    np.testing.assert_allclose(app._handles["/reference/left"].vertices, app.last_scene.mesh("/sample/left").vertices,
                               atol=1e-6)
    assert app._handles["/reference/left"].opacity == pytest.approx(0.45)
    assert "/sample/left_inside" not in app._handles  # the separated pair has nothing to highlight

    app._compare_mode.value = "off"
    app.show(1)
    assert set(app._handles) == {"/sample/left", "/sample/right"}
    both = np.concatenate([app.last_scene.mesh("/sample/left").vertices, app.last_scene.mesh("/sample/right").vertices])
    np.testing.assert_allclose(_centre(both), 0.0, atol=1e-6)


def test_new_partner_keeps_the_chosen_hand(app):
    app._compare_mode.value = "off"
    app.show(1)
    app._side.value = "right"
    app._seed.value = 5
    given = app.source.samples[[1]]
    app._run_generation(lambda s: app.generator.complete(given, "right", s), "test")
    assert app.current == "generated" and len(app.source) == 1
    done = app.source.samples
    for field in ("pose", "betas", "global_orient", "transl"):
        np.testing.assert_array_equal(getattr(done.right, field), getattr(given.right, field))
    assert not np.allclose(done.left.transl, given.left.transl)
    assert app._seed.value == 6 and "done in" in app._status.content
    # A draw after the completion joins the same "generated" set (the given file's labels are not carried over).
    app._run_generation(lambda s: app.generator.sample(2, s), "test")
    assert app.current == "generated" and len(app.source) == 3 and int(app._index.value) == 1
