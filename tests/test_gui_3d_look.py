"""The 3D margin view follows napari's 2D/3D switch, whoever switches.

Run with ``xvfb-run -a python -m pytest tests/test_gui_3d_look.py``.

In 3D a radiologist sees the tumor surface coloured by margin, the ablation surface
translucent around it and the pre anatomy as the plane they were looking at; the voxel
layers the surfaces stand in for (tumor labels, margin classes, ablation outline) would
cover them as solid blocks and are hidden in 3D only; the raw post-space layers are hidden
in 3D unless the grid gives them their own cell. In 2D every layer gets its 2D look back.
The switch may come from napari's 2D/3D button, a script or the Margins widget's "3D
surfaces" button; it never changes the active layer, and never hides a layer for good.
"""

from __future__ import annotations

import _gui
import numpy as np

from napari_ablation.widgets import _layers
from napari_ablation.widgets.session import APPEARANCE_3D, SURFACE_ROLES

#: what the 2D/3D switch may change
LOOK = ("visible", "opacity", "rendering", "depiction", "contour")


def _look(layer):
    return {k: getattr(layer, k) for k in LOOK if hasattr(layer, k)}


def _looks(viewer):
    return {ly.name: _look(ly) for ly in viewer.layers}


def _colour_counts(shot):
    px = np.asarray(shot)[..., :3].reshape(-1, 3).astype(int)
    r, g, b = px[:, 0], px[:, 1], px[:, 2]
    return {
        "green": int(np.sum((g > r + 30) & (g > b + 30))),
        "yellow": int(np.sum((r > 150) & (g > 120) & (b < g - 60))),
        "red": int(np.sum((r > g + 60) & (r > b + 60))),
    }


def _settle(qtbot, ms=200):
    # the layers a switch adds come one per event-loop iteration (_layers.run_in_steps)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=30000)
    qtbot.wait(ms)


def test_3d_shows_the_surfaces_and_2d_gets_its_look_back(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1200, 800))
    with qtbot.capture_exceptions() as errors:
        session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
        tumor = session.labels_layer("tumor")
        viewer.layers.selection.active = tumor  # the user's choice
        _layers.grid(viewer).enabled = False  # one overlay
        w.center_on_mtm()
        _settle(qtbot)
        looks_2d = _looks(viewer)
        shot_2d = viewer.screenshot(str(tmp_path / "2d_before.png"), canvas_only=True, flash=False)

        def in_3d():
            assert viewer.dims.ndisplay == 3
            roles = {_layers.role_of(ly): ly for ly in viewer.layers}
            for role in SURFACE_ROLES:  # made on the switch, drawn in 3D
                assert role in roles and roles[role].visible, role
            for role in ("tumor", "margin", "ablation_registered", "post", "ablation"):
                assert not roles[role].visible, role  # stood in for, or raw post space
            assert roles["pre"].visible and roles["pre"].depiction == "plane"
            assert roles["mtm_point"].visible
            assert viewer.layers.selection.active is tumor

        def in_2d():
            assert viewer.dims.ndisplay == 2
            now = _looks(viewer)
            assert {k: now[k] for k in looks_2d} == looks_2d
            for ly in viewer.layers:
                if _layers.role_of(ly) in SURFACE_ROLES:
                    assert not ly.visible  # the surfaces are a 3D view
            assert viewer.layers.selection.active is tumor

        # napari's own 2D/3D button, a real click
        cam = _layers.camera(viewer)
        cam_2d = (tuple(cam.center), cam.zoom)
        _gui.toggle_ndisplay(viewer, qtbot)
        _settle(qtbot)
        in_3d()
        w.center_on_mtm()  # (the switch framed the tumor and the ablation zone)
        _settle(qtbot)
        shot_3d = viewer.screenshot(str(tmp_path / "3d.png"), canvas_only=True, flash=False)
        counts = _colour_counts(shot_3d)
        # the tumor surface coloured by margin (this case has all three classes), not hidden
        assert counts["green"] > 200 and counts["yellow"] > 200 and counts["red"] > 50, counts
        _gui.toggle_ndisplay(viewer, qtbot)
        _settle(qtbot)
        in_2d()
        cam.center, cam.zoom = cam_2d
        _settle(qtbot)
        # the same 2D picture as before the round trip
        again = viewer.screenshot(str(tmp_path / "2d_after.png"), canvas_only=True, flash=False)
        assert np.abs(np.asarray(again, float) - np.asarray(shot_2d, float)).mean() < 1.0

        # a script setting dims.ndisplay, a recompute in 3D (threshold): still the 3D look
        viewer.dims.ndisplay = 3
        _settle(qtbot)  # (each layer's look changes in its own event-loop iteration)
        in_3d()
        surface = next(ly for ly in viewer.layers if _layers.role_of(ly) == SURFACE_ROLES[0])
        limits = tuple(surface.contrast_limits)
        w.set_threshold(2.0)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        in_3d()
        assert tuple(surface.contrast_limits) != limits  # the surface follows the threshold
        # the user shows the tumor labels in 3D: a recompute leaves that alone
        tumor.visible = True
        w.set_threshold(3.0)
        qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120000)
        assert tumor.visible
        tumor.visible = False
        # the grid on: the raw post space has its own cell, drawn in 3D
        _layers.grid(viewer).enabled = True
        post = _layers.find_layer(viewer, "post")
        assert post.visible and post.depiction == "plane"
        _layers.grid(viewer).enabled = False
        assert not post.visible
        # the user deletes the tumor surface: the voxel layers it stood in for come back
        viewer.layers.remove(surface)
        for role in ("tumor", "margin"):
            assert _layers.find_layer(viewer, role).visible, role
        viewer.dims.ndisplay = 2
        _settle(qtbot)
        in_2d()

        # the Margins widget's "3D surfaces": the same look (the surface made again)
        _gui.click(qtbot, w.surface_btn)
        _settle(qtbot)
        in_3d()
        viewer.screenshot(str(tmp_path / "3d_surfaces.png"), canvas_only=True, flash=False)
        viewer.dims.ndisplay = 2
        _settle(qtbot)
        in_2d()
    assert not errors, [str(e[1]) for e in errors]


