"""Physical-space conventions (DESIGN.md section 2).

* World coordinates are patient LPS in millimetres.
* Arrays are ``(z, y, x)`` (``SimpleITK.GetArrayFromImage`` order); SimpleITK
  spacing / origin / index are ``(x, y, z)``. Every reversal happens here.
* Every loaded image is brought to identity direction: axis-aligned acquisitions by
  ``DICOMOrient`` (a permutation/flip of the voxels, no resampling), oblique ones by
  resampling onto an axis-aligned LPS grid.
* A napari layer of an identity-direction image has ``scale = spacing[::-1]`` and
  ``translate = origin[::-1]``; its world axes are (S, P, L).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import AblationError

#: napari world axis labels for (z, y, x) of an identity-direction LPS image.
AXIS_LABELS = ("S", "P", "L")
UNITS = ("mm", "mm", "mm")
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def direction_matrix(img: sitk.Image) -> np.ndarray:
    return np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)


def is_identity_direction(img: sitk.Image, tol: float = 1e-6) -> bool:
    return bool(np.allclose(direction_matrix(img), np.eye(3), atol=tol))


def is_signed_permutation(direction: np.ndarray, tol: float = 1e-4) -> bool:
    """True when every column of the direction matrix is a signed unit axis."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    rounded = np.round(d)
    if not np.allclose(d, rounded, atol=tol):
        return False
    return bool(np.allclose(np.abs(rounded).sum(axis=0), 1) and np.allclose(np.abs(rounded).sum(axis=1), 1))


def orientation_code(img: sitk.Image) -> str:
    """Three-letter ITK/DICOM orientation code, e.g. ``'LPS'`` or ``'RAI'`` (oblique: closest)."""
    return sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(img.GetDirection())


def geometry_dict(img: sitk.Image) -> dict[str, Any]:
    """JSON-able geometry of an image (SimpleITK ``(x, y, z)`` order)."""
    return {
        "size": [int(s) for s in img.GetSize()],
        "spacing": [float(s) for s in img.GetSpacing()],
        "origin": [float(o) for o in img.GetOrigin()],
        "direction": [float(d) for d in img.GetDirection()],
    }


def apply_geometry(img: sitk.Image, geom: dict[str, Any]) -> sitk.Image:
    """Set spacing, origin and direction of ``img`` from :func:`geometry_dict` output."""
    if list(img.GetSize()) != list(geom["size"]):
        raise AblationError(f"image size {list(img.GetSize())} does not match the recorded size {geom['size']}")
    img.SetSpacing([float(s) for s in geom["spacing"]])
    img.SetOrigin([float(o) for o in geom["origin"]])
    img.SetDirection([float(d) for d in geom["direction"]])
    return img


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def _axis_aligned_grid(img: sitk.Image) -> tuple[list[float], list[float], list[int]]:
    """Origin, spacing and size (x, y, z) of an identity-direction grid covering ``img``."""
    d = direction_matrix(img)
    size = np.asarray(img.GetSize(), dtype=float)
    spacing_in = np.asarray(img.GetSpacing(), dtype=float)
    # The LPS axis gets the spacing of the image axis most aligned with it.
    spacing = np.empty(3)
    for world_axis in range(3):
        image_axis = int(np.argmax(np.abs(d[world_axis, :])))
        spacing[world_axis] = spacing_in[image_axis]
    # Physical bounding box of the voxel *regions* (centre +/- half a voxel).
    corners = []
    for corner in np.ndindex(2, 2, 2):
        idx = np.where(np.asarray(corner) == 1, size - 0.5, -0.5)
        corners.append(np.asarray(img.GetOrigin()) + d @ (idx * spacing_in))
    corners = np.asarray(corners)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    new_size = np.maximum(1, np.ceil((hi - lo) / spacing - 1e-6)).astype(int)
    origin = lo + spacing / 2
    return origin.tolist(), spacing.tolist(), new_size.tolist()


def orient_lps(img: sitk.Image, *, is_label: bool = False) -> tuple[sitk.Image, str | None]:
    """Bring ``img`` to identity direction in LPS.

    Returns the oriented image and a note for the user (``None`` when nothing but a
    lossless permutation/flip was needed). Axis-aligned images are permuted/flipped with
    ``DICOMOrient`` (no interpolation); oblique ones are resampled onto an axis-aligned
    grid with the spacing of the closest original axes (linear for images, nearest
    neighbour for labels).
    """
    if img.GetDimension() != 3:
        raise AblationError(f"expected a 3D image, got {img.GetDimension()}D")
    if is_identity_direction(img):
        return img, None
    d = direction_matrix(img)
    if is_signed_permutation(d):
        out = sitk.DICOMOrient(img, "LPS")
        out.SetDirection(IDENTITY)  # remove round-off in the cosines
        return out, None
    origin, spacing, size = _axis_aligned_grid(img)
    if is_label:
        interp = sitk.sitkNearestNeighbor
        default = 0.0
    else:
        interp = sitk.sitkLinear
        default = float(sitk.GetArrayViewFromImage(img).min())
    out = sitk.Resample(img, size, sitk.Transform(), interp, origin, spacing, IDENTITY, default, img.GetPixelID())
    angle = math.degrees(math.acos(max(-1.0, min(1.0, float(np.max(np.abs(d).max(axis=0).min()))))))
    note = (
        f"oblique acquisition (up to {angle:.1f} deg off the patient axes) resampled onto an "
        f"axis-aligned LPS grid of {size[0]}x{size[1]}x{size[2]} voxels"
    )
    return out, note


