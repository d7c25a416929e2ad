"""The margin engine's building blocks against plain, slow oracles.

Each fast path of ``core.margin`` (reading masks without a full-volume array, the k-d tree
search for the closest triangle, gradients and curvature evaluated on a narrow band only)
must give the numbers of the obvious whole-array computation.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from napari_ablation.core import margin as M


@pytest.mark.parametrize(
    ("dtype", "shape", "label"),
    [
        (np.uint8, (9, 13, 7), None),  # rows of 7 bytes: read byte by byte
        (np.int16, (8, 12, 10), None),
        (np.int16, (8, 12, 10), 2),
        (np.float32, (6, 5, 9), None),
    ],
)
def test_mask_source_box_crop_and_count_match_the_whole_array(dtype, shape, label):
    rng = np.random.default_rng(3)
    arr = np.zeros(shape, dtype=dtype)
    sub = (slice(2, shape[0] - 2), slice(3, shape[1] - 1), slice(1, shape[2] - 3))
    arr[sub] = rng.integers(0, 3, size=arr[sub].shape).astype(dtype)
    if dtype == np.float32:
        arr[0, 0, 0] = -0.0  # a non-zero byte pattern that is zero
    img = sitk.GetImageFromArray(arr)
    src = M._MaskSource(img, "tumor", label)
    fg = (arr == label) if label is not None else (arr != 0)
    assert src.box == M._bbox(fg)
    assert src.count() == int(fg.sum())
    lo, hi = [-2, 1, -3], [shape[0] + 1, shape[1] - 2, shape[2] + 2]
    expect = np.zeros([h - a for a, h in zip(lo, hi)], dtype=bool)
    expect[2 : 2 + shape[0], :, 3 : 3 + shape[2]] = fg[:, 1 : shape[1] - 2, :]
    np.testing.assert_array_equal(src.crop(lo, hi), expect)


def test_empty_mask_has_no_box():
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.uint8))
    assert M._MaskSource(img, "tumor", None).box is None
    img = sitk.GetImageFromArray(np.ones((4, 5, 6), np.uint8))
    assert M._MaskSource(img, "tumor", 2).box is None


def _sphere_mesh(r=8.0, h=1.0, poles=True):
    img = M.sphere_image([25, 25, 25], [h] * 3, [-12.3, -12.1, -11.8], [0.2, -0.1, 0.3], r)
    src = M._MaskSource(img, "tumor", None)
    fld, surf = M._field_and_surface(src, src.box, M._Grid(img), 1.2, "tumor", [], poles=poles)
    return fld, surf


def _closest_on_triangles(p, a, b, c):
    """Oracle: closest point of each triangle to ``p`` (3,), by projection and clamping.

    The plane's foot point where it falls inside the triangle (barycentric coordinates),
    else the closest of the three edges' closest points: no Voronoi-region logic.
    """
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    foot = p - np.einsum("ij,ij->i", p - a, n)[:, None] * n
    # barycentric coordinates of the foot point
    v0, v1, v2 = ab, ac, foot - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    inside = (v >= 0) & (w >= 0) & (v + w <= 1)

    def seg(s0, s1):
        e = s1 - s0
        t = np.clip(np.einsum("ij,ij->i", p - s0, e) / np.einsum("ij,ij->i", e, e), 0, 1)
        return s0 + t[:, None] * e

    cands = np.stack([seg(a, b), seg(b, c), seg(c, a)], 1)
    k = np.argmin(np.linalg.norm(cands - p, axis=2), axis=1)
    q = cands[np.arange(len(a)), k]
    return np.where(inside[:, None], foot, q)


def _brute_distance(md, pts):
    """Oracle: distance from each point to the closest of all triangles of ``md``'s mesh."""
    return np.array(
        [np.linalg.norm(_closest_on_triangles(p, md.a, md.b, md.c) - p, axis=1).min() for p in pts]
    )


@pytest.mark.parametrize("poles", [False, True])
def test_closest_triangle_search_matches_all_triangles(poles):
    _fld, mesh = _sphere_mesh(poles=poles)
    md = M.MeshDistance(mesh)
    rng = np.random.default_rng(0)
    u = rng.normal(size=(400, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    pts = u * rng.uniform(0.0, 14.0, (400, 1))  # from the centre to outside the surface
    guess = u * 8.0 + rng.normal(scale=0.5, size=(400, 3))  # a rough projection
    d, q, f = md.query_faces(pts, guess)
    np.testing.assert_allclose(d, _brute_distance(md, pts), rtol=0, atol=1e-9)
    # the guess changes nothing (a bad one only the speed)
    for g in (None, -guess):
        d2, q2, _f2 = md.query_faces(pts, g)
        np.testing.assert_allclose(d2, d, rtol=0, atol=1e-12)
        np.testing.assert_allclose(q2, q, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(q - pts, axis=1), d, atol=1e-9)
    # the closest point lies on the returned triangle
    a, b, c = md.a[f], md.b[f], md.c[f]
    nrm = np.cross(b - a, c - a)
    np.testing.assert_allclose(np.einsum("ij,ij->i", q - a, nrm), 0.0, atol=1e-9)


def test_closest_triangle_search_on_tiny_meshes():
    # one triangle (a tree of one leaf), and a few (leaves left empty in the tree)
    rng = np.random.default_rng(7)
    for n_faces in (1, 3, 5, 9):
        verts = rng.normal(size=(3 * n_faces, 3)) * 3.0
        mesh = M.Mesh(verts, np.arange(3 * n_faces).reshape(-1, 3))
        md = M.MeshDistance(mesh)
        pts = rng.normal(size=(50, 3)) * 5.0
        d, _q, f = md.query_faces(pts)
        np.testing.assert_allclose(d, _brute_distance(md, pts), rtol=0, atol=1e-9)
        assert f.min() >= 0 and f.max() < n_faces


def test_gradient_at_points_is_np_gradient_interpolated():
    rng = np.random.default_rng(1)
    arr = rng.normal(size=(7, 9, 6)).astype(np.float32)
    idx = rng.uniform(-1.0, [8.0, 10.0, 7.0], size=(500, 3))  # beyond the edges too
    ref = np.stack(
        [
            ndimage.map_coordinates(g, idx.T, order=1, mode="nearest", prefilter=False)
            for g in np.gradient(arr)
        ],
        1,
    )
    np.testing.assert_allclose(M._gradient_at(arr, idx), ref, rtol=1e-5, atol=1e-5)


def _curvature_whole_crop(f, sp, coords):
    grads = np.gradient(f, *sp)
    norm = np.sqrt(sum(g * g for g in grads)) + 1e-6
    div = sum(np.gradient(g / norm, sp[i], axis=i) for i, g in enumerate(grads))
    kappa = -ndimage.map_coordinates(div, coords, order=1, mode="nearest", prefilter=False)
    n_in = np.stack(
        [
            ndimage.map_coordinates(g / norm, coords, order=1, mode="nearest", prefilter=False)
            for g in grads
        ],
        1,
    )
    return kappa, n_in / (np.linalg.norm(n_in, axis=1, keepdims=True) + 1e-12)


def _blur_shift_whole_crop(fld, verts_idx):
    """The curvature correction computed on the whole crop (the original formulation)."""
    ea, eb = M.CURVATURE_EXTRA_BLURS
    fa = ndimage.gaussian_filter(fld.values, ea)
    fb = ndimage.gaussian_filter(fa, np.sqrt(eb**2 - ea**2))
    sp = fld.sample_spacing_mm()
    sig_mm2 = float(np.mean((np.asarray(fld.blur) * sp) ** 2))
    kappa, n_in = _curvature_whole_crop(fa, sp, verts_idx.T)
    if np.all(fld.step == 1):
        kappa_b, _ = _curvature_whole_crop(fb, sp, verts_idx.T)
        kappa = kappa + (kappa - kappa_b) * ea**2 / (eb**2 - ea**2)
    lim = 0.5 * np.sqrt(sig_mm2)
    shift_mm = np.clip(0.5 * sig_mm2 * kappa, -lim, lim)
    return -(n_in * shift_mm[:, None]) / sp[None, :]


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.2, 1.2, 3.0)])
def test_curvature_correction_on_a_band_equals_the_whole_crop(spacing):
    from skimage.measure import marching_cubes

    img = M.sphere_image([30, 30, 14], spacing, [-17.9, -18.2, -20.6], [0.3, 0.1, -0.2], 9.0)
    src = M._MaskSource(img, "tumor", None)
    fld = M._smoothed_field(src, src.box, M._Grid(img), 1.2)
    verts = marching_cubes(fld.values, level=fld.level)[0]
    verts = np.vstack([verts, [[0.0, 0.0, 0.0]], np.asarray(fld.values.shape) - 1.0])  # edges
    np.testing.assert_allclose(
        M._blur_shift(fld, verts), _blur_shift_whole_crop(fld, verts), atol=1e-5
    )


