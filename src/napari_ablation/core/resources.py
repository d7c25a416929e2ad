"""Check what a request costs before the work starts.

The costs are the memory of a margin analysis and the size of a whole-image
registration.
A file whose spacing was shrunk 100 times asks the margin analysis for crops of a
billion voxels (the peri-tumoral shells are padded in mm); a 512 x 512 x 600 pair asks
a whole-image registration for hours at full resolution. Both are refused or bounded
here, in one line, instead of running out of memory or time.
"""

from __future__ import annotations

import math
import os

import numpy as np
import SimpleITK as sitk

from .errors import AblationError

#: bytes per voxel of the margin analysis's largest crop, counted from the arrays the
#: shell crop holds (uint8 mask 1, float32 EDT 4, bool 1; per candidate point an int64
#: index 24, a float64 point 24, a distance 8, a flag 1: 63), rounded up
MARGIN_BYTES_PER_VOXEL = 72
#: finest registration level of a whole-image registration holds at most this many voxels
MAX_REGISTRATION_VOXELS = 4_000_000
#: fraction of the available memory a request may use
MEMORY_FRACTION = 0.8


def available_memory_bytes() -> int | None:
    """Return the memory available to a new allocation.

    Returns
    -------
    int or None
        Bytes available (``MemAvailable`` of ``/proc/meminfo`` on Linux, else the
        available physical pages), ``None`` when the system does not tell.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _bbox_size(mask: sitk.Image) -> np.ndarray | None:
    arr = sitk.GetArrayViewFromImage(mask)
    nz = [np.flatnonzero(arr.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    if any(len(v) == 0 for v in nz):
        return None
    return np.array([v[-1] - v[0] + 1 for v in nz], dtype=float)  # (z, y, x)


def margin_memory_bytes(tumor: sitk.Image, ablation: sitk.Image, pad_mm: float) -> int:
    """Estimate the peak memory of a margin analysis of two masks.

    Parameters
    ----------
    tumor : SimpleITK.Image
        Binary tumor mask on its grid.
    ablation : SimpleITK.Image
        Binary ablation-zone mask on its grid.
    pad_mm : float
        The largest distance around the tumor the analysis looks at (the widest
        shell), in mm.

    Returns
    -------
    int
        Estimated peak memory in bytes (:data:`MARGIN_BYTES_PER_VOXEL` per voxel of
        each padded crop; thick-slice ablation grids count their in-plane refinement).

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> mask = sitk.Image(20, 20, 20, sitk.sitkUInt8)
    >>> mask[10, 10, 10] = 1
    >>> margin_memory_bytes(mask, mask, pad_mm=0.0)  # two crops of 9 x 9 x 9 voxels
    104976
    """
    total = 0.0
    for img in (tumor, ablation):
        box = _bbox_size(img)
        if box is None:
            continue
        sp = np.asarray(img.GetSpacing(), dtype=float)[::-1]
        crop = box + 2 * (np.ceil(pad_mm / sp) + 4)
        # thick slices are reconstructed on a grid refined to the in-plane spacing
        refine = max(1.0, float(sp.max() / sp.min()))
        total += (
            float(np.prod(crop)) * MARGIN_BYTES_PER_VOXEL * (refine if img is ablation else 1.0)
        )
    return int(min(total, 2**62))


def check_memory(n_bytes: int, what: str) -> None:
    """Refuse a request that needs more than :data:`MEMORY_FRACTION` of free memory.

    Parameters
    ----------
    n_bytes : int
        Estimated need, in bytes.
    what : str
        The request, for the message (e.g. ``the margin analysis``).

    Raises
    ------
    AblationError
        If ``n_bytes`` exceeds :data:`MEMORY_FRACTION` of the available memory
        (nothing is checked when the available memory is unknown).

    Examples
    --------
    >>> check_memory(1024, "a small request")
    """
    avail = available_memory_bytes()
    if avail is not None and n_bytes > MEMORY_FRACTION * avail:
        raise AblationError(
            f"{what} would need about {n_bytes / 1e9:.1f} GB of memory and {avail / 1e9:.1f} "
            "GB are available "
            "(check the voxel spacing of the inputs)"
        )


def registration_levels(
    fixed: sitk.Image,
    max_voxels: int = MAX_REGISTRATION_VOXELS,
    shrink=(4, 2, 1),
    sigmas=(2.0, 1.0, 0.0),
) -> tuple[tuple[int, ...], tuple[float, ...], int]:
    """Choose a registration pyramid whose finest level stays below a size.

    Parameters
    ----------
    fixed : SimpleITK.Image
        The fixed image (or the part of it the metric uses).
    max_voxels : int, optional
        Most voxels at the finest level.
    shrink : tuple of int, optional
        Shrink factors of the pyramid levels for an image that is small enough.
    sigmas : tuple of float, optional
        Smoothing sigmas (voxels) of those levels.

    Returns
    -------
    shrink_factors : tuple of int
        ``shrink`` multiplied by the extra factor.
    smoothing_sigmas : tuple of float
        ``sigmas`` multiplied by the extra factor, in voxels.
    extra : int
        The extra subsampling factor, 1 when nothing was subsampled.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> registration_levels(sitk.Image(400, 400, 200, sitk.sitkFloat32))
    ((8, 4, 2), (4.0, 2.0, 0.0), 2)
    """
    n = float(np.prod(fixed.GetSize()))
    extra = max(1, math.ceil((n / max_voxels) ** (1 / 3))) if n > max_voxels else 1
    return (tuple(int(f * extra) for f in shrink), tuple(float(s * extra) for s in sigmas), extra)
