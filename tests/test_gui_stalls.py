"""No user action blocks the GUI thread for long (issue 8, point 9).

Run with ``xvfb-run -a python -m pytest tests/test_gui_stalls.py``.

A real napari viewer with the plugin's widgets docked; each user action (a button, a
brush stroke, a key) runs while a 5 ms heartbeat ``QTimer`` measures the longest gap of
the Qt event loop (:class:`_gui.StallMeter`), until the action's result is on screen.
What counts is the largest CPU time the GUI thread itself spent in one gap
(``time.thread_time``): on a loaded machine other processes and our own worker threads
stretch the wall time of a gap (the GUI thread waits for a core or for the GIL), not the
GUI thread's own work, which is what freezes the window on any machine.

Each action has a target: 100 ms, or napari's own work for the same change (a layer added
or removed, the 2D/3D switch) measured in the same run. The test prints each action against
its target, and ``benchmarks/bench_gui_stalls.py`` measures them version against version
(``benchmarks/README.md``), as the project measures every speed target. What is asserted is
that no action freezes the viewer: :data:`FREEZE_FACTOR` times its target, which every
freeze of issue 8 (1.0-5.2 s: a file read, a computation or a picture rendered on the GUI
thread) exceeds, and the load of a shared CI machine does not (asserted at 1x, the targets
failed CI runs by 6-12 % on machines slower than the one they were set on).
"""

from __future__ import annotations

import gc
import os
import time

import _gui
import numpy as np
import pytest

from napari_ablation.core import geometry, samples
from napari_ablation.widgets import _layers

