"""UAT s5 N3: a click on a Cohort row opens the case; every view shows the one model's
analysis (the Margins dock, its table, the margin layer) and the active layer stays the
user's (run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest
from qtpy.QtCore import Qt

from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def test_cohort_row_click_shows_the_models_margins_everywhere(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    # as the Plugins menu opens them (the viewer behind napari's public-only proxy)
    viewer, session, (marg, coh) = _gui.cohort_run(
        make_napari_viewer, qtbot, tmp_path, monkeypatch, "4. Margins", n=2, seed=3
    )
    rect = coh.table.visualItemRect(coh.table.item(0, 1))
    shown_mtm = float(coh.table.item(0, 1).data(Qt.ItemDataRole.DisplayRole))
    qtbot.mouseClick(coh.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: coh._worker is None, timeout=60_000)
    seen = []  # (status, MTM) as the user sees them while the case opens

    def shown_and_idle():
        seen.append((marg.status.text(), marg.big.text()))
        return session.model.analysis is not None and _gui.idle(session, marg)

    qtbot.waitUntil(shown_and_idle, timeout=120_000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=20_000)
    qtbot.wait(200)
    m = session.model
    assert abs(m.result.min_margin_mm - shown_mtm) < 0.006
    # the Margins dock shows the model's figures, with its table
    assert marg.big.text() == m.result.margin_text()
    assert marg.table.rowCount() > 0
    assert _gui.stale_readout(viewer, session, marg) is None
    # "up to date" is never said next to an MTM that is not shown
    assert not [p for p in seen if p[0].startswith("up to date") and "—" in p[1]], seen[-5:]
    # one margin layer, the model's (the Margins widget's: same classes)
    margins = [ly for ly in viewer.layers if _layers.role_of(ly) == "margin"]
    assert len(margins) == 1 and margins[0].visible
    # the active layer is not a layer the plugin made: the tumor, as after any opening
    active = viewer.layers.selection.active
    assert _layers.role_of(active) == "tumor", _layers.role_of(active)
    viewer.window.screenshot(str(tmp_path / "cohort_row.png"), canvas_only=False)
