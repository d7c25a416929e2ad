"""UAT s7 N4: File > Open of a NIfTI file asks "Choose reader" (napari's builtin reader
claims it too); the Load widget's check box sets napari's own reader preference for this
plugin's file patterns, only when the user ticks it, and unticking gives the choice back
(run under xvfb-run, in a real viewer, with a private napari settings file)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation.core import geometry
from napari_ablation.widgets import reader_choice
from napari_ablation.widgets.load import LoadCaseWidget


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """napari's settings in a file of this test (never the user's settings file)."""
    import napari.settings
    from napari.settings import NapariSettings

    monkeypatch.setenv("NAPARI_ABLATION_CASES", str(tmp_path / "cases"))
    s = NapariSettings(config_path=tmp_path / "napari-settings.yaml")
    monkeypatch.setattr(napari.settings, "_SETTINGS", s)
    return s


def test_file_open_reader_preference_is_the_users_choice(settings, make_napari_viewer, tmp_path):
    from napari.errors import MultipleReaderError

    img = sitk.Image(12, 10, 6, sitk.sitkUInt8)
    img.SetSpacing((0.8, 0.8, 5.0))
    img.SetOrigin((-4.0, 3.0, 10.0))
    path = tmp_path / "tumor.nii.gz"
    sitk.WriteImage(img, str(path))
    viewer = make_napari_viewer()
    settings.plugins.extension2reader = {"*.tif": "napari"}  # the user's own preference
    widget = LoadCaseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="1. Load case")
    # opening the widget changes nothing: napari asks which reader, as before
    assert settings.plugins.extension2reader == {"*.tif": "napari"}
    assert not widget.prefer_reader.isChecked()
    with pytest.raises(MultipleReaderError):
        viewer.open(str(path), plugin=None)

    widget.prefer_reader.click()  # the user's choice
    assert reader_choice.is_preferred(settings)
    prefs = settings.plugins.extension2reader
    assert prefs["*.tif"] == "napari" and prefs["*.nii.gz"] == reader_choice.PLUGIN
    assert set(reader_choice.reader_patterns()) >= {"*.nii", "*.nii.gz", "*.nrrd", "*.mha"}
    # File > Open (plugin=None: the user's preference, else napari asks): the plugin's reader
    (layer,) = viewer.open(str(path), plugin=None)
    np.testing.assert_allclose(layer.scale, (5.0, 0.8, 0.8), rtol=1e-6)  # NIfTI: float32
    np.testing.assert_allclose(layer.translate, (10.0, 3.0, -4.0), rtol=1e-6)
    assert str(layer.units[0]) in ("mm", "millimeter") and layer.axis_labels == geometry.AXIS_LABELS
    # a new Load widget shows the preference as set
    again = LoadCaseWidget(viewer)
    assert again.prefer_reader.isChecked()
    again.close()

    widget.prefer_reader.click()  # back: napari asks again; the user's other choices stay
    assert settings.plugins.extension2reader == {"*.tif": "napari"}
    with pytest.raises(MultipleReaderError):
        viewer.open(str(path), plugin=None)
