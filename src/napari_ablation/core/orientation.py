"""Radiological display convention, defined once for the viewer and the report.

World axes are ``(z, y, x)`` = (S, P, L) in LPS millimetres (see ``core.geometry``). In
every plane the radiological convention is:

* axial: anterior up, patient right on the screen's left;
* coronal: superior up, patient right on the left;
* sagittal: superior up, anterior on the left.

:func:`screen_directions` says, for the two displayed world axes, which way their
coordinate grows on the screen; :func:`edge_letters` names the patient direction at each
edge of a view (R/L, A/P, S/I).
"""

from __future__ import annotations

from .errors import AblationError

#: patient direction at the low / high end of each world axis (z, y, x) in LPS
LOW_LETTER = ("I", "A", "R")
HIGH_LETTER = ("S", "P", "L")
#: the screen direction in which each world axis grows when it is drawn vertically
VERTICAL = ("up", "down", "down")  # superior up; posterior down; (x vertical: left down)
#: ... and when it is drawn horizontally
HORIZONTAL = ("right", "right", "right")  # posterior right (anterior left); left right


def _check(displayed) -> tuple[int, int]:
    v, h = (int(a) for a in displayed)
    if {v, h} - {0, 1, 2} or v == h:
        raise AblationError(
            f"displayed axes {tuple(displayed)} are not two of the world axes (0, 1, 2)"
        )
    return v, h


def screen_directions(displayed) -> tuple[str, str]:
    """Give the screen directions in which the two displayed world axes grow.

    Parameters
    ----------
    displayed : tuple of int
        The world axes (0 = z/S, 1 = y/P, 2 = x/L) drawn vertically and horizontally.

    Returns
    -------
    tuple of str
        ``(vertical, horizontal)``: ``"up"`` or ``"down"``, ``"left"`` or ``"right"``.

    Raises
    ------
    AblationError
        When ``displayed`` is not two different world axes.

    Examples
    --------
    The axial view (y vertical, x horizontal): posterior down, patient left right.

    >>> screen_directions((1, 2))
    ('down', 'right')
    """
    v, h = _check(displayed)
    return VERTICAL[v], HORIZONTAL[h]


def edge_letters(displayed, directions) -> dict[str, str]:
    """Name the patient direction at each edge of a 2D view.

    Parameters
    ----------
    displayed : tuple of int
        The world axes drawn vertically and horizontally.
    directions : tuple of str
        ``(vertical, horizontal)`` growth directions on the screen (e.g. from the camera).

    Returns
    -------
    dict of str to str
        ``{"top", "bottom", "left", "right"}`` -> one of R, L, A, P, S, I.

    Raises
    ------
    AblationError
        When ``displayed`` is not two different world axes.

    Examples
    --------
    >>> edge_letters((1, 2), ("down", "right"))
    {'top': 'A', 'bottom': 'P', 'left': 'R', 'right': 'L'}
    """
    v, h = _check(displayed)
    vdir, hdir = (str(getattr(d, "value", d)) for d in directions)
    top, bottom = (
        (HIGH_LETTER[v], LOW_LETTER[v]) if vdir == "up" else (LOW_LETTER[v], HIGH_LETTER[v])
    )
    left, right = (
        (LOW_LETTER[h], HIGH_LETTER[h]) if hdir == "right" else (HIGH_LETTER[h], LOW_LETTER[h])
    )
    return {"top": top, "bottom": bottom, "left": left, "right": right}
