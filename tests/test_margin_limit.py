"""The stated resolution limit across thick slices follows what its data term models.

The sections' departure from the reconstruction's model (core.margin._slice_departure) says how
the surface may run BETWEEN slices; on a slice the in-plane contour is the pixels' own. Phantom:
a ball with a brim one slice thick (a one-slice protrusion, like a brush stroke on one 3 mm
slice) inside a long cylinder along z, whose axis is offset so that the minimum lies at the
brim's far edge, in-plane (+x). The exact MTM does not depend on where the brim ends across the
slices: cylinder radius minus the distance from its axis to the far edge of the brim.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from napari_ablation.core import margin

SPACING = (0.9, 1.1, 3.0)  # x, y, z mm (the tester's own case: 0.9 x 1.1 x 3 mm)
SHAPE = (21, 51, 51)  # z, y, x
ORIGIN = (-22.5, -27.5, -30.0)  # slice 10 at z = 0
BALL_R = 8.0
BRIM_C, BRIM_R = 4.0, 7.0  # the brim: a disc on slice z = 0 centred at x = 4, out to x = 11
CYL_X, CYL_R = -1.0, 11.0  # the ablation zone: a cylinder along z
TRUTH = CYL_R - (BRIM_C + BRIM_R - CYL_X)  # -1.0 mm, at the brim's far edge, direction +x


def _points():
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    return x * SPACING[0] + ORIGIN[0], y * SPACING[1] + ORIGIN[1], z * SPACING[2] + ORIGIN[2]


def _image(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    return img


def _phantom() -> tuple[sitk.Image, sitk.Image]:
    x, y, z = _points()
    ball = x**2 + y**2 + z**2 <= BALL_R**2
    brim = (np.abs(z) < 1e-6) & ((x - BRIM_C) ** 2 + y**2 <= BRIM_R**2)
    cylinder = ((x - CYL_X) ** 2 + y**2 <= CYL_R**2) & (np.abs(z) <= 24.0)
    return _image(ball | brim), _image(cylinder)


@pytest.fixture(scope="module")
def brim_case():
    tumor, ablation = _phantom()
    res = margin.analyze_margin(tumor, ablation, None, 5.0, threads=1)
    return tumor, ablation, res


def test_an_in_plane_minimum_on_a_slice_is_stated_to_about_a_voxel(brim_case):
    _, _, res = brim_case
    # the minimum at the brim, on its slice, in-plane along +x
    assert res.min_margin_point_lps[2] == pytest.approx(0.0, abs=0.2)
    assert res.min_margin_direction_lps[0] > 0.95
    assert abs(res.min_margin_mm - TRUTH) <= res.min_margin_uncertainty_mm
    # about a voxel along x, not the brim's departure from the smooth model (about 4 mm before)
    assert res.min_margin_uncertainty_mm <= SPACING[0]


def _fields(tumor):
    grid = margin._Grid(tumor)
    src = margin._MaskSource(tumor, "tumor", None)
    box = src._find_box()
    fld = margin._shape_based_field(src, box, grid, margin.DEFAULT_SMOOTH_VOX, 0)
    return grid, fld


def _departure(grid, fld, lps) -> float:
    idx = grid.to_index(lps[None]) - fld.offset
    return float(ndimage.map_coordinates(fld.departure, idx.T, order=1, mode="nearest")[0])


def test_the_departure_term_holds_between_slices_and_across_them(brim_case):
    """At the brim's edge the sections depart from the model by a lot: the term is zero for an
    in-plane direction on the slice, full half-way to the next slice and for a direction across
    the slices, and in between on the way."""
    tumor, _, _ = brim_case
    grid, fld = _fields(tumor)
    assert fld.departure is not None
    edge = np.array([BRIM_C + BRIM_R, 0.0, 0.0])
    x, z = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    base = margin._surface_error_sd(grid, x)  # the grid term alone, along x
    on_slice = margin._surface_error_sd(grid, x, fld, edge)
    assert on_slice == pytest.approx(base, abs=1e-6)
    dep = _departure(grid, fld, edge)
    assert dep > 0.4  # the brim crests between the slices as far as the model can tell
    half = edge + (0.0, 0.0, SPACING[2] / 2)
    full = np.hypot(base, margin.LIMIT_DEPARTURE_GAIN * _departure(grid, fld, half))
    assert margin._surface_error_sd(grid, x, fld, half) == pytest.approx(full, rel=1e-5)
    quarter = edge + (0.0, 0.0, SPACING[2] / 4)
    assert base < margin._surface_error_sd(grid, x, fld, quarter) < full
    base_z = margin._surface_error_sd(grid, z)
    across = margin._surface_error_sd(grid, z, fld, edge)
    assert across == pytest.approx(np.hypot(base_z, margin.LIMIT_DEPARTURE_GAIN * dep), rel=1e-5)
