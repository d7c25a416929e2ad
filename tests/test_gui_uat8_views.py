"""UAT s7 N12f (run under xvfb-run): after napari's Roll (a sagittal view laid out for the
two grid cells) and the grid button, the image filled a third of the canvas: the view is
fitted to every new layout. A radiological coronal needed Roll + Transpose: the Load dock's
Display group offers the three radiological planes as one choice."""

from __future__ import annotations

import _gui
import numpy as np
import pytest

from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def _settle(qtbot, ms=400):
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    qtbot.wait(ms)


def _image_box_fraction(viewer, path) -> float:
    """How much of the canvas the images fill along their limiting axis (0..1), from a
    screenshot: the box of the rows / columns with bright grey (image) pixels; the yellow
    letters (and the dim grey of their anti-aliased edges) and black are not image, nor
    the sample's dark noisy rim (a fitted single sagittal image: 0.68)."""
    shot = np.asarray(viewer.screenshot(str(path), canvas_only=True, flash=False))[..., :3]
    rgb = shot.astype(int)
    grey = (rgb.max(axis=-1) > 80) & (rgb.max(axis=-1) - rgb.min(axis=-1) < 25)
    rows = np.nonzero(grey.sum(axis=1) >= 5)[0]
    cols = np.nonzero(grey.sum(axis=0) >= 5)[0]
    h, w = grey.shape
    return max((rows[-1] - rows[0] + 1) / h, (cols[-1] - cols[0] + 1) / w)


def test_roll_then_grid_off_fills_the_canvas(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_ablation.core import samples
    from napari_ablation.widgets.session import CaseSession

    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1400, 900))
    session = CaseSession.of(viewer)
    session.set_case(samples.load_sample("renal_mri"), tmp_path / "case")
    _settle(qtbot)
    grid = _layers.grid(viewer)
    assert grid.enabled  # pre | post side by side
    with qtbot.capture_exceptions() as errors:
        _gui.click(qtbot, viewer.window._qt_viewer.viewerButtons.rollDimsButton)
        _settle(qtbot)
        assert tuple(viewer.dims.order) == (2, 0, 1)  # sagittal
        rolled = _image_box_fraction(viewer, tmp_path / "rolled_grid.png")
        assert rolled > 0.6, rolled
        _gui.click(qtbot, viewer.window._qt_viewer.viewerButtons.gridViewButton)
        _settle(qtbot)
        assert not grid.enabled
        alone = _image_box_fraction(viewer, tmp_path / "rolled_no_grid.png")
        assert alone > 0.6, alone  # 0.68 fitted; 0.34 (a third) before
        _gui.click(qtbot, viewer.window._qt_viewer.viewerButtons.gridViewButton)
        _settle(qtbot)
        assert _image_box_fraction(viewer, tmp_path / "rolled_grid_again.png") > 0.6
    assert not errors, errors


def test_view_choice_gives_the_three_radiological_planes(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """Instead of Roll (+ Transpose for a radiological coronal), the Display group of the
    Load dock offers the three radiological planes as one choice; it names the plane shown
    and says so for a view that is none of them (transposed, 3D)."""
    from napari_ablation.widgets import orientation
    from napari_ablation.widgets.load import VIEW_3D, VIEW_TRANSPOSED

    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1400, 900))
    _d, load = viewer.window.add_plugin_dock_widget("napari-ablation", "1. Load case")
    load.open_sample("renal_mri")
    qtbot.waitUntil(lambda: load._worker is None and len(viewer.layers) == 4, timeout=120_000)
    _settle(qtbot)
    guide = orientation.install(viewer)
    combo = load.plane
    assert combo.currentText() == "axial"
    want = {  # the letters at (top, bottom, left, right) of each radiological view
        "axial": ("A", "P", "R", "L"),
        "coronal": ("S", "I", "R", "L"),
        "sagittal": ("S", "I", "A", "P"),
    }
    buttons = viewer.window._qt_viewer.viewerButtons
    with qtbot.capture_exceptions() as errors:
        for name in ("coronal", "sagittal", "axial", "coronal"):
            i = combo.findData(name)
            combo.setCurrentIndex(i)
            combo.activated.emit(i)  # what a user's pick emits
            _settle(qtbot)
            assert guide.radiological() is True, name
            letters = guide.letters()
            assert tuple(letters[e] for e in ("top", "bottom", "left", "right")) == want[name]
            frac = _image_box_fraction(viewer, tmp_path / f"plane_{name}.png")
            assert frac > 0.6, (name, frac)
        # napari's own buttons: the choice follows (blank when no radiological plane is shown)
        _gui.click(qtbot, buttons.transposeDimsButton)
        _settle(qtbot)
        assert combo.currentIndex() == -1 and guide.radiological() is False
        assert combo.placeholderText() == VIEW_TRANSPOSED  # says so, not blank (UAT s12 N7)
        combo.grab().save(str(tmp_path / "view_transposed.png"))
        _gui.click(qtbot, buttons.transposeDimsButton)
        _settle(qtbot)
        assert combo.currentText() == "coronal"
        # the docs' way with napari's buttons: Transpose then Roll from axial is coronal
        i = combo.findData("axial")
        combo.setCurrentIndex(i)
        combo.activated.emit(i)
        _settle(qtbot)
        _gui.click(qtbot, buttons.transposeDimsButton)
        _gui.click(qtbot, buttons.rollDimsButton)
        _settle(qtbot)
        assert combo.currentText() == "coronal" and guide.radiological() is True
        _gui.toggle_ndisplay(viewer, qtbot)
        _settle(qtbot)
        assert combo.currentIndex() == -1 and combo.placeholderText() == VIEW_3D
        combo.grab().save(str(tmp_path / "view_3d.png"))
        # a pick in 3D goes back to 2D, on that plane
        i = combo.findData("sagittal")
        combo.setCurrentIndex(i)
        combo.activated.emit(i)
        _settle(qtbot)
        assert viewer.dims.ndisplay == 2 and combo.currentText() == "sagittal"
        assert guide.radiological() is True
    assert not errors, errors
