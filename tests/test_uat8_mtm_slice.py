"""UAT s8 N3: on thick slices the MTM point lies on the sub-voxel surface beyond the last
labelled slice; the report's axial panel and *Go to MTM* show the nearest slice that holds
tumor voxels and say where the point is (one rule: core.report.mtm_slices). The GUI test
runs a real napari viewer (xvfb-run)."""

import numpy as np
import pytest
import SimpleITK as sitk
from _gui import idle, with_case
from qtpy.QtCore import Qt

from napari_ablation.core import report
from napari_ablation.core.case import Case
from napari_ablation.core.margin import analyze_margin
from napari_ablation.widgets import _layers

SPACING = (1.0, 1.0, 3.0)  # 3 mm slices


def _ball(centre, r, size=(40, 40, 14), value=1, scan=False):
    z, y, x = np.indices(size[::-1]).astype(float)
    d = np.sqrt(
        (x * SPACING[0] - centre[0]) ** 2
        + (y * SPACING[1] - centre[1]) ** 2
        + (z * SPACING[2] - centre[2]) ** 2
    )
    arr = (d <= r).astype(np.int16 if scan else np.uint8) * value
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    return img


# tumor r 6 mm whose top (26 mm) ends between the slices at 24 and 27 mm; the ablation
# zone (r 11 mm) is centred 3 mm lower, so the minimal margin is at the tumor's top
TUMOR = _ball((20, 20, 20.0), 6.0)
ABLATION = _ball((20, 20, 17.0), 11.0)


@pytest.fixture(scope="module")
def res():
    return analyze_margin(TUMOR, ABLATION)


def test_the_slice_through_the_mtm_point_holds_no_tumor(res):
    """The phantom does what N3 needs: the MTM point is beyond the top labelled slice."""
    c = res.pre_reference.TransformPhysicalPointToContinuousIndex(res.min_margin_point_lps)
    assert sitk.GetArrayViewFromImage(TUMOR)[round(c[2])].sum() == 0
    assert res.min_margin_point_lps[2] > 24.0 + SPACING[2] / 2


def test_report_panels_show_the_nearest_tumor_slice_and_say_where_the_point_is(res):
    index, note = report.mtm_slices(res)
    assert index[0] == 8  # z = 24 mm, the top slice holding tumor voxels
    above = res.min_margin_point_lps[2] - 24.0
    assert note == f"MTM point between slices, {above:.1f} mm above"
    axial, coronal, sagittal = report.slice_planes(res)
    for plane in (axial, coronal, sagittal):
        assert (plane["classes"] != 0).any()  # tumor with its margin colours
    assert axial["note"] == note and coronal["note"] == sagittal["note"] == ""
    fig = report.plot_slices(res)
    assert note in fig.axes[0].get_title()


def test_a_point_within_its_slice_is_shown_there_without_a_note():
    res = analyze_margin(_ball((20, 20, 19.0), 6.0), _ball((20, 20, 16.0), 11.0))
    index, note = report.mtm_slices(res)
    c = res.pre_reference.TransformPhysicalPointToContinuousIndex(res.min_margin_point_lps)
    assert index[0] == round(c[2]) and note == ""


def test_go_to_mtm_shows_the_nearest_tumor_slice_with_its_margin_colours(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari_ablation.widgets.margin import MarginWidget

    pre = _ball((20, 20, 20.0), 14.0, value=400, scan=True)
    case = Case(pre=pre, post=pre, tumor=TUMOR, ablation=ABLATION, info={"name": "n3"})
    w = with_case(make_napari_viewer, tmp_path, monkeypatch, case, MarginWidget, name="Margins")
    viewer, session = w.viewer, w.session
    w.run()
    qtbot.waitUntil(lambda: idle(session, w), timeout=120000)
    said = []
    monkeypatch.setattr(_layers, "notify_info", lambda m: said.append(str(m)))
    viewer.dims.point = (0.0, 0.0, 0.0)
    qtbot.mouseClick(w.center_btn, Qt.LeftButton)
    tumor = _layers.find_layer(viewer, "tumor")
    z = int(np.round(tumor.world_to_data(viewer.dims.point)[0]))
    assert z == 8 and np.asarray(tumor.data)[z].any()
    margin = next(ly for ly in viewer.layers if _layers.role_of(ly) == "margin")
    mz = int(np.round(margin.world_to_data(viewer.dims.point)[0]))
    assert (np.asarray(margin.data)[mz] != 0).any()  # green/yellow on the shown slice
    # the marker is drawn on that slice, though the point lies between it and the next
    # (UAT s13 N2: napari draws a point within half a slice of the slider)
    pts = _layers.find_layer(viewer, "mtm_point")
    qtbot.waitUntil(lambda: len(pts._view_data) == 1, timeout=5000)
    assert said == [report.mtm_slices(w.result)[1]] and "between slices" in said[0]
