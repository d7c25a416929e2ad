"""Cohort studies: the margin analysis of many cases as tasks on ``dask.distributed``.

A cohort is a list of cases, found either as case folders (``case.json``, see
:mod:`.case`) under one or more folders, or listed in a manifest CSV
``case,tumor,ablation[,transform][,pre,post]`` whose paths are relative to the
manifest's folder. Each case is analysed by exactly the code of ``napari-ablation
margin`` (:func:`analyze_case`: :func:`.io.read_labels`,
:func:`.transform.read_rigid_transform`, :func:`.margin.analyze_margin`,
:meth:`.margin.MarginResult.to_json_dict`), so a cohort row equals the CLI's JSON.

Results folder::

    RESULTS/cases/<case>.json   one per case, written atomically as the case finishes,
                                with the hash of its inputs and settings (resume key)
    RESULTS/margins.csv         one row per case (``case``, ``error``, the margin figures)
    RESULTS/margins.parquet     the same table, when pyarrow is installed

A rerun reuses every ``cases/<case>.json`` whose hash still matches and computes the
rest. A broken case becomes a row with its one-line ``error``; a worker process that
dies during a task is replaced and the task rerun by Dask (up to
``distributed.scheduler.allowed-failures`` times).

No Qt, no napari, no printing: progress goes to a callback.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import coverage
from .errors import AblationError, one_line

CASES_DIR = "cases"
MARGINS_CSV = "margins.csv"
MARGINS_PARQUET = "margins.parquet"
MANIFEST_COLUMNS = ("case", "tumor", "ablation")
#: columns every margins.csv row has, before the margin figures
META_COLUMNS = (
    "case",
    "error",
    "modality",
    "spacing_x_mm",
    "spacing_y_mm",
    "spacing_z_mm",
    "qa_verdict",
    "folder",
)
#: per-worker memory limit of the local cluster: a CT-sized case (512 x 512 x 300) peaks at
#: about 0.55 GB (benchmarks/README.md, "Cohort"); a worker above 95 % of it is restarted
#: by its nanny and its task rerun
DEFAULT_MEMORY_LIMIT = "2GiB"
RESULT_FORMAT = "napari-ablation cohort case result"
#: bump when the meaning of a stored case result changes (forces recomputation)
RESULT_VERSION = 1


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CaseInputs:
    """The files of one case and what is known about it before its analysis.

    Parameters
    ----------
    case : str
        The case id (unique in the cohort).
    tumor : str
        The tumor label file (on the pre grid).
    ablation : str
        The ablation-zone label file (on the post grid).
    transform : str, optional
        The registration file, pre -> post (ITK convention); ``None``: the labels
        share one space.
    folder : str, optional
        The case folder, when the case was found as one.
    pre : str, optional
        The pre image file, when known.
    post : str, optional
        The post image file, when known.
    tumor_label : int, optional
        The tumor label value (default: any non-zero voxel).
    ablation_label : int, optional
        The ablation label value (default: any non-zero voxel).
    modality : str, optional
        ``"CT"``, ``"MR"``, ... when known.
    qa_verdict : str, optional
        The registration QA verdict of the case, when known.
    problem : str, optional
        A problem found while listing the case (reported as its error).
    """

    case: str
    tumor: str
    ablation: str
    transform: str | None = None
    folder: str | None = None  # the case folder, when the case was found as one
    pre: str | None = None
    post: str | None = None
    tumor_label: int | None = None
    ablation_label: int | None = None
    modality: str = ""
    qa_verdict: str = ""
    problem: str = ""  # a problem found while listing the case (reported as its error)

    def files(self) -> list[str]:
        """List the files whose contents decide the result (hashed for resuming).

        Returns
        -------
        list of str
            The tumor and ablation files, the transform, the pre and post images (their
            grids decide whether the labels fit them) and the ``case.json`` when present.
        """
        out = [self.tumor, self.ablation]
        out += [f for f in (self.transform, self.pre, self.post) if f]
        if self.folder:
            out.append(str(Path(self.folder) / "case.json"))
        return out


def find_cases(folders: Sequence[str | os.PathLike]) -> list[CaseInputs]:
    """Find all case folders under some folders (each folder may itself be a case).

    Parameters
    ----------
    folders : sequence of str or os.PathLike
        Folders to search recursively; a case folder is not searched further.

    Returns
    -------
    list of CaseInputs
        Sorted by case id. The id is the folder's path relative to the folder given
        (its name when a given folder is itself a case).

    Raises
    ------
    AblationError
        When a folder does not exist, holds no case, or two cases get the same id.
    """
    from .case import is_case_folder

    found: dict[str, CaseInputs] = {}
    for root in folders:
        root = Path(root)
        if not root.is_dir():
            raise AblationError(f"{root}: no such folder")
        hits: list[tuple[str, Path]] = []
        if is_case_folder(root):
            hits.append((root.resolve().name, root))
        else:
            for dirpath, dirnames, _files in os.walk(root):
                dirnames.sort()
                here = Path(dirpath)
                if here != root and is_case_folder(here):
                    hits.append((here.relative_to(root).as_posix(), here))
                    dirnames[:] = []
        if not hits:
            raise AblationError(f"{root}: no case folder (a folder with case.json) found")
        for cid, path in hits:
            if cid in found:
                raise AblationError(
                    f"two cases have the id '{cid}' ({found[cid].folder} and {path}); "
                    "give them different folder names"
                )
            found[cid] = case_folder_inputs(path, cid)
    return [found[k] for k in sorted(found)]


def _qa_for_saved_registration(qa: dict, transform_params) -> dict:
    """Return a case's QA verdict for the registration saved with it.

    One recorded for another registration reads "not reviewed".
    """
    from . import transform as tfm
    from .case import qa_for_transform

    try:
        tx = tfm.euler_from_params(transform_params) if transform_params else None
    except (KeyError, TypeError, ValueError, RuntimeError):
        return {**qa, "verdict": ""}  # an unreadable registration: no verdict to show
    return qa_for_transform(qa, tx)


def case_folder_inputs(folder: str | os.PathLike, case_id: str | None = None) -> CaseInputs:
    """Read the inputs of one case folder from its ``case.json`` (images are not read).

    A folder whose ``case.json`` is unreadable or lists no tumor/ablation labels gives
    inputs with ``problem`` set, so that the case becomes an error row.

    Parameters
    ----------
    folder : str or os.PathLike
        The case folder.
    case_id : str, optional
        The case id (default: the folder's name).

    Returns
    -------
    CaseInputs
        The case's files, label values, modality and QA verdict.
    """
    from .case import CASE_FILE, IMAGE_FILES, TRANSFORM_FILE

    folder = Path(folder)
    cid = case_id or folder.name
    base = {
        "case": cid,
        "tumor": str(folder / IMAGE_FILES["tumor"]),
        "ablation": str(folder / IMAGE_FILES["ablation"]),
        "folder": str(folder),
    }
    try:
        doc = json.loads((folder / CASE_FILE).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != "napari-ablation case":
            raise ValueError("not a napari-ablation case file")
    except (OSError, ValueError) as exc:
        return CaseInputs(**base, problem=f"{CASE_FILE}: unreadable ({one_line(exc)})")
    files = doc.get("files") or {}
    settings = doc.get("settings") or {}
    info = doc.get("info") or {}
    qa = doc.get("qa") or {}
    missing = [r for r in ("tumor", "ablation") if r not in files]
    problem = f"the case has no {' and no '.join(missing)} labels" if missing else ""
    tx = folder / TRANSFORM_FILE
    if not problem and doc.get("transform") and not tx.exists():
        problem = f"the case has a registration but {TRANSFORM_FILE} is missing"
    pre = folder / files["pre"] if "pre" in files else None
    post = folder / files["post"] if "post" in files else None
    return CaseInputs(
        **{**base, **{r: str(folder / files[r]) for r in ("tumor", "ablation") if r in files}},
        transform=str(tx) if tx.exists() else None,
        pre=str(pre) if pre else None,
        post=str(post) if post else None,
        tumor_label=settings.get("tumor_label"),
        ablation_label=settings.get("ablation_label"),
        modality=str(info.get("modality") or ""),
        qa_verdict=str(_qa_for_saved_registration(qa, doc.get("transform")).get("verdict") or ""),
        problem=problem,
    )


def read_manifest(path: str | os.PathLike) -> list[CaseInputs]:
    """Read the cases listed in a manifest CSV ``case,tumor,ablation[,transform][,pre,post]``.

    Paths are relative to the manifest's folder (absolute paths are kept). Optional
    extra columns ``modality`` and ``qa_verdict`` are carried into the results.

    Parameters
    ----------
    path : str or os.PathLike
        The manifest CSV file.

    Returns
    -------
    list of CaseInputs
        One per row, in file order (a row without tumor or ablation file has its
        ``problem`` set).

    Raises
    ------
    AblationError
        When the file is missing or not CSV, lacks a required column, has an empty case
        id or the same id twice.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise AblationError(f"{path}: cannot read the manifest ({one_line(exc)})") from None
    reader = csv.DictReader(text.splitlines())
    header = [(h or "").strip() for h in (reader.fieldnames or [])]
    rows = list(reader)
    missing = [c for c in MANIFEST_COLUMNS if c not in header]
    if missing:
        raise AblationError(
            f"{path.name}: the manifest lacks the column(s) {', '.join(missing)} "
            "(header: case,tumor,ablation[,transform][,pre,post])"
        )
    base = path.parent
    out: list[CaseInputs] = []
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):
        row = {(k or "").strip(): v.strip() for k, v in row.items() if isinstance(v, str)}
        cid = row.get("case", "")
        if not cid:
            raise AblationError(f"{path.name} line {n}: empty case id")
        if cid in seen:
            raise AblationError(f"{path.name} line {n}: case '{cid}' is listed twice")
        seen.add(cid)

        def p(key, row=row):
            v = row.get(key, "")
            return str(base / v) if v else None

        problem = (
            ""
            if row.get("tumor") and row.get("ablation")
            else "the manifest gives no tumor or no ablation file"
        )
        out.append(
            CaseInputs(
                case=cid,
                tumor=p("tumor") or "",
                ablation=p("ablation") or "",
                transform=p("transform"),
                pre=p("pre"),
                post=p("post"),
                modality=row.get("modality", ""),
                qa_verdict=row.get("qa_verdict", ""),
                problem=problem,
            )
        )
    if not out:
        raise AblationError(f"{path.name}: the manifest lists no case")
    return out


