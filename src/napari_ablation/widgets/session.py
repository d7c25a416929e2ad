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
  hides them (they are not drawn over pre or the registered post).
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
from ..model import ANALYSIS_INPUTS, CaseModel, run_analysis
from . import _layers

AUTOSAVE_DELAY_MS = 1000
ANALYSIS_DEBOUNCE_MS = 400
_SESSIONS: weakref.WeakKeyDictionary[Any, CaseSession] = weakref.WeakKeyDictionary()
_ALL: weakref.WeakSet[CaseSession] = weakref.WeakSet()
_MANIFEST_ITEMS = ("transform", "landmarks", "settings", "qa")


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
    """The arrays the layers of ``case`` need (copies made here, on any thread): images
    and labels as (z, y, x) arrays. Pass the result to :meth:`CaseSession.set_case`."""
    from ..model import label_arrays_of

    images = {
        r: sitk.GetArrayFromImage(getattr(case, r))
        for r in ("pre", "post")
        if getattr(case, r) is not None
    }
    return {"images": images, "labels": label_arrays_of(case)}


def _qtimer(interval_ms: int, callback):
    from qtpy.QtCore import QTimer

    t = QTimer()
    t.setSingleShot(True)
    t.setInterval(interval_ms)
    t.timeout.connect(callback)
    return t


class AnalysisRunner:
    """Keeps the model's margin analysis current: background runs, one at a time, debounced.

    Off until the first :meth:`request` (the user's first "Compute margins"); from then on
    every change of an analysis input (labels, transform, settings) schedules a rerun.
    """

    def __init__(self, session: CaseSession):
        self._session_ref = weakref.ref(session)
        self.live = False
        self.worker = None
        self.error: str | None = None
        self._again = False
        ref = weakref.ref(self)
        self._timer = _qtimer(
            ANALYSIS_DEBOUNCE_MS, lambda _r=ref: _r() is not None and _r()._start()
        )
        session.model.changed.connect(self._on_model_changed)

    @property
    def model(self) -> CaseModel:
        return self._session_ref().model

    @property
    def running(self) -> bool:
        return self.worker is not None

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

    def _on_model_changed(self, what: str) -> None:
        if what == "case":
            self.live = False
            self.error = None
            self._timer.stop()
            return
        if self.live and what in ANALYSIS_INPUTS and not self.model.analysis_current:
            self._timer.start()

    def _start(self) -> None:
        session = self._session_ref()
        if session is None:
            return
        if self.worker is not None:
            self._again = True
            return
        model = self.model
        if model.analysis_current:
            return
        try:
            req = model.analysis_request()
        except AblationError as exc:
            self._failed(one_line(exc))
            return
        self.error = None
        ref = weakref.ref(self)

        def returned(analysis, _r=ref):
            r = _r()
            if r is not None:
                r.error = None
                r.model.set_analysis(analysis)

        def failed(message, _r=ref):
            r = _r()
            if r is not None:
                r._failed(message)

        def finished(_r=ref):
            r = _r()
            if r is None:
                return
            r.worker = None
            again, r._again = r._again, False
            if r.live and (again or not r.model.analysis_current) and r.error is None:
                r._timer.start()
            session = r._session_ref()
            if session is not None:
                session.changed.emit("analysis")

        self.worker = _layers.start_worker(
            lambda: run_analysis(req),
            on_returned=returned,
            on_error=failed,
            on_finished=finished,
            desc="margin analysis",
        )
        session.changed.emit("analysis")

    def _failed(self, message: str) -> None:
        self.error = message
        _layers.notify_error(message)
        session = self._session_ref()
        if session is not None:
            session.changed.emit("analysis")


