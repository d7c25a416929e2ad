"""One clean line for a text file named .nrrd, and "registration:" said once in the GUI's
report line (UAT s5, N12)."""

from __future__ import annotations

import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.model import CaseModel
from napari_ablation.widgets.margin import NO_REGISTRATION, registration_summary, registration_text


def test_text_file_named_nrrd_is_one_clean_line(tmp_path, capsys):
    bad = tmp_path / "notes.nrrd"
    bad.write_text("hello\n", encoding="utf-8")
    rc = cli.main(["margin", "--tumor", str(bad), "--ablation", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and "sitk::" not in err and "ERROR:" not in err
    assert err.endswith("notes.nrrd: not a readable image (supported: NIfTI, NRRD, MHA/MHD, DICOM)")


def test_registration_is_named_once_in_the_report_line():
    m = CaseModel()
    assert registration_text(m) == NO_REGISTRATION
    tx = sitk.Euler3DTransform()
    tx.SetTranslation((1.0, 2.0, 2.0))
    m.set_transform(tx, "automatic")
    line = registration_summary(m)
    assert not line.lower().startswith("registration")
    assert line.startswith("automatic") and registration_text(m) == f"registration: {line}"
