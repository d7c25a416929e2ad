"""UAT s8 N1: one DICOM folder holding the pre and the post series never loads the same
series as both (core refusal; the post chooser defaults to another series; Load waits for
the folder's listing). The GUI tests run in a real napari viewer (xvfb-run)."""

import numpy as np
import pytest
from test_io import make_volume, write_dicom_series

from napari_ablation.core.case import load_case_files
from napari_ablation.core.errors import AblationError
from napari_ablation.widgets import _layers
from napari_ablation.widgets.load import LoadCaseWidget


@pytest.fixture(autouse=True)
def cases_root(tmp_path, monkeypatch):
    root = tmp_path / "cases"
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(root))
    return root


@pytest.fixture
def both(tmp_path):
    """A study folder with the pre series (the larger) and the post series."""
    folder = tmp_path / "both"
    pre = make_volume(size=(24, 22, 12), spacing=(1.0, 1.0, 3.0), seed=1)
    post = make_volume(size=(20, 22, 10), spacing=(1.1, 1.0, 2.5), seed=2)
    uids = {
        "pre": write_dicom_series(pre, folder / "s1", description="T1 pre", modality="MR"),
        "post": write_dicom_series(post, folder / "s2", description="T1 post", modality="MR"),
    }
    return folder, uids


def test_pre_and_post_the_same_series_or_file_are_refused(both, tmp_path):
    folder, uids = both
    with pytest.raises(AblationError, match="pre and post are the same series 'T1 pre'"):
        load_case_files(folder, folder)  # "the largest" for both
    with pytest.raises(AblationError, match="same series 'T1 post'"):
        load_case_files(folder, folder, pre_series=uids["post"], post_series=uids["post"])
    case = load_case_files(folder, folder, post_series=uids["post"])
    assert case.pre.GetSize() == (24, 22, 12) and case.post.GetSize() == (20, 22, 10)
    one = tmp_path / "one.nii.gz"
    import SimpleITK as sitk

    sitk.WriteImage(make_volume(), str(one))
    with pytest.raises(AblationError, match=r"same file one\.nii\.gz"):
        load_case_files(one, str(tmp_path / "." / "one.nii.gz"))


def _widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = LoadCaseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def test_load_clicked_while_the_folder_is_listed_waits_and_loads_two_series(
    make_napari_viewer, qtbot, both
):
    folder, uids = both
    viewer, widget = _widget(make_napari_viewer)
    # the path pasted into both fields and Load clicked at once (no editingFinished yet)
    widget.pre.path.setText(str(folder))
    widget.post.path.setText(str(folder))
    widget.load_btn.click()
    qtbot.waitUntil(lambda: _layers.find_layer(viewer, "post") is not None, timeout=60000)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    assert widget.pre.series_uid == uids["pre"] and widget.post.series_uid == uids["post"]
    pre, post = _layers.find_layer(viewer, "pre"), _layers.find_layer(viewer, "post")
    assert pre.data.shape == (12, 22, 24) and post.data.shape == (10, 22, 20)
    assert not np.array_equal(pre.scale, post.scale)


def test_post_chooser_defaults_to_another_series_and_a_same_choice_is_refused(
    make_napari_viewer, qtbot, both, monkeypatch
):
    folder, uids = both
    viewer, widget = _widget(make_napari_viewer)
    for picker in (widget.pre, widget.post):
        picker.path.setText(str(folder))
        picker.path.editingFinished.emit()  # Return in the field: the folder is listed
    qtbot.waitUntil(lambda: widget.pre.listed and widget.post.listed, timeout=60000)
    assert widget.pre.series_uid == uids["pre"]
    assert widget.post.series_uid == uids["post"]  # not pre's series
    assert "T1 post" in widget.post.series.currentText()
    # the user picks pre's series for post too: one line, nothing loaded
    seen = []
    monkeypatch.setattr(_layers, "notify_error", lambda m: seen.append(str(m)))
    widget.post.series.setCurrentIndex(widget.post.series.findData(uids["pre"]))
    widget.load_btn.click()
    qtbot.waitUntil(lambda: widget._worker is None and bool(seen), timeout=60000)
    assert seen == [
        "pre and post are the same series 'T1 pre' of both: choose the post-ablation series or file"
    ]
    assert _layers.find_layer(viewer, "pre") is None
