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
    # noise on both sides: effective FLE^2 = 2 * 3 sigma^2
    fit.fle_estimate = math.sqrt(2 * 3 * sigma**2)
    for i, t in enumerate(targets):
        assert math.sqrt(sq[i]) == pytest.approx(fit.predicted_tre_at(t), rel=0.08)
    # FLE estimated from the residual: <FRE^2> = (1 - 2/N) FLE^2
    n = len(pts)
    assert fre2 / trials == pytest.approx((1 - 2 / n) * 6 * sigma**2, rel=0.08)
    # farther from the landmarks -> larger predicted error
    assert fit.predicted_tre_at(targets[1]) > fit.predicted_tre_at(targets[0])


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
