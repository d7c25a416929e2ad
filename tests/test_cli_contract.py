"""The command-line contract (DESIGN section 5) for bad input, across every subcommand.

Each call runs the real console script in a subprocess: bad input must give exactly one
line on stderr, a non-zero exit status, no traceback and no output file.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

EXE = shutil.which("napari-ablation")


def run(*args, cwd=None):
    cmd = [EXE, *args] if EXE else [sys.executable, "-m", "napari_ablation.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def _labels(path, shape=(12, 20, 20), spacing=(1.2, 1.2, 3.0), box=None, origin=(0, 0, 0)):
    arr = np.zeros(shape, np.uint8)
    if box is not None:
        arr[box] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def files(tmp_path):
    f = {}
    f["tumor"] = _labels(tmp_path / "tumor.nii.gz", box=np.s_[4:8, 8:12, 8:12])
    f["ablation"] = _labels(tmp_path / "ablation.nii.gz", box=np.s_[2:10, 4:16, 4:16])
    f["empty"] = _labels(tmp_path / "empty.nii.gz")
    f["far"] = _labels(tmp_path / "far.nii.gz", box=np.s_[2:10, 4:16, 4:16], origin=(800, 0, 0))
    (tmp_path / "text.nii.gz").write_text("not an image")
    f["text"] = tmp_path / "text.nii.gz"
    img2d = sitk.GetImageFromArray(np.ones((20, 20), np.uint8))
    sitk.WriteImage(img2d, str(tmp_path / "flat.nii.gz"))
    f["flat"] = tmp_path / "flat.nii.gz"
    aff = sitk.AffineTransform(3)
    aff.SetMatrix([1.2, 0, 0, 0, 1, 0, 0, 0, 1])
    sitk.WriteTransform(aff, str(tmp_path / "scaling.tfm"))
    f["scaling"] = tmp_path / "scaling.tfm"
    (tmp_path / "pts_bad.csv").write_text("label,x,y,z\n1,0,0,0\n2,1,0,0\n")
    f["two_points"] = tmp_path / "pts_bad.csv"
    f["dir"] = tmp_path
    return f


def _bad_input_cases(f):
    out = f["dir"] / "out"
    return {
        "margin missing tumor": (["margin", "--tumor", str(f["dir"] / "nope.nii.gz"), "--ablation", str(f["ablation"]), "--json", f"{out}.json"], f"{out}.json"),
        "margin not an image": (["margin", "--tumor", str(f["text"]), "--ablation", str(f["ablation"]), "--json", f"{out}.json"], f"{out}.json"),
        "margin 2D": (["margin", "--tumor", str(f["flat"]), "--ablation", str(f["ablation"]), "--json", f"{out}.json"], f"{out}.json"),
        "margin empty tumor": (["margin", "--tumor", str(f["empty"]), "--ablation", str(f["ablation"]), "--json", f"{out}.json"], f"{out}.json"),
        "margin empty ablation": (["margin", "--tumor", str(f["tumor"]), "--ablation", str(f["empty"]), "--json", f"{out}.json"], f"{out}.json"),
        "margin non-rigid transform": (["margin", "--tumor", str(f["tumor"]), "--ablation", str(f["ablation"]), "--transform", str(f["scaling"]), "--json", f"{out}.json"], f"{out}.json"),
        "margin grids do not overlap": (["margin", "--tumor", str(f["tumor"]), "--ablation", str(f["far"]), "--json", f"{out}.json"], f"{out}.json"),
        "register missing image": (["register", "--fixed", str(f["dir"] / "nope.nii.gz"), "--moving", str(f["ablation"]), "--out", f"{out}.tfm"], f"{out}.tfm"),
        "register too few points": (["register", "--fixed-points", str(f["two_points"]), "--moving-points", str(f["two_points"]), "--out", f"{out}.tfm"], f"{out}.tfm"),
        "register nothing to do": (["register", "--out", f"{out}.tfm"], f"{out}.tfm"),
        "interpolate missing": (["interpolate", "--labels", str(f["dir"] / "nope.nii.gz"), "--out", f"{out}.nii.gz"], f"{out}.nii.gz"),
        "interpolate one slice": (None, None),  # built in the test
        "usage error": (["margin", "--tumor"], None),
        "unknown command": (["frobnicate"], None),
    }


CASES = [
    "margin missing tumor", "margin not an image", "margin 2D", "margin empty tumor",
    "margin empty ablation", "margin non-rigid transform", "margin grids do not overlap",
    "register missing image", "register too few points", "register nothing to do",
    "interpolate missing", "interpolate one slice", "usage error", "unknown command",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(files, case):
    args, out = _bad_input_cases(files)[case]
    if case == "interpolate one slice":
        # labels annotated on one slice only along x
        arr = np.zeros((12, 20, 20), np.uint8)
        arr[3:9, 5:15, 10] = 1
        img = sitk.GetImageFromArray(arr)
        sitk.WriteImage(img, str(files["dir"] / "one.nii.gz"))
        out = str(files["dir"] / "dense.nii.gz")
        args = ["interpolate", "--labels", str(files["dir"] / "one.nii.gz"), "--out", out, "--axis", "x"]
    res = run(*args)
    assert res.returncode != 0, (case, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert err, case
    assert len(err.splitlines()) == 1, (case, err)
    assert "Traceback" not in err and "Traceback" not in res.stdout
    if out is not None:
        assert not Path(out).exists(), case
    leftovers = [p.name for p in files["dir"].iterdir() if ".tmp" in p.name]
    assert not leftovers, leftovers


def test_help_and_version():
    res = run("--help")
    assert res.returncode == 0
    for cmd in ("margin", "register", "interpolate", "demo"):
        assert cmd in res.stdout
    assert run("--version").returncode == 0


def test_every_case_is_listed(files):
    assert sorted(_bad_input_cases(files)) == sorted(CASES)
