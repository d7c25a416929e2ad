"""Teaching mode: quiz sets, answer keys, trainee answers, scores (docs/design.md, section 5).

A **quiz** is a folder holding ``quiz.json`` and one case folder per case ID
(``case_01``, ``case_02``, ...). Its **answer key** is a separate JSON file
(``{"threshold_mm", "cases": {ID: {"min_margin_mm", "min_margin_octant",
"complete_coverage", "coverage_class", ...}}}``) that the teacher keeps; a self-study quiz
also carries it inside as ``key.json`` (the Teach widget reveals it only after an answer
is submitted).

What a quiz case folder holds depends on the questions: the pre and post images always;
the reference tumor / ablation labels and registration unless the trainee is asked to
segment / register them (then the reference lives only in the key, packed); case notes
are reduced to the procedure and modality, so nothing in a case folder gives the answer
away (except to a trainee who runs the margin tool on the reference labels).

Questions: ``complete`` (is the tumor completely covered? yes/no), ``mtm`` (the minimal
treatment margin in mm), ``octant`` (of the minimal margin), ``class`` (green: all
covered with margin; yellow: covered, some margin below the threshold; red: some tumor
uncovered), ``tumor`` / ``ablation`` (the trainee's segmentation: Dice and 95 %
Hausdorff) and ``registration`` (the trainee's transform: target registration error at
the tumor).

Scores: one record per submitted case, appended to ``scores/<trainee>.jsonl`` in the quiz
folder; every append rewrites the file atomically (a temporary file, then a rename), so a
crash loses at most the answer being typed.

No Qt, no napari, no printing.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from . import coverage, geometry, synthetic
from . import transform as tfm
from .case import Case, _json_default, is_case_folder
from .coverage import CLASS_COLOR_NAMES, CLASS_KEYS
from .errors import AblationError
from .io import read_image, write_text_atomic
from .margin import OCTANTS, MarginResult, analyze_margin, json_figure, round_half_away

QUIZ_FILE = "quiz.json"
KEY_IN_QUIZ = "key.json"
SCORES_DIR = "scores"
QUIZ_FORMAT = "napari-ablation quiz"
KEY_FORMAT = "napari-ablation quiz key"
FORMAT_VERSION = 1

#: every question a teacher can ask, in the order the Teach widget shows them
QUESTIONS = ("complete", "mtm", "octant", "class", "tumor", "ablation", "registration")
#: questions about the margin (judged on the images; reference outlines may be shown)
JUDGE_QUESTIONS = ("complete", "mtm", "octant", "class")
#: questions on the trainee's own work (the reference is hidden until the reveal)
WORK_QUESTIONS = ("tumor", "ablation", "registration")
DEFAULT_QUESTIONS = JUDGE_QUESTIONS
QUESTION_TITLES = {
    "complete": "Is the tumor completely covered?",
    "mtm": "Minimal treatment margin (mm)",
    "octant": "Octant of the minimal margin",
    "class": "Coverage class at the threshold",
    "tumor": "Segment the tumor (pre)",
    "ablation": "Segment the ablation zone (post)",
    "registration": "Register post to pre",
}
#: the coverage class answers (docs/design.md, section 5)
CLASS_ANSWERS = tuple(CLASS_COLOR_NAMES[k] for k in CLASS_KEYS)
#: answers CSV: the first five columns are the contract; the last three name files
ANSWER_COLUMNS = ("case", "complete", "mtm_mm", "octant", "class", "tumor", "ablation", "transform")
OCTANT_RESULTS = ("right", "adjacent", "wrong")
#: ``case.info`` key set while a quiz question is open on a case: the Margins widget shows
#: no readout and computes nothing until the answer is submitted
QUIZ_LOCK = "quiz_question_open"
#: case info key: the reveal draws the reference's margins, which are not the case's own
#: (the trainee drew or registered, or the reference outlines were hidden)
QUIZ_REFERENCE_SHOWN = "quiz_reference_shown"
#: case info key: the work questions of the open question (the trainee draws / registers
#: those; every other label and the registration are read-only until the answer)
QUIZ_WORK = "quiz_work"
WORK_DIR = "work"
_AXIS_NAMES = ("left-right", "anterior-posterior", "superior-inferior")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# =====================================================================================
# the quiz folder


@dataclass
class Quiz:
    """A quiz folder: its cases, questions, threshold and whether the key is inside.

    Parameters
    ----------
    folder : pathlib.Path
        The quiz folder (holding ``quiz.json`` and one case folder per case ID).
    quiz_id : str
        The quiz's unique ID, shared with its answer key (empty when unknown).
    title : str
        Shown in the Teach widget.
    threshold_mm : float
        The margin threshold of the coverage classes, in mm.
    questions : tuple of str
        The questions asked, among :data:`QUESTIONS`.
    case_ids : list of str
        The case IDs (``case_01``, ``case_02``, ...), in the order they are taken.
    show_reference : bool, default True
        Show the reference outlines while margin questions are open (Teach widget).
    info : dict, optional
        Free information (``created_at``, ``source``).
    """

    folder: Path
    quiz_id: str
    title: str
    threshold_mm: float
    questions: tuple[str, ...]
    case_ids: list[str]
    show_reference: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Quiz:
        """Read a quiz folder.

        Parameters
        ----------
        folder : path
            The quiz folder (holding ``quiz.json``).

        Returns
        -------
        Quiz
            The quiz described by its ``quiz.json``.

        Raises
        ------
        AblationError
            Not a quiz folder, or a quiz without cases, or a case folder missing.
        """
        folder = Path(folder)
        path = folder / QUIZ_FILE
        if not path.is_file():
            raise AblationError(f"{folder}: not a quiz folder (no {QUIZ_FILE})")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise AblationError(f"{path}: not valid JSON ({exc})") from None
        if doc.get("format") != QUIZ_FORMAT:
            raise AblationError(f"{path}: not a napari-ablation quiz file")
        ids = [str(c) for c in doc.get("cases") or []]
        if not ids:
            raise AblationError(f"{folder}: the quiz has no cases")
        for cid in ids:
            if not is_case_folder(folder / cid):
                raise AblationError(
                    f"{folder}: the quiz lists case '{cid}' but its case folder is missing"
                )
        questions = tuple(doc.get("questions") or DEFAULT_QUESTIONS)
        _check_questions(questions)
        try:
            threshold_mm = coverage.check_threshold(doc.get("threshold_mm", 5.0))
        except AblationError:
            raise AblationError(f"{path}: threshold_mm must be {coverage.THRESHOLD_RULE}") from None
        return cls(
            folder=folder,
            quiz_id=str(doc.get("quiz_id", "")),
            title=str(doc.get("title", folder.name)),
            threshold_mm=threshold_mm,
            questions=questions,
            case_ids=ids,
            show_reference=bool(doc.get("show_reference", True)),
            info=dict(doc.get("info") or {}),
        )

    def case_folder(self, case_id: str) -> Path:
        """Return the folder of case ``case_id``.

        Parameters
        ----------
        case_id : str
            A case ID of the quiz.

        Returns
        -------
        pathlib.Path
            ``folder / case_id``.

        Raises
        ------
        AblationError
            If the quiz has no such case.
        """
        if case_id not in self.case_ids:
            raise AblationError(f"the quiz has no case '{case_id}'")
        return self.folder / case_id

    def load_case(self, case_id: str) -> Case:
        """Read case ``case_id`` of the quiz.

        Parameters
        ----------
        case_id : str
            A case ID of the quiz.

        Returns
        -------
        Case
            The trainee's copy of the case.

        Raises
        ------
        AblationError
            If the quiz has no such case or its folder cannot be read.
        """
        return Case.load(self.case_folder(case_id))

    @property
    def self_study(self) -> bool:
        """The key is inside the quiz folder."""
        return (self.folder / KEY_IN_QUIZ).is_file()

    def load_key(self, path: str | os.PathLike | None = None) -> dict[str, Any]:
        """Read the answer key and check it against this quiz.

        Parameters
        ----------
        path : str or os.PathLike, optional
            The key file; default the key inside a self-study quiz.

        Returns
        -------
        dict
            The key (``threshold_mm``, ``cases``, ``quiz_id``, ...; see :func:`read_key`).

        Raises
        ------
        AblationError
            If no path is given and the quiz holds no key, or the key cannot be read or
            does not match the quiz.
        """
        if path is None:
            if not self.self_study:
                raise AblationError(
                    f"{self.folder}: no answer key in the quiz folder; give the teacher's key file"
                )
            path = self.folder / KEY_IN_QUIZ
        key = read_key(path)
        check_key_matches(self, key)
        return key

    def to_json(self) -> dict[str, Any]:
        """Return the ``quiz.json`` document.

        Returns
        -------
        dict
            The JSON-serialisable document (format, version, ID, title, threshold,
            questions, ``show_reference``, cases and info).
        """
        return {
            "format": QUIZ_FORMAT,
            "format_version": FORMAT_VERSION,
            "quiz_id": self.quiz_id,
            "title": self.title,
            "threshold_mm": self.threshold_mm,
            "questions": list(self.questions),
            "show_reference": self.show_reference,
            "cases": list(self.case_ids),
            "info": self.info,
        }


def _check_questions(questions: Sequence[str]) -> tuple[str, ...]:
    if not questions:
        raise AblationError("choose at least one question")
    for q in questions:
        if q not in QUESTIONS:
            raise AblationError(f"unknown question '{q}': choose from {', '.join(QUESTIONS)}")
    return tuple(q for q in QUESTIONS if q in questions)


def read_key(path: str | os.PathLike) -> dict[str, Any]:
    """Read an answer key file.

    Parameters
    ----------
    path : path
        The key JSON.

    Returns
    -------
    dict
        The key (``threshold_mm``, ``cases``, ``quiz_id``, ...).

    Raises
    ------
    AblationError
        Missing file, not JSON, or not a key.
    """
    p = Path(path)
    if not p.is_file():
        raise AblationError(f"{p}: no such key file")
    try:
        key = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise AblationError(f"{p}: not valid JSON ({exc})") from None
    if (
        not isinstance(key, dict)
        or not isinstance(key.get("cases"), dict)
        or "threshold_mm" not in key
    ):
        raise AblationError(f"{p}: not a quiz answer key (needs threshold_mm and cases)")
    for cid, k in key["cases"].items():
        for name in ("min_margin_mm", "min_margin_octant", "complete_coverage", "coverage_class"):
            if name not in k:
                raise AblationError(f"{p}: case '{cid}' has no {name}")
    return key


def check_key_matches(quiz: Quiz, key: dict[str, Any]) -> None:
    """Check that ``key`` is the key of ``quiz``: same quiz ID when both have one, same cases.

    Parameters
    ----------
    quiz : Quiz
        The quiz.
    key : dict
        An answer key (:func:`read_key`).

    Raises
    ------
    AblationError
        If the quiz IDs differ or the key's cases are not the quiz's.
    """
    kid = key.get("quiz_id")
    if kid and quiz.quiz_id and kid != quiz.quiz_id:
        raise AblationError("the key does not belong to this quiz (different quiz id)")
    if set(key["cases"]) != set(quiz.case_ids):
        missing = sorted(set(quiz.case_ids) - set(key["cases"]))
        extra = sorted(set(key["cases"]) - set(quiz.case_ids))
        what = (
            f"no answer for {', '.join(missing[:3])}"
            if missing
            else f"cases not in the quiz: {', '.join(extra[:3])}"
        )
        raise AblationError(f"the key does not match the quiz ({what})")


# =====================================================================================
# packed reference masks (kept in the key when the trainee segments)


def pack_mask(img: sitk.Image) -> dict[str, Any]:
    """Pack a binary label image as JSON: geometry plus zlib-compressed packed bits (base64).

    Parameters
    ----------
    img : SimpleITK.Image
        A label image; any non-zero voxel is foreground.

    Returns
    -------
    dict
        ``shape_zyx`` (the array shape (z, y, x)), ``geometry`` (origin, spacing,
        direction) and ``bits`` (base64 text).
    """
    arr = sitk.GetArrayViewFromImage(img) != 0
    return {
        "shape_zyx": list(arr.shape),
        "geometry": geometry.geometry_dict(img),
        "bits": base64.b64encode(zlib.compress(np.packbits(arr.ravel()).tobytes(), 9)).decode(
            "ascii"
        ),
    }


def unpack_mask(doc: dict[str, Any]) -> sitk.Image:
    """Unpack a label image packed by :func:`pack_mask`.

    Parameters
    ----------
    doc : dict
        The packed mask (``shape_zyx``, ``geometry``, ``bits``).

    Returns
    -------
    SimpleITK.Image
        A ``uint8`` image, 1 = foreground, with the packed geometry.
    """
    shape = tuple(int(s) for s in doc["shape_zyx"])
    bits = np.frombuffer(zlib.decompress(base64.b64decode(doc["bits"])), dtype=np.uint8)
    arr = np.unpackbits(bits)[: int(np.prod(shape))].reshape(shape).astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    geometry.apply_geometry(img, doc["geometry"])
    return img


# =====================================================================================
# 2D versus 3D: the margin on the axial slice of the largest tumor diameter


def axial_vs_3d(
    tumor: sitk.Image,
    ablation: sitk.Image,
    transform: sitk.Transform | None = None,
    *,
    result: MarginResult | None = None,
    threshold_mm: float = 5.0,
    step_mm: float = 0.2,
) -> dict[str, Any]:
    """Measure the margin a reader sees on one axial slice, beside the 3D minimal margin.

    A reader typically measures on the axial slice where the tumor is largest. On that
    slice the in-plane margin (the 2D distance from the tumor outline to the ablation
    outline, negative where the tumor outline lies outside) has its own minimum; the 3D
    minimum may lie above or below the slice, and be smaller.

    Parameters
    ----------
    tumor : SimpleITK.Image
        Tumor labels (pre grid).
    ablation : SimpleITK.Image
        Ablation labels (post grid).
    transform : SimpleITK.Transform, optional
        Pre -> post registration (ITK convention).
    result : MarginResult, optional
        The 3D analysis of the same inputs (computed when not given).
    threshold_mm : float
        Threshold for the 3D analysis when it is computed here.
    step_mm : float
        In-plane sampling of the slice (mm).

    Returns
    -------
    dict
        ``slice_index`` (z index on the pre grid), ``slice_z_mm``, ``tumor_diameter_2d_mm``,
        ``margin_2d_mm``, ``margin_2d_point_lps``, ``margin_3d_mm``, ``margin_3d_point_lps``,
        ``margin_3d_octant``, ``offset_from_slice_mm`` (3D minimum's z minus the slice's;
        positive = above, i.e. superior), ``sentence``.

    Raises
    ------
    AblationError
        Empty masks, or an ablation zone that does not reach the slice's region.
    """
    from skimage import measure

    if result is None:
        result = analyze_margin(tumor, ablation, transform, threshold_mm, with_shells=False)
    arr = sitk.GetArrayViewFromImage(tumor) != 0
    zs = np.flatnonzero(arr.any(axis=(1, 2)))
    if zs.size == 0:
        raise AblationError("the tumor mask is empty")
    sx, sy, _sz = tumor.GetSpacing()
    diam = {}
    for z in zs:
        idx = np.argwhere(arr[z])
        diam[int(z)] = geometry.max_pairwise_distance(idx * np.array([sy, sx])) + 0.5 * (sx + sy)
    # the largest slice; among slices within half a pixel of it (pixelation), the most central
    top = max(diam.values())
    zc = float(np.argwhere(arr)[:, 0].mean())
    best = min(
        (z for z, d in diam.items() if d >= top - 0.5 * min(sx, sy)), key=lambda z: abs(z - zc)
    )
    best_d = float(diam[best])
    z_mm = float(geometry.index_to_lps(tumor, (best, 0, 0))[2])
    # a fine in-plane grid over the tumor's box on that slice, padded
    idx = np.argwhere(arr[best])
    lo = geometry.index_to_lps(tumor, (best, idx[:, 0].min(), idx[:, 1].min()))
    hi = geometry.index_to_lps(tumor, (best, idx[:, 0].max(), idx[:, 1].max()))
    pad = 15.0 + max(threshold_mm, 0.0)
    lo, hi = lo[:2] - pad, hi[:2] + pad
    n = np.ceil((hi - lo) / step_mm).astype(int) + 1
    ref = sitk.Image([int(n[0]), int(n[1]), 1], sitk.sitkFloat32)
    ref.SetSpacing([step_mm, step_mm, 1.0])
    ref.SetOrigin([float(lo[0]), float(lo[1]), z_mm])
    t_sl = sitk.GetArrayFromImage(
        sitk.Resample(
            sitk.Cast(tumor != 0, sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear, 0.0
        )
    )[0]
    a_sl = sitk.GetArrayFromImage(
        sitk.Resample(
            sitk.Cast(ablation != 0, sitk.sitkFloat32),
            ref,
            transform or sitk.Transform(),
            sitk.sitkLinear,
            0.0,
        )
    )[0]
    # anti-aliasing of the voxel staircase (one voxel), as the 3D engine does before its surfaces
    from scipy import ndimage

    ay, ax = ablation.GetSpacing()[1], ablation.GetSpacing()[0]
    t_sl = ndimage.gaussian_filter(t_sl, (0.7 * sy / step_mm, 0.7 * sx / step_mm))
    a_sl = ndimage.gaussian_filter(a_sl, (0.7 * ay / step_mm, 0.7 * ax / step_mm))
    t_c = measure.find_contours(t_sl, 0.5)
    a_c = measure.find_contours(a_sl, 0.5)
    if not t_c:
        raise AblationError("the tumor has no outline on its largest axial slice")
    tp = np.concatenate(t_c)  # (row=y, col=x) in fine-grid index
    tpts = np.column_stack([lo[0] + tp[:, 1] * step_mm, lo[1] + tp[:, 0] * step_mm])
    inside = _bilinear(a_sl, tp) >= 0.5
    if a_c:
        from scipy.spatial import cKDTree

        ap = np.concatenate([_densify(c) for c in a_c])
        apts = np.column_stack([lo[0] + ap[:, 1] * step_mm, lo[1] + ap[:, 0] * step_mm])
        dist, _ = cKDTree(apts).query(tpts)
    else:  # no ablation on the slice at all: every outline point is uncovered by > pad
        dist = np.full(len(tpts), pad)
    m2 = np.where(inside, dist, -dist)
    i = int(np.argmin(m2))
    p2 = [float(tpts[i, 0]), float(tpts[i, 1]), z_mm]
    p3 = [float(v) for v in result.min_margin_point_lps]
    out = {
        "slice_index": best,
        "slice_z_mm": z_mm,
        "tumor_diameter_2d_mm": float(best_d),
        "margin_2d_mm": float(m2[i]),
        "margin_2d_point_lps": p2,
        "margin_3d_mm": float(result.min_margin_mm),
        "margin_3d_point_lps": p3,
        "margin_3d_octant": result.min_margin_octant,
        "offset_from_slice_mm": float(p3[2] - z_mm),
    }
    out["sentence"] = axial_sentence(out)
    return out


def _bilinear(img2d: np.ndarray, rc: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.map_coordinates(img2d, rc.T, order=1, mode="nearest")


def _densify(contour: np.ndarray, step: float = 0.25) -> np.ndarray:
    """Points every ``step`` (grid units) along a polyline."""
    seg = np.diff(contour, axis=0)
    out = [contour[:1]]
    for p, d in zip(contour[:-1], seg):
        k = max(int(np.ceil(np.hypot(*d) / step)), 1)
        out.append(p + d * (np.arange(1, k + 1)[:, None] / k))
    return np.concatenate(out)


def _where_z(offset_mm: float) -> str:
    if abs(offset_mm) < 0.5:
        return "on the axial slice of the largest tumor diameter"
    return (
        f"{abs(offset_mm):.0f} mm {'above' if offset_mm > 0 else 'below'} the axial slice of "
        "the largest tumor diameter"
    )


def axial_sentence(aid: dict[str, Any]) -> str:
    """Compose one sentence comparing the 2D slice margin with the 3D minimal margin.

    Parameters
    ----------
    aid : dict
        The 2D-versus-3D comparison of :func:`axial_vs_3d` (``margin_2d_mm``,
        ``margin_3d_mm``, ``offset_from_slice_mm`` in mm, ``margin_3d_octant``).

    Returns
    -------
    str
        The sentence.
    """
    return (
        "On the axial slice of the largest diameter a reader measures "
        f"{aid['margin_2d_mm']:.1f} mm; "
        f"the 3D minimal margin is {aid['margin_3d_mm']:.1f} mm, "
        f"{_where_z(aid['offset_from_slice_mm'])} "
        f"({aid['margin_3d_octant']})."
    )


# =====================================================================================
# making a quiz


def _key_entry(
    min_margin_mm: float,
    octant: str,
    threshold_mm: float,
    *,
    point_lps,
    centroid_lps,
    octant_min: dict[str, float | None],
    aid: dict[str, Any],
    source: str,
) -> dict[str, Any]:
    return {
        "min_margin_mm": json_figure(min_margin_mm),
        "min_margin_mm_rounded": round_half_away(float(min_margin_mm)),
        "min_margin_octant": octant,
        "complete_coverage": bool(min_margin_mm >= 0.0),
        "coverage_class": synthetic.coverage_class(float(min_margin_mm), threshold_mm),
        "min_margin_point_lps": [json_figure(v) for v in point_lps],
        "tumor_centroid_lps": [json_figure(v) for v in centroid_lps],
        "octant_min_margin_mm": {k: json_figure(v) for k, v in octant_min.items()},
        "axial_2d": aid,
        "source": source,
    }


def key_interval(case: Case, res, key_mtm_mm: float) -> dict[str, Any]:
    """Compute the 95 % interval of a key's MTM, as the Margins widget shows it for the case.

    The error model of a quiz case's registration is the reader accuracy the case model
    assumes for a registration of unknown origin
    (:data:`~napari_ablation.core.uncertainty.DEFAULT_READER_SD_MM` per axis), plus half a
    voxel of each boundary; 200 samples, seed 0. The interval is moved with the key's MTM
    when the key holds an exact (analytic) MTM rather than the engine's.

    Parameters
    ----------
    case : Case
        The case (its tumor and ablation grids and registration).
    res : MarginResult
        Its analysis.
    key_mtm_mm : float
        The MTM of the key.

    Returns
    -------
    dict
        ``min_margin_interval_mm`` ([lo, hi]) and ``interval_sources`` (list of str).
    """
    from . import uncertainty

    err = uncertainty.RegistrationError(
        sd_mm=uncertainty.DEFAULT_READER_SD_MM,
        sd_note="assumed reader accuracy, registration saved with the case",
    )
    unc = uncertainty.case_uncertainty(
        res, err, tumor=case.tumor, ablation=case.ablation, transform=case.transform
    )
    shift = float(key_mtm_mm) - float(res.min_margin_mm)
    lo, hi = unc.interval_mm
    return {
        "min_margin_interval_mm": [round(lo + shift, 3), round(hi + shift, 3)],
        "interval_sources": list(unc.sources),
    }


def mtm_in_interval(answer_mm: float, key_case: dict[str, Any]) -> bool | None:
    """Whether an MTM answer lies inside the key's 95 % interval (None: the key has none).

    Parameters
    ----------
    answer_mm : float
        The trainee's MTM.
    key_case : dict
        The key's entry (``min_margin_interval_mm``, written by :func:`make_quiz`).

    Returns
    -------
    bool or None
        Whether ``answer_mm`` lies in [lo, hi] (with a 1e-9 mm tolerance); ``None`` when
        the key has no interval.
    """
    iv = key_case.get("min_margin_interval_mm")
    if not iv:
        return None
    lo, hi = (float(v) for v in iv)
    return lo - 1e-9 <= float(answer_mm) <= hi + 1e-9


#: said with an interval computed at scoring for a key made before MTM intervals
INTERVAL_AT_SCORING = "computed at scoring (the key was made before MTM intervals)"


def ensure_key_interval(
    key_case: dict[str, Any], quiz_case: Case | None, threshold_mm: float
) -> dict[str, Any]:
    """Give a key entry made before MTM intervals existed the interval a new key would hold.

    An answer is then scored the same way whatever the key's age: inside the 95 % interval
    counts as right. The interval is computed as :func:`make_quiz` computes it
    (:func:`key_interval`), from the reference labels and registration (the key's
    ``reference``, else the quiz's copy of the case), and stored in ``key_case`` (in memory:
    the key file is never rewritten), with :data:`INTERVAL_AT_SCORING` among its sources.

    Parameters
    ----------
    key_case : dict
        The key's entry for the case (changed in place when it gets an interval).
    quiz_case : Case or None
        The quiz's copy of the case.
    threshold_mm : float
        The quiz threshold.

    Returns
    -------
    dict
        ``key_case``; without an interval only when the reference labels are nowhere
        (the answer is then scored on the exact MTM, as before).
    """
    if key_case.get("min_margin_interval_mm") or "min_margin_mm" not in key_case:
        return key_case
    ref = key_case.get("reference") or {}
    qc = quiz_case if quiz_case is not None else Case()
    tumor = unpack_mask(ref["tumor"]) if "tumor" in ref else qc.tumor
    ablation = unpack_mask(ref["ablation"]) if "ablation" in ref else qc.ablation
    tx = tfm.euler_from_params(ref["transform"]) if "transform" in ref else qc.transform
    if tumor is None or ablation is None:
        return key_case
    res = analyze_margin(tumor, ablation, tx, threshold_mm, with_shells=False)
    case = Case(tumor=tumor, ablation=ablation, transform=tx)
    entry = key_interval(case, res, float(key_case["min_margin_mm"]))
    entry["interval_sources"] = [*entry["interval_sources"], INTERVAL_AT_SCORING]
    key_case.update(entry)
    return key_case


def _case_for_scoring(
    quiz: Quiz, case_id: str, answer: dict[str, Any], key_case: dict[str, Any]
) -> Case | None:
    """Load the quiz's copy of the case when scoring ``answer`` needs it.

    It is needed for a segmentation or a registration to score, or for an MTM against a key
    made before intervals.
    """
    work = any(answer.get(r) for r in ("tumor", "ablation", "transform"))
    old_key = answer.get("mtm_mm") is not None and not key_case.get("min_margin_interval_mm")
    return quiz.load_case(case_id) if work or old_key else None


def _tre_points(tumor: sitk.Image, n: int = 400) -> list[list[float]]:
    """Up to ``n`` tumor voxel centres (LPS): where a registration's error matters."""
    idx = np.argwhere(sitk.GetArrayViewFromImage(tumor) != 0)
    if len(idx) > n:
        idx = idx[np.linspace(0, len(idx) - 1, n).astype(int)]
    ijk = idx[:, ::-1] * np.asarray(tumor.GetSpacing())
    pts = np.asarray(tumor.GetOrigin()) + ijk @ geometry.direction_matrix(tumor).T
    return [[json_figure(v) for v in p] for p in pts]


