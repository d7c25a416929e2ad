"""The Register widget shows the predicted registration error at the tumor (mm, 95 %) and
its source, following how the current transform was made (run under xvfb-run)."""

from __future__ import annotations

import re

import _gui
import numpy as np
import pytest
from test_registration import TRUE, TUMOR_C, make_phantom

from napari_ablation.core import landmarks as lm
from napari_ablation.core import transform as tfm
from napari_ablation.core import uncertainty

FIGURE = re.compile(r"predicted error at the tumor: (\d+\.\d) mm \(95 %\), (\d+\.\d) mm RMS")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(TRUE)


@pytest.fixture
def widget(make_napari_viewer, phantom, tmp_path, monkeypatch):
    return _gui.register_on_phantom(make_napari_viewer, phantom, tmp_path, monkeypatch, show=False)


def _figure(w) -> tuple[float, float]:
    m = FIGURE.search(w.error_label.text())
    assert m, w.error_label.text()
    return float(m.group(1)), float(m.group(2))


def test_predicted_error_follows_the_registration_source(widget, qtbot):
    w, model = widget, widget.model
    c = model.tumor_centre_lps()
    # no registration: the assumed reader accuracy (SD 1 mm per axis: 95 % within 2.8 mm)
    p95, rms = _figure(w)
    assert "assumed reader accuracy" in w.error_label.text()
    assert p95 == pytest.approx(2.8, abs=0.15) and rms == pytest.approx(np.sqrt(3), abs=0.1)
    # a stated accuracy: the figure follows
    model.set_reader_sd(2.0)
    p95, _ = _figure(w)
    assert "stated reader accuracy" in w.error_label.text() and "SD 2 mm" in w.error_label.text()
    assert p95 == pytest.approx(5.6, abs=0.3)

    # landmarks: the fit's localisation error propagated to the tumor
    rng = np.random.default_rng(4)
    pts = TUMOR_C + np.array(
        [[40.0, 5, 10], [-35, 20, -5], [5, -45, 15], [10, 40, -20], [-20, -25, 40], [25, 10, -45]]
    )
    a0, b0 = tfm.matrix_offset(TRUE)
    fixed = {str(i): p + rng.normal(0, 0.7, 3) for i, p in enumerate(pts)}
    moving = {str(i): p @ a0.T + b0 + rng.normal(0, 0.7, 3) for i, p in enumerate(pts)}
    model.set_landmarks({"pre": lm.points_to_rows(fixed), "post": lm.points_to_rows(moving)})
    fit = lm.fit_landmarks(fixed, moving)
    model.set_transform(fit.transform, "landmarks", "6 pairs")
    p95, rms = _figure(w)
    assert "landmarks: 6 pairs" in w.error_label.text()
    want = uncertainty.registration_error_at(
        uncertainty.RegistrationError(
            landmarks=(fixed, moving),  # floored at a click's quantisation, as the model does
            landmark_spacings=(model.pre.GetSpacing(), model.post.GetSpacing()),
        ),
        c,
    )
    assert (p95, rms) == (round(want[1], 1), round(want[0], 1))
    # the closed form (Fitzpatrick) agrees with the resampled RMS within 15 %
    cov = uncertainty.landmark_covariance(fit, c)
    assert want[0] == pytest.approx(uncertainty.predicted_tre(cov, c, c), rel=0.15)

    # a manual adjustment: back to the reader's (stated) accuracy
    model.set_transform(fit.transform, "manual")
    assert "stated reader accuracy, manual registration" in w.error_label.text()

    # the automatic registration with its spread over restarts
    w.auto.run_automatic()
    qtbot.waitUntil(lambda: not w.busy, timeout=180000)
    step = model.transform_step
    assert step.source == "automatic" and step.error_covariance is not None
    assert step.error_covariance.shape == (6, 6)
    assert "spread of the automatic registration" in w.error_label.text()
    p95, rms = _figure(w)
    assert 0.0 <= rms <= p95 < 5.0
    # the same error model reaches the MTM interval
    assert model.registration_error().kind == "automatic"
