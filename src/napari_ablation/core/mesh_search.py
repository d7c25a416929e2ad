"""Exact closest point on a triangle mesh: a bounding-volume hierarchy searched by compiled code.

The margin engine measures the distance from every tumor-surface vertex, and from the
voxel centres near a class boundary, to the ablation surface. A local search (closest
triangles around a first guess) stops on the mesh's sub-voxel bumps for a few per cent of
points seen from deep inside a large surface, where the distance along the surface is
flat; this search is exact: every triangle that may lie closer than the best distance
found so far is examined.

The hierarchy is a complete binary tree over leaves of :data:`LEAF` triangles (node ``k``
has children ``2k`` and ``2k + 1``; the leaves are nodes ``n_inner .. 2 n_inner - 1``), the
triangles ordered as a k-d tree of their centroids (each node's split along the longest
axis of its centroids' box). A node bounds its triangles' distance from below by its box
and, for small nodes, by its normal slab (a nearly flat patch seen along its normal). A
query first descends to the leaf nearest a guess of the closest point (e.g. a projection
along an approximate distance field) for a tight bound, then searches the tree depth first,
nearer child first, pruning every node whose bound is not below the best distance. The
point-triangle test is the Voronoi-region test of Ericson (Real-Time Collision Detection,
5.1.5) from two dot products per triangle, in the arithmetic of the vectorised version it
replaced (the same numbers where both find the same triangle).

The kernels are compiled by numba on first use and cached on disk (``cache=True``); they
release the GIL, so two threads search two halves of the points side by side.

Compile time (the first analysis after an install; :mod:`~napari_ablation.core.warmup` does
it ahead): one signature per kernel (the wrappers cast their arguments), and the small
helpers are plain compiled functions that LLVM inlines, not ``inline="always"`` (numba
then types a copy of the helper at every call site: 2-3 s more of compilation, the same
bits and speed; benchmarks/README.md, "First use").
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["LEAF", "TriangleBVH", "candidate_segment_distance", "outside_by_normals"]

#: triangles per leaf of the hierarchy
LEAF = 4
#: nodes of more triangles than this get no slab (curved: it bounds nothing)
_SLAB_MAX = 256
#: numbers per node: box low and high corners, slab normal, slab extremes, one unused
_ROW = 12


@numba.njit
def _swap(idx, cent, i, j):  # pragma: no cover - compiled
    t = idx[i]
    idx[i] = idx[j]
    idx[j] = t
    for ax in range(3):
        v = cent[i, ax]
        cent[i, ax] = cent[j, ax]
        cent[j, ax] = v


@numba.njit(nogil=True, cache=True)
def _select(idx, cent, ax, lo, hi, k):  # pragma: no cover - compiled
    """Reorder rows ``lo:hi`` of ``cent`` (and ``idx`` alike) so that row ``k`` holds the
    rank-``k`` value of column ``ax``, smaller values before it, larger after it.

    Quickselect (Hoare partition, median-of-three pivot).
    """
    while hi - lo > 1:
        mid = (lo + hi - 1) // 2
        a, b, c = cent[lo, ax], cent[mid, ax], cent[hi - 1, ax]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi - 1
        while i <= j:
            while cent[i, ax] < pivot:
                i += 1
            while cent[j, ax] > pivot:
                j -= 1
            if i <= j:
                _swap(idx, cent, i, j)
                i += 1
                j -= 1
        if k <= j:
            hi = j + 1
        elif k >= i:
            lo = i
        else:
            return


@numba.njit(nogil=True, cache=True)
def _build_order(cent, n_inner):  # pragma: no cover - compiled
    """Triangle order of the tree: each node's triangles split at its children's boundary.

    Node ``k`` of level ``l`` holds the triangles ``[first, first + span)`` (``span`` = LEAF
    ``n_inner >> l``); they are split along the longest axis of their centroids' box, the
    left child getting the ones with the smaller coordinates (a k-d tree of the centroids).
    ``cent`` (the centroids) is reordered in place.
    """
    m = cent.shape[0]
    idx = np.arange(m)
    for node in range(1, n_inner):
        level = 0
        k = node
        while k > 1:
            k >>= 1
            level += 1
        span = (n_inner >> level) * LEAF
        first = node * span - n_inner * LEAF
        mid = first + span // 2
        stop = min(first + span, m)
        if mid >= stop:
            continue  # everything in the left child
        lo0, lo1, lo2 = np.inf, np.inf, np.inf
        hi0, hi1, hi2 = -np.inf, -np.inf, -np.inf
        for t in range(first, stop):
            lo0, hi0 = min(lo0, cent[t, 0]), max(hi0, cent[t, 0])
            lo1, hi1 = min(lo1, cent[t, 1]), max(hi1, cent[t, 1])
            lo2, hi2 = min(lo2, cent[t, 2]), max(hi2, cent[t, 2])
        e0, e1, e2 = hi0 - lo0, hi1 - lo1, hi2 - lo2
        ax = 0 if (e0 >= e1 and e0 >= e2) else (1 if e1 >= e2 else 2)
        _select(idx, cent, ax, first, stop, mid)
    return idx


@numba.njit(nogil=True, cache=True)
def _pack(order, a, ab, ac, abab, acac, abac):  # pragma: no cover - compiled
    """Per triangle in tree order: ``a, ab, ac`` in one row; the edges' dot products."""
    m = order.shape[0]
    tri = np.empty((m, 9))
    dots = np.empty((m, 3))
    for t in range(m):
        s = order[t]
        for ax in range(3):
            tri[t, ax] = a[s, ax]
            tri[t, 3 + ax] = ab[s, ax]
            tri[t, 6 + ax] = ac[s, ax]
        dots[t, 0] = abab[s]
        dots[t, 1] = acac[s]
        dots[t, 2] = abac[s]
    return tri, dots


