"""UAT s10 N8: a `cohort synth` case folder carries the name `cohort run` gives it."""

import json

from napari_ablation import cli
from napari_ablation.core.case import Case
from napari_ablation.core.cohort import find_cases


def test_cohort_synth_cases_are_named_after_their_folder(tmp_path, capsys):
    out = tmp_path / "synth"
    assert cli.main(["cohort", "synth", "--n", "2", "--seed", "3", "--out", str(out)]) == 0
    capsys.readouterr()
    ids = [c.case for c in find_cases([out])]
    assert ids == ["case_001", "case_002"]
    for cid in ids:
        # the name the GUI shows (Load status, reports) is the case's own name
        assert Case.load(out / cid).info["name"] == cid
        assert json.loads((out / cid / "case.json").read_text("utf-8"))["info"]["name"] == cid
