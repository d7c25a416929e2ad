"""UAT s10 N3: pre and post loaded from files (the case gets empty tumor and ablation
layers), then the tumor file opened with the plugin's reader (File > Open): a yellow
warning "the previous 'tumor' layer is kept as tumor_previous" for an EMPTY layer, an
empty "tumor" layer left beside "tumor [1]". An empty layer holds nothing to keep: it
goes, the opened labels take its name, and the user is told in an info line (run under
xvfb-run)."""

import _gui
import numpy as np
import SimpleITK as sitk

from napari_ablation.core import samples
from napari_ablation.widgets import _layers


def test_a_label_file_opened_into_empty_labels_takes_their_place(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    case = samples.load_sample("renal_mri")
    files = tmp_path / "files"
    files.mkdir()
    for role in ("pre", "post", "tumor"):
        sitk.WriteImage(getattr(case, role), str(files / f"{role}.nii.gz"))
    viewer, session, [(_d, load)] = _gui.plugin_docks(
        make_napari_viewer, tmp_path, monkeypatch, None, "1. Load case"
    )
    load.load_files(str(files / "pre.nii.gz"), str(files / "post.nii.gz"), name="own")
    qtbot.waitUntil(
        lambda: session.labels_layer("tumor") is not None and session.opening is None,
        timeout=120_000,
    )
    qtbot.waitUntil(lambda: load._worker is None and not _layers.steps_pending(), timeout=60_000)
    empty = session.labels_layer("tumor")
    assert not np.any(np.asarray(empty.data))
    said = {"info": [], "warning": []}
    monkeypatch.setattr(_layers, "notify_info", lambda m: said["info"].append(str(m)))
    monkeypatch.setattr(_layers, "notify_warning", lambda m: said["warning"].append(str(m)))

    viewer.open(str(files / "tumor.nii.gz"), plugin="napari-ablation")
    qtbot.waitUntil(lambda: empty not in viewer.layers, timeout=30_000)
    tumor = session.labels_layer("tumor")
    truth = sitk.GetArrayFromImage(case.tumor)
    assert np.array_equal(np.asarray(tumor.data) != 0, truth != 0)
    assert tumor.name == "tumor"
    assert [ly.name for ly in viewer.layers].count("tumor") == 1
    assert not any(str(_layers.role_of(ly)).endswith("_previous") for ly in viewer.layers)
    assert not said["warning"], said
    assert "the tumor labels opened are the case's tumor" in said["info"], said
    assert not (session.model.folder / "tumor_previous.nii.gz").exists()
    qtbot.waitUntil(lambda: not session.model.unsaved_items(), timeout=30_000)
    on_disk = sitk.GetArrayFromImage(sitk.ReadImage(str(session.model.folder / "tumor.nii.gz")))
    assert np.array_equal(on_disk != 0, truth != 0)
