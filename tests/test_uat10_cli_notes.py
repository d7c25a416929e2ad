"""UAT s10 N2: a tumor file holding two lesions (label values 1 and 2) was measured as one
tumor without a word: one MTM (the uncovered second lesion's), a "max 3D diameter" across
the gap between them. ``napari-ablation margin`` now says so in a note (stdout and the
JSON's ``notes``) and points to ``--tumor-label``; one lesion selected, or a tumor in one
piece, gives no note."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import margin as M
from napari_ablation.core import segmentation


@pytest.fixture()
def files(tmp_path):
    """Lesion 1 (r 8 mm) inside an ablation sphere (r 14 mm); lesion 2 (r 4 mm, label 2)
    25 mm away, outside it; 1 mm grid."""
    size, origin = [60, 60, 40], [-20.0, -20.0, -20.0]
    one = M.sphere_image(size, [1, 1, 1], origin, (0.0, 0.0, 0.0), 8.0)
    two = M.sphere_image(size, [1, 1, 1], origin, (25.0, 0.0, 0.0), 4.0)
    arr = sitk.GetArrayFromImage(one) + 2 * sitk.GetArrayFromImage(two)
    tumor = sitk.GetImageFromArray(arr.astype(np.uint8))
    tumor.CopyInformation(one)
    sitk.WriteImage(tumor, str(tmp_path / "tumor.nii.gz"))
    sitk.WriteImage(one, str(tmp_path / "lesion1.nii.gz"))
    abl = M.sphere_image(size, [1, 1, 1], origin, (0.0, 0.0, 0.0), 14.0)
    sitk.WriteImage(abl, str(tmp_path / "ablation.nii.gz"))
    return tmp_path


def _margin(files, tumor, *extra):
    out = files / f"{tumor}.json"
    args = ["margin", "--tumor", str(files / tumor), "--ablation", str(files / "ablation.nii.gz")]
    assert cli.main([*args, "--json", str(out), *extra]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_two_lesions_in_one_file_are_named(files, capsys):
    doc = _margin(files, "tumor.nii.gz")
    out = capsys.readouterr().out
    assert doc["min_margin_mm"] < 0  # the second lesion is outside the ablation zone
    values = (
        "tumor.nii.gz holds the label values 1, 2: all are measured as one tumor "
        "(--tumor-label N measures one of them)"
    )
    assert f"note: {values}" in out
    assert "note: the tumor mask has 2 separate parts (" in out
    assert doc["notes"][0] == values and "2 separate parts" in doc["notes"][1]


def test_one_lesion_selected_or_in_one_piece_has_no_note(files, capsys):
    doc = _margin(files, "tumor.nii.gz", "--tumor-label", "1")
    assert doc["min_margin_mm"] > 5 and "notes" not in doc
    assert "separate parts" not in capsys.readouterr().out
    doc = _margin(files, "lesion1.nii.gz")
    assert "notes" not in doc and "note: the tumor" not in capsys.readouterr().out


def test_several_parts_note_lists_the_volumes_largest_first():
    m = np.zeros((20, 20, 20), np.uint8)
    m[2:6, 2:6, 2:6] = 1  # 64 voxels
    m[10:12, 10:12, 10:12] = 1  # 8 voxels
    m[18, 18, 18] = 1  # a stray voxel
    assert segmentation.parts_ml(m, (2.0, 1.0, 1.0)) == pytest.approx([0.128, 0.016, 0.002])
    note = segmentation.several_parts_note(m, (2.0, 1.0, 1.0))
    assert note.startswith("the tumor mask has 3 separate parts (0.13, 0.02, 0.00 ml)")
    m[10:12, 10:12, 10:12] = 0
    m[18, 18, 18] = 0
    assert segmentation.several_parts_note(m, (2.0, 1.0, 1.0)) is None
