"""Schema-based fuzzing of every operation the node's role serves (schemathesis).

Each test declares every requirement a fuzzing check bears on (conformance/fuzz-checks.yaml);
a finding fails only the requirements of the checks that failed, and the others pass, since
every check ran on every generated request.
"""

from __future__ import annotations

import pytest

from conformance.fuzzing import STATEFUL, STATELESS, FuzzResult, FuzzTarget, fuzz, mapping
from conformance.http import NodeClient
from conformance.session import Certifier, RequirementFailure

CHECKED = sorted({r for check in mapping()["checks"].values() for r in check["requirements"]})
pytestmark = [pytest.mark.requirement(*CHECKED), pytest.mark.made_up_codes]


class FuzzingBroke(Exception):
    """schemathesis could not run (a harness fault or a node that stopped answering)."""


def _run(
    certifier: Certifier, node: NodeClient, phases: tuple[str, ...], declared_rate: int
) -> FuzzResult:
    node.get("/v1/health", authenticated=False)  # a node that does not answer is not fuzzed
    credentials = certifier.ics.credentials()
    target = FuzzTarget(
        base_url=certifier.ics.base_url,
        role=certifier.ics.role,
        token=node.token(),
        client_id=credentials.client_id,
        client_secret=str(credentials.client_secret),  # schemathesis wants an exact str
        rate_limit_per_minute=declared_rate,
    )
    result = fuzz(certifier.spec, target, phases, certifier.budget, certifier.seed)
    _report(certifier, result)
    return result


def _report(certifier: Certifier, result: FuzzResult) -> None:
    """Adds this run's figures and findings to the report's `fuzzing` section."""
    section = certifier.extras.setdefault(
        "fuzzing", {"operations": 0, "examples": 0, "failures": []}
    )
    section["operations"] = max(section["operations"], len(result.operations))
    section["examples"] += result.examples
    for finding in result.findings:
        entry = {
            "operationId": finding.operation_id,
            "check": finding.check,
            "requirements": list(finding.requirements),
            "reproduction": finding.reproduction,
            "message": finding.message,
        }
        section["failures"].append(entry)


def _judge(result: FuzzResult) -> None:
    if result.findings:
        lines = [f"{f.operation_id}: {f.check} ({', '.join(f.requirements)})"
                 for f in result.findings]  # fmt: skip
        message = f"{len(lines)} fuzzing findings: " + "; ".join(lines[:10])
        raise RequirementFailure(message, result.failed_requirements())
    if result.errors:
        raise FuzzingBroke("; ".join(result.errors[:3]))


def test_stateless_fuzzing_finds_no_failure(
    certifier: Certifier, node: NodeClient, declared_rate: int
) -> None:
    result = _run(certifier, node, STATELESS, declared_rate)
    assert result.examples > 0, "schemathesis generated no request: the run proves nothing"
    _judge(result)


def test_stateful_fuzzing_along_links_finds_no_failure(
    certifier: Certifier, node: NodeClient, declared_rate: int
) -> None:
    _judge(_run(certifier, node, STATEFUL, declared_rate))
