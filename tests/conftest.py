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
