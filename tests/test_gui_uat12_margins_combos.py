"""UAT s12 N1: with the Margins widget docked, a sample opened over the open case (napari's
File > Open Sample, or the Load widget's *Open sample*) left the widget's tumor and ablation
choices blank: the case's layers were reused for the new case (no layer event), and the
widget compared them with the session's through napari's proxy (a new object on each
access), so it took them for layers of another grid. Compute then runs on the layers the
choices show (run under xvfb-run)."""

from __future__ import annotations

import _gui
import pytest
from test_case_switch import sample_action

from napari_ablation.core import margin as core_margin
from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def _choices(marg) -> tuple[str, str]:
    return marg.tumor_combo.currentText(), marg.ablation_combo.currentText()


@pytest.mark.parametrize("how", ["file_menu", "load_widget"])
def test_margins_choices_follow_the_sample_opened(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, how
):
    # the docks opened from the Plugins menu, Margins first
    viewer, session, ((_d, marg), (_d2, load)) = _gui.plugin_docks(
        make_napari_viewer, tmp_path, monkeypatch, None, "4. Margins", "1. Load case"
    )
    assert session is marg.session

    def open_sample(key):
        load.sample.setCurrentIndex(load.sample.findData(key))
        _gui.click(qtbot, load.sample_btn)

    def opened(name):
        return (
            name in session.model.info.get("name", "")
            and session.labels_layer("ablation") is not None
            and session.opening is None
            and load._worker is None
            and not _layers.steps_pending()
        )

    open_sample("renal_mri")
    qtbot.waitUntil(lambda: opened("renal"), timeout=120_000)
    assert _choices(marg) == ("tumor", "ablation")

    if how == "file_menu":
        sample_action(viewer, "Liver microwave").trigger()  # File > Open Sample
    else:
        open_sample("liver_ct")
    qtbot.waitUntil(lambda: opened("liver"), timeout=120_000)
    tumor, ablation = session.labels_layer("tumor"), session.labels_layer("ablation")
    assert _choices(marg) == (tumor.name, ablation.name)

    # the user picks them in the choices (what the combo's list does on a click): they are
    # the case's already, so nothing is replaced, renamed or saved aside
    for combo in (marg.tumor_combo, marg.ablation_combo):
        combo.activated.emit(combo.currentIndex())
    qtbot.wait(100)
    for role, layer in (("tumor", tumor), ("ablation", ablation)):
        assert _layers.unwrapped(session.labels_layer(role)) is _layers.unwrapped(layer)
    assert _choices(marg) == (tumor.name, ablation.name) == ("tumor", "ablation")
    assert not list(session.model.folder.glob("*previous*"))

    _gui.click(qtbot, marg.run_btn)  # Compute margins
    qtbot.waitUntil(lambda: _gui.idle(session, marg), timeout=120_000)
    chosen = [viewer.layers[name] for name in _choices(marg)]
    m = session.model
    fresh = core_margin.analyze_margin(
        _gui.layer_mask(chosen[0]), _gui.layer_mask(chosen[1]), m.transform, m.threshold
    )
    assert marg.big.text() == fresh.margin_text()
    assert m.labels("tumor") is chosen[0].data and m.labels("ablation") is chosen[1].data
