"""Where the plugin's widgets dock: narrow, tabbed together, with short tab titles.

* Narrow: every widget fits a dock of :data:`DOCK_WIDTH` pixels (long labels wrap, spin
  boxes and combo boxes do not size themselves to their longest text), so the side-by-side
  images keep the width of the window.
* Tabbed: a widget napari docks (from the Plugins menu, the demo or a script) joins the
  plugin's docks already open in its dock area as one more tab, instead of squeezing them
  into a vertical stack; napari's own docks (layer list, controls, console) are left alone.
* Short titles: the tab shows "4. Margins", not napari's cut "4. Margins (napari-ablation)".

:func:`fit_when_docked` does all three once the widget is built and docked (the session
calls it for every widget it serves).
"""

from __future__ import annotations

import weakref

#: width of the plugin's dock area (px): the canvas keeps most of the window
DOCK_WIDTH = 340
#: a label wider than this wraps
LABEL_WRAP_PX = 200
#: the narrowest a spin box gets (its value, unit and napari's +/- buttons still show)
SPIN_MIN_PX = 88
#: the narrowest a combo box gets (its list still shows every entry in full)
COMBO_MIN_PX = 96
#: the manifest's widget names -> their tab titles (the tabs keep the workflow's order; at
#: :data:`DOCK_WIDTH` the numbered names would be cut)
TAB_TITLES = {
    "1. Load case": "Load",
    "2. Segment": "Segment",
    "3. Register": "Register",
    "4. Margins": "Margins",
    "5. Cohort": "Cohort",
    "Teach (quiz)": "Teach",
}

#: the plugin's dock tabs: less padding than napari's theme, so that every title shows
TAB_STYLE = "QTabBar::tab { padding-left: 4px; padding-right: 4px; margin-right: 1px; }"
#: the size (px) of the windows the plugin opens (demo, teaching mode) when the screen has room
WINDOW_SIZE = (1500, 950)

_OURS: list[weakref.ref] = []  # the plugin's widgets, in the order they were opened


def tab_title(dock_title: str) -> str:
    """The short tab title of a dock napari named ``"<widget> (<plugin>)"`` (the plugin's
    package or display name); other titles are returned as they are."""
    for name, title in TAB_TITLES.items():
        if dock_title == name or dock_title.startswith(f"{name} ("):
            return title
    return dock_title


def fit_narrow(widget) -> None:
    """Let ``widget`` and its children shrink to :data:`DOCK_WIDTH`: long labels wrap (and
    scroll areas scroll rather than squeeze them), spin boxes and combo boxes stop asking
    for the width of their longest text."""
    from qtpy.QtWidgets import QAbstractSpinBox, QComboBox, QLabel, QScrollArea

    for label in widget.findChildren(QLabel):
        pm = label.pixmap()
        if label.wordWrap() or not label.text() or (pm is not None and not pm.isNull()):
            continue
        if label.sizeHint().width() > LABEL_WRAP_PX:
            label.setWordWrap(True)
    for area in widget.findChildren(QScrollArea):
        keep_whole_height(area)
    # (a minimum width a widget was given on purpose is kept)
    for spin in widget.findChildren(QAbstractSpinBox):
        if spin.minimumWidth() == 0 and spin.minimumSizeHint().width() > SPIN_MIN_PX:
            spin.setMinimumWidth(SPIN_MIN_PX)
    for combo in widget.findChildren(QComboBox):
        if combo.minimumWidth() == 0 and combo.minimumSizeHint().width() > COMBO_MIN_PX:
            combo.setMinimumWidth(COMBO_MIN_PX)


def _whole_height_filter():
    """An event filter keeping a scroll area's content as tall as its word-wrapped text
    needs at its width: the scroll area sizes it by its layout's minimum, which ignores word
    wrap, so a label that grows to three lines (a status, the MTM interval) was squeezed
    over its neighbours instead of the area scrolling."""
    from qtpy.QtCore import QEvent, QObject

    class WholeHeight(QObject):
        def eventFilter(self, obj, event):
            if event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.Resize):
                lay = obj.layout()
                if lay is not None and lay.hasHeightForWidth() and obj.width() > 0:
                    need = lay.totalHeightForWidth(obj.width())
                    if need > 0 and obj.minimumHeight() != need:
                        obj.setMinimumHeight(need)
            return False

    return WholeHeight


