"""Gaussian filtering of 3D float32 volumes, the numbers of ``scipy.ndimage.gaussian_filter``.

The margin engine blurs each mask's crop several times (anti-aliasing, and the two wider
blurs the curvature correction is measured on). scipy filters one line at a time through
a double-precision line buffer, the sum over the kernel's taps innermost: it cannot use
vector instructions. Here each pass runs over whole rows or planes, the taps outermost, so
that every output element gets the very arithmetic of scipy's symmetric-kernel loop (in
double precision, ``x[i] w[0]``, then ``(x[i - j] + x[i + j]) w[j]`` added for ``j`` from the
kernel's radius down to 1, rounded to float32 after each axis) while neighbouring elements
are computed side by side: the same bits, several times faster.

Also here, each giving the numbers of the formulation it replaces:

* :func:`slice_edt`: the exact two-sided distance transform of a binary slice
  (``scipy.ndimage.distance_transform_edt``'s numbers for both sides in one pass);
* :func:`low_parts`: the parts of a mask whose blurred field stays low, found by a flood
  fill from the field's high samples over the mask's surface band instead of a labelling
  of the whole crop;
* :func:`curvature_sums`: the curvature of a field's level sets at surface points, from
  the samples near the points (numpy's whole-array formulation);
* :func:`gradient_at`: a volume's gradient interpolated at points (``np.gradient`` and
  trilinear interpolation);
* :func:`find_contours`: a slice's contours at a level (``skimage.measure.find_contours``:
  the same points, contours and order);
* :func:`window_extremes`: the minimum and maximum of two arrays over boxes;
* :func:`contour_segments`, :func:`slice_band`, :func:`signed_band`: a thick slice's contour
  segments, its pixel-centre signed distances with their band, and the band's signed exact
  distances (the margin engine's per-slice numpy formulation);
* :func:`pieces_go_on`: whether every piece of a slice overlaps its filled neighbours (the
  labelled pieces' test).

The kernels are compiled by numba on first use and cached on disk; they release the GIL.

Compile time (the first analysis after an install; :mod:`~napari_ablation.core.warmup` does
it ahead): one signature per kernel (the wrappers cast their arguments), and the small
helpers are plain compiled functions that LLVM inlines, not ``inline="always"`` (numba
then types a copy of the helper at every call site: 2-3 s more of compilation, the same
bits and speed; benchmarks/README.md, "First use").
"""

from __future__ import annotations

import numba
import numpy as np
from numba.typed import Dict

__all__ = [
    "contour_segments",
    "curvature_sums",
    "diagonal_caps",
    "find_contours",
    "gaussian_filter",
    "gradient_at",
    "low_parts",
    "pieces_go_on",
    "signed_band",
    "slice_band",
    "slice_edt",
    "window_extremes",
]

_MODES = {"reflect": 0, "constant": 1}
_POINT = numba.types.UniTuple(numba.types.float64, 2)


def _kernel(sigma: float, truncate: float) -> np.ndarray:
    """One half of the normalised Gaussian kernel, ``w[0]`` at the centre (scipy's numbers)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    phi = phi / phi.sum()
    return np.ascontiguousarray(phi[radius:])


@numba.njit
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


@numba.njit
def _near(a, z, y, x, value):  # pragma: no cover - compiled
    """Whether a 26-neighbour of (z, y, x) in ``a`` equals ``value``."""
    nz, ny, nx = a.shape
    for c in range(max(z - 1, 0), min(z + 2, nz)):
        for b in range(max(y - 1, 0), min(y + 2, ny)):
            for i in range(max(x - 1, 0), min(x + 2, nx)):
                if a[c, b, i] == value:
                    return True
    return False


@numba.njit(nogil=True, cache=True)
def _low_parts(solid, values, peak, out):  # pragma: no cover - compiled
    """Mark the low samples (``values < peak``) of ``solid`` in ``out``: 2 when a chain of
    26-neighbouring low samples links them to a high one, 3 when none does; return how
    many are marked 3."""
    nz, ny, nx = solid.shape
    # high samples 4, then each low sample 2 when a high one is next to it, else 1
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if solid[z, y, x] != 0 and values[z, y, x] >= peak:
                    out[z, y, x] = 4
    n_far = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if solid[z, y, x] != 0 and out[z, y, x] == 0:
                    if _near(out, z, y, x, 4):
                        out[z, y, x] = 2
                    else:
                        out[z, y, x] = 1
                        n_far += 1
    if n_far == 0:
        return 0
    # each group of connected samples marked 1: reached (2) when it touches a sample marked
    # 2, else a low part of its own (3)
    stack = np.empty((n_far, 3), dtype=np.int64)
    n_low = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if out[z, y, x] != 1:
                    continue
                out[z, y, x] = 5  # (in the group being collected)
                stack[0, 0], stack[0, 1], stack[0, 2] = z, y, x
                top, n, touch = 0, 1, False
                while top < n:
                    c0, b0, i0 = stack[top, 0], stack[top, 1], stack[top, 2]
                    top += 1
                    for c in range(max(c0 - 1, 0), min(c0 + 2, nz)):
                        for b in range(max(b0 - 1, 0), min(b0 + 2, ny)):
                            for i in range(max(i0 - 1, 0), min(i0 + 2, nx)):
                                m = out[c, b, i]
                                if m == 2:
                                    touch = True
                                elif m == 1:
                                    out[c, b, i] = 5
                                    stack[n, 0], stack[n, 1], stack[n, 2] = c, b, i
                                    n += 1
                mark = 2 if touch else 3
                for k in range(n):
                    out[stack[k, 0], stack[k, 1], stack[k, 2]] = mark
                if not touch:
                    n_low += n
    return n_low


def low_parts(solid: np.ndarray, values: np.ndarray, peak) -> np.ndarray | None:
    """The samples of the connected parts of a mask on which a field stays below ``peak``.

    Parameters
    ----------
    solid : numpy.ndarray
        3D mask (bool or uint8, non-zero inside).
    values : numpy.ndarray
        3D float32 field on the same samples.
    peak : float
        A part (26-connected samples of ``solid``) is low when ``values`` stays below
        ``peak`` (compared in float32) on every one of its samples.

    Returns
    -------
    numpy.ndarray or None
        Boolean mask of the samples of the low parts (those of
        ``scipy.ndimage.label(solid, np.ones((3, 3, 3)))`` whose maximum of ``values`` is
        below ``peak``); None when there are none.

    Raises
    ------
    ValueError
        If the arrays are not 3D of the same shape or ``values`` is not float32.
    """
    if solid.ndim != 3 or solid.shape != values.shape or values.dtype != np.float32:
        raise ValueError("low_parts takes a 3D mask and a float32 field of the same shape")
    sol = np.ascontiguousarray(solid).view(np.uint8)
    out = np.zeros(sol.shape, dtype=np.uint8)
    if _low_parts(sol, np.ascontiguousarray(values), np.float32(peak), out) == 0:
        return None
    return out == 3


@numba.njit(nogil=True, cache=True)
def _slice_edt(inside, sy, sx, col, out):  # pragma: no cover - compiled
    """Each pixel's distance to the nearest pixel of the other side, into ``out``."""
    ny, nx = inside.shape
    # rows from (y, x) to the nearest pixel of column x: col[0] an outside one, col[1] an
    # inside one (-1: none in that column)
    for x in range(nx):
        for side in range(2):
            want = side == 1
            last = -1
            for y in range(ny):
                if inside[y, x] == want:
                    last = y
                col[side, y, x] = y - last if last >= 0 else -1
            last = -1
            for y in range(ny - 1, -1, -1):
                if inside[y, x] == want:
                    last = y
                if last >= 0 and (col[side, y, x] < 0 or last - y < col[side, y, x]):
                    col[side, y, x] = last - y
    for y in range(ny):
        for x in range(nx):
            side = 0 if inside[y, x] else 1
            best = np.inf
            # columns outwards from x until the column offset alone exceeds the best
            for dx in range(nx):
                b = np.float64(dx) * sx
                if b * b > best:
                    break
                for k in range(2 if dx > 0 else 1):
                    xx = x - dx if k == 0 else x + dx
                    if 0 <= xx < nx:
                        dy = col[side, y, xx]
                        if dy >= 0:
                            a = np.float64(dy) * sy
                            v = a * a + b * b
                            if v < best:
                                best = v
            out[y, x] = np.sqrt(best)


