"""The README's quick-start command: ``napari-ablation demo`` opens napari on the sample case."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="the demo opens a window: run under xvfb-run"
)
def test_demo_opens_sample_case_with_widgets_and_takes_a_screenshot(tmp_path):
    from skimage.io import imread

    out = tmp_path / "demo.png"
    exe = shutil.which("napari-ablation")
    cmd = [exe] if exe else [sys.executable, "-m", "napari_ablation.cli"]
    env = {**os.environ, "NAPARI_ABLATION_CASES": str(tmp_path / "cases")}
    res = subprocess.run(
        [*cmd, "demo", "--screenshot", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "could not open" not in res.stderr, res.stderr[-2000:]
    img = imread(out)
    assert img.shape[0] > 400 and img.shape[1] > 600
    # not a blank window: the canvas shows an image with real contrast
    assert np.asarray(img[..., :3], float).std() > 20
    # the sample case was copied into the user's cases folder (bundled data untouched)
    assert (tmp_path / "cases" / "sample_renal_mri" / "case.json").exists()
