"""UAT s8 N2 (issue 8): pre and post with other slices (pre 3 mm, post 2.5 mm) share one
slider, which steps on the finest grid. A landmark clicked on an image lies on the slice
of that image the user sees (its through-plane coordinate at that slice's centre, in-plane
where clicked), in every dims order, for clicks and for points added through the layer;
the QA crosshair takes the same rule (run under xvfb-run)."""

from __future__ import annotations

import _gui
import numpy as np
import pytest
import SimpleITK as sitk
from qtpy.QtTest import QTest

from napari_ablation.core import geometry
from napari_ablation.core import transform as tfm
from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers

#: LPS (x, y, z): voxel size and first voxel centre of pre and post; post = pre + SHIFT
PRE_SPACING, PRE_ORIGIN, PRE_SIZE = (1.5, 1.5, 3.0), (-30.0, -30.0, 0.0), (40, 40, 18)
POST_SPACING, POST_ORIGIN, POST_SIZE = (1.25, 1.25, 2.5), (-29.0, -29.0, 1.0), (48, 48, 22)
SHIFT = np.array([2.0, -1.0, 0.5])
#: anatomical points (pre LPS) at the centre of a pre slice whose partner (+SHIFT) is at the
#: centre of a post slice; the slider's nearest position shows both slices, but is not
#: their depth (17.5 shows pre z 18 and post z 18.5)
PAIRS = [(0.0, 0.0, 3.0), (12.0, 0.0, 18.0), (0.0, 12.0, 33.0), (-10.0, -8.0, 18.0)]


def _image(size, spacing, origin, seed):
    rng = np.random.default_rng(seed)
    arr = rng.normal(100.0, 5.0, size[::-1]).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def _case():
    pre = _image(PRE_SIZE, PRE_SPACING, PRE_ORIGIN, 1)
    post = _image(POST_SIZE, POST_SPACING, POST_ORIGIN, 2)
    idx = np.indices(PRE_SIZE[::-1]).astype(float)
    pts = np.stack([PRE_ORIGIN[2 - a] + PRE_SPACING[2 - a] * idx[a] for a in range(3)], -1)
    tumor = np.linalg.norm(pts - np.array([18.0, 0.0, 0.0]), axis=-1) <= 6.0  # (z, y, x)
    return Case(
        pre=pre,
        post=post,
        tumor=geometry.like(tumor.astype(np.uint8), pre),
        info={"name": "other slices"},
    )


