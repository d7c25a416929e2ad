"""Segment widget in a real napari viewer (run under xvfb-run): interpolation preview /
accept with one undo step, brush in mm, live readout, correction, seeded region, reader
comparison, autosave into the case, and a screenshot of an interpolated tumor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry
from napari_ablation.core import segmentation as seg
from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers
from napari_ablation.widgets.segment import PREVIEW_ROLE, SegmentWidget
from napari_ablation.widgets.session import CaseSession

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _screenshot(viewer, name, tmp_path):
    """Window screenshot into tmp_path (and into docs/ with NAPARI_ABLATION_UPDATE_DOCS=1);
    returns the canvas pixels."""
    import os

    from qtpy.QtWidgets import QApplication

    _layers.grid(
        viewer
    ).enabled = False  # one large view of the structure (the case opens side by side)

    def shot(path=None, canvas_only=False):
        import time

        end = time.perf_counter() + 0.4
        while time.perf_counter() < end:  # let the dock and canvas settle, then frame the data
            QApplication.processEvents()
            time.sleep(0.01)
        viewer.reset_view()
        return viewer.screenshot(path, canvas_only=canvas_only)

    target = tmp_path / name
    shot(str(target))
    assert target.stat().st_size > 1000
    if os.environ.get("NAPARI_ABLATION_UPDATE_DOCS"):
        DOCS.mkdir(exist_ok=True)
        shot(str(DOCS / name))
    return np.asarray(shot(canvas_only=True))


def _count_colour(rgba, rgb, tol=40):
    return int((np.abs(rgba[..., :3].astype(int) - np.asarray(rgb)).max(axis=-1) <= tol).sum())


SPACING_ZYX = (2.5, 0.8, 0.8)
SHAPE = (28, 90, 90)


@pytest.fixture(autouse=True)
def cases_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))


def _grid(center=None):
    c = [(n - 1) / 2 for n in SHAPE] if center is None else center
    axes = [(np.arange(n) - ci) * s for n, s, ci in zip(SHAPE, SPACING_ZYX, c)]
    return np.meshgrid(*axes, indexing="ij")


def _tumor_truth():
    z, y, x = _grid()
    u, v = (y + x) / np.sqrt(2), (y - x) / np.sqrt(2)
    zz = z - 0.3 * u  # tilted
    return (zz / 16) ** 2 + (u / 18) ** 2 + (v / 12) ** 2 <= 1


def _ablation_truth():
    z, y, x = _grid()
    return (z / 20) ** 2 + ((y - 2) / 22) ** 2 + ((x + 3) / 19) ** 2 <= 1


def _case():
    rng = np.random.default_rng(3)
    pre = (np.where(_tumor_truth(), 160.0, 60.0) + rng.normal(0, 12, SHAPE)).astype(np.float32)
    post = (np.where(_ablation_truth(), 20.0, 70.0) + rng.normal(0, 8, SHAPE)).astype(np.float32)
    origin = (-40.0, 12.0, 30.0)
    case = Case(
        pre=geometry.image_from_array(pre, SPACING_ZYX, origin),
        post=geometry.image_from_array(post, SPACING_ZYX, (-38.0, 10.0, 31.0)),
    )
    case.info["name"] = "seg-test"
    return case


@pytest.fixture
def setup(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    session = CaseSession.of(viewer)
    session.set_case(_case(), tmp_path / "case")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    return viewer, widget, session, qtbot


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=30000)


def _draw_every(layer, truth, axis, step):
    """Simulate outlining every ``step``-th slice (one undoable stroke per slice)."""
    idx = np.flatnonzero(truth.any(axis=tuple(a for a in range(3) if a != axis)))
    keep = np.arange(idx[0] + 1, idx[-1], step)
    for k in keep:
        sl = [slice(None)] * 3
        sl[axis] = k
        vox = np.nonzero(truth[tuple(sl)])
        full = list(vox)
        full.insert(axis, np.full(len(vox[0]), k))
        with layer.block_history():
            layer.data_setitem(tuple(full), 1)
    return keep


def test_create_layers_colours_and_brush_in_mm(setup):
    viewer, widget, _session, _qtbot = setup
    widget.structure.setCurrentIndex(0)
    tumor = widget.ensure_labels_layer()
    assert tumor is _layers.find_layer(viewer, "tumor")
    assert tumor.data.shape == SHAPE and np.allclose(tumor.scale, SPACING_ZYX)
    pre = _layers.find_layer(viewer, "pre")
    assert np.allclose(tumor.translate, pre.translate)
    assert tumor.mode == "paint" and viewer.layers.selection.active is tumor
    widget.brush_mm.setValue(4.0)
    assert tumor.brush_size == 5  # 4 mm at 0.8 mm in-plane
    tumor.brush_size = 10  # napari's own slider: the mm box follows
    assert widget.brush_mm.value() == pytest.approx(8.0)
    viewer.dims.order = (1, 0, 2)  # coronal view: 0.8 mm (x) is still the finest displayed axis
    assert tumor.brush_size == 10
    widget.structure.setCurrentIndex(1)
    abl = widget.ensure_labels_layer()
    post = _layers.find_layer(viewer, "post")
    assert np.allclose(abl.translate, post.translate)
    # fixed, distinct colours
    assert np.allclose(tumor.colormap.map(1), abl.colormap.map(1)) is False
    np.testing.assert_allclose(tumor.colormap.map(1)[:3], [1.0, 140 / 255, 0.0], atol=0.01)
    np.testing.assert_allclose(abl.colormap.map(1)[:3], [0.0, 200 / 255, 1.0], atol=0.01)


def test_interpolate_preview_accept_undo_and_screenshot(setup, tmp_path):
    viewer, widget, session, qtbot = setup
    widget.structure.setCurrentIndex(0)
    tumor = widget.ensure_labels_layer()
    truth = _tumor_truth()
    keep = _draw_every(tumor, truth, 0, 3)
    drawn = np.array(tumor.data, copy=True)
    viewer.dims.order = (0, 1, 2)  # axial view
    assert widget.view_axis() == 0

    widget.preview_interpolation()
    _wait(qtbot, widget)
    assert widget.last_error is None
    preview = _layers.find_layer(viewer, PREVIEW_ROLE)
    assert preview is not None and preview.data.any()
    assert np.array_equal(tumor.data, drawn)  # the preview changes nothing yet

    # live readout of the drawn slices
    qtbot.waitUntil(
        lambda: (
            widget.last_stats is not None
            and widget.last_stats["voxels"] == int(np.count_nonzero(tumor.data))
        ),
        timeout=10000,
    )

    n = widget.accept_interpolation()
    assert n > 0 and _layers.find_layer(viewer, PREVIEW_ROLE) is None
    expected = seg.interpolate_slices(drawn, 0, SPACING_ZYX)
    assert np.array_equal(np.asarray(tumor.data), expected)
    lo, hi = keep[0], keep[-1] + 1
    assert seg.dice(truth[lo:hi], tumor.data[lo:hi] != 0) > 0.95
    assert np.array_equal(tumor.data[keep], drawn[keep])

    qtbot.waitUntil(
        lambda: (
            widget.last_stats is not None
            and widget.last_stats["voxels"] == int(np.count_nonzero(tumor.data))
        ),
        timeout=10000,
    )
    assert widget.last_stats["volume_ml"] == pytest.approx(
        seg.mask_volume_ml(tumor.data, SPACING_ZYX)
    )
    assert "ml" in widget.readout.text() and "mm" in widget.readout.text()

    # screenshot of the interpolated tumor on a slice between two drawn ones
    for name in ("post", "ablation"):
        _layers.find_layer(viewer, name).visible = False
    viewer.dims.set_point(0, float(tumor.data_to_world((keep[2] + 1, 0, 0))[0]))
    tumor.opacity = 0.8
    shown = _screenshot(viewer, "segment_interpolated.png", tmp_path)
    # the interpolated slice really shows the orange tumor (80 % orange over the grey image)
    assert _count_colour(shown, (235, 140, 35), tol=45) > 500
    tumor.opacity = 0.0
    assert (
        _count_colour(np.asarray(viewer.screenshot(canvas_only=True)), (235, 140, 35), tol=45) < 50
    )
    tumor.opacity = 0.8

    # autosave: the interpolated tumor reaches the case folder
    session.flush()
    on_disk = sitk.GetArrayFromImage(Case.load(session.folder).tumor)
    assert np.array_equal(on_disk, expected.astype(np.uint8))

    # one undo restores exactly the drawn slices
    tumor.undo()
    assert np.array_equal(np.asarray(tumor.data), drawn)


def test_shortcut_previews_then_accepts_and_cancel_changes_nothing(setup):
    viewer, widget, _session, qtbot = setup
    tumor = widget.ensure_labels_layer()
    _draw_every(tumor, _tumor_truth(), 0, 4)
    drawn = np.array(tumor.data, copy=True)
    widget.preview_interpolation()
    _wait(qtbot, widget)
    widget.cancel_interpolation()
    assert _layers.find_layer(viewer, PREVIEW_ROLE) is None
    assert np.array_equal(tumor.data, drawn)
    widget._interpolate_key(viewer)  # Shift-I: preview
    _wait(qtbot, widget)
    assert widget._preview is not None
    widget._interpolate_key(viewer)  # Shift-I again: accept
    assert widget._preview is None and np.count_nonzero(tumor.data) > np.count_nonzero(drawn)
    from napari.utils.key_bindings import KeyBinding

    assert viewer.keymap.get(KeyBinding.from_str("Shift-I")) == widget._interpolate_key


def test_bad_input_one_line_and_labels_unchanged(setup):
    viewer, widget, _session, qtbot = setup
    tumor = widget.ensure_labels_layer()
    truth = _tumor_truth()
    with tumor.block_history():
        tumor.data_setitem(
            tuple(
                np.array(v) for v in np.nonzero(truth * (np.arange(SHAPE[0]) == 14)[:, None, None])
            ),
            1,
        )
    before = np.array(tumor.data, copy=True)
    widget.preview_interpolation()
    _wait(qtbot, widget)
    assert "at least two annotated slices" in widget.last_error and "\n" not in widget.last_error
    assert np.array_equal(tumor.data, before) and _layers.find_layer(viewer, PREVIEW_ROLE) is None
    # drawn on coronal slices, but viewing axially
    tumor.data = np.zeros(SHAPE, np.uint8)
    _draw_every(tumor, truth, 1, 6)
    before = np.array(tumor.data, copy=True)
    viewer.dims.order = (0, 1, 2)
    widget.preview_interpolation()
    _wait(qtbot, widget)
    assert "coronal" in widget.last_error
    assert np.array_equal(tumor.data, before)
    # viewing coronally, the same drawing interpolates
    viewer.dims.order = (1, 0, 2)
    assert widget.view_axis() == 1
    widget.last_error = None
    widget.preview_interpolation()
    _wait(qtbot, widget)
    assert (
        widget.last_error is None and widget._preview is not None and widget._preview["axis"] == 1
    )


def test_each_correction_is_one_undo_step(setup):
    viewer, widget, _session, qtbot = setup
    tumor = widget.ensure_labels_layer()
    truth = _tumor_truth()
    data = truth.astype(np.uint8)
    data[14, 40:44, 40:44] = 0  # a hole
    data[2, 5:7, 5:7] = 1  # an island
    with tumor.block_history():
        tumor.data_setitem(np.nonzero(data), 1)
    before = np.array(tumor.data, copy=True)
    viewer.dims.order = (0, 1, 2)
    viewer.dims.set_point(0, float(tumor.data_to_world((14, 0, 0))[0]))
    widget.grow_mm.setValue(2.0)
    for op in [
        "grow_shrink",
        "smooth",
        "fill_holes",
        "keep_largest",
        "remove_islands",
        "erase_slice",
    ]:
        widget.correct(op)
        _wait(qtbot, widget)
        assert widget.last_error is None, op
        after = np.array(tumor.data, copy=True)
        assert not np.array_equal(after, before), op
        if op == "erase_slice":
            assert not after[14].any() and np.array_equal(
                np.delete(after, 14, 0), np.delete(before, 14, 0)
            )
        if op == "grow_shrink":
            assert np.array_equal(after != 0, seg.grow_shrink(before != 0, SPACING_ZYX, 2.0))
        if op == "fill_holes":
            assert after[14, 41, 41] == 1
        if op in ("keep_largest", "remove_islands"):
            assert not after[2].any()
        widget.undo()
        assert np.array_equal(np.asarray(tumor.data), before), op


def test_seeded_region_for_the_ablation_zone(setup):
    viewer, widget, _session, qtbot = setup
    widget.structure.setCurrentIndex(1)
    abl = widget.ensure_labels_layer()
    truth = _ablation_truth()
    post = _layers.find_layer(viewer, "post")
    centre = post.data_to_world((14, 47, 41))
    widget.seed_btn.setChecked(True)
    assert abl.mode == "pan_zoom"
    assert widget._seed_cb in viewer.mouse_drag_callbacks
    # a click on the canvas reaches the callback with the world position
    click = type("Click", (), {"type": "mouse_press", "position": tuple(centre)})()
    widget._seed_cb(viewer, click)
    qtbot.waitUntil(lambda: abl.data.any() or widget.last_error is not None, timeout=30000)
    _wait(qtbot, widget)
    assert widget._seed_cb not in viewer.mouse_drag_callbacks
    assert widget.last_error is None
    assert seg.dice(abl.data != 0, truth) > 0.9
    assert not widget.seed_btn.isChecked() and abl.mode == "paint"
    before = np.array(abl.data, copy=True)
    widget.seed_at(post.data_to_world((14, 200, 41)))  # outside the image
    _wait(qtbot, widget)
    assert "outside the image" in widget.last_error
    assert np.array_equal(abl.data, before)
    abl.undo()
    assert not abl.data.any()


def test_refine_rough_outline(setup):
    _viewer, widget, _session, qtbot = setup
    tumor = widget.ensure_labels_layer()
    truth = _tumor_truth()
    rough = seg.grow_shrink(truth, SPACING_ZYX, 2.0)
    with tumor.block_history():
        tumor.data_setitem(np.nonzero(rough), 1)
    widget.band_mm.setValue(3.5)
    widget.refine()
    _wait(qtbot, widget)
    assert widget.last_error is None
    assert seg.dice(tumor.data != 0, truth) > max(0.93, seg.dice(rough, truth) + 0.05)
    tumor.undo()
    assert np.array_equal(tumor.data != 0, rough)


def test_compare_two_readers(setup, tmp_path):
    viewer, widget, _session, qtbot = setup
    truth = _tumor_truth()
    pre = _layers.find_layer(viewer, "pre")
    kw = {
        "scale": pre.scale,
        "translate": pre.translate,
        "units": geometry.UNITS,
        "axis_labels": geometry.AXIS_LABELS,
    }
    viewer.add_labels(truth.astype(np.uint8), name="reader 1", **kw)
    viewer.add_labels(
        seg.grow_shrink(truth, SPACING_ZYX, 1.6).astype(np.uint8), name="reader 2", **kw
    )
    widget.cmp_a.setCurrentText("reader 1")
    widget.cmp_b.setCurrentText("reader 2")
    widget.compare()
    _wait(qtbot, widget)
    res = widget.last_comparison
    expected = seg.compare_masks(truth, seg.grow_shrink(truth, SPACING_ZYX, 1.6), SPACING_ZYX)
    assert res["dice"] == pytest.approx(expected["dice"]) and 0.7 < res["dice"] < 0.95
    assert res["volume_diff_ml"] > 0 and res["hd95_mm"] >= 1.6 - 0.01
    dis = [ly for ly in viewer.layers if _layers.role_of(ly) == "disagreement"]
    assert len(dis) == 1 and set(np.unique(dis[0].data)) == {0, 2}
    assert "Dice" in widget.cmp_result.text()
    for ly in viewer.layers:
        ly.visible = ly.name == "pre" or _layers.role_of(ly) == "disagreement"
    viewer.dims.order = (0, 1, 2)
    viewer.dims.set_point(0, float(pre.data_to_world((17, 0, 0))[0]))
    shown = _screenshot(viewer, "segment_compare.png", tmp_path)
    assert _count_colour(shown, (48, 128, 255), tol=60) > 100  # the blue "only B" shell
    widget.cmp_b.setCurrentText("reader 1")
    widget.compare()
    assert "different" in widget.last_error


def test_pick_an_existing_labels_layer(setup, tmp_path):
    viewer, widget, session, qtbot = setup
    pre = _layers.find_layer(viewer, "pre")
    truth = _tumor_truth().astype(np.uint8)
    loaded = viewer.add_labels(
        truth,
        name="tumor from file",
        scale=pre.scale,
        translate=pre.translate,
        units=geometry.UNITS,
        axis_labels=geometry.AXIS_LABELS,
    )
    wrong = viewer.add_labels(np.zeros((5, 5, 5), np.uint8), name="wrong grid")
    widget.structure.setCurrentIndex(0)
    assert widget.use_layer(wrong) is None and "grid" in widget.last_error
    assert widget.use_layer(loaded) is loaded
    assert _layers.find_layer(viewer, "tumor") is loaded
    np.testing.assert_allclose(loaded.colormap.map(1)[:3], [1.0, 140 / 255, 0.0], atol=0.01)
    qtbot.waitUntil(
        lambda: widget.last_stats is not None and widget.last_stats["voxels"] == int(truth.sum()),
        timeout=10000,
    )
    session.flush()
    assert np.array_equal(sitk.GetArrayFromImage(Case.load(session.folder).tumor), truth)


def test_preview_follows_the_drawing(setup):
    viewer, widget, _session, qtbot = setup
    tumor = widget.ensure_labels_layer()
    truth = _tumor_truth()
    keep = _draw_every(tumor, truth, 0, 6)
    widget.preview_interpolation()
    _wait(qtbot, widget)
    preview = _layers.find_layer(viewer, PREVIEW_ROLE)
    first = np.array(preview.data, copy=True)
    z0 = widget._preview["box"][0].start
    k = keep[0] + 3
    assert first[k - z0].any()  # slice k is previewed
    # the user draws slice k: the preview updates by itself, in the same layer
    vox = np.nonzero(truth[k])
    with tumor.block_history():
        tumor.data_setitem((np.full(len(vox[0]), k), *vox), 1)
    qtbot.waitUntil(
        lambda: (
            widget._worker is None
            and widget._preview is not None
            and not np.array_equal(widget._preview["layer"].data, first)
        ),
        timeout=10000,
    )
    assert _layers.find_layer(viewer, PREVIEW_ROLE) is preview
    assert not preview.data[k - widget._preview["box"][0].start].any()  # now drawn, not previewed
    assert preview.data[k + 1 - widget._preview["box"][0].start].any()
    # erasing back to a single slice: the preview goes away with a one-line message
    keep_only = np.asarray(tumor.data) * (np.arange(SHAPE[0]) != keep[0])[:, None, None]
    with tumor.block_history():
        tumor.data_setitem(np.nonzero(keep_only), 0)
    qtbot.waitUntil(lambda: widget._preview is None and widget._worker is None, timeout=10000)
    assert "two annotated slices" in widget.last_error
    assert _layers.find_layer(viewer, PREVIEW_ROLE) is None


def test_scrolling_does_not_recompute_but_undo_does(setup):
    viewer, widget, _session, qtbot = setup
    tumor = widget.ensure_labels_layer()
    _draw_every(tumor, _tumor_truth(), 0, 4)
    qtbot.waitUntil(
        lambda: (
            widget.last_stats is not None
            and widget.last_stats["voxels"] == int(np.count_nonzero(tumor.data))
        ),
        timeout=10000,
    )
    calls = []
    widget._readout_timer.timeout.connect(lambda: calls.append(1))
    tumor.undo()  # an undo before any scrolling counts too
    qtbot.waitUntil(
        lambda: widget.last_stats["voxels"] == int(np.count_nonzero(tumor.data)), timeout=10000
    )
    calls.clear()
    for z in (20.0, 25.0, 30.0):
        viewer.dims.set_point(0, z)
    qtbot.wait(400)
    assert calls == []  # scrolling through slices is not an edit
    tumor.undo()  # napari's Ctrl-Z: only set_data is emitted
    qtbot.waitUntil(
        lambda: widget.last_stats["voxels"] == int(np.count_nonzero(tumor.data)), timeout=10000
    )
    assert calls


def test_renal_mri_sample_workflow(make_napari_viewer, qtbot, tmp_path):
    """The bundled renal cryoablation case: outline the tumor on every 3rd slice and
    interpolate; click inside the ice ball; compare with the ground truth."""
    from napari_ablation.core import samples

    case = samples.load_sample("renal_mri")
    truth_tumor = sitk.GetArrayFromImage(case.tumor) != 0
    truth_abl = sitk.GetArrayFromImage(case.ablation) != 0
    case.tumor = case.ablation = None  # the user starts from scratch
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 820)
    session = CaseSession.of(viewer)
    session.set_case(case, tmp_path / "case")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    widget.structure.setCurrentIndex(0)
    tumor = widget.ensure_labels_layer()
    keep = _draw_every_mask(tumor, truth_tumor, 3)
    viewer.dims.order = (0, 1, 2)
    widget.preview_interpolation()
    _wait(qtbot, widget)
    widget.accept_interpolation()
    sp = tuple(tumor.scale)
    lo, hi = keep[0], keep[-1] + 1
    assert seg.dice(tumor.data[lo:hi] != 0, truth_tumor[lo:hi]) > 0.93
    widget.structure.setCurrentIndex(1)
    abl = widget.ensure_labels_layer()
    post = _layers.find_layer(viewer, "post")
    centre = np.argwhere(seg.grow_shrink(truth_abl, sp, -5.0)).mean(axis=0)
    widget.seed_at(post.data_to_world(centre))
    _wait(qtbot, widget)
    assert widget.last_error is None
    assert seg.dice(abl.data != 0, truth_abl) > 0.85
    qtbot.waitUntil(
        lambda: (
            widget.last_stats is not None
            and widget.last_stats["voxels"] == int(np.count_nonzero(abl.data))
        ),
        timeout=10000,
    )
    assert widget.last_stats["volume_ml"] == pytest.approx(
        seg.mask_volume_ml(truth_abl, sp), rel=0.15
    )
    # the side-by-side view the case opens with: pre + tumor | post + ablation
    z_world = float(tumor.data_to_world((keep[len(keep) // 2] + 1, 0, 0))[0])
    viewer.dims.set_point(0, z_world)
    import os
    import time

    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + 0.4
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)
    session.center_on_tumor()
    viewer.dims.set_point(0, z_world)
    target = tmp_path / "segment_renal_mri.png"
    viewer.screenshot(str(target), canvas_only=False)
    if os.environ.get("NAPARI_ABLATION_UPDATE_DOCS"):
        viewer.screenshot(str(DOCS / "segment_renal_mri.png"), canvas_only=False)
    shown = np.asarray(viewer.screenshot(canvas_only=True))
    rgb = shown[..., :3].astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    assert int(((r - b > 60) & (r > g + 20)).sum()) > 30  # tumor (orange over grey) visible
    assert int(((b - r > 60) & (g - r > 40)).sum()) > 30  # ablation zone (cyan over grey) visible


def _draw_every_mask(layer, truth, step):
    idx = np.flatnonzero(truth.any(axis=(1, 2)))
    keep = np.arange(idx[0] + 1, idx[-1], step)
    for k in keep:
        vox = np.nonzero(truth[k])
        with layer.block_history():
            layer.data_setitem((np.full(len(vox[0]), k), *vox), 1)
    return keep


def test_correction_buttons_are_disabled_while_one_runs(setup):
    """UAT s4 N8: Smooth then a quick click on Grow gave "busy: wait" as an error; while a
    correction runs the job buttons are disabled (a click does nothing), and come back after."""
    from napari.utils.notifications import notification_manager
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer, widget, _session, qtbot = setup
    tumor = widget.ensure_labels_layer()
    with tumor.block_history():
        tumor.data_setitem(np.nonzero(_tumor_truth()), 1)
    viewer.layers.selection.active = tumor
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        QTest.mouseClick(widget.smooth_btn, Qt.LeftButton)
        assert widget._worker is not None
        for b in (widget.grow_btn, widget.fill_btn, widget.islands_btn, widget.undo_btn):
            assert not b.isEnabled()
        QTest.mouseClick(widget.grow_btn, Qt.LeftButton)  # a click on a disabled button
        _wait(qtbot, widget)
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert widget.last_error is None and not seen, [n.message for n in seen]
    assert all(b.isEnabled() for b in widget._job_buttons)


def test_readout_shows_the_reports_diameter_and_the_preview_says_adds(setup):
    """UAT s7 N7a/b, N12a: the live readout's diameter is the margin report's "Tumor max 3D
    diameter" (sub-voxel surface), under that name: one figure on screen, not a diameter
    between voxel centres beside the report's; the preview note counts the voxels it adds,
    and says so."""
    from napari.utils.notifications import notification_manager

    from napari_ablation.core.margin import analyze_margin

    viewer, widget, _session, qtbot = setup
    widget.structure.setCurrentIndex(0)
    tumor = widget.ensure_labels_layer()
    truth = _tumor_truth()
    _draw_every(tumor, truth, 0, 3)
    drawn = int(np.count_nonzero(tumor.data))
    messages = []

    def heard(n):
        messages.append(n.message)

    notification_manager.notification_ready.connect(heard)
    viewer.dims.order = (0, 1, 2)
    try:
        widget.preview_interpolation()
        _wait(qtbot, widget)
    finally:
        notification_manager.notification_ready.disconnect(heard)
    added = int(np.count_nonzero(_layers.find_layer(viewer, PREVIEW_ROLE).data))
    ml = seg.mask_volume_ml(_layers.find_layer(viewer, PREVIEW_ROLE).data, SPACING_ZYX)
    assert any(
        m.startswith(f"interpolation preview: adds {added} voxels ({ml:.2f} ml)") for m in messages
    ), messages
    widget.accept_interpolation()
    assert int(np.count_nonzero(tumor.data)) == drawn + added

    qtbot.waitUntil(
        lambda: widget.last_stats is not None and widget.last_stats["voxels"] == drawn + added,
        timeout=10000,
    )
    text = widget.readout.text()
    # the margin report's figure for the same labels, under the report's name
    mask = geometry.image_from_array(np.asarray(tumor.data, np.uint8), SPACING_ZYX, (0, 0, 0))
    report_d = analyze_margin(mask, mask, None, 5.0).tumor_max_diameter_mm
    assert widget.last_stats["max_diameter_mm"] == pytest.approx(report_d, abs=1e-9)
    assert f"max 3D diameter {report_d:.1f} mm" in text, text
    assert "voxel centres" not in text and "report" in widget.readout.toolTip()
    # (the diameter between voxel centres, the figure shown before, is another one)
    assert seg.max_diameter_mm(np.asarray(tumor.data), SPACING_ZYX) < report_d - 0.05


def test_interpolating_a_fully_drawn_structure_is_information_not_an_error(setup, monkeypatch):
    """Shift-I where every slice is drawn changes nothing: an information line, not a red
    error (UAT s8 N10c), and the labels stay as they are."""
    viewer, widget, _session, qtbot = setup
    told = {"info": [], "error": []}
    monkeypatch.setattr(_layers, "notify_info", lambda text: told["info"].append(str(text)))
    monkeypatch.setattr(_layers, "notify_error", lambda exc: told["error"].append(str(exc)))
    tumor = widget.ensure_labels_layer()
    truth = _tumor_truth()
    with tumor.block_history():
        tumor.data_setitem(tuple(np.array(v) for v in np.nonzero(truth)), 1)
    before = np.array(tumor.data, copy=True)
    widget._interpolate_key(viewer)  # Shift-I
    _wait(qtbot, widget)
    assert "already annotated" in widget.last_error
    assert any("already annotated" in t for t in told["info"]) and not told["error"]
    assert np.array_equal(tumor.data, before) and _layers.find_layer(viewer, PREVIEW_ROLE) is None
    # a real error is still an error
    tumor.data = np.zeros(SHAPE, np.uint8)
    widget.preview_interpolation()
    _wait(qtbot, widget)
    assert told["error"] and "empty" in told["error"][-1]
