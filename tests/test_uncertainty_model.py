"""The MTM interval in the case model (headless): its error source follows how the case
was registered, it is stale until recomputed, and a reopened case gives the same interval."""

from __future__ import annotations

import json

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
    assert not model.landmarks_changed_since_fit
    # a landmark moved after the fit (issue 8, UAT s6 D5): the transform is still the fit
    # of the landmarks as they were, so they stay its error source (the interval stays
    # current) and the model says the landmarks changed since the fit
    rows = model.landmarks
    rows["post"][0]["x"] += 1.0
    model.set_landmarks(rows)
    assert model.analysis_current and model.interval_current
    assert model.landmarks_changed_since_fit
    assert model.fitted_landmarks["post"][0]["x"] == rows["post"][0]["x"] - 1.0

    # saved and reopened (D8): the landmark fit comes back with the landmarks it was fitted
    # to, the same interval, and "changed since the fit" (the case's landmarks moved)
    model.save(tmp_path / "case")
    again = CaseModel()
    again.load_case(Case.load(tmp_path / "case"), tmp_path / "case", saved=True)
    assert again.transform_step.source == "landmarks"
    assert again.registration_error().kind == "landmarks"
    assert again.landmarks_changed_since_fit
    again.compute_analysis()
    assert again.compute_interval().uncertainty.interval_mm == pytest.approx(
        iv.uncertainty.interval_mm, abs=1e-6
    )
    rows = again.landmarks
    rows["post"][0]["x"] -= 1.0
    again.set_landmarks(rows)
    assert not again.landmarks_changed_since_fit

    # a landmark fit saved without its landmarks (older case folders): the case's
    # landmarks are its source while they still fit to it
    doc = json.loads((tmp_path / "case" / "case.json").read_text())
    del doc["registration"]["landmarks"]
    (tmp_path / "case" / "case.json").write_text(json.dumps(doc))
    old = CaseModel()
    old.load_case(Case.load(tmp_path / "case"), tmp_path / "case", saved=True)
    assert old.transform_step.source == "case"
    assert old.registration_error().kind == "stated"  # the moved landmark: not its fit
    old.set_landmarks(again.landmarks)
    assert old.registration_error().kind == "landmarks"

    # a manual adjustment: the reader's stated accuracy again
    again.set_transform(tfm.as_euler(again.transform), "manual")
    assert again.registration_error().kind == "stated" and not again.landmarks_changed_since_fit


def test_a_reopened_automatic_registration_keeps_its_spread(model, tmp_path):
    # an automatic registration with its spread (a covariance of (omega, t) about a centre)
    rng = np.random.default_rng(5)
    a = rng.normal(size=(6, 6)) * np.sqrt([1e-6] * 3 + [0.04] * 3)  # rad, mm
    cov = a @ a.T / 6
    centre = np.array([1.0, -2.0, 0.5])
    tx = tfm.euler_from_params({"center": [0, 0, 0], "parameters": [0.02, 0, -0.01, 1.5, 0, -1]})
    model.set_transform(tx, "automatic", error_covariance=cov, error_center=centre)
    assert model.registration_error().kind == "automatic"
    model.compute_analysis()
    before = model.compute_interval().uncertainty
    model.save(tmp_path / "case")

    again = CaseModel()
    again.load_case(Case.load(tmp_path / "case"), tmp_path / "case", saved=True)
    step = again.transform_step
    assert step.source == "automatic"
    np.testing.assert_allclose(step.error_covariance, cov, rtol=1e-12)
    np.testing.assert_allclose(step.error_center, centre, rtol=1e-12)
    assert again.registration_error().kind == "automatic"
    again.compute_analysis()
    after = again.compute_interval().uncertainty
    assert after.interval_mm == pytest.approx(before.interval_mm, abs=1e-9)
    assert after.sources == before.sources

    # a manual adjustment after reopening: the reader's accuracy, and the save says "manual"
    again.set_transform(tfm.as_euler(again.transform), "manual")
    again.save()
    assert Case.load(tmp_path / "case").registration == {"source": "manual"}


@pytest.mark.parametrize(
    "field, message",
    [
        ({"source": "guessed"}, "registration.source"),
        (
            {"source": "automatic", "error_covariance": [[1.0] * 6] * 5, "error_center": [0, 0, 0]},
            "registration.error_covariance",
        ),
        (
            {
                "source": "automatic",
                "error_covariance": (-np.eye(6)).tolist(),
                "error_center": [0, 0, 0],
            },
            "registration.error_covariance",
        ),
        (
            {"source": "automatic", "error_covariance": np.eye(6).tolist()},
            "registration.error_center",
        ),
    ],
)
def test_a_bad_registration_record_is_refused_in_one_line(model, tmp_path, field, message):
    import json

    model.save(tmp_path / "case")
    doc_path = tmp_path / "case" / "case.json"
    doc = json.loads(doc_path.read_text())
    doc["registration"] = field
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(Exception) as exc:
        Case.load(tmp_path / "case")
    assert type(exc.value).__name__ == "AblationError"
    assert message in str(exc.value) and "\n" not in str(exc.value)
