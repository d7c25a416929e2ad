"""Shared test configuration.

GUI tests use napari's ``make_napari_viewer`` fixture (napari's pytest plugin) and must
run under ``xvfb-run -a pytest`` (napari's canvas needs OpenGL; offscreen Qt does not work).
"""

import os

import matplotlib
import numpy as np
import pytest
import SimpleITK as sitk

matplotlib.use("Agg")
os.environ.setdefault("NAPARI_ABLATION_NO_AUTOSAVE_DIALOGS", "1")


@pytest.fixture(scope="session", autouse=True)
def _engine_compiled():
    """Compile the margin engine's kernels (or load them from numba's cache) once, first.

    A test then sees what a user sees from the second analysis after an install on: no
    CLI run prints the one-time "compiling the margin engine once" line beside its own
    output (a second stderr line before a refusal), and no analysis compiles on a widget's
    worker. The cold start itself is tested apart (tests/test_warmup.py,
    tests/test_gui_warmup.py), each with an empty cache of its own.
    """
    from napari_ablation.core import warmup

    warmup.warm_up()


@pytest.fixture
def write_scan():
    """Write a random int16 scan (the user's own input file) and return it: ``write_scan(path,
    size, spacing, direction, seed)`` with SimpleITK's (x, y, z) ``size`` and ``spacing``, a
    direction matrix (row-major, 9 numbers) and the origin (10, -20, 30) mm."""

    def write(path, size, spacing, direction, seed) -> sitk.Image:
        arr = np.random.default_rng(seed).integers(0, 1000, size[::-1]).astype(np.int16)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing)
        img.SetOrigin((10.0, -20.0, 30.0))
        img.SetDirection(direction)
        sitk.WriteImage(img, str(path))
        return img

    return write


@pytest.fixture
def messages():
    """The napari notifications shown while the test runs (``str(n.message)`` is the
    one-line text a user reads)."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)