class IntervalRunner:
    """Keeps the MTM interval of the model's analysis current: after every new analysis (and
    after a change of the registration's error sources, e.g. the landmarks) it is computed
    in the background, one run at a time; meanwhile the model says it is not current."""

    def __init__(self, session: CaseSession):
        self._session_ref = weakref.ref(session)
        self.worker = None
        self.error: str | None = None
        self._again = False
        session.model.changed.connect(self._on_model_changed)

    @property
    def model(self) -> CaseModel:
        return self._session_ref().model

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _on_model_changed(self, what: str) -> None:
        if what == "case":
            self.error = None
            return
        if what in ("analysis", "landmarks", "transform") and self.model.analysis_current:
            self.request()

    def request(self) -> None:
        """Compute the interval of the current analysis unless it is current already."""
        session = self._session_ref()
        if session is None:
            return
        if self.worker is not None:
            self._again = True
            return
        model = self.model
        if model.interval_current or not model.analysis_current:
            return
        try:
            req = model.interval_request()
        except AblationError as exc:
            self._failed(one_line(exc))
            return
        self.error = None
        ref = weakref.ref(self)

        def returned(interval, _r=ref):
            r = _r()
            if r is not None:
                r.model.set_interval(interval)

        def failed(message, _r=ref):
            r = _r()
            if r is not None:
                r._failed(message)

        def finished(_r=ref):
            r = _r()
            if r is None:
                return
            r.worker = None
            again, r._again = r._again, False
            if (again or not r.model.interval_current) and r.error is None:
                r.request()
            session = r._session_ref()
            if session is not None:
                session.changed.emit("interval")

        from ..model import run_interval

        self.worker = _layers.start_worker(
            lambda: run_interval(req),
            on_returned=returned,
            on_error=failed,
            on_finished=finished,
            desc="MTM interval",
        )
        session.changed.emit("interval")

    def _failed(self, message: str) -> None:
        self.error = message
        _layers.notify_error(message)
        session = self._session_ref()
        if session is not None:
            session.changed.emit("interval")


