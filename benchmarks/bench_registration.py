"""Registration benchmark: accuracy and speed on the samples and on breathing phantoms.

    python benchmarks/bench_registration.py [--repeat N] [--seeds 1,2,3] [--ct-seeds 4]
    python benchmarks/bench_registration.py --methods local   # the default method only
    python benchmarks/bench_registration.py --case FOLDER [--case FOLDER ...]
    python benchmarks/bench_registration.py --save-cases DIR   # then: an older tree, --case DIR/*
    python benchmarks/bench_registration.py --heldout   # round 8's held-out phantoms only
    python benchmarks/bench_registration.py --heldout-round7   # round 7's held-out phantoms
    python benchmarks/bench_registration.py --heldout-round6   # round 6's held-out phantoms
    python benchmarks/bench_registration.py --heldout-round5   # round 5's held-out phantoms
    python benchmarks/bench_registration.py --heldout-round4   # round 4's held-out phantoms
    python benchmarks/bench_registration.py --save-cases DIR --generate-only   # images only
    python benchmarks/bench_registration.py --profile-diagnosis 10,15,16   # round 8's table
    xvfb-run -a python benchmarks/bench_registration.py --gui   # + the widget's live update

Prints three tables:

1. automatic registration on the bundled renal MRI and liver CT samples (ice ball or
   coagulation zone, probes, MR bias field, known misalignment) and on breathing phantoms
   (``core.synthetic.synthetic_case(seed, breathing_mm=15)``: the anatomy beyond about
   35 mm of the tumor also moves, non-rigidly, by up to 15 mm): the default local
   registration (metric in a ball around the tumor, ablation zone left out) against the
   whole-image rigid fit (ablation zone also left out) in the same run; CT phantoms also
   with a slice profile (``slice_profile=True``: each slice averages the anatomy over its
   thickness, as a real CT slice does; without it a 5 mm slice is a thin section every
   5 mm, whose texture aliases). Error = mean /
   max of ``|T_est(p) - T_true(p)|`` over pre-space points within 30 mm of the tumor
   centre; on the phantoms the true map there is exactly the rigid ``T_true``. Wall and
   CPU time are medians of ``--repeat`` runs (CPU time is the fairer figure on a shared
   machine).
2. the landmark fit against a brute-force least-squares optimisation (scipy).
3. manual adjustment latency on a synthetic 512 x 512 x 200 case: the live update
   (resample a 60 mm box around the tumor) against a full-volume resample.

Runs on 2 threads (SimpleITK global default), as on the target machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import SimpleITK as sitk

from napari_ablation.core import geometry
from napari_ablation.core import landmarks as lm
from napari_ablation.core import registration as reg
from napari_ablation.core import transform as tfm


def _sample(name: str):
    from napari_ablation.core import samples

    case = samples.load_sample(name)
    return name.replace("_", " ") + " sample", case, samples.true_transform(case)


def _breathing(modality: str, seed: int, amplitude_mm: float, slice_profile: bool = False):
    from napari_ablation.core import synthetic

    kw = {"slice_profile": True} if slice_profile else {}
    case, truth = synthetic.synthetic_case(seed, modality=modality, breathing_mm=amplitude_mm, **kw)
    name = f"breathing {modality.upper()} #{seed} ({amplitude_mm:g} mm)"
    if slice_profile:
        name += ", slice profile"
    case.info["true_transform"] = truth["true_transform"]  # for --save-cases / --case
    return name, case, tfm.euler_from_params(truth["true_transform"])


def _folder(folder: str):
    from napari_ablation.core import samples
    from napari_ablation.core.case import Case

    case = Case.load(folder)
    return folder, case, samples.true_transform(case)


#: the two methods compared on every case: the default (local) registration, and the
#: whole-image rigid fit (ablation zone also left out) as the baseline
METHODS = (
    ("local (default)", lambda case: {"tumor_mask": case.tumor, "moving_exclude": case.ablation}),
    (
        "whole image",
        lambda case: {"roi_radius_mm": None, "moving_exclude": case.ablation},
    ),
)


def bench_cases(
    cases, repeat: int, methods=METHODS, whole_repeat: int | None = None
) -> list[tuple]:
    """Error within 30 mm of the tumor and time, local vs whole image, per case."""
    rows = []
    for name, case, true in cases:
        centre = reg.mask_centroid_lps(case.tumor)
        pts = reg.ball_points(centre, 30.0, step_mm=2.0)
        m0, x0 = reg.target_error(None, true, pts)
        for method, kwargs in methods:
            wall, cpu, res = [], [], None
            n = repeat if whole_repeat is None or method == METHODS[0][0] else whole_repeat
            for _ in range(max(1, n)):
                t0, c0 = time.perf_counter(), time.process_time()
                res = reg.register_rigid(case.pre, case.post, **kwargs(case))
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            mean, worst = reg.target_error(res.transform, true, pts)
            rows.append(
                (
                    name,
                    f"{m0:.2f} / {x0:.2f}",
                    method,
                    mean,
                    worst,
                    statistics.median(wall),
                    statistics.median(cpu),
                    res.roi_radius_mm,
                    # absent before the bias matching existed (a run on an older tree)
                    getattr(res, "bias_matched", None),
                )
            )
    print(
        "\n## Automatic registration: error within 30 mm of the tumor centre "
        "(points 2 mm apart) against the true transform"
    )
    print(
        "| case | before: mean / max (mm) | method | mean (mm) | max (mm) "
        "| wall time (s, median) | CPU time (s, median) | region radius (mm) | bias matched |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, before, method, mean, worst, wall, cpu, radius, matched in rows:
        r = "whole" if radius is None else f"{radius:.0f}"
        b = "-" if matched is None else ("yes" if matched else "no")
        print(
            f"| {name} | {before} | {method} | {mean:.2f} | {worst:.2f} "
            f"| {wall:.2f} | {cpu:.2f} | {r} | {b} |"
        )
    local = [r for r in rows if r[2] == METHODS[0][0]]
    if not local:
        return rows
    print(
        f"\nlocal (default): largest max error {max(r[4] for r in local):.2f} mm, "
        f"longest median wall time {max(r[5] for r in local):.2f} s "
        f"(CPU {max(r[6] for r in local):.2f} s); target max <= 0.5 mm in <= 1.5 s"
    )
    return rows


def bench_landmarks() -> None:
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    print("\n## Landmark fit (SVD) against brute-force least squares (scipy.optimize)")
    print(
        "| pairs | noise (mm) | max |T_svd(p) - T_brute(p)| (mm) "
        "| SSE svd | SSE brute | svd time (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, noise in ((3, 0.0), (4, 1.0), (8, 2.0), (20, 1.5)):
        true = sitk.Euler3DTransform()
        true.SetRotation(*np.radians(rng.uniform(-10, 10, 3)))
        true.SetTranslation(rng.uniform(-10, 10, 3).tolist())
        p = rng.uniform(-60, 60, (n, 3))
        q = tfm.transform_points(true, p) + rng.normal(0, noise, (n, 3))
        fixed = {str(i): v for i, v in enumerate(p)}
        moving = {str(i): v for i, v in enumerate(q)}
        t0 = time.perf_counter()
        fit = lm.fit_landmarks(fixed, moving)
        dt = 1000 * (time.perf_counter() - t0)
        pp = fit.fixed
        qq = fit.moving

        def resid(x, pp=pp, qq=qq):
            return (pp @ Rotation.from_rotvec(x[:3]).as_matrix().T + x[3:] - qq).ravel()

        sol = least_squares(resid, np.zeros(6), xtol=1e-15, ftol=1e-15, gtol=1e-15)
        grid = rng.uniform(-80, 80, (200, 3))
        brute = grid @ Rotation.from_rotvec(sol.x[:3]).as_matrix().T + sol.x[3:]
        diff = np.abs(tfm.transform_points(fit.transform, grid) - brute).max()
        sse = float(np.sum((tfm.transform_points(fit.transform, pp) - qq) ** 2))
        print(
            f"| {n} | {noise:.1f} | {diff:.2e} | {sse:.4f} "
            f"| {float(np.sum(sol.fun**2)):.4f} | {dt:.2f} |"
        )


def bench_live(repeat: int) -> None:
    shape = (200, 512, 512)  # z, y, x
    spacing = (1.5, 0.75, 0.75)
    rng = np.random.default_rng(1)
    arr = rng.normal(0, 1, (50, 128, 128)).astype(np.float32)
    small = geometry.image_from_array(arr, (6.0, 3.0, 3.0), (0, 0, 0))
    pre = geometry.image_from_array(np.zeros(shape, np.int16), spacing, (0, 0, 0))
    post = sitk.Cast(
        sitk.Resample(
            sitk.SmoothingRecursiveGaussian(small, 4.0), pre, sitk.Transform(), sitk.sitkLinear
        )
        * 1000,
        sitk.sitkInt16,
    )
    centre = geometry.index_to_lps(pre, (100, 256, 256))
    layer = sitk.GetArrayFromImage(post)
    box = reg.region_box(pre, centre, reg_half := 30.0)
    live = []
    for i in range(max(10, repeat * 10)):
        tx = reg.adjust(None, (0.1 * i, 0, 0), (0, 0, 0.1 * i), centre)
        t0 = time.perf_counter()
        part = reg.resample_region(post, pre, tx, box)
        layer[box] = part
        live.append(1000 * (time.perf_counter() - t0))
    full = []
    for _ in range(max(1, repeat)):
        tx = reg.adjust(None, (0.5, 0, 0), (0, 0, 0.5), centre)
        t0 = time.perf_counter()
        reg.registered(post, pre, tx, default=0.0)
        full.append(1000 * (time.perf_counter() - t0))
    n_box = int(np.prod([s.stop - s.start for s in box]))
    print(
        f"\n## Manual adjustment, synthetic {shape[2]} x {shape[1]} x {shape[0]} case "
        f"({spacing[2]} x {spacing[1]} x {spacing[0]} mm)"
    )
    print("| update | voxels | median (ms) | max (ms) |")
    print("|---|---|---|---|")
    print(
        f"| live: {2 * reg_half:.0f} mm box around the tumor | {n_box} "
        f"| {statistics.median(live):.1f} | {max(live):.1f} |"
    )
    print(
        f"| full volume (baseline; done once the value settles) | {int(np.prod(shape))} "
        f"| {statistics.median(full):.1f} | {max(full):.1f} |"
    )


def bench_widget_live() -> None:
    """The same 512 x 512 x 200 case in a real viewer: slider move -> overlay updated and drawn."""
    import os
    import tempfile

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_ablation.core.case import Case
    from napari_ablation.widgets.register import RegisterWidget
    from napari_ablation.widgets.session import CaseSession

    os.environ.setdefault("NAPARI_ABLATION_CASES", tempfile.mkdtemp())
    shape, spacing = (200, 512, 512), (1.5, 0.75, 0.75)
    rng = np.random.default_rng(0)
    small = geometry.image_from_array(
        rng.normal(0, 1, (50, 128, 128)).astype(np.float32), (6, 3, 3), (0, 0, 0)
    )
    ref = geometry.image_from_array(np.zeros(shape, np.int16), spacing, (0, 0, 0))
    img = sitk.Cast(
        sitk.Resample(
            sitk.SmoothingRecursiveGaussian(small, 4.0), ref, sitk.Transform(), sitk.sitkLinear
        )
        * 1000,
        sitk.sitkInt16,
    )
    tumor = np.zeros(shape, np.uint8)
    tumor[95:105, 250:262, 250:262] = 1
    viewer = napari.Viewer()
    CaseSession.of(viewer).set_case(
        Case(pre=img, post=img, tumor=geometry.like(tumor, img), info={"name": "bench"}),
        None,
        save_images=False,
    )
    w = RegisterWidget(viewer)
    viewer.window.add_dock_widget(w)
    app = QApplication.instance()
    w.update_overlay(full=True, wait=True)
    for _ in range(10):
        app.processEvents()
    events = []
    for i in range(30):
        t0 = time.perf_counter()
        w.manual["tx"].slider.setValue(i * 3)
        app.processEvents()  # includes drawing the canvas
        events.append(1000 * (time.perf_counter() - t0))
    while w.busy:
        app.processEvents()
        time.sleep(0.01)
    print("\n## Manual adjustment in a real viewer (512 x 512 x 200, under xvfb)")
    print("| step | median (ms) | max (ms) |")
    print("|---|---|---|")
    print(
        "| overlay update (resample 60 mm box + paste + refresh) "
        f"| {statistics.median(w.live_timings_ms):.1f} | {max(w.live_timings_ms):.1f} |"
    )
    print(
        "| whole slider event incl. canvas redraw "
        f"| {statistics.median(events):.1f} | {max(events):.1f} |"
    )
    viewer.close()


#: round 8's held-out set, drawn before any tuning of that round and first run once its
#: settings were frozen and committed (``--heldout``): breathing CT phantoms with a slice
#: profile and breathing MRI phantoms whose seeds no earlier round used
HELDOUT_CT_PROFILE_SEEDS = (50, 51, 52, 53, 54, 55, 56, 57)
HELDOUT_MRI_SEEDS = (26, 27)
#: round 7's held-out set (``--heldout-round7``), run once after that round's settings were
#: frozen; since then a check that nothing broke
HELDOUT_R7_CT_PROFILE_SEEDS = (42, 43, 44, 45, 46, 47, 48, 49)
HELDOUT_R7_MRI_SEEDS = (23, 24, 25)
#: round 6's held-out set (``--heldout-round6``), run once after that round's settings were
#: frozen; since then a check that nothing broke
HELDOUT_R6_CT_PROFILE_SEEDS = (34, 35, 36, 37, 38, 39, 40, 41)
HELDOUT_R6_MRI_SEEDS = (20, 21, 22)
#: round 5's held-out set (``--heldout-round5``), run once after that round's settings were
#: frozen; since then a check that nothing broke
HELDOUT_R5_CT_PROFILE_SEEDS = (26, 27, 28, 29, 30, 31, 32, 33)
HELDOUT_R5_MRI_SEEDS = (17, 18, 19)
#: round 4's held-out set (``--heldout-round4``), run once after that round's settings were
#: frozen; since then a check that nothing broke
HELDOUT_R4_CT_PROFILE_SEEDS = (18, 19, 20, 21, 22, 23, 24, 25)
HELDOUT_R4_MRI_SEEDS = (14, 15, 16)


#: the variants of ``--profile-diagnosis``: what each changes in the generator, same seed
PROFILE_VARIANTS = (
    ("as generated", {}),
    ("slabs parallel (no rotation)", {"rotation": False}),
    ("no interpolation at the truth", {"rotation": False, "aligned": True}),
    ("no slice profile (thin sections)", {"slice_profile": False}),
    ("no breathing", {"breathing_mm": 0.0}),
)


def _ct_variant(seed: int, rotation=True, aligned=False, **kw):
    """A breathing CT phantom with a slice profile, optionally without the rotation of ``T``
    (pre's and post's slabs parallel) and with post's grid pre's moved by ``T`` (every pre
    voxel centre lands on a post voxel centre at the truth). The generator's random
    streams are untouched: the lesion, the anatomy and the translation are the seed's."""
    from napari_ablation.core import synthetic

    rigid, grid_around = synthetic._rigid, synthetic._grid_around
    made, grids = [], []

    def no_rotation(axis, angle, shift, centre):
        made.append(rigid(axis, 0.0, shift, centre))
        return made[-1]

    def post_on_pre(centre, half, spacing, rng):
        grids.append(grid_around(centre, half, spacing, rng))  # draws as the generator does
        if len(grids) == 2:
            off = tfm.matrix_offset(made[-1])[1]
            pre = grids[0]
            return synthetic.Grid(
                pre.size, pre.spacing, tuple(float(o) for o in np.asarray(pre.origin) + off)
            )
        return grids[-1]

    if not rotation:
        synthetic._rigid = no_rotation
    if aligned:
        synthetic._grid_around = post_on_pre
    try:
        case, truth = synthetic.synthetic_case(seed, modality="ct", **{"slice_profile": True, **kw})
    finally:
        synthetic._rigid, synthetic._grid_around = rigid, grid_around
    return case, tfm.euler_from_params(truth["true_transform"])


