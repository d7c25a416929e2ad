"""Real user input for GUI tests: mouse strokes, clicks and key presses on napari's canvas,
the longest stall of the Qt event loop, the "no stale number" invariants, and the set-ups
the GUI tests share (a viewer with a case and the plugin's docks, the demo, a cohort, a
quiz).

Used by the ``tests/test_gui_*.py`` files and ``benchmarks/bench_gui_stalls.py``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import QPoint, Qt, QTimer
from qtpy.QtTest import QTest

from napari_ablation.core import geometry
from napari_ablation.core import margin as core_margin
from napari_ablation.core.case import Case

#: vispy drops mouse moves that arrive less than ~10 ms apart
MOVE_INTERVAL_MS = 16


def canvas(viewer):
    return viewer.window._qt_viewer.canvas.native


def world_to_canvas(viewer, world) -> QPoint:
    """Canvas pixel of a world point (z, y, x) in the current 2D view; with the grid on, in
    the grid cell that draws the active layer (where a stroke on it paints)."""
    vc = viewer.window._qt_viewer.canvas
    disp = [float(world[d]) for d in viewer.dims.displayed][::-1]
    grid = viewer.canvas.grid
    active = viewer.layers.selection.active
    if grid.enabled and active is not None:
        index = list(viewer.layers).index(active)
        rc = next(rc for rc, idx in grid.iter_viewboxes(viewer.layers) if index in idx)
        p = vc.grid[rc].scene.node_transform(vc._scene_canvas.scene).map(disp)
    else:
        view = vc.view
        p = (view.transform * view.scene.transform).map(disp)
    return QPoint(round(p[0]), round(p[1]))


def stroke(viewer, qtbot, world_points, button=Qt.LeftButton) -> None:
    """Press, drag through ``world_points`` (paced for vispy) and release on the canvas."""
    native = canvas(viewer)
    pts = [world_to_canvas(viewer, w) for w in world_points]
    QTest.mouseMove(native, pts[0])
    qtbot.wait(MOVE_INTERVAL_MS)
    QTest.mousePress(native, button, Qt.NoModifier, pts[0])
    for p in pts[1:]:
        qtbot.wait(MOVE_INTERVAL_MS)
        QTest.mouseMove(native, p)
    qtbot.wait(MOVE_INTERVAL_MS)
    QTest.mouseRelease(native, button, Qt.NoModifier, pts[-1])
    qtbot.wait(MOVE_INTERVAL_MS)


def stroke_through(viewer, qtbot, centre_world, half_mm: float = 8.0, steps: int = 9) -> None:
    """A horizontal brush stroke through ``centre_world`` in the displayed plane."""
    _d0, d1 = viewer.dims.displayed
    pts = []
    for t in np.linspace(-half_mm, half_mm, steps):
        p = np.array(centre_world, float)
        p[d1] += t
        pts.append(p)
    stroke(viewer, qtbot, pts)


def click_at(viewer, qtbot, world) -> None:
    """A real mouse click (move, press, release) on the canvas at the in-plane position of
    the world point ``world`` (z, y, x) in the current 2D view (grid off)."""
    p = world_to_canvas(viewer, world)
    native = canvas(viewer)
    QTest.mouseMove(native, p)
    qtbot.wait(MOVE_INTERVAL_MS)
    QTest.mousePress(native, Qt.LeftButton, Qt.NoModifier, p)
    qtbot.wait(MOVE_INTERVAL_MS)
    QTest.mouseRelease(native, Qt.LeftButton, Qt.NoModifier, p)
    qtbot.wait(MOVE_INTERVAL_MS)


def choose(viewer, layer, mode: str | None = "paint"):
    """The user clicks ``layer`` in the layer list and picks a tool (``mode``)."""
    viewer.layers.selection.active = layer
    if mode:
        layer.mode = mode
    return layer


def key(viewer, qtbot, k, modifiers=Qt.NoModifier) -> None:
    """A key press + release on the canvas (napari's key bindings of the active layer)."""
    QTest.keyClick(canvas(viewer), k, modifiers)
    qtbot.wait(MOVE_INTERVAL_MS)


def undo(viewer, qtbot) -> None:
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier)


