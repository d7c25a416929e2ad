"""One-page margin report (HTML, PDF) and figure rendering, headless (matplotlib Agg).

The same :class:`~napari_ablation.core.margin.MarginResult` feeds the CLI, the widget and
this report, so every number agrees. Slice pictures are rendered from arrays with
matplotlib (no display needed): axial, coronal and sagittal planes through the minimal
margin point, pre image in grey (when given), coverage classes in green/yellow/red, the
ablation zone in pre space as a cyan outline (its legend says whether it was registered),
the MTM point as a cross; with an MTM interval the uncertain class in blue, as on screen
(:func:`~napari_ablation.core.coverage.legend_entries`).
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from . import coverage, orientation
from .case import qa_text as case_qa_text
from .errors import AblationError
from .io import write_bytes_atomic, write_text_atomic

#: class label -> RGB and the structures' colours, from the one definition in core.coverage
CLASS_RGB = {k: coverage.hex_to_rgb(c) for k, c in coverage.MARGIN_LAYER_COLORS.items()}
ABLATION_RGB = coverage.hex_to_rgb(coverage.STRUCTURE_COLORS["ablation"])
TUMOR_RGB = coverage.hex_to_rgb(coverage.STRUCTURE_COLORS["tumor"])
#: the legend entry of the ablation zone's outline, registered or not (the identity: UAT s12 N6)
ABLATION_LEGEND = "ablation zone (registered)"
ABLATION_LEGEND_IDENTITY = "ablation zone (not registered: identity)"


def ablation_legend(res) -> str:
    """Return the legend entry of the ablation zone's outline.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).

    Returns
    -------
    str
        :data:`ABLATION_LEGEND`, or :data:`ABLATION_LEGEND_IDENTITY` when ``res`` was
        computed without a registration.
    """
    return ABLATION_LEGEND if res.registered else ABLATION_LEGEND_IDENTITY


def _figure(*args, **kw):
    from matplotlib.figure import Figure

    return Figure(*args, **kw)


def _png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


# ----------------------------------------------------------------------------- figures


def plot_histogram(res, ax=None, fig=None):
    """Plot the area-weighted histogram and cumulative curve of the tumor-surface margins.

    Bars are coloured by coverage class (red < 0 mm, yellow < threshold, green); vertical
    lines mark 0 mm, the threshold and the MTM.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    ax : matplotlib.axes.Axes, optional
        The axes to draw into; default a new figure with one axes.
    fig : matplotlib.figure.Figure, optional
        The figure to add the axes to when ``ax`` is not given (default a new one); returned
        as is when ``ax`` is given.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig``: the figure drawn into (``None`` if ``ax`` was given without ``fig``).
    """
    if ax is None:
        fig = fig or _figure(figsize=(5.2, 3.0))
        ax = fig.add_subplot(1, 1, 1)
    edges = res.histogram_edges_mm
    w = np.diff(edges)
    centers = edges[:-1] + w / 2
    t = res.threshold_mm
    colors = [CLASS_RGB[3] if c < 0 else CLASS_RGB[2] if c < t else CLASS_RGB[1] for c in centers]
    ax.bar(centers, 100 * res.histogram_fraction, width=w * 0.95, color=colors, edgecolor="none")
    ax.set_xlabel("margin on the tumor surface (mm)")
    ax.set_ylabel("% of tumor surface")
    ax2 = ax.twinx()
    x, cum = res.cumulative_curve()
    ax2.plot(x, 100 * cum, color="k", lw=1.5)
    ax2.set_ylabel("% of surface with margin \u2265 x", fontsize=8)
    ax2.set_ylim(0, 102)
    for xv, style in ((0.0, "-"), (t, "--")):
        ax.axvline(xv, color="0.3", ls=style, lw=0.8)
    ax.axvline(
        res.min_margin_mm, color=CLASS_RGB[3] if res.min_margin_mm < 0 else "k", ls=":", lw=1.2
    )
    ax.set_title(f"{res.margin_text()}; threshold {t:g} mm", fontsize=9)
    return fig


def mtm_slices(res, point_lps=None) -> tuple[tuple[int, int, int], str]:
    """Choose the pre-grid slices that show the MTM point: the nearest ones holding tumor.

    The MTM point lies on the sub-voxel tumor surface, up to half a slice beyond the last
    labelled slice; the slice through it may then hold no tumor voxel and no margin colour.
    Along each axis the slice through the point is kept when it holds tumor voxels, else
    the nearest slice that does is taken. The one rule for the report's panels and the
    viewer's *Go to MTM* and the quiz reveal.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    point_lps : sequence of float, optional
        The point to show (LPS mm); default the analysis's MTM point (a quiz key's exact
        MTM point is another).

    Returns
    -------
    index : tuple of int
        The pre-grid voxel ``(z, y, x)`` whose axial, coronal and sagittal slices to show.
    note : str
        ``""`` when the MTM point lies within the shown axial slice, else e.g.
        ``"MTM point between slices, 1.6 mm above"`` (superior of the shown slice's centre).
    """
    point = res.min_margin_point_lps if point_lps is None else point_lps
    return nearest_tumor_slices(
        np.asarray(res.class_crop) != 0, res.pre_reference, point, res.class_offset
    )


def nearest_tumor_slices(
    mask, grid: sitk.Image, point_lps, offset=(0, 0, 0)
) -> tuple[tuple[int, int, int], str]:
    """Choose the slices of ``grid`` nearest a point that hold tumor voxels.

    Parameters
    ----------
    mask : array of bool, (z, y, x)
        The tumor voxels, a box of ``grid`` starting at ``offset`` (the whole grid by default).
    grid : SimpleITK.Image
        The identity-direction grid the tumor is labelled on.
    point_lps : sequence of float
        The point (LPS mm), e.g. a minimal margin point.
    offset : sequence of int, default (0, 0, 0)
        The ``(z, y, x)`` index of ``mask``'s first voxel in ``grid``.

    Returns
    -------
    index : tuple of int
        The voxel ``(z, y, x)`` of ``grid`` whose axial, coronal and sagittal slices to show:
        along each axis the slice through the point when it holds tumor, else the nearest one
        that does.
    note : str
        ``""`` when the point lies within the shown axial slice, else e.g.
        ``"MTM point between slices, 1.6 mm above"``.
    """
    point = [float(v) for v in point_lps]
    c_zyx = np.asarray(grid.TransformPhysicalPointToContinuousIndex(point))[::-1]
    mask = np.asarray(mask, dtype=bool)
    index = []
    for ax in range(3):
        near = int(np.clip(np.round(c_zyx[ax]), 0, grid.GetSize()[2 - ax] - 1))
        others = tuple(a for a in range(3) if a != ax)
        filled = np.flatnonzero(mask.any(axis=others)) + int(offset[ax])
        if filled.size and near not in filled:
            near = int(filled[np.argmin(np.abs(filled - c_zyx[ax]))])
        index.append(near)
    centre = grid.TransformContinuousIndexToPhysicalPoint([float(i) for i in index[::-1]])
    above = point[2] - centre[2]  # LPS +z is superior (identity-direction grid)
    if abs(above) < grid.GetSpacing()[2] / 2 - 1e-6:
        return tuple(index), ""
    return tuple(index), (
        f"MTM point between slices, {abs(above):.1f} mm {'above' if above > 0 else 'below'}"
    )


def slice_planes(
    res, pre: sitk.Image | None = None, pad_mm: float = 15.0, uncertainty=None
) -> list[dict[str, Any]]:
    """Cut the axial, coronal and sagittal planes through the MTM point.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    pre : SimpleITK.Image, optional
        The pre-ablation image, shown under the classes when it is on the analysis grid
        (otherwise left out).
    pad_mm : float, default 15.0
        Room around the tumor and ablation zone in the displayed box, in mm.
    uncertainty : MarginUncertainty, optional
        The MTM's interval of ``res``: its uncertain tumor voxels get the uncertain class
        (:data:`~napari_ablation.core.coverage.UNCERTAIN_LABEL`), as in the margin layer.

    Returns
    -------
    list of dict
        One dict per plane (axial, coronal, sagittal): ``name``; ``classes`` (coverage
        class labels), ``ablation`` (registered ablation mask) and ``image`` (pre image or
        ``None``) as 2D arrays; ``extent`` in LPS mm for ``origin="lower"``; ``point`` (the
        MTM point in the plane, mm); ``axes`` (the LPS letters of the column and row axes);
        ``displayed`` (the array axes (z, y, x) shown as rows and columns); ``note`` (for
        the axial plane, where the MTM point lies when it is not on the shown slice: see
        :func:`mtm_slices`, which chooses the slices).
    """
    box = res.display_box(pad_mm)
    ref = res.pre_reference
    sp = np.asarray(ref.GetSpacing())[::-1]  # z, y, x
    labels = (
        res.margin_labels_image() if uncertainty is None else (uncertainty.margin_labels_image(res))
    )
    classes = sitk.GetArrayFromImage(labels)[box]
    ablation = res.ablation_on_pre(box)
    img = None
    if pre is not None:
        from .geometry import same_grid

        if same_grid(pre, ref):
            img = sitk.GetArrayFromImage(pre)[box].astype(np.float32)
    shown, note = mtm_slices(res)  # the nearest slices holding tumor voxels
    local = np.clip(np.asarray(shown) - [s.start for s in box], 0, np.asarray(classes.shape) - 1)
    origin = np.asarray(ref.TransformIndexToPhysicalPoint([int(s.start) for s in box[::-1]]))[::-1]
    p_zyx = np.asarray(res.min_margin_point_lps, dtype=float)[::-1]
    planes = []
    # (name, axis fixed, displayed (row axis, col axis), flip for radiological display)
    for name, ax in (("axial", 0), ("coronal", 1), ("sagittal", 2)):
        sl = [slice(None)] * 3
        sl[ax] = local[ax]
        sl = tuple(sl)
        rows_ax, cols_ax = [a for a in range(3) if a != ax]
        ext_r = (
            origin[rows_ax] - sp[rows_ax] / 2,
            origin[rows_ax] + sp[rows_ax] * (classes.shape[rows_ax] - 0.5),
        )
        ext_c = (
            origin[cols_ax] - sp[cols_ax] / 2,
            origin[cols_ax] + sp[cols_ax] * (classes.shape[cols_ax] - 0.5),
        )
        planes.append(
            {
                "name": name,
                "classes": np.asarray(classes[sl]),
                "ablation": np.asarray(ablation[sl]),
                "image": None if img is None else np.asarray(img[sl]),
                "extent": (ext_c[0], ext_c[1], ext_r[0], ext_r[1]),  # for origin="lower"
                "point": (float(p_zyx[cols_ax]), float(p_zyx[rows_ax])),
                "axes": ("LPS"[::-1][cols_ax], "LPS"[::-1][rows_ax]),
                "displayed": (rows_ax, cols_ax),
                "note": note if ax == 0 else "",
            }
        )
    return planes


#: where the orientation letters go in a slice panel (axes coordinates, alignment)
_LETTER_POS = {
    "top": (0.5, 0.98, "center", "top"),
    "bottom": (0.5, 0.02, "center", "bottom"),
    "left": (0.02, 0.5, "left", "center"),
    "right": (0.98, 0.5, "right", "center"),
}


def plot_slices(
    res, pre: sitk.Image | None = None, axes=None, fig=None, uncertainty=None, legend_ax=None
):
    """Draw the axial, coronal and sagittal slices through the minimal margin point.

    Coverage classes over the pre image (grey, when given), the registered ablation zone as
    an outline, the MTM point as a cross, in radiological display with orientation letters;
    the classes' legend (:func:`plot_slice_legend`) below the panels.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    pre : SimpleITK.Image, optional
        The pre-ablation image, shown in grey when it is on the analysis grid.
    axes : sequence of matplotlib.axes.Axes, optional
        Three axes to draw into; default three new axes in a row.
    fig : matplotlib.figure.Figure, optional
        The figure to add the axes to when ``axes`` is not given (default a new one).
    uncertainty : MarginUncertainty, optional
        The MTM's interval of ``res``: the uncertain class is drawn (blue) and in the legend,
        as on screen.
    legend_ax : matplotlib.axes.Axes, optional
        The axes to draw the legend into when ``axes`` are given (none without it); with
        new axes, a row below them.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig``: the figure drawn into (``None`` if ``axes`` was given without ``fig``).
    """
    planes = slice_planes(res, pre, uncertainty=uncertainty)
    if axes is None:
        fig = fig or _figure(figsize=(9.0, 3.6))
        grid = fig.add_gridspec(2, 3, height_ratios=(1.0, 0.14), hspace=0.45, wspace=0.35)
        axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
        legend_ax = fig.add_subplot(grid[1, :])
    for ax, pl in zip(axes, planes):
        if pl["image"] is not None:
            im = pl["image"]
            lo, hi = np.percentile(im, [1, 99]) if im.size else (0, 1)
            ax.imshow(
                im,
                cmap="gray",
                vmin=lo,
                vmax=hi if hi > lo else lo + 1,
                extent=pl["extent"],
                interpolation="nearest",
                origin="lower",
                aspect="equal",
            )
        else:
            ax.imshow(
                np.zeros_like(pl["classes"], dtype=float),
                cmap="gray",
                vmin=0,
                vmax=1,
                extent=pl["extent"],
                origin="lower",
                aspect="equal",
            )
        rgba = np.zeros(pl["classes"].shape + (4,))
        for k, c in CLASS_RGB.items():
            rgba[pl["classes"] == k] = (*c, 0.75)
        ax.imshow(
            rgba, extent=pl["extent"], interpolation="nearest", origin="lower", aspect="equal"
        )
        if pl["ablation"].any() and not pl["ablation"].all():
            ax.contour(
                pl["ablation"].astype(float),
                levels=[0.5],
                colors=[ABLATION_RGB],
                linewidths=1.2,
                extent=pl["extent"],
                origin="lower",
            )
        ax.plot(*pl["point"], marker="+", color="w", ms=14, mew=2)
        ax.plot(*pl["point"], marker="+", color="k", ms=10, mew=1)
        title = f"{pl['name']} through MTM point"
        if pl["note"]:  # the nearest slice holding tumor, the point beyond it
            title = f"{pl['name']}: nearest tumor slice\n{pl['note']}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"{pl['axes'][0]} (mm)", fontsize=8)
        ax.set_ylabel(f"{pl['axes'][1]} (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
        # radiological display, the same rule as the viewer's (core.orientation)
        vdir, hdir = orientation.screen_directions(pl["displayed"])
        if vdir == "down":
            ax.invert_yaxis()
        if hdir == "left":
            ax.invert_xaxis()
        letters = orientation.edge_letters(pl["displayed"], (vdir, hdir))
        for edge, (x, y, ha, va) in _LETTER_POS.items():
            ax.text(
                x,
                y,
                letters[edge],
                transform=ax.transAxes,
                ha=ha,
                va=va,
                fontsize=8,
                weight="bold",
                color="#ffff66",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "edgecolor": "none"},
            )
    if legend_ax is not None:
        plot_slice_legend(
            legend_ax,
            res.threshold_mm,
            uncertain=uncertainty is not None,
            ablation=ablation_legend(res),
        )
    return fig


def plot_slice_legend(
    ax, threshold_mm: float, uncertain: bool = False, ablation: str = ABLATION_LEGEND
) -> None:
    """Draw the slice panels' legend, the screen's classes (:func:`coverage.legend_entries`).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        An axes of its own (a row below the panels); its frame is hidden.
    threshold_mm : float
        The threshold the classes are defined with (mm).
    uncertain : bool, default False
        Whether the panels show the uncertain class.
    ablation : str, default :data:`ABLATION_LEGEND`
        The ablation zone outline's entry (:func:`ablation_legend`).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    entries = coverage.legend_entries(threshold_mm, uncertain=uncertain)
    handles = [Patch(facecolor=(*CLASS_RGB[k], 0.75), label=title) for k, _c, title in entries]
    handles.append(Line2D([], [], color=ABLATION_RGB, lw=1.2, label=ablation))
    ax.set_axis_off()
    ax.legend(
        handles=handles,
        loc="center",
        ncol=3,
        fontsize=7,
        frameon=False,
        handlelength=1.2,
        columnspacing=1.2,
    )


def plot_surface_3d(res, ax=None, fig=None, max_faces: int = 6000):
    """Draw a static 3D view looking at the minimal margin point.

    The tumor surface coloured by margin (red < 0, yellow < threshold, green), the ablation
    zone as a faint shell, the minimal margin point and its MTM over both.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    ax : mpl_toolkits.mplot3d.axes3d.Axes3D, optional
        The 3D axes to draw into; default a new figure with one 3D axes.
    fig : matplotlib.figure.Figure, optional
        The figure to add the axes to when ``ax`` is not given (default a new one).
    max_faces : int, default 6000
        Most tumor-surface faces drawn (evenly subsampled); the ablation shell gets half.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig``: the figure drawn into (``None`` if ``ax`` was given without ``fig``).
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.ticker import MaxNLocator
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    if ax is None:
        fig = fig or _figure(figsize=(4.0, 4.0))
        ax = fig.add_subplot(1, 1, 1, projection="3d")
    ts = res.tumor_surface
    faces = ts.faces
    if len(faces) > max_faces:
        faces = faces[np.linspace(0, len(faces) - 1, max_faces).astype(int)]
    m = res.surface_margin_mm[faces].mean(axis=1)
    t = res.threshold_mm
    cmap = ListedColormap([CLASS_RGB[3], CLASS_RGB[2], CLASS_RGB[1]])
    norm = BoundaryNorm([-1e9, 0.0, t, 1e9], 3)
    poly = Poly3DCollection(ts.verts[faces], facecolors=cmap(norm(m)), edgecolors="none", alpha=1.0)
    ax.add_collection3d(poly)
    a = res.ablation_surface
    af = a.faces[np.linspace(0, len(a.faces) - 1, min(len(a.faces), max_faces // 2)).astype(int)]
    ax.add_collection3d(
        Poly3DCollection(a.verts[af], facecolors=(*ABLATION_RGB, 0.06), edgecolors="none")
    )
    lo, hi = a.verts.min(axis=0), a.verts.max(axis=0)
    lo, hi = np.minimum(lo, ts.verts.min(axis=0)), np.maximum(hi, ts.verts.max(axis=0))
    c, r = (lo + hi) / 2, float((hi - lo).max()) / 2
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)
    ax.set_zlim(c[2] - r, c[2] + r)
    ax.set_box_aspect((1, 1, 1))
    # the minimal margin point and its label over the surfaces (drawn in this order, not
    # sorted by depth: the view looks at the point from outside, so nothing is in front of it)
    ax.computed_zorder = False
    poly.set_zorder(1)
    ax.collections[-1].set_zorder(2)
    p = [float(v) for v in res.min_margin_point_lps]
    ax.scatter(
        *p,
        facecolor="white",
        edgecolor="k",
        s=70,
        marker="X",
        linewidth=1.0,
        zorder=3,
        depthshade=False,
    )
    d = np.asarray(res.min_margin_point_lps) - res.tumor_centroid_lps
    ax.view_init(
        elev=float(np.degrees(np.arctan2(d[2], np.hypot(d[0], d[1])))),
        azim=float(np.degrees(np.arctan2(d[1], d[0]))),
    )
    from mpl_toolkits.mplot3d import proj3d

    x2, y2, _ = proj3d.proj_transform(*p, ax.get_proj())
    ax.annotate(
        f"MTM {res.min_margin_mm:.1f} mm",
        xy=(x2, y2),
        xytext=(7, 7),
        textcoords="offset points",
        fontsize=8,
        zorder=4,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0},
    )
    ax.set_xlabel("L (mm)", fontsize=7)
    ax.set_ylabel("P (mm)", fontsize=7)
    ax.set_zlabel("S (mm)", fontsize=7)
    ax.tick_params(labelsize=6)
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))
    ax.set_title("tumor surface by margin, seen from the MTM side", fontsize=9, pad=22)
    return fig


# ----------------------------------------------------------------------------- HTML


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _esc(v: Any) -> str:
    return html.escape(str(v))


def html_report(
    res,
    *,
    info: dict[str, Any] | None = None,
    qa: dict[str, Any] | None = None,
    pre: sitk.Image | None = None,
    screenshot_png: bytes | None = None,
    transform_note: str | None = None,
    uncertainty=None,
) -> str:
    """Render the report as a self-contained HTML string (figures embedded).

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    info : dict, optional
        Case information shown as rows (empty values left out).
    qa : dict, optional
        Registration QA: ``verdict`` and ``comment`` (and ``earlier``: a verdict recorded
        for an earlier registration, see :func:`~napari_ablation.core.case.qa_for_transform`).
    pre : SimpleITK.Image, optional
        The pre-ablation image, shown in grey under the slices when on the analysis grid.
    screenshot_png : bytes, optional
        A PNG of the 3D view; default a rendered static 3D view (:func:`plot_surface_3d`).
    transform_note : str, optional
        A line describing the registration.
    uncertainty : MarginUncertainty, optional
        The MTM's interval (:class:`~napari_ablation.core.uncertainty.MarginUncertainty`):
        adds the interval, its sources and a histogram of the sampled MTMs.

    Returns
    -------
    str
        The HTML document.
    """
    info = dict(info or {})
    qa = dict(qa or {})
    hist = _png(plot_histogram(res))
    slices = _png(plot_slices(res, pre, uncertainty=uncertainty))
    mm = res.min_margin_mm
    verdict_color = coverage.verdict_color(mm, res.threshold_mm)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = "".join(
        f"<tr><td>{_esc(a)}</td><td class=v>{_esc(b)}</td><td>{_esc(c)}</td></tr>"
        for a, b, c in figure_rows(res, uncertainty)
    )
    info_rows = "".join(
        f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>"
        for k, v in info.items()
        if v not in (None, "")
    )
    qa_text = _esc(case_qa_text(qa))
    if qa.get("earlier"):
        qa_text = f'<b style="color:#b00">{qa_text}</b>'
    warn = "".join(f"<li>{_esc(w)}</li>" for w in res.warnings)
    if screenshot_png is None:
        screenshot_png = _png(plot_surface_3d(res), dpi=90)
    shot = f'<img class=fig src="{_b64(screenshot_png)}" alt="3D view" style="max-width:360px">'
    legend = "\n".join(
        f'<span style="background:{color}"></span>{_esc(title)}'
        for color, title in [
            (c, t)
            for _k, c, t in coverage.legend_entries(res.threshold_mm, uncertainty is not None)
        ]
        + [(coverage.STRUCTURE_COLORS["ablation"], ablation_legend(res))]
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Ablation margin report</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 18px; color: #222; \
font-size: 12px; max-width: 1000px; }}
h1 {{ font-size: 18px; margin: 0 0 4px 0; }} h2 {{ font-size: 13px; margin: 10px 0 4px 0; }}
.big {{ font-size: 22px; font-weight: bold; color: {verdict_color}; }}
table {{ border-collapse: collapse; }} td {{ padding: 1px 8px 1px 0; vertical-align: top; }}\
 td.v {{ text-align: right; font-family: monospace; }}
.cols {{ display: flex; gap: 18px; }} .fig {{ max-width: 100%; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; \
margin: 0 4px 0 10px; vertical-align: middle; }}
.small {{ color: #666; font-size: 10px; }}
</style></head><body>
<h1>Ablation margin report</h1>
<div class=small>{_esc(footer_line(now))}</div>
<p class=big>{_esc(res.margin_text())} &nbsp; (rounded {res.min_margin_mm_rounded:d} mm) &mdash;
complete coverage: {"yes" if res.complete_coverage else "NO"}</p>
<p>Minimal margin at the <b>{_esc(res.min_margin_octant)}</b> side of the tumor
(LPS {", ".join(f"{v:.1f}" for v in res.min_margin_point_lps)} mm); \
threshold {res.threshold_mm:g} mm.
<span class=legend>{legend}</span></p>
{"<ul style='color:#b00'>" + warn + "</ul>" if warn else ""}
<div class=cols><div>
<h2>Case</h2><table>{info_rows}
<tr><td>registration QA</td><td>{qa_text}</td></tr>
{f"<tr><td>registration</td><td>{_esc(transform_note)}</td></tr>" if transform_note else ""}</table>
<h2>Figures</h2><table>{rows}</table>
</div><div>
<img class=fig src="{_b64(slices)}" alt="slices through the minimal margin point">
<img class=fig src="{_b64(hist)}" alt="histogram of surface margins">
{_uncertainty_html(uncertainty)}
{shot}
</div></div>
<p class=small>Method: {_esc(res.method)}. The &plusmn; figure is the resolution limit: \
half a voxel of
each grid along the direction of the minimal margin, combined in quadrature.</p>
<p class=small>{_esc(footer_line(now))}</p>
</body></html>
"""


def _uncertainty_html(unc) -> str:
    if unc is None:
        return ""
    from .uncertainty import plot_min_margin_samples

    src = "".join(f"<li>{_esc(s)}</li>" for s in unc.sources)
    return (
        f"<h2>How sure is the MTM</h2><p><b>{_esc(unc.interval_text())}</b></p><ul "
        f"class=small>{src}</ul>"
        f'<img class=fig src="{_b64(_png(plot_min_margin_samples(unc)))}" alt="histogram of '
        'sampled MTMs">'
    )


def pdf_report(
    res,
    *,
    info=None,
    qa=None,
    pre=None,
    screenshot_png: bytes | None = None,
    transform_note: str | None = None,
    uncertainty=None,
) -> bytes:
    """Render the report as PDF bytes (matplotlib, A4 portrait, one page or more).

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    info : dict, optional
        Case information shown as lines (empty values left out).
    qa : dict, optional
        Registration QA: ``verdict`` and ``comment`` (and ``earlier``: a verdict recorded
        for an earlier registration, see :func:`~napari_ablation.core.case.qa_for_transform`).
    pre : SimpleITK.Image, optional
        The pre-ablation image, shown in grey under the slices when on the analysis grid.
    screenshot_png : bytes, optional
        A PNG of the 3D view; default a rendered static 3D view (:func:`plot_surface_3d`).
    transform_note : str, optional
        A line describing the registration.
    uncertainty : MarginUncertainty, optional
        The MTM's interval: adds the interval, its sources and a histogram of the sampled
        MTMs.

    Returns
    -------
    bytes
        The PDF, one page per figure of :func:`report_pages`.
    """
    from matplotlib.backends.backend_pdf import PdfPages

    pages = report_pages(
        res,
        info=info,
        qa=qa,
        pre=pre,
        screenshot_png=screenshot_png,
        transform_note=transform_note,
        uncertainty=uncertainty,
    )
    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        for fig in pages:
            pdf.savefig(fig)
    return buf.getvalue()


#: page geometry of the PDF report (figure fractions of an A4 portrait page)
_PAGE_W_IN, _PAGE_H_IN = 8.27, 11.69
_LEFT, _RIGHT = 0.05, 0.95  # the text margins
_TOP = 0.955  # where a continued page's content starts (below its header line)
_BOTTOM = 0.035  # nothing but the footer below this
_GAP = 0.012  # between two blocks
_TEXT_PT = 7.5
_TABLE_PT = 6.5
_TABLE_MIN_PT = 5.8  # the table's smallest font, to fit two halves side by side
_WRAP_CHARS = 120  # first guess of characters per line of the text block


def _line_h(pt: float, spacing: float = 1.3) -> float:
    """Height of one text line of ``pt`` points, in figure fractions of the page."""
    return spacing * pt / (72.0 * _PAGE_H_IN)


class _Pages:
    """The report's pages and a cursor.

    Blocks are drawn, measured and moved to a new page when they do not fit above the
    footer (nothing overlaps, nothing runs off a page).
    """

    def __init__(self):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self._canvas = FigureCanvasAgg
        self.figs = []
        self.new_page()

    def new_page(self):
        fig = _figure(figsize=(_PAGE_W_IN, _PAGE_H_IN))
        self.renderer = self._canvas(fig).get_renderer()
        self.figs.append(fig)
        self.fig = fig
        self.y = _TOP
        self.fresh = True  # nothing drawn below the header yet

    def width(self, artist) -> float:
        """Width of a text artist, in figure fractions."""
        return artist.get_window_extent(self.renderer).width / self.fig.bbox.width

    def _extent(self, axes, texts):
        boxes = [a.get_tightbbox(self.renderer) for a in axes]
        boxes += [t.get_window_extent(self.renderer) for t in texts]
        boxes = [b for b in boxes if b is not None and b.height > 0]
        h = self.fig.bbox.height
        return min(b.y0 for b in boxes) / h, max(b.y1 for b in boxes) / h

    def place(self, draw) -> None:
        """Draw a block whose top is at the cursor (``draw(fig, y_top)``).

        Measure what it added (axes with their labels and titles, texts), move it down so
        its top is at the cursor, and onto a new page when its bottom falls below the
        footer line.
        """
        for attempt in (0, 1):
            fig = self.fig
            axes0, texts0 = list(fig.axes), list(fig.texts)
            draw(fig, self.y)
            axes = [a for a in fig.axes if a not in axes0]
            texts = [t for t in fig.texts if t not in texts0]
            y0, y1 = self._extent(axes, texts)
            shift = y1 - self.y
            if shift > 0:  # titles above the given top: move the block down
                # positions first: a twin axes (histogram) moves with its host
                for a, p in [(a, a.get_position()) for a in axes]:
                    a.set_position([p.x0, p.y0 - shift, p.width, p.height])
                for t in texts:
                    t.set_y(t.get_position()[1] - shift)
                y0 -= shift
            if y0 >= _BOTTOM or self.fresh or attempt:
                self.y = y0 - _GAP
                self.fresh = False
                return
            for a in axes:  # does not fit: take it off and draw it on a new page
                a.remove()
            for t in texts:
                t.remove()
            self.new_page()

    def room(self) -> float:
        return self.y - _BOTTOM

    def finish(self, title: str, footer: str) -> list:
        n = len(self.figs)
        for i, fig in enumerate(self.figs):
            if i:
                fig.text(_LEFT, 0.972, f"{title} (continued)", fontsize=9, weight="bold")
            if n > 1:
                fig.text(_RIGHT, 0.972, f"page {i + 1} of {n}", fontsize=8, ha="right")
            fig.text(_LEFT, 0.012, footer, fontsize=7, color="0.35")
        return self.figs


def _wrap_to_width(pages: _Pages, lines: list[str], pt: float) -> list[str]:
    """Wrap ``lines`` so that each one, drawn at ``pt`` points, fits between the margins."""
    import textwrap

    width = _WRAP_CHARS
    while True:
        out = []
        for line in lines:
            out += textwrap.wrap(line, width=width, subsequent_indent="    ") or [""]
        probe = pages.fig.text(0, 0, "\n".join(out), fontsize=pt, linespacing=1.3)
        too_wide = pages.width(probe) > _RIGHT - _LEFT
        probe.remove()
        if not too_wide or width <= 40:
            return out
        width -= 8


def _text_lines(pages: _Pages, lines: list[str], pt: float = _TEXT_PT) -> None:
    """Draw wrapped lines, as many per page as fit, continuing on the next page."""
    lines = _wrap_to_width(pages, lines, pt)
    while lines:
        n = int(pages.room() / _line_h(pt)) - 1
        if n < min(3, len(lines)) and not pages.fresh:
            pages.new_page()
            continue
        chunk, lines = lines[: max(n, 1)], lines[max(n, 1) :]
        text = "\n".join(chunk)
        pages.place(
            lambda fig, y, text=text: fig.text(
                _LEFT, y, text, fontsize=pt, va="top", linespacing=1.3
            )
        )
        if lines:
            pages.new_page()


def _table(pages: _Pages, rows: list[tuple[str, str, str]]) -> None:
    """Draw the (label, value, unit) rows in two side-by-side halves.

    In a slightly smaller font if that makes them fit the width, else in one column; one
    text per cell placed by the measured column widths (no reliance on a monospace font),
    continuing on the next page when the rows do not fit above the footer.
    """
    gaps, between = (0.015, 0.006), 0.03  # label-value, value-unit, between halves

    def widths(half, pt) -> list[float]:  # label, value and unit widths at pt points
        probes = [[pages.fig.text(0, 0, v or " ", fontsize=pt) for v in c] for c in zip(*half)]
        out = [max(pages.width(t) for t in c) for c in probes]
        for t in (t for c in probes for t in c):
            t.remove()
        return out

    def layout(chunk, n_cols):
        """Return the font size and each half's column widths (None if they do not fit)."""
        per = -(-len(chunk) // n_cols)
        halves = [chunk[i : i + per] for i in range(0, len(chunk), per)]
        room = _RIGHT - _LEFT - between * (len(halves) - 1)
        pt = _TABLE_PT
        while True:  # measured at each size: glyph widths are not exactly proportional
            ws = [widths(h, pt) for h in halves]
            need = sum(sum(w) + sum(gaps) for w in ws)
            if need <= room or n_cols == 1:
                return pt, halves, ws
            pt = min(pt - 0.1, pt * room / need)
            if pt < _TABLE_MIN_PT:
                return None

    def draw_rows(pt, halves, ws):
        row_h = _line_h(pt, 1.45)

        def draw(fig, y):
            x0 = _LEFT
            for half, (w_label, w_value, w_unit) in zip(halves, ws):
                xv = x0 + w_label + gaps[0] + w_value  # the values' right edge
                for i, (label, value, unit) in enumerate(half):
                    yy = y - i * row_h
                    fig.text(x0, yy, label, fontsize=pt, va="top")
                    fig.text(xv, yy, value or " ", fontsize=pt, va="top", ha="right")
                    fig.text(xv + gaps[1], yy, unit or " ", fontsize=pt, va="top")
                x0 = max(xv + gaps[1] + w_unit + between, (_LEFT + _RIGHT) / 2)

        return draw

    row_h = _line_h(_TABLE_PT, 1.45)  # the largest row height: a smaller font only fits more
    while rows:
        fit = int(pages.room() / row_h) - 1
        if fit < min(3, len(rows)) and not pages.fresh:
            pages.new_page()
            continue
        fit = max(fit, 1)
        spec = layout(rows[: 2 * fit], 2) if len(rows) > 1 else None
        if spec is None:
            spec = layout(rows[:fit], 1)
        n = sum(len(h) for h in spec[1])
        rows = rows[n:]
        pages.place(draw_rows(*spec))
        if rows:
            pages.new_page()


def report_pages(
    res,
    *,
    info=None,
    qa=None,
    pre=None,
    screenshot_png: bytes | None = None,
    transform_note: str | None = None,
    uncertainty=None,
) -> list:
    """Draw the report as matplotlib Figures, A4 portrait pages.

    The blocks flow down the page and onto a second one when needed: the text block
    (wrapped to its measured width), the slices through the MTM point, the surface-margin
    histogram beside the 3D view, the figures table, then the histogram of the sampled MTMs.
    Each block is drawn, measured (axes with their labels and titles) and placed below the
    previous one, so nothing overlaps, and nothing runs off a page or over the footer
    (every page carries the footer; a report of several pages numbers them).

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    info : dict, optional
        Case information shown as lines (empty values left out).
    qa : dict, optional
        Registration QA: ``verdict`` and ``comment`` (and ``earlier``: a verdict recorded
        for an earlier registration, see :func:`~napari_ablation.core.case.qa_for_transform`).
    pre : SimpleITK.Image, optional
        The pre-ablation image, shown in grey under the slices when on the analysis grid.
    screenshot_png : bytes, optional
        A PNG of the 3D view; default a rendered static 3D view (:func:`plot_surface_3d`).
    transform_note : str, optional
        A line describing the registration.
    uncertainty : MarginUncertainty, optional
        The MTM's interval: adds the interval and its sources to the text block, its rows
        to the table and a histogram of the sampled MTMs after the table.

    Returns
    -------
    list of matplotlib.figure.Figure
        The pages, 8.27 x 11.69 inches each.
    """
    info = dict(info or {})
    qa = dict(qa or {})
    title = "Ablation margin report"
    pages = _Pages()
    fig = pages.fig
    fig.text(_LEFT, 0.965, title, fontsize=16, weight="bold")
    color = coverage.hex_to_rgb(coverage.verdict_color(res.min_margin_mm, res.threshold_mm))
    verdict = fig.text(
        _LEFT,
        0.935,
        f"{res.margin_text()}  (rounded {res.min_margin_mm_rounded:d} mm)  \u2014  complete "
        "coverage: "
        f"{'yes' if res.complete_coverage else 'NO'}",
        fontsize=12,
        weight="bold",
        color=color,
    )
    pages.y = verdict.get_window_extent(pages.renderer).y0 / fig.bbox.height - _GAP
    lines = [
        f"minimal margin at the {res.min_margin_octant} side; threshold {res.threshold_mm:g} mm"
    ]
    lines += [f"{k}: {v}" for k, v in info.items() if v not in (None, "")]
    lines.append(f"registration QA: {case_qa_text(qa)}")
    if transform_note:
        lines.append(f"registration: {transform_note}")
    if uncertainty is not None:
        lines.append(uncertainty.interval_text())
        lines += [f"  {src}" for src in uncertainty.sources]
    lines += [f"warning: {w}" for w in res.warnings]
    _text_lines(pages, lines)

    def slices(fig, y):
        h = 0.20
        axes = [fig.add_axes([0.08 + i * 0.32, y - h, 0.24, h]) for i in range(3)]
        legend = fig.add_axes([0.08, y - h - 0.075, 0.88, 0.03])  # below the axis labels
        plot_slices(res, pre, axes=axes, fig=fig, uncertainty=uncertainty, legend_ax=legend)

    pages.place(slices)

    def hist_and_3d(fig, y):
        h = 0.17
        plot_histogram(res, ax=fig.add_axes([0.08, y - h, 0.36, h]), fig=fig)
        box3d = [0.56, y - h, 0.40, h]
        if screenshot_png:
            import matplotlib.image as mpimg

            axs = fig.add_axes(box3d)
            axs.imshow(mpimg.imread(io.BytesIO(screenshot_png), format="png"))
            axs.set_axis_off()
        else:
            plot_surface_3d(res, ax=fig.add_axes(box3d, projection="3d"), fig=fig)

    pages.place(hist_and_3d)
    table = figure_rows(res, uncertainty)
    if uncertainty is not None:  # the sources are in the text block
        table = [r for r in table if r[0] != "Uncertainty source"]
    _table(pages, table)
    if uncertainty is not None:
        from .uncertainty import plot_min_margin_samples

        pages.place(
            lambda fig, y: plot_min_margin_samples(
                uncertainty, ax=fig.add_axes([0.30, y - 0.12, 0.40, 0.12]), fig=fig
            )
        )
    return pages.finish(title, footer_line())


def report_page(res, **kw):
    """Draw the report's first page (see :func:`report_pages`, which draws them all).

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    **kw
        Passed on to :func:`report_pages`.

    Returns
    -------
    matplotlib.figure.Figure
        The first page, 8.27 x 11.69 inches.
    """
    return report_pages(res, **kw)[0]


def footer_line(when: str | None = None) -> str:
    """Compose the footer of every report: date, plugin version and research-tool notice.

    Parameters
    ----------
    when : str, optional
        The date and time shown; default now, as ``YYYY-MM-DD HH:MM UTC``.

    Returns
    -------
    str
        The footer line.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("napari-ablation")
    except PackageNotFoundError:
        ver = "unknown version"
    when = when or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Generated {when} by napari-ablation {ver}. "
        "Research tool, not a medical device; not for diagnosis or treatment decisions."
    )


def write_report(path: str | os.PathLike, res, *, inputs=(), **kw) -> Path:
    """Write the report; the format follows the suffix (.html / .htm / .pdf); atomic.

    Parameters
    ----------
    path : str or os.PathLike
        The report file; its suffix chooses HTML (:func:`html_report`) or PDF
        (:func:`pdf_report`).
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    inputs : iterable of path-like, optional
        Files that must not be overwritten (the case's sources and case folder files).
    **kw
        Passed on to :func:`html_report` or :func:`pdf_report` (``info``, ``qa``, ``pre``,
        ``screenshot_png``, ``transform_note``, ``uncertainty``).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    AblationError
        If the suffix is not .html, .htm or .pdf, or the file cannot be written.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".html", ".htm"):
        return write_text_atomic(p, html_report(res, **kw), inputs=inputs)
    if suffix == ".pdf":
        return write_bytes_atomic(p, pdf_report(res, **kw), inputs=inputs)
    raise AblationError(f"cannot write a report to '{p.name}': use .html or .pdf")


def figure_rows(res, uncertainty=None) -> list[tuple[str, str, str]]:
    """Return the (figure, value, unit) rows of an analysis, then those of its MTM interval.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    uncertainty : MarginUncertainty, optional
        The MTM's interval (:class:`~napari_ablation.core.uncertainty.MarginUncertainty`);
        default none.

    Returns
    -------
    list of (str, str, str)
        ``res.rows()`` followed by ``uncertainty.rows()`` when given.
    """
    return res.rows() + (uncertainty.rows() if uncertainty is not None else [])


def csv_text(res, uncertainty=None) -> str:
    """Return the figures as CSV: ``res.to_csv()`` followed by the interval's rows.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    uncertainty : MarginUncertainty, optional
        The MTM's interval (:class:`~napari_ablation.core.uncertainty.MarginUncertainty`);
        default none.

    Returns
    -------
    str
        The CSV text (rows end with a newline).
    """
    if uncertainty is None:
        return res.to_csv()
    import csv

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(uncertainty.rows())
    return res.to_csv() + buf.getvalue()


def json_document(res, extra: dict | None = None, uncertainty=None, *, transform) -> dict:
    """Return the margin JSON document (the one of the CLI and of the GUI's export).

    ``res.to_json_dict()``, whether it was registered
    (:func:`~napari_ablation.core.margin.registration_fields`), the interval's keys (DESIGN
    section 5), then ``extra``.

    Parameters
    ----------
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    extra : dict, optional
        Further keys, added last (they override same-named keys).
    uncertainty : MarginUncertainty, optional
        The MTM's interval (:class:`~napari_ablation.core.uncertainty.MarginUncertainty`);
        default none.
    transform : SimpleITK.Transform or None
        The pre -> post transform the margins were computed with (None: identity).

    Returns
    -------
    dict
        The JSON-serialisable document.
    """
    from .margin import registration_fields

    doc = res.to_json_dict()
    doc.update(registration_fields(transform))
    if uncertainty is not None:
        doc.update(uncertainty.to_json_dict())
    if extra:
        doc.update(extra)
    return doc


def write_json(
    path, res, extra: dict | None = None, uncertainty=None, *, transform, inputs=()
) -> Path:
    """Write :func:`json_document` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file to write.
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    extra : dict, optional
        Further keys, added last (they override same-named keys).
    uncertainty : MarginUncertainty, optional
        The MTM's interval (:class:`~napari_ablation.core.uncertainty.MarginUncertainty`);
        default none.
    transform : SimpleITK.Transform or None
        The pre -> post transform the margins were computed with (None: identity).
    inputs : iterable of path-like, optional
        Files that must not be overwritten.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    AblationError
        If the file is one of ``inputs`` or cannot be written.
    """
    import json

    doc = json_document(res, extra, uncertainty, transform=transform)
    return write_text_atomic(path, json.dumps(doc, indent=2), inputs=inputs)


def write_csv(path, res, uncertainty=None, *, inputs=()) -> Path:
    """Write :func:`csv_text` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file to write.
    res : MarginResult
        The margin analysis (:class:`~napari_ablation.core.margin.MarginResult`).
    uncertainty : MarginUncertainty, optional
        The MTM's interval (:class:`~napari_ablation.core.uncertainty.MarginUncertainty`);
        default none.
    inputs : iterable of path-like, optional
        Files that must not be overwritten.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    AblationError
        If the file is one of ``inputs`` or cannot be written.
    """
    return write_text_atomic(path, csv_text(res, uncertainty), inputs=inputs)
