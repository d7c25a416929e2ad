"""UAT s8 N10d: side by side (pre | post), the orientation letter "L" was drawn over the
right edge of the post image (a_01_loaded.png, d_demo_1280x800.png): the letters stand at
the edges of the canvas, and the images filled their grid cells up to those edges. Now a
fitted view (the case opened, the Home button, the grid switched, the window resized)
leaves each view's edges free for the letters: no letter pixel lies on an image, side by
side or in one view (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget

from napari_ablation.widgets import _layers, orientation

pytestmark = pytest.mark.gui


def image_boxes(viewer) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every visible layer's screen box on the canvas (name, (x0, y0), (x1, y1)), in the grid
    cell that draws it (the whole canvas with the grid off)."""
    vc = viewer.window._qt_viewer.canvas
    grid = _layers.grid(viewer)
    if grid.enabled:
        cells = [(vc.grid[rc], idx) for rc, idx in grid.iter_viewboxes(viewer.layers)]
    else:
        cells = [(vc.view, range(len(viewer.layers)))]
    shown = list(viewer.dims.displayed)
    boxes = []
    for view, indices in cells:
        to_canvas = view.scene.node_transform(vc._scene_canvas.scene)
        for i in indices:
            layer = viewer.layers[i]
            if not layer.visible:
                continue
            ext = np.asarray(layer._extent_world_augmented)[:, shown]
            a, b = (np.asarray(to_canvas.map(list(p[::-1])))[:2] for p in ext)
            boxes.append((layer.name, np.minimum(a, b), np.maximum(a, b)))
    return boxes


def letters_on_images(viewer, path) -> list[str]:
    """The images that letter pixels (the letters' yellow) lie on, in a canvas screenshot."""
    shot = viewer.screenshot(str(path), canvas_only=True)
    yellow = (shot[..., 0] > 200) & (shot[..., 1] > 200) & (shot[..., 2] < 160)
    ys, xs = np.nonzero(yellow)
    assert len(xs) > 40, "no letters drawn"
    hit = []
    for name, lo, hi in image_boxes(viewer):
        inside = (xs >= lo[0]) & (xs <= hi[0]) & (ys >= lo[1]) & (ys <= hi[1])
        if inside.any():
            hit.append(f"{name}: {int(inside.sum())} letter pixels on its box {lo} - {hi}")
    return hit


def test_letters_stand_beside_the_images_not_on_them(qtbot, tmp_path, monkeypatch, mock_app_model):
    # (mock_app_model: as in test_gui_uat8_window_combo, the demo's viewer registers the
    # plugin's commands into a fresh app model)
    from napari_ablation.widgets import _dock

    with _gui.demo_opened(qtbot, tmp_path, monkeypatch) as (viewer, load):
        win = viewer.window._qt_window
        guide = orientation.install(viewer)
        assert _layers.grid(viewer).enabled  # pre | post side by side
        viewer.screenshot(str(tmp_path / "opened.png"), canvas_only=True)
        assert not letters_on_images(viewer, tmp_path / "opened.png")

        # the window made smaller (the 1280 x 800 laptop of d_demo_1280x800.png): the view,
        # not zoomed since it was fitted, is fitted again with room for the letters
        dock = next(d for d in win.findChildren(QDockWidget) if d.isAncestorOf(load))
        win.resize(1280, 800)
        win.resizeDocks([dock], [_dock.DOCK_WIDTH], Qt.Orientation.Horizontal)
        qtbot.waitUntil(lambda: dock.width() <= _dock.DOCK_WIDTH + 10, timeout=10_000)
        qtbot.wait(300)
        assert not letters_on_images(viewer, tmp_path / "laptop.png")
        viewer.window.screenshot(str(tmp_path / "laptop_window.png"), canvas_only=False)

        # the Home button fits the view: the same room
        _gui.click(qtbot, viewer.window._qt_viewer.viewerButtons.resetViewButton)
        qtbot.wait(200)
        assert not letters_on_images(viewer, tmp_path / "home.png")

        # one view (the grid off): the letters at the canvas edges, beside the images
        _gui.grid_off(viewer, qtbot)
        qtbot.wait(300)
        assert guide.letters() == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
        assert not letters_on_images(viewer, tmp_path / "one_view.png")

        # a zoom the user chooses stays theirs
        cam = _layers.camera(viewer)
        cam.zoom *= 2.0
        zoomed = cam.zoom
        win.resize(1250, 780)
        qtbot.wait(300)
        assert cam.zoom == zoomed
