"""The "Automatic" tab of Register: rigid registration in a worker, history, transform files.

The registration runs ``core.registration.register_rigid`` off the GUI thread, local to
the tumor (or a user box), leaving the ablation zone out of the metric, started from the
current transform. Progress comes back through :class:`ProgressRelay` (queued, throttled,
into this panel's own progress bar). The result becomes a step of the case model's
registration history; Undo / Redo / Reset walk that history.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from ..core import geometry, uncertainty
from ..core import registration as reg
from ..core import transform as tfm
from ..core.case import protected_files
from ..core.errors import AblationError, one_line
from . import _layers

#: layer name/role of the user's region-of-interest box
BOX_ROLE = "registration box"
#: shortest time (s) between two progress reports of the automatic registration
PROGRESS_INTERVAL_S = 0.1
#: restarts of the automatic registration that estimate its spread at the tumor
SPREAD_RESTARTS = 4


class ProgressRelay(QObject):
    """Carries progress from a worker thread to the GUI thread.

    ``report`` is called in the worker thread; it emits a queued signal at most every
    ``interval_s`` seconds (and always for the first and the final report). The slot on the
    GUI thread only sets a progress bar: nothing on the way calls
    ``QApplication.processEvents``, which napari's progress bar does on every update and
    which re-entered the slot until the stack overflowed (issue 8, point 1).
    """

    progress = Signal(float, str)

    def __init__(self, interval_s: float = PROGRESS_INTERVAL_S, parent=None):
        super().__init__(parent)
        self.interval_s = interval_s
        self._last = -1.0

    def reset(self) -> None:
        self._last = -1.0

    def report(self, fraction: float, text: str) -> None:
        now = time.monotonic()
        if 0.0 < fraction < 1.0 and now - self._last < self.interval_s:
            return
        self._last = now
        self.progress.emit(float(fraction), str(text))


class AutoPanel(QWidget):
    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.viewer = owner.viewer
        self._cancel = False
        self._worker = None
        self._case_gen = 0  # counts the cases opened while this panel lives
        self._run_case = None  # the case generation the running registration belongs to
        self.last_result: reg.RegistrationResult | None = None
        self._relay = ProgressRelay(parent=self)
        self._relay.progress.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)

        form = QFormLayout()
        _layers.scroll_body(self).addLayout(form)  # scrolls, never squeezed, in a narrow dock
        self.roi_radius = QDoubleSpinBox()
        self.roi_radius.setRange(10, 300)
        self.roi_radius.setValue(reg.DEFAULT_ROI_RADIUS_MM)
        self.roi_radius.setSuffix(" mm")
        self.roi_radius.setToolTip(
            "The metric uses a ball of this radius around the tumor (enlarged to hold the tumor)"
        )
        form.addRow("Region around tumor", self.roi_radius)
        self.whole_image = QCheckBox("whole image (no region)")
        form.addRow(self.whole_image)  # full rows: the dock can stay narrow
        self.box_btn = QPushButton("Draw a region box…")
        self.box_btn.setToolTip(
            "Draw a rectangle on an axial slice (layer 'registration box'): the region is "
            "that rectangle, "
            "+- the region radius across slices. Delete the layer to go back to the tumor region."
        )
        form.addRow(self.box_btn)
        self.exclude_ablation = QCheckBox("leave the ablation zone out")
        self.exclude_ablation.setToolTip(
            "the metric ignores the ablation zone (it changed between pre and post)"
        )
        self.exclude_ablation.setChecked(True)
        form.addRow(self.exclude_ablation)
        self.spread = QCheckBox(f"estimate its spread ({SPREAD_RESTARTS} restarts)")
        self.spread.setChecked(True)
        self.spread.setToolTip(
            "after the registration, restart it from perturbed transforms: the spread of the "
            "optima is the registration's error at the tumor, used by the MTM interval"
        )
        form.addRow(self.spread)
        self.run_btn = QPushButton("Register automatically")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        form.addRow(_row(self.run_btn, self.cancel_btn))
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        form.addRow(self.progress)
        self.show_btn = QPushButton("Show registered post")
        form.addRow(self.show_btn)  # its own row: the dock can stay narrow
        self.save_btn = QPushButton("Save .tfm…")
        self.load_btn = QPushButton("Load .tfm…")
        form.addRow(_row(self.save_btn, self.load_btn))
        self.tx_label = QLabel("")
        self.tx_label.setWordWrap(True)
        form.addRow(self.tx_label)

        self.run_btn.clicked.connect(self.run_automatic)
        self.box_btn.clicked.connect(self.draw_box)
        self.cancel_btn.clicked.connect(self.cancel)
        self.show_btn.clicked.connect(lambda: owner.update_overlay(full=True))
        self.save_btn.clicked.connect(self._save_dialog)
        self.load_btn.clicked.connect(self._load_dialog)

    # ------------------------------------------------------------------ shown state
    def show_transform(self, tx, centre_lps) -> None:
        m = self.owner.model
        steps = len(m.transform_history) - 1
        if m.transform is None and self.owner.manual.adjusted() is None and steps == 0:
            # (a motion of 0.0 mm read as if something had been registered)
            self.tx_label.setText("Current transform: none (no registration yet).")
        else:
            # no step yet: the case came with its registration ("Step 0 of 0" read oddly)
            if steps:
                step = f" Step {m.transform_index} of {steps} ({m.transform_step.source})."
            elif m.transform is not None and self.owner.manual.adjusted() is None:
                step = " Registration loaded with the case."
            else:
                step = ""
            self.tx_label.setText(
                f"Current transform (pre -> post): {tfm.motion_text(tx, centre_lps)}.{step}"
            )

    @property
    def running(self) -> bool:
        return self._worker is not None

    def case_changed(self) -> None:
        """The case is being replaced or closed: a running registration is stopped, and its
        result (or its cancellation) is not reported."""
        self._case_gen += 1
        self._cancel = True  # its result belongs to the previous case

    def stop(self) -> None:
        if self._worker is not None:
            self.cancel()

    # ------------------------------------------------------------------ files
    def save_transform(self, path) -> Path:
        try:
            m = self.owner.model  # never over the case's sources or its folder's files
            keep = protected_files(m.info, m.folder)
            out = tfm.write_transform_atomic(self.owner.transform, path, inputs=keep)
        except AblationError as exc:
            _layers.notify_error(exc)
            raise
        self.owner.set_status(f"saved {Path(path).name}")
        return out

    def load_transform(self, path) -> bool:
        try:
            tx = tfm.read_rigid_transform(path)
        except AblationError as exc:
            _layers.notify_error(exc)
            return False
        self.owner.set_transform(tx, "file", Path(path).name)
        self.owner.set_status(f"loaded {Path(path).name}")
        return True

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save transform", "transform.tfm", "ITK transform (*.tfm)"
        )
        if path:
            with contextlib.suppress(AblationError):
                self.save_transform(path)

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load transform", "", "ITK transform (*.tfm *.txt *.h5)"
        )
        if path:
            self.load_transform(path)

    # ------------------------------------------------------------------ automatic
    def run_automatic(self):
        """Start the automatic registration in a worker thread; returns the worker."""
        if self._worker is not None:
            return self._worker
        if self.owner.session.refuse_while_opening() or self.owner.refuse_locked():
            return None
        owner = self.owner
        try:
            pre, post = owner.pre_post()
            whole = self.whole_image.isChecked()
            kw = {
                "tumor_mask": None if whole else owner.image("tumor"),
                "moving_exclude": owner.image("ablation")
                if self.exclude_ablation.isChecked()
                else None,
                "roi_radius_mm": None if whole else float(self.roi_radius.value()),
                "initial": owner.transform,
            }
            box = None if whole else self.user_box()
            if box is not None:
                kw["roi_box_lps"] = box
                kw["tumor_mask"] = None
            elif kw["tumor_mask"] is None and not whole:
                # no tumor drawn yet: a ball around the view centre
                kw["roi_center_lps"] = geometry.world_to_lps(
                    np.asarray(self.viewer.dims.point)[-3:]
                )
        except AblationError as exc:
            _layers.notify_error(exc)
            return None
        from napari.qt.threading import thread_worker

        self._cancel = False
        relay = self._relay
        relay.reset()

        spread = self.spread.isChecked() and kw.get("tumor_mask") is not None

        @thread_worker
        def work():
            # expected outcomes are returned, not raised, so nothing reaches the event loop
            try:
                result = reg.register_rigid(
                    pre, post, progress=relay.report, cancel=lambda: self._cancel, **kw
                )
            except Exception as exc:  # noqa: BLE001 - cancel, bad input or an ITK failure: one line
                return ("failed", exc)  # superqt re-raises a returned exception: wrap it
            if not (spread and result.improved):
                return result
            # the registration's spread at the tumor (its error model for the MTM interval)
            try:
                cov, centre = uncertainty.restart_covariance(
                    pre,
                    post,
                    result.transform,
                    kw["tumor_mask"],
                    ablation=kw["moving_exclude"],
                    restarts=SPREAD_RESTARTS,
                    progress=relay.report,
                    cancel=lambda: self._cancel,
                )
            except Exception as exc:  # noqa: BLE001 - the registration stands without a spread
                return ("no spread", result, exc)
            return ("spread", result, cov, centre)

        self._run_case = self._case_gen
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        worker = work()
        worker.returned.connect(self._on_registered)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        owner.set_status("registering…")
        worker.start()
        return worker

    def draw_box(self):
        """A Shapes layer in rectangle mode for the user's region of interest (the user's
        request)."""
        layer = _layers.find_layer(self.viewer, BOX_ROLE)
        if layer is None:
            pre_l = _layers.find_layer(self.viewer, "pre")
            kw = (
                {"scale": tuple(pre_l.scale), "translate": tuple(pre_l.translate)}
                if pre_l is not None
                else {}
            )
            layer = self.viewer.add_shapes(
                name=BOX_ROLE,
                ndim=3,
                edge_color="#ffff00",
                face_color="transparent",
                edge_width=1,
                metadata={_layers.META: {"role": BOX_ROLE}},
                units=("mm", "mm", "mm"),
                axis_labels=geometry.AXIS_LABELS,
                **kw,
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
        self.owner.set_status("cancelling…")

    def _on_progress(self, fraction: float, text: str) -> None:
        if self._worker is None:
            return  # a late, queued report
        self.progress.setValue(round(100 * fraction))
        self.progress.setFormat(f"%p%  {text}")

    def _on_registered(self, result) -> None:
        if self._run_case != self._case_gen:
            return  # started on a case that is no longer open
        cov = centre = None
        if isinstance(result, tuple) and result[0] == "failed":
            self._on_failed(result[1])
            return
        if isinstance(result, tuple) and result[0] == "no spread":
            _layers.notify_warning(f"registration spread not estimated: {one_line(result[2])}")
            result = result[1]
        elif isinstance(result, tuple):
            _tag, result, cov, centre = result
        self.last_result = result
        for w in result.warnings:
            _layers.notify_warning(w)
        if result.improved:
            note = (
                f"metric {result.metric_before:.4f} -> {result.metric_after:.4f}, "
                f"{result.iterations} iterations, "
                f"{result.elapsed_s:.1f} s"
            )
            self.owner.set_transform(
                result.transform, "automatic", note, error_covariance=cov, error_center=centre
            )
            # how far it moves the tumor: the transform line, the one figure of the widget
            self.owner.set_status(f"automatic registration: {note}")
        else:
            self.owner.set_status(
                "automatic registration did not improve; the previous transform is kept"
            )

    def _on_failed(self, exc: BaseException) -> None:
        if isinstance(exc, reg.RegistrationCancelled):
            self.owner.set_status("registration cancelled; the previous transform is kept")
            _layers.notify_info("registration cancelled")
        else:
            self.owner.set_status(one_line(exc))
            _layers.notify_error(exc)

    def _on_finished(self) -> None:
        self._worker = None
        self._run_case = None
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.progress.setVisible(False)


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row