def bench_profile_diagnosis(seeds, breathing_mm: float) -> None:
    """Max error within 30 mm of the default registration on variants of each CT phantom,
    and whether the finest level's metric is lower at the found ``T`` than at the truth
    (then the optimum itself is off; else the optimizer stopped short of the truth)."""
    print(
        "\n## CT phantoms with a slice profile: max error (mm) of the default registration on "
        "variants of the same seed (registration round 8)"
    )
    print(
        "| seed | " + " | ".join(name for name, _ in PROFILE_VARIANTS) + " | metric found - truth |"
    )
    print("|---" * (len(PROFILE_VARIANTS) + 2) + "|")
    for seed in seeds:
        cells, delta = [], ""
        for _name, kw in PROFILE_VARIANTS:
            case, true = _ct_variant(seed, **{"breathing_mm": breathing_mm, **kw})
            pts = reg.ball_points(reg.mask_centroid_lps(case.tumor), 30.0, step_mm=2.0)
            args = {"tumor_mask": case.tumor, "moving_exclude": case.ablation}
            res = reg.register_rigid(case.pre, case.post, **args)
            cells.append(f"{reg.target_error(res.transform, true, pts)[1]:.2f}")
            if not delta:
                finest = {"shrink_factors": (1,), "smoothing_sigmas": (0.0,), "iterations": 0}
                at = [
                    reg.register_rigid(case.pre, case.post, initial=t, **finest, **args)
                    for t in (true, res.transform)
                ]
                delta = f"{at[1].metric_before - at[0].metric_before:+.1e}"
        print(f"| CT #{seed} | " + " | ".join(cells) + f" | {delta} |")


