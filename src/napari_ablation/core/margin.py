"""Margin engine: the sub-voxel minimal treatment margin (docs/design.md, section 4).

Method (no voxel-to-voxel distances, so thick slices do not quantise the answer):

1. Both binary masks are cropped to their bounding boxes, lightly smoothed (a Gaussian of
   a fraction of a voxel per axis, i.e. anti-aliasing of the staircase) and turned into
   triangle surfaces by marching cubes at the 0.5 level, with vertices in patient LPS mm.
2. The ablation surface is brought into pre space with the inverse of the registration
   ``T`` (ITK convention: ``T`` maps pre points to post points, so a post point ``q`` is
   the pre point ``T^-1(q)``).
3. The signed margin ``m(p)`` of any pre-space point is the exact Euclidean distance from
   ``p`` to the ablation surface (closest point on its triangles), positive when ``p``
   lies inside the ablation zone (the smoothed ablation field, sampled trilinearly at
   ``T(p)`` on the post grid, is >= 0.5: the same field the surface came from).
4. The MTM is the minimum of ``m`` over the tumor's closed region. ``m`` has no interior
   local minimum in a region (moving towards the nearest ablation boundary point lowers
   it), so the MTM is the minimum over the tumor surface vertices.
5. Coverage classes per tumor voxel from ``m`` at the voxel centre.

Everything runs on crops around the two objects; nothing is computed on the full grid.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from . import coverage, filters, geometry
from . import transform as tfm
from .errors import AblationError
from .mesh_search import TriangleBVH, candidate_segment_distance, outside_by_normals

#: threshold presets offered in the GUI (mm)
THRESHOLD_PRESETS = (0.0, 1.0, 3.0, 5.0, 10.0)
#: surface fractions reported for these margins (mm)
SURFACE_FRACTION_LEVELS = (0.0, 3.0, 5.0, 6.0, 10.0)
#: peri-tumoral shells whose ablation coverage is reported (mm)
SHELL_WIDTHS = (3.0, 6.0)
# coverage classes: defined once in core.coverage (re-exported here for existing callers)
CLASS_KEYS, CLASS_LABELS = coverage.CLASS_KEYS, coverage.CLASS_LABELS
#: what ``tumor_volume_ml``, ``ablation_volume_ml`` and the class volumes are measured on
VOLUME_BASIS = (
    "tumor_volume_ml and ablation_volume_ml: voxel count x voxel volume of the segmentations; "
    "tumor_reconstructed_volume_ml: the volume of the smooth star-shaped surface that "
    "reproduces every voxel of the tumor mask, where one pins the volume (to 1 %, 2.5 % across "
    "thick slices), else the sub-voxel reconstruction (tumor_reconstruction says which); "
    "ablation_reconstructed_volume_ml: the sub-voxel reconstruction (across thick slices, the "
    "slice contours interpolated on a fine grid; on near-isotropic grids, the voxel volume); "
    "class volumes: the class fractions of the reconstruction x tumor_reconstructed_volume_ml; "
    "the fractions count the tumor's voxel centres on near-isotropic grids, sub-voxel (a "
    "voxel within 0.75 voxel of a class boundary counts in part on each side, so they can "
    "differ by a fraction of a voxel per boundary voxel from the margin layer's whole-voxel "
    "classes), and the refined samples of the reconstruction across thick slices"
)
#: what a margin computed without a registration says (CLI JSON, cohort rows)
NO_TRANSFORM_NOTE = "no transform given: nothing was registered, the identity transform is assumed"


def registration_fields(transform) -> dict[str, Any]:
    """Return the JSON fields saying whether a margin used a registration.

    Parameters
    ----------
    transform : SimpleITK.Transform or None
        The pre -> post transform the margin was computed with (None: identity).

    Returns
    -------
    dict
        ``{"registered": bool}``, plus ``"registration_note"`` when nothing was registered.
    """
    if transform is not None:
        return {"registered": True}
    return {"registered": False, "registration_note": NO_TRANSFORM_NOTE}


#: anti-aliasing Gaussian, in voxels of each axis (0 = plain binary marching cubes)
DEFAULT_SMOOTH_VOX = 1.2
DIAMETER_SMOOTH_VOX = 0.7


# ----------------------------------------------------------------------------- geometry helpers


def _affine(x: np.ndarray, M: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
    """``x @ M.T + t`` for (n, 3) points, column by column.

    Products with an inner dimension of 3 gain nothing from BLAS, and a multi-threaded BLAS
    on a loaded machine makes them 10-30x slower (thread start-up and spinning).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        return _affine(x[None, :], M, t)[0]
    out = np.empty((len(x), M.shape[0]))
    for r in range(M.shape[0]):
        col = x[:, 0] * M[r, 0]
        for c in range(1, M.shape[1]):
            col += x[:, c] * M[r, c]
        out[:, r] = col if t is None else col + t[r]
    return out


class _Grid:
    """Affine map between (z, y, x) continuous indices of an image and LPS points."""

    def __init__(self, img: sitk.Image):
        self.shape = tuple(int(s) for s in img.GetSize()[::-1])
        self.spacing_xyz = np.asarray(img.GetSpacing(), dtype=float)
        self.spacing_zyx = self.spacing_xyz[::-1].copy()
        self.origin = np.asarray(img.GetOrigin(), dtype=float)
        d = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
        # lps = origin + D @ (spacing * idx_xyz) ; idx_xyz = idx_zyx[::-1]
        self.M = (d * self.spacing_xyz[None, :])[:, ::-1]  # columns for z, y, x index
        self.Minv = np.linalg.inv(self.M)
        self.direction = d
        self.voxel_ml = float(np.prod(self.spacing_xyz)) / 1000.0

    def to_lps(self, idx_zyx: np.ndarray) -> np.ndarray:
        return _affine(idx_zyx, self.M, self.origin)

    def to_index(self, lps: np.ndarray) -> np.ndarray:
        return _affine(np.asarray(lps, dtype=float) - self.origin, self.Minv)


def _bbox(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Index box of the non-zero voxels (fast: three projections)."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    sub = mask[zs[0] : zs[-1] + 1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    return (
        slice(int(zs[0]), int(zs[-1]) + 1),
        slice(int(ys[0]), int(ys[-1]) + 1),
        slice(int(xs[0]), int(xs[-1]) + 1),
    )


def _nonzero_bytes(a: np.ndarray, axis_keep: int) -> np.ndarray:
    """Find the indices along ``axis_keep`` (0 or 1) of a 3D array with a non-zero byte.

    One pass over the memory in the widest words that tile the rows; a superset of the
    non-zero values (-0.0 has a non-zero byte).
    """
    a = np.ascontiguousarray(a)
    raw = a.view(np.uint8).reshape(a.shape[0], a.shape[1], -1)
    row = raw.shape[2]
    for word in (np.uint64, np.uint32, np.uint16, np.uint8):
        if row % np.dtype(word).itemsize == 0:
            break
    v = raw.view(word)
    other = (1, 2) if axis_keep == 0 else (0, 2)
    return np.flatnonzero(np.bitwise_or.reduce(v, axis=other))


class _MaskSource:
    """The foreground of a label image, read only inside boxes (no full-volume array).

    Finding the bounding box is the one pass over the whole image (in machine words, about
    8 ms for 512 x 512 x 300 uint8); everything else reads crops around the box.
    """

    def __init__(self, img: sitk.Image, name: str, label: int | None):
        if img is None:
            raise AblationError(f"no {name} mask")
        if img.GetDimension() != 3:
            raise AblationError(f"the {name} mask is {img.GetDimension()}D; a 3D mask is needed")
        self.arr = sitk.GetArrayViewFromImage(img)
        self.label = label
        self.shape = self.arr.shape
        self.box = self._find_box()

    def _fg(self, sub: np.ndarray) -> np.ndarray:
        return (sub == self.label) if self.label is not None else (sub != 0)

    def _find_box(self) -> tuple[slice, slice, slice] | None:
        zs = _nonzero_bytes(self.arr, 0)
        if zs.size == 0:
            return None
        slab = self.arr[zs[0] : zs[-1] + 1]
        ys = _nonzero_bytes(slab, 1)
        # a superset of the foreground's box; the exact box from the values inside it
        sub = slab[:, ys[0] : ys[-1] + 1]
        box = _bbox(self._fg(sub))
        if box is None:
            return None
        off = (int(zs[0]), int(ys[0]), 0)
        return tuple(slice(s.start + o, s.stop + o) for s, o in zip(box, off))

    def crop(self, lo, hi) -> np.ndarray:
        """Foreground (bool) of the index box ``lo:hi`` (False beyond the image)."""
        out = np.zeros([h - a for a, h in zip(lo, hi)], dtype=bool)
        src = tuple(slice(max(a, 0), min(h, n)) for a, h, n in zip(lo, hi, self.shape))
        dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, lo))
        out[dst] = self._fg(self.arr[src])
        return out

    def count(self) -> int:
        """Count the foreground voxels."""
        box = self.box
        return int(np.count_nonzero(self._fg(self.arr[box])))


def _touches_border(box, shape) -> bool:
    return any(s.start == 0 or s.stop == n for s, n in zip(box, shape))


@dataclass
class _Field:
    """A smooth scalar field on a padded (possibly refined) crop whose ``level`` set is the surface.

    Sample ``i`` of ``values`` sits at the continuous grid index ``offset + i * step``.
    """

    values: np.ndarray  # float32 (z, y, x)
    offset: np.ndarray  # grid index (z, y, x) of values[0, 0, 0] (may be negative)
    step: np.ndarray  # grid-index step between samples (z, y, x), 1 or 1/k along a thick axis
    grid: _Grid
    level: float
    #: the object as samples of this grid before anti-aliasing (the binary mask, or the
    #: shape-based refined mask across thick slices): volumes and class fractions use it
    solid: np.ndarray | None = None
    #: Gaussian blur (in samples, per axis) applied to a binary solid to make ``values``
    blur: tuple[float, float, float] | None = None
    #: volume (mm^3) of the reconstruction across thick slices (see _partial_volume_mm3)
    volume_mm3: float | None = None
    #: across thick slices: how far each pixel's sections depart from the smooth model (mm),
    #: on the mask's own grid from index ``offset`` (see _slice_departure)
    departure: np.ndarray | None = None
    #: across thick slices: how far (mm) the caps of a part seen on one slice, or on two, may
    #: lie from the modelled ones across the slices, on the mask's grid like ``departure``
    #: (see _unknown_extent)
    extent: np.ndarray | None = None
    #: samples of parts the anti-aliasing erased and that were kept (see _keep_lost_parts)
    kept: np.ndarray | None = None
    #: across thick slices: anti-aliased from sub-pixel sections (see _shape_based_field)
    subpixel: bool = False

    def sample_spacing_mm(self) -> np.ndarray:
        return np.linalg.norm(self.grid.M * self.step[None, :], axis=0)

    def to_lps(self, sample_idx: np.ndarray) -> np.ndarray:
        return self.grid.to_lps(self.offset + np.asarray(sample_idx) * self.step)

    def sample(self, lps: np.ndarray) -> np.ndarray:
        """Trilinear value at LPS points (the outside value beyond the crop)."""
        idx = (self.grid.to_index(lps) - self.offset) / self.step
        return ndimage.map_coordinates(
            self.values, idx.T, order=1, mode="constant", cval=self.outside_value, prefilter=False
        )

    @cached_property
    def outside_value(self) -> float:
        """The field's value beyond its crop (its minimum)."""
        return float(self.values.min())

    @cached_property
    def box_bounds(self) -> _BoxBounds:
        """Bounds of ``values`` over sample boxes (see :func:`_lattice_margins`)."""
        return _BoxBounds(self.values)

    def inside(self, lps: np.ndarray) -> np.ndarray:
        return self.sample(lps) >= self.level


#: an axis counts as thick when its spacing exceeds the finest one by this factor
THICK_RATIO = 1.5
#: in-plane anti-aliasing of thick-slice masks (pixels)
SLICE_SMOOTH_VOX = 0.8
#: exact in-plane distances within (slice thickness + this) of a contour; pixel-centre EDT beyond
SLICE_BAND_EXTRA_MM = 1.0
#: anti-aliasing of the refined thick-slice reconstruction (refined voxels)
FINE_SMOOTH_VOX = 1.2
FINE_SMOOTH_AXIAL_VOX = 1.2


def _smoothed_field(
    mask: _MaskSource,
    box,
    grid: _Grid,
    smooth_vox: float,
    poles: bool = True,
    subpixel_slices: bool = False,
) -> _Field:
    """Anti-aliased field of a binary mask around ``box``.

    Near-isotropic grids: the mask smoothed by a Gaussian of ``smooth_vox`` voxels, level 0.5.
    Thick slices: shape-based reconstruction: an in-plane signed distance per slice (mm),
    interpolated linearly across slices onto a refined grid (so the surface runs straight from
    one slice contour to the next instead of in terraces), smoothed in-plane, level 0.
    ``poles``: the pole caps of near-isotropic grids (:func:`_pole_coverage`);
    ``subpixel_slices``: across thick slices, the sections' in-plane poles and the refined
    contours sub-pixel (see :func:`_shape_based_field`).
    """
    sp = grid.spacing_zyx
    thick = [ax for ax in range(3) if sp[ax] > THICK_RATIO * sp.min()]
    if len(thick) != 1:
        return _keep_lost_parts(_gaussian_field(mask, box, grid, smooth_vox, poles))
    return _shape_based_field(mask, box, grid, smooth_vox, thick[0], subpixel_slices)


#: a part of a mask whose anti-aliased field peaks below this is too thin for the blur (a
#: slab three samples thick peaks at 0.79, five samples at 0.96): its surface is the unblurred one
THIN_PEAK = 0.85


def _keep_lost_parts(fld: _Field, n_parts: int | None = None) -> _Field:
    """Give back their own surface to the parts of a mask too thin for the anti-aliasing (in place).

    The blur of a part one or two voxels thin (a single voxel, a one-pixel island on a thick
    slice) stays below the 0.5 level everywhere: the part had no surface, and was missing
    from the MTM and the diameter while its voxels were classified. A part three samples
    thin (the slab of one thick slice, refined three times) peaks at 0.79: its 0.5 level
    retreats in-plane by half a sample and more, and the curvature of its rim pulls it in
    further (1 mm off for a 3.5 mm disc on one 3 mm slice). Every connected part
    (26-connected samples of ``fld.solid``) whose blurred values all stay below ``THIN_PEAK``
    gets its samples set to 1: its surface is then the unblurred one, about half a sample
    around its samples (marching cubes of the binary part), and :func:`_surface` leaves it
    without the blur's curvature correction (``fld.kept``). When nothing reaches the 0.5
    level, the field is left as it is (:func:`_field_and_surface` retries with less blur).
    ``n_parts``: the number of parts when the caller knows it (1: the solid is one part).
    The parts are found by a flood fill from the high samples over the low ones
    (:func:`filters.low_parts`: no labelling of the whole crop).
    """
    if fld.blur is None or fld.solid is None or fld.values.max() < fld.level:
        return fld
    solid = fld.solid.astype(bool, copy=False)
    if n_parts == 1:
        high = np.any((fld.values >= np.float32(THIN_PEAK)) & solid)
        kept = None if high else solid.copy()
    else:
        kept = filters.low_parts(solid, fld.values, THIN_PEAK)
    if kept is not None:
        fld.values[kept] = 1.0
        fld.kept = kept
    return fld


def _padded_crop(src: _MaskSource, box, pads) -> tuple[np.ndarray, np.ndarray]:
    lo = [s.start - p for s, p in zip(box, pads)]
    hi = [s.stop + p for s, p in zip(box, pads)]
    return src.crop(lo, hi).view(np.uint8), np.asarray(lo, dtype=float)


def _gaussian_field(mask, box, grid: _Grid, smooth_vox: float, poles: bool = True) -> _Field:
    sig = float(smooth_vox)
    pad = 2 + (math.ceil(3 * sig) if sig > 0 else 0)
    crop, lo = _padded_crop(mask, box, [pad] * 3)
    arr = _pole_coverage(crop, grid.spacing_zyx) if sig > 0 and poles else crop.astype(np.float32)
    if sig > 0:
        arr = filters.gaussian_filter(arr, sigma=sig, mode="constant", truncate=3.0)
    return _Field(arr, lo, np.ones(3), grid, 0.5, crop, (sig, sig, sig) if sig > 0 else None)


#: layers below an object's extreme layer along a grid axis whose section areas fit its cap
POLE_FIT_LAYERS = 6
#: surface tilt from the axis (deg) up to which a column takes the cap model's height fully,
#: and beyond which not at all (linear in between)
POLE_TILT_DEG = (25.0, 40.0)
#: caps rounder than this (radius of curvature at the pole, mm) are left binary
POLE_MIN_RADIUS_MM = 6.0


def _pole_coverage(solid: np.ndarray, sp_zyx) -> np.ndarray:
    """Return the binary mask as voxel coverages (float32), sub-voxel at axis poles.

    Where the surface of a round object faces a grid axis, the mask's last layers are flat
    terraces several voxels wide: a blur puts the surface half a voxel beyond each terrace,
    wherever between its own layer and the next the true surface lies (up to +/- 0.5 voxel
    at a pole, coherently over the whole terrace; the voxel count is wrong by the same).
    The terraces' areas say where: the squared equivalent radius q = area / pi of the
    sections is a quadratic in the height for any ellipsoid (its sections are similar
    ellipses with collinear centres), so a least-squares quadratic over the last
    ``POLE_FIT_LAYERS`` layers (their pixel-count noise averages out) gives the height of
    the surface above every column of those layers. A column's top voxel and the one above
    it then hold the fraction of each below that height, clipped to what the mask says (the
    top voxel's centre inside, the next one's outside): fully where the modelled surface is
    tilted less than ``POLE_TILT_DEG[0]`` from the layers' plane, not at all beyond
    ``POLE_TILT_DEG[1]`` (where another axis's columns take over); the blur's 0.5 level
    follows it. Only the surface: volumes stay voxel counts (over random 6-9 mm balls the
    coverage's sum scatters as much as the count, 0.40 against 0.39 %). A cap that is not
    convex, not fitted well by the quadratic, or whose modelled pole lies beyond the next
    layer, is left binary.
    """
    cov = solid.astype(np.float32)
    sp = np.asarray(sp_zyx, dtype=float)
    for ax in range(3):
        inplane = tuple(float(sp[a]) for a in range(3) if a != ax)
        s_ax = np.moveaxis(solid, ax, 0)
        c_ax = np.moveaxis(cov, ax, 0)
        for flip in (False, True):
            s_v, c_v = (s_ax[::-1], c_ax[::-1]) if flip else (s_ax, c_ax)
            _cap_coverage(s_v, c_v, float(sp[ax]), inplane)
    _diagonal_cap_coverage(solid, cov, sp)
    return cov


#: the lattice's diagonal directions (index steps z, y, x; each taken both ways): the six
#: face diagonals and the four body diagonals, whose lattice planes lie 1 / sqrt(2) and
#: 1 / sqrt(3) voxel apart
POLE_DIAGONALS = (
    (0, 1, 1),
    (0, 1, -1),
    (1, 0, 1),
    (1, 0, -1),
    (1, 1, 0),
    (1, -1, 0),
    (1, 1, 1),
    (1, 1, -1),
    (1, -1, 1),
    (-1, 1, 1),
)
#: tilt (deg) from a diagonal up to which its cap's model is taken fully, and beyond which
#: not at all: the nearest other poles lie 35 deg (face and body diagonals) and 45 deg (a
#: face diagonal and an axis) away
POLE_DIAGONAL_TILT_DEG = (10.0, 20.0)


def _diagonal_cap_coverage(solid: np.ndarray, cov: np.ndarray, sp: np.ndarray) -> None:
    """Sub-voxel coverage (in place, into ``cov``) at the poles facing the lattice's diagonals.

    The terraces of :func:`_pole_coverage` are not only the axes': where a round surface
    faces a face diagonal (or a body diagonal) of the lattice, the mask's last lattice planes
    across that direction, 1 / sqrt(2) (1 / sqrt(3)) voxel apart, are flat terraces too, and
    the blur put the surface half a plane beyond the last one wherever the true surface lay:
    on 14-17 mm balls on a 1 mm grid up to 0.26 mm off within 5 deg of a face diagonal and
    0.19 mm of a body diagonal, where within 5 deg of an axis the axis caps leave 0.04 mm
    (bench_accuracy.py, seed 57, case 19: the tumor 0.16 mm outside its ball and the zone
    0.22 mm inside its own at one face diagonal, the MTM 0.30 mm low). The same model as the
    axis caps (the sections' squared equivalent radius a quadratic in the height, fitted over
    the last planes; their centres on a line; one shape), each plane's points counting the
    area the lattice gives them there (voxel volume / plane spacing). A voxel whose centre
    lies ``s`` below the modelled surface along the diagonal (negative: above it) then holds
    0.5 + s / h of its plane's spacing ``h``, clipped to what the mask says (inside: at least
    0.5, outside: below 0.5): the blurred planes' 0.5 level moves by the mass added or taken,
    (coverage - 0 or 1) h, to the modelled surface. Only the mask's own voxels in those
    planes and the voxels one step above them along a grid axis are touched.
    """
    if solid.ndim != 3 or not solid.any():
        return
    n_layers = [max(3, round(POLE_FIT_LAYERS * sum(map(abs, m)) ** 0.5)) for m in POLE_DIAGONALS]
    filters.diagonal_caps(
        solid, cov, sp, POLE_DIAGONALS, n_layers, POLE_MIN_RADIUS_MM, POLE_DIAGONAL_TILT_DEG
    )


def _point_cov(pts: np.ndarray) -> np.ndarray:
    """``np.cov(pts.T)`` of ``(n, 2)`` points (n > 1): the same operations, without its checks."""
    x = np.array(pts.T)
    x -= (np.add.reduce(x, axis=1) / x.shape[1])[:, None]
    c = np.dot(x, x.T.conj())
    c *= np.true_divide(1, x.shape[1] - 1)
    return c


