"""UAT s10 N7: one rule for labels on another grid than their image, in the viewer, in
``cohort run`` and in ``napari-ablation margin``: labels live on the grid of the image
they were drawn on (:meth:`Case.check_labels`). The CLI applies it when it is given the
images (``--pre`` / ``--post``) and says when two masks on different grids are taken as
aligned. Real files through the real console script."""

import json
import shutil
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

EXE = shutil.which("napari-ablation")


def run(*args):
    cmd = [EXE, *args] if EXE else [sys.executable, "-m", "napari_ablation.cli", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, encoding="utf-8", timeout=600, check=False
    )


def _image(path, arr, spacing, origin=(0.0, 0.0, 0.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return str(path)


def _ball(shape, spacing, origin, center, radius):
    z, y, x = np.indices(shape)
    p = [origin[i] + spacing[i] * (x, y, z)[i] for i in range(3)]
    return (sum((p[i] - center[i]) ** 2 for i in range(3)) <= radius**2).astype(np.uint8)


def test_margin_refuses_a_mask_off_its_image_grid_as_the_viewer_does(tmp_path):
    shape, sp = (30, 40, 40), (1.0, 1.0, 1.0)
    centre = (20.0, 20.0, 15.0)
    pre = _image(tmp_path / "pre.nii.gz", np.full(shape, 100, np.int16), sp)
    post = _image(tmp_path / "post.nii.gz", np.full(shape, 100, np.int16), sp)
    tumor = _image(tmp_path / "tumor.nii.gz", _ball(shape, sp, (0, 0, 0), centre, 5.0), sp)
    abl = _image(tmp_path / "ablation.nii.gz", _ball(shape, sp, (0, 0, 0), centre, 9.0), sp)
    # the same ablation zone on a coarser grid with another origin (as UAT's file)
    sp2, o2 = (1.5, 1.5, 1.5), (0.3, -0.4, 0.2)
    other = _image(
        tmp_path / "ablation_other.nii.gz", _ball((20, 27, 27), sp2, o2, centre, 9.0), sp2, o2
    )
    out = tmp_path / "m.json"

    # on its image's grid: computed, as in the viewer
    ok = run("margin", "--tumor", tumor, "--ablation", abl, "--pre", pre, "--post", post)
    assert ok.returncode == 0, ok.stderr
    assert "different grids" not in ok.stdout
    # off it: refused in one line, no output written (the viewer's rule, from core)
    bad = run("margin", "--tumor", tumor, "--ablation", other, "--post", post, "--json", str(out))
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "ablation labels are not on the post image grid" in lines[0]
    assert not out.exists()
    bad = run("margin", "--tumor", other, "--ablation", abl, "--pre", pre)
    assert bad.returncode == 2 and "tumor labels are not on the pre image grid" in bad.stderr
    # without the images: computed (each mask on its own image), and said so
    said = run("margin", "--tumor", tumor, "--ablation", other, "--json", str(out))
    assert said.returncode == 0, said.stderr
    assert "the tumor and ablation masks are on different grids" in said.stdout
    assert json.loads(out.read_text())["min_margin_mm"] > 0
