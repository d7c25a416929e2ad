"""Margin widget: a view of the case model's margin analysis.

The analysis itself lives in the model (:class:`~napari_ablation.model.CaseModel`) and is
kept current by the session (:class:`~napari_ablation.widgets.session.AnalysisRunner`):
after the first "Compute margins" every edit of the labels (brush, undo, redo, bulk
edit), of the registration or of the threshold reruns it in the background. This widget
only shows the model's analysis and sends the user's actions to the model:

* inputs: which layers hold the tumor / ablation labels (the session's binding), the
  registration (the model's; a transform file or the identity become steps of its
  history), the threshold (the model's setting);
* outputs: the MTM (greyed, "updating", while the inputs have changed since), the volume
  fractions of the three coverage classes, the results table, the surface histogram, the
  margin Labels layer on the pre grid, the ablation outline in pre space, the minimal
  margin point, the 3D surfaces (made when the view is 3D, whoever switches; the session
  gives every layer its 3D look), and exports (JSON, CSV, HTML, PDF) written off the GUI
  thread, only from a current analysis.

It never selects, moves or hides a layer, never changes napari's grid (with the grid on the
margin view joins the pre cell), and never switches 2D/3D unless the user presses "3D
surfaces".
"""

from __future__ import annotations

import contextlib
import io as _io
import threading
import weakref
from pathlib import Path
from typing import ClassVar

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtGui import QPixmap
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core import coverage, geometry, report, segmentation, uncertainty, warmup
from ..core import margin as core_margin
from ..core import transform as tfm
from ..core.case import LABEL_ROLES, QA_WANTING, protected_files, qa_text
from ..core.errors import AblationError, one_line
from ..core.quiz import QUIZ_REFERENCE_SHOWN, is_quiz_locked
from . import _layers
from .register_landmarks import LANDMARKS_CHANGED_TEXT
from .session import ROLE_ABLATION_SURFACE, ROLE_SURFACE, SURFACE_ROLES, CaseSession


class _Export(QObject):
    """One export written on a thread of its own, not in napari's thread pool: closing the
    window joins that pool (no worker may emit into its deleted widgets) and so waited for
    a PDF being written (14.6 s, UAT s6 D9). The file appears whole or not at all (written
    to a temporary file, then renamed); the thread is not a daemon, so quitting the
    application lets it finish. ``done`` carries the written path (or ``_layers._Failed``)
    to the GUI thread; a relay is kept until then, never deleted under its thread."""

    done = Signal(object)
    _running: ClassVar[set] = set()

    def __init__(self, job):
        super().__init__()
        self._job = job
        self._thread = threading.Thread(target=self._run, name="napari-ablation export")

    def start(self) -> None:
        _Export._running.add(self)
        self.done.connect(lambda _out: _Export._running.discard(self))
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            out = self._job()
        except Exception as exc:  # noqa: BLE001 - a one-line message for the user
            out = _layers._Failed(exc)
        with contextlib.suppress(RuntimeError):  # the application is gone
            self.done.emit(out)


OUTPUT_ROLES = ("margin", "ablation_registered", "mtm_point", ROLE_SURFACE, ROLE_ABLATION_SURFACE)
NO_REGISTRATION = tfm.NO_REGISTRATION
#: the registration line while no case is open
NO_CASE_REGISTRATION = "registration: none (no case open)"
#: the registration line while the figures on screen carry :data:`NO_REGISTRATION` under the
#: MTM: the alarm is said once, next to the figures it is about (UAT s11 N8)
NO_REGISTRATION_SHOWN = "registration: none (identity; see the warning under the MTM)"
#: the status while a computation waits for the margin engine's first compilation
PREPARING_ENGINE_TEXT = "preparing the margin engine (first use)\u2026"
#: how often the status looks again whether that compilation is over (ms)
PREPARING_POLL_MS = 250


def margin_surface_colormap(threshold: float):
    """Continuous colormap for surface margins: dark red .. red below 0, yellow up to the
    threshold, green above; sharp steps at 0 and at the threshold. Returns (colormap, limits)."""
    from napari.utils.colormaps import Colormap

    t = max(float(threshold), 0.5)
    lo, hi = -max(t, 3.0), 2.0 * t + 2.0
    p0, pt = (0 - lo) / (hi - lo), (t - lo) / (hi - lo)
    e = 1e-4
    colors = [
        [0.45, 0.0, 0.0, 1],
        [0.84, 0.15, 0.16, 1],  # < 0
        [1.0, 0.70, 0.0, 1],
        [1.0, 0.90, 0.2, 1],  # 0 .. t
        [0.45, 0.80, 0.35, 1],
        [0.05, 0.40, 0.10, 1],  # >= t
    ]
    controls = [0.0, p0 - e, p0, pt - e, pt, 1.0]
    return Colormap(colors=colors, controls=controls, name=f"margin_t{t:g}"), (lo, hi)


def registration_text(model, result: core_margin.MarginResult | None = None) -> str:
    """The registration in one line: its source and how far it moves the tumor centre."""
    text = registration_summary(model, result)
    return text if model.transform is None else f"registration: {text}"


def registration_summary(model, result: core_margin.MarginResult | None = None) -> str:
    """:func:`registration_text` without its "registration:" (the report names the line):
    :func:`napari_ablation.core.transform.registration_summary` of the case's transform."""
    if model.transform is None:
        return NO_REGISTRATION
    step = model.transform_step
    c = result.tumor_centroid_lps if result is not None else model.tumor_centre_lps()
    return tfm.registration_summary(model.transform, c, step.source, step.note or "")


def _prepare_outputs(res: core_margin.MarginResult, make_layers: bool = False) -> dict:
    """Arrays and pictures for the views, computed off the GUI thread; with ``make_layers``
    also the output layers themselves (napari layer objects, not yet in a viewer), so that
    adding one is only napari's canvas and controls work on the GUI thread
    (:func:`_output_layers`)."""
    from matplotlib.figure import Figure

    _layers.prewarm()  # napari's one-off work for the first output layers, off the GUI thread
    fig = Figure(figsize=(4.0, 2.5), dpi=90, tight_layout=True)
    report.plot_histogram(res, ax=fig.add_subplot(1, 1, 1), fig=fig)
    buf = _io.BytesIO()
    fig.savefig(buf, format="png")
    # the classes only exist inside the tumor: a layer on the tumor's box of the pre grid
    # (aligned with the pre voxels) instead of the whole grid keeps adding it cheap
    ref = res.pre_reference
    spacing_zyx = np.asarray(ref.GetSpacing()[::-1], float)
    translate = (
        np.asarray(ref.GetOrigin()[::-1], float) + np.asarray(res.class_offset, float) * spacing_zyx
    )
    outline = res.ablation_on_pre_image()
    prep = {
        "margin": np.ascontiguousarray(res.class_crop, dtype=np.uint8),
        "margin_scale": tuple(spacing_zyx),
        "margin_translate": tuple(translate),
        "outline": outline,
        "outline_array": sitk.GetArrayFromImage(outline),
        "histogram_png": buf.getvalue(),
        # the tumor's voxels are those with a class (its box of the pre grid)
        "parts_note": segmentation.several_parts_note(res.class_crop != 0, spacing_zyx, "tumor"),
    }
    prep["new_layers"] = _output_layers(res, prep) if make_layers else {}
    return prep


def _margin_layer_kwargs(prep: dict) -> dict:
    """The margin classes layer (on the tumor's box of the pre grid)."""
    return {
        "name": _layers.ROLES["margin"],
        "scale": prep["margin_scale"],
        "translate": prep["margin_translate"],
        "opacity": 0.6,
        "colormap": _layers.margin_colormap(),
        "units": "mm",
        "axis_labels": geometry.AXIS_LABELS,
        "metadata": {_layers.META: {"role": "margin", "drawn_on": "pre"}},
    }


