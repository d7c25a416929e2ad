"""Visual QA of a registration (the "QA" tab of the Register widget).

Every view is computed on the pre grid from pre and post resampled onto it (the layer
``post_registered``): blend opacity, checkerboard (tile size in mm), difference image,
flicker between pre and registered post, contours (edges of one image, or the ablation
zone outline, over the other), a linked crosshair, and the QA verdict stored in the case.
"""

from __future__ import annotations

import contextlib

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..core import geometry
from ..core import registration as reg
from ..core import transform as tfm
from ..core.case import QA_VERDICTS, qa_text, reviewed_at_text
from ..core.errors import AblationError
from . import _layers

CHECKER = "qa checkerboard"
DIFF = "qa difference"
EDGES = "qa edges"
CROSS = "crosshair"
#: above this many voxels, edges are computed in a box around the tumor only
EDGES_FULL_MAX_VOXELS = 12_000_000
EDGES_HALF_SIZE_MM = 60.0
#: crosshair: size (mm) and colours (the point under the mouse, its partner T(p) in raw post)
CROSS_SIZE_MM = 12
CROSS_COLORS = ("#ffff00", "#ff00ff")
#: the difference view's colour range (normalised intensities, after removing the
#: overall brightness offset between the two series)
DIFF_LIMIT = 0.5
#: diverging colours of the difference view (colour-blind safe, and neither the orange
#: tumor nor the blue ablation labels): pre brighter, post brighter
DIFF_COLORS = ("#9b59d0", "#1bb35a")
DIFF_LEGEND = (
    "<b>Difference</b> (registered post - pre), centred at zero:<br>"
    f"<span style='color:{DIFF_COLORS[1]}'>&#9632;</span> <b>green</b>: post brighter than "
    "pre<br>"
    f"<span style='color:{DIFF_COLORS[0]}'>&#9632;</span> <b>purple</b>: pre brighter than "
    "post<br>"
    "clear (anatomy shows): no difference, or outside post's field of view (no data). "
    "Edges doubled in green and purple mean misalignment."
)
CONTOURS = (
    "none",
    "edges of registered post over pre",
    "edges of pre over registered post",
    "ablation zone outline on pre",
)


def difference_colormap():
    """Diverging, centred at zero: purple (pre brighter) - transparent (equal) - green (post
    brighter)."""
    from napari.utils.colormaps import Colormap
    from napari.utils.colormaps.standardize_color import transform_color

    lo, hi = (transform_color(c)[0][:3].tolist() for c in DIFF_COLORS)
    return Colormap(
        colors=[[*lo, 1.0], [*lo, 0.0], [*hi, 0.0], [*hi, 1.0]],
        controls=[0.0, 0.5, 0.5, 1.0],
        name="qa_difference",
    )