def slice_edt(inside: np.ndarray, sampling) -> np.ndarray:
    """Exact Euclidean distance of each pixel of a 2D mask to the nearest pixel of the other side.

    Parameters
    ----------
    inside : numpy.ndarray
        2D boolean mask with pixels on both sides.
    sampling : sequence of float
        Pixel spacing (rows, columns).

    Returns
    -------
    numpy.ndarray
        float64 distances: on ``inside`` pixels the numbers of
        ``scipy.ndimage.distance_transform_edt(inside, sampling=sampling)``, elsewhere those of
        ``distance_transform_edt(~inside, sampling=sampling)`` (each distance
        ``sqrt((dy sy)^2 + (dx sx)^2)`` of the nearest pixel, computed as scipy computes it).

    Raises
    ------
    ValueError
        If ``inside`` is not 2D boolean or has pixels on one side only.
    """
    if inside.ndim != 2 or inside.dtype != np.bool_:
        raise ValueError("slice_edt takes a 2D boolean mask")
    if inside.all() or not inside.any():
        raise ValueError("slice_edt needs pixels on both sides of the mask")
    sy, sx = (float(v) for v in sampling)
    col = np.empty((2, *inside.shape), dtype=np.int64)
    out = np.empty(inside.shape)
    _slice_edt(np.ascontiguousarray(inside), sy, sx, col, out)
    return out


@numba.njit
def _unit_normal(f, z, y, x, den):  # pragma: no cover - compiled
    """Unit gradient of ``f`` at a sample: central differences, one-sided at the edges.

    ``np.gradient``'s differences over ``den[axis, hi - lo]`` (float32 spacings), each step in
    float32 as numpy takes it: the norm ``sqrt(gz^2 + gy^2 + gx^2) + 1e-6``.
    """
    nz, ny, nx = f.shape
    z0, z1 = max(z - 1, 0), min(z + 1, nz - 1)
    y0, y1 = max(y - 1, 0), min(y + 1, ny - 1)
    x0, x1 = max(x - 1, 0), min(x + 1, nx - 1)
    gz = (f[z1, y, x] - f[z0, y, x]) / den[0, z1 - z0]
    gy = (f[z, y1, x] - f[z, y0, x]) / den[1, y1 - y0]
    gx = (f[z, y, x1] - f[z, y, x0]) / den[2, x1 - x0]
    norm = np.sqrt(gz * gz + gy * gy + gx * gx) + np.float32(1e-6)
    return gz / norm, gy / norm, gx / norm


@numba.njit(nogil=True, cache=True)
def _curvature_sums(f, den, verts, kappa, normal):  # pragma: no cover - compiled
    """Per vertex: minus the trilinear sum of the normal's divergence, and of the normal."""
    nz, ny, nx = f.shape
    for v in range(verts.shape[0]):
        iz, iy, ix = np.floor(verts[v, 0]), np.floor(verts[v, 1]), np.floor(verts[v, 2])
        wz, wy, wx = verts[v, 0] - iz, verts[v, 1] - iy, verts[v, 2] - ix
        k_sum = 0.0
        n0 = n1 = n2 = 0.0
        for k in range(8):  # the cell's corners in the order of a sum over all eight
            bz, by, bx = (k >> 2) & 1, (k >> 1) & 1, k & 1
            w = (wz if bz else 1 - wz) * (wy if by else 1 - wy) * (wx if bx else 1 - wx)
            if w == 0:
                continue
            z = min(max(int(iz) + bz, 0), nz - 1)
            y = min(max(int(iy) + by, 0), ny - 1)
            x = min(max(int(ix) + bx, 0), nx - 1)
            # the divergence of the unit normal at the corner (differences as np.gradient's)
            z0, z1 = max(z - 1, 0), min(z + 1, nz - 1)
            y0, y1 = max(y - 1, 0), min(y + 1, ny - 1)
            x0, x1 = max(x - 1, 0), min(x + 1, nx - 1)
            div = np.float32(0.0)
            div = (
                div
                + (_unit_normal(f, z1, y, x, den)[0] - _unit_normal(f, z0, y, x, den)[0])
                / (den[0, z1 - z0])
            )
            div = (
                div
                + (_unit_normal(f, z, y1, x, den)[1] - _unit_normal(f, z, y0, x, den)[1])
                / (den[1, y1 - y0])
            )
            div = (
                div
                + (_unit_normal(f, z, y, x1, den)[2] - _unit_normal(f, z, y, x0, den)[2])
                / (den[2, x1 - x0])
            )
            uz, uy, ux = _unit_normal(f, z, y, x, den)
            k_sum -= w * np.float64(div)
            n0 += w * np.float64(uz)
            n1 += w * np.float64(uy)
            n2 += w * np.float64(ux)
        kappa[v] = k_sum
        normal[v, 0] = n0
        normal[v, 1] = n1
        normal[v, 2] = n2


