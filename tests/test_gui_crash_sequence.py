"""The sequence that aborted napari (issue 8, point 1), run 10 times in a real viewer.

Open the liver sample, compute margins, open the renal sample, register automatically.
The registration's progress reports used to re-enter ``QApplication.processEvents``
through napari's progress bar until the stack overflowed ("Fatal Python error:
Aborted"): if that comes back, this test kills the test process.
"""

from __future__ import annotations

import pytest
from napari.utils import progress


@pytest.fixture
def docked(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    from napari_ablation.widgets.load import LoadCaseWidget
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.register import RegisterWidget

    viewer = make_napari_viewer(show=True)
    load, margin, register = LoadCaseWidget(viewer), MarginWidget(viewer), RegisterWidget(viewer)
    for name, w in (("Load", load), ("Margins", margin), ("Register", register)):
        viewer.window.add_dock_widget(w, name=name)
    return viewer, load, margin, register


def test_liver_margins_then_renal_registration_ten_times(docked, qtbot):
    _viewer, load, margin, register = docked
    for i in range(10):
        load.open_sample("liver_ct", fresh=True)
        qtbot.waitUntil(
            lambda: load._worker is None and "liver" in str(load.session.folder), timeout=60000
        )
        margin.run()
        qtbot.waitUntil(
            lambda: margin._worker is None and margin.model.analysis_current, timeout=60000
        )
        load.open_sample("renal_mri", fresh=True)
        qtbot.waitUntil(
            lambda: load._worker is None and "renal" in str(load.session.folder), timeout=60000
        )
        auto = register.auto
        auto.last_result = None
        assert auto.run_automatic() is not None
        if 0 < i < 9:  # the progress reports are what crashed: cancel once they have run a while
            qtbot.waitUntil(lambda a=auto: a.progress.value() >= 10, timeout=120000)
            auto.cancel()
        qtbot.waitUntil(lambda: not register.busy, timeout=120000)
        if i in (0, 9):
            assert auto.last_result is not None and auto.last_result.improved
        # once every worker is done, no napari progress bar is left alive (from the
        # registration, the margins or the earlier case)
        qtbot.waitUntil(lambda: margin._worker is None and load._worker is None, timeout=60000)
        qtbot.waitUntil(lambda: not list(progress._all_instances), timeout=5000)
