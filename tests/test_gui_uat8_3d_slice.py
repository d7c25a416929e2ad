"""3D -> 2D moved the axial slice (-7.5 -> -11.5 mm: napari puts the slice at the depth of
the 3D camera, which the 3D framing moved): 2D comes back on the slice the user was on, or
on the one Go to MTM chose in 3D (run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest

from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def _settle(qtbot, ms=400):
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    qtbot.wait(ms)


def test_3d_and_back_keeps_the_users_slice(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1400, 900))
    _session, marg = _gui.margins_on_sample(viewer, qtbot, tmp_path, "renal_mri")
    _settle(qtbot)
    dims = viewer.dims

    def sliced(axis):  # the slice shown along the axis not displayed
        return float(dims.point[axis])

    with qtbot.capture_exceptions() as errors:
        # the user's axial slice: a few slices above the tumor's centre
        step = float(dims.range[0].step)
        dims.set_point(0, float(dims.point[0]) + 4 * step)
        before = sliced(0)
        for _round in range(2):  # the first switch makes the 3D surfaces and frames them
            _gui.toggle_ndisplay(viewer, qtbot)
            _settle(qtbot, 800)
            assert dims.ndisplay == 3
            _gui.toggle_ndisplay(viewer, qtbot)
            _settle(qtbot)
            assert dims.ndisplay == 2 and tuple(dims.order) == (0, 1, 2)
            assert sliced(0) == pytest.approx(before), (dims.point, before)
        # the same from a sagittal view (Roll): its order and its slice come back
        _gui.click(qtbot, viewer.window._qt_viewer.viewerButtons.rollDimsButton)
        _settle(qtbot)
        dims.set_point(2, float(dims.point[2]) - 3 * float(dims.range[2].step))
        sagittal = sliced(2)
        _gui.toggle_ndisplay(viewer, qtbot)
        _settle(qtbot, 800)
        _gui.toggle_ndisplay(viewer, qtbot)
        _settle(qtbot)
        assert tuple(dims.order) == (2, 0, 1)
        assert sliced(2) == pytest.approx(sagittal), (dims.point, sagittal)
        # a slice chosen in 3D (Go to MTM) is the one 2D comes back to
        _gui.toggle_ndisplay(viewer, qtbot)
        _settle(qtbot, 800)
        _gui.click(qtbot, marg.center_btn)
        mtm = sliced(2)
        assert mtm != pytest.approx(sagittal)
        _gui.toggle_ndisplay(viewer, qtbot)
        _settle(qtbot)
        assert sliced(2) == pytest.approx(mtm), (dims.point, mtm)
    assert not errors, errors