def redo(viewer, qtbot) -> None:
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)


def click(qtbot, button) -> None:
    QTest.mouseClick(button, Qt.LeftButton)
    qtbot.wait(MOVE_INTERVAL_MS)


def paint_beside_tumor(viewer, qtbot, layer, brush_size: int = 6) -> None:
    """The user picks napari's paint tool of the tumor labels ``layer`` (its button in the
    layer controls) and drags a short stroke just outside the tumor on its middle slice
    (grid off)."""
    zs, ys, xs = np.nonzero(np.asarray(layer.data))
    centre = np.asarray(layer.translate) + np.asarray(layer.scale) * (
        int(np.median(zs)),
        np.median(ys),
        xs.max() + 3,
    )
    viewer.dims.point = (centre[0], *viewer.dims.point[1:])
    viewer.layers.selection.active = layer
    click(qtbot, viewer.window._qt_viewer.controls.widgets[layer].paint_button)
    layer.brush_size = brush_size
    stroke_through(viewer, qtbot, centre, half_mm=4)


def toggle_ndisplay(viewer, qtbot) -> None:
    """The viewer's 2D/3D button."""
    click(qtbot, viewer.window._qt_viewer.viewerButtons.ndisplayButton)


def grid_off(viewer, qtbot) -> None:
    """The user switches napari's grid off when it is on (the grid button): one view, where
    canvas pixels map to world points (:func:`world_to_canvas`) and pre lies over post."""
    from napari_ablation.widgets import _layers

    if _layers.grid(viewer).enabled:
        click(qtbot, viewer.window._qt_viewer.viewerButtons.gridViewButton)


