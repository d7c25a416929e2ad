"""UAT s5 N7: after the user deletes every layer of a case, the next case opened (File >
Open Sample) is taken in without a word about the deleted case's labels (run under
xvfb-run)."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt
from test_registration import TRUE, make_phantom

from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def test_open_sample_after_deleting_every_layer_warns_about_nothing(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari.utils.notifications import notification_manager

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    # as the Plugins menu opens it: the session sees the viewer through napari's proxy
    _d, marg = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    session = marg.session
    pre, post, tumor, ice = make_phantom(TRUE)
    case = Case(pre=pre, post=post, tumor=tumor, ablation=ice, info={"name": "phantom"})
    session.set_case(case, tmp_path / "phantom")
    qtbot.waitUntil(lambda: session.labels_layer("ablation") is not None, timeout=60_000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        # the user selects every layer and deletes them (the layer list's delete button)
        viewer.layers.select_all()
        qtbot.mouseClick(
            viewer.window._qt_viewer.layerButtons.deleteButton,
            Qt.MouseButton.LeftButton,
        )
        qtbot.wait(300)
        assert len(viewer.layers) == 0
        assert session.labels_layer("tumor") is None and session.labels_layer("ablation") is None
        viewer.open_sample("napari-ablation", "liver_ct")  # File > Open Sample
        qtbot.waitUntil(
            lambda: (
                session.labels_layer("ablation") is not None
                and session.opening is None
                and not _layers.steps_pending()
            ),
            timeout=120_000,
        )
        qtbot.wait(300)
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    warnings = [str(n.message) for n in seen if "fit" in str(n.message)]
    assert not warnings, warnings
    assert session.model.pre.GetSize() == (224, 240, 36)  # the liver case