def _cap_coverage(s: np.ndarray, c: np.ndarray, h: float, aniso) -> None:
    """Sub-voxel coverage (in place, into ``c``) of the cap of ``s`` at its last layer along axis 0.

    See :func:`_pole_coverage`; ``h`` the layer spacing, ``aniso`` the in-plane spacings (mm).
    Reads only the last ``POLE_FIT_LAYERS`` filled layers.
    """
    top = len(s) - 1
    while top >= 0 and not s[top].any():
        top -= 1
    if top < 2 or top + 1 >= len(s):
        return
    lo = max(top - POLE_FIT_LAYERS + 1, 0)
    slab = s[lo : top + 1]
    n = np.count_nonzero(slab.reshape(len(slab), -1), axis=1)
    gap = np.flatnonzero(n == 0)
    if len(gap):  # a thin object: the layers above its last gap
        lo += int(gap[-1]) + 1
        slab, n = s[lo : top + 1], n[int(gap[-1]) + 1 :]
    lay = np.arange(lo, top + 1)
    if len(lay) < 3:
        return
    px = aniso[0] * aniso[1]
    q = n * px / math.pi
    z = (lay - top) * h
    g, b, a0 = np.polyfit(z, q, 2)
    if g >= 0:
        return
    disc_top = b * b - 4 * g * a0
    if disc_top <= 0:
        return
    pole = (-b - math.sqrt(disc_top)) / (2 * g)
    # the sections' radius of curvature at the pole (q = 2 R s for a sphere)
    if math.sqrt(disc_top) / 2 < POLE_MIN_RADIUS_MM:
        return
    if not 0 < pole < 1.5 * h:  # the next layer is empty: the pole lies below it (pixel noise)
        return
    fit = np.polyval((g, b, a0), z)
    if np.max(np.abs(np.sqrt(q) - np.sqrt(np.clip(fit, 0, None)))) > 0.5 * min(aniso):
        return
    # the sections' centres (a line) and common shape (a unit-determinant covariance)
    cen = np.empty((len(lay), 2))
    shape = np.zeros((2, 2))
    pixel = np.eye(2) * (px / 12.0)
    for i in range(len(lay)):
        pts = np.argwhere(slab[i]) * aniso
        cen[i] = pts.mean(axis=0)
        if len(pts) > 2:
            cov = _point_cov(pts) + pixel
            shape += len(pts) * cov / math.sqrt(max(np.linalg.det(cov), 1e-12))
    det = np.linalg.det(shape)
    if det <= 0:
        return
    s_inv = np.linalg.inv(shape / math.sqrt(det))
    drift = np.polyfit(z, cen, 1)  # (2, 2): slope and intercept of each coordinate
    # the columns within the fitted layers, each with its top voxel t
    rev = slab[::-1]
    ys, xs = np.nonzero(rev.any(axis=0))
    tt = top - np.argmax(rev[:, ys, xs], axis=0)
    pix = np.stack([ys * aniso[0], xs * aniso[1]], 1)
    height = (tt - top + 0.5) * h  # first guess (mm above the last layer), then the model's
    for _ in range(3):  # the section's centre at the column's own height (a tilted cap drifts)
        d = pix - (drift[0] * height[:, None] + drift[1])
        r2 = np.einsum("ni,ij,nj->n", d, s_inv, d)
        disc = b * b - 4 * g * (a0 - r2)
        ok = disc > 0
        root = np.sqrt(np.where(ok, disc, 1.0))
        height = np.where(ok, (-b - root) / (2 * g), height)
    # the model's surface slope dH/dr = 2 r / q'(H) (q'(H) = root): full weight up to
    # POLE_TILT_DEG[0] from the axis, none beyond POLE_TILT_DEG[1], where the columns of
    # another axis take over (a sharp edge between sub-voxel and binary columns leaves the
    # binary terrace's low inner half uncompensated: a dip of 0.05 mm)
    tilt = np.degrees(np.arctan2(2 * np.sqrt(r2), root))
    t0, t1 = POLE_TILT_DEG
    w = np.clip((t1 - tilt) / (t1 - t0), 0.0, 1.0)
    ok &= w > 0
    frac = np.clip(top + height / h - tt, 0.0, 1.0 - 1e-3)[ok].astype(np.float32)
    w = w[ok].astype(np.float32)
    ys, xs, tt = ys[ok], xs[ok], tt[ok]
    v_top = 1.0 - w * (1.0 - np.minimum(1.0, 0.5 + frac))
    v_up = w * np.maximum(0.0, frac - 0.5)
    c[tt, ys, xs] = np.minimum(c[tt, ys, xs], v_top)
    c[tt + 1, ys, xs] = np.maximum(c[tt + 1, ys, xs], v_up)


def _inplane_pole_coverage(crop: np.ndarray, aniso, hz: float) -> np.ndarray:
    """Return a thick-slice crop (slices first) as coverages, sub-pixel at its in-plane poles.

    Where a round object's contours face a pixel axis, each slice's last pixel runs along
    that axis are flat terraces several pixels long, and the in-plane blur put the contour
    half a pixel beyond the last pixel centre wherever the true contour lay (up to +/- half
    a pixel, 0.6 mm on 1.2 mm pixels, coherently along the terrace). The caps of
    :func:`_cap_coverage` along the two in-plane axes say where: their layers are the planes
    across the slices (one pixel column of every slice), whose areas every slice the cap
    spans adds to (a 2D fit of one slice's run lengths alone scattered twice as much), and
    each slice's last pixels near the pole (and the next ones) get the fraction below the
    modelled surface. ``aniso``: the in-plane spacings (mm), ``hz`` the slice thickness.
    """
    cov = crop.astype(np.float32)
    s = crop != 0
    for ax in (1, 2):
        other = aniso[0] if ax == 2 else aniso[1]
        s_ax, c_ax = np.moveaxis(s, ax, 0), np.moveaxis(cov, ax, 0)
        for flip in (False, True):
            s_v, c_v = (s_ax[::-1], c_ax[::-1]) if flip else (s_ax, c_ax)
            _cap_coverage(s_v, c_v, float(aniso[ax - 1]), (hz, float(other)))
    return cov


#: 3D parts of a thick-slice mask: 8-connected in-plane, across slices where pixels overlap
_ACROSS_OVERLAP = np.zeros((3, 3, 3), dtype=bool)
_ACROSS_OVERLAP[1] = True
_ACROSS_OVERLAP[0, 1, 1] = _ACROSS_OVERLAP[2, 1, 1] = True


def _shape_based_field(
    mask, box, grid: _Grid, smooth_vox: float, axis: int, subpixel: bool = False
) -> _Field:
    """Shape-based reconstruction of a mask across its thick ``axis`` (see :func:`_smoothed_field`).

    Each 3D part of the mask (connected in-plane, and across slices where its sections
    overlap) is reconstructed from its own sections (:func:`_interpolate_sections`) and the
    object is their union: a satellite nodule drawn beside the tumor, on slices where the
    tumor's sections lie 30 mm away, is interpolated towards its own (absent) sections, not
    towards the tumor's contours (which made it a lens a fraction of a millimetre thick that
    the anti-aliasing erased). One part (the usual case): one reconstruction on the crop;
    further parts on their own boxes.

    ``subpixel``: the sections' in-plane poles sub-pixel (:func:`_interpolate_sections`),
    and the refined stack anti-aliased from the partial coverage of its pixels,
    0.5 + d / w clipped (d the interpolated in-plane distance, w the pixel width), instead
    of from which refined pixel centres lie inside: the binary stack put the surface half a
    pixel beyond its last inside pixel again, wherever the interpolated contour lay (a
    12-15 mm ball on 1.2 x 1.2 x 3 mm slices was up to 0.5 mm off within 15 deg of an
    in-plane axis; with the poles alone 0.47, with both 0.22 mm). ``solid`` (the volumes'
    and classes' samples) stays the binary stack.
    """
    sp = grid.spacing_zyx
    inplane = [ax for ax in range(3) if ax != axis]
    h_in = float(min(sp[inplane]))
    sig = float(smooth_vox)
    pad_in = 3 + (math.ceil(3 * sig) if sig > 0 else 0)
    pads = [pad_in] * 3
    pads[axis] = 2
    crop, lo = _padded_crop(mask, box, pads)
    crop = np.moveaxis(crop, axis, 0)  # slices first
    aniso = tuple(float(sp[ax]) for ax in inplane)
    hz = float(sp[axis])
    f = int(max(1, math.ceil(hz / h_in)))
    sl_sig = SLICE_SMOOTH_VOX if sig > 0 else 0.0
    band = hz + SLICE_BAND_EXTRA_MM
    px = float(np.prod(aniso))
    parts, n_parts = ndimage.label(crop, structure=_ACROSS_OVERLAP)
    if n_parts <= 1:
        fine, d2, filled, one_slice = _interpolate_sections(
            crop, aniso, hz, f, sl_sig, band, subpixel
        )
        dep = _slice_departure(d2, filled, crop, px)
        ext = _unknown_extent(crop, one_slice, hz, px)
    else:
        sizes = np.bincount(parts.ravel())[1:]
        boxes = ndimage.find_objects(parts)
        order = np.argsort(-sizes, kind="stable")
        ext = None
        for c in order:
            if c == order[0]:  # the largest part on the whole crop: every sample has a value
                sub = (slice(None),) * 3
            else:
                bz, by, bx = boxes[c]
                sub = (
                    slice(max(bz.start - 2, 0), min(bz.stop + 2, crop.shape[0])),
                    slice(max(by.start - pad_in, 0), min(by.stop + pad_in, crop.shape[1])),
                    slice(max(bx.start - pad_in, 0), min(bx.stop + pad_in, crop.shape[2])),
                )
            part = (parts[sub] == c + 1).view(np.uint8)
            fine_c, d2_c, filled_c, one_c = _interpolate_sections(
                part, aniso, hz, f, sl_sig, band, subpixel
            )
            dep_c = _slice_departure(d2_c, filled_c, part, px)
            ext_c = _unknown_extent(part, one_c, hz, px)
            if c == order[0]:
                fine, d2, dep = fine_c, d2_c, dep_c
            else:
                rows = slice(sub[0].start * f, (sub[0].stop - 1) * f + 1)
                fsub = (rows, sub[1], sub[2])
                fine[fsub] = np.maximum(fine[fsub], fine_c)
                # the departure of the part whose sections are nearest
                nearer = d2_c > d2[sub]
                dep[sub] = np.where(nearer, dep_c, dep[sub])
                d2[sub] = np.maximum(d2[sub], d2_c)
            if ext_c is not None:
                if ext is None:
                    ext = np.zeros(crop.shape, dtype=np.float32)
                ext[sub] = np.maximum(ext[sub], ext_c)
    vol = _partial_volume_mm3(fine, aniso, hz / f)
    dep = np.moveaxis(dep, 0, axis)
    if ext is not None:
        ext = np.moveaxis(ext, 0, axis)
    fine = np.moveaxis(fine, 0, axis)
    step = np.ones(3)
    step[axis] = 1.0 / f
    if sig > 0:
        # the refined stack of interpolated contours, anti-aliased in 3D like a fine isotropic mask
        solid = fine >= 0
        sig3 = [FINE_SMOOTH_VOX] * 3
        sig3[axis] = FINE_SMOOTH_AXIAL_VOX
        if subpixel:
            cover = np.clip(fine * np.float32(1.0 / math.sqrt(px)) + np.float32(0.5), 0.0, 1.0)
        else:
            cover = solid.astype(np.float32)
        soft = filters.gaussian_filter(cover, sigma=sig3, mode="constant", truncate=3.0)
        fld = _Field(
            soft, lo, step, grid, 0.5, solid, tuple(sig3), vol, dep, ext, subpixel=subpixel
        )
        return _keep_lost_parts(fld, 1 if n_parts <= 1 else None)
    return _Field(
        np.ascontiguousarray(fine, dtype=np.float32),
        lo,
        step,
        grid,
        0.0,
        fine >= 0,
        None,
        vol,
        dep,
        ext,
    )


def _interpolate_sections(
    crop: np.ndarray, aniso, hz: float, f: int, sl_sig: float, band: float, poles: bool = False
):
    """In-plane distances of a part's sections, refined ``f`` times across the slices (axis 0).

    Each filled slice's in-plane signed distance (:func:`_slice_sdf`), interpolated
    linearly across slices plus the sagitta of the sections' mean radius (:func:`_sagitta`);
    beyond the last filled slices the caps (:func:`_cap_profile`), then falling off; where a
    branch ends between two filled slices, its own cap (:func:`_branch_ends`).

    Returns ``(fine, d2, filled, one_slice)``: the refined distances, the per-slice
    distances (every slice, the empty ones as the caps reach them), which slices are filled,
    and the ``(slice, pixels)`` seen on one slice only (see :func:`_one_slice_extent`).
    ``poles``: the sections' in-plane poles sub-pixel (:func:`_inplane_pole_coverage`; each
    section's contour then keeps the area of its coverages, not of its pixel count).
    """
    nsl = crop.shape[0]
    d2 = np.empty(crop.shape, dtype=np.float32)
    filled = np.array([bool(crop[k].any()) for k in range(nsl)])
    # the filled slices anti-aliased together (compiled, without the GIL: scipy's numbers)
    fk = np.flatnonzero(filled)
    softs = None
    if sl_sig > 0 and len(fk):
        if poles:
            stack = _inplane_pole_coverage(crop, aniso, hz)[fk]
        else:
            stack = crop[fk].astype(np.float32)
        softs = filters.gaussian_filter(stack, (0.0, sl_sig, sl_sig), mode="constant", truncate=3.0)
    px_area = float(np.prod(aniso))
    for n, k in enumerate(fk):
        area = None
        if poles and softs is not None:
            area = float(stack[n].sum(dtype=np.float64)) * px_area
        d2[k] = _slice_sdf(crop[k], aniso, sl_sig, band, None if softs is None else softs[n], area)
    n_fine = (nsl - 1) * f + 1
    pos = np.arange(n_fine) / f
    # empty slices: a cap between the last filled slice and the empty one (its profile is
    # modelled at every refined height, see _cap_profile), then falling off
    caps = []
    one_slice = []
    for k in np.flatnonzero(~filled):
        j = int(fk[np.argmin(np.abs(fk - k))])
        n = abs(j - k)
        if n == 1:
            # the filled slices before j, towards the object
            inner, inner2 = j - (k - j), j - 2 * (k - j)
            ok1 = 0 <= inner < nsl and filled[inner]
            ok2 = ok1 and 0 <= inner2 < nsl and filled[inner2]
            if not ok1:  # seen on slice j alone: the slab of that slice
                one_slice.append((j, crop[j] != 0))
            rows = np.flatnonzero((pos > min(j, k)) & (pos < max(j, k)))
            heights = np.append(np.abs(pos[rows] - j) * hz, hz)
            prof = _cap_profile(
                d2[j],
                d2[inner] if ok1 else None,
                crop[j],
                aniso,
                hz,
                heights,
                d2[inner2] if ok2 else None,
            )
            d2[k] = prof[-1]
            caps.append((rows, prof[:-1]))
        else:
            d2[k] = -np.abs(d2[j]) - (n - 1) * hz
    # refine across slices: each pixel's in-plane distance interpolated linearly, plus the
    # sagitta of the cross-sections' mean radius (see _sagitta); the caps' modelled profiles
    k0 = np.minimum(np.floor(pos).astype(int), nsl - 2)
    t = (pos - k0).astype(np.float32)[:, None, None]
    fine = d2[k0] * (1 - t) + d2[k0 + 1] * t
    fine += _sagitta(crop, filled, pos, float(np.prod(aniso)), hz)[:, None, None]
    for rows, prof in caps:
        fine[rows] = prof
    for rows, prof in _branch_ends(crop, filled, aniso, hz, pos, sl_sig, band, one_slice):
        fine[rows] = np.maximum(fine[rows], prof)
    return fine, d2, filled, one_slice


def _branch_ends(crop, filled, aniso, hz: float, pos, sig: float, band_mm: float, one_slice):
    """Caps of the branches of a part that end between two filled slices.

    The interpolation between two filled slices assumes that every piece of a section goes
    on to the next slice. A piece (8-connected component) of slice k that overlaps no
    foreground pixel of the filled slice k + s (one lobe of a bilobed lesion ending while
    the other goes on) ends in between: interpolated towards the other lobe's contours its
    distances cross zero a fraction of a millimetre from slice k, a lens the anti-aliasing
    erases. Such a piece gets its own cap towards k + s (:func:`_cap_profile` from its
    section alone and the pieces of slice k - s that overlap it; with none, the slab of its
    slice, appended to ``one_slice``). The caller takes the union (maximum) of the
    interpolation and these caps.

    Returns a list of ``(rows, profile)``: refined rows between the two slices and the
    piece's in-plane distances there.
    """
    if filters.pieces_go_on(crop, filled):  # no piece ends (the usual case; compiled, no GIL)
        return []
    nsl = len(filled)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = True  # the pieces of every slice, labelled at once
    lab, n = ndimage.label(crop, structure=in_plane)
    caps = []
    for s in (-1, 1):
        # pieces of slice k (k + s filled) that no foreground pixel of slice k + s overlaps
        cur = slice(max(-s, 0), nsl - max(s, 0))
        nxt = slice(max(s, 0), nsl - max(-s, 0))
        ending = np.zeros(n + 1, dtype=bool)
        has_next = np.zeros(nsl, dtype=bool)
        has_next[cur] = filled[nxt]
        ending[np.unique(lab[has_next])] = True
        ending[lab[cur][crop[nxt] != 0]] = False
        ending[0] = False
        for c in np.flatnonzero(ending):
            k = int(np.flatnonzero((lab == c).any(axis=(1, 2)))[0])
            nb, inner = k + s, k - s
            piece = lab[k] == c
            rows = np.flatnonzero((pos > min(k, nb)) & (pos < max(k, nb)))
            heights = np.abs(pos[rows] - k) * hz
            d_in = None
            if 0 <= inner < nsl and filled[inner]:
                over = np.zeros(n + 1, dtype=bool)
                over[lab[inner][piece]] = True
                over[0] = False
                if over.any():
                    d_in = _slice_sdf(over[lab[inner]].view(np.uint8), aniso, sig, band_mm)
            if d_in is None:
                one_slice.append((k, piece))
            d_piece = _slice_sdf(piece.view(np.uint8), aniso, sig, band_mm)
            caps.append((rows, _cap_profile(d_piece, d_in, piece, aniso, hz, heights)))
    return caps


def _one_slice_extent(shape, parts, hz: float) -> np.ndarray | None:
    """Half the unknown extent across the slices (mm) around the parts seen on one slice.

    A part seen on one slice of thickness ``hz`` reaches anywhere between 0 and ``2 hz``
    across the slices (more would fill a neighbour's centre); the reconstruction takes the
    slab of its slice (``hz``), uncertain by ``hz / 2`` either way. The value is spread over
    the part's pixels widened by two pixels in-plane, on its slice and the two neighbours
    (where its surface lies), for :func:`_surface_error_sd`. ``None`` without such parts.
    """
    if not parts:
        return None
    out = np.zeros(shape, dtype=np.float32)
    for k, pix in parts:
        wide = ndimage.binary_dilation(pix, iterations=2)
        for j in range(max(k - 1, 0), min(k + 2, shape[0])):
            out[j][wide] = 0.5 * hz
    return out


def _unknown_extent(crop: np.ndarray, one_slice, hz: float, px_area: float) -> np.ndarray | None:
    """How far (mm) a part's caps may lie from the reconstruction's, where the mask cannot tell.

    The parts seen on one slice (:func:`_one_slice_extent`) and a part on two slices only
    (:func:`_two_slice_extent`, slices along axis 0 of ``crop``), and the caps of a part on
    three slices or more as far as its end sections' pixels leave their areas open
    (:func:`_section_cap_extent`), the largest per sample. ``None`` without any.
    """
    found = [
        e
        for e in (
            _one_slice_extent(crop.shape, one_slice, hz),
            _two_slice_extent(crop, hz, px_area),
            _section_cap_extent(crop, hz, px_area),
        )
        if e is not None
    ]
    if not found:
        return None
    return found[0] if len(found) == 1 else np.maximum.reduce(found)


def _two_slice_extent(crop: np.ndarray, hz: float, px_area: float) -> np.ndarray | None:
    """How far (mm) the caps of a part on exactly two slices may lie from the modelled ones.

    With sections on two slices only, the squared mean radius q(s) = area / pi of the
    sections (a quadratic in the height s for any ellipsoid) is known at two heights, its
    curvature g = q'' / 2 is not: the caps (:func:`_cap_profile`) take a sphere's, g = -1.
    The mask allows any g <= g_max: the empty slices beyond are outside, q(-h) <= 0 and
    q(2 h) <= 0 with the two sections at 0 and h, i.e. g <= (q_a - 2 q_b) / (2 h^2) and
    g <= (q_b - 2 q_a) / (2 h^2); a more negative g (a flatter object, down to a disc) ends
    the cap closer to its slice, without bound. Beyond each of the two slices the cap's
    height (the root of q) lies anywhere from 0 to its height at g_max (at most ``hz``);
    the value is the larger distance from the modelled height (g = -1, at most ``hz``) to
    either end, as half the slice thickness is for a part seen on one slice. It is spread
    over the sections' pixels widened by two pixels in-plane, on each cap's side: its last
    slice and the empty one beyond. ``None`` unless the part lies on exactly two slices.
    """
    filled = np.flatnonzero(crop.reshape(len(crop), -1).any(axis=1))
    if len(filled) != 2 or filled[1] - filled[0] != 1:
        return None
    a, b = int(filled[0]), int(filled[1])
    q = {k: np.count_nonzero(crop[k]) * px_area / math.pi for k in (a, b)}
    g_max = min(q[a] - 2 * q[b], q[b] - 2 * q[a]) / (2 * hz * hz)

    wide = ndimage.binary_dilation((crop[a] != 0) | (crop[b] != 0), iterations=2)
    out = np.zeros(crop.shape, dtype=np.float32)
    for last, inner, beyond in ((a, b, a - 1), (b, a, b + 1)):
        model = _cap_height(q[last], q[inner], -1.0, hz)
        most = _cap_height(q[last], q[inner], g_max, hz)
        value = max(model, most - model)
        for j in (last, beyond):
            if 0 <= j < len(crop):
                out[j][wide] = value
    return out


