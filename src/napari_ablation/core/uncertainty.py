"""How sure is the margin? An interval on the MTM from registration and segmentation.

The minimal treatment margin (MTM) is compared with thresholds (0 mm, 1 mm, 5 mm) that
are of the size of the registration error near the tumor (1-2 mm) and of a reader's
boundary (a voxel). This module turns stated or estimated errors into an interval.

**Registration** error is a distribution of rigid perturbations ``D`` of pre space about
the tumor centroid ``c``::

    D(p) = R (p - c) + c + t

The true registration is taken to be ``T0 o D`` (``T0`` the accepted pre -> post
transform, ITK convention), so under a sample ``D`` the margin of a pre point ``p`` is
the accepted margin field at ``D(p)``. Sources (they combine by composition):

* landmarks (:func:`landmark_samples`): the fiducial localisation error (FLE) is
  estimated from the fit residuals, ``sigma^2 = sum |r_i|^2 / (3N - 6)`` per axis (3N
  coordinates, 6 fitted parameters; the same as Fitzpatrick's ``FLE^2 = FRE^2 N/(N-2)``
  with ``FLE^2 = 3 sigma^2``); the landmarks are resampled with that error (by default
  with ``sigma`` itself drawn from its posterior, ``(3N-6) s^2 / chi2(3N-6)``, so that a
  handful of landmarks widens the interval as it should) and refitted. Given the spacings
  of the images the landmarks were clicked on, the error along each axis is at least the
  quantisation of a click to each grid (``h^2 / 12``, pre plus post): the residuals of a
  few landmarks cannot see a slice-thickness error the clicks share
  (:mod:`~napari_ablation.core.landmarks`). The closed-form covariance of the six
  parameters (:func:`landmark_covariance`, first order) is the check: its target error
  agrees with the resampling and with Fitzpatrick's formula;
* a reader's stated accuracy (:func:`translation_samples`): a translation with standard
  deviation ``S`` mm along each patient axis;
* the automatic registration (:func:`restart_covariance`): the spread of the optimum
  over a few restarts of the local registration from perturbed initial transforms with
  different metric samples, as a 6 x 6 covariance (:func:`covariance_samples`).

**Segmentation**: the tumor and the ablation boundary are each moved along their normal
by ``u B(n)`` with ``u`` uniform in [-1, 1] (one draw per surface and sample: a systematic
over- or under-segmentation) and ``B(n)`` the tolerance along the normal ``n`` (default:
half a voxel along each axis of the grid the object was drawn on, ``B(n) = |diag(h) U^T
n|``).

**Fast re-evaluation** (:func:`margin_uncertainty`): the accepted analysis
(:class:`~napari_ablation.core.margin.MarginResult`) gives, through its public fields,
the tumor surface (pre LPS, vertex normals and areas), the tumor voxels and the
registered ablation surface (pre LPS). The signed distance to the ablation surface is
tabulated once on a 1 mm grid around the tumor (closest points on the tangent planes of
the nearest vertices within 3 mm of the surface, carried outwards by a closest-point
transform; sign from the surface normal at the closest point: on the renal sample 0.04
mm largest error within 1 mm of the surface, 0.1 mm at the 99th percentile within 6 mm),
and each sample only maps the tumor points through ``D`` and interpolates (200 samples:
0.7 s of CPU on the renal sample, a full analysis per sample 46 s). The engine's MTM sets
the level, the samples give the spread, so a zero-noise run gives a zero-width interval
at the exact MTM.

**The interval**: the lower end is that of :func:`mtm_interval`, the union of the
percentile interval of the perturbed MTMs and of its reflection about the accepted MTM (a
basic, pivotal bootstrap interval): the MTM is a minimum, biased low under any
misregistration, so the percentile interval lies below the truth and the reflection
corrects the bias. The upper end is the larger of that union's and of a test inversion
(Neyman) along the path of configurations that raises the MTM fastest
(:func:`_inverted_upper`): near the MTM's largest value (a tumor near the centre of its
ablation zone) the reflection alone is too short, because the error itself moved the
accepted configuration away from that value. Measured coverage (97-98 % for a nominal
95 %) in ``benchmarks/bench_uncertainty.py``. The class fractions, averages rather than
minima, use the plain percentile range.

**Sources by registration** (:class:`RegistrationError`, :func:`case_uncertainty`, the
one entry point of the CLI and of the case model): landmarks, the automatic
registration's restart spread, or a stated accuracy (the case model's reader accuracy,
:data:`DEFAULT_READER_SD_MM` until the user states one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from . import landmarks as lm
from . import transform as tfm
from .coverage import CLASS_COLOR_NAMES, CLASS_KEYS, UNCERTAIN_LABEL, class_title
from .errors import AblationError
from .margin import MarginResult, Mesh, json_figure

#: default number of samples
DEFAULT_SAMPLES = 200
#: a tumor voxel is "uncertain" when its class differs from the accepted one in more than this
#: fraction of samples
UNCERTAIN_FRACTION = 0.05
#: spacing of the tabulated ablation signed distance (mm)
GRID_MM = 1.0
#: the closest-point transform looks for the ablation surface this far beyond the sampled region
#: (mm)
CPT_REACH_MM = 60.0
#: lattice nodes within this distance of an ablation vertex take their closest point from its
#: tangent plane
CPT_BAND_MM = 3.0
#: at most this many points sample the tumor volume for the class fractions
MAX_VOLUME_POINTS = 6000


# ----------------------------------------------------------------------------- rigid samples


@dataclass(frozen=True)
class RigidSamples:
    """Rigid perturbations of pre space about ``center``: ``D_k(p) = R_k (p - c) + c + t_k``.

    Parameters
    ----------
    rotations : (n, 3, 3) array
        The rotation matrices ``R_k``.
    translations : (n, 3) array
        The translations ``t_k``, in mm (LPS).
    center : (3,) array
        The centre ``c`` of the rotations, a point LPS (x, y, z) in mm.
    sources : tuple of str, default ()
        One human-readable line per source of error.
    """

    rotations: np.ndarray
    translations: np.ndarray
    center: np.ndarray
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        """Return the number of perturbations."""
        return len(self.translations)

    @classmethod
    def identity(cls, n: int, center) -> RigidSamples:
        """Make ``n`` identity perturbations (no registration error).

        Parameters
        ----------
        n : int
            Number of perturbations.
        center : (3,) array_like
            The centre of the rotations, LPS (x, y, z) in mm.

        Returns
        -------
        RigidSamples
            ``n`` identity rotations and zero translations, with no sources.
        """
        return cls(
            np.repeat(np.eye(3)[None], n, axis=0),
            np.zeros((n, 3)),
            np.asarray(center, dtype=float),
            (),
        )

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Apply every perturbation ``D_k`` to some points.

        Parameters
        ----------
        points : (m, 3) array_like
            Points LPS (x, y, z) in mm.

        Returns
        -------
        (n, m, 3) array
            ``D_k(points)`` for each of the ``n`` perturbations, LPS mm.
        """
        rel = np.asarray(points, dtype=float) - self.center
        return (
            np.matmul(rel[None], np.transpose(self.rotations, (0, 2, 1)))
            + (self.center + self.translations)[:, None, :]
        )

    def then(self, other: RigidSamples) -> RigidSamples:
        """Combine two independent sources: the perturbations ``other_k o self_k``.

        Parameters
        ----------
        other : RigidSamples
            The second source, as many perturbations as this one.

        Returns
        -------
        RigidSamples
            The composed perturbations about ``other.center``, with the sources of both.

        Raises
        ------
        AblationError
            If the two sets have different sizes.
        """
        if len(other) != len(self):
            raise AblationError("cannot combine sample sets of different sizes")
        o = self._about(other.center) if not np.allclose(other.center, self.center) else self
        rot = np.einsum("kij,kjl->kil", other.rotations, o.rotations)
        trans = np.einsum("kij,kj->ki", other.rotations, o.translations) + other.translations
        return RigidSamples(rot, trans, other.center, self.sources + other.sources)

    def _about(self, center) -> RigidSamples:
        c = np.asarray(center, dtype=float)
        # R (p - c0) + c0 + t = R (p - c) + c + [R (c - c0) + c0 + t - c]
        trans = (
            np.einsum("kij,j->ki", self.rotations, c - self.center)
            + self.center
            + self.translations
            - c
        )
        return RigidSamples(self.rotations, trans, c, self.sources)

    def displacement_at(self, point) -> np.ndarray:
        """Measure each perturbation's displacement of a point.

        Parameters
        ----------
        point : (3,) array_like
            A point LPS (x, y, z) in mm.

        Returns
        -------
        (n,) array
            The length of ``D_k(point) - point`` for each perturbation, in mm.
        """
        p = np.asarray(point, dtype=float).reshape(1, 3)
        return np.linalg.norm(self.apply(p)[:, 0, :] - p, axis=1)

    def max_displacement(self, radius_mm: float) -> float:
        """Bound the displacement of any point within ``radius_mm`` of the centre.

        Parameters
        ----------
        radius_mm : float
            Distance from ``center``, in mm.

        Returns
        -------
        float
            The largest, over the perturbations, of ``||R_k - I|| radius_mm + |t_k|``, in
            mm (0 for an empty set).
        """
        cos = np.clip((np.trace(self.rotations, axis1=1, axis2=2) - 1) / 2, -1, 1)
        chord = 2 * np.sin(np.arccos(cos) / 2)  # ||R - I||_2
        return float(
            np.max(chord * radius_mm + np.linalg.norm(self.translations, axis=1), initial=0.0)
        )


