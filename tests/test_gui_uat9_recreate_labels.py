"""UAT s9 N6: after the tumor layer is deleted from the layer list, *Segment > Create /
edit labels* shows the tumor the case still holds again (it used to make an empty tumor,
autosaved over the case folder's tumor.nii.gz), and the case folder keeps it (run under
xvfb-run)."""

import _gui
import numpy as np
import SimpleITK as sitk


def test_create_labels_after_deleting_the_tumor_layer_shows_the_case_tumor(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, w, seg = _gui.segment_on_sample(viewer, qtbot, tmp_path)
    tumor = session.labels_layer("tumor")
    drawn = np.array(tumor.data, copy=True)
    assert drawn.any()
    mtm = w.big.text()

    viewer.layers.remove(tumor)  # the layer list's delete button
    qtbot.wait(300)
    assert np.array_equal(session.model.labels("tumor"), drawn)  # the model keeps them

    back = _gui.create_labels(qtbot, seg, "tumor")
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    assert back is not tumor and viewer.layers.selection.active is back
    assert np.array_equal(np.asarray(back.data), drawn)
    assert w.big.text() == mtm
    on_disk = sitk.ReadImage(str(session.model.folder / "tumor.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(on_disk), drawn)
    _gui.check_invariants(viewer, session, w, tmp_path)