def curvature_sums(f: np.ndarray, spacing, verts_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Curvature sum of the level sets of a volume and their unit normal, at points.

    The unit normal ``g / (|g| + 1e-6)`` of the gradient ``g`` (central differences, one-sided
    at the edges, as ``np.gradient``) and its divergence are evaluated at the corners of each
    point's cell and interpolated trilinearly (as ``scipy.ndimage.map_coordinates`` with
    order 1 and mode "nearest"; corners of zero weight skipped). Only the samples near the
    points are read; every step is taken in the precision and order of the numpy formulation
    over the whole volume (float32 differences, norms and divergence; float64 weights and
    sums), so the numbers are the same bits.

    Parameters
    ----------
    f : numpy.ndarray
        3D float32 volume (z, y, x).
    spacing : sequence of float
        Sample spacing (mm) along z, y, x.
    verts_idx : numpy.ndarray
        (n, 3) points in sample indices, each inside the volume's index range.

    Returns
    -------
    kappa : numpy.ndarray
        (n,) float64: minus the interpolated divergence of the unit normal (``k1 + k2`` of
        the level set through the point when the normal points inwards).
    normal : numpy.ndarray
        (n, 3) float64: the interpolated unit normal (not re-normalised).

    Raises
    ------
    ValueError
        If ``f`` is not a 3D float32 volume of at least 2 samples along each axis, or the
        points are not (n, 3).
    """
    if f.ndim != 3 or f.dtype != np.float32 or min(f.shape) < 2:
        raise ValueError("curvature_sums takes a 3D float32 volume, 2 or more samples per axis")
    verts = np.ascontiguousarray(verts_idx, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError("curvature_sums takes points as an (n, 3) array")
    # den[axis, d]: the float32 spacing of a difference over d samples (d = 1 or 2)
    den = np.array([[0.0, s, 2 * s] for s in map(float, spacing)]).astype(np.float32)
    kappa = np.empty(len(verts))
    normal = np.empty((len(verts), 3))
    _curvature_sums(np.ascontiguousarray(f), den, verts, kappa, normal)
    return kappa, normal


@numba.njit
def _fraction(v_from, v_to, level):  # pragma: no cover - compiled
    if v_to == v_from:
        return 0.0
    return (level - v_from) / (v_to - v_from)


@numba.njit(nogil=True, cache=True)
def _contours(image, level, pts, nxt, first, last, alive):  # pragma: no cover - compiled
    """Marching squares and the joining of its segments into contours (skimage's order).

    The segments of each 2x2 square in row-major order (skimage's ``_get_contour_segments``,
    low values connected), then joined as ``_assemble_contours`` joins them: dictionaries of
    the open contours' first and last points, a contour a linked list of points. Returns the
    number of points and of contours written; their storage is ``pts`` / ``nxt`` (points and
    the next point of each), ``first`` / ``last`` / ``alive`` (per contour, in the order of
    creation).
    """
    starts = Dict.empty(_POINT, numba.types.int64)  # open contours by first point
    ends = Dict.empty(_POINT, numba.types.int64)  # ... and by last point
    n_pts = 0
    n_con = 0
    nr, nc = image.shape
    for r0 in range(nr - 1):
        for c0 in range(nc - 1):
            r1, c1 = r0 + 1, c0 + 1
            ul, ur = image[r0, c0], image[r0, c1]
            ll, lr = image[r1, c0], image[r1, c1]
            if np.isnan(ul) or np.isnan(ur) or np.isnan(ll) or np.isnan(lr):
                continue
            case = (ul > level) + 2 * (ur > level) + 4 * (ll > level) + 8 * (lr > level)
            if case == 0 or case == 15:
                continue
            top = (float(r0), c0 + _fraction(ul, ur, level))
            bottom = (float(r1), c0 + _fraction(ll, lr, level))
            left = (r0 + _fraction(ul, ll, level), float(c0))
            right = (r0 + _fraction(ur, lr, level), float(c1))
            # the square's segments (from, to), low values on the left of each
            n_seg = 1
            t0, t1 = top, top
            if case == 1:
                s0, s1 = top, left
            elif case == 2:
                s0, s1 = right, top
            elif case == 3:
                s0, s1 = right, left
            elif case == 4:
                s0, s1 = left, bottom
            elif case == 5:
                s0, s1 = top, bottom
            elif case == 6:
                s0, s1 = right, top
                n_seg = 2
                t0, t1 = left, bottom
            elif case == 7:
                s0, s1 = right, bottom
            elif case == 8:
                s0, s1 = bottom, right
            elif case == 9:
                s0, s1 = top, left
                n_seg = 2
                t0, t1 = bottom, right
            elif case == 10:
                s0, s1 = bottom, top
            elif case == 11:
                s0, s1 = bottom, left
            elif case == 12:
                s0, s1 = left, right
            elif case == 13:
                s0, s1 = top, right
            else:
                s0, s1 = left, top
            for k in range(n_seg):
                if k == 0:
                    a, b = s0, s1
                else:
                    a, b = t0, t1
                if a == b:
                    continue
                tail = head = -1
                if b in starts:
                    tail = starts[b]
                    del starts[b]
                if a in ends:
                    head = ends[a]
                    del ends[a]
                if tail >= 0 and head >= 0:
                    if tail == head:  # closes the contour
                        pts[n_pts, 0] = b[0]
                        pts[n_pts, 1] = b[1]
                        nxt[n_pts] = -1
                        nxt[last[head]] = n_pts
                        last[head] = n_pts
                        n_pts += 1
                    elif tail > head:  # the tail's points after the head's
                        nxt[last[head]] = first[tail]
                        last[head] = last[tail]
                        alive[tail] = False
                        starts[(pts[first[head], 0], pts[first[head], 1])] = head
                        ends[(pts[last[head], 0], pts[last[head], 1])] = head
                    else:  # the head's points before the tail's
                        key = (pts[first[head], 0], pts[first[head], 1])
                        if key in starts:  # (it can be the point just joined)
                            del starts[key]
                        nxt[last[head]] = first[tail]
                        first[tail] = first[head]
                        alive[head] = False
                        starts[(pts[first[tail], 0], pts[first[tail], 1])] = tail
                        ends[(pts[last[tail], 0], pts[last[tail], 1])] = tail
                elif tail < 0 and head < 0:  # a new contour
                    pts[n_pts, 0] = a[0]
                    pts[n_pts, 1] = a[1]
                    pts[n_pts + 1, 0] = b[0]
                    pts[n_pts + 1, 1] = b[1]
                    nxt[n_pts], nxt[n_pts + 1] = n_pts + 1, -1
                    first[n_con], last[n_con], alive[n_con] = n_pts, n_pts + 1, True
                    starts[a] = n_con
                    ends[b] = n_con
                    n_pts += 2
                    n_con += 1
                elif head < 0:  # before the tail's first point
                    pts[n_pts, 0] = a[0]
                    pts[n_pts, 1] = a[1]
                    nxt[n_pts] = first[tail]
                    first[tail] = n_pts
                    starts[a] = tail
                    n_pts += 1
                else:  # after the head's last point
                    pts[n_pts, 0] = b[0]
                    pts[n_pts, 1] = b[1]
                    nxt[n_pts] = -1
                    nxt[last[head]] = n_pts
                    last[head] = n_pts
                    ends[b] = head
                    n_pts += 1
    return n_pts, n_con


@numba.njit(nogil=True, cache=True)
def _gather(pts, nxt, first, alive, n_con, out, lengths):  # pragma: no cover - compiled
    """The live contours' points in order, one contour after another; returns their count."""
    n = 0
    m = 0
    for c in range(n_con):
        if not alive[c]:
            continue
        i = first[c]
        start = n
        while i >= 0:
            out[n, 0], out[n, 1] = pts[i, 0], pts[i, 1]
            n += 1
            i = nxt[i]
        lengths[m] = n - start
        m += 1
    return m


def find_contours(image: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Contours of a 2D image at a level: the numbers of ``skimage.measure.find_contours``.

    Marching squares (low values connected, lower values on the left of each segment) and
    the joining of the segments into contours, as skimage does both (the same points, the same
    contours in the same order), compiled and without the GIL.

    Parameters
    ----------
    image : numpy.ndarray
        2D image, at least 2 x 2 (computed in float64).
    level : float
        The contour level.

    Returns
    -------
    points : numpy.ndarray
        ``(n, 2)`` float64 (row, column) points of all contours, one after another (a closed
        contour ends with its first point).
    lengths : numpy.ndarray
        The number of points of each contour, in skimage's order.

    Raises
    ------
    ValueError
        If ``image`` is not 2D of at least 2 x 2.
    """
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError("find_contours takes a 2D image of at least 2 x 2")
    img = np.ascontiguousarray(image, dtype=np.float64)
    cap = 2 * img.size + 4  # at most two segments per square, two points per segment
    pts = np.empty((cap, 2))
    nxt = np.empty(cap, dtype=np.int64)
    first = np.empty(cap, dtype=np.int64)
    last = np.empty(cap, dtype=np.int64)
    alive = np.zeros(cap, dtype=np.bool_)
    n_pts, n_con = _contours(img, float(level), pts, nxt, first, last, alive)
    out = np.empty((n_pts, 2))
    lengths = np.empty(n_con, dtype=np.int64)
    m = _gather(pts, nxt, first, alive, n_con, out, lengths)
    return out, lengths[:m]


@numba.njit(nogil=True, cache=True)
def _gradient_at(arr, idx, out):  # pragma: no cover - compiled
    """Trilinear interpolation of the central differences at each point, into ``out``."""
    nz, ny, nx = arr.shape
    one = np.float32(1.0)
    for v in range(idx.shape[0]):
        iz, iy, ix = np.floor(idx[v, 0]), np.floor(idx[v, 1]), np.floor(idx[v, 2])
        wz = np.float32(idx[v, 0] - iz)
        wy = np.float32(idx[v, 1] - iy)
        wx = np.float32(idx[v, 2] - ix)
        gz = gy = gx = np.float32(0.0)
        for k in range(8):  # every corner, in the order of a sum over all eight
            bz, by, bx = (k >> 2) & 1, (k >> 1) & 1, k & 1
            w = (wz if bz else one - wz) * (wy if by else one - wy) * (wx if bx else one - wx)
            z = min(max(int(iz) + bz, 0), nz - 1)
            y = min(max(int(iy) + by, 0), ny - 1)
            x = min(max(int(ix) + bx, 0), nx - 1)
            z0, z1 = max(z - 1, 0), min(z + 1, nz - 1)
            y0, y1 = max(y - 1, 0), min(y + 1, ny - 1)
            x0, x1 = max(x - 1, 0), min(x + 1, nx - 1)
            gz += w * ((arr[z1, y, x] - arr[z0, y, x]) / np.float32(z1 - z0))
            gy += w * ((arr[z, y1, x] - arr[z, y0, x]) / np.float32(y1 - y0))
            gx += w * ((arr[z, y, x1] - arr[z, y, x0]) / np.float32(x1 - x0))
        out[v, 0] = gz
        out[v, 1] = gy
        out[v, 2] = gx


def gradient_at(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``np.gradient`` of a volume interpolated trilinearly at continuous sample indices.

    Central differences per sample (one-sided at the edges, in sample units), interpolated
    at each point from the eight corners of its cell, indices clamped to the volume as
    ``scipy.ndimage.map_coordinates(order=1, mode="nearest")`` clamps them. Every step in
    float32, in the order of the numpy formulation over the corners' differences (weights
    ``w_z w_y w_x``, corners in order, each axis's sum from zero).

    Parameters
    ----------
    arr : numpy.ndarray
        3D float32 volume (z, y, x), at least 2 samples along each axis.
    idx : numpy.ndarray
        (n, 3) continuous sample indices (beyond the volume: clamped).

    Returns
    -------
    numpy.ndarray
        (n, 3) float32 gradient (per sample) along z, y, x.

    Raises
    ------
    ValueError
        If ``arr`` is not a 3D float32 volume of at least 2 samples per axis or ``idx`` is
        not (n, 3).
    """
    if arr.ndim != 3 or arr.dtype != np.float32 or min(arr.shape) < 2:
        raise ValueError("gradient_at takes a 3D float32 volume, 2 or more samples per axis")
    pts = np.ascontiguousarray(idx, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError("gradient_at takes points as an (n, 3) array")
    out = np.empty((len(pts), 3), dtype=np.float32)
    _gradient_at(np.ascontiguousarray(arr), pts, out)
    return out


@numba.njit(nogil=True, cache=True)
def _window_extremes(lo, hi, start, w, out_lo, out_hi):  # pragma: no cover - compiled
    """Per window: the minimum of ``lo`` and the maximum of ``hi`` over its cells."""
    nz, ny, nx = lo.shape
    for q in range(start.shape[0]):
        z0, y0, x0 = start[q, 0], start[q, 1], start[q, 2]
        mn = lo[z0, y0, x0]
        mx = hi[z0, y0, x0]
        for z in range(z0, min(z0 + w[0], nz)):
            for y in range(y0, min(y0 + w[1], ny)):
                for x in range(x0, min(x0 + w[2], nx)):
                    if lo[z, y, x] < mn:
                        mn = lo[z, y, x]
                    if hi[z, y, x] > mx:
                        mx = hi[z, y, x]
        out_lo[q] = mn
        out_hi[q] = mx


def window_extremes(lo: np.ndarray, hi: np.ndarray, start: np.ndarray, width) -> tuple:
    """Minimum of one array and maximum of another over boxes of cells of the same size.

    Parameters
    ----------
    lo, hi : numpy.ndarray
        3D arrays of the same shape and dtype.
    start : numpy.ndarray
        (n, 3) integer first cell of each box, inside the arrays.
    width : sequence of int
        The boxes' size along each axis (cells beyond the arrays' end are left out).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        (n,) minimum of ``lo`` and maximum of ``hi`` over each box (exact: no arithmetic).

    Raises
    ------
    ValueError
        If the arrays differ in shape or dtype, a width is below 1, or a box starts outside.
    """
    if lo.shape != hi.shape or lo.dtype != hi.dtype or lo.ndim != 3:
        raise ValueError("window_extremes takes two 3D arrays of the same shape and dtype")
    w = np.asarray(width, dtype=np.int64)
    s = np.ascontiguousarray(start, dtype=np.int64).reshape(-1, 3)
    if w.shape != (3,) or w.min() < 1:
        raise ValueError("window_extremes takes a width of 1 or more along each of 3 axes")
    if len(s) and (s.min() < 0 or np.any(s.max(axis=0) >= lo.shape)):
        raise ValueError("window_extremes: a box starts outside the arrays")
    out_lo = np.empty(len(s), dtype=lo.dtype)
    out_hi = np.empty(len(s), dtype=hi.dtype)
    _window_extremes(np.ascontiguousarray(lo), np.ascontiguousarray(hi), s, w, out_lo, out_hi)
    return out_lo, out_hi


@numba.njit
def _lstsq_poly(z, q, n, deg):  # pragma: no cover - compiled
    """Least-squares polynomial of degree 1 or 2 through (z[:n], q[:n]) (highest power first)."""
    m = deg + 1
    a = np.zeros((m, m))
    r = np.zeros(m)
    for i in range(n):
        for p in range(m):
            zp = z[i] ** (deg - p)
            r[p] += zp * q[i]
            for s in range(m):
                a[p, s] += zp * z[i] ** (deg - s)
    return np.linalg.solve(a, r)


@numba.njit(nogil=True, cache=True)
def _diagonal_caps(solid, cov, sp, dirs, nlay, min_radius, t0, t1):  # pragma: no cover
    """See :func:`diagonal_caps`."""
    nz, ny, nx = solid.shape
    nd = dirs.shape[0]
    nc = 2 * nd
    # each row's first and last inside voxel: a linear function of x over a row's inside
    # voxels is extreme at them, and a cap's voxels in a row are an interval of x
    first = np.full((nz, ny), -1, np.int64)
    last = np.full((nz, ny), -1, np.int64)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if solid[z, y, x]:
                    first[z, y] = x
                    break
            if first[z, y] >= 0:
                for x in range(nx - 1, -1, -1):
                    if solid[z, y, x]:
                        last[z, y] = x
                        break
    big = 1 << 40
    top = np.full(nc, -big, np.int64)
    for z in range(nz):
        for y in range(ny):
            if first[z, y] < 0:
                continue
            for d in range(nd):
                for x in (first[z, y], last[z, y]):
                    k = dirs[d, 0] * z + dirs[d, 1] * y + dirs[d, 2] * x
                    if k > top[2 * d]:
                        top[2 * d] = k
                    if -k > top[2 * d + 1]:
                        top[2 * d + 1] = -k
    lmax = 0
    for d in range(nd):
        lmax = max(lmax, nlay[d])
    # per cap and plane: count, sums of z, y, x and of their products (index units)
    acc = np.zeros((nc, lmax, 10))
    for z in range(nz):
        for y in range(ny):
            if first[z, y] < 0:
                continue
            for c in range(nc):
                d = c // 2
                sg = 1 if c % 2 == 0 else -1
                x0, x1 = _cap_row(dirs[d], sg, z, y, top[c] - nlay[d] + 1, first[z, y], last[z, y])
                for x in range(x0, x1 + 1):
                    if solid[z, y, x]:
                        k = sg * (dirs[d, 0] * z + dirs[d, 1] * y + dirs[d, 2] * x)
                        a = acc[c, top[c] - k]
                        a[0] += 1.0
                        a[1] += z
                        a[2] += y
                        a[3] += x
                        a[4] += z * z
                        a[5] += y * y
                        a[6] += x * x
                        a[7] += z * y
                        a[8] += z * x
                        a[9] += y * x
    # each cap's model: g, b, a0, the plane spacing h, the drift (slope, intercept of u and
    # v), the inverse shape, the frame (normal, e1, e2), the planes kept
    ok_cap = np.zeros(nc, np.bool_)
    par = np.zeros((nc, 20))
    nkeep = np.zeros(nc, np.int64)
    zl = np.empty(lmax)
    ql = np.empty(lmax)
    for c in range(nc):
        d = c // 2
        sgn = 1.0 if c % 2 == 0 else -1.0
        m = np.empty(3)
        for a in range(3):
            m[a] = sgn * dirs[d, a]
        g3 = m / sp
        h = 1.0 / np.sqrt(np.sum(g3 * g3))
        nrm = g3 * h
        n_l = 0
        while n_l < nlay[d] and acc[c, n_l, 0] > 0:
            n_l += 1
        if n_l < 3:
            continue
        a_pt = sp[0] * sp[1] * sp[2] / h
        for j in range(n_l):
            zl[j] = -j * h
            ql[j] = acc[c, j, 0] * a_pt / np.pi
        coef = _lstsq_poly(zl, ql, n_l, 2)
        g, b, a0 = coef[0], coef[1], coef[2]
        if g >= 0:
            continue
        disc_top = b * b - 4 * g * a0
        if disc_top <= 0 or np.sqrt(disc_top) / 2 < min_radius:
            continue
        pole = (-b - np.sqrt(disc_top)) / (2 * g)
        if not (0 < pole < 1.5 * h):
            continue
        worst = 0.0
        for j in range(n_l):
            f = g * zl[j] * zl[j] + b * zl[j] + a0
            worst = max(worst, abs(np.sqrt(ql[j]) - np.sqrt(max(f, 0.0))))
        if worst > 0.5 * np.sqrt(a_pt):
            continue
        ref = np.array([1.0, 0.0, 0.0]) if abs(nrm[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        e1 = np.cross(nrm, ref)
        e1 /= np.sqrt(np.sum(e1 * e1))
        e2 = np.cross(nrm, e1)
        # the planes' centres and the common shape, in mm (u, v) from the index sums
        cu = np.empty(n_l)
        cv = np.empty(n_l)
        shape = np.zeros((2, 2))
        for j in range(n_l):
            s = acc[c, j]
            n = s[0]
            su = e1[0] * sp[0] * s[1] + e1[1] * sp[1] * s[2] + e1[2] * sp[2] * s[3]
            sv = e2[0] * sp[0] * s[1] + e2[1] * sp[1] * s[2] + e2[2] * sp[2] * s[3]
            # second moments: sum over a, b of e_a e_b sp_a sp_b sum(i_a i_b)
            mom = np.empty((3, 3))
            mom[0, 0], mom[1, 1], mom[2, 2] = s[4], s[5], s[6]
            mom[0, 1] = mom[1, 0] = s[7]
            mom[0, 2] = mom[2, 0] = s[8]
            mom[1, 2] = mom[2, 1] = s[9]
            suu = 0.0
            svv = 0.0
            suv = 0.0
            for p in range(3):
                for r in range(3):
                    w = sp[p] * sp[r] * mom[p, r]
                    suu += e1[p] * e1[r] * w
                    svv += e2[p] * e2[r] * w
                    suv += e1[p] * e2[r] * w
            cu[j] = su / n
            cv[j] = sv / n
            if n > 2:
                cuu = (suu - su * cu[j]) / (n - 1) + a_pt / 12.0
                cvv = (svv - sv * cv[j]) / (n - 1) + a_pt / 12.0
                cuv = (suv - su * cv[j]) / (n - 1)
                wgt = n / np.sqrt(max(cuu * cvv - cuv * cuv, 1e-12))
                shape[0, 0] += wgt * cuu
                shape[1, 1] += wgt * cvv
                shape[0, 1] += wgt * cuv
                shape[1, 0] += wgt * cuv
        det = shape[0, 0] * shape[1, 1] - shape[0, 1] * shape[1, 0]
        if det <= 0:
            continue
        sh = shape / np.sqrt(det)
        dsh = sh[0, 0] * sh[1, 1] - sh[0, 1] * sh[1, 0]
        du = _lstsq_poly(zl, cu, n_l, 1)
        dv = _lstsq_poly(zl, cv, n_l, 1)
        ok_cap[c] = True
        nkeep[c] = n_l
        p = par[c]
        p[0], p[1], p[2], p[3] = g, b, a0, h
        p[4], p[5], p[6], p[7] = du[0], du[1], dv[0], dv[1]
        p[8], p[9], p[10] = sh[1, 1] / dsh, -sh[0, 1] / dsh, sh[0, 0] / dsh
        p[11], p[12], p[13] = e1[0] * sp[0], e1[1] * sp[1], e1[2] * sp[2]
        p[14], p[15], p[16] = e2[0] * sp[0], e2[1] * sp[1], e2[2] * sp[2]
    # the voxels at the top of each cap (an outside neighbour one grid step up) and those
    # neighbours: 0.5 + s / h of the modelled surface s above their centre, clipped to the mask
    for z in range(nz):
        for y in range(ny):
            if first[z, y] < 0:
                continue
            for c in range(nc):
                if not ok_cap[c]:
                    continue
                d = c // 2
                sg = 1 if c % 2 == 0 else -1
                x0, x1 = _cap_row(dirs[d], sg, z, y, top[c] - nkeep[c] + 1, first[z, y], last[z, y])
                for x in range(x0, x1 + 1):
                    if not solid[z, y, x]:
                        continue
                    k = sg * (dirs[d, 0] * z + dirs[d, 1] * y + dirs[d, 2] * x)
                    at_top = False
                    for a in range(3):
                        st = sg * dirs[d, a]
                        if st == 0:
                            continue
                        zz, yy, xx = z, y, x
                        if a == 0:
                            zz += st
                        elif a == 1:
                            yy += st
                        else:
                            xx += st
                        if not (0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx):
                            continue
                        if solid[zz, yy, xx]:
                            continue
                        at_top = True
                        w, v = _cap_value(par[c], zz, yy, xx, (k + 1 - top[c]) * par[c, 3], t0, t1)
                        if w > 0:
                            vo = np.float32(w * min(max(v, 0.0), 0.5 - 1e-3))
                            if vo > cov[zz, yy, xx]:
                                cov[zz, yy, xx] = vo
                    if at_top:
                        w, v = _cap_value(par[c], z, y, x, (k - top[c]) * par[c, 3], t0, t1)
                        if w > 0:
                            vi = np.float32(1.0 - w * (1.0 - min(max(v, 0.5), 1.0)))
                            if vi < cov[z, y, x]:
                                cov[z, y, x] = vi


@numba.njit
def _cap_row(m, sg, z, y, k0, x_first, x_last):  # pragma: no cover - compiled
    """The interval of x in a row (``x_first .. x_last``) where sg * (m . (z, y, x)) >= k0."""
    rest = k0 - sg * (m[0] * z + m[1] * y)
    mx = sg * m[2]
    if mx == 0:
        return (x_first, x_last) if rest <= 0 else (1, 0)
    if mx > 0:
        return max(x_first, rest), x_last
    return x_first, min(x_last, -rest)


@numba.njit
def _cap_value(p, z, y, x, zc, t0, t1):  # pragma: no cover - compiled
    """(weight, 0.5 + s / h) of a voxel at height ``zc`` under a cap's model ``p``."""
    g, b, a0, h = p[0], p[1], p[2], p[3]
    u = p[11] * z + p[12] * y + p[13] * x
    v = p[14] * z + p[15] * y + p[16] * x
    height = zc + 0.5 * h
    ok = False
    r2 = 0.0
    root = 1.0
    for _ in range(3):  # the section's centre at the voxel's own height (a tilted cap drifts)
        du = u - (p[4] * height + p[5])
        dv = v - (p[6] * height + p[7])
        r2 = p[8] * du * du + 2.0 * p[9] * du * dv + p[10] * dv * dv
        disc = b * b - 4 * g * (a0 - r2)
        ok = disc > 0
        root = np.sqrt(disc) if ok else 1.0
        if ok:
            height = (-b - root) / (2 * g)
    if not ok:
        return 0.0, 0.0
    tilt = np.degrees(np.arctan2(2 * np.sqrt(r2), root))
    w = min(max((t1 - tilt) / (t1 - t0), 0.0), 1.0)
    return w, 0.5 + (height - zc) / h


def diagonal_caps(solid, cov, spacing, dirs, n_layers, min_radius, tilt_deg) -> None:
    """Sub-voxel coverage (in place) of a mask's caps facing lattice directions.

    For each direction ``m`` of ``dirs`` and its opposite: the mask's last ``n_layers`` lattice
    planes across it, their squared equivalent radius fitted by a quadratic in the height,
    their centres by a line, their shapes by one; where the fit is a convex cap rounder than
    ``min_radius`` mm whose pole lies below the next plane and whose planes it fits to half a
    lattice point's width, each voxel at the top of the cap (with an outside neighbour one
    grid step up) and each such neighbour get ``0.5 + s / h`` (``s`` the modelled surface's
    height above the voxel's centre, ``h`` the plane spacing), clipped to the mask (inside: at
    least 0.5, outside: below 0.5) and weighted by the modelled surface's tilt from ``m``
    (fully up to ``tilt_deg[0]``, not at all beyond ``tilt_deg[1]``): the smaller value is kept
    inside, the larger outside. See ``core.margin._diagonal_cap_coverage``.

    Parameters
    ----------
    solid : numpy.ndarray
        3D uint8 mask (non-zero inside).
    cov : numpy.ndarray
        3D float32 coverages of the same shape, updated in place.
    spacing : sequence of float
        Grid spacing (z, y, x), mm.
    dirs : numpy.ndarray
        (n, 3) integer lattice directions (z, y, x index steps), each taken both ways.
    n_layers : numpy.ndarray
        (n,) planes fitted per direction.
    min_radius : float
        Caps less round than this (radius of curvature at the pole, mm) are left binary.
    tilt_deg : (float, float)
        Tilts (deg) of full and of no weight.
    """
    _diagonal_caps(
        np.ascontiguousarray(solid, dtype=np.uint8),
        cov,
        np.asarray(spacing, dtype=np.float64),
        np.asarray(dirs, dtype=np.int64),
        np.asarray(n_layers, dtype=np.int64),
        float(min_radius),
        float(tilt_deg[0]),
        float(tilt_deg[1]),
    )


@numba.njit(nogil=True, cache=True)
def _contour_segments(pts, lengths, sy, sx, a, b, mid, seg_len, cross):  # pragma: no cover
    m = 0
    s = 0
    for c in range(lengths.shape[0]):
        for i in range(s, s + lengths[c] - 1):
            ay, ax = pts[i, 0] * sy, pts[i, 1] * sx
            by, bx = pts[i + 1, 0] * sy, pts[i + 1, 1] * sx
            a[m, 0], a[m, 1], b[m, 0], b[m, 1] = ay, ax, by, bx
            mid[m, 0], mid[m, 1] = 0.5 * (ay + by), 0.5 * (ax + bx)
            dy, dx = by - ay, bx - ax
            seg_len[m] = np.sqrt(dy * dy + dx * dx)
            cross[m] = ay * bx - by * ax
            m += 1
        s += lengths[c]


def contour_segments(pts: np.ndarray, lengths: np.ndarray, sampling) -> tuple:
    """The segments of 2D contours in mm, with their midpoints, lengths and cross products.

    Parameters
    ----------
    pts : numpy.ndarray
        ``(n, 2)`` float64 points (rows, columns) of the contours one after the other, as
        :func:`find_contours` returns them.
    lengths : numpy.ndarray
        Number of points of each contour.
    sampling : sequence of float
        Pixel spacing (rows, columns), mm.

    Returns
    -------
    a, b, mid : numpy.ndarray
        ``(m, 2)`` each segment's first and second end and its midpoint ``0.5 (a + b)``, mm:
        consecutive points of a contour, scaled by ``sampling``.
    seg_len : numpy.ndarray
        ``(m,)`` lengths (``np.linalg.norm(b - a, axis=1)``'s numbers).
    cross : numpy.ndarray
        ``(m,)`` ``a[:, 0] b[:, 1] - b[:, 0] a[:, 1]`` (twice the signed area each segment
        spans with the origin).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    m = int(np.sum(np.maximum(lengths - 1, 0)))
    a, b, mid = np.empty((m, 2)), np.empty((m, 2)), np.empty((m, 2))
    seg_len, cross = np.empty(m), np.empty(m)
    sy, sx = (float(v) for v in sampling)
    _contour_segments(
        np.ascontiguousarray(pts, dtype=np.float64), lengths, sy, sx, a, b, mid, seg_len, cross
    )
    return a, b, mid, seg_len, cross


@numba.njit(nogil=True, cache=True)
def _slice_band(soft, sy, sx, band_mm, out, p, where):  # pragma: no cover - compiled
    ny, nx = soft.shape
    inside = np.empty((ny, nx), dtype=np.bool_)
    n_in = 0
    for y in range(ny):
        for x in range(nx):
            inside[y, x] = soft[y, x] >= 0.5
            n_in += inside[y, x]
    if n_in == 0 or n_in == ny * nx:
        return -1
    d = np.empty((ny, nx))
    _slice_edt(inside, sy, sx, np.empty((2, ny, nx), dtype=np.int64), d)
    half = 0.25 * (sy + sx)
    n = 0
    for y in range(ny):
        for x in range(nx):
            v = d[y, x] - half
            if not inside[y, x]:
                v = -v
            out[y, x] = v
            if abs(v) <= band_mm:
                p[n, 0] = np.float64(y) * sy
                p[n, 1] = np.float64(x) * sx
                where[n] = y * nx + x
                n += 1
    return n


def slice_band(soft: np.ndarray, sampling, band_mm: float):
    """Pixel-centre signed distances of a slice and its pixels near the boundary.

    Parameters
    ----------
    soft : numpy.ndarray
        2D float32 slice; inside where ``soft >= 0.5``.
    sampling : sequence of float
        Pixel spacing (rows, columns), mm.
    band_mm : float
        Half-width of the band, mm.

    Returns
    -------
    tuple or None
        ``None`` when every pixel is on one side. Else ``(out, p, where)``: ``out`` float32,
        ``d - h`` inside and ``-(d - h)`` outside (``d`` :func:`slice_edt`'s distance,
        ``h`` a quarter of the two spacings' sum, computed in float64); ``p`` ``(n, 2)`` the
        positions (mm, ``np.argwhere(band) * sampling``) of the pixels whose float64 value lies
        within ``band_mm`` of 0, row by row; ``where`` their flat indices.
    """
    sy, sx = (float(v) for v in sampling)
    soft = np.ascontiguousarray(soft, dtype=np.float32)
    out = np.empty(soft.shape, dtype=np.float32)
    p = np.empty((soft.size, 2))
    where = np.empty(soft.size, dtype=np.int64)
    n = _slice_band(soft, sy, sx, float(band_mm), out, p, where)
    if n < 0:
        return None
    return out, p[:n], where[:n]


@numba.njit(nogil=True, cache=True)
def _signed_band(out, soft, where, d, offset):  # pragma: no cover - compiled
    flat = out.reshape(-1)
    sflat = soft.reshape(-1)
    for k in range(where.shape[0]):
        i = where[k]
        flat[i] = np.float32(d[k] if sflat[i] >= 0.5 else -d[k])
    for i in range(flat.shape[0]):
        flat[i] = flat[i] + offset


def signed_band(out: np.ndarray, soft: np.ndarray, where: np.ndarray, d, offset: float):
    """Write distances into a slice's band with the side's sign, then shift all by an offset.

    Parameters
    ----------
    out : numpy.ndarray
        2D C-contiguous float32 slice, updated in place.
    soft : numpy.ndarray
        2D float32 slice of the same shape; inside where ``soft >= 0.5``.
    where : numpy.ndarray
        Flat indices of the band's pixels.
    d : numpy.ndarray
        Their unsigned distances (float64).
    offset : float
        Added to every pixel (in float32).

    Returns
    -------
    numpy.ndarray
        ``out``: ``out[band] = np.where(inside[band], d, -d)``, then ``out + np.float32(offset)``.

    Raises
    ------
    ValueError
        If ``out`` is not a C-contiguous float32 array of ``soft``'s shape.
    """
    if out.shape != soft.shape or not out.flags.c_contiguous or out.dtype != np.float32:
        raise ValueError("signed_band takes a C-contiguous float32 slice of soft's shape")
    _signed_band(
        out,
        np.ascontiguousarray(soft, dtype=np.float32),
        np.asarray(where, dtype=np.int64),
        np.asarray(d, dtype=np.float64),
        np.float32(offset),
    )
    return out


@numba.njit(nogil=True, cache=True)
def _pieces_go_on(crop, filled):  # pragma: no cover - compiled
    nsl, ny, nx = crop.shape
    seen = np.zeros((ny, nx), dtype=np.bool_)
    stack = np.empty(ny * nx, dtype=np.int64)
    for s in (-1, 1):
        for k in range(nsl):
            nb = k + s
            if nb < 0 or nb >= nsl or not filled[nb]:
                continue
            # flood each piece of slice k (8-connected) from its pixels over slice nb
            seen[:, :] = False
            n_fg = 0
            top = 0
            for y in range(ny):
                for x in range(nx):
                    if crop[k, y, x] != 0:
                        n_fg += 1
                        if crop[nb, y, x] != 0:
                            seen[y, x] = True
                            stack[top] = y * nx + x
                            top += 1
            n_seen = top
            while top > 0:
                top -= 1
                y, x = stack[top] // nx, stack[top] % nx
                for yy in range(max(y - 1, 0), min(y + 2, ny)):
                    for xx in range(max(x - 1, 0), min(x + 2, nx)):
                        if crop[k, yy, xx] != 0 and not seen[yy, xx]:
                            seen[yy, xx] = True
                            stack[top] = yy * nx + xx
                            top += 1
                            n_seen += 1
            if n_seen != n_fg:
                return False
    return True


def pieces_go_on(crop: np.ndarray, filled: np.ndarray) -> bool:
    """Whether every piece of every slice goes on to each filled neighbouring slice.

    Parameters
    ----------
    crop : numpy.ndarray
        3D mask, slices along axis 0 (non-zero inside).
    filled : numpy.ndarray
        ``(len(crop),)`` booleans: which slices have a pixel inside.

    Returns
    -------
    bool
        True when each 8-connected piece of each slice ``k`` overlaps a pixel inside of slice
        ``k - 1`` and of slice ``k + 1`` where those are filled (no branch ends between two
        filled slices).
    """
    c = crop if crop.dtype == np.uint8 else (crop != 0).view(np.uint8)
    ok = _pieces_go_on(np.ascontiguousarray(c), np.ascontiguousarray(filled, dtype=np.bool_))
    return bool(ok)
