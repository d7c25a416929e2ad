"""Opening another case replaces the open one cleanly: nothing of the previous case is
shown, mixed in or computed (real viewer, real clicks and menu actions).

Run with ``xvfb-run -a python -m pytest tests/test_case_switch.py``.
"""

from __future__ import annotations

import _gui
import numpy as np
import pytest

from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers


def _dock(viewer):
    from napari_ablation.widgets.load import LoadCaseWidget
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.session import CaseSession

    load, marg = LoadCaseWidget(viewer), MarginWidget(viewer)
    for w, name in ((load, "Load"), (marg, "Margins")):
        viewer.window.add_dock_widget(w, name=name, tabify=True)
    session = CaseSession.of(viewer)
    _gui.fast_timers(session)
    # napari's unit registry is built lazily by a background thread; a layer added while it
    # is half built fails in pint ('pixel' is not defined): a race of its own, not tested here
    import threading

    for t in threading.enumerate():
        if t.name == "napari-ablation-prewarm":
            t.join(60)
    return session, load, marg


def _open_sample(qtbot, load, session, key):
    load.sample.setCurrentIndex(load.sample.findData(key))
    _gui.click(qtbot, load.sample_btn)
    qtbot.waitUntil(
        lambda: load._worker is None and f"sample_{key}" in str(session.model.folder),
        timeout=120000,
    )


def _roles(viewer):
    return [_layers.role_of(ly) for ly in viewer.layers]


@pytest.fixture
def viewer(make_napari_viewer, tmp_path, monkeypatch):
    return _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1400, 850))


def test_load_another_sample_after_margins(viewer, qtbot, tmp_path):
    """Defect A: the Margins widget and the margin layers of the liver case must go when
    the renal case is opened; nothing says "computing" when nothing is computed."""
    with qtbot.capture_exceptions() as errors:
        session, load, w = _dock(viewer)
        _open_sample(qtbot, load, session, "liver_ct")
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        liver = w.big.text()
        assert liver == session.model.result.margin_text()
        _open_sample(qtbot, load, session, "renal_mri")
        qtbot.wait(1500)
        assert w.big.text() == "MTM = —", w.big.text()
        assert "computing" not in w.status.text()
        assert not any(r in _gui.ANALYSIS_LAYER_ROLES for r in _roles(viewer)), _roles(viewer)
        assert _layers.grid(viewer).enabled  # the new case opens side by side, as the first
        assert session.model.analysis is None and not session.analysis.live
        assert _gui.stale_readout(viewer, session, w) is None
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
        # the renal case computes its own margins
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        fresh = _gui.check_invariants(viewer, session, w, tmp_path)
        assert fresh.margin_text() != liver
    assert not errors, errors


def test_a_late_analysis_of_the_previous_case_is_not_stored(viewer, qtbot, tmp_path):
    """Defect A: a run of the liver case that finishes after the renal case was opened is
    dropped by the model (and the idle invariant would catch a shown figure of it)."""
    with qtbot.capture_exceptions() as errors:
        session, load, w = _dock(viewer)
        _open_sample(qtbot, load, session, "liver_ct")
        req = session.model.analysis_request()
        from napari_ablation.model import run_analysis

        late = run_analysis(req)  # computed from the liver case
        _open_sample(qtbot, load, session, "renal_mri")
        assert not session.model.owns(late)
        assert session.model.set_analysis(late) is False
        assert session.model.analysis is None
        # a figure of the liver case on screen must fail the invariant
        w.big.setText(late.result.margin_text())
        assert _gui.stale_readout(viewer, session, w) is not None
        assert not _gui.idle(session, w)
        w.big.setText("MTM = —")
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    assert not errors, errors


def _file_open_sample(viewer, qtbot, title):
    """File > Open Sample > <plugin> > ``title`` (the real menu action)."""
    sample_action(viewer, title).trigger()
    qtbot.wait(50)


def sample_action(viewer, title):
    """The menu action File > Open Sample > <plugin> > ``title``."""
    bar = viewer.window._qt_window.menuBar()

    def walk(menu):
        for a in menu.actions():
            if a.menu() is not None:
                found = walk(a.menu())
                if found is not None:
                    return found
            elif title in a.text().replace("&", ""):
                return a
        return None

    action = next(
        (a for m in bar.actions() if m.menu() is not None for a in [walk(m.menu())] if a), None
    )
    assert action is not None, f"no File > Open Sample entry '{title}'"
    return action


