"""UAT s5 (b2_renal_opening.png): while File > Open Sample opens another case, no figure of
the case being replaced is shown as if it were current, and the canvas says what opens
(run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest
from test_registration import TRUE, make_phantom

from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui

#: layers made from a case's analysis and registration (not its images, labels, landmarks)
FIGURES = ("margin", "ablation_registered", "mtm_point", "post_registered")


def test_open_sample_over_a_case_with_margins_shows_none_of_its_figures(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, reg = viewer.window.add_plugin_dock_widget("napari-ablation", "3. Register")
    _d, marg = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    session = marg.session
    _gui.fast_timers(session)
    pre, post, tumor, ice = make_phantom(TRUE)
    case = Case(pre=pre, post=post, tumor=tumor, ablation=ice, info={"name": "phantom"})
    session.set_case(case, tmp_path / "phantom")
    qtbot.waitUntil(lambda: session.labels_layer("ablation") is not None, timeout=60_000)
    reg.set_transform(TRUE, "file")
    _gui.click(qtbot, marg.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=120_000)
    qtbot.waitUntil(lambda: not _layers.steps_pending() and not reg.busy, timeout=60_000)
    assert all(_layers.find_layer(viewer, r) is not None for r in FIGURES)
    viewer.open_sample("napari-ablation", "liver_ct")  # File > Open Sample
    states = []

    def look():
        if session.opening is not None:
            figures = [
                _layers.role_of(ly)
                for ly in viewer.layers
                if ly.visible and _layers.role_of(ly) in FIGURES
            ]
            banner = _layers.text_overlay(viewer)
            states.append((figures, banner.visible, banner.text))
        return (
            session.model.pre is not None
            and session.model.pre.GetSize() == (224, 240, 36)
            and session.opening is None
            and not _layers.steps_pending()
        )

    qtbot.waitUntil(look, timeout=180_000)
    assert states, "the opening was never seen"
    for figures, banner_visible, text in states:
        assert not figures, figures  # no margin of the phantom over the opening liver case
        assert banner_visible and "opening" in text, text
    assert not _layers.text_overlay(viewer).visible  # open: the banner is gone
    assert _layers.find_layer(viewer, "margin") is None