def _quiz_case(case: Case, questions: tuple[str, ...], threshold_mm: float, number: int) -> Case:
    """Make the trainee's copy of a case.

    The images, and the reference only where no question asks for it.
    """
    info = {
        "name": f"case_{number:02d}",
        "title": f"Quiz case {number}",
        "quiz_case": True,
    }
    for k in ("modality", "procedure", "organ", "sequence", "phase"):
        if k in case.info:
            info[k] = case.info[k]
    out = Case(pre=case.pre, post=case.post, info=info)
    if "tumor" not in questions:
        out.tumor = case.tumor
    if "ablation" not in questions:
        out.ablation = case.ablation
    if "registration" not in questions:
        out.transform = case.transform
    out.settings["threshold_mm"] = float(threshold_mm)
    return out


def _reference(case: Case, questions: tuple[str, ...]) -> dict[str, Any]:
    ref: dict[str, Any] = {"tre_points_lps": _tre_points(case.tumor)}
    if "tumor" in questions:
        ref["tumor"] = pack_mask(case.tumor)
    if "ablation" in questions:
        ref["ablation"] = pack_mask(case.ablation)
    if "registration" in questions:
        ref["transform"] = tfm.euler_params(case.transform)
    return ref


def make_quiz(
    out: str | os.PathLike,
    key_path: str | os.PathLike,
    *,
    cases: Sequence[str | os.PathLike] | None = None,
    n_synthetic: int | None = None,
    seed: int = 0,
    modality: str = "mixed",
    questions: Sequence[str] = DEFAULT_QUESTIONS,
    threshold_mm: float = 5.0,
    include_key: bool = False,
    show_reference: bool = True,
    small: bool = False,
    title: str | None = None,
    progress=None,
) -> Quiz:
    """Make a quiz folder and its answer key.

    Parameters
    ----------
    out : path
        The quiz folder to create (must not exist, or be empty).
    key_path : path
        Where to write the answer key (JSON).
    cases : list of paths, optional
        (a) Saved case folders: the expert's tumor / ablation labels and registration are
        the reference; the key is computed with :func:`~napari_ablation.core.margin.analyze_margin`.
    n_synthetic : int, optional
        (b) Number of generated cases (:func:`~napari_ablation.core.synthetic.synthetic_case`,
        seeds ``seed``, ``seed + 1``, ...; scenarios cycled, every octant once per 8 cases);
        the key holds their exact truths.
    seed : int
        First seed of the synthetic cases.
    modality : {"mri", "ct", "mixed"}
        Modality of the synthetic cases (``mixed`` alternates).
    questions : sequence of str
        Among :data:`QUESTIONS`.
    threshold_mm : float
        The margin threshold of the coverage classes.
    include_key : bool
        Also put the key into the quiz folder (self-study).
    show_reference : bool
        Show the reference outlines while margin questions are open (Teach widget).
    small : bool
        Small fields of view for the synthetic cases (fast, small files).
    title : str, optional
        Shown in the Teach widget.
    progress : callable, optional
        Called as ``progress(i, n)`` after each case.

    Returns
    -------
    Quiz
        The quiz just written.

    Raises
    ------
    AblationError
        Neither or both of ``cases`` / ``n_synthetic``; a folder that is not a case or
        lacks labels; an output folder that is not empty; bad questions. Nothing is
        written then.
    """
    questions = _check_questions(tuple(questions))
    if (cases is None) == (n_synthetic is None):
        raise AblationError("give either case folders or a number of synthetic cases")
    threshold_mm = coverage.check_threshold(threshold_mm)
    out = Path(out)
    key_path = Path(key_path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AblationError(f"{out}: already exists and is not empty")
    if key_path.suffix.lower() != ".json":
        raise AblationError(f"{key_path.name}: the key must be a .json file")
    if key_path.resolve().is_relative_to(out.resolve()):
        raise AblationError(
            "keep the key outside the quiz folder (use --include-key for self-study)"
        )
    if cases is not None:
        if not cases:
            raise AblationError("no case folders given")
        sources = [Path(c) for c in cases]
        for c in sources:
            if not is_case_folder(c):
                raise AblationError(f"{c}: not a case folder (no case.json)")
        n = len(sources)
    else:
        n = int(n_synthetic)
        if n < 1:
            raise AblationError("the number of synthetic cases must be at least 1")
        if modality not in (*synthetic.MODALITIES, "mixed"):
            raise AblationError(f"unknown modality '{modality}': choose mri, ct or mixed")

    quiz_id = uuid.uuid4().hex
    ids = [f"case_{i + 1:02d}" for i in range(n)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    key_cases: dict[str, Any] = {}
    try:
        octants = np.random.default_rng(int(seed)).permutation(len(OCTANTS))
        for i, cid in enumerate(ids):
            if cases is not None:
                case = Case.load(sources[i])
                if case.tumor is None or case.ablation is None:
                    raise AblationError(
                        f"{sources[i]}: the case needs tumor and ablation labels to be a quiz case"
                    )
                res = analyze_margin(
                    case.tumor, case.ablation, case.transform, threshold_mm, with_shells=False
                )
                aid = axial_vs_3d(case.tumor, case.ablation, case.transform, result=res)
                entry = _key_entry(
                    res.min_margin_mm,
                    res.min_margin_octant,
                    threshold_mm,
                    point_lps=res.min_margin_point_lps,
                    centroid_lps=res.tumor_centroid_lps,
                    octant_min=res.octant_min_margin_mm,
                    aid=aid,
                    source=str(sources[i].resolve()),
                )
                entry.update(key_interval(case, res, res.min_margin_mm))
            else:
                mod = synthetic.MODALITIES[i % 2] if modality == "mixed" else modality
                case, truth = synthetic.synthetic_case(
                    int(seed) + i,
                    modality=mod,
                    scenario=synthetic.SCENARIOS[i % len(synthetic.SCENARIOS)],
                    octant=OCTANTS[octants[i % len(OCTANTS)]],
                    threshold_mm=threshold_mm,
                    small=small,
                )
                res = analyze_margin(
                    case.tumor, case.ablation, case.transform, threshold_mm, with_shells=False
                )
                aid = axial_vs_3d(case.tumor, case.ablation, case.transform, result=res)
                # the 3D side of the aid from the exact truth
                aid.update(
                    margin_3d_mm=truth["min_margin_mm"],
                    margin_3d_point_lps=truth["min_margin_point_lps"],
                    margin_3d_octant=truth["min_margin_octant"],
                    offset_from_slice_mm=truth["min_margin_point_lps"][2] - aid["slice_z_mm"],
                )
                aid["sentence"] = axial_sentence(aid)
                entry = _key_entry(
                    truth["min_margin_mm"],
                    truth["min_margin_octant"],
                    threshold_mm,
                    point_lps=truth["min_margin_point_lps"],
                    centroid_lps=truth["tumor_centroid_lps"],
                    octant_min=truth["octant_min_margin_mm"],
                    aid=aid,
                    source=f"synthetic {mod} seed {int(seed) + i} ({truth['scenario']})",
                )
                entry["engine_min_margin_mm"] = round(float(res.min_margin_mm), 3)
                entry.update(key_interval(case, res, truth["min_margin_mm"]))
            entry["reference"] = _reference(case, questions)
            key_cases[cid] = entry
            _quiz_case(case, questions, threshold_mm, i + 1).save(tmp / cid)
            if progress is not None:
                progress(i + 1, n)
        quiz = Quiz(
            folder=out,
            quiz_id=quiz_id,
            title=title or f"Margin quiz ({n} cases)",
            threshold_mm=float(threshold_mm),
            questions=questions,
            case_ids=ids,
            show_reference=bool(show_reference),
            info={
                "created_at": _now(),
                "source": "case folders" if cases is not None else "synthetic",
            },
        )
        key = {
            "format": KEY_FORMAT,
            "format_version": FORMAT_VERSION,
            "quiz_id": quiz_id,
            "threshold_mm": float(threshold_mm),
            "questions": list(questions),
            "cases": key_cases,
        }
        key_text = json.dumps(key, indent=1)
        if include_key:
            write_text_atomic(tmp / KEY_IN_QUIZ, key_text)
        write_text_atomic(tmp / QUIZ_FILE, json.dumps(quiz.to_json(), indent=2))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(key_path, key_text)
    return quiz


# =====================================================================================
# the bundled quiz

#: the bundled self-study quiz: 8 small synthetic cases (renal MRI and liver CT alternating)
BUNDLED_QUIZ_NAME = "quiz"
BUNDLED_QUIZ_CASES = 8
BUNDLED_QUIZ_SEED = 100


def bundled_quiz_dir() -> Path:
    """Return the bundled quiz folder (in the wheel, else the repository's ``sample_data/quiz``).

    Returns
    -------
    pathlib.Path
        The folder (it may not exist yet: see :func:`write_bundled_quiz`).
    """
    from .samples import sample_dir

    return sample_dir() / BUNDLED_QUIZ_NAME


def write_bundled_quiz(out: str | os.PathLike | None = None, progress=None) -> Quiz:
    """(Re)generate the bundled self-study quiz into ``out`` (default :func:`bundled_quiz_dir`).

    Parameters
    ----------
    out : path, optional
        The quiz folder; an existing quiz there is replaced once the new one is complete.
    progress : callable, optional
        ``progress(i, n)`` after each case.

    Returns
    -------
    Quiz
        The quiz written, read back from ``out``.

    Raises
    ------
    AblationError
        If ``out`` exists and is not a quiz folder, or the quiz cannot be written.
    """
    out = Path(out) if out else bundled_quiz_dir()
    work = Path(
        tempfile.mkdtemp(prefix=".bundled-quiz.", dir=out.parent if out.parent.exists() else None)
    )
    try:
        made = make_quiz(
            work / "quiz",
            work / "key.json",
            n_synthetic=BUNDLED_QUIZ_CASES,
            seed=BUNDLED_QUIZ_SEED,
            modality="mixed",
            include_key=True,
            small=True,
            title="Margin quiz: 8 synthetic ablations (self-study)",
            progress=progress,
        )
        if out.exists():
            if not (out / QUIZ_FILE).exists():
                raise AblationError(f"{out}: exists and is not a quiz folder; not replacing it")
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(made.folder, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Quiz.load(out)


# =====================================================================================
# answers


#: a trailing unit the trainee may type after an MTM ("-1.5 mm", "-1,5mm")
_MM_UNIT = re.compile(r"\s*mm\s*$", re.IGNORECASE)


def parse_answer(row: dict[str, Any], quiz: Quiz, *, base: Path | None = None) -> dict[str, Any]:
    """Validate one trainee answer.

    Returns ``case``, ``complete`` (bool), ``mtm_mm`` (float), ``octant``, ``class``,
    ``tumor`` / ``ablation`` / ``transform`` (paths); ``None`` when empty.

    Parameters
    ----------
    row : dict
        Raw values (strings from the CSV, or values from the widget).
    quiz : Quiz
        The quiz answered.
    base : Path, optional
        Folder that relative file paths are relative to.

    Returns
    -------
    dict
        The validated answer (keys as above).

    Raises
    ------
    AblationError
        An unknown case, a ``complete`` that is not yes/no, an MTM that is not a number,
        an unknown octant or class, a missing file.
    """
    cid = str(row.get("case") or "").strip()
    if cid not in quiz.case_ids:
        raise AblationError(f"the answers name case '{cid}', which is not in the quiz")
    out: dict[str, Any] = {"case": cid}

    def text(name):
        v = row.get(name)
        if v is None:
            return None
        v = str(v).strip()
        return v or None

    c = row.get("complete")
    if isinstance(c, bool):
        out["complete"] = c
    else:
        c = text("complete")
        if c is None:
            out["complete"] = None
        elif c.lower() in ("yes", "y", "true", "1"):
            out["complete"] = True
        elif c.lower() in ("no", "n", "false", "0"):
            out["complete"] = False
        else:
            raise AblationError(f"case {cid}: complete must be yes or no, got '{c}'")
    m = text("mtm_mm")
    if m is None:
        out["mtm_mm"] = None
    else:
        try:
            v = float(_MM_UNIT.sub("", m).replace(",", "."))
        except ValueError:
            raise AblationError(f"case {cid}: the MTM '{m}' is not a number") from None
        if not math.isfinite(v):
            raise AblationError(f"case {cid}: the MTM '{m}' is not a finite number")
        out["mtm_mm"] = v
    o = text("octant")
    if o is not None and o.lower() not in OCTANTS:
        raise AblationError(f"case {cid}: unknown octant '{o}' (e.g. left-anterior-superior)")
    out["octant"] = o.lower() if o else None
    k = text("class")
    if k is not None and k.lower() not in CLASS_ANSWERS:
        raise AblationError(f"case {cid}: unknown class '{k}' (green, yellow or red)")
    out["class"] = k.lower() if k else None
    for name in ("tumor", "ablation", "transform"):
        v = text(name)
        if v is not None:
            p = Path(v)
            if not p.is_absolute() and base is not None:
                p = base / p
            if not p.exists():
                raise AblationError(f"case {cid}: {name} file '{v}' does not exist")
            v = str(p)
        out[name] = v
    return out


def read_answers(path: str | os.PathLike, quiz: Quiz) -> list[dict[str, Any]]:
    """Read and validate an answers CSV.

    Columns ``case,complete,mtm_mm,octant,class[,tumor,ablation,transform]``.

    Parameters
    ----------
    path : path
        The CSV.
    quiz : Quiz
        The quiz answered.

    Returns
    -------
    list of dict
        One :func:`parse_answer` per row, in file order.

    Raises
    ------
    AblationError
        Missing file, no ``case`` column, unknown columns, duplicate cases, or a bad value.
    """
    p = Path(path)
    if not p.is_file():
        raise AblationError(f"{p}: no such answers file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AblationError(f"{p}: cannot read the answers ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    if "case" not in cols:
        raise AblationError(f"{p.name}: the answers need a header with a 'case' column")
    unknown = [c for c in cols if c not in ANSWER_COLUMNS]
    if unknown:
        raise AblationError(
            f"{p.name}: unknown column '{unknown[0]}' (columns: {', '.join(ANSWER_COLUMNS)})"
        )
    answers, seen = [], set()
    for raw in reader:
        row = {(k or "").strip(): v for k, v in raw.items()}
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        a = parse_answer(row, quiz, base=p.parent)
        if a["case"] in seen:
            raise AblationError(f"{p.name}: case '{a['case']}' is answered twice")
        seen.add(a["case"])
        answers.append(a)
    if not answers:
        raise AblationError(f"{p.name}: no answers")
    return answers


# =====================================================================================
# scoring


def octant_result(answer: str, truth: str) -> str:
    """Grade an octant answer: right, adjacent or wrong.

    Parameters
    ----------
    answer : str
        The trainee's octant, e.g. ``"right-anterior-superior"``.
    truth : str
        The octant of the minimal margin, in the same form.

    Returns
    -------
    str
        ``"right"`` (same octant), ``"adjacent"`` (the octants differ along exactly one
        axis) or ``"wrong"``.
    """
    diff = sum(a != b for a, b in zip(answer.split("-"), truth.split("-")))
    return "right" if diff == 0 else ("adjacent" if diff == 1 else "wrong")


def _octant_axes(answer: str, truth: str) -> list[str]:
    return [
        _AXIS_NAMES[i]
        for i, (a, b) in enumerate(zip(answer.split("-"), truth.split("-")))
        if a != b
    ]


def score_case(
    answer: dict[str, Any],
    key_case: dict[str, Any],
    threshold_mm: float,
    *,
    quiz_case: Case | None = None,
) -> dict[str, Any]:
    """Score one answered case against its key entry.

    Parameters
    ----------
    answer : dict
        From :func:`parse_answer`.
    key_case : dict
        The key's entry for the case.
    threshold_mm : float
        The quiz threshold.
    quiz_case : Case, optional
        The quiz's copy of the case (needed to score segmentations / registrations, and an
        MTM against a key made before intervals: :func:`ensure_key_interval`).

    Returns
    -------
    dict
        ``mtm_abs_error_mm``, ``mtm_in_interval`` (the answer lies inside the key's 95 %
        interval: counts as right; ``None`` without an interval), ``octant_result``,
        ``complete_correct``, ``class_correct`` (``None`` when not answered),
        ``tumor_dice``, ``tumor_hd95_mm``, ``ablation_dice``, ``ablation_hd95_mm``,
        ``registration_tre_mm`` (when answered),
        ``true`` (the key's answers), ``explanation`` (one sentence on the largest error).

    Raises
    ------
    AblationError
        A trainee segmentation or transform that cannot be read or is on the wrong grid.
    """
    from .registration import target_error
    from .segmentation import compare_masks

    k = key_case
    s: dict[str, Any] = {
        "mtm_abs_error_mm": None,
        "mtm_signed_error_mm": None,
        "mtm_in_interval": None,
        "octant_result": None,
        "complete_correct": None,
        "class_correct": None,
    }
    if answer.get("mtm_mm") is not None:
        k = ensure_key_interval(k, quiz_case, threshold_mm) if quiz_case is not None else k
        err = float(answer["mtm_mm"]) - float(k["min_margin_mm"])
        s["mtm_signed_error_mm"] = round(err, 3)
        s["mtm_abs_error_mm"] = round(abs(err), 3)
        s["mtm_in_interval"] = mtm_in_interval(answer["mtm_mm"], k)
    if answer.get("octant"):
        s["octant_result"] = octant_result(answer["octant"], k["min_margin_octant"])
    if answer.get("complete") is not None:
        s["complete_correct"] = bool(answer["complete"]) == bool(k["complete_coverage"])
    if answer.get("class"):
        s["class_correct"] = answer["class"] == k["coverage_class"]
    ref = k.get("reference") or {}
    for role in ("tumor", "ablation"):
        if not answer.get(role):
            continue
        if role in ref:
            reference = unpack_mask(ref[role])
        elif quiz_case is not None and getattr(quiz_case, role) is not None:
            reference = getattr(quiz_case, role)
        else:
            raise AblationError(
                f"case {answer['case']}: no reference {role} to score the segmentation against"
            )
        trainee = read_image(answer[role], is_label=True).image
        if not geometry.same_grid(trainee, reference):
            raise AblationError(
                f"case {answer['case']}: the {role} segmentation is not on the case's grid"
            )
        spacing_zyx = reference.GetSpacing()[::-1]
        cmp = compare_masks(
            sitk.GetArrayViewFromImage(reference), sitk.GetArrayViewFromImage(trainee), spacing_zyx
        )
        s[f"{role}_dice"] = round(float(cmp["dice"]), 4)
        s[f"{role}_hd95_mm"] = (
            None if math.isnan(cmp["hd95_mm"]) else round(float(cmp["hd95_mm"]), 3)
        )
    if answer.get("transform"):
        if "transform" in ref:
            ref_tx = tfm.euler_from_params(ref["transform"])
        elif quiz_case is not None:
            ref_tx = quiz_case.transform
        else:
            raise AblationError(
                f"case {answer['case']}: no reference registration to score against"
            )
        trainee_tx = tfm.read_rigid_transform(answer["transform"])
        mean, _mx = target_error(trainee_tx, ref_tx, np.asarray(ref["tre_points_lps"], float))
        s["registration_tre_mm"] = round(mean, 3)
    s["true"] = {
        "complete": bool(k["complete_coverage"]),
        "mtm_mm": float(k["min_margin_mm"]),
        "mtm_interval_mm": k.get("min_margin_interval_mm"),
        "octant": k["min_margin_octant"],
        "class": k["coverage_class"],
    }
    s["explanation"] = explain(answer, s, k, threshold_mm)
    return s


def explain(
    answer: dict[str, Any], score: dict[str, Any], key_case: dict[str, Any], threshold_mm: float
) -> str:
    """Explain the largest error of a scored answer in one sentence.

    Parameters
    ----------
    answer : dict
        The answer (:func:`parse_answer`).
    score : dict
        Its score (:func:`score_case`).
    key_case : dict
        The key's entry for the case.
    threshold_mm : float
        The quiz threshold, in mm.

    Returns
    -------
    str
        The sentence on the error weighted largest (a wrong coverage call first), or,
        when all is right, a sentence on the case.
    """
    k = key_case
    aid = k.get("axial_2d") or {}
    where = _where_z(aid["offset_from_slice_mm"]) if "offset_from_slice_mm" in aid else ""
    mtm, octant = float(k["min_margin_mm"]), k["min_margin_octant"]
    errors: list[tuple[float, str]] = []
    if score.get("complete_correct") is False:
        if k["complete_coverage"]:
            text = (
                f"The tumor is completely covered: the smallest margin is {mtm:+.1f} mm "
                f"({octant}), "
                "so no part of it lies outside the ablation zone."
            )
        else:
            text = (
                f"The tumor is not completely covered: it reaches {abs(mtm):.1f} mm outside "
                "the ablation zone "
                f"in the {octant} octant" + (f", {where}" if where else "") + "."
            )
        errors.append((10.0, text))
    if score.get("class_correct") is False:
        errors.append(
            (
                5.0,
                (
                    f"The class is {k['coverage_class']}, not {answer['class']}: the minimal "
                    f"margin is {mtm:.1f} mm "
                    f"against a threshold of {threshold_mm:g} mm."
                ),
            )
        )
    if (
        score.get("mtm_abs_error_mm") is not None
        and score["mtm_abs_error_mm"] >= 1.0
        and score.get("mtm_in_interval") is not True  # inside the interval: right
    ):
        text = (
            f"You read {answer['mtm_mm']:.1f} mm; the minimal margin is {mtm:.1f} mm in the "
            f"{octant} octant"
        )
        if where:
            text += f", {where}"
            if "margin_2d_mm" in aid and abs(aid["offset_from_slice_mm"]) >= 0.5:
                text += f" (the margin on that slice is {aid['margin_2d_mm']:.1f} mm)"
        errors.append((float(score["mtm_abs_error_mm"]), text + "."))
    if score.get("octant_result") in ("adjacent", "wrong"):
        axes = _octant_axes(answer["octant"], octant)
        errors.append(
            (
                3.0 if score["octant_result"] == "wrong" else 1.5,
                f"The minimal margin lies {octant}, not {answer['octant']}: the side differs "
                "along the "
                f"{' and '.join(axes)} {'axes' if len(axes) > 1 else 'axis'}"
                + (f" ({where})" if where else "")
                + ".",
            )
        )
    for role in ("tumor", "ablation"):
        d = score.get(f"{role}_dice")
        if d is not None and d < 0.85:
            hd = score.get(f"{role}_hd95_mm")
            errors.append(
                (
                    10.0 * (1.0 - d),
                    f"Your {role} outline overlaps the reference with Dice {d:.2f}"
                    + (
                        f"; 95 % of its boundary lies within {hd:.1f} mm of the reference"
                        if hd is not None
                        else ""
                    )
                    + ".",
                )
            )
    tre = score.get("registration_tre_mm")
    if tre is not None and tre >= 1.0:
        errors.append(
            (
                tre,
                (
                    f"Your registration is {tre:.1f} mm off at the tumor: every margin "
                    "measured on it is shifted "
                    "by up to that much."
                ),
            )
        )
    if errors:
        return max(errors, key=lambda e: e[0])[1]
    if aid.get("sentence"):
        return "All answers right. " + aid["sentence"]
    return f"All answers right: the minimal margin is {mtm:.1f} mm in the {octant} octant."


def summarize(scores: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Summarize scored cases.

    Parameters
    ----------
    scores : iterable of dict
        Per-case scores (:func:`score_case`), each with its ``true`` answers and the
        trainee's ``complete`` call under ``answered_complete`` when given.

    Returns
    -------
    dict
        ``n_cases``, ``mean_abs_mtm_error_mm``, ``mtm_accuracy`` (MTM answers inside the
        key's 95 % interval / MTM answers scored against an interval), ``octant_accuracy``
        (right / answered),
        ``octant_adjacent_fraction``, ``coverage_call_accuracy`` (complete right / answered),
        ``class_accuracy``, ``incomplete_sensitivity`` (incomplete cases called incomplete,
        over the incomplete cases answered), and the means of Dice / HD95 / TRE when scored;
        ``None`` where nothing was answered.
    """
    scores = list(scores)

    def mean(vals):
        vals = [float(v) for v in vals if v is not None]
        return round(sum(vals) / len(vals), 4) if vals else None

    def frac(vals, good):
        vals = [v for v in vals if v is not None]
        return round(sum(1 for v in vals if v == good) / len(vals), 4) if vals else None

    incomplete = [
        s for s in scores if not s["true"]["complete"] and s.get("complete_correct") is not None
    ]
    out = {
        "n_cases": len(scores),
        "mean_abs_mtm_error_mm": mean(s.get("mtm_abs_error_mm") for s in scores),
        "mtm_accuracy": frac((s.get("mtm_in_interval") for s in scores), True),
        "octant_accuracy": frac((s.get("octant_result") for s in scores), "right"),
        "octant_adjacent_fraction": frac((s.get("octant_result") for s in scores), "adjacent"),
        "coverage_call_accuracy": frac((s.get("complete_correct") for s in scores), True),
        "class_accuracy": frac((s.get("class_correct") for s in scores), True),
        "incomplete_sensitivity": frac((s["complete_correct"] for s in incomplete), True),
    }
    for name in (
        "tumor_dice",
        "tumor_hd95_mm",
        "ablation_dice",
        "ablation_hd95_mm",
        "registration_tre_mm",
    ):
        m = mean(s.get(name) for s in scores)
        if m is not None:
            out[f"mean_{name}"] = m
    return out


def score_answers(
    quiz: Quiz, key: dict[str, Any], answers: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Score a set of answers.

    Returns ``{"cases": {ID: score}, "overall": summary}`` (DESIGN section 5).

    Parameters
    ----------
    quiz : Quiz
        The quiz.
    key : dict
        Its answer key (checked against the quiz).
    answers : sequence of dict
        Validated answers (:func:`read_answers` / :func:`parse_answer`).

    Returns
    -------
    dict
        ``cases`` (``{ID: score}``), ``overall`` (:func:`summarize`), ``threshold_mm`` and
        ``quiz_id``.

    Raises
    ------
    AblationError
        A key that does not match the quiz, or an answer that cannot be scored.
    """
    check_key_matches(quiz, key)
    t = float(key["threshold_mm"])
    cases = {}
    for a in answers:
        k = key["cases"][a["case"]]
        qc = _case_for_scoring(quiz, a["case"], a, k)
        cases[a["case"]] = score_case(a, k, t, quiz_case=qc)
    return {
        "cases": cases,
        "overall": summarize(cases.values()),
        "threshold_mm": t,
        "quiz_id": quiz.quiz_id,
    }


# =====================================================================================
# per-trainee score files


_SAFE = re.compile(r"[^\w.-]+")


def _trainee_name(trainee: str) -> str:
    """Return a trainee's name as recorded: stripped, in Unicode NFC (one spelling of "Zoë")."""
    return unicodedata.normalize("NFC", str(trainee).strip())


def trainee_file(quiz_folder: str | os.PathLike, trainee: str) -> Path:
    """Return the score file of a trainee: ``<quiz>/scores/<trainee>.jsonl``.

    Parameters
    ----------
    quiz_folder : str or os.PathLike
        The quiz folder.
    trainee : str
        The trainee's name. Letters (any script), digits and ``._-`` are kept; when
        anything else had to be replaced (a space, an apostrophe), eight hex digits of a
        hash of the whole name are appended, so that two names never share a file
        ("Zoë O'Neil" -> ``Zoë_O_Neil-<hash>.jsonl``, distinct from "Zoë O_Neil").

    Returns
    -------
    pathlib.Path
        The score file (it may not exist yet).

    Raises
    ------
    AblationError
        If nothing is left of the name.
    """
    full = _trainee_name(trainee)
    name = _SAFE.sub("_", full).strip("._")
    if not name:
        raise AblationError("give the trainee's name")
    if name != full:
        name += "-" + hashlib.sha1(full.encode("utf-8")).hexdigest()[:8]
    return Path(quiz_folder) / SCORES_DIR / f"{name}.jsonl"


def append_score(quiz_folder: str | os.PathLike, trainee: str, record: dict[str, Any]) -> Path:
    """Append one submitted answer and its score to the trainee's score file, atomically.

    The whole file is rewritten to a temporary file and renamed over the old one, so the
    file on disk always holds every complete record: a crash loses at most this one.

    Parameters
    ----------
    quiz_folder : path
        The quiz folder.
    trainee : str
        The trainee's name.
    record : dict
        JSON-able: at least ``case``, ``answer`` and ``score``.

    Returns
    -------
    Path
        The score file.
    """
    path = trainee_file(quiz_folder, trainee)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    rec = {"trainee": _trainee_name(trainee), "submitted_at": _now(), **record}
    write_text_atomic(path, old + json.dumps(rec, default=_json_default) + "\n")
    return path


def read_scores(
    quiz_folder: str | os.PathLike, trainee: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Read the score records per trainee.

    Records are grouped by the name they carry (``trainee``), so that a score file named
    by an older rule (before names kept their letters) still counts for its trainee.
    Lines that are not valid JSON (a file edited by hand) are skipped.

    Parameters
    ----------
    quiz_folder : str or os.PathLike
        The quiz folder (its ``scores/``).
    trainee : str, optional
        Read only this trainee's file; default every trainee's.

    Returns
    -------
    dict
        ``{name: [record, ...]}`` in submission order; trainees without records are left
        out.

    Raises
    ------
    AblationError
        If ``trainee`` is given but nothing is left of the name (:func:`trainee_file`).
    """
    wanted = None
    if trainee:
        trainee_file(quiz_folder, trainee)  # nothing left of the name: one line
        wanted = _trainee_name(trainee)
    out: dict[str, list[dict[str, Any]]] = {}
    for f in sorted((Path(quiz_folder) / SCORES_DIR).glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            name = _trainee_name(rec.get("trainee", f.stem))
            if wanted is None or name == wanted:
                out.setdefault(name, []).append(rec)
    for recs in out.values():  # two files of one trainee: in submission order
        recs.sort(key=lambda r: str(r.get("submitted_at", "")))
    return out


def latest_per_case(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the last record of each case (a re-submitted case counts once).

    Parameters
    ----------
    records : sequence of dict
        Score records (each with ``case``), in submission order.

    Returns
    -------
    list of dict
        The last record of each case, in the order of first submission.
    """
    last: dict[str, dict[str, Any]] = {}
    for r in records:
        last[r["case"]] = r
    order = list(dict.fromkeys(r["case"] for r in records))
    return [last[c] for c in order]


# =====================================================================================
# one trainee taking a quiz (the Teach widget is a view over this)


def is_quiz_locked(info: dict[str, Any] | None) -> bool:
    """Tell whether a quiz question is open on the case whose ``info`` this is.

    Parameters
    ----------
    info : dict or None
        A case's ``info``.

    Returns
    -------
    bool
        True when :data:`QUIZ_LOCK` is set (the Margins widget then computes nothing).
    """
    return bool((info or {}).get(QUIZ_LOCK))


def quiz_edit_lock(info: dict[str, Any] | None, item: str) -> str | None:
    """Tell why ``item`` of a quiz case cannot be edited now.

    While a question is open (:data:`QUIZ_LOCK`), the case is the one the key was made
    from: its labels and its registration are read-only, except those a work question
    asks the trainee to draw or register (:data:`QUIZ_WORK`).

    Parameters
    ----------
    info : dict or None
        A case's ``info``.
    item : str
        ``"tumor"``, ``"ablation"`` or ``"registration"``.

    Returns
    -------
    str or None
        One sentence for the user, None when ``item`` may be edited.
    """
    if not is_quiz_locked(info) or item in ((info or {}).get(QUIZ_WORK) or ()):
        return None
    what = "registration is locked" if item == "registration" else f"{item} labels are read-only"
    return f"This case is in a quiz: its {what} until the answer is submitted (Teach widget)."


class QuizRun:
    """One trainee taking one quiz: progress, answers, scores (headless).

    Parameters
    ----------
    quiz : Quiz
        The quiz.
    trainee : str
        The trainee's name (their score file is ``scores/<name>.jsonl``).
    key_path : path, optional
        The teacher's key; without it a self-study quiz uses its own key, and any other
        quiz records answers without scores (the teacher scores them with ``quiz score``).

    Raises
    ------
    AblationError
        No trainee name, or a key that does not match the quiz.
    """

    def __init__(self, quiz: Quiz, trainee: str, key_path: str | os.PathLike | None = None):
        self.quiz = quiz
        self.trainee = str(trainee).strip()
        self.score_file = trainee_file(quiz.folder, self.trainee)
        self.key: dict[str, Any] | None = None
        if key_path is not None or quiz.self_study:
            self.key = quiz.load_key(key_path)
        recs = read_scores(quiz.folder, self.trainee).get(_trainee_name(self.trainee), [])
        #: the last record of each case; answers recorded before the key was at hand are
        #: scored now (in memory; the score file keeps what was recorded)
        self.records: dict[str, dict[str, Any]] = {
            r["case"]: r if self.key is None else score_record(quiz, self.key, r)
            for r in latest_per_case(recs)
            if r.get("case") in quiz.case_ids
        }

    @property
    def can_score(self) -> bool:
        """Tell whether the key is at hand."""
        return self.key is not None

    def answered(self, case_id: str) -> bool:
        """Tell whether case ``case_id`` has an answer.

        Parameters
        ----------
        case_id : str
            A case ID of the quiz.

        Returns
        -------
        bool
            True when a record of the case is in the trainee's score file.
        """
        return case_id in self.records

    def first_open_index(self) -> int:
        """Find the first case not answered yet.

        Returns
        -------
        int
            Its index in ``quiz.case_ids`` (0 when all are answered).
        """
        for i, cid in enumerate(self.quiz.case_ids):
            if cid not in self.records:
                return i
        return 0

    def work_folder(self, case_id: str) -> Path:
        """Return where the trainee's copy of a case (segmentation, registration) is kept.

        Parameters
        ----------
        case_id : str
            A case ID of the quiz.

        Returns
        -------
        pathlib.Path
            ``<quiz>/work/<trainee file name>/<case_id>`` (it may not exist yet).
        """
        return self.quiz.folder / WORK_DIR / self.score_file.stem / case_id

    def key_case(self, case_id: str) -> dict[str, Any] | None:
        """Return the key's entry of case ``case_id``.

        Parameters
        ----------
        case_id : str
            A case ID of the quiz.

        Returns
        -------
        dict or None
            The entry (``min_margin_mm``, ``min_margin_octant``, ...); ``None`` without the
            key.
        """
        return None if self.key is None else self.key["cases"][case_id]

    def submit(self, case_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate, score (when the key is at hand) and record one answer.

        Parameters
        ----------
        case_id : str
            The case answered.
        raw : dict
            Answer values (``complete``, ``mtm_mm``, ``octant``, ``class``, and file paths
            ``tumor``, ``ablation``, ``transform`` for work questions).

        Returns
        -------
        dict
            The record appended to the score file (``case``, ``answer``, ``score`` or None).

        Raises
        ------
        AblationError
            A bad value (nothing is recorded then).
        """
        answer = parse_answer({**raw, "case": case_id}, self.quiz)
        score = None
        if self.key is not None:
            k = self.key["cases"][case_id]
            qc = _case_for_scoring(self.quiz, case_id, answer, k)
            score = score_case(answer, k, float(self.key["threshold_mm"]), quiz_case=qc)
        record = {"case": case_id, "quiz_id": self.quiz.quiz_id, "answer": answer, "score": score}
        append_score(self.quiz.folder, self.trainee, record)
        self.records[case_id] = record
        return record

    def summary(self) -> dict[str, Any] | None:
        """Summarize this trainee's scored answers so far.

        Returns
        -------
        dict or None
            The summary (:func:`summarize`); ``None`` before any scored answer.
        """
        scored = [r["score"] for r in self.records.values() if r.get("score")]
        return summarize(scored) if scored else None


# =====================================================================================
# teacher export: CSV + HTML with the learning curves


EXPORT_COLUMNS = (
    "trainee",
    "order",
    "case",
    "submitted_at",
    "complete",
    "mtm_mm",
    "octant",
    "class",
    "true_complete",
    "true_mtm_mm",
    "true_octant",
    "true_class",
    "mtm_abs_error_mm",
    "octant_result",
    "complete_correct",
    "class_correct",
    "tumor_dice",
    "tumor_hd95_mm",
    "ablation_dice",
    "ablation_hd95_mm",
    "registration_tre_mm",
    "explanation",
)


def score_record(quiz: Quiz, key: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Score a recorded answer that was recorded without the key.

    Parameters
    ----------
    quiz : Quiz
        The quiz answered.
    key : dict
        Its key (checked against the quiz by the caller).
    record : dict
        A score record (``case``, ``answer``, ``score``).

    Returns
    -------
    dict
        ``record`` itself when it holds a score; otherwise a copy with the score computed
        from ``key`` (the same figures as ``quiz export --key``).
    """
    if record.get("score"):
        return record
    a = record.get("answer") or {}
    k = key["cases"][record["case"]]
    qc = _case_for_scoring(quiz, record["case"], a, k)
    return {**record, "score": score_case(a, k, float(key["threshold_mm"]), quiz_case=qc)}


def scored_records(
    quiz: Quiz, key: dict[str, Any] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Return every trainee's last record per case, scored.

    Answers recorded without the key (a trainee quiz) are scored with ``key`` now; records
    that stay unscored are left out.

    Parameters
    ----------
    quiz : Quiz
        The quiz (its ``scores/``).
    key : dict, optional
        Its key (checked against the quiz).

    Returns
    -------
    dict
        ``{trainee: [record, ...]}`` in submission order.
    """
    if key is not None:
        check_key_matches(quiz, key)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, recs in read_scores(quiz.folder).items():
        done = []
        for r in latest_per_case(recs):
            if r.get("case") not in quiz.case_ids:
                continue
            if key is not None:
                r = score_record(quiz, key, r)
            if r.get("score"):
                done.append(r)
        if done:
            out[name] = done
    return out


def export_rows(quiz: Quiz, key: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Tabulate the scored answers: one row per trainee and case.

    Parameters
    ----------
    quiz : Quiz
        The quiz (its ``scores/``).
    key : dict, optional
        Its key, to score answers recorded without it (see :func:`scored_records`).

    Returns
    -------
    list of dict
        Rows with the keys of :data:`EXPORT_COLUMNS`, for the last submission of each
        case, per trainee in submission order.

    Raises
    ------
    AblationError
        If ``key`` does not match the quiz.
    """
    rows = []
    for name, recs in scored_records(quiz, key).items():
        for i, r in enumerate(recs, start=1):
            a, s = r.get("answer", {}), r["score"]
            t = s.get("true", {})
            rows.append(
                {
                    "trainee": name,
                    "order": i,
                    "case": r["case"],
                    "submitted_at": r.get("submitted_at", ""),
                    "complete": {True: "yes", False: "no"}.get(a.get("complete"), ""),
                    "mtm_mm": a.get("mtm_mm"),
                    "octant": a.get("octant"),
                    "class": a.get("class"),
                    "true_complete": {True: "yes", False: "no"}.get(t.get("complete"), ""),
                    "true_mtm_mm": t.get("mtm_mm"),
                    "true_octant": t.get("octant"),
                    "true_class": t.get("class"),
                    **{k: s.get(k) for k in EXPORT_COLUMNS[12:]},
                }
            )
    return rows


#: cases averaged in the learning curve of the MTM error
LEARNING_WINDOW = 3


def learning_curve_png(rows: Sequence[dict[str, Any]]) -> bytes:
    """Draw the learning curves as PNG.

    Per trainee, the absolute MTM error by case in the order taken (with the mean of the
    last :data:`LEARNING_WINDOW` cases), and the share of right coverage calls so far.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`export_rows` (``trainee``, ``order``, ``mtm_abs_error_mm``,
        ``complete_correct``).

    Returns
    -------
    bytes
        The PNG (two panels side by side, 800 x 340 pixels).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 3.4), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["trainee"], []).append(r)
    for name, rs in by.items():
        x = [r["order"] for r in rs]
        err = [r["mtm_abs_error_mm"] if r["mtm_abs_error_mm"] is not None else np.nan for r in rs]
        (line,) = ax1.plot(x, err, "o", alpha=0.5)
        e = np.array(err, float)
        ok = ~np.isnan(e)
        # mean of the last LEARNING_WINDOW cases: shows the error shrinking as it does
        s_ok, n_ok = np.cumsum(np.where(ok, e, 0.0)), np.cumsum(ok)
        w = LEARNING_WINDOW
        s_prev = np.concatenate([np.zeros(w), s_ok])[: len(s_ok)]
        n_prev = np.concatenate([np.zeros(w), n_ok])[: len(n_ok)]
        run = (s_ok - s_prev) / np.maximum(n_ok - n_prev, 1)
        ax1.plot(
            x, np.where(n_ok - n_prev > 0, run, np.nan), "-", color=line.get_color(), label=name
        )
        calls = [r["complete_correct"] for r in rs]
        c = np.array([np.nan if v is None else float(v) for v in calls])
        okc = ~np.isnan(c)
        runc = np.cumsum(np.where(okc, c, 0)) / np.maximum(np.cumsum(okc), 1)
        ax2.plot(
            x,
            np.where(np.cumsum(okc) > 0, 100 * runc, np.nan),
            "-o",
            color=line.get_color(),
            label=name,
        )
    ax1.set_xlabel("case (order taken)")
    ax1.set_ylabel("|MTM error| (mm)")
    ax1.set_title(f"|MTM error| (dots), mean of the last {LEARNING_WINDOW} cases")
    ax2.set_xlabel("case (order taken)")
    ax2.set_ylabel("coverage calls right so far (%)")
    ax2.set_ylim(-5, 105)
    ax2.set_title("Coverage call accuracy")
    if by:
        ax1.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def export_scores(
    quiz_folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    key_path: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write the teacher's export.

    ``scores.csv`` (one row per trainee and case), ``summary.json`` (per trainee) and
    ``scores.html`` (summaries and learning curves).

    Parameters
    ----------
    quiz_folder : path
        The quiz folder (its ``scores/``).
    out_dir : path
        Folder to write into (created).
    key_path : path, optional
        The key, to score answers recorded without it (default: the key inside a
        self-study quiz, if any).

    Returns
    -------
    dict
        ``{"csv": path, "json": path, "html": path}``.

    Raises
    ------
    AblationError
        No scored answers in the quiz folder, or a key that does not match it.
    """
    import html as _html

    quiz = Quiz.load(quiz_folder)
    key = quiz.load_key(key_path) if (key_path is not None or quiz.self_study) else None
    rows = export_rows(quiz, key)
    if not rows:
        hint = "" if key is not None else " (answers recorded without the key: give --key)"
        raise AblationError(f"{quiz_folder}: no scored answers yet{hint}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in EXPORT_COLUMNS})
    csv_path = write_text_atomic(out / "scores.csv", buf.getvalue())
    summaries = {}
    for name, recs in scored_records(quiz, key).items():
        summaries[name] = summarize(r["score"] for r in recs)
    json_path = write_text_atomic(out / "summary.json", json.dumps(summaries, indent=2))
    png = base64.b64encode(learning_curve_png(rows)).decode("ascii")
    heads = [
        "n_cases",
        "mean_abs_mtm_error_mm",
        "octant_accuracy",
        "coverage_call_accuracy",
        "incomplete_sensitivity",
    ]
    trs = "".join(
        "<tr><td>"
        + _html.escape(n)
        + "</td>"
        + "".join(f"<td>{'' if s.get(h) is None else s.get(h)}</td>" for h in heads)
        + "</tr>"
        for n, s in summaries.items()
    )
    case_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{_html.escape('' if r.get(k) is None else str(r.get(k)))}</td>"
            for k in (
                "trainee",
                "order",
                "case",
                "mtm_mm",
                "true_mtm_mm",
                "octant_result",
                "complete_correct",
            )
        )
        + f"<td>{_html.escape(str(r.get('explanation') or ''))}</td></tr>"
        for r in rows
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_html.escape(quiz.title)}: scores</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:.2em .5em;font-size:90%}}th{{background:#eee}}</style></head>
<body><h1>{_html.escape(quiz.title)}</h1>
<p>{len(quiz.case_ids)} cases; threshold {quiz.threshold_mm:g} mm; \
questions: {", ".join(quiz.questions)}.</p>
<h2>Summary per trainee</h2>
<table><tr><th>trainee</th>{"".join(f"<th>{h}</th>" for h in heads)}</tr>{trs}</table>
<h2>Learning curves</h2>
<img alt="learning curves" src="data:image/png;base64,{png}">
<h2>Every answer</h2>
<table><tr><th>trainee</th><th>#</th><th>case</th><th>MTM read (mm)</th><th>MTM true (mm)</th>
<th>octant</th><th>coverage call right</th><th>largest error</th></tr>{case_rows}</table>
</body></html>
"""
    html_path = write_text_atomic(out / "scores.html", page)
    return {"csv": csv_path, "json": json_path, "html": html_path}
