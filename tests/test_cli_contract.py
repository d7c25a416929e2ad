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
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


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
    json_out, tfm_out = f"{out}.json", f"{out}.tfm"

    def margin(tumor, ablation, *extra):
        args = ["margin", "--tumor", str(tumor), "--ablation", str(ablation), *extra]
        return [*args, "--json", json_out], json_out

    def register(*args):
        return ["register", *map(str, args), "--out", tfm_out], tfm_out

    nope = f["dir"] / "nope.nii.gz"
    return {
        "margin missing tumor": margin(nope, f["ablation"]),
        "margin not an image": margin(f["text"], f["ablation"]),
        "margin 2D": margin(f["flat"], f["ablation"]),
        "margin empty tumor": margin(f["empty"], f["ablation"]),
        "margin empty ablation": margin(f["tumor"], f["empty"]),
        "margin non-rigid transform": margin(
            f["tumor"], f["ablation"], "--transform", str(f["scaling"])
        ),
        "margin grids do not overlap": margin(f["tumor"], f["far"]),
        "register missing image": register("--fixed", nope, "--moving", f["ablation"]),
        "register too few points": register(
            "--fixed-points", f["two_points"], "--moving-points", f["two_points"]
        ),
        "register nothing to do": register(),
        "interpolate missing": (
            ["interpolate", "--labels", str(nope), "--out", f"{out}.nii.gz"],
            f"{out}.nii.gz",
        ),
        "interpolate one slice": (None, None),  # built in the test
        "usage error": (["margin", "--tumor"], None),
        "unknown command": (["frobnicate"], None),
    }


CASES = [
    "margin missing tumor",
    "margin not an image",
    "margin 2D",
    "margin empty tumor",
    "margin empty ablation",
    "margin non-rigid transform",
    "margin grids do not overlap",
    "register missing image",
    "register too few points",
    "register nothing to do",
    "interpolate missing",
    "interpolate one slice",
    "usage error",
    "unknown command",
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
        args = [
            "interpolate",
            "--labels",
            str(files["dir"] / "one.nii.gz"),
            "--out",
            out,
            "--axis",
            "x",
        ]
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


# ----------------------------------------------------------------- plausibility (issue 8, point 14)


def test_no_command_prints_usage_once(capfd):
    from napari_ablation import cli

    assert cli.main([]) == 2
    err = capfd.readouterr().err
    assert err.startswith("usage: napari-ablation") and "napari-ablation napari-ablation" not in err
    assert cli.main(["margin", "--tumor"]) == 2
    err = capfd.readouterr().err.strip()
    assert (
        "(see 'napari-ablation margin --help')" in err
        and "napari-ablation napari-ablation" not in err
    )


def test_help_cites_no_file_the_repository_lacks():
    import re

    root = Path(__file__).resolve().parents[1]
    for cmd in ([], ["margin"], ["register"], ["interpolate"], ["demo"], ["samples"]):
        text = run(*cmd, "--help").stdout
        for name in re.findall(r"[\w./-]+\.md\b", text):
            assert (root / name).exists(), (cmd, name)
        assert "DESIGN" not in text


def test_intensity_image_as_tumor_is_refused(files, tmp_path, capfd):
    from napari_ablation import cli

    rng = np.random.default_rng(0)
    img = sitk.GetImageFromArray(rng.normal(100, 30, (12, 20, 20)).astype(np.int16))
    sitk.WriteImage(img, str(tmp_path / "mri.nii.gz"))
    rc = cli.main(
        ["margin", "--tumor", str(tmp_path / "mri.nii.gz"), "--ablation", str(files["ablation"])]
    )
    err = capfd.readouterr().err.strip()
    assert rc == 2 and "not a label image" in err and "distinct values" in err


def test_margin_without_transform_says_nothing_was_registered(files, tmp_path, capfd):
    import json

    from napari_ablation import cli

    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(files["tumor"]),
            "--ablation",
            str(files["ablation"]),
            "--json",
            str(tmp_path / "m.json"),
        ]
    )
    out = capfd.readouterr().out
    assert rc == 0 and "nothing was registered" in out and "identity" in out
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["registered"] is False and "identity" in doc["registration_note"]


@pytest.mark.parametrize("flag", ["--pdf", "--html", "--json", "--csv"])
def test_report_extension_must_match(files, tmp_path, flag, capfd):
    from napari_ablation import cli

    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(files["tumor"]),
            "--ablation",
            str(files["ablation"]),
            flag,
            str(tmp_path / "report.docx"),
        ]
    )
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "must end in" in err[0]
    assert not (tmp_path / "report.docx").exists()