class StallMeter:
    """Longest gap between ticks of a 5 ms QTimer on the GUI thread while it runs.

    ``longest_ms`` is the gap's wall time; ``longest_cpu_ms`` the CPU time the GUI thread
    itself spent in that gap (``time.thread_time``): other processes and worker threads
    (the GIL) stretch the wall time on a loaded machine, not the GUI thread's own work.
    ``sample=True`` also samples the GUI thread's Python stack from a side thread every
    ``sample_ms``, so :meth:`profile` says what the longest stall was made of.
    """

    def __init__(self, interval_ms: int = 5, *, sample: bool = False, sample_ms: float = 2.0):
        self.interval_ms = interval_ms
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self.longest_ms = 0.0
        self.longest_cpu_ms = 0.0
        self.longest_window: tuple[float, float] = (0.0, 0.0)
        self.max_cpu_ms = 0.0  # the largest GUI-thread CPU time of any gap
        self.max_cpu_window: tuple[float, float] = (0.0, 0.0)
        self._last = None
        self._last_cpu = None
        self._sample = sample
        self._sample_s = sample_ms / 1000.0
        self._samples: list[tuple[float, tuple[str, ...]]] = []
        self._sampler = None
        self._stop = None

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if self._last is not None:
            gap, gap_cpu = 1000.0 * (now - self._last), 1000.0 * (cpu - self._last_cpu)
            if gap_cpu > self.max_cpu_ms:
                self.max_cpu_ms, self.max_cpu_window = gap_cpu, (self._last, now)
            if gap > self.longest_ms:
                self.longest_ms, self.longest_cpu_ms = gap, gap_cpu
                self.longest_window = (self._last, now)
        self._last, self._last_cpu = now, cpu

    def _run_sampler(self, ident: int) -> None:
        import sys

        while not self._stop.is_set():
            frame = sys._current_frames().get(ident)
            stack = []
            while frame is not None:
                code = frame.f_code
                stack.append(f"{code.co_filename}:{code.co_firstlineno}:{code.co_name}")
                frame = frame.f_back
            self._samples.append((time.perf_counter(), tuple(stack)))
            time.sleep(self._sample_s)

    def __enter__(self):
        # the Qt application first (napari's, as a viewer would make it): a QTimer started
        # before it exists never ticks ("QObject::startTimer: current thread's event
        # dispatcher has already been destroyed" on stderr), and the whole block then read
        # as one stall (UAT s4-s7 "demo open ... stall", D10)
        from napari.qt import get_qapp

        get_qapp()
        self.longest_ms = self.longest_cpu_ms = self.max_cpu_ms = 0.0
        self._last, self._last_cpu = time.perf_counter(), time.thread_time()
        self._timer.start()
        if self._sample:
            import threading

            self._samples = []
            self._stop = threading.Event()
            self._sampler = threading.Thread(
                target=self._run_sampler, args=(threading.get_ident(),), daemon=True
            )
            self._sampler.start()
        return self

    def __exit__(self, *exc):
        self._tick()
        self._timer.stop()
        if self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self._sampler = None
        return False

    def profile(self, top: int = 25, *, cpu: bool = False) -> str:
        """The functions the GUI thread was in during the longest stall (``cpu=True``: the
        gap in which the GUI thread used the most CPU): share of the samples in which each
        function was on the stack (inclusive), most first."""
        lo, hi = self.max_cpu_window if cpu else self.longest_window
        stacks = [s for t, s in self._samples if lo <= t <= hi]
        if not stacks:
            return "(no samples)"
        counts: dict[str, int] = {}
        leaves: dict[str, int] = {}
        for s in stacks:
            for f in set(s):
                counts[f] = counts.get(f, 0) + 1
            if s:
                leaves[s[0]] = leaves.get(s[0], 0) + 1
        out = [f"{len(stacks)} samples; on the stack (inclusive):"]
        for f, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
            out.append(f"{100 * n / len(stacks):5.1f} %  {f}")
        out.append("innermost Python frame (self):")
        for f, n in sorted(leaves.items(), key=lambda kv: -kv[1])[: top // 2]:
            out.append(f"{100 * n / len(stacks):5.1f} %  {f}")
        return "\n".join(out)


def measure(qtbot, action, until, timeout_ms: int = 60000, *, meter: StallMeter | None = None):
    """Run ``action()`` (a user action) and wait until ``until()``; returns the longest
    event-loop stall (ms) in between, the action's own call included (``meter``: a
    :class:`StallMeter` to use, e.g. to read its CPU time or profile afterwards)."""
    meter = meter if meter is not None else StallMeter()
    with meter:
        action()
        qtbot.waitUntil(until, timeout=timeout_ms)
        qtbot.wait(30)
    return meter.longest_ms


# ----------------------------------------------------------------------------- invariants


#: the layers the Margins widget makes from an analysis
ANALYSIS_LAYER_ROLES = ("margin", "ablation_registered", "mtm_point")


def stale_readout(viewer, session, w) -> str | None:
    """Why the Margins widget or the viewer shows figures that are not the model's
    analysis of the open case (None when they are): an MTM, a coverage line or a margin
    layer left from another case, or "computing" while nothing is computed."""
    m, a = session.model, session.model.analysis
    if a is not None and not m.owns(a):
        return "the model holds an analysis of another case"
    shown = w._shown
    if shown is not None and shown is not a:
        return "the widget shows an analysis the model no longer holds"
    text = w.big.text()
    if shown is None:
        if any(ch.isdigit() for ch in text):
            return f"the widget shows {text!r} without an analysis of this case"
        if any(
            (ly.metadata.get("napari_ablation") or {}).get("role") in ANALYSIS_LAYER_ROLES
            for ly in viewer.layers
        ):
            return "margin layers are shown without an analysis of this case"
    elif text != shown.result.margin_text():
        return f"the widget shows {text!r}, the analysis says {shown.result.margin_text()!r}"
    runner = session.analysis
    if "computing" in w.status.text() and not runner.live:
        return f"status {w.status.text()!r} while no analysis is wanted"
    return None


def idle(session, margin_widget=None) -> bool:
    """Nothing pending: analysis current (once requested) and shown, files written, and
    nothing shown that belongs to another case (:func:`stale_readout`)."""
    if session.analysis.running or session._pending_writes:
        return False
    if session._autosave_timer.isActive() or session.analysis._timer.isActive():
        return False
    m = session.model
    # (none is computed while labels are withdrawn from the screen: their layer deleted)
    if (
        session.analysis.live
        and not m.analysis_current
        and session.analysis.error is None
        and m.analysis_error is None
    ):
        return False
    # the MTM interval follows every current analysis
    if session.interval.running or (
        m.analysis_current and not m.interval_current and session.interval.error is None
    ):
        return False
    if margin_widget is not None:
        if margin_widget._prep_worker is not None or margin_widget._export_workers:
            return False
        # (getattr: the same helper measures the baseline, which adds layers at once)
        if getattr(margin_widget, "adding_layers", False):
            return False
        # (an analysis that fails for the labels now shows none: UAT s7 N5)
        if (
            m.analysis is not None
            and m.analysis_error is None
            and margin_widget._shown is not m.analysis
        ):
            return False
        if stale_readout(session.viewer, session, margin_widget) is not None:
            return False
        if (
            m.interval is not None
            and m.analysis_error is None
            and margin_widget._interval_shown is not m.interval
        ):
            return False
    return not m.unsaved_items() or m.folder is None


def fast_timers(session) -> None:
    """Shorter debounces, same code (keeps long scripted sessions quick)."""
    session._autosave_timer.setInterval(30)
    session.analysis._timer.setInterval(30)


def layer_mask(layer) -> sitk.Image:
    data = np.asarray(layer.data)
    return geometry.image_from_array((data != 0).astype(np.uint8), layer.scale, layer.translate)


def margin_on_grid(layer, pre_layer) -> np.ndarray:
    """The margin layer (a box of the pre grid) pasted into a full pre-grid array."""
    shape = np.asarray(pre_layer.data).shape
    assert np.allclose(layer.scale, pre_layer.scale)
    off_f = (
        np.asarray(layer.translate, float) - np.asarray(pre_layer.translate, float)
    ) / np.asarray(layer.scale)
    off = np.rint(off_f).astype(int)
    assert np.allclose(off_f, off, atol=1e-6), "the margin layer is not aligned with the pre voxels"
    out = np.zeros(shape, np.uint8)
    d = np.asarray(layer.data)
    out[
        off[0] : off[0] + d.shape[0], off[1] : off[1] + d.shape[1], off[2] : off[2] + d.shape[2]
    ] = d
    return out


def check_invariants(
    viewer, session, w, tmp_path: Path, *, exports: bool = True
) -> core_margin.MarginResult:
    """The shown MTM, the JSON/CSV exports and the case folder all equal a fresh
    :func:`analyze_margin` of the current layers (call when :func:`idle`)."""
    m = session.model
    assert stale_readout(viewer, session, w) is None, stale_readout(viewer, session, w)
    tl, al = session.labels_layer("tumor"), session.labels_layer("ablation")
    assert tl is not None and al is not None
    assert m.labels("tumor") is tl.data and m.labels("ablation") is al.data
    fresh = core_margin.analyze_margin(layer_mask(tl), layer_mask(al), m.transform, m.threshold)
    assert m.analysis_current
    res = m.result
    assert res.min_margin_mm == fresh.min_margin_mm
    assert res.threshold_mm == fresh.threshold_mm
    assert res.volume_fraction == fresh.volume_fraction
    assert w.big.text() == fresh.margin_text()
    assert "updating" not in w.status.text() and "OUT OF DATE" not in w.status.text()
    lab = [
        ly
        for ly in viewer.layers
        if (ly.metadata.get("napari_ablation") or {}).get("role") == "margin"
    ]
    assert lab
    # the classes, with the uncertain class of the current MTM interval
    assert m.interval_current
    full = sitk.GetArrayFromImage(m.interval.uncertainty.margin_labels_image(fresh))
    pre = next(
        ly
        for ly in viewer.layers
        if (ly.metadata.get("napari_ablation") or {}).get("role") == "pre"
    )
    assert np.array_equal(margin_on_grid(lab[0], pre), full)
    if exports:
        w.export(tmp_path / "inv.json")
        w.export(tmp_path / "inv.csv")
        doc = json.loads((tmp_path / "inv.json").read_text(encoding="utf-8"))
        assert doc["min_margin_mm"] == round(fresh.min_margin_mm, 3)
        assert doc["threshold_mm"] == fresh.threshold_mm
        assert f"{fresh.min_margin_mm:.2f}" in (tmp_path / "inv.csv").read_text(encoding="utf-8")
    # the case folder holds the layers as they are
    assert session.all_saved
    disk = Case.load(m.folder)
    assert np.array_equal(sitk.GetArrayFromImage(disk.tumor), np.asarray(tl.data))
    assert np.array_equal(sitk.GetArrayFromImage(disk.ablation), np.asarray(al.data))
    assert disk.settings["threshold_mm"] == m.threshold
    if m.transform is None:
        assert disk.transform is None
    else:
        assert np.allclose(disk.transform.GetParameters(), m.transform.GetParameters())
    return fresh


# ----------------------------------------------------------------------------- set-ups


def new_viewer(make_napari_viewer, tmp_path: Path, monkeypatch, *, show=True, size=None):
    """A napari viewer whose new case folders go under ``tmp_path / "cases"``
    (``NAPARI_ABLATION_CASES``), resized to ``size`` (width, height) when given."""
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=show)
    if size is not None:
        viewer.window.resize(*size)
    return viewer


