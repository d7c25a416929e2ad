"""The MTM interval and the 'uncertain' class in the Margins widget, on the renal MRI sample.

Run with ``xvfb-run -a python -m pytest tests/test_uncertainty_widget.py``.
"""

from __future__ import annotations

import re

import numpy as np
import SimpleITK as sitk

from napari_ablation.core import coverage, samples
from napari_ablation.widgets import _layers

LINE = re.compile(r"^MTM -?\d+\.\d mm \(95 %: [+-]\d+\.\d to [+-]\d+\.\d; P\(MTM < 0\) = \d+ %\)$")


def test_raised_registration_uncertainty_shows_interval_and_uncertain_class(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.session import CaseSession

    case = samples.load_sample("renal_mri")
    case.transform = sitk.ReadTransform(
        str(samples.sample_dir() / "renal_mri" / "true_transform.tfm")
    )
    viewer = make_napari_viewer(show=True)
    CaseSession.of(viewer).set_case(case, tmp_path / "case")
    w = MarginWidget(viewer)
    viewer.window.add_dock_widget(w, name="Margin")
    w.run()
    qtbot.waitUntil(
        lambda: _layers.find_layer(viewer, "margin") is not None and w._worker is None,
        timeout=60000,
    )
    assert w.uncertainty is None and w.interval.text() == ""
    lab = _layers.find_layer(viewer, "margin")
    assert coverage.UNCERTAIN_LABEL not in np.unique(lab.data)

    w.registration_sd.setValue(2.0)  # "I trust this registration to about 2 mm per axis"
    qtbot.waitUntil(lambda: w.uncertainty is not None and w._worker is None, timeout=60000)
    unc = w.uncertainty
    assert unc is not None and LINE.match(w.interval.text())
    lo, hi = unc.interval_mm
    assert lo < w.result.min_margin_mm < hi
    lab = _layers.find_layer(viewer, "margin")
    values = np.unique(lab.data)
    assert coverage.UNCERTAIN_LABEL in values
    n4 = np.count_nonzero(lab.data == coverage.UNCERTAIN_LABEL)
    assert abs(n4 * np.prod(lab.scale) / 1000 - unc.uncertain_volume_ml) < 1e-6
    # the fourth colour is the one of core/coverage, distinct from the three classes
    rgba = lab.colormap.map(np.array([coverage.UNCERTAIN_LABEL]))[0]
    assert np.allclose(rgba[:3], [0x00 / 255, 0x72 / 255, 0xB2 / 255], atol=0.01)
    assert "ml" in w.legend_labels[coverage.UNCERTAIN_LABEL].text()
    assert "P(MTM < 0)\t" in w.table_tsv() and w.table.rowCount() == len(w.result.rows()) + len(
        unc.rows()
    )
    # the uncertain voxels are on screen on the slice of the minimal margin (the cyan ablation
    # outline hidden: the only blue left is the uncertain class)
    w.center_on_mtm()
    _layers.find_layer(viewer, "ablation_registered").visible = False
    shot = viewer.screenshot(str(tmp_path / "uncertain.png"), canvas_only=True, flash=False).astype(
        int
    )
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    assert np.count_nonzero((b > r + 50) & (b > g + 20)) > 50
