"""The metadata the package index and the napari hub show (issue 13, point 5).

The hub and the index show README.md without the repository beside it, so the long
description's links must be absolute; pyproject.toml's fancy-pypi-readme substitutions
make them so. These tests apply those substitutions to the README as the build does and
check that no relative link is left and that every picture and page linked into the
repository exists in it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def _long_description() -> str:
    hook = _pyproject()["tool"]["hatch"]["metadata"]["hooks"]["fancy-pypi-readme"]
    text = "".join((ROOT / f["path"]).read_text(encoding="utf-8") for f in hook["fragments"])
    for sub in hook["substitutions"]:
        text = re.sub(sub["pattern"], sub["replacement"], text)
    return text


def test_long_description_has_only_absolute_links():
    links = LINK.findall(_long_description())
    assert len(links) > 10
    relative = [u for u in links if not u.startswith(("https://", "http://", "#"))]
    assert relative == []


def test_links_into_the_repository_name_files_that_exist():
    source = _pyproject()["project"]["urls"]["Source Code"].rstrip("/")
    owner_repo = source.removeprefix("https://github.com/")
    prefixes = (
        f"https://raw.githubusercontent.com/{owner_repo}/main/",
        f"{source}/blob/main/",
    )
    checked = 0
    for url in LINK.findall(_long_description()):
        for prefix in prefixes:
            if url.startswith(prefix):
                path = url[len(prefix) :].split("#", 1)[0]
                assert (ROOT / path).is_file(), f"the README links {path}, which does not exist"
                checked += 1
    assert checked >= 10  # the pictures of the workflow, teaching and cohort sections


def test_classifiers_match_the_rest_of_the_metadata():
    project = _pyproject()["project"]
    classifiers = project["classifiers"]
    assert "Framework :: napari" in classifiers
    assert "readme" in project["dynamic"]
    lowest = project["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {lowest}" in classifiers
    assert project["license"]["text"] == "BSD-3-Clause"
    assert "License :: OSI Approved :: BSD License" in classifiers
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
