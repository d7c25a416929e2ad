"""UAT s7 N7: 3D looks the same whatever the 2D view was: after napari's Roll (a sagittal
order) the 2D/3D button gave a dark view from another side without the MTM marker; from the
axial order it is framed, lit, with the marker (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest

from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def _in_3d(viewer, qtbot, path):
    """napari's 2D/3D button; the camera and a screenshot of the canvas once settled."""
    _gui.toggle_ndisplay(viewer, qtbot)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    qtbot.wait(500)
    cam = _layers.camera(viewer)
    view = {
        "angles": np.asarray(cam.angles, float),
        "center": np.asarray(cam.center, float),
        "zoom": float(cam.zoom),
        "displayed": tuple(viewer.dims.displayed),
    }
    shot = np.asarray(viewer.screenshot(str(path), canvas_only=True, flash=False))[..., :3]
    return view, shot.astype(float)


def test_3d_after_roll_looks_as_from_the_axial_view(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1400, 900))
    _gui.margins_on_sample(viewer, qtbot, tmp_path, "renal_mri")
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    with qtbot.capture_exceptions() as errors:
        point = tuple(viewer.dims.point)
        axial, shot_axial = _in_3d(viewer, qtbot, tmp_path / "3d_from_axial.png")
        _gui.toggle_ndisplay(viewer, qtbot)
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
        cam = _layers.camera(viewer)
        # napari's Roll button: the sagittal order, the camera flipped for it
        _gui.click(qtbot, viewer.window._qt_viewer.viewerButtons.rollDimsButton)
        # on the same point as the axial view (napari's way back to 2D moved its slice)
        viewer.dims.point = point
        assert tuple(viewer.dims.order) == (2, 0, 1)
        rolled_2d = tuple(str(getattr(d, "value", d)) for d in cam.orientation2d)
        rolled, shot_rolled = _in_3d(viewer, qtbot, tmp_path / "3d_from_roll.png")
        # the same view: camera, axes, picture (lit, framed, the marker drawn)
        assert rolled["displayed"] == axial["displayed"]
        assert np.allclose(rolled["angles"], axial["angles"]), (rolled, axial)
        assert np.allclose(rolled["center"], axial["center"], atol=0.5), (rolled, axial)
        assert abs(rolled["zoom"] / axial["zoom"] - 1) < 0.02, (rolled, axial)
        assert shot_rolled.mean() > 0.9 * shot_axial.mean(), (
            shot_rolled.mean(),
            shot_axial.mean(),
        )
        assert np.abs(shot_rolled - shot_axial).mean() < 3.0
        # the MTM marker's label (white text) is drawn in both
        white = [int((s.min(axis=-1) > 240).sum()) for s in (shot_axial, shot_rolled)]
        assert white[1] > 0.8 * white[0] > 0, white
        # back in 2D: the user's sagittal view again
        _gui.toggle_ndisplay(viewer, qtbot)
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
        assert tuple(viewer.dims.order) == (2, 0, 1)
        assert tuple(str(getattr(d, "value", d)) for d in cam.orientation2d) == rolled_2d
    assert not errors, errors
