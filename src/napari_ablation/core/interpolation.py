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

from typing import Sequence

import numpy as np
from scipy import ndimage

from .errors import AblationError

__all__ = ["interpolate_slices", "interpolate_box", "check_annotations", "annotated_slices", "bbox", "dice"]

try:  # `edt` is 5-10x faster than scipy's EDT (FIELD-NOTES)
    import edt as _edt
except ImportError:  # pragma: no cover - edt is a dependency, scipy is the fallback
    _edt = None

AXIS_NAMES = {0: "z (axial)", 1: "y (coronal)", 2: "x (sagittal)"}
AXIS_CODES = {"z": 0, "y": 1, "x": 2}
METHODS = ("pchip", "linear", "nearest")


def axis_index(axis: int | str) -> int:
    """0, 1, 2 from an int or from 'z'/'y'/'x' (also 'axial', 'coronal', 'sagittal')."""
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
    """Euclidean distance (mm) of every True pixel to the nearest False pixel."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    if _edt is not None:
        return _edt.edt(mask, anisotropy=tuple(float(s) for s in sampling), black_border=False, parallel=1)
    return ndimage.distance_transform_edt(mask, sampling=sampling)


def edt3d(mask: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Euclidean distance (mm) of every True voxel to the nearest False voxel (3D)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.float32)
    if _edt is not None:
        return _edt.edt(mask, anisotropy=tuple(float(s) for s in sampling), black_border=False, parallel=1)
    return ndimage.distance_transform_edt(mask, sampling=sampling).astype(np.float32)


def signed_distance_2d(mask: np.ndarray, sampling: Sequence[float], far: float) -> np.ndarray:
    """Signed distance in mm, negative inside, positive outside; ``far`` for an empty slice."""
    if not mask.any():
        return np.full(mask.shape, far, dtype=np.float32)
    if mask.all():
        return np.full(mask.shape, -far, dtype=np.float32)
    out = edt2d(~mask, sampling)
    inside = edt2d(mask, sampling)
    return (out - inside).astype(np.float32)


def bbox(mask, pad_vox=(0, 0, 0)) -> tuple[slice, slice, slice] | None:
    """Index box of the non-zero voxels of a 3D array (None if empty), padded and clipped.

    Two reductions (one over the whole array, one over the in-plane box) instead of
    ``np.nonzero``: ~15 ms on 512 x 512 x 300 instead of ~600 ms.
    """
    a = np.asarray(mask)
    proj = a.any(axis=0)
    rows = np.flatnonzero(proj.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(proj.any(axis=0))
    zs = np.flatnonzero(a[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].any(axis=(1, 2)))
    lo = np.array([zs[0], rows[0], cols[0]]) - np.asarray(pad_vox, int)
    hi = np.array([zs[-1], rows[-1], cols[-1]]) + 1 + np.asarray(pad_vox, int)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, a.shape)
    return tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))


def annotated_slices(labels: np.ndarray, axis: int, label: int | None = None) -> np.ndarray:
    """Indices of the slices along ``axis`` holding ``label`` (any non-zero label if None)."""
    m = (labels == label) if label is not None else (labels != 0)
    other = tuple(a for a in range(labels.ndim) if a != axis)
    return np.flatnonzero(m.any(axis=other))


def _fill_fraction(present: np.ndarray) -> float:
    """Fraction of the slices between the first and the last present one that are present."""
    if len(present) < 2:
        return 1.0
    return len(present) / float(present[-1] - present[0] + 1)


def check_annotations(labels: np.ndarray, axis: int, label: int | None = None,
                      annotated: Sequence[int] | None = None, offset: int = 0) -> np.ndarray:
    """Annotated slice indices along ``axis`` for ``label``; AblationError when unusable.

    Detects annotations drawn on a different orientation (e.g. coronal slices while
    axial interpolation is asked): along the chosen axis they then cover every slice,
    while along another axis they are sparse.
    """
    axis = axis_index(axis)
    what = f"label {label}" if label is not None else "the labels"
    if annotated is not None:
        idx = np.unique(np.asarray(list(annotated), dtype=int))
        if idx.size and (idx.min() < 0 or idx.max() >= labels.shape[axis]):
            raise AblationError(f"annotated slice index out of range 0..{labels.shape[axis] - 1} along {AXIS_NAMES[axis]}")
        if idx.size < 2:
            raise AblationError(f"interpolation needs at least two annotated slices along {AXIS_NAMES[axis]}; got {idx.size}")
        return idx
    mask = (labels == label) if label is not None else (labels != 0)
    present = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
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
            f"interpolation needs at least two annotated slices along {AXIS_NAMES[axis]}; {what} is on slice {idx[0] + offset} only"
        )
    if fill[axis] >= 1.0:
        raise AblationError(
            f"nothing to interpolate: every {AXIS_NAMES[axis]} slice from {idx[0] + offset} to {idx[-1] + offset} is already annotated"
        )
    return idx


def _interpolate_one(labels: np.ndarray, out: np.ndarray, axis: int, spacing_zyx, value: int,
                     idx: np.ndarray, method: str) -> int:
    """Fill the gaps of one label value in ``out`` (moved so that ``axis`` is first). Returns voxels added."""
    lab = np.moveaxis(labels, axis, 0)
    res = np.moveaxis(out, axis, 0)
    sp = [float(s) for s in spacing_zyx]
    sp_in = [sp[a] for a in range(3) if a != axis]
    lo, hi = int(idx[0]), int(idx[-1])
    sub = lab[lo:hi + 1]
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
        raise AblationError(f"unknown interpolation method '{method}': use one of {', '.join(METHODS)}")
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
    """Like :func:`interpolate_slices`, but returns ``(box, new_labels[box])``.

    Only the bounding box of the labels can change; for a 512 x 512 x 300 volume this
    avoids copying and comparing the whole array (the widgets write the changed voxels
    of the box through napari's undoable ``data_setitem``).
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise AblationError(f"labels must be 3D, got {labels.ndim}D")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise AblationError(f"labels must be integers, got {labels.dtype}")
    if len(spacing_zyx) != 3 or any(not (float(s) > 0) for s in spacing_zyx):
        raise AblationError(f"spacing must be three positive numbers (mm), got {list(spacing_zyx)}")
    if method not in METHODS:
        raise AblationError(f"unknown interpolation method '{method}': use one of {', '.join(METHODS)}")
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
            raise AblationError(f"annotated slice index out of range 0..{labels.shape[axis] - 1} along {AXIS_NAMES[axis]}")
        if ann.size:
            box = list(box)
            box[axis] = slice(min(box[axis].start, int(ann.min())), max(box[axis].stop, int(ann.max()) + 1))
            box = tuple(box)
            annotated = ann - box[axis].start
    sub = labels[box]
    if label is not None:
        values = [int(label)]
    else:
        values = [int(v) for v in np.unique(sub) if v != 0]
    # check every value first, so that a bad one changes nothing
    plans = [(v, check_annotations(sub, axis, v if (label is not None or len(values) > 1) else None, annotated,
                                       offset=box[axis].start))
             for v in values]
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
    """Fill the unannotated slices between annotated ones along ``axis``.

    ``labels`` is a 3D ``(z, y, x)`` integer array, ``spacing_zyx`` its voxel size in mm.
    ``label`` restricts the interpolation to one label value (default: every non-zero
    value, each on its own). ``annotated`` gives the annotated slice indices explicitly
    (default: the slices holding the label); an annotated slice without the label means
    "the structure is absent here". Returns a new array (same dtype); annotated slices
    and voxels of other labels are never changed. Raises :class:`AblationError` (one
    line, nothing changed) with fewer than two annotated slices or annotations that look
    drawn on another orientation.
    """
    box, res = interpolate_box(labels, axis, spacing_zyx, label, annotated, method=method)
    out = np.array(labels, copy=True)
    if out.dtype == bool:
        out = out.astype(np.uint8)
    out[box] = res
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two masks (1.0 for two empty masks)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s
