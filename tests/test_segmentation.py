"""Segmentation core: measures, correction ops, reader comparison, edge-aware assistance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_ablation.core import segmentation as S
from napari_ablation.core.errors import AblationError


def _grid(shape, spacing, center=None):
    c = [(n - 1) / 2 for n in shape] if center is None else center
    axes = [(np.arange(n) - ci) * s for n, s, ci in zip(shape, spacing, c)]
    return np.meshgrid(*axes, indexing="ij")


def ball(shape, spacing, r, center=None):
    z, y, x = _grid(shape, spacing, center)
    return z**2 + y**2 + x**2 <= r**2


SP = (3.0, 0.8, 0.8)  # anisotropic CT-like grid: a z/x swap shows
SHAPE = (20, 60, 60)


# ----------------------------------------------------------------------------- measures


def test_volume_and_diameter_of_a_sphere_on_anisotropic_grid():
    m = ball(SHAPE, SP, 15.0)
    assert S.mask_volume_ml(m, SP) == pytest.approx(4 / 3 * math.pi * 15**3 / 1000, rel=0.03)
    # voxel centres: the diameter is within one voxel (largest spacing) of the true 30 mm
    assert 30 - 3.0 <= S.max_diameter_mm(m, SP) <= 30.0 + 1e-6


def test_diameter_of_a_tilted_ellipsoid_and_degenerate_masks():
    z, y, x = _grid((50, 80, 80), (1.0, 1.0, 1.0))
    u = (y + x) / math.sqrt(2)
    v = (y - x) / math.sqrt(2)
    m = (u / 35) ** 2 + (v / 12) ** 2 + (z / 10) ** 2 <= 1
    assert S.max_diameter_mm(m, (1, 1, 1)) == pytest.approx(70, abs=1.5)
    flat = np.zeros((5, 40, 40), bool)
    flat[2, 10:30, 5:35] = True  # a single slice: 2D hull
    assert S.max_diameter_mm(flat, (1, 2, 0.5)) == pytest.approx(math.hypot(19 * 2, 29 * 0.5))
    assert S.max_diameter_mm(np.zeros((4, 4, 4), bool), (1, 1, 1)) == 0.0
    one = np.zeros((4, 4, 4), bool)
    one[1, 1, 1] = True
    assert S.max_diameter_mm(one, (1, 1, 1)) == 0.0
    stats = S.structure_stats(m, (1, 1, 1))
    assert stats["voxels"] == int(m.sum())


# ----------------------------------------------------------------------------- correction


def test_grow_and_shrink_are_exact_in_mm_on_anisotropic_grid():
    shape = (24, 90, 90)
    m = ball(shape, SP, 12.0)
    grown = S.grow_shrink(m, SP, 6.0)
    assert S.dice(grown, ball(shape, SP, 18.0)) > 0.96
    # along z (3 mm slices): the centres at 10.5 mm grow to 16.5 mm (<= 18), not to 19.5
    zc = np.flatnonzero(grown[:, 45, 45])
    assert (zc[-1] - zc[0]) * 3.0 == pytest.approx(33.0)
    shrunk = S.grow_shrink(m, SP, -6.0)
    assert S.dice(shrunk, ball(shape, SP, 6.0)) > 0.9
    assert not (shrunk & ~m).any() and not (m & ~grown).any()
    assert np.array_equal(S.grow_shrink(m, SP, 0), m)


def test_shrink_does_not_treat_the_image_border_as_inside():
    m = np.ones((10, 10, 10), bool)
    assert S.grow_shrink(m, (1, 1, 1), -2).sum() == 6**3


def test_fill_holes_3d_and_per_slice():
    shell = ball(SHAPE, SP, 14.0) & ~ball(SHAPE, SP, 8.0)
    assert np.array_equal(S.fill_holes(shell), ball(SHAPE, SP, 14.0))
    # a tube open at both ends: no 3D hole, but every axial slice has one
    _z, y, x = _grid((10, 40, 40), (1, 1, 1))
    tube = (y**2 + x**2 <= 144) & (y**2 + x**2 >= 16)
    assert np.array_equal(S.fill_holes(tube, axis=0), y**2 + x**2 <= 144)


def test_smooth_removes_a_spike_and_keeps_the_body():
    m = ball(SHAPE, SP, 12.0)
    spiky = m.copy()
    spiky[10, 30, 5:15] = True
    sm = S.smooth(spiky, SP, 1.5)
    assert not sm[10, 30, 5:10].any()
    assert S.dice(sm, m) > 0.95
    with pytest.raises(AblationError):
        S.smooth(m, SP, 0)


def test_remove_small_islands_by_volume_and_keep_largest():
    m = ball(SHAPE, SP, 12.0)
    island = np.zeros_like(m)
    island[2, 2:5, 2:5] = True  # 9 voxels = 0.0173 ml
    both = m | island
    assert np.array_equal(S.remove_small_islands(both, SP, min_volume_ml=0.05), m)
    assert np.array_equal(S.remove_small_islands(both, SP, min_volume_ml=0.01), both)
    assert np.array_equal(S.remove_small_islands(both, SP, keep_largest=True), m)


def test_erase_slice_and_apply_mask_keep_other_labels():
    lab = np.zeros((6, 8, 8), np.uint8)
    lab[:, 2:6, 2:6] = 1
    lab[3, 0, :] = 2
    out = S.erase_slice(lab, "z", 3, label=1)
    assert not (out[3] == 1).any() and (out[3, 0] == 2).all()
    assert np.array_equal(np.delete(out, 3, axis=0), np.delete(lab, 3, axis=0))
    with pytest.raises(AblationError, match="outside"):
        S.erase_slice(lab, 0, 6)
    grown = S.grow_shrink(lab == 1, (1, 1, 1), 3)
    new = S.apply_mask(lab, 1, grown)
    assert (new[lab == 2] == 2).all()
    assert ((new == 1) == (grown & (lab != 2))).all()
    idx, _newv, oldv = S.changed_voxels(lab, new)
    restored = new.copy()
    restored[idx] = oldv
    assert np.array_equal(restored, lab)


# ----------------------------------------------------------------------------- comparison


def test_compare_concentric_spheres():
    shape = (30, 90, 90)
    a, b = ball(shape, SP, 10.0), ball(shape, SP, 13.0)
    res = S.compare_masks(a, b, SP)
    exact = 2 * 10**3 / (10**3 + 13**3)
    assert res["dice"] == pytest.approx(exact, abs=0.03)
    assert res["hd95_mm"] == pytest.approx(3.0, abs=1.2)
    assert res["volume_diff_ml"] == pytest.approx(
        4 / 3 * math.pi * (13**3 - 10**3) / 1000, rel=0.05
    )
    assert res["only_a_ml"] == 0.0
    same = S.compare_masks(a, a, SP)
    assert same["dice"] == 1.0 and same["hd95_mm"] == 0.0 and same["volume_diff_ml"] == 0.0
    d = S.disagreement(a, b)
    assert set(np.unique(d)) == {0, 2}
    assert (d == 2).sum() == (b & ~a).sum()
    empty = S.compare_masks(a, np.zeros_like(a), SP)
    assert empty["dice"] == 0.0 and math.isnan(empty["hd95_mm"])


def test_compare_shifted_masks_hd95_in_mm():
    # shift by 2 slices along z (6 mm): the surface distance along z is in mm, not voxels
    shape = (30, 60, 60)
    a = ball(shape, SP, 12.0)
    b = np.roll(a, 2, axis=0)
    res = S.compare_masks(a, b, SP)
    assert 3.0 <= res["hd95_mm"] <= 6.0 + 1e-6
    assert res["hausdorff_mm"] == pytest.approx(6.0, abs=0.01)


# ----------------------------------------------------------------------------- edge-aware


def _dark_ellipsoid(seed=0):
    rng = np.random.default_rng(seed)
    sp = np.array([2.5, 1.0, 1.0])
    shape = (30, 70, 70)
    z, y, x = _grid(shape, sp)
    truth = (z / 18) ** 2 + (y / 20) ** 2 + (x / 14) ** 2 <= 1
    img = (np.where(truth, 100.0, 300.0) + rng.normal(0, 25, shape)).astype(np.float32)
    return img, truth, sp


def test_refine_moves_a_rough_outline_onto_the_edges():
    img, truth, sp = _dark_ellipsoid()
    for rough in (S.grow_shrink(truth, sp, 2.5), S.grow_shrink(truth, sp, -2.5)):
        assert S.dice(rough, truth) < 0.9
        refined = S.refine_to_edges(img, rough, sp, band_mm=4.0)
        assert S.dice(refined, truth) > 0.95
    with pytest.raises(AblationError, match="empty"):
        S.refine_to_edges(img, np.zeros_like(truth), sp)


def test_seeded_region_on_a_dark_ellipsoid_in_noise():
    img, truth, sp = _dark_ellipsoid(1)
    region = S.seeded_region(img, (15, 35, 35), sp, max_radius_mm=40)
    assert S.dice(region, truth) > 0.9
    # the distance limit: nothing farther than max_radius_mm from the seed
    small = S.seeded_region(img, (15, 35, 35), sp, max_radius_mm=8)
    z, y, x = _grid(img.shape, sp, center=(15, 35, 35))
    assert not (small & (z**2 + y**2 + x**2 > 8.0**2)).any()
    assert small.sum() < region.sum()


@pytest.mark.parametrize("seed", [(-1, 10, 10), (15, 70, 10), (float("nan"), 1, 1)])
def test_seed_outside_the_image(seed):
    img, _truth, sp = _dark_ellipsoid()
    with pytest.raises(AblationError):
        S.seeded_region(img, seed, sp)


def test_refine_keeps_several_objects():
    rng = np.random.default_rng(4)
    sp = np.array([2.0, 1.0, 1.0])
    shape = (24, 60, 90)
    z, y, x = _grid(shape, sp)
    truth = ((z / 14) ** 2 + (y / 12) ** 2 + ((x + 22) / 11) ** 2 <= 1) | (
        (z / 12) ** 2 + (y / 10) ** 2 + ((x - 22) / 12) ** 2 <= 1
    )
    img = (np.where(truth, 220.0, 80.0) + rng.normal(0, 20, shape)).astype(np.float32)
    rough = S.grow_shrink(truth, sp, 2.0)
    refined = S.refine_to_edges(img, rough, sp, band_mm=3.0)
    from scipy import ndimage

    assert ndimage.label(refined)[1] == 2
    assert S.dice(refined, truth) > 0.95


def test_seeded_region_hypodense_zone_with_gas_and_a_vessel():
    """CT-like: a hypodense coagulation zone with gas bubbles near a bright vessel."""
    rng = np.random.default_rng(5)
    sp = np.array([2.5, 0.7, 0.7])
    shape = (24, 100, 100)
    z, y, x = _grid(shape, sp)
    truth = (z / 16) ** 2 + (y / 15) ** 2 + (x / 12) ** 2 <= 1
    img = np.where(truth, 35.0, 100.0)
    img[(y - 20) ** 2 + (x + 10) ** 2 <= 9] = 180.0  # vessel
    gas = (z**2 + (y - 1) ** 2 + (x - 1) ** 2 <= 4) | (
        (z - 2.5) ** 2 + (y + 4) ** 2 + (x - 3) ** 2 <= 2
    )
    img[gas] = -800.0
    img = (img + rng.normal(0, 25, shape)).astype(np.float32)
    for seed in [(12, 50, 60), (12, 40, 50), (10, 56, 45)]:
        region = S.seeded_region(img, seed, sp, max_radius_mm=40)
        assert S.dice(region, truth) > 0.93
        assert region[gas].all()  # the bubbles are inside the zone
    fixed = S.seeded_region(img, (12, 50, 60), sp, max_radius_mm=40, tolerance=3.0)
    assert S.dice(fixed, truth) > 0.9
    with pytest.raises(AblationError, match="tolerance"):
        S.seeded_region(img, (12, 50, 60), sp, tolerance=0)
