"""``napari-ablation demo``: napari with a sample case loaded and the plugin's widgets docked."""

from __future__ import annotations

from pathlib import Path

from .widgets import _dock

WIDGETS = ("1. Load case", "2. Segment", "3. Register", "4. Margins", "Teach (quiz)")
#: the dock tabs' titles (napari's "<name> (napari-ablation)" is cut in a tab)
TAB_TITLES = tuple(_dock.TAB_TITLES[name] for name in WIDGETS)


def open_demo_viewer(case: str = "renal_mri", *, show: bool = True):
    """A viewer with the four widgets docked (tabbed) and the sample case opening.

    Returns ``(viewer, load_widget, worker)``; the sample is read off the GUI thread.
    """
    import napari
    from qtpy.QtCore import Qt, QTimer

    from .widgets import _layers

    viewer = napari.Viewer(title="napari-ablation demo", show=show)
    _dock.fit_window(viewer)
    load_widget = None
    first_dock = None
    for i, name in enumerate(WIDGETS):
        try:
            # (tabbed in this order with the plugin's docks already open: widgets._dock)
            dock, widget = viewer.window.add_plugin_dock_widget("napari-ablation", name)
        except Exception as exc:  # noqa: BLE001 - a broken widget must not stop the demo
            _layers.notify_error(f"could not open the '{name}' widget: {exc}")
            continue
        if i == 0:  # (every plugin dock gets its short tab title: widgets._dock)
            load_widget, first_dock = widget, dock
    if first_dock is not None:
        tries = [30]  # the retries left

        def settle(dock=first_dock):
            try:
                dock.raise_()  # the Load tab in front, once the tabs exist
                # the tabbed docks narrow: the images get the room (QMainWindow.resizeDocks);
                # again until the window's first layout (late on a busy machine) keeps it
                win = dock.parentWidget()
                win.resizeDocks([dock], [_dock.DOCK_WIDTH], Qt.Orientation.Horizontal)
            except RuntimeError:  # the window was closed meanwhile (its docks deleted)
                return
            tries[0] -= 1
            if tries[0] > 0 and (not win.isVisible() or dock.width() > _dock.DOCK_WIDTH + 10):
                QTimer.singleShot(100, settle)

        QTimer.singleShot(0, settle)
    worker = load_widget.open_sample(case) if load_widget is not None else None
    if worker is not None and first_dock is not None:
        session = load_widget.session

        def resettle(what):
            # the case's layers on screen (the session's "opening" ends after the last one
            # is added, well after the worker has finished): the dock width once more
            if what == "opening" and session.opening is None:
                session.changed.disconnect(resettle)
                tries[0] = 30
                QTimer.singleShot(0, settle)

        session.changed.connect(resettle)
    return viewer, load_widget, worker


def run_demo(case: str = "renal_mri", *, screenshot: str | None = None) -> int:
    import napari
    from qtpy.QtCore import QTimer

    viewer, _load, worker = open_demo_viewer(case)
    if screenshot:
        out = Path(screenshot)

        def snap(*_):
            viewer.window.screenshot(str(out), canvas_only=False)
            print(out)
            viewer.close()

        import time

        from .widgets import _layers
        from .widgets.session import CaseSession

        start = time.monotonic()

        def when_shown():
            # the case's layers are added one per event-loop iteration after the worker:
            # wait until all four are there, their chain has ended (the canvas is not
            # redrawn before: a screenshot then is blank) and the working copy is saved
            # (at most 2 min)
            session = CaseSession.of(viewer)
            roles = ("pre", "tumor", "post", "ablation")
            shown = all(_layers.find_layer(viewer, r) is not None for r in roles)
            shown = shown and session.opening is None and not _layers.steps_pending()
            if (shown and session.all_saved) or time.monotonic() - start > 120:
                QTimer.singleShot(500, snap)
            else:
                QTimer.singleShot(200, when_shown)

        if worker is not None:
            worker.finished.connect(when_shown)
        else:
            when_shown()
    napari.run()
    return 0