def difference_offset(d: np.ndarray, fov: np.ndarray, pre_norm: np.ndarray) -> float:
    """The overall brightness offset between the two series (the median difference over the
    body inside post's field of view): the difference view is centred on it, so that only
    local differences are coloured."""
    step = max(1, d.shape[0] // 16)
    body = fov[::step] & (pre_norm[::step] > 0.1)
    sample = d[::step][body]
    return float(np.median(sample)) if sample.size else 0.0


class HeldVisibility:
    """The layers the QA views hide or show while they are on (the registered post under the
    difference, one image under the edges of the other, the ablation outline of its contour
    view, the flicker's two images).

    Each layer keeps its own visibility, the user's: the one it had when the first view
    took it, or the one the user gave it since (its eye). When the last view holding it lets
    it go it is put back: a view never leaves a layer hidden, nor shows one the user hid
    (UAT s13 N1). While several views hold a layer, the last one to take it decides.
    """

    def __init__(self, viewer):
        self._viewer = viewer
        #: id(layer) -> {"layer", "own": the user's visibility, "views": {view: visible},
        #: "track": the layer's visible-event callback}
        self._held: dict[int, dict] = {}
        self._setting = False

    def hold(self, view: str, layer, visible: bool, *, own: bool | None = None) -> None:
        """While ``view`` is on, ``layer`` is shown (``visible``) or hidden. ``own``: the
        visibility to put back when no view holds it (default: its visibility now)."""
        layer = _layers.unwrapped(layer)
        key = id(layer)
        entry = self._held.get(key)
        if entry is None:

            def track(event=None):  # the user's eye: what to put back
                held = self._held.get(key)
                if held is not None and not self._setting:
                    held["own"] = bool(held["layer"].visible)

            entry = {
                "layer": layer,
                "own": bool(layer.visible if own is None else own),
                "views": {},
                "track": track,
            }
            layer.events.visible.connect(track)
            self._held[key] = entry
        entry["views"].pop(view, None)  # (the last to take it decides)
        entry["views"][view] = bool(visible)
        self._set(layer, visible)

    def holds(self, view: str, layer) -> bool:
        entry = self._held.get(id(_layers.unwrapped(layer)))
        return entry is not None and view in entry["views"]

    def release(self, view: str | None = None, *, keep=()) -> None:
        """``view`` lets go of its layers (None: every view does), but for those in
        ``keep``: each is as another view holding it wants, else as the user had it."""
        kept = {id(_layers.unwrapped(ly)) for ly in keep}
        layers = _layers.unwrapped(self._viewer).layers
        for key, entry in list(self._held.items()):
            views = entry["views"]
            if key in kept or (view is not None and view not in views):
                continue
            if view is None:
                views.clear()
            else:
                del views[view]
            layer = entry["layer"]
            if views:
                self._set(layer, next(reversed(views.values())))
                continue
            del self._held[key]
            layer.events.visible.disconnect(entry["track"])
            if layer in layers:
                self._set(layer, entry["own"])

    def _set(self, layer, visible: bool) -> None:
        self._setting = True
        try:
            _layers.set_changed(layer, visible=bool(visible))
        finally:
            self._setting = False


#: the views that hold layers' visibility (:class:`HeldVisibility`)
CONTOUR_VIEW = "contours"
FLICKER_VIEW = "flicker"


class QAPanel(QWidget):
    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.viewer = owner.viewer
        self._ranges: dict = {}
        self._flick = QTimer(self)
        self._flick.timeout.connect(self._flip)
        self._flick_state = False
        self._mouse_cb = None
        self._edges_cache = None
        self._diff_offset = 0.0
        self._held = HeldVisibility(self.viewer)
        v = _layers.scroll_body(self)  # scrolls, never squeezed, in a narrow dock

        views = QGroupBox("Views")
        views_lay = QVBoxLayout(views)
        form = QFormLayout()
        views_lay.addLayout(form)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        form.addRow("Blend (post opacity)", self.opacity)
        self.checker = QCheckBox("checkerboard")
        self.tile = QDoubleSpinBox()
        self.tile.setRange(2, 100)
        self.tile.setValue(10)
        self.tile.setSuffix(" mm")
        form.addRow(self.checker, self.tile)
        self.diff = QCheckBox("difference (post - pre)")
        form.addRow(self.diff)
        self.diff_legend = QLabel(DIFF_LEGEND)
        self.diff_legend.setWordWrap(True)
        self.diff_legend.setVisible(False)
        self.flicker = QCheckBox("flicker pre / post")
        self.rate = QDoubleSpinBox()
        self.rate.setRange(0.5, 10)
        self.rate.setValue(2.0)
        self.rate.setSuffix(" Hz")
        form.addRow(self.flicker, self.rate)
        self.contours = _layers.compact_combo(QComboBox())
        self.contours.addItems(CONTOURS)
        form.addRow("Contours", self.contours)
        self.cross = QCheckBox("crosshair (magenta: raw post)")
        self.cross.setToolTip(
            "Yellow: the point under the mouse. Magenta: T(p), the same anatomy in raw post, "
            "drawn on this slice; 'T(p) 3.0 mm S' means it lies 3.0 mm superior of the slice."
        )
        form.addRow(self.cross)
        # outside the form: a word-wrapped label spanning a form row is cut to one line
        views_lay.addWidget(self.diff_legend)
        v.addWidget(views)

        verdict = QGroupBox("QA verdict")
        verdict.setToolTip("recorded in the case and the report")
        verdict_lay = QVBoxLayout(verdict)
        form = QFormLayout()
        verdict_lay.addLayout(form)
        self.verdict = _layers.compact_combo(QComboBox())
        self.verdict.addItems(QA_VERDICTS)
        form.addRow("Registration", self.verdict)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("comment (e.g. what was corrected, what does not match)")
        form.addRow("Comment", self.comment)
        self.record = QPushButton("Record verdict")
        form.addRow(self.record)
        # outside the form: a word-wrapped label spanning a form row is cut to one line
        self.verdict_label = QLabel("")
        self.verdict_label.setWordWrap(True)
        verdict_lay.addWidget(self.verdict_label)
        v.addWidget(verdict)
        v.addStretch(1)

        self.opacity.valueChanged.connect(self._on_opacity)
        self.checker.toggled.connect(lambda _on: self.refresh())
        self.tile.valueChanged.connect(
            lambda _v: self.refresh() if self.checker.isChecked() else None
        )
        self.diff.toggled.connect(self._on_diff)
        self.flicker.toggled.connect(self._on_flicker)
        self.rate.valueChanged.connect(self._on_rate)
        self.contours.currentIndexChanged.connect(lambda _i: self.refresh())
        self.cross.toggled.connect(self._on_cross)
        self.record.clicked.connect(self.record_verdict)
        # the registration changes: the verdict may be for an earlier one (or back again)
        _layers.connect_while_alive(
            self.owner.model.qa_changed, self, lambda: self._show_verdict(self.owner.model.qa)
        )
        self._load_verdict()

    # ------------------------------------------------------------------ helpers
    def _arrays(self):
        pre_l = _layers.find_layer(self.viewer, "pre")
        reg_l = self.owner.registered_layer()
        if pre_l is None or reg_l is None:
            return None
        return pre_l, reg_l

    def _arrays_or_resample(self):
        """:meth:`_arrays`, after showing the registered post when the case has both images
        (a reopened case's saved registration, or the identity): a QA view the user asks for
        needs no extra click. None while the resampling runs (it refreshes the views)."""
        got = self._arrays()
        both = self.owner.image("pre") is not None and self.owner.image("post") is not None
        if got is None and both:
            if self.owner._resample_worker is None:
                self.owner.update_overlay(full=True)
            got = self._arrays()
        return got

    def _range(self, layer):
        key = (id(layer), id(layer.data))
        hit = self._ranges.get(layer.name)
        if hit is None or hit[0] != key:
            hit = (key, reg.intensity_range(np.asarray(layer.data)))
            self._ranges[layer.name] = hit
        return hit[1]

    def _layer_kwargs(self, pre_l):
        return {
            "scale": tuple(pre_l.scale),
            "translate": tuple(pre_l.translate),
            "units": ("mm", "mm", "mm"),
            "axis_labels": geometry.AXIS_LABELS,
        }

    def _set_image(self, name, data, pre_l, **kw):
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if layer.data.shape == data.shape:
                layer.data = data
                return layer
            self.viewer.layers.remove(layer)
        with _layers.keep_selection(self.viewer):  # a QA view never takes the user's active layer
            layer = self.viewer.add_image(
                data,
                name=name,
                metadata={_layers.META: {"role": name}},
                **self._layer_kwargs(pre_l),
                **kw,
            )
        _layers.arrange(self.viewer)  # over what it compares, under the user's drawing
        return layer

    def _remove(self, name):
        if name in self.viewer.layers:
            self.viewer.layers.remove(self.viewer.layers[name])

    # ------------------------------------------------------------------ views
    def refresh(self) -> None:
        """Recompute the enabled views from pre and the registered post."""
        wanted = self.checker.isChecked() or self.diff.isChecked() or self.contours.currentIndex()
        got = self._arrays_or_resample() if wanted else self._arrays()
        if got is None:
            if wanted and self.owner._resample_worker is not None:
                return  # the registered post is on its way; it refreshes the views
            if wanted:
                _layers.notify_info(
                    "register first (or press 'Show registered post'): QA views compare pre "
                    "with registered post"
                )
            for name in (CHECKER, DIFF, EDGES):
                self._remove(name)
            return
        pre_l, reg_l = got
        a, b = np.asarray(pre_l.data), np.asarray(reg_l.data)
        try:
            if self.checker.isChecked():
                cb = reg.checkerboard(
                    a,
                    b,
                    tuple(pre_l.scale),
                    float(self.tile.value()),
                    tuple(pre_l.translate),
                    self._range(pre_l),
                    self._range(reg_l),
                )
                self._set_image(
                    CHECKER, cb, pre_l, colormap="gray", contrast_limits=(0, 1), blending="opaque"
                )
            else:
                self._remove(CHECKER)
            if self.diff.isChecked():
                d = reg.difference(a, b, self._range(pre_l), self._range(reg_l))
                fov = self._post_field_of_view()
                self._diff_offset = difference_offset(d, fov, reg.normalise(a, self._range(pre_l)))
                d -= np.float32(self._diff_offset)
                d[~fov] = 0.0  # no post there: nothing to compare (transparent)
                self._set_image(
                    DIFF,
                    d,
                    pre_l,
                    colormap=difference_colormap(),
                    contrast_limits=(-DIFF_LIMIT, DIFF_LIMIT),
                    blending="translucent",
                )
                if not self._held.holds(DIFF, reg_l):
                    # read over pre alone: the magenta registered post tints everything
                    self._held.hold(DIFF, reg_l, False)
            else:
                self._remove(DIFF)
            self.diff_legend.setVisible(self.diff.isChecked())
            self._contours(pre_l, reg_l)
        except AblationError as exc:
            _layers.notify_error(exc)

    def update_region(self, box, arr) -> None:
        """Live path: update checkerboard / difference inside ``box`` only."""
        got = self._arrays()
        if got is None:
            return
        pre_l, reg_l = got
        a = np.asarray(pre_l.data)[box]
        if self.checker.isChecked() and CHECKER in self.viewer.layers:
            origin = [pre_l.translate[i] + pre_l.scale[i] * box[i].start for i in range(3)]
            cb = reg.checkerboard(
                a,
                arr,
                tuple(pre_l.scale),
                float(self.tile.value()),
                origin,
                self._range(pre_l),
                self._range(reg_l),
            )
            layer = self.viewer.layers[CHECKER]
            layer.data[box] = cb
            layer.refresh(thumbnail=False, extent=False, highlight=False)
        if self.diff.isChecked() and DIFF in self.viewer.layers:
            layer = self.viewer.layers[DIFF]
            d = reg.difference(a, arr, self._range(pre_l), self._range(reg_l))
            d -= np.float32(self._diff_offset)
            d[~self._post_field_of_view(box)] = 0.0
            layer.data[box] = d
            layer.refresh(thumbnail=False, extent=False, highlight=False)

    def _contours(self, pre_l, reg_l) -> None:
        mode = self.contours.currentText()
        if mode == "none":
            self._remove(EDGES)
            self._held.release(CONTOUR_VIEW)  # the layers as they were
            return
        if mode.startswith("edges"):
            src = reg_l if "registered post over" in mode else pre_l
            data = np.asarray(src.data)
            key = (mode, id(src.data)) if src is pre_l else None
            hit = self._edges_cache
            if key is not None and hit is not None and hit[0] == key:
                e = hit[1]
            else:
                e = np.zeros(data.shape, np.uint8)
                box = tuple(slice(0, n) for n in data.shape)
                if data.size > EDGES_FULL_MAX_VOXELS:  # large volume: edges around the tumor only
                    ref = geometry.image_from_array(
                        np.zeros((1, 1, 1), np.uint8), src.scale, src.translate
                    )
                    c = geometry.lps_to_index(ref, self.owner.tumor_center())
                    half = EDGES_HALF_SIZE_MM / np.asarray(src.scale, dtype=float)
                    box = tuple(
                        slice(
                            max(0, int(c[a] - half[a])), min(data.shape[a], int(c[a] + half[a]) + 1)
                        )
                        for a in range(3)
                    )
                origin = [src.translate[a] + src.scale[a] * box[a].start for a in range(3)]
                img = geometry.image_from_array(data[box].astype(np.float32), src.scale, origin)
                e[box] = reg.edges(img)
                self._edges_cache = (key, e) if key is not None else None
            if EDGES in self.viewer.layers and self.viewer.layers[EDGES].data.shape == e.shape:
                self.viewer.layers[EDGES].data = e
            else:
                self._remove(EDGES)
                with _layers.keep_selection(self.viewer):
                    self.viewer.add_labels(
                        e,
                        name=EDGES,
                        colormap=_layers.single_color_map("#ffff00"),
                        metadata={_layers.META: {"role": EDGES}},
                        **self._layer_kwargs(pre_l),
                    )
                _layers.arrange(self.viewer)
            # show the edges over the other image
            self._held.hold(CONTOUR_VIEW, reg_l, "registered post over" not in mode)
            self._held.hold(CONTOUR_VIEW, pre_l, True)
            self._held.release(CONTOUR_VIEW, keep=(reg_l, pre_l))
            return
        self._remove(EDGES)
        self._held.release(CONTOUR_VIEW)
        abl = self.owner.image("ablation")
        pre = self.owner.image("pre")
        if abl is None or pre is None:
            _layers.notify_info("draw the ablation zone on post to see its outline on pre")
            return
        out = tfm.resample_onto(abl, pre, self.owner.transform, interpolator="nearest")
        made = _layers.find_layer(self.viewer, "ablation_registered") is None
        with _layers.keep_selection(self.viewer):
            layer = _layers.add_or_update_labels(
                self.viewer, out, "ablation_registered", color=_layers.ABLATION_COLOR
            )
        layer.contour = 1
        layer.rendering = "translucent"  # in 3D a see-through volume, not a block hiding the tumor
        # shown while this view is on; one made for it is hidden after
        self._held.hold(CONTOUR_VIEW, layer, True, own=False if made else None)
        _layers.arrange(self.viewer)

    def _post_field_of_view(self, box=None) -> np.ndarray:
        """Voxels of the pre grid (or of ``box``) whose point ``T(p)`` lies inside the post
        image."""
        pre, post = self.owner.pre_post()
        tx = self.owner.transform
        if box is None:
            ones = sitk.Cast(post * 0 + 1, sitk.sitkUInt8)
            return (
                sitk.GetArrayFromImage(tfm.resample_onto(ones, pre, tx, interpolator="nearest"))
                != 0
            )
        idx = np.stack(
            np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij"), axis=-1
        ).reshape(-1, 3)
        lps = idx[:, ::-1] * np.asarray(pre.GetSpacing()) + np.asarray(
            pre.GetOrigin()
        )  # identity direction
        q = tfm.transform_points(tx, lps)
        # identity direction (docs/design.md): continuous index (x, y, z) of the post grid
        ci = (q - np.asarray(post.GetOrigin())) / np.asarray(post.GetSpacing())
        inside = np.all((ci >= -0.5) & (ci <= np.asarray(post.GetSize()) - 0.5), axis=1)
        return inside.reshape(tuple(b.stop - b.start for b in box))

    def _on_diff(self, on: bool) -> None:
        """The difference is read over pre alone: the magenta registered post (which tints
        everything) is hidden while it is on (:meth:`refresh`), and as it was after."""
        if not on:
            self._held.release(DIFF)
        self.refresh()

    def _on_opacity(self, value: int) -> None:
        layer = self.owner.registered_layer()
        if layer is not None:
            layer.opacity = value / 100.0

    # ------------------------------------------------------------------ flicker
    def _on_flicker(self, on: bool) -> None:
        if on:
            if self._arrays_or_resample() is None:
                _layers.notify_info("register first: flicker alternates pre and registered post")
                self.flicker.setChecked(False)
                return
            reg_l = self._arrays()[1]
            # flicker compares like with like: registered post in grey, opaque, while it runs
            self._flick_style = (reg_l, reg_l.colormap.name, reg_l.opacity, reg_l.blending)
            reg_l.colormap = "gray"
            reg_l.opacity = 1.0
            reg_l.blending = "translucent"
            self._on_rate(self.rate.value())
            self._flick.start()
        else:
            self._flick.stop()
            self._held.release(FLICKER_VIEW)  # pre and registered post as they were
            style = getattr(self, "_flick_style", None)
            if style is not None and style[0] in self.viewer.layers:
                layer, cmap, opacity, blending = style
                layer.colormap, layer.opacity, layer.blending = cmap, opacity, blending
            self._flick_style = None

    def _on_rate(self, hz: float) -> None:
        self._flick.setInterval(round(1000.0 / (2.0 * float(hz))))

    def _flip(self) -> None:
        got = self._arrays()
        if got is None:
            self.flicker.setChecked(False)
            return
        pre_l, reg_l = got
        self._flick_state = not self._flick_state
        # registered post shown opaque on its own, then pre on its own
        self._held.hold(FLICKER_VIEW, reg_l, self._flick_state)
        self._held.hold(FLICKER_VIEW, pre_l, not self._flick_state)

    # ------------------------------------------------------------------ crosshair
    def _on_cross(self, on: bool) -> None:
        if on:
            pre_l = _layers.find_layer(self.viewer, "pre")
            if CROSS not in self.viewer.layers and pre_l is not None:
                # on the pre grid (scale, translate): a layer with a 1 mm scale would make
                # napari step the slider by 1 mm instead of by one pre slice
                scale = np.asarray(pre_l.scale, float)
                with _layers.keep_selection(self.viewer):
                    self.viewer.add_points(
                        np.zeros((2, 3)),
                        name=CROSS,
                        symbol="cross",
                        size=CROSS_SIZE_MM / float(np.mean(scale[-2:])),
                        scale=tuple(scale),
                        translate=tuple(pre_l.translate),
                        face_color=list(CROSS_COLORS),
                        border_color="black",
                        border_width=0.08,
                        features={"note": np.array(["", "T(p)"], dtype=object)},
                        text={"string": "{note}", "color": CROSS_COLORS[1], "size": 9},
                        metadata={_layers.META: {"role": CROSS}},
                        projection_mode="all",
                        units=("mm", "mm", "mm"),
                        axis_labels=geometry.AXIS_LABELS,
                    )
                _layers.arrange(self.viewer)
            if self._mouse_cb is None:

                def cb(viewer, event):
                    self.move_crosshair(np.asarray(event.position)[-3:])

                self._mouse_cb = cb
                self.viewer.mouse_move_callbacks.append(cb)
            self.move_crosshair(np.asarray(self.viewer.dims.point)[-3:])
        else:
            self._disconnect_mouse()
            self._remove(CROSS)

    def move_crosshair(self, world_zyx) -> None:
        """Put the crosshair at a world point and its partner at ``T(point)`` (the same anatomy in
        raw post)."""
        if CROSS not in self.viewer.layers:
            return
        # the anatomy under the mouse is on the pre slice shown, not at the slider's depth
        # (the slider steps on the finest grid of all layers)
        pre_l = _layers.find_layer(self.viewer, "pre")
        world_zyx = _layers.on_shown_slice(self.viewer, pre_l, np.asarray(world_zyx)[-3:])[0]
        p = geometry.world_to_lps(world_zyx)
        q = geometry.lps_to_world(tfm.transform_points(self.owner.transform, p)[0])
        # the partner is drawn on the slice shown (its own slice may be another one): its depth
        # off this slice is written beside it
        shown = np.asarray(world_zyx, dtype=float).copy()
        depth = ""
        if self.viewer.dims.ndisplay == 2:
            normal = [a for a in range(3) if a not in list(self.viewer.dims.displayed)[-2:]]
            for a in normal:
                d = q[a] - shown[a]
                depth = (
                    f"T(p) {abs(d):.1f} mm {('SPL' if d >= 0 else 'IAR')[a]}"
                    if abs(d) >= 0.05
                    else "T(p)"
                )
                q[a] = shown[a]
        layer = self.viewer.layers[CROSS]
        scale, translate = np.asarray(layer.scale, float), np.asarray(layer.translate, float)
        layer.data = (np.array([shown, q]) - translate) / scale
        layer.features = {"note": np.array(["", depth or "T(p)"], dtype=object)}
        self._place_cross_text(layer, q)

    def _place_cross_text(self, layer, q) -> None:
        """The partner's note beside it, on the side towards the middle of the view (it ran
        off the canvas on the right)."""
        if self.viewer.dims.ndisplay != 2:
            return
        vert, horiz = list(self.viewer.dims.displayed)[-2:]
        cam = _layers.camera(self.viewer)
        screen_right = str(getattr(cam.orientation2d[1], "value", cam.orientation2d[1]))
        screen_down = str(getattr(cam.orientation2d[0], "value", cam.orientation2d[0]))
        sign_x = 1.0 if screen_right == "right" else -1.0  # world direction of screen-right
        sign_y = 1.0 if screen_down == "down" else -1.0
        middle = cam.center[-1]
        pre_l = _layers.find_layer(self.viewer, "pre")
        if pre_l is not None and _layers.grid(self.viewer).enabled:  # its own cell's middle
            lo, hi = (np.asarray(e, float) for e in pre_l.extent.world)
            middle = (lo[horiz] + hi[horiz]) / 2
        on_right = sign_x * (q[horiz] - middle) > 0
        half = CROSS_SIZE_MM / 2 / np.asarray(layer.scale, float)
        shift = np.zeros(3)
        shift[horiz] = (-1.0 if on_right else 1.0) * sign_x * half[horiz]
        shift[vert] = -sign_y * half[vert]
        anchor = "upper_right" if on_right else "upper_left"
        now = str(getattr(layer.text.anchor, "value", layer.text.anchor))
        if now != anchor or not np.allclose(layer.text.translation, shift):
            layer.text = {
                "string": "{note}",
                "color": CROSS_COLORS[1],
                "size": 9,
                "anchor": anchor,
                "translation": list(shift),
            }

    def _disconnect_mouse(self) -> None:
        if self._mouse_cb is not None:
            with contextlib.suppress(ValueError):
                self.viewer.mouse_move_callbacks.remove(self._mouse_cb)
            self._mouse_cb = None

    def case_changed(self) -> None:
        """A new case: the QA layers of the previous one go, its verdict is shown."""
        for name in (CHECKER, DIFF, EDGES, CROSS):
            self._remove(name)
        self._held.release()
        self._edges_cache = None
        self._ranges.clear()
        self._load_verdict()

    def stop(self) -> None:
        """Stop the flicker and the crosshair (the widget is closing)."""
        if self.flicker.isChecked():
            self.flicker.setChecked(False)  # restores the layers' look
        self._flick.stop()
        self._disconnect_mouse()
        self._held.release()  # no layer left hidden by a view of a closed widget

    # ------------------------------------------------------------------ verdict
    def _load_verdict(self) -> None:
        qa = self.owner.model.qa or {}
        if qa.get("verdict") in QA_VERDICTS:
            self.verdict.setCurrentText(qa["verdict"])
        self.comment.setText(qa.get("comment", ""))
        self._show_verdict(qa)

    def _show_verdict(self, qa: dict) -> None:
        if qa.get("earlier"):
            # recorded for another registration: the one in use was not reviewed
            self.verdict_label.setText(f"Registration in use: {qa_text(qa)}; record a verdict")
            self.verdict_label.setStyleSheet("color: #ff4040; font-weight: bold;")
            return
        when = f" ({reviewed_at_text(qa['reviewed_at'])})" if qa.get("reviewed_at") else ""
        text = f"Recorded: {qa.get('verdict', 'not reviewed')}{when}"
        if qa.get("comment"):
            text += f" - {qa['comment']}"
        self.verdict_label.setText(text)
        self.verdict_label.setStyleSheet("")

    def record_verdict(self) -> None:
        verdict, comment = self.verdict.currentText(), self.comment.text().strip()
        model = self.owner.model
        try:
            model.set_qa(verdict, comment)
        except Exception as exc:  # noqa: BLE001
            _layers.notify_error(exc)
            return
        self._show_verdict(model.qa)
        _layers.notify_info(f"registration QA: {verdict}")
