"""A registration QA verdict belongs to the registration it was recorded for (UAT s7 N0):
the case model, case.json, the reports and the cohort read "not reviewed" for any other
registration, and the verdict comes back with the registration it was recorded for."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from test_model import _sphere_case

from napari_ablation.core import cohort, report, transform
from napari_ablation.core.case import (
    CASE_FILE,
    QA_TRANSFORM_KEY,
    Case,
    qa_for_transform,
    qa_record,
    qa_text,
    reviewed_at_text,
    same_registration,
)
from napari_ablation.core.errors import AblationError
from napari_ablation.model import CaseModel

T1 = transform.euler_from_matrix(np.eye(3), [1.0, 0.0, 0.0])
#: T1 nudged by 0.5 mm along x (one Alt+Right in the Manual tab)
T2 = transform.euler_from_matrix(np.eye(3), [1.5, 0.0, 0.0])


def _model(tx=T1) -> CaseModel:
    m = CaseModel()
    case = _sphere_case()
    case.transform = tx
    m.load_case(case)
    return m


def test_same_registration_is_the_same_map_not_the_same_parameters():
    # the same map with another rotation centre has other parameters
    a = transform.as_euler(T1, center=(0.0, 0.0, 0.0))
    b = transform.as_euler(T1, center=(30.0, -10.0, 5.0))
    assert a.GetCenter() != b.GetCenter() and same_registration(a, b)
    assert not same_registration(T1, T2)
    assert same_registration(None, transform.euler_from_matrix(np.eye(3), [0.0, 0.0, 0.0]))
    assert not same_registration(None, T1)


def test_a_verdict_is_for_its_registration_only():
    rec = qa_record("acceptable", "cortex aligned", T1)
    assert qa_for_transform(rec, T1)["verdict"] == "acceptable"
    other = qa_for_transform(rec, T2)
    assert other["verdict"] == "not reviewed" and other["comment"] == ""
    assert other["earlier"]["verdict"] == "acceptable"
    assert other["earlier"]["comment"] == "cortex aligned"
    text = qa_text(other)
    assert text.startswith("not reviewed for this registration")
    assert "acceptable" in text and "earlier registration" in text
    assert qa_text(qa_for_transform(rec, T1)) == "acceptable \u2014 cortex aligned"
    # the time it was recorded, read as a person writes it (UAT s8 N10b: a raw ISO time)
    stamp = reviewed_at_text(rec["reviewed_at"])
    assert stamp and stamp in text and rec["reviewed_at"] not in text
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", stamp), stamp
    # without a record of its registration (older case.json): taken as it stands
    assert qa_for_transform({"verdict": "acceptable", "comment": ""}, T2)["verdict"] == (
        "acceptable"
    )
    with pytest.raises(AblationError, match="QA verdict"):
        qa_record("great", "", T1)


def test_model_nudge_undo_redo_and_fit_take_the_verdict_away_and_back():
    m = _model()
    m.set_qa("acceptable", "checked")
    events = []
    m.qa_changed.connect(lambda: events.append(m.qa["verdict"]))
    assert m.qa_reviewed and m.qa["verdict"] == "acceptable"
    m.set_transform(T2, "manual")  # a nudge
    assert not m.qa_reviewed and m.qa["verdict"] == "not reviewed"
    assert m.qa["earlier"]["verdict"] == "acceptable"
    assert events == ["not reviewed"]
    m.undo_transform()  # back to the registration reviewed
    assert m.qa_reviewed and m.qa == {
        "verdict": "acceptable",
        "comment": "checked",
        "reviewed_at": m.qa_recorded["reviewed_at"],
    }
    m.redo_transform()
    assert m.qa["verdict"] == "not reviewed"
    m.undo_transform()
    m.set_transform(transform.euler_from_matrix(np.eye(3), [1.0, 0.2, 0.0]), "landmarks")
    assert m.qa["verdict"] == "not reviewed"
    m.reset_transform()
    assert m.qa["verdict"] == "not reviewed"
    # a verdict recorded now is for the registration in use
    m.set_qa("needs correction", "no registration")
    assert m.qa["verdict"] == "needs correction"
    m.undo_transform()
    assert m.qa["verdict"] == "not reviewed" and m.qa["earlier"]["verdict"] == "needs correction"


def test_case_json_keeps_the_link_and_reopens_not_reviewed(tmp_path):
    m = _model()
    m.set_qa("acceptable", "checked")
    m.set_transform(T2, "manual")
    folder = m.save(tmp_path / "case")
    doc = json.loads((folder / CASE_FILE).read_text(encoding="utf-8"))
    assert doc["qa"]["verdict"] == "acceptable"  # as recorded, with what it was for
    assert same_registration(transform.euler_from_params(doc["qa"][QA_TRANSFORM_KEY]), T1)
    back = CaseModel()
    back.load_case(Case.load(folder), folder, saved=True)
    assert back.qa["verdict"] == "not reviewed" and back.qa["earlier"]["verdict"] == "acceptable"
    # the cohort reads the verdict for the registration saved with the case
    assert cohort.case_folder_inputs(folder).qa_verdict == "not reviewed"
    # recorded for the saved registration: the cohort and a reopened case say so
    back.set_qa("acceptable", "again")
    back.save()
    assert cohort.case_folder_inputs(folder).qa_verdict == "acceptable"
    again = CaseModel()
    again.load_case(Case.load(folder), folder, saved=True)
    assert again.qa["verdict"] == "acceptable" and again.qa["comment"] == "again"


def test_an_old_case_json_without_the_link_opens_reviewed_until_the_registration_changes(
    tmp_path,
):
    case = _sphere_case()
    case.transform = T1
    case.qa = {"verdict": "acceptable", "comment": "old", "reviewed_at": "2026-01-01T00:00:00"}
    folder = case.save(tmp_path / "old")
    doc = json.loads((folder / CASE_FILE).read_text(encoding="utf-8"))
    assert QA_TRANSFORM_KEY not in doc["qa"]
    m = CaseModel()
    m.load_case(Case.load(folder), folder, saved=True)
    assert m.qa_reviewed and m.qa["verdict"] == "acceptable"
    assert cohort.case_folder_inputs(folder).qa_verdict == "acceptable"
    m.set_transform(T2, "manual")
    assert m.qa["verdict"] == "not reviewed" and m.qa["earlier"]["comment"] == "old"
    m.undo_transform()
    assert m.qa["verdict"] == "acceptable"


def test_a_bad_link_in_case_json_is_refused_naming_the_field(tmp_path):
    m = _model()
    m.set_qa("acceptable")
    folder = tmp_path / "case"
    m.save(folder)
    doc = json.loads((folder / CASE_FILE).read_text(encoding="utf-8"))
    doc["qa"][QA_TRANSFORM_KEY] = {"center": [0, 0], "parameters": [0] * 6}
    (folder / CASE_FILE).write_text(json.dumps(doc))
    with pytest.raises(AblationError, match=rf"qa\.{QA_TRANSFORM_KEY}\.center"):
        Case.load(folder)


def test_reports_say_the_verdict_was_for_an_earlier_registration():
    m = _model()
    m.set_qa("acceptable", "checked by QA reviewer")
    m.set_transform(T2, "manual")
    res = m.compute_analysis().result
    html = report.html_report(res, qa=m.qa)
    assert "not reviewed for this registration" in html
    assert "registration QA</td><td>acceptable" not in html
    pages = report.report_pages(res, qa=m.qa)
    blob = " ".join(" ".join(t.get_text() for fig in pages for t in fig.texts).split())
    assert "registration QA: not reviewed for this registration (acceptable" in blob
    assert "was recorded for an earlier registration)" in blob
    doc = report.json_document(res, {"registration_qa": m.qa}, transform=m.transform)
    assert doc["registration_qa"]["verdict"] == "not reviewed"
    assert doc["registration_qa"]["earlier"]["verdict"] == "acceptable"
