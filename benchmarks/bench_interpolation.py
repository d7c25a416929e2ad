"""Benchmark: slice interpolation accuracy and speed, and the cost of the live readout.

Run: ``python benchmarks/bench_interpolation.py`` (add ``--gui`` under ``xvfb-run -a`` for
brushing, the live readout and the autosave in a real viewer on a 512 x 512 x 300 volume;
``--gui-only`` for that table alone). Prints tables
comparing the plugin's method (per-slice signed distance in mm, PCHIP profile along the axis)
with two baselines measured in the same run: linear blending of the same signed distances
(napari-label-interpolator's approach) and nearest-annotated-slice copy.

Dice is measured between the first and last annotated slice against the full analytic
shape. Bars (issue 4): tilted ellipsoid every 5th slice >= 0.97; kidney-like shape
every 3rd slice of a 2 mm grid >= 0.95; 100 x 110 x 70 volume in <= 0.2 s.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from napari_ablation.core import geometry, phantoms
from napari_ablation.core import segmentation as seg
from napari_ablation.core.interpolation import annotated_slices, dice, interpolate_slices

METHODS = {"pchip SDF (ours)": "pchip", "linear SDF": "linear", "nearest slice": "nearest"}


tilted_ellipsoid = phantoms.tilted_ellipsoid
kidney = phantoms.kidney


def sparse(mask, axis, step):
    present = annotated_slices(mask.astype(np.uint8), axis)
    keep = np.arange(present[0] + 1, present[-1], step)
    out = np.zeros(mask.shape, np.uint8)
    np.moveaxis(out, axis, 0)[keep] = np.moveaxis(mask, axis, 0)[keep]
    return out, keep


def timed(fn, repeat=5):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def accuracy_table():
    cases = [
        (
            "tilted ellipsoid, 1 mm iso, every 5th, axis z",
            tilted_ellipsoid(),
            (1.0, 1.0, 1.0),
            0,
            5,
            0.97,
        ),
        (
            "tilted ellipsoid, 1 mm iso, every 5th, axis y",
            tilted_ellipsoid(),
            (1.0, 1.0, 1.0),
            1,
            5,
            0.97,
        ),
        (
            "tilted ellipsoid, 1 mm iso, every 5th, axis x",
            tilted_ellipsoid(),
            (1.0, 1.0, 1.0),
            2,
            5,
            0.97,
        ),
        (
            "tilted ellipsoid, 0.8x0.8x3 mm, every 2nd, z",
            tilted_ellipsoid((27, 100, 100), (3.0, 0.8, 0.8), (22, 28, 16)),
            (3.0, 0.8, 0.8),
            0,
            2,
            None,
        ),
        ("kidney-like, 1x1x2 mm, every 3rd, axis z", kidney(), (2.0, 1.0, 1.0), 0, 3, 0.95),
        ("kidney-like, 1x1x2 mm, every 3rd, axis x", kidney(), (2.0, 1.0, 1.0), 2, 3, None),
    ]
    print("\n## Interpolation accuracy (Dice between first and last annotated slice)\n")
    print("| phantom | " + " | ".join(METHODS) + " | bar |")
    print("|---|" + "---|" * (len(METHODS) + 1))
    for name, truth, sp, axis, step, bar in cases:
        labels, keep = sparse(truth, axis, step)
        row = []
        for method in METHODS.values():
            out = interpolate_slices(labels, axis, sp, method=method)
            t = np.moveaxis(truth, axis, 0)[keep[0] : keep[-1] + 1]
            r = np.moveaxis(out, axis, 0)[keep[0] : keep[-1] + 1]
            assert np.array_equal(
                np.moveaxis(out, axis, 0)[keep], np.moveaxis(labels, axis, 0)[keep]
            )
            row.append(f"{dice(t, r):.4f}")
        bar_text = f">= {bar:.2f}" if bar else "-"
        print(f"| {name} | " + " | ".join(row) + f" | {bar_text} |")


def timing_table():
    truth = tilted_ellipsoid()  # (70, 110, 100) = a 100 x 110 x 70 volume
    labels, _keep = sparse(truth, 0, 5)
    print("\n## Interpolation time, 100 x 110 x 70 volume, every 5th slice (median of 5, s)\n")
    print("| method | time (s) | bar |")
    print("|---|---|---|")
    interpolate_slices(labels, 0, (1, 1, 1))  # warm the imports
    for name, method in METHODS.items():
        _out, t = timed(
            lambda method=method: interpolate_slices(labels, 0, (1, 1, 1), method=method)
        )
        print(f"| {name} | {t:.4f} | <= 0.2 |")
    big = np.zeros((300, 512, 512), np.uint8)
    big[115:185, 201:311, 206:306] = labels
    _out, t = timed(lambda: interpolate_slices(big, 0, (1, 1, 1)), repeat=3)
    print(f"| pchip SDF (ours), same object in 512 x 512 x 300, new full array | {t:.4f} | - |")
    from napari_ablation.core.interpolation import interpolate_box

    _out, t = timed(lambda: interpolate_box(big, 0, (1, 1, 1)), repeat=3)
    print(
        "| pchip SDF (ours), 512 x 512 x 300, changed box only (what the widget does) | "
        f"{t:.4f} | - |"
    )


def readout_table():
    sp = (2.5, 0.8, 0.8)
    big = np.zeros((300, 512, 512), np.uint8)
    z, y, x = np.ogrid[:300, :512, :512]
    big[((z - 150) / 16.0) ** 2 + ((y - 256) / 50.0) ** 2 + ((x - 256) / 40.0) ** 2 <= 1] = 1
    print("\n## Live readout on 512 x 512 x 300 (median of 5, s)\n")
    print("| quantity | ours | baseline | baseline method |")
    print("|---|---|---|---|")
    seg.max_diameter_mm(big, sp)
    _v, t_ours = timed(lambda: seg.mask_volume_ml(big, sp))
    _v, t_base = timed(lambda: float((big == 1).sum()) * np.prod(sp) / 1000)
    print(f"| volume (ml) | {t_ours:.4f} | {t_base:.4f} | (data == 1).sum() |")
    _b, t_ours = timed(lambda: seg.bbox(big))
    _b, t_base = timed(lambda: geometry.crop_box(big, sp, 0), repeat=3)
    print(f"| bounding box | {t_ours:.4f} | {t_base:.4f} | np.nonzero (geometry.crop_box) |")
    _d, t_ours = timed(lambda: seg.max_diameter_mm(big, sp))

    def hull_full():
        from scipy import ndimage
        from scipy.spatial import ConvexHull
        from scipy.spatial.distance import pdist

        m = big.astype(bool)
        surf = m & ~ndimage.binary_erosion(m)
        pts = np.argwhere(surf) * np.asarray(sp)
        return pdist(pts[ConvexHull(pts).vertices]).max()

    d_base, t_base = timed(hull_full, repeat=1)
    print(f"| max diameter (mm) | {t_ours:.4f} | {t_base:.4f} | same hull on the whole volume |")
    print(f"\n(max diameter {_d:.2f} mm vs {d_base:.2f} mm)")


def _confidence_connected(image, seed, sp, max_radius_mm=45.0):
    """Baseline: SimpleITK ConfidenceConnected (multiplier 2.5) in the same ball, holes filled."""
    import SimpleITK as sitk

    seg_img = sitk.GetImageFromArray(image.astype(np.float32))
    seg_img.SetSpacing([float(v) for v in sp[::-1]])
    idx = [int(v) for v in np.round(seed)[::-1]]
    cc = sitk.ConfidenceConnected(
        seg_img,
        seedList=[idx],
        numberOfIterations=3,
        multiplier=2.5,
        initialNeighborhoodRadius=2,
        replaceValue=1,
    )
    reg = sitk.GetArrayFromImage(cc).astype(bool)
    zz, yy, xx = np.indices(image.shape, sparse=True)
    d2 = (
        ((zz - seed[0]) * sp[0]) ** 2
        + ((yy - seed[1]) * sp[1]) ** 2
        + ((xx - seed[2]) * sp[2]) ** 2
    )
    return seg.fill_holes(reg & (d2 <= max_radius_mm**2))


def assist_table():
    """Seeded region (click inside) and refine-to-edges on the bundled synthetic cases."""
    import SimpleITK as sitk

    from napari_ablation.core import samples

    cases = []
    rng = np.random.default_rng(1)
    sp = np.array([2.5, 1.0, 1.0])
    z, y, x = phantoms.centred_grid((30, 70, 70), sp)
    truth = (z / 18) ** 2 + (y / 20) ** 2 + (x / 14) ** 2 <= 1
    img = (np.where(truth, 100.0, 300.0) + rng.normal(0, 25, truth.shape)).astype(np.float32)
    cases.append(("dark ellipsoid in noise", img, truth, sp))
    for name in ("renal_mri", "liver_ct"):
        case = getattr(samples, f"make_{name}")()
        for role, grid in (("ablation", "post"), ("tumor", "pre")):
            cases.append(
                (
                    f"{name} {role}",
                    sitk.GetArrayFromImage(getattr(case, grid)).astype(np.float32),
                    sitk.GetArrayFromImage(getattr(case, role)) != 0,
                    np.asarray(getattr(case, grid).GetSpacing()[::-1]),
                )
            )
    print("\n## Seeded region: Dice, median [min] over 8 clicks >= 3 mm inside the structure\n")
    print("| structure | ours (auto tolerance) | ConfidenceConnected 2.5 SD | ours time (s) |")
    print("|---|---|---|---|")
    for name, img, truth, sp in cases:
        inner = np.argwhere(seg.grow_shrink(truth, sp, -3.0))
        picks = inner[np.random.default_rng(0).choice(len(inner), 8, replace=False)]
        ours, base, times = [], [], []
        for p in picks:
            t = time.perf_counter()
            ours.append(dice(seg.seeded_region(img, p, sp, max_radius_mm=45), truth))
            times.append(time.perf_counter() - t)
            base.append(dice(_confidence_connected(img, p, sp), truth))
        print(
            f"| {name} | {np.median(ours):.3f} [{min(ours):.3f}] "
            f"| {np.median(base):.3f} [{min(base):.3f}] "
            f"| {np.median(times):.2f} |"
        )
    print("\n## Refine a rough outline (grown by 2 mm) to the edges, band 3 mm: Dice\n")
    print("| structure | rough outline | refined | time (s) |")
    print("|---|---|---|---|")
    for name, img, truth, sp in cases:
        rough = seg.grow_shrink(truth, sp, 2.0)
        refined, t = timed(
            lambda img=img, rough=rough, sp=sp: seg.refine_to_edges(img, rough, sp, band_mm=3.0),
            repeat=1,
        )
        print(f"| {name} | {dice(rough, truth):.3f} | {dice(refined, truth):.3f} | {t:.2f} |")


def gui_table():
    """Brushing and live readout in a real viewer on 512 x 512 x 300 (needs a display: xvfb-run)."""
    import os
    import tempfile

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_ablation.core.case import Case
    from napari_ablation.widgets.segment import SegmentWidget
    from napari_ablation.widgets.session import CaseSession

    os.environ.setdefault("NAPARI_ABLATION_CASES", tempfile.mkdtemp())
    sp = (2.5, 0.8, 0.8)
    rng = np.random.default_rng(0)
    pre = rng.normal(100, 20, (300, 512, 512)).astype(np.int16)
    case = Case(pre=geometry.image_from_array(pre, sp, (0, 0, 0)))
    case.info["name"] = "bench"
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    session = CaseSession.of(viewer)
    session.set_case(case, tempfile.mkdtemp() + "/case")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    tumor = widget.ensure_labels_layer()
    tumor.brush_size = 20
    viewer.dims.set_point(0, 150 * 2.5)

    def pump(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.002)

    pump(0.5)
    # one brush dab = one paint() call, as a mouse move does
    times = []
    for k in range(40):
        t = time.perf_counter()
        tumor.paint((150, 200 + k, 200 + k), 1)
        times.append(time.perf_counter() - t)
    t_paint = statistics.median(times)
    # readout latency: from the end of a stroke to the updated volume on screen
    lat = []
    for k in range(5):
        tumor.paint((150, 300, 200 + 3 * k), 1)
        want = int(np.count_nonzero(tumor.data))
        t = time.perf_counter()
        while widget.last_stats is None or widget.last_stats["voxels"] != want:
            app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() - t > 10:
                break
        lat.append(time.perf_counter() - t)
    # autosave of the labels (what the 1 s debounce after the last edit runs). Timed:
    # (a) the autosave() call on the GUI thread: copy of the labels into an image + start of
    #     the writer thread; (b) the longest gap between two ticks of a 5 ms heartbeat timer on
    #     the Qt event loop from that call until the file is on disk (what a user feels: the
    #     copy plus any GIL the writer holds); (c) until on disk (background, not felt);
    #     (d) baseline: the same save written on the GUI thread.
    import itertools

    from qtpy.QtCore import QTimer

    ticks = []
    beat = QTimer()
    beat.setInterval(5)
    beat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    beat.start()
    pump(0.3)
    save_call, save_stall, save_disk, save_sync = [], [], [], []
    for _ in range(5):
        session.labels_changed("tumor")
        ticks.clear()
        t = time.perf_counter()
        session.autosave()
        save_call.append(time.perf_counter() - t)
        while session.has_unsaved_changes:
            app.processEvents()
            time.sleep(0.001)
        save_disk.append(time.perf_counter() - t)
        pump(0.05)
        marks = [t, *ticks]
        save_stall.append(max(b - a for a, b in itertools.pairwise(marks)))
        session.labels_changed("tumor")
        t = time.perf_counter()
        session.autosave(background=False)
        save_sync.append(time.perf_counter() - t)
    beat.stop()
    # viewer without the plugin: the same brush dab
    bare = napari.Viewer(show=True)
    lab = bare.add_labels(np.zeros((300, 512, 512), np.uint8), scale=sp)
    lab.brush_size = 20
    bare.dims.set_point(0, 150 * 2.5)
    pump(0.3)
    times = []
    for k in range(40):
        t = time.perf_counter()
        lab.paint((150, 200 + k, 200 + k), 1)
        times.append(time.perf_counter() - t)
    t_bare = statistics.median(times)
    print("\n## Brushing in a real viewer, 512 x 512 x 300 labels (median, s)\n")
    print("| quantity | with the plugin | bare napari |")
    print("|---|---|---|")
    print(f"| one brush dab (Labels.paint) | {t_paint:.4f} | {t_bare:.4f} |")
    print(
        f"| stroke end -> volume/diameter shown (debounce {150} ms + thread) "
        f"| {statistics.median(lat):.3f} | - |"
    )
    print(
        "| autosave of the labels: the autosave() call on the GUI thread "
        f"(labels copied, writer thread started) | {statistics.median(save_call):.3f} | - |"
    )
    print(
        "| autosave: longest GUI event-loop stall from that call until on disk "
        f"(5 ms heartbeat) | {statistics.median(save_stall):.3f} | - |"
    )
    print(
        "| autosave: until the labels are on disk (background, not felt) "
        f"| {statistics.median(save_disk):.3f} | - |"
    )
    print(
        "| baseline: the same save written on the GUI thread "
        f"| {statistics.median(save_sync):.3f} | - |"
    )
    viewer.close()
    bare.close()


if __name__ == "__main__":
    import sys

    if "--gui-only" not in sys.argv:
        accuracy_table()
        timing_table()
        readout_table()
        assist_table()
    if "--gui" in sys.argv or "--gui-only" in sys.argv:
        gui_table()
