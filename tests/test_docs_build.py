"""The documentation's generated parts: the CLI reference and the screenshot rules.

The full build (``python -m sphinx -W -b html docs docs/_build/html``) runs in .ci/run;
these tests check the pieces that must never go stale or fail silently.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))

import napari_ablation_docs as ext
from sphinx.errors import ExtensionError

from napari_ablation.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "napari-ablation"):
    """Every (sub)command path of the parser, e.g. 'napari-ablation margin'."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


def test_cli_reference_has_the_help_of_every_subcommand():
    md = ext.cli_reference_markdown()
    commands = list(_commands(build_parser()))
    assert len(commands) >= 5
    for path, sub in commands:
        assert f"`{path}`" in md, path
        assert f"usage: {path}" in md, path
        for action in sub._actions:  # every option of the subcommand is documented
            for flag in action.option_strings:
                assert flag in md, (path, flag)
    # the options of margin as the contract names them
    margin = md[md.index("`napari-ablation margin`") :]
    for flag in ("--tumor", "--ablation", "--transform", "--threshold", "--json"):
        assert flag in margin


def test_without_display_or_xvfb_the_build_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(ext.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv(ext.ENV, raising=False)
    monkeypatch.setattr(ext.shutil, "which", lambda name: None)
    with pytest.raises(ExtensionError, match="Xvfb") as info:
        ext.make_screenshots()
    assert f"{ext.ENV}=reuse" in str(info.value)


def test_without_display_the_script_runs_under_xvfb(monkeypatch):
    monkeypatch.setattr(ext.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(ext.shutil, "which", lambda name: "/usr/bin/xvfb-run")
    cmd = ext._screenshot_command()
    assert cmd[:2] == ["/usr/bin/xvfb-run", "-a"]
    assert cmd[-2].endswith("make_screenshots.py")


def test_reuse_needs_every_earlier_screenshot(monkeypatch, tmp_path):
    monkeypatch.setattr(ext, "SCREENSHOTS", tmp_path)
    monkeypatch.setenv(ext.ENV, "reuse")
    with pytest.raises(ExtensionError, match=r"load\.png"):
        ext.make_screenshots()
    for name in ext.EXPECTED:
        (tmp_path / name).write_bytes(b"\x89PNG")
    ext.make_screenshots()  # all there: nothing to take
    monkeypatch.setenv(ext.ENV, "sometimes")
    with pytest.raises(ExtensionError, match="'make'"):
        ext.make_screenshots()