@numba.njit(nogil=True, cache=True)
def _node_bounds(tri, n_inner):  # pragma: no cover - compiled
    """Bounding box and normal slab of every node (leaves: LEAF consecutive triangles).

    Per node, packed in one row: the box's low and high corners, the mean direction ``n``
    of its triangles' normals (area-weighted) and the extremes of ``n . x`` over their
    vertices (the slab). Seen along its normal, the distance to the slab bounds the distance
    to a nearly flat patch far more tightly than its box does.
    """
    m = tri.shape[0]
    nodes = np.zeros((2 * n_inner, _ROW))
    nodes[:, 0:3] = np.inf
    nodes[:, 3:6] = -np.inf
    nodes[:, 9] = np.inf
    nodes[:, 10] = -np.inf
    for t in range(m):
        node = n_inner + t // LEAF
        for k in range(3):
            for ax in range(3):
                v = tri[t, ax] + (tri[t, 3 * k + ax] if k > 0 else 0.0)
                nodes[node, ax] = min(nodes[node, ax], v)
                nodes[node, 3 + ax] = max(nodes[node, 3 + ax], v)
        nodes[node, 6] += tri[t, 4] * tri[t, 8] - tri[t, 5] * tri[t, 7]
        nodes[node, 7] += tri[t, 5] * tri[t, 6] - tri[t, 3] * tri[t, 8]
        nodes[node, 8] += tri[t, 3] * tri[t, 7] - tri[t, 4] * tri[t, 6]
    for node in range(n_inner - 1, 0, -1):
        for ax in range(3):
            nodes[node, ax] = min(nodes[2 * node, ax], nodes[2 * node + 1, ax])
            nodes[node, 3 + ax] = max(nodes[2 * node, 3 + ax], nodes[2 * node + 1, 3 + ax])
            nodes[node, 6 + ax] = nodes[2 * node, 6 + ax] + nodes[2 * node + 1, 6 + ax]
    for node in range(1, 2 * n_inner):
        ln = np.sqrt(nodes[node, 6] ** 2 + nodes[node, 7] ** 2 + nodes[node, 8] ** 2)
        level = 0
        k = node
        while k > 1:
            k >>= 1
            level += 1
        span = (n_inner >> level) * LEAF
        if span > _SLAB_MAX or ln == 0.0:  # a large patch is curved: no useful slab
            nodes[node, 9] = -np.inf
            nodes[node, 10] = np.inf
            continue
        for ax in range(3):
            nodes[node, 6 + ax] /= ln
        first = node * span - n_inner * LEAF
        for t in range(first, min(first + span, m)):
            for k in range(3):
                h = 0.0
                for ax in range(3):
                    h += nodes[node, 6 + ax] * (tri[t, ax] + (tri[t, 3 * k + ax] if k > 0 else 0.0))
                nodes[node, 9] = min(nodes[node, 9], h)
                nodes[node, 10] = max(nodes[node, 10], h)
    return nodes


