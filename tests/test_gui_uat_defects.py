"""Defects found by a new user (UAT of issue 8), each replayed with a real viewer and real
clicks: closing during an analysis (C), a reopened case's saved registration in the QA
views (F), Compute margins leaving the camera alone (H), a no-op correction (I).

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat_defects.py``.
"""

from __future__ import annotations

import _gui
import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import samples
from napari_ablation.core.case import Case, open_sample_copy
from napari_ablation.widgets import _layers


def _dock(viewer, *names):
    from napari_ablation.widgets.load import LoadCaseWidget
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.register import RegisterWidget
    from napari_ablation.widgets.segment import SegmentWidget
    from napari_ablation.widgets.session import CaseSession

    kinds = {
        "load": LoadCaseWidget,
        "segment": SegmentWidget,
        "register": RegisterWidget,
        "margins": MarginWidget,
    }
    ws = {n: kinds[n](viewer) for n in names}
    for n, w in ws.items():
        viewer.window.add_dock_widget(w, name=n, tabify=True)
    session = CaseSession.of(viewer)
    _gui.fast_timers(session)
    return session, ws


def _open_liver(qtbot, session, load):
    load.sample.setCurrentIndex(load.sample.findData("liver_ct"))
    _gui.click(qtbot, load.sample_btn)
    qtbot.waitUntil(
        lambda: load._worker is None and "sample_liver_ct" in str(session.model.folder),
        timeout=120000,
    )


@pytest.fixture
def viewer(make_napari_viewer, tmp_path, monkeypatch):
    return _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1400, 850))


def test_close_while_margins_update_joins_the_worker_and_saves(viewer, qtbot, monkeypatch, capfd):
    """Defect C: closing the viewer while the margins are being recomputed waits for the
    worker (nothing may emit into the deleted window) and writes the pending edit."""
    import threading
    import time

    from qtpy.QtCore import QThreadPool

    from napari_ablation.widgets import session as session_module

    real = session_module.run_analysis
    started = threading.Event()

    def slow(req):  # a slow machine: the rerun is still going when the window closes
        started.set()
        time.sleep(3.0)
        return real(req)

    with qtbot.capture_exceptions() as errors:
        session, ws = _dock(viewer, "load", "margins")
        w, m = ws["margins"], session.model
        _open_liver(qtbot, session, ws["load"])
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        session._autosave_timer.setInterval(60000)  # the edit is still pending on close
        monkeypatch.setattr(session_module, "run_analysis", slow)
        tl = session.labels_layer("tumor")
        z, y, x = (int(v) for v in np.argwhere(tl.data != 0)[0])
        tl.paint((z, y, max(0, x - 12)), 1)
        qtbot.waitUntil(started.is_set, timeout=10000)
        assert session.has_unsaved_changes
        folder = m.folder
        capfd.readouterr()
        viewer.close()
        assert QThreadPool.globalInstance().activeThreadCount() == 0
        qtbot.wait(4000)  # (without the join, the worker would emit after its window went)
    assert not errors, errors
    err = capfd.readouterr().err
    assert "has been deleted" not in err, err
    disk = Case.load(folder)
    assert sitk.GetArrayFromImage(disk.tumor)[z, y, max(0, x - 12)] == 1


def test_reopened_case_with_saved_registration_is_ready_for_qa(viewer, qtbot, tmp_path):
    """Defect F: a case folder with a saved transform: the QA difference view is shown on
    the first click (the registered post is made from the saved transform)."""
    from napari_ablation.core import transform as tfm
    from napari_ablation.widgets.qa import DIFF

    case, folder = open_sample_copy("liver_ct", tmp_path / "cases" / "reg")
    tx_file = samples.sample_dir() / "liver_ct" / "true_transform.tfm"
    case.transform = tfm.read_rigid_transform(tx_file)
    case.save(folder)
    with qtbot.capture_exceptions() as errors:
        session, ws = _dock(viewer, "load", "register")
        reg = ws["register"]
        ws["load"].open_case_folder(str(folder))
        qtbot.waitUntil(
            lambda: ws["load"]._worker is None and session.model.pre is not None, timeout=120000
        )
        assert session.model.transform is not None
        assert reg.registered_layer() is None
        reg.tabs.setCurrentWidget(reg.qa)  # the user opens the QA tab
        qtbot.waitUntil(reg.qa.diff.isVisible)
        reg.qa.diff.click()  # (the panel scrolls: QAbstractButton.click is the user's click)
        assert reg.qa.diff.isChecked()
        qtbot.waitUntil(lambda: DIFF in viewer.layers, timeout=60000)
        reg_l = reg.registered_layer()
        assert reg_l is not None
        assert _layers.layer_meta(reg_l)["transform"] == tfm.euler_params(session.model.transform)
    assert not errors, errors


def test_compute_margins_leaves_the_camera_alone(viewer, qtbot):
    """Defect H: Compute margins does not move or zoom the view (Go to MTM does); the MTM
    text is drawn beside its cross, not over it."""
    with qtbot.capture_exceptions() as errors:
        session, ws = _dock(viewer, "load", "margins")
        w = ws["margins"]
        _open_liver(qtbot, session, ws["load"])
        qtbot.wait(300)
        cam = viewer.camera
        zoom, center, point = cam.zoom, tuple(cam.center), tuple(viewer.dims.point)
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        assert cam.zoom == pytest.approx(zoom)
        assert np.allclose(cam.center, center)
        assert np.allclose(viewer.dims.point, point)
        pts = _layers.find_layer(viewer, "mtm_point")
        assert np.any(np.asarray(pts.text.translation) != 0)
        _gui.click(qtbot, w.center_btn)  # the user's way to the minimal margin
        mtm = w.result.min_margin_point_lps
        assert not np.allclose(viewer.dims.point, point) or np.allclose(point, mtm)
    assert not errors, errors


def test_fill_holes_that_changes_nothing_keeps_the_analysis(viewer, qtbot):
    """Defect I: a correction that changes no voxel is not an edit: no new version, the
    analysis stays current and nothing is recomputed."""
    with qtbot.capture_exceptions() as errors:
        session, ws = _dock(viewer, "load", "segment", "margins")
        w, seg, m = ws["margins"], ws["segment"], session.model
        _open_liver(qtbot, session, ws["load"])
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        seg.structure.setCurrentIndex(seg.structure.findData("tumor"))
        _gui.click(qtbot, seg.fill_btn)  # fills the holes there are
        qtbot.waitUntil(lambda: seg._worker is None and not seg._pending, timeout=60000)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        version, analysis = m.version("tumor"), m.analysis
        _gui.click(qtbot, seg.fill_btn)  # nothing left to fill
        qtbot.waitUntil(lambda: seg._worker is None and not seg._pending, timeout=60000)
        qtbot.wait(100)
        assert m.version("tumor") == version
        assert m.analysis is analysis and m.analysis_current
        assert not session.analysis.running and not session.analysis._timer.isActive()
        assert "updating" not in w.status.text()
    assert not errors, errors
