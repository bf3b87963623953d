"""`cpin report verify DIR`: check a report bundle offline, without the node.

1. report.json is valid against spec/schemas/report.json
2. every file of the bundle is in `artefacts` with its SHA-256, and nothing else is there
3. the signature, when present, verifies (against a pinned key, when given)
4. the verdicts follow from the test outcomes the report records, by the certification rule
   of the spec the report names (re-derived here; a report for another spec digest cannot
   be re-derived with this installation, and says so)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from conformance.certification import TestOutcome, evaluate
from conformance.signing import signature_problem
from spec import ID_BASE, Spec

__all__ = ["verify_bundle"]


def verify_bundle(folder: Path, spec: Spec, pinned_key: bytes | None = None) -> list[str]:
    """Every problem found; an empty list means the bundle holds."""
    path = folder / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"report.json cannot be read: {exc}"]
    problems = _schema_problems(report, spec)
    if problems:
        return problems
    problems += _manifest_problems(folder, report)
    if "signature" in report:
        problem = signature_problem(report, pinned_key)
        if problem:
            problems.append(problem)
    elif pinned_key is not None:
        problems.append("the report is not signed, but a signing key was expected")
    problems += _derivation_problems(report, spec)
    return problems


def _schema_problems(report: Any, spec: Spec) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": ID_BASE + "schemas/report.json"},
        registry=spec.registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    return [
        f"report.json#/{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}"
        for e in errors[:10]
    ]


def _manifest_problems(folder: Path, report: dict[str, Any]) -> list[str]:
    listed = {entry["path"]: entry["sha256"] for entry in report["artefacts"]}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    present.discard("report.json")
    problems = [
        f"{name}: in the bundle but not in the manifest" for name in sorted(present - set(listed))
    ]
    problems += [f"{name}: in the manifest but missing" for name in sorted(set(listed) - present)]
    for name in sorted(set(listed) & present):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if digest != listed[name]:
            problems.append(f"{name}: SHA-256 differs from the manifest (the file changed)")
    return problems


def _derivation_problems(report: dict[str, Any], spec: Spec) -> list[str]:
    if report["spec"]["digest"] != spec.digest():
        judged, here = report["spec"]["digest"], spec.digest()
        return [
            f"the report was judged against spec {judged}; this installation has {here}, "
            "so its verdicts cannot be re-derived here"
        ]
    results = {
        entry["id"]: [
            TestOutcome(t["nodeid"], t["outcome"], t["durationMs"], t.get("message"))
            for t in entry["tests"]
        ]
        for entry in report["requirements"]
    }
    attested = [a["requirement"] for a in report["ics"].get("attestations", [])]
    derived = evaluate(
        spec,
        report["target"]["role"],
        report["ics"].get("options", []),
        results,
        attested=attested,
        run_aborted=report["summary"]["runAborted"],
    )
    problems = []
    for entry, verdict in zip(report["requirements"], derived.requirements, strict=False):
        if (entry["id"], entry["verdict"]) != (verdict.id, verdict.verdict):
            problems.append(
                f"{entry['id']}: the report says {entry['verdict']}, "
                f"the rule gives {verdict.verdict}"
            )
    for entry, klass in zip(report["classes"], derived.classes, strict=False):
        if (entry["class"], entry["verdict"]) != (klass.klass, klass.verdict):
            problems.append(
                f"class {entry['class']}: the report says {entry['verdict']}, "
                f"the rule gives {klass.verdict}"
            )
    if report["summary"]["overall"] != derived.outcome:
        problems.append(
            f"overall: the report says {report['summary']['overall']}, "
            f"the rule gives {derived.outcome}"
        )
    return problems
