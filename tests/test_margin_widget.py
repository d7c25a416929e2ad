"""Margin widget in a real viewer: a phantom case with green, yellow and red regions.

Run with ``xvfb-run -a python -m pytest tests/test_margin_widget.py``.
"""

from __future__ import annotations

import json

import _gui
import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import margin as M
from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers

SHIFT = (0.0, 5.0, 0.0)  # registration pre -> post (ITK): post = pre + SHIFT


def phantom_case(offset_mm: float = 6.0) -> Case:
    """Tumor r=8 mm; ablation r=12 mm centred ``offset_mm`` to its left (pre space):
    MTM = 12 - 8 - 6 = -2 mm by default."""
    c = np.array([0.3, -0.4, 0.2])
    sp = (1.0, 1.0, 2.0)
    size = (48, 48, 24)
    origin = (c - [24, 24, 24]).tolist()
    tumor = M.sphere_image(size, sp, origin, c, 8.0)
    pre = sitk.Cast(M.sphere_image(size, sp, origin, c, 20.0), sitk.sitkFloat32) * 80.0 + 20.0
    pre = pre + sitk.Cast(tumor, sitk.sitkFloat32) * 60.0
    post_origin = (np.asarray(origin) + SHIFT).tolist()
    c_post = c + [offset_mm, 0, 0] + SHIFT
    ablation = M.sphere_image(size, sp, post_origin, c_post, 12.0)
    post = (
        sitk.Cast(M.sphere_image(size, sp, post_origin, c + SHIFT, 20.0), sitk.sitkFloat32) * 80.0
    )
    post = post - sitk.Cast(ablation, sitk.sitkFloat32) * 60.0 + 20.0
    case = Case(
        pre=pre,
        post=post,
        tumor=tumor,
        ablation=ablation,
        transform=sitk.Euler3DTransform((0, 0, 0), 0, 0, 0, SHIFT),
    )
    case.settings["threshold_mm"] = 5.0
    case.info.update(name="phantom", modality="MR")
    case.qa = {"verdict": "acceptable", "comment": "phantom"}
    return case


def _setup(make_napari_viewer, tmp_path, monkeypatch, show=False, case=None):
    from napari_ablation.widgets.margin import MarginWidget

    case = phantom_case() if case is None else case
    w = _gui.with_case(
        make_napari_viewer, tmp_path, monkeypatch, case, MarginWidget, name="Margin", show=show
    )
    return w.viewer, w


@pytest.fixture()
def widget(make_napari_viewer, tmp_path, monkeypatch):
    return _setup(make_napari_viewer, tmp_path, monkeypatch)


def _compute(w, qtbot, previous=None):
    w.run()
    qtbot.waitUntil(
        lambda: (
            w.result is not None
            and w.result is not previous
            and w._worker is None
            and w.uncertainty is not None  # its MTM interval shown too
            and w.model.interval_current
        ),
        timeout=60000,
    )
    return w.result


