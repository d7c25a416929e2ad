"""UAT s10 N2: a tumor drawn in separate parts (a second lesion, a stray brush voxel) is
measured as one structure; the CLI says so in a note, and so does the Margins widget.

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat10_parts_note.py``.
"""

from __future__ import annotations

import SimpleITK as sitk
from test_margin_widget import _compute, _setup, phantom_case

from napari_ablation.core import segmentation


def _dab(tumor):
    """Where a stray brush dab goes: 14 voxels off the tumor's centre in y and x (19.8 mm
    from the centre of a tumor of radius 8 mm)."""
    z, y, x = (int(c.mean()) for c in tumor.nonzero())
    return z, slice(y + 14, y + 16), slice(x + 14, x + 16)


def _two_part_case():
    case = phantom_case()
    tumor = sitk.GetArrayFromImage(case.tumor)
    tumor[_dab(tumor)] = 1
    img = sitk.GetImageFromArray(tumor)
    img.CopyInformation(case.tumor)
    case.tumor = img
    return case


def test_margins_name_a_tumor_in_separate_parts(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    case = _two_part_case()
    _viewer, w = _setup(make_napari_viewer, tmp_path, monkeypatch, case=case)
    _compute(w, qtbot)
    expected = segmentation.several_parts_note(
        sitk.GetArrayViewFromImage(case.tumor), case.tumor.GetSpacing()[::-1], "tumor"
    )
    assert expected is not None and "2 separate parts" in expected
    assert w.parts_note.isVisibleTo(w)
    assert w.parts_note.text() == f"Note: {expected}"
    # the stray voxels erased: the note goes with the next analysis
    layer = w.session.labels_layer("tumor")
    data = layer.data.copy()
    data[_dab(sitk.GetArrayFromImage(phantom_case().tumor))] = 0
    previous = w.result
    layer.data = data
    _compute(w, qtbot, previous=previous)
    assert not w.parts_note.isVisibleTo(w)


def test_a_tumor_in_one_part_has_no_note(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    _viewer, w = _setup(make_napari_viewer, tmp_path, monkeypatch)
    _compute(w, qtbot)
    assert not w.parts_note.isVisibleTo(w) and w.parts_note.text() == ""
