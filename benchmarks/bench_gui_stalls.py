"""Longest GUI-thread stall per user action (ms), measured with a 5 ms heartbeat QTimer.

Run under Xvfb, once per code version, and compare in the same session::

    PYTHONPATH=/path/to/version/src xvfb-run -a python benchmarks/bench_gui_stalls.py [--repeat 3]

Each action is started as the user starts it (button, menu command) and timed until its
result is on screen; the figure is the longest gap between two ticks of a 5 ms timer on
the Qt event loop in that window (median over ``--repeat`` runs), with the CPU time the
GUI thread itself spent in that gap (``time.thread_time``; other processes and worker
threads stretch the wall time on a loaded machine, not this), and the largest GUI-thread
CPU time of any gap in the window (on a loaded machine the longest gap in wall time is
not always the one in which the GUI thread worked longest). Above ~100 ms a user feels
the GUI freeze. ``--profile`` prints what the GUI thread's Python stack held during each
longest stall (sampled every 2 ms from a side thread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
PROFILE = False  # --profile: what the GUI thread did in each action's longest stall
OPEN_SAMPLE_ONLY = False  # --open-sample-only


def run_once(results: dict[str, list[float]]) -> None:
    import _gui
    import napari
    from qtpy.QtWidgets import QApplication

    class Bot:  # the two pytest-qt calls _gui.measure uses
        @staticmethod
        def wait(ms):
            from qtpy.QtCore import QEventLoop, QTimer

            loop = QEventLoop()
            QTimer.singleShot(ms, loop.quit)
            loop.exec()

        @staticmethod
        def waitUntil(cond, timeout=60000):
            import time

            t0 = time.time()
            while not cond():
                if time.time() - t0 > timeout / 1000:
                    raise TimeoutError("action did not finish")
                Bot.wait(5)

    bot = Bot()

    def record(name, action, until):
        meter = _gui.StallMeter(sample=PROFILE)
        _gui.measure(bot, action, until, 300000, meter=meter)
        results.setdefault(name, []).append(
            (meter.longest_ms, meter.longest_cpu_ms, meter.max_cpu_ms)
        )
        print(
            f"  {name}: {meter.longest_ms:.0f} ms (GUI thread CPU {meter.longest_cpu_ms:.0f} ms;"
            f" largest GUI-thread CPU of any gap {meter.max_cpu_ms:.0f} ms)",
            flush=True,
        )
        if PROFILE:
            print("  the gap with the most GUI-thread CPU:\n" + meter.profile(cpu=True), flush=True)

    os.environ["NAPARI_ABLATION_CASES"] = tempfile.mkdtemp()
    # File > Open Sample
    v = napari.Viewer(show=True)
    v.window.resize(1600, 900)
    bot.wait(300)
    record(
        "File > Open Sample (renal MRI)",
        lambda: v.open_sample("napari-ablation", "renal_mri"),
        lambda: (
            len(v.layers) >= 4
            and all(ly.data is not None for ly in v.layers)
            and not _steps_pending()
        ),
    )
    v.close()
    QApplication.processEvents()
    bare_napari(bot, record)
    if OPEN_SAMPLE_ONLY:
        return
    for key in ("renal_mri", "liver_ct"):
        one_sample(key, bot, record)


def _steps_pending() -> bool:
    try:
        from napari_ablation.widgets._layers import steps_pending
    except ImportError:  # a version without stepwise layers
        return False
    return steps_pending()


def bare_napari(bot, record) -> None:
    """napari's own floor, same run, in viewers with no plugin widget: the renal sample's
    four volumes given with everything napari would otherwise compute (contrast limits),
    all in one call as a synchronous sample command does; the first layer of a fresh viewer
    alone; then, with the four volumes side by side (grid on, as the plugin shows a case),
    one Labels layer (a margin-sized box with the margin colours), one Points layer with
    text (as a landmark layer), and napari's 2D/3D button both ways."""
    import napari
    import numpy as np
    import SimpleITK as sitk
    from qtpy.QtWidgets import QApplication

    from napari_ablation.core import samples
    from napari_ablation.widgets import _layers

    folder = samples.sample_dir() / "renal_mri"
    arrays = {
        r: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{r}.nii.gz")))
        for r in ("pre", "post", "tumor", "ablation")
    }
    scale = (3.0, 1.2, 1.2)  # about the renal grid; the figure does not depend on it

    def first(v):
        v.add_image(arrays["pre"], scale=scale, contrast_limits=(0, 1000), name="pre")

    def rest(v):
        v.add_image(arrays["post"], scale=scale, contrast_limits=(0, 1000), name="post")
        v.add_labels(arrays["tumor"], scale=scale, opacity=0.5, name="tumor")
        v.add_labels(arrays["ablation"], scale=scale, opacity=0.5, name="ablation")

    def four(v):
        first(v)
        rest(v)

    def new_viewer():
        v = napari.Viewer(show=True)
        v.window.resize(1600, 900)
        bot.wait(300)
        return v

    def close(v):
        v.close()
        QApplication.processEvents()

    import time

    def settled():
        t0 = [time.perf_counter()]
        return lambda: time.perf_counter() - t0[0] > 0.5  # the draws that follow included

    v = new_viewer()
    record("bare napari: four volumes in one call (fresh viewer)", lambda: four(v), settled())
    close(v)
    v = new_viewer()
    record("bare napari: the first image layer (fresh viewer)", lambda: first(v), settled())
    rest(v)
    grid = v.canvas.grid
    grid.stride, grid.shape, grid.enabled = 2, (1, 2), True
    bot.wait(1000)
    box = np.zeros((14, 40, 40), np.uint8)
    box[2:12, 5:35, 5:35] = 1
    box[4:10, 10:30, 10:30] = 2
    record(
        "bare napari: add one Labels layer (margin box, margin colours)",
        lambda: v.add_labels(box, scale=scale, opacity=0.6, colormap=_layers.margin_colormap()),
        settled(),
    )
    record(
        "bare napari: add one Points layer with text (as a landmark layer)",
        lambda: v.add_points(
            np.empty((0, 3)),
            ndim=3,
            size=6,
            scale=scale,
            features={"pair": np.array([], dtype=object)},
            text={"string": "{pair}", "color": "white", "size": 10, "anchor": "upper_left"},
        ),
        settled(),
    )
    button = v.window._qt_viewer.viewerButtons.ndisplayButton
    record("bare napari: 2D -> 3D (napari's button)", button.click, settled())
    bot.wait(500)
    record("bare napari: 3D -> 2D (napari's button)", button.click, settled())
    bot.wait(500)
    # what opening another case over an analysed one costs napari: removing the layers made
    # from the old case (one, or three in one batch), an image given data of another size
    record(
        "bare napari: remove one layer (of six)", lambda: v.layers.remove(v.layers[-1]), settled()
    )
    for k in range(3):
        v.add_labels(box, scale=scale, opacity=0.6, name=f"box {k}")
    bot.wait(1000)

    def remove_three():
        with v.layers.batched_update():
            for k in range(3):
                v.layers.remove(v.layers[f"box {k}"])

    record("bare napari: remove three layers in one batch", remove_three, settled())
    liver = sitk.GetArrayFromImage(
        sitk.ReadImage(str(samples.sample_dir() / "liver_ct" / "pre.nii.gz"))
    )
    record(
        "bare napari: an image's data replaced by one of another size",
        lambda: setattr(v.layers["pre"], "data", liver),
        settled(),
    )
    close(v)