def test_margin_labels_image_is_the_class_crop_on_the_pre_grid():
    tumor = M.sphere_image([40, 36, 20], [1.1, 1.1, 2.5], [-21, -19, -24], [0.4, 0.2, 0.1], 7.0)
    ablation = M.sphere_image([40, 36, 20], [1.1, 1.1, 2.5], [-21, -19, -24], [4.0, 0, 0], 8.0)
    res = M.analyze_margin(tumor, ablation)
    img = res.margin_labels_image()
    expect = np.zeros(tumor.GetSize()[::-1], np.uint8)
    z, y, x = res.class_offset
    dz, dy, dx = res.class_crop.shape
    expect[z : z + dz, y : y + dy, x : x + dx] = res.class_crop
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), expect)
    assert img.GetSpacing() == tumor.GetSpacing() and img.GetOrigin() == tumor.GetOrigin()
    assert set(np.unique(expect)) == {0, 1, 2, 3}


def test_tumor_surface_margins_are_exact_for_a_deep_tumor():
    """A tumor 7-8 mm inside its ablation zone: seen from so deep, the distance along the
    ablation surface is flat (a local search stopped on the mesh's sub-voxel bumps, up to
    0.3 mm too far). Every vertex gets the distance to the closest of all triangles."""
    rng = np.random.default_rng(4)
    c_t = rng.uniform(-1, 1, 3)
    size, sp = [56, 56, 56], [1.0, 1.0, 1.0]
    origin = [-27.6, -27.3, -27.9]
    tumor = M.sphere_image(size, sp, origin, c_t, 10.0)
    ablation = M.sphere_image(size, sp, origin, c_t + [0.6, -0.4, 0.3], 18.5)
    res = M.analyze_margin(tumor, ablation, with_shells=False)
    mesh, verts = res.ablation_surface, res.tumor_surface.verts
    md = M.MeshDistance(mesh)
    # the raw (unsmoothed) margins, recomputed the engine's way, against all triangles
    guide = M._Guide(res._ablation_field)
    idx = guide.sample_index(verts)
    d, _q, _f = md.query_faces(verts, guide.project(verts, idx, guide.distance(idx)))
    rows = rng.choice(len(verts), 300, replace=False)
    rows[0] = np.argmin(d)
    np.testing.assert_allclose(d[rows], _brute_distance(md, verts[rows]), rtol=0, atol=1e-9)


def test_box_bounds_enclose_every_box():
    rng = np.random.default_rng(2)
    arr = rng.normal(size=(11, 14, 9)).astype(np.float32)
    bb = M._BoxBounds(arr)
    # the block extremes, axis by axis, equal a reduction over each block
    padded = np.pad(arr, [(0, 1), (0, 0), (0, 1)], mode="edge")
    blocks = padded.reshape(6, 2, 7, 2, 5, 2)
    np.testing.assert_array_equal(bb.lo, blocks.min(axis=(1, 3, 5)))
    np.testing.assert_array_equal(bb.hi, blocks.max(axis=(1, 3, 5)))
    lo = rng.integers(0, [11, 14, 9], size=(200, 3))
    hi = np.minimum(lo + rng.integers(0, 5, size=(200, 3)), [10, 13, 8])
    b_lo, b_hi = bb.query(lo, hi)
    for i in range(len(lo)):
        box = arr[lo[i, 0] : hi[i, 0] + 1, lo[i, 1] : hi[i, 1] + 1, lo[i, 2] : hi[i, 2] + 1]
        assert b_lo[i] <= box.min() and b_hi[i] >= box.max()


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 0.8), (1.2, 1.2, 3.0)])
def test_lattice_margins_give_every_point_its_own_class(spacing):
    """Blocks of tumor voxels settled as a whole get the class each voxel's own approximate
    margin gives, at every level; most of a large tumor is settled."""
    size = [60, 60, 30] if spacing[2] > 2 else [60, 60, 60]
    origin = [-24.1, -23.7, -24.6]
    tumor = M.sphere_image(size, spacing, origin, [0.4, -0.3, 0.2], 10.0)
    T = sitk.Euler3DTransform()
    T.SetRotation(0.1, -0.05, 0.2)
    T.SetTranslation((1.5, -2.0, 0.7))
    c_post = np.asarray(T.TransformPoint((1.9, 0.5, -0.8)))
    ablation = M.sphere_image(size, spacing, np.add(origin, 0.31), c_post, 19.0)
    A, b = M._check_rigid(T)
    src = M._MaskSource(ablation, "ablation", None)
    afield, _surf = M._field_and_surface(src, src.box, M._Grid(ablation), 1.2, "ablation", [])
    guide = M._Guide(afield)
    calls = []

    def approx_margin(points):  # the per-point computation away from the levels
        calls.append(len(points))
        q = M._affine(points, A, b)
        d = np.abs(guide.distance(guide.sample_index(q)))
        return np.where(afield.inside(q), d, -d)

    tsrc = M._MaskSource(tumor, "tumor", None)
    tgrid = M._Grid(tumor)
    lo = np.array([s.start for s in tsrc.box])
    idx = np.argwhere(tsrc.crop(lo, [s.stop for s in tsrc.box]))
    o = tgrid.to_lps(lo)
    levels = (0.0, 5.0)
    m = M._lattice_margins(idx, tgrid.M, o, afield, guide, A, b, levels, approx_margin)
    ref = approx_margin(M._affine(idx, tgrid.M, o))
    for lev in levels:
        np.testing.assert_array_equal(m >= lev, ref >= lev)
    # the rest was settled block by block (less of it on thick slices, where the guide's
    # tolerance is wider)
    assert 0 < calls[0] < (0.5 if spacing[2] < 2 else 0.9) * len(idx)
    # the inside test alone (peri-tumoral shells), on a lattice reaching beyond the ablation
    # crop, against each point's own interpolation
    box = np.argwhere(np.ones((24, 26, 22 if spacing[2] < 2 else 10), bool))
    o2 = o - [4.0, 3.0, 5.0]
    pts = M._affine(box, tgrid.M * 2.0, o2)
    np.testing.assert_array_equal(
        M._lattice_inside(box, tgrid.M * 2.0, o2, afield, A, b),
        afield.inside(M._affine(pts, A, b)),
    )


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.2, 1.2, 3.0)])
def test_guide_distance_in_one_pass_equals_two_transforms(spacing):
    import edt

    img = M.sphere_image([30, 30, 14], spacing, [-17.9, -18.2, -20.6], [0.3, 0.1, -0.2], 9.0)
    src = M._MaskSource(img, "ablation", None)
    fld = M._smoothed_field(src, src.box, M._Grid(img), 1.2)
    guide = M._Guide(fld)
    inside = fld.values >= fld.level
    an = tuple(float(v) for v in fld.sample_spacing_mm())
    half = 0.5 * float(np.mean(an))
    d_in = edt.edt(inside, anisotropy=an, black_border=False, parallel=1)
    d_out = edt.edt(~inside, anisotropy=an, black_border=False, parallel=1)
    np.testing.assert_array_equal(guide.sd, np.where(inside, d_in - half, half - d_out))
    # on two threads (the transform's lines split among them): the same numbers
    np.testing.assert_array_equal(M._Guide(fld, threads=2).sd, guide.sd)


