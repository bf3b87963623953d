"""Schema-based fuzzing of a live node with schemathesis, findings mapped to requirements.

    fuzz(target, phases, budget, seed) -> FuzzResult
        examples, coverage, fuzzing phases: stateless, one operation at a time
        stateful phase: sequences along the spec's OpenAPI links
    FuzzResult.findings: one per failed check and operation, with the requirement ids that
    conformance/fuzz-checks.yaml maps the check to, and a curl line that replays it.

The run is bounded by counts (examples per operation, scenarios and steps), never by time
(TOOLING.md: `--max-time` is spent, not capped), and seeded, so a report's seed replays it.
Requests are paced below the node's declared rate limit, so a 429 never hides a finding.

What schemathesis cannot know about this spec is taught to it by hooks, never by switching a
check off: identifiers in positive cases get valid check characters (the harness's own
routines in conformance.identifiers), cursors are not invented for positive cases
(CPIN-CORE-014), `minPeak` needs `precision` (CPIN-AGG-007), and a 400 to schema-valid data is
excused only when every error it lists cites, in `rule`, a requirement of that operation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData

from conformance.identifiers import mod37_36, uscc_check
from conformance.redaction import redact_text
from spec import Spec

__all__ = ["STATEFUL", "STATELESS", "FuzzFinding", "FuzzResult", "FuzzTarget", "fuzz", "mapping"]

STATELESS = ("examples", "coverage", "fuzzing")
STATEFUL = ("stateful",)
MAPPING = Path(__file__).with_name("fuzz-checks.yaml")
RATE_SHARE = 0.8  # of the node's declared rate, for fuzzing


def mapping() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(MAPPING.read_text(encoding="utf-8"))
    return document


@dataclass(frozen=True)
class FuzzTarget:
    base_url: str
    role: str
    token: str
    client_id: str
    client_secret: str
    rate_limit_per_minute: int | None = None
    """The node's declared rate (service-info): fuzzing stays below it, as a 429 would hide
    what the node does with the requests it refused."""


@dataclass(frozen=True)
class FuzzFinding:
    operation_id: str
    check: str
    requirements: tuple[str, ...]
    reproduction: str
    message: str


@dataclass
class FuzzResult:
    operations: set[str] = field(default_factory=set)
    examples: int = 0
    findings: list[FuzzFinding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phases: set[str] = field(default_factory=set)

    def failed_requirements(self) -> tuple[str, ...]:
        return tuple(sorted({r for f in self.findings for r in f.requirements}))


def fuzz(
    spec: Spec,
    target: FuzzTarget,
    phases: tuple[str, ...],
    budget: dict[str, Any],
    seed: int,
    *,
    excluded: set[str] | None = None,
) -> FuzzResult:
    """`excluded`: operations not to fuzz (default: fuzz-checks.yaml excludedOperations, for a
    live federation; a node standing alone in a test may be fuzzed whole)."""
    phases = tuple(p for p in phases if p in budget["fuzzPhases"])
    if excluded is None:
        excluded = set(mapping()["excludedOperations"])
    return _execute(_schema(spec, target, phases, budget, seed, excluded), target)


def _execute(schema: Any, target: FuzzTarget) -> FuzzResult:
    checks = mapping()["checks"]
    secrets = [target.token, target.client_secret]
    result = FuzzResult()
    seen: set[tuple[str, str]] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            result.phases.add(str(event.phase))
            _collect(event.recorder, result, checks, secrets, seen)
        elif isinstance(event, events.NonFatalError):
            result.errors.append(redact_text(f"{event.label}: {event.info.format()}", secrets))
        elif isinstance(event, events.FatalError):
            result.errors.append(redact_text(f"fatal: {event.exception!r}", secrets))
    return result


def _collect(
    recorder: Any,
    result: FuzzResult,
    checks: dict[str, Any],
    secrets: list[str],
    seen: set[tuple[str, str]],
) -> None:
    result.examples += len(recorder.cases)
    for node in recorder.cases.values():
        operation_id = _operation_id(node.value)
        if operation_id:
            result.operations.add(operation_id)
    for case_id, nodes in recorder.checks.items():
        for check in nodes:
            info = check.failure_info
            if info is None:
                continue
            case = recorder.cases[case_id].value
            operation_id = _operation_id(case) or "unknown"
            key = (operation_id, check.name)
            if key in seen:
                continue  # one finding per operation and check: the first replays it
            seen.add(key)
            mapped = checks.get(check.name, {}).get("requirements", ["CPIN-CORE-025"])
            result.findings.append(
                FuzzFinding(
                    operation_id=operation_id,
                    check=check.name,
                    requirements=tuple(mapped),
                    reproduction=redact_text(info.code_sample, secrets),
                    message=redact_text(f"{info.failure.title}: {info.failure.message}", secrets)[
                        :2000
                    ],
                )
            )


def _operation_id(case: Any) -> str | None:
    raw = getattr(getattr(case, "operation", None), "definition", None)
    value = getattr(raw, "raw", {}).get("operationId") if raw is not None else None
    return str(value) if value else None


def _schema(
    spec: Spec,
    target: FuzzTarget,
    phases: tuple[str, ...],
    budget: dict[str, Any],
    seed: int,
    excluded: set[str],
) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "seed": seed,
            "base-url": target.base_url,
            "generation": {"max-examples": budget["fuzzExamples"], "no-shrink": True},
            "workers": 1,  # more threads crash Hypothesis (CPython 3.11's ast) and gain nothing
            "request-timeout": budget["requestTimeoutS"],
            "max-failures": budget.get("fuzzMaxFailures", 50),
            "phases": {
                name: {"enabled": name in phases} for name in ("examples", "coverage", "fuzzing")
            }
            | {
                "stateful": {
                    "enabled": "stateful" in phases,
                    "max-steps": budget["statefulSteps"],
                    "generation": {"max-examples": budget["statefulExamples"]},
                }
            },
            "checks": _check_settings(),
            **_pace(target.rate_limit_per_minute),
            "auth": {
                "openapi": {
                    "oauth2": {"bearer": target.token},
                    "clientBasic": {"username": target.client_id, "password": target.client_secret},
                }
            },
        }
    )
    config.projects.default.checks.update(included_check_names=["all"])
    schema: Any = schemathesis.openapi.from_path(spec.root / "openapi.yaml", config=config)
    _keep_served(schema.raw_schema, target.role)
    if excluded:  # filtered, not removed: the path still serves them (405 checks stay right)
        schema = schema.exclude(operation_id=sorted(excluded))
    _install_hooks(schema, _Rules(spec))
    return schema


def _pace(declared_per_minute: int | None) -> dict[str, str]:
    """A cap of RATE_SHARE of the declared rate in any minute (the window rateLimitPerMinute
    speaks of): the suite's own requests in the same minute keep the rest."""
    if declared_per_minute is None:
        return {}
    return {"rate-limit": f"{max(1, int(declared_per_minute * RATE_SHARE))}/m"}


