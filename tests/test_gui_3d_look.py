"""The 3D look of the margin view follows napari's 2D/3D switch, whoever switches.

Run with ``xvfb-run -a python -m pytest tests/test_gui_3d_look.py``.

In 3D the ablation zone brought into pre space ("ablation outline (pre space)") would cover
the tumor and its margin classes as a solid voxel block; the session draws it translucent
in 3D and gives it its 2D look back in 2D, whether the user switches with napari's 2D/3D
button, a script sets ``viewer.dims.ndisplay``, or the Margins widget's "3D surfaces"
button does, and never changes the active layer or the layers' visibility.
"""

from __future__ import annotations

import _gui

from napari_ablation.core import samples
from napari_ablation.widgets import _layers
from napari_ablation.widgets.session import APPEARANCE_3D


def _outline_look(layer):
    return layer.rendering, float(layer.opacity)


def test_outline_is_translucent_in_3d_whoever_switches(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.session import CaseSession

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1200, 800)
    with qtbot.capture_exceptions() as errors:
        w = MarginWidget(viewer)
        viewer.window.add_dock_widget(w, name="Margins")
        session = CaseSession.of(viewer)
        session.set_case(samples.load_sample("renal_mri"), tmp_path / "case")
        assert w.load_transform_file(str(samples.sample_dir() / "renal_mri" / "true_transform.tfm"))
        w.run()
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        outline = _layers.find_layer(viewer, "ablation_registered")
        assert outline is not None
        look_2d = _outline_look(outline)
        want_3d = APPEARANCE_3D["ablation_registered"]
        assert look_2d != (want_3d["rendering"], want_3d["opacity"])
        tumor = session.labels_layer("tumor")
        viewer.layers.selection.active = tumor  # the user's choice
        visible = {ly.name: ly.visible for ly in viewer.layers}

        def check(ndisplay):
            assert viewer.dims.ndisplay == ndisplay
            if ndisplay == 3:
                assert _outline_look(outline) == (want_3d["rendering"], want_3d["opacity"])
            else:
                assert _outline_look(outline) == look_2d
            assert viewer.layers.selection.active is tumor
            shown = {ly.name: ly.visible for ly in viewer.layers if ly.name in visible}
            assert shown == visible

        # a script (or any widget) setting dims.ndisplay
        viewer.dims.ndisplay = 3
        check(3)
        viewer.dims.ndisplay = 2
        check(2)
        # napari's own 2D/3D button, a real click
        _gui.toggle_ndisplay(viewer, qtbot)
        check(3)
        _gui.toggle_ndisplay(viewer, qtbot)
        check(2)
        # a recompute in 3D keeps the 3D look (the layer's data is replaced in place)
        _gui.toggle_ndisplay(viewer, qtbot)
        w.set_threshold(3.0)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        check(3)
        _gui.toggle_ndisplay(viewer, qtbot)
        check(2)
        # the Margins widget's "3D surfaces": the same look, and the outline stays shown
        w.show_3d()
        assert _outline_look(outline) == (want_3d["rendering"], want_3d["opacity"])
        assert outline.visible
        assert viewer.layers.selection.active is tumor
        viewer.dims.ndisplay = 2
        assert _outline_look(outline) == look_2d
    assert not errors, [str(e[1]) for e in errors]
