"""Teach widget: a trainee takes a quiz case by case, answers before seeing, then the reveal.

A thin view over :class:`~napari_ablation.core.quiz.QuizRun` (progress, validation,
scoring, the score file) and the viewer's case model (:class:`~.session.CaseSession`).

While a question is open the case carries the quiz lock (``core.quiz.QUIZ_LOCK`` in its
info): the Margins widget shows no readout and computes nothing, no margin layer exists,
and this widget shows nothing of the key. The reference tumor / ablation outlines are
shown only when the teacher chose so and no question asks the trainee to draw them. On
submit the answer is validated, scored (when the key is at hand: self-study, or the
teacher's key file) and appended to the trainee's score file; then the reveal: the
margin layer of the reference, the true minimal-margin point with its octant, the 2D
minimum on the axial slice of the largest diameter, the reference outlines beside the
trainee's, the per-question score and the one-sentence explanation.

A question belongs to the case it was opened on: when another case replaces it (Load,
File > Open Sample, a Cohort row) or it is closed, the quiz is paused with one line and
Submit disabled, until the quiz case is opened again from the list (UAT s12 N2).
"""

from __future__ import annotations

import shutil

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..core import geometry, report
from ..core import quiz as core_quiz
from ..core import transform as tfm
from ..core.case import Case
from ..core.errors import AblationError, one_line
from ..core.margin import OCTANTS, analyze_margin
from ..core.uncertainty import signed_mm_text
from . import _dock, _layers
from .session import CaseSession, default_cases_root, prepare_display

#: layers shown by the reveal (the Margins widget's or the reference's; removed when the
#: next case opens)
REVEAL_ROLES = (
    "margin",
    "mtm_point",
    "ablation_registered",
    "quiz_reference_margin",
    "quiz_reference_ablation",
    "quiz_mtm_point",
    "quiz_reference_tumor",
    "quiz_axial_point",
)
REVEAL_NAMES = {
    "quiz_reference_margin": "reference margin (quiz key)",
    "quiz_reference_ablation": "reference ablation outline (pre space)",
    "quiz_mtm_point": "reference minimal margin point",
    "quiz_reference_tumor": "reference tumor (outline)",
    "quiz_axial_point": "2D minimum on the largest axial slice",
}
_NOT_ANSWERED = ""
_NAME_FIRST = "type your name first (your answers go to your own score file)"


