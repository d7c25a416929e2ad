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


OLD_KEY_DROPS = ("min_margin_interval_mm", "interval_sources")


def _old_key(key: dict) -> dict:
    """The same key as a key file written before MTM intervals existed."""
    import copy

    old = copy.deepcopy(key)
    for k in old["cases"].values():
        for name in OLD_KEY_DROPS:
            k.pop(name, None)
    return old


def test_an_old_key_scores_an_answer_as_a_new_key_does(tmp_path):
    """A key made before MTM intervals: the answer is scored against the interval a new key
    would hold (computed from the quiz's reference, as make_quiz does), not on the exact
    MTM only; the old key file still reads and is not rewritten (issue 8)."""
    import json

    made = quiz.make_quiz(tmp_path / "q", tmp_path / "key.json", n_synthetic=2, seed=5, small=True)
    key = quiz.read_key(tmp_path / "key.json")
    old_path = tmp_path / "old_key.json"
    old_path.write_text(json.dumps(_old_key(key)), encoding="utf-8")
    before = old_path.read_bytes()
    old = quiz.read_key(old_path)  # readable
    assert all("min_margin_interval_mm" not in k for k in old["cases"].values())
    answers = []
    for cid, k in key["cases"].items():
        lo, hi = k["min_margin_interval_mm"]
        inside = round(k["min_margin_mm"] + 0.6 * (hi - k["min_margin_mm"]), 2)
        assert inside != k["min_margin_mm"] and lo <= inside <= hi
        answers.append({"case": cid, "mtm_mm": inside})
        answers.append({"case": cid, "mtm_mm": round(hi + 1.0, 2)})  # outside
    for a in answers:
        q = made
        new_s = quiz.score_case(dict(a), key["cases"][a["case"]], 5.0)
        needs = "min_margin_interval_mm" not in old["cases"][a["case"]]
        qc = quiz._case_for_scoring(q, a["case"], a, old["cases"][a["case"]])
        assert (qc is not None) is needs  # once per case: then the key holds the interval
        old_s = quiz.score_case(dict(a), old["cases"][a["case"]], 5.0, quiz_case=qc)
        assert old_s["mtm_in_interval"] is new_s["mtm_in_interval"] is not None
        assert old_s["true"]["mtm_interval_mm"] == pytest.approx(
            new_s["true"]["mtm_interval_mm"], abs=2e-3
        )
        assert old_s["explanation"] == new_s["explanation"]
    assert quiz.INTERVAL_AT_SCORING in old["cases"]["case_01"]["interval_sources"]
    # the whole path (quiz score): the same summary with either key
    one_each = [answers[0], answers[3]]  # case_01 inside, case_02 outside
    new_sum = quiz.score_answers(made, key, one_each)["overall"]
    old_sum = quiz.score_answers(made, quiz.read_key(old_path), one_each)["overall"]
    assert old_sum == new_sum and new_sum["mtm_accuracy"] == 0.5
    assert old_path.read_bytes() == before  # the old key file is left as it was
