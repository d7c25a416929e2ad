"""Headless core of napari-ablation: numpy / SimpleITK / scipy / scikit-image only.

No Qt and no napari may be imported from this package; the widgets and the CLI are
thin layers over it. One module owns each concept:

* ``errors``        -- the one-line, user-facing error type
* ``files``         -- input checks and all-or-none atomic outputs
* ``geometry``      -- LPS orientation, napari layer geometry, physical points
* ``orientation``   -- the radiological display convention (edge letters)
* ``io``            -- reading images / DICOM series, atomic writing
* ``transform``     -- rigid transforms (ITK convention), resampling between grids
* ``landmarks``     -- paired-landmark rigid fit, residuals, predicted target error
* ``display``       -- contrast presets
* ``resources``     -- memory and size checks before long work
* ``case``          -- the case model and its folder on disk
* ``samples``       -- the bundled synthetic sample cases
* ``synthetic``     -- varied synthetic cases with exact truths (quizzes, cohorts, tests)
* ``phantoms``      -- analytic shapes with known answers
* ``quiz``          -- teaching mode: quiz folders, answer keys, scoring, score files
* ``segmentation``, ``interpolation``, ``registration``, ``margin``, ``coverage``,
  ``uncertainty``, ``report`` -- the workflow steps
* ``cohort``, ``cohort_stats`` -- many cases on Dask, and margin-outcome statistics
* ``filters``, ``mesh_search`` -- the margin engine's compiled kernels (numba); ``warmup``
  compiles them (or loads them from numba's cache) ahead of the first analysis
"""
