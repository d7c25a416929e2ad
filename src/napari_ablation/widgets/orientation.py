"""Radiological 2D views with orientation letters on the canvas edges.

:func:`install` (once per viewer) keeps napari's camera in the radiological convention of
``core.orientation`` for whichever two axes are displayed (axial, coronal, sagittal, or a
transposed view) and shows R/L, A/P, S/I at the four edges of the canvas as napari text
overlays. When napari fits the view (Home, a case opened, the grid switched) the images
keep those edges free: the zoom leaves a band for the letter at each edge of each view (UAT
s8 N10d: side by side, the "L" lay over the post image's right edge). Letters in each grid
cell (napari's ``gridded`` overlays) were tried: the second cell's text visuals, made when
the grid comes on, cost the case opening 140 ms of GUI-thread time (test_gui_stalls). It
follows ``viewer.dims.events.order`` / ``ndisplay`` / ``ndim`` (the camera is set when the
displayed plane changes) and the camera's ``orientation2d`` (the letters follow a flip the
user makes). In 3D the letters are hidden.

napari's transpose and roll buttons can draw an axis where the convention wants the other
(e.g. patient right at the top of an axial view): no camera setting makes that view
radiological, so the letters name what is drawn, and a note at the top-left corner says
the view is not radiological (as it does after a user flip).
"""

from __future__ import annotations

import weakref

import numpy as np

from ..core import orientation as core_orientation
from . import _layers

#: canvas overlay key -> (edge, napari canvas position)
EDGES = {
    "napari_ablation_orient_top": ("top", "top_center"),
    "napari_ablation_orient_bottom": ("bottom", "bottom_center"),
    "napari_ablation_orient_left": ("left", "middle_left"),
    "napari_ablation_orient_right": ("right", "middle_right"),
}
LETTER_COLOR = "#ffff66"
#: drawn once, invisibly, when the viewer opens (:func:`warm_up_steps`): the letters, and
#: the characters of the plugin's other canvas text ("MTM -2.05 mm", landmark pairs), whose
#: glyphs the viewer's one font atlas then holds (else rendered during a later repaint,
#: e.g. in a brush stroke: 120-140 ms)
WARM_GLYPHS = "RLAPSI MTm 0123456789 -.+"
LETTER_SIZE = 14
#: the screen box of the widest / tallest letter at :data:`LETTER_SIZE` (px, measured), and
#: the gap kept between a letter and the image
LETTER_BOX_PX = (14.0, 19.0)
LETTER_GAP_PX = 4.0
NOTE_KEY = "napari_ablation_orient_note"
NOT_RADIOLOGICAL = "not radiological"  # (axes transposed or flipped: see the letters)

#: the three radiological planes: name -> the world axes drawn (vertically, horizontally)
PLANES = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}

