"""The margin engine's compiled kernels made ready before the first analysis needs them.

The kernels of :mod:`~napari_ablation.core.filters` and
:mod:`~napari_ablation.core.mesh_search` are compiled by numba on their first call ever and
stored in numba's on-disk cache; every later process loads them from there in milliseconds.
The first analysis after an install would wait for the compilation (several seconds of one
core), so it is done ahead of time here: each kernel is called once on tiny inputs of the
very types the engine passes (one signature per kernel), which compiles it, or loads it
when the cache holds it already.

Where the cache lives is numba's choice, made the same way in every process: the
``NUMBA_CACHE_DIR`` folder when set, else the ``__pycache__`` folder next to the sources
when it is writable, else numba's user-wide cache folder (an installation the user cannot
write to, e.g. a read-only wheel). Entries are written to a temporary file and renamed,
so several processes (Dask workers, a warm-up beside an analysis) may fill it at once.

* :func:`warm_up`: in this process (holds the GIL while it compiles).
* :func:`start_warm_up`: in child processes that only fill the cache (the caller's GIL
  stays free: what the napari widgets do when the plugin opens); :func:`wait` for them.
* :func:`cold_kernels` and :func:`compile_seconds`: whether (and about how long) a first
  analysis would compile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

__all__ = [
    "KERNELS",
    "cold_kernels",
    "compile_seconds",
    "ready",
    "running",
    "split",
    "start_warm_up",
    "stop",
    "wait",
    "warm_up",
]


def _filters():
    from . import filters

    return filters


def _mesh_search():
    from . import mesh_search

    return mesh_search


def _gaussian():
    _filters().gaussian_filter(np.ones((3, 3, 3), np.float32), 1.0, mode="constant", truncate=3.0)


def _low_parts():
    solid = np.zeros((3, 3, 3), bool)
    solid[1, 1, 1] = True
    _filters().low_parts(solid, np.zeros((3, 3, 3), np.float32), 0.5)


def _slice_edt():
    _filters().slice_edt(np.eye(3, dtype=bool), (1.0, 1.0))


def _curvature():
    _filters().curvature_sums(np.ones((3, 3, 3), np.float32), (1.0, 1.0, 1.0), np.ones((1, 3)))


def _contours():
    _filters().find_contours(np.eye(3), 0.5)


def _gradient():
    _filters().gradient_at(np.ones((3, 3, 3), np.float32), np.ones((1, 3)))


def _windows():
    a = np.zeros((2, 2, 2), np.float32)
    _filters().window_extremes(a, a, np.zeros((1, 3), np.int64), (1, 1, 1))


def _diagonal_caps():
    solid = np.zeros((5, 5, 5), np.uint8)
    solid[1:4, 1:4, 1:4] = 1
    cov = solid.astype(np.float32)
    _filters().diagonal_caps(solid, cov, (1.0, 1.0, 1.0), [(0, 1, 1)], [3], 6.0, (10.0, 20.0))


def _contour_segments():
    pts = np.array([[0.0, 0.5], [0.5, 0.0], [1.0, 0.5]])
    _filters().contour_segments(pts, np.array([3]), (1.0, 1.0))


def _slice_band():
    soft = np.zeros((3, 3), np.float32)
    soft[1, 1] = 1.0
    band = _filters().slice_band(soft, (1.0, 1.0), 2.0)
    out, _p, where = band
    _filters().signed_band(out, soft, where, np.ones(len(where)), 0.0)


def _pieces():
    crop = np.zeros((3, 3, 3), np.uint8)
    crop[:, 1, 1] = 1
    _filters().pieces_go_on(crop, np.ones(3, bool))


def _bvh():
    ms = _mesh_search()
    a = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    ab = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    ac = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    dots = (np.einsum("ij,ij->i", u, v) for u, v in ((ab, ab), (ac, ac), (ab, ac)))
    bvh = ms.TriangleBVH(a, ab, ac, *dots)
    bvh.query(np.array([[0.2, 0.2, 0.5]]))


def _segments():
    p = np.zeros((1, 2))
    _mesh_search().candidate_segment_distance(p, p, p + 1.0, np.zeros((1, 1), np.int64))


def _outside():
    verts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    faces = np.array([[0, 1, 2]])
    normal = np.array([[0.0, 0.0, 1.0]])
    _mesh_search().outside_by_normals(
        np.array([[0.2, 0.2, 1.0]]), np.array([[0.2, 0.2, 0.0]]), np.zeros(1, np.int64),
        faces, verts, normal, np.repeat(normal, 3, axis=0),
    )  # fmt: skip


#: name -> (module, its kernels, CPU seconds to compile them, the call on tiny inputs); the
#: seconds (numba 0.68 on the 2-core machine of benchmarks/README.md, "First use") only
#: estimate the wait and balance a parallel warm-up
KERNELS = {
    "gaussian_filter": ("filters", ("_pass",), 1.9, _gaussian),
    "low_parts": ("filters", ("_low_parts",), 1.1, _low_parts),
    "slice_edt": ("filters", ("_slice_edt",), 0.45, _slice_edt),
    "curvature_sums": ("filters", ("_curvature_sums",), 0.9, _curvature),
    "find_contours": ("filters", ("_contours", "_gather"), 3.7, _contours),
    "gradient_at": ("filters", ("_gradient_at",), 0.45, _gradient),
    "window_extremes": ("filters", ("_window_extremes",), 0.35, _windows),
    "diagonal_caps": ("filters", ("_diagonal_caps",), 12.5, _diagonal_caps),
    "contour_segments": ("filters", ("_contour_segments",), 0.6, _contour_segments),
    "slice_band": ("filters", ("_slice_band", "_signed_band"), 1.6, _slice_band),
    "pieces_go_on": ("filters", ("_pieces_go_on",), 1.1, _pieces),
    "triangle_bvh": (
        "mesh_search",
        ("_build_order", "_select", "_pack", "_node_bounds", "_query"),
        4.9,
        _bvh,
    ),
    "candidate_segments": ("mesh_search", ("_candidate_segments",), 0.3, _segments),
    "outside_by_normals": ("mesh_search", ("_outside",), 0.55, _outside),
}


def _dispatchers(name: str) -> list:
    mod_name, kernels, _cost, _call = KERNELS[name]
    mod = _filters() if mod_name == "filters" else _mesh_search()
    return [getattr(mod, k) for k in kernels]


def _names(names) -> list[str]:
    names = list(KERNELS) if names is None else list(names)
    unknown = [n for n in names if n not in KERNELS]
    if unknown:
        from .errors import AblationError

        raise AblationError(f"no margin-engine kernel is called {unknown[0]!r}")
    return names


def warm_up(names=None) -> None:
    """Compile (or load from numba's cache) the engine's kernels in this process.

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`KERNELS` (default: all).

    Raises
    ------
    AblationError
        If a name is not a key of :data:`KERNELS`.
    """
    for name in _names(names):
        KERNELS[name][3]()


def _in_cache(dispatcher) -> bool | None:
    """Tell whether numba's cache holds a compiled version of this kernel's current source.

    Reads the kernel's cache index as numba itself does (an index of another numba version
    or of an edited source counts as empty); None when numba's cache cannot tell (its
    internals changed, or caching is off).
    """
    try:
        return bool(dispatcher._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001 - numba's private cache API: unknown
        return None


def cold_kernels(names=None) -> list[str] | None:
    """List the kernels a first analysis would compile: those numba's cache does not hold.

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`KERNELS` (default: all).

    Returns
    -------
    list of str or None
        The names (in :data:`KERNELS` order) of those not in the cache (nor compiled in this
        process already); None when numba's cache cannot tell.

    Raises
    ------
    AblationError
        If a name is not a key of :data:`KERNELS`.
    """
    cold = []
    for name in _names(names):
        for d in _dispatchers(name):
            if d.signatures:
                continue
            cached = _in_cache(d)
            if cached is None:
                return None
            if not cached:
                cold.append(name)
                break
    return cold


def compile_seconds(names, workers: int = 1) -> float:
    """About how long compiling these kernels takes on an idle machine (wall seconds).

    Parameters
    ----------
    names : iterable of str
        Keys of :data:`KERNELS`.
    workers : int, optional
        Processes compiling side by side (see :func:`split`), at most the machine's cores.

    Returns
    -------
    float
        The estimate: the largest share's CPU seconds.

    Raises
    ------
    AblationError
        If a name is not a key of :data:`KERNELS`.
    """
    return max((sum(KERNELS[n][2] for n in part) for part in split(names, workers)), default=0.0)


def split(names, parts: int) -> list[list[str]]:
    """Share kernels among ``parts`` processes, the costliest first to the least loaded.

    Parameters
    ----------
    names : iterable of str
        Keys of :data:`KERNELS`.
    parts : int
        Processes (1 or more; no more are used than the machine's cores or the kernels).

    Returns
    -------
    list of list of str
        The names of each process's share (none empty).

    Raises
    ------
    AblationError
        If a name is not a key of :data:`KERNELS`.
    """
    names = _names(names)
    parts = max(1, min(int(parts), os.cpu_count() or 1, len(names) or 1))
    shares: list[list[str]] = [[] for _ in range(parts)]
    load = [0.0] * parts
    for n in sorted(names, key=lambda n: -KERNELS[n][2]):
        i = load.index(min(load))
        shares[i].append(n)
        load[i] += KERNELS[n][2]
    return [s for s in shares if s]


#: the children of the last :func:`start_warm_up` (one warm-up at a time per process)
_CHILDREN: list = []
_LOCK = threading.Lock()


def _child_env() -> dict:
    """Return this environment with this package's folder first on the Python path.

    The child then compiles the same source files (numba's cache is per source file).
    """
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not path else os.pathsep.join([root, path])
    return env


def start_warm_up(names=None, *, parts: int = 1, nice: int = 0) -> list[subprocess.Popen]:
    """Fill numba's cache with these kernels in child processes (returns at once).

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`KERNELS` (default: all).
    parts : int, optional
        Child processes sharing the kernels (:func:`split`: at most the machine's cores).
    nice : int, optional
        How much lower the children's scheduling priority is (POSIX; so that a busy machine
        serves the caller first).

    Returns
    -------
    list of subprocess.Popen
        The children (what :func:`wait` waits for); none when a warm-up runs already.

    Raises
    ------
    AblationError
        If a name is not a key of :data:`KERNELS`.
    """
    shares = split(_names(names), parts)
    with _LOCK:
        if running():
            return []
        _CHILDREN[:] = [
            subprocess.Popen(
                [sys.executable, "-m", "napari_ablation.core.warmup", str(int(nice)), *share],
                env=_child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for share in shares
        ]
        return list(_CHILDREN)


def running() -> bool:
    """Tell whether a child of :func:`start_warm_up` still runs.

    Returns
    -------
    bool
        True while one runs.
    """
    return any(child.poll() is None for child in list(_CHILDREN))


def wait(timeout: float | None = None) -> bool:
    """Wait for the children of :func:`start_warm_up`, if any.

    Parameters
    ----------
    timeout : float, optional
        Seconds at most (default: until they end).

    Returns
    -------
    bool
        True when none runs any more (whether they filled the cache or failed: the kernels
        they did not cache are then compiled on first use, as without them).
    """
    end = None if timeout is None else time.monotonic() + timeout
    for child in list(_CHILDREN):
        try:
            child.wait(None if end is None else max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
    return True


def stop() -> None:
    """End the children of :func:`start_warm_up` that still run (what they cached stays)."""
    for child in list(_CHILDREN):
        if child.poll() is None:
            child.kill()
            child.wait()


def ready() -> bool:
    """Tell whether the first analysis would start at once.

    Returns
    -------
    bool
        True when no warm-up runs and numba's cache holds every kernel (or cannot tell).
    """
    return not running() and not cold_kernels()


def _main(argv: list[str]) -> int:
    nice = int(argv[0]) if argv else 0
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    warm_up(argv[1:] or None)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
