"""Regenerate the bundled synthetic sample cases in place.

    python sample_data/make_samples.py [OUT_DIR]

(the same as ``napari-ablation samples [--out DIR]``). The cases are deterministic: running
this again rewrites identical voxels.
"""

import sys
from pathlib import Path

from napari_ablation.core import samples

if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for folder in samples.write_all(out):
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        print(f"{folder}  ({size:.1f} MB)")
