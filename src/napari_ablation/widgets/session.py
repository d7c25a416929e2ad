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
        self._lock = threading.Lock()
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

    def sync_labels_from_layers(self, roles=LABEL_ROLES) -> None:
        """Copy the label layers' data into the case (on the grid of their image)."""
        viewer = self.viewer
        for role in roles:
            layer = _layers.find_layer(viewer, role) if viewer is not None else None
            if layer is None:
                layer = self._label_layers.get(role)
            if layer is None:
                continue
            ref = getattr(self.case, GRID_OF[role])
            data = np.asarray(layer.data)
            if ref is not None and data.shape == tuple(ref.GetSize()[::-1]):
                img = geometry.like(np.clip(data, 0, 255).astype(np.uint8), ref)
            else:
                img = _layers.image_from_layer(layer, dtype=np.uint8)
            setattr(self.case, role, img)

    def autosave(self) -> bool:
        """Write the edited labels into the case folder now. Returns True when saved."""
        if self._timer is not None:
            self._timer.stop()
        with self._lock:
            roles = tuple(sorted(self._dirty))
            if not roles:
                return False
            try:
                self.sync_labels_from_layers(roles)
                if self.folder is None:
                    self.folder = new_case_folder(self.case.info.get("name", "case"))
                    self.case.save(self.folder)
                else:
                    self.case.save(self.folder, only=roles)
            except Exception as exc:  # noqa: BLE001 - never lose the GUI over a failed save
                self.last_error = f"autosave failed: {one_line(exc)}"
                try:
                    _layers.notify_warning(self.last_error)
                except Exception:  # noqa: BLE001
                    pass
                return False
            self._dirty.difference_update(roles)
            self.last_error = None
        self.changed.emit("saved")
        return True

    def flush(self) -> None:
        """Save pending label edits synchronously (viewer closing, app quitting)."""
        if self._dirty:
            self.autosave()

    @property
    def has_unsaved_changes(self) -> bool:
        return bool(self._dirty)

    # ------------------------------------------------------------------ other state
    def _save_manifest(self, what: str) -> None:
        if self.folder is not None:
            try:
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
        self.case.settings.update(kw)
        self._save_manifest("settings")

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Save the whole case (to ``folder``, which becomes the case folder)."""
        if folder is not None:
            self.folder = Path(folder)
        if self.folder is None:
            self.folder = new_case_folder(self.case.info.get("name", "case"))
        self.sync_labels_from_layers()
        self.case.save(self.folder)
        self._dirty.clear()
        self.changed.emit("saved")
        return self.folder


_HOOKS_INSTALLED = False


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
