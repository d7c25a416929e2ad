"""Display contrast: CT window presets and robust MR limits."""

from __future__ import annotations

import numpy as np

#: CT windows as (width, level) in HU
CT_WINDOWS = {
    "abdomen": (400.0, 40.0),
    "liver": (150.0, 70.0),
    "bone": (1800.0, 400.0),
}


def window_limits(width: float, level: float) -> tuple[float, float]:
    """Compute the display limits of a CT window.

    Parameters
    ----------
    width : float
        Window width, in the image's units (Hounsfield units for CT).
    level : float
        Window level (centre), in the same units.

    Returns
    -------
    tuple of float
        ``(low, high)`` contrast limits, ``level -/+ width / 2``.

    Examples
    --------
    >>> window_limits(*CT_WINDOWS["abdomen"])
    (-160.0, 240.0)
    """
    return (level - width / 2.0, level + width / 2.0)


def robust_limits(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Compute percentile contrast limits of the non-background voxels.

    Voxels equal to the image minimum (the background of most scans) are left out
    when more than 100 others remain; large volumes are subsampled on a regular
    grid (about two million voxels) for speed. Non-finite values are ignored.

    Parameters
    ----------
    array : numpy.ndarray
        Image intensities, any shape (3D arrays are subsampled).
    low, high : float, optional
        Lower and upper percentiles (default 0.5 and 99.5).

    Returns
    -------
    tuple of float
        ``(low, high)`` contrast limits with ``high > low``; ``(0.0, 1.0)`` when the
        array holds no finite value.
    """
    arr = np.asarray(array)
    step = max(1, round((arr.size / 2_000_000) ** (1 / 3)))
    sample = arr[::step, ::step, ::step] if arr.ndim == 3 else arr
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0)
    fg = sample[sample > sample.min()]
    if fg.size > 100:
        sample = fg
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return (float(lo), float(hi))


def default_contrast(array: np.ndarray, modality: str = "") -> tuple[float, float]:
    """Choose the default contrast limits for an image of a given modality.

    Parameters
    ----------
    array : numpy.ndarray
        Image intensities.
    modality : str, optional
        DICOM modality code; ``"CT"`` (any case) selects the abdomen window.

    Returns
    -------
    tuple of float
        The abdomen window (W 400 / L 40 HU) for CT, :func:`robust_limits` for MR
        and anything else.
    """
    if str(modality).upper() == "CT":
        return window_limits(*CT_WINDOWS["abdomen"])
    return robust_limits(array)
