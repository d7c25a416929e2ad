"""Margin accuracy on random analytic spheres and ellipsoids, ours against the naive voxel method.

    python benchmarks/bench_accuracy.py            # 40 cases per grid (fixed seed), a few minutes
    python benchmarks/bench_accuracy.py --quick    # 8 cases per grid
    python benchmarks/bench_accuracy.py --n 100 --seed 3
    python benchmarks/bench_accuracy.py --volume-limit --n 30   # what small balls' masks hold
    python benchmarks/bench_accuracy.py --star-check --n 16 --seed 202  # the star surface used

Cases (issue 9): tumor and ablation zone each a sphere or a randomly rotated ellipsoid (none
axis-aligned), the ablation centre offset in a random direction; a random rigid pre -> post
transform (rotation up to 17.5 deg about a random axis, translation up to 12.5 mm); the post
grid oblique by 2-6 deg; random sub-voxel phases of both grids; true MTM between -4 and +8 mm.
Masks are binary (voxel centre inside), like users' masks.

Truth: the minimum over the tumor surface (40 000 samples, then a local optimisation) of the
exact signed point-to-ellipsoid distance (``core.phantoms.ellipsoid_min_margin``); class
volumes of sphere pairs from the exact sphere-sphere lens volumes.

Printed per grid, for napari-ablation and for the naive method (the ablation mask resampled
onto the pre grid, signed voxel-centre EDT, minimum over tumor voxel centres, classes from
the same field): mean signed error (bias), p90 of |error|, the worst |error| split by the
true MTM direction (within 45 deg of the slice plane, or steeper), the stated resolution
limit against the 95th percentile of the actual error, the worst class-volume error in %
of the tumor volume (sphere pairs, threshold 5 mm), and the worst error of the tumor's voxel
volume and of its reconstructed volume (the class volumes are fractions of the latter).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from napari_ablation.core import phantoms as P
from napari_ablation.core.margin import analyze_margin, sphere_class_volumes_ml

GRIDS = {  # spacing (x, y, z) mm -> targets: |bias|, worst in-plane, worst class-volume %
    (1.0, 1.0, 1.0): (0.10, 0.25, 1.0),
    (1.2, 1.2, 3.0): (0.15, 0.5, 1.5),
    (0.8, 0.8, 5.0): (0.30, 1.0, 2.0),
}
THRESHOLD = 5.0
CLASSES = ("covered_with_margin", "insufficient_margin", "uncovered")


def random_rotation(rng, max_deg: float, min_deg: float = 0.0) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * math.radians(rng.uniform(min_deg, max_deg))).as_matrix()


def grid_image(shape_zyx, spacing_xyz, origin, direction, arr) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing([float(s) for s in spacing_xyz])
    img.SetOrigin([float(o) for o in origin])
    img.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return img


def render(ell, spacing_xyz, direction, centre_grid, half_extent, rng) -> sitk.Image:
    """Binary mask of ellipsoid ``ell`` on a grid of ``direction`` around ``centre_grid``
    (random phase)."""
    sp = np.asarray(spacing_xyz, float)
    size_xyz = np.ceil(2 * half_extent / sp).astype(int) + 1
    D = np.asarray(direction, float)
    origin = centre_grid - D @ (sp * (size_xyz - 1) / 2) + D @ (rng.uniform(-0.5, 0.5, 3) * sp)
    M = (D * sp[None, :])[:, ::-1]  # (z, y, x) index step -> LPS
    arr = P.ellipsoid_mask(tuple(size_xyz[::-1]), M, origin, *ell)
    return grid_image(size_xyz[::-1], sp, origin, D, arr)


def class_fractions(vol, truth) -> dict:
    """Each class's measured and exact fraction of the tumor volume (for --dump)."""
    exact = sphere_class_volumes_ml(truth["r_t"], truth["r_a"], truth["d"], THRESHOLD)
    total = sum(vol.values())
    return {k: (vol[k] / total, exact[k] / truth["tumor_ml"]) for k in CLASSES}


