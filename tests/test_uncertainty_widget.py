"""The MTM interval as part of the case model's analysis, in a real viewer on the renal MRI
sample: the Margins widget, its exports, the autosaved case and the CLI carry the same
interval; the 'uncertain' class appears when the registration uncertainty is raised.

Run with ``xvfb-run -a python -m pytest tests/test_uncertainty_widget.py``.
"""

from __future__ import annotations

import csv
import json
import re
from html import escape as html_escape

import _gui
import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import coverage, samples, uncertainty
from napari_ablation.core.case import Case
from napari_ablation.model import CaseModel
from napari_ablation.widgets import _layers

LINE = re.compile(
    r"^MTM -?\d+\.\d mm \(95 %: [+-]?\d+\.\d to [+-]?\d+\.\d; P\(MTM < 0\) = \d+\.\d %\)$"
)
SAMPLE = samples.sample_dir() / "renal_mri"


def _renal_case() -> Case:
    case = samples.load_sample("renal_mri")
    case.transform = sitk.ReadTransform(str(SAMPLE / "true_transform.tfm"))
    return case


def _wait_interval(qtbot, w, timeout=90000):
    qtbot.waitUntil(
        lambda: (
            w.model.interval_current
            and w.uncertainty is not None
            and w.uncertainty is w.model.interval.uncertainty
        ),
        timeout=timeout,
    )


def test_every_view_carries_the_same_interval_and_the_uncertain_class_shows(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, capsys
):
    from napari_ablation.widgets.margin import MarginWidget

    w = _gui.with_case(
        make_napari_viewer, tmp_path, monkeypatch, _renal_case(), MarginWidget, name="Margin"
    )
    viewer, session, model = w.viewer, w.session, w.model
    assert model.reader_sd_assumed and w.registration_sd.value() == pytest.approx(1.0)
    assert "assumed" in w.registration_sd_note.text()
    w.run()
    _wait_interval(qtbot, w)
    # the default: the reader accuracy assumed for a registration saved with the case, half a
    # voxel of boundary; the interval line and its sources under the MTM
    unc = w.uncertainty
    first, *sources = w.interval.text().split("\n")
    assert LINE.match(first) and first == unc.interval_text()
    assert any("assumed reader accuracy" in s and "SD 1 mm" in s for s in sources)
    assert any("half a voxel" in s for s in sources)
    lo, hi = unc.interval_mm
    assert lo <= w.result.min_margin_mm <= hi and hi - lo > 0.5
    # the same numbers as the core entry point the CLI uses (same inputs, same seed)
    ref = uncertainty.case_uncertainty(
        w.result,
        uncertainty.RegistrationError(sd_mm=1.0),
        ablation=model.label_grid("ablation"),
        transform=model.transform,
    )
    assert ref.interval_mm == pytest.approx(unc.interval_mm, abs=1e-9)

    # raise the registration uncertainty: stale-marked while it recomputes, then wider, with
    # the fourth colour in the margin layer
    w.registration_sd.setValue(3.0)
    assert not model.interval_current
    qtbot.waitUntil(lambda: "computing" in w.interval.text() or model.interval_current)
    _wait_interval(qtbot, w)
    unc3 = w.uncertainty
    assert unc3 is not unc and not model.reader_sd_assumed
    assert "stated reader accuracy" in w.interval.text() and "SD 3 mm" in w.interval.text()
    assert unc3.interval_mm[1] - unc3.interval_mm[0] > hi - lo
    lab = _layers.find_layer(viewer, "margin")
    n4 = np.count_nonzero(lab.data == coverage.UNCERTAIN_LABEL)
    assert n4 > 0
    assert abs(n4 * np.prod(lab.scale) / 1000 - unc3.uncertain_volume_ml) < 1e-6
    rgba = lab.colormap.map(np.array([coverage.UNCERTAIN_LABEL]))[0]
    assert np.allclose(rgba[:3], coverage.hex_to_rgb(coverage.UNCERTAIN_COLOR), atol=0.01)
    assert "ml" in w.legend_labels[coverage.UNCERTAIN_LABEL].text()
    assert "P(MTM < 0)\t" in w.table_tsv()
    assert w.table.rowCount() == len(w.result.rows()) + len(unc3.rows())
    # on screen: the uncertain (blue) voxels on the slice of the minimal margin (the cyan
    # ablation outline hidden: the only blue left is the uncertain class)
    w.center_on_mtm()
    _layers.find_layer(viewer, "ablation_registered").visible = False
    qtbot.wait(200)
    shot_path = tmp_path / "uncertain.png"
    shot = viewer.screenshot(str(shot_path), canvas_only=True, flash=False).astype(int)
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    assert np.count_nonzero((b > r + 50) & (b > g + 20)) > 50

    # exports from the GUI carry the interval (JSON keys of DESIGN section 5, CSV rows,
    # HTML / PDF report with the interval line and the sampled-MTM histogram)
    out = {suf: tmp_path / f"margins{suf}" for suf in (".json", ".csv", ".html", ".pdf")}
    for p in out.values():
        w.export_async(p)
    qtbot.waitUntil(
        lambda: all(p.exists() for p in out.values()) and not w.exporting, timeout=90000
    )
    doc = json.loads(out[".json"].read_text(encoding="utf-8"))
    for k, v in unc3.to_json_dict().items():
        assert doc[k] == v, k
    rows = {r[0]: r[1] for r in csv.reader(out[".csv"].read_text(encoding="utf-8").splitlines())}
    assert float(rows["MTM 95 % interval, lower"]) == pytest.approx(unc3.interval_mm[0], abs=0.01)
    html = out[".html"].read_text(encoding="utf-8")
    assert html_escape(unc3.interval_text()) in html and "histogram of sampled MTMs" in html
    assert "stated reader accuracy" in html
    assert out[".pdf"].read_bytes().startswith(b"%PDF")

    # the autosaved case holds the stated accuracy: reopened, it gives the same interval
    session.flush()
    saved = json.loads((tmp_path / "case" / "case.json").read_text(encoding="utf-8"))
    assert saved["settings"]["registration_sd_mm"] == 3.0
    again = CaseModel()
    again.load_case(Case.load(tmp_path / "case"))
    again.compute_analysis()
    assert again.compute_interval().uncertainty.interval_mm == pytest.approx(
        unc3.interval_mm, abs=1e-6
    )

    # the CLI on the same files, transform, stated accuracy and seed: the same numbers
    sitk.WriteTransform(model.transform, str(tmp_path / "T.tfm"))
    cli_json = tmp_path / "cli.json"
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(SAMPLE / "tumor.nii.gz"),
            "--ablation",
            str(SAMPLE / "ablation.nii.gz"),
            "--transform",
            str(tmp_path / "T.tfm"),
            "--uncertainty",
            "--registration-sd-mm",
            "3",
            "--seed",
            "0",
            "--json",
            str(cli_json),
        ]
    )
    assert rc == 0
    cdoc = json.loads(cli_json.read_text(encoding="utf-8"))
    assert cdoc["min_margin_interval_mm"] == pytest.approx(doc["min_margin_interval_mm"], abs=2e-3)
    assert cdoc["p_min_margin_below_zero"] == pytest.approx(
        doc["p_min_margin_below_zero"], abs=0.01
    )
    assert cdoc["uncertainty_samples"] == doc["uncertainty_samples"] == 200
    # one JSON document for both (UAT s4: the GUI's lacked "registered")
    assert doc["registered"] is True and cdoc["registered"] is True
    assert not set(cdoc) - set(doc) - {"inputs"}, set(cdoc) - set(doc)
    capsys.readouterr()
