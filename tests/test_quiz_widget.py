"""Teach widget in a real napari viewer: nothing of the answer before submission, the
reveal (screenshot), the score file across a viewer closed mid-quiz.

Run under Xvfb: ``xvfb-run -a python -m pytest tests/test_quiz_widget.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtWidgets import QComboBox, QLabel, QLineEdit, QTableWidget

from napari_ablation.core import quiz
from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import QUIZ_LOCK_TEXT, MarginWidget
from napari_ablation.widgets.teach import REVEAL_ROLES, TeachWidget

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture
def bundled_copy(tmp_path, monkeypatch):
    """A private copy of the bundled quiz (score files are written into it)."""
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    src = quiz.bundled_quiz_dir()
    assert (src / quiz.QUIZ_FILE).is_file(), "the bundled quiz must ship with the plugin"
    dest = tmp_path / "quiz"
    shutil.copytree(src, dest)
    return dest


def _open(make_napari_viewer, folder, trainee="resident", show=False):
    viewer = make_napari_viewer(show=show)
    teach = TeachWidget(viewer)
    margins = MarginWidget(viewer)
    viewer.window.add_dock_widget(margins, name="Margins")
    viewer.window.add_dock_widget(teach, name="Teach", tabify=True)
    teach.open_quiz(folder, trainee=trainee)
    return viewer, teach, margins


def _all_text(widget) -> str:
    """Every text the widget shows: labels, line edits, combo boxes' current items, tables."""
    parts = []
    for w in widget.findChildren(QLabel):
        parts.append(w.text())
    for w in widget.findChildren(QLineEdit):
        parts.append(w.text())
    for w in widget.findChildren(QComboBox):
        parts.append(w.currentText())
    for t in widget.findChildren(QTableWidget):
        for i in range(t.rowCount()):
            for j in range(t.columnCount()):
                item = t.item(i, j)
                parts.append(item.text() if item is not None else "")
    return "\n".join(parts)


def _leaks(text: str, k: dict) -> list[str]:
    found = []
    m = k["min_margin_mm"]
    for s in (f"{m:.1f} mm", f"{m:.2f}", f"MTM = {m:.1f}", k["min_margin_octant"]):
        if s in text:
            found.append(s)
    return found


def _wait_reveal(qtbot, viewer):
    qtbot.waitUntil(lambda: _layers.find_layer(viewer, "margin") is not None, timeout=60000)
    qtbot.wait(50)


def test_nothing_of_the_answer_before_submission(make_napari_viewer, bundled_copy, qtbot):
    viewer, teach, margins = _open(make_napari_viewer, bundled_copy)
    key = json.loads((bundled_copy / quiz.KEY_IN_QUIZ).read_text(encoding="utf-8"))
    for index in (0, 1):
        teach.open_case(index)
        k = key["cases"][teach.case_id]
        qtbot.wait(100)
        # layers: the images and the reference outlines only; no margin layer, no point
        roles = {_layers.role_of(ly) for ly in viewer.layers}
        assert not roles & set(REVEAL_ROLES), roles
        assert {ly.name for ly in viewer.layers} <= {"pre", "post", "tumor", "ablation"}
        for ly in viewer.layers:
            assert not _leaks(json.dumps(ly.metadata, default=str), k), ly.name
        # the Margins widget says the case is in a quiz and refuses to compute
        assert margins.status.text() == QUIZ_LOCK_TEXT
        assert margins.run() is None
        qtbot.wait(300)
        assert margins.result is None and _layers.find_layer(viewer, "margin") is None
        assert not _leaks(_all_text(margins), k)
        assert "MTM hidden" in margins.big.text()
        # the Teach widget: nothing from the key (the octant picker shows no choice)
        assert not _leaks(_all_text(teach), k), _leaks(_all_text(teach), k)
        assert teach.octant.currentText() == "" and teach.reveal.text() == ""


