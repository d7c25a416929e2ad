"""The napari binding of the case model: layers <-> :class:`~napari_ablation.model.CaseModel`.

One :class:`CaseSession` per viewer (``CaseSession.of(viewer)``) owns the viewer's
:class:`~napari_ablation.model.CaseModel` (``session.model``) and is the only code that
watches layers for the model:

* the ``tumor`` / ``ablation`` Labels layers share their data array with the model; every
  change reaches it: a brush stroke or fill (``paint`` event), a bulk edit inside
  ``block_history`` (``paint`` on commit), a replaced ``layer.data`` (``data`` event), and
  ``Labels.undo()`` / ``redo()``, which in napari 0.9 emit neither paint nor data events:
  the layer's ``undo`` / ``redo`` are wrapped, so Ctrl-Z, Ctrl-Shift-Z and the Segment
  widget's Undo all go through the wrapper;
* ``pre`` / ``post`` image layers that arrive without a case (File > Open Sample, drag and
  drop) are taken into the model;
* autosave follows the model's save state: an edit schedules a background write
  (debounced, ``AUTOSAVE_DELAY_MS``) of exactly the unsaved items; manifest items
  (transform, landmarks, settings, QA) are written at once; closing the viewer or quitting
  flushes. "All changes saved" is the model's ``all_saved``: the version on disk of every
  item equals its version now;
* the margin analysis follows the model too (:class:`AnalysisRunner`): once computed, it
  reruns in the background (debounced) whenever an input changes, so a shown, exported or
  saved figure is never older than the layers without saying so;
* the raw (post-space) ablation labels are shown with the post image only: hiding post
  hides them (they are not drawn over pre or the registered post);
* the 3D look follows ``viewer.dims.ndisplay``, whoever switches (napari's 2D/3D button, a
  widget, a script): the images show the plane the user was looking at, the labels are
  translucent, and the voxel layers a 3D surface stands in for (tumor and margin classes:
  the tumor surface coloured by margin; the ablation outline: the ablation surface) are
  hidden while that surface is there (:func:`look_3d`); in 2D every layer gets its 2D look
  back and the surfaces are hidden; the selection, the active layer and the view stay the
  user's. The looks change one layer per event-loop iteration after napari's own switch,
  the canvas keeping its last frame from before napari's switch until the last is in.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from psygnal import Signal

from ..core.case import GRID_OF, LABEL_ROLES, Case
from ..core.errors import AblationError, one_line
from ..model import ANALYSIS_INPUTS, IMAGE_ROLES, CaseModel, run_analysis
from . import _layers

AUTOSAVE_DELAY_MS = 1000
ANALYSIS_DEBOUNCE_MS = 400
_SESSIONS: weakref.WeakKeyDictionary[Any, CaseSession] = weakref.WeakKeyDictionary()
_ALL: weakref.WeakSet[CaseSession] = weakref.WeakSet()
_MANIFEST_ITEMS = ("transform", "landmarks", "settings", "qa")
#: the glyphs of the "opening ..." banner that the orientation letters' warm-up does not
#: draw (:meth:`CaseSession._banner_warm_up_steps`), a few per repaint
BANNER_GLYPHS = ("abcdefgh", "ijklmnop", "qrstuvwx", "yz_.'\u2026")
#: the layers of a case itself (every other plugin layer is made from them)
CASE_ROLES = ("pre", "tumor", "post", "ablation")
#: appended to the name of a labels layer whose role another layer took (kept read-only)
PREVIOUS_SUFFIX = " (previous)"
#: the Margins widget's 3D surfaces: the tumor surface coloured by margin, the ablation zone's
#: surface in pre space (drawn in 3D only)
ROLE_SURFACE = "margin_surface"
ROLE_ABLATION_SURFACE = "ablation_surface"
SURFACE_ROLES = (ROLE_SURFACE, ROLE_ABLATION_SURFACE)
#: role -> how the layer is drawn in 3D (its 2D look is put back in 2D). Images: the plane
#: the user was looking at, not a maximum-intensity cloud over everything; labels as
#: translucent volumes, not solid voxel blocks over the surfaces
APPEARANCE_3D = {
    "pre": {"depiction": "plane"},
    "post": {"depiction": "plane"},
    "post_registered": {"depiction": "plane"},
    "ablation": {"rendering": "translucent", "opacity": 0.25},
    # (its 2D outline is not drawn in 3D: napari warns)
    "ablation_registered": {"rendering": "translucent", "opacity": 0.25, "contour": 0},
    ROLE_SURFACE: {"visible": True},
    ROLE_ABLATION_SURFACE: {"visible": True},
}
#: role -> the surface that stands in for it in 3D: while that surface is in the viewer the
#: voxel layer is hidden in 3D (shown again in 2D, or when the surface is removed)
REPLACED_IN_3D = {
    "tumor": ROLE_SURFACE,
    "margin": ROLE_SURFACE,
    "ablation_registered": ROLE_ABLATION_SURFACE,
}


def look_3d(layer, roles, grid: bool) -> dict | None:
    """How ``layer`` is drawn in 3D (None: as in 2D), given the plugin roles in the viewer
    and whether napari's grid is on: hidden while the surface that stands in for it is there
    (:data:`REPLACED_IN_3D`); the raw post-space layers hidden in one overlay (in 2D they lie
    under pre; in 3D they would cover the pre-space surfaces 8 mm away from where they
    belong), drawn in their own cell with the grid on; else its :data:`APPEARANCE_3D` look."""
    role = _layers.role_of(layer)
    if role in _layers.POST_SPACE_ROLES and not grid:
        return {"visible": False}
    stand_in = REPLACED_IN_3D.get(role)
    if stand_in is not None and stand_in in roles:
        return {"visible": False, **APPEARANCE_3D.get(role, {})}
    return APPEARANCE_3D.get(role)


def _plane_through_view(viewer, layer) -> None:
    """Put the plane of an image drawn as a plane in 3D where the user was looking in 2D:
    across the axis napari sliced, through the current point."""
    if layer.ndim != 3 or viewer.dims.ndim != 3:
        return
    normal = [0.0, 0.0, 0.0]
    normal[int(viewer.dims.order[0])] = 1.0
    layer.plane.position = tuple(float(x) for x in layer.world_to_data(viewer.dims.point))
    layer.plane.normal = tuple(normal)


def default_cases_root() -> Path:
    """Where new case folders go (``$NAPARI_ABLATION_CASES`` or ``~/napari-ablation-cases``)."""
    env = os.environ.get("NAPARI_ABLATION_CASES")
    return Path(env).expanduser() if env else Path.home() / "napari-ablation-cases"


def new_case_folder(name: str) -> Path:
    """A case folder path for ``name`` that does not hold another case yet."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "case"
    root = default_cases_root()
    folder = root / safe
    n = 2
    while (folder / "case.json").exists():
        folder = root / f"{safe}_{n}"
        n += 1
    return folder


def prepare_display(case: Case) -> dict:
    """What the layers of ``case`` need, computed here on any thread so that showing the
    case is only napari's own work: images and labels as (z, y, x) arrays (copies), each
    image's default contrast, and the voxel box of the tumor (else the ablation zone) to
    centre the views on. Pass the result to :meth:`CaseSession.set_case`."""
    from ..core import display
    from ..model import label_arrays_of

    _layers.prewarm()  # napari's one-off work for the first layers, off the GUI thread
    images = {
        r: sitk.GetArrayFromImage(getattr(case, r))
        for r in ("pre", "post")
        if getattr(case, r) is not None
    }
    info = case.info or {}
    contrast = {
        r: display.default_contrast(a, info.get(f"{r}_modality") or info.get("modality", ""))
        for r, a in images.items()
    }
    labels = label_arrays_of(case)
    _freeze_heap()  # with what prewarm imported (before any layer of the first case)
    return {
        "images": images,
        "contrast": contrast,
        "labels": labels,
        "focus": {r: _voxel_box(a) for r, a in labels.items()},
    }


def _freeze_heap(*more_viewers) -> None:
    """:func:`_layers.freeze_heap` while no viewer with a case session holds a layer."""
    _layers.freeze_heap([s.viewer for s in list(_ALL)] + list(more_viewers))


def _key(layer) -> int:
    """A layer's identity, also through napari's public-only proxies (a new one per access)."""
    return id(_layers.unwrapped(layer))