def with_case(
    make_napari_viewer,
    tmp_path: Path,
    monkeypatch,
    case,
    widget_cls,
    *,
    name: str,
    show=True,
    size=None,
):
    """A viewer (:func:`new_viewer`) with ``case`` open in its session (case folder
    ``tmp_path / "case"``) and a ``widget_cls`` docked as ``name``; returns the widget."""
    from napari_ablation.widgets.session import CaseSession

    viewer = new_viewer(make_napari_viewer, tmp_path, monkeypatch, show=show, size=size)
    CaseSession.of(viewer).set_case(case, tmp_path / "case")
    widget = widget_cls(viewer)
    viewer.window.add_dock_widget(widget, name=name)
    return widget


def phantom_case(phantom) -> Case:
    """The registration phantom ``(pre, post, tumor, ice)`` of ``tests/test_registration.py``
    as a case named "phantom"."""
    pre, post, tumor, ice = phantom
    return Case(pre=pre, post=post, tumor=tumor, ablation=ice, info={"name": "phantom"})


def register_on_phantom(make_napari_viewer, phantom, tmp_path: Path, monkeypatch, **kw):
    """The Register widget on the registration phantom ``(pre, post, tumor, ice)`` of
    ``tests/test_registration.py`` (:func:`with_case`)."""
    from napari_ablation.widgets.register import RegisterWidget

    return with_case(
        make_napari_viewer,
        tmp_path,
        monkeypatch,
        phantom_case(phantom),
        RegisterWidget,
        name="Register",
        **kw,
    )


