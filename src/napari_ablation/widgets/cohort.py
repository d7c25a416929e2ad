"""Cohort widget: run the margin batch of many cases in the background, browse the results
table (sortable; a click opens that case with its layers and its margin layer) and the
statistics plots of margins against outcomes.

A thin view over :mod:`napari_ablation.core.cohort` and
:mod:`napari_ablation.core.cohort_stats` (the code of ``napari-ablation cohort run`` and
``cohort stats``): the batch runs on ``dask.distributed`` from a background thread, with
the same progress line as the CLI; a click on a row opens the case folder through the
case session, as the Load widget does.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtGui import QPixmap
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core import cohort, cohort_stats, coverage
from ..core.errors import AblationError
from ..core.margin import MM_DECIMALS
from . import _layers
from .session import CaseSession

#: results table: (column of margins.csv, header, number format or None for text)
COLUMNS = (
    ("case", "Case", None),
    # the figure of margins.csv as written, not rounded a second time (UAT s12 N8: -8.125
    # showed -8.12 here and -8.13 in Margins): the JSON's decimals, as the Margins table
    ("min_margin_mm", "MTM (mm)", f"{{:.{MM_DECIMALS}f}}"),
    ("min_margin_octant", "MTM octant", None),
    ("volume_fraction.uncovered", "Uncovered %", "pct"),
    ("tumor_max_diameter_mm", "Diameter (mm)", "{:.1f}"),
    ("tumor_volume_ml", "Tumor (ml)", "{:.2f}"),
    ("ablation_volume_ml", "Ablation (ml)", "{:.1f}"),
    ("modality", "Modality", None),
    ("qa_verdict", "QA", None),
    ("error", "Error", None),
)
#: the item role that holds a numeric cell's value (the table sorts by it, shows its text)
_VALUE_ROLE = Qt.ItemDataRole.UserRole + 1
STATS_DIR = "stats"
#: the Margins widget's name in the plugin manifest (napari.yaml)
MARGINS_WIDGET = "4. Margins"


def cell_text(value, fmt: str | None) -> str:
    """Return the table text of one ``margins.csv`` value in its column's format.

    ``fmt`` is a :data:`COLUMNS` format: a ``str.format`` pattern, ``"pct"`` (a fraction
    shown in % with one decimal) or None (text as stored).
    """
    if value is None or value == "" or fmt is None:
        return "" if value is None else str(value)
    x = float(value)
    return f"{100.0 * x:.1f}" if fmt == "pct" else fmt.format(x)


class _NumberItem(QTableWidgetItem):
    """A numeric cell: shows its formatted text, sorts by its value (empty cells last)."""

    def __init__(self, value, fmt: str):
        super().__init__(cell_text(value, fmt))
        number = None if value is None or value == "" else float(value)
        self.setData(_VALUE_ROLE, number)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other):
        a, b = self.data(_VALUE_ROLE), other.data(_VALUE_ROLE)
        if a is None or b is None:  # empty (a failed case): after the numbers
            return a is not None and b is None
        return a < b


class _Relay(QObject):
    """Carries progress from the batch thread to the GUI thread (queued signal)."""

    progress = Signal(object)


class CohortWidget(QWidget):
    """5. Cohort: batch margins, results table, margin-outcome statistics."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = CaseSession.of(napari_viewer)
        self.session.attach_widget(self)  # docked narrow, tabbed with the plugin's docks
        self._worker = None
        self._stop = threading.Event()
        self._relay = _Relay(self)
        self._relay.progress.connect(self._show_progress)
        # the window closing stops a running batch (as Stop does), so the close is prompt
        _layers.connect_while_alive(self.session.changed, self, self._on_session_changed)
        self.rows: list[dict[str, Any]] = []
        self.last_error: str | None = None
        self.last_progress: str = ""
        self.stats: dict[str, Any] | None = None

        form = QFormLayout()
        self.cases_edit = QLineEdit()
        self.cases_edit.setPlaceholderText("folder with case folders, or a manifest .csv")
        form.addRow("Cases", self._with_browse(self.cases_edit, self._pick_cases))
        self.results_edit = QLineEdit()
        self.results_edit.setPlaceholderText("results folder (margins.csv, cases/)")
        form.addRow("Results", self._with_browse(self.results_edit, self._pick_results))
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(coverage.THRESHOLD_MIN_MM, coverage.THRESHOLD_MAX_MM)
        self.threshold.setValue(5.0)
        self.threshold.setSuffix(" mm")
        self.workers = QSpinBox()
        self.workers.setRange(1, 64)
        self.workers.setValue(2)
        self.scheduler = QLineEdit()
        self.scheduler.setPlaceholderText("local cluster (or tcp://host:8786)")
        form.addRow("Threshold", self.threshold)  # (one per row: the dock stays narrow)
        form.addRow("Workers", self.workers)
        form.addRow("Scheduler", self.scheduler)

        self.run_btn = QPushButton("Run batch")
        self.run_btn.clicked.connect(lambda: self.run_batch())
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(self.stop)
        self.open_btn = QPushButton("Show results")
        self.open_btn.setToolTip("read margins.csv of the results folder")
        self.open_btn.clicked.connect(lambda: self.load_results())
        buttons = QHBoxLayout()
        for b in (self.run_btn, self.stop_btn, self.open_btn):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        self.outcomes_edit = QLineEdit()
        self.outcomes_edit.setPlaceholderText("outcomes .csv: case,ltp,months[,recurrence_octant]")
        self.stats_btn = QPushButton("Statistics")
        self.stats_btn.clicked.connect(lambda: self.compute_stats())
        srow = QHBoxLayout()
        srow.addWidget(self._with_browse(self.outcomes_edit, self._pick_outcomes))
        srow.addWidget(self.stats_btn)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in COLUMNS])
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setTabKeyNavigation(False)  # read-only: one Tab leaves it
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        # opens sorted by case, ascending (Qt's default indicator is descending)
        self.table.horizontalHeader().setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellClicked.connect(lambda r, _c: self.open_row(r))

        self.plots = QWidget()
        grid = QGridLayout(self.plots)
        self.plot_labels: dict[str, QLabel] = {}
        for i, key in enumerate(cohort_stats.PLOTS):
            lab = QLabel("")
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            grid.addWidget(lab, i, 0)
            self.plot_labels[key] = lab
        self.stats_text = QLabel("Run the statistics to see the plots.")
        self.stats_text.setWordWrap(True)
        grid.addWidget(self.stats_text, len(cohort_stats.PLOTS), 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.plots)

        self.tabs = QTabWidget()
        self.tabs.addTab(self.table, "Cases")
        self.tabs.addTab(scroll, "Plots")

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addLayout(srow)
        lay.addWidget(self.tabs, 1)

    # ------------------------------------------------------------------ actions
    def run_batch(self, cases: str | None = None, results: str | None = None):
        """Start the batch in the background (returns the worker, or None when refused)."""
        if cases is not None:
            self.cases_edit.setText(str(cases))
        if results is not None:
            self.results_edit.setText(str(results))
        if self._worker is not None:
            _layers.notify_warning("a cohort job is already running")
            return None
        src, out = self.cases_edit.text().strip(), self.results_edit.text().strip()
        if not src or not out:
            self._fail("choose the cases (folder or manifest) and a results folder first")
            return None
        threshold, workers = self.threshold.value(), self.workers.value()
        scheduler = self.scheduler.text().strip() or None
        self._stop.clear()

        def job():
            inputs = (
                cohort.read_manifest(src)
                if src.lower().endswith(".csv")
                else cohort.find_cases([src])
            )
            try:
                return cohort.run_cohort(
                    inputs,
                    out,
                    threshold_mm=threshold,
                    scheduler=scheduler,
                    workers=workers,
                    progress=self._relay_progress,
                    stop=self._stop,
                )
            except KeyboardInterrupt:
                return None

        def done(run):
            if run is None:
                self.status.setText(f"stopped: {self.last_progress} (finished cases are kept)")
                return
            self.load_results(out)
            self.status.setText(run.summary())

        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        worker = self._start(job, done, "Cohort batch")
        self.status.setText(
            "starting the Dask cluster…" if scheduler is None else f"connecting to {scheduler}…"
        )
        return worker

    def stop(self) -> None:
        """Stop the running batch; cases finished so far stay stored."""
        self._stop.set()

    def _on_session_changed(self, what: str) -> None:
        if what == "closing":
            self.stop()

    def load_results(self, results: str | None = None) -> None:
        """Fill the table from ``RESULTS/margins.csv`` (and the plots from ``RESULTS/stats``)."""
        import pandas as pd

        if results is not None:
            self.results_edit.setText(str(results))
        folder = Path(self.results_edit.text().strip())
        path = folder / cohort.MARGINS_CSV
        try:
            df = pd.read_csv(path, dtype={"case": str}, keep_default_na=False)
        except (OSError, ValueError) as exc:
            self._fail(f"{path}: cannot read the results ({exc})")
            return
        self.rows = df.to_dict("records")
        self._fill_table()
        try:
            self.stats = json.loads((folder / STATS_DIR / "stats.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.stats = None
        pngs = {k: folder / STATS_DIR / name for k, name in cohort_stats.PLOTS.items()}
        if all(p.exists() for p in pngs.values()):
            self._show_plots({k: p.read_bytes() for k, p in pngs.items()})

    def compute_stats(self, outcomes: str | None = None):
        """Join the results with an outcomes CSV; writes RESULTS/stats/ and shows the plots."""
        if outcomes is not None:
            self.outcomes_edit.setText(str(outcomes))
        if self._worker is not None:
            _layers.notify_warning("a cohort job is already running")
            return None
        folder = Path(self.results_edit.text().strip())
        oc = self.outcomes_edit.text().strip()
        if not oc or not self.results_edit.text().strip():
            self._fail("choose a results folder and an outcomes CSV first")
            return None
        threshold = self.threshold.value()

        def job():
            cs, _files = cohort_stats.write_stats(
                folder / cohort.MARGINS_CSV, oc, folder / STATS_DIR, threshold_mm=threshold
            )
            return cs, cohort_stats.render_plots(cs)

        def done(result):
            cs, pngs = result
            self.stats = cs.stats
            self.status.setText(f"statistics written to {folder / STATS_DIR}")
            self._show_plots(pngs)
            for note in cs.notes:
                _layers.notify_info(note)
            self.tabs.setCurrentIndex(1)

        return self._start(job, done, "Cohort statistics")

    def open_row(self, row: int):
        """Open the case of table row ``row`` (as sorted now) with its margin layer."""
        item = self.table.item(row, 0)
        if item is None:
            return None
        cid = item.data(Qt.ItemDataRole.UserRole)
        stored = cohort.load_case_result(self.results_edit.text().strip(), cid)
        if stored is None or not stored.get("inputs"):
            self._fail(f"no stored result for case {cid}: run the batch first")
            return None
        inputs = cohort.CaseInputs(**stored["inputs"])
        if not inputs.folder:
            self._fail(
                f"case {cid} comes from a manifest, not a case folder: "
                "open its files with the Load widget"
            )
            return None

        def job():
            from ..core.case import Case
            from .session import prepare_display

            case = Case.load(inputs.folder)
            return case, Path(inputs.folder), prepare_display(case)

        def shown(_case, _folder):
            self.status.setText(f"opened case {cid}")
            if stored.get("error"):
                return
            # the margins are the case model's analysis (with the case's own threshold:
            # opening a case never rewrites its folder), shown by its one view, the Margins
            # widget: its figures, table and margin layer agree, and it adds its layers
            # without making any of them active
            self._margins_view()
            self.session.analysis.request()

        # the opening every case goes through (Load, File > Open Sample): the open case's
        # figures hidden at once, actions refused until it is open, queued behind another
        self.last_error = None
        self.status.setText(f"opening case {cid}\u2026")
        return self.session.open_case(
            job, f"opening case {cid}", on_shown=shown, on_error=self._fail
        )

    def _margins_view(self) -> None:
        """The Margins widget of this viewer, docked if it is not yet."""
        from .margin import MarginWidget

        window = self.viewer.window
        if not any(isinstance(w, MarginWidget) for w in window.dock_widgets.values()):
            window.add_plugin_dock_widget("napari-ablation", MARGINS_WIDGET)

    # ------------------------------------------------------------------ views
    def _fill_table(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self.rows))
        for r, rec in enumerate(self.rows):
            for c, (key, _head, fmt) in enumerate(COLUMNS):
                v = rec.get(key, "")
                item = _NumberItem(v, fmt) if fmt else QTableWidgetItem(cell_text(v, None))
                if c == 0:
                    item.setData(Qt.ItemDataRole.UserRole, str(rec.get("case", "")))
                if rec.get("error"):
                    item.setToolTip(str(rec["error"]))
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)

    def _show_plots(self, pngs: dict[str, bytes]) -> None:
        for key, lab in self.plot_labels.items():
            if key in pngs:
                pm = QPixmap()
                pm.loadFromData(pngs[key], "PNG")
                lab.setPixmap(pm.scaledToWidth(300, Qt.TransformationMode.SmoothTransformation))
        if self.stats:
            s = self.stats
            mtm = s["cox"]["min_margin_mm"]
            hr = (
                f"Cox HR {mtm['hazard_ratio']:.2f} per mm of MTM "
                f"(95 % CI {mtm['ci95'][0]:.2f}-{mtm['ci95'][1]:.2f})"
                if mtm["hazard_ratio"] is not None
                else f"Cox not estimable ({mtm.get('not_estimable')})"
            )
            self.stats_text.setText(f"{s['n_cases']} cases, {s['n_events']} with LTP; {hr}")

    def _relay_progress(self, p: cohort.CohortProgress) -> None:  # batch thread
        self._relay.progress.emit((p.done, p.failed, p.total, p.text()))

    def _show_progress(self, data) -> None:  # GUI thread
        done, failed, total, text = data
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done + failed)
        self.last_progress = text
        self.status.setText(text)

    def _start(self, job, done, desc: str):
        self.last_error = None
        self.status.setText(f"{desc}\u2026")  # a line about an earlier job (an error) goes
        self._set_busy(True)

        def finished():
            self._worker = None
            self._set_busy(False)
            self.progress.setVisible(False)

        self._worker = _layers.start_worker(
            job, on_returned=done, on_error=self._fail, on_finished=finished, desc=desc
        )
        return self._worker

    def _set_busy(self, busy: bool) -> None:
        for b in (self.run_btn, self.open_btn, self.stats_btn):
            b.setEnabled(not busy)
        self.stop_btn.setEnabled(busy)

    def _fail(self, message: str | AblationError) -> None:
        self.last_error = str(message)
        self.status.setText(f"error: {message}")
        _layers.notify_error(message)

    # ------------------------------------------------------------------ pickers
    @staticmethod
    def _with_browse(edit: QLineEdit, pick) -> QWidget:
        w = QWidget()
        h = QHBoxLayout(w)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(edit, 1)
        b = QPushButton("…")
        b.setFixedWidth(28)
        b.clicked.connect(pick)
        h.addWidget(b)
        return w

    def _pick_cases(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder with case folders")
        if d:
            self.cases_edit.setText(d)
            if not self.results_edit.text().strip():
                self.results_edit.setText(str(Path(d).parent / f"{Path(d).name}_results"))

    def _pick_results(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Results folder")
        if d:
            self.results_edit.setText(d)
            if (Path(d) / cohort.MARGINS_CSV).exists():
                self.load_results()

    def _pick_outcomes(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Outcomes CSV", "", "CSV (*.csv)")
        if f:
            self.outcomes_edit.setText(f)
