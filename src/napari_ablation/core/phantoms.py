"""Analytic shapes with known answers, for tests, benchmarks and validation studies.

Arrays are boolean ``(z, y, x)`` masks on a grid centred at 0 with the given spacing (mm).
"""

from __future__ import annotations

import math

import numpy as np


def rotation(axis: int, deg: float) -> np.ndarray:
    """3 x 3 rotation by ``deg`` degrees about array axis ``axis`` (0 z, 1 y, 2 x).

    Parameters
    ----------
    axis : {0, 1, 2}
        Array axis (0 z, 1 y, 2 x).
    deg : float
        Angle (degrees).

    Returns
    -------
    numpy.ndarray, shape (3, 3)
        The rotation matrix.
    """
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


def centred_grid(shape, spacing):
    """(z, y, x) coordinates in mm of the voxel centres of a grid centred at 0.

    Parameters
    ----------
    shape : tuple of 3 ints
        (z, y, x) shape.
    spacing : sequence of 3 floats
        (z, y, x) spacing (mm).

    Returns
    -------
    list of 3 numpy.ndarray
        ``z, y, x`` coordinate arrays of ``shape``.
    """
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    return np.meshgrid(*axes, indexing="ij")


def tilted_ellipsoid(
    shape=(70, 110, 100), spacing=(1.0, 1.0, 1.0), semi=(24, 36, 18), angles=(30, 20, 15)
):
    """Ellipsoid with semi-axes ``semi`` (mm, z y x) rotated by ``angles`` degrees about z, y, x.

    Parameters
    ----------
    shape : tuple of 3 ints
        (z, y, x) grid shape.
    spacing : sequence of 3 floats
        (z, y, x) spacing (mm).
    semi : sequence of 3 floats
        Semi-axes (mm, z y x) before the rotation.
    angles : sequence of 3 floats
        Rotations (degrees) about the z, y and x array axes.

    Returns
    -------
    numpy.ndarray of bool
        The mask (voxel centres inside), on a grid centred at 0.
    """
    z, y, x = centred_grid(shape, spacing)
    p = np.stack([z, y, x], -1) @ (
        rotation(0, angles[0]) @ rotation(1, angles[1]) @ rotation(2, angles[2])
    )
    return ((p / np.asarray(semi, float)) ** 2).sum(-1) <= 1


def kidney(shape=(64, 90, 80), spacing=(2.0, 1.0, 1.0), width=30.0):
    """Bean: a bent ellipsoid (long axis z, 110 mm) with a hilum notch (non-convex).

    Parameters
    ----------
    shape : tuple of 3 ints
        (z, y, x) grid shape.
    spacing : sequence of 3 floats
        (z, y, x) spacing (mm).
    width : float
        Semi-axis along x (mm).

    Returns
    -------
    numpy.ndarray of bool
        The mask, on a grid centred at 0.
    """
    z, y, x = centred_grid(shape, spacing)
    xb = x - 0.004 * z**2
    body = (z / 55) ** 2 + (y / 22) ** 2 + (xb / width) ** 2 <= 1
    hilum = (z / 22) ** 2 + (y / 14) ** 2 + ((xb - width) / (0.6 * width)) ** 2 <= 1
    return body & ~hilum


# --------------------------------------------------------------------------- exact ellipsoids (LPS)


