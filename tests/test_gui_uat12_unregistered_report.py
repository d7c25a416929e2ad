"""UAT s12 N6: margins computed without a registration (a sample opened with File > Open
Sample, nothing registered) were exported with a report whose legend called the ablation
zone "registered"; it now says "not registered: identity" (run under xvfb-run)."""

from __future__ import annotations

import html
import re
import threading

import _gui
import pytest
from test_case_switch import _file_open_sample

from napari_ablation.core import report
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def test_report_of_an_unregistered_case_says_not_registered(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1500, 950))
    _d, w = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    session = w.session
    _gui.fast_timers(session)
    for t in threading.enumerate():  # (napari's unit registry, built lazily: see test_case_switch)
        if t.name == "napari-ablation-prewarm":
            t.join(60)
    with qtbot.capture_exceptions() as errors:
        _file_open_sample(viewer, qtbot, "Renal cryoablation")
        qtbot.waitUntil(
            lambda: (
                session.opening is None
                and not _layers.steps_pending()
                and all(session.labels_layer(r) is not None for r in ("tumor", "ablation"))
            ),
            timeout=180_000,
        )
        assert session.model.transform is None  # nothing registered
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(
            lambda: session.model.analysis_current and _gui.idle(session, w), timeout=180_000
        )
        doc = w.export(tmp_path / "report.html").read_text(encoding="utf-8")
        legend = html.unescape(re.search(r"<span class=legend>(.*?)</span></p>", doc, re.S)[1])
        assert "ablation zone (registered)" not in doc
        assert report.ABLATION_LEGEND_IDENTITY in legend
    assert not errors, [str(e[1]) for e in errors]
