"""UAT s10 N6: closing the window while a cohort batch runs (no case opened) stops the
batch, as *Stop* does, and prints nothing on stderr. The close printed a traceback from
the empty viewer's banner warm-up steps (finalised after the canvas was deleted) and
waited for the whole batch (31 s). The viewer runs in a process of its own, whose stderr
is read whole. Run under xvfb-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.gui

SCRIPT = textwrap.dedent(
    """
    import gc, time
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_ablation.core import cohort
    from napari_ablation.widgets import _layers

    cohort.write_synthetic_cohort({cases!r}, n=4, seed=3)
    viewer = napari.Viewer(show=True)
    coh = viewer.window.add_plugin_dock_widget("napari-ablation", "5. Cohort")[1]
    app = QApplication.instance()
    coh.workers.setValue(1)
    assert coh.run_batch({cases!r}, {results!r}) is not None
    end = time.monotonic() + {delay}
    while time.monotonic() < end:  # the batch starts (the viewer's warm-up steps run)
        app.processEvents()
        time.sleep(0.01)
    print("steps pending at the close:", _layers.steps_pending(), flush=True)
    t0 = time.monotonic()
    viewer.close()  # the window's close button
    print(f"closed in {{time.monotonic() - t0:.1f}} s", flush=True)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # what the closed window left queued runs (and ends)
        app.processEvents()
        time.sleep(0.01)
    gc.collect()
    """
)


@pytest.mark.parametrize("delay", [0.0, 1.0])  # at once (the warm-up steps still queued), 1 s on
def test_closing_the_window_stops_a_cohort_batch_quietly(tmp_path, delay):
    cases, results = tmp_path / "cases", tmp_path / "results"
    script = SCRIPT.format(cases=str(cases), results=str(results), delay=delay)
    env = dict(os.environ, NAPARI_ABLATION_CASES=str(tmp_path / "home"))
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "closed in" in proc.stdout
    assert proc.stderr.strip() == "", proc.stderr[-2000:]
    # stopped: no cohort table (a stopped run writes none); what was stored is whole
    assert not (results / "margins.csv").exists()
    for f in results.rglob("*") if results.exists() else ():
        assert not f.name.startswith("."), f  # no temporary file left
        if f.suffix == ".json":
            json.loads(f.read_text("utf-8"))