def ellipsoid_signed_distance(points, centre, semi_axes, rot) -> tuple[np.ndarray, np.ndarray]:
    """Exact signed Euclidean distance from points to an ellipsoid surface, positive inside.

    Parameters
    ----------
    points : (n, 3) array
        Points (mm, any frame shared with ``centre`` and ``rot``).
    centre : (3,) array
        Centre of the ellipsoid.
    semi_axes : (3,) array
        Semi-axis lengths (mm), along the columns of ``rot``.
    rot : (3, 3) array
        Rotation whose columns are the ellipsoid's axes.

    Returns
    -------
    distance : (n,) array
        Signed distance (mm), positive inside the ellipsoid.
    closest : (n, 3) array
        The closest surface point of each point.

    Notes
    -----
    The closest point ``x`` of ``y`` (ellipsoid frame) satisfies ``x_i = e_i^2 y_i / (t + e_i^2)``
    with ``t`` the unique root of ``sum (e_i y_i / (t + e_i^2))^2 = 1`` in ``t > -min e_i^2``
    (Eberly, "Distance from a point to an ellipse, an ellipsoid, or a hyperellipsoid"); the
    root is found by bisection to machine precision.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 3)
    e = np.asarray(semi_axes, dtype=float)
    R = np.asarray(rot, dtype=float)
    y = (p - np.asarray(centre, dtype=float)) @ R
    # a coordinate exactly 0 along the shortest axis makes the root degenerate; nudge it
    y = np.where(np.abs(y) < 1e-12, 1e-12, y)
    e2 = e * e
    inside = ((y / e) ** 2).sum(axis=1) <= 1.0
    lo = np.where(inside, -e2.min(), 0.0)
    hi = np.where(inside, 0.0, np.linalg.norm(y, axis=1) * e.max() + 1e-9)
    for _ in range(200):
        t = 0.5 * (lo + hi)
        f = ((e * y / (t[:, None] + e2)) ** 2).sum(axis=1) - 1.0
        pos = f > 0  # F decreases in t: the root is above t
        lo = np.where(pos, t, lo)
        hi = np.where(pos, hi, t)
        if np.all(hi - lo <= 1e-13 * np.maximum(1.0, np.abs(hi))):
            break
    t = 0.5 * (lo + hi)
    x = e2 * y / (t[:, None] + e2)
    d = np.linalg.norm(y - x, axis=1)
    return np.where(inside, d, -d), x @ R.T + np.asarray(centre, dtype=float)


def ellipsoid_surface_points(centre, semi_axes, rot, n: int = 40000) -> np.ndarray:
    """About ``n`` points spread over an ellipsoid surface (a Fibonacci sphere, stretched).

    Parameters
    ----------
    centre, semi_axes : array_like, shape (3,)
        The ellipsoid's centre and semi-axes, as in :func:`ellipsoid_signed_distance`.
    rot : array_like, shape (3, 3)
        Its rotation, as in :func:`ellipsoid_signed_distance`.
    n : int
        Number of points.

    Returns
    -------
    (n, 3) array
        Surface points.
    """
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = i * math.pi * (3 - math.sqrt(5))
    u = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    return (u * np.asarray(semi_axes, dtype=float)) @ np.asarray(rot, dtype=float).T + np.asarray(
        centre, dtype=float
    )


def ellipsoid_min_margin(tumor, ablation, n: int = 40000) -> tuple[float, np.ndarray, np.ndarray]:
    """Exact minimal margin of a tumor ellipsoid with respect to an ablation ellipsoid.

    Parameters
    ----------
    tumor, ablation : tuple
        ``(centre, semi_axes, rot)`` of each ellipsoid (same frame, mm).
    n : int
        Surface samples of the first pass (the minimum is then refined locally).

    Returns
    -------
    mtm : float
        Minimum over the tumor surface of the signed distance to the ablation surface (mm,
        negative where the tumor reaches outside the ablation zone).
    point : (3,) array
        The tumor surface point of the minimum.
    direction : (3,) array
        Unit vector from that point towards the closest ablation surface point, oriented
        outwards from the tumor (into the margin).
    """
    from scipy.optimize import minimize

    c, e, R = (np.asarray(v, dtype=float) for v in tumor)

    def surf(ang):
        th, ph = ang
        u = np.array([math.sin(th) * math.cos(ph), math.sin(th) * math.sin(ph), math.cos(th)])
        return (u * e) @ R.T + c

    pts = ellipsoid_surface_points(c, e, R, n)
    m, _ = ellipsoid_signed_distance(pts, *ablation)
    best = None
    for j in np.argsort(m)[:3]:
        u = ((pts[j] - c) @ R) / e
        a0 = np.array([math.acos(np.clip(u[2], -1, 1)), math.atan2(u[1], u[0])])
        r = minimize(
            lambda a: float(ellipsoid_signed_distance(surf(a)[None], *ablation)[0][0]),
            a0,
            method="Nelder-Mead",
            options={"xatol": 1e-7, "fatol": 1e-9},
        )
        if best is None or r.fun < best.fun:
            best = r
    p = surf(best.x)
    d, q = ellipsoid_signed_distance(p[None], *ablation)
    v = q[0] - p
    nv = float(np.linalg.norm(v))
    if nv < 1e-9:  # on the ablation surface: the outward ellipsoid normal
        g = ((p - c) @ R) / (e * e)
        v = R @ g
        nv = float(np.linalg.norm(v))
    direction = v / nv * (1.0 if d[0] >= 0 else -1.0)
    return float(min(best.fun, d[0])), p, direction


def ellipsoid_mask(shape_zyx, index_to_lps, origin, centre, semi_axes, rot) -> np.ndarray:
    """Binary mask (voxel centre inside the ellipsoid) on a grid.

    Parameters
    ----------
    shape_zyx : tuple of int
        Array shape.
    index_to_lps : (3, 3) array
        Matrix whose columns map a (z, y, x) index step to an LPS step (direction times spacing).
    origin : (3,) array
        LPS of voxel (0, 0, 0).
    centre, semi_axes : array_like, shape (3,)
        The ellipsoid's centre and semi-axes, as in :func:`ellipsoid_signed_distance`.
    rot : array_like, shape (3, 3)
        Its rotation, as in :func:`ellipsoid_signed_distance`.

    Returns
    -------
    numpy.ndarray of bool
        The mask, of shape ``shape_zyx``.
    """
    M = np.asarray(index_to_lps, dtype=float)
    Minv = np.linalg.inv(M)
    e = np.asarray(semi_axes, dtype=float)
    c_idx = (np.asarray(centre, dtype=float) - origin) @ Minv.T
    ext = e.max() * np.linalg.norm(Minv, axis=1) + 1
    shape = np.asarray(shape_zyx)
    lo = np.maximum(np.floor(c_idx - ext).astype(int), 0)
    hi = np.minimum(np.ceil(c_idx + ext).astype(int) + 1, shape)
    out = np.zeros(tuple(shape), dtype=bool)
    if np.all(hi > lo):
        grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
        idx = np.stack(grids, axis=-1).reshape(-1, 3)
        y = (idx @ M.T + origin - centre) @ np.asarray(rot, dtype=float)
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = (
            ((y / e) ** 2).sum(axis=1) <= 1
        ).reshape(grids[0].shape)
    return out
