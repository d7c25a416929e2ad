"""Thin Qt / magicgui widgets over ``napari_ablation.core``, one module per workflow step.

* ``load``     -- load a case (pre/post files, DICOM series, sample case, case folder)
* ``segment``  -- brush + interpolation, edge-aware assistance, correction, comparison
* ``register`` -- automatic / manual / landmark rigid registration and visual QA
* ``margin``   -- the margin analysis, margin layer and report
* ``session``  -- the case shared by the widgets of one viewer, and its autosave
"""
