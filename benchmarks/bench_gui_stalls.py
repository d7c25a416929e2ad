"""Longest GUI-thread stall per user action (ms), measured with a 5 ms heartbeat QTimer.

Run under Xvfb, once per code version, and compare in the same session::

    PYTHONPATH=/path/to/version/src xvfb-run -a python benchmarks/bench_gui_stalls.py [--repeat 3]

Each action is started as the user starts it (button, menu command) and timed until its
result is on screen; the figure is the longest gap between two ticks of a 5 ms timer on
the Qt event loop in that window (median over ``--repeat`` runs). Above ~100 ms a user
feels the GUI freeze.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


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

    def record(name, ms):
        results.setdefault(name, []).append(ms)
        print(f"  {name}: {ms:.0f} ms", flush=True)

    os.environ["NAPARI_ABLATION_CASES"] = tempfile.mkdtemp()
    # File > Open Sample
    v = napari.Viewer(show=True)
    v.window.resize(1600, 900)
    bot.wait(300)
    record(
        "File > Open Sample (renal MRI)",
        _gui.measure(
            bot,
            lambda: v.open_sample("napari-ablation", "renal_mri"),
            lambda: len(v.layers) >= 4 and all(ly.data is not None for ly in v.layers),
        ),
    )
    v.close()
    QApplication.processEvents()

    for key in ("renal_mri", "liver_ct"):
        one_sample(key, bot, record)


def one_sample(key, bot, record) -> None:
    """Open a sample in the Load widget, compute the margins, export, load files."""
    import tempfile

    import _gui
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
        _gui.measure(
            bot, load.sample_btn.click, lambda: load._worker is None and len(v.layers) >= 4
        ),
    )
    marg.load_transform_file(str(samples.sample_dir() / key / "true_transform.tfm"))
    bot.wait(200)
    record(
        f"first Compute margins ({key})",
        _gui.measure(
            bot,
            marg.run_btn.click,
            lambda: (
                marg.result is not None
                and marg._worker is None
                and any(
                    (ly.metadata.get("napari_ablation") or {}).get("role") == "margin"
                    for ly in v.layers
                )
            ),
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

        record(f"export {fmt.upper()} ({key})", _gui.measure(bot, action, done))
    # pre + post files of the sample
    if key == "renal_mri":
        folder = samples.sample_dir() / key
        load.pre.path.setText(str(folder / "pre.nii.gz"))
        load.post.path.setText(str(folder / "post.nii.gz"))
        before = session.model.pre if hasattr(session, "model") else session.case.pre
        record(
            "Load > Load pre + post files (renal)",
            _gui.measure(
                bot,
                load.load_btn.click,
                lambda b=before: (
                    load._worker is None
                    and (session.model.pre if hasattr(session, "model") else session.case.pre)
                    is not b
                ),
            ),
        )
    v.close()
    QApplication.processEvents()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import napari_ablation

    print(f"napari_ablation from {napari_ablation.__file__}")
    results: dict[str, list[float]] = {}
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat}", flush=True)
        run_once(results)
    print("\n| action | longest stall, ms (median) |\n|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.0f} |")


if __name__ == "__main__":
    main()
