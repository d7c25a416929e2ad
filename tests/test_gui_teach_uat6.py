"""UAT s6 D2: until Submit, a quiz case's labels are read-only and Register is locked (as
Margins is), with a one-line reason, so the reveal never mixes the trainee's edited case
with the key. Real brush strokes, clicks and Alt-keys (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_ablation.core import geometry
from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import MarginWidget
from napari_ablation.widgets.register import RegisterWidget
from napari_ablation.widgets.teach import TeachWidget

LOCKED = "This case is in a quiz"


@pytest.fixture
def quiz_viewer(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    margins, register, teach = MarginWidget(viewer), RegisterWidget(viewer), TeachWidget(viewer)
    viewer.window.add_dock_widget(margins, name="4. Margins")
    viewer.window.add_dock_widget(register, name="3. Register", tabify=True)
    viewer.window.add_dock_widget(teach, name="Teach (quiz)", tabify=True)
    _gui.fast_timers(teach.session)
    qtbot.keyClicks(teach.trainee, "Dr Resident")
    if _layers.grid(viewer).enabled:  # one view, where canvas pixels map to world points
        _gui.click(qtbot, viewer.window._qt_viewer.viewerButtons.gridViewButton)
    _gui.click(qtbot, teach.bundled_btn)
    session = teach.session
    qtbot.waitUntil(
        lambda: not teach.busy and not _layers.steps_pending() and session.model.pre is not None,
        timeout=120000,
    )
    return viewer, teach, register, margins


def test_quiz_case_is_read_only_until_submit(quiz_viewer, qtbot):
    viewer, teach, register, margins = quiz_viewer
    session = teach.session
    m = session.model
    tumor = session.labels_layer("tumor")
    assert tumor is not None and "tumor" not in teach.run.quiz.questions
    before = np.array(tumor.data, copy=True)
    versions = (m.version("tumor"), m.version("transform"))
    centre = geometry.lps_to_world(m.tumor_centre_lps())
    viewer.dims.point = tuple(float(x) for x in centre)

    # a brush stroke on the tumor: the layer is read-only (napari keeps it in pan/zoom)
    _gui.choose(viewer, tumor, "paint")
    assert not tumor.editable and str(tumor.mode) == "pan_zoom"
    _gui.stroke_through(viewer, qtbot, centre, half_mm=30.0)
    assert np.array_equal(tumor.data, before)
    # Register: the automatic run, an Alt-key nudge, Undo: refused with the reason
    assert not register.auto.isEnabled() and not register.manual.isEnabled()
    assert register.status.text().startswith(LOCKED)
    register.auto.run_automatic()  # what the (disabled) button would start
    _gui.key(viewer, qtbot, Qt.Key_Right, Qt.AltModifier)
    qtbot.wait(400)
    assert not register.auto.running
    assert (m.version("tumor"), m.version("transform")) == versions
    assert register.status.text().startswith(LOCKED) and "\n" not in register.status.text()
    assert "MTM hidden" in margins.big.text()

    # answered: the case is the trainee's again
    teach.mtm.setText("5")
    _gui.click(qtbot, teach.submit_btn)
    qtbot.waitUntil(lambda: not teach.busy and not _layers.steps_pending(), timeout=120000)
    assert tumor.editable and register.auto.isEnabled() and register.manual.isEnabled()
    assert not register.status.text().startswith(LOCKED)
    _gui.choose(viewer, tumor, "paint")
    _gui.stroke_through(viewer, qtbot, centre, half_mm=30.0)
    assert not np.array_equal(tumor.data, before)
