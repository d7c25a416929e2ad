"""Monotonicity under erasing: removing tumor voxels must not lower the MTM (issue 9).

The margin of a subset of the tumor is never below the margin of the tumor (the minimum of
the same field over fewer points), so a user who erases voxels of a tumor mask must never
see the MTM fall. The reconstruction across thick slices is an estimate of the object from
its mask, and several of its stages depend on more than the neighbourhood of a surface
point: on the bundled renal MRI (3 mm slices) erasing one slice, or cutting the tumor by a
plane 8 mm from the MTM point, lowers the MTM by 0.18-0.20 mm. Diagnosis, a candidate fix
and why it is not applied: benchmarks/README.md, "Monotonicity under erasing". The
failures are pinned by strict xfails: one that starts to pass must lose its mark.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import margin as M
from napari_ablation.core import samples

#: how far the MTM may move the wrong way on the renal sample (mm): erasures lower it by
#: 0.18-0.20 mm today, 0.03-0.05 mm with the candidate fix (coverage-blurred refined samples)
SAMPLE_TOL_MM = 0.1
#: strict monotonicity: what numerical noise alone may move it (mm)
STRICT_TOL_MM = 0.01


def _mtm(tumor_ref: sitk.Image, arr: np.ndarray, ablation: sitk.Image, transform=None):
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(tumor_ref)
    return M.analyze_margin(img, ablation, transform, with_shells=False)


@pytest.fixture(scope="module")
def renal():
    folder = samples.sample_dir() / "renal_mri"
    tumor = sitk.ReadImage(str(folder / "tumor.nii.gz"))
    ablation = sitk.ReadImage(str(folder / "ablation.nii.gz"))
    transform = sitk.ReadTransform(str(folder / "true_transform.tfm"))
    arr = sitk.GetArrayFromImage(tumor)
    full = _mtm(tumor, arr, ablation, transform)
    return tumor, arr, ablation, transform, full


def _erase_slice(arr, z):
    out = arr.copy()
    out[z] = 0
    return out


def _keep_x_at_most(arr, x):
    out = arr.copy()
    out[:, :, x + 1 :] = 0
    return out


#: the binary refined stack (benchmarks/README.md, "Monotonicity under erasing")
_AMPLIFIED = pytest.mark.xfail(
    strict=True,
    reason=(
        "across thick slices the refined samples are blurred as 0/1 (_shape_based_field): a "
        "shift of hundredths of a mm in a section's in-plane distances (its area-preserving "
        "offset and mean radius, which move with any voxel erased on the slice) flips whole "
        "pixels and moves the surface 8 mm from the erased voxels by up to 0.2 mm"
    ),
)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda a: _erase_slice(a, 15), id="erase-slice-15", marks=_AMPLIFIED),
        pytest.param(lambda a: _erase_slice(a, 17), id="erase-slice-17"),
        pytest.param(lambda a: _keep_x_at_most(a, 195), id="keep-x-le-195", marks=_AMPLIFIED),
    ],
)
def test_erasing_renal_tumor_voxels_does_not_lower_the_mtm(renal, edit):
    """The tester's case: the MTM point (medial flank, between slices 16 and 17) is kept."""
    tumor, arr, ablation, transform, full = renal
    sub_arr = edit(arr)
    assert 0 < np.count_nonzero(sub_arr) < np.count_nonzero(arr)
    sub = _mtm(tumor, sub_arr, ablation, transform)
    # the same minimum: the medial flank, within a pixel of the full tumor's MTM point
    assert np.linalg.norm(sub.min_margin_point_lps - full.min_margin_point_lps) < 1.2
    assert sub.min_margin_mm >= full.min_margin_mm - SAMPLE_TOL_MM, (
        sub.min_margin_mm,
        full.min_margin_mm,
    )


# ----------------------------------------------------------------------------- phantom