#: the GUI thread's work in one piece that freezes the viewer, as a multiple of the action's
#: target (below): asserted for every action
FREEZE_FACTOR = 2.0
#: the target for the GUI thread's work in one piece, ms
LIMIT_MS = 100.0
#: ... or this multiple of napari's own redraw after a one-slice scroll in the same viewer
#: (the slowest of a few, measured in the same run), when that is longer: every action
#: that changes the picture ends in such a redraw, and with software OpenGL on a loaded
#: machine the redraw alone can take over 100 ms of the GUI thread's CPU
REDRAW_FACTOR = 1.5
#: actions whose largest piece is still one call into napari / vispy, each with what the
#: GUI thread did in it (the profile of that gap) and its GUI-thread CPU in two runs on the
#: shared 2-core machine at load average 12-14 with software OpenGL; the limits keep about
#: 2x of that for the load (benchmarks/README.md, "GUI thread stalls"). Everything the
#: plugin computes runs in workers, and new layers are added one per event-loop iteration.
NAPARI_LIMITS_MS = {
    # File > Open Sample in a fresh viewer: napari's sample call is synchronous and needs one
    # layer back, so the pre image is read and added inside it (the first layer of a fresh
    # viewer, as below), the other three layers follow one per event-loop iteration
    "File > Open Sample": 400.0,
    # its largest piece is napari adding one Labels layer (tumor, ablation: the vispy visuals
    # of all its overlays, 43 % of the add, then its visual and controls), as in the first
    # Compute margins below: 95-140 ms of the steps at load 20-24, 185 in the test. The first
    # image layer, which made the dims sliders and painted the resized canvas inside its add
    # (129-134 ms), finds the dims preset one step before now (45-49 + 83-88 ms)
    "Load > Open sample": 350.0,
    # napari adding one output Labels layer (its visual, overlays and controls), alone: the
    # layer object is made in the worker, the grid stride that puts it in the pre cell and
    # the first draw that builds its programs follow in steps of their own (branch i8st3:
    # 134-171 ms at load 17-36, 181-226 before, in the same runs)
    "first Compute margins": 250.0,
    # a repaint during the stroke in which vispy first draws the brush-circle overlay of the
    # tumor layer (its shaders compiled and linked): 106-141 ms (the new MTM label's glyphs,
    # rendered in that repaint before, are drawn when the viewer opens)
    "brush stroke + recompute": 300.0,
    # napari's ndisplay toggle (the layers sliced again, each visual swapped) and the frame
    # napari paints (to 2D inside the toggle: its dims slider resizes the canvas); the
    # plugin's 3D looks follow one layer per event-loop iteration (five visibility changes,
    # each a scene-graph rebuild of every grid cell: 100-160 ms when they ran inside
    # napari's switch), so the plugin's own part of the gap is the orientation letters
    # (about 5 %). Branch i8v, load 15-28: 2D -> 3D 143-302 ms (the first switch makes the
    # surfaces, in steps), 3D -> 2D 285-503 (bare napari holding copies of the plugin's
    # layers: 317-369); main before it: 399 / 443 idle, 269-548 / 394-457 at load 25
    # (benchmarks/README.md)
    "2D -> 3D (napari button)": 400.0,
    # to 2D: napari's dims slider no longer resizes and paints the canvas inside the toggle
    # (the canvas is covered by its last 3D frame from before napari's switch; the 2D frame
    # is drawn once, in a step of its own): what is left is napari's toggle (its camera,
    # the visible layers sliced in 2D) and the plugin's letters. Branch i8st4, load 15-26:
    # 132-154 ms against 297-342 for main in the same runs (benchmarks/README.md)
    "3D -> 2D (napari button)": 300.0,
    # napari adding one landmark Points layer (visual, text, controls: 120-135 ms at load 12,
    # bare napari 250 in the same bench run) and its first draw (85-90 ms); the landmark
    # view that follows sets only the visibilities that change (it set 17, 11 of them no-ops,
    # 290 ms)
    "Register > Landmark layers": 300.0,
}
#: the napari limits above hold on a machine whose redraw after a one-slice scroll (the
#: baseline below) costs the GUI thread up to this much (48-71 ms in the CI run of
#: 2026-12-01); on a slower or busier machine each scales with that redraw, measured in the
#: same run (this machine, fresh and at load 6 with four benchmarks running: 87-141 ms, and
#: napari's own pieces grew alike: Load > Open sample 376 ms, 2D -> 3D 481 ms)
REFERENCE_REDRAW_MS = 75.0
#: File > Open Sample in a fresh viewer, against bare napari adding the same pre image to
#: another fresh viewer (measured in the same run): the sample command also reads the image
FRESH_ADD_FACTOR = 1.5
#: another case opened over an analysed one (of another size): the old case's figures
#: (margin, outline, MTM point, landmarks) are hidden at once and removed one per event-loop
#: iteration, and the case's layers get the new data (20-40 ms each), so its largest piece is
#: one layer removed (napari: its visual and event connections undone, a full gc.collect, the
#: grid), with the canvas paused (the layers are hidden: nothing to repaint). Its limit:
#: napari removing one layer of the same viewer, measured just before (the gc.collect walks
#: the same heap), with its repaint. Measured against that floor: 158 ms (floor 263, load
#: 13-17), 115 ms (floor 191, idle); 372 ms (floor 266) and 277 ms (floor 227) when the
#: figures went in one batch and each case layer was removed and added in one step (main
#: until i8o)
OPEN_OVER = "Load > Open sample over an analysed case"
REMOVAL_FACTOR = 1.0
#: napari's File > Open Sample over an analysed case: the sample command gives napari a hidden,
#: empty stand-in (no volume read, the world extent unchanged), which the session removes
#: in a later piece of GUI work before it opens the sample in steps, as Load > Open sample
#: does. Its limit is that of OPEN_OVER: one layer of the same viewer removed. Measured:
#: 156-158 ms at load 8-10; 376-400 ms in one piece when napari got the sample's pre image,
#: re-sliced every layer for its world extent and the session removed it in the same piece
FILE_OVER = "File > Open Sample over an analysed case"
SAMPLE_TITLES = {"renal_mri": "Renal cryoablation", "liver_ct": "Liver microwave ablation"}
#: NAPARI_ABLATION_STALL_PROFILE=1 (with pytest -s): what each longest stall was made of
PROFILE = os.environ.get("NAPARI_ABLATION_STALL_PROFILE") == "1"


