"""UAT s5 N1 (issue 8 point 7): landmarks clicked with the mouse on pre and post, then
Compute margins with "landmarks post" still active: the margins are drawn over pre with
the anatomy (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from test_registration import TRUE, TUMOR_C, make_phantom

from napari_ablation.core import geometry
from napari_ablation.widgets import _layers


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(TRUE)


@pytest.fixture
def viewer_widgets(make_napari_viewer, phantom, tmp_path, monkeypatch):
    # as the Plugins menu opens them: the widgets see the viewer through napari's
    # public-only proxy (a new wrapper object on each access)
    viewer, session, (_d, reg), (_d2, marg) = _gui.phantom_register_margins(
        make_napari_viewer, phantom, tmp_path, monkeypatch
    )
    return viewer, session, reg, marg


def click_point(viewer, qtbot, lps) -> None:
    """Go to the slice of ``lps`` and click there on the canvas (a real mouse click)."""
    world = geometry.lps_to_world(np.asarray(lps, float))
    viewer.dims.point = tuple(float(x) for x in world)
    qtbot.wait(50)
    _gui.click_at(viewer, qtbot, world)


OFFSETS = [(0, 0, 0), (15, 0, 0), (-15, 0, 0), (0, 15, 0), (0, -15, 0), (10, 10, 6)]


def test_clicked_landmarks_then_compute_margins_shows_the_margins_over_pre(
    viewer_widgets, qtbot, tmp_path
):
    v, session, reg, marg = viewer_widgets
    _gui.grid_off(v, qtbot)  # the overlay, where raw post sits under pre
    before = {ly.name: ly.visible for ly in v.layers}
    _gui.click(qtbot, reg.landmarks.add_btn)
    qtbot.waitUntil(lambda: _layers.find_layer(v, "landmarks_post") is not None, timeout=20000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=20000)
    lm_pre = _layers.find_layer(v, "landmarks_pre")
    lm_post = _layers.find_layer(v, "landmarks_post")
    pre_pts = [TUMOR_C + np.array(o, float) for o in OFFSETS]
    post_pts = [np.array(TRUE.TransformPoint(tuple(p))) for p in pre_pts]
    v.layers.selection.active = lm_pre  # the user picks "landmarks pre" in the layer list
    lm_pre.mode = "add"
    for p in pre_pts:
        click_point(v, qtbot, p)
    v.layers.selection.active = lm_post
    lm_post.mode = "add"
    for q in post_pts:
        click_point(v, qtbot, q)
    assert len(lm_pre.data) == len(OFFSETS) and len(lm_post.data) == len(OFFSETS)
    shown = {_layers.role_of(ly) for ly in v.layers if ly.visible}
    assert shown == {"post", "landmarks_pre", "landmarks_post"}, shown
    v.screenshot(str(tmp_path / "post_clicked.png"), canvas_only=True)
    _gui.click(qtbot, marg.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=120000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=20000)
    qtbot.wait(100)
    assert v.layers.selection.active is lm_post  # the user's active layer stays
    shown = {_layers.role_of(ly) for ly in v.layers if ly.visible}
    assert {"pre", "tumor", "margin", "mtm_point"} <= shown, shown
    # the layers the user had before the landmark view keep their visibility
    for name, visible in before.items():
        assert v.layers[name].visible == visible, name
    v.screenshot(str(tmp_path / "after_compute.png"), canvas_only=True)
