"""Teach defects found by a new user (UAT s5, issue 8), replayed with a real viewer and real
clicks: the reveal did not keep the user's active layer (it made the 2D-minimum points active),
the Margins dock showed "MTM = —" beside the revealed margin layer, the octant's "right"
was not coloured, and a quiz case was read and written on the GUI thread.

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat5_teach.py``.
"""

from __future__ import annotations

import json

import _gui
import pytest

from napari_ablation.core import quiz
from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import MarginWidget
from napari_ablation.widgets.teach import REVEAL_NAMES, TeachWidget


@pytest.fixture
def teach_viewer(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    """Margins and Teach docked (tabbed, as the demo does), the trainee's name typed."""
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    margins = MarginWidget(viewer)
    teach = TeachWidget(viewer)
    viewer.window.add_dock_widget(margins, name="4. Margins")
    viewer.window.add_dock_widget(teach, name="Teach (quiz)", tabify=True)
    _gui.fast_timers(teach.session)
    qtbot.keyClicks(teach.trainee, "Dr Resident")
    return viewer, teach, margins


def _settled(teach) -> bool:
    # (getattr: the same test replays the defect on a tree without the attribute)
    return not getattr(teach, "busy", False) and not _layers.steps_pending()


def _key(case_id: str) -> dict:
    doc = json.loads((quiz.bundled_quiz_dir() / quiz.KEY_IN_QUIZ).read_text(encoding="utf-8"))
    return doc["cases"][case_id]


def test_bundled_quiz_and_next_case_are_read_off_the_gui_thread(teach_viewer, qtbot):
    """The bundled quiz is copied, and each case read and written, in the background: right
    after the click the window is free (the model still the previous case), then the case
    shows, locked, with the tumor active."""
    viewer, teach, margins = teach_viewer
    session = teach.session
    _gui.click(qtbot, teach.bundled_btn)
    assert session.model.pre is None  # the click returned at once: read in the background
    assert teach.busy
    qtbot.waitUntil(lambda: _settled(teach) and session.model.pre is not None, timeout=120000)
    assert teach.case_id == "case_01" and "case_01" in str(session.model.folder)
    assert viewer.layers.selection.active is session.labels_layer("tumor")
    assert "MTM hidden" in margins.big.text()
    teach.mtm.setText("5")
    _gui.click(qtbot, teach.submit_btn)
    qtbot.waitUntil(lambda: _settled(teach), timeout=120000)
    folder = session.model.folder
    _gui.click(qtbot, teach.next_btn)
    assert session.opening is not None and session.model.folder == folder  # still reading
    qtbot.waitUntil(lambda: _settled(teach) and session.opening is None, timeout=120000)
    assert teach.case_id == "case_02" and "case_02" in str(session.model.folder)
    assert "MTM hidden" in margins.big.text()
    assert not {_layers.role_of(ly) for ly in viewer.layers} - {"pre", "post", "tumor", "ablation"}


def test_reveal_keeps_the_active_layer_and_margins_show_the_revealed_case(teach_viewer, qtbot):
    """Submit with a click: the active layer stays the user's, and the Margins dock shows
    the case's margins, the ones drawn on the canvas (one model), not "MTM = —"."""
    viewer, teach, margins = teach_viewer
    session = teach.session
    _gui.click(qtbot, teach.bundled_btn)
    qtbot.waitUntil(lambda: _settled(teach) and session.model.pre is not None, timeout=120000)
    pre = _layers.find_layer(viewer, "pre")
    viewer.layers.selection.active = pre  # the user's choice
    k = _key(teach.case_id)
    teach.complete.setCurrentText("yes")
    teach.mtm.setText("-2.5")
    teach.octant.setCurrentText(k["min_margin_octant"])  # right: coloured like the others
    _gui.click(qtbot, teach.submit_btn)
    qtbot.waitUntil(
        lambda: (
            _settled(teach)
            and margins._shown is not None
            and not margins.adding_layers
            and _layers.find_layer(viewer, "margin") is not None
        ),
        timeout=120000,
    )
    qtbot.wait(100)
    assert viewer.layers.selection.active is pre
    names = [ly.name for ly in viewer.layers]
    assert REVEAL_NAMES["quiz_axial_point"] in names and "minimal margin point" in names
    # one model: the dock's MTM is the model's analysis of the case, which the canvas shows
    m = session.model
    assert margins._shown is m.analysis and m.analysis_current
    assert margins.big.text() == m.result.margin_text() != "MTM = —"
    assert m.result.min_margin_mm == pytest.approx(k["engine_min_margin_mm"], abs=0.1)
    assert _gui.stale_readout(viewer, session, margins) is None
    assert margins.export_btns["JSON"].isEnabled()
    # the octant's "right" is coloured as the other verdicts are
    assert "<span style='color:#2ca02c'>right</span>" in teach.reveal.text().split("Octant:")[1]
