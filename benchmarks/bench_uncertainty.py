"""MTM interval: calibration on analytic phantoms and speed on the renal MRI sample.

    python benchmarks/bench_uncertainty.py               # calibration (100 trials per row) + timing
    python benchmarks/bench_uncertainty.py --trials 30   # quicker
    python benchmarks/bench_uncertainty.py --timing      # timing only

Calibration: a tumor ball (radius 10 mm) inside an ablation ball on an MRI-like grid
(1.2 x 1.2 x 3 mm) and an oblique post grid, a known true transform ``T``. Each trial
makes a registration error of known size, analyses the margin with the erroneous
registration, computes the 95 % interval from the error model the user would state,
and asks whether it contains the true MTM (the engine's MTM with the true ``T``; the
analytic margin is reported beside it). Rows:

* ``landmarks``: 6 anatomical landmarks 35-60 mm from the tumor clicked on pre and on
  post with a localisation error of ``--click-sd`` mm per axis each; the registration
  is their least-squares fit; the interval is ``--fixed-points/--moving-points`` (FLE
  estimated from the residuals). ``on 3 mm slices``: the clicks' z then moved to the
  centre of the slice (pre: the tumor grid, post: the ablation grid), as a 2D click
  does; the interval with or without the grids' quantisation floor.
* ``stated SD``: the registration is ``T`` composed with a translation of SD ``S`` per
  axis; the interval is ``--registration-sd-mm S``.

Timing: 200 samples on the renal MRI sample against the naive way (a full
``analyze_margin`` per sampled transform, timed on 20 samples and scaled to 200), and
the difference between the fast MTM of each of those 20 samples and the full analysis.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from napari_ablation.core import landmarks as lm
from napari_ablation.core import margin as M
from napari_ablation.core import transform as tfm
from napari_ablation.core import uncertainty as U

ROOT = Path(__file__).resolve().parents[1]
R_T, R_A = 10.0, 13.5
LANDMARKS = np.array(
    [[40.0, 5, 10], [-35, 20, -5], [5, -45, 15], [10, 40, -20], [-20, -25, 40], [25, 10, -45]]
)


def phantom(offset_mm: float):
    """Tumor ball at the origin (pre), ablation ball offset along a fixed direction; the
    post grid is oblique and ``T`` a rotation of 6 degrees plus a translation.
    True MTM = R_A - R_T - offset (analytic)."""
    u = np.array([0.48, -0.6, 0.64])
    u /= np.linalg.norm(u)
    c_t = np.zeros(3)
    c_a = c_t + offset_mm * u
    sp = (1.2, 1.2, 3.0)
    tumor = M.sphere_image([40, 40, 16], sp, (-23.7, -23.1, -22.2), c_t, R_T)
    T = sitk.Euler3DTransform()
    T.SetCenter((0.0, 0.0, 0.0))
    T.SetRotation(0.05, -0.06, 0.07)
    T.SetTranslation((4.0, -3.0, 6.0))
    c_post = np.asarray(T.TransformPoint(c_a.tolist()))
    ablation = M.sphere_image([44, 44, 18], sp, (c_post - [25.9, 26.3, 26.1]).tolist(), c_post, R_A)
    return tumor, ablation, T, R_A - R_T - offset_mm


def composed(T, samples: U.RigidSamples, k: int):
    """``T o D_k`` as an Euler transform."""
    a0, b0 = tfm.matrix_offset(T)
    r, t, c = samples.rotations[k], samples.translations[k], samples.center
    return tfm.euler_from_matrix(a0 @ r, a0 @ (c + t - r @ c) + b0, c)


def on_slices(points: np.ndarray, image) -> np.ndarray:
    """Clicks in an axial 2D view: z moved to the centre of the image's slice it falls in."""
    out = np.array(points, dtype=float)
    oz, hz = image.GetOrigin()[2], image.GetSpacing()[2]
    out[:, 2] = oz + np.round((out[:, 2] - oz) / hz) * hz
    return out