def make_case(rng, spacing_xyz):
    """One random case: (tumor image, ablation image, T, truth dict)."""
    while True:
        sphere = rng.random() < 0.5
        r_t = rng.uniform(6, 15)
        if sphere:
            e_t, R_t = np.full(3, r_t), np.eye(3)
            r_a = r_t + rng.uniform(-3, 12)
            e_a, R_a = np.full(3, r_a), np.eye(3)
        else:
            e_t = r_t * rng.uniform(0.7, 1.3, 3)
            R_t = random_rotation(rng, 180, 20)
            e_a = (e_t.mean() + rng.uniform(-2, 12)) * rng.uniform(0.85, 1.2, 3)
            R_a = random_rotation(rng, 180, 20)
        if e_a.min() < 4:
            continue
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        off = rng.uniform(0, 5) * u
        c_t = rng.uniform(-20, 20, 3)
        c_a = c_t + off
        mtm, p, direction = P.ellipsoid_min_margin((c_t, e_t, R_t), (c_a, e_a, R_a))
        if -4 <= mtm <= 8:
            break
    R_T = random_rotation(rng, 17.5)
    t = rng.normal(size=3)
    t *= rng.uniform(0, 12.5) / np.linalg.norm(t)
    T = sitk.Euler3DTransform()
    T.SetCenter(c_t.tolist())
    T.SetMatrix(R_T.ravel().tolist())
    T.SetTranslation(t.tolist())
    A = np.asarray(T.GetMatrix()).reshape(3, 3)
    b = np.asarray(T.TransformPoint([0.0, 0.0, 0.0]))
    half = max(e_t.max(), e_a.max() + np.linalg.norm(off)) + 8.0
    tumor = render((c_t, e_t, R_t), spacing_xyz, np.eye(3), c_t, half, rng)
    ell_post = (A @ c_a + b, e_a, A @ R_a)
    ablation = render(ell_post, spacing_xyz, random_rotation(rng, 6, 2), A @ c_t + b, half, rng)
    truth = {
        "mtm": mtm,
        "point": p,
        "direction": direction,
        "sphere": sphere,
        "r_t": float(e_t[0]),
        "r_a": float(e_a[0]),
        "d": float(np.linalg.norm(off)),
        "tumor_ml": 4 / 3 * math.pi * float(np.prod(e_t)) / 1000,
        "ellipsoids": ((c_t, e_t, R_t), (c_a, e_a, R_a)),  # tumor, ablation (pre space)
    }
    return tumor, ablation, T, truth


