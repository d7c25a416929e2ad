"""UAT s12 N2: while a Teach quiz question is open, the registration of the quiz case was
still changed from other widgets (Margins' File… and Identity), so the answer no longer
matched the question. The lock is the case model's (``CaseModel.edit_lock``): every control
that changes the registration (Register's tabs and Undo / Redo / Reset, Margins' File… and
Identity) is disabled and says why, a call made anyway is refused in one line, and all of
them work again once the answer is submitted (run under xvfb-run)."""

from __future__ import annotations

import threading

import _gui
import pytest
import SimpleITK as sitk
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractButton, QAbstractSlider, QAbstractSpinBox
from test_case_switch import _file_open_sample
from test_gui_uat12_teach_replaced import _click_row

from napari_ablation.core.errors import AblationError
from napari_ablation.widgets.teach import TeachWidget

pytestmark = pytest.mark.gui

LOCKED = "This case is in a quiz: its registration is locked"


@pytest.fixture
def messages():
    """The notifications shown while the test runs."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def _registration_controls(reg, margins) -> list:
    """Every control that changes the registration: the Automatic, Manual and Landmarks
    tabs' buttons, sliders and spin boxes, Undo / Redo / Reset, Margins' File… and Identity."""
    out = [reg.undo_btn, reg.redo_btn, reg.reset_btn, margins.tx_file_btn, margins.tx_identity_btn]
    for panel in (reg.auto, reg.manual, reg.landmarks):
        for kind in (QAbstractButton, QAbstractSlider, QAbstractSpinBox):
            out += panel.findChildren(kind)
    return out


def _state(model):
    tx = model.transform
    return (
        model.version("transform"),
        len(model.transform_history),
        None if tx is None else tuple(tx.GetParameters()),
    )


def _docks(make_napari_viewer, tmp_path, monkeypatch):
    """Register, Margins (as the Plugins menu opens them) and Teach docked, no case open.
    Returns ``(viewer, session, register, margins, teach)``."""
    viewer, session, ((_rd, reg), (_md, margins)) = _gui.plugin_docks(
        make_napari_viewer, tmp_path, monkeypatch, None, "3. Register", "4. Margins"
    )
    teach = TeachWidget(viewer)
    viewer.window.add_dock_widget(teach, name="Teach (quiz)", tabify=True)
    for t in threading.enumerate():  # (napari's unit registry, built lazily: see test_case_switch)
        if t.name == "napari-ablation-prewarm":
            t.join(60)
    return viewer, session, reg, margins, teach


def _locked(reg, margins) -> bool:
    return not any(c.isEnabled() for c in _registration_controls(reg, margins))


def test_registration_is_locked_while_a_quiz_question_is_open(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, messages
):
    viewer, session, reg, margins, teach = _docks(make_napari_viewer, tmp_path, monkeypatch)
    m = session.model
    tfm_file = tmp_path / "shift.tfm"
    shift = sitk.Euler3DTransform()
    shift.SetTranslation((4.0, -3.0, 2.0))
    sitk.WriteTransform(shift, str(tfm_file))
    with qtbot.capture_exceptions() as errors:
        qtbot.keyClicks(teach.trainee, "resident")
        teach.open_quiz(_gui.copy_quiz(tmp_path))
        _gui.teach_settled(qtbot, teach, margins, timeout=180_000)
        assert teach.case_id == "case_01" and teach.submit_btn.isEnabled()
        before = _state(m)

        # every control that changes the registration is disabled, and says why
        controls = _registration_controls(reg, margins)
        assert len(controls) > 15
        enabled = [c for c in controls if c.isEnabled()]
        assert not enabled, [getattr(c, "text", c.objectName)() for c in enabled]
        for btn in (margins.tx_file_btn, margins.tx_identity_btn):
            assert btn.toolTip().startswith(LOCKED), btn.toolTip()
        assert reg.status.text().startswith(LOCKED)

        # clicked anyway (each tab shown in turn), and Alt-Z: nothing changes
        for tab in (reg.auto, reg.manual, reg.landmarks):
            reg.tabs.setCurrentWidget(tab)
            qtbot.wait(50)
            for c in _registration_controls(reg, margins):
                if isinstance(c, QAbstractButton):
                    qtbot.mouseClick(c, Qt.LeftButton)
                else:
                    qtbot.keyClick(c, Qt.Key_Up)
        _gui.key(viewer, qtbot, Qt.Key_Z, Qt.AltModifier)
        qtbot.wait(300)
        assert not reg.auto.running
        assert _state(m) == before

        # what the buttons do, called anyway: refused in one line, nothing changed
        del messages[:]
        assert not margins.use_identity()
        assert not margins.load_transform_file(str(tfm_file))
        texts = [str(n.message) for n in messages]
        assert len(texts) == 2 and all(t.startswith(LOCKED) and "\n" not in t for t in texts)
        for call in (lambda: m.set_transform(shift, "manual"), m.reset_transform):
            with pytest.raises(AblationError, match=LOCKED):
                call()
        assert _state(m) == before

        # answered: the registration is the trainee's again
        teach.complete.setCurrentText("no")
        qtbot.keyClicks(teach.mtm, "3")
        _gui.click(qtbot, teach.submit_btn)
        _gui.teach_settled(qtbot, teach, margins, timeout=180_000)
        assert teach.revealed
        reg.tabs.setCurrentWidget(reg.auto)
        for c in (reg.auto.run_btn, reg.manual, reg.landmarks.fit_btn, reg.reset_btn):
            assert c.isEnabled()
        for btn in (margins.tx_file_btn, margins.tx_identity_btn):
            assert btn.isEnabled() and not btn.toolTip().startswith(LOCKED)
        _gui.click(qtbot, margins.tx_identity_btn)
        assert len(m.transform_history) == before[1] + 1
        assert margins.load_transform_file(str(tfm_file))
        assert m.transform.GetTranslation() == pytest.approx((4.0, -3.0, 2.0))
        assert not reg.status.text().startswith(LOCKED)
    assert not errors, [str(e[1]) for e in errors]


def test_lock_goes_with_the_quiz_case_and_comes_back_with_it(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """File > Open Sample over the open question: the quiz is paused and the other case's
    registration may be changed; the quiz case opened again from the list: locked again."""
    viewer, session, reg, margins, teach = _docks(make_napari_viewer, tmp_path, monkeypatch)
    with qtbot.capture_exceptions() as errors:
        qtbot.keyClicks(teach.trainee, "resident")
        teach.open_quiz(_gui.copy_quiz(tmp_path))
        _gui.teach_settled(qtbot, teach, margins, timeout=180_000)
        assert _locked(reg, margins)
        _file_open_sample(viewer, qtbot, "Renal cryoablation")
        qtbot.waitUntil(lambda: "sample_renal_mri" in str(session.model.folder), timeout=180_000)
        _gui.teach_settled(qtbot, teach, margins, timeout=180_000)
        assert teach._paused and not teach.submit_btn.isEnabled()
        for c in (reg.auto, reg.manual, reg.landmarks, reg.reset_btn):
            assert c.isEnabled()
        for btn in (margins.tx_file_btn, margins.tx_identity_btn):
            assert btn.isEnabled() and not btn.toolTip().startswith(LOCKED)
        _click_row(qtbot, teach, 0)
        qtbot.waitUntil(lambda: "case_01" in str(session.model.folder), timeout=180_000)
        _gui.teach_settled(qtbot, teach, margins, timeout=180_000)
        assert teach.submit_btn.isEnabled() and _locked(reg, margins)
        assert margins.tx_identity_btn.toolTip().startswith(LOCKED)
    assert not errors, [str(e[1]) for e in errors]
