"""The case model: everything about one ablation procedure, and its folder on disk.

A case folder holds::

    case.json          manifest: info, settings, landmarks, QA, exact geometry + transform
    pre.nii.gz         pre-ablation image (identity-direction LPS)
    post.nii.gz        post-ablation image (identity-direction LPS)
    tumor.nii.gz       tumor labels on the pre grid      (optional)
    ablation.nii.gz    ablation labels on the post grid  (optional)
    transform.tfm      registration pre -> post, ITK convention (optional)

Every file is written atomically; ``case.json`` is written last and records the exact
(float64) geometry and transform parameters, so a case reloads bit-exactly even though
NIfTI stores spacing/origin in single precision.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from . import geometry, transform as tfm
from .errors import AblationError
from .io import read_image, write_image_atomic, write_text_atomic

CASE_FILE = "case.json"
FORMAT_VERSION = 1
IMAGE_FILES = {"pre": "pre.nii.gz", "post": "post.nii.gz", "tumor": "tumor.nii.gz", "ablation": "ablation.nii.gz"}
TRANSFORM_FILE = "transform.tfm"
LABEL_ROLES = ("tumor", "ablation")
GRID_OF = {"tumor": "pre", "ablation": "post"}
QA_VERDICTS = ("not reviewed", "acceptable", "needs correction", "insufficient for analysis")

DEFAULT_SETTINGS: dict[str, Any] = {"threshold_mm": 5.0, "tumor_label": None, "ablation_label": None}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Case:
    """One procedure: images, labels, registration, landmarks, settings and QA notes."""

    pre: sitk.Image | None = None
    post: sitk.Image | None = None
    tumor: sitk.Image | None = None  # uint8 on the pre grid
    ablation: sitk.Image | None = None  # uint8 on the post grid
    transform: sitk.Transform | None = None  # pre -> post (ITK convention)
    #: landmarks per image: {"pre": [{"label": "1", "x":..,"y":..,"z":..}, ...], "post": [...]}
    landmarks: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"pre": [], "post": []})
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    #: registration QA: {"verdict": one of QA_VERDICTS, "comment": str, "reviewed_at": iso}
    qa: dict[str, Any] = field(default_factory=lambda: {"verdict": "not reviewed", "comment": ""})
    #: free information: name, sources, modality, notes, ground truth (for sample cases)
    info: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ checks
    def check_labels(self) -> None:
        for role in LABEL_ROLES:
            lab, img = getattr(self, role), getattr(self, GRID_OF[role])
            if lab is None or img is None:
                continue
            if not geometry.same_grid(lab, img):
                raise AblationError(f"{role} labels are not on the {GRID_OF[role]} image grid")

    def empty_labels(self, role: str) -> sitk.Image:
        """A new, empty label image on the grid where ``role`` is drawn."""
        ref = getattr(self, GRID_OF[role])
        if ref is None:
            raise AblationError(f"load the {GRID_OF[role]} image before drawing {role} labels")
        lab = sitk.Image(ref.GetSize(), sitk.sitkUInt8)
        lab.CopyInformation(ref)
        return lab

    def copy(self) -> "Case":
        """Shallow copy: images are shared (SimpleITK images are copied on write)."""
        return Case(
            pre=self.pre,
            post=self.post,
            tumor=self.tumor,
            ablation=self.ablation,
            transform=self.transform,
            landmarks=copy.deepcopy(self.landmarks),
            settings=dict(self.settings),
            qa=dict(self.qa),
            info=copy.deepcopy(self.info),
        )

    # ------------------------------------------------------------------ disk
    def save(self, folder: str | os.PathLike, *, only: tuple[str, ...] | None = None) -> Path:
        """Write the case into ``folder`` (created if needed), atomically file by file.

        ``only`` restricts which image/label roles are rewritten (autosave writes only the
        labels); ``case.json`` is always rewritten last.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.check_labels()
        manifest = self._load_manifest(folder)
        geoms = manifest.get("geometry", {})
        for role, name in IMAGE_FILES.items():
            img = getattr(self, role)
            target = folder / name
            if img is None:
                if only is None or role in only:
                    if target.exists() and (only is None or role in only):
                        target.unlink()
                    geoms.pop(role, None)
                continue
            if only is not None and role not in only and target.exists():
                continue
            if role in LABEL_ROLES:
                img = sitk.Cast(img, sitk.sitkUInt8) if img.GetPixelID() != sitk.sitkUInt8 else img
            write_image_atomic(img, target)
            geoms[role] = geometry.geometry_dict(img)
        tx_path = folder / TRANSFORM_FILE
        if self.transform is not None:
            tfm.write_transform_atomic(tfm.as_euler(self.transform), tx_path)
        elif tx_path.exists() and only is None:
            tx_path.unlink()
        doc = {
            "format": "napari-ablation case",
            "format_version": FORMAT_VERSION,
            "saved_at": _now(),
            "files": {r: n for r, n in IMAGE_FILES.items() if getattr(self, r) is not None},
            "geometry": geoms,
            "transform": tfm.euler_params(self.transform) if self.transform is not None else None,
            "landmarks": self.landmarks,
            "settings": self.settings,
            "qa": self.qa,
            "info": self.info,
        }
        write_text_atomic(folder / CASE_FILE, json.dumps(doc, indent=2, default=_json_default))
        return folder

    @staticmethod
    def _load_manifest(folder: Path) -> dict[str, Any]:
        path = folder / CASE_FILE
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Case":
        folder = Path(folder)
        if not (folder / CASE_FILE).exists():
            raise AblationError(f"{folder}: not a case folder (no {CASE_FILE})")
        try:
            doc = json.loads((folder / CASE_FILE).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise AblationError(f"{folder / CASE_FILE}: not valid JSON ({exc})") from None
        if doc.get("format") != "napari-ablation case":
            raise AblationError(f"{folder / CASE_FILE}: not a napari-ablation case file")
        case = cls()
        geoms = doc.get("geometry", {})
        for role, name in doc.get("files", {}).items():
            if role not in IMAGE_FILES:
                continue
            path = folder / name
            if not path.exists():
                raise AblationError(f"{folder}: the case lists {name} but the file is missing")
            img = read_image(path, is_label=role in LABEL_ROLES).image
            if role in LABEL_ROLES and img.GetPixelID() != sitk.sitkUInt8:
                img = sitk.Cast(img, sitk.sitkUInt8)
            if role in geoms:
                # restore the exact float64 geometry (NIfTI keeps float32)
                g = geoms[role]
                if not np.allclose(img.GetOrigin(), g["origin"], atol=1e-3) or not np.allclose(
                    img.GetSpacing(), g["spacing"], atol=1e-4
                ):
                    raise AblationError(f"{path.name}: geometry differs from the one recorded in {CASE_FILE}")
                geometry.apply_geometry(img, g)
            setattr(case, role, img)
        if doc.get("transform"):
            case.transform = tfm.euler_from_params(doc["transform"])
        elif (folder / TRANSFORM_FILE).exists():
            case.transform = tfm.read_rigid_transform(folder / TRANSFORM_FILE)
        case.landmarks = doc.get("landmarks") or {"pre": [], "post": []}
        case.settings = {**DEFAULT_SETTINGS, **(doc.get("settings") or {})}
        case.qa = doc.get("qa") or {"verdict": "not reviewed", "comment": ""}
        case.info = doc.get("info") or {}
        case.check_labels()
        return case


def is_case_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CASE_FILE).exists()


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def case_from_images(pre, post, *, name: str | None = None) -> Case:
    """A new case from two :class:`~napari_ablation.core.io.LoadedImage` (pre, post).

    Raises when the two fields of view do not overlap at all (they cannot show the same
    anatomy); notes from reading (series choice, oblique resampling) go to ``case.info``.
    """
    for role, loaded in (("pre", pre), ("post", post)):
        if loaded is None:
            raise AblationError(f"no {role}-ablation image given")
    overlap = geometry.overlap_fraction(pre.image, post.image)
    if overlap <= 0.0:
        raise AblationError(
            "pre and post fields of view do not overlap (check that both series are from the same patient and frame of reference)"
        )
    notes = list(pre.notes) + list(post.notes)
    if overlap < 0.2:
        notes.append(f"pre and post fields of view overlap by only {overlap:.0%}")
    stem = name or Path(str(pre.source).rstrip("/\\")).name.split(".")[0] or "case"
    info = {
        "name": stem,
        "modality": pre.modality or post.modality,
        "notes": notes,
        "created_at": _now(),
    }
    for role, loaded in (("pre", pre), ("post", post)):
        info[f"{role}_source"] = loaded.source
        info[f"{role}_modality"] = loaded.modality
        info[f"{role}_description"] = loaded.description
        info[f"{role}_original_geometry"] = loaded.original_geometry
    return Case(pre=pre.image, post=post.image, info=info)


def load_case_files(pre_path, post_path, *, pre_series: str | None = None,
                    post_series: str | None = None, name: str | None = None) -> Case:
    """Read pre and post (files or DICOM folders) into a new case."""
    pre = read_image(pre_path, series_uid=pre_series)
    post = read_image(post_path, series_uid=post_series)
    return case_from_images(pre, post, name=name)
