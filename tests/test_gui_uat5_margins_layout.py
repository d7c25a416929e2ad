"""The Margins dock scrolls instead of squeezing its text (UAT s5, N4): at 1920 x 1080 with
the docks tabbed, a case without registration (the red NO REGISTRATION line) and the MTM
interval with its sources, every wrapped line is shown whole and nothing overlaps.

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat5_margins_layout.py``.
"""

from __future__ import annotations

import _gui
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QLabel, QPushButton, QScrollArea, QStyle

from napari_ablation.core import samples
from napari_ablation.widgets import _dock
from napari_ablation.widgets.session import CaseSession


def _squeezed(widget) -> list[str]:
    bad = []
    for label in widget.findChildren(QLabel):
        if label.isVisible() and label.wordWrap() and label.text():
            need = label.heightForWidth(label.width())
            if label.height() < need - 1:
                bad.append(f"{label.text()[:40]!r} squeezed to {label.height()} of {need} px")
    return bad


def _cut_names(table) -> list[str]:
    """Figures-table cells whose text, wrapped to the cell's width, needs more height than
    the row has (Qt then elides it: "Minimal treatment ...", UAT s6 D10)."""
    fm = table.fontMetrics()
    # the text margins of Qt's item delegate: (focus-frame margin + 1) on each side
    margin = 2 * (
        table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, table) + 1
    )
    bad = []
    for row in range(table.rowCount()):
        for col in range(table.columnCount()):
            item = table.item(row, col)
            if item is None or not item.text():
                continue
            width = table.columnWidth(col) - margin
            need = fm.boundingRect(0, 0, width, 10_000, int(Qt.TextFlag.TextWordWrap), item.text())
            if need.height() > table.rowHeight(row) or need.width() > width:
                bad.append(f"{item.text()!r} in {table.columnWidth(col)} x {table.rowHeight(row)}")
    return bad


def _overlaps(widget) -> list[str]:
    """Visible labels and buttons of ``widget`` whose rectangles (in ``widget``) overlap."""
    items = [
        w
        for w in widget.findChildren((QLabel, QPushButton))
        if w.isVisible() and w.width() > 0 and w.height() > 0 and w.parent() is not None
    ]
    rects = [
        (w, w.geometry().translated(w.parentWidget().mapTo(widget, QPoint(0, 0)))) for w in items
    ]
    bad = []
    for i, (a, ra) in enumerate(rects):
        for b, rb in rects[i + 1 :]:
            if a.isAncestorOf(b) or b.isAncestorOf(a):
                continue
            inter = ra.intersected(rb)
            if inter.width() > 2 and inter.height() > 2:
                bad.append(
                    f"{type(a).__name__} {a.text()[:25]!r} / {type(b).__name__} {b.text()[:25]!r}"
                )
    return bad


def test_margins_dock_scrolls_and_shows_every_line_whole(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=True)
    win = viewer.window._qt_window
    win.resize(1920, 1080)
    for name in ("1. Load case", "2. Segment", "4. Margins"):  # as a new user opens them
        dock, margins = viewer.window.add_plugin_dock_widget("napari-ablation", name)
    qtbot.wait(300)
    dock.raise_()
    session = CaseSession.of(viewer)
    _gui.fast_timers(session)
    session.set_case(samples.load_sample("renal_mri"), tmp_path / "case")  # no registration
    _gui.click(qtbot, margins.run_btn)
    qtbot.waitUntil(
        lambda: _gui.idle(session, margins) and session.model.interval is not None, timeout=180000
    )
    assert margins.registration_warning.isVisible()
    assert "\n" in margins.interval.text()  # the interval line and its sources
    for width in (_dock.DOCK_WIDTH, 320):
        win.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
        qtbot.wait(200)
        margins.grab().save(str(tmp_path / f"margins_dock_{width}.png"))
        area = margins.findChildren(QScrollArea)[0]
        assert not _squeezed(margins), (width, _squeezed(margins))
        assert not _overlaps(area.widget()), (width, _overlaps(area.widget()))
        assert margins.table.rowCount() > 10
        assert not _cut_names(margins.table), (width, _cut_names(margins.table))
        # what does not fit scrolls (vertically), never sideways
        assert area.horizontalScrollBar().maximum() == 0
