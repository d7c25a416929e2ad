"""One MTM figure in the Margins results table, its CSV, the JSON and the Cohort table
(UAT s12 N8: a case at -8.125 mm read -8.13 in Margins and -8.12 in the Cohort table,
which rounded margins.csv's JSON figure a second time)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_margin import _spheres

from napari_ablation.core.margin import analyze_margin, json_figure
from napari_ablation.widgets.cohort import COLUMNS, cell_text


@pytest.fixture(scope="module")
def result():
    return analyze_margin(*_spheres())


@pytest.mark.parametrize("raw", [-8.125, -8.1246, -8.1254, 2.5, 0.0005, -0.0004, 3.14159])
def test_cohort_cell_shows_the_margins_table_figure(result, raw):
    res = dataclasses.replace(result, min_margin_mm=raw)
    shown = {f: v for f, v, _u in res.rows()}["Minimal treatment margin (MTM)"]
    fmt = next(c[2] for c in COLUMNS if c[0] == "min_margin_mm")
    # the Cohort table reads margins.csv, whose figure is the JSON's
    in_csv = str(json_figure(raw))
    assert cell_text(in_csv, fmt) == shown
    assert float(shown) == pytest.approx(raw, abs=5e-4) and np.isfinite(float(shown))