def test_margin_widget_layers_table_and_exports(widget, qtbot, tmp_path):
    viewer, w = widget
    assert w.tumor_combo.currentText() == "tumor" and w.ablation_combo.currentText() == "ablation"
    assert w.threshold.value() == 5.0
    res = _compute(w, qtbot)
    assert res.min_margin_mm == pytest.approx(-2.0, abs=0.5)
    assert res.min_margin_octant.startswith("right")
    assert w.big.text().startswith("MTM = -2.")
    # margin layer on the pre grid, three classes and the uncertain one, fixed colours
    lab = _layers.find_layer(viewer, "margin")
    assert {0, 1, 3} <= set(np.unique(lab.data)) <= {0, 1, 2, 3, 4}
    pre = _layers.find_layer(viewer, "pre")
    # a box of the pre grid, aligned with its voxels, holding the classes of the whole grid
    import _gui

    assert np.array_equal(
        _gui.margin_on_grid(lab, pre),
        sitk.GetArrayFromImage(w.uncertainty.margin_labels_image(res)),
    )
    for k, hexcol in _layers.MARGIN_COLORS.items():
        rgba = np.asarray(lab.colormap.map(np.array([k])))[0]
        assert np.allclose(
            rgba[:3], [int(hexcol[i : i + 2], 16) / 255 for i in (1, 3, 5)], atol=0.01
        )
    # the ablation outline sits in pre space: shifted back by the registration
    outline = _layers.find_layer(viewer, "ablation_registered")
    assert outline.contour == 1
    idx = np.argwhere(outline.data > 0).mean(axis=0)
    centre_world = np.asarray(outline.data_to_world(idx))
    assert centre_world == pytest.approx(
        [0.2, -0.4, 0.3 + 6.0], abs=0.6
    )  # (z, y, x): pre-space centre
    # the MTM point and the centring button
    pts = _layers.find_layer(viewer, "mtm_point")
    assert np.allclose(pts.data_to_world(pts.data[0]), res.min_margin_point_lps[::-1])
    # on the pre grid: napari still steps through the pre slices one by one
    assert np.allclose(pts.scale, _layers.find_layer(viewer, "margin").scale)
    viewer.dims.point = (0, 0, 0)
    w.center_btn.click()
    assert np.allclose(viewer.dims.point, res.min_margin_point_lps[::-1], atol=2.0)
    # table + clipboard
    assert w.table.rowCount() == len(res.rows()) + len(w.uncertainty.rows())
    w.copy_btn.click()
    from qtpy.QtWidgets import QApplication

    clip = QApplication.clipboard().text()
    assert clip.startswith("figure\tvalue\tunit") and "Minimal treatment margin" in clip
    # exports agree with the result
    w.export(tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert doc["min_margin_mm"] == pytest.approx(res.min_margin_mm, abs=1e-3)
    assert doc["registration_qa"]["verdict"] == "acceptable"
    w.export(tmp_path / "m.csv")
    assert "Minimal treatment margin" in (tmp_path / "m.csv").read_text(encoding="utf-8")
    w.export(tmp_path / "m.html")
    html = (tmp_path / "m.html").read_text(encoding="utf-8")
    assert "acceptable" in html and html.count("data:image/png;base64,") >= 2
    w.export(tmp_path / "m.pdf", screenshot=False)
    assert (tmp_path / "m.pdf").read_bytes().startswith(b"%PDF")


def test_margin_widget_reruns_after_an_edit_and_threshold(widget, qtbot):
    viewer, w = widget
    first = _compute(w, qtbot)
    # grow the ablation zone to the right (a bulk edit): the margin must rise, off the GUI thread
    abl = _layers.find_layer(viewer, "ablation")
    data = np.asarray(abl.data)
    z, y, x = np.argwhere(data > 0).T
    region = (
        slice(z.min(), z.max() + 1),
        slice(y.min(), y.max() + 1),
        slice(max(x.min() - 8, 0), x.max() + 1),
    )
    new = data.copy()
    new[region] = 1
    abl.data = new
    qtbot.waitUntil(lambda: w.result is not first and w._worker is None, timeout=30000)
    assert w.result.min_margin_mm > first.min_margin_mm + 1.0
    # the threshold preset reruns the classes (no red now, more yellow at 10 mm)
    second = w.result
    w.set_threshold(10.0)
    qtbot.waitUntil(lambda: w.result is not second and w._worker is None, timeout=30000)
    assert w.result.threshold_mm == 10.0
    assert (
        w.result.volume_fraction["covered_with_margin"]
        < second.volume_fraction["covered_with_margin"] + 1e-9
    )


def test_threshold_spin_box_refuses_a_negative_threshold(widget, qtbot):
    """UAT s7 N1: the spin box allowed -20 mm, where green (m >= t) and red (m < 0) overlap:
    typed or stepped below 0, it stays at 0 and the classes still partition the tumor."""
    from qtpy.QtCore import Qt

    from napari_ablation.core import coverage

    _viewer, w = widget
    spin = w.threshold
    assert spin.minimum() == coverage.THRESHOLD_MIN_MM == 0.0
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "-5")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert spin.value() >= 0.0 and w.model.threshold >= 0.0
    w.set_threshold(0.0)
    qtbot.keyClick(spin, Qt.Key.Key_Down)
    assert spin.value() == 0.0 and w.model.threshold == 0.0
    res = _compute(w, qtbot)
    assert res.threshold_mm == 0.0
    assert sum(res.volume_fraction.values()) == pytest.approx(1.0, abs=1e-9)