def trial(
    kind: str,
    tumor,
    ablation,
    T,
    rng,
    *,
    click_sd=1.0,
    sd=1.5,
    samples=200,
    slices=False,
    grids=True,
):
    """One calibration trial: (accepted MTM, sampled MTMs) for an erroneous registration.

    ``slices``: the clicks lie on the slices of the tumor (pre) and ablation (post) grids;
    ``grids``: the interval knows those grids (their quantisation floors the error)."""
    c = np.zeros(3)  # tumor centre
    if kind == "landmarks":
        a0, b0 = tfm.matrix_offset(T)
        p = LANDMARKS + rng.normal(0, click_sd, LANDMARKS.shape)
        q = LANDMARKS @ a0.T + b0 + rng.normal(0, click_sd, LANDMARKS.shape)
        spacings = {}
        if slices:
            p, q = on_slices(p, tumor), on_slices(q, ablation)
            if grids:
                spacings = {
                    "fixed_spacing": tumor.GetSpacing(),
                    "moving_spacing": ablation.GetSpacing(),
                }
        fixed = {str(i): v for i, v in enumerate(p)}
        moving = {str(i): v for i, v in enumerate(q)}
        T_hat = lm.fit_landmarks(fixed, moving).transform
        reg = U.landmark_samples(fixed, moving, samples, rng, c, **spacings)
    else:
        err = U.translation_samples(sd, 1, rng, c)
        T_hat = composed(T, err, 0)
        reg = U.translation_samples(sd, samples, rng, c)
    res = M.analyze_margin(tumor, ablation, T_hat, 5.0, with_shells=False)
    unc = U.margin_uncertainty(res, reg, boundary_mm=0.0, seed=int(rng.integers(1 << 31)))
    return unc


def calibration(kind: str, offset_mm: float, trials: int, seed: int, **kw) -> dict:
    """Coverage of the 95 % interval over ``trials`` trials (fixed ``seed``).

    Returns
    -------
    dict with ``coverage`` (against the engine's MTM at the true transform),
    ``coverage_analytic``, ``unsafe_miss`` (truth below the interval), ``coverage_percentile``
    and ``coverage_basic`` (each half of the union alone, baselines), ``mean_width_mm``,
    ``truth_mm``, ``analytic_mm``, ``trials``.
    """
    tumor, ablation, T, analytic = phantom(offset_mm)
    truth = M.analyze_margin(tumor, ablation, T, 5.0, with_shells=False).min_margin_mm
    rng = np.random.default_rng(seed)
    hit = hit_a = hit_p = hit_b = hit_u = unsafe = 0
    widths, widths_u = [], []
    for _ in range(trials):
        unc = trial(kind, tumor, ablation, T, rng, **kw)
        lo, hi = unc.interval_mm
        hit += lo <= truth <= hi
        hit_a += lo <= analytic <= hi
        unsafe += truth < lo  # the interval promised more margin than there is
        widths.append(hi - lo)
        # baselines: each half of the union alone
        p_lo, p_hi = np.quantile(unc.sampled_min_margin_mm, [0.025, 0.975])
        hit_p += p_lo <= truth <= p_hi
        m = unc.min_margin_mm
        hit_b += 2 * m - p_hi <= truth <= 2 * m - p_lo
        # the method before the upper end's test inversion: their union alone
        u_lo, u_hi = U.mtm_interval(m, unc.sampled_min_margin_mm)
        hit_u += u_lo <= truth <= u_hi
        widths_u.append(u_hi - u_lo)
    return {
        "coverage": hit / trials,
        "unsafe_miss": unsafe / trials,
        "coverage_percentile": hit_p / trials,
        "coverage_basic": hit_b / trials,
        "coverage_union": hit_u / trials,
        "mean_width_union_mm": float(np.mean(widths_u)),
        "coverage_analytic": hit_a / trials,
        "mean_width_mm": float(np.mean(widths)),
        "truth_mm": truth,
        "analytic_mm": analytic,
        "trials": trials,
    }


