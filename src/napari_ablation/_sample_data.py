"""npe2 sample-data commands: File > Open Sample > napari-ablation.

Each gives napari the four layers of a synthetic case (pre and post images, tumor and
ablation labels) in patient LPS millimetres, with the layer roles the plugin's widgets
look for, in this order: pre, post, tumor, ablation.

napari calls a sample command on the GUI thread and adds every layer it returns before the
window can draw or answer again: reading four volumes and adding four layers in one call
froze the window for 0.6-1.4 s. In a napari window the command therefore returns the pre
image only (napari must get at least one layer), reads the other three off the GUI thread
and adds them one per event-loop iteration, as ``1. Load case > Open sample`` does. Without
a window (a script with a headless viewer), it returns all four at once. Over another case
open in the plugin, it returns a hidden, empty stand-in (:func:`_stand_in`): the
plugin's session opens the sample itself, in steps, and removes what arrived.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: the layers of a sample, in the order they are added
ORDER = ("pre", "post", "tumor", "ablation")

LayerData = tuple[Any, dict, str]


def _datum(case, role: str, sample: str, folder: Path) -> LayerData:
    """napari's LayerData tuple of one image or label volume of a sample case."""
    import SimpleITK as sitk

    from .core import display
    from .widgets._layers import (
        ABLATION_COLOR,
        META,
        TUMOR_COLOR,
        image_layer_kwargs,
        labels_layer_kwargs,
    )

    modality = str(case.info.get("modality", ""))
    meta = {
        META: {"role": role, "case_folder": str(folder), "modality": modality, "sample": sample}
    }
    img = getattr(case, role)
    arr = sitk.GetArrayFromImage(img)
    if role in ("pre", "post"):
        kw = image_layer_kwargs(
            img,
            role,
            role,
            metadata=meta,
            modality=modality,
            contrast_limits=display.default_contrast(arr, modality),
            colormap="gray",
        )
        if role == "post":
            kw["visible"] = False  # post lives on its own grid: shown to check the registration
        return arr, kw, "image"
    color = TUMOR_COLOR if role == "tumor" else ABLATION_COLOR
    kw = labels_layer_kwargs(img, role, role, color, metadata=meta, opacity=0.5)
    if role == "ablation":
        kw["visible"] = False
    return arr, kw, "labels"


def _layer_data(name: str) -> list[LayerData]:
    """All four layers of sample ``name``, read on the calling thread."""
    from .core import samples

    case = samples.load_sample(name)
    folder = samples.sample_dir() / name
    return [_datum(case, role, name, folder) for role in ORDER]


def _open(name: str) -> list[LayerData]:
    """The pre layer now; post, tumor and ablation in steps (see the module docstring)."""
    from .core import samples
    from .core.case import Case

    folder = samples.sample_dir() / name
    viewer = _calling_window()
    if viewer is None or not (folder / "case.json").exists():
        return _layer_data(name)  # no event loop to add them later / a sample made in memory
    from .widgets import _layers
    from .widgets.session import CaseSession

    if CaseSession.replaces_open_case(viewer, name, folder):
        return [_stand_in(viewer, name, folder)]

    pre = _datum(Case.load(folder, roles=("pre",)), "pre", name, folder)
    # napari paints the canvas right after it adds the pre layer, in the same piece of GUI
    # work: the canvas is drawn once all four layers are in (as Load > Open sample does);
    # over an open case it shows that case's last frame meanwhile (paused, it was blank for
    # the 1-2 s the layers take to arrive)
    resume = _layers.pause_canvas(viewer, keep_frame=len(viewer.layers) > 0)

    def job() -> list[LayerData]:
        _layers.prewarm()  # napari's one-off work for the first Labels layer (pandas, pint)
        case = Case.load(folder, roles=ORDER[1:])
        return [_datum(case, role, name, folder) for role in ORDER[1:]]

    _layers.start_worker(
        job,
        on_returned=lambda rest: _layers.run_in_steps(_add_steps(viewer, pre[0], rest), resume),
        on_error=lambda message: (resume(), _layers.notify_error(message)),
    )
    return [pre]


def _stand_in(viewer, name: str, folder: Path) -> LayerData:
    """The layer napari is given when the plugin's session of ``viewer`` holds another case:
    the session opens sample ``name`` itself, from its working copy and in steps, as Load >
    Open sample does, and removes the layers that arrived
    (:meth:`~napari_ablation.widgets.session.CaseSession.replaces_open_case`). So napari
    gets a hidden, empty stand-in placed as the open case's pre image (the sample's role and
    source in its metadata): no volume read on the GUI thread, and the world extent, so the
    slicing of every layer, unchanged when it comes and goes (the sample's pre image added
    and removed there was 2 x 150-250 ms of GUI-thread work in one piece).

    The stand-in is an empty Vectors layer, the layer napari adds fastest (one line visual;
    a one-voxel Image layer makes an image and a volume visual: 112 against 149 ms at load
    19, bare napari), and the canvas keeps its last frame until the step after the session
    has removed it (nothing changes on screen: napari's repaint made one piece of GUI work
    with its add)."""
    from .widgets import _layers
    from .widgets._layers import META, find_layer

    meta = {META: {"role": "pre", "case_folder": str(folder), "sample": name}}
    kw: dict[str, Any] = {"name": "pre", "metadata": meta, "visible": False, "ndim": 3}
    pre = find_layer(viewer, "pre")
    if pre is not None:
        kw.update(
            scale=tuple(pre.scale),
            translate=tuple(pre.translate),
            units=tuple(pre.units),
            axis_labels=tuple(pre.axis_labels),
        )
    resume = _layers.hold_paint(viewer)
    # (after the session's step that removes it: the chain of that step is started once
    # napari has added the stand-in, after this one)
    _layers.run_in_steps(iter([None, resume]))
    return np.empty((0, 2, 3)), kw, "vectors"


def _add_steps(viewer, pre_data, rest: list[LayerData]):
    """Add ``rest`` to ``viewer``, one layer per step, while it still holds the pre layer
    (data ``pre_data``; the user may have removed it, or the plugin replaced the sample by
    its working copy); then make the tumor the active layer, as Load > Open sample does,
    unless the user selected another layer meanwhile."""
    from .widgets import _layers

    def pre_layer():
        return next((ly for ly in viewer.layers if ly.data is pre_data), None)

    tumor = None
    for i, (data, kw, kind) in enumerate(rest):
        if i:
            yield  # one layer per event-loop iteration
        if pre_layer() is None:
            return
        with _layers.keep_selection(viewer):  # no selection churn per layer (napari's work)
            layer = getattr(viewer, f"add_{kind}")(data, **kw)
        tumor = layer if kw["name"] == "tumor" else tumor
    # (with the last layer: the sample is complete once its four layers are in)
    if tumor in viewer.layers and list(viewer.layers.selection) == [pre_layer()]:
        viewer.layers.selection.active = tumor


def _calling_window():
    """The napari window whose ``open_sample`` calls this command (File > Open Sample or
    ``viewer.open_sample``); None for a headless ``ViewerModel`` or a direct call, which get
    all the layers at once."""
    import sys

    from napari.components import ViewerModel

    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "open_sample" else None
        if isinstance(owner, ViewerModel):
            return owner if hasattr(owner, "window") else None
        frame = frame.f_back
    return None


def renal_mri() -> list[LayerData]:
    """Renal cryoablation, T2-weighted MRI (synthetic, with ground truth)."""
    return _open("renal_mri")


def liver_ct() -> list[LayerData]:
    """Liver microwave ablation, portal-venous CT (synthetic, with ground truth)."""
    return _open("liver_ct")
