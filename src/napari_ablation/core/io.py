"""Reading images and DICOM series, writing files atomically.

Everything that reads returns images in identity-direction LPS (see ``geometry``) and
raises :class:`~napari_ablation.core.errors.AblationError` with a one-line message on
bad input. Every file is checked completely before it is used (see ``files``: a gzip
stream is read to its end, header against data, finite positive spacing, finite voxel
values, consistent geometry across a DICOM series). Everything that writes goes through
:class:`~napari_ablation.core.files.OutputSet` (temporary file in the same folder,
flushed and verified, then renamed; never onto an input), so a crash never leaves a
half-written file.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from . import geometry
from .errors import AblationError
from .files import OutputSet, check_nifti, input_path, native_reason, quiet_native_stderr

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")

# DICOM tags
_SERIES_UID = "0020|000e"
_SERIES_DESC = "0008|103e"
_MODALITY = "0008|0060"
_IPP = "0020|0032"
_IOP = "0020|0037"
_ROWS = "0028|0010"
_COLS = "0028|0011"
_PIXEL_SPACING = "0028|0030"


def path_suffix(path: str | os.PathLike) -> str:
    """Return the suffix of a file name, double suffixes such as ``.nii.gz`` included.

    Parameters
    ----------
    path : str or os.PathLike
        A file name or path.

    Returns
    -------
    str
        The image suffix it ends with (lower case), else its last suffix.

    Examples
    --------
    >>> path_suffix("scans/Pre.NII.GZ"), path_suffix("notes.txt")
    ('.nii.gz', '.txt')
    """
    name = Path(path).name.lower()
    for suf in IMAGE_SUFFIXES:
        if name.endswith(suf):
            return suf
    return Path(path).suffix.lower()


def is_image_file(path: str | os.PathLike) -> bool:
    """Tell whether a file name has one of the image suffixes read here.

    Parameters
    ----------
    path : str or os.PathLike
        A file name or path.

    Returns
    -------
    bool
        True for NIfTI, NRRD and MetaImage names (:data:`IMAGE_SUFFIXES`).

    Examples
    --------
    >>> is_image_file("tumor.nii.gz"), is_image_file("transform.tfm")
    (True, False)
    """
    return path_suffix(path) in IMAGE_SUFFIXES


# --------------------------------------------------------------------------------------
# writing (every output goes through files.OutputSet: all or none, never onto an input)


def write_text_atomic(path: str | os.PathLike, text: str, *, inputs=()) -> Path:
    """Write a text file atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    text : str
        Its content (written as UTF-8).
    inputs : iterable of path-like, optional
        Files that must not be overwritten.

    Returns
    -------
    pathlib.Path
        ``path``, written in full (see :class:`~napari_ablation.core.files.OutputSet`).

    Raises
    ------
    AblationError
        If ``path`` is one of ``inputs`` or cannot be written.
    """
    outs = OutputSet(inputs)
    outs.add_text(path, text)
    outs.commit()
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, inputs=()) -> Path:
    """Write a binary file atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    data : bytes
        Its content.
    inputs : iterable of path-like, optional
        Files that must not be overwritten.

    Returns
    -------
    pathlib.Path
        ``path``, written in full (see :class:`~napari_ablation.core.files.OutputSet`).

    Raises
    ------
    AblationError
        If ``path`` is one of ``inputs`` or cannot be written.
    """
    outs = OutputSet(inputs)
    outs.add_bytes(path, data)
    outs.commit()
    return Path(path)


def write_image_atomic(
    img: sitk.Image, path: str | os.PathLike, *, compress: bool = True, inputs=()
) -> Path:
    """Write a SimpleITK image atomically, verified by a re-read.

    Parameters
    ----------
    img : SimpleITK.Image
        The image.
    path : str or os.PathLike
        The file to write; the format follows its suffix (e.g. ``.nii.gz``).
    compress : bool, optional
        Compress the data where the format allows it.
    inputs : iterable of path-like, optional
        Files that must not be overwritten.

    Returns
    -------
    pathlib.Path
        ``path``, written in full.

    Raises
    ------
    AblationError
        If ``path`` is one of ``inputs``, or the file cannot be written or does not
        read back the same.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import SimpleITK as sitk
    >>> img = sitk.Image(4, 5, 6, sitk.sitkUInt8)
    >>> img.SetSpacing((0.75, 0.75, 5.0))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_image_atomic(img, Path(folder) / "mask.nii.gz")
    ...     loaded = read_image(path)
    >>> loaded.array.shape, loaded.image.GetSpacing()
    ((6, 5, 4), (0.75, 0.75, 5.0))
    """
    outs = OutputSet(inputs)
    outs.add_image(path, img, compress=compress)
    outs.commit()
    return Path(path)


# --------------------------------------------------------------------------------------
# DICOM


@dataclass
class SeriesInfo:
    """One DICOM series found in a folder.

    Parameters
    ----------
    uid : str
        SeriesInstanceUID.
    description : str
        SeriesDescription (may be empty).
    modality : str
        DICOM modality code, e.g. ``"CT"`` or ``"MR"``.
    size : tuple of int
        Voxels ``(x, y, z)``.
    spacing : tuple of float
        Voxel size in mm ``(x, y, z)``; z from the slice positions.
    files : list of str
        The slice files, sorted along the slice normal.
    problem : str or None, optional
        Why the series cannot be read as a volume (missing slices, uneven spacing,
        mixed orientation, a corrupt file), ``None`` if it can.
    slice_step_dir : tuple of float or None, optional
        Under gantry tilt, the unit vector from one slice origin to the next (the
        series is sheared and is resampled on reading); ``None`` otherwise.
    notes : list of str, optional
        What reading the series will change (e.g. the tilt correction).
    """

    uid: str
    description: str
    modality: str
    size: tuple[int, int, int]  # (x, y, z)
    spacing: tuple[float, float, float]  # (x, y, z); z from slice positions
    files: list[str] = field(repr=False, default_factory=list)
    problem: str | None = None  # missing slices, uneven spacing, mixed orientation, a corrupt file
    #: gantry tilt: the unit vector from one slice origin to the next when it is not the
    #: slice normal (the series is sheared and is resampled on reading)
    slice_step_dir: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_voxels(self) -> int:
        """Number of voxels of the series."""
        return int(np.prod(self.size))

    def summary(self) -> str:
        """Describe the series in one line, for choosing among several.

        Returns
        -------
        str
            Description, modality, size, spacing in mm, and the problem if any.

        Examples
        --------
        >>> SeriesInfo("1.2.3", "T2 HASTE", "MR", (256, 256, 40), (1.2, 1.2, 3.0)).summary()
        'T2 HASTE [MR] 256x256x40 @ 1.20x1.20x3.00 mm'
        """
        sx, sy, sz = self.size
        px, py, pz = self.spacing
        desc = self.description or "(no description)"
        text = f"{desc} [{self.modality}] {sx}x{sy}x{sz} @ {px:.2f}x{py:.2f}x{pz:.2f} mm"
        if self.problem:
            text += f" -- {self.problem}"
        return text


def _read_header(path: str) -> sitk.ImageFileReader | None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.SetImageIO("GDCMImageIO")
    with quiet_native_stderr():
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return None
    return reader


def _looks_like_dicom(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def _tag(reader: sitk.ImageFileReader, key: str, default: str = "") -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else default


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", "\\").split("\\") if v.strip()]
    except ValueError:
        return []


def _dicom_candidates(folder: Path) -> list[str]:
    files = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            if name.startswith("."):
                continue
            p = os.path.join(root, name)
            low = name.lower()
            if low.endswith(IMAGE_SUFFIXES) or low.endswith(
                (".txt", ".json", ".csv", ".tfm", ".png", ".jpg")
            ):
                continue
            files.append(p)
    return sorted(files)


def list_dicom_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """List the DICOM image series below a folder, largest first.

    A file that starts like DICOM but cannot be read is named in the ``problem`` of every
    series of the folder (it may be one of its slices).

    Parameters
    ----------
    folder : str or os.PathLike
        The folder, searched with its subfolders.

    Returns
    -------
    list of SeriesInfo
        Every series found, sorted by number of voxels (largest first); empty when
        the folder holds no DICOM image.

    Raises
    ------
    AblationError
        If ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise AblationError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise AblationError(f"{folder}: not a folder")
    groups: dict[str, list[tuple[sitk.ImageFileReader, str]]] = defaultdict(list)
    corrupt: list[str] = []
    for path in _dicom_candidates(folder):
        reader = _read_header(path)
        if reader is None:
            if _looks_like_dicom(path):
                corrupt.append(path)
            continue
        if not reader.HasMetaDataKey(_SERIES_UID):
            continue
        groups[_tag(reader, _SERIES_UID)].append((reader, path))
    series = [_series_info(uid, members) for uid, members in groups.items()]
    if corrupt:
        names = ", ".join(os.path.relpath(c, folder) for c in corrupt[:3]) + (
            " ..." if len(corrupt) > 3 else ""
        )
        for s in series:
            s.problem = f"a corrupt DICOM file in its folder ({names}, not readable)"
    series.sort(key=lambda s: s.n_voxels, reverse=True)
    return series


