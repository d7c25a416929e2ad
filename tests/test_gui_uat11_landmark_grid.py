"""UAT s11 N7: choosing a landmark layer in the grid view hid the other image, and its cell
was left black: the pairs could not be found side by side. In the grid each image stays in
its cell (labels and margins hidden as before); in the single view the image of the chosen
side only, as before (tests/test_register_widget.py, tests/test_gui_uat5_landmarks.py).

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat11_landmark_grid.py``.
"""

from __future__ import annotations

import _gui
import numpy as np
from test_gui_uat5_landmarks import phantom, viewer_widgets  # noqa: F401 (fixtures)

from napari_ablation.widgets import _layers

LANDMARKS = {"landmarks_pre", "landmarks_post"}


def _cells(viewer, path):
    """Mean brightness of the left and right halves of the canvas."""
    shot = viewer.screenshot(str(path), canvas_only=True, flash=False)[..., :3].astype(float)
    half = shot.shape[1] // 2
    return shot[:, :half].mean(), shot[:, half:].mean()


def test_landmark_view_in_the_grid_shows_both_images(viewer_widgets, qtbot, tmp_path):  # noqa: F811
    v, _session, reg, _marg = viewer_widgets
    if not _layers.grid(v).enabled:
        _gui.click(qtbot, v.window._qt_viewer.viewerButtons.gridViewButton)
    assert _layers.grid(v).enabled
    before = {ly.name: ly.visible for ly in v.layers}
    _gui.click(qtbot, reg.landmarks.add_btn)
    qtbot.waitUntil(lambda: _layers.find_layer(v, "landmarks_post") is not None, timeout=20000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=20000)
    for role in ("landmarks_pre", "landmarks_post"):
        v.layers.selection.active = _layers.find_layer(v, role)  # the user picks it
        qtbot.wait(200)
        shown = {_layers.role_of(ly) for ly in v.layers if ly.visible}
        assert shown == {"pre", "post", *LANDMARKS}, (role, shown)
        left, right = _cells(v, tmp_path / f"{role}.png")
        assert left > 5 and right > 5, (role, left, right)  # no black cell
    # another layer chosen: every layer as it was
    v.layers.selection.active = _layers.find_layer(v, "tumor")
    qtbot.wait(100)
    assert {n: v.layers[n].visible for n in before} == before
    # the single view: the chosen side's image only (the other would lie over it)
    _gui.grid_off(v, qtbot)
    v.layers.selection.active = _layers.find_layer(v, "landmarks_post")
    qtbot.wait(100)
    shown = {_layers.role_of(ly) for ly in v.layers if ly.visible}
    assert shown == {"post", *LANDMARKS}, shown
    assert np.isfinite(_cells(v, tmp_path / "single.png")).all()
