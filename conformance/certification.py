"""The certification rule of spec/certification.yaml, evaluated; nothing of it restated here.

    evaluate(spec, role, options, results, ...) -> Certification
        1. applicability of each requirement      (applicability.predicates, first that holds)
        2. verdict of each requirement             (requirementVerdict.rules, first that holds)
        3. verdict of each conformance class       (classVerdict.rules)
        4. overall outcome and exit code           (overallOutcome.rules, outcomes)

Each step records the id of the rule that decided, so a report can be re-derived offline by
anyone holding the same spec: `cpin report verify` does exactly that. The `when` conditions are
a small language (see schemas/certification.json); an unknown condition key is a spec defect
and raises, rather than being read as true or false.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spec import Spec

__all__ = [
    "Certification",
    "ClassVerdict",
    "RequirementVerdict",
    "TestOutcome",
    "evaluate",
]


@dataclass(frozen=True)
class TestOutcome:
    """One test's outcome as it bears on one requirement."""

    __test__ = False  # a result, not a test class, whatever pytest thinks of its name
    nodeid: str
    outcome: str  # passed | failed | skipped | error
    duration_ms: float = 0.0
    message: str | None = None


@dataclass(frozen=True)
class RequirementVerdict:
    id: str
    klass: str
    level: str
    method: str
    treatment: str  # blocking | warning | ifImplemented
    verdict: str
    rule: str
    reason: dict[str, str] | None
    tests: tuple[TestOutcome, ...]
    attested: bool


@dataclass(frozen=True)
class ClassVerdict:
    klass: str
    status: str
    option: str | None
    must_pass: bool
    verdict: str
    rule: str
    reason: dict[str, str] | None
    counts: dict[str, int]


@dataclass(frozen=True)
class Certification:
    role: str
    outcome: str
    exit_code: int
    rule: str
    reason: dict[str, str] | None
    run_aborted: bool
    requirements: list[RequirementVerdict]
    classes: list[ClassVerdict]
    counts: dict[str, int] = field(default_factory=dict)


def evaluate(
    spec: Spec,
    role: str,
    options: Iterable[str],
    results: Mapping[str, Iterable[TestOutcome]],
    *,
    attested: Iterable[str] = (),
    run_aborted: bool = False,
) -> Certification:
    rule = spec.certification
    context = _Context(spec, role, set(options))
    attested_ids = set(attested)
    requirements = [
        _requirement_verdict(
            rule, context, entry, tuple(results.get(entry["id"], ())), entry["id"] in attested_ids
        )
        for entry in spec.requirements
    ]
    classes = [
        _class_verdict(rule, context, klass, [r for r in requirements if r.klass == klass])
        for klass in spec.codes("conformance-class")
    ]
    overall = _first(
        rule["overallOutcome"],
        lambda when: _overall_holds(when, classes, run_aborted, context.warnings_block),
    )
    outcome = str(overall["then"])
    return Certification(
        role=role,
        outcome=outcome,
        exit_code=int(rule["outcomes"][outcome]["exitCode"]),
        rule=overall["id"],
        reason=None if outcome == "certified" else _text(overall["description"]),
        run_aborted=run_aborted,
        requirements=requirements,
        classes=classes,
        counts=_counts(r.verdict for r in requirements),
    )


