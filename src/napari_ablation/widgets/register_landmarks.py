"""The "Landmarks" tab of Register: paired points on pre and post, residuals, the fit.

One Points layer on pre and one on post; a click gets the pair label of
``core.landmarks.next_pair_label`` (the oldest pair waiting for a partner, else a new
one) and pairs are coloured alike. The landmarks are stored in the case model; Fit makes
the least-squares rigid fit a "landmarks" step of the model's registration history.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ..core import geometry
from ..core import landmarks as lm
from ..core.errors import AblationError, one_line
from . import _layers
from .session import CASE_ROLES

ROLES = ("landmarks_pre", "landmarks_post")
#: Register's and Margins' line while the landmarks differ from those of the fit in use
LANDMARKS_CHANGED_TEXT = "landmarks changed since the fit: press Fit (Register > Landmarks)"
PAIR_COLORS = [
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
]


def pair_color(label: str) -> str:
    try:
        k = int(float(label)) - 1
    except ValueError:
        k = sum(map(ord, label))
    return PAIR_COLORS[k % len(PAIR_COLORS)]


def _other(role: str) -> str:
    return "landmarks_post" if role == "landmarks_pre" else "landmarks_pre"


class LandmarksPanel(QWidget):
    def __init__(self, owner, parent=None):
        super().__init__(parent)
        self.owner = owner
        self.viewer = owner.viewer
        self._order: list[tuple[str, str]] = []  # (layer role, pair) in click order
        self._counts: dict[str, int] = {}
        #: each landmark layer's data as last seen (after its snap): a row not in it is new
        self._seen: dict[str, np.ndarray] = {}
        self._sync = False
        self._follow_active = False
        # image visibility before a landmark layer was chosen
        #: the layers hidden or shown for the landmark view, with their visibility before it
        self._shown_before: list[tuple[object, bool]] = []
        self._left_view = None  # the landmark layer whose view was left (Compute margins)
        self._fit_cache: tuple | None = None  # (transform version, tumor version, fit)

        v = _layers.scroll_body(self)  # scrolls, never squeezed, in a narrow dock
        row = QHBoxLayout()
        self.add_btn = QPushButton("Landmark layers")
        self.add_btn.setToolTip("Add (or select) the Points layers on pre and on post")
        self.undo_btn = QPushButton("Remove last")
        self.undo_btn.setToolTip("Remove the last point placed")
        self.fit_btn = QPushButton("Fit")
        for b in (self.add_btn, self.undo_btn):
            row.addWidget(b)
        v.addLayout(row)
        v.addWidget(self.fit_btn)  # its own row: the dock can stay narrow
        self.next_label = QLabel("")
        self.next_label.setWordWrap(True)
        v.addWidget(self.next_label)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["pair", "residual (mm)", "status"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setTabKeyNavigation(False)  # read-only: one Tab leaves it
        v.addWidget(self.table)
        self.fit_label = QLabel("")
        self.fit_label.setWordWrap(True)
        v.addWidget(self.fit_label)
        self.add_btn.clicked.connect(self._landmark_layers_in_steps)
        self.undo_btn.clicked.connect(lambda _checked=False: self.remove_last_point())
        self.fit_btn.clicked.connect(self.fit)
        if _layers.find_layer(self.viewer, "landmarks_pre") is None:
            self._load_from_model()  # landmarks saved in the case come back
        self.show_fit()

    # ------------------------------------------------------------------ layers
    def landmark_layers(self):
        """The pre and post landmark Points layers (created if missing); pre becomes active (the
        user asked)."""
        layers = [self._layer(role, create=True) for role in ROLES]
        if not self._follow_active:
            _layers.connect_while_alive(
                self.viewer.layers.selection.events.active, self, self._on_active_layer
            )
            self._follow_active = True
        self._refresh()
        self.viewer.layers.selection.active = layers[0]
        layers[0].mode = "add"
        return layers

    def _landmark_layers_in_steps(self) -> None:
        """The button: :meth:`landmark_layers`, one new layer per event-loop iteration; one
        line naming the image missing while pre or post is not loaded (UAT s12 N3)."""
        if self._missing_images():
            return
        steps = [lambda r=role: self._layer(r, create=True) for role in ROLES]
        _layers.run_in_steps([*steps, self.landmark_layers], owner=self)

    def _layer(self, role: str, create: bool = False):
        layer = _layers.find_layer(self.viewer, role)
        if layer is None and create:
            img = _layers.find_layer(self.viewer, "pre" if role == "landmarks_pre" else "post")
            grid = (
                {"scale": tuple(img.scale), "translate": tuple(img.translate)}
                if img is not None
                else {}
            )
            layer = self.viewer.add_points(
                np.empty((0, 3)),
                name=_layers.ROLES[role],
                ndim=3,
                size=6,
                symbol="disc" if role == "landmarks_pre" else "ring",
                features={"pair": np.array([], dtype=object)},
                text={"string": "{pair}", "color": "white", "size": 10, "anchor": "upper_left"},
                border_color="white",
                border_width=0.1,
                metadata={_layers.META: {"role": role}},
                units=("mm", "mm", "mm"),
                axis_labels=geometry.AXIS_LABELS,
                **grid,
            )
            layer.events.data.connect(lambda e, r=role: self._on_points_changed(r, e))
            # Ctrl-Z on a landmark layer takes back its last click, as on a labels layer a
            # stroke (napari's Points layer has no undo: UAT s13 N6)
            layer.bind_key(
                "Control-Z", lambda _ly, r=role: self.remove_last_point(r), overwrite=True
            )
            _layers.arrange(self.viewer)  # post landmarks with post space, under pre
        return layer

    def _on_active_layer(self, event=None) -> None:
        """Choosing a landmark layer shows the anatomy it is clicked on: the image of its
        side (raw post for post landmarks, pre for pre landmarks) and the landmark layers;
        every other layer (labels, margins, QA views, the other image) is hidden until the
        user chooses another layer, then all are shown as they were. In the grid view both
        images stay, each in its own cell, for the pairs to be found side by side (UAT s11
        N7: the other cell was left black)."""
        active = self.viewer.layers.selection.active
        role = _layers.role_of(active)
        if active is None or (role not in ROLES and role not in (None, *CASE_ROLES)):
            # a selection being rebuilt, or a layer the plugin just made (napari activates
            # it): not the user's choice
            return
        if role in ROLES and _layers.unwrapped(active) is self._left_view:
            return  # the user asked for another view (Compute margins) with this layer active
        self._left_view = None
        if role not in ROLES:
            self._restore_view()
            return
        if not self._shown_before:
            self._shown_before = [(ly, ly.visible) for ly in self.viewer.layers]
        images = {"pre" if role == "landmarks_pre" else "post"}
        if _layers.grid(self.viewer).enabled:
            images = {"pre", "post"}
        layers = list(self.viewer.layers)
        for ly in layers:  # the images first: post's visibility carries the raw ablation's
            if _layers.role_of(ly) in images:
                _layers.set_changed(ly, visible=True)
        for ly in layers:
            r = _layers.role_of(ly)
            if r not in images and r not in ROLES:
                _layers.set_changed(ly, visible=False)

    def _restore_view(self) -> None:
        before, self._shown_before = self._shown_before, []
        layers = self.viewer.layers
        for ly, visible in sorted(before, key=lambda lv: _layers.role_of(lv[0]) != "post"):
            if ly in layers:
                _layers.set_changed(ly, visible=visible)

    def leave_view(self) -> None:
        """Another view was asked for (Compute margins) while a landmark layer is active:
        the layers are shown as they were before the landmark view."""
        active = self.viewer.layers.selection.active
        if self._shown_before and _layers.role_of(active) in ROLES:
            self._left_view = _layers.unwrapped(active)
            self._restore_view()

    @staticmethod
    def _to_data(layer, points_lps) -> np.ndarray:
        world = geometry.lps_to_world(np.asarray(points_lps, dtype=float).reshape(-1, 3))
        return ((world - np.asarray(layer.translate)) / np.asarray(layer.scale)).reshape(-1, 3)

    @staticmethod
    def _to_lps(layer) -> np.ndarray:
        data = np.asarray(layer.data, dtype=float).reshape(-1, 3)
        return geometry.world_to_lps(data * np.asarray(layer.scale) + np.asarray(layer.translate))

    def pairs_of(self, role: str) -> list[str]:
        layer = self._layer(role)
        if layer is None or len(layer.data) == 0:
            return []
        return [str(v) for v in layer.features["pair"]]

    def next_pair(self, role: str) -> str:
        return lm.next_pair_label(self.pairs_of(role), self.pairs_of(_other(role)))

    def _set_points(self, layer, data, pairs) -> None:
        self._sync = True
        try:
            if data is not None:
                layer.data = data
            layer.features = {"pair": np.array(pairs, dtype=object)}
        finally:
            self._sync = False
        self._seen[_layers.role_of(layer)] = np.array(layer.data, dtype=float).reshape(-1, 3)

    def _snap_to_shown_slice(self, role: str, layer) -> None:
        """Points placed or moved through the layer (a mouse click, ``layer.add``, a drag,
        ``layer.data = ...``) lie on the slice of their image that is shown: their
        through-plane coordinate goes to that slice's centre, in-plane stays where clicked.
        The slider steps on the finest grid (post 2.5 mm): its position is not a slice of
        pre (3 mm), and a landmark there is up to half a slice off the anatomy clicked."""
        data = np.array(layer.data, dtype=float).reshape(-1, 3)
        seen = self._seen.get(role, np.empty((0, 3)))
        known = {tuple(row) for row in seen}
        new = [i for i in range(len(data)) if tuple(data[i]) not in known]
        image = _layers.find_layer(self.viewer, "pre" if role == "landmarks_pre" else "post")
        if new and image is not None:
            world = np.array([layer.data_to_world(data[i]) for i in new])
            snapped = _layers.on_shown_slice(self.viewer, image, world)
            for i, w in zip(new, snapped):
                data[i] = layer.world_to_data(w)
            if not np.array_equal(data, np.asarray(layer.data, dtype=float)):
                self._set_points(layer, data, [str(v) for v in layer.features["pair"]])
        self._seen[role] = np.array(layer.data, dtype=float).reshape(-1, 3)

    def _on_points_changed(self, role: str, event=None) -> None:
        if self._sync:
            return
        layer = self._layer(role)
        if layer is None:
            return
        action = getattr(event, "action", None)
        action = getattr(action, "value", action)
        if action not in (None, "added", "removed", "changed"):
            return  # the "adding"/"removing" pre-events
        if action != "removed":
            self._snap_to_shown_slice(role, layer)
        else:
            self._seen[role] = np.array(layer.data, dtype=float).reshape(-1, 3)
        n = len(layer.data)
        pairs = [str(v) for v in layer.features["pair"]] if n else []
        before = self._counts.get(role, 0)
        if n > before or any(p in lm._EMPTY_LABELS for p in pairs):
            # clicked points arrive with feature_defaults (the expected pair): settle them
            fixed = lm.settle_labels(pairs, self.pairs_of(_other(role)))
            self._order += [(role, p) for p in fixed[before:]]
            if fixed != pairs:
                self._set_points(layer, None, fixed)
        self._counts[role] = n
        self._refresh()
        self._store()

    def add_landmark(self, role: str, point_lps, pair: str | None = None) -> str:
        """Add a landmark (LPS mm) to the pre or post layer, as a click would; returns its pair
        label."""
        pre_l, post_l = self.landmark_layers()
        layer = pre_l if role == "landmarks_pre" else post_l
        label = pair if pair is not None else self.next_pair(role)
        data = np.vstack([np.asarray(layer.data).reshape(-1, 3), self._to_data(layer, [point_lps])])
        self._set_points(layer, data, [*self.pairs_of(role), label])
        self._order.append((role, label))
        self._refresh()
        self._store()
        return label

    def remove_last_point(self, only: str | None = None) -> None:
        """Undo the last landmark click (misclick): the last of all (*Remove last*), or with
        ``only`` (a role of :data:`ROLES`; Ctrl-Z on that layer) the last on that layer."""
        while True:
            at = [i for i, (r, _l) in enumerate(self._order) if only in (None, r)]
            if not at:
                break
            role, label = self._order.pop(at[-1])
            layer = self._layer(role)
            pairs = self.pairs_of(role)
            if layer is None or label not in pairs:
                continue
            i = len(pairs) - 1 - pairs[::-1].index(label)
            keep = [j for j in range(len(pairs)) if j != i]
            self._set_points(
                layer, np.asarray(layer.data)[keep].reshape(-1, 3), [pairs[j] for j in keep]
            )
            self._refresh()
            self._store()
            self.owner.set_status(f"removed point {label} from {layer.name}")
            return
        self.owner.set_status("no landmark click to undo")

    def points(self) -> tuple[dict, dict]:
        """``(pre, post)``: pair label -> LPS point."""
        out = []
        for role in ROLES:
            layer = self._layer(role)
            pts = {}
            if layer is not None and len(layer.data):
                pts = dict(zip(self.pairs_of(role), self._to_lps(layer)))
            out.append(pts)
        return out[0], out[1]

    # ------------------------------------------------------------------ shown state
    def _refresh(self) -> None:
        for role in ROLES:
            layer = self._layer(role)
            if layer is None:
                continue
            self._counts[role] = len(layer.data)
            pairs = self.pairs_of(role)
            if pairs:
                self._sync = True
                try:
                    layer.face_color = [pair_color(p) for p in pairs]
                finally:
                    self._sync = False
            layer.feature_defaults = {"pair": self.next_pair(role)}  # the label a click gets
        pre_pts, post_pts = self.points()
        self.next_label.setText(
            f"Next: pair {self.next_pair('landmarks_pre')} on pre, pair "
            f"{self.next_pair('landmarks_post')} on post "
            f"({len(set(pre_pts) & set(post_pts))} complete pairs). Select 'landmarks pre' "
            "and click on pre, "
            "'landmarks post' and click on the raw post image."
        )
        self._fill_table()

    def _fill_table(self) -> None:
        from qtpy.QtGui import QColor

        pre_pts, post_pts = self.points()
        labels = sorted(set(pre_pts) | set(post_pts), key=lm._sort_key)
        self.table.setRowCount(len(labels))
        fit = self.last_fit if not self.owner.model.landmarks_changed_since_fit else None
        for i, lab in enumerate(labels):
            item = QTableWidgetItem(lab)
            item.setForeground(QColor(pair_color(lab)))
            self.table.setItem(i, 0, item)
            res = fit.residuals.get(lab) if fit is not None else None
            self.table.setItem(i, 1, QTableWidgetItem("" if res is None else f"{res:.2f}"))
            if lab not in pre_pts:
                status = "missing on pre"
            elif lab not in post_pts:
                status = "missing on post"
            elif (
                fit is not None
                and res is not None
                and fit.n > 3
                and res == max(fit.residuals.values())
                and res > 1.5 * fit.rms_fre
            ):
                status = "largest residual: check this pair"
            else:
                status = "paired"
            self.table.setItem(i, 2, QTableWidgetItem(status))

    # ------------------------------------------------------------------ model
    def _store(self) -> None:
        pre_pts, post_pts = self.points()
        try:
            self.owner.model.set_landmarks(
                {"pre": lm.points_to_rows(pre_pts), "post": lm.points_to_rows(post_pts)}
            )
        except Exception as exc:  # noqa: BLE001
            _layers.notify_warning(f"could not store the landmarks: {one_line(exc)}")

    def _load_from_model(self) -> None:
        marks = self.owner.model.landmarks or {}
        if not (marks.get("pre") or marks.get("post")):
            return
        pre_l, post_l = self.landmark_layers()
        for layer, key in ((pre_l, "pre"), (post_l, "post")):
            pts = lm.as_points(marks.get(key, []))
            labels = sorted(pts, key=lm._sort_key)
            self._set_points(
                layer, self._to_data(layer, [pts[k] for k in labels]).reshape(-1, 3), labels
            )
        self._refresh()

    def case_changed(self) -> None:
        self._shown_before, self._left_view = [], None  # the layers of the previous case
        self._order.clear()
        self._load_from_model()
        self.show_fit()

    @property
    def last_fit(self) -> lm.LandmarkFit | None:
        """The fit of the current transform when it is a landmark fit (of the landmarks it
        was fitted to, kept with it in the case model), else None."""
        m = self.owner.model
        key = (m.version("transform"), m.version("tumor"))
        if self._fit_cache is not None and self._fit_cache[:2] == key:
            return self._fit_cache[2]
        marks, fit = m.fitted_landmarks, None
        if marks is not None:
            pre, post = self.owner.image("pre"), self.owner.image("post")
            try:
                fit = lm.fit_landmarks(
                    marks["pre"],
                    marks["post"],
                    center_lps=self.owner.tumor_center(),
                    fixed_spacing=None if pre is None else pre.GetSpacing(),
                    moving_spacing=None if post is None else post.GetSpacing(),
                )
            except AblationError:
                fit = None
        self._fit_cache = (*key, fit)
        return fit

    def show_fit(self) -> None:
        """The fit line and the residual column: those of the current transform's landmark
        fit; "changed since the fit" once the landmarks differ from those it used."""
        fit = self.last_fit
        if fit is None:
            self.fit_label.setText("")
        else:
            worst, worst_res = fit.worst()
            # (the tumor's centre, or the image's while no tumor is drawn: UAT s8 N10a)
            at = (
                "the tumor centre"
                if self.owner.model.tumor_centre_lps() is not None
                else "the image centre (no tumor drawn yet)"
            )
            text = (
                f"RMS residual {fit.rms_fre:.2f} mm over {fit.n} pairs (largest: pair {worst}, "
                f"{worst_res:.2f} mm). "
                f"Predicted error at {at}: "
                f"{fit.predicted_tre_at(self.owner.tumor_center()):.2f} mm "
                "(Fitzpatrick; the residual alone is not the error at the tumor)."
            )
            if self.owner.model.landmarks_changed_since_fit:
                text = (
                    f"{LANDMARKS_CHANGED_TEXT[0].upper()}{LANDMARKS_CHANGED_TEXT[1:]}. "
                    f"The registration in use is the fit of the landmarks before the change: {text}"
                )
            self.fit_label.setText(text)
        self._fill_table()

    def stop(self) -> None:
        pass

    def _missing_images(self) -> bool:
        """True, with one line naming the image missing (a notification and the status
        line), while the case has no pre or no post image: landmarks pair the two."""
        try:
            self.owner.pre_post()
        except AblationError as exc:
            _layers.notify_error(exc)
            self.owner.set_status(one_line(exc))
            return True
        return False

    def fit(self) -> lm.LandmarkFit | None:
        """Least-squares rigid fit of the landmark pairs; becomes the case's registration."""
        pre_pts, post_pts = self.points()
        owner = self.owner
        try:
            pre, post = owner.pre_post()  # (a pre image alone: UAT s12 N3)
            lm.check_inside(pre_pts, pre, "pre")
            lm.check_inside(post_pts, post, "post")
            fit = lm.fit_landmarks(
                pre_pts,
                post_pts,
                center_lps=owner.tumor_center(),
                fixed_spacing=pre.GetSpacing(),
                moving_spacing=post.GetSpacing(),
            )
        except AblationError as exc:
            _layers.notify_error(exc)
            owner.set_status(one_line(exc))
            return None
        for w in fit.warnings:
            _layers.notify_warning(w + " (fitted the complete pairs)")
        # the landmarks go with the transform into the case model: the fit line, the
        # residuals and the MTM interval stay those of this fit until the next Fit
        marks = {"pre": lm.points_to_rows(pre_pts), "post": lm.points_to_rows(post_pts)}
        owner.set_transform(
            fit.transform, "landmarks", f"{fit.n} pairs, RMS {fit.rms_fre:.2f} mm", landmarks=marks
        )
        return fit
