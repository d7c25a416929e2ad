"""UAT s8 N10e: the GUI's JSON and ``napari-ablation margin`` on the same case folder gave one
octant minimum as 4.94 and 4.941 mm. Both round with one rule (``MarginResult.to_json_dict``);
the figures differed because NIfTI keeps spacing and origin in single precision: the CLI read
the case folder's files a few micrometres from the grid the GUI computed on, and a figure that
close to a rounding boundary printed differently. Every reader of a case folder's files now
restores the float64 geometry ``case.json`` records, so the CLI computes on the GUI's grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import io, report
from napari_ablation.core import margin as M
from napari_ablation.core import transform as tfm
from napari_ablation.core.case import Case, recorded_geometry

#: origins and spacings NIfTI's single precision cannot hold (as a reoriented own file has)
PRE_ORIGIN, PRE_SPACING = (-43.54999792575836, -69.45000159740448, -12.5), (0.9, 1.1, 3.0)
POST_ORIGIN, POST_SPACING = (-28.5, -53.6, -23.25), (1.0, 0.8, 2.5)


def _grid(size, spacing, origin):
    img = sitk.Image(size, sitk.sitkInt16)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory):
    pre = _grid((60, 50, 18), PRE_SPACING, PRE_ORIGIN)
    post = _grid((60, 70, 24), POST_SPACING, POST_ORIGIN)
    c = np.array([-17.3, -41.9, 12.2])
    tumor = M.sphere_image(list(pre.GetSize()), list(PRE_SPACING), list(PRE_ORIGIN), c, 8.3)
    ablation = M.sphere_image(
        list(post.GetSize()), list(POST_SPACING), list(POST_ORIGIN), c + [1.3, 2.1, 0.7], 13.1
    )
    for img, ref in ((tumor, pre), (ablation, post)):
        img.CopyInformation(ref)
    tx = sitk.Euler3DTransform()
    tx.SetCenter((-17.3, -41.9, 12.2))
    tx.SetParameters((0.01, -0.02, 0.015, 0.4, -0.3, 0.2))
    case = Case(pre=pre, post=post, tumor=tumor, ablation=ablation, transform=tx)
    folder = case.save(tmp_path_factory.mktemp("n10e") / "case")
    return case, folder


def test_a_case_files_reader_gets_the_recorded_geometry(case_folder):
    case, folder = case_folder
    for role in ("pre", "post", "tumor", "ablation"):
        exact = getattr(case, role)
        raw = sitk.ReadImage(str(folder / f"{role}.nii.gz"))
        # what the file alone holds is off by micrometres (single precision) ...
        assert raw.GetOrigin() != exact.GetOrigin() or raw.GetSpacing() != exact.GetSpacing()
        # ... and every reader of the file gets the grid the case was made on, bit for bit
        read = io.read_image(folder / f"{role}.nii.gz", is_label=role in ("tumor", "ablation"))
        assert read.image.GetOrigin() == exact.GetOrigin()
        assert read.image.GetSpacing() == exact.GetSpacing()
        loaded = getattr(Case.load(folder), role)
        assert loaded.GetOrigin() == exact.GetOrigin()
        assert recorded_geometry(folder / f"{role}.nii.gz")["origin"] == list(exact.GetOrigin())
    mask = io.read_labels(folder / "tumor.nii.gz", name="tumor")
    assert mask.GetOrigin() == case.tumor.GetOrigin()


def test_a_file_that_is_not_the_recorded_one_is_read_as_it_is(case_folder, tmp_path):
    _case, folder = case_folder
    other = tmp_path / "case"
    other.mkdir()
    (other / "case.json").write_text((folder / "case.json").read_text())
    img = _grid((60, 50, 18), (0.9, 1.1, 3.0), (-40.0, -69.5, -12.5))  # 3.5 mm off the record
    sitk.WriteImage(img, str(other / "pre.nii.gz"))
    assert io.read_image(other / "pre.nii.gz").image.GetOrigin() == (-40.0, -69.5, -12.5)
    # no case.json beside a file: nothing is looked up
    sitk.WriteImage(img, str(tmp_path / "pre.nii.gz"))
    assert recorded_geometry(tmp_path / "pre.nii.gz") is None


def test_cli_json_on_the_case_folder_equals_the_guis_figures(case_folder, tmp_path):
    case, folder = case_folder
    # the GUI's analysis: the in-memory case (its exact grid), the GUI's JSON document
    res = M.analyze_margin(case.tumor, case.ablation, case.transform, 5.0)
    gui = report.json_document(res, transform=case.transform)
    out = tmp_path / "cli.json"
    rc = cli.main(
        [
            "margin",
            "--tumor", str(folder / "tumor.nii.gz"),
            "--ablation", str(folder / "ablation.nii.gz"),
            "--transform", str(folder / "transform.tfm"),
            "--json", str(out),
        ]
    )  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    shared = set(gui) & set(doc) - {"inputs"}
    assert {"min_margin_mm", "octant_min_margin_mm", "tumor_volume_ml"} <= shared
    assert {k: doc[k] for k in shared} == {k: gui[k] for k in shared}
    # unrounded, too: the same grid gives the same numbers, not just the same decimals
    tumor = io.read_labels(folder / "tumor.nii.gz", name="tumor")
    ablation = io.read_labels(folder / "ablation.nii.gz", name="ablation")
    again = M.analyze_margin(tumor, ablation, tfm.read_rigid_transform(folder / "transform.tfm"))
    assert again.min_margin_mm == res.min_margin_mm
    assert again.octant_min_margin_mm == res.octant_min_margin_mm