def plugin_docks(make_napari_viewer, tmp_path: Path, monkeypatch, case, *titles: str):
    """A shown viewer (:func:`new_viewer`) with ``case`` open in its session (case folder
    ``tmp_path / "case"``; None: no case) and the plugin's widgets ``titles`` (e.g.
    "3. Register") opened as the Plugins menu opens them: the widgets see the viewer through
    napari's public-only proxy. Short debounces (:func:`fast_timers`).

    Returns ``(viewer, session, docks)``: ``docks`` lists ``(dock, widget)`` in the order of
    ``titles``."""
    from napari_ablation.widgets.session import CaseSession

    viewer = new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session = CaseSession.of(viewer)
    if case is not None:
        session.set_case(case, tmp_path / "case")
    docks = [viewer.window.add_plugin_dock_widget("napari-ablation", t) for t in titles]
    fast_timers(session)
    return viewer, session, docks


def phantom_register_margins(make_napari_viewer, phantom, tmp_path: Path, monkeypatch):
    """:func:`plugin_docks` with the registration phantom (:func:`phantom_case`) open and
    "3. Register" and "4. Margins" docked. Returns ``(viewer, session, (reg_dock, register),
    (margins_dock, margins))``."""
    viewer, session, (reg, marg) = plugin_docks(
        make_napari_viewer,
        tmp_path,
        monkeypatch,
        phantom_case(phantom),
        "3. Register",
        "4. Margins",
    )
    return viewer, session, reg, marg


