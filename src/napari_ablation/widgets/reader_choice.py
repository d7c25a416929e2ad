"""File > Open of a NIfTI / NRRD / MHA / DICOM file: which reader napari uses.

napari's builtin reader claims these file types too, so File > Open (and drag and drop)
asks "Choose reader" each time. An npe2 reader contribution cannot rank itself above
another plugin's (it declares only ``filename_patterns`` and ``accepts_directories``);
napari reads its user's preference, ``settings.plugins.extension2reader`` (the dialog's
"Remember this choice", or Preferences > Plugins). This module sets or clears that
preference for this plugin's file patterns, and only when the user asks (the Load
widget's check box): a plugin never changes the user's settings on its own.
See docs/getting-started.md, "Opening files with File > Open".
"""

from __future__ import annotations

from pathlib import Path

#: the plugin name napari's settings refer to (napari.yaml ``name``)
PLUGIN = "napari-ablation"


def reader_patterns() -> list[str]:
    """The file name patterns of this plugin's reader, as its manifest declares them."""
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(Path(__file__).resolve().parents[1] / "napari.yaml")
    return [p for r in manifest.contributions.readers or [] for p in r.filename_patterns]


def _settings(settings=None):
    if settings is not None:
        return settings
    from napari.settings import get_settings

    return get_settings()


def preferred(settings=None) -> dict[str, str | None]:
    """The reader the user prefers for each of this plugin's patterns (None: napari asks)."""
    prefs = _settings(settings).plugins.extension2reader
    return {p: prefs.get(p) for p in reader_patterns()}


def is_preferred(settings=None) -> bool:
    """True when File > Open reads every pattern of this plugin's reader with it."""
    return all(v == PLUGIN for v in preferred(settings).values())


def set_preferred(on: bool, settings=None) -> None:
    """The user's choice: read this plugin's file types with it from now on (``on``), or
    let napari ask again (the preferences this plugin set are removed; another reader the
    user chose for a pattern stays when ``on`` is False)."""
    s = _settings(settings)
    prefs = dict(s.plugins.extension2reader)
    for p in reader_patterns():
        if on:
            prefs[p] = PLUGIN
        elif prefs.get(p) == PLUGIN:
            del prefs[p]
    s.plugins.extension2reader = prefs
