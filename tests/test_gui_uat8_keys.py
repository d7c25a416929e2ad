"""UAT s8 N6 (issue 8): the registration's Alt keys act only while the Register dock's
Manual tab is shown, and Alt-Z / Alt-Shift-Z undo / redo the registration from the
keyboard (Ctrl-Z stays napari's undo of the active layer). Real key presses on the canvas
(run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QPushButton, QTabBar
from test_registration import TRUE, make_phantom

from napari_ablation.widgets import _layers


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(TRUE)


@pytest.fixture
def docks(make_napari_viewer, phantom, tmp_path, monkeypatch, qtbot):
    docks = _gui.phantom_register_margins(make_napari_viewer, phantom, tmp_path, monkeypatch)
    qtbot.wait(300)  # the docks laid out
    return docks


def click_tab(qtbot, bar, title: str) -> None:
    titles = [bar.tabText(i) for i in range(bar.count())]
    QTest.mouseClick(bar, Qt.LeftButton, Qt.NoModifier, bar.tabRect(titles.index(title)).center())
    qtbot.wait(50)


def bring_to_front(v, qtbot, dock) -> None:
    """The user clicks the dock's tab (docks on one side share a tab bar)."""
    window = _layers.napari_private(v.window, "_qt_window")
    title = dock.windowTitle()
    for bar in window.findChildren(QTabBar):
        tabs = [bar.tabText(i) for i in range(bar.count())]
        if title in tabs and bar.parent() is window and bar.isVisible():
            click_tab(qtbot, bar, title)
            return
    raise AssertionError(f"no tab for {title!r}")


def _params(session):
    t = session.model.transform
    return np.zeros(6) if t is None else np.asarray(t.GetParameters(), float)


def test_alt_keys_only_on_the_shown_manual_tab_and_alt_z_undoes(docks, qtbot):
    v, session, (reg_dock, reg), (marg_dock, _marg) = docks
    bring_to_front(v, qtbot, reg_dock)
    click_tab(qtbot, reg.tabs.tabBar(), "Manual")
    qtbot.wait(200)
    before = _params(session)
    _gui.key(v, qtbot, Qt.Key_Right, Qt.AltModifier)
    qtbot.waitUntil(lambda: not np.allclose(_params(session), before), timeout=5000)
    nudged = _params(session)
    assert np.abs(nudged - before).max() == pytest.approx(0.5)  # one 0.5 mm step
    # the nudge says what happened and the way back
    assert "nudged" in reg.status.text() and "Alt-Z" in reg.status.text()
    # Ctrl-Z with the tumor labels active is napari's undo of the labels, not the nudge
    tumor = session.labels_layer("tumor")
    _gui.choose(v, tumor, "paint")
    _gui.undo(v, qtbot)
    assert np.allclose(_params(session), nudged)
    # Alt-Z undoes the registration's last change, Alt-Shift-Z redoes it
    _gui.key(v, qtbot, Qt.Key_Z, Qt.AltModifier)
    qtbot.waitUntil(lambda: np.allclose(_params(session), before), timeout=5000)
    _gui.key(v, qtbot, Qt.Key_Z, Qt.AltModifier | Qt.ShiftModifier)
    qtbot.waitUntil(lambda: np.allclose(_params(session), nudged), timeout=5000)

    # another tab of Register in front: the Alt keys do nothing, napari's own come back
    click_tab(qtbot, reg.tabs.tabBar(), "Automatic")
    qtbot.wait(200)
    for k in (Qt.Key_Right, Qt.Key_Down, Qt.Key_PageUp, Qt.Key_Period):
        _gui.key(v, qtbot, k, Qt.AltModifier)
    qtbot.wait(400)  # a nudge would be recorded after the manual tab's settle time
    assert np.allclose(_params(session), nudged)
    bound = {str(k).replace(" ", "") for k in v.keymap}
    assert not bound & {"Alt+Right", "Alt+Up", "Alt+Down"}, bound

    # the Manual tab current, but the Margins dock in front of Register's
    click_tab(qtbot, reg.tabs.tabBar(), "Manual")
    qtbot.wait(200)
    window = _layers.napari_private(v.window, "_qt_window")
    if marg_dock not in window.tabifiedDockWidgets(reg_dock):  # as napari docks them
        window.tabifyDockWidget(reg_dock, marg_dock)
    bring_to_front(v, qtbot, marg_dock)
    qtbot.wait(200)
    _gui.choose(v, tumor, "paint")
    _gui.key(v, qtbot, Qt.Key_Right, Qt.AltModifier)
    _gui.key(v, qtbot, Qt.Key_Z, Qt.AltModifier)  # Register hidden: no registration undo
    qtbot.wait(400)
    assert np.allclose(_params(session), nudged)
    # Register back in front, on its Manual tab: the keys work again
    bring_to_front(v, qtbot, reg_dock)
    qtbot.wait(200)
    _gui.key(v, qtbot, Qt.Key_Left, Qt.AltModifier)
    qtbot.waitUntil(lambda: np.allclose(_params(session), before), timeout=5000)


