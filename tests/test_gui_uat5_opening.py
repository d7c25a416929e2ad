"""UAT s5 (b2_renal_opening.png): while File > Open Sample opens another case, no figure of
the case being replaced is shown as if it were current, and the canvas says what opens
(run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest
from test_registration import TRUE, make_phantom

from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui

#: layers made from a case's analysis and registration (not its images, labels, landmarks)
FIGURES = ("margin", "ablation_registered", "mtm_point", "post_registered")


def drawn(layer) -> bool:
    """The layer draws something: visible, and not transparent (napari's "opaque" and
    "minimum" blendings draw a layer whatever its opacity)."""
    return layer.visible and (layer.opacity > 0 or layer.blending in ("opaque", "minimum"))


def test_open_sample_over_a_case_with_margins_shows_none_of_its_figures(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, reg = viewer.window.add_plugin_dock_widget("napari-ablation", "3. Register")
    _d, marg = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    session = marg.session
    _gui.fast_timers(session)
    pre, post, tumor, ice = make_phantom(TRUE)
    case = Case(pre=pre, post=post, tumor=tumor, ablation=ice, info={"name": "phantom"})
    session.set_case(case, tmp_path / "phantom")
    qtbot.waitUntil(lambda: session.labels_layer("ablation") is not None, timeout=60_000)
    reg.set_transform(TRUE, "file")
    _gui.click(qtbot, marg.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=120_000)
    qtbot.waitUntil(lambda: not _layers.steps_pending() and not reg.busy, timeout=60_000)
    assert all(_layers.find_layer(viewer, r) is not None for r in FIGURES)
    viewer.open_sample("napari-ablation", "liver_ct")  # File > Open Sample
    states = []

    def look():
        if session.opening is not None:
            figures = [
                _layers.role_of(ly)
                for ly in viewer.layers
                if drawn(ly) and _layers.role_of(ly) in FIGURES
            ]
            banner = _layers.text_overlay(viewer)
            states.append((figures, banner.visible, banner.text))
        return (
            session.model.pre is not None
            and session.model.pre.GetSize() == (224, 240, 36)
            and session.opening is None
            and not _layers.steps_pending()
        )

    qtbot.waitUntil(look, timeout=180_000)
    assert states, "the opening was never seen"
    for figures, banner_visible, text in states:
        assert not figures, figures  # no margin of the phantom over the opening liver case
        assert banner_visible and "opening" in text, text
    assert not _layers.text_overlay(viewer).visible  # open: the banner is gone
    assert _layers.find_layer(viewer, "margin") is None


def test_file_open_sample_while_a_case_opens_opens_it_next(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """File > Open Sample asked for while Load > Open sample is still opening another case
    is not refused: it opens once that case is open (as the Load widget queues its own)."""
    import SimpleITK as sitk

    from napari_ablation.core import samples

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, load = viewer.window.add_plugin_dock_widget("napari-ablation", "1. Load case")
    session = load.session
    _gui.fast_timers(session)

    def settled():
        return load._worker is None and session.opening is None and not _layers.steps_pending()

    with qtbot.capture_exceptions() as errors:
        load.open_sample("renal_mri", fresh=True)
        qtbot.waitUntil(lambda: settled() and len(viewer.layers) == 4, timeout=120_000)
        opened = []
        session.model.case_loaded.connect(
            lambda: session.model.folder and opened.append(session.model.folder.name)
        )
        load.open_sample("liver_ct", fresh=True)
        assert session.opening is not None
        viewer.open_sample("napari-ablation", "renal_mri")  # File > Open Sample, meanwhile
        qtbot.waitUntil(lambda: settled() and opened[-1:] == ["sample_renal_mri"], timeout=180_000)
        qtbot.wait(200)
    assert not errors, [str(e[1]) for e in errors]
    # both, in the order asked (the sample's working copy: the previous one, or a new one)
    assert [name.split("_")[1] for name in opened] == ["liver", "renal"], opened
    renal = sitk.ReadImage(str(samples.sample_dir() / "renal_mri" / "pre.nii.gz"))
    assert session.model.pre.GetSize() == renal.GetSize()
    assert sorted(_layers.role_of(ly) for ly in viewer.layers) == sorted(
        ["pre", "post", "tumor", "ablation"]
    )
    pre = _layers.find_layer(viewer, "pre")
    assert pre.data.shape == renal.GetSize()[::-1]
    assert session.labels_layer("tumor").data is session.model.labels("tumor")


def test_undo_after_another_case_opened_leaves_its_labels(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """Another case opened over one with a brush stroke reuses the tumor layer for its own
    labels (its data replaced, 20-40 ms, not a layer removed and added, 250-300 ms): Ctrl-Z
    then has nothing of the previous case to undo into the new labels."""
    import numpy as np

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, load = viewer.window.add_plugin_dock_widget("napari-ablation", "1. Load case")
    session = load.session
    _gui.fast_timers(session)

    def settled():
        return load._worker is None and session.opening is None and not _layers.steps_pending()

    with qtbot.capture_exceptions() as errors:
        load.open_sample("renal_mri", fresh=True)
        qtbot.waitUntil(lambda: settled() and len(viewer.layers) == 4, timeout=120_000)
        tumor = session.labels_layer("tumor")
        centre = np.argwhere(tumor.data > 0).mean(axis=0).round().astype(int)
        tumor.brush_size = 8
        tumor.paint(tuple(centre), 0)  # an erasing stroke (undoable: it would write 1s back)
        assert session.model.labels("tumor")[tuple(centre)] == 0
        load.open_sample("liver_ct", fresh=True)
        qtbot.waitUntil(
            lambda: settled() and session.model.pre.GetSize() == (224, 240, 36), timeout=120_000
        )
        layer = _layers.unwrapped(session.labels_layer("tumor"))
        assert layer is _layers.unwrapped(tumor)  # the same layer, with the liver's labels
        before = np.array(layer.data, copy=True)
        assert before.shape == (36, 240, 224)
        viewer.layers.selection.active = layer
        _gui.undo(viewer, qtbot)  # Ctrl-Z
        qtbot.wait(100)
    assert not errors, [str(e[1]) for e in errors]
    assert np.array_equal(layer.data, before)
    assert session.model.labels("tumor") is layer.data
