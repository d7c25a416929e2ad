"""Coverage classes of the margin analysis: keys, label values, colours and names, once.

Every place that shows or writes a coverage class (the margin Labels layer, the margin
widget's legend, the report's legend and verdict colour, the CSV/JSON keys) imports them
from here (docs/design.md, section 4: ``green`` m >= t, ``yellow`` 0 <= m < t, ``red`` m < 0).
"""

from __future__ import annotations

import math

from .errors import AblationError

#: JSON / CSV keys of the three classes, in display order
CLASS_KEYS = ("covered_with_margin", "insufficient_margin", "uncovered")
#: label value of each class in the margin Labels layer (0 = not tumor)
CLASS_LABELS = {"covered_with_margin": 1, "insufficient_margin": 2, "uncovered": 3}
#: short colour name of each class (the quiz key's ``coverage_class`` values)
CLASS_COLOR_NAMES = {
    "covered_with_margin": "green",
    "insufficient_margin": "yellow",
    "uncovered": "red",
}
#: RGB hex of each class (fills: Labels layer, legends, report)
CLASS_COLORS = {
    "covered_with_margin": "#2ca02c",
    "insufficient_margin": "#ffd700",
    "uncovered": "#d62728",
}
#: text colour of a verdict in this class (yellow fill is unreadable as text on white)
CLASS_TEXT_COLORS = {
    "covered_with_margin": "#2ca02c",
    "insufficient_margin": "#b8860b",
    "uncovered": "#d62728",
}
#: plain names, without a threshold
CLASS_NAMES = {
    "covered_with_margin": "covered with margin",
    "insufficient_margin": "insufficient margin",
    "uncovered": "not covered",
}

#: the fourth class of the margin layer (issue 11): tumor voxels whose class changes in
#: more than 5 % of the uncertainty samples (registration and segmentation error)
UNCERTAIN_KEY = "uncertain"
UNCERTAIN_LABEL = 4
#: Okabe-Ito blue: it stays blue under deuteranopia and protanopia (carried by the S
#: cones), where green and red both turn olive-brown, and it is far darker than the
#: yellow class; see README "Uncertainty" for the simulated colour distances
UNCERTAIN_COLOR = "#0072b2"
#: its legend title, on screen and in the report
UNCERTAIN_NAME = "uncertain: class changes in > 5 % of samples"

#: colours of the two structures (tumor drawn on pre, ablation zone drawn on post)
STRUCTURE_COLORS = {"tumor": "#ff8c00", "ablation": "#00c8ff"}  # orange, cyan

#: label value -> colour / name (for a Labels colormap and its legend)
LABEL_COLORS = {CLASS_LABELS[k]: CLASS_COLORS[k] for k in CLASS_KEYS}
LABEL_NAMES = {CLASS_LABELS[k]: CLASS_NAMES[k] for k in CLASS_KEYS}
#: label value -> colour of every class the margin layer can hold (the uncertain one too)
MARGIN_LAYER_COLORS = {**LABEL_COLORS, UNCERTAIN_LABEL: UNCERTAIN_COLOR}


def class_of_margin(margin_mm: float, threshold_mm: float) -> str:
    """Return the coverage class key of one margin value.

    Parameters
    ----------
    margin_mm : float
        Signed margin (mm), positive inside the ablation zone.
    threshold_mm : float
        The margin required (mm).

    Returns
    -------
    str
        One of :data:`CLASS_KEYS`.
    """
    if margin_mm < 0.0:
        return "uncovered"
    if margin_mm < threshold_mm:
        return "insufficient_margin"
    return "covered_with_margin"


#: the smallest margin threshold (mm): below it the classes overlap (see check_threshold)
THRESHOLD_MIN_MM = 0.0
#: the largest margin threshold (mm): intended margins are 5-10 mm (A0 > 10 mm); beyond
#: 30 mm a threshold is a typing error, not a margin requirement (see check_threshold)
THRESHOLD_MAX_MM = 30.0
#: the accepted thresholds, in words (the messages of every entry point)
THRESHOLD_RULE = (
    f"a finite number of mm, {THRESHOLD_MIN_MM:g} or more and at most {THRESHOLD_MAX_MM:g}"
)


