"""UAT s6: File > Open Sample adds its layers in steps, in an empty viewer (D8: Compute
pressed before the labels are in is told the case is still opening) and over an open case
(item 1: the working copy's layers one per event-loop iteration, not all in one stall).
Run under xvfb-run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from qtpy.QtCore import Qt, QTimer
from test_case_switch import sample_action

from napari_ablation.widgets import _layers
from napari_ablation.widgets.session import CASE_ROLES

pytestmark = pytest.mark.gui


def _notices():
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    return seen, lambda: notification_manager.notification_ready.disconnect(seen.append)


def test_compute_while_the_sample_layers_arrive_says_it_is_opening(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, marg = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    session = marg.session
    seen, stop = _notices()
    try:
        sample_action(viewer, "Liver microwave").trigger()  # File > Open Sample, empty viewer
        assert session.labels_layer("ablation") is None  # its labels follow in steps
        qtbot.mouseClick(marg.run_btn, Qt.MouseButton.LeftButton)
        qtbot.wait(50)
        messages = [str(n.message) for n in seen]
        qtbot.waitUntil(
            lambda: session.labels_layer("ablation") is not None and not _layers.steps_pending(),
            timeout=120_000,
        )
    finally:
        stop()
    opening = "opening sample 'liver_ct'"
    assert any(opening in m and "wait until" in m for m in messages), messages
    assert not any("no ablation labels" in m for m in messages), messages
    assert marg.session.analysis.error is None or "no ablation" not in marg.session.analysis.error


def test_open_sample_over_an_open_case_adds_its_layers_in_steps(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, marg = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    session = marg.session

    def settled(name):
        return (
            name in session.model.info.get("name", "")
            and session.labels_layer("ablation") is not None
            and session.opening is None
            and not _layers.steps_pending()
        )

    sample_action(viewer, "Liver microwave").trigger()
    qtbot.waitUntil(lambda: settled("liver"), timeout=120_000)
    # event-loop iterations, counted by a zero-interval timer; each case layer added notes
    # the iteration it was added in
    ticks = [0]
    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    added = []

    def on_inserted(event):
        if session._switch_worker is not None and _layers.role_of(event.value) in CASE_ROLES:
            added.append((ticks[0], _layers.role_of(event.value)))

    # a case layer is given the next case's data (of any size) rather than added anew
    refilled = [ly for ly in viewer.layers if _layers.role_of(ly) in CASE_ROLES]
    on_data = [(ly, lambda _e, _ly=ly: on_inserted(SimpleNamespace(value=_ly))) for ly in refilled]
    viewer.layers.events.inserted.connect(on_inserted)
    for ly, slot in on_data:
        ly.events.data.connect(slot)
    timer.start()
    try:
        sample_action(viewer, "Renal cryoablation").trigger()  # over the open liver case
        qtbot.waitUntil(lambda: settled("renal"), timeout=180_000)
    finally:
        timer.stop()
        viewer.layers.events.inserted.disconnect(on_inserted)
        for ly, slot in on_data:
            ly.events.data.disconnect(slot)
    # the renal working copy's four layers (after the sample's own, which it replaces),
    # added or refilled
    copy = added[-4:]
    assert sorted(r for _t, r in copy) == sorted(CASE_ROLES), added
    assert len({t for t, _r in copy}) == 4, f"layers shown in one event-loop iteration: {copy}"