def one_sample(key, bot, record) -> None:
    """Open a sample in the Load widget, compute the margins, export, load files."""
    import tempfile

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_ablation.core import samples
    from napari_ablation.widgets.load import LoadCaseWidget
    from napari_ablation.widgets.margin import MarginWidget
    from napari_ablation.widgets.session import CaseSession

    v = napari.Viewer(show=True)
    v.window.resize(1600, 900)
    load, marg = LoadCaseWidget(v), MarginWidget(v)
    v.window.add_dock_widget(load, name="Load")
    v.window.add_dock_widget(marg, name="Margins")
    bot.wait(300)
    session = CaseSession.of(v)
    load.sample.setCurrentIndex(load.sample.findData(key))
    load.fresh.setChecked(True)
    record(
        f"Load > Open sample ({key})",
        load.sample_btn.click,
        lambda: load._worker is None and len(v.layers) >= 4,
    )
    marg.load_transform_file(str(samples.sample_dir() / key / "true_transform.tfm"))
    bot.wait(200)
    record(
        f"first Compute margins ({key})",
        marg.run_btn.click,
        lambda: (
            marg.result is not None
            and marg._worker is None
            and any(
                (ly.metadata.get("napari_ablation") or {}).get("role") == "margin"
                for ly in v.layers
            )
        ),
    )
    out = Path(tempfile.mkdtemp())
    for fmt in ("html", "pdf"):
        path = out / f"report.{fmt}"
        if hasattr(marg, "export_async"):

            def action(p=path):
                return marg.export_async(p)

            def done(p=path):
                return p.exists() and not marg.exporting
        else:  # the widget before the case model: a synchronous export

            def action(p=path):
                return marg.export(p)

            def done(p=path):
                return p.exists()

        record(f"export {fmt.upper()} ({key})", action, done)
    if key == "renal_mri":  # napari's 2D/3D button, the margin layers shown
        import time

        button = v.window._qt_viewer.viewerButtons.ndisplayButton
        for name, nd in (("2D -> 3D", 3), ("3D -> 2D", 2)):
            t0 = time.perf_counter()
            record(
                f"{name} (renal, napari's button)",
                button.click,
                lambda nd=nd, t0=t0: (
                    v.dims.ndisplay == nd
                    and not _steps_pending()
                    and time.perf_counter() - t0 > 0.5
                ),
            )
            bot.wait(500)
        bare_copy_switch(v, bot, record)
    if key == "liver_ct":  # another case, of another size, over the analysed one
        load.sample.setCurrentIndex(load.sample.findData("renal_mri"))
        before = session.model.pre
        record(
            "Load > Open sample (renal MRI over the analysed liver CT)",
            load.sample_btn.click,
            lambda b=before: (
                load._worker is None
                and session.model.pre is not b
                and not _steps_pending()
                and getattr(session, "opening", None) is None
            ),
        )
        # napari's File > Open Sample over an analysed case (the renal MRI just opened, its
        # margins computed): napari adds what the sample command returns in one call
        marg.load_transform_file(str(samples.sample_dir() / "renal_mri" / "true_transform.tfm"))
        marg.run_btn.click()
        bot.waitUntil(lambda: marg.result is not None and marg._worker is None, 300000)
        bot.wait(500)
        before = session.model.pre
        record(
            "File > Open Sample (liver CT over the analysed renal MRI)",
            lambda: v.open_sample("napari-ablation", "liver_ct"),
            lambda b=before: (
                session.model.pre is not b
                and getattr(session, "opening", None) is None
                and not _steps_pending()
                and len(v.layers) == 4
            ),
        )
    # pre + post files of the sample
    if key == "renal_mri":
        folder = samples.sample_dir() / key
        load.pre.path.setText(str(folder / "pre.nii.gz"))
        load.post.path.setText(str(folder / "post.nii.gz"))
        before = session.model.pre if hasattr(session, "model") else session.case.pre
        record(
            "Load > Load pre + post files (renal)",
            load.load_btn.click,
            lambda b=before: (
                load._worker is None
                and (session.model.pre if hasattr(session, "model") else session.case.pre) is not b
            ),
        )
    v.close()
    QApplication.processEvents()


