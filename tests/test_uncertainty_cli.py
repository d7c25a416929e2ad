"""``napari-ablation margin --uncertainty``: JSON keys of DESIGN section 5, summary line,
labels, bad input."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import coverage
from napari_ablation.core import margin as M

UNCERTAINTY_KEYS = {
    "min_margin_interval_mm",
    "p_min_margin_below_zero",
    "p_min_margin_below_threshold",
    "uncertainty_samples",
    "uncertainty_sources",
}
LINE = re.compile(
    r"^MTM -?\d+\.\d mm \(95 %: [+-]\d+\.\d to [+-]\d+\.\d; P\(MTM < 0\) = \d+\.\d %\)$",
    re.MULTILINE,
)


@pytest.fixture()
def files(tmp_path):
    """Tumor ball (r 8) on a 0.8 x 0.8 x 2 mm pre grid, ablation ball (r 11, centre 2 mm off) on a
    1 mm post grid shifted by +7 mm in y; landmarks on both with a little click noise."""
    c = np.array([1.0, -2.0, 3.0])
    tumor = M.sphere_image([50, 50, 20], [0.8, 0.8, 2.0], (c - [20, 20, 19]).tolist(), c, 8.0)
    shift = np.array([0.0, 7.0, 0.0])
    c_post = c + [0, 0, 2.0] + shift
    ablation = M.sphere_image([40, 40, 40], [1, 1, 1], (c_post - 19.6).tolist(), c_post, 11.0)
    sitk.WriteImage(tumor, str(tmp_path / "tumor.nii.gz"))
    sitk.WriteImage(ablation, str(tmp_path / "ablation.nii.gz"))
    sitk.WriteTransform(sitk.TranslationTransform(3, shift.tolist()), str(tmp_path / "T.tfm"))
    rng = np.random.default_rng(0)
    p = c + np.array([[40.0, 5, 10], [-35, 20, -5], [5, -45, 15], [10, 40, -20], [-20, -25, 40]])
    q = p + shift + rng.normal(0, 0.7, p.shape)
    for name, pts in (("pre.csv", p), ("post.csv", q)):
        rows = ["label,x,y,z"] + [f"{i},{x},{y},{z}" for i, (x, y, z) in enumerate(pts)]
        (tmp_path / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path


def _run(files, *extra):
    return cli.main(
        [
            "margin",
            "--tumor",
            str(files / "tumor.nii.gz"),
            "--ablation",
            str(files / "ablation.nii.gz"),
            "--transform",
            str(files / "T.tfm"),
            "--threshold",
            "3",
            *extra,
        ]
    )


def test_margin_uncertainty_writes_design_keys_summary_and_labels(files, capsys):
    out = files / "out"
    out.mkdir()  # the CLI writes into existing folders only
    rc = _run(
        files,
        "--uncertainty",
        "--fixed-points",
        str(files / "pre.csv"),
        "--moving-points",
        str(files / "post.csv"),
        "--registration-sd-mm",
        "0.5",
        "--samples",
        "60",
        "--seed",
        "4",
        "--json",
        str(out / "m.json"),
        "--margin-labels",
        str(out / "classes.nii.gz"),
        "--html",
        str(out / "m.html"),
        "--csv",
        str(out / "m.csv"),
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert LINE.search(printed), printed
    doc = json.loads((out / "m.json").read_text(encoding="utf-8"))
    assert set(doc) >= UNCERTAINTY_KEYS
    lo, hi = doc["min_margin_interval_mm"]
    assert lo < hi
    assert lo <= 1.0 <= hi
    assert doc["uncertainty_samples"] == 60
    assert 0.0 <= doc["p_min_margin_below_zero"] <= doc["p_min_margin_below_threshold"] <= 1.0
    assert doc["p_min_margin_below_threshold"] > 0.9  # threshold 3 mm, MTM 1 mm
    sources = doc["uncertainty_sources"]
    assert any(s.startswith("landmarks: 5 pairs") for s in sources)
    assert any(s.startswith("registration: stated accuracy, SD 0.5 mm") for s in sources)
    assert any(s.startswith("segmentation:") for s in sources)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "classes.nii.gz")))
    assert set(np.unique(labels)) <= {0, 1, 2, 3, coverage.UNCERTAIN_LABEL}
    assert doc["uncertain_volume_ml"] == pytest.approx(
        np.count_nonzero(labels == coverage.UNCERTAIN_LABEL) * 0.8 * 0.8 * 2.0 / 1000, abs=1e-4
    )
    table = (out / "m.csv").read_text(encoding="utf-8")
    rows = {r[0]: r[1] for r in csv.reader(io.StringIO(table))}
    assert float(rows["MTM 95 % interval, lower"]) == pytest.approx(lo, abs=0.006)
    assert float(rows["P(MTM < 0)"]) == pytest.approx(
        100 * doc["p_min_margin_below_zero"], abs=0.05
    )
    html = (out / "m.html").read_text(encoding="utf-8")
    assert "How sure is the MTM" in html and "histogram of sampled MTMs" in html


def test_same_seed_same_interval_and_zero_tolerance(files, capsys):
    docs = []
    for k in range(2):
        path = files / f"m{k}.json"
        assert (
            _run(
                files,
                "--uncertainty",
                "--registration-sd-mm",
                "0",
                "--boundary-mm",
                "0",
                "--samples",
                "20",
                "--json",
                str(path),
            )
            == 0
        )
        docs.append(json.loads(path.read_text(encoding="utf-8")))
    assert docs[0]["min_margin_interval_mm"] == docs[1]["min_margin_interval_mm"]
    lo, hi = docs[0]["min_margin_interval_mm"]
    assert lo == hi == docs[0]["min_margin_mm"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--uncertainty", "--samples", "0"], "--samples"),
        (["--boundary-mm", "1"], "needs --uncertainty"),
        (["--uncertainty", "--fixed-points", "pre.csv"], "--moving-points"),
        (["--uncertainty", "--registration-sd-mm", "-1"], "negative"),
    ],
)
def test_bad_uncertainty_options_are_one_line_and_write_nothing(files, capsys, extra, message):
    extra = [str(files / e) if e.endswith(".csv") else e for e in extra]
    rc = _run(files, *extra, "--json", str(files / "never.json"))
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (files / "never.json").exists()


def test_landmarks_that_do_not_match_the_registration_are_named(files, capsys):
    """Without --transform (identity) the landmark fit (a 7 mm shift) is another registration."""
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(files / "tumor.nii.gz"),
            "--ablation",
            str(files / "ablation.nii.gz"),
            "--uncertainty",
            "--fixed-points",
            str(files / "pre.csv"),
            "--moving-points",
            str(files / "post.csv"),
            "--samples",
            "20",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "the landmark fit and the registration differ by 7." in err
