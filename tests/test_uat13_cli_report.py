"""UAT s13 N9: the CLI's HTML/PDF report of a case drew its slice panels on black although
``--pre`` was given, and left out the "tumor centre moved X mm, rotation Y°" line that the
GUI's report shows. One case, one report: the CLI passes the pre image and the one
registration line to the report code the GUI uses."""

from __future__ import annotations

import base64
import html
import io
import json
import re

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import margin as M
from napari_ablation.core import report

#: the transform: 0.1 rad about S through the tumor centre, then 3 mm L and 4 mm P, so the
#: tumor centre moves exactly 5.0 mm and the rotation is 5.7 degrees
MOTION = "tumor centre moved 5.0 mm, rotation 5.7\u00b0"


@pytest.fixture()
def case(tmp_path):
    """Tumor (8 mm ball) on a 1 x 1 x 2 mm pre grid inside a bright organ on a dark
    background; ablation (14 mm ball) on a 1 mm post grid; T rotates and shifts."""
    c = np.array([2.0, -3.0, 4.0])
    size, spacing = [80, 80, 36], [1.0, 1.0, 2.0]
    origin = (c - [40, 40, 36]).tolist()
    tumor = M.sphere_image(size, spacing, origin, c, 8.0)
    organ = sitk.GetArrayFromImage(M.sphere_image(size, spacing, origin, c, 24.0)).astype("f4")
    rng = np.random.default_rng(0)
    pre = sitk.GetImageFromArray((50 + 900 * organ + rng.normal(0, 10, organ.shape)).astype("f4"))
    pre.CopyInformation(tumor)
    tx = sitk.Euler3DTransform(c.tolist(), 0.0, 0.0, 0.1, (3.0, 4.0, 0.0))
    # the ablation ball's centre is c + (4, 0, 0) in pre space: MTM = 14 - 8 - 4 = 2 mm on
    # the right, in the axial slice through the tumor centre
    c_post = np.asarray(tx.TransformPoint((c + [4.0, 0, 0]).tolist()))
    ablation = M.sphere_image([60, 60, 60], [1, 1, 1], (c_post - 30).tolist(), c_post, 14.0)
    for name, img in (("tumor", tumor), ("ablation", ablation), ("pre", pre)):
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    sitk.WriteTransform(tx, str(tmp_path / "T.tfm"))
    return tmp_path


def _run(case, *extra) -> int:
    args = ["margin", "--tumor", str(case / "tumor.nii.gz")]
    args += ["--ablation", str(case / "ablation.nii.gz"), "--threshold", "5", *extra]
    return cli.main(args)


def _slices_png(doc: str) -> np.ndarray:
    """The embedded slices picture of an HTML report, RGB floats 0..1."""
    import matplotlib.image as mpimg

    b64 = re.search(r'src="data:image/png;base64,([^"]+)" alt="slices through', doc)[1]
    return mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")[..., :3]


def _grey_under_classes(rgb: np.ndarray) -> np.ndarray:
    """The grey level under each pixel of a coverage class in the axial panel (the left third
    of the picture, above the legend): a class is drawn at alpha 0.75 over grey ``g``, so
    such a pixel is ``0.75 * colour + 0.25 * g`` in every channel."""
    h, w = rgb.shape[:2]
    axial = rgb[: int(0.75 * h), : w // 3].reshape(-1, 3).astype(float)
    tol = 2.5 / 255
    found = []
    for colour in report.CLASS_RGB.values():
        rest = axial - 0.75 * np.asarray(colour[:3], float)  # 0.25 * g in every channel
        grey = (np.ptp(rest, axis=1) < tol) & (rest.min(axis=1) > -tol)
        grey &= rest.max(axis=1) < 0.25 + tol
        found.append(4 * rest[grey].mean(axis=1))
    return np.concatenate(found)


def test_cli_report_shows_the_pre_anatomy_and_the_tumor_motion(case, capsys):
    out = case / "out"
    out.mkdir()
    rc = _run(
        case,
        "--pre",
        str(case / "pre.nii.gz"),
        "--transform",
        str(case / "T.tfm"),
        "--html",
        str(out / "r.html"),
        "--pdf",
        str(out / "r.pdf"),
        "--json",
        str(out / "r.json"),
    )
    assert rc == 0, capsys.readouterr().err
    doc = (out / "r.html").read_text(encoding="utf-8")
    # the registration line, as the GUI words it for a transform opened from a file
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", doc))
    assert html.unescape(rows["registration"]) == f"file, T.tfm; {MOTION}"
    assert json.loads((out / "r.json").read_text(encoding="utf-8"))["registration"] == (
        f"file, T.tfm; {MOTION}"
    )
    # the axial panel: the classes lie over the bright organ, not over black
    grey = _grey_under_classes(_slices_png(doc))
    assert grey.size > 200  # the tumor is drawn
    assert np.median(grey) > 0.6, np.percentile(grey, [5, 50, 95])
    assert (out / "r.pdf").read_bytes().startswith(b"%PDF")


def test_cli_report_line_is_the_guis(case):
    """The CLI's registration line is the one the GUI's report and widgets show."""
    from napari_ablation.core import io as core_io
    from napari_ablation.core import transform as tfm
    from napari_ablation.model import CaseModel
    from napari_ablation.widgets.margin import registration_summary

    out = case / "r.json"
    assert _run(case, "--transform", str(case / "T.tfm"), "--json", str(out)) == 0
    tumor = core_io.read_labels(case / "tumor.nii.gz", name="tumor")
    ablation = core_io.read_labels(case / "ablation.nii.gz", name="ablation")
    tx = tfm.read_rigid_transform(case / "T.tfm")
    m = CaseModel()
    m.set_transform(tx, "file", "T.tfm")
    gui = registration_summary(m, M.analyze_margin(tumor, ablation, tx, 5.0))
    assert json.loads(out.read_text(encoding="utf-8"))["registration"] == gui


def test_cli_report_without_pre_still_works_and_claims_no_anatomy(case, capsys):
    out = case / "r.html"
    assert _run(case, "--transform", str(case / "T.tfm"), "--html", str(out)) == 0
    doc = out.read_text(encoding="utf-8")
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", doc))
    assert html.unescape(rows["registration"]) == f"file, T.tfm; {MOTION}"
    assert "pre" not in rows  # no pre image named
    grey = _grey_under_classes(_slices_png(doc))
    assert grey.size > 200 and np.median(grey) < 0.02  # nothing drawn under the classes
    # and without a transform: the GUI's warning, no motion
    assert _run(case, "--html", str(out)) == 0
    rows = dict(re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", out.read_text("utf-8")))
    assert rows["registration"].startswith("NO REGISTRATION: identity transform")
    assert "moved" not in out.read_text(encoding="utf-8")