def _slice_sdf_arrays(sl, aniso, sig, band_mm):
    """_slice_sdf with its segment distances as (n, k, 2) arrays (the computation replaced)."""
    from scipy.spatial import cKDTree
    from skimage.measure import find_contours

    soft = ndimage.gaussian_filter(sl.astype(np.float32), sigma=sig, mode="constant", truncate=3.0)
    contours = [c for c in find_contours(soft, 0.5) if len(c) >= 2]
    sy, sx = aniso
    a = np.concatenate([c[:-1] for c in contours]) * (sy, sx)
    b = np.concatenate([c[1:] for c in contours]) * (sy, sx)
    perimeter = float(np.linalg.norm(b - a, axis=1).sum())
    area = abs(0.5 * float(np.sum(a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1])))
    offset = float(
        np.clip(
            (np.count_nonzero(sl) * sy * sx - area) / perimeter,
            -0.5 * min(sy, sx),
            0.5 * min(sy, sx),
        )
    )
    inside = soft >= 0.5
    d_in = ndimage.distance_transform_edt(inside, sampling=(sy, sx))
    d_out = ndimage.distance_transform_edt(~inside, sampling=(sy, sx))
    half = 0.25 * (sy + sx)
    approx = np.where(inside, d_in - half, -(d_out - half))
    out = approx.astype(np.float32)
    band = np.abs(approx) <= band_mm
    p = np.argwhere(band) * (sy, sx)
    _d, idx = cKDTree(0.5 * (a + b)).query(p, k=6)
    pa, ab = p[:, None, :] - a[idx], b[idx] - a[idx]
    t = np.clip((pa * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    d = np.sqrt(((pa - ab * t[..., None]) ** 2).sum(-1)).min(axis=1)
    out[band] = np.where(inside[band], d, -d)
    return out + np.float32(offset)


@pytest.mark.parametrize("aniso", [(1.2, 1.2), (0.7, 0.9)])
def test_slice_distances_by_components_equal_the_array_form(aniso):
    # two blobs of random outline, one with a hole: several contours per slice
    yy, xx = np.mgrid[0:48, 0:56].astype(float)
    rng = np.random.default_rng(5)
    th = np.arctan2(yy - 20, xx - 22)
    r = 11 + 2.5 * np.sin(3 * th + rng.uniform(0, 6)) + np.cos(5 * th)
    sl = np.hypot(yy - 20, xx - 22) <= r
    sl &= np.hypot(yy - 19, xx - 24) > 3.5
    sl |= np.hypot((yy - 38) / 0.6, xx - 44) <= 6
    got = M._slice_sdf(sl.astype(np.uint8), aniso, 0.8, band_mm=4.0)
    np.testing.assert_array_equal(got, _slice_sdf_arrays(sl.astype(np.uint8), aniso, 0.8, 4.0))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.7, 1.0)])
def test_diameter_surface_correction_from_the_margin_surface(spacing):
    # the diameter's lighter-blurred surface takes its blur correction from the margin's
    # surface (its curvature per unit variance, scaled): the same vertices, to a hundredth of
    # a millimetre, as its own curvature fields give, and the same diameter
    img = M.sphere_image([40, 40, 36], spacing, [-13.1, -12.7, -15.2], [0.3, -0.4, 0.2], 9.0)
    src, grid = M._MaskSource(img, "tumor", None), M._Grid(img)
    _f, msurf = M._field_and_surface(src, src.box, grid, M.DEFAULT_SMOOTH_VOX, "tumor", [])
    assert msurf.shift_per_variance is not None
    _f, own = M._field_and_surface(src, src.box, grid, M.DIAMETER_SMOOTH_VOX, "tumor", [])
    _f, reused = M._field_and_surface(
        src, src.box, grid, M.DIAMETER_SMOOTH_VOX, "tumor", [], shift_from=msurf
    )
    np.testing.assert_array_equal(reused.faces, own.faces)
    assert np.abs(reused.verts - own.verts).max() <= 0.01
    # the correction is there (the uncorrected surface lies about sigma^2 / R inside)
    assert np.linalg.norm(reused.verts - [0.3, -0.4, 0.2], axis=1).mean() == pytest.approx(
        np.linalg.norm(own.verts - [0.3, -0.4, 0.2], axis=1).mean(), abs=1e-3
    )
    d_own = M._max_diameter(own.verts)
    assert M._max_diameter(reused.verts) == pytest.approx(d_own, abs=0.01)


