"""UAT s4 N6 / s5 N5: the first frame painted once a case is open side by side is the right
view, not each grid cell zoomed for an empty 10 x 10 px box (a few huge voxels) for the
0.3-3 s until the next repaint. Every frame the canvas paints is read back (OpenGL) and
compared with the view it settles on.

Run with ``xvfb-run -a python -m pytest tests/test_gui_uat7_opening_frame.py``.
"""

from __future__ import annotations

import _gui
import numpy as np
import pytest

from napari_ablation.widgets import _layers

pytestmark = pytest.mark.gui


class FrameRecorder:
    """The pixels of every frame the canvas paints while ``viewer`` holds a whole case (its
    four layers), read back after the frame is drawn."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.scene = _gui.canvas(viewer)._vispy_canvas
        self.frames: list[np.ndarray] = []
        self.scene.events.draw.connect(self._drawn, position="last")

    def _drawn(self, _event) -> None:
        from vispy.gloo import read_pixels

        roles = {_layers.role_of(ly) for ly in self.viewer.layers}
        if {"pre", "post", "tumor", "ablation"} <= roles:
            self.frames.append(read_pixels(alpha=False))

    def settled_frame(self, qtbot) -> np.ndarray:
        """The frame of the view as it is now, painted anew."""
        n = len(self.frames)
        _gui.canvas(self.viewer).update()
        qtbot.waitUntil(lambda: len(self.frames) > n, timeout=30_000)
        return self.frames[-1]

    def close(self) -> None:
        self.scene.events.draw.disconnect(self._drawn)


def differing(frame: np.ndarray, final: np.ndarray) -> float:
    """Fraction of the pixels that differ clearly between two frames."""
    return float(np.mean(np.abs(frame.astype(int) - final.astype(int)).max(axis=-1) > 40))


def check_frames(recorder: FrameRecorder, qtbot) -> None:
    qtbot.wait(300)
    painted = list(recorder.frames)
    final = recorder.settled_frame(qtbot)
    recorder.close()
    assert painted, "no frame of the open case was painted"
    same_size = [f for f in painted if f.shape == final.shape]
    assert same_size[0] is painted[0], "the canvas changed size while the case opened"
    # the first frame (and every one after it) is the view the case settles on: a frame
    # zoomed for empty cells differs in 85-95 % of its pixels
    diffs = [round(differing(f, final), 3) for f in same_size]
    assert max(diffs) < 0.02, diffs


def settled(session) -> bool:
    return session.opening is None and not _layers.steps_pending()


def test_first_frame_after_load_open_sample_is_the_settled_view(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """1. Load case > Open sample in a new window (the README's demo opens it so)."""
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1500, 950))
    _d, load = viewer.window.add_plugin_dock_widget("napari-ablation", "1. Load case")
    session = load.session
    _gui.fast_timers(session)
    qtbot.wait(300)  # the window laid out: the canvas keeps its size while the case opens
    recorder = FrameRecorder(viewer)
    with qtbot.capture_exceptions() as errors:
        load.open_sample("renal_mri", fresh=True)
        qtbot.waitUntil(
            lambda: load._worker is None and settled(session) and len(viewer.layers) == 4,
            timeout=180_000,
        )
        check_frames(recorder, qtbot)
    assert not errors, [str(e[1]) for e in errors]


def test_first_frame_after_file_open_sample_is_the_settled_view(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """File > Open Sample in a new window, with the Margins dock open (one view, the
    post series hidden)."""
    viewer = _gui.new_viewer(make_napari_viewer, tmp_path, monkeypatch, size=(1500, 950))
    _d, marg = viewer.window.add_plugin_dock_widget("napari-ablation", "4. Margins")
    session = marg.session
    _gui.fast_timers(session)
    qtbot.wait(300)
    recorder = FrameRecorder(viewer)
    with qtbot.capture_exceptions() as errors:
        viewer.open_sample("napari-ablation", "liver_ct")
        qtbot.waitUntil(
            lambda: settled(session) and len(viewer.layers) == 4 and session.model.pre is not None,
            timeout=180_000,
        )
        check_frames(recorder, qtbot)
    assert not errors, [str(e[1]) for e in errors]
