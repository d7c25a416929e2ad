"""UAT s9 N2: a synthetic quiz case's reveal says which MTM is the generator's exact truth
(the score's reference) and which is the plugin's reading of the labels (the figure the
Margins widget beside it shows), as docs/teaching.md does (run under xvfb-run)."""

from __future__ import annotations

import json
import shutil

import _gui
import pytest
from qtpy.QtCore import Qt

from napari_ablation.core import quiz

pytestmark = pytest.mark.gui


def _settle(qtbot, teach, margins):
    _gui.teach_settled(qtbot, teach, margins, timeout=180_000)


def test_reveal_names_the_exact_truth_and_the_plugins_reading(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    folder = tmp_path / "quiz"
    shutil.copytree(quiz.bundled_quiz_dir(), folder)  # self-study: the key inside
    key = json.loads((folder / "key.json").read_text(encoding="utf-8"))["cases"]["case_02"]
    true, engine = key["min_margin_mm"], key["engine_min_margin_mm"]
    assert f"{true:.1f}" != f"{engine:.1f}"  # (3.4 against 3.7 mm)
    viewer, margins, teach = _gui.teach_docks(make_napari_viewer)
    qtbot.keyClicks(teach.trainee, "resident")
    teach.open_quiz(folder)
    _settle(qtbot, teach, margins)
    teach.open_case(1)
    _settle(qtbot, teach, margins)
    assert teach.case_id == "case_02"
    teach.complete.setCurrentText("yes")
    teach.mtm.clear()
    qtbot.keyClicks(teach.mtm, "2")
    qtbot.mouseClick(teach.submit_btn, Qt.LeftButton)
    _settle(qtbot, teach, margins)
    qtbot.waitUntil(lambda: any(ch.isdigit() for ch in margins.big.text()), timeout=180_000)
    viewer.window.screenshot(str(tmp_path / "reveal.png"))
    text = teach.reveal.text()
    assert f"true {true:.1f} mm" in text
    assert f"{engine:.1f} mm" in margins.big.text()
    # both figures on screen, each named
    assert f"true {true:.1f} mm is the generator's exact value" in text
    assert f"Margins widget's {engine:.1f} mm is the plugin's reading" in text
