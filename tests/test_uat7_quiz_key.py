"""The bundled quiz's key holds today's engine figures (issue 8, UAT s6): its
``engine_min_margin_mm`` and MTM interval are what a fresh analysis of each quiz case gives,
so a change of the margin engine cannot leave them stale silently (case_03 read -3.384 mm,
made by an older engine, against -3.531 mm today). Regenerate with
``python sample_data/make_quiz.py``."""

from __future__ import annotations

import pytest

from napari_ablation.core import quiz
from napari_ablation.core.margin import analyze_margin

BUNDLED = quiz.Quiz.load(quiz.bundled_quiz_dir())
KEY = BUNDLED.load_key()


def test_the_key_and_the_quiz_are_one_and_every_case_is_keyed():
    assert KEY["quiz_id"] == BUNDLED.quiz_id
    assert sorted(KEY["cases"]) == sorted(BUNDLED.case_ids)


@pytest.mark.parametrize("cid", BUNDLED.case_ids)
def test_the_keys_engine_figures_are_a_fresh_analysis_of_the_case(cid):
    entry = KEY["cases"][cid]
    case = BUNDLED.load_case(cid)  # the trainee's copy, as the Teach widget opens it
    res = analyze_margin(
        case.tumor, case.ablation, case.transform, KEY["threshold_mm"], with_shells=False
    )
    # a regenerated key says "engine_min_margin_mm: <this number>", not an older engine's
    assert entry["engine_min_margin_mm"] == pytest.approx(res.min_margin_mm, abs=6e-4)
    # the interval around the key's (exact) MTM is computed from the same analysis
    fresh = quiz.key_interval(case, res, entry["min_margin_mm"])
    assert entry["min_margin_interval_mm"] == pytest.approx(
        fresh["min_margin_interval_mm"], abs=2e-3
    )
    assert entry["interval_sources"] == fresh["interval_sources"]
    # the exact (analytic) MTM is within a voxel's reach of the engine's
    assert abs(entry["min_margin_mm"] - res.min_margin_mm) < 1.0
