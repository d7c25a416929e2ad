"""Screenshots of the workflow on the renal sample (sample -> registration -> margins).

Run under Xvfb from the repository root::

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/make_workflow_screenshots.py

Writes ``docs/workflow_margins.png`` (the canvas on the slice of the minimal margin),
``docs/margin_widget.png`` (the whole 1920 x 1080 window with the docked widgets) and
``docs/margin_3d.png`` (the 3D view of "3D surfaces"), and prints the width the docks take.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def _wait(app, cond, timeout=120.0):
    t0 = time.time()
    while not cond():
        app.processEvents()
        time.sleep(0.01)
        if time.time() - t0 > timeout:
            raise TimeoutError("timed out")


def main() -> None:
    os.environ.setdefault("NAPARI_ABLATION_CASES", tempfile.mkdtemp())
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_ablation.core import samples
    from napari_ablation.widgets.load import LoadCaseWidget
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.segment import SegmentWidget
    from napari_ablation.widgets.session import CaseSession

    v = napari.Viewer(show=True)
    v.window._qt_window.showMaximized()
    v.window.resize(1920, 1040)
    app = QApplication.instance()
    load, seg, marg = LoadCaseWidget(v), SegmentWidget(v), MarginWidget(v)
    for w, name in ((load, "1. Load case"), (seg, "2. Segment"), (marg, "4. Margins")):
        v.window.add_dock_widget(w, name=name)  # tabbed in this order (widgets._dock)
    session = CaseSession.of(v)
    load.sample.setCurrentIndex(load.sample.findData("renal_mri"))
    load.fresh.setChecked(True)
    load.sample_btn.click()
    _wait(app, lambda: load._worker is None and session.model.pre is not None)
    marg.load_transform_file(str(samples.sample_dir() / "renal_mri" / "true_transform.tfm"))
    marg.run_btn.click()
    _wait(app, lambda: marg.result is not None and marg._worker is None and marg._shown is not None)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    marg.center_on_mtm()  # the slice through the minimal margin, as the README says
    v.camera.zoom *= 1.5
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    v.screenshot(str(DOCS / "workflow_margins.png"), canvas_only=True, flash=False)
    v.window.screenshot(str(DOCS / "margin_widget.png"), canvas_only=False, flash=False)
    marg.show_3d()  # the 3D look: the tumor surface by margin inside the ablation surface
    for _ in range(20):
        app.processEvents()
        time.sleep(0.02)
    v.screenshot(str(DOCS / "margin_3d.png"), canvas_only=True, flash=False)
    v.dims.ndisplay = 2
    canvas = v.window._qt_viewer.canvas.native
    print(
        f"window {v.window._qt_window.width()} px, canvas {canvas.width()} px, "
        f"docks and layer list {v.window._qt_window.width() - canvas.width()} px"
    )


if __name__ == "__main__":
    main()
