"""Check the installed wheel as a user meets it; run by .ci/run with a fresh venv's python.

Usage: python check_installed_wheel.py SOURCE_TREE

Fails (non-zero exit, one line) unless the package is imported from the virtual
environment (not from SOURCE_TREE), both sample cases open through napari's plugin
manager with their four layers, and the sample data ship inside the package.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(source_tree: str) -> int:
    import napari
    import numpy as np

    import napari_ablation
    from napari_ablation.core import samples

    src = Path(source_tree).resolve()
    pkg = Path(napari_ablation.__file__).resolve()
    if src in pkg.parents:
        sys.exit(f"napari_ablation was imported from the source tree ({pkg}), not from the wheel")
    if pkg.parent not in samples.sample_dir().resolve().parents:
        sys.exit(f"the sample data are not inside the installed package: {samples.sample_dir()}")
    print(f"napari-ablation {napari_ablation.__version__} from {pkg.parent}")

    viewer = napari.Viewer(show=False)
    for key in ("renal_mri", "liver_ct"):
        viewer.layers.clear()
        viewer.open_sample("napari-ablation", key)
        # in a napari window the sample command returns the pre image and adds the other
        # three layers one per event-loop iteration (the window stays responsive): let the
        # event loop run until they are in
        _run_event_loop_until(lambda: len(viewer.layers) >= 4, seconds=60)
        kinds = {layer.name: type(layer).__name__ for layer in viewer.layers}
        expected = {"pre": "Image", "post": "Image", "tumor": "Labels", "ablation": "Labels"}
        if kinds != expected:
            sys.exit(f"sample {key}: layers {kinds}, expected {expected}")
        for layer in viewer.layers:
            data = np.asarray(layer.data)
            if data.ndim != 3 or min(data.shape) < 8:
                sys.exit(
                    f"sample {key}: layer {layer.name} has shape {data.shape}, expected a 3D volume"
                )
            if layer.name in ("tumor", "ablation") and not data.any():
                sys.exit(f"sample {key}: layer {layer.name} is empty")
            if not np.all(np.asarray(layer.scale) > 0):
                sys.exit(f"sample {key}: layer {layer.name} has scale {layer.scale}")
        print(f"sample {key}: " + ", ".join(f"{n} {viewer.layers[n].data.shape}" for n in expected))
    viewer.close()
    return 0


def _run_event_loop_until(done, seconds: float) -> None:
    import time

    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: check_installed_wheel.py SOURCE_TREE")
    sys.exit(main(sys.argv[1]))
