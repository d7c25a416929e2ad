"""The Load dock's Display group in ``napari-ablation demo``: the Window combo read
"auto (CT: abdomen, MR: 0.5-9" at the dock's width (1920 x 1080 and 1280 x 800 screens).
Every item of its combos is shown whole at the demo's window sizes (1500 x 950 where the
screen has room, a 1280 x 800 laptop), and the details are in the tooltips (run under
xvfb-run)."""

from __future__ import annotations

import _gui
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget, QStyle, QStyleOptionComboBox

pytestmark = pytest.mark.gui


def _field_width(combo) -> int:
    opt = QStyleOptionComboBox()
    combo.initStyleOption(opt)
    return (
        combo.style()
        .subControlRect(
            QStyle.ComplexControl.CC_ComboBox, opt, QStyle.SubControl.SC_ComboBoxEditField, combo
        )
        .width()
    )


def test_display_combos_show_every_item_whole_in_the_demo(
    qtbot, tmp_path, monkeypatch, mock_app_model
):
    # (mock_app_model: napari's fresh app model for this test, so the demo's own viewer
    # registers the plugin's commands into it whatever earlier tests registered; in the full
    # suite the shared one already held 'napari-ablation.get_reader')
    from napari_ablation.widgets import _dock

    with _gui.demo_opened(qtbot, tmp_path, monkeypatch) as (viewer, load):
        win = viewer.window._qt_window
        dock = next(d for d in win.findChildren(QDockWidget) if d.isAncestorOf(load))
        for size in ((1500, 950), (1280, 800)):  # the demo's window at 1920x1080 and 1280x800
            win.resize(*size)
            win.resizeDocks([dock], [_dock.DOCK_WIDTH], Qt.Orientation.Horizontal)
            qtbot.waitUntil(lambda: dock.width() <= _dock.DOCK_WIDTH + 10, timeout=10_000)
            qtbot.waitUntil(lambda: load.window.isVisible(), timeout=10_000)
            qtbot.wait(100)
            path = tmp_path / f"demo_{size[0]}x{size[1]}.png"
            viewer.window.screenshot(str(path), canvas_only=False)
            for combo in (load.window, load.plane, load.sample):
                room = _field_width(combo)
                for i in range(combo.count()):
                    text = combo.itemText(i)
                    assert combo.fontMetrics().horizontalAdvance(text) <= room, (size, text)
        # what an item name leaves out is in its tooltip
        tips = [
            load.window.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(load.window.count())
        ]
        assert all(tips) and "abdomen window" in tips[0] and "percentiles" in tips[0]
        assert load.window.currentData() == "auto"
