"""UAT s12 N2: a Teach quiz question is tied to the case it was opened on. When another
case replaces it (Load > Open sample, File > Open Sample) before, after or while the
answer is revealed, the question is paused with one line in the Teach widget and Submit
is disabled: no traceback, no answer recorded or scored, nothing of the quiz (its lock,
its reveal layers) put on the other case; clicking the quiz case in the list brings it
back with the answer as typed (run under xvfb-run).
"""

from __future__ import annotations

import json
import threading

import _gui
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from test_case_switch import _file_open_sample

from napari_ablation.core import quiz
from napari_ablation.widgets import _layers
from napari_ablation.widgets.load import LoadCaseWidget
from napari_ablation.widgets.teach import REVEAL_NAMES

pytestmark = pytest.mark.gui

QUIZ_ROLES = {"quiz_reference_margin", "quiz_reference_ablation", "quiz_mtm_point"}
QUIZ_ROLES |= {"quiz_reference_tumor", "quiz_axial_point"}


@pytest.fixture
def docks(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    """Load, Margins and Teach docked (Margins and Teach as in ``_gui.teach_docks``), the
    trainee's name typed; a copy of the bundled quiz (self-study) in ``tmp_path / "quiz"``.
    """
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer, margins, teach = _gui.teach_docks(make_napari_viewer)
    load = LoadCaseWidget(viewer)
    viewer.window.add_dock_widget(load, name="1. Load", tabify=True)
    _gui.fast_timers(teach.session)
    for t in threading.enumerate():  # (napari's unit registry, built lazily: see test_case_switch)
        if t.name == "napari-ablation-prewarm":
            t.join(60)
    qtbot.keyClicks(teach.trainee, "resident")
    return viewer, load, margins, teach, _gui.copy_quiz(tmp_path)


def _settle(qtbot, teach, margins, load):
    qtbot.waitUntil(lambda: load._worker is None and teach.session.opening is None, timeout=180_000)
    _gui.teach_settled(qtbot, teach, margins, timeout=180_000)


def _open_liver(qtbot, load):
    """Load > Open sample, the liver CT sample (a click on the widget's button)."""
    load.sample.setCurrentIndex(load.sample.findData("liver_ct"))
    _gui.click(qtbot, load.sample_btn)


def _quiz_roles(viewer) -> set:
    return {_layers.role_of(ly) for ly in viewer.layers} & QUIZ_ROLES


def _answer(qtbot, teach, mtm="3"):
    teach.complete.setCurrentText("no")
    teach.mtm.clear()
    qtbot.keyClicks(teach.mtm, mtm)


def _answered_question(qtbot, teach, margins, load, folder) -> str:
    """Open the quiz in ``folder``, wait until its first question is shown, type an answer;
    return the question's case id."""
    teach.open_quiz(folder)
    _settle(qtbot, teach, margins, load)
    cid = teach.case_id
    _answer(qtbot, teach)
    return cid


def _click_row(qtbot, teach, row: int) -> None:
    """A real click on row ``row`` of the Teach widget's case list."""
    rect = teach.cases.visualItemRect(teach.cases.item(row))
    QTest.mouseClick(teach.cases.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    qtbot.wait(_gui.MOVE_INTERVAL_MS)


def _assert_paused(teach, session, cid: str) -> None:
    assert session.model.folder.name.startswith("sample_")  # the other case is the open one
    # nothing of the quiz put on the other case (its lock, its reveal)
    assert quiz.QUIZ_LOCK not in session.model.info
    assert quiz.QUIZ_REFERENCE_SHOWN not in session.model.info
    assert not teach.submit_btn.isEnabled()
    line = teach.status.text()
    assert "another case" in line and cid in line and "\n" not in line, line


def test_open_sample_before_submit_pauses_the_question(docks, qtbot):
    """Load > Open sample (liver CT) with the answer typed, then Submit: nothing recorded nor
    scored against the liver case; a click on the quiz case brings it back, answer kept."""
    viewer, load, margins, teach, folder = docks
    session = teach.session
    with qtbot.capture_exceptions() as errors:
        cid = _answered_question(qtbot, teach, margins, load, folder)
        assert cid == "case_01" and session.model.info.get(quiz.QUIZ_LOCK)
        _open_liver(qtbot, load)
        _settle(qtbot, teach, margins, load)
        assert "sample_liver_ct" in str(session.model.folder)
        _gui.click(qtbot, teach.submit_btn)
        _settle(qtbot, teach, margins, load)
        assert not teach.run.answered(cid) and not teach.run.score_file.exists()
        assert teach.reveal.text() == ""
        assert not _quiz_roles(viewer), _quiz_roles(viewer)
        assert REVEAL_NAMES["quiz_axial_point"] not in [ly.name for ly in viewer.layers]
        _assert_paused(teach, session, cid)
        # the quiz case again (a click on it in the list): the answer as typed, then submitted
        _click_row(qtbot, teach, 0)
        _settle(qtbot, teach, margins, load)
        assert teach.case_id == cid and cid in str(session.model.folder)
        assert session.model.info.get(quiz.QUIZ_LOCK)
        assert teach.submit_btn.isEnabled() and teach.mtm.text() == "3"
        assert teach.status.text() == ""
        _gui.click(qtbot, teach.submit_btn)
        _settle(qtbot, teach, margins, load)
        rec = teach.run.records[cid]
        key = json.loads((folder / quiz.KEY_IN_QUIZ).read_text(encoding="utf-8"))["cases"][cid]
        assert rec["score"]["true"]["mtm_mm"] == pytest.approx(key["min_margin_mm"])
        assert "true" in teach.reveal.text()
    assert not errors, errors


def test_reveal_then_file_open_sample_then_submit(docks, qtbot):
    """Submit (the reveal), then File > Open Sample (renal MRI): the reveal is ended with one
    line, Submit stays disabled, the renal case gets no quiz layer nor quiz lock."""
    viewer, load, margins, teach, folder = docks
    session = teach.session
    with qtbot.capture_exceptions() as errors:
        cid = _answered_question(qtbot, teach, margins, load, folder)
        _gui.click(qtbot, teach.submit_btn)
        _settle(qtbot, teach, margins, load)
        assert teach.run.answered(cid)
        assert _quiz_roles(viewer)  # the reveal's layers
        _file_open_sample(viewer, qtbot, "Renal cryoablation")
        qtbot.waitUntil(lambda: "sample_renal_mri" in str(session.model.folder), timeout=180_000)
        _settle(qtbot, teach, margins, load)
        _gui.click(qtbot, teach.submit_btn)
        _settle(qtbot, teach, margins, load)
        _assert_paused(teach, session, cid)
        assert not _quiz_roles(viewer), _quiz_roles(viewer)
        assert len(teach.run.records) == 1  # the one answer, given on its own case
    assert not errors, errors


def test_another_case_while_the_truth_is_computed(docks, qtbot):
    """A quiz that hides the reference outlines: Submit starts the reference's analysis in
    the background; Load > Open sample right then: the late result is not drawn on the
    liver case, and the Teach widget says why instead of "computing …" for ever."""
    viewer, load, margins, teach, folder = docks
    session = teach.session
    doc = json.loads((folder / quiz.QUIZ_FILE).read_text(encoding="utf-8"))
    doc["show_reference"] = False
    (folder / quiz.QUIZ_FILE).write_text(json.dumps(doc), encoding="utf-8")
    with qtbot.capture_exceptions() as errors:
        cid = _answered_question(qtbot, teach, margins, load, folder)
        _gui.click(qtbot, teach.submit_btn)
        assert "computing the reference" in teach.status.text()
        _open_liver(qtbot, load)
        _settle(qtbot, teach, margins, load)
        qtbot.wait(500)
        _assert_paused(teach, session, cid)
        assert "computing" not in teach.status.text()
        assert not _quiz_roles(viewer), _quiz_roles(viewer)
    assert not errors, errors


def test_another_case_asked_for_while_the_quiz_case_opens(docks, qtbot):
    """Load > Open sample while the quiz's first case is still being read: the liver case
    opens after it (queued) and the question is paused, not left open on the liver case."""
    viewer, load, margins, teach, folder = docks
    session = teach.session
    with qtbot.capture_exceptions() as errors:
        teach.open_quiz(folder)
        assert teach.busy
        _answer(qtbot, teach)
        _open_liver(qtbot, load)
        qtbot.waitUntil(lambda: "sample_liver_ct" in str(session.model.folder), timeout=180_000)
        _settle(qtbot, teach, margins, load)
        _gui.click(qtbot, teach.submit_btn)
        _settle(qtbot, teach, margins, load)
        assert not teach.run.records
        assert not _quiz_roles(viewer), _quiz_roles(viewer)
        _assert_paused(teach, session, "case_01")
    assert not errors, errors
