"""The headless case model: versions, events, transform history, analysis currency and
save state (no Qt, no napari)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry, transform
from napari_ablation.core import margin as core_margin
from napari_ablation.core.case import QA_TRANSFORM_KEY, Case
from napari_ablation.core.errors import AblationError
from napari_ablation.model import ITEMS, CaseModel, run_analysis


def _sphere_case(tumor_r=6.0, ablation_r=11.0, shift=(0.0, 0.0, 0.0)):
    """Tumor sphere on a 1 x 1 x 2 mm pre grid, ablation sphere (shifted) on a 1.5 mm post grid."""
    pre = geometry.image_from_array(
        np.zeros((20, 40, 40), np.float32), (2.0, 1.0, 1.0), (-20.0, -20.0, -20.0)
    )
    post = geometry.image_from_array(
        np.zeros((28, 28, 28), np.float32), (1.5, 1.5, 1.5), (-21.0, -21.0, -21.0)
    )

    def ball(img, r, c):
        z, y, x = np.indices(img.GetSize()[::-1]).astype(float)
        sp, o = img.GetSpacing()[::-1], img.GetOrigin()[::-1]
        pz, py, px = o[0] + sp[0] * z, o[1] + sp[1] * y, o[2] + sp[2] * x
        return geometry.like(
            ((px - c[0]) ** 2 + (py - c[1]) ** 2 + (pz - c[2]) ** 2 <= r * r).astype(np.uint8), img
        )

    return Case(
        pre=pre,
        post=post,
        tumor=ball(pre, tumor_r, (0, 0, 0)),
        ablation=ball(post, ablation_r, shift),
        info={"name": "spheres"},
    )


class Recorder:
    def __init__(self, model):
        self.events = []
        model.changed.connect(self.events.append)

    def take(self):
        out = list(self.events)
        self.events.clear()
        return out


def test_every_change_bumps_a_version_that_is_never_reused():
    m = CaseModel()
    m.load_case(_sphere_case())
    seen = set(m.versions().values())
    rec = Recorder(m)
    tumor = m.labels("tumor")
    before = m.version("tumor")
    tumor[10, 20, 20] = 0  # an in-place edit (a brush stroke on a shared array)
    m.labels_edited("tumor", "brush")
    assert m.version("tumor") > before and m.version("tumor") not in seen
    assert rec.take() == ["tumor"]
    for action, item in (
        (lambda: m.labels_edited("tumor", "undo"), "tumor"),
        (lambda: m.labels_edited("ablation", "redo"), "ablation"),
        (lambda: m.set_threshold(3.0), "settings"),
        (lambda: m.set_qa("acceptable"), "qa"),
        (lambda: m.set_landmarks({"pre": [{"label": "1", "x": 0, "y": 0, "z": 0}]}), "landmarks"),
        (
            lambda: m.set_transform(transform.euler_from_matrix(np.eye(3), [1, 0, 0]), "manual"),
            "transform",
        ),
    ):
        old = m.version(item)
        action()
        assert m.version(item) > old
        assert m.version(item) not in seen
        seen.add(m.version(item))
        assert item in rec.take()
    # a reload gives every item a new version
    old = m.versions()
    m.load_case(_sphere_case())
    assert all(m.version(k) > old[k] for k in ITEMS)
    # no-op changes do not bump
    v = m.version("settings")
    m.set_threshold(m.threshold)
    assert m.version("settings") == v


def test_transform_history_undo_redo_reset_and_sources():
    m = CaseModel()
    m.load_case(_sphere_case())
    sources = []
    m.transform_changed.connect(sources.append)
    a = transform.euler_from_matrix(np.eye(3), [2.0, 0, 0])
    b = transform.euler_from_matrix(np.eye(3), [0, 3.0, 0])
    m.set_transform(a, "automatic")
    m.set_transform(b, "manual")
    m.set_transform(
        transform.euler_from_matrix(np.eye(3), [0, 4.0, 0]), "manual", merge=True
    )  # a drag: one step
    assert [s.source for s in m.transform_history] == ["case", "automatic", "manual"]
    assert m.transform.GetTranslation() == (0.0, 4.0, 0.0)
    assert m.undo_transform()
    assert m.transform.GetTranslation() == (2.0, 0.0, 0.0)
    assert m.transform_step.source == "automatic"
    m.reset_transform()
    assert m.transform is None and not m.can_redo_transform  # a new step drops the redo steps
    assert m.undo_transform() and m.transform.GetTranslation() == (2.0, 0.0, 0.0)
    assert m.redo_transform() and m.transform is None
    assert not m.redo_transform()
    assert sources == ["automatic", "manual", "manual", "automatic", "reset", "automatic", "reset"]
    with pytest.raises(AblationError):
        m.set_transform(a, "guess")
    shear = sitk.AffineTransform(3)
    shear.SetMatrix((1, 0.2, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(AblationError):
        m.set_transform(shear, "file")


def test_analysis_is_current_only_for_the_inputs_it_was_computed_from():
    m = CaseModel()
    m.load_case(_sphere_case())
    flags = []
    m.analysis_changed.connect(lambda: flags.append(m.analysis_current))
    a = m.compute_analysis()
    assert m.analysis_current and flags[-1] is True
    # the model's analysis equals the core function on the same inputs
    fresh = core_margin.analyze_margin(
        m.labels_image("tumor"), m.labels_image("ablation"), None, 5.0
    )
    assert a.result.min_margin_mm == pytest.approx(fresh.min_margin_mm, abs=1e-9)
    assert a.result.min_margin_mm == pytest.approx(5.0, abs=1.0)  # 11 mm ablation - 6 mm tumor
    assert a.identity
    # a request taken before an edit is stale once the edit is made
    req = m.analysis_request()
    m.labels("tumor")[:] = 0
    m.labels("tumor")[10, 20, 20] = 1
    m.labels_edited("tumor", "bulk")
    assert not m.analysis_current and flags[-1] is False
    late = run_analysis(req)
    assert not m.set_analysis(late)  # stored, but not current
    assert not m.analysis_current
    m.compute_analysis()
    assert m.analysis_current
    # the older result, finishing late, does not replace the newer one
    m.set_analysis(late)
    assert m.analysis_current
    for change in (
        lambda: m.set_threshold(2.0),
        lambda: m.set_transform(None, "reset"),
        lambda: m.labels_edited("ablation", "undo"),
    ):
        m.compute_analysis()
        change()
        assert not m.analysis_current
    # QA, landmarks and images of the other role are not inputs
    m.compute_analysis()
    m.set_qa("acceptable")
    m.set_landmarks({"pre": [{"label": "1", "x": 1.0, "y": 2.0, "z": 3.0}], "post": []})
    assert m.analysis_current


def test_an_analysis_that_fails_for_the_inputs_now_is_no_current_analysis():
    """UAT s7 N5: an emptied tumor cannot be analysed; the model says why, for these inputs
    only (a late failure of older inputs, or any change afterwards, ends it)."""
    m = CaseModel()
    m.load_case(_sphere_case())
    m.compute_analysis()
    told = []
    m.analysis_changed.connect(lambda: told.append(m.analysis_error))
    drawn = m.labels("tumor").copy()
    stale = m.analysis_inputs()
    m.labels("tumor")[:] = 0
    m.labels_edited("tumor", "bulk")
    with pytest.raises(AblationError) as err:
        run_analysis(m.analysis_request())
    m.set_analysis_failed(str(err.value), stale)  # a failure of the inputs before: ignored
    assert m.analysis_error is None
    m.set_analysis_failed(str(err.value), m.analysis_inputs())
    assert m.analysis_error == str(err.value) and "empty" in m.analysis_error
    assert told[-1] == m.analysis_error
    assert not m.analysis_current and m.analysis is not None  # the last one, not current
    # Ctrl-Z (any change of an input): the failure is over, the analysis is computed again
    m.labels("tumor")[:] = drawn
    m.labels_edited("tumor", "undo")
    assert m.analysis_error is None and told[-1] is None
    m.compute_analysis()
    assert m.analysis_current and m.analysis_error is None
    # a failure, then a success for the same inputs: the success counts
    m.set_analysis_failed("some failure")
    assert m.analysis_error == "some failure"
    m.compute_analysis()
    assert m.analysis_error is None and m.analysis_current
    # another case: no failure carried over
    m.set_analysis_failed("some failure")
    m.load_case(_sphere_case())
    assert m.analysis_error is None


def test_labels_withdrawn_from_the_screen_are_kept_but_not_analysed(tmp_path):
    """UAT s12 N3: labels whose layer was deleted stay in the model (and saved), but no
    analysis is current or made until they are shown again; then the same one is."""
    m = CaseModel()
    m.load_case(_sphere_case(), tmp_path / "case")
    m.save()
    a = m.compute_analysis()
    told = []
    m.analysis_changed.connect(lambda: told.append(m.analysis_error))
    m.withdraw_labels("tumor", "tumor layer deleted")
    assert not m.analysis_current and m.analysis_error == "tumor layer deleted"
    assert told == ["tumor layer deleted"]
    assert m.labels("tumor") is not None and m.all_saved  # nothing lost, nothing to write
    with pytest.raises(AblationError, match="tumor layer deleted"):
        m.analysis_request()
    m.set_analysis_failed("tumor layer deleted")  # (a refused Compute said so)
    m.withdraw_labels("tumor", None)
    assert m.analysis_current and m.analysis is a and m.analysis_error is None
    assert told[-1] is None
    # an edit of the other labels meanwhile: computed again once shown
    m.withdraw_labels("ablation", "ablation layer deleted")
    m.labels("tumor")[0, 0, 0] = 1
    m.labels_edited("tumor", "brush")
    assert m.analysis_error == "ablation layer deleted"
    m.withdraw_labels("ablation", None)
    assert not m.analysis_current and m.analysis_error is None
    m.withdraw_labels("tumor", "tumor layer deleted")
    m.load_case(_sphere_case())  # another case: nothing withdrawn
    assert m.analysis_error is None


def test_threshold_from_settings_reaches_the_analysis():
    m = CaseModel()
    m.load_case(_sphere_case())
    got = []
    m.threshold_changed.connect(got.append)
    m.set_threshold(7.5)
    assert got == [7.5]
    assert m.compute_analysis().result.threshold_mm == 7.5


def test_save_state_follows_the_files_on_disk(tmp_path):
    m = CaseModel()
    m.load_case(_sphere_case())
    assert not m.all_saved  # no folder yet
    folder = m.save(tmp_path / "case")
    assert m.all_saved and m.unsaved_items() == ()
    # an edit is unsaved until written
    m.labels("tumor")[10, 20, 20] = 0
    m.labels_edited("tumor", "brush")
    assert m.unsaved_items() == ("tumor",) and not m.all_saved
    req = m.save_request()
    assert req.only == ("tumor",)
    m.labels("tumor")[10, 21, 20] = 0  # edited while the snapshot is being written
    m.labels_edited("tumor", "brush")
    m.mark_saved(m.write(req), req.folder)
    assert m.unsaved_items() == ("tumor",)  # the newer edit is not on disk
    back = Case.load(folder)
    assert sitk.GetArrayFromImage(back.tumor)[10, 20, 20] == 0
    assert sitk.GetArrayFromImage(back.tumor)[10, 21, 20] == 1
    m.save()
    back = Case.load(folder)
    assert np.array_equal(sitk.GetArrayFromImage(back.tumor), m.labels("tumor"))
    assert m.all_saved
    # an older request written after a newer one does not overwrite it
    m.labels("tumor")[10, 22, 20] = 0
    m.labels_edited("tumor", "brush")
    old = m.save_request()
    m.labels("tumor")[10, 23, 20] = 0
    m.labels_edited("tumor", "undo")
    m.save()
    m.mark_saved(m.write(old), old.folder)
    assert np.array_equal(sitk.GetArrayFromImage(Case.load(folder).tumor), m.labels("tumor"))
    # manifest items
    m.set_qa("needs correction", "cortex 3 mm off")
    m.set_threshold(3.0)
    m.set_transform(transform.euler_from_matrix(np.eye(3), [1.0, 2.0, 3.0]), "file", "t.tfm")
    assert set(m.unsaved_items()) == {"qa", "settings", "transform"}
    m.save()
    doc = json.loads((folder / "case.json").read_text())
    assert doc["qa"]["verdict"] == "needs correction" and doc["settings"]["threshold_mm"] == 3.0
    assert Case.load(folder).transform.GetTranslation() == (1.0, 2.0, 3.0)
    # labels queued before a transform change and written after it keep the newer transform
    m.labels("tumor")[10, 24, 20] = 0
    m.labels_edited("tumor", "brush")
    queued = m.save_request()  # carries the (1, 2, 3) transform
    m.set_transform(transform.euler_from_matrix(np.eye(3), [4.0, 5.0, 6.0]), "manual")
    m.save(items=())  # the manifest alone written first (as the session does for a transform)
    m.mark_saved(m.write(queued), queued.folder)  # the older request lands last
    back = Case.load(folder)
    assert back.transform.GetTranslation() == (4.0, 5.0, 6.0)
    assert sitk.GetArrayFromImage(back.tumor)[10, 24, 20] == 0
    assert m.all_saved
    # an identity set after the queued request is not undone by it either
    m.labels("tumor")[10, 25, 20] = 0
    m.labels_edited("tumor", "brush")
    queued = m.save_request()
    m.reset_transform()
    m.save(items=())
    m.mark_saved(m.write(queued), queued.folder)
    assert Case.load(folder).transform is None and not (folder / "transform.tfm").exists()


def test_loaded_from_folder_is_saved_and_a_new_folder_is_not(tmp_path):
    case = _sphere_case()
    case.save(tmp_path / "a")
    m = CaseModel()
    m.load_case(Case.load(tmp_path / "a"), tmp_path / "a", saved=True)
    assert m.all_saved
    m.folder = tmp_path / "b"
    assert not m.all_saved
    m.save()
    assert m.all_saved and (tmp_path / "b" / "tumor.nii.gz").exists()


def test_labels_must_fit_their_grid_and_can_be_shared():
    m = CaseModel()
    m.load_case(_sphere_case())
    with pytest.raises(AblationError, match="do not fit"):
        m.set_labels("tumor", np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(AblationError, match="unknown label role"):
        m.labels_edited("liver")
    shared = np.zeros(m.labels("tumor").shape, np.uint8)
    m.set_labels("tumor", shared, "layer", copy=False)
    assert m.labels("tumor") is shared
    img = m.labels_image("tumor")
    assert geometry.same_grid(img, m.pre)
    shared[0, 0, 0] = 1
    assert sitk.GetArrayViewFromImage(img)[0, 0, 0] == 0  # labels_image is a copy
    with pytest.raises(AblationError, match="no ablation labels"):
        m.set_labels("ablation", None)
        m.analysis_request()


def test_to_case_round_trip():
    m = CaseModel()
    case = _sphere_case()
    case.transform = transform.euler_from_matrix(np.eye(3), [1.0, 0.0, 0.0])
    case.qa = {"verdict": "acceptable", "comment": "ok"}
    m.load_case(case)
    back = m.to_case()
    assert np.array_equal(sitk.GetArrayFromImage(back.tumor), sitk.GetArrayFromImage(case.tumor))
    assert back.transform.GetTranslation() == (1.0, 0.0, 0.0)
    assert back.info == case.info
    # the verdict keeps the registration it was for (the one saved with the case)
    assert {k: back.qa[k] for k in case.qa} == case.qa
    assert back.qa[QA_TRANSFORM_KEY] == transform.euler_params(case.transform)
    assert m.transform_history[0].source == "case"