class _Context:
    """What the rule needs to know about the role and the run, read once."""

    def __init__(self, spec: Spec, role: str, options: set[str]) -> None:
        self.role = role
        self.options = options
        role_rule = spec.certification["roles"][role]
        self.levels: dict[str, str] = role_rule["levels"]
        self.warnings_block = bool(role_rule["warningsBlock"])
        self.must_pass_statuses = role_rule["mustPass"]
        profile = spec.profiles["roles"][role_rule["profile"]]
        self.statuses = {name: c["status"] for name, c in profile["classes"].items()}
        self.option_of = {o["class"]: o["option"] for o in profile.get("options", [])}
        self.predicates = spec.certification["applicability"]["predicates"]
        self.operation_class = {op["operationId"]: (op.get("tags") or ["core"])[0]
                                for _, _, op in spec.operations()}  # fmt: skip
        self.operation_roles = {op["operationId"]: set(op.get("x-roles", []))
                                for _, _, op in spec.operations()}  # fmt: skip

    def status(self, klass: str) -> str:
        return str(self.statuses.get(klass, "excluded"))

    def declared(self, klass: str) -> bool:
        option = self.option_of.get(klass)
        return option is not None and option in self.options

    def must_pass(self, klass: str) -> bool:
        status = self.status(klass)
        if status in self.must_pass_statuses.get("always", []):
            return True
        return status in self.must_pass_statuses.get("whenDeclared", []) and self.declared(klass)

    def inapplicable(self, entry: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
        """The first applicability predicate that holds, with its filled-in reason."""
        klass = entry["class"]
        operation = entry.get("slo", {}).get("operation", "*")
        values = {"role": self.role, "class": klass, "option": self.option_of.get(klass, ""),
                  "operation": operation}  # fmt: skip
        for predicate in self.predicates:
            if self._holds(predicate["predicate"], entry, klass, operation):
                reason = {k: v.format(**values) for k, v in predicate["reason"].items()}
                return predicate["predicate"], reason
        return None

    def _holds(self, predicate: str, entry: dict[str, Any], klass: str, operation: str) -> bool:
        if predicate == "roleNotBound":
            return self.role not in entry["roles"]
        if predicate == "classExcluded":
            return self.status(klass) == "excluded"
        if predicate == "optionNotDeclared":
            return self.status(klass) == "optional" and not self.declared(klass)
        if predicate == "operationNotInScope":
            if operation == "*":
                return False
            served = self.role in self.operation_roles.get(operation, set())
            return not served or not self.must_pass(self.operation_class.get(operation, "core"))
        raise ValueError(f"certification.yaml names an unknown predicate {predicate!r}")


def _requirement_verdict(
    rule: dict[str, Any],
    context: _Context,
    entry: dict[str, Any],
    tests: tuple[TestOutcome, ...],
    attested: bool,
) -> RequirementVerdict:
    inapplicable = context.inapplicable(entry)
    facts = {
        "applicable": inapplicable is None,
        "method": entry["test"]["method"],
        "level": context.levels[entry["level"]],
        "outcomes": [t.outcome for t in tests],
    }
    chosen = _first(rule["requirementVerdict"], lambda when: _requirement_holds(when, facts))
    verdict = str(chosen["then"])
    if verdict == "pass":
        reason = None
    elif inapplicable is not None and verdict == "not_applicable":
        reason = inapplicable[1]
    else:
        reason = _test_reason(tests, verdict) or _text(chosen["description"])
    return RequirementVerdict(
        id=entry["id"], klass=entry["class"], level=entry["level"],
        method=entry["test"]["method"], treatment=facts["level"], verdict=verdict,
        rule=chosen["id"], reason=reason, tests=tests, attested=attested,
    )  # fmt: skip


def _test_reason(tests: tuple[TestOutcome, ...], verdict: str) -> dict[str, str] | None:
    wanted = {"fail": "failed", "warn": "failed", "error": "error", "skipped": "skipped"}
    for test in tests:
        if test.outcome == wanted.get(verdict) and test.message:
            return {"en": f"{test.nodeid}: {test.message}"}
    return None


def _requirement_holds(when: dict[str, Any], facts: dict[str, Any]) -> bool:
    for key, condition in when.items():
        if key == "applicable":
            holds = facts["applicable"] == condition
        elif key == "method":
            holds = facts["method"] in condition
        elif key == "level":
            holds = facts["level"] in condition
        elif key == "tests":
            holds = _set_holds(condition, facts["outcomes"])
        else:
            raise ValueError(f"requirementVerdict: unknown condition {key!r}")
        if not holds:
            return False
    return True


def _set_holds(condition: dict[str, Any], values: list[str]) -> bool:
    """`empty`, `any`, `all` over a list of outcomes or verdicts; `all` needs a non-empty list."""
    for key, expected in condition.items():
        if key == "empty":
            holds = (not values) == expected
        elif key == "any":
            holds = any(v in expected for v in values)
        elif key == "all":
            holds = bool(values) and all(v in expected for v in values)
        else:
            continue  # a filter key, applied by the caller
        if not holds:
            return False
    return True


def _class_verdict(
    rule: dict[str, Any], context: _Context, klass: str, requirements: list[RequirementVerdict]
) -> ClassVerdict:
    must_pass = context.must_pass(klass)
    applicable = [r for r in requirements if r.verdict != "not_applicable"]
    chosen = _first(rule["classVerdict"], lambda when: _class_holds(when, must_pass, applicable))
    verdict = str(chosen["then"])
    option = context.option_of.get(klass) if context.declared(klass) else None
    return ClassVerdict(
        klass=klass, status=context.status(klass), option=option, must_pass=must_pass,
        verdict=verdict, rule=chosen["id"],
        reason=None if verdict == "pass" else _class_reason(verdict, chosen, applicable),
        counts=_counts(r.verdict for r in requirements),
    )  # fmt: skip


def _class_reason(
    verdict: str, chosen: dict[str, Any], requirements: list[RequirementVerdict]
) -> dict[str, str]:
    reason = _text(chosen["description"])
    named = [r.id for r in requirements if r.verdict in {verdict, "fail"} and r.verdict != "pass"]
    if named and verdict in {"fail", "error", "skipped", "untested", "warn"}:
        listed = ", ".join(named[:8]) + (" ..." if len(named) > 8 else "")
        reason = {lang: f"{text} ({listed})" for lang, text in reason.items()}
    return reason


def _class_holds(
    when: dict[str, Any], must_pass: bool, requirements: list[RequirementVerdict]
) -> bool:
    for key, condition in when.items():
        if key == "mustPass":
            holds = must_pass == condition
        elif key == "requirements":
            chosen = [r for r in requirements if _matches(r, condition)]
            holds = _set_holds(condition, [r.verdict for r in chosen])
        else:
            raise ValueError(f"classVerdict: unknown condition {key!r}")
        if not holds:
            return False
    return True


def _matches(requirement: RequirementVerdict, condition: dict[str, Any]) -> bool:
    if "level" in condition and requirement.treatment not in condition["level"]:
        return False
    if "method" in condition and requirement.method not in condition["method"]:
        return False
    return "attested" not in condition or requirement.attested == condition["attested"]


def _overall_holds(
    when: dict[str, Any], classes: list[ClassVerdict], run_aborted: bool, warnings_block: bool
) -> bool:
    for key, condition in when.items():
        if key == "runAborted":
            holds = run_aborted == condition
        elif key == "warningsBlock":
            holds = warnings_block == condition
        elif key == "classes":
            chosen = [c for c in classes if c.must_pass == condition.get("mustPass", c.must_pass)]
            holds = _set_holds(condition, [c.verdict for c in chosen])
        else:
            raise ValueError(f"overallOutcome: unknown condition {key!r}")
        if not holds:
            return False
    return True


def _first(step: dict[str, Any], holds: Any) -> dict[str, Any]:
    for candidate in step["rules"]:
        if holds(candidate["when"]):
            return dict(candidate)
    return dict(step["otherwise"])


def _text(description: dict[str, str]) -> dict[str, str]:
    return {"en": description["en"], "zh": description["zh"]}


def _counts(verdicts: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for verdict in verdicts:
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts
