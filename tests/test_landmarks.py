"""Paired-landmark rigid fit: exact least squares, residuals, Fitzpatrick's predicted TRE,
CSV I/O."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from napari_ablation.core import landmarks as lm
from napari_ablation.core import transform as tfm
from napari_ablation.core.errors import AblationError


def _euler(deg, t, center=(0, 0, 0)):
    e = sitk.Euler3DTransform()
    e.SetCenter([float(v) for v in center])
    e.SetRotation(*[math.radians(d) for d in deg])
    e.SetTranslation([float(v) for v in t])
    return e


RNG = np.random.default_rng(7)
PRE = {str(i + 1): p for i, p in enumerate(RNG.uniform(-60, 60, size=(7, 3)))}


def _moved(tx, pts):
    return {k: tfm.transform_points(tx, v)[0] for k, v in pts.items()}


def test_noise_free_points_recover_the_transform_exactly():
    true = _euler((12, -20, 7), (5.0, -8.0, 3.5), center=(10, 20, -5))
    post = _moved(true, PRE)
    fit = lm.fit_landmarks(PRE, post)
    grid = RNG.uniform(-100, 100, size=(50, 3))
    err = np.abs(tfm.transform_points(fit.transform, grid) - tfm.transform_points(true, grid)).max()
    assert err < 1e-9
    assert fit.rms_fre < 1e-9 and max(fit.residuals.values()) < 1e-9
    # ITK convention: T(pre point) = post point
    for k in PRE:
        assert np.allclose(tfm.transform_points(fit.transform, PRE[k])[0], post[k], atol=1e-9)


def test_noisy_fit_equals_the_brute_force_least_squares_solution():
    true = _euler((5, 3, -8), (2, 4, -6))
    post = {k: v + RNG.normal(0, 1.5, 3) for k, v in _moved(true, PRE).items()}
    fit = lm.fit_landmarks(PRE, post)
    p = np.array([PRE[k] for k in fit.labels])
    q = np.array([post[k] for k in fit.labels])

    def resid(x):
        r = Rotation.from_rotvec(x[:3]).as_matrix()
        return (p @ r.T + x[3:] - q).ravel()

    sol = least_squares(resid, np.zeros(6), xtol=1e-14, ftol=1e-14, gtol=1e-14)
    r = Rotation.from_rotvec(sol.x[:3]).as_matrix()
    grid = RNG.uniform(-80, 80, size=(100, 3))
    brute = grid @ r.T + sol.x[3:]
    ours = tfm.transform_points(fit.transform, grid)
    assert np.abs(ours - brute).max() < 0.01
    # SVD solution is at least as good as the optimiser's
    assert (
        np.sum(
            resid(
                np.r_[
                    Rotation.from_matrix(tfm.matrix_offset(fit.transform)[0]).as_rotvec(),
                    tfm.matrix_offset(fit.transform)[1],
                ]
            )
            ** 2
        )
        <= np.sum(sol.fun**2) + 1e-9
    )
    # residual table: |T(p_i) - q_i| per label
    for k in fit.labels:
        assert fit.residuals[k] == pytest.approx(
            np.linalg.norm(tfm.transform_points(fit.transform, PRE[k])[0] - post[k]), abs=1e-9
        )


def test_pairs_are_matched_by_label_not_order():
    true = _euler((0, 0, 30), (1, 2, 3))
    post = _moved(true, PRE)
    shuffled = dict(reversed(list(post.items())))
    fit = lm.fit_landmarks(PRE, shuffled)
    assert fit.rms_fre < 1e-9


def test_a_bad_click_shows_in_its_residual():
    true = _euler((4, 0, 0), (0, 0, 0))
    post = _moved(true, PRE)
    post["3"] = post["3"] + np.array([9.0, 0, 0])
    fit = lm.fit_landmarks(PRE, post)
    assert fit.worst()[0] == "3"
    assert fit.residuals["3"] > 3 * max(v for k, v in fit.residuals.items() if k != "3")


def test_predicted_tre_matches_monte_carlo():
    """Fitzpatrick's formula with the true FLE against simulated fits (isotropic noise)."""
    pts = {
        str(i): p
        for i, p in enumerate(
            np.array(
                [[40, 0, 0], [-30, 25, 5], [0, -35, 20], [10, 10, -40], [-20, -20, -10]], float
            )
        )
    }
    sigma = 1.0  # per axis -> FLE (RMS 3D) = sqrt(3)
    targets = [np.array([0.0, 0.0, 0.0]), np.array([60.0, 40.0, 10.0])]
    rng = np.random.default_rng(11)
    sq = np.zeros(len(targets))
    fre2 = 0.0
    trials = 3000
    for _ in range(trials):
        noisy_pre = {k: v + rng.normal(0, sigma, 3) for k, v in pts.items()}
        noisy_post = {k: v + rng.normal(0, sigma, 3) for k, v in pts.items()}
        f = lm.fit_landmarks(noisy_pre, noisy_post)
        for i, t in enumerate(targets):
            sq[i] += np.sum((tfm.transform_points(f.transform, t)[0] - t) ** 2)
        fre2 += f.rms_fre**2
    sq /= trials
    fit = lm.fit_landmarks(pts, pts)

    def tre(t):  # noise on both sides: sigma * sqrt(2) per axis and pair
        return math.sqrt(np.trace(fit.parameter_covariance(t, sigma=math.sqrt(2) * sigma)[3:, 3:]))

    for i, t in enumerate(targets):
        assert math.sqrt(sq[i]) == pytest.approx(tre(t), rel=0.08)
    # FLE estimated from the residual: <FRE^2> = (1 - 2/N) FLE^2
    n = len(pts)
    assert fre2 / trials == pytest.approx((1 - 2 / n) * 6 * sigma**2, rel=0.08)
    # farther from the landmarks -> larger predicted error
    assert tre(targets[1]) > tre(targets[0])


def test_estimated_fle_and_tre_from_a_single_fit():
    true = _euler((3, 3, 3), (1, 1, 1))
    post = {k: v + RNG.normal(0, 1.0, 3) for k, v in _moved(true, PRE).items()}
    fit = lm.fit_landmarks(PRE, post)
    n = fit.n
    assert fit.fle_estimate == pytest.approx(fit.rms_fre * math.sqrt(n / (n - 2)))
    centroid = np.mean(list(PRE.values()), axis=0)
    # at the centroid the formula reduces to FLE / sqrt(N)
    assert fit.predicted_tre_at(centroid) == pytest.approx(
        fit.fle_estimate / math.sqrt(n), rel=1e-9
    )


def test_quantisation_covariance_known_values():
    """A voxel's uniform error: h^2 / 12 per axis; pre and post add; the post grid's axes
    are turned into pre space by the fit's rotation."""
    q = lm.quantisation_covariance((1.2, 1.2, 3.0), None)
    assert np.allclose(q, np.diag([0.12, 0.12, 0.75]))
    both = lm.quantisation_covariance((1.2, 1.2, 3.0), (0.6, 0.6, 6.0))
    assert np.allclose(both, np.diag([0.15, 0.15, 3.75]))
    quarter = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    turned = lm.quantisation_covariance(None, (1.0, 2.0, 3.0), quarter)
    assert np.allclose(turned, np.diag([4.0, 1.0, 9.0]) / 12)
    assert not lm.quantisation_covariance().any()
    for bad in ((1.0, 0.0, 3.0), (1.0, 2.0), (1.0, float("nan"), 1.0)):
        with pytest.raises(AblationError, match="spacing"):
            lm.quantisation_covariance(bad)


def _slice_clicks(anatomy_pre, true, spacing, rng, sd, pre_is_anatomy):
    """Pre and post clicks in an axial 2D view: noise, then z on the slice centre."""

    def click(pts, origin_z):
        out = pts + rng.normal(0, sd, pts.shape)
        out[:, 2] = origin_z + np.round((out[:, 2] - origin_z) / spacing[2]) * spacing[2]
        return out

    p = click(anatomy_pre, rng.uniform(0, spacing[2]))
    anat = p if pre_is_anatomy else anatomy_pre
    q = click(tfm.transform_points(true, anat), rng.uniform(0, spacing[2]))
    return {str(i): v for i, v in enumerate(p)}, {str(i): v for i, v in enumerate(q)}


@pytest.mark.parametrize(
    "pre_is_anatomy,dist,sd,before_at_least",
    [(True, (0.0, 30.0), 0.3, 1.3), (False, (20.0, 40.0), 0.5, 0.0)],
    ids=["UAT-like: pre clicks are the anatomy", "anatomy anywhere"],
)
def test_slice_quantisation_is_a_floor_of_the_predicted_error(
    pre_is_anatomy, dist, sd, before_at_least
):
    """Clicks on 3 mm slices around a tumor (the UAT's renal case: landmarks within 30 mm,
    pre clicks taken as the anatomy, so the post clicks share a through-plane offset the
    residuals cannot see): the residuals alone predict too small an error; with the grids
    the prediction is the RMS of the true error over random layouts (a rigid transform
    applied here, so the truth is known; benchmarks/bench_landmark_tre.py)."""
    spacing = (1.2, 1.2, 3.0)
    rng = np.random.default_rng(5)
    true = _euler((1, -2, 3), (2.5, -3.0, 4.5), center=(0, 0, 0))
    target = np.zeros(3)
    actual2, before2, after2 = [], [], []
    for _ in range(150):
        d = rng.normal(size=(8, 3))
        anat = d / np.linalg.norm(d, axis=1)[:, None] * rng.uniform(*dist, (8, 1))
        fixed, moving = _slice_clicks(anat, true, spacing, rng, sd, pre_is_anatomy)
        fit0 = lm.fit_landmarks(fixed, moving)
        fit1 = lm.fit_landmarks(fixed, moving, fixed_spacing=spacing, moving_spacing=spacing)
        # the grids change the error model, never the fit
        assert fit1.transform.GetParameters() == fit0.transform.GetParameters()
        err = tfm.transform_points(fit0.transform, target) - tfm.transform_points(true, target)
        actual2.append(float(np.sum(err**2)))
        before2.append(fit0.predicted_tre_at(target) ** 2)
        after2.append(fit1.predicted_tre_at(target) ** 2)
        # per axis at least the quantisation: z about 2 * 3^2 / 12 (post turned by R)
        assert fit1.localisation_covariance()[2, 2] > 1.49
    ratio_before = math.sqrt(np.mean(actual2) / np.mean(before2))
    ratio_after = math.sqrt(np.mean(actual2) / np.mean(after2))
    assert ratio_before > before_at_least
    assert 0.75 < ratio_after < 1.25


def test_the_floor_gives_way_to_larger_residuals():
    """Clicks 3 mm off per axis on a 1 mm grid: the residual estimate (corrected for the
    fit's 6 degrees of freedom) is the model, the grid changes nothing."""
    true = _euler((3, 3, 3), (1, 1, 1))
    post = {k: v + RNG.normal(0, 3.0, 3) for k, v in _moved(true, PRE).items()}
    fit0 = lm.fit_landmarks(PRE, post)
    fit1 = lm.fit_landmarks(PRE, post, fixed_spacing=(1, 1, 1), moving_spacing=(1, 1, 1))
    ss = sum(r * r for r in fit0.residuals.values())
    assert fit1.residual_sd == pytest.approx(math.sqrt(ss / (3 * fit1.n - 6)))
    assert np.allclose(fit1.localisation_covariance(), fit1.residual_sd**2 * np.eye(3))
    centroid = np.mean(list(PRE.values()), axis=0)
    assert fit1.predicted_tre_at(centroid) == pytest.approx(fit0.predicted_tre_at(centroid))


def test_resampled_landmark_error_follows_the_anisotropic_closed_form():
    """The samples that feed the MTM interval carry the grids' floor: their RMS at the
    tumor agrees with the closed form within 10 %, and is larger than without grids."""
    from napari_ablation.core import uncertainty as U

    spacing = (1.2, 1.2, 3.0)
    rng = np.random.default_rng(9)
    true = _euler((1, -2, 3), (2.5, -3.0, 4.5))
    d = rng.normal(size=(8, 3))
    anat = d / np.linalg.norm(d, axis=1)[:, None] * rng.uniform(20, 40, (8, 1))
    fixed, moving = _slice_clicks(anat, true, spacing, rng, 0.3, True)
    c = np.array([5.0, -3.0, 2.0])
    kw = {"fixed_spacing": spacing, "moving_spacing": spacing}
    fit = lm.fit_landmarks(fixed, moving, **kw)
    reg = U.landmark_samples(fixed, moving, 3000, rng, c, posterior=False, **kw)
    rms = math.sqrt(np.mean(reg.displacement_at(c) ** 2))
    assert rms == pytest.approx(fit.predicted_tre_at(c), rel=0.1)
    bare = U.landmark_samples(fixed, moving, 3000, rng, c, posterior=False)
    assert math.sqrt(np.mean(bare.displacement_at(c) ** 2)) < 0.8 * rms
    assert "grids' quantisation" in reg.sources[0]
    err = U.RegistrationError(landmarks=(fixed, moving), landmark_spacings=(spacing, spacing))
    assert U.registration_error_at(err, c)[0] == pytest.approx(rms, rel=0.1)


