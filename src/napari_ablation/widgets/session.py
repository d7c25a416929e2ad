"""The case shared by the plugin's widgets in one viewer, and its autosave.

One :class:`CaseSession` per viewer (``CaseSession.of(viewer)``). It holds the core
:class:`~napari_ablation.core.case.Case`, the case folder on disk, and keeps the case in
step with the viewer's label layers:

* every paint / fill / bulk edit of the tumor or ablation layer schedules an autosave
  (debounced, ``AUTOSAVE_DELAY_MS``); the labels are written atomically into the case
  folder, so a crash loses at most the last second of work;
* closing the viewer (any of the plugin's dock widgets being destroyed), quitting the
  application or the interpreter flushes pending edits first;
* transform, landmarks, QA verdict and settings are written to the case folder as soon as
  they change.

When a case is created from raw files it gets a case folder under
:func:`default_cases_root` (the sample cases too, so the bundled data is never
modified); reopening that folder restores every layer.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from psygnal import Signal

from ..core import geometry
from ..core.case import GRID_OF, LABEL_ROLES, Case
from ..core.errors import AblationError, one_line
from . import _layers

AUTOSAVE_DELAY_MS = 1000
_SESSIONS: "weakref.WeakKeyDictionary[Any, CaseSession]" = weakref.WeakKeyDictionary()
_ALL: "weakref.WeakSet[CaseSession]" = weakref.WeakSet()


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


class CaseSession:
    """Per-viewer case state shared by the widgets (see module docstring)."""

    #: emitted with what changed: "case", "images", "labels", "transform", "landmarks",
    #: "qa", "settings", "saved"
    changed = Signal(str)

    def __init__(self, viewer):
        self._viewer_ref = weakref.ref(viewer)
        self.case = Case()
        self.folder: Path | None = None
        self.last_error: str | None = None
        self._dirty: set[str] = set()
        self._lock = threading.Lock()  # one writer at a time
        self._save_seq = 0
        self._written_seq: dict[str, int] = {}
        self._pending_writes = 0
        self._watched: dict[int, str] = {}
        #: the label layers being edited, by role (kept so that a flush while the viewer
        #: closes, after napari has emptied its layer list, still sees the data)
        self._label_layers: dict[str, Any] = {}
        self._timer = None
        self._guards: list = []
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        for layer in viewer.layers:
            self._adopt(layer)
            self.watch(layer)
        _ALL.add(self)
        _install_quit_hooks()

    # ------------------------------------------------------------------ access
    @classmethod
    def of(cls, viewer) -> "CaseSession":
        session = _SESSIONS.get(viewer)
        if session is None:
            session = cls(viewer)
            _SESSIONS[viewer] = session
        return session

    @property
    def viewer(self):
        return self._viewer_ref()

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
    def set_case(self, case: Case, folder: str | os.PathLike | None, *, show: bool = True,
                 save_images: bool = True) -> None:
        """Make ``case`` current (flushing the previous one) and show its layers."""
        self.flush()
        self.case = case
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None and save_images:
            self.case.save(self.folder)
        if show and self.viewer is not None:
            self.show_case()
        self.changed.emit("case")

    def show_case(self, *, side_by_side: bool = True) -> None:
        """Add (or refresh) the case's layers: pre with its tumor labels and post with its
        ablation labels, side by side in a 1 x 2 grid (napari's grid button switches to an
        overlay), centred on the tumor."""
        viewer = self.viewer
        case = self.case
        modality = case.info.get("modality", "")
        added = []
        for role in ("pre", "tumor", "post", "ablation"):
            if role in ("pre", "post"):
                img = getattr(case, role)
                if img is None:
                    continue
                meta = {_layers.META: {"modality": case.info.get(f"{role}_modality") or modality,
                                       "case_folder": str(self.folder) if self.folder else "",
                                       "original_geometry": case.info.get(f"{role}_original_geometry"),
                                       "source": case.info.get(f"{role}_source", "")}}
                layer = _layers.add_or_update_image(viewer, img, role, metadata=meta,
                                                    modality=meta[_layers.META]["modality"], colormap="gray")
            else:
                lab = getattr(case, role)
                if lab is None and getattr(case, GRID_OF[role]) is not None:
                    lab = case.empty_labels(role)
                if lab is None:
                    continue
                color = _layers.TUMOR_COLOR if role == "tumor" else _layers.ABLATION_COLOR
                meta = {_layers.META: {"original_geometry": case.info.get(f"{GRID_OF[role]}_original_geometry"),
                                       "drawn_on": GRID_OF[role]}}
                layer = _layers.add_or_update_labels(viewer, lab, role, color=color, opacity=0.5, metadata=meta)
                self.watch(layer)
            added.append(layer)
        # keep the pairs together from the bottom: pre, tumor | post, ablation
        for i, layer in enumerate(added):
            viewer.layers.move(viewer.layers.index(layer), i)
        if side_by_side and len(added) == 4 and len(viewer.layers) == 4:
            g = _layers.grid(viewer)
            g.stride = 2
            g.shape = (1, 2)
            g.enabled = True
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
            _layers.camera(self.viewer).zoom *= max(1.0, scene / (4.0 * max(float(extent.max()), 10.0)))
            return True
        return False

    # ------------------------------------------------------------------ labels
    def _on_layer_inserted(self, event) -> None:
        self._adopt(event.value)
        self.watch(event.value)

    def _adopt(self, layer) -> None:
        """Take pre/post images that arrive without a case (File > Open Sample, drag and
        drop of files with roles) into the case, so that their labels autosave too."""
        role = _layers.role_of(layer)
        if role not in ("pre", "post") or getattr(self.case, role) is not None:
            return
        try:
            img = _layers.image_from_layer(layer)
        except AblationError:
            return
        setattr(self.case, role, img)
        meta = _layers.layer_meta(layer)
        if "name" not in self.case.info:
            source = meta.get("case_folder") or meta.get("source") or layer.name
            self.case.info["name"] = Path(str(source).rstrip("/\\")).name.split(".")[0] or "case"
        if meta.get("modality"):
            self.case.info.setdefault("modality", meta["modality"])

    def watch(self, layer) -> None:
        """Autosave the edits of ``layer`` when it has the tumor or ablation role."""
        role = _layers.role_of(layer)
        if role not in LABEL_ROLES or id(layer) in self._watched:
            return
        self._watched[id(layer)] = role
        self._label_layers[role] = layer
        ref = weakref.ref(self)

        def _changed(_event=None, _role=role, _ref=ref):
            s = _ref()
            if s is not None:
                s.labels_changed(_role)

        for name in ("labels_update", "paint", "data"):
            ev = getattr(layer.events, name, None)
            if ev is not None:
                ev.connect(_changed)

    def labels_changed(self, role: str) -> None:
        """Note that the ``role`` labels were edited; autosave soon."""
        if role not in LABEL_ROLES:
            return
        self._dirty.add(role)
        self._schedule()

    def _schedule(self) -> None:
        try:
            from qtpy.QtCore import QTimer
        except Exception:  # noqa: BLE001 - no Qt: save right away
            self.autosave()
            return
        if self._timer is None:
            self._timer = QTimer()
            self._timer.setSingleShot(True)
            self._timer.setInterval(AUTOSAVE_DELAY_MS)
            ref = weakref.ref(self)
            self._timer.timeout.connect(lambda _ref=ref: _ref() is not None and _ref().autosave())
        self._timer.start()

    def label_arrays(self, roles=LABEL_ROLES) -> dict[str, tuple]:
        """One copy of each label layer's data with its grid (cheap: GUI thread)."""
        viewer = self.viewer
        out = {}
        for role in roles:
            layer = _layers.find_layer(viewer, role) if viewer is not None else None
            if layer is None:
                layer = self._label_layers.get(role)
            if layer is None:
                continue
            data = np.asarray(layer.data)
            if data.ndim != 3:
                raise AblationError(f"layer '{layer.name}' is {data.ndim}D; a 3D volume is needed")
            arr = data.copy() if data.dtype == np.uint8 else np.clip(data, 0, 255).astype(np.uint8)
            out[role] = (arr, tuple(layer.scale), tuple(layer.translate))
        return out

    def _label_images(self, arrays: dict[str, tuple]) -> dict[str, sitk.Image]:
        """SimpleITK images of :meth:`label_arrays` on the grid of their image (any thread)."""
        images = {}
        for role, (arr, scale, translate) in arrays.items():
            ref = getattr(self.case, GRID_OF[role])
            if ref is not None and arr.shape == tuple(ref.GetSize()[::-1]):
                images[role] = geometry.like(arr, ref)
            else:
                images[role] = geometry.image_from_array(arr, scale, translate)
        return images

    def sync_labels_from_layers(self, roles=LABEL_ROLES) -> None:
        """Copy the label layers' data into the case (on the grid of their image)."""
        for role, img in self._label_images(self.label_arrays(roles)).items():
            setattr(self.case, role, img)

    def autosave(self, *, background: bool = True) -> bool:
        """Save the edited labels into the case folder. Returns True when a save started.

        The labels are copied on the GUI thread (tens of ms even for 512 x 512 x 300) and
        written in a background thread, so painting never waits for the disk. Each
        structure's writes are numbered: a slower, older write never replaces a newer one.
        ``background=False`` writes before returning (closing, quitting).
        """
        if self._timer is not None:
            self._timer.stop()
        roles = tuple(sorted(self._dirty))
        if not roles:
            return False
        try:
            arrays = self.label_arrays(roles)  # one copy of the data, taken now
        except Exception as exc:  # noqa: BLE001 - never lose the GUI over a failed save
            self._save_failed(roles, one_line(exc))
            return False
        self._dirty.difference_update(roles)
        if self.folder is None:  # the first save creates the folder with the images: at once
            self.folder = new_case_folder(self.case.info.get("name", "case"))
            background = False
            only = None
        else:
            only = roles
        folder = self.folder
        self._save_seq += 1
        seq = self._save_seq

        def write():
            self._write(self._label_images(arrays), folder, only, roles, seq)

        if background and _qt_app() is not None:
            self._pending_writes += 1
            _layers.start_worker(write, on_returned=lambda _r: self._write_done(roles, None),
                                 on_error=lambda msg: self._write_done(roles, msg))
            return True
        try:
            write()
        except Exception as exc:  # noqa: BLE001
            self._save_failed(roles, one_line(exc))
            return False
        self.last_error = None
        self.changed.emit("saved")
        return True

    def _write(self, images: dict[str, sitk.Image], folder: Path, only, roles, seq: int) -> None:
        """Write snapshot labels (any thread) with the case's *current* transform,
        landmarks, QA and settings; skip structures a newer snapshot already wrote."""
        with self._lock:
            fresh = tuple(r for r in roles if r in images and seq > self._written_seq.get(r, 0))
            if only is not None and not fresh:
                return
            for r in fresh:
                setattr(self.case, r, images[r])
            merged = self.case.copy()  # what changed meanwhile (transform, QA, ...) is kept
            merged.save(folder, only=None if only is None else fresh)
            for r in fresh:
                self._written_seq[r] = seq

    def _write_done(self, roles, error: str | None) -> None:
        self._pending_writes = max(0, self._pending_writes - 1)
        if error:
            self._save_failed(roles, error)
            return
        self.last_error = None
        self.changed.emit("saved")

    def _save_failed(self, roles, message: str) -> None:
        self._dirty.update(roles)  # tried again at the next edit or flush
        self.last_error = f"autosave failed: {message}"
        try:
            _layers.notify_warning(self.last_error)
        except Exception:  # noqa: BLE001
            pass
        self.changed.emit("saved")

    def flush(self) -> None:
        """Save pending label edits before returning (viewer closing, app quitting)."""
        if self._dirty:
            self.autosave(background=False)

    @property
    def has_unsaved_changes(self) -> bool:
        """Edits not yet on disk (waiting for the debounce, or being written)."""
        return bool(self._dirty) or self._pending_writes > 0

    # ------------------------------------------------------------------ other state
    def _save_manifest(self, what: str) -> None:
        if self.folder is not None:
            try:
                with self._lock:
                    self.case.save(self.folder, only=())
            except Exception as exc:  # noqa: BLE001
                self.last_error = f"could not save the case: {one_line(exc)}"
                _layers.notify_warning(self.last_error)
        self.changed.emit(what)

    def set_transform(self, tx: sitk.Transform | None) -> None:
        from ..core import transform as tfm

        self.case.transform = None if tx is None else tfm.as_euler(tx)
        self._save_manifest("transform")

    def set_landmarks(self, landmarks: dict[str, list[dict[str, Any]]]) -> None:
        self.case.landmarks = {"pre": list(landmarks.get("pre", [])), "post": list(landmarks.get("post", []))}
        self._save_manifest("landmarks")

    def set_qa(self, verdict: str, comment: str = "") -> None:
        from datetime import datetime, timezone

        from ..core.case import QA_VERDICTS

        if verdict not in QA_VERDICTS:
            raise AblationError(f"QA verdict must be one of: {', '.join(QA_VERDICTS)}")
        self.case.qa = {"verdict": verdict, "comment": comment,
                        "reviewed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._save_manifest("qa")

    def update_settings(self, **kw) -> None:
        self.case.settings = {**self.case.settings, **kw}  # replaced, not mutated: writers may be copying it
        self._save_manifest("settings")

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Save the whole case (to ``folder``, which becomes the case folder)."""
        if folder is not None:
            self.folder = Path(folder)
        if self.folder is None:
            self.folder = new_case_folder(self.case.info.get("name", "case"))
        self.sync_labels_from_layers()
        self._save_seq += 1
        with self._lock:
            self.case.save(self.folder)
            for role in LABEL_ROLES:
                self._written_seq[role] = self._save_seq
        self._dirty.clear()
        self.changed.emit("saved")
        return self.folder


_HOOKS_INSTALLED = False


def _qt_app():
    try:
        from qtpy.QtWidgets import QApplication
    except Exception:  # noqa: BLE001
        return None
    return QApplication.instance()


def _flush_all() -> None:
    for s in list(_ALL):
        try:
            s.flush()
        except Exception:  # noqa: BLE001
            pass


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