def bare_copy_switch(v, bot, record) -> None:
    """napari's floor for the plugin's own scene, same run: a viewer with no plugin widget
    holding copies of ``v``'s layers (the same data, grid and 2D looks), napari's 2D/3D
    button both ways (napari alone: no 3D look, so its voxel labels are sliced in 3D)."""
    import time

    import napari
    from qtpy.QtWidgets import QApplication

    b = napari.Viewer(show=True)
    b.window.resize(1600, 900)
    for ly in v.layers:
        data, state, kind = ly.as_layer_data_tuple()
        state.pop("metadata", None)
        getattr(b, f"add_{kind}")(data, **state)
    g, bg = v.canvas.grid, b.canvas.grid
    bg.stride, bg.shape, bg.enabled = g.stride, g.shape, g.enabled
    bot.wait(1000)
    button = b.window._qt_viewer.viewerButtons.ndisplayButton
    for name, nd in (("2D -> 3D", 3), ("3D -> 2D", 2)):
        t0 = time.perf_counter()
        record(
            f"bare napari, copies of the plugin's layers: {name}",
            button.click,
            lambda nd=nd, t0=t0: b.dims.ndisplay == nd and time.perf_counter() - t0 > 0.5,
        )
        bot.wait(500)
    b.close()
    QApplication.processEvents()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--open-sample-only",
        action="store_true",
        help="measure File > Open Sample and napari's own floor only",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="print the functions on the GUI thread's stack during each longest stall",
    )
    args = ap.parse_args()
    global PROFILE, OPEN_SAMPLE_ONLY
    PROFILE, OPEN_SAMPLE_ONLY = args.profile, args.open_sample_only
    import napari_ablation

    print(f"napari_ablation from {napari_ablation.__file__}")
    results: dict[str, list[tuple[float, float, float]]] = {}
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat}", flush=True)
        run_once(results)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(
        "\n| action | longest stall, ms | GUI-thread CPU in it, ms "
        "| largest GUI-thread CPU of any gap, ms |\n|---|---|---|---|"
    )
    for name, values in results.items():
        wall, cpu, most = (statistics.median(v[k] for v in values) for k in range(3))
        print(f"| {name} | {wall:.0f} | {cpu:.0f} | {most:.0f} |")


if __name__ == "__main__":
    main()