@pytest.mark.parametrize(
    "pre,post,msg",
    [
        ({"1": (0, 0, 0), "2": (10, 0, 0)}, {"1": (0, 0, 0), "2": (10, 0, 0)}, "at least 3"),
        (
            {"1": (0, 0, 0), "2": (10, 0, 0), "3": (20, 0.1, 0)},
            {"1": (0, 0, 0), "2": (10, 0, 0), "3": (20, 0, 0)},
            "collinear",
        ),
        (
            {"1": (0, 0, 0), "2": (10, 0, 0), "3": (0, 10, 0)},
            {"1": (0, 0, 0), "2": (10, 0, 0), "4": (0, 10, 0)},
            "at least 3",
        ),
    ],
)
def test_bad_configurations_are_one_line_errors(pre, post, msg):
    with pytest.raises(AblationError, match=msg) as info:
        lm.fit_landmarks(pre, post)
    assert "\n" not in str(info.value)


def test_unpaired_labels_warn_or_refuse():
    post = _moved(_euler((0, 0, 5), (1, 0, 0)), PRE)
    pre = dict(PRE)
    pre["99"] = np.array([1.0, 2.0, 3.0])
    fit = lm.fit_landmarks(pre, post)
    assert fit.unpaired == ["99"] and "99" in fit.warnings[0]
    with pytest.raises(AblationError, match="99"):
        lm.fit_landmarks(pre, post, strict=True)


def test_points_outside_the_image_are_refused():
    img = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    img.SetSpacing([2.0, 2.0, 2.0])
    lm.check_inside({"a": (0, 0, 0), "b": (18.9, 18.9, 18.9)}, img, "pre")
    with pytest.raises(AblationError, match=r"'b'.*outside the pre image"):
        lm.check_inside({"a": (0, 0, 0), "b": (25, 0, 0)}, img, "pre")


def test_csv_round_trip_and_errors(tmp_path):
    path = tmp_path / "pts.csv"
    lm.write_points_csv(PRE, path)
    back = lm.read_points_csv(path)
    assert set(back) == set(PRE)
    for k, v in PRE.items():
        assert np.array_equal(back[k], v)  # repr() keeps every bit
    # other column order, extra column, float labels, comment lines
    (tmp_path / "b.csv").write_text("# comment\nz,x,label,y,name\n3,1,2.0,2,cyst\n")
    assert np.allclose(lm.read_points_csv(tmp_path / "b.csv")["2"], [1, 2, 3])
    (tmp_path / "c.csv").write_text("name,x,y,z\n1,1,2,3\n")
    with pytest.raises(AblationError, match="header"):
        lm.read_points_csv(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("label,x,y,z\n1,1,2,3\n1,4,5,6\n")
    with pytest.raises(AblationError, match="twice"):
        lm.read_points_csv(tmp_path / "d.csv")
    (tmp_path / "e.csv").write_text("label,x,y,z\n1,1,two,3\n")
    with pytest.raises(AblationError, match="line 2"):
        lm.read_points_csv(tmp_path / "e.csv")
    with pytest.raises(AblationError, match="no such"):
        lm.read_points_csv(tmp_path / "missing.csv")


def test_case_rows_round_trip():
    rows = lm.points_to_rows(PRE)
    assert [r["label"] for r in rows] == sorted(PRE, key=int)
    back = lm.as_points(rows)
    assert all(np.array_equal(back[k], PRE[k]) for k in PRE)
