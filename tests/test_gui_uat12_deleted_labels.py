"""UAT s12 N3: the user deletes the case's tumor (or ablation) labels layer from the layer
list: the Margins widget went on saying "up to date" with the MTM of labels no longer on
screen, the margin layer still drawn. Now the figures made from them go, the status says
why, the case folder keeps the labels, and showing them again brings the margins back (run
under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest

from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import OUTPUT_ROLES

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("role", ["tumor", "ablation"])
def test_deleting_a_labels_layer_withdraws_its_margins(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, role
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, w, seg = _gui.segment_on_sample(viewer, qtbot, tmp_path, "liver_ct")
    mtm = w.big.text()
    assert any(ch.isdigit() for ch in mtm)
    on_disk = session.model.folder / f"{role}.nii.gz"
    before = on_disk.read_bytes()

    # the user selects the layer in the layer list and presses its delete button
    layer = session.labels_layer(role)
    viewer.layers.selection = {layer}
    _gui.click(qtbot, viewer.window._qt_viewer.layerButtons.deleteButton)
    qtbot.waitUntil(lambda: f"{role} layer deleted" in w.status.text(), timeout=30_000)
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60_000)
    qtbot.wait(300)  # (the figures are removed in steps)
    assert layer not in viewer.layers
    assert not any(ch.isdigit() for ch in w.big.text()), w.big.text()
    assert not [ly.name for ly in viewer.layers if _layers.role_of(ly) in OUTPUT_ROLES]
    assert _gui.stale_readout(viewer, session, w) is None
    assert on_disk.read_bytes() == before  # nothing annotated is lost

    # Compute now says why, in one line
    _gui.click(qtbot, w.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=60_000)
    assert f"{role} layer deleted" in w.status.text()
    assert not any(ch.isdigit() for ch in w.big.text())

    # shown again (Segment > Create / edit labels): the margins come back
    _gui.create_labels(qtbot, seg, role)
    qtbot.waitUntil(lambda: _gui.idle(session, w) and w.big.text() == mtm, timeout=60_000)
    assert "up to date" in w.status.text()
    assert on_disk.read_bytes() == before
    _gui.check_invariants(viewer, session, w, tmp_path)