def keep_whole_height(area) -> None:
    """Make the content of the scroll area ``area`` scroll instead of being squeezed when
    its wrapped text needs more height (see :func:`_whole_height_filter`)."""
    body = area.widget()
    if body is None or getattr(area, "_napari_ablation_whole", None) is not None:
        return
    area._napari_ablation_whole = _whole_height_filter()(area)  # parented: lives with it
    body.installEventFilter(area._napari_ablation_whole)


def _alive(widget) -> bool:
    """False once the widget's C++ object is deleted (its dock closed)."""
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True


def dock_of(widget):
    """The QDockWidget holding ``widget`` (None while it is not docked, or once deleted)."""
    from qtpy.QtWidgets import QDockWidget

    if widget is None or not _alive(widget):
        return None
    w = widget.parentWidget()
    while w is not None and not isinstance(w, QDockWidget):
        w = w.parentWidget()
    return w


def join_plugin_docks(widget) -> None:
    """Give the dock of ``widget`` its short tab title and tab it with the plugin's other
    docks in its dock area (the first one open is sized to :data:`DOCK_WIDTH`)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QMainWindow

    dock = dock_of(widget)
    win = dock.parentWidget() if dock is not None else None
    if not isinstance(win, QMainWindow):
        return
    dock.setWindowTitle(tab_title(dock.windowTitle()))
    if win.tabifiedDockWidgets(dock) or dock.isFloating():
        return  # already tabbed (the demo asks napari to), or the user floats it
    area = win.dockWidgetArea(dock)
    opened = [w for w in (r() for r in _OURS) if w is not None and _alive(w)]
    before = opened[: opened.index(widget)] if widget in opened else []
    siblings = [  # the plugin's docks opened before this one, in the same dock area
        d
        for d in (dock_of(w) for w in before)
        if d is not None
        and d is not dock
        and d.parentWidget() is win
        and not d.isFloating()
        and win.dockWidgetArea(d) == area
    ]
    if siblings:
        from qtpy.QtCore import QTimer

        win.tabifyDockWidget(siblings[-1], dock)  # after the last one opened
        # the one just opened in front, once its tab exists; titles whole
        QTimer.singleShot(0, lambda: _alive(dock) and (dock.raise_(), _keep_titles_whole(dock)))
    elif area in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea):
        win.resizeDocks([dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)


def _keep_titles_whole(dock) -> None:
    """The tab bar holding ``dock`` shows every title whole: where the dock area is narrower
    than all the plugin's tabs together, it scrolls (arrows) instead of cutting the titles
    ("Lo…", "Segm…")."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QTabBar

    win = dock.parentWidget()
    title = dock.windowTitle()
    for bar in win.findChildren(QTabBar):
        if bar.parentWidget() is win and title in (bar.tabText(i) for i in range(bar.count())):
            bar.setElideMode(Qt.TextElideMode.ElideNone)
            bar.setUsesScrollButtons(True)
            # narrower tabs: the six titles fit :data:`DOCK_WIDTH` without the arrows (UAT
            # s13 N8: "... Cohort | Te" at 1920 px); napari's theme keeps the rest of the look
            bar.setStyleSheet(TAB_STYLE)


def fit_when_docked(widget) -> None:
    """Once ``widget`` is built and napari has docked it (the next event-loop iteration):
    :func:`fit_narrow`, then :func:`join_plugin_docks`."""
    from qtpy.QtCore import QTimer

    _OURS[:] = [r for r in _OURS if r() is not None and _alive(r())]
    ref = weakref.ref(widget)
    _OURS.append(ref)

    def later():
        w = ref()
        if w is None:
            return
        try:
            fit_narrow(w)
            join_plugin_docks(w)
        except RuntimeError:  # its C++ object already deleted (closed at once)
            return

    QTimer.singleShot(0, later)


def fit_window(viewer, size: tuple[int, int] = WINDOW_SIZE) -> tuple[int, int]:
    """Resize the viewer's window to ``size``, or to the screen's available area where that
    is smaller (a 1280 x 800 laptop), so no dock runs off the screen. Returns the size set."""
    from qtpy.QtGui import QGuiApplication

    w, h = size
    screen = QGuiApplication.primaryScreen()
    if screen is not None:
        avail = screen.availableGeometry()
        w, h = min(w, avail.width()), min(h, avail.height())
    viewer.window.resize(w, h)
    return w, h
