"""Validate the numpydoc docstrings of the public API of some core modules.

Usage: python .ci/check_docstrings.py MODULE...   (e.g. napari_ablation.core.case)

The public API of a module is what ``import`` reaches and the API reference documents:
the functions and classes the module defines whose names do not start with ``_``, and
the public methods and properties of those classes (nested helper functions and private
names are not API). Each docstring goes through numpydoc's own validator
(``numpydoc.validate.validate``) with the checks chosen in ``pyproject.toml``
(``[tool.numpydoc_validation]``, the configuration ``python -m numpydoc lint`` reads).
Prints one line per finding and exits non-zero if there is any.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

from numpydoc.hooks.validate_docstrings import parse_config
from numpydoc.validate import validate

ROOT = Path(__file__).resolve().parent.parent


def public_names(module_name: str) -> list[str]:
    """Dotted names of the public functions, classes and class members of a module."""
    module = importlib.import_module(module_name)
    names = [module_name]
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isfunction(obj):
            names.append(f"{module_name}.{name}")
        elif inspect.isclass(obj):
            names.append(f"{module_name}.{name}")
            for member, value in vars(obj).items():
                if member.startswith("_"):
                    continue
                if isinstance(value, classmethod | staticmethod):
                    value = value.__func__
                if inspect.isfunction(value) or isinstance(value, property):
                    names.append(f"{module_name}.{name}.{member}")
    return names


def main(modules: list[str]) -> int:
    config = parse_config(ROOT)
    findings = 0
    for module_name in modules:
        for name in public_names(module_name):
            if config["exclude"] and config["exclude"].search(name):
                continue
            report = validate(name)
            for code, message in report["errors"]:
                if code in config["checks"]:
                    findings += 1
                    print(f"{report['file']}:{report['file_line']}: {name}: {code} {message}")
    return 1 if findings else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: check_docstrings.py MODULE...")
    sys.exit(main(sys.argv[1:]))
