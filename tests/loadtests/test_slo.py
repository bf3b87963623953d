"""SLO verdicts from windows built by hand: thresholds from spec/, levels from the
certification rule, scopes from mix.yaml, outcomes for the certification report."""

from __future__ import annotations

from typing import Any

import pytest

from loadtests.mix import Plan
from loadtests.slo import Sample, Window, judge, measure, percentile, perf_outcomes
from spec import Spec


def plan(spec: Spec, role: str = "regional") -> Plan:
    return Plan.of(spec, role, [])


def window(*samples: Sample, seconds: float = 10.0) -> Window:
    return Window(seconds, 10, samples)


def fast(operation: str, request_type: str = "GET", ms: int = 5, n: int = 100) -> Sample:
    return Sample(operation, request_type, n, 0, {ms: n})


def by_id(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["requirement"]: r for r in results}


def test_percentile_is_locusts_bucket_rule() -> None:
    histogram = {10: 90, 100: 9, 900: 1}
    assert percentile(histogram, 0.5) == 10
    assert percentile(histogram, 0.95) == 100
    assert percentile(histogram, 0.98) == 100
    assert percentile(histogram, 0.99) == 900  # one request in 100 is slower: p99 is that one
    assert percentile({}, 0.99) == 0


def test_metrics_of_a_window() -> None:
    measured = window(Sample("getHealth", "GET", 10, 2, {5: 10}), fast("listResources", n=90))
    assert measure(measured, "*", "error_ratio") == pytest.approx(0.02)
    assert measure(measured, "*", "rps") == pytest.approx(9.8)  # successful requests only
    assert measure(measured, "issueToken", "p99_ms") is None


def test_thresholds_and_levels_come_from_the_spec(shipped: Spec) -> None:
    slow = Sample("getHealth", "GET", 100, 0, {5: 90, 500: 10})  # CPIN-PERF-011 (SHOULD)
    results = by_id(
        judge(
            plan(shipped),
            "standard",
            window(slow, fast("resolveIdentifier"), fast("listResources")),
            None,
        )
    )
    assert results["CPIN-PERF-011"]["verdict"] == "warn"
    requirement = shipped.requirement("CPIN-PERF-011")
    assert requirement is not None
    assert results["CPIN-PERF-011"]["threshold"] == requirement["slo"]["threshold"]
    assert results["CPIN-PERF-001"]["verdict"] == "pass"
    assert results["CPIN-PERF-010"]["verdict"] == "error"  # no issueToken request was sent
    slow_resolution = Sample("resolveIdentifier", "GET", 100, 0, {5: 90, 900: 10})
    results = by_id(judge(plan(shipped), "standard", window(slow_resolution), None))
    assert results["CPIN-PERF-001"]["verdict"] == "fail"  # a MUST


def test_scoped_requirements_measure_their_own_records(shipped: Spec) -> None:
    """CPIN-PERF-001 on identifiers the node issued, CPIN-PERF-003 on other nodes' ones."""
    own, foreign = fast("resolveIdentifier", ms=5), fast("resolveIdentifier", "GET foreign", 450)
    results = by_id(judge(plan(shipped), "standard", window(own, foreign), None))
    assert results["CPIN-PERF-001"]["measured"] == 5
    assert results["CPIN-PERF-003"]["measured"] == 450
    assert results["CPIN-PERF-003"]["verdict"] == "pass"


def test_declared_thresholds_need_a_declared_capacity(shipped: Spec) -> None:
    measured = window(fast("resolveIdentifier", n=200), seconds=10.0)  # 20 rps
    assert "CPIN-PERF-013" not in by_id(judge(plan(shipped), "standard", measured, None))
    held = by_id(judge(plan(shipped), "standard", measured, {"rps": 15, "users": 20}))
    assert (held["CPIN-PERF-013"]["threshold"], held["CPIN-PERF-013"]["verdict"]) == (15, "pass")
    short = by_id(judge(plan(shipped), "standard", measured, {"rps": 25, "users": 20}))
    assert short["CPIN-PERF-013"]["verdict"] == "fail"


def test_scenarios_and_roles_select_their_requirements(shipped: Spec) -> None:
    regional = {r["id"] for r in plan(shipped).requirements("standard")}
    assert "CPIN-PERF-014" not in regional
    assert {r["id"] for r in plan(shipped).requirements("overload")} == {"CPIN-PERF-014"}
    industry = {r["id"] for r in plan(shipped, "industry").requirements("standard")}
    assert "CPIN-PERF-009" not in industry  # pushMetrics binds national and regional only
    national = {r["id"] for r in plan(shipped, "national").requirements("standard")}
    assert "CPIN-PERF-006" not in national  # selection is an option the ICS did not declare


def test_perf_outcomes_map_each_slo_result(shipped: Spec) -> None:
    slow = Sample("getHealth", "GET", 100, 0, {500: 100})
    results = judge(plan(shipped), "standard", window(slow, fast("resolveIdentifier")), None)
    run = {"scenario": "standard", "users": 10, "durationS": 10.0, "sloResults": results}
    outcomes = perf_outcomes({"runs": [run]})
    node_id, outcome, message = outcomes["CPIN-PERF-011"][0]
    assert (node_id, outcome) == ("load::standard::CPIN-PERF-011", "failed")
    assert "getHealth" in message and "500" in message
    assert outcomes["CPIN-PERF-001"][0][1] == "passed"
    assert outcomes["CPIN-PERF-010"][0][1] == "error"
    assert "CPIN-PERF-013" not in outcomes
