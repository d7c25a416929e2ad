"""The bundled synthetic sample cases: geometry, ground truth, determinism,
napari sample command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from napari_ablation import cli
from napari_ablation.core import geometry, samples
from napari_ablation.core import transform as tfm
from napari_ablation.core.case import Case

SPACING = {"renal_mri": (1.2, 1.2, 3.0), "liver_ct": (0.7, 0.7, 2.5)}


@pytest.fixture(scope="module")
def bundled():
    return {name: samples.load_sample(name) for name in samples.SAMPLE_NAMES}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """Both cases regenerated through the console script (napari-ablation samples --out DIR)."""
    out = tmp_path_factory.mktemp("samples")
    assert cli.main(["samples", "--out", str(out)]) == 0
    return out


def _arr(img):
    return sitk.GetArrayFromImage(img)


# ----------------------------------------------------------------------------- files


def test_bundled_folders_exist_and_are_small():
    root = samples.sample_dir()
    total = 0
    for name in samples.SAMPLE_NAMES:
        folder = root / name
        for f in (
            "case.json",
            "pre.nii.gz",
            "post.nii.gz",
            "tumor.nii.gz",
            "ablation.nii.gz",
            "true_transform.tfm",
        ):
            assert (folder / f).is_file(), f"{name}/{f} missing"
        total += sum(p.stat().st_size for p in folder.iterdir())
    assert total < 12e6  # stays light enough for git and the wheel


@pytest.mark.parametrize("name", samples.SAMPLE_NAMES)
def test_geometry_and_labels(bundled, name):
    case = bundled[name]
    for role in ("pre", "post", "tumor", "ablation"):
        img = getattr(case, role)
        assert geometry.is_identity_direction(img), role
        assert np.allclose(img.GetSpacing(), SPACING[name]), (role, img.GetSpacing())
    assert geometry.same_grid(case.tumor, case.pre)
    assert geometry.same_grid(case.ablation, case.post)
    assert not geometry.same_grid(case.pre, case.post)  # a real second scan: its own FOV
    assert geometry.overlap_fraction(case.pre, case.post) > 0.85
    assert case.pre.GetPixelID() == sitk.sitkInt16 and case.post.GetPixelID() == sitk.sitkInt16
    for role in ("tumor", "ablation"):
        lab = _arr(getattr(case, role))
        assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1}
    # sizes of the lesions (ml) as described: a 2.3-3 cm tumor, a 3-5 cm ablation zone
    vt = _arr(case.tumor).sum() * geometry.voxel_volume_ml(case.tumor)
    va = _arr(case.ablation).sum() * geometry.voxel_volume_ml(case.ablation)
    assert 5.0 < vt < 16.0, vt
    assert 3 * vt < va < 65.0, va
    # the tumor centre given in the info is inside the tumor label
    idx = np.round(geometry.lps_to_index(case.pre, case.info["tumor_center_lps"])).astype(int)
    assert _arr(case.tumor)[tuple(idx)] == 1
    assert case.transform is None  # the user registers
    assert case.settings["threshold_mm"] == 5.0
    info = case.info
    assert info["sample"] is True and info["name"] == name
    assert info["modality"] == ("MR" if name == "renal_mri" else "CT")


@pytest.mark.parametrize("name", samples.SAMPLE_NAMES)
def test_true_transform_is_a_few_degrees_and_mm(bundled, name):
    case = bundled[name]
    T = samples.true_transform(case)
    assert 2.5 <= tfm.rotation_angle_deg(T) <= 5.0
    c = np.asarray(case.info["tumor_center_lps"])
    shift = np.linalg.norm(tfm.transform_points(T, c)[0] - c)
    assert 5.0 <= shift <= 10.0
    # the .tfm file next to the case holds the same transform
    Tf = tfm.read_rigid_transform(samples.sample_dir() / name / samples.TRUE_TRANSFORM_FILE)
    pts = np.array([[0.0, 0.0, 0.0], [100.0, -50.0, 30.0], c])
    assert np.allclose(tfm.transform_points(T, pts), tfm.transform_points(Tf, pts), atol=1e-6)


@pytest.mark.parametrize("name", samples.SAMPLE_NAMES)
def test_ablation_label_maps_back_to_its_centre(bundled, name):
    """T maps pre points to post points: the post ablation centroid goes back to the pre centre."""
    case = bundled[name]
    T = samples.true_transform(case)
    lab = _arr(case.ablation)
    cen_idx = np.array(ndimage.center_of_mass(lab))
    cen_post = geometry.index_to_lps(case.ablation, cen_idx)
    back = tfm.transform_points(tfm.inverse(T), cen_post)[0]
    assert np.linalg.norm(back - np.asarray(case.info["ablation_center_lps"])) < 1.0
    # ... and with the transform the wrong way round it lands far away
    wrong = tfm.transform_points(T, cen_post)[0]
    assert np.linalg.norm(wrong - np.asarray(case.info["ablation_center_lps"])) > 8.0


def _ncc(a, b, mask):
    a, b = a[mask].astype(float), b[mask].astype(float)
    a -= a.mean()
    b -= b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize("name", samples.SAMPLE_NAMES)
def test_true_transform_registers_the_anatomy(bundled, name):
    """Post resampled onto pre with the true T matches pre around the tumor (outside the
    ablation zone) much better than without registration."""
    case = bundled[name]
    T = samples.true_transform(case)
    pre = _arr(case.pre).astype(np.float32)
    sp = np.asarray(case.pre.GetSpacing())[::-1]
    # region: 25..60 mm from the ablation centre (the zone and its needles/track excluded)
    zz, yy, xx = np.indices(pre.shape, dtype=np.float32)
    c_idx = geometry.lps_to_index(case.pre, case.info["ablation_center_lps"])
    dist = np.sqrt(
        ((zz - c_idx[0]) * sp[0]) ** 2
        + ((yy - c_idx[1]) * sp[1]) ** 2
        + ((xx - c_idx[2]) * sp[2]) ** 2
    )
    region = (dist > 30.0) & (dist < 60.0)
    abl_pre = _arr(tfm.resample_onto(case.ablation, case.pre, T, interpolator="nearest"))
    region &= ndimage.binary_dilation(abl_pre, iterations=3) == 0
    scores = {}
    for label, tx in (("true", T), ("identity", None)):
        reg = tfm.resample_onto(
            case.post,
            case.pre,
            tx,
            interpolator="linear",
            default=-99999.0,
            pixel_type=sitk.sitkFloat32,
        )
        r = _arr(reg)
        m = region & (r > -99999.0)
        scores[label] = _ncc(pre, r, m)
    print(name, scores)
    assert scores["true"] > 0.85, scores
    # the mismatch (1 - NCC) is several times smaller with the true transform
    assert (1 - scores["identity"]) > 3 * (1 - scores["true"]), scores


def test_mri_ice_ball_is_a_signal_void(bundled):
    case = bundled["renal_mri"]
    post, abl = _arr(case.post).astype(float), _arr(case.ablation).astype(bool)
    core = ndimage.binary_erosion(abl, iterations=2)
    # the tissue around the ice ball (a shell 5-15 mm outside) in the same image
    sp = np.asarray(case.post.GetSpacing())[::-1]
    edt = ndimage.distance_transform_edt(~abl, sampling=sp)
    shell = (edt > 5) & (edt < 15) & (post > 80)  # body, not air
    assert post[core].mean() < 0.15 * np.median(post[shell])
    # tumor differs from the kidney cortex: compare with the tissue ring just outside it
    pre, tum = _arr(case.pre).astype(float), _arr(case.tumor).astype(bool)
    assert 150 < np.median(pre[ndimage.binary_erosion(tum)]) < 450
    # the MR intensities look like MR: 0..~1000, background near zero
    assert pre.min() >= 0 and 500 < np.percentile(pre, 99.9) < 1500
    assert np.median(pre[:3, :10, :10]) < 60


def test_ct_values_in_hounsfield_units(bundled):
    case = bundled["liver_ct"]
    pre, post = _arr(case.pre).astype(float), _arr(case.post).astype(float)
    tum = _arr(case.tumor).astype(bool)
    abl = _arr(case.ablation).astype(bool)
    sp_pre = np.asarray(case.pre.GetSpacing())[::-1]
    # air outside the body
    assert np.median(pre[:, :5, :5]) < -900
    # tumor hypodense against the liver around it (a shell 4-12 mm outside, soft tissue only)
    edt = ndimage.distance_transform_edt(~tum, sampling=sp_pre)
    liver = pre[(edt > 4) & (edt < 12) & (pre > 30) & (pre < 130)]
    t_mean = pre[ndimage.binary_erosion(tum)].mean()
    assert 25 < t_mean < 45 and 60 < liver.mean() < 95 and liver.mean() - t_mean > 25
    # the coagulation zone is hypodense (gas bubbles and the track excluded)
    zone = post[ndimage.binary_erosion(abl, iterations=2) & (post > -150)]
    assert 10 < np.median(zone) < 40
    # bone is there (vertebra, ribs)
    assert np.percentile(pre, 99.9) > 300


def test_true_min_margin_on_spheres():
    tumor = samples.Blob((0.0, 0.0, 0.0), (10.0, 10.0, 10.0))
    for offset, expected in ((3.0, 7.0), (12.0, -2.0)):
        zone = samples.Blob((offset, 0.0, 0.0), (20.0, 20.0, 20.0))
        m, p = samples.true_min_margin(tumor, zone)
        assert abs(m - expected) < 0.02
        assert np.allclose(p, (-10.0, 0.0, 0.0), atol=0.3)
    # an ellipsoidal zone: the thinnest side is along its shortest axis
    m, p = samples.true_min_margin(
        samples.Blob((0, 0, 0), (5.0, 10.0, 5.0)), samples.Blob((0, 0, 0), (20.0, 15.0, 25.0))
    )
    assert abs(m - 5.0) < 0.02 and abs(abs(p[1]) - 10.0) < 0.1


@pytest.mark.parametrize("name, lo, hi", [("renal_mri", -3.0, -0.5), ("liver_ct", 0.5, 4.0)])
def test_true_margin_is_consistent_with_the_labels(bundled, name, lo, hi):
    """The stated true margin (continuous shapes) agrees with a voxel estimate from the labels:
    MRI partly uncovered (red), CT covered with an insufficient margin (yellow)."""
    case = bundled[name]
    true_m = case.info["true_min_margin_mm"]
    assert lo < true_m < hi
    T = samples.true_transform(case)
    # the ablation labels on a fine 0.5 mm grid around the tumor in pre space (through T)
    tum_idx = np.argwhere(_arr(case.tumor))
    lo_lps = geometry.index_to_lps(case.pre, tum_idx.min(axis=0)) - 12.0
    hi_lps = geometry.index_to_lps(case.pre, tum_idx.max(axis=0)) + 12.0
    step = 0.5
    size = np.ceil((hi_lps - lo_lps) / step).astype(int)
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    ref.SetSpacing((step,) * 3)
    ref.SetOrigin([float(v) for v in lo_lps])
    abl = _arr(tfm.resample_onto(case.ablation, ref, T, interpolator="label")).astype(bool)
    tum = _arr(tfm.resample_onto(case.tumor, ref, None, interpolator="label")).astype(bool)
    inside = ndimage.distance_transform_edt(abl, sampling=step)
    outside = ndimage.distance_transform_edt(~abl, sampling=step)
    signed = np.where(abl, inside, -outside)
    est = float(signed[tum].min())
    # the labels are voxelised at 3 / 2.5 mm slices: agreement within a slice-ish tolerance
    assert abs(est - true_m) < 2.0, (est, true_m)
    red = (signed[tum] < 0).mean()
    yellow = ((signed[tum] >= 0) & (signed[tum] < 5)).mean()
    green = (signed[tum] >= 5).mean()
    if name == "renal_mri":
        assert red > 0.002 and yellow > 0.05 and green > 0.2, (red, yellow, green)
    else:
        assert yellow > 0.02 and green > 0.3, (red, yellow, green)


# ----------------------------------------------------------------------------- determinism, CLI


def test_cli_regenerates_the_bundled_files_exactly(regenerated):
    for name in samples.SAMPLE_NAMES:
        new = Case.load(regenerated / name)
        old = samples.load_sample(name)
        for role in ("pre", "post", "tumor", "ablation"):
            a, b = getattr(new, role), getattr(old, role)
            assert geometry.same_grid(a, b, tol=1e-6), role
            diff = np.abs(_arr(a).astype(np.int32) - _arr(b).astype(np.int32))
            if role in ("tumor", "ablation"):
                assert diff.max() == 0, role
            else:  # bit-exact in practice; allow a stray rounding difference across platforms
                assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (
                    role,
                    diff.max(),
                    (diff > 0).mean(),
                )
        assert (regenerated / name / samples.TRUE_TRANSFORM_FILE).is_file()
        doc = json.loads((regenerated / name / "case.json").read_text(encoding="utf-8"))
        got, want = doc["info"]["true_transform"], old.info["true_transform"]
        assert got.keys() == want.keys()
        for key in got:  # the same numbers up to a few ulps (numpy, SimpleITK builds differ)
            if isinstance(want[key], str):
                assert got[key] == want[key], key
            else:
                np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-9, err_msg=key)
        assert doc["info"]["true_min_margin_mm"] == old.info["true_min_margin_mm"]


def test_load_sample_falls_back_to_generation(monkeypatch, tmp_path, regenerated):
    monkeypatch.setattr(samples, "sample_dir", lambda: regenerated)
    case = samples.load_sample("liver_ct")
    assert case.info["name"] == "liver_ct"
    made = []
    monkeypatch.setattr(samples, "sample_dir", lambda: tmp_path)  # empty: nothing bundled
    monkeypatch.setitem(
        samples._MAKERS, "renal_mri", lambda seed=0: made.append(seed) or Case(info={"name": "x"})
    )
    assert samples.load_sample("renal_mri").info["name"] == "x" and made == [0]
    with pytest.raises(Exception, match="unknown sample"):
        samples.load_sample("brain")


# ----------------------------------------------------------------------------- napari


@pytest.mark.gui
@pytest.mark.parametrize("name", samples.SAMPLE_NAMES)
def test_open_sample_in_napari(make_napari_viewer, qtbot, name):
    viewer = make_napari_viewer()
    first = viewer.open_sample("napari-ablation", name)
    # the pre image at once; post, tumor and ablation one per event-loop iteration, read
    # off the GUI thread (napari's sample call would otherwise freeze the window)
    assert [ly.name for ly in first] == ["pre"]
    qtbot.waitUntil(lambda: len(viewer.layers) == 4, timeout=60000)
    assert viewer.layers.selection.active is viewer.layers["tumor"]
    names = [ly.name for ly in viewer.layers]
    assert names == ["pre", "post", "tumor", "ablation"]
    case = samples.load_sample(name)
    from napari_ablation.widgets import _layers

    for role in names:
        assert np.array_equal(viewer.layers[role].data, sitk.GetArrayFromImage(getattr(case, role)))

    for layer in viewer.layers:
        role = _layers.role_of(layer)
        assert role == layer.name
        img = getattr(case, role)
        assert np.allclose(layer.scale, np.asarray(img.GetSpacing())[::-1])
        assert np.allclose(layer.translate, np.asarray(img.GetOrigin())[::-1])
        assert layer.data.shape == tuple(img.GetSize()[::-1])
        assert _layers.layer_meta(layer)["modality"] == case.info["modality"]
    assert type(viewer.layers["tumor"]).__name__ == "Labels"
    assert type(viewer.layers["pre"]).__name__ == "Image"
    # the layer rebuilt from napari equals the case image (geometry round trip)
    back = _layers.image_from_layer(viewer.layers["pre"])
    assert geometry.same_grid(back, case.pre)
    if name == "liver_ct":
        assert tuple(viewer.layers["pre"].contrast_limits) == (-160.0, 240.0)


@pytest.mark.parametrize("name", samples.SAMPLE_NAMES)
def test_open_sample_headless_gives_all_layers_at_once(name):
    """Without a window (a script's ViewerModel) there is no event loop to add layers later:
    the sample command returns all four."""
    from napari.components import ViewerModel

    model = ViewerModel()
    added = model.open_sample("napari-ablation", name)
    assert [ly.name for ly in added] == ["pre", "post", "tumor", "ablation"]
    assert type(model.layers["ablation"]).__name__ == "Labels"
    assert model.layers["tumor"].data.any()
