"""The case folder: saved and reloaded bit-exactly; bad cases refused in one line."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry, io, transform
from napari_ablation.core.case import Case, case_from_images, load_case_files
from napari_ablation.core.errors import AblationError


def _img(size, spacing, origin, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    arr = (rng.normal(300, 80, size[::-1])).astype(dtype)
    return geometry.image_from_array(arr, spacing[::-1], origin[::-1])


def _full_case():
    pre = _img((40, 36, 12), (1.2, 1.2, 3.0), (-23.7, 11.1, -45.3))
    post = _img((44, 40, 14), (0.7, 0.7, 2.5), (-25.05, 9.9, -47.7), dtype=np.int16, seed=1)
    tumor = geometry.like((sitk.GetArrayFromImage(pre) > 380).astype(np.uint8), pre)
    ablation = geometry.like((sitk.GetArrayFromImage(post) > 350).astype(np.uint8), post)
    tx = transform.euler_from_matrix(np.eye(3), [1.0, 2.0, 3.0])
    tx.SetRotation(0.05, -0.02, 0.031)
    tx.SetCenter((1.5, -2.5, 3.25))
    return Case(
        pre=pre,
        post=post,
        tumor=tumor,
        ablation=ablation,
        transform=tx,
        landmarks={
            "pre": [{"label": "cyst", "x": 1.0, "y": 2.0, "z": 3.0}],
            "post": [{"label": "cyst", "x": 1.5, "y": 2.5, "z": 3.5}],
        },
        settings={"threshold_mm": 3.0, "tumor_label": None, "ablation_label": 1},
        qa={"verdict": "acceptable", "comment": "cortex aligned"},
        info={"name": "phantom", "modality": "MR"},
    )


def _assert_same_image(a, b):
    assert a.GetSize() == b.GetSize()
    assert a.GetSpacing() == b.GetSpacing()  # exact, float64
    assert a.GetOrigin() == b.GetOrigin()
    assert a.GetDirection() == b.GetDirection()
    assert a.GetPixelID() == b.GetPixelID()
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_case_folder_round_trip_is_bit_exact(tmp_path):
    case = _full_case()
    case.save(tmp_path / "case")
    back = Case.load(tmp_path / "case")
    for role in ("pre", "post", "tumor", "ablation"):
        _assert_same_image(getattr(case, role), getattr(back, role))
    assert back.transform.GetParameters() == case.transform.GetParameters()
    assert back.transform.GetCenter() == case.transform.GetCenter()
    assert back.landmarks == case.landmarks
    assert back.settings == case.settings
    assert back.qa == case.qa
    assert back.info == case.info
    # the .tfm next to it is the same transform for other tools
    tfm = sitk.ReadTransform(str(tmp_path / "case" / "transform.tfm"))
    p = (10.0, -20.0, 30.0)
    assert np.allclose(tfm.TransformPoint(p), case.transform.TransformPoint(p), atol=1e-9)
    # saving again changes nothing
    case2 = Case.load(tmp_path / "case")
    case2.save(tmp_path / "case")
    _assert_same_image(Case.load(tmp_path / "case").tumor, case.tumor)


def test_saving_only_labels_keeps_images_and_removes_nothing(tmp_path):
    case = _full_case()
    case.save(tmp_path / "c")
    pre_bytes = (tmp_path / "c" / "pre.nii.gz").read_bytes()
    arr = sitk.GetArrayFromImage(case.tumor)
    arr[:] = 0
    arr[5, 10, 10] = 1
    case.tumor = geometry.like(arr, case.pre)
    case.save(tmp_path / "c", only=("tumor",))
    assert (tmp_path / "c" / "pre.nii.gz").read_bytes() == pre_bytes
    back = Case.load(tmp_path / "c")
    assert sitk.GetArrayFromImage(back.tumor).sum() == 1
    assert back.ablation is not None and back.transform is not None


def test_labels_must_be_on_their_image_grid(tmp_path):
    case = _full_case()
    case.tumor = case.ablation  # drawn on post, claimed as tumor on pre
    with pytest.raises(AblationError, match="tumor labels are not on the pre image grid"):
        case.save(tmp_path / "bad")
    assert not (tmp_path / "bad" / "case.json").exists()


def test_load_refuses_non_case_folders(tmp_path):
    with pytest.raises(AblationError, match="not a case folder"):
        Case.load(tmp_path)
    (tmp_path / "case.json").write_text("{not json")
    with pytest.raises(AblationError, match="not valid JSON"):
        Case.load(tmp_path)
    (tmp_path / "case.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(AblationError, match="not a napari-ablation case"):
        Case.load(tmp_path)


def test_case_from_files_and_non_overlapping_fields_of_view(tmp_path):
    pre = _img((20, 20, 8), (1.2, 1.2, 3.0), (0.0, 0.0, 0.0))
    post = _img((20, 20, 8), (1.2, 1.2, 3.0), (5.0, 3.0, 2.0))
    far = _img((20, 20, 8), (1.2, 1.2, 3.0), (400.0, 0.0, 0.0))
    for name, img in (("pre", pre), ("post", post), ("far", far)):
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    case = load_case_files(tmp_path / "pre.nii.gz", tmp_path / "post.nii.gz")
    assert case.info["name"] == "pre"
    assert case.info["pre_source"].endswith("pre.nii.gz")
    with pytest.raises(AblationError, match="do not overlap"):
        load_case_files(tmp_path / "pre.nii.gz", tmp_path / "far.nii.gz")
    with pytest.raises(AblationError):
        case_from_images(io.read_image(tmp_path / "pre.nii.gz"), None)


# ----------------------------------------------------------------------------- broken case folders


def _edit_manifest(folder, edit):
    doc = json.loads((folder / "case.json").read_text())
    edit(doc)
    (folder / "case.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (
            lambda d: d["transform"]["parameters"].__setitem__(2, float("nan")),
            "transform.parameters",
        ),
        (lambda d: d["transform"].__setitem__("center", [0, 0]), "transform.center"),
        (
            lambda d: d["geometry"]["pre"].__setitem__("spacing", [1.2, 0.0, 3.0]),
            "geometry.pre.spacing",
        ),
        (lambda d: d["geometry"]["tumor"].pop("origin"), "geometry.tumor.origin"),
        (lambda d: d["files"].__setitem__("tumor", "../../etc/passwd"), "files.tumor"),
        (lambda d: d["settings"].__setitem__("threshold_mm", "five"), "settings.threshold_mm"),
        (lambda d: d["landmarks"]["pre"][0].__setitem__("x", float("inf")), "landmarks.pre[0]"),
        (lambda d: d["qa"].__setitem__("verdict", "great"), "qa.verdict"),
        (lambda d: d.__setitem__("landmarks", [1, 2]), "landmarks"),
        (lambda d: d.__setitem__("format_version", 99), "format_version"),
    ],
    ids=[
        "nan transform",
        "short centre",
        "zero spacing",
        "no origin",
        "path escape",
        "text threshold",
        "inf landmark",
        "unknown verdict",
        "landmarks not an object",
        "newer format",
    ],
)
def test_broken_case_json_is_one_line_naming_the_file_and_field(tmp_path, edit, field):
    folder = _full_case().save(tmp_path / "case")
    _edit_manifest(folder, edit)
    with pytest.raises(AblationError) as info:
        Case.load(folder)
    msg = str(info.value)
    assert "case.json" in msg and f"field '{field}'" in msg, msg
    assert "\n" not in msg and "KeyError" not in msg and "AttributeError" not in msg


def test_half_truncated_label_file_in_a_case_is_refused(tmp_path):
    folder = _full_case().save(tmp_path / "case")
    data = (folder / "tumor.nii.gz").read_bytes()
    (folder / "tumor.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(AblationError, match=r"tumor\.nii\.gz: corrupt or truncated"):
        Case.load(folder)


def test_case_save_is_all_or_none(tmp_path, monkeypatch):
    case = _full_case()
    folder = case.save(tmp_path / "case")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = sitk.WriteImage
    calls = []

    def fail_second(img, name, *a, **k):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("disk trouble")
        real(img, name, *a, **k)

    monkeypatch.setattr(sitk, "WriteImage", fail_second)
    case.tumor = geometry.like(
        np.zeros(sitk.GetArrayFromImage(case.tumor).shape, np.uint8), case.tumor
    )
    with pytest.raises(AblationError, match="disk trouble"):
        case.save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_open_sample_never_overwrites_annotations_without_case_json(tmp_path):
    from napari_ablation.core.case import open_sample_copy

    case, folder = open_sample_copy("renal_mri", tmp_path / "sample_renal_mri")
    assert folder == tmp_path / "sample_renal_mri"
    # the user annotates, then the working copy loses its case.json
    tumor = sitk.GetArrayFromImage(case.tumor)
    tumor[:] = 0
    tumor[5:8, 40:50, 40:50] = 1
    case.tumor = geometry.like(tumor, case.tumor)
    case.save(folder)
    (folder / "case.json").unlink()
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    case2, folder2 = open_sample_copy("renal_mri", folder)
    assert folder2 != folder and folder2.parent == folder.parent
    assert {
        p.name: p.read_bytes() for p in folder.iterdir()
    } == before  # nothing of the user's touched
    assert any("left untouched" in n for n in case2.info.get("notes", []))
    # with its case.json back, the working copy is reopened as it is
    case.save(folder)
    case3, folder3 = open_sample_copy("renal_mri", folder)
    assert folder3 == folder and int(sitk.GetArrayFromImage(case3.tumor).sum()) == 300
