"""UAT s9 leftover: the layer that keeps a reader's replaced labels ("<role>_previous", after
another layer took the role) took brush strokes that reached no file. It is a record of
the labels saved in ``<role>_previous.nii.gz``: read-only, named "<name> (previous)", so
what it shows is what is on disk; Segment's *Use selected layer* makes it the case's
labels again, editable and followed by the autosave (run under xvfb-run)."""

import _gui
import numpy as np
import SimpleITK as sitk

from napari_ablation.widgets import _layers


def _on_disk(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))) != 0


def test_replaced_labels_layer_is_read_only_and_equals_its_file(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, w, seg = _gui.segment_on_sample(viewer, qtbot, tmp_path)
    _gui.grid_off(viewer, qtbot)
    tumor = session.labels_layer("tumor")
    name = tumor.name

    _gui.open_reader_b_tumor(viewer, qtbot, session, w, tmp_path)
    kept = session.model.folder / "tumor_previous.nii.gz"
    assert _layers.role_of(tumor) == "tumor_previous"
    assert tumor.name == f"{name} (previous)"
    assert not tumor.editable

    # a stroke on the kept layer changes nothing: the layer stays what its file holds
    _gui.paint_beside_tumor(viewer, qtbot, tumor)
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    assert tumor.mode == "pan_zoom"
    assert np.array_equal(np.asarray(tumor.data) != 0, _on_disk(kept))

    # made the case's tumor again: editable, its name back, strokes autosaved
    reader_b = session.labels_layer("tumor")
    viewer.layers.selection.active = tumor
    _gui.click(qtbot, seg.pick_btn)
    assert session.labels_layer("tumor") is tumor and tumor.editable
    assert tumor.name == name
    assert not reader_b.editable and reader_b.name.endswith(" (previous)")
    assert _on_disk(session.model.folder / "tumor_previous_2.nii.gz").sum() > 0
    before = int((np.asarray(tumor.data) != 0).sum())
    _gui.paint_beside_tumor(viewer, qtbot, tumor)
    assert int((np.asarray(tumor.data) != 0).sum()) > before
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    qtbot.waitUntil(
        lambda: np.array_equal(
            _on_disk(session.model.folder / "tumor.nii.gz"), np.asarray(tumor.data) != 0
        ),
        timeout=30000,
    )
