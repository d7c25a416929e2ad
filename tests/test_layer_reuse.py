"""Layers the plugin reuses or adds in steps, without a window (napari's ViewerModel):
a case's labels layer refilled with another case's labels keeps no undo history of the
previous case (through napari's public API), and a grid stride held while a layer is added
follows the layers once released."""

from __future__ import annotations

import numpy as np
from napari.components import ViewerModel
from napari.layers import Labels

from napari_ablation.widgets import _layers


def test_a_refilled_labels_layer_cannot_undo_into_the_previous_case():
    layer = Labels(np.zeros((4, 8, 8), np.uint8))
    layer.mode = "paint"
    layer.brush_size = 3
    layer.paint((1, 4, 4), 1)  # a stroke on the previous case
    assert layer.data.any()
    layer.undo()
    layer.redo()  # (something in both the undo and, after the next undo, redo history)
    new = np.zeros((3, 6, 6), np.uint8)
    new[1, 2, 2] = 1
    layer.data = new  # the next case's labels, another size
    _layers.forget_undo(layer)
    layer.undo()  # Ctrl-Z
    assert np.array_equal(layer.data, new)
    layer.redo()  # Ctrl-Shift-Z
    assert np.array_equal(layer.data, new)
    assert layer.mode == "paint" and layer.editable  # the user's tool stays
    layer.paint((1, 4, 4), 1)  # the new case's own history works
    layer.undo()
    assert np.array_equal(layer.data, new)


def test_a_read_only_labels_layer_stays_read_only():
    layer = Labels(np.zeros((4, 8, 8), np.uint8))
    layer.editable = False  # e.g. locked by an open quiz question
    _layers.forget_undo(layer)
    assert not layer.editable


def _with_role(layer, role):
    layer.metadata = {_layers.META: {"role": role}}
    return layer


def test_a_held_grid_stride_follows_the_layers_once_released():
    viewer = ViewerModel()
    for role, kind in (
        ("post", "image"),
        ("ablation", "labels"),
        ("pre", "image"),
        ("tumor", "labels"),
    ):
        data = np.zeros((4, 8, 8), np.uint8 if kind == "labels" else np.float32)
        _with_role(getattr(viewer, f"add_{kind}")(data), role)
    _layers.arrange(viewer)
    grid = _layers.grid(viewer)
    assert grid.stride == -2
    release = _layers.hold_stride(viewer)
    _with_role(viewer.add_labels(np.zeros((2, 4, 4), np.uint8)), "margin")
    _layers.arrange(viewer)
    assert grid.stride == -2  # held: set in a later step
    release()
    assert grid.stride == -3  # pre, tumor and margin share the pre cell
    release()  # a second call changes nothing
    _with_role(viewer.add_labels(np.zeros((2, 4, 4), np.uint8)), "ablation_registered")
    _layers.update_grid_stride(viewer)
    assert grid.stride == -4
