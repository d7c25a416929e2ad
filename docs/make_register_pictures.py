"""Regenerate the Register and report pictures in docs/ (run under ``xvfb-run -a python``).

Opens the renal sample in napari with the Register widget, registers automatically and
takes the screenshots: QA checkerboard, QA difference with its legend, manual
adjustment, landmarks, and the axial / coronal / sagittal views with their orientation
letters; renders the report page and its slice panels from the same case.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent


def main() -> int:
    os.environ.setdefault("NAPARI_ABLATION_CASES", tempfile.mkdtemp())
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_ablation.core import report, samples
    from napari_ablation.core import transform as tfm
    from napari_ablation.widgets import _layers
    from napari_ablation.widgets.load import LoadCaseWidget
    from napari_ablation.widgets.register import RegisterWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    load = LoadCaseWidget(viewer)
    w = RegisterWidget(viewer)
    viewer.window.add_dock_widget(w, name="Register")
    app = QApplication.instance()

    def wait(cond, timeout=120.0):
        import time

        t0 = time.monotonic()
        while not cond() and time.monotonic() - t0 < timeout:
            app.processEvents()
            time.sleep(0.02)
        for _ in range(20):
            app.processEvents()

    load.open_sample("renal_mri", fresh=True)
    wait(lambda: load._worker is None and w.image("pre") is not None)
    _layers.grid(viewer).enabled = False
    w.auto.run_automatic()
    wait(lambda: not w.busy)
    wait(lambda: w.registered_layer() is not None)
    c = w.tumor_center()
    _layers.center_view_on(viewer, c[::-1], zoom=None)
    viewer.reset_view()
    _layers.camera(viewer).zoom *= 1.6
    _layers.camera(viewer).center = tuple(np.asarray(c[::-1])[list(viewer.dims.displayed)])

    w.tabs.setCurrentWidget(w.qa)
    w.qa.checker.setChecked(True)
    wait(lambda: True)
    viewer.screenshot(str(OUT / "register_checkerboard.png"), canvas_only=False)
    w.qa.checker.setChecked(False)
    w.qa.diff.setChecked(True)
    w.qa.cross.setChecked(True)
    w.qa.move_crosshair(np.asarray(c[::-1]) + [0, -8, -8])
    wait(lambda: True)
    viewer.screenshot(str(OUT / "register_difference.png"), canvas_only=False)
    w.qa.diff.setChecked(False)
    w.qa.cross.setChecked(False)

    w.tabs.setCurrentWidget(w.manual)
    w.manual["tx"].spin.setValue(2.0)
    w.manual["rz"].spin.setValue(-1.5)
    w.manual.commit()
    wait(lambda: not w.busy)
    viewer.screenshot(str(OUT / "register_manual.png"), canvas_only=False)
    w.undo()
    wait(lambda: not w.busy)

    w.tabs.setCurrentWidget(w.landmarks)
    rng = np.random.default_rng(3)
    for k in range(4):
        p = c + np.r_[rng.uniform(-30, 30, 2), 0.0 if k < 2 else rng.uniform(-20, 20)]
        w.landmarks.add_landmark("landmarks_pre", p)
        w.landmarks.add_landmark(
            "landmarks_post", tfm.transform_points(w.transform, p)[0] + rng.normal(0, 0.8, 3)
        )
    w.landmarks.fit()
    wait(lambda: not w.busy)
    viewer.layers.selection.active = _layers.find_layer(viewer, "landmarks_pre")
    first = w.landmarks.points()[0]["1"]
    viewer.dims.point = tuple(first[::-1])  # the slice of pair 1
    wait(lambda: True)
    viewer.screenshot(str(OUT / "register_landmarks.png"), canvas_only=False)

    w.undo()  # back to the automatic registration for the report
    wait(lambda: not w.busy)
    w.registered_layer().visible = False
    viewer.dims.point = tuple(np.asarray(c[::-1]))
    for plane, order in (("axial", (0, 1, 2)), ("coronal", (1, 0, 2)), ("sagittal", (2, 0, 1))):
        viewer.dims.order = order
        viewer.reset_view()
        _layers.camera(viewer).zoom *= 1.4
        _layers.camera(viewer).center = tuple(np.asarray(c[::-1])[list(order[1:])])
        wait(lambda: True)
        viewer.screenshot(str(OUT / f"orientation_{plane}.png"), canvas_only=True)
    viewer.dims.order = (0, 1, 2)

    analysis = w.model.compute_analysis()
    res, case = analysis.result, samples.load_sample("renal_mri")
    fig = report.report_page(
        res,
        info={k: case.info[k] for k in ("title", "modality", "description")},
        qa=w.model.qa,
        pre=w.model.pre,
        transform_note="registration (automatic): "
        + tfm.motion_text(w.model.transform, res.tumor_centroid_lps),
    )
    fig.savefig(OUT / "margin_report_page.png", dpi=70)
    report.plot_slices(res, w.model.pre).savefig(
        OUT / "margin_report_slices.png", dpi=80, bbox_inches="tight"
    )
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
