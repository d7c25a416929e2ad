"""UAT s13 N5: the analysis' own layers ("margin" and "ablation outline (pre space)") could be
painted on: a user who selected the margin layer and dragged the brush turned voxels green
while Margins still said "up to date". They are read-only now, and stay so when a recompute
replaces their data (napari makes a Labels layer editable again then) and across a 2D/3D
switch (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui

OUTPUTS = ("margin", "ablation_registered")


def _try_to_paint(viewer, qtbot, layer) -> None:
    """The user selects ``layer`` in the layer list, presses its paint button (the eraser's
    too), picks a class and drags the brush across the tumor's middle slice."""
    viewer.layers.selection.active = layer
    controls = viewer.window._qt_viewer.controls.widgets[layer]
    layer.selected_label = 3  # red ("not covered"): differs from most classes drawn
    layer.brush_size = 10
    zs, ys, xs = np.nonzero(np.asarray(layer.data))
    centre = np.asarray(layer.translate) + np.asarray(layer.scale) * (
        int(np.median(zs)),
        np.median(ys),
        np.median(xs),
    )
    viewer.dims.point = (centre[0], *viewer.dims.point[1:])
    for button in (controls.paint_button, controls.erase_button):
        assert not button.isEnabled(), layer.name
        _gui.click(qtbot, button)
        assert layer.mode == "pan_zoom", layer.name
        _gui.stroke_through(viewer, qtbot, centre, half_mm=8)
    qtbot.wait(100)


def _check_read_only(viewer, qtbot, session, w, when: str) -> None:
    qtbot.waitUntil(lambda: _gui.idle(session, w) and not _layers.steps_pending(), timeout=90_000)
    for role in OUTPUTS:
        layer = _layers.find_layer(viewer, role)
        assert layer is not None and not layer.editable, (role, when)
        before = np.array(layer.data, copy=True)
        _try_to_paint(viewer, qtbot, layer)
        assert np.array_equal(np.asarray(layer.data), before), (role, when)
    assert "up to date" in w.status.text()
    assert _gui.stale_readout(viewer, session, w) is None


def test_the_analysis_layers_cannot_be_painted_on(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
    _gui.fast_timers(session)
    _gui.grid_off(viewer, qtbot)
    _check_read_only(viewer, qtbot, session, w, "computed")

    # a recompute replaces their data: the threshold stepped down with the keyboard (the
    # classes change), then a tumor stroke (the tumor's box, so both layers' boxes, change)
    margin = _layers.find_layer(viewer, "margin")
    classes = np.array(margin.data, copy=True)
    w.threshold.setFocus()
    for _ in range(4):
        QTest.keyClick(w.threshold, Qt.Key_Down)
    assert w.threshold.value() == pytest.approx(3.0)
    qtbot.waitUntil(lambda: not np.array_equal(np.asarray(margin.data), classes), timeout=30_000)
    _check_read_only(viewer, qtbot, session, w, "threshold changed")
    outline = _layers.find_layer(viewer, "ablation_registered")
    shapes = margin.data.shape, outline.data.shape
    _gui.paint_beside_tumor(viewer, qtbot, session.labels_layer("tumor"))
    qtbot.waitUntil(lambda: (margin.data.shape, outline.data.shape) != shapes, timeout=90_000)
    _check_read_only(viewer, qtbot, session, w, "tumor changed")

    # 2D -> 3D -> 2D (napari's button)
    _gui.toggle_ndisplay(viewer, qtbot)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=30_000)
    assert all(not _layers.find_layer(viewer, r).editable for r in OUTPUTS)
    _gui.toggle_ndisplay(viewer, qtbot)
    assert viewer.dims.ndisplay == 2
    _check_read_only(viewer, qtbot, session, w, "back from 3D")

    # the case's own labels stay editable
    assert session.labels_layer("tumor").editable and session.labels_layer("ablation").editable