def _dock(viewer):
    from napari_ablation.widgets.load import LoadCaseWidget
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.register import RegisterWidget
    from napari_ablation.widgets.segment import SegmentWidget
    from napari_ablation.widgets.session import CaseSession

    load, seg = LoadCaseWidget(viewer), SegmentWidget(viewer)
    reg, marg = RegisterWidget(viewer), MarginWidget(viewer)
    for w, name in ((load, "Load"), (seg, "Segment"), (reg, "Register"), (marg, "Margins")):
        viewer.window.add_dock_widget(w, name=name, tabify=True)
    session = CaseSession.of(viewer)
    _gui.fast_timers(session)
    return session, load, reg, marg


def _button(widget, text):
    return next(b for b in widget.findChildren(type(widget.run_btn)) if b.text() == text)


@pytest.mark.parametrize("key", ["renal_mri"])
def test_no_user_action_blocks_the_gui_thread(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, key
):
    from test_case_switch import _file_open_sample

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1600, 900)
    results: dict[str, tuple[float, float]] = {}

    def act(name, action, until, timeout=120000):
        gc.collect()  # a collection owed by earlier work is not this action's stall
        meter = _gui.StallMeter(sample=PROFILE)
        _gui.measure(qtbot, action, until, timeout, meter=meter)
        results[name] = (meter.longest_ms, meter.max_cpu_ms)
        if PROFILE:
            print(f"{name}: {meter.longest_ms:.0f} ms; GUI-thread CPU {meter.max_cpu_ms:.0f} ms")
            print(meter.profile(40, cpu=True))

    with qtbot.capture_exceptions() as errors:
        session, load, reg, w = _dock(viewer)
        qtbot.wait(300)

        def idle():
            return _gui.idle(session, w) and load._worker is None

        load.sample.setCurrentIndex(load.sample.findData(key))
        load.fresh.setChecked(True)
        act(
            "Load > Open sample",
            lambda: _gui.click(qtbot, load.sample_btn),
            lambda: idle() and session.model.pre is not None and len(viewer.layers) == 4,
        )
        folder = samples.sample_dir() / key
        load.pre.path.setText(str(folder / "pre.nii.gz"))
        load.post.path.setText(str(folder / "post.nii.gz"))
        before = session.model.pre
        act(
            "Load > Load pre + post files",
            lambda: _gui.click(qtbot, load.load_btn),
            lambda: idle() and session.model.pre is not before,
        )
        load.sample.setCurrentIndex(load.sample.findData(key))
        _gui.click(qtbot, load.sample_btn)  # back to the sample, with its labels
        qtbot.waitUntil(lambda: idle() and session.model.labels("tumor").any(), timeout=120000)
        assert w.load_transform_file(str(folder / "true_transform.tfm"))
        act(
            "first Compute margins",
            lambda: _gui.click(qtbot, w.run_btn),
            lambda: idle() and _layers.find_layer(viewer, "mtm_point") is not None,
        )
        # the baseline: napari redrawing the same layers after a one-slice scroll
        axis = viewer.dims.not_displayed[0]
        for k in range(3):
            t0 = time.perf_counter()
            step = list(viewer.dims.current_step)
            act(
                f"napari: scroll one slice ({k + 1})",
                lambda a=axis, s=step: viewer.dims.set_current_step(a, s[a] + 1),
                lambda t=t0: time.perf_counter() - t > 0.25,
            )
        tumor = session.labels_layer("tumor")
        viewer.layers.selection.active = tumor
        tumor.mode = "paint"
        tumor.brush_size = 6
        painted = np.array(tumor.data, copy=True)
        res = session.model.result
        centre = geometry.lps_to_world(res.min_margin_point_lps)
        viewer.dims.point = tuple(float(v) for v in centre)
        _d0, d1 = viewer.dims.displayed
        stroke = []
        for t in np.linspace(-8.0, 8.0, 9):
            p = np.array(centre, float)
            p[d1] += t
            stroke.append(p)
        act(
            "brush stroke + recompute",
            lambda: _gui.stroke(viewer, qtbot, stroke),
            lambda: idle() and session.model.result is not res,
        )
        assert (tumor.data != painted).any(), "the stroke painted nothing"
        act(
            "Ctrl-Z + recompute",
            lambda: _gui.undo(viewer, qtbot),
            lambda: idle() and np.array_equal(tumor.data, painted),
        )
        act(
            "threshold 3 mm",
            lambda: _gui.click(qtbot, _button(w, "3")),
            lambda: idle() and w._shown is not None and w._shown.result.threshold_mm == 3.0,
        )
        for fmt in ("html", "pdf"):
            path = tmp_path / f"report.{fmt}"
            act(
                f"export {fmt.upper()}",
                lambda p=path: w.export_async(p),
                lambda p=path: p.exists() and not w.exporting,
            )
        for name, nd in (("2D -> 3D (napari button)", 3), ("3D -> 2D (napari button)", 2)):
            t0 = time.perf_counter()
            act(  # until the layers have their looks (one per step) and the frame is drawn
                name,
                lambda: _gui.toggle_ndisplay(viewer, qtbot),
                lambda nd=nd, t=t0: (
                    viewer.dims.ndisplay == nd
                    and not _layers.steps_pending()
                    and time.perf_counter() - t > 0.5
                ),
            )
        reg.tabs.setCurrentWidget(reg.landmarks)
        act(
            "Register > Landmark layers",
            lambda: _gui.click(qtbot, reg.landmarks.add_btn),
            lambda: _layers.find_layer(viewer, "landmarks_post") is not None,
        )
        # the baseline: napari removing one layer of this viewer (with the plugin's handlers)
        box = viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="box")
        qtbot.wait(500)
        t0 = time.perf_counter()
        act(
            "napari: remove one layer",
            lambda: viewer.layers.remove(box),
            lambda t=t0: time.perf_counter() - t > 0.25,
        )
        # another case (of another size) over this analysed one: the margin, outline, MTM
        # point and landmark layers go, and every layer of the case gets the other's data
        other = "liver_ct" if key != "liver_ct" else "renal_mri"
        before = session.model.pre
        assert len(viewer.layers) >= 9, [ly.name for ly in viewer.layers]
        load.sample.setCurrentIndex(load.sample.findData(other))
        act(
            OPEN_OVER,
            lambda: _gui.click(qtbot, load.sample_btn),
            lambda: (
                idle()
                and session.model.pre is not before
                and session.opening is None
                and not _layers.steps_pending()
            ),
        )
        assert [_layers.role_of(ly) for ly in viewer.layers] == ["post", "ablation", "pre", "tumor"]
        # napari's File > Open Sample (the first sample again) over this case, analysed: napari
        # adds what the sample command returns in one call, the session opens the sample
        assert w.load_transform_file(str(samples.sample_dir() / other / "true_transform.tfm"))
        _gui.click(qtbot, w.run_btn)
        qtbot.waitUntil(
            lambda: idle() and _layers.find_layer(viewer, "mtm_point") is not None, timeout=120000
        )
        before = session.model.pre
        act(
            FILE_OVER,
            lambda: _file_open_sample(viewer, qtbot, SAMPLE_TITLES[key]),
            lambda: (
                idle()
                and session.model.pre is not before
                and session.opening is None
                and not _layers.steps_pending()
            ),
        )
        assert session.model.folder.name == f"sample_{key}"  # its working copy
        assert [_layers.role_of(ly) for ly in viewer.layers] == ["post", "ablation", "pre", "tumor"]
        for ly in viewer.layers:  # the sample's data, each on its grid
            grid = "post" if _layers.role_of(ly) in ("post", "ablation") else "pre"
            assert ly.data.shape == session.model.image(grid).GetSize()[::-1], ly.name
    assert not errors, [str(e[1]) for e in errors]
    redraw = max(cpu for n, (_w, cpu) in results.items() if n.startswith("napari: scroll"))
    speed = max(1.0, redraw / REFERENCE_REDRAW_MS)  # this machine against the limits' one
    limit = {
        n: speed * NAPARI_LIMITS_MS[n]
        if n in NAPARI_LIMITS_MS
        else max(LIMIT_MS, REDRAW_FACTOR * redraw)
        for n in results
        if not n.startswith("napari: ")
    }
    removal = results["napari: remove one layer"][1]
    limit[OPEN_OVER] = limit[FILE_OVER] = max(LIMIT_MS, REMOVAL_FACTOR * removal)
    table = "\n".join(
        f"{name}: longest stall {wall:.0f} ms, largest GUI-thread CPU of a gap {cpu:.0f} ms "
        f"(target {limit.get(name, 0):.0f}{', over' if cpu > limit.get(name, cpu) else ''})"
        for name, (wall, cpu) in results.items()
    )
    print(table)
    frozen = [n for n in limit if results[n][1] > FREEZE_FACTOR * limit[n]]
    assert not frozen, f"the GUI thread froze the viewer in {frozen}:\n{table}"


