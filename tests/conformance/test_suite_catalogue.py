"""The suite against the catalogue: every automated requirement has a test, every test names
real requirements. Read from the suite's markers (conformance.suite_index), without running it."""

from __future__ import annotations

from conformance.suite_index import modules_for, suite_tests
from spec import Spec


def test_every_suite_test_names_known_requirements(shipped: Spec) -> None:
    known = {r["id"] for r in shipped.requirements}
    for module, name, ids in suite_tests():
        assert ids, f"{module}.{name} verifies no requirement"
        assert ids <= known, f"{module}.{name} names unknown ids {sorted(ids - known)}"


def test_every_automated_requirement_has_a_test(shipped: Spec) -> None:
    """Performance requirements are measured by load runs (loadtests/), the others by tests."""
    tested = {i for _, _, ids in suite_tests() for i in ids}
    automated = {r["id"] for r in shipped.requirements
                 if r["test"]["method"] == "automated" and r["class"] != "perf"}  # fmt: skip
    assert sorted(automated - tested) == []


def test_every_performance_requirement_states_its_slo(shipped: Spec) -> None:
    perf = [r for r in shipped.requirements if r["class"] == "perf"]
    assert perf and all("slo" in r for r in perf)


def test_the_modules_of_a_requirement_are_found() -> None:
    assert "test_fuzzing" in modules_for({"CPIN-CORE-026"})
    assert modules_for({"CPIN-NONE-000"}) == set()