def translation_samples(
    sd_mm: float, n: int, rng: np.random.Generator, center, source: str | None = None
) -> RigidSamples:
    """Sample a stated registration accuracy: translations with SD ``sd_mm`` per patient axis.

    Parameters
    ----------
    sd_mm : float
        Standard deviation (mm) of the registration error at the tumor, per axis.
    n : int
        Number of samples.
    rng : numpy.random.Generator
        The random generator the samples are drawn from.
    center : (3,) array
        The tumor centroid (LPS mm).
    source : str, optional
        The line that names this source (default: "registration: stated accuracy, ...").

    Returns
    -------
    RigidSamples
        ``n`` pure translations about ``center``, with the one source line.

    Raises
    ------
    AblationError
        When ``sd_mm`` is negative or not finite.
    """
    sd = float(sd_mm)
    if not math.isfinite(sd) or sd < 0:
        raise AblationError("the registration SD must be a finite, non-negative number of mm")
    trans = rng.standard_normal((n, 3)) * sd
    src = source or f"registration: stated accuracy, SD {sd:g} mm per axis at the tumor"
    return RigidSamples(
        np.repeat(np.eye(3)[None], n, axis=0), trans, np.asarray(center, dtype=float), (src,)
    )


def landmark_sigma(fit: lm.LandmarkFit) -> tuple[float, int]:
    """Estimate the per-axis localisation error from the residuals, with its degrees of freedom.

    Parameters
    ----------
    fit : LandmarkFit
        A landmark fit (:func:`~napari_ablation.core.landmarks.fit_landmarks`).

    Returns
    -------
    sigma : float
        ``sqrt(sum |r_i|^2 / (3N - 6))`` mm, so that ``FLE^2 = 3 sigma^2 = FRE^2 N / (N - 2)``;
        NaN when ``3N - 6 <= 0``.
    dof : int
        ``3N - 6``.
    """
    return fit.residual_sd, fit.dof


def landmark_covariance(fit: lm.LandmarkFit, center) -> np.ndarray:
    """Closed-form (first-order) covariance of the six rigid parameters of a landmark fit.

    Parameters
    ----------
    fit : LandmarkFit
        A landmark fit (:func:`~napari_ablation.core.landmarks.fit_landmarks`).
    center : (3,) array
        Centre of the rotation (LPS mm), e.g. the tumor centroid.

    Returns
    -------
    (6, 6) array
        Covariance of ``(omega, t)`` (rad, mm) of :class:`RigidSamples` about ``center``
        (:meth:`~napari_ablation.core.landmarks.LandmarkFit.parameter_covariance`: the
        localisation error per axis is the larger of the residual estimate and the grids'
        quantisation; isotropic ``sigma^2 (sum_i J_i^T J_i)^-1`` without the grids).
    """
    return fit.parameter_covariance(center)


def predicted_tre(cov: np.ndarray, center, point) -> float:
    """RMS target registration error (mm) at ``point`` of a parameter covariance.

    Parameters
    ----------
    cov : (6, 6) array
        Covariance of ``(omega, t)`` about ``center``.
    center : (3,) array
        The centre of the rotations, LPS (x, y, z) in mm.
    point : (3,) array
        Where the error is predicted, LPS (x, y, z) in mm.

    Returns
    -------
    float
        ``sqrt(trace(J cov J^T))``.
    """
    j = lm.rigid_jacobian(point, np.asarray(center, dtype=float))
    return float(math.sqrt(max(np.trace(j @ cov @ j.T), 0.0)))


def landmark_samples(
    fixed_points,
    moving_points,
    n: int,
    rng: np.random.Generator,
    center,
    *,
    posterior: bool = True,
    fixed_spacing=None,
    moving_spacing=None,
) -> RigidSamples:
    """Registration error of a landmark fit, by resampling the landmarks and refitting.

    The moving landmarks are redrawn around the fitted positions with the localisation
    error estimated from the residuals (:func:`landmark_sigma`), at least the quantisation
    of the images' grids along each axis when their spacings are given, and refitted;
    each sample is the inverse of the refit's error, expressed about ``center``.

    Parameters
    ----------
    fixed_points, moving_points : dict or sequence
        Landmarks on pre and post (``{label: xyz}``, rows, or anything
        :func:`~napari_ablation.core.landmarks.fit_landmarks` accepts), LPS mm.
    n : int
        Number of samples.
    rng : numpy.random.Generator
        The random generator the samples are drawn from.
    center : (3,) array
        The tumor centroid (LPS mm).
    posterior : bool
        Draw the localisation error of each sample from its posterior (scaled inverse
        chi-square with ``3N - 6`` degrees of freedom) rather than using the estimate.
    fixed_spacing, moving_spacing : sequence of 3 float, optional
        Spacing ``(x, y, z)`` mm of the pre and post images the landmarks were clicked on
        (see :func:`~napari_ablation.core.landmarks.fit_landmarks`).

    Returns
    -------
    RigidSamples
        ``n`` perturbations about ``center``, with one source line (pairs, residual RMS,
        FLE and the predicted error at ``center``).

    Raises
    ------
    AblationError
        Fewer than 3 pairs, collinear landmarks, bad labels.
    """
    fit = lm.fit_landmarks(
        fixed_points, moving_points, fixed_spacing=fixed_spacing, moving_spacing=moving_spacing
    )
    c = np.asarray(center, dtype=float)
    sigma, dof = landmark_sigma(fit)
    sigma = 0.0 if not math.isfinite(sigma) else sigma
    r0, t0 = tfm.matrix_offset(fit.transform)
    p = fit.fixed
    q_hat = p @ r0.T + t0
    sig = np.full(n, sigma)
    if posterior and dof > 0:
        sig = sigma * np.sqrt(dof / rng.chisquare(dof, size=n))
    # localisation error of each sample in pre space (per axis at least the quantisation),
    # carried to post space by the fitted rotation
    white = rng.standard_normal((n, len(p), 3))
    rot = np.empty((n, 3, 3))
    trans = np.empty((n, 3))
    for k in range(n):
        w, v = np.linalg.eigh(fit.localisation_covariance(sig[k]))
        noise = (white[k] * np.sqrt(np.clip(w, 0, None))) @ v.T @ r0.T
        r, t = lm.kabsch(p, q_hat + noise)
        # refit error in pre space E(p) = T0^-1(T*(p)) = rd p + ud; the sample is E^-1
        rd, ud = r0.T @ r, r0.T @ (t - t0)
        rot[k] = rd.T
        trans[k] = rd.T @ c - rd.T @ ud - c  # E^-1(p) = rd^T (p - c) + c + trans
    tre = predicted_tre(landmark_covariance(fit, c), c, c)
    floor = " (at least the grids' quantisation)" if fit.quantisation_cov.any() else ""
    src = (
        f"landmarks: {fit.n} pairs, residual RMS {fit.rms_fre:.2f} mm, FLE "
        f"{fit.fle_estimate:.2f} mm{floor}, "
        f"predicted error at the tumor {tre:.2f} mm (RMS)"
    )
    return RigidSamples(rot, trans, c, (src,))