def _texts(widget) -> set[str]:
    """What the user reads on a widget's controls: buttons, check boxes, labels, tab titles."""
    from qtpy.QtWidgets import QAbstractButton, QLabel, QTabWidget

    out = {b.text() for b in widget.findChildren(QAbstractButton)}
    out |= {lab.text() for lab in widget.findChildren(QLabel)}
    for tabs in widget.findChildren(QTabWidget):
        out |= {tabs.tabText(i) for i in range(tabs.count())}
    return {t.replace("\u2026", "...").strip().lower() for t in out if t}


def test_undo_redo_reset_on_every_tab_and_the_docs_name_the_controls(docks, qtbot):
    """UAT s8 N5(a): the registration's history is reachable from every tab (it was on the
    Automatic tab only, the docs put it on Manual); every control register.md names is
    one the widget has."""
    import re
    from pathlib import Path

    v, session, (reg_dock, reg), _marg = docks
    bring_to_front(v, qtbot, reg_dock)
    for title in ("Automatic", "Manual", "Landmarks", "QA"):
        click_tab(qtbot, reg.tabs.tabBar(), title)
        for text in ("Undo", "Redo", "Reset"):
            shown = [
                b
                for b in reg.findChildren(QPushButton)
                if b.text() == text and b.isVisible() and not b.visibleRegion().isEmpty()
            ]
            assert len(shown) == 1, (title, text)
        # the Undo in reach undoes the last change of the registration, whatever made it
        before = _params(session)
        click_tab(qtbot, reg.tabs.tabBar(), "Manual")
        _gui.key(v, qtbot, Qt.Key_PageUp, Qt.AltModifier)
        qtbot.waitUntil(lambda b=before: not np.allclose(_params(session), b), timeout=5000)
        click_tab(qtbot, reg.tabs.tabBar(), title)
        (undo,) = [b for b in reg.findChildren(QPushButton) if b.text() == "Undo" and b.isVisible()]
        _gui.click(qtbot, undo)
        assert np.allclose(_params(session), before), title
    doc = (Path(__file__).parents[1] / "docs" / "tutorial" / "register.md").read_text("utf-8")
    names = {
        _layers.ROLES[r].lower() for r in ("post_registered", "landmarks_pre", "landmarks_post")
    }
    controls = _texts(reg) | names
    for phrase in re.findall(r"(?<![*\w])\*([^*]+)\*(?!\*)", doc):
        if phrase.startswith("Plugins"):
            continue  # the menu path
        want = " ".join(phrase.lower().split())
        assert any(t.startswith(want) for t in controls), f"register.md names *{phrase}*"


def test_one_tab_leaves_the_margins_figures_table(docks, qtbot):
    """UAT s8 N7: keyboard use; Tab walked every cell of the Figures table (~135) before
    reaching Copy / exports. Every read-only table of the plugin lets one Tab leave it."""
    from qtpy.QtWidgets import QApplication, QTableView

    v, session, (_reg_dock, reg), (marg_dock, marg) = docks
    bring_to_front(v, qtbot, marg_dock)
    _gui.click(qtbot, marg.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=180000)
    table = marg.table
    assert table.rowCount() * table.columnCount() > 30
    window = _layers.napari_private(v.window, "_qt_window")
    window.activateWindow()
    table.setFocus()
    table.setCurrentCell(0, 0)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is table, timeout=5000)
    QTest.keyClick(table, Qt.Key_Tab)
    qtbot.wait(50)
    assert QApplication.focusWidget() is not table
    assert table.currentRow() == 0 and table.currentColumn() == 0  # not walked to the next cell
    # Shift-Tab leaves it backwards too
    table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is table, timeout=5000)
    QTest.keyClick(table, Qt.Key_Backtab, Qt.ShiftModifier)
    qtbot.wait(50)
    assert QApplication.focusWidget() is not table
    # the plugin's other read-only tables (Register's landmark pairs, Cohort's cases)
    _d, cohort = v.window.add_plugin_dock_widget("napari-ablation", "5. Cohort")
    for w in (marg, reg, cohort):
        for view in w.findChildren(QTableView):
            assert not view.tabKeyNavigation(), (type(w).__name__, view)