def _pixel_spacing(reader: sitk.ImageFileReader) -> list[float]:
    px = _floats(_tag(reader, _PIXEL_SPACING))
    return px if len(px) >= 2 else list(reader.GetSpacing()[:2])[::-1]


def _series_info(uid: str, members: list[tuple[sitk.ImageFileReader, str]]) -> SeriesInfo:
    first = members[0][0]
    desc = _tag(first, _SERIES_DESC)
    modality = _tag(first, _MODALITY, "OT")
    iop = _floats(_tag(first, _IOP))
    sx, sy = first.GetSize()[0], first.GetSize()[1]
    nframes = first.GetSize()[2] if first.GetDimension() >= 3 else 1
    px = _pixel_spacing(first)
    spacing_xy = (float(px[1]), float(px[0]))
    files = [p for _r, p in members]
    name0 = os.path.basename(members[0][1])
    if not all(math.isfinite(v) and v > 0 for v in px[:2]):
        return SeriesInfo(
            uid,
            desc,
            modality,
            (sx, sy, max(1, nframes)),
            (*spacing_xy, 1.0),
            files,
            f"PixelSpacing {px[0]:g}\\{px[1]:g} in {name0} (must be positive)",
        )
    if len(members) == 1:
        z = float(first.GetSpacing()[2]) if first.GetDimension() >= 3 else 1.0
        return SeriesInfo(uid, desc, modality, (sx, sy, max(1, nframes)), (*spacing_xy, z), files)
    problem = None
    for reader, path in members[1:]:
        name = os.path.basename(path)
        other = _pixel_spacing(reader)
        if not all(math.isfinite(v) and v > 0 for v in other[:2]):
            problem = f"PixelSpacing {other[0]:g}\\{other[1]:g} in {name} (must be positive)"
        elif not np.allclose(other[:2], px[:2], rtol=1e-4, atol=1e-6):
            problem = (
                f"PixelSpacing {other[0]:g}\\{other[1]:g} in {name} where {name0} has "
                f"{px[0]:g}\\{px[1]:g}"
            )
        elif tuple(reader.GetSize()[:2]) != (sx, sy):
            problem = (
                f"{name} is {reader.GetSize()[0]}x{reader.GetSize()[1]} where {name0} is {sx}x{sy}"
            )
        if problem:
            break
    if problem:
        return SeriesInfo(
            uid, desc, modality, (sx, sy, len(members)), (*spacing_xy, 1.0), files, problem
        )
    if len(iop) != 6 or not all(math.isfinite(v) for v in iop):
        iop = [1, 0, 0, 0, 1, 0]
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row, col)
    positions = []
    orientations = set()
    for reader, path in members:
        ipp = _floats(_tag(reader, _IPP))
        orientations.add(tuple(np.round(_floats(_tag(reader, _IOP)) or [0] * 6, 4)))
        ok = len(ipp) == 3 and all(math.isfinite(v) for v in ipp)
        positions.append(
            (
                float(np.dot(ipp, normal)) if ok else float("nan"),
                path,
                np.asarray(ipp if ok else [np.nan] * 3),
            )
        )
    positions.sort(key=lambda t: t[0])
    files = [p for _z, p, _x in positions]
    z = np.array([p for p, _f, _x in positions])
    spacing_z = 1.0
    step_dir = None
    notes: list[str] = []
    if np.all(np.isfinite(z)):
        gaps = np.diff(z)
        if np.any(np.abs(gaps) < 1e-3):
            problem = "duplicate slice positions"
        elif len(gaps):
            med = float(np.median(gaps))
            spacing_z = med
            if np.any(gaps > 1.5 * med):
                n_missing = int(np.round(np.sum(gaps[gaps > 1.5 * med] / med - 1)))
                problem = (
                    f"{n_missing} missing slice(s) (gap of {gaps.max():.2f} mm where slices "
                    f"are {med:.2f} mm apart)"
                )
            elif np.max(np.abs(gaps - med)) > max(0.01 * med, 0.01):
                problem = f"uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm)"
        if problem is None and len(z) > 1:
            # in-plane offsets of every slice origin: 0 for a normal stack, proportional
            # to the slice position under gantry tilt, anything else is a shifted slice
            xyz = np.stack([x for _z, _p, x in positions])
            d = xyz - xyz[0]
            zz = d @ normal
            uv = np.stack([d @ row, d @ col], axis=1)
            # the tilt's slope from the median over slices: one shifted slice does not move it
            slope = np.median(uv[1:] / zz[1:, None], axis=0)
            resid = np.linalg.norm(uv - np.outer(zz, slope), axis=1)
            tol = 0.1 * min(spacing_xy)
            if resid.max() > tol:
                k = int(np.argmax(resid))
                problem = (
                    f"slice {os.path.basename(files[k])} shifted in-plane by {resid[k]:.2f} mm "
                    "from the others (inconsistent ImagePositionPatient)"
                )
            elif np.hypot(*slope) * abs(spacing_z) * len(z) > tol:
                step = slope[0] * row + slope[1] * col + normal
                angle = math.degrees(math.atan(float(np.hypot(*slope))))
                step_dir = tuple(float(v) for v in step / np.linalg.norm(step))
                spacing_z = float(np.linalg.norm(step) * spacing_z)
                notes.append(
                    f"gantry tilt of {angle:.1f} deg: the sheared slices were resampled "
                    "exactly onto an "
                    "axis-aligned grid (as 3D Slicer does)"
                )
    else:
        problem = "slices without a position (ImagePositionPatient)"
    if len(orientations) > 1:
        problem = "slices with different orientations"
    return SeriesInfo(
        uid,
        desc,
        modality,
        (sx, sy, len(members)),
        (*spacing_xy, abs(spacing_z)),
        files,
        problem,
        step_dir,
        notes,
    )


