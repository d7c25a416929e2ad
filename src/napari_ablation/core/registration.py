"""Rigid registration of post (moving) to pre (fixed), local to the tumor.

Design notes: docs/design.md, section 3.

* :func:`register_rigid` - automatic intensity registration: Mattes mutual information,
  Euler3D, regular-step gradient descent with physical-shift scales, 3-level pyramid.
  The metric is restricted to a region of interest around the tumor (a ball around the
  tumor, or a user box) and can leave the ablation zone out (it is a signal void only
  present in post). The fixed image is cropped to the region and the moving image to
  the region as seen through the initial transform, so the cost scales with the region.
  Before each finer level, pre is matched to post's smooth intensity-bias field (MRI
  receive coils; fitted on the ratio of the aligned images, see ``_bias_ratio``). On
  thick-slice CT the finest level runs on in-plane voxels binned by 2, every voxel of
  the region sampled (:data:`THICK_SLICE_BIN_RATIO`).
* Manual adjustment (:func:`adjust`), composition, and the QA images (checkerboard,
  difference, edges) computed on the pre grid.
* :func:`plausibility_warnings` - does a result look like two images of one patient?

All transforms follow the ITK convention of ``core.transform``: ``T`` maps pre points to
post points, so ``resample_onto(post, pre, T)`` shows post on the pre grid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from . import geometry
from . import transform as tfm
from .errors import AblationError

DEFAULT_ROI_RADIUS_MM = 40.0
#: the region also reaches this far (mm) beyond the left-out ablation zone, so that what is
#: left of it still holds anatomy when the zone fills a ball of the default radius. Farther,
#: anatomy that moved otherwise than the tumor (breathing) pulls the fit: 12 mm gave
#: 0.25 mm on a breathing MRI phantom where 8 mm gives 0.04 (benchmarks/README.md)
ROI_BEYOND_EXCLUSION_MM = 8.0
#: CT (negative values in the region, and mostly inside this window: Hounsfield units) is
#: clipped to this window before the metric, so that the histogram bins resolve soft
#: tissue (fat to enhanced vessels) instead of spanning air to bone and metal
CT_WINDOW_HU = (-200.0, 400.0)
#: a pyramid level stops when its metric has not improved for this many iterations and
#: returns the best position: the optimiser's gradient (central differences of the image
#: at the mapped points) is not exactly that of the interpolated metric, and on 2.5 mm CT
#: it crept uphill at steps of about 1e-3 for 175 iterations after the best (0.87 mm, 3 s)
DEFAULT_STALL_ITERATIONS = 20
#: the moving image is cropped to the region seen through the initial transform, padded by
#: this much (mm) for the motion still to be found
MOVING_PAD_MM = 30.0
#: metric samples at the finest pyramid level; a level shrunk by ``f`` uses ``1/f**2`` of
#: them (or all its voxels when it has fewer), so the cost of an iteration does not grow
#: with the image resolution or the region size
DEFAULT_METRIC_SAMPLES = 40000
#: the ablation zone is dilated by this much before it is left out of the metric
EXCLUDE_DILATION_MM = 3.0
#: smallest optimiser step (physical-shift units, about mm) at the coarser pyramid levels;
#: the finest level still goes down to ``min_step``. At 1e-3 the coarse levels crept on
#: for 160-200 iterations (renal sample, MRI phantoms #7, #8: 0.3-0.7 s) for no accuracy;
#: with the step relaxation at 0.7 instead of 0.5 the finest level starts close enough
DEFAULT_COARSE_MIN_STEP = 1e-2
#: the post/pre bias ratio is fitted on the region shrunk by this factor ...
BIAS_SHRINK = 2
#: ... from at least this many voxels
BIAS_MIN_VOXELS = 500
#: relative metric tolerance when deciding that a registration "ended worse"
WORSE_TOLERANCE = 1e-3
#: on thick-slice images the finest level bins the in-plane voxels by 2 (both pre and post)
#: when two of them are at most this fraction of the slice thickness wide (CT 0.7-0.8 mm
#: in-plane with 2.5-5 mm slices; not MRI at 1.2 x 1.2 x 3 mm) ...
THICK_SLICE_BIN_RATIO = 0.6
#: ... and samples every voxel of the region at the finest level when it has at most this
#: many (else ``metric_samples``): on a 40 mm ball of homogeneous liver the 40 000 random
#: samples of the full-resolution grid moved the optimum by up to 1.2 mm (CT phantom #13;
#: started at the truth, they moved it away); every voxel of the binned grid costs no more.
#: 40-46 mm balls hold 45 000-60 000 binned voxels; at 100 000 a 49 mm region with 2.5 mm
#: slices (held-out CT #33, 90 000 voxels, 29 ms an iteration) took 1.65-1.70 s CPU, 1.0-1.1 s
#: with the 40 000 samples (benchmarks/README.md, registration round 7)
FULL_SAMPLING_MAX_VOXELS = 75_000


class RegistrationCancelled(Exception):
    """Raised by :func:`register_rigid` when ``cancel()`` became true."""


@dataclass
class RegistrationResult:
    """What :func:`register_rigid` found.

    Parameters
    ----------
    transform : SimpleITK.Euler3DTransform
        ``T`` pre -> post (ITK convention); the initial one when not improved.
    metric_before, metric_after : float
        Mattes mutual information (negative; lower is better) at the initial and at the
        final transform, over every voxel of the region (of the finest level's grid).
    iterations : int
        Optimiser iterations over all levels.
    stop_reason : str
        The optimiser's stop condition at the last level.
    elapsed_s : float
        Wall time (s).
    improved : bool
        False when the initial transform was kept.
    roi_center_lps : tuple of 3 floats or None
        Centre of the region (the tumor centroid for a local registration).
    roi_radius_mm : float or None
        Radius of the ball region (None for a box, a mask or the whole image).
    warnings : list of str
        One-line warnings for the user.
    bias_matched : bool
        True when the finest level registered post against pre multiplied by the fitted
        post/pre intensity-bias ratio (MRI receive-coil fields), see ``register_rigid``.
    """

    transform: (
        sitk.Euler3DTransform
    )  # pre -> post (ITK convention); the initial one if not improved
    metric_before: float  # Mattes MI (negative; lower is better) at the initial transform
    metric_after: float  # at the optimised transform
    iterations: int
    stop_reason: str
    elapsed_s: float
    improved: bool = True
    roi_center_lps: tuple[float, float, float] | None = None
    roi_radius_mm: float | None = None
    warnings: list[str] = field(default_factory=list)
    bias_matched: bool = False

    def summary(self) -> str:
        """One line: the metric, iterations, time, and the plugin's one shift figure.

        The shift is :func:`~napari_ablation.core.transform.motion_text` at the region
        centre (the tumor centre when the registration was local), the same figure the
        widgets and the report show.

        Returns
        -------
        str
            The line.
        """
        c = self.roi_center_lps
        if c is None:
            c = tfm.as_euler(self.transform).GetCenter()
        return (
            f"metric {self.metric_before:.4f} -> {self.metric_after:.4f} "
            f"in {self.iterations} iterations, {self.elapsed_s:.2f} s; "
            + tfm.motion_text(self.transform, c)
        )


# ----------------------------------------------------------------------------- helpers


def mask_centroid_lps(mask: sitk.Image) -> np.ndarray:
    """Centroid (LPS mm, x y z) of the non-zero voxels of a mask.

    Parameters
    ----------
    mask : SimpleITK.Image
        A 3D mask with identity direction.

    Returns
    -------
    numpy.ndarray, shape (3,)
        The centroid (x, y, z).

    Raises
    ------
    AblationError
        When the mask is empty.
    """
    arr = sitk.GetArrayViewFromImage(mask)
    nz = np.argwhere(arr != 0)
    if len(nz) == 0:
        raise AblationError("the tumor mask is empty")
    return geometry.index_to_lps(mask, nz.mean(axis=0))


def mask_radius_mm(mask: sitk.Image, center_lps) -> float:
    """Largest distance (mm) from ``center_lps`` to a voxel of ``mask``.

    Parameters
    ----------
    mask : SimpleITK.Image
        A 3D mask with identity direction.
    center_lps : sequence of 3 floats
        A point (LPS mm).

    Returns
    -------
    float
        0 when the mask is empty.
    """
    arr = sitk.GetArrayViewFromImage(mask)
    nz = np.argwhere(arr != 0)
    if len(nz) == 0:
        return 0.0
    sp = np.asarray(mask.GetSpacing())[::-1]
    org = np.asarray(mask.GetOrigin())[::-1]
    pts = nz * sp + org  # (z, y, x) mm, identity direction
    return float(np.sqrt(((pts - np.asarray(center_lps)[::-1]) ** 2).sum(axis=1)).max())


def _region_of(image: sitk.Image, lo_lps, hi_lps) -> sitk.Image | None:
    """Crop of ``image`` covering the LPS box [lo, hi] (None if they do not intersect)."""
    size = np.asarray(image.GetSize())
    corners = []
    for c in np.ndindex(2, 2, 2):
        pt = np.where(np.asarray(c) == 1, hi_lps, lo_lps)
        corners.append(image.TransformPhysicalPointToContinuousIndex([float(v) for v in pt]))
    corners = np.asarray(corners)
    i0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    i1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, size)
    if np.any(i1 - i0 < 2):
        return None
    return sitk.RegionOfInterest(image, (i1 - i0).tolist(), i0.tolist())


def _ball_mask(reference: sitk.Image, center_lps, radius_mm: float) -> sitk.Image:
    nz, ny, nx = reference.GetSize()[::-1]
    sp = np.asarray(reference.GetSpacing())
    org = np.asarray(reference.GetOrigin())
    c = np.asarray(center_lps, dtype=float)
    z = (org[2] + sp[2] * np.arange(nz) - c[2]) ** 2
    y = (org[1] + sp[1] * np.arange(ny) - c[1]) ** 2
    x = (org[0] + sp[0] * np.arange(nx) - c[0]) ** 2
    inside = (z[:, None, None] + y[None, :, None] + x[None, None, :]) <= radius_mm**2
    return geometry.like(inside.astype(np.uint8), reference)


def _on_grid(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Binary uint8 mask on the grid of ``reference`` (nearest neighbour if the grids differ)."""
    m = sitk.Cast(mask != 0, sitk.sitkUInt8)
    if geometry.same_grid(m, reference):
        return m
    return sitk.Resample(
        m, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )


def exclusion_mask(
    moving: sitk.Image, exclude: sitk.Image, dilate_mm: float = EXCLUDE_DILATION_MM
) -> sitk.Image:
    """Moving-metric mask that leaves a zone (e.g. the ablation zone) out.

    Parameters
    ----------
    moving : SimpleITK.Image
        The grid of the result.
    exclude : SimpleITK.Image
        The zone (any non-zero voxel), resampled onto ``moving`` when on another grid.
    dilate_mm : float
        Dilation of the zone (mm) before it is left out.

    Returns
    -------
    SimpleITK.Image
        A uint8 mask on the moving grid, 1 outside the dilated zone.
    """
    ex = _on_grid(exclude, moving)
    if dilate_mm > 0:
        sp = np.asarray(ex.GetSpacing())
        radius = [max(0, math.ceil(dilate_mm / s)) for s in sp]
        ex = sitk.BinaryDilate(ex, radius, sitk.sitkBall)
    return sitk.Cast(ex == 0, sitk.sitkUInt8)


def _moving_box(fixed_lo, fixed_hi, initial: sitk.Transform, pad_mm: float):
    corners = np.array(
        [np.where(np.asarray(c) == 1, fixed_hi, fixed_lo) for c in np.ndindex(2, 2, 2)], dtype=float
    )
    moved = tfm.transform_points(initial, corners)
    return moved.min(axis=0) - pad_mm, moved.max(axis=0) + pad_mm


def _windowed(img: sitk.Image, window) -> sitk.Image:
    """``img`` clipped to ``window`` when it looks like CT in HU, else ``img``.

    CT in HU: negative values (air, fat), and at least half of the voxels inside the
    window (soft tissue).
    """
    arr = sitk.GetArrayViewFromImage(img)
    lo, hi = float(window[0]), float(window[1])
    if arr.min() >= 0 or np.mean((arr >= lo) & (arr <= hi)) < 0.5:
        return img
    return sitk.Clamp(img, sitk.sitkFloat32, lo, hi)


def _level_fractions(n_voxels: int, shrink_factors, n_samples: int) -> list[float]:
    """Return the sampling fraction of each pyramid level.

    A level shrunk by ``f`` gets ``n_samples / f**2`` samples out of the
    ``n_voxels / f**3`` voxels of the region there (all of them when fewer).
    """
    return [min(1.0, n_samples * float(f) / max(n_voxels, 1)) for f in shrink_factors]


def _inplane_bin(img: sitk.Image, ratio: float | None) -> list[int]:
    """Bin factors (x, y, z) of :data:`THICK_SLICE_BIN_RATIO`: 2 in-plane on thick slices."""
    if not ratio:
        return [1, 1, 1]
    sp = img.GetSpacing()
    return [2 if 2 * sp[a] <= ratio * sp[2] and img.GetSize()[a] >= 8 else 1 for a in (0, 1)] + [1]


def _nearest_on(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``mask`` on the grid of ``reference`` (nearest neighbour)."""
    return sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)


def _metric_value(fixed, moving, fixed_mask, moving_mask, *, bins, tx) -> float:
    """Mattes metric at ``tx`` over every voxel of the region."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    # no gradient images: only the value is needed (computing them is most of the cost)
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInitialTransform(sitk.Euler3DTransform(tx), inPlace=False)
    try:
        return float(reg.MetricEvaluate(fixed, moving))
    except RuntimeError:
        return float("inf")  # e.g. too few samples inside the moving image


def _mutual_information(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Mutual information (nats) of two samples, from their joint histogram."""
    rng = [np.percentile(v, [0.5, 99.5]) for v in (a, b)]
    h = np.histogram2d(a, b, bins=bins, range=[r if r[1] > r[0] else None for r in rng])[0]
    p = h / max(h.sum(), 1.0)
    outer = p.sum(axis=1)[:, None] * p.sum(axis=0)[None, :]
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / outer[nz])).sum())


def _bias_ratio(fixed, moving, tx, fixed_mask, moving_mask, bins=50) -> np.ndarray | None:
    """Return the smooth field ``b`` with ``post(T(p)) ~ b(p) pre(p)`` on the grid of ``fixed``.

    A robust (Tukey biweight) least-squares fit of a quadratic polynomial in position to
    ``log post(T(p)) - log pre(p)`` over the region's voxels, on a grid shrunk by
    :data:`BIAS_SHRINK`. Voxels darker than a quarter of the region's median (signal
    voids, air, the noise floor) and those the masks leave out do not count; the
    biweight discards what is not common to both images (probes, oedema).

    Returns None when an image has negative values in the region (CT in Hounsfield
    units: no multiplicative field), when too few voxels count, or when ``b`` does not
    raise the mutual information of ``b pre`` and ``post(T)`` over the region's voxels
    on the shrunk grid (a histogram estimate with ``bins`` bins).
    """
    fs = sitk.BinShrink(fixed, [BIAS_SHRINK] * 3)
    f = sitk.GetArrayFromImage(fs)
    m = sitk.GetArrayFromImage(
        sitk.Resample(moving, fs, tx, sitk.sitkLinear, -1.0, sitk.sitkFloat32)
    )
    region = m >= 0  # -1: outside post
    if fixed_mask is not None:
        near = sitk.Resample(fixed_mask, fs, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        region &= sitk.GetArrayViewFromImage(near) > 0
    if moving_mask is not None:
        near = sitk.Resample(moving_mask, fs, tx, sitk.sitkNearestNeighbor, 0)
        region &= sitk.GetArrayViewFromImage(near) > 0
    if np.count_nonzero(region) < BIAS_MIN_VOXELS or f[region].min() < 0:
        return None
    ok = region & (f > 0.25 * np.median(f[region])) & (m > 0.25 * np.median(m[region]))
    if np.count_nonzero(ok) < BIAS_MIN_VOXELS:
        return None
    sp = np.asarray(fs.GetSpacing())[::-1]
    org = np.asarray(fs.GetOrigin())[::-1]
    pts = np.argwhere(ok) * sp + org  # (z, y, x) mm
    mid = pts.mean(axis=0)
    scale = float(np.abs(pts - mid).max()) or 1.0
    r = np.log(m[ok]) - np.log(f[ok])

    def terms(axes):  # 1, z, y, x, and the 6 products of two of them
        lin = list(axes)
        return [1.0, *lin, *(lin[i] * lin[j] for i in range(3) for j in range(i, 3))]

    def field_on(img):  # the fitted field on the grid of ``img``, term by term
        isp = np.asarray(img.GetSpacing())[::-1]
        iorg = np.asarray(img.GetOrigin())[::-1]
        axes = [
            (((iorg[a] + isp[a] * np.arange(n)) - mid[a]) / scale)
            .astype(np.float32)
            .reshape([-1 if b == a else 1 for b in range(3)])
            for a, n in enumerate(img.GetSize()[::-1])
        ]
        return np.exp(sum(np.float32(k) * t for k, t in zip(coef, terms(axes))))

    design = np.stack(np.broadcast_arrays(*terms(((pts - mid) / scale).T)), axis=1)
    w = np.ones(len(r))
    for _ in range(5):
        # weighted normal equations (10 x 10): a least-squares solver on the tall matrix
        # cost 0.13 s per call with threaded LAPACK
        aw = design * w[:, None]
        coef = np.linalg.lstsq(aw.T @ design, aw.T @ r, rcond=None)[0]
        res = r - design @ coef
        sigma = 1.4826 * np.median(np.abs(res - np.median(res))) + 1e-9
        u = res / (4.685 * sigma)
        w = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)  # Tukey biweight
    matched = (f * field_on(fs))[region]
    if _mutual_information(matched, m[region], bins) <= _mutual_information(
        f[region], m[region], bins
    ):
        return None
    return field_on(fixed).astype(np.float32)


def _bias_matched(fixed, moving, tx, fixed_mask, moving_mask, bins):
    """Pre times the post/pre bias ratio (:func:`_bias_ratio`), or pre when there is none."""
    field = _bias_ratio(fixed, moving, tx, fixed_mask, moving_mask, bins)
    if field is None:
        return fixed
    return geometry.like(sitk.GetArrayViewFromImage(fixed) * field, fixed)


# ----------------------------------------------------------------------------- registration


def register_rigid(
    fixed: sitk.Image,
    moving: sitk.Image,
    *,
    fixed_mask: sitk.Image | None = None,
    tumor_mask: sitk.Image | None = None,
    moving_mask: sitk.Image | None = None,
    moving_exclude: sitk.Image | None = None,
    roi_center_lps=None,
    roi_radius_mm: float | None = DEFAULT_ROI_RADIUS_MM,
    roi_box_lps: tuple | None = None,
    exclude_dilation_mm: float = EXCLUDE_DILATION_MM,
    initial: sitk.Transform | None = None,
    bins: int = 50,
    shrink_factors=(4, 2, 1),
    smoothing_sigmas=(2.0, 1.0, 0.0),
    iterations: int = 200,
    sampling_fraction: float | tuple | None = None,
    metric_samples: int = DEFAULT_METRIC_SAMPLES,
    learning_rate: float = 2.0,
    min_step: float = 1e-3,
    relaxation: float = 0.7,
    optimizer: str = "rsgd",
    gradient_filter: bool = False,
    seed: int = 1,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    coarse_min_step: float = DEFAULT_COARSE_MIN_STEP,
    bias_correction: bool = True,
    ct_window_hu: tuple[float, float] | None = CT_WINDOW_HU,
    stall_iterations: int = DEFAULT_STALL_ITERATIONS,
    thick_slice_bin_ratio: float | None = THICK_SLICE_BIN_RATIO,
    full_sampling_max_voxels: int = FULL_SAMPLING_MAX_VOXELS,
) -> RegistrationResult:
    """Automatic rigid registration ``T`` (pre -> post) by Mattes mutual information.

    Region of interest (where the metric is computed), first match wins:

    * ``fixed_mask``: used as given (a mask on, or resampled onto, the pre grid);
    * ``roi_box_lps = (lo_xyz, hi_xyz)``: a user box in LPS mm;
    * a ball of ``roi_radius_mm`` around ``roi_center_lps`` or around the centroid of
      ``tumor_mask``, enlarged to hold the whole tumor plus 10 mm and, when
      ``moving_exclude`` is given, the dilated zone plus :data:`ROI_BEYOND_EXCLUSION_MM`
      (so that what the metric keeps is anatomy, not a thin shell around the zone);
    * ``roi_radius_mm=None`` and nothing else: the whole image.

    Parameters
    ----------
    fixed, moving : SimpleITK.Image
        Pre (fixed) and post (moving) 3D images.
    fixed_mask : SimpleITK.Image, optional
        Metric region on the pre grid (any non-zero voxel).
    tumor_mask : SimpleITK.Image, optional
        Tumor labels on the pre grid: the region is a ball around their centroid.
    moving_mask : SimpleITK.Image, optional
        Restricts the moving side of the metric.
    moving_exclude : SimpleITK.Image, optional
        E.g. the ablation zone on the post grid: dilated by ``exclude_dilation_mm`` and
        left out of the metric (the ice ball is a signal void present in post only).
    roi_center_lps : sequence of 3 floats, optional
        Centre of the ball instead of the tumor centroid.
    roi_radius_mm : float or None
        Radius of the ball (default :data:`DEFAULT_ROI_RADIUS_MM`); None: no ball.
    roi_box_lps : (lo_xyz, hi_xyz), optional
        A user box in LPS mm.
    exclude_dilation_mm : float
        Dilation of ``moving_exclude``.
    initial : SimpleITK.Transform, optional
        Start (a landmark fit, the current transform); identity when None.
    bins : int
        Histogram bins of the Mattes metric.
    shrink_factors, smoothing_sigmas : sequence
        The pyramid (smoothing in voxels).
    iterations : int
        Most optimiser iterations per level.
    sampling_fraction : float or sequence, optional
        Fraction of the region's voxels sampled per level; None (default): about
        ``metric_samples`` at the finest level and ``metric_samples / f**2`` at a level
        shrunk by ``f``, whatever the resolution.
    metric_samples : int
        See ``sampling_fraction``.
    learning_rate, min_step, relaxation : float
        Regular-step gradient descent: first step, smallest step (stopping), and the
        factor the step shrinks by when the direction turns.
    optimizer : {"rsgd", "cg", "lbfgs"}
        Regular-step gradient descent (default), conjugate gradient, or L-BFGS.
    gradient_filter : bool
        Smoothed image gradients (off: central differences, see Notes).
    seed : int
        Seed of the regular sampling.
    progress : callable, optional
        ``progress(fraction, text)``, called every iteration.
    cancel : callable, optional
        ``cancel()`` returning true stops the registration.
    coarse_min_step : float
        Smallest step of the regular-step descent at the coarser pyramid levels (the
        finest level goes down to ``min_step``).
    bias_correction : bool
        Before every pyramid level but the coarsest, fit the smooth post/pre intensity
        ratio (a quadratic in position of the log-ratio, robust fit over the region at
        the transform found so far) and register post against pre multiplied by it,
        when that raises the mutual information. Skipped for images with negative
        values in the region (CT). See Notes.
    ct_window_hu : (float, float) or None
        An image with negative values in the region and at least half of its voxels in
        this window (CT in Hounsfield units) is clipped to it before the metric (default
        :data:`CT_WINDOW_HU`); None: never.
        See Notes.
    stall_iterations : int
        A level stops when its metric has not improved for this many iterations, at the
        position where it was best (0: never). See Notes.
    thick_slice_bin_ratio : float or None
        When two in-plane voxels of pre are at most this fraction of its slice thickness
        wide (default :data:`THICK_SLICE_BIN_RATIO`), the finest level runs on pre and
        post with their in-plane voxels binned by 2 (averaged), the metric before and
        after too; None: never. See Notes.
    full_sampling_max_voxels : int
        On that binned finest level every voxel of the region is sampled when there are
        at most this many (default :data:`FULL_SAMPLING_MAX_VOXELS`), else
        ``metric_samples`` (unless ``sampling_fraction`` is given).

    Returns
    -------
    RegistrationResult
        The transform (the initial one, with ``improved=False`` and a warning, when the
        final metric is not better than the initial one), the metric before and after,
        iterations, stop reason, time, the region's centre and radius.

    Raises
    ------
    AblationError
        A missing, non-3D, tiny, constant or non-finite image, an empty mask, a region
        outside the pre image, images that do not overlap, or an ITK failure.
    RegistrationCancelled
        When ``cancel()`` became true.

    Notes
    -----
    Settings measured in ``benchmarks/bench_registration.py`` (renal MRI and liver CT
    samples, breathing phantoms of :func:`~napari_ablation.core.synthetic.synthetic_case`):
    the image gradient *filters* are off because smoothed gradients disagree with the
    sharp mutual-information optimum and stopped the optimiser about 1 mm short; a 40 mm
    ball that reaches 8 mm beyond the left-out zone (with a large ice ball the 40 mm
    ball alone kept too little anatomy: 0.6 mm on the renal sample, 18 mm on a CT phantom;
    a 50 mm ball let breathing pull the fit, 1.1 mm on a held-out phantom; see
    :data:`ROI_BEYOND_EXCLUSION_MM` for the reach beyond the zone); a fixed number
    of samples per level rather than a fraction (the CT sample has 3 times the voxels of
    the MRI one in the same ball).

    The MRI receive-coil (bias) field differs between pre and post: mutual information
    tolerates any global intensity mapping but not one that drifts across the region,
    and the drift pulled the fit by up to 0.6 mm. Matching pre to post with the fitted
    ratio field before the finer levels brought the renal sample from 0.29 to 0.06 mm
    and the worst MRI phantom from 0.63 to 0.07 mm (maximum error within 30 mm). The
    fit is on the ratio of the two aligned images, in which the anatomy cancels, not on
    each image alone (a detrend of each image removed anatomy: 1-5 mm errors).

    CT: Mattes bins span the region's intensity range; with air and bone (and the metal
    of an antenna) in it, a bin is 50-80 HU wide and liver, tumor and vessels share a
    few bins. Clipping to a soft-tissue window (with the 8 mm reach beyond the left-out
    zone) brought the benchmark's tuning CT breathing phantoms from 0.74-1.00 mm to
    0.18-0.43 mm (maximum error within 30 mm) and the slowest from 270 to about 130
    iterations; the liver CT sample went from 0.12 to 0.21 mm (air and bone edges help
    it a little).

    Thick-slice CT (0.7-0.8 mm in-plane, 2.5-5 mm slices): a 40 mm ball of liver at full
    resolution has about 200 000 voxels, of which the finest level sampled 40 000 at
    random; on homogeneous liver the optimum of that sampled metric lay up to 1.2 mm from
    the truth where that of the full metric lay 0.2 mm from it. Binning the in-plane voxels
    by 2 (still finer than the slices) leaves 20 000-60 000 voxels with less noise each,
    and all of them are sampled for the cost of the 40 000: the benchmark's worst CT
    phantoms went from 1.23 / 0.56 mm to 0.14 / 0.21 mm, and large regions got faster
    (2.6 -> 1.3 s CPU on a 53 mm region with 2.5 mm slices).
    """
    t0 = time.perf_counter()
    if fixed is None or moving is None:
        raise AblationError("registration needs both the pre and the post image")
    for img, name in ((fixed, "pre"), (moving, "post")):
        if img.GetDimension() != 3:
            raise AblationError(f"the {name} image is {img.GetDimension()}D; a 3D volume is needed")
        if min(img.GetSize()) < 4:
            raise AblationError(
                f"the {name} image is too small to register "
                f"({'x'.join(map(str, img.GetSize()))} voxels)"
            )
        stats = sitk.StatisticsImageFilter()
        stats.Execute(img)
        lo, hi = stats.GetMinimum(), stats.GetMaximum()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise AblationError(f"the {name} image has NaN or infinite voxels: nothing to register")
        if hi == lo:
            raise AblationError(
                f"the {name} image is constant (every voxel {lo:g}): nothing to register"
            )
    warnings: list[str] = []

    # --- region of interest in pre space
    center = None
    radius = None
    fmask_full = None
    if fixed_mask is not None:
        fmask_full = _on_grid(fixed_mask, fixed)
        if not sitk.GetArrayViewFromImage(fmask_full).any():
            raise AblationError("the fixed (pre) mask is empty on the pre grid")
        center = mask_centroid_lps(fmask_full)
        nz = np.argwhere(sitk.GetArrayViewFromImage(fmask_full))
        lo = geometry.index_to_lps(fmask_full, nz.min(axis=0) - 1)
        hi = geometry.index_to_lps(fmask_full, nz.max(axis=0) + 1)
    elif roi_box_lps is not None:
        lo, hi = (np.asarray(v, dtype=float) for v in roi_box_lps)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        center = (lo + hi) / 2
    elif roi_radius_mm is not None and (roi_center_lps is not None or tumor_mask is not None):
        if roi_center_lps is not None:
            center = np.asarray(roi_center_lps, dtype=float)
            radius = float(roi_radius_mm)
        else:
            tm = _on_grid(tumor_mask, fixed)
            if not sitk.GetArrayViewFromImage(tm).any():
                raise AblationError(
                    "the tumor mask is empty: draw the tumor or give a region of interest"
                )
            center = mask_centroid_lps(tm)
            radius = max(float(roi_radius_mm), mask_radius_mm(tm, center) + 10.0)
        if moving_exclude is not None:
            # the zone left out is seen around the tumor through the initial transform
            c_post = tfm.transform_points(initial, center)[0] if initial is not None else center
            reach = mask_radius_mm(moving_exclude, c_post)
            if reach > 0:
                radius = max(radius, reach + exclude_dilation_mm + ROI_BEYOND_EXCLUSION_MM)
        lo, hi = center - radius, center + radius
    else:
        lo, hi = geometry.physical_bounds(fixed)
    flo, fhi = geometry.physical_bounds(fixed)
    lo, hi = np.maximum(lo, flo), np.minimum(hi, fhi)
    fixed_c = _region_of(fixed, lo, hi) if np.all(hi > lo) else None
    if fixed_c is None:
        raise AblationError("the region of interest lies outside the pre image")
    if center is None:
        center = (lo + hi) / 2
    if fmask_full is not None:
        fmask = sitk.RegionOfInterest(
            fmask_full,
            fixed_c.GetSize(),
            fmask_full.TransformPhysicalPointToIndex(fixed_c.GetOrigin()),
        )
    elif radius is not None:
        fmask = _ball_mask(fixed_c, center, radius)
    else:
        fmask = None

    # --- initial transform, rotation centre at the ROI centre
    init = tfm.as_euler(initial, center=center)

    # --- moving crop: the region through the initial transform, padded for the motion
    crop_lo, crop_hi = geometry.physical_bounds(fixed_c)
    mlo, mhi = _moving_box(crop_lo, crop_hi, init, pad_mm=MOVING_PAD_MM)
    moving_c = _region_of(moving, mlo, mhi)
    if moving_c is None:
        raise AblationError(
            "the pre and post images do not overlap in the region of interest (check the "
            "initial transform)"
        )
    mmask = None
    if moving_exclude is not None:
        mmask = exclusion_mask(moving_c, moving_exclude, exclude_dilation_mm)  # on the crop: cheap
    if moving_mask is not None:
        mm = _on_grid(moving_mask, moving_c)
        mmask = mm if mmask is None else sitk.And(mmask, mm)
    if mmask is not None and not sitk.GetArrayViewFromImage(mmask).any():
        raise AblationError(
            "the moving mask leaves nothing of the post image in the region of interest"
        )

    f32 = sitk.Cast(fixed_c, sitk.sitkFloat32)
    m32 = sitk.Cast(moving_c, sitk.sitkFloat32)
    if ct_window_hu is not None:
        f32, m32 = (_windowed(img, ct_window_hu) for img in (f32, m32))

    n_region = (
        int(np.count_nonzero(sitk.GetArrayViewFromImage(fmask)))
        if fmask is not None
        else int(np.prod(fixed_c.GetSize()))
    )
    if sampling_fraction is None:
        fractions = _level_fractions(n_region, shrink_factors, int(metric_samples))
    else:
        fractions = [
            float(v)
            for v in np.broadcast_to(
                np.asarray(sampling_fraction, dtype=float), (len(shrink_factors),)
            )
        ]
    # the finest level on thick-slice images: in-plane voxels binned, every voxel sampled
    fine = None
    kf = _inplane_bin(f32, thick_slice_bin_ratio)
    if kf != [1, 1, 1]:
        km = _inplane_bin(m32, thick_slice_bin_ratio)
        mb = sitk.BinShrink(m32, km) if km != [1, 1, 1] else m32
        fb = sitk.BinShrink(f32, kf)
        fmb = None if fmask is None else _nearest_on(fmask, fb)
        mmb = None if mmask is None else _nearest_on(mmask, mb)
        n_fine = (
            int(np.count_nonzero(sitk.GetArrayViewFromImage(fmb)))
            if fmb is not None
            else int(np.prod(fb.GetSize()))
        )
        frac = fractions[-1]
        if sampling_fraction is None:
            frac = 1.0 if n_fine <= full_sampling_max_voxels else metric_samples / n_fine
        fine = {"bin": kf, "moving": mb, "fmask": fmb, "mmask": mmb, "fraction": min(1.0, frac)}
        before = _metric_value(fb, mb, fmb, mmb, bins=bins, tx=init)
    else:
        before = _metric_value(f32, m32, fmask, mmask, bins=bins, tx=init)

    def execute(fimg: sitk.Image, level: int, tx: sitk.Euler3DTransform) -> sitk.Euler3DTransform:
        """Run one pyramid level from ``tx`` on the fixed image ``fimg``."""
        last = level == nlev - 1
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
        frac = fractions[level]
        fm, mm, mimg = fmask, mmask, m32
        if last and fine is not None:
            fimg = sitk.BinShrink(fimg, fine["bin"])
            mimg, fm, mm, frac = fine["moving"], fine["fmask"], fine["mmask"], fine["fraction"]
        if frac < 1.0:
            reg.SetMetricSamplingStrategy(reg.REGULAR)
            reg.SetMetricSamplingPercentage(frac, seed)
        else:
            reg.SetMetricSamplingStrategy(reg.NONE)
        if fm is not None:
            reg.SetMetricFixedMask(fm)
        if mm is not None:
            reg.SetMetricMovingMask(mm)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetMetricUseMovingImageGradientFilter(bool(gradient_filter))
        reg.SetMetricUseFixedImageGradientFilter(bool(gradient_filter))
        if optimizer == "cg":
            reg.SetOptimizerAsConjugateGradientLineSearch(
                learningRate=float(learning_rate),
                numberOfIterations=int(iterations),
                convergenceMinimumValue=1e-6,
                convergenceWindowSize=10,
            )
        elif optimizer == "lbfgs":
            reg.SetOptimizerAsLBFGS2(numberOfIterations=int(iterations), solutionAccuracy=1e-6)
        else:
            reg.SetOptimizerAsRegularStepGradientDescent(
                learningRate=float(learning_rate),
                minStep=float(min_step if last else max(min_step, coarse_min_step)),
                numberOfIterations=int(iterations),
                relaxationFactor=float(relaxation),
                gradientMagnitudeTolerance=1e-8,
            )
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetShrinkFactorsPerLevel([int(shrink_factors[level])])
        reg.SetSmoothingSigmasPerLevel([float(smoothing_sigmas[level])])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        reg.SetInitialTransform(sitk.Euler3DTransform(tx), inPlace=False)
        # the metric value reported at an iteration is that of the position before its step
        track = {"before": tuple(tx.GetParameters()), "best": math.inf, "at": None, "since": 0}

        def on_iteration():
            state["iters"] += 1
            if cancel is not None and cancel():
                state["cancelled"] = True
                reg.StopRegistration()
                return
            value = reg.GetMetricValue()
            if value < track["best"]:
                track.update(best=value, at=track["before"], since=0)
            else:
                track["since"] += 1
            track["before"] = tuple(reg.GetOptimizerPosition())
            if stall_iterations and last and track["since"] >= stall_iterations:
                track["stalled"] = True
                reg.StopRegistration()
                return
            if progress is not None:
                it = reg.GetOptimizerIteration()
                frac = min(0.99, (level + min(it, 60) / 60.0) / nlev)
                progress(
                    frac,
                    f"level {level + 1}/{nlev}, iteration {it}, metric {reg.GetMetricValue():.4f}",
                )

        reg.AddCommand(sitk.sitkIterationEvent, on_iteration)
        out = reg.Execute(fimg, mimg)
        state["stop"] = reg.GetOptimizerStopConditionDescription()
        if track.get("stalled") and not state["cancelled"]:
            # the metric stopped improving: go back to where it was best
            state["stop"] = f"no better metric in {stall_iterations} iterations"
            best = sitk.Euler3DTransform(tx)
            best.SetParameters(track["at"])
            return tfm.as_euler(best, center=center)
        if isinstance(out, sitk.CompositeTransform) or out.GetName() == "CompositeTransform":
            comp = sitk.CompositeTransform(out)
            comp.FlattenTransform()
            out = comp.GetNthTransform(0)
        return tfm.as_euler(out, center=center)

    nlev = len(shrink_factors)
    state = {"iters": 0, "cancelled": False, "stop": "", "bias_matched": False}
    if progress is not None:
        progress(0.0, "starting")
    out = init
    try:
        for level in range(nlev):
            fimg = f32
            if bias_correction and level > 0:
                # the post/pre bias ratio at the transform found by the coarser levels
                fimg = _bias_matched(f32, m32, out, fmask, mmask, bins)
                state["bias_matched"] = fimg is not f32
            out = execute(fimg, level, out)
            if state["cancelled"]:
                break
    except RuntimeError as exc:
        if state["cancelled"]:
            raise RegistrationCancelled("registration cancelled") from None
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[-1].strip() if lines else "unknown error"
        if "Too many samples" in str(exc) or "samples" in detail:
            raise AblationError(
                "registration failed: too few overlapping samples (images or region do not "
                "overlap enough)"
            ) from None
        raise AblationError(f"registration failed: {detail}") from None
    if state["cancelled"]:
        raise RegistrationCancelled("registration cancelled")
    final = out
    if fine is not None:
        fb = sitk.BinShrink(f32, fine["bin"])
        after = _metric_value(fb, fine["moving"], fine["fmask"], fine["mmask"], bins=bins, tx=final)
    else:
        after = _metric_value(f32, m32, fmask, mmask, bins=bins, tx=final)
    stop = state["stop"]
    improved = not (after > before + WORSE_TOLERANCE * abs(before)) and math.isfinite(after)
    if not improved:
        warnings.append(
            f"registration ended no better than it started (metric {before:.4f} -> "
            f"{after:.4f}); kept the previous transform"
        )
        final = init
    if progress is not None:
        progress(1.0, "done")
    return RegistrationResult(
        final,
        before,
        after,
        state["iters"],
        stop,
        time.perf_counter() - t0,
        improved,
        tuple(float(v) for v in center),
        radius,
        warnings,
        bool(state["bias_matched"]) and improved,
    )


# ----------------------------------------------------------------------------- manual adjustment


def adjustment(
    translation_mm=(0, 0, 0), rotation_deg=(0, 0, 0), center_lps=(0, 0, 0)
) -> sitk.Euler3DTransform:
    """Return the motion ``M`` of the displayed (registered) post image in pre space.

    ``M(p) = R (p - c) + c + t``, rotations about the LPS x, y, z axes through ``c``
    (Euler3D, ZXY order as in ITK).

    Parameters
    ----------
    translation_mm : sequence of 3 floats
        ``t`` (LPS mm).
    rotation_deg : sequence of 3 floats
        Rotations about x, y, z (degrees).
    center_lps : sequence of 3 floats
        ``c`` (LPS mm).

    Returns
    -------
    SimpleITK.Euler3DTransform
        ``M``.
    """
    m = sitk.Euler3DTransform()
    m.SetCenter([float(v) for v in center_lps])
    m.SetRotation(*[math.radians(float(a)) for a in rotation_deg])
    m.SetTranslation([float(v) for v in translation_mm])
    return m


def adjust(
    base: sitk.Transform | None,
    translation_mm=(0, 0, 0),
    rotation_deg=(0, 0, 0),
    center_lps=(0, 0, 0),
) -> sitk.Euler3DTransform:
    """Change ``base`` so that the registered post image moves by :func:`adjustment`.

    Registered post shows ``post(T(p))``; moving that picture by ``M`` (in pre space)
    shows ``post(T(M^-1(p)))``, so the new transform is ``T o M^-1``.

    Parameters
    ----------
    base : SimpleITK.Transform or None
        The current ``T`` (identity when None).
    translation_mm, rotation_deg, center_lps : sequence of 3 floats
        The motion ``M``, as in :func:`adjustment`.

    Returns
    -------
    SimpleITK.Euler3DTransform
        ``T o M^-1``, centred where ``base`` was (or at ``center_lps``).
    """
    m = adjustment(translation_mm, rotation_deg, center_lps)
    out = tfm.compose(tfm.inverse(m), base)
    return tfm.as_euler(
        out, center=tfm.as_euler(base).GetCenter() if base is not None else center_lps
    )


# --------------------------------------------------------------------------- resampling for display


def registered(
    moving: sitk.Image,
    fixed: sitk.Image,
    tx: sitk.Transform | None,
    *,
    default: float | None = None,
) -> sitk.Image:
    """Resample post onto the pre grid (linear).

    Parameters
    ----------
    moving : SimpleITK.Image
        Post.
    fixed : SimpleITK.Image
        Pre (the grid of the result).
    tx : SimpleITK.Transform or None
        ``T`` pre -> post (identity when None).
    default : float, optional
        Value outside post (default: the minimum of post).

    Returns
    -------
    SimpleITK.Image
        Post on the pre grid.
    """
    if default is None:
        default = float(sitk.GetArrayViewFromImage(moving).min())
    return tfm.resample_onto(moving, fixed, tx, default=default)


def region_box(
    fixed: sitk.Image, center_lps, half_size_mm: float
) -> tuple[slice, slice, slice] | None:
    """Index box (z, y, x slices) of the pre grid within ``half_size_mm`` of a point.

    Parameters
    ----------
    fixed : SimpleITK.Image
        The pre image.
    center_lps : sequence of 3 floats
        The point (LPS mm).
    half_size_mm : float
        Half the side of the box (mm).

    Returns
    -------
    tuple of 3 slices or None
        None when the box misses the grid.
    """
    c = geometry.lps_to_index(fixed, center_lps)
    sp = np.asarray(fixed.GetSpacing())[::-1]
    shape = fixed.GetSize()[::-1]
    box = []
    for a in range(3):
        half = half_size_mm / sp[a]
        lo = max(0, math.floor(c[a] - half))
        hi = min(shape[a], math.ceil(c[a] + half) + 1)
        if hi <= lo:
            return None
        box.append(slice(lo, hi))
    return tuple(box)


def resample_region(
    moving: sitk.Image,
    fixed: sitk.Image,
    tx: sitk.Transform | None,
    box: tuple[slice, slice, slice],
    *,
    default: float = 0.0,
) -> np.ndarray:
    """Resample post onto the sub-grid ``box`` of the pre grid (the live-update path).

    Parameters
    ----------
    moving : SimpleITK.Image
        Post.
    fixed : SimpleITK.Image
        Pre.
    tx : SimpleITK.Transform or None
        ``T`` pre -> post (identity when None).
    box : tuple of 3 slices
        (z, y, x) index box of the pre grid (:func:`region_box`).
    default : float
        Value outside post.

    Returns
    -------
    numpy.ndarray
        (z, y, x) array of the box's shape.
    """
    sz = [box[2].stop - box[2].start, box[1].stop - box[1].start, box[0].stop - box[0].start]
    origin = fixed.TransformIndexToPhysicalPoint([box[2].start, box[1].start, box[0].start])
    out = sitk.Resample(
        moving,
        sz,
        tx if tx is not None else sitk.Transform(),
        sitk.sitkLinear,
        origin,
        fixed.GetSpacing(),
        fixed.GetDirection(),
        float(default),
        moving.GetPixelID(),
    )
    return sitk.GetArrayFromImage(out)


# ----------------------------------------------------------------------------- QA images


def intensity_range(arr: np.ndarray, lo_pct: float = 1, hi_pct: float = 99) -> tuple[float, float]:
    """Robust display range of an image (percentiles of a subsample).

    Parameters
    ----------
    arr : numpy.ndarray
        The image.
    lo_pct, hi_pct : float
        Percentiles.

    Returns
    -------
    (float, float)
        ``lo < hi``.
    """
    a = np.asarray(arr)
    sample = a[:: max(1, a.shape[0] // 16)] if a.ndim == 3 else a
    lo, hi = (float(v) for v in np.percentile(sample, [lo_pct, hi_pct]))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def normalise(arr: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Map intensities to [0, 1] by a robust range (so pre and post MRI compare).

    Parameters
    ----------
    arr : numpy.ndarray
        The image.
    value_range : (float, float), optional
        ``(lo, hi)``; :func:`intensity_range` when None.

    Returns
    -------
    numpy.ndarray
        Float32 values in [0, 1].
    """
    a = np.asarray(arr, dtype=np.float32)
    lo, hi = value_range if value_range is not None else intensity_range(a)
    return np.clip((a - lo) / (hi - lo), 0, 1).astype(np.float32)


def checkerboard_parity(shape, spacing_zyx, tile_mm: float, origin_zyx=(0, 0, 0)) -> np.ndarray:
    """Boolean array, True on the checkerboard tiles that show the first image.

    Parameters
    ----------
    shape : tuple of 3 ints
        (z, y, x) shape.
    spacing_zyx : sequence of 3 floats
        Voxel spacing (mm).
    tile_mm : float
        Tile side in world mm.
    origin_zyx : sequence of 3 floats
        World position of voxel 0 (mm), so that tiles stay put in the world.

    Returns
    -------
    numpy.ndarray of bool
        True on the tiles of the first image.

    Raises
    ------
    AblationError
        When ``tile_mm`` is not positive.
    """
    if not tile_mm > 0:
        raise AblationError("the checkerboard tile size must be positive")
    parity = np.zeros(shape, dtype=np.int64)
    for ax in range(3):
        coords = origin_zyx[ax] + spacing_zyx[ax] * np.arange(shape[ax])
        idx = np.floor(coords / tile_mm + 1e-9).astype(np.int64)
        sh = [1, 1, 1]
        sh[ax] = -1
        parity = parity + idx.reshape(sh)
    return parity % 2 == 0


def checkerboard(
    a: np.ndarray,
    b: np.ndarray,
    spacing_zyx,
    tile_mm: float = 10.0,
    origin_zyx=(0, 0, 0),
    range_a=None,
    range_b=None,
) -> np.ndarray:
    """3D checkerboard of two same-grid arrays, each normalised to [0, 1].

    Parameters
    ----------
    a, b : numpy.ndarray
        The two images on one grid.
    spacing_zyx : sequence of 3 floats
        Voxel spacing (mm).
    tile_mm : float
        Tile side in world mm.
    origin_zyx : sequence of 3 floats
        World position of voxel 0 (mm).
    range_a, range_b : (float, float), optional
        Intensity ranges (:func:`normalise`).

    Returns
    -------
    numpy.ndarray
        Float32 values in [0, 1].

    Raises
    ------
    AblationError
        When the shapes differ or ``tile_mm`` is not positive.
    """
    if a.shape != b.shape:
        raise AblationError("checkerboard needs two images on the same grid")
    first = checkerboard_parity(a.shape, spacing_zyx, tile_mm, origin_zyx)
    return np.where(first, normalise(a, range_a), normalise(b, range_b))


def difference(a: np.ndarray, b: np.ndarray, range_a=None, range_b=None) -> np.ndarray:
    """Signed difference of the normalised images (b - a), in [-1, 1].

    Parameters
    ----------
    a, b : numpy.ndarray
        The two images on one grid.
    range_a, range_b : (float, float), optional
        Intensity ranges (:func:`normalise`).

    Returns
    -------
    numpy.ndarray
        The difference, float32.

    Raises
    ------
    AblationError
        When the shapes differ.
    """
    if a.shape != b.shape:
        raise AblationError("difference needs two images on the same grid")
    return normalise(b, range_b) - normalise(a, range_a)


def edges(img: sitk.Image, sigma_mm: float = 1.5, fraction: float = 0.2) -> np.ndarray:
    """Thin binary edge map (uint8, z y x) of the Gaussian-smoothed image.

    Voxels whose gradient magnitude is strong (> ``fraction`` of its 99.5th percentile) and
    a local maximum along the dominant gradient axis (a cheap non-maximum suppression).

    Parameters
    ----------
    img : SimpleITK.Image
        The image.
    sigma_mm : float
        Gaussian smoothing (mm).
    fraction : float
        Threshold as a fraction of the 99.5th percentile of the gradient magnitude.

    Returns
    -------
    numpy.ndarray
        A uint8 (z, y, x) array, 1 on edges.
    """
    f = sitk.Cast(img, sitk.sitkFloat32)
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(f, float(sigma_mm)))
    sp = np.asarray(img.GetSpacing(), dtype=np.float32)[::-1]
    best = np.zeros(smooth.shape, np.float32)
    dom = np.zeros(smooth.shape, np.uint8)
    for ax in range(3):
        if smooth.shape[ax] < 3:
            continue
        g = np.abs(np.gradient(smooth, axis=ax)).astype(np.float32) / sp[ax]
        take = g > best
        best[take] = g[take]
        dom[take] = ax
        del g, take
    gm = best  # dominant directional derivative, in physical units
    hi = float(np.percentile(gm[:: max(1, gm.shape[0] // 16)], 99.5))
    if hi <= 0:
        return np.zeros(gm.shape, np.uint8)
    out = gm > fraction * hi
    for ax in range(3):
        if gm.shape[ax] < 3:
            continue
        prev = np.roll(gm, 1, axis=ax)
        nxt = np.roll(gm, -1, axis=ax)
        out &= ~((dom == ax) & ((gm < prev) | (gm < nxt)))
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------- accuracy


def ball_points(center_lps, radius_mm: float, step_mm: float = 2.0) -> np.ndarray:
    """Grid points (LPS) of a ball, for measuring target registration error in a region.

    Parameters
    ----------
    center_lps : sequence of 3 floats
        Centre (LPS mm).
    radius_mm : float
        Radius (mm).
    step_mm : float
        Grid step (mm).

    Returns
    -------
    numpy.ndarray, shape (N, 3)
        The points (LPS mm).
    """
    r = np.arange(-radius_mm, radius_mm + 1e-9, step_mm)
    g = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    g = g[np.linalg.norm(g, axis=1) <= radius_mm]
    return g + np.asarray(center_lps, dtype=float)


def target_error(
    estimate: sitk.Transform | None, truth: sitk.Transform | None, points_lps
) -> tuple[float, float]:
    """Mean and maximum ``|T_est(p) - T_true(p)|`` (mm) over pre-space points.

    Parameters
    ----------
    estimate, truth : SimpleITK.Transform or None
        Pre -> post transforms (identity when None).
    points_lps : array_like, shape (N, 3)
        Pre-space points (LPS mm).

    Returns
    -------
    (float, float)
        Mean and maximum distance (mm).
    """
    d = np.linalg.norm(
        tfm.transform_points(estimate, points_lps) - tfm.transform_points(truth, points_lps), axis=1
    )
    return float(d.mean()), float(d.max())


# ----------------------------------------------------------------------------- plausibility

#: after a registration of images of one patient the Mattes metric reaches about -0.5
#: (renal MRI sample -0.68, liver CT sample -0.50); liver CT pre against the renal MRI
#: post ends at -0.25. Above this value the result is flagged.
PLAUSIBLE_METRIC = -0.3


def plausibility_warnings(result: RegistrationResult) -> list[str]:
    """Return warnings when a registration result does not look like one patient's images.

    Parameters
    ----------
    result : RegistrationResult
        A result of :func:`register_rigid`.

    Returns
    -------
    list of str
        Empty when the final metric shows the usual similarity.
    """
    if not math.isfinite(result.metric_after) or result.metric_after > PLAUSIBLE_METRIC:
        text = (
            "weak image similarity after registration (Mattes metric "
            f"{result.metric_after:.2f}, usually below "
            f"{PLAUSIBLE_METRIC:.1f}): check that pre and post are of the same patient and "
            "inspect the registration"
        )
        return [text]
    return []