class TeachWidget(QWidget):
    """Dock widget: take a quiz (open, answer, submit, reveal, next)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = CaseSession.of(napari_viewer)
        self.session.attach_widget(self)
        self.run: core_quiz.QuizRun | None = None
        self.index = 0
        self.revealed = False
        self.last_record: dict | None = None
        self._worker = None
        self._opening = False  # a case is being read or its layers added
        self._showing = False
        self._revealing = False  # the reveal's layers are being computed or added
        #: the quiz case was replaced by another case (Load, File > Open Sample, a Cohort
        #: row): its question waits, Submit disabled, until the case is opened again here
        self._paused = False
        self._build_ui()
        self._update_ui()
        _layers.connect_while_alive(self.session.changed, self, self._on_session_changed)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        inner = QWidget()
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        lay = QVBoxLayout(inner)
        box = QGroupBox("Quiz")
        form = QFormLayout(box)
        self.trainee = QLineEdit()
        self.trainee.setPlaceholderText("your name (your score file)")
        form.addRow("Trainee", self.trainee)
        row = QHBoxLayout()
        self.open_btn = QPushButton("Open quiz…")
        self.open_btn.clicked.connect(self._open_dialog)
        self.bundled_btn = QPushButton("Bundled quiz")
        self.bundled_btn.setToolTip("8 synthetic cases with the key inside (self-study)")
        self.bundled_btn.clicked.connect(lambda: self._guard(self.open_bundled))
        row.addWidget(self.open_btn)
        row.addWidget(self.bundled_btn)
        form.addRow(row)
        row = QHBoxLayout()
        self.key_edit = QLineEdit()
        self.key_edit.setPlaceholderText("answer key (optional; self-study quizzes carry theirs)")
        self.key_btn = QPushButton("Key…")
        self.key_btn.clicked.connect(self._key_dialog)
        row.addWidget(self.key_edit, 1)
        row.addWidget(self.key_btn)
        form.addRow(row)
        lay.addWidget(box)

        self.title = QLabel("No quiz open.")
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.cases = QListWidget()
        self.cases.setMaximumHeight(110)
        self.cases.currentRowChanged.connect(self._on_row)
        lay.addWidget(self.cases)

        self.qbox = QGroupBox("Your answer")
        qform = QFormLayout(self.qbox)
        self.complete = QComboBox()
        self.complete.addItems([_NOT_ANSWERED, "yes", "no"])
        self.mtm = QLineEdit()
        self.mtm.setPlaceholderText("< 0 if uncovered")
        self.mtm.setToolTip("The minimal margin in mm, negative where tumor is uncovered")
        self.octant = QComboBox()
        self.octant.addItems([_NOT_ANSWERED, *OCTANTS])
        self.klass = QComboBox()
        self.klass.addItems([_NOT_ANSWERED, *core_quiz.CLASS_ANSWERS])
        self.fields = {
            "complete": self.complete,
            "mtm": self.mtm,
            "octant": self.octant,
            "class": self.klass,
        }
        self.field_rows = {}
        for q, w in self.fields.items():
            label = QLabel(core_quiz.QUESTION_TITLES[q])
            label.setWordWrap(True)
            qform.addRow(label, w)
            self.field_rows[q] = (label, w)
        self.work_note = QLabel("")
        self.work_note.setWordWrap(True)
        qform.addRow(self.work_note)
        row = QHBoxLayout()
        self.submit_btn = QPushButton("Submit answer")
        self.submit_btn.clicked.connect(lambda: self._guard(self.submit))
        self.next_btn = QPushButton("Next case")
        self.next_btn.clicked.connect(lambda: self._guard(self.next_case))
        row.addWidget(self.submit_btn)
        row.addWidget(self.next_btn)
        qform.addRow(row)
        lay.addWidget(self.qbox)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.reveal = QLabel("")
        self.reveal.setWordWrap(True)
        self.reveal.setTextFormat(Qt.RichText)
        self.reveal.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.reveal)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        lay.addStretch(1)

    def _guard(self, fn) -> None:
        try:
            fn()
        except AblationError as exc:
            self.status.setText(one_line(exc))
            _layers.notify_error(exc)

    def _open_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a quiz folder")
        if folder:
            self._guard(lambda: self.open_quiz(folder))

    def _key_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Answer key", "", "JSON (*.json)")
        if path:
            self.key_edit.setText(path)

    # ------------------------------------------------------------------ quiz and cases
    @property
    def case_id(self) -> str | None:
        return None if self.run is None else self.run.quiz.case_ids[self.index]

    @property
    def busy(self) -> bool:
        """A case (or the bundled quiz) is being read, or the reveal is being computed or
        added: the window stays responsive meanwhile."""
        return self._opening or self._worker is not None or self._revealing

    def open_bundled(self) -> None:
        """Copy the bundled quiz to the cases folder (once, off the GUI thread) and open the
        copy."""
        src = core_quiz.bundled_quiz_dir()
        if not (src / core_quiz.QUIZ_FILE).is_file():
            raise AblationError("the bundled quiz is missing from this installation")
        if not self.trainee.text().strip():
            raise AblationError(_NAME_FIRST)
        if self.busy:
            return
        dest = default_cases_root() / "bundled-quiz"

        def job():
            if not (dest / core_quiz.QUIZ_FILE).is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dest, dirs_exist_ok=True)
            return dest

        self.status.setText("copying the bundled quiz…")
        self._worker_start(job, lambda d: self._guard(lambda: self.open_quiz(d)))

    def _worker_start(self, job, on_returned, on_finished=None) -> None:
        """Run ``job`` off the GUI thread (one at a time); errors in one line."""

        holder = []

        def finished():
            if holder and self._worker is holder[0]:
                self._worker = None
            if on_finished is not None:
                on_finished()
            self._update_ui()

        self._worker = _layers.start_worker(
            job, on_returned=on_returned, on_error=self._on_error, on_finished=finished
        )
        holder.append(self._worker)

    def open_quiz(self, folder, trainee: str | None = None, key: str | None = None) -> None:
        """Open a quiz for a trainee and go to their first unanswered case."""
        if trainee is not None:
            self.trainee.setText(trainee)
        if key is not None:
            self.key_edit.setText(str(key))
        name = self.trainee.text().strip()
        if not name:
            raise AblationError(_NAME_FIRST)
        quiz = core_quiz.Quiz.load(folder)
        run = core_quiz.QuizRun(quiz, name, self.key_edit.text().strip() or None)
        self.run = run
        self.cases.blockSignals(True)
        self.cases.clear()
        for cid in quiz.case_ids:
            self.cases.addItem(cid)
        self.cases.blockSignals(False)
        scoring = (
            "scored at once (key at hand)"
            if run.can_score
            else "recorded for your teacher to score"
        )
        self.title.setText(
            f"<b>{quiz.title}</b><br>{len(quiz.case_ids)} cases, threshold "
            f"{quiz.threshold_mm:g} mm; answers are {scoring}."
        )
        self.open_case(run.first_open_index())

    def _on_row(self, row: int) -> None:
        if self.run is None or not 0 <= row < len(self.run.quiz.case_ids):
            return
        if row != self.index or self._paused:  # (paused: the quiz case itself, again)
            self._guard(lambda: self.open_case(row))
        if self._paused:  # refused (another case is opening): a click on it asks again
            self._unselect_row()

    def _unselect_row(self) -> None:
        self.cases.blockSignals(True)
        self.cases.setCurrentRow(-1)
        self.cases.blockSignals(False)

    # ------------------------------------------------------------------ the case replaced
    def on_quiz_case(self) -> bool:
        """True when the case open in the viewer is the quiz case of :attr:`case_id` (its
        work folder), shown, and no other case is being opened over it."""
        run = self.run
        if run is None or self._opening or self.session.opening is not None:
            return False
        folder = self.session.model.folder
        return folder is not None and folder == run.work_folder(self.case_id)

    def _paused_line(self) -> str:
        cid = self.case_id
        m = self.session.model
        if self.session.opening is None and m.pre is None and m.post is None:
            what = f"{cid} was closed"
        else:
            what = f"another case was opened over {cid}"
        if self.revealed:
            return (
                f"Quiz paused: {what} (your answer to it is recorded). Click a case in the "
                "list to go on."
            )
        return (
            f"Quiz paused: {what}; your answer is not submitted. Click {cid} in the list to "
            "go back to it."
        )

    def _on_session_changed(self, what: str) -> None:
        """Another case opens (or the case is closed) over the quiz case: its question is
        paused with one line, Submit disabled (UAT s12 N2: Submit then scored and revealed
        the quiz case's answer over the other case, its lock and reveal layers put on it).
        An opening that fails leaves the quiz case open: the question goes on."""
        if what not in ("opening", "case") or self.run is None or self._opening:
            return
        if self.on_quiz_case():
            if self._paused:
                self._paused = False
                self.status.setText("")
                self._update_ui()
            return
        if self._paused:
            return
        if what == "opening" and self.session.opening is None:
            return  # (an opening ended; the quiz case was not open)
        self._paused = True
        self._unselect_row()
        line = self._paused_line()
        self.status.setText(line)
        _layers.notify_info(line)
        self._update_ui()

    def next_case(self) -> None:
        if self.run is None:
            return
        n = len(self.run.quiz.case_ids)
        for step in range(1, n + 1):
            i = (self.index + step) % n
            if not self.run.answered(self.run.quiz.case_ids[i]):
                self.open_case(i)
                return
        self.open_case((self.index + 1) % n)

    def open_case(self, index: int) -> None:
        """Show case ``index``: locked (no margins) until answered; revealed when it was.

        The case is read and written off the GUI thread and its layers added one per
        event-loop iteration (:meth:`CaseSession.set_case`); :attr:`busy` until then."""
        run = self.run
        if run is None:
            return
        if self._opening or self.session.refuse_while_opening():
            return
        cid = run.quiz.case_ids[index]
        # the paused question's case again: the answer as typed stays
        keep = self._paused and index == self.index and not run.answered(cid)
        self._paused = False
        self.index = index
        self.revealed = False
        self.last_record = run.records.get(cid)
        self.reveal.setText("")
        self.status.setText(f"opening {cid}…")
        if not keep:
            self._clear_fields()
        self.cases.blockSignals(True)
        self.cases.setCurrentRow(index)
        self.cases.blockSignals(False)
        work = run.work_folder(cid)
        answered = run.answered(cid)
        hide_reference = not self._reference_visible()

        def job():
            if (work / "case.json").exists():
                case = Case.load(work)
            else:
                case = run.quiz.load_case(cid)
                if hide_reference:  # the teacher hides the reference outlines
                    case.tumor = case.ablation = None
            case.info[core_quiz.QUIZ_LOCK] = not answered
            case.info[core_quiz.QUIZ_WORK] = [
                q for q in core_quiz.WORK_QUESTIONS if q in run.quiz.questions
            ]
            case.info.pop(core_quiz.QUIZ_REFERENCE_SHOWN, None)
            case.save(work)  # the trainee's copy, written here (not on the GUI thread)
            return case, prepare_display(case)

        def done(out, _run=run, _index=index):
            if self.run is not _run or self.index != _index:
                return  # another quiz or case was asked for meanwhile
            case, prepared = out
            self._showing = True
            try:
                self.session.set_case(
                    case, work, save_images=False, prepared=prepared, on_shown=shown
                )
            except AblationError as exc:
                self._showing = False
                self._on_error(one_line(exc))

        def shown(_run=run, _index=index):
            self._showing = False
            self._case_shown(_run, _index)
            ended()

        def ended():
            if self._showing or not self._opening:
                return
            self._opening = False
            self.session.end_opening()
            self._update_ui()

        self._opening = True
        self._showing = False
        self.session.begin_opening(f"opening quiz case {cid}")
        self._update_ui()
        self._worker_start(job, done, ended)

    def _case_shown(self, run, index: int) -> None:
        """The case's layers are on screen: the answer fields, and the reveal of an answered
        case."""
        if self.run is not run or self.index != index:
            return
        self.session.apply_edit_lock()
        self.session.changed.emit("quiz")
        self.status.setText("")
        if self.last_record is not None:
            self._fill_fields(self.last_record.get("answer", {}))
            self.show_reveal()
        self._update_ui()

    def _reference_visible(self) -> bool:
        return bool(self.run is not None and self.run.quiz.show_reference)

    def _clear_fields(self) -> None:
        self.complete.setCurrentIndex(0)
        self.mtm.clear()
        self.octant.setCurrentIndex(0)
        self.klass.setCurrentIndex(0)

    def _fill_fields(self, a: dict) -> None:
        self.complete.setCurrentText(
            {True: "yes", False: "no"}.get(a.get("complete"), _NOT_ANSWERED)
        )
        self.mtm.setText("" if a.get("mtm_mm") is None else f"{a['mtm_mm']:g}")
        self.octant.setCurrentText(a.get("octant") or _NOT_ANSWERED)
        self.klass.setCurrentText(a.get("class") or _NOT_ANSWERED)

    def _update_ui(self) -> None:
        run = self.run
        open_q = run is not None and not self.revealed and not self._paused
        self.qbox.setEnabled(run is not None)
        qs = run.quiz.questions if run is not None else core_quiz.DEFAULT_QUESTIONS
        for q, (label, w) in self.field_rows.items():
            label.setVisible(q in qs)
            w.setVisible(q in qs)
            w.setEnabled(open_q)
        work = [q for q in core_quiz.WORK_QUESTIONS if q in qs]
        notes = {
            "tumor": "draw the tumor in the 'tumor' layer (Segment widget)",
            "ablation": "draw the ablation zone in the 'ablation' layer",
            "registration": "register post to pre (Register widget)",
        }
        self.work_note.setText("Also: " + "; ".join(notes[q] for q in work) + "." if work else "")
        self.work_note.setVisible(bool(work))
        self.submit_btn.setEnabled(open_q)
        self.next_btn.setEnabled(run is not None and self.revealed)
        if run is not None:
            for i, cid in enumerate(run.quiz.case_ids):
                self.cases.item(i).setText(
                    f"{cid}  {'✓ answered' if run.answered(cid) else ''}".rstrip()
                )
            done = sum(run.answered(c) for c in run.quiz.case_ids)
            s = run.summary()
            text = f"Case {self.index + 1} of {len(run.quiz.case_ids)}; {done} answered."
            if s and s["n_cases"]:
                parts = [f"{done} answered"]
                if s["mean_abs_mtm_error_mm"] is not None:
                    parts.append(f"mean |MTM error| {s['mean_abs_mtm_error_mm']:.1f} mm")
                if s.get("mtm_accuracy") is not None:
                    parts.append(f"MTM inside the interval {100 * s['mtm_accuracy']:.0f} %")
                if s["octant_accuracy"] is not None:
                    parts.append(f"octant right {100 * s['octant_accuracy']:.0f} %")
                if s["coverage_call_accuracy"] is not None:
                    parts.append(f"coverage calls right {100 * s['coverage_call_accuracy']:.0f} %")
                text = (
                    f"Case {self.index + 1} of {len(run.quiz.case_ids)}. So far: "
                    + ", ".join(parts)
                    + "."
                )
            self.summary.setText(text)

    # ------------------------------------------------------------------ submit and reveal
    def answer(self) -> dict:
        """The answer as typed (strings; validated by :meth:`QuizRun.submit`)."""
        qs = self.run.quiz.questions
        raw = {
            "complete": self.complete.currentText() if "complete" in qs else "",
            "mtm_mm": self.mtm.text() if "mtm" in qs else "",
            "octant": self.octant.currentText() if "octant" in qs else "",
            "class": self.klass.currentText() if "class" in qs else "",
        }
        return raw

    def _save_work(self, raw: dict) -> None:
        """The trainee's segmentation / registration, saved in their work folder, named in the
        answer."""
        run, cid = self.run, self.case_id
        qs = run.quiz.questions
        if not any(q in qs for q in core_quiz.WORK_QUESTIONS):
            return
        folder = self.session.save()
        m = self.session.model
        if "tumor" in qs:
            if m.labels("tumor") is None or not np.any(m.labels("tumor")):
                raise AblationError("draw the tumor in the 'tumor' layer before submitting")
            raw["tumor"] = str(folder / "tumor.nii.gz")
        if "ablation" in qs:
            if m.labels("ablation") is None or not np.any(m.labels("ablation")):
                raise AblationError(
                    "draw the ablation zone in the 'ablation' layer before submitting"
                )
            raw["ablation"] = str(folder / "ablation.nii.gz")
        if "registration" in qs:
            path = folder / f"{cid}_registration.tfm"
            tfm.write_transform_atomic(tfm.as_euler(m.transform), path)
            raw["transform"] = str(path)

    def submit(self) -> dict | None:
        """Validate, score and record the answer, then reveal. Returns the record."""
        if self.run is None or self.revealed:
            return None
        if not self.on_quiz_case():  # never scored or revealed over another case
            raise AblationError(
                self._paused_line()
                if self._paused
                else f"wait until {self.case_id} is open before submitting"
            )
        raw = self.answer()
        if not any(v for v in raw.values()) and not any(
            q in self.run.quiz.questions for q in core_quiz.WORK_QUESTIONS
        ):
            raise AblationError("answer at least one question before submitting")
        self._save_work(raw)
        record = self.run.submit(self.case_id, raw)
        self.last_record = record
        self.status.setText("")  # an earlier refusal no longer applies
        self.session.model.info[core_quiz.QUIZ_LOCK] = False
        self.session.apply_edit_lock()
        self.session.changed.emit("quiz")
        self.session.autosave()
        self.show_reveal()
        self._update_ui()
        return record

    def show_reveal(self) -> None:
        """Scores and explanation now; the margins in the background.

        One case model: when the case's own labels are the reference (a margin-only quiz
        with the reference shown), the case model computes the margins and the Margins
        widget shows them (figures and layers) as for any case; otherwise (the trainee drew
        or registered, or the reference was hidden) the reference's margins are drawn as
        layers named "reference …" and the Margins widget says so."""
        self.revealed = True
        run, cid = self.run, self.case_id
        rec = self.last_record or {}
        score = rec.get("score")
        key_case = run.key_case(cid)
        if score is None or key_case is None:
            self.reveal.setText(
                "<b>Answer recorded.</b> Your teacher holds the key and will score it."
            )
        else:
            self.reveal.setText(
                _reveal_html(rec.get("answer", {}), score, key_case, run.quiz.threshold_mm)
            )
        self._update_ui()
        if key_case is None and not run.quiz.self_study:
            return
        if self._model_holds_reference():
            self.session.analysis.request(now=True)  # the Margins widget shows it
            self._add_reveal_layers(None, None, key_case)
        else:
            self._start_reference_analysis(key_case)

    def _model_holds_reference(self) -> bool:
        """True when the case model's labels are the quiz's reference (no question asked the
        trainee to draw or register, and the reference outlines are shown)."""
        if any(q in self.run.quiz.questions for q in core_quiz.WORK_QUESTIONS):
            return False
        m = self.session.model
        return all(m.labels(r) is not None and np.any(m.labels(r)) for r in ("tumor", "ablation"))

    def _reference_inputs(self, key_case):
        quiz_case = self.run.quiz.load_case(self.case_id)
        ref = (key_case or {}).get("reference") or {}
        tumor = core_quiz.unpack_mask(ref["tumor"]) if "tumor" in ref else quiz_case.tumor
        ablation = (
            core_quiz.unpack_mask(ref["ablation"]) if "ablation" in ref else quiz_case.ablation
        )
        tx = tfm.euler_from_params(ref["transform"]) if "transform" in ref else quiz_case.transform
        if tumor is None or ablation is None:
            raise AblationError("the quiz holds no reference labels for this case")
        return tumor, ablation, tx

    def _start_reference_analysis(self, key_case) -> None:
        t = self.run.quiz.threshold_mm
        cid, generation = self.case_id, self.session.case_generation

        def job():  # the reference read and analysed off the GUI thread
            tumor, ablation, tx = self._reference_inputs(key_case)
            return analyze_margin(tumor, ablation, tx, t, with_shells=False), tumor

        def done(out, _cid=cid, _key=key_case):
            if generation != self.session.case_generation:
                return  # another case (or this one again) was opened meanwhile
            if self.run is None or self.case_id != _cid or not self.revealed:
                return
            self._add_reveal_layers(*out, _key)

        self.status.setText("computing the reference margins…")
        self._worker_start(job, done)

    def _on_error(self, message: str) -> None:
        self.status.setText(message)
        _layers.notify_error(message)

    def _add_reveal_layers(self, res, ref_tumor, key_case) -> None:
        """The reveal's layers, one per event-loop iteration (:attr:`busy` meanwhile)."""

        def done():
            self._revealing = False
            self._update_ui()

        self._revealing = True
        # bound to the case open now: dropped once another case starts opening (or this one
        # is opened again) before they have all run
        steps = self.session.while_case(self._reveal_steps(res, ref_tumor, key_case))
        _layers.run_in_steps(steps, done, owner=self)

    def _reveal_steps(self, res, ref_tumor, key_case):
        """The reveal's layers (the user's active layer stays active): with ``res`` (the
        reference's own analysis, see :meth:`show_reveal`) its margin, outline and point;
        the reference tumor beside the trainee's; the 2D minimum on the largest axial
        slice; the view on the minimal margin."""
        v = self.viewer  # like Compute margins: the user's grid and visibility stay
        cid = self.case_id
        k = key_case or {}
        if res is not None:
            p3 = k.get("min_margin_point_lps", [float(x) for x in res.min_margin_point_lps])
            m3 = float(k.get("min_margin_mm", res.min_margin_mm))
            octant = k.get("min_margin_octant", res.min_margin_octant)
            self.session.model.info[core_quiz.QUIZ_REFERENCE_SHOWN] = True
            self.session.changed.emit("quiz")
        else:
            p3 = k.get("min_margin_point_lps")
        pre = _layers.find_layer(v, "pre")
        if pre is None:
            return
        scale, translate = np.asarray(pre.scale, float), np.asarray(pre.translate, float)

        def to_data(lps):
            return (np.asarray(geometry.lps_to_world(lps)) - translate) / scale

        def point(lps, role, colour, symbol, label, anchor, blending="translucent"):
            """One labelled point layer of the reveal, on the pre grid."""
            text = {"string": "{label}", "color": colour, "anchor": anchor, "size": 10}
            if blending != "translucent":
                text["blending"] = blending
            return v.add_points(
                [to_data(lps)],
                name=REVEAL_NAMES[role],
                size=3,
                face_color=colour,
                border_color="black",
                symbol=symbol,
                blending=blending,
                scale=scale,
                translate=translate,
                units="mm",
                axis_labels=geometry.AXIS_LABELS,
                metadata={_layers.META: {"role": role}},
                features={"label": [label]},
                text=text,
            )

        def alive():  # the reveal is still wanted (not another case meanwhile)
            return self.run is not None and self.case_id == cid and self.revealed

        added = []
        if res is not None:
            with _layers.keep_selection(v):
                lab = _layers.add_or_update_labels(
                    v,
                    res.margin_labels_image(),
                    "quiz_reference_margin",
                    name=REVEAL_NAMES["quiz_reference_margin"],
                    colormap=_layers.margin_colormap(),
                    opacity=0.55,
                    metadata={_layers.META: {"role": "quiz_reference_margin"}},
                )
            added.append(lab)
            yield
            if not alive():
                return
            with _layers.keep_selection(v):
                ol = _layers.add_or_update_labels(
                    v,
                    res.ablation_on_pre_image(),
                    "quiz_reference_ablation",
                    name=REVEAL_NAMES["quiz_reference_ablation"],
                    color=_layers.ABLATION_COLOR,
                    metadata={_layers.META: {"role": "quiz_reference_ablation"}},
                )
                ol.contour = 1
                ol.opacity = 0.9
            added.append(ol)
            yield
            if not alive():
                return
            with _layers.keep_selection(v):
                pts = point(
                    p3,
                    "quiz_mtm_point",
                    "white",
                    "cross",
                    f"3D MTM {m3:.1f} mm ({octant})",
                    "upper_left",
                    # in 3D over the surfaces, as in Margins
                    blending="translucent_no_depth",
                )
            added.append(pts)
            yield
            if not alive():
                return
        if ref_tumor is not None and "tumor" in self.run.quiz.questions:
            # the reference beside the trainee's own
            with _layers.keep_selection(v):
                rt = _layers.add_or_update_labels(
                    v,
                    ref_tumor,
                    "quiz_reference_tumor",
                    name=REVEAL_NAMES["quiz_reference_tumor"],
                    color="#ffffff",
                    metadata={_layers.META: {"role": "quiz_reference_tumor"}},
                )
                rt.contour = 1
            added.append(rt)
            yield
            if not alive():
                return
        aid = k.get("axial_2d") or {}
        if "margin_2d_point_lps" in aid:
            with _layers.keep_selection(v):
                ap = point(
                    aid["margin_2d_point_lps"],
                    "quiz_axial_point",
                    "#ff66ff",
                    "disc",
                    f"2D slice {aid['margin_2d_mm']:.1f} mm",
                    "lower_left",
                )
            added.append(ap)
            yield
            if not alive():
                return
        _layers.arrange(v)  # in pre space, over the tumor; the pre cell with the grid on
        tl = _layers.find_layer(v, "tumor")
        if tl is not None:
            tl.opacity = min(tl.opacity, 0.35)
        # the slices: the nearest ones holding the reference tumor, as Go to MTM (UAT s9 N7)
        note, shown = "", p3
        m = self.session.model
        if p3 is not None and res is not None:
            index, note = report.mtm_slices(res, p3)
            shown = res.pre_reference.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
        elif p3 is not None and m.labels("tumor") is not None and np.any(m.labels("tumor")):
            grid = m.label_grid("tumor")  # (the case's labels are the reference here)
            index, note = report.nearest_tumor_slices(m.labels("tumor"), grid, p3)
            shown = grid.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
        if p3 is not None and v.dims.ndim == 3 and _layers.grid(v).enabled:
            v.dims.point = tuple(float(c) for c in geometry.lps_to_world(shown))
        elif p3 is not None and v.dims.ndim == 3 and v.dims.ndisplay == 2:
            # frame the tumor (about four diameters across) on the slice of the minimal margin
            diameter = res.tumor_max_diameter_mm if res is not None else _extent_mm(tl)
            v.reset_view()
            lo, hi = (np.asarray(e, float) for e in v.layers.extent.world)
            scene = float(np.max((hi - lo)[list(v.dims.displayed)]))
            zoom = _layers.camera(v).zoom * max(1.0, scene / (4.0 * max(diameter, 15.0)))
            _layers.center_view_on(v, geometry.lps_to_world(p3), zoom=zoom)
            v.dims.point = tuple(float(c) for c in geometry.lps_to_world(shown))
        if res is not None:
            text = (
                "Reveal: the reference's margin layer, its 3D minimal margin (cross) and the "
                "2D minimum on the largest axial slice (disc)."
            )
        else:
            text = (
                "Reveal: the margins of this case (Margins widget), the 3D minimal margin "
                "(cross) and the 2D minimum on the largest axial slice (disc)."
            )
        self.status.setText(text + (f" The view: the nearest tumor slice, {note}." if note else ""))


