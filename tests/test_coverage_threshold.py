"""The margin threshold: the coverage classes partition the tumor at every threshold the
plugin accepts, and a negative one (for which green and red would overlap) is refused with
one line everywhere (core, case model, case.json, CLI).

UAT s7 N1: ``margin --threshold -5`` printed green 99.9 % + red 10.6 %.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import coverage
from napari_ablation.core import margin as M
from napari_ablation.core.case import CASE_FILE, Case
from napari_ablation.core.errors import AblationError
from napari_ablation.model import CaseModel


def _phantom():
    """Tumor sphere r 8 mm; ablation sphere r 10 mm whose centre is 5 mm off along x: the
    tumor pokes 3 mm out of it (part red), the rest has margins from -3 to +7 mm."""
    c = np.array([0.0, 0.0, 0.0])
    tumor = M.sphere_image([40, 40, 40], [1, 1, 1], (c - 19.5).tolist(), c, 8.0)
    ablation = M.sphere_image([40, 40, 40], [1, 1, 1], (c - 19.5).tolist(), c + [5, 0, 0], 10.0)
    return tumor, ablation


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("thr")
    tumor, ablation = _phantom()
    sitk.WriteImage(tumor, str(d / "tumor.nii.gz"))
    sitk.WriteImage(ablation, str(d / "ablation.nii.gz"))
    return d


@pytest.mark.parametrize("t", [0.0, 2.0, 5.0, 30.0])
def test_classes_partition_the_tumor_at_every_accepted_threshold(t):
    res = M.analyze_margin(*_phantom(), None, t)
    f = res.volume_fraction
    assert f["uncovered"] > 0.01  # the phantom has a red part
    assert sum(f[k] for k in coverage.CLASS_KEYS) == pytest.approx(1.0, abs=1e-9)
    assert sum(res.volume_ml[k] for k in coverage.CLASS_KEYS) == pytest.approx(
        res.tumor_volume_ml, rel=1e-6
    )


@pytest.mark.parametrize("bad", [-5.0, -0.1, float("nan"), float("inf"), "x", None, True])
def test_the_rule_refuses_what_makes_classes_overlap(bad):
    with pytest.raises(AblationError, match="0 or more") as info:
        coverage.check_threshold(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(AblationError, match="0 or more"):
        M.analyze_margin(*_phantom(), None, bad)
    assert coverage.check_threshold(0) == 0.0 == coverage.THRESHOLD_MIN_MM


def test_model_refuses_a_negative_threshold_and_keeps_its_own():
    m = CaseModel()
    m.set_threshold(3.0)
    v = m.version("settings")
    with pytest.raises(AblationError, match="0 or more"):
        m.set_threshold(-2.0)
    with pytest.raises(AblationError, match="0 or more"):
        m.update_settings(threshold_mm=-1)
    assert m.threshold == 3.0 and m.version("settings") == v
    m.set_threshold(0)
    assert m.threshold == 0.0


def test_case_json_with_a_negative_threshold_is_refused_naming_the_field(tmp_path):
    pre = sitk.Image(8, 8, 4, sitk.sitkInt16)
    folder = Case(pre=pre, post=pre, settings={"threshold_mm": 3.0}).save(tmp_path / "c")
    doc = json.loads((folder / CASE_FILE).read_text(encoding="utf-8"))
    doc["settings"]["threshold_mm"] = -4.0
    (folder / CASE_FILE).write_text(json.dumps(doc))
    with pytest.raises(AblationError, match=r"settings\.threshold_mm.*0 or more"):
        Case.load(folder)


@pytest.mark.parametrize("value", ["-5", "-0.5"])
def test_cli_margin_refuses_a_negative_threshold_in_one_line(files, value, capfd):
    out = files / f"out{value}.json"
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(files / "tumor.nii.gz"),
            "--ablation",
            str(files / "ablation.nii.gz"),
            f"--threshold={value}",
            "--json",
            str(out),
        ]
    )
    captured = capfd.readouterr()
    assert rc == cli.EXIT_BAD_INPUT
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "0 or more" in err and "Traceback" not in err
    assert "green" not in captured.out and not out.exists()


def test_cli_margin_at_threshold_zero_partitions(files, capfd):
    out = files / "zero.json"
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(files / "tumor.nii.gz"),
            "--ablation",
            str(files / "ablation.nii.gz"),
            "--threshold",
            "0",
            "--json",
            str(out),
        ]
    )
    capfd.readouterr()
    assert rc == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    f = doc["volume_fraction"]
    assert doc["threshold_mm"] == 0.0 and f["insufficient_margin"] == 0.0
    assert sum(f.values()) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    "args",
    [
        ["cohort", "run", "--cases", "nowhere", "--out", "R", "--threshold", "-1"],
        ["quiz", "make", "--synthetic", "1", "--out", "Q", "--key", "k.json", "--threshold=-1"],
    ],
)
def test_cli_cohort_and_quiz_refuse_a_negative_threshold(args, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    rc = cli.main(args)
    err = capfd.readouterr().err.strip()
    assert rc == cli.EXIT_BAD_INPUT
    assert len(err.splitlines()) == 1 and "0 or more" in err
    assert not any(tmp_path.iterdir())