def _slug(name: str) -> str:
    """Folder name of a generated case (``--save-cases``)."""
    slug = name.split(" (")[0].replace(" ", "_").replace("#", "")
    return slug + ("_profile" if name.endswith("slice profile") else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--case", action="append", help="a case folder with info.true_transform (repeatable)"
    )
    ap.add_argument(
        "--seeds",
        default="1,2,3,5,7,8,9,10,11,12,13",
        help="seeds of the breathing MRI phantoms (CT: --ct-seeds)",
    )
    ap.add_argument("--ct-seeds", default="4,5,8,9")
    ap.add_argument(
        "--profile-ct-seeds",
        default="4,5,8,9,10,11,12,13,14,15,16,17",
        help="seeds of breathing CT phantoms whose slices average the anatomy over their "
        "thickness (synthetic_case(slice_profile=True))",
    )
    ap.add_argument(
        "--save-cases",
        metavar="DIR",
        help="also write every generated phantom as a case folder in DIR (with "
        "info.true_transform), so that another tree can be run on the same images (--case)",
    )
    ap.add_argument(
        "--whole-repeat", type=int, help="repeats of the whole-image baseline (default --repeat)"
    )
    ap.add_argument(
        "--methods",
        default="local,whole",
        help="local (the default registration) and/or whole (the whole-image baseline)",
    )
    ap.add_argument(
        "--heldout",
        action="store_true",
        help="run round 8's held-out set only (HELDOUT_CT_PROFILE_SEEDS with a slice profile, "
        "HELDOUT_MRI_SEEDS), no sample",
    )
    ap.add_argument(
        "--heldout-round7",
        action="store_true",
        help="run round 7's held-out set only (HELDOUT_R7_CT_PROFILE_SEEDS, HELDOUT_R7_MRI_SEEDS)",
    )
    ap.add_argument(
        "--heldout-round6",
        action="store_true",
        help="run round 6's held-out set only (HELDOUT_R6_CT_PROFILE_SEEDS, HELDOUT_R6_MRI_SEEDS)",
    )
    ap.add_argument(
        "--heldout-round5",
        action="store_true",
        help="run round 5's held-out set only (HELDOUT_R5_CT_PROFILE_SEEDS, HELDOUT_R5_MRI_SEEDS)",
    )
    ap.add_argument(
        "--heldout-round4",
        action="store_true",
        help="run round 4's held-out set only (HELDOUT_R4_CT_PROFILE_SEEDS, HELDOUT_R4_MRI_SEEDS)",
    )
    ap.add_argument(
        "--generate-only",
        action="store_true",
        help="with --save-cases: write the case folders (samples included) and register nothing",
    )
    ap.add_argument(
        "--profile-diagnosis",
        metavar="SEEDS",
        help="only the diagnosis table of CT phantoms with a slice profile (seeds, comma "
        "separated): the same seed as generated, with parallel slabs, with no interpolation at "
        "the truth, without the profile and without breathing",
    )
    ap.add_argument("--breathing-mm", type=float, default=15.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-sample", action="store_true")
    ap.add_argument(
        "--gui",
        action="store_true",
        help="also time the widget in a real viewer (run under xvfb-run)",
    )
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    print(f"SimpleITK {sitk.Version.VersionString()}, {args.threads} threads")
    if args.profile_diagnosis:
        seeds = [int(k) for k in args.profile_diagnosis.split(",") if k]
        bench_profile_diagnosis(seeds, args.breathing_mm)
        return 0
    if not args.skip_sample:
        if args.case:
            cases = [_folder(f) for f in args.case]
        elif (
            args.heldout
            or args.heldout_round7
            or args.heldout_round6
            or args.heldout_round5
            or args.heldout_round4
        ):
            if args.heldout:
                mri, ct = HELDOUT_MRI_SEEDS, HELDOUT_CT_PROFILE_SEEDS
            elif args.heldout_round7:
                mri, ct = HELDOUT_R7_MRI_SEEDS, HELDOUT_R7_CT_PROFILE_SEEDS
            elif args.heldout_round6:
                mri, ct = HELDOUT_R6_MRI_SEEDS, HELDOUT_R6_CT_PROFILE_SEEDS
            elif args.heldout_round5:
                mri, ct = HELDOUT_R5_MRI_SEEDS, HELDOUT_R5_CT_PROFILE_SEEDS
            else:
                mri, ct = HELDOUT_R4_MRI_SEEDS, HELDOUT_R4_CT_PROFILE_SEEDS
            cases = [_breathing("mri", k, args.breathing_mm) for k in mri]
            cases += [_breathing("ct", k, args.breathing_mm, slice_profile=True) for k in ct]
        else:
            cases = [_sample("renal_mri"), _sample("liver_ct")]
            cases += [
                _breathing("mri", int(k), args.breathing_mm) for k in args.seeds.split(",") if k
            ]
            cases += [
                _breathing("ct", int(k), args.breathing_mm) for k in args.ct_seeds.split(",") if k
            ]
            cases += [
                _breathing("ct", int(k), args.breathing_mm, slice_profile=True)
                for k in args.profile_ct_seeds.split(",")
                if k
            ]
        if args.save_cases and not args.case:
            import pathlib

            for name, case, _true in cases:
                case.save(pathlib.Path(args.save_cases) / _slug(name))
        if args.generate_only:
            return 0
        wanted = {m.strip() for m in args.methods.split(",")}
        methods = [m for m in METHODS if m[0].split()[0] in wanted]
        bench_cases(cases, args.repeat, methods, args.whole_repeat)
    bench_landmarks()
    bench_live(args.repeat)
    if args.gui:
        bench_widget_live()
    return 0


if __name__ == "__main__":
    sys.exit(main())
