"""UAT s9 N3: the report's slice panels and legend show the classes the screen shows,
the blue uncertain class included (one class list and colour table,
``core.coverage.legend_entries`` / ``MARGIN_LAYER_COLORS``; run under xvfb-run)."""

import html
import re

import _gui
import numpy as np

from napari_ablation.core import coverage, report
from napari_ablation.widgets import _layers


def test_report_panels_and_legend_carry_the_uncertain_class(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
    m = session.model
    unc = m.interval.uncertainty
    assert unc.uncertain_volume_ml > 0  # blue voxels on screen
    margin = _layers.find_layer(viewer, "margin")
    pre = _layers.find_layer(viewer, "pre")
    screen = _gui.margin_on_grid(margin, pre)
    assert (screen == coverage.UNCERTAIN_LABEL).any()
    # the screen's colour table is the report's
    for value, color in coverage.MARGIN_LAYER_COLORS.items():
        assert np.allclose(margin.colormap.map(value)[:3], coverage.hex_to_rgb(color), atol=0.01)
        assert report.CLASS_RGB[value] == coverage.hex_to_rgb(color)

    out = w.export(tmp_path / "report.html")
    doc = out.read_text(encoding="utf-8")
    legend = html.unescape(re.search(r"<span class=legend>(.*?)</span></p>", doc, re.S).group(1))
    for _value, color, title in coverage.legend_entries(m.threshold, uncertain=True):
        assert f'background:{color}"></span>{title}' in legend

    # each report panel holds the classes of the margin layer on the same slice
    planes = report.slice_planes(m.result, m.pre, uncertainty=unc)
    (z, y, x), _note = report.mtm_slices(m.result)
    for plane, cut in zip(planes, (screen[z], screen[:, y], screen[:, :, x])):
        shown = np.bincount(cut.ravel(), minlength=5)
        drawn = np.bincount(plane["classes"].ravel(), minlength=5)
        assert np.array_equal(shown[1:], drawn[1:]), (plane["name"], shown, drawn)
    assert any((p["classes"] == coverage.UNCERTAIN_LABEL).any() for p in planes)
    w.export(tmp_path / "report.pdf")
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
