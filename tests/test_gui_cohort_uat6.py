"""UAT s6 D6: the Cohort widget's status follows the last job (an error goes once the
Statistics run works), and a Cox model with one LTP event is "not estimable (1 event)"
instead of a 95 % interval of twenty digits (run under xvfb-run)."""

from __future__ import annotations

import json
import math

import _gui
from test_cohort_stats import _tables, _write

from napari_ablation import cli


def test_statistics_after_an_error_with_one_event(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    # one local progression in five cases
    coh, oc = _gui.cohort_statistics_dock(
        make_napari_viewer, tmp_path, monkeypatch, [0, 1, 0, 0, 0]
    )
    results = tmp_path / "results"
    _gui.run_statistics(qtbot, coh)  # no outcomes file yet
    assert coh.status.text().startswith("error:")
    _gui.run_statistics(qtbot, coh, oc)
    assert not coh.status.text().startswith("error"), coh.status.text()
    assert "statistics written" in coh.status.text()
    text = coh.stats_text.text()
    assert "5 cases, 1 with LTP" in text and "Cox not estimable (1 event)" in text, text
    stats = json.loads((results / "stats" / "stats.json").read_text(encoding="utf-8"))
    cox = stats["cox"]["min_margin_mm"]
    assert cox["hazard_ratio"] is None and cox["not_estimable"] == "1 event"


def test_cli_says_not_estimable_with_one_event(tmp_path, capsys):
    margins, outcomes = _tables(n=8, seed=4)
    outcomes["ltp"] = [0, 0, 1, 0, 0, 0, 0, 0]
    m, o = _write(tmp_path, margins, outcomes)
    code = cli.main(
        ["cohort", "stats", "--results", str(m), "--outcomes", str(o), "--out", str(tmp_path / "r")]
    )
    out = capsys.readouterr().out
    assert code == 0 and "Cox not estimable (1 event)" in out
    # with two events the model is estimated, with a finite interval
    outcomes["ltp"] = [0, 0, 1, 0, 0, 1, 0, 0]
    m, o = _write(tmp_path, margins, outcomes)
    assert (
        cli.main(
            [
                "cohort",
                "stats",
                "--results",
                str(m),
                "--outcomes",
                str(o),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    cox = json.loads((tmp_path / "r" / "stats.json").read_text(encoding="utf-8"))["cox"][
        "min_margin_mm"
    ]
    assert cox["hazard_ratio"] is not None and all(math.isfinite(v) for v in cox["ci95"])
