"""UAT s10 N9: in the Register dock Tab went from the tab bar to *Reset* (the history row
below the tabs), then into the tab's controls. The history buttons come after the shown
tab's controls, as the other docks go top to bottom (run under xvfb-run)."""

import _gui
from qtpy.QtCore import Qt


def _tab_stops(widget) -> list:
    """The widgets Tab reaches inside ``widget``, in order (its static focus chain)."""
    stops, f = [], widget
    for _ in range(5000):
        f = f.nextInFocusChain()
        if f is None or f is widget:
            break
        if (
            widget.isAncestorOf(f)
            and f.focusPolicy() & Qt.FocusPolicy.TabFocus
            and f.isVisibleTo(widget)
            and f.isEnabled()
        ):
            stops.append(f)
    return stops


def test_register_tab_order_goes_through_the_tab_before_the_history(
    make_napari_viewer, tmp_path, monkeypatch
):
    _viewer, _session, [(_d, reg)] = _gui.plugin_docks(
        make_napari_viewer, tmp_path, monkeypatch, None, "3. Register"
    )
    for panel in (reg.auto, reg.manual):
        reg.tabs.setCurrentWidget(panel)
        stops = _tab_stops(reg)
        inside = [i for i, w in enumerate(stops) if panel.isAncestorOf(w)]
        assert inside, [type(w).__name__ for w in stops]
        assert stops.index(reg.reset_btn) > max(inside), [type(w).__name__ for w in stops]
        assert stops.index(reg.tabs.tabBar()) < min(inside)
