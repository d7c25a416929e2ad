"""Shared test configuration.

GUI tests use napari's ``make_napari_viewer`` fixture (napari's pytest plugin) and must
run under ``xvfb-run -a pytest`` (napari's canvas needs OpenGL; offscreen Qt does not work).
"""

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("NAPARI_ABLATION_NO_AUTOSAVE_DIALOGS", "1")
