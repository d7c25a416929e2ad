"""Regenerate the bundled teaching quiz in place (sample_data/quiz).

    python sample_data/make_quiz.py [OUT_DIR]

Eight small synthetic cases (renal cryoablation MRI and liver microwave CT, alternating;
complete with margin, insufficient margin and incomplete coverage in turn; the minimal
margin in every octant), with the answer key inside (self-study). Deterministic: the
same seeds give the same cases. Teachers make their own with ``napari-ablation quiz make``.
"""

import sys
from pathlib import Path

from napari_ablation.core import quiz

if __name__ == "__main__":
    out = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parent / quiz.BUNDLED_QUIZ_NAME
    )
    made = quiz.write_bundled_quiz(out, progress=lambda i, n: print(f"case {i}/{n}", flush=True))
    size = sum(p.stat().st_size for p in made.folder.rglob("*") if p.is_file()) / 1e6
    print(f"{made.folder}  ({len(made.case_ids)} cases, {size:.1f} MB)")
