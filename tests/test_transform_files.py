"""Binary ITK transform files (``.h5``, ``.mat``): read exactly, or refused in one line.

ITK reads these formats with native code that has no checks of ours: a corrupt file
raised a ``UnicodeDecodeError`` out of SimpleITK, and HDF5 printed "infinite loop closing
library" at exit. They are now converted to ITK text in a child process and checked by
the same parser as ``.tfm`` files.
"""

import random
import struct
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import transform as tfm
from napari_ablation.core.errors import AblationError

POINTS = [(0.0, 0.0, 0.0), (30.0, -12.5, 7.0), (-40.0, 55.0, -20.0)]


def _euler():
    tx = sitk.Euler3DTransform()
    tx.SetCenter((12.0, -30.5, 44.0))
    tx.SetRotation(0.07, -0.12, 0.21)
    tx.SetTranslation((3.25, -1.5, 8.0))
    return tx


def _same_mapping(a, b, atol=1e-9):
    return all(np.allclose(a.TransformPoint(p), b.TransformPoint(p), atol=atol) for p in POINTS)


@pytest.mark.parametrize("suffix", [".h5", ".mat"])
def test_binary_rigid_transform_reads_exactly(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    sitk.WriteTransform(_euler(), str(path))
    got = tfm.read_rigid_transform(path)
    assert got.GetName() == "Euler3DTransform"
    assert _same_mapping(got, _euler())


def test_binary_composite_is_flattened(tmp_path):
    second = sitk.Euler3DTransform()
    second.SetTranslation((-5.0, 2.0, 1.0))
    comp = sitk.CompositeTransform([_euler(), second])
    sitk.WriteTransform(comp, str(tmp_path / "c.h5"))
    got = tfm.read_rigid_transform(tmp_path / "c.h5")
    assert _same_mapping(got, comp)


def test_binary_deformable_and_non_finite_are_refused(tmp_path):
    ref = sitk.Image(8, 8, 8, sitk.sitkFloat32)
    bs = sitk.BSplineTransformInitializer(ref, [2, 2, 2])
    sitk.WriteTransform(bs, str(tmp_path / "bs.h5"))
    with pytest.raises(AblationError, match=r"deformable|rigid"):
        tfm.read_rigid_transform(tmp_path / "bs.h5")
    # a NaN written over the translation's 2.0 of a MATLAB-format file
    tx = sitk.Euler3DTransform()
    tx.SetTranslation((1.0, 2.0, 3.0))
    sitk.WriteTransform(tx, str(tmp_path / "nan.mat"))
    data = bytearray((tmp_path / "nan.mat").read_bytes())
    at = data.find(struct.pack("<d", 2.0))
    assert at >= 0
    data[at : at + 8] = struct.pack("<d", float("nan"))
    (tmp_path / "nan.mat").write_bytes(bytes(data))
    with pytest.raises(AblationError, match=r"nan\.mat.*not finite"):
        tfm.read_rigid_transform(tmp_path / "nan.mat")


@pytest.mark.parametrize("suffix", [".h5", ".mat"])
def test_corrupt_binary_transforms_read_right_or_are_refused(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    sitk.WriteTransform(_euler(), str(good))
    src = good.read_bytes()
    rng = random.Random(12)
    outcomes = {"same": 0, "refused": 0, "changed": 0}
    for k in range(16):
        data = bytearray(src)
        if k % 2:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"bad{k}{suffix}"
        path.write_bytes(bytes(data))
        try:
            got = tfm.read_rigid_transform(path)
        except AblationError as err:
            assert len(str(err).splitlines()) == 1 and path.name in str(err)
            outcomes["refused"] += 1
        else:
            assert tfm.is_rigid(got), path.name
            if _same_mapping(got, _euler(), atol=1e-6):
                outcomes["same"] += 1  # bytes the transform does not use were hit
            else:
                # only MATLAB files, which carry no checksum and no structure around
                # the six Euler numbers, can change a number undetectably
                assert suffix == ".mat", path.name
                outcomes["changed"] += 1
    assert outcomes["refused"] >= 8, outcomes


def test_cli_corrupt_h5_transform_is_one_line(tmp_path):
    arr = np.zeros((12, 20, 20), np.uint8)
    arr[4:8, 8:12, 8:12] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.2, 1.2, 3.0))
    sitk.WriteImage(img, str(tmp_path / "tumor.nii.gz"))
    arr[2:10, 4:16, 4:16] = 1
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "ablation.nii.gz"))
    sitk.WriteTransform(_euler(), str(tmp_path / "t.h5"))
    data = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(data[: len(data) // 2])
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_ablation.cli",
            "margin",
            "--tumor",
            str(tmp_path / "tumor.nii.gz"),
            "--ablation",
            str(tmp_path / "ablation.nii.gz"),
            "--transform",
            str(tmp_path / "t.h5"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "t.h5" in err[0] and "HDF5" not in res.stderr, res.stderr