_GUIDES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class OrientationGuide:
    """Keeps one viewer's 2D camera radiological and its edge letters current."""

    def __init__(self, viewer):
        from napari.components.overlays import TextOverlay

        self._viewer_ref = weakref.ref(viewer)
        overlays = viewer.canvas.overlays
        for key, (_edge, position) in EDGES.items():
            if key not in overlays:
                overlays[key] = TextOverlay(
                    text="",
                    position=position,
                    box=False,
                    color=LETTER_COLOR,
                    font_size=LETTER_SIZE,
                    visible=False,
                )
        if NOTE_KEY not in overlays:
            overlays[NOTE_KEY] = TextOverlay(
                text=NOT_RADIOLOGICAL,
                position="top_left",
                box=False,
                color=LETTER_COLOR,
                font_size=LETTER_SIZE - 4,
                visible=False,
            )
        dims = viewer.dims
        for ev in (dims.events.order, dims.events.ndisplay, dims.events.ndim):
            ev.connect(self._on_plane)
        _layers.camera(viewer).events.orientation2d.connect(self._on_camera)
        _layers.grid(viewer).events.enabled.connect(self._on_grid)
        viewer.events.reset_view.connect(self._leave_room)  # napari fitted the view
        viewer.canvas.events.size.connect(self._on_canvas_size)
        self._fitted = None  # (zoom, centre) of the last fitted view
        self._plane = None
        self._on_plane()

    @property
    def viewer(self):
        return self._viewer_ref()

    def displayed(self) -> tuple[int, int] | None:
        """The world axes (0 z/S, 1 y/P, 2 x/L) drawn (vertically, horizontally), None in 3D."""
        v = self.viewer
        if v is None or v.dims.ndisplay != 2 or v.dims.ndim < 3:
            return None
        off = v.dims.ndim - 3
        axes = [a - off for a in list(v.dims.displayed)[-2:]]
        return (axes[0], axes[1]) if min(axes) >= 0 else None

    def _on_plane(self, event=None) -> None:
        shown = self.displayed()
        if shown is not None and shown != self._plane:
            cam = _layers.camera(self.viewer)
            want = core_orientation.screen_directions(shown)
            if tuple(str(getattr(d, "value", d)) for d in cam.orientation2d) != want:
                cam.orientation2d = want  # emits orientation2d: the letters follow
        self._plane = shown
        self.update_letters()

    def _on_grid(self, event=None) -> None:
        """The grid switched on or off: the view is fitted to the new layout, as napari fits
        it when Roll or Transpose changes the displayed axes (UAT s7 N12f: a sagittal view
        laid out for two cells, the grid then switched off, filled a third of the canvas)."""
        v = self.viewer
        if v is not None and v.dims.ndisplay == 2 and len(v.layers):
            v.fit_to_view()

    def _on_camera(self, event=None) -> None:
        self.update_letters()

    def letter_bands(self) -> tuple[float, float]:
        """The band (px) kept free of image at the (top and bottom, left and right) edges of
        each view: napari's overlay padding, the letter and a gap."""
        v = self.viewer
        pad_x, pad_y = v.canvas.overlay_tiling.padding
        w, h = LETTER_BOX_PX
        return pad_y + h + LETTER_GAP_PX, pad_x + w + LETTER_GAP_PX

    def _leave_room(self, event=None) -> None:
        """After napari fitted the 2D view: zoom out until the images, centred, leave each
        view's edges free for its letters (a zoom the user chooses later is theirs)."""
        v = self.viewer
        if v is None or self.displayed() is None or not len(v.layers):
            return
        extent = np.asarray(_layers.napari_private(v.layers, "_extent_world_augmented"))
        shown = list(v.dims.displayed)[-2:]
        scene = extent[1, shown] - extent[0, shown]  # (vertical, horizontal) mm
        room = np.asarray(v.canvas.viewbox_size(v.layers), float) - 2 * np.asarray(
            self.letter_bands()
        )
        if np.any(scene <= 0) or np.any(room <= 0):
            return
        cam = _layers.camera(v)
        fit = float(np.min(room / scene))
        if cam.zoom > fit:
            cam.zoom = fit
        self._fitted = (cam.zoom, tuple(cam.center))

    def _on_canvas_size(self, event=None) -> None:
        """The canvas was resized (a dock opened, the window resized) while the view is still
        the fitted one (not zoomed or moved since): fit it again, so the images keep their
        letters' bands (UAT s8 N10d: a view fitted before the docks narrowed the canvas ran
        under the letters and past its grid cell)."""
        v = self.viewer
        if v is None or self._fitted is None or self.displayed() is None:
            return
        cam = _layers.camera(v)
        if (cam.zoom, tuple(cam.center)) == self._fitted:
            v.fit_to_view()

    def letters(self) -> dict[str, str] | None:
        """The letters shown at the edges now (None in 3D)."""
        shown = self.displayed()
        if shown is None:
            return None
        return core_orientation.edge_letters(shown, _layers.camera(self.viewer).orientation2d)

    def radiological(self) -> bool | None:
        """Whether the 2D view follows the radiological convention (None in 3D): the axes in
        the convention's arrangement (not transposed) and drawn the convention's way (not
        flipped)."""
        shown = self.displayed()
        if shown is None:
            return None
        cam = _layers.camera(self.viewer)
        directions = tuple(str(getattr(d, "value", d)) for d in cam.orientation2d)
        return shown[0] < shown[1] and directions == core_orientation.screen_directions(shown)

    def update_letters(self) -> None:
        v = self.viewer
        if v is None:
            return
        letters = self.letters()
        for key, (edge, _pos) in EDGES.items():
            overlay = v.canvas.overlays.get(key)
            if overlay is None:
                continue
            if letters is None:
                overlay.visible = False
            else:
                overlay.text = letters[edge]
                overlay.visible = True
        note = v.canvas.overlays.get(NOTE_KEY)
        if note is not None:
            note.visible = self.radiological() is False


def plane_of(viewer) -> str | None:
    """The radiological plane (a key of :data:`PLANES`) the 2D view shows; None in 3D and
    for a transposed view (napari's Transpose: the axes the other way round)."""
    shown = install(viewer).displayed()
    return next((name for name, axes in PLANES.items() if axes == shown), None)


def show_plane(viewer, name: str) -> None:
    """Show the radiological plane ``name`` (a key of :data:`PLANES`) in 2D, on the slices
    the user is on: the dims order that draws its axes and the camera directions of the
    convention (the guide sets them for the new axes), fitted to the canvas."""
    install(viewer)
    dims = viewer.dims
    if dims.ndim < 3:
        return
    if dims.ndisplay == 3:
        dims.ndisplay = 2
    vertical, horizontal = PLANES[name]
    (sliced,) = {0, 1, 2} - {vertical, horizontal}
    off = dims.ndim - 3
    dims.order = (*range(off), sliced + off, vertical + off, horizontal + off)
    # the convention's directions, also where the user had flipped this plane
    _layers.camera(viewer).orientation2d = core_orientation.screen_directions(PLANES[name])
    # fitted to the canvas (napari fits on a change of axes only: the plane already shown,
    # picked again after Go to MTM or a zoom, stayed where it was; UAT s13 N4)
    viewer.reset_view()


def warm_up_steps(viewer):
    """Steps for :func:`_layers.run_in_steps` that make the letters' visuals and draw their
    glyphs while the viewer is still empty, in a transparent colour: napari makes a text
    overlay's visual only once it is visible, so without this the first layer of a case
    would also pay, on the GUI thread, for four text visuals, their shaders and glyphs (see
    :data:`WARM_GLYPHS`)."""
    overlays = viewer.canvas.overlays
    warmed = []
    for key in EDGES:
        overlay = overlays.get(key)
        if overlay is None or overlay.visible or len(viewer.layers):
            continue
        overlay.color = "transparent"
        overlay.text = WARM_GLYPHS
        overlay.visible = True  # napari makes the visual; the next draw renders the glyphs
        warmed.append(overlay)
        yield
    yield  # a draw of the canvas in between

    for overlay in warmed:
        overlay.visible = False
        overlay.text = ""
        overlay.color = LETTER_COLOR
    guide = _GUIDES.get(viewer)
    if guide is not None:
        guide.update_letters()


def install(viewer) -> OrientationGuide:
    """The viewer's orientation guide (created on the first call)."""
    guide = _GUIDES.get(viewer)
    if guide is None:
        guide = OrientationGuide(viewer)
        _GUIDES[viewer] = guide
    return guide
