"""Radiological views and orientation letters (issue 8, point 6), in a real viewer.

A bright marker is put anterior, superior and to the patient's right of the centre of a
real sample volume. In the radiological convention it must be drawn in the top-left
quadrant of the axial (anterior up, right on the left), coronal (superior up, right on
the left) and sagittal (superior up, anterior on the left) views, and the letters at the
canvas edges must name the patient directions there.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry, samples
from napari_ablation.core import orientation as core_orientation
from napari_ablation.core.errors import AblationError
from napari_ablation.widgets import _layers, orientation

PLANES = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
LETTERS = {
    "axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
    "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
    "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"},
}


@pytest.mark.parametrize("plane", PLANES)
def test_letters_follow_the_camera(plane):
    shown = PLANES[plane][1:]
    assert (
        core_orientation.edge_letters(shown, core_orientation.screen_directions(shown))
        == LETTERS[plane]
    )
    # a user flip of the vertical axis swaps the top and bottom letters
    v, h = core_orientation.screen_directions(shown)
    flipped = core_orientation.edge_letters(shown, ("down" if v == "up" else "up", h))
    assert (flipped["top"], flipped["bottom"]) == (LETTERS[plane]["bottom"], LETTERS[plane]["top"])


def test_bad_axes_raise():
    with pytest.raises(AblationError):
        core_orientation.screen_directions((1, 1))


def test_camera_and_letters_on_a_viewer_model():
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.add_image(np.zeros((4, 5, 6)))
    guide = orientation.install(viewer)
    assert orientation.install(viewer) is guide  # once per viewer
    for plane, order in PLANES.items():
        viewer.dims.order = order
        assert guide.letters() == LETTERS[plane]
        cam = _layers.camera(viewer)
        assert tuple(str(d.value) for d in cam.orientation2d) == core_orientation.screen_directions(
            order[1:]
        )
        assert viewer.canvas.overlays["napari_ablation_orient_top"].text == LETTERS[plane]["top"]
        assert guide.radiological()
        assert not viewer.canvas.overlays[orientation.NOTE_KEY].visible
    # a user flip: the letters follow it, and the note says the view is not radiological
    cam = _layers.camera(viewer)
    v, h = (str(d.value) for d in cam.orientation2d)
    cam.orientation2d = ("down" if v == "up" else "up", h)
    assert guide.letters()["top"] == LETTERS[plane]["bottom"]
    assert guide.radiological() is False
    assert viewer.canvas.overlays[orientation.NOTE_KEY].visible
    viewer.dims.ndisplay = 3
    assert (
        guide.letters() is None
        and not viewer.canvas.overlays["napari_ablation_orient_left"].visible
        and not viewer.canvas.overlays[orientation.NOTE_KEY].visible
    )


@pytest.fixture(scope="module")
def marked_pre():
    """The renal sample's pre image with a bright cube 25 mm right, anterior and superior
    of its centre."""
    pre = samples.load_sample("renal_mri").pre
    arr = sitk.GetArrayFromImage(pre).astype(np.float32)
    lo, hi = geometry.physical_bounds(pre)
    centre = (lo + hi) / 2
    marker = centre + np.array(
        [-25.0, -25.0, 25.0]
    )  # LPS: right (-x), anterior (-y), superior (+z)
    idx = np.round(geometry.lps_to_index(pre, marker)).astype(int)  # (z, y, x)
    half = np.ceil(4.0 / np.asarray(pre.GetSpacing())[::-1]).astype(int)
    sl = tuple(slice(i - h, i + h + 1) for i, h in zip(idx, half))
    anatomy_max = float(arr.max())
    arr[sl] = anatomy_max * 4
    return geometry.like(arr, pre), centre, marker, anatomy_max


def test_marker_quadrant_and_letters_in_screenshots(make_napari_viewer, marked_pre, tmp_path):
    from napari_ablation.widgets.session import CaseSession

    img, centre, marker, anatomy_max = marked_pre
    viewer = make_napari_viewer(show=True)
    CaseSession.of(viewer)  # installs the orientation guide, as every plugin widget does
    viewer.add_image(
        sitk.GetArrayFromImage(img),
        colormap="gray",
        contrast_limits=(0, 1.05 * anatomy_max),  # only the marker is white
        **geometry.layer_geometry(img),
    )
    guide = orientation.install(viewer)
    for plane, order in PLANES.items():
        viewer.dims.order = order
        # slice through the marker, camera on the volume centre
        viewer.dims.point = tuple(geometry.lps_to_world(marker))
        _layers.camera(viewer).center = tuple(geometry.lps_to_world(centre)[list(order[1:])])
        viewer.reset_view()
        _layers.camera(viewer).center = tuple(geometry.lps_to_world(centre)[list(order[1:])])
        shot = viewer.screenshot(str(tmp_path / f"orientation_{plane}.png"), canvas_only=True)
        assert guide.letters() == LETTERS[plane]
        # the marker: saturated white pixels (the letters are yellow, the anatomy darker)
        white = np.all(shot[..., :3] >= 250, axis=-1)
        rows, cols = np.nonzero(white)
        assert len(rows) > 10, plane
        h, w = white.shape
        assert rows.mean() < h / 2 and cols.mean() < w / 2, (
            f"{plane}: marker not in the top-left quadrant"
        )
        # the letters are drawn: yellow pixels near each edge
        yellow = (shot[..., 0] > 200) & (shot[..., 1] > 200) & (shot[..., 2] < 160)
        assert yellow[: h // 8].any() and yellow[-h // 8 :].any(), plane
        assert yellow[:, : w // 8].any() and yellow[:, -w // 8 :].any(), plane


#: the patient direction of the marker along each world axis (z, y, x): superior, anterior, right
MARKER_LETTER = ("S", "A", "R")


def test_letters_tell_the_truth_after_napari_roll_and_transpose(
    make_napari_viewer, marked_pre, tmp_path, qtbot
):
    """napari's roll and transpose buttons (real clicks) show every arrangement of the
    axes, transposed ones included (x drawn vertically: no radiological convention fits).
    Whatever is drawn, the letter at each edge names where the marker really is."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_ablation.widgets.session import CaseSession

    img, centre, marker, anatomy_max = marked_pre
    viewer = make_napari_viewer(show=True)
    CaseSession.of(viewer)
    viewer.add_image(
        sitk.GetArrayFromImage(img),
        colormap="gray",
        contrast_limits=(0, 1.05 * anatomy_max),
        **geometry.layer_geometry(img),
    )
    guide = orientation.install(viewer)
    buttons = viewer.window._qt_viewer.viewerButtons
    seen = {}
    # three rolls, a transpose, three rolls: every arrangement of the axes
    for step in range(7):
        button = buttons.transposeDimsButton if step == 3 else buttons.rollDimsButton
        QTest.mouseClick(button, Qt.LeftButton)
        qtbot.wait(20)
        order = tuple(int(a) for a in viewer.dims.order)
        if order in seen:
            continue
        viewer.dims.point = tuple(geometry.lps_to_world(marker))
        viewer.reset_view()
        _layers.camera(viewer).center = tuple(geometry.lps_to_world(centre)[list(order[1:])])
        name = "".join("zyx"[a] for a in order)
        shot = viewer.screenshot(str(tmp_path / f"order_{name}.png"), canvas_only=True)
        letters = guide.letters()
        assert viewer.canvas.overlays["napari_ablation_orient_top"].text == letters["top"]
        white = np.all(shot[..., :3] >= 250, axis=-1)
        rows, cols = np.nonzero(white)
        assert len(rows) > 10, order
        h, w = white.shape
        vertical, horizontal = MARKER_LETTER[order[1]], MARKER_LETTER[order[2]]
        assert letters["top" if rows.mean() < h / 2 else "bottom"] == vertical, (order, letters)
        assert letters["left" if cols.mean() < w / 2 else "right"] == horizontal, (order, letters)
        # a transposed arrangement (the vertical axis after the horizontal one in z, y, x)
        # cannot be radiological: the note at the canvas corner says so
        radiological = order[1] < order[2]
        assert guide.radiological() is radiological
        note = viewer.canvas.overlays[orientation.NOTE_KEY]
        assert note.visible is not radiological
        seen[order] = letters
    assert len(seen) == 6, sorted(seen)  # every arrangement of the three axes was checked
