"""The MTM interval in the case model (headless): its error source follows how the case
was registered, it is stale until recomputed, and a reopened case gives the same interval."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ablation.core import landmarks as lm
from napari_ablation.core import margin as M
from napari_ablation.core import transform as tfm
from napari_ablation.core.case import Case
from napari_ablation.model import CaseModel

SP = (1.2, 1.2, 3.0)


@pytest.fixture
def model():
    tumor = M.sphere_image([30, 30, 12], SP, (-18.0, -18.0, -18.0), (0, 0, 0), 8.0)
    ablation = M.sphere_image([36, 36, 14], SP, (-21.0, -21.0, -21.0), (1.5, 0, 0), 11.0)
    m = CaseModel()
    m.load_case(Case(pre=tumor, post=ablation, tumor=tumor, ablation=ablation))
    return m


def test_zero_noise_in_the_model_gives_the_exact_mtm(model):
    model.set_reader_sd(0.0)
    model.update_settings(boundary_mm=0.0)
    model.compute_analysis()
    assert not model.interval_current
    unc = model.compute_interval().uncertainty
    assert model.interval_current
    mtm = model.result.min_margin_mm
    assert unc.interval_mm == (mtm, mtm) and unc.p_below_zero == float(mtm < 0)


def test_source_follows_the_registration_and_a_reopened_case_agrees(model, tmp_path):
    # nothing registered: the assumed reader accuracy
    assert model.reader_sd_assumed
    err = model.registration_error()
    assert err.kind == "stated" and "assumed reader accuracy, no registration" in err.sd_source()
    model.compute_analysis()
    assumed = model.compute_interval().uncertainty
    # a stated accuracy is a setting: the analysis and its interval are stale until recomputed
    model.set_reader_sd(2.0)
    assert not model.analysis_current and not model.interval_current
    model.compute_analysis()
    wider = model.compute_interval().uncertainty
    assert np.ptp(wider.interval_mm) > np.ptp(assumed.interval_mm)
    assert any("stated reader accuracy" in s for s in wider.sources)

    # landmarks fitted: their localisation error
    rng = np.random.default_rng(2)
    pts = np.array(
        [[40.0, 5, 10], [-35, 20, -5], [5, -45, 15], [10, 40, -20], [-20, -25, 40], [25, 10, -45]]
    )
    fixed = {str(i): p + rng.normal(0, 0.5, 3) for i, p in enumerate(pts)}
    moving = {str(i): p + rng.normal(0, 0.5, 3) for i, p in enumerate(pts)}
    model.set_landmarks({"pre": lm.points_to_rows(fixed), "post": lm.points_to_rows(moving)})
    model.set_transform(lm.fit_landmarks(fixed, moving).transform, "landmarks", "6 pairs")
    assert model.registration_error().kind == "landmarks"
    model.compute_analysis()
    iv = model.compute_interval()
    assert any(s.startswith("landmarks: 6 pairs") for s in iv.uncertainty.sources)
    # a moved landmark makes the interval stale (its source changed), not the analysis
    rows = model.landmarks
    rows["post"][0]["x"] += 1.0
    model.set_landmarks(rows)
    assert model.analysis_current and not model.interval_current
    model.compute_interval()

    # saved and reopened: the transform is the landmarks' fit, so they stay its source
    model.save(tmp_path / "case")
    again = CaseModel()
    again.load_case(Case.load(tmp_path / "case"), tmp_path / "case", saved=True)
    assert again.transform_step.source == "case"
    assert again.registration_error().kind == "stated"  # the moved landmark: not its fit
    rows = again.landmarks
    rows["post"][0]["x"] -= 1.0
    again.set_landmarks(rows)
    assert again.registration_error().kind == "landmarks"
    again.compute_analysis()
    assert again.compute_interval().uncertainty.interval_mm == pytest.approx(
        iv.uncertainty.interval_mm, abs=1e-6
    )
    # a manual adjustment: the reader's stated accuracy again
    again.set_transform(tfm.as_euler(again.transform), "manual")
    assert again.registration_error().kind == "stated"