@numba.njit
def _bound_d2(nodes, node, x, y, z):  # pragma: no cover - compiled
    """A lower bound of the squared distance from a point to a node's triangles.

    The larger of the squared distances to its box and to its normal slab (inf when empty).
    """
    r = nodes[node]
    if r[0] > r[3]:
        return np.inf
    d = 0.0
    g = max(r[0] - x, x - r[3], 0.0)
    d += g * g
    g = max(r[1] - y, y - r[4], 0.0)
    d += g * g
    g = max(r[2] - z, z - r[5], 0.0)
    d += g * g
    h = r[6] * x + r[7] * y + r[8] * z
    g = max(r[9] - h, h - r[10], 0.0)
    return max(d, g * g)


@numba.njit
def _closest_vw(d1, d2, abab, acac, abac):  # pragma: no cover - compiled
    """Closest point ``a + v ab + w ac`` of a triangle from the dot products ``d1, d2``.

    The Voronoi regions tested in the order (and with the arithmetic) of a vectorised
    version that evaluates every region and lets the later ones win: interior, the edges
    ab, ac and bc, the vertices a, b and c.
    """
    d3 = d1 - abab
    d4 = d2 - abac
    d5 = d1 - abac
    d6 = d2 - acac
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    if denom != 0.0:
        v = vb / denom
        w = vc / denom
    else:
        v = 0.0
        w = 0.0
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        e = d1 - d3
        v = d1 / (e if e != 0.0 else 1.0)
        w = 0.0
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        e = d2 - d6
        v = 0.0
        w = d2 / (e if e != 0.0 else 1.0)
    if va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:
        den = (d4 - d3) + (d5 - d6)
        t = (d4 - d3) / (den if den != 0.0 else 1.0)
        v = 1.0 - t
        w = t
    if d1 <= 0.0 and d2 <= 0.0:
        v = 0.0
        w = 0.0
    if d3 >= 0.0 and d4 <= d3:
        v = 1.0
        w = 0.0
    if d6 >= 0.0 and d5 <= d6:
        v = 0.0
        w = 1.0
    return v, w


@numba.njit
def _triangle(tri, dots, t, x, y, z, best, best_t, q):  # pragma: no cover - compiled
    """Test one triangle; return the best squared distance and triangle so far."""
    apx = x - tri[t, 0]
    apy = y - tri[t, 1]
    apz = z - tri[t, 2]
    # (the products summed in the order of numpy's einsum: x and z, then y)
    d1 = (tri[t, 3] * apx + tri[t, 5] * apz) + tri[t, 4] * apy
    d2 = (tri[t, 6] * apx + tri[t, 8] * apz) + tri[t, 7] * apy
    v, w = _closest_vw(d1, d2, dots[t, 0], dots[t, 1], dots[t, 2])
    qx = tri[t, 0] + tri[t, 3] * v + tri[t, 6] * w
    qy = tri[t, 1] + tri[t, 4] * v + tri[t, 7] * w
    qz = tri[t, 2] + tri[t, 5] * v + tri[t, 8] * w
    ex = x - qx
    ey = y - qy
    ez = z - qz
    dd = ex * ex + ey * ey + ez * ez
    if dd < best:
        best = dd
        best_t = t
        q[0] = qx
        q[1] = qy
        q[2] = qz
    return best, best_t


@numba.njit
def _search(nodes, n_inner, tri, dots, stack, bound, x, y, z, best, best_t, q):  # pragma: no cover
    """Every leaf whose bound is below ``best`` (squared), nearer child first."""
    m = tri.shape[0]
    sp = 1
    stack[0] = 1
    bound[0] = 0.0
    while sp > 0:
        sp -= 1
        node = stack[sp]
        if bound[sp] >= best:  # (the best may have improved since the node was pushed)
            continue
        if node >= n_inner:
            start = (node - n_inner) * LEAF
            for t in range(start, min(start + LEAF, m)):
                best, best_t = _triangle(tri, dots, t, x, y, z, best, best_t, q)
            continue
        l_d = _bound_d2(nodes, 2 * node, x, y, z)
        r_d = _bound_d2(nodes, 2 * node + 1, x, y, z)
        near, far, d_near, d_far = 2 * node, 2 * node + 1, l_d, r_d
        if r_d < l_d:
            near, far, d_near, d_far = far, near, d_far, d_near
        if d_far < best:
            stack[sp] = far
            bound[sp] = d_far
            sp += 1
        if d_near < best:
            stack[sp] = near
            bound[sp] = d_near
            sp += 1
    return best, best_t