def test_register_refuses_constant_image_and_bad_radius_in_one_line(files, tmp_path, capfd):
    from napari_ablation import cli

    sitk.WriteImage(sitk.Image([20, 20, 12], sitk.sitkFloat32) + 7.0, str(tmp_path / "flat.nii.gz"))
    nan = sitk.GetImageFromArray(np.full((12, 20, 20), np.nan, np.float32))
    sitk.WriteImage(nan, str(tmp_path / "nan.nii.gz"))
    for fixed, words in (("flat.nii.gz", "constant"), ("nan.nii.gz", "NaN or infinite")):
        rc = cli.main(
            [
                "register",
                "--fixed",
                str(tmp_path / fixed),
                "--moving",
                str(files["ablation"]),
                "--out",
                str(tmp_path / "T.tfm"),
            ]
        )
        out, err = capfd.readouterr()
        assert rc == 2 and len(err.strip().splitlines()) == 1 and words in err, err
        assert out.strip() == ""  # no optimiser chatter
    rc = cli.main(
        [
            "register",
            "--fixed",
            str(files["ablation"]),
            "--moving",
            str(files["ablation"]),
            "--tumor",
            str(files["tumor"]),
            "--roi-radius",
            "-5",
            "--out",
            str(tmp_path / "T.tfm"),
        ]
    )
    assert rc == 2 and "positive" in capfd.readouterr().err
    assert not (tmp_path / "T.tfm").exists()


def test_images_of_different_patients_are_refused_or_flagged(tmp_path, capfd):
    from napari_ablation import cli
    from napari_ablation.core import registration

    samples = Path(__file__).resolve().parents[1] / "sample_data"
    rc = cli.main(
        [
            "register",
            "--fixed",
            str(samples / "renal_mri" / "pre.nii.gz"),
            "--moving",
            str(samples / "liver_ct" / "post.nii.gz"),
            "--tumor",
            str(samples / "renal_mri" / "tumor.nii.gz"),
            "--out",
            str(tmp_path / "T.tfm"),
        ]
    )
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "do not overlap" in err[0]
    weak = registration.RegistrationResult(sitk.Euler3DTransform(), -0.1, -0.25, 10, "", 0.1)
    good = registration.RegistrationResult(sitk.Euler3DTransform(), -0.3, -0.6, 10, "", 0.1)
    assert registration.plausibility_warnings(weak) and not registration.plausibility_warnings(good)


def test_a_margin_request_beyond_memory_is_refused_before_it_starts(tmp_path, capfd):
    from napari_ablation import cli
    from napari_ablation.core import margin as M

    # the same spheres with the voxel spacing shrunk 1000x: the shells alone need terabytes
    c = [0.0, 0.0, 0.0]
    t = M.sphere_image([24, 24, 24], [0.001] * 3, [-0.012] * 3, c, 0.006)
    a = M.sphere_image([30, 30, 30], [0.001] * 3, [-0.015] * 3, c, 0.010)
    sitk.WriteImage(t, str(tmp_path / "t.nii.gz"))
    sitk.WriteImage(a, str(tmp_path / "a.nii.gz"))
    rc = cli.main(
        ["margin", "--tumor", str(tmp_path / "t.nii.gz"), "--ablation", str(tmp_path / "a.nii.gz")]
    )
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "GB of memory" in err[0], err


def test_whole_image_registration_is_bounded():
    from napari_ablation.core import resources

    small = sitk.Image([64, 64, 40], sitk.sitkUInt8)
    assert resources.registration_levels(small, max_voxels=1_000_000)[0] == (4, 2, 1)
    shrink, sigmas, extra = resources.registration_levels(small, max_voxels=20_000)
    assert extra == 3 and shrink == (12, 6, 3) and sigmas == (6.0, 3.0, 0.0)
    assert np.prod(np.asarray(small.GetSize()) / shrink[-1]) <= 20_000


@pytest.mark.parametrize(
    "args",
    [
        ("demo", "--screenshot", "x.txt"),
        ("demo", "--screenshot", "nowhere/x.png"),
        ("quiz", "open", "--quiz", "emptydir"),
    ],
)
def test_gui_commands_check_their_arguments_before_qt_starts(args, tmp_path):
    """UAT s7 N11: without a display, `demo --screenshot x.txt` and `quiz open --quiz
    emptydir` aborted in Qt (exit 134, seven lines about xcb) before looking at their
    arguments; `demo` also wrote its PNG under any name. One line, exit 2, no file."""
    import os

    (tmp_path / "emptydir").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"  # what a desktop session without a display would try
    cmd = [EXE, *args] if EXE else [sys.executable, "-m", "napari_ablation.cli", *args]
    res = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False
    )
    err = res.stderr.strip()
    assert res.returncode == 2, (res.returncode, err[-300:])
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emptydir"]
