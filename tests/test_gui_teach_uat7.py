"""UAT s7 N3 / N7d: Teach with the teacher's key kept apart, in a real viewer.

A resident types "-1.5 mm" (accepted; an earlier refusal leaves the status line at the
next valid Submit); reopened with the key typed in, the answers recorded without it are
scored and the summary shows the same figures as the teacher's ``quiz export --key``; the
MTM field's placeholder is shown whole (run under xvfb-run)."""

from __future__ import annotations

import json
import shutil

import _gui
import pytest

from napari_ablation.core import quiz


@pytest.fixture
def teacher_quiz(tmp_path, monkeypatch):
    """A copy of the bundled quiz with its key moved out: a teacher's quiz."""
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    folder = _gui.copy_quiz(tmp_path)
    key = tmp_path / "key.json"
    shutil.move(folder / quiz.KEY_IN_QUIZ, key)
    assert not quiz.Quiz.load(folder).self_study
    return folder, key


def test_key_given_later_scores_the_recorded_answers(
    make_napari_viewer, teacher_quiz, qtbot, tmp_path
):
    folder, key = teacher_quiz
    _viewer, _margins, teach = _gui.teach_docks(make_napari_viewer)
    qtbot.keyClicks(teach.trainee, "Dr. Zo")
    teach.trainee.insert("ë")  # QTest types Latin-1 keys only
    qtbot.keyClicks(teach.trainee, " O'Neil")
    teach.open_quiz(folder)
    _gui.teach_settled(qtbot, teach)
    assert "recorded for your teacher" in teach.title.text()

    # N7d: the placeholder fits the field
    qtbot.waitUntil(lambda: teach.mtm.isVisible(), timeout=10000)
    room = teach.mtm.contentsRect().width() - 8  # Qt's line edit text margins
    assert teach.mtm.fontMetrics().horizontalAdvance(teach.mtm.placeholderText()) <= room

    # a refused answer, then "-1.5 mm" (typed with its unit): recorded, the refusal is gone
    qtbot.keyClicks(teach.mtm, "about three")
    teach.submit_btn.click()
    assert "not a number" in teach.status.text()
    teach.mtm.clear()
    qtbot.keyClicks(teach.mtm, "-1.5 mm")
    teach.complete.setCurrentText("no")
    teach.submit_btn.click()
    _gui.teach_settled(qtbot, teach)
    assert teach.revealed and "not a number" not in teach.status.text()
    assert teach.run.records["case_01"]["answer"]["mtm_mm"] == -1.5
    assert teach.run.records["case_01"]["score"] is None  # no key yet
    teach.next_btn.click()
    _gui.teach_settled(qtbot, teach)
    qtbot.keyClicks(teach.mtm, "2,5mm")
    teach.complete.setCurrentText("yes")
    teach.submit_btn.click()
    _gui.teach_settled(qtbot, teach)
    assert teach.run.records["case_02"]["answer"]["mtm_mm"] == 2.5
    assert "So far" not in teach.summary.text()

    # the teacher's export with the key
    out = quiz.export_scores(folder, tmp_path / "export", key)
    ((name, expected),) = json.loads(out["json"].read_text(encoding="utf-8")).items()
    assert name == "Dr. Zoë O'Neil" and expected["n_cases"] == 2

    # reopened with the key typed in: the recorded answers are scored, the summary says so
    teach.key_edit.setText(str(key))
    teach.open_quiz(folder)
    _gui.teach_settled(qtbot, teach)
    assert "scored at once" in teach.title.text()
    assert teach.run.summary() == expected
    text = teach.summary.text()
    assert "2 answered" in text
    assert f"mean |MTM error| {expected['mean_abs_mtm_error_mm']:.1f} mm" in text
    assert f"coverage calls right {100 * expected['coverage_call_accuracy']:.0f} %" in text
    # an answered case shows its score in the reveal
    teach.open_case(0)
    _gui.teach_settled(qtbot, teach)
    assert "Your teacher holds the key" not in teach.reveal.text()
    assert "MTM: you -1.5 mm" in teach.reveal.text()
    # the score file was not rewritten: it holds what was recorded
    lines = quiz.trainee_file(folder, "Dr. Zoë O'Neil").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["score"] for x in lines] == [None, None]
