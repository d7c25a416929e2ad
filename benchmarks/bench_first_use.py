"""The first margin analysis after an install: numba compiling the engine's kernels.

    python benchmarks/bench_first_use.py --cli [--before SRC] [--rounds N]
    xvfb-run -a python benchmarks/bench_first_use.py --gui [--before SRC] [--delay S]
    python benchmarks/bench_first_use.py --kernels [--before SRC]

``--cli``: ``napari-ablation margin`` on the renal MRI sample in a fresh process, with an
empty numba cache (``NUMBA_CACHE_DIR`` a new folder: the first run after an install) and
then with the cache that run filled; wall time and the CPU time of the process and its
children. ``--gui``: a viewer with the sample open and the Margins panel; "Compute margins"
pressed ``--delay`` seconds after the case opened (0: at once, the worst case); the time
from the click to the MTM line (the result shown), and the longest gap of a 5 ms heartbeat
on the Qt event loop (a GUI stall) during the delay (the warm-up running, if any) and from
the click to the MTM, cold and warm, each row in a process of its own. ``--kernels``: each
kernel compiled alone in a fresh process on an empty cache (CPU seconds, after numba's
one-off start-up, which is given apart). With ``--before SRC`` the
same rows for another source tree (e.g. ``/work/main/src``) alternate with this one's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parent / "src")
SAMPLE = HERE.parent / "sample_data" / "renal_mri"


def _env(src: str, cache: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=src)
    env["NAPARI_ABLATION_CASES"] = tempfile.mkdtemp()
    return env


def _timed(cmd, env) -> tuple[float, float, subprocess.CompletedProcess]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out


def cli(versions: dict[str, str], rounds: int) -> None:
    cmd = [sys.executable, "-m", "napari_ablation.cli", "margin"]
    cmd += ["--tumor", str(SAMPLE / "tumor.nii.gz"), "--ablation", str(SAMPLE / "ablation.nii.gz")]
    cmd += ["--transform", str(SAMPLE / "true_transform.tfm")]
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for name, src in versions.items():
            with tempfile.TemporaryDirectory() as cache:
                for state in ("cold", "warm"):
                    wall, cpu, out = _timed(cmd, _env(src, cache))
                    if out.returncode != 0:
                        raise SystemExit(out.stderr)
                    rows.setdefault((name, state), []).append((wall, cpu))
                    if state == "cold":
                        print(f"{name} cold stderr: {out.stderr.strip()!r}")
    print(f"\nCLI margin, renal MRI sample: median of {rounds} (wall s / CPU s incl. children)")
    for (name, state), v in rows.items():
        w, c = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
        print(f"{name:<8}{state:<6}{w:>8.1f} / {c:.1f}")


def gui_child(delay: float) -> dict:
    sys.path.insert(0, str(HERE.parent / "tests"))
    import _gui
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_ablation.core import samples
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.session import CaseSession

    def wait(ms):
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    viewer = napari.Viewer(show=True)
    w = MarginWidget(viewer)
    viewer.window.add_dock_widget(w, name="Margins")
    session = CaseSession.of(viewer)
    session.set_case(samples.load_sample("renal_mri"), Path(tempfile.mkdtemp()) / "case")
    w.load_transform_file(str(samples.sample_dir() / "renal_mri" / "true_transform.tfm"))
    wait(2000)  # (the case's layers drawn)
    idle = _gui.StallMeter()  # the user looks at the case: the warm-up runs, if any
    with idle:
        t_open = time.perf_counter()
        while time.perf_counter() - t_open < delay:
            wait(20)
    meter = _gui.StallMeter()
    with meter:
        t0 = time.perf_counter()
        w.run()
        status = w.status.text()
        while not (w.result is not None and w._shown is w.model.analysis):
            wait(5)
            if time.perf_counter() - t0 > 1800:
                raise SystemExit("no MTM")
        t_mtm = time.perf_counter() - t0
    out = {
        "click_to_mtm": t_mtm,
        "stall_ms": meter.longest_ms,
        "idle_stall_ms": idle.longest_ms if delay > 0 else float("nan"),
        "status": status,
    }
    viewer.close()
    return out


def gui(versions: dict[str, str], delay: float, rounds: int) -> None:
    rows: dict[tuple[str, str], list[dict]] = {}
    for _ in range(rounds):
        for name, src in versions.items():
            with tempfile.TemporaryDirectory() as cache:
                for state in ("cold", "warm"):
                    cmd = [sys.executable, __file__, "--gui-child", str(delay)]
                    _w, _c, out = _timed(cmd, _env(src, cache))
                    if out.returncode != 0:
                        raise SystemExit(out.stderr[-2000:])
                    rows.setdefault((name, state), []).append(
                        json.loads(out.stdout.strip().splitlines()[-1])
                    )
    print(f"\nGUI, renal MRI sample, Compute {delay:g} s after the case opened: median of {rounds}")
    print(
        f"{'version':<8}{'cache':<6}{'click -> MTM s':>16}{'longest stall ms':>18}  status at click"
    )
    for (name, state), v in rows.items():
        t = statistics.median(r["click_to_mtm"] for r in v)
        s = statistics.median(r["stall_ms"] for r in v)
        i = statistics.median(r["idle_stall_ms"] for r in v)
        print(f"{name:<8}{state:<6}{i:>22.0f}{t:>16.1f}{s:>22.0f}  {v[0]['status']!r}")


KERNEL_CHILD = r"""
import json, sys, time
import numba
@numba.njit
def _init(x):
    return x + 1
