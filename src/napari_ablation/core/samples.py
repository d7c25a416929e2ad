"""Synthetic sample cases with exact ground truth (renal cryoablation MRI, liver microwave CT).

How the phantoms are made (this is what makes the ground truth exact):

* The anatomy is a set of continuous shapes defined in patient LPS millimetres
  (star-shaped smooth blobs for organs, elliptic cylinders for muscles, spine and
  vessels, tapered tubes for vessel trees, needles and ribs), painted in order like a
  painter's algorithm with a partial-volume ramp one voxel wide, and textured by smooth
  random fields that are also defined in patient space (so the texture moves with the
  anatomy).
* The pre image samples the anatomy at the voxel centres of the pre grid. The post image
  samples it at ``T^-1(q)`` for every voxel centre ``q`` of the post grid, where ``T`` is
  the known rigid transform in ITK convention (pre point -> post point), plus the ablation
  zone (ice ball / coagulation zone), needles and tracks, which are defined in patient
  (pre) space.
* Acquisition effects are applied per image on the grid: a slight partial-volume blur,
  a smooth receive-coil bias field (MRI, different on post), Rician (MRI) or Gaussian
  (CT) noise, drawn fresh for every image.
* Ground truth: tumor labels on the pre grid and ablation labels on the post grid are the
  analytic shapes evaluated at the voxel centres (uint8, 1 = foreground); the true
  transform is stored in ``case.info["true_transform"]`` (``transform.euler_params``) and
  in ``true_transform.tfm`` in the bundled folders; the true minimal treatment margin of
  the *continuous* shapes (dense surface sampling, accurate to ~0.02 mm) in
  ``case.info["true_min_margin_mm"]``.

No Qt, no napari.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from . import geometry
from . import transform as tfm
from .case import Case

SAMPLE_NAMES = ("renal_mri", "liver_ct")
SAMPLE_TITLES = {
    "renal_mri": "Renal cryoablation, MRI (synthetic)",
    "liver_ct": "Liver microwave ablation, CT (synthetic)",
}
TRUE_TRANSFORM_FILE = "true_transform.tfm"

# =====================================================================================
# primitives: approximate signed distances in mm (negative inside), evaluated on arrays


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _frame(long_axis, toward) -> np.ndarray:
    """Build the rotation matrix whose columns are (u, v, w).

    w is the long axis, u is ``toward`` made orthogonal to it.
    """
    w = _unit(long_axis)
    u = np.asarray(toward, dtype=float)
    u = _unit(u - (u @ w) * w)
    v = np.cross(w, u)
    return np.column_stack([u, v, w])


def _rodrigues(axis, angle_deg) -> np.ndarray:
    k = _unit(axis)
    a = math.radians(angle_deg)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * (K @ K)


@dataclass
class Blob:
    """A smooth star-shaped body, defined in patient LPS mm.

    An ellipsoid whose radius is modulated by a smooth function of the direction. Its
    surface is ``|q / a| = 1 + eps(u)`` in the local frame, with ``u = q / |q|``.

    Parameters
    ----------
    center : array_like
        Centre ``(x, y, z)``, LPS mm.
    semi : array_like
        Semi-axes along the frame columns ``(u, v, w)``, mm.
    frame : array_like, optional
        ``(3, 3)`` rotation whose columns are the body's axes (default: the patient
        axes).
    waves : tuple, optional
        Radius modulation ``((amplitude, unit vector (3,), frequency, phase), ...)``;
        empty for an exact ellipsoid.

    Examples
    --------
    >>> sphere = Blob((0.0, 0.0, 0.0), (10.0, 10.0, 10.0))
    >>> round(float(sphere.sdf(15.0, 0.0, 0.0)), 6), sphere.radius_along((0, 0, 1))
    (5.0, 10.0)
    """

    center: np.ndarray
    semi: np.ndarray  # semi-axes along the frame columns (u, v, w), mm
    frame: np.ndarray = field(default_factory=lambda: np.eye(3))
    waves: tuple = ()  # ((amp, unit vector (3,), frequency, phase), ...)

    def __post_init__(self):
        """Store the centre, semi-axes and frame as float arrays."""
        self.center = np.asarray(self.center, dtype=float)
        self.semi = np.asarray(self.semi, dtype=float)
        self.frame = np.asarray(self.frame, dtype=float)

    @classmethod
    def random(cls, rng, center, semi, frame=None, amp=0.05, n=5, freq=(1.5, 3.5)):
        """Make a blob with a random smooth radius modulation.

        Parameters
        ----------
        rng : numpy.random.Generator
            The random generator.
        center : array_like
            Centre ``(x, y, z)``, LPS mm.
        semi : array_like
            Semi-axes, mm.
        frame : array_like, optional
            ``(3, 3)`` rotation of the axes (default: the patient axes).
        amp : float, optional
            Largest relative amplitude of each wave.
        n : int, optional
            Number of waves.
        freq : tuple of float, optional
            Range of the wave frequencies.

        Returns
        -------
        Blob
            The body.
        """
        waves = []
        for _ in range(n):
            v = _unit(rng.normal(size=3))
            waves.append(
                (amp * rng.uniform(0.4, 1.0), v, rng.uniform(*freq), rng.uniform(0, 2 * np.pi))
            )
        return cls(center, semi, np.eye(3) if frame is None else frame, tuple(waves))

    def _eps(self, ux, uy, uz):
        e = 0.0
        for amp, v, f, ph in self.waves:
            e = e + amp * np.sin(f * (v[0] * ux + v[1] * uy + v[2] * uz) * np.pi + ph)
        return e

    def local(self, x, y, z):
        """Express patient points in the body's frame.

        Parameters
        ----------
        x, y, z : array_like
            LPS coordinates in mm (arrays of one shape).

        Returns
        -------
        tuple of numpy.ndarray
            The coordinates ``(u, v, w)`` relative to the centre, along the frame's
            axes, mm.
        """
        dx, dy, dz = x - self.center[0], y - self.center[1], z - self.center[2]
        F = self.frame
        qu = F[0, 0] * dx + F[1, 0] * dy + F[2, 0] * dz
        qv = F[0, 1] * dx + F[1, 1] * dy + F[2, 1] * dz
        qw = F[0, 2] * dx + F[1, 2] * dy + F[2, 2] * dz
        return qu, qv, qw

    def rho(self, x, y, z):
        """Return the normalised radius of points: below 1 inside, 1 on the surface.

        Parameters
        ----------
        x, y, z : array_like
            LPS coordinates in mm.

        Returns
        -------
        numpy.ndarray
            The normalised radius of each point.
        """
        qu, qv, qw = self.local(x, y, z)
        a = self.semi
        r = np.sqrt(qu * qu + qv * qv + qw * qw) + 1e-6
        rho = np.sqrt((qu / a[0]) ** 2 + (qv / a[1]) ** 2 + (qw / a[2]) ** 2)
        if self.waves:
            rho = rho / (1.0 + self._eps(qu / r, qv / r, qw / r))
        return rho

    def sdf(self, x, y, z, offset: float = 0.0):
        """Approximate the signed distance to the surface grown by ``offset``.

        The first-order distance, exact on the surface (and everywhere for a sphere).

        Parameters
        ----------
        x, y, z : array_like
            LPS coordinates in mm.
        offset : float, optional
            Growth of the surface in mm (negative shrinks it).

        Returns
        -------
        numpy.ndarray
            Signed distance in mm, negative inside.
        """
        qu, qv, qw = self.local(x, y, z)
        a = self.semi
        r = np.sqrt(qu * qu + qv * qv + qw * qw) + 1e-6
        nu, nv, nw = qu / a[0], qv / a[1], qw / a[2]
        rho0 = np.sqrt(nu * nu + nv * nv + nw * nw) + 1e-9
        grad = np.sqrt((nu / a[0]) ** 2 + (nv / a[1]) ** 2 + (nw / a[2]) ** 2) / rho0  # |grad rho0|
        rho = rho0
        if self.waves:
            rho = rho0 / (1.0 + self._eps(qu / r, qv / r, qw / r))
        # rho - 1 divided by the gradient magnitude: first-order distance, exact on the surface
        return (rho - 1.0) * (rho0 / np.maximum(rho, 1e-6)) / np.maximum(grad, 1e-9) - offset

    def radius_along(self, u_world) -> float:
        """Measure the distance from the centre to the surface along a direction.

        Parameters
        ----------
        u_world : array_like
            A direction in patient LPS (need not be unit length).

        Returns
        -------
        float
            The distance in mm.
        """
        u = self.frame.T @ _unit(u_world)
        base = 1.0 / np.sqrt(((u / self.semi) ** 2).sum())
        eps = self._eps(u[0], u[1], u[2]) if self.waves else 0.0
        return float(base * (1.0 + eps))

    def surface_points(self, n: int) -> np.ndarray:
        """Sample points on the surface along evenly spread (Fibonacci) directions.

        Parameters
        ----------
        n : int
            Number of points.

        Returns
        -------
        numpy.ndarray
            ``(n, 3)`` surface points, LPS mm.
        """
        i = np.arange(n) + 0.5
        phi = np.arccos(1 - 2 * i / n)
        theta = np.pi * (1 + 5**0.5) * i
        u = np.column_stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)])
        base = 1.0 / np.sqrt(((u / self.semi) ** 2).sum(axis=1))
        eps = self._eps(u[:, 0], u[:, 1], u[:, 2]) if self.waves else 0.0
        q = u * (base * (1.0 + eps))[:, None]
        return q @ self.frame.T + self.center

    def inside(self, pts: np.ndarray) -> np.ndarray:
        """Tell which points lie inside the body.

        Parameters
        ----------
        pts : numpy.ndarray
            ``(n, 3)`` points, LPS mm.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` booleans.
        """
        p = np.asarray(pts, dtype=float)
        return self.rho(p[:, 0], p[:, 1], p[:, 2]) < 1.0

    def bbox(self, pad: float = 0.0):
        """Bound the body by an axis-aligned box.

        Parameters
        ----------
        pad : float, optional
            Margin added on every side, mm.

        Returns
        -------
        lo : numpy.ndarray
            The low corner ``(x, y, z)``, LPS mm.
        hi : numpy.ndarray
            The high corner, LPS mm.
        """
        amp = sum(abs(w[0]) for w in self.waves)
        ext = float(self.semi.max()) * (1 + amp) + pad
        return self.center - ext, self.center + ext


@dataclass
class Tube:
    """A tapered segment (a vessel, a needle, a rib), in patient LPS mm.

    Parameters
    ----------
    p0 : array_like
        First end ``(x, y, z)``, LPS mm.
    p1 : array_like
        Second end, LPS mm.
    r0 : float
        Radius at ``p0``, mm.
    r1 : float
        Radius at ``p1``, mm.

    Examples
    --------
    >>> tube = Tube((0.0, 0.0, 0.0), (0.0, 0.0, 10.0), 2.0, 2.0)
    >>> float(tube.sdf(5.0, 0.0, 5.0))
    3.0
    """

    p0: np.ndarray
    p1: np.ndarray
    r0: float
    r1: float

    def __post_init__(self):
        """Store the ends as float arrays."""
        self.p0 = np.asarray(self.p0, dtype=float)
        self.p1 = np.asarray(self.p1, dtype=float)

    def sdf(self, x, y, z, offset: float = 0.0):
        """Compute the signed distance to the tube's surface grown by ``offset``.

        Parameters
        ----------
        x, y, z : array_like
            LPS coordinates in mm.
        offset : float, optional
            Growth of the surface in mm.

        Returns
        -------
        numpy.ndarray
            Signed distance in mm, negative inside.
        """
        d = self.p1 - self.p0
        L2 = float(d @ d)
        t = ((x - self.p0[0]) * d[0] + (y - self.p0[1]) * d[1] + (z - self.p0[2]) * d[2]) / L2
        t = np.clip(t, 0.0, 1.0)
        ex = x - (self.p0[0] + t * d[0])
        ey = y - (self.p0[1] + t * d[1])
        ez = z - (self.p0[2] + t * d[2])
        return np.sqrt(ex * ex + ey * ey + ez * ez) - (self.r0 + (self.r1 - self.r0) * t) - offset

    def bbox(self, pad: float = 0.0):
        """Bound the tube by an axis-aligned box.

        Parameters
        ----------
        pad : float, optional
            Margin added on every side, mm.

        Returns
        -------
        lo : numpy.ndarray
            The low corner ``(x, y, z)``, LPS mm.
        hi : numpy.ndarray
            The high corner, LPS mm.
        """
        r = max(self.r0, self.r1) + pad
        return np.minimum(self.p0, self.p1) - r, np.maximum(self.p0, self.p1) + r


def _ellcyl(x, y, cx, cy, ax, ay, wob=None, z=None):
    """Approximate the signed distance (mm) to an elliptic cylinder along z.

    ``wob`` is an optional seed for a smooth, organic modulation of the outline (varying
    with z).
    """
    nx, ny = (x - cx) / ax, (y - cy) / ay
    rho = np.sqrt(nx * nx + ny * ny) + 1e-9
    grad = np.sqrt((nx / ax) ** 2 + (ny / ay) ** 2) / rho
    if wob is not None:
        r = np.random.default_rng(wob)
        ang = np.arctan2(ny, nx)
        zz = 0.0 if z is None else z
        mod = 1.0
        for k in (2, 3, 4):
            mod = mod + r.uniform(0.02, 0.06) / k**0.5 * np.sin(
                k * ang + r.uniform(0, 6.3) + r.uniform(-0.03, 0.03) * zz
            )
        rho = rho / mod
    return (rho - 1.0) / np.maximum(grad, 1e-9)


# =====================================================================================
# the renderer: one grid, seen from patient space through a rigid map


@dataclass
class Grid:
    """An image grid with identity direction, on which a phantom is sampled.

    Parameters
    ----------
    size : tuple of int
        Voxels ``(x, y, z)``.
    spacing : tuple of float
        Voxel size ``(x, y, z)``, mm.
    origin : tuple of float
        Centre of the first voxel ``(x, y, z)``, LPS mm.

    Examples
    --------
    >>> import numpy as np
    >>> grid = Grid((4, 3, 2), (0.75, 0.75, 3.0), (0.0, 0.0, 0.0))
    >>> grid.shape, grid.image(np.zeros(grid.shape, np.uint8)).GetSize()
    ((2, 3, 4), (4, 3, 2))
    """

    size: tuple  # (x, y, z)
    spacing: tuple  # (x, y, z) mm
    origin: tuple  # (x, y, z) mm, LPS, identity direction

    def image(self, arr_zyx: np.ndarray) -> sitk.Image:
        """Wrap an array sampled on this grid as a SimpleITK image.

        Parameters
        ----------
        arr_zyx : numpy.ndarray
            The voxels, shape :attr:`shape` ``(z, y, x)``.

        Returns
        -------
        SimpleITK.Image
            The image with this grid's spacing and origin, identity direction.
        """
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr_zyx))
        img.SetSpacing([float(s) for s in self.spacing])
        img.SetOrigin([float(o) for o in self.origin])
        img.SetDirection(geometry.IDENTITY)
        return img

    @property
    def shape(self):
        """The array shape ``(z, y, x)`` of the grid."""
        return tuple(int(s) for s in self.size[::-1])


class _Textures:
    """Smooth random fields in patient space (unit standard deviation), sampled trilinearly."""

    def __init__(self, rng, lo, hi):
        self.lo = np.asarray(lo, dtype=float)
        self.fields = {}
        for name, step, sigma in (
            ("fine", 1.5, 0.8),
            ("medium", 3.0, 1.6),
            ("coarse", 6.0, 1.7),
            ("bowel1", 4.0, 2.2),
            ("bowel2", 4.0, 2.2),
        ):
            n = np.ceil((np.asarray(hi) - self.lo) / step).astype(int) + 2
            f = rng.standard_normal(size=tuple(n[::-1])).astype(np.float32)  # (z, y, x)
            f = ndimage.gaussian_filter(f, sigma, mode="wrap")
            f /= f.std() + 1e-12
            self.fields[name] = (step, f)

    def sample(self, name, x, y, z):
        step, f = self.fields[name]
        coords = np.empty((3, x.size), dtype=np.float32)
        for k, (v, lo) in enumerate(((z, self.lo[2]), (y, self.lo[1]), (x, self.lo[0]))):
            np.subtract(v.reshape(-1), np.float32(lo), out=coords[k])
            coords[k] *= np.float32(1.0 / step)
        out = ndimage.map_coordinates(
            f, coords, order=1, mode="nearest", prefilter=False, output=np.float32
        )
        return out.reshape(x.shape)


class _Canvas:
    """Patient-space anatomy painted on one image grid.

    ``to_grid`` is the rigid map from patient (pre) space to this grid's physical space
    (identity for pre, ``T`` for post); voxel centre ``q`` shows the anatomy at
    ``to_grid^-1(q)``.
    """

    def __init__(
        self,
        grid: Grid,
        to_grid: tuple[np.ndarray, np.ndarray],
        tex: _Textures,
        pv_mm: float,
        background: float,
    ):
        self.grid = grid
        A, b = to_grid
        self.A, self.b = np.asarray(A, float), np.asarray(b, float)
        Ai = self.A.T  # inverse rotation
        bi = -Ai @ self.b
        o, s, n = np.asarray(grid.origin), np.asarray(grid.spacing), grid.size
        qx = (o[0] + s[0] * np.arange(n[0])).astype(np.float64)
        qy = (o[1] + s[1] * np.arange(n[1])).astype(np.float64)
        qz = (o[2] + s[2] * np.arange(n[2])).astype(np.float64)
        QZ, QY, QX = qz[:, None, None], qy[None, :, None], qx[None, None, :]
        self.X = (Ai[0, 0] * QX + Ai[0, 1] * QY + Ai[0, 2] * QZ + bi[0]).astype(np.float32)
        self.Y = (Ai[1, 0] * QX + Ai[1, 1] * QY + Ai[1, 2] * QZ + bi[1]).astype(np.float32)
        self.Z = (Ai[2, 0] * QX + Ai[2, 1] * QY + Ai[2, 2] * QZ + bi[2]).astype(np.float32)
        self.tex = tex
        self._tex_cache = {}
        self.pv = float(pv_mm)
        self.img = np.full(grid.shape, background, dtype=np.float32)
        self.full = (slice(None), slice(None), slice(None))

    # -- geometry helpers
    def block(self, lo, hi):
        """Find the array slices (z, y, x) of this grid that see the patient box [lo, hi].

        ``None`` if there are none.
        """
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        corners = np.array(
            [
                [lo[0] if i == 0 else hi[0], lo[1] if j == 0 else hi[1], lo[2] if k == 0 else hi[2]]
                for i in (0, 1)
                for j in (0, 1)
                for k in (0, 1)
            ]
        )
        q = corners @ self.A.T + self.b
        idx = (q - np.asarray(self.grid.origin)) / np.asarray(self.grid.spacing)
        ilo = np.floor(idx.min(axis=0)).astype(int) - 1
        ihi = np.ceil(idx.max(axis=0)).astype(int) + 2
        n = np.asarray(self.grid.size)
        ilo, ihi = np.clip(ilo, 0, n), np.clip(ihi, 0, n)
        if np.any(ihi <= ilo):
            return None
        return (slice(ilo[2], ihi[2]), slice(ilo[1], ihi[1]), slice(ilo[0], ihi[0]))

    def xyz(self, sl):
        return self.X[sl], self.Y[sl], self.Z[sl]

    def texture(self, name, sl):
        if sl == self.full:
            if name not in self._tex_cache:
                self._tex_cache[name] = self.tex.sample(name, self.X, self.Y, self.Z)
            return self._tex_cache[name]
        if name in self._tex_cache:
            return self._tex_cache[name][sl]
        x, y, z = self.xyz(sl)
        return self.tex.sample(name, x, y, z)

    def weight(self, d):
        """Partial-volume occupancy from a signed distance (linear ramp one ``pv`` wide)."""
        return np.clip(0.5 - d / self.pv, 0.0, 1.0).astype(np.float32)

    # -- painting
    def paint(self, sl, w, value):
        if sl is None:
            return
        region = self.img[sl]
        region += w * (value - region)

    def paint_ellcyl(self, cx, cy, ax, ay, value, *, wob=None, zlim=(-1e3, 1e3)):
        """Paint an elliptic cylinder along z (e.g. the flattened IVC)."""
        sl = self.block((cx - ax - 8, cy - ay - 8, zlim[0]), (cx + ax + 8, cy + ay + 8, zlim[1]))
        if sl is None:
            return
        x, y, z = self.xyz(sl)
        self.paint(sl, self.weight(_ellcyl(x, y, cx, cy, ax, ay, wob=wob, z=z)), value)

    def paint_shape(self, shape, value, *, offset=0.0, tex=None, pad=2.0, clip=False):
        """Paint a Blob/Tube: ``value`` (number) plus optional texture ``{(field): amplitude}``."""
        lo, hi = shape.bbox(pad + max(offset, 0.0))
        sl = self.block(lo, hi)
        if sl is None:
            return None
        x, y, z = self.xyz(sl)
        d = shape.sdf(x, y, z, offset)
        w = self.weight(d)
        if clip and getattr(self, "cavity", None) is not None:
            w = w * self.cavity[sl]
        if not np.any(w):
            return None
        self.paint(sl, w, self._value(value, tex, sl))
        return sl, w

    def _value(self, value, tex, sl):
        if not tex:
            return np.float32(value)
        v = np.float32(value)
        for name, amp in tex.items():
            v = v + np.float32(amp) * self.texture(name, sl)
        return v


# =====================================================================================
# anatomy


@dataclass
class _Tissue:
    """Intensities of one modality (MR: arbitrary units 0..1000; CT: HU)."""

    air: float
    skin: float
    fat: float
    visceral_fat: float
    muscle: float
    liver: float
    liver_vessel: float
    spleen: float
    pancreas: float
    cortex: float
    medulla: float
    sinus_fat: float
    cyst: float
    artery: float
    vein: float
    bone_cortex: float
    marrow: float
    disc: float
    csf: float
    cord: float
    bowel_wall: float
    bowel_fluid: float
    gas: float
    gallbladder: float
    lung: float
    tumor: float


MR_T2 = _Tissue(
    air=0.0,
    skin=320.0,
    fat=640.0,
    visceral_fat=600.0,
    muscle=190.0,
    liver=250.0,
    liver_vessel=60.0,
    spleen=440.0,
    pancreas=330.0,
    cortex=440.0,
    medulla=600.0,
    sinus_fat=600.0,
    cyst=960.0,
    artery=35.0,
    vein=55.0,
    bone_cortex=30.0,
    marrow=330.0,
    disc=520.0,
    csf=900.0,
    cord=380.0,
    bowel_wall=300.0,
    bowel_fluid=780.0,
    gas=15.0,
    gallbladder=950.0,
    lung=25.0,
    tumor=300.0,
)

CT_PV = _Tissue(
    air=-1000.0,
    skin=40.0,
    fat=-100.0,
    visceral_fat=-95.0,
    muscle=50.0,
    liver=75.0,
    liver_vessel=165.0,
    spleen=110.0,
    pancreas=95.0,
    cortex=175.0,
    medulla=145.0,
    sinus_fat=-90.0,
    cyst=8.0,
    artery=175.0,
    vein=155.0,
    bone_cortex=950.0,
    marrow=230.0,
    disc=85.0,
    csf=10.0,
    cord=35.0,
    bowel_wall=90.0,
    bowel_fluid=20.0,
    gas=-950.0,
    gallbladder=10.0,
    lung=-860.0,
    tumor=35.0,
)


@dataclass
class _Body:
    """Axial body contour: a superellipse with separate anterior/posterior extents."""

    a: float  # half-width left-right
    b_ant: float
    b_post: float
    n: float = 2.3
    cy: float = 0.0
    fat_base: float = 16.0
    waves: tuple = ()

    def radius(self, th, z):
        c, s = np.cos(th), np.sin(th)
        b = np.where(s < 0, self.b_ant, self.b_post)
        r = (np.abs(c / self.a) ** self.n + np.abs(s / b) ** self.n) ** (-1.0 / self.n)
        for amp, k, ph, kz in self.waves:
            r = r * (1 + amp * np.sin(k * th + ph + kz * z))
        # a shallow groove over the spine (posterior midline)
        r = r * (1 - 0.035 * np.exp(-(((th - np.pi / 2) / 0.12) ** 2)))
        return r

    def polar(self, x, y):
        dx, dy = x, y - self.cy
        return np.sqrt(dx * dx + dy * dy), np.arctan2(dy, dx)

    def fat_thickness(self, th):
        # thicker over the flanks and the lower anterior wall, thin over the spine
        s, c = np.sin(th), np.cos(th)
        t = self.fat_base * (1.0 + 0.35 * c * c - 0.25 * s + 0.3 * np.clip(s, 0, 1) * c * c)
        return t * (1 - 0.55 * np.exp(-(((th - np.pi / 2) / 0.35) ** 2)))

    def muscle_thickness(self, th):
        s, c = np.sin(th), np.cos(th)
        # obliques laterally (~12 mm), rectus anteriorly (~9 mm) with the linea alba at the midline
        t = 7.0 + 6.0 * c * c + 3.0 * np.clip(-s, 0, 1)
        t = t * (1 - 0.8 * np.exp(-(((th + np.pi / 2) / 0.06) ** 2)))
        return t

    def entry_point(self, start, direction, z=None):
        """First point outside the body walking from ``start`` along ``direction``."""
        p = np.asarray(start, float)
        d = _unit(direction)
        for t in np.arange(0, 400, 0.25):
            q = p + t * d
            r, th = self.polar(q[0], q[1])
            if r > self.radius(th, q[2]):
                return q
        return p + 400 * d


class _Anatomy:
    """The patient: a list of painting steps, each ``fn(canvas)``."""

    def __init__(self, tissue: _Tissue, body: _Body, rng):
        self.t = tissue
        self.body = body
        self.rng = rng
        self.steps = []

    def render(self, canvas: _Canvas):
        for step in self.steps:
            step(canvas)
        return canvas


def _build_abdomen(
    t: _Tissue,
    body: _Body,
    rng,
    *,
    z_range,
    spine_y,
    kidneys,
    liver,
    spleen_c,
    gallbladder,
    extra_blobs=(),
    lung=None,
    ribs=(),
    colon=(),
    vessels_tree=(),
):
    """Shared abdominal anatomy; returns an _Anatomy whose steps paint it in order."""
    an = _Anatomy(t, body, rng)
    is_ct = t.air < -500

    def muscle_value(c: _Canvas, sl):
        """Muscle with fine texture and a little fatty marbling."""
        v = c._value(t.muscle, {"fine": (t.muscle * 0.08 if not is_ct else 6.0)}, sl)
        marbling = np.clip((c.texture("medium", sl) - 1.5) / 0.4, 0, 1) * 0.6
        return v + marbling * (t.fat - t.muscle)

    # ---- body wall: skin, subcutaneous fat, muscle, visceral fat with bowel
    def body_wall(c: _Canvas):
        sl = c.full
        x, y, z = c.xyz(sl)
        r, th = body.polar(x, y)
        R = body.radius(th, z)
        d = r - R
        c.paint(sl, c.weight(d), t.skin)
        c.paint(
            sl,
            c.weight(d + 2.0),
            c._value(
                t.fat,
                {
                    "fine": (t.fat * 0.03 if not is_ct else 6.0),
                    "coarse": (t.fat * 0.02 if not is_ct else 4.0),
                },
                sl,
            ),
        )
        tf = body.fat_thickness(th)
        c.polar = (r, th, R, tf)
        med = c.texture("medium", sl)
        # fibrous septa in the subcutaneous fat: thin sheets of a smooth random field
        septa = np.clip(1.0 - np.abs(med + 0.7) / 0.06, 0, 1) * c.weight(d + 3.0) * 0.45
        c.paint(sl, septa, t.muscle)
        c.paint(sl, c.weight(d + tf), muscle_value(c, sl))
        tm = body.muscle_thickness(th)
        wv = c.weight(d + tf + tm)
        c.cavity = wv  # organs stay inside the abdominal wall
        c.paint(
            sl,
            wv,
            c._value(t.visceral_fat, {"fine": (t.visceral_fat * 0.03 if not is_ct else 6.0)}, sl),
        )
        # small mesenteric / retroperitoneal vessels: thin sheets of a smooth random field
        c.paint(
            sl,
            wv * np.clip(1.0 - np.abs(med - 0.4) / 0.07, 0, 1) * 0.55,
            t.vein if is_ct else t.vein * 2.0,
        )
        # bowel loops: tubes where two smooth random fields are both near zero (anterior cavity)
        sl = c.block((-400.0, -400.0, -400.0), (400.0, spine_y - 16.0, 400.0))
        if sl is None:
            return
        x, y, z = c.xyz(sl)
        wv = wv[sl]
        f1 = c.texture("bowel1", sl)
        f2 = c.texture("bowel2", sl)
        rad = np.sqrt(f1 * f1 + f2 * f2)
        fine = c.texture("fine", sl)
        med = c.texture("medium", sl)
        anterior = np.clip((spine_y - 18.0 - y) / 20.0, 0, 1) * wv
        lumen_r, wall_w = 0.95, 0.2
        w_out = np.clip((lumen_r + wall_w - rad) / 0.05 + 0.5, 0, 1) * anterior
        w_in = np.clip((lumen_r - rad) / 0.05 + 0.5, 0, 1) * anterior
        c.paint(sl, w_out, t.bowel_wall + fine * (t.bowel_wall * 0.06 if not is_ct else 8.0))
        gas_mix = np.clip(0.5 + (med * 1.2 + 0.4 * fine - 1.5) * 3.0, 0, 1)
        collapsed = np.clip(0.5 + (c.texture("coarse", sl) - 0.3) * 2.0, 0, 1)
        content = t.bowel_fluid + collapsed * (t.bowel_wall - t.bowel_fluid) * 0.7
        content = (
            content
            + gas_mix * (t.gas - content)
            + fine * (t.bowel_fluid * 0.05 if not is_ct else 10.0)
        )
        c.paint(sl, w_in, content)

    an.steps.append(body_wall)

    # ---- posterior muscles (elliptic cylinders; psoas grows caudally)
    def muscles(c: _Canvas):
        sl = c.full
        x, y, z = c.xyz(sl)
        mus = muscle_value(c, sl)
        for side in (-1, 1):
            # erector spinae
            s0 = 11 if side > 0 else 17
            d = _ellcyl(x, y, side * 33.0, spine_y + 44.0, 27.0, 19.0, wob=s0, z=z)
            c.paint(sl, c.weight(d), mus)
            # quadratus lumborum
            d = _ellcyl(x, y, side * 64.0, spine_y + 26.0, 19.0, 9.0, wob=s0 + 2, z=z)
            c.paint(sl, c.weight(d), mus)
            # psoas (bigger caudally)
            g = np.clip(1.0 - 0.005 * (z - z_range[0]), 0.45, 1.2)
            d = _ellcyl(
                x, y, side * (33.0 + 6.0 * g), spine_y - 4.0, 13.0 * g, 15.0 * g, wob=s0 + 3, z=z
            )
            c.paint(sl, c.weight(d), mus)

    # ---- spine: vertebral bodies and discs, canal, posterior elements
    def spine(c: _Canvas):
        sl = c.block((-70, spine_y - 30, z_range[0] - 20), (70, spine_y + 60, z_range[1] + 20))
        if sl is None:
            return
        x, y, z = c.xyz(sl)
        period, disc_h = 33.0, 8.0
        phase = np.mod(z - 3.0, period)  # discs where phase < disc_h
        in_disc = np.clip(1.0 - np.abs(phase - disc_h / 2) / (disc_h / 2 + 1.2), 0, 1) ** 0.5
        vb = _ellcyl(x, y, 0.0, spine_y, 23.0, 17.0)
        # cortex shell then marrow
        c.paint(sl, c.weight(vb), t.bone_cortex)
        marrow = c._value(t.marrow, {"fine": (t.marrow * 0.10 if not is_ct else 40.0)}, sl)
        c.paint(sl, c.weight(vb + 1.8), marrow)
        c.paint(sl, c.weight(vb + 0.5) * in_disc, t.disc)
        # posterior ring (pedicles + laminae), transverse and spinous processes
        level = np.clip(1.0 - np.abs(phase - (disc_h + (period - disc_h) / 2)) / 10.0, 0, 1)
        level = np.clip(level * 2.0, 0, 1)
        ring = _ellcyl(x, y, 0.0, spine_y + 25.0, 15.0, 14.0)
        c.paint(sl, c.weight(ring) * np.clip(level + 0.35, 0, 1), t.bone_cortex)
        c.paint(sl, c.weight(ring + 2.0) * np.clip(level + 0.35, 0, 1), marrow)
        for side in (-1, 1):
            tp = _ellcyl(x, y, side * 32.0, spine_y + 22.0, 16.0, 4.0)
            c.paint(sl, c.weight(tp) * level, t.bone_cortex)
            c.paint(sl, c.weight(tp + 1.5) * level, marrow)
        sp = _ellcyl(x, y, 0.0, spine_y + 45.0, 4.0, 14.0)
        c.paint(sl, c.weight(sp) * level, t.bone_cortex)
        c.paint(sl, c.weight(sp + 1.3) * level, marrow)
        canal = _ellcyl(x, y, 0.0, spine_y + 24.0, 10.0, 8.5)
        c.paint(sl, c.weight(canal), t.csf)
        cord = _ellcyl(x, y, 0.0, spine_y + 23.0, 4.5, 3.5)
        c.paint(sl, c.weight(cord), t.cord)

    # ---- ribs: flat tubes following the body wall, descending anteriorly
    def paint_ribs(c: _Canvas):
        if not ribs:
            return
        for side, z0, th_end in ribs:
            zlo = z0 - 0.30 * th_end * 175.0 - 10.0
            sl = c.block((-400.0, -400.0, zlo), (400.0, 400.0, z0 + 10.0))
            if sl is None:
                continue
            _x, _y, z = c.xyz(sl)
            r, th, R, depth = (a[sl] for a in c.polar)
            depth = depth + 6.0
            # angle from the posterior midline, positive towards ``side`` (LPS: +x is left)
            phi = (np.pi / 2 - th) if side > 0 else (th - np.pi / 2)
            phi = np.mod(phi + np.pi, 2 * np.pi) - np.pi
            arc = np.clip(phi, 0, None) * R
            zc = z0 - 0.30 * arc
            on = (phi > 0.35) & (phi < th_end)
            dr = (r - (R - depth)) / 3.8
            dz = (z - zc) / 5.5
            rho = np.sqrt(dr * dr + dz * dz)
            w_c = np.clip(0.5 - (rho - 1.0) * 3.8 / c.pv, 0, 1) * on
            w_m = np.clip(0.5 - (rho - 0.6) * 3.8 / c.pv, 0, 1) * on
            c.paint(sl, w_c.astype(np.float32), t.bone_cortex)
            c.paint(sl, w_m.astype(np.float32), t.marrow)

    # ---- colon segments (tubes with mottled content)
    def paint_colon(c: _Canvas):
        for tube in colon:
            res = c.paint_shape(tube, t.bowel_wall)
            if res is None:
                continue
            inner = Tube(tube.p0, tube.p1, tube.r0 - 3.0, tube.r1 - 3.0)
            lo, hi = inner.bbox(2.0)
            sl = c.block(lo, hi)
            if sl is None:
                continue
            x, y, z = c.xyz(sl)
            w = c.weight(inner.sdf(x, y, z))
            med = c.texture("medium", sl)
            fine = c.texture("fine", sl)
            mix = np.clip(0.5 + (med + 0.6 * fine) * 1.5, 0, 1)
            stool = (t.bowel_fluid * 0.55 if not is_ct else 30.0) + (
                fine * (80.0 if not is_ct else 40.0)
            )
            c.paint(sl, w, stool + mix * (t.gas - stool))

    # ---- lung base (above the diaphragm) behind the liver
    def paint_lung(c: _Canvas):
        if lung is None:
            return
        c.paint_shape(lung, t.muscle, offset=3.0, clip=True)  # diaphragm
        c.paint_shape(lung, t.lung, clip=True, tex={"fine": (5.0 if not is_ct else 30.0)})

    # ---- liver (with vessels), gallbladder, spleen, pancreas
    def paint_liver(c: _Canvas):
        inner = np.zeros(c.img.shape, np.float32)  # liver shrunk by 3 mm: where vessels may run
        for blob in liver:
            sl = c.block(*blob.bbox(2.0))
            if sl is None:
                continue
            x, y, z = c.xyz(sl)
            d = blob.sdf(x, y, z)
            w = c.weight(d) * c.cavity[sl]
            c.paint(
                sl,
                w,
                c._value(
                    t.liver,
                    {
                        "fine": (t.liver * 0.05 if not is_ct else 7.0),
                        "coarse": (t.liver * 0.03 if not is_ct else 4.0),
                    },
                    sl,
                ),
            )
            np.maximum(inner[sl], c.weight(d + 3.0) * c.cavity[sl], out=inner[sl])
        for tube in vessels_tree:
            lo, hi = tube.bbox(2.0)
            sl = c.block(lo, hi)
            if sl is None:
                continue
            x, y, z = c.xyz(sl)
            w = c.weight(tube.sdf(x, y, z))
            value = t.liver_vessel if tube.r0 < 9 else t.vein
            c.paint(sl, w * inner[sl], value)
        if gallbladder is not None:
            c.paint_shape(
                gallbladder, t.gallbladder, clip=True, tex={"fine": (20.0 if not is_ct else 4.0)}
            )
        if spleen_c is not None:
            c.paint_shape(
                spleen_c, t.spleen, clip=True, tex={"fine": (t.spleen * 0.05 if not is_ct else 7.0)}
            )
        for blob, kind in extra_blobs:
            c.paint_shape(
                blob,
                getattr(t, kind),
                tex={"fine": (getattr(t, kind) * 0.08 if not is_ct else 8.0)},
            )

    # ---- kidneys: perirenal fat, cortex, medulla (pyramids), sinus fat, hilum vessels; cysts
    def paint_kidneys(c: _Canvas):
        for kid in kidneys:
            blob = kid["blob"]
            c.paint_shape(
                blob,
                t.visceral_fat,
                offset=7.0,
                clip=True,
                tex={"fine": (t.visceral_fat * 0.03 if not is_ct else 6.0)},
            )
            res = c.paint_shape(
                blob, t.cortex, clip=True, tex={"fine": (t.cortex * 0.04 if not is_ct else 6.0)}
            )
            if res is None:
                continue
            sl, _w = res
            x, y, z = c.xyz(sl)
            qu, qv, qw = blob.local(x, y, z)
            a = blob.semi
            rho = np.sqrt((qu / a[0]) ** 2 + (qv / a[1]) ** 2 + (qw / a[2]) ** 2)
            # pyramids: lobes around the sinus, separated by columns of cortex
            ang = np.arctan2(qv / a[1], qu / a[0])
            lobes = np.cos(3.0 * ang + 0.5) * np.cos(np.pi * 2.2 * qw / a[2])
            pyr = np.clip((0.80 - rho) / 0.06 + 0.5, 0, 1) * np.clip(
                (rho - 0.42) / 0.06 + 0.5, 0, 1
            )
            pyr = pyr * np.clip(0.5 + (lobes - 0.15) * 4.0, 0, 1)
            c.paint(
                sl,
                (pyr * c.weight(blob.sdf(x, y, z, offset=-4.0))).astype(np.float32),
                c._value(t.medulla, {"fine": (t.medulla * 0.04 if not is_ct else 6.0)}, sl),
            )
            # renal sinus: inner core opening towards the hilum (+u direction)
            sin_d = np.sqrt(
                (qu / (a[0] * 0.55)) ** 2 + (qv / (a[1] * 0.42)) ** 2 + (qw / (a[2] * 0.55)) ** 2
            )
            hil = np.sqrt((qv / (a[1] * 0.32)) ** 2 + (qw / (a[2] * 0.38)) ** 2)
            hil_open = (qu > 0) * np.clip((1.0 - hil) * 6.0 + 0.5, 0, 1)
            w_sinus = np.maximum(np.clip((1.0 - sin_d) * 6.0 + 0.5, 0, 1), hil_open)
            c.paint(
                sl,
                w_sinus.astype(np.float32),
                c._value(t.sinus_fat, {"fine": (t.sinus_fat * 0.04 if not is_ct else 8.0)}, sl),
            )
            # pelvis / sinus vessels
            vess = np.sqrt((qv / 5.0) ** 2 + (qw / 6.0) ** 2)
            w_v = (qu > -a[0] * 0.2) * np.clip((1.0 - vess) * 3.0 + 0.5, 0, 1) * w_sinus
            c.paint(sl, w_v.astype(np.float32), t.vein if is_ct else t.bowel_fluid * 0.9)
            for cyst in kid.get("cysts", ()):
                c.paint_shape(cyst, t.cyst, tex={"fine": (8.0 if not is_ct else 3.0)})

    an.steps += [paint_colon, paint_liver, paint_lung, paint_kidneys, muscles, spine, paint_ribs]
    return an


# =====================================================================================
# acquisition


def _gauss_blur(arr, sigma_zyx):
    return ndimage.gaussian_filter(arr, sigma_zyx, mode="nearest").astype(np.float32)


def _bias_field(grid: Grid, rng, strength: float) -> np.ndarray:
    """Smooth multiplicative receive-coil field: low-order polynomial plus two coil hot spots."""
    o, s, n = np.asarray(grid.origin), np.asarray(grid.spacing), np.asarray(grid.size)
    c = o + s * (n - 1) / 2
    half = s * (n - 1) / 2
    qz = ((o[2] + s[2] * np.arange(n[2])) - c[2]) / half[2]
    qy = ((o[1] + s[1] * np.arange(n[1])) - c[1]) / half[1]
    qx = ((o[0] + s[0] * np.arange(n[0])) - c[0]) / half[0]
    Z, Y, X = qz[:, None, None], qy[None, :, None], qx[None, None, :]
    k = rng.normal(size=6) * strength
    log_b = (
        k[0] * X
        + k[1] * Y
        + 0.5 * k[2] * Z
        + k[3] * X * Y
        + 0.6 * k[4] * X * X
        + 0.4 * k[5] * Z * Z
    )
    # anterior and posterior coil elements: brighter near both body surfaces
    for y0, amp in ((-1.0, 0.30), (1.0, 0.35)):
        log_b = log_b + strength * 1.6 * amp * np.exp(
            -((Y - y0) ** 2) / 0.35 - (X - rng.uniform(-0.3, 0.3)) ** 2 / 1.2
        )
    b = np.exp(log_b - np.mean(log_b))
    return b.astype(np.float32)


def _finish_mr(img, grid, rng, *, sigma_noise, bias_strength):
    img = _gauss_blur(img, (0.5, 0.55, 0.55))
    img = img * _bias_field(grid, rng, bias_strength)
    n1 = rng.standard_normal(size=img.shape, dtype=np.float32) * sigma_noise
    n2 = rng.standard_normal(size=img.shape, dtype=np.float32) * sigma_noise
    mag = np.sqrt((img + n1) ** 2 + n2 * n2)
    return np.clip(np.rint(mag), 0, 4095).astype(np.int16)


def _finish_ct(img, rng, *, sigma_noise):
    img = _gauss_blur(img, (0.4, 0.55, 0.55))
    noise = rng.standard_normal(size=img.shape, dtype=np.float32)
    # CT noise is spatially correlated (reconstruction kernel): mildly smooth, then rescale
    noise = ndimage.gaussian_filter(noise, (0.0, 0.6, 0.6))
    noise *= sigma_noise / (noise.std() + 1e-12)
    return np.clip(np.rint(img + noise), -1024, 3071).astype(np.int16)


# =====================================================================================
# ground truth


def _cap_directions(axis, alpha, n):
    """Spread ``n`` unit vectors evenly over a spherical cap.

    The cap has half-angle ``alpha`` around ``axis``.
    """
    axis = _unit(axis)
    i = np.arange(n) + 0.5
    cos_t = 1 - (1 - np.cos(alpha)) * i / n
    phi = np.pi * (1 + 5**0.5) * i
    sin_t = np.sqrt(np.clip(1 - cos_t**2, 0, None))
    e1 = _unit(
        np.cross(axis, (1.0, 0.0, 0.0)) if abs(axis[0]) < 0.9 else np.cross(axis, (0.0, 1.0, 0.0))
    )
    e2 = np.cross(axis, e1)
    return (
        cos_t[:, None] * axis
        + (sin_t * np.cos(phi))[:, None] * e1
        + (sin_t * np.sin(phi))[:, None] * e2
    )


def _surface_at(blob: Blob, dirs_local: np.ndarray) -> np.ndarray:
    base = 1.0 / np.sqrt(((dirs_local / blob.semi) ** 2).sum(axis=1))
    eps = blob._eps(dirs_local[:, 0], dirs_local[:, 1], dirs_local[:, 2]) if blob.waves else 0.0
    return (dirs_local * (base * (1.0 + eps))[:, None]) @ blob.frame.T + blob.center


def true_min_margin(tumor: Blob, zone: Blob, n_tumor: int = 80000):
    """Compute the minimal treatment margin of two continuous shapes.

    The tumor surface is sampled densely (~0.15 mm apart); the 300 points with the smallest
    first-order margin get a nearest-point search on the ablation surface (coarse, then a
    dense local patch ~0.02 mm apart around the coarse answer).  Accurate to ~0.01 mm.

    Parameters
    ----------
    tumor : Blob
        The tumor.
    zone : Blob
        The ablation zone.
    n_tumor : int, optional
        Number of tumor surface samples.

    Returns
    -------
    mtm : float
        The minimal treatment margin in mm (negative where the tumor is uncovered).
    point : numpy.ndarray
        The tumor-surface point where it occurs, LPS mm.
    """
    tp = tumor.surface_points(n_tumor)
    approx = -zone.sdf(tp[:, 0], tp[:, 1], tp[:, 2])
    cand = tp[np.argsort(approx)[:300]]
    coarse = zone.surface_points(20000)
    d, idx = cKDTree(coarse).query(cand)
    sign = np.where(zone.inside(cand), 1.0, -1.0)
    order = np.argsort(sign * d)[:25]
    best, best_p = np.inf, None
    for k in order:
        p = cand[k]
        u0 = (coarse[idx[k]] - zone.center) @ zone.frame
        patch = _surface_at(zone, _cap_directions(u0, 0.06, 6000))
        dist = float(np.min(np.linalg.norm(patch - p, axis=1)))
        m = sign[k] * dist
        if m < best:
            best, best_p = m, p
    return float(best), best_p


def _on_post_slice(p, T, grid: Grid) -> np.ndarray:
    """Move ``p`` (pre space) along the post z axis so that ``T(p)`` is on a post slice.

    So that a needle drawn in a post axial plane through it shows in one slice.
    """
    A, b = tfm.matrix_offset(T)
    q = A @ np.asarray(p, float) + b
    k = np.round((q[2] - grid.origin[2]) / grid.spacing[2])
    dz = grid.origin[2] + k * grid.spacing[2] - q[2]
    return np.asarray(p, float) + A.T @ np.array([0.0, 0.0, dz])


def _rigid(axis, angle_deg, translation, center):
    R = _rodrigues(axis, angle_deg)
    c = np.asarray(center, float)
    b = c - R @ c + np.asarray(translation, float)
    return tfm.euler_from_matrix(R, b, center)


def _case(
    name,
    title,
    description,
    modality,
    pre_grid,
    post_grid,
    anatomy,
    post_extras,
    T,
    tumor,
    zone,
    finish_pre,
    finish_post,
    pv,
    background,
    tex,
    rng,
    extra_info=None,
):
    A, b = tfm.matrix_offset(T)
    pre_c = _Canvas(pre_grid, (np.eye(3), np.zeros(3)), tex, pv, background)
    anatomy.render(pre_c)
    post_c = _Canvas(post_grid, (A, b), tex, pv, background)
    anatomy.render(post_c)
    for extra in post_extras:
        extra(post_c)
    # ground-truth labels: analytic shapes at voxel centres
    tum = (tumor.rho(pre_c.X, pre_c.Y, pre_c.Z) < 1.0).astype(np.uint8)
    abl = (zone.rho(post_c.X, post_c.Y, post_c.Z) < 1.0).astype(np.uint8)
    pre_arr = finish_pre(pre_c.img, pre_grid, rng)
    post_arr = finish_post(post_c.img, post_grid, rng)
    margin, mpt = true_min_margin(tumor, zone)
    info = {
        "name": name,
        "title": title,
        "description": description,
        "modality": modality,
        "sample": True,
        "synthetic": True,
        "true_transform": tfm.euler_params(T),
        "true_rotation_deg": tfm.rotation_angle_deg(T),
        "true_displacement_at_tumor_mm": float(
            np.linalg.norm(tfm.transform_points(T, tumor.center)[0] - tumor.center)
        ),
        "true_min_margin_mm": round(float(margin), 3),
        "true_min_margin_point_lps": [round(float(v), 3) for v in mpt],
        "tumor_center_lps": [float(v) for v in tumor.center],
        "ablation_center_lps": [float(v) for v in zone.center],
        "ablation_center_post_lps": [float(v) for v in tfm.transform_points(T, zone.center)[0]],
        "ground_truth": "tumor and ablation labels are the analytic shapes sampled at voxel "
        "centres; "
        "true_min_margin_mm is the margin of the continuous shapes",
    }
    if extra_info:
        info.update(extra_info)
    case = Case(
        pre=pre_grid.image(pre_arr),
        post=post_grid.image(post_arr),
        tumor=pre_grid.image(tum),
        ablation=post_grid.image(abl),
        transform=None,
        info=info,
    )
    case.settings["threshold_mm"] = 5.0
    return case


# =====================================================================================
# renal cryoablation, MRI


def _kidney(rng, side, center, long_axis, hilum_dir, semi=(27.0, 21.0, 54.0)):
    frame = _frame(long_axis, hilum_dir)
    return Blob.random(rng, center, semi, frame, amp=0.035, n=4, freq=(1.0, 2.5))


def make_renal_mri(seed: int = 0) -> Case:
    """Make the renal cryoablation sample: T2-weighted (HASTE-like) MRI, 1.2 x 1.2 x 3 mm.

    An exophytic tumor of the lateral lower left kidney, covered by an ice ball (signal
    void) placed too laterally: a generous margin on most sides, a thin and slightly
    negative one on the deep (medial) side.  Three cryoprobes converge into it.

    Parameters
    ----------
    seed : int, optional
        Seed of the anatomy, texture and noise (0 is the bundled case).

    Returns
    -------
    Case
        Pre and post images, tumor and ablation labels; the true transform and the true
        minimal margin in ``case.info``.
    """
    rng = np.random.default_rng(1000 + seed)
    t = MR_T2
    pre_grid = Grid((240, 192, 40), (1.2, 1.2, 3.0), (-143.4, -105.8, -58.5))
    post_grid = Grid((240, 192, 38), (1.2, 1.2, 3.0), (-140.1, -108.5, -56.1))
    body = _Body(
        a=141.0,
        b_ant=100.0,
        b_post=110.0,
        n=2.4,
        cy=0.0,
        fat_base=15.0,
        waves=((0.018, 3, 0.4, 0.004), (0.012, 5, 1.9, -0.006)),
    )
    spine_y = 36.0
    z_range = (-60.0, 60.0)
    kid_r = _kidney(rng, -1, (-74.0, 17.0, -6.0), (0.22, 0.25, 1.0), (0.85, -0.5, 0.0))
    kid_l = _kidney(rng, +1, (76.0, 15.0, 8.0), (-0.22, 0.25, 1.0), (-0.85, -0.5, 0.0))
    cysts_r = [
        Blob.random(
            rng, kid_r.center + np.array([-8.0, 12.0, 38.0]), (9.5, 9.0, 9.5), amp=0.02, n=2
        )
    ]
    cysts_l = [
        Blob.random(
            rng, kid_l.center + np.array([-14.0, -14.0, 22.0]), (6.0, 6.0, 6.5), amp=0.02, n=2
        )
    ]
    # tumor: exophytic from the lateral, posterior, lower left kidney
    d = _unit((0.62, 0.6, -0.5))
    surf = kid_l.center + d * kid_l.radius_along(d)
    tumor = Blob.random(
        rng,
        surf + 3.0 * d,
        (14.5, 13.0, 14.0),
        _frame(d, (0, 0, 1)),
        amp=0.05,
        n=5,
        freq=(1.0, 3.0),
    )
    # ice ball: centred too laterally along d (thin/negative deep margin), elongated along the
    # probes
    T = _rigid((0.35, -0.45, 0.82), 4.0, (2.5, -3.0, 4.5), (0.0, 20.0, 0.0))
    A_T = tfm.matrix_offset(T)[0]
    # cryoprobes from a posterior approach, in an axial plane of the post scan (tip -> skin)
    probe_dir = _unit(A_T.T @ _unit((-0.05, 1.0, 0.0)))
    ice_c = tumor.center + 9.3 * d + np.array([0.0, 1.5, 0.0])
    zone = Blob.random(
        rng, ice_c, (22.5, 22.0, 25.0), _frame(probe_dir, (1, 0, 0)), amp=0.02, n=3, freq=(0.8, 1.6)
    )
    liver = [
        Blob.random(
            rng,
            (-72.0, -5.0, 62.0),
            (68.0, 78.0, 85.0),
            _frame((0.3, 0.1, 1.0), (1, 0, 0)),
            amp=0.04,
            n=5,
        ),
        Blob.random(
            rng,
            (-20.0, -55.0, 85.0),
            (55.0, 30.0, 40.0),
            _frame((0.0, 0.2, 1.0), (1, 0.3, 0)),
            amp=0.05,
            n=4,
        ),
    ]
    gb = Blob.random(
        rng,
        (-48.0, -48.0, 28.0),
        (14.0, 13.0, 30.0),
        _frame((0.1, -0.5, 1.0), (1, 0, 0)),
        amp=0.03,
        n=2,
    )
    spleen = Blob.random(
        rng,
        (90.0, 32.0, 68.0),
        (22.0, 46.0, 48.0),
        _frame((0.35, -0.6, 0.7), (1, 0.2, 0)),
        amp=0.05,
        n=4,
    )
    pancreas = Blob.random(
        rng,
        (10.0, -22.0, 42.0),
        (60.0, 11.0, 12.0),
        _frame((1.0, 0.25, 0.15), (0, 1, 0)),
        amp=0.08,
        n=6,
        freq=(2.0, 5.0),
    )
    liver_vessels = [
        Tube((-40.0, -10.0, 30.0), (-80.0, -5.0, 50.0), 6.0, 3.5),
        Tube((-80.0, -5.0, 50.0), (-112.0, 10.0, 40.0), 3.5, 2.0),
        Tube((-80.0, -5.0, 50.0), (-95.0, -35.0, 62.0), 3.5, 2.0),
        Tube((-30.0, 20.0, 75.0), (-85.0, 20.0, 40.0), 5.0, 2.0),
    ]
    colon = [
        Tube((-100.0, -22.0, -80.0), (-98.0, -18.0, 80.0), 19.0, 18.0),
        Tube((96.0, -28.0, -80.0), (100.0, -20.0, 80.0), 16.0, 17.0),
    ]
    ribs = [(+1, 60.0, 1.7), (-1, 55.0, 1.6), (+1, 25.0, 1.2), (-1, 20.0, 1.1)]
    an = _build_abdomen(
        t,
        body,
        rng,
        z_range=z_range,
        spine_y=spine_y,
        kidneys=[{"blob": kid_r, "cysts": cysts_r}, {"blob": kid_l, "cysts": cysts_l}],
        liver=liver,
        spleen_c=spleen,
        gallbladder=gb,
        extra_blobs=[(pancreas, "pancreas")],
        ribs=ribs,
        colon=colon,
        vessels_tree=liver_vessels,
    )

    def great_vessels(c: _Canvas):
        c.paint_shape(
            Tube((14.0, spine_y - 30.0, -90.0), (12.0, spine_y - 29.0, 90.0), 10.5, 11.5), t.artery
        )
        c.paint_ellcyl(-25.0, spine_y - 32.0, 14.5, 9.5, t.vein, wob=41)  # IVC: flattened
        # renal veins and arteries
        lrv_mid = np.array(
            [14.0, spine_y - 47.0, 6.0]
        )  # the left renal vein passes in front of the aorta
        slow = t.vein * 3.0  # slow venous flow: grey rather than black
        c.paint_shape(Tube(kid_l.center + np.array([-20.0, -8.0, 0.0]), lrv_mid, 3.5, 3.5), slow)
        c.paint_shape(Tube(lrv_mid, (-24.0, spine_y - 33.0, 6.0), 3.5, 4.0), slow)
        c.paint_shape(
            Tube(
                kid_r.center + np.array([20.0, -8.0, 0.0]), (-24.0, spine_y - 33.0, -2.0), 4.0, 4.5
            ),
            slow,
        )
        c.paint_shape(
            Tube(
                kid_l.center + np.array([-20.0, -2.0, 4.0]), (13.0, spine_y - 30.0, 10.0), 3.0, 3.2
            ),
            t.artery,
        )

    def lesion(c: _Canvas):
        c.paint_shape(tumor, t.tumor, tex={"fine": t.tumor * 0.12, "medium": t.tumor * 0.08})

    an.steps.append(great_vessels)
    an.steps.append(lesion)

    # probes: three cryoprobes from the skin, converging into the ice ball
    e1 = np.cross(probe_dir, A_T.T @ np.array([0.0, 0.0, 1.0]))
    e1 = _unit(e1)
    e2 = _unit(np.cross(probe_dir, e1))
    base = _on_post_slice(ice_c, T, post_grid)
    tips = [
        base - 9.0 * probe_dir + 7.0 * e1,
        base - 9.0 * probe_dir - 6.0 * e1 + 4.0 * e2,
        base - 10.0 * probe_dir - 1.0 * e1 - 7.0 * e2,
    ]
    probes = []
    for tip in tips:
        direc = _unit(probe_dir + 0.06 * (tip - base) / 8.0)
        entry = body.entry_point(tip, direc) + 15.0 * direc  # the handles stick out of the body
        probes.append(Tube(tip, entry, 1.6, 1.6))

    def ice(c: _Canvas):
        # T2-bright oedema rim just outside the ice ball, then the signal void
        lo, hi = zone.bbox(6.0)
        sl = c.block(lo, hi)
        if sl is not None:
            x, y, z = c.xyz(sl)
            dd = zone.sdf(x, y, z)
            rim = np.clip(1.0 - np.abs(dd - 1.5) / 2.5, 0, 1).astype(np.float32)
            c.img[sl] = np.where(dd > 0, c.img[sl] + rim * 180.0, c.img[sl])
            c.paint(sl, c.weight(dd), c._value(12.0, {"fine": 4.0}, sl))
        for p in probes:
            c.paint_shape(p, 8.0)

    case = _case(
        "renal_mri",
        "Renal cryoablation, MRI (synthetic)",
        "Synthetic T2-weighted (HASTE-like) MRI at 1.2 x 1.2 x 3 mm: exophytic tumor of the left "
        "kidney (pre) and the ice ball with three cryoprobes (post). The ice ball is centred too "
        "laterally: the deep (medial) margin is thin and slightly negative. Ground truth: "
        "tumor and "
        "ablation labels, the pre->post rigid transform and the true minimal margin.",
        "MR",
        pre_grid,
        post_grid,
        an,
        [ice],
        T,
        tumor,
        zone,
        lambda img, g, r: _finish_mr(img, g, r, sigma_noise=14.0, bias_strength=0.16),
        lambda img, g, r: _finish_mr(img, g, r, sigma_noise=15.0, bias_strength=0.20),
        1.0,
        t.air,
        _Textures(rng, (-200.0, -160.0, -110.0), (200.0, 160.0, 110.0)),
        rng,
        {
            "procedure": "percutaneous cryoablation",
            "organ": "kidney (left)",
            "sequence": "T2 HASTE-like",
        },
    )
    return case


# =====================================================================================
# liver microwave ablation, CT


def make_liver_ct(seed: int = 0) -> Case:
    """Make the liver microwave ablation sample: portal-venous CT, 0.7 x 0.7 x 2.5 mm.

    The coagulation zone (hypodense ellipsoid along the antenna, thin hyperdense rim, a few
    gas bubbles, the antenna track) covers a right-lobe tumor completely, but the anterior
    margin is thinner than 5 mm.  The field of view is cropped to the liver region, as a
    targeted reconstruction would be.

    Parameters
    ----------
    seed : int, optional
        Seed of the anatomy, texture and noise (0 is the bundled case).

    Returns
    -------
    Case
        Pre and post images, tumor and ablation labels; the true transform and the true
        minimal margin in ``case.info``.
    """
    rng = np.random.default_rng(2000 + seed)
    t = CT_PV
    pre_grid = Grid((224, 240, 36), (0.7, 0.7, 2.5), (-170.2, -85.3, -37.5))
    post_grid = Grid((224, 240, 36), (0.7, 0.7, 2.5), (-166.9, -89.9, -33.75))
    body = _Body(
        a=165.0,
        b_ant=118.0,
        b_post=108.0,
        n=2.3,
        cy=0.0,
        fat_base=20.0,
        waves=((0.015, 3, 1.1, 0.003), (0.01, 4, 0.3, -0.005)),
    )
    spine_y = 48.0
    z_range = (-40.0, 55.0)
    liver = [
        Blob.random(
            rng,
            (-75.0, 5.0, 25.0),
            (82.0, 92.0, 100.0),
            _frame((0.25, 0.1, 1.0), (1, 0, 0)),
            amp=0.04,
            n=5,
        ),
        Blob.random(
            rng,
            (-10.0, -55.0, 45.0),
            (60.0, 35.0, 45.0),
            _frame((0.0, 0.2, 1.0), (1, 0.3, 0)),
            amp=0.05,
            n=4,
        ),
    ]
    kid_r = _kidney(rng, -1, (-72.0, 45.0, -62.0), (0.22, 0.25, 1.0), (0.85, -0.5, 0.0))
    gb = Blob.random(
        rng,
        (-40.0, -60.0, -25.0),
        (15.0, 14.0, 32.0),
        _frame((0.1, -0.5, 1.0), (1, 0, 0)),
        amp=0.03,
        n=2,
    )
    lung = Blob.random(
        rng, (-80.0, 72.0, 100.0), (75.0, 48.0, 62.0), _frame((0, 0, 1.0), (1, 0, 0)), amp=0.03, n=3
    )
    # vessel tree: portal branches from the hilum, hepatic veins towards the IVC (superior)
    hilum = np.array([-35.0, -5.0, -5.0])
    ivc_top = np.array([-24.0, 22.0, 60.0])
    vessels = []
    for k, (dirv, L) in enumerate(
        (
            ((-1.0, 0.1, 0.35), 55.0),
            ((-0.8, 0.6, 0.5), 50.0),
            ((-0.6, -0.5, 0.6), 50.0),
            ((-0.9, -0.1, -0.5), 45.0),
        )
    ):
        p1 = hilum + L * _unit(dirv)
        vessels.append(Tube(hilum, p1, 6.5 if k == 0 else 5.0, 3.5))
        for _ in range(3):
            d2 = _unit(np.asarray(dirv) + rng.normal(size=3) * 0.6)
            p2 = p1 + rng.uniform(25, 40) * d2
            vessels.append(Tube(p1, p2, 3.0, 1.6))
            for _k in range(2):
                d3 = _unit(d2 + rng.normal(size=3) * 0.7)
                vessels.append(Tube(p2, p2 + rng.uniform(15, 30) * d3, 1.6, 0.9))
    for dirv in ((-1.0, -0.2, -0.6), (-0.5, -0.9, -0.5), (-0.9, 0.5, -0.6)):
        p1 = ivc_top + 70.0 * _unit(dirv)
        vessels.append(Tube(ivc_top, p1, 6.0, 2.5))
        d2 = _unit(np.asarray(dirv) + rng.normal(size=3) * 0.5)
        vessels.append(
            Tube(ivc_top + 35.0 * _unit(dirv), ivc_top + 35.0 * _unit(dirv) + 30 * d2, 3.0, 1.3)
        )
    colon = [Tube((-95.0, -45.0, -70.0), (-70.0, -60.0, -35.0), 20.0, 19.0)]
    ribs = [
        (-1, 95.0, 2.2),
        (-1, 62.0, 2.3),
        (-1, 30.0, 2.2),
        (-1, -2.0, 1.8),
        (+1, 95.0, 2.0),
        (+1, 62.0, 1.9),
    ]
    # tumor: 2.3 cm, posterior right lobe (segment 7/6)
    tumor = Blob.random(
        rng,
        (-98.0, 28.0, 8.0),
        (12.0, 11.0, 11.5),
        _frame((0.2, 0.3, 1.0), (1, 0, 0)),
        amp=0.05,
        n=5,
        freq=(1.0, 3.0),
    )
    T = _rigid((-0.6, 0.3, 0.74), 3.0, (-3.0, 2.5, -4.5), (-60.0, 0.0, 0.0))
    # the antenna lies in an axial plane of the post scan (from the tumor back towards the skin)
    ant_dir = _unit(tfm.matrix_offset(T)[0].T @ _unit((-1.0, -0.25, 0.0)))
    perp = _unit(np.cross(ant_dir, (0, 0, 1.0)))  # roughly anterior-posterior
    if perp[1] < 0:
        perp = -perp  # point posteriorly
    zone_c = tumor.center + 3.0 * ant_dir + 2.6 * perp
    zone = Blob.random(
        rng,
        zone_c,
        (17.0, 16.5, 21.5),
        _frame(ant_dir, (0, 0, 1.0)),
        amp=0.02,
        n=3,
        freq=(0.8, 1.6),
    )
    tip = _on_post_slice(zone_c, T, post_grid) - 17.0 * ant_dir
    entry = body.entry_point(tip, ant_dir)
    track = Tube(tip, entry + 2.0 * ant_dir, 0.9, 0.9)
    bubbles = [
        Blob(zone_c + off, (r, r, r))
        for off, r in (
            (np.array([1.5, -1.0, 2.0]), 1.6),
            (-6.0 * ant_dir + np.array([0.0, 1.5, -1.0]), 1.3),
            (5.0 * ant_dir + np.array([0.5, 0.0, 1.0]), 1.1),
            (-2.0 * ant_dir + np.array([0.0, -2.0, -3.0]), 0.9),
        )
    ]

    an = _build_abdomen(
        t,
        body,
        rng,
        z_range=z_range,
        spine_y=spine_y,
        kidneys=[{"blob": kid_r, "cysts": []}],
        liver=liver,
        spleen_c=None,
        gallbladder=gb,
        lung=lung,
        ribs=ribs,
        colon=colon,
        vessels_tree=vessels,
    )

    def great_vessels(c: _Canvas):
        c.paint_shape(
            Tube((16.0, spine_y - 30.0, -90.0), (14.0, spine_y - 28.0, 90.0), 11.0, 12.0), t.artery
        )
        c.paint_shape(Tube((-24.0, spine_y - 30.0, -90.0), ivc_top, 12.0, 13.0), t.vein, pad=4)

    def lesion(c: _Canvas):
        c.paint_shape(tumor, t.tumor, tex={"fine": 8.0, "medium": 4.0})

    an.steps.append(great_vessels)
    an.steps.append(lesion)

    def ablation(c: _Canvas):
        lo, hi = zone.bbox(5.0)
        sl = c.block(lo, hi)
        if sl is None:
            return
        x, y, z = c.xyz(sl)
        dd = zone.sdf(x, y, z)
        rim = np.clip(1.0 - np.abs(dd + 0.2) / 1.6, 0, 1).astype(np.float32)
        c.img[sl] = c.img[sl] + rim * 28.0
        w = c.weight(dd + 1.0)
        c.paint(sl, w, c._value(24.0, {"fine": 6.0, "medium": 3.0}, sl))
        c.paint_shape(track, -110.0)  # gas and blood along the withdrawn antenna
        for bub in bubbles:
            c.paint_shape(bub, -700.0)

    case = _case(
        "liver_ct",
        "Liver microwave ablation, CT (synthetic)",
        "Synthetic portal-venous CT at 0.7 x 0.7 x 2.5 mm, cropped to the liver: a 2.3 cm "
        "hypodense tumor of the posterior right lobe (pre) and the coagulation zone along the "
        "microwave antenna with its track and gas bubbles (post). The tumor is covered, but the "
        "anterior margin is below 5 mm. Ground truth: tumor and ablation "
        "labels, the pre->post rigid transform and the true minimal margin.",
        "CT",
        pre_grid,
        post_grid,
        an,
        [ablation],
        T,
        tumor,
        zone,
        lambda img, g, r: _finish_ct(img, r, sigma_noise=12.0),
        lambda img, g, r: _finish_ct(img, r, sigma_noise=13.0),
        0.7,
        t.air,
        _Textures(rng, (-200.0, -150.0, -80.0), (60.0, 130.0, 80.0)),
        rng,
        {
            "procedure": "percutaneous microwave ablation",
            "organ": "liver (right lobe)",
            "phase": "portal venous",
        },
    )
    return case


# =====================================================================================
# bundled files


def sample_dir() -> Path:
    """Locate the bundled sample folder.

    Returns
    -------
    pathlib.Path
        ``sample_data`` inside the installed package, else the repository's
        ``sample_data``.
    """
    here = Path(__file__).resolve()
    packaged = here.parent.parent / "sample_data"
    if packaged.is_dir():
        return packaged
    return here.parents[3] / "sample_data"


_MAKERS = {"renal_mri": make_renal_mri, "liver_ct": make_liver_ct}


def make_sample(name: str, seed: int = 0) -> Case:
    """Generate a sample case in memory.

    Parameters
    ----------
    name : {'renal_mri', 'liver_ct'}
        The sample (see :data:`SAMPLE_NAMES`).
    seed : int, optional
        Seed of the anatomy, texture and noise (0 is the bundled case).

    Returns
    -------
    Case
        The case, with its ground truth in ``case.info``.

    Raises
    ------
    AblationError
        For an unknown name.
    """
    if name not in _MAKERS:
        from .errors import AblationError

        raise AblationError(f"unknown sample '{name}': choose one of {', '.join(SAMPLE_NAMES)}")
    return _MAKERS[name](seed)


def write_all(out=None) -> list[Path]:
    """Generate both sample cases (fixed seeds) into case folders.

    Parameters
    ----------
    out : str or os.PathLike, optional
        The folder receiving one case folder per sample (default: :func:`sample_dir`).

    Returns
    -------
    list of pathlib.Path
        The case folders written, each with its ``true_transform.tfm``.
    """
    root = Path(out) if out else sample_dir()
    written = []
    for name in SAMPLE_NAMES:
        case = make_sample(name)
        folder = root / name
        case.save(folder)
        tfm.write_transform_atomic(
            tfm.euler_from_params(case.info["true_transform"]), folder / TRUE_TRANSFORM_FILE
        )
        written.append(folder)
    return written


def load_sample(name: str) -> Case:
    """Load a bundled sample case, generating it in memory if its files are not there.

    Parameters
    ----------
    name : {'renal_mri', 'liver_ct'}
        The sample (see :data:`SAMPLE_NAMES`).

    Returns
    -------
    Case
        The case, with its ground truth in ``case.info``.

    Raises
    ------
    AblationError
        For an unknown name, or a bundled folder that does not read.
    """
    if name not in _MAKERS:
        from .errors import AblationError

        raise AblationError(f"unknown sample '{name}': choose one of {', '.join(SAMPLE_NAMES)}")
    folder = sample_dir() / name
    if (folder / "case.json").exists():
        return Case.load(folder)
    return make_sample(name)


def true_transform(case: Case) -> sitk.Euler3DTransform:
    """Return the ground-truth pre -> post transform of a sample case.

    Parameters
    ----------
    case : Case
        A sample case (its ``info["true_transform"]``).

    Returns
    -------
    SimpleITK.Euler3DTransform
        The true registration, ITK convention.
    """
    return tfm.euler_from_params(case.info["true_transform"])
