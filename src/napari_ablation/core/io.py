"""Reading images and DICOM series, writing files atomically.

Everything that reads returns images in identity-direction LPS (see ``geometry``) and
raises :class:`~napari_ablation.core.errors.AblationError` with a one-line message on
bad input. Everything that writes goes through :func:`atomic_write` (temporary file in
the same folder, then ``os.replace``), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import SimpleITK as sitk

from . import geometry
from .errors import AblationError

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
    name = Path(path).name.lower()
    for suf in IMAGE_SUFFIXES:
        if name.endswith(suf):
            return suf
    return Path(path).suffix.lower()


def is_image_file(path: str | os.PathLike) -> bool:
    return path_suffix(path) in IMAGE_SUFFIXES


# --------------------------------------------------------------------------------------
# atomic writing


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary name keeps the suffix of ``path`` so that writers choosing the format
    from the extension (SimpleITK) still work. On any exception the temporary file is
    removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = path_suffix(target) or target.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_image_atomic(img: sitk.Image, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write a SimpleITK image (format from the extension) atomically."""
    suffix = path_suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        raise AblationError(f"cannot write '{Path(path).name}': use one of {', '.join(LABEL_WRITE_SUFFIXES)}")
    try:
        with atomic_write(path) as tmp:
            sitk.WriteImage(img, str(tmp), compress and suffix != ".nii")
    except RuntimeError as exc:
        raise AblationError(f"could not write {path}: {str(exc).strip().splitlines()[-1]}") from None
    return Path(path)


# --------------------------------------------------------------------------------------
# DICOM


@dataclass
class SeriesInfo:
    """One DICOM series found in a folder."""

    uid: str
    description: str
    modality: str
    size: tuple[int, int, int]  # (x, y, z)
    spacing: tuple[float, float, float]  # (x, y, z); z from slice positions
    files: list[str] = field(repr=False, default_factory=list)
    problem: str | None = None  # missing slices, uneven spacing, mixed orientation

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.size))

    def summary(self) -> str:
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
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


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
            if low.endswith(IMAGE_SUFFIXES) or low.endswith((".txt", ".json", ".csv", ".tfm", ".png", ".jpg")):
                continue
            files.append(p)
    return sorted(files)


def list_dicom_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """All DICOM image series below ``folder`` (largest first)."""
    folder = Path(folder)
    if not folder.exists():
        raise AblationError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise AblationError(f"{folder}: not a folder")
    groups: dict[str, list[tuple[sitk.ImageFileReader, str]]] = defaultdict(list)
    for path in _dicom_candidates(folder):
        reader = _read_header(path)
        if reader is None or not reader.HasMetaDataKey(_SERIES_UID):
            continue
        groups[_tag(reader, _SERIES_UID)].append((reader, path))
    series = [_series_info(uid, members) for uid, members in groups.items()]
    series.sort(key=lambda s: s.n_voxels, reverse=True)
    return series


def _series_info(uid: str, members: list[tuple[sitk.ImageFileReader, str]]) -> SeriesInfo:
    first = members[0][0]
    desc = _tag(first, _SERIES_DESC)
    modality = _tag(first, _MODALITY, "OT")
    iop = _floats(_tag(first, _IOP))
    sx, sy = first.GetSize()[0], first.GetSize()[1]
    nframes = first.GetSize()[2] if first.GetDimension() == 3 else 1
    px = _floats(_tag(first, _PIXEL_SPACING)) or list(first.GetSpacing()[:2])
    spacing_xy = (float(px[1]), float(px[0])) if len(px) >= 2 else (1.0, 1.0)
    problem = None
    files = [p for _r, p in members]
    if len(members) == 1:
        z = float(first.GetSpacing()[2]) if first.GetDimension() == 3 else 1.0
        return SeriesInfo(uid, desc, modality, (sx, sy, max(1, nframes)), (*spacing_xy, z), files)
    if len(iop) != 6:
        iop = [1, 0, 0, 0, 1, 0]
    normal = np.cross(iop[:3], iop[3:])
    positions = []
    orientations = set()
    for reader, path in members:
        ipp = _floats(_tag(reader, _IPP))
        orientations.add(tuple(np.round(_floats(_tag(reader, _IOP)) or [0] * 6, 4)))
        positions.append((float(np.dot(ipp, normal)) if len(ipp) == 3 else float("nan"), path))
    positions.sort()
    files = [p for _z, p in positions]
    z = np.array([p for p, _f in positions])
    spacing_z = 1.0
    if np.all(np.isfinite(z)):
        gaps = np.diff(z)
        if np.any(np.abs(gaps) < 1e-3):
            problem = "duplicate slice positions"
        elif len(gaps):
            med = float(np.median(gaps))
            spacing_z = med
            if np.any(gaps > 1.5 * med):
                n_missing = int(np.round(np.sum(gaps[gaps > 1.5 * med] / med - 1)))
                problem = f"{n_missing} missing slice(s) (gap of {gaps.max():.2f} mm where slices are {med:.2f} mm apart)"
            elif np.max(np.abs(gaps - med)) > max(0.01 * med, 0.01):
                problem = f"uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm)"
    else:
        problem = "slices without a position (ImagePositionPatient)"
    if len(orientations) > 1:
        problem = "slices with different orientations"
    return SeriesInfo(uid, desc, modality, (sx, sy, len(members)), (*spacing_xy, abs(spacing_z)), files, problem)


