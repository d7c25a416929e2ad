"""Reading images and DICOM series, bad input, atomic writes (issue 2)."""

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry, io
from napari_ablation.core.errors import AblationError


def make_volume(
    size=(32, 28, 10),
    spacing=(0.8, 0.8, 5.0),
    origin=(-10.0, 20.0, -40.0),
    direction=geometry.IDENTITY,
    seed=0,
):
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1500, size=size[::-1]).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def write_dicom_series(
    img,
    folder,
    *,
    series_uid=None,
    description="test series",
    modality="CT",
    skip=(),
    z_jitter=None,
):
    """Write a 3D image as a DICOM series (one file per slice) with SimpleITK."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    uid = (
        series_uid
        or f"1.2.826.0.1.3680043.2.1125.{int(time.time() * 1e6) % 10**12}.{np.random.randint(1e6)}"
    )
    d = img.GetDirection()
    iop = "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    n = img.GetSize()[2]
    for k in range(n):
        if k in skip:
            continue
        sl = img[:, :, k]
        pos = list(img.TransformIndexToPhysicalPoint((0, 0, k)))
        if z_jitter is not None and k in z_jitter:
            normal = np.cross(d[0:9:3], d[1:9:3])
            pos = list(np.asarray(pos) + z_jitter[k] * normal)
        tags = {
            "0008|0060": modality,
            "0020|000e": uid,
            "0020|000d": uid + ".1",
            "0008|103e": description,
            "0020|0037": iop,
            "0020|0032": "\\".join(f"{v:.6f}" for v in pos),
            "0020|0013": str(k + 1),
            "0018|0050": str(img.GetSpacing()[2]),
            "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
            "0010|0010": "PHANTOM^ABLATION",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice_{k:04d}.dcm"))
        writer.Execute(sl)
    return uid


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize(
    "direction", [geometry.IDENTITY, (-1, 0, 0, 0, -1, 0, 0, 0, 1), (1, 0, 0, 0, 0, 1, 0, -1, 0)]
)
def test_file_round_trip_keeps_physical_content(tmp_path, suffix, direction):
    img = make_volume(direction=direction)
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(img, str(path))
    loaded = io.read_image(path)
    out = loaded.image
    assert geometry.is_identity_direction(out)
    assert loaded.original_geometry["direction"] == pytest.approx(list(direction))
    # every voxel sits at the same physical point with the same value
    src = sitk.GetArrayFromImage(img)
    dst = sitk.GetArrayFromImage(out)
    for k, j, i in [(0, 0, 0), (9, 27, 31), (4, 13, 7), (2, 20, 30)]:
        p = img.TransformIndexToPhysicalPoint((i, j, k))
        idx = out.TransformPhysicalPointToIndex(p)
        assert dst[idx[::-1]] == src[k, j, i]
    assert sorted(np.round(out.GetSpacing(), 4)) == sorted(np.round(img.GetSpacing(), 4))


@pytest.mark.parametrize("direction", [geometry.IDENTITY, (1, 0, 0, 0, 0, 1, 0, -1, 0)])
def test_dicom_series_written_and_read_back_with_same_geometry(tmp_path, direction):
    img = make_volume(direction=direction)
    write_dicom_series(img, tmp_path / "dcm")
    series = io.list_dicom_series(tmp_path / "dcm")
    assert len(series) == 1 and series[0].problem is None
    assert series[0].size == (32, 28, 10)
    assert series[0].spacing == pytest.approx((0.8, 0.8, 5.0), abs=1e-4)
    loaded = io.read_image(tmp_path / "dcm")
    assert loaded.modality == "CT"
    expected, _ = geometry.orient_lps(img)
    out = loaded.image
    assert out.GetSize() == expected.GetSize()
    assert np.allclose(out.GetSpacing(), expected.GetSpacing(), atol=1e-4)
    assert np.allclose(out.GetOrigin(), expected.GetOrigin(), atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(expected))


def test_folder_with_several_series_lists_them_and_defaults_to_the_largest(tmp_path):
    big = make_volume(size=(32, 28, 10))
    small = make_volume(size=(16, 16, 6), spacing=(1.5, 1.5, 3.0), seed=3)
    uid_big = write_dicom_series(
        big, tmp_path / "study" / "a", description="T1 VIBE", modality="MR"
    )
    uid_small = write_dicom_series(
        small, tmp_path / "study" / "b", description="localizer", modality="MR"
    )
    series = io.list_dicom_series(tmp_path / "study")
    assert [s.uid for s in series] == [uid_big, uid_small]
    assert "T1 VIBE" in series[0].summary() and "32x28x10" in series[0].summary()
    loaded = io.read_image(tmp_path / "study")
    assert loaded.image.GetSize() == (32, 28, 10)
    assert any("localizer" in n for n in loaded.notes)  # the others are named
    chosen = io.read_image(tmp_path / "study", series_uid=uid_small)
    assert chosen.image.GetSize() == (16, 16, 6)
    assert chosen.description == "localizer"


def test_dicom_series_with_missing_slice_is_refused(tmp_path):
    write_dicom_series(make_volume(), tmp_path / "dcm", skip={4})
    with pytest.raises(AblationError, match="missing slice"):
        io.read_image(tmp_path / "dcm")


def test_dicom_series_with_uneven_spacing_is_refused(tmp_path):
    write_dicom_series(make_volume(), tmp_path / "dcm", z_jitter={3: 0.8})
    with pytest.raises(AblationError, match="uneven slice spacing"):
        io.read_image(tmp_path / "dcm")


@pytest.mark.parametrize(
    "name,modality,size",
    [("CT_small.dcm", "CT", (128, 128, 1)), ("MR_small.dcm", "MR", (64, 64, 1))],
)
def test_pydicom_real_files_read(name, modality, size):
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    ds = dcmread(path)
    loaded = io.read_image(path, require_volume=False)
    assert loaded.modality == modality
    assert loaded.image.GetSize() == size
    px = [float(v) for v in ds.PixelSpacing]  # row spacing (y), column spacing (x)
    assert loaded.image.GetSpacing()[0] == pytest.approx(px[1])
    assert loaded.image.GetSpacing()[1] == pytest.approx(px[0])
    assert geometry.is_identity_direction(loaded.image)
    # the first pixel lands at ImagePositionPatient (the file's own orientation is axial LPS)
    first = np.asarray(loaded.image.TransformIndexToPhysicalPoint((0, 0, 0)))
    assert np.allclose(first, [float(v) for v in ds.ImagePositionPatient], atol=1e-3)
    # but a single slice is not a volume for the case workflow
    with pytest.raises(AblationError, match="2D"):
        io.read_image(path)


def test_pydicom_folder_listing(tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    series = io.list_dicom_series(tmp_path)
    assert sorted(s.modality for s in series) == ["CT", "MR"]


def test_bad_inputs_give_one_line_messages(tmp_path):
    cases = {}
    cases["missing"] = tmp_path / "nope.nii.gz"
    (tmp_path / "notes.nii.gz").write_text("this is not an image")
    cases["not an image"] = tmp_path / "notes.nii.gz"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    cases["no dicom"] = tmp_path / "empty"
    img2d = sitk.GetImageFromArray(np.zeros((20, 30), np.float32))
    sitk.WriteImage(img2d, str(tmp_path / "flat.nii.gz"))
    cases["2D"] = tmp_path / "flat.nii.gz"
    img4d = sitk.GetImageFromArray(np.zeros((3, 4, 5, 6), np.float32), isVector=False)
    sitk.WriteImage(img4d, str(tmp_path / "four.nii.gz"))
    cases["4D"] = tmp_path / "four.nii.gz"
    rgb = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    cases["rgb"] = tmp_path / "rgb.mha"
    expected = {
        "missing": "no such file",
        "not an image": "not a readable image",
        "no dicom": "no DICOM",
        "2D": "2D",
        "4D": "4D",
        "rgb": "components",
    }
    for key, path in cases.items():
        with pytest.raises(AblationError) as info:
            io.read_image(path)
        msg = str(info.value)
        assert "\n" not in msg and expected[key] in msg, (key, msg)


def test_read_labels_binarises_and_selects_a_value(tmp_path):
    arr = np.zeros((6, 7, 8), np.uint8)
    arr[1:3, 2:4, 2:5] = 1
    arr[4, 4, 4] = 2
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.7, 2.5))
    sitk.WriteImage(img, str(tmp_path / "lab.nii.gz"))
    any_fg = sitk.GetArrayFromImage(io.read_labels(tmp_path / "lab.nii.gz"))
    assert any_fg.sum() == 13 and any_fg.max() == 1
    two = sitk.GetArrayFromImage(io.read_labels(tmp_path / "lab.nii.gz", label=2))
    assert two.sum() == 1 and two[4, 4, 4] == 1
    with pytest.raises(AblationError, match="empty"):
        io.read_labels(tmp_path / "lab.nii.gz", label=7, name="tumor")


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "labels.nii.gz"
    good = make_volume()
    io.write_image_atomic(good, target)
    before = target.read_bytes()

    def broken(image, name, *a, **k):
        Path(name).write_bytes(b"half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(io.sitk, "WriteImage", broken)
    with pytest.raises(AblationError, match="disk full"):
        io.write_image_atomic(good, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]  # no temporary left behind


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os
    import stat

    target = io.write_text_atomic(tmp_path / "case.json", "{}")
    mode = stat.S_IMODE(os.stat(target).st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask


def _label_map(values, dtype=np.uint16) -> sitk.Image:
    """A small label map: a block of each of ``values`` (0 elsewhere), 0.8 x 0.8 x 5 mm."""
    arr = np.zeros((6, 10, 12), dtype)
    for k, v in enumerate(values):
        arr[1:5, 1 + 2 * k : 3 + 2 * k, 2:9] = v
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.8, 5.0))
    return img


@pytest.mark.parametrize(
    "values, dtype", [((256,), np.uint16), ((1000, 256, 3), np.uint16), ((-1, 7, 300), np.int16)]
)
def test_labels_to_uint8_renumbers_values_that_do_not_fit_never_wraps(values, dtype):
    # UAT s12 N1: a uint16 mask of 256 read into uint8 labels wrapped to 0 (the tumor lost)
    img = _label_map(values, dtype)
    src = sitk.GetArrayFromImage(img)
    out, label = io.labels_to_uint8(img, "tumor.nii.gz", label=max(values))
    arr = sitk.GetArrayFromImage(out)
    assert out.GetPixelID() == sitk.sitkUInt8 and geometry.same_grid(out, img)
    ranks = {v: k + 1 for k, v in enumerate(sorted(values))}  # 1, 2, ... in value order
    for v in values:
        np.testing.assert_array_equal(arr == ranks[v], src == v)  # each label kept apart
    np.testing.assert_array_equal(arr != 0, src != 0)  # nothing lost, nothing added
    assert label == ranks[max(values)]  # the selected value follows its voxels


def test_labels_to_uint8_keeps_values_that_fit_and_refuses_a_scan():
    img = _label_map((1, 2, 255), np.int32)
    out, label = io.labels_to_uint8(img, "tumor.nii.gz", label=2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(img))
    assert label == 2 and out.GetPixelID() == sitk.sitkUInt8
    scan = make_volume()  # int16 CT, many values
    with pytest.raises(AblationError, match=r"^tumor.nii.gz: not a label image: \d+ distinct"):
        io.labels_to_uint8(scan, "tumor.nii.gz")
    mri = sitk.Cast(scan, sitk.sitkFloat32) * 0.37
    with pytest.raises(AblationError, match=r"^tumor.nii.gz: not a label image \(non-integer"):
        io.labels_to_uint8(mri, "tumor.nii.gz")


def _sample_case_copy(tmp_path) -> Path:
    import shutil

    from napari_ablation.core import samples

    folder = tmp_path / "renal"
    shutil.copytree(samples.sample_dir() / "renal_mri", folder)
    return folder


def _write_over(path: Path, arr: np.ndarray, grid: Path | None = None) -> None:
    """Write ``arr`` as the image file ``path``, on the grid of ``grid`` (default: ``path``)."""
    ref = sitk.ReadImage(str(grid or path))
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(path))


def test_case_folder_with_a_scan_as_tumor_is_refused_in_one_line(tmp_path):
    from napari_ablation.core.case import Case

    folder = _sample_case_copy(tmp_path)
    (folder / "tumor.nii.gz").write_bytes((folder / "pre.nii.gz").read_bytes())  # int16 MRI
    with pytest.raises(AblationError) as info:
        Case.load(folder)
    msg = str(info.value)
    assert msg.startswith("tumor.nii.gz: not a label image: ") and "\n" not in msg, msg


def test_case_folder_with_uint16_labels_above_255_keeps_every_voxel(tmp_path):
    import json

    from napari_ablation.core.case import Case

    folder = _sample_case_copy(tmp_path)
    before = Case.load(folder)
    masks = {r: sitk.GetArrayFromImage(getattr(before, r)) != 0 for r in ("tumor", "ablation")}
    _write_over(folder / "tumor.nii.gz", (masks["tumor"] * 256).astype(np.uint16))
    abl = masks["ablation"].astype(np.uint16) * 1000
    abl[tuple(np.array(masks["ablation"].nonzero())[:, :5])] = 2000  # a second structure
    _write_over(folder / "ablation.nii.gz", abl)
    doc = json.loads((folder / "case.json").read_text())
    doc["settings"]["ablation_label"] = 1000  # the ablation zone is the 1000s
    (folder / "case.json").write_text(json.dumps(doc))
    case = Case.load(folder)
    tumor = sitk.GetArrayFromImage(case.tumor)
    np.testing.assert_array_equal(tumor != 0, masks["tumor"])  # 256 wrapped to 0 before
    ablation = sitk.GetArrayFromImage(case.ablation)
    assert case.settings["ablation_label"] == 1  # renumbered with its voxels
    np.testing.assert_array_equal(ablation == 1, abl == 1000)
    np.testing.assert_array_equal(ablation == 2, abl == 2000)


def test_cli_margin_with_a_scan_or_a_uint16_mask_as_tumor(tmp_path, capsys):
    from napari_ablation import cli

    folder = _sample_case_copy(tmp_path)
    args = ["margin", "--ablation", str(folder / "ablation.nii.gz")]
    args += ["--transform", str(folder / "true_transform.tfm")]
    assert cli.main([*args, "--tumor", str(folder / "tumor.nii.gz")]) == 0
    expected = capsys.readouterr().out
    scan = folder / "scan_tumor.nii.gz"
    scan.write_bytes((folder / "pre.nii.gz").read_bytes())
    assert cli.main([*args, "--tumor", str(scan)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "scan_tumor.nii.gz: not a label image" in err, err
    wide = folder / "wide_tumor.nii.gz"
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "tumor.nii.gz"))) != 0
    _write_over(wide, (mask * 256).astype(np.uint16), grid=folder / "tumor.nii.gz")
    assert cli.main([*args, "--tumor", str(wide)]) == 0
    assert capsys.readouterr().out == expected  # the same numbers, not an empty mask
