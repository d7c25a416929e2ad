"""The case model: everything about one ablation procedure, and its folder on disk.

A case folder holds::

    case.json          manifest: info, settings, landmarks, QA, exact geometry + transform
                       and how it was made (source, the automatic registration's spread)
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

import contextlib
import copy
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from . import coverage, geometry
from . import transform as tfm
from .errors import AblationError
from .files import OutputSet, input_path, os_error_message, read_text
from .io import labels_to_uint8, read_image

CASE_FILE = "case.json"
FORMAT_VERSION = 1
#: how a saved registration was made (``case.json`` field ``registration.source``)
REGISTRATION_SOURCES = ("automatic", "manual", "landmarks", "file")
IMAGE_FILES = {
    "pre": "pre.nii.gz",
    "post": "post.nii.gz",
    "tumor": "tumor.nii.gz",
    "ablation": "ablation.nii.gz",
}
TRANSFORM_FILE = "transform.tfm"
LABEL_ROLES = ("tumor", "ablation")
GRID_OF = {"tumor": "pre", "ablation": "post"}
QA_VERDICTS = ("not reviewed", "acceptable", "needs correction", "insufficient for analysis")
#: the verdicts that find the registration wanting (the margins are not to be relied on)
QA_WANTING = QA_VERDICTS[2:]

DEFAULT_SETTINGS: dict[str, Any] = {
    "threshold_mm": 5.0,
    "tumor_label": None,
    "ablation_label": None,
}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: the ``qa`` field naming the registration a verdict was recorded for (as
#: :func:`~napari_ablation.core.transform.euler_params` describes it)
QA_TRANSFORM_KEY = "for_transform"
#: how close two registrations must be to count as the one a verdict was recorded for
_SAME_ROTATION = 1e-6  # matrix entries
_SAME_OFFSET_MM = 1e-4


def qa_record(verdict: str, comment: str, transform: sitk.Transform | None) -> dict[str, Any]:
    """Record a registration QA verdict, now, for the registration ``transform``.

    Parameters
    ----------
    verdict : str
        One of :data:`QA_VERDICTS`.
    comment : str
        The reviewer's comment.
    transform : SimpleITK.Transform or None
        The registration reviewed (pre -> post, ITK convention; None: the identity).

    Returns
    -------
    dict
        ``verdict``, ``comment``, ``reviewed_at`` (ISO time) and :data:`QA_TRANSFORM_KEY`.

    Raises
    ------
    AblationError
        If the verdict is unknown or the transform is not rigid.
    """
    if verdict not in QA_VERDICTS:
        raise AblationError(f"QA verdict must be one of: {', '.join(QA_VERDICTS)}")
    return {
        "verdict": verdict,
        "comment": comment,
        "reviewed_at": _now(),
        QA_TRANSFORM_KEY: tfm.euler_params(transform),
    }


def same_registration(a: sitk.Transform | None, b: sitk.Transform | None) -> bool:
    """Tell whether two rigid registrations are the same map (None is the identity).

    Parameters
    ----------
    a, b : SimpleITK.Transform or None
        Rigid transforms, pre -> post.

    Returns
    -------
    bool
        True when their matrices agree to 1e-6 and their offsets to 1e-4 mm.
    """
    A1, b1 = tfm.matrix_offset(a)
    A2, b2 = tfm.matrix_offset(b)
    return bool(
        np.allclose(A1, A2, rtol=0, atol=_SAME_ROTATION)
        and np.allclose(b1, b2, rtol=0, atol=_SAME_OFFSET_MM)
    )


def qa_for_transform(qa: dict[str, Any] | None, transform: sitk.Transform | None) -> dict:
    """Return the registration QA verdict as it stands for the registration ``transform``.

    A verdict belongs to the registration it was recorded for. When ``transform`` is
    another one (moved, undone, fitted again, registered again), the registration in use
    was not reviewed: the verdict is "not reviewed" and the recorded one is kept under
    ``earlier``. A verdict without a record of its registration (a ``case.json`` written
    before verdicts were tied to one) counts as recorded for ``transform``.

    Parameters
    ----------
    qa : dict or None
        A recorded verdict (:func:`qa_record`, or the ``qa`` field of ``case.json``).
    transform : SimpleITK.Transform or None
        The registration in use (None: the identity).

    Returns
    -------
    dict
        ``verdict`` and ``comment`` (and ``reviewed_at`` when known) for ``transform``;
        for an earlier registration ``{"verdict": "not reviewed", "comment": "",
        "earlier": {"verdict", "comment", "reviewed_at"}}``.
    """
    rec = dict(qa or {})
    link = rec.pop(QA_TRANSFORM_KEY, None)
    rec.setdefault("verdict", QA_VERDICTS[0])
    rec.setdefault("comment", "")
    if rec["verdict"] == QA_VERDICTS[0] or link is None:
        return rec
    try:
        same = same_registration(tfm.euler_from_params(link), transform)
    except (KeyError, TypeError, ValueError, RuntimeError, AblationError):
        same = False  # an unreadable record vouches for nothing
    if same:
        return rec
    return {"verdict": QA_VERDICTS[0], "comment": "", "earlier": rec}


def reviewed_at_text(when: str | None) -> str:
    """Format the time a QA verdict was recorded for reading, in UTC to the minute.

    Parameters
    ----------
    when : str or None
        The ISO 8601 time stored with the verdict (``reviewed_at``).

    Returns
    -------
    str
        E.g. ``"2026-11-30 22:07 UTC"``; the stored text as it is when it is not an ISO
        time; ``""`` for none.
    """
    if not when:
        return ""
    try:
        t = datetime.fromisoformat(str(when))
    except ValueError:
        return str(when)
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def qa_text(qa: dict[str, Any] | None) -> str:
    """Describe the registration QA verdict in one line, as the widgets and reports show it.

    Parameters
    ----------
    qa : dict or None
        A verdict as :func:`qa_for_transform` returns it.

    Returns
    -------
    str
        E.g. ``"acceptable \u2014 cortex aligned"``, or ``"not reviewed for this
        registration (acceptable, 2026-11-30 18:59 UTC, was recorded for an earlier
        registration)"``.
    """
    qa = qa or {}
    earlier = qa.get("earlier")
    if earlier:
        when = f", {reviewed_at_text(earlier['reviewed_at'])}" if earlier.get("reviewed_at") else ""
        said = f" \u2014 {earlier['comment']}" if earlier.get("comment") else ""
        return (
            f"not reviewed for this registration ({earlier.get('verdict')}{when}{said}, "
            "was recorded for an earlier registration)"
        )
    text = str(qa.get("verdict") or QA_VERDICTS[0])
    return text + (f" \u2014 {qa['comment']}" if qa.get("comment") else "")


@dataclass
class Case:
    """One procedure: images, labels, registration, landmarks, settings and QA notes.

    Images are in identity-direction LPS (see :func:`~napari_ablation.core.io.read_image`);
    labels are ``uint8`` masks on the grid of the image they were drawn on.

    Parameters
    ----------
    pre : SimpleITK.Image, optional
        The pre-ablation image.
    post : SimpleITK.Image, optional
        The post-ablation image.
    tumor : SimpleITK.Image, optional
        Tumor labels on the pre grid.
    ablation : SimpleITK.Image, optional
        Ablation-zone labels on the post grid.
    transform : SimpleITK.Transform, optional
        The registration, pre -> post (ITK convention).
    landmarks : dict, optional
        Landmarks per image: ``{"pre": [{"label", "x", "y", "z"}, ...], "post": [...]}``
        in LPS mm.
    settings : dict, optional
        ``threshold_mm`` (the margin threshold, default 5 mm), ``tumor_label`` and
        ``ablation_label`` (the label values used, ``None`` for any non-zero).
    qa : dict, optional
        Registration QA: ``verdict`` (one of :data:`QA_VERDICTS`), ``comment``,
        ``reviewed_at`` (ISO time) and :data:`QA_TRANSFORM_KEY`, the registration the
        verdict was recorded for (see :func:`qa_for_transform`).
    info : dict, optional
        Free information: name, sources, modality, notes, ground truth (for sample
        cases).
    registration : dict, optional
        How ``transform`` was made: ``source`` (one of :data:`REGISTRATION_SOURCES`) and,
        for an automatic registration whose spread was estimated, ``error_covariance``
        (6 x 6 covariance of the rigid parameters ``(omega, t)``, rad and mm) about
        ``error_center`` (LPS mm); see :mod:`napari_ablation.core.uncertainty`; for a
        landmark fit, ``landmarks`` (``{"pre": rows, "post": rows}`` as ``landmarks``): the
        landmarks it was fitted to, which ``landmarks`` may no longer equal once edited.

    Examples
    --------
    >>> import tempfile
    >>> import SimpleITK as sitk
    >>> pre = sitk.Image(8, 8, 4, sitk.sitkInt16)
    >>> pre.SetSpacing((0.75, 0.75, 5.0))
    >>> case = Case(pre=pre, post=pre, settings={"threshold_mm": 3.0})
    >>> case.tumor = case.empty_labels("tumor")
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     back = Case.load(case.save(folder))
    >>> back.tumor.GetSize(), back.pre.GetSpacing(), back.settings["threshold_mm"]
    ((8, 8, 4), (0.75, 0.75, 5.0), 3.0)
    """

    pre: sitk.Image | None = None
    post: sitk.Image | None = None
    tumor: sitk.Image | None = None  # uint8 on the pre grid
    ablation: sitk.Image | None = None  # uint8 on the post grid
    transform: sitk.Transform | None = None  # pre -> post (ITK convention)
    #: landmarks per image: {"pre": [{"label": "1", "x":..,"y":..,"z":..}, ...], "post": [...]}
    landmarks: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"pre": [], "post": []}
    )
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    #: registration QA: {"verdict": one of QA_VERDICTS, "comment": str, "reviewed_at": iso}
    qa: dict[str, Any] = field(default_factory=lambda: {"verdict": "not reviewed", "comment": ""})
    #: free information: name, sources, modality, notes, ground truth (for sample cases)
    info: dict[str, Any] = field(default_factory=dict)
    #: how the transform was made: {"source", "error_covariance", "error_center", "landmarks"}
    registration: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ checks
    def check_labels(self) -> None:
        """Refuse labels that are not on the grid of their image.

        Raises
        ------
        AblationError
            If the tumor labels are not on the pre grid or the ablation labels not on
            the post grid.
        """
        for role in LABEL_ROLES:
            lab, img = getattr(self, role), getattr(self, GRID_OF[role])
            if lab is None or img is None:
                continue
            if not geometry.same_grid(lab, img):
                raise AblationError(f"{role} labels are not on the {GRID_OF[role]} image grid")

    def empty_labels(self, role: str) -> sitk.Image:
        """Make a new, empty label image on the grid where ``role`` is drawn.

        Parameters
        ----------
        role : {'tumor', 'ablation'}
            The labels: the tumor is drawn on pre, the ablation zone on post.

        Returns
        -------
        SimpleITK.Image
            A ``uint8`` image of zeros on that grid.

        Raises
        ------
        AblationError
            If the image of that grid is not loaded.
        """
        ref = getattr(self, GRID_OF[role])
        if ref is None:
            raise AblationError(f"load the {GRID_OF[role]} image before drawing {role} labels")
        lab = sitk.Image(ref.GetSize(), sitk.sitkUInt8)
        lab.CopyInformation(ref)
        return lab

    def copy(self) -> Case:
        """Copy the case; images are shared (SimpleITK images are copied on write).

        Returns
        -------
        Case
            A new case with the same images and transform, and its own copies of the
            landmarks, settings, QA and info.
        """
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
            registration=copy.deepcopy(self.registration),
        )

    def sources(self) -> list[str]:
        """List the files (or DICOM folders) the pre and post images were read from.

        Returns
        -------
        list of str
            ``info["pre_source"]`` and ``info["post_source"]`` when recorded.
        """
        return [str(s) for r in ("pre", "post") if (s := self.info.get(f"{r}_source"))]

    # ------------------------------------------------------------------ disk
    def save(self, folder: str | os.PathLike, *, only: tuple[str, ...] | None = None) -> Path:
        """Write the case into a folder, created if needed; all files or none.

        Parameters
        ----------
        folder : str or os.PathLike
            The case folder.
        only : tuple of str, optional
            The image/label roles to rewrite (autosave writes only the labels);
            default all. ``case.json`` is always rewritten, last.

        Returns
        -------
        pathlib.Path
            ``folder``.

        Raises
        ------
        AblationError
            If labels are not on their image's grid, the case holds a non-finite
            number, or a file cannot be written or removed.
        """
        folder = Path(folder)
        self.check_labels()
        manifest = self._load_manifest(folder)
        geoms = manifest.get("geometry", {}) if isinstance(manifest.get("geometry"), dict) else {}
        outs = OutputSet(inputs=self.sources())  # never onto the files it was read from
        remove: list[Path] = []
        for role, name in IMAGE_FILES.items():
            img = getattr(self, role)
            target = folder / name
            if img is None:
                if only is None or role in only:
                    if target.exists():
                        remove.append(target)
                    geoms.pop(role, None)
                continue
            if only is not None and role not in only and target.exists():
                continue
            if role in LABEL_ROLES:
                img = sitk.Cast(img, sitk.sitkUInt8) if img.GetPixelID() != sitk.sitkUInt8 else img
            outs.add_image(target, img)
            geoms[role] = geometry.geometry_dict(img)
        tx_path = folder / TRANSFORM_FILE
        if self.transform is not None:
            outs.add_text(tx_path, tfm.tfm_text(self.transform))
        elif tx_path.exists() and only is None:
            remove.append(tx_path)
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
            "registration": self.registration or None,
        }
        try:
            text = json.dumps(doc, indent=2, default=_json_default, allow_nan=False)
        except ValueError:
            raise AblationError(
                "the case holds a non-finite number (NaN or infinity); nothing saved"
            ) from None
        outs.add_text(folder / CASE_FILE, text)
        outs.commit()  # all files or none
        for path in remove:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise AblationError(os_error_message(exc, path, "remove")) from None
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
    def load(cls, folder: str | os.PathLike, roles: tuple[str, ...] | None = None) -> Case:
        """Read a case folder, checking ``case.json`` field by field and every file.

        Parameters
        ----------
        folder : str or os.PathLike
            The case folder (holding ``case.json``).
        roles : tuple of str, optional
            Read only these images and labels (e.g. ``("pre",)``); the others stay
            ``None``. Default: every file the case lists.

        Returns
        -------
        Case
            The case, with the exact float64 geometry and transform of ``case.json``; its
            labels ``uint8`` (values above 255 renumbered, and the selected label value
            with them: :func:`~napari_ablation.core.io.labels_to_uint8`).

        Raises
        ------
        AblationError
            One line naming the file (and the ``case.json`` field) that is wrong, e.g. a
            label file that is a scan (``tumor.nii.gz: not a label image: ...``).
        """
        folder = input_path(folder, "case folder")
        if not (folder / CASE_FILE).exists():
            raise AblationError(f"{folder}: not a case folder (no {CASE_FILE})")
        doc = read_case_document(folder / CASE_FILE)
        case = cls()
        geoms = doc.get("geometry", {})
        settings = {**DEFAULT_SETTINGS, **(doc.get("settings") or {})}
        for role, name in doc.get("files", {}).items():
            if role not in IMAGE_FILES or (roles is not None and role not in roles):
                continue
            path = folder / name
            if not path.exists():
                raise AblationError(f"{folder}: the case lists {name} but the file is missing")
            img = read_image(path, is_label=role in LABEL_ROLES).image
            if role in LABEL_ROLES:
                # a scan saved as the labels is refused; values above 255 are renumbered,
                # never wrapped (256 became 0, an annotation lost: UAT s12 N1)
                key = f"{role}_label"
                img, settings[key] = labels_to_uint8(img, name, label=settings[key])
            if role in geoms:
                try:
                    restored = restore_recorded_geometry(img, geoms[role])
                except RuntimeError:
                    raise AblationError(
                        f"{folder / CASE_FILE}: field 'geometry.{role}' is not a valid geometry"
                    ) from None
                if not restored:
                    raise AblationError(
                        f"{path.name}: geometry differs from the one recorded in {CASE_FILE}"
                    )
            setattr(case, role, img)
        if doc.get("transform"):
            try:
                case.transform = tfm.euler_from_params(doc["transform"])
            except RuntimeError:
                raise AblationError(
                    f"{folder / CASE_FILE}: field 'transform' is not a valid rigid transform"
                ) from None
        elif (folder / TRANSFORM_FILE).exists():
            case.transform = tfm.read_rigid_transform(folder / TRANSFORM_FILE)
        case.landmarks = doc.get("landmarks") or {"pre": [], "post": []}
        case.settings = settings
        case.qa = doc.get("qa") or {"verdict": "not reviewed", "comment": ""}
        case.info = doc.get("info") or {}
        case.registration = doc.get("registration") or {}
        case.check_labels()
        return case


def _field_error(path: Path, name: str, problem: str) -> AblationError:
    return AblationError(f"{path}: field '{name}' {problem}")


def _finite_list(path: Path, name: str, value, n: int, *, positive: bool = False) -> None:
    if not isinstance(value, list) or len(value) != n:
        raise _field_error(path, name, f"must be a list of {n} numbers")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _field_error(path, name, f"must hold {n} finite numbers")
        if positive and v <= 0:
            raise _field_error(path, name, "must hold positive numbers")


def recorded_geometry(path: str | os.PathLike) -> dict[str, Any] | None:
    """Return the exact geometry that a case folder records for one of its image files.

    Parameters
    ----------
    path : str or os.PathLike
        An image file.

    Returns
    -------
    dict or None
        The :func:`~napari_ablation.core.geometry.geometry_dict` that the ``case.json``
        beside ``path`` records for it; None when no valid ``case.json`` lists the file
        with a geometry.
    """
    p = Path(path)
    if not (p.parent / CASE_FILE).is_file():
        return None
    try:
        doc = read_case_document(p.parent / CASE_FILE)
    except AblationError:
        return None  # not a case folder this version reads: the file is read as it is
    roles = [role for role, name in (doc.get("files") or {}).items() if name == p.name]
    geoms = doc.get("geometry") or {}
    return next((geoms[r] for r in roles if r in geoms), None)


def restore_recorded_geometry(img: sitk.Image, geom: dict[str, Any]) -> bool:
    """Give an image read from a case folder the exact geometry recorded for it.

    NIfTI keeps spacing and origin in single precision, so a case file read back lies a few
    micrometres from the image the case was made from: enough to change the last printed
    decimal of a figure computed from it (UAT s8 N10e: an octant minimum 4.94 mm from the
    GUI, 4.941 mm from the CLI on the case folder). Every reader of a case folder's files
    (:meth:`Case.load`, :func:`~napari_ablation.core.io.read_image` and so the CLI) restores
    the float64 geometry ``case.json`` records, so all compute from the same grid.

    Parameters
    ----------
    img : SimpleITK.Image
        The image as read from the file (changed in place when restored).
    geom : dict
        The recorded geometry (:func:`recorded_geometry`).

    Returns
    -------
    bool
        True when restored; False (``img`` unchanged) when ``img`` is not the recorded
        image: another size or direction, or spacing / origin further from the record
        than single precision explains.

    Raises
    ------
    RuntimeError
        When SimpleITK refuses the recorded geometry (e.g. a singular direction).
    """
    if (
        list(img.GetSize()) != [int(v) for v in geom["size"]]
        or not np.allclose(img.GetOrigin(), geom["origin"], atol=1e-3)
        or not np.allclose(img.GetSpacing(), geom["spacing"], atol=1e-4)
        or not np.allclose(img.GetDirection(), geom["direction"], atol=1e-4)
    ):
        return False
    geometry.apply_geometry(img, geom)
    return True


def read_case_document(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``case.json`` and check every field it is read for.

    Parameters
    ----------
    path : str or os.PathLike
        The ``case.json`` file.

    Returns
    -------
    dict
        The document, with ``None`` for absent optional sections.

    Raises
    ------
    AblationError
        ``<path>: field '<name>' <problem>`` (or invalid JSON, or not a case file).
    """
    path = Path(path)
    text = read_text(path, "case file")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AblationError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != "napari-ablation case":
        raise AblationError(f"{path}: not a napari-ablation case file")
    version = doc.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise _field_error(path, "format_version", "must be an integer")
    if version > FORMAT_VERSION:
        raise _field_error(
            path, "format_version", f"is {version}: written by a newer napari-ablation"
        )
    files = doc.get("files") or {}
    if not isinstance(files, dict):
        raise _field_error(path, "files", "must be an object")
    for role, name in files.items():
        if role not in IMAGE_FILES:
            continue
        if not isinstance(name, str) or not name or name != Path(name).name or name in (".", ".."):
            raise _field_error(path, f"files.{role}", "must be a file name inside the case folder")
    geoms = doc.get("geometry") or {}
    if not isinstance(geoms, dict):
        raise _field_error(path, "geometry", "must be an object")
    for role, g in geoms.items():
        if role not in IMAGE_FILES:
            continue
        if not isinstance(g, dict):
            raise _field_error(path, f"geometry.{role}", "must be an object")
        _finite_list(path, f"geometry.{role}.origin", g.get("origin"), 3)
        _finite_list(path, f"geometry.{role}.spacing", g.get("spacing"), 3, positive=True)
        _finite_list(path, f"geometry.{role}.direction", g.get("direction"), 9)
        size = g.get("size")
        if (
            not isinstance(size, list)
            or len(size) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise _field_error(path, f"geometry.{role}.size", "must be 3 positive integers")
    tx = doc.get("transform")
    if tx is not None:
        if not isinstance(tx, dict):
            raise _field_error(path, "transform", "must be an object or null")
        _finite_list(path, "transform.center", tx.get("center"), 3)
        _finite_list(path, "transform.parameters", tx.get("parameters"), 6)
    lms = doc.get("landmarks")
    if lms is not None:
        if not isinstance(lms, dict):
            raise _field_error(path, "landmarks", "must be an object with 'pre' and 'post' lists")
        for side in ("pre", "post"):
            rows = lms.get(side, [])
            if not isinstance(rows, list):
                raise _field_error(path, f"landmarks.{side}", "must be a list")
            for k, row in enumerate(rows):
                if not isinstance(row, dict) or "label" not in row:
                    raise _field_error(path, f"landmarks.{side}[{k}]", "needs label, x, y and z")
                _finite_list(
                    path, f"landmarks.{side}[{k}]", [row.get("x"), row.get("y"), row.get("z")], 3
                )
    settings = doc.get("settings")
    if settings is not None:
        if not isinstance(settings, dict):
            raise _field_error(path, "settings", "must be an object")
        t = settings.get("threshold_mm", DEFAULT_SETTINGS["threshold_mm"])
        if not isinstance(t, (int, float)):
            t = math.nan
        try:
            coverage.check_threshold(t)
        except AblationError:
            raise _field_error(
                path, "settings.threshold_mm", f"must be {coverage.THRESHOLD_RULE}"
            ) from None
        for key in ("tumor_label", "ablation_label"):
            v = settings.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise _field_error(path, f"settings.{key}", "must be an integer or null")
    qa = doc.get("qa")
    if qa is not None:
        if not isinstance(qa, dict):
            raise _field_error(path, "qa", "must be an object")
        if qa.get("verdict", QA_VERDICTS[0]) not in QA_VERDICTS:
            raise _field_error(path, "qa.verdict", f"must be one of: {', '.join(QA_VERDICTS)}")
        link = qa.get(QA_TRANSFORM_KEY)
        if link is not None:
            name = f"qa.{QA_TRANSFORM_KEY}"
            if not isinstance(link, dict):
                raise _field_error(path, name, "must be an object or null")
            _finite_list(path, f"{name}.center", link.get("center"), 3)
            _finite_list(path, f"{name}.parameters", link.get("parameters"), 6)
    info = doc.get("info")
    if info is not None and not isinstance(info, dict):
        raise _field_error(path, "info", "must be an object")
    _check_registration(path, doc.get("registration"))
    return doc


def _check_registration(path: Path, reg) -> None:
    """Check the ``registration`` field of ``case.json`` (see :class:`Case`)."""
    if reg is None:
        return
    if not isinstance(reg, dict):
        raise _field_error(path, "registration", "must be an object or null")
    if reg.get("source") not in REGISTRATION_SOURCES:
        raise _field_error(
            path, "registration.source", f"must be one of: {', '.join(REGISTRATION_SOURCES)}"
        )
    cov, centre = reg.get("error_covariance"), reg.get("error_center")
    if cov is None and centre is None:
        return
    if not isinstance(cov, list) or len(cov) != 6:
        raise _field_error(path, "registration.error_covariance", "must be 6 rows of 6 numbers")
    for k, row in enumerate(cov):
        _finite_list(path, f"registration.error_covariance[{k}]", row, 6)
    m = np.asarray(cov, dtype=float)
    if not np.allclose(m, m.T, rtol=1e-6, atol=1e-12) or np.linalg.eigvalsh(m).min() < -1e-9 * max(
        1.0, float(np.abs(m).max())
    ):
        raise _field_error(
            path, "registration.error_covariance", "must be symmetric positive semi-definite"
        )
    _finite_list(path, "registration.error_center", centre, 3)


def case_files(folder: str | os.PathLike | None) -> list[Path]:
    """List the files a case folder holds or may hold (images, labels, transform, manifest).

    Parameters
    ----------
    folder : str or os.PathLike or None
        The case folder (None: no folder, no files).

    Returns
    -------
    list of pathlib.Path
        ``folder`` joined with every case file name.
    """
    if not folder:
        return []
    return [Path(folder) / n for n in (*IMAGE_FILES.values(), TRANSFORM_FILE, CASE_FILE)]


def protected_files(info: dict[str, Any], folder: str | os.PathLike | None) -> list[str]:
    """List what an export or a layer save must never write over.

    The files (or DICOM folders) the case's images were read from, and the files of its
    case folder (a JSON export named ``case.json`` would replace the manifest).

    Parameters
    ----------
    info : dict
        The case's ``info`` (``pre_source``, ``post_source``).
    folder : str or os.PathLike or None
        The case folder.

    Returns
    -------
    list of str
        Paths to pass as ``inputs`` to :class:`~napari_ablation.core.files.OutputSet`.
    """
    return Case(info=info).sources() + [str(p) for p in case_files(folder)]


def check_save_folder(
    folder: str | os.PathLike, own: str | os.PathLike | None = None, name: str = "case"
) -> Path:
    """Refuse to save a case into a folder where it would replace files that are not its own.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder chosen to save the case into.
    own : str or os.PathLike, optional
        The case's own folder (saving there again is always allowed).
    name : str, optional
        The case's name, for the message.

    Returns
    -------
    pathlib.Path
        ``folder``, free to save into: absent, or holding none of the case's files, or
        ``own``.

    Raises
    ------
    AblationError
        If ``folder`` holds another case (a ``case.json``) or any file the case would
        write (``pre.nii.gz``, ``tumor.nii.gz``, ``transform.tfm``, ...), or is a file.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = (Path(d) / "pre.nii.gz").write_bytes(b"the user's scan")
    ...     try:
    ...         check_save_folder(d)
    ...     except AblationError as exc:
    ...         print(str(exc).split(": ", 1)[1])
    it holds pre.nii.gz, which saving the case would replace; choose an empty folder
    """
    p = Path(folder)
    if own is not None and p.exists() and Path(own).exists() and os.path.samefile(p, own):
        return p
    if p.exists() and not p.is_dir():
        raise AblationError(f"cannot save the case into {p}: it is a file, not a folder")
    if (p / CASE_FILE).exists():
        other = ""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            other = str(json.loads((p / CASE_FILE).read_text("utf-8"))["info"]["name"])
        which = f"another case ('{other}')" if other and other != name else "another case"
        raise AblationError(
            f"refusing to save '{name}' into {p}: it holds {which}, which saving would "
            "replace; choose an empty folder"
        )
    clash = [f.name for f in case_files(p) if f.exists() or f.is_symlink()]
    if clash:
        raise AblationError(
            f"refusing to save '{name}' into {p}: it holds {', '.join(clash)}, which saving "
            "the case would replace; choose an empty folder"
        )
    return p


def is_case_folder(path: str | os.PathLike) -> bool:
    """Tell whether a path is a case folder (a folder holding ``case.json``).

    Parameters
    ----------
    path : str or os.PathLike
        Any path.

    Returns
    -------
    bool
        True for a folder with a ``case.json`` file.
    """
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
    """Make a new case from the loaded pre and post images.

    Notes from reading (series choice, oblique resampling) and a small overlap of the
    fields of view go to ``case.info["notes"]``.

    Parameters
    ----------
    pre : napari_ablation.core.io.LoadedImage
        The pre-ablation image.
    post : napari_ablation.core.io.LoadedImage
        The post-ablation image.
    name : str, optional
        The case name (default: the pre file or folder name without suffix).

    Returns
    -------
    Case
        The case, with sources, modalities and original geometries in ``info``.

    Raises
    ------
    AblationError
        If an image is missing, pre and post are the same file or the same series of one
        DICOM folder, or the two fields of view do not overlap at all (they cannot show
        the same anatomy).
    """
    for role, loaded in (("pre", pre), ("post", post)):
        if loaded is None:
            raise AblationError(f"no {role}-ablation image given")
    if pre.series_uid == post.series_uid and os.path.realpath(pre.source) == os.path.realpath(
        post.source
    ):
        what = (
            f"series '{pre.description or pre.series_uid}' of {Path(pre.source).name}"
            if pre.series_uid
            else f"file {Path(pre.source).name}"
        )
        raise AblationError(
            f"pre and post are the same {what}: choose the post-ablation series or file"
        )
    overlap = geometry.overlap_fraction(pre.image, post.image)
    if overlap <= 0.0:
        raise AblationError(
            "pre and post fields of view do not overlap (check that both series are from the "
            "same patient and frame of reference)"
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


def load_case_files(
    pre_path,
    post_path,
    *,
    pre_series: str | None = None,
    post_series: str | None = None,
    name: str | None = None,
) -> Case:
    """Read pre and post (files or DICOM folders) into a new case.

    Parameters
    ----------
    pre_path : str or os.PathLike
        The pre-ablation image file or DICOM folder.
    post_path : str or os.PathLike
        The post-ablation image file or DICOM folder.
    pre_series : str, optional
        SeriesInstanceUID to read from a pre DICOM folder (default: the largest 3D
        series).
    post_series : str, optional
        The same for post.
    name : str, optional
        The case name.

    Returns
    -------
    Case
        The new case (see :func:`case_from_images`).

    Raises
    ------
    AblationError
        As :func:`~napari_ablation.core.io.read_image` and :func:`case_from_images`.
    """
    pre = read_image(pre_path, series_uid=pre_series)
    post = read_image(post_path, series_uid=post_series)
    return case_from_images(pre, post, name=name)


def _free_folder(folder: Path) -> Path:
    """``folder`` when it is absent or empty, else the first absent or empty ``folder_N``."""
    candidate, n = folder, 2
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        candidate = folder.with_name(f"{folder.name}_{n}")
        n += 1
    return candidate


def open_sample_copy(
    key: str, folder: str | os.PathLike, *, fresh: bool = False
) -> tuple[Case, Path]:
    """Open the user's working copy of a bundled sample case, creating it if needed.

    The bundled files are never modified, and neither is anything already in ``folder``
    unless it is the working copy itself: when ``folder`` holds files but no
    ``case.json`` (the working copy lost it), its files are left alone and a new copy is
    made beside it, with a note.

    Parameters
    ----------
    key : str
        The sample's name (``renal_mri``, ``liver_ct``).
    folder : str or os.PathLike
        The working copy's folder.
    fresh : bool, optional
        Start a new numbered copy even when a working copy exists.

    Returns
    -------
    case : Case
        The case.
    folder : pathlib.Path
        The folder it lives in (``folder`` or a new ``folder_N`` beside it).

    Raises
    ------
    AblationError
        For an unknown sample, an unreadable working copy, or a folder that cannot
        be written.
    """
    from . import samples

    folder = Path(folder)
    if not fresh and is_case_folder(folder):
        return Case.load(folder), folder
    target = _free_folder(folder)
    case = samples.load_sample(key)
    case.info.setdefault("name", f"sample_{key}")
    if target != folder and not is_case_folder(folder):
        case.info.setdefault("notes", []).append(
            f"{folder} holds files but no {CASE_FILE}; they were left untouched and a new "
            f"copy was made in {target}"
        )
    case.save(target)
    return case, target
