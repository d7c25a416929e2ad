"""UAT s5 N2: images loaded from files get the window of each new case (not the previous
one's), and a mask chosen as the pre or post image is named in one warning line (run under
xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
import SimpleITK as sitk
from qtpy.QtTest import QTest
from test_registration import TRUE, make_phantom

from napari_ablation.core import display
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def test_each_loaded_case_gets_its_own_window_and_a_mask_as_image_warns(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari.utils.notifications import notification_manager

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    pre, post, tumor, _ice = make_phantom(TRUE)
    for name, img in (("pre", pre), ("post", post), ("tumor", tumor)):
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    viewer = make_napari_viewer(show=True)
    _d, load = viewer.window.add_plugin_dock_widget("napari-ablation", "1. Load case")
    session = load.session

    def load_files(pre_name, post_name):
        for picker, name in ((load.pre, pre_name), (load.post, post_name)):
            picker.path.clear()
            QTest.keyClicks(picker.path, str(tmp_path / name))  # typed, as the user does
        _gui.click(qtbot, load.load_btn)
        qtbot.waitUntil(
            lambda: load._worker is None and session.labels_layer("tumor") is not None,
            timeout=120_000,
        )
        qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
        qtbot.wait(200)

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        load_files("tumor.nii.gz", "post.nii.gz")  # the tumor mask picked as pre by mistake
        warned = [str(n.message) for n in seen if "looks like a mask" in str(n.message)]
        assert len(warned) == 1 and "pre" in warned[0] and "\n" not in warned[0], warned
        seen.clear()
        load_files("pre.nii.gz", "post.nii.gz")  # the real pair
        assert not [n for n in seen if "looks like a mask" in str(n.message)]
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    layer = _layers.find_layer(viewer, "pre")
    arr = sitk.GetArrayFromImage(pre)
    assert np.array_equal(np.asarray(layer.data), arr)
    expected = display.default_contrast(arr, session.model.info.get("modality", ""))
    assert np.allclose(layer.contrast_limits, expected, atol=1e-3), (
        layer.contrast_limits,
        expected,
    )
    lo, hi = layer.contrast_limits_range
    assert lo <= float(arr.min()) + 1e-3 and hi >= float(arr.max()) - 1e-3
    viewer.screenshot(str(tmp_path / "pre_window.png"), canvas_only=True)
