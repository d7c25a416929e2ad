"""UAT s6 D3, D5, D8 (issue 8 point 8 and the landmark fit in the case model), with real
mouse and key events in a real viewer (run under xvfb-run).

* D3: Register's status line must follow the current transform: after an automatic run,
  Alt-key nudges and Undo, every "tumor centre moved" figure shown in the widget is the
  current transform's.
* D5: landmarks dragged / removed after a Fit: Register and Margins say "landmarks changed
  since the fit", the residuals of the old fit are not shown against the moved points, and
  the MTM interval stays that of the landmarks the transform was fitted to.
* D8: the landmark fit is saved with its landmarks, so the reopened case keeps it as the
  interval's source.
"""

from __future__ import annotations

import re

import _gui
import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel
from test_gui_uat5_landmarks import OFFSETS, click_point
from test_gui_uat8_keys import bring_to_front, click_tab
from test_registration import TRUE, TUMOR_C, make_phantom

from napari_ablation.core import geometry
from napari_ablation.core.case import Case
from napari_ablation.model import CaseModel
from napari_ablation.widgets import _layers
from napari_ablation.widgets.register_landmarks import LANDMARKS_CHANGED_TEXT


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(TRUE)


@pytest.fixture
def viewer_widgets(make_napari_viewer, phantom, tmp_path, monkeypatch, qtbot):
    viewer, session, (_d, reg), (_d2, marg) = _gui.phantom_register_margins(
        make_napari_viewer, phantom, tmp_path, monkeypatch
    )
    _gui.grid_off(viewer, qtbot)
    return viewer, session, reg, marg


def shift_figures(widget) -> set[str]:
    """Every "moved N mm" figure shown in ``widget``'s labels."""
    out = set()
    for label in widget.findChildren(QLabel):
        out |= set(re.findall(r"moved (-?[\d.]+) mm", label.text()))
    return out


def test_register_status_follows_the_current_transform(viewer_widgets, qtbot):
    v, session, reg, _marg = viewer_widgets
    m = session.model
    if reg.auto.spread.isChecked():
        _gui.click(qtbot, reg.auto.spread)  # the spread is not what this test is about
    _gui.click(qtbot, reg.auto.run_btn)
    qtbot.waitUntil(lambda: not reg.auto.running and m.transform is not None, timeout=120000)
    assert reg.status.text().startswith("automatic registration")
    assert shift_figures(reg) == {f"{m.tumor_shift_mm():.1f}"}

    # Alt-key nudges on the canvas (the manual tab's keys, while it is shown), committed
    # when they settle
    bring_to_front(v, qtbot, reg.parent())
    click_tab(qtbot, reg.tabs.tabBar(), "Manual")
    v.layers.selection.active = _layers.find_layer(v, "pre")
    for _ in range(4):
        _gui.key(v, qtbot, Qt.Key_Right, Qt.AltModifier)
    qtbot.waitUntil(lambda: m.transform_step.source == "manual", timeout=10000)
    qtbot.wait(50)
    assert "automatic registration" not in reg.status.text()
    assert shift_figures(reg) == {f"{m.tumor_shift_mm():.1f}"}

    # Undo, step by step back to the automatic registration: the figure follows each step
    while m.transform_step.source == "manual":
        _gui.click(qtbot, reg.undo_btn)
        assert shift_figures(reg) == {f"{m.tumor_shift_mm():.1f}"}
    assert m.transform_step.source == "automatic"
    assert reg.status.text() == ""


def _drag(viewer, qtbot, layer, start_lps, move_mm: float) -> None:
    """Select mode on ``layer``; press on the point at ``start_lps`` and drag it
    ``move_mm`` along the screen's horizontal axis (a real mouse drag)."""
    start = geometry.lps_to_world(np.asarray(start_lps, float))
    viewer.dims.point = tuple(float(x) for x in start)
    qtbot.wait(50)
    _gui.choose(viewer, layer, "select")
    d1 = viewer.dims.displayed[1]
    pts = []
    for t in np.linspace(0.0, move_mm, 8):
        p = np.array(start, float)
        p[d1] += t
        pts.append(p)
    _gui.stroke(viewer, qtbot, pts)


def _fit_rows(reg) -> list[str]:
    t = reg.landmarks.table
    return [t.item(i, 1).text() for i in range(t.rowCount())]


