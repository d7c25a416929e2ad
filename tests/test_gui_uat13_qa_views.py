"""UAT s13 N1: *Register > QA*: the difference view, ticked then unticked, left the
"ablation outline (pre space)" hidden (the registered post came back), also after the
checkerboard on and off. Leaving a QA view now gives every layer it hid or showed the
visibility it had before (the user's), whatever the order of the views, and a layer the
user hid stays hidden (run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest

from napari_ablation.widgets import _layers
from napari_ablation.widgets.qa import CHECKER, CROSS, DIFF, EDGES

pytestmark = pytest.mark.gui

#: the QA views' own layers (there only while their view is on)
QA_LAYERS = (CHECKER, DIFF, EDGES, CROSS)


@pytest.fixture
def qa_on_sample(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """The renal sample registered by its true transform, margins computed, the Register
    dock (Plugins menu) on its QA tab; returns ``(viewer, qa)``."""
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    _dock, reg = viewer.window.add_plugin_dock_widget("napari-ablation", "3. Register")
    session, marg = _gui.margins_on_sample(viewer, qtbot, tmp_path)
    qtbot.waitUntil(lambda: reg.registered_layer() is not None, timeout=60_000)
    qtbot.waitUntil(
        lambda: _gui.idle(session, marg) and not _layers.steps_pending(), timeout=60_000
    )
    reg.tabs.setCurrentWidget(reg.qa)
    qtbot.wait(100)
    return viewer, reg.qa


def _shown(viewer) -> dict[str, bool]:
    return {ly.name: ly.visible for ly in viewer.layers if ly.name not in QA_LAYERS}


def _tick(qtbot, qa, box) -> None:
    """The user clicks a QA view's check box; its layers are shown once made."""
    on = not box.isChecked()
    _gui.click(qtbot, box)
    assert box.isChecked() is on
    name = {qa.diff: DIFF, qa.checker: CHECKER}.get(box)
    if name is not None:
        v = qa.viewer
        qtbot.waitUntil(lambda: (name in v.layers) is on, timeout=30_000)


@pytest.mark.parametrize(
    "order",
    [
        ("diff", "diff"),
        ("checker", "checker"),
        ("diff", "diff", "checker", "checker"),  # the UAT's steps
        ("diff", "checker", "diff", "checker"),
        ("checker", "diff", "checker", "diff"),
        ("diff", "checker", "checker", "diff"),
        ("flicker", "diff", "flicker", "diff"),
    ],
)
def test_leaving_the_qa_views_gives_every_layer_its_visibility_back(qa_on_sample, qtbot, order):
    viewer, qa = qa_on_sample
    reg_l = _layers.find_layer(viewer, "post_registered")
    outline = _layers.find_layer(viewer, "ablation_registered")
    assert reg_l is not None and outline is not None
    before = _shown(viewer)
    assert before[reg_l.name] and before[outline.name]
    boxes = {"diff": qa.diff, "checker": qa.checker, "flicker": qa.flicker}
    for step in order:
        _tick(qtbot, qa, boxes[step])
        if qa.diff.isChecked() and not qa.flicker.isChecked():  # read over pre alone
            assert not reg_l.visible
    qtbot.wait(100)
    assert not any(b.isChecked() for b in boxes.values())
    assert _shown(viewer) == before


def test_a_layer_the_user_hid_stays_hidden_after_the_qa_views(qa_on_sample, qtbot):
    viewer, qa = qa_on_sample
    reg_l = _layers.find_layer(viewer, "post_registered")
    outline = _layers.find_layer(viewer, "ablation_registered")
    # the user switches off the registered post's and the outline's eyes
    reg_l.visible = False
    outline.visible = False
    before = _shown(viewer)
    for box in (qa.diff, qa.checker, qa.flicker):
        _tick(qtbot, qa, box)
        qtbot.wait(100)
        _tick(qtbot, qa, box)
        assert _shown(viewer) == before, box.text()
    # the contour views show what they draw on, and put it back after
    for mode in (1, 2, 3, 0):
        qa.contours.setCurrentIndex(mode)
        qtbot.wait(100)
        if mode == 3:  # the ablation zone outline on pre
            assert outline.visible
    assert _shown(viewer) == before

    # shown again by the user: the views give it back shown
    reg_l.visible = True
    outline.visible = True
    before = _shown(viewer)
    _tick(qtbot, qa, qa.diff)
    qa.contours.setCurrentIndex(1)  # edges of registered post over pre
    qtbot.wait(100)
    _tick(qtbot, qa, qa.diff)
    qa.contours.setCurrentIndex(0)
    qtbot.wait(100)
    assert _shown(viewer) == before
