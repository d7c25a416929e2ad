"""The plugin's layers are added without touching the user's selection, also through the
proxy napari hands to plugin widgets (UAT s5, Teach stalls): there every access returns a
new wrapper, the selection looked changed after each added layer, and was cleared and set
again, two switches of napari's layer-controls panel on the GUI thread each time.

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat5_selection.py``.
"""

from __future__ import annotations

import _gui

from napari_ablation.core import samples
from napari_ablation.widgets.session import CaseSession


def _real(obj):
    return getattr(obj, "__wrapped__", obj)  # (the session holds the proxy's layers)


def test_margin_layers_added_through_the_proxy_leave_the_selection_alone(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    viewer = make_napari_viewer(show=True)
    _dock, margins = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    assert margins.viewer is not viewer  # napari's public-only proxy
    session = CaseSession.of(viewer)
    _gui.fast_timers(session)
    case = samples.load_sample("renal_mri")
    case.transform = samples.true_transform(case)
    session.set_case(case, tmp_path / "case")
    tumor = _real(session.labels_layer("tumor"))
    viewer.layers.selection.active = tumor  # the user's choice
    seen = []
    viewer.layers.selection.events.active.connect(lambda e: seen.append(_real(e.value)))
    _gui.click(qtbot, margins.run_btn)
    qtbot.waitUntil(lambda: _gui.idle(session, margins), timeout=180000)
    qtbot.wait(100)
    assert {ly.name for ly in viewer.layers} >= {"margin", "minimal margin point"}
    assert _real(viewer.layers.selection.active) is tumor
    # never cleared and set again while the margin layers were added
    assert all(a is tumor for a in seen), [getattr(a, "name", a) for a in seen]
