"""UAT s9 N5: a label file that becomes the case's tumor (napari's File > Open or a drop,
the plugin's reader) never loses what the reader drew on the tumor it replaces: those
labels are saved as ``tumor_previous.nii.gz`` in the case folder first, the toast says
where, and they stay there after another case is opened (run under xvfb-run)."""

import _gui
import numpy as np
import SimpleITK as sitk

from napari_ablation.core import samples
from napari_ablation.widgets import _layers


def test_replaced_tumor_labels_are_saved_before_the_new_layer_takes_over(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
    _gui.fast_timers(session)
    if viewer.grid.enabled:
        viewer.grid.enabled = False
    notes = []
    monkeypatch.setattr(_layers, "notify_warning", lambda m: notes.append(str(m)))
    tumor = session.labels_layer("tumor")
    _gui.paint_beside_tumor(viewer, qtbot, tumor)  # reader A's stroke
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    drawn = np.array(tumor.data, copy=True)
    original = sitk.GetArrayFromImage(samples.load_sample("renal_mri").tumor)
    assert (drawn != 0).sum() > (original != 0).sum()

    _gui.open_reader_b_tumor(viewer, qtbot, session, w, tmp_path)
    kept = session.model.folder / "tumor_previous.nii.gz"
    assert kept.exists()
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(kept))) != 0, drawn != 0)
    assert any(f"its labels saved in {kept}" in n for n in notes), notes
    # the case's tumor is B's, on disk too
    on_disk = sitk.ReadImage(str(session.model.folder / "tumor.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(on_disk) != 0, original != 0)

    # another case opened: the previous layer goes, its labels stay on disk
    session.set_case(samples.load_sample("liver_ct"), tmp_path / "case2")
    qtbot.waitUntil(lambda: session.opening is None, timeout=120000)
    assert not any(_layers.role_of(ly) == "tumor_previous" for ly in viewer.layers)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(kept))) != 0, drawn != 0)