def read_dicom_series(series: SeriesInfo) -> sitk.Image:
    """Read one series found by :func:`list_dicom_series`.

    Parameters
    ----------
    series : SeriesInfo
        The series; refused when it has a ``problem``.

    Returns
    -------
    SimpleITK.Image
        The volume in its acquisition geometry (a gantry tilt corrected by a sheared
        direction; :func:`read_image` then brings it to identity-direction LPS).

    Raises
    ------
    AblationError
        The series has a geometry problem, or a file cannot be read (the file is named).
    """
    name = series.description or series.uid
    if series.problem:
        raise AblationError(f"DICOM series '{name}' has {series.problem}")
    if len(series.files) == 1:  # one file, possibly multi-frame: read as a volume
        reader = sitk.ImageFileReader()
        reader.SetFileName(series.files[0])
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(series.files)
    reader.SetImageIO("GDCMImageIO")
    with quiet_native_stderr():
        try:
            img = reader.Execute()
        except RuntimeError as exc:
            img, reason = None, native_reason(exc)
    if img is None:
        for f in series.files if len(series.files) > 1 else []:
            one = sitk.ImageFileReader()
            one.SetFileName(f)
            one.SetImageIO("GDCMImageIO")
            with quiet_native_stderr():
                try:
                    one.Execute()
                except RuntimeError:
                    raise AblationError(
                        f"DICOM series '{name}': file {os.path.basename(f)} is corrupt (not "
                        "readable)"
                    ) from None
        raise AblationError(f"could not read DICOM series '{name}': {reason}")
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if series.slice_step_dir is not None and img.GetDimension() == 3:
        d = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
        d[:, 2] = series.slice_step_dir
        sp = list(img.GetSpacing())
        sp[2] = series.spacing[2]
        img.SetSpacing(sp)
        img.SetDirection(d.ravel().tolist())
    return img


