"""Gaussian filtering of 3D float32 volumes, the numbers of ``scipy.ndimage.gaussian_filter``.

The margin engine blurs each mask's crop several times (anti-aliasing, and the two wider
blurs the curvature correction is measured on). scipy filters one line at a time through
a double-precision line buffer, the sum over the kernel's taps innermost: it cannot use
vector instructions. Here each pass runs over whole rows or planes, the taps outermost, so
that every output element gets the very arithmetic of scipy's symmetric-kernel loop (in
double precision, ``x[i] w[0]``, then ``(x[i - j] + x[i + j]) w[j]`` added for ``j`` from the
kernel's radius down to 1, rounded to float32 after each axis) while neighbouring elements
are computed side by side: the same bits, several times faster.

The kernels are compiled by numba on first use and cached on disk; they release the GIL.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["gaussian_filter"]

_MODES = {"reflect": 0, "constant": 1}


def _kernel(sigma: float, truncate: float) -> np.ndarray:
    """One half of the normalised Gaussian kernel, ``w[0]`` at the centre (scipy's numbers)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    phi = phi / phi.sum()
    return np.ascontiguousarray(phi[radius:])


@numba.njit(inline="always")
def _src(i, n, mode):  # pragma: no cover - compiled
    """Index of the sample that stands at ``i`` of a line of ``n`` (-1: the constant 0)."""
    if 0 <= i < n:
        return i
    if mode == 1:
        return -1
    m = i % (2 * n)  # reflect: d c b a | a b c d | d c b a, period 2n
    return m if m < n else 2 * n - 1 - m


@numba.njit(nogil=True, cache=True)
def _pass(src, dst, w, axis, mode):  # pragma: no cover - compiled
    """One axis of the filter: ``dst`` (float32) from ``src`` (float32), both (nz, ny, nx)."""
    nz, ny, nx = src.shape
    r = w.shape[0] - 1
    if axis == 2:
        # the plane transposed (x first, y contiguous), with the edges' extension
        ext = np.zeros((nx + 2 * r, ny))
        acc = np.empty(ny)
        for z in range(nz):
            for i in range(-r, nx + r):
                k = _src(i, nx, mode)
                if k >= 0:
                    for y in range(ny):
                        ext[i + r, y] = np.float64(src[z, y, k])
            for x in range(nx):
                for y in range(ny):
                    acc[y] = ext[x + r, y] * w[0]
                for j in range(r, 0, -1):
                    wj = w[j]
                    for y in range(ny):
                        acc[y] += (ext[x + r - j, y] + ext[x + r + j, y]) * wj
                for y in range(ny):
                    dst[z, y, x] = np.float32(acc[y])
    elif axis == 1:
        acc = np.empty(nx)
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    acc[x] = np.float64(src[z, y, x]) * w[0]
                for j in range(r, 0, -1):
                    wj = w[j]
                    a = _src(y - j, ny, mode)
                    b = _src(y + j, ny, mode)
                    for x in range(nx):
                        va = np.float64(src[z, a, x]) if a >= 0 else 0.0
                        vb = np.float64(src[z, b, x]) if b >= 0 else 0.0
                        acc[x] += (va + vb) * wj
                for x in range(nx):
                    dst[z, y, x] = np.float32(acc[x])
    else:
        acc = np.empty((ny, nx))
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    acc[y, x] = np.float64(src[z, y, x]) * w[0]
            for j in range(r, 0, -1):
                wj = w[j]
                a = _src(z - j, nz, mode)
                b = _src(z + j, nz, mode)
                for y in range(ny):
                    for x in range(nx):
                        va = np.float64(src[a, y, x]) if a >= 0 else 0.0
                        vb = np.float64(src[b, y, x]) if b >= 0 else 0.0
                        acc[y, x] += (va + vb) * wj
            for y in range(ny):
                for x in range(nx):
                    dst[z, y, x] = np.float32(acc[y, x])


def gaussian_filter(
    arr: np.ndarray, sigma, mode: str = "reflect", truncate: float = 4.0
) -> np.ndarray:
    """Gaussian filter of a 3D float32 array: ``scipy.ndimage.gaussian_filter``'s result.

    Parameters
    ----------
    arr : numpy.ndarray
        3D float32 array.
    sigma : float or sequence of float
        Standard deviation per axis (samples); an axis with sigma 0 is not filtered.
    mode : {"reflect", "constant"}, optional
        Beyond the edges: the array mirrored (half-sample symmetric), or zeros.
    truncate : float, optional
        Kernel radius in standard deviations (rounded as scipy rounds it).

    Returns
    -------
    numpy.ndarray
        The filtered array (float32, a new array), equal bit for bit to
        ``scipy.ndimage.gaussian_filter(arr, sigma, mode=mode, truncate=truncate)``.

    Raises
    ------
    ValueError
        If ``arr`` is not a 3D float32 array or ``mode`` is not supported.
    """
    if arr.ndim != 3 or arr.dtype != np.float32:
        raise ValueError("gaussian_filter takes a 3D float32 array")
    if mode not in _MODES:
        raise ValueError(f"gaussian_filter supports the modes {sorted(_MODES)}, not {mode!r}")
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), (3,))
    cur = np.ascontiguousarray(arr)
    bufs = [np.empty_like(cur)]
    for axis in range(3):
        if sig[axis] > 1e-15:  # as scipy: axes with no blur are skipped
            if len(bufs) == 1 and cur is not arr:
                bufs.append(np.empty_like(cur))
            dst = bufs[0] if cur is not bufs[0] else bufs[1]
            _pass(cur, dst, _kernel(sig[axis], truncate), axis, _MODES[mode])
            cur = dst
    return cur.copy() if cur is arr else cur
