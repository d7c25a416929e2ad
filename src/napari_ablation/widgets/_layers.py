"""Glue between napari layers and core SimpleITK images (shared by every widget).

Roles: every layer the plugin creates carries ``layer.metadata["napari_ablation"]["role"]``,
one of :data:`ROLES`. Widgets find layers by role (the user may rename them), falling
back to the default layer name.
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
import weakref
from collections import deque
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import SimpleITK as sitk

from ..core import coverage, display, geometry
from ..core.case import LABEL_ROLES
from ..core.errors import AblationError, one_line

META = "napari_ablation"

_UNSET = object()


def napari_private(obj, name: str, value: Any = _UNSET) -> Any:
    """Get (or, with ``value``, set) napari's private attribute ``name`` of ``obj``: the
    plugin's one door to napari internals that have no public API in napari 0.9
    (``LayerList._activate_on_insert``: add a layer without selecting it;
    ``Window._qt_viewer``: the canvas widget). Through the proxy napari hands to plugin
    widgets each access warns (FutureWarning, "Private attribute access ... unavailable no
    earlier than 0.10.0"); that exact warning is silenced here, so a user sees none, and
    this is the one place to port when napari changes. Raises AttributeError when the
    attribute does not exist."""
    cls = type(getattr(obj, "__wrapped__", obj)).__name__
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=re.escape(f"Private attribute access ('{cls}.{name}')"),
            category=FutureWarning,
        )
        if value is _UNSET:
            return getattr(obj, name)
        setattr(obj, name, value)
        return value


#: role -> default layer name
ROLES = {
    "pre": "pre",
    "post": "post",
    "tumor": "tumor",
    "ablation": "ablation",
    "post_registered": "post (registered)",
    "ablation_registered": "ablation outline (pre space)",
    "margin": "margin",
    "mtm_point": "minimal margin point",
    "landmarks_pre": "landmarks pre",
    "landmarks_post": "landmarks post",
}

#: fixed label colours (hex), defined once in core.coverage
TUMOR_COLOR = coverage.STRUCTURE_COLORS["tumor"]
ABLATION_COLOR = coverage.STRUCTURE_COLORS["ablation"]
MARGIN_COLORS = coverage.LABEL_COLORS  # 1 green, 2 yellow, 3 red
MARGIN_NAMES = coverage.LABEL_NAMES


def role_of(layer) -> str | None:
    meta = getattr(layer, "metadata", None) or {}
    return (meta.get(META) or {}).get("role")


def find_layer(viewer, role: str):
    """The layer with this role (the last one added), else the one with the default name."""
    found = [ly for ly in viewer.layers if role_of(ly) == role]
    if found:
        return found[-1]
    name = ROLES.get(role, role)
    if name in viewer.layers:  # LayerList has no .get()
        return viewer.layers[name]
    return None


def layer_meta(layer) -> dict[str, Any]:
    return dict((getattr(layer, "metadata", None) or {}).get(META) or {})


def image_from_layer(layer, *, dtype=None) -> sitk.Image:
    """Identity-direction SimpleITK image of a (3D, axis-aligned) napari layer."""
    data = np.asarray(layer.data)
    if data.ndim != 3:
        raise AblationError(f"layer '{layer.name}' is {data.ndim}D; a 3D volume is needed")
    if not np.allclose(np.asarray(layer.rotate), np.eye(3)) or not np.allclose(
        np.asarray(layer.shear), 0
    ):
        raise AblationError(
            f"layer '{layer.name}' is rotated or sheared; reload it with the plugin's reader"
        )
    if np.any(np.asarray(layer.scale) <= 0):
        raise AblationError(f"layer '{layer.name}' has a non-positive scale")
    return geometry.image_from_array(data, layer.scale, layer.translate, dtype=dtype)


def on_grid(layer, img: sitk.Image, tol: float = 1e-4) -> bool:
    """True when ``layer`` lies on the grid of the identity-direction image ``img``: the
    same size, voxel size and position (``geometry.same_grid``'s rule, for a layer placed
    as :func:`image_layer_kwargs` places an image)."""
    geo = geometry.layer_geometry(img)
    return (
        tuple(layer.data.shape) == tuple(img.GetSize()[::-1])
        and np.allclose(np.asarray(layer.scale, float), geo["scale"], atol=tol)
        and np.allclose(np.asarray(layer.translate, float), geo["translate"], atol=tol)
    )


def mask_from_layer(layer, label: int | None = None) -> sitk.Image:
    """Binary uint8 image (1 where ``label``, or any non-zero label) of a Labels layer."""
    data = np.asarray(layer.data)
    mask = (data == label) if label is not None else (data != 0)
    return geometry.image_from_array(mask.astype(np.uint8), layer.scale, layer.translate)


def image_layer_kwargs(
    img: sitk.Image,
    name: str,
    role: str,
    *,
    metadata: dict | None = None,
    modality: str = "",
    **extra,
) -> dict[str, Any]:
    """Keyword arguments for ``viewer.add_image`` of an identity-direction image."""
    meta = dict(metadata or {})
    meta.setdefault(META, {})
    meta[META] = {**meta[META], "role": role}
    kw = {"name": name, "metadata": meta, **geometry.layer_geometry(img)}
    if extra.get("contrast_limits") is None:  # given: computed off the GUI thread
        arr = sitk.GetArrayViewFromImage(img)
        kw["contrast_limits"] = display.default_contrast(
            arr, modality or meta[META].get("modality", "")
        )
    kw.update(extra)
    return kw


def labels_layer_kwargs(
    img: sitk.Image,
    name: str,
    role: str,
    color: str | None = None,
    *,
    metadata: dict | None = None,
    **extra,
) -> dict[str, Any]:
    meta = dict(metadata or {})
    meta[META] = {**(meta.get(META) or {}), "role": role, "geometry": geometry.geometry_dict(img)}
    kw = {"name": name, "metadata": meta, **geometry.layer_geometry(img)}
    if color is not None:
        kw["colormap"] = single_color_map(color)
    kw.update(extra)
    return kw


def single_color_map(color: str):
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: color})


def margin_colormap():
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(
        color_dict={
            None: "transparent",
            0: "transparent",
            **coverage.MARGIN_LAYER_COLORS,
        }
    )


def add_or_update_image(
    viewer,
    img: sitk.Image,
    role: str,
    *,
    name: str | None = None,
    array: np.ndarray | None = None,
    **kw,
):
    """Replace the data of the layer with this role, or add a new image layer (``array``:
    the image's data, already copied off the GUI thread)."""
    layer = find_layer(viewer, role)
    kwargs = image_layer_kwargs(img, name or ROLES.get(role, role), role, **kw)
    arr = array if array is not None else sitk.GetArrayFromImage(img)
    if layer is None:
        return viewer.add_image(arr, **kwargs)
    new_shape = layer.data.shape != arr.shape
    _replace_data(layer, arr, kwargs)
    if kw.get("contrast_limits") is not None or new_shape:  # the new image's window
        layer.reset_contrast_limits_range("data")
        layer.contrast_limits = kwargs["contrast_limits"]
    return layer


def add_or_update_labels(
    viewer,
    img: sitk.Image,
    role: str,
    *,
    name: str | None = None,
    color: str | None = None,
    colormap=None,
    array: np.ndarray | None = None,
    **kw,
):
    """Replace the data of the labels layer with this role, or add one (``array``: the data
    on the grid of ``img``, held by the layer without a copy)."""
    layer = find_layer(viewer, role)
    kwargs = labels_layer_kwargs(img, name or ROLES.get(role, role), role, color, **kw)
    if colormap is not None:
        kwargs["colormap"] = colormap
    arr = array if array is not None else sitk.GetArrayFromImage(img)
    if layer is None:
        return viewer.add_labels(arr, **kwargs)
    _replace_data(layer, arr, kwargs)
    return layer


def _replace_data(layer, arr: np.ndarray, kwargs: dict) -> None:
    """Give ``layer`` new data (of any shape), its placement and the plugin's metadata from
    ``kwargs`` (those of a new layer). Replacing a layer's data, also with another shape, is
    20-40 ms of napari's work on the GUI thread; removing the layer and adding a new one is
    120-180 ms each (its visual, overlays, controls and event connections made or undone, a
    full ``gc.collect``), e.g. for every layer of a case opened over one of another size."""
    layer.data = arr
    set_placement(layer, kwargs["scale"], kwargs["translate"])
    _keep_name(layer, kwargs["name"])
    if META in kwargs.get("metadata", {}):  # (the plugin's keys of the new data)
        layer.metadata = {**layer.metadata, META: kwargs["metadata"][META]}


def _keep_name(layer, name: str) -> None:
    """A layer refilled with a case's data takes the case's name again (a label file the
    user opened over the previous case, "ablation [1]", kept that name: UAT s6 D10)."""
    if layer.name != name:
        layer.name = name


def set_placement(layer, scale, translate) -> None:
    """Set a layer's scale and translate when they change (each set is an event that
    napari's dims, layer list and canvas answer on the GUI thread)."""
    if not np.allclose(layer.scale, scale):
        layer.scale = scale
    if not np.allclose(layer.translate, translate):
        layer.translate = translate


def set_changed(layer, **props) -> None:
    """Set only the layer properties whose value changes: napari's setters (``visible``,
    ``opacity``, ...) emit their event even for the value the layer already has, and a
    ``visible`` event makes the canvas rebuild its scene graph and overlay positions
    (15-30 ms per set on a shared machine, more with the grid on)."""
    for key, value in props.items():
        current = getattr(layer, key)
        same = current == value
        if isinstance(same, np.ndarray):
            same = same.all()
        if not same:
            setattr(layer, key, value)


def forget_undo(layer) -> None:
    """Empty the undo and redo history of a Labels layer whose data was replaced by another
    case's: napari keeps it, and Ctrl-Z would write the previous case's strokes into the new
    labels. napari 0.9 has no call for it, but a Labels layer made read-only empties its
    history (and leaves paint mode): the layer is made read-only and editable again, its
    mode given back (a new Labels layer instead costs napari 100-150 ms of GUI-thread
    work)."""
    if not layer.editable:
        return  # read-only: napari emptied its history when it became so
    mode = layer.mode
    layer.editable = False
    layer.editable = True
    if layer.mode != mode:
        layer.mode = mode


def shows_result(layer) -> bool:
    """Tell whether ``layer`` is a plugin Labels layer that shows a result (the margin
    classes, the ablation outline in pre space, QA edges, a quiz key's reference, a replaced
    labels record): every plugin Labels layer but the case's own labels (tumor, ablation),
    the only ones drawn on."""
    from napari.layers import Labels

    role = role_of(layer)
    return isinstance(unwrapped(layer), Labels) and role is not None and role not in LABEL_ROLES


def keep_read_only(layer) -> None:
    """Make ``layer`` read-only for as long as it shows a result (:func:`shows_result`): a
    stroke on it would change the picture, not the figures beside it (UAT s13 N5). napari
    makes a Labels layer editable again each time its data is replaced (a recompute)."""
    layer = unwrapped(layer)
    layer.editable = False
    layer.events.editable.connect(_stay_read_only)  # (once: napari skips a second connect)


def _stay_read_only(event) -> None:
    layer = event.source
    if layer.editable and shows_result(layer):
        layer.editable = False


#: blendings that draw a layer whatever its opacity
_OPAQUE_BLENDINGS = ("opaque", "minimum")


def hide_at_once(layer) -> dict[str, Any]:
    """Make ``layer`` draw nothing, at once and cheaply: opacity 0 (and a blending that
    honours it); returns the properties changed, with their values before. An opacity change
    is a shader uniform (3-4 ms of GUI-thread work); a ``visible`` change makes napari rebuild
    the canvas's scene graph and the overlay positions of every grid cell (15-30 ms a
    layer)."""
    before = {"opacity": layer.opacity}
    if layer.blending in _OPAQUE_BLENDINGS:
        before["blending"] = layer.blending
        layer.blending = "translucent"
    layer.opacity = 0.0
    return before


def notify_error(exc: BaseException | str) -> None:
    """One-line error notification (never a traceback)."""
    from napari.utils.notifications import show_error

    show_error(exc if isinstance(exc, str) else one_line(exc))


def notify_info(text: str) -> None:
    from napari.utils.notifications import show_info

    show_info(text)


def notify_warning(text: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(text)


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` in napari >= 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def grid(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` in napari >= 0.9, ``viewer.grid``
    before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def center_view_on(viewer, point_world_zyx, zoom: float | None = None) -> None:
    """Put every view's slice and the camera centre on a world point (z, y, x)."""
    pt = [float(v) for v in point_world_zyx]
    ndim = viewer.dims.ndim
    if ndim >= 3:
        viewer.dims.point = (
            tuple(pt[-ndim:]) if ndim == 3 else tuple(list(viewer.dims.point[: ndim - 3]) + pt)
        )
    # the camera centre is given along the displayed axes, in display order (this follows a
    # coronal or sagittal view, where dims.order is not (0, 1, 2))
    cam = camera(viewer)
    cam.center = (
        tuple(pt[-ndim:][i] for i in viewer.dims.displayed) if ndim >= 3 else tuple(pt[-2:])
    )
    if zoom is not None:
        cam.zoom = zoom


def on_shown_slice(viewer, layer, world_zyx) -> np.ndarray:
    """World points (z, y, x; one or an ``(n, 3)`` array) moved, along the axes the 2D view
    steps through (whatever the dims order), to the centre of the slice of ``layer`` that
    napari draws there (its data index rounded, as napari slices); in-plane coordinates
    stay. This is where a click lands on that layer's image: the viewer's slider steps on
    the finest grid of all layers (post 2.5 mm), not on this layer's slices (pre 3 mm).
    Unchanged in 3D or without a layer. Returns an ``(n, 3)`` array."""
    pts = np.array(world_zyx, dtype=float, ndmin=2)
    if layer is None or viewer.dims.ndisplay != 2:
        return pts
    off = viewer.dims.ndim - 3
    axes = [int(d) - off for d in viewer.dims.not_displayed if int(d) >= off]
    for p in pts:
        data = np.asarray(layer.world_to_data(p), dtype=float)
        data[axes] = np.round(data[axes])
        p[axes] = np.asarray(layer.data_to_world(data), dtype=float)[axes]
    return pts


class ErrorText(str):
    """A job's one-line error message that keeps the exception it came from (``exc``)."""

    exc: BaseException | None = None


class _Failed:
    """What a background job returns instead of raising (no traceback reaches the user)."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        self.message = ErrorText(one_line(exc))
        self.message.exc = exc


#: counts closed viewers: a worker's result that arrives after a viewer closed (its
#: ``returned`` signal is queued while closing waits for the thread pool) is dropped, since
#: it would add layers to, or write into, widgets of a window that is gone
CLOSE_GENERATION = [0]


def start_worker(
    job,
    *,
    on_returned=None,
    on_error=None,
    on_finished=None,
    desc: str = "",
    progress_total: int = 0,
):
    """Run ``job()`` off the GUI thread with napari's progress indicator.

    Exceptions raised by ``job`` are caught *inside* the thread and delivered to
    ``on_error(message)`` (default: a one-line error notification), so neither napari's
    traceback notification nor superqt's re-raise can show a traceback. ``on_returned``
    gets the job's result. Returns the started worker.
    """
    from napari.qt.threading import create_worker

    def safe_job():
        try:
            return job()
        except Exception as exc:  # noqa: BLE001 - turned into a one-line message
            return _Failed(exc)

    def returned(result, _gen=CLOSE_GENERATION[0]):
        if _gen != CLOSE_GENERATION[0]:
            return  # a viewer closed since the job started (see CLOSE_GENERATION)
        if isinstance(result, _Failed):
            (on_error or notify_error)(result.message)
            return
        if on_returned is not None:
            on_returned(result)

    kwargs = {"_progress": {"desc": desc, "total": progress_total}} if desc else {}
    worker = create_worker(safe_job, _ignore_errors=True, **kwargs)
    pbar = getattr(worker, "pbar", None)
    if pbar is not None:
        # shown by napari's activity dialog only, as the dialog itself makes it once it gets
        # to it: a worker started just before its window closed kept tqdm's console output
        # and printed "margin analysis: 0it [00:04, ?it/s]" on stderr as it ended (UAT s6)
        pbar.gui, pbar.leave = True, False
    worker.returned.connect(returned)
    if on_finished is not None:

        def finished(_gen=CLOSE_GENERATION[0]):
            if _gen == CLOSE_GENERATION[0]:  # not into the widgets of a closed window
                on_finished()

        worker.finished.connect(finished)
    worker.start()
    return worker


def run_in_steps(steps, on_done=None, *, owner=None) -> None:
    """Run ``steps`` (an iterable of no-argument callables, or a generator) one per Qt
    event-loop iteration, then ``on_done()``.

    napari does its work for a new layer (visuals, controls, the first draw) on the GUI
    thread; adding the layers of a case one per iteration lets the event loop draw and
    answer the user in between, so no single slice of GUI work freezes the window. A
    failing step ends the chain with a one-line error (then ``on_done()``); the chain
    stops silently once the Qt widget ``owner`` is destroyed. Chains started meanwhile
    take turns.
    """
    _StepQueue.add(iter(steps), on_done, owner)


class _StepQueue:
    """One repeating zero-interval QTimer, running while chains wait: each timeout runs one
    step of the first chain and puts that chain at the back. (The timer is never restarted
    inside its own timeout: with PyQt6 a single-shot timer restarted there, or
    ``QTimer.singleShot(0, f)`` called from ``f``, was seen to stay pending for ever.)

    After each step the next timeout is skipped: Qt activates, in one pass, every timer
    that was due when the pass began, in the order of their due times, and a zero-interval
    timer re-armed before a long step (and a repaint after it) is due before the others,
    so the next step came first again and two steps and the repaint between them made one
    stall with no input or other timer in between (measured: two 80 ms steps made one
    160 ms stall). Skipping one pass lets every other due timer and event run first.
    """

    _chains: ClassVar[deque] = deque()
    _timer = None
    _rest = False  # the previous timeout ran a step: this one is skipped

    @classmethod
    def add(cls, it, on_done, owner) -> None:
        from qtpy.QtCore import QTimer

        if cls._timer is None:
            cls._timer = QTimer()
            cls._timer.setInterval(0)
            cls._timer.timeout.connect(_step_tick)
        cls._chains.append((it, on_done, owner, CLOSE_GENERATION[0]))
        if not cls._timer.isActive():
            cls._timer.start()

    @classmethod
    def _tick(cls) -> None:
        if cls._rest:
            cls._rest = False  # let the event loop run in between (see the class docstring)
            return
        try:
            if cls._chains:
                it, on_done, owner, gen = cls._chains.popleft()
                if gen == CLOSE_GENERATION[0]:  # a chain of a closed window ends silently
                    cls._step(it, on_done, owner, gen)
        finally:
            cls._rest = True
            if not cls._chains:
                cls._timer.stop()

    @classmethod
    def _step(cls, it, on_done, owner, gen) -> None:
        if owner is not None and not _alive(owner):
            return
        try:
            item = next(it)
            if callable(item):
                item()
        except StopIteration:
            if on_done is not None:
                on_done()
            return
        except Exception as exc:  # noqa: BLE001 - a failed step ends the chain, in one line
            notify_error(exc)
            if on_done is not None:
                on_done()
            return
        cls._chains.append((it, on_done, owner, gen))


#: id of a paused canvas -> [how many pauses hold it, how it was paused]: it paints again
#: when the last pause ends
_PAUSES: dict[int, list] = {}


def pause_canvas(viewer, *, keep_frame: bool = False, cover: bool = False):
    """Stop ``viewer``'s canvas from painting (a layer added meanwhile is not drawn in the
    same piece of GUI work); returns the function that lets it paint again, once (a
    headless viewer, or a window closed meanwhile: nothing to do). Pauses may overlap: the
    canvas paints again when the last of them ends.

    ``keep_frame``: the canvas shows its last frame while paused (a Qt-paused OpenGL canvas
    shows blank whenever the window repaints around it): it keeps its size (napari's dims
    slider disappears in 3D; a resized canvas is blank, and napari paints it at once) and
    vispy draws nothing into it.

    ``cover``: the same, for a canvas about to shrink (napari's dims slider appears going
    to 2D: a canvas held at its size made the window grow by the slider's height, for good):
    a picture of its last frame (read back from its framebuffer, no draw) covers it where
    it was, and the canvas itself may be resized beneath it, drawing nothing, until the
    pause ends."""
    native = None
    with contextlib.suppress(Exception):  # a headless viewer has no canvas
        native = napari_private(viewer.window, "_qt_viewer").canvas.native
        held = _PAUSES.setdefault(id(native), [0, None])
        held[0] += 1
        if held[0] == 1:
            if cover:
                held[1] = _cover(native)
                native._vispy_canvas.events.draw.block()
            elif keep_frame:
                held[1] = (native.minimumSize(), native.maximumSize())
                native.setFixedSize(native.size())
                native._vispy_canvas.events.draw.block()
            else:
                native.setUpdatesEnabled(False)
    done = []

    def resume() -> None:
        if native is None or done:
            return
        done.append(True)
        held = _PAUSES.get(id(native), [1, None])
        held[0] -= 1
        if held[0] > 0:
            return
        _PAUSES.pop(id(native), None)
        with contextlib.suppress(RuntimeError):  # the window was closed meanwhile
            if isinstance(held[1], tuple):
                native._vispy_canvas.events.draw.unblock()
                native.setMinimumSize(held[1][0])
                native.setMaximumSize(held[1][1])
            elif held[1] is not None:  # a cover
                native._vispy_canvas.events.draw.unblock()
                held[1].hide()
                held[1].deleteLater()
            else:
                from qtpy.QtCore import QPoint, QRect

                native.setUpdatesEnabled(True)
                # the window composes the canvas again too (resized while paused, it
                # stayed blank on screen until the window's next repaint)
                top = native.window()
                top.update(QRect(native.mapTo(top, QPoint(0, 0)), native.size()))
            native.update()

    return resume


def _cover(native):
    """A widget showing ``native``'s (a vispy Qt canvas) last frame, on top of it, where it is."""
    from qtpy.QtGui import QPixmap
    from qtpy.QtWidgets import QLabel

    native._vispy_canvas.events.draw.block()  # the read-back draws nothing new
    try:
        frame = native.grabFramebuffer()
    finally:
        native._vispy_canvas.events.draw.unblock()
    label = QLabel(native.parentWidget())
    label.setPixmap(QPixmap.fromImage(frame))
    label.setScaledContents(True)
    label.setGeometry(native.geometry())
    label.show()
    label.raise_()
    return label


def lay_out_grid_before_paint(viewer) -> None:
    """Make every frame of ``viewer``'s canvas use its grid cells' real size (UAT s4-s5 N5).

    napari 0.9 makes the grid's view boxes when the grid is switched on (or its shape
    changes) but vispy sizes them only while it draws, and napari sets the cells' cameras
    from their size after the scene is drawn: the first frame of a case opened side by side
    showed each cell zoomed for a 10 x 10 px box (a few huge voxels) until the next repaint,
    0.3-3 s later. Before each draw, the cells are laid out and, when that changed their
    size, napari's cameras follow at once. Nothing for a headless viewer."""
    with contextlib.suppress(Exception):  # a headless viewer has no canvas
        canvas = unwrapped(napari_private(viewer.window, "_qt_viewer").canvas)
        scene = napari_private(canvas, "_scene_canvas")
        ref = weakref.ref(canvas)

        def lay_out(_event=None):
            canvas = ref()
            if canvas is None or not canvas.viewer.canvas.grid.enabled or not canvas.grid_views:
                return
            before = [tuple(view.rect.size) for view in canvas.grid_views]
            canvas.grid._update_child_widget_dim()  # (what vispy does inside the draw)
            if [tuple(view.rect.size) for view in canvas.grid_views] != before:
                canvas.on_draw(None)  # the cells' cameras and overlays for their real size

        scene.events.draw.connect(lay_out, position="first")


def steps_pending() -> bool:
    """True while a chain of :func:`run_in_steps` still has steps to run."""
    return bool(_StepQueue._chains)


def _step_tick() -> None:
    _StepQueue._tick()


def _alive(widget) -> bool:
    try:
        widget.objectName()
    except RuntimeError:  # the C++ object is gone
        return False
    return True


_WARM = False
_WARM_LOCK = threading.Lock()


def prewarm() -> None:
    """Do once, on any thread, the one-off work napari would otherwise do on the GUI thread
    when the first layers of a case are added: its unit registry (pint, about a second on a
    slow machine), the pandas import of a Labels or Points layer's features, vispy's dash
    patterns (the polygon tool of a Labels layer, 50-100 ms) and the colour-space import of a
    Labels layer's default colormap. Also imports
    matplotlib (the margin histogram and the reports), so that :func:`freeze_heap` covers
    its modules. A second caller waits until the first one is done (a worker calling it
    must not go on to show layers while the registry is half built). First of all, when
    numba's cache lacks the margin engine's compiled kernels (the first session after an
    install), starts their compilation in a child process (:func:`warm_margin_engine`)."""
    global _WARM
    with _WARM_LOCK:
        if _WARM:
            return
        warm_margin_engine()
        import pandas  # noqa: F401 - napari's layer features

        _build_unit_registry()
        from vispy.visuals.line.dash_atlas import DashAtlas

        DashAtlas()  # its dash patterns are cached: the first Labels layer's outline tool
        from napari.utils.colormaps import label_colormap

        # every Labels layer first makes napari's default (random) colormap, whatever it is
        # given: the first one imports skimage.color for it
        label_colormap(49)
        _warm_labels_texture()
        import matplotlib.backends.backend_agg
        import matplotlib.backends.backend_pdf
        import matplotlib.figure  # noqa: F401

        _WARM = True


def warm_margin_engine() -> bool:
    """Compile the margin engine's kernels in child processes when numba's on-disk cache
    lacks them (:func:`~napari_ablation.core.warmup.start_warm_up`: two on a machine of two
    cores or more): numba compiles in Python, holding the GIL for seconds, so in this
    process it would stall the GUI (and make the first "Compute margins" wait for all of
    it). The analysis waits for the children if they still run (the Margins panel says so);
    then it loads the kernels from the cache. Not at a lower priority: the user may be
    waiting for them, and a process cannot raise its priority again (on a loaded machine a
    niced warm-up took twice as long). Returns whether a warm-up was started."""
    from ..core import warmup

    cold = warmup.cold_kernels()
    if not cold:  # (in the cache, or numba cannot tell)
        return False
    return bool(warmup.start_warm_up(cold, parts=2))


def _warm_labels_texture() -> None:
    """Have napari's labels-to-texture kernels ready before the first Labels layer is drawn.

    With numba installed (the margin engine's compiled search needs it) napari maps label
    values to its texture through numba-compiled loops, made ready on the first Labels layer
    drawn, on the GUI thread: compiled the first time after an install (seconds), loaded
    from numba's cache later (about 0.35 s of the GUI thread per session and label type).
    Its thumbnail's mapping builds a numba typed dictionary, compiled in every process
    (about 0.9 s). Mapping a few values through each colormap this plugin gives its layers
    (the case's masks are uint8) does both here instead. The texture's mapping has no
    public API: a missing attribute means napari changed, and is left to napari.
    """
    values = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    for cmap in (single_color_map("red"), margin_colormap()):
        cmap.map(values)  # the layer's thumbnail: a numba typed dict, compiled per process
        with contextlib.suppress(AttributeError):
            napari_private(cmap, "_data_to_texture")(values)  # the canvas' texture


def _build_unit_registry() -> None:
    """Build pint's application registry here, whole, and hand it over in one assignment.

    pint builds its default registry lazily on first use, in place: a layer added on the
    GUI thread meanwhile met a half-built registry ("'pixel' is not defined in the unit
    registry"). So a registry nobody has touched yet is replaced by a complete one made
    here, with the default registry's settings.
    """
    import pint
    from pint.registry import LazyRegistry

    app = pint.get_application_registry()
    if type(app.get()) is not LazyRegistry:
        return  # built already (by napari or by us)
    registry = pint.UnitRegistry(on_redefinition="raise")
    if type(app.get()) is LazyRegistry:
        app.set(registry)


def prewarm_in_background(then=None) -> None:
    """:func:`prewarm` in a daemon thread (returns at once), then ``then()`` there."""
    if _WARM:
        return

    def run():
        prewarm()
        if then is not None:
            then()

    threading.Thread(target=run, name="napari-ablation-prewarm", daemon=True).start()


#: how often :func:`freeze_heap` may still freeze (each freeze keeps the viewers of that
#: moment for good: the first viewer and its widgets, not one per viewer a test opens)
_FREEZES_LEFT = [3]


def freeze_heap(viewers) -> bool:
    """Exclude the objects alive now (modules, classes, Qt and napari's own) from Python's
    cyclic garbage collector (:func:`gc.freeze`), when none of ``viewers`` holds a layer.

    napari runs a full ``gc.collect()`` on the GUI thread for every layer it removes, and
    Python runs one now and then while layers are added; each walks every object of the
    process: 150 ms with napari, the widgets and matplotlib imported (325,000 objects),
    about 1 ms once they are frozen. Frozen objects are still freed by reference counting;
    only a frozen reference cycle is never collected, so nothing is frozen while a layer
    (a cycle holding its volume) exists, and at most three times per process.
    """
    import gc

    if _FREEZES_LEFT[0] <= 0 or any(len(v.layers) for v in viewers if v is not None):
        return False
    _FREEZES_LEFT[0] -= 1
    gc.freeze()
    return True


def connect_while_alive(signal, widget, slot) -> None:
    """Connect a (psygnal or napari) ``signal`` to ``slot`` until the Qt ``widget`` is destroyed.

    A dock widget's C++ object can be deleted while the case session (and its model) live
    on; a slot called after that would raise in a Qt callback.
    """
    signal.connect(slot)

    def _off(*_args, _signal=signal, _slot=slot):
        with contextlib.suppress(Exception):  # already disconnected
            _signal.disconnect(_slot)

    widget.destroyed.connect(_off)


def connect_before_napari(emitter, callback):
    """Call ``callback(event)`` when napari's ``emitter`` fires, *before* napari's own
    callbacks of it (returns the relay, for ``emitter.disconnect``).

    napari 0.9 calls its own callbacks of an event first, whatever the position a plugin
    asks for (``EventEmitter.connect`` places a callback whose module is napari's before
    every other). A plugin reacting to ``viewer.dims.events.ndisplay`` ran after napari had
    swapped every layer's visual and, going to 2D, shown its dims slider, which resizes the
    canvas and paints it at once inside the switch. The relay is an ``EventEmitter``
    (napari's class: napari counts it among its own callbacks) chained to ``emitter`` as
    napari documents chaining (an emitter called with an event passes it on), at the first
    position. ``callback`` is held weakly when it is a bound method."""
    from napari.utils.events import EventEmitter

    relay = EventEmitter(source=emitter.source, type_name=emitter.default_args.get("type_name"))
    relay.connect(callback)
    emitter.connect(relay, position="first")
    return relay


def text_overlay(viewer):
    """The canvas's text overlay (napari 0.9: ``viewer.canvas.overlays.text``; before:
    ``viewer.text_overlay``, deprecated since 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and getattr(overlays, "text", None) is not None:
        return overlays.text
    return viewer.text_overlay


def unwrapped(obj):
    """``obj`` itself, not napari's public-only proxy around it: a widget opened from the
    Plugins menu reaches the viewer and its layers through proxies made anew on each access,
    so ``is`` between two reads of one layer is False."""
    return getattr(obj, "__wrapped__", obj)


@contextmanager
def keep_selection(viewer):
    """Leave the viewer's layer selection and active layer as the user had them (adding a
    layer makes napari select it; the next brush stroke or Ctrl-Z must still go to the
    layer the user chose). Layers added inside are not selected at all (napari's
    ``_activate_on_insert``, where it exists): selecting each new layer and then the user's
    again costs napari a switch of the layer-controls panel and a restyle of its buttons,
    twice, on the GUI thread."""
    layers = viewer.layers
    sel = layers.selection
    before, active = list(sel), sel.active
    try:
        activate = napari_private(layers, "_activate_on_insert")
    except AttributeError:
        activate = None
    if activate is not None:
        napari_private(layers, "_activate_on_insert", False)
    try:
        yield
    finally:
        if activate is not None:
            napari_private(layers, "_activate_on_insert", activate)
        alive = [ly for ly in before if ly in viewer.layers]
        # compared unwrapped: through the proxy napari hands to plugin widgets every access
        # returns a new wrapper, so "is" never held and the selection was cleared and set
        # again on every call (two switches of napari's layer-controls panel)
        if {id(unwrapped(ly)) for ly in sel} != {id(unwrapped(ly)) for ly in alive} or (
            unwrapped(sel.active) is not unwrapped(active)
        ):
            sel.clear()
            sel.update(alive)
            if active is not None and active in viewer.layers:
                sel.active = active


#: layers drawn on the post grid (raw post space): never over a pre-space layer
POST_SPACE_ROLES = ("post", "ablation", "landmarks_post")
#: bottom-to-top order of the pre-space layers: anatomy, the QA view over what it
#: compares, then the user's drawing and the results over it (other layers keep their
#: place above these)
PRE_SPACE_ORDER = (
    "pre",
    "post_registered",
    "qa checkerboard",
    "qa difference",
    "qa edges",
    "tumor",
    "margin",
    "ablation_registered",
    "margin_surface",  # the Margins widget's 3D surfaces (session.SURFACE_ROLES): under
    "ablation_surface",  # the minimal margin point, which is drawn over them in 3D
    "landmarks_pre",
    "mtm_point",
)


def arrange(viewer) -> None:
    """The one layer-order rule (keeps the user's selection and active layer).

    Bottom to top: the raw post-space layers (:data:`POST_SPACE_ROLES`), then the
    pre-space layers in :data:`PRE_SPACE_ORDER`, then every other layer. With the grid off
    the raw post (not aligned with pre) is therefore under pre and never covers it; with
    the grid on, napari's grid groups layers from the top (negative stride), so pre space
    fills the first cell and post space the second, whatever layers the views add.
    """
    layers = viewer.layers

    def rank(ly):
        role = role_of(ly) or ly.name
        if role in POST_SPACE_ROLES:
            return (0, POST_SPACE_ROLES.index(role))
        if role in PRE_SPACE_ORDER:
            return (1, PRE_SPACE_ORDER.index(role))
        return (2, 0)

    want = sorted(layers, key=rank)  # stable: equal ranks keep their order
    if list(layers) != want:
        with keep_selection(viewer):
            for i, ly in enumerate(want):
                j = layers.index(ly)
                if j != i:
                    layers.move(j, i)
    update_grid_stride(viewer)


@contextmanager
def one_scene_update(viewer):
    """Layers added, moved or removed and grid changes made inside rebuild napari's scene
    graph once, at the end (napari's ``LayerList.batched_update``), not once for each.

    napari rebuilds the canvas's scene graph (every grid cell's views, every layer's
    overlays and their positions) on each layer insert, move and removal and on each grid
    stride change; the plugin's grid stride follows every layer added to or removed from a
    cell (:func:`update_grid_stride`), so a layer added or removed in a grid was two
    rebuilds, and one more per layer moved into place (:func:`arrange`). At the end napari
    also runs a full ``gc.collect``, as it does for every layer it removes (35-70 ms of the
    GUI thread with a case open): a saving for a removal, which pays it anyway, not for a
    layer added (:func:`hold_stride` there)."""
    with viewer.layers.batched_update():
        yield


def hold_paint(viewer):
    """Keep ``viewer``'s canvas on its last frame until the returned function is called (a
    later step): the canvas's next paint, which draws a layer added meanwhile for the first
    time (its programs built), is then a piece of GUI work of its own, not one with the add
    (:func:`pause_canvas` with ``keep_frame``)."""
    return pause_canvas(viewer, keep_frame=True)


#: ids of the viewers whose grid stride is held (:func:`hold_stride`)
_STRIDE_HELD: dict[int, int] = {}


def hold_stride(viewer):
    """Hold ``viewer``'s grid stride as it is until the returned function is called (a later
    step), which sets it for the layers then (:func:`update_grid_stride`).

    A new stride rebuilds napari's scene graph (every grid cell's views and overlays, 20-30
    ms of GUI-thread work on an idle machine), and a layer added to a grid cell is one
    rebuild of napari's own plus one for the stride that follows it: in separate steps, with
    the canvas held on its last frame meanwhile (:func:`hold_paint`: the cells are not drawn
    in between), they are separate pieces of GUI work. (napari's
    ``LayerList.batched_update`` makes them one rebuild, but ends in a full ``gc.collect``,
    35-70 ms with a case open.)"""
    key = id(unwrapped(viewer))
    _STRIDE_HELD[key] = _STRIDE_HELD.get(key, 0) + 1
    done = []

    def release() -> None:
        if done:
            return
        done.append(True)
        _STRIDE_HELD[key] -= 1
        if not _STRIDE_HELD[key]:
            del _STRIDE_HELD[key]
            update_grid_stride(viewer)

    return release


def update_grid_stride(viewer, event=None) -> None:
    """Grid stride: the pre-space layers (the top block, see :func:`arrange`) share one cell,
    the post-space layers the next (unless held: :func:`hold_stride`)."""
    if id(unwrapped(viewer)) in _STRIDE_HELD:
        return
    n_post = sum(role_of(ly) in POST_SPACE_ROLES for ly in viewer.layers)
    n_pre = len(viewer.layers) - n_post
    if n_post and n_pre:
        g = grid(viewer)
        # set only when it changes: each set is validated and emitted by napari, and a new
        # stride rebuilds the scene graph and the overlay positions of every grid cell
        if g.stride != -max(n_pre, n_post):
            g.stride = -max(n_pre, n_post)
        if tuple(g.shape) != (1, 2):
            g.shape = (1, 2)


def preset_dims(viewer, img: sitk.Image) -> bool:
    """Give an empty ``viewer`` the dims napari gives it when the layer of ``img`` (placed by
    :func:`geometry.layer_geometry`) is added: its axes, ranges and axis labels; returns True
    when it did. Called one event-loop iteration before that layer is added.

    napari makes the dims sliders of a viewer's first 3D layer inside ``add_image``, and
    showing them shrinks the canvas, which Qt repaints at once: 60-70 ms of the 180-190 ms
    of GUI-thread work that the first layer of a fresh viewer was in one piece. Done here
    first, the add finds the dims as it leaves them."""
    if len(viewer.layers):
        return False
    geo = geometry.layer_geometry(img)
    shape = img.GetSize()[::-1]
    dims = viewer.dims
    dims.ndim = len(shape)
    dims.range = tuple(
        (float(t), float(t + (n - 1) * s), float(s))
        for n, s, t in zip(shape, geo["scale"], geo["translate"], strict=True)
    )
    dims.axis_labels = geo["axis_labels"]
    return True


def scroll_body(widget):
    """Put ``widget``'s content in a scroll area and return the content's layout: a docked
    panel then never forces the dock wider or taller than the user makes it (the images
    keep the room)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
    body = QWidget()
    area.setWidget(body)
    outer.addWidget(area)
    lay = QVBoxLayout(body)
    lay.setContentsMargins(4, 4, 4, 4)
    lay.setSpacing(4)
    return lay


def compact_combo(combo, chars: int = 10):
    """A combo box that does not size itself to its longest entry."""
    from qtpy.QtWidgets import QComboBox

    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo
