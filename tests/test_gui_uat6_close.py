"""UAT s6 D9: closing the window while a PDF export is being written closes it at once;
the PDF is finished in the background, whole (temporary file, then renamed), with no
temporary file left. Run under xvfb-run."""

from __future__ import annotations

import _gui
import pytest
from qtpy.QtCore import Qt
from test_registration import TRUE, make_phantom

from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


def test_closing_during_a_pdf_export_does_not_wait_for_it(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer, marg, session = _gui.margins_menu_on_phantom(
        make_napari_viewer, tmp_path, monkeypatch, make_phantom(TRUE)
    )
    qtbot.waitUntil(lambda: not _layers.steps_pending(), timeout=60_000)
    qtbot.mouseClick(marg.run_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: _gui.idle(session, marg) and marg._current_interval() is not None,
        timeout=180_000,
    )
    out = tmp_path / "exports"
    out.mkdir()
    pdf = out / "margin.pdf"
    export = marg.export_async(pdf)  # written in the background
    assert export is not None
    viewer.close()  # the window's close button
    # the window is gone before the PDF (the report's 3D picture alone takes seconds)
    assert not pdf.exists()
    qtbot.waitUntil(lambda: not export.is_alive(), timeout=180_000)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    assert [p.name for p in out.iterdir()] == ["margin.pdf"]  # no temporary file left
