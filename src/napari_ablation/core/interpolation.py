"""Shape-based interpolation of labels between annotated slices.

The user outlines a structure on a few slices along one axis (axial, coronal or
sagittal); the slices in between are filled from the signed distance (in mm, with the
in-plane spacing) of every annotated slice, blended along the axis with a smooth,
overshoot-free profile (PCHIP: piecewise cubic Hermite through all annotated slices of
the structure), thresholded at zero. Separate objects and holes come from the signed
distance itself. Rules:

* every label value is interpolated on its own (or only ``label``);
* annotated slices are never changed, and a voxel of another label is never
  overwritten (only background voxels of unannotated slices are filled);
* the work is done on the bounding box of the structure (padded by one voxel), so the
  cost scales with the structure, not the volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .errors import AblationError, NothingToDo

__all__ = [
    "annotated_slices",
    "bbox",
    "check_annotations",
    "dice",
    "interpolate_box",
    "interpolate_slices",
]

try:  # `edt` is 5-10x faster than scipy's EDT (FIELD-NOTES)
    import edt as _edt
except ImportError:  # pragma: no cover - edt is a dependency, scipy is the fallback
    _edt = None

AXIS_NAMES = {0: "z (axial)", 1: "y (coronal)", 2: "x (sagittal)"}
AXIS_CODES = {"z": 0, "y": 1, "x": 2}
METHODS = ("pchip", "linear", "nearest")


def axis_index(axis: int | str) -> int:
    """Return the array axis (0, 1, 2) of a slice orientation.

    Parameters
    ----------
    axis : int or str
        0, 1 or 2, or ``'z'``, ``'y'``, ``'x'``, or ``'axial'``, ``'coronal'``,
        ``'sagittal'`` (any case).

    Returns
    -------
    int
        0 for z (axial), 1 for y (coronal), 2 for x (sagittal).

    Raises
    ------
    AblationError
        For any other value.

    Examples
    --------
    >>> axis_index("coronal"), axis_index("X"), axis_index(0)
    (1, 2, 0)
    """
    if isinstance(axis, str):
        key = axis.strip().lower()
        key = {"axial": "z", "coronal": "y", "sagittal": "x"}.get(key, key)
        if key not in AXIS_CODES:
            raise AblationError(f"unknown slice axis '{axis}': use z, y or x")
        return AXIS_CODES[key]
    a = int(axis)
    if a not in (0, 1, 2):
        raise AblationError(f"slice axis must be 0, 1 or 2 (z, y, x), got {axis}")
    return a


def edt2d(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Compute the Euclidean distance of every True pixel to the nearest False pixel.

    Parameters
    ----------
    mask : numpy.ndarray
        2D boolean image.
    sampling : sequence of float
        Pixel size in mm along the two axes.

    Returns
    -------
    numpy.ndarray
        Distances in mm (0 on False pixels). Uses ``edt`` when installed, else
        ``scipy.ndimage.distance_transform_edt``.
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    if _edt is not None:
        return _edt.edt(
            mask, anisotropy=tuple(float(s) for s in sampling), black_border=False, parallel=1
        )
    return ndimage.distance_transform_edt(mask, sampling=sampling)


def edt3d(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Compute the Euclidean distance of every True voxel to the nearest False voxel.

    Parameters
    ----------
    mask : numpy.ndarray
        3D boolean volume.
    sampling : sequence of float
        Voxel size in mm, ``(z, y, x)``.

    Returns
    -------
    numpy.ndarray
        The float32 distances in mm (0 on False voxels; all zeros for an empty
        mask).
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.float32)
    if _edt is not None:
        return _edt.edt(
            mask, anisotropy=tuple(float(s) for s in sampling), black_border=False, parallel=1
        )
    return ndimage.distance_transform_edt(mask, sampling=sampling).astype(np.float32)


def signed_distance_2d(mask: np.ndarray, sampling: Sequence[float], far: float) -> np.ndarray:
    """Compute the signed distance of every pixel to the outline of a 2D mask.

    Parameters
    ----------
    mask : numpy.ndarray
        2D boolean image.
    sampling : sequence of float
        Pixel size in mm along the two axes.
    far : float
        Value for every pixel of an empty slice (and its negative for a full one).

    Returns
    -------
    numpy.ndarray
        The float32 distances in mm, negative inside the mask, positive outside.
    """
    if not mask.any():
        return np.full(mask.shape, far, dtype=np.float32)
    if mask.all():
        return np.full(mask.shape, -far, dtype=np.float32)
    out = edt2d(~mask, sampling)
    inside = edt2d(mask, sampling)
    return (out - inside).astype(np.float32)


def bbox(mask, pad_vox=(0, 0, 0)) -> tuple[slice, slice, slice] | None:
    """Find the index box of the non-zero voxels of a 3D array, padded and clipped.

    Two reductions (one over the whole array, one over the in-plane box) instead of
    ``np.nonzero``: about 15 ms on 512 x 512 x 300 voxels instead of about 600 ms.

    Parameters
    ----------
    mask : array_like
        3D array; non-zero voxels count.
    pad_vox : sequence of int, optional
        Voxels added on both sides along ``(z, y, x)``.

    Returns
    -------
    tuple of slice or None
        ``(z, y, x)`` slices clipped to the array, or None when nothing is non-zero.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((5, 6, 7), np.uint8)
    >>> a[2, 1:3, 4] = 1
    >>> bbox(a, (1, 0, 0))
    (slice(1, 4, None), slice(1, 3, None), slice(4, 5, None))
    """
    a = np.asarray(mask)
    proj = a.any(axis=0)
    rows = np.flatnonzero(proj.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(proj.any(axis=0))
    zs = np.flatnonzero(a[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].any(axis=(1, 2)))
    lo = np.array([zs[0], rows[0], cols[0]]) - np.asarray(pad_vox, int)
    hi = np.array([zs[-1], rows[-1], cols[-1]]) + 1 + np.asarray(pad_vox, int)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, a.shape)
    return tuple(slice(int(a0), int(a1)) for a0, a1 in zip(lo, hi))


def annotated_slices(labels: np.ndarray, axis: int, label: int | None = None) -> np.ndarray:
    """Find the slices along an axis that hold a label.

    Parameters
    ----------
    labels : numpy.ndarray
        Label array.
    axis : int
        The slice axis.
    label : int, optional
        The label value; any non-zero value when None.

    Returns
    -------
    numpy.ndarray
        Sorted slice indices.
    """
    m = (labels == label) if label is not None else (labels != 0)
    other = tuple(a for a in range(labels.ndim) if a != axis)
    return np.flatnonzero(m.any(axis=other))


def _fill_fraction(present: np.ndarray) -> float:
    """Fraction of the slices between the first and the last present one that are present."""
    if len(present) < 2:
        return 1.0
    return len(present) / float(present[-1] - present[0] + 1)


def check_annotations(
    labels: np.ndarray,
    axis: int,
    label: int | None = None,
    annotated: Sequence[int] | None = None,
    offset: int = 0,
) -> np.ndarray:
    """Check the annotated slice indices along an axis for interpolation.

    Detects annotations drawn on a different orientation (for example coronal
    slices while axial interpolation is asked): along the chosen axis they then
    cover every slice, while along another axis they are sparse.

    Parameters
    ----------
    labels : numpy.ndarray
        3D ``(z, y, x)`` label array.
    axis : int or str
        The slice axis (see :func:`axis_index`).
    label : int, optional
        The label value; any non-zero value when None.
    annotated : sequence of int, optional
        The annotated slice indices, given explicitly; by default the slices that
        hold the label.
    offset : int, optional
        Added to slice numbers in messages (when ``labels`` is a crop).

    Returns
    -------
    numpy.ndarray
        The annotated slice indices along ``axis``.

    Raises
    ------
    AblationError
        When the label is empty, fewer than two slices are annotated, every slice
        between the first and the last is already annotated, an explicit index is
        out of range, or the annotations look drawn on another orientation.
    """
    axis = axis_index(axis)
    what = f"label {label}" if label is not None else "the labels"
    if annotated is not None:
        idx = np.unique(np.asarray(list(annotated), dtype=int))
        if idx.size and (idx.min() < 0 or idx.max() >= labels.shape[axis]):
            raise AblationError(
                f"annotated slice index out of range 0..{labels.shape[axis] - 1} "
                f"along {AXIS_NAMES[axis]}"
            )
        if idx.size < 2:
            raise AblationError(
                f"interpolation needs at least two annotated slices along {AXIS_NAMES[axis]}; "
                f"got {idx.size}"
            )
        return idx
    mask = (labels == label) if label is not None else (labels != 0)
    present = [
        np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)
    ]
    idx = present[axis]
    fill = [_fill_fraction(p) for p in present]
    sparse_other = [a for a in range(3) if a != axis and len(present[a]) >= 2 and fill[a] <= 0.6]
    if idx.size == 0:
        raise AblationError(f"nothing to interpolate: {what} is empty")
    if (idx.size < 2 or fill[axis] >= 0.9) and sparse_other:
        other = min(sparse_other, key=lambda a: fill[a])
        raise AblationError(
            f"{what} look drawn on {AXIS_NAMES[other]} slices, not on {AXIS_NAMES[axis]} slices: "
            f"interpolate along {AXIS_NAMES[other].split()[0]} or view that orientation"
        )
    if idx.size < 2:
        raise AblationError(
            f"interpolation needs at least two annotated slices along {AXIS_NAMES[axis]}; "
            f"{what} is on slice {idx[0] + offset} only"
        )
    if fill[axis] >= 1.0:
        raise NothingToDo(
            f"nothing to interpolate: every {AXIS_NAMES[axis]} slice from {idx[0] + offset} "
            f"to {idx[-1] + offset} is already annotated"
        )
    return idx


def _interpolate_one(
    labels: np.ndarray,
    out: np.ndarray,
    axis: int,
    spacing_zyx,
    value: int,
    idx: np.ndarray,
    method: str,
) -> int:
    """Fill the gaps of one label value in ``out`` (``axis`` moved first); return voxels added."""
    lab = np.moveaxis(labels, axis, 0)
    res = np.moveaxis(out, axis, 0)
    sp = [float(s) for s in spacing_zyx]
    sp_in = [sp[a] for a in range(3) if a != axis]
    lo, hi = int(idx[0]), int(idx[-1])
    sub = lab[lo : hi + 1]
    mask = sub == value
    # in-plane bounding box of the structure on the annotated slices, +1 voxel of background
    proj = mask[idx - lo].any(axis=0)
    rows, cols = np.flatnonzero(proj.any(axis=1)), np.flatnonzero(proj.any(axis=0))
    if rows.size == 0:
        return 0
    r0, r1 = max(0, rows[0] - 1), min(lab.shape[1], rows[-1] + 2)
    c0, c1 = max(0, cols[0] - 1), min(lab.shape[2], cols[-1] + 2)
    far = float(np.hypot((r1 - r0) * sp_in[0], (c1 - c0) * sp_in[1])) + 1.0
    sdf = np.stack([signed_distance_2d(mask[k - lo, r0:r1, c0:c1], sp_in, far) for k in idx])
    todo = np.setdiff1d(np.arange(lo, hi + 1), idx)
    if todo.size == 0:
        return 0
    pos = idx.astype(float) * sp[axis]
    at = todo.astype(float) * sp[axis]
    if method == "pchip" and idx.size >= 3:
        from scipy.interpolate import PchipInterpolator

        vals = PchipInterpolator(pos, sdf, axis=0, extrapolate=False)(at)
    elif method in ("pchip", "linear"):
        j = np.clip(np.searchsorted(idx, todo) - 1, 0, idx.size - 2)
        t = ((todo - idx[j]) / (idx[j + 1] - idx[j])).astype(np.float32)[:, None, None]
        vals = (1 - t) * sdf[j] + t * sdf[j + 1]
    elif method == "nearest":
        j = np.clip(np.searchsorted(idx, todo) - 1, 0, idx.size - 2)
        nearer = np.where(todo - idx[j] <= idx[j + 1] - todo, j, j + 1)
        vals = sdf[nearer]
    else:
        raise AblationError(
            f"unknown interpolation method '{method}': use one of {', '.join(METHODS)}"
        )
    inside = vals < 0
    target = res[todo, r0:r1, c0:c1]  # a copy (fancy index)
    fill = inside & (target == 0)
    target[fill] = value
    res[todo, r0:r1, c0:c1] = target
    return int(fill.sum())


def interpolate_box(
    labels: np.ndarray,
    axis: int | str,
    spacing_zyx: Sequence[float],
    label: int | None = None,
    annotated: Sequence[int] | None = None,
    *,
    method: str = "pchip",
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Interpolate between annotated slices, returning only the changed box.

    Like :func:`interpolate_slices`, but only the bounding box of the labels can
    change, so for a 512 x 512 x 300 volume this avoids copying and comparing the
    whole array (the widgets write the changed voxels of the box through napari's
    undoable ``data_setitem``).

    Parameters
    ----------
    labels : array_like
        3D ``(z, y, x)`` integer (or boolean) label array.
    axis : int or str
        The slice axis: 0/``'z'``/``'axial'``, 1/``'y'``/``'coronal'`` or
        2/``'x'``/``'sagittal'``.
    spacing_zyx : sequence of float
        Voxel size in mm, ``(z, y, x)``.
    label : int, optional
        Interpolate only this label value (default: every non-zero value).
    annotated : sequence of int, optional
        The annotated slice indices (default: the slices holding the label).
    method : {'pchip', 'linear', 'nearest'}, optional
        Blending of the distance maps along the axis, as for
        :func:`interpolate_slices`.

    Returns
    -------
    box : tuple of slice
        ``(z, y, x)`` slices of ``labels`` that may have changed.
    values : numpy.ndarray
        The new labels inside ``box``.

    Raises
    ------
    AblationError
        As :func:`interpolate_slices`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise AblationError(f"labels must be 3D, got {labels.ndim}D")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise AblationError(f"labels must be integers, got {labels.dtype}")
    if len(spacing_zyx) != 3 or any(not (float(s) > 0) for s in spacing_zyx):
        raise AblationError(f"spacing must be three positive numbers (mm), got {list(spacing_zyx)}")
    if method not in METHODS:
        raise AblationError(
            f"unknown interpolation method '{method}': use one of {', '.join(METHODS)}"
        )
    axis = axis_index(axis)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    # all the work happens on the bounding box of the labels (plus explicit annotated slices)
    box = bbox(labels)
    if box is None:
        raise AblationError("nothing to interpolate: the labels are empty")
    if annotated is not None:
        ann = np.asarray(list(annotated), dtype=int)
        if ann.size and (ann.min() < 0 or ann.max() >= labels.shape[axis]):
            raise AblationError(
                f"annotated slice index out of range 0..{labels.shape[axis] - 1} "
                f"along {AXIS_NAMES[axis]}"
            )
        if ann.size:
            box = list(box)
            box[axis] = slice(
                min(box[axis].start, int(ann.min())), max(box[axis].stop, int(ann.max()) + 1)
            )
            box = tuple(box)
            annotated = ann - box[axis].start
    sub = labels[box]
    values = [int(label)] if label is not None else [int(v) for v in np.unique(sub) if v != 0]
    # check every value first, so that a bad one changes nothing
    plans = [
        (
            v,
            check_annotations(
                sub,
                axis,
                v if (label is not None or len(values) > 1) else None,
                annotated,
                offset=box[axis].start,
            ),
        )
        for v in values
    ]
    res = sub.copy()
    for value, idx in plans:
        _interpolate_one(sub, res, axis, spacing_zyx, value, idx, method)
    return box, res


def interpolate_slices(
    labels: np.ndarray,
    axis: int | str,
    spacing_zyx: Sequence[float],
    label: int | None = None,
    annotated: Sequence[int] | None = None,
    *,
    method: str = "pchip",
) -> np.ndarray:
    """Fill the unannotated slices between annotated ones along an axis.

    Shape-based: every annotated slice becomes a signed distance map in mm, the maps
    are blended along the axis (PCHIP by default) and thresholded at zero.
    Annotated slices and voxels of other labels are never changed; only background
    voxels of the unannotated slices between the first and the last annotated one
    are filled.

    Parameters
    ----------
    labels : array_like
        3D ``(z, y, x)`` integer (or boolean) label array.
    axis : int or str
        The slice axis: 0/``'z'``/``'axial'``, 1/``'y'``/``'coronal'`` or
        2/``'x'``/``'sagittal'``.
    spacing_zyx : sequence of float
        Voxel size in mm, ``(z, y, x)``.
    label : int, optional
        Interpolate only this label value (default: every non-zero value, each on
        its own).
    annotated : sequence of int, optional
        The annotated slice indices, given explicitly (default: the slices holding
        the label); an annotated slice without the label means "the structure is
        absent here".
    method : {'pchip', 'linear', 'nearest'}, optional
        Blending of the distance maps along the axis: a smooth, overshoot-free
        piecewise cubic through all annotated slices (with at least three), linear
        between neighbours, or the nearest annotated slice.

    Returns
    -------
    numpy.ndarray
        A new array of the same dtype (uint8 for boolean input).

    Raises
    ------
    AblationError
        (one line, nothing changed) For labels that are not 3D integers, a bad
        spacing, axis or method, empty labels, fewer than two annotated slices, or
        annotations that look drawn on another orientation.

    Examples
    --------
    A disc of radius 4 mm on slices 0 and 4 fills slices 1 to 3:

    >>> import numpy as np
    >>> yy, xx = np.mgrid[:12, :12]
    >>> disc = (yy - 6) ** 2 + (xx - 6) ** 2 <= 16
    >>> sparse = np.zeros((5, 12, 12), np.uint8)
    >>> sparse[[0, 4]] = disc
    >>> dense = interpolate_slices(sparse, "z", (2.0, 1.0, 1.0))
    >>> [int(s.sum()) for s in dense] == [int(disc.sum())] * 5
    True
    """
    box, res = interpolate_box(labels, axis, spacing_zyx, label, annotated, method=method)
    out = np.array(labels, copy=True)
    if out.dtype == bool:
        out = out.astype(np.uint8)
    out[box] = res
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Compute the Dice coefficient of two masks.

    Parameters
    ----------
    a, b : array_like
        Masks of the same shape (non-zero is foreground).

    Returns
    -------
    float
        ``2 |A & B| / (|A| + |B|)``; 1.0 for two empty masks.

    Examples
    --------
    >>> dice([1, 1, 0, 0], [1, 0, 0, 0])
    0.6666666666666666
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s