def _outline_layer_kwargs(prep: dict) -> dict:
    """The ablation zone brought into pre space, as an outline on a box around the tumor."""
    return _layers.labels_layer_kwargs(
        prep["outline"],
        _layers.ROLES["ablation_registered"],
        "ablation_registered",
        _layers.ABLATION_COLOR,
        opacity=0.9,  # in the constructor: a set after it is one more event
    )


def _mtm_slices_world(res: core_margin.MarginResult) -> tuple[np.ndarray, str]:
    """The world point ``(z, y, x)`` of the pre voxel whose slices show the minimal margin
    point (:func:`report.mtm_slices`: the nearest ones holding tumor) and its note."""
    index, note = report.mtm_slices(res)
    shown = res.pre_reference.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
    return np.asarray(geometry.lps_to_world(shown), float), note


def _mtm_point(
    res: core_margin.MarginResult, scale, translate, sliced: tuple[int, ...] = ()
) -> tuple[np.ndarray, dict]:
    """The minimal margin point on the margin layer's (pre) grid and its label's value.

    Along the ``sliced`` axes (those the 2D view steps through) the point is put on the
    centre of the slice *Go to MTM* shows: napari draws a point only within half a voxel of
    the slider, and the point lies anywhere in its voxel, or just beyond the last tumor
    slice (UAT s13 N2: the coronal view at the pre slice holding it did not draw it). In
    3D (no sliced axis) it is where it is."""
    world = np.array(geometry.lps_to_world(res.min_margin_point_lps), float)  # (a copy)
    if sliced:
        axes = list(sliced)
        world[axes] = _mtm_slices_world(res)[0][axes]
    scale, translate = np.asarray(scale, float), np.asarray(translate, float)
    data = np.asarray([(np.asarray(world) - translate) / scale])
    return data, {"margin_mm": [round(res.min_margin_mm, 2)]}


def _mtm_point_kwargs(scale, translate, features: dict) -> dict:
    return {
        "name": _layers.ROLES["mtm_point"],
        "size": 4,
        "face_color": "white",
        "border_color": "black",
        "symbol": "cross",
        # in 3D over the surfaces it lies on (drawn before it, by the layer-order rule),
        # its label too: not cut by the tumor surface
        "blending": "translucent_no_depth",
        "metadata": {_layers.META: {"role": "mtm_point"}},
        "units": "mm",
        "axis_labels": geometry.AXIS_LABELS,
        "scale": np.asarray(scale, float),
        "translate": np.asarray(translate, float),
        "features": features,
        "text": {
            "string": "MTM {margin_mm} mm",
            "color": "white",
            "anchor": "upper_left",
            "size": 10,
            # beside the cross marker (size 4, data units), not over it
            "translation": np.full(3, 3.0),
            "blending": "translucent_no_depth",
        },
    }


def _output_layers(res: core_margin.MarginResult, prep: dict) -> dict:
    """The margin, outline and MTM point layers of ``res``, made here (any thread): making a
    napari layer object (its slice, thumbnail, colormap, text) is about a tenth of adding it
    on the GUI thread (bare napari, a Labels layer made beforehand and added: 126 against 140
    ms); only its visual, overlays and controls are left to the add."""
    from napari.layers import Labels, Points

    outline = Labels(prep["outline_array"], **_outline_layer_kwargs(prep))
    outline.contour = 1
    data, features = _mtm_point(res, prep["margin_scale"], prep["margin_translate"])
    return {
        "margin": Labels(prep["margin"], **_margin_layer_kwargs(prep)),
        "ablation_registered": outline,
        "mtm_point": Points(
            data, **_mtm_point_kwargs(prep["margin_scale"], prep["margin_translate"], features)
        ),
    }


def _set_box(layer, data: np.ndarray, scale, translate) -> None:
    """New data (any shape) and placement for an output Labels layer, setting only what
    changed (each change is an event napari's layer list and canvas answer on the GUI
    thread)."""
    _layers.set_placement(layer, scale, translate)
    old = layer.data
    if old.shape != data.shape or not np.array_equal(old, data):
        layer.data = data


QUIZ_REFERENCE_TEXT = (
    "The canvas shows the quiz reference's margins (Teach widget: 'reference …' layers); "
    "Compute margins analyses your own labels."
)
QUIZ_LOCK_TEXT = (
    "This case is in a quiz: margins are hidden until the answer is submitted (Teach widget)."
)
#: the tooltips of File… and Identity (while the registration may be changed)
TX_FILE_TIP = "use a registration file (ITK, pre -> post); undo it in 3. Register"
TX_IDENTITY_TIP = "compute without registration (a step of the registration history)"


