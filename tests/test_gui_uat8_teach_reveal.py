"""Teach: the reveal's steps belong to the quiz case they were planned for. A reveal that
had not finished when the next case was opened went on adding its layers ("2D minimum on
the largest axial slice" of the previous case) and moving the view over the case opened
meanwhile; they are now bound to the case generation, as the Margins widget's layer steps
(``CaseSession.while_case``; run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest

from napari_ablation.widgets import _layers
from napari_ablation.widgets.teach import REVEAL_NAMES

pytestmark = pytest.mark.gui


def _answer(qtbot, teach):
    teach.complete.setCurrentText("yes")
    teach.mtm.clear()
    qtbot.keyClicks(teach.mtm, "3")


def test_a_reveal_planned_for_one_case_never_runs_on_the_next(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    folder = _gui.copy_quiz(tmp_path)  # self-study: the key inside
    viewer, _margins, teach = _gui.teach_docks(make_napari_viewer)
    qtbot.keyClicks(teach.trainee, "resident")
    teach.open_quiz(folder)
    _gui.teach_settled(qtbot, teach)
    assert teach.case_id == "case_01"

    inserted = []  # (role, case shown when the layer came)
    viewer.layers.events.inserted.connect(
        lambda e: inserted.append((_layers.role_of(e.value), teach.case_id))
    )
    with qtbot.capture_exceptions() as errors:
        # the reveal of case_01 is planned; the trainee opens case_02 before it has run
        _answer(qtbot, teach)
        teach.submit_btn.click()
        assert teach.revealed and teach.busy  # its layers wait for the event loop
        teach.open_case(1)
        _gui.teach_settled(qtbot, teach)
        assert teach.case_id == "case_02" and not teach.revealed
        late = [r for r, _cid in inserted if r in REVEAL_NAMES]
        assert not late, inserted
        assert not [ly.name for ly in viewer.layers if _layers.role_of(ly) in REVEAL_NAMES]
        assert not teach.status.text().startswith("Reveal")

        # a reveal left to run still shows its layers (on its own case)
        inserted.clear()
        _answer(qtbot, teach)
        teach.submit_btn.click()
        _gui.teach_settled(qtbot, teach)
        shown = {r for r, cid in inserted if r in REVEAL_NAMES}
        assert "quiz_axial_point" in shown and {c for _r, c in inserted} == {"case_02"}
        assert teach.status.text().startswith("Reveal")
    assert not errors, errors
