"""UAT s12 N1: Load > Open folder on a case folder whose label file is not a mask of a few
values. A scan saved as ``tumor.nii.gz`` (int16 or float) is refused in one line naming the
file, as any other bad file of a case folder is (no case half opened, no traceback); a
``uint16`` mask of 256 or 1000 opens with every annotated voxel still annotated (uint8
labels wrapped 256 to 0: the tumor was lost). The same through napari's File > Open of the
folder (run under xvfb-run)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import samples
from napari_ablation.widgets import _layers
from napari_ablation.widgets.load import LoadCaseWidget
from napari_ablation.widgets.session import CaseSession


@pytest.fixture
def case_folder(tmp_path, monkeypatch):
    """A copy of the bundled renal sample case folder (the plugin's case folder format)."""
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    folder = tmp_path / "renal"
    shutil.copytree(samples.sample_dir() / "renal_mri", folder)
    return folder


def _rewrite(path, arr) -> None:
    """Write ``arr`` over the image file ``path``, on its grid."""
    ref = sitk.ReadImage(str(path))
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(path))


def _open(qtbot, viewer, folder) -> LoadCaseWidget:
    widget = LoadCaseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="1. Load")
    assert widget.open_case_folder(str(folder)) is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60000)
    return widget


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_a_scan_saved_as_the_tumor_is_refused_in_one_line(
    make_napari_viewer, qtbot, case_folder, messages, dtype
):
    scan = sitk.GetArrayFromImage(sitk.ReadImage(str(case_folder / "pre.nii.gz")))
    if dtype == "float32":
        scan = scan.astype(np.float32) * 0.37  # a float MRI: non-integer values
    _rewrite(case_folder / "tumor.nii.gz", scan.astype(dtype))
    viewer = make_napari_viewer(show=True)
    widget = _open(qtbot, viewer, case_folder)
    errors = [str(n.message) for n in messages if str(n.severity) == "error"]
    assert errors == [widget.last_error], errors
    assert widget.last_error.startswith("tumor.nii.gz: not a label image"), widget.last_error
    assert "\n" not in widget.last_error
    # refused as a whole, as a case folder with any other bad file: nothing half opened
    session = CaseSession.of(viewer)
    assert session.model.pre is None and len(viewer.layers) == 0
    # and the same through napari's File > Open of the folder (the plugin's reader)
    del messages[:]
    viewer.open(str(case_folder), plugin="napari-ablation")
    qtbot.wait(200)
    errors = [str(n.message) for n in messages if str(n.severity) == "error"]
    assert len(errors) == 1 and errors[0].startswith("tumor.nii.gz: not a label image"), errors
    assert session.model.pre is None and len(viewer.layers) == 0


@pytest.mark.parametrize("values", [(256, 1000), (1000, 512)])
def test_a_uint16_mask_above_255_opens_with_every_voxel_annotated(
    make_napari_viewer, qtbot, case_folder, messages, values
):
    masks = {}
    for role, value in zip(("tumor", "ablation"), values):
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(case_folder / f"{role}.nii.gz"))) != 0
        assert arr.any()
        masks[role] = arr
        _rewrite(case_folder / f"{role}.nii.gz", (arr * value).astype(np.uint16))
    viewer = make_napari_viewer(show=True)
    widget = _open(qtbot, viewer, case_folder)
    assert widget.last_error is None, widget.last_error
    errors = [str(n.message) for n in messages if str(n.severity) == "error"]
    assert not errors, errors
    session = CaseSession.of(viewer)
    for role, mask in masks.items():
        layer = session.labels_layer(role)
        assert layer is not None, role
        data = np.asarray(layer.data)
        # every annotated voxel is still annotated, nothing else is (256 wrapped to 0)
        np.testing.assert_array_equal(data != 0, mask, err_msg=role)
        np.testing.assert_array_equal(session.model.labels(role) != 0, mask, err_msg=role)


def test_a_scan_saved_as_tumor_file_opened_alone_is_refused_in_one_line(
    make_napari_viewer, qtbot, case_folder, messages
):
    # File > Open of the file itself (the plugin's reader reads tumor.* as labels): the
    # CLI's line, and no labels layer of a scan
    (case_folder / "tumor.nii.gz").write_bytes((case_folder / "pre.nii.gz").read_bytes())
    viewer = make_napari_viewer(show=True)
    viewer.open(str(case_folder / "tumor.nii.gz"), plugin="napari-ablation")
    qtbot.wait(200)
    errors = [str(n.message) for n in messages if str(n.severity) == "error"]
    assert len(errors) == 1 and errors[0].startswith("tumor.nii.gz: not a label image: "), errors
    assert len(viewer.layers) == 0
