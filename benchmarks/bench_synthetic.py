"""Synthetic case generator: time per case against the bundled sample generator (baseline),
and the margin engine's MTM error on the generated cases.

    python benchmarks/bench_synthetic.py [--n N]

Prints two tables: generation time (median of N cases; the baseline is
``samples.make_renal_mri``, run in the same process) and engine - truth per grid.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_ablation.core import margin, samples, synthetic


def _median_time(fn, n):
    ts = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5, help="cases per row (default 5)")
    args = ap.parse_args(argv)
    n = args.n
    base = _median_time(lambda i: samples.make_renal_mri(), 1)
    print("| generator | median time (s) | vs baseline |")
    print("|---|---|---|")
    print(f"| samples.make_renal_mri (baseline) | {base:.2f} | 1x |")
    for label, kw, k in (
        ("synthetic MRI, small", {"modality": "mri", "small": True}, n),
        ("synthetic CT, small", {"modality": "ct", "small": True}, n),
        ("synthetic MRI, full", {"modality": "mri"}, max(1, n // 2)),
        ("synthetic CT, full", {"modality": "ct"}, max(1, n // 2)),
    ):
        t = _median_time(lambda i, kw=kw: synthetic.synthetic_case(i, **kw), k)
        print(f"| {label} | {t:.2f} | {base / t:.1f}x faster |")
    print()
    print("| grid | cases | mean error (mm) | median abs | max abs | octant and class agree |")
    print("|---|---|---|---|---|---|")
    for label, kw in (
        ("MRI 1.2 x 1.2 x 3", {"modality": "mri", "small": True}),
        ("CT 0.9 x 0.9 x 2.5", {"modality": "ct", "small": True}),
        ("CT 0.9 x 0.9 x 5", {"modality": "ct", "small": True, "slice_mm": 5.0}),
    ):
        errs, agree = [], 0
        for i in range(3 * n):
            case, truth = synthetic.synthetic_case(i, **kw)
            res = margin.analyze_margin(
                case.tumor, case.ablation, case.transform, truth["threshold_mm"]
            )
            errs.append(res.min_margin_mm - truth["min_margin_mm"])
            agree += res.min_margin_octant == truth["min_margin_octant"] and (
                synthetic.coverage_class(res.min_margin_mm, truth["threshold_mm"])
                == truth["coverage_class"]
            )
        e = np.abs(errs)
        print(
            f"| {label} | {len(errs)} | {np.mean(errs):+.2f} | {np.median(e):.2f} "
            f"| {e.max():.2f} | {agree}/{len(errs)} |"
        )


if __name__ == "__main__":
    main()
