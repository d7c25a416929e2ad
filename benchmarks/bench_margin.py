"""Margin engine speed, memory and accuracy against a naive baseline, measured in the same run.

    python benchmarks/bench_margin.py            # both cases, both methods
    python benchmarks/bench_margin.py --quick    # MRI only, fewer repeats
    python benchmarks/bench_margin.py --accuracy # MTM error, random analytic spheres, both methods
    python benchmarks/bench_margin.py --before /path/to/other/src   # + that version of the engine
    python benchmarks/bench_margin.py --scaling [--before SRC]        # time vs tumor and image size
    python benchmarks/bench_margin.py --one-thread   # + the engine on one thread, alternating
    python benchmarks/bench_margin.py --first-call   # a fresh process's import and first analysis
    python benchmarks/bench_margin.py --before SRC --case CT60 --no-naive   # one case, no EDT

Cases (issue 3): MRI 256 x 256 x 128 at 1.2 x 1.2 x 3 mm and CT 512 x 512 x 200 at
0.7 x 0.7 x 1 mm, a 3 cm tumor, the ablation zone on its own post grid with a rigid
transform between pre and post (so resampling into pre space is part of the work).

Methods:
* ``napari-ablation``: ``core.margin.analyze_margin`` (full analysis: surfaces, exact
  distances, classes, octants, shells, diameter, histogram).
* ``naive``: the ablation mask resampled onto the whole pre grid (nearest neighbour), a
  signed scipy ``distance_transform_edt`` of the whole volume (positive inside), MTM = min
  over tumor voxel centres, classes from the same field.

Each (method, case) runs in a fresh child process so that peak RSS is its own; time is the
median of N runs (the first, warm-up, run excluded for the fast method), wall clock and the
process's CPU time (on a shared machine the wall time also counts waiting for a core).
With ``--before SRC`` the engine of another source tree (e.g. an export of ``main``) runs
in the same session as ``before``, alternating with this one (``--rounds`` child processes
each, default 3; the medians are over all their runs), so that a change of a shared
machine's load weighs on both alike; ``--one-thread`` does the same with this engine on one
thread (``analyze_margin(threads=1)``) as ``one-thread``.

First call (``--first-call``): the compiled kernels (numba, ``core/mesh_search.py`` and
``core/filters.py``) are compiled on their first use ever and cached on disk; every new process
then loads them from the cache on its first analysis. Each row runs in a fresh child process:
the import of the engine, its first analysis (MRI case) and a second one, wall and CPU, with
an empty numba cache (``NUMBA_CACHE_DIR`` a new folder: the one-time compilation), then with
that cache filled (what every later process pays: the CLI's call, each cohort worker).

The engine's own threads: during as many more runs after the timed ones (the sampler takes a
share of a core, which the timed runs must not pay) a sampler process reads every millisecond how
many threads of the child are runnable (``/proc/<pid>/task/*/stat`` state R; a thread
waiting for the GIL or a lock sleeps). Their mean while any is runnable is how many cores
the engine would keep busy on an idle machine, whatever the load: ``CPU / runnable`` is
the idle-machine estimate of the wall time (a loaded machine hands a process about one
core's share, so there wall ~= CPU x load / cores with or without threads).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

CASES = {
    "MRI": {"size": (256, 256, 128), "spacing": (1.2, 1.2, 3.0)},
    "CT": {"size": (512, 512, 200), "spacing": (0.7, 0.7, 1.0)},
    "CT60": {"size": (512, 512, 300), "spacing": (0.7, 0.7, 1.0), "r_t": 30.0},
}
R_T, MARGIN, OFFSET = 15.0, 5.0, 3.0  # 3 cm tumor, true MTM 5 mm, ablation centre offset 3 mm


def make_case(name: str):
    import SimpleITK as sitk

    from napari_ablation.core.margin import sphere_image

    cfg = CASES[name]
    size, sp = np.asarray(cfg["size"]), np.asarray(cfg["spacing"])
    origin = -size * sp / 2 + np.array([0.37, -0.21, 0.43]) * sp
    c_t = np.array([12.3, -8.7, 5.1])
    u = np.array([0.6, -0.5, 0.62])
    u /= np.linalg.norm(u)
    c_a_pre = c_t + OFFSET * u
    r_a = cfg.get("r_t", R_T) + MARGIN + OFFSET
    r_t = cfg.get("r_t", R_T)
    tumor = sphere_image(size, sp, origin, c_t, r_t)
    T = sitk.Euler3DTransform()
    T.SetCenter(c_t.tolist())
    T.SetRotation(0.05, -0.08, 0.12)
    T.SetTranslation((6.0, -4.0, 9.0))
    c_a_post = np.asarray(T.TransformPoint(c_a_pre.tolist()))
    ablation = sphere_image(size, sp, origin + [3.1, -2.2, 1.7], c_a_post, r_a)
    return tumor, ablation, T, MARGIN


def run_ours(tumor, ablation, T, threads=None):
    from napari_ablation.core.margin import analyze_margin

    kw = {} if threads is None else {"threads": threads}  # (``before`` may have no threads=)
    res = analyze_margin(tumor, ablation, T, 5.0, **kw)
    res.margin_labels_image()  # the margin layer on the pre grid is part of the product
    return res.min_margin_mm


def run_naive(tumor, ablation, T):
    import SimpleITK as sitk
    from scipy import ndimage

    ab_pre = sitk.Resample(ablation, tumor, T, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    a = sitk.GetArrayViewFromImage(ab_pre) > 0
    sp = tumor.GetSpacing()[::-1]
    d_in = ndimage.distance_transform_edt(a, sampling=sp)
    d_out = ndimage.distance_transform_edt(~a, sampling=sp)
    sdf = np.where(a, d_in, -d_out)
    t = sitk.GetArrayViewFromImage(tumor) > 0
    m = sdf[t]
    classes = np.zeros(t.shape, np.uint8)
    classes[t] = np.where(m < 0, 3, np.where(m < 5.0, 2, 1))
    return float(m.min())


def naive_mtm(tumor, ablation, T) -> float:
    """The baseline's MTM (signed voxel-centre EDT of the resampled ablation,
    min over tumor voxels)."""
    import SimpleITK as sitk
    from scipy import ndimage

    ab_pre = sitk.Resample(
        ablation,
        tumor,
        T if T is not None else sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )
    a = sitk.GetArrayViewFromImage(ab_pre) > 0
    sp = tumor.GetSpacing()[::-1]
    sdf = np.where(
        a,
        ndimage.distance_transform_edt(a, sampling=sp),
        -ndimage.distance_transform_edt(~a, sampling=sp),
    )
    return float(sdf[sitk.GetArrayViewFromImage(tumor) > 0].min())


def accuracy(n: int = 10) -> None:
    """MTM error on random analytic spheres (binary masks, sub-voxel placement, random offset
    direction, rigid T, oblique post grid), napari-ablation against the naive baseline."""
    import SimpleITK as sitk
    from scipy.spatial.transform import Rotation

    from napari_ablation.core.margin import analyze_margin, sphere_image

    print(
        f"MTM error (mm) on {n} random sphere pairs per grid: r_t 10 mm, true margin 4 mm, "
        "offset 0-4 mm,"
    )
    print(
        "random rigid pre->post transform, oblique post grid "
        "(5 mm: offsets kept away from the caps)"
    )
    hdr = f"{'grid (mm)':<16}{'method':<17}{'bias':>8}{'worst':>8}{'target':>8}"
    print(hdr)
    print("-" * len(hdr))
    targets = {
        (1.0, 1.0, 1.0): 0.25,
        (0.7, 0.7, 1.0): 0.25,
        (1.2, 1.2, 3.0): 0.5,
        (0.8, 0.8, 5.0): 1.0,
    }
    for spacing, target in targets.items():
        rng = np.random.default_rng(7)
        sp = np.asarray(spacing)
        errs = {"napari-ablation": [], "naive": []}
        for _ in range(n):
            d = rng.uniform(0, 4)
            while True:
                u = rng.normal(size=3)
                u /= np.linalg.norm(u)
                if spacing[2] < 5 or abs(u[2]) < 0.7:
                    break
            r_t, r_a = 10.0, 14.0 + d
            c_t = rng.uniform(-1, 1, 3) * sp
            ext = r_a + 6
            size = np.ceil(2 * ext / sp).astype(int) + 1
            tumor = sphere_image(size, sp, c_t - ext + rng.uniform(0, 1, 3) * sp, c_t, r_t)
            T = sitk.Euler3DTransform()
            T.SetCenter(rng.uniform(-5, 5, 3).tolist())
            T.SetRotation(*rng.uniform(-0.3, 0.3, 3))
            T.SetTranslation(rng.uniform(-10, 10, 3).tolist())
            c_post = np.asarray(T.TransformPoint((c_t + d * u).tolist()))
            D = Rotation.from_rotvec(rng.uniform(-0.4, 0.4, 3)).as_matrix()
            ablation = sphere_image(
                size,
                sp,
                c_post - D @ (ext * np.ones(3)) + rng.uniform(0, 1, 3) * sp,
                c_post,
                r_a,
                direction=D,
            )
            errs["napari-ablation"].append(analyze_margin(tumor, ablation, T).min_margin_mm - 4.0)
            errs["naive"].append(naive_mtm(tumor, ablation, T) - 4.0)
        for method, e in errs.items():
            e = np.asarray(e)
            print(
                f"{' x '.join(f'{v:g}' for v in spacing):<16}{method:<17}"
                f"{e.mean():>+8.2f}{np.abs(e).max():>8.2f}{target:>8.2f}"
            )


def scaling(repeats: int = 3, before: str | None = None, rounds: int = 1) -> None:
    """Time of napari-ablation (median of ``repeats``, wall and CPU) against tumor radius and
    image size; with ``before``, that source tree's engine in the same session (child
    processes, alternating)."""
    runs = [("this", None)] + ([("before", before)] if before else [])
    sizes = [((512, 512, 200), r) for r in (10.0, 15.0, 20.0, 30.0)]
    sizes += [(size, 15.0) for size in ((256, 256, 100), (512, 512, 300))]
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    print(
        f"scaling, median of {repeats} runs x {rounds} alternating rounds: wall s / CPU s, "
        "0.7 x 0.7 x 1 mm grids"
    )
    print(f"{'image':<16}{'tumor r (mm)':>13}" + "".join(f"{name:>20}" for name, _ in runs))
    for size, r in sizes:
        ws: dict[str, list[float]] = {name: [] for name, _ in runs}
        cs: dict[str, list[float]] = {name: [] for name, _ in runs}
        for _ in range(rounds):
            for name, src in runs:
                e = env if src is None else dict(env, PYTHONPATH=src)
                cmd = [sys.executable, __file__, "--scaling-child", *map(str, size), str(r)]
                out = subprocess.run([*cmd, str(repeats)], capture_output=True, text=True, env=e)
                w, c = json.loads(out.stdout.strip().splitlines()[-1])
                ws[name] += w
                cs[name] += c
        cells = [f"{np.median(ws[n]):.3f} / {np.median(cs[n]):.3f}" for n, _ in runs]
        print(f"{' x '.join(map(str, size)):<16}{r:>13.0f}" + "".join(f"{x:>20}" for x in cells))


def scaling_child(size, r_t: float, repeats: int) -> tuple[list[float], list[float]]:
    import SimpleITK as sitk

    from napari_ablation.core.margin import analyze_margin, sphere_image

    size, sp = np.asarray(size), np.asarray((0.7, 0.7, 1.0))
    origin = -size * sp / 2 + np.array([0.37, -0.21, 0.43]) * sp
    c_t = np.array([12.3, -8.7, 5.1])
    u = np.array([0.6, -0.5, 0.62]) / np.linalg.norm([0.6, -0.5, 0.62])
    tumor = sphere_image(size, sp, origin, c_t, r_t)
    T = sitk.Euler3DTransform()
    T.SetCenter(c_t.tolist())
    T.SetRotation(0.05, -0.08, 0.12)
    T.SetTranslation((6.0, -4.0, 9.0))
    c_post = np.asarray(T.TransformPoint((c_t + OFFSET * u).tolist()))
    ablation = sphere_image(size, sp, origin + [3.1, -2.2, 1.7], c_post, r_t + MARGIN + OFFSET)
    analyze_margin(tumor, ablation, T, 5.0)
    ws, cs = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        analyze_margin(tumor, ablation, T, 5.0)
        ws.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    return ws, cs


def first_call_child() -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    from napari_ablation.core.margin import analyze_margin

    t1, c1 = time.perf_counter(), time.process_time()
    tumor, ablation, T, _truth = make_case("MRI")
    out = {"import": (t1 - t0, c1 - c0)}
    for key in ("first", "second"):
        t0, c0 = time.perf_counter(), time.process_time()
        analyze_margin(tumor, ablation, T, 5.0)
        out[key] = (time.perf_counter() - t0, time.process_time() - c0)
    return out


def first_call(rounds: int) -> None:
    """Import and first analyses of fresh processes, cold (empty numba cache) and warm."""
    import tempfile

    print("fresh process, MRI case: wall s / CPU s")
    print(f"{'numba cache':<14}{'import':>16}{'first analysis':>18}{'second analysis':>18}")
    with tempfile.TemporaryDirectory() as cache:
        for label in ["empty (compile)"] + ["filled"] * rounds:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            out = subprocess.run(
                [sys.executable, __file__, "--first-call-child"],
                capture_output=True,
                text=True,
                env=env,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            cells = [f"{r[k][0]:.2f} / {r[k][1]:.2f}" for k in ("import", "first", "second")]
            print(f"{label:<14}{cells[0]:>16}{cells[1]:>18}{cells[2]:>18}")


def sample_threads(pid: int) -> None:
    """Print, once stdin closes, how often 0, 1, 2, ... threads of ``pid`` were runnable
    (sampled every millisecond, at a low priority)."""
    import select

    os.nice(10)
    counts = [0] * 8
    task = f"/proc/{pid}/task"
    while not select.select([sys.stdin], [], [], 0.001)[0]:
        n = 0
        for t in os.listdir(task):
            try:
                with open(f"{task}/{t}/stat") as fh:
                    st = fh.read()
            except OSError:  # the thread ended
                continue
            n += st[st.rindex(")") + 2] == "R"
        counts[min(n, 7)] += 1
    print(json.dumps(counts))


def child(method: str, case: str, repeats: int) -> dict:
    tumor, ablation, T, truth = make_case(case)
    fn = {
        "napari-ablation": run_ours,
        "before": run_ours,
        "one-thread": lambda *a: run_ours(*a, threads=1),
        "naive": run_naive,
    }[method]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, cpus = [], []
    if method != "naive":
        fn(tumor, ablation, T)  # warm-up (imports, caches)

    def sampler():
        return subprocess.Popen(
            [sys.executable, __file__, "--sample-threads", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    # timed without the sampler, which wakes every millisecond and takes a share of a core (on
    # 2 cores a third runnable thread beside the engine's two: MRI lost about 4 % of its wall
    # time to it, benchmarks/README.md, round 9); the engine's runnable count comes from as
    # many more runs (not for the naive baseline, seconds a run: its count is not reported)
    for _ in range(repeats):  # timed without tracemalloc, which slows every allocation
        t0, c0 = time.perf_counter(), time.process_time()
        mtm = fn(tumor, ablation, T)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    runnable = float("nan")
    if method != "naive":
        sampling = sampler()
        for _ in range(repeats):
            fn(tumor, ablation, T)
        counts = json.loads(sampling.communicate("")[0])
        runnable = sum(k * c for k, c in enumerate(counts)) / max(sum(counts[1:]), 1)
    tracemalloc.start()  # one more run for the numpy peak
    fn(tumor, ablation, T)
    _cur, peak_tm = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "method": method,
        "case": case,
        "times": times,
        "cpus": cpus,
        "time_s": float(np.median(times)),
        "cpu_s": float(np.median(cpus)),
        "n": repeats,
        "peak_rss_mb": rss,
        "rss_inputs_mb": rss0,
        "peak_numpy_mb": peak_tm / 2**20,
        "runnable": runnable,
        "mtm": mtm,
        "error": mtm - truth,
    }


def _merge_rounds(rows: list[dict]) -> list[dict]:
    """One row per (method, case): the medians over every round's runs."""
    merged: dict[tuple[str, str], dict] = {}
    for r in rows:
        m = merged.setdefault((r["method"], r["case"]), dict(r, times=[], cpus=[]))
        m["times"] += r["times"]
        m["cpus"] += r["cpus"]
        m["peak_rss_mb"] = max(m["peak_rss_mb"], r["peak_rss_mb"])
        m.setdefault("runnables", []).append(r["runnable"])
    for m in merged.values():
        m["time_s"], m["cpu_s"] = float(np.median(m["times"])), float(np.median(m["cpus"]))
        m["n"] = len(m["times"])
        m["runnable"] = float(np.median(m["runnables"]))
    return list(merged.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--accuracy", action="store_true", help="MTM error on random analytic spheres")
    ap.add_argument("--scaling", action="store_true", help="time against tumor size and image size")
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "CASE", "N"))
    ap.add_argument("--before", metavar="SRC", help="also time the engine of this source tree")
    ap.add_argument(
        "--rounds", type=int, default=3, help="with --before: alternating child processes each"
    )
    ap.add_argument(
        "--one-thread", action="store_true", help="also this engine on one thread, alternating"
    )
    ap.add_argument(
        "--first-call", action="store_true", help="a fresh process's import and first analysis"
    )
    ap.add_argument(
        "--case", action="append", choices=sorted(CASES), help="only these cases (repeatable)"
    )
    ap.add_argument("--no-naive", action="store_true", help="without the naive full-volume EDT")
    ap.add_argument("--first-call-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scaling-child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--sample-threads", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sample_threads:
        sample_threads(args.sample_threads)
        return 0
    if args.first_call_child:
        print(json.dumps(first_call_child()))
        return 0
    if args.first_call:
        first_call(args.rounds)
        return 0
    if args.scaling_child:
        *size, r, n = args.scaling_child
        print(json.dumps(scaling_child([int(v) for v in size], float(r), int(n))))
        return 0
    if args.scaling:
        scaling(before=args.before, rounds=args.rounds if args.before else 1)
        return 0
    if args.accuracy:
        accuracy()
        return 0
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return 0
    cases = ["MRI"] if args.quick else ["MRI", "CT", "CT60"]
    if args.case:
        cases = [c for c in ["MRI", "CT", "CT60"] if c in args.case]
    plan = []
    for case in cases:
        # with --before, the two engines alternate, ``rounds`` child processes each, so that a
        # change of the machine's load during the run weighs on both alike
        for _ in range(args.rounds if args.before or args.one_thread else 1):
            if args.before:
                plan.append(("before", case, 3 if args.quick else 5))
            if args.one_thread:
                plan.append(("one-thread", case, 3 if args.quick else 5))
            plan.append(("napari-ablation", case, 3 if args.quick else 5))
        if case != "CT60" and not args.no_naive:  # (512 x 512 x 300: minutes)
            plan.append(("naive", case, 1 if case == "CT" or args.quick else 3))
    env = dict(
        os.environ,
        OMP_NUM_THREADS="2",
        OPENBLAS_NUM_THREADS="2",
        ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="2",
    )
    rows = []
    for method, case, n in plan:
        child_env = env
        if method == "before":
            child_env = dict(env, PYTHONPATH=args.before)
        out = subprocess.run(
            [sys.executable, __file__, "--child", method, case, str(n)],
            capture_output=True,
            text=True,
            env=child_env,
        )
        if out.returncode != 0:
            print(f"{method} {case}: failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = _merge_rounds(rows)
    print(f"true MTM {MARGIN} mm, 3 cm tumor, rigid pre->post transform, 2 threads")
    hdr = (
        f"{'method':<16}{'case':<5}{'time (s)':>10}{'CPU (s)':>9}{'N':>3}{'peak RSS MB':>13}"
        f"{'inputs MB':>11}{'numpy peak MB':>15}{'MTM mm':>9}{'error mm':>10}"
        f"{'runnable':>9}{'CPU/runnable':>13}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['method']:<16}{r['case']:<5}{r['time_s']:>10.3f}{r['cpu_s']:>9.3f}{r['n']:>3}"
            f"{r['peak_rss_mb']:>13.0f}{r['rss_inputs_mb']:>11.0f}{r['peak_numpy_mb']:>15.0f}"
            f"{r['mtm']:>9.2f}{r['error']:>+10.2f}"
            f"{r['runnable']:>9.2f}{r['cpu_s'] / r['runnable']:>13.3f}"
        )
    by = {(r["method"], r["case"]): r for r in rows}
    for case in cases:
        nv = by.get(("naive", case))
        for m in ("before", "one-thread", "napari-ablation"):
            a = by.get((m, case))
            if a and nv:
                print(
                    f"{case}: {m} {nv['time_s'] / a['time_s']:.0f}x faster (wall), "
                    f"{nv['cpu_s'] / a['cpu_s']:.0f}x less CPU than the naive full-volume EDT"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
