"""The load mix and the PERF requirements it is judged by, read from mix.yaml and spec/.

Pure data access and selection, no locust: the locust processes, the orchestrating process and
the certification report all read the same plan from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from spec import Spec

__all__ = [
    "MIX_FILE",
    "Plan",
    "mix",
    "operations_in_scope",
    "paths",
    "query_variants",
    "request_examples",
    "request_line",
    "success_statuses",
]

MIX_FILE = Path(__file__).with_name("mix.yaml")


@cache
def mix() -> dict[str, Any]:
    """mix.yaml, parsed once per process."""
    document: dict[str, Any] = yaml.safe_load(MIX_FILE.read_text(encoding="utf-8"))
    return document


def operations_in_scope(spec: Spec, role: str, options: list[str]) -> list[str]:
    """The operationIds the role serves whose class the node must offer: the role profile's
    required classes and the optional classes the declared options turn on."""
    profile = spec.profiles["roles"][role]
    classes = {name for name, entry in profile["classes"].items() if entry["status"] == "required"}
    classes |= {
        entry["class"] for entry in profile.get("options", []) if entry["option"] in options
    }
    return [
        operation["operationId"]
        for _, _, operation in spec.operations()
        if role in operation.get("x-roles", []) and operation["tags"][0] in classes
    ]


@cache
def success_statuses(spec: Spec) -> dict[str, frozenset[int]]:
    """operationId -> the 2xx statuses its spec documents: anything else fails CPIN-PERF-012."""
    return {
        operation["operationId"]: frozenset(
            int(code) for code in operation["responses"] if code.startswith("2")
        )
        for _, _, operation in spec.operations()
    }


@dataclass(frozen=True)
class Plan:
    """Who is loaded and how: the role, the operations in scope and the SLOs that apply."""

    spec: Spec
    role: str
    operations: tuple[str, ...]

    @classmethod
    def of(cls, spec: Spec, role: str, options: list[str]) -> Plan:
        """The plan for a role and the options its node declares."""
        return cls(spec, role, tuple(operations_in_scope(spec, role, options)))

    @property
    def weights(self) -> dict[str, float]:
        """The mix restricted to the operations in scope."""
        served = set(self.operations)
        return {op: float(w) for op, w in mix()["operations"].items() if op in served}

    def requirements(self, scenario: str) -> list[dict[str, Any]]:
        """The PERF requirements a scenario judges that bind the role and measure an operation
        in scope (or the whole mix). A scenario mix.yaml does not list (the capacity search)
        judges what the standard scenario judges."""
        scenarios = mix()["scenarios"]
        claimed = {rid for s in scenarios.values() for rid in s.get("requirements", [])}
        own = scenarios[scenario].get("requirements") if scenario in scenarios else None
        chosen = []
        for requirement in self.spec.requirements:
            slo = requirement.get("slo")
            if slo is None or self.role not in requirement["roles"]:
                continue
            if slo["operation"] != "*" and slo["operation"] not in self.operations:
                continue
            if own is not None and requirement["id"] not in own:
                continue
            if own is None and requirement["id"] in claimed:
                continue
            chosen.append(requirement)
        return chosen

    def level_verdict(self, level: str) -> str:
        """The verdict a broken SLO of this level gets for the role: warn when the certification
        rule treats the level as a warning, fail otherwise."""
        treatment = self.spec.certification["roles"][self.role]["levels"].get(level)
        return "warn" if treatment == "warning" else "fail"


@cache
def query_variants(spec: Spec, operation_id: str) -> list[dict[str, str]]:
    """Catalogue queries from the operation's example-valued query parameters: no filter, then
    ever narrower prefixes in the spec's order (so a parameter that needs an earlier one, such
    as minPeak after precision, always comes with it)."""
    for _, _, operation in spec.operations():
        if operation["operationId"] != operation_id:
            continue
        examples = [
            (parameter["name"], str(parameter["example"]))
            for parameter in operation.get("parameters", [])
            if parameter.get("in") == "query" and "example" in parameter
        ]
        return [dict(examples[:length]) for length in range(len(examples) + 1)]
    return [{}]


@cache
def request_examples(spec: Spec, operation_id: str) -> dict[str, Any]:
    """name -> request body of the operation's request examples."""
    for _, _, operation in spec.operations():
        if operation["operationId"] == operation_id:
            content = next(iter(operation["requestBody"]["content"].values()))
            return {name: example["value"] for name, example in content["examples"].items()}
    raise KeyError(operation_id)


@cache
def paths(spec: Spec) -> dict[str, tuple[str, str]]:
    """operationId -> (METHOD, path template)."""
    return {op["operationId"]: (method, path) for path, method, op in spec.operations()}


def request_line(spec: Spec, operation_id: str, key: str = "") -> tuple[str, str]:
    """(METHOD, path) of an operation, its path parameter (there is at most one) set to key."""
    method, template = paths(spec)[operation_id]
    return method, re.sub(r"\{[^}]+\}", key, template)