def test_file_open_sample_does_not_block_the_gui_thread(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """File > Open Sample (napari's menu) in a fresh viewer with the plugin's widgets docked:
    the four layers of the sample arrive, and the GUI thread never works much longer in one
    piece than napari does to add the first layer of a fresh viewer (the sample command must
    return that layer: its image is read and added inside napari's call), measured in the
    same run: bare napari adding the same pre image to another fresh viewer of the same
    size."""
    from test_case_switch import _file_open_sample

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1600, 900)
    with qtbot.capture_exceptions() as errors:
        session, _load, _reg, _w = _dock(viewer)
        qtbot.wait(300)
        meter = _gui.StallMeter(sample=PROFILE)
        _gui.measure(
            qtbot,
            lambda: _file_open_sample(viewer, qtbot, "Renal cryoablation"),
            lambda: (
                len(viewer.layers) == 4
                and not _layers.steps_pending()
                and session.model.labels("ablation") is not None
            ),
            120000,
            meter=meter,
        )
        assert not errors, [str(e[1]) for e in errors]
        assert [ly.name for ly in viewer.layers] == ["pre", "post", "tumor", "ablation"]
        assert session.model.labels("tumor") is session.labels_layer("tumor").data
        if PROFILE:
            print(meter.profile(40, cpu=True))
        # the baseline: bare napari adding the same image to a fresh viewer
        pre = viewer.layers["pre"]
        data, scale, translate = np.asarray(pre.data), pre.scale, pre.translate
        bare = make_napari_viewer(show=True)
        bare.window.resize(1600, 900)
        qtbot.wait(300)
        gc.collect()
        base = _gui.StallMeter()
        _gui.measure(
            qtbot,
            lambda: bare.add_image(data, scale=scale, translate=translate, name="pre"),
            lambda: len(bare.layers) == 1,
            120000,
            meter=base,
        )
        qtbot.wait(300)
    assert not errors, [str(e[1]) for e in errors]
    limit = max(NAPARI_LIMITS_MS["File > Open Sample"], FRESH_ADD_FACTOR * base.max_cpu_ms)
    print(
        f"File > Open Sample: longest stall {meter.longest_ms:.0f} ms, largest GUI-thread CPU "
        f"of a gap {meter.max_cpu_ms:.0f} ms (target {limit:.0f}; bare napari adding its first "
        f"layer: {base.longest_ms:.0f} ms, GUI-thread CPU {base.max_cpu_ms:.0f} ms)"
    )
    assert meter.max_cpu_ms <= FREEZE_FACTOR * limit
