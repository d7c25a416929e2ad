"""UAT s9 N4: the Margins combos follow a renamed layer (a), hiding post and showing it
again leaves an ablation layer the user hid hidden (b), the Cohort widget's notes name
the covariates in words (c: napari's one-line toast hides underscores), and no red
"NO REGISTRATION" alarm while no case is open (d) (run under xvfb-run)."""

from __future__ import annotations

import _gui

from napari_ablation.core import samples
from napari_ablation.widgets import _layers
from napari_ablation.widgets.margin import NO_REGISTRATION, MarginWidget
from napari_ablation.widgets.session import CaseSession


def _items(combo):
    return [combo.itemText(i) for i in range(combo.count())]


def test_margins_combos_follow_a_renamed_layer(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
    tumor = session.labels_layer("tumor")
    assert w.tumor_combo.currentText() == tumor.name == "tumor"
    tumor.name = "Tumor (Dr A)"  # what the layer list's name editor sets
    assert "tumor" not in _items(w.tumor_combo)
    assert w.tumor_combo.currentText() == "Tumor (Dr A)"
    # a layer later given the old name is not taken for the tumor
    other = viewer.add_labels(tumor.data.copy() * 0, name="scratch")
    other.name = "tumor"
    assert session.labels_layer("tumor") is tumor
    assert w.tumor_combo.currentText() == "Tumor (Dr A)"


def test_post_shown_again_keeps_the_users_hidden_ablation(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    session, _w = _gui.margins_on_sample(viewer, qtbot, tmp_path)
    post = _layers.find_layer(viewer, "post")
    abl = session.labels_layer("ablation")
    # the link: post hidden hides the ablation labels drawn on it, shown shows them
    post.visible = False
    assert not abl.visible
    post.visible = True
    assert abl.visible
    # the user hides the ablation layer: post off and on leaves it hidden
    abl.visible = False
    post.visible = False
    post.visible = True
    assert not abl.visible


def test_cohort_notes_name_the_covariates_in_words(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    notes = []
    monkeypatch.setattr(_layers, "notify_info", lambda m: notes.append(str(m)))
    # one event: no Cox model
    coh, oc = _gui.cohort_statistics_dock(
        make_napari_viewer, tmp_path, monkeypatch, [0, 1, 0, 0, 0]
    )
    _gui.run_statistics(qtbot, coh, oc)
    cox = [n for n in notes if n.startswith("Cox model")]
    assert len(cox) == 3, notes
    assert "Cox model for tumor volume not estimable: 1 event" in cox
    assert not any("_" in n for n in cox), cox


def test_no_registration_alarm_without_a_case(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch)
    w = MarginWidget(viewer)
    viewer.window.add_dock_widget(w, name="Margins")
    assert "NO REGISTRATION" not in w.tx_label.text()
    assert "red" not in w.tx_label.styleSheet() and "#ff4040" not in w.tx_label.styleSheet()
    # a case with no registration: the alarm
    CaseSession.of(viewer).set_case(samples.load_sample("renal_mri"), tmp_path / "case")
    qtbot.waitUntil(lambda: NO_REGISTRATION in w.tx_label.text(), timeout=60_000)
    assert "#ff4040" in w.tx_label.styleSheet()