def _install_hooks(schema: Any, rules: _Rules) -> None:
    """schemathesis finds a hook by its function name and annotates the function: methods will
    not do, so each hook is a plain function of that name."""

    def map_case(context: Any, case: Any) -> Any:
        return rules.map_case(context, case)

    def before_add_examples(context: Any, examples: list[Any]) -> None:
        rules.before_add_examples(context, examples)

    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        return rules.filter_failure(context, failure, case, response)

    for hook in (map_case, before_add_examples, filter_failure):
        schema.hook(hook)


def _check_settings() -> dict[str, Any]:
    return {
        # The documented 502/504 of an operation that needs another node of the federation.
        "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "502", "503", "504"]},
        # An absent If-Match is 428 precondition-required (RFC 6585), as every PATCH documents.
        "missing_required_header": {
            "expected-statuses": ["400", "401", "403", "406", "415", "422", "428"]
        },
        # 410 (revoked) and 412 (stale If-Match) answer state, not data, like 404 and 409: a
        # valid request may meet them, and an invalid one is refused by them all the same
        # (fuzzing revokes identifiers it later patches without If-Match: 410 precedes 428).
        "positive_data_acceptance": {
            "expected-statuses": [
                *("2xx", "3xx", "401", "403", "404", "409", "410", "412", "429", "5xx")
            ]
        },
        "negative_data_rejection": {
            "expected-statuses": [
                *("400", "401", "403", "404", "405", "406", "409", "410", "412", "415", "422"),
                *("428", "429", "5xx"),
            ]
        },
    }