SPACING = (1.2, 1.2, 3.0)
R_TUMOR, R_ABL, D_ABL = 8.0, 12.0, 6.0
#: the exact MTM: the ablation ball (centre +6 mm along x) leaves the tumor's -x pole 2 mm out
TRUE_MTM = R_ABL - D_ABL - R_TUMOR


def _ball_case(phase):
    """A tumor ball (centre 0, radius 8) and an ablation ball on 1.2 x 1.2 x 3 mm grids."""
    size = np.array([36, 36, 14])
    sp = np.asarray(SPACING)
    origin = -size / 2 * sp + np.asarray(phase) * sp
    tumor = M.sphere_image(size.tolist(), SPACING, origin.tolist(), (0, 0, 0), R_TUMOR)
    ablation = M.sphere_image(
        (size + [10, 10, 4]).tolist(), SPACING, (origin - 6).tolist(), (D_ABL, 0, 0), R_ABL
    )
    return tumor, ablation


def _x_lps(img: sitk.Image) -> np.ndarray:
    g = M._Grid(img)
    shape = img.GetSize()[::-1]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return g.to_lps(idx.reshape(-1, 3))[:, 0].reshape(shape)


def _phantom_pair(phase, cut):
    tumor, ablation = _ball_case(phase)
    arr = sitk.GetArrayFromImage(tumor)
    full = _mtm(tumor, arr, ablation)
    if cut == "plane":  # keep the half x <= 0: the -x pole (the MTM point) is 8 mm away
        sub_arr = arr.copy()
        sub_arr[_x_lps(tumor) > 0] = 0
    else:  # erase the filled slice below the one nearest the equator (two parts)
        zs = np.unique(np.nonzero(arr)[0])
        z_eq = round(tumor.TransformPhysicalPointToContinuousIndex((0.0, 0.0, 0.0))[2])
        assert zs[0] < z_eq - 1 and z_eq - 1 < zs[-1]
        sub_arr = _erase_slice(arr, z_eq - 1)
    return full, _mtm(tumor, sub_arr, ablation)


PHANTOM_CASES = [
    ("plane", (0.03, 0.75, 0.54)),
    ("slice", (0.52, 0.12, 0.62)),
]


@pytest.mark.parametrize("cut, phase", PHANTOM_CASES, ids=["cut-plane", "erase-slice"])
def test_ball_phantom_margins_are_within_their_limits(cut, phase):
    """The phantom itself: both MTMs within their stated limits of the exact -2 mm."""
    full, sub = _phantom_pair(phase, cut)
    for r in (full, sub):
        assert abs(r.min_margin_mm - TRUE_MTM) <= r.min_margin_uncertainty_mm
        # the MTM point is the -x pole, where the exact minimum is
        assert r.min_margin_point_lps[0] < -R_TUMOR + 1.0


@pytest.mark.xfail(
    strict=True,
    reason=(
        "not monotone under erasing (benchmarks/README.md, 'Monotonicity under erasing'): "
        "besides the binary refined stack (candidate fix: same drops, -0.06 / -0.07 mm), "
        "across thick slices the blur's curvature correction is measured on the field blurred "
        "3 samples further (_blur_shift, CURVATURE_EXTRA_BLURS), which sees a cut 8 mm from the "
        "MTM point (-0.06 mm); an erased slice leaves a cap (_cap_profile) whose drift and "
        "section model reach beyond the interpolation to the erased slice (-0.07 mm, the new "
        "minimum in that cap)"
    ),
)
@pytest.mark.parametrize("cut, phase", PHANTOM_CASES, ids=["cut-plane", "erase-slice"])
def test_ball_phantom_subset_never_has_a_lower_mtm(cut, phase):
    """Keeping half the ball, or erasing a slice away from the pole, keeps the exact MTM."""
    full, sub = _phantom_pair(phase, cut)
    assert sub.min_margin_mm >= full.min_margin_mm - STRICT_TOL_MM, (
        sub.min_margin_mm,
        full.min_margin_mm,
    )
