"""Cohort statistics: equality with lifelines / scipy run directly, ROC on a hand-checked
example, octant relations, and bad outcome tables (one line, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_ablation import cli
from napari_ablation.core import cohort_stats as cs
from napari_ablation.core.margin import OCTANTS


def _tables(n=40, seed=3, events=True):
    """A margins table and an outcomes table with risk falling with the MTM."""
    rng = np.random.default_rng(seed)
    mtm = rng.uniform(-6, 10, n).round(3)
    diam = (rng.uniform(15, 45, n) - 0.8 * mtm).round(2)
    vol = (np.pi / 6 * (diam / 10) ** 3).round(4)
    t = rng.exponential(1 / (0.03 * 0.77**mtm))
    c = rng.uniform(12, 48, n)
    ltp = (t <= c).astype(int) if events else np.zeros(n, int)
    months = np.minimum(t, c).round(2)
    ids = [f"c{i:03d}" for i in range(n)]
    octs = [OCTANTS[i % 8] for i in range(n)]
    margins = pd.DataFrame(
        {
            "case": ids,
            "error": "",
            "min_margin_mm": mtm,
            "tumor_max_diameter_mm": diam,
            "tumor_volume_ml": vol,
            "ablation_volume_ml": vol * 3,
            "min_margin_octant": octs,
        }
    )
    outcomes = pd.DataFrame(
        {
            "case": ids,
            "ltp": ltp,
            "months": months,
            "recurrence_octant": [o if e else "" for o, e in zip(octs, ltp)],
        }
    )
    return margins, outcomes


def _write(tmp: Path, margins, outcomes):
    m, o = tmp / "margins.csv", tmp / "outcomes.csv"
    margins.to_csv(m, index=False)
    outcomes.to_csv(o, index=False)
    return m, o


def test_cox_equals_lifelines_directly(tmp_path):
    from lifelines import CoxPHFitter

    margins, outcomes = _tables()
    m, o = _write(tmp_path, margins, outcomes)
    _stats, files = cs.write_stats(m, o, tmp_path / "report")
    s = json.loads((tmp_path / "report" / "stats.json").read_text(encoding="utf-8"))
    d = margins.merge(outcomes, on="case")
    d["tumor_max_diameter_cm"] = d["tumor_max_diameter_mm"] / 10
    for key, col in (
        ("min_margin_mm", "min_margin_mm"),
        ("tumor_max_diameter_cm", "tumor_max_diameter_cm"),
        ("tumor_volume_ml", "tumor_volume_ml"),
    ):
        ref = (
            CoxPHFitter()
            .fit(d[[col, "months", "ltp"]], duration_col="months", event_col="ltp")
            .summary.loc[col]
        )
        got = s["cox"][key]
        assert got["hazard_ratio"] == pytest.approx(ref["exp(coef)"], rel=1e-9)
        assert got["ci95"] == pytest.approx(
            [ref["exp(coef) lower 95%"], ref["exp(coef) upper 95%"]], rel=1e-9
        )
        assert got["p"] == pytest.approx(ref["p"], rel=1e-9)
    assert s["cox"]["min_margin_mm"]["hazard_ratio"] < 1  # risk falls with the margin
    assert s["n_cases"] == 40 and s["n_events"] == int(outcomes["ltp"].sum())
    for k in (
        "mann_whitney_min_margin_p",
        "spearman_margin_diameter",
        "roc",
        "fisher_margin_ge_1mm_p",
    ):
        assert k in s
    assert s["roc"]["auc"] > 0.5
    from scipy import stats as st

    ltp = d["ltp"].to_numpy()
    assert s["mann_whitney_min_margin_p"] == pytest.approx(
        st.mannwhitneyu(d["min_margin_mm"][ltp == 1], d["min_margin_mm"][ltp == 0]).pvalue
    )
    assert s["spearman_margin_diameter"]["rho"] == pytest.approx(
        st.spearmanr(d["min_margin_mm"], d["tumor_max_diameter_mm"])[0]
    )
    # every recurrence site is the MTM octant in this table
    conc = s["recurrence_site_concordance"]
    assert conc["n"] == s["n_events"] == conc["same"]
    names = {p.name for p in files}
    assert {"stats.json", "descriptive.csv", "report.html", *cs.PLOTS.values()} <= names
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 4
    desc = pd.read_csv(tmp_path / "report" / "descriptive.csv")
    mtm_ltp = desc[(desc["variable"] == "MTM (mm)") & (desc["group"] == "LTP")].iloc[0]
    assert mtm_ltp["median"] == pytest.approx(d["min_margin_mm"][ltp == 1].median())
    assert mtm_ltp["q3"] == pytest.approx(d["min_margin_mm"][ltp == 1].quantile(0.75))


def test_roc_hand_example():
    # LTP margins -3, 0.5 ; controls 0.5, 2, 4: pairs (ltp < ctrl) = 3 + 2 + tie/2 -> 5.5/6
    r = cs.roc_mtm([-3, 0.5, 0.5, 2, 4], [1, 1, 0, 0, 0])
    assert r["auc"] == pytest.approx(5.5 / 6)
    assert r["youden_cutoff_mm"] == pytest.approx(1.25)  # MTM < 1.25: sens 1, spec 2/3
    assert (r["sensitivity"], r["specificity"]) == (1.0, pytest.approx(2 / 3))


def test_octant_relations():
    assert cs.octant_relation("left-anterior-superior", "left-anterior-superior") == "same"
    assert cs.octant_relation("left-anterior-superior", "left-posterior-superior") == "adjacent"
    assert cs.octant_relation("left-anterior-superior", "right-posterior-superior") == "two_axes"
    assert cs.octant_relation("left-anterior-superior", "right-posterior-inferior") == "opposite"
    assert [cs.mtm_group(v) for v in (-0.1, 0.0, 4.99, 5.0)] == [
        "MTM < 0 mm",
        "MTM 0-5 mm",
        "MTM 0-5 mm",
        "MTM >= 5 mm",
    ]


def test_no_events_cox_not_estimable(tmp_path, capsys):
    margins, outcomes = _tables(events=False)
    m, o = _write(tmp_path, margins, outcomes)
    code = cli.main(
        ["cohort", "stats", "--results", str(m), "--outcomes", str(o), "--out", str(tmp_path / "r")]
    )
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    assert "Cox not estimable (no LTP event)" in out
    s = json.loads((tmp_path / "r" / "stats.json").read_text(encoding="utf-8"))
    assert s["n_events"] == 0
    assert s["cox"]["min_margin_mm"] == {
        "hazard_ratio": None,
        "ci95": [None, None],
        "p": None,
        "n": 40,
        "events": 0,
        "not_estimable": "no LTP event",
    }
    assert s["roc"]["auc"] is None and s["mann_whitney_min_margin_p"] is None


def test_unmatched_ids_are_listed(tmp_path, capsys):
    margins, outcomes = _tables()
    outcomes.loc[0, "case"] = "nobody"
    margins.loc[5, "error"] = "tumor mask t.nii.gz is empty"
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
    err = capsys.readouterr().err
    assert "1 outcome case id(s) match no margin result: nobody" in err
    assert "their margin analysis failed: c005" in err
    s = json.loads((tmp_path / "r" / "stats.json").read_text(encoding="utf-8"))
    assert s["cases"]["outcomes_without_result"] == ["nobody"]
    assert s["cases"]["results_without_outcome"] == ["c000"]
    assert s["n_cases"] == 38


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o.drop(columns=["months"]), "lacks the column(s) months"),
        (
            lambda o: o.assign(months=["soon"] + list(o["months"][1:])),
            "months is not a number for case(s) c000",
        ),
        (lambda o: o.assign(ltp=[2] + list(o["ltp"][1:])), "ltp must be 0 or 1"),
        (
            lambda o: o.assign(recurrence_octant=["north"] + [""] * (len(o) - 1)),
            "not an octant name",
        ),
    ],
)
def test_bad_outcomes_one_line_nothing_written(tmp_path, capsys, mutate, message):
    margins, outcomes = _tables()
    m, o = _write(tmp_path, margins, mutate(outcomes))
    code = cli.main(
        ["cohort", "stats", "--results", str(m), "--outcomes", str(o), "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