@pytest.fixture
def widget(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    from napari_ablation.widgets.register import RegisterWidget

    w = _gui.with_case(
        make_napari_viewer, tmp_path, monkeypatch, _case(), RegisterWidget, name="Register"
    )
    _gui.grid_off(w.viewer, qtbot)  # the overlay: one canvas, one view
    return w


def _slider_to(v, world_zyx) -> None:
    """Move every slider the view steps through to its position nearest ``world_zyx`` (the
    user drags the slider: it stops on its own steps only)."""
    for ax in v.dims.not_displayed:
        rng = v.dims.range[ax]
        v.dims.set_current_step(ax, round((world_zyx[ax] - rng.start) / rng.step))


def _shown_centre(img: sitk.Image, world_zyx, axes) -> np.ndarray:
    """The world point with its ``axes`` at the centre of ``img``'s slice drawn at
    ``world_zyx`` (the voxel index rounded, as napari slices an image)."""
    out = np.array(world_zyx, float)
    sp, org = np.array(img.GetSpacing())[::-1], np.array(img.GetOrigin())[::-1]
    for a in axes:
        out[a] = org[a] + sp[a] * np.round((out[a] - org[a]) / sp[a])
    return out


def _landmark_layers(w, qtbot):
    _gui.click(qtbot, w.landmarks.add_btn)
    v = w.viewer
    qtbot.waitUntil(lambda: _layers.find_layer(v, "landmarks_post") is not None, timeout=20000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=20000)
    return _layers.find_layer(v, "landmarks_pre"), _layers.find_layer(v, "landmarks_post")


def _world_of(layer, i: int) -> np.ndarray:
    return np.asarray(layer.data[i], float) * np.asarray(layer.scale) + np.asarray(layer.translate)


def test_clicked_landmarks_lie_on_the_slices_shown_and_the_fit_finds_the_shift(widget, qtbot):
    w, v = widget, widget.viewer
    pre_img, post_img = w.image("pre"), w.image("post")
    lm_pre, lm_post = _landmark_layers(w, qtbot)
    for pre_lps in PAIRS:
        for layer, img, lps in (
            (lm_pre, pre_img, np.array(pre_lps)),
            (lm_post, post_img, np.array(pre_lps) + SHIFT),
        ):
            world = geometry.lps_to_world(lps)
            _slider_to(v, world)
            slider = v.dims.point[0]
            # the test's own premise: the slider is not at the point's depth, yet the slice
            # of this image drawn there is the point's slice
            assert abs(slider - world[0]) >= 0.4
            assert _shown_centre(img, [slider, 0, 0], [0])[0] == pytest.approx(world[0])
            v.layers.selection.active = layer
            layer.mode = "add"
            _gui.click_at(v, qtbot, world)
            got = _world_of(layer, -1)
            assert got[0] == pytest.approx(world[0], abs=1e-9)  # the slice seen, not the slider
            assert np.allclose(got[1:], world[1:], atol=0.35)  # in-plane: where clicked
    pre, post = w.landmarks.points()
    assert len(pre) == len(post) == len(PAIRS)
    _gui.click(qtbot, w.landmarks.fit_btn)
    qtbot.waitUntil(lambda: not w.busy, timeout=20000)
    t = w.transform
    assert t is not None
    rotation_deg = np.degrees(np.abs(np.asarray(t.GetParameters()[:3]))).max()
    assert rotation_deg < 0.5, t.GetParameters()
    probe = np.array([[0.0, 0.0, 18.0], [20.0, 20.0, 40.0]])
    moved = tfm.transform_points(t, probe) - probe
    # the through-plane shift exactly (it was 0 with the slider's depth), in-plane to a pixel
    assert np.allclose(moved[:, 2], SHIFT[2], atol=0.1), moved
    assert np.allclose(moved, SHIFT, atol=0.4), moved


@pytest.mark.parametrize("rolls", [1, 2])
def test_in_a_rolled_view_the_through_plane_axis_snaps(widget, qtbot, rolls):
    """After Roll the view steps through x (sagittal) or y (coronal): that axis snaps."""
    w, v = widget, widget.viewer
    lm_pre, lm_post = _landmark_layers(w, qtbot)
    for _ in range(rolls):
        _gui.click(qtbot, v.window._qt_viewer.viewerButtons.rollDimsButton)
    qtbot.wait(50)
    (normal,) = v.dims.not_displayed
    assert normal in (1, 2)
    # through-plane: a pre slice centre the slider cannot reach (pre 1.5 mm, slider 1.25 mm)
    target = np.array([18.0, -6.0, -6.0])
    target[normal] = PRE_ORIGIN[2 - normal] + 7 * PRE_SPACING[2 - normal]  # -19.5
    _slider_to(v, target)
    slider = v.dims.point[normal]
    assert abs(slider - target[normal]) > 0.1
    for layer, img in ((lm_pre, w.image("pre")), (lm_post, w.image("post"))):
        v.layers.selection.active = layer
        layer.mode = "add"
        _gui.click_at(v, qtbot, target)
        got = _world_of(layer, -1)
        want = _shown_centre(img, v.dims.point, [normal])
        assert got[normal] == pytest.approx(want[normal], abs=1e-9)
        inplane = [a for a in range(3) if a != normal]
        assert np.allclose(got[inplane], target[inplane], atol=0.35)  # where clicked
    assert _world_of(lm_pre, -1)[normal] == pytest.approx(target[normal])


def test_points_added_or_changed_through_the_layer_snap_and_others_stay(widget, qtbot):
    w = widget
    lm_pre, _lm_post = _landmark_layers(w, qtbot)
    # a landmark given in LPS (read from a file, typed): kept exactly, off any slice centre
    exact = np.array([4.0, 5.0, 19.2])
    w.landmarks.add_landmark("landmarks_pre", exact)
    # a point added through the layer off the slice centres: to the pre slice's centre
    world = np.array([17.0, 2.3, -3.1])  # z 17 is shown as pre slice 6 (z 18)
    lm_pre.add((world - np.asarray(lm_pre.translate)) / np.asarray(lm_pre.scale))
    got = _world_of(lm_pre, -1)
    assert got[0] == pytest.approx(18.0) and np.allclose(got[1:], world[1:])
    # one point moved through layer.data: it snaps, the others are not touched
    data = np.array(lm_pre.data, float)
    data[1, 0] = (10.4 - lm_pre.translate[0]) / lm_pre.scale[0]  # z 10.4 -> pre slice 3 (z 9)
    lm_pre.data = data
    assert _world_of(lm_pre, 1)[0] == pytest.approx(9.0)
    pre, _post = w.landmarks.points()
    assert np.allclose(pre["1"], exact)  # the typed landmark stays where it was given
    assert pre["2"][2] == pytest.approx(9.0) and len(pre) == 2


def test_crosshair_point_and_partner_follow_the_pre_slice_shown(widget, qtbot):
    w, v = widget, widget.viewer
    t = sitk.Euler3DTransform()
    t.SetRotation(np.radians(8.0), 0.0, 0.0)
    t.SetTranslation(tuple(SHIFT))
    w.set_transform(t, "manual", "test rotation")
    w.tabs.setCurrentWidget(w.qa)
    w.qa.cross.setChecked(True)
    qtbot.waitUntil(lambda: "crosshair" in v.layers, timeout=20000)
    point = np.array([18.0, 6.0, -4.0])  # world (z, y, x) on pre slice 6
    _slider_to(v, point)
    assert v.dims.point[0] == pytest.approx(17.5)
    p = _gui.world_to_canvas(v, point)
    QTest.mouseMove(_gui.canvas(v), p)
    qtbot.wait(50)
    QTest.mouseMove(_gui.canvas(v), p + type(p)(1, 0))
    qtbot.wait(50)
    cross = v.layers["crosshair"]
    shown = _world_of(cross, 0)
    assert shown[0] == pytest.approx(18.0)  # the pre slice shown, not the slider's 17.5
    q = geometry.lps_to_world(tfm.transform_points(t, geometry.world_to_lps(shown))[0])
    partner = _world_of(cross, 1)
    assert np.allclose(partner[1:], q[1:], atol=1e-6)
    depth = abs(q[0] - shown[0])
    assert f"{depth:.1f} mm" in cross.features["note"][1]
