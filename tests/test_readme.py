"""The README's quick start names every system library Qt needs (issue 8, point 15)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_start_apt_line_lists_what_ci_installs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # the packages of .ci/run's apt-get install command (its continued lines up to the redirect)
    install = ci.split("apt-get install", 1)[1].split(">/dev/null", 1)[0]
    needed = set(re.findall(r"\b(lib[\w.-]+)", install))
    assert {"libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0"} <= needed
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    apt = [line for line in quick.splitlines() if line.startswith("sudo apt-get install")]
    assert len(apt) == 1  # one line to copy
    assert needed <= set(apt[0].split()), needed - set(apt[0].split())
