"""UAT s7 N1: another case opened while the margin layers of the open case are still being
added (one per event-loop iteration, after Compute) gets none of them: no margin layer,
ablation outline or MTM point of the previous case, through the Load widget and through a
Cohort row, whenever the opening starts; the new case's own analysis still appears once
computed (run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest
from qtpy.QtCore import Qt, QTimer

from napari_ablation.core import cohort
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui

#: when the next case starts opening, counted from the result of Compute: as the result
#: reaches the model (its layers not yet being prepared), in the step adding the margin
#: layer, one event-loop turn after it, and after the ablation outline (before the MTM point)
WHEN = ("analysis", "margin", "margin+turn", "outline")


def _prewarmed() -> None:
    """napari's unit registry is built by a background thread (a race of its own)."""
    import threading

    for t in threading.enumerate():
        if t.name == "napari-ablation-prewarm":
            t.join(60)


def _leftovers(viewer) -> list:
    return [ly.name for ly in viewer.layers if _layers.role_of(ly) in _gui.ANALYSIS_LAYER_ROLES]


def _open_during_steps(qtbot, viewer, session, run, open_next, when: str) -> list:
    """Compute the open case's margins (``run()``) and call ``open_next()`` at ``when``
    (:data:`WHEN`); returns the analysis layers there were as it was called."""
    there = []

    def go():
        there.append(_leftovers(viewer))
        open_next()

    def on_inserted(event):
        role = _layers.role_of(event.value)
        if when == "margin" and role == "margin":
            go()
        elif when == "margin+turn" and role == "margin":
            QTimer.singleShot(0, go)
        elif when == "outline" and role == "ablation_registered":
            go()

    def on_analysis(*_):
        if when == "analysis" and session.model.analysis is not None:
            go()

    viewer.layers.events.inserted.connect(on_inserted)
    session.model.analysis_changed.connect(on_analysis)
    try:
        run()
        qtbot.waitUntil(lambda: bool(there), timeout=120_000)
    finally:
        viewer.layers.events.inserted.disconnect(on_inserted)
        session.model.analysis_changed.disconnect(on_analysis)
    return there[0]


def _settled(session, name: str) -> bool:
    return (
        name in str(session.model.folder)
        and session.labels_layer("ablation") is not None
        and session.opening is None
        and not _layers.steps_pending()
    )


def _no_previous_figures(qtbot, viewer, session, marg) -> None:
    qtbot.wait(300)  # (any step of the previous case still due would run now)
    assert not _layers.steps_pending()
    assert _leftovers(viewer) == [], _leftovers(viewer)
    assert marg.big.text() == "MTM = —", marg.big.text()
    assert _gui.stale_readout(viewer, session, marg) is None


def _two_cases(make_napari_viewer, tmp_path, monkeypatch, *docks):
    """Two synthetic case folders and a shown viewer with these plugin docks, fast timers."""
    from napari_ablation.widgets.session import CaseSession

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    cases = tmp_path / "cases"
    cohort.write_synthetic_cohort(cases, n=2, seed=3)
    viewer = make_napari_viewer(show=True)
    widgets = tuple(
        viewer.window.add_plugin_dock_widget("napari-ablation", name)[1] for name in docks
    )
    session = CaseSession.of(viewer)
    _gui.fast_timers(session)
    _prewarmed()
    return viewer, session, cases, widgets


@pytest.mark.parametrize("when", WHEN)
def test_load_another_case_while_the_margin_layers_are_added(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, when
):
    viewer, session, cases, (load, marg) = _two_cases(
        make_napari_viewer, tmp_path, monkeypatch, "1. Load case", "4. Margins"
    )
    with qtbot.capture_exceptions() as errors:
        load.open_case_folder(str(cases / "case_001"))
        qtbot.waitUntil(lambda: _settled(session, "case_001"), timeout=120_000)
        there = _open_during_steps(
            qtbot,
            viewer,
            session,
            lambda: _gui.click(qtbot, marg.run_btn),
            lambda: load.open_case_folder(str(cases / "case_002")),
            when,
        )
        # the race was met: the previous case's layers were (being) added
        assert (
            there
            == {
                "analysis": [],
                "margin": ["margin"],
                "margin+turn": ["margin"],
                "outline": ["margin", "ablation outline (pre space)"],
            }[when]
        ), there
        qtbot.waitUntil(lambda: _settled(session, "case_002"), timeout=120_000)
        _no_previous_figures(qtbot, viewer, session, marg)
        # the new case's own analysis appears when computed, with all its layers
        _gui.click(qtbot, marg.run_btn)
        qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=120_000)
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
        _gui.check_invariants(viewer, session, marg, tmp_path)
        assert sorted(_leftovers(viewer)) == sorted(
            _layers.ROLES[r] for r in _gui.ANALYSIS_LAYER_ROLES
        )
        assert all(
            ly.visible and ly.opacity > 0
            for ly in viewer.layers
            if _layers.role_of(ly) in _gui.ANALYSIS_LAYER_ROLES
        )
    assert not errors, errors


@pytest.mark.parametrize("when", ("margin", "margin+turn", "outline"))
def test_cohort_row_opened_while_the_margin_layers_are_added(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, when
):
    viewer, session, cases, (marg, coh) = _two_cases(
        make_napari_viewer, tmp_path, monkeypatch, "4. Margins", "5. Cohort"
    )
    coh.workers.setValue(1)
    assert coh.run_batch(str(cases), str(tmp_path / "results")) is not None
    qtbot.waitUntil(lambda: coh._worker is None, timeout=240_000)
    assert coh.table.rowCount() == 2
    rows = {coh.table.item(r, 0).data(Qt.ItemDataRole.UserRole): r for r in range(2)}

    def click_row(cid):
        rect = coh.table.visualItemRect(coh.table.item(rows[cid], 1))
        qtbot.mouseClick(coh.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    with qtbot.capture_exceptions() as errors:
        # a row opens its case and computes its margins: the next row is clicked while the
        # layers of that analysis are being added
        there = _open_during_steps(
            qtbot,
            viewer,
            session,
            lambda: click_row("case_001"),
            lambda: click_row("case_002"),
            when,
        )
        assert there, there
        # what is on screen when the new case's own analysis arrives (its layers are made
        # from it, or refilled in place if some were left)
        before = []

        def on_analysis(*_):
            if "case_002" in str(session.model.folder) and session.model.analysis is not None:
                before.append(_leftovers(viewer))

        session.model.analysis_changed.connect(on_analysis)
        try:
            qtbot.waitUntil(lambda: bool(before), timeout=120_000)
        finally:
            session.model.analysis_changed.disconnect(on_analysis)
        assert before[0] == [], before[0]
        # the row computes the new case's own margins: all three layers, its own
        qtbot.waitUntil(
            lambda: session.model.analysis is not None and _gui.idle(session, marg),
            timeout=120_000,
        )
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
        qtbot.wait(300)
        assert not _layers.steps_pending()
        assert _gui.stale_readout(viewer, session, marg) is None
        res = session.model.result
        assert marg.big.text() == res.margin_text()
        kinds = sorted(_leftovers(viewer))
        assert kinds == sorted(_layers.ROLES[r] for r in _gui.ANALYSIS_LAYER_ROLES), kinds
        pts = _layers.find_layer(viewer, "mtm_point")
        assert list(pts.features["margin_mm"]) == [round(res.min_margin_mm, 2)]
    assert not errors, errors
