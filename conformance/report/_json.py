"""report.json from a finished run: every member the schema asks for, nothing secret."""

from __future__ import annotations

import platform
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import TYPE_CHECKING, Any

from conformance.certification import Certification, RequirementVerdict
from conformance.redaction import redact_text

if TYPE_CHECKING:
    from conformance.session import Certifier

_COMPONENTS = ("pytest", "schemathesis", "hypothesis", "httpx", "jsonschema", "locust")


def build_report(certifier: Certifier, result: Certification) -> dict[str, Any]:
    finished = datetime.now(UTC)
    summary: dict[str, Any] = {
        "overall": result.outcome,
        "exitCode": result.exit_code,
        "rule": result.rule,
        "runAborted": result.run_aborted,
        "counts": result.counts,
    }
    if result.outcome == "certified":
        days = int(certifier.spec.certification["validity"]["days"])
        summary["validUntil"] = _time(finished + timedelta(days=days))
    else:
        summary["reason"] = result.reason
    report: dict[str, Any] = {
        "reportVersion": "1.0",
        "runId": certifier.run_id,
        "createdAt": _time(certifier.created_at),
        "finishedAt": _time(finished),
        "spec": {"version": certifier.spec.version, "digest": certifier.spec.digest()},
        "harness": _harness(),
        "target": _target(certifier),
        "ics": certifier.ics.document,
        "budget": certifier.budget_name,
        "seed": certifier.seed,
        "summary": summary,
        "classes": [_class(c) for c in result.classes],
        "requirements": [_requirement(certifier, r) for r in result.requirements],
        "artefacts": [],
    }
    for section, value in certifier.extras.items():
        report[section] = value
    return report


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _harness() -> dict[str, Any]:
    from cpin import __version__

    components = {}
    for name in _COMPONENTS:
        try:
            components[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "name": "cpin-conformance",
        "version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "components": components,
    }


def _target(certifier: Certifier) -> dict[str, Any]:
    target: dict[str, Any] = {"baseUrl": certifier.ics.base_url, "role": certifier.ics.role}
    info = certifier.extras.pop("_serviceInfo", None)
    problem = certifier.extras.pop("_serviceInfoProblem", None)
    if info is not None:
        target["serviceInfo"] = info
    else:
        target["serviceInfoProblem"] = problem or {
            "message": {"en": "service-info was not read in this run"}
        }
    return target


def _class(verdict: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "class": verdict.klass,
        "status": verdict.status,
        "mustPass": verdict.must_pass,
        "verdict": verdict.verdict,
        "rule": verdict.rule,
        "counts": verdict.counts,
    }
    if verdict.option:
        entry["option"] = verdict.option
    if verdict.reason:
        entry["reason"] = verdict.reason
    return entry


def _requirement(certifier: Certifier, verdict: RequirementVerdict) -> dict[str, Any]:
    secrets = certifier.recorder.secrets
    tests = []
    evidence: dict[str, dict[str, str]] = {}
    for record in certifier.records:
        if verdict.id not in record.requirements:
            continue
        test: dict[str, Any] = {
            "nodeid": record.nodeid,
            "outcome": record.outcome,
            "durationMs": round(record.duration_ms, 3),
        }
        if record.message:
            test["message"] = redact_text(record.message, secrets)
        tests.append(test)
        for exchange in record.evidence:
            evidence[exchange.ref] = {"kind": "http", "ref": exchange.ref,
                                      "summary": exchange.summary}  # fmt: skip
        for ref, summary in record.files:
            evidence[ref] = {"kind": "load", "ref": ref, "summary": summary}
    entry: dict[str, Any] = {
        "id": verdict.id,
        "class": verdict.klass,
        "level": verdict.level,
        "method": verdict.method,
        "verdict": verdict.verdict,
        "rule": verdict.rule,
        "tests": tests,
        "evidence": list(evidence.values())[:50],
    }
    if verdict.reason:
        entry["reason"] = {k: redact_text(v, secrets) for k, v in verdict.reason.items()}
    attestation = certifier.ics.attestation(verdict.id)
    if attestation is not None:
        entry["attestation"] = attestation
        ref = _attestation_ref(certifier, verdict.id)
        summary = "the vendor's statement, copied from the ICS"
        entry["evidence"].append({"kind": "attestation", "ref": ref, "summary": summary})
    return entry


def _attestation_ref(certifier: Certifier, requirement_id: str) -> str:
    entries = certifier.ics.document.get("attestations", [])
    index = next(i for i, a in enumerate(entries) if a["requirement"] == requirement_id)
    return f"report.json#/ics/attestations/{index}"
