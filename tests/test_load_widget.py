"""Load-case widget, autosave, reader and writer in a real napari viewer (run under xvfb-run)."""

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry
from napari_ablation.core.case import Case
from napari_ablation.widgets import _layers
from napari_ablation.widgets.load import LoadCaseWidget
from napari_ablation.widgets.session import CaseSession

FLIPPED = (-1, 0, 0, 0, -1, 0, 0, 0, 1)


@pytest.fixture(autouse=True)
def cases_root(tmp_path, monkeypatch):
    root = tmp_path / "cases"
    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(root))
    return root


def _write(
    path,
    size=(40, 36, 12),
    spacing=(1.2, 1.2, 3.0),
    origin=(10.0, -20.0, 30.0),
    direction=FLIPPED,
    seed=0,
):
    rng = np.random.default_rng(seed)
    arr = rng.normal(300, 50, size[::-1]).astype(np.float32)
    arr[4:8, 10:20, 12:25] += 400  # something to look at
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return img


def _load(qtbot, viewer, widget, pre, post, **kw):
    worker = widget.load_files(str(pre), str(post), **kw)
    assert worker is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=20000)


def _loaded_case(make_napari_viewer, qtbot, tmp_path, **viewer_kw):
    """A viewer with a Load widget that has loaded a small pre/post case."""
    viewer = make_napari_viewer(**viewer_kw)
    widget = LoadCaseWidget(viewer)
    _write(tmp_path / "pre.nii.gz")
    _write(tmp_path / "post.nii.gz", seed=2)
    _load(qtbot, viewer, widget, tmp_path / "pre.nii.gz", tmp_path / "post.nii.gz")
    return viewer, widget, CaseSession.of(viewer)


