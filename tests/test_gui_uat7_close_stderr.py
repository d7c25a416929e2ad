"""Closing the demo window mid-work prints nothing on stderr (UAT s6 D10: "QObject::
startTimer: current thread's event dispatcher has already been destroyed"). That line came
from the testers' stall meter, whose QTimer was started before napari made the Qt
application (:class:`_gui.StallMeter` now makes it first). A worker started just before
the window closed printed its tqdm line ("margin analysis: 0it [00:04, ?it/s]") as it
ended. Here the demo runs in a process of its own, closed while a case opens and while
margins are computed and a PDF is written, and its stderr is read whole. Run under
xvfb-run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gui

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from qtpy.QtWidgets import QApplication
    sys.path.insert(0, {tests!r})
    import _gui
    from napari_ablation.core import samples
    from napari_ablation.demo import open_demo_viewer
    from napari_ablation.widgets import _layers
    from napari_ablation.widgets.margin import MarginWidget

    STAGE = {stage!r}
    with _gui.StallMeter():  # (started before the viewer makes the Qt application)
        viewer, load, worker = open_demo_viewer("renal_mri")
    app = QApplication.instance()
    session = load.session

    def wait(cond, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not cond():
            app.processEvents()
            time.sleep(0.01)
        assert cond(), "timed out"

    if STAGE == "opening":
        wait(lambda: len(viewer.layers) >= 1 or session.opening is not None, 120)
    else:
        wait(lambda: session.opening is None and len(viewer.layers) == 4
             and not _layers.steps_pending(), 180)
        marg = viewer.window._qt_window.findChildren(MarginWidget)[0]
        tfm = samples.sample_dir() / "renal_mri" / "true_transform.tfm"
        assert marg.load_transform_file(str(tfm))
        marg.run()
        wait(lambda: session.model.analysis is not None and _gui.idle(session, marg), 180)
        marg.export_async({pdf!r})
        marg.threshold.setValue(3.0)
        # a recompute started in the same piece of GUI work as the close: its progress bar
        # is not yet napari's activity dialog's when the window goes
        session.analysis.request(now=True)
        assert session.analysis.running
    viewer.close()
    app.processEvents()
    print("closed", STAGE, flush=True)
    """
)


@pytest.mark.parametrize("stage", ["opening", "export"])
def test_closing_the_demo_mid_work_prints_nothing_on_stderr(tmp_path, stage):
    tests = os.path.dirname(os.path.abspath(__file__))
    script = SCRIPT.format(tests=tests, stage=stage, pdf=str(tmp_path / "report.pdf"))
    env = dict(os.environ, NAPARI_ABLATION_CASES=str(tmp_path / "cases"))
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"closed {stage}" in proc.stdout
    assert proc.stderr.strip() == "", proc.stderr[-2000:]
