"""Segment widget: tumor (on pre) and ablation zone (on post) by brush + interpolation,
edge-aware assistance, correction, and reader comparison.

Thin layer over :mod:`napari_ablation.core.segmentation`: every button reads the label
layer (and image), calls core on a crop, and writes only the voxels that change through
``Labels.data_setitem`` inside ``Labels.block_history()`` -- so one ``undo`` (Ctrl-Z)
reverts the whole operation. Heavy work runs off the GUI thread. Every change goes to
the case session, which autosaves the labels into the case folder.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from ..core import geometry
from ..core import segmentation as seg
from ..core.errors import AblationError, NothingToDo, one_line
from . import _layers
from .margin import OUTPUT_ROLES
from .session import CaseSession

#: structure role -> (image role it is drawn on, colour, label shown to the user)
STRUCTURES = {
    "tumor": ("pre", _layers.TUMOR_COLOR, "Tumor (on pre)"),
    "ablation": ("post", _layers.ABLATION_COLOR, "Ablation zone (on post)"),
}
PREVIEW_ROLE = "interpolation_preview"
DISAGREEMENT_ROLE = "disagreement"
PREVIEW_COLOR = "#ffff00"
DISAGREEMENT_COLORS = {1: "#ff3030", 2: "#3080ff"}  # only A, only B
INTERPOLATE_KEY = "Shift-I"
READOUT_DELAY_MS = 150
LIVE_PREVIEW_DELAY_MS = 300


def _spin(value, lo, hi, step, suffix, decimals=1, tip=""):
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setValue(value)
    box.setSuffix(suffix)
    if tip:
        box.setToolTip(tip)
    return box


def write_changes(layer, box, old_sub: np.ndarray, new_sub: np.ndarray) -> int:
    """Write the voxels of ``new_sub`` that differ from ``old_sub`` into ``layer.data[box]``
    as ONE undoable step. Returns the number of voxels changed."""
    changed = old_sub != new_sub
    n = int(np.count_nonzero(changed))
    if n == 0:
        return 0
    idx = np.nonzero(changed)
    full = tuple(i + int(b.start) for i, b in zip(idx, box))
    values = new_sub[idx]
    with layer.block_history():
        for v in np.unique(values):
            sel = values == v
            # napari 0.9 does not slice a hidden layer: updating its stale slice view
            # fails (IndexError) AFTER the data and the undo history were written;
            # refresh() redraws
            with contextlib.suppress(IndexError):
                layer.data_setitem(tuple(f[sel] for f in full), int(v), refresh=False)
    layer.refresh()
    return n


def _same_grid(la, lb) -> bool:
    """Two labels layers on one grid (shape, voxel size and position): what Compare needs."""
    return (
        np.asarray(la.data).shape == np.asarray(lb.data).shape
        and np.allclose(la.scale, lb.scale)
        and np.allclose(la.translate, lb.translate)
    )


class SegmentWidget(QWidget):
    """2. Segment: tumor on pre, ablation zone on post."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._pending: list = []  # jobs waiting for the current one (keeps order)
        self.last_error: str | None = None
        self.last_stats: dict[str, Any] | None = None
        self.last_comparison: dict[str, Any] | None = None
        self._preview: dict[str, Any] | None = None  # {"layer", "box", "old", "new", "target"}
        self._watched: set[int] = set()
        self._seed_cb = None
        self._setting_brush = False
        self._state = {"alive": True}
        state = self._state
        self.destroyed.connect(lambda *_a, _s=state: _s.update(alive=False))
        self.session = CaseSession.of(napari_viewer)
        self.session.attach_widget(self)

        # ---------------------------------------------------------------- structure
        struct = QGroupBox("Structure")
        form = QFormLayout(struct)
        self.structure = QComboBox()
        for role, (_grid, _c, text) in STRUCTURES.items():
            self.structure.addItem(text, role)
        self.edit_btn = QPushButton("Create / edit labels")
        self.edit_btn.setToolTip(
            "Select (or create) the labels layer of this structure, in paint mode"
        )
        self.pick_btn = QPushButton("Use selected layer")
        self.pick_btn.setToolTip(
            "Make the selected labels layer (e.g. loaded from a file) this structure's labels"
        )
        self.brush_mm = _spin(
            5.0, 0.5, 100.0, 0.5, " mm", tip="Brush diameter in mm (in the viewed plane)"
        )
        self.brush_info = QLabel("")
        self.readout = QLabel(f"volume – ml · {seg.DIAMETER_NAME} – mm")
        self.readout.setWordWrap(True)
        self.readout.setToolTip(seg.DIAMETER_NOTE)
        row = QHBoxLayout()
        row.addWidget(self.structure, 1)
        row.addWidget(self.edit_btn)
        form.addRow(row)
        form.addRow(self.pick_btn)
        brow = QHBoxLayout()
        brow.addWidget(self.brush_mm)
        brow.addWidget(self.brush_info, 1)
        form.addRow("Brush", brow)
        form.addRow(self.readout)

        # ---------------------------------------------------------------- interpolation
        interp = QGroupBox("Interpolate between drawn slices")
        grid = QGridLayout(interp)
        self.axis_info = QLabel("")
        self.preview_btn = QPushButton(f"Preview ({INTERPOLATE_KEY})")
        self.preview_btn.setToolTip(
            "Outline the structure on a few slices of the orientation you are viewing, then "
            "preview; "
            f"{INTERPOLATE_KEY} again accepts"
        )
        self.accept_btn = QPushButton("Accept")
        self.cancel_btn = QPushButton("Cancel")
        self.accept_btn.setEnabled(False)
        self.cancel_btn.setEnabled(False)
        self.live_preview = QCheckBox("update the preview while drawing")
        self.live_preview.setChecked(True)
        grid.addWidget(self.axis_info, 0, 0, 1, 3)
        grid.addWidget(self.preview_btn, 1, 0)
        grid.addWidget(self.accept_btn, 1, 1)
        grid.addWidget(self.cancel_btn, 1, 2)
        grid.addWidget(self.live_preview, 2, 0, 1, 3)

        # ---------------------------------------------------------------- assistance
        assist = QGroupBox("Edge-aware assistance")
        aform = QFormLayout(assist)
        self.band_mm = _spin(3.0, 0.5, 20.0, 0.5, " mm", tip="How far the border may move")
        self.refine_btn = QPushButton("Refine to edges")
        r1 = QHBoxLayout()
        r1.addWidget(self.refine_btn, 1)
        r1.addWidget(QLabel("band"))
        r1.addWidget(self.band_mm)
        aform.addRow(r1)
        self.seed_btn = QPushButton("Seed region: click inside the structure")
        self.seed_btn.setCheckable(True)
        self.seed_btn.setToolTip(
            "Click inside the ablation zone (signal void on MRI, hypodense on CT) or the tumor: "
            "grows a 3D region limited by intensity and distance"
        )
        self.seed_radius = _spin(40.0, 5.0, 150.0, 5.0, " mm", 0, "Maximum distance from the seed")
        self.seed_radius.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
        self.seed_tol = _spin(
            0.0,
            0.0,
            8.0,
            0.25,
            " SD",
            2,
            "Intensity tolerance in robust standard deviations; 'auto' picks the most stable "
            "region",
        )
        self.seed_tol.setSpecialValueText("auto")
        self.seed_tol.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)
        for box in (self.seed_radius, self.seed_tol):
            box.setMinimumWidth(80)
            box.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        aform.addRow(self.seed_btn)
        aform.addRow("within", self.seed_radius)  # one per row: the dock can stay narrow
        aform.addRow("tolerance", self.seed_tol)

        # ---------------------------------------------------------------- correction
        corr = QGroupBox("Correction (each is one undo step: Ctrl-Z)")
        cgrid = QGridLayout(corr)
        self.fill_btn = QPushButton("Fill holes")
        self.smooth_btn = QPushButton("Smooth")
        self.smooth_mm = _spin(1.0, 0.2, 10.0, 0.2, " mm", tip="Gaussian sigma")
        self.grow_btn = QPushButton("Grow / shrink")
        self.grow_mm = _spin(2.0, -30.0, 30.0, 0.5, " mm", tip="Positive grows, negative shrinks")
        self.islands_btn = QPushButton("Remove islands")
        self.islands_ml = _spin(0.1, 0.0, 100.0, 0.05, " ml", 2, "Remove parts smaller than this")
        self.largest_btn = QPushButton("Keep largest")
        self.erase_btn = QPushButton("Erase current slice")
        self.undo_btn = QPushButton("Undo")
        cgrid.addWidget(self.fill_btn, 0, 0)
        cgrid.addWidget(self.largest_btn, 0, 1)
        cgrid.addWidget(self.smooth_btn, 1, 0)
        cgrid.addWidget(self.smooth_mm, 1, 1)
        cgrid.addWidget(self.grow_btn, 2, 0)
        cgrid.addWidget(self.grow_mm, 2, 1)
        cgrid.addWidget(self.islands_btn, 3, 0)
        cgrid.addWidget(self.islands_ml, 3, 1)
        cgrid.addWidget(self.erase_btn, 4, 0)
        cgrid.addWidget(self.undo_btn, 4, 1)

        # ---------------------------------------------------------------- comparison
        comp = QGroupBox("Compare two segmentations")
        cform = QFormLayout(comp)
        self.cmp_a = QComboBox()
        self.cmp_b = QComboBox()
        self.cmp_b.setPlaceholderText("no other segmentation on A's grid")
        self.compare_btn = QPushButton("Compare")
        self.cmp_result = QLabel("")
        self.cmp_result.setWordWrap(True)
        cform.addRow("A", self.cmp_a)
        cform.addRow("B", self.cmp_b)
        cform.addRow(self.compare_btn)
        cform.addRow(self.cmp_result)

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)
        lay = _layers.scroll_body(self)
        for combo in (self.structure, self.cmp_a, self.cmp_b):
            _layers.compact_combo(combo)
        for w in (struct, interp, assist, corr, comp, self.progress):
            lay.addWidget(w)
        lay.addStretch(1)

        # ---------------------------------------------------------------- wiring
        self._readout_timer = QTimer(self)
        self._readout_timer.setSingleShot(True)
        self._readout_timer.setInterval(READOUT_DELAY_MS)
        self._readout_timer.timeout.connect(self.update_readout)
        self._readout_busy = False
        self._readout_again = False
        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_PREVIEW_DELAY_MS)
        self._live_timer.timeout.connect(self._live_refresh)

        self.structure.currentIndexChanged.connect(self._structure_changed)
        self.edit_btn.clicked.connect(lambda: self.ensure_labels_layer(select=True))
        self.pick_btn.clicked.connect(lambda: self.use_layer(self.viewer.layers.selection.active))
        self.brush_mm.valueChanged.connect(lambda _v: self.apply_brush_size())
        self.preview_btn.clicked.connect(self.preview_interpolation)
        self.accept_btn.clicked.connect(self.accept_interpolation)
        self.cancel_btn.clicked.connect(self.cancel_interpolation)
        self.refine_btn.clicked.connect(self.refine)
        self.seed_btn.toggled.connect(self._seed_mode)
        self.fill_btn.clicked.connect(lambda: self.correct("fill_holes"))
        self.smooth_btn.clicked.connect(lambda: self.correct("smooth"))
        self.grow_btn.clicked.connect(lambda: self.correct("grow_shrink"))
        self.islands_btn.clicked.connect(lambda: self.correct("remove_islands"))
        self.largest_btn.clicked.connect(lambda: self.correct("keep_largest"))
        self.erase_btn.clicked.connect(lambda: self.correct("erase_slice"))
        self.undo_btn.clicked.connect(self.undo)
        self.compare_btn.clicked.connect(self.compare)
        #: the buttons that start a background job or edit the labels: disabled while one runs
        self._job_buttons = (
            self.fill_btn,
            self.smooth_btn,
            self.grow_btn,
            self.islands_btn,
            self.largest_btn,
            self.erase_btn,
            self.undo_btn,
            self.refine_btn,
            self.compare_btn,
        )
        self.viewer.dims.events.order.connect(self._dims_changed)
        self.viewer.dims.events.ndisplay.connect(self._dims_changed)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        _layers.connect_while_alive(self.session.model.labels_changed, self, self._labels_edited)
        self.viewer.bind_key(INTERPOLATE_KEY, self._interpolate_key, overwrite=True)
        self._layers_changed()
        self._dims_changed()

    # ================================================================ layers
    def alive(self) -> bool:
        """False once the Qt widget is gone (callbacks from napari events then do nothing)."""
        if not self._state["alive"]:
            return False
        try:
            self.objectName()
        except RuntimeError:
            self._state["alive"] = False
        return self._state["alive"]

    @property
    def role(self) -> str:
        return self.structure.currentData()

    def labels_layer(self, role: str | None = None):
        return _layers.find_layer(self.viewer, role or self.role)

    def image_layer(self, role: str | None = None):
        return _layers.find_layer(self.viewer, STRUCTURES[role or self.role][0])

    def ensure_labels_layer(self, select: bool = True, role: str | None = None):
        """The labels layer of the structure; if missing, made on its image's grid holding the
        labels the case has (its layer was deleted: the model still holds them, UAT s9 N6),
        else empty."""
        role = role or self.role
        layer = self.labels_layer(role)
        try:
            if layer is None:
                grid_role, color, _text = STRUCTURES[role]
                img_layer = self.image_layer(role)
                if img_layer is None:
                    raise AblationError(
                        f"load the {grid_role} image first: the {role} is drawn on the "
                        f"{grid_role} grid"
                    )
                ref = _layers.image_from_layer(img_layer)
                import SimpleITK as sitk

                lab = sitk.Image(ref.GetSize(), sitk.sitkUInt8)
                lab.CopyInformation(ref)
                meta = {_layers.META: {"drawn_on": grid_role}}
                model = self.session.model
                held = model.labels(role)
                grid = model.label_grid(role)
                if held is None or grid is None or not geometry.same_grid(grid, ref):
                    held = None
                layer = _layers.add_or_update_labels(
                    self.viewer, lab, role, color=color, opacity=0.5, metadata=meta, array=held
                )
                if held is not None and np.any(held):
                    _layers.notify_info(f"the case's {role} labels are shown again")
            else:
                # fixed, distinct colours whatever the layer's history
                layer.colormap = _layers.single_color_map(STRUCTURES[role][1])
        except AblationError as exc:
            self._error(exc)
            return None
        self._watch(layer)
        if select:
            self.viewer.layers.selection.active = layer
            layer.visible = True
            layer.selected_label = 1
            layer.mode = "paint"
            self.apply_brush_size(layer)
        self.schedule_readout()
        return layer

    def use_layer(self, layer, role: str | None = None):
        """Make an existing Labels layer the labels of the structure (it must be on its image's
        grid)."""
        role = role or self.role
        try:
            if layer is None or layer.__class__.__name__ != "Labels":
                raise AblationError("select a labels layer in the layer list first")
            other = self.labels_layer(role)
            # the session's rule: grid check, the replaced labels saved, the layer that held
            # them kept read-only as "<name> (previous)"
            kept = self.session.use_labels_layer(layer, role)
        except AblationError as exc:
            self._error(exc)
            return None
        if kept is not None and other is not None:
            _layers.notify_info(
                f"the {role} labels it replaces are kept read-only as '{other.name}' and "
                f"saved in {kept}"
            )
        elif kept is not None:
            _layers.notify_info(f"the {role} labels it replaces are saved in {kept}")
        self.structure.setCurrentIndex(list(STRUCTURES).index(role))
        out = self.ensure_labels_layer(select=True, role=role)
        self._notify_session(role)
        return out

    def _watch(self, layer) -> None:
        """Follow napari's own brush slider (label edits arrive through the case model)."""
        if id(layer) in self._watched:
            return
        self._watched.add(id(layer))
        layer.events.brush_size.connect(self._brush_changed_in_napari)

    def _brush_changed_in_napari(self, event=None) -> None:
        """Keep the mm box in step when the brush is resized with napari's own slider."""
        if not self.alive():
            return
        layer = getattr(event, "source", None)
        if layer is None or layer is not self.labels_layer() or self._setting_brush:
            return
        mm = float(layer.brush_size) * self._min_displayed_scale(layer)
        if abs(mm - self.brush_mm.value()) > 0.5 * self._min_displayed_scale(layer):
            self.brush_mm.blockSignals(True)
            self.brush_mm.setValue(mm)
            self.brush_mm.blockSignals(False)
            self.brush_info.setText(
                f"= {layer.brush_size} px at {self._min_displayed_scale(layer):.2f} mm"
            )

    def _labels_edited(self, role: str, _source: str = "") -> None:
        """The case model's labels changed (brush, undo, redo, bulk edit, load)."""
        if not self.alive():
            return
        if role == self.role:
            self.schedule_readout()
        p = self._preview
        if p is not None and _layers.role_of(p["target"]) == role and self.live_preview.isChecked():
            self._live_timer.start()  # the user is still drawing: refresh the preview soon

    def _live_refresh(self) -> None:
        if not self.alive() or self._preview is None:
            return
        if self._worker is not None:
            self._live_timer.start()
            return
        self.preview_interpolation(live=True)

    def _layers_changed(self, event=None) -> None:
        if not self.alive():
            return
        for role in STRUCTURES:
            layer = self.labels_layer(role)
            if layer is not None:
                self._watch(layer)
        names = [  # segmentations: not the margins' outputs (UAT s13 N7)
            ly.name
            for ly in self.viewer.layers
            if ly.__class__.__name__ == "Labels"
            and _layers.role_of(ly) not in (PREVIEW_ROLE, DISAGREEMENT_ROLE, *OUTPUT_ROLES)
        ]
        tumor = self.labels_layer("tumor")
        cur_b_kept = [self.cmp_b.currentText()] if self.cmp_b.currentText() in names else []
        for combo in (self.cmp_a, self.cmp_b):
            cur = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if cur in names:
                combo.setCurrentText(cur)
            elif combo is self.cmp_a and tumor is not None and tumor.name in names:
                combo.setCurrentText(tumor.name)  # A: the tumor
            elif names:
                combo.setCurrentIndex(0)
            combo.blockSignals(False)
        a = self.cmp_a.currentText()
        if self.cmp_b.currentText() == a or self.cmp_b.currentText() not in cur_b_kept:
            # B: another segmentation on A's grid (a second reader, or a correction); none
            # when there is none: tumor against ablation (pre and post grids) is always
            # refused (UAT s13 N7)
            same = [
                n
                for n in names
                if n != a
                and a in self.viewer.layers
                and _same_grid(self.viewer.layers[a], self.viewer.layers[n])
            ]
            self.cmp_b.blockSignals(True)
            if same:
                self.cmp_b.setCurrentText(same[0])
            else:
                self.cmp_b.setCurrentIndex(-1)
            self.cmp_b.blockSignals(False)
        if self._preview is not None and self._preview["layer"] not in self.viewer.layers:
            self._preview = None
            self._set_preview_buttons(False)
        self.schedule_readout()

    def _structure_changed(self, _i=None) -> None:
        self.cancel_interpolation()
        layer = self.labels_layer()
        if layer is not None:
            self._watch(layer)
            self.viewer.layers.selection.active = layer
            self.apply_brush_size(layer)
        self.schedule_readout()

    # ================================================================ dims / brush
    def view_axis(self) -> int:
        """The data axis the user is slicing through (the one not displayed in 2D)."""
        return int(self.viewer.dims.order[0]) if self.viewer.dims.ndim == 3 else 0

    def _dims_changed(self, event=None) -> None:
        if not self.alive():
            return
        axis = self.view_axis()
        self.axis_info.setText(
            f"Slices along {seg.AXIS_NAMES.get(axis, axis)} (the orientation you view)"
        )
        self.apply_brush_size()

    def _min_displayed_scale(self, layer) -> float:
        displayed = [d for d in self.viewer.dims.displayed if d < len(layer.scale)] or [1, 2]
        return float(min(abs(layer.scale[d]) for d in displayed))

    def brush_pixels(self, layer=None) -> int:
        """Brush size in napari's units (pixels of the finest displayed axis) for the mm value."""
        layer = layer or self.labels_layer()
        if layer is None:
            return 1
        return max(1, round(float(self.brush_mm.value() / self._min_displayed_scale(layer))))

    def apply_brush_size(self, layer=None) -> None:
        layer = layer or self.labels_layer()
        if layer is None:
            self.brush_info.setText("")
            return
        px = self.brush_pixels(layer)
        self._setting_brush = True
        try:
            layer.brush_size = px
        finally:
            self._setting_brush = False
        self.brush_info.setText(f"= {px} px at {self._min_displayed_scale(layer):.2f} mm")

    # ================================================================ live readout
    def schedule_readout(self) -> None:
        if self.alive():
            self._readout_timer.start()

    def update_readout(self) -> None:
        """Volume (ml) and maximum diameter (mm) of the current structure, off the GUI thread."""
        layer = self.labels_layer()
        if layer is None:
            self.readout.setText("no labels yet: press 'Create / edit labels'")
            self.last_stats = None
            return
        if self._readout_busy:
            self._readout_again = True
            return
        data = layer.data
        spacing = tuple(float(s) for s in layer.scale)
        name = STRUCTURES[self.role][2].split(" (")[0]

        def job():
            return seg.structure_stats(np.asarray(data), spacing)

        def done(stats):
            self._readout_busy = False
            if not self.alive():
                return
            self.last_stats = stats
            d = stats["max_diameter_mm"]
            self.readout.setText(
                f"{name}: volume {stats['volume_ml']:.2f} ml · {seg.DIAMETER_NAME} "
                + ("–" if d is None else f"{d:.1f}")
                + " mm"
            )
            if self._readout_again:
                self._readout_again = False
                self.schedule_readout()

        def failed(msg):
            self._readout_busy = False
            if not self.alive():
                return
            self.readout.setText(msg)

        self._readout_busy = True
        from ._layers import start_worker

        self._readout_worker = start_worker(job, on_returned=done, on_error=failed)

    # ================================================================ jobs
    def _error(self, exc) -> None:
        self.last_error = exc if isinstance(exc, str) else one_line(exc)
        cause = getattr(exc, "exc", exc)  # (a background job's message keeps its exception)
        if isinstance(cause, NothingToDo):  # a valid request that changes nothing: information
            _layers.notify_info(self.last_error)
        else:
            _layers.notify_error(self.last_error)

    def _run(self, job, on_done, desc: str, on_error=None) -> None:
        """Run ``job()`` off the GUI thread, then ``on_done(result)`` on it; errors in one line."""
        if self._worker is not None:
            self._error("busy: wait for the current operation to finish")
            return
        self.last_error = None
        self.progress.setVisible(True)
        self.progress.setFormat(desc)
        for b in self._job_buttons:
            b.setEnabled(False)

        def finished():
            self._worker = None
            if self.alive():
                self.progress.setVisible(False)
                for b in self._job_buttons:
                    b.setEnabled(True)

        def returned(result):
            if not self.alive():
                return
            try:
                on_done(result)
            except AblationError as exc:
                self._error(exc)

        def error(msg):
            if self.alive():
                (on_error or self._error)(msg)

        self._worker = _layers.start_worker(
            job, on_returned=returned, on_error=error, on_finished=finished, desc=desc
        )

    def _notify_session(self, role: str) -> None:
        if self.session is not None:
            with contextlib.suppress(Exception):
                self.session.labels_changed(role)

    def _target(self):
        """(layer, role) of the current structure, or raise when there is none (or it is
        read-only: a quiz question is open on the case)."""
        lock = self.session.edit_lock(self.role) if self.session is not None else None
        if lock:
            raise AblationError(lock)
        layer = self.labels_layer()
        if layer is None:
            raise AblationError(
                "no labels for this structure yet: press 'Create / edit labels' and draw"
            )
        return layer, self.role

    # ================================================================ interpolation
    def _interpolate_key(self, viewer=None) -> None:
        if not self.alive():
            return
        if self._preview is None:
            self.preview_interpolation()
        else:
            self.accept_interpolation()

    def preview_interpolation(self, live: bool = False) -> None:
        """Compute the interpolation along the viewed axis and show it as a preview layer.

        ``live``: refresh the preview being shown (the user drew more slices) in place.
        """
        try:
            layer, role = self._target()
        except AblationError as exc:
            self._error(exc)
            return
        if not live:
            self.cancel_interpolation()
        data = np.asarray(layer.data)
        axis = self.view_axis()
        spacing = tuple(float(s) for s in layer.scale)
        label = int(layer.selected_label) if np.any(data == layer.selected_label) else None

        def job():
            box, new = seg.interpolate_box(data, axis, spacing, label=label)
            old = data[box].copy()
            return box, old, new

        def done(res):
            box, old, new = res
            added = new != old
            if not added.any():
                self.cancel_interpolation()
                raise AblationError(
                    "interpolation adds nothing: the drawn slices already cover the structure"
                )
            preview = np.where(added, new, 0).astype(np.uint8)
            offset = np.array([b.start for b in box], float) * np.asarray(layer.scale)
            kw = {
                "name": "interpolation preview",
                "scale": tuple(layer.scale),
                "translate": tuple(np.asarray(layer.translate) + offset),
                "opacity": 0.7,
                "metadata": {_layers.META: {"role": PREVIEW_ROLE}},
                "colormap": _layers.single_color_map(PREVIEW_COLOR),
                "units": geometry.UNITS,
                "axis_labels": geometry.AXIS_LABELS,
            }
            old_prev = _layers.find_layer(self.viewer, PREVIEW_ROLE)
            if live and old_prev is not None:
                old_prev.data = preview
                old_prev.translate = kw["translate"]
                pl = old_prev
            else:
                if old_prev is not None:
                    self.viewer.layers.remove(old_prev)
                pl = self.viewer.add_labels(preview, **kw)
                self.viewer.layers.selection.active = layer
            self._preview = {
                "layer": pl,
                "box": box,
                "old": old,
                "new": new,
                "target": layer,
                "role": role,
                "axis": axis,
            }
            self._set_preview_buttons(True)
            n = int(added.sum())
            if live:
                return
            _layers.notify_info(
                f"interpolation preview: adds {n} voxels "
                f"({seg.mask_volume_ml(added, spacing):.2f} ml) along "
                f"{seg.AXIS_NAMES[axis]}; Accept ({INTERPOLATE_KEY}) or Cancel"
            )

        def failed(msg):
            if live:  # e.g. the user erased a slice and fewer than two are left
                self.cancel_interpolation()
            self._error(msg)

        self._run(job, done, "interpolating", on_error=failed)

    def _set_preview_buttons(self, on: bool) -> None:
        self.accept_btn.setEnabled(on)
        self.cancel_btn.setEnabled(on)

    def accept_interpolation(self) -> int:
        """Write the previewed voxels into the labels (one undo step). Returns voxels written."""
        p = self._preview
        if p is None:
            self._error("nothing to accept: preview an interpolation first")
            return 0
        self._live_timer.stop()
        self.cancel_interpolation()
        layer, box = p["target"], p["box"]
        current = np.asarray(layer.data[box])
        # only fill voxels that are still background: edits made since the preview win
        new = np.where((p["new"] != p["old"]) & (current == 0), p["new"], current)
        n = write_changes(layer, box, current, new)
        self._notify_session(p["role"])
        self.schedule_readout()
        return n

    def cancel_interpolation(self) -> None:
        p, self._preview = self._preview, None
        if p is not None and p["layer"] in self.viewer.layers:
            self.viewer.layers.remove(p["layer"])
        self._set_preview_buttons(False)

    # ================================================================ correction
    def correct(self, op: str) -> None:
        """Apply a correction operation to the current structure (one undo step)."""
        try:
            layer, role = self._target()
            data = np.asarray(layer.data)
            value = int(layer.selected_label) or 1
            sp = np.asarray(layer.scale, float)
            if not np.any(data == value):
                raise AblationError(
                    f"the {role} labels are empty (label {value}): nothing to correct"
                )
            axis = self.view_axis()
            params = {
                "smooth": self.smooth_mm.value(),
                "grow_shrink": self.grow_mm.value(),
                "remove_islands": self.islands_ml.value(),
            }
            if op == "erase_slice":
                idx = int(np.round(layer.world_to_data(self.viewer.dims.point)[axis]))
                if not 0 <= idx < data.shape[axis]:
                    raise AblationError("the current slice is outside the labels")
            else:
                idx = None
        except AblationError as exc:
            self._error(exc)
            return

        def job():
            pad = max(params["grow_shrink"], 0) + 3 * params["smooth"] + 2 * float(sp.max())
            box = seg.bbox(data == value, np.ceil(pad / sp).astype(int))
            sub = data[box]
            mask = sub == value
            if op == "fill_holes":
                new_mask = seg.fill_holes(mask, axis=axis)  # 3D, then the slices being viewed
            elif op == "smooth":
                new_mask = seg.smooth(mask, sp, params["smooth"])
            elif op == "grow_shrink":
                new_mask = seg.grow_shrink(mask, sp, params["grow_shrink"])
            elif op == "remove_islands":
                new_mask = seg.remove_small_islands(
                    mask, sp, min_volume_ml=params["remove_islands"]
                )
            elif op == "keep_largest":
                new_mask = seg.remove_small_islands(mask, sp, keep_largest=True)
            elif op == "erase_slice":
                local = idx - box[axis].start
                new_mask = mask.copy()
                if 0 <= local < mask.shape[axis]:
                    np.moveaxis(new_mask, axis, 0)[local] = False
            else:  # pragma: no cover - buttons only
                raise AblationError(f"unknown correction '{op}'")
            return box, sub.copy(), seg.apply_mask(sub, value, new_mask)

        def done(res):
            box, old, new = res
            current = np.asarray(layer.data[box])
            changed = (new != old) & (current == old)  # do not undo edits made meanwhile
            n = write_changes(layer, box, current, np.where(changed, new, current))
            if n == 0:  # not an edit: the case (and its margin analysis) stays as it is
                _layers.notify_info(f"{op.replace('_', ' ')}: nothing changed")
                return
            self._notify_session(role)
            self.schedule_readout()

        self._run(job, done, op.replace("_", " "))

    def undo(self) -> None:
        layer = self.labels_layer()
        if layer is not None:
            layer.undo()
            self._notify_session(self.role)
            self.schedule_readout()

    # ================================================================ assistance
    def _image_for(self, layer, role):
        img_layer = self.image_layer(role)
        if img_layer is None:
            raise AblationError(f"no {STRUCTURES[role][0]} image layer: load the case first")
        if img_layer.data.shape != layer.data.shape or not np.allclose(
            img_layer.scale, layer.scale
        ):
            raise AblationError(
                f"the {role} labels are not on the {STRUCTURES[role][0]} image grid"
            )
        return img_layer

    def refine(self) -> None:
        """Move the outline onto the image edges within the band (one undo step)."""
        try:
            layer, role = self._target()
            img_layer = self._image_for(layer, role)
        except AblationError as exc:
            self._error(exc)
            return
        data = np.asarray(layer.data)
        image = np.asarray(img_layer.data)
        value = int(layer.selected_label) or 1
        sp = np.asarray(layer.scale, float)
        band = self.band_mm.value()

        def job():
            mask = data == value
            box = seg.bbox(mask, np.ceil((2 * band + 3 * sp.max()) / sp).astype(int))
            if box is None:
                raise AblationError(
                    f"draw a rough outline of the {role} first: the labels are empty"
                )
            refined = seg.refine_to_edges(image[box], mask[box], sp, band_mm=band)
            sub = data[box]
            return box, sub.copy(), seg.apply_mask(sub, value, refined)

        def done(res):
            box, old, new = res
            current = np.asarray(layer.data[box])
            n = write_changes(
                layer, box, current, np.where((new != old) & (current == old), new, current)
            )
            _layers.notify_info(f"refined to edges: {n} voxels changed")
            self._notify_session(role)
            self.schedule_readout()

        self._run(job, done, "refining to edges")

    def _seed_mode(self, on: bool) -> None:
        cbs = self.viewer.mouse_drag_callbacks
        if on:
            layer = self.ensure_labels_layer(select=True)
            if layer is None:
                self.seed_btn.setChecked(False)
                return
            layer.mode = "pan_zoom"
            if self._seed_cb is None:

                def _cb(viewer, event):
                    if not self.alive():
                        return
                    if event.type == "mouse_press" and self.seed_btn.isChecked():
                        pos = tuple(event.position)
                        # leave napari's callback loop before the callback list changes
                        QTimer.singleShot(0, lambda: self.seed_at(pos))

                self._seed_cb = _cb
            if self._seed_cb not in cbs:
                cbs.append(self._seed_cb)
            _layers.notify_info("click inside the structure to grow a region")
        elif self._seed_cb in cbs:
            cbs.remove(self._seed_cb)

    def seed_at(self, world_point) -> None:
        """Grow a 3D region from a world point (z, y, x mm) and add it to the structure."""
        self.seed_btn.setChecked(False)
        try:
            layer, role = self._target()
            img_layer = self._image_for(layer, role)
            world = np.asarray(world_point, float)[-3:]
            seed = np.asarray(img_layer.world_to_data(world), float)
            if np.any(np.round(seed) < 0) or np.any(
                np.round(seed) >= np.asarray(img_layer.data.shape)
            ):
                raise AblationError("the seed is outside the image: click inside the structure")
        except AblationError as exc:
            self._error(exc)
            return
        image = np.asarray(img_layer.data)
        data = np.asarray(layer.data)
        value = int(layer.selected_label) or 1
        sp = np.asarray(layer.scale, float)
        radius, tol = self.seed_radius.value(), self.seed_tol.value()

        def job():
            region = seg.seeded_region(image, seed, sp, max_radius_mm=radius, tolerance=tol or None)
            box = seg.bbox(region)
            sub = data[box]
            new = np.where(region[box] & (sub == 0), value, sub).astype(sub.dtype)
            return box, sub.copy(), new, seg.mask_volume_ml(region, sp)

        def done(res):
            box, old, new, ml = res
            current = np.asarray(layer.data[box])
            write_changes(
                layer, box, current, np.where((new != old) & (current == 0), new, current)
            )
            layer.mode = "paint"
            _layers.notify_info(
                f"seeded region: {ml:.2f} ml added; correct with the brush or the tools below"
            )
            self._notify_session(role)
            self.schedule_readout()

        self._run(job, done, "growing region")

    # ================================================================ comparison
    def compare(self) -> dict | None:
        """Dice, HD95 and volume difference of layers A and B, and a disagreement layer."""
        try:
            a_name, b_name = self.cmp_a.currentText(), self.cmp_b.currentText()
            if not a_name or not b_name:
                raise AblationError(
                    "choose two labels layers of one grid to compare (B: another segmentation "
                    "of A's structure, e.g. a second reader's)"
                )
            if a_name == b_name:
                raise AblationError("choose two different labels layers")
            la, lb = self.viewer.layers[a_name], self.viewer.layers[b_name]
            if not _same_grid(la, lb):
                raise AblationError(f"'{a_name}' and '{b_name}' are not on the same grid")
        except (AblationError, KeyError) as exc:
            self._error(exc)
            return None
        a, b = np.asarray(la.data) != 0, np.asarray(lb.data) != 0
        sp = tuple(float(s) for s in la.scale)

        def job():
            res = seg.compare_masks(a, b, sp)
            dis = seg.disagreement(a, b)
            return res, dis

        def done(out):
            res, dis = out
            self.last_comparison = res
            hd = "–" if math.isnan(res["hd95_mm"]) else f"{res['hd95_mm']:.1f} mm"
            self.cmp_result.setText(
                f"Dice {res['dice']:.3f} · HD95 {hd} · volume A {res['volume_a_ml']:.2f} ml, "
                f"B {res['volume_b_ml']:.2f} ml (B−A {res['volume_diff_ml']:+.2f} ml) · "
                f"only A {res['only_a_ml']:.2f} ml (red), only B {res['only_b_ml']:.2f} ml (blue)"
            )
            from napari.utils.colormaps import DirectLabelColormap

            cmap = DirectLabelColormap(
                color_dict={None: "transparent", 0: "transparent", **DISAGREEMENT_COLORS}
            )
            old = _layers.find_layer(self.viewer, DISAGREEMENT_ROLE)
            if old is not None and old.data.shape == dis.shape:
                old.data = dis
                old.scale, old.translate = la.scale, la.translate
            else:
                if old is not None:
                    self.viewer.layers.remove(old)
                self.viewer.add_labels(
                    dis,
                    name=f"disagreement ({a_name} / {b_name})",
                    scale=la.scale,
                    translate=la.translate,
                    colormap=cmap,
                    opacity=0.8,
                    metadata={_layers.META: {"role": DISAGREEMENT_ROLE}},
                    units=geometry.UNITS,
                    axis_labels=geometry.AXIS_LABELS,
                )

        self._run(job, done, "comparing")
        return None
