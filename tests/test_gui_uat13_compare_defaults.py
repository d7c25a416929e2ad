"""UAT s13 N7: Segment > Compare offers segmentations only (not the margins' outputs) and
never defaults to a pair it refuses: with the tumor as A, B is another segmentation on the
tumor's grid, or none (tumor against ablation, on the pre and post grids, is always
refused). Run under xvfb-run."""

from __future__ import annotations

import _gui
import numpy as np
import pytest

from napari_ablation.core import segmentation as seg_core

pytestmark = pytest.mark.gui


def _items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_compare_defaults_to_a_pair_on_one_grid(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, _marg, seg = _gui.segment_on_sample(viewer, qtbot, tmp_path)
    tumor = session.labels_layer("tumor")
    with qtbot.capture_exceptions() as errors:
        # the margins' labels (margin, ablation outline in pre space) are not offered
        names = _items(seg.cmp_a)
        assert names == _items(seg.cmp_b)
        assert tumor.name in names and session.labels_layer("ablation").name in names
        assert not {"margin", "ablation outline (pre space)"} & set(names), names
        # A the tumor; B none (the ablation zone is on post's grid), saying why
        assert seg.cmp_a.currentText() == tumor.name
        assert seg.cmp_b.currentIndex() == -1 and "A's grid" in seg.cmp_b.placeholderText()
        _gui.click(qtbot, seg.compare_btn)
        assert seg.last_error is not None and "one grid" in seg.last_error
        assert "\n" not in seg.last_error
        # a second reader's tumor on the tumor's grid: B by default, and Compare runs
        second = seg_core.grow_shrink(np.asarray(tumor.data) != 0, tuple(tumor.scale), 1.5)
        viewer.add_labels(
            second.astype(np.uint8),
            name="second reader",
            scale=tumor.scale,
            translate=tumor.translate,
        )
        qtbot.wait(200)
        assert (seg.cmp_a.currentText(), seg.cmp_b.currentText()) == (tumor.name, "second reader")
        _gui.click(qtbot, seg.compare_btn)
        qtbot.waitUntil(lambda: seg.last_comparison is not None, timeout=60_000)
        assert 0.5 < seg.last_comparison["dice"] < 1.0
        # the user's own choice of B stays, also when it is refused
        seg.cmp_b.setCurrentText(session.labels_layer("ablation").name)
        viewer.add_labels(np.zeros((4, 4, 4), np.uint8), name="scratch")
        qtbot.wait(200)
        assert seg.cmp_b.currentText() == session.labels_layer("ablation").name
    assert not errors, errors