class FittedPicture(QLabel):
    """A picture shown whole: scaled to the label's size (keeping its aspect) whenever the
    label resizes (a tab shown, the dock narrowed), never cropped."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._picture: QPixmap | None = None
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumSize(120, 150)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Ignored)

    def picture(self) -> QPixmap | None:
        """The picture at its own size (None when there is none)."""
        return self._picture

    def set_picture(self, picture: QPixmap | None) -> None:
        self._picture = picture
        if picture is None:
            self.clear()
        self._fit()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        if self._picture is not None and self.width() > 10 and self.height() > 10:
            self.setPixmap(
                self._picture.scaled(self.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)
            )


class MarginWidget(QWidget):
    """Dock widget: margin analysis of the current case (a view of the case model)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = CaseSession.of(napari_viewer)
        self.session.attach_widget(self)
        self.model = self.session.model
        self._shown = None  # the Analysis whose figures are on screen
        self._interval_shown = None  # the model's Interval shown with it
        self._prep_worker = None
        self._export_workers: list = []
        self._pending_exports: list[Path] = []
        self.last_export: Path | None = None
        self._adding = None  # the steps adding or updating the output layers, while they run
        self._ndisplay_missed = False  # a switch to 3D came while they ran
        self._latest_layers = None
        self._engine_poll = False  # a timer looks at the status again (engine compiling)
        self._build_ui()
        m = self.model
        _layers.connect_while_alive(m.analysis_changed, self, self._on_analysis)
        _layers.connect_while_alive(m.interval_changed, self, self._show_interval)
        _layers.connect_while_alive(m.settings_changed, self, self._on_setting)
        _layers.connect_while_alive(m.threshold_changed, self, self._on_model_threshold)
        _layers.connect_while_alive(m.transform_changed, self, lambda *_: self._show_tx_label())
        _layers.connect_while_alive(m.image_changed, self, lambda *_: self._show_tx_label())
        _layers.connect_while_alive(m.landmarks_changed, self, self._show_status)
        _layers.connect_while_alive(m.qa_changed, self, self._show_qa)
        _layers.connect_while_alive(m.case_loaded, self, self._on_case_loaded)
        _layers.connect_while_alive(self.viewer.dims.events.ndisplay, self, self._on_ndisplay)
        for ev in (self.viewer.dims.events.order, self.viewer.dims.events.ndisplay):
            _layers.connect_while_alive(ev, self, self._place_mtm_point)
        _layers.connect_while_alive(self.session.changed, self, self._on_session_changed)
        _layers.connect_while_alive(
            self.viewer.layers.events.inserted, self, self._on_layers_changed
        )
        _layers.connect_while_alive(
            self.viewer.layers.events.removed, self, self._on_layers_changed
        )
        # a layer renamed in the layer list: the combos show its new name (UAT s9 N4a)
        _layers.connect_while_alive(
            self.viewer.layers.events.renamed, self, lambda *_: self._refresh_layer_choices()
        )
        self._refresh_layer_choices()
        self._on_model_threshold(m.threshold)
        self._show_tx_label()
        self._show_registration_lock()
        self._show_qa()
        self._sync_reader_sd()
        self._on_analysis()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        lay = _layers.scroll_body(self)
        self._body_layout = lay
        self._scroll = lay.parentWidget().parentWidget().parentWidget()  # body, viewport, area

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        self.tumor_combo = QComboBox()
        self.ablation_combo = QComboBox()
        for combo in (self.tumor_combo, self.ablation_combo):
            _layers.compact_combo(combo, 8)
        self.tx_label = QLabel("")
        self.tx_label.setWordWrap(True)
        self.tx_file_btn = QPushButton("File…")
        self.tx_identity_btn = QPushButton("Identity")
        self.tx_file_btn.clicked.connect(self._pick_transform_file)
        self.tx_identity_btn.clicked.connect(self.use_identity)
        txrow = QHBoxLayout()
        txrow.addWidget(self.tx_file_btn)
        txrow.addWidget(self.tx_identity_btn)
        txrow.addStretch(1)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(coverage.THRESHOLD_MIN_MM, coverage.THRESHOLD_MAX_MM)
        self.threshold.setDecimals(1)
        self.threshold.setSingleStep(0.5)
        self.threshold.setSuffix(" mm")
        self.threshold.setMinimumWidth(60)
        self.threshold.setValue(5.0)
        self.threshold.valueChanged.connect(self._on_threshold)
        trow = QHBoxLayout()
        for v in core_margin.THRESHOLD_PRESETS:
            b = QPushButton(f"{v:g}")
            b.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
            b.setMinimumWidth(18)
            b.setToolTip(f"threshold {v:g} mm")
            b.clicked.connect(lambda _=False, v=v: self.threshold.setValue(v))
            trow.addWidget(b, 1)
        form.addRow("tumor", self.tumor_combo)
        form.addRow("ablation", self.ablation_combo)
        form.addRow("registration", txrow)
        form.addRow(self.tx_label)
        form.addRow("threshold", self.threshold)
        form.addRow("presets", trow)
        self.registration_sd = QDoubleSpinBox()
        self.registration_sd.setRange(0.0, 10.0)
        self.registration_sd.setDecimals(1)
        self.registration_sd.setSingleStep(0.5)
        self.registration_sd.setSuffix(" mm")
        self.registration_sd.setToolTip(
            "reader accuracy: how far you trust a manual registration (or none) at the tumor, "
            "as an SD per patient axis. Landmark and automatic registrations bring their own "
            "error; this value is used for the others (a default assumption until edited)"
        )
        self.registration_sd.valueChanged.connect(self._on_registration_sd)
        self.registration_sd_note = QLabel("")
        self.registration_sd_note.setWordWrap(True)  # "(default, assumed)": the dock stays narrow
        sdrow = QHBoxLayout()
        sdrow.addWidget(self.registration_sd)
        sdrow.addWidget(self.registration_sd_note, 1)
        form.addRow("reader\naccuracy", sdrow)  # two lines: the dock can stay narrow
        lay.addLayout(form)
        # a QA verdict recorded for an earlier registration vouches for nothing shown here
        self.qa_warning = QLabel("")
        self.qa_warning.setWordWrap(True)
        self.qa_warning.setStyleSheet("color: #ff4040; font-weight: bold;")
        self.qa_warning.setVisible(False)
        lay.addWidget(self.qa_warning)
        self.tumor_combo.activated.connect(lambda *_: self._use_layer(self.tumor_combo, "tumor"))
        self.ablation_combo.activated.connect(
            lambda *_: self._use_layer(self.ablation_combo, "ablation")
        )

        self.run_btn = QPushButton("Compute margins")
        self.run_btn.setToolTip(
            "compute now; from then on the margins follow every edit, undo, "
            "registration and threshold change (in the background)"
        )
        self.run_btn.clicked.connect(self.run)
        lay.addWidget(self.run_btn)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)

        self.big = QLabel("MTM = —")
        f = self.big.font()
        f.setPointSize(f.pointSize() + 5)
        f.setBold(True)
        self.big.setFont(f)
        self.big.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.big.setContentsMargins(4, 2, 4, 2)
        self.layout().insertWidget(0, self.big)  # above the scroll area: always in sight
        self.interval = QLabel("")
        self.interval.setWordWrap(True)
        self.interval.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.interval)
        self.registration_warning = QLabel("")
        self.registration_warning.setWordWrap(True)
        self.registration_warning.setStyleSheet("color: #ff4040; font-weight: bold;")
        self.registration_warning.setVisible(False)
        lay.addWidget(self.registration_warning)
        self.where = QLabel("")
        self.where.setWordWrap(True)
        lay.addWidget(self.where)
        # a tumor in separate parts (a second lesion, a stray brush voxel): the MTM and the
        # volumes are those of all parts together (the CLI's note, UAT s10 N2)
        self.parts_note = QLabel("")
        self.parts_note.setWordWrap(True)
        self.parts_note.setStyleSheet("color: #e0a000;")
        self.parts_note.setVisible(False)
        lay.addWidget(self.parts_note)

        legend = QGridLayout()
        legend.setContentsMargins(0, 0, 0, 0)
        legend.addWidget(QLabel("<i>tumor volume</i> by coverage class:"), 0, 0, 1, 2)
        self.legend_labels = {}
        for i, key in enumerate(coverage.CLASS_KEYS, start=1):
            k = coverage.CLASS_LABELS[key]
            sw = QLabel()
            sw.setFixedSize(12, 12)
            sw.setStyleSheet(
                f"background-color: {coverage.CLASS_COLORS[key]}; border: 1px solid #444;"
            )
            txt = QLabel(coverage.CLASS_NAMES[key])
            txt.setWordWrap(True)  # the figures are added after a computation
            legend.addWidget(sw, i, 0)
            legend.addWidget(txt, i, 1)
            self.legend_labels[k] = txt
        sw = QLabel()
        sw.setFixedSize(12, 12)
        sw.setStyleSheet(f"background-color: {coverage.UNCERTAIN_COLOR}; border: 1px solid #444;")
        txt = QLabel(coverage.UNCERTAIN_NAME)
        txt.setWordWrap(True)
        legend.addWidget(sw, len(coverage.CLASS_KEYS) + 1, 0)
        legend.addWidget(txt, len(coverage.CLASS_KEYS) + 1, 1)
        self.legend_labels[coverage.UNCERTAIN_LABEL] = txt
        legend.setColumnStretch(1, 1)
        lay.addLayout(legend)

        row = QHBoxLayout()
        self.center_btn = QPushButton("Go to MTM")
        self.center_btn.setToolTip("centre every view on the minimal margin point")
        self.center_btn.clicked.connect(self.center_on_mtm)
        self.surface_btn = QPushButton("3D surfaces")
        self.surface_btn.setToolTip(
            "tumor surface coloured by margin beside the ablation surface (switches to 3D)"
        )
        self.surface_btn.clicked.connect(self.show_3d)
        row.addWidget(self.center_btn)
        row.addWidget(self.surface_btn)
        lay.addLayout(row)

        self.tabs = QTabWidget()
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["figure", "value", "unit"])
        # names and values wrap whole (names were cut to "Minimal treatment ..."); the unit
        # takes the width it needs, and each row the height of its longest cell
        header = self.table.horizontalHeader()
        for col in (0, 1):
            header.setSectionResizeMode(col, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        self.table.setWordWrap(True)
        self.table.setTextElideMode(Qt.ElideNone)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        # (Qt does not measure wrapped rows again when a column narrows with the dock)
        header.sectionResized.connect(lambda *_a: self.table.resizeRowsToContents())
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(140)
        self.table.setTabKeyNavigation(False)  # read-only: one Tab leaves it (not ~135 cells)
        self.tabs.addTab(self.table, "Figures")
        hist = QWidget()
        hl = QVBoxLayout(hist)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(QLabel("<i>tumor surface</i>: % of the surface area per margin"))
        self.histogram = FittedPicture()
        hl.addWidget(self.histogram, 1)
        self.tabs.addTab(hist, "Histogram")
        self.tabs.setMinimumHeight(240)  # the histogram legible (title and axis labels)
        for wdg in (self.tabs, self.table):
            wdg.setMinimumWidth(160)
        lay.addWidget(self.tabs, 1)

        row = QHBoxLayout()
        self.copy_btn = QPushButton("Copy")
        self.copy_btn.setToolTip("copy the figures (tab-separated)")
        self.copy_btn.clicked.connect(self.copy_table)
        row.addWidget(self.copy_btn)
        self.export_btns = {}
        for fmt in ("JSON", "CSV", "HTML", "PDF"):
            b = QPushButton(fmt)
            b.setToolTip(f"export the figures as {fmt}")
            b.clicked.connect(lambda _=False, fmt=fmt: self._export_dialog(fmt))
            row.addWidget(b)
            self.export_btns[fmt] = b
        for i in range(row.count()):
            row.itemAt(i).widget().setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
            row.itemAt(i).widget().setMinimumWidth(24)
        lay.addLayout(row)
        self._set_output_buttons(False)

    def minimumSizeHint(self):
        hint = super().minimumSizeHint()
        hint.setWidth(min(hint.width(), 260))
        return hint

    def _set_output_buttons(self, enabled: bool) -> None:
        for b in (self.center_btn, self.surface_btn, self.copy_btn, *self.export_btns.values()):
            b.setEnabled(enabled)

    # ------------------------------------------------------------------ compat
    @property
    def result(self) -> core_margin.MarginResult | None:
        """The model's last margin result (see ``model.analysis_current``)."""
        return self.model.result

    @property
    def _worker(self):
        """The running analysis, view preparation or addition of the output layers (None
        when idle)."""
        return self.session.analysis.worker or self._prep_worker or self._adding

    # ------------------------------------------------------------------ inputs
    def _label_layers(self):
        from napari.layers import Labels

        return [
            ly
            for ly in self.viewer.layers
            if isinstance(ly, Labels) and _layers.role_of(ly) not in OUTPUT_ROLES
        ]

    def _refresh_layer_choices(self) -> None:
        layers = self._label_layers()
        for combo, role in ((self.tumor_combo, "tumor"), (self.ablation_combo, "ablation")):
            bound = self.session.labels_layer(role) or _layers.find_layer(self.viewer, role)
            # only layers that may hold the role's labels (on its image's grid): a layer of
            # another case (of another grid) is not offered
            # (compared unwrapped: through napari's proxy, a new object on each access)
            names = [
                ly.name
                for ly in layers
                if _layers.unwrapped(ly) is _layers.unwrapped(bound) or self.session.fits(ly, role)
            ]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if bound is not None and bound.name in names:
                combo.setCurrentText(bound.name)
            else:
                combo.setCurrentIndex(-1)
            combo.blockSignals(False)

    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and _layers.role_of(layer) in OUTPUT_ROLES:
            return
        self._refresh_layer_choices()

    def _use_layer(self, combo, role: str) -> None:
        name = combo.currentText()
        if not name or name not in self.viewer.layers:
            return
        try:
            kept = self.session.use_labels_layer(self.viewer.layers[name], role)
        except AblationError as exc:
            _layers.notify_error(exc)
        else:
            if kept is not None:
                _layers.notify_info(f"the {role} labels it replaces are saved in {kept}")
        self._refresh_layer_choices()

    def set_layers(self, tumor=None, ablation=None) -> None:
        """Use these layers (layer objects or names) as the tumor / ablation labels."""
        for combo, role, layer in (
            (self.tumor_combo, "tumor", tumor),
            (self.ablation_combo, "ablation", ablation),
        ):
            if layer is not None:
                combo.setCurrentText(getattr(layer, "name", layer))
                self._use_layer(combo, role)

    def _on_threshold(self, value: float) -> None:
        self.model.set_threshold(float(value))

    def _on_model_threshold(self, value: float) -> None:
        if abs(float(value) - self.threshold.value()) > 1e-9:
            self.threshold.blockSignals(True)
            self.threshold.setValue(float(value))
            self.threshold.blockSignals(False)

    def set_threshold(self, value: float) -> None:
        self.threshold.setValue(float(value))

    def _pick_transform_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Registration pre -> post (ITK)", "", "ITK transform (*.tfm *.txt *.h5)"
        )
        if path:
            self.load_transform_file(path)

    def _show_registration_lock(self) -> None:
        """File… and Identity change the registration: disabled, the reason as their tooltip,
        while it is locked (a Teach quiz question is open: UAT s12 N2)."""
        reason = self.session.edit_lock("registration")
        for btn, tip in ((self.tx_file_btn, TX_FILE_TIP), (self.tx_identity_btn, TX_IDENTITY_TIP)):
            btn.setEnabled(reason is None)
            btn.setToolTip(tip if reason is None else reason)

    def use_identity(self) -> bool:
        """Make the identity the case's registration (a step of its history, source "reset").
        Returns False (and notifies) when the registration is locked."""
        try:
            self.model.reset_transform()
        except AblationError as exc:
            _layers.notify_error(exc)
            return False
        return True

    def load_transform_file(self, path: str) -> bool:
        """Make a transform file (ITK convention, pre -> post) the case's registration (a step
        of its history, source "file"). Returns False (and notifies) if unusable."""
        try:
            tx = tfm.read_rigid_transform(path)
            self.model.set_transform(tx, "file", Path(path).name)
        except AblationError as exc:
            _layers.notify_error(exc)
            return False
        return True

    def transform(self) -> sitk.Transform | None:
        return self.model.transform

    def _show_tx_label(self) -> None:
        m = self.model
        if m.pre is None and m.post is None and all(m.labels(r) is None for r in LABEL_ROLES):
            # no case open: nothing is aligned or computed, so no alarm (UAT s9 N4d)
            self.tx_label.setText(NO_CASE_REGISTRATION)
            self.tx_label.setStyleSheet("")
            return
        loud = self.model.transform is None
        if loud and not self.registration_warning.isHidden():
            self.tx_label.setText(NO_REGISTRATION_SHOWN)
            self.tx_label.setStyleSheet("")
            return
        self.tx_label.setText(registration_text(self.model))
        self.tx_label.setStyleSheet("color: #ff4040; font-weight: bold;" if loud else "")

    def _show_qa(self) -> None:
        """A red line when the registration QA speaks against the margins: a verdict
        recorded for an earlier registration, or one that finds this registration wanting."""
        qa = self.model.qa
        loud = bool(qa.get("earlier")) or qa["verdict"] in QA_WANTING
        self.qa_warning.setText(f"registration QA: {qa_text(qa)}" if loud else "")
        self.qa_warning.setVisible(loud)

    def _on_case_loaded(self) -> None:
        self._show_qa()
        self._shown = None
        self._latest_layers = None
        self._interval_shown = None
        self.interval.setText("")
        self._sync_reader_sd()
        if not self._quiz_lock():
            self._clear_readout("MTM = —")
        self._refresh_layer_choices()
        self._show_tx_label()
        self._show_registration_lock()
        self._on_model_threshold(self.model.threshold)

    def _on_session_changed(self, what: str) -> None:
        if what == "opening":
            self._on_opening()
            return
        if what == "quiz":
            self._show_registration_lock()
        if what == "binding":  # (a case's layers reused for the next case: no layer event)
            self._refresh_layer_choices()
        if what in ("analysis", "quiz"):
            self._show_status()
        if what == "interval":
            self._show_interval()
        if (
            what == "quiz"
            and not is_quiz_locked(self.model.info)
            and self.big.text() == "MTM hidden"
        ):
            self.big.setText("MTM = —")  # answered: the trainee may compute the margins now

    def _on_opening(self) -> None:
        """Another case is opening: the open case's figures go at once (they may belong to
        a case that is being replaced); if the opening fails, they come back."""
        if self.session.opening is not None:
            self._shown = None
            self._interval_shown = None
            self._clear_readout("MTM = —")
            self.status.setText(f"{self.session.opening}…")
            self.run_btn.setEnabled(False)
        else:
            self._on_analysis()

    def _quiz_lock(self) -> bool:
        """True while a quiz question is open on the case (Teach widget): then the readout is
        cleared and nothing is computed or shown until the answer is submitted."""
        if not is_quiz_locked(self.model.info):
            return False
        self.status.setText(QUIZ_LOCK_TEXT)
        self._clear_readout("MTM hidden")
        self.run_btn.setEnabled(False)
        return True

    def _clear_readout(self, big: str) -> None:
        """No figures on screen (another case, or a quiz question open)."""
        self.big.setText(big)
        self.big.setStyleSheet("")
        self.interval.setText("")
        self.where.setText("")
        self.registration_warning.setVisible(False)
        self._show_tx_label()  # the alarm back on the registration line
        self.parts_note.setVisible(False)
        for key in coverage.CLASS_KEYS:
            self.legend_labels[coverage.CLASS_LABELS[key]].setText(coverage.CLASS_NAMES[key])
        self._set_uncertain_legend(None)  # (no volume of an earlier interval: UAT s8)
        self.table.setRowCount(0)
        self.histogram.set_picture(None)
        self._set_output_buttons(False)

    def _set_uncertain_legend(self, unc) -> None:
        """The uncertain class's legend row, with its volume when an interval is shown."""
        self.legend_labels[coverage.UNCERTAIN_LABEL].setText(
            coverage.UNCERTAIN_NAME
            + ("" if unc is None else f" ({unc.uncertain_volume_ml:.2f} ml)")
        )

    # ------------------------------------------------------------------ analysis
    def run(self):
        """Compute now (and keep the margins current from then on). Returns the worker."""
        if self._quiz_lock() or self.session.refuse_while_opening():
            return None
        # margins are read over the pre anatomy (the user asked for them): a landmark view
        # (raw post only) ends, and pre is shown
        self.session.changed.emit("margins_view")
        pre = _layers.find_layer(self.viewer, "pre")
        if pre is not None and not pre.visible:
            pre.visible = True
        self.session.analysis.request(now=True)
        self._show_status()
        return self._worker

    def _show_status(self) -> None:
        if self._quiz_lock() or self.session.opening is not None:
            return
        runner = self.session.analysis
        a = self.model.analysis
        current = self.model.analysis_current
        if self.model.analysis_error is not None:
            text = self.model.analysis_error
        elif runner.error and not current:
            text = runner.error
        elif runner.running and warmup.running():
            text = PREPARING_ENGINE_TEXT
            self._poll_engine()
        elif runner.live and (runner.running or not current):
            text = "computing margins…" if a is None else "inputs changed: updating the margins…"
        elif a is None:
            text = QUIZ_REFERENCE_TEXT if self.model.info.get(QUIZ_REFERENCE_SHOWN) else ""
        elif self._shown is not a:
            text = "drawing the margins\u2026"  # computed; its figures are being prepared
        elif current and self.model.landmarks_changed_since_fit:
            # the margins follow the registration in use, which is the previous fit
            text = f"{LANDMARKS_CHANGED_TEXT}; the margins are those of the previous fit"
        elif current:
            text = "up to date (current labels, registration and threshold)"
            if a.result.warnings:
                text += "; " + "; ".join(f"warning: {w}" for w in a.result.warnings)
        else:
            text = (
                "OUT OF DATE: the labels, registration or threshold changed; press Compute margins"
            )
        self.status.setText(text)
        self.run_btn.setEnabled(not runner.running)
        shown_current = a is not None and current and self._shown is a
        self._set_output_buttons(self._shown is not None)
        for b in self.export_btns.values():
            b.setEnabled(shown_current)
        if a is not None and self._shown is a:
            color = (
                coverage.verdict_color(a.result.min_margin_mm, a.result.threshold_mm)
                if current
                else "#888888"
            )
            self.big.setStyleSheet(f"color: {color};")
            # the interval line greys with the MTM (and while the interval itself catches up)
            stale = not (current and self._current_interval() is not None)
            self.interval.setStyleSheet("color: #888888;" if stale else "")
        self._fit_texts()

    def _poll_engine(self) -> None:
        """Look at the status again shortly (one timer at a time) while the margin engine's
        first compilation runs in its child processes: its end sends no event."""
        if self._engine_poll:
            return
        self._engine_poll = True
        ref = weakref.ref(self)

        def again(_r=ref):
            w = _r()
            if w is not None and _layers._alive(w):
                w._engine_poll = False
                w._show_status()

        QTimer.singleShot(PREPARING_POLL_MS, again)

    def _fit_texts(self) -> None:
        """Lay the panel out again now that its texts changed: a wrapped label whose text
        grew (the MTM interval and its sources, the legend's volumes) was left at its old
        height (one line, cut under the buttons, UAT s7 N4) when Qt's pending relayout of
        the scrolled body did not come; activating the body's layout applies the new heights
        (nothing is done when the layout is up to date), and the scroll area fits the body
        to the height its text now needs."""
        self._body_layout.activate()
        body = self._body_layout.parentWidget()
        want = max(body.heightForWidth(body.width()), self._scroll.viewport().height())
        if body.height() != want:
            self._scroll.setWidgetResizable(True)  # Qt measures the body again

    def _on_analysis(self) -> None:
        if self._quiz_lock() or self.session.opening is not None:
            return
        if self.model.analysis_error is not None:
            self._no_analysis()
        a = self.model.analysis
        if self._showable(a) and a is not self._shown and self._prep_worker is None:
            self._prepare(a)
        self._show_status()

    def _showable(self, a) -> bool:
        """``a`` is the model's analysis and may be shown (no case opening, and the
        analysis does not fail for the labels as they are now)."""
        m = self.model
        return (
            a is not None
            and m.analysis is a
            and m.analysis_error is None
            and self.session.opening is None
        )

    def _no_analysis(self) -> None:
        """The analysis cannot be computed for the current labels (the model's
        ``analysis_error``, e.g. an emptied tumor): no figure of an earlier analysis stays
        (UAT s7 N5): the readout cleared, its actions disabled, its layers hidden at once and
        removed in steps (made again from the next analysis, e.g. after Ctrl-Z)."""
        self._shown = None
        self._interval_shown = None
        self._latest_layers = None
        if self._adding is not None:
            with contextlib.suppress(ValueError):  # (not while one of its steps runs)
                self._adding.close()  # the rest of an earlier result's layers: not added
        self._clear_readout("MTM = —")
        self.session.hide_then_remove(
            [ly for ly in self.viewer.layers if _layers.role_of(ly) in OUTPUT_ROLES]
        )

    def _on_registration_sd(self, *_) -> None:
        """The user states the reader accuracy: a setting of the case (the margins and their
        interval follow)."""
        v = float(self.registration_sd.value())
        if abs(v - self.model.reader_sd_mm) > 1e-9 or self.model.reader_sd_assumed:
            self.model.set_reader_sd(v)

    def _on_setting(self, name: str) -> None:
        if name == "registration_sd_mm":
            self._sync_reader_sd()

    def _sync_reader_sd(self) -> None:
        m = self.model
        if abs(self.registration_sd.value() - m.reader_sd_mm) > 1e-9:
            self.registration_sd.blockSignals(True)
            self.registration_sd.setValue(m.reader_sd_mm)
            self.registration_sd.blockSignals(False)
        self.registration_sd_note.setText(
            "(default, assumed)" if m.reader_sd_assumed else "(stated)"
        )

    @property
    def uncertainty(self) -> uncertainty.MarginUncertainty | None:
        """The MTM interval shown with the shown analysis (None while it is computed)."""
        iv = self._interval_shown
        return iv.uncertainty if iv is not None else None

    def _current_interval(self):
        """The model's interval when it is current and belongs to the shown analysis."""
        iv = self.model.interval
        if iv is None or not self.model.interval_current or iv.analysis is not self._shown:
            return None
        return iv

    def _show_interval(self) -> None:
        """The MTM interval line with its sources, the uncertain class in the legend, the table
        and the margin layer; greyed "computing" while the model's interval is not current."""
        if self._shown is None or is_quiz_locked(self.model.info):
            return
        iv = self._current_interval()
        res = self._shown.result
        if iv is None:
            err = self.session.interval.error
            self.interval.setText(
                f"95 % interval: {err}" if err else "95 % interval: computing\u2026"
            )
            self.interval.setStyleSheet("color: #888888;")
            if self._interval_shown is not None and self._interval_shown.analysis is self._shown:
                self._fit_texts()
                return  # the previous interval of this analysis stays drawn, greyed
        else:
            unc = iv.uncertainty
            self.interval.setText(unc.interval_text() + "".join(f"\n  {s}" for s in unc.sources))
            self.interval.setStyleSheet("")
            self.interval.setToolTip(unc.summary_text())
        if iv is self._interval_shown and iv is not None:
            self._fit_texts()
            return
        self._interval_shown = iv
        unc = iv.uncertainty if iv is not None else None
        self._set_uncertain_legend(unc)
        rows = report.figure_rows(res, unc)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, v in enumerate(r):
                item = QTableWidgetItem(v)
                item.setFlags(item.flags() & ~Qt.ItemIsEditable)
                if j == 1:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                item.setToolTip(v)  # the full name where the narrow column elides it
                self.table.setItem(i, j, item)
        self.table.resizeRowsToContents()
        lab = _layers.find_layer(self.viewer, "margin")
        classes = res.class_crop if unc is None else unc.class_crop_with_uncertain(res.class_crop)
        if lab is not None and lab.data.shape == classes.shape:
            lab.data = np.ascontiguousarray(classes, dtype=np.uint8)
        self._flush_pending_exports()
        self._show_status()

    def _prepare(self, a) -> None:
        res = a.result
        first = _layers.find_layer(self.viewer, "margin") is None  # the layers made there

        def done(prep, _a=a):
            if self._showable(_a):
                self._show(_a, prep)

        def finished():
            self._prep_worker = None
            a = self.model.analysis
            if self._showable(a) and a is not self._shown:
                self._prepare(a)
            self._show_status()

        self._prep_worker = _layers.start_worker(
            lambda: _prepare_outputs(res, make_layers=first),
            on_returned=done,
            on_finished=finished,
        )

    # ------------------------------------------------------------------ outputs
    def _show(self, a, prep: dict) -> None:
        res = a.result
        self._shown = a
        self.big.setText(res.margin_text())
        self.registration_warning.setText(NO_REGISTRATION if a.identity else "")
        self.registration_warning.setVisible(a.identity)
        self.where.setText(
            f"rounded {res.min_margin_mm_rounded:d} mm, at the {res.min_margin_octant} side; "
            "complete coverage: "
            f"{'yes' if res.complete_coverage else 'NO'}"
        )
        note = prep.get("parts_note")
        self.parts_note.setText(f"Note: {note}" if note else "")
        self.parts_note.setVisible(bool(note))
        f = res.volume_fraction
        for key in coverage.CLASS_KEYS:
            k = coverage.CLASS_LABELS[key]
            self.legend_labels[k].setText(
                f"{coverage.class_title(key, res.threshold_mm)}: {100 * f[key]:.1f} % "
                f"({res.volume_ml[key]:.2f} ml)"
            )
        if res.warnings:
            _layers.notify_warning(res.warnings[0])
        pm = QPixmap()
        pm.loadFromData(prep["histogram_png"], "PNG")
        self.histogram.set_picture(pm)
        self._update_layers(res, prep)
        self._interval_shown = None
        self._show_interval()
        self._show_tx_label()
        self._show_status()
        self._flush_pending_exports()

    @property
    def adding_layers(self) -> bool:
        """The output layers are being added (one per event-loop iteration)."""
        return self._adding is not None

    def _update_layers(self, res: core_margin.MarginResult, prep: dict) -> None:
        """Show ``res`` in the output layers, one layer per event-loop iteration (the first
        time each added, then its data replaced in place, setting only what changed), so
        that no single slice of GUI work freezes the window: each new layer's data is a
        re-slice, a texture upload and a thumbnail of napari's on the GUI thread (margin,
        outline and point in one piece took 130-140 ms of GUI-thread CPU after a Ctrl-Z in
        CI)."""
        self._latest_layers = (res, prep)
        if self._adding is not None:
            return  # shown when the steps under way are done
        applied = self._latest_layers
        gen = self.session.case_generation
        # (dropped once another case starts opening: its layers are not this case's)
        self._adding = self.session.while_case(self._layer_steps(res, prep))

        def added():
            self._adding = None
            if gen != self.session.case_generation:
                return  # another case: nothing more of this one is shown
            latest = self._latest_layers
            if latest is not None and latest is not applied:  # a newer result meanwhile
                self._update_layers(*latest)
            elif self._ndisplay_missed:  # switched to 3D while the layers were updated
                self._on_ndisplay()
            self._show_status()

        _layers.run_in_steps(self._adding, added, owner=self)

    def _margin_data(self, res: core_margin.MarginResult, prep: dict) -> np.ndarray:
        """The margin layer's classes: with the uncertain class when this analysis's interval
        is already current (it may arrive while the layers are still being added)."""
        iv = self._current_interval()
        if iv is None or iv.analysis.result is not res:
            return prep["margin"]
        classes = iv.uncertainty.class_crop_with_uncertain(res.class_crop)
        return np.ascontiguousarray(classes, dtype=np.uint8)

    def _layer_steps(self, res: core_margin.MarginResult, prep: dict):
        """:meth:`_update_layers` as a generator yielding between pieces of napari work.

        A new output layer is added with the canvas held on its last frame and the grid
        stride held (:func:`_layers.hold_paint`, :func:`_layers.hold_stride`): the stride
        that puts it in the pre cell (a rebuild of napari's scene graph) and the canvas's
        first draw of it (its programs built) follow in steps of their own, not in one
        piece with napari's add."""
        v = self.viewer
        first = _layers.find_layer(v, "margin") is None
        made = prep.get("new_layers", {})  # the output layers made off the GUI thread
        held = []  # [lets the canvas paint again, sets the grid stride]: a layer was added

        def add(make):
            held[:] = [_layers.hold_paint(v), _layers.hold_stride(v)]
            layer = make()
            _layers.arrange(v)
            return layer

        def settle():  # the steps after an add: the grid stride, then the first draw
            if held:
                paint, stride = held
                stride()
                yield
                held.clear()
                paint()
                yield

        def drawn():  # (the steps dropped: another case opens)
            if held:
                for release in reversed(held):
                    release()
                held.clear()

        try:
            # the user's grid, views and visible layers stay as they are: with the grid on the
            # margin view joins the pre cell (the layer-order rule), with it off it lies over pre
            with _layers.keep_selection(v):
                lab = _layers.find_layer(v, "margin")
                if lab is not None:
                    # the tumor's box changes with the tumor: new data in place, any shape
                    _set_box(
                        lab,
                        self._margin_data(res, prep),
                        prep["margin_scale"],
                        prep["margin_translate"],
                    )
                else:
                    lab = made.pop("margin", None)
                    data = self._margin_data(res, prep)
                    if lab is None:
                        lab = add(lambda: v.add_labels(data, **_margin_layer_kwargs(prep)))
                    else:
                        if data is not prep["margin"]:  # (the MTM interval came meanwhile)
                            lab.data = data
                        add(lambda: v.add_layer(lab))
                if _layers.layer_meta(lab).get("threshold_mm") != res.threshold_mm:
                    lab.metadata = {
                        **lab.metadata,
                        _layers.META: {**_layers.layer_meta(lab), "threshold_mm": res.threshold_mm},
                    }
            yield
            yield from settle()
            with _layers.keep_selection(v):
                # the ablation zone brought into pre space, as an outline on a box around the
                # tumor
                outline = prep["outline"]
                ol = _layers.find_layer(v, "ablation_registered")
                geo = geometry.layer_geometry(outline)
                if ol is not None:
                    _set_box(ol, prep["outline_array"], geo["scale"], geo["translate"])
                elif (ol := made.pop("ablation_registered", None)) is not None:
                    add(lambda: v.add_layer(ol))
                else:
                    ol = add(
                        lambda: v.add_labels(prep["outline_array"], **_outline_layer_kwargs(prep))
                    )
                    ol.contour = 1
            yield
            yield from settle()
            with _layers.keep_selection(v):
                scale, translate = lab.scale, lab.translate
                data, features = _mtm_point(res, scale, translate, self._sliced_axes())
                pts = _layers.find_layer(v, "mtm_point")
                if pts is None:
                    pts = made.pop("mtm_point", None)
                    if pts is not None and np.allclose(pts.translate, translate):
                        if not np.array_equal(np.asarray(pts.data), data):
                            pts.data = data  # (made where the view was not known)
                        add(lambda: v.add_layer(pts))
                    else:
                        kw = _mtm_point_kwargs(scale, translate, features)
                        pts = add(lambda: v.add_points(data, **kw))
                else:
                    if not (
                        np.allclose(pts.scale, scale)
                        and np.allclose(pts.translate, translate)
                        and np.array_equal(np.asarray(pts.data), data)
                    ):
                        pts.scale, pts.translate = np.asarray(scale), np.asarray(translate)
                        pts.data = data
                    if list(pts.features["margin_mm"]) != features["margin_mm"]:
                        pts.features = features
            if held:
                yield
                yield from settle()
            if first:
                yield
            with _layers.keep_selection(v):
                if first:
                    # our own new layers are in pre space (each put in its place as it came:
                    # margin over the tumor, outline and point above; the pre cell with the
                    # grid on); the tumor shows through the margin classes
                    tl = self.session.labels_layer("tumor")
                    if tl is not None and tl.visible:
                        tl.opacity = min(tl.opacity, 0.3)
                wanted = self._surfaces_wanted(first)
                framed = not any(_layers.role_of(ly) in SURFACE_ROLES for ly in v.layers)
            if wanted:  # the surfaces follow, one per step; 2D/3D stays the user's
                yield
                yield from self._surface_steps(res)
                if framed and v.dims.ndisplay == 3:
                    # the first surfaces, computed in 3D: framed as on a switch to 3D (UAT
                    # s12 N4: the tumor was a speck in the whole scene)
                    self.frame_3d(res)
            # else the camera stays where the user left it: "Go to MTM" goes to the minimal margin
        finally:
            drawn()  # (also when the steps are dropped: another case opens)

    def center_on_mtm(self) -> None:
        """Put every view's slice through the minimal margin point and the camera on it
        (whatever axes the canvas shows: axial, coronal, sagittal, or 3D); with the grid on
        and the view fitted, the view stays fitted (the point is in it)."""
        if self.result is None:
            return
        pt = [float(v) for v in geometry.lps_to_world(self.result.min_margin_point_lps)]
        v = self.viewer
        if v.dims.ndim != 3:
            _layers.center_view_on(v, pt)
            return
        # the slices: the nearest ones holding tumor voxels (the report's rule)
        shown, note = _mtm_slices_world(self.result)
        v.dims.point = tuple(float(c) for c in shown)
        cam = _layers.camera(v)
        zoom, fitted = cam.zoom, False
        if v.dims.ndisplay == 2 and _layers.grid(v).enabled:
            # pre and post side by side, fitted: both cells stay whole (the point is in the
            # pre cell); centred on the point, a quarter of pre was off the canvas (UAT s13
            # N4). Zoomed in beyond the fit, the user's zoom stays, centred on the point.
            v.reset_view()
            fitted = zoom <= cam.zoom * 1.05
            if not fitted:
                cam.zoom = zoom
        if not fitted:
            cam.center = tuple(pt[d] for d in v.dims.displayed)
        if note:
            _layers.notify_info(note)

    def _sliced_axes(self) -> tuple[int, ...]:
        """The axes (of z, y, x) the 2D view steps through; none in 3D."""
        dims = self.viewer.dims
        if dims.ndisplay != 2 or dims.ndim < 3:
            return ()
        off = dims.ndim - 3
        return tuple(int(d) - off for d in dims.not_displayed if int(d) >= off)

    def _place_mtm_point(self, event=None) -> None:
        """The minimal margin point marker on the slice *Go to MTM* shows, in the plane the
        view shows (:func:`_mtm_point`), after a change of plane or of 2D/3D."""
        pts = _layers.find_layer(self.viewer, "mtm_point")
        if pts is None or self._shown is None or self.adding_layers:
            return
        data = _mtm_point(self._shown.result, pts.scale, pts.translate, self._sliced_axes())[0]
        if not np.array_equal(np.asarray(pts.data), data):
            pts.data = data

    def _surfaces_wanted(self, first: bool = False) -> bool:
        """The 3D surfaces are kept current once they exist, and made for a result shown in
        3D (the first result, or on switching to 3D): the user may delete them."""
        if any(_layers.role_of(ly) in SURFACE_ROLES for ly in self.viewer.layers):
            return True
        return first and self.viewer.dims.ndisplay == 3

    def _on_ndisplay(self, event=None) -> None:
        """Switched to 3D (napari's button, a script or "3D surfaces"): the shown result gets
        its surfaces (the session hides the voxel layers they stand in for, in 3D only) and
        the camera frames the tumor and the ablation zone, on the switch only (the user's own
        zoom and turns afterwards stay)."""
        self._ndisplay_missed = self.adding_layers and self.viewer.dims.ndisplay == 3
        if self.viewer.dims.ndisplay != 3 or self._shown is None or self.adding_layers:
            return  # (while the layers are updated: once they are, see _update_layers)
        res = self._shown.result
        made = any(_layers.role_of(ly) in SURFACE_ROLES for ly in self.viewer.layers)

        # after napari's own switch, with the canvas paused (no frame of the tumor's voxel
        # labels before its surface is there): the surfaces when there are none yet, one
        # layer per event-loop iteration (napari's work for each new layer is a separate
        # piece of GUI-thread work), then the camera on the tumor
        def steps():
            if not made:
                yield from self._surface_steps(res)
                yield
            if self.viewer.dims.ndisplay == 3:
                self.frame_3d(res)

        def while_alive(it):  # (not run_in_steps' owner: the canvas must paint again)
            while _layers._alive(self):
                try:
                    item = next(it)
                except StopIteration:
                    return
                yield item

        resume = _layers.pause_canvas(self.viewer, keep_frame=True)
        _layers.run_in_steps(while_alive(self.session.while_case(steps())), resume)

    def frame_3d(self, res: core_margin.MarginResult) -> None:
        """The 3D camera centred on the box of the tumor and the ablation zone, zoomed so
        that the box fills about 3/4 of the canvas (the whole scene at napari's own reset
        leaves the tumor a few dozen pixels wide)."""
        v = self.viewer
        pts = [s.verts for s in (res.tumor_surface, res.ablation_surface) if len(s.verts)]
        if not pts:
            return
        pts = np.vstack(pts)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        box = max(float((hi - lo).max()), 10.0)
        v.reset_view()
        wlo, whi = (np.asarray(e, float) for e in v.layers.extent.world)
        scene = float(np.max((whi - wlo)[list(v.dims.displayed)]))
        cam = _layers.camera(v)
        cam.zoom *= max(1.0, 0.75 * scene / box)
        centre = geometry.lps_to_world((lo + hi) / 2)  # (z, y, x); the camera's: displayed
        cam.center = tuple(float(centre[d]) for d in v.dims.displayed)

    def _update_surfaces(self, res: core_margin.MarginResult) -> None:
        for _ in self._surface_steps(res):
            pass

    def _surface_steps(self, res: core_margin.MarginResult):
        """:meth:`_update_surfaces` as a generator yielding between its two layers (each
        piece keeps the user's selection)."""
        with _layers.keep_selection(self.viewer):
            self._update_tumor_surface(res)
        yield
        with _layers.keep_selection(self.viewer):
            self._update_ablation_surface(res)

    def _update_tumor_surface(self, res: core_margin.MarginResult) -> None:
        cmap, limits = margin_surface_colormap(res.threshold_mm)
        ts = res.tumor_surface
        data = (
            geometry.lps_to_world(ts.verts),
            ts.faces,
            np.asarray(res.surface_margin_mm, dtype=np.float32),
        )
        layer = _layers.find_layer(self.viewer, ROLE_SURFACE)
        if layer is None:
            layer = self.viewer.add_surface(
                data,
                name="tumor surface (margin)",
                colormap=cmap,
                contrast_limits=limits,
                metadata={_layers.META: {"role": ROLE_SURFACE}},
                visible=False,  # drawn in 3D only (the session's 3D look shows it)
                units="mm",
                axis_labels=geometry.AXIS_LABELS,
            )
            _layers.arrange(self.viewer)  # under the minimal margin point
        else:
            layer.data = data
            layer.colormap = cmap
            layer.contrast_limits = limits

    def _update_ablation_surface(self, res: core_margin.MarginResult) -> None:
        a = res.ablation_surface
        adata = (geometry.lps_to_world(a.verts), a.faces, np.zeros(len(a.verts), np.float32))
        al = _layers.find_layer(self.viewer, ROLE_ABLATION_SURFACE)
        if al is None:
            from napari.utils.colormaps import Colormap

            rgb = list(coverage.hex_to_rgb(coverage.STRUCTURE_COLORS["ablation"]))
            cyan = Colormap(colors=[[*rgb, 1], [*rgb, 1]], name="ablation_cyan")
            self.viewer.add_surface(
                adata,
                name="ablation surface (pre space)",
                colormap=cyan,
                opacity=0.15,
                blending="translucent_no_depth",
                metadata={_layers.META: {"role": ROLE_ABLATION_SURFACE}},
                visible=False,
                units="mm",
                axis_labels=geometry.AXIS_LABELS,
            )
            _layers.arrange(self.viewer)  # under the minimal margin point
        else:
            al.data = adata

    def show_3d(self) -> None:
        """The user's request: tumor surface coloured by margin (threshold marked) inside the
        translucent ablation surface, in 3D, the camera on the tumor (the session hides the
        voxel layers the surfaces stand in for and draws pre as a plane, in 3D only)."""
        res = self.result
        if res is None:
            return
        with _layers.keep_selection(self.viewer):
            self._update_surfaces(res)
        self.viewer.dims.ndisplay = 3  # the switch frames the tumor (see _on_ndisplay)

    # ------------------------------------------------------------------ exports
    def table_tsv(self) -> str:
        """The figures table as shown (empty when no analysis is shown)."""
        if self._shown is None:
            return ""
        iv = self._current_interval()
        extra = iv.uncertainty.rows() if iv is not None else []
        return self._shown.result.to_tsv() + "".join("\t".join(r) + "\n" for r in extra)

    def copy_table(self) -> None:
        if self._shown is not None:
            QApplication.clipboard().setText(self.table_tsv())
            _layers.notify_info("margin figures copied (tab-separated)")

    def _report_kwargs(self) -> dict:
        m = self.model
        info = {k: m.info[k] for k in ("name", "title", "modality", "description") if m.info.get(k)}
        if m.folder:
            info["case folder"] = str(m.folder)
        tl, al = self.session.labels_layer("tumor"), self.session.labels_layer("ablation")
        info["tumor layer"] = tl.name if tl is not None else ""
        info["ablation layer"] = al.name if al is not None else ""
        qa = m.qa
        if not m.qa_reviewed:
            earlier = " for this registration" if qa.get("earlier") else ""
            info["warning"] = (
                f"registration QA not reviewed{earlier}: check the registration before relying "
                "on the margins"
            )
        return {
            "info": info,
            "qa": qa,
            "pre": m.pre,
            "transform_note": registration_summary(m, m.result),
        }

    def _export_job(self, path: str | Path):
        """A function writing the current figures to ``path`` (any thread); raises on bad input."""
        a = self.model.analysis
        if a is None:
            raise AblationError("compute the margins first")
        if not self.model.analysis_current:
            raise AblationError(
                "the margins are being updated after a change: export when they are current"
            )
        p = Path(path)
        suf = p.suffix.lower()
        if suf not in (".json", ".csv", ".html", ".htm", ".pdf"):
            raise AblationError(f"cannot export to '{p.name}': use .json, .csv, .html or .pdf")
        if not self.model.qa_reviewed and suf != ".csv":
            earlier = " for this registration" if self.model.qa.get("earlier") else ""
            _layers.notify_warning(
                f"registration QA is 'not reviewed'{earlier}: the export says so; review it in "
                "3. Register"
            )
        iv = self.model.interval
        if iv is None or not self.model.interval_current or iv.analysis is not a:
            raise AblationError("the MTM interval is being computed: export when it is current")
        res, kw, unc = a.result, self._report_kwargs(), iv.uncertainty
        tx = self.model.transform  # the analysis's (it is current)
        keep = protected_files(self.model.info, self.model.folder)  # never written over

        def job():
            if suf == ".json":
                extra = {
                    "case": kw["info"],
                    "registration_qa": kw["qa"],
                    "registration": kw["transform_note"],
                }
                return report.write_json(p, res, extra, uncertainty=unc, transform=tx, inputs=keep)
            if suf == ".csv":
                return report.write_csv(p, res, uncertainty=unc, inputs=keep)
            # the report draws its own 3D surface
            return report.write_report(p, res, uncertainty=unc, inputs=keep, **kw)

        return job

    def export(self, path: str | Path, screenshot: bool = False) -> Path:
        """Write the current figures now; the format follows the suffix (.json .csv .html .pdf).

        ``screenshot`` is accepted for compatibility; the report always draws the 3D surface
        itself (headless), so nothing is rendered on the GUI thread. An MTM interval still
        being computed in the background is computed here first.
        """
        m = self.model
        if m.analysis_current and not m.interval_current:
            m.compute_interval()
        return self._export_job(path)()

    def export_async(self, path: str | Path):
        """Write the figures off the GUI thread once they are current. Returns the worker, or
        None when the export waits for the analysis to catch up."""
        a = self.model.analysis
        if a is not None and (not self.model.analysis_current or self._shown is not a):
            self._pending_exports.append(Path(path))
            if not self.session.analysis.running:
                self.session.analysis.request(now=True)
            return None
        if a is not None and self._current_interval() is None and not self.session.interval.error:
            self._pending_exports.append(Path(path))  # written once the interval is current
            self.session.interval.request()
            return None
        try:
            job = self._export_job(path)
        except AblationError as exc:
            _layers.notify_error(exc)
            return None

        worker = _Export(job)

        def done(out, _gen=_layers.CLOSE_GENERATION[0]):
            if _gen != _layers.CLOSE_GENERATION[0]:
                return  # written after its window closed: nothing to show it in
            self._export_workers = [w for w in self._export_workers if w is not worker]
            if isinstance(out, _layers._Failed):
                _layers.notify_error(out.message)
                return
            self.last_export = Path(out)
            _layers.notify_info(f"written {out}")

        worker.done.connect(done)
        self._export_workers.append(worker)
        worker.start()
        return worker

    @property
    def exporting(self) -> bool:
        return bool(self._export_workers) or bool(self._pending_exports)

    def _flush_pending_exports(self) -> None:
        if (
            not self._pending_exports
            or not self.model.analysis_current
            or self._current_interval() is None
        ):
            return
        pending, self._pending_exports = self._pending_exports, []
        for p in pending:
            self.export_async(p)

    def _export_dialog(self, fmt: str) -> None:
        suffix = {"JSON": ".json", "CSV": ".csv", "HTML": ".html", "PDF": ".pdf"}[fmt]
        name = "margin" + suffix
        if self.model.folder:
            name = str(Path(self.model.folder) / name)
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export margins as {fmt}", name, f"{fmt} (*{suffix})"
        )
        if not path:
            return
        if not path.lower().endswith(suffix):
            path += suffix
        try:
            self.export_async(path)
        except (AblationError, OSError) as exc:
            _layers.notify_error(one_line(exc))
