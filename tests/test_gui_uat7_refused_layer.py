"""UAT s7 N7c: a label file opened into a case whose grid it does not fit is refused as the
tumor; it stays in the viewer (the user's layer) but is never offered as the tumor or the
ablation of a case of another grid, in the Margins widget's combos (run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry
from napari_ablation.core.case import Case
from napari_ablation.core.errors import AblationError
from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import MarginWidget
from napari_ablation.widgets.session import CaseSession


def _case(shape, spacing, origin) -> Case:
    rng = np.random.default_rng(len(shape) + int(spacing[0] * 10))
    z, y, x = (np.indices(shape).T * np.asarray(spacing)).T
    c = [n * s / 2 for n, s in zip(shape, spacing)]
    r = np.sqrt((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2)
    img = (60 + 40 * (r < 12) + rng.normal(0, 5, shape)).astype(np.float32)
    pre = geometry.image_from_array(img, spacing, origin)
    post = geometry.image_from_array(img, spacing, origin)
    tumor = geometry.image_from_array((r < 6).astype(np.uint8), spacing, origin)
    ablation = geometry.image_from_array((r < 12).astype(np.uint8), spacing, origin)
    return Case(pre=pre, post=post, tumor=tumor, ablation=ablation)


GRIDS = {
    "renal": ((20, 40, 40), (3.0, 1.0, 1.0), (-30.0, -20.0, -20.0)),
    "liver": ((24, 36, 36), (2.5, 1.2, 1.2), (-30.0, -21.6, -21.6)),
    "other": ((16, 44, 44), (4.0, 0.9, 0.9), (-32.0, -19.8, -19.8)),
}


@pytest.fixture(autouse=True)
def cases_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))


def _open(session, qtbot, name, tmp_path):
    session.set_case(_case(*GRIDS[name]), tmp_path / name)
    qtbot.waitUntil(
        lambda: (
            session.opening is None
            and not _layers.steps_pending()
            and session.labels_layer("tumor") is not None
        ),
        timeout=60000,
    )


def _offered(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_a_refused_layer_is_not_offered_for_a_case_of_another_grid(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer(show=True)
    session = CaseSession.of(viewer)
    margins = MarginWidget(viewer)
    viewer.window.add_dock_widget(margins, name="4. Margins")
    # the liver case's tumor, as a file the user opens into the renal case
    liver_tumor = tmp_path / "liver_files" / "tumor.nii.gz"
    liver_tumor.parent.mkdir()
    sitk.WriteImage(_case(*GRIDS["liver"]).tumor, str(liver_tumor))

    _open(session, qtbot, "renal", tmp_path)
    before = {ly.name for ly in viewer.layers}
    viewer.open(str(liver_tumor), plugin="napari-ablation")
    qtbot.waitUntil(lambda: len(viewer.layers) > len(before), timeout=30000)
    (refused,) = [ly for ly in viewer.layers if ly.name not in before]
    assert session.labels_layer("tumor") is not refused  # not used as the tumor
    assert session.labels_layer("tumor").name in _offered(margins.tumor_combo)
    for combo in (margins.tumor_combo, margins.ablation_combo):
        assert refused.name not in _offered(combo), _offered(combo)

    # the next case, of another grid: the user's layer stays, and is still not offered
    _open(session, qtbot, "other", tmp_path)
    assert refused in viewer.layers
    for combo in (margins.tumor_combo, margins.ablation_combo):
        assert refused.name not in _offered(combo), _offered(combo)
    margins.tumor_combo.setCurrentText(refused.name)  # not an item: nothing to choose
    assert session.labels_layer("tumor") is not refused
    with pytest.raises(AblationError, match="not on the pre image grid"):
        session.use_labels_layer(refused, "tumor")

    # the case whose grid it is on: there it may be chosen
    _open(session, qtbot, "liver", tmp_path)
    assert refused.name in _offered(margins.tumor_combo)
