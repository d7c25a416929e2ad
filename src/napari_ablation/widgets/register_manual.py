"""The "Manual" tab of Register: translate / rotate post about the tumor centre, live.

The six values adjust the case model's registration as it was when the adjustment began
(``base``). While a value changes only a box around the tumor is resampled (the live
path); when it settles the adjusted transform becomes a "manual" step of the model's
history (undoable) and the whole volume follows. Any other change of the registration
(automatic, landmarks, undo, a file) starts a new adjustment from zero. Alt+keys in the
viewer nudge the values while this tab is shown (:class:`KeysWhileShown`): from another tab
or dock they do nothing, and a nudge says on the status line how to undo it.
"""

from __future__ import annotations

import contextlib

import SimpleITK as sitk
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QDoubleSpinBox, QGridLayout, QLabel, QSlider, QWidget

from ..core import registration as reg
from . import _layers

#: delay (ms) after the last change before the adjustment is recorded
SETTLE_MS = 250
#: key, title, limit, slider step
MANUAL = (
    ("tx", "x (L) mm", 20.0, 0.1),
    ("ty", "y (P) mm", 20.0, 0.1),
    ("tz", "z (S) mm", 20.0, 0.1),
    ("rx", "about x (deg)", 15.0, 0.1),
    ("ry", "about y (deg)", 15.0, 0.1),
    ("rz", "about z (deg)", 15.0, 0.1),
)
#: step of one key press (mm or degrees)
KEY_STEP = 0.5
#: key -> (kind, sign): h/v move along the screen's horizontal/vertical axis, n across the
#: slice, r rotates about the slice normal
KEYS = {
    "Alt-Right": ("h", 1),
    "Alt-Left": ("h", -1),
    "Alt-Down": ("v", 1),
    "Alt-Up": ("v", -1),
    "Alt-PageUp": ("n", 1),
    "Alt-PageDown": ("n", -1),
    "Alt-.": ("r", 1),
    "Alt-,": ("r", -1),
}


#: the registration's undo / redo from the keyboard while the Register dock is shown (Ctrl-Z
#: stays napari's undo of the active layer: a paint stroke, a landmark)
UNDO_KEY, REDO_KEY = "Alt-Z", "Alt-Shift-Z"


class KeysWhileShown(QObject):
    """Viewer key bindings that exist only while ``widget`` is shown: its dock is in front
    and, ``within`` another such widget (a tab of it), its tab is the current one. A tab
    switch hides the widget (a Hide event); a dock behind another dock's tab is moved off
    screen, not hidden (Qt 6), and says so by its ``visibilityChanged``. Keys napari binds
    itself (Alt-Up / Alt-Down step the sliders) come back when the bindings go."""

    def __init__(self, widget, viewer, keys: dict, within: KeysWhileShown | None = None):
        super().__init__(widget)
        self.widget, self.viewer, self.keys, self.within = widget, viewer, keys, within
        self.bound: list[str] = []
        self._followers: list[KeysWhileShown] = []
        self._dock = None
        self._dock_front = True
        if within is not None:
            within._followers.append(self)
        widget.installEventFilter(self)
        self._sync()

    def shown(self) -> bool:
        if not self.widget.isVisible():
            return False
        return self.within.shown() if self.within is not None else self._dock_front

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Show:
            self._follow_dock()
            self._sync()
        elif event.type() == QEvent.Type.Hide:
            self._sync()
        return False

    def _follow_dock(self) -> None:
        from qtpy.QtWidgets import QDockWidget

        if self.within is not None:
            return
        w = self.widget.parentWidget()
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        if w is not None and w is not self._dock:
            self._dock, self._dock_front = w, True  # being shown now
            w.visibilityChanged.connect(self._on_dock)

    def _on_dock(self, visible: bool) -> None:
        self._dock_front = bool(visible)
        self._sync()

    def _sync(self) -> None:
        if self.shown():
            self.bind()
        else:
            self.unbind()
        for f in self._followers:
            f._sync()

    def bind(self) -> None:
        if self.bound:
            return
        for key, handler in self.keys.items():
            with contextlib.suppress(Exception):  # keys are a convenience
                self.viewer.bind_key(key, handler, overwrite=True)
                self.bound.append(key)

    def unbind(self) -> None:
        for key in self.bound:
            with contextlib.suppress(Exception):
                self.viewer.bind_key(key, None, overwrite=True)
        self.bound = []


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


