"""npe2 writer: labels saved with the geometry of the image they were drawn on.

The layer lives on an identity-direction LPS grid (``scale``/``translate`` in mm). When
the image it was drawn on had another orientation on disk (recorded in the layer
metadata as ``original_geometry``), the labels are written back on that original grid so
that they overlay the original file voxel for voxel in any tool; otherwise they are
written on the layer's grid. Written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core import geometry, io
from .core.errors import AblationError, one_line


def labels_image(data, meta: dict):
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise AblationError(
            f"labels are {arr.ndim}D; only 3D labels can be saved with image geometry"
        )
    scale = meta.get("scale") or (1.0, 1.0, 1.0)
    translate = meta.get("translate") or (0.0, 0.0, 0.0)
    if arr.max(initial=0) <= 255 and arr.min(initial=0) >= 0:
        arr = arr.astype(np.uint8)
    elif arr.max(initial=0) <= 65535 and arr.min(initial=0) >= 0:
        arr = arr.astype(np.uint16)
    else:
        arr = arr.astype(np.int32)
    img = geometry.image_from_array(arr, scale, translate)
    plugin_meta = (meta.get("metadata") or {}).get("napari_ablation") or {}
    original = plugin_meta.get("original_geometry")
    if original and list(original.get("size", [])) and len(original["size"]) == 3:
        img = io.original_geometry_image(img, original, is_label=True)
    return img


def protected_inputs(meta: dict, path: str) -> list[str]:
    """The files a label layer must never be saved over: the scan it was drawn on (its
    ``source``) and, when ``path`` lies in a case folder, that folder's case files (a mask
    on the original grid would no longer match ``case.json``)."""
    from .core.case import case_files, is_case_folder

    plugin_meta = (meta.get("metadata") or {}).get("napari_ablation") or {}
    folder = Path(path).parent
    keep = [str(p) for p in case_files(folder)] if is_case_folder(folder) else []
    return keep + ([str(plugin_meta["source"])] if plugin_meta.get("source") else [])


def write_labels(path: str, data, meta: dict) -> list[str]:
    try:
        img = labels_image(data, meta)
        io.write_image_atomic(img, path, inputs=protected_inputs(meta, path))
    except AblationError as exc:
        _notify_error(str(exc))
        return []
    except Exception as exc:  # noqa: BLE001
        _notify_error(f"could not save {Path(path).name}: {one_line(exc)}")
        return []
    return [str(path)]


def _notify_error(text: str) -> None:
    try:
        from .widgets import _layers

        _layers.notify_error(text)
    except Exception:  # noqa: BLE001 - no napari: nothing to show
        pass
