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
    return (level - width / 2.0, level + width / 2.0)


def robust_limits(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Percentile limits of the non-background voxels (subsampled for speed)."""
    arr = np.asarray(array)
    step = max(1, int(round((arr.size / 2_000_000) ** (1 / 3))))
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
    """Abdomen window for CT, robust percentiles for MR and anything else."""
    if str(modality).upper() == "CT":
        return window_limits(*CT_WINDOWS["abdomen"])
    return robust_limits(array)
