"""A case opened from a Cohort row goes through the opening every case goes through (Load,
File > Open Sample): the open case's figures hidden at once and the canvas saying what
opens, Compute refused until it is open, the Load status line saying so, the reused label
layers' undo history emptied, and a second row asked for meanwhile opened next (UAT s6,
issue 8). Run under xvfb-run."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from qtpy.QtCore import Qt
from test_gui_uat5_opening import FIGURES, drawn

from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def _notices():
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    return seen, lambda: notification_manager.notification_ready.disconnect(seen.append)


def _click_row(qtbot, coh, row: int) -> str:
    """Click the MTM cell of ``row``; returns its case id."""
    rect = coh.table.visualItemRect(coh.table.item(row, 1))
    qtbot.mouseClick(coh.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    return coh.table.item(row, 0).data(Qt.ItemDataRole.UserRole)


def test_cohort_row_opens_its_case_as_every_opening_does(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer, session, (load, marg, coh) = _gui.cohort_run(
        make_napari_viewer, qtbot, tmp_path, monkeypatch, "1. Load case", "4. Margins", n=3, seed=5
    )
    assert session is marg.session

    def open_and_analysed(cid):
        return (
            session.folder is not None
            and session.folder.name == cid
            and session.opening is None
            and not _layers.steps_pending()
            and session.model.analysis is not None
            and _gui.idle(session, marg)
        )

    with qtbot.capture_exceptions() as errors:
        first = _click_row(qtbot, coh, 0)
        qtbot.waitUntil(lambda: open_and_analysed(first), timeout=180_000)
        assert _layers.find_layer(viewer, "margin") is not None
        tumor = _layers.unwrapped(session.labels_layer("tumor"))
        centre = tuple(np.argwhere(tumor.data > 0).mean(axis=0).round().astype(int))
        tumor.brush_size = 6
        tumor.paint(centre, 0)  # an erasing stroke: Ctrl-Z would write the 1s back
        assert tumor.data[centre] == 0
        opened = []
        session.model.case_loaded.connect(lambda: opened.append(session.folder.name))

        seen, stop = _notices()
        try:
            second = _click_row(qtbot, coh, 1)
            # at once: the open case's figures are gone from the canvas, which says what opens
            assert session.opening is not None and second in session.opening
            figures = [_layers.role_of(ly) for ly in viewer.layers if drawn(ly)]
            assert not set(figures) & set(FIGURES), figures
            banner = _layers.text_overlay(viewer)
            assert banner.visible and second in banner.text, banner.text
            assert "opening" in load.status.text() and second in load.status.text()
            # Compute refused while it opens (it would run on the case being replaced): the
            # button disabled, the Margins status saying what opens, and a request refused
            assert not marg.run_btn.isEnabled()
            assert second in marg.status.text() and "opening" in marg.status.text()
            assert marg.run() is None and not session.analysis.running
            # a third row asked for meanwhile opens next, not alongside
            third = _click_row(qtbot, coh, 2)
            qtbot.waitUntil(lambda: open_and_analysed(third), timeout=240_000)
            messages = [str(n.message) for n in seen]
        finally:
            stop()
    assert not errors, [str(e[1]) for e in errors]
    assert any("wait until it is open" in m for m in messages), messages
    shown = third
    assert any(shown in m and "once the case being opened is open" in m for m in messages)
    assert opened == [second, third], opened
    assert not _layers.text_overlay(viewer).visible
    assert "all changes saved" in load.status.text() or "autosave" in load.status.text()
    # the tumor layer was reused for the new cases' labels: Ctrl-Z brings back nothing of
    # the first case's stroke
    layer = _layers.unwrapped(session.labels_layer("tumor"))
    assert layer is tumor
    before = np.array(layer.data, copy=True)
    viewer.layers.selection.active = layer
    _gui.undo(viewer, qtbot)
    qtbot.wait(100)
    assert np.array_equal(layer.data, before)
    # whatever the Ctrl-Z set going (the model re-checks the layer), shown once it settles
    qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=60_000)
    # the figures shown are the third case's, one margin layer
    assert [_layers.role_of(ly) for ly in viewer.layers].count("margin") == 1
    assert _gui.stale_readout(viewer, session, marg) is None