# --------------------------------------------------------------------------------------
# images


@dataclass
class LoadedImage:
    """An image in identity-direction LPS, with where it came from.

    Parameters
    ----------
    image : SimpleITK.Image
        The image, identity direction, LPS mm.
    source : str
        The file or folder it was read from.
    original_geometry : dict
        Its geometry before reorientation (see ``geometry.geometry_dict``), kept for
        export.
    modality : str, optional
        ``"CT"``, ``"MR"``, ... when known.
    description : str, optional
        The DICOM SeriesDescription, when there is one.
    notes : list of str, optional
        What reading changed or chose (reorientation, resampling, the other series).
    series : list of SeriesInfo, optional
        For a DICOM folder, every series found.
    series_uid : str, optional
        For a DICOM folder, the SeriesInstanceUID of the series read.
    is_label : bool, optional
        It was read as a label image (see :func:`read_image`).
    """

    image: sitk.Image
    source: str
    original_geometry: dict[str, Any]
    modality: str = ""  # "CT", "MR", ... when known
    description: str = ""
    notes: list[str] = field(default_factory=list)
    series: list[SeriesInfo] = field(default_factory=list)  # for DICOM folders: all series found
    series_uid: str = ""  # for DICOM folders: the series read
    is_label: bool = False  # read as labels (nearest-neighbour resampling, integer voxels)

    @property
    def array(self) -> np.ndarray:
        """A copy of the voxels as a ``(z, y, x)`` numpy array."""
        return sitk.GetArrayFromImage(self.image)

    def metadata(self, role: str = "") -> dict[str, Any]:
        """Build the napari layer metadata, keeping the original geometry for export.

        Parameters
        ----------
        role : str, optional
            The layer's role in the case, e.g. ``"pre"`` or ``"post"``.

        Returns
        -------
        dict
            JSON-able ``{"napari_ablation": {...}}`` with the role, source, modality,
            description, original and current geometry, and notes.
        """
        return {
            "napari_ablation": {
                "role": role,
                "source": self.source,
                "modality": self.modality,
                "description": self.description,
                "original_geometry": self.original_geometry,
                "geometry": geometry.geometry_dict(self.image),
                "notes": list(self.notes),
            }
        }