def _cap_height(q_last: float, q_inner: float, g: float, hz: float) -> float:
    """Height (mm, at most ``hz``) beyond its last slice where a cap's modelled section ends.

    The squared mean radius q(s) = q_last + b s + g s^2 of the cap model (:func:`_cap_profile`),
    s the height above the last slice, b its slope there (q_inner one slice inside), g < 0.
    """
    slope = (q_last - q_inner + g * hz * hz) / hz
    return min((-slope - math.sqrt(slope * slope - 4 * g * q_last)) / (2 * g), hz)


#: standard deviations of a section's pixel count that its area range spans either way
SECTION_AREA_SDS = 2.0


def _section_q_range(section: np.ndarray, px_area: float) -> tuple[float, float]:
    """Return the range of a section's squared mean radius q = area / pi (mm^2) by its pixels.

    Each pixel the contour crosses counts whole or not at all: off by up to half its area
    either way, uniformly (variance w^4 / 12, w = sqrt(px_area)), and there are about P / w of
    them (P the contour's length), independently placed: the count's area is off by
    sd sqrt(P w^3 / 12) (on 400 random ellipses of semi-axes 1.2-6 mm at 0.8 mm pixels the
    measured sd is 0.88-0.99 of it; centred discs, whose pixels come in symmetric groups,
    within 2.1 of it). P is the pixels' staircase length times pi / 4 (Cauchy-Crofton). The
    range is the count's q plus or minus SECTION_AREA_SDS of those sd.
    """
    w = math.sqrt(px_area)
    sec = np.pad(section.astype(bool), 1)
    edges = np.count_nonzero(sec[1:] != sec[:-1]) + np.count_nonzero(sec[:, 1:] != sec[:, :-1])
    perimeter = math.pi / 4 * edges * w
    q = np.count_nonzero(section) * px_area / math.pi
    sd = math.sqrt(perimeter * w**3 / 12) / math.pi
    return max(q - SECTION_AREA_SDS * sd, 0.0), q + SECTION_AREA_SDS * sd


def _section_cap_extent(crop: np.ndarray, hz: float, px_area: float) -> np.ndarray | None:
    """How far (mm) the caps of a part on three slices or more may lie from the modelled ones.

    Each cap (:func:`_cap_profile`) ends where its section model q(s) reaches 0, q fitted to
    the squared mean radii of the last three sections (their pixel counts): exact for an
    ellipsoid, for exact areas. A few-pixel section's count is off by a pixel ring's
    fraction (a disc of 13 pixels by 1-2), and the model's curvature (the second difference
    of three q over 2 hz^2) and the cap's height move with it: a 3 x 3 x 6 mm ellipsoid on
    three 5 mm slices ended 0.18 mm short, a 4 x 4 x 6.5 mm one 0.53 mm beyond. Each of the
    three sections' q lies in the range its pixel count leaves open (:func:`_section_q_range`);
    the cap's height over the corners of that box (the curvature taken as the model takes
    it: a sphere's where the three do not curve inwards) spans [s_lo, s_hi]: the value is the
    larger distance from the model's height to either end (as :func:`_two_slice_extent` does
    for two slices), spread over the sections' pixels widened by two pixels, on each cap's
    last slice and the empty one beyond. ``None`` unless the part lies on three consecutive
    slices or more.
    """
    filled = np.flatnonzero(crop.reshape(len(crop), -1).any(axis=1))
    if len(filled) < 3 or filled[-1] - filled[0] != len(filled) - 1:
        return None
    out = np.zeros(crop.shape, dtype=np.float32)
    for last, step in ((int(filled[0]), 1), (int(filled[-1]), -1)):
        ks = (last, last + step, last + 2 * step)
        counts = [np.count_nonzero(crop[k]) * px_area / math.pi for k in ks]
        ranges = [_section_q_range(crop[k] != 0, px_area) for k in ks]

        def height(q1: float, q0: float, qm: float) -> float:
            g = (qm - 2 * q0 + q1) / (2 * hz * hz)
            return _cap_height(q1, q0, g if g < 0 else -1.0, hz)

        model = height(*counts)
        corners = [height(a, b, c) for a in ranges[0] for b in ranges[1] for c in ranges[2]]
        value = max(model - min(corners), max(corners) - model, 0.0)
        wide = ndimage.binary_dilation(crop[last] != 0, iterations=2)
        for j in (last, last - step):
            if 0 <= j < len(crop):
                out[j][wide] = np.maximum(out[j][wide], value)
    return out


def _slice_departure(
    d2: np.ndarray, filled: np.ndarray, crop: np.ndarray, px_area: float
) -> np.ndarray:
    """Per pixel and slice, how far the sections depart from what the reconstruction assumes (mm).

    Between slices the reconstruction moves each pixel's in-plane distance d linearly, plus
    the curvature of the sections' mean radius rho (_sagitta): it assumes e = d - rho linear
    in the height, as it is (up to pixel noise) for any ellipsoid. Its second difference over
    three filled slices, divided by 8, is how far a parabola through them departs from the
    chord between two of them: a bump of an irregular lesion that crests between two slices.
    Slices at the end of a run take the value of their neighbour within it (caps); 0 where
    a run has fewer than three slices.
    """
    nsl = len(filled)
    q = crop.reshape(nsl, -1).sum(axis=1) * px_area / math.pi
    out = np.zeros(d2.shape, dtype=np.float32)
    inner = np.flatnonzero(filled[1:-1] & filled[:-2] & filled[2:]) + 1
    for k in inner:
        e = (d2[k - 1] - 2 * d2[k] + d2[k + 1]) - (
            math.sqrt(q[k - 1]) - 2 * math.sqrt(q[k]) + math.sqrt(q[k + 1])
        )
        out[k] = np.abs(e) / 8
    has = np.zeros(nsl, dtype=bool)
    has[inner] = True
    for k in np.flatnonzero(filled & ~has):  # run ends (and the empty slice beyond: caps)
        for nb in (k - 1, k + 1):
            if 0 <= nb < nsl and has[nb]:
                out[k] = np.maximum(out[k], out[nb])
    for k in np.flatnonzero(~filled):
        for nb in (k - 1, k + 1):
            if 0 <= nb < nsl and filled[nb]:
                out[k] = np.maximum(out[k], out[nb])
    return out


def _partial_volume_mm3(fine: np.ndarray, aniso, dz: float) -> float:
    """Volume (mm^3) enclosed by the zero level of in-plane distances sampled every ``dz`` mm.

    Each sample counts the fraction of its pixel on the inside, 0.5 + d / w clipped to
    [0, 1] (w the pixel width), not 0 or 1: counting pixel centres inside the interpolated
    contours scatters by a few pixels per section (the lattice noise of a disc), the same for
    every refined section of one case (up to +2 % for a 6 mm ball on 3 mm slices).
    """
    w = math.sqrt(float(np.prod(aniso)))
    cover = np.clip(0.5 + fine * np.float32(1.0 / w), 0.0, 1.0)
    area = cover.reshape(len(fine), -1).sum(axis=1, dtype=np.float64) * float(np.prod(aniso))
    # the ramp overstates a section: over a disc of radius rho >= w / 2 it integrates to
    # pi rho^2 + pi w^2 / 12 (in general (w^2 / 12) times the contour's total turning, 2 pi for
    # one closed contour), to pi L^3 / (3 w) with L = rho + w / 2 below that: 0.38 mm^2 a
    # section for 1.2 mm pixels, +0.45 % on a 6.4 mm ball (rho: the section's largest
    # in-plane distance; one contour per section assumed)
    rho = fine.reshape(len(fine), -1).max(axis=1).astype(np.float64)
    small = np.clip(rho + w / 2, 0.0, None)
    excess = np.where(
        rho >= w / 2,
        math.pi * w * w / 12,
        math.pi * small**3 / (3 * w) - math.pi * np.clip(rho, 0.0, None) ** 2,
    )
    return float(np.sum(area - excess)) * dz


#: slices on each side of an interval whose section areas fit its curvature (see _sagitta)
CURVATURE_WINDOW = 2


def _section_curvature(q: np.ndarray, k: int, j: int, i: int, hz: float) -> float:
    """Curvature g = q'' / 2 (per mm^2) of the squared mean radius q near slice interval i.

    A least-squares quadratic of q over the filled slices i - CURVATURE_WINDOW ..
    i + 1 + CURVATURE_WINDOW within the run k..j (exact for an ellipsoid; pixel-count noise of
    the areas averages out instead of being interpolated through); with two slices, a
    sphere's curvature (g = -1).
    """
    lo, hi = max(k, i - CURVATURE_WINDOW), min(j, i + 1 + CURVATURE_WINDOW)
    if hi - lo < 2:
        return -1.0
    z = (np.arange(lo, hi + 1) - i) * hz
    return float(np.polyfit(z, q[lo : hi + 1], 2)[0])


def _sagitta(
    crop: np.ndarray, filled: np.ndarray, pos: np.ndarray, px_area: float, hz: float
) -> np.ndarray:
    """Outward offset (mm) that turns linear interpolation between slices into a curved profile.

    Interpolating in-plane distances linearly between two slices moves a curved object's
    surface onto the chord between the slice contours: a sphere of radius R sliced every h
    shrinks by up to h^2 / (8 R) between slices (0.3 mm for R = 10 mm, h = 5 mm), most on its
    shoulders. The cross-sections' squared mean radius q = area / pi is smooth in the height
    (a quadratic for any ellipsoid in any orientation): between two slices it is modelled as
    the linear interpolation of their q plus the curvature of the sections around them
    (_section_curvature; exact for an ellipsoid; a cubic spline through the q themselves
    amplified their pixel-count noise: +2 % volume for a 6 mm ball on 3 mm slices). Its mean
    radius, less the linear interpolation of the mean radius, is added to every pixel's
    distance (an in-plane offset of the whole contour). Zero outside runs of filled slices.
    """
    nsl = len(filled)
    out = np.zeros(len(pos), dtype=np.float32)
    q = crop.reshape(nsl, -1).sum(axis=1) * px_area / math.pi
    rho = np.sqrt(q)
    k = 0
    while k < nsl:
        if not filled[k]:
            k += 1
            continue
        j = k
        while j + 1 < nsl and filled[j + 1]:
            j += 1
        for i in range(k, j):
            sel = (pos > i) & (pos < i + 1)
            tt = pos[sel] - i
            g = _section_curvature(q, k, j, i, hz)
            q_s = q[i] * (1 - tt) + q[i + 1] * tt - g * hz * hz * tt * (1 - tt)
            rho_lin = rho[i] * (1 - tt) + rho[i + 1] * tt
            out[sel] = np.sqrt(np.clip(q_s, 0, None)) - rho_lin
        k = j + 1
    return out


def _slice_sdf(
    sl: np.ndarray,
    aniso,
    sig: float,
    band_mm: float = 8.0,
    soft: np.ndarray | None = None,
    area_mm2: float | None = None,
) -> np.ndarray:
    """Sub-pixel in-plane signed distance (mm, positive inside) of one binary slice.

    The slice is anti-aliased by a Gaussian of ``sig`` pixels (``soft``: already done); its
    0.5 contour (marching squares) is the boundary, and every pixel gets its exact distance
    to those segments. The contour is moved to keep the section's area: ``area_mm2``, or
    the pixel count's.
    """
    if soft is None:
        soft = (
            ndimage.gaussian_filter(sl.astype(np.float32), sigma=sig, mode="constant", truncate=3.0)
            if sig > 0
            else sl.astype(np.float32)
        )
    # the 0.5 contours (compiled, without the GIL: skimage's find_contours' points and order)
    pts, lengths = filters.find_contours(soft, 0.5)
    sy, sx = (float(a) for a in aniso)
    if not len(lengths) and sig > 0:  # a few pixels vanish under the blur: their own contour
        return _slice_sdf(sl, aniso, 0.0, band_mm)
    if not len(lengths):
        return np.where(sl != 0, 1.0, -1.0).astype(np.float32) * float(min(sy, sx))
    # each contour's segments (consecutive points, in mm), their midpoints, lengths and cross
    # products (compiled, without the GIL: the numbers of the array form)
    a, b, mid, seg_len, cross = filters.contour_segments(pts, lengths, (sy, sx))
    # area-preserving offset: the blur moves a curved contour inwards (by sigma^2 / (2 rho) for
    # a circle) and marching squares cuts the staircase's corners; the pixel count is the
    # unbiased area of the section, so the contour is moved outwards by the area it lost over
    # its length (at most half a pixel)
    perimeter = float(seg_len.sum())
    area = abs(0.5 * float(np.sum(cross)))
    offset = 0.0
    if perimeter > 0:
        offset = float(
            np.clip(
                ((np.count_nonzero(sl) * sy * sx if area_mm2 is None else area_mm2) - area)
                / perimeter,
                -0.5 * min(sy, sx),
                0.5 * min(sy, sx),
            )
        )
    # exact distances in a band around the contour; farther out, the pixel-centre EDT (its
    # error there, a fraction of a pixel, no longer moves where slices are interpolated)
    # (the inside test, both sides' distances and the band in one compiled pass without the
    # GIL: scipy's distances, see slice_edt)
    band = filters.slice_band(soft, (sy, sx), band_mm)
    if band is None:  # every pixel on one side
        inside = soft >= 0.5
        half = 0.25 * (sy + sx)
        d_in = ndimage.distance_transform_edt(inside, sampling=(sy, sx))
        d_out = ndimage.distance_transform_edt(~inside, sampling=(sy, sx))
        approx = np.where(inside, d_in - half, -(d_out - half))
        out = np.ascontiguousarray(approx, dtype=np.float32)
        where = np.flatnonzero(np.abs(approx) <= band_mm)
        p = np.stack(np.unravel_index(where, approx.shape), axis=1) * (sy, sx)
    else:
        out, p, where = band
    if not len(where):
        return out + np.float32(offset)
    tree = cKDTree(mid)
    k = int(min(6, len(a)))
    _d, idx = tree.query(p, k=k)
    idx = idx.reshape(len(p), k)
    # distance to the nearest candidate segment (compiled: the numbers of the vectorised form),
    # with the side's sign, every pixel then moved by the offset (compiled)
    d = candidate_segment_distance(p, a, b, idx)
    return filters.signed_band(out, soft, where, d, offset)


def _cap_profile(
    d_last: np.ndarray,
    d_inner: np.ndarray | None,
    sl_last: np.ndarray,
    aniso,
    hz: float,
    heights: np.ndarray,
    d_inner2: np.ndarray | None = None,
) -> np.ndarray:
    """In-plane distances at ``heights`` (mm, in (0, hz]) beyond the last filled slice (a cap).

    The end of the object lies between the last filled slice and the empty one. The squared
    equivalent-area radius q(s) = area / pi of the cross-sections is modelled as a quadratic
    in the height s above the last slice, fitted to the last three filled slices (exact for
    an ellipsoid in any orientation; with two slices, or sections that do not curve inwards,
    a sphere's curvature: q = R^2 - (s - c)^2). Each pixel follows the model's mean radius
    sqrt(q(s)) from its own in-plane distance, plus its own drift beyond the uniform
    shrinking seen between the last two slices (a tilted object's sections move sideways):
    pixels just outside the last section are inside where the model still widens. The empty
    slice (s = hz) is outside: where the model says otherwise, the profile is bent down to
    reach it. With one filled slice alone, the slab of that slice: every pixel keeps its
    in-plane distance up to hz / 2 (half of it less a quarter pixel at hz / 2 exactly, where
    a refined section counts half), beyond which every pixel is outside by half a pixel at
    least (a linear profile let the ring of pixels just outside the section, and the edge
    pixels inside it, count beyond the slab: +16 % volume for a 4 mm disc on one 3 mm slice).
    Returns ``(len(heights),) + d_last.shape``, float32.
    """
    dl = d_last.astype(np.float64)
    h = np.asarray(heights, dtype=np.float64)[:, None, None]
    if d_inner is None:
        w = float(min(aniso))
        beyond = -np.maximum(np.abs(dl), 0.5 * w)
        half = np.isclose(h, 0.5 * hz)
        prof = np.where(half, 0.5 * dl - 0.25 * w, np.where(h < 0.5 * hz, dl, beyond))
        return prof.astype(np.float32)
    px = float(np.prod(aniso))
    q1 = np.count_nonzero(sl_last) * px / math.pi
    q0 = np.count_nonzero(d_inner > 0) * px / math.pi
    g = -1.0  # a sphere's curvature: round objects end in round caps, not in prisms
    if d_inner2 is not None:
        qm = np.count_nonzero(d_inner2 > 0) * px / math.pi
        g3 = (qm - 2 * q0 + q1) / (2 * hz * hz)
        if g3 < 0:
            g = g3
    b = (q1 - q0 + g * hz * hz) / hz  # dq/ds at the last slice
    qs = q1 + b * h + g * h * h
    rho = np.sign(qs) * np.sqrt(np.abs(qs)) - math.sqrt(q1)
    tau = (dl - d_inner) - (math.sqrt(q1) - math.sqrt(q0))
    prof = dl + rho + tau * (h / hz)
    # the empty slice is outside (by a tenth of a pixel at least)
    q_end = q1 + b * hz + g * hz * hz
    rho_end = math.copysign(math.sqrt(abs(q_end)), q_end) - math.sqrt(q1)
    excess = np.maximum(dl + rho_end + tau + 0.1 * min(aniso), 0.0)
    prof -= excess * (h / hz) ** 2
    return prof.astype(np.float32)


@dataclass
class Mesh:
    """A triangle surface in LPS mm.

    Parameters
    ----------
    verts : numpy.ndarray
        ``(n, 3)`` vertex positions, LPS ``(x, y, z)`` in mm.
    faces : numpy.ndarray
        ``(m, 3)`` integer vertex indices of the triangles, outward-oriented.
    shift_per_variance : numpy.ndarray or None, optional
        ``(n, 3)`` curvature correction per unit of blur variance at each vertex (LPS
        vectors in 1/mm, see ``_surface``); None when the surface was not corrected.
    kept : numpy.ndarray or None, optional
        ``(n,)`` bool: vertices of parts too thin for the anti-aliasing, whose surface is
        the unblurred one (see ``_keep_lost_parts``); None when there are none.
    """

    verts: np.ndarray  # (n, 3) LPS
    faces: np.ndarray  # (m, 3) int
    shift_per_variance: np.ndarray | None = None
    kept: np.ndarray | None = None

    def face_areas(self) -> np.ndarray:
        """Return the area of each triangle.

        Returns
        -------
        numpy.ndarray
            ``(m,)`` areas in mm^2.
        """
        a, b, c = (self.verts[self.faces[:, i]] for i in range(3))
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)

    def volume_mm3(self) -> float:
        """Return the enclosed volume (divergence theorem; the surface is closed).

        Returns
        -------
        float
            The volume in mm^3.
        """
        return abs(_signed_volume_x6(self)) / 6.0

    def vertex_areas(self) -> np.ndarray:
        """Return the area owned by each vertex: a third of each triangle it belongs to.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` areas in mm^2.
        """
        fa = self.face_areas() / 3.0
        return np.bincount(self.faces.ravel(), np.repeat(fa, 3), minlength=len(self.verts))

    def vertex_normals(self) -> np.ndarray:
        """Return each vertex's unit normal (area-weighted sum of its triangles' normals).

        Returns
        -------
        numpy.ndarray
            ``(n, 3)`` outward unit normals (LPS).
        """
        a, b, c = (self.verts[self.faces[:, i]] for i in range(3))
        return _vertex_normals(self.faces, np.cross(b - a, c - a), len(self.verts))

    def vertex_normal(self, i: int) -> np.ndarray:
        """Return one vertex's unit normal: ``vertex_normals()[i]``, from its own triangles.

        Parameters
        ----------
        i : int
            The vertex.

        Returns
        -------
        numpy.ndarray
            ``(3,)`` outward unit normal (LPS), the same numbers as ``vertex_normals()[i]``.
        """
        faces = self.faces[np.any(self.faces == i, axis=1)]  # (in their order: the same sums)
        a, b, c = (self.verts[faces[:, k]] for k in range(3))
        return _vertex_normals(faces, np.cross(b - a, c - a), len(self.verts))[i]

    def transformed(self, A: np.ndarray, b: np.ndarray) -> Mesh:
        """Return the mesh with every vertex mapped to ``A @ v + b``.

        Parameters
        ----------
        A : numpy.ndarray
            ``(3, 3)`` matrix.
        b : numpy.ndarray
            ``(3,)`` offset in mm.

        Returns
        -------
        Mesh
            A new mesh with the same faces.
        """
        return Mesh(_affine(self.verts, A, b), self.faces)


def _blur_variance_mm2(fld: _Field) -> float:
    """Mean variance (mm^2) of the field's anti-aliasing blur over the axes (as _blur_shift)."""
    return float(np.mean((np.asarray(fld.blur) * fld.sample_spacing_mm()) ** 2))


def _vertex_normals(faces: np.ndarray, fn: np.ndarray, n_verts: int) -> np.ndarray:
    """Return unit vertex normals from the area-weighted face normals ``fn`` (m, 3)."""
    idx = faces.ravel()
    out = np.stack(
        [np.bincount(idx, np.repeat(fn[:, ax], 3), minlength=n_verts) for ax in range(3)], 1
    )
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(n > 0, n, 1.0)