def cohort_run(make_napari_viewer, qtbot, tmp_path: Path, monkeypatch, *titles, n: int, seed: int):
    """A synthetic cohort of ``n`` cases (``seed``) in ``tmp_path / "cases"``, run by the
    Cohort widget on one worker into ``tmp_path / "results"``, its table filled; the widgets
    ``titles`` (and "5. Cohort", last) opened as the Plugins menu opens them, new case folders
    under ``tmp_path / "home"``. Returns ``(viewer, session, widgets)``, the widgets in the
    order of ``titles`` and the Cohort widget last."""
    from napari_ablation.core import cohort

    cases = tmp_path / "cases"
    cohort.write_synthetic_cohort(cases, n=n, seed=seed)
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    widgets = [
        viewer.window.add_plugin_dock_widget("napari-ablation", t)[1]
        for t in (*titles, "5. Cohort")
    ]
    coh = widgets[-1]
    session = coh.session
    fast_timers(session)
    coh.workers.setValue(1)
    assert coh.run_batch(str(cases), str(tmp_path / "results")) is not None
    qtbot.waitUntil(lambda: coh._worker is None, timeout=240_000)
    assert coh.table.rowCount() == n
    return viewer, session, widgets


@contextlib.contextmanager
def demo_opened(qtbot, tmp_path: Path, monkeypatch):
    """``napari-ablation demo``'s viewer (new case folders under ``tmp_path / "cases"``) once
    its sample case is open (the Load widget's opening ended); closed afterwards. Yields
    ``(viewer, load_widget)``."""
    from napari_ablation import demo

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer, load, _worker = demo.open_demo_viewer()
    try:
        qtbot.waitUntil(
            lambda: load._worker is None and load.session.opening is None, timeout=180_000
        )
        yield viewer, load
    finally:
        viewer.close()


def copy_quiz(tmp_path: Path) -> Path:
    """A copy of the bundled quiz (self-study: its key inside) in ``tmp_path / "quiz"``."""
    from napari_ablation.core import quiz

    folder = tmp_path / "quiz"
    shutil.copytree(quiz.bundled_quiz_dir(), folder)
    return folder


def teach_docks(make_napari_viewer):
    """A shown 1500 x 950 viewer with "4. Margins" and "Teach (quiz)" docked as tabs of one
    dock area. Returns ``(viewer, margins, teach)``."""
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.teach import TeachWidget

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    margins, teach = MarginWidget(viewer), TeachWidget(viewer)
    viewer.window.add_dock_widget(margins, name="4. Margins")
    viewer.window.add_dock_widget(teach, name="Teach (quiz)", tabify=True)
    return viewer, margins, teach


def teach_settled(qtbot, teach, margins=None, timeout: int = 120_000) -> None:
    """Wait until Teach is idle (no case opening, no reveal pending), the Margins widget
    ``margins`` (if given) is not computing, and the view drawn."""
    from napari_ablation.widgets import _layers

    qtbot.waitUntil(
        lambda: (
            not teach.busy
            and not _layers.steps_pending()
            and (margins is None or "computing" not in margins.status.text())
        ),
        timeout=timeout,
    )
    qtbot.wait(200)


def margins_on_sample(viewer, qtbot, tmp_path: Path, key: str = "renal_mri"):
    """The Margins widget docked on the bundled sample ``key`` (case folder
    ``tmp_path / "case"``) registered by its true transform, margins computed; returns
    ``(session, margin_widget)`` once :func:`idle`."""
    from napari_ablation.core import samples
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.session import CaseSession

    w = MarginWidget(viewer)
    viewer.window.add_dock_widget(w, name="Margins")
    session = CaseSession.of(viewer)
    session.set_case(samples.load_sample(key), tmp_path / "case")
    assert w.load_transform_file(str(samples.sample_dir() / key / "true_transform.tfm"))
    w.run()
    qtbot.waitUntil(lambda: idle(session, w), timeout=120000)
    return session, w


