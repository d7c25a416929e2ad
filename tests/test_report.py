"""Margin report: HTML and PDF pages, slice pictures through the MTM point, atomic writes."""

from __future__ import annotations

import re
import shutil
import subprocess

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


@pytest.fixture(scope="module")
def unc(res):
    from napari_ablation.core import uncertainty as U

    reg = U.translation_samples(
        1.0, 40, np.random.default_rng(1), res.tumor_centroid_lps, "registration (landmarks)"
    )
    return U.margin_uncertainty(res, reg, boundary_mm=0.5, seed=2)


#: the longest report the margin widget writes (its _report_kwargs) and the CLI's
LONG_GUI = {
    "info": {
        "name": "renal_mri_follow_up_" * 4,
        "title": "Renal cryoablation, left kidney, lower pole",
        "modality": "MR",
        "description": "A long description of the case and of the follow-up. " * 6,
        "case folder": "/home/user/cases/" + "nested/" * 12 + "case",
        "tumor layer": "tumor",
        "ablation layer": "ablation",
        "warning": "registration QA not reviewed: check the registration first",
    },
    "qa": {"verdict": "acceptable", "comment": "cortex and renal sinus aligned; " * 4},
    "transform_note": "registration (landmarks, 8 pairs): RMS residual 0.40 mm; predicted "
    "error at the tumor centre 0.9 mm; tumor centre moved 6.3 mm, rotation 2.1 deg",
}
CLI = {"info": {"tumor": "t.nii.gz", "ablation": "a.nii.gz", "transform": "identity"}}


