"""DICOM series whose geometry is impossible or broken, built with pydicom.

Gantry tilt is corrected exactly (resampled, with a notice); a per-slice in-plane
shift, a slice with another PixelSpacing, PixelSpacing 0 and a corrupt file are refused
in one line that names the file; a single multi-frame file alone in a folder reads.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from napari_ablation import cli
from napari_ablation.core import io
from napari_ablation.core.errors import AblationError

ROWS, COLS, N = 20, 24, 10
PX = 0.8  # mm in-plane
DZ = 2.0  # mm between slices
MARK = (5, 11, 7)  # (slice, row, col) of the one bright voxel


def _slice(k: int, series_uid: str, ipp, pixel_spacing=(PX, PX), frames: int = 1) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.Modality = "CT"
    ds.SeriesDescription = "test series"
    ds.PatientID = "P1"
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [f"{pixel_spacing[0]:g}", f"{pixel_spacing[1]:g}"]
    ds.SliceThickness = DZ
    ds.Rows, ds.Columns = ROWS, COLS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    arr = np.full((frames, ROWS, COLS), 10, np.int16)
    if frames == 1 and k == MARK[0]:
        arr[0, MARK[1], MARK[2]] = 1000
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.SpacingBetweenSlices = DZ
    ds.PixelData = (arr if frames > 1 else arr[0]).tobytes()
    return ds


def write_series(
    folder: Path, *, tilt_deg=0.0, shift=None, spacing_of=None, spacing=(PX, PX)
) -> list[Path]:
    """``shift = (slice, mm)`` moves one slice sideways;
    ``spacing_of = (slice, (r, c))`` gives it another PixelSpacing."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    paths = []
    for k in range(N):
        z = k * DZ
        ipp = [-10.0, -8.0 + z * math.tan(math.radians(tilt_deg)), z]
        if shift is not None and k == shift[0]:
            ipp[0] += shift[1]
        ps = spacing_of[1] if spacing_of is not None and k == spacing_of[0] else spacing
        ds = _slice(k, uid, ipp, ps)
        path = folder / f"IM{k:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_plain_series_reads_with_its_geometry(tmp_path):
    write_series(tmp_path / "s")
    img = io.read_image(tmp_path / "s").image
    assert img.GetSize() == (COLS, ROWS, N)
    assert np.allclose(img.GetSpacing(), (PX, PX, DZ))


def test_gantry_tilt_is_resampled_exactly_with_a_notice(tmp_path):
    tilt = 15.0
    write_series(tmp_path / "s", tilt_deg=tilt)
    loaded = io.read_image(tmp_path / "s")
    assert any("gantry tilt of 15.0 deg" in n for n in loaded.notes), loaded.notes
    img = loaded.image
    assert np.allclose(img.GetDirection(), np.eye(3).ravel())
    # the bright voxel must sit where the scanner put it:
    # x = -10 + col*PX, y = -8 + row*PX + z*tan(tilt), z
    k, r, c = MARK
    true = np.array([-10 + c * PX, -8 + r * PX + k * DZ * math.tan(math.radians(tilt)), k * DZ])
    arr = io.sitk.GetArrayFromImage(img)
    idx = np.unravel_index(np.argmax(arr), arr.shape)
    found = np.array(img.TransformIndexToPhysicalPoint([int(i) for i in idx[::-1]]))
    assert np.linalg.norm(found - true) < max(img.GetSpacing()), (found, true)
    # read naively (ignoring the tilt) the same voxel would be k*DZ*tan(15 deg) = 2.7 mm off
    assert k * DZ * math.tan(math.radians(tilt)) > 2.5


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"shift": (4, 2.5)}, "IM0004 shifted in-plane by 2.50 mm"),
        ({"spacing_of": (6, (0.9, 0.9))}, "PixelSpacing 0.9\\0.9 in IM0006"),
        ({"spacing": (0.0, 0.0)}, "PixelSpacing 0\\0 in IM0000 (must be positive)"),
    ],
    ids=["per-slice shift", "one slice with another PixelSpacing", "PixelSpacing 0"],
)
def test_impossible_geometry_is_refused_naming_the_file(tmp_path, kwargs, expected, capfd):
    write_series(tmp_path / "s", **kwargs)
    with pytest.raises(AblationError) as info:
        io.read_image(tmp_path / "s")
    assert expected in str(info.value)
    # through the CLI: one line, exit 2, nothing written
    out = tmp_path / "dense.nii.gz"
    rc = cli.main(["interpolate", "--labels", str(tmp_path / "s"), "--out", str(out)])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and expected in err[0]
    assert not out.exists()


@pytest.mark.parametrize("damage", ["garbage header", "truncated pixels"])
def test_a_corrupt_file_in_a_series_is_named(tmp_path, damage):
    paths = write_series(tmp_path / "s")
    victim = paths[3]
    data = victim.read_bytes()
    if damage == "garbage header":
        victim.write_bytes(data[:132] + bytes(range(256)) * 4)
    else:
        victim.write_bytes(data[: len(data) - 300])
    with pytest.raises(AblationError) as info:
        io.read_image(tmp_path / "s")
    msg = str(info.value)
    assert "IM0003" in msg and "missing slice" not in msg, msg


def test_single_multiframe_file_alone_in_a_folder_reads(tmp_path):
    folder = tmp_path / "mf"
    folder.mkdir()
    ds = _slice(0, generate_uid(), [0.0, 0.0, 0.0], frames=7)
    ds.save_as(folder / "multiframe.dcm", enforce_file_format=True)
    direct = io.read_image(folder / "multiframe.dcm").image
    from_folder = io.read_image(folder).image
    assert from_folder.GetSize() == direct.GetSize() == (COLS, ROWS, 7)
