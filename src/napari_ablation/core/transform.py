"""Rigid transforms in ITK convention and resampling between grids (docs/design.md, section 3).

A registration ``T`` maps points of the pre (fixed) physical space to the post (moving)
physical space: ``post_point = T(pre_point)``. ``Resample(post, pre, T)`` brings post
onto the pre grid. Transforms are stored as :class:`SimpleITK.Euler3DTransform` and
saved as ``.tfm`` (readable by 3D Slicer, ITK-SNAP, elastix, ANTs).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import AblationError
from .files import OutputSet, input_file, read_text


def matrix_offset(tx: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """Return the matrix and offset of a linear (affine-like) transform.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        A linear transform of LPS points (``None`` is the identity).

    Returns
    -------
    A : numpy.ndarray
        The ``(3, 3)`` matrix, such that ``tx(p) = A @ p + b``.
    b : numpy.ndarray
        The ``(3,)`` offset in mm.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> A, b = matrix_offset(sitk.TranslationTransform(3, (1.0, 2.0, 3.0)))
    >>> A.tolist(), b.tolist()
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [1.0, 2.0, 3.0])
    """
    if tx is None:
        return np.eye(3), np.zeros(3)
    p0 = np.asarray(tx.TransformPoint((0.0, 0.0, 0.0)))
    cols = [np.asarray(tx.TransformPoint(tuple(e))) - p0 for e in np.eye(3)]
    return np.column_stack(cols), p0


def is_rigid(tx: sitk.Transform, tol: float = 1e-4) -> bool:
    """Tell whether a transform is a rigid motion (a rotation and a translation).

    Parameters
    ----------
    tx : SimpleITK.Transform
        Any transform.
    tol : float, optional
        Tolerance on ``A.T @ A`` being the identity.

    Returns
    -------
    bool
        True for a linear transform with an orthonormal matrix of determinant +1;
        False for a scaling, shear, reflection, a non-linear transform, or one that
        cannot be evaluated.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> is_rigid(sitk.Euler3DTransform((0, 0, 0), 0.1, 0.2, 0.3, (5, 0, 0)))
    True
    >>> is_rigid(sitk.ScaleTransform(3, (2.0, 1.0, 1.0)))
    False
    """
    try:
        A, _b = matrix_offset(tx)
        # an affine test on 4 points is only valid if the transform is linear: check a 5th
        q = np.array([13.7, -42.1, 77.3])
        if not np.allclose(
            A @ q + _b, tx.TransformPoint(tuple(q)), atol=1e-6 * (1 + np.abs(q).max())
        ):
            return False
    except Exception:  # noqa: BLE001 - any failure means it is not a usable rigid transform
        return False
    return bool(np.allclose(A.T @ A, np.eye(3), atol=tol) and np.linalg.det(A) > 0)


def euler_from_matrix(
    A: np.ndarray, b: np.ndarray, center=(0.0, 0.0, 0.0)
) -> sitk.Euler3DTransform:
    """Build the Euler3DTransform equal to ``p -> A p + b``, with a given centre.

    Parameters
    ----------
    A : numpy.ndarray
        ``(3, 3)`` rotation matrix (projected onto the nearest rotation to remove
        round-off).
    b : numpy.ndarray
        ``(3,)`` offset in mm.
    center : sequence of float, optional
        Centre of rotation of the result, LPS mm ``(x, y, z)``; it does not change
        the mapping, only its parameters.

    Returns
    -------
    SimpleITK.Euler3DTransform
        The same mapping of LPS points.

    Raises
    ------
    AblationError
        If ``A`` is a reflection.
    """
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
    """Convert a rigid transform to an Euler3DTransform.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        A rigid transform (``None`` is the identity).
    center : sequence of float, optional
        Centre of rotation of the result, LPS mm; by default the centre of ``tx``
        (Euler and versor transforms) or the origin.

    Returns
    -------
    SimpleITK.Euler3DTransform
        The same mapping (an exact copy for an Euler3DTransform without ``center``).

    Raises
    ------
    AblationError
        If ``tx`` scales, shears or is not linear.
    """
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
            center = sitk.Euler3DTransform(
                tx
            ).GetCenter()  # keep the centre of Euler/versor transforms
        except Exception:  # noqa: BLE001
            center = (0.0, 0.0, 0.0)
    return euler_from_matrix(A, b, center)


def compose(first: sitk.Transform | None, then: sitk.Transform | None) -> sitk.Euler3DTransform:
    """Compose two rigid transforms: ``first``, then ``then``.

    Parameters
    ----------
    first : SimpleITK.Transform or None
        Applied first (``None`` is the identity).
    then : SimpleITK.Transform or None
        Applied to the result of ``first``.

    Returns
    -------
    SimpleITK.Euler3DTransform
        ``p -> then(first(p))``, about the centre of ``first``.

    Raises
    ------
    AblationError
        If ``first`` is not rigid.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> a = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    >>> b = sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, 0.0, (0.0, 2.0, 0.0))
    >>> compose(a, b).TransformPoint((0.0, 0.0, 0.0))
    (1.0, 2.0, 0.0)
    """
    A1, b1 = matrix_offset(first)
    A2, b2 = matrix_offset(then)
    center = sitk.Euler3DTransform(as_euler(first)).GetCenter() if first is not None else (0, 0, 0)
    return euler_from_matrix(A2 @ A1, A2 @ b1 + b2, center)


def inverse(tx: sitk.Transform) -> sitk.Euler3DTransform:
    """Invert a rigid transform.

    Parameters
    ----------
    tx : SimpleITK.Transform
        A rigid transform, e.g. pre -> post.

    Returns
    -------
    SimpleITK.Euler3DTransform
        The inverse (post -> pre), about the same centre.

    Raises
    ------
    AblationError
        If ``tx`` is not rigid.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> tx = sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, 0.5, (3.0, 0.0, 0.0))
    >>> p = tx.TransformPoint((10.0, 20.0, 30.0))
    >>> [round(v, 6) for v in inverse(tx).TransformPoint(p)]
    [10.0, 20.0, 30.0]
    """
    A, b = matrix_offset(tx)
    return euler_from_matrix(A.T, -A.T @ b, as_euler(tx).GetCenter())


#: parameter / fixed-parameter counts of the 3D transform types read from a text file
_TFM_TYPES = {
    "Euler3DTransform": (6, (3, 4)),
    "VersorRigid3DTransform": (6, (3,)),
    "TranslationTransform": (3, (0,)),
    "AffineTransform": (12, (3,)),
    "MatrixOffsetTransformBase": (12, (3,)),
    "Rigid3DTransform": (12, (3,)),
    "Similarity3DTransform": (7, (3,)),
    "IdentityTransform": (0, (0,)),
    "CompositeTransform": (0, (0,)),
}
_DEFORMABLE = ("BSplineTransform", "DisplacementFieldTransform", "BSplineDeformableTransform")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_TYPE = re.compile(r"^([A-Za-z0-9]+)_(double|float)_(\d+)_(\d+)$")
TEXT_TRANSFORM_SUFFIXES = (".tfm", ".txt")
TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".mat")


@dataclass
class ParsedTransform:
    """One transform of an ITK text transform file, its numbers checked.

    Parameters
    ----------
    kind : str
        The ITK type without its suffix, e.g. ``"Euler3DTransform"``.
    parameters : list of float
        The ``Parameters:`` line's finite numbers.
    fixed : list of float
        The ``FixedParameters:`` line's finite numbers.
    """

    kind: str
    parameters: list[float]
    fixed: list[float]


def parse_tfm_text(text: str, name: str = "transform file") -> list[ParsedTransform]:
    r"""Parse and check an ITK text transform file (``.tfm`` / ``.txt``) without ITK.

    Every line must be a comment, a ``Transform:``, ``Parameters:`` or
    ``FixedParameters:`` line; every transform must be a known 3D type with the right
    number of finite parameters. SimpleITK is never given an unchecked file (a NaN
    parameter crashes it).

    Parameters
    ----------
    text : str
        The file's content.
    name : str, optional
        The file name for messages.

    Returns
    -------
    list of ParsedTransform
        In file order (a ``CompositeTransform`` header first, when present).

    Raises
    ------
    AblationError
        Naming the file, the line and the problem.

    Examples
    --------
    >>> text = (
    ...     "#Insight Transform File V1.0\n"
    ...     "Transform: TranslationTransform_double_3_3\n"
    ...     "Parameters: 1 2 3\n"
    ...     "FixedParameters:\n"
    ... )
    >>> parse_tfm_text(text)
    [ParsedTransform(kind='TranslationTransform', parameters=[1.0, 2.0, 3.0], fixed=[])]
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#Insight Transform File V1.0":
        raise AblationError(
            f"{name}: not an ITK transform file (the first line must be '#Insight Transform "
            "File V1.0')"
        )
    out: list[ParsedTransform] = []
    cur: dict | None = None

    def finish(at: int) -> None:
        if cur is None:
            return
        kind = cur["kind"]
        n_par, n_fixed = _TFM_TYPES[kind]
        if kind != "CompositeTransform" and (
            cur.get("parameters") is None or cur.get("fixed") is None
        ):
            raise AblationError(
                f"{name}: the {kind} before line {at} lacks its Parameters or FixedParameters"
            )
        par, fix = cur.get("parameters") or [], cur.get("fixed") or []
        if len(par) != n_par:
            raise AblationError(
                f"{name}: a {kind} needs {n_par} parameters, the file gives {len(par)}"
            )
        if len(fix) not in n_fixed:
            raise AblationError(
                f"{name}: a {kind} needs {n_fixed[0]} fixed parameters, the file gives {len(fix)}"
            )
        out.append(ParsedTransform(kind, par, fix))

    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or key not in ("Transform", "Parameters", "FixedParameters"):
            raise AblationError(f"{name} line {n}: unexpected text '{line[:40]}'")
        if key == "Transform":
            finish(n)
            m = _TYPE.match(value.strip())
            if not m:
                raise AblationError(
                    f"{name} line {n}: unknown transform type '{value.strip()[:40]}'"
                )
            kind, dims = m.group(1), (m.group(3), m.group(4))
            if dims != ("3", "3"):
                raise AblationError(f"{name}: a {dims[0]}D transform, expected 3D")
            if kind in _DEFORMABLE:
                raise AblationError(f"{name}: a {kind} is deformable, not rigid")
            if kind not in _TFM_TYPES:
                raise AblationError(
                    f"{name}: unsupported transform type {kind} (expected a rigid transform)"
                )
            if kind == "CompositeTransform" and out:
                raise AblationError(f"{name} line {n}: a nested CompositeTransform")
            cur = {"kind": kind}
            continue
        if cur is None:
            raise AblationError(f"{name} line {n}: {key} before any Transform line")
        field_ = "parameters" if key == "Parameters" else "fixed"
        if cur.get(field_) is not None:
            raise AblationError(f"{name} line {n}: {key} given twice")
        tokens = value.split()
        for tok in tokens:
            if not _NUMBER.match(tok):
                what = (
                    "not finite"
                    if tok.lower().lstrip("+-") in ("nan", "inf", "infinity")
                    else "not a number"
                )
                raise AblationError(f"{name} line {n}: {key} value '{tok[:20]}' is {what}")
        vals = [float(t) for t in tokens]
        if not all(math.isfinite(v) for v in vals):
            raise AblationError(f"{name} line {n}: {key} value out of range (not finite)")
        cur[field_] = vals
    finish(len(lines) + 1)
    if not out:
        raise AblationError(f"{name}: no transform in the file")
    return out