def segment_on_sample(viewer, qtbot, tmp_path: Path, key: str = "renal_mri"):
    """:func:`margins_on_sample` with short debounces (:func:`fast_timers`) and the Segment
    widget docked; returns ``(session, margin_widget, segment_widget)``."""
    from napari_ablation.widgets.segment import SegmentWidget

    session, w = margins_on_sample(viewer, qtbot, tmp_path, key)
    fast_timers(session)
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="Segment")
    return session, w, seg


def open_reader_b_tumor(viewer, qtbot, session, margin_widget, tmp_path: Path):
    """A second reader's tumor file of the renal sample (``tmp_path / "readerB" /
    "tumor.nii.gz"``, the sample's tumor) opened with the plugin's reader (napari's File >
    Open): it becomes the case's tumor. Returns its layer once :func:`idle`."""
    from napari_ablation.core import samples

    old = session.labels_layer("tumor")
    other = tmp_path / "readerB" / "tumor.nii.gz"
    other.parent.mkdir()
    sitk.WriteImage(samples.load_sample("renal_mri").tumor, str(other))
    viewer.open(str(other), plugin="napari-ablation")
    qtbot.waitUntil(lambda: session.labels_layer("tumor") is not old, timeout=60000)
    qtbot.waitUntil(lambda: idle(session, margin_widget), timeout=60000)
    return session.labels_layer("tumor")


def create_labels(qtbot, seg, role: str = "tumor"):
    """*Segment > Structure* ``role``, then *Create / edit labels*; returns the case's
    ``role`` labels layer once there is one."""
    seg.structure.setCurrentIndex(seg.structure.findData(role))
    click(qtbot, seg.edit_btn)
    session = seg.session
    qtbot.waitUntil(lambda: session.labels_layer(role) is not None, timeout=30000)
    return session.labels_layer(role)


def cohort_statistics_dock(make_napari_viewer, tmp_path: Path, monkeypatch, ltp):
    """The Cohort widget opened as the Plugins menu opens it, its *Results* field holding a
    folder (``tmp_path / "results"``) with the margins of ``len(ltp)`` cases
    (``test_cohort_stats._tables``, seed 3) and their outcomes with the LTP events ``ltp``,
    the *Outcomes* field empty; new case folders under ``tmp_path / "home"``. Returns
    ``(cohort_widget, outcomes_csv)``."""
    from test_cohort_stats import _tables, _write

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    margins, outcomes = _tables(n=len(ltp), seed=3)
    outcomes["ltp"] = list(ltp)
    results = tmp_path / "results"
    results.mkdir()
    _m, oc = _write(results, margins, outcomes)
    viewer = make_napari_viewer(show=True)
    _d, coh = viewer.window.add_plugin_dock_widget("napari-ablation", "5. Cohort")
    coh.results_edit.clear()
    QTest.keyClicks(coh.results_edit, str(results))
    coh.outcomes_edit.clear()
    return coh, oc


def run_statistics(qtbot, coh, outcomes: Path | None = None) -> None:
    """Type ``outcomes`` (when given) into the Cohort widget's *Outcomes* field, press
    *Statistics* and wait until the run ended."""
    if outcomes is not None:
        QTest.keyClicks(coh.outcomes_edit, str(outcomes))
    click(qtbot, coh.stats_btn)
    qtbot.waitUntil(lambda: coh._worker is None, timeout=120_000)


def margins_menu_on_phantom(make_napari_viewer, tmp_path: Path, monkeypatch, phantom):
    """A shown viewer with "4. Margins" opened as the Plugins menu opens it (the session
    sees the viewer through napari's proxy) and the phantom ``(pre, post, tumor, ice)``
    set as the case (folder ``tmp_path / "phantom"``); returns (viewer, widget, session)."""
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, marg = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    pre, post, tumor, ice = phantom
    case = Case(pre=pre, post=post, tumor=tumor, ablation=ice, info={"name": "phantom"})
    marg.session.set_case(case, tmp_path / "phantom")
    return viewer, marg, marg.session