def test_load_files_shows_both_images_in_lps_mm(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = LoadCaseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    pre_img = _write(tmp_path / "pre.nii.gz")
    _write(tmp_path / "post.nrrd", origin=(12.0, -18.0, 33.0), seed=1)
    _load(qtbot, viewer, widget, tmp_path / "pre.nii.gz", tmp_path / "post.nrrd")

    pre = _layers.find_layer(viewer, "pre")
    post = _layers.find_layer(viewer, "post")
    tumor = _layers.find_layer(viewer, "tumor")
    ablation = _layers.find_layer(viewer, "ablation")
    assert pre is not None and post is not None and tumor is not None and ablation is not None
    assert np.allclose(pre.scale, (3.0, 1.2, 1.2))  # NIfTI stores float32
    assert tumor.data.shape == pre.data.shape and ablation.data.shape == post.data.shape
    # voxel (i, j, k) of the file on disk is at the same LPS point in napari's world
    src = sitk.GetArrayFromImage(pre_img)
    for i, j, k in [(0, 0, 0), (39, 35, 11), (17, 12, 5)]:
        lps = np.asarray(pre_img.TransformIndexToPhysicalPoint((i, j, k)))
        data_idx = np.round(pre.world_to_data(lps[::-1])).astype(int)
        assert pre.data[tuple(data_idx)] == pytest.approx(src[k, j, i])
    session = CaseSession.of(viewer)
    assert session.folder is not None and (session.folder / "case.json").exists()
    assert "pre" in widget.status.text() or session.case.info["name"] in widget.status.text()


def test_bad_input_loads_nothing_and_keeps_the_viewer(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = LoadCaseWidget(viewer)
    _write(tmp_path / "pre.nii.gz")
    _write(tmp_path / "far.nii.gz", origin=(900.0, 0.0, 0.0))
    (tmp_path / "junk.nii.gz").write_text("not an image")
    errors = []
    from napari.utils.notifications import notification_manager

    notification_manager.notification_ready.connect(lambda n: errors.append(n))
    msgs = []
    for post in ("missing.nii.gz", "junk.nii.gz", "far.nii.gz"):
        worker = widget.load_files(str(tmp_path / "pre.nii.gz"), str(tmp_path / post))
        assert worker is not None
        qtbot.waitUntil(lambda: widget._worker is None, timeout=20000)
        msgs.append(widget.last_error)
    assert len(viewer.layers) == 0  # nothing half loaded
    assert (
        "no such file" in msgs[0]
        and "not a readable image" in msgs[1]
        and "do not overlap" in msgs[2]
    )
    assert all("\n" not in m for m in msgs)
    shown = [n for n in errors if "do not overlap" in str(n.message)]
    assert shown and all(
        getattr(n, "exception", None) is None for n in shown
    )  # no traceback attached


def test_painting_is_autosaved_and_survives_closing_the_viewer(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)  # a shown window, as a user has
    widget = LoadCaseWidget(viewer)
    viewer.window.add_dock_widget(widget)
    _write(tmp_path / "pre.nii.gz")
    _write(tmp_path / "post.nii.gz", seed=2)
    _load(qtbot, viewer, widget, tmp_path / "pre.nii.gz", tmp_path / "post.nii.gz")
    session = CaseSession.of(viewer)
    folder = session.folder
    tumor = _layers.find_layer(viewer, "tumor")

    # 1. a brush stroke is on disk about a second later, without any save action
    tumor.brush_size = 3
    tumor.paint((5, 18, 20), 1)
    assert session.has_unsaved_changes
    qtbot.waitUntil(lambda: not session.has_unsaved_changes, timeout=5000)
    on_disk = sitk.GetArrayFromImage(Case.load(folder).tumor)
    assert on_disk[5, 18, 20] == 1
    n_first = int(on_disk.sum())
    assert n_first > 1

    # 2. a bulk edit made right before closing the viewer is flushed on close
    with tumor.block_history():
        tumor.data_setitem((np.array([7, 7]), np.array([3, 4]), np.array([30, 30])), 1)
    assert session.has_unsaved_changes
    viewer.close()
    reopened = Case.load(folder)
    arr = sitk.GetArrayFromImage(reopened.tumor)
    assert arr[7, 3, 30] == 1 and arr[7, 4, 30] == 1
    assert int(arr.sum()) == n_first + 2
    assert geometry.same_grid(reopened.tumor, reopened.pre)


def test_reopening_a_case_folder_restores_the_layers(make_napari_viewer, qtbot, tmp_path):
    viewer, _widget, session = _loaded_case(make_napari_viewer, qtbot, tmp_path)
    tumor = _layers.find_layer(viewer, "tumor")
    tumor.data_setitem((np.array([6]), np.array([10]), np.array([11])), 1)
    session.flush()
    folder = session.folder

    viewer2 = make_napari_viewer()
    widget2 = LoadCaseWidget(viewer2)
    widget2.open_case_folder(str(folder))
    qtbot.waitUntil(lambda: widget2._worker is None, timeout=20000)
    t2 = _layers.find_layer(viewer2, "tumor")
    assert t2 is not None and t2.data[6, 10, 11] == 1 and int((t2.data != 0).sum()) == 1
    assert CaseSession.of(viewer2).folder == folder

    # the same through napari's own File > Open (the reader accepts case folders)
    viewer3 = make_napari_viewer()
    viewer3.open(str(folder), plugin="napari-ablation")
    t3 = _layers.find_layer(viewer3, "tumor")
    assert t3 is not None and t3.data[6, 10, 11] == 1


def test_reader_opens_files_in_mm_and_refuses_junk_quietly(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    img = _write(tmp_path / "vol.mha", direction=(1, 0, 0, 0, 0, 1, 0, -1, 0))
    layers = viewer.open(str(tmp_path / "vol.mha"), plugin="napari-ablation")
    assert len(layers) == 1
    layer = layers[0]
    lps = np.asarray(img.TransformIndexToPhysicalPoint((3, 4, 5)))
    assert layer.data[tuple(np.round(layer.world_to_data(lps[::-1])).astype(int))] == pytest.approx(
        sitk.GetArrayFromImage(img)[5, 4, 3]
    )
    (tmp_path / "junk.nrrd").write_text("nope")
    assert viewer.open(str(tmp_path / "junk.nrrd"), plugin="napari-ablation") == []
    assert len(viewer.layers) == 1


def test_writer_saves_labels_on_the_grid_of_the_original_file(make_napari_viewer, qtbot, tmp_path):
    import napari

    viewer = make_napari_viewer()
    widget = LoadCaseWidget(viewer)
    pre_img = _write(tmp_path / "pre.nii.gz")  # flipped on disk
    _write(tmp_path / "post.nii.gz", seed=2)
    _load(qtbot, viewer, widget, tmp_path / "pre.nii.gz", tmp_path / "post.nii.gz")
    tumor = _layers.find_layer(viewer, "tumor")
    tumor.data_setitem((np.array([2]), np.array([3]), np.array([4])), 1)
    out = tmp_path / "tumor_out.nii.gz"
    written = napari.save_layers(str(out), [tumor], plugin="napari-ablation")
    assert written == [str(out)]
    saved = sitk.ReadImage(str(out))
    assert saved.GetSize() == pre_img.GetSize()
    assert np.allclose(saved.GetDirection(), pre_img.GetDirection())
    assert np.allclose(saved.GetOrigin(), pre_img.GetOrigin(), atol=1e-4)
    arr = sitk.GetArrayFromImage(saved)
    assert arr.sum() == 1
    k, j, i = np.argwhere(arr)[0]
    # the labelled voxel is at the same physical point as the painted one
    painted = np.asarray(tumor.data_to_world((2, 3, 4)))[::-1]
    assert np.allclose(
        saved.TransformIndexToPhysicalPoint((int(i), int(j), int(k))), painted, atol=1e-4
    )


def test_dicom_folder_with_two_series_offers_a_choice_and_window_presets(
    make_napari_viewer, qtbot, tmp_path
):
    from test_io import make_volume, write_dicom_series

    viewer = make_napari_viewer()
    widget = LoadCaseWidget(viewer)
    big = make_volume(size=(32, 28, 10), spacing=(0.8, 0.8, 2.5))
    small = make_volume(size=(16, 16, 6), spacing=(1.5, 1.5, 3.0), seed=3)
    write_dicom_series(big, tmp_path / "pre" / "a", description="portal venous")
    uid_small = write_dicom_series(small, tmp_path / "pre" / "b", description="scout")
    write_dicom_series(
        make_volume(seed=5, spacing=(0.8, 0.8, 2.5)), tmp_path / "post", description="post"
    )
    widget.pre.path.setText(str(tmp_path / "pre"))
    widget.pre.refresh_series()  # lists the headers in the background
    qtbot.waitUntil(lambda: not widget.pre.busy, timeout=20000)
    assert widget.pre.series.isVisibleTo(widget) and widget.pre.series.count() == 2
    assert "portal venous" in widget.pre.series.itemText(0)  # the largest first, chosen by default
    widget.post.path.setText(str(tmp_path / "post"))
    widget.post.refresh_series()
    qtbot.waitUntil(lambda: not widget.post.busy, timeout=20000)
    assert not widget.post.series.isVisibleTo(widget)  # a single series: no choice to make
    widget.load_files()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=20000)
    pre = _layers.find_layer(viewer, "pre")
    assert pre.data.shape == (10, 28, 32)
    assert _layers.layer_meta(pre)["modality"] == "CT"
    assert tuple(pre.contrast_limits) == pytest.approx((-160.0, 240.0))  # CT abdomen window
    widget.window.setCurrentIndex(widget.window.findData("liver"))
    assert tuple(pre.contrast_limits) == pytest.approx((-5.0, 145.0))
    # the user may pick the other series
    widget.pre.series.setCurrentIndex(1)
    assert widget.pre.series_uid == uid_small


def test_layers_opened_without_a_case_are_adopted_and_autosaved(
    make_napari_viewer, qtbot, cases_root
):
    """Images and labels added by File > Open Sample (no widget involved) still autosave."""
    from napari_ablation.core import geometry as g

    viewer = make_napari_viewer()
    session = CaseSession.of(viewer)
    pre = g.image_from_array(np.zeros((6, 10, 12), np.float32), (3.0, 1.2, 1.2), (5.0, 6.0, 7.0))
    viewer.add_image(
        sitk.GetArrayFromImage(pre),
        **_layers.image_layer_kwargs(
            pre, "pre", "pre", metadata={"napari_ablation": {"case_folder": "/somewhere/renal_mri"}}
        ),
    )
    lab = viewer.add_labels(
        np.zeros((6, 10, 12), np.uint8), **_layers.labels_layer_kwargs(pre, "tumor", "tumor")
    )
    assert session.case.pre is not None and session.case.info["name"] == "renal_mri"
    lab.data_setitem((np.array([2]), np.array([3]), np.array([4])), 1)
    qtbot.waitUntil(lambda: not session.has_unsaved_changes, timeout=5000)
    assert session.folder is not None and session.folder.parent == cases_root
    saved = Case.load(session.folder)
    assert saved.pre is not None and sitk.GetArrayFromImage(saved.tumor)[2, 3, 4] == 1
    assert g.same_grid(saved.tumor, saved.pre)


def test_sample_case_opens_side_by_side_with_a_screenshot_showing_both(
    make_napari_viewer, qtbot, tmp_path, cases_root
):
    from skimage.io import imread

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1200, 800)
    widget = LoadCaseWidget(viewer)  # not docked: the canvas keeps the whole window
    widget.open_sample("renal_mri")
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    assert widget.last_error is None
    names = [_layers.role_of(layer) for layer in viewer.layers]
    # one order rule (_layers.arrange): post space under pre space; the grid (negative
    # stride, from the top) still puts pre | post in the left | right cells
    assert names == ["post", "ablation", "pre", "tumor"]
    assert _layers.grid(viewer).enabled and tuple(_layers.grid(viewer).shape) == (1, 2)
    pre, _post = _layers.find_layer(viewer, "pre"), _layers.find_layer(viewer, "post")
    assert np.allclose(pre.scale, (3.0, 1.2, 1.2))
    # the displayed slice goes through the tumor
    tumor = _layers.find_layer(viewer, "tumor")
    z = round(tumor.world_to_data(viewer.dims.point)[0])
    assert tumor.data[z].any()
    # bundled data untouched: the working copy lives in the user's cases folder
    assert CaseSession.of(viewer).folder == cases_root / "sample_renal_mri"
    qtbot.wait(
        300
    )  # the canvas draws the new camera on the next event-loop turn (as a user sees it)
    shot = viewer.screenshot(str(tmp_path / "sample.png"), canvas_only=True)
    h, w = shot.shape[:2]
    left, right = shot[:, : w // 2, :3].astype(float), shot[:, w // 2 :, :3].astype(float)
    assert left.std() > 20 and right.std() > 20  # both cells show an image
    # the tumor's orange is in the left cell (pre), the ablation's cyan in the right (post)
    orange = (shot[..., 0] > 150) & (shot[..., 1] > 60) & (shot[..., 1] < 170) & (shot[..., 2] < 90)
    cyan = (shot[..., 2] > 120) & (shot[..., 0] < 90)
    assert orange[:, : w // 2].sum() > 20 and orange[:, w // 2 :].sum() < orange[:, : w // 2].sum()
    assert cyan[:, w // 2 :].sum() > 20
    assert imread(tmp_path / "sample.png").shape[:2] == (h, w)


def test_background_autosave_keeps_the_newest_labels_and_the_current_transform(
    make_napari_viewer, qtbot, tmp_path
):
    """Label writes run off the GUI thread: an older write never lands after a newer one,
    and a transform set meanwhile is not rolled back by a label write."""
    from napari_ablation.core import transform as tfm

    viewer, _widget, session = _loaded_case(make_napari_viewer, qtbot, tmp_path)
    tumor = _layers.find_layer(viewer, "tumor")
    for k in range(5):  # five quick saves in a row, each in the background
        tumor.data_setitem((np.array([k]), np.array([3]), np.array([4])), 1)
        assert session.autosave() is True
    tx = tfm.euler_from_matrix(np.eye(3), [1.0, -2.0, 3.0])
    session.set_transform(tx)
    qtbot.waitUntil(lambda: not session.has_unsaved_changes, timeout=60000)
    saved = Case.load(session.folder)
    arr = sitk.GetArrayFromImage(saved.tumor)
    assert [int(arr[k, 3, 4]) for k in range(5)] == [1] * 5 and int(arr.sum()) == 5
    assert saved.transform is not None
    assert np.allclose(saved.transform.GetTranslation(), [1.0, -2.0, 3.0])