def _surface(fld: _Field, shift_from: Mesh | None = None) -> Mesh:
    """Extract the field's level surface (marching cubes), corrected for the blur's shrinkage.

    The correction (_blur_shift) is ``sigma^2 / 2`` times the curvature along the normal. With
    ``shift_from``, a corrected surface of the same object under another blur, each vertex
    takes the correction per unit variance of that surface's nearest vertex instead (the
    curvature and normal of the same object, measured on fields blurred 3-4 samples further:
    a fraction of a sample apart, the same numbers to about 1e-4 mm), scaled to this field's
    blur and clipped as _blur_shift clips: no curvature fields of its own.
    """
    from skimage.measure import marching_cubes

    if fld.values.max() <= fld.level:
        raise AblationError("mask too thin to have a surface")
    verts, faces, _n, _v = marching_cubes(fld.values, level=fld.level, allow_degenerate=False)
    per_var = None
    kept = None  # vertices of parts the blur erased: their surface is the unblurred one
    if fld.kept is not None:
        kept = ndimage.binary_dilation(fld.kept)[tuple(np.floor(verts).astype(np.int64).T)]
    if fld.blur is not None and CURVATURE_CORRECTION:
        sig_mm2 = _blur_variance_mm2(fld)
        if shift_from is not None and shift_from.shift_per_variance is not None:
            verts = fld.to_lps(verts)
            _d, near = cKDTree(shift_from.verts).query(verts)
            per_var = shift_from.shift_per_variance[near]
            if kept is not None:
                per_var = np.where(kept[:, None], 0.0, per_var)
            shift = per_var * sig_mm2
            n = np.linalg.norm(shift, axis=1, keepdims=True)
            lim = 0.5 * math.sqrt(sig_mm2)
            verts = verts + shift * np.minimum(1.0, lim / np.maximum(n, 1e-30))
        else:
            shift_idx = _blur_shift(fld, verts)
            if kept is not None:
                shift_idx[kept] = 0.0
            verts = verts + shift_idx
            # the same displacement in LPS mm, per unit of the blur's variance
            per_var = _affine(shift_idx * fld.step, fld.grid.M) / sig_mm2
            verts = fld.to_lps(verts)
    else:
        verts = fld.to_lps(verts)
    # marching cubes orients faces by the gradient, the same way everywhere; make them point
    # outwards: a closed surface oriented outwards encloses a positive signed volume
    mesh = Mesh(verts, faces.astype(np.int64), per_var, kept)
    if _signed_volume_x6(mesh) < 0:
        mesh.faces = mesh.faces[:, ::-1].copy()
    return mesh


def _signed_volume_x6(mesh: Mesh) -> float:
    """Six times the signed volume of a closed mesh (positive when its faces point outwards)."""
    a, b, c = (mesh.verts[mesh.faces[:, i]] for i in range(3))
    cx = b[:, 1] * c[:, 2] - b[:, 2] * c[:, 1]
    cy = b[:, 2] * c[:, 0] - b[:, 0] * c[:, 2]
    cz = b[:, 0] * c[:, 1] - b[:, 1] * c[:, 0]
    return float(np.sum(a[:, 0] * cx + a[:, 1] * cy + a[:, 2] * cz))


#: undo the curvature shrinkage of the anti-aliasing blur (see :func:`_blur_shift`)
CURVATURE_CORRECTION = True
#: extra blurs (samples) of the two fields the curvature is measured on: smooth, low-noise
#: estimates, extrapolated linearly in the blur's variance to the blur actually applied
#: (across thick slices only the first is used)
CURVATURE_EXTRA_BLURS = (3.0, 4.0)


def _blur_shift(fld: _Field, verts_idx: np.ndarray) -> np.ndarray:
    """Sample-index displacement of surface vertices that undoes the Gaussian's shrinkage.

    The 0.5 level of a blurred solid moves inwards by about ``sigma^2 (k1 + k2) / 2`` (mean
    curvature times sigma squared: a ball of radius R shrinks by sigma^2 / R; concave parts
    grow). The curvature sum is the divergence of the unit normal of the blurred field,
    evaluated at the vertices; each vertex moves back along the normal, by at most half a
    sigma. Measured on the field itself the curvature is noisy (the voxel steps); measured on
    a field blurred further it is smooth but biased: a tip of a few millimetres' radius
    rounds off (a 3 mm tip on a 1 mm grid: 0.30 of its 0.49 mm restored). So it is measured on
    two further blurred fields (``CURVATURE_EXTRA_BLURS``) and extrapolated linearly in the
    total variance back to the blur actually applied: the noise of the wider blurs, most of
    the tip's bias removed. Only on near-isotropic grids: the refined reconstruction across
    thick slices is smooth already, and there the extrapolation added noise (worst errors up
    to 0.02 mm higher on 3 and 5 mm slices).
    """
    sp = fld.sample_spacing_mm()
    sig_mm2 = float(np.mean((np.asarray(fld.blur) * sp) ** 2))
    ea, eb = CURVATURE_EXTRA_BLURS
    fa = filters.gaussian_filter(fld.values, ea) if ea > 0 else fld.values
    kappa, n_in = _curvature_at(fa, sp, verts_idx)
    if eb > ea and np.all(fld.step == 1):  # near-isotropic grids only (see the docstring)
        k_b, _ = _curvature_at(filters.gaussian_filter(fa, math.sqrt(eb**2 - ea**2)), sp, verts_idx)
        # from total variances s0 + ea^2 and s0 + eb^2 (samples^2) back to s0
        kappa = kappa + (kappa - k_b) * (ea**2 / (eb**2 - ea**2))
    shift_mm = np.clip(0.5 * sig_mm2 * kappa, -0.5 * math.sqrt(sig_mm2), 0.5 * math.sqrt(sig_mm2))
    # outwards (against the inward normal) by shift_mm, expressed in sample indices
    return -(n_in * shift_mm[:, None]) / sp[None, :]


