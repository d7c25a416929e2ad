"""npe2 sample-data commands: File > Open Sample > napari-ablation.

Each returns napari LayerData tuples for the four layers of a synthetic case (pre and post
images, tumor and ablation labels) in patient LPS millimetres, with the layer roles the
plugin's widgets look for.
"""

from __future__ import annotations

from typing import Any

import SimpleITK as sitk

from .core import display, samples


def _layer_data(name: str) -> list[tuple[Any, dict, str]]:
    from .widgets._layers import (
        ABLATION_COLOR,
        META,
        TUMOR_COLOR,
        image_layer_kwargs,
        labels_layer_kwargs,
    )

    case = samples.load_sample(name)
    folder = samples.sample_dir() / name
    modality = str(case.info.get("modality", ""))

    def meta(role: str) -> dict:
        return {
            META: {"role": role, "case_folder": str(folder), "modality": modality, "sample": name}
        }

    out: list[tuple[Any, dict, str]] = []
    for role, img in (("pre", case.pre), ("post", case.post)):
        arr = sitk.GetArrayFromImage(img)
        kw = image_layer_kwargs(img, role, role, metadata=meta(role), modality=modality)
        kw["contrast_limits"] = display.default_contrast(arr, modality)
        kw["colormap"] = "gray"
        if role == "post":
            kw["visible"] = (
                False  # post lives on its own grid: show it when checking the registration
            )
        out.append((arr, kw, "image"))
    for role, img, color in (
        ("tumor", case.tumor, TUMOR_COLOR),
        ("ablation", case.ablation, ABLATION_COLOR),
    ):
        arr = sitk.GetArrayFromImage(img)
        kw = labels_layer_kwargs(img, role, role, color, metadata=meta(role), opacity=0.5)
        if role == "ablation":
            kw["visible"] = False
        out.append((arr, kw, "labels"))
    return out


def renal_mri() -> list[tuple[Any, dict, str]]:
    """Renal cryoablation, T2-weighted MRI (synthetic, with ground truth)."""
    return _layer_data("renal_mri")


def liver_ct() -> list[tuple[Any, dict, str]]:
    """Liver microwave ablation, portal-venous CT (synthetic, with ground truth)."""
    return _layer_data("liver_ct")
