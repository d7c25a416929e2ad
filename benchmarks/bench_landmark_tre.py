"""Calibration of the landmark registration's predicted error at the tumor (UAT s4 N5).

    python benchmarks/bench_landmark_tre.py                # 300 trials per row
    python benchmarks/bench_landmark_tre.py --trials 100   # quicker

Each trial: a random layout of N anatomical landmarks 25-70 mm from a tumor centre, a
random rigid motion pre -> post (rotation up to 10 degrees, translation up to 20 mm),
random grid origins, and clicks as a 2D view makes them: the anatomical point plus
Gaussian noise of ``sd`` mm per axis, its through-plane coordinate (z, the axial view)
then moved to the centre of the slice it falls in, on pre and on post. The registration
is the least-squares fit of the clicks; its actual error at the tumor centre is
``|T_hat(c) - T(c)|``.

Two error models, the same fits:

* ``before``: the localisation error from the residuals alone (isotropic,
  ``sum |r|^2 / (3N - 6)`` per axis), as the plugin had it;
* ``after``: per axis the larger of that and the grids' quantisation ``h^2 / 12`` (pre
  plus post), ``fit_landmarks(..., fixed_spacing, moving_spacing)``.

Columns: the RMS ratio ``sqrt(mean(actual^2) / mean(predicted^2))`` (1 = calibrated,
> 1 = the prediction is too small), the coverage of the 95 % radius of the closed form
(``predicted * sqrt(chi2_3(0.95) / 3)``) and of the resampled 95th percentile that feeds
the MTM interval (:func:`~napari_ablation.core.uncertainty.landmark_samples`), and the
median prediction. Rows ``pre clicks = anatomy``: the anatomy is where the pre click is
(the pre points sit on the pre slices, no pre error), as in the UAT's script: every
post click then errs by about the same through-plane offset when T is nearly a
translation (``UAT-like``: landmarks 0-30 mm from the tumor, rotation about 3 degrees).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.spatial.transform import Rotation

from napari_ablation.core import landmarks as lm
from napari_ablation.core import uncertainty as U

CHI2_3_95 = 7.814727903251178  # 95 % quantile of chi-square with 3 degrees of freedom
R95 = math.sqrt(CHI2_3_95 / 3.0)  # 95 % radius / RMS of an isotropic 3D normal error

#: (name, pre spacing, post spacing) x, y, z in mm
GRIDS = {
    "MRI 1.2x1.2x3": ((1.2, 1.2, 3.0), (1.2, 1.2, 3.0)),
    "CT 0.7x0.7x5": ((0.7, 0.7, 5.0), (0.7, 0.7, 5.0)),
    "MRI pre, CT 0.7x0.7x1 post": ((1.2, 1.2, 3.0), (0.7, 0.7, 1.0)),
}


def click(points: np.ndarray, spacing, origin_z: float, sd: float, rng) -> np.ndarray:
    """Clicks in an axial 2D view: noise per axis, then z on the nearest slice centre."""
    out = points + rng.normal(0.0, sd, points.shape)
    h = spacing[2]
    out[:, 2] = origin_z + np.round((out[:, 2] - origin_z) / h) * h
    return out


def trial(
    rng,
    n: int,
    grids,
    sd: float,
    *,
    pre_is_anatomy: bool = False,
    dist=(25.0, 70.0),
    rot_deg: float = 10.0,
    samples: int = 200,
):
    """One random layout and motion: actual error and (before, after) predictions."""
    sp_pre, sp_post = grids
    c = rng.uniform(-30, 30, 3)  # tumor centre
    d = rng.normal(size=(n, 3))
    anat = c + d / np.linalg.norm(d, axis=1)[:, None] * rng.uniform(*dist, (n, 1))
    rot = Rotation.from_rotvec(
        rng.normal(size=3) * math.radians(rot_deg) / math.sqrt(3)
    ).as_matrix()
    t = rng.uniform(-20, 20, 3)
    o_pre, o_post = rng.uniform(0, sp_pre[2]), rng.uniform(0, sp_post[2])
    p = click(anat, sp_pre, o_pre, sd, rng)
    if pre_is_anatomy:
        anat = p  # the truth is defined by the pre clicks
    q = click(anat @ rot.T + t, sp_post, o_post, sd, rng)
    fixed = {str(i): v for i, v in enumerate(p)}
    moving = {str(i): v for i, v in enumerate(q)}
    fit0 = lm.fit_landmarks(fixed, moving)
    fit1 = lm.fit_landmarks(fixed, moving, fixed_spacing=sp_pre, moving_spacing=sp_post)
    est = np.asarray(fit0.transform.TransformPoint(c.tolist()))
    actual = float(np.linalg.norm(est - (rot @ c + t)))
    pred = (fit0.predicted_tre_at(c), fit1.predicted_tre_at(c))
    p95 = []
    for spacing in ((None, None), (sp_pre, sp_post)):
        reg = U.landmark_samples(
            fixed, moving, samples, rng, c, fixed_spacing=spacing[0], moving_spacing=spacing[1]
        )
        p95.append(float(np.quantile(reg.displacement_at(c), 0.95)))
    return actual, pred, tuple(p95)


def row(trials: int, seed: int, **kw) -> dict:
    rng = np.random.default_rng(seed)
    a, pr, pc = [], [], []
    for _ in range(trials):
        actual, pred, p95 = trial(rng, **kw)
        a.append(actual)
        pr.append(pred)
        pc.append(p95)
    a, pr, pc = np.array(a), np.array(pr), np.array(pc)
    out = {}
    for k, name in enumerate(("before", "after")):
        out[name] = {
            "rms_ratio": float(np.sqrt(np.mean(a**2) / np.mean(pr[:, k] ** 2))),
            "cover_closed": float(np.mean(a <= R95 * pr[:, k])),
            "cover_samples": float(np.mean(a <= pc[:, k])),
            "median_pred": float(np.median(pr[:, k])),
        }
    out["median_actual"] = float(np.median(a))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    uat = {"pre_is_anatomy": True, "dist": (0.0, 30.0), "rot_deg": 3.0}
    cases = [  # grids, N, click SD, options
        ("MRI 1.2x1.2x3", 8, 0.5, {}),
        ("MRI 1.2x1.2x3", 4, 0.5, {}),
        ("MRI 1.2x1.2x3", 12, 0.5, {}),
        ("MRI 1.2x1.2x3", 8, 1.5, {}),
        ("CT 0.7x0.7x5", 8, 0.5, {}),
        ("MRI pre, CT 0.7x0.7x1 post", 8, 0.5, {}),
        ("MRI 1.2x1.2x3", 8, 0.5, {"pre_is_anatomy": True}),
        ("MRI 1.2x1.2x3", 8, 0.3, uat),
    ]
    print(
        "| grids | N | click SD | actual median | predicted median before / after | RMS ratio "
        "before / after | 95 % cover closed form before / after | 95 % cover resampled "
        "before / after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    for grid, n, sd, opts in cases:
        r = row(args.trials, args.seed, n=n, grids=GRIDS[grid], sd=sd, **opts)
        b, f = r["before"], r["after"]
        name = grid + (", pre clicks = anatomy" if opts.get("pre_is_anatomy") else "")
        name += ", UAT-like (0-30 mm, 3 deg)" if opts is uat else ""
        print(
            f"| {name} | {n} | {sd:g} | {r['median_actual']:.2f} | {b['median_pred']:.2f} / "
            f"{f['median_pred']:.2f} | {b['rms_ratio']:.2f} / {f['rms_ratio']:.2f} | "
            f"{100 * b['cover_closed']:.0f} % / {100 * f['cover_closed']:.0f} % | "
            f"{100 * b['cover_samples']:.0f} % / {100 * f['cover_samples']:.0f} % |",
            flush=True,
        )
    print(f"\n{args.trials} trials per row, seed {args.seed}, {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