def _build(pt: ParsedTransform, name: str) -> sitk.Transform:
    p, f = pt.parameters, pt.fixed
    if pt.kind == "Euler3DTransform":
        tx = sitk.Euler3DTransform()
        tx.SetCenter(f[:3])
        if len(f) == 4 and f[3] != 0:
            tx.SetComputeZYX(True)
        tx.SetParameters(p)
        return tx
    if pt.kind == "VersorRigid3DTransform":
        if sum(v * v for v in p[:3]) > 1.0 + 1e-9:
            raise AblationError(
                f"{name}: the versor of the VersorRigid3DTransform is longer than 1"
            )
        tx = sitk.VersorRigid3DTransform()
        tx.SetCenter(f[:3])
        tx.SetParameters(p)
        return tx
    if pt.kind == "Similarity3DTransform":
        if sum(v * v for v in p[:3]) > 1.0 + 1e-9:
            raise AblationError(f"{name}: the versor of the Similarity3DTransform is longer than 1")
        tx = sitk.Similarity3DTransform()
        tx.SetCenter(f[:3])
        tx.SetParameters(p)
        return tx
    if pt.kind == "TranslationTransform":
        return sitk.TranslationTransform(3, p)
    if pt.kind == "IdentityTransform":
        return sitk.Euler3DTransform()
    # AffineTransform, MatrixOffsetTransformBase, Rigid3DTransform: matrix + translation about a
    # centre
    tx = sitk.AffineTransform(3)
    tx.SetCenter(f[:3])
    tx.SetMatrix(p[:9])
    tx.SetTranslation(p[9:12])
    return tx


