"""UAT s6 D3: the user removes every layer right after a registration put its overlay
("post (registered)") in the viewer: napari removes the selection one layer at a time,
and the plugin must not remove a layer of that selection itself (napari's loop then
raises ``ValueError: ... is not in list``). Run under xvfb-run."""

from __future__ import annotations

import _gui
import pytest
from qtpy.QtCore import Qt
from test_registration import TRUE, make_phantom

from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("order", ["list", "reversed"])
def test_delete_all_right_after_the_registration_overlay(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, order
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    _d, reg = viewer.window.add_plugin_dock_widget("napari-ablation", "3. Register")
    viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    session = reg.session
    pre, post, tumor, ice = make_phantom(TRUE)
    case = Case(pre=pre, post=post, tumor=tumor, ablation=ice, info={"name": "phantom"})
    session.set_case(case, tmp_path / "phantom")
    qtbot.waitUntil(lambda: session.labels_layer("ablation") is not None, timeout=60_000)
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    # a registration ends: the model's transform changes and its overlay is added
    reg.set_transform(TRUE.GetInverse(), "automatic")
    qtbot.waitUntil(lambda: reg.registered_layer() is not None, timeout=60_000)
    layers = list(viewer.layers)
    # the user selects every layer (Ctrl-A in the layer list, or clicks in either order)
    # and presses the layer list's delete button at once
    viewer.layers.selection.clear()
    viewer.layers.selection.update(layers if order == "list" else layers[::-1])
    qtbot.mouseClick(viewer.window._qt_viewer.layerButtons.deleteButton, Qt.MouseButton.LeftButton)
    qtbot.wait(300)
    assert len(viewer.layers) == 0
    assert session.model.pre is None and session.model.post is None


def test_a_case_opened_over_a_user_label_file_keeps_its_layer_names(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """UAT s6 D10: the user opened a label file as the case's ablation ("ablation [1]", the
    previous layer kept as ablation_previous); the next case opened into the same layers
    showed its ablation as "ablation [1]"."""
    import numpy as np

    pre, post, tumor, ice = make_phantom(TRUE)
    viewer, _marg, session = _gui.margins_menu_on_phantom(
        make_napari_viewer, tmp_path, monkeypatch, (pre, post, tumor, ice)
    )
    old = session.labels_layer("ablation")
    # a label file of the case's grid opened through the plugin's reader (role: ablation)
    viewer.add_labels(
        np.array(old.data, copy=True),
        name="ablation",
        scale=old.scale,
        translate=old.translate,
        metadata={_layers.META: {"role": "ablation"}},
    )
    qtbot.wait(100)
    assert session.labels_layer("ablation").name == "ablation [1]"
    session.set_case(
        Case(pre=pre, post=post, tumor=tumor, ablation=ice, info={"name": "b"}), tmp_path / "b"
    )
    names = sorted(ly.name for ly in viewer.layers if _layers.role_of(ly) is not None)
    assert names == ["ablation", "post", "pre", "tumor"], names
