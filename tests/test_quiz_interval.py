"""The MTM interval in the quiz key: an answer inside it counts as right (core/quiz.py)."""

from __future__ import annotations

import pytest

from napari_ablation.core import margin as M
from napari_ablation.core import quiz, uncertainty
from napari_ablation.core.case import Case


def _key(mtm=2.0, interval=(0.5, 3.5)):
    k = {
        "min_margin_mm": mtm,
        "min_margin_octant": "left-anterior-superior",
        "complete_coverage": mtm >= 0,
        "coverage_class": "yellow",
    }
    if interval is not None:
        k["min_margin_interval_mm"] = list(interval)
    return k


@pytest.mark.parametrize(
    ("answer", "inside"), [(2.0, True), (0.5, True), (3.5, True), (0.4, False), (4.0, False)]
)
def test_an_answer_inside_the_interval_counts_as_right(answer, inside):
    s = quiz.score_case({"case": "c", "mtm_mm": answer}, _key(), 5.0)
    assert s["mtm_in_interval"] is inside
    assert s["mtm_abs_error_mm"] == pytest.approx(abs(answer - 2.0))
    assert s["true"]["mtm_interval_mm"] == [0.5, 3.5]
    # 1.5 mm off but inside the interval: not the error the explanation names
    blamed = "You read" in s["explanation"]
    assert blamed is (not inside and abs(answer - 2.0) >= 1.0)


def test_summary_counts_mtm_answers_inside_the_interval():
    scores = [
        quiz.score_case({"case": "a", "mtm_mm": 3.0}, _key(), 5.0),  # inside
        quiz.score_case({"case": "b", "mtm_mm": 5.0}, _key(), 5.0),  # outside
        quiz.score_case({"case": "c", "mtm_mm": 2.0}, _key(interval=None), 5.0),  # old key
        quiz.score_case({"case": "d"}, _key(), 5.0),  # not answered
    ]
    assert [s["mtm_in_interval"] for s in scores] == [True, False, None, None]
    assert quiz.summarize(scores)["mtm_accuracy"] == 0.5


def test_key_interval_is_the_one_the_case_model_shows():
    """make_quiz writes the interval of the case model's default error model (assumed reader
    accuracy, half a voxel), shifted to the key's MTM."""
    tumor = M.sphere_image([30, 30, 12], (1.2, 1.2, 3.0), (-18.0, -18.0, -18.0), (0, 0, 0), 8.0)
    ablation = M.sphere_image([36, 36, 14], (1.2, 1.2, 3.0), (-21.0, -21.0, -21.0), (1, 0, 0), 11.0)
    case = Case(pre=tumor, post=ablation, tumor=tumor, ablation=ablation)
    res = M.analyze_margin(tumor, ablation, None, 5.0, with_shells=False)
    entry = quiz.key_interval(case, res, res.min_margin_mm + 0.25)
    unc = uncertainty.case_uncertainty(
        res,
        uncertainty.RegistrationError(sd_mm=uncertainty.DEFAULT_READER_SD_MM),
        tumor=tumor,
        ablation=ablation,
    )
    lo, hi = unc.interval_mm
    assert entry["min_margin_interval_mm"] == pytest.approx([lo + 0.25, hi + 0.25], abs=1e-3)
    assert any("assumed reader accuracy" in s for s in entry["interval_sources"])
    assert (
        entry["min_margin_interval_mm"][0]
        < res.min_margin_mm + 0.25
        < entry["min_margin_interval_mm"][1]
    )


def test_bundled_quiz_key_carries_intervals():
    key = quiz.Quiz.load(quiz.bundled_quiz_dir()).load_key()
    for k in key["cases"].values():
        lo, hi = k["min_margin_interval_mm"]
        assert lo < k["min_margin_mm"] < hi
        assert k["interval_sources"]
