"""UAT s12 N5: a case opened while napari is in 3D kept the previous case's 2D camera: back in
2D the new case's post image ran off the canvas (and under the "L" letter). Back in 2D it is
fitted as when it opens in 2D.

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat12_open_in_3d.py``.
"""

from __future__ import annotations

import _gui
import numpy as np
from test_case_switch import _dock, _open_sample

from napari_ablation.widgets import _layers


def _view(viewer):
    cam = _layers.camera(viewer)
    return float(cam.zoom), np.asarray(cam.center, float)


def test_a_case_opened_in_3d_is_fitted_back_in_2d(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1400, 850))
    with qtbot.capture_exceptions() as errors:
        session, load, _w = _dock(viewer)
        _open_sample(qtbot, load, session, "renal_mri")
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
        assert _layers.grid(viewer).enabled  # pre | post side by side
        _gui.toggle_ndisplay(viewer, qtbot)
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
        assert viewer.dims.ndisplay == 3
        _open_sample(qtbot, load, session, "liver_ct")  # (a CT of another size)
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
        _gui.toggle_ndisplay(viewer, qtbot)
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
        qtbot.wait(200)
        assert viewer.dims.ndisplay == 2
        shown = _view(viewer)
        viewer.reset_view()  # napari's fit (with the room the letters take), for comparison
        qtbot.wait(100)
        fitted = _view(viewer)
        assert np.isclose(shown[0], fitted[0], rtol=0.02), (shown, fitted)
        assert np.allclose(shown[1][-2:], fitted[1][-2:], atol=2.0), (shown, fitted)
        # on the new case's tumor slice
        tumor = session.labels_layer("tumor")
        z = int(np.round(tumor.world_to_data(viewer.dims.point)[0]))
        assert np.asarray(tumor.data)[z].any()
    assert not errors, errors