@numba.njit(nogil=True, cache=True)
def _query(pts, guess, nodes, n_inner, tri, dots, order, dist, closest, face):  # pragma: no cover
    """Exact closest triangle of each point (see the module docstring); results in place."""
    stack = np.empty(4 * 64, dtype=np.int64)
    bound = np.empty(4 * 64)
    q = np.empty(3)
    for i in range(pts.shape[0]):
        x, y, z = pts[i, 0], pts[i, 1], pts[i, 2]
        gx, gy, gz = guess[i, 0], guess[i, 1], guess[i, 2]
        # a first bound: the distance to the triangle closest to the guess (next to the
        # surface, where the search is cheap)
        node = 1
        while node < n_inner:
            l_d = _bound_d2(nodes, 2 * node, gx, gy, gz)
            r_d = _bound_d2(nodes, 2 * node + 1, gx, gy, gz)
            node = 2 * node if l_d <= r_d else 2 * node + 1
        best, best_t = np.inf, -1
        start = (node - n_inner) * LEAF
        for t in range(start, min(start + LEAF, tri.shape[0])):
            best, best_t = _triangle(tri, dots, t, x, y, z, best, best_t, q)
        best, best_t = _search(nodes, n_inner, tri, dots, stack, bound, x, y, z, best, best_t, q)
        dist[i] = np.sqrt(best)
        closest[i, 0] = q[0]
        closest[i, 1] = q[1]
        closest[i, 2] = q[2]
        face[i] = order[best_t]


class TriangleBVH:
    """Bounding-volume hierarchy of a triangle mesh for exact closest-point queries.

    Parameters
    ----------
    a, ab, ac : numpy.ndarray
        ``(m, 3)`` float64: each triangle's first vertex and its two edges from it.
    abab, acac, abac : numpy.ndarray
        ``(m,)`` float64: the edges' dot products.

    Raises
    ------
    ValueError
        When the mesh has no triangle.
    """

    def __init__(self, a, ab, ac, abab, acac, abac):
        m = len(a)
        if m == 0:
            raise ValueError("a mesh without triangles has no closest point")
        b, c = a + ab, a + ac
        n_leaves = -(-m // LEAF)
        self.n_inner = 1 << max(0, int(n_leaves - 1).bit_length())  # a power of two >= leaves
        self.order = _build_order((a + b + c) / 3.0, self.n_inner)  # (centroids reordered)
        self.tri, self.dots = _pack(self.order, a, ab, ac, abab, acac, abac)
        self.nodes = _node_bounds(self.tri, self.n_inner)

    def query(self, pts: np.ndarray, guess: np.ndarray | None = None):
        """Exact distance, closest point and closest triangle of each point.

        Parameters
        ----------
        pts : numpy.ndarray
            ``(n, 3)`` points.
        guess : numpy.ndarray, optional
            ``(n, 3)`` guesses of their closest surface points (default: the points): only
            the speed depends on them.

        Returns
        -------
        dist : numpy.ndarray
            ``(n,)`` distances.
        closest : numpy.ndarray
            ``(n, 3)`` closest points.
        face : numpy.ndarray
            ``(n,)`` index of the closest triangle (the first found among tied ones).
        """
        pts = np.ascontiguousarray(pts, dtype=np.float64).reshape(-1, 3)
        guess = pts if guess is None else np.ascontiguousarray(guess, dtype=np.float64)
        n = len(pts)
        dist, closest, face = np.empty(n), np.empty((n, 3)), np.empty(n, dtype=np.int64)
        _query(
            pts, guess, self.nodes, self.n_inner, self.tri, self.dots, self.order,
            dist, closest, face,
        )  # fmt: skip
        return dist, closest, face


@numba.njit(nogil=True, cache=True)
def _candidate_segments(p, a, e, ee, idx, out):  # pragma: no cover - compiled
    for i in range(p.shape[0]):
        best = np.inf
        for c in range(idx.shape[1]):
            s = idx[i, c]
            pay = p[i, 0] - a[s, 0]
            pax = p[i, 1] - a[s, 1]
            ey, ex = e[s, 0], e[s, 1]
            t = min(max((pay * ey + pax * ex) / ee[s], 0.0), 1.0)
            ry = pay - ey * t
            rx = pax - ex * t
            best = min(best, np.sqrt(ry * ry + rx * rx))
        out[i] = best


def candidate_segment_distance(p, a, b, idx) -> np.ndarray:
    """Distance from 2D points to the nearest of their candidate segments.

    Parameters
    ----------
    p : numpy.ndarray
        ``(n, 2)`` points.
    a, b : numpy.ndarray
        ``(m, 2)`` the segments' ends.
    idx : numpy.ndarray
        ``(n, k)`` indices of each point's candidate segments.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` distances: the numbers of the vectorised computation (the projection onto
        each segment clipped to its ends, ``e = b - a`` and ``|e|^2`` at least 1e-12).
    """
    e = b - a
    ee = np.maximum(e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1], 1e-12)
    out = np.empty(len(p))
    _candidate_segments(
        np.ascontiguousarray(p, dtype=np.float64),
        np.ascontiguousarray(a, dtype=np.float64),
        np.ascontiguousarray(e),
        ee,
        np.ascontiguousarray(idx, dtype=np.int64),
        out,
    )
    return out