class CaseSession:
    """Per-viewer binding of layers to the case model (see module docstring)."""

    #: what changed: "case", an item of the model ("pre", "tumor", "transform", "qa", ...),
    #: "analysis", "interval", "saved", "folder"
    changed = Signal(str)

    def __init__(self, viewer):
        self._viewer_ref = weakref.ref(viewer)
        self.model = CaseModel()
        self._bound: dict[str, Any] = {}  # role -> the Labels layer bound to the model
        self._wrapped: set[int] = set()
        self._pending_writes = 0
        self._guards: list = []
        self._loading = False
        self._user_edited = False  # an edit since the case was opened (a folder is made for it)
        ref = weakref.ref(self)
        self._autosave_timer = _qtimer(
            AUTOSAVE_DELAY_MS, lambda _r=ref: _r() is not None and _r().autosave()
        )
        self.model.changed.connect(self._on_model_changed)
        self.model.labels_changed.connect(self._on_labels_changed)
        self.analysis = AnalysisRunner(self)
        self.interval = IntervalRunner(self)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        for layer in viewer.layers:
            self._adopt(layer)
        from . import orientation

        orientation.install(viewer)  # radiological 2D views with R/L, A/P, S/I letters
        _ALL.add(self)
        _install_quit_hooks()

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
            qa=m.qa,
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
        """Flush pending edits when ``widget`` (a plugin dock widget) is destroyed."""
        ref = weakref.ref(self)

        def _flush(*_args, _ref=ref):
            s = _ref()
            if s is not None:
                s.flush()

        widget.destroyed.connect(_flush)
        self._guards.append(_flush)

    # ------------------------------------------------------------------ case
    def set_case(
        self,
        case: Case,
        folder: str | os.PathLike | None,
        *,
        show: bool = True,
        save_images: bool = True,
        prepared: dict | None = None,
    ) -> None:
        """Make ``case`` current (flushing the previous one) and show its layers.

        ``save_images=False`` says that ``folder`` already holds ``case`` exactly;
        ``prepared`` (from :func:`prepare_display`, made off the GUI thread) saves copying
        the volumes here.
        """
        self.flush()
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
            if show and self.viewer is not None:
                self.show_case(images=prepared.get("images"))
        finally:
            self._loading = False
        if self.model.folder is not None and self.model.unsaved_items():
            self.autosave()  # e.g. the new, empty label layers of a case without labels

    def show_case(self, *, side_by_side: bool = True, images: dict | None = None) -> None:
        """Add (or refresh) the case's layers: pre with its tumor labels and post with its
        ablation labels, side by side in a 1 x 2 grid (napari's grid button switches to an
        overlay), centred on the tumor. The only place that selects a layer: the tumor
        labels, once, when a case is opened."""
        viewer = self.viewer
        m = self.model
        modality = m.info.get("modality", "")
        added = []
        for role in ("pre", "tumor", "post", "ablation"):
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
                layer = _layers.add_or_update_image(
                    viewer,
                    img,
                    role,
                    metadata=meta,
                    array=(images or {}).get(role),
                    modality=meta[_layers.META]["modality"],
                    colormap="gray",
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
                    }
                }
                # the layer holds the model's own array: no copy, one truth
                layer = _layers.add_or_update_labels(
                    viewer,
                    grid,
                    role,
                    color=color,
                    opacity=0.5,
                    metadata=meta,
                    array=m.labels(role),
                )
                self.bind_labels(layer)
            added.append(layer)
        # keep the pairs together from the bottom: pre, tumor | post, ablation
        for i, layer in enumerate(added):
            viewer.layers.move(viewer.layers.index(layer), i)
        if side_by_side and len(added) == 4 and len(viewer.layers) == 4:
            g = _layers.grid(viewer)
            g.stride = 2
            g.shape = (1, 2)
            g.enabled = True
        post, abl = _layers.find_layer(viewer, "post"), _layers.find_layer(viewer, "ablation")
        if post is not None and abl is not None:
            abl.visible = post.visible
        if added:
            viewer.layers.selection.active = added[1] if len(added) > 1 else added[0]
        self.center_on_tumor()

    def center_on_tumor(self) -> bool:
        """Centre the view on the tumor labels (or the ablation zone) when there are any."""
        for role in ("tumor", "ablation"):
            layer = _layers.find_layer(self.viewer, role)
            if layer is None:
                continue
            idx = np.argwhere(np.asarray(layer.data) != 0)
            if len(idx) == 0:
                continue
            centre = idx.mean(axis=0)
            world = np.asarray(layer.data_to_world(centre))
            extent = (idx.max(axis=0) - idx.min(axis=0) + 1) * np.asarray(layer.scale)
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
    def _on_layer_inserted(self, event) -> None:
        self._adopt(event.value)

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        for role, bound in list(self._bound.items()):
            if bound is layer:
                del self._bound[role]

    def _adopt(self, layer) -> None:
        """Take a layer with a role into the model: pre/post images that arrive without a
        case (File > Open Sample, drag and drop), tumor/ablation labels, and the post image's
        link to the ablation labels' visibility."""
        role = _layers.role_of(layer)
        if role in LABEL_ROLES:
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

    def _post_visibility_changed(self, event=None) -> None:
        post = _layers.find_layer(self.viewer, "post")
        abl = self._bound.get("ablation")
        if post is not None and abl is not None and abl.visible != post.visible:
            abl.visible = post.visible

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

    def use_labels_layer(self, layer, role: str) -> None:
        """The user's choice: ``layer`` holds the ``role`` labels from now on (the layer that
        held them keeps its data under the role ``<role>_previous``).

        Raises
        ------
        AblationError
            When the layer is not on the grid of the role's image.
        """
        if role not in LABEL_ROLES:
            raise AblationError(f"unknown label role '{role}' (use tumor or ablation)")
        if self._bound.get(role) is layer:
            return
        grid = self.model.image(GRID_OF[role])
        shape = tuple(np.asarray(layer.data).shape)
        if grid is not None and shape != tuple(grid.GetSize()[::-1]):
            raise AblationError(
                f"'{layer.name}' is not on the {GRID_OF[role]} image grid: "
                f"the {role} is drawn on {GRID_OF[role]}"
            )
        other = self._bound.get(role)
        if other is not None:
            meta = dict(other.metadata)
            meta[_layers.META] = {**(meta.get(_layers.META) or {}), "role": f"{role}_previous"}
            other.metadata = meta
        meta = dict(layer.metadata)
        meta[_layers.META] = {
            **(meta.get(_layers.META) or {}),
            "role": role,
            "drawn_on": GRID_OF[role],
        }
        layer.metadata = meta
        self.bind_labels(layer, source="bulk")

    def bind_labels(self, layer, source: str = "layer") -> None:
        """Make ``layer`` (role tumor or ablation) the model's labels of its role: it shares
        its array with the model, and every edit, undo and redo of it reaches the model."""
        role = _layers.role_of(layer)
        if role not in LABEL_ROLES:
            return
        self._bound[role] = layer
        self._share(role, layer, source)
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
