"""UAT s9 N7: the Teach reveal puts the view on the nearest slice holding (reference) tumor
voxels, as *Go to MTM* does (``core.report.mtm_slices``): on 3 mm slices the exact MTM
point of a cap lies beyond the last labelled slice, where the reference tumor and its
margin colours are absent (run under xvfb-run)."""

from __future__ import annotations

import json

import _gui
import numpy as np
import pytest
import SimpleITK as sitk
from qtpy.QtCore import Qt

from napari_ablation.core import quiz
from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def _cap_case(folder):
    """A tumor on 3 mm slices whose superior cap sticks out of the ablation zone: the MTM
    point lies 2.6 mm above the centre of the last slice holding tumor."""
    shape, sp, origin = (20, 60, 60), (1.0, 1.0, 3.0), (-30.0, -30.0, -30.0)
    z, y, x = np.meshgrid(
        np.arange(shape[0]) * 3 - 30.0,
        np.arange(shape[1]) - 30.0,
        np.arange(shape[2]) - 30.0,
        indexing="ij",
    )

    def image(arr):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(sp)
        img.SetOrigin(origin)
        return img

    pre = image(np.random.default_rng(0).normal(100, 10, shape).astype(np.float32))
    tumor = image(((x**2 + y**2 + (z - 1.3) ** 2) <= 10**2).astype(np.uint8))
    ablation = image(((x**2 + y**2 + (z + 6.0) ** 2) <= 15**2).astype(np.uint8))
    Case(
        pre=pre,
        post=pre,
        tumor=tumor,
        ablation=ablation,
        transform=sitk.Euler3DTransform(),
        info={"name": "cap"},
    ).save(folder)
    return sitk.GetArrayFromImage(tumor) != 0


def _settle(qtbot, teach, margins):
    _gui.teach_settled(qtbot, teach, margins, timeout=180_000)


def test_reveal_shows_the_nearest_slice_holding_tumor(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    tumor = _cap_case(tmp_path / "cap")
    quiz.make_quiz(
        tmp_path / "quiz",
        tmp_path / "key.json",
        cases=[tmp_path / "cap"],
        questions=["complete", "mtm"],
        include_key=True,
    )
    p3 = json.loads((tmp_path / "key.json").read_text(encoding="utf-8"))["cases"]["case_01"][
        "min_margin_point_lps"
    ]
    assert not tumor[round((p3[2] + 30.0) / 3.0)].any()  # the point's slice: no tumor
    viewer, margins, teach = _gui.teach_docks(make_napari_viewer)
    qtbot.keyClicks(teach.trainee, "resident")
    teach.open_quiz(tmp_path / "quiz")
    _settle(qtbot, teach, margins)
    teach.complete.setCurrentText("no")
    teach.mtm.clear()
    qtbot.keyClicks(teach.mtm, "-2")
    qtbot.mouseClick(teach.submit_btn, Qt.LeftButton)
    _settle(qtbot, teach, margins)
    pre = _layers.find_layer(viewer, "pre")
    k = int(np.round((viewer.dims.point[0] - pre.translate[0]) / pre.scale[0]))
    assert tumor[k].any(), f"the reveal shows pre slice {k}, which holds no tumor"
    assert "MTM point between slices, 2.6 mm above" in teach.status.text()
    viewer.window.screenshot(str(tmp_path / "reveal.png"))
