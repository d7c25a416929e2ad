"""One layer-order rule, in a real viewer (run under xvfb-run): the QA view the user chose
is drawn over what it compares, raw post-space layers never cover pre-space layers, with
the grid on or off, and the linked crosshair keeps the slice stepping."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest
from test_registration import TRUE, TUMOR_C, make_phantom

from napari_ablation.widgets import _layers


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(TRUE)


@pytest.fixture
def widget(make_napari_viewer, phantom, tmp_path, monkeypatch):
    w = _gui.register_on_phantom(
        make_napari_viewer, phantom, tmp_path, monkeypatch, size=(1400, 900)
    )
    w.set_transform(TRUE, "file")
    return w


def _idx(viewer, role):
    return viewer.layers.index(_layers.find_layer(viewer, role))


def _cell(viewer, role):
    layers = list(viewer.layers)
    return _layers.grid(viewer).position(_idx(viewer, role), layers)


def _click(qtbot, button):
    QTest.mouseClick(button, Qt.LeftButton)
    qtbot.wait(50)


def test_post_space_never_covers_pre_and_qa_views_sit_over_what_they_compare(
    widget, qtbot, tmp_path
):
    w, v = widget, widget.viewer
    qtbot.waitUntil(lambda: w.registered_layer() is not None and not w.busy, timeout=30000)
    g = _layers.grid(v)
    assert g.enabled  # the case opened side by side: pre | post
    assert _cell(v, "pre") == _cell(v, "tumor") == _cell(v, "post_registered")
    assert _cell(v, "post") == _cell(v, "ablation") != _cell(v, "pre")
    tumor = _layers.find_layer(v, "tumor")
    v.layers.selection.active = tumor
    # QA contours "ablation zone outline on pre": the outline with pre and the tumor, the raw
    # ablation fill in the post cell (it covered the tumor)
    w.tabs.setCurrentWidget(w.qa)
    w.qa.contours.setCurrentIndex(3)
    qtbot.wait(300)
    assert _cell(v, "ablation_registered") == _cell(v, "pre") != _cell(v, "ablation")
    v.screenshot(str(tmp_path / "outline_grid.png"))
    w.qa.contours.setCurrentIndex(0)
    # napari's grid button off: pre space over post space
    _click(qtbot, v.window._qt_viewer.viewerButtons.gridViewButton)
    assert not g.enabled
    for post_role in ("post", "ablation"):
        for pre_role in ("pre", "tumor", "post_registered"):
            assert _idx(v, post_role) < _idx(v, pre_role), (post_role, pre_role)
    # the difference view: over pre, registered post and raw post, under the tumor drawing
    reg_layer = w.registered_layer()
    assert reg_layer.visible
    w.qa.diff.setChecked(True)
    qtbot.wait(300)
    assert not reg_layer.visible  # the difference is read over pre, not under a magenta tint
    d = _idx(v, "qa difference")
    assert d > max(_idx(v, "pre"), _idx(v, "post_registered"), _idx(v, "post"))
    assert d < _idx(v, "tumor")
    v.screenshot(str(tmp_path / "diff_gridoff.png"))
    assert v.layers.selection.active is tumor  # none of this took the user's layer
    # landmarks for post join post space (under pre)
    w.landmarks._layer("landmarks_post", create=True)
    w.landmarks._layer("landmarks_pre", create=True)
    assert _idx(v, "landmarks_post") < _idx(v, "pre")
    _click(qtbot, v.window._qt_viewer.viewerButtons.gridViewButton)
    assert _cell(v, "landmarks_post") == _cell(v, "post") != _cell(v, "landmarks_pre")
    assert _cell(v, "qa difference") == _cell(v, "pre")
    w.qa.diff.setChecked(False)
    assert reg_layer.visible and "qa difference" not in v.layers


def test_crosshair_keeps_the_slice_stepping_and_its_text_inside(widget, qtbot, tmp_path):
    w, v = widget, widget.viewer
    qtbot.waitUntil(lambda: w.registered_layer() is not None and not w.busy, timeout=30000)
    before = (tuple(v.dims.nsteps), tuple(v.dims.current_step))
    w.qa.cross.setChecked(True)
    qtbot.wait(100)
    w.qa.move_crosshair(TUMOR_C[::-1])
    assert tuple(v.dims.nsteps) == before[0]  # 3 mm slices stay 3 mm steps
    # real mouse moves near the right edge of the canvas: the note is written leftwards
    canvas = v.window._qt_viewer.canvas.native
    r = canvas.rect()
    for dx in (0, 8, 16):
        QTest.mouseMove(canvas, QPoint(int(r.width() * 0.85) + dx, r.height() // 2))
        qtbot.wait(30)
    qtbot.wait(200)
    cross = v.layers["crosshair"]
    assert str(getattr(cross.text.anchor, "value", cross.text.anchor)) == "upper_right"
    pts = cross.data * cross.scale + cross.translate
    assert np.allclose(pts[0][-2:], np.asarray(v.cursor.position)[-2:], atol=2.0)
    assert tuple(v.dims.nsteps) == before[0]
    v.screenshot(str(tmp_path / "cross.png"))
    w.qa.cross.setChecked(False)
    qtbot.wait(100)
    assert tuple(v.dims.nsteps) == before[0]
    assert "crosshair" not in v.layers
