"""The margin engine's warm-up: numba's on-disk cache filled ahead of the first analysis.

Each test gives its child processes an empty cache (``NUMBA_CACHE_DIR``, a new folder), so
the kernels are really compiled there: a first use after an install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_ablation.core import margin as M
from napari_ablation.core import warmup
from napari_ablation.core.errors import AblationError

SRC = str(Path(warmup.__file__).resolve().parents[2])

# a fresh process: what the cache holds, one analysis, and how many kernels it compiled
ANALYSIS = r"""
import json, numba
from napari_ablation.core import filters, mesh_search, warmup
from napari_ablation.core import margin as M
cold = warmup.cold_kernels()
c = (0.3, -0.4, 0.2)
tumor = M.sphere_image((40, 40, 16), (1.2, 1.2, 3.0), (-24.0, -24.0, -24.0), c, 8.0)
o = (-24.0, -24.0, -24.0)
ablation = M.sphere_image((40, 40, 16), (1.2, 1.2, 3.0), o, (4.3, -0.4, 0.2), 13.0)
res = M.analyze_margin(tumor, ablation, None, 5.0)
kernels = [d for mod in (filters, mesh_search) for d in vars(mod).values()
           if isinstance(d, numba.core.registry.CPUDispatcher)]
print(json.dumps({
    "cold": cold,
    "compiled": sum(sum(d.stats.cache_misses.values()) for d in kernels),
    "loaded": sum(sum(d.stats.cache_hits.values()) for d in kernels),
    "mtm": res.min_margin_mm,
    "point": list(res.min_margin_point_lps),
    "volumes": res.volume_ml,
}))
"""


def _env(cache: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    return env


def _analysis_in_child(cache: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", ANALYSIS],
        env=_env(cache),
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _here() -> dict:
    c = (0.3, -0.4, 0.2)
    tumor = M.sphere_image((40, 40, 16), (1.2, 1.2, 3.0), (-24.0, -24.0, -24.0), c, 8.0)
    ablation = M.sphere_image(
        (40, 40, 16), (1.2, 1.2, 3.0), (-24.0, -24.0, -24.0), (4.3, -0.4, 0.2), 13.0
    )
    res = M.analyze_margin(tumor, ablation, None, 5.0)
    return {
        "mtm": res.min_margin_mm,
        "point": list(res.min_margin_point_lps),
        "volumes": res.volume_ml,
    }


def test_two_warm_ups_at_once_fill_an_empty_cache_for_the_next_process(tmp_path):
    """Two warm-ups (e.g. two Dask workers) compile into one empty cache side by side; a
    later process then compiles nothing, and its analysis equals this process's."""
    cache = tmp_path / "numba"
    probe = [
        sys.executable,
        "-c",
        "from napari_ablation.core import warmup; print(warmup.cold_kernels())",
    ]
    before = subprocess.run(probe, env=_env(cache), capture_output=True, text=True, check=True)
    assert before.stdout.strip() == repr(list(warmup.KERNELS))  # empty: every kernel cold
    children = [
        subprocess.Popen([sys.executable, "-m", "napari_ablation.core.warmup"], env=_env(cache))
        for _ in range(2)
    ]
    assert [p.wait(timeout=900) for p in children] == [0, 0]
    index = {p.name.split("-")[0] for p in cache.rglob("*.nbi")}
    assert {"filters._pass", "filters._diagonal_caps", "mesh_search._query"} <= index
    assert not list(cache.rglob("*.tmp.*"))  # every entry renamed into place whole
    after = _analysis_in_child(cache)
    assert after["cold"] == []
    assert after["compiled"] == 0 and after["loaded"] >= 10
    here = _here()
    assert {k: after[k] for k in here} == json.loads(json.dumps(here))


def test_cli_says_once_that_it_compiles_the_engine(tmp_path):
    """A cold start prints one line on stderr (and the usual summary); the next run, from
    the cache it filled, prints nothing there and the same summary."""
    c = (0.3, -0.4, 0.2)
    tumor = M.sphere_image((40, 40, 16), (1.2, 1.2, 3.0), (-24.0, -24.0, -24.0), c, 8.0)
    ablation = M.sphere_image(
        (40, 40, 16), (1.2, 1.2, 3.0), (-24.0, -24.0, -24.0), (4.3, -0.4, 0.2), 13.0
    )
    import SimpleITK as sitk

    sitk.WriteImage(tumor, str(tmp_path / "t.nii.gz"))
    sitk.WriteImage(ablation, str(tmp_path / "a.nii.gz"))
    cmd = [sys.executable, "-m", "napari_ablation.cli", "margin", "--tumor", "t.nii.gz"]
    cmd += ["--ablation", "a.nii.gz"]
    env = _env(tmp_path / "numba")
    runs = [
        subprocess.run(
            cmd,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=900,
        )
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    cold = runs[0].stderr.strip().splitlines()
    assert len(cold) == 1 and cold[0].startswith(
        "napari-ablation margin: compiling the margin engine once, about "
    ), cold
    assert runs[1].stderr == "" and runs[1].stdout == runs[0].stdout
    assert "MTM" in runs[0].stdout


def test_split_shares_the_kernels_by_cost():
    names = list(warmup.KERNELS)
    shares = warmup.split(names, 2) if (os.cpu_count() or 1) >= 2 else None
    if shares is not None:
        assert sorted(n for s in shares for n in s) == sorted(names) and len(shares) == 2
        cost = [sum(warmup.KERNELS[n][2] for n in s) for s in shares]
        assert max(cost) - min(cost) <= max(k[2] for k in warmup.KERNELS.values())
        assert warmup.compile_seconds(names, 2) == pytest.approx(max(cost))
    assert warmup.split(names, 1) == [sorted(names, key=lambda n: -warmup.KERNELS[n][2])]
    assert warmup.compile_seconds([]) == 0.0
    with pytest.raises(AblationError, match="no margin-engine kernel"):
        warmup.warm_up(["nope"])


def test_warm_up_in_this_process_leaves_nothing_cold():
    warmup.warm_up()
    assert warmup.cold_kernels() == []
    assert warmup.ready() and warmup.wait(0)


def test_every_cached_kernel_is_warmed_up():
    """Each compiled kernel that numba caches (``cache=True``) in the engine's modules is
    listed in :data:`warmup.KERNELS`: a new kernel left out would compile during the first
    analysis after an install, on the GUI's compute thread, however early the warm-up ran."""
    from numba.core.caching import NullCache

    from napari_ablation.core import filters, mesh_search

    listed = {(mod, k) for mod, kernels, _cost, _call in warmup.KERNELS.values() for k in kernels}
    cached = {
        (mod.__name__.rsplit(".", 1)[1], name)
        for mod in (filters, mesh_search)
        for name, obj in vars(mod).items()
        if hasattr(obj, "py_func") and not isinstance(getattr(obj, "_cache", None), NullCache)
    }
    assert cached, "no compiled kernel found"
    assert cached <= listed, sorted(cached - listed)
