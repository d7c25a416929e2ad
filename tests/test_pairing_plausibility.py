"""The implausible-pairing rule (UAT s5, N9): a liver tumor with a renal ablation zone gave
"MTM = -192.6 mm" with exit 0 and no word. The rule lives once in core
(:func:`core.margin.pairing_warnings`) and reaches every output through the result's
warnings: the CLI summary and JSON, the Margins widget's status, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_ablation import cli
from napari_ablation.core import margin

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


def _ball(centre, r, n=200, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    return np.asarray(centre, float) + r * v / np.linalg.norm(v, axis=1, keepdims=True)


def test_pairing_rule_on_points():
    tumor = _ball((0, 0, 0), 10)
    assert margin.pairing_warnings(tumor, _ball((3, 0, 0), 20)) == []  # covers it
    assert margin.pairing_warnings(tumor, _ball((25, 0, 0), 12)) == []  # a miss by a few mm
    assert margin.pairing_warnings(tumor, _ball((0, 0, 40), 12)) == []  # boxes 18 mm apart
    far = margin.pairing_warnings(tumor, _ball((0, 180, 0), 15))
    assert len(far) == 1 and "implausible pairing" in far[0] and "180 mm apart" in far[0]
    assert margin.pairing_warnings(tumor, np.empty((0, 3))) == []


def test_cli_margin_of_a_liver_tumor_and_a_renal_ablation_warns(tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(SAMPLES / "liver_ct" / "tumor.nii.gz"),
            "--ablation",
            str(SAMPLES / "renal_mri" / "ablation.nii.gz"),
            "--json",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0  # a warning, not a refusal
    assert "warning: implausible pairing" in text
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert any("implausible pairing" in w for w in doc["warnings"])


def test_cli_margin_of_a_real_pair_has_no_pairing_warning(capsys):
    d = SAMPLES / "renal_mri"
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(d / "tumor.nii.gz"),
            "--ablation",
            str(d / "ablation.nii.gz"),
            "--transform",
            str(d / "true_transform.tfm"),
        ]
    )
    assert rc == 0 and "implausible" not in capsys.readouterr().out
