"""UAT s5 N8: a case folder asked for while another case opens is opened after it, never
dropped, and the Load status says "opening" until then (run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest
from test_registration import TRUE, make_phantom

from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def test_open_folder_while_a_sample_opens_is_queued_not_dropped(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari_ablation.widgets.session import CaseSession

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    pre, post, tumor, ice = make_phantom(TRUE)
    folder = tmp_path / "phantom_case"
    Case(pre=pre, post=post, tumor=tumor, ablation=ice, info={"name": "phantom"}).save(folder)
    viewer = make_napari_viewer(show=True)
    _d, load = viewer.window.add_plugin_dock_widget("napari-ablation", "1. Load case")
    session = CaseSession.of(viewer)
    load.sample.setCurrentIndex(load.sample.findData("renal_mri"))
    _gui.click(qtbot, load.sample_btn)
    assert session.opening is not None
    assert "all changes saved" not in load.status.text()
    # Open folder… picks the phantom case while the sample is still opening
    load.open_case_folder(str(folder))
    seen = []
    qtbot.waitUntil(
        lambda: (
            seen.append(load.status.text())
            or (session.folder == folder and session.opening is None and load._worker is None)
        ),
        timeout=180_000,
    )
    assert session.model.info.get("name") == "phantom"
    for role in ("pre", "post"):
        assert _layers.find_layer(viewer, role) is not None, role
    for role in ("tumor", "ablation"):
        assert session.labels_layer(role) is not None, role
    # while anything opened, the status never claimed the case was open and saved
    opening = [t for t in seen if "opening" in t.lower()]
    assert opening
    assert "all changes saved" in load.status.text() or "not saved" in load.status.text()
