"""Register widget: rigid registration of post to pre, automatic, manual and by landmarks.

* Automatic: ``core.registration.register_rigid`` in a worker thread (progress, Cancel),
  local to the tumor, leaving the ablation zone out of the metric, started from the
  current transform.
* The result is shown as post **resampled onto the pre grid** (layer role
  ``post_registered``), never as a rotated layer.
* Manual: translation (mm) and rotation (degrees, about the tumor centre) with sliders,
  spin boxes and keys; while a value changes only a box around the tumor is resampled
  (the live path), the whole volume follows when the value settles.
* Landmarks: one Points layer on pre and one on post, pairs labelled and coloured alike,
  a residual table and Fitzpatrick's predicted error at the tumor.
* QA views (``widgets/qa.py``) and the QA verdict.

Every accepted transform goes onto an undo stack and into the case (``CaseSession``).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core import geometry
from ..core import landmarks as lm
from ..core import registration as reg
from ..core import transform as tfm
from ..core.errors import AblationError, one_line
from . import _layers

from .session import CaseSession

#: half size (mm) of the box around the tumor resampled live while adjusting
LIVE_HALF_SIZE_MM = 30.0
#: layer name/role of the user's region-of-interest box
BOX_ROLE = "registration box"
#: delay (ms) after the last change before the whole volume is resampled
SETTLE_MS = 250
PAIR_COLORS = [
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
]
MANUAL = (("tx", "x (L) mm", 20.0, 0.1), ("ty", "y (P) mm", 20.0, 0.1), ("tz", "z (S) mm", 20.0, 0.1),
          ("rx", "about x (deg)", 15.0, 0.1), ("ry", "about y (deg)", 15.0, 0.1), ("rz", "about z (deg)", 15.0, 0.1))


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued connection)."""

    progress = Signal(float, str)


def pair_color(label: str) -> str:
    try:
        k = int(float(label)) - 1
    except ValueError:
        k = sum(map(ord, label))
    return PAIR_COLORS[k % len(PAIR_COLORS)]


class _ManualRow:
    """A slider and a spin box for one manual parameter."""

    def __init__(self, key, title, limit, step, on_change, on_release):
        self.key = key
        self.label = QLabel(title)
        self.spin = QDoubleSpinBox()
        self.spin.setRange(-limit, limit)
        self.spin.setSingleStep(step * 5)
        self.spin.setDecimals(1)
        self.spin.setKeyboardTracking(False)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(round(-limit / step), round(limit / step))
        self.step = step
        self._busy = False

        def from_slider(v):
            if self._busy:
                return
            self._busy = True
            self.spin.setValue(v * step)
            self._busy = False
            on_change()

        def from_spin(v):
            if self._busy:
                return
            self._busy = True
            self.slider.setValue(round(v / step))
            self._busy = False
            on_change()

        self.slider.valueChanged.connect(from_slider)
        self.spin.valueChanged.connect(from_spin)
        self.slider.sliderReleased.connect(on_release)

    def value(self) -> float:
        return float(self.spin.value())

    def set_value(self, v: float) -> None:
        self._busy = True
        self.spin.setValue(v)
        self.slider.setValue(round(v / self.step))
        self._busy = False


