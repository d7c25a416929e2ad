"""Varied synthetic ablation cases with exact ground truth (quiz sets, cohorts, tests).

:func:`synthetic_case` draws one case from a seed: renal cryoablation on T2-weighted MRI
(1.2 x 1.2 x 3 mm) or liver microwave ablation on portal-venous CT (0.7-0.8 mm in-plane,
2.5-5 mm slices), a tumor of 10-50 mm maximum diameter (an irregular smooth blob), an
ablation zone (an ellipsoid elongated along the probe) sized so that the minimal
treatment margin falls in the chosen coverage scenario, the minimum placed in a chosen
octant, and a rigid misregistration of a few mm / degrees between pre and post;
optionally breathing (``breathing_mm``): the anatomy away from the tumor also moves,
non-rigidly (:class:`Breathing`), while near the tumor the true map stays rigid, the
test case for a registration local to the tumor; optionally a slice profile
(``slice_profile``): each slice averages the anatomy over its thickness.
:func:`write_synthetic_cases` writes N of them into case folders.

It reuses the anatomy painter, tissue tables and acquisition models of
:mod:`~napari_ablation.core.samples`; only the lesion, the ablation zone, the probes,
the field of view and the ground truth are drawn here.

Ground truth is exact (independent of any voxel grid):

* The ablation zone is an exact ellipsoid, so the signed distance of any point to its
  surface is solved exactly (Eberly's bisection on the closest-point equation).
* The true MTM is the minimum of that signed distance over the tumor surface, sampled
  densely by direction (the tumor is star-shaped) and refined on a fine local patch
  around the coarse minimum: accurate to ~0.01 mm.
* The octant is taken relative to the tumor's volume centroid, integrated exactly over
  directions (``c = int r^4/4 u dO / int r^3/3 dO``).

No Qt, no napari.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

from . import geometry
from . import transform as tfm
from .case import Case
from .coverage import CLASS_COLOR_NAMES, CLASS_KEYS, class_of_margin
from .errors import AblationError
from .io import write_text_atomic
from .margin import OCTANTS, octant_name
from .samples import (
    CT_PV,
    MR_T2,
    Blob,
    Grid,
    Tube,
    _Anatomy,
    _Body,
    _build_abdomen,
    _Canvas,
    _cap_directions,
    _finish_ct,
    _finish_mr,
    _frame,
    _kidney,
    _on_post_slice,
    _rigid,
    _surface_at,
    _Textures,
    _unit,
)

MODALITIES = ("mri", "ct")
SCENARIOS = ("complete", "insufficient", "incomplete")
#: coverage class of each scenario (docs/design.md, section 5: green all covered with margin,
#: yellow covered with some margin below the threshold, red some tumor uncovered)
SCENARIO_CLASS = {"complete": "green", "insufficient": "yellow", "incomplete": "red"}
COVERAGE_CLASSES = tuple(CLASS_COLOR_NAMES[k] for k in CLASS_KEYS)
TRUTH_FILE = "truth.json"

#: the true MTM stays this far (mm) from 0 and from the threshold, so that the scenario
#: (and the coverage class) is unambiguous for the margin engine and for a reader
CLASS_CLEARANCE_MM = 1.0
#: the MTM point stays this far (mm) from every octant plane through the tumor centroid,
#: and every other octant's minimum is at least this much (mm) larger than the MTM
OCTANT_CLEARANCE_MM = 2.5
OCTANT_GAP_MM = 0.6
#: for small tumors the limits scale with the mean tumor radius r: min(limit, fraction * r)
OCTANT_CLEARANCE_FRACTION = 0.45
OCTANT_GAP_FRACTION = 0.08


def coverage_class(min_margin_mm: float, threshold_mm: float) -> str:
    """Coverage class of a tumor from its minimal margin.

    Parameters
    ----------
    min_margin_mm : float
        Minimal treatment margin (mm, negative where the tumor is uncovered).
    threshold_mm : float
        The margin threshold ``t`` (mm).

    Returns
    -------
    str
        ``"green"`` (MTM >= t), ``"yellow"`` (0 <= MTM < t) or ``"red"`` (MTM < 0).
    """
    return CLASS_COLOR_NAMES[class_of_margin(min_margin_mm, threshold_mm)]


# =====================================================================================
# exact geometry of the ablation ellipsoid and the tumor blob


def ellipsoid_signed_distance(points: np.ndarray, center, semi, frame) -> np.ndarray:
    """Exact signed distance (mm, **positive inside**) from points to an ellipsoid surface.

    Parameters
    ----------
    points : (n, 3) array
        LPS points (mm).
    center : (3,) array
        Ellipsoid centre (LPS mm).
    semi : (3,) array
        Semi-axes (mm) along the columns of ``frame``.
    frame : (3, 3) array
        Rotation whose columns are the ellipsoid axes in LPS.

    Returns
    -------
    (n,) array
        Distance from each point to the closest surface point, positive inside.

    Notes
    -----
    D. Eberly, "Distance from a point to an ellipse, an ellipsoid, or a hyperellipsoid"
    (Geometric Tools, 2013): the closest-point parameter is the root of a monotone
    function, found by bisection to machine precision.
    """
    p = (np.atleast_2d(np.asarray(points, float)) - np.asarray(center, float)) @ np.asarray(
        frame, float
    )
    semi = np.asarray(semi, float)
    order = np.argsort(-semi)  # e0 >= e1 >= e2
    e = semi[order]
    y = np.maximum(np.abs(p[:, order]), 1e-12)
    z = y / e
    g = (z * z).sum(axis=1) - 1.0
    r = (e / e[2]) ** 2
    n0, n1 = r[0] * z[:, 0], r[1] * z[:, 1]
    lo = z[:, 2] - 1.0
    hi = np.where(g < 0, 0.0, np.sqrt(n0 * n0 + n1 * n1 + z[:, 2] ** 2) - 1.0)
    for _ in range(56):
        s = 0.5 * (lo + hi)
        val = (n0 / (s + r[0])) ** 2 + (n1 / (s + r[1])) ** 2 + (z[:, 2] / (s + 1.0)) ** 2 - 1.0
        pos = val > 0
        lo = np.where(pos, s, lo)
        hi = np.where(pos, hi, s)
    s = 0.5 * (lo + hi)
    x = np.column_stack(
        [r[0] * y[:, 0] / (s + r[0]), r[1] * y[:, 1] / (s + r[1]), y[:, 2] / (s + 1.0)]
    )
    d = np.linalg.norm(x - y, axis=1)
    return np.where(g < 0, d, -d)


def _directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.column_stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)])


def _blob_radii(blob: Blob, u_local: np.ndarray) -> np.ndarray:
    base = 1.0 / np.sqrt(((u_local / blob.semi) ** 2).sum(axis=1))
    eps = blob._eps(u_local[:, 0], u_local[:, 1], u_local[:, 2]) if blob.waves else 0.0
    return base * (1.0 + eps)


def blob_volume_centroid(blob: Blob, n: int = 40000) -> tuple[float, np.ndarray]:
    """Volume (mm^3) and volume centroid (LPS) of a star-shaped blob.

    Computed by quadrature over ``n`` directions
    (``c = int r^4/4 u dO / int r^3/3 dO``).

    Parameters
    ----------
    blob : Blob
        Star-shaped around its centre.
    n : int
        Directions of the quadrature.

    Returns
    -------
    (float, numpy.ndarray)
        Volume (mm^3) and centroid (LPS mm).
    """
    u = _directions(n)
    r = _blob_radii(blob, u)
    w = 4.0 * np.pi / n
    vol = float(w * (r**3).sum() / 3.0)
    c_local = w * ((r**4)[:, None] * u).sum(axis=0) / 4.0 / vol
    return vol, blob.center + blob.frame @ c_local


@dataclass
class Zone:
    """The ablation zone: an exact ellipsoid (the closest-point problem is solvable exactly).

    Parameters
    ----------
    center : numpy.ndarray
        Centre (LPS mm).
    semi : numpy.ndarray
        Semi-axes (mm), along the columns of ``frame``.
    frame : numpy.ndarray
        3 x 3 rotation whose columns are the axes (LPS).
    """

    center: np.ndarray
    semi: np.ndarray
    frame: np.ndarray

    def blob(self) -> Blob:
        """Return the zone as a :class:`~napari_ablation.core.samples.Blob` (for painting).

        Returns
        -------
        Blob
            The same ellipsoid.
        """
        return Blob(self.center, self.semi, self.frame)

    def signed_distance(self, pts: np.ndarray) -> np.ndarray:
        """Exact signed distance (mm, positive inside) of points to the surface.

        Parameters
        ----------
        pts : numpy.ndarray, shape (N, 3)
            Points (LPS mm).

        Returns
        -------
        numpy.ndarray, shape (N,)
            Signed distances (mm).
        """
        return ellipsoid_signed_distance(pts, self.center, self.semi, self.frame)

    @property
    def volume_ml(self) -> float:
        """Volume of the ellipsoid (ml)."""
        return float(4.0 / 3.0 * np.pi * np.prod(self.semi) / 1000.0)


def exact_margin(tumor: Blob, zone: Zone, *, n: int = 30000, centroid=None) -> dict[str, Any]:
    """Compute the exact minimal treatment margin of the continuous shapes.

    Also its point, its octant and the minimum of every octant.

    Parameters
    ----------
    tumor : Blob
        The tumor (star-shaped around its centre).
    zone : Zone
        The ablation zone in the same (pre) space.
    n : int
        Number of tumor-surface samples of the coarse pass.
    centroid : (3,) array, optional
        Tumor centroid for the octants (default: its exact volume centroid).

    Returns
    -------
    dict
        ``min_margin_mm``, ``min_margin_point_lps``, ``min_margin_octant``,
        ``octant_min_margin_mm`` (8 keys), ``tumor_centroid_lps``.
    """
    if centroid is None:
        centroid = blob_volume_centroid(tumor)[1]
    u = _directions(n)
    pts = (u * _blob_radii(tumor, u)[:, None]) @ tumor.frame.T + tumor.center
    m = zone.signed_distance(pts)
    i = int(np.argmin(m))
    # refine: a fine patch of directions around the coarse minimum (~0.01 mm apart)
    cap = _cap_directions(u[i], 3.0 * math.sqrt(4.0 * np.pi / n), 6000)
    fine = _surface_at(tumor, cap)
    mf = zone.signed_distance(fine)
    j = int(np.argmin(mf))
    mtm, p = (float(mf[j]), fine[j]) if mf[j] < m[i] else (float(m[i]), pts[i])
    rel = pts - centroid
    code = (rel[:, 0] < 0) * 4 + (rel[:, 1] >= 0) * 2 + (rel[:, 2] < 0)  # index into OCTANTS
    octs = {
        k: (float(m[code == c].min()) if np.any(code == c) else None) for c, k in enumerate(OCTANTS)
    }
    octant = octant_name(p - centroid)
    octs[octant] = mtm
    return {
        "min_margin_mm": mtm,
        "min_margin_point_lps": [float(v) for v in p],
        "min_margin_octant": octant,
        "octant_min_margin_mm": octs,
        "tumor_centroid_lps": [float(v) for v in centroid],
    }


def octant_direction(octant: str) -> np.ndarray:
    """Return the unit diagonal (LPS) pointing into ``octant`` (e.g. ``left-posterior-superior``).

    Parameters
    ----------
    octant : str
        One of ``margin.OCTANTS``.

    Returns
    -------
    numpy.ndarray, shape (3,)
        The unit vector.

    Raises
    ------
    AblationError
        An unknown octant.
    """
    if octant not in OCTANTS:
        raise AblationError(f"unknown octant '{octant}': choose one of {', '.join(OCTANTS)}")
    lr, ap, si = octant.split("-")
    return _unit(
        (
            1.0 if lr == "left" else -1.0,
            1.0 if ap == "posterior" else -1.0,
            1.0 if si == "superior" else -1.0,
        )
    )


# =====================================================================================
# the lesion and its ablation zone


def _target_margin(rng, scenario: str, threshold_mm: float) -> float:
    c = CLASS_CLEARANCE_MM
    if scenario == "complete":
        return threshold_mm + rng.uniform(c, c + 4.0)
    if scenario == "insufficient":
        return rng.uniform(c, max(threshold_mm - c, c + 0.1))
    return -rng.uniform(c, c + 4.0)


def _tumor_blob(rng, center, diameter_mm: float, axis) -> Blob:
    """Draw an irregular tumor whose maximum 3D diameter is ``diameter_mm``.

    Its long axis is along ``axis`` (operators place probes along a tumor's long axis).
    """
    shape = np.array([rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0), 1.0])
    blob = Blob.random(
        rng,
        center,
        shape,
        _frame(axis, rng.normal(size=3)),
        amp=rng.uniform(0.025, 0.06),
        n=5,
        freq=(1.0, 3.0),
    )
    u = _directions(1500)
    pts = (u * _blob_radii(blob, u)[:, None]) @ blob.frame.T
    blob.semi = blob.semi * (diameter_mm / geometry.max_pairwise_distance(pts))
    return blob


def _place_zone(rng, tumor: Blob, centroid, octant: str, target_mm: float) -> Zone:
    """Place the ablation ellipsoid so that the exact MTM equals ``target_mm``.

    Coaxial with the tumor (long axis along the probe), shifted from the tumor away from
    ``octant``, its semi-axes ``tumor semi-axes + k * (1, 1, elongation)`` with ``k``
    solved for the target.
    """
    d = _unit(octant_direction(octant) + rng.normal(size=3) * 0.1)
    r_t = float(np.mean(tumor.semi))
    shift = rng.uniform(0.3, 0.5) * r_t + rng.uniform(2.0, 3.5)
    center = np.asarray(centroid) - shift * d
    grow = np.array([1.0, rng.uniform(1.0, 1.1), rng.uniform(1.05, 1.35)])
    u = _directions(3000)
    pts = (u * _blob_radii(tumor, u)[:, None]) @ tumor.frame.T + tumor.center

    def mtm(k):
        return (
            float(ellipsoid_signed_distance(pts, center, tumor.semi + k * grow, tumor.frame).min())
            - target_mm
        )

    k = optimize.brentq(
        mtm, -0.7 * float(tumor.semi.min()), 2.0 * r_t + abs(target_mm) + shift + 30.0, xtol=1e-4
    )
    return Zone(center, tumor.semi + k * grow, tumor.frame.copy())


# =====================================================================================
# anatomy per modality
#
# A host is drawn once per case from its own random stream (``arng``): body, organs,
# spacing, acquisition noise.  The lesion (tumor, zone, probes, misregistration) comes
# from the case stream (``rng``), so that ``small=True`` and ``small=False`` give the same
# lesion and the same truths for a seed; only the painted surroundings differ.


class _Host:
    tissue: Any
    spacing: tuple
    n_probes: int
    pv: float
    info: dict

    def tumor(self, rng, diameter_mm: float, axis) -> Blob:
        raise NotImplementedError

    def probe_dir(self, rng) -> np.ndarray:
        raise NotImplementedError

    def anatomy(self, arng, tumor: Blob, small: bool) -> _Anatomy:
        raise NotImplementedError

    def finish(self, img, grid, rng, which: int):
        raise NotImplementedError


def _local_anatomy(t, body, rng, background, organs, lesion) -> _Anatomy:
    """Paint only the tissue around the lesion (small fields of view).

    A textured background, the host organ's layers, the lesion.
    """
    an = _Anatomy(t, body, rng)
    is_ct = t.air < -500

    def tissue(c: _Canvas):
        c.paint(
            c.full,
            np.ones(c.img.shape, np.float32),
            c._value(
                background,
                {
                    "fine": (background * 0.04 if not is_ct else 7.0),
                    "coarse": (background * 0.03 if not is_ct else 4.0),
                },
                c.full,
            ),
        )
        for blob, value, offset in organs:
            c.paint_shape(
                blob, value, offset=offset, tex={"fine": (value * 0.04 if not is_ct else 6.0)}
            )

    an.steps += [tissue, lesion]
    return an


class _RenalMRI(_Host):
    """Exophytic renal tumor (left or right kidney) on T2-weighted MRI.

    Cryoprobes from a posterior approach; 1.2 x 1.2 x 3 mm.
    """

    tissue = MR_T2
    spacing = (1.2, 1.2, 3.0)
    pv = 1.0
    spine_y = 36.0

    def __init__(self, arng, small: bool):
        self.body = _Body(
            a=arng.uniform(132, 150),
            b_ant=arng.uniform(92, 108),
            b_post=arng.uniform(102, 116),
            n=2.4,
            cy=0.0,
            fat_base=arng.uniform(11, 20),
            waves=(
                (0.018, 3, arng.uniform(0, 6.3), 0.004),
                (0.012, 5, arng.uniform(0, 6.3), -0.006),
            ),
        )
        j = arng.normal(size=(2, 3)) * (2.0, 2.0, 4.0)
        self.kid_r = _kidney(
            arng, -1, np.array([-74.0, 17.0, -6.0]) + j[0], (0.22, 0.25, 1.0), (0.85, -0.5, 0.0)
        )
        self.kid_l = _kidney(
            arng, +1, np.array([76.0, 15.0, 8.0]) + j[1], (-0.22, 0.25, 1.0), (-0.85, -0.5, 0.0)
        )
        self.side = int(arng.choice([-1, 1]))
        self.kid = self.kid_l if self.side > 0 else self.kid_r
        self.n_probes = int(arng.integers(2, 4))
        self.noise = (arng.uniform(10.0, 16.0), arng.uniform(11.0, 17.0))
        self.bias = (arng.uniform(0.12, 0.2), arng.uniform(0.14, 0.22))
        self.info = {
            "procedure": "percutaneous cryoablation",
            "modality": "MR",
            "sequence": "T2 HASTE-like",
            "organ": f"kidney ({'left' if self.side > 0 else 'right'})",
        }

    def tumor(self, rng, diameter_mm, axis):
        # a site on the lateral / posterior / polar surface (never the medial hilum)
        while True:
            d = _unit(rng.normal(size=3))
            if self.side * d[0] > 0.15 and d[1] > -0.4:
                break
        surf = self.kid.center + d * self.kid.radius_along(d)
        return _tumor_blob(
            rng, surf + rng.uniform(0.0, 0.35) * diameter_mm / 2 * d, diameter_mm, axis
        )

    def probe_dir(self, rng):
        return _unit(
            (self.side * rng.uniform(-0.1, 0.5), 1.0, rng.uniform(-0.25, 0.25))
        )  # tip -> skin

    def anatomy(self, arng, tumor, small):
        t = self.tissue

        def lesion(c: _Canvas):
            c.paint_shape(tumor, t.tumor, tex={"fine": t.tumor * 0.12, "medium": t.tumor * 0.08})

        if small:
            return _local_anatomy(
                t,
                self.body,
                arng,
                t.visceral_fat,
                [(self.kid, t.cortex, 0.0), (self.kid, t.medulla, -7.0)],
                lesion,
            )
        spine_y = self.spine_y
        liver = [
            Blob.random(
                arng,
                (-72.0, -5.0, 62.0),
                (68.0, 78.0, 85.0),
                _frame((0.3, 0.1, 1.0), (1, 0, 0)),
                amp=0.04,
                n=5,
            ),
            Blob.random(
                arng,
                (-20.0, -55.0, 85.0),
                (55.0, 30.0, 40.0),
                _frame((0.0, 0.2, 1.0), (1, 0.3, 0)),
                amp=0.05,
                n=4,
            ),
        ]
        spleen = Blob.random(
            arng,
            (90.0, 32.0, 68.0),
            (22.0, 46.0, 48.0),
            _frame((0.35, -0.6, 0.7), (1, 0.2, 0)),
            amp=0.05,
            n=4,
        )
        pancreas = Blob.random(
            arng,
            (10.0, -22.0, 42.0),
            (60.0, 11.0, 12.0),
            _frame((1.0, 0.25, 0.15), (0, 1, 0)),
            amp=0.08,
            n=6,
            freq=(2.0, 5.0),
        )
        cyst = Blob.random(
            arng, self.kid.center + arng.normal(size=3) * (8, 8, 25), (6.0, 6.0, 6.5), amp=0.02, n=2
        )
        cysts = [cyst] if not np.any(tumor.inside(cyst.surface_points(200))) else []
        colon = [
            Tube((-100.0, -22.0, -80.0), (-98.0, -18.0, 80.0), 19.0, 18.0),
            Tube((96.0, -28.0, -80.0), (100.0, -20.0, 80.0), 16.0, 17.0),
        ]
        an = _build_abdomen(
            t,
            self.body,
            arng,
            z_range=(-60.0, 60.0),
            spine_y=spine_y,
            kidneys=[
                {"blob": self.kid_r, "cysts": cysts if self.side < 0 else []},
                {"blob": self.kid_l, "cysts": cysts if self.side > 0 else []},
            ],
            liver=liver,
            spleen_c=spleen,
            gallbladder=None,
            extra_blobs=[(pancreas, "pancreas")],
            ribs=[(+1, 60.0, 1.7), (-1, 55.0, 1.6)],
            colon=colon,
        )

        def great_vessels(c: _Canvas):
            c.paint_shape(
                Tube((14.0, spine_y - 30.0, -90.0), (12.0, spine_y - 29.0, 90.0), 10.5, 11.5),
                t.artery,
            )
            c.paint_ellcyl(-25.0, spine_y - 32.0, 14.5, 9.5, t.vein, wob=41)

        an.steps += [great_vessels, lesion]
        return an

    def finish(self, img, grid, rng, which):
        return _finish_mr(
            img, grid, rng, sigma_noise=self.noise[which], bias_strength=self.bias[which]
        )


class _LiverCT(_Host):
    """Liver tumor deep in the right lobe on portal-venous CT.

    One microwave antenna from a lateral approach; 0.7-0.8 mm in-plane, 2.5-5 mm slices
    (0.9 x 0.9 x 2.5 mm when small).
    """

    tissue = CT_PV
    pv = 0.7
    n_probes = 1
    spine_y = 48.0

    def __init__(self, arng, small: bool):
        self.body = _Body(
            a=arng.uniform(155, 172),
            b_ant=arng.uniform(110, 125),
            b_post=arng.uniform(100, 115),
            n=2.3,
            cy=0.0,
            fat_base=arng.uniform(14, 24),
            waves=(
                (0.015, 3, arng.uniform(0, 6.3), 0.003),
                (0.01, 4, arng.uniform(0, 6.3), -0.005),
            ),
        )
        self.liver = Blob.random(
            arng,
            (-75.0, 5.0, 25.0),
            (82.0, 92.0, 100.0),
            _frame((0.25, 0.1, 1.0), (1, 0, 0)),
            amp=0.04,
            n=5,
        )
        dz = float(arng.choice([2.5, 3.0, 5.0]))
        dxy = float(arng.choice([0.7, 0.75, 0.8]))
        self.spacing = (0.9, 0.9, 2.5) if small else (dxy, dxy, dz)
        self.noise = (arng.uniform(9.0, 14.0), arng.uniform(10.0, 15.0))
        self.tumor_hu = self.tissue.tumor + arng.uniform(-15, 15)
        self.info = {
            "procedure": "percutaneous microwave ablation",
            "modality": "CT",
            "phase": "portal venous",
            "organ": "liver (right lobe)",
        }

    def tumor(self, rng, diameter_mm, axis):
        # deep enough in the right lobe for the ablation zone to stay inside the liver
        depth = diameter_mm / 2 + 8.0
        for _ in range(2000):
            c = np.array([rng.uniform(-130, -50), rng.uniform(-40, 50), rng.uniform(-20, 40)])
            if self.liver.sdf(*c) < -depth:
                break
        return _tumor_blob(rng, c, diameter_mm, axis)

    def probe_dir(self, rng):
        return _unit(
            (-1.0, rng.uniform(-0.6, 0.3), rng.uniform(-0.2, 0.2))
        )  # tip -> skin, right lateral

    def anatomy(self, arng, tumor, small):
        t = self.tissue
        hu = self.tumor_hu

        def lesion(c: _Canvas):
            c.paint_shape(tumor, hu, tex={"fine": 8.0, "medium": 4.0})

        if small:
            return _local_anatomy(t, self.body, arng, t.liver, [], lesion)
        spine_y = self.spine_y
        liver = [
            self.liver,
            Blob.random(
                arng,
                (-10.0, -55.0, 45.0),
                (60.0, 35.0, 45.0),
                _frame((0.0, 0.2, 1.0), (1, 0.3, 0)),
                amp=0.05,
                n=4,
            ),
        ]
        kid_r = _kidney(arng, -1, (-72.0, 45.0, -62.0), (0.22, 0.25, 1.0), (0.85, -0.5, 0.0))
        gb = Blob.random(
            arng,
            (-40.0, -60.0, -25.0),
            (15.0, 14.0, 32.0),
            _frame((0.1, -0.5, 1.0), (1, 0, 0)),
            amp=0.03,
            n=2,
        )
        hilum = np.array([-35.0, -5.0, -5.0])
        vessels = []
        for k, (dirv, length) in enumerate(
            (
                ((-1.0, 0.1, 0.35), 55.0),
                ((-0.8, 0.6, 0.5), 50.0),
                ((-0.6, -0.5, 0.6), 50.0),
                ((-0.9, -0.1, -0.5), 45.0),
            )
        ):
            p1 = hilum + length * _unit(dirv)
            vessels.append(Tube(hilum, p1, 6.5 if k == 0 else 5.0, 3.5))
            for _j in range(2):
                d2 = _unit(np.asarray(dirv) + arng.normal(size=3) * 0.6)
                vessels.append(Tube(p1, p1 + arng.uniform(25, 40) * d2, 3.0, 1.4))
        an = _build_abdomen(
            t,
            self.body,
            arng,
            z_range=(-40.0, 55.0),
            spine_y=spine_y,
            kidneys=[{"blob": kid_r, "cysts": []}],
            liver=liver,
            spleen_c=None,
            gallbladder=gb,
            ribs=[(-1, 95.0, 2.2), (-1, 62.0, 2.3), (-1, 30.0, 2.2), (-1, -2.0, 1.8)],
            colon=[Tube((-95.0, -45.0, -70.0), (-70.0, -60.0, -35.0), 20.0, 19.0)],
            vessels_tree=vessels,
        )

        def great_vessels(c: _Canvas):
            c.paint_shape(
                Tube((16.0, spine_y - 30.0, -90.0), (14.0, spine_y - 28.0, 90.0), 11.0, 12.0),
                t.artery,
            )
            c.paint_shape(
                Tube((-24.0, spine_y - 30.0, -90.0), (-24.0, 22.0, 60.0), 12.0, 13.0), t.vein, pad=4
            )

        an.steps += [great_vessels, lesion]
        return an

    def finish(self, img, grid, rng, which):
        return _finish_ct(img, rng, sigma_noise=self.noise[which])


_HOSTS = {"mri": _RenalMRI, "ct": _LiverCT}


def _unambiguous(truth, centroid, octant, radius_mm: float) -> bool:
    """Tell whether the minimum is unambiguous.

    It lies in ``octant``, clear of the octant planes, and clearly below every other
    octant's minimum.
    """
    rel = np.asarray(truth["min_margin_point_lps"]) - centroid
    others = [
        v
        for k, v in truth["octant_min_margin_mm"].items()
        if k != truth["min_margin_octant"] and v is not None
    ]
    return bool(
        truth["min_margin_octant"] == octant
        and np.min(np.abs(rel)) >= min(OCTANT_CLEARANCE_MM, OCTANT_CLEARANCE_FRACTION * radius_mm)
        and min(others) - truth["min_margin_mm"]
        >= min(OCTANT_GAP_MM, OCTANT_GAP_FRACTION * radius_mm)
    )


def _grid_around(center, half_mm, spacing, rng) -> Grid:
    spacing = np.asarray(spacing, float)
    size = np.ceil(2 * np.asarray(half_mm) / spacing).astype(int) + 1
    origin = np.asarray(center) - (size - 1) / 2 * spacing + rng.uniform(-0.5, 0.5, 3) * spacing
    return Grid(
        tuple(int(s) for s in size),
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in origin),
    )


# =====================================================================================
# breathing: non-rigid motion of the anatomy away from the tumor

#: breathing moves the anatomy farther than this from the tumor centre (mm); within it the
#: true pre -> post map is exactly the rigid transform (enlarged to hold the ablation zone)
BREATHING_STILL_MM = 35.0
#: the displacement ramps up smoothly (cubic smoothstep) over this distance beyond the still
#: ball; with amplitudes up to 25 mm the map stays invertible (its gradient stays below 1)
BREATHING_RAMP_MM = 45.0


@dataclass
class Breathing:
    """Breathing-like motion of the anatomy around a still ball about the tumor.

    The displacement (pre space, LPS mm) is
    ``v(p) = a * s(r) * g(z) * d`` with ``r = |p - center|``,
    ``s(r) = smoothstep((r - still) / ramp)`` (0 in the still ball, 1 beyond
    ``still + ramp``), ``g(z) = 0.8 + 0.2 tanh((z - center_z) / 50)`` (the anatomy nearer
    the diaphragm moves more) and ``d`` a unit direction, mostly craniocaudal with an
    anterior-posterior part. The post image at post point ``q`` shows the anatomy at
    ``x - v(x)`` with ``x = T^-1(q)``: within the still ball the true map is exactly
    the rigid ``T``; far from it the anatomy is shifted by up to ``a`` mm.

    Parameters
    ----------
    center : numpy.ndarray
        Centre of the still ball (the tumor centre, LPS mm).
    amplitude_mm : float
        ``a``, the largest displacement (mm).
    direction : numpy.ndarray
        ``d``, a unit vector (LPS).
    still_mm : float
        Radius of the still ball (mm).
    ramp_mm : float
        Distance (mm) over which the displacement ramps up beyond the still ball.
    """

    center: np.ndarray
    amplitude_mm: float
    direction: np.ndarray
    still_mm: float = BREATHING_STILL_MM
    ramp_mm: float = BREATHING_RAMP_MM

    def displacement(self, points_lps) -> np.ndarray:
        """Return the displacement ``v`` at pre-space points.

        Parameters
        ----------
        points_lps : array_like, shape (N, 3) or (3,)
            Points in pre space (LPS mm).

        Returns
        -------
        numpy.ndarray, shape (N, 3)
            ``v(p)`` in mm (zero inside the still ball).
        """
        p = np.atleast_2d(np.asarray(points_lps, dtype=float))
        return np.stack(self._field(p[:, 0], p[:, 1], p[:, 2]), axis=-1)

    def _field(self, x, y, z):
        c = self.center
        r = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
        t = np.clip((r - self.still_mm) / self.ramp_mm, 0.0, 1.0)
        mag = self.amplitude_mm * t * t * (3.0 - 2.0 * t)
        mag = mag * (0.8 + 0.2 * np.tanh((z - c[2]) / 50.0))
        return tuple(mag * float(d) for d in self.direction)

    def info(self) -> dict[str, Any]:
        """Return the parameters, for ``truth["breathing"]`` (:meth:`from_info` reads them).

        Returns
        -------
        dict
            ``center_lps``, ``amplitude_mm``, ``direction``, ``still_mm``, ``ramp_mm``.
        """
        return {
            "center_lps": [float(v) for v in self.center],
            "amplitude_mm": float(self.amplitude_mm),
            "direction": [float(v) for v in self.direction],
            "still_mm": float(self.still_mm),
            "ramp_mm": float(self.ramp_mm),
        }

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Breathing:
        """Build the motion described by :meth:`info`.

        Parameters
        ----------
        info : dict
            As written by :meth:`info` (``truth["breathing"]`` of a breathing case).

        Returns
        -------
        Breathing
        """
        return cls(
            np.asarray(info["center_lps"], float),
            float(info["amplitude_mm"]),
            np.asarray(info["direction"], float),
            float(info["still_mm"]),
            float(info["ramp_mm"]),
        )


class _BreathingCanvas(_Canvas):
    """A post canvas whose voxels see the anatomy displaced by a :class:`Breathing` motion."""

    def __init__(self, grid, to_grid, tex, pv_mm, background, motion: Breathing):
        super().__init__(grid, to_grid, tex, pv_mm, background)
        vx, vy, vz = motion._field(self.X, self.Y, self.Z)
        self.X = (self.X - vx).astype(np.float32)
        self.Y = (self.Y - vy).astype(np.float32)
        self.Z = (self.Z - vz).astype(np.float32)
        self.reach = float(np.max(np.abs(motion.amplitude_mm)))

    def block(self, lo, hi):
        pad = self.reach + 1.0
        return super().block(np.asarray(lo, float) - pad, np.asarray(hi, float) + pad)


# =====================================================================================
# slice profile: a slice shows the anatomy averaged over its thickness

#: sub-slices are at most this far apart (mm) when a slice is averaged over its thickness
SLAB_SUBSLICE_MM = 1.0


def _slab_subslices(slice_mm: float) -> int:
    """Odd number of sub-slices, at most :data:`SLAB_SUBSLICE_MM` apart, across one slice."""
    n = math.ceil(float(slice_mm) / SLAB_SUBSLICE_MM)
    return max(1, n + (n + 1) % 2)


def _slab_grid(grid: Grid, k: int) -> Grid:
    """``grid`` with each slice replaced by ``k`` sub-slices evenly spread over its thickness."""
    if k == 1:
        return grid
    dz = grid.spacing[2] / k
    oz = grid.origin[2] - (k - 1) / 2 * dz
    return Grid(
        (grid.size[0], grid.size[1], grid.size[2] * k),
        (grid.spacing[0], grid.spacing[1], dz),
        (grid.origin[0], grid.origin[1], oz),
    )


def _slab_mean(img: np.ndarray, k: int) -> np.ndarray:
    """Average each run of ``k`` sub-slices (z, y, x) into one slice."""
    if k == 1:
        return img
    nz, ny, nx = img.shape
    return img.reshape(nz // k, k, ny, nx).mean(axis=1, dtype=np.float32)


# =====================================================================================
# the public generator


def synthetic_case(
    seed: int,
    *,
    modality: str = "mri",
    scenario: str | None = None,
    tumor_diameter_mm: float | None = None,
    octant: str | None = None,
    threshold_mm: float = 5.0,
    misregistration: bool = True,
    small: bool = False,
    slice_mm: float | None = None,
    breathing_mm: float = 0.0,
    slice_profile: bool = False,
) -> tuple[Case, dict[str, Any]]:
    """One synthetic ablation case with its exact ground truth.

    Parameters
    ----------
    seed : int
        Everything (anatomy, lesion, zone, misregistration, noise) follows from it.
    modality : {"mri", "ct"}
        ``"mri"``: renal cryoablation on T2-weighted MRI, 1.2 x 1.2 x 3 mm.
        ``"ct"``: liver microwave ablation on portal-venous CT (0.7-0.8 mm in-plane,
        2.5, 3 or 5 mm slices; 0.9 x 0.9 x 2.5 mm when ``small``).
    scenario : {"complete", "insufficient", "incomplete"}, optional
        Complete coverage with margin (MTM >= t + 1 mm), complete coverage with an
        insufficient margin (1 mm <= MTM <= t - 1 mm) or incomplete coverage
        (MTM <= -1 mm). Drawn from the seed when ``None``.
    tumor_diameter_mm : float, optional
        Maximum 3D tumor diameter, 10-50 mm (drawn from the seed when ``None``).
    octant : str, optional
        Octant of the minimal margin (one of ``margin.OCTANTS``; drawn when ``None``).
    threshold_mm : float
        The margin threshold ``t`` that defines the scenarios and the coverage class.
    misregistration : bool
        Move the patient between pre and post by 2-6 mm and 1-4 degrees (about the tumor).
        ``False``: post is acquired in the same patient position (identity transform).
    small : bool
        A field of view cropped tightly around the lesion (and 0.9 x 0.9 x 2.5 mm for CT),
        so that tens of cases generate in seconds.
    slice_mm : float, optional
        Slice thickness (mm) instead of the modality's (e.g. 5 mm CT); the lesion and the
        truths stay those of the seed.
    breathing_mm : float
        Breathing between pre and post (0 to 25 mm): beyond a still ball around the tumor
        (:data:`BREATHING_STILL_MM`, enlarged to hold the ablation zone) the anatomy is
        also displaced, smoothly, by up to this much, mostly craniocaudally
        (:class:`Breathing`). Near the tumor the true map stays the rigid transform, so a
        registration local to the tumor can recover it and a whole-image rigid fit cannot.
        The lesion, the truths and the images within the still ball are those of the seed
        without breathing. Use the full field of view: with ``small`` it barely reaches
        beyond the still ball.
    slice_profile : bool
        Each slice shows the anatomy averaged over its thickness (sub-slices at most
        :data:`SLAB_SUBSLICE_MM` apart), as a CT or 2D MRI slice does, instead of the
        anatomy at the slice centre. Off (the default, which keeps every seed's images
        as they were): a 5 mm slice is a thin section every 5 mm, whose fine texture
        aliases between slices, so linear interpolation across slices does not predict
        the other image and the mutual-information optimum itself moves (0.6-0.9 mm on
        5 mm CT without any breathing). The labels, the truths and the noise are the same
        either way; generating costs about 3 (2.5-3 mm slices) to 5 (5 mm) times more.

    Returns
    -------
    case : Case
        Pre and post images, tumor labels (pre grid), ablation labels (post grid), and
        ``case.transform`` set to the true pre -> post transform (ITK convention).
    truth : dict
        Exact truths of the continuous shapes: ``min_margin_mm``,
        ``min_margin_point_lps``, ``min_margin_octant``, ``octant_min_margin_mm``,
        ``complete_coverage``, ``coverage_class``, ``scenario``, ``threshold_mm``,
        ``tumor_centroid_lps``, ``tumor_volume_ml``, ``tumor_max_diameter_mm``,
        ``ablation_volume_ml``, ``true_transform`` (``transform.euler_params``),
        ``rotation_deg``, ``displacement_at_tumor_mm``, ``modality``, ``seed``; with
        breathing also ``breathing`` (:meth:`Breathing.info`).

    Raises
    ------
    AblationError
        An unknown modality, scenario or octant, a diameter outside 10-50 mm, or a
        breathing amplitude outside 0-25 mm.
    """
    if modality not in MODALITIES:
        raise AblationError(f"unknown modality '{modality}': choose one of {', '.join(MODALITIES)}")
    if scenario is not None and scenario not in SCENARIOS:
        raise AblationError(f"unknown scenario '{scenario}': choose one of {', '.join(SCENARIOS)}")
    if octant is not None and octant not in OCTANTS:
        raise AblationError(f"unknown octant '{octant}': choose one of {', '.join(OCTANTS)}")
    if tumor_diameter_mm is not None and not 10.0 <= float(tumor_diameter_mm) <= 50.0:
        raise AblationError("the tumor diameter must be between 10 and 50 mm")
    if slice_mm is not None and not (
        math.isfinite(float(slice_mm)) and 0.3 <= float(slice_mm) <= 10.0
    ):
        raise AblationError("the slice thickness must be between 0.3 and 10 mm")
    if not (math.isfinite(float(breathing_mm)) and 0.0 <= float(breathing_mm) <= 25.0):
        raise AblationError("the breathing amplitude must be between 0 and 25 mm")
    if not math.isfinite(threshold_mm) or threshold_mm < 2.0 * CLASS_CLEARANCE_MM + 0.1:
        raise AblationError(
            f"the threshold must be a number of mm >= {2 * CLASS_CLEARANCE_MM + 0.1:g}"
        )
    rng = np.random.default_rng([int(seed), MODALITIES.index(modality)])  # the lesion
    arng = np.random.default_rng([int(seed), MODALITIES.index(modality), 1])  # the surroundings
    scenario = scenario or str(rng.choice(SCENARIOS))
    diameter = (
        float(tumor_diameter_mm)
        if tumor_diameter_mm is not None
        else float(rng.uniform(10.0, 50.0))
    )
    host = _HOSTS[modality](arng, small)
    spacing = host.spacing if slice_mm is None else (*host.spacing[:2], float(slice_mm))

    # lesion + zone, redrawn until the octant of the minimum is unambiguous
    for _attempt in range(80):
        probe_dir = host.probe_dir(rng)
        tumor = host.tumor(rng, diameter, probe_dir)
        vol, centroid = blob_volume_centroid(tumor)
        oct_goal = octant or str(rng.choice(OCTANTS))
        target = _target_margin(rng, scenario, threshold_mm)
        zone = _place_zone(rng, tumor, centroid, oct_goal, target)
        truth = exact_margin(tumor, zone, centroid=centroid, n=8000)
        if not _unambiguous(truth, centroid, oct_goal, float(np.mean(tumor.semi))):
            continue
        truth = exact_margin(tumor, zone, centroid=centroid)
        if _unambiguous(truth, centroid, oct_goal, float(np.mean(tumor.semi))):
            break
    else:  # pragma: no cover - the loop practically always succeeds within a few draws
        raise AblationError(f"could not place an unambiguous minimum for seed {seed}")

    # misregistration: the patient moved between pre and post (rotation about the tumor)
    if misregistration:
        angle = float(rng.uniform(1.0, 4.0))
        shift = _unit(rng.normal(size=3)) * rng.uniform(2.0, 6.0)
        T = _rigid(rng.normal(size=3), angle, shift, tumor.center)
    else:
        T = _rigid((0.0, 0.0, 1.0), 0.0, (0.0, 0.0, 0.0), tumor.center)
    A, b = tfm.matrix_offset(T)

    # fields of view: around the lesion (small) or a targeted abdominal reconstruction
    ext = float(np.max(zone.semi)) + (15.0 if small else 45.0)
    half = np.array([ext, ext, ext * (0.8 if small else 0.7)])
    look = 0.5 * (tumor.center + zone.center)
    pre_grid = _grid_around(look, half, spacing, rng)
    post_grid = _grid_around(A @ look + b + rng.normal(size=3) * 3.0, half, spacing, rng)
    probes = _probes(rng, host, probe_dir, zone, T, post_grid)

    # painting: the surroundings and the acquisition noise come from their own stream
    anatomy = host.anatomy(arng, tumor, small)
    reach = 1.3 * half + 15.0  # the post grid seen from pre space: moved and turned a little
    tex = _Textures(arng, look - reach, look + reach)
    background = host.tissue.air
    k = _slab_subslices(spacing[2]) if slice_profile else 1
    pre_c = _Canvas(_slab_grid(pre_grid, k), (np.eye(3), np.zeros(3)), tex, host.pv, background)
    anatomy.render(pre_c)
    motion = None
    if breathing_mm > 0:
        # its own stream: the lesion, the surroundings and the noise stay those of the seed
        brng = np.random.default_rng([int(seed), MODALITIES.index(modality), 2])
        reach = float(np.linalg.norm(zone.center - tumor.center) + np.max(zone.semi)) + 3.0
        motion = Breathing(
            np.asarray(tumor.center, float),
            float(breathing_mm),
            _unit((brng.uniform(-0.15, 0.15), brng.uniform(-0.5, -0.2), -1.0)),
            max(BREATHING_STILL_MM, reach),
        )
        post_c = _BreathingCanvas(
            _slab_grid(post_grid, k), (A, b), tex, host.pv, background, motion
        )
    else:
        post_c = _Canvas(_slab_grid(post_grid, k), (A, b), tex, host.pv, background)
    anatomy.render(post_c)
    zb = zone.blob()
    if modality == "mri":
        _paint_ice(post_c, zb, probes)
    else:
        _paint_coagulation(post_c, zb, probes, arng)
    # labels at the voxel centres (the middle sub-slice), images averaged over the slab
    mid = slice(k // 2, None, k)
    tum = (tumor.rho(pre_c.X[mid], pre_c.Y[mid], pre_c.Z[mid]) < 1.0).astype(np.uint8)
    abl = (zb.rho(post_c.X[mid], post_c.Y[mid], post_c.Z[mid]) < 1.0).astype(np.uint8)
    pre_arr = host.finish(_slab_mean(pre_c.img, k), pre_grid, arng, 0)
    post_arr = host.finish(_slab_mean(post_c.img, k), post_grid, arng, 1)

    u = _directions(1500)
    surf = (u * _blob_radii(tumor, u)[:, None]) @ tumor.frame.T + tumor.center
    mtm = truth["min_margin_mm"]
    truth.update(
        {
            "seed": int(seed),
            "modality": modality,
            "scenario": scenario,
            "threshold_mm": float(threshold_mm),
            "complete_coverage": bool(mtm >= 0.0),
            "coverage_class": coverage_class(mtm, threshold_mm),
            "tumor_volume_ml": vol / 1000.0,
            "tumor_max_diameter_mm": geometry.max_pairwise_distance(surf),
            "ablation_volume_ml": zone.volume_ml,
            "tumor_center_lps": [float(v) for v in tumor.center],
            "ablation_center_lps": [float(v) for v in zone.center],
            "ablation_semi_axes_mm": [float(v) for v in zone.semi],
            "true_transform": tfm.euler_params(T),
            "rotation_deg": tfm.rotation_angle_deg(T),
            "displacement_at_tumor_mm": float(np.linalg.norm(A @ centroid + b - centroid)),
            "pre_spacing_mm": list(pre_grid.spacing),
        }
    )
    if motion is not None:
        truth["breathing"] = motion.info()
    kind = "renal cryoablation, MRI" if modality == "mri" else "liver microwave ablation, CT"
    title = f"Synthetic {kind} #{seed}"
    info = {
        "name": f"synthetic_{modality}_{seed}",
        "title": title,
        "synthetic": True,
        "description": f"{title}: tumor {truth['tumor_max_diameter_mm']:.0f} mm; generated by "
        "napari_ablation.core.synthetic (ground truth kept apart from the case).",
        **host.info,
    }
    case = Case(
        pre=pre_grid.image(pre_arr),
        post=post_grid.image(post_arr),
        tumor=pre_grid.image(tum),
        ablation=post_grid.image(abl),
        transform=T,
        info=info,
    )
    case.settings["threshold_mm"] = float(threshold_mm)
    return case, truth


def _probes(rng, host: _Host, probe_dir, zone: Zone, T, post_grid) -> list[Tube]:
    """Probes through the zone along its long axis, drawn in an axial plane of the post scan."""
    w = zone.frame[:, 2]
    direc = w if w @ probe_dir > 0 else -w
    base = _on_post_slice(zone.center, T, post_grid)
    tip0 = base - 0.55 * zone.semi[2] * direc
    e1 = _unit(
        np.cross(direc, (0.0, 0.0, 1.0))
        if abs(direc[2]) < 0.9
        else np.cross(direc, (1.0, 0.0, 0.0))
    )
    e2 = np.cross(direc, e1)
    out = []
    for k in range(host.n_probes):
        off = 0.0 if host.n_probes == 1 else 0.35 * zone.semi[0]
        ang = 2 * np.pi * k / host.n_probes + rng.uniform(-0.3, 0.3)
        tip = tip0 + off * (math.cos(ang) * e1 + math.sin(ang) * e2)
        entry = host.body.entry_point(tip, direc) + 15.0 * direc
        out.append(
            Tube(tip, entry, 1.6 if host.n_probes > 1 else 0.9, 1.6 if host.n_probes > 1 else 0.9)
        )
    return out


def _paint_ice(c: _Canvas, zone: Blob, probes) -> None:
    """Ice ball on T2 MRI: a signal void with a bright oedema rim, and the cryoprobes."""
    sl = c.block(*zone.bbox(6.0))
    if sl is not None:
        x, y, z = c.xyz(sl)
        dd = zone.sdf(x, y, z)
        rim = np.clip(1.0 - np.abs(dd - 1.5) / 2.5, 0, 1).astype(np.float32)
        c.img[sl] = np.where(dd > 0, c.img[sl] + rim * 180.0, c.img[sl])
        c.paint(sl, c.weight(dd), c._value(12.0, {"fine": 4.0}, sl))
    for p in probes:
        c.paint_shape(p, 8.0)


def _paint_coagulation(c: _Canvas, zone: Blob, probes, rng) -> None:
    """Paint a coagulation zone on CT.

    Hypodense with a thin hyperdense rim, gas bubbles, the antenna track.
    """
    sl = c.block(*zone.bbox(5.0))
    if sl is None:
        return
    x, y, z = c.xyz(sl)
    dd = zone.sdf(x, y, z)
    rim = np.clip(1.0 - np.abs(dd + 0.2) / 1.6, 0, 1).astype(np.float32)
    c.img[sl] = c.img[sl] + rim * 28.0
    c.paint(sl, c.weight(dd + 1.0), c._value(24.0, {"fine": 6.0, "medium": 3.0}, sl))
    for p in probes:
        c.paint_shape(p, -110.0)
        for _k in range(3):
            at = (
                p.p0
                + rng.uniform(0.0, 0.8) * zone.semi[2] * _unit(p.p1 - p.p0)
                + rng.normal(size=3) * 2.0
            )
            c.paint_shape(Blob(at, np.full(3, rng.uniform(0.8, 1.6))), -700.0)


def write_synthetic_cases(
    out: str | os.PathLike,
    n: int,
    *,
    seed: int = 0,
    modality: str = "mri",
    threshold_mm: float = 5.0,
    small: bool = False,
    scenarios: tuple[str, ...] | None = None,
) -> list[tuple[Path, dict[str, Any]]]:
    """Generate ``n`` varied cases into ``out/<id>/`` (a case folder + ``truth.json`` each).

    Parameters
    ----------
    out : path
        Folder to write into (created). Case ``i`` goes to ``out/case_<i+1:03d>`` and
        is named after that folder (the id :func:`.cohort.find_cases` gives it).
    n : int
        Number of cases (>= 1).
    seed : int
        Case ``i`` is ``synthetic_case(seed + i, ...)``.
    modality : {"mri", "ct", "mixed"}
        ``"mixed"`` alternates MRI and CT.
    threshold_mm : float
        Margin threshold of the scenarios and classes.
    small : bool
        Small fields of view (fast; see :func:`synthetic_case`).
    scenarios : tuple of str, optional
        Scenarios cycled over the cases (default: complete, insufficient, incomplete).
        The octant of the minimum goes through all 8 octants (in an order drawn from ``seed``).

    Returns
    -------
    list of (Path, dict)
        Each case folder and its truth (also written to ``<folder>/truth.json``).

    Raises
    ------
    AblationError
        Bad ``n``, modality or scenario.
    """
    if int(n) < 1:
        raise AblationError("the number of cases must be at least 1")
    if modality not in (*MODALITIES, "mixed"):
        raise AblationError(f"unknown modality '{modality}': choose mri, ct or mixed")
    scen = tuple(scenarios) if scenarios else SCENARIOS
    for s in scen:
        if s not in SCENARIOS:
            raise AblationError(f"unknown scenario '{s}': choose one of {', '.join(SCENARIOS)}")
    root = Path(out)
    octants = np.random.default_rng(int(seed)).permutation(
        len(OCTANTS)
    )  # every octant once per 8 cases
    written = []
    for i in range(int(n)):
        mod = MODALITIES[i % 2] if modality == "mixed" else modality
        case, truth = synthetic_case(
            seed + i,
            modality=mod,
            scenario=scen[i % len(scen)],
            octant=OCTANTS[octants[i % len(OCTANTS)]],
            threshold_mm=threshold_mm,
            small=small,
        )
        folder = root / f"case_{i + 1:03d}"
        case.info["name"] = folder.name  # the id `cohort run` gives it: one name for the case
        case.save(folder)
        write_text_atomic(folder / TRUTH_FILE, json.dumps(truth, indent=2))
        written.append((folder, truth))
    return written
