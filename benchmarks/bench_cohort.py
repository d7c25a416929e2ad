"""Cohort batch throughput: cases per minute on Dask (1 and 2 worker processes) against the
sequential loop over the same cases, measured in the same run; and the peak memory of one
CT-sized case analysis.

    python benchmarks/bench_cohort.py            # 3 repeats, median
    python benchmarks/bench_cohort.py --quick    # 1 repeat

Cohorts:
* ``samples``: the two bundled sample cases (renal MRI, liver CT), 4 copies of each (8 cases);
* ``synthetic``: ``cohort synth --n 24 --seed 0`` (small analytic cases).

Methods:
* ``sequential``: ``core.cohort.analyze_case`` in a plain loop in this process (after one
  warm-up call), the baseline;
* ``dask N``: ``core.cohort.run_cohort`` on a new LocalCluster of N worker processes (one
  thread each); "with start-up" counts starting the cluster, "tasks only" counts from
  submitting the tasks to the last result (what a long batch converges to). Results are
  written to a fresh folder each time (nothing is reused).

Memory: one child process reads and analyses a CT-sized case (512 x 512 x 300 labels at
0.7 x 0.7 x 1 mm, 3 cm tumor) exactly as a worker does; its peak RSS against the 1.5 GB
budget and the worker memory limit.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sample_cohort(dst: Path, copies: int = 4) -> Path:
    for name in ("renal_mri", "liver_ct"):
        for i in range(copies):
            shutil.copytree(ROOT / "sample_data" / name, dst / f"{name}_{i}")
    return dst


def sequential(cases) -> float:
    from napari_ablation.core import cohort

    cohort.analyze_case(cases[0])  # warm-up (imports, caches)
    t0 = time.perf_counter()
    for c in cases:
        rec = cohort.analyze_case(c)
        assert not rec["error"], rec["error"]
    return time.perf_counter() - t0


def on_dask(cases, workers: int, out: Path) -> tuple[float, float]:
    from napari_ablation.core import cohort

    last = {}
    t0 = time.perf_counter()
    run = cohort.run_cohort(
        cases, out, workers=workers, progress=lambda p: last.update(c=p.compute_s)
    )
    total = time.perf_counter() - t0
    assert not run.failed and len(run.computed) == len(cases)
    return total, last["c"]


def _vm_hwm_mb() -> float:
    """Peak RSS of this process (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ct_memory_child(folder: str) -> None:
    from napari_ablation.core import cohort

    rss0 = _vm_hwm_mb()
    rec = cohort.analyze_case(cohort.case_folder_inputs(folder))
    assert not rec["error"], rec["error"]
    rss = _vm_hwm_mb()
    print(f"{rss0:.0f} {rss:.0f} {rec['margin']['min_margin_mm']}")


def ct_memory(tmp: Path) -> tuple[float, float, float]:
    import SimpleITK as sitk

    from napari_ablation.core.case import Case
    from napari_ablation.core.margin import sphere_image

    size, spacing = (512, 512, 300), (0.7, 0.7, 1.0)
    origin = [-s * sp / 2 for s, sp in zip(size, spacing)]
    tumor = sphere_image(size, spacing, origin, (0, 0, 0), 15.0)
    abl = sphere_image(size, spacing, origin, (3.0, 0, 0), 23.0)
    blank = sitk.Image(list(size), sitk.sitkInt16)
    blank.SetSpacing(spacing)
    blank.SetOrigin(origin)
    Case(pre=blank, post=blank, tumor=tumor, ablation=abl, info={"modality": "CT"}).save(tmp / "ct")
    out = subprocess.run(
        [sys.executable, __file__, "--ct-child", str(tmp / "ct")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    base, peak, mtm = (float(v) for v in out)
    assert abs(mtm - (23.0 - 3.0 - 15.0)) < 0.5, mtm
    return base, peak, mtm


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ct-child")
    args = ap.parse_args()
    if args.ct_child:
        ct_memory_child(args.ct_child)
        return 0
    from napari_ablation.core import cohort

    repeats = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cohorts = {
            "samples (2 x 4 copies)": cohort.find_cases([sample_cohort(tmp / "samples")]),
            "synthetic (24)": cohort.find_cases(
                [cohort.write_synthetic_cohort(tmp / "syn", n=24, seed=0).outcomes.parent]
            ),
        }
        rows = []
        for name, cases in cohorts.items():
            n = len(cases)
            seq = statistics.median(sequential(cases) for _ in range(repeats))
            rows.append((name, "sequential loop", n, seq, seq, 1.0))
            for w in (1, 2):
                runs = [
                    on_dask(cases, w, tmp / f"out_{w}_{i}_{abs(hash(name))}")
                    for i in range(repeats)
                ]
                tot = statistics.median(r[0] for r in runs)
                tasks = statistics.median(r[1] for r in runs)
                rows.append(
                    (name, f"dask, {w} worker{'s' if w > 1 else ''}", n, tot, tasks, seq / tasks)
                )
        base, peak, _mtm = ct_memory(tmp)

    print(
        "| cohort | method | cases | cases/min (with start-up) | cases/min (tasks only) "
        "| speed-up vs loop (tasks only) |"
    )
    print("|---|---|---|---|---|---|")
    for name, method, n, tot, tasks, speed in rows:
        print(
            f"| {name} | {method} | {n} | {60 * n / tot:.1f} | {60 * n / tasks:.1f} | {speed:.2f} |"
        )
    print()
    print(
        f"CT-sized case (512 x 512 x 300 labels, 0.7 x 0.7 x 1 mm) read + analysed in one process: "
        f"peak RSS {peak:.0f} MB (interpreter with imports {base:.0f} MB); budget 1500 MB, "
        f"worker memory limit {cohort.DEFAULT_MEMORY_LIMIT}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