def test_outside_test_uses_the_mesh_normals():
    # MeshDistance.outside forms its face and vertex normals from the stored edges: the same
    # numbers as the mesh's own vertex normals and cross products
    _fld, mesh = _sphere_mesh()
    md = M.MeshDistance(mesh)
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(400, 3)) * 6.0
    _d, q, f = md.query_faces(pts)
    got = md.outside(pts, q, f)
    vn = mesh.vertex_normals()
    np.testing.assert_array_equal(md._vn, vn)
    a, b, c = (mesh.verts[mesh.faces[f, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    area2 = np.einsum("ij,ij->i", n, n) + 1e-30
    wa = np.einsum("ij,ij->i", np.cross(c - b, q - b), n) / area2
    wb = np.einsum("ij,ij->i", np.cross(a - c, q - c), n) / area2
    fv = mesh.faces[f]
    nrm = (
        wa[:, None] * vn[fv[:, 0]]
        + wb[:, None] * vn[fv[:, 1]]
        + (1 - wa - wb)[:, None] * vn[fv[:, 2]]
    )
    np.testing.assert_array_equal(got, np.einsum("ij,ij->i", pts - q, nrm) > 0)
    # and it is right: outside the sphere of radius 8 (the mask's surface lies near 8.4)
    r = np.linalg.norm(pts - [0.2, -0.1, 0.3], axis=1)
    assert np.all(got[r > 9.0]) and not np.any(got[r < 7.5])


def test_closest_triangle_search_does_not_depend_on_the_thread():
    # the second half of the points on a worker: the same numbers as one call for all
    _fld, mesh = _sphere_mesh()
    md = M.MeshDistance(mesh)
    rng = np.random.default_rng(2)
    pts = rng.normal(size=(3001, 3)) * 5.0
    one = md.query_faces(pts)
    for threads in (1, 2):
        tasks = M._Tasks(threads)
        try:
            for got, ref in zip(md.query_faces(pts, tasks=tasks), one):
                np.testing.assert_array_equal(got, ref)
        finally:
            tasks.close()


@pytest.mark.parametrize("spacing", [(1.1, 1.1, 2.5), (0.9, 0.9, 0.9)])
def test_two_threads_give_the_same_analysis_as_one(spacing):
    """The stages that run side by side (the two reconstructions, the diameter, the guide,
    the shells, the two halves of each closest-triangle search) give the same result, bit
    for bit, and the warnings in the same order (a tumor and an ablation zone each only a
    few voxels across warn, tumor first)."""
    size = [40, 36, 24]
    origin = [-0.5 * n * h + 0.3 for n, h in zip(size, spacing)]
    tumor = M.sphere_image(size, spacing, origin, [0.4, 0.2, 0.1], 2.2)
    ablation = M.sphere_image(size, spacing, origin, [1.0, 0, 0], 3.3)
    T = sitk.Euler3DTransform()
    T.SetRotation(0.02, -0.03, 0.05)
    T.SetTranslation((0.3, -0.2, 0.4))
    one = M.analyze_margin(tumor, ablation, T, 1.0, threads=1)
    two = M.analyze_margin(tumor, ablation, T, 1.0, threads=2)
    assert len(one.warnings) >= 2 and "tumor" in one.warnings[0]
    assert "ablation" in one.warnings[1]
    assert one.to_json_dict() == two.to_json_dict()
    np.testing.assert_array_equal(one.class_crop, two.class_crop)
    np.testing.assert_array_equal(one.surface_margin_mm, two.surface_margin_mm)
    np.testing.assert_array_equal(one.ablation_surface.verts, two.ablation_surface.verts)


def test_an_analysis_needs_a_thread():
    tumor = M.sphere_image([20, 20, 20], [1.0] * 3, [-10] * 3, [0, 0, 0], 4.0)
    with pytest.raises(M.AblationError, match="at least 1 thread"):
        M.analyze_margin(tumor, tumor, threads=0)


@pytest.mark.parametrize(
    ("shape", "sigma", "mode", "truncate"),
    [
        ((23, 31, 19), 3.0, "reflect", 4.0),  # the curvature correction's blurs
        ((23, 31, 19), 7**0.5, "reflect", 4.0),
        ((23, 31, 19), 1.2, "constant", 3.0),  # anti-aliasing
        ((9, 40, 33), (1.2, 0.0, 0.8), "constant", 3.0),  # an axis not blurred
        ((3, 5, 2), 3.0, "reflect", 4.0),  # lines shorter than the kernel's radius
        ((4, 6, 3), 2.0, "constant", 4.0),
    ],
)
def test_gaussian_filter_gives_scipys_numbers(shape, sigma, mode, truncate):
    from napari_ablation.core.filters import gaussian_filter

    rng = np.random.default_rng(5)
    arr = (rng.random(shape) > 0.4).astype(np.float32) * rng.random(shape).astype(np.float32)
    ref = ndimage.gaussian_filter(arr, sigma, mode=mode, truncate=truncate)
    got = gaussian_filter(arr, sigma, mode=mode, truncate=truncate)
    np.testing.assert_array_equal(got, ref)  # bit for bit
    # a non-contiguous view in, the input left alone
    view = np.moveaxis(arr, 0, 2)
    before = view.copy()
    np.testing.assert_array_equal(
        gaussian_filter(view, sigma, mode=mode, truncate=truncate),
        ndimage.gaussian_filter(view, sigma, mode=mode, truncate=truncate),
    )
    np.testing.assert_array_equal(view, before)


def test_gaussian_filter_refuses_what_it_does_not_reproduce():
    from napari_ablation.core.filters import gaussian_filter

    with pytest.raises(ValueError, match="3D float32"):
        gaussian_filter(np.zeros((4, 4, 4)), 1.0)
    with pytest.raises(ValueError, match="modes"):
        gaussian_filter(np.zeros((4, 4, 4), np.float32), 1.0, mode="nearest")


def test_candidate_segment_distance_is_the_vectorised_form():
    # the in-plane distance of thick slices to each pixel's candidate contour segments
    from scipy.spatial import cKDTree

    from napari_ablation.core.mesh_search import candidate_segment_distance

    rng = np.random.default_rng(0)
    a = rng.random((300, 2)) * 50
    b = a + rng.normal(size=(300, 2))
    b[5] = a[5]  # a segment of length 0
    p = rng.random((2000, 2)) * 50
    _d, idx = cKDTree(0.5 * (a + b)).query(p, k=6)
    e = b - a
    ee = np.maximum((e * e).sum(axis=1), 1e-12)
    ap = p[:, None, :] - a[idx]
    t = np.clip(np.einsum("ijk,ijk->ij", ap, e[idx]) / ee[idx], 0, 1)
    ref = np.linalg.norm(ap - e[idx] * t[..., None], axis=2).min(axis=1)
    got = candidate_segment_distance(p, a, b, idx)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # and the same bits as the by-components form the thick-slice field used before
    pay, pax = p[:, 0:1] - a[idx, 0], p[:, 1:2] - a[idx, 1]
    ey, ex = e[idx, 0], e[idx, 1]
    t = np.clip((pay * ey + pax * ex) / ee[idx], 0, 1)
    ry, rx = pay - ey * t, pax - ex * t
    np.testing.assert_array_equal(got, np.sqrt(ry * ry + rx * rx).min(axis=1))


@pytest.mark.parametrize("spacing", [(1.2, 1.2), (0.7, 0.7), (0.7, 1.3), (1.9, 0.45)])
def test_slice_edt_gives_scipys_distances_of_both_sides(spacing):
    # the thick slices' pixel-centre distances (_slice_sdf): both of scipy's EDTs in one
    # pass; in a tie between equally near pixels scipy's sum of squares may be one unit in
    # the last place above the smallest: that is the only difference allowed
    from napari_ablation.core.filters import slice_edt

    rng = np.random.default_rng(3)
    n_ulp = n_px = 0
    for i in range(60):
        shape = rng.integers(2, 60, 2)
        blob = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.5, 4.0))
        inside = blob > np.median(blob) + rng.uniform(-0.05, 0.05)
        if i == 0:
            inside = np.ones((7, 9), bool)
            inside[2, 6] = False  # one outside pixel: its exact distances
        if inside.all() or not inside.any():
            continue
        got = slice_edt(inside, spacing)
        ref = np.where(
            inside,
            ndimage.distance_transform_edt(inside, sampling=spacing),
            ndimage.distance_transform_edt(~inside, sampling=spacing),
        )
        np.testing.assert_array_max_ulp(got, ref, maxulp=1)
        assert np.all(got <= ref)
        n_ulp += np.count_nonzero(got != ref)
        n_px += got.size
        if i == 0:
            yy, xx = np.indices(inside.shape)
            exact = np.sqrt(((yy - 2) * spacing[0]) ** 2 + ((xx - 6) * spacing[1]) ** 2)
            np.testing.assert_array_equal(got[inside], exact[inside])
            assert got[2, 6] == min(spacing)  # to the nearest inside pixel
    assert n_ulp <= 1e-3 * n_px
    with pytest.raises(ValueError, match="both sides"):
        slice_edt(np.ones((4, 4), bool), spacing)
    with pytest.raises(ValueError, match="boolean"):
        slice_edt(np.ones((4, 4)), spacing)


def test_thick_slice_field_unchanged_by_the_compiled_edt_and_the_stacked_blur(monkeypatch):
    # _slice_sdf's float32 field with slice_edt, and with the slices blurred together: the
    # field of scipy's two EDTs and a blur per slice, bit for bit
    from napari_ablation.core import margin as mg

    def scipys(inside, sampling):
        d_in = ndimage.distance_transform_edt(inside, sampling=sampling)
        return np.where(inside, d_in, ndimage.distance_transform_edt(~inside, sampling=sampling))

    rng = np.random.default_rng(8)
    cases = []
    for i in range(60):
        shape = rng.integers(6, 50, 2)
        blob = ndimage.gaussian_filter(rng.random(shape), rng.uniform(1.0, 4.0))
        sl = (blob > np.median(blob)).astype(np.uint8)
        cases.append((sl, [(1.2, 1.2), (0.8, 0.8), (0.7, 1.3)][i % 3], [0.8, 0.0, 1.2][i % 3]))
    got = [mg._slice_sdf(sl, aniso, sig, band_mm=2.0) for sl, aniso, sig in cases]
    for (sl, aniso, sig), g in zip(cases, got, strict=True):
        stacked = mg.filters.gaussian_filter(
            np.stack([sl, sl]).astype(np.float32), (0.0, sig, sig), mode="constant", truncate=3.0
        )
        np.testing.assert_array_equal(mg._slice_sdf(sl, aniso, sig, 2.0, stacked[1]), g)
    monkeypatch.setattr(mg.filters, "slice_edt", scipys)
    for (sl, aniso, sig), g in zip(cases, got, strict=True):
        np.testing.assert_array_equal(mg._slice_sdf(sl, aniso, sig, band_mm=2.0), g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_parts_are_the_labelled_parts_whose_peak_is_low(seed):
    # the parts a blur erased (_keep_lost_parts): a flood fill from the high samples against
    # the labelling of the whole crop, on random blobs, single voxels and chains of low
    # samples that reach a high one only through each other
    from napari_ablation.core.filters import low_parts

    rng = np.random.default_rng(seed)
    solid = ndimage.binary_opening(rng.random((14, 17, 12)) > 0.55)
    solid[0, 0, 0] = solid[13, 16, 11] = True  # single voxels in the corners
    solid[5:8, 2:10, 6] = True  # a slab
    values = (rng.random(solid.shape) * solid).astype(np.float32)
    values[5:8, 2:9, 6] = 0.5  # a chain of low samples ...
    values[6, 9, 6] = 0.9  # ... whose end is high
    values[0, 0, 0] = values[13, 16, 11] = 0.3
    for s in (solid, solid.astype(np.uint8), np.moveaxis(solid, 0, 2)):
        v = values if s.shape == values.shape else np.moveaxis(values, 0, 2)
        lab, n = ndimage.label(s, structure=np.ones((3, 3, 3), dtype=bool))
        low = [i + 1 for i in range(n) if v[lab == i + 1].max() < 0.85]
        got = low_parts(s, v, 0.85)
        if low:
            np.testing.assert_array_equal(got, np.isin(lab, low))
        else:
            assert got is None
        assert low  # (at least the corners)
    assert low_parts(solid, np.ones(solid.shape, np.float32), 0.85) is None
    with pytest.raises(ValueError, match="float32"):
        low_parts(solid, values.astype(float), 0.85)


def test_a_queued_task_runs_in_the_thread_that_needs_it_first():
    # a task the worker has not started yet runs in the calling thread when its result is
    # asked for (or it is taken); one the worker runs is waited for; errors are raised where
    # the result is asked for

    started, release = threading.Event(), threading.Event()

    def busy():
        started.set()
        release.wait(10)
        return threading.current_thread().name

    def where():
        return threading.current_thread().name

    def fails():
        raise ValueError("from the task")

    tasks = M._Tasks(2)
    try:
        first = tasks.submit(busy)
        assert started.wait(10)  # the worker is busy with the first task
        taken, asked, bad = tasks.submit(where), tasks.submit(where), tasks.submit(fails)
        taken.take()
        assert taken.result() == threading.current_thread().name
        assert asked.result() == threading.current_thread().name
        with pytest.raises(ValueError, match="from the task"):
            bad.result()
        release.set()
        assert first.result().startswith("margin")  # (the worker's)
    finally:
        release.set()
        tasks.close()


def test_a_task_with_two_consumers_runs_once():
    """Two threads asking for a task the worker has not started run it once, not twice.

    (The ablation's reconstruction is asked for by the calling thread and by the worker's
    guide; each run appended its warnings, so a two-thread analysis once carried a warning
    twice.)
    """
    held, started, release = threading.Event(), threading.Event(), threading.Event()
    runs = []

    def hold():
        held.set()
        release.wait(10)

    def counted():
        runs.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        return len(runs)

    tasks = M._Tasks(2)
    try:
        blocker = tasks.submit(hold)
        assert held.wait(10)  # the only worker is busy: nobody starts the next task
        job = tasks.submit(counted)
        out = {}
        first = threading.Thread(target=lambda: out.setdefault("first", job.result()))
        first.start()
        assert started.wait(10)  # the first consumer is running it
        second = threading.Thread(target=lambda: out.setdefault("second", job.result()))
        second.start()
        second.join(0.3)  # the second consumer has asked for it meanwhile
        release.set()
        first.join(10)
        second.join(10)
        blocker.result()
        assert len(runs) == 1
        assert out == {"first": 1, "second": 1}
    finally:
        release.set()
        tasks.close()


def test_closing_the_tasks_waits_for_the_running_one_and_cancels_the_rest():
    """After an analysis (or its error) no task of it runs on: close() waits for the one a
    worker runs and cancels the ones queued behind it, which never run."""
    started, release = threading.Event(), threading.Event()
    ran = []

    def busy():
        started.set()
        release.wait(10)
        ran.append("busy")

    tasks = M._Tasks(2)
    running = tasks.submit(busy)
    tasks.submit(ran.append, "queued")
    assert started.wait(10)
    closer = threading.Thread(target=tasks.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # waiting for the running task
    release.set()
    closer.join(10)
    assert not closer.is_alive()
    assert running._fut.done() and ran == ["busy"]
    M._Tasks(2).submit(ran.append, "next").result()  # the worker is free for the next one
    assert ran == ["busy", "next"]


def test_a_calling_thread_keeps_its_worker_from_one_analysis_to_the_next():
    """Each calling thread has its own worker, started on its first analysis and reused (a
    thread started and joined per analysis was on the critical path); another calling
    thread gets another worker, so analyses in threads side by side do not share one."""

    def worker_of_two_analyses(out):
        for _ in range(2):
            tasks = M._Tasks(2)
            started, release = threading.Event(), threading.Event()

            def on_worker(started=started, release=release):
                started.set()
                release.wait(10)
                return threading.current_thread()

            job = tasks.submit(on_worker)
            assert started.wait(10)  # (run by the worker, not taken by this thread)
            release.set()
            out.append(job.result())
            tasks.close()

    here, there = [], []
    worker_of_two_analyses(here)
    other = threading.Thread(target=worker_of_two_analyses, args=(there,))
    other.start()
    other.join(30)
    assert here[0] is here[1] and there[0] is there[1]  # (a thread, not an ident: those recur)
    assert here[0] is not there[0] and threading.current_thread() not in here + there


def test_one_vertex_normal_is_that_of_all_vertices():
    _fld, mesh = _sphere_mesh()
    normals = mesh.vertex_normals()
    for i in (0, 17, len(mesh.verts) // 2, len(mesh.verts) - 1):
        np.testing.assert_array_equal(mesh.vertex_normal(i), normals[i])


def _random_lps(seed, n_lps=40):
    """Small dense LPs like the star fit's: feasible, unbounded and infeasible ones."""
    rng = np.random.default_rng(seed)
    for i in range(n_lps):
        n, k = int(rng.integers(8, 160)), int(rng.integers(2, 11))
        A = rng.normal(size=(n, k))
        A[rng.random(A.shape) < 0.1] = 0.0  # explicit zeros: dropped from the columns
        b = rng.normal(size=n) + (0.0 if i % 7 == 6 else 3.0)  # some with no solution
        lb, ub = np.full(k, -np.inf), np.full(k, np.inf)
        if i % 5 != 4:  # (without bounds some are unbounded)
            lb[:] = -10.0 * rng.random(k)
            ub[-1] = rng.choice([1.0, 0.0, 5.0])
            lb[-1] = min(lb[-1], ub[-1])
        yield rng.normal(size=k), A, b, lb, ub


@pytest.mark.parametrize("seed", [0, 1])
def test_direct_highs_solve_is_linprogs_solution(seed):
    from scipy.optimize import linprog

    assert M._highs_core() is not None  # (the installed scipy has the bindings)
    outcomes = set()
    for cost, A, b, lb, ub in _random_lps(seed):
        lp = linprog(cost, A_ub=A, b_ub=b, bounds=np.column_stack([lb, ub]), method="highs-ds")
        x = M._solve_lp(cost, A, b, lb, ub)
        outcomes.add(lp.status)
        if lp.status != 0:
            assert x is None
        else:
            np.testing.assert_array_equal(x, lp.x)  # bit for bit: the same solver and model
    assert {0, 2, 3} <= outcomes  # optimal, infeasible and unbounded programs were tried


def test_star_fit_unchanged_without_the_direct_solver(monkeypatch):
    """The star fit's volumes are the same through ``linprog`` (scipy without the bindings)."""
    rng = np.random.default_rng(4)
    masks = []
    shapes = [
        ((1.0,) * 3, (9.0,) * 3),
        ((3.0, 1.2, 1.2), (12.0,) * 3),
        ((1.0,) * 3, (12.0, 9.0, 7.0)),
    ]
    for sp, axes in shapes:  # a ball, a ball across thick slices, an ellipsoid (degree 2)
        n = [int(50 / s) for s in sp]
        grids = [(np.arange(m) - m / 2 + rng.uniform(-0.5, 0.5)) * s for m, s in zip(n, sp)]
        p = (
            np.stack(np.meshgrid(*grids, indexing="ij"), -1)
            @ np.linalg.qr(rng.normal(size=(3, 3)))[0]
        )
        masks.append((((p / np.asarray(axes)) ** 2).sum(-1) <= 1, sp))
    direct = [M._star_volume_mm3(m, sp) for m, sp in masks]
    monkeypatch.setattr(M, "_highs_core", lambda: None)
    assert [M._star_volume_mm3(m, sp) for m, sp in masks] == direct
    assert direct[0] is not None and direct[1] is not None  # (accepted: the LPs ran)


def _corner_weight(w1, bits):
    """Trilinear weight of one cell corner (the numpy formulations' product, left to right)."""
    f = [w1[:, ax] if bits[ax] else 1 - w1[:, ax] for ax in range(3)]
    return f[0] * f[1] * f[2]


def _curvature_sums_numpy(f, sp, verts_idx):
    """Oracle: the band formulation in numpy (the engine's before the compiled kernel)."""
    shape = np.asarray(f.shape)
    flat = f.ravel()
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    i0 = np.floor(verts_idx).astype(np.int64)
    w1 = verts_idx - i0
    corner_sel, corner_lin, corner_w = [], [], []
    for k in range(8):
        bits = np.array([(k >> 2) & 1, (k >> 1) & 1, k & 1])
        w = _corner_weight(w1, bits)
        sel = np.flatnonzero(w != 0)
        corner_sel.append(sel)
        corner_w.append(w[sel])
        c = np.clip(i0[sel] + bits, 0, shape - 1)
        corner_lin.append(c[:, 0] * strides[0] + c[:, 1] * strides[1] + c[:, 2])
    corners = np.unique(np.concatenate(corner_lin))
    cc = np.stack(np.unravel_index(corners, f.shape), 1)
    near = [corners]
    for ax in range(3):
        near.append(corners - (cc[:, ax] > 0) * strides[ax])
        near.append(corners + (cc[:, ax] < shape[ax] - 1) * strides[ax])
    pts = np.unique(np.concatenate(near))
    lut = np.empty(f.size, dtype=np.int64)
    lut[pts] = np.arange(len(pts))
    pc = np.stack(np.unravel_index(pts, f.shape), 1)
    grads = []
    for ax in range(3):
        lo = np.maximum(pc[:, ax] - 1, 0)
        hi = np.minimum(pc[:, ax] + 1, shape[ax] - 1)
        den = ((hi - lo) * sp[ax]).astype(np.float32)
        up, down = pts + (hi - pc[:, ax]) * strides[ax], pts - (pc[:, ax] - lo) * strides[ax]
        grads.append((flat[up] - flat[down]) / den)
    norm = np.sqrt(sum(g * g for g in grads)) + np.float32(1e-6)
    unit = [g / norm for g in grads]
    div_c = np.zeros(len(corners), dtype=np.float32)
    for ax in range(3):
        lo = np.maximum(cc[:, ax] - 1, 0)
        hi = np.minimum(cc[:, ax] + 1, shape[ax] - 1)
        den = ((hi - lo) * sp[ax]).astype(np.float32)
        j_hi = lut[corners + (hi - cc[:, ax]) * strides[ax]]
        j_lo = lut[corners - (cc[:, ax] - lo) * strides[ax]]
        div_c = div_c + (unit[ax][j_hi] - unit[ax][j_lo]) / den
    div = np.zeros(len(pts), dtype=np.float32)
    div[lut[corners]] = div_c
    kappa = np.zeros(len(i0))
    n_axes = [np.zeros(len(i0)) for _ in range(3)]
    for sel, lin, w in zip(corner_sel, corner_lin, corner_w):
        j = lut[lin]
        kappa[sel] -= w * div[j]
        for ax in range(3):
            n_axes[ax][sel] += w * unit[ax][j]
    return kappa, np.stack(n_axes, 1)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 1.2, 1.2), (0.7, 0.9, 1.3)])
def test_compiled_curvature_sums_are_the_numpy_band_bits(spacing):
    from skimage.measure import marching_cubes

    rng = np.random.default_rng(7)
    f = ndimage.gaussian_filter(rng.random((14, 17, 12)), 1.5).astype(np.float32)
    verts = marching_cubes(f, level=float(np.median(f)))[0]  # float32, on cell edges
    shape = np.asarray(f.shape)
    extra = np.vstack(
        [
            rng.random((200, 3)) * (shape - 1),  # inside cells: eight corners
            np.floor(rng.random((50, 3)) * shape),  # on samples: one corner
            [[0.0, 0.0, 0.0]],
            shape - 1.0,  # the far corner (the clamped differences at both ends)
        ]
    )
    for pts in (verts, extra):
        kappa, normal = M.filters.curvature_sums(f, spacing, pts)
        k_ref, n_ref = _curvature_sums_numpy(f, np.asarray(spacing), pts)
        np.testing.assert_array_equal(kappa, k_ref)
        np.testing.assert_array_equal(normal, n_ref)
    with pytest.raises(ValueError, match="float32"):
        M.filters.curvature_sums(f.astype(np.float64), spacing, verts)


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_find_contours_gives_skimages_contours(seed):
    """The same points, contours and order as skimage, on blurred and binary random masks
    (their joins and closings in every order), with values exactly at the level."""
    from skimage.measure import find_contours

    rng = np.random.default_rng(seed)
    n_contours = 0
    for i in range(150):
        m = rng.random(rng.integers(2, 30, 2)) < rng.uniform(0.2, 0.8)
        sig = (0.0, 0.6, 1.0)[i % 3]
        img = ndimage.gaussian_filter(m.astype(np.float32), sig, mode="constant") if sig else m
        img = np.asarray(img, dtype=np.float32)
        if i % 5 == 0:
            img = np.round(img * 4) / 4  # samples exactly at 0.5
        ref = find_contours(img, 0.5)
        pts, lengths = M.filters.find_contours(img, 0.5)
        assert len(lengths) == len(ref)
        for got, want in zip(np.split(pts, np.cumsum(lengths)[:-1]), ref):
            np.testing.assert_array_equal(got, want)
        n_contours += len(ref)
    assert n_contours > 300  # (many contours, open and closed, were compared)
    with pytest.raises(ValueError, match="2D"):
        M.filters.find_contours(np.zeros((1, 5)), 0.5)


def _gradient_at_numpy(arr, idx):
    """Oracle: the band formulation in numpy (the engine's before the compiled kernel)."""
    shape = np.asarray(arr.shape)
    flat = arr.ravel()
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    i0 = np.floor(idx).astype(np.int64)
    w1 = (idx - i0).astype(arr.dtype)
    corner_bits = [np.array([(k >> 2) & 1, (k >> 1) & 1, k & 1]) for k in range(8)]
    corner_lin = []
    for bits in corner_bits:
        c = np.clip(i0 + bits, 0, shape - 1)
        corner_lin.append(c[:, 0] * strides[0] + c[:, 1] * strides[1] + c[:, 2])
    u = np.unique(np.concatenate(corner_lin))
    lut = np.empty(arr.size, dtype=np.int64)
    lut[u] = np.arange(len(u))
    uc = np.unravel_index(u, arr.shape)
    grad_u = []
    for ax in range(3):
        lo = np.maximum(uc[ax] - 1, 0)
        hi = np.minimum(uc[ax] + 1, shape[ax] - 1)
        up, down = u + (hi - uc[ax]) * strides[ax], u - (uc[ax] - lo) * strides[ax]
        grad_u.append((flat[up] - flat[down]) / (hi - lo).astype(arr.dtype))
    out = np.zeros((len(idx), 3), dtype=arr.dtype)
    for bits, lin in zip(corner_bits, corner_lin):
        w = _corner_weight(w1, bits)
        for ax in range(3):
            out[:, ax] += w * grad_u[ax][lut[lin]]
    return out


def test_compiled_gradient_at_is_the_numpy_band_bits():
    rng = np.random.default_rng(2)
    for _ in range(40):
        shape = rng.integers(2, 16, 3)
        arr = rng.normal(size=shape).astype(np.float32)
        idx = rng.uniform(-1.5, shape + 0.5, size=(300, 3))  # beyond the edges too
        idx[:60] = np.round(idx[:60])  # on samples: corners of zero weight
        np.testing.assert_array_equal(M._gradient_at(arr, idx), _gradient_at_numpy(arr, idx))
    with pytest.raises(ValueError, match="float32"):
        M.filters.gradient_at(arr.astype(np.float64), idx)


def test_gil_switch_interval_is_short_during_a_threaded_analysis_and_restored(monkeypatch):
    import sys

    seen = []
    star = M._star_volume_mm3

    def spy(*args):
        seen.append(sys.getswitchinterval())
        return star(*args)

    monkeypatch.setattr(M, "_star_volume_mm3", spy)
    tumor = M.sphere_image([30, 30, 14], [1.2, 1.2, 3.0], [-17, -18, -20], [0.3, 0.1, -0.2], 8.0)
    ablation = M.sphere_image([30, 30, 14], [1.2, 1.2, 3.0], [-17, -18, -20], [1.0, 0, 0], 11.0)
    before = sys.getswitchinterval()
    assert before > M.GIL_SWITCH_INTERVAL_S  # (Python's default 5 ms)
    M.analyze_margin(tumor, ablation, threads=2)
    M.analyze_margin(tumor, ablation, threads=1)
    assert seen == [M.GIL_SWITCH_INTERVAL_S, before]
    assert sys.getswitchinterval() == before
    with pytest.raises(M.AblationError):  # restored after a failure too
        M.analyze_margin(tumor, tumor * 0, threads=2)
    assert sys.getswitchinterval() == before
    # analyses side by side in threads: the last one out restores the interval
    runs = [
        threading.Thread(target=M.analyze_margin, args=(tumor, ablation), kwargs={"threads": 2})
        for _ in range(3)
    ]
    for r in runs:
        r.start()
    for r in runs:
        r.join()
    assert seen[2:] == [M.GIL_SWITCH_INTERVAL_S] * 3
    assert sys.getswitchinterval() == before


def _window_reduce(x, w, ax, fn, fill):
    """Oracle: ``out[i] = fn(x[i], ..., x[i + w - 1])`` along ``ax`` (``fill`` beyond the end)."""
    if w <= 1:
        return x
    pad = [(0, 0)] * 3
    pad[ax] = (0, w - 1)
    xp = np.pad(x, pad, constant_values=fill)
    out = x.copy()
    for k in range(1, w):
        fn(out, np.take(xp, np.arange(k, k + x.shape[ax]), axis=ax), out=out)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_bounds_are_the_running_extremes_over_windows(dtype):
    """The compiled window extremes give the numpy formulation's bounds (axis by axis)."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        arr = np.round(rng.normal(size=rng.integers(3, 20, 3)), 1).astype(dtype)  # ties
        bb = M._BoxBounds(arr)
        shape = np.asarray(arr.shape)
        lo = rng.integers(0, shape, size=(60, 3))
        hi = np.minimum(lo + rng.integers(0, 6, size=(60, 3)), shape - 1)
        got_lo, got_hi = bb.query(lo, hi)
        clo, chi = lo // bb.c, hi // bb.c
        w = (chi - clo).max(axis=0) + 1
        mn, mx = bb.lo, bb.hi
        for ax in range(3):
            mn = _window_reduce(mn, int(w[ax]), ax, np.minimum, np.inf)
            mx = _window_reduce(mx, int(w[ax]), ax, np.maximum, -np.inf)
        np.testing.assert_array_equal(got_lo, mn[tuple(clo.T)])
        np.testing.assert_array_equal(got_hi, mx[tuple(clo.T)])
        assert got_lo.dtype == got_hi.dtype == arr.dtype
        # and they bound the array over each box
        for i in range(0, 60, 7):
            box = arr[tuple(slice(a, b + 1) for a, b in zip(lo[i], hi[i]))]
            assert got_lo[i] <= box.min() and got_hi[i] >= box.max()
    assert bb.query(np.zeros((0, 3), int), np.zeros((0, 3), int))[0].shape == (0,)


@pytest.mark.parametrize(("spacing", "runs"), [((1.2, 1.2, 3.0), False), ((1.0, 1.0, 1.0), True)])
def test_diagonal_pole_caps_run_on_near_isotropic_grids_only(monkeypatch, spacing, runs):
    """The diagonal caps (filters.diagonal_caps) are part of the anti-aliasing of
    near-isotropic masks: across thick slices (the MRI speed case's grid) the shape-based
    reconstruction never calls them, so they add nothing to that case's time."""
    calls = []
    real = M.filters.diagonal_caps

    def counted(solid, *args):
        calls.append(solid.shape)
        return real(solid, *args)

    monkeypatch.setattr(M.filters, "diagonal_caps", counted)
    size = [40, 40, 24] if runs else [32, 32, 14]
    origin = [-0.5 * n * h + 0.3 for n, h in zip(size, spacing)]
    tumor = M.sphere_image(size, spacing, origin, [0.4, 0.2, 0.1], 6.0)
    ablation = M.sphere_image(size, spacing, origin, [1.0, 0, 0], 9.0)
    res = M.analyze_margin(tumor, ablation, None, 2.0, threads=2)
    assert np.isfinite(res.min_margin_mm)
    if runs:  # both reconstructions (and the diameter's surface)
        assert len(calls) >= 2
    else:
        assert calls == []


def _random_slices(rng, n):
    """Blurred random float32 slices (the thick-slice sections' anti-aliased masks)."""
    for i in range(n):
        m = rng.random(rng.integers(3, 45, 2)) < rng.uniform(0.2, 0.8)
        img = ndimage.gaussian_filter(m.astype(np.float32), (0.0, 0.8, 1.3)[i % 3], mode="constant")
        img = np.asarray(img, dtype=np.float32)
        if i % 4 == 0:
            img = np.round(img * 4) / 4  # samples exactly at 0.5
        yield img


@pytest.mark.parametrize("spacing", [(1.2, 1.2), (0.7, 1.3)])
def test_compiled_contour_segments_are_the_array_form(spacing):
    # _slice_sdf's segments, midpoints (the k-d tree's points), lengths and the shoelace
    # terms: the bits of the numpy formulation it used before (random contours, open and closed)
    rng = np.random.default_rng(4)
    sy, sx = spacing
    n_seg = 0
    for img in _random_slices(rng, 120):
        pts, lengths = M.filters.find_contours(img, 0.5)
        ends = np.cumsum(lengths)
        not_last, not_first = np.ones(len(pts), bool), np.ones(len(pts), bool)
        not_last[ends - 1] = False
        not_first[ends - lengths] = False
        a_ref, b_ref = pts[not_last] * (sy, sx), pts[not_first] * (sy, sx)
        a, b, mid, seg_len, cross = M.filters.contour_segments(pts, lengths, spacing)
        np.testing.assert_array_equal(a, a_ref)
        np.testing.assert_array_equal(b, b_ref)
        np.testing.assert_array_equal(mid, 0.5 * (a_ref + b_ref))
        np.testing.assert_array_equal(seg_len, np.linalg.norm(b_ref - a_ref, axis=1))
        np.testing.assert_array_equal(cross, a_ref[:, 0] * b_ref[:, 1] - b_ref[:, 0] * a_ref[:, 1])
        n_seg += len(a)
    assert n_seg > 2000
    a, *_ = M.filters.contour_segments(np.zeros((1, 2)), np.array([1]), spacing)
    assert a.shape == (0, 2)  # a contour of one point has no segment


@pytest.mark.parametrize("spacing", [(1.2, 1.2), (0.7, 1.3)])
def test_compiled_slice_band_and_signed_band_are_the_array_form(spacing):
    # _slice_sdf's pixel-centre signed distances, its band and the signed write with the
    # offset: the bits of the numpy formulation (np.where, argwhere, the masked assignment)
    from napari_ablation.core.filters import signed_band, slice_band, slice_edt

    rng = np.random.default_rng(5)
    sy, sx = spacing
    half = 0.25 * (sy + sx)
    n_band = 0
    for img in _random_slices(rng, 120):
        inside = img >= 0.5
        band_mm = rng.uniform(0.5, 6.0)
        got = slice_band(img, spacing, band_mm)
        if inside.all() or not inside.any():
            assert got is None
            continue
        d = slice_edt(inside, spacing)
        approx = np.where(inside, d - half, -(d - half))
        band = np.abs(approx) <= band_mm
        out, p, where = got
        np.testing.assert_array_equal(out, approx.astype(np.float32))
        np.testing.assert_array_equal(p, np.argwhere(band) * (sy, sx))
        np.testing.assert_array_equal(where, np.flatnonzero(band))
        dist = rng.random(len(where)) * band_mm
        offset = rng.uniform(-0.6, 0.6)
        ref = approx.astype(np.float32)
        ref[band] = np.where(inside[band], dist, -dist)
        ref = ref + np.float32(offset)
        res = signed_band(out, img, where, dist, offset)
        assert res is out and res.dtype == np.float32
        np.testing.assert_array_equal(res, ref)
        n_band += len(where)
    assert n_band > 5000
    assert slice_band(np.ones((3, 4), np.float32), spacing, 2.0) is None
    with pytest.raises(ValueError, match="float32"):
        signed_band(np.zeros((3, 4)), np.zeros((3, 4), np.float32), [], [], 0.0)


def _pieces_end_by_labels(crop, filled):
    """Oracle: _branch_ends' labelled formulation (is any piece ending between filled slices?)."""
    nsl = len(filled)
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = True
    lab, n = ndimage.label(crop, structure=in_plane)
    for s in (-1, 1):
        cur = slice(max(-s, 0), nsl - max(s, 0))
        nxt = slice(max(s, 0), nsl - max(-s, 0))
        ending = np.zeros(n + 1, dtype=bool)
        has_next = np.zeros(nsl, dtype=bool)
        has_next[cur] = filled[nxt]
        ending[np.unique(lab[has_next])] = True
        ending[lab[cur][crop[nxt] != 0]] = False
        ending[0] = False
        if ending.any():
            return True
    return False


def test_compiled_branch_end_check_agrees_with_the_labelled_pieces():
    # _branch_ends skips its labelling when no piece ends between two filled slices: the
    # compiled check says so exactly when the labelled formulation finds no ending piece
    rng = np.random.default_rng(6)
    seen = {True: 0, False: 0}
    for _i in range(300):
        shape = (rng.integers(1, 7), *rng.integers(2, 25, 2))
        blob = ndimage.gaussian_filter(rng.random(shape), (0.0, *rng.uniform(0.5, 3.0, 2)))
        crop = (blob > np.quantile(blob, rng.uniform(0.3, 0.9))).astype(np.uint8)
        crop[rng.random(len(crop)) < 0.2] = 0  # some empty slices
        filled = crop.reshape(len(crop), -1).any(axis=1)
        go_on = M.filters.pieces_go_on(crop, filled)
        assert go_on == (not _pieces_end_by_labels(crop, filled))
        assert M.filters.pieces_go_on(crop.astype(bool), filled) == go_on
        seen[go_on] += 1
    assert min(seen.values()) > 30  # both answers were compared
    # a lobe ending between two filled slices: caps from _branch_ends, none without it
    crop = np.zeros((3, 12, 20), np.uint8)
    crop[:, 3:9, 2:8] = 1
    crop[0, 3:9, 12:18] = 1  # on slice 0 only, beside the lobe that goes on
    filled = np.ones(3, bool)
    assert not M.filters.pieces_go_on(crop, filled)
    pos = np.arange(7) / 3
    caps = M._branch_ends(crop, filled, (1.0, 1.0), 3.0, pos, 0.8, 4.0, [])
    assert len(caps) == 1
    crop[0, 3:9, 12:18] = 0
    assert M.filters.pieces_go_on(crop, filled)
    assert M._branch_ends(crop, filled, (1.0, 1.0), 3.0, pos, 0.8, 4.0, []) == []


@pytest.mark.parametrize("spacing", [(1.2, 1.2), (0.7, 1.3)])
def test_point_covariance_is_np_cov(spacing):
    # the poles' section shapes (_cap_coverage): np.cov's operations without its checks, the
    # same bits on pixel positions and on scattered points
    rng = np.random.default_rng(7)
    for i in range(400):
        n = int(rng.integers(2, 300))
        pts = rng.integers(0, 60, (n, 2)) * spacing if i % 2 else rng.normal(size=(n, 2)) * 30
        np.testing.assert_array_equal(M._point_cov(pts), np.cov(pts.T))
