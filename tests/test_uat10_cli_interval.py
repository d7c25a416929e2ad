"""UAT s10 N4: one case, two MTM intervals. The case model (the Margins widget) judges a
registration loaded from a file (or none) by the reader's accuracy, 1 mm SD assumed until
stated; ``margin --uncertainty --transform`` took the registration as exact ("0.00 mm
RMS") and called the same case "certainly incomplete" where the GUI said "complete coverage
possible". Both now take the error model from one rule
(``core.uncertainty.reader_accuracy``): the same interval, the same sources."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import margin as M
from napari_ablation.core.case import Case
from napari_ablation.model import CaseModel

SP = (1.2, 1.2, 3.0)


@pytest.fixture
def case(tmp_path):
    tumor = M.sphere_image([30, 30, 12], SP, (-18.0, -18.0, -18.0), (0, 0, 0), 8.0)
    ablation = M.sphere_image([36, 36, 14], SP, (-19.0, -21.0, -21.0), (3.5, 0, 0), 10.0)
    tx = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    sitk.WriteImage(tumor, str(tmp_path / "tumor.nii.gz"))
    sitk.WriteImage(ablation, str(tmp_path / "ablation.nii.gz"))
    sitk.WriteTransform(tx, str(tmp_path / "T.tfm"))
    return tmp_path, Case(pre=tumor, post=ablation, tumor=tumor, ablation=ablation)


def _gui_interval(case, transform, sd=None):
    """The interval the case model computes (what the Margins widget shows)."""
    folder, c = case
    m = CaseModel()
    m.load_case(c)
    if transform:
        m.set_transform(sitk.ReadTransform(str(folder / "T.tfm")), "file")
    m.update_settings(uncertainty_samples=80, uncertainty_seed=3)
    if sd is not None:
        m.set_reader_sd(sd)
    m.compute_analysis()
    return m.result.min_margin_mm, m.compute_interval().uncertainty


def _cli_interval(case, transform, *extra):
    folder, _c = case
    out = folder / "m.json"
    args = ["margin", "--tumor", str(folder / "tumor.nii.gz")]
    args += ["--ablation", str(folder / "ablation.nii.gz"), "--uncertainty"]
    args += ["--samples", "80", "--seed", "3", "--json", str(out), *extra]
    if transform:
        args += ["--transform", str(folder / "T.tfm")]
    assert cli.main(args) == 0
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("transform", "sd", "extra"),
    [(True, None, ()), (False, None, ()), (True, 2.0, ("--registration-sd-mm", "2"))],
)
def test_cli_interval_equals_the_case_models(case, capsys, transform, sd, extra):
    mtm, gui = _gui_interval(case, transform, sd)
    doc = _cli_interval(case, transform, *extra)
    assert doc["min_margin_mm"] == pytest.approx(mtm, abs=5e-4)  # JSON: rounded
    shown = gui.to_json_dict()
    for key in (
        "min_margin_interval_mm",
        "p_min_margin_below_zero",
        "p_min_margin_below_threshold",
        "uncertainty_sources",
        "registration_error_at_tumor_mm",
    ):
        assert doc[key] == shown[key], key
    registration = [s for s in doc["uncertainty_sources"] if s.startswith("registration:")]
    what = "registration from a file" if transform else "no registration"
    word = "assumed" if sd is None else "stated"
    assert len(registration) == 1 and f"{word} reader accuracy, {what}" in registration[0]
    assert f"SD {1.0 if sd is None else sd:g} mm per axis" in registration[0]
    assert "reader accuracy" in capsys.readouterr().out