def _voxel_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and extent (voxels, (z, y, x)) of the non-zero voxels (None when empty)."""
    idx = np.argwhere(mask != 0)
    if len(idx) == 0:
        return None
    return idx.mean(axis=0), idx.max(axis=0) - idx.min(axis=0) + 1


def _qtimer(interval_ms: int, callback):
    from qtpy.QtCore import QTimer

    t = QTimer()
    t.setSingleShot(True)
    t.setInterval(interval_ms)
    t.timeout.connect(callback)
    return t


class _ModelRunner:
    """One background computation for the case model at a time: a request while one runs
    is remembered and honoured once it ends. Subclasses say what is computed (``EVENT``,
    ``DESC``, :meth:`_job`, :meth:`_store`) and when to run again (:meth:`_rerun`)."""

    EVENT = ""
    DESC = ""

    def __init__(self, session: CaseSession):
        self._session_ref = weakref.ref(session)
        self.worker = None
        self.error: str | None = None
        self._again = False

    @property
    def model(self) -> CaseModel:
        return self._session_ref().model

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _launch(self, make_request) -> None:
        """Start the job for ``make_request()`` (one line on a failed request), or remember
        to run again when a job is running."""
        session = self._session_ref()
        if session is None:
            return
        if self.worker is not None:
            self._again = True
            return
        try:
            req = make_request()
        except AblationError as exc:
            self._failed(one_line(exc))
            return
        if req is None:
            return
        self.error = None
        ref = weakref.ref(self)

        def returned(result, _r=ref):
            r = _r()
            if r is not None:
                r.error = None
                r._store(result)

        def failed(message, _r=ref, _req=req):
            r = _r()
            if r is not None:
                r._failed(message, _req)

        def finished(_r=ref):
            r = _r()
            if r is None:
                return
            r.worker = None
            again, r._again = r._again, False
            if r.error is None:
                r._rerun(again)
            r._emit()

        self.worker = _layers.start_worker(
            lambda: self._job(req),
            on_returned=returned,
            on_error=failed,
            on_finished=finished,
            desc=self.DESC,
        )
        self._emit()

    def _emit(self) -> None:
        session = self._session_ref()
        if session is not None:
            session.changed.emit(self.EVENT)

    def _failed(self, message: str, req=None) -> None:
        self.error = message
        _layers.notify_error(message)
        self._emit()

    def _job(self, req):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _store(self, result) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _rerun(self, again: bool) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError


class AnalysisRunner(_ModelRunner):
    """Keeps the model's margin analysis current: background runs, one at a time, debounced.

    Off until the first :meth:`request` (the user's first "Compute margins"); from then on
    every change of an analysis input (labels, transform, settings) schedules a rerun.
    """

    EVENT = "analysis"
    DESC = "margin analysis"

    def __init__(self, session: CaseSession):
        super().__init__(session)
        self.live = False
        ref = weakref.ref(self)
        self._timer = _qtimer(
            ANALYSIS_DEBOUNCE_MS, lambda _r=ref: _r() is not None and _r()._start()
        )
        session.model.case_loaded.connect(self.reset)
        session.model.changed.connect(self._on_model_changed)

    def request(self, *, now: bool = True) -> None:
        """Compute (now, or after the debounce) and keep the analysis current from then on."""
        self.live = True
        if now:
            self._timer.stop()
            self._start()
        else:
            self._timer.start()

    def stop(self) -> None:
        """No automatic reruns until the next :meth:`request`."""
        self.live = False
        self._timer.stop()

    def reset(self) -> None:
        """Another case: off until the next :meth:`request` (a run of the previous case
        may still finish; the model does not store its result)."""
        self.live = False
        self.error = None
        self._again = False
        self._timer.stop()

    def _on_model_changed(self, what: str) -> None:
        if what == "case":
            return
        # ("analysis": labels withdrawn from the screen are shown again, see
        # CaseModel.withdraw_labels; while withdrawn, nothing is computed)
        m = self.model
        if (
            self.live
            and what in (*ANALYSIS_INPUTS, "analysis")
            and not m.analysis_current
            and m.analysis_error is None
        ):
            self._timer.start()

    def _start(self) -> None:
        self._launch(lambda: None if self.model.analysis_current else self.model.analysis_request())

    def _failed(self, message: str, req=None) -> None:
        # the model says so: no current analysis for these inputs (its views clear it)
        self.error = message
        self.model.set_analysis_failed(message, None if req is None else req.inputs)
        super()._failed(message, req)

    def _job(self, req):
        from ..core import warmup

        # the margin engine's first compilation, while its children run (at most a few
        # minutes: beyond, the analysis compiles what it still lacks itself)
        warmup.wait(timeout=300)
        return run_analysis(req)

    def _store(self, analysis) -> None:
        self.model.set_analysis(analysis)

    def _rerun(self, again: bool) -> None:
        if self.live and (again or not self.model.analysis_current):
            self._timer.start()


class IntervalRunner(_ModelRunner):
    """Keeps the MTM interval of the model's analysis current: after every new analysis (and
    after a change of the registration's error sources, e.g. the landmarks) it is computed
    in the background, one run at a time; meanwhile the model says it is not current."""

    EVENT = "interval"
    DESC = "MTM interval"

    def __init__(self, session: CaseSession):
        super().__init__(session)
        session.model.changed.connect(self._on_model_changed)

    def _on_model_changed(self, what: str) -> None:
        if what == "case":
            self.error = None
            return
        if what in ("analysis", "landmarks", "transform") and self.model.analysis_current:
            self.request()

    def request(self) -> None:
        """Compute the interval of the current analysis unless it is current already."""

        def make():
            m = self.model
            if m.interval_current or not m.analysis_current:
                return None
            return m.interval_request()

        self._launch(make)

    def _job(self, req):
        from ..model import run_interval

        return run_interval(req)

    def _store(self, interval) -> None:
        self.model.set_interval(interval)

    def _rerun(self, again: bool) -> None:
        if again or not self.model.interval_current:
            self.request()


class CaseSession:
    """Per-viewer binding of layers to the case model (see module docstring)."""

    #: what changed: "case", an item of the model ("pre", "tumor", "transform", "qa", ...),
    #: "analysis", "interval", "saved", "folder"; "opening" (a case starts or ends opening,
    #: see :attr:`opening`), "closing" (the viewer closes), "margins_view" (the user asked
    #: for the margins: a landmark view ends), "binding" (a labels layer was bound to the
    #: tumor or ablation, :meth:`bind_labels`)
    changed = Signal(str)

    def __init__(self, viewer):
        self._viewer_ref = weakref.ref(viewer)
        self.model = CaseModel()
        self._bound: dict[str, Any] = {}  # role -> the Labels layer bound to the model
        self._hidden_with_post: int | None = None  # id of the ablation layer post hid
        self._wrapped: set[int] = set()
        self._pending_writes = 0
        self._guards: list = []
        self._loading = False
        self._closing = False  # the viewer is closing: its layers go, the case stays on disk
        self._user_edited = False  # an edit since the case was opened (a folder is made for it)
        self._arrived: list = []  # layers of another case (File > Open Sample), to switch to
        self._opening: list[str] = []  # what is being opened (a case, a sample), while it opens
        #: counts the cases made current and the openings begun: a deferred step (a layer
        #: added in steps, a 3D look) of an earlier count belongs to a case being replaced
        #: (:meth:`while_case`)
        self.case_generation = 0
        self._replacing = False  # an opening began; the case it replaces is still the model's
        self._switch_worker = None
        self._removed_roles: set | None = None  # case layers the user removed, until decided
        self._queued_open: tuple | None = None  # open_case's arguments, asked for while opening
        self._banner_color = None  # the banner's colour while its glyphs are drawn, transparent
        # id(layer) -> layer: figures of a case being replaced, hidden until removed; and
        # id(layer) -> (layer, what hiding changed), until another case is set
        self._going: dict[int, Any] = {}
        self._restore: dict[int, tuple[Any, dict[str, Any]]] = {}
        ref = weakref.ref(self)
        self._autosave_timer = _qtimer(
            AUTOSAVE_DELAY_MS, lambda _r=ref: _r() is not None and _r().autosave()
        )
        self.model.changed.connect(self._on_model_changed)
        self.model.labels_changed.connect(self._on_labels_changed)
        self.analysis = AnalysisRunner(self)
        # id(layer) -> (its 3D look, the 2D look it replaces), while in 3D
        self._look_2d: dict[int, tuple[dict, dict[str, Any]]] = {}
        self._view_2d = None  # (dims order, camera orientation, point) of 2D, while in 3D
        self._fit_in_2d = False  # a case was opened in 3D: 2D is fitted to it on the way back
        self._look_chain = None  # CLOSE_GENERATION of the running look steps, while they run
        self._resume_canvas = None  # lets the canvas paint again, while a 2D/3D switch runs
        self.interval = IntervalRunner(self)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        viewer.layers.events.removing.connect(self._on_layer_removing)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        for ev in (viewer.layers.events.inserted, viewer.layers.events.removed):
            ev.connect(self._grid_follows)
        # (the canvas held before napari's own switch: :meth:`_before_switch`)
        _layers.connect_before_napari(viewer.dims.events.ndisplay, self._before_switch)
        viewer.dims.events.ndisplay.connect(self._on_switch)
        viewer.dims.events.point.connect(self._on_point_in_3d)
        _layers.grid(viewer).events.enabled.connect(self._on_ndisplay)
        for layer in viewer.layers:
            self._adopt(layer)
        from . import orientation

        orientation.install(viewer)  # radiological 2D views with R/L, A/P, S/I letters
        _layers.lay_out_grid_before_paint(viewer)  # no frame zoomed for empty grid cells
        if len(viewer.layers) == 0:  # their visuals made now, not with the first layer
            _layers.run_in_steps(orientation.warm_up_steps(viewer))
            _layers.run_in_steps(self._banner_warm_up_steps())
        _freeze_heap(viewer)  # napari's gc.collect per removed layer then walks far fewer
        _layers.prewarm_in_background(_freeze_heap)
        _ALL.add(self)
        _install_quit_hooks()
        self._close_filter = _on_close(viewer, lambda _r=ref: _r() is not None and _r().close())

    # ------------------------------------------------------------------ access
    @classmethod
    def of(cls, viewer) -> CaseSession:
        session = _SESSIONS.get(viewer)
        if session is None:
            session = cls(viewer)
            _SESSIONS[viewer] = session
        return session

    @property
    def viewer(self):
        return self._viewer_ref()

    @property
    def case(self) -> Case:
        """A read-only view of the model as a :class:`Case` without labels (cheap)."""
        m = self.model
        return Case(
            pre=m.pre,
            post=m.post,
            transform=m.transform,
            landmarks=m.landmarks,
            settings=m.settings,
            qa=m.qa_recorded,
            info=m.info,
        )

    @property
    def folder(self) -> Path | None:
        return self.model.folder

    @folder.setter
    def folder(self, value) -> None:
        self.model.folder = value

    @property
    def last_error(self) -> str | None:
        return self.model.save_error

    def attach_widget(self, widget) -> None:
        """Flush pending edits when ``widget`` (a plugin dock widget) is destroyed; once
        docked it fits a narrow dock, tabbed with the plugin's other docks
        (:func:`~napari_ablation.widgets._dock.fit_when_docked`)."""
        from . import _dock

        _dock.fit_when_docked(widget)
        ref = weakref.ref(self)

        def _flush(*_args, _ref=ref):
            s = _ref()
            if s is not None:
                s.flush()

        widget.destroyed.connect(_flush)
        self._guards.append(_flush)

    # ------------------------------------------------------------------ case
    @property
    def opening(self) -> str | None:
        """What is being opened (one line, e.g. "opening case 'x'"), or None: while a case
        opens, the open case's figures are not shown and actions on it are refused."""
        return self._opening[-1] if self._opening else None

    def begin_opening(self, what: str) -> None:
        """A case starts opening in the background (``what``: one line, e.g. "opening case
        'x'"): widgets clear the open case's figures and refuse actions
        (:meth:`refuse_while_opening`) until :meth:`end_opening`."""
        self._opening.append(what)
        self.case_generation += 1
        self._replacing = True
        self._show_opening()
        self.changed.emit("opening")
        if self.viewer is not None:
            # the figures made from the case being replaced; its landmarks are its own data
            # and stay
            self._hide_then_remove(self._derived_layers(keep=("landmarks_pre", "landmarks_post")))

    def end_opening(self) -> None:
        """The case opened (or failed to open: the open case stays, and the figures of it
        not yet removed are shown again; the widgets make the others again)."""
        if self._opening:
            self._opening.pop()
        if not self._opening:
            self._replacing = False
            for layer, before in self._restore.values():
                self._going.pop(_key(layer), None)
                for key, value in before.items():
                    setattr(layer, key, value)
            self._restore.clear()
        self._show_opening()
        self.changed.emit("opening")
        if self._queued_open is not None and not self._opening:
            from qtpy.QtCore import QTimer

            # (after the caller has finished with the opening that ended)
            ref = weakref.ref(self)
            QTimer.singleShot(0, lambda _r=ref: _r() is not None and _r()._open_queued())

    def hide_then_remove(self, layers) -> None:
        """Hide ``layers`` (figures the plugin made) at once and remove them in steps
        (:meth:`_hide_then_remove`)."""
        self._hide_then_remove(layers)

    def _hide_then_remove(self, layers) -> None:
        """Hide ``layers`` now and remove them one per event-loop iteration.

        No figure of a case being replaced may be shown while another one opens (UAT s5), and
        napari's removal of a layer is 100-180 ms of GUI-thread work (its visual and event
        connections undone, a full ``gc.collect``, the grid redone): several in one piece
        froze the window for 240-280 ms. Hiding costs an opacity change per layer (3-4 ms; a
        ``visible`` change makes the canvas rebuild its scene graph, 15-30 ms a layer). A
        hidden layer keeps no 3D look of its own (:meth:`_on_ndisplay`); if the opening
        fails, the ones still there are shown again (:meth:`end_opening`)."""
        layers = [ly for ly in layers if _key(ly) not in self._going]
        if not layers:
            return
        for layer in layers:
            self._going[_key(layer)] = layer
            self._restore[_key(layer)] = (layer, _layers.hide_at_once(layer))
        _layers.run_in_steps(self._remove_steps(layers))

    def _remove_steps(self, layers, *, paused: bool = False):
        """Remove each of ``layers`` still hidden for removal, one per step. Unless the
        caller holds the canvas ``paused``, the first step lets the canvas draw the layers
        hidden and the next ones hold it paused: removing hidden layers changes nothing on
        screen, and each repaint (50-70 ms) made one piece with the removal before it. Each
        removal and the grid stride that follows it rebuild napari's scene graph once
        (:func:`_layers.one_scene_update`), not twice."""
        resume = None
        try:
            for layer in layers:
                viewer = self.viewer
                if viewer is None:
                    return
                if _key(layer) not in self._going or layer not in viewer.layers:
                    continue
                if resume is None and not paused:
                    yield  # the canvas draws them hidden (and the banner) first
                    resume = _layers.pause_canvas(viewer)
                    if _key(layer) not in self._going or layer not in viewer.layers:
                        continue
                # the grid stride that follows it in the same rebuild of napari's scene graph
                with _layers.one_scene_update(viewer):
                    viewer.layers.remove(layer)
                yield
        finally:
            if resume is not None:
                resume()

    def _show_opening(self) -> None:
        """While a case opens, the canvas says so over the case it replaces."""
        viewer = self.viewer
        if viewer is None:
            return
        banner = _layers.text_overlay(viewer)
        if self._banner_color is not None:  # (an opening during the banner's warm-up)
            banner.color, self._banner_color = self._banner_color, None
        banner.text = f"{self.opening}\u2026" if self.opening else ""
        banner.visible = self.opening is not None

    def _banner_warm_up_steps(self):
        """Steps that make the banner's visual and draw its glyphs (:data:`BANNER_GLYPHS`),
        transparent, while the viewer is still empty: napari makes a canvas overlay's visual
        only once it is shown, and renders a glyph when it first draws it, so the first
        banner of a fresh viewer cost 80-120 ms of one repaint of the first case's opening."""
        viewer = self.viewer
        banner = _layers.text_overlay(viewer)
        if banner.visible or len(viewer.layers):
            return
        self._banner_color, banner.color = banner.color, "transparent"
        try:
            for glyphs in BANNER_GLYPHS:
                if self.opening is not None or len(viewer.layers):
                    return  # (the banner is the opening's now)
                banner.text = glyphs
                banner.visible = True
                yield  # the next repaint draws them
            yield
        finally:  # (not once the window closed: its canvas is gone, nothing to restore)
            if self.opening is None and not self._closing:
                banner.visible = False
                banner.text = ""
            if self._banner_color is not None and not self._closing:
                banner.color, self._banner_color = self._banner_color, None

    def refuse_while_opening(self) -> bool:
        """True (with a one-line notice) when a case is being opened: an action now would
        run on the case that is being replaced, or on a sample whose layers File > Open
        Sample is still adding (its labels not in yet)."""
        opening = self.opening or self._sample_arriving()
        if opening is None:
            return False
        _layers.notify_info(f"{opening}…: wait until it is open")
        return True

    def _sample_arriving(self) -> str | None:
        """The line "opening sample 'x'" while File > Open Sample is still adding the layers
        of sample x (some of its four in the viewer, the rest to come in steps), else None."""
        from .._sample_data import ORDER

        viewer = self.viewer
        if viewer is None or not _layers.steps_pending():
            return None
        roles: dict[str, set] = {}
        for layer in viewer.layers:
            sample = _layers.layer_meta(layer).get("sample")
            if sample:
                roles.setdefault(sample, set()).add(_layers.role_of(layer))
        arriving = [name for name, got in roles.items() if not set(ORDER) <= got]
        return f"opening sample '{arriving[0]}'" if arriving else None

    def set_case(
        self,
        case: Case,
        folder: str | os.PathLike | None,
        *,
        show: bool = True,
        save_images: bool = True,
        prepared: dict | None = None,
        on_shown=None,
    ) -> None:
        """Make ``case`` current (flushing the previous one) and show its layers.

        ``save_images=False`` says that ``folder`` already holds ``case`` exactly;
        ``prepared`` (from :func:`prepare_display`, made off the GUI thread) saves copying
        the volumes here. With ``on_shown``, the layers are added one per event-loop
        iteration (the window stays responsive) and ``on_shown()`` is called once they all
        are; without it, they are all added before this returns.
        """
        self.flush()
        self.case_generation += 1
        self._replacing = False
        self._restore.clear()  # the hidden figures of the previous case go for good
        self._loading = True
        self._user_edited = False
        prepared = prepared or {}
        try:
            self.model.load_case(
                case,
                folder,
                saved=not save_images and folder is not None,
                label_arrays=prepared.get("labels"),
            )
            if folder is not None and save_images:
                self.model.save()
            stepwise = show and self.viewer is not None and on_shown is not None
            if show and self.viewer is not None and not stepwise:
                for _ in self._show_steps(prepared=prepared):
                    pass
        finally:
            self._loading = False
        if stepwise:

            def done():
                self._after_show()
                on_shown()

            _layers.run_in_steps(self._show_steps(prepared=prepared), done)
            return
        self._after_show()

    def _after_show(self) -> None:
        if self.model.folder is not None and self.model.unsaved_items():
            self.autosave()  # e.g. the new, empty label layers of a case without labels

    def show_case(self, *, side_by_side: bool = True, images: dict | None = None) -> None:
        """Add (or refresh) the case's layers: pre with its tumor labels and post with its
        ablation labels, side by side in a 1 x 2 grid (napari's grid button switches to an
        overlay), centred on the tumor. The only place that selects a layer: the tumor
        labels, once, when a case is opened."""
        for _ in self._show_steps(side_by_side=side_by_side, prepared={"images": images}):
            pass

    def _show_steps(self, **kw):
        """:meth:`show_case` as a generator that yields after each piece of napari work (a
        layer added, the grid, the view), for :func:`_layers.run_in_steps`. The canvas is
        not redrawn until the layers, the grid and the view are in place: a half-built view
        (the first image alone, zoomed to fill the canvas) flashed before the side-by-side
        view."""
        viewer = self.viewer
        resume = _layers.pause_canvas(viewer)
        try:
            yield from self._case_layer_steps(**kw)
            yield  # the canvas draws the case (each layer's first draw) in a piece of its own
        finally:
            if viewer is not None and not len(viewer.layers) and viewer.dims.ndim != 2:
                viewer.dims.ndim = 2  # (dims preset, then no layer: as napari leaves them)
                viewer.dims.reset()
            resume()

    def _case_layer_steps(self, *, side_by_side: bool = True, prepared: dict | None = None):
        viewer = self.viewer
        m = self.model
        yield from self._remove_derived_steps()
        prepared = prepared or {}
        images = prepared.get("images") or {}
        contrast = prepared.get("contrast") or {}
        modality = m.info.get("modality", "")
        if viewer is not None and m.pre is not None and _layers.preset_dims(viewer, m.pre):
            yield  # the first layer of an empty viewer: its dims sliders come first
        added = []
        for role in ("pre", "tumor", "post", "ablation"):
            if viewer is None or self.viewer is not viewer:
                return
            if role in ("pre", "post"):
                img = m.image(role)
                if img is None:
                    continue
                meta = {
                    _layers.META: {
                        "modality": m.info.get(f"{role}_modality") or modality,
                        "case_folder": str(m.folder) if m.folder else "",
                        "original_geometry": m.info.get(f"{role}_original_geometry"),
                        "source": m.info.get(f"{role}_source", ""),
                    }
                }
                extra = {"contrast_limits": contrast[role]} if role in contrast else {}
                with _layers.keep_selection(viewer):  # the tumor is made active at the end
                    layer = _layers.add_or_update_image(
                        viewer,
                        img,
                        role,
                        metadata=meta,
                        array=images.get(role),
                        modality=meta[_layers.META]["modality"],
                        colormap="gray",
                        **extra,
                    )
            else:
                grid = m.image(GRID_OF[role])
                if grid is None:
                    continue
                if m.labels(role) is None:
                    m.set_labels(role, np.zeros(grid.GetSize()[::-1], np.uint8), "load")
                color = _layers.TUMOR_COLOR if role == "tumor" else _layers.ABLATION_COLOR
                meta = {
                    _layers.META: {
                        "original_geometry": m.info.get(f"{GRID_OF[role]}_original_geometry"),
                        "drawn_on": GRID_OF[role],
                        # the scan it was drawn on: File > Save Layers never writes over it
                        "source": m.info.get(f"{GRID_OF[role]}_source", ""),
                    }
                }
                loading, self._loading = self._loading, True
                try:
                    shown = _layers.find_layer(viewer, role)
                    # the layer holds the model's own array: no copy, one truth
                    with _layers.keep_selection(viewer):
                        layer = _layers.add_or_update_labels(
                            viewer,
                            grid,
                            role,
                            color=color,
                            opacity=0.5,
                            metadata=meta,
                            array=m.labels(role),
                        )
                    if layer is shown:  # the previous case's layer, with this case's labels
                        _layers.forget_undo(layer)
                    self.bind_labels(layer)
                finally:
                    self._loading = loading
            added.append(layer)
            yield
        added = [ly for ly in added if ly in viewer.layers]
        _layers.arrange(viewer)  # pre space over post space; grid cells pre | post
        post, abl = _layers.find_layer(viewer, "post"), _layers.find_layer(viewer, "ablation")
        if post is not None and abl is not None:
            abl.visible = post.visible
        if side_by_side and len(added) == 4 and len(viewer.layers) == 4:
            yield
            _layers.grid(viewer).enabled = True
        yield
        if added:
            viewer.layers.selection.active = added[1] if len(added) > 1 else added[0]
        self.center_on_tumor(prepared.get("focus"))
        # opened in 3D: the 2D camera is still the previous case's (UAT s12 N5: back in 2D the
        # post image ran off the canvas)
        self._fit_in_2d = viewer.dims.ndisplay == 3

    def _derived_layers(self, keep: tuple[str, ...] = ()) -> list:
        """The layers the plugin made from the open case (margin, outline, MTM point,
        registered post, landmarks, QA views, ...; not the roles in ``keep``). The user's
        own layers (without a plugin role) are not among them."""
        return [
            ly for ly in self.viewer.layers if _layers.role_of(ly) not in (None, *CASE_ROLES, *keep)
        ]

    def _remove_derived_steps(self):
        """:meth:`_remove_derived_layers` one layer per step, for a case being opened in
        steps (hidden at once, see :meth:`_hide_then_remove`)."""
        derived = self._derived_layers()
        for layer in derived:
            if _key(layer) not in self._going:
                self._going[_key(layer)] = layer
                _layers.hide_at_once(layer)
        yield from self._remove_steps(derived, paused=True)

    def _remove_derived_layers(self, keep: tuple[str, ...] = ()) -> None:
        """Remove the layers the plugin made from the previous case (:meth:`_derived_layers`,
        not the roles in ``keep``): they do not belong to the case being opened."""
        viewer = self.viewer
        derived = self._derived_layers(keep)
        if not derived:
            return
        # one batch: napari's canvas cleans up (a full gc.collect) once, not per layer
        with viewer.layers.batched_update():
            for layer in derived:
                viewer.layers.remove(layer)

    def center_on_tumor(self, focus: dict | None = None) -> bool:
        """Centre the view on the tumor labels (or the ablation zone) when there are any
        (``focus``: their voxel boxes from :func:`prepare_display`, saves scanning the
        volumes here)."""
        for role in ("tumor", "ablation"):
            layer = _layers.find_layer(self.viewer, role)
            if layer is None:
                continue
            if focus is not None and role in focus:
                box = focus[role]
            else:
                box = _voxel_box(np.asarray(layer.data))
            if box is None:
                continue
            centre, extent_vox = box
            world = np.asarray(layer.data_to_world(centre))
            extent = np.asarray(extent_vox) * np.asarray(layer.scale)
            self.viewer.reset_view()
            if _layers.grid(self.viewer).enabled:
                # side by side: show both cells whole, on the tumor's slice
                self.viewer.dims.point = tuple(float(v) for v in world)
                return True
            lo, hi = self.viewer.layers.extent.world[0], self.viewer.layers.extent.world[1]
            scene = float(np.max(np.asarray(hi)[-2:] - np.asarray(lo)[-2:]))
            _layers.center_view_on(self.viewer, world)
            _layers.camera(self.viewer).zoom *= max(
                1.0, scene / (4.0 * max(float(extent.max()), 10.0))
            )
            return True
        return False

    # ------------------------------------------------------------------ layers -> model
    def while_case(self, steps):
        """``steps`` (a generator for :func:`_layers.run_in_steps`) run only while the case
        open now stays the one shown: once another case starts opening (or is set, or the
        case is closed) the rest is dropped (UAT s7 N1: the previous case's margin layers
        went on being added over the case opened meanwhile). The case is the one open when
        this is called, not when the first step runs (a step queue may start them later)."""
        return self._while_generation(self.case_generation, steps)

    def _while_generation(self, gen: int, steps):
        try:
            while gen == self.case_generation:
                try:
                    item = next(steps)
                except StopIteration:
                    return
                yield item
        finally:
            steps.close()

    def _on_layer_inserted(self, event) -> None:
        layer = event.value
        if self._replacing and _layers.role_of(layer) not in (
            None,
            *CASE_ROLES,
            "landmarks_pre",
            "landmarks_post",
        ):
            # a figure of the case being replaced, made after the opening began: hidden and
            # removed with the others (shown again if the opening fails)
            self._hide_then_remove([layer])
        self._adopt(layer)
        self._look_in_steps()  # a new layer, or a surface that stands in for others in 3D

    def _grid_follows(self, event) -> None:
        """The grid stride follows the layers, but not a layer of another case that has just
        arrived (File > Open Sample): it is removed again at once (:meth:`_switch_to_arrived`),
        and a new stride rebuilds napari's scene graph (70-140 ms in a viewer of ten layers)."""
        if self.viewer is not None and not any(event.value is ly for ly in self._arrived):
            _layers.update_grid_stride(self.viewer)

    def _look_plan(self) -> list:
        """(layer, its look now) for every layer whose look is not the one it should have
        (:func:`look_3d` in 3D, its own 2D look in 2D), top layer first."""
        viewer = self.viewer
        if viewer is None:
            return []
        three_d = viewer.dims.ndisplay == 3
        roles = {_layers.role_of(ly) for ly in viewer.layers}
        grid = bool(_layers.grid(viewer).enabled)
        plan = []
        for layer in reversed(list(viewer.layers)):
            if _key(layer) in self._going:
                continue  # hidden until it is removed
            look = look_3d(layer, roles, grid) if three_d else None
            if look != self._look_2d.get(id(layer), (None, {}))[0]:
                plan.append((layer, look))
        return plan

    def _put_2d_look_back(self, layer) -> None:
        for k, value in self._look_2d.pop(id(layer), (None, {}))[1].items():
            _layers.set_changed(layer, **{k: value})

    def _note_look(self, layer, look) -> None:
        """Remember the 2D look that ``look`` replaces (before any new look is applied: one
        layer's look may change another's, the raw ablation labels follow post)."""
        if look:
            self._look_2d[id(layer)] = (look, {k: getattr(layer, k) for k in look})

    def _apply_look(self, layer, look) -> None:
        if look and look.get("depiction") == "plane":
            _plane_through_view(self.viewer, layer)
        for k, value in (look or {}).items():
            _layers.set_changed(layer, **{k: value})

    def _before_switch(self, event=None) -> None:
        """napari is about to switch 2D/3D (called before napari's own callbacks,
        :func:`_layers.connect_before_napari`): the canvas shows its last frame until every
        layer has its look for the new view (:meth:`_looks_done`). To 3D: no frame of voxel
        blocks over the surfaces. To 2D: napari shows its dims slider inside the switch,
        which shrank the canvas and painted it at once, with the 3D looks, in the same piece
        of GUI work (a third of it); the canvas is now covered by a picture of its last 3D
        frame while it shrinks, and the 2D frame is drawn once, in a step of its own."""
        viewer = self.viewer
        if viewer is not None and self._resume_canvas is None:
            self._resume_canvas = _layers.pause_canvas(
                viewer, keep_frame=True, cover=viewer.dims.ndisplay == 2
            )

    def _on_switch(self, event=None) -> None:
        """napari switched 2D/3D (its own handlers have run; the canvas is held since
        :meth:`_before_switch`): 3D is seen as from the axial view, and every layer gets its
        look for the new view, one per event-loop iteration."""
        viewer = self.viewer
        if viewer is not None:
            self._axial_in_3d(viewer)
        self._look_in_steps()

    def _axial_in_3d(self, viewer) -> None:
        """3D is seen as from the axial 2D view, whatever the 2D view was (UAT s7 N7): after
        napari's Roll or Transpose (a sagittal or coronal order) and the camera's flip for that
        view, 3D looked at the scene from another side, mirrored, with napari's light behind
        the surfaces (dark) and the MTM marker out of view. On the switch to 3D the axial
        order and camera directions are set; back in 2D the user's are put back, on the
        slice the user was on (napari moves the slice to the 3D camera's depth, which the
        3D framing set: -7.5 -> -11.5 mm), or on the one a widget chose in 3D (Go to MTM)."""
        from ..core import orientation as core_orientation

        dims, cam = viewer.dims, _layers.camera(viewer)
        if dims.ndim < 3:
            return
        if dims.ndisplay == 2:
            view, self._view_2d = self._view_2d, None
            if view is not None:
                dims.order = view[0]
                cam.orientation = view[1]
                dims.point = view[2]
            if self._fit_in_2d:  # a case opened in 3D: fitted as when it opens in 2D
                self._fit_in_2d = False
                self.center_on_tumor()
            return
        if self._view_2d is None:
            self._view_2d = (tuple(dims.order), tuple(cam.orientation), tuple(dims.point))
        axial = (*[a for a in dims.order if a < dims.ndim - 3], *range(dims.ndim - 3, dims.ndim))
        depth = cam.orientation[0]
        want = (depth, *core_orientation.screen_directions((1, 2)))
        now = tuple(str(getattr(d, "value", d)) for d in cam.orientation)
        if tuple(dims.order) == axial and now[1:] == want[1:]:
            return
        dims.order = axial
        cam.orientation = want

    def _on_point_in_3d(self, event=None) -> None:
        """A slice chosen while in 3D (Go to MTM, a quiz reveal) is the one 2D comes back to."""
        viewer = self.viewer
        if self._view_2d is not None and viewer is not None and viewer.dims.ndisplay == 3:
            self._view_2d = (*self._view_2d[:2], tuple(viewer.dims.point))

    def _look_in_steps(self, event=None) -> None:
        """Give every layer its look for 2D or 3D (:meth:`_look_steps`), whoever switched
        (napari's button, a widget, a script), one layer per event-loop iteration after
        napari's own switch: each change of a layer's visibility is a rebuild of napari's
        scene graph for every grid cell (30-100 ms), so applied together they doubled the
        GUI thread's longest piece of work of a switch."""
        if self._look_chain == _layers.CLOSE_GENERATION[0]:
            return  # the running steps plan again after each change
        if not self._look_plan():
            self._looks_done()
            return
        self._look_chain = _layers.CLOSE_GENERATION[0]
        _layers.run_in_steps(self._look_steps(), self._looks_done)

    def _look_steps(self):
        """One look change per step, planned again before each (the user may switch back,
        add or remove a layer meanwhile): first every 2D look put back, then every new
        look noted, then applied."""
        viewer = self.viewer
        while viewer is not None and (plan := self._look_plan()):
            back = [ly for ly, _look in plan if id(ly) in self._look_2d]
            back.sort(key=lambda ly: not self._look_2d[id(ly)][1].get("visible", False))
            if back:
                self._put_2d_look_back(back[0])
                yield
                continue
            for layer, look in plan:
                self._note_look(layer, look)
            ndisplay = viewer.dims.ndisplay
            for layer, look in plan:
                if viewer.dims.ndisplay != ndisplay:
                    break  # switched back: planned again
                if layer in viewer.layers:
                    self._apply_look(layer, look)
                    yield

    def _looks_done(self) -> None:
        self._look_chain = None
        resume, self._resume_canvas = self._resume_canvas, None
        if resume is not None:
            resume()

    def _on_ndisplay(self, event=None) -> None:
        """Every layer's look for 2D or 3D at once (a layer removed, the grid switched): see
        :meth:`_look_in_steps`. Never changes the selection, the active layer or the view. A
        3D look already applied is left as it is (the user may have changed it since)."""
        plan = self._look_plan()
        for layer, _look in plan:
            self._put_2d_look_back(layer)
        for layer, look in plan:
            self._note_look(layer, look)
        for layer, look in plan:
            self._apply_look(layer, look)

    def _on_layer_removing(self, event) -> None:
        """An image of the case is about to go: the labels drawn on it leave the painting
        modes first (napari 0.9 with vispy segfaulted on a later draw when the case closed
        with its images while the active labels were in paint mode: UAT s9 N8)."""
        role = _layers.role_of(self.viewer.layers[event.index]) if self.viewer else None
        for lrole, grid in GRID_OF.items():
            labels = self._bound.get(lrole)
            if grid == role and labels is not None and labels.mode != "pan_zoom":
                labels.mode = "pan_zoom"

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        self._look_2d.pop(id(layer), None)
        self._going.pop(_key(layer), None)
        self._restore.pop(_key(layer), None)
        for role, bound in list(self._bound.items()):
            if _layers.unwrapped(bound) is _layers.unwrapped(layer):  # (napari's proxies)
                del self._bound[role]
        self._on_ndisplay()  # a surface gone: the layers it stood in for are shown again
        role = _layers.role_of(layer)
        if self._closing or self._loading or self.viewer is None or role not in CASE_ROLES:
            return
        # decided after napari's removal: the user may be deleting a selection one layer
        # at a time, and the widgets' own layers of the closed case removed inside napari's
        # loop made it raise "... is not in list" (UAT s6 D3)
        if self._removed_roles is None:
            from qtpy.QtCore import QTimer

            self._removed_roles = set()
            ref = weakref.ref(self)
            QTimer.singleShot(0, lambda _r=ref: _r() is not None and _r()._after_removal())
        self._removed_roles.add(role)

    def _after_removal(self) -> None:
        removed, self._removed_roles = self._removed_roles or set(), None
        viewer = self.viewer
        if self._closing or self._loading or viewer is None:
            return
        left = {_layers.role_of(ly) for ly in viewer.layers}
        if not left & set(CASE_ROLES):
            self.close_case()
        elif removed & set(IMAGE_ROLES) and not left & set(IMAGE_ROLES):
            # the case's images are gone: its labels would lie over nothing, and then over
            # the next case's images; the case is saved and closed with all its layers
            self.close_case(images_removed=True)
        else:
            self._withdraw_deleted(removed)

    def _withdraw_deleted(self, roles) -> None:
        """The labels of ``roles`` whose layer the user deleted are off the screen: no figure
        made from them stays or is made (UAT s12 N3: the Margins widget said "up to date"
        with the MTM of a deleted tumor) until a layer shows them again
        (:meth:`bind_labels`). The model keeps them, and so does the case folder."""
        viewer = self.viewer
        # (a layer converted to an Image still shows them: :meth:`_labels_role_after_convert`)
        aside = {_layers.layer_meta(ly).get("set_aside_role") for ly in viewer.layers}
        for role in sorted(set(roles) & set(LABEL_ROLES) - aside):
            if self.labels_layer(role) is None and self.model.labels(role) is not None:
                self.model.withdraw_labels(
                    role,
                    f"{role} layer deleted: no margins without it (its labels are kept in the "
                    "case; Segment > Create / edit labels shows them again)",
                )

    def close_case(self, images_removed: bool = False) -> None:
        """The user removed every layer of the case, or both its images
        (``images_removed``): it is saved (when it has a folder or was edited) and the
        model is emptied, so no figure, status line or computation follows images that are
        no longer on screen; the next images opened (File > Open Sample, drag and drop)
        make a new case. The plugin's layers made from the case go too, and with
        ``images_removed`` its label layers (saved in the case folder first).

        Nothing annotated is lost: when the labels cannot be saved, the case stays open
        (its label layers too) and the user is told."""
        m = self.model
        if (
            m.pre is None
            and m.post is None
            and not any(m.labels(r) is not None for r in LABEL_ROLES)
        ):
            return
        self.flush()
        # (labels never edited nor saved, e.g. a sample's as opened, are not at risk)
        at_risk = m.folder is not None or self._user_edited
        unsaved = [r for r in m.unsaved_items() if r in LABEL_ROLES] if at_risk else []
        if unsaved:
            _layers.notify_warning(
                f"the case is kept open: its {' and '.join(unsaved)} labels could not be "
                f"saved ({m.save_error or 'no case folder'})"
            )
            return
        folder = m.folder
        self._user_edited = False
        self._autosave_timer.stop()
        self._arrived = []
        self.case_generation += 1
        self.model.load_case(Case())
        if images_removed and folder is not None:
            _layers.notify_info(
                f"case '{Path(folder).name}' closed with its images; its labels are saved in "
                f"{folder}"
            )
        if self.viewer is not None:
            from qtpy.QtCore import QTimer

            # after the removal that closed the case has settled (one more event-loop turn)
            ref = weakref.ref(self)
            QTimer.singleShot(
                0,
                lambda _r=ref: _r() is not None and _r()._remove_derived(images_removed),
            )

    def _remove_derived(self, case_layers: bool = False) -> None:
        if self.viewer is None or self.model.pre is not None or self.model.post is not None:
            return
        self._remove_derived_layers()
        if case_layers:  # the closed case's labels (its images are already gone)
            with self.viewer.layers.batched_update():
                for layer in [ly for ly in self.viewer.layers if _layers.role_of(ly) in CASE_ROLES]:
                    self.viewer.layers.remove(layer)

    def _adopt(self, layer) -> None:
        """Take a layer with a role into the model: pre/post images that arrive without a
        case (File > Open Sample, drag and drop), tumor/ablation labels, and the post image's
        link to the ablation labels' visibility. A Labels layer that shows a result (margin
        classes, outlines) is read-only (:func:`_layers.shows_result`)."""
        role = self._labels_role_after_convert(layer, _layers.role_of(layer))
        if _layers.shows_result(layer):
            _layers.keep_read_only(layer)
        if role in CASE_ROLES and self._of_another_case(layer):
            self._arrived.append(layer)
            if len(self._arrived) == 1:  # once all its layers are in, in a later piece of
                # GUI work than napari's add (a posted call ran in the same one: 2 x 150-250 ms)
                _layers.run_in_steps([self._switch_to_arrived])
            return
        if role in LABEL_ROLES:
            old = self.labels_layer(role)
            if old is not None and old is not layer and not self._loading:
                self._rebind_arrived_labels(layer, old, role)
            else:
                self.bind_labels(layer)
            return
        if role not in ("pre", "post"):
            return
        if role == "post":
            layer.events.visible.connect(self._post_visibility_changed)
        if self.model.image(role) is not None:
            return
        try:
            img = _layers.image_from_layer(layer)
        except AblationError:
            return
        meta = _layers.layer_meta(layer)
        info = self.model.info
        if "name" not in info:
            source = (
                meta.get("sample") or meta.get("case_folder") or meta.get("source") or layer.name
            )
            info["name"] = Path(str(source).rstrip("/\\")).name.split(".")[0] or "case"
            if meta.get("sample"):
                info["name"] = f"sample_{meta['sample']}"
        if meta.get("modality"):
            info.setdefault("modality", meta["modality"])
        self.model.set_image(role, img)
        for lrole, grid in GRID_OF.items():
            if grid == role and self._bound.get(lrole) is not None:
                self._share(lrole, self._bound[lrole])

    @staticmethod
    def _labels_role_after_convert(layer, role: str | None) -> str | None:
        """napari's Convert to Image / Labels keeps a layer's metadata (UAT s9 N1): a tumor or
        ablation layer converted to another type is set aside (its role kept apart; the
        model keeps its labels, saved with the case), and converted back to Labels it is
        its role's labels again. Returns the role ``layer`` is taken with."""
        from napari.layers import Labels

        meta = _layers.layer_meta(layer)
        is_labels = isinstance(layer, Labels)
        if role in LABEL_ROLES and not is_labels:
            aside, role = role, None
            notice = (
                f"'{layer.name}' is no longer a Labels layer: the case's {aside} stays the "
                "labels as last drawn (saved with the case); convert it back to Labels to "
                "edit it"
            )
        elif role is None and is_labels and meta.get("set_aside_role") in LABEL_ROLES:
            aside, role = None, meta["set_aside_role"]
            notice = f"'{layer.name}' is the case's {role} again"
        else:
            return role
        full = dict(layer.metadata)
        full[_layers.META] = {**meta, "role": role, "set_aside_role": aside}
        layer.metadata = full
        _layers.notify_info(notice)
        return role

    def _rebind_arrived_labels(self, layer, old, role: str) -> None:
        """``layer`` (a label file opened through the reader, a duplicated layer) arrives
        with the ``role`` of the open case's labels: it becomes the case's labels, as
        :meth:`use_labels_layer` does, and the user is told (the margins and the autosave
        follow it from now on); one that does not fit the case's grid stays a plain layer."""
        drawn = bool(np.any(np.asarray(old.data)))
        try:
            kept = self.use_labels_layer(layer, role)
        except AblationError as exc:
            meta = dict(layer.metadata)
            meta[_layers.META] = {**(meta.get(_layers.META) or {}), "role": None}
            layer.metadata = meta
            _layers.notify_warning(f"'{layer.name}' is not used as the {role}: {one_line(exc)}")
            return
        if not drawn:  # an empty layer was replaced: nothing was lost (UAT s10 N3)
            _layers.notify_info(f"the {role} labels opened are the case's {role}")
            return
        _layers.notify_warning(
            f"'{layer.name}' is now the case's {role} (the margins and the autosave follow "
            f"it); the {role} it replaces is kept read-only as '{old.name}'"
            + (f", its labels saved in {kept}" if kept is not None else "")
        )

    def _of_another_case(self, layer) -> bool:
        """True for a case layer (File > Open Sample, a case folder dropped on the viewer)
        that arrives while layers of another source hold its role: a second case, which
        replaces the open one (two cases are never mixed). A copy of a layer of the open
        case (napari's Duplicate Layer) is not another case."""
        if self._loading:
            return False

        def source(ly):
            meta = _layers.layer_meta(ly)
            return meta.get("sample"), meta.get("case_folder")

        src = source(layer)
        if not any(src):
            return False
        role = _layers.role_of(layer)
        others = [
            o
            for o in self.viewer.layers
            if o is not layer and o not in self._arrived and _layers.role_of(o) == role
        ]
        return bool(others) and all(source(o) != src for o in others)

    @staticmethod
    def replaces_open_case(viewer, sample: str, folder) -> bool:
        """True when case layers of ``sample`` (in ``folder``) added to ``viewer`` now would
        be taken as another case (:meth:`_of_another_case`): the plugin's session of the
        viewer then opens that case itself, from its working copy, and removes the layers
        that arrived; File > Open Sample then gives napari one light layer only."""
        session = _SESSIONS.get(viewer)
        if session is None or session._closing or session._loading or session.viewer is None:
            return False
        src = (sample, str(folder))
        pres = [
            _layers.layer_meta(ly)
            for ly in viewer.layers
            if _layers.role_of(ly) == "pre" and not any(ly is a for a in session._arrived)
        ]
        return bool(pres) and all((m.get("sample"), m.get("case_folder")) != src for m in pres)

    def _switch_to_arrived(self) -> None:
        """Open the case whose layers just arrived instead of the open one (saved first,
        in :meth:`set_case`): a sample opens its working copy, as Load > Open sample does;
        a case folder opens from disk. The arrived layers are removed, so the viewer keeps
        one case: the one the plugin works on. Asked for while another case is opening, it
        opens once that one is open (the newest request; never dropped)."""
        arrived, self._arrived = self._arrived, []
        viewer = self.viewer
        if viewer is None or not arrived:
            return
        meta = _layers.layer_meta(arrived[0])
        for layer in arrived:
            if layer in viewer.layers:
                viewer.layers.remove(layer)
        sample, folder = meta.get("sample"), meta.get("case_folder")

        def job():
            from ..core.case import is_case_folder
            from .load import sample_working_copy

            if sample:
                case, where = sample_working_copy(sample)
            elif is_case_folder(folder):
                case, where = Case.load(folder), Path(folder)
            else:
                raise AblationError(f"{folder} is not a case folder: open it with Load case")
            return case, where, prepare_display(case)

        def shown(case, where):
            _layers.notify_info(f"opened case '{where.name}' (the previous case was saved)")

        self.open_case(job, f"opening case '{sample or Path(str(folder)).name}'", on_shown=shown)

    def open_case(self, job, what: str, *, on_shown=None, on_error=None):
        """Open the case that ``job`` reads off the GUI thread (it returns ``(case, folder,
        prepared)``, ``prepared`` from :func:`prepare_display`) as every opening does: the
        open case's figures hidden at once and actions refused until the new case is open
        (:meth:`begin_opening`, ``what`` is the line that says so), its layers added one
        per event-loop iteration (the previous case's layers reused, their undo history
        emptied), then ``on_shown(case, folder)``. ``on_error(message)`` (default: a
        one-line error) if it cannot be read; the open case stays. Asked for while another
        case opens, it opens once that one is open (the newest request; never dropped):
        returns None then, else the worker."""
        if self.opening is not None:
            self._queued_open = (job, what, on_shown, on_error)
            _layers.notify_info(f"{what}: once the case being opened is open")
            return None
        ref = weakref.ref(self)
        # the case's layers are being added, one per event-loop iteration: all at once over
        # the open case's they were one stall of 1.1-1.9 s of GUI-thread CPU (UAT s6)
        showing = [False]

        def done(result, _ref=ref):
            s = _ref()
            if s is None or s.viewer is None:
                return
            case, where, prepared = result

            def shown():
                showing[0] = False
                if on_shown is not None:
                    on_shown(case, where)
                finished()

            showing[0] = True
            try:
                s.set_case(case, where, save_images=False, prepared=prepared, on_shown=shown)
            except AblationError as exc:
                showing[0] = False
                (on_error or _layers.notify_error)(one_line(exc))
            except BaseException:
                showing[0] = False
                raise

        def finished(_ref=ref):
            s = _ref()
            if s is not None and not showing[0]:  # (else: once the layers are on screen)
                s._switch_worker = None
                s.end_opening()

        self._switch_worker = _layers.start_worker(
            job, on_returned=done, on_error=on_error, on_finished=finished, desc=what
        )
        self.begin_opening(what)
        return self._switch_worker

    def _open_queued(self) -> None:
        """The case asked for while another opened, now."""
        if self._queued_open is None or self.viewer is None or self._closing:
            return
        if self.opening is not None:
            return  # another opening began meanwhile: this one waits for it
        (job, what, on_shown, on_error), self._queued_open = self._queued_open, None
        self.open_case(job, what, on_shown=on_shown, on_error=on_error)

    def _post_visibility_changed(self, event=None) -> None:
        """The ablation labels (drawn on post) are hidden with post, and shown with it again
        only when post hid them: an ablation layer the user hid stays hidden (UAT s9 N4b)."""
        post = _layers.find_layer(self.viewer, "post")
        abl = self._bound.get("ablation")
        if post is None or abl is None:
            return
        if not post.visible and abl.visible:
            self._hidden_with_post = id(abl)
            abl.visible = False
        elif post.visible and not abl.visible and self._hidden_with_post == id(abl):
            abl.visible = True
        if post.visible:
            self._hidden_with_post = None

    def watch(self, layer) -> None:
        """Bind ``layer`` to the model when it has the tumor or ablation role (a user's
        choice: the model's labels change when the layer holds other data)."""
        self.bind_labels(layer, source="bulk")

    def labels_layer(self, role: str):
        """The Labels layer bound to the model's ``role`` labels (None when there is none)."""
        layer = self._bound.get(role)
        viewer = self.viewer
        return (
            layer if layer is not None and viewer is not None and layer in viewer.layers else None
        )

    def edit_lock(self, item: str) -> str | None:
        """Why ``item`` (``"tumor"``, ``"ablation"``, ``"registration"``) cannot be edited now
        (an open quiz question: the case model's
        :meth:`~napari_ablation.model.CaseModel.edit_lock`); None when it can."""
        return self.model.edit_lock(item)

    def apply_edit_lock(self) -> None:
        """The labels layers read-only while their role is locked (:meth:`edit_lock`)."""
        for role in LABEL_ROLES:
            layer = self.labels_layer(role)
            if layer is not None:
                layer.editable = self.edit_lock(role) is None

    def fits(self, layer, role: str) -> bool:
        """Tell whether ``layer`` may hold the open case's ``role`` labels: it lies on the
        grid of the role's image (always true before that image is loaded)."""
        grid = self.model.image(GRID_OF[role])
        return grid is None or _layers.on_grid(layer, grid)

    def use_labels_layer(self, layer, role: str) -> Path | None:
        """The user's choice: ``layer`` holds the ``role`` labels from now on (the layer that
        held them keeps its data under the role ``<role>_previous``, read-only and named
        ``"<name> (previous)"``, and the labels it held are saved first:
        :meth:`CaseModel.keep_replaced_labels`, whose file is returned; an empty one goes:
        :meth:`_drop_empty_replaced`).

        Raises
        ------
        AblationError
            When the layer is not on the grid of the role's image.
        """
        if role not in LABEL_ROLES:
            raise AblationError(f"unknown label role '{role}' (use tumor or ablation)")
        layer = _layers.unwrapped(layer)  # (a plugin widget's layers come through a proxy)
        if self._bound.get(role) is layer:
            return None
        if not self.fits(layer, role):
            raise AblationError(
                f"'{layer.name}' is not on the {GRID_OF[role]} image grid: "
                f"the {role} is drawn on {GRID_OF[role]}"
            )
        kept = self.model.keep_replaced_labels(role)
        other = self._bound.get(role)
        if other is not None and other is not layer and not np.any(np.asarray(other.data)):
            self._drop_empty_replaced(other, layer)
        elif other is not None:
            meta = dict(other.metadata)
            meta[_layers.META] = {**(meta.get(_layers.META) or {}), "role": f"{role}_previous"}
            other.metadata = meta
            # a record of the replaced labels, equal to the file just written: read-only, as
            # strokes on it would reach no file (to edit it, make it the role's layer again)
            _layers.keep_read_only(other)
            other.name = f"{other.name}{PREVIOUS_SUFFIX}"
        if layer.name.endswith(PREVIOUS_SUFFIX):  # a kept record made the role's layer again
            layer.name = layer.name[: -len(PREVIOUS_SUFFIX)]
        meta = dict(layer.metadata)
        meta[_layers.META] = {
            **(meta.get(_layers.META) or {}),
            "role": role,
            "drawn_on": GRID_OF[role],
        }
        layer.metadata = meta
        self.bind_labels(layer, source="bulk")
        return kept

    def _drop_empty_replaced(self, old, new) -> None:
        """``old``, an empty labels layer whose role ``new`` takes, holds nothing to keep: it
        becomes a plain layer and leaves the viewer (in a later piece of GUI work than the
        insertion that may have brought ``new``), and ``new`` takes its name when napari
        only numbered it for the clash ("tumor [1]" -> "tumor")."""
        meta = dict(old.metadata)
        meta[_layers.META] = {**(meta.get(_layers.META) or {}), "role": None}
        old.metadata = meta
        name, viewer = old.name, self.viewer

        def drop() -> None:
            if viewer is None or old not in viewer.layers:
                return
            viewer.layers.remove(old)
            if re.fullmatch(rf"{re.escape(name)} \[\d+\]", new.name):
                new.name = name

        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, drop)

    def bind_labels(self, layer, source: str = "layer") -> None:
        """Make ``layer`` (role tumor or ablation) the model's labels of its role: it shares
        its array with the model, and every edit, undo and redo of it reaches the model."""
        # the layer itself, not napari's proxy of it (a new object on each access: its id
        # and a weak reference to it would not last)
        layer = _layers.unwrapped(layer)
        role = _layers.role_of(layer)
        if role not in LABEL_ROLES:
            return
        self._bound[role] = layer
        self._share(role, layer, source)
        self.model.withdraw_labels(role, None)  # (shown again, when a deleted layer's were)
        layer.editable = self.edit_lock(role) is None
        self.changed.emit("binding")  # the Margins widget's layer choices follow (UAT s12 N1)
        if id(layer) in self._wrapped:
            return
        self._wrapped.add(id(layer))
        ref = weakref.ref(self)
        lref = weakref.ref(layer)

        def edited(source, _ref=ref, _lref=lref):
            s, ly = _ref(), _lref()
            if s is not None and ly is not None:
                s._layer_edited(ly, source)

        layer.events.paint.connect(lambda _e=None: edited("brush"))
        layer.events.data.connect(lambda _e=None: edited("data"))
        # napari 0.9: undo/redo write layer.data and refresh, with no event. The keyboard
        # shortcuts and the Segment widget call layer.undo()/redo(): wrap them.
        for name in ("undo", "redo"):
            original = getattr(layer, name)

            def wrapped(*args, _orig=original, _name=name, **kw):
                out = _orig(*args, **kw)
                edited(_name)
                return out

            wrapped.__doc__ = original.__doc__
            setattr(layer, name, wrapped)

    def _share(self, role: str, layer, source: str = "layer") -> None:
        data = layer.data
        if not isinstance(data, np.ndarray) or data.ndim != 3:
            return
        if self.model.share_labels(role, data):
            return
        try:
            self.model.set_labels(role, data, source, grid=self._grid_of_layer(layer), copy=False)
        except AblationError as exc:
            _layers.notify_warning(f"'{layer.name}': {one_line(exc)}")

    @staticmethod
    def _grid_of_layer(layer) -> sitk.Image:
        shape = np.asarray(layer.data).shape
        ref = sitk.Image([int(s) for s in shape[::-1]], sitk.sitkUInt8)
        ref.SetSpacing([float(s) for s in layer.scale][::-1])
        ref.SetOrigin([float(o) for o in layer.translate][::-1])
        return ref

    def _layer_edited(self, layer, source: str) -> None:
        role = _layers.role_of(layer)
        if role not in LABEL_ROLES or self._bound.get(role) is not layer:
            return
        if source == "data":
            if self._loading and self.model.labels(role) is layer.data:
                return  # show_case handing the model's own array to the layer
            if self.model.labels(role) is layer.data:
                self.model.labels_edited(role, "bulk")
            else:
                self._share(role, layer, "bulk")
        else:
            self.model.labels_edited(role, source)

    def labels_changed(self, role: str) -> None:
        """Note that the ``role`` labels were edited in place (a bulk edit)."""
        if role in LABEL_ROLES and self.model.labels(role) is not None:
            layer = self._bound.get(role)
            if layer is not None and self.model.labels(role) is not layer.data:
                self._share(role, layer, "bulk")
            else:
                self.model.labels_edited(role, "bulk")

    # ------------------------------------------------------------------ model -> disk
    def _on_model_changed(self, what: str) -> None:
        if what in _MANIFEST_ITEMS and not self._loading:
            self._user_edited = True  # a registration, QA verdict, ... is never lost either
            self._save_manifest()
        self.changed.emit(what)
        if what == "folder":
            self.changed.emit("saved")

    def _on_labels_changed(self, role: str, source: str) -> None:
        if self._loading or source in ("layer", "load"):
            return  # a layer bound or a case opened: not an edit
        self._user_edited = True
        self._autosave_timer.start()

    def _save_manifest(self) -> None:
        """Write case.json (+ transform.tfm) now: small files, cheap on the GUI thread."""
        m = self.model
        if m.folder is None:
            return
        try:
            req = m.save_request(items=())
            m.mark_saved(m.write(req), req.folder)
        except Exception as exc:  # noqa: BLE001 - never lose the GUI over a failed save
            m.save_failed(f"could not save the case: {one_line(exc)}")
            _layers.notify_warning(m.save_error)

    def autosave(self, *, background: bool = True) -> bool:
        """Write the unsaved items into the case folder. Returns True when a write started.

        The labels are copied on the GUI thread (tens of ms even for 512 x 512 x 300) and
        written in a background thread, so painting never waits for the disk. A slower,
        older write never replaces a newer one (the model numbers them by version).
        ``background=False`` writes before returning (closing, quitting).
        """
        self._autosave_timer.stop()
        m = self.model
        if not m.unsaved_items() or (m.pre is None and m.post is None):
            return False
        if m.folder is None:  # the first save creates the folder with the images
            m.folder = new_case_folder(m.info.get("name", "case"))
        try:
            req = m.save_request()
        except Exception as exc:  # noqa: BLE001
            self._save_failed(one_line(exc))
            return False
        if background and _qt_app() is not None:
            self._pending_writes += 1
            ref = weakref.ref(self)

            def done(written, _ref=ref, _folder=req.folder):
                s = _ref()
                if s is not None:
                    s._pending_writes = max(0, s._pending_writes - 1)
                    s.model.mark_saved(written, _folder)

            def failed(message, _ref=ref):
                s = _ref()
                if s is not None:
                    s._pending_writes = max(0, s._pending_writes - 1)
                    s._save_failed(message)

            _layers.start_worker(lambda: m.write(req), on_returned=done, on_error=failed)
            self.changed.emit("saved")
            return True
        try:
            m.mark_saved(m.write(req), req.folder)
        except Exception as exc:  # noqa: BLE001
            self._save_failed(one_line(exc))
            return False
        return True

    def _save_failed(self, message: str) -> None:
        self.model.save_failed(f"autosave failed: {message}")
        with contextlib.suppress(Exception):
            _layers.notify_warning(self.model.save_error)

    def flush(self) -> None:
        """Save pending edits before returning (viewer closing, app quitting)."""
        m = self.model
        if m.unsaved_items() and (m.folder is not None or self._user_edited):
            self.autosave(background=False)

    def close(self) -> None:
        """The viewer is closing: no more reruns or autosave timers, pending edits written
        now, and the background work of this viewer joined (so no worker signals into Qt
        objects deleted with the window, nor past the end of the application)."""
        self._closing = True
        self.changed.emit("closing")  # widgets cancel their background work (no late messages)
        self.analysis.reset()
        self._autosave_timer.stop()
        self._arrived = []
        self.flush()
        _layers.CLOSE_GENERATION[0] += 1  # results still queued for this window are dropped
        _join_workers()

    @property
    def has_unsaved_changes(self) -> bool:
        """Edits not yet on disk (waiting for the debounce, or being written)."""
        return self._pending_writes > 0 or bool(self.model.unsaved_items())

    @property
    def all_saved(self) -> bool:
        """The case folder holds the model as it is now (no write pending)."""
        return self._pending_writes == 0 and self.model.all_saved

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Save the whole case now (into ``folder``, which becomes the case folder)."""
        m = self.model
        if folder is None and m.folder is None:
            folder = new_case_folder(m.info.get("name", "case"))
        req = m.save_request(items=tuple(r for r in ("pre", "post", *LABEL_ROLES)), folder=folder)
        m.mark_saved(m.write(req), req.folder)
        return req.folder

    # ------------------------------------------------------------------ other state
    def set_transform(
        self, tx: sitk.Transform | None, source: str = "manual", note: str = ""
    ) -> None:
        self.model.set_transform(tx, source, note)

    def set_landmarks(self, landmarks: dict[str, list[dict[str, Any]]]) -> None:
        self.model.set_landmarks(landmarks)

    def set_qa(self, verdict: str, comment: str = "") -> None:
        self.model.set_qa(verdict, comment)

    def update_settings(self, **kw) -> None:
        self.model.update_settings(**kw)


_HOOKS_INSTALLED = False


def _qt_app():
    try:
        from qtpy.QtWidgets import QApplication
    except Exception:  # noqa: BLE001
        return None
    return QApplication.instance()


def _flush_all() -> None:
    for s in list(_ALL):
        with contextlib.suppress(Exception):
            s.flush()
    _join_workers()


#: how long closing waits for running background work (an analysis, a resampling, a save)
JOIN_TIMEOUT_MS = 60000


def _join_workers() -> None:
    """Wait for the background workers (napari's thread pool) to finish: a worker that
    outlives its window or the application emits into deleted Qt objects and aborts."""
    with contextlib.suppress(Exception):
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(JOIN_TIMEOUT_MS)


def _on_close(viewer, callback):
    """Call ``callback()`` when the viewer's window gets its close event (before napari
    tears the window down). Returns the event filter (keep a reference)."""
    try:
        from qtpy.QtCore import QEvent, QObject

        # a widget opened from napari's plugin menu gets the viewer behind a public-only
        # proxy, which wraps the window too: Qt needs the window itself
        viewer = getattr(viewer, "__wrapped__", viewer)
        window = _layers.napari_private(viewer.window, "_qt_window")
        window = getattr(window, "__wrapped__", window)
    except Exception:  # noqa: BLE001 - a headless viewer has no window
        return None

    class _CloseFilter(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Close:
                with contextlib.suppress(Exception):
                    callback()
            return False

    f = _CloseFilter(window)
    window.installEventFilter(f)
    return f


def _install_quit_hooks() -> None:
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_flush_all)
    try:
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(_flush_all)
    except Exception:  # noqa: BLE001
        pass
