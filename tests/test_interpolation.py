"""Shape-based slice interpolation (core.interpolation) on analytic phantoms."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.cli import main
from napari_ablation.core import phantoms
from napari_ablation.core.errors import AblationError
from napari_ablation.core.interpolation import annotated_slices, dice, interpolate_slices

# ----------------------------------------------------------------------------- phantoms


def tilted_ellipsoid(
    shape=(60, 84, 76), spacing=(1.0, 1.0, 1.0), semi=(20, 30, 15), angles=(30, 20, 15)
):
    return phantoms.tilted_ellipsoid(shape, spacing, semi, angles)


def kidney(shape=(64, 70, 76), spacing=(2.0, 1.0, 1.0)):
    """Bean: a bent ellipsoid with a hilum notch (non-convex), long axis along z."""
    return phantoms.kidney(shape, spacing, width=28.0)


def sparse(mask, axis, step, value=1, dtype=np.uint8):
    present = annotated_slices(mask.astype(np.uint8), axis)
    keep = np.arange(present[0] + 1, present[-1], step)
    out = np.zeros(mask.shape, dtype)
    np.moveaxis(out, axis, 0)[keep] = np.moveaxis(mask, axis, 0)[keep] * value
    return out, keep


def dice_between(truth, result, axis, keep):
    t = np.moveaxis(truth, axis, 0)[keep[0] : keep[-1] + 1]
    r = np.moveaxis(result, axis, 0)[keep[0] : keep[-1] + 1]
    return dice(t, r)


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_tilted_ellipsoid_every_5th_slice_each_axis(axis):
    truth = tilted_ellipsoid()
    sp = (1.0, 1.0, 1.0)
    labels, keep = sparse(truth, axis, 5)
    out = interpolate_slices(labels, axis, sp)
    assert dice_between(truth, out, axis, keep) >= 0.97
    # the annotated slices are untouched, and nothing outside the annotated range is filled
    assert np.array_equal(np.moveaxis(out, axis, 0)[keep], np.moveaxis(labels, axis, 0)[keep])
    outside = np.ones(truth.shape[axis], bool)
    outside[keep[0] : keep[-1] + 1] = False
    assert not np.moveaxis(out, axis, 0)[outside].any()
    # the sparse input is not modified
    assert np.array_equal(labels, sparse(truth, axis, 5)[0])


def test_interpolation_beats_nearest_slice_copy():
    truth = tilted_ellipsoid()
    labels, keep = sparse(truth, 0, 5)
    ours = dice_between(truth, interpolate_slices(labels, 0, (1, 1, 1)), 0, keep)
    nearest = dice_between(
        truth, interpolate_slices(labels, 0, (1, 1, 1), method="nearest"), 0, keep
    )
    assert ours > nearest + 0.01


def test_kidney_every_3rd_slice_on_2mm_slices():
    truth = kidney()
    labels, keep = sparse(truth, 0, 3)
    out = interpolate_slices(labels, 0, (2.0, 1.0, 1.0))
    assert dice_between(truth, out, 0, keep) >= 0.95
    assert np.array_equal(out[keep], labels[keep])


@pytest.mark.parametrize(
    "spacing,axis,step",
    [((3.0, 0.8, 0.8), 0, 2), ((3.0, 0.8, 0.8), 2, 6), ((1.0, 2.0, 0.7), 1, 3)],
)
def test_anisotropic_grids(spacing, axis, step):
    shape = tuple(round(80 / s) for s in spacing)
    truth = tilted_ellipsoid(shape=shape, spacing=spacing, semi=(22, 28, 16))
    labels, keep = sparse(truth, axis, step)
    out = interpolate_slices(labels, axis, spacing)
    assert dice_between(truth, out, axis, keep) >= 0.95
    assert np.array_equal(np.moveaxis(out, axis, 0)[keep], np.moveaxis(labels, axis, 0)[keep])


def test_label_value_and_dtype_kept():
    truth = tilted_ellipsoid()
    labels, _keep = sparse(truth, 0, 5, value=7, dtype=np.int32)
    out = interpolate_slices(labels, "z", (1, 1, 1))
    assert out.dtype == np.int32
    assert set(np.unique(out)) == {0, 7}


# ----------------------------------------------------------------------------- topology


def test_several_separate_objects():
    z, y, x = phantoms.centred_grid((40, 60, 80), (1, 1, 1))
    a = (z / 15) ** 2 + (y / 12) ** 2 + ((x + 20) / 12) ** 2 <= 1
    b = (z / 12) ** 2 + ((y - 5) / 10) ** 2 + ((x - 22) / 14) ** 2 <= 1
    truth = a | b
    labels, keep = sparse(truth, 0, 4)
    out = interpolate_slices(labels, 0, (1, 1, 1))
    from scipy import ndimage

    _, n = ndimage.label(out)
    assert n == 2
    assert dice_between(a, out.astype(bool) & (x < 0), 0, keep) >= 0.95
    assert dice_between(b, out.astype(bool) & (x > 0), 0, keep) >= 0.95


def test_two_objects_merging_into_one_are_not_glued():
    """Trousers: two legs below z=20 join into one trunk above; slices every 6th."""
    _z, y, x = phantoms.centred_grid((50, 40, 60), (1, 1, 1))
    zi = np.arange(50)[:, None, None] * np.ones((1, 40, 60))
    legs = (((x + 12) ** 2 + y**2 <= 64) | ((x - 12) ** 2 + y**2 <= 64)) & (zi < 24)
    trunk = ((x / 22) ** 2 + (y / 9) ** 2 <= 1) & (zi >= 24)
    truth = (legs | trunk) & (zi >= 3) & (zi <= 46)
    labels, keep = sparse(truth, 0, 6)
    out = interpolate_slices(labels, 0, (1, 1, 1)).astype(bool)
    assert dice_between(truth, out, 0, keep) >= 0.9
    # well below the junction the gap between the legs stays empty
    assert not out[5:15, :, 28:33].any()


def test_holes_are_kept():
    """A thick-walled tube: the lumen stays empty on the interpolated slices."""
    _z, y, x = phantoms.centred_grid((40, 50, 50), (1, 1, 1))
    r = np.sqrt(y**2 + x**2)
    zi = np.arange(40)[:, None, None]
    truth = (r <= 15 + 0.15 * (zi - 20)) & (r >= 6) & (zi >= 4) & (zi <= 35)
    labels, keep = sparse(truth, 0, 5)
    out = interpolate_slices(labels, 0, (1, 1, 1)).astype(bool)
    assert dice_between(truth, out, 0, keep) >= 0.95
    assert not out[:, 22:28, 22:28].any()


def test_other_labels_never_overwritten():
    truth = tilted_ellipsoid()
    labels, keep = sparse(truth, 0, 5)
    between = keep[3] + 2
    labels[between, 30:50, 30:50] = 2  # another structure on an unannotated slice
    labels[keep[2] + 1 : keep[2] + 3, 40:44, 40:44] = 3
    out = interpolate_slices(labels, 0, (1, 1, 1), label=1)
    assert np.array_equal(out[labels == 2], labels[labels == 2])
    assert np.array_equal(out[labels == 3], labels[labels == 3])
    assert np.array_equal(out[keep], labels[keep])


def test_each_label_value_interpolated_on_its_own():
    z, y, x = phantoms.centred_grid((40, 50, 70), (1, 1, 1))
    a = (z / 15) ** 2 + (y / 12) ** 2 + ((x + 18) / 12) ** 2 <= 1
    b = (z / 15) ** 2 + (y / 12) ** 2 + ((x - 18) / 12) ** 2 <= 1
    la, keep = sparse(a, 0, 4, value=1)
    lb, _ = sparse(b, 0, 4, value=2)
    out = interpolate_slices(la + lb, 0, (1, 1, 1))
    assert dice_between(a, out == 1, 0, keep) >= 0.95
    assert dice_between(b, out == 2, 0, keep) >= 0.95


def test_explicit_empty_annotated_slice_closes_the_object():
    truth = tilted_ellipsoid()
    labels, keep = sparse(truth, 0, 5)
    last = keep[-1]
    labels[last] = 0  # the user marks the last slice as "nothing here"
    out = interpolate_slices(labels, 0, (1, 1, 1), annotated=list(keep))
    assert not out[last].any()
    assert out[keep[-2] + 1].any()


# ----------------------------------------------------------------------------- bad input


def test_fewer_than_two_slices():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[10, 5:10, 5:10] = 1
    before = labels.copy()
    with pytest.raises(AblationError, match="at least two annotated slices"):
        interpolate_slices(labels, 0, (1, 1, 1))
    with pytest.raises(AblationError, match="empty"):
        interpolate_slices(np.zeros_like(labels), 0, (1, 1, 1))
    assert np.array_equal(labels, before)


def test_annotations_drawn_on_another_orientation():
    truth = tilted_ellipsoid()
    coronal, _ = sparse(truth, 1, 5)  # drawn on coronal slices
    with pytest.raises(AblationError, match="coronal"):
        interpolate_slices(coronal, 0, (1, 1, 1))  # but axial interpolation asked
    out = interpolate_slices(coronal, 1, (1, 1, 1))  # the right axis works
    assert out.sum() > coronal.sum()


def test_every_slice_already_annotated():
    truth = tilted_ellipsoid()
    with pytest.raises(AblationError, match="already annotated"):
        interpolate_slices(truth.astype(np.uint8), 0, (1, 1, 1))


def test_bad_spacing_and_axis():
    labels, _ = sparse(tilted_ellipsoid(), 0, 5)
    with pytest.raises(AblationError, match="spacing"):
        interpolate_slices(labels, 0, (1, 0, 1))
    with pytest.raises(AblationError, match="axis"):
        interpolate_slices(labels, "w", (1, 1, 1))


# ----------------------------------------------------------------------------- CLI


def _write(arr, path, spacing_xyz=(0.8, 0.8, 3.0), origin=(10.0, -20.0, 30.0), direction=None):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing_xyz)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return img


def test_cli_round_trip_keeps_geometry_and_values(tmp_path):
    spacing_zyx = (3.0, 0.8, 0.8)
    truth = tilted_ellipsoid(shape=(27, 100, 100), spacing=spacing_zyx, semi=(22, 28, 16))
    labels, keep = sparse(truth, 0, 2, value=5)
    # RAS-flipped file: x and y axes reversed in direction; the axial (z) axis stays z
    ras = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)
    src = _write(labels, tmp_path / "sparse.nii.gz", direction=ras)
    out_path = tmp_path / "dense.nii.gz"
    assert (
        main(
            [
                "interpolate",
                "--labels",
                str(src_path := tmp_path / "sparse.nii.gz"),
                "--out",
                str(out_path),
                "--axis",
                "z",
            ]
        )
        == 0
    )
    assert src_path.exists()
    res = sitk.ReadImage(str(out_path))
    assert res.GetSize() == src.GetSize()
    assert np.allclose(res.GetSpacing(), src.GetSpacing(), atol=1e-5)
    assert np.allclose(res.GetOrigin(), src.GetOrigin(), atol=1e-4)
    assert np.allclose(res.GetDirection(), src.GetDirection(), atol=1e-6)
    arr = sitk.GetArrayFromImage(res)
    assert set(np.unique(arr)) == {0, 5}
    assert np.array_equal(arr[keep], labels[keep])  # same voxel order as the input
    assert dice_between(truth, arr, 0, keep) >= 0.95


def test_cli_bad_input_one_line_no_output(tmp_path, capsys):
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[10, 5:10, 5:10] = 1
    _write(labels, tmp_path / "one.nii.gz")
    out = tmp_path / "dense.nii.gz"
    assert main(["interpolate", "--labels", str(tmp_path / "one.nii.gz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two annotated slices" in err
    assert not out.exists()
    assert (
        main(["interpolate", "--labels", str(tmp_path / "missing.nii.gz"), "--out", str(out)]) == 2
    )
    assert not out.exists()
    assert not list(tmp_path.glob(".*tmp*"))
