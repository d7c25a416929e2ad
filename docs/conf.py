"""Sphinx configuration of the napari-ablation documentation.

Build (warnings are errors)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The CLI reference and the tutorial screenshots are generated during the build by
``docs/_ext/napari_ablation_docs.py`` (see there for ``NAPARI_ABLATION_DOCS_SCREENSHOTS``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari_ablation

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))  # napari_ablation_docs

project = "napari-ablation"
author = "napari-ablation developers"
copyright = "napari-ablation developers, BSD-3-Clause"
release = napari_ablation.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "napari_ablation_docs",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "scripts", "Thumbs.db", ".DS_Store", "README.md"]
templates_path = ["_templates"]

# Markdown pages
myst_enable_extensions = [
    "colon_fence",
    "deflist",
    "dollarmath",
    "attrs_inline",
    "substitution",
]
# the resolution-limit figures: set from the engine by napari_ablation_docs
myst_substitutions: dict[str, str] = {}
myst_heading_anchors = 3

# API reference of core/ from its docstrings
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "furo"
html_title = f"napari-ablation {release}"
html_static_path: list[str] = []
html_theme_options = {
    "source_repository": "https://github.com/napari-ablation/napari-ablation/",
    "source_branch": "main",
    "source_directory": "docs/",
}
