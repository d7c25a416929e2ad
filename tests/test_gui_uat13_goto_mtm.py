"""UAT s13 (run under xvfb-run). N2: on the liver CT, *Go to MTM* then *View > coronal*
showed no minimal margin marker: napari's slider started on the raw post's grid, so the
slice went to y = 18.6 mm between pre's voxel centres (18.3, 19.0) and the marker (at 18.23,
drawn within half a voxel of the slider) was left out. N4: with the grid on, *Go to MTM*
centred the pre cell on the point (a quarter of pre off the canvas) and picking the plane
already shown in *View* did not fit it back. N3: after *3D surfaces* and back to 2D, the
renal MRI's slider stepped 1 mm through 3 mm slices."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from napari_ablation.core import report
from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import SURFACE_ROLES

pytestmark = pytest.mark.gui


def _settle(qtbot, ms=300):
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    qtbot.wait(ms)


def _pick_plane(qtbot, load, name: str) -> None:
    combo = load.plane
    i = combo.findData(name)
    combo.setCurrentIndex(i)
    combo.activated.emit(i)  # what a user's pick emits
    _settle(qtbot)


def _docks(make_napari_viewer, qtbot, tmp_path, monkeypatch, key: str):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1400, 900))
    _d, load = viewer.window.add_plugin_dock_widget("napari-ablation", "1. Load case")
    session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path, key)
    _settle(qtbot)
    return viewer, load, session, w


def _on_canvas(viewer, layer, world) -> bool:
    """The world point (z, y, x) is drawn inside the canvas, in ``layer``'s grid cell."""
    viewer.layers.selection.active = layer
    p = _gui.world_to_canvas(viewer, world)
    return _gui.canvas(viewer).rect().contains(QPoint(p.x(), p.y()))


def _corners(layer) -> list[np.ndarray]:
    lo, hi = (np.asarray(e, float) for e in layer.extent.world)
    return [np.where([(k >> a) & 1 for a in range(3)], hi, lo) for k in range(8)]


def test_go_to_mtm_shows_the_marker_in_every_plane_on_the_liver(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer, load, _session, w = _docks(make_napari_viewer, qtbot, tmp_path, monkeypatch, "liver_ct")
    with qtbot.capture_exceptions() as errors:
        _gui.grid_off(viewer, qtbot)
        _settle(qtbot)
        mtm = np.array(w.result.min_margin_point_lps, float)[::-1]  # (z, y, x)
        _gui.click(qtbot, w.center_btn)
        _settle(qtbot)
        pre = _layers.find_layer(viewer, "pre")
        pts = _layers.find_layer(viewer, "mtm_point")
        index, _note = report.mtm_slices(w.result)
        centre = np.asarray(pre.data_to_world(np.asarray(index, float)), float)
        for name in ("axial", "coronal", "sagittal", "axial"):
            _pick_plane(qtbot, load, name)
            sliced = int(viewer.dims.not_displayed[0])
            # the pre slice shown is the MTM's (the slider may sit up to half a pre voxel
            # off its centre: napari steps by the finest grid of all layers) ...
            assert abs(viewer.dims.point[sliced] - centre[sliced]) < 0.5 * pre.scale[sliced]
            shown = np.round(pre.world_to_data(viewer.dims.point)).astype(int)
            assert shown[sliced] == index[sliced], name
            # ... and its marker is drawn there, full size, at the MTM point in-plane
            assert len(pts._view_data) == 1, name
            assert pts._view_size[0] == pytest.approx(pts.size[0]), name
            drawn = np.asarray(pts.data_to_world(pts.data[0]), float)
            for d in viewer.dims.displayed:
                assert drawn[d] == pytest.approx(mtm[d], abs=1e-6), name
            assert _on_canvas(viewer, pts, drawn), name
        # in 3D the marker is where the point is
        _gui.toggle_ndisplay(viewer, qtbot)
        _settle(qtbot)
        drawn = np.asarray(pts.data_to_world(pts.data[0]), float)
        assert np.allclose(drawn, mtm, atol=1e-6)
        # the analysis' point itself is untouched
        assert np.allclose(np.asarray(w.result.min_margin_point_lps)[::-1], mtm, atol=1e-9)
    assert not errors, errors


def test_grid_go_to_mtm_and_view_keep_both_images_on_the_canvas(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer, load, _s, w = _docks(make_napari_viewer, qtbot, tmp_path, monkeypatch, "renal_mri")
    assert _layers.grid(viewer).enabled  # pre | post side by side (the default)
    pre = _layers.find_layer(viewer, "pre")
    post = _layers.find_layer(viewer, "post")
    pts = _layers.find_layer(viewer, "mtm_point")

    def whole(layer) -> bool:
        return all(_on_canvas(viewer, layer, c) for c in _corners(layer))

    with qtbot.capture_exceptions() as errors:
        assert whole(pre) and whole(post)
        _gui.click(qtbot, w.center_btn)
        _settle(qtbot)
        mtm = np.asarray(w.result.min_margin_point_lps, float)[::-1]
        assert _on_canvas(viewer, pts, mtm)
        assert len(pts._view_data) == 1  # its marker drawn on the slice shown
        assert whole(pre) and whole(post)  # a quarter of pre was off the left edge
        # zoomed in away from the images, the plane already shown picked again: fitted
        cam = _layers.camera(viewer)
        cam.zoom *= 4
        cam.center = tuple(c + 60.0 for c in cam.center)
        _settle(qtbot)
        assert not whole(pre)
        _pick_plane(qtbot, load, "axial")
        assert whole(pre) and whole(post)
    assert not errors, errors


@pytest.mark.xfail(
    strict=True,
    reason="UAT s13 N3 left: putting napari's slider range back on pre's grid after each "
    "change re-sliced every layer twice per recompute (Ctrl-Z + recompute 77 -> 301 ms of "
    "GUI-thread work); reverted",
)
def test_the_slider_steps_through_pre_slices_after_3d_surfaces(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer, _ld, session, w = _docks(make_napari_viewer, qtbot, tmp_path, monkeypatch, "renal_mri")
    pre = _layers.find_layer(viewer, "pre")
    axis = int(viewer.dims.not_displayed[0])  # the axial slices (z)
    n_slices = pre.data.shape[axis]

    def pre_slice_positions() -> bool:
        rng = viewer.dims.range[axis]
        first = pre.translate[axis]
        return rng.step == pytest.approx(pre.scale[axis]) and (
            (first - rng.start) / rng.step == pytest.approx(round((first - rng.start) / rng.step))
        )

    with qtbot.capture_exceptions() as errors:
        assert pre_slice_positions()
        _gui.click(qtbot, w.surface_btn)  # "3D surfaces"
        qtbot.waitUntil(
            lambda: (
                sum(_layers.role_of(ly) in SURFACE_ROLES for ly in viewer.layers) == 2
                and _gui.idle(session, w)
            ),
            timeout=120_000,
        )
        _settle(qtbot)
        _gui.toggle_ndisplay(viewer, qtbot)  # napari's 2D/3D button: back to 2D
        _settle(qtbot)
        assert viewer.dims.ndisplay == 2
        assert pre_slice_positions()
        assert viewer.dims.nsteps[axis] <= n_slices + 1  # 118 positions for 40 slices before
        # one step of the slider (napari's Right arrow key) shows the next pre slice
        k = int(np.round(pre.world_to_data(viewer.dims.point)[axis]))
        assert k + 1 < n_slices
        _gui.key(viewer, qtbot, Qt.Key_Right)
        _settle(qtbot)
        assert int(np.round(pre.world_to_data(viewer.dims.point)[axis])) == k + 1
    assert not errors, errors
