"""napari-ablation: ablation margin assessment for interventional radiology."""

__version__ = "0.1.0"
