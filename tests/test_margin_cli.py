"""``napari-ablation margin``: JSON keys of DESIGN section 5, CSV, HTML, labels, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import margin as M

DESIGN_KEYS = {
    "min_margin_mm",
    "min_margin_mm_rounded",
    "threshold_mm",
    "min_margin_point_lps",
    "min_margin_octant",
    "octant_min_margin_mm",
    "tumor_volume_ml",
    "ablation_volume_ml",
    "tumor_max_diameter_mm",
    "volume_ml",
    "volume_fraction",
    "complete_coverage",
}
CLASS_KEYS = {"covered_with_margin", "insufficient_margin", "uncovered"}


@pytest.fixture()
def files(tmp_path):
    """Tumor on a 0.8 x 0.8 x 2 mm pre grid, ablation on a 1 mm post grid
    shifted by T = +7 mm in y."""
    c = np.array([1.0, -2.0, 3.0])
    tumor = M.sphere_image([50, 50, 20], [0.8, 0.8, 2.0], (c - [20, 20, 19]).tolist(), c, 8.0)
    shift = np.array([0.0, 7.0, 0.0])
    c_post = c + [0, 0, 4.0] + shift  # pre-space centre c + (0, 0, 4)
    ablation = M.sphere_image([50, 50, 50], [1, 1, 1], (c_post - 24.6).tolist(), c_post, 14.0)
    ablation_arr = sitk.GetArrayFromImage(ablation) * 2  # label value 2
    ab2 = sitk.GetImageFromArray(ablation_arr.astype(np.uint8))
    ab2.CopyInformation(ablation)
    sitk.WriteImage(tumor, str(tmp_path / "tumor.nii.gz"))
    sitk.WriteImage(ab2, str(tmp_path / "ablation.nrrd"))
    sitk.WriteTransform(sitk.TranslationTransform(3, shift.tolist()), str(tmp_path / "T.tfm"))
    return tmp_path


def test_margin_cli_writes_design_keys_csv_html_and_labels(files, capsys):
    out = files / "out"
    out.mkdir()  # the CLI writes into existing folders only
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(files / "tumor.nii.gz"),
            "--ablation",
            str(files / "ablation.nrrd"),
            "--ablation-label",
            "2",
            "--transform",
            str(files / "T.tfm"),
            "--threshold",
            "3",
            "--json",
            str(out / "m.json"),
            "--csv",
            str(out / "m.csv"),
            "--html",
            str(out / "m.html"),
            "--margin-labels",
            str(out / "classes.nii.gz"),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "MTM =" in printed
    doc = json.loads((out / "m.json").read_text(encoding="utf-8"))
    assert set(doc) >= DESIGN_KEYS
    assert set(doc["volume_ml"]) == CLASS_KEYS and set(doc["volume_fraction"]) == CLASS_KEYS
    assert set(doc["octant_min_margin_mm"]) == set(M.OCTANTS)
    assert len(doc["min_margin_point_lps"]) == 3
    # exact: 14 - 8 - 4 = 2 mm, at the inferior side; threshold 3 -> incomplete margin but covered
    assert doc["min_margin_mm"] == pytest.approx(2.0, abs=0.5)
    assert doc["min_margin_mm_rounded"] == 2
    assert doc["threshold_mm"] == 3.0
    assert doc["complete_coverage"] is True
    assert doc["min_margin_octant"].endswith("inferior")
    assert doc["volume_fraction"]["uncovered"] == 0
    assert sum(doc["volume_fraction"].values()) == pytest.approx(1.0)
    assert doc["tumor_volume_ml"] == pytest.approx(4 / 3 * np.pi * 8**3 / 1000, rel=0.05)
    assert doc["ablation_volume_ml"] == pytest.approx(4 / 3 * np.pi * 14**3 / 1000, rel=0.03)
    # CSV has the same figures
    rows = list(csv.reader((out / "m.csv").open(encoding="utf-8", newline="")))
    assert rows[0] == ["figure", "value", "unit"]
    table = {r[0]: r[1] for r in rows[1:]}
    assert float(table["Minimal treatment margin (MTM)"]) == pytest.approx(
        doc["min_margin_mm"], abs=0.006
    )
    # HTML report: self-contained with embedded figures
    html = (out / "m.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 2 and "MTM =" in html
    # labels on the pre grid
    lab = sitk.ReadImage(str(out / "classes.nii.gz"))
    tumor = sitk.ReadImage(str(files / "tumor.nii.gz"))
    assert lab.GetSize() == tumor.GetSize()
    assert np.allclose(lab.GetOrigin(), tumor.GetOrigin(), atol=1e-3)
    arr = sitk.GetArrayFromImage(lab)
    assert set(np.unique(arr)) == {0, 1, 2}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ablation-label", "5"], "empty"),
        (["--transform", "missing.tfm"], "no such transform file"),
    ],
)
def test_margin_cli_bad_input_one_line_no_output(files, capsys, extra, message):
    out = files / "bad.json"
    args = [
        "margin",
        "--tumor",
        str(files / "tumor.nii.gz"),
        "--ablation",
        str(files / "ablation.nrrd"),
        "--json",
        str(out),
    ]
    extra = [str(files / e) if e.endswith(".tfm") else e for e in extra]
    rc = cli.main(args + extra)
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_margin_cli_rejects_a_scaling_transform(files, capsys):
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([1.1, 0, 0, 0, 1, 0, 0, 0, 1])
    sitk.WriteTransform(aff, str(files / "aff.tfm"))
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(files / "tumor.nii.gz"),
            "--ablation",
            str(files / "ablation.nrrd"),
            "--transform",
            str(files / "aff.tfm"),
            "--json",
            str(files / "x.json"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "not rigid" in err and not (files / "x.json").exists()


def test_margin_cli_names_the_series_it_read_from_a_dicom_folder(files, capsys):
    """UAT s11 N4: a --pre folder with several DICOM series: the CLI reads the largest 3D one
    and says which, naming the others (it read one without a word)."""
    from test_io import make_volume, write_dicom_series

    tumor = sitk.ReadImage(str(files / "tumor.nii.gz"))
    pre = make_volume(tumor.GetSize(), tumor.GetSpacing(), tumor.GetOrigin())
    write_dicom_series(pre, files / "study" / "a", description="T1 VIBE", modality="MR")
    localizer = make_volume((16, 16, 3), (1.5, 1.5, 3.0), seed=3)
    write_dicom_series(localizer, files / "study" / "b", description="localizer", modality="MR")
    args = ["margin", "--tumor", str(files / "tumor.nii.gz"), "--pre", str(files / "study")]
    args += ["--ablation", str(files / "ablation.nrrd"), "--ablation-label", "2"]
    assert cli.main([*args, "--transform", str(files / "T.tfm")]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: pre: ")]
    assert len(notes) == 1, notes
    assert "2 series in folder; loaded the largest 3D one" in notes[0]
    assert "T1 VIBE" in notes[0] and "localizer" in notes[0]
    # one series: nothing to choose, no note
    assert cli.main([*args[:4], str(files / "study" / "a"), *args[5:]]) == 0
    assert "note: pre:" not in capsys.readouterr().out
