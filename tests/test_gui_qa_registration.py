"""A registration QA verdict belongs to the registration it was recorded for, in a real
viewer (UAT s7 N0): after a manual nudge the QA tab, the Margins dock, the export warning,
the JSON / HTML / PDF exports and the reopened case.json say the registration in use was
not reviewed; the Register widget's Undo brings the verdict back.

Run with ``xvfb-run -a python -m pytest tests/test_gui_qa_registration.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import _gui
import pytest
from test_registration import TRUE, make_phantom

from napari_ablation.core.case import CASE_FILE, Case
from napari_ablation.model import CaseModel
from napari_ablation.widgets import _layers

EARLIER = "not reviewed for this registration"


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(TRUE)


def test_a_nudge_takes_the_verdict_away_everywhere_and_undo_brings_it_back(
    make_napari_viewer, phantom, tmp_path, monkeypatch, qtbot
):
    from napari_ablation.widgets.margin import MarginWidget

    w = _gui.register_on_phantom(make_napari_viewer, phantom, tmp_path, monkeypatch)
    viewer, m, qa = w.viewer, w.model, w.qa
    marg = MarginWidget(viewer)
    viewer.window.add_dock_widget(marg, name="Margins")
    _gui.fast_timers(w.session)
    warnings = []
    monkeypatch.setattr(_layers, "notify_warning", lambda msg, *a, **k: warnings.append(msg))
    w.set_transform(TRUE, "automatic")
    # the reviewer records a verdict in the QA tab
    w.tabs.setCurrentWidget(qa)
    qa.verdict.setCurrentText("acceptable")
    qa.comment.setText("checked by QA reviewer")
    _gui.click(qtbot, qa.record)
    assert qa.verdict_label.text().startswith("Recorded: acceptable")
    assert marg.qa_warning.isHidden()

    # a manual nudge (Alt+Right in the Manual tab): another registration
    w.tabs.setCurrentWidget(w.manual)
    keys = {str(k).replace(" ", ""): f for k, f in viewer.keymap.items()}
    keys["Alt+Right"](viewer)
    qtbot.waitUntil(lambda: m.transform_step.source == "manual", timeout=5000)
    assert not m.qa_reviewed
    for label in (qa.verdict_label, marg.qa_warning):
        assert EARLIER in label.text() and "acceptable" in label.text(), label.text()
        assert "earlier registration" in label.text()
    assert not marg.qa_warning.isHidden()

    # the exports say so (and the export warning names it)
    marg.run()
    qtbot.waitUntil(lambda: _gui.idle(w.session, marg), timeout=120000)
    out = {ext: marg.export(tmp_path / f"report.{ext}") for ext in ("json", "html", "pdf")}
    doc = json.loads(out["json"].read_text(encoding="utf-8"))
    assert doc["registration_qa"]["verdict"] == "not reviewed"
    assert doc["registration_qa"]["earlier"]["verdict"] == "acceptable"
    assert "not reviewed for this registration" in doc["case"]["warning"]
    assert EARLIER in out["html"].read_text(encoding="utf-8")
    if shutil.which("pdftotext"):
        pdf = subprocess.run(
            ["pdftotext", str(out["pdf"]), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert f"registration QA: {EARLIER}" in " ".join(pdf.split())
    assert warnings and all("for this registration" in x for x in warnings)

    # case.json: the verdict with the registration it was for; reopened, not reviewed
    qtbot.waitUntil(lambda: _gui.idle(w.session, marg), timeout=60000)
    saved = json.loads((w.session.folder / CASE_FILE).read_text(encoding="utf-8"))
    assert saved["qa"]["verdict"] == "acceptable" and saved["qa"]["for_transform"]
    reopened = CaseModel()
    reopened.load_case(Case.load(w.session.folder), w.session.folder, saved=True)
    assert reopened.qa["verdict"] == "not reviewed"
    assert reopened.qa["earlier"]["comment"] == "checked by QA reviewer"

    # Undo (Register's button) back to the registration reviewed: the verdict is back
    _gui.click(qtbot, w.undo_btn)
    assert m.transform_step.source == "automatic" and m.qa_reviewed
    assert qa.verdict_label.text().startswith("Recorded: acceptable")
    assert marg.qa_warning.isHidden()
    _gui.click(qtbot, w.redo_btn)
    assert EARLIER in qa.verdict_label.text() and not marg.qa_warning.isHidden()

    # a verdict that finds the registration in use wanting is said in Margins too
    w.tabs.setCurrentWidget(qa)
    qa.verdict.setCurrentText("needs correction")
    qa.comment.setText("rotation off")
    _gui.click(qtbot, qa.record)
    assert not marg.qa_warning.isHidden()
    assert marg.qa_warning.text() == "registration QA: needs correction \u2014 rotation off"
    qa.verdict.setCurrentText("acceptable")
    _gui.click(qtbot, qa.record)
    assert marg.qa_warning.isHidden()