# Reads an ITK binary transform (HDF5 / MATLAB) in a child process and prints its text
# form: a corrupt binary file can make ITK's HDF5 library loop, print at exit or crash,
# which must not happen in the plugin's own process.
_BINARY_TO_TEXT = """
import os, sys, tempfile
import SimpleITK as sitk
tx = sitk.ReadTransform(sys.argv[1])
fd, tmp = tempfile.mkstemp(suffix=".tfm")
os.close(fd)
try:
    sitk.WriteTransform(tx, tmp)
    sys.stdout.write(open(tmp, encoding="ascii").read())
finally:
    os.remove(tmp)
"""


def _binary_transform_as_text(p: Path) -> str:
    """Convert a binary (``.h5`` / ``.mat``) transform file to ITK text, in isolation.

    The text then goes through the same checks as a ``.tfm`` file (:func:`parse_tfm_text`).
    """
    import subprocess
    import sys

    try:
        res = subprocess.run(
            [sys.executable, "-c", _BINARY_TO_TEXT, str(p)],
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        res = None
    if res is None or res.returncode != 0 or not res.stdout.strip():
        raise AblationError(f"{p.name}: not a readable ITK transform file")
    try:
        return res.stdout.decode("ascii")
    except UnicodeDecodeError:
        raise AblationError(f"{p.name}: not a readable ITK transform file") from None


def read_rigid_transform(path: str | os.PathLike) -> sitk.Euler3DTransform:
    """Read a rigid transform file.

    ``.tfm`` / ``.txt`` files are parsed and checked here (:func:`parse_tfm_text`)
    before SimpleITK sees them; ``.h5`` and ``.mat`` files too, after conversion (see
    Notes).

    Parameters
    ----------
    path : str or os.PathLike
        The transform file.

    Returns
    -------
    SimpleITK.Euler3DTransform
        The transform (pre -> post, ITK convention).

    Raises
    ------
    AblationError
        Missing or unreadable file, malformed text, wrong parameter counts, non-finite
        values, a non-rigid or deformable transform.

    Notes
    -----
    Binary files are converted to ITK text in a child process (a corrupt HDF5 file can
    make ITK loop or crash) and then checked like a ``.tfm`` file. A MATLAB ``.mat``
    file has no checksum: a changed byte inside one of its numbers cannot be detected.
    """
    p = input_file(path, "transform file")
    if p.name.lower().endswith(TRANSFORM_SUFFIXES) and not p.name.lower().endswith(
        TEXT_TRANSFORM_SUFFIXES
    ):
        text = _binary_transform_as_text(p)
    else:
        text = read_text(p, "transform file")
    parsed = parse_tfm_text(text, p.name)
    parts = [pt for pt in parsed if pt.kind != "CompositeTransform"]
    if parsed[0].kind == "CompositeTransform":
        if not parts:
            return sitk.Euler3DTransform()
        tx = sitk.CompositeTransform([_build(pt, p.name) for pt in parts])
    elif len(parts) == 1:
        tx = _build(parts[0], p.name)
    else:
        raise AblationError(
            f"{p.name}: {len(parts)} transforms without a CompositeTransform header"
        )
    if tx.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(tx)
        if comp.GetNumberOfTransforms() == 0:
            return sitk.Euler3DTransform()
        comp.FlattenTransform()
        if comp.GetNumberOfTransforms() == 1:
            tx = comp.GetNthTransform(0)
        else:
            for k in range(comp.GetNumberOfTransforms()):
                if comp.GetNthTransform(k).GetName() in _DEFORMABLE:
                    raise AblationError(
                        f"{p.name}: a {comp.GetNthTransform(k).GetName()} is deformable, not rigid"
                    )
    if tx.GetName() in _DEFORMABLE:
        raise AblationError(f"{p.name}: a {tx.GetName()} is deformable, not rigid")
    if tx.GetName() != "CompositeTransform" and not all(
        math.isfinite(v) for v in (*tx.GetParameters(), *tx.GetFixedParameters())
    ):
        raise AblationError(f"{p.name}: transform parameters are not finite")
    if not is_rigid(tx):
        raise AblationError(f"{p.name}: transform is not rigid (it scales or shears)")
    return as_euler(tx)


def tfm_text(tx: sitk.Transform) -> str:
    """Write a rigid transform as ITK text (``.tfm``), exact to the last bit.

    Parameters
    ----------
    tx : SimpleITK.Transform
        A rigid transform.

    Returns
    -------
    str
        The file content: one Euler3DTransform whose numbers are written with
        ``repr`` (so reading it back gives the same floats).

    Raises
    ------
    AblationError
        If ``tx`` is not rigid or has non-finite parameters.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> tx = sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, 0.0, (1.0, 2.0, 3.0))
    >>> print(tfm_text(tx), end="")
    #Insight Transform File V1.0
    #Transform 0
    Transform: Euler3DTransform_double_3_3
    Parameters: 0.0 0.0 0.0 1.0 2.0 3.0
    FixedParameters: 0.0 0.0 0.0 0.0
    """
    e = as_euler(tx)
    par = [float(v) for v in e.GetParameters()]
    fix = [float(v) for v in e.GetCenter()] + [1.0 if e.GetComputeZYX() else 0.0]
    if not all(math.isfinite(v) for v in par + fix):
        raise AblationError("the transform has non-finite parameters; nothing written")
    return (
        "#Insight Transform File V1.0\n#Transform 0\nTransform: Euler3DTransform_double_3_3\n"
        f"Parameters: {' '.join(repr(v) for v in par)}\n"
        f"FixedParameters: {' '.join(repr(v) for v in fix)}\n"
    )


def write_transform_atomic(tx: sitk.Transform, path: str | os.PathLike, *, inputs=()) -> Path:
    """Write a rigid transform as ``.tfm`` (or ``.txt``) atomically, never onto an input.

    Parameters
    ----------
    tx : SimpleITK.Transform
        A rigid transform (pre -> post, ITK convention).
    path : str or os.PathLike
        The file to write, ending in ``.tfm`` or ``.txt``.
    inputs : iterable of path-like, optional
        Files that must not be overwritten (the inputs of the command).

    Returns
    -------
    pathlib.Path
        ``path``, written in full (a temporary file renamed into place).

    Raises
    ------
    AblationError
        Another suffix, a non-rigid or non-finite transform, ``path`` is one of
        ``inputs``, or the file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import SimpleITK as sitk
    >>> tx = sitk.Euler3DTransform((0, 0, 0), 0.1, 0.0, 0.0, (5.0, 0.0, 0.0))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_transform_atomic(tx, Path(folder) / "t.tfm")
    ...     back = read_rigid_transform(path)
    >>> back.GetParameters() == tx.GetParameters()
    True
    """
    p = Path(path)
    if not p.name.lower().endswith(TEXT_TRANSFORM_SUFFIXES):
        raise AblationError(f"cannot write a transform to '{p.name}': use .tfm")
    outs = OutputSet(inputs)
    outs.add_text(p, tfm_text(tx))
    outs.commit()
    return p


def euler_params(tx: sitk.Transform | None) -> dict:
    """Describe a rigid transform exactly, as JSON-able numbers.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        A rigid transform (``None`` is the identity).

    Returns
    -------
    dict
        ``type``, ``convention`` (pre -> post, ITK), ``center`` (LPS mm),
        ``parameters`` (angles about x, y, z in radians, then the translation in mm),
        ``matrix`` (row-major, 9 numbers) and ``translation`` (mm).

    Raises
    ------
    AblationError
        If ``tx`` is not rigid.
    """
    e = as_euler(tx)
    return {
        "type": "Euler3DTransform",
        "convention": "ITK: maps pre (fixed) LPS points to post (moving) LPS points",
        "center": [float(v) for v in e.GetCenter()],
        "parameters": [
            float(v) for v in e.GetParameters()
        ],  # angleX, angleY, angleZ (rad), tx, ty, tz
        "matrix": [float(v) for v in e.GetMatrix()],
        "translation": [float(v) for v in e.GetTranslation()],
    }


def euler_from_params(d: dict) -> sitk.Euler3DTransform:
    """Rebuild the transform that :func:`euler_params` described.

    Parameters
    ----------
    d : dict
        A description with ``center`` and ``parameters``.

    Returns
    -------
    SimpleITK.Euler3DTransform
        The transform.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> tx = sitk.Euler3DTransform((1, 2, 3), 0.1, 0.2, 0.3, (4.0, 5.0, 6.0))
    >>> euler_from_params(euler_params(tx)).GetParameters() == tx.GetParameters()
    True
    """
    e = sitk.Euler3DTransform()
    e.SetCenter([float(v) for v in d["center"]])
    e.SetParameters([float(v) for v in d["parameters"]])
    return e


def rotation_angle_deg(tx: sitk.Transform | None) -> float:
    """Return the rotation angle of a rigid transform.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        A rigid transform (``None`` is the identity).

    Returns
    -------
    float
        The angle of its rotation about its axis, in degrees (0 to 180).

    Examples
    --------
    >>> import math
    >>> import SimpleITK as sitk
    >>> round(rotation_angle_deg(sitk.Euler3DTransform((0, 0, 0), 0, 0, math.pi / 6)), 6)
    30.0
    """
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
    """Resample ``moving`` (e.g. post) onto the grid of ``reference`` (e.g. pre).

    ``transform`` maps reference points to moving points (ITK convention), so the
    pre -> post registration brings post onto pre directly.

    Parameters
    ----------
    moving : SimpleITK.Image
        The image to resample.
    reference : SimpleITK.Image
        The image whose grid (size, spacing, origin, direction) the result takes.
    transform : SimpleITK.Transform or None, optional
        Reference -> moving points; ``None`` is the identity.
    interpolator : {'linear', 'nearest', 'bspline', 'label'}, optional
        Interpolation of ``moving`` (``'nearest'`` or ``'label'`` for label images).
    default : float, optional
        Value of the voxels that fall outside ``moving``.
    pixel_type : int, optional
        SimpleITK pixel type of the result (default: that of ``moving``).

    Returns
    -------
    SimpleITK.Image
        ``moving`` on the grid of ``reference``.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> post = sitk.Image(10, 10, 10, sitk.sitkUInt8)
    >>> post[6, 5, 5] = 1
    >>> shift = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))  # pre (x) -> post (x + 1)
    >>> on_pre = resample_onto(post, post, shift, interpolator="nearest")
    >>> on_pre[5, 5, 5], on_pre[6, 5, 5]
    (1, 0)
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
    """Apply a linear transform to LPS points.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        A linear transform (``None`` is the identity).
    points_lps : array_like
        ``(n, 3)`` points (or one point), LPS mm ``(x, y, z)``.

    Returns
    -------
    numpy.ndarray
        The ``(n, 3)`` transformed points.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> transform_points(sitk.TranslationTransform(3, (1.0, 0.0, 0.0)), [0.0, 0.0, 0.0])
    array([[1., 0., 0.]])
    """
    pts = np.atleast_2d(np.asarray(points_lps, dtype=float))
    A, b = matrix_offset(tx)
    return pts @ A.T + b


def tumor_motion(tx: sitk.Transform | None, centre_lps) -> tuple[float, float]:
    """Measure how far a registration moves the tumor centre, and its rotation.

    This is the one "shift" figure of the plugin.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        Rigid, pre -> post (ITK convention); None is the identity.
    centre_lps : array_like
        The tumor centre (x, y, z), LPS mm, in pre space.

    Returns
    -------
    shift : float
        ``|T(c) - c|`` in mm.
    rotation : float
        The rotation angle in degrees.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> tumor_motion(sitk.TranslationTransform(3, (3.0, 4.0, 0.0)), (10.0, 20.0, 30.0))
    (5.0, 0.0)
    """
    c = np.asarray(centre_lps, dtype=float).reshape(3)
    return float(np.linalg.norm(transform_points(tx, c)[0] - c)), rotation_angle_deg(tx)


def motion_text(tx: sitk.Transform | None, centre_lps) -> str:
    """Put :func:`tumor_motion` in words, as the widgets and the report show it.

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


#: the registration line of margins computed with no registration (the identity assumed)
NO_REGISTRATION = "NO REGISTRATION: identity transform (pre and post assumed aligned)"


def file_registration_summary(tx: sitk.Transform | None, path, centre_lps=None) -> str:
    """Describe a registration read from a file, as :func:`registration_summary` does.

    The line of ``margin --transform`` and of ``cohort run`` (and of the GUI for a
    transform opened from a file): ``"file, <file name>; tumor centre moved ..."``.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        The transform read from ``path``; None: nothing registered.
    path : str or os.PathLike or None
        The transform file.
    centre_lps : array_like, optional
        The tumor centre (x, y, z), LPS mm, in pre space.

    Returns
    -------
    str
        The one line (:data:`NO_REGISTRATION` when ``tx`` is None).

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> shift = sitk.TranslationTransform(3, (3.0, 4.0, 0.0))
    >>> file_registration_summary(shift, "a/T.tfm", (0, 0, 0))
    'file, T.tfm; tumor centre moved 5.0 mm, rotation 0.0°'
    """
    name = Path(path).name if tx is not None and path else ""
    return registration_summary(tx, centre_lps, "file", name)


def registration_summary(
    tx: sitk.Transform | None, centre_lps=None, source: str = "file", note: str = ""
) -> str:
    """Describe a registration in one line: how it was made and how it moves the tumor.

    The one registration line of the plugin: the Margins widget, the GUI's report and the
    CLI's report all show it.

    Parameters
    ----------
    tx : SimpleITK.Transform or None
        Rigid, pre -> post (ITK convention); None: nothing registered.
    centre_lps : array_like, optional
        The tumor centre (x, y, z), LPS mm, in pre space; without it only the rotation is
        said.
    source : str, default "file"
        How the transform was made (``"automatic"``, ``"manual"``, ``"landmarks"``,
        ``"file"``; ``"case"``: saved with the case).
    note : str, optional
        What else to say about it (e.g. the file name, the metric of an automatic run).

    Returns
    -------
    str
        E.g. ``"file, T.tfm; tumor centre moved 8.5 mm, rotation 4.0°"``, or
        :data:`NO_REGISTRATION` when ``tx`` is None.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> registration_summary(sitk.TranslationTransform(3, (3.0, 4.0, 0.0)), (0, 0, 0))
    'file; tumor centre moved 5.0 mm, rotation 0.0°'
    """
    if tx is None:
        return NO_REGISTRATION
    motion = (
        motion_text(tx, centre_lps)
        if centre_lps is not None
        else f"rotation {rotation_angle_deg(tx):.1f}\u00b0"
    )
    made = "saved with the case" if source == "case" else source
    return f"{made}{f', {note}' if note else ''}; {motion}"