def test_submit_reveal_and_screenshot(make_napari_viewer, bundled_copy, qtbot):
    viewer, teach, margins = _open(make_napari_viewer, bundled_copy, show=True)
    viewer.window.resize(1500, 950)
    key = json.loads((bundled_copy / quiz.KEY_IN_QUIZ).read_text(encoding="utf-8"))
    teach.open_case(2)  # an incomplete ablation: the lesson of the mode
    k = key["cases"][teach.case_id]
    assert k["coverage_class"] == "red"
    teach.complete.setCurrentText("yes")  # the classic mistake
    teach.mtm.setText("3")
    teach.octant.setCurrentText("left-anterior-superior")
    teach.klass.setCurrentText("yellow")
    record = teach.submit()
    assert record["score"]["complete_correct"] is False
    assert record["score"]["mtm_abs_error_mm"] == pytest.approx(abs(3.0 - k["min_margin_mm"]), abs=1e-3)
    _wait_reveal(qtbot, viewer)
    # the reveal: scores, explanation, the 2D-vs-3D aid, the layers and the unlocked Margins widget
    html = teach.reveal.text()
    assert "not completely covered" in html and "2D vs 3D" in html
    assert f"true {k['min_margin_mm']:.1f} mm" in html
    names = [ly.name for ly in viewer.layers]
    assert "minimal margin point" in names and "2D minimum on the largest axial slice" in names
    margin = _layers.find_layer(viewer, "margin")
    assert set(np.unique(margin.data)) >= {1, 3}  # green and red voxels
    assert margins.status.text() != QUIZ_LOCK_TEXT and margins.run_btn.isEnabled()
    assert margins.big.text() == "MTM = —"
    assert not teach.submit_btn.isEnabled() and teach.next_btn.isEnabled()
    qtbot.wait(300)
    DOCS.mkdir(exist_ok=True)
    out = DOCS / "teach_reveal.png"
    viewer.window.screenshot(str(out), canvas_only=False)
    assert out.stat().st_size > 50_000
    # next case: locked again, the reveal layers gone
    teach.next_case()
    qtbot.wait(100)
    assert not {_layers.role_of(ly) for ly in viewer.layers} & set(REVEAL_ROLES)
    assert margins.status.text() == QUIZ_LOCK_TEXT


def test_bad_answer_is_one_line_and_records_nothing(make_napari_viewer, bundled_copy, qtbot):
    viewer, teach, _m = _open(make_napari_viewer, bundled_copy)
    teach.mtm.setText("about three")
    teach.submit_btn.click()
    assert "not a number" in teach.status.text()
    assert not quiz.trainee_file(bundled_copy, "resident").exists()
    assert teach.submit_btn.isEnabled() and _layers.find_layer(viewer, "margin") is None


def test_score_file_survives_a_viewer_closed_mid_quiz(make_napari_viewer, bundled_copy, qtbot):
    viewer, teach, _m = _open(make_napari_viewer, bundled_copy, trainee="Dr B")
    for mtm in ("4", "-1"):
        teach.mtm.setText(mtm)
        teach.complete.setCurrentText("yes")
        teach.submit()
        teach.next_case()
    teach.mtm.setText("2.5")  # typed, never submitted
    viewer.close()
    recs = quiz.read_scores(bundled_copy, "Dr B")["Dr B"]
    assert [r["case"] for r in recs] == ["case_01", "case_02"]
    assert [r["answer"]["mtm_mm"] for r in recs] == [4.0, -1.0]
    lines = quiz.trainee_file(bundled_copy, "Dr B").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all(json.loads(line)["score"] for line in lines)
    # reopened: the quiz resumes at the first unanswered case, the answered ones stay answered
    _viewer2, teach2, margins2 = _open(make_napari_viewer, bundled_copy, trainee="Dr B")
    assert teach2.case_id == "case_03"
    assert margins2.status.text() == QUIZ_LOCK_TEXT
    teach2.open_case(0)
    assert teach2.revealed and teach2.mtm.text() == "4" and not teach2.submit_btn.isEnabled()
