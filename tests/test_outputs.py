"""Where files leave: never onto an input, never onto a device, all or none, survive a
full disk, a kill -9 and Ctrl-C (core.files.OutputSet through the CLI)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import files
from napari_ablation.core import margin as M

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "renal_mri"


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture()
def case(tmp_path):
    c = np.array([0.0, 0.0, 0.0])
    tumor = M.sphere_image([24, 24, 14], [1.0, 1.0, 2.0], (c - [12, 12, 13]).tolist(), c, 6.0)
    abl = M.sphere_image([30, 30, 30], [1, 1, 1], (c - 15).tolist(), c, 10.0)
    d = tmp_path / "in"
    d.mkdir()
    sitk.WriteImage(tumor, str(d / "tumor.nii.gz"), True)
    sitk.WriteImage(abl, str(d / "ablation.nii.gz"), True)
    sparse = sitk.GetArrayFromImage(tumor)
    sparse[1::2] = 0  # every other slice annotated
    sp = sitk.GetImageFromArray(sparse)
    sp.CopyInformation(tumor)
    sitk.WriteImage(sp, str(d / "sparse.nii.gz"), True)
    e = sitk.Euler3DTransform()
    e.SetParameters((0, 0, 0, 0.5, 0, 0))
    sitk.WriteTransform(e, str(d / "T.tfm"))
    shutil.copy(d / "T.tfm", d / "T.json")  # a transform under a name --json accepts
    (d / "pts.tfm").write_text(
        "label,x,y,z\n1,0,0,0\n2,10,0,0\n3,0,10,0\n4,0,0,10\n"
    )  # points named like a transform
    return d


def _margin(d, *extra):
    return [
        "margin",
        "--tumor",
        str(d / "tumor.nii.gz"),
        "--ablation",
        str(d / "ablation.nii.gz"),
        *extra,
    ]


@pytest.mark.parametrize(
    "which",
    [
        "margin-labels onto tumor",
        "json onto transform",
        "interpolate onto itself",
        "register out onto points",
        "dotted path",
        "hard link",
        "symlink",
    ],
)
def test_an_output_that_is_an_input_is_refused(case, which, capfd):
    d = case
    if which == "margin-labels onto tumor":
        argv = _margin(d, "--margin-labels", str(d / "tumor.nii.gz"))
    elif which == "json onto transform":
        argv = _margin(d, "--transform", str(d / "T.json"), "--json", str(d / "T.json"))
    elif which == "interpolate onto itself":
        argv = [
            "interpolate",
            "--labels",
            str(d / "tumor.nii.gz"),
            "--out",
            str(d / "tumor.nii.gz"),
        ]
    elif which == "register out onto points":
        argv = [
            "register",
            "--fixed-points",
            str(d / "pts.tfm"),
            "--moving-points",
            str(d / "pts.tfm"),
            "--out",
            str(d / "pts.tfm"),
        ]
    elif which == "dotted path":
        (d.parent / "other").mkdir()
        argv = _margin(
            d, "--margin-labels", str(d.parent / "other" / ".." / "in" / "." / "tumor.nii.gz")
        )
    elif which == "hard link":
        os.link(d / "tumor.nii.gz", d.parent / "link.nii.gz")
        argv = _margin(d, "--margin-labels", str(d.parent / "link.nii.gz"))
    else:
        os.symlink(d / "ablation.nii.gz", d.parent / "sym.nii.gz")
        argv = _margin(d, "--margin-labels", str(d.parent / "sym.nii.gz"))
    before = _digest(d.parent)
    rc = cli.main(argv)
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "input" in err[0], err
    assert _digest(d.parent) == before


def test_devices_fifos_folders_and_read_only_files_are_refused(tmp_path, case, capfd):
    (tmp_path / "full.json").symlink_to("/dev/full")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "folder.json").mkdir()
    ro = tmp_path / "ro.json"
    ro.write_text("{}")
    ro.chmod(0o444)
    for name, words in [
        ("full.json", "not a regular file"),
        ("fifo.json", "not a regular file"),
        ("folder.json", "is a folder"),
        ("ro.json", "read-only"),
    ]:
        rc = cli.main(_margin(case, "--json", str(tmp_path / name)))
        err = capfd.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and words in err[0], (name, err)
    assert Path("/dev/full").is_char_device()
    assert (tmp_path / "full.json").is_symlink() and ro.read_text() == "{}"
    assert stat_is_fifo(tmp_path / "fifo.json")


def stat_is_fifo(p: Path) -> bool:
    import stat

    return stat.S_ISFIFO(os.lstat(p).st_mode)


def test_os_errors_name_the_path_and_the_reason(tmp_path, case, capfd):
    long_name = tmp_path / ("x" * 300 + ".json")
    rc = cli.main(_margin(case, "--json", str(long_name)))
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "file name too long" in err[0] and "internal error" not in err[0], err
    rc = cli.main(
        [
            "margin",
            "--tumor",
            str(tmp_path / "missing.nii.gz"),
            "--ablation",
            str(case / "ablation.nii.gz"),
        ]
    )
    err = capfd.readouterr().err.strip()
    assert rc == 2 and "missing.nii.gz: no such file" in err


def test_outputs_are_all_or_none(tmp_path, case, monkeypatch, capfd):
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.json").write_text('{"old": true}')
    real = sitk.WriteImage

    def fail_on_labels(img, name, *a, **k):
        real(img, name, *a, **k)
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(sitk, "WriteImage", fail_on_labels)
    rc = cli.main(
        _margin(
            case,
            "--json",
            str(out / "m.json"),
            "--csv",
            str(out / "m.csv"),
            "--margin-labels",
            str(out / "classes.nii.gz"),
        )
    )
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "simulated failure" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == [
        "m.json"
    ]  # no CSV, no labels, no temporary folder
    assert json.loads((out / "m.json").read_text()) == {"old": True}


def test_mhd_output_points_at_its_final_data_file(tmp_path):
    img = sitk.GetImageFromArray(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    outs = files.OutputSet()
    outs.add_image(tmp_path / "labels.mhd", img)
    outs.commit()
    header = (tmp_path / "labels.mhd").read_text()
    data_file = next(
        ln.split("=")[1].strip() for ln in header.splitlines() if ln.startswith("ElementDataFile")
    )
    assert data_file.startswith("labels.") and (tmp_path / data_file).exists()
    assert np.array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.mhd"))),
        sitk.GetArrayFromImage(img),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["labels.mhd", data_file])


# ----------------------------------------------------------------------------- full disk


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 1 MB tmpfs (we run as root in CI); skipped where mounting is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the injected-failure test covers the same path)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        block = b"\0" * 4096
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    try:  # and the last partial block
        with open(folder / "filler2", "wb", buffering=0) as fh:
            while True:
                fh.write(b"\0")
    except OSError:
        pass


def test_full_disk_keeps_the_previous_transform_and_labels(tiny_disk, case, capfd):
    register = [
        "register",
        "--fixed-points",
        str(case / "pts.tfm"),
        "--moving-points",
        str(case / "pts.tfm"),
        "--out",
        str(tiny_disk / "T.tfm"),
    ]
    interpolate = [
        "interpolate",
        "--labels",
        str(case / "sparse.nii.gz"),
        "--out",
        str(tiny_disk / "dense.nii"),
    ]
    assert cli.main(register) == 0 and cli.main(interpolate) == 0  # the previous outputs
    capfd.readouterr()
    before = _digest(tiny_disk)
    _fill(tiny_disk)
    for argv in (register, interpolate):
        rc = cli.main(argv)
        err = capfd.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "cannot write" in err[0], err
        assert "no space left on device" in err[0] or "does not read back" in err[0], err
    for f in ("filler", "filler2"):
        (tiny_disk / f).unlink(missing_ok=True)
    assert (
        _digest(tiny_disk) == before
    )  # the old transform and labels intact, no temporary folder left


def test_injected_write_failures_keep_the_previous_output(tmp_path, case, monkeypatch, capfd):
    out = tmp_path / "T.tfm"
    argv = [
        "register",
        "--fixed-points",
        str(case / "pts.tfm"),
        "--moving-points",
        str(case / "pts.tfm"),
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    old = out.read_bytes()
    capfd.readouterr()

    def enospc(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", enospc)
    assert cli.main(argv) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {out}: no space left on device" in err[0], err
    monkeypatch.undo()
    assert out.read_bytes() == old
    # SimpleITK silently truncating an image (what it does on a full disk) is caught by the re-read
    real = sitk.WriteImage

    def truncating(img, name, *a, **k):
        real(img, name, *a, **k)
        data = Path(name).read_bytes()
        Path(name).write_bytes(data[: len(data) * 9 // 10])

    target = tmp_path / "dense.nii"
    assert (
        cli.main(["interpolate", "--labels", str(case / "sparse.nii.gz"), "--out", str(target)])
        == 0
    )
    old = target.read_bytes()
    capfd.readouterr()
    monkeypatch.setattr(sitk, "WriteImage", truncating)
    assert (
        cli.main(["interpolate", "--labels", str(case / "sparse.nii.gz"), "--out", str(target)])
        == 2
    )
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not read back" in err[0], err
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T.tfm", "dense.nii", "in"]


# ----------------------------------------------------------------------------- kill -9, SIGTERM


def _cli(*args):
    return [sys.executable, "-m", "napari_ablation.cli", *args]


def test_kill_9_leaves_old_or_new_output_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    argv = _cli(
        "margin",
        "--tumor",
        str(SAMPLE / "tumor.nii.gz"),
        "--ablation",
        str(SAMPLE / "ablation.nii.gz"),
        "--transform",
        str(SAMPLE / "true_transform.tfm"),
        "--json",
        str(out / "m.json"),
        "--margin-labels",
        str(out / "classes.nii"),
    )
    assert subprocess.run(argv, capture_output=True, check=False, timeout=300).returncode == 0
    new_json = (out / "m.json").read_bytes()
    new_labels = (out / "classes.nii").read_bytes()
    old_json, old_labels = b'{"old": 1}', b"old labels"
    outcomes = []
    for delay in np.linspace(0.5, 6.0, 12):
        (out / "m.json").write_bytes(old_json)
        (out / "classes.nii").write_bytes(old_labels)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(delay))
        proc.kill()
        proc.wait()
        got = ((out / "m.json").read_bytes(), (out / "classes.nii").read_bytes())
        assert got[0] in (old_json, new_json) and got[1] in (old_labels, new_labels)
        outcomes.append("new" if got[0] == new_json else "old")
    # the next run removes what killed runs left behind
    assert subprocess.run(argv, capture_output=True, check=False, timeout=300).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["classes.nii", "m.json"], list(out.iterdir())
    assert "old" in outcomes  # the kills did land before the end


@pytest.fixture(scope="module")
def large_pair(tmp_path_factory):
    """The renal sample on a grid 2x finer along each axis (8x the voxels): a whole-image
    registration of it runs long enough to be interrupted."""
    d = tmp_path_factory.mktemp("large")
    for role in ("pre", "post"):
        img = sitk.ReadImage(str(SAMPLE / f"{role}.nii.gz"))
        size = [2 * n for n in img.GetSize()]
        spacing = [s / 2 for s in img.GetSpacing()]
        fine = sitk.Resample(
            img,
            size,
            sitk.Transform(),
            sitk.sitkLinear,
            img.GetOrigin(),
            spacing,
            img.GetDirection(),
            0.0,
            img.GetPixelID(),
        )
        sitk.WriteImage(fine, str(d / f"{role}.nii.gz"), True)
    return d


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_say_interrupted_exit_130_and_leave_no_temporary(
    tmp_path, large_pair, sig
):
    out = tmp_path / "out"
    out.mkdir()
    argv = _cli(
        "register",
        "--fixed",
        str(large_pair / "pre.nii.gz"),
        "--moving",
        str(large_pair / "post.nii.gz"),
        "--out",
        str(out / "T.tfm"),
    )
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)  # reading or registering: either way the command must end cleanly
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr.strip() == "napari-ablation register: interrupted"
    assert "Traceback" not in stdout
    assert list(out.iterdir()) == []


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_a_set_killed_while_renaming_is_finished_by_the_next_write(tmp_path):
    # what a kill -9 between the renames of {a.json, b.json} leaves: a renamed, b still staged
    stale = tmp_path / f"{files.TMP_PREFIX}{_dead_pid()}-x1"
    stale.mkdir()
    (tmp_path / "a.json").write_text("new a")
    (tmp_path / "b.json").write_text("old b")
    (tmp_path / "c.json").write_text("c edited by the user after the kill")
    (stale / "b.json").write_text("new b")
    (stale / "c.json").write_text("new c")
    (stale / files.COMMIT_MARKER).write_text("renaming\n")
    t = time.time() - 100
    os.utime(stale / files.COMMIT_MARKER, (t, t))
    os.utime(tmp_path / "b.json", (t - 10, t - 10))
    outs = files.OutputSet()
    outs.add_text(tmp_path / "d.json", "d")
    outs.commit()
    assert (tmp_path / "b.json").read_text() == "new b"  # finished
    assert (tmp_path / "c.json").read_text() == "c edited by the user after the kill"  # left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.json", "d.json"]