def _extent_mm(layer) -> float:
    """The largest extent (mm) of a labels layer's foreground (0 when empty or None)."""
    if layer is None:
        return 0.0
    data = np.asarray(layer.data)
    ext = []
    for ax in range(data.ndim):
        other = tuple(i for i in range(data.ndim) if i != ax)
        idx = np.flatnonzero(np.any(data, axis=other))
        ext.append(0.0 if idx.size == 0 else (idx[-1] - idx[0] + 1) * float(layer.scale[ax]))
    return float(max(ext, default=0.0))


def _yn(v) -> str:
    return {True: "yes", False: "no"}.get(v, "—")


def _reveal_html(answer: dict, s: dict, k: dict, threshold: float) -> str:
    """The per-question scores of one case as rich text."""
    rows = []
    t = s["true"]

    colors = {"right": "#2ca02c", "adjacent": "#ff7f0e", "wrong": "#d62728"}

    def word(result: str) -> str:
        return f"<span style='color:{colors[result]}'>{result}</span>"

    def mark(ok):
        return word("right" if ok else "wrong")

    if s.get("complete_correct") is not None:
        rows.append(
            f"Complete coverage: you {_yn(answer.get('complete'))}, true {_yn(t['complete'])} — "
            f"{mark(s['complete_correct'])}"
        )
    if s.get("mtm_abs_error_mm") is not None:
        iv = t.get("mtm_interval_mm") or k.get("min_margin_interval_mm")
        true = f"true {t['mtm_mm']:.1f} mm"
        if iv:
            true += f" (95 %: {signed_mm_text(iv[0])} to {signed_mm_text(iv[1])} mm)"
        verdict = (
            f" — {mark(s['mtm_in_interval'])} (inside the interval counts as right)"
            if s.get("mtm_in_interval") is not None
            else ""
        )
        rows.append(
            f"MTM: you {answer['mtm_mm']:.1f} mm, {true} — error "
            f"{s['mtm_abs_error_mm']:.1f} mm{verdict}"
        )
        engine = k.get("engine_min_margin_mm")
        if engine is not None:  # a synthetic case: the key holds the exact truth (UAT s9 N2)
            rows.append(
                f"The true {t['mtm_mm']:.1f} mm is the generator's exact value; the Margins "
                f"widget's {engine:.1f} mm is the plugin's reading of this case's voxel "
                "labels (see docs/teaching.md). You are scored against the true value."
            )
    if s.get("octant_result") is not None:
        rows.append(
            f"Octant: you {answer['octant']}, true {t['octant']} — {word(s['octant_result'])}"
        )
    if s.get("class_correct") is not None:
        rows.append(
            f"Class at {threshold:g} mm: you {answer['class']}, true {t['class']} — "
            f"{mark(s['class_correct'])}"
        )
    for role in ("tumor", "ablation"):
        if s.get(f"{role}_dice") is not None:
            hd = s.get(f"{role}_hd95_mm")
            rows.append(
                f"{role.capitalize()} outline: Dice {s[f'{role}_dice']:.2f}"
                + (f", HD95 {hd:.1f} mm" if hd is not None else "")
            )
    if s.get("registration_tre_mm") is not None:
        rows.append(f"Registration: {s['registration_tre_mm']:.1f} mm off at the tumor (TRE)")
    html = "<br>".join(rows) + f"<br><b>{s['explanation']}</b>"
    aid = k.get("axial_2d") or {}
    if aid.get("sentence") and aid["sentence"] not in s["explanation"]:
        html += f"<br><i>2D vs 3D:</i> {aid['sentence']}"
    return html


def open_quiz_viewer(folder=None, *, trainee: str = "demo", show: bool = True):
    """A viewer with the Teach and Margins widgets docked and a quiz open (default: the bundled
    one).

    Returns ``(viewer, teach_widget)``.
    """
    import napari

    from .margin import MarginWidget

    viewer = napari.Viewer(title="napari-ablation teaching mode", show=show)
    _dock.fit_window(viewer)
    margins = MarginWidget(viewer)
    teach = TeachWidget(viewer)
    viewer.window.add_dock_widget(margins, name="4. Margins")
    viewer.window.add_dock_widget(teach, name="Teach (quiz)", tabify=True)
    teach.trainee.setText(trainee)
    if folder is None:
        teach.open_bundled()
    else:
        teach.open_quiz(folder)
    return viewer, teach
