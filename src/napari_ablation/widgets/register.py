"""3. Register: rigid registration of post to pre, one small panel per tab.

* Automatic (``register_auto.AutoPanel``): ``core.registration.register_rigid`` in a
  worker thread, progress and Cancel, transform files.
* Manual (``register_manual.ManualPanel``): translation and rotation about the tumor centre
  with sliders, spin boxes and Alt+keys (while the tab is shown), live.
* Landmarks (``register_landmarks.LandmarksPanel``): paired Points layers, residuals,
  Fitzpatrick's predicted error.
* QA (``qa.QAPanel``): blend, checkerboard, difference, flicker, contours, crosshair, verdict.

Undo / Redo / Reset sit below the tabs: every tab's change is a step of one history. Alt-Z /
Alt-Shift-Z undo / redo the registration while the widget is shown.

The registration and its history live in the case model (``session.model``:
``set_transform`` / ``undo_transform`` / ``redo_transform``); this module holds what
the panels share to *show* it: the registered post image (post resampled onto the pre
grid, never a rotated layer) and the current transform including a manual adjustment
being dragged.
"""

from __future__ import annotations

import time

import numpy as np
import SimpleITK as sitk
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from ..core import geometry
from ..core import registration as reg
from ..core import transform as tfm
from ..core.errors import AblationError, one_line
from . import _layers
from .session import CaseSession

#: half size (mm) of the box around the tumor resampled live while adjusting
LIVE_HALF_SIZE_MM = 30.0
#: the predicted registration error follows tumor edits once they settle (ms)
ERROR_DEBOUNCE_MS = 300
#: above this many post voxels the whole-volume resampling runs in a worker
RESAMPLE_IN_WORKER_VOXELS = 2_000_000


