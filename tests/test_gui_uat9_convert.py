"""UAT s9 N1: napari's *Convert to Image* on the case's tumor Labels layer (the layer
list's context menu) leaves the case intact, and *Convert to Labels* makes the layer the
case's tumor again, edits followed (run under xvfb-run)."""

import _gui
import numpy as np
import pytest
from napari._app_model import get_app_model
from napari.layers import Image, Labels

from napari_ablation.widgets import _layers


@pytest.fixture
def on_sample(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
    _gui.fast_timers(session)
    if viewer.grid.enabled:
        viewer.grid.enabled = False
    return viewer, session, w


def _menu(viewer, layer, command):
    """The user selects ``layer`` and picks ``command`` in the layer list's context menu."""
    viewer.layers.selection = {layer}
    viewer.layers.selection.active = layer
    get_app_model().commands.execute_command(command).result()


def test_convert_tumor_to_image_and_back(on_sample, qtbot, tmp_path, monkeypatch):
    viewer, session, w = on_sample
    notes = []
    monkeypatch.setattr(_layers, "notify_info", lambda m: notes.append(str(m)))
    tumor = session.labels_layer("tumor")
    drawn = np.array(tumor.data, copy=True)
    mtm = w.big.text()

    _menu(viewer, tumor, "napari.layer.convert_to_image")
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    image = next(ly for ly in viewer.layers if ly.name == tumor.name)
    assert isinstance(image, Image)
    assert _layers.role_of(image) is None  # not taken as the tumor labels
    assert session.labels_layer("tumor") is None
    assert np.array_equal(session.model.labels("tumor"), drawn)  # the model keeps them
    assert session.all_saved and w.big.text() == mtm
    assert any("no longer a Labels layer" in n for n in notes)

    _menu(viewer, image, "napari.layer.convert_to_labels")
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    back = session.labels_layer("tumor")
    assert isinstance(back, Labels) and back.name == tumor.name
    assert any("the case's tumor again" in n for n in notes)
    assert session.model.labels("tumor") is back.data

    # a brush stroke on it is followed: margins, exports and the case folder
    zs, ys, xs = np.nonzero(np.asarray(back.data))
    k = int(np.median(zs))
    centre = np.asarray(back.translate) + np.asarray(back.scale) * (k, np.median(ys), np.median(xs))
    viewer.dims.point = (centre[0], *viewer.dims.point[1:])
    _gui.choose(viewer, back, "paint")
    back.brush_size = 6
    centre[2] += 10
    _gui.stroke_through(viewer, qtbot, centre, half_mm=4)
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60000)
    assert not np.array_equal(np.asarray(back.data), drawn)
    _gui.check_invariants(viewer, session, w, tmp_path)
