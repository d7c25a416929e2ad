"""Margin report: HTML and PDF pages, slice pictures through the MTM point, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import margin as M
from napari_ablation.core import report as R
from napari_ablation.core.errors import AblationError


@pytest.fixture(scope="module")
def res():
    c = np.zeros(3)
    tumor = M.sphere_image([41, 41, 41], [1, 1, 1], [-20.3] * 3, c, 10.0)
    ablation = M.sphere_image([61, 61, 61], [1, 1, 1], [-30.3] * 3, c + [4, 3, 8], 15.0)
    return M.analyze_margin(tumor, ablation)


def test_slice_planes_pass_through_the_mtm_point(res):
    planes = R.slice_planes(res)
    assert [p["name"] for p in planes] == ["axial", "coronal", "sagittal"]
    p = res.min_margin_point_lps  # x, y, z
    ax, co, sa = planes
    assert ax["point"] == pytest.approx((p[0], p[1]))  # (L, P)
    assert co["point"] == pytest.approx((p[0], p[2]))  # (L, S)
    assert sa["point"] == pytest.approx((p[1], p[2]))  # (P, S)
    # all three colours appear in the coronal plane (partial coverage from below)
    assert set(np.unique(co["classes"])) == {0, 1, 2, 3}
    assert co["ablation"].any() and not co["ablation"].all()


def test_html_and_pdf_reports(tmp_path, res):
    pre = (
        sitk.Cast(
            M.sphere_image([41, 41, 41], [1, 1, 1], [-20.3] * 3, [0, 0, 0], 12.0), sitk.sitkFloat32
        )
        * 100
    )
    info = {"case": "phantom", "modality": "MR"}
    qa = {"verdict": "acceptable", "comment": "cortex aligned"}
    html_path = R.write_report(tmp_path / "r.html", res, info=info, qa=qa, pre=pre)
    html = html_path.read_text(encoding="utf-8")
    assert "acceptable" in html and "cortex aligned" in html and "phantom" in html
    assert res.margin_text().replace("\u00b1", "&plusmn;") in html or res.margin_text() in html
    assert html.count("data:image/png;base64,") == 3  # slices, histogram, 3D view
    pdf = R.write_report(tmp_path / "r.pdf", res, info=info, qa=qa, pre=pre).read_bytes()
    assert (
        pdf.startswith(b"%PDF")
        and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") + pdf.count(b"/Type /Page>")
        >= 1
    )
    with pytest.raises(AblationError):
        R.write_report(tmp_path / "r.docx", res)
    assert not (tmp_path / "r.docx").exists()
    # only the two reports, no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.pdf"]


def test_slice_panels_are_radiological_with_letters(res):
    """A point right, anterior and superior of the MTM point is drawn top-left in every panel,
    and the edge letters are those of the viewer (one rule: core.orientation)."""
    fig = R.plot_slices(res)
    fig.canvas.draw()
    planes = {p["name"]: p for p in R.slice_planes(res)}
    x, y, z = res.min_margin_point_lps
    right_ant_sup = {"axial": (x - 5, y - 5), "coronal": (x - 5, z + 5), "sagittal": (y - 5, z + 5)}
    letters = {"axial": "ARLP", "coronal": "SRLI", "sagittal": "SAPI"}  # top, left, right, bottom
    for ax, name in zip(fig.axes, ("axial", "coronal", "sagittal")):
        mx, my = ax.transData.transform(right_ant_sup[name])
        cx, cy = ax.transData.transform(planes[name]["point"])  # the MTM point
        assert mx < cx and my > cy, name  # display y grows upwards
        shown = {t.get_text(): t.get_position() for t in ax.texts}
        top, left, right, bottom = letters[name]
        assert shown[top][1] > 0.9 and shown[bottom][1] < 0.1, name
        assert shown[left][0] < 0.1 and shown[right][0] > 0.9, name


def test_pdf_page_layout_wraps_and_nothing_overlaps(res):
    """A long description wraps inside the page, the text block ends above the panels, every
    axis (labels included) lies inside the page, and the page carries date, version and
    the research-tool notice (issue 8, point 11)."""
    info = {"name": "liver_ct", "description": "A long description of the case. " * 20}
    qa = {"verdict": "acceptable", "comment": "vessels aligned"}
    fig = R.report_page(
        res, info=info, qa=qa, transform_note="registration (automatic): tumor centre moved 6.3 mm"
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    page = fig.bbox
    texts = [t for t in fig.texts if t.get_text()]
    for t in texts:
        bb = t.get_window_extent(renderer)
        assert bb.x0 >= page.x0 and bb.x1 <= page.x1 and bb.y0 >= page.y0, t.get_text()[:40]
    block = next(t for t in texts if "description" in t.get_text())
    assert block.get_text().count("\n") > 4  # wrapped
    block_bb = block.get_window_extent(renderer)
    for ax in fig.axes:
        tight = ax.get_tightbbox(renderer)
        assert tight.x0 >= page.x0 - 1 and tight.x1 <= page.x1 + 1, "an axis label is clipped"
        assert tight.y1 < block_bb.y0, "a panel (or its title) overlaps the text block"
    # the figures table: label, value and unit columns of each half do not overlap
    cols = [
        t.get_window_extent(renderer)
        for t in texts
        if t.get_position()[1] < 0.4 and t.get_position()[1] > 0.05
    ]
    assert len(cols) == 6
    for i, bb in enumerate(cols):
        for other in cols[i + 1 :]:
            assert not bb.overlaps(other), "the figures table's columns overlap"
    footer = " ".join(t.get_text() for t in texts)
    assert "Research tool, not a medical device" in footer and "napari-ablation" in footer
    assert "Generated 20" in footer
    html = R.html_report(res, info=info, qa=qa)
    assert "Research tool, not a medical device" in html and "Generated 20" in html
