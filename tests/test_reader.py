"""The plugin's reader opens masks as Labels layers (issue 8, point 10)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from napari_ablation.core import samples
from napari_ablation.widgets import _layers


def _write(path, arr, spacing=(0.8, 0.8, 2.5)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return img


def test_known_label_files_open_as_labels_with_their_role(make_napari_viewer, tmp_path):
    from napari_ablation.widgets.session import CaseSession

    case = samples.load_sample("renal_mri")
    for role in ("pre", "tumor"):
        sitk.WriteImage(getattr(case, role), str(tmp_path / f"{role}.nii.gz"))
    viewer = make_napari_viewer()
    session = CaseSession.of(viewer)
    (pre_layer,) = viewer.open(str(tmp_path / "pre.nii.gz"), plugin="napari-ablation")
    (tumor_layer,) = viewer.open(str(tmp_path / "tumor.nii.gz"), plugin="napari-ablation")
    assert pre_layer.__class__.__name__ == "Image"
    assert tumor_layer.__class__.__name__ == "Labels"
    assert _layers.role_of(tumor_layer) == "tumor"
    assert _layers.find_layer(viewer, "tumor") is tumor_layer
    # the layer carries the mask, on the pre grid, in mm
    assert np.array_equal(tumor_layer.data != 0, sitk.GetArrayViewFromImage(case.tumor) != 0)
    assert np.allclose(tumor_layer.scale, pre_layer.scale)
    # and the case model (which Segment and Margins read) holds it as the tumor
    held = session.model.labels("tumor")
    assert held is not None and int((held != 0).sum()) == int((tumor_layer.data != 0).sum())


def test_integer_volume_with_few_values_opens_as_labels_intensities_as_image(
    make_napari_viewer, tmp_path
):
    rng = np.random.default_rng(0)
    mask = np.zeros((6, 20, 22), np.uint8)
    mask[2:4, 5:12, 6:15] = 1
    mask[3, 14:18, 2:5] = 2
    _write(tmp_path / "seg_reader1.nrrd", mask)
    ct = rng.integers(-1000, 1500, size=(6, 20, 22)).astype(np.int16)  # an integer intensity image
    _write(tmp_path / "ct.nrrd", ct)
    viewer = make_napari_viewer()
    (seg,) = viewer.open(str(tmp_path / "seg_reader1.nrrd"), plugin="napari-ablation")
    (img,) = viewer.open(str(tmp_path / "ct.nrrd"), plugin="napari-ablation")
    assert seg.__class__.__name__ == "Labels" and set(np.unique(seg.data)) == {0, 1, 2}
    assert _layers.role_of(seg) in ("", None)  # no known role: a plain Labels layer
    assert img.__class__.__name__ == "Image"
