"""Register widget in a real viewer (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
import SimpleITK as sitk
from test_registration import TRUE, TUMOR_C, euler, make_phantom

from napari_ablation.core import registration as reg
from napari_ablation.core import transform as tfm
from napari_ablation.widgets import _layers


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(TRUE)


@pytest.fixture
def widget(make_napari_viewer, phantom, tmp_path, monkeypatch):
    # shown: the screenshots need a drawn canvas
    return _gui.register_on_phantom(make_napari_viewer, phantom, tmp_path, monkeypatch)


def _wait(qtbot, w, timeout=60000):
    qtbot.waitUntil(lambda: not w.busy, timeout=timeout)


def test_automatic_registration_in_the_viewer(widget, qtbot, tmp_path):
    w = widget
    worker = w.auto.run_automatic()
    assert worker is not None and w.auto.cancel_btn.isEnabled()
    _wait(qtbot, w)
    pts = reg.ball_points(TUMOR_C, 30)
    assert reg.target_error(w.transform, TRUE, pts)[0] < 0.5
    assert w.auto.last_result is not None and w.auto.last_result.improved
    # post resampled onto the pre grid, as an ordinary (unrotated) layer
    layer = w.registered_layer()
    pre_l = _layers.find_layer(w.viewer, "pre")
    assert layer.data.shape == pre_l.data.shape
    assert np.allclose(layer.scale, pre_l.scale) and np.allclose(
        layer.affine.affine_matrix, np.eye(4)
    )
    # stored in the case, on disk
    assert w.session.case.transform is not None
    saved = tfm.read_rigid_transform(w.session.folder / "transform.tfm")
    assert reg.target_error(saved, w.transform, pts)[1] < 1e-6
    # undo goes back to identity, reset too
    w.undo()
    assert reg.target_error(w.transform, None, pts)[1] < 1e-9
    w.undo()  # nothing left: no crash


def test_registration_in_a_user_box(widget, qtbot):
    w = widget
    layer = w.auto.draw_box()
    assert layer.mode == "add_rectangle"
    c = TUMOR_C[::-1]  # world (z, y, x)
    corners = np.array(
        [
            [c[0], c[1] - 35, c[2] - 35],
            [c[0], c[1] - 35, c[2] + 35],
            [c[0], c[1] + 35, c[2] + 35],
            [c[0], c[1] + 35, c[2] - 35],
        ]
    )
    layer.add_rectangles((corners - np.asarray(layer.translate)) / np.asarray(layer.scale))
    lo, hi = w.auto.user_box()
    assert np.allclose(lo, TUMOR_C - [35, 35, w.auto.roi_radius.value()], atol=1e-6)
    assert np.allclose(hi, TUMOR_C + [35, 35, w.auto.roi_radius.value()], atol=1e-6)
    w.auto.run_automatic()
    _wait(qtbot, w)
    assert (
        w.auto.last_result is not None and w.auto.last_result.roi_radius_mm is None
    )  # the box, not the tumor ball
    assert reg.target_error(w.transform, TRUE, reg.ball_points(TUMOR_C, 30))[0] < 0.5


def test_a_registration_that_ends_worse_keeps_the_transform(widget, qtbot, monkeypatch):
    w = widget
    start = euler((1, 0, 0), (1, 0, 0))
    w.set_transform(start, "file")
    real = reg.register_rigid

    def coarse_only(
        *args, **kw
    ):  # a real run that cannot improve: coarse level only, from the truth
        kw.update(initial=TRUE, shrink_factors=(8,), smoothing_sigmas=(6.0,))
        return real(*args, **kw)

    monkeypatch.setattr(reg, "register_rigid", coarse_only)
    w.auto.run_automatic()
    _wait(qtbot, w)
    assert w.auto.last_result is not None and not w.auto.last_result.improved
    assert "did not improve" in w.status.text()
    assert reg.target_error(w.transform, start, reg.ball_points(TUMOR_C, 30))[1] < 1e-9


def test_cancel_keeps_the_previous_transform(widget, qtbot):
    w = widget
    start = euler((1, 0, 0), (1, 0, 0))
    w.set_transform(start, "file")
    worker = w.auto.run_automatic()
    assert worker is not None
    w.auto.cancel()  # the Cancel button
    _wait(qtbot, w)
    assert "cancel" in w.status.text()
    assert w.auto.last_result is None
    assert reg.target_error(w.transform, start, reg.ball_points(TUMOR_C, 30))[1] < 1e-9
    assert w.auto.run_btn.isEnabled() and not w.auto.cancel_btn.isEnabled()


def test_manual_adjustment_live_and_undo(widget, qtbot):
    w = widget
    w.set_transform(TRUE, "file")
    qtbot.waitUntil(lambda: w.registered_layer() is not None, timeout=20000)
    _wait(qtbot, w)
    before = np.array(w.registered_layer().data)
    w.manual["tx"].spin.setValue(3.0)  # drag: live update of the tumor box only
    assert w.live_timings_ms
    live = np.array(w.registered_layer().data)
    box = reg.region_box(w.image("pre"), w.tumor_center(), 30.0)
    expected = reg.resample_region(
        w.image("post"), w.image("pre"), w.transform, box, default=w.post_min(w.image("post"))
    )
    assert np.allclose(live[box], expected, atol=1e-3)
    outside = np.ones(before.shape, bool)
    outside[box] = False
    assert np.array_equal(live[outside], before[outside])
    # the value settles: recorded, whole volume resampled
    qtbot.waitUntil(lambda: w.model.transform_step.source == "manual", timeout=5000)
    _wait(qtbot, w)
    pts = reg.ball_points(TUMOR_C, 30)
    want = reg.adjust(TRUE, (3.0, 0, 0), (0, 0, 0), w.tumor_center())
    assert reg.target_error(w.session.case.transform, want, pts)[1] < 1e-6
    # editing the tumor later does not change an accepted manual adjustment
    tl = _layers.find_layer(w.viewer, "tumor")
    tl.data_setitem((np.array([3]), np.array([5]), np.array([5])), 1)
    assert reg.target_error(w.transform, want, pts)[1] < 1e-6
    w.undo()
    assert w.manual["tx"].value() == 0.0
    assert reg.target_error(w.transform, TRUE, pts)[1] < 1e-6
    # keyboard: Alt+Right moves along the screen's horizontal axis (x, L, in the axial view),
    # Alt+. rotates about the axis normal to the slice (z)
    w.tabs.setCurrentWidget(w.manual)  # the keys act while the Manual tab is shown
    keys = {str(k).replace(" ", ""): f for k, f in w.viewer.keymap.items()}
    keys["Alt+Right"](w.viewer)
    assert w.manual["tx"].value() == 0.5
    keys["Alt+."](w.viewer)
    assert w.manual["rz"].value() == 0.5
    assert (
        reg.target_error(
            w.session.case.transform,
            reg.adjust(TRUE, (0.5, 0, 0), (0, 0, 0.5), w.tumor_center()),
            pts,
        )[1]
        < 1e-6
    )


def test_landmarks_pairs_fit_and_misclick(widget, qtbot):
    w = widget
    rng = np.random.default_rng(1)
    # post points on post slice centres: a point added through the layer (as a click) lies
    # on the slice shown (UAT s8 N2)
    oz, sz = w.image("post").GetOrigin()[2], w.image("post").GetSpacing()[2]
    post_pts = []
    for _ in range(5):
        q = TUMOR_C + rng.uniform(-25, 25, 3)
        q[2] = oz + sz * np.round((q[2] - oz) / sz)
        post_pts.append(q)
    pre_pts = [tfm.transform_points(tfm.inverse(TRUE), q)[0] for q in post_pts]
    for i, p in enumerate(pre_pts):
        assert w.landmarks.add_landmark("landmarks_pre", p) == str(i + 1)
    assert "pair 1 on post" in w.landmarks.next_label.text()
    pre_l = _layers.find_layer(w.viewer, "landmarks_pre")
    post_l = _layers.find_layer(w.viewer, "landmarks_post")

    # a misclick on post (as napari's add mode does it), undone
    def to_data(p):
        return (p[::-1] - np.asarray(post_l.translate)) / np.asarray(post_l.scale)

    post_l.add(to_data(post_pts[0] + 40))
    assert list(post_l.features["pair"]) == ["1"]
    w.landmarks.remove_last_point()
    assert len(post_l.data) == 0
    # clicks on post take the waiting pair labels in order
    for p in post_pts[:2]:
        post_l.add(to_data(p))
    assert list(post_l.features["pair"]) == ["1", "2"]
    for p in post_pts[2:]:
        w.landmarks.add_landmark("landmarks_post", p)
    assert (
        list(pre_l.features["pair"]) == list(post_l.features["pair"]) == ["1", "2", "3", "4", "5"]
    )
    assert np.allclose(pre_l.face_color, post_l.face_color)  # pairs coloured alike
    fit = w.landmarks.fit()
    assert fit is not None and fit.rms_fre < 1e-6
    assert reg.target_error(w.transform, TRUE, reg.ball_points(TUMOR_C, 30))[1] < 1e-6
    assert w.landmarks.table.rowCount() == 5 and w.landmarks.table.item(0, 1).text() == "0.00"
    # saved in the case
    assert [r["label"] for r in w.session.case.landmarks["post"]] == ["1", "2", "3", "4", "5"]
    # a new widget on the same viewer/case gets the landmarks back from the case
    from napari_ablation.widgets.register import RegisterWidget

    w.viewer.layers.remove(pre_l)
    w.viewer.layers.remove(post_l)
    w2 = RegisterWidget(w.viewer)
    assert w2.landmarks.points()[1].keys() == {"1", "2", "3", "4", "5"}
    assert np.allclose(w2.landmarks.points()[0]["3"], pre_pts[2])
    w2.close()
    # too few pairs: one-line error, transform unchanged
    for _ in range(5):
        w.landmarks.remove_last_point()
    for _ in range(3):
        w.landmarks.remove_last_point()
    before = w.transform
    assert w.landmarks.fit() is None
    assert reg.target_error(w.transform, before, reg.ball_points(TUMOR_C, 30))[1] < 1e-9


def test_tumor_edits_move_the_rotation_centre(widget):
    w = widget
    c0 = w.tumor_center()
    assert np.allclose(c0, TUMOR_C, atol=1.0)
    tl = _layers.find_layer(w.viewer, "tumor")
    # paint a block far from the tumor on one slice (the cache must notice)
    idx = np.nonzero(np.ones((1, 6, 6), bool))
    tl.data_setitem((idx[0] + 3, idx[1] + 5, idx[2] + 5), 1)
    c1 = w.tumor_center()
    assert not np.allclose(c0, c1, atol=1e-3)
    assert np.allclose(c1, reg.mask_centroid_lps(_layers.mask_from_layer(tl)))


def test_bad_transform_file_changes_nothing(widget, tmp_path):
    w = widget
    w.set_transform(TRUE, "file")
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([1.1, 0, 0, 0, 1, 0, 0, 0, 1])
    sitk.WriteTransform(aff, str(tmp_path / "affine.tfm"))
    assert not w.auto.load_transform(tmp_path / "affine.tfm")
    assert reg.target_error(w.transform, TRUE, reg.ball_points(TUMOR_C, 30))[1] < 1e-9
    w.auto.save_transform(tmp_path / "ok.tfm")
    w.reset()
    assert w.auto.load_transform(tmp_path / "ok.tfm")
    assert reg.target_error(w.transform, TRUE, reg.ball_points(TUMOR_C, 30))[1] < 1e-9


def test_qa_views_checkerboard_screenshot_and_verdict(widget, qtbot, tmp_path, monkeypatch):
    w = widget
    w.set_transform(TRUE, "file")
    qtbot.waitUntil(lambda: w.registered_layer() is not None, timeout=20000)
    qa = w.qa
    pre_layer = _layers.find_layer(w.viewer, "pre")
    w.viewer.layers.selection.active = pre_layer  # the user's choice
    qa.tile.setValue(15.0)
    qa.checker.setChecked(True)
    assert w.viewer.layers.selection.active is pre_layer  # a QA view does not take it
    cb = w.viewer.layers["qa checkerboard"]
    pre_l = _layers.find_layer(w.viewer, "pre")
    assert cb.data.shape == pre_l.data.shape and np.allclose(cb.scale, pre_l.scale)
    qa.diff.setChecked(True)
    d = w.viewer.layers["qa difference"].data
    # registered with the true transform: small difference near the tumor (outside the ice ball)
    assert np.abs(d).mean() < 0.2
    qa.contours.setCurrentText("edges of registered post over pre")
    full_edges = np.array(w.viewer.layers["qa edges"].data)
    assert full_edges.any()
    # large volumes: edges only in a box around the tumor (same edges there)
    from napari_ablation.widgets import qa as qa_module

    monkeypatch.setattr(qa_module, "EDGES_FULL_MAX_VOXELS", 1000)
    monkeypatch.setattr(qa_module, "EDGES_HALF_SIZE_MM", 20.0)
    qa.contours.setCurrentText("edges of pre over registered post")
    qa.contours.setCurrentText("edges of registered post over pre")
    local = np.array(w.viewer.layers["qa edges"].data)
    box = reg.region_box(w.image("pre"), w.tumor_center(), 20.0)
    outside = np.ones(local.shape, bool)
    outside[box] = False
    assert local.any() and not local[outside].any()
    qa.contours.setCurrentText("ablation zone outline on pre")
    assert _layers.find_layer(w.viewer, "ablation_registered").contour == 1
    assert w.viewer.layers.selection.active is pre_layer
    reg_l = w.registered_layer()
    states = []
    reg_l.events.visible.connect(lambda e: states.append(reg_l.visible))  # every flip, not samples
    qa.flicker.setChecked(True)
    qtbot.waitUntil(lambda: len(states) >= 4, timeout=10000)
    assert set(states) == {True, False}
    assert reg_l.colormap.name == "gray" and reg_l.opacity == 1.0
    qa.flicker.setChecked(False)
    # as before the flicker: the difference view, still on, is read over pre alone
    assert not reg_l.visible and pre_l.visible
    assert reg_l.colormap.name == "magenta" and reg_l.opacity == pytest.approx(0.6)
    qa.cross.setChecked(True)
    qa.move_crosshair(TUMOR_C[::-1])
    cl = w.viewer.layers["crosshair"]
    cross = cl.data * cl.scale + cl.translate  # world (on the pre grid: pre's slice steps)
    assert np.allclose(cl.scale, pre_l.scale)
    # the point is on the pre slice shown (its centre, UAT s8 N2), in-plane under the mouse
    p = TUMOR_C.copy()
    oz, sz = w.image("pre").GetOrigin()[2], w.image("pre").GetSpacing()[2]
    p[2] = oz + sz * np.round((p[2] - oz) / sz)
    q = tfm.transform_points(TRUE, p)[0][::-1]  # world (z, y, x)
    # the partner T(p) is drawn on the axial slice shown (in-plane where T puts it),
    # its depth written
    assert np.allclose(cross[0], p[::-1]) and np.allclose(cross[1][1:], q[1:])
    assert cross[1][0] == pytest.approx(p[2])
    depth = abs(q[0] - p[2])
    assert f"{depth:.1f} mm" in w.viewer.layers["crosshair"].features["note"][1]
    qa.verdict.setCurrentText("needs correction")
    qa.comment.setText("upper pole off by 2 mm")
    qa.record_verdict()
    assert w.session.case.qa["verdict"] == "needs correction"
    assert "upper pole" in (w.session.folder / "case.json").read_text(encoding="utf-8")
    # screenshot of the checkerboard
    qa.contours.setCurrentText("none")
    qa.diff.setChecked(False)
    assert reg_l.visible  # every view that hid it is off
    qa.cross.setChecked(False)
    w.viewer.reset_view()
    w.viewer.dims.set_point(0, float(TUMOR_C[2]))
    out = tmp_path / "checker.png"
    w.viewer.screenshot(str(out), canvas_only=False)
    assert out.stat().st_size > 10000
    # the checkerboard is what the canvas shows: turning it off changes the picture
    with_cb = np.asarray(w.viewer.screenshot(canvas_only=True), dtype=float)
    qa.checker.setChecked(False)
    assert "qa checkerboard" not in w.viewer.layers
    without = np.asarray(w.viewer.screenshot(canvas_only=True), dtype=float)
    assert with_cb.shape == without.shape and np.abs(with_cb - without).mean() > 1.0


def test_history_lives_in_the_model_undo_redo_and_keys_unbound_on_close(widget, qtbot):
    w = widget
    m = w.model
    pts = reg.ball_points(TUMOR_C, 30)
    w.set_transform(TRUE, "file")
    w.manual["tz"].spin.setValue(2.0)
    w.manual.commit()
    assert [s.source for s in m.transform_history][-2:] == ["file", "manual"]
    w.undo_btn.click()
    assert reg.target_error(w.transform, TRUE, pts)[1] < 1e-6 and w.manual["tz"].value() == 0.0
    assert w.redo_btn.isEnabled()
    w.redo_btn.click()
    assert (
        reg.target_error(
            m.transform, reg.adjust(TRUE, (0, 0, 2.0), (0, 0, 0), w.tumor_center()), pts
        )[1]
        < 1e-6
    )
    # a second Register widget on the same viewer shows the same history (it is the model's)
    from napari_ablation.widgets.register import RegisterWidget

    w2 = RegisterWidget(w.viewer)
    assert "manual" in w2.auto.tx_label.text() and w2.undo_btn.isEnabled()
    w2.close()
    # closing unbinds the manual keys
    w.close()
    keys = {str(k).replace(" ", "") for k in w.viewer.keymap}
    assert not keys & {"Alt+Right", "Alt+.", "Alt+PageUp"}


def test_one_shift_figure_in_register_margins_and_report(widget, qtbot, tmp_path):
    """Register, the Margins widget's registration line and the report carry the same
    displacement of the tumor centre, |T(c) - c| (issue 8, point 8)."""
    from napari_ablation.core import report
    from napari_ablation.widgets.margin import registration_text

    w = widget
    w.set_transform(TRUE, "automatic")
    c = w.model.tumor_centre_lps()
    true_shift = float(np.linalg.norm(tfm.transform_points(TRUE, c)[0] - c))
    figure = f"tumor centre moved {true_shift:.1f} mm"
    assert figure in w.auto.tx_label.text()
    analysis = w.model.compute_analysis()
    line = registration_text(w.model, analysis.result)
    assert figure in line
    html = report.html_report(analysis.result, transform_note=line)
    assert figure in html
    assert w.model.tumor_shift_mm() == pytest.approx(true_shift)
    # one level of brackets (UAT s4: "registration (automatic (metric ...)): ...")
    w.set_transform(TRUE, "automatic", "metric -0.2 -> -0.6, 12 iterations, 1.0 s")
    line = registration_text(w.model)
    assert line.startswith("registration: automatic, metric -0.2 -> -0.6") and figure in line
    assert "((" not in line and ")):" not in line and line.count("(") <= 1


def test_qa_difference_legend_field_of_view_and_visible_crosshair(widget, qtbot, tmp_path):
    w = widget
    grid_before = _layers.grid(w.viewer).enabled
    # move post far along z: part of the pre grid has no post data under it
    shifted = euler((0, 0, 0), (0, 0, 60.0))
    w.set_transform(shifted, "file")
    qtbot.waitUntil(lambda: w.registered_layer() is not None, timeout=20000)
    _wait(qtbot, w)
    assert _layers.grid(w.viewer).enabled == grid_before  # QA does not rearrange the user's view
    qa = w.qa
    qa.diff.setChecked(True)
    assert not qa.diff_legend.isHidden()
    assert "green" in qa.diff_legend.text() and "outside" in qa.diff_legend.text()
    # the whole legend is shown (it was cut to one line inside the form)
    w.tabs.setCurrentWidget(qa)
    qtbot.wait(200)
    lab = qa.diff_legend
    assert lab.height() >= lab.heightForWidth(lab.width()) - 1 > 3 * lab.fontMetrics().height()
    w.grab().save(str(tmp_path / "register_qa_legend.png"))
    d = np.asarray(w.viewer.layers["qa difference"].data)
    fov = qa._post_field_of_view()
    assert (~fov).any() and fov.any()
    assert np.all(d[~fov] == 0)  # outside post's field of view: neutral (transparent), no band
    # centred at zero: the overall brightness offset between the series is not coloured
    pre = np.asarray(_layers.find_layer(w.viewer, "pre").data)
    body = fov & (reg.normalise(pre, reg.intensity_range(pre)) > 0.1)
    assert abs(float(np.median(d[body]))) < 0.02
    layer = w.viewer.layers["qa difference"]
    assert layer.colormap.map(np.array([0.5]))[0][3] == 0  # zero difference is transparent
    # the crosshair stays above the QA layers, its partner drawn with an outline
    qa.cross.setChecked(True)
    qa.checker.setChecked(True)
    names = [ly.name for ly in w.viewer.layers]
    assert names[-1] == "crosshair"
    # the registered post and the QA images lie below the user's labels: they never hide the drawing
    tumor_i = names.index(_layers.find_layer(w.viewer, "tumor").name)
    for name in ("qa checkerboard", "qa difference", w.registered_layer().name):
        assert names.index(name) < tumor_i, name
    qa.move_crosshair(TUMOR_C[::-1])
    cross = w.viewer.layers["crosshair"]
    assert len(cross.data) == 2 and cross.size.min() * np.mean(cross.scale[-2:]) >= 10  # mm


def test_closing_the_window_stops_a_running_registration_silently(widget, qtbot, monkeypatch):
    """UAT s4 N7: a registration running when the window closes reports nothing afterwards
    and leaves the closed case as it was, even one in a phase that does not look at the
    Cancel flag (the UAT's notification for the closed viewer came 13 s after the close)."""
    from napari.utils.notifications import notification_manager

    real = reg.register_rigid

    def without_cancel(*args, **kw):  # a real run that never looks at the Cancel flag
        kw.pop("cancel", None)
        return real(*args, **kw)

    monkeypatch.setattr(reg, "register_rigid", without_cancel)
    # the widget as the Plugins menu opens it (napari's dock, public-only viewer proxy)
    _dock, w = widget.viewer.window.add_plugin_dock_widget("napari-ablation", "3. Register")
    model = w.session.model
    assert model.transform is None
    w.auto.spread.setChecked(False)
    worker = w.auto.run_automatic()
    assert worker is not None
    outcome = []
    worker.returned.connect(outcome.append)  # a plain function: delivered after the close
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        widget.viewer.close()  # the window's close button
        qtbot.waitUntil(lambda: len(outcome) == 1, timeout=60000)
        qtbot.wait(500)
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert outcome[0].improved  # it ran to its end ...
    assert model.transform is None  # ... and nothing of it reached the closed case
    assert not seen, [n.message for n in seen]


def test_closing_the_window_stops_a_running_registration(widget, qtbot, monkeypatch):
    """UAT s4 N7, the stop itself: closing the window while an automatic registration runs
    raises its Cancel flag, so the registration ends at once (cancelled) instead of running
    to its end in the background. The registration is held at its start until the flag is
    raised (or 20 s pass): the close always comes while it runs."""
    import threading
    import time

    real = reg.register_rigid
    started = threading.Event()
    flag_at_start = []

    def held(*args, **kw):
        started.set()
        cancel = kw["cancel"]
        t0 = time.monotonic()
        while not cancel() and time.monotonic() - t0 < 20.0:
            time.sleep(0.01)
        flag_at_start.append(cancel())
        return real(*args, **kw)

    monkeypatch.setattr(reg, "register_rigid", held)
    _dock, w = widget.viewer.window.add_plugin_dock_widget("napari-ablation", "3. Register")
    model = w.session.model
    w.auto.spread.setChecked(False)
    worker = w.auto.run_automatic()
    assert worker is not None
    outcome = []
    worker.returned.connect(outcome.append)
    assert started.wait(30)
    widget.viewer.close()  # the window's close button
    qtbot.waitUntil(lambda: len(outcome) == 1, timeout=90000)
    assert flag_at_start == [True]  # the close raised the Cancel flag ...
    kind, exc = outcome[0]  # ... and the registration stopped, cancelled
    assert kind == "failed" and isinstance(exc, reg.RegistrationCancelled), outcome[0]
    assert model.transform is None


def test_landmark_views_show_the_anatomy_and_margins_end_them(widget, qtbot, tmp_path):
    """UAT s4 N10 and point 7: while post landmarks are clicked, only raw post (and the
    landmarks) are drawn: no raw ablation labels over the ice ball, no pre-space tumor over
    raw post; Compute margins with "landmarks post" still active shows the margins over pre
    with the layers as they were before the landmark view (not over raw post)."""
    from napari_ablation.widgets.margin import MarginWidget

    w = widget
    v = w.viewer
    marg = MarginWidget(v)
    v.window.add_dock_widget(marg, name="Margins", tabify=True)
    _gui.fast_timers(w.session)
    if _layers.grid(v).enabled:  # the overlay, where raw post sits under pre
        _gui.click(qtbot, v.window._qt_viewer.viewerButtons.gridViewButton)
    _gui.click(qtbot, w.landmarks.add_btn)
    qtbot.waitUntil(lambda: _layers.find_layer(v, "landmarks_post") is not None, timeout=20000)
    # the landmark layers' chain (one layer per event-loop iteration) has ended
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=20000)
    qtbot.wait(100)
    lm_post = _layers.find_layer(v, "landmarks_post")
    v.layers.selection.active = lm_post  # the user picks "landmarks post" in the layer list
    shown = {_layers.role_of(ly) for ly in v.layers if ly.visible}
    assert shown == {"post", "landmarks_pre", "landmarks_post"}, shown
    v.layers.selection.active = _layers.find_layer(v, "landmarks_pre")
    shown = {_layers.role_of(ly) for ly in v.layers if ly.visible}
    assert shown == {"pre", "landmarks_pre", "landmarks_post"}, shown
    v.layers.selection.active = lm_post
    _gui.click(qtbot, marg.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(w.session, marg), timeout=120000)
    assert v.layers.selection.active is lm_post  # the user's active layer stays
    # the margins over pre; the raw post space keeps the user's visibility (Compute margins
    # hides no layer) but lies under pre (the layer-order rule), so it never covers it
    shown = {_layers.role_of(ly) for ly in v.layers if ly.visible}
    assert {"pre", "tumor", "margin", "mtm_point", "ablation_registered"} <= shown, shown
    order = [_layers.role_of(ly) for ly in v.layers]
    assert _layers.find_layer(v, "pre").opacity == 1.0
    for role in shown & {"post", "ablation"}:
        assert order.index(role) < order.index("pre"), order
    after = {ly.name: ly.visible for ly in v.layers}
    # choosing the tumor afterwards changes nothing; choosing a landmark layer again does
    v.layers.selection.active = _layers.find_layer(v, "tumor")
    assert {ly.name: ly.visible for ly in v.layers} == after
    v.layers.selection.active = _layers.find_layer(v, "landmarks_pre")
    shown = {_layers.role_of(ly) for ly in v.layers if ly.visible}
    assert shown == {"pre", "landmarks_pre", "landmarks_post"}, shown


def test_a_case_opened_with_its_registration_says_so(
    make_napari_viewer, phantom, tmp_path, monkeypatch
):
    """UAT s6 D10: a case reopened with its saved transform read "Step 0 of 0 (case)"."""
    from napari_ablation.core.case import Case
    from napari_ablation.widgets.register import RegisterWidget

    pre, post, tumor, ice = phantom
    case = Case(
        pre=pre, post=post, tumor=tumor, ablation=ice, transform=TRUE, info={"name": "phantom"}
    )
    w = _gui.with_case(
        make_napari_viewer, tmp_path, monkeypatch, case, RegisterWidget, name="Register"
    )
    text = w.auto.tx_label.text()
    assert "Registration loaded with the case." in text and "Step 0" not in text, text
    assert "tumor centre moved" in text
    w.set_transform(TRUE.GetInverse(), "manual")
    assert "Step 1 of 1 (manual)." in w.auto.tx_label.text()
