"""UAT s7 N11: the threshold spin boxes of Margins and Cohort take the one range of
``core.coverage`` (0 to 30 mm; the Cohort box allowed -20 to 50), as the CLI, ``case.json``
and the quiz do (run under xvfb-run)."""

from __future__ import annotations

import pytest

from napari_ablation.core import coverage

pytestmark = pytest.mark.gui


def test_threshold_spin_boxes_take_the_core_range(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, coh = viewer.window.add_plugin_dock_widget("napari-ablation", "5. Cohort")
    _d, marg = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    for box in (coh.threshold, marg.threshold):
        assert (box.minimum(), box.maximum()) == (
            coverage.THRESHOLD_MIN_MM,
            coverage.THRESHOLD_MAX_MM,
        )
        box.setValue(1e9)
        assert box.value() == coverage.THRESHOLD_MAX_MM