class RegisterWidget(QWidget):
    """Tabs over the case model's registration (see module docstring)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        from .qa import QAPanel
        from .register_auto import AutoPanel
        from .register_landmarks import LandmarksPanel
        from .register_manual import REDO_KEY, UNDO_KEY, KeysWhileShown, ManualPanel

        self.viewer = napari_viewer
        self.session = CaseSession.of(napari_viewer)
        self.session.attach_widget(self)
        self.model = self.session.model
        self._images: dict = {}  # role -> (model version, image): derived views of the model
        self._resample_worker = None
        self._generation = 0
        self._reshow_registered = False  # the registered post goes back if an opening fails
        self.live_timings_ms: list[float] = []

        self.tabs = QTabWidget()
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        # the history of the registration, whichever tab made the change
        self.undo_btn = QPushButton("Undo")
        self.undo_btn.setToolTip(f"Undo the last change of the registration ({UNDO_KEY})")
        self.redo_btn = QPushButton("Redo")
        self.redo_btn.setToolTip(f"Redo a change of the registration ({REDO_KEY})")
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("Back to the identity (scanner coordinates); undoable")
        history = QHBoxLayout()
        for b in (self.undo_btn, self.redo_btn, self.reset_btn):
            history.addWidget(b)
        self.undo_btn.clicked.connect(self.undo)
        self.redo_btn.clicked.connect(self.redo)
        self.reset_btn.clicked.connect(self.reset)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # the line of the last action, and the transform version it was about: a line about
        # an older transform goes when the transform changes (issue 8 point 8: one figure)
        self._status_text = ""
        self._status_transform = 0
        lay.addWidget(self.status)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setToolTip(
            "the registration's predicted error at the tumor centre, from how it was made: "
            "landmarks (their localisation error), the automatic registration (its spread "
            "over restarts) or the reader accuracy (Margins); it sets the MTM interval"
        )
        lay.addWidget(self.error_label)
        from qtpy.QtCore import QTimer

        # tumor edits move the centre where the error is predicted: once they settle
        self._error_timer = QTimer(self)
        self._error_timer.setSingleShot(True)
        self._error_timer.setInterval(ERROR_DEBOUNCE_MS)
        self._error_timer.timeout.connect(self.show_registration_error)
        # the registration's undo / redo keys while this dock is in front; the Manual tab's
        # nudge keys while that tab is shown too
        self.keys = KeysWhileShown(
            self,
            napari_viewer,
            {UNDO_KEY: lambda viewer: self.undo(), REDO_KEY: lambda viewer: self.redo()},
        )
        self.auto = AutoPanel(self)
        self.manual = ManualPanel(self)
        self.landmarks = LandmarksPanel(self)
        self.qa = QAPanel(self)
        for panel, title in (
            (self.auto, "Automatic"),
            (self.manual, "Manual"),
            (self.landmarks, "Landmarks"),
            (self.qa, "QA"),
        ):
            self.tabs.addTab(panel, title)
        # below the tabs, but after the tab's controls in the Tab order (a widget joins the
        # focus chain when it gets its parent: UAT s10 N9, Tab went from the tab bar to Reset)
        lay.insertLayout(1, history)
        self._panels = (self.auto, self.manual, self.landmarks, self.qa)
        _layers.connect_while_alive(self.model.transform_changed, self, self._on_transform_changed)
        _layers.connect_while_alive(self.session.changed, self, self._on_session_changed)
        _layers.connect_while_alive(self.model.changed, self, self._on_model_changed)
        self._show_transform()
        self.show_registration_error()
        self._show_lock()

    # ------------------------------------------------------------------ model views
    def image(self, role: str) -> sitk.Image | None:
        """The model's ``pre`` / ``post`` image, or its ``tumor`` / ``ablation`` mask (None if
        empty)."""
        if role in ("pre", "post"):
            return self.model.image(role)
        version = self.model.version(role)
        hit = self._images.get(role)
        if hit is not None and hit[0] == version:
            return hit[1]
        img = self.model.labels_image(role)
        if img is not None and not sitk.GetArrayViewFromImage(img).any():
            img = None
        self._images[role] = (version, img)
        return img

    def pre_post(self) -> tuple[sitk.Image, sitk.Image]:
        """The case's pre and post images.

        Raises
        ------
        AblationError
            Naming the image missing (UAT s12 N3), e.g. "no post-ablation image: load the
            pre and post images first (Load case)".
        """
        pre, post = self.image("pre"), self.image("post")
        if pre is None or post is None:
            missing = (
                "pre or post"
                if pre is None and post is None
                else ("pre-ablation" if pre is None else "post-ablation")
            )
            raise AblationError(
                f"no {missing} image: load the pre and post images first (Load case)"
            )
        return pre, post

    def tumor_center(self) -> np.ndarray:
        """Tumor centroid (LPS), else the centre of the pre image."""
        c = self.model.tumor_centre_lps()
        if c is not None:
            return np.asarray(c, dtype=float)
        pre = self.image("pre")
        if pre is not None:
            lo, hi = geometry.physical_bounds(pre)
            return (lo + hi) / 2
        return np.zeros(3)

    @property
    def transform(self) -> sitk.Euler3DTransform:
        """The transform shown now: the model's, changed by a manual adjustment being made."""
        live = self.manual.adjusted()
        if live is not None:
            return live
        tx = self.model.transform
        return tx if tx is not None else sitk.Euler3DTransform()

    def set_transform(self, tx, source: str = "manual", note: str = "", **error) -> None:
        """Make ``tx`` the case's registration (a new, undoable step of the model's history);
        ``error``: its spread (``error_covariance``, ``error_center``, see the model)."""
        if self.refuse_locked():
            return
        try:
            self.model.set_transform(tx, source, note, **error)
        except AblationError as exc:
            _layers.notify_error(exc)

    def refuse_locked(self) -> bool:
        """True (and the reason on the status line) while the registration may not be
        changed: a quiz question is open on the case (Teach widget)."""
        reason = self.session.edit_lock("registration")
        if reason:
            self.set_status(reason)
        return reason is not None

    def _show_lock(self) -> None:
        """The panels that change the registration are disabled while it is locked."""
        reason = self.session.edit_lock("registration")
        for panel in (self.auto, self.manual, self.landmarks):
            panel.setEnabled(reason is None)
        self._show_history()
        if reason:
            self.set_status(reason)

    def undo(self) -> None:
        if self.refuse_locked():
            return
        if not self.model.undo_transform():
            self.set_status("nothing to undo")

    def redo(self) -> None:
        if self.refuse_locked():
            return
        if not self.model.redo_transform():
            self.set_status("nothing to redo")

    def reset(self) -> None:
        if not self.refuse_locked():
            self.model.reset_transform()

    def set_status(self, text: str) -> None:
        """The status line: ``text`` (about the transform now), then what the case model says
        about the landmark fit."""
        self._status_text = text
        self._status_transform = self.model.version("transform")
        self._show_status()

    def _show_status(self) -> None:
        from .register_landmarks import LANDMARKS_CHANGED_TEXT

        parts = [self._status_text] if self._status_text else []
        if self.model.landmarks_changed_since_fit:
            parts.append(LANDMARKS_CHANGED_TEXT)
        self.status.setText("\n".join(parts))

    def _on_transform_changed(self, source: str) -> None:
        if self._status_transform != self.model.version("transform") and not self.auto.running:
            self._status_text = ""  # it was about a transform that is no longer the current one
        self._show_status()
        self.manual.on_model_transform(source)
        self.landmarks.show_fit()
        self._show_transform()
        if self.image("pre") is not None and self.image("post") is not None:
            self.update_overlay(full=True)

    def _show_transform(self) -> None:
        if self.manual.adjusted() is not None and self._status_text and not self.auto.running:
            self.set_status("")  # a manual adjustment is moving the transform the line was about
        self.auto.show_transform(self.transform, self.tumor_center())
        self._show_history()

    def _show_history(self) -> None:
        """Undo / Redo / Reset: enabled when there is a step to take and the registration may
        be changed."""
        free = self.session.edit_lock("registration") is None
        self.undo_btn.setEnabled(free and self.model.can_undo_transform)
        self.redo_btn.setEnabled(free and self.model.can_redo_transform)
        self.reset_btn.setEnabled(free)

    def _on_model_changed(self, what: str) -> None:
        if what == "landmarks":
            self._show_status()
            self.landmarks.show_fit()
        if what in ("case", "transform", "landmarks", "settings"):
            self.show_registration_error()
        elif what == "tumor":
            self._error_timer.start()

    def show_registration_error(self) -> None:
        """The predicted registration error at the tumor (mm, 95 %) and its source."""
        try:
            err = self.model.registration_error_at_tumor()
        except AblationError as exc:
            self.error_label.setText(f"predicted error at the tumor: unknown ({one_line(exc)})")
            return
        if err is None:
            self.error_label.setText("predicted error at the tumor: draw the tumor first")
            return
        rms, p95, source = err
        self.error_label.setText(
            f"predicted error at the tumor: {p95:.1f} mm (95 %), {rms:.1f} mm RMS \u2014 {source}"
        )

    def _on_session_changed(self, what: str) -> None:
        if what == "margins_view":
            self.landmarks.leave_view()
            return
        if what == "quiz":
            self.set_status("")  # the lock's line, when the answer was just submitted
            self._show_lock()
            return
        if what in ("opening", "closing"):
            # a registration running now belongs to the case being replaced or closed:
            # stopped at once, its result dropped, no message about it afterwards
            self.auto.case_changed()
            opening = self.session.opening
            self.set_status(f"{opening}\u2026" if opening and what == "opening" else "")
            if opening is None:
                self._show_lock()  # the case is open: its lock's line is back
            if what != "opening":
                return
            if opening is not None:
                # shown now, removed with the case's other figures while another case opens
                self._reshow_registered |= self.registered_layer() is not None
            elif self._reshow_registered and self.registered_layer() is None:
                self._reshow_registered = False
                self.update_overlay(full=True)  # the opening failed: the case's view is back
            return
        if what != "case":
            return
        self._reshow_registered = False  # another case is open
        self.set_status("")  # a line about the previous case's registration
        self._images.clear()
        self._generation += 1  # a resampling of the previous case is not shown
        for panel in self._panels:
            panel.case_changed()
        old = self.registered_layer()
        if old is not None:  # belongs to the previous case
            self.viewer.layers.remove(old)
        self._show_transform()
        self._show_lock()

    # ------------------------------------------------------------------ registered post
    @property
    def busy(self) -> bool:
        return self.auto.running or self._resample_worker is not None

    def registered_layer(self):
        return _layers.find_layer(self.viewer, "post_registered")

    def post_min(self, post: sitk.Image) -> float:
        hit = self._images.get("post_min")
        if hit is not None and hit[0] is post:
            return hit[1]
        v = float(sitk.GetArrayViewFromImage(post).min())
        self._images["post_min"] = (post, v)
        return v

    def update_overlay(self, full: bool = True, *, wait: bool = False) -> None:
        """Show post resampled onto the pre grid through the current transform.

        ``full=False`` (the live path) resamples only a box of +-30 mm around the tumor
        into the existing layer; ``full=True`` resamples the whole pre grid (in a worker
        for large volumes).
        """
        try:
            pre, post = self.pre_post()
        except AblationError as exc:
            _layers.notify_error(exc)
            return
        tx = self.transform
        layer = self.registered_layer()
        if not full and layer is not None and layer.data.shape == tuple(pre.GetSize()[::-1]):
            t0 = time.perf_counter()
            box = reg.region_box(pre, self.tumor_center(), LIVE_HALF_SIZE_MM)
            if box is not None:
                arr = reg.resample_region(post, pre, tx, box, default=self.post_min(post))
                layer.data[box] = arr.astype(layer.data.dtype, copy=False)
                layer.refresh(thumbnail=False, extent=False, highlight=False)
                self.qa.update_region(box, arr)
            self.live_timings_ms.append(1000 * (time.perf_counter() - t0))
            return
        self._generation += 1
        gen = self._generation
        default = self.post_min(post)
        if wait or post.GetNumberOfPixels() < RESAMPLE_IN_WORKER_VOXELS:
            self._show_registered(gen, reg.registered(post, pre, tx, default=default))
            return
        holder = {}

        def done(_holder=holder):
            if self._resample_worker is _holder.get("w"):
                self._resample_worker = None

        w = _layers.start_worker(
            lambda: (gen, reg.registered(post, pre, tx, default=default)),
            on_returned=lambda r: self._show_registered(*r),
            on_finished=done,
        )
        holder["w"] = w
        self._resample_worker = w

    def _show_registered(self, gen: int, img: sitk.Image) -> None:
        if gen != self._generation:
            return  # a newer request is on its way
        extra = {}
        if self.registered_layer() is None:
            # registered post lives on the pre grid: shown over pre (the user's grid setting stays)
            extra = {"colormap": "magenta", "blending": "additive", "opacity": 0.6}
            post_layer = _layers.find_layer(self.viewer, "post")
            if post_layer is not None:
                extra["contrast_limits"] = tuple(post_layer.contrast_limits)
        meta = {_layers.META: {"transform": tfm.euler_params(self.transform)}}
        with _layers.keep_selection(self.viewer):
            _layers.add_or_update_image(self.viewer, img, "post_registered", metadata=meta, **extra)
        _layers.arrange(self.viewer)  # over pre, under the user's drawing
        self.qa.refresh()

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event):
        self.keys.unbind()
        for panel in self._panels:
            panel.stop()
        super().closeEvent(event)