def covariance_samples(
    cov: np.ndarray, n: int, rng: np.random.Generator, center, source: str
) -> RigidSamples:
    """Draw perturbations from a normal distribution of the six parameters ``(omega, t)``.

    Parameters
    ----------
    cov : (6, 6) array
        Covariance of ``(omega, t)`` (rad, mm) about ``center``; positive semi-definite.
    n : int
        Number of samples.
    rng : numpy.random.Generator
        The random generator the samples are drawn from.
    center : (3,) array
        The centre of the rotations, LPS (x, y, z) in mm.
    source : str
        The line that describes this source.

    Returns
    -------
    RigidSamples
        ``n`` perturbations about ``center`` (rotation vectors ``omega``, translations
        ``t``), with the one source line.
    """
    cov = np.asarray(cov, dtype=float)
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    theta = rng.standard_normal((n, 6)) * np.sqrt(np.clip(w, 0, None)) @ v.T
    rot = Rotation.from_rotvec(theta[:, :3]).as_matrix()
    return RigidSamples(rot, theta[:, 3:].copy(), np.asarray(center, dtype=float), (source,))


def restart_covariance(
    fixed: sitk.Image,
    moving: sitk.Image,
    accepted: sitk.Transform,
    tumor: sitk.Image,
    *,
    ablation: sitk.Image | None = None,
    restarts: int = 6,
    perturb_mm: float = 2.0,
    perturb_deg: float = 2.0,
    seed: int = 0,
    progress=None,
    cancel=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Spread of the automatic registration's optimum, from a few restarts.

    Each restart runs the local registration
    (:func:`~napari_ablation.core.registration.register_rigid`, the same settings as the
    plugin) from the accepted transform perturbed by a random translation (SD
    ``perturb_mm`` per axis) and rotation (SD ``perturb_deg`` per axis) about the tumor
    centroid, with its own metric sampling seed. The perturbation of each optimum from
    the accepted one, ``D_k = T0^-1 o T_k``, gives the second moment of the six
    parameters about the accepted optimum. Cost: ``restarts`` local registrations (about
    1 s each on the renal sample).

    Parameters
    ----------
    fixed, moving : SimpleITK.Image
        Pre and post images.
    accepted : SimpleITK.Transform
        The accepted registration (pre -> post).
    tumor : SimpleITK.Image
        Tumor mask on the pre grid (centre of the region and of the rotations).
    ablation : SimpleITK.Image, optional
        Ablation mask on the post grid, left out of the metric.
    restarts : int, default 6
        Number of restarts (at least 2).
    perturb_mm, perturb_deg : float, default 2.0
        SD per axis of the random translation (mm) and rotation (degrees) of each start.
    seed : int, default 0
        Seed of the start perturbations.
    progress : callable, optional
        ``progress(fraction, text)`` after each restart.
    cancel : callable, optional
        Returns True to stop (passed to each registration, which then raises
        :class:`~napari_ablation.core.registration.RegistrationCancelled`).

    Returns
    -------
    cov : (6, 6) array
        Covariance of ``(omega, t)`` about the tumor centroid (rad, mm).
    center : (3,) array
        The tumor centroid (LPS mm).

    Raises
    ------
    AblationError
        Bad images or masks (from the registration), fewer than 2 restarts.
    """
    from . import registration

    if restarts < 2:
        raise AblationError("at least 2 restarts are needed for a spread")
    rng = np.random.default_rng(seed)
    c = registration.mask_centroid_lps(tumor)
    a0, b0 = tfm.matrix_offset(accepted)
    thetas = []
    for k in range(restarts):
        om = np.deg2rad(rng.standard_normal(3) * perturb_deg)
        rp = Rotation.from_rotvec(om).as_matrix()
        tp = rng.standard_normal(3) * perturb_mm
        # start: T0 o P, P(p) = rp (p - c) + c + tp
        init = tfm.euler_from_matrix(a0 @ rp, a0 @ (c + tp - rp @ c) + b0, c)
        res = registration.register_rigid(
            fixed,
            moving,
            tumor_mask=tumor,
            moving_exclude=ablation,
            initial=init,
            seed=k + 1,
            cancel=cancel,
        )
        if progress is not None:
            progress((k + 1) / restarts, f"registration spread: restart {k + 1} of {restarts}")
        ak, bk = tfm.matrix_offset(res.transform)
        rd = a0.T @ ak  # D = T0^-1 o Tk: p -> rd p + a0^T (bk - b0)
        ud = a0.T @ (bk - b0)
        thetas.append(np.concatenate([Rotation.from_matrix(rd).as_rotvec(), rd @ c + ud - c]))
    th = np.asarray(thetas)
    return th.T @ th / len(th), c


#: the reader's accuracy assumed at the tumor for a manual registration or none, until the
#: user states another (SD per patient axis, mm; 95 % of the errors within 2.8 mm)
DEFAULT_READER_SD_MM = 1.0
#: samples used for the predicted registration error at the tumor (:func:`registration_error_at`)
ERROR_SAMPLES = 1000
#: what a registration judged by the reader's accuracy is, by how it was made (the case
#: model's ``transform_step.source``); :data:`NOT_REGISTERED` without one
REGISTRATION_MADE_BY = {
    "manual": "manual registration",
    "automatic": "automatic registration without its spread",
    "landmarks": "landmark registration with fewer than 3 pairs",
    "file": "registration from a file",
}
NOT_REGISTERED = "no registration (pre and post assumed aligned)"


def reader_accuracy(sd_mm: float | None, what: str) -> RegistrationError:
    """Return the error model of a registration only the reader can judge.

    A manual registration, one read from a file, or none: the error is the reader's
    accuracy at the tumor, stated or (``sd_mm`` None) the default
    :data:`DEFAULT_READER_SD_MM`, named an assumption. The case model and ``margin
    --uncertainty`` take it from here, so both give the same interval.

    Parameters
    ----------
    sd_mm : float or None
        The stated SD per patient axis at the tumor (mm); None: nobody stated one.
    what : str
        What the registration is (a value of :data:`REGISTRATION_MADE_BY`, or
        :data:`NOT_REGISTERED`).

    Returns
    -------
    RegistrationError
        A stated accuracy whose note says "assumed" or "stated reader accuracy, <what>".
    """
    assumed = sd_mm is None
    return RegistrationError(
        sd_mm=DEFAULT_READER_SD_MM if assumed else float(sd_mm),
        sd_note=f"{'assumed' if assumed else 'stated'} reader accuracy, {what}",
    )


@dataclass(frozen=True)
class RegistrationError:
    """Where the registration error comes from, and how large it is.

    Any combination of the three sources is allowed; their samples compose in the order
    landmarks, automatic spread, stated accuracy (the order of the CLI).

    Parameters
    ----------
    landmarks : (fixed, moving) pair, optional
        The landmarks the registration was fitted to (anything
        :func:`~napari_ablation.core.landmarks.fit_landmarks` accepts).
    landmark_spacings : (fixed, moving) pair, optional
        Spacing ``(x, y, z)`` mm of the pre and post images the landmarks were clicked on:
        their localisation error is at least the grids' quantisation (either may be None).
    covariance : (6, 6) array, optional
        Covariance of ``(omega, t)`` about ``covariance_center`` (the automatic
        registration's spread, :func:`restart_covariance`).
    covariance_center : (3,) array, optional
        The centre of the covariance's rotations, LPS (x, y, z) in mm; default the tumor
        centroid the samples are drawn about.
    sd_mm : float, optional
        A stated accuracy: SD per patient axis at the tumor (mm).
    sd_note : str, default ""
        What the stated accuracy is (e.g. "assumed reader accuracy for a manual
        registration"); empty: stated by the user.
    """

    landmarks: tuple[Any, Any] | None = None
    landmark_spacings: tuple[Any, Any] | None = None
    covariance: np.ndarray | None = None
    covariance_center: np.ndarray | None = None
    sd_mm: float | None = None
    sd_note: str = ""

    @property
    def kind(self) -> str:
        """``landmarks``, ``automatic``, ``stated``, a ``+`` joined combination, or ``none``."""
        parts = [
            k
            for k, v in (
                ("landmarks", self.landmarks),
                ("automatic", self.covariance),
                ("stated", self.sd_mm),
            )
            if v is not None
        ]
        return "+".join(parts) or "none"

    def sd_source(self) -> str:
        """Return the source line of the stated accuracy.

        Returns
        -------
        str
            ``registration: <sd_note or "stated accuracy">, SD <sd_mm> mm per axis at the
            tumor``.
        """
        sd = float(self.sd_mm or 0.0)
        what = self.sd_note or "stated accuracy"
        return f"registration: {what}, SD {sd:g} mm per axis at the tumor"

    def samples(self, n: int, rng: np.random.Generator, center) -> RigidSamples | None:
        """Sample ``n`` registration errors about ``center`` (None: no error source).

        Parameters
        ----------
        n : int
            Number of samples.
        rng : numpy.random.Generator
            Drawn from in the order landmarks, covariance, stated SD.
        center : (3,) array
            The tumor centroid (LPS mm).

        Returns
        -------
        RigidSamples or None
            The composed perturbations of every source given, about ``center``, with their
            source lines; ``None`` without a source.

        Raises
        ------
        AblationError
            Bad landmarks (fewer than 3 pairs, collinear), a negative SD.
        """
        c = np.asarray(center, dtype=float)
        reg = None
        if self.landmarks is not None:
            fs, ms = self.landmark_spacings or (None, None)
            reg = landmark_samples(
                self.landmarks[0], self.landmarks[1], n, rng, c, fixed_spacing=fs, moving_spacing=ms
            )
        if self.covariance is not None:
            cc = c if self.covariance_center is None else self.covariance_center
            tre = predicted_tre(self.covariance, cc, c)
            cov = covariance_samples(
                self.covariance,
                n,
                rng,
                cc,
                "registration: spread of the automatic registration over restarts, "
                f"{tre:.2f} mm RMS at the tumor",
            )
            reg = cov if reg is None else reg.then(cov)
        if self.sd_mm is not None:
            sd = translation_samples(self.sd_mm, n, rng, c, self.sd_source())
            reg = sd if reg is None else reg.then(sd)
        return reg


def registration_error_at(
    error: RegistrationError, point, *, samples: int = ERROR_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Predict the registration error at ``point``: RMS and 95th percentile (mm).

    Parameters
    ----------
    error : RegistrationError
        The registration's error sources.
    point : (3,) array
        Where (LPS mm), e.g. the tumor centroid; also the centre of the rotations.
    samples : int
        Number of sampled errors.
    seed : int, default 0
        Seed of the random generator.

    Returns
    -------
    (float, float)
        RMS and 95th percentile of the sampled displacement of ``point`` (0, 0 without a
        source).

    Raises
    ------
    AblationError
        Bad landmarks or SD (see :meth:`RegistrationError.samples`).
    """
    reg = error.samples(int(samples), np.random.default_rng(seed), point)
    if reg is None:
        return 0.0, 0.0
    d = reg.displacement_at(point)
    return float(np.sqrt(np.mean(d**2))), float(np.quantile(d, 0.95))


def case_uncertainty(
    res: MarginResult,
    error: RegistrationError,
    *,
    tumor: sitk.Image | None = None,
    ablation: sitk.Image | None = None,
    transform: sitk.Transform | None = None,
    boundary_mm: float | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> MarginUncertainty:
    """Compute the MTM interval of an analysis for a registration error model.

    The one entry point of the CLI (``margin --uncertainty``) and of the case model, so
    that both give the same numbers for the same inputs and seed.

    Parameters
    ----------
    res : MarginResult
        The accepted analysis.
    error : RegistrationError
        The registration's error sources.
    tumor, ablation : SimpleITK.Image, optional
        The masks' grids (default boundary tolerance: half a voxel along each axis).
    transform : SimpleITK.Transform, optional
        The accepted registration.
    boundary_mm : float, optional
        Boundary tolerance of both segmentations (None: half a voxel per axis).
    samples : int
        Number of samples.
    seed : int
        Seed of the registration draws; the boundary draws use ``seed + 1``.

    Returns
    -------
    MarginUncertainty
        The MTM's interval and the class fractions' spread (:func:`margin_uncertainty`).

    Raises
    ------
    AblationError
        Bad error sources, sample count or tolerance.
    """
    if int(samples) < 1:
        raise AblationError("at least one sample is needed")
    rng = np.random.default_rng(seed)
    reg = error.samples(int(samples), rng, res.tumor_centroid_lps)
    return margin_uncertainty(
        res,
        reg,
        tumor=tumor,
        ablation=ablation,
        transform=transform,
        boundary_mm=boundary_mm,
        samples=int(samples),
        seed=int(seed) + 1,
    )


# ----------------------------------------------------------------------------- segmentation


def voxel_tolerance_axes(
    image: sitk.Image, boundary_mm: float | None, rotation_to_pre=None
) -> np.ndarray:
    """Compute the boundary tolerance of an object drawn on ``image`` as a 3 x 3 matrix ``M``.

    The tolerance along a unit normal ``n`` (pre LPS) is ``|M^T n|``: half a voxel along each
    axis of ``image`` when ``boundary_mm`` is None, else ``boundary_mm`` in every direction.
    The columns of ``M`` are the tolerance axes.

    Parameters
    ----------
    image : SimpleITK.Image
        The grid the object was drawn on.
    boundary_mm : float or None
        The tolerance in mm in every direction; ``None``: half a voxel along each axis.
    rotation_to_pre : (3, 3) array, optional
        Rotation from the image's physical space to pre space (for the ablation: ``A^T``
        of the registration ``q = A p + b``).

    Returns
    -------
    (3, 3) array
        ``M``, in mm: ``boundary_mm`` times the identity, or the image's axes in pre space
        scaled by half its spacing.

    Raises
    ------
    AblationError
        When ``boundary_mm`` is negative or not finite.
    """
    if boundary_mm is not None:
        b = float(boundary_mm)
        if not math.isfinite(b) or b < 0:
            raise AblationError(
                "the boundary tolerance must be a finite, non-negative number of mm"
            )
        return np.eye(3) * b
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    rot = np.eye(3) if rotation_to_pre is None else np.asarray(rotation_to_pre, dtype=float)
    return (rot @ d) * (0.5 * np.asarray(image.GetSpacing(), dtype=float))[None, :]


def _along(axes: np.ndarray, normals: np.ndarray) -> np.ndarray:
    return np.linalg.norm(normals @ axes, axis=1)


# ----------------------------------------------------------------------------- fast margin


def _plane_distance(
    mesh: Mesh, normals: np.ndarray, tree: cKDTree, pts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the signed distance to the tangent plane of the nearest vertex, and that vertex.

    Positive inside.
    """
    _d, iv = tree.query(pts)
    return -np.einsum("ij,ij->i", pts - mesh.verts[iv], normals[iv]), iv


class _SignedDistanceGrid:
    """The accepted signed margin field, tabulated on a regular grid in pre LPS (axes x, y, z).

    Lattice nodes within ``CPT_BAND_MM`` of an ablation vertex get their closest surface
    point by projection onto the tangent plane of the nearest vertex; every other node the
    best of the closest points of its nearest such node and of its neighbours' (a
    closest-point transform by one Euclidean distance transform). The sign is the side of
    the surface normal at the closest point, positive inside.
    """

    def __init__(self, mesh: Mesh, lo: np.ndarray, hi: np.ndarray, h: float = GRID_MM):
        self.h = float(h)
        self.origin = np.asarray(lo, dtype=float) - h
        shape = tuple(
            int(v) for v in np.ceil((np.asarray(hi) + h - self.origin) / h).astype(int) + 1
        )
        axes = [self.origin[i] + h * np.arange(shape[i]) for i in range(3)]
        nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        normals = mesh.vertex_normals()
        # the closest-point transform runs on the same lattice extended over the whole
        # surface (up to CPT_REACH_MM beyond the box), so that no closest point is missed
        o_big = self.origin - h * np.ceil(
            np.clip(self.origin - mesh.verts.min(axis=0), 0, CPT_REACH_MM) / h
        )
        top = self.origin + h * (np.asarray(shape) - 1)
        e_big = top + h * np.ceil(np.clip(mesh.verts.max(axis=0) - top, 0, CPT_REACH_MM) / h)
        big = tuple(int(v) for v in np.round((e_big - o_big) / h).astype(int) + 1)
        # feature nodes: the lattice nodes within CPT_BAND_MM of a vertex, with the closest
        # point on the tangent plane of that vertex
        lo_v = np.floor((mesh.verts.min(axis=0) - CPT_BAND_MM - o_big) / h).astype(int)
        hi_v = np.ceil((mesh.verts.max(axis=0) + CPT_BAND_MM - o_big) / h).astype(int)
        lo_v, hi_v = np.maximum(lo_v, 0), np.minimum(hi_v, np.asarray(big) - 1)
        cand = np.stack(
            np.meshgrid(*[np.arange(lo_v[i], hi_v[i] + 1) for i in range(3)], indexing="ij"), -1
        ).reshape(-1, 3)
        dist, iv = cKDTree(mesh.verts).query(o_big + h * cand, distance_upper_bound=CPT_BAND_MM)
        ok = np.isfinite(dist)
        cand, iv = cand[ok], iv[ok]
        fnodes = o_big + h * cand
        d_f = -np.einsum("ij,ij->i", fnodes - mesh.verts[iv], normals[iv])
        closest_f = fnodes + d_f[:, None] * normals[iv]
        iv_f = iv
        feat = np.zeros(big, dtype=bool)
        feat[tuple(cand.T)] = True
        fidx = np.ravel_multi_index(tuple(cand.T), big)
        # closest feature node of every lattice node (one Euclidean distance transform), then
        # the best closest point among the 6 neighbours' and its own (repairs the transform's
        # misses)
        nearest = ndimage.distance_transform_edt(~feat, return_distances=False, return_indices=True)
        slot = np.full(feat.size, -1, dtype=np.int64)
        slot[fidx] = np.arange(len(fidx))
        slot_big = slot[np.ravel_multi_index(tuple(nearest.reshape(3, -1)), big)].reshape(big)
        off = np.round((self.origin - o_big) / h).astype(int)
        box_idx = [off[i] + np.arange(shape[i]) for i in range(3)]
        d = np.full(len(nodes), np.inf)
        best = np.zeros(len(nodes), dtype=np.int64)
        for step in (
            (0, 0, 0),
            (-1, 0, 0),
            (1, 0, 0),
            (0, -1, 0),
            (0, 1, 0),
            (0, 0, -1),
            (0, 0, 1),
        ):
            ix = [np.clip(box_idx[i] + o, 0, big[i] - 1) for i, o in enumerate(step)]
            jj = slot_big[np.ix_(*ix)].ravel()
            dd = np.linalg.norm(nodes - closest_f[jj], axis=1)
            better = dd < d
            d[better], best[better] = dd[better], jj[better]
        self.node_normal = normals[iv_f[best]]
        # sign: which side of the surface's normal at the closest point (as the engine judges it)
        outside = np.einsum("ij,ij->i", nodes - closest_f[best], self.node_normal) > 0
        self.values = np.where(outside, -d, d).reshape(shape)
        self.shape = shape

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        flat = pts.reshape(-1, 3)
        idx = ((flat - self.origin) / self.h).T
        v = ndimage.map_coordinates(self.values, idx, order=1, mode="nearest", prefilter=False)
        return v.reshape(pts.shape[:-1])

    def normal_at(self, pts: np.ndarray) -> np.ndarray:
        """Outward normal of the ablation surface nearest to each point (of its grid node)."""
        idx = np.clip(
            np.round((pts - self.origin) / self.h).astype(int), 0, np.asarray(self.shape) - 1
        )
        return self.node_normal[np.ravel_multi_index(tuple(idx.T), self.shape)]


#: steps of the ascent path of the upper end's test inversion (over 1.5 x the largest
#: sampled displacement of the tumor surface)
PATH_STEPS = 40
#: at most this many tumor surface vertices (evenly spread over the list, the accepted
#: minimum among them) judge the plausibility of a candidate
TEST_VERTICES = 1000


def _inverted_upper(grid, surface, allreg, boundary, moved_max, level) -> float:
    """Upper end of the MTM interval by inverting a test (fast-path units).

    Candidates for the true configuration lie on the path that raises the MTM fastest from
    the accepted one: translations by steps along the ablation's inward normal at the
    current minimal-margin vertex (for a tumor ball in an ablation ball, the line back to
    the centred position). A candidate stays plausible unless the accepted MTM lies below
    the ``(1 - level) / 2`` quantile of the MTMs an observation of it would give (the
    candidate composed with each sampled error and its reflection, ``D_k^-1``, which
    doubles the samples of a symmetric error). Plausibility falls along the path, so the
    boundary is found by bisection; the MTM of the first implausible candidate is the
    upper end. Where the MTM is linear in the error this gives the reflected interval's
    upper end; near the MTM's largest value (a tumor near the centre of its ablation
    zone) it reaches up to that value whenever an observation from it could have given
    the accepted MTM, as a Neyman interval does.
    """
    verts, voff, a_vert, m_v0 = surface
    ut, ua = boundary
    a = float(m_v0.min())
    n1 = len(allreg)
    s_max = 1.5 * moved_max
    if s_max <= 0 or n1 < 2:
        return a
    i = int(np.argmin(m_v0))
    t = np.zeros(3)
    path_t, path_m = [t], [a]
    step = s_max / PATH_STEPS
    while step > 0.02 and len(path_t) < 4 * PATH_STEPS and np.linalg.norm(t) < s_max:
        g = -grid.normal_at((verts[i] + t)[None])[0]
        m_v = grid(verts + (t + step * g))
        if float(m_v.min()) <= path_m[-1] + 1e-6:
            step /= 2
            continue
        t = t + step * g
        i = int(np.argmin(m_v))
        path_t.append(t)
        path_m.append(float(m_v.min()))
    # an observation of a candidate: each sampled error and its reflection applied first
    sub = np.union1d(
        np.linspace(0, len(verts) - 1, min(len(verts), TEST_VERTICES)).astype(int),
        [int(np.argmin(m_v0))],
    )
    verts, voff, a_vert = verts[sub], voff[sub], a_vert[sub]
    a_sub = float(m_v0[sub].min())
    rot = allreg.rotations[1:]
    rot = np.concatenate([rot, np.transpose(rot, (0, 2, 1))])
    tr = allreg.translations[1:]
    tr = np.concatenate([tr, -np.einsum("kji,kj->ki", allreg.rotations[1:], tr)])
    inner = RigidSamples(rot, tr, allreg.center)
    pv = inner.apply(verts)
    pv += np.concatenate([ut[1:], -ut[1:]])[:, None, None] * np.matmul(
        voff[None], np.transpose(rot, (0, 2, 1))
    )
    ba = np.concatenate([ua[1:], -ua[1:]])[:, None] * a_vert[None]

    def plausible(k: int) -> bool:
        mk = (grid(pv + path_t[k]) + ba).min(axis=1)
        return a_sub >= float(np.quantile(mk, (1 - level) / 2)) - 1e-9

    lo, hi = 0, len(path_t) - 1  # the accepted configuration is plausible by definition
    if plausible(hi):
        return path_m[hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if plausible(mid):
            lo = mid
        else:
            hi = mid
    return path_m[hi]


def _tumor_voxel_centres(res: MarginResult) -> np.ndarray:
    idx = np.argwhere(res.class_crop > 0) + np.asarray(res.class_offset)
    ref = res.pre_reference
    d = np.asarray(ref.GetDirection(), dtype=float).reshape(3, 3)
    sp = np.asarray(ref.GetSpacing(), dtype=float)
    return (idx[:, ::-1] * sp) @ d.T + np.asarray(ref.GetOrigin(), dtype=float)


def _volume_points(res: MarginResult, pad_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample the tumor and a shell of ``pad_mm`` around it with points.

    Returns their positions, signed distance to the tumor surface (positive inside) and the
    outward normal of the nearest vertex.
    """
    ts = res.tumor_surface
    lo, hi = ts.verts.min(axis=0) - pad_mm, ts.verts.max(axis=0) + pad_mm
    sp = np.asarray(res.pre_reference.GetSpacing(), dtype=float)
    h = max(
        float(sp.min()), (max(res.tumor_volume_ml, 1e-6) * 1000.0 / MAX_VOLUME_POINTS) ** (1 / 3)
    )
    axes = [np.arange(lo[i] + h / 2, hi[i], h) for i in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    normals = ts.vertex_normals()
    d, iv = _plane_distance(ts, normals, cKDTree(ts.verts), pts)
    keep = d >= -pad_mm
    return pts[keep], d[keep], normals[iv[keep]]


def _classes(m: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(m < 0, 3, np.where(m < threshold, 2, 1)).astype(np.uint8)


def signed_mm_text(value: float, decimals: int = 1) -> str:
    """Format a signed distance in mm with its sign, the same way everywhere.

    Parameters
    ----------
    value : float
        The distance (mm).
    decimals : int
        Decimals shown.

    Returns
    -------
    str
        ``"+1.2"``, ``"-0.4"``; a value that rounds to zero reads ``"0.0"`` (never
        ``"+0.0"`` in one output and ``"-0.0"`` in another).
    """
    text = f"{value:+.{decimals}f}"
    return f"{0.0:.{decimals}f}" if float(text) == 0.0 else text


@dataclass
class MarginUncertainty:
    """The MTM's interval and the class fractions' spread under registration and segmentation error.

    Parameters
    ----------
    min_margin_mm : float
        The accepted (exact) MTM, in mm.
    interval_mm : (float, float)
        The MTM's ``level`` interval, in mm: :func:`mtm_interval` of the sampled MTMs, its
        upper end raised by test inversion where that is larger (see the module notes).
    level : float
        Central probability of the interval, e.g. 0.95.
    p_below_zero, p_below_threshold : float
        Probability that the MTM is < 0 and < threshold: the fraction of the perturbed MTMs
        and of their reflections about the accepted MTM (the two views of
        :func:`mtm_interval`) below it.
    threshold_mm : float
        The margin threshold of the analysis, in mm.
    sampled_min_margin_mm : (n,) array
        The MTM under each sampled error, in mm.
    sampled_volume_fraction : dict of (n,) arrays
        The tumor volume fraction of each coverage class under each sampled error (keys of
        ``coverage.CLASS_KEYS``).
    uncertain_crop : bool array
        Same shape and offset as ``MarginResult.class_crop``: tumor voxels whose class
        differs from the accepted one in more than ``UNCERTAIN_FRACTION`` of the samples.
    uncertain_volume_ml, uncertain_fraction : float
        Volume (ml) and fraction of the tumor voxels of ``uncertain_crop``.
    registration_error_mm : (float, float)
        RMS and 95th percentile of the sampled registration displacement of the tumor centroid.
    sources : list of str, optional
        One human-readable line per source of error.
    fast_offset_mm : float, default 0.0
        Exact MTM minus the fast re-evaluation's MTM at the accepted transform (the fast
        path's own error; the interval is shifted by it).
    """

    min_margin_mm: float
    interval_mm: tuple[float, float]
    level: float
    p_below_zero: float
    p_below_threshold: float
    threshold_mm: float
    sampled_min_margin_mm: np.ndarray
    sampled_volume_fraction: dict[str, np.ndarray]
    uncertain_crop: np.ndarray
    uncertain_volume_ml: float
    uncertain_fraction: float
    registration_error_mm: tuple[float, float]
    sources: list[str] = field(default_factory=list)
    fast_offset_mm: float = 0.0

    @property
    def samples(self) -> int:
        """Return the number of samples."""
        return len(self.sampled_min_margin_mm)

    def volume_fraction_interval(self) -> dict[str, tuple[float, float]]:
        """Return the central ``level`` range of each coverage class's volume fraction.

        Returns
        -------
        dict
            ``{class key: (lo, hi)}``, the percentile range of the sampled fractions.
        """
        q = [(1 - self.level) / 2, (1 + self.level) / 2]
        return {
            k: tuple(float(v) for v in np.quantile(s, q))
            for k, s in self.sampled_volume_fraction.items()
        }

    def interval_text(self) -> str:
        """Format the interval as one line.

        Returns
        -------
        str
            E.g. ``MTM -0.4 mm (95 %: -1.6 to +0.9; P(MTM < 0) = 64.5 %)``. The
            probabilities have the precision of the results table and the CSV
            (:meth:`rows`), so that screen and exports say the same figure (UAT s11 N6).
        """
        lo, hi = self.interval_mm
        return (
            f"MTM {self.min_margin_mm:.1f} mm ({100 * self.level:.0f} %: {signed_mm_text(lo)} to "
            f"{signed_mm_text(hi)}; P(MTM < 0) = {100 * self.p_below_zero:.1f} %)"
        )

    def summary_text(self) -> str:
        """Summarize the interval, probabilities, class ranges, uncertain volume and sources.

        Returns
        -------
        str
            Several lines: :meth:`interval_text`, P(MTM < threshold) with the class-fraction
            ranges and the uncertain volume, the sample count and registration error, then
            one line per source.
        """
        fi = self.volume_fraction_interval()
        names = {
            "covered_with_margin": "green",
            "insufficient_margin": "yellow",
            "uncovered": "red",
        }
        lines = [
            self.interval_text(),
            f"P(MTM < {self.threshold_mm:g} mm) = {100 * self.p_below_threshold:.1f} %; "
            + ", ".join(f"{names[k]} {100 * lo:.1f}-{100 * hi:.1f} %" for k, (lo, hi) in fi.items())
            + f"; uncertain class: {self.uncertain_volume_ml:.2f} ml "
            f"({100 * self.uncertain_fraction:.1f} % of the tumor)",
            f"{self.samples} samples; registration error at the tumor "
            f"{self.registration_error_mm[0]:.2f} mm RMS",
        ]
        lines += [f"  source: {s}" for s in self.sources]
        return "\n".join(lines)

    def rows(self) -> list[tuple[str, str, str]]:
        """Return the (figure, value, unit) rows for the results table and the CSV.

        They follow ``MarginResult.rows()``.

        Returns
        -------
        list of (str, str, str)
            The interval's ends, P(MTM < 0), P(MTM < threshold), the class-fraction ranges,
            the uncertain volume, the sample count and one row per source.
        """
        lo, hi = self.interval_mm
        pct = f"{100 * self.level:.0f} %"
        rows = [
            (f"MTM {pct} interval, lower", f"{lo:.2f}", "mm"),
            (f"MTM {pct} interval, upper", f"{hi:.2f}", "mm"),
            ("P(MTM < 0)", f"{100 * self.p_below_zero:.1f}", "%"),
            (f"P(MTM < {self.threshold_mm:g} mm)", f"{100 * self.p_below_threshold:.1f}", "%"),
        ]
        for k, (flo, fhi) in self.volume_fraction_interval().items():
            name = f"Tumor {class_title(k, self.threshold_mm)} ({CLASS_COLOR_NAMES[k]})"
            rows.append(
                (f"{name} fraction, {pct} range", f"{100 * flo:.1f} to {100 * fhi:.1f}", "%")
            )
        rows += [
            ("Uncertain class volume", f"{self.uncertain_volume_ml:.3f}", "ml"),
            ("Uncertainty samples", f"{self.samples:d}", ""),
        ]
        rows += [("Uncertainty source", s, "") for s in self.sources]
        return rows

    def to_json_dict(self) -> dict[str, Any]:
        """Return the JSON keys of DESIGN section 5, the class-fraction intervals and more.

        Also the uncertain volume and the registration error at the tumor.

        Returns
        -------
        dict
            JSON-serialisable keys (``min_margin_interval_mm``,
            ``p_min_margin_below_zero``, ..., ``registration_error_at_tumor_mm``), rounded.
        """
        r = json_figure
        return {
            "min_margin_interval_mm": [r(self.interval_mm[0]), r(self.interval_mm[1])],
            "p_min_margin_below_zero": r(self.p_below_zero, 4),
            "p_min_margin_below_threshold": r(self.p_below_threshold, 4),
            "uncertainty_samples": int(self.samples),
            "uncertainty_sources": list(self.sources),
            "uncertainty_level": r(self.level, 3),
            "volume_fraction_interval": {
                k: [r(lo, 4), r(hi, 4)] for k, (lo, hi) in self.volume_fraction_interval().items()
            },
            "uncertain_volume_ml": r(self.uncertain_volume_ml, 4),
            "uncertain_volume_fraction": r(self.uncertain_fraction, 4),
            "registration_error_at_tumor_mm": {
                "rms": r(self.registration_error_mm[0]),
                "p95": r(self.registration_error_mm[1]),
            },
        }

    def class_crop_with_uncertain(self, class_crop: np.ndarray) -> np.ndarray:
        """Return the margin layer's classes with the uncertain voxels set to ``UNCERTAIN_LABEL``.

        Classes: 1 green, 2 yellow, 3 red.

        Parameters
        ----------
        class_crop : uint8 array
            ``MarginResult.class_crop`` of the analysis this interval belongs to.

        Returns
        -------
        uint8 array of the same shape
            A copy of ``class_crop`` with the uncertain tumor voxels set to
            ``UNCERTAIN_LABEL``.
        """
        out = np.array(class_crop, dtype=np.uint8, copy=True)
        out[self.uncertain_crop & (out > 0)] = UNCERTAIN_LABEL
        return out

    def margin_labels_image(self, res: MarginResult) -> sitk.Image:
        """``res.margin_labels_image()`` with the uncertain tumor voxels set to ``UNCERTAIN_LABEL``.

        Parameters
        ----------
        res : MarginResult
            The analysis this interval belongs to.

        Returns
        -------
        SimpleITK.Image
            The ``uint8`` labels on the full pre grid.
        """
        img = res.margin_labels_image()
        arr = sitk.GetArrayFromImage(img)
        z, y, x = res.class_offset
        dz, dy, dx = res.class_crop.shape
        arr[z : z + dz, y : y + dy, x : x + dx] = self.class_crop_with_uncertain(res.class_crop)
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(img)
        return out


def plot_min_margin_samples(unc: MarginUncertainty, ax=None, fig=None):
    """Plot a small histogram of the sampled MTMs with the interval, 0 and the threshold marked.

    Parameters
    ----------
    unc : MarginUncertainty
        The interval and its sampled MTMs.
    ax : matplotlib Axes, optional
        Draw here; else a new figure is made.
    fig : matplotlib Figure, optional
        The figure to add the axes to when ``ax`` is not given (default a new one).

    Returns
    -------
    matplotlib Figure
        ``fig``: the figure drawn into (``None`` if ``ax`` was given without ``fig``).
    """
    from matplotlib.figure import Figure

    from .coverage import CLASS_COLORS

    if ax is None:
        fig = fig or Figure(figsize=(4.2, 2.2))
        ax = fig.add_subplot(1, 1, 1)
    m = unc.sampled_min_margin_mm
    lo, hi = float(m.min()), float(m.max())
    bins = (
        np.linspace(lo - 0.05, hi + 0.05, 26)
        if hi - lo > 1e-6
        else np.array([lo - 0.25, lo + 0.25])
    )
    counts, edges = np.histogram(m, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    t = unc.threshold_mm
    colors = [
        CLASS_COLORS["uncovered"]
        if c < 0
        else CLASS_COLORS["insufficient_margin"]
        if c < t
        else CLASS_COLORS["covered_with_margin"]
        for c in centers
    ]
    ax.bar(
        centers, 100 * counts / len(m), width=np.diff(edges) * 0.95, color=colors, edgecolor="none"
    )
    ax.axvspan(*unc.interval_mm, color="0.5", alpha=0.15, lw=0)
    ax.axvline(unc.min_margin_mm, color="k", lw=1.2)
    for xv, style in ((0.0, "-"), (t, "--")):
        if lo - 1 <= xv <= hi + 1:
            ax.axvline(xv, color="0.3", ls=style, lw=0.8)
    ax.set_xlabel("sampled MTM (mm)", fontsize=8)
    ax.set_ylabel("% of samples", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(unc.interval_text(), fontsize=8)
    return fig


def mtm_interval(
    accepted_mm: float, perturbed_mm: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Compute the MTM's interval from its values under sampled errors.

    The union of the percentile interval of the perturbed MTMs and of its reflection about
    the accepted MTM (the basic, pivotal bootstrap interval). Where the MTM depends
    linearly on the error the two coincide; where it does not (the MTM is a minimum, so any
    misregistration tends to lower it, most of all for a tumor centred in its ablation zone)
    the first lies below the truth and the second corrects for the bias.

    Parameters
    ----------
    accepted_mm : float
        The MTM of the accepted analysis.
    perturbed_mm : (n,) array
        The MTM under each sampled error.
    level : float
        Central probability of each of the two intervals.

    Returns
    -------
    (float, float)
        The lower and upper ends, in mm.
    """
    m = np.asarray(perturbed_mm, dtype=float)
    q_lo, q_hi = (float(v) for v in np.quantile(m, [(1 - level) / 2, (1 + level) / 2]))
    a = float(accepted_mm)
    return min(q_lo, 2 * a - q_hi), max(q_hi, 2 * a - q_lo)


def margin_uncertainty(
    res: MarginResult,
    registration: RigidSamples | None = None,
    *,
    tumor: sitk.Image | None = None,
    ablation: sitk.Image | None = None,
    transform: sitk.Transform | None = None,
    boundary_mm: float | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int | None = 0,
    level: float = 0.95,
) -> MarginUncertainty:
    """Interval of the MTM (and spread of the class fractions) by sampling errors.

    Parameters
    ----------
    res : MarginResult
        The accepted analysis (:func:`~napari_ablation.core.margin.analyze_margin`).
    registration : RigidSamples, optional
        Registration perturbations about the tumor centroid (``None``: the registration
        is taken as exact). Its length sets the number of samples.
    tumor, ablation : SimpleITK.Image, optional
        The masks' grids, for the default boundary tolerance (half a voxel per axis); the
        tumor's defaults to ``res.pre_reference``, the ablation's to the tumor's.
    transform : SimpleITK.Transform, optional
        The accepted registration (orients the ablation grid's axes in pre space).
    boundary_mm : float, optional
        Boundary tolerance in mm for both objects (``0``: no segmentation error; ``None``:
        half a voxel along each axis).
    samples : int
        Number of samples when ``registration`` is None.
    seed : int, optional
        Seed of the boundary draws.
    level : float
        Central probability of the interval.

    Returns
    -------
    MarginUncertainty
        The MTM's interval, the class fractions' spread and the uncertain tumor voxels.

    Raises
    ------
    AblationError
        Bad sample count or level, bad tolerance.
    """
    if registration is not None:
        samples = len(registration)
    if int(samples) < 1:
        raise AblationError("at least one sample is needed")
    if not 0 < level < 1:
        raise AblationError("the interval level must lie between 0 and 1")
    n = int(samples)
    rng = np.random.default_rng(seed)
    ts = res.tumor_surface
    centroid = np.asarray(res.tumor_centroid_lps, dtype=float)
    reg = registration if registration is not None else RigidSamples.identity(n, centroid)
    a_rot = tfm.matrix_offset(transform)[0] if transform is not None else np.eye(3)
    tol_t = voxel_tolerance_axes(tumor if tumor is not None else res.pre_reference, boundary_mm)
    tol_a = voxel_tolerance_axes(
        ablation if ablation is not None else res.pre_reference, boundary_mm, a_rot.T
    )
    b_t = float(np.linalg.norm(tol_t, axis=0).max())
    b_a = float(np.linalg.norm(tol_a, axis=0).max())
    u_t = rng.uniform(-1, 1, n) if b_t > 0 else np.zeros(n)
    u_a = rng.uniform(-1, 1, n) if b_a > 0 else np.zeros(n)
    sources = list(reg.sources)
    if b_t > 0 or b_a > 0:
        what = (
            "half a voxel along each axis" if boundary_mm is None else f"{float(boundary_mm):g} mm"
        )
        sources.append(
            f"segmentation: tumor and ablation boundaries moved along their normals by up to {what}"
        )

    # --- points: tumor surface (MTM), voxel centres (classes), volume points (fractions)
    verts, vnorm = ts.verts, ts.vertex_normals()
    voff = _along(tol_t, vnorm)[:, None] * vnorm  # outward offset at u_t = 1
    vox = _tumor_voxel_centres(res)
    vol, vol_d, vol_n = _volume_points(res, b_t)
    vol_tol = _along(tol_t, vol_n)

    radius = float(np.linalg.norm(np.vstack([verts, vox]) - reg.center, axis=1).max()) + b_t
    reach = reg.max_displacement(radius) + b_t
    lo = np.minimum(verts.min(axis=0), vol.min(axis=0)) - reach
    hi = np.maximum(verts.max(axis=0), vol.max(axis=0)) + reach
    grid = _SignedDistanceGrid(res.ablation_surface, lo, hi)
    a_vert = _along(tol_a, grid.normal_at(verts))
    a_vox = _along(tol_a, grid.normal_at(vox))
    a_vol = _along(tol_a, grid.normal_at(vol))

    # identity first: the accepted analysis through the same arithmetic as every sample
    ident = RigidSamples.identity(1, reg.center)
    rot = np.concatenate([ident.rotations, reg.rotations])
    trans = np.concatenate([ident.translations, reg.translations])
    allreg = RigidSamples(rot, trans, reg.center)
    ut = np.concatenate([[0.0], u_t])
    ua = np.concatenate([[0.0], u_a])

    t = float(res.threshold_mm)
    mtm_fast = np.empty(n + 1)
    moved = np.empty(n + 1)
    frac_fast = np.empty((n + 1, 3))
    vox_cls0 = None
    changed = np.zeros(len(vox), dtype=np.int64)
    chunk = max(1, int(2_000_000 // max(len(verts) + len(vox) + len(vol), 1)))
    for s in range(0, n + 1, chunk):
        sl = slice(s, min(s + chunk, n + 1))
        sub = RigidSamples(allreg.rotations[sl], allreg.translations[sl], allreg.center)
        k_t, k_a = ut[sl, None], ua[sl, None]
        # MTM: tumor surface moved along its normal, ablation boundary by k_a along its own
        p = sub.apply(verts)
        p += k_t[:, :, None] * np.matmul(voff[None], np.transpose(sub.rotations, (0, 2, 1)))
        m_v = grid(p) + k_a * a_vert
        mtm_fast[sl] = m_v.min(axis=1)
        if s == 0:
            m_v0 = m_v[0]
        # how far the sample moves the tumor surface (and the two boundaries) at most
        moved[sl] = (
            np.sqrt(np.einsum("kvi,kvi->kv", p - verts, p - verts).max(axis=1))
            + np.abs(k_t[:, 0]) * b_t
            + np.abs(k_a[:, 0]) * b_a
        )
        # classes of the accepted tumor voxels
        cls = _classes(grid(sub.apply(vox)) + k_a * a_vox, t)
        if vox_cls0 is None:
            vox_cls0 = cls[0]
        changed += np.count_nonzero(cls != vox_cls0[None], axis=0)
        # class fractions over the (moved) tumor volume
        member = vol_d[None] + k_t * vol_tol[None] >= 0
        cls_v = _classes(grid(sub.apply(vol)) + k_a * a_vol, t)
        tot = np.maximum(member.sum(axis=1), 1)
        for j in range(3):
            frac_fast[sl, j] = np.count_nonzero(member & (cls_v == j + 1), axis=1) / tot

    m0 = float(res.min_margin_mm)
    mtm = m0 + (mtm_fast[1:] - mtm_fast[0])  # the MTM under each sampled error
    exact_frac = np.array([res.volume_fraction[k] for k in CLASS_KEYS])
    fracs = np.clip(exact_frac[None] + frac_fast[1:] - frac_fast[0], 0.0, 1.0)
    lo_q, hi_q = mtm_interval(m0, mtm, level)
    # the upper end by test inversion (the reflection above is too short where the MTM is near
    # its largest value over the errors, e.g. a tumor near the centre of its ablation zone)
    hi_inv = _inverted_upper(
        grid, (verts, voff, a_vert, m_v0), allreg, (ut, ua), float(moved[1:].max(initial=0)), level
    )
    hi_q = max(hi_q, m0 + hi_inv - mtm_fast[0])
    plausible = np.concatenate([mtm, 2 * m0 - mtm])
    unc_vox = changed > UNCERTAIN_FRACTION * n
    unc = np.zeros(res.class_crop.shape, dtype=bool)
    unc[tuple(np.argwhere(res.class_crop > 0)[unc_vox].T)] = True
    ref = res.pre_reference
    voxel_ml = float(np.prod(ref.GetSpacing())) / 1000.0
    disp = reg.displacement_at(centroid)
    return MarginUncertainty(
        min_margin_mm=float(res.min_margin_mm),
        interval_mm=(lo_q, hi_q),
        level=float(level),
        p_below_zero=float(np.mean(plausible < 0)),
        p_below_threshold=float(np.mean(plausible < t)),
        threshold_mm=t,
        sampled_min_margin_mm=mtm,
        sampled_volume_fraction={k: fracs[:, j] for j, k in enumerate(CLASS_KEYS)},
        uncertain_crop=unc,
        uncertain_volume_ml=float(np.count_nonzero(unc_vox)) * voxel_ml,
        uncertain_fraction=float(np.mean(unc_vox)) if len(unc_vox) else 0.0,
        registration_error_mm=(float(np.sqrt(np.mean(disp**2))), float(np.quantile(disp, 0.95))),
        sources=sources,
        fast_offset_mm=float(res.min_margin_mm - mtm_fast[0]),
    )