class ManualPanel(QWidget):
    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.viewer = owner.viewer
        self._base: sitk.Euler3DTransform | None = None  # the registration the values adjust
        self._centre = None  # rotation centre, fixed while one adjustment is made
        self._committed = (0.0,) * 6
        self._committing = False
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self.commit)

        grid = QGridLayout()
        _layers.scroll_body(self).addLayout(grid)  # scrolls, never squeezed, in a narrow dock
        self.rows: dict[str, _ManualRow] = {}
        for i, (key, title, limit, step) in enumerate(MANUAL):
            r = _ManualRow(key, title, limit, step, self._on_change, self.commit)
            self.rows[key] = r
            grid.addWidget(r.label, i, 0)
            grid.addWidget(r.slider, i, 1)
            grid.addWidget(r.spin, i, 2)
        self.center_label = QLabel("")
        self.center_label.setWordWrap(True)  # (unwrapped, it widened the tab past the dock)
        grid.addWidget(self.center_label, len(MANUAL), 0, 1, 3)
        keys = QLabel(
            "Keys on the canvas while this tab is shown: Alt+arrows move in the slice plane, "
            "Alt+PageUp/PageDown across it, Alt+, / Alt+. rotate in the slice plane; step "
            f"{KEY_STEP} mm / {KEY_STEP} deg. {UNDO_KEY} / {REDO_KEY} undo / redo a change "
            "of the registration (Ctrl-Z undoes the active layer's edits)."
        )
        keys.setWordWrap(True)
        grid.addWidget(keys, len(MANUAL) + 1, 0, 1, 3)
        self.keys = KeysWhileShown(
            self, self.viewer, self._key_handlers(), within=getattr(owner, "keys", None)
        )

    def __getitem__(self, key: str) -> _ManualRow:
        return self.rows[key]

    # ------------------------------------------------------------------ state
    def values(self) -> tuple[float, ...]:
        return tuple(self.rows[k].value() for k, *_ in MANUAL)

    def _set_values(self, values) -> None:
        for (k, *_), v in zip(MANUAL, values):
            self.rows[k].set_value(float(v))

    def adjusted(self) -> sitk.Euler3DTransform | None:
        """The model's registration changed by the values, None when they are all zero."""
        vals = self.values()
        if not any(vals):
            return None
        if self._base is None:
            self._base = self.owner.model.transform or sitk.Euler3DTransform()
        if self._centre is None:
            self._centre = self.owner.tumor_center()
        return reg.adjust(self._base, vals[:3], vals[3:], self._centre)

    def on_model_transform(self, source: str) -> None:
        """The model's registration changed: a change not made here starts from zero."""
        if self._committing:
            return
        self._settle.stop()
        self._base, self._centre = None, None
        self._committed = (0.0,) * 6
        self._set_values(self._committed)
        self.center_label.setText("")

    def case_changed(self) -> None:
        self.on_model_transform("case")

    def _on_change(self) -> None:
        self.owner._show_transform()
        if self._centre is not None:
            c = self._centre
            self.center_label.setText(
                f"Rotation centre (tumor): ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm LPS"
            )
        if self.owner.registered_layer() is not None:
            self.owner.update_overlay(full=False)
        self._settle.start()

    def commit(self) -> None:
        """The value settled: the adjusted transform becomes a step of the model's history."""
        self._settle.stop()
        vals = self.values()
        if vals == self._committed:
            return
        self._committed = vals
        tx = self.adjusted()
        self._committing = True
        try:
            self.owner.set_transform(tx if tx is not None else self._base, "manual")
        finally:
            self._committing = False

    def nudge(self, key: str, delta: float) -> None:
        if self.owner.refuse_locked():
            return
        row = self.rows[key]
        row.spin.setValue(row.value() + delta)

    # ------------------------------------------------------------------ keys
    def _key_handlers(self) -> dict:
        lps_t = {0: "tz", 1: "ty", 2: "tx"}
        lps_r = {0: "rz", 1: "ry", 2: "rx"}

        def make(kind, sign):
            def handler(viewer):
                # world axes on screen: vertical, horizontal
                disp = list(viewer.dims.displayed)[-2:]
                normal = ({0, 1, 2} - set(disp)).pop() if len(disp) == 2 else 0
                key = {
                    "h": lps_t[disp[1]],
                    "v": lps_t[disp[0]],
                    "n": lps_t[normal],
                    "r": lps_r[normal],
                }[kind]
                # the arrows follow the screen: Alt+Down moves down however the camera is oriented
                vdir, hdir = (
                    str(getattr(d, "value", d)) for d in _layers.camera(viewer).orientation2d
                )
                flip = (kind == "v" and vdir == "up") or (kind == "h" and hdir == "left")
                delta = KEY_STEP * (-sign if flip else sign)
                if self.owner.refuse_locked():
                    return
                self.nudge(key, delta)
                self.commit()
                unit = "deg" if key.startswith("r") else "mm"
                title = next(t for k, t, *_ in MANUAL if k == key)
                title = title.replace(" mm", "").replace(" (deg)", "")
                title = title.replace("about", "rotation about")
                self.owner.set_status(
                    f"registration nudged: {title} {delta:+.1f} {unit} ({UNDO_KEY} or Undo "
                    "undoes it)"
                )

            return handler

        return {key: make(kind, sign) for key, (kind, sign) in KEYS.items()}

    def stop(self) -> None:
        """Unbind the keys (the widget is closing)."""
        self._settle.stop()
        self.keys.unbind()
