"""Screenshots for the documentation, taken from the real widgets on the bundled samples.

Run by the Sphinx build (``docs/_ext/napari_ablation_docs.py``) so that the pictures in
the tutorial never go stale; it can also be run by hand::

    xvfb-run -a python docs/scripts/make_screenshots.py docs/_generated/screenshots

It opens napari with the plugin's four widgets, opens the renal MRI sample case
through the Load widget, registers it automatically, shows the checkerboard QA view,
computes the margins and renders the one-page report, saving a PNG after each step.
napari's canvas needs OpenGL: run it on a desktop or under Xvfb. Any failure ends with
a non-zero exit status and one line naming the step.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

#: the widgets as the manifest names them, in workflow order
WIDGETS = ("1. Load case", "2. Segment", "3. Register", "4. Margins")
CASE = "renal_mri"
SIZE = (1600, 900)


def wait_until(app, condition, what: str, timeout: float = 180.0) -> None:
    """Process Qt events until ``condition()`` is true; exit with a message after ``timeout`` s."""
    start = time.monotonic()
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            raise SystemExit(
                f"make_screenshots: timed out after {timeout:.0f} s waiting for {what}"
            )


def settle(app, seconds: float = 0.4) -> None:
    """Let napari draw (the canvas repaints on the event loop)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


@contextlib.contextmanager
def step(name: str):
    """Turn any failure inside a step into one line naming the step."""
    try:
        yield
    except SystemExit:
        raise
    except Exception as exc:  # the docs build shows this line
        raise SystemExit(
            f"make_screenshots: step '{name}' failed: {type(exc).__name__}: {exc}"
        ) from exc


def main(out_dir: str) -> int:
    cases = tempfile.mkdtemp(prefix="napari-ablation-docs-")
    os.environ["NAPARI_ABLATION_CASES"] = cases  # the sample's working copy goes here
    os.environ.setdefault("NAPARI_ABLATION_NO_AUTOSAVE_DIALOGS", "1")
    try:
        return take_screenshots(Path(out_dir))
    finally:
        shutil.rmtree(cases, ignore_errors=True)


def take_screenshots(out: Path) -> int:
    """Open napari with the four widgets and save one PNG per workflow step into ``out``."""
    out.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_ablation.core import report
    from napari_ablation.widgets import _layers
    from napari_ablation.widgets.session import CaseSession

    viewer = napari.Viewer(title="napari-ablation", show=True)
    viewer.window.resize(*SIZE)
    app = QApplication.instance()
    docks, widgets = {}, {}
    for name in WIDGETS:  # as the Plugins menu opens them: tabbed in this order, short titles
        dock, widget = viewer.window.add_plugin_dock_widget("napari-ablation", name)
        docks[name], widgets[name] = dock, widget

    session = CaseSession.of(viewer)
    settle(app)  # the dock tabs exist only after the event loop ran

    def shot(name: str, step: str) -> None:
        settle(app)
        path = out / name
        viewer.window.screenshot(str(path), canvas_only=False, flash=False)
        print(f"{step}: {path}")

    def show_tab(name: str) -> None:
        docks[name].raise_()
        settle(app, 0.2)

    # 1. load: the sample case through the Load widget (read off the GUI thread)
    with step("load"):
        show_tab("1. Load case")
        widgets["1. Load case"].open_sample(CASE, fresh=True)
        roles = ("pre", "post", "tumor", "ablation")
        wait_until(
            app,
            lambda: all(_layers.find_layer(viewer, r) is not None for r in roles),
            "the sample case to load",
        )
        settle(app)
        viewer.camera.zoom *= 1.4
        shot("load.png", "load")

    # 2. segment: the tumor labels on pre, selected in the Segment widget
    with step("segment"):
        show_tab("2. Segment")
        viewer.grid.enabled = False
        for role in ("post", "ablation"):
            _layers.find_layer(viewer, role).visible = False
        viewer.layers.selection.active = _layers.find_layer(viewer, "tumor")
        session.center_on_tumor()
        settle(app, 1.0)  # the volume / diameter readout runs in the background
        shot("segment.png", "segment")

    # 3. register: automatic rigid registration, then the checkerboard QA view
    with step("register"):
        show_tab("3. Register")
        reg = widgets["3. Register"]
        if reg.auto.run_automatic() is None:
            raise SystemExit("make_screenshots: the automatic registration did not start")
        wait_until(
            app,
            lambda: not reg.busy and reg.registered_layer() is not None,
            "the automatic registration",
        )
        shot("register.png", "register")
        reg.tabs.setCurrentWidget(reg.qa)
        reg.qa.checker.setChecked(True)
        session.center_on_tumor()
        wait_until(app, lambda: "qa checkerboard" in viewer.layers, "the checkerboard view")
        shot("register_checkerboard.png", "register (checkerboard)")
        reg.qa.checker.setChecked(False)

    # 4. margins: compute, then the slice through the minimal margin
    with step("margins"):
        show_tab("4. Margins")
        reg.registered_layer().visible = False  # the reader's choice: margins over pre alone
        mw = widgets["4. Margins"]
        if mw.run() is None:
            raise SystemExit("make_screenshots: the margin analysis did not start")
        wait_until(
            app,
            lambda: mw.result is not None and _layers.find_layer(viewer, "margin") is not None,
            "the margin analysis",
        )
        settle(app, 1.0)
        mw.center_on_mtm()
        shot("margins.png", "margins")
        mw.show_3d()  # the 3D look a user gets: surfaces over the pre plane
        shot("margins_3d.png", "margins (3D)")
        viewer.dims.ndisplay = 2

    # 5. report: the one-page report (the page the PDF export writes), as PNG
    with step("report"):
        case = session.case
        info = {k: case.info[k] for k in ("name", "title", "modality") if case.info.get(k)}
        fig = report.report_page(
            mw.result,
            info=info,
            qa=dict(case.qa or {}),
            pre=case.pre,
            transform_note="automatic rigid registration",
        )
        fig.savefig(out / "report.png", dpi=80)
        print(f"report: {out / 'report.png'}")

    viewer.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_screenshots.py OUT_DIR")
    sys.exit(main(sys.argv[1]))
