"""The margin engine's first compilation seen from the GUI: a child process does it, and
"Compute margins" meanwhile waits for it, saying so, then shows the right MTM.

Run with ``xvfb-run -a python -m pytest tests/test_gui_warmup.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import _gui
import numpy as np
import SimpleITK as sitk

from napari_ablation.core import margin as M
from napari_ablation.core import warmup
from napari_ablation.core.case import Case


def _case() -> Case:
    c = np.array([0.3, -0.4, 0.2])
    sp, size = (1.0, 1.0, 2.0), (48, 48, 24)
    origin = (c - 24).tolist()
    tumor = M.sphere_image(size, sp, origin, c, 8.0)
    ablation = M.sphere_image(size, sp, origin, c + [4.0, 0, 0], 12.0)
    pre = sitk.Cast(M.sphere_image(size, sp, origin, c, 20.0), sitk.sitkFloat32) * 80.0 + 20.0
    case = Case(pre=pre, post=pre, tumor=tumor, ablation=ablation, info={"name": "phantom"})
    case.settings["threshold_mm"] = 5.0
    return case


def test_compute_during_the_warm_up_waits_for_it_then_shows_the_right_mtm(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari_ablation.widgets.margin import PREPARING_ENGINE_TEXT, MarginWidget

    case = _case()
    warmup.warm_up()  # this process's kernels ready: the plugin starts no warm-up of its own
    w = _gui.with_case(make_napari_viewer, tmp_path, monkeypatch, case, MarginWidget, name="M")
    session = w.session
    # a real first-use warm-up: its child compiles into an empty cache
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    children = warmup.start_warm_up(["gaussian_filter", "find_contours"], parts=2)
    assert len(children) == min(2, os.cpu_count() or 1) and warmup.running()
    stored_while_running = []
    w.model.analysis_changed.connect(lambda *_: stored_while_running.append(warmup.running()))
    w.run()
    assert w.status.text() == PREPARING_ENGINE_TEXT
    qtbot.waitUntil(lambda: not warmup.running(), timeout=600_000)
    assert [c.returncode for c in children] == [0] * len(children)
    qtbot.waitUntil(lambda: _gui.idle(session, w), timeout=120_000)
    assert stored_while_running and not any(stored_while_running)  # it waited
    assert w.status.text() != PREPARING_ENGINE_TEXT
    expected = M.analyze_margin(case.tumor, case.ablation, None, 5.0)
    assert w.result.min_margin_mm == expected.min_margin_mm
    assert w.big.text() == expected.margin_text()
    # the child filled the empty cache with its kernels
    assert {p.name.split("-")[0] for p in (tmp_path / "numba").rglob("*.nbi")} >= {
        "filters._pass",
        "filters._contours",
    }


def test_the_plugin_starts_a_warm_up_only_when_the_cache_lacks_the_kernels(tmp_path):
    """In a fresh process on an empty cache, the widgets' prewarm starts the child; in one
    whose kernels are ready (this one, after an analysis) it does not."""
    code = (
        "from napari_ablation.widgets import _layers\n"
        "from napari_ablation.core import warmup\n"
        "started = _layers.warm_margin_engine()\n"
        "print(started, warmup.running(), warmup.start_warm_up() == [])\n"
        "warmup.stop()\n"
        "print(warmup.running())\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    src = str(Path(warmup.__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "False"]
    from napari_ablation.widgets import _layers

    warmup.warm_up()  # (this process: compiled or loaded now)
    assert not _layers.warm_margin_engine() and not warmup.running()
