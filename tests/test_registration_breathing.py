"""Breathing phantom: non-rigid motion away from the tumor, rigid truth near it.

The local registration must recover the near-tumor transform where a whole-image rigid
fit, pulled by the moving anatomy, cannot (issue 9, registration part).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import registration as reg
from napari_ablation.core import synthetic
from napari_ablation.core import transform as tfm
from napari_ablation.core.errors import AblationError

SEED = 2
AMPLITUDE_MM = 15.0


@pytest.fixture(scope="module")
def breathing():
    case, truth = synthetic.synthetic_case(SEED, modality="mri", breathing_mm=AMPLITUDE_MM)
    return case, truth


def _directions(n: int, rng) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_displacement_is_zero_near_the_tumor_and_large_far_away(breathing):
    _case, truth = breathing
    motion = synthetic.Breathing.from_info(truth["breathing"])
    c = np.asarray(truth["tumor_center_lps"])
    assert np.allclose(motion.center, c)
    assert motion.still_mm >= synthetic.BREATHING_STILL_MM
    rng = np.random.default_rng(0)
    u = _directions(2000, rng)
    near = c + u * rng.uniform(0.0, motion.still_mm, (2000, 1))
    assert np.abs(motion.displacement(near)).max() == 0.0
    far = c + u * (motion.still_mm + motion.ramp_mm + rng.uniform(0.0, 40.0, (2000, 1)))
    size = np.linalg.norm(motion.displacement(far), axis=1)
    # g(z) = 0.8 + 0.2 tanh(dz / 50) stays within [0.6, 1]
    assert size.min() >= 0.6 * AMPLITUDE_MM - 1e-9
    assert size.max() <= AMPLITUDE_MM + 1e-9
    # mostly craniocaudal
    d = motion.displacement(far) / size[:, None]
    assert np.all(np.abs(d[:, 2]) > 0.85)


def test_breathing_map_is_invertible():
    """x -> x - v(x) never folds: the Jacobian of v has norm < 1 (25 mm, the largest allowed)."""
    motion = synthetic.Breathing(
        np.zeros(3), 25.0, np.array([0.0, -0.35, -1.0]) / np.hypot(0.35, 1)
    )
    rng = np.random.default_rng(1)
    p = rng.uniform(-120, 120, (5000, 3))
    h = 1e-4
    jac = np.stack(
        [
            (motion.displacement(p + h * e) - motion.displacement(p - h * e)) / (2 * h)
            for e in np.eye(3)
        ],
        axis=-1,
    )
    assert np.linalg.norm(jac, ord=2, axis=(1, 2)).max() < 1.0
    assert np.linalg.det(np.eye(3) - jac).min() > 0.0


def test_post_matches_the_rigid_case_inside_the_still_ball_only(breathing):
    """Same seed without breathing: identical lesion, truths and pre image; post differs only
    where the anatomy moved."""
    case, truth = breathing
    rigid, truth0 = synthetic.synthetic_case(SEED, modality="mri")
    assert truth0["true_transform"] == truth["true_transform"]
    assert truth0["min_margin_mm"] == truth["min_margin_mm"]
    assert "breathing" not in truth0
    a = sitk.GetArrayFromImage(case.pre)
    assert np.array_equal(a, sitk.GetArrayFromImage(rigid.pre))
    assert np.array_equal(
        sitk.GetArrayFromImage(case.ablation), sitk.GetArrayFromImage(rigid.ablation)
    )
    post, post0 = (sitk.GetArrayFromImage(x).astype(float) for x in (case.post, rigid.post))
    # pre-space position of every post voxel centre (without the breathing)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in post.shape], indexing="ij"), -1)
    sp = np.asarray(case.post.GetSpacing())[::-1]
    org = np.asarray(case.post.GetOrigin())[::-1]
    q = (idx * sp + org)[..., ::-1].reshape(-1, 3)
    inv = tfm.inverse(tfm.euler_from_params(truth["true_transform"]))
    r = np.linalg.norm(tfm.transform_points(inv, q) - truth["tumor_center_lps"], axis=1)
    r = r.reshape(post.shape)
    still = truth["breathing"]["still_mm"]
    # the acquisition blur (sigma 1.5 mm across slices) spreads a change by a few mm
    assert np.array_equal(post[r < still - 8.0], post0[r < still - 8.0])
    far = r > still + truth["breathing"]["ramp_mm"]
    assert far.sum() > 1000
    assert np.mean(np.abs(post[far] - post0[far]) > 20) > 0.2


def test_local_registration_recovers_the_near_tumor_transform_whole_image_does_not(breathing):
    case, truth = breathing
    true = tfm.euler_from_params(truth["true_transform"])
    pts = reg.ball_points(reg.mask_centroid_lps(case.tumor), 30.0)
    local = reg.register_rigid(
        case.pre, case.post, tumor_mask=case.tumor, moving_exclude=case.ablation
    )
    whole = reg.register_rigid(
        case.pre, case.post, roi_radius_mm=None, moving_exclude=case.ablation
    )
    _mean_l, max_l = reg.target_error(local.transform, true, pts)
    mean_w, _max_w = reg.target_error(whole.transform, true, pts)
    assert max_l < 0.6
    assert mean_w > 1.5  # the moving anatomy pulls the whole-image fit away


def test_thick_slice_ct_breathing_phantom_is_registered_within_half_a_mm():
    """CT with 5 mm slices (slice profile) and 15 mm breathing, the benchmark's CT #4:
    0.8-1.0 mm before the soft-tissue window and the 8 mm reach beyond the zone."""
    case, truth = synthetic.synthetic_case(
        4, modality="ct", breathing_mm=AMPLITUDE_MM, slice_profile=True
    )
    assert case.pre.GetSpacing()[2] == 5.0
    true = tfm.euler_from_params(truth["true_transform"])
    pts = reg.ball_points(reg.mask_centroid_lps(case.tumor), 30.0)
    local = reg.register_rigid(
        case.pre, case.post, tumor_mask=case.tumor, moving_exclude=case.ablation
    )
    assert reg.target_error(local.transform, true, pts)[1] < 0.5


def test_small_liver_region_needs_every_voxel_of_the_binned_grid():
    """The benchmark's CT #13 (2.5 mm slices, slice profile, 15 mm breathing): its ablation
    zone is small, so the region is the 40 mm ball of mostly homogeneous liver. The 40 000
    random samples of the full-resolution grid put the optimum 1.2 mm off; every voxel of
    the grid binned in-plane by 2 puts it within half a mm."""
    case, truth = synthetic.synthetic_case(
        13, modality="ct", breathing_mm=AMPLITUDE_MM, slice_profile=True
    )
    assert case.pre.GetSpacing()[2] == 2.5
    true = tfm.euler_from_params(truth["true_transform"])
    pts = reg.ball_points(reg.mask_centroid_lps(case.tumor), 30.0)
    kw = {"tumor_mask": case.tumor, "moving_exclude": case.ablation}
    binned = reg.register_rigid(case.pre, case.post, **kw)
    sampled = reg.register_rigid(case.pre, case.post, thick_slice_bin_ratio=None, **kw)
    assert binned.roi_radius_mm == reg.DEFAULT_ROI_RADIUS_MM
    assert reg.target_error(binned.transform, true, pts)[1] < 0.4
    assert reg.target_error(sampled.transform, true, pts)[1] > 0.8


def test_a_large_binned_region_is_sampled_not_read_voxel_by_voxel(monkeypatch):
    """A region of 90 000 binned voxels (the size of held-out CT #33's 49 mm ball with
    2.5 mm slices) is over :data:`FULL_SAMPLING_MAX_VOXELS`: its finest level samples
    ``metric_samples`` of them (every voxel cost 29 ms an iteration, 1.65-1.70 s CPU)."""
    rng = np.random.default_rng(0)
    shape = (30, 140, 140)  # z, y, x: 0.75 x 0.75 x 2.5 mm, binned in-plane by 2 to 1.5 mm
    tex = sitk.GetImageFromArray(rng.normal(0, 1, shape).astype(np.float32))
    tex.SetSpacing((0.75, 0.75, 2.5))
    pre = sitk.SmoothingRecursiveGaussian(tex, 3.0) * 400.0
    box = np.zeros(shape, np.uint8)
    box[2:27, 10:130, 10:130] = 1  # 25 x 60 x 60 = 90 000 voxels once binned
    mask = sitk.GetImageFromArray(box)
    mask.CopyInformation(pre)
    fractions = []

    class Recording(sitk.ImageRegistrationMethod):
        def SetMetricSamplingPercentage(self, *args):
            fractions.append(args[0])
            return super().SetMetricSamplingPercentage(*args)

    monkeypatch.setattr(sitk, "ImageRegistrationMethod", Recording)
    reg.register_rigid(
        pre,
        pre,
        fixed_mask=mask,
        iterations=2,
        shrink_factors=(2, 1),
        smoothing_sigmas=(1.0, 0.0),
        bias_correction=False,
    )
    assert fractions[-1] == pytest.approx(reg.DEFAULT_METRIC_SAMPLES / 90_000, rel=0.02)


@pytest.mark.parametrize(
    ("spacing", "expected"),
    [
        ((0.7, 0.7, 2.5), [2, 2, 1]),  # CT with 2.5 mm slices
        ((0.8, 0.8, 5.0), [2, 2, 1]),
        ((1.2, 1.2, 3.0), [1, 1, 1]),  # MRI: 2.4 mm would be most of a slice
        ((1.0, 1.0, 1.0), [1, 1, 1]),
        ((0.7, 2.5, 2.5), [2, 1, 1]),  # a coronal-like grid: only the fine axis
    ],
)
def test_the_finest_level_bins_in_plane_only_on_thick_slices(spacing, expected):
    img = sitk.Image(16, 16, 16, sitk.sitkFloat32)
    img.SetSpacing(spacing)
    assert reg._inplane_bin(img, reg.THICK_SLICE_BIN_RATIO) == expected
    assert reg._inplane_bin(img, None) == [1, 1, 1]


def test_breathing_amplitude_is_checked():
    with pytest.raises(AblationError, match="breathing"):
        synthetic.synthetic_case(0, small=True, breathing_mm=40.0)
    with pytest.raises(AblationError, match="breathing"):
        synthetic.synthetic_case(0, small=True, breathing_mm=float("nan"))