def test_an_emptied_tumor_withdraws_the_figures_and_layers_until_it_is_back(
    widget, qtbot, monkeypatch
):
    """UAT s7 N5: a correction that empties the tumor left the old margin map, legend, table
    and Copy live beside "the tumor mask is empty"; they go (the layers hidden at once, then
    removed), and come back with the tumor."""
    from napari_ablation.core import coverage

    viewer, w = widget
    monkeypatch.setattr(_layers, "notify_error", lambda exc: None)
    first = _compute(w, qtbot)
    outputs = [ly for ly in viewer.layers if _layers.role_of(ly) == "margin"]
    assert outputs and outputs[0].visible and w.table.rowCount() > 0
    green = w.legend_labels[coverage.CLASS_LABELS["covered_with_margin"]]
    assert "%" in green.text()
    assert " ml" in w.legend_labels[coverage.UNCERTAIN_LABEL].text()  # the interval's volume
    tl = _layers.find_layer(viewer, "tumor")
    kept = np.array(tl.data, copy=True)
    tl.data = np.zeros_like(kept)  # a correction that removes every voxel
    qtbot.waitUntil(lambda: "empty" in w.status.text() and w._worker is None, timeout=30000)
    # hidden at once on the model's failure (then removed in steps)
    qtbot.waitUntil(
        lambda: not any(ly.visible for ly in viewer.layers if _layers.role_of(ly) == "margin"),
        timeout=10000,
    )
    assert w.table.rowCount() == 0 and w.interval.text() == "" and w.where.text() == ""
    assert green.text() == coverage.CLASS_NAMES["covered_with_margin"]
    # nor the uncertain class's volume of the earlier interval (UAT s8)
    assert " ml" not in w.legend_labels[coverage.UNCERTAIN_LABEL].text()
    for b in (w.copy_btn, w.center_btn, w.surface_btn, *w.export_btns.values()):
        assert not b.isEnabled(), b.text()
    tl.data = kept  # the tumor is back: a new analysis, its figures and layers shown
    qtbot.waitUntil(
        lambda: w.result is not first and w._worker is None and w.table.rowCount() > 0,
        timeout=60000,
    )
    qtbot.waitUntil(lambda: _layers.find_layer(viewer, "margin") is not None, timeout=30000)
    assert _layers.find_layer(viewer, "margin").visible  # made again from the new analysis
    assert "%" in green.text() and w.copy_btn.isEnabled()
    assert w.result.min_margin_mm == pytest.approx(first.min_margin_mm, abs=1e-9)


def test_margin_widget_bad_input_is_one_notification(widget, qtbot, monkeypatch):
    viewer, w = widget
    messages = []
    monkeypatch.setattr(_layers, "notify_error", lambda exc: messages.append(str(exc)))
    abl = _layers.find_layer(viewer, "ablation")
    abl.data = np.zeros_like(abl.data)
    w.run()
    qtbot.waitUntil(lambda: bool(messages) and w._worker is None, timeout=30000)
    assert "ablation mask is empty" in messages[0]
    assert w.result is None and _layers.find_layer(viewer, "margin") is None


