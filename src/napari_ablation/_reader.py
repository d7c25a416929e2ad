"""npe2 reader: NIfTI / NRRD / MHA / MHD files, DICOM files and folders, case folders.

Images are brought to identity-direction LPS (see ``core.geometry``) so that they live in
millimetres in napari's world and slice correctly. Bad input gives one notification
line and no layer (never a traceback, nothing half loaded).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .core import case as case_mod
from .core import display, geometry, io
from .core.errors import AblationError, one_line

NULL_LAYER = [(None,)]  # npe2: "read, but nothing to add"


def _looks_like_dicom_folder(path: Path) -> bool:
    try:
        for i, child in enumerate(sorted(path.iterdir())):
            if i > 200:
                break
            if child.is_file():
                if child.suffix.lower() == ".dcm":
                    return True
                with open(child, "rb") as fh:
                    head = fh.read(132)
                if head[128:132] == b"DICM":
                    return True
            elif child.is_dir() and i < 20 and _looks_like_dicom_folder(child):
                return True
    except OSError:
        return False
    return False


def get_reader(path):
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        if case_mod.is_case_folder(p):
            return read_case_folder
        return read_path if _looks_like_dicom_folder(p) else None
    if io.is_image_file(p) or p.suffix.lower() == ".dcm":
        return read_path
    return None


def label_role(path: Path) -> str:
    """The role of a case's known label file (``tumor.nii.gz`` -> ``"tumor"``), else ``""``."""
    stem = path.name.split(".")[0].lower()
    return stem if stem in case_mod.LABEL_ROLES else ""


def layer_data_for(loaded: io.LoadedImage, name: str, role: str = ""):
    """The napari layer data of an image read with :func:`io.read_image`: a Labels layer
    when it was read as labels (a known label file, or voxels that look like a
    segmentation), else an Image layer."""
    img = loaded.image
    arr = io.sitk.GetArrayFromImage(img)
    if role in case_mod.LABEL_ROLES or loaded.is_label:
        from .widgets._layers import ABLATION_COLOR, TUMOR_COLOR, labels_layer_kwargs

        color = {"tumor": TUMOR_COLOR, "ablation": ABLATION_COLOR}.get(role)
        kwargs = labels_layer_kwargs(
            img, name, role, color, metadata=loaded.metadata(role), opacity=0.5
        )
        return (
            arr.astype(np.uint8) if arr.max(initial=0) <= 255 and arr.min(initial=0) >= 0 else arr,
            kwargs,
            "labels",
        )
    kwargs = {
        "name": name,
        "metadata": loaded.metadata(role),
        "contrast_limits": display.default_contrast(arr, loaded.modality),
        **geometry.layer_geometry(img),
    }
    return (arr, kwargs, "image")


def read_path(path):
    if isinstance(path, (list, tuple)):
        path = path[0]
    p = Path(path)
    role = label_role(p) if p.is_file() else ""
    try:
        # labels (a known label file, or voxels that look like labels) are read as labels:
        # an oblique mask resampled with nearest neighbour, as the CLI reads it (UAT s10 N1)
        loaded = io.read_image(p, require_volume=False, is_label=True if role else None)
        if role:  # a scan saved as tumor.nii.gz: the CLI's line, no labels layer (UAT s12 N1)
            io.check_label_values(io.sitk.GetArrayViewFromImage(loaded.image), p.name)
    except AblationError as exc:
        _notify_error(str(exc))
        return NULL_LAYER
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        _notify_error(f"{p.name}: {one_line(exc)}")
        return NULL_LAYER
    for note in loaded.notes:
        _notify_info(note)
    name = p.name.split(".")[0] if p.is_file() else (loaded.description or p.name)
    return [layer_data_for(loaded, name, role)]


def read_case_folder(path):
    """Open a saved case folder: its layers are added by the viewer's case session."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    try:
        case = case_mod.Case.load(path)
    except AblationError as exc:
        _notify_error(str(exc))
        return NULL_LAYER
    except Exception as exc:  # noqa: BLE001
        _notify_error(f"{Path(path).name}: {one_line(exc)}")
        return NULL_LAYER
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001
        viewer = None
    if viewer is None:
        return _case_layer_data(case)
    from .widgets.session import CaseSession

    CaseSession.of(viewer).set_case(case, path, save_images=False)
    return NULL_LAYER


def _case_layer_data(case):
    from .widgets import _layers

    out = []
    for role in ("pre", "post"):
        img = getattr(case, role)
        if img is not None:
            kw = _layers.image_layer_kwargs(img, role, role, modality=case.info.get("modality", ""))
            out.append((io.sitk.GetArrayFromImage(img), kw, "image"))
    for role, color in (("tumor", _layers.TUMOR_COLOR), ("ablation", _layers.ABLATION_COLOR)):
        img = getattr(case, role)
        if img is not None:
            kw = _layers.labels_layer_kwargs(img, role, role, color)
            out.append((io.sitk.GetArrayFromImage(img), kw, "labels"))
    return out


def _notify_error(text: str) -> None:
    with contextlib.suppress(Exception):  # no napari: nothing to show
        from .widgets import _layers

        _layers.notify_error(text)


def _notify_info(text: str) -> None:
    with contextlib.suppress(Exception):  # no napari: nothing to show
        from .widgets import _layers

        _layers.notify_info(text)
