"""Which suite test verifies which requirement, read from the markers without running pytest.

Used where a run is narrowed to the tests that bear on some requirements (`cpin selftest`
certifies a faulty node with the tests of the requirements the fault breaks), and by the
project's own check that every automated requirement has a test.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any

import conformance.suite

__all__ = ["modules_for", "suite_tests"]


def suite_tests() -> Iterator[tuple[str, str, set[str]]]:
    """(module stem, test name, requirement ids) for every test function of the suite."""
    for info in pkgutil.iter_modules(conformance.suite.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"conformance.suite.{info.name}")
        module_ids = _ids(getattr(module, "pytestmark", []))
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_") and function.__module__ == module.__name__:
                yield info.name, name, module_ids | _ids(getattr(function, "pytestmark", []))


def modules_for(requirement_ids: set[str]) -> set[str]:
    """The suite modules holding a test of any of these requirements."""
    return {stem for stem, _, ids in suite_tests() if ids & requirement_ids}


def _ids(marks: object) -> set[str]:
    """Ids of requirement marks, and of those on each `pytest.param(..., marks=...)`."""
    listed: list[Any] = marks if isinstance(marks, list) else [marks]
    ids = {i for mark in listed if getattr(mark, "name", "") == "requirement" for i in mark.args}
    for mark in listed:
        if getattr(mark, "name", "") == "parametrize" and len(mark.args) > 1:
            for case in mark.args[1]:
                ids |= _ids(list(getattr(case, "marks", ())))
    return ids