_PATH_FIELDS = ("tumor", "ablation", "transform", "folder", "pre", "post")


def inputs_hash(inputs: CaseInputs, threshold_mm: float) -> str | None:
    """Hash the input files' contents and the settings of a case (the resume key).

    Paths are left out, so a moved cohort is not recomputed; the package version and
    :data:`RESULT_VERSION` are in, so a new version recomputes.

    Parameters
    ----------
    inputs : CaseInputs
        The case.
    threshold_mm : float
        The margin threshold, mm.

    Returns
    -------
    str or None
        The SHA-256 hex digest, ``None`` if a file is unreadable.
    """
    from .. import __version__

    h = hashlib.sha256()
    settings = {
        "threshold_mm": float(threshold_mm),
        "version": __version__,
        "result_version": RESULT_VERSION,
        # paths are left out (a moved cohort is not recomputed); the files' contents count
        "inputs": {k: v for k, v in asdict(inputs).items() if k not in _PATH_FIELDS},
        "has_transform": bool(inputs.transform),
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    for f in inputs.files():
        try:
            with open(f, "rb") as fh:
                h.update(f"\0{Path(f).name}\0".encode())
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            return None
    return h.hexdigest()


# ----------------------------------------------------------------------------- one case


def margin_result(inputs: CaseInputs, threshold_mm: float = 5.0, threads: int | None = None):
    """Analyse the margins of one case, reading it as ``napari-ablation margin`` does.

    Parameters
    ----------
    inputs : CaseInputs
        The case's files.
    threshold_mm : float, optional
        Margin threshold (mm).
    threads : int, optional
        Threads of the analysis (:func:`.margin.analyze_margin`; default its own).

    Returns
    -------
    result : napari_ablation.core.margin.MarginResult
        The margin analysis.
    spacing : tuple of float
        The tumor (pre) grid spacing ``(x, y, z)`` in mm.

    Raises
    ------
    AblationError
        A problem of the case (unreadable or empty mask, labels not on the grid of their
        image when it is given, bad transform, ...).
    """
    from .case import Case
    from .io import read_image, read_labels
    from .margin import analyze_margin
    from .transform import read_rigid_transform

    if inputs.problem:
        raise AblationError(inputs.problem)
    tumor = read_labels(inputs.tumor, label=inputs.tumor_label, name="tumor")
    ablation = read_labels(inputs.ablation, label=inputs.ablation_label, name="ablation")
    # the rule of a case opened in the viewer: labels live on the grid of their image
    Case(
        pre=read_image(inputs.pre).image if inputs.pre else None,
        post=read_image(inputs.post).image if inputs.post else None,
        tumor=tumor,
        ablation=ablation,
    ).check_labels()
    tx = read_rigid_transform(inputs.transform) if inputs.transform else None
    res = analyze_margin(tumor, ablation, tx, threshold_mm, threads=threads)
    return res, tuple(tumor.GetSpacing())


def analyze_case(
    inputs: CaseInputs, threshold_mm: float = 5.0, threads: int | None = None
) -> dict[str, Any]:
    """Analyse one case as ``napari-ablation margin --json`` does, never raising.

    A problem of the case does not raise: the returned record then has ``error`` set.

    Parameters
    ----------
    inputs : CaseInputs
        The case's files (:func:`find_cases`, :func:`read_manifest`).
    threshold_mm : float, optional
        Margin threshold (mm).
    threads : int, optional
        Threads of the analysis (default :data:`.margin.THREADS`; the cohort's workers,
        which analyse cases side by side, use 1).

    Returns
    -------
    dict
        ``{"case", "error", "meta": {modality, spacing_*_mm, qa_verdict, folder}, "margin":
        the margin JSON dict or None, "inputs": the CaseInputs as a dict}``.
    """
    meta = {
        "modality": inputs.modality,
        "spacing_x_mm": None,
        "spacing_y_mm": None,
        "spacing_z_mm": None,
        "qa_verdict": inputs.qa_verdict,
        "folder": inputs.folder or "",
    }
    rec: dict[str, Any] = {
        "case": inputs.case,
        "error": "",
        "meta": meta,
        "margin": None,
        "inputs": asdict(inputs),
    }
    try:
        res, spacing = margin_result(inputs, threshold_mm, threads)
        meta.update(
            zip(
                ("spacing_x_mm", "spacing_y_mm", "spacing_z_mm"),
                (round(float(s), 6) for s in spacing),
            )
        )
        rec["margin"] = res.to_json_dict()
        from .margin import registration_fields
        from .transform import file_registration_summary, read_rigid_transform

        # a transform file was read, or nothing was registered: as the margin CLI says it
        rec["margin"].update(registration_fields(inputs.transform or None))
        tx = read_rigid_transform(inputs.transform) if inputs.transform else None
        rec["margin"]["registration"] = file_registration_summary(
            tx, inputs.transform, res.tumor_centroid_lps
        )
    except MemoryError:
        rec["error"] = "out of memory"
    except Exception as exc:  # noqa: BLE001 - fault isolation: one case never stops the batch
        rec["error"] = one_line(exc)
    return rec


def flatten_margin(doc: dict[str, Any] | None) -> dict[str, Any]:
    """Flatten the scalar figures of a margin JSON dict into one column each.

    Top-level scalars keep their name; a dict of scalars gives ``key.sub`` columns; a
    3-vector ``*_lps`` gives ``key.x``, ``key.y``, ``key.z``; ``warnings`` is joined with
    "; ". Histograms and curves are left out.

    Parameters
    ----------
    doc : dict or None
        The margin JSON dict (``MarginResult.to_json_dict``), ``None`` for a failed case.

    Returns
    -------
    dict
        Column name -> scalar (empty for ``None``).

    Examples
    --------
    >>> doc = {"min_margin_mm": 2.5, "min_margin_point_lps": [1.0, 2.0, 3.0],
    ...        "volumes_ml": {"tumor": 4.2}, "warnings": ["a", "b"], "histogram": [1, 2, 3]}
    >>> flatten_margin(doc)  # doctest: +NORMALIZE_WHITESPACE
    {'min_margin_mm': 2.5, 'min_margin_point_lps.x': 1.0, 'min_margin_point_lps.y': 2.0,
     'min_margin_point_lps.z': 3.0, 'volumes_ml.tumor': 4.2, 'warnings': 'a; b'}
    """
    out: dict[str, Any] = {}
    if not doc:
        return out
    for k, v in doc.items():
        if v is None or isinstance(v, (bool, int, float, str)):
            out[k] = v
        elif k == "warnings" and isinstance(v, list):
            out[k] = "; ".join(str(w) for w in v)
        elif isinstance(v, dict) and all(
            x is None or isinstance(x, (bool, int, float, str)) for x in v.values()
        ):
            for sk, sv in v.items():
                out[f"{k}.{sk}"] = sv
        elif (
            isinstance(v, list)
            and len(v) == 3
            and k.endswith("_lps")
            and all(isinstance(x, (int, float)) for x in v)
        ):
            for ax, x in zip("xyz", v):
                out[f"{k}.{ax}"] = x
    return out


def record_row(rec: dict[str, Any]) -> dict[str, Any]:
    """Build one ``margins.csv`` row from a case record.

    Parameters
    ----------
    rec : dict
        A record of :func:`analyze_case`.

    Returns
    -------
    dict
        ``case``, ``error``, the :data:`META_COLUMNS` figures and the flattened margin
        figures (:func:`flatten_margin`).
    """
    return {
        "case": rec["case"],
        "error": rec.get("error") or "",
        **rec.get("meta", {}),
        **flatten_margin(rec.get("margin")),
    }


# ----------------------------------------------------------------------------- results folder


def case_result_path(results: str | os.PathLike, case_id: str) -> Path:
    """Return the file of a stored case result.

    Parameters
    ----------
    results : str or os.PathLike
        The results folder.
    case_id : str
        The case id.

    Returns
    -------
    pathlib.Path
        ``RESULTS/cases/<quoted id>.json`` (``/`` in an id is quoted).

    Examples
    --------
    >>> case_result_path("results", "site A/case 1").as_posix()
    'results/cases/site%20A%2Fcase%201.json'
    """
    return Path(results) / CASES_DIR / f"{quote(case_id, safe='')}.json"


def load_case_result(results: str | os.PathLike, case_id: str) -> dict[str, Any] | None:
    """Load a stored case result.

    Parameters
    ----------
    results : str or os.PathLike
        The results folder.
    case_id : str
        The case id.

    Returns
    -------
    dict or None
        The stored record with its ``input_hash``, ``None`` when there is none or it
        is unreadable.
    """
    p = case_result_path(results, case_id)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == RESULT_FORMAT else None


def _store(results: Path, rec: dict[str, Any], digest: str | None) -> None:
    from .io import write_text_atomic

    doc = {"format": RESULT_FORMAT, "input_hash": digest, **rec}
    write_text_atomic(case_result_path(results, rec["case"]), json.dumps(doc, indent=1))


def write_table(results: str | os.PathLike, records: Sequence[dict[str, Any]]) -> list[Path]:
    """Write ``margins.csv`` (and ``margins.parquet`` when pyarrow is installed) atomically.

    Parameters
    ----------
    results : str or os.PathLike
        The results folder.
    records : sequence of dict
        The case records (:func:`analyze_case`), one row each.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    AblationError
        If a file cannot be written.
    """
    import pandas as pd

    from .io import write_bytes_atomic, write_text_atomic

    rows = [record_row(r) for r in records]
    cols = list(META_COLUMNS)
    for r in rows:
        cols += [k for k in r if k not in cols]
    df = pd.DataFrame(rows, columns=cols)
    results = Path(results)
    written = [write_text_atomic(results / MARGINS_CSV, df.to_csv(index=False))]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    import io as _io

    buf = _io.BytesIO()
    df.to_parquet(buf, index=False)
    written.append(write_bytes_atomic(results / MARGINS_PARQUET, buf.getvalue()))
    return written


# ----------------------------------------------------------------------------- the batch


@dataclass
class CohortProgress:
    """Where a batch stands.

    Parameters
    ----------
    total : int
        Number of cases.
    done : int, optional
        Cases that worked (reused ones included).
    failed : int, optional
        Cases that ended as an error row (reused ones included).
    skipped : int, optional
        Cases reused from an earlier run.
    elapsed_s : float, optional
        Seconds since the batch started.
    last_case : str, optional
        The id of the case that finished last.
    last_error : str, optional
        Its error, if any.
    computed : int, optional
        Cases finished in this run.
    compute_s : float, optional
        Seconds since the tasks were submitted (the cluster is up).
    """

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0  # reused from an earlier run (included in done/failed)
    elapsed_s: float = 0.0
    last_case: str = ""
    last_error: str = ""
    computed: int = 0  # finished in this run
    compute_s: float = 0.0  # time since the tasks were submitted (the cluster is up)

    @property
    def left(self) -> int:
        """Number of cases not finished yet."""
        return self.total - self.done - self.failed

    @property
    def rate_per_min(self) -> float:
        """Cases computed per minute in this run (0 before the first)."""
        return (
            60.0 * self.computed / self.compute_s if self.compute_s > 0 and self.computed else 0.0
        )

    @property
    def eta_s(self) -> float | None:
        """Estimated seconds left, ``None`` before a rate is known."""
        r = self.rate_per_min
        return 60.0 * self.left / r if r > 0 else None

    def text(self) -> str:
        """Describe the progress in one line.

        Returns
        -------
        str
            E.g. ``12/40 done, 1 failed, 27 left, 8.3 cases/min, 3 min 15 s left``.

        Examples
        --------
        >>> CohortProgress(40, done=12, failed=1, computed=13, compute_s=78.0).text()
        '12/40 done, 1 failed, 27 left, 10.0 cases/min, 2 min 42 s left'
        """
        eta = self.eta_s
        if self.left == 0:
            tail = f"{_duration(self.elapsed_s)} in all"
        else:
            tail = f"{_duration(eta)} left" if eta is not None else "time left unknown"
        skipped = f" ({self.skipped} unchanged)" if self.skipped else ""
        return (
            f"{self.done}/{self.total} done{skipped}, {self.failed} failed, {self.left} left, "
            f"{self.rate_per_min:.1f} cases/min, {tail}"
        )


def _duration(s: float) -> str:
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


@dataclass
class CohortRun:
    """The outcome of :func:`run_cohort`.

    Parameters
    ----------
    records : list of dict
        Every case record (:func:`analyze_case`), in the order of the cases.
    computed : list of str, optional
        Ids of the cases analysed in this run.
    reused : list of str, optional
        Ids of the cases taken from an earlier run.
    files : list of pathlib.Path, optional
        The table files written.
    progress : CohortProgress, optional
        The final progress.
    """

    records: list[dict[str, Any]]
    computed: list[str] = field(default_factory=list)  # case ids analysed in this run
    reused: list[str] = field(default_factory=list)  # case ids taken from an earlier run
    files: list[Path] = field(default_factory=list)
    progress: CohortProgress | None = None

    @property
    def failed(self) -> list[str]:
        """Ids of the cases that ended as an error row."""
        return [r["case"] for r in self.records if r.get("error")]

    def counts(self) -> dict[str, int]:
        """Count the cases by outcome; the counts add up to the cases.

        Returns
        -------
        dict
            ``cases``; ``computed`` (analysed in this run, and worked), ``unchanged``
            (taken from an earlier run, and worked), ``failed`` (an error row, in this run
            or an earlier one).
        """
        bad = set(self.failed)
        return {
            "cases": len(self.records),
            "computed": len(set(self.computed) - bad),
            "unchanged": len(set(self.reused) - bad),
            "failed": len(bad),
        }

    def summary(self) -> str:
        """Describe the outcome in one line (the CLI and the Cohort widget say this).

        Returns
        -------
        str
            E.g. ``5 cases (3 computed, 0 unchanged, 2 failed)``.
        """
        n = self.counts()
        return (
            f"{n['cases']} cases ({n['computed']} computed, {n['unchanged']} unchanged, "
            f"{n['failed']} failed)"
        )


@contextlib.contextmanager
def _children_ignore_sigint():
    """Make the worker processes started in this block ignore SIGINT.

    An ignored signal stays ignored across exec: Ctrl-C in a terminal reaches the whole
    process group, and the batch, not each worker, decides what to do (cancel, close the
    cluster, keep what is stored).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def connect(
    scheduler: str | None = None,
    *,
    workers: int | None = None,
    memory_limit: str | int | None = DEFAULT_MEMORY_LIMIT,
    timeout_s: float = 5.0,
):
    """Connect a ``distributed.Client`` to a scheduler, or to a new local cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); ``None`` starts a local
        cluster of ``workers`` processes with one thread each.
    workers : int, optional
        Worker processes of the local cluster (default: the number of CPUs, at most 4).
    memory_limit : str or int, optional
        Memory limit of each local worker (Dask restarts a worker that exceeds it).
    timeout_s : float, optional
        How long to wait for a scheduler to answer, in seconds.

    Returns
    -------
    client : distributed.Client
        The client; close it when done.
    cluster : distributed.LocalCluster or None
        The local cluster started here (close it after the client), ``None`` for an
        existing scheduler.

    Raises
    ------
    AblationError
        When the scheduler does not answer or the worker count is not positive.
    """
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=f"{timeout_s}s", set_as_default=False), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise AblationError(
                f"no Dask scheduler answers at {scheduler} ({one_line(exc)})"
            ) from None
    n = workers if workers is not None else min(4, os.cpu_count() or 1)
    if n < 1:
        raise AblationError(f"the number of workers must be at least 1, got {n}")
    with _children_ignore_sigint():
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
    try:
        return Client(cluster, set_as_default=False), cluster
    except BaseException:
        cluster.close()
        raise


def run_cohort(
    cases: Sequence[CaseInputs],
    out: str | os.PathLike,
    *,
    threshold_mm: float = 5.0,
    scheduler: str | None = None,
    workers: int | None = None,
    memory_limit: str | int | None = DEFAULT_MEMORY_LIMIT,
    progress: Callable[[CohortProgress], None] | None = None,
    stop: threading.Event | None = None,
    client=None,
) -> CohortRun:
    """Analyse every case on Dask, store each result as it finishes, write the table.

    Parameters
    ----------
    cases : sequence of CaseInputs
        From :func:`find_cases` or :func:`read_manifest`.
    out : str or os.PathLike
        Results folder (created). Case results whose input hash matches are reused.
    threshold_mm : float, optional
        Margin threshold (mm), as ``napari-ablation margin --threshold``.
    scheduler : str, optional
        Address of a running Dask scheduler (see :func:`connect`); ignored when
        ``client`` is given.
    workers : int, optional
        Worker processes of a local cluster (see :func:`connect`).
    memory_limit : str or int, optional
        Memory limit of each local worker (see :func:`connect`).
    progress : callable, optional
        Called with a :class:`CohortProgress` after every finished case and about twice
        a second while waiting.
    stop : threading.Event, optional
        When set, the batch stops (running tasks are cancelled, stored results kept)
        and :class:`KeyboardInterrupt` is raised.
    client : distributed.Client, optional
        An existing client to use (not closed here).

    Returns
    -------
    CohortRun
        All records (in the order of ``cases``), which were computed or reused, and the
        table files written.

    Raises
    ------
    AblationError
        Bad settings, an unreachable scheduler, or a results folder that cannot be written.
    KeyboardInterrupt
        On Ctrl-C or ``stop``; every case finished so far is stored, no table is written.
    """
    threshold_mm = coverage.check_threshold(threshold_mm)
    if not cases:
        raise AblationError("no case to analyse")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AblationError(f"{out}: exists and is not a folder")
    try:
        (out / CASES_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AblationError(f"{out}: cannot create the results folder ({one_line(exc)})") from None

    t0 = time.monotonic()
    prog = CohortProgress(total=len(cases))
    records: dict[str, dict[str, Any]] = {}
    todo: list[tuple[CaseInputs, str | None]] = []
    run = CohortRun(records=[], progress=prog)
    for c in cases:
        digest = inputs_hash(c, threshold_mm)
        old = load_case_result(out, c.case) if digest else None
        if old is not None and old.get("input_hash") == digest:
            rec = {k: old[k] for k in ("case", "error", "meta", "margin") if k in old}
            rec["inputs"] = asdict(c)  # the files where they are now (the cohort may have moved)
            rec.setdefault("meta", {})["folder"] = c.folder or ""
            records[c.case] = rec
            run.reused.append(c.case)
            prog.skipped += 1
            if rec.get("error"):
                prog.failed += 1
            else:
                prog.done += 1
        else:
            todo.append((c, digest))

    submitted: list[float] = []

    def report(last: dict[str, Any] | None = None):
        now = time.monotonic()
        prog.elapsed_s = now - t0
        prog.compute_s = now - submitted[0] if submitted else 0.0
        if last is not None:
            prog.last_case, prog.last_error = last["case"], last.get("error") or ""
        if progress is not None:
            progress(prog)

    def finish(rec: dict[str, Any], digest: str | None, *, store: bool = True):
        records[rec["case"]] = rec
        if store:
            _store(out, rec, digest)
        run.computed.append(rec["case"])
        prog.computed += 1
        if rec.get("error"):
            prog.failed += 1
        else:
            prog.done += 1
        report(rec)

    report()
    if todo:
        own_client = client is None
        cluster = None
        if own_client:
            client, cluster = connect(scheduler, workers=workers, memory_limit=memory_limit)
        try:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt  # stopped while the cluster started
            _warm_up(client)
            submitted.append(time.monotonic())
            _compute(client, todo, threshold_mm, finish, report, stop)
        finally:
            if own_client:
                client.close()
                if cluster is not None:
                    cluster.close()
    run.records = [records[c.case] for c in cases]
    run.files = write_table(out, run.records)
    report()
    return run


def _compute(client, todo, threshold_mm, finish, report, stop) -> None:
    from distributed.client import FutureCancelledError

    futures = {}
    for c, digest in todo:  # one thread per analysis: the workers already run side by side
        key = f"cohort-margin-{quote(c.case, safe='')}-{(digest or 'nohash')[:16]}-{time.time_ns()}"
        futures[client.submit(analyze_case, c, threshold_mm, 1, key=key, pure=False)] = (c, digest)
    pending = set(futures)
    last_report = time.monotonic()
    try:
        while pending:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            batch = [f for f in pending if f.done()]
            if not batch:
                time.sleep(0.05)
                if time.monotonic() - last_report > 0.5:
                    report()
                    last_report = time.monotonic()
                continue
            for fut in batch:
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                pending.discard(fut)
                c, digest = futures[fut]
                store = True
                try:
                    rec = fut.result()
                except FutureCancelledError:
                    raise KeyboardInterrupt from None
                except Exception as exc:  # noqa: BLE001 - a task lost to the cluster is an error row
                    rec = {
                        "case": c.case,
                        "error": _task_error(exc),
                        "margin": None,
                        "meta": {
                            "modality": c.modality,
                            "qa_verdict": c.qa_verdict,
                            "folder": c.folder or "",
                        },
                        "inputs": asdict(c),
                    }
                    store = False  # an infrastructure failure: try again on the next run
                finish(rec, digest, store=store)
                last_report = time.monotonic()
    except BaseException:
        client.cancel(list(pending))
        raise


def _import_analysis() -> str:
    """Import the analysis and run it once on a tiny phantom, on every worker.

    Runs before the tasks (not counted in the rate), so that lazily loaded modules are
    loaded.
    """
    from .margin import analyze_margin, sphere_image

    tumor = sphere_image((16, 16, 16), (1.0, 1.0, 1.0), (-8.0, -8.0, -8.0), (0.0, 0.0, 0.0), 3.0)
    ablation = sphere_image((16, 16, 16), (1.0, 1.0, 1.0), (-8.0, -8.0, -8.0), (0.0, 0.0, 0.0), 6.0)
    analyze_margin(tumor, ablation)
    return "ok"


def _warm_up(client) -> None:
    try:
        client.run(_import_analysis)
    except ImportError as exc:
        raise AblationError(
            "the Dask workers cannot import napari-ablation; "
            f"install it on every worker ({one_line(exc)})"
        ) from None


def _task_error(exc: BaseException) -> str:
    if type(exc).__name__ == "KilledWorker":
        return "the Dask worker computing this case died each time it was tried (out of memory?)"
    return one_line(exc)


__all__ = [
    "CaseInputs",
    "CohortProgress",
    "CohortRun",
    "analyze_case",
    "case_folder_inputs",
    "connect",
    "find_cases",
    "flatten_margin",
    "inputs_hash",
    "load_case_result",
    "read_manifest",
    "record_row",
    "run_cohort",
    "write_table",
]


# ----------------------------------------------------------------------------- synthetic cohort

#: the hazard model of ``cohort synth``: exponential time to LTP with hazard
#: ``BASELINE_HAZARD_PER_MONTH * HAZARD_RATIO_PER_MM ** true_mtm_mm`` (proportional hazards,
#: log-HR ln 0.77 per mm of the true MTM), follow-up censored uniformly in
#: ``FOLLOW_UP_MONTHS``; a recurrence appears in the octant of the true MTM point with
#: probability ``SITE_SAME_OCTANT``, otherwise in an adjacent octant (one axis flipped).
HAZARD_RATIO_PER_MM = 0.77
BASELINE_HAZARD_PER_MONTH = 0.02
FOLLOW_UP_MONTHS = (12.0, 48.0)
SITE_SAME_OCTANT = 0.85


@dataclass
class SyntheticCohort:
    """What :func:`write_synthetic_cohort` wrote.

    Parameters
    ----------
    cases : list of pathlib.Path
        The case folders.
    outcomes : pathlib.Path
        The ``outcomes.csv`` file.
    truth : list of dict
        The truth of every case (``case``, ``min_margin_mm``, ``min_margin_octant``,
        ...).
    model : str
        The outcome model in one sentence (:func:`hazard_model_text`).
    """

    cases: list[Path]
    outcomes: Path
    truth: list[dict[str, Any]]
    model: str


def hazard_model_text() -> str:
    """Describe the outcome model of ``cohort synth`` in one sentence.

    Returns
    -------
    str
        The hazard model, follow-up and recurrence-site rule with their numbers.
    """
    lo, hi = FOLLOW_UP_MONTHS
    return (
        "outcome model: time to LTP ~ "
        f"Exponential(hazard {BASELINE_HAZARD_PER_MONTH:g}/month x "
        f"{HAZARD_RATIO_PER_MM:g}^MTM), "
        f"i.e. hazard ratio {HAZARD_RATIO_PER_MM:g} per mm of the true MTM; "
        f"follow-up censored uniformly between {lo:g} and {hi:g} months; "
        "recurrence in the MTM octant "
        f"with probability {SITE_SAME_OCTANT:g}, else in an adjacent octant"
    )


def draw_outcomes(truth: Sequence[dict[str, Any]], rng) -> list[dict[str, Any]]:
    """Draw outcome rows for cases with a known true MTM.

    Parameters
    ----------
    truth : sequence of dict
        One dict per case with ``case``, ``min_margin_mm`` and ``min_margin_octant``
        (the truth).
    rng : numpy.random.Generator
        The random generator.

    Returns
    -------
    list of dict
        ``case``, ``ltp`` (0/1), ``months`` (follow-up or time to LTP) and
        ``recurrence_octant`` rows, drawn from the hazard model of
        :func:`hazard_model_text`.

    Examples
    --------
    >>> import numpy as np
    >>> truth = [
    ...     {"case": "c1", "min_margin_mm": -2.0, "min_margin_octant": "left-anterior-superior"}
    ... ]
    >>> rows = draw_outcomes(truth, np.random.default_rng(0))
    >>> sorted(rows[0]), rows[0]["ltp"] in (0, 1)
    (['case', 'ltp', 'months', 'recurrence_octant'], True)
    """
    rows = []
    for t in truth:
        rate = BASELINE_HAZARD_PER_MONTH * HAZARD_RATIO_PER_MM ** float(t["min_margin_mm"])
        event_time = rng.exponential(1.0 / rate)
        censor = rng.uniform(*FOLLOW_UP_MONTHS)
        ltp = bool(event_time <= censor)
        site = ""
        if ltp:
            parts = t["min_margin_octant"].split("-")
            if rng.uniform() >= SITE_SAME_OCTANT:
                axis = int(rng.integers(3))
                flip = (
                    {"left": "right", "right": "left"},
                    {"anterior": "posterior", "posterior": "anterior"},
                    {"superior": "inferior", "inferior": "superior"},
                )[axis]
                parts[axis] = flip[parts[axis]]
            site = "-".join(parts)
        rows.append(
            {
                "case": t["case"],
                "ltp": int(ltp),
                "months": round(float(min(event_time, censor)), 1),
                "recurrence_octant": site,
            }
        )
    return rows


def write_synthetic_cohort(out: str | os.PathLike, *, n: int, seed: int = 0) -> SyntheticCohort:
    """Write ``n`` small synthetic case folders and ``out/outcomes.csv`` (``cohort synth``).

    The cases are :func:`.synthetic.write_synthetic_cases` (renal MRI and liver CT
    alternating, small fields of view, coverage scenarios cycled, exact truths); the
    outcomes are drawn from the hazard model of :func:`hazard_model_text` on each case's
    true MTM. ``out/truth.csv`` lists the truths next to the outcomes.

    Parameters
    ----------
    out : str or os.PathLike
        Output folder: ``case_001`` ... and ``outcomes.csv``, ``truth.csv``.
    n : int
        Number of cases (>= 1).
    seed : int, optional
        Random seed: the same seed writes the same cohort.

    Returns
    -------
    SyntheticCohort
        The case folders, the outcomes file, the truths and the model.

    Raises
    ------
    AblationError
        ``n`` < 1, or ``out`` is a file.
    """
    import numpy as np
    import pandas as pd

    from .io import write_text_atomic
    from .synthetic import write_synthetic_cases

    if n < 1:
        raise AblationError(f"the number of cases must be at least 1, got {n}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AblationError(f"{out}: exists and is not a folder")
    made = write_synthetic_cases(out, n, seed=seed, modality="mixed", small=True)
    truth = [{"case": folder.name, **t} for folder, t in made]
    rows = draw_outcomes(truth, np.random.default_rng([seed, 12]))
    df = pd.DataFrame(rows, columns=["case", "ltp", "months", "recurrence_octant"])
    outcomes = write_text_atomic(out / "outcomes.csv", df.to_csv(index=False))
    table = pd.DataFrame(
        [
            {
                "case": t["case"],
                "true_min_margin_mm": t["min_margin_mm"],
                "true_min_margin_octant": t["min_margin_octant"],
                "true_tumor_max_diameter_mm": t["tumor_max_diameter_mm"],
                "scenario": t["scenario"],
                "modality": t["modality"],
            }
            for t in truth
        ]
    )
    write_text_atomic(out / "truth.csv", table.to_csv(index=False))
    return SyntheticCohort(
        cases=[f for f, _t in made], outcomes=outcomes, truth=truth, model=hazard_model_text()
    )