def test_file_open_sample_twice_switches_case(viewer, qtbot, tmp_path):
    """Defect B: a second File > Open Sample opens that case instead of mixing its layers
    into the open one; an annotation of the first case is saved before."""
    with qtbot.capture_exceptions() as errors:
        session, _load, w = _dock(viewer)
        m = session.model
        _file_open_sample(viewer, qtbot, "Liver microwave")
        qtbot.waitUntil(lambda: m.pre is not None and m.labels("ablation") is not None)
        tl = session.labels_layer("tumor")
        z, y, x = (int(v) for v in np.argwhere(tl.data != 0)[0])
        tl.paint((z, y, max(0, x - 12)), 1)  # an annotation of the liver case
        assert session._user_edited
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        liver_text = w.big.text()
        liver_folder = m.folder
        _file_open_sample(viewer, qtbot, "Renal cryoablation")
        qtbot.waitUntil(
            lambda: session._switch_worker is None and "renal" in str(m.folder), timeout=120000
        )
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
        names = [ly.name for ly in viewer.layers]
        assert not any("[" in n for n in names), names
        for role in ("pre", "post", "tumor", "ablation"):
            assert _roles(viewer).count(role) == 1, (role, names)
        pre = _layers.find_layer(viewer, "pre")
        assert pre.data.shape == m.pre.GetSize()[::-1]
        assert m.labels("tumor") is session.labels_layer("tumor").data
        assert w.big.text() == "MTM = —" and _gui.stale_readout(viewer, session, w) is None
        # the liver annotation was saved before the switch
        disk = Case.load(liver_folder)
        from SimpleITK import GetArrayFromImage

        assert GetArrayFromImage(disk.tumor)[z, y, max(0, x - 12)] == 1
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        assert _gui.check_invariants(viewer, session, w, tmp_path).margin_text() != liver_text
        # napari's Duplicate Layer copies a layer of the open case: not another case
        from napari.layers._layer_actions import _duplicate_layer

        folder = m.folder
        viewer.layers.selection = {pre}
        _duplicate_layer(viewer.layers)
        qtbot.wait(200)
        assert _roles(viewer).count("pre") == 2 and session._switch_worker is None
        assert m.folder == folder and _gui.stale_readout(viewer, session, w) is None
    assert not errors, errors


def _delete_all_layers(viewer, qtbot):
    """Select every layer and press the layer list's delete button (the user's way)."""
    viewer.layers.select_all()
    _gui.click(qtbot, viewer.window._qt_viewer.layerButtons.deleteButton)
    qtbot.wait(100)


def test_delete_all_layers_then_another_sample_is_a_new_case(viewer, qtbot, tmp_path):
    """UAT s4 N1: after the user deletes every layer of the renal case and opens the liver
    sample, Margins computes the liver (never the renal case, which is no longer on screen)."""
    from napari_ablation.core import margin as core_margin

    with qtbot.capture_exceptions() as errors:
        session, load, w = _dock(viewer)
        m = session.model
        _file_open_sample(viewer, qtbot, "Renal cryoablation")
        qtbot.waitUntil(
            lambda: m.pre is not None and m.labels("ablation") is not None, timeout=120000
        )
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        renal = w.big.text()
        assert renal == m.result.margin_text()
        _delete_all_layers(viewer, qtbot)
        assert len(viewer.layers) == 0
        # nothing of the removed case is held, shown or computed
        assert m.pre is None and m.post is None and m.analysis is None
        assert m.labels("tumor") is None and m.labels("ablation") is None
        assert w.big.text() == "MTM = —" and _gui.stale_readout(viewer, session, w) is None
        assert "No case" in load.status.text()
        _file_open_sample(viewer, qtbot, "Liver microwave")
        qtbot.waitUntil(
            lambda: m.pre is not None and m.labels("ablation") is not None, timeout=120000
        )
        qtbot.wait(300)
        pre = _layers.find_layer(viewer, "pre")
        assert tuple(m.pre.GetSize()[::-1]) == pre.data.shape
        assert m.info.get("name") == "sample_liver_ct"
        tl, al = session.labels_layer("tumor"), session.labels_layer("ablation")
        assert m.labels("tumor") is tl.data and m.labels("ablation") is al.data
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        fresh = core_margin.analyze_margin(
            _gui.layer_mask(tl), _gui.layer_mask(al), m.transform, m.threshold
        )
        assert m.result.min_margin_mm == fresh.min_margin_mm
        assert w.big.text() == fresh.margin_text() != renal
    assert not errors, errors