def test_the_3d_look_table_names_plugin_roles():
    """Every role with a 3D look is a plugin layer role (a typo would silently do nothing)."""
    known = set(_layers.ROLES) | set(SURFACE_ROLES)
    assert set(APPEARANCE_3D) <= known, set(APPEARANCE_3D) - known


def _picture_3d(html: str) -> np.ndarray:
    """The pixels of the report's 3D picture (a base64 PNG in the HTML)."""
    import base64
    import io

    from PIL import Image

    start = html.index('alt="3D view"')
    tag = html[html.rindex("<img", 0, start) : start]
    data = tag.split('src="', 1)[1].split('"', 1)[0].split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), float)


def test_gui_report_draws_the_same_3d_picture_as_the_cli(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, capsys
):
    """The GUI's HTML report and the CLI's report of the same case show the same 3D picture
    (the clean surface drawn headless, not a screenshot of the viewer's 3D view), whatever
    the viewer shows; the PDF is written too."""
    from napari_ablation import cli

    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    folder = tmp_path / "case"
    with qtbot.capture_exceptions() as errors:
        _session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
        w.show_3d()  # the viewer in 3D: the report does not depend on it
        w.export(tmp_path / "gui.html")
        w.export(tmp_path / "gui.pdf")
    assert not errors, [str(e[1]) for e in errors]
    assert (tmp_path / "gui.pdf").read_bytes().startswith(b"%PDF")
    args = ["margin", "--tumor", str(folder / "tumor.nii.gz")]
    args += ["--ablation", str(folder / "ablation.nii.gz")]
    args += ["--transform", str(folder / "transform.tfm"), "--html", str(tmp_path / "cli.html")]
    assert cli.main(args) == 0
    capsys.readouterr()
    gui = _picture_3d((tmp_path / "gui.html").read_text(encoding="utf-8"))
    ref = _picture_3d((tmp_path / "cli.html").read_text(encoding="utf-8"))
    assert gui.shape == ref.shape and gui.std() > 10
    assert np.abs(gui - ref).max() <= 2  # the same picture (up to rounding of the rendering)


def test_the_mtm_point_and_its_label_show_over_the_surfaces_in_3d(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """In 3D the minimal margin point lies on the tumor surface, inside the translucent
    ablation surface: the cross and its "MTM ... mm" label are drawn whole over both, as
    they are drawn alone (issue 8)."""
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1200, 800))
    with qtbot.capture_exceptions() as errors:
        _session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
        _layers.grid(viewer).enabled = False
        _gui.click(qtbot, w.surface_btn)  # "3D surfaces"
        _settle(qtbot)
        w.center_on_mtm()
        _layers.camera(viewer).zoom *= 3
        _settle(qtbot)
        point = _layers.find_layer(viewer, "mtm_point")
        assert point.visible and point.text.visible
        full = np.asarray(viewer.screenshot(str(tmp_path / "3d_mtm.png"), canvas_only=True))
        shown = {ly: ly.visible for ly in viewer.layers}
        for ly in viewer.layers:
            ly.visible = ly is point
        _settle(qtbot, 100)
        alone = np.asarray(viewer.screenshot(str(tmp_path / "3d_point.png"), canvas_only=True))
        for ly, vis in shown.items():
            ly.visible = vis
    assert not errors, [str(e[1]) for e in errors]
    # the white of the cross and of its label, drawn alone, is white in the full view too
    mark = np.all(alone[..., :3] > 230, axis=-1)
    assert mark.sum() > 300, mark.sum()  # a cross and a label
    kept = np.all(full[..., :3] > 230, axis=-1)[mark].mean()
    assert kept > 0.97, kept
