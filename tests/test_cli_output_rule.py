"""One rule for every CLI output option, and one range for the margin threshold (UAT s7 N11).

* An output file's name ends in a suffix its format is read back from, and its folder
  exists; an output folder may be new, but the folder holding it exists. A refusal is one
  line, exit 2, before any input is read, and creates nothing (``margin --json
  /nonexistent/dir/x.json`` used to create the whole folder tree; ``interpolate --out
  d.json`` ran the interpolation first).
* ``register --out x.txt`` writes an ITK text transform that SimpleITK and the plugin read
  back; ``.h5`` / ``.mat`` (binary formats the text writer cannot produce) are refused.
* The threshold lies in ``[0, 30]`` mm everywhere: CLI (margin, cohort run/stats, quiz
  make), ``case.json``, ``quiz.json`` (``--threshold 1e9`` was accepted).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import coverage
from napari_ablation.core import transform as tfm
from napari_ablation.core.case import CASE_FILE, Case
from napari_ablation.core.errors import AblationError
from napari_ablation.core.quiz import QUIZ_FILE, Quiz


def _labels(path, box, shape=(12, 20, 20), spacing=(1.2, 1.2, 3.0)):
    arr = np.zeros(shape, np.uint8)
    arr[box] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))
    return str(path)


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    f = {
        "tumor": _labels(d / "tumor.nii.gz", np.s_[4:8, 8:12, 8:12]),
        "ablation": _labels(d / "ablation.nii.gz", np.s_[2:10, 4:16, 4:16]),
        "sparse": _labels(d / "sparse.nii.gz", np.s_[3:9:5, 6:14, 6:14]),
    }
    (d / "f.csv").write_text("label,x,y,z\n1,0,0,0\n2,10,0,0\n3,0,10,0\n4,0,0,10\n")
    f["points"] = str(d / "f.csv")
    return f


def _commands(f, missing):
    """Every output option: (argv with OUT where the output goes, its kind)."""
    margin = ["margin", "--tumor", f["tumor"], "--ablation", f["ablation"]]
    pts = ["--fixed-points", f["points"], "--moving-points", f["points"]]
    return {
        "margin --json": ([*margin, "--json", "OUT"], ".json"),
        "margin --csv": ([*margin, "--csv", "OUT"], ".csv"),
        "margin --html": ([*margin, "--html", "OUT"], ".html"),
        "margin --pdf": ([*margin, "--pdf", "OUT"], ".pdf"),
        "margin --margin-labels": ([*margin, "--margin-labels", "OUT"], ".nii.gz"),
        "register --out": (["register", *pts, "--out", "OUT"], ".tfm"),
        "interpolate --out": (["interpolate", "--labels", f["sparse"], "--out", "OUT"], ".nii.gz"),
        "demo --screenshot": (["demo", "--screenshot", "OUT"], ".png"),
        "samples --out": (["samples", "--out", "OUT"], None),
        "cohort synth --out": (["cohort", "synth", "--n", "1", "--out", "OUT"], None),
        "cohort run --out": (["cohort", "run", "--cases", missing, "--out", "OUT"], None),
        "cohort stats --out": (
            ["cohort", "stats", "--results", missing, "--outcomes", missing, "--out", "OUT"],
            None,
        ),
        "quiz make --out": (
            ["quiz", "make", "--synthetic", "1", "--key", missing + ".json", "--out", "OUT"],
            None,
        ),
        "quiz make --key": (
            ["quiz", "make", "--synthetic", "1", "--out", missing, "--key", "OUT"],
            ".json",
        ),
        "quiz score --json": (
            ["quiz", "score", "--quiz", missing, "--key", missing, "--answers", missing]
            + ["--json", "OUT"],
            ".json",
        ),
        "quiz export --out": (["quiz", "export", "--quiz", missing, "--out", "OUT"], None),
    }


#: the cases by name (the paths do not matter for the names and kinds)
_CASES = _commands(dict.fromkeys(("tumor", "ablation", "sparse", "points"), "x"), "m")
ALL = sorted(_CASES)
WITH_SUFFIX = sorted(c for c, (_argv, suffix) in _CASES.items() if suffix)


def _main(argv, capfd):
    rc = cli.main(argv)
    out, err = capfd.readouterr()
    return rc, out, err.strip()


def _output_options(parser=None, prefix=()):
    """(command words, option) of every parser option whose type is the output rule."""
    import argparse

    parser = parser or cli.build_parser()
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _output_options(sub, (*prefix, name))
        elif action.type is cli._output_folder or getattr(action.type, "__name__", "").endswith(
            "output file"
        ):
            found.add(" ".join((*prefix, action.option_strings[0])))
    return found


def test_every_output_option_follows_the_rule(inputs, tmp_path):
    """The table below lists every option that names an output, and each one is typed
    by the rule (a new output option without it fails here)."""
    table = set(_commands(inputs, str(tmp_path / "missing")))
    assert _output_options() == table


@pytest.mark.parametrize("case", ALL)
def test_an_output_in_a_missing_folder_is_refused_before_any_work(inputs, tmp_path, case, capfd):
    argv, suffix = _commands(inputs, str(tmp_path / "missing"))[case]
    target = tmp_path / "nonexistent" / "dir" / ("x" + (suffix or ""))
    rc, out, err = _main([str(target) if a == "OUT" else a for a in argv], capfd)
    assert rc == cli.EXIT_BAD_INPUT, (case, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    option = case.split()[-1]
    assert f"argument {option}" in err and "does not exist" in err, err
    assert not (tmp_path / "nonexistent").exists()  # no folder tree made
    assert out == ""


@pytest.mark.parametrize("case", WITH_SUFFIX)
def test_an_output_with_a_wrong_suffix_is_refused_before_any_work(inputs, tmp_path, case, capfd):
    argv, suffix = _commands(inputs, str(tmp_path / "missing"))[case]
    target = tmp_path / ("x.docx" if suffix != ".json" else "x.csv")
    rc, out, err = _main([str(target) if a == "OUT" else a for a in argv], capfd)
    assert rc == cli.EXIT_BAD_INPUT, (case, err)
    assert len(err.splitlines()) == 1 and "must end in" in err and suffix in err, err
    assert f"argument {case.split()[-1]}" in err
    assert not target.exists() and out == ""


@pytest.mark.parametrize("name", ["d.json", "d.NII.GZ"])
def test_interpolate_with_an_unreadable_output_is_refused_before_the_interpolation(
    inputs, tmp_path, name, capfd
):
    rc, out, err = _main(
        ["interpolate", "--labels", inputs["sparse"], "--out", str(tmp_path / name)], capfd
    )
    assert rc == 2 and "argument --out" in err and ".nii.gz" in err, err
    assert "interpolated" not in out and not (tmp_path / name).exists()


@pytest.mark.parametrize("suffix", [".tfm", ".txt"])
def test_register_writes_a_transform_that_reads_back(inputs, tmp_path, suffix, capfd):
    out = tmp_path / f"T{suffix}"
    pts = ["--fixed-points", inputs["points"], "--moving-points", inputs["points"]]
    rc, _out, err = _main(["register", *pts, "--out", str(out)], capfd)
    assert rc == 0, err
    back = sitk.ReadTransform(str(out))  # SimpleITK's own reader
    assert np.allclose(back.GetParameters()[:6], 0.0, atol=1e-6)
    assert np.allclose(tfm.read_rigid_transform(out).GetParameters()[:6], 0.0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".h5", ".mat", ".json", ".tfm.bak", ".TFM"])
def test_register_refuses_what_its_text_writer_cannot_be_read_back_from(
    inputs, tmp_path, suffix, capfd
):
    out = tmp_path / f"T{suffix}"
    pts = ["--fixed-points", inputs["points"], "--moving-points", inputs["points"]]
    rc, _out, err = _main(["register", *pts, "--out", str(out)], capfd)
    assert rc == 2 and ".tfm or .txt" in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert ("lower case" in err) == (suffix == ".TFM")


def test_an_output_folder_may_be_new_inside_an_existing_folder(tmp_path, capfd):
    rc, _out, err = _main(["cohort", "synth", "--n", "1", "--out", str(tmp_path / "new")], capfd)
    assert rc == 0, err
    assert (tmp_path / "new" / "outcomes.csv").is_file()


def test_an_output_under_a_file_is_refused(inputs, tmp_path, capfd):
    margin = ["margin", "--tumor", inputs["tumor"], "--ablation", inputs["ablation"]]
    rc, _out, err = _main([*margin, "--json", inputs["tumor"] + "/x.json"], capfd)
    assert rc == 2 and "is not a folder" in err and len(err.splitlines()) == 1, err


# ----------------------------------------------------------------------------- threshold


@pytest.mark.parametrize("value", ["1e9", "30.5", "31"])
def test_cli_refuses_a_threshold_beyond_30_mm_everywhere(inputs, tmp_path, value, capfd):
    margin = ["margin", "--tumor", inputs["tumor"], "--ablation", inputs["ablation"]]
    calls = [
        [*margin, "--threshold", value, "--json", str(tmp_path / "m.json")],
        ["cohort", "run", "--cases", str(tmp_path), "--out", str(tmp_path / "R")]
        + ["--threshold", value],
        ["cohort", "stats", "--results", inputs["points"], "--outcomes", inputs["points"]]
        + ["--out", str(tmp_path / "S"), "--threshold", value],
        ["quiz", "make", "--synthetic", "1", "--out", str(tmp_path / "Q")]
        + ["--key", str(tmp_path / "k.json"), "--threshold", value],
    ]
    for argv in calls:
        rc, out, err = _main(argv, capfd)
        assert rc == cli.EXIT_BAD_INPUT, (argv, err)
        assert len(err.splitlines()) == 1 and "at most 30" in err and value in err, err
        assert "green" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_threshold_30_is_the_largest_accepted(inputs, tmp_path, capfd):
    out = tmp_path / "m.json"
    margin = ["margin", "--tumor", inputs["tumor"], "--ablation", inputs["ablation"]]
    rc, _o, err = _main([*margin, "--threshold", "30", "--json", str(out)], capfd)
    assert rc == 0, err
    assert json.loads(out.read_text(encoding="utf-8"))["threshold_mm"] == 30.0
    assert coverage.check_threshold(coverage.THRESHOLD_MAX_MM) == 30.0
    with pytest.raises(AblationError, match="at most 30"):
        coverage.check_threshold(30.01)


def test_case_json_and_quiz_json_refuse_a_threshold_beyond_the_range(tmp_path):
    pre = sitk.Image(8, 8, 4, sitk.sitkInt16)
    folder = Case(pre=pre, post=pre, settings={"threshold_mm": 3.0}).save(tmp_path / "c")
    doc = json.loads((folder / CASE_FILE).read_text(encoding="utf-8"))
    doc["settings"]["threshold_mm"] = 1e9
    (folder / CASE_FILE).write_text(json.dumps(doc))
    with pytest.raises(AblationError, match=r"settings\.threshold_mm.*at most 30"):
        Case.load(folder)

    from napari_ablation.core import quiz

    made = quiz.make_quiz(tmp_path / "q", tmp_path / "k.json", n_synthetic=1, small=True)
    assert Quiz.load(made.folder).threshold_mm == 5.0
    qdoc = json.loads((made.folder / QUIZ_FILE).read_text(encoding="utf-8"))
    qdoc["threshold_mm"] = 1e9
    (made.folder / QUIZ_FILE).write_text(json.dumps(qdoc))
    with pytest.raises(AblationError, match=r"threshold_mm must be .*at most 30"):
        Quiz.load(made.folder)