def _curvature_at(
    f: np.ndarray, sp: np.ndarray, verts_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Curvature sum ``k1 + k2`` (1/mm) of the level sets of ``f`` and their inward normal.

    Trilinearly interpolated at marching-cubes vertices ``verts_idx`` (sample indices).
    """
    # np.gradient of f, its unit normal and the normal's divergence, evaluated only at the
    # corners of the vertices' cells that carry weight (and the neighbours their differences
    # need), in compiled code without the GIL: the same numbers as on the whole crop. A
    # marching-cubes vertex lies on a cell edge (one fractional coordinate), so only the
    # edge's two ends have non-zero trilinear weights; the other six add exact zeros.
    kappa, n_sum = filters.curvature_sums(f, sp, verts_idx)
    kappa = kappa.astype(np.float32)
    n_in = n_sum.astype(np.float32)
    n_in /= np.linalg.norm(n_in, axis=1, keepdims=True) + 1e-12
    return kappa, n_in


class MeshDistance:
    """Exact unsigned distance from points to a triangle mesh.

    The closest point over all triangles, found by a bounding-volume hierarchy searched in
    compiled code (:class:`~napari_ablation.core.mesh_search.TriangleBVH`): a guess of the
    closest surface point (e.g. a projection along the gradient of an approximate distance
    field) gives a first bound, then every triangle whose box lies closer is examined.

    Parameters
    ----------
    mesh : Mesh
        The surface distances are measured to.
    """

    def __init__(self, mesh: Mesh):
        self.mesh = mesh
        f = mesh.faces
        self.a, self.b, self.c = mesh.verts[f[:, 0]], mesh.verts[f[:, 1]], mesh.verts[f[:, 2]]
        # per triangle: edges from a and their dot products (the Voronoi-region tests of a
        # point need only its two dot products with the edges)
        self.ab, self.ac = self.b - self.a, self.c - self.a
        self.abab = np.einsum("ij,ij->i", self.ab, self.ab)
        self.acac = np.einsum("ij,ij->i", self.ac, self.ac)
        self.abac = np.einsum("ij,ij->i", self.ab, self.ac)
        self._bvh = TriangleBVH(self.a, self.ab, self.ac, self.abab, self.acac, self.abac)

    def query(
        self, pts: np.ndarray, guess: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the distance and the closest surface point of each point.

        Parameters
        ----------
        pts : numpy.ndarray
            ``(n, 3)`` points, LPS mm.
        guess : numpy.ndarray, optional
            ``(n, 3)`` first guesses of the closest surface points (default: the points);
            only the speed depends on them.

        Returns
        -------
        dist : numpy.ndarray
            ``(n,)`` unsigned distances in mm.
        closest : numpy.ndarray
            ``(n, 3)`` closest surface points.
        """
        d, q, _f = self.query_faces(pts, guess)
        return d, q

    def query_faces(
        self,
        pts: np.ndarray,
        guess: np.ndarray | None = None,
        tasks: _Tasks | None = None,
    ):
        """Return the distance, closest surface point and closest triangle of each point.

        Parameters
        ----------
        pts : numpy.ndarray
            ``(n, 3)`` points, LPS mm.
        guess : numpy.ndarray, optional
            ``(n, 3)`` first guesses of the closest surface points (default: the points);
            only the speed depends on them.
        tasks : _Tasks, optional
            With these, the second half of the points on a worker (each point's search is
            its own, and the compiled search releases the GIL: the same numbers).

        Returns
        -------
        dist : numpy.ndarray
            ``(n,)`` unsigned distances in mm.
        closest : numpy.ndarray
            ``(n, 3)`` closest surface points.
        face : numpy.ndarray
            ``(n,)`` index of the closest triangle (the first found among tied ones).
        """
        pts = np.ascontiguousarray(pts, dtype=float).reshape(-1, 3)
        guess = pts if guess is None else np.ascontiguousarray(guess, dtype=float)
        half = len(pts) // 2 if tasks is not None else len(pts)
        if half == len(pts) or half == 0:
            return self._bvh.query(pts, guess)
        rest = tasks.submit(self._bvh.query, pts[half:], guess[half:])
        first = self._bvh.query(pts[:half], guess[:half])
        second = rest.result()
        return tuple(np.concatenate([x, y]) for x, y in zip(first, second))

    def bulge(self, closest: np.ndarray, face: np.ndarray) -> np.ndarray:
        """How far the smooth surface lies beyond each closest point's flat triangle (mm).

        The triangles are chords of a curved surface: on a convex part they lie inside it,
        by L^2 / (8 R) at the middle of an edge of length L on a radius R (0.02 mm for 1 mm
        edges on a 6 mm ball). The surface through the three vertices with their normals is
        taken as the quadratic patch h(b) = sum over edges of b_i b_j (P_j - P_i).(N_j - N_i)
        / 2 above the triangle (b the barycentric coordinates; exact for a paraboloid, zero
        at the vertices, continuous across edges): positive where the surface bulges outward.

        Parameters
        ----------
        closest : numpy.ndarray
            ``(n, 3)`` closest surface points (from :meth:`query_faces`).
        face : numpy.ndarray
            ``(n,)`` their closest triangles.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` outward heights of the smooth surface above the triangles, mm.
        """
        if not hasattr(self, "_bulge"):
            if not hasattr(self, "_vn"):
                self._fn = np.cross(self.ab, self.ac)
                self._vn = _vertex_normals(self.mesh.faces, self._fn, len(self.mesh.verts))
            f, n = self.mesh.faces, self._vn
            na, nb, nc = n[f[:, 0]], n[f[:, 1]], n[f[:, 2]]
            bc = self.c - self.b
            self._bulge = 0.5 * np.stack(
                [
                    np.einsum("ij,ij->i", self.ab, nb - na),
                    np.einsum("ij,ij->i", bc, nc - nb),
                    np.einsum("ij,ij->i", -self.ac, na - nc),
                ],
                axis=1,
            )
        face = np.asarray(face, dtype=np.int64)
        v = np.asarray(closest, dtype=float) - self.a[face]
        d1 = np.einsum("ij,ij->i", v, self.ab[face])
        d2 = np.einsum("ij,ij->i", v, self.ac[face])
        abab, acac, abac = self.abab[face], self.acac[face], self.abac[face]
        den = np.maximum(abab * acac - abac * abac, 1e-30)
        wb = np.clip((acac * d1 - abac * d2) / den, 0.0, 1.0)
        wc = np.clip((abab * d2 - abac * d1) / den, 0.0, 1.0)
        wa = np.clip(1.0 - wb - wc, 0.0, 1.0)
        c = self._bulge[face]
        return wa * wb * c[:, 0] + wb * wc * c[:, 1] + wc * wa * c[:, 2]

    def outside(self, pts: np.ndarray, closest: np.ndarray, face: np.ndarray) -> np.ndarray:
        """Whether each point lies outside the surface, judged by the surface itself.

        The offset from the closest point is compared with the outward normal there (the
        vertex normals of the closest triangle, interpolated barycentrically): the same
        surface the distance was measured to, so sign and distance agree to the last digit.

        Parameters
        ----------
        pts : numpy.ndarray
            ``(n, 3)`` points, LPS mm.
        closest : numpy.ndarray
            ``(n, 3)`` their closest surface points (from :meth:`query_faces`).
        face : numpy.ndarray
            ``(n,)`` their closest triangles (from :meth:`query_faces`).

        Returns
        -------
        numpy.ndarray
            ``(n,)`` booleans, True outside.
        """
        if not hasattr(self, "_vn"):
            # face normals from the stored edges (the same numbers as Mesh.vertex_normals's)
            self._fn = np.cross(self.ab, self.ac)
            self._vn = _vertex_normals(self.mesh.faces, self._fn, len(self.mesh.verts))
        return outside_by_normals(
            pts, closest, face, self.mesh.faces, self.mesh.verts, self._fn, self._vn
        )


class _Guide:
    """Approximate signed distance of a field's surface, to project points onto it.

    The EDT of the field's inside samples (positive inside), half a sample moved outwards.
    """

    def __init__(self, fld: _Field, threads: int = 1):
        import edt

        inside = fld.values >= fld.level
        J = fld.grid.M * fld.step[None, :]  # sample index -> LPS
        spacing = np.linalg.norm(J, axis=0)
        #: bound on |approximate - exact| distance (voxel-centre EDT, half-voxel offsets)
        self.tol = float(np.linalg.norm(spacing)) + 0.5
        an = tuple(float(v) for v in spacing)
        half = 0.5 * float(
            np.mean(spacing)
        )  # the surface lies about half a sample beyond the last centre
        # one pass for both sides: with the two labels outside (1) and inside (2), each sample's
        # distance to the nearest sample of the other label is the inside EDT's value inside
        # and the outside EDT's outside (the same numbers, half the time of two transforms);
        # on ``threads`` threads (its lines split among them: the same numbers)
        d = edt.edt(
            inside.view(np.uint8) + np.uint8(1),
            anisotropy=an,
            black_border=False,
            parallel=threads,
        )
        # d - half inside, half - d outside (= -(d - half) exactly), formed in place
        sd = np.subtract(d, np.float32(half), dtype=np.float32)
        np.negative(sd, out=sd, where=~inside)
        self.sd = sd
        self.fld = fld
        self.Jinv_T = np.linalg.inv(J).T

    @cached_property
    def bounds(self) -> _BoxBounds:
        """Bounds of the approximate distance over sample boxes (see :func:`_lattice_margins`)."""
        return _BoxBounds(self.sd)

    def sample_index(self, lps: np.ndarray) -> np.ndarray:
        """Continuous sample indices (n, 3) of LPS points."""
        f = self.fld
        return (f.grid.to_index(lps) - f.offset) / f.step

    def distance(self, idx: np.ndarray) -> np.ndarray:
        """Approximate signed distance (mm, positive inside) at sample indices."""
        return ndimage.map_coordinates(self.sd, idx.T, order=1, mode="nearest", prefilter=False)

    def project(self, lps: np.ndarray, idx: np.ndarray, d: np.ndarray) -> np.ndarray:
        """First guess of the closest surface point of each LPS point.

        A step of ``d`` (the approximate distance at sample index ``idx``) along the
        distance's gradient.
        """
        g = _affine(_gradient_at(self.sd, idx), self.Jinv_T)
        n = np.linalg.norm(g, axis=1, keepdims=True)
        g = g / np.where(n > 1e-6, n, 1.0)
        return lps - d[:, None] * g

    def approx(self, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(approximate signed distance, first guess of the closest surface point)."""
        idx = self.sample_index(lps)
        d = self.distance(idx)
        return d, self.project(lps, idx, d)


def _gradient_at(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Interpolate ``np.gradient(arr)`` trilinearly at continuous sample indices.

    Central differences per sample (one-sided at the edges), interpolated at ``idx`` (n, 3)
    and clamped to the array like ``map_coordinates(mode="nearest")``: computed only at the 8
    corners around each point (a narrow band), not on the whole array; compiled, without the
    GIL (:func:`~napari_ablation.core.filters.gradient_at`).
    """
    return filters.gradient_at(arr, idx)


#: edge of the blocks of lattice points (mm) whose class the guide may settle at once
SETTLE_BLOCK_MM = 3.0
#: safety margins of those bounds against rounding: field value, margin (mm), sample index
_SETTLE_EPS_VALUE, _SETTLE_EPS_MM, _SETTLE_EPS_INDEX = 1e-4, 1e-3, 1e-6


class _BoxBounds:
    """Lower and upper bounds of a 3D array over index boxes, from the extremes of its c^3 blocks.

    Conservative: a box is widened to whole blocks, and to the largest box asked in one query.
    """

    def __init__(self, arr: np.ndarray, c: int = 2):
        self.c = c
        n = -(-np.asarray(arr.shape) // c)
        a = np.pad(arr, [(0, int(k * c - s)) for k, s in zip(n, arr.shape)], mode="edge")
        self.lo, self.hi = _block_reduce(a, c, np.minimum), _block_reduce(a, c, np.maximum)

    def query(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounds over the boxes ``lo..hi`` ((n, 3) inclusive sample indices inside the array)."""
        clo, chi = lo // self.c, hi // self.c
        w = (chi - clo).max(axis=0) + 1 if len(lo) else np.ones(3, int)
        # the extremes over windows of w blocks (compiled, without the GIL)
        return filters.window_extremes(self.lo, self.hi, clo, w)


def _block_reduce(a: np.ndarray, c: int, fn) -> np.ndarray:
    """Reduce each c^3 block of ``a`` (its shape a multiple of c) with ``fn``, axis by axis.

    Strided slices combined pairwise: a multi-axis ``min`` over a reshaped view is 5-10x slower.
    """
    for ax in (2, 1, 0):
        take = [slice(None)] * 3
        take[ax] = slice(0, None, c)
        out = a[tuple(take)].copy()
        for k in range(1, c):
            take[ax] = slice(k, None, c)
            fn(out, a[tuple(take)], out=out)
        a = out
    return a


class _LatticeBlocks:
    """Blocks of lattice points and the box of ablation-field samples each block maps into.

    The points are ``M_idx @ i + o_idx`` (pre LPS) for the integer rows ``i`` of ``idx``,
    grouped in blocks of about SETTLE_BLOCK_MM; ``s_lo, s_hi`` bound the field's (and its
    guide's: the same samples) continuous sample index of every point of each used block.
    """

    def __init__(self, idx, M_idx, o_idx, afield: _Field, A, b):
        sp = np.linalg.norm(M_idx, axis=0)
        B = np.maximum(2, np.floor(SETTLE_BLOCK_MM / sp)).astype(np.int64)
        bid = idx // B
        nb = tuple(int(v) for v in bid.max(axis=0) + 1)
        self.n_blocks = int(np.prod(nb))
        self.lin = np.ravel_multi_index(tuple(bid.T), nb)  # block of each point
        self.used = np.flatnonzero(np.bincount(self.lin, minlength=self.n_blocks))
        lo = np.stack(np.unravel_index(self.used, nb), 1) * B
        hi = lo + B - 1
        # sample index of each point i: s = P @ i + s0
        Minv = afield.grid.Minv
        P = (Minv @ A @ M_idx) / afield.step[:, None]
        s0 = (Minv @ (A @ o_idx + b - afield.grid.origin) - afield.offset) / afield.step
        lo_p, hi_p = lo[:, None, :] * P, hi[:, None, :] * P
        self.s_lo = s0 + np.minimum(lo_p, hi_p).sum(axis=2) - _SETTLE_EPS_INDEX
        self.s_hi = s0 + np.maximum(lo_p, hi_p).sum(axis=2) + _SETTLE_EPS_INDEX
        self.last = np.asarray(afield.values.shape) - 1

    def sides(self, afield: _Field) -> tuple[np.ndarray, np.ndarray]:
        """Per used block: all its points inside the ablation field's level; all outside."""
        N = self.last
        # map_coordinates, mode "constant": beyond the crop the outside value (its minimum)
        c_lo = np.floor(self.s_lo).astype(np.int64)
        c_hi = np.floor(self.s_hi).astype(np.int64) + 1
        beyond = np.any((c_lo < 0) | (c_hi > N), axis=1)
        v_lo, v_hi = afield.box_bounds.query(np.clip(c_lo, 0, N), np.clip(c_hi, 0, N))
        v_lo = np.where(beyond, np.minimum(v_lo, afield.outside_value), v_lo)
        return (
            v_lo >= afield.level + _SETTLE_EPS_VALUE,
            v_hi < afield.level - _SETTLE_EPS_VALUE,
        )

    def guide_bounds(self, guide: _Guide) -> tuple[np.ndarray, np.ndarray]:
        """Per used block: bounds of the guide's distance (mode "nearest": indices clamped)."""
        N = self.last
        g_lo = np.floor(np.clip(self.s_lo, 0, N)).astype(np.int64)
        g_hi = np.minimum(np.floor(np.clip(self.s_hi, 0, N)).astype(np.int64) + 1, N)
        return guide.bounds.query(g_lo, g_hi)

    def per_point(self, per_block: np.ndarray, fill=0) -> np.ndarray:
        """Spread a value per used block to every point."""
        full = np.full(self.n_blocks, fill, dtype=per_block.dtype)
        full[self.used] = per_block
        return full[self.lin]


def _lattice_margins(
    idx, M_idx, o_idx, afield: _Field, guide: _Guide, A, b, levels, margin_at, band: float = 0.0
):
    """Signed margins at lattice points, or a stand-in in the same class where blocks are settled.

    The points are ``M_idx @ i + o_idx`` (pre LPS) for the integer rows ``i`` of ``idx``.
    ``margin_at(points)`` is the per-point computation (approximate margin from the guide,
    exact near a level). Blocks of points are first bounded as a whole: the trilinear
    interpolation of the ablation field and of the guide's distance at any point lies within
    the extremes of the samples around it, so where a block is inside (or outside) the
    ablation zone for all its points and its approximate margins stay farther than the
    guide's tolerance from every level, each of its points would get the approximate margin,
    in the same class: the block's lower bound is returned for all of them (it compares with
    every level as the point's own margin does). The other blocks' points get
    ``margin_at``. Same classes as ``margin_at`` at every point, without interpolating each
    of the (hundreds of thousands of) voxels inside a large tumor. ``band`` (mm): blocks are
    settled only farther than that beyond the tolerance from every level (the class ramp's
    half width: see _class_fractions).
    """
    out = np.empty(len(idx))
    if len(idx) == 0:
        return out
    blocks = _LatticeBlocks(idx, M_idx, o_idx, afield, A, b)
    inside, outside = blocks.sides(afield)
    d_lo, d_hi = blocks.guide_bounds(guide)
    a_lo = np.where(d_lo >= 0, d_lo, np.where(d_hi <= 0, -d_hi, 0.0))  # bounds of |d|
    a_hi = np.maximum(np.abs(d_lo), np.abs(d_hi))
    m_lo = np.where(inside, a_lo, -a_hi)
    m_hi = np.where(inside, a_hi, -a_lo)
    settled = inside | outside
    tol = guide.tol + _SETTLE_EPS_MM + band
    for lev in levels:
        settled &= (m_hi < lev - tol) | (m_lo > lev + tol)
    done = blocks.per_point(settled, False)
    out[done] = blocks.per_point(m_lo.astype(float))[done]
    rest = np.flatnonzero(~done)
    if len(rest):
        out[rest] = margin_at(_affine(idx[rest], M_idx, o_idx))
    return out


def _lattice_inside(idx, M_idx, o_idx, afield: _Field, A, b) -> np.ndarray:
    """``afield.inside`` at lattice points (see :class:`_LatticeBlocks`), decided block by block.

    Blocks whose field samples all lie on one side of the level are inside (or outside) at
    every point; only the other blocks' points are interpolated.
    """
    out = np.zeros(len(idx), dtype=bool)
    if len(idx) == 0:
        return out
    blocks = _LatticeBlocks(idx, M_idx, o_idx, afield, A, b)
    inside, outside = blocks.sides(afield)
    out[:] = blocks.per_point(inside, False)
    rest = np.flatnonzero(~(out | blocks.per_point(outside, False)))
    if len(rest):
        out[rest] = afield.inside(_affine(_affine(idx[rest], M_idx, o_idx), A, b))
    return out


# ----------------------------------------------------------------------------- result


def round_half_away(x: float) -> int:
    """Round to the nearest integer, halves away from zero.

    Parameters
    ----------
    x : float
        The value.

    Returns
    -------
    int
        E.g. 2.5 -> 3, -2.5 -> -3.
    """
    r = math.floor(abs(x) + 0.5)
    return int(math.copysign(r, x)) if r else 0


#: decimals of a length (mm) in the JSON documents (volumes and fractions carry 4)
MM_DECIMALS = 3


def json_figure(value: float | None, decimals: int = MM_DECIMALS) -> float | None:
    """Round a figure for a JSON document: the one rule of every export.

    The GUI's and the CLI's JSON, the MTM interval's keys and the quiz key all round with
    it, so one figure reads the same wherever it is written.

    Parameters
    ----------
    value : float or None
        The figure (None passes through: a figure that does not exist).
    decimals : int, optional
        Decimal places (default :data:`MM_DECIMALS`, for mm).

    Returns
    -------
    float or None
        ``value`` rounded to ``decimals`` places (Python's ``round``: halves to even in the
        binary value), or None.
    """
    return None if value is None else round(float(value), decimals)


#: the gap (mm) between the tumor's and the ablation zone's boxes beyond which the pairing
#: is called implausible (see pairing_warnings)
PAIRING_GAP_MM = 20.0


def pairing_warnings(tumor_lps: np.ndarray, ablation_lps: np.ndarray) -> list[str]:
    """Warn when a tumor and an ablation zone cannot be one ablation of that tumor.

    The rule: their bounding boxes in pre space lie more than :data:`PAIRING_GAP_MM` apart
    (the ablation zone misses the whole tumor by far), which happens with labels of two
    patients or two organs, or a registration far off, and not with one treated tumor (a
    near miss stays a plain negative margin). The margin is still computed and reported:
    this is a warning, not a refusal.

    Parameters
    ----------
    tumor_lps, ablation_lps : numpy.ndarray
        Points of the tumor and of the ablation zone in pre space (N x 3, LPS mm), e.g.
        their surface vertices.

    Returns
    -------
    list of str
        One warning, or none.
    """
    t, a = np.asarray(tumor_lps, float), np.asarray(ablation_lps, float)
    if len(t) == 0 or len(a) == 0:
        return []
    gap = np.maximum(0.0, np.maximum(t.min(0) - a.max(0), a.min(0) - t.max(0)))
    if float(np.linalg.norm(gap)) <= PAIRING_GAP_MM:
        return []
    apart = float(np.linalg.norm(t.mean(0) - a.mean(0)))
    return [
        f"implausible pairing: the ablation zone does not overlap the tumor at all (centres "
        f"{apart:.0f} mm apart): check that both are of the same patient and organ, and the "
        "registration"
    ]


def octant_name(v_lps) -> str:
    """Name the octant of a vector from the tumor centroid along the patient axes.

    Parameters
    ----------
    v_lps : array_like
        ``(x, y, z)`` in LPS (+x left, +y posterior, +z superior).

    Returns
    -------
    str
        ``{left|right}-{anterior|posterior}-{superior|inferior}``.
    """
    x, y, z = (float(t) for t in v_lps)
    lr = "left" if x >= 0 else "right"
    pa = "posterior" if y >= 0 else "anterior"
    si = "superior" if z >= 0 else "inferior"
    return f"{lr}-{pa}-{si}"


OCTANTS = tuple(
    f"{lr}-{ap}-{si}"
    for lr in ("left", "right")
    for ap in ("anterior", "posterior")
    for si in ("superior", "inferior")
)


@dataclass
class MarginResult:
    """Every figure of the margin analysis (one object shared by CLI, widget and report).

    Made by :func:`analyze_margin`; distances in mm, points LPS ``(x, y, z)`` in mm,
    arrays ``(z, y, x)`` on the pre grid.

    Parameters
    ----------
    threshold_mm : float
        The margin threshold of the coverage classes.
    min_margin_mm : float
        The minimal treatment margin (MTM); negative where the tumor is not covered.
    min_margin_uncertainty_mm : float
        The MTM's resolution limit (+/-) from the two masks' grids.
    min_margin_point_lps : numpy.ndarray
        Where on the tumor surface the MTM is.
    min_margin_direction_lps : numpy.ndarray
        Unit direction of the MTM, outward from the tumor.
    min_margin_octant : str
        Octant of the MTM point around the tumor centroid (one of ``OCTANTS``).
    octant_min_margin_mm : dict
        Smallest margin per octant (None for an octant with no surface).
    tumor_centroid_lps : numpy.ndarray
        Centroid of the tumor voxels.
    tumor_volume_ml, ablation_volume_ml : float
        Voxel-count volumes of the two segmentations.
    tumor_reconstructed_volume_ml, ablation_reconstructed_volume_ml : float
        Volumes of the sub-voxel reconstructions (see ``VOLUME_BASIS``).
    tumor_max_diameter_mm : float
        Largest distance between two points of the tumor surface.
    volume_ml, volume_fraction : dict
        Volume and fraction of the tumor per coverage class (``CLASS_KEYS``).
    surface_fraction_ge : dict
        Fraction of the tumor surface with margin at least each level (mm).
    shell_coverage : dict
        Fraction of each peri-tumoral shell (width in mm) inside the ablation zone.
    histogram_edges_mm, histogram_fraction : numpy.ndarray
        Histogram of the surface margins (bin edges, surface fraction per bin).
    tumor_surface : Mesh
        The tumor's reconstructed surface (pre LPS).
    surface_margin_mm : numpy.ndarray
        Signed margin at each tumor-surface vertex.
    ablation_surface : Mesh
        The ablation zone's reconstructed surface, mapped into pre space.
    class_crop : numpy.ndarray
        The coverage classes (uint8) on the tumor's box (0 outside the tumor, 1 green,
        2 yellow, 3 red).
    class_offset : tuple of int
        Index on the pre grid of ``class_crop[0, 0, 0]``.
    pre_reference : SimpleITK.Image
        An image with the pre grid's geometry.
    registered : bool
        Whether a registration was applied (a transform was given); False: the identity
        (see :func:`registration_fields`).
    warnings : list of str
        One-line warnings of the analysis.
    method : str
        One line naming the method.
    tumor_reconstruction : str, optional
        What ``tumor_reconstructed_volume_ml`` was measured on: a smooth star-shaped
        surface that reproduces the mask, the slice contours interpolated across thick
        slices, or the voxel count (see ``VOLUME_BASIS``).
    _ablation_field : object, optional
        The ablation zone's field (its inside test), for :meth:`ablation_on_pre`.
    _pre_to_post : tuple, optional
        ``(A, b)`` of the pre -> post transform.
    """

    threshold_mm: float
    min_margin_mm: float
    min_margin_uncertainty_mm: float
    min_margin_point_lps: np.ndarray
    min_margin_direction_lps: np.ndarray
    min_margin_octant: str
    octant_min_margin_mm: dict[str, float | None]
    tumor_centroid_lps: np.ndarray
    #: volumes of the segmentations, voxel count x voxel volume (what every tool reports)
    tumor_volume_ml: float
    ablation_volume_ml: float
    #: volumes of the sub-voxel reconstructions (see VOLUME_BASIS), beside the voxel volumes
    tumor_reconstructed_volume_ml: float
    ablation_reconstructed_volume_ml: float
    tumor_max_diameter_mm: float
    volume_ml: dict[str, float]
    volume_fraction: dict[str, float]
    surface_fraction_ge: dict[float, float]
    shell_coverage: dict[float, float]
    histogram_edges_mm: np.ndarray
    histogram_fraction: np.ndarray
    tumor_surface: Mesh  # pre LPS
    surface_margin_mm: np.ndarray  # per tumor-surface vertex
    ablation_surface: Mesh  # in pre LPS (after the registration)
    class_crop: np.ndarray  # uint8 (z, y, x): 0 outside tumor, 1 green, 2 yellow, 3 red
    class_offset: tuple[int, int, int]  # index of class_crop[0,0,0] on the pre grid
    pre_reference: sitk.Image = field(repr=False)  # an (empty-ish) image with the pre geometry
    registered: bool  # a transform was given (False: the identity, nothing registered)
    warnings: list[str] = field(default_factory=list)
    method: str = ""
    #: what tumor_reconstructed_volume_ml (the class volumes' basis) was measured on
    tumor_reconstruction: str = ""
    _ablation_field: Any = field(default=None, repr=False)
    _pre_to_post: Any = field(default=None, repr=False)

    # ---------------------------------------------------------------- ablation in pre space
    def display_box(self, pad_mm: float = 15.0) -> tuple[slice, slice, slice]:
        """Return the index box on the pre grid around the tumor, padded by ``pad_mm``.

        Parameters
        ----------
        pad_mm : float, optional
            Padding around the tumor's box in mm (clipped to the grid).

        Returns
        -------
        tuple of slice
            The box, ``(z, y, x)``.
        """
        g = _Grid(self.pre_reference)
        out = []
        for ax in range(3):
            pad = math.ceil(pad_mm / g.spacing_zyx[ax])
            lo = max(0, self.class_offset[ax] - pad)
            hi = min(g.shape[ax], self.class_offset[ax] + self.class_crop.shape[ax] + pad)
            out.append(slice(lo, hi))
        return tuple(out)

    def ablation_on_pre(self, box: tuple[slice, slice, slice] | None = None) -> np.ndarray:
        """Return the registered ablation zone on the pre grid voxels of ``box``.

        Parameters
        ----------
        box : tuple of slice, optional
            Index box ``(z, y, x)`` on the pre grid (default: :meth:`display_box`).

        Returns
        -------
        numpy.ndarray
            Boolean array of the box's shape, True inside the ablation zone.
        """
        box = box or self.display_box()
        g = _Grid(self.pre_reference)
        shape = tuple(s.stop - s.start for s in box)
        if self._ablation_field is None:
            return np.zeros(shape, dtype=bool)
        idx = np.indices(shape).reshape(3, -1).T + np.array([s.start for s in box])
        A, b = self._pre_to_post
        return self._ablation_field.inside(_affine(g.to_lps(idx), A, b)).reshape(shape)

    def ablation_box(self) -> tuple[slice, slice, slice]:
        """Return the index box on the pre grid that holds the whole registered ablation zone.

        Returns
        -------
        tuple of slice
            (z, y, x) slices: the box of the ablation zone's own field (its crop on the post
            grid) mapped into pre space, clipped to the pre grid; the display box when there
            is no ablation zone.
        """
        f = self._ablation_field
        if f is None:
            return self.display_box()
        g = _Grid(self.pre_reference)
        last = np.asarray(f.values.shape, float) - 1.0
        corners = np.array(np.meshgrid(*[[0.0, n] for n in last], indexing="ij")).reshape(3, -1).T
        A, b = self._pre_to_post  # post = A @ pre + b
        pre_lps = np.linalg.solve(A, (f.to_lps(corners) - b).T).T
        idx = g.to_index(pre_lps)
        lo = np.clip(np.floor(idx.min(axis=0)).astype(int), 0, g.shape)
        hi = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 1, 0, g.shape)
        if np.any(hi <= lo):  # the ablation zone lies outside the pre grid
            return self.display_box()
        return tuple(slice(int(a), int(c)) for a, c in zip(lo, hi))

    def ablation_on_pre_image(self, box: tuple[slice, slice, slice] | None = None) -> sitk.Image:
        """Return :meth:`ablation_on_pre` as a uint8 image with the pre grid's geometry.

        Parameters
        ----------
        box : tuple of slice, optional
            Index box ``(z, y, x)`` on the pre grid (default: :meth:`ablation_box`, the
            whole ablation zone).

        Returns
        -------
        SimpleITK.Image
            The mask, its origin at the box's first voxel.
        """
        box = box or self.ablation_box()
        arr = self.ablation_on_pre(box).astype(np.uint8)
        img = sitk.GetImageFromArray(arr)
        ref = self.pre_reference
        img.SetSpacing(ref.GetSpacing())
        img.SetDirection(ref.GetDirection())
        img.SetOrigin(ref.TransformIndexToPhysicalPoint([int(s.start) for s in box[::-1]]))
        return img

    # ---------------------------------------------------------------- derived figures
    @property
    def min_margin_mm_rounded(self) -> int:
        """MTM rounded to whole mm, halves away from zero."""
        return round_half_away(self.min_margin_mm)

    @property
    def complete_coverage(self) -> bool:
        """Whether the whole tumor lies inside the ablation zone (MTM >= 0)."""
        return bool(self.min_margin_mm >= 0.0)

    def cumulative_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the cumulative surface curve: fraction of the surface with margin >= x.

        Returns
        -------
        x : numpy.ndarray
            Margins in mm (the histogram's bin edges).
        fraction : numpy.ndarray
            Fraction of the tumor surface (by area) with margin at least ``x``.
        """
        x = self.histogram_edges_mm
        m, w = self.surface_margin_mm, self.tumor_surface.vertex_areas()
        order = np.argsort(m)
        ms, ws = m[order], w[order]
        tail = np.concatenate([np.cumsum(ws[::-1])[::-1], [0.0]]) / max(ws.sum(), 1e-12)
        return x, tail[np.searchsorted(ms, x, side="left")]

    def margin_labels_image(self) -> sitk.Image:
        """Return the coverage classes on the full pre grid.

        Returns
        -------
        SimpleITK.Image
            The classes (uint8): 0 outside the tumor, 1 green, 2 yellow, 3 red.
        """
        ref = self.pre_reference
        img = sitk.Image(ref.GetSize(), sitk.sitkUInt8)  # zero-filled, one pass
        img.CopyInformation(ref)
        crop = sitk.GetImageFromArray(np.ascontiguousarray(self.class_crop, dtype=np.uint8))
        z, y, x = self.class_offset
        dz, dy, dx = self.class_crop.shape
        img[x : x + dx, y : y + dy, z : z + dz] = crop  # pasted in place
        return img

    # ---------------------------------------------------------------- outputs
    def to_json_dict(self) -> dict[str, Any]:
        """Return the JSON document of the analysis (the CLI contract's keys and more).

        Returns
        -------
        dict
            JSON-serialisable figures, rounded (DESIGN section 5).
        """
        r = json_figure
        x, cum = self.cumulative_curve()
        return {
            "min_margin_mm": r(self.min_margin_mm),
            "min_margin_mm_rounded": self.min_margin_mm_rounded,
            "min_margin_uncertainty_mm": r(self.min_margin_uncertainty_mm),
            "threshold_mm": float(self.threshold_mm),
            "min_margin_point_lps": [r(v) for v in self.min_margin_point_lps],
            "min_margin_direction_lps": [r(v, 4) for v in self.min_margin_direction_lps],
            "min_margin_octant": self.min_margin_octant,
            "octant_min_margin_mm": {k: r(v) for k, v in self.octant_min_margin_mm.items()},
            "tumor_volume_ml": r(self.tumor_volume_ml, 4),
            "ablation_volume_ml": r(self.ablation_volume_ml, 4),
            "tumor_max_diameter_mm": r(self.tumor_max_diameter_mm, 2),
            "tumor_reconstructed_volume_ml": r(self.tumor_reconstructed_volume_ml, 4),
            "ablation_reconstructed_volume_ml": r(self.ablation_reconstructed_volume_ml, 4),
            "volume_basis": VOLUME_BASIS,
            "tumor_reconstruction": self.tumor_reconstruction,
            "tumor_centroid_lps": [r(v) for v in self.tumor_centroid_lps],
            "volume_ml": {k: r(v, 4) for k, v in self.volume_ml.items()},
            "volume_fraction": {k: r(v, 4) for k, v in self.volume_fraction.items()},
            "complete_coverage": self.complete_coverage,
            "surface_fraction_margin_ge_mm": {
                _fmt_mm(k): r(v, 4) for k, v in self.surface_fraction_ge.items()
            },
            "shell_coverage_fraction": {
                _fmt_mm(k): r(v, 4) for k, v in self.shell_coverage.items()
            },
            "surface_margin_histogram": {
                "bin_edges_mm": [r(v) for v in self.histogram_edges_mm],
                "surface_fraction": [r(v, 5) for v in self.histogram_fraction],
            },
            "surface_margin_cumulative": {
                "margin_mm": [r(v) for v in x],
                "surface_fraction_ge": [r(v, 5) for v in cum],
            },
            "warnings": list(self.warnings),
            "method": self.method,
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """Return the results table: the widget's table and the CSV.

        Returns
        -------
        list of tuple of str
            ``(figure, value, unit)`` rows.
        """
        mm = self.min_margin_mm
        rows = [
            # the JSON's figure (UAT s12 N8: the Cohort table shows it from margins.csv)
            ("Minimal treatment margin (MTM)", f"{json_figure(mm):.{MM_DECIMALS}f}", "mm"),
            ("MTM rounded", f"{self.min_margin_mm_rounded:d}", "mm"),
            ("MTM resolution limit (+/-)", f"{self.min_margin_uncertainty_mm:.2f}", "mm"),
            ("MTM location (octant)", self.min_margin_octant, ""),
            ("MTM point LPS", " ".join(f"{v:.1f}" for v in self.min_margin_point_lps), "mm"),
            ("Complete coverage", "yes" if self.complete_coverage else "no", ""),
            ("Threshold", f"{self.threshold_mm:g}", "mm"),
        ]
        for k in CLASS_KEYS:
            name = (
                f"Tumor {coverage.class_title(k, self.threshold_mm)} "
                f"({coverage.CLASS_COLOR_NAMES[k]})"
            )
            rows.append((name + " volume", f"{self.volume_ml[k]:.3f}", "ml"))
            rows.append((name + " fraction", f"{100 * self.volume_fraction[k]:.1f}", "%"))
        rows += [
            ("Tumor volume", f"{self.tumor_volume_ml:.3f}", "ml"),
            (
                "Tumor volume, sub-voxel reconstruction",
                f"{self.tumor_reconstructed_volume_ml:.3f}",
                "ml",
            ),
            ("Tumor max 3D diameter", f"{self.tumor_max_diameter_mm:.1f}", "mm"),
            ("Ablation zone volume", f"{self.ablation_volume_ml:.3f}", "ml"),
        ]
        for k, v in self.surface_fraction_ge.items():
            rows.append((f"Tumor surface with margin >= {k:g} mm", f"{100 * v:.1f}", "%"))
        for k, v in self.shell_coverage.items():
            rows.append((f"Peri-tumoral {k:g} mm shell covered by ablation", f"{100 * v:.1f}", "%"))
        for k in OCTANTS:
            v = self.octant_min_margin_mm.get(k)
            rows.append((f"Min margin {k}", "" if v is None else f"{v:.2f}", "mm"))
        return rows

    def to_csv(self) -> str:
        """Return :meth:`rows` as CSV text with a header.

        Returns
        -------
        str
            The CSV text.
        """
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["figure", "value", "unit"])
        w.writerows(self.rows())
        return buf.getvalue()

    def to_tsv(self) -> str:
        """Return :meth:`rows` as tab-separated text with a header.

        Returns
        -------
        str
            The tab-separated text.
        """
        return "\n".join("\t".join(r) for r in [("figure", "value", "unit"), *self.rows()]) + "\n"

    def margin_text(self) -> str:
        """Return the MTM and its resolution limit as one short line.

        Returns
        -------
        str
            For example ``MTM = -1.8 mm (± 0.7 mm)``.
        """
        return f"MTM = {self.min_margin_mm:.1f} mm (\u00b1 {self.min_margin_uncertainty_mm:.1f} mm)"

    def summary_text(self) -> str:
        """Return the human summary printed by the CLI.

        Returns
        -------
        str
            Several lines: MTM, classes, volumes, surface and shell coverage, warnings.
        """
        f = self.volume_fraction
        lines = [
            f"{self.margin_text()}, rounded {self.min_margin_mm_rounded:d} mm, at "
            f"{self.min_margin_octant} "
            f"(LPS {', '.join(f'{v:.1f}' for v in self.min_margin_point_lps)} mm)",
            f"complete coverage: {'yes' if self.complete_coverage else 'NO'}; threshold "
            f"{self.threshold_mm:g} mm: "
            f"green {100 * f['covered_with_margin']:.1f} %, yellow "
            f"{100 * f['insufficient_margin']:.1f} %, "
            f"red {100 * f['uncovered']:.1f} %",
            f"tumor {self.tumor_volume_ml:.2f} ml, max 3D diameter "
            f"{self.tumor_max_diameter_mm:.1f} mm; "
            f"ablation zone {self.ablation_volume_ml:.2f} ml",
            "tumor surface with margin >= "
            + ", ".join(f"{k:g} mm: {100 * v:.0f} %" for k, v in self.surface_fraction_ge.items()),
            "peri-tumoral shell covered: "
            + ", ".join(f"{k:g} mm: {100 * v:.0f} %" for k, v in self.shell_coverage.items()),
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _fmt_mm(v: float) -> str:
    return f"{v:g}"


# ----------------------------------------------------------------------------- analysis


#: threads of one analysis (the calling thread and workers): independent stages (the two
#: reconstructions, the diameter, the guide, the shells) overlap; cohort workers pass 1
THREADS = min(2, os.cpu_count() or 1)
#: Python's GIL switch interval (s) while an analysis runs on several threads. Most of the
#: work on small crops holds the GIL; a thread back from a compiled call that released it
#: waits for the other to let go, up to the interval (Python's default: 5 ms). MRI on the
#: near-idle machine: 105 ms at 5 ms, 94-96 ms at 1 ms (benchmarks/README.md, round 8)
GIL_SWITCH_INTERVAL_S = 0.001


class _GilSwitch:
    """The shorter switch interval while any multi-threaded analysis runs, then the old one.

    Counted: analyses running side by side in threads share it, the last one out restores
    the interval found by the first one in (an interval already shorter is kept).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0.0

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, GIL_SWITCH_INTERVAL_S))
            self._users += 1

    def __exit__(self, *exc):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                sys.setswitchinterval(self._saved)


_GIL_SWITCH = _GilSwitch()


class _Lazy:
    """A task run in the calling thread when its result is first asked for (one thread)."""

    def __init__(self, fn, *args):
        self._fn, self._args = fn, args

    def result(self):
        if self._fn is not None:
            self._value = self._fn(*self._args)
            self._fn = self._args = None
        return self._value

    def take(self) -> None:
        """Leave the task for the asking thread (one thread: it runs in the serial order)."""


def _run_here(fn, *args) -> Future:
    """Run ``fn`` now in the calling thread: a finished future with its result or error."""
    fut: Future = Future()
    try:
        fut.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - re-raised by result(), where serial raises
        fut.set_exception(exc)
    return fut


class _Job:
    """A task queued for the worker.

    A thread that needs it before the worker has started it runs it itself (so no thread
    waits for a task that nobody runs yet). Taking it is atomic: a task with two consumers
    (the ablation's reconstruction is needed by the calling thread and by the worker's guide)
    runs once, the second consumer waiting for the first one's run (``cancel`` of a future
    that is already cancelled returns True again, so without the lock both ran it).
    """

    def __init__(self, pool: ThreadPoolExecutor, fn, *args):
        self._fn, self._args = fn, args
        self._lock = threading.Lock()
        self._fut = pool.submit(fn, *args)

    def take(self) -> None:
        """Run the task in the calling thread now if no thread has started it."""
        with self._lock:
            if self._fut.cancel():
                self._fut = _run_here(self._fn, *self._args)

    def result(self):
        self.take()
        return self._fut.result()

    def cancel(self) -> None:
        """Cancel the task if no thread has started it."""
        with self._lock:
            self._fut.cancel()

    def wait(self) -> None:
        """Wait until the task has ended, unless it was cancelled (its error is not raised)."""
        with self._lock:
            fut = self._fut
        if not fut.cancelled():
            fut.exception()


class _Tasks:
    """The stages of one analysis, on ``threads - 1`` worker threads and the calling one.

    With one thread every task runs when its result is asked for, in the order of the
    serial engine (so are its errors raised); with more, ``submit`` queues a task for a
    worker (the calling thread runs it itself if it asks for the result, or ``take``s it,
    before a worker has started it) and ``here`` runs one at once in the calling thread,
    its error kept for ``result()``. Each task writes only its own outputs: the results do
    not depend on the thread count, nor on which thread ran what.
    """

    def __init__(self, threads: int):
        self.threads = threads
        self._pool = _workers(threads - 1) if threads > 1 else None
        self._jobs: list[_Job] = []

    def submit(self, fn, *args):
        if self._pool is None:
            return _Lazy(fn, *args)
        job = _Job(self._pool, fn, *args)
        self._jobs.append(job)
        return job

    def here(self, fn, *args):
        if self._pool is None:
            return _Lazy(fn, *args)
        return _run_here(fn, *args)

    def close(self) -> None:
        """End the analysis's tasks.

        Those not started are cancelled, the running ones waited for (after an error no task
        of the analysis runs on); the workers stay for the calling thread's next analysis.
        """
        for job in self._jobs:  # all first: a worker done with one would start the next
            job.cancel()
        for job in self._jobs:
            job.wait()
        self._jobs.clear()


#: each calling thread's worker threads, kept from one analysis to the next: a thread started
#: and joined per analysis cost 0.3 ms with the cores free (real-time run) and 4-5 ms (median;
#: 10 ms p90) on a loaded machine, on the critical path (benchmarks/README.md, margin speed,
#: round 9)
_WORKERS = threading.local()


def _workers(n: int) -> ThreadPoolExecutor:
    """Return the calling thread's pool of ``n`` worker threads (made on its first analysis)."""
    pools = _WORKERS.__dict__.setdefault("pools", {})
    key = (os.getpid(), n)  # (a forked process has the dict but not the threads)
    if key not in pools:
        pools[key] = ThreadPoolExecutor(n, thread_name_prefix="margin")
    return pools[key]


def _ablation_guide(arec, threads: int) -> _Guide:
    """Build the guide of the ablation's field, once its reconstruction (a task) is done.

    Its distance transform on all the analysis's threads: the calling thread, done with the
    tumor's surfaces, waits for it.
    """
    return _Guide(arec.result()[0], threads)


def _check_rigid(transform) -> tuple[np.ndarray, np.ndarray]:
    if transform is None:
        return np.eye(3), np.zeros(3)
    e = tfm.as_euler(transform)  # raises AblationError when not rigid
    return tfm.matrix_offset(e)


def analyze_margin(
    tumor: sitk.Image,
    ablation: sitk.Image,
    transform: sitk.Transform | None = None,
    threshold_mm: float = 5.0,
    *,
    tumor_label: int | None = None,
    ablation_label: int | None = None,
    smooth_vox: float = DEFAULT_SMOOTH_VOX,
    with_shells: bool = True,
    threads: int | None = None,
) -> MarginResult:
    """Margin analysis of a tumor mask (pre grid) and an ablation mask (post grid).

    Parameters
    ----------
    tumor : SimpleITK.Image
        Tumor labels on the pre grid (any non-zero voxel, or ``tumor_label``).
    ablation : SimpleITK.Image
        Ablation-zone labels on the post grid (any non-zero voxel, or ``ablation_label``).
    transform : SimpleITK.Transform, optional
        The pre -> post registration in ITK convention (maps pre points to post points);
        ``None``: identity.
    threshold_mm : float, optional
        The margin required (mm): the boundary between the green and yellow classes.
    tumor_label, ablation_label : int, optional
        Label value of each structure (default: every non-zero voxel).
    smooth_vox : float, optional
        Anti-aliasing Gaussian of the masks, in voxels.
    with_shells : bool, optional
        Also compute the peri-tumoral shell coverage.
    threads : int, optional
        Threads the analysis may use (default :data:`THREADS`): independent stages run
        side by side; 1 when analyses already run in parallel. The results are the same.
        With more than one, the process's GIL switch interval is
        :data:`GIL_SWITCH_INTERVAL_S` while the analysis runs (then restored), and the
        worker threads are kept for the calling thread's next analysis (they end with it).

    Returns
    -------
    MarginResult
        Every figure of the analysis (MTM, its point, direction and resolution limit,
        classes, volumes, octants, diameter, surface margins, shells).

    Raises
    ------
    AblationError
        On bad input: an empty or non-3D mask, a non-rigid transform, an ablation grid that
        does not reach the tumor after the transform, a threshold that is not a finite
        number of mm, 0 or more (:func:`~napari_ablation.core.coverage.check_threshold`).

    Notes
    -----
    Everything runs on crops around the two objects: the only pass over the whole images
    is the search for each mask's bounding box (in machine words).

    Consistency of the MTM with the classes: the MTM is never larger than the exact margin
    of a tumor voxel centre (or, across thick slices, of a refined sample the class volumes
    count) that the classes find uncovered, so red voxels always come with a negative MTM
    and no complete coverage, and yellow ones with an MTM below the threshold. A voxel
    centre of the mask lies inside the tumor, so its margin is a bound the true MTM cannot
    exceed: where such a sample's margin lies below the surface's minimum, the MTM, its
    point, direction, octant and limit become that sample's. Usually by a fraction of a
    voxel (the surface's minimum is of neighbour-averaged vertex margins, and a smooth
    surface cuts a tip slightly short), without a warning; by more than the surface's
    resolution limit only where the surface missed part of the mask (a part too thin for
    it), with a warning. An MTM that still disagreed with the classes would raise an
    internal AblationError (it cannot, by construction).
    """
    threads = THREADS if threads is None else int(threads)
    if threads < 1:
        raise AblationError(f"an analysis needs at least 1 thread, got {threads}")
    tasks = _Tasks(threads)
    try:
        with _GIL_SWITCH if threads > 1 else contextlib.nullcontext():
            return _analyze_margin(
                tasks,
                tumor,
                ablation,
                transform,
                threshold_mm,
                tumor_label,
                ablation_label,
                smooth_vox,
                with_shells,
            )
    finally:
        tasks.close()


def _analyze_margin(
    tasks: _Tasks,
    tumor: sitk.Image,
    ablation: sitk.Image,
    transform,
    threshold_mm,
    tumor_label,
    ablation_label,
    smooth_vox,
    with_shells,
) -> MarginResult:
    threshold_mm = coverage.check_threshold(threshold_mm)
    warns: list[str] = []
    A, b = _check_rigid(transform)  # pre -> post: q = A p + b
    Ainv, binv = A.T, -A.T @ b  # post -> pre

    am = tasks.submit(_MaskSource, ablation, "ablation", ablation_label)  # (box scans)
    tmask = _MaskSource(tumor, "tumor", tumor_label)
    amask = am.result()
    tgrid, agrid = _Grid(tumor), _Grid(ablation)
    tbox = tmask.box
    if tbox is None:
        raise AblationError("the tumor mask is empty")
    abox = amask.box
    if abox is None:
        raise AblationError("the ablation mask is empty")
    if _touches_border(tbox, tmask.shape):
        warns.append(
            "the tumor touches the border of the pre image: the margin may be truncated there"
        )
    if _touches_border(abox, amask.shape):
        warns.append("the ablation zone touches the border of the post image: it may be cut off")

    # --- surfaces -------------------------------------------------------------------
    # the ablation's on the worker while this thread does the tumor's and its diameter; the
    # tumor's star-shaped volume and the ablation's guide queued behind it: whichever thread
    # is free first runs the star fit (see _Job)
    awarns: list[str] = []
    arec = tasks.submit(_field_and_surface, amask, abox, agrid, smooth_vox, "ablation", awarns)
    tlo = np.array([t.start for t in tbox])
    tcrop = tmask.crop(tlo, [t.stop for t in tbox])
    star = tasks.submit(_star_volume_mm3, tcrop, tgrid.spacing_zyx)  # (the tumor's volume)
    gd = tasks.submit(_ablation_guide, arec, tasks.threads)
    tfield, tsurf = _field_and_surface(tmask, tbox, tgrid, smooth_vox, "tumor", warns)
    dia = tasks.here(_tumor_diameter, tmask, tbox, tgrid, tfield, tsurf)
    # what needs the tumor alone, while the ablation's reconstruction may still run
    idx = np.argwhere(tcrop)
    smooth_op = _mesh_smoother(tsurf.faces, len(tsurf.verts))
    # across thick slices the classes are also computed at the refined samples (below)
    fine_idx = None if np.all(tfield.step == 1.0) else np.argwhere(tfield.solid)
    star.take()
    afield, asurf_post = arec.result()
    warns += awarns
    asurf = asurf_post.transformed(Ainv, binv)  # ablation surface in pre space

    # --- does the post grid reach the tumor? -------------------------------------------
    tv_post_idx = agrid.to_index(_affine(tsurf.verts, A, b))
    inside_grid = np.all(
        (tv_post_idx >= -0.5) & (tv_post_idx <= np.asarray(agrid.shape) - 0.5), axis=1
    )
    frac_in = float(inside_grid.mean())
    if frac_in == 0.0:
        raise AblationError(
            "the ablation image does not cover the tumor region after the transform "
            "(wrong registration, or a transform in the wrong direction?)"
        )
    if frac_in < 1.0:
        warns.append(
            f"{100 * (1 - frac_in):.0f} % of the tumor surface lies outside the post image "
            "after the transform: "
            "the ablation zone is unknown there and counted as absent"
        )

    dist_ab = MeshDistance(asurf_post)
    smooth_chords = _smooth_chords(afield)
    guide = gd.result()

    def signed_margin(
        pts_pre: np.ndarray,
        levels=None,
        split: bool = True,
        smooth: bool | None = None,
        band: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Signed margin (mm) and closest ablation-surface point (pre LPS) of pre-space points.

        With ``levels``, exact distances are computed only where the approximate margin is
        within the guide's tolerance of one of the levels (elsewhere the class is already
        certain and the approximate value is returned), and no closest points are returned.
        ``split``: the search's second half on the worker (not when both threads are busy).
        ``smooth``: to the smooth surface through the triangles where _smooth_chords allows
        (default: for the classes, i.e. with ``levels``; see _smooth_chords).
        ``band``: exact also where the margin may lie within ``band`` mm of a level (the
        class ramp's half width, see _class_fractions).
        """
        smooth = (levels is not None) if smooth is None else smooth
        q = _affine(pts_pre, A, b)  # to post space, where the ablation surface and field live
        idx = guide.sample_index(q)
        d_apx = guide.distance(idx)
        if levels is None:
            # every point gets its exact margin below: no approximate one (nor inside test)
            m = np.empty(len(q))
            need = slice(None)
        else:
            inside = afield.inside(q)
            m = np.where(inside, np.abs(d_apx), -np.abs(d_apx))
            near = np.zeros(len(q), dtype=bool)
            for lev in levels:
                near |= np.abs(m - lev) <= guide.tol + band
            need = np.flatnonzero(near)
        qn = q[need]
        closest = None
        if len(qn):
            # exact distance, and its sign from the same (curvature-corrected) surface: the
            # blurred field's 0.5 level lies about sigma^2 / R inside it, which would count
            # a shell of covered tumor as uncovered
            guess = guide.project(qn, idx[need], d_apx[need])
            d, c, f = dist_ab.query_faces(qn, guess=guess, tasks=tasks if split else None)
            out = dist_ab.outside(qn, c, f)
            m[need] = np.where(out, -d, d)
            if smooth and smooth_chords:  # to the smooth surface through the triangles
                m[need] += dist_ab.bulge(c, f)
            closest = _affine(c, Ainv, binv)
        return m, closest

    # --- margins on the tumor surface ----------------------------------------------------
    m_surf, closest = signed_margin(tsurf.verts)  # (half of the search on the worker)
    afield.box_bounds  # noqa: B018 - (cached) computed once, before the threads share it
    # the margin varies smoothly along the tumor surface; the vertices carry sub-voxel noise
    # of both surfaces, and a minimum over thousands of noisy values is biased low: average
    # each vertex with its neighbours (about one voxel around) before taking the minimum
    m_raw, m_surf = m_surf, _smooth_on_mesh(m_surf, smooth_op, SURFACE_SMOOTH_ITERS)
    if tsurf.kept is not None:  # a part of a few voxels: its vertices a voxel apart, its own
        m_surf = np.where(tsurf.kept, m_raw, m_surf)
    i_min = int(np.argmin(m_surf))
    mtm = float(m_surf[i_min])
    p_min = tsurf.verts[i_min]
    normal = tsurf.vertex_normal(i_min)
    direction, uncertainty = _direction_and_limit(
        mtm, p_min, closest[i_min], normal, tgrid, tfield, agrid, afield, A, b
    )

    # --- tumor voxels: volumes, centroid, classes -----------------------------------------
    centroid = tgrid.to_lps(idx.mean(axis=0) + tlo)
    n_t = len(idx)
    levels = (0.0, threshold_mm)
    # on near-isotropic grids the class fractions' samples (the voxel centres) count
    # sub-voxel, with a ramp across each class boundary (_class_fractions): their margins
    # exact within the ramp's half width of a level. Across thick slices the refined samples
    # count 0 or 1: there the class volumes' errors are the reconstructions' (the zone's
    # margins, the tumor's volume), which the ramp does not touch, and it moved them either
    # way (bench_accuracy seed 75 on 3 mm slices: case 37 2.08 -> 1.72 %, case 6 1.83 ->
    # 2.15 %, its uncovered fraction -0.82 -> -1.09 % points)
    ramp_w = 0.0
    if fine_idx is None:
        ramp_w = CLASS_RAMP_PITCHES * float(np.prod(tgrid.spacing_zyx)) ** (1.0 / 3.0)

    def class_margin(points: np.ndarray) -> np.ndarray:
        return signed_margin(points, levels=levels, split=fine_idx is None, band=0.5 * ramp_w)[0]

    # class fractions at sub-voxel resolution: the samples of the tumor's own reconstruction
    # (refined across thick slices; on a worker while this thread classifies the voxels, each
    # search on its own thread); class volumes are these fractions of its volume, which has no
    # voxelisation noise across thick slices (VOLUME_BASIS). Queued for the worker behind
    # them: the shells, the surface's vertex areas and the pairing check (this thread takes
    # what the worker has not started when it is done with the voxels)
    if fine_idx is not None:
        guide.bounds  # noqa: B018 - (cached) computed once, before the threads share it
        fine = tasks.submit(
            _lattice_margins,
            fine_idx,
            tgrid.M * tfield.step[None, :],
            tgrid.to_lps(tfield.offset),
            afield,
            guide,
            A,
            b,
            levels,
            class_margin,
        )
    if with_shells:
        sh = tasks.submit(_shell_coverage, tmask, tgrid, tfield, afield, A, b)
    areas = tasks.submit(tsurf.vertex_areas)
    pairing = tasks.submit(pairing_warnings, tsurf.verts, asurf.verts)
    m_vox = _lattice_margins(
        idx, tgrid.M, tgrid.to_lps(tlo), afield, guide, A, b, levels, class_margin, 0.5 * ramp_w
    )
    if with_shells:
        sh.take()
    cls = np.where(m_vox < 0, 3, np.where(m_vox < threshold_mm, 2, 1)).astype(np.uint8)
    class_crop = np.zeros(tcrop.shape, dtype=np.uint8)
    class_crop[tuple(idx.T)] = cls
    # (the refined solid before anti-aliasing: the blur's 0.5 level lies inside the surface)
    m_fine = m_vox if fine_idx is None else fine.result()
    # the MTM is the minimum over the tumor, its voxel centres (and refined samples) included:
    # the lowest of them is a bound the surface's minimum must not exceed (see _lowest_sample)
    sets = [(m_vox, True, lambda rows: _affine(idx[rows], tgrid.M, tgrid.to_lps(tlo)))]
    if fine_idx is not None:
        sets.append((m_fine, False, lambda rows: tfield.to_lps(fine_idx[rows])))
    low = _lowest_sample(
        mtm, threshold_mm, guide.tol, sets, lambda p, lev=None: signed_margin(p, lev, smooth=True)
    )
    if low is not None:
        surface_mtm, surface_limit = mtm, uncertainty
        mtm, p_min, c_min = low
        direction, uncertainty = _direction_and_limit(
            mtm, p_min, c_min, None, tgrid, tfield, agrid, afield, A, b
        )
        warns += _below_surface_warnings(surface_mtm, surface_limit, mtm, p_min, tsurf)
    worst = min(float(m_vox.min()), float(m_fine.min()) if len(m_fine) else math.inf)
    if worst < 0 <= mtm or worst < threshold_mm <= mtm:  # (cannot happen: see _lowest_sample)
        raise AblationError("internal error: the MTM disagrees with the coverage classes")
    tumor_ml = n_t * tgrid.voxel_ml
    tumor_rec_ml, tumor_rec_how = _tumor_reconstructed_ml(tfield, star.result(), n_t)
    volume_fraction = _class_fractions(m_fine, threshold_mm, mtm, ramp_w)
    volume_ml = {k: v * tumor_rec_ml for k, v in volume_fraction.items()}
    n_ablation = amask.count()
    ablation_ml = float(n_ablation) * agrid.voxel_ml

    # --- octants ---------------------------------------------------------------------------
    rel = tsurf.verts - centroid
    code = (rel[:, 0] < 0) * 4 + (rel[:, 1] >= 0) * 2 + (rel[:, 2] < 0)  # index into OCTANTS
    octant_min: dict[str, float | None] = {}
    for i, k in enumerate(OCTANTS):
        sel = code == i
        octant_min[k] = float(m_surf[sel].min()) if sel.any() else None
    mtm_octant = octant_name(p_min - centroid)
    if low is not None:  # the MTM of a voxel below the surface's minimum
        octant_min[mtm_octant] = min(mtm, octant_min[mtm_octant] or mtm)

    # --- diameter ------------------------------------------------------------------------
    diameter = dia.result()

    # --- surface fractions, histogram ------------------------------------------------------
    w = areas.result()
    wsum = max(float(w.sum()), 1e-12)
    levels = sorted(set(SURFACE_FRACTION_LEVELS) | {threshold_mm})
    surf_frac = {float(x): float(w[m_surf >= x].sum() / wsum) for x in levels}
    edges = _histogram_edges(m_surf)
    hist, _ = np.histogram(m_surf, bins=edges, weights=w / wsum)

    # --- peri-tumoral shells ----------------------------------------------------------------
    shells = sh.result() if with_shells else {}

    warns += pairing.result()
    ref = tumor  # carries the pre grid geometry (SimpleITK images are copy-on-write)
    method = (
        f"marching cubes (0.5 level, anti-aliasing Gaussian {smooth_vox:g} voxel) of tumor "
        "and ablation masks; "
        "exact point-to-surface distance, sign from the ablation field; ablation brought to "
        "pre space with T^-1"
    )
    return MarginResult(
        threshold_mm=threshold_mm,
        min_margin_mm=mtm,
        min_margin_uncertainty_mm=uncertainty,
        min_margin_point_lps=p_min.copy(),
        min_margin_direction_lps=np.asarray(direction, dtype=float),
        min_margin_octant=mtm_octant,
        octant_min_margin_mm=octant_min,
        tumor_centroid_lps=centroid,
        tumor_volume_ml=tumor_ml,
        ablation_volume_ml=ablation_ml,
        tumor_reconstructed_volume_ml=tumor_rec_ml,
        ablation_reconstructed_volume_ml=_reconstructed_ml(afield, n_ablation),
        tumor_reconstruction=tumor_rec_how,
        tumor_max_diameter_mm=diameter,
        volume_ml=volume_ml,
        volume_fraction=volume_fraction,
        surface_fraction_ge=surf_frac,
        shell_coverage=shells,
        histogram_edges_mm=edges,
        histogram_fraction=hist,
        tumor_surface=tsurf,
        surface_margin_mm=m_surf,
        ablation_surface=asurf,
        class_crop=class_crop,
        class_offset=tuple(int(s.start) for s in tbox),
        pre_reference=ref,
        registered=transform is not None,
        warnings=warns,
        method=method,
        _ablation_field=afield,
        _pre_to_post=(A, b),
    )


#: neighbour-averaging passes of the per-vertex margins (see analyze_margin)
SURFACE_SMOOTH_ITERS = 1

#: width of the class ramp (see _class_fractions), in pitches of the class samples: on exact
#: margins of balls at random 1 mm placements the worst class's error averaged 0.27 % points
#: counted 0 or 1, 0.18 / 0.16 / 0.18 with 1 / 1.5 / 2 pitches (seven lens geometries)
CLASS_RAMP_PITCHES = 1.5


def _class_fractions(m: np.ndarray, threshold_mm: float, mtm: float, w: float) -> dict:
    """Class fractions of the tumor from its samples' margins, counted sub-sample.

    Counting which samples (voxel centres) lie on each side of a class boundary scatters with
    where the boundary cuts the lattice (a 6.8 mm ball half in the 5 mm class of an 11.1 mm
    zone on a 1 mm grid: sd 0.41 % points over 300 random placements). Each sample within
    w / 2 of a level instead counts ``0.5 + u`` above it (u = (m - level) / w, in (-1/2, 1/2)),
    the part of a cell of width w beyond a flat boundary, which scatters less. That ramp is biased
    wherever the density of samples changes across the boundary (a curved boundary: its
    area grows on one side, (w^2 / 24) times its curvature integral; where it meets the
    tumor's own boundary: the cells beyond are missing on one side): with the sample
    density linear across the ramp, its excess is -1/2 times the samples' first moment
    sum(u), so ``u / 2`` more per sample removes it, from the samples themselves (no
    curvature is needed; exact margins of balls at 300 random 1 mm placements of five lens
    geometries: the worst class's error 0.11-0.26 % points on average against 0.15-0.41
    counted 0 or 1, with w one pitch; 0.16 with w 1.5 pitches, 0.18 with 2, over seven
    geometries). Every sample within w / 2 of a level thus counts 0.5 + 1.5 u.
    A level the MTM does not reach (``mtm >= level``) has no boundary in the tumor: every
    sample counts above it, so a covered tumor has no uncovered volume. ``w == 0``: each
    sample counts 0 or 1.

    Returns the fractions under the keys of ``CLASS_KEYS``.
    """
    n = len(m)

    def above(level: float) -> float:
        if mtm >= level or n == 0:
            return float(n)
        if w <= 0:
            return float(np.count_nonzero(m >= level))
        u = (m - level) / w
        ramp = u[np.abs(u) < 0.5]
        count = np.count_nonzero(u >= 0.5) + float(np.sum(0.5 + 1.5 * ramp))
        return min(max(count, 0.0), float(n))

    covered = above(0.0)
    green = min(above(threshold_mm), covered)
    n_f = max(n, 1)
    return {
        "covered_with_margin": green / n_f,
        "insufficient_margin": (covered - green) / n_f,
        "uncovered": (n - covered) / n_f,
    }


def _direction_and_limit(mtm, p, closest, normal, tgrid, tfield, agrid, afield, A, b):
    """Return the MTM's unit direction (outward from the tumor) and its resolution limit (mm).

    The direction from the MTM point ``p`` to its closest ablation-surface point (pre LPS),
    turned outward when the margin is negative; ``normal`` (or, without one, +x) when the two
    points coincide. The limit: each mask's surface localisation limit along that direction,
    the two in quadrature (see _surface_error_sd).
    """
    direction = closest - p
    nd = float(np.linalg.norm(direction))
    sign = 1.0 if mtm >= 0 else -1.0
    if nd > 1e-3:
        direction = direction / nd * sign
    else:
        direction = np.array([1.0, 0.0, 0.0]) if normal is None else normal
    limit = math.hypot(
        _surface_error_sd(tgrid, direction, tfield, p),
        _surface_error_sd(agrid, A @ direction, afield, _affine(closest, A, b)),
    )
    return direction, float(limit)


def _lowest_sample(mtm: float, threshold_mm: float, tol: float, sets, exact):
    """Find a tumor sample whose exact margin lies below the surface's MTM.

    Returns ``(margin, point, closest)``, or None.

    The MTM is the minimum of the margin over the tumor, whose voxel centres lie inside it;
    the surface's minimum can exceed the margin of one of them by a fraction of a voxel (it
    is the minimum of neighbour-averaged vertex margins; a smooth surface cuts a tip slightly
    short: on the renal sample without a transform a voxel centre 0.03 mm inside the surface
    reads 0.10 mm below its averaged minimum and 0.04 mm above its lowest vertex), and by
    more where the surface missed a part of the tumor (too thin for the reconstruction: see
    _below_surface_warnings). ``sets``: per
    sample set, its class margins (exact within the guide's tolerance ``tol`` of 0 and of the
    threshold, bounds of the same class elsewhere), whether it is held to the MTM margin for
    margin (voxel centres) or only class for class (the refined samples across thick slices
    that the class volumes count: points of the interpolated reconstruction before its
    anti-aliasing, not of the mask, up to 0.4 mm beyond a tumor's tip on 3 mm slices), and a
    function giving the LPS points of some of its rows; ``exact(points, levels=None)`` the
    exact margins and closest ablation-surface points (with ``levels``, exact only near them
    and on the same side of them elsewhere, without closest points: see analyze_margin's
    ``signed_margin``). Candidates: red voxel centres within ``tol`` of the
    MTM or below it; red samples of any set when the MTM is not negative; red or yellow ones
    when it is at or above the threshold. The sets are taken in order, each against the MTM
    the ones before it left: a refined sample (which may lie beyond the mask) sets the MTM
    only where no voxel centre already brought it in line with the classes. ``None`` when
    no candidate's exact margin is below the MTM: red samples imply a negative MTM, yellow
    ones an MTM below the threshold, either way.
    """
    best = None
    for m, strong, points in sets:  # in order: a later set only where the MTM still disagrees
        sel = (m < 0) & (m < mtm + tol) if strong else (m < 0) & (mtm >= 0)
        if mtm >= threshold_mm:
            sel |= m < threshold_mm
        if not sel.any():
            continue
        p = points(np.flatnonzero(sel))
        below = np.flatnonzero(exact(p, (mtm,))[0] < mtm)  # (the side of the MTM, cheaply)
        if not len(below):
            continue
        mb, closest = exact(p[below])
        i = int(np.argmin(mb))
        if mb[i] < mtm:
            mtm = float(mb[i])
            best = mtm, p[below[i]].copy(), closest[i].copy()
    return best


def _smooth_chords(afield: _Field) -> bool:
    """Tell whether the classes' margins go to the smooth surface through the triangles.

    The smooth surface through the ablation triangles (see MeshDistance.bulge) rather than
    the flat triangles: on near-isotropic grids, and across thick slices where the zone was
    reconstructed sub-pixel (``afield.subpixel``, see _shape_based_field).

    There the triangles' vertices lie on the zone's surface without bias (balls of 5-15 mm on
    a 1 mm grid: mean radial error within 0.01 mm), and the chords alone read every margin
    low: 0.01-0.04 mm, on bench_accuracy seed 33 case 39 (a 5.3 mm zone inside a 6.7 mm
    tumor) the covered fraction 1.0 % points low. Across thick slices the binary refined
    stack's vertices lay 0.02-0.03 mm outside small balls and the chords offset that (the
    smooth surface made seed 33 case 39 worse there, 1.36 -> 1.95 % on 3 mm slices); the
    sub-pixel stack's vertices follow the mask (seed 45 case 17 on 3 mm slices: the zone's
    mean radial error -0.027 mm, its mask's voxel volume -0.021 mm), and the smooth surface
    took that case's class volume from 1.90 to 1.36 %.
    The MTM (the surface's minimum) keeps the flat triangles: its estimator (neighbour-
    averaged vertex margins, the tips' curvature extrapolation) was tuned with them, and on
    the benchmark's 1 mm grids the smooth surface raised every MTM by 0.01-0.02 mm, the bias
    to 0.00 but the worst errors up by as much; the voxel centres that hold the MTM to the
    classes (_lowest_sample) are measured like the classes.
    """
    return bool(np.all(afield.step == 1.0) or afield.subpixel)


def _below_surface_warnings(
    surface_mtm: float, surface_limit: float, mtm: float, point: np.ndarray, tsurf: Mesh
) -> list[str]:
    """Say why the MTM is a tumor sample's margin below the surface's minimum, if it matters.

    Returns a list of one warning, or an empty list.

    The surface's minimum is that of its vertex margins averaged over their neighbours (about
    a voxel around: see analyze_margin), so it can lie a little above the exact margin of a
    voxel centre next to it, and a smooth surface cuts a tip a fraction of a voxel short;
    taking the sample's margin then only moves the MTM to a bound the truth cannot exceed.
    Within the surface's stated resolution limit ``surface_limit`` (mm) this is the method
    at work, not news: no warning. Beyond it the surface misses part of the mask (a part too
    thin or too small for the reconstruction), and the warning says by how much and whether
    the sample lies outside the reconstructed surface.
    """
    gap = surface_mtm - mtm
    if gap <= surface_limit:
        return []
    dist = MeshDistance(tsurf)
    d, c, f = dist.query_faces(point[None, :])
    if dist.outside(point[None, :], c, f)[0]:
        why = (
            f"a point of the tumor lies {float(d[0]):.1f} mm outside its reconstructed surface "
            "(a part too thin or too small for it)"
        )
    else:
        why = "the tumor's reconstructed surface misses a low margin inside it"
    return [
        f"{why}: the MTM is that point's exact margin, {gap:.1f} mm below the surface's "
        f"minimum (more than its {surface_limit:.1f} mm resolution limit)"
    ]


#: each mask's contribution to the stated resolution limit, as a fraction of the spacing along
#: each grid axis: in-plane and across thick slices on a grid with one thick axis; on a
#: near-isotropic grid. Calibrated on benchmarks/bench_accuracy.py (random spheres and
#: ellipsoids, seed 9), checked on another seed (see benchmarks/README.md). Across thick
#: slices the fraction is of the reconstruction's refined rows (hz / ceil(hz / pixel)), not
#: of the slice: where the surface turns flat across the slices (a cap's top) the rows place
#: it, within half a row (pole errors of balls up to 0.34 mm on 0.8 x 0.8 x 5 mm slices,
#: rows 0.71 mm; up to 0.39 mm on 1.2 x 1.2 x 3 mm ones, rows 1.0 mm); 0.35 of a row is the
#: former 0.05 of a 5 mm slice at 0.8 mm pixels (0.25 mm), 0.35 instead of 0.15 mm on 3 mm
#: slices at 1.2 mm pixels. Across thick
#: slices, on top of the fraction, a term measured from the case: LIMIT_DEPARTURE_GAIN times
#: how far the mask's sections depart from the smooth model near the point (_slice_departure):
#: about 0 for ellipsoids (their tight limit), up to 0.3 mm for the irregular synthetic lesions
#: on 3-5 mm CT slices (tests/test_synthetic.py), which read up to 0.59 mm high; the gain is
#: the smallest whole number that keeps their truth inside the limit. The departure is that of
#: the surface between slices: for the in-plane part of the direction it counts 4 u (1 - u)
#: (u the point's distance from the nearest slice centre, in slices), in full across them
LIMIT_INPLANE_THICK_GRID = 0.40
LIMIT_ACROSS_SLICES = 0.35
LIMIT_ISOTROPIC = 0.20
LIMIT_DEPARTURE_GAIN = 2.0


def _surface_error_sd(
    grid: _Grid, n_lps: np.ndarray, fld: _Field | None = None, lps: np.ndarray | None = None
) -> float:
    """Localisation limit (mm) of a mask's reconstructed surface along the unit direction ``n``.

    Per grid axis a fraction of the spacing (LIMIT_*), combined over the components of ``n``
    along the grid's axes. Across thick slices the fraction is of the refined rows, not of the
    slice: the slice contours are interpolated with the sections' curvature onto rows no
    farther apart than a pixel and the caps modelled (see _shape_based_field), so the error
    there is set by the rows and pixels more than by the slice thickness, as long as the
    object is as smooth as that model: with ``fld`` (the mask's field) and
    ``lps`` (the surface point, on that mask's side), the sections' departure from the model
    there (_slice_departure) times LIMIT_DEPARTURE_GAIN is added in quadrature, for the part
    of ``n`` in the slice plane only as far as the point lies between two slices (the
    departure is the surface's between slices; on a slice its contour is the pixels'); near
    a part seen on one slice only (reconstructed as the slab of its slice, its true extent across
    the slices anywhere between 0 and twice the thickness), half the thickness, near a part
    on two slices (whose caps' curvature the mask does not give) how far its caps may end from
    the modelled ones, and near the caps of a part on more slices how far their end sections'
    pixel counts let them move, times the component of ``n`` across the slices (see
    _unknown_extent), in place of the rows' term where larger.
    """
    t = _surface_error_terms(grid, n_lps, fld, lps)
    return math.sqrt(t["pixels"] ** 2 + max(t["rows"], t["caps"]) ** 2 + t["departure"] ** 2)


def _surface_error_terms(
    grid: _Grid, n_lps: np.ndarray, fld: _Field | None = None, lps: np.ndarray | None = None
) -> dict[str, float]:
    """Return the terms of :func:`_surface_error_sd` (mm), each along the direction ``n``.

    ``pixels``: the in-plane pixels' fraction (on a near-isotropic grid the whole grid term);
    ``rows``: the refined rows' fraction across thick slices; ``caps``: how far a cap the mask
    leaves open may end from the modelled one (_unknown_extent), which replaces ``rows`` where
    larger; ``departure``: LIMIT_DEPARTURE_GAIN times the sections' departure from the model.
    The limit is sqrt(pixels^2 + max(rows, caps)^2 + departure^2).
    """
    sp = grid.spacing_xyz
    comp = grid.direction.T @ np.asarray(n_lps, dtype=float)  # along the grid's x, y, z axes
    thick = sp > THICK_RATIO * sp.min()
    step = sp.copy()
    if int(thick.sum()) != 1:
        pixels = float(np.sqrt(np.sum((LIMIT_ISOTROPIC * step * comp) ** 2)))
        return {"pixels": pixels, "rows": 0.0, "caps": 0.0, "departure": 0.0}
    frac = np.where(thick, LIMIT_ACROSS_SLICES, LIMIT_INPLANE_THICK_GRID)
    # across the slices the reconstruction's own sampling: its refined rows
    # (_shape_based_field: hz / ceil(hz / the finest pixel))
    hz = float(sp[thick][0])
    step[thick] = hz / max(1, math.ceil(hz / float(sp[~thick].min())))
    term = frac * step * comp
    terms = {
        "pixels": float(np.sqrt(np.sum(term[~thick] ** 2))),
        "rows": float(np.abs(term[thick]).sum()),
        "caps": 0.0,
        "departure": 0.0,
    }
    if fld is None or fld.departure is None or lps is None:
        return terms
    at = grid.to_index(np.asarray(lps, dtype=float)[None])
    idx = at - fld.offset
    dep = float(
        ndimage.map_coordinates(fld.departure, idx.T, order=1, mode="nearest", prefilter=False)[0]
    )
    # the departure is that of the surface BETWEEN slices (a parabola from its chord: 4 u (1 - u)
    # of its crest at the fraction u of the way); on a slice the in-plane contour is the pixels'
    # own: the in-plane part of n takes it by that profile, the part across the slices in full
    # (there the cap's height is the model's, wherever the point lies)
    k = float(at[0, 2 - int(np.argmax(thick))])  # (index z, y, x; thick: x, y, z)
    u = abs(k - round(k))  # slice centres at whole indices
    across = min(float(np.abs(comp[thick]).sum()), 1.0)
    dep *= math.hypot(across, math.sqrt(1.0 - across * across) * 4.0 * u * (1.0 - u))
    terms["departure"] = LIMIT_DEPARTURE_GAIN * dep
    if fld.extent is not None:  # near a cap the mask leaves open: its height's own limit
        half = float(
            ndimage.map_coordinates(fld.extent, idx.T, order=1, mode="nearest", prefilter=False)[0]
        )
        # it replaces the rows' term where it is the larger (both say where the surface may lie
        # across the slices, the cap's the derived one)
        terms["caps"] = half * float(np.abs(comp[thick]).sum())
    return terms


def _reconstructed_ml(fld: _Field, n_voxels: int) -> float:
    """Volume (ml) of a field's sub-voxel reconstruction.

    The partial volume of the interpolated sections across thick slices, the voxel count on
    near-isotropic grids.
    """
    if fld.volume_mm3 is None:
        return n_voxels * fld.grid.voxel_ml
    return fld.volume_mm3 / 1000.0


#: what ``tumor_reconstructed_volume_ml`` was measured on (MarginResult.tumor_reconstruction)
RECONSTRUCTION_STAR = "smooth star-shaped surface of degree {degree} reproducing the mask"
RECONSTRUCTION_SECTIONS = "slice contours interpolated across the thick slices"
RECONSTRUCTION_VOXELS = "voxel count"


def _tumor_reconstructed_ml(
    fld: _Field, star: tuple[float, int] | None, n_voxels: int
) -> tuple[float, str]:
    """Volume (ml) of the tumor's reconstruction, and what it was measured on.

    The smooth star-shaped surface that reproduces the mask where there is one that pins
    the volume (``star``, the result of _star_volume_mm3 on the mask); otherwise the
    field's reconstruction (_reconstructed_ml).
    """
    if star is not None:
        return star[0] / 1000.0, RECONSTRUCTION_STAR.format(degree=star[1])
    if fld.volume_mm3 is None:
        return _reconstructed_ml(fld, n_voxels), RECONSTRUCTION_VOXELS
    return _reconstructed_ml(fld, n_voxels), RECONSTRUCTION_SECTIONS


#: the smooth star-shaped tumor surface (see _star_volume_mm3): degrees tried in order on
#: near-isotropic grids and across thick slices. Degree 1-2: round shapes (a ball seen from
#: off its centre needs 2). Degrees 3-4 reproduce most ellipsoids on 1 mm grids, but cost
#: 0.1-0.25 s there for volumes no better than the count; across thick slices, between
#: slices, a surface of degree 2 that reproduces the mask can still be off (an ellipsoid on
#: 5 mm slices read 1.7 % low with a range of +/- 1.1 %)
STAR_DEGREES = (1, 2)
STAR_DEGREES_THICK = (1,)
#: ... the largest half-range (fraction of the volume) of the volumes of all such surfaces
#: that reproduce the mask, near-isotropic and across thick slices (calibrated on random
#: balls, ellipsoids and irregular lesions of own seeds: benchmarks/README.md)
STAR_MAX_HALF_RANGE = 0.01
STAR_MAX_HALF_RANGE_THICK = 0.025
#: ... a degree above 1 is not tried when its least-squares guess puts more than this fraction
#: of the pairs on the wrong side (1 and 3 mm grids: consistent fits at most 6 %, irregular
#: lesions 10-40 %): their linear programs cost more
STAR_SCREEN_WRONG_SIDE = 0.08
#: ... neighbour pairs needed per coefficient
STAR_PAIRS_PER_COEF = 10
#: ... Gauss-Legendre nodes in cos(polar angle) of the volume quadrature (exact for the cube
#: of a radius function of degree L with 3 L / 2 + 1 or more; twice as many azimuths)
STAR_QUADRATURE = 12


def _star_basis(u: np.ndarray, degree: int) -> np.ndarray:
    """Monomials of degrees ``degree`` and ``degree - 1`` of unit vectors ``u`` (n, 3).

    On the unit sphere they span the real spherical harmonics of degree <= ``degree``
    ((degree + 1)^2 functions, as many as the monomials).
    """
    cols = []
    for d in (degree, degree - 1):
        for i in range(d + 1):
            for j in range(d - i + 1):
                cols.append(u[:, 0] ** i * u[:, 1] ** j * u[:, 2] ** (d - i - j))
    return np.column_stack(cols)


@cache
def _sphere_quadrature(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return unit vectors and weights of a quadrature over the sphere.

    A product of Gauss-Legendre nodes in cos(polar angle) and uniform azimuths.
    """
    x, w = np.polynomial.legendre.leggauss(n)
    phi = (np.arange(2 * n) + 0.5) * math.pi / n
    ct = np.repeat(x, 2 * n)
    st = np.sqrt(1.0 - ct * ct)
    ph = np.tile(phi, n)
    u = np.column_stack([st * np.cos(ph), st * np.sin(ph), ct])
    return u, np.repeat(w, 2 * n) * (math.pi / n)


@cache
def _highs_core():
    """Return scipy's bindings of HiGHS (``scipy.optimize._highspy._core``), or None.

    The solver ``linprog(method="highs-ds")`` runs, without the 1-2 ms of Python per call
    around it (its input checks and option validation: most of a small program's time).
    Private to scipy (scipy >= 1.15): ``None`` when absent or changed, and then
    :func:`_solve_lp` calls ``linprog``.
    """
    try:
        from scipy.optimize._highspy import _core as h

        h.HighsLp, h._Highs, h.HighsOptions, h.MatrixFormat.kColwise  # noqa: B018 - (checks)
        h.HighsModelStatus.kOptimal, h.HighsDebugLevel.kHighsDebugLevelNone  # noqa: B018
        h.simplex_constants.SimplexStrategy.kSimplexStrategyDual  # noqa: B018
    except (ImportError, AttributeError):
        return None
    return h


def _solve_lp(
    cost: np.ndarray, A: np.ndarray, b: np.ndarray, lb: np.ndarray, ub: np.ndarray
) -> np.ndarray | None:
    """Minimise ``cost @ x`` subject to ``A x <= b`` and ``lb <= x <= ub`` (dense, small).

    Exactly what ``scipy.optimize.linprog(cost, A_ub=A, b_ub=b, bounds=..., method="highs-ds")``
    computes, with the same acceptance (status 0): HiGHS's dual simplex with linprog's
    options on the same model (the matrix in compressed columns without its zeros), the
    solution accepted when HiGHS finds it optimal and it meets the bounds and the rows
    within linprog's tolerance (``10 sqrt(1e-9)``). ``None`` otherwise.
    """
    h = _highs_core()
    if h is None:
        from scipy.optimize import linprog

        lp = linprog(cost, A_ub=A, b_ub=b, bounds=np.column_stack([lb, ub]), method="highs-ds")
        return lp.x if lp.status == 0 else None
    n, k = A.shape
    nz = A.T != 0  # (the compressed columns of scipy.sparse.csc_array(A))
    start = np.zeros(k + 1, dtype=np.int32)
    np.cumsum(np.count_nonzero(nz, axis=1), out=start[1:])
    model = h.HighsLp()
    model.num_col_, model.num_row_ = k, n
    model.a_matrix_.num_col_, model.a_matrix_.num_row_ = k, n
    model.a_matrix_.format_ = h.MatrixFormat.kColwise
    model.col_cost_, model.col_lower_, model.col_upper_ = cost, lb, ub
    model.row_lower_, model.row_upper_ = np.full(n, -np.inf), b
    model.a_matrix_.start_ = start
    model.a_matrix_.index_ = np.nonzero(nz)[1].astype(np.int32)
    model.a_matrix_.value_ = A.T[nz]
    opts = h.HighsOptions()
    opts.presolve = "on"
    opts.solver = "simplex"
    opts.highs_debug_level = h.HighsDebugLevel.kHighsDebugLevelNone
    opts.log_to_console = opts.output_flag = False
    opts.simplex_strategy = h.simplex_constants.SimplexStrategy.kSimplexStrategyDual
    solver = h._Highs()
    solver.passOptions(opts)
    solver.passModel(model)
    solver.run()
    if solver.getModelStatus() != h.HighsModelStatus.kOptimal:
        return None
    sol = solver.getSolution()
    x = np.array(sol.col_value)
    slack = b - np.asarray(sol.row_value)
    tol = 10.0 * math.sqrt(1e-9)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(slack))):
        return None
    if np.any(x < lb - tol) or np.any(x > ub + tol) or np.any(slack < -tol):
        return None
    return x


def _lp_cutting_planes(
    cost: np.ndarray, A: np.ndarray, b: np.ndarray, lb: np.ndarray, ub: np.ndarray, x0
) -> np.ndarray | None:
    """Minimise ``cost @ x`` subject to ``A x <= b`` and ``lb <= x <= ub``, by cutting planes.

    The linear program is solved on the rows nearest to binding at the guess ``x0`` (all
    variables but the last), the rows it violates are added, until none is (few rows
    bind: one or two rounds). ``None`` if it has no bounded solution or does not converge
    in 8 rounds.
    """
    n, k = A.shape
    slack = (b - A[:, :-1] @ x0[: k - 1]) / A[:, -1]
    m = min(n, 30 * k)
    active = np.argpartition(slack, m - 1)[:m] if m < n else np.arange(n)
    for _ in range(8):
        x = _solve_lp(cost, A[active], b[active], lb, ub)
        if x is None:
            return None
        viol = A @ x - b
        bad = np.flatnonzero(viol > 1e-9)
        if len(bad) == 0:
            return x
        add = bad[np.argsort(viol[bad])[::-1][: 20 * k]]
        active = np.union1d(active, add)
    return None


def _star_volume_mm3(solid: np.ndarray, spacing_zyx) -> tuple[float, int] | None:
    """Volume (mm^3) of the smooth star-shaped surface that reproduces a binary mask.

    The surface is ``r(u)`` around a centre (the mask's centroid, moved to the centre of a
    degree-1 least-squares fit), ``r`` a real spherical-harmonic series of degree L. The
    mask constrains it through every pair of neighbouring voxels (along each axis) of which
    one is inside and the other outside: the surface passes
    between their centres, ``r(u_in) >= |p_in|`` and ``r(u_out) <= |p_out|``, linear in the
    coefficients. For each L of STAR_DEGREES (STAR_DEGREES_THICK on a grid with a thick
    axis) the linear program that maximises the common margin t of all pairs (in units of
    each pair's half-gap) is solved; the first L with t >= 0 has surfaces that reproduce
    every voxel of the mask, and the fit is the one most central between the pairs. It is
    used only when the mask pins the volume: the volumes of all surfaces of degree L that
    reproduce the mask (linearised about the fit) span at most +/- STAR_MAX_HALF_RANGE
    (STAR_MAX_HALF_RANGE_THICK). Irregular, noisy or non-star-shaped masks have no such
    surface at a low degree and give ``None``, as do masks with too few pairs.

    Parameters
    ----------
    solid : numpy.ndarray of bool
        The mask (z, y, x), cropped around the object.
    spacing_zyx : array_like
        Voxel spacing (mm) along z, y, x.

    Returns
    -------
    (float, int) or None
        The enclosed volume (mm^3, 1/3 of the integral of r^3 over directions) and the
        degree L; ``None`` when no surface is accepted.
    """
    sp = np.asarray(spacing_zyx, dtype=float)
    thick = bool(np.any(sp > THICK_RATIO * sp.min()))
    degrees = STAR_DEGREES_THICK if thick else STAR_DEGREES
    max_half_range = STAR_MAX_HALF_RANGE_THICK if thick else STAR_MAX_HALF_RANGE
    solid = np.pad(np.asarray(solid, dtype=bool), 1)
    n_vox = np.count_nonzero(solid)
    if n_vox == 0:
        return None
    pin, pout = [], []
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(None, -1), slice(1, None)
        a0 = solid[tuple(lo)]
        pair = np.argwhere(a0 != solid[tuple(hi)])  # one inside, the other outside
        first_in = a0[tuple(pair.T)][:, None]
        step = np.zeros(3)
        step[ax] = 1.0
        pin.append(np.where(first_in, pair, pair + step))
        pout.append(np.where(first_in, pair + step, pair))
    others = [tuple(a for a in range(3) if a != ax) for ax in range(3)]
    centre = np.array(
        [
            np.dot(np.count_nonzero(solid, axis=others[ax]), np.arange(solid.shape[ax]))
            for ax in range(3)
        ]
    ) / float(n_vox)
    pin = (np.vstack(pin) - centre) * sp
    pout = (np.vstack(pout) - centre) * sp
    if len(pin) < STAR_PAIRS_PER_COEF * (degrees[0] + 1) ** 2:
        return None
    # the centre: the mask's centroid, moved to the centre of the degree-1 least-squares fit
    # (on thick slices the centroid can be off by a good part of a slice, and a ball seen
    # from off its centre needs degree 2)
    for _ in range(2):
        mid = (pin + pout) / 2
        r_mid = np.linalg.norm(mid, axis=1)
        if r_mid.min() <= 0.0:
            return None
        b1 = np.column_stack([np.ones(len(mid)), mid / r_mid[:, None]])
        shift = np.linalg.lstsq(b1.T @ b1, b1.T @ r_mid, rcond=None)[0][1:]
        pin -= shift
        pout -= shift
    r_in = np.linalg.norm(pin, axis=1)
    r_out = np.linalg.norm(pout, axis=1)
    if r_in.min() <= 0.0:
        return None  # the centre is on the boundary: not star-shaped around it
    # each pair's half-gap (a floor where the pair runs across the radial direction)
    gap = np.maximum((r_out - r_in) / 2, 0.05 * float(sp.min()))
    u_in, u_out = pin / r_in[:, None], pout / r_out[:, None]
    rhs = np.concatenate([-r_in, r_out])
    uq, wq = _sphere_quadrature(STAR_QUADRATURE)
    for degree in degrees:
        k = (degree + 1) ** 2
        if len(r_in) < STAR_PAIRS_PER_COEF * k:
            return None
        b_in, b_out = _star_basis(u_in, degree), _star_basis(u_out, degree)
        # -r(u_in) + t gap <= -|p_in| ; r(u_out) + t gap <= |p_out|
        A = np.vstack([np.column_stack([-b_in, gap]), np.column_stack([b_out, gap])])
        # a guess: least squares through the pairs' mid-radii
        mid = (r_in + r_out) / 2
        x0 = np.linalg.lstsq(b_in.T @ b_in + b_out.T @ b_out, (b_in + b_out).T @ mid, rcond=None)[0]
        if degree > 1 and np.mean(rhs - A[:, :-1] @ x0 < 0.0) > STAR_SCREEN_WRONG_SIDE:
            continue
        cost = np.zeros(k + 1)
        cost[-1] = -1.0
        lb, ub = np.full(k + 1, -np.inf), np.full(k + 1, np.inf)
        ub[-1] = 1.0  # t <= 1
        x = _lp_cutting_planes(cost, A, rhs, lb, ub, x0)
        if x is None or x[-1] < 0.0:
            continue
        bq = _star_basis(uq, degree)
        rq = bq @ x[:-1]
        if rq.min() <= 0.0:
            return None
        vol = float(np.dot(wq, rq**3) / 3.0)
        # the volumes of all surfaces of this degree that reproduce the mask (t >= 0),
        # linearised about the fit (dV = integral of r^2 dr)
        grad = np.append((wq * rq**2) @ bq, 0.0)
        span = []
        for sgn in (1.0, -1.0):
            lb[-1] = ub[-1] = 0.0  # t = 0
            e = _lp_cutting_planes(sgn * grad, A, rhs, lb, ub, x)
            if e is None:
                return None
            span.append(float(grad @ (e - x)))
        if (span[1] - span[0]) / 2 > max_half_range * vol:
            return None
        return vol, degree
    return None


def _mesh_smoother(faces: np.ndarray, n: int):
    """Build the neighbour-averaging operator of mesh vertex values (sparse; None: no faces)."""
    if len(faces) == 0:
        return None
    from scipy import sparse

    i = np.concatenate(
        [faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]]
    )
    j = np.concatenate(
        [faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]]
    )
    adj = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # duplicates (shared edges) count once
    adj = adj + sparse.identity(n, format="csr")
    deg = np.asarray(adj.sum(axis=1)).ravel()
    return adj, deg


def _smooth_on_mesh(values: np.ndarray, smoother, iters: int) -> np.ndarray:
    """Average each vertex value with its mesh neighbours (``_mesh_smoother``), ``iters`` times."""
    if iters <= 0 or smoother is None:
        return values
    adj, deg = smoother
    out = np.asarray(values, dtype=float)
    for _ in range(iters):
        out = (adj @ out) / deg
    return out


#: the masks (by name) whose thick-slice reconstruction is sub-pixel in-plane (see
#: _shape_based_field)
SUBPIXEL_SLICES = ("ablation",)


def _field_and_surface(
    mask,
    box,
    grid: _Grid,
    smooth_vox: float,
    name: str,
    warns: list[str],
    shift_from: Mesh | None = None,
    poles: bool = True,
):
    """Anti-aliased field and surface of a mask.

    The blur is limited to a fraction of the object's smallest extent (a lesion a few
    voxels across would shrink under the full blur), and an object that still has no 0.5
    level is retried with less blur, finally none. ``shift_from``: see :func:`_surface`.
    ``poles``: the sub-voxel pole caps of near-isotropic grids (see _pole_coverage; the
    diameter's surface goes without: on a sphere made rounder by them the exact diameter
    search prunes little, 20x slower); across thick slices, for the masks named in
    ``SUBPIXEL_SLICES``, the sub-pixel sections (see _shape_based_field).
    """
    sp = grid.spacing_zyx
    thick = [ax for ax in range(3) if sp[ax] > THICK_RATIO * sp.min()]
    ext = min(
        s.stop - s.start for ax, s in enumerate(box) if ax not in thick[:1] or len(thick) != 1
    )
    requested = smooth_vox
    smooth_vox = min(smooth_vox, 0.15 * ext)
    if smooth_vox < requested:
        warns.append(
            f"the {name} is only {ext} voxels across: measured with less anti-aliasing, "
            "the margin is less precise"
        )
    for sv in dict.fromkeys((smooth_vox, min(smooth_vox, 0.6), 0.0)):
        fld = _smoothed_field(mask, box, grid, sv, poles, poles and name in SUBPIXEL_SLICES)
        try:
            surf = _surface(fld, shift_from)
        except AblationError:
            continue
        if sv != smooth_vox and sv < requested and smooth_vox == requested:
            warns.append(
                f"the {name} is only a few voxels across: measured with less anti-aliasing, "
                "the margin is less precise"
            )
        return fld, surf
    raise AblationError(f"the {name} mask is too small to measure (no surface)")


def _tumor_diameter(tmask, tbox, tgrid: _Grid, tfield: _Field, tsurf: Mesh) -> float:
    """Max diameter (mm) of the tumor.

    Lighter anti-aliasing than for margins, which would round corners off; across thick
    slices the reconstruction is the same whatever anti-aliasing is asked for (see
    :func:`_shape_based_field`): the margin's surface is reused.
    """
    if tfield.blur is not None and not np.all(tfield.step == 1.0):
        dverts = tsurf.verts
    else:
        # the blur correction from the margin's surface of the same tumor (see _surface)
        dverts = _field_and_surface(
            tmask, tbox, tgrid, DIAMETER_SMOOTH_VOX, "tumor", [], shift_from=tsurf, poles=False
        )[1].verts
    return _max_diameter(dverts)


def max_3d_diameter_mm(mask: sitk.Image, *, label: int | None = None, name: str = "tumor") -> float:
    """Measure a structure's max 3D diameter as the margin analysis measures the tumor's.

    The report's "Tumor max 3D diameter" (``tumor_max_diameter_mm``): the largest distance
    between two points of the sub-voxel surface the analysis reconstructs from the mask.
    Segment's live readout shows this figure, so one diameter is on screen.

    Parameters
    ----------
    mask : SimpleITK.Image
        The labels (any non-zero voxel, or ``label``).
    label : int, optional
        The label value of the structure (default: every non-zero voxel).
    name : str, optional
        What the structure is, for the messages.

    Returns
    -------
    float
        The diameter in mm: :func:`analyze_margin`'s ``tumor_max_diameter_mm`` for the same
        tumor mask.

    Raises
    ------
    AblationError
        If the mask is not 3D, is empty, or is too small to have a surface.
    """
    m = _MaskSource(mask, name, label)
    if m.box is None:
        raise AblationError(f"the {name} mask is empty")
    grid = _Grid(mask)
    field, surf = _field_and_surface(m, m.box, grid, DEFAULT_SMOOTH_VOX, name, [])
    return _tumor_diameter(m, m.box, grid, field, surf)


def _max_diameter(verts: np.ndarray) -> float:
    return geometry.max_pairwise_distance(verts)


def _histogram_edges(m: np.ndarray) -> np.ndarray:
    lo, hi = math.floor(float(m.min())), math.ceil(float(m.max()))
    if hi <= lo:
        hi = lo + 1
    step = 0.5
    while (hi - lo) / step > 120:
        step *= 2
    return np.arange(lo, hi + step / 2, step)


def _shell_coverage(tmask: _MaskSource, tgrid: _Grid, tfield: _Field, afield: _Field, A, b):
    """Fraction of each peri-tumoral shell inside the ablation.

    A shell is the region outside the tumor within w mm of it.

    The distance to the tumor is that of its anti-aliased field's inside samples (an EDT on the
    field's sample grid, extended to the widest shell; about a third of a voxel: the shells are
    volumes, a sub-voxel surface is not needed here), read at the tumor voxel centres of a crop
    padded by the widest shell.
    """
    import edt

    wmax = max(SHELL_WIDTHS)
    box = tmask.box
    sp = tgrid.spacing_zyx
    pads = [math.ceil(wmax / s) + 1 for s in sp]
    lo = np.array([s.start - p for s, p in zip(box, pads)])
    hi = np.array([s.stop + p for s, p in zip(box, pads)])
    crop = tmask.crop(lo, hi)
    # the field's inside samples on a sample grid covering the crop (sample j of axis k at
    # grid index lo_k + j / f_k; the field's sample i at offset_k + i / f_k)
    f = np.rint(1.0 / tfield.step).astype(int)
    ext = np.zeros((hi - lo - 1) * f + 1, dtype=bool)
    shift = np.rint((tfield.offset - lo) * f).astype(int)
    inside = tfield.values >= tfield.level
    src, dst = [], []
    for k in range(3):
        a0 = max(0, -shift[k])
        a1 = min(inside.shape[k], ext.shape[k] - shift[k])
        src.append(slice(a0, a1))
        dst.append(slice(a0 + shift[k], a1 + shift[k]))
    ext[tuple(dst)] = inside[tuple(src)]
    spacing = tfield.sample_spacing_mm()
    half = 0.5 * float(np.mean(spacing))  # as _Guide: the surface half a sample beyond a centre
    an = tuple(float(v) for v in spacing)
    d_out = edt.edt(~ext, anisotropy=an, black_border=False, parallel=1)
    at_vox = tuple(slice(None, None, int(v)) for v in f)
    d = d_out[at_vox] - half  # distance of each crop voxel centre to the tumor (<= 0: inside)
    shell = ~crop & (d <= wmax)
    idx = np.argwhere(shell)
    if len(idx) == 0:
        return {float(w): float("nan") for w in SHELL_WIDTHS}
    covered = _lattice_inside(idx, tgrid.M, tgrid.to_lps(lo), afield, A, b)
    d_shell = d[shell]
    out = {}
    for w in SHELL_WIDTHS:
        sel = d_shell <= w
        out[float(w)] = float(covered[sel].mean()) if sel.any() else float("nan")
    return out


# ----------------------------------------------------------------------------- analytic phantoms


def sphere_image(
    size_xyz, spacing_xyz, origin_xyz, centre_lps, radius_mm, direction=None
) -> sitk.Image:
    """Binary sphere (voxel centre inside the sphere = 1) on a grid.

    For verification and benchmarks.

    Parameters
    ----------
    size_xyz, spacing_xyz, origin_xyz : sequence of float
        Grid size (voxels), spacing (mm) and origin (LPS mm), SimpleITK ``(x, y, z)`` order.
    centre_lps : sequence of float
        Sphere centre, LPS mm.
    radius_mm : float
        Sphere radius.
    direction : array_like, optional
        3 x 3 direction cosines of the grid (default identity).

    Returns
    -------
    SimpleITK.Image
        The mask (uint8).
    """
    img = sitk.Image([int(s) for s in size_xyz], sitk.sitkUInt8)
    img.SetSpacing([float(s) for s in spacing_xyz])
    img.SetOrigin([float(o) for o in origin_xyz])
    if direction is not None:
        img.SetDirection([float(d) for d in np.asarray(direction, dtype=float).ravel()])
    g = _Grid(img)
    arr = np.zeros(g.shape, dtype=np.uint8)
    c_idx = g.to_index(np.asarray(centre_lps, dtype=float))
    # index-space half extents of the sphere's bounding box (any direction)
    ext = radius_mm * np.linalg.norm(g.Minv, axis=1) + 1
    lo = np.maximum(np.floor(c_idx - ext).astype(int), 0)
    hi = np.minimum(np.ceil(c_idx + ext).astype(int) + 1, np.asarray(g.shape))
    if np.all(hi > lo):
        zz, yy, xx = np.meshgrid(*[np.arange(a, h) for a, h in zip(lo, hi)], indexing="ij")
        idx = np.stack([zz, yy, xx], axis=-1).reshape(-1, 3)
        inside = ((g.to_lps(idx) - np.asarray(centre_lps)) ** 2).sum(axis=1) <= radius_mm**2
        arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = inside.reshape(zz.shape)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


def sphere_volume(r: float) -> float:
    """Volume (mm^3) of a ball of radius ``r`` mm (0 for a negative radius).

    Parameters
    ----------
    r : float
        Radius (mm).

    Returns
    -------
    float
        The volume in mm^3.
    """
    return 4.0 / 3.0 * math.pi * max(r, 0.0) ** 3


def lens_volume(r1: float, r2: float, d: float) -> float:
    """Volume (mm^3) of the intersection of two balls.

    Parameters
    ----------
    r1, r2 : float
        Radii (mm).
    d : float
        Distance between the centres (mm).

    Returns
    -------
    float
        The volume of the intersection in mm^3.
    """
    r1, r2, d = max(r1, 0.0), max(r2, 0.0), abs(d)
    if d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        return sphere_volume(min(r1, r2))
    return (
        math.pi
        * (r1 + r2 - d) ** 2
        * (d * d + 2 * d * r2 - 3 * r2 * r2 + 2 * d * r1 + 6 * r2 * r1 - 3 * r1 * r1)
        / (12 * d)
    )


def sphere_class_volumes_ml(r_t: float, r_a: float, d: float, t: float) -> dict[str, float]:
    """Exact coverage-class volumes (ml) of a tumor ball and an ablation ball.

    Parameters
    ----------
    r_t, r_a : float
        Radii of the tumor and ablation balls (mm).
    d : float
        Distance between their centres (mm).
    t : float
        Threshold (mm).

    Returns
    -------
    dict
        ``covered_with_margin``, ``insufficient_margin``, ``uncovered`` (ml).
    """
    vt = sphere_volume(r_t)
    covered = lens_volume(r_t, r_a, d)
    green = lens_volume(r_t, r_a - t, d) if r_a - t > 0 else 0.0
    if t < 0:  # not used by the plugin, kept well-defined
        green = covered
    return {
        "covered_with_margin": green / 1000,
        "insufficient_margin": (covered - green) / 1000,
        "uncovered": (vt - covered) / 1000,
    }


__all__ = [
    "OCTANTS",
    "THRESHOLD_PRESETS",
    "MarginResult",
    "Mesh",
    "MeshDistance",
    "analyze_margin",
    "lens_volume",
    "octant_name",
    "round_half_away",
    "sphere_class_volumes_ml",
    "sphere_image",
]