def read_dicom_series(series: SeriesInfo) -> sitk.Image:
    if series.problem:
        raise AblationError(f"DICOM series '{series.description or series.uid}' has {series.problem}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series.files)
    reader.SetImageIO("GDCMImageIO")
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise AblationError(f"could not read DICOM series '{series.description}': {_itk_reason(exc)}") from None
    return img


def _itk_reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.lower().startswith("description:"):
            return ln.split(":", 1)[1].strip()
    return lines[-1] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------
# images


@dataclass
class LoadedImage:
    """An image in identity-direction LPS, with where it came from."""

    image: sitk.Image
    source: str
    original_geometry: dict[str, Any]
    modality: str = ""  # "CT", "MR", ... when known
    description: str = ""
    notes: list[str] = field(default_factory=list)
    series: list[SeriesInfo] = field(default_factory=list)  # for DICOM folders: all series found

    @property
    def array(self) -> np.ndarray:
        return sitk.GetArrayFromImage(self.image)

    def metadata(self, role: str = "") -> dict[str, Any]:
        """Layer metadata (JSON-able) keeping the original geometry for export."""
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
            f"{name} has {img.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector data), expected a scalar image"
        )
    dim = img.GetDimension()
    if dim == 4:
        raise AblationError(f"{name} is 4D ({'x'.join(map(str, img.GetSize()))}); load one 3D volume")
    if dim == 2 or (require_volume and dim == 3 and min(img.GetSize()) < 2):
        raise AblationError(f"{name} is 2D ({'x'.join(map(str, img.GetSize()))}); a 3D volume is needed")
    if dim != 3:
        raise AblationError(f"{name} is {dim}D; a 3D volume is needed")


def read_image(
    path: str | os.PathLike,
    *,
    series_uid: str | None = None,
    is_label: bool = False,
    require_volume: bool = True,
) -> LoadedImage:
    """Read an image file or DICOM folder and bring it to identity-direction LPS.

    ``path`` may be a NIfTI / NRRD / MHA / MHD file, a single DICOM file, or a folder of
    DICOM files. For a folder holding several series, ``series_uid`` selects one; by
    default the largest 3D series is read and a note names the others.
    """
    p = Path(path)
    if not p.exists():
        raise AblationError(f"{p}: no such file or folder")
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
            usable = [s for s in series if s.size[2] > 1 and not s.problem] or [s for s in series if s.size[2] > 1] or series
            pick = usable[0]
            others = [s for s in series if s is not pick]
            if others:
                notes.append(
                    f"{len(series)} series in folder; loaded the largest 3D one: {pick.summary()}; "
                    f"others: " + "; ".join(s.summary() for s in others)
                )
        img = read_dicom_series(pick)
        modality, description = pick.modality, pick.description
    else:
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(p))
            img = reader.Execute()
        except RuntimeError:
            raise AblationError(f"{p.name}: not a readable image (supported: NIfTI, NRRD, MHA/MHD, DICOM)") from None
        if reader.HasMetaDataKey(_MODALITY):
            modality = reader.GetMetaData(_MODALITY).strip()
        if reader.HasMetaDataKey(_SERIES_DESC):
            description = reader.GetMetaData(_SERIES_DESC).strip()
    _check_volume(img, p.name, require_volume)
    if img.GetDimension() == 2:  # only reachable with require_volume=False
        img = sitk.JoinSeries(img)
    original = geometry.geometry_dict(img)
    if is_label:
        img = _as_label_pixel_type(img)
    oriented, note = geometry.orient_lps(img, is_label=is_label)
    if note:
        notes.append(f"{p.name}: {note}")
    return LoadedImage(oriented, str(p), original, modality or guess_modality(oriented), description, notes, series)


def guess_modality(img: sitk.Image) -> str:
    arr = sitk.GetArrayViewFromImage(img)
    if arr.size == 0:
        return ""
    lo = float(np.percentile(arr[:: max(1, arr.shape[0] // 8)], 1))
    return "CT" if lo < -500 else "MR"


def _as_label_pixel_type(img: sitk.Image) -> sitk.Image:
    arr = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.allclose(arr, np.round(arr)):
            raise AblationError("label image has non-integer values; expected a segmentation")
        out = sitk.Cast(img, sitk.sitkInt32)
        return out
    return img


def read_labels(
    path: str | os.PathLike,
    *,
    label: int | None = None,
    name: str = "labels",
) -> sitk.Image:
    """Read a segmentation as a binary ``uint8`` mask in identity-direction LPS.

    Any non-zero voxel is foreground unless ``label`` selects one value.
    """
    loaded = read_image(path, is_label=True)
    arr = sitk.GetArrayViewFromImage(loaded.image)
    mask = (arr == label) if label is not None else (arr != 0)
    if not mask.any():
        which = f"label {label}" if label is not None else "any non-zero label"
        raise AblationError(f"{name} mask {Path(path).name} is empty (no voxel with {which})")
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(loaded.image)
    return out


def original_geometry_image(img: sitk.Image, original: dict[str, Any], *, is_label: bool) -> sitk.Image:
    """Bring an LPS identity-direction image back onto its original geometry for export."""
    ref = sitk.Image([int(s) for s in original["size"]], img.GetPixelID())
    geometry.apply_geometry(ref, original)
    if geometry.same_grid(ref, img):
        return img
    interp = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    return sitk.Resample(img, ref, sitk.Transform(), interp, 0.0, img.GetPixelID())
