"""The certification rule evaluated on made-up outcomes: each rule of certification.yaml that
decides something is shown to decide it, so a verdict is never silently wrong."""

from __future__ import annotations

import pytest

from conformance.certification import Certification, TestOutcome, evaluate
from spec import Spec


def _passing(spec: Spec, role: str, options: list[str]) -> dict[str, list[TestOutcome]]:
    """Every applicable automated requirement passed by one test."""
    probe = evaluate(spec, role, options, {})
    return {
        r.id: [TestOutcome(f"t::{r.id}", "passed")]
        for r in probe.requirements
        if r.verdict != "not_applicable" and r.method == "automated"
    }


def _verdict(result: Certification, requirement_id: str) -> str:
    return next(r.verdict for r in result.requirements if r.id == requirement_id)


def _class(result: Certification, klass: str) -> str:
    return next(c.verdict for c in result.classes if c.klass == klass)


@pytest.mark.parametrize(("role", "options"), [("national", ["selection"]), ("regional", []),
                                               ("industry", ["scheduling"])])  # fmt: skip
def test_every_applicable_test_passing_certifies(
    shipped: Spec, role: str, options: list[str]
) -> None:
    result = evaluate(shipped, role, options, _passing(shipped, role, options))
    assert (result.outcome, result.exit_code, result.rule) == ("certified", 0, "overall.certified")


def test_no_result_is_untested_and_never_certifies(shipped: Spec) -> None:
    result = evaluate(shipped, "regional", [], {})
    assert result.outcome == "not_certified"
    assert _verdict(result, "CPIN-CORE-001") == "untested"
    assert _class(result, "core") == "untested"


def test_a_failed_must_fails_its_class_and_the_run(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    results["CPIN-ID-009"] = [TestOutcome("t::x", "failed", message="revoked id answered 200")]
    result = evaluate(shipped, "regional", [], results)
    assert _verdict(result, "CPIN-ID-009") == "fail"
    assert _class(result, "identification") == "fail"
    assert (result.outcome, result.exit_code) == ("not_certified", 1)


def test_a_failed_should_warns_and_still_certifies(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    results["CPIN-CORE-030"] = [TestOutcome("t::x", "failed")]
    result = evaluate(shipped, "regional", [], results)
    assert _verdict(result, "CPIN-CORE-030") == "warn"
    assert _class(result, "core") == "warn"
    assert result.outcome == "certified"


def test_failure_outranks_error_and_skip(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    results["CPIN-CORE-001"] = [
        TestOutcome("a", "error"), TestOutcome("b", "skipped"), TestOutcome("c", "failed")
    ]  # fmt: skip
    assert _verdict(evaluate(shipped, "regional", [], results), "CPIN-CORE-001") == "fail"


def test_an_error_without_failure_makes_the_run_incomplete(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    results["CPIN-CORE-001"] = [TestOutcome("a", "passed"), TestOutcome("b", "error")]
    result = evaluate(shipped, "regional", [], results)
    assert _verdict(result, "CPIN-CORE-001") == "error"
    assert (result.outcome, result.exit_code) == ("incomplete", 3)


def test_a_skipped_must_never_counts_as_pass(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    results["CPIN-SEC-011"] = [TestOutcome("a", "skipped", message="no limited client")]
    result = evaluate(shipped, "regional", [], results)
    assert _verdict(result, "CPIN-SEC-011") == "skipped"
    assert _class(result, "security") == "skipped"
    assert result.outcome == "not_certified"


def test_a_class_whose_tests_all_skipped_does_not_pass(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    for requirement in [r for r in results if r.startswith("CPIN-SEL-")]:
        results[requirement] = [TestOutcome("a", "skipped")]
    result = evaluate(shipped, "regional", [], results)
    assert _class(result, "selection") == "skipped"
    assert result.outcome == "not_certified"


def test_an_aborted_run_is_incomplete_unless_a_failure_is_established(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    assert evaluate(shipped, "regional", [], results, run_aborted=True).outcome == "incomplete"
    results["CPIN-CORE-001"] = [TestOutcome("a", "failed")]
    assert evaluate(shipped, "regional", [], results, run_aborted=True).outcome == "not_certified"


def test_requirements_of_other_roles_are_not_applicable_with_the_reason(shipped: Spec) -> None:
    result = evaluate(shipped, "regional", [], {})
    registry = next(r for r in result.requirements if r.klass == "node-registry")
    assert registry.verdict == "not_applicable"
    assert registry.reason is not None and "regional" in registry.reason["en"]
    assert next(c for c in result.classes if c.klass == "node-registry").must_pass is False


def test_an_optional_class_counts_only_when_declared(shipped: Spec) -> None:
    undeclared = evaluate(shipped, "industry", [], _passing(shipped, "industry", []))
    assert _class(undeclared, "scheduling") == "not_applicable"
    assert undeclared.outcome == "certified"
    declared = evaluate(shipped, "industry", ["scheduling"], _passing(shipped, "industry", []))
    assert _class(declared, "scheduling") == "untested"
    assert declared.outcome == "not_certified"


def test_attestation_requirements_are_untested_and_shown_not_counted(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    result = evaluate(shipped, "regional", [], results, attested=["CPIN-CORE-034"])
    assert _verdict(result, "CPIN-CORE-034") == "untested"
    assert result.outcome == "certified"


def test_an_unknown_test_outcome_is_a_harness_error(shipped: Spec) -> None:
    results = _passing(shipped, "regional", [])
    results["CPIN-CORE-001"] = [TestOutcome("a", "xpassed")]
    result = evaluate(shipped, "regional", [], results)
    rule = next(r.rule for r in result.requirements if r.id == "CPIN-CORE-001")
    assert (_verdict(result, "CPIN-CORE-001"), rule) == ("error", "requirement.unrecognised")
