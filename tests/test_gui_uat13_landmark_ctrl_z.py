"""UAT s13 N6: Ctrl-Z on a landmark layer takes back that layer's last click, as the
Register tutorial says (napari's Points layer has no undo: the click stayed, with no word);
the other layer's points and the registration stay (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
import test_gui_uat8_landmarks as uat8
from test_gui_uat8_landmarks import PAIRS, SHIFT, _landmark_layers, _slider_to

from napari_ablation.core import geometry

pytestmark = pytest.mark.gui
widget = uat8.widget  # pre 3 mm and post 2.5 mm slices, Register docked, grid off


def _click(w, qtbot, layer, lps) -> None:
    v = w.viewer
    world = geometry.lps_to_world(np.asarray(lps, float))
    _slider_to(v, world)
    v.layers.selection.active = layer
    layer.mode = "add"
    _gui.click_at(v, qtbot, world)


def test_ctrl_z_on_a_landmark_layer_removes_its_last_click(widget, qtbot):
    w, v = widget, widget.viewer
    lm_pre, lm_post = _landmark_layers(w, qtbot)
    version = w.model.version("transform")
    with qtbot.capture_exceptions() as errors:
        for pre_lps in PAIRS[:2]:
            _click(w, qtbot, lm_pre, pre_lps)
            _click(w, qtbot, lm_post, np.array(pre_lps) + SHIFT)
        _click(w, qtbot, lm_pre, PAIRS[2])  # a third pre click, the misclick
        assert (len(lm_pre.data), len(lm_post.data)) == (3, 2)
        assert len(w.landmarks.points()[0]) == 3
        # Ctrl-Z on the pre layer: its last click goes, post keeps its two
        v.layers.selection.active = lm_pre
        _gui.undo(v, qtbot)
        assert (len(lm_pre.data), len(lm_post.data)) == (2, 2)
        pre, post = w.landmarks.points()
        assert sorted(pre) == sorted(post) and len(pre) == 2
        assert "removed point" in w.status.text()
        # Ctrl-Z on the post layer: its last click, though the last click overall was pre's
        v.layers.selection.active = lm_post
        _gui.undo(v, qtbot)
        assert (len(lm_pre.data), len(lm_post.data)) == (2, 1)
        # more Ctrl-Z than clicks: says so, removes nothing of the other layer
        _gui.undo(v, qtbot)
        _gui.undo(v, qtbot)
        assert (len(lm_pre.data), len(lm_post.data)) == (2, 0)
        assert "no landmark click to undo" in w.status.text()
        # a click after the undos gets a pair label and is kept
        _click(w, qtbot, lm_post, np.array(PAIRS[0]) + SHIFT)
        assert len(lm_post.data) == 1 and len(w.landmarks.points()[1]) == 1
    assert not errors, errors
    assert w.model.version("transform") == version  # Ctrl-Z never changed the registration