@numba.njit
def _dot3(x0, x1, x2, y0, y1, y2):  # pragma: no cover - compiled
    """A 3-vector dot product summed as numpy's einsum sums it (x and z, then y)."""
    return (x0 * y0 + x2 * y2) + x1 * y1


@numba.njit(nogil=True, cache=True)
def _outside(pts, closest, face, faces, verts, fn, vn, out):  # pragma: no cover - compiled
    for i in range(pts.shape[0]):
        f = face[i]
        ia, ib, ic = faces[f, 0], faces[f, 1], faces[f, 2]
        n0, n1, n2 = fn[f, 0], fn[f, 1], fn[f, 2]
        area2 = _dot3(n0, n1, n2, n0, n1, n2) + 1e-30
        q0, q1, q2 = closest[i, 0], closest[i, 1], closest[i, 2]
        w = np.empty(2)
        for k in range(2):  # barycentric weights of a (from edge b -> c) and b (c -> a)
            s, t = (ib, ic) if k == 0 else (ic, ia)
            u0 = verts[t, 0] - verts[s, 0]
            u1 = verts[t, 1] - verts[s, 1]
            u2 = verts[t, 2] - verts[s, 2]
            v0 = q0 - verts[s, 0]
            v1 = q1 - verts[s, 1]
            v2 = q2 - verts[s, 2]
            c0 = u1 * v2 - u2 * v1
            c1 = u2 * v0 - u0 * v2
            c2 = u0 * v1 - u1 * v0
            w[k] = _dot3(c0, c1, c2, n0, n1, n2) / area2
        wa, wb = w[0], w[1]
        wc = 1.0 - wa - wb
        m0 = (wa * vn[ia, 0] + wb * vn[ib, 0]) + wc * vn[ic, 0]
        m1 = (wa * vn[ia, 1] + wb * vn[ib, 1]) + wc * vn[ic, 1]
        m2 = (wa * vn[ia, 2] + wb * vn[ib, 2]) + wc * vn[ic, 2]
        d = _dot3(pts[i, 0] - q0, pts[i, 1] - q1, pts[i, 2] - q2, m0, m1, m2)
        out[i] = d > 0


def outside_by_normals(pts, closest, face, faces, verts, face_normals, vertex_normals):
    """Whether each point lies outside a surface, judged at its closest point on it.

    The offset from the closest point compared with the outward normal there: the vertex
    normals of the closest triangle interpolated barycentrically.

    Parameters
    ----------
    pts, closest : numpy.ndarray
        ``(n, 3)`` points and their closest surface points.
    face : numpy.ndarray
        ``(n,)`` their closest triangles.
    faces, verts : numpy.ndarray
        The mesh: ``(m, 3)`` vertex indices, ``(v, 3)`` vertices.
    face_normals, vertex_normals : numpy.ndarray
        ``(m, 3)`` cross products of each triangle's edges from its first vertex, ``(v, 3)``
        unit vertex normals.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` booleans, True outside: the numbers of the vectorised computation (numpy's
        cross products and sums in their order).
    """
    out = np.empty(len(pts), dtype=np.bool_)
    _outside(
        np.ascontiguousarray(pts, dtype=np.float64),
        np.ascontiguousarray(closest, dtype=np.float64),
        np.ascontiguousarray(face, dtype=np.int64),
        np.ascontiguousarray(faces, dtype=np.int64),
        np.ascontiguousarray(verts, dtype=np.float64),
        np.ascontiguousarray(face_normals, dtype=np.float64),
        np.ascontiguousarray(vertex_normals, dtype=np.float64),
        out,
    )
    return out
