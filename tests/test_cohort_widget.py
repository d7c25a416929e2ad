"""Cohort widget in a real viewer: batch in the background with progress, a sortable results
table whose click opens the case with its margin layer, the statistics plots, a screenshot.

Run with ``xvfb-run -a python -m pytest tests/test_cohort_widget.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_ablation.core import cohort, cohort_stats
from napari_ablation.widgets import _layers

DOCS = Path(__file__).resolve().parents[1] / "docs"
pytestmark = pytest.mark.gui


def _wait(qtbot, w, timeout=120_000):
    qtbot.waitUntil(lambda: w._worker is None, timeout=timeout)


def test_cohort_widget_batch_table_open_plots(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from qtpy.QtCore import Qt

    from napari_ablation.widgets.cohort import CohortWidget
    from napari_ablation.widgets.session import CaseSession

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    cases = tmp_path / "cases"
    truth = {t["case"]: t for t in cohort.write_synthetic_cohort(cases, n=4, seed=3).truth}
    by_margin = sorted(truth, key=lambda c: truth[c]["min_margin_mm"])
    viewer = make_napari_viewer(show=True)
    w = CohortWidget(viewer)
    viewer.window.add_dock_widget(w, name="Cohort", area="right")
    w.workers.setValue(1)
    seen = []
    w._relay.progress.connect(lambda d: seen.append(d))
    assert w.run_batch(str(cases), str(tmp_path / "results")) is not None
    assert not w.run_btn.isEnabled() and w.stop_btn.isEnabled()
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    assert seen and seen[-1][:3] == (4, 0, 4)  # done, failed, total, through the GUI thread
    assert "4/4 done, 0 failed, 0 left" in w.last_progress
    assert w.table.rowCount() == 4 and w.run_btn.isEnabled()

    # sortable: by MTM, numerically
    w.table.sortItems(1, Qt.SortOrder.AscendingOrder)
    mtm = [float(w.table.item(r, 1).text()) for r in range(4)]  # shown as margins.csv has it
    assert mtm == sorted(mtm) and mtm[0] < 0 < mtm[-1]
    first = w.table.item(0, 0).data(Qt.ItemDataRole.UserRole)
    assert first == by_margin[0] and truth[first]["min_margin_mm"] < 0

    # a click on the first row opens that case with its layers and margin layer
    before = {c.case: cohort.inputs_hash(c, 5.0) for c in cohort.find_cases([cases])}
    rect = w.table.visualItemRect(w.table.item(0, 1))
    qtbot.mouseClick(w.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    _wait(qtbot, w)
    qtbot.waitUntil(lambda: _layers.find_layer(viewer, "margin") is not None, timeout=60_000)
    session = CaseSession.of(viewer)
    assert session.folder == cases / first
    for role in ("pre", "post", "tumor", "ablation", "margin"):
        assert _layers.find_layer(viewer, role) is not None, role
    margin = _layers.find_layer(viewer, "margin").data
    assert {1, 3} <= set(np.unique(margin))  # green and red voxels: this case is not covered
    # viewing a case does not change it (a rerun of the batch would reuse every result)
    assert {c.case: cohort.inputs_hash(c, 5.0) for c in cohort.find_cases([cases])} == before

    # statistics with an outcomes table: plots shown in the Plots tab
    rows = [f"{c},{int(c in by_margin[:2])},{12 + 6 * i}," for i, c in enumerate(sorted(truth))]
    (tmp_path / "outcomes.csv").write_text(
        "case,ltp,months,recurrence_octant\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    w.compute_stats(str(tmp_path / "outcomes.csv"))
    _wait(qtbot, w)
    assert w.last_error is None, w.last_error
    assert w.stats["n_cases"] == 4 and w.stats["n_events"] == 2
    assert w.stats["roc"]["auc"] == 1.0  # both LTP cases have the two smallest margins
    for key in cohort_stats.PLOTS:
        assert not w.plot_labels[key].pixmap().isNull()
    assert (tmp_path / "results" / "stats" / "report.html").exists()

    # screenshot of the window with the table (and of the plots tab), checked
    _layers.grid(viewer).enabled = False
    viewer.window.resize(1400, 860)
    for role in ("post", "ablation"):  # the picture: the margin layer over pre
        _layers.find_layer(viewer, role).visible = False
    w.tabs.setCurrentIndex(0)
    for name, tab in (("cohort_widget.png", 0), ("cohort_plots.png", 1)):
        w.tabs.setCurrentIndex(tab)
        qtbot.wait(300)
        viewer.reset_view()
        shot = viewer.screenshot(str(tmp_path / name), canvas_only=False)
        assert shot.shape[0] > 300 and shot.shape[1] > 600
        assert np.std(shot[..., :3]) > 10  # not a blank window
        if os.environ.get("NAPARI_ABLATION_UPDATE_DOCS"):
            DOCS.mkdir(exist_ok=True)
            viewer.screenshot(str(DOCS / name), canvas_only=False)


def test_cohort_widget_errors_are_one_line(make_napari_viewer, qtbot, tmp_path):
    from napari_ablation.widgets.cohort import CohortWidget

    viewer = make_napari_viewer()
    w = CohortWidget(viewer)
    assert w.run_batch() is None and "choose the cases" in w.last_error
    w.run_batch(str(tmp_path / "missing"), str(tmp_path / "results"))
    _wait(qtbot, w)
    assert w.last_error.endswith("no such folder") and "\n" not in w.last_error


def test_cohort_status_counts_a_failed_case_once(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """UAT s6 D10: "3 cases (3 computed, 0 unchanged, 1 failed)" counted the failed case as
    computed too; the three counts add up to the cases."""
    from napari_ablation.widgets.cohort import CohortWidget

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    cases = tmp_path / "cases"
    cohort.write_synthetic_cohort(cases, n=3, seed=5)
    broken = sorted(p for p in cases.iterdir() if p.is_dir())[-1] / "tumor.nii.gz"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # truncated file
    viewer = make_napari_viewer()
    w = CohortWidget(viewer)
    w.workers.setValue(1)
    assert w.run_batch(str(cases), str(tmp_path / "results")) is not None
    _wait(qtbot, w)
    assert w.status.text() == "3 cases (2 computed, 0 unchanged, 1 failed)", w.status.text()
