"""Paired-landmark rigid registration (docs/design.md, section 3).

Landmarks are anatomical points clicked on pre (fixed) and on post (moving), paired by a
label. The least-squares rigid motion ``T`` with ``T(p_i) ~= q_i`` (ITK convention: pre
points ``p`` map to post points ``q``) is the closed-form SVD solution (Arun/Kabsch/Horn).

The fit residual (fiducial registration error, FRE) of each pair shows a bad click, but
the residual alone misleads: it grows with more points while the true error falls. We
therefore also report the predicted target registration error at a target (the tumor
centre), to first order in the localisation error (Fitzpatrick, West & Maurer, IEEE TMI
1998, generalised to an anisotropic error)::

    Cov(omega, t) = H^-1 (sum_i J_i^T S J_i) H^-1,  H = sum_i J_i^T J_i,
    TRE^2(r) = trace(J_r Cov J_r^T),  J_p = [-[p - c]x, I]

with ``S`` the covariance of a pair's localisation error (pre space). For an isotropic
``S = sigma^2 I`` this is Fitzpatrick's ``TRE^2(r) ~= FLE^2 / N * (1 + 1/3 * sum_k d_k^2 /
f_k^2)``. ``S`` per axis is the larger of

* the residual estimate ``sigma^2 = sum |r_i|^2 / (3N - 6)`` (3N coordinates, 6 fitted
  parameters: ``FLE^2 = 3 sigma^2 = FRE_rms^2 N / (N - 2)``), and
* the quantisation of a click to the grid of each image (given its spacing): a click in
  a 2D view lies on the displayed slice, up to half a slice from the anatomy, an error
  uniform over a voxel, variance ``h^2 / 12`` along an axis of spacing ``h``; the pre
  and post grids' variances add.

The residuals of a few landmarks cannot see the quantisation (the slice axis holds a
third of a 3D residual, and 8 residuals scatter widely): on 3 mm slices the residual
estimate alone predicted a fifth of the error (benchmarks/bench_landmark_tre.py).
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import transform as tfm
from .errors import AblationError
from .files import read_text
from .io import write_text_atomic

#: below this RMS distance (mm) of the landmarks from their best line, the fit is refused
MIN_SPREAD_FROM_LINE_MM = 1.0

Points = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- points I/O


def _label(value) -> str:
    text = str(value).strip()
    # "3.0" and "3" are the same pair label
    try:
        f = float(text)
        if f.is_integer():
            return str(int(f))
    except ValueError:
        pass
    return text


def as_points(points) -> Points:
    """Normalise landmarks to ``{label: xyz}`` with string labels.

    Parameters
    ----------
    points : mapping, sequence of dict or None
        ``{label: (x, y, z)}``, or case-style rows ``[{"label", "x", "y", "z"}]``;
        coordinates in LPS mm. Numeric labels such as ``3.0`` become ``"3"``.

    Returns
    -------
    dict of str to numpy.ndarray
        Each label's ``(3,)`` point (empty for ``None``).

    Raises
    ------
    AblationError
        For a row without label or coordinates, an empty or repeated label, or
        coordinates that are not three finite numbers.

    Examples
    --------
    >>> as_points([{"label": 1.0, "x": 10, "y": 20, "z": 30}])
    {'1': array([10., 20., 30.])}
    """
    if points is None:
        return {}
    out: Points = {}
    if isinstance(points, Mapping):
        items = points.items()
    else:
        items = []
        for row in points:
            try:
                items.append((row["label"], (row["x"], row["y"], row["z"])))
            except (KeyError, TypeError):
                raise AblationError("landmark entries need 'label', 'x', 'y' and 'z'") from None
    for lab, xyz in items:
        key = _label(lab)
        if key == "":
            raise AblationError("a landmark has an empty label")
        if key in out:
            raise AblationError(f"landmark label '{key}' appears twice")
        v = np.asarray(xyz, dtype=float).reshape(-1)
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise AblationError(f"landmark '{key}' needs three finite coordinates")
        out[key] = v
    return out


def points_to_rows(points) -> list[dict]:
    """Turn landmarks into case-style rows, sorted by label.

    Parameters
    ----------
    points : mapping, sequence of dict or None
        Landmarks in any form :func:`as_points` accepts.

    Returns
    -------
    list of dict
        ``{"label", "x", "y", "z"}`` rows, numeric labels in numeric order.

    Raises
    ------
    AblationError
        As :func:`as_points`.

    Examples
    --------
    >>> points_to_rows({"10": (1, 2, 3), "2": (4, 5, 6)})[0]
    {'label': '2', 'x': 4.0, 'y': 5.0, 'z': 6.0}
    """
    pts = as_points(points)
    return [
        {"label": k, "x": float(v[0]), "y": float(v[1]), "z": float(v[2])}
        for k, v in sorted(pts.items(), key=lambda kv: _sort_key(kv[0]))
    ]


def _sort_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def read_points_csv(path: str | os.PathLike) -> Points:
    """Read landmarks from a CSV file with the header ``label,x,y,z``.

    Blank lines and lines starting with ``#`` are skipped; other columns are ignored.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file; coordinates in LPS mm.

    Returns
    -------
    dict of str to numpy.ndarray
        Each label's ``(3,)`` point.

    Raises
    ------
    AblationError
        For a missing or binary file, a header without ``label,x,y,z``, a line
        without a label and three finite numbers, a repeated label, or no points.
    """
    p = Path(path)
    text = read_text(p, "points file")
    if "\x00" in text:
        raise AblationError(f"{p.name}: not a text (CSV) file")
    try:
        rows = list(csv.reader(_io.StringIO(text)))
    except csv.Error as exc:
        raise AblationError(f"{p.name}: not a readable CSV file ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise AblationError(f"{p.name}: empty points file (expected header label,x,y,z)")
    header = [c.strip().lower() for c in rows[0]]
    try:
        cols = [header.index(k) for k in ("label", "x", "y", "z")]
    except ValueError:
        raise AblationError(
            f"{p.name}: header must contain label,x,y,z (got {','.join(header)})"
        ) from None
    out: Points = {}
    for n, row in enumerate(rows[1:], start=2):
        try:
            lab = _label(row[cols[0]])
            xyz = np.array([float(row[c]) for c in cols[1:]])
        except (IndexError, ValueError):
            raise AblationError(f"{p.name} line {n}: expected a label and three numbers") from None
        if not lab:
            raise AblationError(f"{p.name} line {n}: empty label")
        if not np.all(np.isfinite(xyz)):
            raise AblationError(f"{p.name} line {n}: coordinates must be finite")
        if lab in out:
            raise AblationError(f"{p.name}: label '{lab}' appears twice")
        out[lab] = xyz
    if not out:
        raise AblationError(f"{p.name}: no points in file")
    return out


def write_points_csv(points, path: str | os.PathLike) -> Path:
    """Write landmarks as a CSV file ``label,x,y,z`` (LPS mm), atomically.

    Parameters
    ----------
    points : mapping, sequence of dict or None
        Landmarks in any form :func:`as_points` accepts.
    path : str or os.PathLike
        The file to write.

    Returns
    -------
    pathlib.Path
        ``path``, written in full (coordinates exact, as ``repr`` of the floats).

    Raises
    ------
    AblationError
        As :func:`as_points`, or when the file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_points_csv({"1": (0.1, -2.0, 35.5)}, Path(folder) / "pre.csv")
    ...     back = read_points_csv(path)
    >>> back["1"].tolist()
    [0.1, -2.0, 35.5]
    """
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "x", "y", "z"])
    for row in points_to_rows(points):
        w.writerow([row["label"], repr(row["x"]), repr(row["y"]), repr(row["z"])])
    return write_text_atomic(path, buf.getvalue())


# ----------------------------------------------------------------------------- pairing / checks


@dataclass
class Pairs:
    """Landmarks of pre and post matched by label (see :func:`pair_points`).

    Parameters
    ----------
    labels : list of str
        The labels present on both images, numeric labels in numeric order.
    fixed : numpy.ndarray
        ``(n, 3)`` pre points of those labels, LPS mm.
    moving : numpy.ndarray
        ``(n, 3)`` post points of those labels, LPS mm.
    only_fixed : list of str
        Labels on pre without a partner on post.
    only_moving : list of str
        Labels on post without a partner on pre.
    """

    labels: list[str]
    fixed: np.ndarray  # (n, 3) pre points
    moving: np.ndarray  # (n, 3) post points
    only_fixed: list[str]
    only_moving: list[str]

    @property
    def unpaired_message(self) -> str | None:
        """One sentence naming the labels without a partner, ``None`` if all are paired."""
        parts = []
        if self.only_fixed:
            parts.append(f"label(s) {', '.join(self.only_fixed)} on pre have no partner on post")
        if self.only_moving:
            parts.append(f"label(s) {', '.join(self.only_moving)} on post have no partner on pre")
        return "; ".join(parts) or None


def pair_points(fixed_pts, moving_pts) -> Pairs:
    """Match the landmarks of pre and post by label.

    Parameters
    ----------
    fixed_pts : mapping, sequence of dict or None
        Landmarks on pre (fixed), in any form :func:`as_points` accepts.
    moving_pts : mapping, sequence of dict or None
        Landmarks on post (moving).

    Returns
    -------
    Pairs
        The paired points and the labels without a partner.

    Raises
    ------
    AblationError
        As :func:`as_points`.

    Examples
    --------
    >>> pairs = pair_points({"1": (0, 0, 0), "2": (1, 0, 0)}, {"2": (1, 1, 0), "3": (0, 0, 9)})
    >>> pairs.labels, pairs.unpaired_message
    (['2'], 'label(s) 1 on pre have no partner on post; label(s) 3 on post have no partner on pre')
    """
    f, m = as_points(fixed_pts), as_points(moving_pts)
    labels = sorted(set(f) & set(m), key=_sort_key)
    return Pairs(
        labels,
        np.array([f[k] for k in labels], dtype=float).reshape(-1, 3),
        np.array([m[k] for k in labels], dtype=float).reshape(-1, 3),
        sorted(set(f) - set(m), key=_sort_key),
        sorted(set(m) - set(f), key=_sort_key),
    )


def check_configuration(pts: np.ndarray, where: str = "landmarks") -> None:
    """Refuse landmarks that cannot determine a rigid motion.

    Parameters
    ----------
    pts : numpy.ndarray
        ``(n, 3)`` points, LPS mm.
    where : str, optional
        What the points are, for the message.

    Raises
    ------
    AblationError
        With fewer than 3 points, or when their RMS distance from their best-fitting
        line is below :data:`MIN_SPREAD_FROM_LINE_MM` (nearly collinear).

    Examples
    --------
    >>> import numpy as np
    >>> check_configuration(np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]]))
    >>> try:
    ...     check_configuration(np.array([[0.0, 0, 0], [10, 0, 0]]))
    ... except AblationError as exc:
    ...     print(exc)
    2 landmark pairs: at least 3 non-collinear pairs are needed
    """
    n = len(pts)
    if n < 3:
        raise AblationError(
            f"{n} landmark pair{'s' if n != 1 else ''}: at least 3 non-collinear pairs are needed"
        )
    c = pts - pts.mean(axis=0)
    s = np.linalg.svd(c, compute_uv=False)
    # RMS distance of the points from their best-fitting line
    spread = math.sqrt(float(np.sum(s[1:] ** 2)) / n)
    if spread < MIN_SPREAD_FROM_LINE_MM:
        raise AblationError(
            f"{where} are collinear (within {spread:.2f} mm of one line): the rotation about "
            "that line is undetermined; add a pair off the line"
        )


def check_inside(points, image: sitk.Image, name: str) -> None:
    """Refuse a landmark that lies outside an image.

    Parameters
    ----------
    points : mapping, sequence of dict or None
        Landmarks in any form :func:`as_points` accepts, LPS mm.
    image : SimpleITK.Image or None
        The image they were clicked on (``None``: nothing is checked).
    name : str
        The image's name for the message (e.g. ``"pre"``).

    Raises
    ------
    AblationError
        If a landmark lies outside the voxel region of ``image`` (more than half a
        voxel beyond its border voxels), or as :func:`as_points`.
    """
    if image is None:
        return
    size = np.asarray(image.GetSize(), dtype=float)
    for lab, xyz in as_points(points).items():
        idx = np.asarray(image.TransformPhysicalPointToContinuousIndex([float(v) for v in xyz]))
        if np.any(idx < -0.5) or np.any(idx > size - 0.5):
            raise AblationError(
                f"landmark '{lab}' at ({xyz[0]:.1f}, {xyz[1]:.1f}, {xyz[2]:.1f}) mm is "
                f"outside the {name} image"
            )


# ----------------------------------------------------------------------------- fit


def kabsch(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit the least-squares rotation and translation taking points ``p`` to ``q``.

    The closed-form SVD solution (Arun/Kabsch/Horn), never a reflection.

    Parameters
    ----------
    p : numpy.ndarray
        ``(n, 3)`` source points.
    q : numpy.ndarray
        ``(n, 3)`` target points, in the same order.

    Returns
    -------
    R : numpy.ndarray
        ``(3, 3)`` rotation matrix (determinant +1).
    t : numpy.ndarray
        ``(3,)`` translation, such that ``R @ p_i + t ~= q_i``.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]])
    >>> R, t = kabsch(p, p + [1.0, 2.0, 3.0])
    >>> np.allclose(R, np.eye(3)), np.round(t, 6).tolist()
    (True, [1.0, 2.0, 3.0])
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    pc, qc = p.mean(axis=0), q.mean(axis=0)
    h = (p - pc).T @ (q - qc)
    u, _s, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, qc - r @ pc


def rigid_jacobian(point, center) -> np.ndarray:
    """Compute the derivative of a small rigid motion of a point by its six parameters.

    Parameters
    ----------
    point, center : (3,) array
        The point ``p`` and the centre ``c`` of the rotations (LPS mm).

    Returns
    -------
    numpy.ndarray
        ``(3, 6)``: the derivative of ``D(p) = p + omega x (p - c) + t`` by ``(omega, t)``
        at the identity.
    """
    x, y, z = np.asarray(point, dtype=float) - center
    return np.hstack([-np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]]), np.eye(3)])


def quantisation_covariance(fixed_spacing=None, moving_spacing=None, rotation=None) -> np.ndarray:
    """Covariance (pre space, mm^2) of a pair's error from clicking on the images' grids.

    A click in a 2D view lies on the displayed slice, and a point is only seen to within
    a voxel: an error uniform over a voxel, variance ``h^2 / 12`` along each grid axis of
    spacing ``h`` (the grids are axis-aligned, DESIGN section 2).

    Parameters
    ----------
    fixed_spacing, moving_spacing : sequence of 3 float, optional
        Spacing ``(x, y, z)`` in mm of the pre and of the post image (``None``: unknown,
        no quantisation on that side).
    rotation : (3, 3) array, optional
        Rotation part of the pre -> post transform: turns the post grid's covariance into
        pre space (default identity).

    Returns
    -------
    numpy.ndarray
        ``diag(h_pre^2 / 12) + R^T diag(h_post^2 / 12) R``.

    Raises
    ------
    AblationError
        A spacing that is not three positive numbers.
    """
    cov = np.zeros((3, 3))
    r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
    for spacing, rot in ((fixed_spacing, np.eye(3)), (moving_spacing, r)):
        if spacing is None:
            continue
        h = np.asarray(spacing, dtype=float).reshape(-1)
        if h.shape != (3,) or not np.all(np.isfinite(h)) or np.any(h <= 0):
            raise AblationError(f"a grid spacing must be three positive numbers, not {spacing}")
        cov += rot.T @ np.diag(h**2 / 12.0) @ rot
    return cov


@dataclass
class LandmarkFit:
    """Result of :func:`fit_landmarks` (all distances in mm).

    Parameters
    ----------
    transform : SimpleITK.Euler3DTransform
        The fitted rigid transform, pre -> post (ITK convention).
    labels : list of str
        The labels of the pairs used.
    residuals : dict of str to float
        Fiducial registration error of each pair, ``|T(p_i) - q_i|``.
    rms_fre : float
        Root mean square of the residuals.
    fixed : numpy.ndarray
        ``(n, 3)`` pre points of the pairs, LPS mm.
    moving : numpy.ndarray
        ``(n, 3)`` post points of the pairs, LPS mm.
    unpaired : list of str, optional
        Labels without a partner (ignored by the fit).
    warnings : list of str, optional
        Sentences for the user (e.g. about unpaired labels).
    quantisation_cov : numpy.ndarray, optional
        ``(3, 3)`` covariance (mm^2, pre space) of a pair's error from the images' grids
        (:func:`quantisation_covariance`); zero when the grids are not known.
    """

    transform: sitk.Euler3DTransform  # pre -> post (ITK convention)
    labels: list[str]
    residuals: dict[str, float]  # FRE of each pair: |T(p_i) - q_i|
    rms_fre: float
    fixed: np.ndarray
    moving: np.ndarray
    unpaired: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quantisation_cov: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))

    @property
    def n(self) -> int:
        """Number of pairs used."""
        return len(self.labels)

    @property
    def dof(self) -> int:
        """Degrees of freedom of the residuals, ``3N - 6``."""
        return 3 * self.n - 6

    @property
    def residual_sd(self) -> float:
        """Localisation error per axis estimated from the residuals (mm).

        Corrected for the fit's degrees of freedom: ``sqrt(sum |r_i|^2 / (3N - 6))``; NaN
        for 3 pairs or fewer.
        """
        ss = float(sum(v * v for v in self.residuals.values()))
        return math.sqrt(ss / self.dof) if self.dof > 0 else float("nan")

    def localisation_covariance(self, sigma: float | None = None) -> np.ndarray:
        """Covariance of a pair's localisation error in pre space (mm^2).

        The larger, along each principal axis of the grids' quantisation covariance, of
        the residual estimate and the quantisation.

        Parameters
        ----------
        sigma : float, optional
            The isotropic error per axis (mm); default :attr:`residual_sd` (0 when NaN).

        Returns
        -------
        numpy.ndarray
            ``(3, 3)`` symmetric covariance.
        """
        s2 = self.residual_sd**2 if sigma is None else float(sigma) ** 2
        s2 = 0.0 if not math.isfinite(s2) else s2
        w, v = np.linalg.eigh(self.quantisation_cov)
        return (v * np.maximum(w, s2)) @ v.T

    @property
    def fle_estimate(self) -> float:
        """Estimated fiducial localisation error (3D RMS, mm).

        ``sqrt(trace S)``; without the grids, ``rms_fre * sqrt(N / (N - 2))``.
        """
        return float(math.sqrt(np.trace(self.localisation_covariance())))

    def parameter_covariance(self, center, sigma: float | None = None) -> np.ndarray:
        """First-order covariance of the fit's six rigid parameters.

        Parameters
        ----------
        center : array_like
            Centre ``c`` of the rotations (LPS mm), e.g. the tumor centroid.
        sigma : float, optional
            The residual part of the localisation error (see
            :meth:`localisation_covariance`).

        Returns
        -------
        numpy.ndarray
            ``(6, 6)`` covariance of ``(omega, t)`` (rad, mm) of the perturbation
            ``D(p) = p + omega x (p - c) + t`` of pre space:
            ``H^-1 (sum_i J_i^T S J_i) H^-1``.
        """
        c = np.asarray(center, dtype=float).reshape(3)
        jac = [rigid_jacobian(p, c) for p in self.fixed]
        s = self.localisation_covariance(sigma)
        h_inv = np.linalg.inv(sum(j.T @ j for j in jac))
        return h_inv @ sum(j.T @ s @ j for j in jac) @ h_inv

    def predicted_tre_at(self, point_lps) -> float:
        """Predict the target registration error at a point (RMS, mm).

        Parameters
        ----------
        point_lps : array_like
            The target ``(x, y, z)`` in pre space, LPS mm (e.g. the tumor centre).

        Returns
        -------
        float
            ``sqrt(trace Cov(t))`` of :meth:`parameter_covariance` about the point; it
            grows with the distance of the target from the landmarks' principal axes, and
            never falls below what the grids' quantisation allows.
        """
        cov = self.parameter_covariance(point_lps)
        return float(math.sqrt(max(np.trace(cov[3:, 3:]), 0.0)))

    def table(self) -> list[tuple[str, float]]:
        """List the residual of every pair.

        Returns
        -------
        list of tuple
            ``(label, residual in mm)`` in label order.
        """
        return [(k, self.residuals[k]) for k in self.labels]

    def worst(self) -> tuple[str, float]:
        """Find the pair with the largest residual (the likeliest bad click).

        Returns
        -------
        label : str
            Its label.
        residual : float
            Its residual in mm.
        """
        k = max(self.labels, key=lambda lab: self.residuals[lab])
        return k, self.residuals[k]


def fit_landmarks(
    fixed_pts,
    moving_pts,
    *,
    center_lps=None,
    strict: bool = False,
    fixed_spacing=None,
    moving_spacing=None,
) -> LandmarkFit:
    """Fit the least-squares rigid transform ``T(pre point) ~= post point``.

    Landmark pairs are matched by label; labels without a partner are ignored (listed
    in ``unpaired`` and ``warnings``), or with ``strict`` refused.

    Parameters
    ----------
    fixed_pts : mapping, sequence of dict or None
        Landmarks on pre (fixed), LPS mm, in any form :func:`as_points` accepts.
    moving_pts : mapping, sequence of dict or None
        Landmarks on post (moving), LPS mm.
    center_lps : array_like, optional
        Rotation centre of the returned Euler transform (e.g. the tumor centre;
        default: centroid of the pre landmarks). It does not change the mapping.
    strict : bool, optional
        Refuse labels without a partner instead of ignoring them.
    fixed_spacing, moving_spacing : sequence of 3 float, optional
        Spacing ``(x, y, z)`` in mm of the images the landmarks were clicked on: the
        localisation error is at least their quantisation (:func:`quantisation_covariance`).
        Without them the error is estimated from the residuals alone.

    Returns
    -------
    LandmarkFit
        The transform (pre -> post, ITK convention), the residual of every pair and
        the localisation error model.

    Raises
    ------
    AblationError
        With ``strict`` and an unpaired label; fewer than 3 pairs or collinear
        landmarks on either image; bad landmarks (see :func:`as_points`); a bad spacing.

    Examples
    --------
    Post is pre shifted 5 mm to the patient's left (+x):

    >>> pre = {"1": (0, 0, 0), "2": (40, 0, 0), "3": (0, 30, 0), "4": (0, 0, 20)}
    >>> post = {k: (x + 5.0, y, z) for k, (x, y, z) in pre.items()}
    >>> fit = fit_landmarks(pre, post)
    >>> [round(v, 6) for v in fit.transform.TransformPoint((10.0, 10.0, 10.0))]
    [15.0, 10.0, 10.0]
    >>> round(fit.rms_fre, 6)
    0.0
    """
    pairs = pair_points(fixed_pts, moving_pts)
    msg = pairs.unpaired_message
    if msg and strict:
        raise AblationError(msg)
    check_configuration(pairs.fixed, "pre landmarks")
    check_configuration(pairs.moving, "post landmarks")
    r, t = kabsch(pairs.fixed, pairs.moving)
    center = pairs.fixed.mean(axis=0) if center_lps is None else np.asarray(center_lps, dtype=float)
    tx = tfm.euler_from_matrix(r, t, center)
    pred = pairs.fixed @ r.T + t
    res = np.linalg.norm(pred - pairs.moving, axis=1)
    rms = float(math.sqrt(np.mean(res**2)))
    warnings = [msg] if msg else []
    return LandmarkFit(
        tx,
        pairs.labels,
        {k: float(v) for k, v in zip(pairs.labels, res)},
        rms,
        pairs.fixed,
        pairs.moving,
        pairs.only_fixed + pairs.only_moving,
        warnings,
        quantisation_covariance(fixed_spacing, moving_spacing, r),
    )


def format_fit(fit: LandmarkFit, target_lps=None, target_name: str = "tumor centre") -> str:
    """Summarise a landmark fit for people: residuals, RMS and predicted TRE.

    Parameters
    ----------
    fit : LandmarkFit
        The fit.
    target_lps : array_like, optional
        A target ``(x, y, z)`` in pre space, LPS mm, at which to give the predicted
        target registration error.
    target_name : str, optional
        What the target is, for the text.

    Returns
    -------
    str
        Lines: the residual of every pair, the RMS residual, the predicted target
        error (with a target) and the warnings.
    """
    lines = ["pair  residual (mm)"]
    for lab, res in fit.table():
        lines.append(f"{lab:>4}  {res:8.2f}")
    lines.append(f"RMS fiducial residual {fit.rms_fre:.2f} mm over {fit.n} pairs")
    if target_lps is not None:
        lines.append(
            f"predicted target error at the {target_name}: "
            f"{fit.predicted_tre_at(target_lps):.2f} mm"
        )
    lines.extend(f"warning: {w}" for w in fit.warnings)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- pairing rules
_EMPTY_LABELS = ("", "nan", "None")


def next_pair_label(mine, other) -> str:
    """Choose the label of the next point clicked on one image.

    The oldest label of the other image still waiting for a partner here, else a new
    number one above the largest numeric label of either image.

    Parameters
    ----------
    mine, other : sequence of str
        Pair labels already on this image and on the other image, in click order.

    Returns
    -------
    str
        The label.
    """
    mine = [str(p) for p in mine]
    for p in other:
        if str(p) not in mine:
            return str(p)
    used = [int(p) for p in [*mine, *map(str, other)] if p.isdigit()]
    return str(max(used, default=0) + 1)


def settle_labels(labels, other) -> list[str]:
    """Pair labels of one image after points were clicked: every label unique and set.

    A point without a label, or with a label already used on this image, gets the next
    label by :func:`next_pair_label` (the labels before it count as used).

    Parameters
    ----------
    labels : sequence
        The labels of all points of the image, in order (new points last).
    other : sequence of str
        The labels on the other image.

    Returns
    -------
    list of str
        The settled labels, in the same order.
    """
    out: list[str] = []
    for p in (str(v) for v in labels):
        if p in _EMPTY_LABELS or p in out:
            p = next_pair_label(out, other)
        out.append(p)
    return out
