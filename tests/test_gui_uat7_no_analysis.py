"""UAT s7 N5: a correction that empties the tumor (Segment > Grow / shrink -30 mm) leaves no
figure of the earlier analysis: its layers go, the Margins readout is cleared and its actions
are disabled while the model says the analysis cannot be computed; Ctrl-Z brings the margins
back (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from test_registration import TRUE, make_phantom

from napari_ablation.core import coverage
from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import OUTPUT_ROLES

pytestmark = pytest.mark.gui


def _figures(viewer) -> list:
    """The analysis layers that draw something."""
    return [
        ly.name
        for ly in viewer.layers
        if _layers.role_of(ly) in OUTPUT_ROLES and ly.visible and ly.opacity > 0
    ]


def _actions(marg) -> dict:
    return {
        b.text(): b.isEnabled()
        for b in (marg.center_btn, marg.surface_btn, marg.copy_btn, *marg.export_btns.values())
    }


def test_an_emptied_tumor_shows_no_figure_of_the_earlier_analysis(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer, marg, session = _gui.margins_menu_on_phantom(
        make_napari_viewer, tmp_path, monkeypatch, make_phantom(TRUE)
    )
    _d, seg = viewer.window.add_plugin_dock_widget("napari-ablation", "2. Segment")
    _gui.fast_timers(session)
    qtbot.waitUntil(lambda: session.labels_layer("ablation") is not None, timeout=60_000)
    session.model.set_transform(TRUE, "file")
    _gui.click(qtbot, marg.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=120_000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    marg.show_3d()  # the 3D surfaces too, then back to 2D
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    viewer.dims.ndisplay = 2
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    before = marg.big.text()
    assert "MTM" in before and any(ch.isdigit() for ch in before)
    assert all(_actions(marg).values()), _actions(marg)
    n_figures = len(_figures(viewer))
    assert n_figures == 3, _figures(viewer)  # margin, outline, point (surfaces: 3D only)
    tumor = session.labels_layer("tumor")
    drawn = np.asarray(tumor.data).copy()

    with qtbot.capture_exceptions() as errors:
        _gui.choose(viewer, tumor, None)
        seg.structure.setCurrentIndex(seg.structure.findData("tumor"))
        seg.grow_mm.setValue(-30.0)
        _gui.click(qtbot, seg.grow_btn)
        qtbot.waitUntil(lambda: not np.asarray(tumor.data).any(), timeout=60_000)
        qtbot.waitUntil(lambda: "empty" in marg.status.text(), timeout=60_000)
        assert _figures(viewer) == [], _figures(viewer)  # hidden at once
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
        qtbot.wait(300)
        # no figure of the earlier analysis: layers, MTM, legend, table, histogram, actions
        assert not any(_layers.role_of(ly) in OUTPUT_ROLES for ly in viewer.layers)
        assert marg.big.text() == "MTM = —", marg.big.text()
        assert marg.where.text() == "" and marg.interval.text() == ""
        for key in coverage.CLASS_KEYS:
            label = marg.legend_labels[coverage.CLASS_LABELS[key]].text()
            assert "%" not in label and "ml" not in label, label
        assert marg.table.rowCount() == 0
        assert marg.histogram.picture() is None
        assert not any(_actions(marg).values()), _actions(marg)
        assert marg.table_tsv() == ""
        assert session.model.analysis_error is not None
        assert _gui.stale_readout(viewer, session, marg) is None
        # Ctrl-Z: the tumor and its margins come back, computed from the labels again
        _gui.undo(viewer, qtbot)
        qtbot.waitUntil(lambda: np.array_equal(np.asarray(tumor.data), drawn), timeout=60_000)
        qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=120_000)
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
        assert session.model.analysis_error is None
        assert marg.big.text() == before
        assert all(_actions(marg).values()), _actions(marg)
        assert len(_figures(viewer)) == n_figures, _figures(viewer)
        _gui.check_invariants(viewer, session, marg, tmp_path)
    assert not errors, errors
