"""Headless core of napari-ablation: numpy / SimpleITK / scipy / scikit-image only.

No Qt and no napari may be imported from this package; the widgets and the CLI are
thin layers over it. One module owns each concept:

* ``errors``    -- the one-line, user-facing error type
* ``geometry``  -- LPS orientation, napari layer geometry, physical points
* ``io``        -- reading images / DICOM series, atomic writing
* ``transform`` -- rigid transforms (ITK convention), resampling between grids
* ``display``   -- contrast presets
* ``case``      -- the case model and its folder on disk
* ``samples``   -- the bundled synthetic sample cases
* ``synthetic`` -- varied synthetic cases with exact truths (quizzes, cohorts, tests)
* ``quiz``      -- teaching mode: quiz folders, answer keys, scoring, score files
* ``segmentation``, ``registration``, ``margin``, ``report`` -- the workflow steps
"""
