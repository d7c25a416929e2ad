"""Analytic shapes with known answers, for tests, benchmarks and validation studies.

Arrays are boolean ``(z, y, x)`` masks on a grid centred at 0 with the given spacing (mm).
"""

from __future__ import annotations

import numpy as np


def rotation(axis: int, deg: float) -> np.ndarray:
    """3 x 3 rotation by ``deg`` degrees about array axis ``axis`` (0 z, 1 y, 2 x)."""
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


def centred_grid(shape, spacing):
    """(z, y, x) coordinates in mm of the voxel centres of a grid centred at 0."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    return np.meshgrid(*axes, indexing="ij")


def tilted_ellipsoid(shape=(70, 110, 100), spacing=(1.0, 1.0, 1.0), semi=(24, 36, 18), angles=(30, 20, 15)):
    """Ellipsoid with semi-axes ``semi`` (mm, z y x) rotated by ``angles`` degrees about z, y, x."""
    z, y, x = centred_grid(shape, spacing)
    p = np.stack([z, y, x], -1) @ (rotation(0, angles[0]) @ rotation(1, angles[1]) @ rotation(2, angles[2]))
    return ((p / np.asarray(semi, float)) ** 2).sum(-1) <= 1


def kidney(shape=(64, 90, 80), spacing=(2.0, 1.0, 1.0), width=30.0):
    """Bean: a bent ellipsoid (long axis z, 110 mm) with a hilum notch (non-convex)."""
    z, y, x = centred_grid(shape, spacing)
    xb = x - 0.004 * z**2
    body = (z / 55) ** 2 + (y / 22) ** 2 + (xb / width) ** 2 <= 1
    hilum = (z / 22) ** 2 + (y / 14) ** 2 + ((xb - width) / (0.6 * width)) ** 2 <= 1
    return body & ~hilum
