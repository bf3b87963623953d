"""Core class: error answers (RFC 9457 problem details with the spec's problem types), routing
(405 + Allow, operations outside the role, unknown paths) and answers that keep to what
spec/openapi.yaml documents for each operation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conformance.checks import Contract
from conformance.http import NodeClient
from conformance.suite._core import (
    METHODS,
    SpecOperation,
    basic_credentials,
    filled_path,
    operations_of,
    problem_flaws,
    problem_type_flaw,
    selection_demand,
)
from spec import Spec


@dataclass(frozen=True)
class ErrorCase:
    """An exchange the spec makes an error, and the problem type it names for it."""

    response: httpx.Response
    problem_type: str
    must_fail: bool = True  # False: a SHOULD (406), judged only when the node did refuse


@pytest.fixture(scope="module")
def error_cases(node: NodeClient, service_info: dict[str, Any], spec: Spec) -> list[ErrorCase]:
    """One of each error condition every role can be driven into over HTTP."""
    cases = [
        ErrorCase(node.get("/v1/cpin-conformance-no-such-path"), "not-found"),
        ErrorCase(node.delete("/v1/service-info"), "method-not-allowed"),
        ErrorCase(node.get("/v1/audit-events", authenticated=False), "unauthorized"),
        ErrorCase(node.get("/v1/audit-events", scopes=["catalogue:read"]), "insufficient-scope"),
        ErrorCase(node.get("/v1/audit-events", params={"limit": 0}), "invalid-request"),
        ErrorCase(node.get("/v1/health", headers={"X-Request-Id": "x" * 129}), "invalid-request"),
        ErrorCase(
            node.get("/v1/service-info", headers={"Accept": "application/xml"}),
            "not-acceptable",
            must_fail=False,
        ),
        ErrorCase(
            node.post(
                "/v1/oauth/token",
                json={"grant_type": "client_credentials"},
                headers={"Authorization": basic_credentials(node)},
            ),
            "unsupported-media-type",
        ),
    ]
    if "selection" in service_info["classes"]:
        cases += [
            ErrorCase(
                node.post(
                    "/v1/selections",
                    content=b'{"acceleratorType": ',
                    headers={"Content-Type": "application/json"},
                ),
                "invalid-request",
            ),
            ErrorCase(
                node.post(
                    "/v1/selections",
                    content=json.dumps(selection_demand()).encode(),
                    headers={"Content-Type": "text/plain"},
                ),
                "unsupported-media-type",
            ),
        ]
    return cases


def _judged(cases: list[ErrorCase]) -> list[ErrorCase]:
    return [c for c in cases if c.must_fail or c.response.status_code >= 400]


@pytest.mark.requirement("CPIN-CORE-006")
def test_error_answers_are_problem_details(error_cases: list[ErrorCase]) -> None:
    flaws = []
    for case in _judged(error_cases):
        response = case.response
        if response.status_code < 400:
            flaws.append(
                f"{response.request.method} {response.request.url} -> "
                f"{response.status_code}, an error was due"
            )
            continue
        flaws += [f for f in _problem_media_and_members(response)]
    assert not flaws, "; ".join(flaws[:5])


def _problem_media_and_members(response: httpx.Response) -> list[str]:
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    media = response.headers.get("content-type", "").split(";")[0].strip()
    if media != "application/problem+json":
        return [
            f"{where}: Content-Type {media or '(none)'}, the spec requires application/problem+json"
        ]
    try:
        body = response.json()
    except ValueError:
        return [f"{where}: the body is not JSON"]
    if not isinstance(body, dict):
        return [f"{where}: the problem body is not an object"]
    missing = [m for m in ("type", "title", "status") if m not in body]
    return [f"{where}: the problem lacks {', '.join(missing)}"] if missing else []


@pytest.mark.requirement("CPIN-CORE-007")
def test_problem_status_equals_the_http_status(
    error_cases: list[ErrorCase], contract: Contract
) -> None:
    flaws = []
    for case in _judged(error_cases):
        flaws += [f for f in problem_flaws(case.response, contract) if "differs" in f]
    assert not flaws, "; ".join(flaws[:5])


@pytest.mark.requirement("CPIN-CORE-008")
def test_problem_types_are_the_ones_the_spec_names(
    error_cases: list[ErrorCase], spec: Spec
) -> None:
    flaws = [
        flaw
        for case in _judged(error_cases)
        if (flaw := problem_type_flaw(case.response, spec, case.problem_type)) is not None
    ]
    assert not flaws, "; ".join(flaws[:5])


@pytest.mark.requirement("CPIN-CORE-022")
def test_unserved_method_answers_405_with_exact_allow(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec, contract: Contract
) -> None:
    operations = operations_of(spec)
    flaws = []
    for path in operations.paths(role):
        method = next(m for m in METHODS if m not in operations.methods_at(path))
        response = node.request(method, filled_path(path, service_info["nodeCode"]))
        flaws += _method_not_allowed_flaws(response, operations.methods_at(path, role), node)
        flaws += problem_flaws(response, contract) if response.status_code >= 400 else []
    assert not flaws, "; ".join(flaws[:6])


def _method_not_allowed_flaws(
    response: httpx.Response, served: set[str], node: NodeClient
) -> list[str]:
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code != 405:
        return [f"{where} -> {response.status_code}, the spec requires 405"]
    allow = response.headers.get("allow")
    if allow is None:
        return [f"{where} -> 405 without an Allow header"]
    listed = {m.strip().upper() for m in allow.split(",") if m.strip()}
    flaws = []
    if served - listed:
        flaws.append(f"{where}: Allow {allow!r} omits {sorted(served - listed)}")
    for extra in sorted(listed - served):  # HEAD or OPTIONS are fine if really served
        answer = (
            node.request(extra, response.request.url.path) if extra in {"HEAD", "OPTIONS"} else None
        )
        if answer is None or answer.status_code in {404, 405}:
            flaws.append(f"{where}: Allow {allow!r} lists {extra}, which is not served there")
    return flaws


@pytest.mark.requirement("CPIN-CORE-023")
def test_operations_outside_the_role_are_not_served(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec, contract: Contract
) -> None:
    operations = operations_of(spec)
    outside = operations.not_served(role)
    if not outside:
        pytest.skip("precondition failed: every operation of the spec is served by this role")
    flaws = []
    for op in outside:
        path = filled_path(op.path, service_info["nodeCode"])
        response = node.request(op.method, path)
        served_here = operations.methods_at(op.path, role)
        if served_here:
            flaws += _method_not_allowed_flaws(response, served_here, node)
        elif response.status_code != 404:
            flaws.append(
                f"{op.operation_id} ({op.method} {path}) -> {response.status_code}, "
                f"a {role} node does not serve it: 404 is due"
            )
        if response.status_code >= 400:
            flaws += problem_flaws(response, contract)
    assert not flaws, "; ".join(flaws[:6])


@pytest.mark.requirement("CPIN-CORE-024")
def test_unknown_paths_answer_404_problem(
    node: NodeClient, service_info: dict[str, Any], contract: Contract, spec: Spec
) -> None:
    own = service_info["nodeCode"]
    paths = [
        "/v1/cpin-conformance-unknown",
        "/v1/service-info/cpin-extra",
        "/v1/",
        "/cpin-conformance-unknown",
        f"/v1/nodes/{own}/cpin-extra",
        "/v1/health/",
    ]
    flaws = []
    for path in paths:
        response = node.get(path)
        if response.status_code != 404:
            flaws.append(f"GET {path} -> {response.status_code}, the spec requires 404")
            continue
        flaws += problem_flaws(response, contract)
        flaws += [f for f in [problem_type_flaw(response, spec, "not-found")] if f]
    assert not flaws, "; ".join(flaws[:6])


@pytest.fixture(scope="module")
def documented_exchanges(
    node: NodeClient, service_info: dict[str, Any], role: str, spec: Spec
) -> list[tuple[SpecOperation, httpx.Response]]:
    """A representative set of answers: every GET the role serves (made-up records for those
    with path parameters), unauthenticated and with an unacceptable Accept, lists with a bad
    limit, and every body-taking operation sent a body of the wrong media type."""
    operations = operations_of(spec)
    served = operations.served(role, service_info["classes"])
    exchanges: list[tuple[SpecOperation, httpx.Response]] = []
    for op in served:
        path = filled_path(op.path, service_info["nodeCode"])
        if op.method == "GET":
            exchanges.append((op, node.get(path)))
            exchanges.append((op, node.get(path, headers={"Accept": "text/html"})))
            if op.secured:
                exchanges.append((op, node.get(path, authenticated=False)))
        if op.is_list:
            exchanges.append((op, node.get(path, params={"limit": 101})))
        if "requestBody" in op.definition and op.operation_id != "issueToken":
            exchanges.append(
                (
                    op,
                    node.request(
                        op.method,
                        path,
                        content=b"<demand/>",
                        headers={"Content-Type": "application/xml"},
                    ),
                )
            )
    return exchanges


def _documented(op: SpecOperation, response: httpx.Response) -> bool:
    return str(response.status_code) in op.definition.get("responses", {})


@pytest.mark.requirement("CPIN-CORE-025")
def test_answers_use_only_documented_statuses(
    documented_exchanges: list[tuple[SpecOperation, httpx.Response]],
) -> None:
    flaws = [
        f"{op.operation_id}: {r.request.method} {r.request.url} -> {r.status_code} "
        f"(documented: {', '.join(str(s) for s in sorted(op.statuses))})"
        for op, r in documented_exchanges
        if not _documented(op, r)
    ]
    assert not flaws, "; ".join(flaws[:6])


@pytest.mark.requirement("CPIN-CORE-026")
def test_answers_are_valid_against_their_documented_schemas(
    documented_exchanges: list[tuple[SpecOperation, httpx.Response]], spec: Spec
) -> None:
    operations = operations_of(spec)
    flaws = [
        flaw
        for op, response in documented_exchanges
        if _documented(op, response)
        for flaw in operations.answer_errors(op, response)
    ]
    assert not flaws, "; ".join(flaws[:6])