def check_threshold(threshold_mm) -> float:
    """Return the margin threshold in mm, refusing one outside the accepted range.

    The three classes partition the tumor only when ``t >= 0``: ``green`` (m >= t) is
    "covered with margin", so it must lie inside the ablation zone (m >= 0), where
    ``red`` (m < 0) is not; with ``t < 0`` a voxel with ``t <= m < 0`` would be both.
    Above :data:`THRESHOLD_MAX_MM` (30 mm) no clinical margin requirement lies (intended
    margins are 5-10 mm), so a larger value is a typing error (``1e9`` would call every
    covered voxel "insufficient"). Every entry point (the analysis, the case model,
    ``case.json``, the CLI, the quiz and cohort runs, the widgets' spin boxes) uses this
    one range.

    Parameters
    ----------
    threshold_mm : float
        The margin required (mm).

    Returns
    -------
    float
        The threshold, as a float.

    Raises
    ------
    AblationError
        If the threshold is not a finite number of mm from :data:`THRESHOLD_MIN_MM` to
        :data:`THRESHOLD_MAX_MM`.

    Examples
    --------
    >>> check_threshold(5)
    5.0
    """
    try:
        t = float(threshold_mm)
    except (TypeError, ValueError):
        t = math.nan
    if (
        isinstance(threshold_mm, bool)
        or not math.isfinite(t)
        or not THRESHOLD_MIN_MM <= t <= THRESHOLD_MAX_MM
    ):
        raise AblationError(f"the margin threshold must be {THRESHOLD_RULE} (got {threshold_mm!r})")
    return t


def class_title(key: str, threshold_mm: float) -> str:
    """Return the name of a class for a threshold, e.g. ``"with margin >= 5 mm"``.

    Parameters
    ----------
    key : str
        One of :data:`CLASS_KEYS`.
    threshold_mm : float
        The threshold (mm) the class is defined with.

    Returns
    -------
    str
        A short title (ASCII ``>=``).
    """
    if key == "covered_with_margin":
        return f"with margin >= {threshold_mm:g} mm"
    if key == "insufficient_margin":
        return f"covered, margin < {threshold_mm:g} mm"
    return "not covered"


def legend_entries(threshold_mm: float, uncertain: bool = False) -> list[tuple[int, str, str]]:
    """Return the legend of the margin classes, the same on screen and in the report.

    Parameters
    ----------
    threshold_mm : float
        The threshold (mm) the classes are defined with.
    uncertain : bool, default False
        Whether the uncertain class is shown (an MTM interval is known).

    Returns
    -------
    list of tuple
        ``(label value, "#rrggbb", title)`` of each class in display order: the three
        coverage classes (:func:`class_title`), then :data:`UNCERTAIN_NAME` when
        ``uncertain``.
    """
    out = [(CLASS_LABELS[k], CLASS_COLORS[k], class_title(k, threshold_mm)) for k in CLASS_KEYS]
    if uncertain:
        out.append((UNCERTAIN_LABEL, UNCERTAIN_COLOR, UNCERTAIN_NAME))
    return out


def hex_to_rgb(color: str) -> tuple[float, float, float]:
    """Convert a ``"#rrggbb"`` colour to matplotlib's ``(r, g, b)`` in 0..1.

    Parameters
    ----------
    color : str
        The colour, ``"#rrggbb"``.

    Returns
    -------
    tuple of float
        Red, green and blue in 0..1.

    Examples
    --------
    >>> hex_to_rgb("#ff8000")
    (1.0, 0.5019607843137255, 0.0)
    """
    c = color.lstrip("#")
    return tuple(int(c[i : i + 2], 16) / 255.0 for i in (0, 2, 4))


def verdict_color(margin_mm: float, threshold_mm: float) -> str:
    """Return the text colour that shows an MTM's class: red, dark yellow or green.

    Parameters
    ----------
    margin_mm : float
        The MTM (mm).
    threshold_mm : float
        The margin threshold (mm).

    Returns
    -------
    str
        The colour, ``"#rrggbb"`` (from :data:`CLASS_TEXT_COLORS`).
    """
    return CLASS_TEXT_COLORS[class_of_margin(margin_mm, threshold_mm)]
