"""UAT s10 N1: an oblique label file opened through the plugin's reader (napari's File >
Open, a drop) was resampled onto the axis-aligned grid with linear interpolation into
uint8: a 20-degree oblique tumor lost 27 % of its voxels (fractions truncated to 0) and
moved by a slice, and that became the case's tumor. A file read as labels (a known label
file name, or voxels that look like a segmentation) is resampled with nearest neighbour,
exactly as the CLI reads it (``io.read_labels``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation._reader import get_reader
from napari_ablation.core import io


def _open(path):
    """What napari's File > Open with the plugin's reader adds: ``(data, kwargs, type)``."""
    (layer,) = get_reader(str(path))(str(path))
    return layer


def _oblique_labels(path, degrees: float = 20.0) -> sitk.Image:
    """Two spheres (labels 1 and 2, radii 10 and 5 mm) on a 0.8 x 0.8 x 3 mm grid tilted by
    ``degrees`` about x, written to ``path``."""
    a = math.radians(degrees)
    d = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    sp = np.array([0.8, 0.8, 3.0])
    n = np.ceil(60.0 / sp).astype(int)
    origin = -d @ ((n - 1) / 2 * sp)
    k, j, i = np.meshgrid(*(np.arange(m) for m in n[::-1]), indexing="ij")
    p = origin + (np.stack([i, j, k], -1) * sp) @ d.T
    arr = (np.linalg.norm(p, axis=-1) < 10).astype(np.uint8)
    arr[np.linalg.norm(p - (15.0, 10.0, -5.0), axis=-1) < 5] = 2
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(sp))
    img.SetOrigin(tuple(origin))
    img.SetDirection(tuple(d.ravel()))
    sitk.WriteImage(img, str(path))
    return img


@pytest.mark.parametrize("name", ["tumor.nii.gz", "reader_b_mask.nii.gz"])
def test_an_oblique_label_file_opens_as_the_cli_reads_it(tmp_path, name):
    path = tmp_path / name
    _oblique_labels(path)
    data, kw, kind = _open(path)
    assert kind == "labels"
    cli = sitk.GetArrayFromImage(io.read_image(path, is_label=True).image)
    assert set(np.unique(cli)) == {0, 1, 2}
    assert np.array_equal(data, cli)
    # the same voxels as the CLI's mask, on the same grid
    mask = io.read_labels(path)
    assert np.array_equal(data != 0, sitk.GetArrayFromImage(mask) != 0)
    assert np.allclose(kw["translate"], mask.GetOrigin()[::-1])
    assert np.allclose(kw["scale"], mask.GetSpacing()[::-1])


def test_an_oblique_scan_still_opens_as_an_image(tmp_path):
    """An intensity scan (many values) is not taken for labels: an Image layer, resampled
    linearly as before."""
    path = tmp_path / "scan.nii.gz"
    img = _oblique_labels(path)
    arr = sitk.GetArrayFromImage(img).astype(np.int16) * 100
    arr += np.random.default_rng(0).integers(0, 200, arr.shape, dtype=np.int16)
    scan = sitk.GetImageFromArray(arr)
    scan.CopyInformation(img)
    sitk.WriteImage(scan, str(path))
    assert _open(path)[2] == "image"
    assert not io.read_image(path, is_label=None).is_label


def test_a_non_integer_label_file_is_refused_as_the_cli_refuses_it(tmp_path, monkeypatch):
    """UAT s10 N5: ``ablation.nii.gz`` stored as float 0.0 / 0.5 became an all-zero Labels
    layer (0.5 truncated to 0), silently; the CLI refuses it. The reader now says the CLI's
    line and adds no layer."""
    from napari_ablation import _reader

    path = tmp_path / "ablation.nii.gz"
    img = _oblique_labels(tmp_path / "labels.nii.gz")
    half = sitk.Cast(img, sitk.sitkFloat32) * 0.5
    sitk.WriteImage(half, str(path))
    said = []
    monkeypatch.setattr(_reader, "_notify_error", said.append)
    (layer,) = get_reader(str(path))(str(path))
    assert layer[0] is None, "a layer was added"  # napari's "read, nothing to add"
    with pytest.raises(Exception) as cli_error:
        io.read_labels(path)
    assert said == [str(cli_error.value)]
    assert "not a label image (non-integer values)" in said[0]