def test_margin_widget_screenshot_shows_three_colours(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    # a shown window, as a user has; the zone 8 mm off (MTM -4 mm): a red crescent up to 4 mm
    # wide, most of it red beyond the uncertain band the MTM interval draws (with the default
    # -2 mm case nearly every red voxel is within the registration error of 0: uncertain)
    viewer, w = _setup(
        make_napari_viewer, tmp_path, monkeypatch, show=True, case=phantom_case(offset_mm=8.0)
    )
    res = _compute(w, qtbot)
    # the axial slice through the tumor centre cuts across the ablation boundary: all three classes
    for role in ("tumor", "ablation", "post"):
        _layers.find_layer(viewer, role).visible = False
    lab = _layers.find_layer(viewer, "margin")
    centre = np.argwhere(np.asarray(lab.data) > 0).mean(axis=0)
    viewer.dims.set_point(0, float(lab.data_to_world(centre)[0]))
    viewer.reset_view()
    shot = viewer.screenshot(str(tmp_path / "margin.png"), canvas_only=True, flash=False)
    px = np.asarray(shot)[..., :3].reshape(-1, 3).astype(int)

    greenish = np.sum((px[:, 1] > px[:, 0] + 30) & (px[:, 1] > px[:, 2] + 30))
    yellowish = np.sum((px[:, 0] > 120) & (px[:, 1] > 110) & (px[:, 2] < px[:, 1] - 60))
    reddish = np.sum((px[:, 0] > px[:, 1] + 60) & (px[:, 0] > px[:, 2] + 60))
    assert greenish > 20 and yellowish > 20 and reddish > 20, (greenish, yellowish, reddish)
    assert res.volume_fraction["uncovered"] > 0


def test_margin_widget_on_the_renal_sample_case(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """The bundled renal MRI sample (thin negative margin medially):
    numbers and the three colours."""
    from napari_ablation.core import samples

    case = samples.load_sample("renal_mri")
    case.transform = samples.true_transform(case)
    viewer, w = _setup(make_napari_viewer, tmp_path, monkeypatch, show=True, case=case)
    res = _compute(w, qtbot)
    assert abs(res.min_margin_mm - case.info["true_min_margin_mm"]) <= 0.5
    lab = _layers.find_layer(viewer, "margin")
    assert {0, 1, 2, 3} <= set(np.unique(lab.data)) <= {0, 1, 2, 3, 4}
    # the user's side-by-side grid stays (the case opened with it): the margin view in the
    # pre cell
    g = _layers.grid(viewer)
    assert g.enabled
    layers = list(viewer.layers)
    pre = _layers.find_layer(viewer, "pre")
    assert g.position(layers.index(lab), layers) == g.position(layers.index(pre), layers)
    # a coronal view through the minimal margin point, zoomed on the tumor (zoomed in, Go to
    # MTM centres on the point; the fitted grid stays fitted)
    viewer.dims.order = (1, 0, 2)
    _layers.camera(viewer).zoom *= 3
    w.center_on_mtm()
    shot = viewer.screenshot(str(tmp_path / "renal_margin.png"), canvas_only=True, flash=False)
    px = np.asarray(shot)[..., :3].reshape(-1, 3).astype(int)
    greenish = np.sum((px[:, 1] > px[:, 0] + 30) & (px[:, 1] > px[:, 2] + 30))
    yellowish = np.sum((px[:, 0] > 120) & (px[:, 1] > 110) & (px[:, 2] < px[:, 1] - 60))
    reddish = np.sum((px[:, 0] > px[:, 1] + 60) & (px[:, 0] > px[:, 2] + 60))
    # the thin uncovered rim is in doubt under the assumed registration error: uncertain (blue)
    bluish = np.sum((px[:, 2] > px[:, 0] + 50) & (px[:, 2] > px[:, 1] + 20))
    assert greenish > 20 and yellowish > 20 and reddish + bluish > 5, (
        greenish,
        yellowish,
        reddish,
        bluish,
    )


def test_layer_choices_follow_roles_when_layers_arrive_one_by_one(make_napari_viewer):
    from napari_ablation.core import geometry as g
    from napari_ablation.widgets.margin import MarginWidget

    viewer = make_napari_viewer()
    w = MarginWidget(viewer)  # opened before any case is loaded (as in the demo)
    ref = g.image_from_array(np.zeros((4, 5, 6), np.float32), (3.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    viewer.add_labels(
        np.zeros((4, 5, 6), np.uint8), **_layers.labels_layer_kwargs(ref, "tumor", "tumor")
    )
    viewer.add_labels(
        np.zeros((4, 5, 6), np.uint8), **_layers.labels_layer_kwargs(ref, "ablation", "ablation")
    )
    assert w.tumor_combo.currentText() == "tumor"
    assert w.ablation_combo.currentText() == "ablation"


def test_mtm_stays_in_sight_above_the_scrolled_panel(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """In a short dock (four docks stacked at 1920 x 1080) the MTM line is not scrolled away,
    and the table's names carry their full text where the column elides them."""
    from qtpy.QtWidgets import QScrollArea

    _viewer, w = _setup(make_napari_viewer, tmp_path, monkeypatch, show=True)
    res = _compute(w, qtbot)
    w.resize(300, 120)
    qtbot.wait(100)
    area = w.findChild(QScrollArea)
    assert not area.isAncestorOf(w.big) and w.big.isVisible()
    assert w.big.geometry().bottom() <= w.height() and f"{res.min_margin_mm:.1f}" in w.big.text()
    names = [w.table.item(i, 0) for i in range(w.table.rowCount())]
    assert all(it.toolTip() == it.text() for it in names)


@pytest.mark.parametrize("grid_on", [True, False])
def test_compute_margins_keeps_the_users_grid_and_layers(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, grid_on
):
    """Compute margins (a real click) leaves napari's grid, every layer's visibility and the
    active layer as the user set them: with the grid on the margin view joins the pre cell
    (post keeps its own), with it off it lies over pre and the raw post space under pre."""
    import _gui

    from napari_ablation.widgets.session import CaseSession

    viewer, w = _setup(make_napari_viewer, tmp_path, monkeypatch, show=True)
    session = CaseSession.of(viewer)
    with qtbot.capture_exceptions() as errors:
        qtbot.waitUntil(lambda: len(viewer.layers) == 4, timeout=30000)
        g = _layers.grid(viewer)
        g.enabled = grid_on
        tumor = session.labels_layer("tumor")
        viewer.layers.selection.active = tumor
        visible = {ly.name: ly.visible for ly in viewer.layers}
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
        assert g.enabled == grid_on
        assert {n: viewer.layers[n].visible for n in visible} == visible
        assert viewer.layers.selection.active is tumor
        layers = list(viewer.layers)
        roles = {r: _layers.find_layer(viewer, r) for r in ("pre", "post", "ablation", "margin")}
        idx = {r: layers.index(ly) for r, ly in roles.items()}
        assert idx["post"] < idx["pre"] and idx["ablation"] < idx["pre"] < idx["margin"]
        for role in ("ablation_registered", "mtm_point"):
            assert layers.index(_layers.find_layer(viewer, role)) > idx["margin"]
        if grid_on:
            cell = lambda r: g.position(idx[r], layers)  # noqa: E731
            assert cell("margin") == cell("pre") != cell("post") == cell("ablation")
        shot = viewer.screenshot(str(tmp_path / "margins.png"), canvas_only=True, flash=False)
        px = np.asarray(shot)[..., :3].reshape(-1, 3).astype(int)
        assert np.sum((px[:, 1] > px[:, 0] + 30) & (px[:, 1] > px[:, 2] + 30)) > 20  # green
    assert not errors, [str(e[1]) for e in errors]
