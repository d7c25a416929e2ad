"""UAT s9 N8: the case closes with its images while the tumor labels are active in paint
mode (deleted, then *Segment > Create / edit labels*, then pre and post deleted from the
layer list): napari 0.9 with vispy segfaulted on the next draw (2 of 2 runs on main; this
test then kills the test process). The labels drawn on an image leave the painting modes
before it goes (run under xvfb-run)."""

import _gui
import numpy as np
import SimpleITK as sitk

from napari_ablation.widgets import _layers


def test_case_closes_with_its_images_while_painting(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1500, 950))
    session, _w, seg = _gui.segment_on_sample(viewer, qtbot, tmp_path)
    tumor = session.labels_layer("tumor")
    drawn = np.array(tumor.data, copy=True)
    folder = session.model.folder
    viewer.layers.remove(tumor)
    qtbot.wait(500)
    back = _gui.create_labels(qtbot, seg, "tumor")
    assert viewer.layers.selection.active is back and back.mode == "paint"
    qtbot.wait(1000)
    for role in ("pre", "post"):  # the layer list's delete button, one image at a time
        viewer.layers.remove(_layers.find_layer(viewer, role))
        qtbot.wait(2000)
    qtbot.waitUntil(lambda: len(viewer.layers) == 0, timeout=30000)
    viewer.window._qt_viewer.canvas.native.update()
    qtbot.wait(2000)  # the draws that crashed
    assert back.mode == "pan_zoom"
    assert session.model.pre is None and session.model.labels("tumor") is None
    on_disk = sitk.ReadImage(str(folder / "tumor.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(on_disk), drawn)