def _check_volume(img: sitk.Image, name: str, require_volume: bool) -> None:
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise AblationError(
            f"{name} has {img.GetNumberOfComponentsPerPixel()} components per voxel (colour "
            "or vector data), expected a scalar image"
        )
    dim = img.GetDimension()
    if dim == 4:
        raise AblationError(
            f"{name} is 4D ({'x'.join(map(str, img.GetSize()))}); load one 3D volume"
        )
    if dim == 2 or (require_volume and dim == 3 and min(img.GetSize()) < 2):
        raise AblationError(
            f"{name} is 2D ({'x'.join(map(str, img.GetSize()))}); a 3D volume is needed"
        )
    if dim != 3:
        raise AblationError(f"{name} is {dim}D; a 3D volume is needed")


def read_image(
    path: str | os.PathLike,
    *,
    series_uid: str | None = None,
    is_label: bool | None = False,
    require_volume: bool = True,
) -> LoadedImage:
    """Read an image file or DICOM folder and bring it to identity-direction LPS.

    ``path`` may be a NIfTI / NRRD / MHA / MHD file, a single DICOM file, or a folder of
    DICOM files. For a folder holding several series, ``series_uid`` selects one; by
    default the largest 3D series is read and a note names the others.

    Parameters
    ----------
    path : str or os.PathLike
        The image file or DICOM folder.
    series_uid : str, optional
        The SeriesInstanceUID to read from a DICOM folder.
    is_label : bool or None, optional
        Read a label image: integer voxels required, nearest-neighbour resampling for
        oblique images, no NIfTI value scaling allowed. None: read it as one when its
        voxels look like a segmentation (:func:`looks_like_labels`, judged before any
        resampling); the result's ``is_label`` says which.
    require_volume : bool, optional
        Refuse a single 2D slice (when False it is read as a one-slice volume).

    Returns
    -------
    LoadedImage
        The image in identity-direction LPS, its original geometry and notes.

    Raises
    ------
    AblationError
        If the path is missing, not a readable image, not a scalar 3D volume, or has a
        bad geometry or non-finite voxels; a DICOM series with a problem; a label image
        with non-integer values.
    """
    p = input_path(path)
    notes: list[str] = []
    modality = description = ""
    series: list[SeriesInfo] = []
    if p.is_dir():
        series = list_dicom_series(p)
        if not series:
            raise AblationError(f"{p}: no DICOM images found in this folder")
        if series_uid is not None:
            chosen = [s for s in series if s.uid == series_uid]
            if not chosen:
                raise AblationError(f"{p}: no DICOM series with UID {series_uid}")
            pick = chosen[0]
        else:
            usable = (
                [s for s in series if s.size[2] > 1 and not s.problem]
                or [s for s in series if s.size[2] > 1]
                or series
            )
            pick = usable[0]
            others = [s for s in series if s is not pick]
            if others:
                notes.append(
                    f"{len(series)} series in folder; loaded the largest 3D one: {pick.summary()}; "
                    f"others: " + "; ".join(s.summary() for s in others)
                )
        img = read_dicom_series(pick)
        notes.extend(pick.notes)
        modality, description = pick.modality, pick.description
    else:
        if path_suffix(p) in (".nii", ".nii.gz"):
            header = check_nifti(p)
            if is_label and header.scaled:
                raise AblationError(
                    f"{p.name}: a label image must not rescale its values "
                    f"(scl_slope {header.scl_slope:g}, scl_inter {header.scl_inter:g})"
                )
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        with quiet_native_stderr():
            try:
                img = reader.Execute()
            except RuntimeError as exc:
                img, reason = None, native_reason(exc)
        if img is None:
            # ITK's reason, unless it blames a missing file (the file exists: it is damaged)
            # (and not ITK's "no reader for it": the message says that already)
            quiet = ("no such file", "unable to determine imageio")
            detail = "" if any(q in reason.lower() for q in quiet) else f": {reason[:160]}"
            raise AblationError(
                f"{p.name}: not a readable image (supported: NIfTI, NRRD, MHA/MHD, DICOM){detail}"
            )
        if reader.HasMetaDataKey(_MODALITY):
            modality = reader.GetMetaData(_MODALITY).strip()
        if reader.HasMetaDataKey(_SERIES_DESC):
            description = reader.GetMetaData(_SERIES_DESC).strip()
        if (
            img.GetDimension() == 4
            and img.GetSize()[3] == 1
            and path_suffix(p) not in IMAGE_SUFFIXES
        ):
            img = img[:, :, :, 0]  # a multi-frame DICOM file read as x*y*frames*1
    _check_volume(img, p.name, require_volume)
    check_geometry_and_values(img, p.name)
    if img.GetDimension() == 2:  # only reachable with require_volume=False
        img = sitk.JoinSeries(img)
    if not p.is_dir():
        from .case import recorded_geometry, restore_recorded_geometry

        recorded = recorded_geometry(p)  # a case folder's file: its exact geometry
        if recorded is not None:
            # (a record SimpleITK refuses: the file's own geometry stands)
            with contextlib.suppress(RuntimeError):
                restore_recorded_geometry(img, recorded)
    original = geometry.geometry_dict(img)
    if is_label is None:
        is_label = looks_like_labels(sitk.GetArrayViewFromImage(img))
    if is_label:
        img = _as_label_pixel_type(img, p.name)
    oriented, note = geometry.orient_lps(img, is_label=is_label)
    if note:
        notes.append(f"{p.name}: {note}")
    return LoadedImage(
        oriented,
        str(p),
        original,
        modality or guess_modality(oriented),
        description,
        notes,
        series,
        pick.uid if series else "",
        is_label,
    )


