"""Geometry: LPS orientation, napari layer geometry, physical points (DESIGN section 2)."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry
from napari_ablation.core.errors import AblationError

SPACING = (0.8, 0.8, 5.0)  # anisotropic: an axis swap shows


def _volume(
    size=(24, 20, 9),
    spacing=SPACING,
    origin=(-12.5, 30.25, 101.0),
    direction=geometry.IDENTITY,
    seed=0,
):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 30000, size=size[::-1]).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


# signed permutations: flipped, coronal, sagittal acquisitions
PERMUTATIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "RAS-like flip": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "coronal": (1, 0, 0, 0, 0, 1, 0, -1, 0),
    "sagittal": (0, 0, -1, 1, 0, 0, 0, -1, 0),
    "all flipped": (-1, 0, 0, 0, -1, 0, 0, 0, -1),
}


@pytest.mark.parametrize("name", list(PERMUTATIONS))
def test_orient_lps_keeps_every_voxel_at_its_physical_point(name):
    img = _volume(direction=PERMUTATIONS[name])
    out, note = geometry.orient_lps(img)
    assert note is None  # lossless permutation, nothing to tell
    assert geometry.is_identity_direction(out)
    src = sitk.GetArrayFromImage(img)
    dst = sitk.GetArrayFromImage(out)
    rng = np.random.default_rng(1)
    for _ in range(50):
        i, j, k = (int(rng.integers(0, s)) for s in img.GetSize())
        p = img.TransformIndexToPhysicalPoint((i, j, k))
        idx = out.TransformPhysicalPointToIndex(p)
        assert np.allclose(out.TransformIndexToPhysicalPoint(idx), p, atol=1e-6)
        assert dst[idx[2], idx[1], idx[0]] == src[k, j, i]
    # spacing follows the axes: the 5 mm axis stays 5 mm wherever it went
    d = np.abs(np.asarray(PERMUTATIONS[name]).reshape(3, 3))
    expected = [SPACING[int(np.argmax(d[w]))] for w in range(3)]
    assert np.allclose(out.GetSpacing(), expected)


@pytest.mark.parametrize("name", list(PERMUTATIONS))
def test_napari_layer_data_to_world_matches_simpleitk(name):
    from napari.layers import Image

    img, _ = geometry.orient_lps(_volume(direction=PERMUTATIONS[name]))
    layer = Image(sitk.GetArrayFromImage(img), **geometry.layer_geometry(img))
    rng = np.random.default_rng(2)
    for _ in range(20):
        i, j, k = (int(rng.integers(0, s)) for s in img.GetSize())
        lps = np.asarray(img.TransformIndexToPhysicalPoint((i, j, k)))
        world = np.asarray(layer.data_to_world((k, j, i)))
        assert np.allclose(world, lps[::-1], atol=1e-9), (world, lps)
        assert np.allclose(geometry.world_to_lps(world), lps)
    assert tuple(str(u) for u in layer.units) == ("millimeter",) * 3


def test_oblique_volume_is_resampled_onto_axis_aligned_grid_with_a_note():
    # a bright ball in an oblique (20 deg about z, 10 deg about x) anisotropic volume
    a, b = math.radians(20), math.radians(10)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    d = rz @ rx
    size = (64, 64, 16)
    spacing = (0.8, 0.8, 5.0)
    origin = np.array([-20.0, -25.0, -30.0])
    img = sitk.Image(size, sitk.sitkFloat32)
    img.SetSpacing(spacing)
    img.SetOrigin(origin.tolist())
    img.SetDirection(d.ravel().tolist())
    centre_idx = np.array([30.3, 33.7, 7.4])
    centre = origin + d @ (centre_idx * np.array(spacing))
    # fill a 10 mm ball (analytic, voxel centres)
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    pts = np.stack([ii, jj, kk], -1) * np.array(spacing)
    pts = origin + pts @ d.T
    arr = (np.linalg.norm(pts - centre, axis=-1) <= 10.0).astype(np.float32) * 100
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin.tolist())
    img.SetDirection(d.ravel().tolist())

    out, note = geometry.orient_lps(img)
    assert note is not None and "oblique" in note
    assert geometry.is_identity_direction(out)
    assert sorted(out.GetSpacing()) == sorted(spacing)
    res = sitk.GetArrayFromImage(out)
    w = res / res.sum()
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in res.shape], indexing="ij")
    c_idx = [(w * g).sum() for g in (zz, yy, xx)]
    c_lps = geometry.index_to_lps(out, c_idx)
    assert np.linalg.norm(c_lps - centre) < 0.5  # the ball stays where it was (mm)
    # the bounding box of the resampled grid contains the whole original volume
    lo, hi = geometry.physical_bounds(img)
    lo2, hi2 = geometry.physical_bounds(out)
    assert np.all(lo2 <= lo + 1e-6) and np.all(hi2 >= hi - 1e-6)


def test_oblique_labels_use_nearest_neighbour():
    img = _volume(
        direction=(math.cos(0.3), -math.sin(0.3), 0, math.sin(0.3), math.cos(0.3), 0, 0, 0, 1)
    )
    arr = (sitk.GetArrayFromImage(img) > 15000).astype(np.uint8) * 3
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(img)
    out, _ = geometry.orient_lps(lab, is_label=True)
    assert set(np.unique(sitk.GetArrayFromImage(out))) <= {0, 3}


def test_image_from_array_and_like_round_trip():
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = geometry.image_from_array(arr, (5.0, 0.8, 0.7), (10.0, -20.0, 30.0))
    assert img.GetSpacing() == (0.7, 0.8, 5.0)
    assert img.GetOrigin() == (30.0, -20.0, 10.0)
    assert np.array_equal(sitk.GetArrayFromImage(img), arr)
    # index (z, y, x) = (1, 2, 3) -> x = 30 + 3*0.7, y = -20 + 2*0.8, z = 10 + 1*5
    assert np.allclose(geometry.index_to_lps(img, (1, 2, 3)), [32.1, -18.4, 15.0])
    assert np.allclose(geometry.lps_to_index(img, [32.1, -18.4, 15.0]), [1, 2, 3])
    other = geometry.like(arr * 2, img)
    assert geometry.same_grid(other, img)
    with pytest.raises(AblationError):
        geometry.like(arr[:, :, :5], img)


def test_overlap_fraction_and_crop_box():
    a = _volume()
    b = _volume(origin=(500.0, 500.0, 500.0))
    assert geometry.overlap_fraction(a, a) == pytest.approx(1.0)
    assert geometry.overlap_fraction(a, b) == 0.0
    mask = np.zeros((9, 20, 24), bool)
    mask[4, 10, 12] = True
    box = geometry.crop_box(mask, (5.0, 0.8, 0.8), pad_mm=4.0)
    assert box == (slice(3, 6), slice(5, 16), slice(7, 18))
    assert geometry.crop_box(np.zeros_like(mask), (1, 1, 1), 1) is None


@pytest.mark.parametrize("n", [1500, 6000])
def test_max_pairwise_distance_is_exact_on_large_point_sets(n):
    """Above 1000 points (or 2000 hull vertices) the diameter comes from a pruned search,
    not from all pairs (nor from a random subsample): it must equal the brute force."""
    from napari_ablation.core.geometry import max_pairwise_distance

    rng = np.random.default_rng(5)
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    sets = [
        u * 25.0 + rng.normal(scale=0.05, size=u.shape),  # a noisy sphere: the worst case
        u * [30.0, 20.0, 12.0],  # an ellipsoid
        np.c_[u[:, :2] * 15.0, np.zeros(len(u))],  # flat (a 2D hull)
    ]
    for pts in sets:
        best = 0.0
        for s in range(0, len(pts), 2500):
            d2 = ((pts[s : s + 2500, None, :] - pts[None, :, :]) ** 2).sum(-1)
            best = max(best, float(d2.max()))
        assert max_pairwise_distance(pts) == pytest.approx(np.sqrt(best), abs=1e-9)
