"""Small tumors across thick slices: is the truth inside the stated resolution limit?

    python benchmarks/bench_limit_sweep.py               # 5 and 3 mm slices, 60 cases each
    python benchmarks/bench_limit_sweep.py --n 20 --seed 4 --dump out.json
    python benchmarks/bench_limit_sweep.py --terms --n 40 --seed 9   # the limit's terms

Cases: a tumor ellipsoid of in-plane semi-axes 2.5-6 mm and a third one along the slices of
2.5-6 mm (2.5-8 mm on 5 mm slices: 1.6 slices at most), randomly turned about the slice axis
and tilted up to 20 deg from it, at a random sub-voxel phase, so that it lies on one to four
slices; the ablation zone a ball whose centre lies 20 mm from the tumor's, in a direction
within 30 deg of -z, its radius chosen for a true MTM of about 2 mm (steep: the MTM at the
tumor's cap across the slices). The two masks share the grid (no transform). Truth: the exact
minimum of the signed point-to-ellipsoid distance (``core.phantoms.ellipsoid_min_margin``).

Printed per grid and per number of slices the tumor lies on: the cases, the worst |error|,
the stated limit (min / median / max), the largest |error| / limit, and the share of cases
with the truth inside the limit; then every case outside its limit.

``--terms``: the cases of ``bench_accuracy.py`` (same seed, same order) on the two thick grids,
and for each case with a steep true MTM direction (over 45 deg from the slice plane) each
mask's terms of the limit at the MTM point (``core.margin._surface_error_terms``: in-plane
pixels, refined rows, caps, departure) against that mask's own actual error there: the exact
signed distance from the tumor's MTM point to the true tumor, and from its closest ablation
point to the true ablation zone (what each mask's term is meant to cover).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from napari_ablation.core import margin as M
from napari_ablation.core import phantoms as P
from napari_ablation.core.margin import analyze_margin

GRIDS = ((0.8, 0.8, 5.0), (1.2, 1.2, 3.0))  # spacing (x, y, z) mm
SEMI_AXES_MM = (2.5, 6.0)
CENTRE_DISTANCE_MM = 20.0
MARGIN_MM = 2.0


def _image(arr: np.ndarray, spacing, origin) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in origin])
    return img


def make_case(rng, spacing):
    """One case: (tumor image, ablation image, truth dict)."""
    sp = np.asarray(spacing, float)
    # the third semi-axis lies along the slices (before the tilt): up to 1.6 slices on thick
    # ones, so that 5 mm slices see three-slice tumors too
    e_t = rng.uniform(*SEMI_AXES_MM, 3)
    e_t[2] = rng.uniform(SEMI_AXES_MM[0], max(SEMI_AXES_MM[1], 1.6 * sp[2]))
    turn = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True)
    tilt_axis = rng.normal(size=3) * (1, 1, 0)
    tilt_axis /= np.linalg.norm(tilt_axis)
    tilt = Rotation.from_rotvec(tilt_axis * math.radians(rng.uniform(0, 20)))
    R_t = (tilt * turn).as_matrix()
    c_t = rng.uniform(-0.5, 0.5, 3) * sp
    u = np.array([0.0, 0.0, -1.0])
    off_axis = rng.normal(size=3) * (1, 1, 0)
    off_axis /= np.linalg.norm(off_axis)
    u = Rotation.from_rotvec(off_axis * math.radians(rng.uniform(0, 30))).apply(u)
    c_a = c_t + CENTRE_DISTANCE_MM * u
    # the radius for an MTM of MARGIN_MM: the farthest tumor point from c_a, plus the margin
    probe = (c_a, np.full(3, 100.0), np.eye(3))
    far = 100.0 - P.ellipsoid_min_margin((c_t, e_t, R_t), probe)[0]
    r_a = far + MARGIN_MM
    mtm, point, direction = P.ellipsoid_min_margin(
        (c_t, e_t, R_t), (c_a, np.full(3, r_a), np.eye(3))
    )
    half = np.full(3, r_a + CENTRE_DISTANCE_MM + 2 * sp.max())
    size = np.ceil(2 * half / sp).astype(int) + 1
    origin = -sp * (size - 1) / 2
    M = np.diag(sp)[:, ::-1]  # (z, y, x) index step -> LPS
    shape = tuple(size[::-1])
    tumor = P.ellipsoid_mask(shape, M, origin, c_t, e_t, R_t)
    ablation = P.ellipsoid_mask(shape, M, origin, c_a, np.full(3, r_a), np.eye(3))
    n_slices = int(np.count_nonzero(tumor.any(axis=(1, 2))))
    truth = {
        "mtm": float(mtm),
        "direction": np.asarray(direction).tolist(),
        "semi_axes": e_t.tolist(),
        "n_slices": n_slices,
        "counts": [int(c) for c in tumor.sum(axis=(1, 2)) if c],
        "point": np.asarray(point).tolist(),  # the true MTM point on the tumor
        "tumor": [c_t.tolist(), e_t.tolist(), R_t.tolist()],  # centre, semi-axes, axes
        "ablation": [c_a.tolist(), float(r_a)],  # the ball's centre and radius
    }
    return _image(tumor, sp, origin), _image(ablation, sp, origin), truth


def run(n: int, seed: int, grids) -> dict:
    out = {}
    for spacing in grids:
        rng = np.random.default_rng(seed)
        rows = []
        for i in range(n):
            tumor, ablation, truth = make_case(rng, spacing)
            res = analyze_margin(tumor, ablation, None, 5.0, with_shells=False)
            rows.append(
                truth
                | {
                    "case": i,
                    "err": res.min_margin_mm - truth["mtm"],
                    "limit": res.min_margin_uncertainty_mm,
                    "dir": res.min_margin_direction_lps.tolist(),
                }
            )
        out[" x ".join(f"{v:g}" for v in spacing)] = rows
    return out


def print_table(out: dict) -> None:
    print(
        f"{'grid (mm)':<14}{'slices':>7}{'n':>4}{'worst |err|':>12}"
        f"{'limit min / median / max':>27}{'max |err|/limit':>17}{'inside':>8}"
    )
    for g, rows in out.items():
        for k in sorted({r["n_slices"] for r in rows}):
            rs = [r for r in rows if r["n_slices"] == k]
            e = np.abs([r["err"] for r in rs])
            lim = np.array([r["limit"] for r in rs])
            print(
                f"{g:<14}{k:>7}{len(rs):>4}{e.max():>12.2f}"
                f"{lim.min():>11.2f} / {np.median(lim):.2f} / {lim.max():.2f}"
                f"{np.max(e / lim):>17.2f}{100 * np.mean(e <= lim):>7.0f}%"
            )
    print()
    for g, rows in out.items():
        for r in rows:
            if abs(r["err"]) > r["limit"]:
                ax = " x ".join(f"{v:.1f}" for v in r["semi_axes"])
                print(
                    f"outside: {g} case {r['case']}: {ax} mm on {r['n_slices']} slices "
                    f"{r['counts']} px, error {r['err']:+.2f} mm, limit {r['limit']:.2f} mm"
                )


TERMS = ("pixels", "rows", "caps", "departure")


def run_terms(n: int, seed: int, grids) -> dict:
    """Each steep case's limit terms per mask against that mask's actual error (``--terms``)."""
    import bench_accuracy as BA  # the benchmark beside this one: its cases, in its order

    seen = []
    original = M._direction_and_limit

    def recording(mtm, p, closest, normal, tgrid, tfield, agrid, afield, A, b):
        direction, limit = original(mtm, p, closest, normal, tgrid, tfield, agrid, afield, A, b)
        q = M._affine(closest, A, b)
        seen.append(
            {
                "p": np.asarray(p, float),
                "closest": np.asarray(closest, float),
                "tumor": M._surface_error_terms(tgrid, direction, tfield, p),
                "ablation": M._surface_error_terms(agrid, A @ direction, afield, q),
            }
        )
        return direction, limit

    out = {}
    M._direction_and_limit = recording
    try:
        for spacing in grids:
            rng = np.random.default_rng(seed)
            rows = []
            for i in range(n):
                tumor, ablation, T, truth = BA.make_case(rng, spacing)
                seen.clear()
                res = analyze_margin(tumor, ablation, T, BA.THRESHOLD, with_shells=False)
                if abs(truth["direction"][2]) <= math.sin(math.radians(45)):
                    continue
                last = seen[-1]  # the MTM the result reports (after any lower voxel sample)
                (ct, et, Rt), (ca, ea, Ra) = truth["ellipsoids"]
                e_t = P.ellipsoid_signed_distance(last["p"][None], ct, et, Rt)[0][0]
                e_a = P.ellipsoid_signed_distance(last["closest"][None], ca, ea, Ra)[0][0]
                rows.append(
                    {
                        "case": i,
                        "err": res.min_margin_mm - truth["mtm"],
                        "limit": res.min_margin_uncertainty_mm,
                        "tumor": last["tumor"] | {"error": float(e_t)},
                        "ablation": last["ablation"] | {"error": float(e_a)},
                    }
                )
            out[" x ".join(f"{v:g}" for v in spacing)] = rows
    finally:
        M._direction_and_limit = original
    return out


def _mask_limit(t: dict) -> float:
    return math.sqrt(t["pixels"] ** 2 + max(t["rows"], t["caps"]) ** 2 + t["departure"] ** 2)


def print_terms(out: dict, seed: int) -> None:
    print(
        f"seed {seed}, steep cases: per mask the median of each term (mm), the median and p95 of "
        "the mask's |actual error| at the point, and the share within the mask's own limit; "
        "then the term that is the largest, how often"
    )
    for g, rows in out.items():
        e = np.abs([r["err"] for r in rows])
        lim = np.array([r["limit"] for r in rows])
        print(
            f"{g}: {len(rows)} steep cases, MTM limit median {np.median(lim):.2f}, "
            f"p95 |err| {np.percentile(e, 95):.2f} ({np.median(lim) / np.percentile(e, 95):.1f}x), "
            f"inside {100 * np.mean(e <= lim):.0f} %"
        )
        for mask in ("tumor", "ablation"):
            ts = [r[mask] for r in rows]
            err = np.abs([t["error"] for t in ts])
            ml = np.array([_mask_limit(t) for t in ts])
            cols = "  ".join(f"{k} {np.median([t[k] for t in ts]):.2f}" for k in TERMS)
            top = [
                max(("pixels", "rows", "caps", "departure"), key=lambda k, t=t: t[k]) for t in ts
            ]
            share = ", ".join(f"{k} {top.count(k)}" for k in TERMS if top.count(k))
            print(
                f"  {mask:<9}{cols}  limit {np.median(ml):.2f} | error median "
                f"{np.median(err):.2f} p95 {np.percentile(err, 95):.2f} | inside "
                f"{100 * np.mean(err <= ml):.0f} % | largest: {share}"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--grid", type=int, action="append", help="only these grids (0: 5 mm, 1: 3 mm)")
    ap.add_argument("--dump", metavar="JSON", help="write every case")
    ap.add_argument(
        "--terms",
        action="store_true",
        help="the limit's terms per mask at bench_accuracy.py's steep cases, against each "
        "mask's actual error",
    )
    args = ap.parse_args()
    grids = [g for i, g in enumerate(GRIDS) if not args.grid or i in args.grid]
    if args.terms:
        terms = run_terms(args.n, args.seed, grids)
        print_terms(terms, args.seed)
        if args.dump:
            with open(args.dump, "w") as f:
                json.dump(terms, f)
        return 0
    out = run(args.n, args.seed, grids)
    print_table(out)
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