def test_while_a_case_opens_old_figures_go_and_actions_are_refused(viewer, qtbot, tmp_path):
    """UAT s4 N2, N4: while another case opens, the open case's MTM and registration line
    are not shown as current, "Register automatically" and "Compute margins" are refused
    with one line (not run on the case being replaced), and after the switch the Register
    status line says nothing about the previous case's registration."""
    from napari.utils.notifications import notification_manager

    from napari_ablation.widgets.register import RegisterWidget

    with qtbot.capture_exceptions() as errors:
        session, load, w = _dock(viewer)
        reg = RegisterWidget(viewer)
        viewer.window.add_dock_widget(reg, name="Register", tabify=True)
        m = session.model
        _open_sample(qtbot, load, session, "liver_ct")
        reg.auto.spread.setChecked(False)  # (quicker; the spread is not what is tested)
        _gui.click(qtbot, reg.auto.run_btn)
        qtbot.waitUntil(lambda: not reg.busy, timeout=300000)
        assert m.transform is not None, reg.status.text()  # (the shift: tx_label only, UAT s6)
        assert "tumor centre moved" in reg.auto.tx_label.text(), reg.auto.tx_label.text()
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        assert w.big.text() == m.result.margin_text()
        seen = []
        notification_manager.notification_ready.connect(seen.append)
        try:
            load.sample.setCurrentIndex(load.sample.findData("renal_mri"))
            _gui.click(qtbot, load.sample_btn)
            assert session.opening is not None and load._worker is not None
            # at once: no figure of the case being replaced, no "up to date"
            assert w.big.text() == "MTM = —" and "up to date" not in w.status.text()
            assert "opening" in w.status.text() and not w.run_btn.isEnabled()
            assert "tumor centre moved" not in reg.status.text()
            # actions are refused with one line, nothing runs on the liver case
            _gui.click(qtbot, reg.auto.run_btn)
            assert not reg.auto.running
            assert w.run() is None and not session.analysis.running
            refused = [n.message for n in seen if "opening" in n.message]
            assert len(refused) == 2, [n.message for n in seen]
        finally:
            notification_manager.notification_ready.disconnect(seen.append)
        qtbot.waitUntil(
            lambda: load._worker is None and "sample_renal_mri" in str(m.folder), timeout=120000
        )
        assert session.opening is None
        qtbot.wait(300)
        assert "moved" not in reg.status.text() and "cancel" not in reg.status.text()
        # the renal case has no registration: said so, not "moved 0.0 mm"
        assert m.transform is None and "no registration" in reg.auto.tx_label.text()
        assert w.big.text() == "MTM = —" and w.run_btn.isEnabled()
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    assert not errors, errors


