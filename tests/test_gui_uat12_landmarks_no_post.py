"""UAT s12 N3: Register > Landmarks with no post image (only pre.nii.gz opened, or a case
holding a pre image alone): "Fit" and "Landmark layers" say in one line what is missing
(a notification and Register's status line), add no layer and raise no traceback (run
under xvfb-run)."""

from __future__ import annotations

import _gui
import SimpleITK as sitk

from napari_ablation.core import samples
from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers


def _press_landmark_buttons(qtbot, reg, viewer, messages, missing: str) -> None:
    """Landmarks tab: "Landmark layers", then "Fit"; each says what is missing, in one line,
    and no layer is added."""
    before = [ly.name for ly in viewer.layers]
    reg.tabs.setCurrentWidget(reg.landmarks)
    for button in (reg.landmarks.add_btn, reg.landmarks.fit_btn):
        del messages[:]
        reg.set_status("")
        _gui.click(qtbot, button)
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=20000)
        qtbot.wait(200)
        texts = [str(n.message) for n in messages]
        assert len(texts) == 1, (button.text(), texts)
        assert texts[0] == f"{missing}: load the pre and post images first (Load case)", texts
        assert "\n" not in texts[0]
        assert reg.status.text().startswith(texts[0]), reg.status.text()
        assert [ly.name for ly in viewer.layers] == before  # no landmark layer over nothing


def test_pre_file_alone_landmark_buttons_say_what_is_missing(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, messages
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    _d, reg = viewer.window.add_plugin_dock_widget("napari-ablation", "3. Register")
    # File > Open of a pre file alone (the plugin's reader): no post anywhere
    viewer.open(str(samples.sample_dir() / "renal_mri" / "pre.nii.gz"), plugin="napari-ablation")
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=30000)
    assert reg.model.post is None
    # (a file opened alone is not a case's pre: the Load widget makes the case)
    _press_landmark_buttons(qtbot, reg, viewer, messages, "no pre or post image")


def test_case_with_pre_alone_landmark_buttons_say_what_is_missing(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, messages
):
    pre = sitk.ReadImage(str(samples.sample_dir() / "renal_mri" / "pre.nii.gz"))
    viewer, session, ((_d, reg),) = _gui.plugin_docks(
        make_napari_viewer,
        tmp_path,
        monkeypatch,
        Case(pre=pre, info={"name": "pre only"}),
        "3. Register",
    )
    qtbot.waitUntil(lambda: session.opening is None and not _layers.steps_pending(), timeout=60000)
    assert reg.model.pre is not None and reg.model.post is None
    _press_landmark_buttons(qtbot, reg, viewer, messages, "no post-ablation image")