c0 = time.process_time(); _init(1); init = time.process_time() - c0
import importlib.util
import napari_ablation.core
# this branch's warm-up calls, on the kernels of the version on the path
spec = importlib.util.spec_from_file_location("napari_ablation.core.warmup", sys.argv[2])
warmup = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = warmup
spec.loader.exec_module(warmup)
c0 = time.process_time(); warmup.KERNELS[sys.argv[1]][3](); cpu = time.process_time() - c0
print(json.dumps({"init": init, "cpu": cpu}))
"""


def kernels(versions: dict[str, str], rounds: int) -> None:
    sys.path.insert(0, SRC)
    from napari_ablation.core import warmup

    res: dict[tuple[str, str], list[float]] = {}
    inits: list[float] = []
    for _ in range(rounds):
        for k in warmup.KERNELS:
            for name, src in versions.items():
                with tempfile.TemporaryDirectory() as cache:
                    cmd = [sys.executable, "-c", KERNEL_CHILD, k, warmup.__file__]
                    _w, _c, out = _timed(cmd, _env(src, cache))
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    res.setdefault((k, name), []).append(r["cpu"])
                    inits.append(r["init"])
    print(f"\ncompile CPU s per kernel, empty cache, median of {rounds}")
    print(f"{'kernel':<22}" + "".join(f"{n:>10}" for n in versions))
    tot = dict.fromkeys(versions, 0.0)
    for k in warmup.KERNELS:
        cells = []
        for n in versions:
            m = statistics.median(res[(k, n)])
            tot[n] += m
            cells.append(f"{m:>10.2f}")
        print(f"{k:<22}" + "".join(cells))
    print(f"{'total':<22}" + "".join(f"{tot[n]:>10.2f}" for n in versions))
    print(f"numba's start-up (first compilation in a process): {statistics.median(inits):.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", action="store_true")
    ap.add_argument("--gui", action="store_true")
    ap.add_argument("--kernels", action="store_true")
    ap.add_argument("--before", metavar="SRC", help="also this source tree, alternating")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--gui-child", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.gui_child is not None:
        print(json.dumps(gui_child(args.gui_child)))
        return 0
    versions = {"this": SRC}
    if args.before:
        versions = {"before": args.before, **versions}
    if args.kernels:
        kernels(versions, args.rounds)
    if args.cli:
        cli(versions, args.rounds)
    if args.gui:
        gui(versions, args.delay, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