def timing(samples: int = 200, naive_samples: int = 20, sd: float = 1.5, repeats: int = 3) -> dict:
    """Fast sampling vs a full analysis per sample on the renal MRI sample."""
    d = ROOT / "sample_data" / "renal_mri"
    tumor = sitk.ReadImage(str(d / "tumor.nii.gz"))
    ablation = sitk.ReadImage(str(d / "ablation.nii.gz"))
    T = tfm.read_rigid_transform(d / "true_transform.tfm")
    res = M.analyze_margin(tumor, ablation, T, 5.0)
    rng = np.random.default_rng(7)
    reg = U.translation_samples(sd, samples, rng, res.tumor_centroid_lps)
    fast, fast_cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        unc = U.margin_uncertainty(
            res, reg, tumor=tumor, ablation=ablation, transform=T, boundary_mm=0.0
        )
        fast.append(time.perf_counter() - t0)
        fast_cpu.append(time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    exact = [
        M.analyze_margin(tumor, ablation, composed(T, reg, k), 5.0).min_margin_mm
        for k in range(naive_samples)
    ]
    naive = (time.perf_counter() - t0) / naive_samples * samples
    naive_cpu = (time.process_time() - c0) / naive_samples * samples
    diff = np.abs(np.asarray(exact) - unc.sampled_min_margin_mm[:naive_samples])
    return {
        "fast_s": statistics.median(fast),
        "fast_cpu_s": statistics.median(fast_cpu),
        "naive_s": naive,
        "naive_cpu_s": naive_cpu,
        "max_abs_diff_mm": float(diff.max()),
        "mean_abs_diff_mm": float(diff.mean()),
        "fast_offset_mm": unc.fast_offset_mm,
        "interval": unc.interval_mm,
        "samples": samples,
        "naive_samples": naive_samples,
    }


def restarts(k: int = 6) -> dict:
    """Spread of the automatic registration on the renal sample from ``k`` restarts, and the
    MTM interval it gives."""
    d = ROOT / "sample_data" / "renal_mri"
    pre, post, tumor, ablation = (
        sitk.ReadImage(str(d / f"{n}.nii.gz")) for n in ("pre", "post", "tumor", "ablation")
    )
    T = tfm.read_rigid_transform(d / "true_transform.tfm")
    t0 = time.perf_counter()
    cov, c = U.restart_covariance(pre, post, T, tumor, ablation=ablation, restarts=k, seed=0)
    elapsed = time.perf_counter() - t0
    res = M.analyze_margin(tumor, ablation, T, 5.0)
    reg = U.covariance_samples(
        cov, 200, np.random.default_rng(0), c, "automatic registration restarts"
    )
    unc = U.margin_uncertainty(res, reg, tumor=tumor, ablation=ablation, transform=T)
    return {
        "restarts": k,
        "seconds": elapsed,
        "tre_mm": U.predicted_tre(cov, c, c),
        "line": unc.interval_text(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--timing", action="store_true", help="timing only")
    args = ap.parse_args()
    if not args.timing:
        print(
            "| error model | true MTM (engine / analytic, mm) | trials | coverage "
            "| truth below the interval | coverage of the analytic MTM | mean width (mm) "
            "| percentile alone | reflected alone | percentile + reflected (before): coverage, "
            "width |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        rows = [
            ("landmarks, click SD 1 mm per axis", "landmarks", 2.0, {"click_sd": 1.0}),
            ("landmarks, click SD 1 mm, tumor near-centred", "landmarks", 0.5, {"click_sd": 1.0}),
            (
                "landmarks, click SD 0.3 mm on 3 mm slices, residuals only (before)",
                "landmarks",
                2.0,
                {"click_sd": 0.3, "slices": True, "grids": False},
            ),
            (
                "landmarks, click SD 0.3 mm on 3 mm slices, grids given",
                "landmarks",
                2.0,
                {"click_sd": 0.3, "slices": True},
            ),
            ("stated SD 1.5 mm per axis", "stated", 2.0, {"sd": 1.5}),
            ("stated SD 1.5 mm, tumor near-centred", "stated", 0.5, {"sd": 1.5}),
        ]
        for name, kind, off, kw in rows:
            r = calibration(kind, off, args.trials, args.seed, **kw)
            print(
                f"| {name} | {r['truth_mm']:.2f} / {r['analytic_mm']:.2f} | {r['trials']} | "
                f"{100 * r['coverage']:.0f} % | {100 * r['unsafe_miss']:.0f} % | "
                f"{100 * r['coverage_analytic']:.0f} % | {r['mean_width_mm']:.2f} | "
                f"{100 * r['coverage_percentile']:.0f} % | {100 * r['coverage_basic']:.0f} % | "
                f"{100 * r['coverage_union']:.0f} %, {r['mean_width_union_mm']:.2f} |",
                flush=True,
            )
    t = timing()
    print()
    print("| method (renal MRI sample, SD 1.5 mm) | 200 samples: wall time (s) | CPU time (s) |")
    print("|---|---|---|")
    print(
        "| fast: tabulated ablation distance, only the transform changes "
        f"| {t['fast_s']:.2f} | {t['fast_cpu_s']:.2f} |"
    )
    print(
        f"| naive: full analyze_margin per sample ({t['naive_samples']} timed, x 10) "
        f"| {t['naive_s']:.1f} | {t['naive_cpu_s']:.1f} |"
    )
    r = restarts()
    print(
        f"\nautomatic registration, {r['restarts']} restarts ({r['seconds']:.1f} s): "
        f"spread at the tumor {r['tre_mm']:.2f} mm RMS; "
        f"with the default boundary tolerance: {r['line']}"
    )
    print(
        f"\nfast vs full analysis on {t['naive_samples']} samples: "
        f"MTM difference max {t['max_abs_diff_mm']:.3f} mm, "
        f"mean {t['mean_abs_diff_mm']:.3f} mm; "
        f"fast path offset at the accepted transform {t['fast_offset_mm']:+.3f} mm"
    )


if __name__ == "__main__":
    main()
