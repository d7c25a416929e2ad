"""Cohort batch on dask.distributed: equality with the margin CLI, resume, fault isolation,
a worker killed mid-task, manifests and an unreachable scheduler."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import distributed  # a runtime dependency: the cohort tests must never be skipped
import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import cohort
from napari_ablation.core import transform as tfm
from napari_ablation.core.case import Case
from napari_ablation.core.errors import AblationError
from napari_ablation.core.margin import sphere_image


def _image(size, spacing, origin, centre, masks_and_values, body_value=80.0):
    """An int16 image: a 24 mm 'organ' ball plus the given masks added with their values."""
    body = sphere_image(size, spacing, origin, centre, 24.0)
    img = sitk.Cast(body, sitk.sitkFloat32) * body_value + 20.0
    for mask, value in masks_and_values:
        img = img + sitk.Cast(mask, sitk.sitkFloat32) * value
    return sitk.Cast(img, sitk.sitkInt16)


def make_sphere_case(
    folder: Path,
    *,
    r_tumor: float,
    r_abl: float,
    offset,
    shift=(0.0, 0.0, 0.0),
    spacing=(1.5, 1.5, 2.5),
    modality="CT",
) -> Path:
    """A case folder: a tumor sphere on pre, an ablation sphere on post, post = pre moved by
    ``shift`` (transform.tfm when non-zero). True MTM = r_abl - |offset| - r_tumor."""
    size = (36, 36, 20)
    origin = (-27.0, -27.0, -25.0)
    post_origin = np.add(origin, shift)
    c_abl = np.asarray(offset, float)
    tumor = sphere_image(size, spacing, origin, (0.0, 0.0, 0.0), r_tumor)
    abl = sphere_image(size, spacing, post_origin, c_abl + np.asarray(shift), r_abl)
    pre = _image(size, spacing, origin, (0.0, 0.0, 0.0), [(tumor, 60.0)])
    post = _image(size, spacing, post_origin, np.asarray(shift), [(abl, -70.0)])
    tx = None
    if any(shift):
        tx = sitk.Euler3DTransform()
        tx.SetTranslation([float(s) for s in shift])
    Case(
        pre=pre, post=post, tumor=tumor, ablation=abl, transform=tx, info={"modality": modality}
    ).save(folder)
    return folder


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    specs = [
        {"r_tumor": 6.0, "r_abl": 14.0, "offset": (1.0, -2.0, 0.5)},
        {"r_tumor": 8.0, "r_abl": 11.0, "offset": (-3.0, 1.0, 2.0), "shift": (2.0, -1.5, 3.0)},
        {
            "r_tumor": 5.0,
            "r_abl": 12.0,
            "offset": (0.0, 0.0, 0.0),
            "modality": "MR",
            "spacing": (1.2, 1.2, 3.0),
        },
        {"r_tumor": 7.0, "r_abl": 10.0, "offset": (4.0, 0.0, -1.0)},
    ]
    for i, kw in enumerate(specs):
        make_sphere_case(root / "centre_a" / f"case{i:02d}", **kw)
    return root


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    c = Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


def _cli_json(case_dir: Path, tmp: Path, threshold=5.0) -> dict:
    out = tmp / f"{case_dir.name}_cli.json"
    args = [
        "margin",
        "--tumor",
        str(case_dir / "tumor.nii.gz"),
        "--ablation",
        str(case_dir / "ablation.nii.gz"),
        "--threshold",
        str(threshold),
        "--json",
        str(out),
    ]
    if (case_dir / "transform.tfm").exists():
        args += ["--transform", str(case_dir / "transform.tfm")]
    assert cli.main(args) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    doc.pop("inputs")
    return doc


def test_find_cases_ids_and_metadata(cohort_dir, tmp_path):
    cases = cohort.find_cases([cohort_dir])
    assert [c.case for c in cases] == [f"centre_a/case{i:02d}" for i in range(4)]
    assert cases[1].transform and cases[0].transform is None
    assert cases[2].modality == "MR" and cases[0].qa_verdict == "not reviewed"
    # a case folder given directly is its own id
    assert [c.case for c in cohort.find_cases([cohort_dir / "centre_a" / "case01"])] == ["case01"]
    with pytest.raises(AblationError, match="no case folder"):
        cohort.find_cases([tmp_path])
    with pytest.raises(AblationError, match="no such folder"):
        cohort.find_cases([tmp_path / "nothing"])


def test_batch_equals_margin_cli_exactly(cohort_dir, tmp_path, capsys):
    """`cohort run` (its own LocalCluster) writes, per case, exactly the margin CLI's figures."""
    res = tmp_path / "results"
    code = cli.main(
        [
            "cohort",
            "run",
            "--cases",
            str(cohort_dir),
            "--out",
            str(res),
            "--threshold",
            "3",
            "--workers",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    import pandas as pd

    table = pd.read_csv(res / "margins.csv", keep_default_na=False)
    assert list(table.columns[: len(cohort.META_COLUMNS)]) == list(cohort.META_COLUMNS)
    assert len(table) == 4 and (table["error"] == "").all()
    for case_dir in sorted((cohort_dir / "centre_a").iterdir()):
        ref = _cli_json(case_dir, tmp_path, threshold=3)
        stored = cohort.load_case_result(res, f"centre_a/{case_dir.name}")
        assert stored["margin"] == ref  # the whole margin JSON, bit for bit after rounding
        row = table[table["case"] == f"centre_a/{case_dir.name}"].iloc[0]
        for k, v in ref.items():  # every scalar key of the margin JSON under the same name
            if isinstance(v, (int, float, str)) and not isinstance(v, bool):
                assert row[k] == v or (isinstance(v, str) and str(row[k]) == v), k
        assert str(row["complete_coverage"]) == str(ref["complete_coverage"])
        assert (
            row["octant_min_margin_mm.left-anterior-superior"]
            == ref["octant_min_margin_mm"]["left-anterior-superior"]
        )
    # spacing and modality of each case
    row = table[table["case"] == "centre_a/case02"].iloc[0]
    assert (row["spacing_x_mm"], row["spacing_z_mm"], row["modality"]) == (1.2, 3.0, "MR")
    # sphere truth (sub-voxel method: within a voxel)
    row = table[table["case"] == "centre_a/case00"].iloc[0]
    assert row["min_margin_mm"] == pytest.approx(
        14.0 - np.linalg.norm((1.0, -2.0, 0.5)) - 6.0, abs=0.8
    )
    err = capsys.readouterr().err
    assert "4/4 done" in err and "0 failed" in err
    # the Parquet copy (pyarrow is in the testing extra) holds the same table
    pq = pd.read_parquet(res / cohort.MARGINS_PARQUET)
    csv = pd.read_csv(res / "margins.csv")
    assert list(pq.columns) == list(csv.columns) and len(pq) == len(csv) == 4
    for col in ("case", "min_margin_mm", "tumor_volume_ml", "spacing_z_mm"):
        assert pq[col].tolist() == csv[col].tolist(), col


def test_cli_summary_does_not_count_a_failed_case_as_computed(cohort_dir, tmp_path, capsys):
    """UAT s7 N10: "5 cases (5 computed, 0 unchanged, 2 failed)": the three counts add up."""
    import shutil

    cases = tmp_path / "cases"
    shutil.copytree(cohort_dir / "centre_a" / "case00", cases / "good")
    shutil.copytree(cohort_dir / "centre_a" / "case01", cases / "broken")
    (cases / "broken" / "case.json").write_text("{ not json", encoding="utf-8")
    args = ["cohort", "run", "--cases", str(cases), "--out", str(tmp_path / "r")]
    assert cli.main([*args, "--workers", "1"]) == 0
    out = capsys.readouterr()
    assert "broken: error:" in out.err
    assert out.out.startswith("2 cases (1 computed, 0 unchanged, 1 failed): ")
    assert cli.main([*args, "--workers", "1"]) == 0
    assert capsys.readouterr().out.startswith("2 cases (0 computed, 1 unchanged, 1 failed): ")


def test_rerun_recomputes_only_deleted_or_changed(cohort_dir, tmp_path, client):
    res = tmp_path / "results"
    cases = cohort.find_cases([cohort_dir])
    first = cohort.run_cohort(cases, res, client=client)
    assert sorted(first.computed) == sorted(c.case for c in cases) and not first.reused
    before = {c.case: cohort.load_case_result(res, c.case) for c in cases}
    for cid in ("centre_a/case01", "centre_a/case03"):
        cohort.case_result_path(res, cid).unlink()
    seen = []
    second = cohort.run_cohort(
        cases, res, client=client, progress=lambda p: seen.append((p.done, p.failed, p.left))
    )
    assert sorted(second.computed) == ["centre_a/case01", "centre_a/case03"]
    assert sorted(second.reused) == ["centre_a/case00", "centre_a/case02"]
    assert seen[0] == (2, 0, 2) and seen[-1] == (4, 0, 0)
    for c in cases:
        assert cohort.load_case_result(res, c.case)["margin"] == before[c.case]["margin"]
    # another threshold is another setting: everything is recomputed
    third = cohort.run_cohort(cases, res, client=client, threshold_mm=2.0)
    assert len(third.computed) == 4
    assert all(r["margin"]["threshold_mm"] == 2.0 for r in third.records)


def test_broken_case_is_an_error_row(cohort_dir, tmp_path, client):
    import shutil

    import pandas as pd

    root = tmp_path / "cases"
    shutil.copytree(cohort_dir, root)
    (root / "centre_a" / "case02" / "tumor.nii.gz").write_bytes(b"not an image at all")
    (root / "centre_a" / "case03" / "transform.tfm").write_text(
        "#Insight Transform File V1.0\n", encoding="utf-8"
    )
    case_json = root / "centre_a" / "case01" / "case.json"
    doc = json.loads(case_json.read_text(encoding="utf-8"))
    doc["transform"] = {"angles_rad": [0, 0, 0], "translation": [0, 0, 0], "center": [0, 0, 0]}
    case_json.write_text(json.dumps(doc), encoding="utf-8")
    (root / "centre_a" / "case01" / "transform.tfm").unlink()
    run = cohort.run_cohort(cohort.find_cases([root]), tmp_path / "res", client=client)
    table = pd.read_csv(tmp_path / "res" / "margins.csv", keep_default_na=False).set_index("case")
    assert table.loc["centre_a/case00", "error"] == ""
    assert table.loc["centre_a/case00", "min_margin_mm"] != ""
    assert (
        "tumor" in table.loc["centre_a/case02", "error"]
        and "\n" not in table.loc["centre_a/case02", "error"]
    )
    assert "transform" in table.loc["centre_a/case03", "error"]
    assert "transform.tfm is missing" in table.loc["centre_a/case01", "error"]
    assert sorted(run.failed) == ["centre_a/case01", "centre_a/case02", "centre_a/case03"]
    assert table.loc["centre_a/case02", "min_margin_mm"] == ""


class _KillOnce(distributed.WorkerPlugin):
    """Ends the worker process (os._exit) when the first cohort task starts executing."""

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if (
            finish == "executing"
            and "cohort-margin" in str(key)
            and not os.path.exists(self.marker)
        ):
            Path(self.marker).write_text(str(key), encoding="utf-8")
            os._exit(1)


def test_worker_killed_mid_task_is_retried(cohort_dir, tmp_path):
    """A worker dies while computing a case; Dask reruns the task on a new worker and the
    batch completes with every case right (via --scheduler-style address)."""
    import cloudpickle
    from distributed import Client, LocalCluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
    )
    try:
        with Client(cluster, set_as_default=False) as c:
            c.register_plugin(_KillOnce(str(marker)))
            run = cohort.run_cohort(
                cohort.find_cases([cohort_dir]),
                tmp_path / "res",
                scheduler=cluster.scheduler_address,
            )
    finally:
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert marker.exists()  # a worker really died in a cohort task
    assert run.failed == [] and len(run.computed) == 4
    killed_case = marker.read_text(encoding="utf-8")
    assert any(quote_id in killed_case for quote_id in ("case00", "case01", "case02", "case03"))


def test_manifest_cases_equal_folder_cases(cohort_dir, tmp_path, client):
    import shutil

    data = tmp_path / "data"
    for i in (0, 1):
        src = cohort_dir / "centre_a" / f"case{i:02d}"
        dst = data / f"p{i}"
        dst.mkdir(parents=True)
        for f in ("tumor.nii.gz", "ablation.nii.gz", "transform.tfm"):
            if (src / f).exists():
                shutil.copy(src / f, dst / f)
    man = tmp_path / "cases.csv"
    man.write_text(
        "case,tumor,ablation,transform\n"
        "p0,data/p0/tumor.nii.gz,data/p0/ablation.nii.gz,\n"
        "p1,data/p1/tumor.nii.gz,data/p1/ablation.nii.gz,data/p1/transform.tfm\n",
        encoding="utf-8",
    )
    run = cohort.run_cohort(cohort.read_manifest(man), tmp_path / "res", client=client)
    ref = cohort.run_cohort(cohort.find_cases([cohort_dir]), tmp_path / "ref", client=client)
    by_id = {r["case"]: r for r in ref.records}
    assert run.records[0]["margin"] == by_id["centre_a/case00"]["margin"]
    assert run.records[1]["margin"] == by_id["centre_a/case01"]["margin"]
    bad = tmp_path / "bad.csv"
    bad.write_text("case,tumour,ablation\nx,a,b\n", encoding="utf-8")
    with pytest.raises(AblationError, match="lacks the column"):
        cohort.read_manifest(bad)


def test_unreachable_scheduler_is_one_line(cohort_dir, tmp_path, capsys):
    t0 = time.monotonic()
    code = cli.main(
        [
            "cohort",
            "run",
            "--cases",
            str(cohort_dir),
            "--out",
            str(tmp_path / "res"),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(
        "napari-ablation cohort: error: no Dask scheduler answers at tcp://127.0.0.1:9"
    )
    assert not any("Traceback" in line for line in err)
    assert time.monotonic() - t0 < 20
    assert not (tmp_path / "res" / "margins.csv").exists()


def test_progress_text():
    p = cohort.CohortProgress(
        total=10, done=3, failed=1, elapsed_s=35.0, compute_s=30.0, computed=4
    )
    assert p.left == 6 and p.rate_per_min == pytest.approx(8.0)
    assert p.text() == "3/10 done, 1 failed, 6 left, 8.0 cases/min, 45 s left"


def test_flatten_margin_names():
    doc = {
        "min_margin_mm": -1.0,
        "complete_coverage": False,
        "volume_ml": {"uncovered": 0.1},
        "min_margin_point_lps": [1.0, 2.0, 3.0],
        "warnings": ["a", "b"],
        "surface_margin_histogram": {"bin_edges_mm": [0, 1]},
    }
    assert cohort.flatten_margin(doc) == {
        "min_margin_mm": -1.0,
        "complete_coverage": False,
        "volume_ml.uncovered": 0.1,
        "min_margin_point_lps.x": 1.0,
        "min_margin_point_lps.y": 2.0,
        "min_margin_point_lps.z": 3.0,
        "warnings": "a; b",
    }


def test_transform_of_case_is_used(cohort_dir):
    rec = cohort.analyze_case(cohort.find_cases([cohort_dir])[1])
    tx = tfm.read_rigid_transform(cohort_dir / "centre_a" / "case01" / "transform.tfm")
    assert np.allclose(tx.GetTranslation(), (2.0, -1.5, 3.0))
    # true MTM of the two spheres after the registration: 11 - |(-3, 1, 2)| - 8
    assert rec["margin"]["min_margin_mm"] == pytest.approx(
        11.0 - np.linalg.norm((-3, 1, 2)) - 8.0, abs=0.8
    )


def test_synthetic_cohort_end_to_end(tmp_path, capsys):
    """synth -> run -> stats through the CLI; every case equals `napari-ablation margin`,
    and the measured MTM is near the synthetic truth."""
    import pandas as pd

    syn, res, rep = tmp_path / "syn", tmp_path / "res", tmp_path / "rep"
    assert cli.main(["cohort", "synth", "--n", "8", "--seed", "5", "--out", str(syn)]) == 0
    assert "hazard ratio 0.77 per mm" in capsys.readouterr().out
    outcomes = pd.read_csv(syn / "outcomes.csv", keep_default_na=False)
    assert (
        list(outcomes.columns) == ["case", "ltp", "months", "recurrence_octant"]
        and len(outcomes) == 8
    )
    assert (
        cli.main(["cohort", "run", "--cases", str(syn), "--out", str(res), "--workers", "2"]) == 0
    )
    table = pd.read_csv(res / "margins.csv", keep_default_na=False).set_index("case")
    truth = pd.read_csv(syn / "truth.csv").set_index("case")
    for cid in outcomes["case"]:
        ref = _cli_json(syn / cid, tmp_path)
        assert cohort.load_case_result(res, cid)["margin"] == ref
        assert table.loc[cid, "min_margin_mm"] == ref["min_margin_mm"]
        assert abs(ref["min_margin_mm"] - truth.loc[cid, "true_min_margin_mm"]) < 1.0
    assert set(table["modality"]) == {"MR", "CT"} and (table["qa_verdict"] == "not reviewed").all()
    assert (
        cli.main(
            [
                "cohort",
                "stats",
                "--results",
                str(res / "margins.csv"),
                "--outcomes",
                str(syn / "outcomes.csv"),
                "--out",
                str(rep),
            ]
        )
        == 0
    )
    s = json.loads((rep / "stats.json").read_text(encoding="utf-8"))
    for key in (
        "n_cases",
        "n_events",
        "cox",
        "mann_whitney_min_margin_p",
        "spearman_margin_diameter",
        "roc",
        "fisher_margin_ge_1mm_p",
    ):
        assert key in s
    assert s["n_cases"] == 8 and s["n_events"] == int(outcomes["ltp"].sum())


def test_draw_outcomes_follows_the_hazard_model():
    """Event fraction of the exponential model against its closed form, per MTM."""
    rng = np.random.default_rng(0)
    for mtm in (-4.0, 2.0, 8.0):
        rows = cohort.draw_outcomes(
            [
                {
                    "case": str(i),
                    "min_margin_mm": mtm,
                    "min_margin_octant": "left-anterior-superior",
                }
                for i in range(4000)
            ],
            rng,
        )
        lam = cohort.BASELINE_HAZARD_PER_MONTH * cohort.HAZARD_RATIO_PER_MM**mtm
        lo, hi = cohort.FOLLOW_UP_MONTHS  # P(T <= C), C ~ U(lo, hi)
        expected = 1 - (np.exp(-lam * lo) - np.exp(-lam * hi)) / (lam * (hi - lo))
        assert np.mean([r["ltp"] for r in rows]) == pytest.approx(expected, abs=0.025)
        sites = [r["recurrence_octant"] for r in rows if r["ltp"]]
        assert np.mean([s == "left-anterior-superior" for s in sites]) == pytest.approx(
            cohort.SITE_SAME_OCTANT, abs=0.05
        )


def test_stop_keeps_finished_cases_and_writes_no_table(cohort_dir, tmp_path, client):
    """Ctrl-C / the widget's Stop: KeyboardInterrupt, finished cases stored, no margins.csv;
    the rerun reuses them."""
    import threading

    stop = threading.Event()
    res = tmp_path / "res"
    cases = cohort.find_cases([cohort_dir])

    def progress(p):
        if p.computed >= 1:
            stop.set()

    with pytest.raises(KeyboardInterrupt):
        cohort.run_cohort(cases, res, client=client, progress=progress, stop=stop)
    stored = sorted(c.case for c in cases if cohort.load_case_result(res, c.case) is not None)
    assert len(stored) == 1  # Stop is checked before each finished case is taken
    assert not (res / "margins.csv").exists()
    again = cohort.run_cohort(cases, res, client=client)
    assert sorted(again.reused) == stored and len(again.computed) == len(cases) - len(stored)


def test_cli_counts_and_the_grid_rule_of_the_viewer(cohort_dir, tmp_path, capsys):
    """UAT s7 N5: a failed case is counted once (not as computed too), and a tumor that is
    not on its pre image's grid fails as it does when the case is opened in the viewer."""
    import shutil

    import pandas as pd

    root = tmp_path / "cases"
    shutil.copytree(cohort_dir, root)
    tumor_file = root / "centre_a" / "case02" / "tumor.nii.gz"
    cropped = sitk.ReadImage(str(tumor_file))[:, :, 1:]  # one slice less than pre.nii.gz
    sitk.WriteImage(cropped, str(tumor_file))
    (root / "centre_a" / "case03" / "ablation.nii.gz").write_bytes(b"not an image")
    # the viewer's rule, on the same files
    case02 = cohort.case_folder_inputs(root / "centre_a" / "case02")
    with pytest.raises(AblationError) as viewer_error:
        Case(pre=sitk.ReadImage(case02.pre), tumor=sitk.ReadImage(case02.tumor)).check_labels()
    assert str(viewer_error.value) == "tumor labels are not on the pre image grid"

    args = ["cohort", "run", "--cases", str(root), "--out", str(tmp_path / "res")]
    assert cli.main([*args, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 cases (2 computed, 0 unchanged, 2 failed): "), out
    table = pd.read_csv(tmp_path / "res" / "margins.csv", keep_default_na=False).set_index("case")
    assert table.loc["centre_a/case02", "error"] == str(viewer_error.value)
    assert table.loc["centre_a/case02", "min_margin_mm"] == ""
    assert table.loc["centre_a/case00", "error"] == ""
    # the same cases again: the failed ones are neither computed nor unchanged
    assert cli.main([*args, "--workers", "1"]) == 0
    assert capsys.readouterr().out.startswith("4 cases (0 computed, 2 unchanged, 2 failed): ")
