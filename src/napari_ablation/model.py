"""The case model: one headless, evented source of truth behind every widget.

Where it lives and why: ``napari_ablation/model.py``, beside ``core/`` (not in it),
because it needs an event library (:mod:`psygnal`) while ``core/`` keeps to numpy /
SimpleITK / scipy. It imports neither Qt nor napari, so it runs, and is tested, headless.

Shape (as napari keeps layers as models and Qt as views, and napari-animation keeps an
``Animation`` model under its widgets):

* :class:`CaseModel` holds the state of one case: the images (``pre``, ``post``), the
  ``tumor`` / ``ablation`` labels (numpy ``(z, y, x)`` uint8 arrays on the grid of their
  image), the registration with its history (undo / redo / reset, and the source of each
  step), the landmarks, the threshold and other settings, the QA verdict, the margin
  analysis with the input versions it was computed from, and the save state of every item.
* Every item has a **version** that changes on every change (a brush stroke, an undo or
  redo, a bulk edit, a load, a new transform, ...): ``model.version("tumor")``. Versions
  come from one counter, so a version is never reused, not even across loads.
* Every change emits an event (psygnal signals, listed on the class) and the generic
  ``changed(item)``. Views subscribe to events and forward user actions to the methods.
* The analysis is *current* when the versions it was computed from equal the versions
  of its inputs now (:attr:`CaseModel.analysis_current`); the save state of an item is
  *saved* when the version written to the case folder equals its version now
  (:meth:`CaseModel.is_saved`), so "all changes saved" is only said when the files on
  disk hold what the model holds.
* Long work is split into a snapshot taken on the caller's thread
  (:meth:`CaseModel.analysis_request`, :meth:`CaseModel.save_request`), a pure function
  that may run on any thread (:func:`run_analysis`, :meth:`CaseModel.write`) and a
  commit back on the caller's thread (:meth:`CaseModel.set_analysis`,
  :meth:`CaseModel.mark_saved`). Synchronous shortcuts: :meth:`CaseModel.compute_analysis`,
  :meth:`CaseModel.save`.

Label arrays may be shared with a view (the napari binding hands the layer's own array
to :meth:`CaseModel.set_labels` with ``copy=False``); an edit made in place on such an
array must be reported with :meth:`CaseModel.labels_edited`.
"""

from __future__ import annotations

import copy
import itertools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from psygnal import Signal

from .core import coverage, geometry
from .core import margin as core_margin
from .core import transform as tfm
from .core import uncertainty as core_uncertainty
from .core.case import (
    DEFAULT_SETTINGS,
    GRID_OF,
    LABEL_ROLES,
    QA_TRANSFORM_KEY,
    QA_VERDICTS,
    REGISTRATION_SOURCES,
    TRANSFORM_FILE,
    Case,
    qa_for_transform,
    qa_record,
)
from .core.errors import AblationError
from .core.quiz import quiz_edit_lock

#: image roles
IMAGE_ROLES = ("pre", "post")
#: every item that has a version and a save state
ITEMS = ("pre", "post", "tumor", "ablation", "transform", "landmarks", "settings", "qa")
#: where a transform step came from
TRANSFORM_SOURCES = ("automatic", "manual", "landmarks", "file", "reset", "case")
#: sources of a label change (free text is allowed; these are the ones the plugin uses)
LABEL_SOURCES = ("load", "brush", "undo", "redo", "bulk", "layer")
#: the items the margin analysis depends on
ANALYSIS_INPUTS = ("tumor", "ablation", "transform", "settings")


#: the items written in case.json with every save (transform, landmarks, settings, QA)
MANIFEST_ITEMS = ("transform", "landmarks", "settings", "qa")