def test_a_tumor_file_opened_into_the_case_is_announced(viewer, qtbot, tmp_path):
    """UAT s4 N9: a tumor .nii.gz opened through the reader into an open case becomes the
    case's tumor with a notice (not silently), and the old tumor layer is kept, marked."""
    import SimpleITK as sitk
    from napari.utils.notifications import notification_manager

    with qtbot.capture_exceptions() as errors:
        session, load, w = _dock(viewer)
        m = session.model
        _open_sample(qtbot, load, session, "liver_ct")
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
        old = session.labels_layer("tumor")
        other = np.zeros_like(np.asarray(old.data))
        other[np.nonzero(np.asarray(old.data))] = 1
        other[:, :, : other.shape[2] // 2] = 0  # another reader's outline: half of it
        (tmp_path / "reader2").mkdir()
        path = tmp_path / "reader2" / "tumor.nii.gz"  # a known label file name: role tumor
        img = sitk.GetImageFromArray(other)
        img.CopyInformation(m.labels_image("tumor"))
        sitk.WriteImage(img, str(path))
        seen = []
        notification_manager.notification_ready.connect(seen.append)
        try:
            viewer.open(str(path), plugin="napari-ablation")
            qtbot.wait(200)
        finally:
            notification_manager.notification_ready.disconnect(seen.append)
        new = session.labels_layer("tumor")
        assert new is not old and new.name != old.name
        assert m.labels("tumor") is new.data and np.array_equal(new.data, other)
        assert _layers.role_of(old) == "tumor_previous"
        notes = [n.message for n in seen if "is now the case's tumor" in n.message]
        assert len(notes) == 1 and old.name in notes[0], [n.message for n in seen]
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
        # the autosave follows the new tumor
        disk = Case.load(m.folder)
        from SimpleITK import GetArrayFromImage

        assert np.array_equal(GetArrayFromImage(disk.tumor), other)
    assert not errors, errors


def test_the_opened_case_is_drawn_once_in_its_final_view(viewer, qtbot, tmp_path):
    """UAT s4 N6: while a case's layers are added (one per event-loop iteration), the canvas
    drew the first image alone, zoomed to fill the canvas, before the side-by-side view:
    every frame drawn with the case's layers is drawn with the final view."""
    from napari_ablation.widgets._layers import camera

    session, load, _w = _dock(viewer)
    qtbot.wait(300)
    frames = []
    scene = viewer.window._qt_viewer.canvas._scene_canvas

    def drawn(_event=None):
        if len(viewer.layers):
            frames.append((len(viewer.layers), round(float(camera(viewer).zoom), 4)))

    scene.events.draw.connect(drawn)
    try:
        _open_sample(qtbot, load, session, "renal_mri")
        qtbot.wait(500)
    finally:
        scene.events.draw.disconnect(drawn)
    final = round(float(camera(viewer).zoom), 4)
    assert frames and frames[-1] == (4, final), frames
    assert all(f == (4, final) for f in frames), frames


def test_deleting_the_case_layers_leaves_no_margin_of_them(viewer, qtbot, tmp_path):
    """UAT s4 N1, the invariant: deleting the case's own layers (the margin layers left
    selected or not) leaves no figure and no margin layer of images that are gone."""
    with qtbot.capture_exceptions() as errors:
        session, load, w = _dock(viewer)
        m = session.model
        _open_sample(qtbot, load, session, "liver_ct")
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        viewer.layers.selection = {
            ly
            for ly in viewer.layers
            if _layers.role_of(ly) in ("pre", "post", "tumor", "ablation")
        }
        _gui.click(qtbot, viewer.window._qt_viewer.layerButtons.deleteButton)
        qtbot.wait(300)
        assert not any(r in _gui.ANALYSIS_LAYER_ROLES for r in _roles(viewer)), _roles(viewer)
        assert m.pre is None and m.analysis is None and w.big.text() == "MTM = —"
        assert _gui.stale_readout(viewer, session, w) is None
        w.run()  # Compute margins with no case: refused in one line, nothing computed
        qtbot.wait(300)
        assert m.analysis is None and w.big.text() == "MTM = —"
    assert not errors, errors


def test_deleting_the_case_images_saves_and_closes_the_case(viewer, qtbot, tmp_path):
    """The user deletes only the pre and post images of the renal case (its labels stay in
    the layer list): the case is saved, with the stroke just painted, and closed with all its
    layers, so no figure or label of it is ever shown over the next case's images; the liver
    sample then opens as a new case."""
    import SimpleITK as sitk

    from napari_ablation.core import geometry

    with qtbot.capture_exceptions() as errors:
        session, load, w = _dock(viewer)
        m = session.model
        _open_sample(qtbot, load, session, "renal_mri")
        folder = m.folder
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        # an annotation: a brush stroke on the tumor through the minimal margin point
        tumor = _gui.choose(viewer, session.labels_layer("tumor"))
        tumor.brush_size = 6
        before = np.array(tumor.data, copy=True)
        mtm = geometry.lps_to_world(m.result.min_margin_point_lps)
        viewer.dims.point = tuple(float(v) for v in mtm)
        _gui.stroke_through(viewer, qtbot, mtm)
        painted = np.array(tumor.data, copy=True)
        assert (painted != before).sum() > 20, "the stroke painted nothing"
        # select pre and post and press the layer list's delete button, at once (before
        # the autosave's debounce)
        viewer.layers.selection = {
            _layers.find_layer(viewer, "pre"),
            _layers.find_layer(viewer, "post"),
        }
        _gui.click(qtbot, viewer.window._qt_viewer.layerButtons.deleteButton)
        qtbot.waitUntil(lambda: len(viewer.layers) == 0, timeout=10000)
        assert m.pre is None and m.post is None and m.labels("tumor") is None
        assert m.analysis is None and w.big.text() == "MTM = —"
        assert _gui.stale_readout(viewer, session, w) is None
        # nothing annotated lost: the folder holds the painted tumor
        from napari_ablation.core.case import Case

        saved = Case.load(folder)
        assert np.array_equal(sitk.GetArrayFromImage(saved.tumor), painted)
        # the next sample is a case of its own, with its own labels
        _open_sample(qtbot, load, session, "liver_ct")
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
        assert m.folder != folder and m.folder.name == "sample_liver_ct"
        roles = _roles(viewer)
        assert sorted(roles) == sorted(["pre", "post", "tumor", "ablation"]), roles
        tl = session.labels_layer("tumor")
        assert m.labels("tumor") is tl.data and tl.data.shape == m.pre.GetSize()[::-1]
    assert not errors, errors