def layer_geometry(img: sitk.Image) -> dict[str, Any]:
    """``scale`` / ``translate`` / ``units`` / ``axis_labels`` for a napari layer.

    ``img`` must have identity direction (see :func:`orient_lps`).
    """
    if not is_identity_direction(img, tol=1e-4):
        raise AblationError("internal: layer geometry needs an identity-direction image (orient it first)")
    return {
        "scale": tuple(float(s) for s in img.GetSpacing()[::-1]),
        "translate": tuple(float(o) for o in img.GetOrigin()[::-1]),
        "units": UNITS,
        "axis_labels": AXIS_LABELS,
    }


def image_from_array(
    array: np.ndarray,
    spacing_zyx,
    origin_zyx,
    *,
    dtype=None,
) -> sitk.Image:
    """Identity-direction SimpleITK image from a ``(z, y, x)`` array and napari scale/translate."""
    arr = np.asarray(array)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing([float(s) for s in spacing_zyx][::-1])
    img.SetOrigin([float(o) for o in origin_zyx][::-1])
    img.SetDirection(IDENTITY)
    return img


def like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """SimpleITK image of ``array`` (z, y, x) on the grid of ``reference``."""
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.shape != tuple(reference.GetSize()[::-1]):
        raise AblationError(
            f"array of shape {arr.shape} does not fit the grid of shape {tuple(reference.GetSize()[::-1])}"
        )
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.CopyInformation(reference)
    return img


def index_to_lps(img: sitk.Image, index_zyx) -> np.ndarray:
    """LPS point (x, y, z) of a continuous array index (z, y, x)."""
    idx = np.asarray(index_zyx, dtype=float)[::-1]
    return np.asarray(img.TransformContinuousIndexToPhysicalPoint(idx.tolist()))


def lps_to_index(img: sitk.Image, point_lps) -> np.ndarray:
    """Continuous array index (z, y, x) of an LPS point (x, y, z)."""
    idx = img.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps])
    return np.asarray(idx[::-1])


def world_to_lps(world_zyx) -> np.ndarray:
    """napari world coordinates (z, y, x) -> LPS (x, y, z)."""
    return np.asarray(world_zyx, dtype=float)[..., ::-1]


def lps_to_world(point_lps) -> np.ndarray:
    """LPS (x, y, z) -> napari world coordinates (z, y, x)."""
    return np.asarray(point_lps, dtype=float)[..., ::-1]


def physical_bounds(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounding box (lo, hi) of the voxel regions of ``img``."""
    d = direction_matrix(img)
    size = np.asarray(img.GetSize(), dtype=float)
    sp = np.asarray(img.GetSpacing(), dtype=float)
    corners = []
    for corner in np.ndindex(2, 2, 2):
        idx = np.where(np.asarray(corner) == 1, size - 0.5, -0.5)
        corners.append(np.asarray(img.GetOrigin()) + d @ (idx * sp))
    corners = np.asarray(corners)
    return corners.min(axis=0), corners.max(axis=0)


def overlap_fraction(a: sitk.Image, b: sitk.Image) -> float:
    """Fraction of the bounding box of ``a`` that the bounding box of ``b`` overlaps."""
    alo, ahi = physical_bounds(a)
    blo, bhi = physical_bounds(b)
    inter = np.clip(np.minimum(ahi, bhi) - np.maximum(alo, blo), 0, None)
    vol = float(np.prod(ahi - alo))
    return float(np.prod(inter)) / vol if vol > 0 else 0.0


def voxel_volume_ml(img: sitk.Image) -> float:
    return float(np.prod(img.GetSpacing())) / 1000.0


def crop_box(mask_zyx: np.ndarray, spacing_zyx, pad_mm: float) -> tuple[slice, slice, slice] | None:
    """Index box of the non-zero voxels of ``mask_zyx`` padded by ``pad_mm`` (clipped to the array)."""
    nz = np.nonzero(mask_zyx)
    if len(nz[0]) == 0:
        return None
    box = []
    for axis, coords in enumerate(nz):
        pad = int(math.ceil(pad_mm / float(spacing_zyx[axis])))
        lo = max(0, int(coords.min()) - pad)
        hi = min(mask_zyx.shape[axis], int(coords.max()) + pad + 1)
        box.append(slice(lo, hi))
    return tuple(box)


def max_pairwise_distance(points) -> float:
    """Largest distance between two of the ``(n, 3)`` points (same units as the points).

    Exact: the two farthest points are vertices of the convex hull, so only those are
    compared. Flat (single-slice) or collinear point sets fall back to a 2D hull or to
    all points. Used for the maximum 3D diameter of a tumor.
    """
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist

    pts = np.asarray(points, dtype=float)
    if len(pts) < 2:
        return 0.0
    cand = pts
    if len(pts) > 4:
        try:
            cand = pts[ConvexHull(pts).vertices]
        except Exception:  # noqa: BLE001 - flat or collinear: a 2D hull, else all points
            cand = pts
            for drop in range(3):
                if np.ptp(pts[:, drop]) == 0:
                    keep = [a for a in range(3) if a != drop]
                    try:
                        cand = pts[ConvexHull(pts[:, keep]).vertices]
                    except Exception:  # noqa: BLE001
                        cand = pts
                    break
    if len(cand) > 6000:  # never expected on a hull; keeps memory bounded
        cand = cand[np.random.default_rng(0).choice(len(cand), 6000, replace=False)]
    return float(pdist(cand).max())