def _keep_served(document: dict[str, Any], role: str) -> None:
    """The document the role's node serves (getOpenApiDocument lets a node omit the others)."""
    for path, item in list(document["paths"].items()):
        for method in [m for m, op in item.items() if isinstance(op, dict) and "x-roles" in op]:
            if role not in item[method]["x-roles"]:
                del item[method]
        if not any(isinstance(op, dict) and "x-roles" in op for op in item.values()):
            del document["paths"][path]


class _Rules:
    """The spec's rules that JSON Schema cannot state, for schemathesis' hooks."""

    def __init__(self, spec: Spec) -> None:
        ids = spec.load("schemas/identifiers.json")["$defs"]
        self.node_code = re.compile(ids["NodeCode"]["pattern"])
        self.resource_id = re.compile(ids["ResourceId"]["pattern"])
        self.uscc = re.compile(ids["Uscc"]["pattern"])
        self.type_rules = {e["x-node-type"]: e["x-rules"] for e in spec.codelist("node-role")}
        self.mainland = sorted(set(spec.codes("province")) - {"00"})
        self.divisions = {e["const"]: e["x-section"] for e in spec.codelist("industry-division")}
        self.resource_types = set(spec.codes("resource-type"))
        self.operation_rules = {
            op["operationId"]: set(op.get("x-requirements", [])) for _, _, op in spec.operations()
        }

    def map_case(self, context: Any, case: Any) -> Any:
        """A positive case made valid by the rules schemas cannot state, then re-judged."""
        meta = case.meta
        if meta is None or not meta.generation.mode.is_positive:
            return case
        case.path_parameters = {k: self.valid(v) for k, v in case.path_parameters.items()}
        case.query = {k: self.valid(v) for k, v in case.query.items() if k != "cursor"}
        if "minPeak" in case.query and "precision" not in case.query:
            case.query = {k: v for k, v in case.query.items() if k != "minPeak"}
        if isinstance(case.body, dict | list):
            case.body = self.valid(case.body)
        for location, component in meta.components.items():
            if component.mode.is_positive:
                meta.mark_dirty(location)
        _ = case.meta
        return case

    def before_add_examples(self, context: Any, examples: list[Any]) -> None:
        examples[:] = [self.map_case(context, case) for case in examples]

    def filter_failure(self, context: Any, failure: Any, case: Any, response: Any) -> bool:
        """Keep every failure but a 400 to valid data whose errors all cite, in `rule`, a
        requirement of this operation."""
        if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
            return True
        try:
            errors = response.json().get("errors") or []
        except (ValueError, AttributeError):
            return True
        operation_id = case.operation.definition.raw["operationId"]
        cited = {error.get("rule") for error in errors if isinstance(error, dict)}
        return not errors or not cited <= self.operation_rules.get(operation_id, set())

    def valid(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.valid(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.valid(v) for v in value]
        return self.valid_identifier(value) if isinstance(value, str) else value

    def valid_identifier(self, text: str) -> str:
        if self.node_code.fullmatch(text):
            return self.valid_node_code(text)
        if self.resource_id.fullmatch(text):
            res_type = text[10:13] if text[10:13] in self.resource_types else "GPU"
            data = self.valid_node_code(text[:9]) + res_type + text[14:22]
            return f"{data[:9]}-{res_type}-{text[14:22]}{mod37_36(data)}"
        if self.uscc.fullmatch(text):
            return text[:17] + uscc_check(text[:17])
        return text

    def valid_node_code(self, code: str) -> str:
        """identification.md §3-5: province and industry as the node type's rules say."""
        rules = self.type_rules[code[0]]
        province, industry = code[1:3], code[3:6]
        if rules["province"] == "national":
            province = "00"
        elif province not in self.mainland:
            province = self.mainland[0]
        if rules["industry"] == "none":
            industry = "000"
        elif self.divisions.get(industry[1:]) != industry[0]:
            division = next(iter(self.divisions))
            industry = self.divisions[division] + division
        data = code[0] + province + industry + code[6:8]
        return data + mod37_36(data)