def naive(tumor, ablation, T):
    """Ablation resampled onto the pre grid (nearest), signed voxel-centre EDT (positive inside)."""
    ab_pre = sitk.Resample(ablation, tumor, T, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    a = sitk.GetArrayViewFromImage(ab_pre) > 0
    sp = tumor.GetSpacing()[::-1]
    sdf = np.where(
        a,
        ndimage.distance_transform_edt(a, sampling=sp),
        -ndimage.distance_transform_edt(~a, sampling=sp),
    )
    m = sdf[sitk.GetArrayViewFromImage(tumor) > 0]
    vox = float(np.prod(tumor.GetSpacing())) / 1000
    vol = {
        "covered_with_margin": np.count_nonzero(m >= THRESHOLD) * vox,
        "insufficient_margin": np.count_nonzero((m >= 0) & (m < THRESHOLD)) * vox,
        "uncovered": np.count_nonzero(m < 0) * vox,
    }
    return float(m.min()), vol


def class_error_pct(vol, truth) -> float:
    """Worst class-volume error in % of the true tumor volume."""
    exact = sphere_class_volumes_ml(truth["r_t"], truth["r_a"], truth["d"], THRESHOLD)
    return max(abs(vol[k] - exact[k]) for k in CLASSES) / truth["tumor_ml"] * 100


def class_fraction_error_pct(vol, truth) -> float:
    """Worst class-fraction error in percentage points (the tumor's own volume error removed)."""
    exact = sphere_class_volumes_ml(truth["r_t"], truth["r_a"], truth["d"], THRESHOLD)
    total = sum(vol.values())
    return max(abs(vol[k] / total - exact[k] / truth["tumor_ml"]) for k in CLASSES) * 100


def run(n: int, seed: int, dump: dict | None = None, grids=None) -> list[dict]:
    rows = []
    for i_grid, (spacing, targets) in enumerate(GRIDS.items()):
        if grids and i_grid not in grids:
            continue
        rng = np.random.default_rng(seed)
        rec = {"ours": [], "naive": []}
        t_ours = []
        for _ in range(n):
            tumor, ablation, T, truth = make_case(rng, spacing)
            t0 = time.perf_counter()
            res = analyze_margin(tumor, ablation, T, THRESHOLD)
            t_ours.append(time.perf_counter() - t0)
            steep = abs(truth["direction"][2]) > math.sin(math.radians(45))
            cv = class_error_pct(res.volume_ml, truth) if truth["sphere"] else None
            cf = class_fraction_error_pct(res.volume_ml, truth) if truth["sphere"] else None
            rec["ours"].append(
                {
                    "dir_true": truth["direction"].tolist(),
                    "dir": res.min_margin_direction_lps.tolist(),
                    "sphere": truth["sphere"],
                    "err": res.min_margin_mm - truth["mtm"],
                    "steep": steep,
                    "cv": cv,
                    "cf": cf,
                    "limit": res.min_margin_uncertainty_mm,
                    "case": len(rec["ours"]),
                    "mtm": truth["mtm"],
                    "r_t": truth["r_t"],
                    "r_a": truth["r_a"],
                    "d": truth["d"],
                    "tumor_ml": truth["tumor_ml"],
                    "recon_ml": res.tumor_reconstructed_volume_ml,
                    "reconstruction": res.tumor_reconstruction,
                    "voxel_ml": res.tumor_volume_ml,
                    "cf_by_class": class_fractions(res.volume_ml, truth)
                    if truth["sphere"]
                    else None,
                    "warnings": list(res.warnings),
                }
            )
            m_nv, vol_nv = naive(tumor, ablation, T)
            rec["naive"].append(
                {
                    "err": m_nv - truth["mtm"],
                    "steep": steep,
                    "cv": class_error_pct(vol_nv, truth) if truth["sphere"] else None,
                    "cf": class_fraction_error_pct(vol_nv, truth) if truth["sphere"] else None,
                    "limit": None,
                }
            )
        for method, rs in rec.items():
            e = np.array([r["err"] for r in rs])
            st = np.array([r["steep"] for r in rs])
            cv = [r["cv"] for r in rs if r["cv"] is not None]
            cf = [r["cf"] for r in rs if r["cf"] is not None]
            row = {
                "grid": spacing,
                "method": method,
                "n": len(e),
                "bias": float(e.mean()),
                "p90": float(np.percentile(np.abs(e), 90)),
                "worst_in": float(np.abs(e[~st]).max()) if (~st).any() else float("nan"),
                "worst_steep": float(np.abs(e[st]).max()) if st.any() else float("nan"),
                "n_steep": int(st.sum()),
                "worst_cv": max(cv) if cv else float("nan"),
                "worst_cf": max(cf) if cf else float("nan"),
                "targets": targets,
            }
            if method == "ours":
                vx = [100 * (r["voxel_ml"] / r["tumor_ml"] - 1) for r in rs]
                rc = [100 * (r["recon_ml"] / r["tumor_ml"] - 1) for r in rs]
                row.update(
                    worst_voxel_vol=float(np.max(np.abs(vx))),
                    worst_recon_vol=float(np.max(np.abs(rc))),
                    n_star=sum("star" in r["reconstruction"] for r in rs),
                    n_star_spheres=sum("star" in r["reconstruction"] for r in rs if r["sphere"]),
                    n_spheres=sum(r["sphere"] for r in rs),
                )
            if method == "ours":
                lim = np.array([r["limit"] for r in rs])
                row.update(
                    p95_steep=float(np.percentile(np.abs(e[st]), 95)) if st.any() else float("nan"),
                    limit_steep=float(np.median(lim[st])) if st.any() else float("nan"),
                    p95_in=float(np.percentile(np.abs(e[~st]), 95))
                    if (~st).any()
                    else float("nan"),
                    limit_in=float(np.median(lim[~st])) if (~st).any() else float("nan"),
                    inside_limit=float(np.mean(np.abs(e) <= lim)),
                    steep_inside=float(np.mean(np.abs(e[st]) <= lim[st]))
                    if st.any()
                    else float("nan"),
                    time_s=float(np.median(t_ours)),
                )
            rows.append(row)
        if dump is not None:
            dump[" x ".join(f"{v:g}" for v in spacing)] = rec["ours"]
    return rows


def print_table(rows) -> None:
    hdr = (
        f"{'grid (mm)':<14}{'method':<8}{'n':>4}{'bias':>8}{'p90':>7}"
        f"{'worst<=45':>10}{'worst>45':>9}"
        f"{'(n>45)':>7}{'classvol%':>10}{'classfrac%':>11}   targets: |bias|, worst<=45, classvol%"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        g = " x ".join(f"{v:g}" for v in r["grid"])
        tg = r["targets"] if r["method"] == "ours" else ""
        print(
            f"{g:<14}{r['method']:<8}{r['n']:>4}{r['bias']:>+8.2f}{r['p90']:>7.2f}"
            f"{r['worst_in']:>10.2f}{r['worst_steep']:>9.2f}{r['n_steep']:>7}"
            f"{r['worst_cv']:>10.2f}{r['worst_cf']:>11.2f}   {tg}"
        )
    print()
    print("tumor volume, worst |error| (% of the true volume), napari-ablation: the segmentation's")
    print("voxel volume (tumor_volume_ml) and the reconstruction (tumor_reconstructed_volume_ml,")
    print("which the class volumes are fractions of)")
    for r in rows:
        if r["method"] == "ours":
            g = " x ".join(f"{v:g}" for v in r["grid"])
            print(
                f"{g:<14}voxel {r['worst_voxel_vol']:5.2f}"
                f"   reconstructed {r['worst_recon_vol']:5.2f}"
                f"   (smooth star surface: {r['n_star']} of {r['n']} cases,"
                f" {r['n_star_spheres']} of {r['n_spheres']} spheres)"
            )
    print()
    print("stated resolution limit (median) vs actual |error| (p95), napari-ablation")
    hdr = (
        f"{'grid (mm)':<14}{'limit<=45':>10}{'p95<=45':>9}{'limit>45':>10}{'p95>45':>8}"
        f"{'truth in limit (>45 / all)':>28}{'time s':>8}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if r["method"] != "ours":
            continue
        g = " x ".join(f"{v:g}" for v in r["grid"])
        print(
            f"{g:<14}{r['limit_in']:>10.2f}{r['p95_in']:>9.2f}"
            f"{r['limit_steep']:>10.2f}{r['p95_steep']:>8.2f}"
            f"{100 * r['steep_inside']:>19.0f} % / {100 * r['inside_limit']:>3.0f} %"
            f"{r['time_s']:>8.3f}"
        )


def consistent_ball_volumes(img, centre, r_true) -> tuple[float, float]:
    """Smallest and largest volume (mm^3) of the balls that reproduce a binary mask exactly.

    Every inside voxel centre within the ball, every outside one beyond it: with
    u = R^2 - |c|^2 the constraints are linear in (c, u), a polytope; R^2 = u + |c|^2 is
    minimised and maximised over it by sequential linear programs from random vertices.
    Whatever estimator is used, even one that knows the object is a ball, the mask cannot
    tell these volumes apart.
    """
    from scipy.optimize import linprog

    arr = sitk.GetArrayFromImage(img).astype(bool)
    sp, o = np.asarray(img.GetSpacing()), np.asarray(img.GetOrigin())
    edge_in = arr & ~ndimage.binary_erosion(arr)
    edge_out = ~arr & ndimage.binary_dilation(arr)
    p_in = o + np.argwhere(edge_in)[:, ::-1] * sp - centre
    p_out = o + np.argwhere(edge_out)[:, ::-1] * sp - centre
    A = np.vstack([np.c_[-2 * p_in, -np.ones(len(p_in))], np.c_[2 * p_out, np.ones(len(p_out))]])
    b = np.r_[-(p_in**2).sum(1), (p_out**2).sum(1) - 1e-9]
    bounds = [(-3, 3)] * 3 + [(None, None)]
    rng = np.random.default_rng(0)
    vals = []
    for _ in range(8):
        lp = linprog(rng.normal(size=4), A_ub=A, b_ub=b, bounds=bounds, method="highs")
        if lp.status != 0:
            continue
        for sgn in (1.0, -1.0):
            x = lp.x
            for _ in range(30):
                nxt = linprog(
                    -sgn * np.r_[2 * x[:3], 1.0], A_ub=A, b_ub=b, bounds=bounds, method="highs"
                )
                if nxt.status != 0 or np.allclose(nxt.x, x):
                    break
                x = nxt.x
            vals.append(x[3] + x[:3] @ x[:3])
    if not vals:
        return float("nan"), float("nan")
    return tuple(4 / 3 * math.pi * v**1.5 for v in (min(vals), max(vals)))


def volume_limit(n: int, seed: int) -> None:
    """What the masks of small balls hold about their volume, per grid.

    Random balls of radius 6-9 mm at random phase (as the benchmark's small tumors): the
    error of the voxel count and of the reconstructed volume, and the range of volumes of
    all balls consistent with the mask (the best any estimator can do, knowing the shape).
    """
    from napari_ablation.core.margin import analyze_margin

    print(
        f"{'grid (mm)':<14}{'voxel: mean/sd/worst %':>26}{'reconstructed':>24}"
        f"{'consistent balls: half-range median/max %':>44}"
    )
    for spacing in GRIDS:
        rng = np.random.default_rng(seed)
        vx, rc, half = [], [], []
        for _ in range(n):
            r = rng.uniform(6.0, 9.0)
            c = rng.uniform(-20, 20, 3)
            ell = (c, np.full(3, r), np.eye(3))
            img = render(ell, spacing, np.eye(3), c, r + 8.0, rng)
            big = render((c, np.full(3, r + 6.0), np.eye(3)), spacing, np.eye(3), c, r + 14, rng)
            res = analyze_margin(img, big, None, THRESHOLD, with_shells=False)
            v = 4 / 3 * math.pi * r**3
            vx.append(100 * (res.tumor_volume_ml * 1000 / v - 1))
            rc.append(100 * (res.tumor_reconstructed_volume_ml * 1000 / v - 1))
            lo, hi = consistent_ball_volumes(img, c, r)
            half.append(50 * (hi - lo) / v)
        vx, rc, half = (np.asarray(a) for a in (vx, rc, half))
        g = " x ".join(f"{v:g}" for v in spacing)
        print(
            f"{g:<14}{vx.mean():>+10.2f} / {vx.std():.2f} / {np.abs(vx).max():.2f}"
            f"{rc.mean():>+10.2f} / {rc.std():.2f} / {np.abs(rc).max():.2f}"
            f"{np.median(half):>28.2f} / {half.max():.2f}"
        )


def star_check(n: int, seed: int) -> None:
    """The tumor volume on random balls, ellipsoids and irregular lesions, per grid.

    Balls of radius 6-9 mm, ellipsoids of mean semi-axis 6-15 mm (axes 0.7-1.3x, randomly
    rotated), irregular lesions of 12-30 mm (the synthetic cases' tumors: an ellipsoid whose
    radius is modulated by smooth waves); random phases. Truth: the exact volume (the
    lesions' by quadrature over 40 000 directions). Printed (% of the true volume, mean / sd /
    worst): the voxel count, the reconstruction without the smooth star surface (the sections
    across thick slices), the volume reported (tumor_reconstructed_volume_ml), and how many
    cases used the star surface.
    """
    from napari_ablation.core import margin as M
    from napari_ablation.core import synthetic
    from napari_ablation.core.samples import Blob

    print(
        f"{'shape':<10}{'grid (mm)':<14}{'voxel count':>22}{'without star':>22}"
        f"{'reported':>22}{'star used':>11}"
    )
    for kind in ("ball", "ellipsoid", "irregular"):
        for spacing in GRIDS:
            rng = np.random.default_rng(seed)
            err = {"count": [], "sections": [], "reported": []}
            n_star = 0
            for _ in range(n):
                if kind == "irregular":
                    d = rng.uniform(12, 30)
                    frame = Rotation.random(random_state=rng).as_matrix()
                    shape = np.array([rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0), 1.0])
                    blob = Blob.random(
                        rng,
                        np.zeros(3),
                        shape * d / 2,
                        frame,
                        amp=rng.uniform(0.025, 0.06),
                        n=5,
                        freq=(1.0, 3.0),
                    )
                    exact = synthetic.blob_volume_centroid(blob)[0]
                    half = d / 2 * 1.3 + 4
                else:
                    if kind == "ball":
                        e, R = np.full(3, rng.uniform(6.0, 9.0)), np.eye(3)
                    else:
                        e = rng.uniform(6, 15) * rng.uniform(0.7, 1.3, 3)
                        R = random_rotation(rng, 180, 20)
                    blob = Blob(np.zeros(3), e, R)
                    exact = 4 / 3 * math.pi * float(np.prod(e))
                    half = float(e.max()) + 4
                sp = np.asarray(spacing, float)
                size = np.ceil(2 * half / sp).astype(int) + 1
                origin = -sp * (size - 1) / 2 + rng.uniform(-0.5, 0.5, 3) * sp
                zyx = np.indices(tuple(size[::-1])).reshape(3, -1)
                x, y, z = (origin[i] + zyx[2 - i] * sp[i] for i in range(3))
                arr = (blob.rho(x, y, z) <= 1.0).reshape(tuple(size[::-1]))
                img = grid_image(size[::-1], sp, origin, np.eye(3), arr)
                src = M._MaskSource(img, "tumor", None)
                fld = M._smoothed_field(src, src.box, M._Grid(img), M.DEFAULT_SMOOTH_VOX, True)
                n_vox = int(arr.sum())
                vol, how = M._tumor_reconstructed_ml(fld, M._star_volume_mm3(arr, sp[::-1]), n_vox)
                n_star += "star" in how
                err["count"].append(100 * (n_vox * np.prod(sp) / exact - 1))
                err["sections"].append(100 * (M._reconstructed_ml(fld, n_vox) * 1000 / exact - 1))
                err["reported"].append(100 * (vol * 1000 / exact - 1))
            g = " x ".join(f"{v:g}" for v in spacing)
            cols = "".join(
                f"{np.mean(e):>+10.2f} / {np.std(e):.2f} / {np.max(np.abs(e)):.2f}"
                for e in map(np.asarray, err.values())
            )
            print(f"{kind:<10}{g:<14}{cols}{n_star:>7} / {n}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 cases per grid")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--grid", type=int, action="append", help="only these grids (0, 1, 2)")
    ap.add_argument("--dump", metavar="JSON", help="write every case's error, directions and limit")
    ap.add_argument(
        "--volume-limit",
        action="store_true",
        help="what the masks of 6-9 mm balls hold about their volume (count, reconstruction, "
        "and the range of all balls consistent with the mask)",
    )
    ap.add_argument(
        "--star-check",
        action="store_true",
        help="the tumor volume on random balls, ellipsoids and irregular lesions (the smooth "
        "star surface where it is used, against the count and the sections)",
    )
    args = ap.parse_args()
    n = 8 if args.quick else args.n
    if args.star_check:
        star_check(n, args.seed)
        return 0
    if args.volume_limit:
        volume_limit(n, args.seed)
        return 0
    t0 = time.perf_counter()
    dump = {} if args.dump else None
    print_table(run(n, args.seed, dump, args.grid))
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(dump, f, default=lambda o: o.item())
    print(f"\n{n} cases per grid, seed {args.seed}, {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