@dataclass(frozen=True)
class TransformStep:
    """One step of the registration history."""

    #: pre -> post, ITK convention; None is the identity (no registration)
    transform: sitk.Euler3DTransform | None
    #: one of :data:`TRANSFORM_SOURCES`
    source: str
    #: free text (e.g. the file name, the metric value)
    note: str = ""
    #: the automatic registration's spread: covariance of the six rigid parameters
    #: ``(omega, t)`` (rad, mm) about ``error_center`` (see ``core.uncertainty``)
    error_covariance: np.ndarray | None = field(default=None, compare=False)
    error_center: np.ndarray | None = field(default=None, compare=False)
    #: a landmark fit's landmarks (``{"pre": rows, "post": rows}``): its error model and
    #: what "the landmarks changed since the fit" compares with
    landmarks: dict[str, list[dict[str, Any]]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AnalysisRequest:
    """What the margin analysis needs, copied from the model at one moment."""

    tumor: sitk.Image
    ablation: sitk.Image
    transform: sitk.Transform | None
    threshold_mm: float
    tumor_label: int | None
    ablation_label: int | None
    #: the versions of :data:`ANALYSIS_INPUTS` the copy was taken at
    inputs: dict[str, int]


@dataclass(frozen=True)
class Analysis:
    """A margin result with the input versions it was computed from."""

    result: core_margin.MarginResult
    inputs: dict[str, int]
    #: True when the registration was the identity (nothing registered)
    identity: bool = False


@dataclass(frozen=True)
class IntervalRequest:
    """What the MTM interval needs, copied from the model at one moment."""

    analysis: Analysis
    error: core_uncertainty.RegistrationError
    ablation_grid: sitk.Image | None
    transform: sitk.Transform | None
    boundary_mm: float | None
    samples: int
    seed: int
    #: :meth:`CaseModel.interval_key` when the copy was taken
    key: tuple


@dataclass(frozen=True)
class Interval:
    """The MTM interval of an analysis, with what it was computed from."""

    uncertainty: core_uncertainty.MarginUncertainty
    analysis: Analysis
    key: tuple


def run_interval(request: IntervalRequest) -> Interval:
    """Compute the MTM interval of a request (any thread).

    Parameters
    ----------
    request : IntervalRequest
        From :meth:`CaseModel.interval_request`.

    Returns
    -------
    Interval

    Raises
    ------
    AblationError
        Bad landmarks or settings.
    """
    a = request.analysis
    unc = core_uncertainty.case_uncertainty(
        a.result,
        request.error,
        ablation=request.ablation_grid,
        transform=request.transform,
        boundary_mm=request.boundary_mm,
        samples=request.samples,
        seed=request.seed,
    )
    return Interval(uncertainty=unc, analysis=a, key=request.key)


@dataclass
class SaveRequest:
    """A copy of the model to write into ``folder`` (see :meth:`CaseModel.write`)."""

    case: Case
    folder: Path
    #: item -> version of the copy
    versions: dict[str, int]
    #: image/label roles to rewrite (None: all)
    only: tuple[str, ...] | None = None


def run_analysis(request: AnalysisRequest) -> Analysis:
    """Run the margin analysis of a request (any thread).

    Parameters
    ----------
    request : AnalysisRequest
        From :meth:`CaseModel.analysis_request`.

    Returns
    -------
    Analysis
        The result with the input versions of the request.

    Raises
    ------
    AblationError
        When the masks are empty, the transform is not rigid, ...
    """
    res = core_margin.analyze_margin(
        request.tumor,
        request.ablation,
        request.transform,
        request.threshold_mm,
        tumor_label=request.tumor_label,
        ablation_label=request.ablation_label,
    )
    return Analysis(result=res, inputs=dict(request.inputs), identity=request.transform is None)


def _step_of_case(case: Case) -> TransformStep:
    """The first history step of a case read from disk: its transform, and how it was made
    when ``case.json`` says so (so a reopened automatic registration keeps its spread, and a
    landmark fit the landmarks it was fitted to). A landmark registration saved without
    them stays "case": the case's landmarks are its error source only while they still fit
    to it (:meth:`CaseModel.registration_error`)."""
    if case.transform is None:
        return TransformStep(None, "case")
    reg = case.registration or {}
    source = reg.get("source")
    cov, centre = reg.get("error_covariance"), reg.get("error_center")
    fitted = _landmark_rows(reg.get("landmarks")) if source == "landmarks" else None
    known = source in REGISTRATION_SOURCES and (source != "landmarks" or fitted is not None)
    return TransformStep(
        tfm.as_euler(case.transform),
        source if known else "case",
        "saved with the case" if known else "",
        None if cov is None else np.array(cov, dtype=float),
        None if centre is None else np.array(centre, dtype=float),
        fitted,
    )


def _landmark_rows(marks) -> dict[str, list[dict[str, Any]]] | None:
    """``{"pre": rows, "post": rows}`` of a saved landmark fit, None when it is not one."""
    from .core import landmarks as lm

    if not isinstance(marks, dict):
        return None
    try:
        return {k: lm.points_to_rows(marks.get(k) or []) for k in ("pre", "post")}
    except AblationError:
        return None


def _pairs_of(marks) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """The complete pairs of landmarks (labels, pre, post), None when they are unreadable."""
    from .core import landmarks as lm

    try:
        p = lm.pair_points((marks or {}).get("pre") or [], (marks or {}).get("post") or [])
    except AblationError:
        return None
    return p.labels, p.fixed, p.moving


def _registration_of_step(step: TransformStep) -> dict[str, Any]:
    """The ``registration`` record of a case (see :class:`Case`) for a history step."""
    if step.transform is None or step.source not in REGISTRATION_SOURCES:
        return {}
    reg: dict[str, Any] = {"source": step.source}
    if step.error_covariance is not None and step.error_center is not None:
        reg["error_covariance"] = np.asarray(step.error_covariance, float).tolist()
        reg["error_center"] = np.asarray(step.error_center, float).tolist()
    if step.landmarks is not None:
        reg["landmarks"] = copy.deepcopy(step.landmarks)
    return reg


def label_arrays_of(case: Case) -> dict[str, np.ndarray]:
    """The labels of ``case`` as uint8 (z, y, x) arrays (copies; any thread)."""
    out = {}
    for role in LABEL_ROLES:
        lab = getattr(case, role)
        if lab is not None:
            out[role] = np.array(sitk.GetArrayViewFromImage(lab), dtype=np.uint8)
    return out


class CaseModel:
    """The state of one case, with events (see the module docstring)."""

    #: the whole case was replaced (a load, a sample, a new case)
    case_loaded = Signal()
    #: an image changed: role
    image_changed = Signal(str)
    #: labels changed: role, source (see :data:`LABEL_SOURCES`)
    labels_changed = Signal(str, str)
    #: the registration changed: the new step's source
    transform_changed = Signal(str)
    landmarks_changed = Signal()
    #: the threshold changed: new value (mm)
    threshold_changed = Signal(float)
    #: a setting changed (the threshold too): the setting's name
    settings_changed = Signal(str)
    qa_changed = Signal()
    #: a new analysis was stored, or the stored one stopped (or started) being current
    analysis_changed = Signal()
    #: a new MTM interval was stored (or the stored one stopped being current)
    interval_changed = Signal()
    #: the save state of some item changed (written, edited, failed)
    save_state_changed = Signal()
    #: the case folder changed
    folder_changed = Signal()
    #: any of the above: the item ("case", one of :data:`ITEMS`, "analysis", "saved", "folder")
    changed = Signal(str)

    def __init__(self) -> None:
        self._clock = itertools.count(1)
        self._images: dict[str, sitk.Image | None] = dict.fromkeys(IMAGE_ROLES)
        self._labels: dict[str, np.ndarray | None] = dict.fromkeys(LABEL_ROLES)
        self._label_grid: dict[str, sitk.Image | None] = dict.fromkeys(LABEL_ROLES)
        self._history: list[TransformStep] = [TransformStep(None, "case")]
        self._index = 0
        self._landmarks: dict[str, list[dict[str, Any]]] = {"pre": [], "post": []}
        self._settings: dict[str, Any] = dict(DEFAULT_SETTINGS)
        self._qa: dict[str, Any] = {"verdict": "not reviewed", "comment": ""}
        self.info: dict[str, Any] = {}
        self._folder: Path | None = None
        self._case_id = next(self._clock)
        self._versions: dict[str, int] = {k: next(self._clock) for k in ITEMS}
        self._saved: dict[str, int] = dict.fromkeys(ITEMS, 0)
        self._analysis: Analysis | None = None
        self._was_current = (False, None)  # (analysis_current, analysis_error) last told
        self._failure: tuple[dict[str, int], str] | None = None  # (inputs, why) see analysis_error
        self._withdrawn: dict[str, str] = {}  # role -> why, see withdraw_labels
        self._interval: Interval | None = None
        self.save_error: str | None = None
        self._write_lock = threading.Lock()
        self._written: dict[str, int] = dict.fromkeys(ITEMS, 0)
        self._written_manifest: dict[str, tuple[int, Any]] = {}

    # ================================================================ versions, save state
    def version(self, item: str) -> int:
        """The version of ``item`` (one of :data:`ITEMS`); changes on every change."""
        return self._versions[item]

    def versions(self) -> dict[str, int]:
        return dict(self._versions)

    def saved_version(self, item: str) -> int:
        """The version of ``item`` last written to the case folder (0: never)."""
        return self._saved[item]

    def is_saved(self, item: str) -> bool:
        return self._saved[item] == self._versions[item]

    def unsaved_items(self) -> tuple[str, ...]:
        """Items whose current version is not in the case folder."""
        return tuple(k for k in ITEMS if not self.is_saved(k) and self._has(k))

    @property
    def all_saved(self) -> bool:
        """True when the case folder holds every item as the model holds it now."""
        return self._folder is not None and not self.unsaved_items()

    def _has(self, item: str) -> bool:
        if item in IMAGE_ROLES:
            return self._images[item] is not None
        if item in LABEL_ROLES:
            return self._labels[item] is not None
        return True

    def _bump(self, *items: str) -> None:
        for it in items:
            self._versions[it] = next(self._clock)
        self.save_state_changed.emit()
        self._check_analysis()

    def _check_analysis(self) -> None:
        cur = (self.analysis_current, self.analysis_error)
        if cur != self._was_current:
            self._was_current = cur
            self.analysis_changed.emit()
            self.changed.emit("analysis")

    # ================================================================ folder and whole case
    @property
    def folder(self) -> Path | None:
        """The case folder (None until the case is saved or opened from a folder)."""
        return self._folder

    @folder.setter
    def folder(self, value: str | os.PathLike | None) -> None:
        new = Path(value) if value is not None else None
        if new == self._folder:
            return
        self._folder = new
        self._saved = dict.fromkeys(ITEMS, 0)  # nothing is in the new folder yet
        self._written = dict.fromkeys(ITEMS, 0)
        self._written_manifest = {}
        self.folder_changed.emit()
        self.save_state_changed.emit()
        self.changed.emit("folder")

    def load_case(
        self,
        case: Case,
        folder: str | os.PathLike | None = None,
        *,
        saved: bool = False,
        label_arrays: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Replace the whole state by ``case``.

        Parameters
        ----------
        case : Case
            The case (its images are shared, its labels copied into arrays).
        folder : path-like, optional
            Its case folder.
        saved : bool
            True when ``folder`` holds exactly ``case`` (it was just read from there).
        label_arrays : dict, optional
            The labels of ``case`` already as uint8 (z, y, x) arrays (made off the GUI
            thread, see :func:`label_arrays_of`); they are held, not copied.
        """
        case.check_labels()
        self._images = {r: getattr(case, r) for r in IMAGE_ROLES}
        for role in LABEL_ROLES:
            lab = getattr(case, role)
            grid = self._images[GRID_OF[role]]
            if lab is None:
                self._labels[role], self._label_grid[role] = None, grid
            else:
                given = (label_arrays or {}).get(role)
                self._labels[role] = given if given is not None else label_arrays_of(case)[role]
                self._label_grid[role] = grid if grid is not None else lab
        self._history = [_step_of_case(case)]
        self._index = 0
        self._landmarks = copy.deepcopy(case.landmarks) or {"pre": [], "post": []}
        self._settings = {**DEFAULT_SETTINGS, **(case.settings or {})}
        self._qa = dict(case.qa or {"verdict": "not reviewed", "comment": ""})
        if QA_TRANSFORM_KEY not in self._qa and self._qa.get("verdict") != QA_VERDICTS[0]:
            # written before verdicts were tied to a registration: it was for the one saved
            self._qa[QA_TRANSFORM_KEY] = tfm.euler_params(case.transform)
        self.info = copy.deepcopy(case.info)
        self._folder = Path(folder) if folder is not None else None
        self._case_id = next(self._clock)
        self._versions = {k: next(self._clock) for k in ITEMS}
        self._saved = (
            dict(self._versions)
            if (saved and self._folder is not None)
            else dict.fromkeys(ITEMS, 0)
        )
        self._written = dict(self._saved)
        self._written_manifest = {}
        self._analysis = None
        self._failure = None
        self._withdrawn = {}
        self._was_current = (False, None)
        self._interval = None
        self.save_error = None
        self.case_loaded.emit()
        self.analysis_changed.emit()
        self.save_state_changed.emit()
        self.changed.emit("case")

    def to_case(self) -> Case:
        """A :class:`Case` holding copies of the current state (labels as images)."""
        case = Case(
            pre=self._images["pre"],
            post=self._images["post"],
            transform=self.transform,
            landmarks=copy.deepcopy(self._landmarks),
            settings=dict(self._settings),
            qa=copy.deepcopy(self._qa),
            info=copy.deepcopy(self.info),
            registration=_registration_of_step(self.transform_step),
        )
        for role in LABEL_ROLES:
            if self._labels[role] is not None:
                setattr(case, role, self.labels_image(role))
        return case

    # ================================================================ images
    @property
    def pre(self) -> sitk.Image | None:
        return self._images["pre"]

    @property
    def post(self) -> sitk.Image | None:
        return self._images["post"]

    def image(self, role: str) -> sitk.Image | None:
        return self._images[role]

    def set_image(self, role: str, img: sitk.Image | None) -> None:
        """Set the ``pre`` or ``post`` image (labels already on another grid are dropped)."""
        if role not in IMAGE_ROLES:
            raise AblationError(f"unknown image role '{role}' (use pre or post)")
        self._images[role] = img
        for lrole in LABEL_ROLES:
            if GRID_OF[lrole] != role:
                continue
            lab = self._labels[lrole]
            if img is not None and lab is not None and lab.shape != tuple(img.GetSize()[::-1]):
                self._labels[lrole] = None
                self._bump(lrole)
                self.labels_changed.emit(lrole, "load")
            self._label_grid[lrole] = img if img is not None else self._label_grid[lrole]
        self._bump(role)
        self.image_changed.emit(role)
        self.changed.emit(role)

    # ================================================================ labels
    def labels(self, role: str) -> np.ndarray | None:
        """The ``role`` labels, a (z, y, x) array (shared, not a copy), or None."""
        return self._labels[role]

    def label_grid(self, role: str) -> sitk.Image | None:
        """An image whose grid the ``role`` labels are on."""
        return self._label_grid[role]

    def labels_image(self, role: str) -> sitk.Image | None:
        """A copy of the ``role`` labels as a uint8 image on its grid (None when absent)."""
        arr, grid = self._labels[role], self._label_grid[role]
        if arr is None:
            return None
        arr = arr if arr.dtype == np.uint8 else np.clip(arr, 0, 255).astype(np.uint8)
        if grid is None:
            raise AblationError(f"the {role} labels have no image grid")
        return geometry.like(np.array(arr, copy=True), grid)

    def keep_replaced_labels(self, role: str) -> Path | None:
        """Write the ``role`` labels as they are to ``<role>_previous.nii.gz`` in the case
        folder (``<role>_previous_2.nii.gz`` ... when taken), before other labels replace
        them: what a reader drew is never lost when another layer becomes the case's
        ``role`` (UAT s9 N5). Returns the file, or None when there is no case folder or
        nothing drawn.

        Raises
        ------
        AblationError
            If the file cannot be written.
        """
        arr, folder = self._labels[role], self.folder
        if arr is None or folder is None or not np.any(arr):
            return None
        from .core.io import write_image_atomic

        path = folder / f"{role}_previous.nii.gz"
        for n in itertools.count(2):
            if not path.exists():
                break
            path = folder / f"{role}_previous_{n}.nii.gz"
        return write_image_atomic(self.labels_image(role), path)

    def set_labels(
        self,
        role: str,
        data: np.ndarray | sitk.Image | None,
        source: str = "load",
        *,
        grid: sitk.Image | None = None,
        copy: bool = True,
    ) -> None:
        """Replace the ``role`` labels.

        Parameters
        ----------
        role : str
            ``"tumor"`` or ``"ablation"``.
        data : ndarray or SimpleITK.Image or None
            The labels, (z, y, x). An array must fit the grid of its image (or ``grid``).
        source : str
            What changed them (see :data:`LABEL_SOURCES`).
        grid : SimpleITK.Image, optional
            The grid of an array when the model has no image for it yet.
        copy : bool
            False to share ``data`` (an array) with a view; later in-place edits must be
            reported with :meth:`labels_edited`.

        Raises
        ------
        AblationError
            When the labels do not fit their image's grid, or the role is unknown.
        """
        if role not in LABEL_ROLES:
            raise AblationError(f"unknown label role '{role}' (use tumor or ablation)")
        ref = self._images[GRID_OF[role]] or grid or self._label_grid[role]
        if isinstance(data, sitk.Image):
            if ref is not None and not geometry.same_grid(data, ref):
                raise AblationError(f"{role} labels are not on the {GRID_OF[role]} image grid")
            ref = ref or data
            arr = np.array(sitk.GetArrayViewFromImage(data), dtype=np.uint8)
        elif data is None:
            arr = None
        else:
            arr = np.asarray(data)
            if arr.ndim != 3:
                raise AblationError(f"{role} labels are {arr.ndim}D; a 3D volume is needed")
            if ref is not None and arr.shape != tuple(ref.GetSize()[::-1]):
                raise AblationError(
                    f"{role} labels of shape {arr.shape} do not fit the {GRID_OF[role]} grid"
                )
            if copy:
                arr = np.array(arr, copy=True)
        self._labels[role] = arr
        self._label_grid[role] = ref
        self._bump(role)
        self.labels_changed.emit(role, source)
        self.changed.emit(role)

    def share_labels(self, role: str, array: np.ndarray) -> bool:
        """Hold ``array`` (a view's own array) as the ``role`` labels without a new version,
        when it equals the labels held now. Returns False (and changes nothing) otherwise."""
        cur = self._labels.get(role)
        if cur is array and cur is not None:
            return True
        if (
            cur is None
            or array is None
            or cur.shape != array.shape
            or not np.array_equal(cur, array)
        ):
            return False
        self._labels[role] = array
        return True

    def withdraw_labels(self, role: str, why: str | None) -> None:
        """The ``role`` labels left the screen (``why``: one line that says so, e.g. "tumor
        layer deleted: ..."), or are shown again (``why=None``).

        Withdrawn, they are kept, and saved with the case (nothing annotated is lost), but
        no figure is made from them: :attr:`analysis_current` is False and
        :attr:`analysis_error` is ``why`` until they are shown again.
        """
        if role not in LABEL_ROLES:
            raise AblationError(f"unknown label role '{role}' (use tumor or ablation)")
        if why is None:
            if self._withdrawn.pop(role, None) is not None:
                self._failure = None  # (a refused request said why they were withdrawn)
        else:
            self._withdrawn[role] = why
        self._check_analysis()

    def labels_edited(self, role: str, source: str = "brush") -> None:
        """Note an in-place edit of the ``role`` labels (brush, undo, redo, bulk edit)."""
        if role not in LABEL_ROLES:
            raise AblationError(f"unknown label role '{role}' (use tumor or ablation)")
        self._bump(role)
        self.labels_changed.emit(role, source)
        self.changed.emit(role)

    # ================================================================ transform
    @property
    def transform(self) -> sitk.Euler3DTransform | None:
        """The current registration (pre -> post, ITK convention), None for identity."""
        t = self._history[self._index].transform
        return None if t is None else sitk.Euler3DTransform(t)

    @property
    def transform_step(self) -> TransformStep:
        return self._history[self._index]

    @property
    def transform_history(self) -> tuple[TransformStep, ...]:
        return tuple(self._history)

    @property
    def transform_index(self) -> int:
        """Index of the current step in :attr:`transform_history`."""
        return self._index

    def edit_lock(self, item: str) -> str | None:
        """Tell why ``item`` (``"tumor"``, ``"ablation"`` or ``"registration"``) may not be
        changed now: a quiz question is open on the case (Teach widget; the quiz's lock is
        in :attr:`info`, see ``core.quiz.quiz_edit_lock``). None when it may."""
        return quiz_edit_lock(self.info, item)

    def _refuse_if_registration_locked(self) -> None:
        reason = self.edit_lock("registration")
        if reason is not None:
            raise AblationError(reason)

    @property
    def can_undo_transform(self) -> bool:
        return self._index > 0

    @property
    def can_redo_transform(self) -> bool:
        return self._index < len(self._history) - 1

    def set_transform(
        self,
        tx: sitk.Transform | None,
        source: str,
        note: str = "",
        *,
        merge: bool = False,
        error_covariance: np.ndarray | None = None,
        error_center: np.ndarray | None = None,
        landmarks: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Make ``tx`` the registration: a new history step (the redo steps are dropped).

        Parameters
        ----------
        tx : SimpleITK.Transform or None
            Rigid, pre -> post (ITK convention); None for the identity.
        source : str
            One of :data:`TRANSFORM_SOURCES`.
        note : str
            Shown with the step.
        merge : bool
            Replace the current step instead of adding one when it has the same source
            (a manual adjustment being dragged is one step).
        error_covariance, error_center : array, optional
            The registration's spread (6 x 6 covariance of ``(omega, t)`` about
            ``error_center``), e.g. from restarts of the automatic registration.
        landmarks : dict, optional
            For a ``"landmarks"`` step: the landmarks ``tx`` was fitted to (default: the
            model's landmarks now). They stay with the step: its error model, and
            :attr:`landmarks_changed_since_fit` when the landmarks are edited afterwards.

        Raises
        ------
        AblationError
            When ``tx`` is not rigid or ``source`` is unknown, or the registration is locked
            (:meth:`edit_lock`: a quiz question is open).
        """
        self._refuse_if_registration_locked()
        if source not in TRANSFORM_SOURCES:
            raise AblationError(
                f"unknown transform source '{source}' (one of {', '.join(TRANSFORM_SOURCES)})"
            )
        step = TransformStep(
            None if tx is None else tfm.as_euler(tx),
            source,
            note,
            None if error_covariance is None else np.array(error_covariance, dtype=float),
            None if error_center is None else np.array(error_center, dtype=float),
            None
            if source != "landmarks"
            else copy.deepcopy(landmarks if landmarks is not None else self._landmarks),
        )
        del self._history[self._index + 1 :]
        if merge and self._index > 0 and self._history[self._index].source == source:
            self._history[self._index] = step
        else:
            self._history.append(step)
            self._index = len(self._history) - 1
        self._transform_changed(source)

    def reset_transform(self) -> None:
        """Back to the identity (a step of its own, so it can be undone)."""
        self.set_transform(None, "reset")

    def undo_transform(self) -> bool:
        """Go back one step; False when there is none (AblationError while locked, see
        :meth:`set_transform`)."""
        self._refuse_if_registration_locked()
        if not self.can_undo_transform:
            return False
        self._index -= 1
        self._transform_changed(self._history[self._index].source)
        return True

    def redo_transform(self) -> bool:
        """Go forward one step; False when there is none (AblationError while locked, see
        :meth:`set_transform`)."""
        self._refuse_if_registration_locked()
        if not self.can_redo_transform:
            return False
        self._index += 1
        self._transform_changed(self._history[self._index].source)
        return True

    def _transform_changed(self, source: str) -> None:
        self._bump("transform")
        self.transform_changed.emit(source)
        self.changed.emit("transform")
        if self._qa.get("verdict", QA_VERDICTS[0]) != QA_VERDICTS[0]:
            self.qa_changed.emit()  # the verdict may be for an earlier registration now

    def tumor_centre_lps(self) -> np.ndarray | None:
        """Centroid (LPS mm) of the tumor labels (cached per tumor version); None without tumor."""
        key = self._versions["tumor"]
        hit = getattr(self, "_centre_cache", None)
        if hit is not None and hit[0] == key:
            return hit[1]
        arr, grid = self._labels["tumor"], self._label_grid["tumor"]
        centre = None
        if arr is not None and grid is not None:
            idx = np.argwhere(arr != 0)
            if len(idx):
                centre = geometry.index_to_lps(grid, idx.mean(axis=0))
        self._centre_cache = (key, centre)
        return centre

    def tumor_shift_mm(self, tx: sitk.Transform | None = None) -> float | None:
        """How far the registration moves the tumor centre (mm): ``|T(c) - c|``, the one
        displacement figure the plugin reports. ``tx`` defaults to the current transform."""
        c = self.tumor_centre_lps()
        if c is None:
            return None
        return tfm.tumor_motion(self.transform if tx is None else tx, c)[0]

    # ================================================================ landmarks, settings, QA
    @property
    def landmarks(self) -> dict[str, list[dict[str, Any]]]:
        """``{"pre": [{"label", "x", "y", "z"}, ...], "post": [...]}`` (a copy), LPS mm."""
        return copy.deepcopy(self._landmarks)

    @property
    def fitted_landmarks(self) -> dict[str, list[dict[str, Any]]] | None:
        """The landmarks the current transform was fitted to (a copy); None when the current
        transform is not a landmark fit."""
        marks = self.transform_step.landmarks
        return None if marks is None else copy.deepcopy(marks)

    @property
    def landmarks_changed_since_fit(self) -> bool:
        """True when the current transform is a landmark fit and the complete landmark pairs
        are no longer those it was fitted to (a point dragged, removed or added): the fit,
        its residuals and its error model are those of the landmarks before the edit."""
        fitted = self.transform_step.landmarks
        if fitted is None:
            return False
        a, b = _pairs_of(fitted), _pairs_of(self._landmarks)
        if a is None or b is None or a[0] != b[0]:
            return True
        return not (np.allclose(a[1], b[1], atol=1e-6) and np.allclose(a[2], b[2], atol=1e-6))

    def set_landmarks(self, landmarks: dict[str, list[dict[str, Any]]]) -> None:
        new = {"pre": list(landmarks.get("pre", [])), "post": list(landmarks.get("post", []))}
        if new == self._landmarks:
            return
        self._landmarks = copy.deepcopy(new)
        self._bump("landmarks")
        self.landmarks_changed.emit()
        self.changed.emit("landmarks")

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    @property
    def threshold(self) -> float:
        """The margin threshold (mm)."""
        return float(self._settings.get("threshold_mm", DEFAULT_SETTINGS["threshold_mm"]))

    def set_threshold(self, value: float) -> None:
        self.update_settings(threshold_mm=float(value))

    def update_settings(self, **kw: Any) -> None:
        """Change settings (``threshold_mm``, ``tumor_label``, ``ablation_label``, ...).

        Raises
        ------
        AblationError
            When ``threshold_mm`` is outside :data:`~napari_ablation.core.coverage.THRESHOLD_RULE`.
        """
        if "threshold_mm" in kw:
            kw["threshold_mm"] = coverage.check_threshold(kw["threshold_mm"])
        changed = [k for k, v in kw.items() if self._settings.get(k, object()) != v]
        if not changed:
            return
        self._settings = {**self._settings, **kw}
        self._bump("settings")
        for k in changed:
            self.settings_changed.emit(k)
        if "threshold_mm" in changed:
            self.threshold_changed.emit(self.threshold)
        self.changed.emit("settings")

    @property
    def qa(self) -> dict[str, Any]:
        """The registration QA verdict for the registration in use: ``{"verdict": one of
        QA_VERDICTS, "comment", "reviewed_at"}``; a verdict recorded for another
        registration (before a nudge, an undo, a new fit...) reads "not reviewed", with the
        recorded one under ``earlier`` (see ``core.case.qa_for_transform``). Undoing back to
        the registration reviewed brings the verdict back."""
        return qa_for_transform(self._qa, self.transform)

    @property
    def qa_recorded(self) -> dict[str, Any]:
        """The verdict as recorded, with the registration it was recorded for (a copy)."""
        return copy.deepcopy(self._qa)

    @property
    def qa_reviewed(self) -> bool:
        """True when a verdict was recorded for the registration in use."""
        return self.qa["verdict"] != QA_VERDICTS[0]

    def set_qa(self, verdict: str, comment: str = "") -> None:
        """Record a verdict for the registration in use.

        Raises
        ------
        AblationError
            When the verdict is not one of :data:`QA_VERDICTS`.
        """
        self._qa = qa_record(verdict, comment, self.transform)
        self._bump("qa")
        self.qa_changed.emit()
        self.changed.emit("qa")

    # ================================================================ analysis
    @property
    def case_id(self) -> int:
        """Changes with every :meth:`load_case`; every version of the case is above it."""
        return self._case_id

    def owns(self, analysis: Analysis | AnalysisRequest) -> bool:
        """True when ``analysis`` was computed from this case (not from one opened before)."""
        return min(analysis.inputs.values()) > self._case_id

    def analysis_inputs(self) -> dict[str, int]:
        """The versions of the analysis inputs now."""
        return {k: self._versions[k] for k in ANALYSIS_INPUTS}

    @property
    def analysis(self) -> Analysis | None:
        """The last stored analysis (current or not)."""
        return self._analysis

    @property
    def result(self) -> core_margin.MarginResult | None:
        return None if self._analysis is None else self._analysis.result

    @property
    def analysis_current(self) -> bool:
        """True when the stored analysis was computed from the inputs as they are now (and
        none of its labels is withdrawn, :meth:`withdraw_labels`)."""
        return (
            self._analysis is not None
            and not self._withdrawn
            and self._analysis.inputs == self.analysis_inputs()
        )

    def analysis_request(self) -> AnalysisRequest:
        """Copy the analysis inputs now (cheap; then :func:`run_analysis` on any thread).

        Raises
        ------
        AblationError
            When the tumor or the ablation labels are missing or withdrawn.
        """
        for role, where in (("tumor", "pre"), ("ablation", "post")):
            if self._labels[role] is None:
                raise AblationError(f"no {role} labels: draw them on the {where} image first")
            if role in self._withdrawn:
                raise AblationError(self._withdrawn[role])
        return AnalysisRequest(
            tumor=self.labels_image("tumor"),
            ablation=self.labels_image("ablation"),
            transform=self.transform,
            threshold_mm=self.threshold,
            tumor_label=self._settings.get("tumor_label"),
            ablation_label=self._settings.get("ablation_label"),
            inputs=self.analysis_inputs(),
        )

    def set_analysis(self, analysis: Analysis) -> bool:
        """Store an analysis unless a newer one is stored or it was computed from another
        case (a job that finished after the next case was opened). Returns True when it
        is current."""
        if not self.owns(analysis):
            return False
        old = self._analysis
        if old is not None and max(old.inputs.values()) > max(analysis.inputs.values()):
            return self.analysis_current  # an older job finished late
        self._analysis = analysis
        self._failure = None
        self._was_current = (self.analysis_current, self.analysis_error)
        self.analysis_changed.emit()
        self.changed.emit("analysis")
        return self._was_current[0]

    @property
    def analysis_error(self) -> str | None:
        """Why the analysis cannot be computed from the inputs as they are now (e.g. "the
        tumor mask is empty"), else None: then there is no current analysis, and the last
        one stored is not to be shown (UAT s7 N5); any change of an input ends it. Labels
        withdrawn from the screen say why until they are shown again
        (:meth:`withdraw_labels`)."""
        if self._withdrawn:
            return next(iter(self._withdrawn.values()))
        f = self._failure
        return f[1] if f is not None and f[0] == self.analysis_inputs() else None

    def set_analysis_failed(self, message: str, inputs: dict[str, int] | None = None) -> None:
        """The analysis of ``inputs`` (default: the inputs now) failed with ``message``;
        ignored when the inputs have changed since (a late failure)."""
        inputs = self.analysis_inputs() if inputs is None else dict(inputs)
        if inputs != self.analysis_inputs():
            return
        self._failure = (inputs, message)
        self._check_analysis()

    def compute_analysis(self) -> Analysis:
        """Run the analysis now on the calling thread and store it."""
        a = run_analysis(self.analysis_request())
        self.set_analysis(a)
        return a

    # ================================================================ MTM interval
    @property
    def reader_sd_mm(self) -> float:
        """The reader's stated registration accuracy at the tumor (SD per axis, mm), used
        for a manual registration or none (setting ``registration_sd_mm``; a default
        assumption until the user edits it)."""
        v = self._settings.get("registration_sd_mm")
        return core_uncertainty.DEFAULT_READER_SD_MM if v is None else float(v)

    @property
    def reader_sd_assumed(self) -> bool:
        """True while the reader accuracy is the default (nobody stated one)."""
        return self._settings.get("registration_sd_mm") is None

    def set_reader_sd(self, value: float | None) -> None:
        """State the reader's registration accuracy (SD per axis, mm); None: the default."""
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise AblationError("the registration accuracy must be a non-negative number of mm")
        self.update_settings(registration_sd_mm=None if value is None else float(value))

    def _landmark_pairs(self, marks: dict | None = None) -> int:
        marks = self._landmarks if marks is None else marks
        pre = {str(r.get("label")) for r in marks.get("pre", [])}
        post = {str(r.get("label")) for r in marks.get("post", [])}
        return len(pre & post)

    def _is_landmark_fit(self) -> bool:
        """True when the current transform is the fit of the landmarks (a reopened case)."""
        from .core import landmarks as lm

        tx, c = self.transform, self.tumor_centre_lps()
        if tx is None or c is None:
            return False
        try:
            fit = lm.fit_landmarks(self._landmarks["pre"], self._landmarks["post"])
        except AblationError:
            return False
        gap = tfm.transform_points(fit.transform, c) - tfm.transform_points(tx, c)
        return float(np.linalg.norm(gap)) < 1e-3

    def registration_error(self) -> core_uncertainty.RegistrationError:
        """The error model of the current registration, following how it was made:
        landmarks -> their localisation error (from the fit residuals, at least the
        quantisation of a click to the pre and post grids); automatic -> its
        spread over restarts (when computed); manual, a file, or none -> the reader's
        stated accuracy (:attr:`reader_sd_mm`, an assumption until edited)."""
        step = self.transform_step
        marks = step.landmarks
        if marks is None and step.source == "case" and self._is_landmark_fit():
            marks = self._landmarks  # a landmark fit saved before its landmarks were kept
        if marks is not None and self._landmark_pairs(marks) >= 3:
            return core_uncertainty.RegistrationError(
                landmarks=(marks["pre"], marks["post"]),
                landmark_spacings=tuple(
                    None if im is None else im.GetSpacing() for im in (self.pre, self.post)
                ),
            )
        if step.error_covariance is not None:
            return core_uncertainty.RegistrationError(
                covariance=step.error_covariance, covariance_center=step.error_center
            )
        what = core_uncertainty.REGISTRATION_MADE_BY.get(
            step.source, "registration saved with the case"
        )
        if step.transform is None:
            what = core_uncertainty.NOT_REGISTERED
        return core_uncertainty.reader_accuracy(self._settings.get("registration_sd_mm"), what)

    def registration_error_at_tumor(self) -> tuple[float, float, str] | None:
        """Predicted registration error at the tumor centre: (RMS mm, 95th percentile mm,
        source line); None without tumor labels.

        Raises
        ------
        AblationError
            Bad landmarks.
        """
        c = self.tumor_centre_lps()
        if c is None:
            return None
        err = self.registration_error()
        rms, p95 = core_uncertainty.registration_error_at(err, c)
        src = err.samples(1, np.random.default_rng(0), c)
        return rms, p95, (src.sources[0] if src is not None and src.sources else err.kind)

    def interval_key(self) -> tuple:
        """What the MTM interval of the stored analysis depends on, now."""
        a = self._analysis
        # a landmark fit keeps its landmarks (in the transform's version); a transform saved
        # with the case may be the fit of the case's landmarks as they are now
        lm_version = self._versions["landmarks"] if self.transform_step.source == "case" else 0
        inputs = tuple(sorted(a.inputs.items())) if a is not None else ()
        return (inputs, lm_version)

    @property
    def interval(self) -> Interval | None:
        """The last stored MTM interval (current or not)."""
        return self._interval

    @property
    def interval_current(self) -> bool:
        """True when the stored interval belongs to the current analysis and error model."""
        iv = self._interval
        return (
            iv is not None
            and self.analysis_current
            and iv.analysis is self._analysis
            and iv.key == self.interval_key()
        )

    def interval_request(self) -> IntervalRequest:
        """Copy what the MTM interval of the stored analysis needs (then :func:`run_interval`
        on any thread).

        Raises
        ------
        AblationError
            When there is no analysis.
        """
        if self._analysis is None:
            raise AblationError("compute the margins first")
        return IntervalRequest(
            analysis=self._analysis,
            error=self.registration_error(),
            ablation_grid=self._label_grid["ablation"],
            transform=self.transform,
            boundary_mm=self._settings.get("boundary_mm"),
            samples=int(
                self._settings.get("uncertainty_samples") or core_uncertainty.DEFAULT_SAMPLES
            ),
            seed=int(self._settings.get("uncertainty_seed") or 0),
            key=self.interval_key(),
        )

    def set_interval(self, interval: Interval) -> bool:
        """Store an interval unless it belongs to an older analysis than the stored
        interval's. Returns True when it is current."""
        old = self._interval
        if (
            old is not None
            and old.analysis is not interval.analysis
            and max(old.analysis.inputs.values()) > max(interval.analysis.inputs.values())
        ):
            return self.interval_current
        self._interval = interval
        self.interval_changed.emit()
        self.changed.emit("interval")
        return self.interval_current

    def compute_interval(self) -> Interval:
        """Compute the MTM interval of the stored analysis now (calling thread) and store it."""
        iv = run_interval(self.interval_request())
        self.set_interval(iv)
        return iv

    # ================================================================ saving
    def save_request(
        self, items: tuple[str, ...] | None = None, folder: str | os.PathLike | None = None
    ) -> SaveRequest:
        """Copy what must be written (the unsaved items, or ``items``) now.

        The manifest (transform, landmarks, settings, QA) is always rewritten; images and
        labels only when unsaved (or listed in ``items``; ``()`` writes the manifest only).
        ``folder`` becomes the case folder.

        Raises
        ------
        AblationError
            When the model has no case folder and none is given.
        """
        if folder is not None:
            self.folder = folder
        if self._folder is None:
            raise AblationError("the case has no folder yet: save it into a folder first")
        items = tuple(items) if items is not None else self.unsaved_items()
        roles = tuple(r for r in (*IMAGE_ROLES, *LABEL_ROLES) if r in items)
        return SaveRequest(
            case=self.to_case(), folder=self._folder, versions=dict(self._versions), only=roles
        )

    def write(self, request: SaveRequest) -> dict[str, int]:
        """Write a save request into its folder (any thread; one writer at a time).

        Roles a newer request already wrote are skipped, so a slow old write never
        replaces a newer one. Returns the item versions now on disk (for :meth:`mark_saved`).
        """
        with self._write_lock:
            v = request.versions
            only = (
                tuple(r for r in request.only if v[r] > self._written.get(r, 0))
                if request.only is not None
                else None
            )
            manifest_fresh = any(
                v[k] > self._written.get(k, 0) for k in ("transform", "landmarks", "settings", "qa")
            )
            if only is not None and not only and not manifest_fresh:
                return {k: self._written[k] for k in ITEMS}
            # the manifest is rewritten with every request: an item a newer request already
            # wrote (a transform set while older labels were queued) keeps that newer value
            newest = self._written_manifest
            for k in MANIFEST_ITEMS:
                if k in newest and v[k] < self._written.get(k, 0):
                    setattr(request.case, k, newest[k][1])
                    v = {**v, k: newest[k][0]}
            request.case.save(request.folder, only=only)
            stale_tfm = Path(request.folder) / TRANSFORM_FILE
            if request.case.transform is None and stale_tfm.exists():
                # identity now: an older transform file must not come back on reload
                stale_tfm.unlink()
            written = set(only) if only is not None else set(IMAGE_ROLES + LABEL_ROLES)
            written |= {"transform", "landmarks", "settings", "qa"}
            for k in written:
                self._written[k] = max(self._written.get(k, 0), v[k])
            self._written_manifest = {
                k: (v[k], copy.deepcopy(getattr(request.case, k))) for k in MANIFEST_ITEMS
            }
            return {k: self._written[k] for k in ITEMS}

    def mark_saved(self, written: dict[str, int], folder: Path | None = None) -> None:
        """Record what :meth:`write` put on disk (ignored if the case folder changed since)."""
        if folder is not None and folder != self._folder:
            return
        for k, v in written.items():
            self._saved[k] = max(self._saved.get(k, 0), v)
        self.save_error = None
        self.save_state_changed.emit()
        self.changed.emit("saved")

    def save_failed(self, message: str) -> None:
        self.save_error = message
        self.save_state_changed.emit()
        self.changed.emit("saved")

    def save(
        self, folder: str | os.PathLike | None = None, items: tuple[str, ...] | None = None
    ) -> Path:
        """Write the unsaved items (all when ``folder`` is new) now. Returns the folder."""
        req = self.save_request(items, folder)
        self.mark_saved(self.write(req), req.folder)
        return req.folder


__all__ = [
    "ANALYSIS_INPUTS",
    "IMAGE_ROLES",
    "ITEMS",
    "LABEL_SOURCES",
    "TRANSFORM_SOURCES",
    "Analysis",
    "AnalysisRequest",
    "CaseModel",
    "Interval",
    "IntervalRequest",
    "SaveRequest",
    "TransformStep",
    "label_arrays_of",
    "run_analysis",
    "run_interval",
]
