"""SLO verdicts: the `slo` of each PERF requirement applied to what a load run measured.

A window is what locust counted per stats entry between two instants: requests, failures and
the response-time histogram. Entries are named by operationId; the request type carries the
scope (`GET foreign` for a request about a record another node issued), so an SLO that mix.yaml
narrows to own or foreign records is measured on those alone. Percentiles are computed from
the histogram the way locust computes them, so perf.json and locust's own report agree.

No locust here: the locust processes, `cpin load` and the certification report all judge with
these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from loadtests.mix import Plan, mix

__all__ = ["FOREIGN", "Sample", "Window", "judge", "measure", "perf_outcomes", "request_type"]

FOREIGN = "foreign"
_PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}
_OUTCOMES = {"pass": "passed", "fail": "failed", "warn": "failed", "error": "error"}


def request_type(method: str, foreign: bool) -> str:
    """The locust request type of a request: its method, plus the scope when foreign."""
    return f"{method} {FOREIGN}" if foreign else method


@dataclass(frozen=True)
class Sample:
    """One stats entry (operation x request type) over a window."""

    operation: str
    request_type: str
    requests: int
    failures: int
    histogram: dict[int, int] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return FOREIGN if self.request_type.endswith(f" {FOREIGN}") else "own"

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "requestType": self.request_type,
            "requests": self.requests,
            "failures": self.failures,
            "histogram": {str(ms): count for ms, count in sorted(self.histogram.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        histogram = {int(ms): int(count) for ms, count in data["histogram"].items()}
        return cls(data["operation"], data["requestType"], data["requests"], data["failures"],
                   histogram)  # fmt: skip


@dataclass(frozen=True)
class Window:
    """What a run measured over `seconds` of steady load at `users` simulated clients."""

    seconds: float
    users: int
    samples: tuple[Sample, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "users": self.users,
            "samples": [s.to_json() for s in self.samples],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        samples = tuple(Sample.from_json(s) for s in data["samples"])
        return cls(float(data["seconds"]), int(data["users"]), samples)

    def totals(self, operation: str = "*", scope: str | None = None) -> Sample:
        """The samples of one operation (or all, `*`), of one scope (or both), merged."""
        chosen = [
            s for s in self.samples if operation in ("*", s.operation) and scope in (None, s.scope)
        ]
        histogram: dict[int, int] = {}
        for sample in chosen:
            for ms, count in sample.histogram.items():
                histogram[ms] = histogram.get(ms, 0) + count
        return Sample(operation, "*", sum(s.requests for s in chosen),
                      sum(s.failures for s in chosen), histogram)  # fmt: skip


def percentile(histogram: dict[int, int], fraction: float) -> float:
    """locust's percentile over a bucketed histogram (stats.calculate_response_time_percentile):
    the smallest bucket at or below which `fraction` of the requests fall."""
    total = sum(histogram.values())
    allowed_above = total - int(total * fraction)
    seen = 0
    for ms in sorted(histogram, reverse=True):
        seen += histogram[ms]
        if seen >= allowed_above:
            return float(ms)
    return 0.0


def measure(window: Window, operation: str, metric: str, scope: str | None = None) -> float | None:
    """The metric (catalogue `slo.metric` code) of an operation over the window, or None when
    the window holds no request of it."""
    sample = window.totals(operation, scope)
    if sample.requests == 0:
        return None
    if metric in _PERCENTILES:
        return percentile(sample.histogram, _PERCENTILES[metric])
    if metric == "error_ratio":
        return sample.failures / sample.requests
    if metric == "rps":
        return (sample.requests - sample.failures) / window.seconds if window.seconds else 0.0
    raise ValueError(f"unknown SLO metric {metric!r}")


def judge(
    plan: Plan,
    scenario: str,
    window: Window,
    capacity: dict[str, Any] | None,
    min_samples: int = 1,
) -> list[dict[str, Any]]:
    """One SloResult (report.json#/$defs/SloResult) per requirement the scenario judges. A
    `declared` threshold takes the ICS capacity's figure of the same metric; without one, the
    requirement gets no result. An operation the window saw fewer than `min_samples` times is
    an `error`: not measured."""
    scopes = mix()["scopes"]
    results = []
    for requirement in plan.requirements(scenario):
        slo = requirement["slo"]
        threshold = slo["threshold"]
        if threshold == "declared":
            if capacity is None or slo["metric"] not in capacity:
                continue
            threshold = capacity[slo["metric"]]
        scope = scopes.get(requirement["id"])
        measured = measure(window, slo["operation"], slo["metric"], scope)
        if window.totals(slo["operation"], scope).requests < min_samples:
            measured = None
        if measured is None:
            verdict = "error"
        elif _holds(measured, slo["op"], float(threshold)):
            verdict = "pass"
        else:
            verdict = plan.level_verdict(requirement["level"])
        results.append(
            {
                "requirement": requirement["id"],
                "operation": slo["operation"],
                "metric": slo["metric"],
                "op": slo["op"],
                "threshold": threshold,
                "measured": round(measured, 6) if measured is not None else 0,
                "verdict": verdict,
            }
        )
    return results


def _holds(measured: float, op: str, threshold: float) -> bool:
    return measured <= threshold if op == "<=" else measured >= threshold


def broken(results: Iterable[dict[str, Any]]) -> list[str]:
    """Requirement ids whose SLO was measured and not met."""
    return [r["requirement"] for r in results if r["verdict"] in ("fail", "warn")]


def perf_outcomes(perf: dict[str, Any]) -> dict[str, list[tuple[str, str, str]]]:
    """requirement id -> (node id `load::<scenario>::<requirement>`, passed | failed | error,
    message) for each SloResult of perf.json: the load runs as test outcomes, so the
    certification rule turns them into requirement verdicts like any other test. A broken SLO
    is `failed` whatever its level (the rule makes a failed SHOULD a warning)."""
    outcomes: dict[str, list[tuple[str, str, str]]] = {}
    for run in perf["runs"]:
        for result in run["sloResults"]:
            node_id = f"load::{run['scenario']}::{result['requirement']}"
            outcome = _OUTCOMES[result["verdict"]]
            load = f"{run['users']} users, {run['durationS']:g} s, {run['scenario']} run"
            outcomes.setdefault(result["requirement"], []).append(
                (node_id, outcome, f"{describe(result)} ({load})")
            )
    return outcomes


def describe(result: dict[str, Any]) -> str:
    """One line for a person: what was measured, against what."""
    what = f"{result['metric']} of {_operation(result['operation'])}"
    if result["verdict"] == "error":
        return f"{what} could not be measured: the run sent too few such requests"
    return f"{what}: {result['measured']:g}, required {result['op']} {result['threshold']:g}"


def _operation(operation: str) -> str:
    return "the whole mix" if operation == "*" else operation
