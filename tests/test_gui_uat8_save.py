"""UAT s8 N9: *Save as...* never replaces another case or the user's own input files, and
every GUI writer (Save as, autosave, File > Save Layers, exports, Save .tfm) refuses an
output that resolves to a file the case was read from (run under xvfb-run)."""

import hashlib
import json

import pytest
import SimpleITK as sitk

from napari_ablation.core.case import Case
from napari_ablation.core.errors import AblationError
from napari_ablation.widgets import _layers
from napari_ablation.widgets.load import LoadCaseWidget
from napari_ablation.widgets.session import CaseSession

RAS_LIKE = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
PERMUTED = (1, 0, 0, 0, 0, 1, 0, -1, 0)


@pytest.fixture(autouse=True)
def cases_root(tmp_path, monkeypatch):
    root = tmp_path / "cases"
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(root))
    return root


def _digests(folder):
    return {
        p.name: hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


@pytest.fixture
def own_case(make_napari_viewer, qtbot, tmp_path, write_scan):
    """The user's own pre/post files (RAS-like pre, permuted post) loaded in a real viewer."""
    raw = tmp_path / "rawdata"
    raw.mkdir()
    write_scan(raw / "pre.nii.gz", (30, 28, 10), (1.2, 1.2, 3.0), RAS_LIKE, 0)
    write_scan(raw / "post.nii.gz", (30, 10, 28), (1.0, 2.5, 1.1), PERMUTED, 1)
    viewer = make_napari_viewer()
    widget = LoadCaseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.pre.path.setText(str(raw / "pre.nii.gz"))
    widget.post.path.setText(str(raw / "post.nii.gz"))
    widget.case_name.setText("own case")
    widget.load_btn.click()
    session = CaseSession.of(viewer)
    qtbot.waitUntil(
        lambda: widget._worker is None and _layers.find_layer(viewer, "tumor") is not None,
        timeout=60000,
    )
    return viewer, widget, session, raw


def _errors(monkeypatch):
    seen = []
    monkeypatch.setattr(_layers, "notify_error", lambda m: seen.append(str(m)))
    return seen


def test_save_as_into_a_folder_holding_another_case_is_refused(own_case, tmp_path, monkeypatch):
    _viewer, widget, session, _raw = own_case
    other = tmp_path / "holds_renal"
    img = sitk.Image(12, 10, 6, sitk.sitkInt16)
    img.SetSpacing((0.8, 0.8, 2.5))
    reader = Case(pre=img, post=img, info={"name": "renal_reg"})
    reader.tumor = reader.empty_labels("tumor")
    reader.transform = sitk.Euler3DTransform()
    reader.save(other)
    before = _digests(other)
    own_folder = session.folder
    seen = _errors(monkeypatch)

    assert widget.save_case(str(other)) is None
    assert len(seen) == 1 and "another case ('renal_reg')" in seen[0], seen
    assert _digests(other) == before  # the other reader's work is untouched
    assert session.folder == own_folder  # autosave keeps writing into the case's own folder
    assert json.loads((other / "case.json").read_text())["info"]["name"] == "renal_reg"


def test_save_as_into_the_inputs_folder_keeps_the_users_files(own_case, monkeypatch):
    _viewer, widget, session, raw = own_case
    before = _digests(raw)
    seen = _errors(monkeypatch)

    assert widget.save_case(str(raw)) is None
    assert len(seen) == 1 and "pre.nii.gz" in seen[0] and str(raw) in seen[0], seen
    assert _digests(raw) == before
    assert sitk.ReadImage(str(raw / "pre.nii.gz")).GetDirection() == RAS_LIKE
    # even with the folder check passed, the save itself refuses the inputs (autosave path)
    own = session.folder
    session.model.folder = raw
    with pytest.raises(AblationError, match="it is an input"):
        session.save()
    session.model.folder = own
    assert _digests(raw) == before


def test_save_as_into_an_empty_or_its_own_folder_still_works(own_case, tmp_path, monkeypatch):
    _viewer, widget, session, _raw = own_case
    seen = _errors(monkeypatch)
    own = session.folder
    assert widget.save_case(str(own)) == own  # its own folder: saved again
    fresh = tmp_path / "new_empty"
    fresh.mkdir()
    assert widget.save_case(str(fresh)) == fresh
    assert session.folder == fresh and (fresh / "case.json").exists()
    assert Case.load(fresh).pre.GetSize() == Case.load(own).pre.GetSize()
    assert seen == []


def test_save_layers_never_writes_over_the_scan_or_the_case_files(own_case, qtbot):
    viewer, _widget, session, raw = own_case
    tumor = _layers.find_layer(viewer, "tumor")
    qtbot.waitUntil(lambda: session.all_saved, timeout=30000)
    before, case_before = _digests(raw), _digests(session.folder)
    for target in (raw / "pre.nii.gz", session.folder / "tumor.nii.gz"):
        assert tumor.save(str(target), plugin="napari-ablation") == []
    assert _digests(raw) == before and _digests(session.folder) == case_before
    # anywhere else, the labels are written (on the scan's original grid)
    out = raw / "tumor_mask.nii.gz"
    assert tumor.save(str(out), plugin="napari-ablation") == [str(out)]
    assert sitk.ReadImage(str(out)).GetDirection() == RAS_LIKE


def test_gui_outputs_protect_sources_and_case_files(own_case):
    from napari_ablation.core.case import protected_files

    _viewer, _widget, session, raw = own_case
    keep = protected_files(session.model.info, session.folder)
    assert str(raw / "pre.nii.gz") in keep and str(raw / "post.nii.gz") in keep
    assert str(session.folder / "case.json") in keep
    from napari_ablation.core import transform as tfm

    with pytest.raises(AblationError, match="it is an input"):
        tfm.write_transform_atomic(
            sitk.Euler3DTransform(), session.folder / "transform.tfm", inputs=keep
        )
