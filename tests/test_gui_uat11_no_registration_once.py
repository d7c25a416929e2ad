"""UAT s11 N8: computed without a registration, the Margins widget said "NO REGISTRATION"
twice, in red, on the registration line and under the MTM; the alarm is now said once, next
to the figures it is about, and comes back on the registration line when they go.

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat11_no_registration_once.py``.
"""

from __future__ import annotations

import pytest
from test_margin_widget import _compute, _setup, phantom_case

from napari_ablation.widgets.margin import NO_REGISTRATION, NO_REGISTRATION_SHOWN

RED = "#ff4040"


def _shown(widget, text):
    return [
        lab.text()
        for lab in (widget.tx_label, widget.registration_warning, widget.status, widget.big)
        if text in lab.text() and lab.isVisibleTo(widget)
    ]


def test_no_registration_is_said_once(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    case = phantom_case()
    _viewer, w = _setup(make_napari_viewer, tmp_path, monkeypatch, case=case)
    w.model.reset_transform()  # the Identity button: computed without registration
    qtbot.waitUntil(lambda: NO_REGISTRATION in w.tx_label.text(), timeout=10000)
    assert RED in w.tx_label.styleSheet()  # before the figures: the alarm on the input
    res = _compute(w, qtbot)
    assert res is not None
    assert _shown(w, "NO REGISTRATION") == [NO_REGISTRATION]
    assert w.registration_warning.isVisibleTo(w) and RED in w.registration_warning.styleSheet()
    assert w.tx_label.text() == NO_REGISTRATION_SHOWN and RED not in w.tx_label.styleSheet()
    # a registration file: the line names it; the figures computed without it keep the alarm
    # until they are recomputed
    tfm = tmp_path / "t.tfm"
    import SimpleITK as sitk

    sitk.WriteTransform(case.transform, str(tfm))
    assert w.load_transform_file(str(tfm))
    qtbot.waitUntil(lambda: "NO REGISTRATION" not in w.tx_label.text(), timeout=10000)
    _compute(w, qtbot, previous=res)
    assert not w.registration_warning.isVisibleTo(w)
    assert _shown(w, "NO REGISTRATION") == []
    # back to the identity: the alarm is on the registration line again, then under the
    # figures once they are recomputed without registration
    res = w.result
    w.model.reset_transform()
    qtbot.waitUntil(lambda: NO_REGISTRATION in w.tx_label.text(), timeout=10000)
    assert RED in w.tx_label.styleSheet()
    _compute(w, qtbot, previous=res)
    assert _shown(w, "NO REGISTRATION") == [NO_REGISTRATION]


@pytest.mark.parametrize("text", [NO_REGISTRATION_SHOWN])
def test_the_quiet_line_names_no_registration(text):
    assert text.startswith("registration: none")