def _page_boxes(fig):
    """Draw a page; return its texts' and axes' (with labels and titles) boxes in pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    r = canvas.get_renderer()
    texts = [(t.get_text(), t.get_window_extent(r)) for t in fig.texts if t.get_text().strip()]
    axes = [(a.get_position().bounds, a.get_tightbbox(r)) for a in fig.axes]
    return texts, axes


@pytest.mark.parametrize("kind", ["gui", "cli", "no interval"])
def test_pdf_pages_flow_without_overlap_or_loss(res, unc, kind):
    """Every block of the report (text, slices, histogram, 3D view, table, sampled MTMs,
    footer) lies inside its page and overlaps no other; the table is complete; a long
    report flows onto a second page (issue 8, point 11)."""
    kw = {"gui": LONG_GUI, "cli": CLI, "no interval": {}}[kind]
    pages = R.report_pages(res, uncertainty=None if kind == "no interval" else unc, **kw)
    assert len(pages) == (1 if kind == "no interval" else 2)
    cells = []
    for fig in pages:
        texts, axes = _page_boxes(fig)
        page = fig.bbox
        footer = [bb for s, bb in texts if "Research tool, not a medical device" in s]
        assert len(footer) == 1
        for s, bb in texts:
            assert bb.x0 >= page.x0 and bb.x1 <= page.x1, s[:40]
            assert bb.y0 >= page.y0 and bb.y1 <= page.y1, s[:40]
            assert bb is footer[0] or bb.y0 > footer[0].y1, f"{s[:40]!r} reaches the footer"
        for i, (s, bb) in enumerate(texts):
            for s2, bb2 in texts[i + 1 :]:
                assert not bb.overlaps(bb2), f"{s[:30]!r} overlaps {s2[:30]!r}"
            for _pos, ab in axes:
                assert not bb.overlaps(ab), f"{s[:40]!r} overlaps a panel"
        for i, (pos, ab) in enumerate(axes):
            assert ab.x0 >= page.x0 - 1 and ab.x1 <= page.x1 + 1 and ab.y0 > footer[0].y1
            for pos2, ab2 in axes[i + 1 :]:
                if pos2 != pos:  # a twin axes shares its host's box
                    assert not ab.overlaps(ab2), "two panels overlap"
        cells += [s for s, _bb in texts]
    rows = R.figure_rows(res, None if kind == "no interval" else unc)
    rows = [r for r in rows if r[0] != "Uncertainty source"]
    for label, _value, _unit in rows:
        assert cells.count(label) == 1, label
    # the interval's rows are named like the analysis's (one definition: core.coverage)
    assert not any("_" in r[0] for r in rows)
    if kind == "gui":
        block = next(s for s in cells if "A long description" in s)
        assert block.count("\n") > 4  # wrapped


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler's pdftotext")
@pytest.mark.parametrize("kind", ["gui", "cli"])
def test_pdf_text_has_every_row_once_and_a_footer_per_page(tmp_path, res, unc, kind):
    """What a reader of the PDF gets (pdftotext): every row of the table with its value
    exactly once, the footer on every page, no raw class keys."""
    kw = LONG_GUI if kind == "gui" else CLI
    path = R.write_report(tmp_path / "r.pdf", res, uncertainty=unc, **kw)
    pages = []
    for k in (1, 2, 3):
        out = subprocess.run(
            ["pdftotext", "-layout", "-f", str(k), "-l", str(k), str(path), "-"],
            capture_output=True,
            text=True,
            encoding="utf-8",  # whatever the locale (CI's may be ASCII)
        )
        if out.returncode:
            break
        pages.append(out.stdout)
    assert len(pages) == 2
    for text in pages:
        assert text.count("Research tool, not a medical device") == 1
    text = "\n".join(pages)
    for label, value, unit in R.figure_rows(res, unc):
        if label == "Uncertainty source":
            assert value in text.replace("\n    ", " ")  # in the text block, maybe wrapped
            continue
        pattern = r" +".join(re.escape(v) for v in (label, value, unit) if v)
        assert len(re.findall(pattern, text)) == 1, (label, value)
    assert "covered_with_margin" not in text and "insufficient_margin" not in text


def test_footer_and_html_notice(res):
    assert "Generated 20" in R.footer_line() and "napari-ablation" in R.footer_line()
    html = R.html_report(res, info={"name": "x"})
    assert "Research tool, not a medical device" in html and "Generated 20" in html


def test_3d_picture_shows_the_mtm_point_and_its_label(res, tmp_path):
    """The report's 3D picture shows the minimal margin point (white marker, black edge) and
    its MTM label over the tumor surface it lies on, not hidden behind it (issue 8)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from mpl_toolkits.mplot3d import proj3d

    fig = R.plot_surface_3d(res)
    fig.savefig(tmp_path / "3d.png")  # (a look at the picture)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    x2, y2, _ = proj3d.proj_transform(*res.min_margin_point_lps, ax.get_proj())
    col, row = ax.transData.transform((x2, y2))
    row = rgb.shape[0] - row
    r0, c0 = int(np.rint(row)), int(np.rint(col))
    near = rgb[r0 - 5 : r0 + 6, c0 - 5 : c0 + 6]
    white = np.all(near > 235, axis=-1)
    black = np.all(near < 60, axis=-1)
    assert white.sum() >= 6 and black.sum() >= 6, (white.sum(), black.sum())
    labels = [t.get_text() for t in ax.texts]
    assert f"MTM {res.min_margin_mm:.1f} mm" in labels


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]


def test_legend_says_whether_the_ablation_zone_was_registered(res):
    """UAT s12 N6: margins computed without a registration (the identity) are not called
    "registered" in the report's legend (HTML and PDF); with a transform they are."""
    c = np.zeros(3)
    tumor = M.sphere_image([41, 41, 41], [1, 1, 1], [-20.3] * 3, c, 10.0)
    ablation = M.sphere_image([61, 61, 61], [1, 1, 1], [-30.3] * 3, c + [4, 3, 8], 15.0)
    tx = sitk.Euler3DTransform()
    tx.SetTranslation((1.0, 0.0, 0.0))
    registered = M.analyze_margin(tumor, ablation, tx)
    for r, said, not_said in (
        (res, "ablation zone (not registered: identity)", "ablation zone (registered)"),
        (registered, "ablation zone (registered)", "not registered"),
    ):
        html = R.html_report(r)
        assert said in html and not_said not in html
        legend = _legend_texts(R.report_pages(r)[0])
        assert said in legend and not_said not in " ".join(legend)
    assert not res.registered and registered.registered
