"""3D after margins frames the tumor and the ablation zone (UAT s5, point 5): the tumor
surface was 30-50 px in an 814 px canvas. Framed on the switch only; the user's own zoom
afterwards stays through a recompute.

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat5_3d_frame.py``.
"""

from __future__ import annotations

import _gui
import numpy as np

from napari_ablation.core import geometry, samples
from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import MarginWidget
from napari_ablation.widgets.session import CaseSession


def _margin_colours_box(shot) -> tuple[int, int]:
    """Height and width (px) of the box of the margin-coloured (green / yellow / red) pixels."""
    px = np.asarray(shot)[..., :3].astype(int)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    mask = ((g > r + 30) & (g > b + 30)) | ((r > 150) & (g > 120) & (b < g - 60))
    mask |= (r > g + 60) & (r > b + 60)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0, 0
    return int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1


def _liver_with_margins_dock(make_napari_viewer, tmp_path, monkeypatch):
    """A shown viewer with the Margins widget docked and the liver sample open, registered."""
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    w = MarginWidget(viewer)
    viewer.window.add_dock_widget(w, name="Margins")
    session = CaseSession.of(viewer)
    _gui.fast_timers(session)
    session.set_case(samples.load_sample("liver_ct"), tmp_path / "case")
    assert w.load_transform_file(str(samples.sample_dir() / "liver_ct" / "true_transform.tfm"))
    return viewer, session, w


def test_switch_to_3d_frames_the_tumor_and_keeps_the_users_zoom(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer, session, w = _liver_with_margins_dock(make_napari_viewer, tmp_path, monkeypatch)
    _gui.click(qtbot, w.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=180000)
    _layers.grid(viewer).enabled = False
    _gui.toggle_ndisplay(viewer, qtbot)  # napari's own 2D/3D button
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
    qtbot.wait(300)
    shot = viewer.screenshot(str(tmp_path / "3d.png"), canvas_only=True, flash=False)
    h, wd = _margin_colours_box(shot)
    canvas = min(np.asarray(shot).shape[:2])
    # the tumor surface is a sizeable part of the canvas, not a speck (was 30-50 of 814 px)
    assert max(h, wd) > 0.2 * canvas, (h, wd, canvas)
    cam = _layers.camera(viewer)
    centre = np.asarray(cam.center)
    res = session.model.result
    tumor_world = np.asarray(geometry.lps_to_world(res.tumor_centroid_lps), float)
    assert np.linalg.norm(centre - tumor_world) < 40.0
    # the user zooms out, then a recompute (threshold): the camera stays the user's
    cam.zoom = cam.zoom * 0.5
    user = (tuple(cam.center), cam.zoom, tuple(cam.angles))
    w.threshold.setValue(3.0)
    qtbot.waitUntil(
        lambda: _gui.idle(session, w) and session.model.result.threshold_mm == 3.0,
        timeout=180000,
    )
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
    assert (tuple(cam.center), cam.zoom, tuple(cam.angles)) == user
    assert viewer.dims.ndisplay == 3


def test_margins_computed_in_3d_frame_the_tumor(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """UAT s12 N4: Compute margins while napari is already in 3D made the surfaces but left
    the camera on the whole scene (the tumor surface about 40 px wide): the first surfaces
    are framed as on a switch to 3D."""
    viewer, session, w = _liver_with_margins_dock(make_napari_viewer, tmp_path, monkeypatch)
    qtbot.waitUntil(lambda: session.model.labels("ablation") is not None, timeout=60000)
    _layers.grid(viewer).enabled = False
    _gui.toggle_ndisplay(viewer, qtbot)  # in 3D before any margin
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
    _gui.click(qtbot, w.run_btn)
    qtbot.waitUntil(
        lambda: (
            _gui.idle(session, w) and _layers.find_layer(viewer, "ablation_surface") is not None
        ),
        timeout=180000,
    )
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
    qtbot.wait(300)
    assert viewer.dims.ndisplay == 3
    shot = viewer.screenshot(str(tmp_path / "3d.png"), canvas_only=True, flash=False)
    h, wd = _margin_colours_box(shot)
    assert max(h, wd) > 0.2 * min(np.asarray(shot).shape[:2]), (h, wd)
    res = session.model.result
    tumor_world = np.asarray(geometry.lps_to_world(res.tumor_centroid_lps), float)
    assert np.linalg.norm(np.asarray(_layers.camera(viewer).center) - tumor_world) < 40.0
