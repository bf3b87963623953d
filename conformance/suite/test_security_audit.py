"""Security class, the audit trail: each accepted write leaves exactly one complete event,
refusals leave access.denied, events are read-only and never carry secrets or tokens."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest

from conformance.checks import Contract, body_of, expect_status, precondition
from conformance.http import NodeClient
from conformance.suite._security import (
    AUDIT_PATH,
    AUDIT_SCOPE,
    audit_events,
    granted_scopes,
    new_request_id,
)
from spec import Spec

EVENT = "schemas/audit-event.json"
CLOCK_TOLERANCE = timedelta(minutes=5)


def _actions_of(spec: Spec, operation_id: str) -> set[str]:
    return {
        entry["const"]
        for entry in spec.codelist("audit-action")
        if operation_id in entry.get("x-operations", [])
    }


def _issue_token(node: NodeClient, request_id: str) -> httpx.Response:
    """issueToken with our own X-Request-Id (NodeClient.token_response sets no headers)."""
    assert node.credentials is not None
    pair = f"{quote(node.credentials.client_id, safe='')}:"
    pair += quote(str(node.credentials.client_secret), safe="")
    basic = "Basic " + base64.b64encode(pair.encode()).decode()
    request = httpx.Request(
        "POST",
        node.credentials.token_url or node.url("/v1/oauth/token"),
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic, "X-Request-Id": request_id},
    )
    return node.send(request)


def _create_selection(node: NodeClient, spec: Spec, request_id: str) -> httpx.Response:
    content = spec.openapi["paths"]["/v1/selections"]["post"]["requestBody"]["content"]
    demand = next(iter(content["application/json"]["examples"].values()))["value"]
    return node.post("/v1/selections", json=demand, headers={"X-Request-Id": request_id})


@pytest.fixture(scope="module")
def writes(node: NodeClient, spec: Spec) -> list[tuple[str, httpx.Response, str]]:
    """Accepted writes of every role: (operationId, response, the X-Request-Id sent)."""
    done = []
    token_id = new_request_id("token")
    token = _issue_token(node, token_id)
    expect_status(token, 200)
    done.append(("issueToken", token, token_id))
    selection_id = new_request_id("selection")
    selection = _create_selection(node, spec, selection_id)
    precondition(selection.status_code == 201,
                 f"createSelection with the spec's example demand answered "
                 f"{selection.status_code}: no second write to audit")  # fmt: skip
    done.append(("createSelection", selection, selection_id))
    return done


@pytest.mark.requirement("CPIN-SEC-020")
def test_every_accepted_write_leaves_exactly_one_event(
    node: NodeClient, spec: Spec, writes: list[tuple[str, httpx.Response, str]]
) -> None:
    for operation_id, _, request_id in writes:
        events = audit_events(node, request_id)
        assert len(events) == 1, (
            f"{operation_id} (X-Request-Id {request_id}) left {len(events)} audit events "
            f"within 5 s, the spec requires exactly one"
        )
        actions = _actions_of(spec, operation_id)
        assert events[0].get("action") in actions, (
            f"{operation_id} was audited as {events[0].get('action')!r}, the code list gives "
            f"{sorted(actions)}"
        )


@pytest.mark.requirement("CPIN-SEC-021")
def test_audit_events_carry_who_what_when_and_the_outcome(
    node: NodeClient, contract: Contract, writes: list[tuple[str, httpx.Response, str]]
) -> None:
    assert node.credentials is not None
    now = datetime.now(UTC)
    for operation_id, response, request_id in writes:
        events = audit_events(node, request_id)
        assert events, f"{operation_id} (X-Request-Id {request_id}) left no audit event"
        event = events[0]
        contract.expect_valid(event, EVENT, f"the audit event of {operation_id}")
        expected = {
            "actor": {"clientId": node.credentials.client_id},
            "requestId": request_id,
            "status": response.status_code,
            "outcome": "success",
        }
        for member, value in expected.items():
            assert event.get(member) == value, (
                f"the audit event of {operation_id} has {member} {event.get(member)!r}, "
                f"expected {value!r}"
            )
        assert event.get("target"), f"the audit event of {operation_id} names no target"
        selection = body_of(response).get("selectionId")
        if operation_id == "createSelection" and selection:
            assert event["target"] == selection, (
                f"createSelection was audited with target {event['target']!r}, "
                f"not the selection {selection!r}"
            )
        moment = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        assert abs(moment - now) < CLOCK_TOLERANCE, (
            f"the audit event of {operation_id} is dated {event['time']}, "
            f"more than 5 minutes from the time of the request"
        )
    page = node.get(AUDIT_PATH, params={"limit": 100}, scopes=[AUDIT_SCOPE])
    expect_status(page, 200)
    for event in contract.expect_json(page, f"{EVENT}#/$defs/AuditEventPage")["items"]:
        assert event.get("target"), f"audit event {event.get('eventId')} names no target"


@pytest.mark.requirement("CPIN-SEC-022")
def test_refused_requests_leave_access_denied_events(node: NodeClient) -> None:
    others = sorted(granted_scopes(node) - {AUDIT_SCOPE})
    assert others, "the main client holds no scope but audit:read"
    anonymous_id = new_request_id("denied-401")
    unauthenticated = node.get(
        AUDIT_PATH, authenticated=False, headers={"X-Request-Id": anonymous_id}
    )
    expect_status(unauthenticated, 401)
    forbidden_id = new_request_id("denied-403")
    forbidden = node.get(AUDIT_PATH, scopes=others, headers={"X-Request-Id": forbidden_id})
    expect_status(forbidden, 403)
    for request_id, status in ((anonymous_id, 401), (forbidden_id, 403)):
        events = audit_events(node, request_id)
        assert events, f"the {status} refusal (X-Request-Id {request_id}) left no audit event"
        event = events[0]
        assert (event.get("outcome"), event.get("status")) == ("failure", status), (
            f"the {status} refusal was audited with outcome {event.get('outcome')!r} and "
            f"status {event.get('status')!r}, expected failure and {status}"
        )


@pytest.mark.requirement("CPIN-SEC-024")
def test_audit_events_cannot_be_created_altered_or_deleted(
    node: NodeClient, writes: list[tuple[str, httpx.Response, str]]
) -> None:
    _, _, request_id = writes[0]
    before = audit_events(node, request_id)
    assert before, f"the token request {request_id} left no audit event to watch"
    event = before[0]
    forged = {**event, "outcome": "failure"}
    attempts = [
        ("POST", AUDIT_PATH),
        ("PUT", AUDIT_PATH),
        ("PATCH", AUDIT_PATH),
        ("DELETE", AUDIT_PATH),
        ("PUT", f"{AUDIT_PATH}/{event['eventId']}"),
        ("PATCH", f"{AUDIT_PATH}/{event['eventId']}"),
        ("DELETE", f"{AUDIT_PATH}/{event['eventId']}"),
    ]
    for method, path in attempts:
        body = None if method == "DELETE" else json.dumps(forged).encode()
        response = node.request(method, path, content=body,
                                headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code in (404, 405), (
            f"{method} {path} answered {response.status_code}, the spec requires 405 or 404"
        )
    after = audit_events(node, request_id)
    assert after == before, f"audit event {event['eventId']} changed: {before} -> {after}"


@pytest.mark.requirement("CPIN-SEC-018")
def test_audit_events_hold_no_secret_or_token(
    node: NodeClient, writes: list[tuple[str, httpx.Response, str]]
) -> None:
    assert node.credentials is not None
    _, token_response, request_id = writes[0]
    token = str(body_of(token_response)["access_token"])
    page = node.get(AUDIT_PATH, params={"limit": 100}, scopes=[AUDIT_SCOPE])
    expect_status(page, 200)
    listed = page.text + json.dumps(audit_events(node, request_id))
    for label, value in (("the client secret", str(node.credentials.client_secret)),
                         ("an access token the node issued", token)):  # fmt: skip
        assert value not in listed, f"the audit events listed contain {label}"