def check_geometry_and_values(img: sitk.Image, name: str) -> None:
    """Refuse an image with a bad geometry or non-finite voxels.

    Parameters
    ----------
    img : SimpleITK.Image
        The image to check.
    name : str
        The file name for the message.

    Raises
    ------
    AblationError
        For non-finite or non-positive spacing, a non-finite origin, degenerate or
        non-finite direction cosines, or NaN/Inf voxels.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> img = sitk.Image(3, 3, 3, sitk.sitkFloat32)
    >>> img[1, 1, 1] = float("nan")
    >>> check_geometry_and_values(img, "pre.nii.gz")
    Traceback (most recent call last):
    ...
    napari_ablation.core.errors.AblationError: pre.nii.gz: 1 voxel(s) are NaN or infinite
    """
    spacing = np.asarray(img.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise AblationError(
            f"{name}: voxel spacing must be finite and positive, got "
            f"{' x '.join(f'{v:g}' for v in spacing)} mm"
        )
    if not np.all(np.isfinite(img.GetOrigin())):
        raise AblationError(f"{name}: the image origin is not finite")
    d = np.asarray(img.GetDirection(), dtype=float)
    if not np.all(np.isfinite(d)) or abs(np.linalg.det(d.reshape(img.GetDimension(), -1))) < 1e-6:
        raise AblationError(f"{name}: the image orientation (direction cosines) is degenerate")
    arr = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise AblationError(f"{name}: {bad} voxel(s) are NaN or infinite")


def guess_modality(img: sitk.Image) -> str:
    """Guess CT or MR from the intensities of an image.

    Parameters
    ----------
    img : SimpleITK.Image
        The image.

    Returns
    -------
    str
        ``"CT"`` when the 1st percentile is below -500 (air in Hounsfield units),
        ``"MR"`` otherwise, ``""`` for an empty image.
    """
    arr = sitk.GetArrayViewFromImage(img)
    if arr.size == 0:
        return ""
    lo = float(np.percentile(arr[:: max(1, arr.shape[0] // 8)], 1))
    return "CT" if lo < -500 else "MR"


def _as_label_pixel_type(img: sitk.Image, name: str) -> sitk.Image:
    arr = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.allclose(arr, np.round(arr)):
            raise AblationError(f"{name}: not a label image (non-integer values)")
        out = sitk.Cast(img, sitk.sitkInt32)
        return out
    return img


#: integer voxels with at most this many distinct values look like a segmentation (a mask
#: or a label map), not a scan (:func:`looks_like_labels`)
GUESS_LABEL_VALUES = 16


def looks_like_labels(arr: np.ndarray) -> bool:
    """Tell whether voxels look like a segmentation rather than an intensity image.

    Parameters
    ----------
    arr : numpy.ndarray
        The voxels.

    Returns
    -------
    bool
        True for integer (or boolean) voxels with at most :data:`GUESS_LABEL_VALUES`
        distinct values.
    """
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        return False
    sample = arr.ravel()[:: max(1, arr.size // 200_000)]
    if len(np.unique(sample)) > GUESS_LABEL_VALUES:
        return False
    return len(np.unique(arr)) <= GUESS_LABEL_VALUES


#: more distinct values than this (counted on a subsample) is an intensity image, not labels
MAX_LABEL_VALUES = 32
#: the same when one label value is selected (a multi-structure label map)
MAX_LABEL_VALUES_SELECTED = 1024


def check_label_values(arr: np.ndarray, name: str, *, selected: bool = False) -> None:
    """Refuse an intensity image given as labels.

    Parameters
    ----------
    arr : numpy.ndarray
        The voxels.
    name : str
        The file name for the message.
    selected : bool, optional
        One label value is selected (a label map may then hold many structures).

    Raises
    ------
    AblationError
        ``not a label image: N distinct values`` (N counted on every 2nd/4th voxel).
    """
    limit = MAX_LABEL_VALUES_SELECTED if selected else MAX_LABEL_VALUES
    sub = arr[::2, ::4, ::4] if arr.ndim == 3 else arr
    if sub.dtype.itemsize == 1 and (np.issubdtype(sub.dtype, np.integer) or sub.dtype == bool):
        # (a case's uint8 labels, read at every opening: a count, not a sort)
        n = int(np.count_nonzero(np.bincount(sub.ravel().view(np.uint8), minlength=256)))
    else:
        n = len(np.unique(sub))
    if n > limit:
        raise AblationError(
            f"{name}: not a label image: {n} distinct values (a segmentation has a few)"
        )


#: the largest label value the plugin's labels hold (``uint8`` voxels, as napari paints them)
MAX_LABEL_VALUE = 255


def _distinct_values(arr: np.ndarray) -> np.ndarray:
    """Return the distinct values of an integer array, sorted, one slice at a time (no copy)."""
    lo, hi = int(arr.min(initial=0)), int(arr.max(initial=0))
    slices = arr if arr.ndim == 3 else arr[np.newaxis]
    if hi - lo <= 1 << 20:  # a count per value, not a sort
        seen = np.zeros(hi - lo + 1, dtype=bool)
        for plane in slices:
            seen[plane.ravel().astype(np.int64) - lo] = True
        return np.flatnonzero(seen) + lo
    return np.unique(np.concatenate([np.unique(plane) for plane in slices]))


def labels_to_uint8(
    img: sitk.Image, name: str, *, label: int | None = None
) -> tuple[sitk.Image, int | None]:
    """Bring a label image to the plugin's ``uint8`` labels without losing any label.

    Labels are kept in ``uint8`` (napari paints them so, and a case saves them so): values
    0 to 255 are kept as they are. A label image whose values do not fit (a ``uint16``
    mask of 256 or 1000, a label map with negative values) has its non-zero values
    renumbered 1, 2, ... in increasing order, so every voxel labelled stays labelled and
    distinct labels stay distinct, never wrapped modulo 256 (256 would become 0: UAT s12
    N1). An intensity image (a scan given as labels) is refused.

    Parameters
    ----------
    img : SimpleITK.Image
        The label image, integer voxels (see :func:`read_image` with ``is_label=True``).
    name : str
        The file name for the messages.
    label : int, optional
        The label value selected as the structure (``None``: any non-zero value).

    Returns
    -------
    image : SimpleITK.Image
        The ``uint8`` label image on the same grid.
    label : int or None
        ``label`` as renumbered (unchanged when the values fit, or when it is not among
        them).

    Raises
    ------
    AblationError
        ``not a label image`` for many distinct values (:func:`check_label_values`) or
        non-integer voxels; more than 255 distinct non-zero values.

    Examples
    --------
    >>> import numpy as np
    >>> import SimpleITK as sitk
    >>> mask = sitk.GetImageFromArray(np.array([[[0, 256], [1000, 256]]], np.uint16))
    >>> out, chosen = labels_to_uint8(mask, "tumor.nii.gz", label=1000)
    >>> sitk.GetArrayViewFromImage(out).tolist(), chosen
    ([[[0, 1], [2, 1]]], 2)
    """
    arr = sitk.GetArrayViewFromImage(img)
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        img = _as_label_pixel_type(img, name)  # non-integer values refused
        arr = sitk.GetArrayViewFromImage(img)
    check_label_values(arr, name, selected=label is not None)
    if img.GetPixelID() == sitk.sitkUInt8:
        return img, label
    if arr.size == 0 or (arr.min() >= 0 and arr.max() <= MAX_LABEL_VALUE):
        return sitk.Cast(img, sitk.sitkUInt8), label
    values = _distinct_values(arr)
    nonzero = values[values != 0]
    if len(nonzero) > MAX_LABEL_VALUE:
        raise AblationError(
            f"{name}: {len(nonzero)} distinct label values; at most {MAX_LABEL_VALUE} can be "
            "kept apart"
        )
    codes = np.zeros(len(values), dtype=np.uint8)
    codes[values != 0] = np.arange(1, len(nonzero) + 1)
    out_arr = np.empty(arr.shape, dtype=np.uint8)
    for z in range(arr.shape[0]):  # one slice at a time (no full-size index array)
        out_arr[z] = codes[np.searchsorted(values, arr[z])]
    out = sitk.GetImageFromArray(out_arr)
    out.CopyInformation(img)
    if label is not None and label != 0 and label in nonzero:
        label = int(np.searchsorted(nonzero, label)) + 1
    return out, label


def read_labels(
    path: str | os.PathLike,
    *,
    label: int | None = None,
    name: str = "labels",
    notes: list[str] | None = None,
) -> sitk.Image:
    """Read a segmentation as a binary ``uint8`` mask in identity-direction LPS.

    Any non-zero voxel is foreground unless ``label`` selects one value.

    Parameters
    ----------
    path : str or os.PathLike
        The label image file or DICOM folder.
    label : int, optional
        The label value to select (default: every non-zero voxel).
    name : str, optional
        What the mask is (e.g. ``"tumor"``), for the messages.
    notes : list of str, optional
        Gets a sentence for the user when several label values are merged into the mask
        (no ``label`` selected).

    Returns
    -------
    SimpleITK.Image
        The ``uint8`` mask (1 foreground, 0 background) on the image's grid.

    Raises
    ------
    AblationError
        As :func:`read_image`; also for an intensity image given as labels, or an
        empty mask.
    """
    loaded = read_image(path, is_label=True)
    arr = sitk.GetArrayViewFromImage(loaded.image)
    check_label_values(arr, Path(path).name, selected=label is not None)
    mask = (arr == label) if label is not None else (arr != 0)
    if not mask.any():
        which = f"label {label}" if label is not None else "any non-zero label"
        raise AblationError(f"{name} mask {Path(path).name} is empty (no voxel with {which})")
    if label is None and notes is not None:
        values = np.unique(arr[mask])
        if len(values) > 1:
            notes.append(
                f"{Path(path).name} holds the label values "
                f"{', '.join(str(int(v)) for v in values)}: all are measured as one {name}"
            )
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(loaded.image)
    return out


def original_geometry_image(
    img: sitk.Image, original: dict[str, Any], *, is_label: bool
) -> sitk.Image:
    """Bring an identity-direction LPS image back onto its original geometry for export.

    Parameters
    ----------
    img : SimpleITK.Image
        The image as loaded (identity direction).
    original : dict
        Its original geometry (:attr:`LoadedImage.original_geometry`).
    is_label : bool
        Resample with nearest neighbour (labels) instead of linear interpolation.

    Returns
    -------
    SimpleITK.Image
        ``img`` itself when the grids already match (a permutation or flip was undone
        without resampling), else ``img`` resampled onto the original grid.
    """
    ref = sitk.Image([int(s) for s in original["size"]], img.GetPixelID())
    geometry.apply_geometry(ref, original)
    if geometry.same_grid(ref, img):
        return img
    interp = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    return sitk.Resample(img, ref, sitk.Transform(), interp, 0.0, img.GetPixelID())
