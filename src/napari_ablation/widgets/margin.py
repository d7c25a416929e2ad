"""Margin widget: the minimal treatment margin, the green/yellow/red margin layer and the report.

A thin layer over :func:`napari_ablation.core.margin.analyze_margin` (the same function the
CLI calls, so the numbers agree):

* inputs: tumor labels (pre grid), ablation labels (post grid), the registration (from the
  case, identity, or a ``.tfm`` file) and the threshold (defaults from the case);
* the analysis runs off the GUI thread and reruns, debounced, whenever a label layer is
  edited or the case's registration/threshold changes;
* outputs: the margin Labels layer on the pre grid (1 green, 2 yellow, 3 red) with a
  legend, a point at the minimal margin with a button that centres every view on it, the
  ablation outline in pre space, 3D surfaces (tumor coloured by margin, ablation zone), a
  results table that copies as TSV, the histogram / cumulative curve, and exports
  (JSON, CSV, HTML, PDF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core import coverage, geometry, report, uncertainty
from ..core import margin as core_margin
from ..core import transform as tfm
from ..core.errors import AblationError, one_line
from . import _layers
from .session import CaseSession

DEBOUNCE_MS = 500
TX_CASE, TX_IDENTITY, TX_FILE = "registration of the case", "identity (no registration)", "transform file…"
ROLE_SURFACE = "margin_surface"
ROLE_ABLATION_SURFACE = "ablation_surface"


def margin_surface_colormap(threshold: float):
    """Continuous colormap for surface margins: dark red .. red below 0, yellow up to the
    threshold, green above; sharp steps at 0 and at the threshold. Returns (colormap, limits)."""
    from napari.utils.colormaps import Colormap

    t = max(float(threshold), 0.5)
    lo, hi = -max(t, 3.0), 2.0 * t + 2.0
    p0, pt = (0 - lo) / (hi - lo), (t - lo) / (hi - lo)
    e = 1e-4
    colors = [
        [0.45, 0.0, 0.0, 1], [0.84, 0.15, 0.16, 1],  # < 0
        [1.0, 0.70, 0.0, 1], [1.0, 0.90, 0.2, 1],  # 0 .. t
        [0.45, 0.80, 0.35, 1], [0.05, 0.40, 0.10, 1],  # >= t
    ]
    controls = [0.0, p0 - e, p0, pt - e, pt, 1.0]
    return Colormap(colors=colors, controls=controls, name=f"margin_t{t:g}"), (lo, hi)


class MarginWidget(QWidget):
    """Dock widget: margin analysis of the current case."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result: core_margin.MarginResult | None = None
        self.uncertainty: uncertainty.MarginUncertainty | None = None
        self._file_transform: sitk.Transform | None = None
        self._file_transform_path: str | None = None
        self._worker = None
        self._pending = False
        self._watched: dict[int, object] = {}
        self.session = CaseSession.of(napari_viewer)
        self.session.attach_widget(self)
        self.session.changed.connect(self._on_session_changed)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.run)
        self._build_ui()
        self._refresh_layer_choices()
        self._threshold_from_case()
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.tumor_combo = QComboBox()
        self.ablation_combo = QComboBox()
        self.tx_combo = QComboBox()
        self.tx_combo.addItems([TX_CASE, TX_IDENTITY, TX_FILE])
        self.tx_combo.activated.connect(self._on_tx_choice)
        self.tx_label = QLabel("")
        self.tx_label.setWordWrap(True)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-20.0, 30.0)
        self.threshold.setDecimals(1)
        self.threshold.setSingleStep(0.5)
        self.threshold.setSuffix(" mm")
        self.threshold.setValue(5.0)
        self.threshold.valueChanged.connect(self._on_threshold)
        presets = QHBoxLayout()
        for v in core_margin.THRESHOLD_PRESETS:
            b = QPushButton(f"{v:g}")
            b.setMaximumWidth(36)
            b.setToolTip(f"threshold {v:g} mm")
            b.clicked.connect(lambda _=False, v=v: self.threshold.setValue(v))
            presets.addWidget(b)
        form.addRow("tumor (pre)", self.tumor_combo)
        form.addRow("ablation (post)", self.ablation_combo)
        form.addRow("registration", self.tx_combo)
        form.addRow("", self.tx_label)
        form.addRow("threshold", self.threshold)
        form.addRow("presets (mm)", presets)
        self.registration_sd = QDoubleSpinBox()
        self.registration_sd.setRange(0.0, 10.0)
        self.registration_sd.setDecimals(1)
        self.registration_sd.setSingleStep(0.5)
        self.registration_sd.setSuffix(" mm")
        self.registration_sd.setSpecialValueText("off")
        self.registration_sd.setToolTip(
            "how far you trust the registration at the tumor (SD per axis): with a value, the MTM gets a 95 % "
            "interval (registration and half-a-voxel boundary error) and the margin layer an 'uncertain' class")
        self.registration_sd.valueChanged.connect(lambda *_: self._inputs_changed())
        form.addRow("registration SD", self.registration_sd)
        lay.addLayout(form)
        self.tumor_combo.activated.connect(lambda *_: self._inputs_changed())
        self.ablation_combo.activated.connect(lambda *_: self._inputs_changed())

        row = QHBoxLayout()
        self.run_btn = QPushButton("Compute margins")
        self.run_btn.clicked.connect(self.run)
        self.live = QCheckBox("update on edit")
        self.live.setChecked(True)
        self.live.setToolTip("recompute (debounced, in the background) when a label layer is edited")
        row.addWidget(self.run_btn)
        row.addWidget(self.live)
        lay.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)

        self.big = QLabel("MTM = —")
        f = self.big.font()
        f.setPointSize(f.pointSize() + 5)
        f.setBold(True)
        self.big.setFont(f)
        self.big.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.big)
        self.interval = QLabel("")
        self.interval.setWordWrap(True)
        self.interval.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.interval)
        self.where = QLabel("")
        self.where.setWordWrap(True)
        lay.addWidget(self.where)

        legend = QGridLayout()
        self.legend_labels = {}
        names = {**_layers.MARGIN_NAMES, coverage.UNCERTAIN_LABEL: coverage.UNCERTAIN_KEY}
        colors = {**_layers.MARGIN_COLORS, coverage.UNCERTAIN_LABEL: coverage.UNCERTAIN_COLOR}
        for i, (k, name) in enumerate(names.items()):
            sw = QLabel()
            sw.setFixedSize(14, 14)
            sw.setStyleSheet(f"background-color: {colors[k]}; border: 1px solid #444;")
            txt = QLabel(name)
            legend.addWidget(sw, i, 0)
            legend.addWidget(txt, i, 1)
            self.legend_labels[k] = txt
        lay.addLayout(legend)

        row = QHBoxLayout()
        self.center_btn = QPushButton("Centre on minimal margin")
        self.center_btn.clicked.connect(self.center_on_mtm)
        self.center_btn.setEnabled(False)
        self.surface_btn = QPushButton("3D surfaces")
        self.surface_btn.setToolTip("tumor surface coloured by margin beside the ablation surface")
        self.surface_btn.clicked.connect(self.show_3d)
        self.surface_btn.setEnabled(False)
        row.addWidget(self.center_btn)
        row.addWidget(self.surface_btn)
        lay.addLayout(row)

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["figure", "value", "unit"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(180)
        lay.addWidget(self.table)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.2, 2.4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)
        lay.addWidget(self.canvas)

        row = QHBoxLayout()
        self.copy_btn = QPushButton("Copy table")
        self.copy_btn.clicked.connect(self.copy_table)
        row.addWidget(self.copy_btn)
        self.export_btns = {}
        for fmt in ("JSON", "CSV", "HTML", "PDF"):
            b = QPushButton(fmt)
            b.setToolTip(f"export the figures as {fmt}")
            b.clicked.connect(lambda _=False, fmt=fmt: self._export_dialog(fmt))
            row.addWidget(b)
            self.export_btns[fmt] = b
        lay.addLayout(row)
        for b in (self.copy_btn, *self.export_btns.values()):
            b.setEnabled(False)
        lay.addStretch(1)

    # ------------------------------------------------------------------ inputs
    def _label_layers(self):
        from napari.layers import Labels

        return [ly for ly in self.viewer.layers if isinstance(ly, Labels) and _layers.role_of(ly) not in
                ("margin", "ablation_registered")]

    def _refresh_layer_choices(self) -> None:
        for combo, role in ((self.tumor_combo, "tumor"), (self.ablation_combo, "ablation")):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            names = [ly.name for ly in self._label_layers()]
            combo.addItems(names)
            default = _layers.find_layer(self.viewer, role)
            # keep the user's choice, unless it is the other structure (layers arrive one
            # by one: the tumor layer is the only choice until the ablation layer exists)
            cur_role = _layers.role_of(self.viewer.layers[current]) if current in names else None
            wrong = cur_role in ("tumor", "ablation") and cur_role != role
            if current in names and not (wrong and default is not None):
                combo.setCurrentText(current)
            elif default is not None and default.name in names:
                combo.setCurrentText(default.name)
            combo.blockSignals(False)
        self._watch_inputs()

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and _layers.role_of(layer) in ("margin", "ablation_registered", "mtm_point",
                                                             ROLE_SURFACE, ROLE_ABLATION_SURFACE):
            return
        self._refresh_layer_choices()

    def _layer(self, combo):
        name = combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def _watch_inputs(self) -> None:
        for combo in (self.tumor_combo, self.ablation_combo):
            layer = self._layer(combo)
            if layer is None or id(layer) in self._watched:
                continue
            self._watched[id(layer)] = layer
            for name in ("labels_update", "paint", "data"):
                ev = getattr(layer.events, name, None)
                if ev is not None:
                    ev.connect(self._on_label_edit)

    def _on_label_edit(self, event=None) -> None:
        src = getattr(event, "source", None)
        if src is not None and src not in (self._layer(self.tumor_combo), self._layer(self.ablation_combo)):
            return
        if self.live.isChecked() and self.result is not None:
            self._timer.start()

    def _inputs_changed(self) -> None:
        self._watch_inputs()
        if self.live.isChecked() and self.result is not None:
            self._timer.start()

    def _on_session_changed(self, what: str) -> None:
        if what in ("transform", "case") and self.tx_combo.currentText() == TX_CASE:
            self._show_tx_label()
            if self.result is not None and self.live.isChecked():
                self._timer.start()
        if what in ("settings", "case"):
            self._threshold_from_case()
        if what == "case":
            self._refresh_layer_choices()

    def _threshold_from_case(self) -> None:
        case = self.session.case if self.session is not None else None
        if case is not None:
            t = case.settings.get("threshold_mm")
            if t is not None and abs(float(t) - self.threshold.value()) > 1e-9:
                self.threshold.blockSignals(True)
                self.threshold.setValue(float(t))
                self.threshold.blockSignals(False)
        self._show_tx_label()

    def _on_threshold(self, value: float) -> None:
        if self.session is not None:
            try:
                self.session.update_settings(threshold_mm=float(value))
            except Exception:  # noqa: BLE001 - the setting is a convenience
                pass
        if self.result is not None:
            self._timer.start()

    def _on_tx_choice(self, *_):
        if self.tx_combo.currentText() == TX_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Registration pre -> post (ITK)", "",
                                                  "ITK transform (*.tfm *.txt *.h5)")
            if not path or not self.load_transform_file(path):
                self.tx_combo.setCurrentText(TX_CASE)
        self._show_tx_label()
        if self.result is not None:
            self._timer.start()

    def load_transform_file(self, path: str) -> bool:
        """Use a transform file (ITK convention, pre -> post). Returns False (and notifies) if unusable."""
        try:
            self._file_transform = tfm.read_rigid_transform(path)
        except AblationError as exc:
            _layers.notify_error(exc)
            return False
        self._file_transform_path = str(path)
        self.tx_combo.setCurrentText(TX_FILE)
        self._show_tx_label()
        return True

    def transform(self) -> sitk.Transform | None:
        choice = self.tx_combo.currentText()
        if choice == TX_IDENTITY:
            return None
        if choice == TX_FILE:
            return self._file_transform
        case = self.session.case if self.session is not None else None
        return case.transform if case is not None else None

    def _show_tx_label(self) -> None:
        tx = self.transform()
        if tx is None:
            text = "identity: post and pre share one patient space"
            if self.tx_combo.currentText() == TX_CASE:
                text = "the case has no registration yet: identity"
        else:
            A, b = tfm.matrix_offset(tx)
            text = f"rotation {tfm.rotation_angle_deg(tx):.1f}°, shift {np.linalg.norm(b):.1f} mm"
            if self.tx_combo.currentText() == TX_FILE and self._file_transform_path:
                text = f"{Path(self._file_transform_path).name}: {text}"
        self.tx_label.setText(text)

    def set_threshold(self, value: float) -> None:
        self.threshold.setValue(float(value))

    def set_layers(self, tumor=None, ablation=None) -> None:
        """Select the input layers (layer objects or names)."""
        if tumor is not None:
            self.tumor_combo.setCurrentText(getattr(tumor, "name", tumor))
        if ablation is not None:
            self.ablation_combo.setCurrentText(getattr(ablation, "name", ablation))
        self._watch_inputs()

    # ------------------------------------------------------------------ analysis
    def _gather(self):
        tl, al = self._layer(self.tumor_combo), self._layer(self.ablation_combo)
        if tl is None:
            raise AblationError("choose the tumor labels layer (drawn on the pre image)")
        if al is None:
            raise AblationError("choose the ablation-zone labels layer (drawn on the post image)")
        if tl is al:
            raise AblationError("the tumor and the ablation zone must be two different label layers")
        case = self.session.case if self.session is not None else None
        settings = case.settings if case is not None else {}
        return (_layers.mask_from_layer(tl, settings.get("tumor_label")),
                _layers.mask_from_layer(al, settings.get("ablation_label")),
                self.transform(), float(self.threshold.value()))

    def run(self):
        """Start the analysis in the background (returns the worker, or None on bad input)."""
        self._timer.stop()
        if self._worker is not None:
            self._pending = True  # rerun when the current one ends
            return self._worker
        try:
            tumor, ablation, tx, t = self._gather()
        except AblationError as exc:
            _layers.notify_error(exc)
            self.status.setText(one_line(exc))
            return None
        self.status.setText("computing margins…")
        self.run_btn.setEnabled(False)

        sd = float(self.registration_sd.value())

        def job():
            res = core_margin.analyze_margin(tumor, ablation, tx, t)
            if sd <= 0:
                return res, None
            reg = uncertainty.translation_samples(sd, uncertainty.DEFAULT_SAMPLES, np.random.default_rng(0),
                                                  res.tumor_centroid_lps)
            return res, uncertainty.margin_uncertainty(res, reg, tumor=tumor, ablation=ablation, transform=tx)

        self._worker = _layers.start_worker(job, on_returned=self._on_result, on_error=self._on_error,
                                            on_finished=self._on_finished, desc="margin analysis")
        return self._worker

    def _on_error(self, message: str) -> None:
        _layers.notify_error(message)
        self.status.setText(message)

    def _on_finished(self) -> None:
        self._worker = None
        self.run_btn.setEnabled(True)
        if self._pending:
            self._pending = False
            self._timer.start()

    def _on_result(self, out) -> None:
        res, self.uncertainty = out
        self.result = res
        try:
            self._show(res)
        except Exception as exc:  # noqa: BLE001 - never a traceback in the GUI
            _layers.notify_error(exc)

    # ------------------------------------------------------------------ outputs
    def _show(self, res: core_margin.MarginResult) -> None:
        color = "#d62728" if res.min_margin_mm < 0 else "#b8860b" if res.min_margin_mm < res.threshold_mm else "#2ca02c"
        self.big.setText(res.margin_text())
        self.big.setStyleSheet(f"color: {color};")
        self.where.setText(
            f"rounded {res.min_margin_mm_rounded:d} mm, at the {res.min_margin_octant} side; complete coverage: "
            f"{'yes' if res.complete_coverage else 'NO'}"
        )
        f = res.volume_fraction
        names = {1: f"margin \u2265 {res.threshold_mm:g} mm", 2: f"covered, margin < {res.threshold_mm:g} mm",
                 3: "not covered"}
        for k, key in ((1, "covered_with_margin"), (2, "insufficient_margin"), (3, "uncovered")):
            self.legend_labels[k].setText(f"{names[k]}: {100 * f[key]:.1f} % ({res.volume_ml[key]:.2f} ml)")
        unc = self.uncertainty
        self.interval.setText("" if unc is None else unc.interval_text())
        self.interval.setToolTip("" if unc is None else unc.summary_text())
        self.legend_labels[coverage.UNCERTAIN_LABEL].setText(
            f"{coverage.UNCERTAIN_KEY}: class changes in > 5 % of samples"
            + ("" if unc is None else f" ({unc.uncertain_volume_ml:.2f} ml)"))
        self.status.setText("; ".join(f"warning: {w}" for w in res.warnings) or "up to date")
        if res.warnings:
            _layers.notify_warning(res.warnings[0])
        rows = res.rows() + (unc.rows() if unc is not None else [])
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, v in enumerate(r):
                item = QTableWidgetItem(v)
                item.setFlags(item.flags() & ~Qt.ItemIsEditable)
                if j == 1:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                self.table.setItem(i, j, item)
        self.figure.clear()
        report.plot_histogram(res, ax=self.figure.add_subplot(1, 1, 1), fig=self.figure)
        self.canvas.draw_idle()
        self._update_layers(res)
        for b in (self.center_btn, self.surface_btn, self.copy_btn, *self.export_btns.values()):
            b.setEnabled(True)
        if any(_layers.role_of(ly) == ROLE_SURFACE for ly in self.viewer.layers):
            self.show_3d()

    def _update_layers(self, res: core_margin.MarginResult) -> None:
        v = self.viewer
        tl = self._layer(self.tumor_combo)
        first = _layers.find_layer(v, "margin") is None
        if first:
            # the margin is read in pre space: one overlay (no side-by-side grid), the post
            # layers hidden (the registered ablation outline stands in for them; the
            # registration QA overlay would wash out the colours)
            _layers.grid(v).enabled = False
            al = self._layer(self.ablation_combo)
            for layer in (al, _layers.find_layer(v, "post"), _layers.find_layer(v, "post_registered")):
                if layer is not None:
                    layer.visible = False
        meta = {"threshold_mm": res.threshold_mm}
        classes = res.margin_labels_image() if self.uncertainty is None else self.uncertainty.margin_labels_image(res)
        lab = _layers.add_or_update_labels(v, classes, "margin", colormap=_layers.margin_colormap(),
                                           opacity=0.6, metadata={_layers.META: meta})
        lab.colormap = _layers.margin_colormap()
        # the ablation zone brought into pre space, as an outline on a box around the tumor
        outline = res.ablation_on_pre_image()
        ol = _layers.add_or_update_labels(v, outline, "ablation_registered", color=_layers.ABLATION_COLOR)
        ol.contour = 1
        ol.opacity = 0.9
        # the minimal margin point
        # on the margin layer's (pre) grid, so that napari keeps stepping slice by slice
        world = geometry.lps_to_world(res.min_margin_point_lps)
        scale, translate = np.asarray(lab.scale, float), np.asarray(lab.translate, float)
        data = (np.asarray(world) - translate) / scale
        pts = _layers.find_layer(v, "mtm_point")
        if pts is None:
            pts = v.add_points(
                [data], name=_layers.ROLES["mtm_point"], size=4, face_color="white", border_color="black",
                symbol="cross", metadata={_layers.META: {"role": "mtm_point"}}, units="mm",
                axis_labels=geometry.AXIS_LABELS, scale=scale, translate=translate,
            )
        else:
            pts.scale, pts.translate = scale, translate
            pts.data = np.asarray([data])
        pts.features = {"margin_mm": [round(res.min_margin_mm, 2)]}
        pts.text = {"string": "MTM {margin_mm} mm", "color": "white", "anchor": "upper_left", "size": 10}
        # keep the picture readable: margin over tumor, outline and point on top
        for layer in (lab, ol, pts):
            i = v.layers.index(layer)
            if i != len(v.layers) - 1:
                v.layers.move(i, len(v.layers))
        if tl is not None and tl.visible:
            tl.opacity = min(tl.opacity, 0.3)
        if first and v.dims.ndisplay == 2:
            # frame the tumor (about 3 diameters across) on the slice of the minimal margin
            v.reset_view()
            lo, hi = (np.asarray(e, float) for e in v.layers.extent.world)
            scene = float(np.max((hi - lo)[list(v.dims.displayed)]))
            _layers.camera(v).zoom *= max(1.0, scene / (3.0 * max(res.tumor_max_diameter_mm, 10.0)))
            self.center_on_mtm()

    def center_on_mtm(self) -> None:
        """Put every view's slice through the minimal margin point and the camera on it
        (whatever axes the canvas shows: axial, coronal, sagittal, or 3D)."""
        if self.result is None:
            return
        pt = [float(v) for v in geometry.lps_to_world(self.result.min_margin_point_lps)]
        v = self.viewer
        if v.dims.ndim != 3:
            _layers.center_view_on(v, pt)
            return
        v.dims.point = tuple(pt)
        _layers.camera(v).center = tuple(pt[d] for d in v.dims.displayed)

    def show_3d(self) -> None:
        """Tumor surface coloured by margin (threshold marked) beside the ablation surface, in 3D."""
        res = self.result
        if res is None:
            return
        cmap, limits = margin_surface_colormap(res.threshold_mm)
        ts = res.tumor_surface
        data = (geometry.lps_to_world(ts.verts), ts.faces, np.asarray(res.surface_margin_mm, dtype=np.float32))
        layer = _layers.find_layer(self.viewer, ROLE_SURFACE)
        if layer is None:
            layer = self.viewer.add_surface(data, name="tumor surface (margin)", colormap=cmap, contrast_limits=limits,
                                            metadata={_layers.META: {"role": ROLE_SURFACE}}, units="mm",
                                            axis_labels=geometry.AXIS_LABELS)
        else:
            layer.data = data
            layer.colormap = cmap
            layer.contrast_limits = limits
        a = res.ablation_surface
        adata = (geometry.lps_to_world(a.verts), a.faces, np.zeros(len(a.verts), np.float32))
        al = _layers.find_layer(self.viewer, ROLE_ABLATION_SURFACE)
        if al is None:
            from napari.utils.colormaps import Colormap

            cyan = Colormap(colors=[[0, 0.78, 1, 1], [0, 0.78, 1, 1]], name="ablation_cyan")
            al = self.viewer.add_surface(adata, name="ablation surface (pre space)", colormap=cyan, opacity=0.15,
                                         blending="translucent_no_depth",
                                         metadata={_layers.META: {"role": ROLE_ABLATION_SURFACE}}, units="mm",
                                         axis_labels=geometry.AXIS_LABELS)
        else:
            al.data = adata
        first_3d = self.viewer.dims.ndisplay != 3
        self.viewer.dims.ndisplay = 3
        if first_3d:
            # look at the tumor, the whole ablation zone in view
            self.viewer.reset_view()
            lo, hi = (np.asarray(e) for e in self.viewer.layers.extent.world)
            scene = float(np.max(hi - lo))
            ext = float(np.ptp(a.verts, axis=0).max()) if len(a.verts) else 50.0
            _layers.camera(self.viewer).zoom *= max(1.0, 0.6 * scene / max(ext, 10.0))
            _layers.camera(self.viewer).center = tuple(geometry.lps_to_world(res.tumor_centroid_lps))

    # ------------------------------------------------------------------ exports
    def table_tsv(self) -> str:
        if self.result is None:
            return ""
        extra = self.uncertainty.rows() if self.uncertainty is not None else []
        return self.result.to_tsv() + "".join("\t".join(r) + "\n" for r in extra)

    def copy_table(self) -> None:
        if self.result is not None:
            QApplication.clipboard().setText(self.table_tsv())
            _layers.notify_info("margin figures copied (tab-separated)")

    def _report_kwargs(self) -> dict:
        case = self.session.case if self.session is not None else None
        info, qa, pre = {}, {}, None
        if case is not None:
            for k in ("name", "title", "modality", "description"):
                if case.info.get(k):
                    info[k] = case.info[k]
            if self.session.folder:
                info["case folder"] = str(self.session.folder)
            qa = dict(case.qa or {})
            pre = case.pre
        else:
            pl = _layers.find_layer(self.viewer, "pre")
            if pl is not None:
                try:
                    pre = _layers.image_from_layer(pl)
                except AblationError:
                    pre = None
        tl, al = self._layer(self.tumor_combo), self._layer(self.ablation_combo)
        info["tumor layer"] = tl.name if tl is not None else ""
        info["ablation layer"] = al.name if al is not None else ""
        tx = self.transform()
        note = self.tx_label.text() if tx is not None else "identity (no registration)"
        return dict(info=info, qa=qa, pre=pre, transform_note=note)

    def export(self, path: str | Path, screenshot: bool = True) -> Path:
        """Write the figures/report; the format follows the suffix (.json .csv .html .pdf)."""
        if self.result is None:
            raise AblationError("compute the margins first")
        p = Path(path)
        suf = p.suffix.lower()
        res = self.result
        if suf == ".json":
            kw = self._report_kwargs()
            extra = {"case": kw["info"], "registration_qa": kw["qa"], "registration": kw["transform_note"]}
            if self.uncertainty is not None:
                extra.update(self.uncertainty.to_json_dict())
            return report.write_json(p, res, extra)
        if suf == ".csv":
            return report.write_csv(p, res)
        if suf in (".html", ".htm", ".pdf"):
            kw = self._report_kwargs()
            if screenshot:
                kw["screenshot_png"] = self._screenshot_3d()
            return report.write_report(p, res, uncertainty=self.uncertainty, **kw)
        raise AblationError(f"cannot export to '{p.name}': use .json, .csv, .html or .pdf")

    def _screenshot_3d(self) -> bytes | None:
        """A 3D picture of the surfaces (the viewer's canvas), restored to the previous view."""
        try:
            import io as _io

            from matplotlib import image as mpimg

            prev = self.viewer.dims.ndisplay
            had = _layers.find_layer(self.viewer, ROLE_SURFACE) is not None
            self.show_3d()
            arr = self.viewer.screenshot(canvas_only=True, flash=False)
            if not had:
                for role in (ROLE_SURFACE, ROLE_ABLATION_SURFACE):
                    ly = _layers.find_layer(self.viewer, role)
                    if ly is not None:
                        self.viewer.layers.remove(ly)
            self.viewer.dims.ndisplay = prev
            buf = _io.BytesIO()
            mpimg.imsave(buf, np.asarray(arr), format="png")
            return buf.getvalue()
        except Exception:  # noqa: BLE001 - the report is complete without the 3D picture
            return None

    def _export_dialog(self, fmt: str) -> None:
        suffix = {"JSON": ".json", "CSV": ".csv", "HTML": ".html", "PDF": ".pdf"}[fmt]
        name = "margin" + suffix
        if self.session is not None and self.session.folder:
            name = str(Path(self.session.folder) / name)
        path, _ = QFileDialog.getSaveFileName(self, f"Export margins as {fmt}", name, f"{fmt} (*{suffix})")
        if not path:
            return
        if not path.lower().endswith(suffix):
            path += suffix
        try:
            self.export(path)
            _layers.notify_info(f"written {path}")
        except (AblationError, OSError) as exc:
            _layers.notify_error(exc)