class RegisterWidget(QWidget):
    """Rigid registration of post onto pre, with QA views (see module docstring)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = CaseSession.of(napari_viewer)
        self.session.attach_widget(self)
        # state: transform = adjust(base, manual values); undo entries are (base, values)
        self.base: sitk.Euler3DTransform = sitk.Euler3DTransform()
        self._committed_vals: tuple = (0.0,) * 6
        # undo entries: (base transform, manual values, rotation centre of the manual values)
        self._undo: list[tuple[sitk.Euler3DTransform, tuple, object]] = []
        self._manual_center = None  # fixed while the manual values apply to one base
        self._cache: dict = {}
        self._cancel = False
        self._worker = None
        self._resample_worker = None
        self._generation = 0
        self._landmark_order: list[tuple[str, str]] = []  # (layer role, pair) in click order
        self._point_counts: dict[str, int] = {}
        self._lm_sync = False
        self.last_fit: lm.LandmarkFit | None = None
        self.last_result: reg.RegistrationResult | None = None
        self.live_timings_ms: list[float] = []
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._pbar = None
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._commit_manual)
        self._build_ui()
        self._bind_keys()
        from .qa import QAPanel

        self.qa = QAPanel(self)
        self.tabs.addTab(self.qa, "QA")
        if self.session is not None:
            _layers.connect_while_alive(self.session.changed, self, self._on_session_changed)
            if self.session.case.transform is not None:
                self.base = tfm.as_euler(self.session.case.transform)
            if _layers.find_layer(self.viewer, "landmarks_pre") is None:
                self._load_landmarks_from_case()  # landmarks saved in the case come back
        self._show_transform()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.tabs = QTabWidget()
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)

        # automatic
        auto = QWidget()
        form = QFormLayout(auto)
        self.roi_radius = QDoubleSpinBox()
        self.roi_radius.setRange(10, 300)
        self.roi_radius.setValue(reg.DEFAULT_ROI_RADIUS_MM)
        self.roi_radius.setSuffix(" mm")
        self.roi_radius.setToolTip("The metric uses a ball of this radius around the tumor (enlarged to hold the tumor)")
        form.addRow("Region around tumor", self.roi_radius)
        self.whole_image = QCheckBox("whole image (no region)")
        form.addRow("", self.whole_image)
        self.box_btn = QPushButton("Draw a region box…")
        self.box_btn.setToolTip(
            "Draw a rectangle on an axial slice (layer 'registration box'): the region is that rectangle, "
            "+- the region radius across slices. Delete the layer to go back to the tumor region."
        )
        form.addRow("", self.box_btn)
        self.exclude_ablation = QCheckBox("leave the ablation zone out of the metric")
        self.exclude_ablation.setChecked(True)
        form.addRow("", self.exclude_ablation)
        self.run_btn = QPushButton("Register automatically")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        form.addRow(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        form.addRow(self.progress)
        self.show_btn = QPushButton("Show registered post")
        self.undo_btn = QPushButton("Undo")
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("Back to the identity (scanner coordinates)")
        row = QHBoxLayout()
        for b in (self.show_btn, self.undo_btn, self.reset_btn):
            row.addWidget(b)
        form.addRow(row)
        self.save_btn = QPushButton("Save .tfm…")
        self.load_btn = QPushButton("Load .tfm…")
        row = QHBoxLayout()
        row.addWidget(self.save_btn)
        row.addWidget(self.load_btn)
        form.addRow(row)
        self.tx_label = QLabel("")
        self.tx_label.setWordWrap(True)
        form.addRow(self.tx_label)
        self.tabs.addTab(auto, "Automatic")

        # manual
        man = QWidget()
        grid = QGridLayout(man)
        self.manual: dict[str, _ManualRow] = {}
        for i, (key, title, limit, step) in enumerate(MANUAL):
            r = _ManualRow(key, title, limit, step, self._on_manual_change, self._commit_manual)
            self.manual[key] = r
            grid.addWidget(r.label, i, 0)
            grid.addWidget(r.slider, i, 1)
            grid.addWidget(r.spin, i, 2)
        self.center_label = QLabel("")
        grid.addWidget(self.center_label, len(MANUAL), 0, 1, 3)
        keys = QLabel(
            "Keys (viewer): Alt+arrows move in the slice plane, Alt+PageUp/PageDown across it, "
            "Alt+, / Alt+. rotate in the slice plane; step 0.5 mm / 0.5 deg."
        )
        keys.setWordWrap(True)
        grid.addWidget(keys, len(MANUAL) + 1, 0, 1, 3)
        self.tabs.addTab(man, "Manual")

        # landmarks
        lmw = QWidget()
        v = QVBoxLayout(lmw)
        row = QHBoxLayout()
        self.lm_add_btn = QPushButton("Landmark layers")
        self.lm_add_btn.setToolTip("Add (or select) the Points layers on pre and on post")
        self.lm_undo_btn = QPushButton("Remove last point")
        self.lm_fit_btn = QPushButton("Fit")
        for b in (self.lm_add_btn, self.lm_undo_btn, self.lm_fit_btn):
            row.addWidget(b)
        v.addLayout(row)
        self.next_label = QLabel("")
        self.next_label.setWordWrap(True)
        v.addWidget(self.next_label)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["pair", "residual (mm)", "status"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        v.addWidget(self.table)
        self.fit_label = QLabel("")
        self.fit_label.setWordWrap(True)
        v.addWidget(self.fit_label)
        self.tabs.addTab(lmw, "Landmarks")

        self.run_btn.clicked.connect(self.run_automatic)
        self.box_btn.clicked.connect(self.draw_box)
        self.cancel_btn.clicked.connect(self.cancel)
        self.show_btn.clicked.connect(lambda: self.update_overlay(full=True))
        self.undo_btn.clicked.connect(self.undo)
        self.reset_btn.clicked.connect(self.reset)
        self.save_btn.clicked.connect(self._save_dialog)
        self.load_btn.clicked.connect(self._load_dialog)
        self.lm_add_btn.clicked.connect(self.landmark_layers)
        self.lm_undo_btn.clicked.connect(self.remove_last_point)
        self.lm_fit_btn.clicked.connect(self.fit_landmarks)

    # ------------------------------------------------------------------ inputs
    def _image(self, role: str) -> sitk.Image | None:
        """SimpleITK image of the layer with ``role`` (cached while its data is unchanged)."""
        layer = _layers.find_layer(self.viewer, role)
        if layer is None:
            return None
        key = (role, id(layer), id(layer.data), tuple(layer.scale), tuple(layer.translate))
        if role in ("tumor", "ablation"):
            self._watch_labels(layer, role)
            key = key + (self._labels_version(layer),)
        hit = self._cache.get(role)
        if hit is not None and hit[0] == key:
            return hit[1]
        if role in ("tumor", "ablation"):
            img = _layers.mask_from_layer(layer)
            if not sitk.GetArrayViewFromImage(img).any():
                img = None
        else:
            img = _layers.image_from_layer(layer)
        self._cache[role] = (key, img)
        return img

    def _watch_labels(self, layer, role: str) -> None:
        """Forget the cached mask (and tumor centre) whenever the labels are edited."""
        watched = self._cache.setdefault("watched", set())
        if id(layer) in watched:
            return
        watched.add(id(layer))

        def forget(_event=None, _role=role):
            self._cache.pop(_role, None)
            if _role == "tumor":
                self._cache.pop("tumor_center", None)

        for name in ("paint", "labels_update", "data"):
            ev = getattr(layer.events, name, None)
            if ev is not None:
                ev.connect(forget)

    @staticmethod
    def _labels_version(layer) -> int:
        data = np.asarray(layer.data)
        return int(np.count_nonzero(data[:: max(1, data.shape[0] // 8)])) if data.size else 0

    def _pre_post(self) -> tuple[sitk.Image, sitk.Image]:
        pre, post = self._image("pre"), self._image("post")
        if pre is None or post is None:
            raise AblationError("load the pre and post images first (Load case)")
        return pre, post

    def tumor_center(self) -> np.ndarray:
        """Tumor centroid (LPS), else the centre of the pre image."""
        tumor = self._image("tumor")
        if tumor is not None:
            hit = self._cache.get("tumor_center")
            if hit is None or hit[0] is not tumor:
                hit = (tumor, reg.mask_centroid_lps(tumor))
                self._cache["tumor_center"] = hit
            return hit[1]
        pre = self._image("pre")
        if pre is not None:
            lo, hi = geometry.physical_bounds(pre)
            return (lo + hi) / 2
        return np.zeros(3)

    # ------------------------------------------------------------------ transform state
    def manual_values(self) -> tuple[float, ...]:
        return tuple(self.manual[k].value() for k, *_ in MANUAL)

    def _set_manual_values(self, values) -> None:
        for (k, *_), v in zip(MANUAL, values):
            self.manual[k].set_value(float(v))

    @property
    def transform(self) -> sitk.Euler3DTransform:
        """The current transform pre -> post (base changed by the manual adjustment)."""
        vals = self.manual_values()
        if not any(vals):
            self._manual_center = None  # the next adjustment rotates about the tumor as it is then
            return self.base
        if self._manual_center is None:
            self._manual_center = self.tumor_center()
        return reg.adjust(self.base, vals[:3], vals[3:], self._manual_center)

    def set_transform(self, tx, *, record: bool = True, show: bool = True) -> None:
        """Make ``tx`` the current transform (undoable), store it in the case, update the overlay."""
        new = tfm.as_euler(tx) if tx is not None else sitk.Euler3DTransform()
        if record:
            self._undo.append((self.base, self.manual_values(), self._manual_center))
        self.base = new
        self._manual_center = None
        self._set_manual_values((0.0,) * 6)
        self._committed_vals = (0.0,) * 6
        self._store()
        self._show_transform()
        if show:
            self.update_overlay(full=True)

    def _store(self) -> None:
        if self.session is not None:
            try:
                self.session.set_transform(self.transform)
            except Exception as exc:  # noqa: BLE001
                _layers.notify_warning(f"could not store the transform in the case: {one_line(exc)}")

    def undo(self) -> None:
        if not self._undo:
            self._status("nothing to undo")
            return
        self.base, vals, self._manual_center = self._undo.pop()
        self._set_manual_values(vals)
        self._committed_vals = tuple(vals)
        self._store()
        self._show_transform()
        self.update_overlay(full=True)

    def reset(self) -> None:
        self.set_transform(None)

    def _show_transform(self) -> None:
        tx = self.transform
        e = tfm.as_euler(tx, center=self.tumor_center())
        rot = tfm.rotation_angle_deg(tx)
        c = e.GetCenter()
        shift = np.asarray(tfm.transform_points(tx, c)[0]) - np.asarray(c)
        self.tx_label.setText(
            f"Current transform (pre -> post): rotation {rot:.2f} deg; the tumor centre moves by "
            f"({shift[0]:.1f}, {shift[1]:.1f}, {shift[2]:.1f}) mm. Undo steps: {len(self._undo)}"
        )
        self.center_label.setText(f"Rotation centre (tumor): ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm LPS")

    def _status(self, text: str) -> None:
        self.status.setText(text)

    def _on_session_changed(self, what: str) -> None:
        if what == "case" and self.session is not None:
            watched = self._cache.get("watched", set())
            self._cache.clear()
            self._cache["watched"] = watched
            for name in ("qa checkerboard", "qa difference", "qa edges", "crosshair"):
                if name in self.viewer.layers:
                    self.viewer.layers.remove(self.viewer.layers[name])
            old = self.registered_layer()
            if old is not None:  # belongs to the previous case
                self.viewer.layers.remove(old)
            self._undo.clear()
            tx = self.session.case.transform
            self.base = tfm.as_euler(tx) if tx is not None else sitk.Euler3DTransform()
            self._manual_center = None
            self._set_manual_values((0.0,) * 6)
            self._committed_vals = (0.0,) * 6
            self._show_transform()
            self._load_landmarks_from_case()

    # ------------------------------------------------------------------ files
    def save_transform(self, path) -> Path:
        try:
            out = tfm.write_transform_atomic(self.transform, path)
        except AblationError as exc:
            _layers.notify_error(exc)
            raise
        self._status(f"saved {Path(path).name}")
        return out

    def load_transform(self, path) -> bool:
        try:
            tx = tfm.read_rigid_transform(path)
        except AblationError as exc:
            _layers.notify_error(exc)
            return False
        self.set_transform(tx)
        self._status(f"loaded {Path(path).name}")
        return True

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save transform", "transform.tfm", "ITK transform (*.tfm)")
        if path:
            try:
                self.save_transform(path)
            except AblationError:
                pass

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load transform", "", "ITK transform (*.tfm *.txt *.h5)")
        if path:
            self.load_transform(path)

    # ------------------------------------------------------------------ automatic
    def run_automatic(self):
        """Start the automatic registration in a worker thread; returns the worker."""
        if self._worker is not None:
            return self._worker
        try:
            pre, post = self._pre_post()
            kw = {
                "tumor_mask": None if self.whole_image.isChecked() else self._image("tumor"),
                "moving_exclude": self._image("ablation") if self.exclude_ablation.isChecked() else None,
                "roi_radius_mm": None if self.whole_image.isChecked() else float(self.roi_radius.value()),
                "initial": self.transform,
            }
            box = None if self.whole_image.isChecked() else self.user_box()
            if box is not None:
                kw["roi_box_lps"] = box
                kw["tumor_mask"] = None
            elif kw["tumor_mask"] is None and not self.whole_image.isChecked():
                # no tumor drawn yet: a ball around the view centre
                kw["roi_center_lps"] = geometry.world_to_lps(np.asarray(self.viewer.dims.point)[-3:])
        except AblationError as exc:
            _layers.notify_error(exc)
            return None
        from napari.qt.threading import thread_worker
        from napari.utils import progress as napari_progress

        self._cancel = False
        relay = self._relay

        @thread_worker
        def work():
            # expected outcomes are returned, not raised, so nothing reaches the event loop
            try:
                return reg.register_rigid(pre, post, progress=relay.progress.emit, cancel=lambda: self._cancel, **kw)
            except Exception as exc:  # noqa: BLE001 - cancel, bad input or an ITK failure: one line
                return ("failed", exc)  # superqt re-raises a returned exception: wrap it

        self._pbar = napari_progress(total=100, desc="rigid registration")
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        worker = work()
        worker.returned.connect(self._on_registered)
        worker.errored.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._status("registering…")
        worker.start()
        return worker

    def draw_box(self):
        """A Shapes layer in rectangle mode for the user's region of interest."""
        layer = _layers.find_layer(self.viewer, BOX_ROLE)
        if layer is None:
            pre_l = _layers.find_layer(self.viewer, "pre")
            kw = {"scale": tuple(pre_l.scale), "translate": tuple(pre_l.translate)} if pre_l is not None else {}
            layer = self.viewer.add_shapes(
                name=BOX_ROLE, ndim=3, edge_color="#ffff00", face_color="transparent", edge_width=1,
                metadata={_layers.META: {"role": BOX_ROLE}}, units=("mm", "mm", "mm"),
                axis_labels=geometry.AXIS_LABELS, **kw,
            )
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        return layer

    def user_box(self):
        """``(lo_lps, hi_lps)`` of the last rectangle drawn in the box layer, or None."""
        layer = _layers.find_layer(self.viewer, BOX_ROLE)
        if layer is None or len(layer.data) == 0:
            return None
        verts = np.asarray(layer.data[-1], dtype=float)[:, -3:]
        world = verts * np.asarray(layer.scale)[-3:] + np.asarray(layer.translate)[-3:]
        lo, hi = world.min(axis=0), world.max(axis=0)
        half = float(self.roi_radius.value())
        for ax in range(3):  # the axis the rectangle was drawn across gets +- the radius
            if hi[ax] - lo[ax] < 1e-6:
                lo[ax] -= half
                hi[ax] += half
        return geometry.world_to_lps(lo), geometry.world_to_lps(hi)

    def cancel(self) -> None:
        self._cancel = True
        self._status("cancelling…")

    def _on_progress(self, fraction: float, text: str) -> None:
        pbar = self._pbar
        if self._worker is None or pbar is None:
            return  # a late, queued report
        self.progress.setValue(round(100 * fraction))
        self.progress.setFormat(f"%p%  {text}")
        n = round(100 * fraction)
        if n > pbar.n:
            pbar.update(n - pbar.n)
        pbar.set_description(f"registration: {text}")

    def _on_registered(self, result) -> None:
        if isinstance(result, tuple):
            self._on_failed(result[1])
            return
        self.last_result = result
        for w in result.warnings:
            _layers.notify_warning(w)
        if result.improved:
            self.set_transform(result.transform)
            self._status("automatic registration: " + result.summary())
        else:
            self._status("automatic registration did not improve; the previous transform is kept")

    def _on_failed(self, exc: BaseException) -> None:
        if isinstance(exc, reg.RegistrationCancelled):
            self._status("registration cancelled; the previous transform is kept")
            _layers.notify_info("registration cancelled")
        else:
            self._status(one_line(exc))
            _layers.notify_error(exc)

    def _on_finished(self) -> None:
        self._worker = None
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setVisible(False)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    # ------------------------------------------------------------------ overlay
    @property
    def busy(self) -> bool:
        return self._worker is not None or self._resample_worker is not None

    def registered_layer(self):
        return _layers.find_layer(self.viewer, "post_registered")

    def update_overlay(self, full: bool = True, *, wait: bool = False) -> None:
        """Show post resampled onto the pre grid through the current transform.

        ``full=False`` (the live path) resamples only a box of +-30 mm around the tumor
        into the existing layer; ``full=True`` resamples the whole pre grid in a worker.
        """
        try:
            pre, post = self._pre_post()
        except AblationError as exc:
            _layers.notify_error(exc)
            return
        tx = self.transform
        layer = self.registered_layer()
        if not full and layer is not None and layer.data.shape == tuple(pre.GetSize()[::-1]):
            t0 = time.perf_counter()
            box = reg.region_box(pre, self.tumor_center(), LIVE_HALF_SIZE_MM)
            if box is not None:
                arr = reg.resample_region(post, pre, tx, box, default=self._post_min(post))
                layer.data[box] = arr.astype(layer.data.dtype, copy=False)
                layer.refresh(thumbnail=False, extent=False, highlight=False)
                self.qa.update_region(box, arr)
            self.live_timings_ms.append(1000 * (time.perf_counter() - t0))
            return
        self._generation += 1
        gen = self._generation
        if wait or post.GetNumberOfPixels() < 2_000_000:
            self._show_registered(gen, reg.registered(post, pre, tx, default=self._post_min(post)))
            return
        holder = {}

        def done(_holder=holder):
            if self._resample_worker is _holder.get("w"):
                self._resample_worker = None

        w = _layers.start_worker(
            lambda: (gen, reg.registered(post, pre, tx, default=self._post_min(post))),
            on_returned=lambda r: self._show_registered(*r),
            on_finished=done,
        )
        holder["w"] = w
        self._resample_worker = w

    def _post_min(self, post: sitk.Image) -> float:
        hit = self._cache.get("post_min")
        if hit is not None and hit[0] == id(post):
            return hit[1]
        v = float(sitk.GetArrayViewFromImage(post).min())
        self._cache["post_min"] = (id(post), v)
        return v

    def _show_registered(self, gen: int, img: sitk.Image) -> None:
        if gen != self._generation:
            return  # a newer request is on its way
        post_layer = _layers.find_layer(self.viewer, "post")
        extra = {}
        if self.registered_layer() is None:
            # registered post lives on the pre grid: overlay it (leave side-by-side mode)
            _layers.grid(self.viewer).enabled = False
            extra = {"colormap": "magenta", "blending": "additive", "opacity": 0.6}
            if post_layer is not None:
                extra["contrast_limits"] = tuple(post_layer.contrast_limits)
                post_layer.visible = False
        meta = {_layers.META: {"transform": tfm.euler_params(self.transform)}}
        _layers.add_or_update_image(self.viewer, img, "post_registered", metadata=meta, **extra)
        self.qa.refresh()

    # ------------------------------------------------------------------ manual
    def _on_manual_change(self) -> None:
        self._show_transform()
        if self.registered_layer() is not None:
            self.update_overlay(full=False)
        self._settle.start()

    def _commit_manual(self) -> None:
        """The value settled: record it (undoable), store it and resample the whole volume."""
        self._settle.stop()
        vals = self.manual_values()
        if vals == self._committed_vals:
            return
        self._undo.append((self.base, self._committed_vals, self._manual_center))
        self._committed_vals = vals
        self._store()
        self._show_transform()
        self.update_overlay(full=True)

    def nudge(self, key: str, delta: float) -> None:
        row = self.manual[key]
        row.spin.setValue(row.value() + delta)

    def _bind_keys(self) -> None:
        self._bound: list[str] = []

        def plane_axes():
            disp = list(self.viewer.dims.displayed)[-2:]  # world axes (z=0, y=1, x=2) on screen: vertical, horizontal
            normal = ({0, 1, 2} - set(disp)).pop() if len(disp) == 2 else 0
            return disp, normal

        lps_key_t = {0: "tz", 1: "ty", 2: "tx"}
        lps_key_r = {0: "rz", 1: "ry", 2: "rx"}

        def make(kind, sign):
            def handler(_viewer):
                disp, normal = plane_axes()
                if kind == "h":
                    self.nudge(lps_key_t[disp[1]], 0.5 * sign)
                elif kind == "v":
                    self.nudge(lps_key_t[disp[0]], 0.5 * sign)
                elif kind == "n":
                    self.nudge(lps_key_t[normal], 0.5 * sign)
                else:
                    self.nudge(lps_key_r[normal], 0.5 * sign)
                self._commit_manual()

            return handler

        bindings = {
            "Alt-Right": ("h", 1), "Alt-Left": ("h", -1), "Alt-Down": ("v", 1), "Alt-Up": ("v", -1),
            "Alt-PageUp": ("n", 1), "Alt-PageDown": ("n", -1), "Alt-.": ("r", 1), "Alt-,": ("r", -1),
        }
        for key, (kind, sign) in bindings.items():
            with contextlib.suppress(Exception):  # keys are a convenience
                self.viewer.bind_key(key, make(kind, sign), overwrite=True)
                self._bound.append(key)

    def closeEvent(self, event):
        self.qa.stop()
        for key in getattr(self, "_bound", []):
            with contextlib.suppress(Exception):
                self.viewer.bind_key(key, None, overwrite=True)
        super().closeEvent(event)

    # ------------------------------------------------------------------ landmarks
    def landmark_layers(self):
        """The pre and post landmark Points layers (created if missing)."""
        layers = []
        for role in ("landmarks_pre", "landmarks_post"):
            layer = _layers.find_layer(self.viewer, role)
            if layer is None:
                layer = self.viewer.add_points(
                    np.empty((0, 3)),
                    name=_layers.ROLES[role],
                    ndim=3,
                    size=6,
                    symbol="disc" if role == "landmarks_pre" else "ring",
                    features={"pair": np.array([], dtype=object)},
                    text={"string": "{pair}", "color": "white", "size": 10, "anchor": "upper_left"},
                    border_color="white",
                    border_width=0.1,
                    metadata={_layers.META: {"role": role}},
                    units=("mm", "mm", "mm"),
                    axis_labels=geometry.AXIS_LABELS,
                    **self._grid_of(role),
                )
                layer.events.data.connect(lambda e, r=role: self._on_points_changed(r, e))
            layers.append(layer)
        if not getattr(self, "_follow_active", False):
            self.viewer.layers.selection.events.active.connect(self._on_active_layer)
            self._follow_active = True
        self._refresh_landmark_ui()
        self.viewer.layers.selection.active = layers[0]
        layers[0].mode = "add"
        return layers

    def _on_active_layer(self, event=None) -> None:
        """Clicking post landmarks needs the raw post image; pre landmarks the pre image."""
        role = _layers.role_of(self.viewer.layers.selection.active)
        if role not in ("landmarks_pre", "landmarks_post"):
            return
        post_l = _layers.find_layer(self.viewer, "post")
        pre_l = _layers.find_layer(self.viewer, "pre")
        reg_l = self.registered_layer()
        on_post = role == "landmarks_post"
        if post_l is not None:
            post_l.visible = on_post
        if reg_l is not None:
            reg_l.visible = not on_post
        if pre_l is not None:
            pre_l.visible = not on_post

    def _grid_of(self, role: str) -> dict:
        """Scale/translate of the image the landmarks are clicked on (keeps the slider steps)."""
        img = _layers.find_layer(self.viewer, "pre" if role == "landmarks_pre" else "post")
        if img is None:
            return {}
        return {"scale": tuple(img.scale), "translate": tuple(img.translate)}

    @staticmethod
    def _to_data(layer, points_lps) -> np.ndarray:
        world = geometry.lps_to_world(np.asarray(points_lps, dtype=float).reshape(-1, 3))
        return ((world - np.asarray(layer.translate)) / np.asarray(layer.scale)).reshape(-1, 3)

    @staticmethod
    def _to_lps(layer) -> np.ndarray:
        data = np.asarray(layer.data, dtype=float).reshape(-1, 3)
        return geometry.world_to_lps(data * np.asarray(layer.scale) + np.asarray(layer.translate))

    def _pairs_of(self, role: str) -> list[str]:
        layer = _layers.find_layer(self.viewer, role)
        if layer is None or len(layer.data) == 0:
            return []
        return [str(v) for v in layer.features["pair"]]

    def next_pair(self, role: str) -> str:
        """The label the next point on ``role`` gets: the oldest pair waiting for a partner, else a new one."""
        mine = self._pairs_of(role)
        other = self._pairs_of("landmarks_post" if role == "landmarks_pre" else "landmarks_pre")
        waiting = [p for p in other if p not in mine]
        if waiting:
            return waiting[0]
        used = [int(p) for p in mine + other if p.isdigit()]
        return str(max(used, default=0) + 1)

    def _on_points_changed(self, role: str, event=None) -> None:
        if self._lm_sync:
            return
        layer = _layers.find_layer(self.viewer, role)
        if layer is None:
            return
        action = getattr(event, "action", None)
        action = getattr(action, "value", action)
        if action not in (None, "added", "removed", "changed"):
            return  # the "adding"/"removing" pre-events
        n = len(layer.data)
        pairs = [str(v) for v in layer.features["pair"]] if n else []
        before = self._point_counts.get(role, 0)
        if n > before or any(p in ("", "nan", "None") for p in pairs):
            # clicked points: napari gives them feature_defaults (the expected pair); make
            # labels unique per layer and remember the click order for "Remove last point"
            fixed, seen = [], set()
            for i, p in enumerate(pairs):
                new_point = i >= before
                if p in ("", "nan", "None") or p in seen:
                    p = self._next_excluding(role, seen)
                seen.add(p)
                fixed.append(p)
                if new_point:
                    self._landmark_order.append((role, p))
            if fixed != pairs:
                self._lm_sync = True
                try:
                    layer.features = {"pair": np.array(fixed, dtype=object)}
                finally:
                    self._lm_sync = False
        self._point_counts[role] = n
        self._refresh_landmark_ui()
        self._save_landmarks()

    def _next_excluding(self, role: str, taken: set) -> str:
        other = self._pairs_of("landmarks_post" if role == "landmarks_pre" else "landmarks_pre")
        for p in other:
            if p not in taken:
                return p
        used = [int(p) for p in list(taken) + other if str(p).isdigit()]
        return str(max(used, default=0) + 1)

    def add_landmark(self, role: str, point_lps, pair: str | None = None) -> str:
        """Add a landmark (LPS mm) to the pre or post layer (as a click would); returns its pair label."""
        pre_l, post_l = self.landmark_layers()
        layer = pre_l if role == "landmarks_pre" else post_l
        label = pair if pair is not None else self.next_pair(role)
        data = np.vstack([np.asarray(layer.data).reshape(-1, 3), self._to_data(layer, [point_lps])])
        pairs = self._pairs_of(role) + [label]
        self._lm_sync = True
        try:
            layer.data = data
            layer.features = {"pair": np.array(pairs, dtype=object)}
        finally:
            self._lm_sync = False
        self._landmark_order.append((role, label))
        self._refresh_landmark_ui()
        self._save_landmarks()
        return label

    def remove_last_point(self) -> None:
        """Undo the last landmark click (misclick)."""
        while self._landmark_order:
            role, label = self._landmark_order.pop()
            layer = _layers.find_layer(self.viewer, role)
            if layer is None:
                continue
            pairs = self._pairs_of(role)
            if label not in pairs:
                continue
            i = len(pairs) - 1 - pairs[::-1].index(label)
            keep = [j for j in range(len(pairs)) if j != i]
            self._lm_sync = True
            try:
                layer.data = np.asarray(layer.data)[keep].reshape(-1, 3)
                layer.features = {"pair": np.array([pairs[j] for j in keep], dtype=object)}
            finally:
                self._lm_sync = False
            self._refresh_landmark_ui()
            self._save_landmarks()
            self._status(f"removed point {label} from {layer.name}")
            return
        self._status("no landmark click to undo")

    def landmark_points(self) -> tuple[dict, dict]:
        out = []
        for role in ("landmarks_pre", "landmarks_post"):
            layer = _layers.find_layer(self.viewer, role)
            pts = {}
            if layer is not None and len(layer.data):
                for p, xyz in zip(self._pairs_of(role), self._to_lps(layer)):
                    pts[p] = xyz
            out.append(pts)
        return out[0], out[1]

    def _refresh_landmark_ui(self) -> None:
        for role in ("landmarks_pre", "landmarks_post"):
            layer = _layers.find_layer(self.viewer, role)
            if layer is None:
                continue
            self._point_counts[role] = len(layer.data)
            pairs = self._pairs_of(role)
            if pairs:
                self._lm_sync = True
                try:
                    layer.face_color = [pair_color(p) for p in pairs]
                finally:
                    self._lm_sync = False
            nxt = self.next_pair(role)
            layer.feature_defaults = {"pair": nxt}  # the label a click gets (coloured on arrival)
        pre_pts, post_pts = self.landmark_points()
        self.next_label.setText(
            f"Next: pair {self.next_pair('landmarks_pre')} on pre, pair {self.next_pair('landmarks_post')} on post "
            f"({len(set(pre_pts) & set(post_pts))} complete pairs). Select 'landmarks pre' and click on pre, "
            "'landmarks post' and click on the raw post image."
        )
        self._fill_table()

    def _fill_table(self) -> None:
        pre_pts, post_pts = self.landmark_points()
        labels = sorted(set(pre_pts) | set(post_pts), key=lm._sort_key)
        self.table.setRowCount(len(labels))
        fit = self.last_fit
        for i, lab in enumerate(labels):
            item = QTableWidgetItem(lab)
            item.setForeground(_qcolor(pair_color(lab)))
            self.table.setItem(i, 0, item)
            res = fit.residuals.get(lab) if fit is not None else None
            self.table.setItem(i, 1, QTableWidgetItem("" if res is None else f"{res:.2f}"))
            if lab not in pre_pts:
                status = "missing on pre"
            elif lab not in post_pts:
                status = "missing on post"
            elif fit is not None and res is not None and fit.n > 3 and res == max(fit.residuals.values()) and res > 1.5 * fit.rms_fre:
                status = "largest residual: check this pair"
            else:
                status = "paired"
            self.table.setItem(i, 2, QTableWidgetItem(status))

    def _save_landmarks(self) -> None:
        if self.session is None:
            return
        pre_pts, post_pts = self.landmark_points()
        try:
            self.session.set_landmarks({"pre": lm.points_to_rows(pre_pts), "post": lm.points_to_rows(post_pts)})
        except Exception as exc:  # noqa: BLE001
            _layers.notify_warning(f"could not store the landmarks: {one_line(exc)}")

    def _load_landmarks_from_case(self) -> None:
        if self.session is None:
            return
        marks = self.session.case.landmarks or {}
        if not (marks.get("pre") or marks.get("post")):
            return
        pre_l, post_l = self.landmark_layers()
        for layer, key in ((pre_l, "pre"), (post_l, "post")):
            pts = lm.as_points(marks.get(key, []))
            labels = sorted(pts, key=lm._sort_key)
            self._lm_sync = True
            try:
                layer.data = self._to_data(layer, [pts[k] for k in labels])
                layer.features = {"pair": np.array(labels, dtype=object)}
            finally:
                self._lm_sync = False
        self._refresh_landmark_ui()

    def fit_landmarks(self) -> lm.LandmarkFit | None:
        """Least-squares rigid fit of the landmark pairs; becomes the current transform."""
        pre_pts, post_pts = self.landmark_points()
        try:
            pre, post = self._image("pre"), self._image("post")
            lm.check_inside(pre_pts, pre, "pre")
            lm.check_inside(post_pts, post, "post")
            fit = lm.fit_landmarks(pre_pts, post_pts, center_lps=self.tumor_center())
        except AblationError as exc:
            _layers.notify_error(exc)
            self._status(one_line(exc))
            return None
        self.last_fit = fit
        for w in fit.warnings:
            _layers.notify_warning(w + " (fitted the complete pairs)")
        worst, worst_res = fit.worst()
        self.fit_label.setText(
            f"RMS residual {fit.rms_fre:.2f} mm over {fit.n} pairs (largest: pair {worst}, {worst_res:.2f} mm). "
            f"Predicted error at the tumor centre: {fit.predicted_tre_at(self.tumor_center()):.2f} mm "
            "(Fitzpatrick; the residual alone is not the error at the tumor)."
        )
        self._fill_table()
        self.set_transform(fit.transform)
        return fit


def _qcolor(hex_color: str):
    from qtpy.QtGui import QColor

    return QColor(hex_color)
