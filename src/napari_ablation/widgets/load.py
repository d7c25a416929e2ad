"""Load-case widget: pre and post series (file or DICOM folder), a sample case, or a
saved case folder. Reading runs off the GUI thread with a progress indicator; nothing
is shown until both images are read and checked, so bad input leaves the viewer as it
was and says why in one line.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core import display, io
from ..core.case import (
    Case,
    check_save_folder,
    is_case_folder,
    load_case_files,
    open_sample_copy,
)
from ..core.errors import AblationError
from . import _layers, orientation, reader_choice
from .session import CaseSession, default_cases_root, new_case_folder, prepare_display

#: what the View choice says when no radiological plane is shown
VIEW_3D = "3D (pick a plane)"
VIEW_TRANSPOSED = "transposed (pick a plane)"


class _SeriesPicker(QWidget):
    """A path (file or DICOM folder) with a series choice when the folder holds several."""

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self.title = title
        self.path = QLineEdit()
        self.path.setPlaceholderText(f"{title}: image file or DICOM folder")
        self.file_btn = QPushButton("File…")
        self.folder_btn = QPushButton("Folder…")
        self.series = QComboBox()
        self.series.setVisible(False)
        self.series.setToolTip("This folder holds several DICOM series: choose one")
        self._series: list[io.SeriesInfo] = []
        self._listing: str | None = None  # the folder being listed in the background
        self._listed: str | None = None  # the folder whose series the chooser shows
        self.on_listed = None  # called with True/False once a listing ends (shown/failed)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.path, 1)
        row.addWidget(self.file_btn)
        row.addWidget(self.folder_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.series)
        self.file_btn.clicked.connect(self._pick_file)
        self.folder_btn.clicked.connect(self._pick_folder)
        self.path.editingFinished.connect(self.refresh_series)

    def _pick_file(self):
        name, _ = QFileDialog.getOpenFileName(
            self,
            f"{self.title} image",
            "",
            "Images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.dcm);;All files (*)",
        )
        if name:
            self.path.setText(name)
            self.refresh_series()

    def _pick_folder(self):
        name = QFileDialog.getExistingDirectory(self, f"{self.title} DICOM folder")
        if name:
            self.path.setText(name)
            self.refresh_series()

    def refresh_series(self):
        """List the series of a DICOM folder off the GUI thread (headers only). Returns the
        worker, or None when the path is not a DICOM folder."""
        self._series = []
        self._listed = None
        self.series.clear()
        self.series.setVisible(False)
        p = Path(self.path.text().strip())
        if not self.is_dicom_folder():
            return None
        self.series.addItem("reading the folder…")
        self._listing = str(p)

        def shown(series, _path=str(p)):
            if self._listing != _path:
                return  # the user picked another path meanwhile
            self._listing = None
            self._listed = _path
            self.series.clear()
            self._series = series
            if len(series) > 1:
                for s in series:
                    self.series.addItem(s.summary(), s.uid)
                usable = self.usable()
                self.series.setCurrentIndex(usable[0] if usable else 0)
                self.series.setVisible(True)
            if self.on_listed is not None:
                self.on_listed(True)

        def failed(message, _path=str(p)):
            if self._listing == _path:
                self._listing = None
                self.series.clear()
            _layers.notify_error(message)
            if self.on_listed is not None:
                self.on_listed(False)

        return _layers.start_worker(
            lambda: io.list_dicom_series(p), on_returned=shown, on_error=failed
        )

    def is_dicom_folder(self) -> bool:
        """True when the path is a folder (of DICOM series), not a case folder."""
        p = Path(self.path.text().strip())
        return bool(self.path.text().strip()) and p.is_dir() and not is_case_folder(p)

    def usable(self) -> list[int]:
        """Indices of the listed series that read as volumes (3D, no problem)."""
        return [i for i, s in enumerate(self._series) if s.size[2] > 1 and not s.problem]

    @property
    def listed(self) -> bool:
        """The series of the folder now in the path are listed (or it is no DICOM folder)."""
        return not self.is_dicom_folder() or (
            self._listing is None and self._listed == str(Path(self.path.text().strip()))
        )

    @property
    def busy(self) -> bool:
        return self._listing is not None

    @property
    def series_uid(self) -> str | None:
        return self.series.currentData() if self.series.count() > 1 else None


class LoadCaseWidget(QWidget):
    """1. Load case: pre/post series, a sample case, or a saved case folder."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = CaseSession.of(napari_viewer)
        self.session.attach_widget(self)
        self._worker = None
        self._queued = None  # (job, message, show_notes): opens when the case opening now is open
        self._load_pending = None  # load_files() arguments: loads once the folders are listed
        self.last_error: str | None = None  # the last one-line error shown to the user

        files = QGroupBox("Pre / post series")
        form = QFormLayout(files)
        self.pre = _SeriesPicker("Pre-ablation")
        self.post = _SeriesPicker("Post-ablation")
        self.case_name = QLineEdit()
        self.case_name.setPlaceholderText("case name (default: from the pre file)")
        self.load_btn = QPushButton("Load pre + post")
        form.addRow("Pre", self.pre)
        form.addRow("Post", self.post)
        form.addRow("Name", self.case_name)
        form.addRow(self.load_btn)
        self.pre.on_listed = self.post.on_listed = self._series_listed

        sample = QGroupBox("Sample case")
        scol = QVBoxLayout(sample)
        srow = QHBoxLayout()  # the sample's name on a line of its own, shown whole
        self.sample = QComboBox()
        self._sample_names = _sample_names()
        for key, title in self._sample_names:
            self.sample.addItem(title, key)
        self.fresh = QCheckBox("fresh")
        self.fresh.setToolTip(
            "Start from the bundled sample again (your previous annotations of it are kept "
            "in a numbered folder)"
        )
        self.sample_btn = QPushButton("Open sample")
        scol.addWidget(self.sample)
        scol.addLayout(srow)
        srow.addWidget(self.fresh)
        srow.addStretch(1)
        srow.addWidget(self.sample_btn)

        folder = QGroupBox("Case folder")
        frow = QVBoxLayout(folder)
        buttons = QHBoxLayout()
        self.open_btn = QPushButton("Open folder…")
        self.save_btn = QPushButton("Save")
        self.save_as_btn = QPushButton("Save as…")
        buttons.addWidget(self.open_btn)
        buttons.addWidget(self.save_btn)
        buttons.addWidget(self.save_as_btn)
        self.status = QLabel("No case loaded.")
        self.status.setWordWrap(True)
        frow.addLayout(buttons)
        frow.addWidget(self.status)

        contrast = QGroupBox("Display")
        crow = QFormLayout(contrast)
        # short item names, shown whole at the dock's width; the details in the tooltips
        self.window = QComboBox()
        abdomen = display.CT_WINDOWS["abdomen"]
        windows = [
            (
                "auto (by modality)",
                "auto",
                f"CT: the abdomen window (W {abdomen[0]:.0f} / L {abdomen[1]:.0f} HU); MR "
                "and other images: the 0.5-99.5 percentiles of the non-background voxels",
            ),
            *(
                (f"CT {key} (W {w:.0f} / L {lev:.0f})", key, f"CT {key} window, in HU")
                for key, (w, lev) in display.CT_WINDOWS.items()
            ),
            (
                "percentiles 0.5-99.5 %",
                "robust",
                "the 0.5-99.5 percentiles of the non-background voxels (any modality)",
            ),
        ]
        for text, key, tip in windows:
            self.window.addItem(text, key)
            self.window.setItemData(self.window.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.window.setToolTip("contrast of pre and post (CT window presets or percentiles)")
        crow.addRow("Window", self.window)
        self.window.currentIndexChanged.connect(
            lambda _i: self.apply_window(self.window.currentData())
        )
        # the three radiological planes in one choice (napari's Roll and Transpose buttons
        # step through every arrangement of the axes, half of them not radiological)
        self.plane = QComboBox()
        for name in orientation.PLANES:
            self.plane.addItem(name, name)
        self.plane.setToolTip(
            "radiological views: axial (anterior up, patient right on the left), coronal "
            "(superior up, right on the left), sagittal (superior up, anterior on the left)"
        )
        crow.addRow("View", self.plane)
        self.plane.activated.connect(
            lambda i: orientation.show_plane(self.viewer, self.plane.itemData(i))
        )
        for ev in (self.viewer.dims.events.order, self.viewer.dims.events.ndisplay):
            _layers.connect_while_alive(ev, self, self._show_plane_choice)
        self._show_plane_choice()

        opening = QGroupBox("File > Open of .nii / .nrrd / .mha / .dcm")
        self.prefer_reader = QCheckBox("always with Ablation Margins")
        self.prefer_reader.setToolTip(
            "napari's own reader claims .nii, .nii.gz, .nrrd, .mha, .mhd and .dcm too, so "
            "File > Open asks which reader to use. Checked: napari's preference "
            "(Preferences > Plugins) reads them with Ablation Margins (LPS, mm); "
            "unchecked: napari asks again."
        )
        self.prefer_reader.setChecked(reader_choice.is_preferred())
        self.prefer_reader.toggled.connect(reader_choice.set_preferred)
        QVBoxLayout(opening).addWidget(self.prefer_reader)

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setVisible(False)

        lay = _layers.scroll_body(self)
        for combo in (self.sample, self.window):
            _layers.compact_combo(combo)
        lay.addWidget(files)
        lay.addWidget(sample)
        lay.addWidget(folder)
        lay.addWidget(contrast)
        lay.addWidget(opening)
        lay.addWidget(self.progress)
        lay.addStretch(1)

        self.load_btn.clicked.connect(lambda: self.load_files())
        self.sample_btn.clicked.connect(lambda: self.open_sample())
        self.open_btn.clicked.connect(self._pick_case_folder)
        self.save_btn.clicked.connect(lambda: self.save_case())
        self.save_as_btn.clicked.connect(self._save_as)
        _layers.connect_while_alive(self.session.changed, self, self._on_session_changed)
        self._on_session_changed("case")

    # ------------------------------------------------------------------ actions
    def load_files(
        self,
        pre: str | None = None,
        post: str | None = None,
        *,
        pre_series: str | None = None,
        post_series: str | None = None,
        name: str | None = None,
    ):
        """Read pre and post off the GUI thread, then show them. Returns the worker."""
        pre = pre if pre is not None else self.pre.path.text().strip()
        post = post if post is not None else self.post.path.text().strip()
        if not pre or not post:
            _layers.notify_error("choose both a pre-ablation and a post-ablation image")
            return None
        from_pickers = [
            picker
            for picker, path, uid in ((self.pre, pre, pre_series), (self.post, post, post_series))
            if uid is None and path == picker.path.text().strip()
        ]
        if any(not picker.listed for picker in from_pickers):
            # a DICOM folder whose series are not listed yet: the series chosen (the post
            # one differs from the pre one) are read once the listing ends, never "the largest"
            self._load_pending = {"pre": pre, "post": post, "name": name}
            for picker in from_pickers:
                if not picker.listed and not picker.busy:
                    picker.refresh_series()
            _layers.notify_info(
                "reading the DICOM folder: the case loads once its series are listed"
            )
            return None
        self._load_pending = None
        pre_series = pre_series if pre_series is not None else self.pre.series_uid
        post_series = post_series if post_series is not None else self.post.series_uid
        name = name or self.case_name.text().strip() or None

        def job():
            case = load_case_files(
                pre, post, pre_series=pre_series, post_series=post_series, name=name
            )
            case.info["warnings"] = mask_warnings(case)
            folder = new_case_folder(case.info["name"])
            case.save(folder)  # off the GUI thread: the case folder exists before any edit
            return case, folder, prepare_display(case)

        return self._run(job, f"Reading {Path(pre).name} and {Path(post).name}")

    def _series_listed(self, ok: bool) -> None:
        """A folder was listed: post defaults to another series than pre's when pre and
        post name the same folder; a Load waiting for the listing goes on (or is dropped
        when the listing failed)."""
        pre, post = self.pre, self.post
        if ok and pre.listed and post.listed and pre._listed and pre._listed == post._listed:
            others = [i for i in post.usable() if post._series[i].uid != pre.series_uid]
            if post.series_uid == pre.series_uid and others:
                post.series.setCurrentIndex(others[0])
        pending = self._load_pending
        if pending is None or pre.busy or post.busy:
            return
        self._load_pending = None
        if ok:
            self.load_files(**pending)

    def open_sample(self, key: str | None = None, *, fresh: bool | None = None):
        """Open a bundled sample case in a working copy under the cases folder."""
        key = key or self.sample.currentData()
        fresh = self.fresh.isChecked() if fresh is None else fresh

        def job():
            case, folder = sample_working_copy(key, fresh=fresh)
            return case, folder, prepare_display(case)

        return self._run(job, f"Opening sample case {key}")

    def open_case_folder(self, folder: str):
        def job():
            case = Case.load(folder)
            return case, Path(folder), prepare_display(case)

        return self._run(job, f"Opening case {Path(folder).name}", show_notes=False)

    def save_case(self, folder: str | None = None):
        if self.session.model.pre is None:
            _layers.notify_error("no case to save: load pre and post first")
            return None
        m = self.session.model
        try:
            if folder is not None:  # Save as: never over another case or the user's files
                check_save_folder(folder, m.folder, m.info.get("name", "case"))
            out = self.session.save(folder)
        except AblationError as exc:
            _layers.notify_error(exc)
            return None
        _layers.notify_info(f"case saved to {out}")
        return out

    def apply_window(self, preset: str = "auto") -> None:
        """Set the contrast of the pre and post layers: a CT window or robust MR limits."""
        for role in ("pre", "post", "post_registered"):
            layer = _layers.find_layer(self.viewer, role)
            if layer is None:
                continue
            modality = _layers.layer_meta(layer).get("modality", "") or self.session.case.info.get(
                "modality", ""
            )
            if preset in display.CT_WINDOWS:
                limits = display.window_limits(*display.CT_WINDOWS[preset])
            elif preset == "robust":
                limits = display.robust_limits(layer.data)
            else:
                limits = display.default_contrast(layer.data, modality)
            layer.contrast_limits_range = (
                min(limits[0], float(layer.contrast_limits_range[0])),
                max(limits[1], float(layer.contrast_limits_range[1])),
            )
            layer.contrast_limits = limits

    def _show_plane_choice(self, event=None) -> None:
        """The View choice names the plane shown; in 3D and for a transposed view it says
        so in grey, where a blank box said nothing (UAT s12 N7)."""
        name = orientation.plane_of(self.viewer)
        if name is None:
            self.plane.setPlaceholderText(
                VIEW_3D if self.viewer.dims.ndisplay == 3 else VIEW_TRANSPOSED
            )
        self.plane.setCurrentIndex(-1 if name is None else self.plane.findData(name))

    # ------------------------------------------------------------------ plumbing
    def _run(self, job, message: str, *, show_notes: bool = True):
        if self._worker is not None or self.session.opening is not None:
            # the newest request opens once the case being opened (by this widget, File >
            # Open Sample or a Cohort row) is open (never dropped)
            self._queued = (job, message, show_notes)
            _layers.notify_info(f"{message}: once the case being opened is open")
            return None
        self.progress.setVisible(True)
        self.progress.setFormat(message)
        self._set_busy(True)
        self.last_error = None
        self.session.begin_opening(message[:1].lower() + message[1:])

        showing = [False]  # the layers are being added (one per event-loop iteration)

        def done(result):
            case, folder, prepared = result

            def shown():
                showing[0] = False
                for note in case.info.get("notes", []) if show_notes else []:
                    _layers.notify_info(note)
                for warning in case.info.pop("warnings", []) if show_notes else []:
                    _layers.notify_warning(warning)
                finished()

            try:
                showing[0] = True
                self.session.set_case(
                    case, folder, save_images=False, prepared=prepared, on_shown=shown
                )
            except AblationError as exc:
                showing[0] = False
                failed(str(exc))

        def failed(message: str):
            self.last_error = message
            _layers.notify_error(message)

        def finished():
            if showing[0]:
                return  # done once the layers are on screen
            self._worker = None
            self.progress.setVisible(False)
            self._set_busy(False)
            self.session.end_opening()
            queued, self._queued = self._queued, None
            if queued is not None:
                self._run(queued[0], queued[1], show_notes=queued[2])

        # the widget's own progress bar only: napari's activity indicator makes the status
        # bar a pixel taller, and the canvas, resized, repaints every layer at once
        self._worker = _layers.start_worker(
            job, on_returned=done, on_error=failed, on_finished=finished
        )
        return self._worker

    def _set_busy(self, busy: bool):
        for b in (self.load_btn, self.sample_btn, self.open_btn, self.save_btn, self.save_as_btn):
            b.setEnabled(not busy)

    def _pick_case_folder(self):
        name = QFileDialog.getExistingDirectory(self, "Case folder", str(default_cases_root()))
        if name:
            if not is_case_folder(name):
                _layers.notify_error(f"{name}: not a case folder (no case.json)")
                return
            self.open_case_folder(name)

    def _save_as(self):
        name = QFileDialog.getExistingDirectory(
            self, "Save case into folder", str(default_cases_root())
        )
        if name:
            self.save_case(name)

    def _on_session_changed(self, what: str):
        s = self.session
        m = s.model
        if what == "opening" and s.opening is None and self._worker is None and self._queued:
            queued, self._queued = self._queued, None  # (another widget's opening ended)
            self._run(queued[0], queued[1], show_notes=queued[2])
            return
        if m.pre is None and m.post is None:
            self.status.setText("No case loaded.")
            return
        name = m.info.get("name", "case")
        where = str(m.folder) if m.folder else "not saved yet"
        if s.last_error:
            state = s.last_error
        elif s.opening is not None or self._worker is not None:
            state = f"{s.opening or 'opening'}\u2026"  # saved or not, it is not open yet
        elif s.all_saved:
            state = "all changes saved"  # the files on disk hold every item as shown
        elif m.folder is None:
            state = "not saved yet (saved at the first edit)"
        else:
            state = "autosave pending: " + ", ".join(m.unsaved_items())
        self.status.setText(f"<b>{name}</b><br>folder: {where}<br>{state}")


def mask_warnings(case: Case) -> list[str]:
    """One line for each of pre and post that looks like a segmentation (a few integer
    values), not a scan: a label file picked as an image by mistake."""
    from ..core.io import looks_like_labels

    return [
        f"the {role} image looks like a mask, not a scan (at most a few distinct values): "
        "check the file chosen as the "
        f"{role}-ablation image"
        for role in ("pre", "post")
        if getattr(case, role) is not None
        and looks_like_labels(sitk.GetArrayViewFromImage(getattr(case, role)))
    ]


def _sample_names() -> list[tuple[str, str]]:
    try:
        from ..core import samples

        return [
            (k, samples.SAMPLE_TITLES.get(k, k) if hasattr(samples, "SAMPLE_TITLES") else k)
            for k in samples.SAMPLE_NAMES
        ]
    except Exception:  # noqa: BLE001
        return [("renal_mri", "renal_mri"), ("liver_ct", "liver_ct")]


def sample_working_copy(key: str, *, fresh: bool = False) -> tuple[Case, Path]:
    """The user's working copy of a sample case (see :func:`core.case.open_sample_copy`)."""
    return open_sample_copy(key, default_cases_root() / f"sample_{key}", fresh=fresh)
