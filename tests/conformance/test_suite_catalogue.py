"""The suite against the catalogue: every automated requirement has a test, every test names
real requirements. Read from the suite's source (its markers), without running it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from types import ModuleType

import pytest

import conformance.suite
from spec import Spec


def _modules() -> Iterator[ModuleType]:
    for info in pkgutil.iter_modules(conformance.suite.__path__):
        if info.name.startswith("test_"):
            yield importlib.import_module(f"conformance.suite.{info.name}")


def _tests() -> Iterator[tuple[str, set[str]]]:
    """(test name, requirement ids) for every test function of the suite."""
    for module in _modules():
        module_ids = _ids(getattr(module, "pytestmark", []))
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_") and function.__module__ == module.__name__:
                marks = getattr(function, "pytestmark", [])
                yield f"{module.__name__}.{name}", module_ids | _ids(marks)


def _ids(marks: object) -> set[str]:
    """Ids of requirement marks, and of those on each `pytest.param(..., marks=...)`."""
    listed = marks if isinstance(marks, list) else [marks]
    ids = {i for mark in listed if getattr(mark, "name", "") == "requirement" for i in mark.args}
    for mark in listed:
        if getattr(mark, "name", "") == "parametrize" and len(mark.args) > 1:
            for case in mark.args[1]:
                ids |= _ids(list(getattr(case, "marks", ())))
    return ids


def test_every_suite_test_names_known_requirements(shipped: Spec) -> None:
    known = {r["id"] for r in shipped.requirements}
    for name, ids in _tests():
        assert ids, f"{name} verifies no requirement"
        assert ids <= known, f"{name} names unknown ids {sorted(ids - known)}"


def test_every_automated_requirement_has_a_test(shipped: Spec) -> None:
    """Performance requirements are measured by load runs (loadtests/), the others by tests."""
    tested = {i for _, ids in _tests() for i in ids}
    automated = {r["id"] for r in shipped.requirements
                 if r["test"]["method"] == "automated" and r["class"] != "perf"}  # fmt: skip
    assert sorted(automated - tested) == []


@pytest.mark.parametrize("requirement", ["slo"])
def test_every_performance_requirement_states_its_slo(shipped: Spec, requirement: str) -> None:
    perf = [r for r in shipped.requirements if r["class"] == "perf"]
    assert perf and all(requirement in r for r in perf)
