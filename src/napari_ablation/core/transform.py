"""Rigid transforms in ITK convention and resampling between grids (DESIGN.md section 3).

A registration ``T`` maps points of the pre (fixed) physical space to the post (moving)
physical space: ``post_point = T(pre_point)``. ``Resample(post, pre, T)`` brings post
onto the pre grid. Transforms are stored as :class:`SimpleITK.Euler3DTransform` and
saved as ``.tfm`` (readable by 3D Slicer, ITK-SNAP, elastix, ANTs).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import AblationError
from .io import atomic_write


def matrix_offset(tx: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """``(A, b)`` such that ``tx(p) = A @ p + b`` for a linear (affine-like) transform."""
    if tx is None:
        return np.eye(3), np.zeros(3)
    p0 = np.asarray(tx.TransformPoint((0.0, 0.0, 0.0)))
    cols = [np.asarray(tx.TransformPoint(tuple(e))) - p0 for e in np.eye(3)]
    return np.column_stack(cols), p0


def is_rigid(tx: sitk.Transform, tol: float = 1e-4) -> bool:
    try:
        A, _b = matrix_offset(tx)
        # an affine test on 4 points is only valid if the transform is linear: check a 5th
        q = np.array([13.7, -42.1, 77.3])
        if not np.allclose(A @ q + _b, tx.TransformPoint(tuple(q)), atol=1e-6 * (1 + np.abs(q).max())):
            return False
    except Exception:  # noqa: BLE001 - any failure means it is not a usable rigid transform
        return False
    return bool(np.allclose(A.T @ A, np.eye(3), atol=tol) and np.linalg.det(A) > 0)


def euler_from_matrix(A: np.ndarray, b: np.ndarray, center=(0.0, 0.0, 0.0)) -> sitk.Euler3DTransform:
    """Euler3DTransform equal to ``p -> A p + b`` (``A`` a rotation), with the given centre."""
    A = np.asarray(A, dtype=float)
    # project onto SO(3) to remove round-off
    u, _s, vt = np.linalg.svd(A)
    R = u @ vt
    if np.linalg.det(R) < 0:
        raise AblationError("transform is a reflection, not a rigid motion")
    c = np.asarray(center, dtype=float)
    tx = sitk.Euler3DTransform()
    tx.SetCenter(c.tolist())
    tx.SetMatrix(R.ravel().tolist())
    # p -> R (p - c) + c + t  ==  R p + (c - R c + t)
    t = np.asarray(b, dtype=float) - (c - R @ c)
    tx.SetTranslation(t.tolist())
    return tx


def as_euler(tx: sitk.Transform | None, center=None) -> sitk.Euler3DTransform:
    """Rigid ``tx`` as an Euler3DTransform (identity for ``None``); raise if not rigid."""
    if tx is None:
        out = sitk.Euler3DTransform()
        if center is not None:
            out.SetCenter([float(c) for c in center])
        return out
    if not is_rigid(tx):
        raise AblationError("transform is not rigid (it scales, shears or is not linear)")
    if tx.GetName() == "Euler3DTransform" and center is None:
        return sitk.Euler3DTransform(tx)  # exact copy: no round trip through the matrix
    A, b = matrix_offset(tx)
    if center is None:
        try:
            center = sitk.Euler3DTransform(tx).GetCenter()  # keep the centre of Euler/versor transforms
        except Exception:  # noqa: BLE001
            center = (0.0, 0.0, 0.0)
    return euler_from_matrix(A, b, center)


def compose(first: sitk.Transform | None, then: sitk.Transform | None) -> sitk.Euler3DTransform:
    """Rigid transform applying ``first`` and then ``then`` (``then(first(p))``)."""
    A1, b1 = matrix_offset(first)
    A2, b2 = matrix_offset(then)
    center = sitk.Euler3DTransform(as_euler(first)).GetCenter() if first is not None else (0, 0, 0)
    return euler_from_matrix(A2 @ A1, A2 @ b1 + b2, center)


def inverse(tx: sitk.Transform) -> sitk.Euler3DTransform:
    A, b = matrix_offset(tx)
    return euler_from_matrix(A.T, -A.T @ b, as_euler(tx).GetCenter())


def read_rigid_transform(path: str | os.PathLike) -> sitk.Euler3DTransform:
    """Read a ``.tfm`` / ``.txt`` / ``.h5`` transform and check it is rigid."""
    p = Path(path)
    if not p.exists():
        raise AblationError(f"{p}: no such transform file")
    try:
        tx = sitk.ReadTransform(str(p))
    except RuntimeError:
        raise AblationError(f"{p.name}: not a readable ITK transform file") from None
    if tx.GetDimension() != 3:
        raise AblationError(f"{p.name}: a {tx.GetDimension()}D transform, expected 3D")
    # A composite holding one transform (what SimpleITK/Slicer often write)
    if tx.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        if comp.GetNumberOfTransforms() == 0:
            return sitk.Euler3DTransform()
        comp.FlattenTransform()
        if comp.GetNumberOfTransforms() == 1:
            tx = comp.GetNthTransform(0)
    if tx.GetName() in ("BSplineTransform", "DisplacementFieldTransform"):
        raise AblationError(f"{p.name}: a {tx.GetName()} is deformable, not rigid")
    if not is_rigid(tx):
        raise AblationError(f"{p.name}: transform is not rigid (it scales or shears)")
    return as_euler(tx)


def write_transform_atomic(tx: sitk.Transform, path: str | os.PathLike) -> Path:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".tfm", ".txt", ".h5", ".hdf5", ".mat"):
        raise AblationError(f"cannot write a transform to '{p.name}': use .tfm")
    with atomic_write(p) as tmp:
        sitk.WriteTransform(tx, str(tmp))
    return p


def euler_params(tx: sitk.Transform | None) -> dict:
    """JSON-able, exact description of a rigid transform."""
    e = as_euler(tx)
    return {
        "type": "Euler3DTransform",
        "convention": "ITK: maps pre (fixed) LPS points to post (moving) LPS points",
        "center": [float(v) for v in e.GetCenter()],
        "parameters": [float(v) for v in e.GetParameters()],  # angleX, angleY, angleZ (rad), tx, ty, tz
        "matrix": [float(v) for v in e.GetMatrix()],
        "translation": [float(v) for v in e.GetTranslation()],
    }


def euler_from_params(d: dict) -> sitk.Euler3DTransform:
    e = sitk.Euler3DTransform()
    e.SetCenter([float(v) for v in d["center"]])
    e.SetParameters([float(v) for v in d["parameters"]])
    return e


def rotation_angle_deg(tx: sitk.Transform | None) -> float:
    A, _b = matrix_offset(tx)
    return float(np.degrees(np.arccos(np.clip((np.trace(A) - 1) / 2, -1, 1))))


_INTERP = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
    "label": sitk.sitkLabelGaussian,
}


def resample_onto(
    moving: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform | None = None,
    *,
    interpolator: str = "linear",
    default: float = 0.0,
    pixel_type=None,
) -> sitk.Image:
    """``moving`` (e.g. post) resampled onto the grid of ``reference`` (e.g. pre) through ``transform``.

    ``transform`` maps reference points to moving points (ITK convention), so the pre->post
    registration brings post onto pre directly.
    """
    tx = transform if transform is not None else sitk.Transform()
    return sitk.Resample(
        moving,
        reference,
        tx,
        _INTERP[interpolator],
        float(default),
        moving.GetPixelID() if pixel_type is None else pixel_type,
    )


def transform_points(tx: sitk.Transform | None, points_lps) -> np.ndarray:
    """Apply ``tx`` to an ``(n, 3)`` array of LPS points."""
    pts = np.atleast_2d(np.asarray(points_lps, dtype=float))
    A, b = matrix_offset(tx)
    return pts @ A.T + b


def tumor_motion(tx: sitk.Transform | None, centre_lps) -> tuple[float, float]:
    """The one "shift" figure of the plugin: how far ``tx`` moves the tumor centre, and its rotation.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        Rigid, pre -> post (ITK convention); None is the identity.
    centre_lps : array_like
        The tumor centre (x, y, z), LPS mm, in pre space.

    Returns
    -------
    tuple of float
        ``|T(c) - c|`` in mm, and the rotation angle in degrees.
    """
    c = np.asarray(centre_lps, dtype=float).reshape(3)
    return float(np.linalg.norm(transform_points(tx, c)[0] - c)), rotation_angle_deg(tx)


def motion_text(tx: sitk.Transform | None, centre_lps) -> str:
    """:func:`tumor_motion` in words, as the Register and Margins widgets and the report show it.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        Rigid, pre -> post (ITK convention).
    centre_lps : array_like
        The tumor centre (x, y, z), LPS mm.

    Returns
    -------
    str
        E.g. ``"tumor centre moved 8.5 mm, rotation 4.3°"``.
    """
    shift, rot = tumor_motion(tx, centre_lps)
    return f"tumor centre moved {shift:.1f} mm, rotation {rot:.1f}\u00b0"