def test_landmarks_edited_after_the_fit(viewer_widgets, qtbot, tmp_path):
    v, session, reg, marg = viewer_widgets
    m = session.model
    _gui.click(qtbot, reg.landmarks.add_btn)
    qtbot.waitUntil(lambda: _layers.find_layer(v, "landmarks_post") is not None, timeout=20000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=20000)
    lm_pre = _layers.find_layer(v, "landmarks_pre")
    lm_post = _layers.find_layer(v, "landmarks_post")
    rng = np.random.default_rng(3)
    pre_pts = [TUMOR_C + np.array(o, float) for o in OFFSETS]
    post_pts = [np.array(TRUE.TransformPoint(tuple(p))) + rng.normal(0, 0.3, 3) for p in pre_pts]
    _gui.choose(v, lm_pre, "add")
    for p in pre_pts:
        click_point(v, qtbot, p)
    _gui.choose(v, lm_post, "add")
    for q in post_pts:
        click_point(v, qtbot, q)
    _gui.click(qtbot, reg.landmarks.fit_btn)
    assert m.transform_step.source == "landmarks"
    n = len(OFFSETS)
    fit_text = reg.landmarks.fit_label.text()
    assert fit_text.startswith("RMS residual") and f"over {n} pairs" in fit_text
    assert "Predicted error at the tumor centre: " in fit_text
    assert all(r for r in _fit_rows(reg))
    _gui.click(qtbot, marg.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=120000)
    qtbot.waitUntil(lambda: m.interval_current, timeout=120000)
    assert marg.status.text().startswith("up to date")
    before = m.interval
    before_text = marg.interval.text()
    assert f"landmarks: {n} pairs" in before_text

    # a post landmark dragged 10 mm with the mouse, no new Fit
    _drag(v, qtbot, lm_post, post_pts[1], 10.0)
    moved = m.landmarks["post"][1]
    assert np.linalg.norm(np.array([moved["x"], moved["y"], moved["z"]]) - post_pts[1]) > 5
    qtbot.wait(100)
    assert LANDMARKS_CHANGED_TEXT in reg.status.text()
    assert m.landmarks_changed_since_fit
    assert reg.landmarks.fit_label.text().startswith("Landmarks changed since the fit")
    assert not any(_fit_rows(reg))  # the old residuals are not shown against moved points
    assert LANDMARKS_CHANGED_TEXT in marg.status.text()
    # the interval is still that of the fitted landmarks (the transform in use)
    assert m.interval_current and m.interval is before
    assert marg.interval.text() == before_text

    # "Remove last" (the last click: pair n on post): n - 1 complete pairs now, while the
    # transform, its interval and every pair count shown stay those of the n-pair fit
    _gui.click(qtbot, reg.landmarks.undo_btn)
    assert len(lm_pre.data) == n and len(lm_post.data) == n - 1
    assert m.interval_current and f"landmarks: {n} pairs" in marg.interval.text()
    assert f"over {n} pairs" in reg.landmarks.fit_label.text()
    assert LANDMARKS_CHANGED_TEXT in marg.status.text()

    # the case folder keeps the fit with its landmarks: reopened, the same source (D8)
    session.flush()
    qtbot.waitUntil(lambda: session.all_saved, timeout=20000)
    again = CaseModel()
    again.load_case(Case.load(m.folder), m.folder, saved=True)
    assert again.transform_step.source == "landmarks"
    assert again.registration_error().kind == "landmarks"
    assert again.landmarks_changed_since_fit

    # Fit again: the notice goes, the margins and the interval follow the new fit
    _gui.click(qtbot, reg.landmarks.fit_btn)
    assert not m.landmarks_changed_since_fit
    assert LANDMARKS_CHANGED_TEXT not in reg.status.text()
    assert f"over {n - 1} pairs" in reg.landmarks.fit_label.text()
    qtbot.waitUntil(lambda: _gui.idle(session, marg) and m.interval_current, timeout=120000)
    assert marg.status.text().startswith("up to date")
    assert f"landmarks: {n - 1} pairs" in marg.interval.text()

    # without a tumor the error is predicted at the image centre, and the line says so
    # (UAT s8 N10a: it said "at the tumor centre" beside "draw the tumor first")
    tl = _layers.find_layer(v, "tumor")
    tl.data = np.zeros_like(np.asarray(tl.data))
    qtbot.waitUntil(lambda: m.tumor_centre_lps() is None, timeout=20000)
    reg.landmarks.show_fit()
    assert "Predicted error at the image centre (no tumor drawn yet): " in (
        reg.landmarks.fit_label.text()
    )
